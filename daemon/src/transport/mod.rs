//! How the evaluation and sync servers meet the network: TCP or a unix socket, optionally TLS, then
//! HTTP/1.1 and HTTP/2 (cleartext h2 without TLS, ALPN with it) on one connection handler with flagd's
//! header limits and timeouts.
//!
//! What it owns: the accept loop ([`serve`]), unix sockets ([`UnixSocket`]: stale files removed at bind,
//! the file removed at shutdown), TLS with certificate reload ([`ReloadingTls`]), the HTTP connection
//! settings ([`HttpLimits`]), the defences against clients that hold connections without using them (a
//! connection limit per listener, a first-request deadline, HTTP/1.1 header and HTTP/2 keep-alive
//! timeouts, a request-body idle timeout: see `docs/limits.md`), and graceful shutdown of open
//! connections.
//!
//! What it does not do: route requests or speak any RPC protocol (the `axum::Router` it is given does),
//! bind TCP ports (the runtime does, with its IPv6 fallback), or decide which server gets TLS (the runtime
//! follows flagd: evaluation and sync only).

mod batching;
mod listener;
pub(crate) mod tls;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use listener::UnixSocket;
pub use tls::{ReloadingTls, TlsError};

/// How long a client gets to complete the TLS handshake before its connection is closed.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the accept loop pauses after an accept error that is not about one connection (typically:
/// out of file descriptors), so that it does not spin.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// How long an HTTP/1.1 client on the evaluation port gets to send its request headers. flagd's
/// `ReadTimeout` (5 s, which in Go also bounds an idle keep-alive connection): hyper's header timer also runs
/// while a keep-alive connection idles, so flagd's 1 s `ReadHeaderTimeout` would close idle connections
/// after one second.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a new connection gets to send the head of its first request (HTTP/1.1 headers, or the HTTP/2
/// preface and a stream's HEADERS), TLS handshake excluded; a connection that has sent none by then is
/// closed. It catches idle TCP connections, clients silent after the TLS handshake and HTTP/2 clients that
/// never open a stream. flagd has none (Go's `ReadHeaderTimeout` covers HTTP/1.1 only).
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the server PINGs an HTTP/2 connection to check that the peer is alive, and how long the
/// PING's acknowledgement may take before the connection is closed. A live client that idles (an SDK's
/// channel between evaluations) acknowledges and stays; a vanished peer goes.
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// See [`HTTP2_KEEPALIVE_INTERVAL`].
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest pause between two parts of a request body while a handler waits for it (a gRPC stream
/// that sends HEADERS and then nothing); the request then fails. Longer than Connect's whole-body
/// timeout (5 s), so that a slow Connect body always gets Connect's own answer (408).
pub const REQUEST_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The default of `--max-connections`: open connections per listener. Further connections are accepted
/// and closed at once, so one flooded port cannot take the file descriptors the others need.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// How often at most the "connection limit reached" warning is logged per listener.
const LIMIT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The smallest HTTP/1.1 read buffer hyper accepts; a smaller `--max-request-header` is raised to it.
pub const MIN_HEADER_BUFFER: usize = 8192;

/// Fails a request body that pauses longer than [`REQUEST_BODY_IDLE_TIMEOUT`] between two parts, so a
/// handler waiting for it is never held for ever.
pub fn body_idle_timeout(request: axum::extract::Request) -> axum::extract::Request {
    request.map(|body| axum::body::Body::new(IdleTimeoutBody::new(body, REQUEST_BODY_IDLE_TIMEOUT)))
}

/// A request body that fails when its next part does not come within `timeout`. The timer starts only
/// when the body is actually waiting (a body already received, as almost every unary request's is,
/// costs no timer at all: tower-http's `TimeoutBody` arms one per poll, which cost the evaluation port a
/// tenth of its throughput).
#[derive(Debug)]
pub struct IdleTimeoutBody {
    inner: axum::body::Body,
    timeout: Duration,
    waiting: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

/// The error of a request body that paused too long.
#[derive(Debug, thiserror::Error)]
#[error("the request body paused for longer than {0:?}")]
pub struct BodyIdleTimeout(Duration);

impl IdleTimeoutBody {
    /// Wraps `inner`.
    pub fn new(inner: axum::body::Body, timeout: Duration) -> Self {
        IdleTimeoutBody {
            inner,
            timeout,
            waiting: None,
        }
    }
}

impl hyper::body::Body for IdleTimeoutBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = None;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let waiting = this
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match waiting.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err(axum::Error::new(BodyIdleTimeout(timeout)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Where a server listens.
#[derive(Debug)]
pub enum Listener {
    /// A TCP port.
    Tcp(TcpListener),
    /// A unix socket.
    Unix(UnixSocket),
}

/// HTTP settings of one server.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// The largest request header block, in bytes (HTTP/1.1: the read buffer, beyond which hyper answers
    /// 431; HTTP/2: the header list size advertised to the client). `None`: hyper's defaults.
    pub max_header_bytes: Option<usize>,
    /// How long an HTTP/1.1 client gets to send its request headers (flagd: `ReadHeaderTimeout`).
    pub header_read_timeout: Option<Duration>,
    /// How long a new connection gets to start its first request ([`FIRST_REQUEST_TIMEOUT`]).
    pub first_request_timeout: Duration,
    /// Open connections allowed at once ([`DEFAULT_MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// A pool of connections this listener shares with others (each of its connections takes one slot of
    /// it as well as one of its own `max_connections`); `None`: its own limit only.
    pub shared: Option<Arc<Semaphore>>,
}

impl HttpLimits {
    /// hyper's default header size, [`HEADER_READ_TIMEOUT`], [`FIRST_REQUEST_TIMEOUT`] and
    /// [`DEFAULT_MAX_CONNECTIONS`].
    pub const DEFAULT: HttpLimits = HttpLimits {
        max_header_bytes: None,
        header_read_timeout: Some(HEADER_READ_TIMEOUT),
        first_request_timeout: FIRST_REQUEST_TIMEOUT,
        max_connections: DEFAULT_MAX_CONNECTIONS,
        shared: None,
    };
}

/// Serves `router` on `listener` (with TLS when `tls` is set) until `stop` is cancelled; then stops
/// accepting, asks every open connection to finish (HTTP/2 GOAWAY, HTTP/1.1 close after the current
/// response) and waits for them. Dropping the returned future closes every connection at once.
pub async fn serve(
    listener: Listener,
    tls: Option<ReloadingTls>,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) -> io::Result<()> {
    let builder = builder(&limits);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut limit_logged: Option<tokio::time::Instant> = None;
    // The most connections open at once since the last release of memory.
    let mut peak = 0;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {
                if peak >= crate::memory::LARGE_FLOOD_CONNECTIONS && connections.len() <= peak / 4 {
                    crate::memory::request_release();
                    peak = connections.len();
                }
                continue;
            }
            accepted = accept(&listener) => accepted,
        };
        let io = match accepted {
            Ok(io) => io,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let slot = slots
            .clone()
            .try_acquire_owned()
            .ok()
            .and_then(|own| match &limits.shared {
                None => Some((own, None)),
                Some(pool) => pool
                    .clone()
                    .try_acquire_owned()
                    .ok()
                    .map(|shared| (own, Some(shared))),
            });
        let Some(slot) = slot else {
            // Closing at once (rather than leaving it in the backlog) tells the client straight away.
            drop(io);
            if limit_logged.is_none_or(|at| at.elapsed() >= LIMIT_LOG_INTERVAL) {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection limit reached; closing new connections until some end"
                );
                limit_logged = Some(tokio::time::Instant::now());
            }
            continue;
        };
        let connection = Connection {
            builder: builder.clone(),
            service: TowerToHyperService::new(router.clone()),
            watcher: graceful.watcher(),
            first_request_timeout: limits.first_request_timeout,
            _slot: slot,
        };
        let acceptor = tls.as_ref().map(ReloadingTls::acceptor);
        peak = peak.max(connections.len() + 1);
        connections.spawn(async move {
            match (io, acceptor) {
                (Accepted::Tcp(stream), None) => connection.serve(stream).await,
                (Accepted::Unix(stream), None) => connection.serve(stream).await,
                (Accepted::Tcp(stream), Some(acceptor)) => {
                    if let Some(stream) = handshake(acceptor.accept(stream)).await {
                        connection.serve(stream).await;
                    }
                }
                (Accepted::Unix(stream), Some(acceptor)) => {
                    if let Some(stream) = handshake(acceptor.accept(stream)).await {
                        connection.serve(stream).await;
                    }
                }
            }
        });
    }
    // Stop accepting (and remove a unix socket file) before draining.
    drop(listener);
    let drain = graceful.shutdown();
    tokio::pin!(drain);
    loop {
        tokio::select! {
            () = &mut drain => break,
            Some(_) = connections.join_next() => {}
        }
    }
    connections.shutdown().await;
    Ok(())
}

/// The HTTP/1.1 + HTTP/2 connection builder.
fn builder(limits: &HttpLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    {
        let mut http1 = builder.http1();
        http1.timer(TokioTimer::new());
        http1.header_read_timeout(limits.header_read_timeout);
        if let Some(max) = limits.max_header_bytes {
            http1.max_buf_size(max.max(MIN_HEADER_BUFFER));
        }
    }
    {
        let mut http2 = builder.http2();
        http2.timer(TokioTimer::new());
        http2.keep_alive_interval(Some(HTTP2_KEEPALIVE_INTERVAL));
        http2.keep_alive_timeout(HTTP2_KEEPALIVE_TIMEOUT);
        if let Some(max) = limits.max_header_bytes {
            http2.max_header_list_size(u32::try_from(max).unwrap_or(u32::MAX));
        }
    }
    builder
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> io::Result<Accepted> {
    match listener {
        Listener::Tcp(tcp) => {
            let (stream, _) = tcp.accept().await?;
            // gRPC messages are small and latency matters more than packet count.
            let _ = stream.set_nodelay(true);
            Ok(Accepted::Tcp(stream))
        }
        Listener::Unix(unix) => {
            let (stream, _) = unix.listener().accept().await?;
            Ok(Accepted::Unix(stream))
        }
    }
}

/// Accept errors that concern one connection only (the next accept may well succeed).
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn handshake<S>(accept: tokio_rustls::Accept<S>) -> Option<tokio_rustls::server::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

/// One accepted connection, before its protocol is known.
struct Connection {
    builder: Builder<TokioExecutor>,
    service: TowerToHyperService<Router>,
    watcher: hyper_util::server::graceful::Watcher,
    first_request_timeout: Duration,
    /// Its place under the listener's own limit and, when it shares a pool, in the pool.
    _slot: (
        tokio::sync::OwnedSemaphorePermit,
        Option<tokio::sync::OwnedSemaphorePermit>,
    ),
}

impl Connection {
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let started = Arc::new(AtomicBool::new(false));
        let service = Marking {
            inner: self.service,
            started: started.clone(),
        };
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        let watched = self.watcher.watch(connection.into_owned());
        tokio::pin!(watched);
        let mut served = batching::YieldOnWake::new(watched);
        let result = tokio::select! {
            result = &mut served => result,
            () = tokio::time::sleep(self.first_request_timeout) => {
                if !started.load(Ordering::Relaxed) {
                    // Dropping the connection closes the socket.
                    tracing::debug!("closing a connection that sent no request within {:?}", self.first_request_timeout);
                    return;
                }
                served.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "connection ended with an error");
        }
    }
}

/// A service that notes that a request has started on its connection.
#[derive(Clone)]
struct Marking<S> {
    inner: S,
    started: Arc<AtomicBool>,
}

impl<S, R> hyper::service::Service<R> for Marking<S>
where
    S: hyper::service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, request: R) -> Self::Future {
        self.started.store(true, Ordering::Relaxed);
        self.inner.call(request)
    }
}
