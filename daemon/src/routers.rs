//! The daemon's four HTTP surfaces, built in one place: the evaluation port (gRPC, gRPC-Web, Connect, with
//! CORS, the body limits and the request histogram), OFREP, sync and management. `run` serves them, and the
//! fuzz harness ([`crate::fuzzing`]) drives the same routers without sockets, so the two cannot drift.
//!
//! What it does not do: bind, serve or choose TLS (the runtime and [`crate::transport`] do).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::time::Instant;

use crate::eval::Evaluator;
use crate::metrics::Metrics;
use crate::protocols::connect::{self, Connect};
use crate::protocols::grpc::Services;
use crate::protocols::{admin, cors, ofrep};
use crate::readiness::Readiness;

/// What shapes the routers beyond the services themselves.
#[derive(Debug, Clone, Default)]
pub struct RouterOptions {
    /// `--cors-origin` (empty: every origin, as flagd).
    pub cors_origins: Vec<String>,
    /// `--max-request-body` for the HTTP protocols (Connect, OFREP; `usize::MAX`: no limit).
    pub max_request_body: usize,
    /// OFREP change streams, with `--ofrep-sse-enabled`.
    pub ofrep_sse: Option<ofrep::sse::SseOptions>,
}

/// The routers of the four ports.
#[derive(Debug, Clone)]
pub struct Routers {
    /// Port 8013: gRPC, gRPC-Web and Connect for every evaluation service.
    pub evaluation: Router,
    /// Port 8016: OFREP.
    pub ofrep: Router,
    /// Port 8015: the sync service.
    pub sync: Router,
    /// Port 8014: `/healthz`, `/readyz`, `/metrics`, gRPC health.
    pub management: Router,
}

impl Routers {
    /// Builds every router: OFREP over the evaluation core, the evaluation and sync ports over the gRPC
    /// services (which share that core), management over the readiness latches and the admin API.
    pub fn new(
        evaluator: &Evaluator,
        grpc: &Services,
        readiness: &Readiness,
        admin: &admin::api::AdminApi,
        options: &RouterOptions,
    ) -> Routers {
        let metrics = evaluator.metrics();
        let evaluation = evaluation_router(
            grpc.evaluation_routes().into_axum_router(),
            &options.cors_origins,
            options.max_request_body,
        )
        .layer(middleware::from_fn_with_state(
            RequestLog::new(metrics.clone()),
            record_request,
        ));
        let ofrep = ofrep::router(
            evaluator.clone(),
            &ofrep::OfrepOptions {
                cors_origins: options.cors_origins.clone(),
                max_request_body: options.max_request_body,
                sse: options.ofrep_sse.clone(),
            },
        );
        Routers {
            evaluation,
            ofrep,
            sync: grpc.sync_routes().into_axum_router(),
            management: admin::router(readiness.clone(), metrics.clone(), admin.clone()),
        }
    }
}

/// The evaluation port's HTTP surface around the gRPC services: the request-body idle timeout
/// (`crate::transport`), CORS, then Connect (translated to gRPC), then gRPC-Web (tonic-web), then the gRPC
/// routes. All three protocols therefore reach the same handlers, routed by path as in flagd
/// (`/flagd.evaluation.v2.Service/…`, `/flagd.evaluation.v1.Service/…`, `/schema.v1.Service/…`).
///
/// A plain gRPC request (what every gRPC SDK sends) skips the browser layers, which would each pass it
/// through untouched anyway: [`PlainGrpcFirst`].
fn evaluation_router(grpc: Router, cors_origins: &[String], max_request_body: usize) -> Router {
    let connect = Arc::new(Connect::new(max_request_body));
    let grpc_web = tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), grpc.clone());
    let browsers = Router::new()
        .fallback_service(grpc_web)
        .layer(middleware::from_fn_with_state(connect, connect::middleware))
        .layer(cors::layer(cors_origins));
    Router::new()
        .fallback_service(PlainGrpcFirst { grpc, browsers })
        .layer(tower::util::MapRequestLayer::new(
            crate::transport::body_idle_timeout,
        ))
}

/// Sends a plain gRPC request straight to the gRPC routes and every other one (gRPC-Web, Connect, a CORS
/// request, anything unrecognised) through the browser layers. Plain means a `content-type` of
/// `application/grpc` or `application/grpc+…` and no `Origin` header: the CORS layer passes a request
/// without `Origin` through, Connect passes `application/grpc…` through and tonic-web passes what is not
/// gRPC-Web through, so the answer is the same either way, for an eighth fewer instructions per request
/// (BENCHMARKS.md, "Plain gRPC skips the browser layers").
#[derive(Debug, Clone)]
struct PlainGrpcFirst {
    grpc: Router,
    browsers: Router,
}

impl tower::Service<Request> for PlainGrpcFirst {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = <Router as tower::Service<Request>>::Future;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Both routers are always ready (axum's `Router` is).
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if is_plain_grpc(request.headers()) {
            self.grpc.call(request)
        } else {
            self.browsers.call(request)
        }
    }
}

/// `content-type: application/grpc` or `application/grpc+…` (any case), without `Origin`.
fn is_plain_grpc(headers: &http::HeaderMap) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    let Some(content_type) = headers.get(http::header::CONTENT_TYPE) else {
        return false;
    };
    let bytes = content_type.as_bytes();
    bytes.len() >= GRPC.len()
        && bytes[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(bytes.get(GRPC.len()), None | Some(b'+'))
        && !headers.contains_key(http::header::ORIGIN)
}

/// Per-request bookkeeping on the evaluation port: the duration histogram and, at debug level, one line
/// per request with an id (never the request body, so never context values).
#[derive(Debug, Clone)]
struct RequestLog {
    metrics: Metrics,
    next_id: Arc<AtomicU64>,
}

impl RequestLog {
    fn new(metrics: Metrics) -> Self {
        RequestLog {
            metrics,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }
}

async fn record_request(State(log): State<RequestLog>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = request.uri().path().to_owned();
    let id = log.next_id.fetch_add(1, Ordering::Relaxed);
    let info = crate::telemetry::observe::RequestInfo {
        route: crate::metrics::evaluation_route(&path),
        span_name: crate::telemetry::observe::evaluation_span_name(&path),
    };
    let response =
        crate::telemetry::observe::observe_request(&log.metrics, info, request, next).await;
    if tracing::enabled!(tracing::Level::DEBUG) {
        let status = response.status().as_u16();
        let elapsed_us = started.elapsed().as_micros() as u64;
        tracing::debug!(request_id = id, %path, status, elapsed_us, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    http::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn only_plain_grpc_without_origin_skips_the_browser_layers() {
        for plain in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC",
        ] {
            assert!(
                is_plain_grpc(&headers(&[("content-type", plain)])),
                "{plain}"
            );
        }
        for other in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpc-web-text",
            "application/grpc;charset=utf-8",
            "application/json",
            "application/connect+proto",
            "application/grp",
        ] {
            assert!(
                !is_plain_grpc(&headers(&[("content-type", other)])),
                "{other}"
            );
        }
        assert!(!is_plain_grpc(&headers(&[])));
        // A request with an Origin is a CORS request, whatever it carries.
        assert!(!is_plain_grpc(&headers(&[
            ("content-type", "application/grpc"),
            ("origin", "https://app.example"),
        ])));
    }
}
