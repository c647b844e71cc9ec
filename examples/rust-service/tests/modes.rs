//! The example service in its three modes: against a real daemon (flagpole, started in this process on
//! free ports) over rpc and in-process, and on the flag file alone. In each mode it answers from the
//! flags, and an edit of the flag file reaches its answers without a restart.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flagpole::config::{Config, FileProvider, Listen, SourceConfig, SourceKind};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How long a change may take to reach the service's answers (a failure bound, not a measurement).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// `new-checkout` is on for users whose e-mail ends with `domain`.
fn flags(domain: &str) -> String {
    json!({"flags": {"new-checkout": {
        "state": "ENABLED",
        "variants": {"on": true, "off": false},
        "defaultVariant": "off",
        "targeting": {"if": [{"ends_with": [{"var": "email"}, domain]}, "on", "off"]}
    }}})
    .to_string()
}

fn write_atomic(path: &Path, text: &str) {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text).expect("write");
    std::fs::rename(&temp, path).expect("rename");
}

/// The service as a child process, killed when dropped.
struct Service {
    _child: Child,
    addr: SocketAddr,
}

async fn start_service(env: &[(&str, String)]) -> Service {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rust-service"));
    // Only the options given here: nothing from the environment the tests run in.
    for (name, _) in std::env::vars() {
        if name.starts_with("FLAGD_") {
            command.env_remove(name);
        }
    }
    command
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("FLAGD_DEADLINE_MS", "5000")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("start the example service");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the service prints its address within 30 s")
        .expect("read stdout")
        .expect("a line");
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .parse()
        .expect("an address");
    Service {
        _child: child,
        addr,
    }
}

/// `GET /checkout?user=USER`: the JSON answer.
async fn checkout(service: &Service, user: &str) -> Value {
    let mut stream = TcpStream::connect(service.addr).await.expect("connect");
    let request =
        format!("GET /checkout?user={user} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{raw}");
    serde_json::from_str(body).expect("a JSON answer")
}

/// Waits until the service answers `want` for `user`.
async fn wait_for(service: &Service, user: &str, want: &Value) {
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    loop {
        let answer = checkout(service, user).await;
        if &answer == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user}: still {answer} after {CHANGE_TIMEOUT:?}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn on() -> Value {
    json!({"newCheckout": true, "variant": "on", "reason": "TARGETING_MATCH"})
}

fn off() -> Value {
    json!({"newCheckout": false, "variant": "off", "reason": "TARGETING_MATCH"})
}

/// Checks the service's answers, then moves the targeting to another domain and waits for them to follow.
async fn answers_and_follows_an_edit(service: &Service, path: &Path) {
    wait_for(service, "ana@example.com", &on()).await;
    assert_eq!(checkout(service, "bob@other.org").await, off());
    write_atomic(path, &flags("@other.org"));
    wait_for(service, "bob@other.org", &on()).await;
    assert_eq!(checkout(service, "ana@example.com").await, off());
    write_atomic(path, &flags("@example.com"));
    wait_for(service, "ana@example.com", &on()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_service_answers_in_rpc_in_process_and_file_modes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    write_atomic(&path, &flags("@example.com"));

    let mut config = Config::new(vec![SourceConfig {
        identity: Arc::from(path.to_string_lossy().as_ref()),
        kind: SourceKind::File {
            path: path.clone(),
            provider: FileProvider::File,
        },
    }]);
    config.listen = Listen::ephemeral(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let daemon = flagpole::run(config).await.expect("the daemon starts");
    let addrs = daemon.addrs();

    let rpc = start_service(&[
        ("FLAGD_RESOLVER", "rpc".to_owned()),
        ("FLAGD_HOST", "127.0.0.1".to_owned()),
        ("FLAGD_PORT", addrs.evaluation.port().to_string()),
    ])
    .await;
    answers_and_follows_an_edit(&rpc, &path).await;
    drop(rpc);

    let in_process = start_service(&[
        ("FLAGD_RESOLVER", "in-process".to_owned()),
        ("FLAGD_HOST", "127.0.0.1".to_owned()),
        ("FLAGD_PORT", addrs.sync.port().to_string()),
    ])
    .await;
    answers_and_follows_an_edit(&in_process, &path).await;
    drop(in_process);

    daemon.shutdown().await.expect("clean shutdown");
    // No daemon at all: the file resolver reads and watches the file itself.
    let file = start_service(&[
        ("FLAGD_RESOLVER", "file".to_owned()),
        ("FLAGD_OFFLINE_FLAG_SOURCE_PATH", path.display().to_string()),
    ])
    .await;
    answers_and_follows_an_edit(&file, &path).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_option_stops_the_service_with_a_message_naming_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_rust-service"))
        .env("FLAGD_RESOLVER", "rpc")
        .env("FLAGD_PORT", "eighty")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .output()
        .await
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("FLAGD_PORT"), "{stderr}");
}
