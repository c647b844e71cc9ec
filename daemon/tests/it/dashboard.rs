//! The dashboard in a real headless Chromium (Debian's `chromium`, driven by `playwright-core` from npm:
//! `clients/node/dashboard-check.mjs`), against the real binary: the page loads under its
//! Content-Security-Policy without a console error, is usable by role and label, explains, refuses the
//! kill switch without a token, sets it after a confirmation with one, and follows changes live.

use std::time::Duration;

use serde_json::{Value, json};

use crate::clients::ChildDaemon;
use crate::runtime_support::node_client_dir;

const FLAGS: &str = r#"{"flags": {
  "<img src=x onerror=alert(1)>": {"state": "ENABLED", "variants": {"<b>v</b>": 1}, "defaultVariant": "<b>v</b>",
               "metadata": {"owner": "<script>alert(2)</script>"}},
  "checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
               "metadata": {"owner": "payments"},
               "targeting": {"if": [{"==": [{"var": "plan"}, "free"]}, "off", "on"]}}
}}"#;

#[test]
fn an_operator_uses_the_dashboard_in_a_real_browser() {
    let node_dir = node_client_dir("playwright-core");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        std::path::Path::new(&chromium).is_file(),
        "{chromium} is missing: run scripts/install-test-clients.sh (it installs Debian's chromium)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, FLAGS).expect("flags");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "oncall:s3cret\n").expect("tokens");
    let daemon = ChildDaemon::start(
        &flags,
        dir.path(),
        &["--admin-token-file", tokens.to_str().expect("utf-8")],
    );
    let base = format!("http://127.0.0.1:{}", daemon.ports.management);
    let edited = FLAGS.replace("payments", "checkout-team");
    let output = std::process::Command::new("node")
        .current_dir(&node_dir)
        .env("CHROMIUM", &chromium)
        .args([
            "dashboard-check.mjs",
            &base,
            "checkout",
            "s3cret",
            flags.to_str().expect("utf-8"),
            &edited,
        ])
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}\n{stderr}")))
        .collect();
    let check = |name: &str| -> &Value {
        lines
            .iter()
            .find(|l| l["check"] == name)
            .unwrap_or_else(|| panic!("no {name} check:\n{stdout}\n{stderr}"))
    };
    assert_eq!(
        lines.last(),
        Some(&json!({"ok": true})),
        "{stdout}\n{stderr}"
    );
    assert_eq!(
        check("headers")["csp"],
        flagpole::protocols::admin::dashboard::CONTENT_SECURITY_POLICY
    );
    assert_eq!(check("first-tab")["focused"], "Skip to content");
    assert_eq!(
        check("hostile-names")["injected"],
        0,
        "names from the flag file are text, never markup"
    );
    let explain = check("explain");
    assert!(
        explain["answer"]
            .as_str()
            .is_some_and(|a| a.starts_with("TARGETING_MATCH: variant off")),
        "{explain}"
    );
    assert!(explain["skipped"].as_u64() >= Some(1), "{explain}");
    assert!(
        explain["taken"].as_array().is_some_and(|t| t
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.starts_with("if")))),
        "{explain}"
    );
    assert!(
        check("refused-without-token")["refused"]
            .as_str()
            .is_some_and(|r| r.contains("Not set")),
        "{stdout}"
    );
    assert_eq!(check("cancelled")["overrides"], json!([]));
    let set = check("override-set");
    assert!(
        set["question"]
            .as_str()
            .is_some_and(|q| q.contains("serve off of checkout to everyone")),
        "{set}"
    );
    assert!(
        set["overridden"]
            .as_str()
            .is_some_and(|o| o.contains("oncall") && o.contains("incident 7")),
        "{set}"
    );
    assert!(
        check("live-change")["newest"]
            .as_str()
            .is_some_and(|n| n.contains("update checkout")),
        "{stdout}"
    );
    // What the browser did really happened.
    let (_, list) = crate::admin::request(
        daemon.ports.management,
        "GET",
        "/api/v1/overrides",
        None,
        "",
    );
    assert_eq!(list["overrides"]["checkout"]["actor"], "oncall");
    std::thread::sleep(Duration::from_millis(10));
}
