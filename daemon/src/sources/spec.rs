//! What a source is, as the configuration names it: its identity and its kind with that kind's typed
//! settings. The sources own this vocabulary; `crate::config` builds it from the command line and re-exports
//! it, so the dependency runs one way (config → sources).

use std::path::PathBuf;
use std::sync::Arc;

/// How a file source notices changes. flagpole watches the parent directory in every case; the provider
/// name is kept for the record (flagd polls for `fileinfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileProvider {
    /// `file`.
    File,
    /// `fsnotify`.
    Fsnotify,
    /// `fileinfo`.
    Fileinfo,
}

/// One flag source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// The identity string (`source=` selectors match it; the file path without `file:`).
    pub identity: Arc<str>,
    /// What to read.
    pub kind: SourceKind,
}

/// The kinds of source flagpole can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A local JSON or YAML file, watched for changes.
    File {
        /// The path as given (relative paths are relative to the working directory).
        path: PathBuf,
        /// The provider name it was configured with.
        provider: FileProvider,
    },
    /// An http(s) URL, polled.
    Http(Box<super::http::HttpConfig>),
    /// A flagd.sync.v1 upstream (another flagpole or flagd), streamed.
    Grpc(Box<super::grpc::GrpcConfig>),
    /// A `FeatureFlag` resource (`core.openfeature.dev/v1beta1`), watched through the Kubernetes API.
    Kubernetes(Box<super::kubernetes::KubernetesConfig>),
    /// An object in Google Cloud Storage, S3 or Azure Blob Storage, polled.
    Blob(Box<super::blob::BlobConfig>),
}
