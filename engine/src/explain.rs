//! Explaining an evaluation: the answer a real evaluation gives, and the path its targeting took
//! (`docs/admin.md#explain`).
//!
//! The answer is [`crate::evaluate()`]'s own, so an explanation never disagrees with what a client gets;
//! the path is a separate walk over the rule as written ([`Step`]), which normal evaluation never runs.

use serde_json::{Value, json};

use crate::Context;
use crate::evaluate::{EvalOptions, Outcome, evaluate};
use crate::model::{Flag, FlagState};
use crate::targeting::{Data, FractionalAlgorithm, Step, explain_rule};

/// An explained evaluation.
#[derive(Debug, Clone)]
pub struct Explanation<'f> {
    /// What evaluation answers, exactly.
    pub outcome: Outcome<'f>,
    /// The path through the targeting; `None` when targeting did not run (a disabled flag, or a flag
    /// without targeting).
    pub targeting: Option<Step>,
    /// The options the evaluation used (`$flagd.timestamp`, the bucketing).
    pub options: EvalOptions,
    /// The flag.
    pub flag: &'f Flag,
}

impl Explanation<'_> {
    /// The explanation as JSON: the answer (`reason`, `variant`, `value`, `errorCode`, `errorMessage`),
    /// why targeting did or did not run, the `$flagd` object the rule saw, and the path.
    pub fn to_json(&self) -> Value {
        let outcome = &self.outcome;
        let mut out = json!({
            "flagKey": &*self.flag.key,
            "reason": outcome.reason().as_str(),
            "variant": outcome.variant(),
            "value": match outcome {
                Outcome::Value { value, .. } => Some(*value),
                _ => None,
            },
            "defaultVariant": self.flag.default_variant.as_deref(),
            "state": &*self.flag.state_raw,
        });
        if let Outcome::Failed { error, .. } = outcome {
            out["errorCode"] = json!(error.code.as_str());
            out["errorMessage"] = json!(error.message);
        }
        let targeting = match (&self.targeting, self.flag.state) {
            (_, FlagState::Disabled) => json!({"ran": false, "why": "the flag is disabled"}),
            (None, _) => json!({"ran": false, "why": "the flag has no targeting"}),
            (Some(step), _) => json!({
                "ran": true,
                "flagd": {"flagKey": &*self.flag.key, "timestamp": self.options.timestamp},
                "fractionalAlgorithm": match self.options.fractional {
                    FractionalAlgorithm::V2 => "v2",
                    FractionalAlgorithm::V3 => "v3",
                },
                "path": step,
            }),
        };
        out["targeting"] = targeting;
        out
    }
}

/// Evaluates `flag` as [`evaluate`] does and explains the targeting's path.
pub fn explain<'f>(flag: &'f Flag, context: &Context, options: &EvalOptions) -> Explanation<'f> {
    let outcome = evaluate(flag, context, options);
    let targeting = match (&flag.raw_targeting, &flag.targeting, flag.state) {
        (Some(raw), Some(_), FlagState::Enabled) => {
            let data = Data {
                context,
                flag_key: &flag.key,
                timestamp: options.timestamp,
                fractional: options.fractional,
            };
            let rule = raw.to_value();
            Some(explain_rule(&rule, &data, flag.evaluators.as_deref()).0)
        }
        _ => None,
    };
    Explanation {
        outcome,
        targeting,
        options: *options,
        flag,
    }
}
