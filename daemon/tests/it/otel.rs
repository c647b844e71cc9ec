//! OpenTelemetry export checked against a real backend: Jaeger v1.75.0 (built by
//! `scripts/install-test-clients.sh` from the Go module proxy), whose OTLP receiver takes flagpole's
//! spans into its store (read back through its query API) and its metric points into a Prometheus
//! exporter (scraped here). The daemon runs as a child process on free ports; requests go through `curl`
//! (Connect, OFREP) and a tonic gRPC client, each with its own W3C `traceparent`.
//!
//! Also: HTTP/protobuf over mutual TLS with the certificate files read again on `--otel-reload-interval`,
//! and a collector that is down or never answers (evaluations keep answering; the drops are counted).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flagpole_proto::evaluation_v2::ResolveBooleanRequest;
use flagpole_proto::evaluation_v2::service_client::ServiceClient as EvaluationV2Client;
use flagpole_proto::sync_v1::SyncFlagsRequest;
use flagpole_proto::sync_v1::flag_sync_service_client::FlagSyncServiceClient;
use serde_json::Value;
use tonic::metadata::MetadataValue;

use crate::clients::{ChildDaemon, free_port, workspace_root};
use crate::runtime_support::test_certificates;

/// How long spans and metric points get to arrive.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(30);

const FLAGS: &str = r##"{"flags":{
  "bool-flag":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"},
  "color":{"state":"ENABLED","variants":{"red":"#f00","blue":"#00f"},"defaultVariant":"red",
           "targeting":{"if":[{"==":[{"var":"team"},"ops"]},"blue",null]}}
}}"##;

/// Exports flush quickly in tests.
const FAST_EXPORT: [(&str, &str); 2] = [
    ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
    ("OTEL_BSP_SCHEDULE_DELAY", "100"),
];

fn jaeger_binary() -> PathBuf {
    let dir = std::env::var_os("FLAGPOLE_TEST_CLIENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-clients"));
    let binary = dir.join("jaeger/jaeger");
    assert!(
        binary.exists(),
        "Jaeger is not installed ({} is missing): run scripts/install-test-clients.sh",
        binary.display()
    );
    binary
}

/// A Jaeger process: OTLP in (gRPC and HTTP), traces to memory, metrics to a Prometheus endpoint.
struct Jaeger {
    child: Child,
    otlp_grpc: u16,
    otlp_http: u16,
    query: u16,
    prometheus: u16,
    log: PathBuf,
}

/// The receiver's TLS: server certificate and key, and the CA client certificates must come from.
struct ReceiverTls<'a> {
    cert: &'a Path,
    key: &'a Path,
    client_ca: &'a Path,
}

impl Jaeger {
    fn start(dir: &Path, tls: Option<ReceiverTls<'_>>) -> Jaeger {
        let (otlp_grpc, otlp_http, query, query_grpc, prometheus) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let tls = tls.map_or_else(String::new, |tls| {
            format!(
                "\n        tls:\n          cert_file: {}\n          key_file: {}\n          client_ca_file: {}",
                tls.cert.display(),
                tls.key.display(),
                tls.client_ca.display()
            )
        });
        let config = format!(
            r"service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
    metrics:
      receivers: [otlp]
      exporters: [prometheus]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp_grpc}{tls}
      http:
        endpoint: 127.0.0.1:{otlp_http}{tls}
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
  prometheus:
    endpoint: 127.0.0.1:{prometheus}
"
        );
        let config_path = dir.join("jaeger.yaml");
        std::fs::write(&config_path, config).expect("write the Jaeger config");
        let log = dir.join("jaeger.log");
        let child = Command::new(jaeger_binary())
            .arg("--config")
            .arg(format!("file:{}", config_path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("Jaeger log"))
            .spawn()
            .expect("start Jaeger");
        let jaeger = Jaeger {
            child,
            otlp_grpc,
            otlp_http,
            query,
            prometheus,
            log,
        };
        jaeger.wait_until("its query API answers", || {
            curl_json(&format!("http://127.0.0.1:{query}/api/services")).is_some()
        });
        jaeger
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + ARRIVAL_TIMEOUT;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "Jaeger: {what} did not happen within {ARRIVAL_TIMEOUT:?}; its log:\n{}",
                crate::clients::tail(&self.log(), 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The spans of one trace, once it has `count` of them.
    fn trace(&self, trace_id: &str, count: usize) -> Vec<Value> {
        let url = format!("http://127.0.0.1:{}/api/traces/{trace_id}", self.query);
        let mut spans = Vec::new();
        self.wait_until(&format!("trace {trace_id} with {count} spans"), || {
            spans = curl_json(&url)
                .and_then(|v| v["data"][0]["spans"].as_array().cloned())
                .unwrap_or_default();
            spans.len() >= count
        });
        spans
    }

    /// The spans of `service` named `operation`, once there is one.
    fn operation(&self, service: &str, operation: &str) -> Vec<Value> {
        let url = format!(
            "http://127.0.0.1:{}/api/traces?service={service}&operation={}&limit=20",
            self.query,
            operation.replace('/', "%2F")
        );
        let mut spans = Vec::new();
        self.wait_until(&format!("a {operation} span of {service}"), || {
            spans = curl_json(&url)
                .and_then(|v| v["data"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .flat_map(|trace| trace["spans"].as_array().cloned().unwrap_or_default())
                .filter(|span| span["operationName"] == operation)
                .collect();
            !spans.is_empty()
        });
        spans
    }

    /// The Prometheus exporter's samples of `job`, once every name in `wanted` is among them.
    fn metrics(&self, job: &str, wanted: &[&str]) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.prometheus);
        let mut ours = String::new();
        self.wait_until(&format!("metrics {wanted:?} of {job}"), || {
            let text = curl_text(&url).unwrap_or_default();
            ours = text
                .lines()
                .filter(|l| l.contains(&format!("job=\"{job}\"")))
                .collect::<Vec<_>>()
                .join("\n");
            wanted
                .iter()
                .all(|name| ours.lines().any(|l| l.starts_with(name)))
        });
        ours
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl_text(url: &str) -> Option<String> {
    let output = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", url])
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl (is it installed?): {e}"));
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn curl_json(url: &str) -> Option<Value> {
    serde_json::from_str(&curl_text(url)?).ok()
}

/// POSTs JSON with a `traceparent`; returns the answer.
fn post(url: &str, traceparent: &str, body: &str) -> Value {
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-H",
            "content-type: application/json",
        ])
        .args(["-H", &format!("traceparent: {traceparent}")])
        .args(["-d", body, url])
        .output()
        .expect("run curl");
    assert!(output.status.success(), "curl {url} failed");
    serde_json::from_slice(&output.stdout).expect("a JSON answer")
}

/// A `traceparent` of a fresh trace: (header, trace id, caller's span id).
fn caller() -> (String, String, String) {
    let trace: String = (0..32)
        .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap())
        .collect();
    let span = format!("{:016x}", fastrand::u64(1..));
    (format!("00-{trace}-{span}-01"), trace, span)
}

fn tag<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["tags"]
        .as_array()
        .and_then(|tags| tags.iter().find(|t| t["key"] == key))
        .map_or(&Value::Null, |t| &t["value"])
}

fn parent_of(span: &Value) -> &Value {
    &span["references"][0]["spanID"]
}

fn write_flags(dir: &Path) -> PathBuf {
    let flags = dir.join("flags.json");
    std::fs::write(&flags, FLAGS).expect("write flags");
    flags
}

fn service_name(test: &str) -> String {
    format!("flagpole-{test}-{}", fastrand::u32(..))
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_and_metrics_reach_a_real_collector_over_grpc() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jaeger = Jaeger::start(dir.path(), None);
    let service = service_name("grpc");
    let uri = format!("127.0.0.1:{}", jaeger.otlp_grpc);
    let mut env = FAST_EXPORT.to_vec();
    env.push(("OTEL_SERVICE_NAME", &service));
    let daemon = ChildDaemon::start_with_env(
        &write_flags(dir.path()),
        dir.path(),
        &["--metrics-exporter", "otel", "--otel-collector-uri", &uri],
        "",
        &env,
    );
    let ports = daemon.ports;

    // Connect (curl), a targeting match with a context id.
    let (connect_parent, connect_trace, connect_caller) = caller();
    let answer = post(
        &format!(
            "http://127.0.0.1:{}/flagd.evaluation.v1.Service/ResolveString",
            ports.evaluation
        ),
        &connect_parent,
        r#"{"flagKey":"color","context":{"team":"ops","targetingKey":"user-1"}}"#,
    );
    assert_eq!(answer["variant"], "blue");
    // Connect, a flag that does not exist.
    let (missing_parent, missing_trace, _) = caller();
    post(
        &format!(
            "http://127.0.0.1:{}/flagd.evaluation.v2.Service/ResolveBoolean",
            ports.evaluation
        ),
        &missing_parent,
        r#"{"flagKey":"nope","context":{}}"#,
    );
    // OFREP (curl).
    let (ofrep_parent, ofrep_trace, ofrep_caller) = caller();
    let answer = post(
        &format!(
            "http://127.0.0.1:{}/ofrep/v1/evaluate/flags/bool-flag",
            ports.ofrep
        ),
        &ofrep_parent,
        r#"{"context":{"targetingKey":"user-2"}}"#,
    );
    assert_eq!(answer["value"], true);
    // gRPC (tonic), and a sync stream the client closes.
    let (grpc_parent, grpc_trace, grpc_caller) = caller();
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", ports.evaluation))
            .unwrap()
            .connect()
            .await
            .expect("connect");
    let mut request = tonic::Request::new(ResolveBooleanRequest {
        flag_key: "bool-flag".into(),
        context: None,
    });
    request.metadata_mut().insert(
        "traceparent",
        MetadataValue::try_from(grpc_parent.as_str()).unwrap(),
    );
    let answer = EvaluationV2Client::new(channel)
        .resolve_boolean(request)
        .await
        .expect("ResolveBoolean")
        .into_inner();
    assert_eq!(answer.value, Some(true));
    let (sync_parent, sync_trace, sync_caller) = caller();
    let sync = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", ports.sync))
        .unwrap()
        .connect()
        .await
        .expect("connect to sync");
    let mut request = tonic::Request::new(SyncFlagsRequest::default());
    request.metadata_mut().insert(
        "traceparent",
        MetadataValue::try_from(sync_parent.as_str()).unwrap(),
    );
    let mut stream = FlagSyncServiceClient::new(sync)
        .sync_flags(request)
        .await
        .expect("SyncFlags")
        .into_inner();
    assert!(stream.message().await.expect("first payload").is_some());
    drop(stream);

    let span = &jaeger.trace(&connect_trace, 1)[0];
    assert_eq!(span["operationName"], "resolveString");
    assert_eq!(parent_of(span), connect_caller.as_str());
    assert_eq!(tag(span, "span.kind"), "server");
    assert_eq!(tag(span, "feature_flag.key"), "color");
    assert_eq!(tag(span, "feature_flag.provider.name"), "flagd");
    assert_eq!(tag(span, "feature_flag.result.variant"), "blue");
    assert_eq!(tag(span, "feature_flag.result.reason"), "targeting_match");
    assert_eq!(tag(span, "feature_flag.context.id"), "user-1");
    assert_eq!(
        tag(span, "http.route"),
        "/flagd.evaluation.v1.Service/ResolveString"
    );

    let span = &jaeger.trace(&missing_trace, 1)[0];
    assert_eq!(span["operationName"], "resolveBoolean");
    assert_eq!(tag(span, "error.type"), "FLAG_NOT_FOUND");
    assert_eq!(tag(span, "otel.status_code"), "ERROR");

    let span = &jaeger.trace(&ofrep_trace, 1)[0];
    assert_eq!(span["operationName"], "flagd.ofrep");
    assert_eq!(parent_of(span), ofrep_caller.as_str());
    assert_eq!(tag(span, "feature_flag.key"), "bool-flag");
    assert_eq!(tag(span, "feature_flag.result.reason"), "static");
    assert_eq!(tag(span, "http.route"), "/ofrep/v1/evaluate/flags/{key}");

    let span = &jaeger.trace(&grpc_trace, 1)[0];
    assert_eq!(span["operationName"], "resolveBoolean");
    assert_eq!(parent_of(span), grpc_caller.as_str());
    assert_eq!(tag(span, "feature_flag.result.variant"), "on");

    let span = &jaeger.trace(&sync_trace, 1)[0];
    assert_eq!(
        span["operationName"],
        "flagd.sync.v1.FlagSyncService/SyncFlags"
    );
    assert_eq!(parent_of(span), sync_caller.as_str());
    assert_eq!(
        tag(span, "feature_flag.sync.close_reason"),
        "client_disconnect"
    );

    // The file source's first load, a root span.
    let reloads = jaeger.operation(&service, "flagSync");
    assert_eq!(tag(&reloads[0], "flagpole.reload.outcome"), "loaded");
    assert_eq!(tag(&reloads[0], "feature_flag.count"), 2);

    // The same instruments as /metrics, through the collector's Prometheus translation.
    let metrics = jaeger.metrics(
        &service,
        &[
            "feature_flag_flagd_impression_total",
            "feature_flag_flagd_result_reason_total",
            "http_server_request_duration_seconds_count",
            "http_server_response_body_size_bytes_count",
            "http_server_active_requests",
            "process_cpu_time_seconds_total",
            "flagpole_source_reloads_total",
        ],
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("feature_flag_flagd_impression_total")
                && l.contains("feature_flag_key=\"color\"")
                && l.contains("feature_flag_result_variant=\"blue\"")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("feature_flag_flagd_result_reason_total")
                && l.contains("ExceptionTypeKeyName=\"FLAG_NOT_FOUND\"")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_over_mutual_tls_http_and_grpc_follows_certificate_files_that_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name);
    let right = test_certificates(&["127.0.0.1"]);
    let wrong = test_certificates(&["127.0.0.1"]);
    right.write_server(&path("server.pem"), &path("server-key.pem"));
    std::fs::write(path("ca.pem"), &right.ca_pem).unwrap();
    // The daemon's client certificate: issued by the same CA (its server certificate serves both ends).
    std::fs::write(path("client.pem"), &right.cert_pem).unwrap();
    std::fs::write(path("client-key.pem"), &right.key_pem).unwrap();
    // The daemon first trusts another CA: nothing can be exported until the file is fixed.
    std::fs::write(path("daemon-ca.pem"), &wrong.ca_pem).unwrap();
    let jaeger = Jaeger::start(
        dir.path(),
        Some(ReceiverTls {
            cert: &path("server.pem"),
            key: &path("server-key.pem"),
            client_ca: &path("ca.pem"),
        }),
    );
    let service = service_name("tls");
    let endpoint = format!("https://127.0.0.1:{}", jaeger.otlp_http);
    let mut env = FAST_EXPORT.to_vec();
    env.extend([
        ("OTEL_SERVICE_NAME", service.as_str()),
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20otel-s3cret",
        ),
    ]);
    let (ca, cert, key) = (
        path("daemon-ca.pem"),
        path("client.pem"),
        path("client-key.pem"),
    );
    let daemon = ChildDaemon::start_with_env(
        &write_flags(dir.path()),
        dir.path(),
        &[
            "--otel-ca-path",
            ca.to_str().unwrap(),
            "--otel-cert-path",
            cert.to_str().unwrap(),
            "--otel-key-path",
            key.to_str().unwrap(),
            "--otel-reload-interval",
            "1s",
        ],
        "",
        &env,
    );
    let ofrep = format!(
        "http://127.0.0.1:{}/ofrep/v1/evaluate/flags/bool-flag",
        daemon.ports.ofrep
    );
    let (first, _, _) = caller();
    post(&ofrep, &first, "{}");
    let metrics_url = format!("http://127.0.0.1:{}/metrics", daemon.ports.management);
    jaeger.wait_until("a failed export is counted", || {
        curl_text(&metrics_url).is_some_and(|text| {
            text.lines().any(|l| {
                l.starts_with("flagpole_otel_dropped_total")
                    && l.contains("reason=\"export_failed\"")
                    && l.contains("signal=\"traces\"")
                    && !l.ends_with(" 0")
            })
        })
    });

    std::fs::write(&ca, &right.ca_pem).unwrap();
    // The next reload reads the fixed file; a span sent after it arrives.
    let mut arrived = None;
    jaeger.wait_until("a span over TLS after the CA file was fixed", || {
        let (parent, trace, _) = caller();
        post(&ofrep, &parent, "{}");
        std::thread::sleep(Duration::from_millis(300));
        let url = format!("http://127.0.0.1:{}/api/traces/{trace}", jaeger.query);
        arrived = curl_json(&url).filter(|v| v["data"][0]["spans"].is_array());
        arrived.is_some()
    });
    let span = &arrived.unwrap()["data"][0]["spans"][0];
    assert_eq!(span["operationName"], "flagd.ofrep");
    assert!(
        daemon.stderr().contains("TLS files changed"),
        "{}",
        daemon.stderr()
    );
    // The header's value (a token) is never logged.
    assert!(!daemon.stderr().contains("otel-s3cret"));

    // gRPC over the same mutual TLS: `--otel-collector-uri` with the CA and the client certificate.
    let grpc_uri = format!("https://127.0.0.1:{}", jaeger.otlp_grpc);
    let service = service_name("tls-grpc");
    let mut env = FAST_EXPORT.to_vec();
    env.push(("OTEL_SERVICE_NAME", service.as_str()));
    let grpc_daemon = ChildDaemon::start_with_env(
        &write_flags(dir.path()),
        dir.path(),
        &[
            "--otel-collector-uri",
            &grpc_uri,
            "--otel-ca-path",
            ca.to_str().unwrap(),
            "--otel-cert-path",
            cert.to_str().unwrap(),
            "--otel-key-path",
            key.to_str().unwrap(),
        ],
        "",
        &env,
    );
    let (parent, trace, caller_span) = caller();
    post(
        &format!(
            "http://127.0.0.1:{}/ofrep/v1/evaluate/flags/bool-flag",
            grpc_daemon.ports.ofrep
        ),
        &parent,
        "{}",
    );
    let span = &jaeger.trace(&trace, 1)[0];
    assert_eq!(parent_of(span), caller_span.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_is_down_or_silent_never_fails_an_evaluation() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_uri = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
    let accepting = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().take(64).flatten() {
            held.push(stream);
        }
    });
    let mut env = FAST_EXPORT.to_vec();
    env.extend([
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "300"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4"),
    ]);
    let daemon = ChildDaemon::start_with_env(
        &write_flags(dir.path()),
        dir.path(),
        &[
            "--metrics-exporter",
            "otel",
            "--otel-collector-uri",
            &silent_uri,
        ],
        "",
        &env,
    );
    let channel = tonic::transport::Endpoint::from_shared(format!(
        "http://127.0.0.1:{}",
        daemon.ports.evaluation
    ))
    .unwrap()
    .connect()
    .await
    .expect("connect");
    let mut client = EvaluationV2Client::new(channel);
    for _ in 0..500 {
        let answer = client
            .resolve_boolean(ResolveBooleanRequest {
                flag_key: "bool-flag".into(),
                context: None,
            })
            .await
            .expect("every evaluation is answered")
            .into_inner();
        assert_eq!(answer.value, Some(true));
    }
    // The spans that did not fit were dropped and counted; the exports that timed out too.
    let metrics_url = format!("http://127.0.0.1:{}/metrics", daemon.ports.management);
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    let counted = |text: &str, reason: &str, signal: &str| {
        text.lines().any(|l| {
            l.starts_with("flagpole_otel_dropped_total")
                && l.contains(&format!("reason=\"{reason}\""))
                && l.contains(&format!("signal=\"{signal}\""))
                && !l.ends_with(" 0")
        })
    };
    loop {
        let text = curl_text(&metrics_url).unwrap_or_default();
        if counted(&text, "queue_full", "traces")
            && counted(&text, "export_failed", "traces")
            && counted(&text, "export_failed", "metrics")
        {
            break;
        }
        assert!(Instant::now() < deadline, "drops not counted:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(daemon);
    drop(accepting);
}
