//! Shared fixtures of the service tests: a store filled directly with hand-built flags, and the gRPC
//! services served in-process on a free port.

use std::net::SocketAddr;
use std::sync::Arc;

use flagpole::eval::{EvalConfig, Evaluator};
use flagpole::metrics::Metrics;
use flagpole::protocols::grpc::{ServiceConfig, Services};
use flagpole::store::Store;
use flagpole_engine::targeting::Rule;
use flagpole_engine::{Flag, FlagState, Value};
use prost_types::value::Kind;
use prost_types::{Struct, Value as ProtoValue};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Server};

/// The settings of the services under test: the evaluation core's and the gRPC services' in one flat
/// struct, so each test names only what it changes.
#[derive(Debug, Clone)]
pub struct Settings {
    pub context_values: std::collections::BTreeMap<String, String>,
    pub header_to_context: Vec<(String, String)>,
    pub stream_deadline: Option<std::time::Duration>,
    pub disable_sync_metadata: bool,
    pub max_request_body: usize,
    pub event_keep_alive: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        let grpc = ServiceConfig::default();
        Settings {
            context_values: Default::default(),
            header_to_context: Vec::new(),
            stream_deadline: grpc.stream_deadline,
            disable_sync_metadata: grpc.disable_sync_metadata,
            max_request_body: grpc.max_request_body,
            event_keep_alive: grpc.event_keep_alive,
        }
    }
}

impl Settings {
    /// The evaluation core over `store`, with the metrics it records into.
    pub fn evaluator(&self, store: Arc<Store>, metrics: Metrics) -> Evaluator {
        let config = EvalConfig {
            context_values: self.context_values.clone(),
            header_to_context: self.header_to_context.clone(),
            ..EvalConfig::default()
        };
        Evaluator::new(store, config, metrics)
    }

    /// The gRPC services' settings.
    pub fn grpc(&self) -> ServiceConfig {
        ServiceConfig {
            stream_deadline: self.stream_deadline,
            event_keep_alive: self.event_keep_alive,
            disable_sync_metadata: self.disable_sync_metadata,
            max_request_body: self.max_request_body,
        }
    }
}

/// The two sources of the fixture store, in ascending priority.
pub const SOURCES: [&str; 2] = ["file-a.json", "file-b.json"];

/// A flag from a flagd-style JSON definition (`state`, `variants`, `defaultVariant`, `targeting`,
/// `metadata`), with `set_metadata` merged under the flag's metadata as the loader does.
pub fn flag(key: &str, definition: Value, set_metadata: Value) -> Arc<Flag> {
    let mut metadata = set_metadata.as_object().cloned().unwrap_or_default();
    if let Some(own) = definition.get("metadata").and_then(Value::as_object) {
        metadata.extend(own.clone());
    }
    let flag_set_id = metadata
        .get("flagSetId")
        .and_then(Value::as_str)
        .map(Arc::from);
    let targeting = definition
        .get("targeting")
        .filter(|t| t.as_object().is_some_and(|o| !o.is_empty()))
        .cloned();
    let state_raw = definition
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("ENABLED");
    Arc::new(Flag {
        key: Arc::from(key),
        state: if state_raw == "DISABLED" {
            FlagState::Disabled
        } else {
            FlagState::Enabled
        },
        state_raw: Arc::from(state_raw),
        variants: definition["variants"]
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into(),
        default_variant: definition
            .get("defaultVariant")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(Arc::from),
        targeting: targeting
            .as_ref()
            .map(|t| Rule::compile(t).expect("fixture targeting compiles")),
        raw_targeting: targeting.as_ref().map(flagpole_engine::RawJson::from_value),
        metadata: metadata.into(),
        flag_set_id,
        evaluators: None,
    })
}

/// The flags of the first (lower-priority) source.
pub fn source_a() -> Vec<Arc<Flag>> {
    let set = json!({"flagSetId": "set-a", "team": "core"});
    vec![
        flag(
            "bool-flag",
            json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
                   "metadata": {"owner": "alice", "dropped": null}}),
            set.clone(),
        ),
        flag(
            "string-flag",
            json!({"variants": {"red": "#f00", "blue": "#00f"}, "defaultVariant": "red"}),
            set.clone(),
        ),
        flag(
            "int-flag",
            json!({"variants": {"one": 1, "two": 2.7}, "defaultVariant": "two"}),
            set.clone(),
        ),
        flag(
            "float-flag",
            json!({"variants": {"half": 0.5, "ten": 10}, "defaultVariant": "half"}),
            set.clone(),
        ),
        flag(
            "object-flag",
            json!({"variants": {"obj": {"a": 1, "b": "x"}}, "defaultVariant": "obj"}),
            set.clone(),
        ),
        flag(
            "disabled-flag",
            json!({"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"}),
            set.clone(),
        ),
        flag(
            "no-default-flag",
            json!({"variants": {"on": true, "off": false}}),
            set.clone(),
        ),
        flag(
            "array-flag",
            json!({"variants": {"arr": [1, 2]}, "defaultVariant": "arr"}),
            set.clone(),
        ),
        flag(
            "targeted-flag",
            json!({"variants": {"yes": "YES", "no": "NO"}, "defaultVariant": "no",
                   "targeting": {"if": [{"==": [{"var": "email"}, "a@example.com"]}, "yes", null]}}),
            set.clone(),
        ),
        flag(
            "context-flag",
            json!({"variants": {"gold": "G", "silver": "S", "none": "N"}, "defaultVariant": "none",
                   "targeting": {"if": [{"==": [{"var": "tier"}, "gold"]}, "gold",
                                        {"==": [{"var": "user"}, "bob"]}, "silver", null]}}),
            set.clone(),
        ),
        flag(
            "parse-error-flag",
            json!({"variants": {"on": true}, "defaultVariant": "on", "targeting": {"no_such_operator": [1]}}),
            set.clone(),
        ),
        flag(
            "general-error-flag",
            json!({"variants": {"on": true}, "defaultVariant": "on", "targeting": {"if": [true, "not-a-variant", null]}}),
            set,
        ),
    ]
}

/// The flags of the second (higher-priority) source: a different flag set.
pub fn source_b() -> Vec<Arc<Flag>> {
    vec![flag(
        "other-flag",
        json!({"variants": {"a": "A", "b": "B"}, "defaultVariant": "b", "metadata": {"flagSetId": "set-b"}}),
        json!({}),
    )]
}

/// A running set of services.
pub struct Harness {
    /// The store the services read; tests write it directly.
    pub store: Arc<Store>,
    /// Cancelling it shuts the services down.
    pub shutdown: CancellationToken,
    /// Where the gRPC server listens.
    pub addr: SocketAddr,
    /// The metrics the services record into.
    pub metrics: Metrics,
}

impl Harness {
    /// Serves evaluation and sync services over the fixture store.
    pub async fn start(config: Settings) -> Harness {
        let store = Arc::new(Store::new(SOURCES.iter().map(|s| Arc::from(*s))));
        store.replace_source(0, source_a());
        store.replace_source(1, source_b());
        let shutdown = CancellationToken::new();
        let metrics = Metrics::new();
        let evaluator = config.evaluator(store.clone(), metrics.clone());
        let services = Services::new(evaluator, config.grpc(), shutdown.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let server = Server::builder()
            .add_routes(services.evaluation_routes())
            .add_service(services.sync())
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                shutdown.clone().cancelled_owned(),
            );
        tokio::spawn(server);
        Harness {
            store,
            shutdown,
            addr,
            metrics,
        }
    }

    /// A client channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }
}

/// A request Struct from a JSON object.
pub fn context(value: Value) -> Option<Struct> {
    let Value::Object(map) = value else {
        panic!("context must be an object")
    };
    Some(Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), proto_value(v)))
            .collect(),
    })
}

fn proto_value(value: &Value) -> ProtoValue {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(proto_value).collect(),
        }),
        Value::Object(_) => Kind::StructValue(context(value.clone()).unwrap_or_default()),
    };
    ProtoValue { kind: Some(kind) }
}

/// A response Struct as JSON (for assertions).
pub fn json_of(s: Option<&Struct>) -> Value {
    match s {
        None => Value::Null,
        Some(s) => Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), json_value(v)))
                .collect(),
        ),
    }
}

fn json_value(value: &ProtoValue) -> Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => json!(n),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(json_value).collect()),
        Some(Kind::StructValue(s)) => json_of(Some(s)),
    }
}

/// A request with a `Flagd-Selector` header (and optionally more headers).
pub fn with_headers<T>(message: T, headers: &[(&'static str, &'static str)]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for (name, value) in headers {
        request
            .metadata_mut()
            .insert(*name, tonic::metadata::MetadataValue::from_static(value));
    }
    request
}
