//! A grpc(s) source: a `flagd.sync.v1.FlagSyncService/SyncFlags` client to another flagpole or flagd, the
//! way sidecars chain to a central daemon.
//!
//! What it owns: the typed configuration ([`GrpcConfig`], from `grpc://host:port`, `grpcs://host:port`,
//! `envoy://host:port/authority`, `dns:` targets, or `provider: grpc` with its keys), the channel (TLS with
//! `certPath` as the CA bundle or the system roots, `maxMsgSize`, HTTP/2 keep-alive), the stream (request
//! body `provider_id` and `selector`, `headers` as metadata), and turning each message into this source's
//! flags. Every message is a full configuration; with `incrementalUpdates` a message replaces only the flags
//! of the flag sets it contains (flags of other sets stay, even orphans, as in flagd). Identical messages
//! (the upstream resends after every store change) are skipped by a SHA-1 of the payload. `sync_context` is
//! ignored, as flagd does.
//!
//! On a broken stream the source keeps its last good flags and reconnects after [`BACKOFF`] delays (then
//! [`BACKOFF_CEILING`] between attempts); a stream that delivered a message resets the back-off. The delays
//! are on tokio time, so tests can pause it. The first stream failing to open is a startup error, as in
//! flagd, unless the source is `lazy`.
//!
//! What it does not do: `FetchAllFlags` resyncs (flagd calls them only from flagd-proxy), the `uds:`/`xds:`
//! resolvers, or client certificates.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flagpole_engine::{Flag, Format, Loaded, Value};
use flagpole_proto::sync_v1::SyncFlagsRequest;
use flagpole_proto::sync_v1::flag_sync_service_client::FlagSyncServiceClient;
use http::{HeaderName, HeaderValue, Uri};
use sha1::{Digest, Sha1};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tonic::metadata::MetadataMap;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::{PublishError, RemoteOptions, SourceConfigError, SourceContext, SourceError, Wording};

/// Wording of a good load's log lines.
const WORDING: Wording = Wording {
    violation: "grpc payload has a schema violation",
    loaded: "loaded flags from grpc source",
};

/// Delays before the 1st, 2nd, ... reconnection attempt after a stream broke (flagd: 4 s, 16 s, 64 s;
/// flagpole retries sooner so a restarted upstream is picked up quickly).
pub const BACKOFF: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];

/// The delay between attempts once [`BACKOFF`] is used up (flagd: 60 s).
pub const BACKOFF_CEILING: Duration = Duration::from_secs(30);

/// How long dialling the upstream may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long opening the stream may take once connected (an upstream flagpole or flagd holds its sync port
/// for up to 5 s while its own sources load).
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// HTTP/2 keep-alive ping interval on an open stream. It is above flagd's and flagpole's default
/// `--keep-alive-min-time` (30 s), so a server enforcing that minimum never closes the connection for
/// pinging too often; no pings are sent without an open stream.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(60);

/// How long a keep-alive ping may go unanswered before the connection counts as broken.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The default `maxMsgSize`: grpc's 4 MiB receive limit.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// One grpc source, fully parsed.
#[derive(Clone, PartialEq, Eq)]
pub struct GrpcConfig {
    /// Host to dial.
    pub host: String,
    /// Port to dial.
    pub port: u16,
    /// `:authority` override (the `envoy://host:port/authority` form).
    pub authority: Option<String>,
    /// TLS (`grpcs://`, or `tls: true`).
    pub tls: bool,
    /// `certPath`: CA bundle (PEM); the system roots when absent.
    pub cert_path: Option<PathBuf>,
    /// `providerID`, sent in the request body.
    pub provider_id: String,
    /// `selector`, sent in the request body (field 2), as flagd's client does.
    pub selector: String,
    /// `maxMsgSize` in bytes.
    pub max_message_bytes: usize,
    /// `headers`, sent as metadata.
    pub metadata: Vec<(HeaderName, HeaderValue)>,
    /// `incrementalUpdates`.
    pub incremental: bool,
    /// `lazy` (flagpole): start without the first stream opening.
    pub lazy: bool,
}

impl std::fmt::Debug for GrpcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&HeaderName> = self.metadata.iter().map(|(name, _)| name).collect();
        f.debug_struct("GrpcConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("authority", &self.authority)
            .field("tls", &self.tls)
            .field("cert_path", &self.cert_path)
            .field("provider_id", &self.provider_id)
            .field("selector", &self.selector)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("metadata", &names)
            .field("incremental", &self.incremental)
            .field("lazy", &self.lazy)
            .finish()
    }
}

impl GrpcConfig {
    /// A `--uri`: `grpc://host:port`, `grpcs://host:port`, `envoy://host:port/authority` or
    /// `dns:[//authority/]host:port`. Returns the source identity too (flagd's: `host:port` for the
    /// `grpc(s)://` forms, the whole URI for resolver forms).
    pub fn from_uri(uri: &str) -> Result<(String, GrpcConfig), SourceConfigError> {
        let (identity, tls) = if let Some(rest) = uri.strip_prefix("grpcs://") {
            (rest.to_owned(), true)
        } else if let Some(rest) = uri.strip_prefix("grpc://") {
            (rest.to_owned(), false)
        } else {
            (uri.to_owned(), false)
        };
        let options = RemoteOptions {
            tls: Some(tls),
            ..RemoteOptions::default()
        };
        Ok((identity, GrpcConfig::from_options(uri, options)?))
    }

    /// A `--sources` entry with `provider: grpc` (its `uri` is `host:port` or a resolver URI; a
    /// `grpc://`/`grpcs://` prefix is accepted too). The message of an error names the key at fault.
    pub fn from_options(
        uri: &str,
        options: RemoteOptions,
    ) -> Result<GrpcConfig, SourceConfigError> {
        let (host, port, authority, secure_prefix) = target(uri)?;
        let cert_path = options
            .cert_path
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let tls = match options.tls {
            Some(false) if cert_path.is_some() => {
                return Err(SourceConfigError::CertWithoutTls);
            }
            Some(tls) => tls || secure_prefix,
            None => secure_prefix || cert_path.is_some(),
        };
        let max_message_bytes = match options.max_msg_size {
            None | Some(0) => DEFAULT_MAX_MESSAGE_BYTES,
            Some(n) if n < 0 => return Err(SourceConfigError::Negative { key: "maxMsgSize" }),
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let metadata = options
            .headers
            .iter()
            .map(|(name, value)| {
                let key =
                    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
                        SourceConfigError::HeaderName {
                            name: name.clone(),
                            what: "metadata key",
                        }
                    })?;
                if key.as_str().ends_with("-bin") {
                    return Err(SourceConfigError::BinaryMetadata { name: name.clone() });
                }
                let value =
                    HeaderValue::from_str(value).map_err(|_| SourceConfigError::HeaderValue {
                        name: name.clone(),
                        what: "valid metadata",
                    })?;
                Ok((key, value))
            })
            .collect::<Result<Vec<_>, SourceConfigError>>()?;
        Ok(GrpcConfig {
            host,
            port,
            authority,
            tls,
            cert_path,
            provider_id: options.provider_id.unwrap_or_default(),
            selector: options.selector.unwrap_or_default(),
            max_message_bytes,
            metadata,
            incremental: options.incremental_updates.unwrap_or(false),
            lazy: options.lazy.unwrap_or(false),
        })
    }

    /// The lazy channel to the upstream (nothing is dialled here).
    fn channel(&self) -> Result<Channel, GrpcError> {
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let bad = |e: &dyn std::fmt::Display| GrpcError::Channel {
            target: self.target(),
            message: e.to_string(),
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{host}:{}", self.port))
            .map_err(|e| bad(&e))?;
        if let Some(authority) = &self.authority {
            let origin: Uri = format!("{scheme}://{authority}")
                .parse()
                .map_err(|e| bad(&e))?;
            endpoint = endpoint.origin(origin);
        }
        if self.tls {
            let mut tls = ClientTlsConfig::new();
            tls = match &self.cert_path {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|source| GrpcError::Certificate {
                        path: path.clone(),
                        source,
                    })?;
                    tls.ca_certificate(Certificate::from_pem(pem))
                }
                None => tls.with_enabled_roots(),
            };
            tls = tls.domain_name(self.authority.clone().unwrap_or_else(|| self.host.clone()));
            endpoint = endpoint.tls_config(tls).map_err(|e| bad(&e))?;
        }
        Ok(endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(false)
            .connect_lazy())
    }

    /// `host:port` (and the authority) for messages.
    fn target(&self) -> String {
        match &self.authority {
            Some(authority) => format!("{}:{} ({authority})", self.host, self.port),
            None => format!("{}:{}", self.host, self.port),
        }
    }
}

/// Parses the dial target: (host, port, authority, whether a `grpcs://` prefix asked for TLS).
fn target(uri: &str) -> Result<(String, u16, Option<String>, bool), SourceConfigError> {
    let expected = |form: &str| SourceConfigError::UriForm {
        uri: uri.to_owned(),
        form: form.to_owned(),
    };
    if let Some(rest) = uri.strip_prefix("envoy://") {
        let (host_port, authority) = rest
            .split_once('/')
            .ok_or_else(|| expected("envoy://host:port/authority"))?;
        if authority.is_empty() || authority.contains('/') {
            return Err(expected(
                "envoy://host:port/authority (one non-empty path segment)",
            ));
        }
        let (host, port) =
            host_port_of(host_port).ok_or_else(|| expected("envoy://host:port/authority"))?;
        return Ok((host, port, Some(authority.to_owned()), false));
    }
    if uri.starts_with("uds") || uri.starts_with("xds") {
        return Err(SourceConfigError::UnsupportedResolver {
            uri: uri.to_owned(),
        });
    }
    let (rest, secure) = if let Some(rest) = uri.strip_prefix("grpcs://") {
        (rest, true)
    } else if let Some(rest) = uri.strip_prefix("grpc://") {
        (rest, false)
    } else if let Some(rest) = uri.strip_prefix("dns:") {
        // dns:host:port, dns:///host:port, dns://resolver/host:port (the resolver is not used).
        let rest = rest
            .strip_prefix("//")
            .map_or(rest, |r| r.split_once('/').map_or(r, |(_, t)| t));
        (rest, false)
    } else {
        (uri, false)
    };
    let (host, port) =
        host_port_of(rest.trim_end_matches('/')).ok_or_else(|| expected("host:port"))?;
    Ok((host, port, None, secure))
}

fn host_port_of(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty() && !host.contains('/')).then(|| (host.to_owned(), port))
}

/// Why a grpc source could not connect or its stream failed.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// The channel could not be set up (bad target or TLS settings).
    #[error("grpc source {target}: {message}")]
    Channel {
        /// host:port.
        target: String,
        /// Why.
        message: String,
    },
    /// The CA bundle could not be read.
    #[error("certPath {path}: {source}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The stream could not be opened or broke.
    #[error("grpc source {target}: {status}")]
    Stream {
        /// host:port.
        target: String,
        /// The gRPC status.
        status: Box<tonic::Status>,
    },
    /// The stream could not be opened within [`OPEN_TIMEOUT`].
    #[error("grpc source {target}: the stream did not open within {OPEN_TIMEOUT:?}")]
    Timeout {
        /// host:port.
        target: String,
    },
    /// The upstream ended the stream.
    #[error("grpc source {target}: the upstream ended the stream")]
    Ended {
        /// host:port.
        target: String,
    },
    /// A message could not be loaded.
    #[error("grpc source {target}: {source}")]
    Load {
        /// host:port.
        target: String,
        /// Why, with line and column.
        #[source]
        source: flagpole_engine::LoadError,
    },
}

/// One running grpc source.
pub struct GrpcSource {
    config: GrpcConfig,
    context: SourceContext,
    client: FlagSyncServiceClient<Channel>,
    /// This source's flags as last published (the base of incremental updates).
    current: Vec<Arc<Flag>>,
    /// SHA-1 of the last payload (accepted or not): an identical resend is skipped.
    last_hash: Option<[u8; 20]>,
}

impl std::fmt::Debug for GrpcSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcSource")
            .field("target", &self.config.target())
            .finish_non_exhaustive()
    }
}

impl GrpcSource {
    /// A source for `config`; the channel is set up but not dialled.
    pub fn new(config: GrpcConfig, context: SourceContext) -> Result<Self, SourceError> {
        let channel = config
            .channel()
            .map_err(|error| SourceError::Grpc(Box::new(error)))?;
        let client =
            FlagSyncServiceClient::new(channel).max_decoding_message_size(config.max_message_bytes);
        Ok(GrpcSource {
            config,
            context,
            client,
            current: Vec::new(),
            last_hash: None,
        })
    }

    /// Opens the first stream (unless the source is lazy), then hands the source to a task that reads the
    /// stream and reconnects until `shutdown` is cancelled.
    pub async fn start(
        mut self,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, SourceError> {
        let first = if self.config.lazy {
            self.context
                .restore_last_good(WORDING, "the source is lazy")
                .await;
            None
        } else {
            match self.open().await {
                Ok(stream) => Some(stream),
                Err(error) => {
                    self.context
                        .metrics
                        .source_fetch_failed(&self.context.identity);
                    self.context
                        .fall_back(WORDING, error)
                        .await
                        .map_err(|error| SourceError::Grpc(Box::new(error)))?;
                    // Served from the state directory; the stream is reopened with back-off.
                    None
                }
            }
        };
        Ok(tokio::spawn(async move { self.run(first, shutdown).await }))
    }

    /// Reads streams until shutdown, reconnecting with back-off.
    async fn run(
        mut self,
        mut stream: Option<Streaming<flagpole_proto::sync_v1::SyncFlagsResponse>>,
        shutdown: CancellationToken,
    ) {
        let mut attempt = 0usize;
        loop {
            let current = match stream.take() {
                Some(stream) => Some(stream),
                None => {
                    let opened = tokio::select! {
                        () = shutdown.cancelled() => return,
                        opened = self.open() => opened,
                    };
                    match opened {
                        Ok(stream) => {
                            tracing::info!(target = %self.config.target(), "grpc source connected");
                            Some(stream)
                        }
                        Err(error) => {
                            tracing::warn!(%error, "grpc source cannot connect; keeping its last good flags");
                            self.context
                                .metrics
                                .source_fetch_failed(&self.context.identity);
                            None
                        }
                    }
                }
            };
            if let Some(stream) = current {
                let delivered = tokio::select! {
                    () = shutdown.cancelled() => return,
                    delivered = self.read(stream) => delivered,
                };
                if delivered {
                    attempt = 0;
                }
            }
            let delay = backoff_delay(attempt);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Opens one `SyncFlags` stream.
    async fn open(
        &mut self,
    ) -> Result<Streaming<flagpole_proto::sync_v1::SyncFlagsResponse>, GrpcError> {
        #[allow(deprecated)]
        let body = SyncFlagsRequest {
            provider_id: self.config.provider_id.clone(),
            selector: self.config.selector.clone(),
        };
        let mut request = tonic::Request::new(body);
        let mut headers = http::HeaderMap::new();
        for (name, value) in &self.config.metadata {
            headers.append(name.clone(), value.clone());
        }
        *request.metadata_mut() = MetadataMap::from_headers(headers);
        let target = self.config.target();
        match tokio::time::timeout(OPEN_TIMEOUT, self.client.sync_flags(request)).await {
            Err(_) => Err(GrpcError::Timeout { target }),
            Ok(Err(status)) => Err(GrpcError::Stream {
                target,
                status: Box::new(status),
            }),
            Ok(Ok(response)) => Ok(response.into_inner()),
        }
    }

    /// Applies every message of `stream` until it ends or fails; returns whether any message arrived.
    async fn read(
        &mut self,
        mut stream: Streaming<flagpole_proto::sync_v1::SyncFlagsResponse>,
    ) -> bool {
        let target = self.config.target();
        let mut delivered = false;
        loop {
            let error = match stream.message().await {
                Ok(Some(message)) => {
                    delivered = true;
                    match self.apply(message.flag_configuration).await {
                        Ok(()) => self
                            .context
                            .metrics
                            .source_fetch_succeeded(&self.context.identity),
                        Err(error) => {
                            // Counted as rejected where it failed (`SourceContext::publish`).
                            tracing::error!(%error, "rejected grpc payload; the source keeps its last good flags");
                            self.context
                                .metrics
                                .source_fetch_failed(&self.context.identity);
                        }
                    }
                    continue;
                }
                Ok(None) => GrpcError::Ended { target },
                Err(status) => GrpcError::Stream {
                    target,
                    status: Box::new(status),
                },
            };
            tracing::warn!(%error, "grpc source stream broke; keeping its last good flags and reconnecting");
            self.context
                .metrics
                .source_fetch_failed(&self.context.identity);
            return delivered;
        }
    }

    /// Loads one payload and, when it changed, replaces (or, incrementally, patches) this source's flags.
    async fn apply(&mut self, payload: String) -> Result<(), GrpcError> {
        let hash: [u8; 20] = Sha1::digest(payload.as_bytes()).into();
        if self.last_hash == Some(hash) {
            tracing::debug!(target = %self.config.target(), "grpc payload unchanged");
            return Ok(());
        }
        self.last_hash = Some(hash);
        let incremental = self.config.incremental;
        // The merge base; `current` itself changes only when a payload is published.
        let base = if incremental {
            self.current.clone()
        } else {
            Vec::new()
        };
        let shape = move |loaded: Loaded| {
            let flags = if incremental {
                merge_incremental(&base, &loaded)
            } else {
                loaded.flags
            };
            (flags.clone(), flags)
        };
        let target = self.config.target();
        match self
            .context
            .publish_shaped(WORDING, payload, Format::Json, shape)
            .await
        {
            Ok(published) => {
                self.current = published.kept;
                Ok(())
            }
            Err(PublishError::Load(source)) => Err(GrpcError::Load { target, source }),
            Err(error @ (PublishError::NotUtf8(_) | PublishError::Aborted(_))) => {
                Err(GrpcError::Channel {
                    target,
                    message: format!("loading failed: {error}"),
                })
            }
        }
    }
}

/// The delay before reconnection attempt `attempt` (0-based) since the last stream that delivered.
pub fn backoff_delay(attempt: usize) -> Duration {
    BACKOFF.get(attempt).copied().unwrap_or(BACKOFF_CEILING)
}

/// flagd's `incrementalUpdates`: the payload replaces the flags of the flag sets it names (every flag's
/// own set, plus the set-level `metadata.flagSetId`); flags without a set form one set of their own.
pub fn merge_incremental(current: &[Arc<Flag>], loaded: &Loaded) -> Vec<Arc<Flag>> {
    let mut sets: HashSet<Option<Arc<str>>> =
        loaded.flags.iter().map(|f| f.flag_set_id.clone()).collect();
    if let Some(Value::String(id)) = loaded.metadata.get("flagSetId") {
        sets.insert(Some(Arc::from(id.as_str())));
    }
    current
        .iter()
        .filter(|flag| !sets.contains(&flag.flag_set_id))
        .chain(&loaded.flags)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagpole_engine::LoadOptions;

    #[test]
    fn uri_forms() {
        let parsed = GrpcConfig::from_uri("grpcs://sync.example:443");
        assert!(
            parsed
                .as_ref()
                .is_ok_and(|(id, c)| id == "sync.example:443" && c.tls && c.port == 443),
            "{parsed:?}"
        );
        let envoy = GrpcConfig::from_uri("envoy://localhost:9211/flags.service");
        assert!(
            envoy
                .as_ref()
                .is_ok_and(|(id, c)| id == "envoy://localhost:9211/flags.service"
                    && c.authority.as_deref() == Some("flags.service")
                    && !c.tls),
            "{envoy:?}"
        );
        assert!(GrpcConfig::from_uri("envoy://localhost:9211/").is_err());
        assert!(GrpcConfig::from_uri("envoy://localhost:9211/a/b").is_err());
        assert!(GrpcConfig::from_uri("grpc://nohostport").is_err());
        assert!(GrpcConfig::from_uri("xds:///svc").is_err());
        let dns = GrpcConfig::from_uri("dns:///flags:8015");
        assert!(dns.is_ok_and(|(_, c)| c.host == "flags" && c.port == 8015));
    }

    #[test]
    fn backoff_grows_then_stays_at_the_ceiling() {
        let delays: Vec<u64> = (0..8).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff_delay(usize::MAX), BACKOFF_CEILING);
    }

    #[test]
    fn options_are_checked() {
        let with = |f: fn(&mut RemoteOptions)| {
            let mut options = RemoteOptions::default();
            f(&mut options);
            GrpcConfig::from_options("localhost:8015", options)
        };
        assert!(
            with(|o| {
                o.cert_path = Some("/ca.pem".into());
                o.tls = Some(false);
            })
            .is_err()
        );
        assert!(with(|o| o.cert_path = Some("/ca.pem".into())).is_ok_and(|c| c.tls));
        assert!(with(|o| o.max_msg_size = Some(-1)).is_err());
        assert!(
            with(|_| {}).is_ok_and(|c| c.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES && !c.tls)
        );
        assert!(with(|o| o.headers = [("x-bin".into(), "v".into())].into()).is_err());
    }

    #[test]
    fn incremental_updates_replace_only_the_sets_in_the_payload() {
        let load = |text: &str| {
            flagpole_engine::parse_document(text, Format::Json, &LoadOptions::default())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let flag = |key: &str, set: &str| {
            format!(
                r#""{key}": {{"state": "ENABLED", "variants": {{"on": true}}, "defaultVariant": "on", "metadata": {{"flagSetId": "{set}"}}}}"#
            )
        };
        let first = load(&format!(
            r#"{{"flags": {{{}, {}}}}}"#,
            flag("a", "s1"),
            flag("b", "s2")
        ));
        let merged = merge_incremental(&[], &first);
        assert_eq!(merged.len(), 2);
        // A payload for s1 only: s1 is replaced (a dropped, c added), s2 stays.
        let second = load(&format!(r#"{{"flags": {{{}}}}}"#, flag("c", "s1")));
        let merged = merge_incremental(&merged, &second);
        let mut keys: Vec<&str> = merged.iter().map(|f| &*f.key).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["b", "c"]);
    }
}
