//! The flagd-testbed provider/daemon suite's `@fractional-v3` rows: the daemon started with
//! `--fractional-algorithm v3` (a key added to every launchpad config) and the provider's in-process and
//! file resolvers built with the v3 bucketing, in rpc, in-process and file modes (docs/conformance.md).
//!
//! Run with `cargo test -p flagpole-conformance --test gherkin_v3` (a `harness = false` target).
#![forbid(unsafe_code)]

use std::process::Command;

fn build_daemon() {
    if std::env::var_os("FLAGPOLE_BIN").is_some() {
        return;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "flagpole", "--bin", "flagpole"])
        .current_dir(flagpole_conformance::launcher::workspace_root())
        .status()
        .unwrap_or_else(|error| panic!("cannot run cargo build -p flagpole: {error}"));
    assert!(status.success(), "cargo build -p flagpole failed: {status}");
}

#[tokio::main]
async fn main() {
    build_daemon();
    flagpole_conformance::gherkin::run(
        Box::new(std::io::stdout()),
        flagpole_conformance::gherkin::Bucketing::V3,
    )
    .await;
}
