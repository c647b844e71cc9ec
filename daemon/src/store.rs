//! The store: every source's last good flags, merged by priority into one immutable [`Snapshot`].
//!
//! Readers (request handlers) never block: they load the current `Arc<Snapshot>` lock-free. Writers (source
//! tasks) replace one source's flags and publish a new snapshot; subscribers (EventStream, SyncFlags) wait
//! on [`Store::subscribe`] and diff their own last snapshot against the new one, so coalesced updates are
//! harmless.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arc_swap::ArcSwap;
use flagpole_engine::{Snapshot, SourceFlags};
use tokio::sync::watch;

use crate::journal::{Entry, Journal, Kind, digest};
use crate::overrides::Overrides;
use crate::usage::Usage;

/// The merged view of all sources.
#[derive(Debug)]
pub struct Store {
    current: ArcSwap<Snapshot>,
    /// Per-source flags in ascending priority (the source list is fixed at start), and the overrides laid
    /// over them.
    layers: Mutex<Layers>,
    changes: watch::Sender<Arc<Snapshot>>,
    /// Where reloads are recorded, once the runtime sets one.
    journal: OnceLock<Arc<Journal>>,
    /// The usage counters, kept in step with every published snapshot once the runtime sets them.
    usage: OnceLock<Arc<Usage>>,
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
            layers: Mutex::new(Layers {
                sources,
                overrides: Overrides::default(),
            }),
            changes,
            journal: OnceLock::new(),
            usage: OnceLock::new(),
        }
    }

    /// Keeps `usage` in step with every later snapshot (and the current one); a second call is ignored.
    pub fn set_usage(&self, usage: Arc<Usage>) {
        // Under the lock, so that no snapshot is published between the first sync and the setting.
        let _layers = self.layers.lock().unwrap_or_else(PoisonError::into_inner);
        usage.sync(&self.current.load(), crate::unix_now());
        let _ = self.usage.set(usage);
    }

    /// The usage counters, when set.
    #[inline]
    pub fn usage(&self) -> Option<&Arc<Usage>> {
        self.usage.get()
    }

    /// Records every later reload (per flag) in `journal`; a second call is ignored.
    pub fn set_journal(&self, journal: Arc<Journal>) {
        let _ = self.journal.set(journal);
    }

    /// The journal, when one is set.
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.journal.get()
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
        let journal = self.journal.get();
        // What the journal compares, kept aside so that the digests are computed after the snapshot is out.
        let mut replaced = None;
        {
            let mut layers = self.layers.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = layers.sources.get_mut(index) {
                let new = journal.map(|_| flags.clone());
                let old = std::mem::replace(&mut slot.flags, flags);
                replaced = new.map(|new| (slot.source.clone(), old, new));
            }
            self.publish(&layers);
        }
        if let (Some(journal), Some((source, old, new))) = (journal, replaced) {
            journal.record(reload_entries(&source, &old, &new));
        }
    }

    /// Every source's identity (ascending priority) and how many flags it holds now.
    pub fn sources(&self) -> Vec<(Arc<str>, usize)> {
        self.layers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sources
            .iter()
            .map(|source| (source.source.clone(), source.flags.len()))
            .collect()
    }

    /// The overrides in force.
    pub fn overrides(&self) -> Overrides {
        self.layers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .overrides
            .clone()
    }

    /// Changes the overrides: `change` gets a copy of them and the current snapshot; when it returns
    /// `Ok(true)` the copy replaces them and a new snapshot is published, otherwise nothing changes. Runs
    /// under the store's lock, so a source reload cannot interleave (`change` may write the state file).
    pub fn update_overrides<E>(
        &self,
        change: impl FnOnce(&mut Overrides, &Snapshot) -> Result<bool, E>,
    ) -> Result<bool, E> {
        let mut layers = self.layers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = layers.overrides.clone();
        let changed = change(&mut next, &self.current.load())?;
        if changed {
            layers.overrides = next;
            self.publish(&layers);
        }
        Ok(changed)
    }

    fn publish(&self, layers: &Layers) {
        let snapshot = Arc::new(Snapshot::new(layers.overrides.apply(&layers.sources)));
        // Before the snapshot is visible, so that no evaluation of it misses its counters.
        if let Some(usage) = self.usage.get() {
            usage.sync(&snapshot, crate::unix_now());
        }
        self.current.store(snapshot.clone());
        self.changes.send_replace(snapshot);
    }
}

/// What a snapshot is built from.
#[derive(Debug)]
struct Layers {
    sources: Vec<SourceFlags>,
    overrides: Overrides,
}

/// The per-flag changes of one source's reload (later definitions of a key win, as in the snapshot).
fn reload_entries(
    source: &Arc<str>,
    old: &[Arc<flagpole_engine::Flag>],
    new: &[Arc<flagpole_engine::Flag>],
) -> Vec<Entry> {
    let by_key =
        |flags: &[Arc<flagpole_engine::Flag>]| -> BTreeMap<Arc<str>, Arc<flagpole_engine::Flag>> {
            flags.iter().map(|f| (f.key.clone(), f.clone())).collect()
        };
    let (old, new) = (by_key(old), by_key(new));
    let entry = |kind, key: &Arc<str>| Entry::new(kind, source.clone(), Some(key.clone()));
    // A first load writes every flag: sized once instead of doubled up to it.
    let mut entries = if old.is_empty() {
        Vec::with_capacity(new.len())
    } else {
        Vec::new()
    };
    for (key, flag) in &new {
        match old.get(key) {
            None => {
                let mut entry = entry(Kind::Write, key);
                entry.after = Some(digest(flag));
                entries.push(entry);
            }
            Some(previous) if !previous.same_definition(flag) => {
                let mut entry = entry(Kind::Update, key);
                entry.before = Some(digest(previous));
                entry.after = Some(digest(flag));
                entries.push(entry);
            }
            Some(_) => {}
        }
    }
    for (key, flag) in &old {
        if !new.contains_key(key) {
            let mut entry = entry(Kind::Delete, key);
            entry.before = Some(digest(flag));
            entries.push(entry);
        }
    }
    entries
}
