//! OFREP change streams (server-sent events, OFREP's ADR-0008), with `--ofrep-sse-enabled`
//! (`docs/protocols.md#ofrep-change-streams`).
//!
//! A successful bulk evaluation advertises one stream per selector in `eventStreams`:
//! `{"type": "sse", "endpoint": {"requestUri": "/ofrep/v1/events?selector=…"}, "inactivityDelaySec": N}`,
//! or, with `--ofrep-sse-public-url`, `"url": PUBLIC_URL + requestUri` (for clients behind a proxy). The
//! stream (`GET /ofrep/v1/events`) sends `data: {"type": "refetchEvaluation", "flags": [KEYS]}` whenever a
//! change alters the selected flags (the keys written, updated or deleted; at most
//! [`MAX_EVENT_FLAG_KEYS`], beyond which `flags` is left out), and a comment line every
//! [`SSE_KEEP_ALIVE`] so that proxies keep it and a vanished client is noticed. The client then fetches
//! the bulk evaluation again with its `If-None-Match`: an unchanged answer is a 304. No ETag is sent in
//! the event: flagpole's tags hash each answer, which depends on the client's context.
//!
//! `inactivityDelaySec` (`--ofrep-sse-inactivity-delay`, default [`DEFAULT_INACTIVITY_DELAY`]) tells
//! clients how long to keep a stream open while their page is hidden; the server closes a stream when the
//! client goes away, when it shuts down, or after [`MAX_STREAM_AGE`] (the client reconnects; no change is
//! lost, as it refetches on reconnect).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use flagpole_engine::{Selector, Snapshot};
use futures::Stream;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Ofrep;
use crate::protocols::diffs::SharedDiffs;

/// The change-stream route.
pub const EVENTS_ROUTE: &str = "/ofrep/v1/events";

/// `--ofrep-sse-inactivity-delay` when not given (OFREP's default).
pub const DEFAULT_INACTIVITY_DELAY: Duration = Duration::from_secs(120);

/// A comment line is sent after this long without an event.
pub const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A stream is closed after this long (the client reconnects and refetches), so that no connection
/// lives for ever on stale routing.
pub const MAX_STREAM_AGE: Duration = Duration::from_secs(3600);

/// Most flag keys named in one event.
pub const MAX_EVENT_FLAG_KEYS: usize = 1000;

/// The change-stream settings.
#[derive(Debug, Clone)]
pub struct SseOptions {
    /// `--ofrep-sse-inactivity-delay`.
    pub inactivity_delay: Duration,
    /// `--ofrep-sse-public-url`: the origin (and path prefix) clients reach the OFREP port at.
    pub public_url: Option<String>,
    /// Ends every stream at shutdown.
    pub shutdown: CancellationToken,
    /// Each change's event text, computed once per selector for every stream.
    pub diffs: Arc<SharedDiffs<Arc<str>>>,
}

/// The `eventStreams` entry of a bulk answer for `selector`.
pub fn advertisement(options: &SseOptions, selector: &Selector) -> Value {
    let request_uri = match selector {
        Selector::All => EVENTS_ROUTE.to_owned(),
        other => format!(
            "{EVENTS_ROUTE}?selector={}",
            crate::percent_encode(&other.to_string())
        ),
    };
    let mut stream = json!({
        "type": "sse",
        "inactivityDelaySec": options.inactivity_delay.as_secs(),
    });
    match &options.public_url {
        Some(public) => {
            stream["url"] = json!(format!("{}{request_uri}", public.trim_end_matches('/')))
        }
        None => stream["endpoint"] = json!({"requestUri": request_uri}),
    }
    json!([stream])
}

/// `GET /ofrep/v1/events` query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    /// A `Flagd-Selector`.
    selector: Option<String>,
}

/// `GET /ofrep/v1/events[?selector=…]`.
pub(super) async fn events(
    State(state): State<Ofrep>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(options) = state.sse.clone() else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"errorDetails": "change streams are off (--ofrep-sse-enabled)"})),
        )
            .into_response();
    };
    let selector = match query {
        Ok(Query(EventsQuery { selector: None })) => Selector::All,
        Ok(Query(EventsQuery {
            selector: Some(text),
        })) => match text.parse() {
            Ok(selector) => selector,
            Err(error) => return bad_request(format!("selector: {error}")),
        },
        Err(rejection) => return bad_request(rejection.body_text()),
    };
    let mut watch = state.evaluator.store().subscribe();
    let last = watch.borrow_and_update().clone();
    let stream = Subscriber {
        diffs: options.diffs.clone(),
        watch,
        last,
        selector,
        shutdown: options.shutdown.clone(),
        ends_at: Instant::now() + MAX_STREAM_AGE,
        _gauge: SseGauge::new(&state),
    };
    Sse::new(changes(stream))
        .keep_alive(KeepAlive::new().interval(SSE_KEEP_ALIVE).text("keep-alive"))
        .into_response()
}

fn bad_request(details: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"errorDetails": details})),
    )
        .into_response()
}

/// Counts open change streams in the metrics while it lives.
struct SseGauge(crate::metrics::Metrics);

impl SseGauge {
    fn new(state: &Ofrep) -> Self {
        let metrics = state.evaluator.metrics().clone();
        metrics.sse_stream_opened();
        crate::memory::stream_opened();
        SseGauge(metrics)
    }
}

impl Drop for SseGauge {
    fn drop(&mut self) {
        self.0.sse_stream_closed();
    }
}

struct Subscriber {
    diffs: Arc<SharedDiffs<Arc<str>>>,
    watch: watch::Receiver<Arc<Snapshot>>,
    last: Arc<Snapshot>,
    selector: Selector,
    shutdown: CancellationToken,
    ends_at: Instant,
    _gauge: SseGauge,
}

/// The events of one stream: one per change that alters the selection.
fn changes(subscriber: Subscriber) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    futures::stream::unfold(subscriber, |mut s| async move {
        loop {
            tokio::select! {
                () = s.shutdown.cancelled() => return None,
                () = tokio::time::sleep_until(s.ends_at) => return None,
                changed = s.watch.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    let new = s.watch.borrow_and_update().clone();
                    let data = s.diffs.get(&s.last, &new, &s.selector, event_data);
                    s.last = new;
                    let Some(data) = data else { continue };
                    return Some((Ok(Event::default().data(&*data)), s));
                }
            }
        }
    })
}

/// A change's event: `{"type": "refetchEvaluation", "flags": [KEYS]}`.
fn event_data(diff: &std::collections::BTreeMap<String, flagpole_engine::ChangeKind>) -> Arc<str> {
    let mut data = json!({"type": "refetchEvaluation"});
    if diff.len() <= MAX_EVENT_FLAG_KEYS {
        data["flags"] = json!(diff.keys().collect::<Vec<_>>());
    }
    Arc::from(data.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertisement_names_the_selector_and_the_public_url() {
        let mut options = SseOptions {
            inactivity_delay: Duration::from_secs(90),
            public_url: None,
            shutdown: CancellationToken::new(),
            diffs: Arc::default(),
        };
        assert_eq!(
            advertisement(&options, &Selector::All),
            json!([{"type": "sse", "inactivityDelaySec": 90, "endpoint": {"requestUri": "/ofrep/v1/events"}}])
        );
        let selector: Selector = "flagSetId=my app".parse().unwrap();
        options.public_url = Some("https://flags.example.com/".into());
        assert_eq!(
            advertisement(&options, &selector),
            json!([{"type": "sse", "inactivityDelaySec": 90,
                    "url": "https://flags.example.com/ofrep/v1/events?selector=flagSetId%3Dmy%20app"}])
        );
    }
}
