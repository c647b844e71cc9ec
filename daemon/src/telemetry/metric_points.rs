//! The Prometheus registry's metrics as OTLP metric points: the same instruments and label sets as
//! `/metrics`, under OpenTelemetry names (`docs/observability.md#metrics`).
//!
//! flagd's instruments get their OpenTelemetry names and attribute keys back (`feature_flag_key` →
//! `feature_flag.key`), so a collector's Prometheus exporter shows the names `/metrics` shows; flagpole's
//! own metrics keep their `/metrics` names. Counters are cumulative monotonic sums, up-down gauges
//! (active requests and streams) cumulative non-monotonic sums, other gauges gauges, and histograms
//! explicit-bucket histograms, all starting at the daemon's start.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, Sum,
    metric, number_data_point,
};
use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as pm;

/// flagd's instruments: the `/metrics` family name → OpenTelemetry name, unit, and whether a gauge is an
/// up-down counter.
const OTEL_NAMES: [(&str, &str, &str, bool); 11] = [
    (
        "feature_flag_flagd_impression_total",
        "feature_flag.flagd.impression",
        "",
        false,
    ),
    (
        "feature_flag_flagd_result_reason_total",
        "feature_flag.flagd.result.reason",
        "",
        false,
    ),
    (
        "http_server_request_duration_seconds",
        "http.server.request.duration",
        "s",
        false,
    ),
    (
        "http_server_response_body_size_bytes",
        "http.server.response.body.size",
        "By",
        false,
    ),
    (
        "http_server_active_requests",
        "http.server.active_requests",
        "{request}",
        true,
    ),
    (
        "feature_flag_flagd_sync_active_streams",
        "feature_flag.flagd.sync.active_streams",
        "{stream}",
        true,
    ),
    (
        "feature_flag_flagd_sync_stream_duration_seconds",
        "feature_flag.flagd.sync.stream.duration",
        "s",
        false,
    ),
    ("process_cpu_seconds_total", "process.cpu.time", "s", false),
    (
        "flagpole_event_subscribers",
        "flagpole_event_subscribers",
        "",
        true,
    ),
    (
        "flagpole_ofrep_sse_streams",
        "flagpole_ofrep_sse_streams",
        "",
        true,
    ),
    ("flagpole_flags", "flagpole_flags", "", true),
];

/// Label → attribute key, where they differ.
const ATTRIBUTE_KEYS: [(&str, &str); 9] = [
    ("feature_flag_key", "feature_flag.key"),
    ("feature_flag_provider_name", "feature_flag.provider.name"),
    ("feature_flag_reason", "feature_flag.reason"),
    ("feature_flag_result_variant", "feature_flag.result.variant"),
    ("http_request_method", "http.request.method"),
    ("http_response_status_code", "http.response.status_code"),
    ("http_route", "http.route"),
    ("url_scheme", "url.scheme"),
    ("otel_metric_overflow", "otel.metric.overflow"),
];

/// Converts the registry's `families`, read at `now` (unix nanoseconds), for a daemon started at
/// `start`.
pub fn convert(families: Vec<pm::MetricFamily>, start: u64, now: u64) -> Vec<Metric> {
    families
        .into_iter()
        .filter_map(|family| family_metric(family, start, now))
        .collect()
}

/// The number of data points in `metrics` (what a failed export loses).
pub fn point_count(metrics: &[Metric]) -> u64 {
    metrics
        .iter()
        .map(|m| match &m.data {
            Some(metric::Data::Sum(s)) => s.data_points.len(),
            Some(metric::Data::Gauge(g)) => g.data_points.len(),
            Some(metric::Data::Histogram(h)) => h.data_points.len(),
            _ => 0,
        } as u64)
        .sum()
}

fn family_metric(family: pm::MetricFamily, start: u64, now: u64) -> Option<Metric> {
    let kind = pm::MetricType::try_from(family.r#type).ok()?;
    let known = OTEL_NAMES.iter().find(|(prom, ..)| *prom == family.name);
    let (name, unit, up_down) = match known {
        Some((_, otel, unit, up_down)) => ((*otel).to_owned(), (*unit).to_owned(), *up_down),
        // A Prometheus exporter adds `_total` to a counter's name again.
        None => (
            family
                .name
                .strip_suffix("_total")
                .filter(|_| kind == pm::MetricType::Counter)
                .unwrap_or(&family.name)
                .to_owned(),
            unit_of(&family.unit),
            false,
        ),
    };
    let mut numbers = Vec::new();
    let mut histograms = Vec::new();
    for metric in family.metric {
        let attributes: Vec<KeyValue> = metric.label.into_iter().map(attribute).collect();
        let number = |value: f64| NumberDataPoint {
            attributes: attributes.clone(),
            start_time_unix_nano: start,
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..NumberDataPoint::default()
        };
        if let Some(counter) = metric.counter {
            numbers.push(number(counter.value));
        } else if let Some(gauge) = metric.gauge {
            numbers.push(number(gauge.value));
        } else if let Some(histogram) = metric.histogram {
            histograms.push(histogram_point(histogram, attributes, start, now));
        }
    }
    let data = match kind {
        pm::MetricType::Counter => metric::Data::Sum(Sum {
            data_points: numbers,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        pm::MetricType::Gauge if up_down => metric::Data::Sum(Sum {
            data_points: numbers,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: false,
        }),
        pm::MetricType::Gauge => metric::Data::Gauge(Gauge {
            data_points: numbers,
        }),
        pm::MetricType::Histogram => metric::Data::Histogram(Histogram {
            data_points: histograms,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
        _ => return None,
    };
    Some(Metric {
        name,
        description: family.help,
        unit,
        data: Some(data),
        ..Metric::default()
    })
}

/// Prometheus buckets are cumulative with an unbounded last one; OTLP wants each bucket's own count and
/// the finite bounds only.
fn histogram_point(
    histogram: pm::Histogram,
    attributes: Vec<KeyValue>,
    start: u64,
    now: u64,
) -> HistogramDataPoint {
    let mut bounds = Vec::with_capacity(histogram.bucket.len());
    let mut counts = Vec::with_capacity(histogram.bucket.len() + 1);
    let mut below = 0;
    for bucket in &histogram.bucket {
        if bucket.upper_bound.is_finite() && bucket.upper_bound < f64::MAX {
            bounds.push(bucket.upper_bound);
            counts.push(bucket.cumulative_count.saturating_sub(below));
            below = bucket.cumulative_count;
        }
    }
    counts.push(histogram.sample_count.saturating_sub(below));
    HistogramDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        count: histogram.sample_count,
        sum: Some(histogram.sample_sum),
        bucket_counts: counts,
        explicit_bounds: bounds,
        ..HistogramDataPoint::default()
    }
}

fn attribute(label: pm::LabelPair) -> KeyValue {
    let key = ATTRIBUTE_KEYS
        .iter()
        .find(|(prom, _)| *prom == label.name)
        .map_or(label.name, |(_, otel)| (*otel).to_owned());
    KeyValue {
        key,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(label.value)),
        }),
        ..KeyValue::default()
    }
}

/// The UCUM unit of a Prometheus unit suffix.
fn unit_of(unit: &str) -> String {
    match unit {
        "seconds" => "s".to_owned(),
        "bytes" => "By".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::Metrics;

    fn find<'a>(metrics: &'a [Metric], name: &str) -> &'a Metric {
        metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    fn string_attr(kv: &[KeyValue], key: &str) -> Option<String> {
        kv.iter()
            .find(|a| a.key == key)
            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
    }

    #[test]
    fn flagd_instruments_get_their_opentelemetry_names_kinds_and_attributes() {
        let metrics = Metrics::new();
        metrics.record_evaluation("my-flag", "on", "STATIC", None);
        metrics.record_evaluation("my-flag", "on", "STATIC", None);
        let route = "/flagd.evaluation.v1.Service/ResolveBoolean";
        metrics.record_http_request(route, "POST", 200, "http", Duration::from_millis(7), 150);
        metrics.active_request("POST", "http", 1);
        metrics.source_reloaded("file:a.json");
        let points = convert(metrics.metric_families(), 1, 2);

        let impressions = find(&points, "feature_flag.flagd.impression");
        let Some(metric::Data::Sum(sum)) = &impressions.data else {
            panic!("not a sum: {impressions:?}");
        };
        assert!(sum.is_monotonic);
        let point = &sum.data_points[0];
        assert_eq!(point.value, Some(number_data_point::Value::AsDouble(2.0)));
        assert_eq!(
            string_attr(&point.attributes, "feature_flag.key").as_deref(),
            Some("my-flag")
        );
        assert_eq!(
            string_attr(&point.attributes, "feature_flag.result.variant").as_deref(),
            Some("on")
        );

        let duration = find(&points, "http.server.request.duration");
        assert_eq!(duration.unit, "s");
        let Some(metric::Data::Histogram(histogram)) = &duration.data else {
            panic!("not a histogram");
        };
        let point = &histogram.data_points[0];
        assert_eq!(point.count, 1);
        assert_eq!(point.explicit_bounds.len() + 1, point.bucket_counts.len());
        assert_eq!(point.explicit_bounds[0], 0.005);
        // 7 ms falls in the second bucket (5 ms, 10 ms].
        assert_eq!(point.bucket_counts[1], 1);
        assert_eq!(
            string_attr(&point.attributes, "http.route").as_deref(),
            Some(route)
        );
        let size = find(&points, "http.server.response.body.size");
        assert_eq!(size.unit, "By");

        let active = find(&points, "http.server.active_requests");
        let Some(metric::Data::Sum(sum)) = &active.data else {
            panic!("not a sum");
        };
        assert!(!sum.is_monotonic);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsDouble(1.0))
        );

        // flagpole's own keep their /metrics names.
        find(&points, "flagpole_source_reloads");
        if cfg!(target_os = "linux") {
            find(&points, "process.cpu.time");
        }
        assert!(point_count(&points) >= 5);
    }
}
