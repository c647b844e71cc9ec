//! The one place where evaluation and request errors become gRPC statuses (flagd's `errFormat` table,
//! `docs/protocols.md#error--status-grpc`). v1, v2 and schema.v1 share it: they are the same protocol with different fallbacks.
//!
//! tonic rejects some requests before a handler runs, with codes flagd does not use: a body that is not
//! valid protobuf is INTERNAL (flagd: INVALID_ARGUMENT) and a message over the size limit is OUT_OF_RANGE
//! (flagd: RESOURCE_EXHAUSTED). [`FlagdStatus`] wraps each generated server and rewrites exactly those two.

use std::convert::Infallible;
use std::task::{Context, Poll};

use flagpole_engine::ErrorCode;
use futures::FutureExt;
use futures::future::Map;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;

use super::convert::ConvertError;
use crate::eval::RequestError;

/// What a failed request turns into on gRPC.
#[derive(Debug)]
pub enum ResolveError {
    /// The selector could not be read.
    Request(RequestError),
    /// The context Struct is not representable.
    Context(ConvertError),
    /// The engine reported an error code (or v1 turned a code default into FLAG_NOT_FOUND).
    Evaluation(ErrorCode),
}

impl From<RequestError> for ResolveError {
    fn from(e: RequestError) -> Self {
        ResolveError::Request(e)
    }
}

impl From<ConvertError> for ResolveError {
    fn from(e: ConvertError) -> Self {
        ResolveError::Context(e)
    }
}

/// flagd's error → status table. Messages are flagd's fixed strings; providers read the code.
pub fn grpc_status(failure: ResolveError) -> Status {
    match failure {
        ResolveError::Request(e) => Status::invalid_argument(e.to_string()),
        ResolveError::Context(e) => Status::invalid_argument(e.to_string()),
        ResolveError::Evaluation(ErrorCode::FlagNotFound) => Status::not_found("Flag not found"),
        ResolveError::Evaluation(ErrorCode::ParseError) => {
            Status::data_loss("Error parsing input or configuration")
        }
        ResolveError::Evaluation(ErrorCode::General) => Status::unknown("General error"),
        ResolveError::Evaluation(ErrorCode::TypeMismatch) => {
            Status::invalid_argument("Type mismatch error")
        }
    }
}

/// The stream deadline status (`--stream-deadline`).
pub fn deadline_exceeded() -> Status {
    Status::deadline_exceeded("stream closed due to server-side timeout")
}

/// tonic's message prefix for a request that is not valid protobuf (prost's `DecodeError`).
const DECODE_ERROR_PREFIX: &str = "failed to decode Protobuf message";

/// tonic's message prefix for a request over `max_decoding_message_size`.
const TOO_LARGE_PREFIX: &str = "Error, decoded message length too large";

/// A generated server whose pre-handler rejections carry flagd's codes.
#[derive(Debug, Clone)]
pub struct FlagdStatus<S>(pub S);

impl<S: NamedService> NamedService for FlagdStatus<S> {
    const NAME: &'static str = S::NAME;
}

type Response = http::Response<Body>;

impl<S> tower::Service<http::Request<Body>> for FlagdStatus<S>
where
    S: tower::Service<http::Request<Body>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Map<S::Future, fn(Result<Response, Infallible>) -> Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        self.0
            .call(request)
            .map(|response| response.map(rewrite_rejection))
    }
}

/// Rewrites a trailers-only rejection (status in the headers) from tonic's code to flagd's.
fn rewrite_rejection(mut response: Response) -> Response {
    let headers = response.headers();
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    let Some(code) = code.map(tonic::Code::from_i32) else {
        return response;
    };
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let message = percent_decoded_prefix(message);
    let replacement = match code {
        tonic::Code::Internal if message.starts_with(DECODE_ERROR_PREFIX) => {
            tonic::Code::InvalidArgument
        }
        tonic::Code::OutOfRange if message.starts_with(TOO_LARGE_PREFIX) => {
            tonic::Code::ResourceExhausted
        }
        _ => return response,
    };
    response
        .headers_mut()
        .insert("grpc-status", http::HeaderValue::from(replacement as i32));
    response
}

/// The first characters of a percent-encoded `grpc-message`, decoded well enough to compare with the
/// prefixes above (they contain only letters, spaces, commas and colons).
fn percent_decoded_prefix(message: &str) -> String {
    let mut out = String::with_capacity(64);
    let mut bytes = message.bytes();
    while out.len() < 64 {
        match bytes.next() {
            None => break,
            Some(b'%') => {
                let hex = [bytes.next().unwrap_or(b'0'), bytes.next().unwrap_or(b'0')];
                let decoded = std::str::from_utf8(&hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(decoded.map_or('?', char::from));
            }
            Some(b) => out.push(char::from(b)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn follows_flagds_table() {
        let cases = [
            (ErrorCode::FlagNotFound, Code::NotFound, "Flag not found"),
            (
                ErrorCode::ParseError,
                Code::DataLoss,
                "Error parsing input or configuration",
            ),
            (ErrorCode::General, Code::Unknown, "General error"),
            (
                ErrorCode::TypeMismatch,
                Code::InvalidArgument,
                "Type mismatch error",
            ),
        ];
        for (code, grpc, message) in cases {
            let status = grpc_status(ResolveError::Evaluation(code));
            assert_eq!((status.code(), status.message()), (grpc, message));
        }
    }

    fn rejection(status: Status) -> Response {
        status.into_http()
    }

    fn code_of(response: &Response) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    #[test]
    fn tonics_decode_and_size_rejections_get_flagds_codes() {
        let decode = rejection(Status::internal(
            "failed to decode Protobuf message: invalid wire type",
        ));
        assert_eq!(code_of(&rewrite_rejection(decode)), Some("3"));
        let large = rejection(Status::out_of_range(
            "Error, decoded message length too large: found 9 bytes",
        ));
        assert_eq!(code_of(&rewrite_rejection(large)), Some("8"));
        // Anything else is left alone.
        let other = rejection(Status::internal("something else"));
        assert_eq!(code_of(&rewrite_rejection(other)), Some("13"));
        let ok = http::Response::new(Body::empty());
        assert_eq!(code_of(&rewrite_rejection(ok)), None);
    }
}
