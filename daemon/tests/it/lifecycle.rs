//! Flag lifecycle against the real binary: usage counted from real evaluations on every protocol, kept
//! across a graceful restart through `--state-dir`, the stale markers of `/api/v1/flags` and their gauges,
//! and one expiry warning per flag however often its document reloads.

use std::time::Duration;

use serde_json::{Value, json};

use crate::admin::request;
use crate::clients::ChildDaemon;

const FLAGS: &str = r#"{"flags": {
  "checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
               "metadata": {"owner": "payments", "kind": "release", "description": "new checkout"},
               "targeting": {"if": [{"==": [{"var": "plan"}, "free"]}, "off", "on"]}},
  "forgotten": {"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "a"},
  "old": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a", "metadata": {"expires": "2024-01-31"}},
  "rollout": {"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "a",
              "targeting": {"fractional": [["a", 0], ["b", 100]]}}
}}"#;

fn resolve(daemon: &ChildDaemon, key: &str, context: Value) -> Value {
    let (status, answer) = request(
        daemon.ports.evaluation,
        "POST",
        "/flagd.evaluation.v1.Service/ResolveBoolean",
        None,
        &json!({"flagKey": key, "context": context}).to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    answer
}

fn ofrep(daemon: &ChildDaemon, key: &str) {
    let (status, answer) = request(
        daemon.ports.ofrep,
        "POST",
        &format!("/ofrep/v1/evaluate/flags/{key}"),
        None,
        r#"{"context": {"targetingKey": "u"}}"#,
    );
    assert_eq!(status, 200, "{answer}");
}

fn flags(daemon: &ChildDaemon, query: &str) -> (u16, Value) {
    request(
        daemon.ports.management,
        "GET",
        &format!("/api/v1/flags{query}"),
        None,
        "",
    )
}

fn entry<'a>(list: &'a Value, key: &str) -> &'a Value {
    list["flags"]
        .as_array()
        .and_then(|all| all.iter().find(|f| f["key"] == key))
        .unwrap_or_else(|| panic!("no {key} in {list}"))
}

fn reasons(flag: &Value) -> Vec<String> {
    flag["stale"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|s| s["reason"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn usage_is_counted_kept_across_a_restart_and_listed_with_lifecycle_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags_file = dir.path().join("flags.json");
    std::fs::write(&flags_file, FLAGS).expect("flags");
    let state = dir.path().join("state");
    let args = ["--state-dir", state.to_str().expect("utf-8")];
    let mut daemon = ChildDaemon::start(&flags_file, dir.path(), &args);
    for _ in 0..3 {
        resolve(&daemon, "checkout", json!({"plan": "paid"}));
    }
    resolve(&daemon, "checkout", json!({"plan": "free"}));
    ofrep(&daemon, "checkout");
    let (status, list) = flags(&daemon, "");
    assert_eq!(status, 200, "{list}");
    let checkout = entry(&list, "checkout");
    assert_eq!(checkout["owner"], "payments");
    assert_eq!(checkout["kind"], "release");
    assert_eq!(checkout["source"], flags_file.display().to_string());
    assert_eq!(checkout["usage"]["evaluations"], 5, "{checkout}");
    assert_eq!(checkout["usage"]["variants"]["on"]["count"], 4);
    assert_eq!(checkout["usage"]["variants"]["off"]["count"], 1);
    assert!(checkout["usage"]["lastEvaluated"].as_u64() > Some(0));
    assert_eq!(entry(&list, "forgotten")["usage"]["evaluations"], 0);
    assert_eq!(reasons(entry(&list, "old")), ["expired"]);
    assert_eq!(reasons(entry(&list, "rollout")), ["settled_fractional"]);

    // A graceful restart writes the counts; the next daemon goes on from them.
    assert!(daemon.terminate().success());
    assert!(state.join("usage.json").is_file());
    let daemon = ChildDaemon::start(&flags_file, dir.path(), &args);
    resolve(&daemon, "checkout", json!({}));
    let (_, list) = flags(&daemon, "");
    assert_eq!(entry(&list, "checkout")["usage"]["evaluations"], 6);

    // One flag in detail, with its definition and changes.
    let (status, one) = request(
        daemon.ports.management,
        "GET",
        "/api/v1/flags/checkout",
        None,
        "",
    );
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["flags"][0]["definition"]["defaultVariant"], "on");
    assert!(
        one["changes"].as_array().is_some_and(|c| !c.is_empty()),
        "{one}"
    );
    let (status, _) = request(
        daemon.ports.management,
        "GET",
        "/api/v1/flags/nope",
        None,
        "",
    );
    assert_eq!(status, 404);
    let (status, answer) = flags(&daemon, "?stale=nope");
    assert_eq!(status, 400, "{answer}");
    let (status, _) = flags(&daemon, "?typo=1");
    assert_eq!(status, 400);
}

#[test]
fn stale_markers_appear_after_stale_after_and_reach_the_gauges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags_file = dir.path().join("flags.json");
    std::fs::write(&flags_file, FLAGS).expect("flags");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "oncall:s3cret\n").expect("tokens");
    let daemon = ChildDaemon::start(
        &flags_file,
        dir.path(),
        &[
            "--stale-after",
            "1s",
            "--admin-token-file",
            tokens.to_str().expect("utf-8"),
        ],
    );
    let (status, _) = request(
        daemon.ports.management,
        "PUT",
        "/api/v1/overrides/rollout",
        Some("s3cret"),
        r#"{"variant": "a", "reason": "hold"}"#,
    );
    assert_eq!(status, 200);
    resolve(&daemon, "checkout", json!({}));
    std::thread::sleep(Duration::from_millis(1300));
    // Only `on` within the last second, and known for longer: a finished rollout.
    resolve(&daemon, "checkout", json!({}));
    let (_, list) = flags(&daemon, "");
    assert_eq!(
        reasons(entry(&list, "checkout")),
        ["single_variant"],
        "{list}"
    );
    assert_eq!(reasons(entry(&list, "forgotten")), ["unused"]);
    assert_eq!(reasons(entry(&list, "old")), ["expired", "unused"]);
    assert_eq!(
        reasons(entry(&list, "rollout")),
        ["unused", "long_override"],
        "{list}"
    );
    let (_, only) = flags(&daemon, "?stale=long_override");
    assert_eq!(only["flags"].as_array().map(Vec::len), Some(1));

    // The gauges follow the next change (coalesced for a second, or the periodic pass) and agree with the
    // markers the API lists. By then every flag is unused (--stale-after 1s).
    let (status, _) = request(
        daemon.ports.management,
        "DELETE",
        "/api/v1/overrides/rollout",
        Some("s3cret"),
        "",
    );
    assert_eq!(status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, page) = crate::admin::get_text(daemon.ports.management, "/metrics");
        if page.contains(r#"flagpole_stale_flags{reason="unused"} 4"#)
            && page.contains(r#"flagpole_stale_flags{reason="expired"} 1"#)
            && page.contains(r#"flagpole_stale_flags{reason="settled_fractional"} 1"#)
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The expired flag is warned about once, however often its document reloads.
    for i in 0..3 {
        std::fs::write(&flags_file, FLAGS.replace("payments", &format!("team-{i}"))).expect("edit");
        std::thread::sleep(Duration::from_millis(400));
    }
    let log = daemon.stderr();
    assert_eq!(
        log.matches("flag expired on 2024-01-31").count(),
        1,
        "{log}"
    );
}
