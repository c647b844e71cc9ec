//! The one place where evaluation and request errors become gRPC statuses (flagd's `errFormat` table,
//! inventory 2.5). v1, v2 and schema.v1 share it: they are the same protocol with different fallbacks.

use flagpole_engine::ErrorCode;
use tonic::Status;

use super::request::RequestError;

/// What a failed request turns into on gRPC.
#[derive(Debug)]
pub enum Failure {
    /// The request could not be read (bad context, bad selector).
    Request(RequestError),
    /// The engine reported an error code (or v1 turned a code default into FLAG_NOT_FOUND).
    Evaluation(ErrorCode),
}

impl From<RequestError> for Failure {
    fn from(e: RequestError) -> Self {
        Failure::Request(e)
    }
}

/// flagd's error → status table. Messages are flagd's fixed strings; providers read the code.
pub fn grpc_status(failure: Failure) -> Status {
    match failure {
        Failure::Request(e) => Status::invalid_argument(e.to_string()),
        Failure::Evaluation(ErrorCode::FlagNotFound) => Status::not_found("Flag not found"),
        Failure::Evaluation(ErrorCode::ParseError) => {
            Status::data_loss("Error parsing input or configuration")
        }
        Failure::Evaluation(ErrorCode::General) => Status::unknown("General error"),
        Failure::Evaluation(ErrorCode::TypeMismatch) => {
            Status::invalid_argument("Type mismatch error")
        }
    }
}

/// The stream deadline status (`--stream-deadline`).
pub fn deadline_exceeded() -> Status {
    Status::deadline_exceeded("stream closed due to server-side timeout")
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
            let status = grpc_status(Failure::Evaluation(code));
            assert_eq!((status.code(), status.message()), (grpc, message));
        }
    }
}
