//! OFREP's JSON shapes (`docs/protocols.md#ofrep-port-8016`); the statuses and error texts they carry are
//! `failure`'s.
//!
//! Success objects leave `value` out when there is none (disabled, code default, a `null` variant) and
//! `variant` out when empty; `metadata` is always present. Numbers are written the way flagd's Go encoder
//! writes a `float64`: an integral value has no fraction (`3`, not `3.0`).

use flagpole_engine::Outcome;
use flagpole_engine::go_json::GoJson;
use http::StatusCode;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::failure::OfrepFailure;
use crate::eval::metadata::{MetadataValue, ResponseMetadata};

/// Response metadata written as a JSON object with [`GoJson`] values, straight from the view.
#[derive(Debug, Clone, Copy)]
pub struct GoMetadata<'a>(pub ResponseMetadata<'a>);

impl Serialize for GoMetadata<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        let mut result = Ok(());
        self.0.for_each(|key, value| {
            if result.is_ok() {
                result = match value {
                    MetadataValue::Text(text) => map.serialize_entry(key, text),
                    MetadataValue::Json(value) => map.serialize_entry(key, &GoJson(value)),
                };
            }
        });
        result?;
        map.end()
    }
}

/// A successful evaluation (field order as flagd writes it).
#[derive(Debug, Serialize)]
pub struct Success<'a> {
    /// Absent for disabled flags, code defaults and `null` variants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<GoJson<'a>>,
    /// The flag key.
    pub key: &'a str,
    /// STATIC, TARGETING_MATCH, DEFAULT or DISABLED.
    pub reason: &'static str,
    /// Absent when empty.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub variant: &'a str,
    /// Selector reflection ⊕ flag metadata.
    pub metadata: GoMetadata<'a>,
}

/// A failed evaluation of one flag (OFREP's `evaluationFailure`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationFailure<'a> {
    /// The flag key.
    pub key: &'a str,
    /// The OpenFeature error code.
    pub error_code: &'static str,
    /// flagd's message.
    pub error_details: String,
    /// Selector reflection ⊕ flag metadata.
    pub metadata: GoMetadata<'a>,
}

/// A request-level error: a bad body or selector. `key` is left out on bulk requests.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestFailure<'a> {
    /// The flag key of a single-flag request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    /// `INVALID_CONTEXT` or `GENERAL`.
    pub error_code: &'static str,
    /// What is wrong.
    pub error_details: String,
}

/// Only `errorDetails` (the 413 body, flagd's `generalErrorResponse`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DetailsOnly<'a> {
    /// What is wrong.
    pub error_details: &'a str,
}

/// One entry of a bulk response.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Entry<'a> {
    /// Evaluated.
    Success(Success<'a>),
    /// Failed.
    Failure(EvaluationFailure<'a>),
}

/// A bulk response.
#[derive(Debug, Serialize)]
pub struct Bulk<'a> {
    /// Every selected flag, sorted by key.
    pub flags: Vec<Entry<'a>>,
    /// The selector reflection.
    pub metadata: GoMetadata<'a>,
    /// The change streams (`sse::advertisement`), with `--ofrep-sse-enabled`.
    #[serde(rename = "eventStreams", skip_serializing_if = "Option::is_none")]
    pub event_streams: Option<serde_json::Value>,
}

/// Renders one evaluation: a success object, or a failure with its status.
pub fn entry<'a>(
    key: &'a str,
    outcome: &Outcome<'a>,
    metadata: ResponseMetadata<'a>,
) -> (StatusCode, Entry<'a>) {
    let (value, variant) = match outcome {
        Outcome::Failed { error, .. } => {
            let answer = OfrepFailure::Evaluation(error.code).answer(Some(key));
            return (
                answer.status,
                Entry::Failure(EvaluationFailure {
                    key,
                    error_code: error.code.as_str(),
                    error_details: answer.details,
                    metadata: GoMetadata(metadata),
                }),
            );
        }
        // A `null` variant value is left out like no value.
        Outcome::Value { variant, value, .. } => {
            ((!value.is_null()).then_some(GoJson(value)), *variant)
        }
        Outcome::Disabled | Outcome::CodeDefault => (None, ""),
    };
    (
        StatusCode::OK,
        Entry::Success(Success {
            value,
            key,
            reason: outcome.reason().as_str(),
            variant,
            metadata: GoMetadata(metadata),
        }),
    )
}
