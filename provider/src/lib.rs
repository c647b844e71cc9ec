//! # flagpole-provider
//!
//! An [OpenFeature](https://openfeature.dev) provider for the Rust SDK (`open-feature` 0.3) that speaks the
//! flagd protocol, to flagpole or to flagd.
//!
//! Three resolvers, chosen by [`FlagdOptions::resolver`]:
//! - **RPC** (default, port 8013): every evaluation is a `flagd.evaluation.v2` call (v1 against a server
//!   without v2) with a deadline and the `Flagd-Selector` header; an `EventStream` subscription drives the
//!   provider state and an LRU cache of static results (reason `CACHED`), purged on change events, on
//!   reconnect and on error, and kept while stale.
//! - **In-process** (port 8015): a `flagd.sync.v1` `SyncFlags` stream feeds `flagpole-engine`, which evaluates
//!   locally with targeting compiled once per payload; the daemon's sync context enriches every evaluation.
//! - **File**: an offline flag file, watched for changes, evaluated by the same engine.
//!
//! Options follow the flagd provider specification, with its `FLAGD_*` environment variables and defaults;
//! an explicit option beats the environment ([`FlagdOptions::builder`], [`FlagdOptions::from_env`]).
//!
//! The SDK has no event API yet, so the provider has its own: [`FlagdProvider::events`] returns a
//! [`ProviderEvents`] handle with a broadcast of [`ProviderEvent`]s (ready, stale, error, configuration
//! changed with the changed keys) and the current [`ProviderState`].
//!
//! ```no_run
//! use flagpole_provider::{FlagdOptions, FlagdProvider, ResolverType};
//! use open_feature::OpenFeature;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let options = FlagdOptions::builder().resolver(ResolverType::InProcess).build()?;
//! let provider = FlagdProvider::new(options)?;
//! let events = provider.events();
//! let mut api = OpenFeature::singleton_mut().await;
//! api.set_provider(provider).await; // waits up to deadlineMs for the first flags
//! let client = api.create_client();
//! let enabled = client.get_bool_value("new-checkout", None, None).await.unwrap_or(false);
//! println!("{enabled} ({:?})", events.state());
//! # Ok(()) }
//! ```
//!
//! Disabled flags and flags without a default variant resolve to the caller's default: the provider reports
//! them as an error that [`no_value_reason`] recognises (the SDK's provider interface does not pass the
//! caller's default, so this is the only way to let the caller's default win).
//!
//! The options table, event semantics, cache rules and differences from `open-feature-flagd` are in the
//! project's `docs/provider.md`.
//!
//! Dropping the provider stops every background task. What this crate does not do: serve flags (that is the
//! daemon), or decide targeting semantics (that is `flagpole-engine`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod channel;
mod config;
pub mod convert;
mod events;
mod file;
mod in_process;
mod local;
mod resolve;
mod rpc;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flagpole_engine::ValueType;
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{EvaluationContext, EvaluationResult, StructValue};
use tokio::task::JoinHandle;

pub use channel::{ChannelError, SELECTOR_HEADER};
pub use config::{
    CacheType, ConfigError, DEFAULT_DEADLINE_MS, DEFAULT_IN_PROCESS_PORT, DEFAULT_MAX_CACHE_SIZE,
    DEFAULT_OFFLINE_POLL_INTERVAL_MS, DEFAULT_RETRY_BACKOFF_MAX_MS, DEFAULT_RETRY_BACKOFF_MS,
    DEFAULT_RETRY_GRACE_PERIOD_SECS, DEFAULT_RPC_PORT, DEFAULT_STREAM_DEADLINE_MS, FlagdOptions,
    FlagdOptionsBuilder, FractionalAlgorithm, ResolverType, env, split_list,
};
pub use events::{
    EVENT_CHANNEL_CAPACITY, ProviderEvent, ProviderEventKind, ProviderEvents, ProviderState,
};
pub use resolve::{GENERAL, NO_VALUE_MESSAGE, PROVIDER_FATAL, no_value_reason};

use events::{Hub, Lifecycle};
use local::LocalStore;
use resolve::{Resolved, fatal, typed};
use rpc::RpcResolver;

/// The specification's `contextEnricher` (in-process only): maps the sync context (the daemon's static
/// context) to the context merged over each evaluation's context. The default is the identity.
pub type ContextEnricher = Arc<
    dyn Fn(
            &serde_json::Map<String, serde_json::Value>,
        ) -> serde_json::Map<String, serde_json::Value>
        + Send
        + Sync,
>;

/// The provider name reported in the provider metadata.
pub const PROVIDER_NAME: &str = "flagd";

/// Why a provider could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The options are inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The connection settings are unusable.
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

enum Resolver {
    Rpc(Arc<RpcResolver>),
    Local(Arc<LocalStore>),
}

/// The flagd OpenFeature provider. Create it inside a tokio runtime; hand it to
/// `OpenFeature::set_provider`; keep a [`ProviderEvents`] handle if the application reacts to events.
pub struct FlagdProvider {
    metadata: ProviderMetadata,
    options: FlagdOptions,
    hub: Arc<Hub>,
    resolver: Resolver,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for FlagdProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagdProvider")
            .field("resolver", &self.options.resolver)
            .field("state", &self.hub.state())
            .finish_non_exhaustive()
    }
}

impl FlagdProvider {
    /// Creates the provider and starts its background task (connection, stream or file watch). Returns at
    /// once; use [`FeatureProvider::initialize`] (the SDK calls it) or [`ProviderEvents::wait_for`] to wait
    /// for the first flags.
    pub fn new(options: FlagdOptions) -> Result<Self, ProviderError> {
        Self::with_context_enricher(options, None)
    }

    /// Like [`FlagdProvider::new`], with the specification's `contextEnricher` for the in-process resolver
    /// (ignored by the others).
    pub fn with_context_enricher(
        options: FlagdOptions,
        enricher: Option<ContextEnricher>,
    ) -> Result<Self, ProviderError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ChannelError::NoRuntime)?;
        let hub = Hub::new();
        let lifecycle = |on_error: Box<dyn Fn() + Send + Sync>| {
            Lifecycle::new(
                hub.clone(),
                Duration::from_millis(options.deadline_ms),
                Duration::from_secs(options.retry_grace_period),
                Duration::from_millis(options.retry_backoff_ms),
                Duration::from_millis(options.retry_backoff_max_ms),
                on_error,
            )
        };
        let (resolver, task) = match options.resolver {
            ResolverType::Rpc => {
                let channel = channel::channel(&options)?;
                let selector = channel::selector_header(&options)?;
                let resolver = Arc::new(RpcResolver::new(channel, &options, selector, hub.clone()));
                let cache = resolver.cache.clone();
                let life = lifecycle(Box::new(move || cache.purge()));
                let settings = rpc::StreamSettings::new(&options);
                let task = runtime.spawn(rpc::run_event_stream(resolver.clone(), life, settings));
                (Resolver::Rpc(resolver), task)
            }
            ResolverType::InProcess => {
                let channel = channel::channel(&options)?;
                let selector = channel::selector_header(&options)?;
                let store = Arc::new(LocalStore::new(options.fractional));
                let mut sync = in_process::SyncTask::new(
                    channel,
                    &options,
                    selector,
                    store.clone(),
                    hub.clone(),
                );
                sync.enricher = enricher;
                let task = runtime.spawn(sync.run(lifecycle(Box::new(|| {}))));
                (Resolver::Local(store), task)
            }
            ResolverType::File => {
                let path = options
                    .offline_flag_source_path
                    .clone()
                    .ok_or(ConfigError::MissingOfflinePath)?;
                let store = Arc::new(LocalStore::new(options.fractional));
                let file = file::FileTask {
                    path,
                    poll: Duration::from_millis(options.offline_poll_interval_ms.max(1)),
                    store: store.clone(),
                    hub: hub.clone(),
                };
                let task = runtime.spawn(file.run(lifecycle(Box::new(|| {}))));
                (Resolver::Local(store), task)
            }
        };
        Ok(FlagdProvider {
            metadata: ProviderMetadata::new(PROVIDER_NAME),
            options,
            hub,
            resolver,
            tasks: vec![task],
        })
    }

    /// Options from the environment, then [`FlagdProvider::new`].
    pub fn from_env() -> Result<Self, ProviderError> {
        Self::new(FlagdOptions::from_env()?)
    }

    /// The options in effect.
    pub fn options(&self) -> &FlagdOptions {
        &self.options
    }

    /// A handle on the provider's events and state (valid after the provider moved into the SDK).
    pub fn events(&self) -> ProviderEvents {
        ProviderEvents::new(self.hub.clone())
    }

    /// The provider's own state (finer than the SDK's [`ProviderStatus`]: it has FATAL).
    pub fn state(&self) -> ProviderState {
        self.hub.state()
    }

    /// The number of cached RPC results (0 for the local resolvers).
    pub fn cached_entries(&self) -> usize {
        match &self.resolver {
            Resolver::Rpc(rpc) => rpc.cache.len(),
            Resolver::Local(_) => 0,
        }
    }

    async fn resolve(
        &self,
        key: &str,
        ty: ValueType,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<Resolved> {
        match &self.resolver {
            Resolver::Rpc(rpc) => match ty {
                ValueType::Bool => rpc.resolve_bool(key, ctx).await,
                ValueType::String => rpc.resolve_string(key, ctx).await,
                ValueType::Int => rpc.resolve_int(key, ctx).await,
                ValueType::Float => rpc.resolve_float(key, ctx).await,
                ValueType::Object => rpc.resolve_object(key, ctx).await,
            },
            Resolver::Local(store) => {
                if self.hub.state() == ProviderState::Fatal {
                    return Err(fatal());
                }
                store.resolve(key, ty, ctx)
            }
        }
    }
}

impl Drop for FlagdProvider {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[async_trait]
impl FeatureProvider for FlagdProvider {
    /// Waits until the provider leaves NOT_READY (first flags, or an error), at most `deadlineMs`.
    async fn initialize(&mut self, _context: &EvaluationContext) {
        let events = self.events();
        let wait = events.wait_for(|s| s != ProviderState::NotReady);
        if tokio::time::timeout(Duration::from_millis(self.options.deadline_ms), wait)
            .await
            .is_err()
        {
            tracing::warn!(
                deadline_ms = self.options.deadline_ms,
                "flagd provider not ready within the deadline"
            );
        }
    }

    fn status(&self) -> ProviderStatus {
        match self.hub.state() {
            ProviderState::NotReady => ProviderStatus::NotReady,
            ProviderState::Ready => ProviderStatus::Ready,
            ProviderState::Stale => ProviderStatus::STALE,
            ProviderState::Error | ProviderState::Fatal => ProviderStatus::Error,
        }
    }

    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        typed(self.resolve(key, ValueType::Bool, ctx).await?)
    }

    async fn resolve_int_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        typed(self.resolve(key, ValueType::Int, ctx).await?)
    }

    async fn resolve_float_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        typed(self.resolve(key, ValueType::Float, ctx).await?)
    }

    async fn resolve_string_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        typed(self.resolve(key, ValueType::String, ctx).await?)
    }

    async fn resolve_struct_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        typed(self.resolve(key, ValueType::Object, ctx).await?)
    }
}

/// The README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
