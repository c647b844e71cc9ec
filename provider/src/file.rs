//! The file resolver's background task: reads the offline flag file, re-reads it on any file-system
//! notification for its directory (atomic rename-replace, delete-then-recreate and symlink swaps included)
//! and at least every `offlinePollIntervalMs`, and reports the same events as the network resolvers: a file
//! that cannot be read is a lost connection (STALE, then ERROR after the grace period), its return is READY,
//! a new content is CONFIGURATION_CHANGED with the changed keys. A file that does not parse keeps the
//! previous flags.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flagpole_engine::Format;
use notify::Watcher;
use tokio::sync::mpsc;

use crate::events::{Hub, Lifecycle};
use crate::local::{FlagSet, LocalStore};

/// How many pending file-system notifications are kept; more are coalesced (one re-read covers them all).
const NOTIFY_QUEUE: usize = 16;

/// What the file task needs.
pub(crate) struct FileTask {
    pub(crate) path: PathBuf,
    pub(crate) poll: Duration,
    pub(crate) store: Arc<LocalStore>,
    pub(crate) hub: Arc<Hub>,
}

impl FileTask {
    /// Runs until aborted.
    pub(crate) async fn run(self, mut life: Lifecycle) {
        let (tx, mut rx) = mpsc::channel::<()>(NOTIFY_QUEUE);
        // Keep the watcher alive for as long as the task runs; without one, polling alone still works.
        let _watcher = self.watch(tx);
        let format = Format::from_path(&self.path).unwrap_or(Format::Json);
        let mut last: Option<String> = None;
        loop {
            match read_bounded(&self.path).await {
                Ok(text) => {
                    if last.as_deref() != Some(text.as_str()) {
                        match FlagSet::parse(&text, format) {
                            Ok(flags) => {
                                let changed = self.store.replace(flags, Default::default());
                                life.connected();
                                if let Some(keys) = changed.filter(|k| !k.is_empty()) {
                                    self.hub.changed(keys);
                                }
                            }
                            Err(error) => {
                                tracing::warn!(path = %self.path.display(), %error, "flag file rejected; keeping the previous flags");
                            }
                        }
                        last = Some(text);
                    } else if self.store.current().is_some() {
                        life.connected();
                    }
                }
                Err(error) => {
                    last = None;
                    life.disconnected(&format!("{}: {error}", self.path.display()));
                }
            }
            let wait = async {
                tokio::select! {
                    _ = rx.recv() => {
                        // Let a burst of notifications (write, rename) settle, then drain them.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        while rx.try_recv().is_ok() {}
                    }
                    () = tokio::time::sleep(self.poll) => {}
                }
            };
            life.guard(wait).await;
        }
    }

    fn watch(&self, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        // Every event in the directory triggers a re-read, not only events naming the file: a Kubernetes
        // ConfigMap volume replaces the file by swapping a `..data` symlink, and events name only that.
        // Re-reading is cheap, and an unchanged text produces no change event.
        let handler = move |event: notify::Result<notify::Event>| {
            // Opening, reading and closing the file unchanged are this task's own reads: reacting to them
            // would re-read the file in a loop. A close after writing is a change.
            if let Ok(event) = &event
                && is_own_read(&event.kind)
            {
                return;
            }
            // A full queue already holds a pending re-read.
            let _ = tx.try_send(());
        };
        match notify::recommended_watcher(handler) {
            Ok(mut watcher) => match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => Some(watcher),
                Err(error) => {
                    tracing::debug!(dir = %dir.display(), %error, "cannot watch the flag file's directory; polling only");
                    None
                }
            },
            Err(error) => {
                tracing::debug!(%error, "no file-system watcher; polling only");
                None
            }
        }
    }
}

/// Whether an event is only an open, a read, or a close without writing.
fn is_own_read(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    matches!(kind, EventKind::Access(access) if *access != AccessKind::Close(AccessMode::Write))
}

/// Reads the flag file on the blocking pool: a regular file within the engine's document limit (a FIFO
/// or a device is refused at once, see [`flagpole_engine::file`]).
async fn read_bounded(path: &std::path::Path) -> std::io::Result<String> {
    let owned = path.to_owned();
    let bytes = tokio::task::spawn_blocking(move || flagpole_engine::file::read_flag_file(&owned))
        .await
        .map_err(std::io::Error::other)?
        .map_err(|error| match error {
            flagpole_engine::file::FileError::Io(error) => error,
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other.to_string()),
        })?;
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_reads_are_not_changes() {
        use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
        assert!(is_own_read(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(is_own_read(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!is_own_read(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(!is_own_read(&EventKind::Modify(ModifyKind::Any)));
    }
}
