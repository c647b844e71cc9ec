//! Flag sources: where flags come from, and how each source keeps the store up to date.
//!
//! What it owns: starting every configured source (initial load, then watching), and the typed
//! [`SourceError`]. Each source replaces only its own slot in the store, always through
//! [`SourceContext::publish`] ([`publish`]); a payload that fails to load is logged and the source keeps
//! its last good flags.
//!
//! Remote sources ([`http`], [`grpc`], [`kubernetes`]) follow the same rule: a failed fetch, a broken
//! stream or watch, or a deleted `FeatureFlag` keeps the last good flags of that source only, and is
//! reported in the per-source metrics and the `/readyz` body. Their first fetch failing is a startup
//! error unless the source is `lazy` or, with a state directory, has a last-known-good payload to serve
//! ([`last_good`]).
//!
//! What it does not do: merge sources (the store and engine snapshot do).

pub mod blob;
pub mod file;
pub mod grpc;
pub mod http;
pub mod kubernetes;
pub mod last_good;
pub mod options;
pub mod polled;
pub mod publish;
pub mod spec;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::readiness::ReadyLatch;
use crate::store::Store;
use file::FileSource;
pub use options::{RemoteOptions, SourceConfigError};
pub use publish::{PublishError, Published, SourceContext, Wording};
pub use spec::{FileProvider, SourceConfig, SourceKind};

/// Why a source could not be read or its payload not loaded.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file cannot be read: missing, unreadable, not a regular file, or over the document limit.
    #[error("cannot read flag file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: flagpole_engine::file::FileError,
    },
    /// The file is empty (flagd: the payload `{}`, rejected).
    #[error("flag file {path} is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file is not UTF-8.
    #[error("flag file {path} is not UTF-8: {source}")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Where the bad byte is.
        #[source]
        source: std::str::Utf8Error,
    },
    /// The extension is not .json, .yaml or .yml.
    #[error("unsupported file format for {path}: use .json, .yaml or .yml")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
    },
    /// The engine rejected the document.
    #[error("{path}: {source}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why, with line and column.
        #[source]
        source: flagpole_engine::LoadError,
    },
    /// The directory cannot be watched.
    #[error("cannot watch {path}: {source}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// The watcher's error.
        #[source]
        source: notify::Error,
    },
    /// The first fetch of an http source failed (and the source is not `lazy`).
    #[error("http source: {0} (set \"lazy\": true on the source to start without it)")]
    Http(#[source] Box<http::HttpError>),
    /// The first stream of a grpc source could not be opened (and the source is not `lazy`).
    #[error("{0} (set \"lazy\": true on the source to start without it)")]
    Grpc(#[source] Box<grpc::GrpcError>),
    /// The first read of a kubernetes source failed (and the source is not `lazy`), or its client could
    /// not be configured.
    #[error("{0}{hint}", hint = .0.lazy_hint())]
    Kubernetes(#[source] Box<kubernetes::KubernetesError>),
    /// The first fetch of an object-store source failed (and the source is not `lazy`).
    #[error("object store source: {0} (set \"lazy\": true on the source to start without it)")]
    Blob(#[source] Box<blob::BlobError>),
    /// The TLS client could not be set up.
    #[error("cannot set up the TLS client: {message}")]
    Tls {
        /// Why.
        message: String,
    },
}

/// Starts every source: each loads once (a source that cannot be read fails the whole start, unless it
/// is lazy or, with a state directory, a remote source with a last-known-good payload to serve) and then
/// keeps its slot of `store` up to date until `shutdown` is cancelled.
pub async fn start(
    sources: &[SourceConfig],
    options: flagpole_engine::LoadOptions,
    store: &Arc<Store>,
    metrics: &Metrics,
    latches: Vec<ReadyLatch>,
    state: Option<&crate::state_dir::StateDir>,
    shutdown: &CancellationToken,
) -> Result<Vec<JoinHandle<()>>, SourceError> {
    let mut tasks = Vec::with_capacity(sources.len() + 1);
    let mut watcher = watch::DirWatcher::new().map_err(|source| SourceError::Watch {
        path: PathBuf::from("."),
        source,
    })?;
    for ((index, source), latch) in sources.iter().enumerate().zip(latches) {
        // Remote sources keep their last good payload; a grpc source with incremental updates does not,
        // since one of its payloads is only part of its flags.
        let remote = match &source.kind {
            SourceKind::File { .. } => false,
            SourceKind::Grpc(config) => !config.incremental,
            SourceKind::Http(_) | SourceKind::Kubernetes(_) | SourceKind::Blob(_) => true,
        };
        let context = SourceContext {
            index,
            identity: source.identity.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            latch,
            options,
            last_good: state
                .filter(|_| remote)
                .map(|state| last_good::LastGood::new(state, &source.identity)),
        };
        let task = match &source.kind {
            SourceKind::File { path, .. } => match FileSource::new(path.clone(), context) {
                Ok(source) => source.start(&mut watcher, shutdown.clone()).await,
                Err(error) => Err(error),
            },
            SourceKind::Grpc(config) => match grpc::GrpcSource::new((**config).clone(), context) {
                Ok(source) => source.start(shutdown.clone()).await,
                Err(error) => Err(error),
            },
            SourceKind::Http(config) => match http::HttpSource::new((**config).clone(), context) {
                Ok(source) => source.start(shutdown.clone()).await,
                Err(error) => Err(error),
            },
            SourceKind::Kubernetes(config) => {
                kubernetes::KubernetesSource::new((**config).clone(), context)
                    .start(shutdown.clone())
                    .await
            }
            SourceKind::Blob(config) => {
                blob::BlobSource::new((**config).clone(), context)
                    .start(shutdown.clone())
                    .await
            }
        };
        match task {
            Ok(task) => tasks.push(task),
            Err(error) => {
                for task in tasks {
                    task.abort();
                }
                return Err(error);
            }
        }
    }
    // The watcher stops when dropped: keep it alive until shutdown.
    let stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        stop.cancelled().await;
        drop(watcher);
    }));
    Ok(tasks)
}
