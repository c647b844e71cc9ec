//! What every resolver returns, and how it becomes the SDK's typed `ResolutionDetails` or an
//! `EvaluationError`, in one place: error codes (flagd provider specification), and the "no value" outcome.
//!
//! The "no value" outcome: a disabled flag (reason DISABLED) and a flag without a default variant (reason
//! DEFAULT) resolve to the caller's code default. The SDK 0.3 provider interface never sees the caller's
//! default, so the provider returns an error that carries the reason ([`no_value_reason`] recognises it);
//! the SDK then hands the caller its own default, which is the right value.

use flagpole_engine::ErrorCode;
use open_feature::provider::ResolutionDetails;
use open_feature::{EvaluationError, EvaluationErrorCode, EvaluationReason, StructValue, Value};

/// The message of the error that stands for "no value: use the code default" (see [`no_value_reason`]).
pub const NO_VALUE_MESSAGE: &str = "no value: the flag resolved to the caller's default";

/// The error code text of an evaluation attempted after the provider went FATAL.
pub const PROVIDER_FATAL: &str = "PROVIDER_FATAL";

/// The error code text flagd's specification calls GENERAL.
pub const GENERAL: &str = "GENERAL";

/// A resolver's answer before typing.
#[derive(Debug, Clone)]
pub(crate) enum Resolved {
    /// A value with its details.
    Value(ResolutionDetails<Value>),
    /// No value (disabled, or no default variant): the caller's default applies.
    NoValue { reason: EvaluationReason },
}

/// When `error` is the provider's "no value" outcome, the reason it stands for (DISABLED or DEFAULT): the
/// caller's default is then the correct result, and not an error.
///
/// ```
/// # use open_feature::{EvaluationError, EvaluationReason};
/// # fn handle(err: EvaluationError) {
/// match flagpole_provider::no_value_reason(&err) {
///     Some(EvaluationReason::Disabled) => { /* the flag is switched off: the default is intended */ }
///     Some(_) => { /* no default variant: the default is intended */ }
///     None => { /* a real error */ }
/// }
/// # }
/// ```
pub fn no_value_reason(error: &EvaluationError) -> Option<EvaluationReason> {
    if error.message.as_deref() != Some(NO_VALUE_MESSAGE) {
        return None;
    }
    match &error.code {
        EvaluationErrorCode::General(code) if code == "DISABLED" => {
            Some(EvaluationReason::Disabled)
        }
        EvaluationErrorCode::General(code) if code == "DEFAULT" => Some(EvaluationReason::Default),
        _ => None,
    }
}

pub(crate) fn no_value_error(reason: &EvaluationReason) -> EvaluationError {
    EvaluationError {
        code: EvaluationErrorCode::General(reason.to_string()),
        message: Some(NO_VALUE_MESSAGE.into()),
    }
}

pub(crate) fn not_ready(message: &str) -> EvaluationError {
    EvaluationError {
        code: EvaluationErrorCode::ProviderNotReady,
        message: Some(message.to_owned()),
    }
}

pub(crate) fn fatal() -> EvaluationError {
    EvaluationError {
        code: EvaluationErrorCode::General(PROVIDER_FATAL.into()),
        message: Some("the provider gave up after a fatal status code".into()),
    }
}

/// An engine error code as an OpenFeature error.
pub(crate) fn engine_error(code: ErrorCode, message: String) -> EvaluationError {
    let code = match code {
        ErrorCode::FlagNotFound => EvaluationErrorCode::FlagNotFound,
        ErrorCode::TypeMismatch => EvaluationErrorCode::TypeMismatch,
        ErrorCode::ParseError => EvaluationErrorCode::ParseError,
        ErrorCode::General => EvaluationErrorCode::General(GENERAL.into()),
    };
    EvaluationError {
        code,
        message: Some(message),
    }
}

/// A gRPC status from the evaluation service as an OpenFeature error (flagd provider specification):
/// NOT_FOUND → FLAG_NOT_FOUND, INVALID_ARGUMENT → TYPE_MISMATCH, DATA_LOSS → PARSE_ERROR,
/// UNAVAILABLE → PROVIDER_NOT_READY, anything else → GENERAL.
pub(crate) fn status_error(status: &tonic::Status) -> EvaluationError {
    let code = match status.code() {
        tonic::Code::NotFound => EvaluationErrorCode::FlagNotFound,
        tonic::Code::InvalidArgument => EvaluationErrorCode::TypeMismatch,
        tonic::Code::DataLoss => EvaluationErrorCode::ParseError,
        tonic::Code::Unavailable => EvaluationErrorCode::ProviderNotReady,
        _ => EvaluationErrorCode::General(GENERAL.into()),
    };
    EvaluationError {
        code,
        message: Some(format!("{:?}: {}", status.code(), status.message())),
    }
}

/// The typed accessors of the SDK.
pub(crate) trait FromValue: Sized {
    fn from_value(value: Value) -> Option<Self>;
}

impl FromValue for bool {
    fn from_value(value: Value) -> Option<Self> {
        value.as_bool()
    }
}

impl FromValue for i64 {
    fn from_value(value: Value) -> Option<Self> {
        value.as_i64()
    }
}

impl FromValue for f64 {
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Float(f) => Some(f),
            Value::Int(i) => Some(i as f64),
            _ => None,
        }
    }
}

impl FromValue for String {
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

impl FromValue for StructValue {
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Struct(s) => Some(s),
            _ => None,
        }
    }
}

/// A resolver answer as the SDK's typed result.
pub(crate) fn typed<T: FromValue>(
    resolved: Resolved,
) -> Result<ResolutionDetails<T>, EvaluationError> {
    match resolved {
        Resolved::NoValue { reason } => Err(no_value_error(&reason)),
        Resolved::Value(details) => {
            let value = T::from_value(details.value).ok_or_else(|| EvaluationError {
                code: EvaluationErrorCode::TypeMismatch,
                message: Some("the flag's value is not of the requested type".into()),
            })?;
            Ok(ResolutionDetails {
                value,
                variant: details.variant,
                reason: details.reason,
                flag_metadata: details.flag_metadata,
            })
        }
    }
}
