//! The flagpole daemon: sources, store and the flagd services (work in progress).
#![forbid(unsafe_code)]

pub mod config;
pub mod metrics;
pub mod service;
pub mod store;
