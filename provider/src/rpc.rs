//! The RPC resolver: every evaluation is a `flagd.evaluation.v2` call with a deadline (v1 when the server
//! does not serve v2; v2 is what can say "no value" for disabled and default-less flags); a v1 `EventStream`
//! subscription drives the provider state and the result cache.
//!
//! Cache rules (flagd provider specification): only results with reason STATIC (and DISABLED) are cached,
//! never targeting results, because they depend on the context; a hit is reported with reason CACHED; the
//! cache is filled only while the event stream is up (otherwise nobody would tell us about changes), read
//! while READY or STALE, cleared for the changed keys on a change event, and cleared entirely on (re)connect
//! and when the provider goes to ERROR. A generation counter keeps a call that raced with a change event from
//! caching what it read before the change.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagpole_proto::evaluation_v1 as pb;
use flagpole_proto::evaluation_v1::service_client::ServiceClient;
use flagpole_proto::evaluation_v2 as pb2;
use flagpole_proto::evaluation_v2::service_client::ServiceClient as ServiceClientV2;
use lru::LruCache;
use open_feature::provider::ResolutionDetails;
use open_feature::{EvaluationContext, EvaluationReason, EvaluationResult, Value};
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::FlagdOptions;
use crate::channel::SELECTOR_HEADER;
use crate::config::CacheType;
use crate::convert::{
    context_to_json, json_to_struct, struct_to_json, struct_to_metadata, struct_to_struct_value,
};
use crate::events::{Hub, Lifecycle, ProviderState};
use crate::resolve::{Resolved, fatal, status_error};

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
    /// Set when the server answered UNIMPLEMENTED to `flagd.evaluation.v2` (an old flagd): use v1 from then on.
    v1_only: AtomicBool,
}

/// One typed answer, from either protocol version.
struct Answer {
    value: Option<Value>,
    reason: String,
    variant: String,
    metadata: Option<prost_types::Struct>,
}

/// One typed RPC in both protocol versions (the generated request and response types differ per type and
/// per version; `typed_rpc!` fits them to this trait). The control flow of a resolve is
/// [`RpcResolver::call`]'s alone.
trait TypedRpc {
    /// The value type, for the cache key.
    const TY: Ty;
    /// The `flagd.evaluation.v2` call.
    fn v2(
        resolver: &RpcResolver,
        key: &str,
        context: Option<prost_types::Struct>,
    ) -> impl Future<Output = Result<Answer, tonic::Status>> + Send;
    /// The `flagd.evaluation.v1` call (for a daemon that does not serve v2).
    fn v1(
        resolver: &RpcResolver,
        key: &str,
        context: Option<prost_types::Struct>,
    ) -> impl Future<Output = Result<Answer, tonic::Status>> + Send;
}

/// Implements [`TypedRpc`] for `$rpc`: builds each version's `$request`, calls `$method`, and reads the
/// answer's value with the expression after `v2 |r|` / `v1 |r|` (v1 always has one).
macro_rules! typed_rpc {
    ($rpc:ident, $ty:expr, $method:ident, $request:ident,
     v2 |$r2:ident| $value2:expr, v1 |$r1:ident| $value1:expr) => {
        struct $rpc;

        impl TypedRpc for $rpc {
            const TY: Ty = $ty;

            async fn v2(
                resolver: &RpcResolver,
                key: &str,
                context: Option<prost_types::Struct>,
            ) -> Result<Answer, tonic::Status> {
                let request = resolver.request(pb2::$request {
                    flag_key: key.to_owned(),
                    context,
                });
                let mut client = ServiceClientV2::new(resolver.channel.clone());
                let $r2 = resolver.unary(client.$method(request)).await?;
                Ok(Answer {
                    value: $value2,
                    reason: $r2.reason,
                    variant: $r2.variant.unwrap_or_default(),
                    metadata: $r2.metadata,
                })
            }

            async fn v1(
                resolver: &RpcResolver,
                key: &str,
                context: Option<prost_types::Struct>,
            ) -> Result<Answer, tonic::Status> {
                let request = resolver.request(pb::$request {
                    flag_key: key.to_owned(),
                    context,
                });
                let mut client = ServiceClient::new(resolver.channel.clone());
                let $r1 = resolver.unary(client.$method(request)).await?;
                Ok(Answer {
                    value: Some($value1),
                    reason: $r1.reason,
                    variant: $r1.variant,
                    metadata: $r1.metadata,
                })
            }
        }
    };
}

typed_rpc!(
    BoolRpc,
    Ty::Bool,
    resolve_boolean,
    ResolveBooleanRequest,
    v2 | r | r.value.map(Value::Bool),
    v1 | r | Value::Bool(r.value)
);
typed_rpc!(
    StringRpc,
    Ty::String,
    resolve_string,
    ResolveStringRequest,
    v2 | r | r.value.map(Value::String),
    v1 | r | Value::String(r.value)
);
typed_rpc!(
    IntRpc,
    Ty::Int,
    resolve_int,
    ResolveIntRequest,
    v2 | r | r.value.map(Value::Int),
    v1 | r | Value::Int(r.value)
);
typed_rpc!(
    FloatRpc,
    Ty::Float,
    resolve_float,
    ResolveFloatRequest,
    v2 | r | r.value.map(Value::Float),
    v1 | r | Value::Float(r.value)
);
typed_rpc!(
    ObjectRpc,
    Ty::Object,
    resolve_object,
    ResolveObjectRequest,
    v2 | r
        | r.value
            .as_ref()
            .map(|v| Value::Struct(struct_to_struct_value(v))),
    v1 | r
        | Value::Struct(
            r.value
                .as_ref()
                .map(struct_to_struct_value)
                .unwrap_or_default()
        )
);

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
            v1_only: AtomicBool::new(false),
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

    /// Awaits a unary call within the deadline (the server is told the deadline too).
    async fn unary<T>(
        &self,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        match tokio::time::timeout(self.deadline, call).await {
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {:?}",
                self.deadline
            ))),
            Ok(result) => result.map(tonic::Response::into_inner),
        }
    }

    /// A typed resolve: the cache first (while the stream says the flags are current), then v2, then v1 for
    /// a daemon that answers v2 with UNIMPLEMENTED (remembered).
    async fn call<R: TypedRpc>(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<Resolved> {
        if self.hub.state() == ProviderState::Fatal {
            return Err(fatal());
        }
        if matches!(
            self.hub.state(),
            ProviderState::Ready | ProviderState::Stale
        ) && let Some(hit) = self.cache.get(key, R::TY)
        {
            return Ok(hit);
        }
        let generation = self.cache.generation();
        let context = Some(json_to_struct(&context_to_json(ctx)));
        if !self.v1_only.load(Ordering::Relaxed) {
            match R::v2(self, key, context.clone()).await {
                Err(status) if status.code() == Code::Unimplemented => {
                    tracing::info!("flagd.evaluation.v2 not served; using v1");
                    self.v1_only.store(true, Ordering::Relaxed);
                }
                Err(status) => return Err(status_error(&status)),
                Ok(answer) => return Ok(self.finish(generation, key, R::TY, answer)),
            }
        }
        let answer = R::v1(self, key, context)
            .await
            .map_err(|s| status_error(&s))?;
        Ok(self.finish(generation, key, R::TY, answer))
    }

    /// Turns an answer into a result and caches it when it may be cached.
    fn finish(&self, generation: u64, key: &str, ty: Ty, answer: Answer) -> Resolved {
        let reason = parse_reason(&answer.reason);
        let metadata = answer
            .metadata
            .as_ref()
            .map(struct_to_metadata)
            .unwrap_or_default();
        let cacheable = matches!(
            reason,
            EvaluationReason::Static | EvaluationReason::Disabled
        );
        let resolved = match answer.value {
            // v1 sends the zero value for a disabled flag; v2 sends none for disabled and code-default.
            Some(_) if reason == EvaluationReason::Disabled => Resolved::NoValue { reason },
            None => Resolved::NoValue { reason },
            Some(value) => Resolved::Value(ResolutionDetails {
                value,
                variant: (!answer.variant.is_empty()).then_some(answer.variant),
                reason: Some(reason),
                flag_metadata: Some(metadata),
            }),
        };
        if cacheable && self.hub.state() == ProviderState::Ready {
            self.cache.put(generation, key, ty, resolved.clone());
        }
        resolved
    }

    pub(crate) async fn resolve_bool(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<Resolved> {
        self.call::<BoolRpc>(key, ctx).await
    }

    pub(crate) async fn resolve_string(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<Resolved> {
        self.call::<StringRpc>(key, ctx).await
    }

    pub(crate) async fn resolve_int(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<Resolved> {
        self.call::<IntRpc>(key, ctx).await
    }

    pub(crate) async fn resolve_float(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<Resolved> {
        self.call::<FloatRpc>(key, ctx).await
    }

    pub(crate) async fn resolve_object(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<Resolved> {
        self.call::<ObjectRpc>(key, ctx).await
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
            fatal_codes: crate::channel::fatal_codes(&options.fatal_status_codes),
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

/// What a failed stream means. A server-side DEADLINE_EXCEEDED is the normal end of a long stream and is
/// re-opened at once, but only after the stream delivered something (so a server that refuses every stream
/// that way is retried with back-off, not in a hot loop).
pub(crate) fn classify(
    status: &tonic::Status,
    settings: &StreamSettings,
    received: bool,
) -> StreamEnd {
    let text = format!("{:?}: {}", status.code(), status.message());
    if settings.fatal_codes.contains(&status.code()) {
        StreamEnd::Fatal(text)
    } else if status.code() == Code::DeadlineExceeded && received {
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
                tracing::debug!(%reason, "event stream lost; retrying after back-off");
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
        Err(status) => return classify(&status, settings, false),
    };
    let deadline = settings.deadline();
    let mut received = false;
    loop {
        match life.guard(next_message(&mut stream, deadline)).await {
            Ok(Some(message)) => {
                received = true;
                handle_event(resolver, life, message);
            }
            Ok(None) => return StreamEnd::Lost("the event stream ended".into()),
            Err(None) => return StreamEnd::Deadline,
            Err(Some(status)) => return classify(&status, settings, received),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn static_bool() -> Resolved {
        Resolved::Value(ResolutionDetails {
            value: Value::Bool(true),
            variant: Some("on".into()),
            reason: Some(EvaluationReason::Static),
            flag_metadata: None,
        })
    }

    fn reason(resolved: Option<Resolved>) -> Option<EvaluationReason> {
        match resolved? {
            Resolved::Value(details) => details.reason,
            Resolved::NoValue { reason } => Some(reason),
        }
    }

    #[test]
    fn hits_are_reported_as_cached_per_key_and_type() {
        let cache = Cache::new(CacheType::Lru, 10);
        cache.put(cache.generation(), "a", Ty::Bool, static_bool());
        assert_eq!(
            reason(cache.get("a", Ty::Bool)),
            Some(EvaluationReason::Cached)
        );
        assert!(
            cache.get("a", Ty::String).is_none(),
            "another type is another entry"
        );
    }

    #[test]
    fn a_result_read_before_a_purge_is_not_cached_after_it() {
        let cache = Cache::new(CacheType::Lru, 10);
        let generation = cache.generation();
        cache.purge_keys(&["a".to_string()]);
        cache.put(generation, "a", Ty::Bool, static_bool());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn purging_keys_drops_every_type_of_those_keys_only() {
        let cache = Cache::new(CacheType::Lru, 10);
        let g = cache.generation();
        cache.put(g, "a", Ty::Bool, static_bool());
        cache.put(g, "a", Ty::String, static_bool());
        cache.put(g, "b", Ty::Bool, static_bool());
        cache.purge_keys(&["a".to_string()]);
        assert_eq!(cache.len(), 1);
        assert!(cache.get("b", Ty::Bool).is_some());
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let cache = Cache::new(CacheType::Lru, 2);
        let g = cache.generation();
        cache.put(g, "a", Ty::Bool, static_bool());
        cache.put(g, "b", Ty::Bool, static_bool());
        assert!(cache.get("a", Ty::Bool).is_some());
        cache.put(g, "c", Ty::Bool, static_bool());
        assert!(cache.get("b", Ty::Bool).is_none());
        assert!(cache.get("a", Ty::Bool).is_some());
    }

    #[test]
    fn disabled_or_zero_sized_cache_stores_nothing() {
        for cache in [
            Cache::new(CacheType::Disabled, 10),
            Cache::new(CacheType::Lru, 0),
        ] {
            cache.put(cache.generation(), "a", Ty::Bool, static_bool());
            assert!(cache.get("a", Ty::Bool).is_none());
        }
    }

    #[test]
    fn wire_reasons() {
        assert_eq!(
            parse_reason("TARGETING_MATCH"),
            EvaluationReason::TargetingMatch
        );
        assert_eq!(parse_reason(""), EvaluationReason::Unknown);
        assert_eq!(
            parse_reason("FALLBACK"),
            EvaluationReason::Other("FALLBACK".into())
        );
    }
}
