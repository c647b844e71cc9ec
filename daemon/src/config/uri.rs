//! Source specifications: one `--uri` string, or one entry of `--sources` (JSON, or the config file's
//! `sources` array), turned into a [`SourceConfig`].

use crate::sources::blob::{BlobConfig, Cloud};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{ConfigError, FileProvider, MAX_POLL_INTERVAL_SECS, SourceConfig, SourceKind};
use crate::sources::SourceConfigError;

/// Parses one `--uri` (the table in `docs/sources.md`).
pub fn parse_uri(uri: &str) -> Result<SourceConfig, ConfigError> {
    if let Some(path) = uri.strip_prefix("file:") {
        return file_source(path, FileProvider::File);
    }
    if uri.starts_with(crate::sources::kubernetes::URI_PREFIX) {
        let (identity, config) = crate::sources::kubernetes::KubernetesConfig::from_uri(uri)
            .map_err(ConfigError::UriSource)?;
        return Ok(SourceConfig {
            identity: Arc::from(identity),
            kind: SourceKind::Kubernetes(Box::new(config)),
        });
    }
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return http_source(uri, crate::sources::RemoteOptions::default())
            .map_err(ConfigError::UriSource);
    }
    if ["grpc://", "grpcs://", "envoy", "dns", "uds", "xds"]
        .iter()
        .any(|p| uri.starts_with(p))
    {
        let (identity, config) =
            crate::sources::grpc::GrpcConfig::from_uri(uri).map_err(ConfigError::UriSource)?;
        return Ok(SourceConfig {
            identity: Arc::from(identity),
            kind: SourceKind::Grpc(Box::new(config)),
        });
    }
    for (scheme, cloud) in [
        ("gs://", Cloud::Gcs),
        ("azblob://", Cloud::Azure),
        ("s3://", Cloud::S3),
    ] {
        if uri.starts_with(scheme) {
            return blob_source(uri, cloud, crate::sources::RemoteOptions::default())
                .map_err(ConfigError::UriSource);
        }
    }
    // flagpole extension: a bare path (no scheme) is a file.
    if !uri.contains("://") && supported_format(Path::new(uri)) {
        return file_source(uri, FileProvider::File);
    }
    Err(ConfigError::InvalidUri {
        uri: uri.to_owned(),
    })
}

/// Whether the extension is one flagd reads (.json, .yaml, .yml).
fn supported_format(path: &Path) -> bool {
    flagpole_engine::Format::from_path(path).is_some()
}

/// An object-store source; its identity is the URI as given (flagd's, query included).
fn blob_source(
    uri: &str,
    cloud: Cloud,
    options: crate::sources::RemoteOptions,
) -> Result<SourceConfig, SourceConfigError> {
    let config = BlobConfig::from_options(uri, cloud, options)?;
    Ok(SourceConfig {
        identity: Arc::from(flagpole_engine::redact_credentials(&config.identity())),
        kind: SourceKind::Blob(Box::new(config)),
    })
}

/// An http(s) source; its identity is the URL as given, less any credentials in it (`***@host`).
fn http_source(
    uri: &str,
    options: crate::sources::RemoteOptions,
) -> Result<SourceConfig, SourceConfigError> {
    Ok(SourceConfig {
        identity: Arc::from(flagpole_engine::redact_credentials(uri)),
        kind: SourceKind::Http(Box::new(crate::sources::http::HttpConfig::from_options(
            uri, options,
        )?)),
    })
}

fn file_source(path: &str, provider: FileProvider) -> Result<SourceConfig, ConfigError> {
    let path_buf = PathBuf::from(path);
    if !supported_format(&path_buf) {
        return Err(ConfigError::UnsupportedFileFormat { path: path_buf });
    }
    Ok(SourceConfig {
        identity: Arc::from(path),
        kind: SourceKind::File {
            path: path_buf,
            provider,
        },
    })
}

/// One `--sources` entry, keys lower-cased first (viper/mapstructure match them case-insensitively).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct SourceEntry {
    uri: Option<String>,
    provider: Option<String>,
    #[serde(rename = "authheader")]
    auth_header: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    interval: Option<u64>,
    #[serde(rename = "intervalseed")]
    interval_seed: Option<String>,
    #[serde(rename = "timeouts")]
    timeout_s: Option<i64>,
    oauth: Option<Value>,
    tls: Option<bool>,
    #[serde(rename = "certpath")]
    cert_path: Option<String>,
    #[serde(rename = "providerid")]
    provider_id: Option<String>,
    selector: Option<String>,
    #[serde(rename = "maxmsgsize")]
    max_msg_size: Option<i64>,
    #[serde(rename = "incrementalupdates")]
    incremental_updates: Option<bool>,
    lazy: Option<bool>,
    kubeconfig: Option<String>,
}

impl SourceEntry {
    pub(super) fn from_value(index: usize, value: Value) -> Result<Self, ConfigError> {
        let Value::Object(map) = value else {
            return Err(ConfigError::InvalidSource {
                index,
                message: "expected an object".into(),
            });
        };
        let lowered: Map<String, Value> = map
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        serde_json::from_value(Value::Object(lowered)).map_err(|e| ConfigError::InvalidSource {
            index,
            message: e.to_string(),
        })
    }

    pub(super) fn into_source(self, index: usize) -> Result<SourceConfig, ConfigError> {
        let invalid = |message: String| ConfigError::InvalidSource { index, message };
        let rejected = |source: SourceConfigError| ConfigError::SourceEntry { index, source };
        let uri = self.uri.filter(|u| !u.is_empty()).ok_or_else(|| {
            invalid("sync provider argument parse: uri is a required field".into())
        })?;
        let provider = self.provider.filter(|p| !p.is_empty()).ok_or_else(|| {
            invalid("sync provider argument parse: provider is a required field".into())
        })?;
        if self.interval.is_some_and(|i| i > MAX_POLL_INTERVAL_SECS) {
            return Err(rejected(SourceConfigError::IntervalTooLong));
        }
        if self.cert_path.as_deref().is_some_and(|p| !p.is_empty()) && self.tls == Some(false) {
            return Err(rejected(SourceConfigError::CertWithoutTls));
        }
        // Each remote source's configuration checks the keys it uses.
        let options = crate::sources::RemoteOptions {
            auth_header: self.auth_header,
            headers: self.headers.unwrap_or_default(),
            interval: self.interval,
            interval_seed: self.interval_seed,
            timeout_s: self.timeout_s,
            oauth: self.oauth,
            tls: self.tls,
            cert_path: self.cert_path,
            provider_id: self.provider_id,
            selector: self.selector,
            max_msg_size: self.max_msg_size,
            incremental_updates: self.incremental_updates,
            lazy: self.lazy,
            kubeconfig: self.kubeconfig,
        };
        // flagd panics on a `file:` prefix here (the source string no longer matches); flagpole strips it.
        let path = uri.strip_prefix("file:").unwrap_or(&uri);
        match provider.as_str() {
            "file" => file_source(path, FileProvider::File),
            "fsnotify" => file_source(path, FileProvider::Fsnotify),
            "fileinfo" => file_source(path, FileProvider::Fileinfo),
            "http" => http_source(&uri, options).map_err(rejected),
            "grpc" => crate::sources::grpc::GrpcConfig::from_options(&uri, options)
                .map(|config| SourceConfig {
                    identity: Arc::from(flagpole_engine::redact_credentials(&uri)),
                    kind: SourceKind::Grpc(Box::new(config)),
                })
                .map_err(rejected),
            "kubernetes" => {
                crate::sources::kubernetes::KubernetesConfig::from_options(&uri, options)
                    .map(|config| SourceConfig {
                        identity: Arc::from(config.identity()),
                        kind: SourceKind::Kubernetes(Box::new(config)),
                    })
                    .map_err(rejected)
            }
            "gcs" => blob_source(&uri, Cloud::Gcs, options).map_err(rejected),
            "azblob" => blob_source(&uri, Cloud::Azure, options).map_err(rejected),
            "s3" => blob_source(&uri, Cloud::S3, options).map_err(rejected),
            other => Err(invalid(format!("invalid sync provider: {other:?}"))),
        }
    }
}

pub(super) fn parse_sources_json(json: &str) -> Result<Vec<SourceEntry>, ConfigError> {
    let value: Value = serde_json::from_str(json).map_err(|e| ConfigError::InvalidValue {
        key: "sources",
        message: format!("not a JSON array: {e}"),
    })?;
    source_entries(value)
}

pub(super) fn source_entries(value: Value) -> Result<Vec<SourceEntry>, ConfigError> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| SourceEntry::from_value(i + 1, v))
            .collect(),
        Value::Null => Ok(Vec::new()),
        // viper also accepts the JSON text as a string value in a config file.
        Value::String(text) if !text.trim().is_empty() => parse_sources_json(&text),
        Value::String(_) => Ok(Vec::new()),
        other => Err(ConfigError::InvalidValue {
            key: "sources",
            message: format!("expected an array, got {other}"),
        }),
    }
}
