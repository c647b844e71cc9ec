//! One diff per change and selector, shared by every subscriber that needs it (EventStream's
//! `configuration_change`, OFREP's change-stream events): the first subscriber computes the diff between
//! two snapshots for its selector and renders it in its protocol's form; the others with the same
//! snapshots and selector reuse the rendering, so a change announced to thousands of subscribers costs one
//! diff per selector, not one per subscriber.
//!
//! Entries are keyed by snapshot identity (`Arc` pointers, kept alive by the entry itself, so a pointer is
//! never reused while cached) and selector. A subscriber whose last snapshot differs (it coalesced several
//! updates) simply misses and computes its own.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use flagpole_engine::{ChangeKind, Selector, Snapshot};

/// Diffs kept at once (distinct selectors and snapshot pairs in flight).
pub const SHARED_DIFF_ENTRIES: usize = 16;

struct Entry<T> {
    old: Arc<Snapshot>,
    new: Arc<Snapshot>,
    selector: Selector,
    rendered: Option<T>,
}

/// Rendered diffs, shared.
pub struct SharedDiffs<T> {
    entries: Mutex<VecDeque<Entry<T>>>,
}

impl<T> Default for SharedDiffs<T> {
    fn default() -> Self {
        SharedDiffs {
            entries: Mutex::new(VecDeque::new()),
        }
    }
}

impl<T> std::fmt::Debug for SharedDiffs<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDiffs").finish_non_exhaustive()
    }
}

impl<T: Clone> SharedDiffs<T> {
    /// The change from `old` to `new` under `selector`, rendered by `render` (once per distinct key);
    /// `None` when the selection did not change.
    pub fn get(
        &self,
        old: &Arc<Snapshot>,
        new: &Arc<Snapshot>,
        selector: &Selector,
        render: impl FnOnce(&BTreeMap<String, ChangeKind>) -> T,
    ) -> Option<T> {
        // The lock is held while computing so that concurrent subscribers wait for one result instead of
        // all computing it; a diff takes microseconds.
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.iter().find(|e| {
            Arc::ptr_eq(&e.old, old) && Arc::ptr_eq(&e.new, new) && &e.selector == selector
        }) {
            return entry.rendered.clone();
        }
        let diff = Snapshot::changes(old, new, selector);
        let rendered = (!diff.is_empty()).then(|| render(&diff));
        entries.push_front(Entry {
            old: old.clone(),
            new: new.clone(),
            selector: selector.clone(),
            rendered: rendered.clone(),
        });
        entries.truncate(SHARED_DIFF_ENTRIES);
        rendered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_render_per_key() {
        let shared = SharedDiffs::<u32>::default();
        let a = Arc::new(Snapshot::default());
        let b = Arc::new(Snapshot::default());
        let mut renders = 0;
        assert_eq!(
            shared.get(&a, &b, &Selector::All, |_| {
                renders += 1;
                1
            }),
            None,
            "two empty snapshots do not differ"
        );
        assert_eq!(renders, 0);

        // A real change: rendered once for every subscriber asking with the same snapshots and selector,
        // again for another selector.
        let loaded = flagpole_engine::parse_document(
            r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}}}"#,
            flagpole_engine::Format::Json,
            &flagpole_engine::LoadOptions::default(),
        )
        .expect("loads");
        let c = Arc::new(Snapshot::new(vec![flagpole_engine::SourceFlags {
            source: Arc::from("s"),
            flags: loaded.flags,
        }]));
        for _ in 0..3 {
            let rendered = shared.get(&a, &c, &Selector::All, |diff| {
                renders += 1;
                u32::try_from(diff.len()).expect("small")
            });
            assert_eq!(rendered, Some(1));
        }
        assert_eq!(renders, 1, "one render for three subscribers");
        let other = Selector::Source("s".to_owned());
        shared.get(&a, &c, &other, |_| {
            renders += 1;
            0
        });
        assert_eq!(renders, 2, "another selector renders its own");
    }
}
