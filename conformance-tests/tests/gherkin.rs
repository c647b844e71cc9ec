//! `cargo test -p flagpole-conformance --test gherkin`: the flagd-testbed provider/daemon suite in every
//! mode (see `flagpole_conformance::gherkin`). Needs the `flagpole` binary: it is built here with
//! `cargo build -p flagpole` unless `FLAGPOLE_BIN` names one.
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
        flagpole_conformance::gherkin::Bucketing::Default,
    )
    .await;
}
