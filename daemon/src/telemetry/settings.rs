//! What is exported where: flagd's flags with the standard `OTEL_*` environment variables laid over them,
//! as `docs/observability.md#configuration` lists. Pure (the environment is passed in), so every rule has
//! a unit test.
//!
//! flagd's rules kept: `--metrics-exporter otel` pushes metrics, `--otel-collector-uri` also turns traces
//! on, and an `OTEL_EXPORTER_OTLP_ENDPOINT` that is set wins over the flag (flagd only fills the variables
//! in when they are unset). The collector URI means OTLP over gRPC; with only `OTEL_*` variables the
//! protocol defaults to `http/protobuf`, as in the OpenTelemetry SDKs. A variable that does not parse is
//! reported and that setting falls back to its default: telemetry never stops the daemon.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use super::context::Sampler;
use super::export::{Destination, Protocol, TlsFiles};
use crate::config::TelemetryOptions;

/// `OTEL_BSP_MAX_QUEUE_SIZE`'s default: spans waiting for export at most.
pub const DEFAULT_MAX_QUEUE: usize = 2048;
/// The largest `OTEL_BSP_MAX_QUEUE_SIZE` accepted (about 100 MB of spans).
pub const MAX_QUEUE_LIMIT: usize = 100_000;
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`'s default.
pub const DEFAULT_BATCH: usize = 512;
/// `OTEL_BSP_SCHEDULE_DELAY`'s default: the longest a span waits for its batch.
pub const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_secs(5);
/// `OTEL_EXPORTER_OTLP_TIMEOUT`'s default: one export's deadline.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// `OTEL_METRIC_EXPORT_INTERVAL`'s default.
pub const DEFAULT_METRIC_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest metric export interval and batch delay accepted.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The most resource attributes taken from `OTEL_RESOURCE_ATTRIBUTES`.
pub const MAX_RESOURCE_ATTRIBUTES: usize = 128;
/// The default `service.name` (flagd's, so dashboards built on flagd's traces keep working).
pub const DEFAULT_SERVICE_NAME: &str = "flagd";

/// How spans are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Queue capacity; a span that finds it full is dropped and counted.
    pub max_queue: usize,
    /// Spans per export.
    pub max_batch: usize,
    /// The longest a span waits before its batch is sent.
    pub delay: Duration,
}

/// Everything telemetry needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where spans go; `None`: no traces.
    pub traces: Option<Destination>,
    /// Where metrics go; `None`: `/metrics` only.
    pub metrics: Option<Destination>,
    /// The resource attributes of everything exported (`service.name` first).
    pub resource: Vec<(String, String)>,
    /// Which spans are kept.
    pub sampler: Sampler,
    /// Span batching.
    pub batching: Batching,
    /// How often metrics are pushed.
    pub metric_interval: Duration,
    /// How often TLS files are read again.
    pub reload_interval: Duration,
}

/// Reads the settings from the command line's `options` and the environment `env`; the second value
/// lists what was ignored and why (logged at start as warnings).
pub fn resolve(
    options: &TelemetryOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Settings, Vec<String>) {
    let mut warnings = Vec::new();
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let exporter_off = |name: &str| var(name).is_some_and(|v| v.trim() == "none");
    for (name, wanted) in [
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_METRICS_EXPORTER", "otlp"),
    ] {
        if let Some(value) = var(name).filter(|v| !matches!(v.trim(), "otlp" | "none")) {
            warnings.push(format!(
                "{name}={value:?} is not supported (only {wanted} or none): ignored"
            ));
        }
    }
    let metrics_on = !disabled
        && !exporter_off("OTEL_METRICS_EXPORTER")
        && options.metrics_exporter.as_deref() == Some("otel");
    let traces_on = !disabled
        && !exporter_off("OTEL_TRACES_EXPORTER")
        && (options.otel_collector_uri.is_some()
            || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "otlp"));
    if let Some(value) = var("OTEL_EXPORTER_OTLP_COMPRESSION").filter(|v| v.trim() != "none") {
        warnings.push(format!(
            "OTEL_EXPORTER_OTLP_COMPRESSION={value:?} is not supported; exporting uncompressed"
        ));
    }
    let traces = traces_on
        .then(|| destination(options, &var, Signal::Traces, &mut warnings))
        .flatten();
    let metrics = metrics_on
        .then(|| destination(options, &var, Signal::Metrics, &mut warnings))
        .flatten();
    let sampler = Sampler::from_env(
        var("OTEL_TRACES_SAMPLER").as_deref(),
        var("OTEL_TRACES_SAMPLER_ARG").as_deref(),
    )
    .unwrap_or_else(|message| {
        warnings.push(format!("{message}; using parentbased_always_on"));
        Sampler::default()
    });
    let max_queue = number(&var, "OTEL_BSP_MAX_QUEUE_SIZE", &mut warnings)
        .map_or(DEFAULT_MAX_QUEUE, |n| {
            n.clamp(1, MAX_QUEUE_LIMIT as u64) as usize
        });
    let max_batch = number(&var, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &mut warnings)
        .map_or(DEFAULT_BATCH, |n| n.max(1) as usize)
        .min(max_queue);
    let delay = number(&var, "OTEL_BSP_SCHEDULE_DELAY", &mut warnings)
        .map_or(DEFAULT_SCHEDULE_DELAY, Duration::from_millis)
        .max(MIN_INTERVAL);
    let metric_interval = number(&var, "OTEL_METRIC_EXPORT_INTERVAL", &mut warnings)
        .map_or(DEFAULT_METRIC_INTERVAL, Duration::from_millis)
        .max(MIN_INTERVAL);
    // Read (host name, variables) only when something is exported: start-up pays nothing otherwise.
    let resource = if traces.is_some() || metrics.is_some() {
        resource(&var, &mut warnings)
    } else {
        Vec::new()
    };
    let settings = Settings {
        traces,
        metrics,
        // Read (host name, variables) only when something is exported: start-up pays nothing otherwise.
        resource,
        sampler,
        batching: Batching {
            max_queue,
            max_batch,
            delay,
        },
        metric_interval,
        reload_interval: options.otel_reload_interval,
    };
    (settings, warnings)
}

#[derive(Debug, Clone, Copy)]
enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    fn var(self, suffix: &str) -> String {
        match self {
            Signal::Traces => format!("OTEL_EXPORTER_OTLP_TRACES_{suffix}"),
            Signal::Metrics => format!("OTEL_EXPORTER_OTLP_METRICS_{suffix}"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Signal::Traces => "v1/traces",
            Signal::Metrics => "v1/metrics",
        }
    }
}

/// One signal's destination; `None` (with a warning) when its protocol or endpoint cannot be used.
fn destination(
    options: &TelemetryOptions,
    var: &dyn Fn(&str) -> Option<String>,
    signal: Signal,
    warnings: &mut Vec<String>,
) -> Option<Destination> {
    let either = |suffix: &str| {
        var(&signal.var(suffix)).or_else(|| var(&format!("OTEL_EXPORTER_OTLP_{suffix}")))
    };
    let protocol = match either("PROTOCOL").as_deref().map(str::trim) {
        Some("grpc") => Protocol::Grpc,
        Some("http/protobuf") => Protocol::HttpProtobuf,
        Some(other) => {
            warnings.push(format!(
                "OTLP protocol {other:?} is not supported (grpc or http/protobuf); {} are not exported",
                signal.label()
            ));
            return None;
        }
        None if options.otel_collector_uri.is_some() => Protocol::Grpc,
        None => Protocol::HttpProtobuf,
    };
    let tls = TlsFiles {
        ca: options
            .otel_ca_path
            .clone()
            .or_else(|| either("CERTIFICATE").map(Into::into)),
        client: match (&options.otel_cert_path, &options.otel_key_path) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ => either("CLIENT_CERTIFICATE")
                .zip(either("CLIENT_KEY"))
                .map(|(c, k)| (c.into(), k.into())),
        },
    };
    let wants_tls = tls.ca.is_some() || tls.client.is_some();
    // The signal's own endpoint is used as it is; the general one gets the signal's path over HTTP.
    let endpoint = if let Some(own) = var(&signal.var("ENDPOINT")) {
        with_scheme(own.trim(), wants_tls)
    } else {
        let base = var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .or_else(|| options.otel_collector_uri.clone())
            .unwrap_or_else(|| match protocol {
                Protocol::Grpc => "http://localhost:4317".to_owned(),
                Protocol::HttpProtobuf => "http://localhost:4318".to_owned(),
            });
        let base = with_scheme(base.trim(), wants_tls);
        match protocol {
            Protocol::Grpc => base,
            Protocol::HttpProtobuf => format!("{}/{}", base.trim_end_matches('/'), signal.path()),
        }
    };
    let endpoint = match endpoint.parse::<Uri>() {
        Ok(uri) if uri.host().is_some() && matches!(uri.scheme_str(), Some("http" | "https")) => {
            uri
        }
        _ => {
            warnings.push(format!(
                "the OTLP endpoint {:?} is not an http(s) URL; {} are not exported",
                flagpole_engine::redact_credentials(&endpoint),
                signal.label()
            ));
            return None;
        }
    };
    let mut headers = HeaderMap::new();
    for raw in [
        var("OTEL_EXPORTER_OTLP_HEADERS"),
        var(&signal.var("HEADERS")),
    ]
    .into_iter()
    .flatten()
    {
        for (name, value) in parse_headers(&raw, warnings) {
            headers.insert(name, value);
        }
    }
    let timeout = number(var, &signal.var("TIMEOUT"), warnings)
        .or_else(|| number(var, "OTEL_EXPORTER_OTLP_TIMEOUT", warnings))
        .map_or(DEFAULT_EXPORT_TIMEOUT, Duration::from_millis)
        .max(MIN_INTERVAL);
    Some(Destination {
        endpoint,
        protocol,
        headers,
        timeout,
        tls,
    })
}

/// flagd's collector URI is usually `host:port`: a bare address gets `http://` (or `https://` when TLS
/// files are configured).
fn with_scheme(endpoint: &str, tls: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else if tls {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `name=value` pairs, comma-separated, values percent-encoded. A pair that
/// does not parse is skipped with a warning naming the header, never its value (it may be a token).
fn parse_headers(raw: &str, warnings: &mut Vec<String>) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for pair in raw.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((name, value)) = pair.split_once('=') else {
            warnings.push("an OTLP header entry has no '=': skipped".to_owned());
            continue;
        };
        let name = name.trim();
        let parsed = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .ok()
            .zip(
                percent_decode(value.trim())
                    .and_then(|v| HeaderValue::from_bytes(&v).ok())
                    .map(|mut v| {
                        v.set_sensitive(true);
                        v
                    }),
            );
        match parsed {
            Some(header) => out.push(header),
            None => warnings.push(format!(
                "the OTLP header {name:?} is not a valid header: skipped"
            )),
        }
    }
    out
}

/// `OTEL_RESOURCE_ATTRIBUTES` (percent-encoded `key=value` pairs) and `OTEL_SERVICE_NAME` over
/// flagpole's own attributes. `service.name` comes first.
fn resource(
    var: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Vec<(String, String)> {
    let mut attributes: Vec<(String, String)> = vec![
        ("service.name".into(), DEFAULT_SERVICE_NAME.into()),
        ("service.version".into(), env!("CARGO_PKG_VERSION").into()),
        ("telemetry.sdk.name".into(), "flagpole".into()),
        ("telemetry.sdk.language".into(), "rust".into()),
        (
            "telemetry.sdk.version".into(),
            env!("CARGO_PKG_VERSION").into(),
        ),
        ("os.type".into(), std::env::consts::OS.into()),
        ("process.pid".into(), std::process::id().to_string()),
    ];
    if let Some(host) = hostname() {
        attributes.push(("host.name".into(), host));
    }
    let mut set = |key: &str, value: String| match attributes.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => attributes.push((key.to_owned(), value)),
    };
    if let Some(raw) = var("OTEL_RESOURCE_ATTRIBUTES") {
        for pair in raw
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .take(MAX_RESOURCE_ATTRIBUTES)
        {
            match pair
                .split_once('=')
                .and_then(|(k, v)| Some((percent_decode(k.trim())?, percent_decode(v.trim())?)))
            {
                Some((key, value)) if !key.is_empty() => set(
                    &String::from_utf8_lossy(&key),
                    String::from_utf8_lossy(&value).into_owned(),
                ),
                _ => warnings
                    .push("an OTEL_RESOURCE_ATTRIBUTES entry is not key=value: skipped".to_owned()),
            }
        }
    }
    if let Some(name) = var("OTEL_SERVICE_NAME") {
        set("service.name", name.trim().to_owned());
    }
    attributes
}

fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
}

/// A whole number of milliseconds (or a count), or `None` with a warning.
fn number(
    var: &dyn Fn(&str) -> Option<String>,
    name: &str,
    warnings: &mut Vec<String>,
) -> Option<u64> {
    let text = var(name)?;
    match text.trim().parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) => {
            warnings.push(format!("{name}={text:?} is not a whole number: ignored"));
            None
        }
    }
}

/// Decodes `%XX` escapes; `None` for a broken escape.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use super::*;
    use crate::telemetry::context::Root;

    fn run(options: &TelemetryOptions, vars: &[(&str, &str)]) -> (Settings, Vec<String>) {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        resolve(options, &|name| vars.get(name).cloned())
    }

    fn flags(exporter: Option<&str>, uri: Option<&str>) -> TelemetryOptions {
        TelemetryOptions {
            metrics_exporter: exporter.map(Into::into),
            otel_collector_uri: uri.map(Into::into),
            ..TelemetryOptions::default()
        }
    }

    #[test]
    fn nothing_is_exported_unless_asked() {
        let (settings, warnings) = run(&TelemetryOptions::default(), &[]);
        assert!(settings.traces.is_none() && settings.metrics.is_none());
        assert!(warnings.is_empty());
        // An endpoint alone does not switch anything on (flagd needs the flag or an exporter variable).
        let (settings, _) = run(
            &TelemetryOptions::default(),
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")],
        );
        assert!(settings.traces.is_none() && settings.metrics.is_none());
    }

    #[test]
    fn the_collector_uri_means_grpc_for_both_signals_and_the_environment_wins() {
        let (settings, warnings) = run(&flags(Some("otel"), Some("collector:4317")), &[]);
        assert!(warnings.is_empty(), "{warnings:?}");
        let traces = settings.traces.unwrap();
        assert_eq!(traces.protocol, Protocol::Grpc);
        assert_eq!(traces.endpoint, "http://collector:4317/");
        assert_eq!(settings.metrics.unwrap().endpoint, "http://collector:4317/");
        let (settings, _) = run(
            &flags(None, Some("collector:4317")),
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4317")],
        );
        assert_eq!(settings.traces.unwrap().endpoint, "http://other:4317/");
        assert!(
            settings.metrics.is_none(),
            "metrics need --metrics-exporter otel"
        );
    }

    #[test]
    fn http_protobuf_posts_to_the_signal_paths_unless_the_signal_names_its_own_url() {
        let (settings, _) = run(
            &flags(Some("otel"), None),
            &[
                ("OTEL_TRACES_EXPORTER", "otlp"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c.example:4318/"),
                (
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                    "https://m.example/ingest",
                ),
            ],
        );
        let traces = settings.traces.unwrap();
        assert_eq!(traces.protocol, Protocol::HttpProtobuf);
        assert_eq!(traces.endpoint, "https://c.example:4318/v1/traces");
        assert_eq!(
            settings.metrics.unwrap().endpoint,
            "https://m.example/ingest"
        );
    }

    #[test]
    fn tls_files_come_from_the_flags_first_and_make_a_bare_address_https() {
        let options = TelemetryOptions {
            otel_ca_path: Some(PathBuf::from("/ca.pem")),
            otel_cert_path: Some(PathBuf::from("/c.pem")),
            otel_key_path: Some(PathBuf::from("/k.pem")),
            ..flags(None, Some("collector:4317"))
        };
        let (settings, _) = run(
            &options,
            &[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/env-ca.pem")],
        );
        let traces = settings.traces.unwrap();
        assert_eq!(traces.endpoint.scheme_str(), Some("https"));
        assert_eq!(traces.tls.ca, Some(PathBuf::from("/ca.pem")));
        assert_eq!(
            traces.tls.client,
            Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem")))
        );
    }

    #[test]
    fn headers_are_decoded_and_marked_sensitive_and_a_bad_one_is_named_not_shown() {
        let (settings, warnings) = run(
            &flags(None, Some("c:4317")),
            &[
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "Authorization=Bearer%20s3cret,x-team=flags, broken",
                ),
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-team=traces"),
            ],
        );
        let headers = settings.traces.unwrap().headers;
        assert_eq!(headers["authorization"], "Bearer s3cret");
        assert!(headers["authorization"].is_sensitive());
        assert_eq!(headers["x-team"], "traces");
        assert_eq!(warnings.len(), 1);
        assert!(!warnings[0].contains("s3cret"));
    }

    #[test]
    fn the_standard_variables_set_sampler_batching_resource_and_interval() {
        let (settings, warnings) = run(
            &flags(None, Some("c:4317")),
            &[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
                ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1000"),
                ("OTEL_BSP_SCHEDULE_DELAY", "250"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "abc"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod,team=a%2Cb,service.name=x",
                ),
                ("OTEL_SERVICE_NAME", "flags-eu"),
            ],
        );
        assert_eq!(settings.sampler, Sampler::ParentBased(Root::Ratio(0.25)));
        assert_eq!(
            settings.batching,
            Batching {
                max_queue: 100,
                max_batch: 100,
                delay: Duration::from_millis(250)
            }
        );
        assert_eq!(settings.metric_interval, DEFAULT_METRIC_INTERVAL);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let get = |key: &str| {
            settings
                .resource
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("service.name"), Some("flags-eu"));
        assert_eq!(get("team"), Some("a,b"));
        assert_eq!(get("deployment.environment"), Some("prod"));
    }

    #[test]
    fn unusable_settings_are_reported_and_never_fatal() {
        let (settings, warnings) = run(
            &flags(Some("otel"), None),
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ("OTEL_TRACES_EXPORTER", "zipkin"),
                ("OTEL_TRACES_SAMPLER", "nope"),
            ],
        );
        assert!(settings.metrics.is_none() && settings.traces.is_none());
        assert_eq!(settings.sampler, Sampler::default());
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        let (settings, warnings) = run(
            &flags(Some("otel"), Some("c:4317")),
            &[("OTEL_SDK_DISABLED", "true")],
        );
        assert!(settings.metrics.is_none() && settings.traces.is_none() && warnings.is_empty());
        let (settings, warnings) = run(&flags(None, Some("http://user:pw@[bad")), &[]);
        assert!(settings.traces.is_none());
        assert!(!warnings[0].contains("pw"), "{warnings:?}");
    }
}
