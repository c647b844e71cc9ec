//! An http(s) source: a flag document fetched with `GET` and polled on a wall-clock schedule.
//!
//! What it owns: the typed configuration of one http source ([`HttpConfig`], built from the `--uri` or
//! `--sources` keys by [`HttpConfig::from_options`]), the poll schedule (flagd's: every `interval` seconds
//! aligned to the seconds since midnight, shifted by `fnv32a(intervalSeed) % interval`), the request
//! (`Accept: application/json, application/yaml`, `Authorization` from `authHeader` or an OAuth2
//! client-credentials token, extra `headers`, `If-None-Match` with the last `ETag`), and turning the answer
//! into flags: a 304 keeps the state, a body whose SHA-1 did not change sends no change, the format comes
//! from the configured URL's extension, else the final (redirected) URL's, else the `Content-Type`.
//!
//! On failure (network, timeout, non-2xx, unparsable body) the source keeps its last good flags; the
//! failure is logged and counted in the per-source metrics (last success, last error, consecutive failures).
//! The first fetch failing is a startup error, as in flagd, unless the source is `lazy` (flagpole): then the
//! daemon starts, and this source's readiness latch is released by its first good payload.
//!
//! Like flagd (Go's default `http.Client`), the fetch and the OAuth2 token request follow redirects (301,
//! 302, 303, 307, 308; the fetch fails at the [`MAX_REDIRECTS`]th redirect answer, so a redirect loop is a
//! failed poll) and drop `Authorization` and the other [`SENSITIVE_HEADERS`] once a redirect leaves the
//! original host and its subdomains. They go through the proxy of [`ProxyConfig`] (by default
//! `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY`, matched by hyper-util's `Matcher`, which has no
//! loopback exception: only `NO_PROXY` keeps `localhost` direct): a plain-http URL is sent in absolute form
//! to the proxy, an https URL through a `CONNECT` tunnel, with `Proxy-Authorization: Basic` from a
//! `user:pass@` in the proxy URL.
//!
//! The HTTP exchange itself (redirects, proxies, TLS, the body limit) is in `sources/http/client.rs`.
//!
//! What it does not do: retry between scheduled polls (the next poll is the retry, as in flagd), cache on
//! disk, send `Referer` on redirects, or talk to SOCKS proxies.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flagpole_engine::Format;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use hyper::body::Bytes;
use serde_json::Value;
use sha1::{Digest, Sha1};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{PublishError, RemoteOptions, SourceContext, SourceError, Wording};

mod client;

pub use client::{MAX_REDIRECTS, ProxyConfig, SENSITIVE_HEADERS};
use client::{Outgoing, SendError, Transport};

/// flagd's cap on a source's poll `interval`, in seconds (one day).
pub const MAX_POLL_INTERVAL_SECS: u64 = 86_400;

/// Poll interval when `interval` is not given, in seconds (flagd's default).
pub const DEFAULT_INTERVAL_SECS: u32 = 5;

/// The deadline of one poll (and of an OAuth2 token request) when `timeoutS` is not given. flagd has none:
/// a server that accepts the connection and never answers stalls its http source for good, silently.
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest flag document accepted in a response body, in bytes (the engine's document limit).
pub const MAX_BODY_BYTES: usize = flagpole_engine::load::MAX_DOCUMENT_BYTES;

/// The largest OAuth2 token response read, in bytes (a token response is a few hundred bytes).
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// The largest secret file (`client-id`, `client-secret`) read from an `oauth.folder`, in bytes.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// A cached OAuth2 token is renewed this long before its `expires_in` runs out.
pub const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// Wording of a good load's log lines.
const WORDING: Wording = Wording {
    violation: "flag document has a schema violation",
    loaded: "loaded flags from http source",
};

/// OAuth2 client-credentials settings (`oauth` key).
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    /// `clientID` (ignored when `folder` is set).
    pub client_id: String,
    /// `clientSecret` (ignored when `folder` is set).
    pub client_secret: String,
    /// `tokenUrl`.
    pub token_url: Uri,
    /// `folder`: read `client-id` and `client-secret` from these files instead.
    pub folder: Option<PathBuf>,
    /// `reloadDelayS`: how long a token (and the secrets read from `folder`) is reused; zero means a new
    /// token for every fetch, as in flagd.
    pub reload_delay: Duration,
}

impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("token_url", &self.token_url)
            .field("folder", &self.folder)
            .field("reload_delay", &self.reload_delay)
            .finish_non_exhaustive()
    }
}

/// One http(s) source, fully parsed.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// The URL fetched (also the source identity).
    pub url: Uri,
    /// `authHeader`: the whole `Authorization` value.
    pub auth_header: Option<HeaderValue>,
    /// `headers`: extra request headers (a `Host` entry sets the host header).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `interval` in seconds.
    pub interval_secs: u32,
    /// `fnv32a(intervalSeed) % interval`, in seconds.
    pub offset_secs: u32,
    /// `timeoutS`; `None` when not given (or 0): then [`DEFAULT_POLL_TIMEOUT`] (flagd waits for ever).
    pub timeout: Option<Duration>,
    /// `oauth`.
    pub oauth: Option<OAuthConfig>,
    /// `lazy` (flagpole): start without the first fetch succeeding.
    pub lazy: bool,
    /// The proxy settings (the environment's, unless a test or an embedder says otherwise).
    pub proxy: ProxyConfig,
    /// The certificates https servers are verified against: `None` (always, from the command line) for
    /// the system's roots; `Some` for only these (tests and embedders).
    pub tls_roots: Option<Vec<rustls::pki_types::CertificateDer<'static>>>,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&HeaderName> = self.headers.iter().map(|(name, _)| name).collect();
        f.debug_struct("HttpConfig")
            .field("url", &self.url)
            .field(
                "auth_header",
                &self.auth_header.as_ref().map(|_| "<redacted>"),
            )
            .field("headers", &header_names)
            .field("interval_secs", &self.interval_secs)
            .field("offset_secs", &self.offset_secs)
            .field("timeout", &self.timeout)
            .field("oauth", &self.oauth)
            .field("lazy", &self.lazy)
            .field("proxy", &self.proxy)
            .field("tls_roots", &self.tls_roots.as_ref().map(Vec::len))
            .finish()
    }
}

impl HttpConfig {
    /// The deadline of one poll: `timeoutS`, else [`DEFAULT_POLL_TIMEOUT`].
    pub fn poll_timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_POLL_TIMEOUT)
    }

    /// How long after its last good poll the source's data counts as overdue: three poll intervals (at
    /// least one second each) plus the poll deadline.
    pub fn overdue_after(&self) -> Duration {
        Duration::from_secs(3 * u64::from(self.interval_secs.max(1))) + self.poll_timeout()
    }

    /// Builds the configuration of the http source at `url` from the `--sources` keys (all defaults for a
    /// `--uri`). The message of an error names the key at fault.
    pub fn from_options(url: &str, options: RemoteOptions) -> Result<Self, String> {
        let parsed: Uri = url
            .parse()
            .map_err(|e| format!("uri {url:?} is not a URL: {e}"))?;
        match parsed.scheme_str() {
            Some("http" | "https") if parsed.host().is_some() => {}
            _ => return Err(format!("uri {url:?} must be an http:// or https:// URL")),
        }
        let interval = options.interval.unwrap_or(u64::from(DEFAULT_INTERVAL_SECS));
        if interval > MAX_POLL_INTERVAL_SECS {
            return Err(format!(
                "interval must be at most {MAX_POLL_INTERVAL_SECS} seconds"
            ));
        }
        let interval_secs = u32::try_from(interval).unwrap_or(DEFAULT_INTERVAL_SECS);
        let offset_secs = match options.interval_seed.as_deref() {
            Some(seed) if !seed.is_empty() && interval_secs > 0 => fnv1a32(seed) % interval_secs,
            _ => 0,
        };
        let auth_header = match options.auth_header.filter(|h| !h.is_empty()) {
            Some(value) => {
                let mut value = HeaderValue::from_str(&value)
                    .map_err(|_| "authHeader is not a valid header value".to_owned())?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let headers = header_list(&options.headers)?;
        let timeout = match options.timeout_s {
            None | Some(0) => None,
            Some(secs) if secs < 0 => return Err("timeoutS must not be negative".into()),
            Some(secs) => Some(Duration::from_secs(secs.unsigned_abs())),
        };
        let oauth = options.oauth.map(oauth_config).transpose()?;
        Ok(HttpConfig {
            url: parsed,
            auth_header,
            headers,
            interval_secs,
            offset_secs,
            timeout,
            oauth,
            lazy: options.lazy.unwrap_or(false),
            proxy: ProxyConfig::Environment,
            tls_roots: None,
        })
    }
}

/// Validates the `headers` map as HTTP header names and values.
fn header_list(
    headers: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    headers
        .iter()
        .map(|(name, value)| {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: {name:?} is not a valid header name"))?;
            let header_value = HeaderValue::from_str(value).map_err(|_| {
                format!("headers: the value of {name:?} is not a valid header value")
            })?;
            Ok((header_name, header_value))
        })
        .collect()
}

/// Parses the `oauth` object (keys matched case-insensitively, as mapstructure does).
fn oauth_config(value: Value) -> Result<OAuthConfig, String> {
    let Value::Object(map) = value else {
        return Err("oauth must be an object".into());
    };
    let mut client_id = String::new();
    let mut client_secret = String::new();
    let mut token_url = String::new();
    let mut folder = None;
    let mut reload_delay = Duration::ZERO;
    for (key, value) in map {
        let text = || match &value {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!("oauth.{key} must be a string, got {other}")),
        };
        match key.to_ascii_lowercase().as_str() {
            "clientid" => client_id = text()?,
            "clientsecret" => client_secret = text()?,
            "tokenurl" => token_url = text()?,
            "folder" => folder = Some(PathBuf::from(text()?)).filter(|p| !p.as_os_str().is_empty()),
            "reloaddelays" => {
                let secs = value
                    .as_u64()
                    .ok_or_else(|| format!("oauth.{key} must be a non-negative integer"))?;
                reload_delay = Duration::from_secs(secs);
            }
            _ => {}
        }
    }
    let token_url: Uri = token_url
        .parse()
        .map_err(|_| "oauth.tokenUrl is missing or not a URL".to_owned())?;
    if !matches!(token_url.scheme_str(), Some("http" | "https")) {
        return Err("oauth.tokenUrl must be an http:// or https:// URL".into());
    }
    if folder.is_none() && (client_id.is_empty() || client_secret.is_empty()) {
        return Err("oauth needs clientID and clientSecret, or a folder holding them".into());
    }
    Ok(OAuthConfig {
        client_id,
        client_secret,
        token_url,
        folder,
        reload_delay,
    })
}

/// 32-bit FNV-1a (Go's `hash/fnv` `New32a`), used for the `intervalSeed` offset.
pub fn fnv1a32(text: &str) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    text.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(PRIME)
    })
}

/// How long from `now` until the next poll: the next second-since-midnight (UTC) `s` with
/// `(s - offset) % interval == 0`. An interval of 0 polls every second (as flagd's schedule does).
pub fn next_poll_delay(now: SystemTime, interval_secs: u32, offset_secs: u32) -> Duration {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let into_second = Duration::from_nanos(u64::from(since_epoch.subsec_nanos()));
    let whole_seconds = if interval_secs == 0 {
        1
    } else {
        let interval = u64::from(interval_secs);
        let offset = u64::from(offset_secs) % interval;
        let now_s = since_epoch.as_secs() % 86_400;
        let since_last = (now_s + interval - offset) % interval;
        interval - since_last
    };
    Duration::from_secs(whole_seconds).saturating_sub(into_second)
}

/// Why one fetch of an http source failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request could not be sent or the connection failed.
    #[error("GET {url}: {message}")]
    Connect {
        /// The URL.
        url: String,
        /// The error and its causes.
        message: String,
    },
    /// The server answered with a status other than 2xx or 304.
    #[error("GET {url}: status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: StatusCode,
    },
    /// `timeoutS` ran out.
    #[error("GET {url}: no complete answer within {after:?} (timeoutS)")]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// The body could not be read or is larger than [`MAX_BODY_BYTES`].
    #[error("GET {url}: cannot read the body: {message}")]
    Body {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// Neither the URL's extension nor the `Content-Type` says JSON or YAML.
    #[error(
        "GET {url}: unsupported format (no .json/.yaml/.yml extension and content type {content_type:?})"
    )]
    UnsupportedFormat {
        /// The URL.
        url: String,
        /// The `Content-Type` received.
        content_type: String,
    },
    /// The body is not UTF-8.
    #[error("GET {url}: body is not UTF-8: {source}")]
    NotUtf8 {
        /// The URL.
        url: String,
        /// Where.
        #[source]
        source: std::str::Utf8Error,
    },
    /// The body (or a 304 for it) is the one rejected before: the source still has no good data.
    #[error("{url}: the same payload as before, still rejected: {reason}")]
    StillRejected {
        /// The URL.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The engine rejected the document.
    #[error("{url}: {source}")]
    Load {
        /// The URL.
        url: String,
        /// Why, with line and column.
        #[source]
        source: flagpole_engine::LoadError,
    },
    /// A redirect could not be followed, or there were [`MAX_REDIRECTS`] of them.
    #[error("GET {url}: {message}")]
    Redirect {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The OAuth2 token could not be obtained.
    #[error("oauth token from {token_url}: {message}")]
    Token {
        /// The token endpoint.
        token_url: String,
        /// Why.
        message: String,
    },
    /// A secret file of `oauth.folder` could not be read.
    #[error("oauth secret file {path}: {source}")]
    Secret {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl HttpError {
    /// The document arrived but could not be loaded (as opposed to the fetch failing).
    pub fn is_payload(&self) -> bool {
        matches!(
            self,
            HttpError::Load { .. } | HttpError::NotUtf8 { .. } | HttpError::StillRejected { .. }
        )
    }
}

/// What one fetch brought back.
enum Fetched {
    /// 304: unchanged since the last `ETag`.
    NotModified,
    /// A 2xx body, with the format it is in.
    Body(Bytes, Format),
}

/// An OAuth2 access token in use.
struct Token {
    authorization: HeaderValue,
    fetched: Instant,
    expires: Option<Instant>,
}

/// One running http source.
pub struct HttpSource {
    config: HttpConfig,
    context: SourceContext,
    transport: Transport,
    etag: Option<HeaderValue>,
    /// SHA-1 of the last body parsed (accepted or not): an identical body is not parsed again.
    last_hash: Option<[u8; 20]>,
    /// Why that body was rejected, when it was: its repeat (or a 304 for it) is a failure again.
    rejected: Option<String>,
    token: Option<Token>,
    consecutive_failures: u64,
    /// The URL as logged and reported: without credentials.
    shown: String,
    /// When the data was last good (or when the source started): the data is overdue after
    /// [`HttpConfig::overdue_after`].
    last_good: Instant,
    overdue: bool,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl HttpSource {
    /// A source for `config`, not fetched yet.
    pub fn new(config: HttpConfig, context: SourceContext) -> Result<Self, SourceError> {
        let transport = Transport::new(&config.proxy, config.tls_roots.as_deref())?;
        let shown = flagpole_engine::redact_credentials(&config.url.to_string());
        Ok(HttpSource {
            config,
            context,
            transport,
            etag: None,
            last_hash: None,
            rejected: None,
            token: None,
            consecutive_failures: 0,
            shown,
            last_good: Instant::now(),
            overdue: false,
        })
    }

    /// Fetches once (unless the source is lazy: a failure is then only logged), then polls on the schedule
    /// until `shutdown` is cancelled.
    pub async fn start(
        mut self,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, SourceError> {
        if !self.config.lazy {
            match self.poll(false).await {
                Ok(()) => {}
                // As for files (and flagd): a payload that arrives but does not load leaves the source
                // not ready; it does not stop the start.
                Err(error) if error.is_payload() => {
                    tracing::error!(%error, "rejected the first http payload; the source is not ready");
                }
                Err(error) => return Err(SourceError::Http(Box::new(error))),
            }
        }
        Ok(tokio::spawn(async move {
            if self.config.lazy {
                self.poll_logged(false, &shutdown).await;
            }
            tracing::debug!(url = %self.shown, interval = self.config.interval_secs, offset = self.config.offset_secs, "polling");
            loop {
                let delay = next_poll_delay(
                    SystemTime::now(),
                    self.config.interval_secs,
                    self.config.offset_secs,
                );
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
                self.poll_logged(true, &shutdown).await;
            }
        }))
    }

    /// One poll, with its failure logged and counted; stops early on shutdown.
    async fn poll_logged(&mut self, conditional: bool, shutdown: &CancellationToken) {
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = self.poll(conditional) => outcome,
        };
        if let Err(error) = outcome {
            tracing::error!(%error, failures = self.consecutive_failures, "http source poll failed; keeping its last good flags");
        }
    }

    /// Fetches and applies; records success or failure in the metrics.
    async fn poll(&mut self, conditional: bool) -> Result<(), HttpError> {
        let outcome = match self.fetch(conditional).await {
            Ok(Fetched::NotModified) => {
                tracing::debug!(url = %self.shown, "not modified");
                self.still_rejected()
            }
            Ok(Fetched::Body(body, format)) => self.apply(body, format).await,
            Err(error) => Err(error),
        };
        let identity = &self.context.identity;
        match &outcome {
            Ok(()) => {
                self.consecutive_failures = 0;
                self.last_good = Instant::now();
                self.context.metrics.source_fetch_succeeded(identity);
            }
            Err(_) => {
                self.consecutive_failures += 1;
                self.context.metrics.source_fetch_failed(identity);
            }
        }
        let overdue = self.last_good.elapsed() > self.config.overdue_after();
        if overdue != self.overdue {
            self.overdue = overdue;
            self.context.metrics.source_overdue(identity, overdue);
            if overdue {
                tracing::warn!(url = %self.shown, since_secs = self.last_good.elapsed().as_secs(), "http source data is overdue: no good poll for longer than three intervals plus the poll deadline");
            } else {
                tracing::info!(url = %self.shown, "http source data is current again");
            }
        }
        outcome
    }

    /// A failure when the payload the upstream still serves is the one rejected before.
    fn still_rejected(&self) -> Result<(), HttpError> {
        match &self.rejected {
            Some(reason) => Err(HttpError::StillRejected {
                url: self.shown.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// One `GET` (following redirects), bounded by `timeoutS` (or [`DEFAULT_POLL_TIMEOUT`]).
    async fn fetch(&mut self, conditional: bool) -> Result<Fetched, HttpError> {
        let url = self.shown.clone();
        let authorization = match &self.config.oauth {
            Some(oauth) => Some(self.oauth_token(&oauth.clone()).await?),
            None => self.config.auth_header.clone(),
        };
        let mut headers = HeaderMap::new();
        headers.append(ACCEPT, HeaderValue::from_static("application/json"));
        headers.append(ACCEPT, HeaderValue::from_static("application/yaml"));
        if let Some(value) = authorization {
            headers.insert(AUTHORIZATION, value);
        }
        for (name, value) in &self.config.headers {
            headers.append(name, value.clone());
        }
        if conditional && let Some(etag) = &self.etag {
            headers.insert(IF_NONE_MATCH, etag.clone());
        }
        let request = Outgoing {
            method: Method::GET,
            url: self.config.url.clone(),
            headers,
            body: Bytes::new(),
        };
        let exchange = self.transport.send(request, MAX_BODY_BYTES);
        let after = self.config.poll_timeout();
        let answer = tokio::time::timeout(after, exchange)
            .await
            .map_err(|_| HttpError::Timeout {
                url: url.clone(),
                after,
            })?
            .map_err(|error| match error {
                SendError::Body(message) => HttpError::Body {
                    url: url.clone(),
                    message,
                },
                SendError::Exchange(message) => HttpError::Connect {
                    url: url.clone(),
                    message,
                },
                SendError::Redirect(message) => HttpError::Redirect {
                    url: url.clone(),
                    message,
                },
            })?;
        // Errors name the URL that answered, when a redirect led elsewhere.
        let url = if answer.url == self.config.url {
            url
        } else {
            format!(
                "{url} (redirected to {})",
                flagpole_engine::redact_credentials(&answer.url.to_string())
            )
        };
        if answer.status == StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        if !answer.status.is_success() {
            return Err(HttpError::Status {
                url,
                status: answer.status,
            });
        }
        if let Some(etag) = answer.headers.get(ETAG) {
            self.etag = Some(etag.clone());
        }
        let content_type = answer
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // The configured URL's extension first (flagd's rule), then the final URL's, then the type.
        let format = format_of(self.config.url.path(), "")
            .or_else(|| format_of(answer.url.path(), content_type))
            .ok_or_else(|| HttpError::UnsupportedFormat {
                url,
                content_type: content_type.to_owned(),
            })?;
        Ok(Fetched::Body(answer.body, format))
    }

    /// The `Authorization` value of the current OAuth2 token, fetching a new one when needed.
    async fn oauth_token(&mut self, oauth: &OAuthConfig) -> Result<HeaderValue, HttpError> {
        let now = Instant::now();
        if let Some(token) = &self.token {
            let fresh = !oauth.reload_delay.is_zero()
                && now < token.fetched + oauth.reload_delay
                && token
                    .expires
                    .is_none_or(|at| now + TOKEN_EXPIRY_MARGIN < at);
            if fresh {
                return Ok(token.authorization.clone());
            }
        }
        let token_url = oauth.token_url.to_string();
        let failed = |message: String| HttpError::Token {
            token_url: token_url.clone(),
            message,
        };
        let (client_id, client_secret) = match &oauth.folder {
            Some(folder) => (
                read_secret(folder.join("client-id")).await?,
                read_secret(folder.join("client-secret")).await?,
            ),
            None => (oauth.client_id.clone(), oauth.client_secret.clone()),
        };
        let form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            form_encode(&client_id),
            form_encode(&client_secret)
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let request = Outgoing {
            method: Method::POST,
            url: oauth.token_url.clone(),
            headers,
            body: Bytes::from(form),
        };
        let exchange = self.transport.send(request, MAX_TOKEN_RESPONSE_BYTES);
        let after = self.config.poll_timeout();
        let answer = tokio::time::timeout(after, exchange)
            .await
            .map_err(|_| failed(format!("no answer within {after:?}")))?
            .map_err(|error| failed(error.to_string()))?;
        if !answer.status.is_success() {
            return Err(failed(format!("status {}", answer.status)));
        }
        let answer: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| failed(format!("response is not JSON: {e}")))?;
        let access_token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| failed("response has no access_token".into()))?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {access_token}"))
            .map_err(|_| failed("access_token is not a valid header value".into()))?;
        authorization.set_sensitive(true);
        let expires = answer
            .get("expires_in")
            .and_then(Value::as_u64)
            .filter(|secs| *secs > 0)
            .map(|secs| now + Duration::from_secs(secs));
        self.token = Some(Token {
            authorization: authorization.clone(),
            fetched: now,
            expires,
        });
        Ok(authorization)
    }

    /// Parses a body and, when it changed and loads, replaces this source's flags.
    async fn apply(&mut self, body: Bytes, format: Format) -> Result<(), HttpError> {
        let url = self.shown.clone();
        if body.iter().all(u8::is_ascii_whitespace) {
            // flagd: "configuration deleted", ignored.
            tracing::warn!(%url, "http source returned an empty body; keeping its last flags");
            return Ok(());
        }
        let hash: [u8; 20] = Sha1::digest(&body).into();
        if self.last_hash == Some(hash) {
            tracing::debug!(%url, "http source body unchanged");
            return self.still_rejected();
        }
        self.last_hash = Some(hash);
        let published = self.context.publish(WORDING, body, format).await;
        self.rejected = match &published {
            Ok(_) => None,
            Err(PublishError::Aborted(_)) => {
                // Not judged: parse it again next time.
                self.last_hash = None;
                None
            }
            Err(error) => Some(error.to_string()),
        };
        published.map(|_| ()).map_err(|error| match error {
            PublishError::NotUtf8(source) => HttpError::NotUtf8 { url, source },
            PublishError::Load(source) => HttpError::Load { url, source },
            PublishError::Aborted(error) => HttpError::Body {
                url,
                message: format!("loading failed: {error}"),
            },
        })
    }
}

/// JSON or YAML: by the URL path's extension, else by the `Content-Type` media type.
fn format_of(path: &str, content_type: &str) -> Option<Format> {
    if let Some(format) = Format::from_path(std::path::Path::new(path)) {
        return Some(format);
    }
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media_type.as_str() {
        "application/json" => Some(Format::Json),
        "application/yaml" | "application/x-yaml" => Some(Format::Yaml),
        _ => None,
    }
}

/// Reads one secret file of `oauth.folder`, trimmed of surrounding whitespace (a trailing newline).
async fn read_secret(path: PathBuf) -> Result<String, HttpError> {
    // The flag files' bounded, non-blocking read: a FIFO or a device here must not stall the source.
    let owned = path.clone();
    let read = tokio::task::spawn_blocking(move || {
        flagpole_engine::file::read_regular_file(&owned, MAX_SECRET_FILE_BYTES)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|read| read.map_err(std::io::Error::other))
    .and_then(|bytes| String::from_utf8(bytes).map_err(std::io::Error::other));
    read.map(|text| text.trim().to_owned())
        .map_err(|source| HttpError::Secret { path, source })
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_go_hash_fnv() {
        // Reference values of FNV-1a 32 (Go: fnv.New32a).
        assert_eq!(fnv1a32(""), 0x811c_9dc5);
        assert_eq!(fnv1a32("a"), 0xe40c_292c);
        assert_eq!(fnv1a32("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn schedule_is_aligned_to_the_wall_clock_plus_the_offset() {
        let at = |secs: u64, nanos: u32| UNIX_EPOCH + Duration::new(secs, nanos);
        // 86400 * 1000 is a midnight; 12 s later, interval 30, offset 0 → next at :30.
        let midnight = 86_400 * 1000;
        assert_eq!(
            next_poll_delay(at(midnight + 12, 0), 30, 0),
            Duration::from_secs(18)
        );
        assert_eq!(
            next_poll_delay(at(midnight + 12, 0), 30, 7),
            Duration::from_secs(25)
        );
        assert_eq!(
            next_poll_delay(at(midnight + 7, 0), 30, 7),
            Duration::from_secs(30)
        );
        assert_eq!(
            next_poll_delay(at(midnight + 12, 250_000_000), 5, 0),
            Duration::from_millis(2750)
        );
        assert_eq!(
            next_poll_delay(at(midnight, 400_000_000), 0, 0),
            Duration::from_millis(600)
        );
        // An offset larger than the interval wraps.
        assert_eq!(
            next_poll_delay(at(midnight + 1, 0), 5, 7),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn format_by_extension_then_content_type() {
        assert_eq!(format_of("/f.yaml", "application/json"), Some(Format::Yaml));
        assert_eq!(
            format_of("/flags", "application/json; charset=utf-8"),
            Some(Format::Json)
        );
        assert_eq!(
            format_of("/flags", "application/x-yaml"),
            Some(Format::Yaml)
        );
        assert_eq!(format_of("/flags", "text/plain"), None);
    }

    #[test]
    fn options_are_checked() {
        let with = |f: fn(&mut RemoteOptions)| {
            let mut options = RemoteOptions::default();
            f(&mut options);
            HttpConfig::from_options("https://example.com/flags.json", options)
        };
        let defaults = with(|_| {});
        assert!(
            defaults
                .as_ref()
                .is_ok_and(|c| c.interval_secs == DEFAULT_INTERVAL_SECS && c.timeout.is_none()),
            "{defaults:?}"
        );
        assert!(with(|o| o.interval = Some(86_401)).is_err());
        assert!(with(|o| o.timeout_s = Some(-1)).is_err());
        assert!(with(|o| o.auth_header = Some("a\nb".into())).is_err());
        assert!(with(|o| o.oauth = Some(serde_json::json!({"clientID": "x"}))).is_err());
        let seeded = with(|o| {
            o.interval = Some(30);
            o.interval_seed = Some("foobar".into());
        });
        assert_eq!(seeded.ok().map(|c| c.offset_secs), Some(0xbf9c_f968 % 30));
        assert!(HttpConfig::from_options("ftp://x/y", RemoteOptions::default()).is_err());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let options = RemoteOptions {
            auth_header: Some("Bearer s3cret".into()),
            oauth: Some(serde_json::json!({
                "clientID": "id", "clientSecret": "hidden-secret", "tokenUrl": "http://t/token"
            })),
            ..RemoteOptions::default()
        };
        let config = HttpConfig::from_options("http://h/f.json", options);
        let text = format!("{config:?}");
        assert!(
            !text.contains("s3cret") && !text.contains("hidden-secret"),
            "{text}"
        );
    }

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
