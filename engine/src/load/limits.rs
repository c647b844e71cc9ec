//! The bounds on one document (`docs/limits.md`): what a loader accepts before it rejects the document
//! with a [`super::LoadError`] that names the limit.

/// Largest document accepted, in bytes (64 MiB: about 200,000 typical flags).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

/// Deepest nesting of arrays and objects accepted, counted from the document root and measured after
/// `$evaluators` are inlined. The JSON and YAML parsers stop at 128 levels before this check runs.
pub const MAX_NESTING_DEPTH: usize = 128;

/// Most flags one document may define.
pub const MAX_FLAGS: usize = 250_000;

/// Most JSON values (every scalar, array and object) that `$evaluators` inlining may add to one document,
/// counted over all references after nested references are resolved. Evaluators that reference each
/// other twice per level double with every level (22 levels of a 1 KB file would be 4 million copies);
/// such a document is rejected before anything is copied. One million values is about 60 MB of JSON
/// tree, four times the largest targeting rule ([`crate::targeting::MAX_RULE_NODES`]).
pub const MAX_INLINED_NODES: usize = 1_000_000;
