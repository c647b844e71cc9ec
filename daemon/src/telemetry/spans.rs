//! Spans: started by the request middlewares, the sync service and the sources, annotated by the
//! evaluation core, queued when they end, and exported in batches by one task (`super::export`).
//!
//! The queue is bounded (`OTEL_BSP_MAX_QUEUE_SIZE`): a span that finds it full is dropped and counted
//! (`flagpole_otel_dropped_total{signal="traces",reason="queue_full"}`), never waited for, so a collector
//! that is down or slow cannot slow a request (`docs/observability.md#when-the-collector-is-down`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, Status, span, status};

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string (static ones are not copied).
    Text(Cow<'static, str>),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
}

/// An ended span as recorded on the request path: ids as arrays, attribute keys static, values copied only
/// when they are not static. The export task turns it into OTLP ([`SpanRecord::into_proto`]), off the
/// request path.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    trace_id: TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
    trace_state: Option<Box<str>>,
    name: Cow<'static, str>,
    kind: Kind,
    start_unix_nano: u64,
    end_unix_nano: u64,
    attributes: Vec<(&'static str, Value)>,
    error: Option<Cow<'static, str>>,
}

impl SpanRecord {
    /// The OTLP span.
    pub fn into_proto(self) -> Span {
        Span {
            trace_id: self.trace_id.to_vec(),
            span_id: self.span_id.to_vec(),
            parent_span_id: self.parent.map(|p| p.to_vec()).unwrap_or_default(),
            trace_state: self.trace_state.map(String::from).unwrap_or_default(),
            name: self.name.into_owned(),
            kind: match self.kind {
                Kind::Internal => span::SpanKind::Internal,
                Kind::Server => span::SpanKind::Server,
            } as i32,
            start_time_unix_nano: self.start_unix_nano,
            end_time_unix_nano: self.end_unix_nano,
            // The sampled flag, and "the parent is remote" where there is one (OTLP's span flags).
            flags: 0x101 | if self.parent.is_some() { 0x200 } else { 0 },
            attributes: self
                .attributes
                .into_iter()
                .map(|(key, value)| KeyValue {
                    key: key.to_owned(),
                    value: Some(AnyValue {
                        value: Some(match value {
                            Value::Text(text) => any_value::Value::StringValue(text.into_owned()),
                            Value::Int(i) => any_value::Value::IntValue(i),
                            Value::Bool(b) => any_value::Value::BoolValue(b),
                        }),
                    }),
                    ..KeyValue::default()
                })
                .collect(),
            status: self.error.map(|message| Status {
                code: status::StatusCode::Error as i32,
                message: message.into_owned(),
            }),
            ..Span::default()
        }
    }
}
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use super::context::{
    MAX_TRACESTATE_BYTES, Parent, Sampler, SpanId, TRACEPARENT, TRACESTATE, TraceId, new_span_id,
    new_trace_id, parse_traceparent,
};

/// The most attributes one span carries; more are not recorded (a fixed set is set by flagpole, so this
/// only guards the code itself).
const MAX_ATTRIBUTES: usize = 32;

/// Room made for attributes when a span starts (a request span carries about ten).
const EXPECTED_ATTRIBUTES: usize = 12;

/// Where spans go: the sampler and the export queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Tracer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sampler: Sampler,
    queue: mpsc::Sender<SpanRecord>,
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
    pub fn new(sampler: Sampler, queue: mpsc::Sender<SpanRecord>, dropped: Counter) -> Tracer {
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
            active.span.trace_state = Some(state.into());
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
        let span = SpanRecord {
            trace_id,
            span_id: new_span_id(),
            parent: parent.map(|p| p.span_id),
            trace_state: None,
            name: name.into(),
            kind,
            start_unix_nano: super::unix_nanos_now(),
            end_unix_nano: 0,
            attributes: Vec::with_capacity(EXPECTED_ATTRIBUTES),
            error: None,
        };
        Some(ActiveSpan {
            tracer: self.clone(),
            span,
            started: Instant::now(),
        })
    }

    fn send(&self, span: SpanRecord) {
        if self.inner.queue.try_send(span).is_err() {
            self.inner.dropped.inc();
        }
    }
}

/// A span being recorded; it is queued for export by [`ActiveSpan::end`] (or when dropped).
#[derive(Debug)]
pub struct ActiveSpan {
    tracer: Tracer,
    span: SpanRecord,
    started: Instant,
}

impl ActiveSpan {
    /// Sets a string attribute (a static value is not copied).
    pub fn set(&mut self, key: &'static str, value: impl Into<Cow<'static, str>>) {
        self.push(key, Value::Text(value.into()));
    }

    /// Sets an integer attribute.
    pub fn set_int(&mut self, key: &'static str, value: i64) {
        self.push(key, Value::Int(value));
    }

    /// Sets a boolean attribute.
    pub fn set_bool(&mut self, key: &'static str, value: bool) {
        self.push(key, Value::Bool(value));
    }

    fn push(&mut self, key: &'static str, value: Value) {
        let attributes = &mut self.span.attributes;
        if let Some(existing) = attributes.iter_mut().find(|(k, _)| *k == key) {
            existing.1 = value;
        } else if attributes.len() < MAX_ATTRIBUTES {
            attributes.push((key, value));
        }
    }

    /// Marks the span failed, with a message (an error code, never a request's data).
    pub fn fail(&mut self, message: impl Into<Cow<'static, str>>) {
        self.span.error = Some(message.into());
    }

    /// The span's trace id.
    pub fn trace_id(&self) -> &TraceId {
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
        // The owned parts are taken; the ids and times are copied.
        let span = SpanRecord {
            name: std::mem::take(&mut self.span.name),
            trace_state: self.span.trace_state.take(),
            attributes: std::mem::take(&mut self.span.attributes),
            error: self.span.error.take(),
            end_unix_nano: self.span.start_unix_nano.saturating_add(elapsed),
            ..self.span
        };
        self.tracer.send(span);
    }
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

    fn tracer(sampler: Sampler, capacity: usize) -> (Tracer, mpsc::Receiver<SpanRecord>, Counter) {
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
            annotate(|s| s.fail("FLAG_NOT_FOUND"));
            42
        })
        .await;
        assert_eq!(answer, 42);
        span.expect("handed back").end();
        let span = rx.recv().await.unwrap().into_proto();
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
        assert_eq!(span.flags, 0x301, "sampled, with a remote parent");
        assert_eq!(span.status.unwrap().message, "FLAG_NOT_FOUND");
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
