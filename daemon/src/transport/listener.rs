//! Unix-socket listeners (`--socket-path`, `--sync-socket-path`): bound after removing a stale socket file,
//! removed again when the listener is dropped.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// A bound unix socket that removes its file when dropped (only if the file is still the socket it bound,
/// so a successor's socket is never removed).
#[derive(Debug)]
pub struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket file as bound.
    identity: Option<(u64, u64)>,
}

impl UnixSocket {
    /// Binds `path`. An existing socket file nobody listens on (left by a process that was killed) is
    /// removed first; one that accepts connections is in use; any other kind of file is never removed.
    pub fn bind(path: &Path) -> io::Result<UnixSocket> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the path exists and is not a socket",
                ));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process listens on this socket",
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        let identity = std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        Ok(UnixSocket {
            listener,
            path: path.to_owned(),
            identity,
        })
    }

    /// The listener.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// The socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let still_ours = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()))
            == self.identity;
        if still_ours
            && self.identity.is_some()
            && let Err(error) = std::fs::remove_file(&self.path)
        {
            tracing::debug!(%error, path = %self.path.display(), "cannot remove socket file");
        }
    }
}
