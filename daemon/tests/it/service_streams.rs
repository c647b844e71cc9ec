//! EventStream (v1, v2, schema.v1) and the sync service over real gRPC: first messages, change diffs per
//! subscriber and selector, keep-alive on paused time, shutdown, stream deadlines, SyncFlags payloads,
//! FetchAllFlags and GetMetadata.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::service_support::Settings;
use flagpole_proto::evaluation_v1 as v1;
use flagpole_proto::evaluation_v2 as v2;
use flagpole_proto::schema_v1 as schema;
use flagpole_proto::sync_v1 as sync;
use serde_json::{Value, json};
use tokio::time::timeout;
use tonic::{Code, Streaming};

use crate::service_support::{Harness, flag, json_of, source_a, source_b, with_headers};

/// Generous bound for "a message arrives" (never reached when things work; time may be paused).
const WAIT: Duration = Duration::from_secs(3600);

async fn v1_events(
    h: &Harness,
    headers: &[(&'static str, &'static str)],
) -> Streaming<v1::EventStreamResponse> {
    let mut client = v1::service_client::ServiceClient::new(h.channel().await);
    client
        .event_stream(with_headers(v1::EventStreamRequest {}, headers))
        .await
        .unwrap()
        .into_inner()
}

async fn next(stream: &mut Streaming<v1::EventStreamResponse>) -> (String, Value) {
    let message = timeout(WAIT, stream.message())
        .await
        .expect("a message")
        .expect("not an error")
        .expect("open");
    (message.r#type, json_of(message.data.as_ref()))
}

fn edited_source_a() -> Vec<std::sync::Arc<flagpole_engine::Flag>> {
    let mut flags = source_a();
    // Update string-flag, delete int-flag, write new-flag.
    flags.retain(|f| &*f.key != "int-flag" && &*f.key != "string-flag");
    flags.push(flag(
        "string-flag",
        json!({"variants": {"red": "#f00"}, "defaultVariant": "red"}),
        json!({"flagSetId": "set-a"}),
    ));
    flags.push(flag(
        "new-flag",
        json!({"variants": {"on": true}, "defaultVariant": "on"}),
        json!({"flagSetId": "set-a"}),
    ));
    flags
}

#[tokio::test]
async fn event_stream_starts_ready_and_announces_per_key_changes() {
    let h = Harness::start(Settings::default()).await;
    let mut events = v1_events(&h, &[]).await;
    assert_eq!(
        next(&mut events).await,
        ("provider_ready".to_owned(), json!({}))
    );

    h.store.replace_source(0, edited_source_a());
    let (kind, data) = next(&mut events).await;
    assert_eq!(kind, "configuration_change");
    assert_eq!(
        data,
        json!({"flags": {"int-flag": {"type": "delete"}, "new-flag": {"type": "write"}, "string-flag": {"type": "update"}}})
    );

    // Republishing identical flags sends nothing; the next change is the next message.
    h.store.replace_source(0, edited_source_a());
    h.store.replace_source(1, Vec::new());
    assert_eq!(
        next(&mut events).await.1,
        json!({"flags": {"other-flag": {"type": "delete"}}})
    );
}

#[tokio::test]
async fn event_stream_changes_are_filtered_by_the_selector() {
    let h = Harness::start(Settings::default()).await;
    let mut set_b = v1_events(&h, &[("flagd-selector", "flagSetId=set-b")]).await;
    assert_eq!(next(&mut set_b).await.0, "provider_ready");

    // A change outside set-b is not announced; the set-b change is the next message.
    h.store.replace_source(0, edited_source_a());
    let mut b = source_b();
    b.push(flag(
        "b2",
        json!({"variants": {"x": 1}, "defaultVariant": "x"}),
        json!({"flagSetId": "set-b"}),
    ));
    h.store.replace_source(1, b);
    assert_eq!(
        next(&mut set_b).await,
        (
            "configuration_change".to_owned(),
            json!({"flags": {"b2": {"type": "write"}}})
        )
    );
}

#[tokio::test]
async fn event_stream_with_a_bad_selector_is_invalid_argument() {
    let h = Harness::start(Settings::default()).await;
    let mut client = v1::service_client::ServiceClient::new(h.channel().await);
    let status = client
        .event_stream(with_headers(
            v1::EventStreamRequest {},
            &[("flagd-selector", "nope=1")],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

/// A short keep-alive, so that the timing tests run in real time (the daemon's default is 20 s,
/// `ServiceConfig::default`).
const KEEP_ALIVE: Duration = Duration::from_millis(400);

#[tokio::test]
async fn keep_alive_follows_silence_and_restarts_after_each_send() {
    let h = Harness::start(Settings {
        event_keep_alive: KEEP_ALIVE,
        ..Settings::default()
    })
    .await;
    let subscribed = tokio::time::Instant::now();
    let mut events = v1_events(&h, &[]).await;
    assert_eq!(next(&mut events).await.0, "provider_ready");
    let message = timeout(WAIT, events.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (message.r#type.as_str(), message.data),
        ("keep_alive", None)
    );
    assert!(
        subscribed.elapsed() >= KEEP_ALIVE,
        "keep_alive after {:?}",
        subscribed.elapsed()
    );

    // A change half-way restarts the timer: the next keep_alive is a whole keep-alive after the change.
    tokio::time::sleep(KEEP_ALIVE / 2).await;
    h.store.replace_source(0, edited_source_a());
    assert_eq!(next(&mut events).await.0, "configuration_change");
    let changed = tokio::time::Instant::now();
    assert_eq!(next(&mut events).await.0, "keep_alive");
    assert!(
        changed.elapsed() >= KEEP_ALIVE * 9 / 10,
        "keep_alive after {:?}",
        changed.elapsed()
    );
}

#[tokio::test]
async fn shutdown_sends_provider_shutdown_on_every_protocol() {
    let h = Harness::start(Settings::default()).await;
    let mut a = v1_events(&h, &[]).await;
    let mut b = v2::service_client::ServiceClient::new(h.channel().await)
        .event_stream(v2::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut c = schema::service_client::ServiceClient::new(h.channel().await)
        .event_stream(schema::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut a).await.0, "provider_ready");
    assert_eq!(b.message().await.unwrap().unwrap().r#type, "provider_ready");
    assert_eq!(c.message().await.unwrap().unwrap().r#type, "provider_ready");

    h.shutdown.cancel();
    assert_eq!(
        next(&mut a).await,
        ("provider_shutdown".to_owned(), json!({}))
    );
    assert_eq!(
        b.message().await.unwrap().unwrap().r#type,
        "provider_shutdown"
    );
    assert_eq!(
        c.message().await.unwrap().unwrap().r#type,
        "provider_shutdown"
    );
    assert!(
        matches!(timeout(WAIT, a.message()).await.unwrap(), Ok(None)),
        "the stream ends after shutdown"
    );
}

#[tokio::test]
async fn stream_deadline_ends_v1_streams_but_not_schema_v1() {
    let h = Harness::start(Settings {
        stream_deadline: Some(KEEP_ALIVE * 3 / 2),
        event_keep_alive: KEEP_ALIVE,
        ..Settings::default()
    })
    .await;
    let mut events = v1_events(&h, &[]).await;
    let mut legacy = schema::service_client::ServiceClient::new(h.channel().await)
        .event_stream(schema::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut events).await.0, "provider_ready");
    assert_eq!(
        timeout(WAIT, legacy.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .r#type,
        "provider_ready"
    );
    assert_eq!(next(&mut events).await.0, "keep_alive");
    let status = timeout(WAIT, events.message()).await.unwrap().unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::DeadlineExceeded,
            "stream closed due to server-side timeout"
        )
    );

    let kinds: Vec<String> = {
        let mut kinds = Vec::new();
        for _ in 0..3 {
            kinds.push(
                timeout(WAIT, legacy.message())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap()
                    .r#type,
            );
        }
        kinds
    };
    assert_eq!(kinds, ["keep_alive", "keep_alive", "keep_alive"]);
}

fn payload_keys(payload: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(payload).expect("payload is JSON");
    value["flags"]
        .as_object()
        .expect("flags object")
        .keys()
        .cloned()
        .collect()
}

fn sync_config() -> Settings {
    Settings {
        context_values: BTreeMap::from([("region".to_owned(), "eu".to_owned())]),
        ..Settings::default()
    }
}

/// A `FlagSyncService` client of the harness.
async fn sync_client(
    h: &Harness,
) -> sync::flag_sync_service_client::FlagSyncServiceClient<tonic::transport::Channel> {
    sync::flag_sync_service_client::FlagSyncServiceClient::new(h.channel().await)
}

/// Opens `SyncFlags` with a default request and waits for its first message, which must come.
async fn open_sync_after_first_message(h: &Harness) -> Streaming<sync::SyncFlagsResponse> {
    let mut stream = sync_client(h)
        .await
        .sync_flags(sync::SyncFlagsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        timeout(WAIT, stream.message())
            .await
            .unwrap()
            .unwrap()
            .is_some()
    );
    stream
}

#[tokio::test]
async fn sync_flags_sends_the_selection_at_once_and_after_each_real_change() {
    let h = Harness::start(sync_config()).await;
    let mut client = sync_client(&h).await;
    let mut stream = client
        .sync_flags(with_headers(
            sync::SyncFlagsRequest {
                provider_id: "p1".into(),
                ..Default::default()
            },
            &[("flagd-selector", "flagSetId=set-b")],
        ))
        .await
        .unwrap()
        .into_inner();
    let first = timeout(WAIT, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(payload_keys(&first.flag_configuration), ["other-flag"]);
    let parsed: Value = serde_json::from_str(&first.flag_configuration).unwrap();
    assert_eq!(parsed["flags"]["other-flag"]["source"], "file-b.json");
    assert_eq!(
        json_of(first.sync_context.as_ref()),
        json!({"region": "eu"})
    );

    // A change outside the selection, then an identical republish, then a real change: only the last is sent.
    h.store.replace_source(0, edited_source_a());
    h.store.replace_source(1, source_b());
    let mut b = source_b();
    b.push(flag(
        "b2",
        json!({"variants": {"x": 1}, "defaultVariant": "x"}),
        json!({"flagSetId": "set-b"}),
    ));
    h.store.replace_source(1, b);
    let second = timeout(WAIT, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        payload_keys(&second.flag_configuration),
        ["b2", "other-flag"]
    );
    assert_eq!(
        json_of(second.sync_context.as_ref()),
        json!({"region": "eu"})
    );
}

#[tokio::test]
#[allow(deprecated)]
async fn sync_selector_header_beats_the_body_field() {
    let h = Harness::start(sync_config()).await;
    let mut client = sync_client(&h).await;
    let body_only = client
        .fetch_all_flags(sync::FetchAllFlagsRequest {
            provider_id: String::new(),
            selector: "flagSetId=set-b".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(payload_keys(&body_only.flag_configuration), ["other-flag"]);

    let header_wins = client
        .fetch_all_flags(with_headers(
            sync::FetchAllFlagsRequest {
                provider_id: String::new(),
                selector: "flagSetId=set-b".into(),
            },
            &[("flagd-selector", "source=file-a.json")],
        ))
        .await
        .unwrap()
        .into_inner();
    let keys = payload_keys(&header_wins.flag_configuration);
    assert!(
        keys.contains(&"bool-flag".to_owned()) && !keys.contains(&"other-flag".to_owned()),
        "{keys:?}"
    );

    let all = client
        .fetch_all_flags(sync::FetchAllFlagsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        payload_keys(&all.flag_configuration).len(),
        source_a().len() + source_b().len()
    );

    let status = client
        .sync_flags(sync::SyncFlagsRequest {
            provider_id: String::new(),
            selector: "bad=1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn sync_flags_ends_on_the_stream_deadline() {
    let h = Harness::start(Settings {
        stream_deadline: Some(Duration::from_secs(30)),
        ..sync_config()
    })
    .await;
    let mut stream = open_sync_after_first_message(&h).await;
    tokio::time::pause();
    let status = timeout(WAIT, stream.message()).await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
}

#[tokio::test]
#[allow(deprecated)] // GetMetadata is deprecated in the schema and still served.
async fn get_metadata_returns_static_context_or_unimplemented() {
    let h = Harness::start(sync_config()).await;
    let mut client = sync_client(&h).await;
    let metadata = client
        .get_metadata(sync::GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(json_of(metadata.metadata.as_ref()), json!({"region": "eu"}));

    let h = Harness::start(Settings {
        disable_sync_metadata: true,
        ..sync_config()
    })
    .await;
    let mut client = sync_client(&h).await;
    let status = client
        .get_metadata(sync::GetMetadataRequest {})
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unimplemented, "metadata endpoint disabled")
    );
}

#[tokio::test]
async fn sync_streams_are_counted_in_metrics() {
    let h = Harness::start(sync_config()).await;
    let mut client = sync_client(&h).await;
    let mut stream = client
        .sync_flags(sync::SyncFlagsRequest {
            provider_id: "metrics-test".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    let text = h.metrics.encode();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("feature_flag_flagd_sync_active_streams") && l.contains("metrics-test")
        })
        .unwrap_or_else(|| panic!("no active stream gauge in:\n{text}"));
    assert!(line.ends_with(" 1"), "{line}");
}

#[tokio::test]
async fn subscribers_get_diffs_against_their_own_last_view() {
    let h = Harness::start(Settings::default()).await;
    let mut early = v1_events(&h, &[]).await;
    let mut set_b = v1_events(&h, &[("flagd-selector", "flagSetId=set-b")]).await;
    assert_eq!(next(&mut early).await.0, "provider_ready");
    assert_eq!(next(&mut set_b).await.0, "provider_ready");

    h.store.replace_source(0, edited_source_a());
    let (_, first) = next(&mut early).await;
    assert_eq!(first["flags"]["new-flag"]["type"], "write");

    // A subscriber that arrives after the first change sees only what changes after it subscribed.
    let mut late = v1_events(&h, &[]).await;
    assert_eq!(next(&mut late).await.0, "provider_ready");
    h.store.replace_source(1, Vec::new());
    let expected = json!({"flags": {"other-flag": {"type": "delete"}}});
    assert_eq!(next(&mut early).await.1, expected);
    assert_eq!(next(&mut late).await.1, expected);
    // The set-b subscriber saw nothing of the first change, and the same deletion now.
    assert_eq!(next(&mut set_b).await.1, expected);
}

#[tokio::test]
async fn sync_flags_streams_end_cleanly_on_shutdown() {
    let h = Harness::start(sync_config()).await;
    let mut stream = open_sync_after_first_message(&h).await;
    h.shutdown.cancel();
    assert!(matches!(
        timeout(WAIT, stream.message()).await.unwrap(),
        Ok(None)
    ));
}

/// The `flagpole_event_subscribers` gauge.
fn event_subscribers(h: &Harness) -> i64 {
    h.metrics
        .encode()
        .lines()
        .find(|l| l.starts_with("flagpole_event_subscribers "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_slows_nobody() {
    let h = Harness::start(Settings::default()).await;
    let mut stalled = v1_events(&h, &[]).await;
    let mut reader = v1_events(&h, &[]).await;
    assert_eq!(next(&mut stalled).await.0, "provider_ready");
    assert_eq!(next(&mut reader).await.0, "provider_ready");
    assert_eq!(event_subscribers(&h), 2);
    // Far more events than the stalled client's HTTP/2 window holds: the reader gets every one at once.
    for i in 0..600 {
        let flags = if i % 2 == 0 {
            edited_source_a()
        } else {
            source_a()
        };
        h.store.replace_source(0, flags);
        assert_eq!(
            timeout(Duration::from_secs(5), reader.message())
                .await
                .expect("the reader is not slowed")
                .expect("ok")
                .expect("open")
                .r#type,
            "configuration_change"
        );
    }
    // The stalled one still works: it drains what its HTTP/2 window held (bounded by the window, not by
    // the daemon), then gets the next change.
    while let Ok(Ok(Some(_))) = timeout(Duration::from_millis(300), stalled.message()).await {}
    h.store.replace_source(0, edited_source_a());
    assert_eq!(next(&mut stalled).await.0, "configuration_change");
    // Gone clients are counted out.
    drop(stalled);
    drop(reader);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while event_subscribers(&h) != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscribers still counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
