//! The Connect protocol on the evaluation port, translated to gRPC in-process.
//!
//! A Connect request (unary `POST` with `application/json` or `application/proto`; server streaming with
//! `application/connect+json` or `application/connect+proto`) is rewritten into the equivalent gRPC request
//! and passed to the same tonic services that serve gRPC, and their gRPC response is rewritten back. So
//! every protocol shares one set of handlers, one error table (`crate::protocols::grpc`) and the same header
//! mapping (`Flagd-Selector`, `-H`); this module only converts framing, codecs and status codes.
//!
//! JSON follows protobuf's JSON mapping as flagd's codec (protojson with `EmitUnpopulated`,
//! `DiscardUnknown`) does: zero values are written, `int64` is a string, unset proto3 `optional` fields are
//! left out, names are lowerCamelCase, and `flag_key` is accepted on input as well as `flagKey`. One
//! difference: an unset message field is left out rather than written as `null`.
//!
//! Errors: unary errors are `{"code": "...", "message": "..."}` with the HTTP status of the Connect
//! protocol ([`http_status`]); streaming errors travel in the end-of-stream message with HTTP 200. A body
//! over `--max-request-body` is `resource_exhausted` (429), as in flagd.
//!
//! What it does not do: Connect `GET` (flagd declares no idempotent method), compression (a compressed
//! request is `unimplemented`), client or bidirectional streaming (no flagd method uses them), or gRPC and
//! gRPC-Web, which pass through untouched.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, TE};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;

use crate::protocols::body::{self, BodyError};
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, MethodDescriptor,
    SerializeOptions,
};
use tonic::Code;

/// Envelope flag: the message is compressed.
const FLAG_COMPRESSED: u8 = 0x01;
/// Envelope flag: the end-of-stream message (Connect streaming responses only).
const FLAG_END_STREAM: u8 = 0x02;
/// Length of the envelope / gRPC frame prefix: one flag byte and a big-endian `u32` length.
const PREFIX: usize = 5;

/// The message codec a Connect client chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Json,
    Proto,
}

/// What the content type makes of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// gRPC or gRPC-Web: passed through.
    Grpc,
    Unary(Codec),
    Stream(Codec),
    /// Anything else.
    Unsupported,
}

fn kind(headers: &HeaderMap) -> Kind {
    let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return Kind::Unsupported;
    };
    // gRPC is the hot path: recognised without allocating.
    const GRPC: &str = "application/grpc";
    if content_type
        .get(..GRPC.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(GRPC))
    {
        return Kind::Grpc;
    }
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Kind::Unary(Codec::Json),
        "application/proto" => Kind::Unary(Codec::Proto),
        "application/connect+json" => Kind::Stream(Codec::Json),
        "application/connect+proto" => Kind::Stream(Codec::Proto),
        _ => Kind::Unsupported,
    }
}

/// The Connect translator: the descriptors of every served method and the body limit.
///
/// The descriptor pool is decoded on the first Connect request, not at start: most deployments speak only
/// gRPC, and an idle daemon should not hold (or page in the code that builds) a pool it never uses. The
/// embedded descriptor set is checked by this module's tests, so decoding cannot fail in a built binary;
/// if it ever did, Connect requests would get `internal` and the error would be logged once.
#[derive(Debug)]
pub struct Connect {
    pool: OnceLock<Option<DescriptorPool>>,
    max_body: usize,
}

impl Connect {
    /// A translator for the project's services, with `max_body` as the request body limit.
    pub fn new(max_body: usize) -> Connect {
        Connect {
            pool: OnceLock::new(),
            max_body,
        }
    }

    /// The descriptors, decoded on first use; `None` if the embedded set cannot be decoded.
    fn pool(&self) -> Option<&DescriptorPool> {
        self.pool
            .get_or_init(
                || match DescriptorPool::decode(flagpole_proto::FILE_DESCRIPTOR_SET) {
                    Ok(pool) => Some(pool),
                    Err(error) => {
                        tracing::error!(%error, "cannot load the protobuf descriptors: Connect is unavailable");
                        None
                    }
                },
            )
            .as_ref()
    }

    fn method(&self, path: &str) -> Option<MethodDescriptor> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        self.pool()?
            .get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)
    }
}

/// axum middleware: Connect requests are translated, gRPC and gRPC-Web go on to `next` untouched.
pub async fn middleware(
    State(connect): State<Arc<Connect>>,
    request: Request,
    next: Next,
) -> Response {
    let kind = kind(request.headers());
    if kind == Kind::Grpc {
        return next.run(request).await;
    }
    if request.method() == Method::OPTIONS {
        // A CORS preflight that the CORS layer did not answer.
        return next.run(request).await;
    }
    if request.method() != Method::POST {
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::Unimplemented,
            "only POST is supported",
        );
        response
            .headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    if connect.pool().is_none() {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Internal,
            "the protobuf descriptors cannot be loaded",
        );
    }
    let Some(method) = connect.method(request.uri().path()) else {
        return error_response(
            StatusCode::NOT_FOUND,
            Code::Unimplemented,
            &format!("unknown procedure {}", request.uri().path()),
        );
    };
    match (kind, method.is_server_streaming()) {
        (Kind::Unary(codec), false) => unary(&connect, method, codec, request, next).await,
        (Kind::Stream(codec), true) => stream(&connect, method, codec, request, next).await,
        // As connect-go (flagd) answers: 415 with no body, naming what the port accepts.
        _ => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
            response.headers_mut().insert(
                ACCEPT_POST,
                HeaderValue::from_static(ACCEPTED_CONTENT_TYPES),
            );
            response
        }
    }
}

/// The `Accept-Post` header of a 415.
const ACCEPT_POST: http::HeaderName = http::HeaderName::from_static("accept-post");

/// The content types the evaluation port accepts, for `Accept-Post`.
const ACCEPTED_CONTENT_TYPES: &str = "application/connect+json, application/connect+proto, \
     application/grpc, application/grpc+proto, application/grpc-web, application/grpc-web+proto, \
     application/grpc-web-text, application/grpc-web-text+proto, application/json, application/proto";

/// An error before or instead of a response: its Connect code (which [`http_status`] maps to the HTTP
/// status of a unary answer) and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConnectError {
    code: Code,
    message: String,
}

impl ConnectError {
    fn new(code: Code, message: String) -> Self {
        ConnectError { code, message }
    }
}

async fn unary(
    connect: &Connect,
    method: MethodDescriptor,
    codec: Codec,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    if let Err(ConnectError { code, message }) = check_encoding(&parts.headers, "content-encoding")
    {
        return unary_error(code, &message);
    }
    let message = match read_body(&parts.headers, body, connect.max_body).await {
        Ok(bytes) => match codec {
            Codec::Proto => bytes,
            Codec::Json => match json_to_proto(method.input(), &bytes) {
                Ok(message) => message,
                Err(ConnectError { code, message }) => return unary_error(code, &message),
            },
        },
        // A body that does not arrive in time is the client's delay, not a deadline of the call: 408.
        Err(ConnectError {
            code: Code::DeadlineExceeded,
            message,
        }) => {
            return error_response(
                StatusCode::REQUEST_TIMEOUT,
                Code::DeadlineExceeded,
                &message,
            );
        }
        Err(ConnectError { code, message }) => return unary_error(code, &message),
    };
    let response = next.run(grpc_request(parts, &message)).await;
    let (parts, body) = response.into_parts();
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(error) => return unary_error(Code::Internal, &error.to_string()),
    };
    let trailers = collected.trailers().cloned();
    if let Some(status) = grpc_status(&parts.headers, trailers.as_ref())
        && status.code() != Code::Ok
    {
        return unary_error(status.code(), status.message());
    }
    let data = collected.to_bytes();
    let Some(message) = first_frame(&data) else {
        return unary_error(Code::Internal, "the service sent no response message");
    };
    let (content_type, body) = match codec {
        Codec::Proto => ("application/proto", message),
        Codec::Json => match proto_to_json(method.output(), message) {
            Ok(json) => ("application/json", json),
            Err(ConnectError { code, message }) => return unary_error(code, &message),
        },
    };
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn stream(
    connect: &Connect,
    method: MethodDescriptor,
    codec: Codec,
    request: Request,
    next: Next,
) -> Response {
    let content_type = match codec {
        Codec::Json => "application/connect+json",
        Codec::Proto => "application/connect+proto",
    };
    let (parts, body) = request.into_parts();
    let message = async {
        check_encoding(&parts.headers, "connect-content-encoding")?;
        let bytes = read_body(&parts.headers, body, connect.max_body).await?;
        let message = single_envelope(bytes)?;
        match codec {
            Codec::Proto => Ok(message),
            Codec::Json => json_to_proto(method.input(), &message),
        }
    }
    .await;
    let message = match message {
        Ok(message) => message,
        Err(failure) => {
            return stream_response(content_type, Body::from(end_stream(Some(failure))));
        }
    };
    let response = next.run(grpc_request(parts, &message)).await;
    let (parts, body) = response.into_parts();
    let output = method.output();
    let state = StreamState {
        body,
        headers: parts.headers,
        buffer: BytesMut::new(),
        done: false,
    };
    let frames = futures::stream::unfold(state, move |mut state| {
        let output = output.clone();
        async move {
            let bytes = state.next_envelope(codec, &output).await?;
            Some((Ok::<_, std::convert::Infallible>(bytes), state))
        }
    });
    stream_response(content_type, Body::from_stream(frames))
}

fn stream_response(content_type: &'static str, body: Body) -> Response {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A gRPC response body being rewritten into Connect envelopes.
struct StreamState {
    body: Body,
    headers: HeaderMap,
    buffer: BytesMut,
    done: bool,
}

impl StreamState {
    /// The next Connect envelope: a message, or the end-of-stream message; `None` after that.
    async fn next_envelope(&mut self, codec: Codec, output: &MessageDescriptor) -> Option<Bytes> {
        loop {
            if self.done {
                return None;
            }
            if let Some(message) = take_frame(&mut self.buffer) {
                let message = match codec {
                    Codec::Proto => Ok(message),
                    Codec::Json => proto_to_json(output.clone(), message),
                };
                return Some(match message {
                    Ok(message) => envelope(0, &message),
                    Err(failure) => {
                        self.done = true;
                        end_stream(Some(failure))
                    }
                });
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buffer.extend_from_slice(&data),
                    Err(frame) => {
                        self.done = true;
                        let status = grpc_status(&self.headers, frame.trailers_ref());
                        return Some(end_stream(failure_of(status)));
                    }
                },
                Some(Err(error)) => {
                    self.done = true;
                    return Some(end_stream(Some(ConnectError::new(
                        Code::Internal,
                        error.to_string(),
                    ))));
                }
                None => {
                    self.done = true;
                    let status = grpc_status(&self.headers, None);
                    return Some(end_stream(failure_of(status)));
                }
            }
        }
    }
}

fn failure_of(status: Option<tonic::Status>) -> Option<ConnectError> {
    match status {
        None => Some(ConnectError::new(
            Code::Internal,
            "the service ended without a status".into(),
        )),
        Some(status) if status.code() == Code::Ok => None,
        Some(status) => Some(ConnectError::new(
            status.code(),
            status.message().to_owned(),
        )),
    }
}

/// Only uncompressed requests are accepted.
fn check_encoding(headers: &HeaderMap, name: &str) -> Result<(), ConnectError> {
    match headers.get(name).map(HeaderValue::as_bytes) {
        None | Some(b"identity") => Ok(()),
        Some(other) => Err(ConnectError::new(
            Code::Unimplemented,
            format!(
                "unsupported compression {:?}; only identity is supported",
                String::from_utf8_lossy(other)
            ),
        )),
    }
}

/// Reads the whole request body (`crate::protocols::body`), with Connect's codes for what goes wrong.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ConnectError> {
    body::read(headers, body, limit).await.map_err(|error| {
        let code = match error {
            BodyError::TooLarge(_) => Code::ResourceExhausted,
            BodyError::Timeout => Code::DeadlineExceeded,
            BodyError::Failed(_) => Code::InvalidArgument,
        };
        ConnectError::new(code, error.to_string())
    })
}

/// The message of a streaming request: exactly one uncompressed envelope.
fn single_envelope(mut bytes: Bytes) -> Result<Bytes, ConnectError> {
    let invalid = |what: &str| {
        ConnectError::new(
            Code::InvalidArgument,
            format!("invalid request envelope: {what}"),
        )
    };
    if bytes.len() < PREFIX {
        return Err(invalid("shorter than its 5-byte prefix"));
    }
    let flags = bytes.get_u8();
    let len = bytes.get_u32() as usize;
    if flags & FLAG_COMPRESSED != 0 {
        return Err(ConnectError::new(
            Code::Unimplemented,
            "compressed messages are not supported".into(),
        ));
    }
    if flags & FLAG_END_STREAM != 0 {
        return Err(invalid("end-of-stream flag in a request"));
    }
    if len != bytes.len() {
        return Err(invalid(
            "length does not match the body (one message expected)",
        ));
    }
    Ok(bytes)
}

/// A Connect envelope (the same layout as a gRPC frame).
fn envelope(flags: u8, message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(PREFIX + message.len());
    out.put_u8(flags);
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(message);
    out.freeze()
}

/// The end-of-stream envelope: `{}` or `{"error": {...}}` (always JSON).
fn end_stream(failure: Option<ConnectError>) -> Bytes {
    let json = match failure {
        None => serde_json::json!({}),
        Some(ConnectError { code, message }) => {
            serde_json::json!({ "error": error_json(code, &message) })
        }
    };
    envelope(FLAG_END_STREAM, json.to_string().as_bytes())
}

/// Removes one complete gRPC frame from the front of `buffer`, returning its message.
fn take_frame(buffer: &mut BytesMut) -> Option<Bytes> {
    if buffer.len() < PREFIX {
        return None;
    }
    let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if buffer.len() < PREFIX + len {
        return None;
    }
    let mut frame = buffer.split_to(PREFIX + len);
    frame.advance(PREFIX);
    Some(frame.freeze())
}

/// The message of the first gRPC frame of a unary response body.
fn first_frame(data: &Bytes) -> Option<Bytes> {
    let mut buffer = BytesMut::from(data.as_ref());
    take_frame(&mut buffer)
}

/// The gRPC request for a Connect request: same path and headers (so `Flagd-Selector` and `-H` mapping
/// apply), gRPC content type, and the message in one frame.
fn grpc_request(mut parts: http::request::Parts, message: &[u8]) -> Request {
    let timeout_ms = parts
        .headers
        .get("connect-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.remove("content-encoding");
    parts.headers.remove("accept-encoding");
    parts.headers.remove("connect-protocol-version");
    parts.headers.remove("connect-timeout-ms");
    parts.headers.remove("connect-content-encoding");
    parts.headers.remove("connect-accept-encoding");
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    parts
        .headers
        .insert(TE, HeaderValue::from_static("trailers"));
    // gRPC allows at most 8 digits per unit.
    if let Some(ms) = timeout_ms.filter(|ms| *ms < 100_000_000)
        && let Ok(value) = HeaderValue::from_str(&format!("{ms}m"))
    {
        parts.headers.insert("grpc-timeout", value);
    }
    parts.version = http::Version::HTTP_2;
    Request::from_parts(parts, Body::from(envelope(0, message)))
}

/// The gRPC status of a response: from the headers (trailers-only response) or the trailers.
fn grpc_status(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> Option<tonic::Status> {
    tonic::Status::from_header_map(headers)
        .or_else(|| trailers.and_then(tonic::Status::from_header_map))
}

fn json_to_proto(input: MessageDescriptor, json: &[u8]) -> Result<Bytes, ConnectError> {
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let message = DynamicMessage::deserialize_with_options(input, &mut deserializer, &options)
        .and_then(|message| deserializer.end().map(|()| message))
        .map_err(|error| {
            ConnectError::new(
                Code::InvalidArgument,
                format!("invalid JSON request: {error}"),
            )
        })?;
    Ok(Bytes::from(prost::Message::encode_to_vec(&message)))
}

fn proto_to_json(output: MessageDescriptor, message: Bytes) -> Result<Bytes, ConnectError> {
    let message = DynamicMessage::decode(output, message).map_err(|error| {
        ConnectError::new(
            Code::Internal,
            format!("cannot decode the response: {error}"),
        )
    })?;
    let options = SerializeOptions::new().skip_default_fields(false);
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::new(&mut out);
    message
        .serialize_with_options(&mut serializer, &options)
        .map_err(|error| {
            ConnectError::new(
                Code::Internal,
                format!("cannot encode the response: {error}"),
            )
        })?;
    Ok(Bytes::from(out))
}

/// Connect's name of a code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status of a unary Connect error (the Connect protocol's table, as connect-go sends it).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::REQUEST_TIMEOUT),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
    }
}

fn error_json(code: Code, message: &str) -> serde_json::Value {
    let mut json = serde_json::json!({ "code": code_name(code) });
    if !message.is_empty() {
        json["message"] = serde_json::Value::from(message);
    }
    json
}

fn unary_error(code: Code, message: &str) -> Response {
    error_response(http_status(code), code, message)
}

fn error_response(status: StatusCode, code: Code, message: &str) -> Response {
    let mut response = Response::new(Body::from(error_json(code, message).to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_chunks_are_reassembled() {
        let whole = envelope(0, b"hello");
        let mut buffer = BytesMut::from(&whole[..3]);
        assert_eq!(take_frame(&mut buffer), None);
        buffer.extend_from_slice(&whole[3..]);
        assert_eq!(take_frame(&mut buffer).as_deref(), Some(&b"hello"[..]));
        assert!(buffer.is_empty());
    }

    #[test]
    fn request_envelopes_are_checked() {
        assert!(single_envelope(Bytes::from_static(b"\0\0")).is_err());
        assert!(single_envelope(envelope(FLAG_COMPRESSED, b"x")).is_err());
        assert!(single_envelope(envelope(FLAG_END_STREAM, b"x")).is_err());
        let mut two = BytesMut::from(envelope(0, b"a").as_ref());
        two.extend_from_slice(&envelope(0, b"b"));
        assert!(single_envelope(two.freeze()).is_err());
        assert_eq!(
            single_envelope(envelope(0, b"ok")).ok().as_deref(),
            Some(&b"ok"[..])
        );
    }

    #[test]
    fn content_types_are_classified_without_parameters_and_case() {
        let mut headers = HeaderMap::new();
        let mut with = |value: &'static str| {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            kind(&headers)
        };
        assert_eq!(
            with("application/json; charset=utf-8"),
            Kind::Unary(Codec::Json)
        );
        assert_eq!(with("Application/Proto"), Kind::Unary(Codec::Proto));
        assert_eq!(with("application/connect+json"), Kind::Stream(Codec::Json));
        assert_eq!(with("application/grpc-web+proto"), Kind::Grpc);
        assert_eq!(with("text/plain"), Kind::Unsupported);
    }

    proptest::proptest! {
        /// Any request body, for every method, is decoded or rejected with a code; nothing panics.
        #[test]
        fn arbitrary_request_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let connect = Connect::new(1024);
            for service in connect.pool().expect("descriptors load").services() {
                for method in service.methods() {
                    let _ = json_to_proto(method.input(), &body);
                    let _ = single_envelope(Bytes::from(body.clone()));
                    let _ = proto_to_json(method.output(), Bytes::from(body.clone()));
                }
            }
        }

        /// Any JSON text that parses is either accepted or rejected as `invalid_argument`.
        #[test]
        fn json_rejections_are_invalid_argument(text in "\\PC{0,64}") {
            let connect = Connect::new(1024);
            let method = connect
                .method("/flagd.evaluation.v1.Service/ResolveBoolean")
                .expect("method");
            if let Err(ConnectError { code, .. }) = json_to_proto(method.input(), text.as_bytes()) {
                proptest::prop_assert_eq!(code, Code::InvalidArgument);
            }
        }
    }

    #[test]
    fn the_descriptors_know_every_evaluation_method() {
        let connect = Connect::new(1024);
        let v1 = connect
            .method("/flagd.evaluation.v1.Service/EventStream")
            .expect("v1 EventStream");
        assert!(v1.is_server_streaming());
        assert!(
            connect
                .method("/flagd.evaluation.v2.Service/ResolveInt")
                .is_some()
        );
        assert!(connect.method("/schema.v1.Service/ResolveAll").is_some());
        assert!(
            connect
                .method("/flagd.evaluation.v2.Service/ResolveAll")
                .is_none()
        );
        assert!(connect.method("no-slash").is_none());
    }

    /// `prost_reflect` builds (and keeps) a global pool of every well-known type as soon as a pool it
    /// decodes carries an option whose options message the pool does not declare. The embedded set keeps
    /// only `map_entry` and declares `google.protobuf.MessageOptions` for it (`proto/build.rs`), and maps
    /// still map.
    #[test]
    fn the_descriptors_carry_only_the_map_entry_option_and_declare_it() {
        use prost::Message as _;
        use prost_types::{DescriptorProto, FileDescriptorSet};
        fn no_other_options(message: &DescriptorProto) -> bool {
            message.options.as_ref().is_none_or(|o| {
                *o == prost_types::MessageOptions {
                    map_entry: o.map_entry,
                    ..Default::default()
                }
            }) && message.field.iter().all(|f| f.options.is_none())
                && message.oneof_decl.iter().all(|o| o.options.is_none())
                && message
                    .enum_type
                    .iter()
                    .all(|e| e.options.is_none() && e.value.iter().all(|v| v.options.is_none()))
                && message.nested_type.iter().all(no_other_options)
        }
        let set =
            FileDescriptorSet::decode(flagpole_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
        for file in &set.file {
            assert!(file.options.is_none(), "{:?}", file.name);
            assert!(
                file.message_type.iter().all(no_other_options),
                "{:?}",
                file.name
            );
            assert!(
                file.enum_type.iter().all(|e| e.options.is_none()),
                "{:?}",
                file.name
            );
            assert!(
                file.service
                    .iter()
                    .all(|s| s.options.is_none() && s.method.iter().all(|m| m.options.is_none())),
                "{:?}",
                file.name
            );
        }
        let pool = Connect::new(1024).pool().expect("pool").clone();
        let options = pool
            .get_message_by_name("google.protobuf.MessageOptions")
            .expect("MessageOptions declared");
        assert_eq!(
            options.get_field(7).map(|f| f.name().to_owned()).as_deref(),
            Some("map_entry")
        );
        let field = |message: &str, field: &str| {
            pool.get_message_by_name(message)
                .and_then(|m| m.get_field_by_name(field))
                .unwrap_or_else(|| panic!("{message}.{field}"))
        };
        assert!(field("google.protobuf.Struct", "fields").is_map());
        assert!(field("flagd.evaluation.v1.ResolveAllResponse", "flags").is_map());
        assert!(!field("flagd.evaluation.v1.ResolveAllResponse", "metadata").is_map());
    }
}
