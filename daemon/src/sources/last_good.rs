//! Last-known-good payloads of remote sources, kept in the state directory (`--state-dir`).
//!
//! What it owns: saving each good payload of an http, grpc or kubernetes source (on the blocking pool,
//! atomically, after the flags are published) and reading it back at start. A source whose first fetch
//! fails at start then serves the saved flags, marked stale (`/readyz`, `flagpole_source_stale`, a
//! warning), instead of stopping the start; its first fresh payload replaces them. File sources have none:
//! the file is already on disk. See `docs/sources.md#last-known-good`.
//!
//! Rules: a payload is restored only at start, before the source has delivered anything, so a saved
//! payload never replaces a fresher one; it is keyed by the source's identity (a source whose URL
//! changed starts without one); the file names the source with its credentials removed; a corrupt file
//! is set aside (`StateDir`), never fatal.
//!
//! What it does not do: fetch, retry or decide readiness (the sources do).

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use flagpole_engine::Format;

use crate::state_dir::{Loaded, StateDir};

/// One source's last-known-good file in the state directory.
#[derive(Debug, Clone)]
pub struct LastGood {
    state: StateDir,
    /// The file name: `last-good-` and a hash of the identity.
    name: String,
    /// The identity without credentials, written into the file for people.
    shown: String,
}

/// What a last-known-good file holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    /// The source, credentials removed.
    source: String,
    /// When the payload was received (unix seconds).
    saved_at: u64,
    /// `json` or `yaml`.
    format: SavedFormat,
    /// The payload as received.
    payload: String,
}

/// [`Format`] as written in the file.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SavedFormat {
    Json,
    Yaml,
}

impl From<Format> for SavedFormat {
    fn from(format: Format) -> Self {
        match format {
            Format::Json => SavedFormat::Json,
            Format::Yaml => SavedFormat::Yaml,
        }
    }
}

impl From<SavedFormat> for Format {
    fn from(format: SavedFormat) -> Self {
        match format {
            SavedFormat::Json => Format::Json,
            SavedFormat::Yaml => Format::Yaml,
        }
    }
}

/// A payload read back from the state directory.
#[derive(Debug)]
pub struct Restored {
    /// The payload.
    pub payload: String,
    /// Its format.
    pub format: Format,
    /// When it was received (unix seconds).
    pub saved_at: u64,
}

impl LastGood {
    /// The last-known-good file of the source `identity` in `state`.
    pub fn new(state: &StateDir, identity: &str) -> Self {
        let digest: [u8; 20] = Sha1::digest(identity.as_bytes()).into();
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        LastGood {
            state: state.clone(),
            name: format!("last-good-{hex}.json"),
            shown: flagpole_engine::redact_credentials(identity),
        }
    }

    /// The file name in the state directory.
    pub fn file_name(&self) -> &str {
        &self.name
    }

    /// Saves a payload that has just loaded. Blocking: call it on the blocking pool. A failure is logged
    /// (the flags are served all the same; only a restart while the source is down would miss them).
    pub fn save(&self, payload: &str, format: Format) {
        let saved = Saved {
            source: self.shown.clone(),
            saved_at: crate::unix_now(),
            format: format.into(),
            payload: payload.to_owned(),
        };
        if let Err(error) = self.state.write_json(&self.name, &saved) {
            tracing::warn!(source = %self.shown, file = %self.name, %error, "cannot save the source's last known good flags");
        }
    }

    /// The saved payload, if there is a readable one. Blocking.
    pub fn load(&self) -> Option<Restored> {
        match self.state.read_json::<Saved>(&self.name) {
            Loaded::Missing => None,
            Loaded::Found(saved) => Some(Restored {
                payload: saved.payload,
                format: saved.format.into(),
                saved_at: saved.saved_at,
            }),
            Loaded::SetAside { set_aside, error } => {
                tracing::error!(source = %self.shown, set_aside = %set_aside.display(), %error, "the source's last known good file is corrupt; set aside");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_payload_reads_back_under_a_name_without_the_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("state dir");
        let identity = "https://user:secret@flags.example/f.yaml";
        let last_good = LastGood::new(&state, identity);
        assert!(last_good.load().is_none(), "nothing saved yet");
        last_good.save("flags: {}\n", Format::Yaml);
        let restored = last_good.load().expect("saved");
        assert_eq!(
            (restored.payload.as_str(), restored.format),
            ("flags: {}\n", Format::Yaml)
        );
        assert!(restored.saved_at > 0);
        let text = std::fs::read_to_string(dir.path().join(last_good.file_name())).expect("file");
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("flags.example"), "{text}");
        // Another identity has its own file.
        assert_ne!(
            LastGood::new(&state, "https://flags.example/other.json").file_name(),
            last_good.file_name()
        );
    }

    #[test]
    fn a_corrupt_file_is_set_aside_and_restores_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("state dir");
        let last_good = LastGood::new(&state, "grpc://hub:8015");
        std::fs::write(dir.path().join(last_good.file_name()), "{\"payload\": 1").expect("write");
        assert!(last_good.load().is_none());
        // A format it does not know is as corrupt as broken JSON.
        std::fs::write(
            dir.path().join(last_good.file_name()),
            r#"{"source": "s", "savedAt": 1, "format": "xml", "payload": "<flags/>"}"#,
        )
        .expect("write");
        assert!(last_good.load().is_none());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        // Both kept, though set aside within the same second.
        assert_eq!(
            names.iter().filter(|n| n.contains(".corrupt-")).count(),
            2,
            "{names:?}"
        );
    }
}
