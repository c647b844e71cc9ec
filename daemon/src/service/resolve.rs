//! Protocol-neutral single-flag and bulk resolution: look the flag up, evaluate it, apply the typed accessor,
//! build the metadata, record metrics. Each protocol module renders an [`Outcome`] with its own fallbacks.

use flagpole_engine::evaluate::{TypedValue, typed};
use flagpole_engine::{
    Context, ErrorCode, EvalOptions, Evaluation, Flag, Reason, Selector, Snapshot, ValueType,
};
use prost_types::Struct;

use super::Services;
use super::convert::json_to_struct;
use super::index::{lookup, selected};
use super::request::{context_keys, flag_metadata};

/// What a typed resolve produced, before a protocol renders it.
#[derive(Debug)]
pub enum Outcome<'f> {
    /// A variant was selected and its value has the requested type.
    Value {
        /// STATIC, TARGETING_MATCH or DEFAULT.
        reason: Reason,
        /// The variant name.
        variant: &'f str,
        /// The converted value.
        value: TypedValue<'f>,
    },
    /// The flag is disabled (a success without a value).
    Disabled,
    /// The flag has no default variant and targeting did not pick one: the caller's code default applies.
    CodeDefault,
    /// Evaluation failed.
    Failed(ErrorCode),
}

/// An outcome with its response metadata (`None` when the flag was not found).
#[derive(Debug)]
pub struct Resolution<'f> {
    /// What happened.
    pub outcome: Outcome<'f>,
    /// Selector reflection ⊕ flag metadata.
    pub metadata: Option<Struct>,
}

/// Evaluates one flag for a typed RPC.
pub fn resolve<'s>(
    services: &Services,
    snapshot: &'s Snapshot,
    key: &str,
    ty: ValueType,
    selector: &Selector,
    context: &Context,
) -> Resolution<'s> {
    let Some(flag) = lookup(snapshot, key, selector) else {
        record(
            services,
            key,
            "",
            Reason::Error,
            Some(ErrorCode::FlagNotFound),
        );
        trace(key, context, "FLAG_NOT_FOUND");
        return Resolution {
            outcome: Outcome::Failed(ErrorCode::FlagNotFound),
            metadata: None,
        };
    };
    let outcome = evaluate_typed(services, flag, ty, context);
    match &outcome {
        Outcome::Value {
            reason, variant, ..
        } => record(services, key, variant, *reason, None),
        Outcome::Disabled => record(services, key, "", Reason::Disabled, None),
        Outcome::CodeDefault => record(services, key, "", Reason::Default, None),
        Outcome::Failed(code) => record(services, key, "", Reason::Error, Some(*code)),
    }
    trace(key, context, outcome_label(&outcome));
    Resolution {
        outcome,
        metadata: Some(flag_metadata(selector, flag)),
    }
}

/// Evaluates `flag` and applies the typed accessor (no metrics, no lookup).
pub fn evaluate_typed<'f>(
    services: &Services,
    flag: &'f Flag,
    ty: ValueType,
    context: &Context,
) -> Outcome<'f> {
    let options = EvalOptions {
        fractional: services.config().fractional,
        ..EvalOptions::now()
    };
    let evaluation: Evaluation<'f> = flagpole_engine::evaluate(flag, context, &options);
    if let Some(error) = &evaluation.error {
        return Outcome::Failed(error.code);
    }
    if evaluation.reason == Reason::Disabled {
        return Outcome::Disabled;
    }
    match (evaluation.variant, evaluation.value) {
        (Some(variant), Some(value)) => match typed(value, ty) {
            Some(value) => Outcome::Value {
                reason: evaluation.reason,
                variant,
                value,
            },
            None => Outcome::Failed(ErrorCode::TypeMismatch),
        },
        _ => Outcome::CodeDefault,
    }
}

/// The value type ResolveAll uses for a flag: the type of its default variant's value (integers are floats,
/// as flagd sees every number as float64). `None` when the flag has no default variant or its value is null
/// or an array: such flags are left out of ResolveAll.
pub fn bulk_type(flag: &Flag) -> Option<ValueType> {
    let value = flag.variants.get(flag.default_variant.as_deref()?)?;
    match value {
        flagpole_engine::Value::Bool(_) => Some(ValueType::Bool),
        flagpole_engine::Value::String(_) => Some(ValueType::String),
        flagpole_engine::Value::Number(_) => Some(ValueType::Float),
        flagpole_engine::Value::Object(_) => Some(ValueType::Object),
        flagpole_engine::Value::Null | flagpole_engine::Value::Array(_) => None,
    }
}

/// Records an evaluation in the metrics (flagd records v1, v2, schema.v1 and ResolveAll).
pub fn record(
    services: &Services,
    key: &str,
    variant: &str,
    reason: Reason,
    error: Option<ErrorCode>,
) {
    services.metrics().record_evaluation(
        key,
        variant,
        reason.as_str(),
        error.map(ErrorCode::as_str),
    );
}

/// A short label for logs.
pub fn outcome_label(outcome: &Outcome<'_>) -> &'static str {
    match outcome {
        Outcome::Value { reason, .. } => reason.as_str(),
        Outcome::Disabled => "DISABLED",
        Outcome::CodeDefault => "DEFAULT (code default)",
        Outcome::Failed(code) => code.as_str(),
    }
}

fn trace(key: &str, context: &Context, outcome: &str) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(flag_key = key, context_keys = ?context_keys(context), outcome, "resolved flag");
    }
}

/// A typed RPC's value type on the wire, with its zero value (`Default`) for v1's "no value" answers.
pub trait WireValue: Default + Sized {
    /// The value type to request from the engine.
    const TYPE: ValueType;
    /// Converts the engine's typed value (always of [`Self::TYPE`]).
    fn from_typed(value: TypedValue<'_>) -> Self;
}

impl WireValue for bool {
    const TYPE: ValueType = ValueType::Bool;
    fn from_typed(value: TypedValue<'_>) -> Self {
        matches!(value, TypedValue::Bool(true))
    }
}

impl WireValue for String {
    const TYPE: ValueType = ValueType::String;
    fn from_typed(value: TypedValue<'_>) -> Self {
        match value {
            TypedValue::String(s) => s.to_owned(),
            _ => String::new(),
        }
    }
}

impl WireValue for i64 {
    const TYPE: ValueType = ValueType::Int;
    fn from_typed(value: TypedValue<'_>) -> Self {
        match value {
            TypedValue::Int(i) => i,
            _ => 0,
        }
    }
}

impl WireValue for f64 {
    const TYPE: ValueType = ValueType::Float;
    fn from_typed(value: TypedValue<'_>) -> Self {
        match value {
            TypedValue::Float(f) => f,
            _ => 0.0,
        }
    }
}

/// An object value; the zero value is an absent Struct (Go's nil `*structpb.Struct`).
impl WireValue for Option<Struct> {
    const TYPE: ValueType = ValueType::Object;
    fn from_typed(value: TypedValue<'_>) -> Self {
        match value {
            TypedValue::Object(map) => Some(json_to_struct(map)),
            _ => None,
        }
    }
}

/// A ResolveAll value (flagd's `AnyFlag` oneof, shared by v1 and schema.v1).
#[derive(Debug, Clone, PartialEq)]
pub enum BulkValue {
    /// `bool_value`.
    Bool(bool),
    /// `string_value`.
    String(String),
    /// `double_value` (integers too).
    Double(f64),
    /// `object_value`.
    Object(Struct),
}

impl BulkValue {
    fn zero(ty: ValueType) -> Self {
        match ty {
            ValueType::Bool => BulkValue::Bool(false),
            ValueType::String => BulkValue::String(String::new()),
            ValueType::Int | ValueType::Float => BulkValue::Double(0.0),
            ValueType::Object => BulkValue::Object(Struct::default()),
        }
    }

    fn from_typed(value: TypedValue<'_>) -> Self {
        match value {
            TypedValue::Bool(b) => BulkValue::Bool(b),
            TypedValue::String(s) => BulkValue::String(s.to_owned()),
            TypedValue::Int(i) => BulkValue::Double(i as f64),
            TypedValue::Float(f) => BulkValue::Double(f),
            TypedValue::Object(map) => BulkValue::Object(json_to_struct(map)),
        }
    }
}

/// One ResolveAll entry.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkEntry {
    /// The flag key.
    pub key: String,
    /// The reason string (`ERROR` for a failed flag; the error code is not sent).
    pub reason: &'static str,
    /// The variant, `""` when there is none.
    pub variant: String,
    /// The value; the zero value of the flag's type when disabled or failed.
    pub value: BulkValue,
    /// Selector reflection ⊕ flag metadata.
    pub metadata: Struct,
}

/// Evaluates every selected flag for ResolveAll with flagd's inclusion rules (`docs/protocols.md#resolveall-v1-and-schemav1`): flags without
/// a usable default variant are left out, disabled flags come back with a zero value and reason DISABLED,
/// failed flags with a zero value and reason ERROR. Sorted by key.
pub fn resolve_all(
    services: &Services,
    snapshot: &Snapshot,
    selector: &Selector,
    context: &Context,
) -> Vec<BulkEntry> {
    let mut entries = Vec::new();
    for flag in selected(snapshot, selector) {
        let Some(ty) = bulk_type(flag) else { continue };
        let key: &str = &flag.key;
        let (reason, variant, value) = match evaluate_typed(services, flag, ty, context) {
            Outcome::Value {
                reason,
                variant,
                value,
            } => {
                record(services, key, variant, reason, None);
                (
                    reason.as_str(),
                    variant.to_owned(),
                    BulkValue::from_typed(value),
                )
            }
            Outcome::Disabled => {
                record(services, key, "", Reason::Disabled, None);
                (
                    Reason::Disabled.as_str(),
                    String::new(),
                    BulkValue::zero(ty),
                )
            }
            // Not reachable for flags with a default variant; left out like any default-less flag.
            Outcome::CodeDefault => continue,
            Outcome::Failed(code) => {
                record(services, key, "", Reason::Error, Some(code));
                (Reason::Error.as_str(), String::new(), BulkValue::zero(ty))
            }
        };
        entries.push(BulkEntry {
            key: key.to_owned(),
            reason,
            variant,
            value,
            metadata: flag_metadata(selector, flag),
        });
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(flags = entries.len(), context_keys = ?context_keys(context), "resolved all flags");
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use flagpole_engine::{FlagState, Value};
    use serde_json::json;

    fn flag(default: Option<&str>, variants: Value) -> Flag {
        let Value::Object(variants) = variants else {
            unreachable!()
        };
        Flag {
            key: Arc::from("f"),
            state: FlagState::Enabled,
            state_raw: Arc::from("ENABLED"),
            variants: variants.into(),
            default_variant: default.map(Arc::from),
            targeting: None,
            raw_targeting: None,
            metadata: Default::default(),
            flag_set_id: None,
        }
    }

    #[test]
    fn bulk_type_follows_the_default_variant() {
        assert_eq!(
            bulk_type(&flag(Some("a"), json!({"a": true}))),
            Some(ValueType::Bool)
        );
        assert_eq!(
            bulk_type(&flag(Some("a"), json!({"a": 3}))),
            Some(ValueType::Float)
        );
        assert_eq!(
            bulk_type(&flag(Some("a"), json!({"a": {"x": 1}}))),
            Some(ValueType::Object)
        );
        assert_eq!(bulk_type(&flag(Some("a"), json!({"a": [1]}))), None);
        assert_eq!(bulk_type(&flag(Some("a"), json!({"a": null}))), None);
        assert_eq!(bulk_type(&flag(None, json!({"a": true}))), None);
    }
}
