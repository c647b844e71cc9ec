//! Protocol-neutral single-flag and bulk resolution: look the flag up, evaluate it, apply the typed accessor,
//! build the metadata, record metrics. Each protocol module renders an [`Outcome`] with its own fallbacks.

use flagpole_engine::{
    Context, ErrorCode, EvalError, EvalOptions, Flag, Selector, Snapshot, TypedValue, ValueType,
};
use prost_types::Struct;

use super::Services;
use super::convert::json_to_struct;
use super::index::{lookup, selected};
use super::request::{context_keys, flag_metadata};

/// What a typed resolve produced, before a protocol renders it: the engine's outcome with the value
/// converted for the requested type.
pub type Outcome<'f> = flagpole_engine::Outcome<'f, TypedValue<'f>>;

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
        let outcome = Outcome::Failed(EvalError::not_found(key));
        record(services, key, &outcome);
        trace(key, context, &outcome);
        return Resolution {
            outcome,
            metadata: None,
        };
    };
    let outcome = evaluate_typed(services, flag, ty, context);
    record(services, key, &outcome);
    trace(key, context, &outcome);
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
    flagpole_engine::evaluate(flag, context, &options).typed(ty)
}

/// Records an evaluation in the metrics (flagd records v1, v2, schema.v1 and ResolveAll).
pub fn record(services: &Services, key: &str, outcome: &Outcome<'_>) {
    services.metrics().record_evaluation(
        key,
        outcome.variant().unwrap_or_default(),
        outcome.reason().as_str(),
        outcome.error_code().map(ErrorCode::as_str),
    );
}

/// A short label for logs.
fn outcome_label(outcome: &Outcome<'_>) -> &'static str {
    match outcome {
        Outcome::CodeDefault => "DEFAULT (code default)",
        Outcome::Failed(error) => error.code.as_str(),
        other => other.reason().as_str(),
    }
}

fn trace(key: &str, context: &Context, outcome: &Outcome<'_>) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let outcome = outcome_label(outcome);
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
        let Some(ty) = ValueType::of_default_variant(flag) else {
            continue;
        };
        let key: &str = &flag.key;
        let outcome = evaluate_typed(services, flag, ty, context);
        record(services, key, &outcome);
        let reason = outcome.reason().as_str();
        let (variant, value) = match outcome {
            Outcome::Value { variant, value, .. } => {
                (variant.to_owned(), BulkValue::from_typed(value))
            }
            Outcome::Disabled | Outcome::Failed(_) => (String::new(), BulkValue::zero(ty)),
            // Not reachable for flags with a default variant; left out like any default-less flag.
            Outcome::CodeDefault => continue,
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
