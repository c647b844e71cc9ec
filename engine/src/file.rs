//! Reading a flag file from disk, bounded: the one piece of I/O in the engine, shared by the daemon's file
//! source, `flagpole validate` and the provider's file mode so that all three refuse the same inputs.
//!
//! What it owns: refusing anything but a regular file (a FIFO, a socket, a device such as `/dev/zero`,
//! also behind a symlink) *without blocking* — the file is opened non-blocking, so opening a FIFO that has
//! no writer returns at once — and reading at most [`MAX_DOCUMENT_BYTES`] bytes whatever the size the file
//! system reports (`/proc` files report 0, devices report 0 and never end).
//!
//! What it does not do: watch, retry or parse.

use std::io::Read;
use std::path::Path;

use crate::load::MAX_DOCUMENT_BYTES;

/// Why a flag file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Opening or reading failed (missing file, permissions, I/O error).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The path names something other than a regular file.
    #[error("not a regular file but {kind}; flag files must be regular files")]
    NotRegular {
        /// What it is ("a FIFO", "a character device", ...).
        kind: &'static str,
    },
    /// The file holds more than the limit it was read with.
    #[error("file holds more than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
}

impl FileError {
    /// Whether the file does not exist (a removed file is not an error for a watched source).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Reads a flag file: a regular file (symlinks followed) of at most [`MAX_DOCUMENT_BYTES`] bytes.
pub fn read_flag_file(path: &Path) -> Result<Vec<u8>, FileError> {
    read_regular_file(path, MAX_DOCUMENT_BYTES as u64)
}

/// Reads a regular file (symlinks followed) of at most `limit` bytes, opened without blocking, whatever
/// size the file system reports; anything but a regular file is refused at once. Also what the http
/// source reads its OAuth secret files with.
pub fn read_regular_file(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let file = open_nonblocking(path)?;
    let metadata = file.metadata()?;
    if let Some(kind) = file_kind(&metadata.file_type()) {
        return Err(FileError::NotRegular { kind });
    }
    if metadata.len() > limit {
        return Err(FileError::TooLarge { limit });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    // One byte past the limit tells "exactly the limit" from "more", whatever the reported size was.
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge { limit });
    }
    Ok(bytes)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, for ever. On a regular
    // file the flag has no effect on reads.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

/// `None` for a regular file, else what the file is.
fn file_kind(file_type: &std::fs::FileType) -> Option<&'static str> {
    if file_type.is_file() {
        return None;
    }
    if file_type.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return Some("a FIFO");
        }
        if file_type.is_socket() {
            return Some("a socket");
        }
        if file_type.is_char_device() {
            return Some("a character device");
        }
        if file_type.is_block_device() {
            return Some("a block device");
        }
    }
    Some("a special file")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_are_refused_without_reading() {
        for (path, kind) in [("/dev/zero", "a character device"), ("/", "a directory")] {
            match read_flag_file(Path::new(path)) {
                Err(FileError::NotRegular { kind: k }) => assert_eq!(k, kind),
                other => panic!("{path}: {other:?}"),
            }
        }
        assert!(
            read_flag_file(Path::new("/no/such/flags.json"))
                .unwrap_err()
                .is_not_found()
        );
    }
}
