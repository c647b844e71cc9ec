//! The browser flagd provider against the evaluation port: `@openfeature/flagd-web-provider` (with
//! `@openfeature/web-sdk`), run in Node by `clients/node/web-check.mjs` and installed by
//! `scripts/install-test-clients.sh` (a missing client fails the test and names that script). It speaks
//! Connect (JSON, over `fetch`): an EventStream whose `provider_ready` makes it fetch every flag with
//! ResolveAll, and whose `configuration_change` makes it fetch again. The expected lines are what the same
//! program sees from flagd 0.16 for the same flags.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::runtime_support::{node_client_dir, start_with_files, write_atomic};

/// How long the client may take for one line.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

/// The flag file, with `change-flag` defaulting to `change`.
fn flags(change: &str) -> String {
    json!({
        "flags": {
            "bool-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
            "string-flag": {"state": "ENABLED", "variants": {"yes": "YES", "no": "NO"}, "defaultVariant": "no",
                "targeting": {"if": [{"==": [{"var": "email"}, "a@example.com"]}, "yes", null]}},
            "number-flag": {"state": "ENABLED", "variants": {"half": 1.5}, "defaultVariant": "half"},
            "int-flag": {"state": "ENABLED", "variants": {"answer": 42}, "defaultVariant": "answer"},
            "object-flag": {"state": "ENABLED", "variants": {"obj": {"a": 1, "b": "x"}}, "defaultVariant": "obj"},
            "disabled-flag": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"},
            "change-flag": {"state": "ENABLED", "variants": {"before": "before", "after": "after"},
                "defaultVariant": change}
        }
    })
    .to_string()
}

/// (check, expected line) pairs.
fn cases() -> Vec<(Value, Value)> {
    let ok = |flag: &str, value: Value, variant: &str, reason: &str| json!({"flag": flag, "value": value, "variant": variant, "reason": reason, "error": null});
    let error = |flag: &str, value: Value, code: &str| json!({"flag": flag, "value": value, "variant": null, "reason": "ERROR", "error": code});
    vec![
        (
            json!({"kind": "boolean", "flag": "bool-flag", "default": false}),
            ok("bool-flag", json!(true), "on", "STATIC"),
        ),
        (
            json!({"kind": "string", "flag": "string-flag", "default": "dflt"}),
            ok("string-flag", json!("YES"), "yes", "TARGETING_MATCH"),
        ),
        (
            json!({"kind": "number", "flag": "number-flag", "default": 0}),
            ok("number-flag", json!(1.5), "half", "STATIC"),
        ),
        (
            json!({"kind": "number", "flag": "int-flag", "default": 0}),
            ok("int-flag", json!(42), "answer", "STATIC"),
        ),
        (
            json!({"kind": "object", "flag": "object-flag", "default": {}}),
            ok("object-flag", json!({"a": 1, "b": "x"}), "obj", "STATIC"),
        ),
        (
            json!({"kind": "string", "flag": "change-flag", "default": "dflt"}),
            ok("change-flag", json!("before"), "before", "STATIC"),
        ),
        (
            json!({"kind": "string", "flag": "bool-flag", "default": "dflt"}),
            error("bool-flag", json!("dflt"), "TYPE_MISMATCH"),
        ),
        // flagd 0.16 ResolveAll includes a disabled flag as its type's zero value, variant "" and reason
        // DISABLED (`docs/protocols.md#answers-per-protocol`), and the provider hands that on as a success.
        (
            json!({"kind": "boolean", "flag": "disabled-flag", "default": true}),
            ok("disabled-flag", json!(false), "", "DISABLED"),
        ),
        (
            json!({"kind": "boolean", "flag": "missing-flag", "default": true}),
            error("missing-flag", json!(true), "FLAG_NOT_FOUND"),
        ),
    ]
}

#[tokio::test]
async fn web_provider_resolves_all_over_connect_and_sees_a_flag_file_edit() {
    let node_dir = node_client_dir("@openfeature/flagd-web-provider");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    write_atomic(&path, &flags("before"));
    let daemon = start_with_files(&[&path]).await;
    let port = daemon.addrs().evaluation.port().to_string();
    let (checks, expected): (Vec<Value>, Vec<Value>) = cases().into_iter().unzip();
    let mut child = tokio::process::Command::new("node")
        .current_dir(&node_dir)
        .arg("web-check.mjs")
        .arg(&port)
        .arg(Value::Array(checks).to_string())
        .arg("change-flag")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut next_line = async || -> Value {
        let line = tokio::time::timeout(LINE_TIMEOUT, lines.next_line())
            .await
            .expect("the web provider answers in time")
            .expect("read stdout")
            .expect("the web provider printed a line (see its stderr)");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    };

    let mut differences = Vec::new();
    for want in &expected {
        let got = next_line().await;
        if &got != want {
            differences.push(format!("  want {want}\n  got  {got}"));
        }
    }
    assert!(
        differences.is_empty(),
        "the web provider disagrees with flagd:\n{}",
        differences.join("\n")
    );
    assert_eq!(next_line().await, json!({"event": "ready"}));

    write_atomic(&path, &flags("after"));
    assert_eq!(
        next_line().await,
        json!({"event": "changed", "flag": "change-flag", "value": "after", "variant": "after",
               "reason": "STATIC", "error": null})
    );
    let status = tokio::time::timeout(LINE_TIMEOUT, child.wait())
        .await
        .expect("node exits")
        .expect("wait");
    assert!(status.success(), "{status}");
    daemon.shutdown().await.expect("clean shutdown");
}
