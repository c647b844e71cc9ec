//! The snapshot queries the services use, in one place: single-flag lookup, the ResolveAll selection, the
//! sync payload and the per-key diff. The engine's [`Snapshot`] implements flagd's selector rules
//! (`docs/protocols.md#reading-a-request`); this module only adapts shapes.

use std::collections::{BTreeMap, BTreeSet};

use flagpole_engine::{ChangeKind, Flag, Selector, Snapshot};

/// The flag a single-flag request addresses.
pub fn lookup<'s>(snapshot: &'s Snapshot, key: &str, selector: &Selector) -> Option<&'s Flag> {
    snapshot.get(key, selector).map(|flag| &**flag)
}

/// The ResolveAll selection: one flag per selected key, the one a single-flag lookup of that key would
/// evaluate (flagd evaluates bulk entries by key alone), sorted by key.
pub fn selected<'s>(snapshot: &'s Snapshot, selector: &Selector) -> Vec<&'s Flag> {
    let keys: BTreeSet<&str> = snapshot
        .select(selector)
        .map(|record| &*record.flag.key)
        .collect();
    keys.into_iter()
        .filter_map(|key| lookup(snapshot, key, selector))
        .collect()
}

/// The `flag_configuration` JSON of the sync service for the selection.
pub fn sync_payload(snapshot: &Snapshot, selector: &Selector) -> String {
    snapshot.sync_payload(selector)
}

/// The per-key changes of the selection from `old` to `new`; empty when nothing selected changed.
pub fn changes(
    old: &Snapshot,
    new: &Snapshot,
    selector: &Selector,
) -> BTreeMap<String, ChangeKind> {
    Snapshot::changes(old, new, selector)
}
