//! One file-system watcher per daemon, shared by every file source.
//!
//! Each file source registers its parent directory and file name and gets a [`FileWake`] that is woken
//! when an event names that file, or a `..`-prefixed entry (the Kubernetes ConfigMap `..data` symlink
//! swap), or when the watcher reports lost events. The wake-up also says whether the event shows the
//! file complete ([`is_complete`]: renamed into place, or closed after writing), so that the source can
//! read it at once instead of waiting for the rest of a burst. Matching is by file name only: a spurious
//! wake-up costs one re-read, which the content hash turns into a no-op, while a missed one would lose a
//! change.
//!
//! Why shared: inotify instances are limited per user (128 by default on Linux), and every watcher is
//! one instance; a daemon with many sources, or many daemons in one test process, would run out.
//!
//! What it does not do: read files or debounce (the file source does both).

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// Subscribers: a file name and the wake-up for its source.
type Subscribers = Arc<Mutex<Vec<(OsString, Arc<FileWake>)>>>;

/// A file source's wake-up.
#[derive(Debug, Default)]
pub struct FileWake {
    /// Woken on every event that may change the file.
    pub notify: Notify,
    /// Set when one of the events since the source last looked showed the file complete.
    complete: AtomicBool,
}

impl FileWake {
    /// Whether an event since the last call showed the file complete (and forgets it).
    pub fn take_complete(&self) -> bool {
        self.complete.swap(false, Ordering::AcqRel)
    }

    fn wake(&self, complete: bool) {
        if complete {
            self.complete.store(true, Ordering::Release);
        }
        self.notify.notify_one();
    }
}

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
                Ok(event) if event.need_rescan() => wake_all(&subscribers, false),
                // Opening, reading and closing a file unchanged are the source's own reads: reacting to
                // them would re-read the file in a loop (a close after writing is a change).
                Ok(event) if !may_change_content(&event.kind) => {}
                Ok(event) => {
                    let complete = is_complete(&event.kind);
                    for path in &event.paths {
                        let Some(name) = path.file_name() else {
                            continue;
                        };
                        if name.to_str().is_some_and(|n| n.starts_with("..")) {
                            wake_all(&subscribers, complete);
                            return;
                        }
                        for (watched, wake) in subscribers.iter() {
                            if watched == name {
                                wake.wake(complete);
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "file watch error; re-reading every file");
                    wake_all(&subscribers, false);
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
    pub fn watch(&mut self, path: &Path) -> Result<Arc<FileWake>, (PathBuf, notify::Error)> {
        let dir = parent_dir(path);
        if !self.watched.contains(&dir) {
            self.watcher
                .watch(&dir, RecursiveMode::NonRecursive)
                .map_err(|e| (dir.clone(), e))?;
            self.watched.insert(dir);
        }
        let wake = Arc::new(FileWake::default());
        let name = path.file_name().map(OsString::from).unwrap_or_default();
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, wake.clone()));
        Ok(wake)
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

/// Whether an event shows its file complete: renamed into place (an atomic replace, the ConfigMap
/// `..data` swap), or closed by a writer. Any other change (a create, a truncate, a write, a delete) may be
/// the start of a burst.
pub fn is_complete(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
    matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
    )
}

fn wake_all(subscribers: &[(OsString, Arc<FileWake>)], complete: bool) {
    for (_, wake) in subscribers {
        wake.wake(complete);
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
    fn only_a_rename_into_place_or_a_close_after_writing_shows_a_file_complete() {
        use notify::event::{
            AccessKind, AccessMode, CreateKind, DataChange, EventKind, ModifyKind, RemoveKind,
            RenameMode,
        };
        for complete in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
        ] {
            assert!(is_complete(&complete), "{complete:?}");
        }
        for partial in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
        ] {
            assert!(!is_complete(&partial), "{partial:?}");
        }
        let wake = FileWake::default();
        wake.wake(false);
        assert!(!wake.take_complete());
        wake.wake(true);
        wake.wake(false);
        assert!(wake.take_complete(), "kept until the source looks");
        assert!(!wake.take_complete(), "and forgotten then");
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
