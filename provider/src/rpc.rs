//! The RPC resolver: every evaluation is a `flagd.evaluation.v1` call with a deadline; an `EventStream`
//! subscription drives the provider state and the result cache.
//!
//! Cache rules (flagd provider specification): only results with reason STATIC (and DISABLED) are cached,
//! never targeting results, because they depend on the context; a hit is reported with reason CACHED; the
//! cache is filled only while the event stream is up (otherwise nobody would tell us about changes), read
//! while READY or STALE, cleared for the changed keys on a change event, and cleared entirely on (re)connect
//! and when the provider goes to ERROR. A generation counter keeps a call that raced with a change event from
//! caching what it read before the change.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagpole_proto::evaluation_v1 as pb;
use flagpole_proto::evaluation_v1::service_client::ServiceClient;
use lru::LruCache;
use open_feature::provider::ResolutionDetails;
use open_feature::{EvaluationContext, EvaluationReason, EvaluationResult, Value};
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::FlagdOptions;
use crate::config::CacheType;
use crate::connect::SELECTOR_HEADER;
use crate::convert::{
    context_to_json, json_to_struct, struct_to_json, struct_to_metadata, struct_to_struct_value,
};
use crate::events::{Hub, Lifecycle, ProviderState};
use crate::resolve::{Resolved, fatal, general, status_error};

/// The typed call a cache entry belongs to (a key may be read with several types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Ty {
    Bool,
    String,
    Int,
    Float,
    Object,
}

/// The LRU cache of static results.
#[derive(Debug)]
pub(crate) struct Cache {
    inner: Option<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    entries: LruCache<(String, Ty), Resolved>,
    generation: u64,
}

impl Cache {
    pub(crate) fn new(kind: CacheType, size: usize) -> Self {
        let inner = match (kind, NonZeroUsize::new(size)) {
            (CacheType::Lru, Some(size)) => Some(Mutex::new(Inner {
                entries: LruCache::new(size),
                generation: 0,
            })),
            _ => None,
        };
        Cache { inner }
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, Inner>> {
        // A panic while holding this lock cannot leave the cache inconsistent: recover the guard.
        self.inner
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn generation(&self) -> u64 {
        self.lock().map_or(0, |g| g.generation)
    }

    fn get(&self, key: &str, ty: Ty) -> Option<Resolved> {
        let mut inner = self.lock()?;
        let hit = inner.entries.get(&(key.to_owned(), ty))?.clone();
        Some(match hit {
            Resolved::Value(details) => Resolved::Value(ResolutionDetails {
                reason: Some(EvaluationReason::Cached),
                ..details
            }),
            no_value => no_value,
        })
    }

    fn put(&self, generation: u64, key: &str, ty: Ty, resolved: Resolved) {
        if let Some(mut inner) = self.lock()
            && inner.generation == generation
        {
            inner.entries.put((key.to_owned(), ty), resolved);
        }
    }

    /// Drops everything.
    pub(crate) fn purge(&self) {
        if let Some(mut inner) = self.lock() {
            inner.generation += 1;
            inner.entries.clear();
        }
    }

    /// Drops the entries of `keys` (every type).
    fn purge_keys(&self, keys: &[String]) {
        if let Some(mut inner) = self.lock() {
            inner.generation += 1;
            let stale: Vec<(String, Ty)> = inner
                .entries
                .iter()
                .filter(|((k, _), _)| keys.contains(k))
                .map(|(k, _)| k.clone())
                .collect();
            for k in stale {
                inner.entries.pop(&k);
            }
        }
    }

    /// The number of entries (for tests and diagnostics).
    pub(crate) fn len(&self) -> usize {
        self.lock().map_or(0, |g| g.entries.len())
    }
}

/// The evaluation half of the RPC resolver.
#[derive(Debug)]
pub(crate) struct RpcResolver {
    channel: Channel,
    selector: Option<MetadataValue<Ascii>>,
    deadline: Duration,
    pub(crate) cache: Arc<Cache>,
    hub: Arc<Hub>,
}

macro_rules! call {
    ($self:ident, $key:ident, $ctx:ident, $ty:expr, $method:ident, $req:ident, |$resp:ident| $value:expr) => {{
        if $self.hub.state() == ProviderState::Fatal {
            return Err(fatal());
        }
        if matches!(
            $self.hub.state(),
            ProviderState::Ready | ProviderState::Stale
        ) {
            if let Some(hit) = $self.cache.get($key, $ty) {
                return Ok(hit);
            }
        }
        let generation = $self.cache.generation();
        let request = $self.request(pb::$req {
            flag_key: $key.to_owned(),
            context: Some(json_to_struct(&context_to_json($ctx))),
        });
        let mut client = ServiceClient::new($self.channel.clone());
        let $resp = match tokio::time::timeout($self.deadline, client.$method(request)).await {
            Err(_) => {
                return Err(general(format!(
                    "no answer within the deadline of {:?}",
                    $self.deadline
                )));
            }
            Ok(Err(status)) => return Err(status_error(&status)),
            Ok(Ok(response)) => response.into_inner(),
        };
        let reason = parse_reason(&$resp.reason);
        let metadata = $resp
            .metadata
            .as_ref()
            .map(struct_to_metadata)
            .unwrap_or_default();
        let cacheable = matches!(
            reason,
            EvaluationReason::Static | EvaluationReason::Disabled
        );
        let resolved = if reason == EvaluationReason::Disabled {
            Resolved::NoValue { reason }
        } else {
            let variant = (!$resp.variant.is_empty()).then(|| $resp.variant.clone());
            Resolved::Value(ResolutionDetails {
                value: $value,
                variant,
                reason: Some(reason),
                flag_metadata: Some(metadata),
            })
        };
        if cacheable && $self.hub.state() == ProviderState::Ready {
            $self.cache.put(generation, $key, $ty, resolved.clone());
        }
        Ok(resolved)
    }};
}

impl RpcResolver {
    pub(crate) fn new(
        channel: Channel,
        options: &FlagdOptions,
        selector: Option<MetadataValue<Ascii>>,
        hub: Arc<Hub>,
    ) -> Self {
        RpcResolver {
            channel,
            selector,
            deadline: Duration::from_millis(options.deadline_ms.max(1)),
            cache: Arc::new(Cache::new(options.cache, options.max_cache_size)),
            hub,
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.deadline);
        if let Some(selector) = &self.selector {
            request
                .metadata_mut()
                .insert(SELECTOR_HEADER, selector.clone());
        }
        request
    }

    pub(crate) async fn resolve_bool(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<Resolved> {
        call!(
            self,
            key,
            ctx,
            Ty::Bool,
            resolve_boolean,
            ResolveBooleanRequest,
            |r| Value::Bool(r.value)
        )
    }

    pub(crate) async fn resolve_string(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<Resolved> {
        call!(
            self,
            key,
            ctx,
            Ty::String,
            resolve_string,
            ResolveStringRequest,
            |r| Value::String(r.value.clone())
        )
    }

    pub(crate) async fn resolve_int(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<Resolved> {
        call!(
            self,
            key,
            ctx,
            Ty::Int,
            resolve_int,
            ResolveIntRequest,
            |r| Value::Int(r.value)
        )
    }

    pub(crate) async fn resolve_float(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<Resolved> {
        call!(
            self,
            key,
            ctx,
            Ty::Float,
            resolve_float,
            ResolveFloatRequest,
            |r| Value::Float(r.value)
        )
    }

    pub(crate) async fn resolve_object(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<Resolved> {
        call!(
            self,
            key,
            ctx,
            Ty::Object,
            resolve_object,
            ResolveObjectRequest,
            |r| Value::Struct(
                r.value
                    .as_ref()
                    .map(struct_to_struct_value)
                    .unwrap_or_default()
            )
        )
    }
}

/// A reason string from the wire.
pub(crate) fn parse_reason(reason: &str) -> EvaluationReason {
    match reason {
        "STATIC" => EvaluationReason::Static,
        "DEFAULT" => EvaluationReason::Default,
        "TARGETING_MATCH" => EvaluationReason::TargetingMatch,
        "SPLIT" => EvaluationReason::Split,
        "CACHED" => EvaluationReason::Cached,
        "DISABLED" => EvaluationReason::Disabled,
        "ERROR" => EvaluationReason::Error,
        "UNKNOWN" | "" => EvaluationReason::Unknown,
        other => EvaluationReason::Other(other.to_owned()),
    }
}

/// Event-stream message types (flagd's `EventStream`).
const PROVIDER_READY: &str = "provider_ready";
const CONFIGURATION_CHANGE: &str = "configuration_change";
const PROVIDER_SHUTDOWN: &str = "provider_shutdown";

/// The settings of a stream-driving task.
pub(crate) struct StreamSettings {
    pub(crate) stream_deadline: Option<Duration>,
    pub(crate) fatal_codes: Vec<Code>,
}

impl StreamSettings {
    pub(crate) fn new(options: &FlagdOptions) -> Self {
        StreamSettings {
            stream_deadline: (options.stream_deadline_ms > 0)
                .then(|| Duration::from_millis(options.stream_deadline_ms)),
            fatal_codes: crate::connect::fatal_codes(&options.fatal_status_codes),
        }
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.stream_deadline.map(|d| Instant::now() + d)
    }
}

/// How one stream ended.
pub(crate) enum StreamEnd {
    /// Broken or refused: back off, then retry.
    Lost(String),
    /// The stream deadline passed: re-open at once, no state change.
    Deadline,
    /// A fatal status code: give up.
    Fatal(String),
}

pub(crate) fn classify(status: &tonic::Status, settings: &StreamSettings) -> StreamEnd {
    let text = format!("{:?}: {}", status.code(), status.message());
    if settings.fatal_codes.contains(&status.code()) {
        StreamEnd::Fatal(text)
    } else if status.code() == Code::DeadlineExceeded {
        StreamEnd::Deadline
    } else {
        StreamEnd::Lost(text)
    }
}

/// Awaits the next message of `stream` until `deadline`; `Err(None)` means the deadline passed.
pub(crate) async fn next_message<T>(
    stream: &mut tonic::Streaming<T>,
    deadline: Option<Instant>,
) -> Result<Option<T>, Option<tonic::Status>> {
    let next = stream.message();
    match deadline {
        None => next.await.map_err(Some),
        Some(at) => match tokio::time::timeout_at(at, next).await {
            Err(_) => Err(None),
            Ok(result) => result.map_err(Some),
        },
    }
}

/// The background task of the RPC resolver: keeps an `EventStream` open and turns its messages and failures
/// into provider events and cache purges.
pub(crate) async fn run_event_stream(
    resolver: Arc<RpcResolver>,
    mut life: Lifecycle,
    settings: StreamSettings,
) {
    loop {
        let end = one_event_stream(&resolver, &mut life, &settings).await;
        match end {
            StreamEnd::Fatal(reason) => {
                life.fatal(&reason);
                return;
            }
            StreamEnd::Deadline => {}
            StreamEnd::Lost(reason) => {
                life.disconnected(&reason);
                life.backoff().await;
            }
        }
    }
}

async fn one_event_stream(
    resolver: &RpcResolver,
    life: &mut Lifecycle,
    settings: &StreamSettings,
) -> StreamEnd {
    let mut client = ServiceClient::new(resolver.channel.clone());
    let mut request = Request::new(pb::EventStreamRequest {});
    if let Some(selector) = &resolver.selector {
        request
            .metadata_mut()
            .insert(SELECTOR_HEADER, selector.clone());
    }
    let mut stream = match life.guard(client.event_stream(request)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return classify(&status, settings),
    };
    let deadline = settings.deadline();
    loop {
        match life.guard(next_message(&mut stream, deadline)).await {
            Ok(Some(message)) => handle_event(resolver, life, message),
            Ok(None) => return StreamEnd::Lost("the event stream ended".into()),
            Err(None) => return StreamEnd::Deadline,
            Err(Some(status)) => return classify(&status, settings),
        }
        if life.state() == ProviderState::Fatal {
            return StreamEnd::Fatal("fatal".into());
        }
    }
}

fn handle_event(resolver: &RpcResolver, life: &mut Lifecycle, message: pb::EventStreamResponse) {
    match message.r#type.as_str() {
        PROVIDER_READY => {
            // Whatever changed while we were away is unknown: start from an empty cache.
            resolver.cache.purge();
            life.connected();
        }
        CONFIGURATION_CHANGE => {
            let keys: Vec<String> = message
                .data
                .as_ref()
                .map(struct_to_json)
                .and_then(|data| {
                    data.get("flags")
                        .and_then(|f| f.as_object())
                        .map(|f| f.keys().cloned().collect())
                })
                .unwrap_or_default();
            if keys.is_empty() {
                resolver.cache.purge();
            } else {
                resolver.cache.purge_keys(&keys);
            }
            resolver.hub.changed(keys);
        }
        PROVIDER_SHUTDOWN => {
            tracing::info!("flagd announced shutdown");
        }
        other => tracing::trace!(r#type = other, "event stream message ignored"),
    }
}
