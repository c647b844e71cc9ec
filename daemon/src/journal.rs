//! The change journal: every change to what the daemon serves, with time, source and, for overrides, who
//! and why (`docs/admin.md#change-journal`).
//!
//! What it owns: the entry ([`Entry`]: a flag written, updated or deleted by a source reload with a digest
//! of its definition before and after; a rejected payload with its error; an override set, cleared or
//! expired with actor and reason), the bounded in-memory list ([`JOURNAL_MEMORY_ENTRIES`], oldest dropped
//! first) that `GET /api/v1/changes` reads, the JSON-lines file in the state directory (`journal.jsonl`,
//! rotated to `journal.jsonl.1` at [`JOURNAL_ROTATE_BYTES`]), one log line per change naming the keys, and
//! the `flagpole_changes_total{kind}` counter.
//!
//! What it does not do: decide what changed (the store diffs a reload, the sources report rejections, the
//! override control reports overrides), or sit on the evaluation path.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use flagpole_engine::Flag;
use serde::Serialize;
use sha1::{Digest as _, Sha1};

use crate::metrics::Metrics;
use crate::state_dir::StateDir;
use crate::unix_now;

/// Entries kept in memory for `GET /api/v1/changes`.
pub const JOURNAL_MEMORY_ENTRIES: usize = 10_000;

/// The journal file in the state directory.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// Size at which the journal file is rotated (one older generation is kept).
pub const JOURNAL_ROTATE_BYTES: u64 = 16 * 1024 * 1024;

/// The longest error text kept in an entry, in bytes.
pub const MAX_ERROR_BYTES: usize = 4096;

/// What kind of change an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A source added a flag.
    Write,
    /// A source changed a flag's definition.
    Update,
    /// A source no longer defines a flag.
    Delete,
    /// A source's payload was rejected; it kept its last good flags.
    Rejected,
    /// An override was set.
    OverrideSet,
    /// An override was cleared.
    OverrideCleared,
    /// An override expired.
    OverrideExpired,
}

impl Kind {
    /// The name used in the counter and the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Write => "write",
            Kind::Update => "update",
            Kind::Delete => "delete",
            Kind::Rejected => "rejected",
            Kind::OverrideSet => "override_set",
            Kind::OverrideCleared => "override_cleared",
            Kind::OverrideExpired => "override_expired",
        }
    }
}

/// One change.
///
/// Kept small (a reload of 10,000 flags records 10,000 entries, and [`JOURNAL_MEMORY_ENTRIES`] of them stay
/// in memory): the source and the flag key are shared with the store, digests are bytes, and the texts only
/// overrides and rejections carry are boxed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Increasing from 1 with every entry since the daemon started.
    pub seq: u64,
    /// Unix seconds.
    pub time: u64,
    /// What happened.
    pub kind: Kind,
    /// The source identity, or `admin` for overrides.
    pub source: Arc<str>,
    /// The flag key (none for a rejected payload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<Arc<str>>,
    /// Digest of the definition before (update, delete).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Digest>,
    /// Digest of the definition after (write, update).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Digest>,
    /// Who (overrides: the admin token's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Box<str>>,
    /// Why (overrides).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Box<str>>,
    /// The error of a rejected payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<str>>,
}

impl Entry {
    /// An entry of `kind` about `flag` (no digests, actor or reason yet).
    pub fn new(kind: Kind, source: Arc<str>, flag: Option<Arc<str>>) -> Entry {
        Entry {
            seq: 0,
            time: 0,
            kind,
            source,
            flag,
            before: None,
            after: None,
            actor: None,
            reason: None,
            error: None,
        }
    }
}

/// A short digest of a flag's definition: the first six bytes of its SHA-1, written as twelve hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest([u8; 6]);

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The digest of a flag's definition (state, default variant, variants, targeting, metadata).
pub fn digest(flag: &Flag) -> Digest {
    let mut hash = Sha1::new();
    hash.update(flag.state_raw.as_bytes());
    hash.update([0]);
    hash.update(flag.default_variant.as_deref().unwrap_or("").as_bytes());
    hash.update([0]);
    // JSON is written straight into the hash (the same bytes `to_string` would make, without the copies;
    // a first load digests every flag). Writing into a hash cannot fail.
    for (name, value) in flag.variants.iter() {
        hash.update(name.as_bytes());
        let _ = serde_json::to_writer(&mut hash, value);
    }
    hash.update([0]);
    if let Some(targeting) = &flag.raw_targeting {
        hash.update(targeting.as_str().as_bytes());
    }
    hash.update([0]);
    let _ = serde_json::to_writer(&mut hash, &*flag.metadata);
    let mut short = [0; 6];
    short.copy_from_slice(&hash.finalize()[..6]);
    Digest(short)
}

/// The journal.
#[derive(Debug)]
pub struct Journal {
    memory: Mutex<Memory>,
    file: Option<Mutex<JournalFile>>,
    metrics: Metrics,
    /// The newest entry's `seq`, for live readers ([`Journal::subscribe`]).
    latest: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Memory {
    entries: VecDeque<Entry>,
    next_seq: u64,
}

impl Memory {
    /// Appends `entry`, dropping the oldest beyond [`JOURNAL_MEMORY_ENTRIES`]. The list grows by doubling
    /// up to exactly that many, not to the next power of two past it.
    fn push(&mut self, entry: Entry) {
        if self.entries.len() >= JOURNAL_MEMORY_ENTRIES {
            self.entries.pop_front();
        } else if self.entries.len() == self.entries.capacity() {
            let grown = (self.entries.capacity() * 2).clamp(16, JOURNAL_MEMORY_ENTRIES);
            self.entries.reserve_exact(grown - self.entries.len());
        }
        self.entries.push_back(entry);
    }
}

#[derive(Debug)]
struct JournalFile {
    path: PathBuf,
    file: Option<File>,
}

impl Journal {
    /// A journal counting into `metrics`, appending to the state directory's journal file when given.
    pub fn new(metrics: Metrics, state: Option<&StateDir>) -> Journal {
        Journal {
            latest: tokio::sync::watch::Sender::new(0),
            memory: Mutex::new(Memory {
                entries: VecDeque::new(),
                next_seq: 1,
            }),
            file: state.map(|state| {
                Mutex::new(JournalFile {
                    path: state.path().join(JOURNAL_FILE),
                    file: None,
                })
            }),
            metrics,
        }
    }

    /// Records `entries` (one batch: one reload, one override change), logging one line for the batch.
    pub fn record(&self, mut entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let now = unix_now();
        {
            let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
            for entry in &mut entries {
                entry.seq = memory.next_seq;
                memory.next_seq += 1;
                entry.time = now;
                if let Some(error) = &mut entry.error
                    && error.len() > MAX_ERROR_BYTES
                {
                    let mut end = MAX_ERROR_BYTES;
                    while !error.is_char_boundary(end) {
                        end -= 1;
                    }
                    *error = error[..end].into();
                }
                memory.push(entry.clone());
            }
            self.latest.send_replace(memory.next_seq - 1);
        }
        // One count per kind for the batch (a first load records one entry per flag).
        let mut kinds: Vec<(Kind, u64)> = Vec::new();
        for entry in &entries {
            match kinds.iter_mut().find(|(kind, _)| *kind == entry.kind) {
                Some((_, count)) => *count += 1,
                None => kinds.push((entry.kind, 1)),
            }
        }
        for (kind, count) in kinds {
            self.metrics.change_recorded(kind.as_str(), count);
        }
        log(&entries);
        if let Some(file) = &self.file {
            let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(error) = file.append(&entries) {
                tracing::error!(file = %file.path.display(), %error, "cannot append to the change journal");
                file.file = None;
            }
        }
    }

    /// Notified with the newest `seq` after every record.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// The entries after `seq`, oldest first, at most `limit` (the oldest of them).
    pub fn after(&self, seq: u64, limit: usize) -> Vec<Entry> {
        let memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        // Entries are in `seq` order.
        let first = memory.entries.partition_point(|e| e.seq <= seq);
        memory.entries.range(first..).take(limit).cloned().collect()
    }

    /// The newest entry that `matches`, if any (without copying the others).
    pub fn newest(&self, matches: impl Fn(&Entry) -> bool) -> Option<Entry> {
        let memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        memory.entries.iter().rev().find(|e| matches(e)).cloned()
    }

    /// The entries with `time >= since` about `flag` (any when `None`), the newest `limit` of them, oldest
    /// first.
    pub fn query(&self, since: Option<u64>, flag: Option<&str>, limit: usize) -> Vec<Entry> {
        let memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        let mut found: Vec<Entry> = memory
            .entries
            .iter()
            .rev()
            .filter(|e| since.is_none_or(|since| e.time >= since))
            .filter(|e| flag.is_none_or(|flag| e.flag.as_deref() == Some(flag)))
            .take(limit)
            .cloned()
            .collect();
        found.reverse();
        found
    }
}

impl JournalFile {
    fn append(&mut self, entries: &[Entry]) -> std::io::Result<()> {
        let rotate = std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= JOURNAL_ROTATE_BYTES);
        if rotate {
            self.file = None;
            let mut older = self.path.as_os_str().to_owned();
            older.push(".1");
            std::fs::rename(&self.path, PathBuf::from(older))?;
        }
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let mut text = Vec::new();
        for entry in entries {
            serde_json::to_writer(&mut text, entry).map_err(std::io::Error::other)?;
            text.push(b'\n');
        }
        match &mut self.file {
            Some(file) => file.write_all(&text),
            None => Ok(()),
        }
    }
}

/// Keys named in one log line; a larger batch names these and counts the rest.
pub const LOGGED_KEYS: usize = 20;

/// One log line per batch, naming the keys (a reload used to log only the flag count).
fn log(entries: &[Entry]) {
    let first = &entries[0];
    let mut keys: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.flag.as_deref())
        .take(LOGGED_KEYS)
        .collect();
    let more = format!("… {} more", entries.len().saturating_sub(LOGGED_KEYS));
    if entries.len() > LOGGED_KEYS {
        keys.push(&more);
    }
    match first.kind {
        Kind::Rejected => {
            tracing::warn!(
                source = &*first.source,
                error = first.error.as_deref().unwrap_or(""),
                "change: payload rejected"
            );
        }
        Kind::OverrideSet | Kind::OverrideCleared | Kind::OverrideExpired => {
            tracing::warn!(
                kind = first.kind.as_str(),
                flag_key = first.flag.as_deref().unwrap_or(""),
                actor = first.actor.as_deref().unwrap_or(""),
                reason = first.reason.as_deref().unwrap_or(""),
                "change: override"
            );
        }
        Kind::Write | Kind::Update | Kind::Delete => {
            let count = |kind| entries.iter().filter(|e| e.kind == kind).count();
            tracing::info!(
                source = &*first.source,
                written = count(Kind::Write),
                updated = count(Kind::Update),
                deleted = count(Kind::Delete),
                keys = ?keys,
                "change: flags reloaded"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_readers_get_what_follows_their_seq_and_the_newest_match() {
        let journal = Journal::new(Metrics::new(), None);
        let mut latest = journal.subscribe();
        for i in 0..5 {
            journal.record(vec![Entry::new(
                Kind::Write,
                "s".into(),
                Some(format!("f{i}").into()),
            )]);
        }
        assert_eq!(*latest.borrow_and_update(), 5);
        let seqs = |entries: Vec<Entry>| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(journal.after(2, 2)), [3, 4]);
        assert_eq!(seqs(journal.after(4, 10)), [5]);
        assert!(journal.after(5, 10).is_empty());
        let newest = journal.newest(|e| e.flag.as_deref().is_some_and(|f| f < "f3"));
        assert_eq!(newest.map(|e| e.seq), Some(3));
        assert!(journal.newest(|e| e.kind == Kind::Rejected).is_none());
    }

    #[test]
    fn a_digest_is_twelve_hex_digits_of_the_definition() {
        let load = |json: &str| {
            flagpole_engine::parse_document(
                json,
                flagpole_engine::Format::Json,
                &Default::default(),
            )
            .expect("flags")
            .flags
        };
        let on = load(
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}}}"#,
        );
        let off = load(
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off"}}}"#,
        );
        let text = digest(&on[0]).to_string();
        assert_eq!(text.len(), 12);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(
            serde_json::to_value(digest(&on[0])).expect("json"),
            serde_json::json!(text)
        );
        assert_eq!(
            digest(&on[0]),
            digest(
                &load(
                    r#"{"flags":{"f":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}}}"#
                )[0]
            )
        );
        assert_ne!(digest(&on[0]), digest(&off[0]));
        // The bytes hashed are the definition's JSON as `to_string` writes it (digests already in journal
        // files stay comparable).
        let flag = &on[0];
        let mut bytes = format!("{}\0{}\0", flag.state_raw, "on").into_bytes();
        for (name, value) in flag.variants.iter() {
            bytes.extend(name.as_bytes());
            bytes.extend(value.to_string().as_bytes());
        }
        bytes.extend(b"\0\0{}");
        let expected: String = Sha1::digest(&bytes)[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest(flag).to_string(), expected);
    }

    #[test]
    fn a_batch_is_counted_per_kind() {
        let metrics = Metrics::new();
        let journal = Journal::new(metrics.clone(), None);
        let entry = |kind, key: &str| Entry::new(kind, "s".into(), Some(key.into()));
        journal.record(vec![
            entry(Kind::Write, "a"),
            entry(Kind::Update, "b"),
            entry(Kind::Write, "c"),
            entry(Kind::Write, "d"),
        ]);
        let text = metrics.encode();
        assert!(
            text.contains("flagpole_changes_total{kind=\"write\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("flagpole_changes_total{kind=\"update\"} 1"),
            "{text}"
        );
        assert!(!text.contains("kind=\"delete\""), "{text}");
    }

    #[test]
    fn memory_is_bounded_and_queries_filter_by_time_and_flag() {
        let journal = Journal::new(Metrics::new(), None);
        for i in 0..JOURNAL_MEMORY_ENTRIES + 5 {
            journal.record(vec![Entry::new(
                Kind::Write,
                "s".into(),
                Some(format!("f{i}").into()),
            )]);
        }
        let capacity = journal.memory.lock().expect("memory").entries.capacity();
        assert_eq!(
            capacity, JOURNAL_MEMORY_ENTRIES,
            "grown to the bound, not past it"
        );
        let all = journal.query(None, None, usize::MAX);
        assert_eq!(all.len(), JOURNAL_MEMORY_ENTRIES);
        assert_eq!(all[0].seq, 6, "the oldest five were dropped");
        let last = journal.query(None, None, 2);
        assert_eq!(
            last.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [
                JOURNAL_MEMORY_ENTRIES as u64 + 4,
                JOURNAL_MEMORY_ENTRIES as u64 + 5
            ]
        );
        let one = journal.query(Some(0), Some("f7"), 10);
        assert_eq!(one.len(), 1);
        assert!(journal.query(Some(u64::MAX), None, 10).is_empty());
    }

    #[test]
    fn entries_are_appended_as_json_lines_and_errors_are_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("state");
        let journal = Journal::new(Metrics::new(), Some(&state));
        let mut rejected = Entry::new(Kind::Rejected, "f.json".into(), None);
        rejected.error = Some("é".repeat(MAX_ERROR_BYTES).into());
        journal.record(vec![rejected]);
        let mut set = Entry::new(Kind::OverrideSet, "admin".into(), Some("checkout".into()));
        set.actor = Some("oncall".into());
        journal.record(vec![set]);
        let text = std::fs::read_to_string(dir.path().join(JOURNAL_FILE)).expect("file");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["kind"], "rejected");
        assert!(lines[0]["error"].as_str().expect("error").len() <= MAX_ERROR_BYTES);
        assert_eq!(lines[1]["actor"], "oncall");
        assert_eq!(lines[1]["seq"], 2);
    }
}
