//! TLS on the evaluation and sync ports: a tonic client trusting a test CA evaluates and syncs, a client
//! trusting another CA or speaking plaintext does not, a replaced certificate is served to the next
//! connection, and an unusable key is a start error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use flagpole::StartError;
use flagpole_proto::evaluation_v1::ResolveBooleanRequest;
use flagpole_proto::evaluation_v1::service_client::ServiceClient;
use flagpole_proto::sync_v1::FetchAllFlagsRequest;
use flagpole_proto::sync_v1::flag_sync_service_client::FlagSyncServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::runtime_support::{file_source, local_config, test_certificates};

/// A flag file with one boolean flag, `tls-flag`, that evaluates to true.
pub fn write_flag_file(dir: &Path) -> PathBuf {
    let path = dir.join("flags.json");
    std::fs::write(
        &path,
        r#"{"flags":{"tls-flag":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}}}"#,
    )
    .expect("write flag file");
    path
}

/// Writes a fresh CA and a `localhost` server certificate signed by it to `dir`; returns the CA PEM.
fn write_certificates(dir: &Path) -> String {
    let certificates = test_certificates(&["localhost"]);
    // The key first, then the certificate: the daemon sees a mismatched pair in between and must keep the
    // previous one until both are written.
    certificates.write_server(&dir.join("server-cert.pem"), &dir.join("server-key.pem"));
    certificates.ca_pem
}

async fn tls_channel(addr: SocketAddr, ca_pem: &str) -> Result<Channel, tonic::transport::Error> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    Endpoint::from_shared(format!("https://localhost:{}", addr.port()))?
        .tls_config(tls)?
        .connect()
        .await
}

async fn resolve(channel: Channel) -> Result<bool, tonic::Status> {
    let response = ServiceClient::new(channel)
        .resolve_boolean(ResolveBooleanRequest {
            flag_key: "tls-flag".to_owned(),
            context: None,
        })
        .await?;
    Ok(response.into_inner().value)
}

async fn start_tls(dir: &Path) -> flagpole::Daemon {
    let flags = write_flag_file(dir);
    let mut config = local_config(vec![file_source(&flags)]);
    config.serving.tls = Some((dir.join("server-cert.pem"), dir.join("server-key.pem")));
    flagpole::run(config).await.expect("daemon starts with TLS")
}

#[tokio::test]
async fn evaluation_and_sync_are_served_over_tls_to_a_client_trusting_the_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = write_certificates(dir.path());
    let daemon = start_tls(dir.path()).await;
    let addrs = daemon.addrs();

    let channel = tls_channel(addrs.evaluation, &ca)
        .await
        .expect("TLS connect");
    assert!(resolve(channel).await.expect("ResolveBoolean over TLS"));

    let sync = tls_channel(addrs.sync, &ca)
        .await
        .expect("TLS connect to sync");
    let payload = FlagSyncServiceClient::new(sync)
        .fetch_all_flags(FetchAllFlagsRequest::default())
        .await
        .expect("FetchAllFlags over TLS")
        .into_inner()
        .flag_configuration;
    assert!(payload.contains("tls-flag"), "{payload}");

    // A plaintext HTTP/2 client gets no answer from the TLS port.
    let plain = Endpoint::from_shared(format!("http://{}", addrs.evaluation))
        .expect("endpoint")
        .connect()
        .await;
    if let Ok(channel) = plain {
        assert!(resolve(channel).await.is_err(), "plaintext must not work");
    }
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_replaced_certificate_is_served_to_the_next_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old_ca = write_certificates(dir.path());
    let daemon = start_tls(dir.path()).await;
    let addr = daemon.addrs().evaluation;
    let before = tls_channel(addr, &old_ca).await.expect("TLS connect");
    assert!(resolve(before.clone()).await.expect("old certificate"));

    let new_ca = write_certificates(dir.path());
    let after = tls_channel(addr, &new_ca)
        .await
        .expect("TLS connect with the new CA");
    assert!(resolve(after).await.expect("new certificate"));
    // A new connection that only trusts the old CA is refused now...
    let stale = match tls_channel(addr, &old_ca).await {
        Ok(channel) => resolve(channel).await.is_ok(),
        Err(_) => false,
    };
    assert!(!stale, "the old certificate is still served");
    // ...while the connection made before the change keeps working.
    assert!(resolve(before).await.expect("existing connection"));
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_key_that_does_not_parse_is_a_start_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_certificates(dir.path());
    std::fs::write(dir.path().join("server-key.pem"), "not a key").expect("write key");
    let flags = write_flag_file(dir.path());
    let mut config = local_config(vec![file_source(&flags)]);
    config.serving.tls = Some((
        dir.path().join("server-cert.pem"),
        dir.path().join("server-key.pem"),
    ));
    let error = flagpole::run(config).await.expect_err("must not start");
    assert!(matches!(error, StartError::Tls(_)), "{error:?}");
    assert!(error.to_string().contains("server-key.pem"), "{error}");
}
