//! Loading flag documents (JSON or YAML) into [`Flag`]s.
//!
//! PLACEHOLDER INTERFACE: the loader replaces the bodies below; the signatures are the contract.

use std::sync::Arc;

use crate::model::{Flag, Metadata};

/// The syntax of a flag document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// YAML (converted to the same model).
    Yaml,
}

impl Format {
    /// The format flagd infers from a file name: `.json`, `.yaml`, `.yml`; anything else is unsupported.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// How strictly to load.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Reject documents with schema violations instead of warning (flagd warns).
    pub strict: bool,
}

/// A schema violation that did not stop the document from loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The flag it concerns, if any.
    pub flag: Option<String>,
    /// JSON pointer into the document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A loaded document.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The flags, in document order.
    pub flags: Vec<Arc<Flag>>,
    /// The flag-set metadata (already merged into each flag's metadata).
    pub metadata: Metadata,
    /// Schema violations (only when not strict).
    pub warnings: Vec<Warning>,
}

/// Why a whole document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The text is not valid JSON/YAML.
    #[error("syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// Anything else (placeholder).
    #[error("{0}")]
    Invalid(String),
}

/// Parses and validates a flag document.
pub fn parse_document(_text: &str, _format: Format, _options: &LoadOptions) -> Result<Loaded, LoadError> {
    Err(LoadError::Invalid("loader not implemented yet".into()))
}
