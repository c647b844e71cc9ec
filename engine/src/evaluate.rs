//! flagd's resolution algorithm, from a loaded [`Flag`] and a context to a reason, variant and value.
//!
//! The order of checks, the way a targeting result selects a variant (flagd JSON-encodes the result with
//! Go's `encoding/json` and strips every `"`), and the typed access rules follow flagd 0.16
//! (`core/pkg/evaluator/json.go`). Wire-specific renderings (v1's FLAG_NOT_FOUND for a code default, v2's
//! omitted value) are left to each protocol: an [`Outcome`] says what happened, not how to send it.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

use crate::Context;
use crate::go_json::write_go_json;
use crate::model::{Flag, FlagState};
use crate::targeting::{Data, FractionalAlgorithm, go_int};

/// Why an evaluation produced its result (flagd's reason strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No targeting; the default variant.
    Static,
    /// Targeting selected a variant.
    TargetingMatch,
    /// Targeting returned null (the default variant), or there is no default variant (code default).
    Default,
    /// The flag is disabled; no value.
    Disabled,
    /// Evaluation failed; see [`Outcome::Failed`].
    Error,
}

impl Reason {
    /// The reason string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Default => "DEFAULT",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// OpenFeature error codes the engine produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No flag with that key (in the selection).
    FlagNotFound,
    /// The variant's value is not of the requested type.
    TypeMismatch,
    /// Targeting could not be evaluated (unknown operator, unresolved `$ref`, bad rule).
    ParseError,
    /// Targeting returned something that is not a variant name.
    General,
}

impl ErrorCode {
    /// The error code string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::General => "GENERAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Options that apply to every evaluation.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// `$flagd.timestamp`: the evaluation time in unix seconds.
    pub timestamp: i64,
    /// Which `fractional` bucketing to use.
    pub fractional: FractionalAlgorithm,
}

impl EvalOptions {
    /// Options with the current wall-clock time and flagd's default bucketing.
    pub fn now() -> Self {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        EvalOptions {
            timestamp,
            fractional: FractionalAlgorithm::default(),
        }
    }
}

/// The typed accessors of the evaluation APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// `ResolveBoolean`.
    Bool,
    /// `ResolveString`.
    String,
    /// `ResolveInt` (a float value truncates).
    Int,
    /// `ResolveFloat` (an integer value converts).
    Float,
    /// `ResolveObject` (a JSON object; arrays are a type mismatch).
    Object,
}

/// A value converted for a typed accessor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TypedValue<'f> {
    /// A boolean.
    Bool(bool),
    /// A string.
    String(&'f str),
    /// An integer: the float64 flagd sees, converted as Go's `int64(f)` on amd64 does (truncated; NaN and
    /// values outside int64's range give its minimum, `docs/compatibility.md#evaluation`).
    Int(i64),
    /// A float.
    Float(f64),
    /// A JSON object.
    Object(&'f Map<String, Value>),
}

impl<'f> TypedValue<'f> {
    /// Converts a variant value for a typed accessor as flagd does (Go type assertions on float64-only JSON);
    /// `None` when the value is not of that type.
    pub fn of(value: &'f Value, ty: ValueType) -> Option<Self> {
        match (ty, value) {
            (ValueType::Bool, Value::Bool(b)) => Some(TypedValue::Bool(*b)),
            (ValueType::String, Value::String(s)) => Some(TypedValue::String(s)),
            (ValueType::Int, Value::Number(n)) => n.as_f64().map(|f| TypedValue::Int(go_int(f))),
            (ValueType::Float, Value::Number(n)) => n.as_f64().map(TypedValue::Float),
            (ValueType::Object, Value::Object(m)) => Some(TypedValue::Object(m)),
            _ => None,
        }
    }
}

impl ValueType {
    /// The type flagd's bulk evaluation (ResolveAll) gives a flag: the type of its default variant's value,
    /// every number a float (flagd sees float64 only). `None` when the flag has no default variant or its
    /// value is `null` or an array: bulk evaluation leaves such flags out
    /// (`docs/protocols.md#resolveall-v1-and-schemav1`).
    pub fn of_default_variant(flag: &Flag) -> Option<Self> {
        match flag.variants.get(flag.default_variant.as_deref()?)? {
            Value::Bool(_) => Some(ValueType::Bool),
            Value::String(_) => Some(ValueType::String),
            Value::Number(_) => Some(ValueType::Float),
            Value::Object(_) => Some(ValueType::Object),
            Value::Null | Value::Array(_) => None,
        }
    }
}

/// An evaluation error: the code, and a message for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    /// The OpenFeature error code.
    pub code: ErrorCode,
    /// Human-readable detail (never sent where flagd sends a fixed message).
    pub message: String,
}

impl EvalError {
    /// The error for a key that is not in the (selected) flags.
    pub fn not_found(key: &str) -> Self {
        EvalError {
            code: ErrorCode::FlagNotFound,
            message: format!("flag `{key}` does not exist"),
        }
    }
}

/// Why a variant was selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Selection {
    /// The flag has no targeting: its default variant.
    Static,
    /// Targeting named the variant.
    TargetingMatch,
    /// Targeting returned `null`: the default variant.
    Default,
}

impl Selection {
    /// The reason this selection is reported with.
    pub fn reason(self) -> Reason {
        match self {
            Selection::Static => Reason::Static,
            Selection::TargetingMatch => Reason::TargetingMatch,
            Selection::Default => Reason::Default,
        }
    }
}

/// What evaluating one flag produced: one of four cases, each carrying exactly what it has. `V` is the
/// variant's value: the JSON value from [`evaluate`], or a [`TypedValue`] after [`Outcome::typed`].
///
/// Protocols render it; how each case looks on each wire (v1 has no "no value", v2 and OFREP leave the value
/// out) is theirs to decide (`docs/protocols.md#answers-per-protocol`).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<'f, V = &'f Value> {
    /// A variant was selected.
    Value {
        /// Why it was.
        selection: Selection,
        /// Its name.
        variant: &'f str,
        /// Its value.
        value: V,
    },
    /// The flag is disabled: reason DISABLED, no value; targeting was not run.
    Disabled,
    /// The flag has no default variant and targeting picked none: reason DEFAULT, no value, the caller's
    /// code default applies (v1 answers FLAG_NOT_FOUND, `docs/protocols.md#answers-per-protocol`).
    CodeDefault,
    /// Evaluation failed: reason ERROR.
    Failed {
        /// Why.
        error: EvalError,
        /// The variant targeting selected, when the failure came after it: a typed accessor's TYPE_MISMATCH
        /// (flagd's ResolveAll keeps it beside reason ERROR). `None` for every other failure.
        variant: Option<&'f str>,
    },
}

impl<'f, V> Outcome<'f, V> {
    /// The reason reported for this outcome.
    pub fn reason(&self) -> Reason {
        match self {
            Outcome::Value { selection, .. } => selection.reason(),
            Outcome::Disabled => Reason::Disabled,
            Outcome::CodeDefault => Reason::Default,
            Outcome::Failed { .. } => Reason::Error,
        }
    }

    /// The selected variant of a successful evaluation (a failed one's is in [`Outcome::Failed`]).
    pub fn variant(&self) -> Option<&'f str> {
        match self {
            Outcome::Value { variant, .. } => Some(variant),
            _ => None,
        }
    }

    /// The error code of a failed evaluation.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Outcome::Failed { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// A failure before any variant was selected.
    pub fn failed(error: EvalError) -> Self {
        Outcome::Failed {
            error,
            variant: None,
        }
    }

    fn error(code: ErrorCode, message: String) -> Self {
        Outcome::failed(EvalError { code, message })
    }
}

impl<'f> Outcome<'f> {
    /// Applies a typed accessor: a selected value is converted, and a value of another type turns the
    /// outcome into a TYPE_MISMATCH failure. The other cases carry no value and pass through.
    pub fn typed(self, ty: ValueType) -> Outcome<'f, TypedValue<'f>> {
        match self {
            Outcome::Value {
                selection,
                variant,
                value,
            } => match TypedValue::of(value, ty) {
                Some(value) => Outcome::Value {
                    selection,
                    variant,
                    value,
                },
                None => Outcome::Failed {
                    error: EvalError {
                        code: ErrorCode::TypeMismatch,
                        message: format!("variant {variant:?} is not of type {ty:?}"),
                    },
                    variant: Some(variant),
                },
            },
            Outcome::Disabled => Outcome::Disabled,
            Outcome::CodeDefault => Outcome::CodeDefault,
            Outcome::Failed { error, variant } => Outcome::Failed { error, variant },
        }
    }
}

/// Evaluates `flag` for `context` with flagd's algorithm.
pub fn evaluate<'f>(flag: &'f Flag, context: &Context, options: &EvalOptions) -> Outcome<'f> {
    if flag.state == FlagState::Disabled {
        return Outcome::Disabled;
    }
    let Some(rule) = &flag.targeting else {
        return default_variant(flag, Selection::Static);
    };
    let data = Data {
        context,
        flag_key: &flag.key,
        timestamp: options.timestamp,
        fractional: options.fractional,
    };
    let result = match rule.apply(&data) {
        Ok(result) => result,
        Err(e) => return Outcome::error(ErrorCode::ParseError, e.to_string()),
    };
    if result.is_null() {
        return default_variant(flag, Selection::Default);
    }
    let name = variant_text(&result);
    match flag.variants.get_key_value(name.as_ref()) {
        Some((variant, value)) => Outcome::Value {
            selection: Selection::TargetingMatch,
            variant,
            value,
        },
        None => Outcome::error(
            ErrorCode::General,
            format!(
                "targeting returned {name:?}, which is not a variant of flag `{}`",
                flag.key
            ),
        ),
    }
}

fn default_variant(flag: &Flag, selection: Selection) -> Outcome<'_> {
    let Some(name) = &flag.default_variant else {
        return Outcome::CodeDefault;
    };
    match flag.variants.get_key_value(name.as_ref()) {
        Some((variant, value)) => Outcome::Value {
            selection,
            variant,
            value,
        },
        // The loader rejects documents whose default variant is not a variant.
        None => Outcome::error(
            ErrorCode::General,
            format!("default variant {name:?} is not a variant"),
        ),
    }
}

/// The variant name a targeting result selects: Go's JSON encoding of the result (HTML-escaping `<`, `>`,
/// `&`; float64 numbers) with every `"` removed. So `true` selects `"true"`, `1` selects `"1"`.
pub fn variant_text(result: &Value) -> Cow<'_, str> {
    match result {
        Value::String(s) if !s.chars().any(needs_escape) => Cow::Borrowed(s.as_str()),
        Value::Bool(true) => Cow::Borrowed("true"),
        Value::Bool(false) => Cow::Borrowed("false"),
        Value::Null => Cow::Borrowed("null"),
        other => {
            let mut out = String::new();
            write_go_json(other, &mut out);
            out.retain(|c| c != '"');
            Cow::Owned(out)
        }
    }
}

fn needs_escape(c: char) -> bool {
    matches!(c, '"' | '\\' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}') || c < ' '
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn variant_text_strips_quotes_after_go_encoding() {
        assert_eq!(variant_text(&json!(true)), "true");
        assert_eq!(variant_text(&json!(1)), "1");
        assert_eq!(variant_text(&json!(2.50)), "2.5");
        assert_eq!(variant_text(&json!("on")), "on");
        assert_eq!(variant_text(&json!("a\"b")), "a\\b");
        assert_eq!(variant_text(&json!("a<b")), "a\\u003cb");
        assert_eq!(variant_text(&json!({"b": 1, "a": "x"})), "{a:x,b:1}");
        assert_eq!(variant_text(&json!([1, "x"])), "[1,x]");
    }

    fn flag(default: Option<&str>, state: FlagState, targeting: Option<Value>) -> Flag {
        let mut document =
            json!({"variants": {"on": true, "off": false}, "state": state_text(state)});
        if let Some(default) = default {
            document["defaultVariant"] = json!(default);
        }
        if let Some(targeting) = targeting {
            document["targeting"] = targeting;
        }
        let text = json!({"flags": {"f": document}}).to_string();
        let loaded =
            crate::parse_document(&text, crate::Format::Json, &Default::default()).unwrap();
        (*loaded.flags[0]).clone()
    }

    fn state_text(state: FlagState) -> &'static str {
        match state {
            FlagState::Enabled => "ENABLED",
            FlagState::Disabled => "DISABLED",
        }
    }

    #[test]
    fn each_outcome_carries_its_reason_and_only_its_data() {
        let options = EvalOptions::now();
        let ctx = Context::new();
        let disabled = flag(Some("on"), FlagState::Disabled, None);
        let outcome = evaluate(&disabled, &ctx, &options);
        assert_eq!(outcome, Outcome::Disabled);
        assert_eq!(
            (outcome.reason(), outcome.variant()),
            (Reason::Disabled, None)
        );

        let code_default = flag(None, FlagState::Enabled, None);
        let outcome = evaluate(&code_default, &ctx, &options);
        assert_eq!(outcome, Outcome::CodeDefault);
        assert_eq!(outcome.reason(), Reason::Default);

        let fallback = flag(
            Some("off"),
            FlagState::Enabled,
            Some(json!({"if": [false, "on"]})),
        );
        let outcome = evaluate(&fallback, &ctx, &options);
        assert_eq!(outcome.reason(), Reason::Default);
        assert_eq!(outcome.variant(), Some("off"));

        let stray = flag(Some("off"), FlagState::Enabled, Some(json!("nope")));
        let outcome = evaluate(&stray, &ctx, &options);
        assert_eq!(outcome.reason(), Reason::Error);
        assert_eq!(outcome.error_code(), Some(ErrorCode::General));
    }

    #[test]
    fn a_typed_accessor_of_another_type_is_a_type_mismatch() {
        let options = EvalOptions::now();
        let f = flag(Some("on"), FlagState::Enabled, None);
        let outcome = evaluate(&f, &Context::new(), &options);
        assert_eq!(
            outcome.clone().typed(ValueType::Bool),
            Outcome::Value {
                selection: Selection::Static,
                variant: "on",
                value: TypedValue::Bool(true),
            }
        );
        let mismatch = outcome.typed(ValueType::String);
        assert_eq!(mismatch.error_code(), Some(ErrorCode::TypeMismatch));
        assert_eq!(mismatch.variant(), None);
        // The selected variant stays with the failure (flagd's ResolveAll sends it).
        assert!(matches!(
            mismatch,
            Outcome::Failed {
                variant: Some("on"),
                ..
            }
        ));
        assert_eq!(
            Outcome::<'_, &Value>::Disabled.typed(ValueType::String),
            Outcome::Disabled
        );
    }

    #[test]
    fn int_accessor_truncates_and_float_accepts_integers() {
        assert_eq!(
            TypedValue::of(&json!(3.99), ValueType::Int),
            Some(TypedValue::Int(3))
        );
        assert_eq!(
            TypedValue::of(&json!(-3.99), ValueType::Int),
            Some(TypedValue::Int(-3))
        );
        assert_eq!(
            TypedValue::of(&json!(3), ValueType::Float),
            Some(TypedValue::Float(3.0))
        );
        assert_eq!(TypedValue::of(&json!([1]), ValueType::Object), None);
        assert_eq!(TypedValue::of(&json!("1"), ValueType::Int), None);
        // Beyond int64: Go's int64(f) on amd64 gives the minimum, whichever the sign.
        assert_eq!(
            TypedValue::of(&json!(1e21), ValueType::Int),
            Some(TypedValue::Int(i64::MIN))
        );
        assert_eq!(
            TypedValue::of(&json!(-1e21), ValueType::Int),
            Some(TypedValue::Int(i64::MIN))
        );
        assert_eq!(
            TypedValue::of(&json!(9.2e18), ValueType::Int),
            Some(TypedValue::Int(9_200_000_000_000_000_000))
        );
    }
}
