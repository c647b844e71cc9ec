//! CORS as flagd configures it (rs/cors): the `--cors-origin` list, or every origin when it is empty (flagd's
//! default, kept for compatibility and logged at start); methods HEAD, GET, POST, PUT, PATCH, DELETE; any
//! request header; every response header exposed (browsers need `grpc-status`, `grpc-message` and the
//! Connect headers).

use http::Method;
use http::header::HeaderValue;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};

/// The CORS layer for `origins` (`*` for any; one `*` inside a pattern matches any text there).
pub fn layer(origins: &[String]) -> CorsLayer {
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
