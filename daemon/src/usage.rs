//! Flag usage: evaluations per flag and variant, and when each was last evaluated and served
//! (`docs/admin.md#flag-lifecycle`), for `/api/v1/flags` and the stale markers.
//!
//! Counting is on the evaluation path, so it is a table lookup and a few relaxed atomics: no lock, no
//! allocation. The table (flag key → counters) is rebuilt when the store publishes a snapshot, before the
//! snapshot is visible, reusing the counters of keys and variants that stay; a key that leaves keeps its
//! counters aside (bounded by [`MAX_DORMANT_FLAGS`]) so that a flag coming back, or a source briefly down,
//! loses nothing. With `--state-dir` the counts are written to `usage.json` every
//! [`USAGE_PERSIST_INTERVAL`] and at shutdown, and read back at start.
//!
//! What it does not count: evaluations in-process SDKs make on their own (the daemon never sees them).
//! A key defined in several flag sets shares one set of counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use flagpole_engine::{Flag, Snapshot};
use serde::{Deserialize, Serialize};

use crate::state_dir::{Loaded, StateDir};

/// The usage file in the state directory.
pub const STATE_FILE: &str = "usage.json";

/// How often the counts are written to the state directory.
pub const USAGE_PERSIST_INTERVAL: Duration = Duration::from_secs(60);

/// Keys no longer served whose counts are kept (the most recently evaluated first).
pub const MAX_DORMANT_FLAGS: usize = 10_000;

/// One variant's counters.
#[derive(Debug, Default)]
struct VariantCounter {
    count: AtomicU64,
    last_served: AtomicU64,
}

/// A flag key's counters, allocated at its first evaluation and shared by every later table while the
/// key's variants stay the same.
#[derive(Debug)]
struct Counters {
    last_evaluated: AtomicU64,
    /// Evaluations that served no variant (disabled, failed, code default).
    no_variant: AtomicU64,
    /// In the order of the flag's (sorted) variants.
    variants: Box<[VariantCounter]>,
}

impl Counters {
    fn new(variants: usize) -> Counters {
        Counters {
            last_evaluated: AtomicU64::new(0),
            no_variant: AtomicU64::new(0),
            variants: (0..variants).map(|_| VariantCounter::default()).collect(),
        }
    }

    /// Counters for `flag` holding `usage`'s counts (of the variants `flag` still has).
    fn from_usage(flag: &Flag, usage: &FlagUsage) -> Counters {
        let counters = Counters::new(flag.variants.len());
        counters
            .last_evaluated
            .store(usage.last_evaluated, Ordering::Relaxed);
        counters
            .no_variant
            .store(usage.no_variant, Ordering::Relaxed);
        for (counter, name) in counters.variants.iter().zip(flag.variants.keys()) {
            if let Some(v) = usage.variants.get(name) {
                counter.count.store(v.count, Ordering::Relaxed);
                counter.last_served.store(v.last_served, Ordering::Relaxed);
            }
        }
        counters
    }
}

/// A served key: the flag (for its variant names), when the daemon first served the key, and its
/// counters once it has been evaluated. An unevaluated flag costs its table entry only.
#[derive(Debug)]
struct Cell {
    flag: Arc<Flag>,
    first_seen: u64,
    counters: OnceLock<Arc<Counters>>,
}

impl Cell {
    fn usage(&self) -> FlagUsage {
        let mut usage = FlagUsage {
            first_seen: self.first_seen,
            ..FlagUsage::default()
        };
        if let Some(counters) = self.counters.get() {
            usage.last_evaluated = counters.last_evaluated.load(Ordering::Relaxed);
            usage.no_variant = counters.no_variant.load(Ordering::Relaxed);
            for (counter, name) in counters.variants.iter().zip(self.flag.variants.keys()) {
                usage.variants.insert(
                    name.to_owned(),
                    VariantUsage {
                        count: counter.count.load(Ordering::Relaxed),
                        last_served: counter.last_served.load(Ordering::Relaxed),
                    },
                );
            }
            usage.evaluations =
                usage.variants.values().map(|v| v.count).sum::<u64>() + usage.no_variant;
        }
        usage
    }
}

type Table = HashMap<Arc<str>, Cell, foldhash::fast::RandomState>;

/// The usage of every flag.
#[derive(Debug)]
pub struct Usage {
    table: ArcSwap<Table>,
    /// Counts of evaluated keys not in the current table (restored at start, or gone from the sources).
    dormant: Mutex<HashMap<Arc<str>, FlagUsage>>,
}

impl Default for Usage {
    fn default() -> Self {
        Usage {
            table: ArcSwap::from_pointee(Table::default()),
            dormant: Mutex::new(HashMap::new()),
        }
    }
}

/// What is known about one flag key's use (the API's and the state file's form).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlagUsage {
    /// When the daemon first served the key (unix seconds).
    pub first_seen: u64,
    /// The last evaluation (unix seconds; 0: never).
    pub last_evaluated: u64,
    /// Evaluations in all.
    pub evaluations: u64,
    /// Evaluations that served no variant (disabled, failed, code default).
    pub no_variant: u64,
    /// Per variant: how often and when last it was served.
    pub variants: BTreeMap<String, VariantUsage>,
}

/// One variant's use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VariantUsage {
    /// Evaluations that served it.
    pub count: u64,
    /// The last one (unix seconds; 0: never).
    pub last_served: u64,
}

/// The state file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UsageFile {
    saved_at: u64,
    flags: BTreeMap<String, FlagUsage>,
}

impl Usage {
    /// Counts one evaluation of `key` that served `variant` (none: disabled, failed, code default) at `now`
    /// (unix seconds). Lock-free; allocates only at a key's first evaluation. A key not in the table
    /// (evaluated from a snapshot older than the table) is not counted.
    #[inline]
    pub fn hit(&self, key: &str, variant: Option<&str>, now: u64) {
        let table = self.table.load();
        let Some(cell) = table.get(key) else { return };
        let counters = cell
            .counters
            .get_or_init(|| Arc::new(Counters::new(cell.flag.variants.len())));
        touch(&counters.last_evaluated, now);
        let index = variant.and_then(|name| cell.flag.variants.position(name));
        match index.and_then(|i| counters.variants.get(i)) {
            Some(counter) => {
                counter.count.fetch_add(1, Ordering::Relaxed);
                touch(&counter.last_served, now);
            }
            None => {
                counters.no_variant.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Makes the table list exactly `snapshot`'s keys, keeping every count; called by the store before it
    /// publishes `snapshot`. A key whose variants changed gets new counters holding the old counts of the
    /// variants it kept (an evaluation counted on the old ones at that instant can be missed).
    pub fn sync(&self, snapshot: &Snapshot, now: u64) {
        let old = self.table.load();
        let mut dormant = self.dormant.lock().unwrap_or_else(PoisonError::into_inner);
        let mut table = Table::with_capacity_and_hasher(snapshot.len(), Default::default());
        for record in snapshot.select(&flagpole_engine::Selector::All) {
            let flag = &record.flag;
            if table.contains_key(&*flag.key) {
                // The same key in another flag set shares the first one's counters.
                continue;
            }
            let cell = match old.get(&*flag.key) {
                Some(previous) => {
                    let counters = OnceLock::new();
                    if let Some(c) = previous.counters.get() {
                        let same = previous.flag.variants.keys().eq(flag.variants.keys());
                        let _ = counters.set(if same {
                            c.clone()
                        } else {
                            Arc::new(Counters::from_usage(flag, &previous.usage()))
                        });
                    }
                    Cell {
                        flag: flag.clone(),
                        first_seen: previous.first_seen,
                        counters,
                    }
                }
                None => match dormant.remove(&*flag.key) {
                    Some(usage) => Cell {
                        flag: flag.clone(),
                        first_seen: usage.first_seen,
                        counters: OnceLock::from(Arc::new(Counters::from_usage(flag, &usage))),
                    },
                    None => Cell {
                        flag: flag.clone(),
                        first_seen: now,
                        counters: OnceLock::new(),
                    },
                },
            };
            table.insert(flag.key.clone(), cell);
        }
        for (key, cell) in old.iter() {
            if !table.contains_key(key) && cell.counters.get().is_some() {
                dormant.insert(key.clone(), cell.usage());
            }
        }
        if dormant.len() > MAX_DORMANT_FLAGS {
            let mut by_age: Vec<(u64, Arc<str>)> = dormant
                .iter()
                .map(|(key, usage)| (usage.last_evaluated, key.clone()))
                .collect();
            by_age.sort_unstable();
            for (_, key) in by_age.iter().take(dormant.len() - MAX_DORMANT_FLAGS) {
                dormant.remove(key);
            }
        }
        drop(dormant);
        self.table.store(Arc::new(table));
    }

    /// The usage of `key`, when it is served.
    pub fn get(&self, key: &str) -> Option<FlagUsage> {
        self.table.load().get(key).map(Cell::usage)
    }

    /// Every served key's usage.
    pub fn all(&self) -> BTreeMap<String, FlagUsage> {
        self.table
            .load()
            .iter()
            .map(|(key, cell)| (key.to_string(), cell.usage()))
            .collect()
    }

    /// Puts persisted counts back (at start, before the first snapshot is synced: they wait as dormant
    /// counts for their keys). A corrupt file is reported and set aside.
    pub fn restore(&self, state: &StateDir) {
        let file = match state.read_json::<UsageFile>(STATE_FILE) {
            Loaded::Missing => return,
            Loaded::Found(file) => file,
            Loaded::SetAside { set_aside, error } => {
                tracing::error!(
                    file = %set_aside.display(),
                    %error,
                    "the usage state file is corrupt; set aside, counting from zero"
                );
                return;
            }
        };
        // Beyond the bound, the most recently evaluated keys are the ones kept (as at run time).
        let mut flags: Vec<(String, FlagUsage)> = file.flags.into_iter().collect();
        flags.sort_unstable_by_key(|(_, usage)| std::cmp::Reverse(usage.last_evaluated));
        let mut dormant = self.dormant.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, usage) in flags.into_iter().take(MAX_DORMANT_FLAGS) {
            dormant.insert(Arc::from(key), usage);
        }
    }

    /// Writes every count (served and dormant keys) to the state directory.
    pub fn persist(&self, state: &StateDir, now: u64) -> std::io::Result<()> {
        let mut flags = self.all();
        for (key, usage) in self
            .dormant
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            flags
                .entry(key.to_string())
                .or_insert_with(|| usage.clone());
        }
        state.write_json(
            STATE_FILE,
            &UsageFile {
                saved_at: now,
                flags,
            },
        )
    }
}

/// Stores `now` unless the value already is (no cache-line write on most evaluations).
#[inline]
fn touch(cell: &AtomicU64, now: u64) {
    if cell.load(Ordering::Relaxed) != now {
        cell.store(now, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use flagpole_engine::{Format, LoadOptions, SourceFlags, parse_document};

    use super::*;

    fn snapshot(doc: &str) -> Snapshot {
        let loaded = parse_document(doc, Format::Json, &LoadOptions::default()).expect("loads");
        Snapshot::new(vec![SourceFlags {
            source: Arc::from("s"),
            flags: loaded.flags,
        }])
    }

    const AB: &str = r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a"}}}"#;

    #[test]
    fn counts_survive_reloads_variant_changes_and_absence() {
        let usage = Usage::default();
        usage.sync(&snapshot(AB), 100);
        usage.hit("f", Some("a"), 110);
        usage.hit("f", Some("a"), 111);
        usage.hit("f", Some("b"), 112);
        usage.hit("f", None, 113);
        usage.hit("unknown", Some("a"), 113);
        let f = usage.get("f").expect("served");
        assert_eq!((f.first_seen, f.last_evaluated), (100, 113));
        assert_eq!((f.evaluations, f.no_variant), (4, 1));
        assert_eq!(
            f.variants["a"],
            VariantUsage {
                count: 2,
                last_served: 111
            }
        );
        // `b` leaves the definition and `c` arrives: `a` keeps counting; `b`'s count goes with it.
        usage.sync(
            &snapshot(
                r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "c": 3}, "defaultVariant": "a"}}}"#,
            ),
            200,
        );
        usage.hit("f", Some("a"), 210);
        usage.hit("f", Some("c"), 211);
        let f = usage.get("f").expect("served");
        assert_eq!(f.first_seen, 100);
        assert_eq!(f.variants["a"].count, 3);
        assert!(!f.variants.contains_key("b"));
        assert_eq!(f.variants["c"].count, 1);
        assert_eq!(f.evaluations, 5);
        // The flag leaves (a source down) and comes back: nothing is lost.
        usage.sync(&snapshot(r#"{"flags": {}}"#), 300);
        assert!(usage.get("f").is_none());
        usage.sync(
            &snapshot(
                r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "c": 3}, "defaultVariant": "a"}}}"#,
            ),
            400,
        );
        let back = usage.get("f").expect("back");
        assert_eq!((back.first_seen, back.evaluations), (100, 5));
        // A flag never evaluated leaves nothing behind when it goes.
        usage.sync(
            &snapshot(r#"{"flags": {"g": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}}}"#),
            500,
        );
        usage.sync(&snapshot(r#"{"flags": {}}"#), 600);
        assert_eq!(usage.dormant.lock().expect("lock").len(), 1);
    }

    #[test]
    fn counts_survive_a_restart_through_the_state_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("state dir");
        let usage = Usage::default();
        usage.sync(&snapshot(AB), 100);
        usage.hit("f", Some("b"), 150);
        usage.persist(&state, 160).expect("written");

        let restarted = Usage::default();
        restarted.restore(&state);
        restarted.sync(&snapshot(AB), 500);
        restarted.hit("f", Some("b"), 510);
        let f = restarted.get("f").expect("served");
        assert_eq!(f.first_seen, 100);
        assert_eq!(f.variants["b"].count, 2);

        // A corrupt file is set aside and counting starts from zero.
        std::fs::write(dir.path().join(STATE_FILE), "{not json").expect("write");
        let fresh = Usage::default();
        fresh.restore(&state);
        fresh.sync(&snapshot(AB), 600);
        assert_eq!(fresh.get("f").expect("served").evaluations, 0);
        assert!(std::fs::read_dir(dir.path()).expect("list").any(|e| {
            e.expect("entry")
                .file_name()
                .to_string_lossy()
                .starts_with("usage.json.corrupt-")
        }));
    }

    #[test]
    fn a_restored_file_beyond_the_bound_keeps_the_most_recently_evaluated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("state dir");
        let flags = (0..=MAX_DORMANT_FLAGS)
            .map(|i| {
                let usage = FlagUsage {
                    last_evaluated: i as u64 + 1,
                    ..FlagUsage::default()
                };
                (format!("k{i:05}"), usage)
            })
            .collect();
        state
            .write_json(STATE_FILE, &UsageFile { saved_at: 1, flags })
            .expect("written");
        let usage = Usage::default();
        usage.restore(&state);
        let dormant = usage.dormant.lock().expect("lock");
        assert_eq!(dormant.len(), MAX_DORMANT_FLAGS);
        assert!(
            !dormant.contains_key("k00000"),
            "the least recently evaluated goes"
        );
        assert!(dormant.contains_key(&*format!("k{MAX_DORMANT_FLAGS:05}")));
    }

    #[test]
    fn dormant_counters_are_bounded() {
        let usage = Usage::default();
        let many: String = (0..MAX_DORMANT_FLAGS + 50)
            .map(|i| format!(r#""k{i}": {{"state": "ENABLED", "variants": {{"a": 1}}, "defaultVariant": "a"}}"#))
            .collect::<Vec<_>>()
            .join(",");
        usage.sync(&snapshot(&format!(r#"{{"flags": {{{many}}}}}"#)), 1);
        for i in 0..MAX_DORMANT_FLAGS + 50 {
            usage.hit(&format!("k{i}"), Some("a"), 2);
        }
        usage.sync(&snapshot(r#"{"flags": {}}"#), 3);
        let dormant = usage.dormant.lock().expect("lock").len();
        assert_eq!(dormant, MAX_DORMANT_FLAGS);
    }
}
