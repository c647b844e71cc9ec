//! Targeting: the JSON Logic dialect flagd 0.16 embeds (`diegoholiveira/jsonlogic` v3.9.1 semantics,
//! quirks included) and flagd's own operators (`fractional`, `sem_ver`, `starts_with`, `ends_with`),
//! compiled once when a document loads and evaluated without copying the context.
//!
//! What it owns: [`Rule::compile`] (JSON → operator tree, limits enforced), [`Rule::apply`] (the Go
//! library's results, errors where Go panics, null where Go returns nil), the `fractional` bucketing
//! algorithms and MurmurHash3. `docs/targeting.md` lists every rule with the test that pins it.
//!
//! What it does not do: turning a result into a variant (that is `evaluate`), `$ref` substitution (the
//! loader; a leftover `{"$ref": …}` is an unknown operator here), logging.

use std::borrow::Cow;

use serde_json::Value;

use crate::Context;

mod compile;
mod eval;
mod explain;
mod fractional;
mod ops;
mod scope;
mod semver;
mod value;

#[cfg(test)]
mod tests;

pub(crate) use explain::explain_rule;
pub use explain::{
    Detail, FractionalBucket, FractionalDetail, MAX_EXPLAIN_STEPS, MAX_PREVIEW_ITEMS, Step,
};
pub use fractional::{MAX_WEIGHT_SUM, Murmur3, murmur3_32};
pub(crate) use value::go_int;

/// Deepest JSON nesting a targeting rule may have (objects and arrays each count one level). Real rules
/// stay below 15; the bound keeps compilation and evaluation far from the stack's end.
pub const MAX_RULE_DEPTH: usize = 64;

/// Most JSON values (every scalar, array and object) one targeting rule may contain: room for `in` lists
/// of tens of thousands of keys, while bounding compile time and memory per rule.
pub const MAX_RULE_NODES: usize = 250_000;

/// Deepest evaluation recursion, counting nodes and the rules Go re-applies at run time (an `if` branch
/// or `set` value that is an object read from the context). Exceeding it is a [`TargetingError`]
/// (flagd itself would overflow its stack).
pub const MAX_EVAL_DEPTH: u32 = 160;

/// Which `fractional` bucketing algorithm to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FractionalAlgorithm {
    /// flagd 0.16 (testbed `@fractional-v2`): MurmurHash3 x86_32 over the UTF-8 string key.
    #[default]
    V2,
    /// The accepted typed-encoding ADR (testbed `@fractional-v3`): MurmurHash3 over canonical CBOR.
    V3,
}

/// What a rule is evaluated against: the caller's context plus the virtual `$flagd` object
/// (`flagKey`, `timestamp`), which is never materialised into a copy of the context. A `$flagd` key in
/// the context is shadowed, as flagd overwrites it.
#[derive(Debug, Clone, Copy)]
pub struct Data<'a> {
    /// The evaluation context.
    pub context: &'a Context,
    /// `$flagd.flagKey`.
    pub flag_key: &'a str,
    /// `$flagd.timestamp` (unix seconds).
    pub timestamp: i64,
    /// Bucketing algorithm for `fractional`.
    pub fractional: FractionalAlgorithm,
}

/// A rule that exceeds a documented limit ([`MAX_RULE_DEPTH`], [`MAX_RULE_NODES`]); the document is
/// rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

/// A failure while evaluating a rule (flagd: PARSE_ERROR): where the Go library panics (unknown
/// operator, argument of the wrong type), or the result cannot be encoded as JSON (NaN, ±Inf).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetingError(pub String);

/// A compiled targeting rule.
#[derive(Debug, Clone)]
pub struct Rule {
    root: compile::Node,
}

impl Rule {
    /// Compiles a rule. Unknown operators and other semantic problems do not fail here (flagd loads them
    /// and fails at evaluation with PARSE_ERROR); only limit violations do.
    pub fn compile(rule: &Value) -> Result<Rule, RuleError> {
        Ok(Rule {
            root: compile::compile_rule(rule)?,
        })
    }

    /// Evaluates the rule. `Ok(null)` means "no variant" (the default variant).
    pub fn apply<'a>(&'a self, data: &Data<'a>) -> Result<Cow<'a, Value>, TargetingError> {
        eval::eval(&self.root, eval::Scope::Top(data), 0)?.into_cow()
    }
}
