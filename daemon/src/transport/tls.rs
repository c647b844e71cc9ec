//! TLS for the evaluation and sync ports (`--server-cert-path`, `--server-key-path`), with certificate
//! reload.
//!
//! The certificate chain and key are PEM files. They are read once at start (a file that cannot be read or
//! parsed is a start error, as in flagd) and then re-read whenever either file changes: before each
//! handshake the two files' modification time, length and inode are compared with those of the loaded pair
//! (two `stat` calls, no watcher task), so a renewed certificate (cert-manager, a ConfigMap symlink swap)
//! applies to the next connection without a restart. A pair that fails to load is logged and the previous
//! one stays in use; it is tried again when the files change again (so a cert and key written one after
//! the other load once both are there). Open connections keep the certificate they were accepted with.
//!
//! Also the one client configuration flagpole's outgoing TLS connections start from
//! ([`client_config_builder`]: http and object-store sources, the OTLP exporter).
//!
//! What it does not do: client authentication (flagd has none) or TLS on the management and OFREP ports.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// ALPN protocols offered, most preferred first: HTTP/2 (gRPC needs it), then HTTP/1.1 (Connect and
/// gRPC-Web clients may use it).
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a certificate and key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds no usable PEM item.
    #[error("cannot read TLS {what} {path}: {source}")]
    Read {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// rustls rejects the pair (for example: the key does not match the certificate).
    #[error("cannot use TLS certificate {cert} with key {key}: {source}")]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        // `metadata` follows symlinks, so a swapped ConfigMap `..data` link changes the stamp.
        std::fs::metadata(path).ok().map(|m: Metadata| FileStamp {
            modified: m.modified().ok(),
            len: m.len(),
            inode: m.ino(),
        })
    }
}

type PairStamp = (Option<FileStamp>, Option<FileStamp>);

#[derive(Debug)]
struct Loaded {
    /// The stamp of the files last tried (loaded or not), so a bad pair is not retried on every connection.
    tried: PairStamp,
    config: Arc<ServerConfig>,
}

/// A TLS acceptor that follows changes of its certificate and key files.
#[derive(Debug, Clone)]
pub struct ReloadingTls {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<Loaded>,
}

impl ReloadingTls {
    /// Loads the pair; fails if it cannot be used.
    pub fn load(cert: &Path, key: &Path) -> Result<ReloadingTls, TlsError> {
        let tried = (FileStamp::of(cert), FileStamp::of(key));
        let config = server_config(cert, key)?;
        Ok(ReloadingTls {
            inner: Arc::new(Inner {
                cert: cert.to_owned(),
                key: key.to_owned(),
                current: Mutex::new(Loaded { tried, config }),
            }),
        })
    }

    /// The acceptor for the next handshake, reloaded first if either file changed.
    pub fn acceptor(&self) -> TlsAcceptor {
        let inner = &*self.inner;
        let stamp = (FileStamp::of(&inner.cert), FileStamp::of(&inner.key));
        let mut current = inner.current.lock().unwrap_or_else(PoisonError::into_inner);
        if stamp != current.tried {
            current.tried = stamp;
            match server_config(&inner.cert, &inner.key) {
                Ok(config) => {
                    tracing::info!(cert = %inner.cert.display(), "TLS certificate reloaded");
                    current.config = config;
                }
                Err(error) => {
                    tracing::warn!(%error, "keeping the previous TLS certificate");
                }
            }
        }
        TlsAcceptor::from(current.config.clone())
    }
}

/// Reads and checks the pair.
fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let read_error = |what: &'static str, path: &Path, source: io::Error| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|items| items.collect::<Result<Vec<_>, _>>())
        .map_err(|e| read_error("certificate", cert, pem_io_error(e)))?;
    if chain.is_empty() {
        return Err(read_error(
            "certificate",
            cert,
            io::Error::new(io::ErrorKind::InvalidData, "no CERTIFICATE block"),
        ));
    }
    let private_key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| read_error("key", key, pem_io_error(e)))?;
    let config_error = |source| TlsError::Config {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    };
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(config_error)?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn pem_io_error(error: rustls::pki_types::pem::Error) -> io::Error {
    match error {
        rustls::pki_types::pem::Error::Io(io) => io,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

/// The start of every outgoing TLS client configuration (ring, the safe protocol versions): trusting
/// `roots` when given, else the system's roots; a system without any gets an empty store and a warning
/// that `who` cannot be verified. The caller then chooses a client certificate or none.
pub(crate) fn client_config_builder(
    roots: Option<rustls::RootCertStore>,
    who: &str,
) -> Result<
    rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    rustls::Error,
> {
    use hyper_rustls::ConfigBuilderExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?;
    Ok(match roots {
        Some(roots) => builder.with_root_certificates(roots),
        None => match builder.clone().with_native_roots() {
            Ok(builder) => builder,
            Err(error) => {
                tracing::warn!(%error, "no system root certificates: {who} cannot be verified");
                builder.with_root_certificates(rustls::RootCertStore::empty())
            }
        },
    })
}
