//! What `flagd.evaluation.v1` and the legacy `schema.v1` share: the same RPCs and message shapes (a value
//! and variant that cannot be absent), told apart only by a few [`Rules`].
//!
//! What it owns: the v1-shaped typed answer ([`Answer`]) and how an outcome renders into it, and the
//! ResolveAll body up to package-neutral flags. What it does not do: name either package's types (each
//! service module maps [`BulkEntry`] to its own `AnyFlag` and builds its own responses) or decide the rules
//! (each service module holds its own constant).

use std::collections::HashMap;

use flagpole_engine::{ErrorCode, Outcome, Reason, Selector, TypedValue, ValueType};
use prost_types::Struct;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::Services;
use super::convert::{json_to_struct, metadata_struct};
use super::events::StreamDeadline;
use super::status::{ResolveError, grpc_status};
use super::typed::{TypedRequest, WireValue, read_request, read_typed};
use crate::eval::HeaderMapping;
use crate::eval::metadata::ResponseMetadata;
use crate::eval::resolve::{Resolved, resolve_bulk_typed, resolve_typed};

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

/// One ResolveAll entry, before a package converts it into its `AnyFlag`.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkEntry {
    /// The reason string (`ERROR` for a failed flag; the error code is not sent).
    pub reason: &'static str,
    /// The variant, `""` when there is none.
    pub variant: String,
    /// The value; the zero value of the flag's type when disabled or failed.
    pub value: BulkValue,
    /// Selector reflection ⊕ flag metadata.
    pub metadata: Struct,
}

/// ResolveAll's answer before a package builds its response.
#[derive(Debug)]
pub struct AllFlags<F> {
    /// The request's selector (v1 reflects it as the response metadata).
    pub selector: Selector,
    /// Every included flag, keyed by flag key, as the package's `AnyFlag`.
    pub flags: HashMap<String, F>,
}

/// ResolveAll with `rules`: every selected flag with flagd's inclusion rules (`crate::eval::resolve`):
/// disabled flags come back with a zero value and reason DISABLED, failed flags with a zero value and reason
/// ERROR; each entry is converted into the package's `AnyFlag` with `From<BulkEntry>`.
pub fn all_flags<F: From<BulkEntry>>(
    services: &Services,
    rules: Rules,
    metadata: MetadataMap,
    context: Option<Struct>,
) -> Result<AllFlags<F>, Status> {
    let evaluator = services.evaluator();
    let request = read_request(services, metadata, context, rules.headers)?;
    let snapshot = evaluator.snapshot();
    let mut flags = HashMap::new();
    for resolved in resolve_bulk_typed(evaluator, &snapshot, &request) {
        evaluator.record(&resolved.flag.key, &resolved.outcome);
        let reason = resolved.outcome.reason().as_str();
        let (variant, value) = match resolved.outcome {
            Outcome::Value { variant, value, .. } => {
                (variant.to_owned(), BulkValue::from_typed(value))
            }
            // A type mismatch keeps the variant targeting chose, as flagd's ResolveAll does
            // (`docs/protocols.md#resolveall-v1-and-schemav1`).
            Outcome::Failed { variant, .. } => (
                variant.unwrap_or_default().to_owned(),
                BulkValue::zero(resolved.ty),
            ),
            Outcome::Disabled => (String::new(), BulkValue::zero(resolved.ty)),
            // Not reachable for flags with a default variant; left out like any default-less flag.
            Outcome::CodeDefault => continue,
        };
        let metadata = ResponseMetadata::of_flag(&request.selector, &resolved.flag.metadata);
        let entry = BulkEntry {
            reason,
            variant,
            value,
            metadata: metadata_struct(metadata),
        };
        flags.insert(resolved.flag.key.to_string(), F::from(entry));
    }
    Ok(AllFlags {
        selector: request.selector,
        flags,
    })
}

/// Implements `From<BulkEntry>` for a package's `AnyFlag` (its value oneof named after the comma); with a
/// trailing `metadata`, each flag carries its metadata (v1), without, it has no such field (schema.v1).
///
/// ```text
/// any_flag!(AnyFlag, any_flag::Value, metadata);
/// ```
macro_rules! any_flag {
    ($flag:ident, $value:ty $(, $metadata:ident)?) => {
        impl From<$crate::protocols::grpc::v1_answers::BulkEntry> for $flag {
            fn from(entry: $crate::protocols::grpc::v1_answers::BulkEntry) -> Self {
                use $crate::protocols::grpc::v1_answers::BulkValue;
                $flag {
                    reason: entry.reason.to_owned(),
                    variant: entry.variant,
                    $($metadata: Some(entry.metadata),)?
                    value: Some(match entry.value {
                        BulkValue::Bool(b) => <$value>::BoolValue(b),
                        BulkValue::String(s) => <$value>::StringValue(s),
                        BulkValue::Double(f) => <$value>::DoubleValue(f),
                        BulkValue::Object(o) => <$value>::ObjectValue(o),
                    }),
                }
            }
        }
    };
}
pub(super) use any_flag;

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
