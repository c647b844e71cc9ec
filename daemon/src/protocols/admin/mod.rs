//! The management port (8014): `/healthz`, `/readyz`, `/metrics`, and gRPC `grpc.health.v1.Health`.
//!
//! `/healthz` is liveness (200 while the process serves). `/readyz` follows [`Readiness`]: 412 until every
//! source has loaded once, 200 after, and 412 again while shutting down; its body says `ready` or
//! `not ready` and then one line per source (consecutive failures, unix times of the last success and the
//! last error, `overdue`, and `stale_since` while it serves its last-known-good flags). `/metrics` is the
//! Prometheus text exposition of [`Metrics`]. gRPC health answers SERVING for the whole server and, as in
//! flagd, does not follow readiness; a request with `content-type: application/grpc*` goes to it,
//! everything else to the HTTP routes, on the same HTTP/2-capable listener (as flagd routes it).
//!
//! Beyond flagd, the admin API (`api`: overrides, the kill switch) with its token check (`auth`), off the
//! evaluation path (`docs/admin.md`).
//!
//! What it does not do: bind or serve (the runtime does), or TLS (flagd has none here).

pub mod api;
pub mod auth;
pub mod dashboard;
mod explain;
mod flags;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tonic::service::Routes;
use tower::ServiceExt;

use crate::metrics::Metrics;
use crate::readiness::Readiness;

/// What the management handlers read.
#[derive(Debug, Clone)]
struct ManagementState {
    readiness: Readiness,
    metrics: Metrics,
}

/// Content type of the `/metrics` page (OpenMetrics text, which Prometheus scrapes natively).
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The management router.
pub fn router(readiness: Readiness, metrics: Metrics, admin: api::AdminApi) -> Router {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let grpc = Routes::new(health).into_axum_router();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .with_state(ManagementState { readiness, metrics })
        .merge(api::routes(admin))
        .layer(middleware::from_fn_with_state(grpc, route_grpc))
}

/// Sends gRPC requests (by content type) to the gRPC health service, everything else on.
async fn route_grpc(State(grpc): State<Router>, request: Request, next: Next) -> Response {
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if !is_grpc {
        return next.run(request).await;
    }
    match grpc.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

async fn healthz() -> StatusCode {
    StatusCode::OK
}

/// The status is what probes read; the body adds, for people, the state of each source.
async fn readyz(State(state): State<ManagementState>) -> (StatusCode, String) {
    let (status, mut body) = if state.readiness.is_ready() {
        (StatusCode::OK, String::from("ready\n"))
    } else {
        (StatusCode::PRECONDITION_FAILED, String::from("not ready\n"))
    };
    let time = |t: Option<i64>| t.map_or_else(|| "never".to_owned(), |t| t.to_string());
    for (source, fetch) in state.metrics.source_fetch_states() {
        let stale = fetch
            .stale_since
            .map(|t| format!(" stale_since={t}"))
            .unwrap_or_default();
        body.push_str(&format!(
            "source {source}: consecutive_failures={} last_success={} last_error={}{}{stale}\n",
            fetch.consecutive_failures,
            time(fetch.last_success),
            time(fetch.last_error),
            if fetch.overdue { " overdue" } else { "" }
        ));
    }
    (status, body)
}

async fn metrics_page(State(state): State<ManagementState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
}
