//! Integration tests of `flagpole-engine`'s loading, validation and snapshot (one test binary, one module
//! per concern). Shared data comes from `FLAGD_TESTBED_DIR` and `FLAGD_SCHEMAS_DIR` (defaults: the pinned
//! testbed and schemas `scripts/fetch-testbed.sh` unpacks under `target/flagd-data/open-feature-flagd-0.3.0/`); a missing directory fails the test
//! that needs it.

mod explain;
mod load;
mod no_panic;
mod schema_fixtures;
mod snapshot;

use std::path::{Path, PathBuf};

use flagpole_engine::{Format, LoadOptions, Loaded, parse_document};

fn shared_dir(var: &str, default: &str) -> PathBuf {
    let dir = match std::env::var_os(var) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target/flagd-data/open-feature-flagd-0.3.0")
            .join(default),
    };
    assert!(dir.is_dir(), "{} does not exist (set {var})", dir.display());
    dir
}

pub fn testbed_dir() -> PathBuf {
    shared_dir("FLAGD_TESTBED_DIR", "flagd-testbed")
}

pub fn schemas_dir() -> PathBuf {
    shared_dir("FLAGD_SCHEMAS_DIR", "schemas")
}

/// Loads a JSON document that must load.
pub fn load_json(text: &str) -> Loaded {
    parse_document(text, Format::Json, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Every `*.json` file directly in `dir`, sorted.
pub fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}
