//! Reading a whole request body for the unary HTTP protocols (Connect, OFREP): at most `--max-request-body`
//! bytes, within [`BODY_READ_TIMEOUT`] (`docs/limits.md`). Each protocol maps a [`BodyError`] to its own
//! status.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// How long a client gets to send its whole request body (flagd's `ReadTimeout`, 5 s). The header part has
/// its own limit in the HTTP connection settings.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than the limit (declared or sent).
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// Not received within [`BODY_READ_TIMEOUT`].
    #[error("request body not received within {BODY_READ_TIMEOUT:?}")]
    Timeout,
    /// The connection failed while reading.
    #[error("cannot read request: {0}")]
    Failed(String),
}

/// Reads the whole body: at most `limit` bytes (a larger `Content-Length` is refused before reading),
/// within [`BODY_READ_TIMEOUT`].
pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(BodyError::TooLarge(limit));
    }
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(BODY_READ_TIMEOUT, collect).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Ok(Err(error)) => Err(BodyError::Failed(error.to_string())),
    }
}
