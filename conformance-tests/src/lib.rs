//! Harness for the flagd-testbed suites (work in progress).
#![forbid(unsafe_code)]

pub mod envoy;
pub mod gherkin;
pub mod launcher;
