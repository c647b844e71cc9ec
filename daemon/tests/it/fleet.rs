//! A fleet: one hub (a file source) feeding 20 sidecar processes that chain from it over grpc sync, each
//! with its own EventStream subscriber. An edit of the hub's file reaches every subscriber; with the hub
//! stopped the sidecars keep serving their last flags, and when it comes back (on the same port, with a
//! file edited meanwhile) they catch up. Every daemon is a child process on free ports.

use std::path::Path;
use std::time::{Duration, Instant};

use flagpole_proto::evaluation_v1::service_client::ServiceClient;
use flagpole_proto::evaluation_v1::{EventStreamRequest, ResolveBooleanRequest};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use crate::clients::{ChildDaemon, Ports, free_port};
use crate::runtime_support::write_atomic;

const SIDECARS: usize = 20;
/// How long a change may take to reach every subscriber (generous: 21 processes on a shared machine).
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(30);

fn flags(default_variant: &str) -> String {
    format!(
        r#"{{"flags":{{"fleet-flag":{{"state":"ENABLED","variants":{{"on":true,"off":false}},"defaultVariant":"{default_variant}"}}}}}}"#
    )
}

async fn channel(port: u16) -> Channel {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {port}: {e}"))
}

async fn resolve(channel: &Channel) -> bool {
    ServiceClient::new(channel.clone())
        .resolve_boolean(ResolveBooleanRequest {
            flag_key: "fleet-flag".into(),
            context: None,
        })
        .await
        .expect("ResolveBoolean")
        .into_inner()
        .value
}

/// Opens one EventStream per channel; each `configuration_change` is reported as the subscriber's index.
async fn subscribe(channels: &[Channel]) -> mpsc::UnboundedReceiver<usize> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    for (index, channel) in channels.iter().enumerate() {
        let mut client = ServiceClient::new(channel.clone());
        let (tx, ready_tx) = (tx.clone(), ready_tx.clone());
        tokio::spawn(async move {
            let mut stream = client
                .event_stream(EventStreamRequest {})
                .await
                .expect("EventStream")
                .into_inner();
            while let Ok(Some(event)) = stream.message().await {
                match event.r#type.as_str() {
                    "provider_ready" => {
                        let _ = ready_tx.send(index);
                    }
                    "configuration_change" => {
                        let _ = tx.send(index);
                    }
                    _ => {}
                }
            }
        });
    }
    for _ in channels {
        tokio::time::timeout(PROPAGATION_TIMEOUT, ready_rx.recv())
            .await
            .expect("every subscriber is ready")
            .expect("a subscriber ended");
    }
    rx
}

/// Waits until every subscriber has seen at least one more change.
async fn every_subscriber_sees_a_change(events: &mut mpsc::UnboundedReceiver<usize>, what: &str) {
    let mut seen = [false; SIDECARS];
    let deadline = Instant::now() + PROPAGATION_TIMEOUT;
    while seen.iter().any(|s| !s) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(index)) => seen[index] = true,
            _ => panic!(
                "{what}: subscribers {:?} saw no change within {PROPAGATION_TIMEOUT:?}",
                seen.iter()
                    .enumerate()
                    .filter(|(_, s)| !**s)
                    .map(|(i, _)| i)
                    .collect::<Vec<_>>()
            ),
        }
    }
}

fn start_hub(ports: Ports, log_dir: &Path, flags_path: &Path) -> ChildDaemon {
    std::fs::create_dir_all(log_dir).unwrap();
    let uri = format!("file:{}", flags_path.display());
    ChildDaemon::start_with_ports(Some(ports), log_dir, &["--uri", &uri])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_feeds_twenty_sidecars_and_they_outlive_its_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let flags_path = dir.path().join("flags.json");
    std::fs::write(&flags_path, flags("off")).unwrap();
    let hub_ports = Ports {
        evaluation: free_port(),
        management: free_port(),
        sync: free_port(),
        ofrep: free_port(),
    };
    let mut hub = start_hub(hub_ports, &dir.path().join("hub"), &flags_path);
    let upstream = format!("grpc://127.0.0.1:{}", hub_ports.sync);
    let sidecars: Vec<ChildDaemon> = (0..SIDECARS)
        .map(|i| {
            let log_dir = dir.path().join(format!("sidecar-{i}"));
            std::fs::create_dir_all(&log_dir).unwrap();
            ChildDaemon::start_with_ports(None, &log_dir, &["--uri", &upstream])
        })
        .collect();
    let mut channels = Vec::new();
    for sidecar in &sidecars {
        channels.push(channel(sidecar.ports.evaluation).await);
    }
    for channel in &channels {
        assert!(
            !resolve(channel).await,
            "every sidecar serves the hub's flags"
        );
    }
    let mut events = subscribe(&channels).await;

    // An edit of the hub's file reaches every sidecar's subscriber, and every sidecar answers with it.
    write_atomic(&flags_path, &flags("on"));
    every_subscriber_sees_a_change(&mut events, "edit").await;
    for channel in &channels {
        assert!(resolve(channel).await);
    }

    // The hub goes away: the sidecars keep serving what they have.
    hub.terminate();
    for channel in &channels {
        assert!(
            resolve(channel).await,
            "a sidecar keeps its flags without the hub"
        );
    }
    // Edited while the hub is down, seen once it is back on the same port.
    write_atomic(&flags_path, &flags("off"));
    let _hub = start_hub(hub_ports, &dir.path().join("hub-again"), &flags_path);
    every_subscriber_sees_a_change(&mut events, "hub restart").await;
    for channel in &channels {
        assert!(!resolve(channel).await, "every sidecar caught up");
    }
    drop(sidecars);
}
