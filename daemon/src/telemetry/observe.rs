//! The request middleware of the evaluation and OFREP ports (request instruments and server spans), and
//! the notes the evaluation core leaves on a request's span.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http_body::Body as _;
use tokio::time::Instant;

use super::spans::annotate;
use crate::metrics::Metrics;

/// What the request middleware of a port needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo {
    /// The `http.route` (a served path or template from a closed set).
    pub route: &'static str,
    /// The span's name.
    pub span_name: &'static str,
}

/// The request middleware of the evaluation and OFREP ports: `http.server.active_requests`, the request
/// duration and response size histograms, and (with trace export) a server span that continues the
/// caller's trace and carries what the evaluation core notes ([`note_evaluation`]).
pub async fn observe_request(
    metrics: &Metrics,
    info: RequestInfo,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    metrics.active_request(method.as_str(), "http", 1);
    let span = metrics
        .tracer()
        .and_then(|tracer| tracer.start_request(info.span_name, request.headers()));
    let response = match span {
        None => next.run(request).await,
        Some(mut span) => {
            span.set("http.request.method", method_name(&method));
            span.set("http.route", info.route);
            let (response, span) = super::spans::in_span(span, next.run(request)).await;
            if let Some(mut span) = span {
                span.set_int(
                    "http.response.status_code",
                    i64::from(response.status().as_u16()),
                );
                // A gRPC failure that is the whole answer travels in the headers.
                if let Some(code) = response
                    .headers()
                    .get("grpc-status")
                    .filter(|code| code.as_bytes() != b"0")
                    .and_then(|code| code.to_str().ok())
                {
                    span.set("rpc.grpc.status_code", code.to_owned());
                    span.fail(format!("grpc-status {code}"));
                }
                span.end();
            }
            response
        }
    };
    metrics.active_request(method.as_str(), "http", -1);
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    match response.body().size_hint().exact() {
        Some(bytes) => {
            metrics.record_http_request(
                info.route,
                method.as_str(),
                status,
                "http",
                elapsed,
                bytes,
            );
            response
        }
        None => {
            // A streamed body: its size is known when it ends.
            let record = Recorded {
                metrics: metrics.clone(),
                route: info.route,
                method,
                status,
                elapsed,
                bytes: 0,
            };
            response.map(|body| Body::new(CountedBody { body, record }))
        }
    }
}

/// Records a streamed response's request when its body is done (or dropped).
struct Recorded {
    metrics: Metrics,
    route: &'static str,
    method: http::Method,
    status: u16,
    elapsed: Duration,
    bytes: u64,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        self.metrics.record_http_request(
            self.route,
            self.method.as_str(),
            self.status,
            "http",
            self.elapsed,
            self.bytes,
        );
    }
}

/// A response body that counts the bytes it passes on.
struct CountedBody {
    body: Body,
    record: Recorded,
}

impl http_body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.record.bytes += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The semantic conventions' reason values are the OpenFeature reasons in lowercase.
fn reason_value(reason: &str) -> std::borrow::Cow<'static, str> {
    const REASONS: [(&str, &str); 9] = [
        ("STATIC", "static"),
        ("DEFAULT", "default"),
        ("TARGETING_MATCH", "targeting_match"),
        ("SPLIT", "split"),
        ("CACHED", "cached"),
        ("DISABLED", "disabled"),
        ("UNKNOWN", "unknown"),
        ("STALE", "stale"),
        ("ERROR", "error"),
    ];
    match REASONS.iter().find(|(wire, _)| *wire == reason) {
        Some((_, value)) => std::borrow::Cow::Borrowed(value),
        None => std::borrow::Cow::Owned(reason.to_ascii_lowercase()),
    }
}

/// A request method's name, without a copy for the standard ones.
fn method_name(method: &http::Method) -> std::borrow::Cow<'static, str> {
    const STANDARD: [&str; 5] = ["POST", "GET", "OPTIONS", "PUT", "DELETE"];
    match STANDARD.iter().find(|m| **m == method.as_str()) {
        Some(name) => std::borrow::Cow::Borrowed(name),
        None => std::borrow::Cow::Owned(method.as_str().to_owned()),
    }
}

/// Notes one flag evaluation on the current request's span (if it records one): flag key, provider,
/// variant, reason, error type, flag set and context id (the targeting key), with the semantic
/// conventions' names (`docs/observability.md#spans`).
pub fn note_evaluation(
    key: &str,
    flag_set: Option<&str>,
    context: &flagpole_engine::Context,
    variant: Option<&str>,
    reason: &str,
    error: Option<&str>,
) {
    annotate(|span| {
        span.set("feature_flag.key", key.to_owned());
        span.set("feature_flag.provider.name", "flagd");
        if let Some(variant) = variant {
            span.set("feature_flag.result.variant", variant.to_owned());
        }
        span.set("feature_flag.result.reason", reason_value(reason));
        if let Some(set) = flag_set {
            span.set("feature_flag.set.id", set.to_owned());
        }
        note_context_id(span, context);
        if let Some(error) = error {
            span.set("error.type", error.to_owned());
            span.fail(error.to_owned());
        }
    });
}

/// Notes a bulk evaluation (ResolveAll, OFREP bulk) on the current request's span: how many flags.
pub fn note_bulk(count: usize, context: &flagpole_engine::Context) {
    annotate(|span| {
        span.set("feature_flag.provider.name", "flagd");
        span.set_int(
            "feature_flag.count",
            i64::try_from(count).unwrap_or(i64::MAX),
        );
        note_context_id(span, context);
    });
}

/// The span name of an evaluation-port request path: flagd's (`resolveBoolean`, ...) for its RPCs.
pub fn evaluation_span_name(path: &str) -> &'static str {
    match path.rsplit('/').next().unwrap_or_default() {
        "ResolveBoolean" => "resolveBoolean",
        "ResolveString" => "resolveString",
        "ResolveInt" => "resolveInt",
        "ResolveFloat" => "resolveFloat",
        "ResolveObject" => "resolveObject",
        "ResolveAll" => "resolveAll",
        "EventStream" => "eventStream",
        _ => "request",
    }
}

/// `feature_flag.context.id`: the context's targeting key, when it has a non-empty one.
fn note_context_id(span: &mut super::spans::ActiveSpan, context: &flagpole_engine::Context) {
    if let Some(id) = context
        .get("targetingKey")
        .and_then(|v| v.as_str())
        .filter(|id| !id.is_empty())
    {
        span.set("feature_flag.context.id", id.to_owned());
    }
}
