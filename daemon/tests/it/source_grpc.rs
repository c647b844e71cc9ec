//! The grpc source: a three-level chain of in-process daemons (file → top → middle → bottom) whose file
//! edits reach an EventStream subscriber at the bottom, an upstream restart survived with the last good
//! flags, the body selector, and the startup error and `lazy` option.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flagpole::Daemon;
use flagpole::config::{SourceConfig, SourceKind};
use flagpole::sources::RemoteOptions;
use flagpole::sources::grpc::GrpcConfig;
use flagpole_engine::Value;
use flagpole_proto::evaluation_v1 as v1;
use tokio::time::{Instant, timeout};

use crate::runtime_support::{
    CHANGE_TIMEOUT, default_value, evaluation_channel, file_source, local_config, one_flag,
    start_with_files, test_certificates, wait_for, write_atomic,
};

/// Edits timed through the chain in the latency test.
const EDITS: usize = 20;

fn grpc_source(upstream: SocketAddr, options: RemoteOptions) -> SourceConfig {
    let uri = format!("127.0.0.1:{}", upstream.port());
    match GrpcConfig::from_options(&uri, options) {
        Ok(config) => SourceConfig {
            identity: Arc::from(uri.as_str()),
            kind: SourceKind::Grpc(Box::new(config)),
        },
        Err(message) => panic!("bad grpc source: {message}"),
    }
}

async fn start(sources: Vec<SourceConfig>) -> Daemon {
    match flagpole::run(local_config(sources)).await {
        Ok(daemon) => daemon,
        Err(error) => panic!("daemon did not start: {error}"),
    }
}

fn value(text: &str) -> Option<Value> {
    Some(Value::String(text.to_owned()))
}

#[tokio::test]
async fn three_level_chain_carries_a_file_edit_to_an_event_stream_at_the_bottom() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    std::fs::write(&path, one_flag("chained", "v0")).expect("write flags");
    let top = start_with_files(&[&path]).await;
    let middle = start(vec![grpc_source(
        top.addrs().sync,
        RemoteOptions::default(),
    )])
    .await;
    let bottom = start(vec![grpc_source(
        middle.addrs().sync,
        RemoteOptions::default(),
    )])
    .await;
    wait_for(&bottom, "the chain's first load", |s| {
        default_value(s, "chained") == value("v0")
    })
    .await;

    let channel = evaluation_channel(&bottom).await;
    let mut events = v1::service_client::ServiceClient::new(channel)
        .event_stream(v1::EventStreamRequest {})
        .await
        .expect("EventStream")
        .into_inner();
    let mut next_type = async || -> String {
        match timeout(CHANGE_TIMEOUT, events.message()).await {
            Ok(Ok(Some(message))) => message.r#type,
            other => panic!("no event: {other:?}"),
        }
    };
    assert_eq!(next_type().await, "provider_ready");

    let mut latencies = Vec::with_capacity(EDITS);
    for edit in 1..=EDITS {
        let started = Instant::now();
        write_atomic(&path, &one_flag("chained", &format!("v{edit}")));
        loop {
            if next_type().await == "configuration_change" {
                break;
            }
        }
        latencies.push(started.elapsed());
        assert_eq!(
            default_value(&bottom.store().snapshot(), "chained"),
            value(&format!("v{edit}"))
        );
        // Let the file watcher settle so edits are not coalesced.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    latencies.sort_unstable();
    println!(
        "chain file→top→middle→bottom→EventStream over {EDITS} edits: min {:?}, median {:?}, max {:?}",
        latencies[0],
        latencies[EDITS / 2],
        latencies[EDITS - 1]
    );
    let _ = bottom.shutdown().await;
    let _ = middle.shutdown().await;
    let _ = top.shutdown().await;
}

#[tokio::test]
async fn an_upstream_restart_is_survived_with_the_last_good_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    std::fs::write(&path, one_flag("kept", "before")).expect("write flags");
    let top = start_with_files(&[&path]).await;
    let sync = top.addrs().sync;
    let downstream = start(vec![grpc_source(sync, RemoteOptions::default())]).await;
    wait_for(&downstream, "the first load", |s| {
        default_value(s, "kept") == value("before")
    })
    .await;

    let _ = top.shutdown().await;
    // The stream breaks; the flags stay and the failure is counted.
    let identity = format!("127.0.0.1:{}", sync.port());
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    loop {
        let metrics = downstream.metrics().encode();
        let failing = metrics.lines().any(|l| {
            l.starts_with(&format!(
                "flagpole_source_consecutive_failures{{source=\"{identity}\"}}"
            )) && !l.ends_with(" 0")
        });
        if failing {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broken stream was not counted: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        default_value(&downstream.store().snapshot(), "kept"),
        value("before")
    );
    assert!(downstream.readiness().is_ready());

    // The upstream comes back on the same port with new flags; the downstream reconnects.
    write_atomic(&path, &one_flag("kept", "after"));
    let mut config = local_config(vec![file_source(&path)]);
    config.listen.sync = sync;
    let restarted = match flagpole::run(config).await {
        Ok(daemon) => daemon,
        Err(error) => panic!("the upstream did not restart: {error}"),
    };
    wait_for(&downstream, "the reconnection", |s| {
        default_value(s, "kept") == value("after")
    })
    .await;
    let _ = downstream.shutdown().await;
    let _ = restarted.shutdown().await;
}

#[tokio::test]
async fn the_selector_is_sent_and_narrows_the_upstream_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    std::fs::write(&a, one_flag("from-a", "a")).expect("write a");
    std::fs::write(&b, one_flag("from-b", "b")).expect("write b");
    let top = start_with_files(&[&a, &b]).await;
    let options = RemoteOptions {
        selector: Some(format!("source={}", a.display())),
        provider_id: Some("sidecar-1".into()),
        headers: [("x-team".to_owned(), "flags".to_owned())].into(),
        ..RemoteOptions::default()
    };
    let downstream = start(vec![grpc_source(top.addrs().sync, options)]).await;
    wait_for(&downstream, "the selected flags", |s| {
        default_value(s, "from-a") == value("a")
    })
    .await;
    assert_eq!(
        default_value(&downstream.store().snapshot(), "from-b"),
        None
    );
    let metrics = top.metrics().encode();
    assert!(
        metrics.contains("provider_id=\"sidecar-1\""),
        "the provider id is not in the upstream's stream metrics: {metrics}"
    );
    let _ = downstream.shutdown().await;
    let _ = top.shutdown().await;
}

#[tokio::test]
async fn first_stream_failure_is_a_startup_error_unless_the_source_is_lazy() {
    // A port with nothing listening.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    match flagpole::run(local_config(vec![grpc_source(
        closed,
        RemoteOptions::default(),
    )]))
    .await
    {
        Ok(_) => panic!("an unreachable upstream must fail the start"),
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.contains("grpc source") && text.contains("lazy"),
                "{text}"
            );
        }
    }
    let lazy = RemoteOptions {
        lazy: Some(true),
        ..RemoteOptions::default()
    };
    let daemon = start(vec![grpc_source(closed, lazy)]).await;
    assert!(!daemon.readiness().is_ready());
    let _ = daemon.shutdown().await;
}

#[tokio::test]
async fn grpcs_with_cert_path_syncs_from_a_tls_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certificates = test_certificates(&["localhost"]);
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("server-cert.pem"),
        dir.path().join("server-key.pem"),
    );
    std::fs::write(&ca, &certificates.ca_pem).expect("write CA");
    certificates.write_server(&cert, &key);
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, one_flag("secure", "yes")).expect("write flags");
    let mut config = local_config(vec![file_source(&flags)]);
    config.serving.tls = Some((cert, key));
    let top = match flagpole::run(config).await {
        Ok(daemon) => daemon,
        Err(error) => panic!("TLS upstream did not start: {error}"),
    };
    let uri = format!("localhost:{}", top.addrs().sync.port());
    let options = RemoteOptions {
        tls: Some(true),
        cert_path: Some(ca.to_string_lossy().into_owned()),
        ..RemoteOptions::default()
    };
    let source = match GrpcConfig::from_options(&uri, options) {
        Ok(config) => SourceConfig {
            identity: Arc::from(uri.as_str()),
            kind: SourceKind::Grpc(Box::new(config)),
        },
        Err(message) => panic!("bad grpc source: {message}"),
    };
    let downstream = start(vec![source]).await;
    wait_for(&downstream, "flags over TLS", |s| {
        default_value(s, "secure") == value("yes")
    })
    .await;

    // Plaintext to a TLS port cannot open the stream.
    let plain = grpc_source(top.addrs().sync, RemoteOptions::default());
    assert!(flagpole::run(local_config(vec![plain])).await.is_err());
    let _ = downstream.shutdown().await;
    let _ = top.shutdown().await;
}

#[tokio::test]
async fn envoy_uri_dials_host_port_with_the_authority() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    std::fs::write(&path, one_flag("via-envoy", "ok")).expect("write flags");
    let top = start_with_files(&[&path]).await;
    let uri = format!(
        "envoy://127.0.0.1:{}/flags.internal",
        top.addrs().sync.port()
    );
    let source = match flagpole::config::parse_uri(&uri) {
        Ok(source) => source,
        Err(error) => panic!("{uri}: {error}"),
    };
    assert_eq!(&*source.identity, uri);
    let downstream = start(vec![source]).await;
    wait_for(&downstream, "flags through the envoy form", |s| {
        default_value(s, "via-envoy") == value("ok")
    })
    .await;
    let _ = downstream.shutdown().await;
    let _ = top.shutdown().await;
}

#[test]
fn remote_source_keys_are_read_case_insensitively_from_sources() {
    use clap::Parser;
    use flagpole::config::{Action, Args, Invocation};
    let sources = r#"[
        {"uri": "https://h/f.json", "provider": "http", "AuthHeader": "Bearer x", "INTERVAL": 30,
         "intervalSeed": "pod-1", "timeoutS": 3, "lazy": true},
        {"uri": "sync:8015", "provider": "grpc", "providerID": "p", "selector": "source=a",
         "maxMsgSize": 1024, "incrementalUpdates": true, "headers": {"X-A": "b"}, "tls": true}
    ]"#;
    let args = Args::try_parse_from(["flagpole", "start", "-f", "grpc://up:8015", "-s", sources])
        .expect("clap parse");
    let config = match Invocation::try_from(args).map(|i| i.action) {
        Ok(Action::Start(config)) => config,
        other => panic!("not a start config: {other:?}"),
    };
    let identities: Vec<&str> = config.sources.iter().map(|s| &*s.identity).collect();
    assert_eq!(identities, ["up:8015", "https://h/f.json", "sync:8015"]);
    match &config.sources[1].kind {
        SourceKind::Http(http) => {
            assert_eq!(http.interval_secs, 30);
            assert_eq!(
                http.offset_secs,
                flagpole::sources::http::fnv1a32("pod-1") % 30
            );
            assert_eq!(http.timeout, Some(Duration::from_secs(3)));
            assert!(http.lazy && http.auth_header.is_some());
        }
        other => panic!("not http: {other:?}"),
    }
    match &config.sources[2].kind {
        SourceKind::Grpc(grpc) => {
            assert_eq!(
                (grpc.host.as_str(), grpc.port, grpc.tls),
                ("sync", 8015, true)
            );
            assert_eq!(
                (grpc.provider_id.as_str(), grpc.selector.as_str()),
                ("p", "source=a")
            );
            assert_eq!(grpc.max_message_bytes, 1024);
            assert!(grpc.incremental && !grpc.lazy);
            assert_eq!(grpc.metadata.len(), 1);
            assert_eq!(grpc.metadata[0].0.as_str(), "x-a");
        }
        other => panic!("not grpc: {other:?}"),
    }
}

#[tokio::test]
async fn a_sidecar_restarted_while_its_hub_is_down_serves_the_last_known_good_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("state dir");
    let path = dir.path().join("flags.json");
    std::fs::write(&path, one_flag("kept", "from-hub")).expect("write flags");
    let hub = start_with_files(&[&path]).await;
    let sync = hub.addrs().sync;
    let sidecar_config = || {
        let mut config = local_config(vec![grpc_source(sync, RemoteOptions::default())]);
        config.state_dir = Some(state.path().to_owned());
        config
    };
    let sidecar = match flagpole::run(sidecar_config()).await {
        Ok(daemon) => daemon,
        Err(error) => panic!("sidecar did not start: {error}"),
    };
    wait_for(&sidecar, "the first load", |s| {
        default_value(s, "kept") == value("from-hub")
    })
    .await;
    let _ = sidecar.shutdown().await;
    let _ = hub.shutdown().await;

    // Hub down, sidecar restarted: it starts, ready, with the hub's last flags, marked stale.
    let sidecar = match flagpole::run(sidecar_config()).await {
        Ok(daemon) => daemon,
        Err(error) => panic!("the sidecar must start from its last known good flags: {error}"),
    };
    assert!(sidecar.readiness().is_ready());
    assert_eq!(
        default_value(&sidecar.store().snapshot(), "kept"),
        value("from-hub")
    );
    let identity = format!("127.0.0.1:{}", sync.port());
    assert!(
        sidecar
            .metrics()
            .encode()
            .contains(&format!("flagpole_source_stale{{source=\"{identity}\"}} 1"))
    );

    // The hub comes back with an edit: the stream reopens and the fresh flags replace the saved ones.
    write_atomic(&path, &one_flag("kept", "hub-again"));
    let mut config = local_config(vec![file_source(&path)]);
    config.listen.sync = sync;
    let hub = match flagpole::run(config).await {
        Ok(daemon) => daemon,
        Err(error) => panic!("the hub did not restart: {error}"),
    };
    wait_for(&sidecar, "the reconnection", |s| {
        default_value(s, "kept") == value("hub-again")
    })
    .await;
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    while sidecar
        .metrics()
        .encode()
        .contains(&format!("flagpole_source_stale{{source=\"{identity}\"}} 1"))
    {
        assert!(Instant::now() < deadline, "still stale");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = sidecar.shutdown().await;
    let _ = hub.shutdown().await;
}
