//! Reading an OFREP request: the body (bounded in size and time) and its `context`, merged with `-X` and `-H`
//! by the evaluation services' context assembly, and the `Flagd-Selector` header.
//!
//! Body rules (flagd's Go `json.Decoder` semantics): an empty body means no context; only the first JSON value
//! is read; a body whose first value is not an object (or `null`) is an invalid context; a `context` member
//! that is not an object is ignored with a warning. The request `Content-Type` is not checked, as in flagd.

use std::time::Duration;

use axum::body::{Body, Bytes};
use flagpole_engine::{Context, Selector, Value};
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tonic::metadata::MetadataMap;

use crate::service::ServiceConfig;
use crate::service::request::{HeaderMapping, RequestError, assemble_context, selector};

/// How long a client gets to send its whole request body (flagd's `ReadTimeout`, 5 s). The header part has
/// its own limit in the HTTP connection settings.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum OfrepRequestError {
    /// The body is larger than `--max-request-body`.
    #[error("request body too large")]
    TooLarge,
    /// The body did not arrive within [`BODY_READ_TIMEOUT`].
    #[error("request body not received within {BODY_READ_TIMEOUT:?}")]
    Timeout,
    /// The body could not be read, is not JSON, or is not an object.
    #[error("Provider context is not valid")]
    InvalidContext,
    /// The `Flagd-Selector` header is invalid.
    #[error("invalid selector: {0}")]
    Selector(#[source] RequestError),
}

/// An evaluation request, read.
#[derive(Debug)]
pub struct OfrepRequest {
    /// From `Flagd-Selector`; none selects every flag set.
    pub selector: Selector,
    /// Body context, then `-X`, then `-H`.
    pub context: Context,
}

/// Reads the body (at most `limit` bytes, within [`BODY_READ_TIMEOUT`]), then the context and the selector.
pub async fn read(
    config: &ServiceConfig,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<OfrepRequest, OfrepRequestError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(OfrepRequestError::TooLarge);
    }
    let bytes = read_body(body, limit).await?;
    let mut context = body_context(&bytes)?;
    let metadata = MetadataMap::from_headers(headers.clone());
    let selector = selector(&metadata).map_err(OfrepRequestError::Selector)?;
    // Body lowest, then `-X`, then `-H`: laying the static and header values over the body context is exactly
    // the services' merge order.
    let overlay = assemble_context(None, config, &metadata, HeaderMapping::Apply)
        .map_err(|_| OfrepRequestError::InvalidContext)?;
    context.extend(overlay);
    Ok(OfrepRequest { selector, context })
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, OfrepRequestError> {
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(BODY_READ_TIMEOUT, collect).await {
        Err(_) => Err(OfrepRequestError::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(OfrepRequestError::TooLarge),
        Ok(Err(error)) => {
            tracing::debug!(%error, "cannot read OFREP request body");
            Err(OfrepRequestError::InvalidContext)
        }
    }
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
