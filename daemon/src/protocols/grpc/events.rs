//! EventStream (v1, v2, schema.v1): one task per subscriber.
//!
//! The task sends `provider_ready`, then waits on whichever comes first: the client going away, a new store
//! snapshot, the keep-alive timer, the stream deadline or shutdown. A new snapshot is diffed against the
//! subscriber's own last snapshot, filtered by its selector, so coalesced store updates are harmless and an
//! empty diff sends nothing. `keep_alive` follows 20 s (configurable) without any message; the timer restarts
//! after every send. Sends are awaited (a slow client slows only its own task) and never unwrapped.

use std::collections::BTreeMap;
use std::time::Duration;

use flagpole_engine::Selector;
use prost_types::value::Kind;
use prost_types::{Struct, Value as ProtoValue};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::Services;
use flagpole_engine::ChangeKind;

use super::status::deadline_exceeded;
use crate::metrics::Metrics;

/// Messages buffered per subscriber before its task waits for the client to read.
pub const EVENT_CHANNEL_CAPACITY: usize = 16;

/// How long the `provider_shutdown` message may wait for room in a slow subscriber's buffer.
pub const SHUTDOWN_SEND_GRACE: Duration = Duration::from_secs(1);

/// An `EventStreamResponse` of one of the three protocols.
pub trait EventMessage: Send + 'static {
    /// A message of `kind` (`provider_ready`, ...) with `data`.
    fn event(kind: &str, data: Option<Struct>) -> Self;
}

/// Whether `--stream-deadline` applies (not on schema.v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamDeadline {
    /// Use the configured deadline, if any.
    Configured,
    /// Never end the stream on time.
    Never,
}

/// Starts a subscriber task and returns its stream.
pub fn subscribe<M: EventMessage>(
    services: &Services,
    selector: Selector,
    deadline: StreamDeadline,
) -> ReceiverStream<Result<M, Status>> {
    let (tx, rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
    let deadline = match deadline {
        StreamDeadline::Configured => services
            .config()
            .stream_deadline
            .map(|d| Instant::now() + d),
        StreamDeadline::Never => None,
    };
    tokio::spawn(run(services.clone(), selector, deadline, tx));
    ReceiverStream::new(rx)
}

/// Keeps the subscriber gauge right however the task ends.
struct SubscriberGauge(Metrics);

impl SubscriberGauge {
    fn new(metrics: &Metrics) -> Self {
        metrics.event_subscriber_added();
        SubscriberGauge(metrics.clone())
    }
}

impl Drop for SubscriberGauge {
    fn drop(&mut self) {
        self.0.event_subscriber_removed();
    }
}

async fn run<M: EventMessage>(
    services: Services,
    selector: Selector,
    deadline: Option<Instant>,
    tx: mpsc::Sender<Result<M, Status>>,
) {
    let _gauge = SubscriberGauge::new(services.metrics());
    let mut watch = services.store().subscribe();
    let mut last = watch.borrow_and_update().clone();
    let keep_alive = services.config().event_keep_alive;
    let shutdown = services.shutdown().clone();
    tracing::debug!(selector = ?selector, "event stream opened");

    let ready = Ok(M::event("provider_ready", Some(Struct::default())));
    let mut sent = send_or_shutdown(&tx, ready, &shutdown).await;
    let mut idle_until = Instant::now() + keep_alive;
    let end = loop {
        match sent {
            Sent::Delivered => {}
            Sent::ClientGone => break "client gone",
            Sent::ShuttingDown => {
                let shutdown = Ok(M::event("provider_shutdown", Some(Struct::default())));
                let _ = timeout(SHUTDOWN_SEND_GRACE, tx.send(shutdown)).await;
                break "shutdown";
            }
        }
        let message = tokio::select! {
            () = tx.closed() => break "client gone",
            () = shutdown.cancelled() => {
                sent = Sent::ShuttingDown;
                continue;
            }
            () = sleep_until_opt(deadline) => {
                let _ = send_or_shutdown(&tx, Err(deadline_exceeded()), &shutdown).await;
                break "deadline";
            }
            () = sleep_until(idle_until) => M::event("keep_alive", None),
            changed = watch.changed() => {
                if changed.is_err() {
                    break "store gone";
                }
                let new = watch.borrow_and_update().clone();
                let data = services.fanout().change_data(&last, &new, &selector);
                last = new;
                let Some(data) = data else { continue };
                M::event("configuration_change", Some(Struct::clone(&data)))
            }
        };
        sent = send_or_shutdown(&tx, Ok(message), &shutdown).await;
        idle_until = Instant::now() + keep_alive;
    };
    tracing::debug!(selector = ?selector, end, "event stream closed");
}

/// What became of a message handed to a subscriber's buffer.
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
