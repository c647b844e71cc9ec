//! A local flag file (JSON or YAML), loaded at start and then watched.
//!
//! The watch (shared by all file sources, see [`super::watch`]) is on the file's *parent directory*, not
//! the file, so that every way a file gets replaced is
//! noticed: in-place writes, atomic rename-replace (editors, the testbed's launchpad), delete-then-recreate,
//! editor temp files, and the Kubernetes ConfigMap swap of the `..data` symlink. An event that shows the
//! file complete (renamed into place, or closed after writing) is read at once; any other is debounced for
//! [`DEBOUNCE`] first, so that a burst (truncate, write, close) is read once. A SHA-1 of the content skips
//! identical rewrites.
//!
//! On a bad payload the source keeps its last good flags and the error (path, line, column) is logged. A
//! deleted file also keeps its last flags, and is picked up again when it comes back (flagd loses it:
//! flagd#1876).
//!
//! What it does not do: poll (`fileinfo` in flagd polls every second; flagpole watches for every provider
//! name), or decide priority (the store does).

use std::path::{Path, PathBuf};
use std::time::Duration;

use flagpole_engine::Format;
use sha1::{Digest, Sha1};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::watch::DirWatcher;
use super::{PublishError, SourceContext, SourceError, Wording};

/// How long to wait after a file-system event that does not show the file complete before re-reading, so
/// that a burst (truncate then write, delete then create) is read once.
pub const DEBOUNCE: Duration = Duration::from_millis(10);

/// Wording of a good load's log lines.
const WORDING: Wording = Wording {
    violation: "flag file has a schema violation",
    loaded: "loaded flag file",
};

/// One file source.
pub struct FileSource {
    path: PathBuf,
    format: Format,
    context: SourceContext,
    /// SHA-1 of the last content read (accepted or not): identical rewrites are skipped.
    last_hash: Option<[u8; 20]>,
    /// Whether the file was there at the last read (to log a deletion once).
    present: bool,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("index", &self.context.index)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileSource {
    /// A source for `path`, not loaded yet. Fails when the extension is not .json, .yaml or .yml.
    pub fn new(path: PathBuf, context: SourceContext) -> Result<Self, SourceError> {
        let format = Format::from_path(&path)
            .ok_or_else(|| SourceError::UnsupportedFormat { path: path.clone() })?;
        Ok(FileSource {
            path,
            format,
            context,
            last_hash: None,
            present: true,
        })
    }

    /// Starts watching, then loads the file for the first time, then hands the source to a task that
    /// reloads it on every change until `shutdown` is cancelled.
    ///
    /// A file that cannot be read at start is an error (flagd exits too). A file that cannot be parsed is
    /// logged; the source then stays empty and not ready until a good version arrives. The watch starts
    /// before the first read so that no change in between is missed.
    pub async fn start(
        mut self,
        watcher: &mut DirWatcher,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, SourceError> {
        let changed = match watcher.watch(&self.path) {
            Ok(changed) => changed,
            Err((dir, source)) => {
                // A missing directory means a missing file: report the file, which the user named.
                read_limited(&self.path).await?;
                return Err(SourceError::Watch { path: dir, source });
            }
        };

        let bytes = read_limited(&self.path).await?;
        self.apply(bytes).await;

        Ok(tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = changed.notify.notified() => {}
                }
                if !changed.take_complete() {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(DEBOUNCE) => {}
                    }
                }
                self.reload().await;
            }
        }))
    }

    /// Re-reads the file after a change.
    async fn reload(&mut self) {
        match read_limited(&self.path).await {
            Ok(bytes) => {
                if !self.present {
                    tracing::info!(path = %self.path.display(), "flag file is back");
                    self.present = true;
                }
                self.apply(bytes).await;
            }
            Err(SourceError::Read { source, .. }) if source.is_not_found() => {
                if self.present {
                    tracing::warn!(
                        path = %self.path.display(),
                        "flag file removed; keeping its last flags until it comes back"
                    );
                    self.present = false;
                    self.context
                        .metrics
                        .source_fetch_failed(&self.context.identity);
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot read flag file; keeping its last flags");
                self.context.metrics.source_rejected(&self.context.identity);
                self.context
                    .metrics
                    .source_fetch_failed(&self.context.identity);
            }
        }
    }

    /// Parses `bytes` and, on success, replaces this source's flags.
    ///
    /// Hashing runs on the blocking pool, as do parsing and rebuilding the snapshot
    /// ([`SourceContext::publish`]), so a large file never stalls the request-serving threads.
    async fn apply(&mut self, bytes: Vec<u8>) {
        let checked = tokio::task::spawn_blocking(move || {
            let hash: [u8; 20] = Sha1::digest(&bytes).into();
            let blank = is_blank(&bytes);
            (hash, blank, bytes)
        });
        let (hash, blank, bytes) = match checked.await {
            Ok(checked) => checked,
            Err(error) => return self.aborted(&error),
        };
        if self.last_hash == Some(hash) {
            tracing::debug!(path = %self.path.display(), "flag file unchanged");
            return;
        }
        let error = if blank {
            // flagd: the payload `{}`, rejected.
            self.context.metrics.source_rejected(&self.context.identity);
            SourceError::Empty {
                path: self.path.clone(),
            }
        } else {
            match self.context.publish(WORDING, bytes, self.format).await {
                Ok(_) => {
                    self.last_hash = Some(hash);
                    self.context
                        .metrics
                        .source_fetch_succeeded(&self.context.identity);
                    return;
                }
                Err(PublishError::Aborted(error)) => return self.aborted(&error),
                Err(PublishError::NotUtf8(source)) => SourceError::NotUtf8 {
                    path: self.path.clone(),
                    source,
                },
                Err(PublishError::Load(source)) => SourceError::Load {
                    path: self.path.clone(),
                    source,
                },
            }
        };
        self.last_hash = Some(hash);
        self.context
            .metrics
            .source_fetch_failed(&self.context.identity);
        tracing::error!(%error, "rejected flag file; the source keeps its last good flags");
    }

    /// Logs a load that did not finish; the content is read again at the next change.
    fn aborted(&self, error: &tokio::task::JoinError) {
        tracing::error!(path = %self.path.display(), %error, "loading the flag file failed");
    }
}

/// Whether `bytes` is UTF-8 holding nothing but white space (stopping
/// at the first byte that cannot be white space, so a flag document is not validated twice).
fn is_blank(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|byte| byte.is_ascii_whitespace() || !byte.is_ascii())
        && std::str::from_utf8(bytes).is_ok_and(|text| text.trim().is_empty())
}

/// Reads a flag file on the blocking pool: a regular file of at most the engine's document limit
/// ([`flagpole_engine::file::read_flag_file`]; a FIFO, a device or a directory is refused at once).
pub async fn read_limited(path: &Path) -> Result<Vec<u8>, SourceError> {
    let owned = path.to_owned();
    let read =
        tokio::task::spawn_blocking(move || flagpole_engine::file::read_flag_file(&owned)).await;
    let result = match read {
        Ok(result) => result,
        Err(join) => Err(std::io::Error::other(join.to_string()).into()),
    };
    result.map_err(|source| SourceError::Read {
        path: path.to_owned(),
        source,
    })
}
