//! Real flagd providers over TLS with a custom CA and over unix sockets: the Python
//! `openfeature-provider-flagd` (current) and the Node `@openfeature/flagd-provider`, each in RPC mode
//! (evaluation port) and in-process mode (sync port), against the `flagpole` binary started with
//! `--server-cert-path`/`--server-key-path` or with `--socket-path`/`--sync-socket-path`.
//!
//! What it owns: the certificates (a CA and a `localhost` server certificate made with rcgen per test), the
//! transport arguments handed to the client programs (`--tls --cert-path CA`, `--socket-path PATH`), and
//! the assertions that a typed evaluation and a targeting result come back right over that transport.
//!
//! What it does not do: repeat every check of `clients.rs` (the checks do not depend on the transport), or
//! install the clients (`scripts/install-test-clients.sh` does; a missing client fails the test). The
//! Python provider is not run over sockets: its README (0.6.1) lists a `socket_path` option, but the code
//! has none (`FlagdProvider(socket_path=...)` is a `TypeError`; the gRPC target is always `host:port`).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::clients::{ChildDaemon, client_flags, same_value, tail, workspace_root, write_json};
use crate::runtime_support::test_certificates;

/// The timeout handed to a client program (it gives up by itself and says what it was waiting for).
const CLIENT_TIMEOUT_SECS: u64 = 40;

/// How long the test waits for a client's next line before giving up on it.
const CLIENT_LINE_TIMEOUT: Duration = Duration::from_secs(CLIENT_TIMEOUT_SECS + 10);

/// The two provider programs run here.
#[derive(Debug, Clone, Copy)]
enum Client {
    PythonLatest,
    Node,
}

/// Which daemon port the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Rpc,
    InProcess,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Rpc => "rpc",
            Mode::InProcess => "in-process",
        }
    }
}

/// How the client reaches the daemon.
enum Transport<'a> {
    /// TLS on the TCP port, trusting the CA in this PEM file.
    Tls { ca: &'a Path },
    /// TLS on the TCP port, trusting only the system's roots (not the test CA).
    TlsSystemRoots,
    /// A unix socket at this path.
    Socket { path: &'a Path },
}

/// Writes a fresh CA (`ca.pem`) and a `localhost` server certificate signed by it (`server-cert.pem`,
/// `server-key.pem`) into `dir`, flags from [`client_flags`] into `flags.json`, and starts a TLS daemon on
/// them; returns the daemon, the flag file and the CA file.
fn start_tls_daemon(dir: &Path) -> (ChildDaemon, PathBuf, PathBuf) {
    let certificates = test_certificates(&["localhost"]);
    let (cert, key) = (dir.join("server-cert.pem"), dir.join("server-key.pem"));
    certificates.write_server(&cert, &key);
    let ca = dir.join("ca.pem");
    fs::write(&ca, &certificates.ca_pem).expect("write CA");
    let flags = dir.join("flags.json");
    write_json(&flags, &client_flags("before"));
    let daemon = ChildDaemon::start(
        &flags,
        dir,
        &[
            "--server-cert-path",
            &cert.to_string_lossy(),
            "--server-key-path",
            &key.to_string_lossy(),
        ],
    );
    (daemon, flags, ca)
}

/// The command that runs `client`, failing with the install script's name when it is missing.
fn client_command(client: Client) -> Command {
    let root = workspace_root();
    let mut command = match client {
        Client::PythonLatest => {
            let dir = std::env::var_os("FLAGPOLE_TEST_CLIENTS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target/test-clients"));
            let python = dir.join("python-latest/bin/python");
            assert!(
                python.exists(),
                "the Python test client is not installed ({} is missing): run scripts/install-test-clients.sh",
                python.display()
            );
            let mut command = Command::new(python);
            command.arg(root.join("clients/python/check_client.py"));
            command
        }
        Client::Node => {
            let modules = root.join("clients/node/node_modules/@openfeature/flagd-provider");
            assert!(
                modules.is_dir(),
                "the Node flagd provider is not installed ({} is missing): run scripts/install-test-clients.sh",
                modules.display()
            );
            let mut command = Command::new("node");
            command.arg(root.join("clients/node/check-client.mjs"));
            command
        }
    };
    // The providers read FLAGD_* variables too (host, port, TLS, socket); only the arguments may count.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FLAGD_") {
            command.env_remove(name);
        }
    }
    command
}

/// Runs `client` until it prints `{"event":"ready"}` and returns its checks by name. When it fails, stalls
/// or reports an error, the error holds the client's output, its stderr and the daemon's stderr.
fn run_until_ready(
    client: Client,
    mode: Mode,
    transport: &Transport<'_>,
    daemon: &ChildDaemon,
    flags: &Path,
    log_dir: &Path,
) -> Result<serde_json::Map<String, Value>, String> {
    let port = match mode {
        Mode::Rpc => daemon.ports.evaluation,
        Mode::InProcess => daemon.ports.sync,
    };
    let stderr_path = log_dir.join(format!("{client:?}-{}.stderr", mode.arg()));
    let stderr = fs::File::create(&stderr_path).expect("client stderr file");
    let mut command = client_command(client);
    // The server certificate names `localhost`, so TLS clients must use that name.
    command
        .args(["--host", "localhost", "--port", &port.to_string()])
        .args(["--mode", mode.arg()])
        .arg("--flags")
        .arg(flags)
        .args(["--timeout", &CLIENT_TIMEOUT_SECS.to_string()]);
    match transport {
        Transport::Tls { ca } => {
            command.arg("--tls").arg("--cert-path").arg(ca);
        }
        Transport::TlsSystemRoots => {
            command.arg("--tls");
        }
        Transport::Socket { path } => {
            command.arg("--socket-path").arg(path);
        }
    }
    let mut child: Child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "start the {client:?} test client ({error}): run scripts/install-test-clients.sh"
            )
        });
    let stdout = child.stdout.take().expect("client stdout pipe");
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut transcript = Vec::new();
    let mut checks = serde_json::Map::new();
    let outcome = loop {
        let line = match lines.recv_timeout(CLIENT_LINE_TIMEOUT) {
            Ok(line) => line,
            Err(error) => break Err(format!("client stopped or stalled ({error})")),
        };
        transcript.push(line.clone());
        let Ok(value) = serde_json::from_str::<Value>(&line) else {
            break Err("client printed a line that is not JSON".to_owned());
        };
        if let Some(name) = value.get("check").and_then(Value::as_str) {
            checks.insert(name.to_owned(), value.clone());
            continue;
        }
        match value.get("event").and_then(Value::as_str) {
            Some("ready") => break Ok(()),
            _ => break Err(format!("client reported {value}")),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome.map(|()| checks).map_err(|problem| {
        format!(
            "{client:?} in {} mode: {problem}\nclient stdout:\n{}\nclient stderr:\n{}\ndaemon stderr:\n{}",
            mode.arg(),
            transcript.join("\n"),
            tail(&fs::read_to_string(&stderr_path).unwrap_or_default(), 40),
            tail(&daemon.stderr(), 40)
        )
    })
}

/// Asserts the typed evaluations and the targeting results flagd gives every client.
fn assert_checks(client: Client, mode: Mode, checks: &serde_json::Map<String, Value>) {
    let expected = [
        ("boolean", json!(true), "STATIC", "on"),
        ("integer", json!(10), "STATIC", "ten"),
        (
            "object",
            json!({"name": "box", "size": 3, "tags": ["x", "y"]}),
            "STATIC",
            "box",
        ),
        (
            "targeting-match",
            json!("admin-view"),
            "TARGETING_MATCH",
            "admin",
        ),
        ("targeting-default", json!("guest-view"), "DEFAULT", "guest"),
        ("fractional-blue", json!("blue"), "TARGETING_MATCH", "blue"),
    ];
    let mut problems = Vec::new();
    for (name, value, reason, variant) in expected {
        let Some(actual) = checks.get(name) else {
            problems.push(format!("{name}: no result"));
            continue;
        };
        let got = actual.get("value").cloned().unwrap_or(Value::Null);
        let same = same_value(&got, &value);
        if !same {
            problems.push(format!("{name}: value {got}, expected {value}"));
        }
        if actual.get("reason").and_then(Value::as_str) != Some(reason) {
            problems.push(format!("{name}: {actual}, expected reason {reason}"));
        }
        if actual.get("variant").and_then(Value::as_str) != Some(variant) {
            problems.push(format!("{name}: {actual}, expected variant {variant}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{client:?} in {} mode:\n  {}",
        mode.arg(),
        problems.join("\n  ")
    );
}

/// Starts a TLS daemon and runs `client` in `mode` against it with the test CA.
fn run_over_tls(client: Client, mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, flags, ca) = start_tls_daemon(dir.path());
    let checks = run_until_ready(
        client,
        mode,
        &Transport::Tls { ca: &ca },
        &daemon,
        &flags,
        dir.path(),
    )
    .unwrap_or_else(|failure| panic!("{failure}"));
    assert_checks(client, mode, &checks);
}

/// Starts a daemon on unix sockets and runs `client` in `mode` over the matching socket.
fn run_over_socket(client: Client, mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    write_json(&flags, &client_flags("before"));
    let evaluation = dir.path().join("evaluation.sock");
    let sync = dir.path().join("sync.sock");
    let evaluation_arg = evaluation.to_string_lossy();
    let sync_arg = sync.to_string_lossy();
    let daemon = ChildDaemon::start(
        &flags,
        dir.path(),
        &[
            "--socket-path",
            &evaluation_arg,
            "--sync-socket-path",
            &sync_arg,
        ],
    );
    let socket = match mode {
        Mode::Rpc => &evaluation,
        Mode::InProcess => &sync,
    };
    let checks = run_until_ready(
        client,
        mode,
        &Transport::Socket { path: socket },
        &daemon,
        &flags,
        dir.path(),
    )
    .unwrap_or_else(|failure| panic!("{failure}"));
    assert_checks(client, mode, &checks);
}

#[test]
fn python_latest_provider_rpc_mode_over_tls_with_a_custom_ca() {
    run_over_tls(Client::PythonLatest, Mode::Rpc);
}

#[test]
fn python_latest_provider_in_process_mode_over_tls_with_a_custom_ca() {
    run_over_tls(Client::PythonLatest, Mode::InProcess);
}

#[test]
fn node_provider_rpc_mode_over_tls_with_a_custom_ca() {
    run_over_tls(Client::Node, Mode::Rpc);
}

#[test]
fn node_provider_in_process_mode_over_tls_with_a_custom_ca() {
    run_over_tls(Client::Node, Mode::InProcess);
}

/// The TLS tests above can fail: the same client without the test CA does not get an evaluation.
#[test]
fn node_provider_without_the_custom_ca_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, flags, _ca) = start_tls_daemon(dir.path());
    let outcome = run_until_ready(
        Client::Node,
        Mode::Rpc,
        &Transport::TlsSystemRoots,
        &daemon,
        &flags,
        dir.path(),
    );
    match outcome {
        Ok(checks) => panic!("a client not trusting the CA evaluated: {checks:?}"),
        Err(failure) => assert!(failure.contains("client reported"), "{failure}"),
    }
}

#[test]
fn node_provider_rpc_mode_over_a_unix_socket() {
    run_over_socket(Client::Node, Mode::Rpc);
}

#[test]
fn node_provider_in_process_mode_over_a_unix_socket() {
    run_over_socket(Client::Node, Mode::InProcess);
}
