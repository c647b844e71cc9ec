//! The flagpole daemon: sources, store and the flagd services (work in progress).
#![forbid(unsafe_code)]

pub mod store;
