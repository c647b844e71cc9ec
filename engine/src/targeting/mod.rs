//! Targeting: the JSON Logic dialect flagd embeds (`diegoholiveira/jsonlogic` v3.9.1 semantics) and
//! flagd's own operators, compiled once when a document loads.
//!
//! PLACEHOLDER INTERFACE: the compiled evaluator replaces the bodies below; the signatures are the contract
//! the rest of the workspace builds on.

use std::borrow::Cow;

use serde_json::Value;

use crate::Context;

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
/// (`flagKey`, `timestamp`), which is never materialised into a copy of the context.
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

/// A rule that exceeds a documented limit (nesting depth, size); the document is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

/// A failure while evaluating a rule (flagd: PARSE_ERROR).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetingError(pub String);

/// A compiled targeting rule.
#[derive(Debug, Clone)]
pub struct Rule {
    source: Value,
}

impl Rule {
    /// Compiles a rule. Unknown operators and other semantic problems do not fail here (flagd loads them
    /// and fails at evaluation with PARSE_ERROR); only limit violations do.
    pub fn compile(rule: &Value) -> Result<Rule, RuleError> {
        Ok(Rule { source: rule.clone() })
    }

    /// Evaluates the rule.
    pub fn apply<'a>(&'a self, _data: &Data<'a>) -> Result<Cow<'a, Value>, TargetingError> {
        Err(TargetingError(format!("targeting not implemented yet: {}", self.source)))
    }
}
