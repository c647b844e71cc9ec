//! Reading an OFREP request: the body (bounded in size and time) and its `context`, merged with `-X` and `-H`
//! by the evaluation core (`crate::eval`), and the `Flagd-Selector` header.
//!
//! Body rules (flagd's Go `json.Decoder` semantics): an empty body means no context; only the first JSON value
//! is read; a body whose first value is not an object (or `null`) is an invalid context; a `context` member
//! that is not an object is ignored with a warning. The request `Content-Type` is not checked, as in flagd.

use axum::body::Body;
use flagpole_engine::{Context, Value};
use http::HeaderMap;

use crate::eval::{EvalRequest, Evaluator, HeaderMapping, RequestError};
use crate::protocols::body::{self, BodyError};

/// Why a request cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum OfrepRequestError {
    /// The body is larger than `--max-request-body`.
    #[error("request body too large")]
    TooLarge,
    /// The body did not arrive within `crate::protocols::body::BODY_READ_TIMEOUT`.
    #[error("{0}")]
    Timeout(BodyError),
    /// The body could not be read, is not JSON, or is not an object.
    #[error("Provider context is not valid")]
    InvalidContext,
    /// The `Flagd-Selector` header is invalid.
    #[error("invalid selector: {0}")]
    Selector(#[source] RequestError),
}

/// Reads the body (at most `limit` bytes, in time), then the context and the selector: the body context,
/// then `-X`, then `-H`, as on every protocol (`crate::eval::request`).
pub async fn read(
    evaluator: &Evaluator,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<EvalRequest, OfrepRequestError> {
    let bytes = body::read(headers, body, limit)
        .await
        .map_err(|error| match error {
            BodyError::TooLarge(_) => OfrepRequestError::TooLarge,
            BodyError::Timeout => OfrepRequestError::Timeout(error),
            BodyError::Failed(detail) => {
                tracing::debug!(%detail, "cannot read OFREP request body");
                OfrepRequestError::InvalidContext
            }
        })?;
    let context = body_context(&bytes)?;
    evaluator
        .read_request(headers, context, HeaderMapping::Apply)
        .map_err(OfrepRequestError::Selector)
}

/// The `context` of a request body.
pub fn body_context(bytes: &[u8]) -> Result<Context, OfrepRequestError> {
    // Only the first value counts, as with Go's json.Decoder; an empty body is no context.
    let first = serde_json::Deserializer::from_slice(bytes)
        .into_iter::<Value>()
        .next();
    let body = match first {
        None => return Ok(Context::new()),
        Some(Err(_)) => return Err(OfrepRequestError::InvalidContext),
        Some(Ok(value)) => value,
    };
    match body {
        Value::Null => Ok(Context::new()),
        Value::Object(mut fields) => match fields.remove("context") {
            None | Some(Value::Null) => Ok(Context::new()),
            Some(Value::Object(context)) => Ok(context),
            Some(_) => {
                tracing::warn!("OFREP request context is not an object; ignoring it");
                Ok(Context::new())
            }
        },
        _ => Err(OfrepRequestError::InvalidContext),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_context_follows_flagds_decoder() {
        assert!(body_context(b"").unwrap().is_empty());
        assert!(body_context(b"  \n").unwrap().is_empty());
        assert!(body_context(b"null").unwrap().is_empty());
        assert!(body_context(b"{}").unwrap().is_empty());
        assert!(body_context(br#"{"context":5}"#).unwrap().is_empty());
        let ctx = body_context(br#"{"context":{"a":1}} trailing"#).unwrap();
        assert_eq!(ctx["a"], 1);
        assert!(matches!(
            body_context(b"{"),
            Err(OfrepRequestError::InvalidContext)
        ));
        assert!(matches!(
            body_context(b"[1]"),
            Err(OfrepRequestError::InvalidContext)
        ));
        assert!(matches!(
            body_context(b"garbage"),
            Err(OfrepRequestError::InvalidContext)
        ));
    }
}
