//! Readiness as a latch: each source holds a [`ReadyLatch`] and releases it after its first good load;
//! the daemon is ready when every latch is released and it is not shutting down.
//!
//! What it owns: the count of sources still loading, the shutting-down flag, and a way to wait for all
//! sources (the sync server's startup gate). What it does not do: decide what "loaded" means (the source
//! does) or serve `/readyz` (the management server does).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// Shared readiness state.
#[derive(Debug, Clone)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Sources that have not loaded once yet.
    pending: watch::Sender<usize>,
    shutting_down: AtomicBool,
}

impl Readiness {
    /// Readiness for `sources` sources, returning one latch per source.
    pub fn new(sources: usize) -> (Readiness, Vec<ReadyLatch>) {
        let (pending, _) = watch::channel(sources);
        let readiness = Readiness {
            inner: Arc::new(Inner {
                pending,
                shutting_down: AtomicBool::new(false),
            }),
        };
        let latches = (0..sources)
            .map(|_| ReadyLatch {
                readiness: Some(readiness.clone()),
            })
            .collect();
        (readiness, latches)
    }

    /// Every source has loaded once, and the daemon is not shutting down.
    pub fn is_ready(&self) -> bool {
        *self.inner.pending.borrow() == 0 && !self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Every source has loaded once (shutdown aside).
    pub fn all_loaded(&self) -> bool {
        *self.inner.pending.borrow() == 0
    }

    /// Waits until every source has loaded once.
    pub async fn wait_all_loaded(&self) {
        let mut rx = self.inner.pending.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|pending| *pending == 0).await;
    }

    /// From now on the daemon reports not ready (`/readyz` 412).
    pub fn set_shutting_down(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
    }
}

/// One source's readiness latch: released once, on the first good load.
#[derive(Debug)]
pub struct ReadyLatch {
    readiness: Option<Readiness>,
}

impl ReadyLatch {
    /// Marks the source as loaded. Later calls do nothing.
    pub fn release(&mut self) {
        if let Some(readiness) = self.readiness.take() {
            readiness
                .inner
                .pending
                .send_modify(|pending| *pending = pending.saturating_sub(1));
        }
    }

    /// Whether [`ReadyLatch::release`] has been called.
    pub fn is_released(&self) -> bool {
        self.readiness.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_after_every_latch_and_not_while_shutting_down() {
        let (readiness, mut latches) = Readiness::new(2);
        assert!(!readiness.is_ready());
        latches[0].release();
        latches[0].release();
        assert!(
            !readiness.is_ready(),
            "one source releasing twice must not count for two"
        );
        latches[1].release();
        assert!(readiness.is_ready());
        readiness.set_shutting_down();
        assert!(!readiness.is_ready());
        assert!(readiness.all_loaded());
    }

    #[test]
    fn no_sources_is_ready_at_once() {
        let (readiness, latches) = Readiness::new(0);
        assert!(latches.is_empty());
        assert!(readiness.is_ready());
    }
}
