//! The running daemon: readiness, health (HTTP and gRPC), metrics, start-up failures and shutdown.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use flagpole::StartError;
use flagpole::config::Listen;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::runtime_support::{
    file_source, http_get, local_config, one_flag, start_with_files, wait_for,
};

#[tokio::test]
async fn readiness_waits_for_a_good_load_and_turns_off_on_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    std::fs::write(&path, "{ not json").expect("write");
    let daemon = start_with_files(&[&path]).await;
    let management = daemon.addrs().management;

    let (status, _, _) = http_get(management, "/readyz").await;
    assert_eq!(status, 412, "ready although the only source never loaded");
    let (status, _, _) = http_get(management, "/healthz").await;
    assert_eq!(status, 200);

    std::fs::write(&path, one_flag("color", "red")).expect("fix the file");
    wait_for(&daemon, "color loaded", |s| s.len() == 1).await;
    // The latch is released right after the snapshot is published: poll briefly.
    let mut status = 0;
    for _ in 0..100 {
        status = http_get(management, "/readyz").await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200);

    let readiness = daemon.readiness().clone();
    daemon.shutdown().await.expect("clean shutdown");
    assert!(!readiness.is_ready(), "still ready after shutdown");
}

#[tokio::test]
async fn metrics_page_has_flagd_and_flagpole_metrics() {
    let daemon =
        start_with_files(&[&crate::runtime_support::workspace_root().join("examples/flags.json")])
            .await;
    daemon
        .metrics()
        .record_evaluation("banner", "plain", "STATIC", None);
    let (status, content_type, body) = http_get(daemon.addrs().management, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.contains("flagpole_flags 6\n"), "{body}");
    assert!(
        body.contains("feature_flag_flagd_impression_total{feature_flag_key=\"banner\""),
        "{body}"
    );
    assert!(
        body.contains("flagpole_source_reloads_total{source=\""),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn grpc_health_answers_serving_on_the_management_port() {
    let daemon =
        start_with_files(&[&crate::runtime_support::workspace_root().join("examples/flags.json")])
            .await;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", daemon.addrs().management))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to management port");
    let mut client = HealthClient::new(channel);
    let response = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check");
    assert_eq!(response.into_inner().status, ServingStatus::Serving as i32);
    // Plain HTTP on the same port still works.
    let (status, _, _) = http_get(daemon.addrs().management, "/healthz").await;
    assert_eq!(status, 200);
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn port_in_use_is_a_clear_error_and_releases_everything() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_addr = busy.local_addr().expect("addr");
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let free_addr = free.local_addr().expect("addr");
    drop(free);

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    std::fs::write(&path, one_flag("color", "red")).expect("write");
    let mut config = local_config(vec![file_source(&path)]);
    // The evaluation port is free and bound first; the sync port is taken.
    config.listen = Listen {
        evaluation: free_addr,
        sync: busy_addr,
        ..Listen::ephemeral(IpAddr::V4(Ipv4Addr::LOCALHOST))
    };
    let error = flagpole::run(config)
        .await
        .expect_err("started on a port in use");
    assert!(
        matches!(error, StartError::Bind { what: "sync", .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&busy_addr.to_string()) && message.contains("sync port"),
        "{message}"
    );
    // Nothing half-started: the evaluation port that was bound is free again.
    std::net::TcpListener::bind(free_addr)
        .expect("evaluation port still held after a failed start");
}

#[tokio::test]
async fn missing_file_at_start_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.json");
    let error = flagpole::run(local_config(vec![file_source(&path)]))
        .await
        .expect_err("started without its file");
    let message = error.to_string();
    assert!(message.contains("absent.json"), "{message}");
    assert!(matches!(error, StartError::Source(_)), "{error:?}");
}

#[tokio::test]
async fn sync_port_serves_once_sources_have_loaded() {
    let daemon =
        start_with_files(&[&crate::runtime_support::workspace_root().join("examples/flags.json")])
            .await;
    let sync: SocketAddr = daemon.addrs().sync;
    let mut client =
        flagpole_proto::sync_v1::flag_sync_service_client::FlagSyncServiceClient::connect(format!(
            "http://{sync}"
        ))
        .await
        .expect("connect to sync port");
    let response = client
        .fetch_all_flags(flagpole_proto::sync_v1::FetchAllFlagsRequest::default())
        .await
        .expect("FetchAllFlags");
    assert!(
        response
            .into_inner()
            .flag_configuration
            .contains("header-color")
    );
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn missing_directory_at_start_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("no-such-dir/flags.json");
    let error = flagpole::run(local_config(vec![file_source(&path)]))
        .await
        .expect_err("started without its file");
    let message = error.to_string();
    assert!(
        message.contains("cannot read flag file") && message.contains("no-such-dir/flags.json"),
        "{message}"
    );
}
