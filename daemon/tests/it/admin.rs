//! The admin API's kill switch against the real binary: tokens, bad input, every override reaching an
//! evaluation, surviving a restart through `--state-dir`, lifting on expiry, and a read-only daemon.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::clients::ChildDaemon;

const FLAGS: &str = r#"{"flags": {
  "checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
               "targeting": {"if": [{"==": [{"var": "plan"}, "free"]}, "off", "on"]}}
}}"#;

/// One HTTP/1.1 request to a local port: (status, body text).
fn exchange(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(body.as_bytes()).expect("write body");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

/// One HTTP/1.1 request to a local port: (status, body as JSON or `Value::Null`).
pub(crate) fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let (status, body) = exchange(port, method, path, token, body);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// `GET path` on a local port: (status, body text).
pub(crate) fn get_text(port: u16, path: &str) -> (u16, String) {
    exchange(port, "GET", path, None, "")
}

/// `checkout` resolved over Connect JSON on the evaluation port.
fn evaluate(daemon: &ChildDaemon) -> Value {
    let (status, answer) = request(
        daemon.ports.evaluation,
        "POST",
        "/flagd.evaluation.v1.Service/ResolveBoolean",
        None,
        r#"{"flagKey": "checkout", "context": {"plan": "paid"}}"#,
    );
    assert_eq!(status, 200, "{answer}");
    answer
}

fn put(daemon: &ChildDaemon, token: Option<&str>, body: &str) -> (u16, Value) {
    request(
        daemon.ports.management,
        "PUT",
        "/api/v1/overrides/checkout",
        token,
        body,
    )
}

#[test]
fn the_kill_switch_reaches_evaluations_survives_a_restart_and_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, FLAGS).expect("flags");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "oncall:s3cret\n").expect("tokens");
    let state = dir.path().join("state");
    let args = [
        "--admin-token-file",
        tokens.to_str().expect("utf-8"),
        "--state-dir",
        state.to_str().expect("utf-8"),
    ];
    let daemon = ChildDaemon::start(&flags, dir.path(), &args);
    let management = daemon.ports.management;

    let (status, list) = request(management, "GET", "/api/v1/overrides", None, "");
    assert_eq!((status, list), (200, json!({"overrides": {}})));
    assert_eq!(evaluate(&daemon)["value"], true);

    // Tokens.
    let body = r#"{"variant": "off", "reason": "incident 42"}"#;
    assert_eq!(put(&daemon, None, body).0, 401);
    assert_eq!(put(&daemon, Some("wrong"), body).0, 401);
    // Bad input: nothing changes.
    let unknown_flag = request(
        management,
        "PUT",
        "/api/v1/overrides/nope",
        Some("s3cret"),
        body,
    );
    assert_eq!(unknown_flag.0, 409, "{}", unknown_flag.1);
    assert_eq!(
        put(&daemon, Some("s3cret"), r#"{"variant": "maybe"}"#).0,
        422
    );
    assert_eq!(put(&daemon, Some("s3cret"), "{not json").0, 400);
    assert_eq!(
        put(&daemon, Some("s3cret"), r#"{"variant": "off", "typo": 1}"#).0,
        400
    );
    let huge_reason = json!({"variant": "off", "reason": "x".repeat(5000)}).to_string();
    assert_eq!(put(&daemon, Some("s3cret"), &huge_reason).0, 422);
    let huge_body = format!(
        r#"{{"variant": "off", "reason": "{}"}}"#,
        "x".repeat(70_000)
    );
    assert_eq!(put(&daemon, Some("s3cret"), &huge_body).0, 413);
    let deep = format!(
        r#"{{"variant": "off", "reason": {}"x"{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    assert_eq!(put(&daemon, Some("s3cret"), &deep).0, 400);
    assert_eq!(evaluate(&daemon)["value"], true);

    // The kill switch: everyone gets `off`, and the answer says why.
    let (status, set) = put(&daemon, Some("s3cret"), body);
    assert_eq!(status, 200, "{set}");
    let answer = evaluate(&daemon);
    assert_eq!(answer["value"], false, "{answer}");
    assert_eq!(answer["reason"], "STATIC");
    assert_eq!(answer["metadata"]["overridden"], true);
    assert_eq!(answer["metadata"]["overriddenBy"], "oncall");
    assert_eq!(answer["metadata"]["overrideReason"], "incident 42");

    // It survives a restart.
    drop(daemon);
    let daemon = ChildDaemon::start(&flags, dir.path(), &args);
    assert_eq!(evaluate(&daemon)["value"], false);
    let management = daemon.ports.management;
    let cleared = request(
        management,
        "DELETE",
        "/api/v1/overrides/checkout",
        Some("s3cret"),
        "",
    );
    assert_eq!(cleared.0, 200, "{}", cleared.1);
    assert_eq!(evaluate(&daemon)["value"], true);
    let again = request(
        management,
        "DELETE",
        "/api/v1/overrides/checkout",
        Some("s3cret"),
        "",
    );
    assert_eq!(again.0, 404);

    // An override with a ttl lifts by itself.
    let (status, _) = put(
        &daemon,
        Some("s3cret"),
        r#"{"state": "DISABLED", "ttl": "1s"}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(evaluate(&daemon)["reason"], "DISABLED");
    let deadline = Instant::now() + Duration::from_secs(10);
    while evaluate(&daemon)["reason"] == "DISABLED" {
        assert!(Instant::now() < deadline, "the override did not expire");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(evaluate(&daemon)["value"], true);

    // A corrupt state file is set aside at the next start, not fatal.
    drop(daemon);
    std::fs::write(state.join("overrides.json"), b"{broken").expect("corrupt");
    let daemon = ChildDaemon::start(&flags, dir.path(), &args);
    assert_eq!(evaluate(&daemon)["value"], true);
    let set_aside = std::fs::read_dir(&state)
        .expect("state dir")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("overrides.json.corrupt-")
        });
    assert!(set_aside, "{}", daemon.stderr());
    // The token is never written anywhere: not in logs, not in the state directory.
    assert!(!daemon.stderr().contains("s3cret"));
    for entry in std::fs::read_dir(&state)
        .expect("state dir")
        .filter_map(Result::ok)
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        assert!(!text.contains("s3cret"), "{}", entry.path().display());
    }
}

#[test]
fn without_a_token_file_writes_are_forbidden_and_say_how_to_enable_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, FLAGS).expect("flags");
    let daemon = ChildDaemon::start(&flags, dir.path(), &[]);
    let (status, answer) = put(&daemon, Some("anything"), r#"{"variant": "off"}"#);
    assert_eq!(status, 403);
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("--admin-token-file")),
        "{answer}"
    );
    assert_eq!(evaluate(&daemon)["value"], true);
}

#[test]
fn the_override_command_sets_lists_and_clears_through_the_admin_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, FLAGS).expect("flags");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# on call\noncall:s3cret\n").expect("tokens");
    let daemon = ChildDaemon::start(
        &flags,
        dir.path(),
        &["--admin-token-file", tokens.to_str().expect("utf-8")],
    );
    let url = format!("http://127.0.0.1:{}", daemon.ports.management);
    let cli = |args: &[&str], token: bool| {
        let mut command = crate::runtime_support::flagpole_command();
        command
            .arg("override")
            .args(args)
            .args(["--management-url", &url]);
        if token {
            command.arg("--token-file").arg(&tokens);
        }
        let output = command.output().expect("run flagpole override");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (code, _, stderr) = cli(&["set", "checkout", "--variant", "off"], false);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("HTTP 401"), "{stderr}");

    let (code, stdout, stderr) = cli(
        &[
            "set",
            "checkout",
            "--variant",
            "off",
            "--reason",
            "incident 7",
            "--ttl",
            "1h",
        ],
        true,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("\"actor\": \"oncall\""), "{stdout}");
    assert_eq!(evaluate(&daemon)["value"], false);

    let (code, stdout, _) = cli(&["list"], false);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("incident 7"), "{stdout}");

    let (code, _, stderr) = cli(&["set", "checkout", "--variant", "maybe"], true);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no variant `maybe`"), "{stderr}");

    assert_eq!(cli(&["clear", "checkout"], true).0, Some(0));
    assert_eq!(evaluate(&daemon)["value"], true);
    let (code, _, stderr) = cli(&["clear", "checkout"], true);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("HTTP 404"), "{stderr}");

    let (code, _, stderr) = cli(&["set", "checkout", "--disable"], true);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(evaluate(&daemon)["reason"], "DISABLED");
    // A daemon that is not there is a clear error, not a hang.
    let mut command = crate::runtime_support::flagpole_command();
    let output = command
        .args(["override", "list", "--management-url", "http://127.0.0.1:1"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("127.0.0.1:1"));
}

#[test]
fn the_change_journal_records_reloads_rejections_and_overrides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, FLAGS).expect("flags");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "oncall:s3cret\n").expect("tokens");
    let state = dir.path().join("state");
    let daemon = ChildDaemon::start(
        &flags,
        dir.path(),
        &[
            "--admin-token-file",
            tokens.to_str().expect("utf-8"),
            "--state-dir",
            state.to_str().expect("utf-8"),
        ],
    );
    let management = daemon.ports.management;
    let changes = |query: &str| {
        let (status, answer) = request(
            management,
            "GET",
            &format!("/api/v1/changes{query}"),
            None,
            "",
        );
        assert_eq!(status, 200, "{answer}");
        answer["changes"].as_array().cloned().unwrap_or_default()
    };
    let kinds = |entries: &[Value]| -> Vec<String> {
        entries
            .iter()
            .map(|e| e["kind"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    // The initial load wrote the flag.
    let initial = changes("?flag=checkout");
    assert_eq!(kinds(&initial), ["write"]);
    assert!(initial[0]["after"].as_str().is_some_and(|d| d.len() == 12));

    // An edit is an update with both digests; a broken file is a rejection with its error.
    let edited = FLAGS.replace(r#""defaultVariant": "on""#, r#""defaultVariant": "off""#);
    std::fs::write(&flags, edited).expect("edit");
    let deadline = Instant::now() + Duration::from_secs(10);
    while kinds(&changes("?flag=checkout")).len() < 2 {
        assert!(Instant::now() < deadline, "no update recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    let update = changes("?flag=checkout").pop().expect("update");
    assert_eq!(update["kind"], "update");
    assert_ne!(update["before"], update["after"]);
    std::fs::write(&flags, "{broken").expect("break");
    while !kinds(&changes("")).contains(&"rejected".to_owned()) {
        assert!(Instant::now() < deadline, "no rejection recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rejected = changes("")
        .into_iter()
        .find(|e| e["kind"] == "rejected")
        .expect("rejected");
    assert!(
        rejected["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{rejected}"
    );

    // Overrides, with who and why.
    assert_eq!(
        put(
            &daemon,
            Some("s3cret"),
            r#"{"variant": "off", "reason": "why not"}"#
        )
        .0,
        200
    );
    assert_eq!(
        request(
            management,
            "DELETE",
            "/api/v1/overrides/checkout",
            Some("s3cret"),
            ""
        )
        .0,
        200
    );
    let recent = changes("?flag=checkout&limit=2");
    assert_eq!(kinds(&recent), ["override_set", "override_cleared"]);
    assert_eq!(recent[0]["actor"], "oncall");
    assert_eq!(recent[0]["reason"], "why not");
    assert_eq!(
        request(management, "GET", "/api/v1/changes?nope=1", None, "").0,
        400
    );

    // The same entries are in the state directory's journal file, and counted.
    let file = std::fs::read_to_string(state.join("journal.jsonl")).expect("journal file");
    assert!(file.lines().count() >= 5, "{file}");
    let (_, metrics) = {
        let mut stream = TcpStream::connect(("127.0.0.1", management)).expect("connect");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        ((), text)
    };
    assert!(
        metrics.contains(r#"flagpole_changes_total{kind="override_set"} 1"#),
        "{metrics}"
    );
}

#[test]
fn a_hubs_override_reaches_a_chained_sidecar() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, FLAGS).expect("flags");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "oncall:s3cret\n").expect("tokens");
    let hub = ChildDaemon::start(
        &flags,
        dir.path(),
        &["--admin-token-file", tokens.to_str().expect("utf-8")],
    );
    // The sidecar reads the hub's sync port (its own file is empty).
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, r#"{"flags": {}}"#).expect("empty");
    let upstream = format!("grpc://127.0.0.1:{}", hub.ports.sync);
    let sidecar_dir = dir.path().join("sidecar");
    std::fs::create_dir(&sidecar_dir).expect("dir");
    let sidecar = ChildDaemon::start(&empty, &sidecar_dir, &["--uri", &upstream]);
    assert_eq!(evaluate(&sidecar)["value"], true);

    assert_eq!(
        put(
            &hub,
            Some("s3cret"),
            r#"{"variant": "off", "reason": "hub"}"#
        )
        .0,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = evaluate(&sidecar);
        if answer["value"] == false {
            assert_eq!(answer["metadata"]["overridden"], true, "{answer}");
            assert_eq!(answer["metadata"]["overrideReason"], "hub");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sidecar never saw the override"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
