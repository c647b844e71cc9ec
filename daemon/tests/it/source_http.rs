//! The http source against an in-process HTTP server: ETag and 304, failures that keep the last good
//! flags, timeouts, `authHeader` and extra headers, OAuth2 client credentials (inline and from a folder),
//! YAML by content type, the startup error and the `lazy` option, redirects (chains, credentials on a
//! cross-host hop, loops, the token request) and proxies (absolute-form http, `CONNECT` for https,
//! `NO_PROXY`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flagpole::config::{SourceConfig, SourceKind};
use flagpole::sources::RemoteOptions;
use flagpole::sources::http::{HttpConfig, ProxyConfig};
use flagpole_engine::Value;

use crate::runtime_support::{
    CHANGE_TIMEOUT, default_value, file_source, http_get, local_config, one_flag, serve_router,
    test_certificates, wait_for,
};

/// What the fake server answers and what it has seen.
#[derive(Debug, Default)]
struct Served {
    body: String,
    etag: Option<String>,
    status: u16,
    content_type: String,
    delay: Duration,
    /// Every request to the flags route: (If-None-Match, Authorization, X-Env).
    seen: Vec<(Option<String>, Option<String>, Option<String>)>,
    /// The Host header of every request to the flags route.
    hosts: Vec<Option<String>>,
    /// Bodies of token requests.
    token_forms: Vec<String>,
}

type Shared = Arc<Mutex<Served>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Served> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn flags(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let delay = {
        let mut served = lock(&shared);
        served.seen.push((
            header_text(&headers, "if-none-match"),
            header_text(&headers, "authorization"),
            header_text(&headers, "x-env"),
        ));
        served.hosts.push(header_text(&headers, "host"));
        served.delay
    };
    tokio::time::sleep(delay).await;
    let served = lock(&shared);
    let status = StatusCode::from_u16(served.status).unwrap_or(StatusCode::OK);
    if !status.is_success() {
        return status.into_response();
    }
    if served.etag.is_some() && served.etag == header_text(&headers, "if-none-match") {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut response = (
        [(header::CONTENT_TYPE, served.content_type.clone())],
        served.body.clone(),
    )
        .into_response();
    if let Some(etag) = &served.etag
        && let Ok(value) = etag.parse()
    {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// Flags that require the OAuth token `tok-1`.
async fn protected(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if header_text(&headers, "authorization").as_deref() != Some("Bearer tok-1") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let _ = &shared;
    (
        [(header::CONTENT_TYPE, "application/yaml")],
        "flags:\n  guarded:\n    state: ENABLED\n    variants: {v: secret-ok, w: x}\n    defaultVariant: v\n",
    )
        .into_response()
}

async fn token(State(shared): State<Shared>, body: String) -> Response {
    let ok = body.contains("grant_type=client_credentials")
        && body.contains("client_id=my-id")
        && body.contains("client_secret=my+secret");
    lock(&shared).token_forms.push(body);
    if !ok {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"access_token":"tok-1","token_type":"bearer","expires_in":3600}"#,
    )
        .into_response()
}

/// Starts the fake server on 127.0.0.1:0.
async fn serve(initial: Served) -> (SocketAddr, Shared) {
    let shared = Arc::new(Mutex::new(initial));
    let router = Router::new()
        .route("/flags.json", get(flags))
        .route("/protected", get(protected))
        .route("/token", post(token))
        .with_state(shared.clone());
    (serve_router(router).await, shared)
}

fn http_source(url: &str, options: RemoteOptions) -> SourceConfig {
    match HttpConfig::from_options(url, options) {
        Ok(config) => SourceConfig {
            identity: Arc::from(url),
            kind: SourceKind::Http(Box::new(config)),
        },
        Err(message) => panic!("bad http source: {message}"),
    }
}

fn fast(options: RemoteOptions) -> RemoteOptions {
    RemoteOptions {
        interval: Some(1),
        ..options
    }
}

/// Waits until `condition` holds on the server state; fails after [`CHANGE_TIMEOUT`].
async fn wait_served(shared: &Shared, what: &str, condition: impl Fn(&Served) -> bool) {
    let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
    while !condition(&lock(shared)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn value(text: &str) -> Option<Value> {
    Some(Value::String(text.to_owned()))
}

#[tokio::test]
async fn http_source_polls_with_etag_keeps_flags_on_errors_and_sends_headers() {
    let (addr, shared) = serve(Served {
        body: one_flag("remote", "one"),
        etag: Some("\"v1\"".into()),
        status: 200,
        content_type: "application/json".into(),
        ..Served::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("local.json");
    std::fs::write(&local, one_flag("local", "file")).expect("write flags");
    let url = format!("http://{addr}/flags.json");
    let options = fast(RemoteOptions {
        auth_header: Some("Bearer abc".into()),
        headers: [
            ("X-Env".to_owned(), "test".to_owned()),
            ("Host".to_owned(), "flags.example".to_owned()),
        ]
        .into(),
        ..RemoteOptions::default()
    });
    let daemon = match flagpole::run(local_config(vec![
        file_source(&local),
        http_source(&url, options),
    ]))
    .await
    {
        Ok(daemon) => daemon,
        Err(error) => panic!("daemon did not start: {error}"),
    };
    assert_eq!(
        default_value(&daemon.store().snapshot(), "remote"),
        value("one")
    );
    assert!(daemon.readiness().is_ready());
    {
        let served = lock(&shared);
        let first = served.seen.first().cloned().unwrap_or_default();
        assert_eq!(first.0, None, "the first fetch is unconditional");
        assert_eq!(first.1.as_deref(), Some("Bearer abc"));
        assert_eq!(first.2.as_deref(), Some("test"));
        assert_eq!(
            served.hosts.first().cloned().flatten().as_deref(),
            Some("flags.example"),
            "a Host entry in headers sets the host header"
        );
    }

    // The next poll is conditional and answered 304: nothing changes.
    wait_served(&shared, "a conditional poll", |s| {
        s.seen.iter().any(|r| r.0.as_deref() == Some("\"v1\""))
    })
    .await;
    assert_eq!(
        default_value(&daemon.store().snapshot(), "remote"),
        value("one")
    );

    // A new document with a new ETag is picked up.
    {
        let mut served = lock(&shared);
        served.body = one_flag("remote", "two");
        served.etag = Some("\"v2\"".into());
    }
    wait_for(&daemon, "the new remote value", |s| {
        default_value(s, "remote") == value("two")
    })
    .await;

    // Failures keep the last good flags (of this source and of the others) and are counted.
    let before = lock(&shared).seen.len();
    lock(&shared).status = 500;
    wait_served(&shared, "two failed polls", |s| s.seen.len() >= before + 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let snapshot = daemon.store().snapshot();
    assert_eq!(default_value(&snapshot, "remote"), value("two"));
    assert_eq!(default_value(&snapshot, "local"), value("file"));
    let metrics = daemon.metrics().encode();
    let failures = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "flagpole_source_consecutive_failures{{source=\"{url}\"}} "
            ))
        })
        .and_then(|v| v.parse::<i64>().ok());
    assert!(failures.is_some_and(|n| n >= 2), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "flagpole_source_last_error_timestamp_seconds{{source=\"{url}\"}}"
        )),
        "{metrics}"
    );

    // Recovery resets the streak.
    {
        let mut served = lock(&shared);
        served.status = 200;
        served.body = one_flag("remote", "three");
        served.etag = None;
    }
    wait_for(&daemon, "recovery", |s| {
        default_value(s, "remote") == value("three")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(daemon.metrics().encode().contains(&format!(
        "flagpole_source_consecutive_failures{{source=\"{url}\"}} 0"
    )));

    // Without an ETag the same body comes back whole on every poll: it is not reloaded.
    let reloads = |daemon: &flagpole::Daemon| {
        daemon.metrics().encode().lines().find_map(|l| {
            l.strip_prefix(&format!(
                "flagpole_source_reloads_total{{source=\"{url}\"}} "
            ))
            .map(str::to_owned)
        })
    };
    let reloaded = reloads(&daemon);
    let before = lock(&shared).seen.len();
    wait_served(&shared, "two unconditional polls", |s| {
        s.seen.len() >= before + 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(reloads(&daemon), reloaded);
    assert!(reloaded.is_some());
    let _ = daemon.shutdown().await;
}

#[tokio::test]
async fn first_fetch_failure_is_a_startup_error_unless_the_source_is_lazy() {
    let (addr, shared) = serve(Served {
        body: one_flag("late", "arrived"),
        status: 500,
        content_type: "application/json".into(),
        ..Served::default()
    })
    .await;
    let url = format!("http://{addr}/flags.json");
    match flagpole::run(local_config(vec![http_source(
        &url,
        fast(RemoteOptions::default()),
    )]))
    .await
    {
        Ok(_) => panic!("a failing first fetch must fail the start"),
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.contains("status 500") && text.contains("lazy"),
                "{text}"
            );
        }
    }

    let lazy = fast(RemoteOptions {
        lazy: Some(true),
        ..RemoteOptions::default()
    });
    let daemon = match flagpole::run(local_config(vec![http_source(&url, lazy)])).await {
        Ok(daemon) => daemon,
        Err(error) => panic!("a lazy source must not fail the start: {error}"),
    };
    assert!(!daemon.readiness().is_ready());
    // /readyz says why: the source's failure streak (once the first lazy poll has failed).
    let line = format!("source {url}: consecutive_failures=");
    let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
    loop {
        let (status, _, body) = http_get(daemon.addrs().management, "/readyz").await;
        assert_eq!(status, 412);
        if body.contains(&line) {
            assert!(body.starts_with("not ready\n"), "{body}");
            assert!(body.contains("last_success=never"), "{body}");
            assert!(!body.contains(&format!("{line}0 ")), "{body}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lock(&shared).status = 200;
    wait_for(&daemon, "the lazy source's first load", |s| {
        default_value(s, "late") == value("arrived")
    })
    .await;
    // The latch is released right after the flags are published.
    let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
    while !daemon.readiness().is_ready() {
        assert!(tokio::time::Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = daemon.shutdown().await;
}

#[tokio::test]
async fn a_slow_response_times_out_after_timeout_s() {
    let (addr, _shared) = serve(Served {
        body: one_flag("slow", "x"),
        status: 200,
        content_type: "application/json".into(),
        delay: Duration::from_secs(30),
        ..Served::default()
    })
    .await;
    let url = format!("http://{addr}/flags.json");
    let options = RemoteOptions {
        timeout_s: Some(1),
        ..RemoteOptions::default()
    };
    let started = tokio::time::Instant::now();
    match flagpole::run(local_config(vec![http_source(&url, options)])).await {
        Ok(_) => panic!("a timed-out first fetch must fail the start"),
        Err(error) => assert!(error.to_string().contains("timeoutS"), "{error}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timeout did not apply"
    );
}

#[tokio::test]
async fn oauth_client_credentials_inline_and_from_a_folder() {
    let (addr, shared) = serve(Served::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("client-id"), "my-id\n").expect("write id");
    std::fs::write(dir.path().join("client-secret"), "my secret\n").expect("write secret");
    let token_url = format!("http://{addr}/token");
    let inline = RemoteOptions {
        oauth: Some(serde_json::json!({
            "clientID": "my-id", "clientSecret": "my secret", "tokenUrl": token_url
        })),
        ..RemoteOptions::default()
    };
    let folder = RemoteOptions {
        oauth: Some(serde_json::json!({
            "folder": dir.path(), "tokenUrl": token_url, "reloadDelayS": 600,
            "clientID": "ignored", "clientSecret": "ignored"
        })),
        ..RemoteOptions::default()
    };
    let url = format!("http://{addr}/protected");
    let daemon = match flagpole::run(local_config(vec![
        http_source(&url, inline),
        http_source(&format!("{url}?from=folder"), folder),
    ]))
    .await
    {
        Ok(daemon) => daemon,
        Err(error) => panic!("daemon did not start: {error}"),
    };
    // YAML chosen by Content-Type (the URL has no extension).
    assert_eq!(
        default_value(&daemon.store().snapshot(), "guarded"),
        value("secret-ok")
    );
    assert_eq!(lock(&shared).token_forms.len(), 2);
    let _ = daemon.shutdown().await;

    // Wrong credentials: the token request fails, and so does the start.
    let wrong = RemoteOptions {
        oauth: Some(serde_json::json!({
            "clientID": "my-id", "clientSecret": "wrong", "tokenUrl": token_url
        })),
        ..RemoteOptions::default()
    };
    match flagpole::run(local_config(vec![http_source(&url, wrong)])).await {
        Ok(_) => panic!("a failed token request must fail the start"),
        Err(error) => assert!(error.to_string().contains("oauth token"), "{error}"),
    }
}

/// What a redirecting server has seen: (path, Authorization) of every request.
type Hops = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Serves redirects on a free port: each `(path, status, location)` answers `status` with that
/// `Location`; any other path is a 404.
async fn serve_redirects(routes: Vec<(&'static str, StatusCode, String)>) -> (SocketAddr, Hops) {
    let hops: Hops = Arc::default();
    let seen = hops.clone();
    let routes = Arc::new(routes);
    let router = Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap| {
        let (seen, routes) = (seen.clone(), routes.clone());
        async move {
            seen.lock().unwrap_or_else(PoisonError::into_inner).push((
                uri.path().to_owned(),
                header_text(&headers, "authorization"),
            ));
            match routes.iter().find(|(path, _, _)| *path == uri.path()) {
                Some((_, status, location)) => {
                    (*status, [(header::LOCATION, location.clone())]).into_response()
                }
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    (serve_router(router).await, hops)
}

fn hops_of(hops: &Hops) -> Vec<(String, Option<String>)> {
    hops.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

async fn start(sources: Vec<SourceConfig>) -> flagpole::Daemon {
    match tokio::time::timeout(CHANGE_TIMEOUT, flagpole::run(local_config(sources))).await {
        Ok(Ok(daemon)) => daemon,
        Ok(Err(error)) => panic!("daemon did not start: {error}"),
        Err(_) => panic!("daemon start timed out"),
    }
}

/// The start error of a daemon over `sources` (which must fail to start, within the time limit).
async fn start_error(sources: Vec<SourceConfig>) -> String {
    match tokio::time::timeout(CHANGE_TIMEOUT, flagpole::run(local_config(sources))).await {
        Ok(Ok(_)) => panic!("the daemon must not start"),
        Ok(Err(error)) => error.to_string(),
        Err(_) => panic!("daemon start timed out"),
    }
}

#[tokio::test]
async fn a_301_then_307_chain_is_followed_with_the_etag() {
    let (flags_addr, shared) = serve(Served {
        body: one_flag("moved", "one"),
        etag: Some("\"v1\"".into()),
        status: 200,
        content_type: "application/json".into(),
        ..Served::default()
    })
    .await;
    let (addr, hops) = serve_redirects(vec![
        ("/r301", StatusCode::MOVED_PERMANENTLY, "/r307".to_owned()),
        (
            "/r307",
            StatusCode::TEMPORARY_REDIRECT,
            format!("http://{flags_addr}/flags.json"),
        ),
    ])
    .await;
    let url = format!("http://{addr}/r301");
    let daemon = start(vec![http_source(&url, fast(RemoteOptions::default()))]).await;
    assert_eq!(
        default_value(&daemon.store().snapshot(), "moved"),
        value("one")
    );
    let paths: Vec<String> = hops_of(&hops).into_iter().map(|(path, _)| path).collect();
    assert_eq!(
        paths.get(..2),
        Some(&["/r301".to_owned(), "/r307".to_owned()][..])
    );

    // The next polls go through the chain again, conditional on the final URL's ETag.
    wait_served(&shared, "a conditional poll through the redirects", |s| {
        s.seen.iter().any(|r| r.0.as_deref() == Some("\"v1\""))
    })
    .await;
    {
        let mut served = lock(&shared);
        served.body = one_flag("moved", "two");
        served.etag = Some("\"v2\"".into());
    }
    wait_for(&daemon, "the new value behind the redirects", |s| {
        default_value(s, "moved") == value("two")
    })
    .await;
    let _ = daemon.shutdown().await;
}

#[tokio::test]
async fn authorization_is_dropped_on_a_cross_host_redirect_and_kept_on_a_same_host_one() {
    let (flags_addr, shared) = serve(Served {
        body: one_flag("guarded", "ok"),
        status: 200,
        content_type: "application/json".into(),
        ..Served::default()
    })
    .await;
    let port = flags_addr.port();
    let (addr, hops) = serve_redirects(vec![
        (
            "/cross",
            StatusCode::FOUND,
            format!("http://localhost:{port}/flags.json"),
        ),
        // Same host name, another port: Go keeps the credentials.
        (
            "/same",
            StatusCode::FOUND,
            format!("http://127.0.0.1:{port}/flags.json"),
        ),
    ])
    .await;
    let options = || {
        fast(RemoteOptions {
            auth_header: Some("Bearer abc".into()),
            headers: [("X-Env".to_owned(), "test".to_owned())].into(),
            ..RemoteOptions::default()
        })
    };
    let daemon = start(vec![
        http_source(&format!("http://{addr}/cross"), options()),
        http_source(&format!("http://{addr}/same"), options()),
    ])
    .await;
    assert_eq!(
        default_value(&daemon.store().snapshot(), "guarded"),
        value("ok")
    );
    let _ = daemon.shutdown().await;

    // The redirecting server got the credentials on both first hops.
    let hops = hops_of(&hops);
    assert!(hops.iter().any(|(p, _)| p == "/cross") && hops.iter().any(|(p, _)| p == "/same"));
    assert!(
        hops.iter()
            .all(|(_, auth)| auth.as_deref() == Some("Bearer abc")),
        "{hops:?}"
    );
    let served = lock(&shared);
    let by_host = |host: String| -> Vec<(Option<String>, Option<String>)> {
        served
            .seen
            .iter()
            .zip(&served.hosts)
            .filter(|(_, h)| h.as_deref() == Some(host.as_str()))
            .map(|(seen, _)| (seen.1.clone(), seen.2.clone()))
            .collect()
    };
    let cross = by_host(format!("localhost:{port}"));
    let same = by_host(format!("127.0.0.1:{port}"));
    assert!(!cross.is_empty() && !same.is_empty(), "{:?}", served.hosts);
    assert!(
        cross
            .iter()
            .all(|(auth, env)| auth.is_none() && env.as_deref() == Some("test")),
        "cross-host: Authorization dropped, other headers kept: {cross:?}"
    );
    assert!(
        same.iter()
            .all(|(auth, _)| auth.as_deref() == Some("Bearer abc")),
        "same host: Authorization kept: {same:?}"
    );
}

#[tokio::test]
async fn a_redirect_loop_fails_the_start_after_ten_redirects() {
    let (addr, hops) =
        serve_redirects(vec![("/loop", StatusCode::FOUND, "/loop".to_owned())]).await;
    let url = format!("http://{addr}/loop");
    let text = start_error(vec![http_source(&url, RemoteOptions::default())]).await;
    assert!(
        text.contains("stopped after 10 redirects") && text.contains(&url),
        "{text}"
    );
    // As Go's client: ten requests, each answered with a redirect, then the error.
    assert_eq!(hops_of(&hops).len(), 10);
}

/// What a test proxy has seen: the head of every request, lowercased.
type ProxyLog = Arc<Mutex<Vec<String>>>;

/// The longest request head the test proxy reads.
const PROXY_HEAD_LIMIT: usize = 64 * 1024;

/// Reads a request head (through the blank line); `None` on EOF or an over-long head.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > PROXY_HEAD_LIMIT || stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

/// A forward proxy on a free port: logs each request head, forwards an absolute-form request to its
/// origin (as `Connection: close`, without `Proxy-Authorization`) and tunnels `CONNECT`.
async fn serve_proxy() -> (SocketAddr, ProxyLog) {
    use tokio::io::AsyncWriteExt;
    let (listener, addr) = crate::runtime_support::bind_local().await;
    let log: ProxyLog = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut client).await else {
                    return;
                };
                seen.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(head.to_ascii_lowercase());
                let mut lines = head.split("\r\n");
                let request_line = lines.next().unwrap_or_default();
                let mut parts = request_line.split(' ');
                let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                if method == "CONNECT" {
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    let _ = client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    return;
                }
                let Some(rest) = target.strip_prefix("http://") else {
                    let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                    return;
                };
                let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let Ok(mut upstream) = tokio::net::TcpStream::connect(authority).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let mut forwarded = format!("{method} {path} HTTP/1.1\r\n");
                for line in lines.filter(|l| !l.is_empty()) {
                    let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
                    if name != "proxy-authorization" && name != "connection" {
                        forwarded.push_str(line);
                        forwarded.push_str("\r\n");
                    }
                }
                forwarded.push_str("Connection: close\r\n\r\n");
                if upstream.write_all(forwarded.as_bytes()).await.is_ok() {
                    let _ = tokio::io::copy(&mut upstream, &mut client).await;
                }
                let _ = client.shutdown().await;
            });
        }
    });
    (addr, log)
}

fn proxied(url: &str, options: RemoteOptions, proxy: ProxyConfig) -> SourceConfig {
    let mut source = http_source(url, options);
    if let SourceKind::Http(config) = &mut source.kind {
        config.proxy = proxy;
    }
    source
}

#[tokio::test]
async fn plain_http_goes_through_the_proxy_unless_no_proxy_names_the_host() {
    let (flags_addr, shared) = serve(Served {
        body: one_flag("via", "proxy"),
        status: 200,
        content_type: "application/json".into(),
        ..Served::default()
    })
    .await;
    let (proxy_addr, log) = serve_proxy().await;
    let proxy = ProxyConfig::Explicit {
        http: format!("http://user:pass@{proxy_addr}"),
        https: String::new(),
        no: "localhost".into(),
    };
    let port = flags_addr.port();
    let through = format!("http://127.0.0.1:{port}/flags.json");
    let direct = format!("http://localhost:{port}/flags.json");
    let daemon = start(vec![
        proxied(&through, RemoteOptions::default(), proxy.clone()),
        proxied(&direct, RemoteOptions::default(), proxy),
    ])
    .await;
    assert_eq!(
        default_value(&daemon.store().snapshot(), "via"),
        value("proxy")
    );
    let _ = daemon.shutdown().await;

    let heads = log.lock().unwrap_or_else(PoisonError::into_inner).clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let head = heads.first().cloned().unwrap_or_default();
    assert!(
        head.starts_with(&format!(
            "get http://127.0.0.1:{port}/flags.json http/1.1\r\n"
        )),
        "absolute-form request to the proxy: {head}"
    );
    // base64("user:pass")
    assert!(
        head.contains("\r\nproxy-authorization: basic dxnlcjpwyxnz\r\n"),
        "{head}"
    );
    // The origin saw both: the proxied request (forwarded) and the direct one (NO_PROXY).
    let hosts = lock(&shared).hosts.clone();
    assert!(
        hosts.contains(&Some(format!("127.0.0.1:{port}")))
            && hosts.contains(&Some(format!("localhost:{port}"))),
        "{hosts:?}"
    );
}

/// Serves `router` over https on a free port of 127.0.0.1, with a certificate for 127.0.0.1 signed by
/// a fresh CA; returns the address and the CA certificate.
async fn serve_router_tls(
    router: Router,
) -> (SocketAddr, rustls::pki_types::CertificateDer<'static>) {
    let certificates = test_certificates(&["127.0.0.1"]);
    let addr = crate::runtime_support::serve_router_tls(router, &certificates).await;
    (addr, certificates.ca_der)
}

#[tokio::test]
async fn https_goes_through_a_connect_tunnel_to_the_tls_server() {
    let router = Router::new().route(
        "/flags.json",
        get(|| async { one_flag("tunnelled", "yes") }),
    );
    let (server_addr, ca) = serve_router_tls(router).await;
    let (proxy_addr, log) = serve_proxy().await;
    let proxy = ProxyConfig::Explicit {
        http: String::new(),
        https: format!("http://user:pass@{proxy_addr}"),
        no: String::new(),
    };
    let url = format!("https://{server_addr}/flags.json");
    let mut source = proxied(&url, RemoteOptions::default(), proxy);
    if let SourceKind::Http(config) = &mut source.kind {
        config.tls_roots = Some(vec![ca]);
    }
    let daemon = start(vec![source]).await;
    assert_eq!(
        default_value(&daemon.store().snapshot(), "tunnelled"),
        value("yes")
    );
    let _ = daemon.shutdown().await;
    let heads = log.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let head = heads.first().cloned().unwrap_or_default();
    assert!(
        head.starts_with(&format!("connect {server_addr} http/1.1\r\n")),
        "{heads:?}"
    );
    assert!(
        head.contains("\r\nproxy-authorization: basic dxnlcjpwyxnz\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn the_oauth_token_request_follows_a_307_with_its_body() {
    let (addr, shared) = serve(Served::default()).await;
    let (redirector, hops) = serve_redirects(vec![(
        "/token",
        StatusCode::TEMPORARY_REDIRECT,
        format!("http://{addr}/token"),
    )])
    .await;
    let options = RemoteOptions {
        oauth: Some(serde_json::json!({
            "clientID": "my-id", "clientSecret": "my secret",
            "tokenUrl": format!("http://{redirector}/token")
        })),
        ..RemoteOptions::default()
    };
    let daemon = start(vec![http_source(
        &format!("http://{addr}/protected"),
        options,
    )])
    .await;
    assert_eq!(
        default_value(&daemon.store().snapshot(), "guarded"),
        value("secret-ok")
    );
    let _ = daemon.shutdown().await;
    assert_eq!(hops_of(&hops).len(), 1);
    // The form arrived whole at the final token URL (a 307 keeps the method and the body).
    let forms = lock(&shared).token_forms.clone();
    assert_eq!(forms.len(), 1, "{forms:?}");
}

/// `/readyz`'s line for the source at `url`, once `condition` holds on it; fails after [`CHANGE_TIMEOUT`].
async fn readyz_line(
    management: SocketAddr,
    url: &str,
    what: &str,
    condition: impl Fn(&str) -> bool,
) -> String {
    let prefix = format!("source {url}: ");
    let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
    loop {
        let (_, _, body) = http_get(management, "/readyz").await;
        if let Some(line) = body.lines().find(|l| l.starts_with(&prefix))
            && condition(line)
        {
            return line.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn failures(line: &str) -> u64 {
    line.split("consecutive_failures=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no failure count in {line:?}"))
}

#[tokio::test]
async fn a_repeated_rejected_payload_keeps_counting_as_a_failure() {
    let (addr, shared) = serve(Served {
        body: "{\"flags\": {\"broken\": ".into(),
        etag: None,
        status: 200,
        content_type: "application/json".into(),
        ..Served::default()
    })
    .await;
    let url = format!("http://{addr}/flags.json");
    let lazy = fast(RemoteOptions {
        lazy: Some(true),
        ..RemoteOptions::default()
    });
    let daemon = flagpole::run(local_config(vec![http_source(&url, lazy)]))
        .await
        .expect("a lazy source starts");
    // 198aa10 counted the second identical body as a success (consecutive_failures=0).
    let line = readyz_line(daemon.addrs().management, &url, "three failures", |l| {
        failures(l) >= 3
    })
    .await;
    assert!(line.contains("last_success=never"), "{line}");
    // An ETag'd 304 for the rejected body is no success either.
    lock(&shared).etag = Some("\"same\"".into());
    let seen = lock(&shared).seen.len();
    wait_served(&shared, "two conditional polls", |s| {
        s.seen.len() >= seen + 3
    })
    .await;
    let line = readyz_line(daemon.addrs().management, &url, "still failing", |_| true).await;
    assert!(line.contains("last_success=never"), "{line}");
    // A good body makes it healthy.
    {
        let mut served = lock(&shared);
        served.body = one_flag("fixed", "yes");
        served.etag = None;
    }
    readyz_line(daemon.addrs().management, &url, "recovery", |l| {
        failures(l) == 0
    })
    .await;
    daemon.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_hung_upstream_fails_its_polls_and_is_reported_overdue() {
    let (addr, shared) = serve(Served {
        body: one_flag("remote", "one"),
        status: 200,
        content_type: "application/json".into(),
        ..Served::default()
    })
    .await;
    let url = format!("http://{addr}/flags.json");
    let options = fast(RemoteOptions {
        timeout_s: Some(1),
        ..RemoteOptions::default()
    });
    let daemon = flagpole::run(local_config(vec![http_source(&url, options)]))
        .await
        .expect("start");
    // The server now accepts and never answers.
    lock(&shared).delay = Duration::from_secs(3600);
    // Overdue after 3 intervals (1 s) plus the deadline (1 s).
    let line = readyz_line(daemon.addrs().management, &url, "overdue", |l| {
        l.ends_with(" overdue")
    })
    .await;
    assert!(failures(&line) >= 1, "{line}");
    let (_, _, metrics) = http_get(daemon.addrs().management, "/metrics").await;
    assert!(
        metrics.contains(&format!("flagpole_source_overdue{{source=\"{url}\"}} 1")),
        "{metrics}"
    );
    // The flags are kept meanwhile, and an answer again clears the state.
    assert_eq!(
        default_value(&daemon.store().snapshot(), "remote"),
        value("one")
    );
    lock(&shared).delay = Duration::ZERO;
    readyz_line(daemon.addrs().management, &url, "current again", |l| {
        !l.ends_with(" overdue") && failures(l) == 0
    })
    .await;
    daemon.shutdown().await.expect("shutdown");
}

#[test]
fn a_poll_without_timeout_s_still_has_a_deadline() {
    let config =
        HttpConfig::from_options("http://h/f.json", RemoteOptions::default()).expect("config");
    assert_eq!(config.timeout, None);
    assert_eq!(
        config.poll_timeout(),
        flagpole::sources::http::DEFAULT_POLL_TIMEOUT
    );
    assert_eq!(
        config.overdue_after(),
        Duration::from_secs(15) + flagpole::sources::http::DEFAULT_POLL_TIMEOUT
    );
}

#[tokio::test]
async fn credentials_in_a_source_url_are_never_shown() {
    let (addr, _shared) = serve(Served {
        body: one_flag("remote", "one"),
        status: 200,
        content_type: "application/json".into(),
        ..Served::default()
    })
    .await;
    let secret_url = format!("http://user:s3cret@{addr}/flags.json");
    let source = flagpole::config::parse_uri(&secret_url).expect("parse the uri");
    assert_eq!(&*source.identity, format!("http://***@{addr}/flags.json"));
    let daemon = flagpole::run(local_config(vec![source]))
        .await
        .expect("start");
    let (_, _, readyz) = http_get(daemon.addrs().management, "/readyz").await;
    let (_, _, metrics) = http_get(daemon.addrs().management, "/metrics").await;
    let snapshot = daemon.store().snapshot();
    let record = snapshot
        .record("remote", &flagpole_engine::Selector::All)
        .expect("the remote flag");
    for shown in [readyz.as_str(), metrics.as_str(), &*record.source] {
        assert!(!shown.contains("s3cret"), "{shown}");
    }
    assert!(readyz.contains("http://***@"), "{readyz}");
    // A selector naming the URL as configured still selects the source.
    let selector: flagpole_engine::Selector =
        format!("source={secret_url}").parse().expect("selector");
    assert_eq!(
        selector,
        flagpole_engine::Selector::Source(format!("http://***@{addr}/flags.json"))
    );
    daemon.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_body_over_the_document_limit_is_a_failed_poll() {
    let (addr, _shared) = serve(Served {
        body: " ".repeat(flagpole::sources::http::MAX_BODY_BYTES + 1),
        status: 200,
        content_type: "application/json".into(),
        ..Served::default()
    })
    .await;
    let url = format!("http://{addr}/flags.json");
    let lazy = fast(RemoteOptions {
        lazy: Some(true),
        ..RemoteOptions::default()
    });
    let daemon = flagpole::run(local_config(vec![http_source(&url, lazy)]))
        .await
        .expect("a lazy source starts");
    let line = readyz_line(daemon.addrs().management, &url, "a failed poll", |l| {
        failures(l) >= 1
    })
    .await;
    assert!(line.contains("last_success=never"), "{line}");
    assert!(!daemon.readiness().is_ready());
    daemon.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_fifo_as_an_oauth_secret_file_fails_the_poll_instead_of_hanging_it() {
    let (addr, _shared) = serve(Served {
        body: one_flag("remote", "one"),
        status: 200,
        content_type: "application/json".into(),
        ..Served::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("client-id"), "my-id").expect("write");
    let status = std::process::Command::new("mkfifo")
        .arg(dir.path().join("client-secret"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let url = format!("http://{addr}/protected");
    let options = fast(RemoteOptions {
        lazy: Some(true),
        oauth: Some(serde_json::json!({
            "folder": dir.path(), "tokenUrl": format!("http://{addr}/token")
        })),
        ..RemoteOptions::default()
    });
    let daemon = flagpole::run(local_config(vec![http_source(&url, options)]))
        .await
        .expect("a lazy source starts");
    // Before, opening the FIFO waited for a writer for ever: no poll, no failure.
    let line = readyz_line(daemon.addrs().management, &url, "failed polls", |l| {
        failures(l) >= 2
    })
    .await;
    assert!(line.contains("last_success=never"), "{line}");
    tokio::time::timeout(Duration::from_secs(15), daemon.shutdown())
        .await
        .expect("shutdown")
        .expect("clean shutdown");
}

/// The `/readyz` line of `url` right now.
async fn readyz_now(management: SocketAddr, url: &str) -> String {
    let (_, _, body) = http_get(management, "/readyz").await;
    body.lines()
        .find(|l| l.starts_with(&format!("source {url}: ")))
        .unwrap_or_else(|| panic!("no line for {url}: {body}"))
        .to_owned()
}

#[tokio::test]
async fn a_restart_while_the_source_is_down_serves_its_last_known_good_flags() {
    let state = tempfile::tempdir().expect("tempdir");
    let (addr, shared) = serve(Served {
        body: one_flag("kept", "saved"),
        status: 200,
        content_type: "application/json".into(),
        ..Served::default()
    })
    .await;
    let url = format!("http://{addr}/flags.json");
    let config = |state_dir: &std::path::Path| {
        let mut config = local_config(vec![http_source(&url, fast(RemoteOptions::default()))]);
        config.state_dir = Some(state_dir.to_owned());
        config
    };
    let stale_metric = format!("flagpole_source_stale{{source=\"{url}\"}} 1");

    // A first run keeps the good payload in the state directory.
    let daemon = start_config(config(state.path())).await;
    let saved = std::fs::read_dir(state.path())
        .expect("list")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("last-good-"))
        .expect("a last-good file");
    let text = std::fs::read_to_string(saved.path()).expect("read");
    assert!(
        text.contains("saved") && text.contains(&addr.to_string()),
        "{text}"
    );
    let _ = daemon.shutdown().await;

    // Restarted while the source is down: it starts (flagd would not), ready, with the saved flags,
    // marked stale.
    lock(&shared).status = 500;
    let daemon = start_config(config(state.path())).await;
    assert!(daemon.readiness().is_ready());
    assert_eq!(
        default_value(&daemon.store().snapshot(), "kept"),
        value("saved")
    );
    let line = readyz_now(daemon.addrs().management, &url).await;
    assert!(line.contains(" stale_since="), "{line}");
    assert!(failures(&line) >= 1, "{line}");
    assert!(daemon.metrics().encode().contains(&stale_metric));
    // The dashboard's source list says so too.
    let (_, _, body) = http_get(daemon.addrs().management, "/api/v1/sources").await;
    let listed: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let source = &listed["sources"][0];
    assert_eq!(source["remote"], true, "{body}");
    assert!(source["staleSince"].is_u64(), "{body}");

    // The source comes back: its fresh flags replace the saved ones, and nothing is stale any more.
    {
        let mut served = lock(&shared);
        served.status = 200;
        served.body = one_flag("kept", "fresh");
    }
    wait_for(&daemon, "the fresh payload", |s| {
        default_value(s, "kept") == value("fresh")
    })
    .await;
    let line = readyz_line(daemon.addrs().management, &url, "stale to clear", |l| {
        !l.contains("stale_since")
    })
    .await;
    assert_eq!(failures(&line), 0, "{line}");
    assert!(!daemon.metrics().encode().contains(&stale_metric));
    let _ = daemon.shutdown().await;

    // A source that answers at start is never served from the state directory: the saved payload
    // ("fresh") is older than what the source now says.
    lock(&shared).body = one_flag("kept", "newest");
    let daemon = start_config(config(state.path())).await;
    assert_eq!(
        default_value(&daemon.store().snapshot(), "kept"),
        value("newest")
    );
    assert!(
        !readyz_now(daemon.addrs().management, &url)
            .await
            .contains("stale_since")
    );
    let _ = daemon.shutdown().await;

    // A corrupt saved payload is set aside, and the outage fails the start as without one.
    let saved_name = saved.file_name();
    std::fs::write(state.path().join(&saved_name), "{not json").expect("corrupt it");
    lock(&shared).status = 500;
    let error =
        match tokio::time::timeout(CHANGE_TIMEOUT, flagpole::run(config(state.path()))).await {
            Ok(Ok(_)) => panic!("a corrupt last-good file must not be served"),
            Ok(Err(error)) => error.to_string(),
            Err(_) => panic!("start timed out"),
        };
    assert!(error.contains("status 500"), "{error}");
    assert!(!state.path().join(&saved_name).exists(), "set aside");
    // A readable file whose payload no longer loads is not served either.
    std::fs::write(
        state.path().join(&saved_name),
        r#"{"source": "x", "savedAt": 1, "format": "json", "payload": "{\"flags\": 1}"}"#,
    )
    .expect("write");
    match tokio::time::timeout(CHANGE_TIMEOUT, flagpole::run(config(state.path()))).await {
        Ok(Ok(_)) => panic!("a payload that does not load must not be served"),
        Ok(Err(error)) => assert!(error.to_string().contains("status 500"), "{error}"),
        Err(_) => panic!("start timed out"),
    }
    assert!(
        std::fs::read_dir(state.path())
            .expect("list")
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
    );
}

async fn start_config(config: flagpole::config::Config) -> flagpole::Daemon {
    match tokio::time::timeout(CHANGE_TIMEOUT, flagpole::run(config)).await {
        Ok(Ok(daemon)) => daemon,
        Ok(Err(error)) => panic!("daemon did not start: {error}"),
        Err(_) => panic!("daemon start timed out"),
    }
}
