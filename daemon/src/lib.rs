//! The flagpole daemon: a drop-in replacement for `flagd start`.
//!
//! What it owns: configuration ([`config`]), the flag sources ([`sources`]) feeding the [`store`], the
//! protocol-neutral evaluation core ([`eval`]), one folder per protocol over it ([`protocols`]: gRPC, Connect,
//! OFREP, the management port), sockets and HTTP connections ([`transport`]), [`metrics`], [`logging`], the
//! runtime that binds, serves and shuts down ([`run()`]), and offline validation ([`validate`]). The binary
//! (`src/main.rs`) only parses the command line and calls into this library, so tests run the daemon
//! in-process.
//!
//! What it does not do: evaluate flags (`flagpole-engine` does) or speak OpenFeature (`flagpole-provider`).
// `deny`, not `forbid`: `memory` alone calls the allocator's trim (a measured need, with a SAFETY note).
#![deny(unsafe_code)]

pub mod admin_client;
pub mod config;
pub mod control;
pub mod eval;
pub mod explain_cli;
#[doc(hidden)]
pub mod fuzzing;
pub mod journal;
pub mod lifecycle;
pub mod limits;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod overrides;
pub mod protocols;
pub mod readiness;
pub mod routers;
mod run;
pub mod sources;
pub mod state_dir;
pub mod store;
pub mod telemetry;
pub mod transport;
pub mod usage;
pub mod validate;

pub use run::{BoundAddrs, DRAIN_TIMEOUT, Daemon, RunError, SYNC_STARTUP_GATE, StartError, run};

/// Percent-encodes `text` for a URL path segment or query value (every byte but RFC 3986's unreserved
/// characters).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// An error and its causes on one line, `outer: cause: root`, leaving out a cause whose text the line
/// already holds (many errors repeat their source's message in their own).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The current time in unix seconds (0 before 1970), for state, journal and metrics timestamps.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
