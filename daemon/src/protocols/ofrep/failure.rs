//! The one place an OFREP failure becomes an HTTP status, an `errorCode` and `errorDetails` (flagd's
//! `models.go`; `docs/protocols.md#ofrep-port-8016`). Every failure the OFREP port answers is an
//! [`OfrepFailure`]; the response bodies that carry the answer are `wire`'s.

use flagpole_engine::ErrorCode;
use http::StatusCode;

use super::request::OfrepRequestError;

/// The `errorDetails` of a 413.
pub const BODY_TOO_LARGE: &str = "request body too large";

/// Everything that makes an OFREP request fail, as a whole or for one flag.
#[derive(Debug)]
pub enum OfrepFailure {
    /// The request could not be read (body, context, selector).
    Request(OfrepRequestError),
    /// The flag key in the path is not valid (not UTF-8 once decoded).
    Path,
    /// One flag could not be evaluated (not found included).
    Evaluation(ErrorCode),
    /// The bulk answer could not be encoded.
    Encoding,
}

/// How a failure is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureAnswer {
    /// The HTTP status (of the whole response, or of a single-flag evaluation).
    pub status: StatusCode,
    /// The `errorCode`; `None` where flagd's body has only `errorDetails` (413, 408).
    pub error_code: Option<&'static str>,
    /// The `errorDetails`.
    pub details: String,
}

impl OfrepFailure {
    /// The answer for this failure; `key` is the flag key of a single-flag request or entry.
    pub fn answer(&self, key: Option<&str>) -> FailureAnswer {
        let key = key.unwrap_or_default();
        let (status, error_code, details) = match self {
            OfrepFailure::Request(OfrepRequestError::TooLarge) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                BODY_TOO_LARGE.to_owned(),
            ),
            OfrepFailure::Request(error @ OfrepRequestError::Timeout(_)) => {
                (StatusCode::REQUEST_TIMEOUT, None, error.to_string())
            }
            OfrepFailure::Request(error @ OfrepRequestError::InvalidContext) => (
                StatusCode::BAD_REQUEST,
                Some("INVALID_CONTEXT"),
                error.to_string(),
            ),
            OfrepFailure::Request(error @ OfrepRequestError::Selector(_)) => (
                StatusCode::BAD_REQUEST,
                Some(ErrorCode::General.as_str()),
                error.to_string(),
            ),
            OfrepFailure::Path => (
                StatusCode::BAD_REQUEST,
                Some(ErrorCode::General.as_str()),
                "the flag key in the path is not valid".to_owned(),
            ),
            OfrepFailure::Evaluation(code) => {
                let (status, details) = match code {
                    ErrorCode::FlagNotFound => (
                        StatusCode::NOT_FOUND,
                        format!("flag `{key}` does not exist"),
                    ),
                    ErrorCode::ParseError => (
                        StatusCode::BAD_REQUEST,
                        format!("error parsing the flag `{key}`"),
                    ),
                    // Type mismatches cannot happen (OFREP is untyped); flagd maps every other code to
                    // GENERAL's text.
                    ErrorCode::General | ErrorCode::TypeMismatch => (
                        StatusCode::BAD_REQUEST,
                        "error processing the flag for evaluation".to_owned(),
                    ),
                };
                (status, Some(code.as_str()), details)
            }
            OfrepFailure::Encoding => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(ErrorCode::General.as_str()),
                "Bulk evaluation failed".to_owned(),
            ),
        };
        FailureAnswer {
            status,
            error_code,
            details,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details_quote_the_key_in_backticks() {
        let answer = OfrepFailure::Evaluation(ErrorCode::FlagNotFound).answer(Some("k"));
        assert_eq!(
            (answer.status, answer.details.as_str()),
            (StatusCode::NOT_FOUND, "flag `k` does not exist")
        );
        let answer = OfrepFailure::Evaluation(ErrorCode::ParseError).answer(Some("k"));
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn body_failures_have_no_error_code() {
        let answer = OfrepFailure::Request(OfrepRequestError::TooLarge).answer(None);
        assert_eq!(
            answer,
            FailureAnswer {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                error_code: None,
                details: BODY_TOO_LARGE.to_owned(),
            }
        );
        let answer = OfrepFailure::Request(OfrepRequestError::InvalidContext).answer(Some("k"));
        assert_eq!(answer.error_code, Some("INVALID_CONTEXT"));
    }
}
