//! `POST /api/v1/explain` and `flagpole explain` against the real binary: the answer equals what the
//! evaluation port answers for the same request (context, `-X`, `-H`), the path is there, bad input is a
//! clear 4xx, and the command explains from a daemon or from files.

use serde_json::{Value, json};

use crate::admin::request;
use crate::clients::ChildDaemon;

const FLAGS: &str = r#"{"$evaluators": {"paying": {"in": [{"var": "plan"}, ["pro", "team"]]}},
 "flags": {
  "checkout": {"state": "ENABLED", "variants": {"new": "new", "old": "old", "ab": "ab"}, "defaultVariant": "old",
               "metadata": {"flagSetId": "shop", "owner": "payments"},
               "targeting": {"if": [{"$ref": "paying"}, "new",
                                    {"==": [{"var": "env"}, "prod"]}, {"fractional": [["ab", 50], ["old", 50]]},
                                    "old"]}}
}}"#;

fn start(dir: &std::path::Path) -> ChildDaemon {
    let flags = dir.join("flags.json");
    std::fs::write(&flags, FLAGS).expect("flags");
    ChildDaemon::start(&flags, dir, &["-X", "env=prod", "-H", "X-Plan=plan"])
}

/// `checkout` over Connect JSON on the evaluation port, with an `X-Plan` header when given.
fn evaluate(daemon: &ChildDaemon, context: &Value, plan: Option<&str>) -> Value {
    use std::io::{Read, Write};
    let body = json!({"flagKey": "checkout", "context": context}).to_string();
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", daemon.ports.evaluation)).expect("connect");
    let header = plan.map_or_else(String::new, |p| format!("X-Plan: {p}\r\n"));
    let head = format!(
        "POST /flagd.evaluation.v1.Service/ResolveString HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\n{header}Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(body.as_bytes()).expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {response}"))
}

fn explain(daemon: &ChildDaemon, body: &Value) -> (u16, Value) {
    request(
        daemon.ports.management,
        "POST",
        "/api/v1/explain",
        None,
        &body.to_string(),
    )
}

#[test]
fn explain_answers_what_evaluation_answers_and_shows_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path());
    for (context, plan) in [
        (json!({"targetingKey": "u-1"}), None),
        (json!({"targetingKey": "u-2"}), Some("pro")),
        (json!({"targetingKey": "u-3", "plan": "team"}), None),
        (json!({"targetingKey": "u-4", "plan": "team"}), Some("free")),
        (json!({}), None),
    ] {
        let evaluated = evaluate(&daemon, &context, plan);
        let mut body = json!({"flagKey": "checkout", "context": context});
        if let Some(plan) = plan {
            body["headers"] = json!({"x-plan": plan});
        }
        let (status, explained) = explain(&daemon, &body);
        assert_eq!(status, 200, "{explained}");
        assert_eq!(explained["value"], evaluated["value"], "{context} {plan:?}");
        assert_eq!(
            explained["variant"], evaluated["variant"],
            "{context} {plan:?}"
        );
        assert_eq!(
            explained["reason"], evaluated["reason"],
            "{context} {plan:?}"
        );
        assert_eq!(explained["context"]["static"], json!({"env": "prod"}));
        assert_eq!(explained["context"]["evaluated"]["env"], "prod");
        if let Some(plan) = plan {
            assert_eq!(explained["context"]["fromHeaders"], json!({"plan": plan}));
            assert_eq!(explained["context"]["evaluated"]["plan"], plan);
        }
        let path = &explained["targeting"]["path"];
        assert_eq!(path["op"], "if");
        assert_eq!(path["children"][0]["ref"], json!(["paying"]));
        assert_eq!(explained["flagSetId"], "shop");
        assert_eq!(explained["metadata"]["owner"], "payments");
    }
    // A fractional answer names its bucketing.
    let (_, explained) = explain(
        &daemon,
        &json!({"flagKey": "checkout", "context": {"targetingKey": "u-9"}}),
    );
    let fractional = &explained["targeting"]["path"]["children"][3]["detail"];
    assert_eq!(fractional["kind"], "fractional");
    assert_eq!(fractional["bucketingKey"], "checkoutu-9");
    assert_eq!(fractional["chosen"], explained["variant"]);
}

#[test]
fn explain_refuses_bad_requests_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path());
    let management = daemon.ports.management;
    let post = |body: &str| request(management, "POST", "/api/v1/explain", None, body);
    let cases = [
        ("{not json", 400, "malformed body"),
        (
            r#"{"flagKey": "checkout", "typo": 1}"#,
            400,
            "unknown field",
        ),
        (r#"{"context": {}}"#, 400, "flagKey"),
        (
            r#"{"flagKey": "checkout", "context": [1]}"#,
            400,
            "must be an object",
        ),
        (
            r#"{"flagKey": "checkout", "headers": {"bad header": "x"}}"#,
            400,
            "not a header name",
        ),
        (
            r#"{"flagKey": "checkout", "headers": {"x-plan": 1}}"#,
            400,
            "string value",
        ),
        (
            r#"{"flagKey": "checkout", "selector": "nope=1"}"#,
            400,
            "selector",
        ),
        (r#"{"flagKey": "nope"}"#, 404, "not found"),
        (
            r#"{"flagKey": "checkout", "selector": "flagSetId=other"}"#,
            404,
            "selection",
        ),
    ];
    for (body, status, says) in cases {
        let (got, answer) = post(body);
        assert_eq!(got, status, "{body}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{body}: {message}");
    }
    let huge = json!({"flagKey": "checkout", "context": {"k": "x".repeat(70_000)}}).to_string();
    assert_eq!(post(&huge).0, 413);
    let deep = format!(
        r#"{{"flagKey": "checkout", "context": {{"k": {}1{}}}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    assert_eq!(post(&deep).0, 400);
    // The daemon still answers.
    assert_eq!(post(r#"{"flagKey": "checkout"}"#).0, 200);
}

#[test]
fn the_explain_command_asks_a_daemon_or_reads_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path());
    let url = format!("http://127.0.0.1:{}", daemon.ports.management);
    let run = |args: &[&str]| {
        let output = crate::runtime_support::flagpole_command()
            .arg("explain")
            .args(args)
            .output()
            .expect("run flagpole explain");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&[
        "--flag",
        "checkout",
        "--context",
        r#"{"targetingKey": "u-1"}"#,
        "--header",
        "X-Plan=pro",
        "--management-url",
        &url,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("answer: reason TARGETING_MATCH, variant \"new\""),
        "{out}"
    );
    assert!(out.contains("from -X: {\"env\":\"prod\"}"), "{out}");
    assert!(out.contains("from -H headers: {\"plan\":\"pro\"}"), "{out}");
    assert!(out.contains("[$ref paying]"), "{out}");
    assert!(out.contains("(not evaluated)"), "{out}");

    let (code, out, _) = run(&[
        "--flag",
        "checkout",
        "--format",
        "json",
        "--management-url",
        &url,
    ]);
    assert_eq!(code, Some(0));
    let json: Value = serde_json::from_str(&out).expect("JSON output");
    // env=prod from -X reaches `fractional`, which has no targetingKey to bucket: the default variant.
    assert_eq!(json["reason"], "DEFAULT");
    assert_eq!(
        json["targeting"]["path"]["children"][3]["detail"]["nullBecause"],
        "no usable bucketing key"
    );

    let (code, out, _) = run(&["--flag", "nope", "--management-url", &url]);
    assert_eq!(code, Some(1));
    assert!(out.contains("not found"), "{out}");
    // A daemon that is not there is a clear error naming it, not a hang.
    let (code, _, err) = run(&[
        "--flag",
        "checkout",
        "--management-url",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("127.0.0.1:1"), "{err}");

    // From files: a later file wins a duplicated key, as a later source does.
    let first = dir.path().join("first.json");
    let second = dir.path().join("second.yaml");
    std::fs::write(&first, FLAGS).expect("write");
    std::fs::write(
        &second,
        "flags:\n  checkout:\n    state: ENABLED\n    variants: {x: 1}\n    defaultVariant: x\n",
    )
    .expect("write");
    let files = [
        first.to_str().expect("utf-8"),
        second.to_str().expect("utf-8"),
    ];
    let (code, out, err) = run(&["--flag", "checkout", files[0], files[1]]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&format!("source {}", files[1])), "{out}");
    assert!(
        out.contains("targeting: not run (the flag has no targeting)"),
        "{out}"
    );
    let (code, out, err) = run(&[
        "--flag",
        "checkout",
        "--context",
        r#"{"plan": "pro"}"#,
        files[0],
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("variant \"new\""), "{out}");

    // Bad input is a clear error.
    let (code, _, err) = run(&["--flag", "checkout", "--context", "[", files[0]]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--context"), "{err}");
    let (code, _, err) = run(&["--flag", "checkout", "--header", "a=b", files[0]]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--management-url"), "{err}");
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"flags\": ").expect("write");
    let (code, _, err) = run(&["--flag", "checkout", broken.to_str().expect("utf-8")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("broken.json"), "{err}");
}
