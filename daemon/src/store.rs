//! The store: every source's last good flags, merged by priority into one immutable [`Snapshot`].
//!
//! Readers (request handlers) never block: they load the current `Arc<Snapshot>` lock-free. Writers (source
//! tasks) replace one source's flags and publish a new snapshot; subscribers (EventStream, SyncFlags) wait
//! on [`Store::subscribe`] and diff their own last snapshot against the new one, so coalesced updates are
//! harmless.

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use flagpole_engine::{Snapshot, SourceFlags};
use tokio::sync::watch;

/// The merged view of all sources.
#[derive(Debug)]
pub struct Store {
    current: ArcSwap<Snapshot>,
    /// Per-source flags in ascending priority; the source list is fixed at start.
    sources: Mutex<Vec<SourceFlags>>,
    changes: watch::Sender<Arc<Snapshot>>,
}

impl Store {
    /// A store for these source identities (ascending priority), all empty.
    pub fn new(sources: impl IntoIterator<Item = Arc<str>>) -> Self {
        let sources: Vec<SourceFlags> = sources
            .into_iter()
            .map(|source| SourceFlags {
                source,
                flags: Vec::new(),
            })
            .collect();
        let snapshot = Arc::new(Snapshot::new(sources.clone()));
        let (changes, _) = watch::channel(snapshot.clone());
        Store {
            current: ArcSwap::new(snapshot),
            sources: Mutex::new(sources),
            changes,
        }
    }

    /// The current snapshot (lock-free).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A receiver that is notified after every published snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.changes.subscribe()
    }

    /// Replaces the flags of the source at `index` and publishes a new snapshot.
    pub fn replace_source(&self, index: usize, flags: Vec<Arc<flagpole_engine::Flag>>) {
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = sources.get_mut(index) {
            slot.flags = flags;
        }
        let snapshot = Arc::new(Snapshot::new(sources.clone()));
        self.current.store(snapshot.clone());
        self.changes.send_replace(snapshot);
    }
}
