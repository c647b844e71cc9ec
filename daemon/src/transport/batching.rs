//! Batching a connection's writes: see [`YieldOnWake`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Runs `inner` (a connection) one turn later than it is woken: each time it is woken, its first poll only
/// puts the task back at the end of the worker's run queue, and the next poll runs the connection.
///
/// Why: tokio runs a task woken by the running task next (its "LIFO slot"). An HTTP/2 connection is woken
/// by each of its streams' tasks as soon as that stream has a frame to send, so on a busy worker it ran
/// once per frame and wrote each frame with its own system call — a change event fanned out to 1,000
/// EventStreams on 10 connections cost 1,000 `writev`s, most of the daemon's CPU for the change. Yielding
/// once lets the other runnable tasks (the rest of the streams) add their frames first, and the connection
/// writes them together. On an idle worker the queue is empty and the connection runs at once.
#[derive(Debug)]
pub(super) struct YieldOnWake<F> {
    inner: F,
    /// Whether this poll follows the yield (the connection's turn) rather than a wake.
    yielded: bool,
}

impl<F> YieldOnWake<F> {
    pub(super) fn new(inner: F) -> Self {
        YieldOnWake {
            inner,
            yielded: false,
        }
    }
}

impl<F: Future + Unpin> Future for YieldOnWake<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if !self.yielded {
            self.yielded = true;
            // A task that wakes itself while running is queued behind the tasks already runnable.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.yielded = false;
        Pin::new(&mut self.inner).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::YieldOnWake;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "current_thread")]
    async fn the_wrapped_future_runs_after_the_tasks_already_runnable() {
        let order = Arc::new(AtomicUsize::new(0));
        let before = {
            let order = order.clone();
            tokio::spawn(async move { order.fetch_add(1, Ordering::SeqCst) })
        };
        let seen = YieldOnWake::new(Box::pin(async { order.load(Ordering::SeqCst) })).await;
        assert_eq!(seen, 1, "the spawned task ran first");
        assert_eq!(before.await.expect("task"), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn its_output_is_the_inner_futures() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let waiting = tokio::spawn(YieldOnWake::new(rx));
        tokio::task::yield_now().await;
        tx.send(7).expect("send");
        assert_eq!(waiting.await.expect("task").expect("value"), 7);
    }
}
