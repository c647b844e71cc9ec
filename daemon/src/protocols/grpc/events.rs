//! EventStream (v1, v2, schema.v1): the response stream itself waits for changes — no task and no
//! channel per subscriber, so a change reaches each subscriber with one wake-up of its HTTP/2 stream.
//!
//! The stream yields `provider_ready`, then whichever comes first: a new store snapshot, the keep-alive
//! timer, the stream deadline or shutdown. A new snapshot is diffed against the subscriber's own last
//! snapshot, filtered by its selector (the diff shared per selector by `super::fanout`), so coalesced store
//! updates are harmless and an empty diff sends nothing. `keep_alive` follows 20 s (configurable) without
//! any message; the timer restarts after every message. The stream is polled only when the client's
//! HTTP/2 window has room: a subscriber that stops reading is simply not polled (its next message is the
//! diff from what it last got), and never slows other subscribers or the store. When the client goes
//! away, the server drops the stream.

use std::collections::BTreeMap;
use std::pin::Pin;

use flagpole_engine::{Selector, Snapshot};
use futures::Stream;
use prost_types::value::Kind;
use prost_types::{Struct, Value as ProtoValue};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::Services;
use flagpole_engine::ChangeKind;

use super::status::deadline_exceeded;
use crate::metrics::Metrics;

/// An EventStream response.
pub type EventStream<M> = Pin<Box<dyn Stream<Item = Result<M, Status>> + Send>>;

/// A message type of one of the EventStream services (v1, v2, schema.v1 each have their own).
pub trait EventMessage: Send + 'static {
    /// A message of `kind` with optional data.
    fn event(kind: &str, data: Option<Struct>) -> Self;
}

/// Whether the stream ends at `--stream-deadline` (v1 and v2) or never (schema.v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamDeadline {
    /// End with DEADLINE_EXCEEDED at the configured deadline, if any.
    Configured,
    /// No deadline.
    Never,
}

/// Opens an EventStream for `selector`.
pub fn subscribe<M: EventMessage>(
    services: &Services,
    selector: Selector,
    deadline: StreamDeadline,
) -> EventStream<M> {
    let deadline = match deadline {
        StreamDeadline::Configured => services
            .config()
            .stream_deadline
            .map(|d| Instant::now() + d),
        StreamDeadline::Never => None,
    };
    let mut watch = services.store().subscribe();
    let last = watch.borrow_and_update().clone();
    tracing::debug!(selector = ?selector, "event stream opened");
    let state = Subscriber {
        _gauge: SubscriberGauge::new(services.metrics()),
        shutdown: services.shutdown().clone(),
        keep_alive: services.config().event_keep_alive,
        services: services.clone(),
        selector,
        deadline,
        watch,
        last,
        idle_until: Instant::now(),
        phase: Phase::Start,
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        let item = state.next::<M>().await?;
        Some((item, state))
    }))
}

/// Counts open subscribers in the metrics for as long as it lives.
struct SubscriberGauge(Metrics);

impl SubscriberGauge {
    fn new(metrics: &Metrics) -> Self {
        metrics.event_subscriber_added();
        crate::memory::stream_opened();
        SubscriberGauge(metrics.clone())
    }
}

impl Drop for SubscriberGauge {
    fn drop(&mut self) {
        self.0.event_subscriber_removed();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `provider_ready` is next.
    Start,
    /// Waiting for what comes next.
    Open,
    /// The last message was sent.
    Done,
}

/// One subscriber's state.
struct Subscriber {
    _gauge: SubscriberGauge,
    services: Services,
    selector: Selector,
    deadline: Option<Instant>,
    watch: watch::Receiver<Arc<Snapshot>>,
    /// The snapshot this subscriber last announced.
    last: Arc<Snapshot>,
    keep_alive: std::time::Duration,
    idle_until: Instant,
    shutdown: CancellationToken,
    phase: Phase,
}

impl Subscriber {
    /// The next message, or `None` when the stream ends.
    async fn next<M: EventMessage>(&mut self) -> Option<Result<M, Status>> {
        let message = match self.phase {
            Phase::Done => return None,
            Phase::Start => {
                self.phase = Phase::Open;
                M::event("provider_ready", Some(Struct::default()))
            }
            Phase::Open => loop {
                tokio::select! {
                    () = self.shutdown.cancelled() => {
                        self.end("shutdown");
                        break M::event("provider_shutdown", Some(Struct::default()));
                    }
                    () = sleep_until_opt(self.deadline) => {
                        self.end("deadline");
                        return Some(Err(deadline_exceeded()));
                    }
                    () = sleep_until(self.idle_until) => break M::event("keep_alive", None),
                    changed = self.watch.changed() => {
                        if changed.is_err() {
                            self.end("store gone");
                            return None;
                        }
                        let new = self.watch.borrow_and_update().clone();
                        let data = self.services.fanout().change_data(&self.last, &new, &self.selector);
                        self.last = new;
                        if let Some(data) = data {
                            break M::event("configuration_change", Some(Struct::clone(&data)));
                        }
                    }
                }
            },
        };
        self.idle_until = Instant::now() + self.keep_alive;
        Some(Ok(message))
    }

    fn end(&mut self, why: &'static str) {
        self.phase = Phase::Done;
        tracing::debug!(selector = ?self.selector, end = why, "event stream closed");
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if self.phase != Phase::Done {
            tracing::debug!(selector = ?self.selector, end = "client gone", "event stream closed");
        }
    }
}

/// What became of a message handed to a stream's buffer (the sync service's streams).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// It is in the buffer.
    Delivered,
    /// The client went away.
    ClientGone,
    /// Shutdown began while the buffer was full (a client that stopped reading cannot hold shutdown up).
    ShuttingDown,
}

/// Sends `item`, waiting for room in the buffer unless shutdown begins first.
pub async fn send_or_shutdown<T>(
    tx: &mpsc::Sender<T>,
    item: T,
    shutdown: &CancellationToken,
) -> Sent {
    tokio::select! {
        result = tx.send(item) => if result.is_ok() { Sent::Delivered } else { Sent::ClientGone },
        () = shutdown.cancelled() => Sent::ShuttingDown,
    }
}

/// Sleeps until `deadline`, or forever when there is none.
pub async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// `{"flags": {key: {"type": "write"|"update"|"delete"}}}`.
pub fn change_data(diff: &BTreeMap<String, ChangeKind>) -> Struct {
    let flags = diff
        .iter()
        .map(|(key, kind)| {
            let mut entry = Struct::default();
            entry.fields.insert(
                "type".into(),
                ProtoValue {
                    kind: Some(Kind::StringValue(kind.as_str().into())),
                },
            );
            (
                key.clone(),
                ProtoValue {
                    kind: Some(Kind::StructValue(entry)),
                },
            )
        })
        .collect();
    let mut data = Struct::default();
    data.fields.insert(
        "flags".into(),
        ProtoValue {
            kind: Some(Kind::StructValue(Struct { fields: flags })),
        },
    );
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_buffer_gives_way_to_shutdown() {
        let (tx, mut rx) = mpsc::channel(1);
        let shutdown = CancellationToken::new();
        assert_eq!(send_or_shutdown(&tx, 1, &shutdown).await, Sent::Delivered);
        shutdown.cancel();
        // The buffer is full and nobody reads: the send must not hang.
        assert_eq!(
            send_or_shutdown(&tx, 2, &shutdown).await,
            Sent::ShuttingDown
        );
        assert_eq!(rx.recv().await, Some(1));
        drop(rx);
        let open = CancellationToken::new();
        assert_eq!(send_or_shutdown(&tx, 3, &open).await, Sent::ClientGone);
    }

    #[test]
    fn change_data_has_flagds_shape() {
        let diff = BTreeMap::from([
            ("a".to_owned(), ChangeKind::Write),
            ("b".to_owned(), ChangeKind::Delete),
        ]);
        let data = change_data(&diff);
        let Some(Kind::StructValue(flags)) = &data.fields["flags"].kind else {
            panic!("flags is a Struct")
        };
        let Some(Kind::StructValue(a)) = &flags.fields["a"].kind else {
            panic!("entry is a Struct")
        };
        assert_eq!(
            a.fields["type"].kind,
            Some(Kind::StringValue("write".into()))
        );
        assert_eq!(flags.fields.len(), 2);
    }
}
