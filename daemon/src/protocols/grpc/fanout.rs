//! Work shared between subscribers: after a store change, every EventStream subscriber with the same
//! selector needs the same `configuration_change` data (`crate::protocols::diffs`), and every SyncFlags
//! stream with the same selector the same payload. The first subscriber does the work, the others reuse it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use flagpole_engine::{Selector, Snapshot};
use prost_types::Struct;

use super::events::change_data;
use crate::protocols::diffs::SharedDiffs;

/// Cached payloads kept at once (distinct selectors and snapshots in flight).
pub const SHARED_CACHE_ENTRIES: usize = 16;

/// The `configuration_change` data from one snapshot to the next for one selector; `None` when the
/// selection did not change.
pub type ChangeData = Option<Arc<Struct>>;

struct PayloadEntry {
    snapshot: Arc<Snapshot>,
    selector: Selector,
    payload: Arc<str>,
}

/// The caches of one set of services.
#[derive(Default)]
pub struct Fanout {
    diffs: SharedDiffs<Arc<Struct>>,
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
        self.diffs
            .get(old, new, selector, |diff| Arc::new(change_data(diff)))
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
