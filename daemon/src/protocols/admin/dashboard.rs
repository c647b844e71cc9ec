//! The operator's dashboard on the management port (`docs/dashboard.md`): the page (`/ui/`, its script and
//! stylesheet, embedded in the binary — no external asset, so it works air-gapped), served under a strict
//! Content-Security-Policy; the sources with their health (`GET /api/v1/sources`); and the live change
//! journal as server-sent events (`GET /api/v1/changes/stream`), which the page follows instead of
//! reloading. Everything here reads; the page writes only through the token-checked override API.

use std::convert::Infallible;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use futures::Stream;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use super::api::AdminApi;

/// The page.
const INDEX_HTML: &str = include_str!("ui/index.html");
/// Its script.
const APP_JS: &str = include_str!("ui/app.js");
/// Its stylesheet.
const APP_CSS: &str = include_str!("ui/app.css");
/// Its icon.
const FAVICON_SVG: &str = include_str!("ui/favicon.svg");

/// The page's Content-Security-Policy: its own script, style and API, nothing else; no inline code, no
/// frames, no forms posting elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Most journal entries one live event carries (a reload of many flags is sent in parts).
pub const MAX_LIVE_ENTRIES: usize = 200;

/// A comment line follows this long without an event on the live stream.
pub const LIVE_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// The dashboard's routes.
pub fn routes(api: AdminApi) -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/ui/favicon.svg",
            get(|| async { asset(FAVICON_SVG, "image/svg+xml") }),
        )
        .route("/api/v1/sources", get(sources))
        .route("/api/v1/changes/stream", get(live_changes))
        .with_state(api)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /api/v1/sources`: each source (ascending priority) with its flag count, whether it is remote, and
/// its health once it has been read or fetched (files included); the last rejected payload's error from
/// the journal.
async fn sources(State(api): State<AdminApi>) -> Response {
    let states: std::collections::BTreeMap<String, crate::metrics::FetchState> = api
        .evaluator
        .metrics()
        .source_fetch_states()
        .into_iter()
        .collect();
    let list: Vec<serde_json::Value> = api
        .evaluator
        .store()
        .sources()
        .into_iter()
        .enumerate()
        .map(|(priority, (source, flags))| {
            let fetch = states.get(&*source);
            let last_rejected = api
                .journal
                .newest(|e| e.kind == crate::journal::Kind::Rejected && *e.source == *source);
            json!({
                "source": &*source,
                "priority": priority,
                "flags": flags,
                "remote": !api.file_sources.contains(&source),
                "lastSuccess": fetch.and_then(|f| f.last_success),
                "lastError": fetch.and_then(|f| f.last_error),
                "consecutiveFailures": fetch.map(|f| f.consecutive_failures),
                "overdue": fetch.is_some_and(|f| f.overdue),
                "staleSince": fetch.and_then(|f| f.stale_since),
                "lastRejected": last_rejected.map(|e| json!({"time": e.time, "error": e.error})),
            })
        })
        .collect();
    (StatusCode::OK, axum::Json(json!({"sources": list}))).into_response()
}

/// `GET /api/v1/changes/stream`: every journal entry recorded from now on, as `change` events whose data
/// is a JSON array of entries; ends at shutdown.
async fn live_changes(State(api): State<AdminApi>) -> impl IntoResponse {
    let mut latest = api.journal.subscribe();
    let seen = *latest.borrow_and_update();
    let state = (api, latest, seen);
    let stream = futures::stream::unfold(state, |(api, mut latest, mut seen)| async move {
        loop {
            tokio::select! {
                () = api.shutdown.cancelled() => return None,
                changed = latest.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    let newest = *latest.borrow_and_update();
                    let entries = api.journal.after(seen, MAX_LIVE_ENTRIES);
                    let Some(last) = entries.last() else { continue };
                    seen = last.seq;
                    if seen < newest {
                        // More than one event's worth: the rest follows in the next event.
                        latest.mark_changed();
                    }
                    let event = Event::default()
                        .event("change")
                        .json_data(&entries)
                        .unwrap_or_else(|_| Event::default().comment("unencodable"));
                    return Some((Ok::<_, Infallible>(event), (api, latest, seen)));
                }
            }
        }
    });
    live(stream)
}

fn live(
    stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> impl IntoResponse {
    Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(LIVE_KEEP_ALIVE)
            .text("keep-alive"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_stays_within_its_size_budget_and_has_no_inline_code() {
        // docs/dashboard.md: at most 32 KB uncompressed for the whole page.
        let total = INDEX_HTML.len() + APP_JS.len() + APP_CSS.len() + FAVICON_SVG.len();
        assert!(total <= 32 * 1024, "{total} bytes");
        // The CSP allows no inline script or style: the page must not need any.
        assert!(!INDEX_HTML.contains("<script>") && !INDEX_HTML.contains("style="));
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
        assert!(!APP_JS.contains("innerHTML"));
    }
}
