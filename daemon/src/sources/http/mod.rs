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

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use flagpole_engine::Format;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use hyper::body::Bytes;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::polled::{Applied, PollState};
use super::{PublishError, SourceContext, SourceError, Wording};

mod client;
mod config;

pub use crate::sources::options::MAX_POLL_INTERVAL_SECS;
pub use client::{MAX_REDIRECTS, ProxyConfig, SENSITIVE_HEADERS};
use client::{Outgoing, SendError, Transport};
pub use config::{
    DEFAULT_INTERVAL_SECS, DEFAULT_POLL_TIMEOUT, HttpConfig, OAuthConfig, fnv1a32, next_poll_delay,
    poll_timeout, schedule,
};

/// The rustls client configuration of the http and object-store sources: the system's roots.
pub(crate) fn client_tls_config() -> Result<rustls::ClientConfig, String> {
    client::tls_config(None).map_err(|error| error.to_string())
}

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
    /// The last body, its rejection, failures in a row, overdue (`sources::polled`).
    polled: PollState,
    token: Option<Token>,
    /// The URL as logged and reported: without credentials.
    shown: String,
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
            polled: PollState::default(),
            token: None,
            shown,
        })
    }

    /// Fetches once (unless the source is lazy: a failure is then only logged), then polls on the schedule
    /// until `shutdown` is cancelled.
    pub async fn start(
        mut self,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, SourceError> {
        if self.config.lazy {
            self.context
                .restore_last_good(WORDING, "the source is lazy")
                .await;
        } else {
            match self.poll(false).await {
                Ok(()) => {}
                // As for files (and flagd): a payload that arrives but does not load leaves the source
                // not ready; it does not stop the start.
                Err(error) if error.is_payload() => {
                    tracing::error!(%error, "rejected the first http payload; the source is not ready");
                }
                Err(error) => {
                    self.context
                        .fall_back(WORDING, error)
                        .await
                        .map_err(|error| SourceError::Http(Box::new(error)))?;
                    // Served from the state directory: keep trying at once, as a lazy source does.
                    self.config.lazy = true;
                }
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
            tracing::error!(%error, failures = self.polled.consecutive_failures, "http source poll failed; keeping its last good flags");
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
        self.polled.record(
            outcome.is_ok(),
            &self.context,
            self.config.overdue_after(),
            "http source",
        );
        outcome
    }

    /// A failure when the payload the upstream still serves is the one rejected before.
    fn still_rejected(&self) -> Result<(), HttpError> {
        match self.polled.still_rejected() {
            Some(reason) => Err(HttpError::StillRejected {
                url: self.shown.clone(),
                reason: reason.to_owned(),
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
        match self
            .polled
            .apply(&mut self.context, WORDING, body, format)
            .await
        {
            Applied::Empty => {
                tracing::warn!(%url, "http source returned an empty body; keeping its last flags");
                Ok(())
            }
            Applied::Unchanged => {
                tracing::debug!(%url, "http source body unchanged");
                self.still_rejected()
            }
            Applied::Published => Ok(()),
            Applied::Rejected(error) => Err(match error {
                PublishError::NotUtf8(source) => HttpError::NotUtf8 { url, source },
                PublishError::Load(source) => HttpError::Load { url, source },
                PublishError::Aborted(error) => HttpError::Body {
                    url,
                    message: format!("loading failed: {error}"),
                },
            }),
        }
    }
}

/// JSON or YAML: by the URL path's extension, else by the `Content-Type` media type.
pub(crate) fn format_of(path: &str, content_type: &str) -> Option<Format> {
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
    fn form_values_are_encoded() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
