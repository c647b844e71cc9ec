//! Prometheus metrics: flagd's metric names and labels where flagd has them, plus flagpole's own.
//!
//! What it owns: one [`Metrics`] handle (cheap to clone) holding a `prometheus-client` registry and the
//! instruments the services, sources and store record into, and the text exposition served on
//! `/metrics`.
//!
//! flagd exports OpenTelemetry instruments through the Prometheus translation, so the names here are the
//! translated ones (`feature_flag.flagd.impression` → `feature_flag_flagd_impression_total`, attribute
//! `feature_flag.key` → label `feature_flag_key`). flagd's `ExceptionTypeKeyName` label spelling is kept so
//! that dashboards built on flagd keep working.
//!
//! What it does not do: OTLP push (`crate::telemetry` converts [`Metrics::metric_families`]), Go runtime
//! metrics, tracing. The standard `process_*` metrics (resident and virtual memory, open file
//! descriptors, threads, CPU seconds) are read from `/proc` on each scrape where it exists (Linux).
//!
//! Cardinality: flag keys, variants, selectors and provider ids come from files and clients, so every
//! labelled family is capped at [`MAX_SERIES_PER_FAMILY`]; label sets beyond the cap are counted under one
//! overflow series (`otel_metric_overflow="true"`, the OpenTelemetry convention flagd uses). Every label
//! value is cut to [`MAX_LABEL_VALUE_BYTES`], so a scrape stays small whatever clients send, and the
//! evaluation port's `http_route` comes from a closed set ([`evaluation_route`]): a request for any other
//! path is counted as `unmatched`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The most label combinations one metric family keeps (flagd's OpenTelemetry default cardinality limit,
/// added after the memory leak in flagd#1931). Further combinations are folded into one overflow series.
pub const MAX_SERIES_PER_FAMILY: usize = 2000;

/// The longest label value kept, in bytes; a longer value (a selector or provider id a client sent, a
/// very long flag key) is cut at a character boundary. With [`MAX_SERIES_PER_FAMILY`] this bounds every
/// family to about 2000 × (labels × 256) bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 256;

/// The `http_route` of a request for a path the evaluation port does not serve.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Every path the evaluation port serves: three services, the same seven methods in each.
const EVALUATION_ROUTES: [&str; 21] = [
    "/flagd.evaluation.v1.Service/ResolveBoolean",
    "/flagd.evaluation.v1.Service/ResolveString",
    "/flagd.evaluation.v1.Service/ResolveFloat",
    "/flagd.evaluation.v1.Service/ResolveInt",
    "/flagd.evaluation.v1.Service/ResolveObject",
    "/flagd.evaluation.v1.Service/ResolveAll",
    "/flagd.evaluation.v1.Service/EventStream",
    "/flagd.evaluation.v2.Service/ResolveBoolean",
    "/flagd.evaluation.v2.Service/ResolveString",
    "/flagd.evaluation.v2.Service/ResolveFloat",
    "/flagd.evaluation.v2.Service/ResolveInt",
    "/flagd.evaluation.v2.Service/ResolveObject",
    "/flagd.evaluation.v2.Service/ResolveAll",
    "/flagd.evaluation.v2.Service/EventStream",
    "/schema.v1.Service/ResolveBoolean",
    "/schema.v1.Service/ResolveString",
    "/schema.v1.Service/ResolveFloat",
    "/schema.v1.Service/ResolveInt",
    "/schema.v1.Service/ResolveObject",
    "/schema.v1.Service/ResolveAll",
    "/schema.v1.Service/EventStream",
];

/// The `http_route` label of a request path on the evaluation port: the path itself when it names one
/// of the served RPCs (21 values), else [`UNMATCHED_ROUTE`]. Static, so recording never copies it.
pub fn evaluation_route(path: &str) -> &'static str {
    EVALUATION_ROUTES
        .iter()
        .find(|route| **route == path)
        .copied()
        .unwrap_or(UNMATCHED_ROUTE)
}

/// `value` cut to at most [`MAX_LABEL_VALUE_BYTES`] at a character boundary.
fn capped(mut value: String) -> String {
    if value.len() > MAX_LABEL_VALUE_BYTES {
        let mut end = MAX_LABEL_VALUE_BYTES;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    value
}

/// `feature_flag.provider.name` as flagd reports it (dashboards filter on it).
const PROVIDER_NAME: &str = "flagd";

/// Buckets of `http_server_request_duration_seconds` (flagd uses `prometheus.DefBuckets`).
const HTTP_DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of `http_server_response_body_size_bytes` (flagd's: 100 bytes to 1 GB by powers of ten).
const HTTP_SIZE_BUCKETS: [f64; 8] = [100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// Buckets of `feature_flag_flagd_sync_stream_duration_seconds` (flagd's values, in seconds).
const SYNC_STREAM_DURATION_BUCKETS: [f64; 10] = [
    30.0, 60.0, 120.0, 300.0, 480.0, 600.0, 1200.0, 1800.0, 3600.0, 10800.0,
];

/// A label set: label name → value. Names are static; values come from requests, files and clients.
type Labels = Vec<(&'static str, String)>;

/// A metric family that keeps at most [`MAX_SERIES_PER_FAMILY`] label sets.
struct Bounded<M, C = fn() -> M> {
    family: Family<Labels, M, C>,
    /// Label sets created so far (may overcount slightly under races, which only lowers the cap).
    series: AtomicUsize,
}

impl<M, C> Bounded<M, C>
where
    M: prometheus_client::metrics::TypedMetric,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
{
    fn new(family: Family<Labels, M, C>) -> Self {
        Bounded {
            family,
            series: AtomicUsize::new(0),
        }
    }

    /// Applies `f` to the series for `labels` (values capped), or to the overflow series once the family
    /// is full.
    fn with<R>(&self, mut labels: Labels, f: impl FnOnce(&M) -> R) -> R {
        for (_, value) in &mut labels {
            if value.len() > MAX_LABEL_VALUE_BYTES {
                *value = capped(std::mem::take(value));
            }
        }
        if let Some(metric) = self.family.get(&labels) {
            return f(&metric);
        }
        let labels = if self.series.fetch_add(1, Ordering::Relaxed) < MAX_SERIES_PER_FAMILY {
            labels
        } else {
            overflow_labels()
        };
        f(&self.family.get_or_create(&labels))
    }
}

/// Each [`Metrics`] gets its own number, so that a thread's cache of counter handles never serves the
/// counters of another daemon in the same process (tests run several).
static NEXT_METRICS_ID: AtomicU64 = AtomicU64::new(1);

/// Per flag key cached by one thread at most; beyond it the cache starts over (a flood of distinct keys
/// must not grow it without bound).
const COUNTER_CACHE_KEYS: usize = 4_096;

/// The two counters one successful evaluation increments.
struct EvaluationCounters {
    variant: Box<str>,
    reason: Box<str>,
    impressions: Counter,
    result_reasons: Counter,
}

impl EvaluationCounters {
    fn count(&self) {
        self.impressions.inc();
        self.result_reasons.inc();
    }
}

/// One thread's handles to the evaluation counters of one [`Metrics`], by flag key: counting an
/// evaluation then costs a hash of the key and two atomic increments, instead of building two label
/// sets (seven strings) and looking each up in its family under a lock.
#[derive(Default)]
struct CounterCache {
    metrics_id: u64,
    by_key: HashMap<Box<str>, Vec<EvaluationCounters>, foldhash::fast::RandomState>,
}

impl CounterCache {
    /// Counts an evaluation of `key` in the daemon `metrics_id`, with the counters cached for it or, the
    /// first time, those `make` gives (then kept).
    fn count(
        &mut self,
        metrics_id: u64,
        key: &str,
        variant: &str,
        reason: &str,
        make: impl FnOnce() -> EvaluationCounters,
    ) {
        if self.metrics_id != metrics_id {
            self.by_key.clear();
            self.metrics_id = metrics_id;
        }
        let cached = self.by_key.get(key).and_then(|entries| {
            entries
                .iter()
                .find(|c| &*c.variant == variant && &*c.reason == reason)
        });
        if let Some(counters) = cached {
            counters.count();
            return;
        }
        if self.by_key.len() >= COUNTER_CACHE_KEYS && !self.by_key.contains_key(key) {
            self.by_key.clear();
        }
        let counters = make();
        counters.count();
        self.by_key
            .entry(Box::from(key))
            .or_default()
            .push(counters);
    }
}

thread_local! {
    static COUNTER_CACHE: RefCell<CounterCache> = RefCell::new(CounterCache::default());
    static REQUEST_CACHE: RefCell<RequestCache> = RefCell::new(RequestCache::default());
}

/// One cached label set of the request histograms: route, method, status, scheme, and the two handles.
struct RequestEntry {
    route: &'static str,
    method: Box<str>,
    status: u16,
    scheme: &'static str,
    duration: Histogram,
    size: Histogram,
}

/// One thread's handles to the HTTP request instruments of one [`Metrics`] (as [`CounterCache`] for
/// evaluations): recording a request then costs a hash and a compare of its labels, not four label
/// strings built and looked up under a lock per instrument. At most [`COUNTER_CACHE_KEYS`] label sets.
#[derive(Default)]
struct RequestCache {
    metrics_id: u64,
    /// By a hash of the labels (collisions share the list).
    histograms: HashMap<u64, Vec<RequestEntry>, foldhash::fast::RandomState>,
    entries: usize,
    active: Vec<(Box<str>, &'static str, Gauge)>,
}

impl RequestCache {
    fn reset_for(&mut self, metrics_id: u64) {
        if self.metrics_id != metrics_id {
            self.histograms.clear();
            self.entries = 0;
            self.active.clear();
            self.metrics_id = metrics_id;
        }
    }
}

/// Why a sync stream ended (flagd's `reason` label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCloseReason {
    /// The server ended the stream (shutdown).
    NormalClose,
    /// `--stream-deadline` ran out.
    DeadlineExceeded,
    /// The client went away.
    ClientDisconnect,
    /// Sending failed for another reason.
    Error,
}

impl StreamCloseReason {
    /// The label value flagd uses.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamCloseReason::NormalClose => "normal_close",
            StreamCloseReason::DeadlineExceeded => "deadline_exceeded",
            StreamCloseReason::ClientDisconnect => "client_disconnect",
            StreamCloseReason::Error => "error",
        }
    }
}

/// The metrics of one daemon. Clone it freely: clones share the registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

struct Inner {
    /// See [`NEXT_METRICS_ID`].
    id: u64,
    registry: Registry,
    impressions: Bounded<Counter>,
    result_reasons: Bounded<Counter>,
    evaluation_errors: Bounded<Counter>,
    http_duration: Bounded<Histogram>,
    http_response_size: Bounded<Histogram>,
    http_active: Bounded<Gauge>,
    /// Telemetry items (spans, metric points) that were not exported, by signal and reason.
    otel_dropped: Bounded<Counter>,
    sync_active_streams: Bounded<Gauge>,
    sync_stream_duration: Bounded<Histogram>,
    event_subscribers: Gauge,
    sse_streams: Gauge,
    flags: Gauge,
    reloads: Bounded<Counter>,
    rejected: Bounded<Counter>,
    /// Kubernetes sources: expired watches listed again.
    relists: Bounded<Counter>,
    /// Change journal entries by kind.
    changes: Bounded<Counter>,
    /// Remote sources: unix time of the last successful fetch, of the last failure, and failures in a row.
    fetch_success: Bounded<Gauge>,
    fetch_error: Bounded<Gauge>,
    fetch_failures: Bounded<Gauge>,
    overdue: Bounded<Gauge>,
    source_stale: Bounded<Gauge>,
    /// Flags with a stale marker, by reason.
    stale: Bounded<Gauge>,
    /// The same state by source, for the `/readyz` body (one entry per configured remote source).
    fetch_states: std::sync::Mutex<std::collections::BTreeMap<String, FetchState>>,
    /// Where spans go, once trace export is on (`crate::telemetry`): everything that records metrics can
    /// open spans through the same handle.
    tracer: std::sync::OnceLock<crate::telemetry::Tracer>,
}

/// A remote source's fetch state, as reported in the `/readyz` body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchState {
    /// Unix time of the last success.
    pub last_success: Option<i64>,
    /// Unix time of the last failure.
    pub last_error: Option<i64>,
    /// Failures since the last success.
    pub consecutive_failures: u64,
    /// Whether the source's data is overdue (no good update for longer than it promised).
    pub overdue: bool,
    /// While the source serves its last-known-good payload from the state directory: when that payload
    /// was received (unix seconds).
    pub stale_since: Option<i64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every instrument registered (and no samples yet).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let impressions = Family::<Labels, Counter>::default();
        registry.register(
            "feature_flag_flagd_impression",
            "Successful flag evaluations, by flag key and variant",
            impressions.clone(),
        );
        let result_reasons = Family::<Labels, Counter>::default();
        registry.register(
            "feature_flag_flagd_result_reason",
            "Flag evaluations by reason (and error code on failure)",
            result_reasons.clone(),
        );
        let evaluation_errors = Family::<Labels, Counter>::default();
        registry.register(
            "flagpole_evaluation_errors",
            "Failed flag evaluations by flag key and error code (flagd's result reason counter has no key on errors)",
            evaluation_errors.clone(),
        );
        let http_duration =
            Family::<Labels, Histogram>::new_with_constructor(http_duration_constructor);
        registry.register_with_unit(
            "http_server_request_duration",
            "Duration of requests to the evaluation and OFREP servers",
            Unit::Seconds,
            http_duration.clone(),
        );
        let http_response_size =
            Family::<Labels, Histogram>::new_with_constructor(http_size_constructor);
        registry.register_with_unit(
            "http_server_response_body_size",
            "Size of the response bodies of the evaluation and OFREP servers",
            Unit::Bytes,
            http_response_size.clone(),
        );
        let http_active = Family::<Labels, Gauge>::default();
        registry.register(
            "http_server_active_requests",
            "Requests to the evaluation and OFREP servers being served",
            http_active.clone(),
        );
        let otel_dropped = Family::<Labels, Counter>::default();
        registry.register(
            "flagpole_otel_dropped",
            "OpenTelemetry spans and metric points not exported, by signal and reason (queue_full, export_failed)",
            otel_dropped.clone(),
        );
        let sync_active_streams = Family::<Labels, Gauge>::default();
        registry.register(
            "feature_flag_flagd_sync_active_streams",
            "Open SyncFlags streams",
            sync_active_streams.clone(),
        );
        let sync_stream_duration =
            Family::<Labels, Histogram>::new_with_constructor(sync_duration_constructor);
        registry.register_with_unit(
            "feature_flag_flagd_sync_stream_duration",
            "How long SyncFlags streams lasted, by close reason",
            Unit::Seconds,
            sync_stream_duration.clone(),
        );
        let event_subscribers = Gauge::default();
        registry.register(
            "flagpole_event_subscribers",
            "Open EventStream subscriptions (all protocols)",
            event_subscribers.clone(),
        );
        let sse_streams = Gauge::default();
        registry.register(
            "flagpole_ofrep_sse_streams",
            "Open OFREP change streams (server-sent events)",
            sse_streams.clone(),
        );
        let flags = Gauge::default();
        registry.register(
            "flagpole_flags",
            "Flags currently loaded, over all sources",
            flags.clone(),
        );
        let changes = Family::<Labels, Counter>::default();
        registry.register(
            "flagpole_changes",
            "Change journal entries by kind (write, update, delete, rejected, override_set, override_cleared, override_expired)",
            changes.clone(),
        );
        let reloads = Family::<Labels, Counter>::default();
        registry.register(
            "flagpole_source_reloads",
            "Payloads accepted from a source (initial load included; identical rewrites excluded)",
            reloads.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        let rejected = Family::<Labels, Counter>::default();
        registry.register(
            "flagpole_source_rejected_payloads",
            "Payloads from a source that could not be loaded (the source kept its last good flags)",
            rejected.clone(),
        );
        let relists = Family::<Labels, Counter>::default();
        registry.register(
            "flagpole_source_relists",
            "Kubernetes sources: watches whose history was gone (410 after an etcd compaction), listed again",
            relists.clone(),
        );
        let fetch_success = Family::<Labels, Gauge>::default();
        registry.register(
            "flagpole_source_last_success_timestamp_seconds",
            "Remote sources: unix time of the last successful fetch or stream message",
            fetch_success.clone(),
        );
        let fetch_error = Family::<Labels, Gauge>::default();
        registry.register(
            "flagpole_source_last_error_timestamp_seconds",
            "Remote sources: unix time of the last failed fetch, stream or payload",
            fetch_error.clone(),
        );
        let fetch_failures = Family::<Labels, Gauge>::default();
        registry.register(
            "flagpole_source_consecutive_failures",
            "Remote sources: failures since the last success",
            fetch_failures.clone(),
        );
        let overdue = Family::<Labels, Gauge>::default();
        registry.register(
            "flagpole_source_overdue",
            "Polling sources: 1 while no good update arrived for three intervals plus the poll deadline",
            overdue.clone(),
        );
        let source_stale = Family::<Labels, Gauge>::default();
        registry.register(
            "flagpole_source_stale",
            "Remote sources: 1 while the source serves its last known good flags from the state directory (it has not answered since the start)",
            source_stale.clone(),
        );
        let stale = Family::<Labels, Gauge>::default();
        registry.register(
            "flagpole_stale_flags",
            "Flags with a stale marker, by reason (expired, unused, single_variant, settled_fractional, long_override)",
            stale.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                id: NEXT_METRICS_ID.fetch_add(1, Ordering::Relaxed),
                registry,
                impressions: Bounded::new(impressions),
                result_reasons: Bounded::new(result_reasons),
                evaluation_errors: Bounded::new(evaluation_errors),
                http_duration: Bounded::new(http_duration),
                http_response_size: Bounded::new(http_response_size),
                http_active: Bounded::new(http_active),
                otel_dropped: Bounded::new(otel_dropped),
                sync_active_streams: Bounded::new(sync_active_streams),
                sync_stream_duration: Bounded::new(sync_stream_duration),
                event_subscribers,
                sse_streams,
                flags,
                reloads: Bounded::new(reloads),
                rejected: Bounded::new(rejected),
                relists: Bounded::new(relists),
                changes: Bounded::new(changes),
                fetch_success: Bounded::new(fetch_success),
                fetch_error: Bounded::new(fetch_error),
                fetch_failures: Bounded::new(fetch_failures),
                overdue: Bounded::new(overdue),
                source_stale: Bounded::new(source_stale),
                stale: Bounded::new(stale),
                fetch_states: std::sync::Mutex::default(),
                tracer: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Records one flag evaluation. `error_code` is `None` on success; `reason` is the wire reason
    /// (`STATIC`, `TARGETING_MATCH`, `FALLBACK`, `ERROR`, ...). Impressions count successes only, as in flagd.
    pub fn record_evaluation(
        &self,
        flag_key: &str,
        variant: &str,
        reason: &str,
        error_code: Option<&str>,
    ) {
        let inner = &self.inner;
        match error_code {
            None => {
                let make = || self.evaluation_counters(flag_key, variant, reason);
                let cached = COUNTER_CACHE.try_with(|cache| {
                    cache
                        .borrow_mut()
                        .count(inner.id, flag_key, variant, reason, make)
                });
                if cached.is_err() {
                    // The thread is exiting (no cache left): count through the families.
                    make().count();
                }
            }
            Some(code) => {
                inc(
                    &inner.result_reasons,
                    vec![
                        ("ExceptionTypeKeyName", code.to_owned()),
                        ("feature_flag_provider_name", PROVIDER_NAME.to_owned()),
                        ("feature_flag_reason", reason.to_owned()),
                    ],
                );
                // flagd's error series has no flag key; this one does (error rate per flag).
                inc(
                    &inner.evaluation_errors,
                    vec![
                        ("error_type", code.to_owned()),
                        ("feature_flag_key", flag_key.to_owned()),
                    ],
                );
            }
        }
    }

    /// The counters of a successful evaluation of `flag_key` (impressions and result reasons).
    fn evaluation_counters(
        &self,
        flag_key: &str,
        variant: &str,
        reason: &str,
    ) -> EvaluationCounters {
        let inner = &self.inner;
        EvaluationCounters {
            variant: Box::from(variant),
            reason: Box::from(reason),
            impressions: inner.impressions.with(
                vec![
                    ("feature_flag_key", flag_key.to_owned()),
                    ("feature_flag_provider_name", PROVIDER_NAME.to_owned()),
                    ("feature_flag_reason", reason.to_owned()),
                    ("feature_flag_result_variant", variant.to_owned()),
                ],
                Counter::clone,
            ),
            result_reasons: inner.result_reasons.with(
                vec![
                    ("feature_flag_key", flag_key.to_owned()),
                    ("feature_flag_provider_name", PROVIDER_NAME.to_owned()),
                    ("feature_flag_reason", reason.to_owned()),
                ],
                Counter::clone,
            ),
        }
    }

    /// Records one HTTP/gRPC request to the evaluation or OFREP server. `route` is the URL path (8013) or
    /// route template (OFREP); `scheme` is `http` or `https`; `response_bytes` is the body's size.
    pub fn record_http_request(
        &self,
        route: &'static str,
        method: &str,
        status: u16,
        scheme: &'static str,
        duration: Duration,
        response_bytes: u64,
    ) {
        let record = |duration_histogram: &Histogram, size_histogram: &Histogram| {
            duration_histogram.observe(duration.as_secs_f64());
            size_histogram.observe(response_bytes as f64);
        };
        let cached = REQUEST_CACHE.try_with(|cache| {
            let mut cache = cache.borrow_mut();
            cache.reset_for(self.inner.id);
            let hash = {
                use std::hash::BuildHasher;
                cache
                    .histograms
                    .hasher()
                    .hash_one((route, method, status, scheme))
            };
            let found = cache.histograms.get(&hash).and_then(|entries| {
                entries.iter().find(|e| {
                    e.route == route
                        && &*e.method == method
                        && e.status == status
                        && e.scheme == scheme
                })
            });
            if let Some(entry) = found {
                record(&entry.duration, &entry.size);
                return;
            }
            if cache.entries >= COUNTER_CACHE_KEYS {
                cache.histograms.clear();
                cache.entries = 0;
            }
            let (duration_histogram, size) = self.request_histograms(route, method, status, scheme);
            record(&duration_histogram, &size);
            cache.entries += 1;
            cache
                .histograms
                .entry(hash)
                .or_default()
                .push(RequestEntry {
                    route,
                    method: Box::from(method),
                    status,
                    scheme,
                    duration: duration_histogram,
                    size,
                });
        });
        if cached.is_err() {
            let (d, s) = self.request_histograms(route, method, status, scheme);
            record(&d, &s);
        }
    }

    fn request_histograms(
        &self,
        route: &str,
        method: &str,
        status: u16,
        scheme: &str,
    ) -> (Histogram, Histogram) {
        let labels = vec![
            ("http_request_method", method.to_owned()),
            ("http_response_status_code", status.to_string()),
            ("http_route", route.to_owned()),
            ("url_scheme", scheme.to_owned()),
        ];
        (
            self.inner
                .http_duration
                .with(labels.clone(), Histogram::clone),
            self.inner.http_response_size.with(labels, Histogram::clone),
        )
    }

    /// A request to the evaluation or OFREP server started (`+1`) or ended (`-1`):
    /// `http_server_active_requests` by method and scheme (the semantic conventions' attributes).
    pub fn active_request(&self, method: &str, scheme: &'static str, delta: i64) {
        let apply = |gauge: &Gauge| {
            gauge.inc_by(delta);
        };
        let make = || {
            self.inner.http_active.with(
                vec![
                    ("http_request_method", method.to_owned()),
                    ("url_scheme", scheme.to_owned()),
                ],
                Gauge::clone,
            )
        };
        let cached = REQUEST_CACHE.try_with(|cache| {
            let mut cache = cache.borrow_mut();
            cache.reset_for(self.inner.id);
            if let Some((_, _, gauge)) = cache
                .active
                .iter()
                .find(|(m, s, _)| &**m == method && *s == scheme)
            {
                apply(gauge);
                return;
            }
            if cache.active.len() >= 64 {
                cache.active.clear();
            }
            let gauge = make();
            apply(&gauge);
            cache.active.push((Box::from(method), scheme, gauge));
        });
        if cached.is_err() {
            apply(&make());
        }
    }

    /// Telemetry that was not exported: `count` spans or metric points of `signal` (`traces`,
    /// `metrics`), for `reason` (`queue_full`, `export_failed`).
    pub fn otel_dropped(&self, signal: &str, reason: &str, count: u64) {
        self.inner.otel_dropped.with(
            vec![("reason", reason.to_owned()), ("signal", signal.to_owned())],
            |c| {
                c.inc_by(count);
            },
        );
    }

    /// The counter of spans dropped for a full queue (handed to the tracer once).
    pub fn otel_queue_full_counter(&self) -> Counter {
        self.inner.otel_dropped.with(
            vec![
                ("reason", "queue_full".to_owned()),
                ("signal", "traces".to_owned()),
            ],
            Counter::clone,
        )
    }

    /// Turns span recording on (once; a second tracer is ignored).
    pub fn set_tracer(&self, tracer: crate::telemetry::Tracer) {
        let _ = self.inner.tracer.set(tracer);
    }

    /// The tracer, when trace export is on.
    pub fn tracer(&self) -> Option<&crate::telemetry::Tracer> {
        self.inner.tracer.get()
    }

    /// Every metric in the Prometheus data model (for the OTLP exporter).
    pub fn metric_families(
        &self,
    ) -> Vec<prometheus_client::encoding::prometheus_protobuf::prometheus_data_model::MetricFamily>
    {
        prometheus_client::encoding::prometheus_protobuf::encode(&self.inner.registry)
            .unwrap_or_else(|_| {
                tracing::warn!("metrics encoding failed");
                Vec::new()
            })
    }

    /// A `SyncFlags` stream opened. `provider_id` may be empty (then it is not a label, as in flagd).
    pub fn sync_stream_opened(&self, selector: &str, provider_id: &str) {
        self.inner
            .sync_active_streams
            .with(stream_labels(selector, provider_id), |g| {
                g.inc();
            });
    }

    /// A `SyncFlags` stream ended after `duration`.
    pub fn sync_stream_closed(
        &self,
        selector: &str,
        provider_id: &str,
        reason: StreamCloseReason,
        duration: Duration,
    ) {
        let labels = stream_labels(selector, provider_id);
        self.inner.sync_active_streams.with(labels.clone(), |g| {
            g.dec();
        });
        let mut labels = labels;
        labels.push(("reason", reason.as_str().to_owned()));
        labels.sort_by_key(|(name, _)| *name);
        self.inner
            .sync_stream_duration
            .with(labels, |h| h.observe(duration.as_secs_f64()));
    }

    /// An EventStream subscriber connected.
    pub fn event_subscriber_added(&self) {
        self.inner.event_subscribers.inc();
    }

    /// An EventStream subscriber went away.
    pub fn event_subscriber_removed(&self) {
        self.inner.event_subscribers.dec();
    }

    /// An OFREP change stream opened.
    pub fn sse_stream_opened(&self) {
        self.inner.sse_streams.inc();
    }

    /// An OFREP change stream closed.
    pub fn sse_stream_closed(&self) {
        self.inner.sse_streams.dec();
    }

    /// The number of flags now loaded (set by the store after each change).
    pub fn set_flag_count(&self, count: usize) {
        self.inner
            .flags
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// A source's payload was accepted and replaced that source's flags.
    pub fn source_reloaded(&self, source: &str) {
        inc(&self.inner.reloads, vec![("source", source.to_owned())]);
    }

    /// A change was recorded in the journal.
    pub fn change_recorded(&self, kind: &str, count: u64) {
        self.inner
            .changes
            .with(vec![("kind", kind.to_owned())], |c| {
                c.inc_by(count);
            });
    }

    /// A source's payload was rejected; the source kept its last good flags.
    pub fn source_rejected(&self, source: &str) {
        inc(&self.inner.rejected, vec![("source", source.to_owned())]);
    }

    /// A kubernetes source's watch expired (410) and it lists again.
    pub fn source_relisted(&self, source: &str) {
        inc(&self.inner.relists, vec![("source", source.to_owned())]);
    }

    /// A remote source fetched (or received) successfully: its failure streak ends.
    pub fn source_fetch_succeeded(&self, source: &str) {
        let labels = vec![("source", source.to_owned())];
        let now = i64::try_from(crate::unix_now()).unwrap_or(i64::MAX);
        self.inner.fetch_success.with(labels.clone(), |g| {
            g.set(now);
        });
        self.inner.fetch_failures.with(labels, |g| {
            g.set(0);
        });
        let was_stale = self.update_fetch_state(source, |state| {
            state.last_success = Some(now);
            state.consecutive_failures = 0;
            state.stale_since.take().is_some()
        });
        if was_stale {
            self.inner
                .source_stale
                .with(vec![("source", source.to_owned())], |g| {
                    g.set(0);
                });
            tracing::info!(
                source,
                "the source answered; its last known good flags are replaced"
            );
        }
    }

    /// The source serves its last-known-good payload, received at `saved_at` (`flagpole_source_stale`,
    /// and `/readyz`), until its next success.
    pub fn source_stale(&self, source: &str, saved_at: u64) {
        self.inner
            .source_stale
            .with(vec![("source", source.to_owned())], |g| {
                g.set(1);
            });
        let saved_at = i64::try_from(saved_at).unwrap_or(i64::MAX);
        self.update_fetch_state(source, |state| state.stale_since = Some(saved_at));
    }

    fn update_fetch_state<R>(&self, source: &str, f: impl FnOnce(&mut FetchState) -> R) -> R {
        let mut states = self
            .inner
            .fetch_states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match states.get_mut(source) {
            Some(state) => f(state),
            None => f(states.entry(source.to_owned()).or_default()),
        }
    }

    /// How many flags carry the stale marker `reason` (`flagpole_stale_flags`).
    pub fn set_stale_flags(&self, reason: &str, count: usize) {
        self.inner
            .stale
            .with(vec![("reason", reason.to_owned())], |g| {
                g.set(i64::try_from(count).unwrap_or(i64::MAX));
            });
    }

    /// Whether a polling source's data is overdue (`flagpole_source_overdue`, and `/readyz`).
    pub fn source_overdue(&self, source: &str, overdue: bool) {
        self.inner
            .overdue
            .with(vec![("source", source.to_owned())], |g| {
                g.set(i64::from(overdue));
            });
        self.update_fetch_state(source, |state| state.overdue = overdue);
    }

    /// Every remote source's fetch state, by source identity.
    pub fn source_fetch_states(&self) -> Vec<(String, FetchState)> {
        let states = self
            .inner
            .fetch_states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        states.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// A remote source failed (fetch, stream or payload); it kept its last good flags.
    pub fn source_fetch_failed(&self, source: &str) {
        let labels = vec![("source", source.to_owned())];
        let now = i64::try_from(crate::unix_now()).unwrap_or(i64::MAX);
        self.inner.fetch_error.with(labels.clone(), |g| {
            g.set(now);
        });
        self.inner.fetch_failures.with(labels, |g| {
            g.inc();
        });
        self.update_fetch_state(source, |state| {
            state.last_error = Some(now);
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        });
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would only truncate the page.
        if encode(&mut out, &self.inner.registry).is_err() {
            tracing::warn!("metrics encoding failed");
        }
        out
    }
}

/// The `process_*` gauges Prometheus client libraries export, read from `/proc/self` at scrape time.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |field: &str| -> Option<i64> {
            let line = status.lines().find(|l| l.starts_with(field))?;
            let value: i64 = line[field.len()..]
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some(value.saturating_mul(1024))
        };
        let threads = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse::<i64>().ok());
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| i64::try_from(dir.count()).unwrap_or(i64::MAX));
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                kib("VmRSS:"),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                kib("VmSize:"),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                open_fds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                threads,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        if let Some(seconds) = cpu_seconds() {
            let counter = ConstCounter::new(seconds);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

/// User plus system CPU time of the process, from `/proc/self/stat` (fields 14 and 15, in clock ticks).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / clock_ticks_per_second())
}

#[cfg(target_os = "linux")]
fn clock_ticks_per_second() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

#[cfg(not(target_os = "linux"))]
fn clock_ticks_per_second() -> f64 {
    100.0
}

fn http_duration_constructor() -> Histogram {
    Histogram::new(HTTP_DURATION_BUCKETS)
}

fn http_size_constructor() -> Histogram {
    Histogram::new(HTTP_SIZE_BUCKETS)
}

fn sync_duration_constructor() -> Histogram {
    Histogram::new(SYNC_STREAM_DURATION_BUCKETS)
}

fn stream_labels(selector: &str, provider_id: &str) -> Labels {
    let mut labels = Vec::with_capacity(3);
    if !provider_id.is_empty() {
        labels.push(("provider_id", provider_id.to_owned()));
    }
    labels.push(("selector", selector.to_owned()));
    labels
}

fn inc(family: &Bounded<Counter>, labels: Labels) {
    family.with(labels, |c| {
        c.inc();
    });
}

fn overflow_labels() -> Labels {
    vec![("otel_metric_overflow", "true".to_owned())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_metrics_use_flagd_names() {
        let metrics = Metrics::new();
        metrics.record_evaluation("my-flag", "on", "STATIC", None);
        metrics.record_evaluation("missing", "", "ERROR", Some("FLAG_NOT_FOUND"));
        let text = metrics.encode();
        assert!(text.contains(
            "feature_flag_flagd_impression_total{feature_flag_key=\"my-flag\",feature_flag_provider_name=\"flagd\",feature_flag_reason=\"STATIC\",feature_flag_result_variant=\"on\"} 1"
        ), "{text}");
        assert!(text.contains(
            "feature_flag_flagd_result_reason_total{ExceptionTypeKeyName=\"FLAG_NOT_FOUND\",feature_flag_provider_name=\"flagd\",feature_flag_reason=\"ERROR\"} 1"
        ), "{text}");
        // No impression for the failed evaluation; the error counter with a key has it.
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("feature_flag_flagd_impression_total")
                    && l.contains("feature_flag_key=\"missing\"")),
            "{text}"
        );
        assert!(text.contains(
            "flagpole_evaluation_errors_total{error_type=\"FLAG_NOT_FOUND\",feature_flag_key=\"missing\"} 1"
        ), "{text}");
    }

    #[test]
    fn label_values_are_capped_and_routes_come_from_a_closed_set() {
        let metrics = Metrics::new();
        let huge = "é".repeat(100_000);
        metrics.sync_stream_opened(&huge, &huge);
        for i in 0..50 {
            let path = format!("/{}{i}", "x".repeat(60_000));
            metrics.record_http_request(
                evaluation_route(&path),
                "POST",
                404,
                "http",
                Duration::ZERO,
                0,
            );
        }
        metrics.record_http_request(
            evaluation_route("/flagd.evaluation.v1.Service/ResolveBoolean"),
            "POST",
            200,
            "http",
            Duration::ZERO,
            0,
        );
        let text = metrics.encode();
        assert!(text.len() < 64 * 1024, "{} bytes", text.len());
        assert!(text.contains("http_route=\"unmatched\""), "{text}");
        assert!(text.contains("http_route=\"/flagd.evaluation.v1.Service/ResolveBoolean\""));
        let cut = "é".repeat(MAX_LABEL_VALUE_BYTES / 2);
        assert!(text.contains(&format!("selector=\"{cut}\"")), "{text}");
        assert_eq!(
            evaluation_route("/schema.v1.Service/EventStream"),
            "/schema.v1.Service/EventStream"
        );
        assert_eq!(evaluation_route("/schema.v1.Service/Nope"), UNMATCHED_ROUTE);
        assert_eq!(evaluation_route("/"), UNMATCHED_ROUTE);
    }

    #[test]
    fn cached_counters_count_every_evaluation_in_their_own_daemon() {
        let impressions = |metrics: &Metrics, variant: &str| -> u64 {
            let text = metrics.encode();
            let series = format!(
                "feature_flag_flagd_impression_total{{feature_flag_key=\"f\",feature_flag_provider_name=\"flagd\",feature_flag_reason=\"TARGETING_MATCH\",feature_flag_result_variant=\"{variant}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(&series))
                .map_or(0, |n| n.parse().expect("a count"))
        };
        let first = Metrics::new();
        let second = Metrics::new();
        for _ in 0..5 {
            first.record_evaluation("f", "a", "TARGETING_MATCH", None);
            first.record_evaluation("f", "b", "TARGETING_MATCH", None);
            // The same key, variant and reason in another daemon on the same thread: its own counter.
            second.record_evaluation("f", "a", "TARGETING_MATCH", None);
        }
        std::thread::scope(|scope| {
            scope.spawn(|| first.record_evaluation("f", "a", "TARGETING_MATCH", None));
        });
        first.record_evaluation("f", "a", "TARGETING_MATCH", None);
        assert_eq!(impressions(&first, "a"), 7);
        assert_eq!(impressions(&first, "b"), 5);
        assert_eq!(impressions(&second, "a"), 5);
        // Far more keys than a thread caches (and than a family keeps): still every one counted, in its
        // series or the overflow series.
        let many = Metrics::new();
        let total = |metrics: &Metrics| -> u64 {
            metrics
                .encode()
                .lines()
                .filter(|l| l.starts_with("feature_flag_flagd_impression_total{"))
                .map(|l| {
                    l.rsplit(' ')
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0)
                })
                .sum()
        };
        let keys = COUNTER_CACHE_KEYS + 100;
        for round in 1..=2u64 {
            for i in 0..keys {
                many.record_evaluation(&format!("k{i}"), "on", "STATIC", None);
            }
            assert_eq!(total(&many), round * keys as u64);
        }
    }

    #[test]
    fn families_are_capped_at_the_series_limit() {
        let metrics = Metrics::new();
        for i in 0..MAX_SERIES_PER_FAMILY + 10 {
            metrics.record_evaluation(&format!("flag-{i}"), "on", "STATIC", None);
        }
        let text = metrics.encode();
        assert!(
            text.contains("feature_flag_flagd_impression_total{otel_metric_overflow=\"true\"} 10"),
            "{text}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_gauges_are_read_from_proc() {
        let text = Metrics::new().encode();
        let rss = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse::<i64>().ok());
        assert!(rss.is_some_and(|rss| rss > 0), "{text}");
        assert!(text.contains("process_open_fds "), "{text}");
    }

    #[test]
    fn sync_streams_are_tracked_by_selector_and_reason() {
        let metrics = Metrics::new();
        metrics.sync_stream_opened("source=a", "");
        metrics.sync_stream_opened("source=a", "");
        metrics.sync_stream_closed(
            "source=a",
            "",
            StreamCloseReason::ClientDisconnect,
            Duration::from_secs(40),
        );
        let text = metrics.encode();
        assert!(
            text.contains("feature_flag_flagd_sync_active_streams{selector=\"source=a\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "feature_flag_flagd_sync_stream_duration_seconds_count{reason=\"client_disconnect\",selector=\"source=a\"} 1"
            ),
            "{text}"
        );
    }

    /// The chart's dashboard and alert rules (`charts/flagpole`) query only metrics flagpole registers: a
    /// renamed or removed metric fails here. Every sample name a family produces counts (`_total`,
    /// `_bucket`, `_count`, `_sum`), plus the one name only a collector shows (`process.cpu.time`).
    #[test]
    fn the_charts_dashboard_and_alerts_use_registered_metrics() {
        let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/flagpole");
        let read = |path: &str| {
            std::fs::read_to_string(chart.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        let dashboard: serde_json::Value =
            serde_json::from_str(&read("dashboards/flagpole.json")).expect("dashboard JSON");
        let mut queries: Vec<String> = dashboard["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t["expr"].as_str().map(str::to_owned))
            .collect();
        assert!(queries.len() >= 20, "{} dashboard queries", queries.len());
        queries.push(read("templates/prometheusrule.yaml"));
        // A family shows once it has a series: give every one a sample.
        let metrics = Metrics::new();
        metrics.record_evaluation("f", "on", "STATIC", None);
        metrics.record_evaluation("f", "", "ERROR", Some("GENERAL"));
        metrics.record_http_request("/r", "POST", 200, "http", Duration::ZERO, 1);
        metrics.active_request("POST", "http", 1);
        metrics.sync_stream_opened("", "");
        metrics.sync_stream_closed("", "", StreamCloseReason::Error, Duration::ZERO);
        metrics.source_reloaded("s");
        metrics.source_rejected("s");
        metrics.source_relisted("s");
        metrics.source_fetch_failed("s");
        metrics.source_fetch_succeeded("s");
        metrics.source_stale("s", 1);
        metrics.source_overdue("s", true);
        metrics.set_stale_flags("unused", 1);
        metrics.change_recorded("write", 1);
        metrics.otel_dropped("traces", "queue_full", 1);
        let mut exported: std::collections::BTreeSet<String> = metrics
            .metric_families()
            .into_iter()
            .flat_map(|family| {
                let name = family.name;
                match family.r#type {
                    4 => vec![
                        format!("{name}_bucket"),
                        format!("{name}_count"),
                        format!("{name}_sum"),
                    ],
                    _ => vec![name],
                }
            })
            .collect();
        exported.insert("process_cpu_time_seconds_total".to_owned());
        assert!(
            exported.contains("feature_flag_flagd_impression_total"),
            "{exported:?}"
        );
        let mut used = std::collections::BTreeSet::new();
        for query in &queries {
            for word in query.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                let metric = ["feature_flag_", "flagpole_", "http_server_", "process_"]
                    .iter()
                    .any(|prefix| word.starts_with(prefix));
                // Label names share some prefixes (feature_flag_key, ...): metrics are the words that
                // precede a selector or a range, or stand alone in an expression.
                if metric && !LABEL_NAMES.contains(&word) {
                    used.insert(word.to_owned());
                }
            }
        }
        let missing: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
        assert!(missing.is_empty(), "not registered: {missing:?}");
        assert!(used.len() >= 15, "{used:?}");
    }

    /// Label names that look like metric names.
    const LABEL_NAMES: [&str; 4] = [
        "feature_flag_key",
        "feature_flag_result_variant",
        "feature_flag_reason",
        "feature_flag_provider_name",
    ];
}
