//! What `flagd.evaluation.v1` and the legacy `schema.v1` share: the same RPCs and message shapes (a value
//! and variant that cannot be absent), told apart only by a few [`Rules`].
//!
//! What it owns: the v1-shaped typed answer ([`Answer`]) and how an outcome renders into it, and the
//! ResolveAll body up to package-neutral flags. What it does not do: name either package's types (each
//! service module maps [`BulkEntry`] to its own `AnyFlag` and builds its own responses) or decide the rules
//! (each service module holds its own constant).

use std::collections::HashMap;

use flagpole_engine::{ErrorCode, Reason, Selector};
use prost_types::Struct;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::Services;
use super::events::StreamDeadline;
use super::handlers::{TypedRequest, resolve_typed};
use super::request::{HeaderMapping, read_eval_request};
use super::resolve::{BulkEntry, Outcome, Resolution, WireValue, resolve_all};
use super::status::{ResolveError, grpc_status};

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
    let answer = resolve_typed(services, rules.headers, request, |resolution| {
        render::<Q::Value>(resolution, rules.code_default)
    })?;
    Ok(Response::new(answer.into()))
}

/// Renders a typed resolution: a disabled flag is a success with the zero value, an empty variant and reason
/// DISABLED (`docs/protocols.md#answers-per-protocol`); a code default as `code_default` says; a failure is its status.
fn render<T: WireValue>(
    resolution: Resolution<'_>,
    code_default: CodeDefault,
) -> Result<Answer<T>, Status> {
    let metadata = resolution.metadata;
    match resolution.outcome {
        Outcome::Value {
            selection,
            variant,
            value,
        } => Ok(Answer {
            value: T::from_typed(value),
            reason: selection.reason().as_str().to_owned(),
            variant: variant.to_owned(),
            metadata,
        }),
        Outcome::Disabled => Ok(Answer::zero_value(Reason::Disabled, metadata)),
        Outcome::CodeDefault => match code_default {
            CodeDefault::NotFound => Err(grpc_status(ResolveError::Evaluation(
                ErrorCode::FlagNotFound,
            ))),
            CodeDefault::ZeroValue => Ok(Answer::zero_value(Reason::Default, metadata)),
        },
        Outcome::Failed(error) => Err(grpc_status(ResolveError::Evaluation(error.code))),
    }
}

/// ResolveAll's answer before a package builds its response.
#[derive(Debug)]
pub struct AllFlags<F> {
    /// The request's selector (v1 reflects it as the response metadata).
    pub selector: Selector,
    /// Every included flag, keyed by flag key, as the package's `AnyFlag`.
    pub flags: HashMap<String, F>,
}

/// ResolveAll with `rules`: every selected flag (flagd's inclusion rules, `resolve::resolve_all`), each
/// converted into the package's `AnyFlag` with `From<BulkEntry>` (which gets the entry with its key taken
/// out).
pub fn all_flags<F: From<BulkEntry>>(
    services: &Services,
    rules: Rules,
    headers: &MetadataMap,
    context: Option<Struct>,
) -> Result<AllFlags<F>, Status> {
    let request = read_eval_request(services.config(), headers, context, rules.headers)
        .map_err(|e| grpc_status(e.into()))?;
    let snapshot = services.store().snapshot();
    let flags = resolve_all(services, &snapshot, &request.selector, &request.context)
        .into_iter()
        .map(|mut entry| (std::mem::take(&mut entry.key), F::from(entry)))
        .collect();
    Ok(AllFlags {
        selector: request.selector,
        flags,
    })
}

/// Implements `From<BulkEntry>` for a package's `AnyFlag` (its value oneof named after the comma); with a
/// trailing `metadata`, each flag carries its metadata (v1), without, it has no such field (schema.v1). The
/// entry's key is not read (`all_flags` takes it out first).
///
/// ```text
/// any_flag!(AnyFlag, any_flag::Value, metadata);
/// ```
macro_rules! any_flag {
    ($flag:ident, $value:ty $(, $metadata:ident)?) => {
        impl From<$crate::service::resolve::BulkEntry> for $flag {
            fn from(entry: $crate::service::resolve::BulkEntry) -> Self {
                use $crate::service::resolve::BulkValue;
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
    use flagpole_engine::{EvalError, TypedValue};
    use tonic::Code;

    use super::*;

    fn resolution(outcome: Outcome<'_>) -> Resolution<'_> {
        Resolution {
            outcome,
            metadata: Some(Struct::default()),
        }
    }

    #[test]
    fn a_value_keeps_reason_variant_and_metadata() {
        let outcome = Outcome::Value {
            selection: flagpole_engine::Selection::TargetingMatch,
            variant: "on",
            value: TypedValue::Bool(true),
        };
        let answer = render::<bool>(resolution(outcome), CodeDefault::NotFound);
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
            let answer = render::<String>(resolution(Outcome::Disabled), code_default);
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
        let answer = render::<i64>(resolution(Outcome::CodeDefault), CodeDefault::NotFound);
        assert_eq!(answer.err().map(|s| s.code()), Some(Code::NotFound));
    }

    #[test]
    fn a_code_default_is_the_zero_value_with_reason_default_on_schema_v1() {
        let answer = render::<f64>(resolution(Outcome::CodeDefault), CodeDefault::ZeroValue);
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
            let answer = render::<bool>(
                resolution(Outcome::Failed(EvalError {
                    code: ErrorCode::TypeMismatch,
                    message: String::new(),
                })),
                code_default,
            );
            assert_eq!(answer.err().map(|s| s.code()), Some(Code::InvalidArgument));
        }
    }
}
