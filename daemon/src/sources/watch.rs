//! One file-system watcher per daemon, shared by every file source.
//!
//! Each file source registers its parent directory and file name and gets a [`Notify`] that is woken when
//! an event names that file, or a `..`-prefixed entry (the Kubernetes ConfigMap `..data` symlink swap), or
//! when the watcher reports lost events. Matching is by file name only: a spurious wake-up costs one
//! re-read, which the content hash turns into a no-op, while a missed one would lose a change.
//!
//! Why shared: inotify instances are limited per user (128 by default on Linux), and every watcher is
//! one instance; a daemon with many sources, or many daemons in one test process, would run out.
//!
//! What it does not do: read files or debounce (the file source does both).

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// Subscribers: a file name and the wake-up for its source.
type Subscribers = Arc<Mutex<Vec<(OsString, Arc<Notify>)>>>;

/// The shared watcher.
pub struct DirWatcher {
    watcher: RecommendedWatcher,
    subscribers: Subscribers,
    watched: HashSet<PathBuf>,
}

impl std::fmt::Debug for DirWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatcher")
            .field("watched", &self.watched)
            .finish_non_exhaustive()
    }
}

impl DirWatcher {
    /// A watcher with nothing watched yet.
    pub fn new() -> notify::Result<Self> {
        let subscribers: Subscribers = Arc::default();
        let for_events = subscribers.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let subscribers = for_events.lock().unwrap_or_else(PoisonError::into_inner);
            match event {
                Ok(event) if event.need_rescan() => wake_all(&subscribers),
                // Opening, reading and closing a file unchanged are the source's own reads: reacting to
                // them would re-read the file in a loop (a close after writing is a change).
                Ok(event) if !may_change_content(&event.kind) => {}
                Ok(event) => {
                    for path in &event.paths {
                        let Some(name) = path.file_name() else {
                            continue;
                        };
                        if name.to_str().is_some_and(|n| n.starts_with("..")) {
                            wake_all(&subscribers);
                            return;
                        }
                        for (watched, notify) in subscribers.iter() {
                            if watched == name {
                                notify.notify_one();
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "file watch error; re-reading every file");
                    wake_all(&subscribers);
                }
            }
        })?;
        Ok(DirWatcher {
            watcher,
            subscribers,
            watched: HashSet::new(),
        })
    }

    /// Watches `path`'s parent directory and returns the wake-up for `path`.
    pub fn watch(&mut self, path: &Path) -> Result<Arc<Notify>, (PathBuf, notify::Error)> {
        let dir = parent_dir(path);
        if !self.watched.contains(&dir) {
            self.watcher
                .watch(&dir, RecursiveMode::NonRecursive)
                .map_err(|e| (dir.clone(), e))?;
            self.watched.insert(dir);
        }
        let notify = Arc::new(Notify::new());
        let name = path.file_name().map(OsString::from).unwrap_or_default();
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, notify.clone()));
        Ok(notify)
    }
}

/// Whether an event can mean new content: anything but an open, a read, or a close without writing.
pub fn may_change_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn wake_all(subscribers: &[(OsString, Arc<Notify>)]) {
    for (_, notify) in subscribers {
        notify.notify_one();
    }
}

/// The directory to watch: the parent of `path`, or `.` for a bare file name.
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_changes_but_writes_and_renames_are() {
        use notify::event::{
            AccessKind, AccessMode, CreateKind, DataChange, EventKind, ModifyKind, RenameMode,
        };
        for quiet in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ] {
            assert!(!may_change_content(&quiet), "{quiet:?}");
        }
        for change in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Create(CreateKind::File),
            EventKind::Any,
        ] {
            assert!(may_change_content(&change), "{change:?}");
        }
    }

    #[test]
    fn bare_file_names_watch_the_working_directory() {
        assert_eq!(parent_dir(Path::new("flags.json")), PathBuf::from("."));
        assert_eq!(
            parent_dir(Path::new("flags/all.json")),
            PathBuf::from("flags")
        );
        assert_eq!(
            parent_dir(Path::new("/etc/flags/f.yaml")),
            PathBuf::from("/etc/flags")
        );
    }
}
