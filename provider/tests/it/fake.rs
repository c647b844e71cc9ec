//! A small in-test flagd: the evaluation service (a fixed flag table), its event stream, and the sync service
//! (a payload the test sets), with an outage switch. While "down", every call answers UNAVAILABLE and every
//! open stream ends with UNAVAILABLE, which is what a provider sees when the daemon goes away.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use flagpole_proto::evaluation_v1 as ev;
use flagpole_proto::evaluation_v1::service_server::{Service, ServiceServer};
use flagpole_proto::evaluation_v2 as ev2;
use flagpole_proto::sync_v1 as sy;
use flagpole_proto::sync_v1::flag_sync_service_server::{FlagSyncService, FlagSyncServiceServer};
use futures::Stream;
use prost_types::value::Kind;
use prost_types::{Struct, Value};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

pub type Events = Pin<Box<dyn Stream<Item = Result<ev::EventStreamResponse, Status>> + Send>>;
pub type Syncs = Pin<Box<dyn Stream<Item = Result<sy::SyncFlagsResponse, Status>> + Send>>;

/// What the fake serves and what it saw.
pub struct State {
    up: watch::Sender<bool>,
    /// Unary evaluation calls served (both versions).
    pub calls: AtomicUsize,
    /// Of those, `flagd.evaluation.v2` calls.
    pub v2_calls: AtomicUsize,
    /// Event and sync streams currently open.
    pub open_streams: AtomicUsize,
    /// Sync messages sent so far.
    pub sync_sent: AtomicUsize,
    /// Event and sync streams opened so far.
    pub stream_opens: AtomicUsize,
    /// `flagd-selector` headers seen, in order.
    pub selectors: Mutex<Vec<String>>,
    /// Contexts of evaluation calls, in order.
    pub contexts: Mutex<Vec<serde_json::Value>>,
    /// The `:authority` of every request (the URI authority as the server saw it).
    pub authorities: Mutex<Vec<String>>,
    /// `provider_id`s of sync requests.
    pub provider_ids: Mutex<Vec<String>>,
    events: broadcast::Sender<ev::EventStreamResponse>,
    config: watch::Sender<String>,
    /// Sent with every sync message when set.
    pub sync_context: Mutex<Option<Struct>>,
    /// Answered by GetMetadata when set (UNIMPLEMENTED otherwise).
    pub metadata: Mutex<Option<Struct>>,
    /// When set, streams are refused with this code.
    pub refuse_streams: Mutex<Option<Code>>,
}

impl State {
    /// Starts or ends an outage.
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    fn is_up(&self) -> Result<(), Status> {
        if *self.up.borrow() {
            Ok(())
        } else {
            Err(Status::unavailable("fake flagd is down"))
        }
    }

    /// Sends an event-stream message to every subscriber.
    pub fn send_change(&self, keys: &[&str]) {
        let flags = Struct {
            fields: keys
                .iter()
                .map(|k| {
                    (
                        k.to_string(),
                        sv(Kind::StructValue(Struct {
                            fields: [("type".to_string(), s("update"))].into(),
                        })),
                    )
                })
                .collect(),
        };
        let data = Struct {
            fields: [("flags".to_string(), sv(Kind::StructValue(flags)))].into(),
        };
        let _ = self.events.send(ev::EventStreamResponse {
            r#type: "configuration_change".into(),
            data: Some(data),
        });
    }

    /// Replaces the sync payload (sent to every sync stream).
    pub fn set_config(&self, json: &str) {
        self.config.send_replace(json.to_owned());
    }

    fn record<T>(&self, request: &Request<T>) {
        if let Some(v) = request
            .metadata()
            .get("flagd-selector")
            .and_then(|v| v.to_str().ok())
        {
            self.selectors.lock().unwrap().push(v.to_owned());
        }
    }
}

async fn went_down(up: &mut watch::Receiver<bool>) {
    let _ = up.wait_for(|u| !*u).await.map(|_| ());
}

fn sv(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

fn s(text: &str) -> Value {
    sv(Kind::StringValue(text.into()))
}

fn n(x: f64) -> Value {
    sv(Kind::NumberValue(x))
}

/// The nested object `object-static` resolves to.
pub fn nested_object() -> Struct {
    let inner = Struct {
        fields: [
            ("deep".to_string(), sv(Kind::BoolValue(true))),
            (
                "list".to_string(),
                sv(Kind::ListValue(prost_types::ListValue {
                    values: vec![n(1.0), s("two")],
                })),
            ),
        ]
        .into(),
    };
    Struct {
        fields: [
            ("title".to_string(), s("pics")),
            ("count".to_string(), n(100.0)),
            ("inner".to_string(), sv(Kind::StructValue(inner))),
        ]
        .into(),
    }
}

fn metadata() -> Option<Struct> {
    Some(Struct {
        fields: [
            ("scope".to_string(), s("fake")),
            ("version".to_string(), n(3.0)),
        ]
        .into(),
    })
}

/// The fixed flag table: (reason, variant) or an error status.
fn lookup(key: &str) -> Result<(&'static str, &'static str), Status> {
    match key {
        "bool-static" | "string-static" | "int-static" | "float-static" | "object-static" => {
            Ok(("STATIC", "on"))
        }
        "bool-targeted" => Ok(("TARGETING_MATCH", "on")),
        "bool-disabled" => Ok(("DISABLED", "")),
        "mismatch" => Err(Status::invalid_argument("Type mismatch error")),
        "parse-error" => Err(Status::data_loss("Error parsing input or configuration")),
        "general" => Err(Status::unknown("General error")),
        _ => Err(Status::not_found("Flag not found")),
    }
}

pub struct Eval(pub Arc<State>);
pub struct EvalV2(pub Arc<State>);
pub struct Sync(pub Arc<State>);

macro_rules! unary {
    ($self:ident, $request:ident, $resp:ident, $value:expr) => {{
        let state = &$self.0;
        state.record(&$request);
        state.is_up()?;
        state.calls.fetch_add(1, Ordering::SeqCst);
        let req = $request.into_inner();
        let ctx = req
            .context
            .map(|c| struct_json(&c))
            .unwrap_or(serde_json::Value::Null);
        state.contexts.lock().unwrap().push(ctx);
        let (reason, variant) = lookup(&req.flag_key)?;
        Ok(Response::new(ev::$resp {
            value: $value,
            reason: reason.into(),
            variant: variant.into(),
            metadata: metadata(),
        }))
    }};
}

pub fn struct_json(s: &Struct) -> serde_json::Value {
    serde_json::Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_json(v)))
            .collect(),
    )
}

fn value_json(v: &Value) -> serde_json::Value {
    match &v.kind {
        Some(Kind::BoolValue(b)) => (*b).into(),
        Some(Kind::NumberValue(x)) => (*x).into(),
        Some(Kind::StringValue(t)) => t.clone().into(),
        Some(Kind::StructValue(st)) => struct_json(st),
        Some(Kind::ListValue(l)) => l.values.iter().map(value_json).collect(),
        _ => serde_json::Value::Null,
    }
}

#[tonic::async_trait]
impl Service for Eval {
    async fn resolve_all(
        &self,
        _: Request<ev::ResolveAllRequest>,
    ) -> Result<Response<ev::ResolveAllResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
    async fn resolve_boolean(
        &self,
        request: Request<ev::ResolveBooleanRequest>,
    ) -> Result<Response<ev::ResolveBooleanResponse>, Status> {
        let disabled = request.get_ref().flag_key == "bool-disabled";
        unary!(self, request, ResolveBooleanResponse, !disabled)
    }
    async fn resolve_string(
        &self,
        request: Request<ev::ResolveStringRequest>,
    ) -> Result<Response<ev::ResolveStringResponse>, Status> {
        unary!(self, request, ResolveStringResponse, "hi".into())
    }
    async fn resolve_float(
        &self,
        request: Request<ev::ResolveFloatRequest>,
    ) -> Result<Response<ev::ResolveFloatResponse>, Status> {
        unary!(self, request, ResolveFloatResponse, 0.5)
    }
    async fn resolve_int(
        &self,
        request: Request<ev::ResolveIntRequest>,
    ) -> Result<Response<ev::ResolveIntResponse>, Status> {
        unary!(self, request, ResolveIntResponse, 10)
    }
    async fn resolve_object(
        &self,
        request: Request<ev::ResolveObjectRequest>,
    ) -> Result<Response<ev::ResolveObjectResponse>, Status> {
        unary!(self, request, ResolveObjectResponse, Some(nested_object()))
    }

    type EventStreamStream = Events;

    async fn event_stream(
        &self,
        request: Request<ev::EventStreamRequest>,
    ) -> Result<Response<Events>, Status> {
        let state = self.0.clone();
        state.record(&request);
        state.is_up()?;
        if let Some(code) = *state.refuse_streams.lock().unwrap() {
            return Err(Status::new(code, "refused by the fake"));
        }
        let (tx, rx) = mpsc::channel(16);
        let mut events = state.events.subscribe();
        let mut up = state.up.subscribe();
        state.open_streams.fetch_add(1, Ordering::SeqCst);
        state.stream_opens.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let ready = ev::EventStreamResponse {
                r#type: "provider_ready".into(),
                data: Some(Struct::default()),
            };
            if tx.send(Ok(ready)).await.is_ok() {
                loop {
                    tokio::select! {
                        event = events.recv() => match event {
                            Ok(event) => if tx.send(Ok(event)).await.is_err() { break },
                            Err(_) => break,
                        },
                        () = went_down(&mut up) => {
                            let _ = tx.send(Err(Status::unavailable("fake flagd went down"))).await;
                            break;
                        }
                        () = tx.closed() => break,
                    }
                }
            }
            state.open_streams.fetch_sub(1, Ordering::SeqCst);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[tonic::async_trait]
impl FlagSyncService for Sync {
    type SyncFlagsStream = Syncs;

    async fn sync_flags(
        &self,
        request: Request<sy::SyncFlagsRequest>,
    ) -> Result<Response<Syncs>, Status> {
        let state = self.0.clone();
        state.record(&request);
        state.is_up()?;
        if let Some(code) = *state.refuse_streams.lock().unwrap() {
            return Err(Status::new(code, "refused by the fake"));
        }
        state
            .provider_ids
            .lock()
            .unwrap()
            .push(request.get_ref().provider_id.clone());
        let (tx, rx) = mpsc::channel(16);
        let mut config = state.config.subscribe();
        let mut up = state.up.subscribe();
        state.open_streams.fetch_add(1, Ordering::SeqCst);
        state.stream_opens.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            loop {
                let payload = config.borrow_and_update().clone();
                let message = sy::SyncFlagsResponse {
                    flag_configuration: payload,
                    sync_context: state.sync_context.lock().unwrap().clone(),
                };
                if tx.send(Ok(message)).await.is_err() {
                    break;
                }
                state.sync_sent.fetch_add(1, Ordering::SeqCst);
                tokio::select! {
                    changed = config.changed() => if changed.is_err() { break },
                    () = went_down(&mut up) => {
                        let _ = tx.send(Err(Status::unavailable("fake flagd went down"))).await;
                        break;
                    }
                    () = tx.closed() => break,
                }
            }
            state.open_streams.fetch_sub(1, Ordering::SeqCst);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch_all_flags(
        &self,
        _: Request<sy::FetchAllFlagsRequest>,
    ) -> Result<Response<sy::FetchAllFlagsResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_metadata(
        &self,
        request: Request<sy::GetMetadataRequest>,
    ) -> Result<Response<sy::GetMetadataResponse>, Status> {
        self.0.record(&request);
        self.0.is_up()?;
        match self.0.metadata.lock().unwrap().clone() {
            Some(metadata) => Ok(Response::new(sy::GetMetadataResponse {
                metadata: Some(metadata),
            })),
            None => Err(Status::unimplemented("metadata disabled")),
        }
    }
}

/// A running fake.
pub struct Fake {
    pub state: Arc<State>,
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn new_state() -> Arc<State> {
    let (up, _) = watch::channel(true);
    let (events, _) = broadcast::channel(16);
    let (config, _) = watch::channel(r#"{"flags":{}}"#.to_owned());
    Arc::new(State {
        up,
        calls: AtomicUsize::new(0),
        v2_calls: AtomicUsize::new(0),
        open_streams: AtomicUsize::new(0),
        stream_opens: AtomicUsize::new(0),
        sync_sent: AtomicUsize::new(0),
        selectors: Mutex::default(),
        contexts: Mutex::default(),
        authorities: Mutex::default(),
        provider_ids: Mutex::default(),
        events,
        config,
        sync_context: Mutex::default(),
        metadata: Mutex::default(),
        refuse_streams: Mutex::default(),
    })
}

fn router(
    state: &Arc<State>,
    v2: bool,
    tls: Option<tonic::transport::Identity>,
) -> tonic::transport::server::Router {
    let seen = state.clone();
    let mut builder = tonic::transport::Server::builder().trace_fn(move |request| {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        seen.authorities.lock().unwrap().push(authority);
        tracing::Span::none()
    });
    if let Some(identity) = tls {
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .unwrap();
    }
    builder
        .add_service(ServiceServer::new(Eval(state.clone())))
        .add_optional_service(
            v2.then(|| ev2::service_server::ServiceServer::new(EvalV2(state.clone()))),
        )
        .add_service(FlagSyncServiceServer::new(Sync(state.clone())))
}

/// Starts a fake on 127.0.0.1 with a free port, serving evaluation v1 and v2.
pub async fn start() -> Fake {
    start_with(true).await
}

/// Starts a fake that serves evaluation v1 only (an old flagd).
pub async fn start_v1_only() -> Fake {
    start_with(false).await
}

/// Starts a fake that serves TLS with `identity` (certificate chain and key, PEM).
pub async fn start_tls(identity: tonic::transport::Identity) -> Fake {
    start_full(true, Some(identity)).await
}

async fn start_with(v2: bool) -> Fake {
    start_full(v2, None).await
}

async fn start_full(v2: bool, tls: Option<tonic::transport::Identity>) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = new_state();
    let server = router(&state, v2, tls)
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    let task = tokio::spawn(async move {
        let _ = server.await;
    });
    Fake { state, addr, task }
}

/// Starts a fake on a unix socket.
pub async fn start_unix(path: &std::path::Path) -> Fake {
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    let state = new_state();
    let server = router(&state, true, None)
        .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener));
    let task = tokio::spawn(async move {
        let _ = server.await;
    });
    Fake {
        state,
        addr: "127.0.0.1:0".parse().unwrap(),
        task,
    }
}

/// v2 answers: no value for disabled and default-less flags.
macro_rules! unary_v2 {
    ($self:ident, $request:ident, $resp:ident, $value:expr) => {{
        let state = &$self.0;
        state.record(&$request);
        state.is_up()?;
        state.calls.fetch_add(1, Ordering::SeqCst);
        state.v2_calls.fetch_add(1, Ordering::SeqCst);
        let req = $request.into_inner();
        let ctx = req
            .context
            .map(|c| struct_json(&c))
            .unwrap_or(serde_json::Value::Null);
        state.contexts.lock().unwrap().push(ctx);
        if req.flag_key == "slow" {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        }
        let (reason, variant) = match req.flag_key.as_str() {
            "no-default" => ("DEFAULT", ""),
            key => lookup(key)?,
        };
        let value = if variant.is_empty() {
            None
        } else {
            Some($value)
        };
        let variant = (!variant.is_empty()).then(|| variant.to_string());
        Ok(Response::new(ev2::$resp {
            value,
            reason: reason.into(),
            variant,
            metadata: metadata(),
        }))
    }};
}

#[tonic::async_trait]
impl ev2::service_server::Service for EvalV2 {
    async fn resolve_boolean(
        &self,
        request: Request<ev2::ResolveBooleanRequest>,
    ) -> Result<Response<ev2::ResolveBooleanResponse>, Status> {
        unary_v2!(self, request, ResolveBooleanResponse, true)
    }
    async fn resolve_string(
        &self,
        request: Request<ev2::ResolveStringRequest>,
    ) -> Result<Response<ev2::ResolveStringResponse>, Status> {
        unary_v2!(self, request, ResolveStringResponse, "hi".into())
    }
    async fn resolve_float(
        &self,
        request: Request<ev2::ResolveFloatRequest>,
    ) -> Result<Response<ev2::ResolveFloatResponse>, Status> {
        unary_v2!(self, request, ResolveFloatResponse, 0.5)
    }
    async fn resolve_int(
        &self,
        request: Request<ev2::ResolveIntRequest>,
    ) -> Result<Response<ev2::ResolveIntResponse>, Status> {
        unary_v2!(self, request, ResolveIntResponse, 10)
    }
    async fn resolve_object(
        &self,
        request: Request<ev2::ResolveObjectRequest>,
    ) -> Result<Response<ev2::ResolveObjectResponse>, Status> {
        unary_v2!(self, request, ResolveObjectResponse, nested_object())
    }

    type EventStreamStream =
        Pin<Box<dyn Stream<Item = Result<ev2::EventStreamResponse, Status>> + Send>>;

    async fn event_stream(
        &self,
        _: Request<ev2::EventStreamRequest>,
    ) -> Result<Response<Self::EventStreamStream>, Status> {
        Err(Status::unimplemented("the provider listens on v1"))
    }
}
