//! # flagpole-engine
//!
//! flagd flag definitions and targeting, evaluated exactly as flagd 0.16 does, in a pure synchronous crate.
//!
//! What it owns:
//! - [`load`]: parsing flag documents (JSON and YAML, the `flags` map and the daemon's array form,
//!   `$evaluators`, flag-set metadata) into immutable [`Flag`]s, with schema warnings and [`LoadError`]s that
//!   carry line and column.
//! - [`targeting`]: the JSON Logic dialect flagd embeds, compiled once per document, plus flagd's own
//!   operators (`fractional`, `sem_ver`, `starts_with`, `ends_with`).
//! - [`mod@evaluate`]: flagd's resolution algorithm (reasons, error codes, variant selection, typed access).
//! - [`Snapshot`]: an immutable, cheaply shareable index of the flags of one or more sources, with flagd's
//!   selector and priority rules.
//!
//! - [`go_json`]: JSON written as flagd's Go code writes it (float64 numbers, sorted keys).
//! - [`lint`]: a semantic lint of loaded flags for `flagpole validate`.
//! - [`mod@file`]: a bounded read of a flag file that refuses FIFOs and devices, the one piece of I/O here,
//!   so that every reader of flag files refuses the same inputs.
//!
//! What it deliberately does not do: other I/O, watching, async, wire formats. The daemon and the in-process
//! provider embed it and convert at their edges.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod evaluate;
pub mod explain;
pub mod file;
pub mod go_json;
pub mod lint;
pub mod load;
pub mod model;
pub mod schema;
pub mod snapshot;
pub mod targeting;

pub use evaluate::{
    ErrorCode, EvalError, EvalOptions, Outcome, Reason, Selection, TypedValue, ValueType, evaluate,
};
pub use explain::{Explanation, explain};
pub use load::{
    Format, LoadError, LoadOptions, Loaded, Location, Warning, check_document, parse_document,
};
pub use model::{Flag, FlagState, Metadata, RawJson, Variants};
pub use snapshot::{
    ChangeKind, Record, Selector, SelectorError, Snapshot, SourceFlags, redact_credentials,
};
pub use targeting::FractionalAlgorithm;

/// The JSON value type used for variants, metadata, contexts and targeting results.
pub use serde_json::Value;

/// An evaluation context: the attributes a client sends with a request.
pub type Context = serde_json::Map<String, Value>;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
