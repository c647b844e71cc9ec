//! Daemon lifecycle seen by clients: EventStreams get `provider_shutdown` and end on shutdown, and the
//! sync port waits for every source's first load.

use std::time::Duration;

use flagpole_proto::evaluation_v1::EventStreamRequest;
use flagpole_proto::evaluation_v1::service_client::ServiceClient;
use flagpole_proto::sync_v1::FetchAllFlagsRequest;
use flagpole_proto::sync_v1::flag_sync_service_client::FlagSyncServiceClient;
use tonic::transport::Endpoint;

use crate::runtime_support::{
    evaluation_channel, one_flag, start_with_files, wait_for, workspace_root,
};

/// Bounds a failure only: every step here normally takes milliseconds.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn shutdown_sends_provider_shutdown_and_ends_event_streams() {
    let daemon = start_with_files(&[&workspace_root().join("examples/flags.json")]).await;
    let channel = evaluation_channel(&daemon).await;
    let mut stream = ServiceClient::new(channel)
        .event_stream(EventStreamRequest {})
        .await
        .expect("EventStream")
        .into_inner();
    let first = tokio::time::timeout(STEP_TIMEOUT, stream.message())
        .await
        .expect("no first event");
    assert_eq!(
        first.expect("stream error").map(|m| m.r#type),
        Some("provider_ready".to_owned())
    );

    let stopping = tokio::spawn(daemon.shutdown());
    let mut saw_shutdown = false;
    while let Ok(Ok(Some(message))) = tokio::time::timeout(STEP_TIMEOUT, stream.message()).await {
        saw_shutdown |= message.r#type == "provider_shutdown";
    }
    assert!(saw_shutdown, "no provider_shutdown before the stream ended");
    let stopped = tokio::time::timeout(STEP_TIMEOUT, stopping)
        .await
        .expect("shutdown hung");
    stopped.expect("join").expect("clean shutdown");
}

#[tokio::test]
async fn sync_port_waits_for_the_first_good_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    std::fs::write(&path, "{ broken").expect("write");
    let daemon = start_with_files(&[&path]).await;
    let endpoint =
        Endpoint::from_shared(format!("http://{}", daemon.addrs().sync)).expect("endpoint");

    // Not served yet: the source has not loaded, and the 5 s gate has not passed. The TCP connection is
    // accepted by the kernel (the listener is bound) but nobody answers.
    let early = tokio::time::timeout(Duration::from_millis(300), async {
        let channel = endpoint.connect().await?;
        FlagSyncServiceClient::new(channel)
            .fetch_all_flags(FetchAllFlagsRequest::default())
            .await
            .map_err(|status| Box::new(status) as Box<dyn std::error::Error + Send + Sync>)
    })
    .await;
    assert!(
        !matches!(early, Ok(Ok(_))),
        "sync answered before any source loaded"
    );

    std::fs::write(&path, one_flag("color", "red")).expect("fix the file");
    wait_for(&daemon, "color loaded", |s| s.len() == 1).await;
    let channel = tokio::time::timeout(STEP_TIMEOUT, endpoint.connect())
        .await
        .expect("connect hung")
        .expect("connect");
    let response = tokio::time::timeout(
        STEP_TIMEOUT,
        FlagSyncServiceClient::new(channel).fetch_all_flags(FetchAllFlagsRequest::default()),
    )
    .await
    .expect("FetchAllFlags hung")
    .expect("FetchAllFlags");
    assert!(
        response
            .into_inner()
            .flag_configuration
            .contains("\"color\"")
    );
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn evaluations_are_counted_and_timed_on_the_metrics_page() {
    let daemon = start_with_files(&[&workspace_root().join("examples/flags.json")]).await;
    let channel = evaluation_channel(&daemon).await;
    let response = ServiceClient::new(channel)
        .resolve_boolean(flagpole_proto::evaluation_v1::ResolveBooleanRequest {
            flag_key: "new-checkout".to_owned(),
            context: None,
        })
        .await
        .expect("ResolveBoolean")
        .into_inner();
    assert!(!response.value);

    let (_, _, body) =
        crate::runtime_support::http_get(daemon.addrs().management, "/metrics").await;
    assert!(
        body.contains(
            "http_server_request_duration_seconds_count{http_request_method=\"POST\",\
             http_response_status_code=\"200\",http_route=\"/flagd.evaluation.v1.Service/ResolveBoolean\",\
             url_scheme=\"http\"} 1"
        ),
        "{body}"
    );
    assert!(
        body.contains("feature_flag_flagd_impression_total{feature_flag_key=\"new-checkout\""),
        "{body}"
    );
    daemon.shutdown().await.expect("clean shutdown");
}
