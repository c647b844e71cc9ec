//! What `flagd.evaluation.v1` and the legacy `schema.v1` share: the same RPCs and message shapes (a value
//! and variant that cannot be absent), told apart only by a few [`Rules`].
//!
//! What it owns: the v1-shaped typed answer ([`Answer`]) and how an outcome renders into it, and what
//! ResolveAll answers per flag ([`BulkEntry`]). What it does not do: name either package's types (each
//! service module converts [`Answer`] into its responses; `bulk` writes [`BulkEntry`] as either package's
//! `AnyFlag`) or decide the rules (each service module holds its own constant).

use flagpole_engine::{ErrorCode, Outcome, Reason, Selector, TypedValue, ValueType};
use flagpole_proto::codec::Encoded;
use prost_types::Struct;
use serde_json::{Map, Value};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::Services;
use super::bulk::{Shape, encode_response};
use super::convert::metadata_struct;
use super::events::StreamDeadline;
use super::status::{ResolveError, grpc_status};
use super::typed::{TypedRequest, WireValue, read_request, read_typed};
use crate::eval::HeaderMapping;
use crate::eval::metadata::ResponseMetadata;
use crate::eval::resolve::{BulkResolved, Resolved, resolve_bulk_typed, resolve_typed};

/// Where v1 and schema.v1 differ (`docs/protocols.md#answers-per-protocol`), beyond ResolveAll's metadata.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Whether `-H` header mappings apply.
    pub headers: HeaderMapping,
    /// What a typed resolve answers for a code default.
    pub code_default: CodeDefault,
    /// Whether `--stream-deadline` ends EventStreams.
    pub deadline: StreamDeadline,
}

/// What a typed resolve answers when the flag has no default variant and targeting did not pick one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeDefault {
    /// FLAG_NOT_FOUND (v1 cannot say "no value").
    NotFound,
    /// A success with the zero value, an empty variant and reason DEFAULT (schema.v1).
    ZeroValue,
}

/// A typed answer in the v1 shape; each package converts it into its response type (`typed_rpcs!`).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    /// The value, or its zero value when the flag is disabled or a code default applied.
    pub value: T,
    /// The reason string.
    pub reason: String,
    /// The variant, `""` when there is none.
    pub variant: String,
    /// Selector reflection ⊕ flag metadata (`None` when the flag was not found).
    pub metadata: Option<Struct>,
}

impl<T: WireValue> Answer<T> {
    /// The zero value with an empty variant and `reason`.
    fn zero_value(reason: Reason, metadata: Option<Struct>) -> Self {
        Answer {
            value: T::default(),
            reason: reason.as_str().to_owned(),
            variant: String::new(),
            metadata,
        }
    }
}

/// A typed RPC with `rules`: one handler body for every typed RPC of both packages.
pub fn typed<Q, R>(
    services: &Services,
    rules: Rules,
    request: Request<Q>,
) -> Result<Response<R>, Status>
where
    Q: TypedRequest,
    R: From<Answer<Q::Value>>,
{
    let evaluator = services.evaluator();
    let (key, request) = read_typed(services, rules.headers, request)?;
    let snapshot = evaluator.snapshot();
    let resolved = resolve_typed(evaluator, &snapshot, &key, Q::Value::TYPE, &request);
    evaluator.record(&key, &resolved.outcome);
    let answer = render::<Q::Value>(&resolved, &request.selector, rules.code_default)?;
    Ok(Response::new(answer.into()))
}

/// Renders a typed resolution: a disabled flag is a success with the zero value, an empty variant and reason
/// DISABLED (`docs/protocols.md#answers-per-protocol`); a code default as `code_default` says; a failure is
/// its status.
fn render<T: WireValue>(
    resolved: &Resolved<'_>,
    selector: &Selector,
    code_default: CodeDefault,
) -> Result<Answer<T>, Status> {
    let metadata = || resolved.metadata(selector).map(metadata_struct);
    match &resolved.outcome {
        Outcome::Value {
            selection,
            variant,
            value,
        } => Ok(Answer {
            value: T::from_typed(*value),
            reason: selection.reason().as_str().to_owned(),
            variant: (*variant).to_owned(),
            metadata: metadata(),
        }),
        Outcome::Disabled => Ok(Answer::zero_value(Reason::Disabled, metadata())),
        Outcome::CodeDefault => match code_default {
            CodeDefault::NotFound => Err(grpc_status(ResolveError::Evaluation(
                ErrorCode::FlagNotFound,
            ))),
            CodeDefault::ZeroValue => Ok(Answer::zero_value(Reason::Default, metadata())),
        },
        Outcome::Failed { error, .. } => Err(grpc_status(ResolveError::Evaluation(error.code))),
    }
}

/// A ResolveAll value (flagd's `AnyFlag` oneof, shared by v1 and schema.v1), borrowed from the snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BulkValue<'s> {
    /// `bool_value`.
    Bool(bool),
    /// `string_value`.
    String(&'s str),
    /// `double_value` (integers too).
    Double(f64),
    /// `object_value`; `None` is the empty object (the zero value).
    Object(Option<&'s Map<String, Value>>),
}

impl<'s> BulkValue<'s> {
    fn zero(ty: ValueType) -> Self {
        match ty {
            ValueType::Bool => BulkValue::Bool(false),
            ValueType::String => BulkValue::String(""),
            ValueType::Int | ValueType::Float => BulkValue::Double(0.0),
            ValueType::Object => BulkValue::Object(None),
        }
    }

    fn from_typed(value: TypedValue<'s>) -> Self {
        match value {
            TypedValue::Bool(b) => BulkValue::Bool(b),
            TypedValue::String(s) => BulkValue::String(s),
            TypedValue::Int(i) => BulkValue::Double(i as f64),
            TypedValue::Float(f) => BulkValue::Double(f),
            TypedValue::Object(map) => BulkValue::Object(Some(map)),
        }
    }
}

/// One ResolveAll entry, before `bulk` writes it as a package's `AnyFlag`.
#[derive(Debug, Clone, Copy)]
pub struct BulkEntry<'s> {
    /// The flag key.
    pub key: &'s str,
    /// The reason string (`ERROR` for a failed flag; the error code is not sent).
    pub reason: &'static str,
    /// The variant, `""` when there is none.
    pub variant: &'s str,
    /// The value; the zero value of the flag's type when disabled or failed.
    pub value: BulkValue<'s>,
    /// Selector reflection ⊕ flag metadata.
    pub metadata: ResponseMetadata<'s>,
}

/// What ResolveAll answers for one resolved flag, with flagd's rules
/// (`docs/protocols.md#resolveall-v1-and-schemav1`): a disabled flag comes back with a zero value and
/// reason DISABLED, a failed flag with a zero value and reason ERROR (a type mismatch keeps the variant
/// targeting chose, as flagd's ResolveAll does), and a code default is left out.
fn bulk_entry<'s>(resolved: &BulkResolved<'s>, selector: &'s Selector) -> Option<BulkEntry<'s>> {
    let (variant, value) = match resolved.outcome {
        Outcome::Value { variant, value, .. } => (variant, BulkValue::from_typed(value)),
        Outcome::Failed { variant, .. } => {
            (variant.unwrap_or_default(), BulkValue::zero(resolved.ty))
        }
        Outcome::Disabled => ("", BulkValue::zero(resolved.ty)),
        // Not reachable for flags with a default variant; left out like any default-less flag.
        Outcome::CodeDefault => return None,
    };
    Some(BulkEntry {
        key: &resolved.flag.key,
        reason: resolved.outcome.reason().as_str(),
        variant,
        value,
        metadata: ResponseMetadata::of_flag(selector, &resolved.flag.metadata),
    })
}

/// ResolveAll in `shape`: every selected flag (`crate::eval::resolve`), counted, answered as
/// [`bulk_entry`] says and written as protobuf by `bulk`.
pub fn resolve_all(
    services: &Services,
    shape: Shape,
    metadata: MetadataMap,
    context: Option<Struct>,
) -> Result<Encoded, Status> {
    let evaluator = services.evaluator();
    let request = read_request(services, metadata, context, shape.rules.headers)?;
    let snapshot = evaluator.snapshot();
    let resolved = resolve_bulk_typed(evaluator, &snapshot, &request);
    for flag in &resolved {
        evaluator.record(&flag.flag.key, &flag.outcome);
    }
    let entries = resolved
        .iter()
        .filter_map(|flag| bulk_entry(flag, &request.selector));
    Ok(encode_response(
        shape,
        &request.selector,
        resolved.len(),
        entries,
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use flagpole_engine::{EvalError, Flag, Format, LoadOptions, parse_document};
    use tonic::Code;

    use super::*;
    use crate::eval::resolve::TypedOutcome;

    fn flag() -> Arc<Flag> {
        let text = r#"{"flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}}"#;
        let loaded = parse_document(text, Format::Json, &LoadOptions::default()).unwrap();
        loaded.flags[0].clone()
    }

    fn answer<T: WireValue>(
        outcome: TypedOutcome<'_>,
        code_default: CodeDefault,
    ) -> Result<Answer<T>, Status> {
        let flag = flag();
        let resolved = Resolved {
            outcome,
            flag: Some(&flag),
        };
        render::<T>(&resolved, &Selector::All, code_default)
    }

    #[test]
    fn a_value_keeps_reason_variant_and_metadata() {
        let outcome = Outcome::Value {
            selection: flagpole_engine::Selection::TargetingMatch,
            variant: "on",
            value: TypedValue::Bool(true),
        };
        let answer = answer::<bool>(outcome, CodeDefault::NotFound);
        assert_eq!(
            answer.ok(),
            Some(Answer {
                value: true,
                reason: "TARGETING_MATCH".to_owned(),
                variant: "on".to_owned(),
                metadata: Some(Struct::default()),
            })
        );
    }

    #[test]
    fn a_disabled_flag_is_the_zero_value_with_reason_disabled_under_both_rules() {
        for code_default in [CodeDefault::NotFound, CodeDefault::ZeroValue] {
            let answer = answer::<String>(Outcome::Disabled, code_default);
            assert_eq!(
                answer.ok(),
                Some(Answer {
                    value: String::new(),
                    reason: "DISABLED".to_owned(),
                    variant: String::new(),
                    metadata: Some(Struct::default()),
                })
            );
        }
    }

    #[test]
    fn a_code_default_is_flag_not_found_on_v1() {
        let answer = answer::<i64>(Outcome::CodeDefault, CodeDefault::NotFound);
        assert_eq!(answer.err().map(|s| s.code()), Some(Code::NotFound));
    }

    #[test]
    fn a_code_default_is_the_zero_value_with_reason_default_on_schema_v1() {
        let answer = answer::<f64>(Outcome::CodeDefault, CodeDefault::ZeroValue);
        assert_eq!(
            answer.ok(),
            Some(Answer {
                value: 0.0,
                reason: "DEFAULT".to_owned(),
                variant: String::new(),
                metadata: Some(Struct::default()),
            })
        );
    }

    #[test]
    fn a_failure_is_its_status_under_both_rules() {
        for code_default in [CodeDefault::NotFound, CodeDefault::ZeroValue] {
            let answer = answer::<bool>(
                Outcome::failed(EvalError {
                    code: ErrorCode::TypeMismatch,
                    message: String::new(),
                }),
                code_default,
            );
            assert_eq!(answer.err().map(|s| s.code()), Some(Code::InvalidArgument));
        }
    }
}
