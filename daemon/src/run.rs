//! The daemon runtime: bind every listener, load every source, serve, and shut down in order.
//!
//! Start order, so that a failure never leaves a half-started process: (1) bind the evaluation,
//! management, sync and OFREP listeners (a port in use is a [`StartError::Bind`]); (2) start every source, which
//! reads its file once (a missing file is a [`StartError::Source`]); (3) only then serve. The sync server
//! starts serving once every source has loaded once or [`SYNC_STARTUP_GATE`] has passed (flagd's rule);
//! its listener is bound from the start, so early clients wait in the backlog.
//!
//! Shutdown ([`Daemon::shutdown`], or SIGTERM/SIGINT in the binary): `/readyz` turns 412, the shared
//! [`CancellationToken`] is cancelled (EventStreams send `provider_shutdown`, streams end), the evaluation
//! and sync servers stop accepting and drain for at most [`DRAIN_TIMEOUT`], then the management server and
//! the sources stop.
//!
//! What it does not do: parse configuration (`crate::config`), handle requests (`crate::eval`, `crate::protocols`), or
//! install signal handlers (the binary does, so tests can run several daemons in one process).

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::control::OverrideControl;
use crate::eval::{EvalConfig, Evaluator};
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::protocols::admin::api::AdminApi;
use crate::protocols::admin::auth::AdminTokens;
use crate::protocols::grpc::{ServiceConfig, Services};
use crate::readiness::Readiness;
use crate::routers::{RouterOptions, Routers};
use crate::sources::{self, SourceError};
use crate::state_dir::StateDir;
use crate::store::Store;
use crate::transport::{HttpLimits, Listener, ReloadingTls, UnixSocket};
use crate::usage::Usage;

/// How long the sync server waits for every source's first load before it serves anyway (flagd: 5 s).
pub const SYNC_STARTUP_GATE: Duration = Duration::from_secs(5);

/// How long in-flight requests and streams get to finish after shutdown begins (flagd: 5 s).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound (typically: the port is in use).
    #[error("cannot listen on {addr} ({what} port): {source}")]
    Bind {
        /// Which server.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A source could not be started (typically: its file is missing).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A unix socket (`--socket-path`, `--sync-socket-path`) could not be bound.
    #[error("cannot listen on unix socket {path} ({what}): {source}")]
    Socket {
        /// Which server.
        what: &'static str,
        /// The socket file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::transport::TlsError),
    /// `--state-dir` cannot be created or opened.
    #[error("cannot use the state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A server task failed while running.
#[derive(Debug, thiserror::Error)]
#[error("{what} server failed: {source}")]
pub struct RunError {
    /// Which server.
    what: &'static str,
    /// The error.
    #[source]
    source: std::io::Error,
}

/// The addresses the daemon actually listens on (useful with port 0). A server on a unix socket
/// (`--socket-path`, `--sync-socket-path`) has no TCP address: its field is the unspecified address with
/// port 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundAddrs {
    /// Evaluation (gRPC v1, v2, schema.v1).
    pub evaluation: SocketAddr,
    /// Management (health, readiness, metrics).
    pub management: SocketAddr,
    /// Sync.
    pub sync: SocketAddr,
    /// OFREP.
    pub ofrep: SocketAddr,
}

/// A running daemon. Dropping it without [`Daemon::shutdown`] or [`Daemon::wait`] stops it too (in the
/// background), so a failing test never leaves servers running.
#[derive(Debug)]
pub struct Daemon {
    addrs: BoundAddrs,
    shutdown: CancellationToken,
    store: Arc<Store>,
    metrics: Metrics,
    readiness: Readiness,
    /// Taken by [`Daemon::wait`].
    supervisor: Option<JoinHandle<Result<(), RunError>>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.supervisor.is_some() {
            self.shutdown.cancel();
        }
    }
}

impl Daemon {
    /// Where it listens.
    pub fn addrs(&self) -> BoundAddrs {
        self.addrs
    }

    /// The token that stops the daemon when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The store (tests inspect it).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The readiness state.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Waits until the daemon has stopped (after its token is cancelled, or a server failed).
    pub async fn wait(mut self) -> Result<(), RunError> {
        let Some(supervisor) = self.supervisor.take() else {
            return Ok(());
        };
        match supervisor.await {
            Ok(result) => result,
            Err(join_error) => Err(RunError {
                what: "supervisor",
                source: std::io::Error::other(join_error.to_string()),
            }),
        }
    }

    /// Stops the daemon and waits until it has stopped.
    pub async fn shutdown(self) -> Result<(), RunError> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Starts the daemon: returns once every listener is bound and every source has been read once, with the
/// servers running in the background.
pub async fn run(config: Config) -> Result<Daemon, StartError> {
    let evaluation = listen(
        "evaluation",
        config.listen.evaluation,
        config.serving.socket_path.as_deref(),
    )
    .await?;
    let management = bind("management", config.listen.management).await?;
    let sync = listen(
        "sync",
        config.listen.sync,
        config.serving.sync_socket_path.as_deref(),
    )
    .await?;
    // flagd serves OFREP over plain HTTP/1.1 on TCP only.
    let ofrep = bind("ofrep", config.listen.ofrep).await?;
    let addrs = BoundAddrs {
        evaluation: listener_addr("evaluation", &evaluation, config.listen.evaluation)?,
        management: local_addr("management", &management, config.listen.management)?,
        sync: listener_addr("sync", &sync, config.listen.sync)?,
        ofrep: local_addr("ofrep", &ofrep, config.listen.ofrep)?,
    };
    // flagd: TLS on the evaluation and sync servers only.
    let tls = match &config.serving.tls {
        Some((cert, key)) => Some(ReloadingTls::load(cert, key)?),
        None => None,
    };

    let metrics = Metrics::new();
    // Started first, so that the sources' first loads are traced too.
    let telemetry_stop = CancellationToken::new();
    let (telemetry_settings, telemetry_warnings) =
        crate::telemetry::settings::resolve(&config.telemetry, &|name| std::env::var(name).ok());
    for warning in telemetry_warnings {
        tracing::warn!("OpenTelemetry: {warning}");
    }
    let telemetry = crate::telemetry::start(telemetry_settings, &metrics, &telemetry_stop);
    // A start that fails below stops the export tasks again.
    let telemetry_guard = telemetry_stop.clone().drop_guard();
    let store = Arc::new(Store::new(
        config.sources.iter().map(|s| s.identity.clone()),
    ));
    // Overrides go back before any source loads, so the first snapshot served already has them.
    let state_dir = match &config.state_dir {
        None => None,
        Some(path) => Some(StateDir::open(path).map_err(|source| StartError::StateDir {
            path: path.clone(),
            source,
        })?),
    };
    let journal = Arc::new(Journal::new(metrics.clone(), state_dir.as_ref()));
    store.set_journal(journal.clone());
    let usage = Arc::new(Usage::default());
    if let Some(state) = &state_dir {
        usage.restore(state);
    }
    store.set_usage(usage.clone());
    let overrides = OverrideControl::new(store.clone(), state_dir.clone());
    overrides.restore();
    let (readiness, latches) = Readiness::new(config.sources.len());
    let shutdown = CancellationToken::new();
    // The sources get their own token so that they keep updating the store while the servers drain.
    let sources_stop = CancellationToken::new();
    let mut source_tasks = sources::start(
        &config.sources,
        config.load,
        &store,
        &metrics,
        latches,
        state_dir.as_ref(),
        &sources_stop,
    )
    .await?;
    // Stopped with the sources, so that the usage is written after the last evaluation.
    source_tasks.push(tokio::spawn(crate::lifecycle::run(
        store.clone(),
        usage,
        metrics.clone(),
        state_dir,
        config.stale_after,
        sources_stop.clone(),
    )));

    let evaluator = Evaluator::new(store.clone(), eval_config(&config), metrics.clone());
    let services = Services::new(evaluator.clone(), service_config(&config), shutdown.clone());
    if config.serving.cors_origins.is_empty() {
        tracing::info!(
            "CORS: every origin is allowed on the evaluation port (no --cors-origin, as flagd)"
        );
    }
    if config.admin_token_file.is_none() {
        tracing::info!("the admin API is read-only (no --admin-token-file)");
    }
    let admin = AdminApi {
        control: overrides.clone(),
        tokens: Arc::new(AdminTokens::new(config.admin_token_file.clone())),
        journal,
        evaluator: evaluator.clone(),
        stale_after: config.stale_after,
        shutdown: shutdown.clone(),
        file_sources: config
            .sources
            .iter()
            .filter(|s| matches!(s.kind, crate::config::SourceKind::File { .. }))
            .map(|s| s.identity.clone())
            .collect(),
    };
    tokio::spawn(overrides.run_expiry(sources_stop.clone()));
    let routers = Routers::new(
        &evaluator,
        &services,
        &readiness,
        &admin,
        &RouterOptions {
            cors_origins: config.serving.cors_origins.clone(),
            max_request_body: max_request_body(&config),
            ofrep_sse: config.ofrep_sse.as_ref().map(|sse| {
                crate::protocols::ofrep::sse::SseOptions {
                    inactivity_delay: sse.inactivity_delay,
                    public_url: sse.public_url.clone(),
                    shutdown: shutdown.clone(),
                    diffs: Arc::default(),
                }
            }),
        },
    );

    // The listeners share the file descriptors so that a flood of one port leaves the others (the
    // management port above all) their own.
    let budget = connection_budget(config.max_connections);
    let header_limit = config
        .max_request_header
        .map(|bytes| usize::try_from(bytes).unwrap_or(usize::MAX));
    let limits = HttpLimits {
        max_header_bytes: header_limit,
        max_connections: budget.per_listener,
        shared: budget.pool.clone(),
        ..HttpLimits::DEFAULT
    };

    // The management server outlives the others so that /readyz answers 412 while they drain.
    let management_stop = CancellationToken::new();
    let mut management_task = JoinSet::new();
    management_task.spawn(serve_transport(
        "management",
        Listener::Tcp(management),
        None,
        routers.management,
        HttpLimits {
            max_connections: budget.management,
            ..HttpLimits::DEFAULT
        },
        management_stop.clone(),
    ));
    let mut servers = JoinSet::new();
    // OFREP: TCP, plain as in flagd unless `--ofrep-tls`; the same header limit, flagd's read timeouts (the
    // body timeout is the router's).
    servers.spawn(serve_transport(
        "ofrep",
        Listener::Tcp(ofrep),
        tls.clone().filter(|_| config.ofrep_tls),
        routers.ofrep,
        limits.clone(),
        shutdown.clone(),
    ));
    servers.spawn(serve_transport(
        "evaluation",
        evaluation,
        tls.clone(),
        routers.evaluation,
        limits,
        shutdown.clone(),
    ));
    let sync_router = routers.sync;
    servers.spawn({
        let readiness = readiness.clone();
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                () = readiness.wait_all_loaded() => {}
                () = tokio::time::sleep(SYNC_STARTUP_GATE) => {
                    tracing::warn!("not every source has loaded after {SYNC_STARTUP_GATE:?}; serving sync anyway");
                }
                () = shutdown.cancelled() => return Ok(()),
            }
            let limits = HttpLimits {
                max_connections: budget.per_listener,
                shared: budget.pool,
                ..HttpLimits::DEFAULT
            };
            serve_transport("sync", sync, tls, sync_router, limits, shutdown).await
        }
    });
    tracing::info!(
        evaluation = %addrs.evaluation,
        management = %addrs.management,
        sync = %addrs.sync,
        ofrep = %addrs.ofrep,
        evaluation_socket = ?config.serving.socket_path,
        sync_socket = ?config.serving.sync_socket_path,
        tls = config.serving.tls.is_some(),
        sources = config.sources.len(),
        "flagpole started"
    );

    telemetry_guard.disarm();
    let supervisor = tokio::spawn(supervise(Supervised {
        shutdown: shutdown.clone(),
        readiness: readiness.clone(),
        servers,
        management: management_task,
        management_stop,
        sources: source_tasks,
        sources_stop,
        telemetry,
        telemetry_stop,
    }));
    Ok(Daemon {
        addrs,
        shutdown,
        store,
        metrics,
        readiness,
        supervisor: Some(supervisor),
    })
}

/// The evaluation core's configuration from the daemon configuration.
fn eval_config(config: &Config) -> EvalConfig {
    EvalConfig {
        context_values: config.context_values.clone(),
        header_to_context: config.context_from_headers.clone(),
        fractional: config.fractional,
    }
}

/// The gRPC services' configuration from the daemon configuration.
fn service_config(config: &Config) -> ServiceConfig {
    ServiceConfig {
        stream_deadline: config.stream_deadline,
        disable_sync_metadata: config.disable_sync_metadata,
        max_request_body: max_request_body(config),
        ..ServiceConfig::default()
    }
}

/// `--max-request-body` in bytes (`usize::MAX`: no limit).
fn max_request_body(config: &Config) -> usize {
    config.max_request_body.map_or(usize::MAX, |bytes| {
        usize::try_from(bytes).unwrap_or(usize::MAX)
    })
}

/// Binds `addr`. The all-interfaces IPv6 address (dual-stack on Linux, so IPv4 clients connect too, and
/// `localhost` works whichever family it resolves to) falls back to `0.0.0.0` on hosts without IPv6.
async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(listener),
        Err(error)
            if addr.ip() == crate::config::ALL_INTERFACES
                && error.kind() != ErrorKind::AddrInUse =>
        {
            let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port());
            tracing::debug!(%error, "IPv6 unavailable; listening on IPv4 only");
            TcpListener::bind(v4)
                .await
                .map_err(|source| StartError::Bind {
                    what,
                    addr: v4,
                    source,
                })
        }
        Err(source) => Err(StartError::Bind { what, addr, source }),
    }
}

/// Binds the unix socket `socket` when set, else the TCP `addr`.
async fn listen(
    what: &'static str,
    addr: SocketAddr,
    socket: Option<&std::path::Path>,
) -> Result<Listener, StartError> {
    match socket {
        Some(path) => UnixSocket::bind(path)
            .map(Listener::Unix)
            .map_err(|source| StartError::Socket {
                what,
                path: path.to_owned(),
                source,
            }),
        None => Ok(Listener::Tcp(bind(what, addr).await?)),
    }
}

fn listener_addr(
    what: &'static str,
    listener: &Listener,
    addr: SocketAddr,
) -> Result<SocketAddr, StartError> {
    match listener {
        Listener::Tcp(tcp) => local_addr(what, tcp, addr),
        Listener::Unix(_) => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
    }
}

fn local_addr(
    what: &'static str,
    listener: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// File descriptors kept aside from the listeners' connection limits: flag files, the watcher, outbound
/// source connections, logs.
pub const RESERVED_FDS: u64 = 256;

/// The management port's reserve: this fraction of the descriptors left after [`RESERVED_FDS`], for it
/// alone, so that health checks and the admin API answer during a flood of the other ports.
const MANAGEMENT_SHARE: u64 = 16;

/// How many connections each listener may hold.
#[derive(Debug, Clone)]
struct ConnectionBudget {
    /// The management port's own limit.
    management: usize,
    /// The limit of each of the evaluation, OFREP and sync listeners.
    per_listener: usize,
    /// The pool those three share (`None` when the open-file limit is unknown or unlimited).
    pool: Option<Arc<Semaphore>>,
}

/// The connection limits: `--max-connections` per listener, within what the process may open (after
/// raising its soft open-file limit to the hard one, as Go does for flagd). See [`budget_for`].
fn connection_budget(configured: usize) -> ConnectionBudget {
    let Some(descriptors) = crate::limits::raise_open_files() else {
        return ConnectionBudget {
            management: configured,
            per_listener: configured,
            pool: None,
        };
    };
    let (management, pool, per_listener) = budget_for(descriptors, configured);
    if per_listener < configured {
        tracing::info!(
            max_connections = per_listener,
            shared = pool,
            open_files = descriptors,
            "the open-file limit lowers the connection limit per listener"
        );
    }
    ConnectionBudget {
        management,
        per_listener,
        pool: Some(Arc::new(Semaphore::new(pool))),
    }
}

/// `(management, pool, per_listener)` for a process that may open `descriptors` files: [`RESERVED_FDS`]
/// stay aside, the management port keeps a [`MANAGEMENT_SHARE`]th of the rest for itself, and the
/// evaluation, OFREP and sync listeners share what remains, each taking at most two thirds of it (and at
/// most `configured`), so that a flood of one of them leaves the other two at least a third.
fn budget_for(descriptors: u64, configured: usize) -> (usize, usize, usize) {
    let usable = descriptors.saturating_sub(RESERVED_FDS).max(4);
    let management = (usable / MANAGEMENT_SHARE).max(1);
    let pool = usable - management;
    let to_usize = |n: u64| {
        usize::try_from(n).map_or(Semaphore::MAX_PERMITS, |n| n.min(Semaphore::MAX_PERMITS))
    };
    let per_listener = to_usize(pool * 2 / 3).max(1).min(configured);
    (
        to_usize(management).min(configured),
        to_usize(pool),
        per_listener,
    )
}

/// Serves `router` through `crate::transport` (TCP or unix socket, optional TLS) until `stop` is cancelled.
async fn serve_transport(
    what: &'static str,
    listener: Listener,
    tls: Option<ReloadingTls>,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) -> Result<(), RunError> {
    crate::transport::serve(listener, tls, router, limits, stop)
        .await
        .map_err(|source| RunError { what, source })
}

struct Supervised {
    shutdown: CancellationToken,
    readiness: Readiness,
    /// The evaluation and sync servers.
    servers: JoinSet<Result<(), RunError>>,
    /// The management server (a set of one, so a finished task is never polled again).
    management: JoinSet<Result<(), RunError>>,
    management_stop: CancellationToken,
    sources: Vec<JoinHandle<()>>,
    sources_stop: CancellationToken,
    /// The OpenTelemetry export tasks (none when nothing is exported).
    telemetry: Vec<JoinHandle<()>>,
    telemetry_stop: CancellationToken,
}

/// Waits for shutdown (or a server failure) and stops everything in order.
async fn supervise(mut s: Supervised) -> Result<(), RunError> {
    let failure = tokio::select! {
        biased;
        () = s.shutdown.cancelled() => None,
        Some(result) = s.servers.join_next() => server_failure(result),
        Some(result) = s.management.join_next() => server_failure(result),
    };
    if let Some(error) = &failure {
        tracing::error!(%error, "server failed; shutting down");
    }
    tracing::info!("shutting down");
    s.readiness.set_shutting_down();
    s.shutdown.cancel();
    let drain = async {
        while let Some(result) = s.servers.join_next().await {
            if let Some(error) = server_failure(result) {
                tracing::warn!(%error, "while draining");
            }
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
    s.servers.abort_all();
    s.management_stop.cancel();
    if tokio::time::timeout(DRAIN_TIMEOUT, s.management.join_next())
        .await
        .is_err()
    {
        s.management.abort_all();
    }
    s.sources_stop.cancel();
    for source in s.sources {
        let abort = source.abort_handle();
        if tokio::time::timeout(DRAIN_TIMEOUT, source).await.is_err() {
            tracing::warn!("a source did not stop within {DRAIN_TIMEOUT:?}; abandoning it");
            abort.abort();
        }
    }
    // Last, so that the spans and metrics of the shutdown itself leave too.
    s.telemetry_stop.cancel();
    for task in s.telemetry {
        let abort = task.abort_handle();
        let limit = crate::telemetry::SHUTDOWN_FLUSH + Duration::from_secs(1);
        if tokio::time::timeout(limit, task).await.is_err() {
            abort.abort();
        }
    }
    tracing::info!("stopped");
    failure.map_or(Ok(()), Err)
}

/// The error of a server task that ended, if it ended badly (an `Ok` exit only happens on shutdown).
fn server_failure(
    result: Result<Result<(), RunError>, tokio::task::JoinError>,
) -> Option<RunError> {
    match result {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error),
        Err(join) => Some(RunError {
            what: "a",
            source: std::io::Error::other(join.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::budget_for;

    #[test]
    fn the_connection_budget_keeps_descriptors_aside_and_a_share_for_each_port() {
        // This machine's limit: 10,000 connections on one port fit.
        let (management, pool, per_listener) = budget_for(20_000, 10_000);
        assert_eq!((management, pool, per_listener), (1_234, 18_510, 10_000));
        // A larger --max-connections is lowered to two thirds of the pool.
        assert_eq!(budget_for(20_000, 15_000).2, 12_340);
        // A small limit: a flood of one port leaves a third of the pool to the others.
        let (management, pool, per_listener) = budget_for(600, 10_000);
        assert_eq!((management, pool, per_listener), (21, 323, 215));
        assert!(pool - per_listener >= pool / 3);
        // --max-connections below the share is kept, for every port.
        assert_eq!(budget_for(20_000, 50), (50, 18_510, 50));
        // Nothing left after the reserve still allows a connection per port.
        let (management, pool, per_listener) = budget_for(100, 10_000);
        assert!(management >= 1 && pool >= 1 && per_listener >= 1);
    }
}
