//! Work shared between subscribers: after a store change, every EventStream subscriber with the same
//! selector computes the same diff, and every SyncFlags stream with the same selector the same payload.
//! These small caches let the first subscriber do the work and the others reuse it, so publishing a change
//! to thousands of subscribers costs one diff per selector instead of one per subscriber.
//!
//! Entries are keyed by snapshot identity (`Arc` pointer, kept alive by the entry itself, so a pointer is
//! never reused while cached) and selector. A subscriber whose last snapshot differs (it coalesced several
//! updates) simply misses and computes its own.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use flagpole_engine::{Selector, Snapshot};
use prost_types::Struct;

use super::events::change_data;

/// Cached diffs / payloads kept at once (distinct selectors and snapshot pairs in flight).
pub const SHARED_CACHE_ENTRIES: usize = 16;

/// The `configuration_change` data from one snapshot to the next for one selector; `None` when the
/// selection did not change.
pub type ChangeData = Option<Arc<Struct>>;

struct DiffEntry {
    old: Arc<Snapshot>,
    new: Arc<Snapshot>,
    selector: Selector,
    data: ChangeData,
}

struct PayloadEntry {
    snapshot: Arc<Snapshot>,
    selector: Selector,
    payload: Arc<str>,
}

/// The caches of one set of services.
#[derive(Default)]
pub struct Fanout {
    diffs: Mutex<VecDeque<DiffEntry>>,
    payloads: Mutex<VecDeque<PayloadEntry>>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout").finish_non_exhaustive()
    }
}

impl Fanout {
    /// The change data from `old` to `new` under `selector` (computed once per distinct key).
    pub fn change_data(
        &self,
        old: &Arc<Snapshot>,
        new: &Arc<Snapshot>,
        selector: &Selector,
    ) -> ChangeData {
        // The lock is held while computing so that concurrent subscribers wait for one result instead of
        // all computing it; a diff takes microseconds.
        let mut diffs = self.diffs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = diffs.iter().find(|e| {
            Arc::ptr_eq(&e.old, old) && Arc::ptr_eq(&e.new, new) && &e.selector == selector
        }) {
            return entry.data.clone();
        }
        let diff = Snapshot::changes(old, new, selector);
        let data = (!diff.is_empty()).then(|| Arc::new(change_data(&diff)));
        diffs.push_front(DiffEntry {
            old: old.clone(),
            new: new.clone(),
            selector: selector.clone(),
            data: data.clone(),
        });
        diffs.truncate(SHARED_CACHE_ENTRIES);
        data
    }

    /// The sync payload of `snapshot` under `selector` (computed once per distinct key).
    pub fn sync_payload(&self, snapshot: &Arc<Snapshot>, selector: &Selector) -> Arc<str> {
        let mut payloads = self.payloads.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = payloads
            .iter()
            .find(|e| Arc::ptr_eq(&e.snapshot, snapshot) && &e.selector == selector)
        {
            return entry.payload.clone();
        }
        let payload: Arc<str> = Arc::from(snapshot.sync_payload(selector));
        payloads.push_front(PayloadEntry {
            snapshot: snapshot.clone(),
            selector: selector.clone(),
            payload: payload.clone(),
        });
        payloads.truncate(SHARED_CACHE_ENTRIES);
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_share_one_result_and_distinct_snapshots_do_not() {
        let shared = Fanout::default();
        let a = Arc::new(Snapshot::default());
        let b = Arc::new(Snapshot::default());
        let first = shared.sync_payload(&a, &Selector::All);
        let again = shared.sync_payload(&a, &Selector::All);
        assert!(Arc::ptr_eq(&first, &again));
        let other = shared.sync_payload(&b, &Selector::All);
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(first, other);
        assert_eq!(shared.change_data(&a, &b, &Selector::All), None);
    }
}
