//! OFREP, the OpenFeature Remote Evaluation Protocol, on its own port (flagd: 8016).
//!
//! What it owns: the HTTP routes `POST /ofrep/v1/evaluate/flags/{key}`, `POST /ofrep/v1/evaluate/flags`
//! (with or without a trailing slash) and `GET /ofrep/v1/configuration`; flagd's response shapes, status codes
//! and error objects (`docs/protocols.md#ofrep-port-8016`, via [`wire`]); request bodies bounded in size and time ([`request`]);
//! entity tags with `304 Not Modified` on bulk evaluation and configuration ([`etag`], beyond flagd 0.16);
//! CORS as flagd configures it (`crate::protocols::cors`, shared with the evaluation port: every origin when
//! `--cors-origin` is empty; every response header exposed, so browsers can read `ETag`).
//!
//! It reads and resolves through the neutral core (`crate::eval`: context assembly with `-X` and `-H`,
//! `Flagd-Selector`, flag lookup, the bulk selection, response metadata), so OFREP and gRPC answer alike;
//! nothing here touches gRPC types.
//!
//! What it does not do: bind or accept (the runtime serves this router through `crate::transport`, which
//! applies the header size limit and header read timeout), or record the flagd evaluation counters
//! (`feature_flag.flagd.impression`, `.result.reason`): flagd does not record them for OFREP, and doing so
//! would make dashboards count differently after a switch to flagpole. Only the HTTP request histogram is
//! recorded, labelled with the route template (never the raw path, whose flag key a client controls).

pub mod etag;
pub mod failure;
pub mod request;
pub mod sse;
pub mod wire;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flagpole_engine::{
    Context, ErrorCode, EvalError, EvalOptions, Flag, Outcome, TypedValue, ValueType,
};
use http::header::{CONTENT_TYPE, ETAG};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;

use crate::eval::Evaluator;
use crate::eval::metadata::ResponseMetadata;
use crate::eval::resolve::bulk_selection;
use crate::metrics::Metrics;
use failure::OfrepFailure;
use wire::{Bulk, DetailsOnly, GoMetadata, RequestFailure};

/// The single-flag route.
pub const FLAG_ROUTE: &str = "/ofrep/v1/evaluate/flags/{key}";
/// The bulk route.
pub const BULK_ROUTE: &str = "/ofrep/v1/evaluate/flags";
/// The bulk route with a trailing slash (some clients send it).
const BULK_ROUTE_SLASH: &str = "/ofrep/v1/evaluate/flags/";
/// The configuration route.
pub const CONFIGURATION_ROUTE: &str = "/ofrep/v1/configuration";

/// The shortest polling interval advertised to OFREP clients, in milliseconds. A revalidation answered 304
/// costs the daemon about one bulk evaluation (tens of microseconds for 100 flags, `BENCHMARKS.md`) and almost
/// no transfer, so once a second per client is affordable.
pub const MIN_POLLING_INTERVAL_MS: u64 = 1000;

/// The OFREP server's settings.
#[derive(Debug, Clone)]
pub struct OfrepOptions {
    /// `--cors-origin`: allowed origins (`*` for any; one `*` inside a pattern matches any text there, as in
    /// flagd's rs/cors). Empty allows every origin, as flagd does.
    pub cors_origins: Vec<String>,
    /// `--max-request-body`: the largest request body read, in bytes.
    pub max_request_body: usize,
    /// `--ofrep-sse-enabled`: change streams and their settings.
    pub sse: Option<sse::SseOptions>,
}

impl Default for OfrepOptions {
    fn default() -> Self {
        OfrepOptions {
            cors_origins: Vec::new(),
            max_request_body: crate::config::DEFAULT_MAX_REQUEST_BYTES as usize,
            sse: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Ofrep {
    evaluator: Evaluator,
    max_request_body: usize,
    configuration: Arc<Configuration>,
    /// Change streams, with `--ofrep-sse-enabled`.
    sse: Option<sse::SseOptions>,
}

#[derive(Debug)]
struct Configuration {
    body: Bytes,
    etag: String,
}

/// The OFREP router over the evaluation core.
pub fn router(evaluator: Evaluator, options: &OfrepOptions) -> Router {
    if options.cors_origins.is_empty() {
        tracing::info!(
            "OFREP allows cross-origin requests from every origin (flagd's default); restrict with --cors-origin"
        );
    }
    let config_body = configuration_body();
    let metrics = evaluator.metrics().clone();
    let state = Ofrep {
        evaluator,
        max_request_body: options.max_request_body,
        configuration: Arc::new(Configuration {
            etag: etag::etag(&config_body),
            body: Bytes::from(config_body),
        }),
        sse: options.sse.clone(),
    };
    Router::new()
        .route(FLAG_ROUTE, post(evaluate_flag))
        .route(BULK_ROUTE, post(evaluate_all))
        .route(BULK_ROUTE_SLASH, post(evaluate_all))
        .route(CONFIGURATION_ROUTE, get(configuration))
        .route(sse::EVENTS_ROUTE, get(sse::events))
        .layer(middleware::from_fn_with_state(metrics, record_request))
        .layer(crate::protocols::cors::layer(&options.cors_origins))
        .with_state(state)
}

/// `GET /ofrep/v1/configuration` (OFREP's `configurationResponse`).
fn configuration_body() -> Vec<u8> {
    let value = serde_json::json!({
        "name": "flagpole",
        "capabilities": {
            "cacheInvalidation": {
                "polling": { "enabled": true, "minPollingIntervalMs": MIN_POLLING_INTERVAL_MS }
            },
            "flagEvaluation": {
                "supportedTypes": ["boolean", "string", "int", "float", "object"]
            }
        }
    });
    value.to_string().into_bytes()
}

async fn configuration(State(state): State<Ofrep>, headers: HeaderMap) -> Response {
    let configuration = &state.configuration;
    tagged(&headers, &configuration.etag, configuration.body.clone())
}

async fn evaluate_flag(
    State(state): State<Ofrep>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(Path(key)) = path else {
        return failed(None, &OfrepFailure::Path);
    };
    let request =
        match request::read(&state.evaluator, &headers, body, state.max_request_body).await {
            Ok(request) => request,
            Err(error) => return failed(Some(&key), &OfrepFailure::Request(error)),
        };
    let snapshot = state.evaluator.snapshot();
    let Some(flag) = snapshot.get(&key, &request.selector) else {
        let not_found = Outcome::failed(EvalError::not_found(&key));
        crate::eval::resolve::note(&key, None, &request.context, &not_found);
        let metadata = ResponseMetadata::reflection(&request.selector);
        let (status, entry) = wire::entry(&key, &not_found, metadata);
        return json(status, &entry);
    };
    let outcome = state
        .evaluator
        .evaluate(flag, &request.context, &state.evaluator.options());
    crate::eval::resolve::note(&key, Some(flag), &request.context, &outcome);
    let metadata = ResponseMetadata::of_flag(&request.selector, &flag.metadata);
    let (status, entry) = wire::entry(&key, &outcome, metadata);
    json(status, &entry)
}

async fn evaluate_all(State(state): State<Ofrep>, headers: HeaderMap, body: Body) -> Response {
    let request =
        match request::read(&state.evaluator, &headers, body, state.max_request_body).await {
            Ok(request) => request,
            Err(error) => return failed(None, &OfrepFailure::Request(error)),
        };
    let snapshot = state.evaluator.snapshot();
    let flags = bulk_selection(&snapshot, &request.selector);
    let options = state.evaluator.options();
    let outcomes: Vec<Outcome<'_>> = flags
        .iter()
        .map(|flag| bulk_outcome(&state.evaluator, flag, &request.context, &options))
        .collect();
    crate::telemetry::note_bulk(outcomes.len(), &request.context);
    let bulk = Bulk {
        flags: flags
            .iter()
            .zip(&outcomes)
            .map(|(flag, outcome)| {
                let metadata = ResponseMetadata::of_flag(&request.selector, &flag.metadata);
                wire::entry(&flag.key, outcome, metadata).1
            })
            .collect(),
        metadata: GoMetadata(ResponseMetadata::reflection(&request.selector)),
        event_streams: state
            .sse
            .as_ref()
            .map(|options| sse::advertisement(options, &request.selector)),
    };
    match serde_json::to_vec(&bulk) {
        Ok(body) => tagged(&headers, &etag::etag(&body), Bytes::from(body)),
        Err(error) => {
            tracing::error!(%error, "cannot encode an OFREP bulk response");
            failed(None, &OfrepFailure::Encoding)
        }
    }
}

/// One flag of a bulk evaluation, as flagd's bulk path evaluates it: as the type of its default variant
/// (`ValueType::of_default_variant`), so a variant of another type fails, with GENERAL where a typed call
/// would say TYPE_MISMATCH (`docs/protocols.md#ofrep-port-8016`). Flags whose default variant has no such
/// type (none, `null`, an array) are evaluated untyped, as a single-flag request is.
fn bulk_outcome<'f>(
    evaluator: &Evaluator,
    flag: &'f Flag,
    context: &Context,
    options: &EvalOptions,
) -> Outcome<'f> {
    let outcome = evaluator.evaluate(flag, context, options);
    match (ValueType::of_default_variant(flag), &outcome) {
        (Some(ty), Outcome::Value { variant, value, .. })
            if TypedValue::of(value, ty).is_none() =>
        {
            Outcome::Failed {
                error: EvalError {
                    code: ErrorCode::General,
                    message: format!("variant {variant:?} is not of the default variant's type"),
                },
                variant: Some(variant),
            }
        }
        _ => outcome,
    }
}

/// A JSON body with its entity tag, or `304 Not Modified` when the client already has it.
fn tagged(headers: &HeaderMap, tag: &str, body: Bytes) -> Response {
    let Ok(tag_value) = HeaderValue::from_str(tag) else {
        return json_bytes(StatusCode::OK, body);
    };
    if etag::not_modified(headers, tag) {
        return (StatusCode::NOT_MODIFIED, [(ETAG, tag_value)]).into_response();
    }
    let mut response = json_bytes(StatusCode::OK, body);
    response.headers_mut().insert(ETAG, tag_value);
    response
}

/// A failed request's response: `failure`'s answer in flagd's body shape (only `errorDetails` where flagd
/// sends only that).
fn failed(key: Option<&str>, failure: &OfrepFailure) -> Response {
    let answer = failure.answer(key);
    match answer.error_code {
        None => json(
            answer.status,
            &DetailsOnly {
                error_details: &answer.details,
            },
        ),
        Some(error_code) => json(
            answer.status,
            &RequestFailure {
                key,
                error_code,
                error_details: answer.details,
            },
        ),
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => json_bytes(status, Bytes::from(body)),
        Err(error) => {
            tracing::error!(%error, "cannot encode an OFREP response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

/// The request instruments and span (`crate::telemetry::observe`), labelled with the route template.
async fn record_request(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>();
    let route = OFREP_ROUTES
        .iter()
        .find(|route| matched.is_some_and(|m| m.as_str() == **route))
        .copied()
        .unwrap_or("");
    let info = crate::telemetry::observe::RequestInfo {
        route,
        span_name: OFREP_SPAN,
    };
    crate::telemetry::observe::observe_request(&metrics, info, request, next).await
}

/// The route templates the OFREP router serves (an unmatched request has the route "", as before).
const OFREP_ROUTES: [&str; 5] = [
    FLAG_ROUTE,
    BULK_ROUTE,
    BULK_ROUTE_SLASH,
    CONFIGURATION_ROUTE,
    sse::EVENTS_ROUTE,
];

/// The name of an OFREP request's span (flagd's).
const OFREP_SPAN: &str = "flagd.ofrep";
