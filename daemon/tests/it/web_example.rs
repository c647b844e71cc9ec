//! The example web app (`examples/web`, React with the OFREP web provider, built with Vite), the dashboard
//! and a real backend client (the Node flagd provider over RPC), in headless Chromium against the real
//! binary serving `examples/flags.json` (`clients/node/web-example-check.mjs`): the dashboard lists the
//! example's flags, explain shows the branch taken, a wrong token is refused in the page, the kill switch
//! reaches the app and the backend client within a second, and 20 flag file edits reach the open app and
//! dashboard without a reload (their p50/p99 are printed for `BENCHMARKS.md`). Screenshots of each state
//! go to `target/screenshots/`.

use serde_json::Value;

use crate::clients::ChildDaemon;
use crate::runtime_support::{node_client_dir, workspace_root};

#[test]
fn the_example_app_and_the_dashboard_follow_the_kill_switch_and_file_edits() {
    let node_dir = node_client_dir("playwright-core");
    let web_dir = workspace_root().join("examples/web");
    assert!(
        web_dir.join("node_modules/vite").is_dir(),
        "examples/web has no node_modules: run scripts/install-test-clients.sh"
    );
    let dist = workspace_root().join("target/web-example/dist");
    let built = std::process::Command::new("node")
        .current_dir(&web_dir)
        .env("FLAGPOLE_WEB_OUT", &dist)
        .args([
            "node_modules/vite/bin/vite.js",
            "build",
            "--logLevel",
            "warn",
        ])
        .output()
        .expect("vite runs");
    assert!(
        built.status.success(),
        "vite build failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    std::fs::copy(workspace_root().join("examples/flags.json"), &flags).expect("copy the example");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "release-manager:t0ken\n").expect("tokens");
    let daemon = ChildDaemon::start(
        &flags,
        dir.path(),
        &[
            "--ofrep-sse-enabled",
            "--admin-token-file",
            tokens.to_str().expect("utf-8"),
        ],
    );
    let shots = workspace_root().join("target/screenshots");
    let output = std::process::Command::new("node")
        .current_dir(&node_dir)
        .args([
            "web-example-check.mjs",
            &format!("http://127.0.0.1:{}", daemon.ports.management),
            &format!("http://127.0.0.1:{}", daemon.ports.ofrep),
            &daemon.ports.evaluation.to_string(),
            "t0ken",
            flags.to_str().expect("utf-8"),
            dist.to_str().expect("utf-8"),
            shots.to_str().expect("utf-8"),
        ])
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    let lines: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let check = |name: &str| -> &Value {
        lines
            .iter()
            .find(|l| l["check"] == name)
            .unwrap_or_else(|| panic!("no {name} check:\n{stdout}\n{stderr}"))
    };
    assert_eq!(
        lines.last().map(|l| &l["ok"]),
        Some(&Value::Bool(true)),
        "{stdout}\n{stderr}"
    );
    let listed = check("dashboard-flags")["listed"].clone();
    for key in [
        "new-checkout",
        "header-color",
        "max-items",
        "discount-rate",
        "banner",
        "legacy-search",
    ] {
        assert!(
            listed
                .as_array()
                .is_some_and(|l| l.iter().any(|k| k == key)),
            "{key} not listed: {listed}"
        );
    }
    assert_eq!(check("shop")["checkout"], "classic");
    assert_eq!(check("shop")["banner"], "Welcome");
    let explain = check("explain");
    assert!(
        explain["answer"]
            .as_str()
            .is_some_and(|a| a.starts_with("TARGETING_MATCH: variant on")),
        "{explain}"
    );
    assert!(
        check("wrong-token")["refused"]
            .as_str()
            .is_some_and(|r| r.contains("Not set")),
        "{stdout}"
    );
    assert_eq!(
        check("shop-state")["streams"],
        "1",
        "the shop holds one change stream"
    );
    let kill = check("kill-switch");
    assert_eq!(kill["before"], false);
    assert!(kill["shopMs"].as_u64() < Some(1000), "{kill}");
    assert!(kill["backendMs"].as_u64() < Some(1000), "{kill}");
    let edits = check("edits");
    assert_eq!(edits["count"], 20);
    assert!(edits["shopP99"].as_u64() < Some(5000), "{edits}");
    assert!(edits["dashboardP99"].as_u64() < Some(5000), "{edits}");
    for shot in [
        "1-dashboard-flags.png",
        "6-shop-overridden.png",
        "8-dashboard-after-edits.png",
    ] {
        assert!(shots.join(shot).is_file(), "{shot} missing");
    }
}
