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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::StreamBody;

    use super::*;

    fn length(len: u64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, len.into());
        headers
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let bytes = read(&length(5), Body::from("hello"), 5).await;
        assert_eq!(bytes.ok().as_deref(), Some(&b"hello"[..]));
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        // The body would block for ever: only the declared length can end this read.
        let body = Body::new(StreamBody::new(futures::stream::pending::<
            Result<hyper::body::Frame<Bytes>, Infallible>,
        >()));
        let result = read(&length(11), body, 10).await;
        assert!(matches!(result, Err(BodyError::TooLarge(10))), "{result:?}");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_without_a_length_is_refused() {
        let result = read(&HeaderMap::new(), Body::from("x".repeat(11)), 10).await;
        assert!(matches!(result, Err(BodyError::TooLarge(10))), "{result:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_times_out() {
        let body = Body::new(StreamBody::new(futures::stream::pending::<
            Result<hyper::body::Frame<Bytes>, Infallible>,
        >()));
        let result = read(&HeaderMap::new(), body, 10).await;
        assert!(matches!(result, Err(BodyError::Timeout)), "{result:?}");
        assert_eq!(
            BodyError::Timeout.to_string(),
            "request body not received within 5s"
        );
    }
}
