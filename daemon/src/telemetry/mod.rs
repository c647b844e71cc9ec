//! OpenTelemetry: traces and metrics pushed over OTLP to a collector (`docs/observability.md`).
//!
//! What it owns: the settings (flagd's `--metrics-exporter`/`--otel-*` flags under the standard `OTEL_*`
//! variables, [`settings`]), W3C trace context and sampling ([`context`]), spans and their bounded
//! queue ([`spans`]), the request middleware shared by the evaluation and OFREP ports and the notes
//! the evaluation core leaves on its span ([`observe`]), the conversion of the Prometheus registry into OTLP metric points
//! ([`metric_points`]), and the two export tasks over one OTLP client each ([`export`]).
//!
//! Why not the OpenTelemetry SDK: flagpole's metrics already live in one Prometheus registry (which
//! `/metrics` keeps serving), so pushing them is a conversion of that registry, not a second set of
//! instruments on the hot path; and spans need exactly one bounded queue whose drops are counted, plus
//! TLS files read again on an interval, which the SDK's pipeline does not offer. The OpenTelemetry
//! project's own wire types and gRPC client (`opentelemetry-proto`) are used for everything on the wire.
//!
//! Off costs nothing: without trace export no span is started and the middlewares only read an empty
//! `OnceLock`; without metric export no task runs.

pub mod context;
pub mod export;
pub mod metric_points;
pub mod observe;
pub mod settings;
pub mod spans;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
pub use export::{Destination, Exporter, Protocol, TlsFiles};
pub use observe::{note_bulk, note_evaluation};
pub use settings::Settings;
pub use spans::{ActiveSpan, Kind, Tracer, annotate};

/// The instrumentation scope of everything flagpole exports.
pub const SCOPE: &str = "flagpole";

/// The longest the last batch of spans and metric points may take to leave at shutdown.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// Starts the export tasks `settings` asks for; they stop (after one last export, at most
/// [`SHUTDOWN_FLUSH`]) when `shutdown` is cancelled. The returned handles end when they have.
pub fn start(
    settings: Settings,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let resource = resource(&settings.resource);
    if let Some(destination) = settings.traces {
        let (queue, spans) = mpsc::channel(settings.batching.max_queue);
        metrics.set_tracer(Tracer::new(
            settings.sampler,
            queue,
            metrics.otel_queue_full_counter(),
        ));
        tracing::info!(endpoint = %destination.display(), protocol = ?destination.protocol, "exporting traces over OTLP");
        let exporter = Exporter::new(destination, settings.reload_interval);
        tasks.push(tokio::spawn(export_spans(
            exporter,
            spans,
            settings.batching,
            resource.clone(),
            metrics.clone(),
            shutdown.clone(),
        )));
    }
    if let Some(destination) = settings.metrics {
        tracing::info!(endpoint = %destination.display(), protocol = ?destination.protocol, interval = ?settings.metric_interval, "exporting metrics over OTLP");
        let exporter = Exporter::new(destination, settings.reload_interval);
        tasks.push(tokio::spawn(export_metrics(
            exporter,
            settings.metric_interval,
            resource,
            metrics.clone(),
            shutdown.clone(),
        )));
    }
    tasks
}

fn resource(attributes: &[(String, String)]) -> Resource {
    Resource {
        attributes: attributes
            .iter()
            .map(|(k, v)| string_attribute(k, v))
            .collect(),
        ..Resource::default()
    }
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..InstrumentationScope::default()
    }
}

fn unix_nanos_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The span export task: a batch leaves when it is full or its first span has waited the batch delay;
/// one export at a time (spans that arrive meanwhile wait in the bounded queue).
async fn export_spans(
    mut exporter: Exporter,
    mut queue: mpsc::Receiver<spans::SpanRecord>,
    batching: settings::Batching,
    resource: Resource,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut batch: Vec<spans::SpanRecord> = Vec::with_capacity(batching.max_batch);
    loop {
        let deadline = Instant::now() + batching.delay;
        let closing = loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break true,
                received = queue.recv() => match received {
                    Some(span) => {
                        batch.push(span);
                        if batch.len() >= batching.max_batch {
                            break false;
                        }
                    }
                    None => break true,
                },
                () = tokio::time::sleep_until(deadline), if !batch.is_empty() => break false,
            }
        };
        if closing {
            while let Ok(span) = queue.try_recv() {
                batch.push(span);
            }
        }
        while !batch.is_empty() {
            let take = batch.len().min(batching.max_batch);
            let spans: Vec<spans::SpanRecord> = batch.drain(..take).collect();
            send_spans(&mut exporter, spans, &resource, &metrics, closing).await;
        }
        if closing {
            return;
        }
    }
}

async fn send_spans(
    exporter: &mut Exporter,
    spans: Vec<spans::SpanRecord>,
    resource: &Resource,
    metrics: &Metrics,
    closing: bool,
) {
    let count = spans.len() as u64;
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans: spans
                    .into_iter()
                    .map(spans::SpanRecord::into_proto)
                    .collect(),
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    let export = exporter.export_traces(request);
    let result = if closing {
        tokio::time::timeout(SHUTDOWN_FLUSH, export)
            .await
            .unwrap_or_else(|_| Err("shutting down".to_owned()))
    } else {
        export.await
    };
    if let Err(error) = result {
        metrics.otel_dropped("traces", "export_failed", count);
        tracing::warn!(%error, spans = count, "cannot export spans; dropped");
    }
}

/// The metric export task: the whole registry every `interval`, and once more at shutdown.
async fn export_metrics(
    mut exporter: Exporter,
    interval: Duration,
    resource: Resource,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let start = unix_nanos_now();
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let closing = tokio::select! {
            biased;
            () = shutdown.cancelled() => true,
            _ = ticks.tick() => false,
        };
        let points = metric_points::convert(metrics.metric_families(), start, unix_nanos_now());
        let count = metric_points::point_count(&points);
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics: points,
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        };
        let export = exporter.export_metrics(request);
        let result = if closing {
            tokio::time::timeout(SHUTDOWN_FLUSH, export)
                .await
                .unwrap_or_else(|_| Err("shutting down".to_owned()))
        } else {
            export.await
        };
        if let Err(error) = result {
            metrics.otel_dropped("metrics", "export_failed", count);
            tracing::warn!(%error, points = count, "cannot export metrics; dropped");
        }
        if closing {
            return;
        }
    }
}
