//! Harness for the flagd-testbed suites (work in progress).
#![forbid(unsafe_code)]
