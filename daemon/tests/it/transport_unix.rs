//! Unix sockets: `--socket-path` and `--sync-socket-path` serve evaluation and sync on sockets instead of
//! TCP, a stale socket file is replaced, anything else at the path is left alone, and the files are gone
//! after shutdown.

use std::path::{Path, PathBuf};

use flagpole::StartError;
use flagpole_proto::evaluation_v1::ResolveBooleanRequest;
use flagpole_proto::evaluation_v1::service_client::ServiceClient;
use flagpole_proto::sync_v1::FetchAllFlagsRequest;
use flagpole_proto::sync_v1::flag_sync_service_client::FlagSyncServiceClient;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use crate::runtime_support::{file_source, local_config};
use crate::transport_tls::write_flag_file;

/// A gRPC channel over the unix socket at `path`.
async fn unix_channel(path: &Path) -> Channel {
    let path: PathBuf = path.to_owned();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .expect("connect over the unix socket")
}

#[tokio::test]
async fn evaluation_and_sync_listen_on_unix_sockets_and_remove_them_at_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = write_flag_file(dir.path());
    let evaluation = dir.path().join("flagd.sock");
    let sync = dir.path().join("sync.sock");
    // A socket file left by a killed process: nobody listens on it.
    drop(std::os::unix::net::UnixListener::bind(&evaluation).expect("stale socket"));
    assert!(evaluation.exists());

    let mut config = local_config(vec![file_source(&flags)]);
    config.serving.socket_path = Some(evaluation.clone());
    config.serving.sync_socket_path = Some(sync.clone());
    let daemon = flagpole::run(config).await.expect("daemon starts");
    assert_eq!(
        daemon.addrs().evaluation.port(),
        0,
        "no TCP evaluation port"
    );

    let value = ServiceClient::new(unix_channel(&evaluation).await)
        .resolve_boolean(ResolveBooleanRequest {
            flag_key: "tls-flag".to_owned(),
            context: None,
        })
        .await
        .expect("ResolveBoolean over the socket")
        .into_inner()
        .value;
    assert!(value);
    let payload = FlagSyncServiceClient::new(unix_channel(&sync).await)
        .fetch_all_flags(FetchAllFlagsRequest::default())
        .await
        .expect("FetchAllFlags over the socket")
        .into_inner()
        .flag_configuration;
    assert!(payload.contains("tls-flag"), "{payload}");

    daemon.shutdown().await.expect("clean shutdown");
    assert!(!evaluation.exists(), "evaluation socket removed");
    assert!(!sync.exists(), "sync socket removed");
}

#[tokio::test]
async fn a_regular_file_at_the_socket_path_is_a_start_error_and_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = write_flag_file(dir.path());
    let path = dir.path().join("not-a-socket");
    std::fs::write(&path, "data").expect("write file");
    let mut config = local_config(vec![file_source(&flags)]);
    config.serving.socket_path = Some(path.clone());
    let error = flagpole::run(config).await.expect_err("must not start");
    assert!(
        matches!(
            error,
            StartError::Socket {
                what: "evaluation",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).expect("file kept"), "data");
}

#[tokio::test]
async fn a_socket_another_daemon_listens_on_is_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = write_flag_file(dir.path());
    let path = dir.path().join("flagd.sock");
    let mut config = local_config(vec![file_source(&flags)]);
    config.serving.socket_path = Some(path.clone());
    let first = flagpole::run(config.clone()).await.expect("first starts");
    let error = flagpole::run(config)
        .await
        .expect_err("second must not start");
    assert!(matches!(error, StartError::Socket { .. }), "{error:?}");
    // The first daemon's socket is untouched and still answers.
    let value = ServiceClient::new(unix_channel(&path).await)
        .resolve_boolean(ResolveBooleanRequest {
            flag_key: "tls-flag".to_owned(),
            context: None,
        })
        .await
        .expect("first daemon still serves")
        .into_inner()
        .value;
    assert!(value);
    first.shutdown().await.expect("clean shutdown");
}
