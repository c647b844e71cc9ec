//! File sources: every way a flag file changes is noticed, bad content never loses the last good flags,
//! and a deleted file is picked up again when it comes back (flagd#1876).

use flagpole_engine::Value;

use crate::runtime_support::{default_value, one_flag, start_with_files, wait_for, write_atomic};

fn value(s: &str) -> Option<Value> {
    Some(Value::String(s.to_owned()))
}

#[tokio::test]
async fn in_place_edit_is_noticed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    std::fs::write(&path, one_flag("color", "red")).expect("write");
    let daemon = start_with_files(&[&path]).await;
    assert_eq!(
        default_value(&daemon.store().snapshot(), "color"),
        value("red")
    );

    std::fs::write(&path, one_flag("color", "blue")).expect("rewrite");
    wait_for(&daemon, "color = blue", |s| {
        default_value(s, "color") == value("blue")
    })
    .await;
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn atomic_rename_replace_is_noticed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    std::fs::write(&path, one_flag("color", "red")).expect("write");
    let daemon = start_with_files(&[&path]).await;

    write_atomic(&path, &one_flag("color", "green"));
    wait_for(&daemon, "color = green", |s| {
        default_value(s, "color") == value("green")
    })
    .await;
    write_atomic(&path, &one_flag("color", "blue"));
    wait_for(&daemon, "color = blue", |s| {
        default_value(s, "color") == value("blue")
    })
    .await;
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn deleted_file_keeps_its_flags_and_is_picked_up_when_it_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.yaml");
    std::fs::write(
        &path,
        "flags:\n  color:\n    state: ENABLED\n    variants: {v: red}\n    defaultVariant: v\n",
    )
    .expect("write");
    let daemon = start_with_files(&[&path]).await;
    assert_eq!(
        default_value(&daemon.store().snapshot(), "color"),
        value("red")
    );

    std::fs::remove_file(&path).expect("delete");
    // Give the watcher a chance to see the deletion; the flags must still be there afterwards.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        default_value(&daemon.store().snapshot(), "color"),
        value("red"),
        "flags lost on delete"
    );

    std::fs::write(
        &path,
        "flags:\n  color:\n    state: ENABLED\n    variants: {v: back}\n    defaultVariant: v\n",
    )
    .expect("recreate");
    wait_for(&daemon, "color = back", |s| {
        default_value(s, "color") == value("back")
    })
    .await;
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn invalid_content_keeps_the_last_good_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    std::fs::write(&path, one_flag("color", "red")).expect("write");
    let daemon = start_with_files(&[&path]).await;

    std::fs::write(&path, "{\"flags\": {\"color\": ").expect("truncate to invalid JSON");
    std::fs::write(dir.path().join("marker.json"), "{}").expect("unrelated file");
    // A later valid write proves the watcher was still alive after the invalid one.
    let rejected = || {
        daemon
            .metrics()
            .encode()
            .contains("flagpole_source_rejected_payloads_total")
    };
    for _ in 0..100 {
        if rejected() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        rejected(),
        "the invalid payload was not counted as rejected"
    );
    assert_eq!(
        default_value(&daemon.store().snapshot(), "color"),
        value("red"),
        "last good flags lost"
    );
    // The broken file is named among the sources of /readyz (its body lists these states).
    let file_state = || {
        daemon
            .metrics()
            .source_fetch_states()
            .into_iter()
            .find(|(source, _)| source.ends_with("flags.json"))
            .map(|(_, state)| state)
    };
    let broken = file_state().expect("the file source's state");
    assert!(broken.consecutive_failures >= 1, "{broken:?}");
    // The dashboard's source list: a local source, with its health.
    let (_, _, body) =
        crate::runtime_support::http_get(daemon.addrs().management, "/api/v1/sources").await;
    let listed: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(listed["sources"][0]["remote"], false, "{body}");
    assert!(
        listed["sources"][0]["consecutiveFailures"].as_u64() >= Some(1),
        "{body}"
    );
    assert!(
        broken.last_error.is_some() && broken.last_success.is_some(),
        "{broken:?}"
    );

    std::fs::write(&path, "").expect("empty file");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        default_value(&daemon.store().snapshot(), "color"),
        value("red"),
        "empty file cleared flags"
    );

    std::fs::write(&path, one_flag("color", "blue")).expect("valid again");
    wait_for(&daemon, "color = blue", |s| {
        default_value(s, "color") == value("blue")
    })
    .await;
    // The state is updated just after the snapshot is published.
    for _ in 0..100 {
        if file_state().expect("state").consecutive_failures == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        file_state().expect("state").consecutive_failures,
        0,
        "a good load ends the failure streak"
    );
    daemon.shutdown().await.expect("clean shutdown");
}

#[cfg(unix)]
#[tokio::test]
async fn kubernetes_configmap_symlink_swap_is_noticed() {
    use std::os::unix::fs::symlink;
    // The layout kubelet writes: flags.json -> ..data/flags.json, ..data -> ..2024_01 (timestamped dir).
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir(root.join("..2024_01")).expect("mkdir");
    std::fs::write(root.join("..2024_01/flags.json"), one_flag("color", "red")).expect("write");
    symlink("..2024_01", root.join("..data")).expect("symlink ..data");
    symlink("..data/flags.json", root.join("flags.json")).expect("symlink flags.json");
    let path = root.join("flags.json");
    let daemon = start_with_files(&[&path]).await;
    assert_eq!(
        default_value(&daemon.store().snapshot(), "color"),
        value("red")
    );

    // The update: a new timestamped dir, a temporary symlink, renamed over ..data, old dir removed.
    std::fs::create_dir(root.join("..2024_02")).expect("mkdir");
    std::fs::write(root.join("..2024_02/flags.json"), one_flag("color", "blue")).expect("write");
    symlink("..2024_02", root.join("..data_tmp")).expect("symlink tmp");
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap ..data");
    std::fs::remove_dir_all(root.join("..2024_01")).expect("remove old");
    wait_for(&daemon, "color = blue", |s| {
        default_value(s, "color") == value("blue")
    })
    .await;
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn identical_rewrites_publish_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    std::fs::write(&path, one_flag("color", "red")).expect("write");
    let daemon = start_with_files(&[&path]).await;
    let mut changes = daemon.store().subscribe();
    changes.mark_unchanged();

    std::fs::write(&path, one_flag("color", "red")).expect("identical rewrite");
    write_atomic(&path, &one_flag("color", "red"));
    std::fs::write(&path, one_flag("color", "blue")).expect("real change");
    wait_for(&daemon, "color = blue", |s| {
        default_value(s, "color") == value("blue")
    })
    .await;
    // Exactly one reload after the initial load: the identical rewrites were skipped by content hash.
    let metrics = daemon.metrics().encode();
    let reloads = metrics
        .lines()
        .find(|l| l.starts_with("flagpole_source_reloads_total"))
        .and_then(|l| l.rsplit(' ').next())
        .map(str::to_owned);
    assert_eq!(reloads.as_deref(), Some("2"), "{metrics}");
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_later_source_wins_and_the_earlier_definition_comes_back_when_it_drops_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let low = dir.path().join("low.json");
    let high = dir.path().join("high.json");
    std::fs::write(&low, one_flag("color", "low")).expect("write");
    std::fs::write(&high, one_flag("color", "high")).expect("write");
    let daemon = start_with_files(&[&low, &high]).await;
    assert_eq!(
        default_value(&daemon.store().snapshot(), "color"),
        value("high")
    );

    std::fs::write(&high, r#"{"flags": {}}"#).expect("drop the key");
    // flagd loses the flag here (flagd#1809); flagpole falls back to the lower-priority source.
    wait_for(&daemon, "color = low", |s| {
        default_value(s, "color") == value("low")
    })
    .await;
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn sources_in_one_directory_and_in_another_are_each_watched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let other = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    let c = other.path().join("c.yaml");
    std::fs::write(&a, one_flag("flag-a", "a1")).expect("write");
    std::fs::write(&b, one_flag("flag-b", "b1")).expect("write");
    std::fs::write(
        &c,
        "flags:\n  flag-c:\n    variants: {v: c1}\n    defaultVariant: v\n    state: ENABLED\n",
    )
    .expect("write");
    let daemon = start_with_files(&[&a, &b, &c]).await;

    write_atomic(&b, &one_flag("flag-b", "b2"));
    wait_for(&daemon, "flag-b = b2", |s| {
        default_value(s, "flag-b") == value("b2")
    })
    .await;
    std::fs::write(
        &c,
        "flags:\n  flag-c:\n    variants: {v: c2}\n    defaultVariant: v\n    state: ENABLED\n",
    )
    .expect("rewrite");
    wait_for(&daemon, "flag-c = c2", |s| {
        default_value(s, "flag-c") == value("c2")
    })
    .await;
    std::fs::write(&a, one_flag("flag-a", "a2")).expect("rewrite");
    wait_for(&daemon, "flag-a = a2", |s| {
        default_value(s, "flag-a") == value("a2")
    })
    .await;
    assert_eq!(
        default_value(&daemon.store().snapshot(), "flag-b"),
        value("b2")
    );
    daemon.shutdown().await.expect("clean shutdown");
}
