//! CORS as flagd configures it (rs/cors): the `--cors-origin` list, or every origin when it is empty (flagd's
//! default, kept for compatibility and logged at start); methods HEAD, GET, POST, PUT, PATCH, DELETE; any
//! request header; every response header exposed (browsers need `grpc-status`, `grpc-message` and the
//! Connect headers). As with rs/cors, a request without an `Origin` header (every gRPC client, curl) is
//! not a CORS request: it goes straight to the service and its answer carries no CORS headers.

use std::task::{Context, Poll};

use futures::future::Either;
use http::header::{HeaderValue, ORIGIN};
use http::{Method, Request, Response};
use tower::{Layer, Service};
use tower_http::cors::{AllowHeaders, AllowOrigin, Cors, CorsLayer, ExposeHeaders};

/// The CORS layer for `origins` (`*` for any; one `*` inside a pattern matches any text there).
pub fn layer(origins: &[String]) -> BrowserCors {
    BrowserCors(cors_layer(origins))
}

/// tower-http's CORS, applied only to requests that carry an `Origin`.
#[derive(Debug, Clone)]
pub struct BrowserCors(CorsLayer);

impl<S: Clone> Layer<S> for BrowserCors {
    type Service = OriginGate<S>;

    fn layer(&self, inner: S) -> OriginGate<S> {
        OriginGate {
            cors: self.0.layer(inner.clone()),
            plain: inner,
        }
    }
}

/// Routes a request with an `Origin` through CORS and any other one straight to the service.
#[derive(Debug, Clone)]
pub struct OriginGate<S> {
    plain: S,
    cors: Cors<S>,
}

impl<S, B, R> Service<Request<B>> for OriginGate<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    R: Default,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Either<S::Future, <Cors<S> as Service<Request<B>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both are the same (always ready) router service; a request uses the one its `Origin` picks.
        match self.plain.poll_ready(cx) {
            Poll::Ready(Ok(())) => self.cors.poll_ready(cx),
            other => other,
        }
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.headers().contains_key(ORIGIN) {
            Either::Right(self.cors.call(request))
        } else {
            Either::Left(self.plain.call(request))
        }
    }
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.is_empty() || origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let origins = origins.to_vec();
        AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin
                .to_str()
                .is_ok_and(|origin| origins.iter().any(|p| origin_matches(p, origin)))
        })
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::HEAD,
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(ExposeHeaders::any())
}

/// Whether `origin` matches `pattern` (case-insensitive; at most one `*` wildcard).
fn origin_matches(pattern: &str, origin: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let origin = origin.to_ascii_lowercase();
    match pattern.split_once('*') {
        None => pattern == origin,
        Some((prefix, suffix)) => {
            origin.len() >= prefix.len() + suffix.len()
                && origin.starts_with(prefix)
                && origin.ends_with(suffix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::origin_matches;

    #[test]
    fn patterns_match_exactly_or_around_one_wildcard() {
        assert!(origin_matches("https://app.example", "https://APP.example"));
        assert!(!origin_matches(
            "https://app.example",
            "https://app.example.evil"
        ));
        assert!(origin_matches("https://*.example", "https://a.b.example"));
        assert!(!origin_matches("https://*.example", "http://a.example"));
        assert!(!origin_matches("https://*example", "https:/"));
    }
}
