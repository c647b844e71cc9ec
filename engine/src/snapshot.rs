//! An immutable index of the flags of one or more sources, with flagd's selector and priority rules.
//!
//! What it owns (`docs/protocols.md#reading-a-request`, `docs/compatibility.md#sources-and-the-store`):
//! - identity: a flag is identified by (flagSetId, key); "no flag set" is distinct from `""`;
//! - priority: a source's position in [`Snapshot::new`]'s list; a later source wins a duplicated identity,
//!   and within one source the later definition wins;
//! - fallback: the snapshot is rebuilt from every source's current flags, so when the winning source drops a
//!   key, a lower-priority definition of it comes back (a deliberate deviation from flagd issue 1809, where
//!   the flag vanishes);
//! - lookups by key and [`Selector`], bulk selection, the sync `flag_configuration` payload, and the per-key
//!   change set behind EventStream's `configuration_change`.
//!
//! What it does not do: hold sources, watch anything, or evaluate. The daemon's store rebuilds a snapshot
//! whenever a source changes and swaps it in atomically.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde_json::Value;
use smallvec::SmallVec;

use crate::go_json::{GoJson, GoMap};
use crate::model::{Flag, Variants};

/// The flags one source currently provides. A source's position in the list given to [`Snapshot::new`] is
/// its priority: later sources win a duplicated (flagSetId, key).
#[derive(Debug, Clone)]
pub struct SourceFlags {
    /// The source identity string (`source=` selectors match it).
    pub source: Arc<str>,
    /// Its flags.
    pub flags: Vec<Arc<Flag>>,
}

/// A `Flagd-Selector` value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selector {
    /// No selector: every flag set, highest-priority source wins.
    #[default]
    All,
    /// `source=<uri>` (or a bare string).
    Source(String),
    /// `flagSetId=<id>`; `flagSetId=` (empty) selects flags without a flag set.
    FlagSetId(String),
}

/// An invalid selector (unknown key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector key {key:?}, valid keys: \"flagSetId\", \"source\"")]
pub struct SelectorError {
    /// The offending key.
    pub key: String,
}

impl FromStr for Selector {
    type Err = SelectorError;

    /// flagd's grammar: one `key=value` pair split on the first `=`; keys `source` and `flagSetId`; a string
    /// without `=` is a source; blank is no selector.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Selector::All);
        }
        match s.split_once('=') {
            // Source identities are kept without URL credentials, so a selector naming them is too.
            None => Ok(Selector::Source(redact_credentials(s))),
            Some(("source", v)) => Ok(Selector::Source(redact_credentials(v))),
            Some(("flagSetId", v)) => Ok(Selector::FlagSetId(v.to_owned())),
            Some((k, _)) => Err(SelectorError { key: k.to_owned() }),
        }
    }
}

/// `uri` with the credentials of its authority (`user:password@`) replaced by `***@`, so that a source
/// URL can be shown in logs, metrics, `/readyz` and flag metadata without its secret. Anything that is
/// not `scheme://user@host...` comes back unchanged.
pub fn redact_credentials(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_owned();
    };
    let rest = &uri[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://***{}", &uri[..scheme_end], &rest[at..]),
        None => uri.to_owned(),
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => Ok(()),
            Selector::Source(s) => write!(f, "source={s}"),
            Selector::FlagSetId(id) => write!(f, "flagSetId={id}"),
        }
    }
}

impl Selector {
    fn matches(&self, record: &Record) -> bool {
        match self {
            Selector::All => true,
            Selector::Source(s) => *record.source == **s,
            Selector::FlagSetId(id) if id.is_empty() => record.flag.flag_set_id.is_none(),
            Selector::FlagSetId(id) => record.flag.flag_set_id.as_deref() == Some(id.as_str()),
        }
    }
}

/// One stored flag: the winning definition of a (flagSetId, key) and the source it came from.
#[derive(Debug, Clone)]
pub struct Record {
    /// The flag.
    pub flag: Arc<Flag>,
    /// The source it was loaded from.
    pub source: Arc<str>,
    /// The source's priority (its index in [`Snapshot::new`]'s list).
    pub priority: usize,
}

/// How a flag key changed between two snapshots (EventStream `configuration_change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A new key.
    Write,
    /// State, default variant, variants, targeting, source or metadata changed.
    Update,
    /// The key is gone.
    Delete,
}

impl ChangeKind {
    /// The `type` string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Write => "write",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
        }
    }
}

/// An immutable, cheaply shareable (`Arc`) view of every source's flags.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// One record per (flagSetId, key), sorted by flagSetId (no set first) then key.
    records: Vec<Record>,
    /// Key → indices into `records` (one per flag set defining the key), ascending.
    by_key: HashMap<Arc<str>, SmallVec<[u32; 1]>>,
    /// Every key is stored once and `records` is in key order (no flag sets, or one): then
    /// [`Snapshot::select_by_key`] is `records` filtered.
    keys_in_order: bool,
}

impl Snapshot {
    /// Builds the index; `sources` are in ascending priority.
    pub fn new(sources: Vec<SourceFlags>) -> Self {
        let total = sources.iter().map(|s| s.flags.len()).sum();
        let mut records: Vec<Record> = Vec::with_capacity(total);
        for (priority, source) in sources.into_iter().enumerate() {
            records.extend(source.flags.into_iter().map(|flag| Record {
                flag,
                source: source.source.clone(),
                priority,
            }));
        }
        // A stable sort keeps equal identities in priority (then document) order, so the last of each run
        // is the winner. Sources are usually sorted already (the map form is), which makes this near-linear.
        records.sort_by(|a, b| {
            (&a.flag.flag_set_id, &a.flag.key).cmp(&(&b.flag.flag_set_id, &b.flag.key))
        });
        records.dedup_by(|later, earlier| {
            let same = later.flag.flag_set_id == earlier.flag.flag_set_id
                && later.flag.key == earlier.flag.key;
            if same {
                std::mem::swap(later, earlier);
            }
            same
        });
        let mut by_key: HashMap<Arc<str>, SmallVec<[u32; 1]>> =
            HashMap::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            // MAX_FLAGS per document times a handful of sources stays far below u32::MAX.
            by_key
                .entry(record.flag.key.clone())
                .or_default()
                .push(i as u32);
        }
        let keys_in_order = records.windows(2).all(|w| w[0].flag.key < w[1].flag.key);
        Snapshot {
            records,
            by_key,
            keys_in_order,
        }
    }

    /// Number of stored (flagSetId, key) records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no flags are stored.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The flag `key` as a single-flag evaluation sees it under `selector`: no selector picks the
    /// highest-priority source across all flag sets (a tie goes to the last flag set in sort order);
    /// `source=S` the first flag set with the key from S; `flagSetId=X` the exact (X, key).
    pub fn get(&self, key: &str, selector: &Selector) -> Option<&Arc<Flag>> {
        self.record(key, selector).map(|r| &r.flag)
    }

    /// Like [`Snapshot::get`], with the source the flag came from.
    pub fn record(&self, key: &str, selector: &Selector) -> Option<&Record> {
        let indices = self.by_key.get(key)?;
        let mut candidates = indices.iter().map(|&i| &self.records[i as usize]);
        match selector {
            Selector::All => {
                candidates.reduce(|best, r| if r.priority >= best.priority { r } else { best })
            }
            _ => candidates.find(|r| selector.matches(r)),
        }
    }

    /// Every record `selector` selects, sorted by flagSetId (no set first) then key; one per
    /// (flagSetId, key), so a key defined in two flag sets appears twice without a selector.
    pub fn select<'s>(&'s self, selector: &'s Selector) -> impl Iterator<Item = &'s Record> + 's {
        self.records.iter().filter(move |r| selector.matches(r))
    }

    /// One flag per key `selector` selects, sorted by key: the flag a single-flag lookup of that key under
    /// `selector` evaluates ([`Snapshot::get`]), as flagd's bulk evaluation looks each key up again.
    pub fn select_by_key<'s>(&'s self, selector: &Selector) -> Vec<&'s Arc<Flag>> {
        if self.keys_in_order {
            // Each key has one record, so a lookup finds the record that was selected.
            return self
                .records
                .iter()
                .filter(|record| selector.matches(record))
                .map(|record| &record.flag)
                .collect();
        }
        let keys: std::collections::BTreeSet<&str> = self
            .records
            .iter()
            .filter(|record| selector.matches(record))
            .map(|record| &*record.flag.key)
            .collect();
        keys.into_iter()
            .filter_map(|key| self.get(key, selector))
            .collect()
    }

    /// The record a key maps to in the selection: where several flag sets share the key, the one later in
    /// sort order wins (flagd's sync map and EventStream diff).
    fn selected<'s>(&'s self, indices: &[u32], selector: &Selector) -> Option<&'s Record> {
        indices
            .iter()
            .rev()
            .map(|&i| &self.records[i as usize])
            .find(|r| selector.matches(r))
    }

    /// The selection keyed by flag key, sorted by key.
    fn by_key_selection<'s>(&'s self, selector: &Selector) -> Vec<(&'s str, &'s Record)> {
        let mut selection: Vec<(&str, &Record)> = self
            .by_key
            .iter()
            .filter_map(|(key, indices)| Some((&**key, self.selected(indices, selector)?)))
            .collect();
        selection.sort_unstable_by(|a, b| a.0.cmp(b.0));
        selection
    }

    /// The sync `flag_configuration` JSON (FlagSyncService `SyncFlags`/`FetchAllFlags`): `{"flags": {...}}`
    /// with targeting already inlined, `defaultVariant` `""` when absent, `source` always present, the merged
    /// metadata, `targeting` and `metadata` left out when empty, and no top-level metadata.
    pub fn sync_payload(&self, selector: &Selector) -> String {
        let mut out = Vec::with_capacity(64 + 256 * self.records.len());
        out.extend_from_slice(b"{\"flags\":{");
        for (i, (key, record)) in self.by_key_selection(selector).into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_json(&mut out, key);
            out.push(b':');
            write_flag(&mut out, record);
        }
        out.extend_from_slice(b"}}");
        // serde_json writes UTF-8 and everything else written here is ASCII.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// The per-key changes from `old` to `new` under `selector`, for EventStream's `configuration_change`.
    /// Empty when nothing visible changed.
    pub fn changes(
        old: &Snapshot,
        new: &Snapshot,
        selector: &Selector,
    ) -> BTreeMap<String, ChangeKind> {
        let mut changes = BTreeMap::new();
        if std::ptr::eq(old, new) {
            return changes;
        }
        for (key, indices) in &new.by_key {
            let Some(record) = new.selected(indices, selector) else {
                continue;
            };
            let previous = old.by_key.get(key).and_then(|i| old.selected(i, selector));
            match previous {
                None => {
                    changes.insert(key.to_string(), ChangeKind::Write);
                }
                Some(previous) if !same_definition(previous, record) => {
                    changes.insert(key.to_string(), ChangeKind::Update);
                }
                Some(_) => {}
            }
        }
        for (key, indices) in &old.by_key {
            if old.selected(indices, selector).is_some()
                && new
                    .by_key
                    .get(key)
                    .and_then(|i| new.selected(i, selector))
                    .is_none()
            {
                changes.insert(key.to_string(), ChangeKind::Delete);
            }
        }
        changes
    }
}

fn same_definition(a: &Record, b: &Record) -> bool {
    a.source == b.source && a.flag.same_definition(&b.flag)
}

fn write_flag(out: &mut Vec<u8>, record: &Record) {
    let flag = &record.flag;
    out.extend_from_slice(b"{\"state\":");
    push_json(out, &*flag.state_raw);
    out.extend_from_slice(b",\"defaultVariant\":");
    push_json(out, flag.default_variant.as_deref().unwrap_or(""));
    // Variants and metadata carry flagd's float64 numbers; targeting is the document's own text, as flagd
    // keeps it (`docs/compatibility.md#sync-payloads`).
    out.extend_from_slice(b",\"variants\":");
    push_json(out, &GoVariants(&flag.variants));
    if let Some(targeting) = &flag.raw_targeting {
        out.extend_from_slice(b",\"targeting\":");
        out.extend_from_slice(targeting.as_str().as_bytes());
    }
    out.extend_from_slice(b",\"source\":");
    push_json(out, &*record.source);
    if !flag.metadata.is_empty() {
        out.extend_from_slice(b",\"metadata\":");
        push_json(out, &GoMap(&flag.metadata));
    }
    out.push(b'}');
}

/// The variants as a JSON object with Go's float64 numbers.
struct GoVariants<'a>(&'a Variants);

impl serde::Serialize for GoVariants<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name, GoJson(value))))
    }
}

fn push_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mark = out.len();
    // Serialising a `Value`, a map of them or a string cannot fail (all keys are strings).
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

/// Compile-time check that a snapshot can be shared across threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Snapshot>();
    assert_send_sync::<Value>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_are_redacted_in_identities_and_selectors() {
        assert_eq!(
            redact_credentials("https://user:s3cret@flags.example/f.json?x=a@b"),
            "https://***@flags.example/f.json?x=a@b"
        );
        assert_eq!(
            redact_credentials("http://token@h:8080"),
            "http://***@h:8080"
        );
        assert_eq!(redact_credentials("http://h/a@b"), "http://h/a@b");
        assert_eq!(redact_credentials("./flags.json"), "./flags.json");
        assert_eq!(
            "source=http://u:p@h/f.json".parse::<Selector>(),
            Ok(Selector::Source("http://***@h/f.json".to_owned()))
        );
    }
}
