//! Real OFREP clients against flagpole's OFREP port: the Python `openfeature-provider-ofrep`, the Node
//! `@openfeature/ofrep-provider` and the browser `@openfeature/ofrep-web-provider` (bulk polling with ETags),
//! installed by `scripts/install-test-clients.sh` (a missing client fails the
//! test and names that script). Each client program (`clients/python/ofrep_check.py`,
//! `clients/node/ofrep-check.mjs`) evaluates the same list of flags and prints one JSON line per evaluation;
//! the lines are compared with what an OpenFeature client sees from flagd's OFREP for the same flags.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::runtime_support::{node_client_dir, start_with_files, workspace_root, write_atomic};

/// How long one client program may run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

const FLAGS: &str = r#"{
  "flags": {
    "bool-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
    "string-flag": {"state": "ENABLED", "variants": {"yes": "YES", "no": "NO"}, "defaultVariant": "no",
      "targeting": {"if": [{"==": [{"var": "email"}, "a@example.com"]}, "yes", null]}},
    "int-flag": {"state": "ENABLED", "variants": {"answer": 42}, "defaultVariant": "answer"},
    "float-flag": {"state": "ENABLED", "variants": {"half": 1.5}, "defaultVariant": "half"},
    "object-flag": {"state": "ENABLED", "variants": {"obj": {"a": 1, "b": "x"}}, "defaultVariant": "obj"},
    "disabled-flag": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"}
  }
}"#;

/// (check, expected line) pairs.
fn cases() -> Vec<(Value, Value)> {
    vec![
        (
            json!({"kind": "boolean", "flag": "bool-flag", "default": false}),
            json!({"flag": "bool-flag", "value": true, "variant": "on", "reason": "STATIC", "error": null}),
        ),
        (
            json!({"kind": "string", "flag": "string-flag", "default": "dflt",
                   "context": {"targetingKey": "u1", "email": "a@example.com"}}),
            json!({"flag": "string-flag", "value": "YES", "variant": "yes", "reason": "TARGETING_MATCH", "error": null}),
        ),
        (
            json!({"kind": "string", "flag": "string-flag", "default": "dflt", "context": {"email": "b@example.com"}}),
            json!({"flag": "string-flag", "value": "NO", "variant": "no", "reason": "DEFAULT", "error": null}),
        ),
        (
            json!({"kind": "integer", "flag": "int-flag", "default": 0}),
            json!({"flag": "int-flag", "value": 42, "variant": "answer", "reason": "STATIC", "error": null}),
        ),
        (
            json!({"kind": "float", "flag": "float-flag", "default": 0.0}),
            json!({"flag": "float-flag", "value": 1.5, "variant": "half", "reason": "STATIC", "error": null}),
        ),
        (
            json!({"kind": "object", "flag": "object-flag", "default": {}}),
            json!({"flag": "object-flag", "value": {"a": 1, "b": "x"}, "variant": "obj", "reason": "STATIC", "error": null}),
        ),
        // flagd 0.16 answers a disabled flag with reason DISABLED and no value (`docs/protocols.md#ofrep-port-8016`), and so does
        // flagpole. These provider releases predate OFREP's optional value (protocol ADR 0006): they report a
        // missing value as GENERAL and return the caller's default — against flagd exactly the same.
        (
            json!({"kind": "boolean", "flag": "disabled-flag", "default": false}),
            json!({"flag": "disabled-flag", "value": false, "variant": null, "reason": "ERROR", "error": "GENERAL"}),
        ),
        (
            json!({"kind": "boolean", "flag": "missing-flag", "default": true}),
            json!({"flag": "missing-flag", "value": true, "variant": null, "reason": "ERROR", "error": "FLAG_NOT_FOUND"}),
        ),
    ]
}

fn clients_dir() -> PathBuf {
    std::env::var_os("FLAGPOLE_TEST_CLIENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-clients"))
}

/// Runs a client program and returns its output lines as JSON.
async fn run_client(mut command: tokio::process::Command, what: &str) -> Vec<Value> {
    command.kill_on_drop(true);
    let output = tokio::time::timeout(CLIENT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {CLIENT_TIMEOUT:?}"))
        .unwrap_or_else(|e| {
            panic!("{what} could not start ({e}); run scripts/install-test-clients.sh")
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{what} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{what} printed {line:?}: {e}"))
        })
        .collect()
}

/// Compares every line with the expectation, and reports all differences at once.
fn check(what: &str, lines: &[Value], expected: &[Value]) {
    let differences: Vec<String> = expected
        .iter()
        .zip(lines.iter().map(Some).chain(std::iter::repeat(None)))
        .filter(|(want, got)| Some(*want) != *got)
        .map(|(want, got)| format!("  want {want}\n  got  {got:?}"))
        .collect();
    assert!(
        differences.is_empty() && lines.len() == expected.len(),
        "{what}:\n{}",
        differences.join("\n")
    );
}

async fn daemon_and_checks() -> (flagpole::Daemon, tempfile::TempDir, String, Vec<Value>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    write_atomic(&path, FLAGS);
    let daemon = start_with_files(&[&path]).await;
    let base_url = format!("http://127.0.0.1:{}", daemon.addrs().ofrep.port());
    let checks = cases().into_iter().map(|(c, _)| c).collect();
    (daemon, dir, base_url, checks)
}

#[tokio::test]
async fn python_ofrep_provider_evaluates_against_flagpole() {
    let python = clients_dir().join("python-latest/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/install-test-clients.sh",
        python.display()
    );
    let (daemon, _dir, base_url, checks) = daemon_and_checks().await;
    let mut command = tokio::process::Command::new(python);
    command
        .arg(workspace_root().join("clients/python/ofrep_check.py"))
        .arg(&base_url)
        .arg(Value::Array(checks).to_string());
    let lines = run_client(command, "python ofrep client").await;
    let expected: Vec<Value> = cases().into_iter().map(|(_, e)| e).collect();
    check("python ofrep client", &lines, &expected);
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn node_ofrep_provider_evaluates_against_flagpole() {
    let node_dir = node_client_dir("@openfeature/ofrep-provider");
    let (daemon, _dir, base_url, checks) = daemon_and_checks().await;
    let mut command = tokio::process::Command::new("node");
    command
        .current_dir(&node_dir)
        .arg("ofrep-check.mjs")
        .arg(&base_url)
        .arg(Value::Array(checks).to_string());
    let lines = run_client(command, "node ofrep client").await;
    let expected: Vec<Value> = cases().into_iter().map(|(_, e)| e).collect();
    check("node ofrep client", &lines, &expected);
    daemon.shutdown().await.expect("clean shutdown");
}

/// The browser OFREP provider (`@openfeature/ofrep-web-provider`, run in Node) polls bulk evaluation with
/// `If-None-Match`: while nothing changes it gets 304s, and after a flag-file edit it gets a new answer and
/// emits a configuration change with the new value.
#[tokio::test]
async fn web_ofrep_provider_polls_with_etags_and_sees_a_flag_file_edit() {
    use tokio::io::AsyncBufReadExt;

    let node_dir = node_client_dir("@openfeature/ofrep-web-provider");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    write_atomic(
        &path,
        &crate::runtime_support::one_flag("web-flag", "before"),
    );
    let daemon = start_with_files(&[&path]).await;
    let base_url = format!("http://127.0.0.1:{}", daemon.addrs().ofrep.port());
    let mut child = tokio::process::Command::new("node")
        .current_dir(&node_dir)
        .args(["ofrep-web-check.mjs", &base_url, "web-flag", "100"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut next_line = async || -> Value {
        let line = tokio::time::timeout(CLIENT_TIMEOUT, lines.next_line())
            .await
            .expect("the web provider answers in time")
            .expect("read stdout")
            .expect("the web provider printed a line (see its stderr)");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    };
    assert_eq!(
        next_line().await,
        json!({"event": "ready", "value": "before", "variant": "v", "reason": "STATIC"})
    );
    // Let it poll a few times unchanged (100 ms interval): those polls are answered 304.
    let mut not_modified = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        not_modified = count_304(&metrics_text(&daemon).await);
        if not_modified >= 2 {
            break;
        }
    }
    assert!(not_modified >= 2, "the web provider's polls got no 304");
    write_atomic(
        &path,
        &crate::runtime_support::one_flag("web-flag", "after"),
    );
    assert_eq!(
        next_line().await,
        json!({"event": "changed", "value": "after", "variant": "v", "reason": "STATIC"})
    );
    let status = tokio::time::timeout(CLIENT_TIMEOUT, child.wait())
        .await
        .expect("node exits")
        .expect("wait");
    assert!(status.success(), "{status}");
    daemon.shutdown().await.expect("clean shutdown");
}

async fn metrics_text(daemon: &flagpole::Daemon) -> String {
    crate::runtime_support::http_get(daemon.addrs().management, "/metrics")
        .await
        .2
}

/// How many OFREP bulk requests were answered 304, from the HTTP request histogram's count.
fn count_304(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("http_server_request_duration_seconds_count")
                && l.contains("/ofrep/v1/evaluate/flags\"")
                && l.contains("\"304\"")
        })
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|n| n.parse::<f64>().ok())
        .map(|n| n as u64)
        .sum()
}

#[test]
fn web_ofrep_provider_hears_a_change_over_server_sent_events() {
    use std::io::BufRead;

    let node_dir = node_client_dir("@openfeature/ofrep-web-provider");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    write_atomic(
        &path,
        &crate::runtime_support::one_flag("web-flag", "before"),
    );
    let daemon = crate::clients::ChildDaemon::start(&path, dir.path(), &["--ofrep-sse-enabled"]);
    let base_url = format!("http://127.0.0.1:{}", daemon.ports.ofrep);
    let mut child = std::process::Command::new("node")
        .current_dir(&node_dir)
        .args([
            "--experimental-eventsource",
            "--no-warnings",
            "ofrep-web-sse-check.mjs",
            &base_url,
            "web-flag",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = || -> Value {
        let line = lines_rx
            .recv_timeout(CLIENT_TIMEOUT)
            .expect("the web provider printed a line in time (see its stderr)");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    };
    assert_eq!(
        next_line(),
        json!({"event": "ready", "value": "before", "variant": "v", "reason": "STATIC"})
    );
    // The provider holds one change stream, and polls nothing.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, page) = crate::admin::get_text(daemon.ports.management, "/metrics");
        if page.contains("flagpole_ofrep_sse_streams 1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no stream open:\n{page}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    write_atomic(
        &path,
        &crate::runtime_support::one_flag("web-flag", "after"),
    );
    assert_eq!(
        next_line(),
        json!({"event": "changed", "value": "after", "variant": "v", "reason": "STATIC"})
    );
    let status = child.wait().expect("node exits");
    assert!(status.success(), "{status}");
}

/// Reads one server-sent event's `data:` line from `reader` (comments and blank lines skipped).
fn next_sse_data(reader: &mut impl std::io::BufRead) -> Value {
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line).expect("read the stream");
        assert!(read > 0, "the stream ended");
        if let Some(data) = line.trim_end().strip_prefix("data:") {
            return serde_json::from_str(data.trim()).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        }
    }
}

#[test]
fn change_streams_are_advertised_per_selector_and_announce_only_their_flags() {
    use std::io::{BufRead, Write};

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    let flags = |a: &str, b: &str| {
        json!({"flags": {
            "a": {"state": "ENABLED", "variants": {"v": a}, "defaultVariant": "v", "metadata": {"flagSetId": "one"}},
            "b": {"state": "ENABLED", "variants": {"v": b}, "defaultVariant": "v", "metadata": {"flagSetId": "two"}}
        }})
        .to_string()
    };
    write_atomic(&path, &flags("1", "1"));
    let mut daemon = crate::clients::ChildDaemon::start(
        &path,
        dir.path(),
        &["--ofrep-sse-enabled", "--ofrep-sse-inactivity-delay", "45s"],
    );
    let port = daemon.ports.ofrep;
    let post_bulk = |selector: &str| -> Value {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let body = r#"{"context": {}}"#;
        write!(
            stream,
            "POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/json\r\nFlagd-Selector: {selector}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer).expect("read");
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{answer}: {e}"))
    };
    let bulk = post_bulk("flagSetId=one");
    assert_eq!(
        bulk["eventStreams"],
        json!([{"type": "sse", "inactivityDelaySec": 45,
                "endpoint": {"requestUri": "/ofrep/v1/events?selector=flagSetId%3Done"}}])
    );
    let open = |uri: &str| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            stream,
            "GET {uri} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
        )
        .expect("write");
        let mut reader = std::io::BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read head");
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{head}"
        );
        reader
    };
    let mut one = open("/ofrep/v1/events?selector=flagSetId%3Done");
    let mut all = open("/ofrep/v1/events");
    // A change to `b` reaches the unselected stream only; then a change to `a` reaches both.
    write_atomic(&path, &flags("1", "2"));
    assert_eq!(
        next_sse_data(&mut all),
        json!({"type": "refetchEvaluation", "flags": ["b"]})
    );
    write_atomic(&path, &flags("2", "2"));
    assert_eq!(
        next_sse_data(&mut one),
        json!({"type": "refetchEvaluation", "flags": ["a"]}),
        "the first event on the flagSetId=one stream is the change to `a`"
    );
    assert_eq!(
        next_sse_data(&mut all),
        json!({"type": "refetchEvaluation", "flags": ["a"]})
    );
    // Bad requests.
    let (status, _) =
        crate::admin::request(port, "GET", "/ofrep/v1/events?selector=nope%3D1", None, "");
    assert_eq!(status, 400);
    let (status, _) = crate::admin::request(port, "GET", "/ofrep/v1/events?typo=1", None, "");
    assert_eq!(status, 400);
    // Open streams end at shutdown; they do not hold it up.
    let stopping = std::time::Instant::now();
    assert!(daemon.terminate().success());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut all, &mut rest);
}

#[test]
fn without_the_flag_nothing_is_advertised_and_the_route_is_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    write_atomic(&path, &crate::runtime_support::one_flag("f", "x"));
    let daemon = crate::clients::ChildDaemon::start(&path, dir.path(), &[]);
    let (status, bulk) = crate::admin::request(
        daemon.ports.ofrep,
        "POST",
        "/ofrep/v1/evaluate/flags",
        None,
        r#"{"context": {}}"#,
    );
    assert_eq!(status, 200, "{bulk}");
    assert!(bulk.get("eventStreams").is_none(), "{bulk}");
    let (status, answer) =
        crate::admin::request(daemon.ports.ofrep, "GET", "/ofrep/v1/events", None, "");
    assert_eq!(status, 404, "{answer}");
}
