//! The http source's HTTP client: one `GET` (or the OAuth2 token `POST`) with Go's redirect rules and the
//! proxy settings of flagd's client, over hyper with rustls.
//!
//! What it owns: [`Transport`] (a hyper client over a connector that goes direct, through a plain-http
//! proxy in absolute form, or through a `CONNECT` tunnel for https), following 301, 302, 303, 307 and 308
//! answers up to [`MAX_REDIRECTS`] (a `POST` becomes a body-less `GET` on 301–303), dropping the
//! [`SENSITIVE_HEADERS`] once a hop leaves the original host and its subdomains, resolving relative
//! `Location`s, and reading a body within a byte limit.
//!
//! Why not a client crate: the Go-compatible redirect and header rules above (which headers are dropped
//! when, what happens to a `Host` override, the exact tenth-redirect failure) and hyper-util's proxy
//! `Matcher` and `Tunnel` are what flagd users rely on; a general client (reqwest) has its own redirect
//! policy and proxy handling to work around, and would bring a second HTTP stack beside the servers'.
//!
//! What it does not do: know about flags, schedules, ETags or OAuth (the source in [`super`] does).

use crate::error_chain;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, LOCATION, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::sources::SourceError;

/// The redirect answers one request may get: at this many the request fails ("stopped after 10
/// redirects"), as with Go's default client, so at most this many requests are sent per fetch.
pub const MAX_REDIRECTS: usize = 10;

/// Request headers dropped once a redirect leaves the original host and its subdomains (Go's client
/// drops the same ones and does not restore them on a later hop back).
pub const SENSITIVE_HEADERS: [HeaderName; 6] = [
    AUTHORIZATION,
    WWW_AUTHENTICATE,
    COOKIE,
    HeaderName::from_static("cookie2"),
    PROXY_AUTHORIZATION,
    PROXY_AUTHENTICATE,
];

/// The HTTPS client shared by the fetch and the token requests.
type HttpsClient = Client<HttpsConnector<ProxyConnector>, Full<Bytes>>;

/// Where an http source takes its proxy settings from.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum ProxyConfig {
    /// `HTTP_PROXY`/`http_proxy` (http URLs), `HTTPS_PROXY`/`https_proxy` (https URLs), `ALL_PROXY`/
    /// `all_proxy` (either, when the specific one is unset) and `NO_PROXY`/`no_proxy`, read when the
    /// source is created (none of them when `REQUEST_METHOD` is set, as for a CGI program).
    #[default]
    Environment,
    /// The same settings given as values, in the variables' syntax (an empty string is unset); for
    /// tests and embedders, which cannot share process-global variables.
    Explicit {
        /// As `HTTP_PROXY`.
        http: String,
        /// As `HTTPS_PROXY`.
        https: String,
        /// As `NO_PROXY`.
        no: String,
    },
}

impl ProxyConfig {
    /// The matcher of these settings.
    fn matcher(&self) -> Matcher {
        match self {
            ProxyConfig::Environment => Matcher::from_env(),
            ProxyConfig::Explicit { http, https, no } => {
                Matcher::builder().http(http).https(https).no(no).build()
            }
        }
    }
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyConfig::Environment => f.write_str("Environment"),
            // The matcher's Debug shows the proxies without their credentials.
            ProxyConfig::Explicit { .. } => write!(f, "Explicit({:?})", self.matcher()),
        }
    }
}

/// One request to send, and to send again (adjusted) after a redirect.
pub(super) struct Outgoing {
    pub(super) method: Method,
    pub(super) url: Uri,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// The final answer of a request, after any redirects.
pub(super) struct Answer {
    /// The URL that gave this answer.
    pub(super) url: Uri,
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// Why a request got no final answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    /// The connection or the exchange failed (with the whole cause chain).
    #[error("{0}")]
    Exchange(String),
    /// The body could not be read or is over the limit.
    #[error("cannot read the body: {0}")]
    Body(String),
    /// A redirect could not be followed, or there were too many.
    #[error("{0}")]
    Redirect(String),
}

/// The client of one source and the proxy matcher it connects through.
pub(super) struct Transport {
    client: HttpsClient,
    proxy: Arc<Matcher>,
}

impl Transport {
    /// A client that trusts `roots` (default: the system's root certificates, none with a warning when
    /// the system has none) and connects through the proxies of `proxy`.
    pub(super) fn new(
        proxy: &ProxyConfig,
        roots: Option<&[rustls::pki_types::CertificateDer<'static>]>,
    ) -> Result<Self, SourceError> {
        let tls = tls_config(roots)?;
        let proxy = Arc::new(proxy.matcher());
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        // The proxy itself (http:// or https://) speaks HTTP/1.1: absolute-form requests and CONNECT.
        let to_proxy = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http.clone());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(ProxyConnector {
                proxy: proxy.clone(),
                direct: http,
                to_proxy,
            });
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Transport { client, proxy })
    }

    /// Sends `request`, following redirects, and reads at most `limit` bytes of the final body.
    pub(super) async fn send(
        &self,
        mut request: Outgoing,
        limit: usize,
    ) -> Result<Answer, SendError> {
        let origin_host = request.url.host().unwrap_or("").to_ascii_lowercase();
        let mut redirects = 0;
        let mut stripped = false;
        loop {
            let response = self.send_once(&request).await?;
            let status = response.status();
            let location = match status.as_u16() {
                301 | 302 | 303 | 307 | 308 => response.headers().get(LOCATION).cloned(),
                _ => None,
            };
            // A 3xx without a Location is an answer, as in Go.
            let Some(location) = location else {
                let (parts, body) = response.into_parts();
                let body = read_body(&parts.headers, body, limit).await?;
                return Ok(Answer {
                    url: request.url,
                    status,
                    headers: parts.headers,
                    body,
                });
            };
            drop(response);
            redirects += 1;
            if redirects >= MAX_REDIRECTS {
                return Err(SendError::Redirect(format!(
                    "stopped after {MAX_REDIRECTS} redirects (the last from {} to {location:?})",
                    request.url
                )));
            }
            let (next, relative) = resolve_location(&request.url, &location).ok_or_else(|| {
                SendError::Redirect(format!(
                    "{status} from {} to {location:?}, which is not an http(s) URL",
                    request.url
                ))
            })?;
            let to_get = match status {
                StatusCode::SEE_OTHER => request.method != Method::HEAD,
                StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => request.method == Method::POST,
                _ => false,
            };
            if to_get {
                request.method = Method::GET;
                request.body = Bytes::new();
                request.headers.remove(CONTENT_TYPE);
                request.headers.remove(CONTENT_LENGTH);
            }
            // A custom Host survives only a relative Location, as in Go.
            if !relative {
                request.headers.remove(HOST);
            }
            let next_host = next.host().unwrap_or("").to_ascii_lowercase();
            if !stripped && !is_domain_or_subdomain(&next_host, &origin_host) {
                for name in &SENSITIVE_HEADERS {
                    request.headers.remove(name);
                }
                stripped = true;
            }
            tracing::debug!(from = %request.url, to = %next, %status, "following a redirect");
            request.url = next;
        }
    }

    /// One exchange, without following redirects; the body is not read yet.
    async fn send_once(
        &self,
        request: &Outgoing,
    ) -> Result<http::Response<hyper::body::Incoming>, SendError> {
        let mut builder = Request::builder()
            .method(request.method.clone())
            .uri(request.url.clone());
        if let Some(headers) = builder.headers_mut() {
            headers.clone_from(&request.headers);
            // A plain-http request to a proxy carries the proxy's credentials (https ones go in CONNECT).
            if request.url.scheme() == Some(&http::uri::Scheme::HTTP)
                && let Some(auth) = self
                    .proxy
                    .intercept(&request.url)
                    .and_then(|proxy| proxy.basic_auth().cloned())
            {
                headers.insert(PROXY_AUTHORIZATION, auth);
            }
        }
        let built = builder
            .body(Full::new(request.body.clone()))
            .map_err(|e| SendError::Exchange(e.to_string()))?;
        self.client
            .request(built)
            .await
            .map_err(|e| SendError::Exchange(error_chain(&e)))
    }
}

/// Reads at most `limit` bytes of `body` (refusing at once a larger declared `Content-Length`).
async fn read_body(
    headers: &HeaderMap,
    body: hyper::body::Incoming,
    limit: usize,
) -> Result<Bytes, SendError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared
        && length > limit as u64
    {
        return Err(SendError::Body(format!(
            "{length} bytes, more than the limit of {limit}"
        )));
    }
    Ok(Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| SendError::Body(e.to_string()))?
        .to_bytes())
}

/// The rustls client configuration: `roots` when given, else the system's roots, or none (with a
/// warning) when it has none.
pub(crate) fn tls_config(
    roots: Option<&[rustls::pki_types::CertificateDer<'static>]>,
) -> Result<rustls::ClientConfig, SourceError> {
    let tls = |e: rustls::Error| SourceError::Tls {
        message: e.to_string(),
    };
    let store = match roots {
        Some(roots) => {
            let mut store = rustls::RootCertStore::empty();
            for root in roots {
                store.add(root.clone()).map_err(tls)?;
            }
            Some(store)
        }
        None => None,
    };
    Ok(
        crate::transport::tls::client_config_builder(store, "https sources")
            .map_err(tls)?
            .with_no_client_auth(),
    )
}

/// `host` is `parent` or one of its subdomains (Go's rule for keeping sensitive headers). Hosts are
/// lowercase; an IPv6 literal only matches itself.
fn is_domain_or_subdomain(host: &str, parent: &str) -> bool {
    if host == parent {
        return true;
    }
    if host.contains(':') || host.starts_with('[') {
        return false;
    }
    host.strip_suffix(parent)
        .is_some_and(|rest| !parent.is_empty() && rest.ends_with('.'))
}

/// The URL a `Location` leads to from `base` (RFC 3986 reference resolution, fragment dropped), and
/// whether the `Location` was relative (had no scheme). `None` when it is not an http(s) URL.
fn resolve_location(base: &Uri, location: &HeaderValue) -> Option<(Uri, bool)> {
    let text = location.to_str().ok()?.trim();
    let text = text.split('#').next().unwrap_or("");
    let scheme_end = text.find(':').filter(|&i| {
        i > 0
            && text[..i]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            && !text[..i].contains(['/', '?'])
    });
    if scheme_end.is_some() {
        let uri: Uri = text.parse().ok()?;
        let http_ish = matches!(uri.scheme_str(), Some("http" | "https"));
        return (http_ish && uri.host().is_some()).then_some((uri, false));
    }
    let scheme = base.scheme_str()?;
    if let Some(rest) = text.strip_prefix("//") {
        let uri: Uri = format!("{scheme}://{rest}").parse().ok()?;
        return uri.host().is_some().then_some((uri, true));
    }
    let authority = base.authority()?.as_str();
    let (reference_path, query) = match text.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (text, None),
    };
    let path = if reference_path.is_empty() {
        base.path().to_owned()
    } else if reference_path.starts_with('/') {
        remove_dot_segments(reference_path)
    } else {
        let base_path = base.path();
        let directory = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        let directory = if directory.is_empty() { "/" } else { directory };
        remove_dot_segments(&format!("{directory}{reference_path}"))
    };
    let query = match query {
        Some(query) => Some(query),
        // An empty reference keeps the base's query.
        None if reference_path.is_empty() => base.query(),
        None => None,
    };
    let url = match query {
        Some(query) => format!("{scheme}://{authority}{path}?{query}"),
        None => format!("{scheme}://{authority}{path}"),
    };
    Some((url.parse().ok()?, true))
}

/// RFC 3986 5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            other => out.push(other),
        }
    }
    format!("/{}", out.join("/"))
}

/// The connector under TLS: straight to the destination, to the proxy (plain-http destinations: the
/// client then sends absolute-form requests), or through a `CONNECT` tunnel (https destinations).
#[derive(Clone)]
struct ProxyConnector {
    proxy: Arc<Matcher>,
    direct: HttpConnector,
    to_proxy: HttpsConnector<HttpConnector>,
}

/// A connection made by [`ProxyConnector`].
struct ProxyStream {
    io: MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>,
    /// Connected to a proxy that is sent the requests themselves (not a tunnel).
    proxied: bool,
}

/// The error type of connectors.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ProxyStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both inner connectors are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let Some(proxy) = self.proxy.intercept(&destination) else {
            let connecting = self.direct.call(destination);
            return Box::pin(async move {
                Ok(ProxyStream {
                    io: MaybeHttpsStream::Http(connecting.await?),
                    proxied: false,
                })
            });
        };
        if destination.scheme() == Some(&http::uri::Scheme::HTTPS) {
            let mut tunnel = Tunnel::new(proxy.uri().clone(), self.to_proxy.clone());
            if let Some(auth) = proxy.basic_auth() {
                tunnel = tunnel.with_auth(auth.clone());
            }
            let connecting = tunnel.call(destination);
            Box::pin(async move {
                Ok(ProxyStream {
                    io: connecting.await?,
                    proxied: false,
                })
            })
        } else {
            let connecting = self.to_proxy.call(proxy.uri().clone());
            Box::pin(async move {
                Ok(ProxyStream {
                    io: connecting.await?,
                    proxied: true,
                })
            })
        }
    }
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl hyper::rt::Read for ProxyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for ProxyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_current_url() {
        let base: Uri = "http://a.example:8080/x/y/flags.json?v=1"
            .parse()
            .unwrap_or_default();
        let resolve = |location: &'static str| {
            resolve_location(&base, &HeaderValue::from_static(location))
                .map(|(url, relative)| (url.to_string(), relative))
        };
        let relative = |url: &str| Some((url.to_owned(), true));
        assert_eq!(
            resolve("https://b.example/f.yaml#top"),
            Some(("https://b.example/f.yaml".to_owned(), false))
        );
        assert_eq!(resolve("//c.example/f"), relative("http://c.example/f"));
        assert_eq!(
            resolve("/z/./q/../f.json"),
            relative("http://a.example:8080/z/f.json")
        );
        assert_eq!(
            resolve("other.json?w=2"),
            relative("http://a.example:8080/x/y/other.json?w=2")
        );
        assert_eq!(resolve("../../up"), relative("http://a.example:8080/up"));
        assert_eq!(
            resolve("../../../../above-root"),
            relative("http://a.example:8080/above-root")
        );
        assert_eq!(
            resolve("?v=2"),
            relative("http://a.example:8080/x/y/flags.json?v=2")
        );
        assert_eq!(resolve("ftp://files.example/f"), None);
        assert_eq!(resolve("mailto:someone@example.com"), None);
    }

    #[test]
    fn sensitive_headers_stay_within_the_host_and_its_subdomains() {
        assert!(is_domain_or_subdomain("flags.example", "flags.example"));
        assert!(is_domain_or_subdomain("eu.flags.example", "flags.example"));
        assert!(!is_domain_or_subdomain(
            "evilflags.example",
            "flags.example"
        ));
        assert!(!is_domain_or_subdomain("flags.example", "eu.flags.example"));
        assert!(!is_domain_or_subdomain("localhost", "127.0.0.1"));
        assert!(is_domain_or_subdomain("[::1]", "[::1]"));
        assert!(!is_domain_or_subdomain("[::1]", "1]"));
    }

    #[test]
    fn proxy_settings_follow_no_proxy_and_hide_credentials() {
        let config = ProxyConfig::Explicit {
            http: "http://user:hidden-pass@proxy.example:3128".into(),
            https: "http://tunnel.example:3129".into(),
            no: "internal.example, 10.0.0.0/8".into(),
        };
        let matcher = config.matcher();
        let via = |url: &'static str| {
            matcher
                .intercept(&Uri::from_static(url))
                .map(|proxy| proxy.uri().to_string())
        };
        assert_eq!(
            via("http://flags.example/f.json").as_deref(),
            Some("http://proxy.example:3128/")
        );
        assert_eq!(
            via("https://flags.example/f.json").as_deref(),
            Some("http://tunnel.example:3129/")
        );
        assert_eq!(via("http://api.internal.example/f.json"), None);
        assert_eq!(via("http://10.1.2.3/f.json"), None);
        // Loopback is not special: only NO_PROXY keeps it direct.
        assert!(via("http://127.0.0.1/f.json").is_some());
        assert!(via("http://localhost/f.json").is_some());
        let text = format!("{config:?}");
        assert!(!text.contains("hidden-pass"), "{text}");
        assert!(text.contains("proxy.example"), "{text}");
    }
}
