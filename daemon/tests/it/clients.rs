//! Real OpenFeature clients from other languages against the `flagpole` binary: the Python
//! `openfeature-provider-flagd` (current, which calls `flagd.evaluation.v2`, and 0.2.7, which calls
//! `flagd.evaluation.v1`), the Node `@openfeature/flagd-provider`, the Go flagd provider and the Java flagd
//! provider, each in RPC mode (evaluation port) and in-process mode (sync port).
//!
//! What it owns: starting the daemon binary as a child on free ports with `flagd start`'s flags (so the
//! command line is exercised as a deployment would use it), running each client program from `clients/`,
//! and asserting every line it prints against what flagd answers that client
//! (`docs/protocols.md#answers-per-protocol`, `docs/protocols.md#eventstream-v1-v2-schemav1`). The client
//! programs only evaluate and report.
//!
//! What it does not do: install the clients. `scripts/install-test-clients.sh` does (the test command runs
//! it first); when a client is missing the test fails and says to run that script — never a silent skip.
//!
//! Every test gets its own daemon and flag file, so the flag-file edit of one cannot reach another.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long the daemon may take from spawn to `/readyz` answering 200.
const DAEMON_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How often a daemon that exits at start (a port taken meanwhile) is started again on fresh ports.
const START_ATTEMPTS: usize = 3;

/// The timeout handed to a client program (it gives up by itself and says what it was waiting for).
const CLIENT_TIMEOUT_SECS: u64 = 40;

/// How long the test waits for a client's next line before killing it (longer than the client's own
/// timeout, so the client's own message wins).
const CLIENT_LINE_TIMEOUT: Duration = Duration::from_secs(CLIENT_TIMEOUT_SECS + 10);

/// The deadline handed to the Python 0.2.7 and Java providers. Their channels retry NOT_FOUND and
/// INVALID_ARGUMENT up to 3 times with a 1 s initial backoff, while their default deadline is 500 ms, so with
/// their defaults a missing flag or a type mismatch ends in DEADLINE_EXCEEDED (GENERAL) against flagd as much
/// as against flagpole. With this deadline the retries finish and the daemon's status shows. (The Java
/// provider also bounds its initialisation by it; a cold JVM needs more than its default second.)
const RETRYING_CLIENT_DEADLINE_MS: u32 = 10_000;

/// The workspace root (`daemon/..`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Where `scripts/install-test-clients.sh` put the clients.
fn clients_dir() -> PathBuf {
    std::env::var_os("FLAGPOLE_TEST_CLIENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-clients"))
}

/// The `flagpole` binary with the developer's `FLAGD_*` variables removed, under
/// `sh -c 'ulimit LIMITS && exec flagpole ...'` when `limits` is not empty.
pub(crate) fn flagpole_under_limits(limits: &str) -> Command {
    let mut command = if limits.is_empty() {
        Command::new(env!("CARGO_BIN_EXE_flagpole"))
    } else {
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(format!("ulimit {limits} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_flagpole"));
        shell
    };
    // A developer's FLAGD_* variables must not change the daemon under test.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FLAGD_") {
            command.env_remove(name);
        }
    }
    command
}

/// A port that was free a moment ago (the listener is dropped before the daemon binds it).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|error| panic!("no free local port: {error}"))
}

/// The four ports of one daemon.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ports {
    pub(crate) evaluation: u16,
    pub(crate) management: u16,
    pub(crate) sync: u16,
    pub(crate) ofrep: u16,
}

/// The `flagpole` binary running as a child, killed when dropped.
pub(crate) struct ChildDaemon {
    child: Child,
    pub(crate) ports: Ports,
    stderr_path: PathBuf,
}

impl ChildDaemon {
    /// Starts `flagpole start --uri file:FLAGS -p .. -m .. -g .. -r ..` plus `extra` arguments and waits for
    /// `/readyz`. Panics with the daemon's stderr when it does not become ready. A daemon that exits at once
    /// is retried on fresh ports (another test may have taken a port between [`free_port`] and the bind).
    pub(crate) fn start(flags: &Path, log_dir: &Path, extra: &[&str]) -> ChildDaemon {
        ChildDaemon::start_under(flags, log_dir, extra, "")
    }

    /// [`ChildDaemon::start`] under `sh -c 'ulimit LIMITS && exec flagpole ...'` (no shell when empty).
    pub(crate) fn start_under(
        flags: &Path,
        log_dir: &Path,
        extra: &[&str],
        limits: &str,
    ) -> ChildDaemon {
        ChildDaemon::start_with_env(flags, log_dir, extra, limits, &[])
    }

    /// [`ChildDaemon::start_under`] with these environment variables added.
    pub(crate) fn start_with_env(
        flags: &Path,
        log_dir: &Path,
        extra: &[&str],
        limits: &str,
        env: &[(&str, &str)],
    ) -> ChildDaemon {
        let mut last_failure = String::new();
        for attempt in 0..START_ATTEMPTS {
            let mut daemon =
                ChildDaemon::spawn(Some(flags), None, log_dir, extra, limits, env, attempt);
            match daemon.wait_ready() {
                Ok(()) => return daemon,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("{last_failure}");
    }

    /// Starts `flagpole start` with only `args` (no implicit source) on `ports` (free ones when `None`)
    /// and waits for `/readyz`; with fixed ports there is no retry (a restart on the same ports is the
    /// point).
    pub(crate) fn start_with_ports(
        ports: Option<Ports>,
        log_dir: &Path,
        args: &[&str],
    ) -> ChildDaemon {
        ChildDaemon::start_args_env(ports, log_dir, args, &[])
    }

    /// [`ChildDaemon::start_with_ports`] with these environment variables added.
    pub(crate) fn start_args_env(
        ports: Option<Ports>,
        log_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ChildDaemon {
        let attempts = if ports.is_some() { 1 } else { START_ATTEMPTS };
        let mut last_failure = String::new();
        for attempt in 0..attempts {
            let mut daemon = ChildDaemon::spawn(None, ports, log_dir, args, "", env, attempt);
            match daemon.wait_ready() {
                Ok(()) => return daemon,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("{last_failure}");
    }

    fn spawn(
        flags: Option<&Path>,
        ports: Option<Ports>,
        log_dir: &Path,
        extra: &[&str],
        limits: &str,
        env: &[(&str, &str)],
        attempt: usize,
    ) -> ChildDaemon {
        let ports = ports.unwrap_or_else(|| Ports {
            evaluation: free_port(),
            management: free_port(),
            sync: free_port(),
            ofrep: free_port(),
        });
        let stderr_path = log_dir.join(format!("flagpole-{attempt}.stderr"));
        let stderr = fs::File::create(&stderr_path)
            .unwrap_or_else(|error| panic!("create {}: {error}", stderr_path.display()));
        let mut command = flagpole_under_limits(limits);
        command.arg("start");
        if let Some(flags) = flags {
            command
                .arg("--uri")
                .arg(format!("file:{}", flags.display()));
        }
        command
            .args(["-p", &ports.evaluation.to_string()])
            .args(["-m", &ports.management.to_string()])
            .args(["-g", &ports.sync.to_string()])
            .args(["-r", &ports.ofrep.to_string()])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("spawn the flagpole binary: {error}"));
        ChildDaemon {
            child,
            ports,
            stderr_path,
        }
    }

    /// The process id, for reading `/proc/PID/status`.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the daemon wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for `/readyz` to answer 200. An early exit is an error (retried by [`ChildDaemon::start`]);
    /// not being ready within [`DAEMON_READY_TIMEOUT`] panics at once.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + DAEMON_READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "flagpole exited before it was ready ({status}); stderr:\n{}",
                    self.stderr()
                ));
            }
            if http_status(self.ports.management, "/readyz") == Some(200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                panic!(
                    "flagpole did not answer 200 on /readyz (management port {}) within {:?}; stderr:\n{}",
                    self.ports.management,
                    DAEMON_READY_TIMEOUT,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl ChildDaemon {
    /// Stops the daemon with SIGTERM (its graceful shutdown) and waits for it to exit.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        self.child.wait().expect("wait for the daemon")
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status code of `GET path` on a local port, or `None` when nothing answers.
pub(crate) fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split_whitespace().nth(1)?.parse().ok()
}

/// The flag file every client is run against. `change-flag` is the one the test edits.
pub(crate) fn client_flags(change_flag_default: &str) -> Value {
    json!({
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "flags": {
            "bool-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
            "string-flag": {"state": "ENABLED", "variants": {"greeting": "hi", "farewell": "bye"},
                "defaultVariant": "greeting"},
            "int-flag": {"state": "ENABLED", "variants": {"one": 1, "ten": 10}, "defaultVariant": "ten"},
            "float-flag": {"state": "ENABLED", "variants": {"half": 0.5, "big": 2.5}, "defaultVariant": "half"},
            "object-flag": {"state": "ENABLED",
                "variants": {"box": {"name": "box", "size": 3, "tags": ["x", "y"]}, "empty": {}},
                "defaultVariant": "box"},
            "targeted-flag": {"state": "ENABLED", "variants": {"admin": "admin-view", "guest": "guest-view"},
                "defaultVariant": "guest",
                "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "admin", null]}},
            // Shorthand fractional: the bucketing key is flagKey + targetingKey. `user-9` and `user-2` were
            // chosen because flagd's current bucketing, the pre-0.15 one (Python provider 0.2.7 in-process)
            // and the CBOR one (current Python provider in-process) all put them in the same half.
            "fractional-flag": {"state": "ENABLED", "variants": {"red": "red", "blue": "blue"},
                "defaultVariant": "red",
                "targeting": {"fractional": [["red", 50], ["blue", 50]]}},
            "disabled-flag": {"state": "DISABLED", "variants": {"on": "on-value", "off": "off-value"},
                "defaultVariant": "on"},
            // Only the daemon's static context (`-X tier=gold`) can make this one say "gold".
            "tier-flag": {"state": "ENABLED", "variants": {"gold": "gold", "basic": "basic"},
                "defaultVariant": "basic",
                "targeting": {"if": [{"==": [{"var": "tier"}, "gold"]}, "gold", null]}},
            "change-flag": {"state": "ENABLED", "variants": {"before": "before", "after": "after"},
                "defaultVariant": change_flag_default}
        }
    })
}

/// A client program from `clients/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// Current `openfeature-provider-flagd` (evaluation v2, sync v1).
    PythonLatest,
    /// `openfeature-provider-flagd` 0.2.7 (evaluation v1, sync v1).
    PythonV1,
    /// `@openfeature/flagd-provider` (evaluation v2, sync v1).
    Node,
    /// go-sdk-contrib flagd provider (evaluation v1 over Connect, sync v1 over gRPC).
    Go,
    /// java-sdk-contrib flagd provider (evaluation v1 over gRPC, sync v1).
    Java,
}

/// How the client reaches the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Remote evaluation on the evaluation port, change events from EventStream.
    Rpc,
    /// Local evaluation of the configuration streamed from SyncFlags on the sync port.
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

/// The command that runs `client`, or a failure message naming the install script.
fn client_command(client: Client) -> Command {
    let root = workspace_root();
    let dir = clients_dir();
    let (program, script): (PathBuf, Option<PathBuf>) = match client {
        Client::PythonLatest => (
            dir.join("python-latest/bin/python"),
            Some(root.join("clients/python/check_client.py")),
        ),
        Client::PythonV1 => (
            dir.join("python-v1/bin/python"),
            Some(root.join("clients/python/check_client.py")),
        ),
        Client::Node => {
            let modules = root.join("clients/node/node_modules/@openfeature/flagd-provider");
            assert!(
                modules.is_dir(),
                "the Node flagd provider is not installed ({} is missing): run scripts/install-test-clients.sh",
                modules.display()
            );
            (
                PathBuf::from("node"),
                Some(root.join("clients/node/check-client.mjs")),
            )
        }
        Client::Go => (dir.join("go-check-client"), None),
        Client::Java => {
            let classpath_file = dir.join("java-classpath.txt");
            let classpath = fs::read_to_string(&classpath_file).unwrap_or_else(|error| {
                panic!(
                    "the Java test client is not installed ({}: {error}): run scripts/install-test-clients.sh",
                    classpath_file.display()
                )
            });
            let mut command = Command::new("java");
            command
                .arg("-cp")
                .arg(classpath.trim())
                .arg(root.join("clients/java/CheckClient.java"));
            return without_flagd_env(command);
        }
    };
    if program.is_absolute() {
        assert!(
            program.exists(),
            "the {client:?} test client is not installed ({} is missing): run scripts/install-test-clients.sh",
            program.display()
        );
    }
    let mut command = Command::new(program);
    if let Some(script) = script {
        command.arg(script);
    }
    without_flagd_env(command)
}

/// The providers read FLAGD_* variables too (host, port, resolver); only the arguments may count.
fn without_flagd_env(mut command: Command) -> Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FLAGD_") {
            command.env_remove(name);
        }
    }
    command
}

/// A running client program: its stdout lines arrive on a channel so that a hung client cannot hang the test.
struct ClientRun {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr_path: PathBuf,
    /// The daemon's stderr, shown with every failure.
    daemon_stderr_path: PathBuf,
    transcript: Vec<String>,
}

impl ClientRun {
    fn start(
        client: Client,
        mode: Mode,
        daemon: &ChildDaemon,
        flags: &Path,
        log_dir: &Path,
    ) -> ClientRun {
        let port = match mode {
            Mode::Rpc => daemon.ports.evaluation,
            Mode::InProcess => daemon.ports.sync,
        };
        let stderr_path = log_dir.join(format!("{client:?}-{}.stderr", mode.arg()));
        let stderr = fs::File::create(&stderr_path)
            .unwrap_or_else(|error| panic!("create {}: {error}", stderr_path.display()));
        let mut child = client_command(client)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--mode", mode.arg()])
            .arg("--flags")
            .arg(flags)
            .args(["--timeout", &CLIENT_TIMEOUT_SECS.to_string()])
            .args(if (client == Client::PythonV1 && mode == Mode::Rpc) || client == Client::Java {
                vec!["--deadline-ms".to_owned(), RETRYING_CLIENT_DEADLINE_MS.to_string()]
            } else {
                Vec::new()
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("start the {client:?} test client ({error}): run scripts/install-test-clients.sh")
            });
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("the {client:?} client has no stdout pipe"));
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ClientRun {
            child,
            stdin,
            lines,
            stderr_path,
            daemon_stderr_path: daemon.stderr_path.clone(),
            transcript: Vec::new(),
        }
    }

    /// Everything the client printed so far, its stderr and the daemon's, for failure messages.
    fn context(&self) -> String {
        let client_stderr = fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let daemon_stderr = fs::read_to_string(&self.daemon_stderr_path).unwrap_or_default();
        format!(
            "client stdout:\n{}\nclient stderr (last 40 lines):\n{}\ndaemon stderr (last 40 lines):\n{}",
            self.transcript.join("\n"),
            tail(&client_stderr, 40),
            tail(&daemon_stderr, 40)
        )
    }

    /// The next JSON line; panics with the transcript when the client stops or stalls.
    fn next(&mut self) -> Value {
        match self.lines.recv_timeout(CLIENT_LINE_TIMEOUT) {
            Ok(line) => {
                self.transcript.push(line.clone());
                serde_json::from_str(&line).unwrap_or_else(|error| {
                    panic!(
                        "client printed a line that is not JSON ({error}):\n{}",
                        self.context()
                    )
                })
            }
            Err(error) => panic!("client stopped or stalled ({error}):\n{}", self.context()),
        }
    }

    /// Reads `{"check": ...}` lines until `{"event": <event>}`; any other event (timeout, error) fails.
    fn checks_until(&mut self, event: &str) -> BTreeMap<String, Value> {
        let mut results = BTreeMap::new();
        loop {
            let line = self.next();
            if let Some(name) = line.get("check").and_then(Value::as_str) {
                results.insert(name.to_owned(), line.clone());
                continue;
            }
            match line.get("event").and_then(Value::as_str) {
                Some(seen) if seen == event => return results,
                _ => panic!(
                    "client reported {line} while waiting for {event}:\n{}",
                    self.context()
                ),
            }
        }
    }

    fn signal_edited(&mut self) {
        let written = self
            .stdin
            .as_mut()
            .map(|stdin| stdin.write_all(b"edited\n").and_then(|()| stdin.flush()));
        if !matches!(written, Some(Ok(()))) {
            panic!("could not signal the client:\n{}", self.context());
        }
    }
}

impl Drop for ClientRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one check must print. `None` fields are not compared.
#[derive(Debug, Clone)]
struct Expect {
    value: Value,
    reason: &'static str,
    variant: Option<Value>,
    error_code: Option<&'static str>,
}

fn success(value: Value, reason: &'static str, variant: &str) -> Expect {
    Expect {
        value,
        reason,
        variant: Some(Value::from(variant)),
        error_code: Some(""),
    }
}

fn failure(value: Value, error_code: &'static str) -> Expect {
    Expect {
        value,
        reason: "ERROR",
        // Some SDKs keep the variant of a type-mismatched value; the error is what matters.
        variant: None,
        error_code: Some(error_code),
    }
}

/// What flagd answers `client` in `mode` for each check of the client programs.
fn expectations(client: Client, mode: Mode) -> BTreeMap<&'static str, Expect> {
    let mut expect = BTreeMap::from([
        ("boolean", success(json!(true), "STATIC", "on")),
        ("string", success(json!("hi"), "STATIC", "greeting")),
        ("integer", success(json!(10), "STATIC", "ten")),
        ("float", success(json!(0.5), "STATIC", "half")),
        (
            "object",
            success(
                json!({"name": "box", "size": 3, "tags": ["x", "y"]}),
                "STATIC",
                "box",
            ),
        ),
        (
            "targeting-match",
            success(json!("admin-view"), "TARGETING_MATCH", "admin"),
        ),
        // Targeting returned null: the flag's defaultVariant with reason DEFAULT.
        (
            "targeting-default",
            success(json!("guest-view"), "DEFAULT", "guest"),
        ),
        (
            "fractional-red",
            success(json!("red"), "TARGETING_MATCH", "red"),
        ),
        (
            "fractional-blue",
            success(json!("blue"), "TARGETING_MATCH", "blue"),
        ),
        ("missing", failure(json!(true), "FLAG_NOT_FOUND")),
        ("type-mismatch", failure(json!(true), "TYPE_MISMATCH")),
        (
            "before-change",
            success(json!("before"), "STATIC", "before"),
        ),
        // The daemon runs with `-X tier=gold`: RPC evaluation adds it on the server; in-process providers
        // take it from SyncFlags' `sync_context` (or GetMetadata) and add it to every evaluation.
        (
            "static-context",
            success(json!("gold"), "TARGETING_MATCH", "gold"),
        ),
    ]);
    if (client, mode) == (Client::Go, Mode::InProcess) {
        // The Go provider's in-process mode receives `sync_context` but does not add it to evaluations,
        // so targeting sees no `tier` and returns null: the default variant. The same against flagd.
        expect.insert(
            "static-context",
            success(json!("basic"), "DEFAULT", "basic"),
        );
    }
    // Disabled flags (`docs/protocols.md#answers-per-protocol`): a success with reason DISABLED and no variant. Over v2 and in the
    // current in-process engines the value is left out, so the SDK returns the code default; v1 cannot leave
    // it out and sends the zero value.
    let disabled_code_default = Expect {
        value: json!("code-default"),
        reason: "DISABLED",
        variant: Some(Value::Null),
        error_code: Some(""),
    };
    let disabled = match (client, mode) {
        (Client::PythonV1 | Client::Go | Client::Java, Mode::Rpc) => Expect {
            value: json!(""),
            ..disabled_code_default
        },
        // The Go and Java providers' in-process engines predate disabled flags becoming a success (flagd
        // 0.16): they still report FLAG_NOT_FOUND. That is the provider's own evaluation, not the daemon's.
        (Client::Go | Client::Java, Mode::InProcess) => {
            failure(json!("code-default"), "FLAG_NOT_FOUND")
        }
        _ => disabled_code_default,
    };
    expect.insert("disabled", disabled);
    expect
}

/// `""` and `null` both mean "none" for variants and error codes: SDKs differ in how they show absence.
fn normalized(value: Option<&Value>) -> Value {
    match value {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) if s.is_empty() => Value::Null,
        Some(other) => other.clone(),
    }
}

/// Numbers compare by value, also inside objects and arrays (a client may print `10` or `10.0`); everything
/// else exactly.
pub(crate) fn same_value(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, value)| b.get(key).is_some_and(|other| same_value(value, other)))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(x, y))
        }
        _ => actual == expected,
    }
}

/// Compares one printed check with its expectation; returns a description of every difference.
fn compare(name: &str, actual: &Value, expect: &Expect) -> Vec<String> {
    let mut problems = Vec::new();
    let value = actual.get("value").unwrap_or(&Value::Null);
    if !same_value(value, &expect.value) {
        problems.push(format!("{name}: value {value}, expected {}", expect.value));
    }
    let reason = actual.get("reason").and_then(Value::as_str).unwrap_or("");
    if reason != expect.reason {
        problems.push(format!(
            "{name}: reason {reason:?}, expected {:?}",
            expect.reason
        ));
    }
    if let Some(variant) = &expect.variant {
        let got = normalized(actual.get("variant"));
        if got != normalized(Some(variant)) {
            problems.push(format!("{name}: variant {got}, expected {variant}"));
        }
    }
    if let Some(code) = expect.error_code {
        let got = normalized(actual.get("error_code"));
        if got != normalized(Some(&Value::from(code))) {
            problems.push(format!(
                "{name}: error code {got}, expected {:?} ({})",
                code,
                actual.get("error_message").unwrap_or(&Value::Null)
            ));
        }
    }
    problems
}

/// Runs `client` in `mode` against a fresh daemon and asserts every check and the change event.
/// How the test changes `change-flag` once the client is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// The flag file is rewritten.
    FileEdit,
    /// The admin API forces the new variant (the kill switch), the file untouched.
    Override,
}

fn run_client_checks(client: Client, mode: Mode) {
    run_client_checks_with(client, mode, Change::FileEdit);
}

fn run_client_checks_with(client: Client, mode: Mode, change: Change) {
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("temp dir: {error}"));
    let flags = dir.path().join("flags.json");
    write_json(&flags, &client_flags("before"));
    let tokens = dir.path().join("admin-tokens");
    fs::write(&tokens, "test:admin-secret\n").unwrap_or_else(|error| panic!("tokens: {error}"));
    let tokens = tokens.display().to_string();
    let daemon = ChildDaemon::start(
        &flags,
        dir.path(),
        &["-X", "tier=gold", "--admin-token-file", &tokens],
    );

    let mut run = ClientRun::start(client, mode, &daemon, &flags, dir.path());
    let results = run.checks_until("ready");

    let mut problems = Vec::new();
    for (name, expect) in expectations(client, mode) {
        match results.get(name) {
            Some(actual) => problems.extend(compare(name, actual, &expect)),
            None => problems.push(format!("{name}: the client printed no result")),
        }
    }

    // Only change-flag changes: its default variant moves from "before" to "after".
    match change {
        Change::FileEdit => write_json(&flags, &client_flags("after")),
        Change::Override => put_override(daemon.ports.management, "change-flag", "after"),
    }
    run.signal_edited();
    let after = run.checks_until("done");
    match after.get("change-event") {
        Some(actual) => {
            problems.extend(compare(
                "change-event",
                actual,
                &success(json!("after"), "STATIC", "after"),
            ));
            let announced: Vec<&str> = actual
                .get("flags_changed")
                .and_then(Value::as_array)
                .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            // EventStream announces exactly the keys that changed (`docs/protocols.md#eventstream-v1-v2-schemav1`). In-process providers
            // compute their own change lists from the sync payloads (some list every flag).
            let exact = mode == Mode::Rpc;
            if (exact && announced != ["change-flag"]) || !announced.contains(&"change-flag") {
                problems.push(format!(
                    "change-event: flags_changed {announced:?}, expected {}[\"change-flag\"]",
                    if exact { "" } else { "a list containing " }
                ));
            }
        }
        None => problems.push("change-event: the client printed no result".to_owned()),
    }

    assert!(
        problems.is_empty(),
        "{client:?} in {} mode disagrees with flagd:\n  {}\n{}",
        mode.arg(),
        problems.join("\n  "),
        run.context()
    );
}

/// Forces `variant` of `flag` through the admin API (token `admin-secret`).
fn put_override(port: u16, flag: &str, variant: &str) {
    let body = json!({"variant": variant, "reason": "client test"}).to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|error| panic!("connect to the management port: {error}"));
    let request = format!(
        "PUT /api/v1/overrides/{flag} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Authorization: Bearer admin-secret\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|error| panic!("send the override: {error}"));
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "the override was refused: {response}"
    );
}

/// Writes `value` as the whole content of `path`.
pub(crate) fn write_json(path: &Path, value: &Value) {
    let text =
        serde_json::to_string_pretty(value).unwrap_or_else(|error| panic!("serialize: {error}"));
    fs::write(path, text).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
}

#[test]
fn python_latest_provider_rpc_mode() {
    run_client_checks(Client::PythonLatest, Mode::Rpc);
}

#[test]
fn python_latest_provider_in_process_mode() {
    run_client_checks(Client::PythonLatest, Mode::InProcess);
}

#[test]
fn python_0_2_7_provider_on_evaluation_v1_rpc_mode() {
    run_client_checks(Client::PythonV1, Mode::Rpc);
}

#[test]
fn python_0_2_7_provider_in_process_mode() {
    run_client_checks(Client::PythonV1, Mode::InProcess);
}

#[test]
fn node_provider_rpc_mode() {
    run_client_checks(Client::Node, Mode::Rpc);
}

#[test]
fn node_provider_in_process_mode() {
    run_client_checks(Client::Node, Mode::InProcess);
}

/// The kill switch reaches a released SDK: an override set through the admin API is a change event and
/// the new answer, over EventStream (RPC) and over SyncFlags (in-process).
#[test]
fn node_provider_rpc_mode_sees_the_kill_switch() {
    run_client_checks_with(Client::Node, Mode::Rpc, Change::Override);
}

#[test]
fn python_latest_provider_in_process_mode_sees_the_kill_switch() {
    run_client_checks_with(Client::PythonLatest, Mode::InProcess, Change::Override);
}

/// The Go provider's RPC mode speaks the Connect protocol (`application/connect+proto` over HTTP/1.1), not
/// gRPC, including a Connect server stream for EventStream. Its client program keeps the provider's cache
/// on in this mode: with the cache disabled, provider v0.3.2 drops every configuration-change event.
#[test]
fn go_provider_rpc_mode_over_connect() {
    run_client_checks(Client::Go, Mode::Rpc);
}

#[test]
fn go_provider_in_process_mode() {
    run_client_checks(Client::Go, Mode::InProcess);
}

#[test]
fn java_provider_rpc_mode() {
    run_client_checks(Client::Java, Mode::Rpc);
}

#[test]
fn java_provider_in_process_mode() {
    run_client_checks(Client::Java, Mode::InProcess);
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
