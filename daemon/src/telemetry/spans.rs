//! Spans: started by the request middlewares, the sync service and the sources, annotated by the
//! evaluation core, queued when they end, and exported in batches by one task (`super::export`).
//!
//! The queue is bounded (`OTEL_BSP_MAX_QUEUE_SIZE`): a span that finds it full is dropped and counted
//! (`flagpole_otel_dropped_total{signal="traces",reason="queue_full"}`), never waited for, so a collector
//! that is down or slow cannot slow a request (`docs/observability.md#when-the-collector-is-down`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, Status, span, status};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use super::context::{
    MAX_TRACESTATE_BYTES, Parent, Sampler, SpanId, TRACEPARENT, TRACESTATE, TraceId, new_span_id,
    new_trace_id, parse_traceparent,
};

/// The most attributes one span carries; more are not recorded (a fixed set is set by flagpole, so this
/// only guards the code itself).
const MAX_ATTRIBUTES: usize = 32;

/// Where spans go: the sampler and the export queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Tracer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sampler: Sampler,
    queue: mpsc::Sender<Span>,
    /// Spans dropped because the queue was full.
    dropped: Counter,
}

/// A span's kind (OTLP's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Work inside flagpole (a source reload).
    Internal,
    /// A request served.
    Server,
}

impl Tracer {
    /// A tracer sending ended spans into `queue`; `dropped` counts the ones the full queue refused.
    pub fn new(sampler: Sampler, queue: mpsc::Sender<Span>, dropped: Counter) -> Tracer {
        Tracer {
            inner: Arc::new(Inner {
                sampler,
                queue,
                dropped,
            }),
        }
    }

    /// Starts a span for a request with these headers: the caller's trace continues when `traceparent`
    /// names one. `None` when the sampler drops it (nothing is recorded then).
    pub fn start_request(
        &self,
        name: impl Into<Cow<'static, str>>,
        headers: &HeaderMap,
    ) -> Option<ActiveSpan> {
        let parent = headers
            .get(TRACEPARENT)
            .and_then(|value| parse_traceparent(value.as_bytes()));
        let mut active = self.start(name, Kind::Server, parent.as_ref())?;
        if parent.is_some()
            && let Some(state) = headers
                .get(TRACESTATE)
                .filter(|v| v.len() <= MAX_TRACESTATE_BYTES)
                .and_then(|v| v.to_str().ok())
        {
            active.span.trace_state = state.to_owned();
        }
        Some(active)
    }

    /// Starts a span, a child of `parent` when given, else the root of a new trace.
    pub fn start(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: Kind,
        parent: Option<&Parent>,
    ) -> Option<ActiveSpan> {
        let trace_id: TraceId = parent.map_or_else(new_trace_id, |p| p.trace_id);
        if !self.inner.sampler.sample(&trace_id, parent) {
            return None;
        }
        let span_id: SpanId = new_span_id();
        let span = Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: parent.map(|p| p.span_id.to_vec()).unwrap_or_default(),
            name: name.into().into_owned(),
            kind: match kind {
                Kind::Internal => span::SpanKind::Internal,
                Kind::Server => span::SpanKind::Server,
            } as i32,
            start_time_unix_nano: unix_nanos(SystemTime::now()),
            // The sampled flag, and "the parent is remote" where there is one (OTLP's span flags).
            flags: 0x100 | if parent.is_some() { 0x200 } else { 0 } | 1,
            ..Span::default()
        };
        Some(ActiveSpan {
            tracer: self.clone(),
            span,
            started: Instant::now(),
        })
    }

    fn send(&self, span: Span) {
        if self.inner.queue.try_send(span).is_err() {
            self.inner.dropped.inc();
        }
    }
}

/// A span being recorded; it is queued for export by [`ActiveSpan::end`] (or when dropped).
#[derive(Debug)]
pub struct ActiveSpan {
    tracer: Tracer,
    span: Span,
    started: Instant,
}

impl ActiveSpan {
    /// Sets a string attribute.
    pub fn set(&mut self, key: &'static str, value: impl Into<String>) {
        self.push(key, any_value::Value::StringValue(value.into()));
    }

    /// Sets an integer attribute.
    pub fn set_int(&mut self, key: &'static str, value: i64) {
        self.push(key, any_value::Value::IntValue(value));
    }

    /// Sets a boolean attribute.
    pub fn set_bool(&mut self, key: &'static str, value: bool) {
        self.push(key, any_value::Value::BoolValue(value));
    }

    fn push(&mut self, key: &'static str, value: any_value::Value) {
        let attributes = &mut self.span.attributes;
        if let Some(existing) = attributes.iter_mut().find(|kv| kv.key == key) {
            existing.value = Some(AnyValue { value: Some(value) });
        } else if attributes.len() < MAX_ATTRIBUTES {
            attributes.push(KeyValue {
                key: key.to_owned(),
                value: Some(AnyValue { value: Some(value) }),
                ..KeyValue::default()
            });
        }
    }

    /// Marks the span failed, with a message (an error code, never a request's data).
    pub fn fail(&mut self, message: impl Into<String>) {
        self.span.status = Some(Status {
            code: status::StatusCode::Error as i32,
            message: message.into(),
        });
    }

    /// The span's trace id.
    pub fn trace_id(&self) -> &[u8] {
        &self.span.trace_id
    }

    /// Ends the span now and queues it for export.
    pub fn end(self) {
        drop(self);
    }
}

impl Drop for ActiveSpan {
    fn drop(&mut self) {
        let elapsed = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.span.end_time_unix_nano = self.span.start_time_unix_nano.saturating_add(elapsed);
        let span = std::mem::take(&mut self.span);
        self.tracer.send(span);
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

tokio::task_local! {
    /// The request span of the task serving a request, for the evaluation core to annotate.
    static CURRENT: RefCell<Option<ActiveSpan>>;
}

/// Runs `future` (a request's handling) with `span` as the span the evaluation core annotates, and hands
/// the span back when it is done.
pub async fn in_span<F: Future>(span: ActiveSpan, future: F) -> (F::Output, Option<ActiveSpan>) {
    let cell = RefCell::new(Some(span));
    let (output, cell) = CURRENT
        .scope(cell, async move {
            let output = future.await;
            let span = CURRENT.with(|c| c.borrow_mut().take());
            (output, span)
        })
        .await;
    (output, cell)
}

/// Annotates the current request's span, if the task serving it records one (a no-op otherwise).
pub fn annotate(f: impl FnOnce(&mut ActiveSpan)) {
    let _ = CURRENT.try_with(|cell| {
        if let Some(span) = cell.borrow_mut().as_mut() {
            f(span);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracer(sampler: Sampler, capacity: usize) -> (Tracer, mpsc::Receiver<Span>, Counter) {
        let (tx, rx) = mpsc::channel(capacity);
        let dropped = Counter::default();
        (Tracer::new(sampler, tx, dropped.clone()), rx, dropped)
    }

    #[tokio::test]
    async fn a_request_span_continues_the_callers_trace_and_carries_its_annotations() {
        let (tracer, mut rx, _) = tracer(Sampler::default(), 8);
        let mut headers = HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        headers.insert(TRACESTATE, "vendor=1".parse().unwrap());
        let span = tracer.start_request("resolveBoolean", &headers).unwrap();
        let (answer, span) = in_span(span, async {
            annotate(|s| s.set("feature_flag.key", "my-flag"));
            42
        })
        .await;
        assert_eq!(answer, 42);
        span.expect("handed back").end();
        let span = rx.recv().await.unwrap();
        assert_eq!(span.name, "resolveBoolean");
        assert_eq!(
            super::super::context::hex(&span.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            super::super::context::hex(&span.parent_span_id),
            "00f067aa0ba902b7"
        );
        assert_eq!(span.trace_state, "vendor=1");
        assert_eq!(span.kind, span::SpanKind::Server as i32);
        assert_eq!(span.attributes[0].key, "feature_flag.key");
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
        // Outside a request nothing happens.
        annotate(|_| panic!("no current span"));
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (tracer, _rx, dropped) = tracer(Sampler::AlwaysOn, 2);
        for _ in 0..5 {
            tracer.start("x", Kind::Internal, None).unwrap().end();
        }
        assert_eq!(dropped.get(), 3);
    }

    #[tokio::test]
    async fn an_unsampled_caller_is_not_recorded_by_default() {
        let (tracer, mut rx, _) = tracer(Sampler::default(), 2);
        let mut headers = HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
                .parse()
                .unwrap(),
        );
        assert!(tracer.start_request("resolveBoolean", &headers).is_none());
        drop(tracer);
        assert!(rx.recv().await.is_none());
    }
}
