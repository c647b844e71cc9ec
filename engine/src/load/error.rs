//! Why a document was rejected, and where in its text.

use std::fmt;

use super::limits::{MAX_DOCUMENT_BYTES, MAX_FLAGS, MAX_INLINED_NODES, MAX_NESTING_DEPTH};
use crate::schema::Warning;
use crate::targeting::RuleError;

/// A position in the document text; line 0 means "not known".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str("unknown position")
        } else {
            write!(f, "line {}, column {}", self.line, self.column)
        }
    }
}

/// Why a whole document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The text is not valid JSON/YAML (this includes nesting beyond the parser's recursion limit).
    #[error("syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The document is larger than [`MAX_DOCUMENT_BYTES`].
    #[error("document is {bytes} bytes, more than the limit of {MAX_DOCUMENT_BYTES}")]
    TooLarge {
        /// The document's size.
        bytes: usize,
    },
    /// After `$evaluators` inlining, the document nests deeper than [`MAX_NESTING_DEPTH`].
    #[error("document nests deeper than {MAX_NESTING_DEPTH} levels (after inlining $evaluators)")]
    TooDeep,
    /// Inlining `$evaluators` would add more than [`MAX_INLINED_NODES`] JSON values to the document.
    #[error(
        "inlining $evaluators would add more than {MAX_INLINED_NODES} JSON values to the document \
         (evaluator `{evaluator}` alone expands to {} values)",
        display_count(*expanded)
    )]
    InliningTooLarge {
        /// The evaluator whose reference went over the limit.
        evaluator: String,
        /// How many JSON values that one reference expands to (saturating at `usize::MAX`).
        expanded: usize,
    },
    /// The document defines more than [`MAX_FLAGS`] flags.
    #[error("document defines {count} flags, more than the limit of {MAX_FLAGS}")]
    TooManyFlags {
        /// How many flags it defines.
        count: usize,
    },
    /// The document (or a field that must be an object or array) has the wrong JSON type.
    #[error("malformed document at {at}: {path} {message}")]
    Malformed {
        /// JSON pointer of the offending value.
        path: String,
        /// What is wrong.
        message: String,
        /// Where (the enclosing flag when the value itself cannot be located).
        at: Location,
    },
    /// The document has no `flags` key (an empty file, `{}`).
    #[error("document has no `flags`")]
    MissingFlags,
    /// An evaluator in `$evaluators` is empty (its JSON is shorter than 3 characters).
    #[error("evaluator `{name}` is empty")]
    EmptyEvaluator {
        /// The evaluator's name.
        name: String,
    },
    /// A flag names a `defaultVariant` that is not one of its variants.
    #[error("default variant {variant:?} isn't a valid variant of flag `{flag}` (at {at})")]
    BadDefaultVariant {
        /// The flag key.
        flag: String,
        /// The default variant named.
        variant: String,
        /// Where the flag is defined.
        at: Location,
    },
    /// A targeting rule exceeds a limit of the targeting compiler.
    #[error("targeting of flag `{flag}` (at {at}) is rejected: {source}")]
    Rule {
        /// The flag key.
        flag: String,
        /// Where the flag is defined.
        at: Location,
        /// The compiler's reason.
        #[source]
        source: RuleError,
    },
    /// Strict mode: the document violates the flagd schema.
    #[error("{} schema violation(s), first: {}", violations.len(), violations.first().map(ToString::to_string).unwrap_or_default())]
    Schema {
        /// Every violation found.
        violations: Vec<Warning>,
    },
}

fn display_count(count: usize) -> String {
    if count == usize::MAX {
        "more than 2^64".to_owned()
    } else {
        count.to_string()
    }
}
