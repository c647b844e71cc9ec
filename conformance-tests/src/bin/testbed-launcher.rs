//! `testbed-launcher`: the testbed's launchpad as a standalone HTTP server (`docs/conformance.md#how-it-works`), so any
//! harness (the Go or Java flagd test suites, curl) can drive a flagpole — or flagd — daemon without
//! containers.
//!
//! Usage: `testbed-launcher [--listen 127.0.0.1:8080] [--flagd-ports] [--no-start]`; reads
//! `FLAGD_TESTBED_DIR` and `FLAGPOLE_BIN` like the gherkin harness. `--flagd-ports` uses flagd's fixed ports
//! 8013–8016 instead of free ones. Starts the daemon with the `default` config unless `--no-start`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;

use flagpole_conformance::launcher::{self, Launcher, LauncherOptions, Ports};

/// Exit code for bad usage (sysexits `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080));
    let mut flagd_ports = false;
    let mut start = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => match args.next().and_then(|value| value.parse().ok()) {
                Some(addr) => listen = addr,
                None => return usage("--listen needs an address like 127.0.0.1:8080"),
            },
            "--flagd-ports" => flagd_ports = true,
            "--no-start" => start = false,
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let options = LauncherOptions {
        testbed_dir: launcher::testbed_dir(),
        daemon_bin: launcher::daemon_bin(),
        ports: flagd_ports.then(Ports::flagd_defaults),
        daemon_output: true,
        extra_config: Vec::new(),
    };
    let launcher = match Launcher::new(options) {
        Ok(launcher) => launcher,
        Err(error) => {
            eprintln!("testbed-launcher: {error}");
            return ExitCode::FAILURE;
        }
    };
    let ports = launcher.ports();
    eprintln!(
        "testbed-launcher: fixture {} ports evaluation={} management={} sync={} ofrep={}",
        launcher.fixture().root().display(),
        ports.evaluation,
        ports.management,
        ports.sync,
        ports.ofrep
    );
    if start && let Err(error) = launcher.start(None).await {
        eprintln!("testbed-launcher: initial start failed: {error}");
    }
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("testbed-launcher: cannot listen on {listen}: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("testbed-launcher: listening on http://{listen}");
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                eprintln!("testbed-launcher: cannot watch SIGTERM: {error}");
                return ExitCode::FAILURE;
            }
        };
    // On SIGINT or SIGTERM: kill the daemon and remove the fixture directory before exiting.
    let served = tokio::select! {
        result = launcher::http::serve(listener, launcher.clone()) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminate.recv() => Ok(()),
    };
    let _ = launcher.stop().await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("testbed-launcher: {error}");
            ExitCode::FAILURE
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!(
        "testbed-launcher: {message}\nusage: testbed-launcher [--listen ADDR] [--flagd-ports] [--no-start]"
    );
    ExitCode::from(EXIT_USAGE)
}
