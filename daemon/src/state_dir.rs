//! `--state-dir`: the files that must survive a restart (`docs/admin.md#state-directory`).
//!
//! Writes are atomic: a temporary file in the same directory, written, `fsync`ed, renamed over the target,
//! and the directory `fsync`ed, so a crash leaves the old file or the new one, never half of either. A file
//! that cannot be parsed is reported and set aside (renamed to `NAME.corrupt-UNIXTIME`), never fatal and
//! never silently dropped: the daemon starts without it and the operator finds it next to the new one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest state file read, in bytes.
pub const MAX_STATE_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

/// What reading a state file found.
#[derive(Debug)]
pub enum Loaded<T> {
    /// No such file: a first start.
    Missing,
    /// The file's contents.
    Found(T),
    /// The file could not be parsed; it was renamed to `set_aside` (or could not be, see the log).
    SetAside {
        /// Where it went.
        set_aside: PathBuf,
        /// Why it could not be read.
        error: String,
    },
}

impl StateDir {
    /// Opens (creating it if needed) the state directory at `path`.
    pub fn open(path: &Path) -> io::Result<StateDir> {
        fs::create_dir_all(path)?;
        Ok(StateDir {
            path: path.to_owned(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads `name` as JSON.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Loaded<T> {
        let path = self.path.join(name);
        let text = match flagpole_engine::file::read_regular_file(&path, MAX_STATE_FILE_BYTES) {
            Ok(text) => text,
            Err(error) if error.is_not_found() => return Loaded::Missing,
            Err(error) => return self.set_aside(&path, error.to_string()),
        };
        match serde_json::from_slice(&text) {
            Ok(value) => Loaded::Found(value),
            Err(error) => self.set_aside(&path, error.to_string()),
        }
    }

    fn set_aside<T>(&self, path: &Path, error: String) -> Loaded<T> {
        // NAME.corrupt-UNIXTIME, or NAME.corrupt-UNIXTIME-N when that is taken (two in one second), so an
        // earlier corrupt file is never overwritten.
        let mut base = path.as_os_str().to_owned();
        base.push(format!(".corrupt-{}", crate::unix_now()));
        let numbered = |n: u32| {
            let mut name = base.clone();
            name.push(format!("-{n}"));
            PathBuf::from(name)
        };
        let set_aside = std::iter::once(PathBuf::from(&base))
            .chain((1..).map(numbered))
            .find(|candidate| !candidate.exists())
            .unwrap_or_else(|| PathBuf::from(&base));
        if let Err(rename) = fs::rename(path, &set_aside) {
            tracing::error!(file = %path.display(), %rename, "cannot set a corrupt state file aside");
        }
        Loaded::SetAside { set_aside, error }
    }

    /// Writes `value` as JSON to `name`, atomically.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
        if text.len() as u64 >= MAX_STATE_FILE_BYTES {
            // It could not be read back: keep the previous file instead.
            return Err(io::Error::other(format!(
                "{name} would be {} bytes, over the {MAX_STATE_FILE_BYTES}-byte limit of a state file",
                text.len()
            )));
        }
        let target = self.path.join(name);
        let temporary = self
            .path
            .join(format!(".{name}.tmp-{}", std::process::id()));
        let written = (|| {
            let mut file = File::create(&temporary)?;
            file.write_all(&text)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&temporary, &target)?;
            File::open(&self.path)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_atomically_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(&dir.path().join("state")).expect("opens");
        assert!(matches!(
            state.read_json::<Vec<u32>>("x.json"),
            Loaded::Missing
        ));
        state.write_json("x.json", &vec![1, 2]).expect("writes");
        state.write_json("x.json", &vec![3]).expect("writes again");
        assert!(matches!(state.read_json::<Vec<u32>>("x.json"), Loaded::Found(v) if v == [3]));
        // No temporary file is left behind.
        let names: Vec<String> = fs::read_dir(state.path())
            .expect("lists")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["x.json"]);
    }

    #[test]
    fn a_file_too_large_to_read_back_is_not_written_and_the_previous_one_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("opens");
        state.write_json("x.json", &"small").expect("writes");
        let huge = "x".repeat(MAX_STATE_FILE_BYTES as usize);
        let error = state.write_json("x.json", &huge).expect_err("refused");
        assert!(error.to_string().contains("limit"), "{error}");
        assert!(matches!(state.read_json::<String>("x.json"), Loaded::Found(v) if v == "small"));
    }

    #[test]
    fn a_corrupt_file_is_set_aside_not_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("opens");
        fs::write(dir.path().join("x.json"), b"{not json").expect("writes");
        match state.read_json::<Vec<u32>>("x.json") {
            Loaded::SetAside { set_aside, error } => {
                assert!(!error.is_empty());
                assert_eq!(fs::read(&set_aside).expect("kept"), b"{not json");
                assert!(!dir.path().join("x.json").exists());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            state.read_json::<Vec<u32>>("x.json"),
            Loaded::Missing
        ));
    }
}
