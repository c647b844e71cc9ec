//! OpenFeature provider for flagd-protocol daemons (work in progress).
#![forbid(unsafe_code)]
