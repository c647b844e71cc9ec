//! Provider events and state: the public event API, and the lifecycle state machine the background tasks drive.
//!
//! The OpenFeature Rust SDK 0.3 has no event API, so the provider publishes its own: a [`ProviderEvents`]
//! handle (cheap to clone, usable after the provider was handed to the SDK) with a broadcast of
//! [`ProviderEvent`]s and the current [`ProviderState`]. The kinds and transitions follow the flagd provider
//! specification: READY when a connection delivers its first message, STALE when it breaks, ERROR when it
//! stays broken for the grace period (or when initialization does not finish within the deadline), FATAL
//! when the server answers with one of the configured fatal status codes, CONFIGURATION_CHANGED with the
//! changed flag keys.
//!
//! What it does not do: it never calls application code itself; handlers are the application's own tasks
//! reading the broadcast.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

/// How many events a slow subscriber may fall behind before it starts missing the oldest ones.
pub const EVENT_CHANNEL_CAPACITY: usize = 256;

/// The provider's state (the OpenFeature provider states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderState {
    /// Not connected yet (or no flags yet).
    NotReady,
    /// Connected; evaluations are current.
    Ready,
    /// The connection broke; evaluations use the last known flags (in-process, file) or the cache (RPC).
    Stale,
    /// The connection stayed broken past the grace period, or initialization failed; retries continue.
    Error,
    /// The server answered with a fatal status code; the provider has given up.
    Fatal,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderEventKind {
    /// PROVIDER_READY.
    Ready,
    /// PROVIDER_ERROR (with [`ProviderEvent::fatal`] set when the state is FATAL).
    Error,
    /// PROVIDER_STALE.
    Stale,
    /// PROVIDER_CONFIGURATION_CHANGED.
    ConfigurationChanged,
}

/// One provider event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    /// The kind of event.
    pub kind: ProviderEventKind,
    /// For [`ProviderEventKind::ConfigurationChanged`]: the keys of the flags that were added, changed or
    /// removed (empty when the server did not say).
    pub flags_changed: Vec<String>,
    /// A human-readable detail (the cause of an error, for example).
    pub message: Option<String>,
    /// True for the error event that puts the provider into [`ProviderState::Fatal`] (OpenFeature's
    /// PROVIDER_ERROR with error code PROVIDER_FATAL).
    pub fatal: bool,
}

impl ProviderEvent {
    fn new(kind: ProviderEventKind) -> Self {
        ProviderEvent {
            kind,
            flags_changed: Vec::new(),
            message: None,
            fatal: false,
        }
    }
}

/// The shared half: what the application sees.
#[derive(Debug)]
pub(crate) struct Hub {
    events: broadcast::Sender<ProviderEvent>,
    state: watch::Sender<ProviderState>,
}

impl Hub {
    pub(crate) fn new() -> Arc<Self> {
        let (events, _) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
        let (state, _) = watch::channel(ProviderState::NotReady);
        Arc::new(Hub { events, state })
    }

    pub(crate) fn state(&self) -> ProviderState {
        *self.state.borrow()
    }

    fn set(&self, state: ProviderState, event: ProviderEvent) {
        self.state.send_replace(state);
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    pub(crate) fn changed(&self, flags_changed: Vec<String>) {
        let _ = self.events.send(ProviderEvent {
            flags_changed,
            ..ProviderEvent::new(ProviderEventKind::ConfigurationChanged)
        });
    }
}

/// A handle on a provider's events and state. Clone it freely; it stays valid after the provider was given to
/// the OpenFeature API, and reports nothing more once the provider is dropped.
///
/// ```no_run
/// # async fn run() -> Result<(), flagpole_provider::ProviderError> {
/// use flagpole_provider::{FlagdOptions, FlagdProvider, ProviderEventKind};
///
/// let provider = FlagdProvider::new(FlagdOptions::from_env()?)?;
/// let events = provider.events();
/// let mut rx = events.subscribe();
/// tokio::spawn(async move {
///     while let Ok(event) = rx.recv().await {
///         if event.kind == ProviderEventKind::ConfigurationChanged {
///             println!("flags changed: {:?}", event.flags_changed);
///         }
///     }
/// });
/// open_feature::OpenFeature::singleton_mut().await.set_provider(provider).await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ProviderEvents {
    hub: Arc<Hub>,
}

impl ProviderEvents {
    pub(crate) fn new(hub: Arc<Hub>) -> Self {
        ProviderEvents { hub }
    }

    /// A receiver of every event from now on. Combine with [`ProviderEvents::state`] to run a handler for the
    /// current state right away, as the OpenFeature specification asks of handlers added late: subscribe
    /// first, then read the state, so that a transition in between is seen twice rather than missed.
    pub fn subscribe(&self) -> broadcast::Receiver<ProviderEvent> {
        self.hub.events.subscribe()
    }

    /// The current state.
    pub fn state(&self) -> ProviderState {
        self.hub.state()
    }

    /// A watch of the state, for waiting on a transition.
    pub fn watch_state(&self) -> watch::Receiver<ProviderState> {
        self.hub.state.subscribe()
    }

    /// Waits until the state satisfies `predicate` (checked against the current state first).
    pub async fn wait_for(&self, predicate: impl Fn(ProviderState) -> bool) -> ProviderState {
        let mut rx = self.watch_state();
        match rx.wait_for(|s| predicate(*s)).await {
            Ok(state) => *state,
            // The sender lives in the hub this handle holds, so it cannot be closed.
            Err(_) => self.state(),
        }
    }
}

/// The driver half: owned by one background task, which reports connection outcomes; it turns them into
/// state transitions and events, and runs the grace-period and initialization timers while the task awaits.
pub(crate) struct Lifecycle {
    hub: Arc<Hub>,
    grace: Duration,
    init_deadline: Option<Instant>,
    stale_since: Option<Instant>,
    backoff_initial: Duration,
    backoff_max: Duration,
    backoff_next: Duration,
    on_error: Box<dyn Fn() + Send + Sync>,
}

impl Lifecycle {
    pub(crate) fn new(
        hub: Arc<Hub>,
        init_timeout: Duration,
        grace: Duration,
        backoff_initial: Duration,
        backoff_max: Duration,
        on_error: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        Lifecycle {
            hub,
            grace,
            init_deadline: Some(Instant::now() + init_timeout),
            stale_since: None,
            backoff_initial,
            backoff_max: backoff_max.max(backoff_initial),
            backoff_next: backoff_initial,
            on_error,
        }
    }

    pub(crate) fn state(&self) -> ProviderState {
        self.hub.state()
    }

    /// A connection delivered its first good message. Emits READY unless already ready.
    pub(crate) fn connected(&mut self) -> bool {
        self.backoff_next = self.backoff_initial;
        self.init_deadline = None;
        self.stale_since = None;
        if self.hub.state() == ProviderState::Ready {
            return false;
        }
        self.hub.set(
            ProviderState::Ready,
            ProviderEvent::new(ProviderEventKind::Ready),
        );
        true
    }

    /// The connection broke (or an attempt failed). READY becomes STALE; the grace timer starts.
    pub(crate) fn disconnected(&mut self, reason: &str) {
        if self.hub.state() == ProviderState::Ready {
            tracing::warn!(reason, "flagd connection lost; provider is stale");
            self.stale_since = Some(Instant::now());
            self.hub.set(
                ProviderState::Stale,
                ProviderEvent {
                    message: Some(reason.to_owned()),
                    ..ProviderEvent::new(ProviderEventKind::Stale)
                },
            );
            if self.grace.is_zero() {
                self.enter_error(reason);
            }
        }
    }

    /// A fatal status: the provider gives up.
    pub(crate) fn fatal(&mut self, reason: &str) {
        tracing::error!(
            reason,
            "flagd answered with a fatal status; provider gives up"
        );
        self.stale_since = None;
        self.init_deadline = None;
        (self.on_error)();
        self.hub.set(
            ProviderState::Fatal,
            ProviderEvent {
                message: Some(reason.to_owned()),
                fatal: true,
                ..ProviderEvent::new(ProviderEventKind::Error)
            },
        );
    }

    fn enter_error(&mut self, reason: &str) {
        self.stale_since = None;
        self.init_deadline = None;
        (self.on_error)();
        self.hub.set(
            ProviderState::Error,
            ProviderEvent {
                message: Some(reason.to_owned()),
                ..ProviderEvent::new(ProviderEventKind::Error)
            },
        );
    }

    fn deadline(&self) -> Option<Instant> {
        match self.hub.state() {
            ProviderState::Stale => self.stale_since.map(|t| t + self.grace),
            ProviderState::NotReady => self.init_deadline,
            _ => None,
        }
    }

    fn on_deadline(&mut self) {
        match self.hub.state() {
            ProviderState::Stale => {
                self.enter_error("connection not re-established within the retry grace period")
            }
            ProviderState::NotReady => {
                self.enter_error("initialization did not complete within the deadline")
            }
            _ => {}
        }
    }

    /// Awaits `fut` while firing the grace-period and initialization timers that fall due meanwhile.
    pub(crate) async fn guard<F: Future>(&mut self, fut: F) -> F::Output {
        tokio::pin!(fut);
        loop {
            match self.deadline() {
                None => return fut.await,
                Some(deadline) => {
                    tokio::select! {
                        out = &mut fut => return out,
                        () = tokio::time::sleep_until(deadline) => self.on_deadline(),
                    }
                }
            }
        }
    }

    /// Waits the next back-off interval (doubling up to the maximum), firing timers meanwhile.
    pub(crate) async fn backoff(&mut self) {
        let wait = self.backoff_next;
        self.backoff_next = (self.backoff_next * 2).min(self.backoff_max);
        self.guard(tokio::time::sleep(wait)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn lifecycle(
        grace_secs: u64,
    ) -> (
        Lifecycle,
        ProviderEvents,
        broadcast::Receiver<ProviderEvent>,
        Arc<AtomicUsize>,
    ) {
        let hub = Hub::new();
        let purges = Arc::new(AtomicUsize::new(0));
        let counter = purges.clone();
        let life = Lifecycle::new(
            hub.clone(),
            Duration::from_millis(500),
            Duration::from_secs(grace_secs),
            Duration::from_millis(100),
            Duration::from_millis(350),
            Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        );
        let events = ProviderEvents::new(hub);
        let rx = events.subscribe();
        (life, events, rx, purges)
    }

    fn kinds(rx: &mut broadcast::Receiver<ProviderEvent>) -> Vec<ProviderEventKind> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| e.kind)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn initialization_past_the_deadline_is_an_error() {
        let (mut life, events, mut rx, _) = lifecycle(10);
        life.guard(tokio::time::sleep(Duration::from_millis(400)))
            .await;
        assert_eq!(events.state(), ProviderState::NotReady);
        life.guard(tokio::time::sleep(Duration::from_millis(200)))
            .await;
        assert_eq!(events.state(), ProviderState::Error);
        assert_eq!(kinds(&mut rx), vec![ProviderEventKind::Error]);
        // A failed attempt while never ready is not "stale".
        life.disconnected("refused");
        assert_eq!(events.state(), ProviderState::Error);
        assert!(life.connected());
        assert_eq!(kinds(&mut rx), vec![ProviderEventKind::Ready]);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_turns_into_error_after_the_grace_period_only() {
        let (mut life, events, mut rx, purges) = lifecycle(2);
        assert!(life.connected());
        assert!(!life.connected(), "READY is reported once");
        life.disconnected("gone");
        assert_eq!(events.state(), ProviderState::Stale);
        life.guard(tokio::time::sleep(Duration::from_millis(1_900)))
            .await;
        assert_eq!(events.state(), ProviderState::Stale);
        assert_eq!(
            purges.load(Ordering::SeqCst),
            0,
            "the cache is kept while stale"
        );
        life.guard(tokio::time::sleep(Duration::from_millis(200)))
            .await;
        assert_eq!(events.state(), ProviderState::Error);
        assert_eq!(purges.load(Ordering::SeqCst), 1);
        life.connected();
        assert_eq!(
            kinds(&mut rx),
            vec![
                ProviderEventKind::Ready,
                ProviderEventKind::Stale,
                ProviderEventKind::Error,
                ProviderEventKind::Ready
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_outage_is_stale_then_ready_without_error() {
        let (mut life, _events, mut rx, _) = lifecycle(2);
        life.connected();
        life.disconnected("blip");
        life.guard(tokio::time::sleep(Duration::from_secs(1))).await;
        life.connected();
        life.guard(tokio::time::sleep(Duration::from_secs(5))).await;
        assert_eq!(
            kinds(&mut rx),
            vec![
                ProviderEventKind::Ready,
                ProviderEventKind::Stale,
                ProviderEventKind::Ready
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn zero_grace_goes_straight_to_error() {
        let (mut life, events, mut rx, _) = lifecycle(0);
        life.connected();
        life.disconnected("gone");
        assert_eq!(events.state(), ProviderState::Error);
        assert_eq!(
            kinds(&mut rx),
            vec![
                ProviderEventKind::Ready,
                ProviderEventKind::Stale,
                ProviderEventKind::Error
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_the_maximum_and_resets_on_connect() {
        let (mut life, _events, _rx, _) = lifecycle(10);
        life.connected();
        let mut waits = Vec::new();
        for _ in 0..4 {
            let start = Instant::now();
            life.backoff().await;
            waits.push(start.elapsed().as_millis());
        }
        assert_eq!(waits, vec![100, 200, 350, 350]);
        life.connected();
        let start = Instant::now();
        life.backoff().await;
        assert_eq!(start.elapsed().as_millis(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_is_an_error_event_marked_fatal() {
        let (mut life, events, mut rx, purges) = lifecycle(10);
        life.connected();
        life.fatal("PermissionDenied");
        assert_eq!(events.state(), ProviderState::Fatal);
        assert_eq!(purges.load(Ordering::SeqCst), 1);
        let all: Vec<ProviderEvent> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(
            all.last().map(|e| (e.kind, e.fatal)),
            Some((ProviderEventKind::Error, true))
        );
    }
}
