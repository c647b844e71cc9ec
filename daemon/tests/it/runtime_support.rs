//! Shared fixtures of the runtime tests: the testbed location, an in-process daemon on free ports, a
//! minimal HTTP/1.1 client and a gRPC channel to it, waiting on the store for a condition, fake servers
//! on free ports, and test certificates (a fresh CA and a server certificate signed by it).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flagpole::Daemon;
use flagpole::config::{Config, FileProvider, Listen, SourceConfig, SourceKind};
use flagpole_engine::{Selector, Snapshot, Value};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::{Channel, Endpoint};

/// How long a test waits for the daemon to notice a file change before failing. Generous: this bounds a
/// failure, it does not measure speed.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default()
}

/// The flagd-testbed (`FLAGD_TESTBED_DIR`, default: the pinned one `scripts/fetch-testbed.sh` unpacks
/// under `target/`). A missing directory fails the test.
pub fn testbed_dir() -> PathBuf {
    let dir = std::env::var_os("FLAGD_TESTBED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root().join("target/flagd-data/open-feature-flagd-0.3.0/flagd-testbed")
        });
    assert!(
        dir.is_dir(),
        "flagd-testbed not found at {} (set FLAGD_TESTBED_DIR)",
        dir.display()
    );
    dir
}

/// A file source for `path`, identified by the path as given.
pub fn file_source(path: &Path) -> SourceConfig {
    SourceConfig {
        identity: Arc::from(path.to_string_lossy().as_ref()),
        kind: SourceKind::File {
            path: path.to_owned(),
            provider: FileProvider::File,
        },
    }
}

/// A configuration on 127.0.0.1 with free ports.
pub fn local_config(sources: Vec<SourceConfig>) -> Config {
    let mut config = Config::new(sources);
    config.listen = Listen::ephemeral(IpAddr::V4(Ipv4Addr::LOCALHOST));
    config
}

/// Starts a daemon on free ports over these files.
pub async fn start_with_files(paths: &[&Path]) -> Daemon {
    let config = local_config(paths.iter().map(|p| file_source(p)).collect());
    match flagpole::run(config).await {
        Ok(daemon) => daemon,
        Err(error) => panic!("daemon did not start: {error}"),
    }
}

/// A plain HTTP/1.1 GET: (status, content type, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// Waits until the store's snapshot satisfies `condition`; fails after [`CHANGE_TIMEOUT`].
pub async fn wait_for(daemon: &Daemon, what: &str, condition: impl Fn(&Snapshot) -> bool) {
    let mut changes = daemon.store().subscribe();
    let waited = tokio::time::timeout(CHANGE_TIMEOUT, async {
        loop {
            if condition(&daemon.store().snapshot()) {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        waited.is_ok() && condition(&daemon.store().snapshot()),
        "timed out waiting for: {what}"
    );
}

/// The default variant's value of `key` in the snapshot (no selector), if the flag exists.
pub fn default_value(snapshot: &Snapshot, key: &str) -> Option<Value> {
    let flag = snapshot.get(key, &Selector::All)?;
    let variant = flag.default_variant.as_deref()?;
    flag.variants.get(variant).cloned()
}

/// A flag document with one string flag `key` whose default variant has value `value`.
pub fn one_flag(key: &str, value: &str) -> String {
    format!(
        r#"{{"flags": {{"{key}": {{"state": "ENABLED", "variants": {{"v": "{value}", "other": "x"}}, "defaultVariant": "v"}}}}}}"#
    )
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, then a rename.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over target");
}

/// The project's Node client directory (`clients/node`), after checking that `package` (e.g.
/// `@openfeature/ofrep-provider`) is installed there; a missing one fails the test with the install step.
pub fn node_client_dir(package: &str) -> PathBuf {
    let dir = workspace_root().join("clients/node");
    assert!(
        dir.join("node_modules").join(package).is_dir(),
        "the Node package {package} is missing: run scripts/install-test-clients.sh"
    );
    dir
}

/// A command for the `flagpole` binary with the developer's `FLAGD_*` variables removed, so they cannot
/// change the daemon under test.
pub fn flagpole_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flagpole"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FLAGD_") {
            command.env_remove(name);
        }
    }
    command
}

/// A plaintext gRPC channel to the daemon's evaluation port.
pub async fn evaluation_channel(daemon: &Daemon) -> Channel {
    Endpoint::from_shared(format!(
        "http://127.0.0.1:{}",
        daemon.addrs().evaluation.port()
    ))
    .expect("endpoint")
    .connect()
    .await
    .expect("connect to the evaluation port")
}

/// A listener on a free port of 127.0.0.1, for a fake server, and its address.
pub async fn bind_local() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a fake server");
    let addr = listener.local_addr().expect("fake server address");
    (listener, addr)
}

/// Serves `router` over plain http on a free port of 127.0.0.1 until the test ends; returns its address.
pub async fn serve_router(router: axum::Router) -> SocketAddr {
    let (listener, addr) = bind_local().await;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// Serves `router` over https on a free port of 127.0.0.1 with `certificates`' server certificate until the
/// test ends; returns its address. A client that refuses the certificate ends its handshake, and that
/// connection is dropped.
pub async fn serve_router_tls(router: axum::Router, certificates: &TestCertificates) -> SocketAddr {
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![certificates.cert_der.clone()],
        certificates.key_der.clone_key(),
    )
    .expect("server TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let (listener, addr) = bind_local().await;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    addr
}

/// A fresh CA and a server certificate signed by it ([`test_certificates`]).
pub struct TestCertificates {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The CA certificate, DER.
    pub ca_der: CertificateDer<'static>,
    /// The server certificate, PEM.
    pub cert_pem: String,
    /// The server certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// The server's private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The server's private key, PKCS#8 DER.
    pub key_der: PrivateKeyDer<'static>,
}

/// Makes a fresh CA and a server certificate for `hosts` (DNS names or IP addresses) signed by it.
pub fn test_certificates(hosts: &[&str]) -> TestCertificates {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Named subjects: some real clients' TLS stacks reject or mis-report certificates without one.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "flagpole test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().expect("server key");
    let names: Vec<String> = hosts.iter().map(|host| (*host).to_owned()).collect();
    let mut server_params = CertificateParams::new(names).expect("server params");
    if let Some(first) = hosts.first() {
        server_params
            .distinguished_name
            .push(DnType::CommonName, *first);
    }
    let server = server_params
        .signed_by(&server_key, &issuer)
        .expect("server certificate");
    TestCertificates {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        cert_pem: server.pem(),
        cert_der: server.der().clone(),
        key_pem: server_key.serialize_pem(),
        key_der: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
    }
}

impl TestCertificates {
    /// Writes the server key to `key`, then the server certificate to `cert`.
    pub fn write_server(&self, cert: &Path, key: &Path) {
        std::fs::write(key, &self.key_pem).expect("write key");
        std::fs::write(cert, &self.cert_pem).expect("write cert");
    }
}
