//! Logging with `tracing`: console or JSON lines on stderr.
//!
//! `--debug` lowers the level to debug, which also turns on the per-request fields the servers log at debug
//! level (path, flag key, context keys; never context values). The chattiest dependencies (hyper, h2,
//! tower, notify) stay at warn.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Returns false when one was already installed (e.g. by a test).
pub fn init(config: LogConfig) -> bool {
    let level = if config.debug { "debug" } else { "info" };
    let filter = EnvFilter::new(format!(
        "{level},h2=warn,hyper=warn,hyper_util=warn,tower=warn,notify=warn"
    ));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match config.format {
        LogFormat::Console => builder.try_init().is_ok(),
        LogFormat::Json => builder.json().flatten_event(true).try_init().is_ok(),
    }
}
