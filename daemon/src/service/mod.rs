//! The flagd gRPC services: evaluation (`flagd.evaluation.v1`, `flagd.evaluation.v2`, the legacy
//! `schema.v1`) for the evaluation port, and `flagd.sync.v1.FlagSyncService` for the sync port.
//!
//! What it owns: turning protobuf requests into engine calls and engine results back into protobuf, per
//! protocol (each protocol's fallback rules live in its own module; the error → status table lives in
//! `status`), context assembly (`-X`, `-H`), selectors from the `Flagd-Selector` header, and the
//! long-lived streams (EventStream, SyncFlags) with one task per subscriber.
//!
//! What it does not do: bind sockets, TLS, Connect/gRPC-Web framing, readiness or choosing when to start
//! serving (the runtime in `crate::run` does), nor evaluate anything itself (the engine does). Handlers read
//! the store's current snapshot lock-free and never block on a reload.

pub(crate) mod convert;
mod evaluation_v1;
mod evaluation_v2;
mod events;
mod handlers;
pub(crate) mod index;
pub(crate) mod request;
mod resolve;
mod schema_v1;
mod shared;
mod status;
mod sync;
mod v1_shape;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flagpole_engine::FractionalAlgorithm;
use flagpole_proto::evaluation_v1::service_server::ServiceServer as EvaluationV1Server;
use flagpole_proto::evaluation_v2::service_server::ServiceServer as EvaluationV2Server;
use flagpole_proto::schema_v1::service_server::ServiceServer as SchemaV1Server;
use flagpole_proto::sync_v1::flag_sync_service_server::FlagSyncServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::metrics::Metrics;
use crate::store::Store;

pub use convert::{ConvertError, MAX_STRUCT_DEPTH};
pub use evaluation_v1::EvaluationV1;
pub use evaluation_v2::EvaluationV2;
pub use schema_v1::SchemaV1;
pub use status::FlagdStatus;
pub use sync::SyncService;

/// How long an EventStream may stay silent before flagd sends `keep_alive`.
pub const DEFAULT_EVENT_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// Everything the services need from the configuration. Built by `crate::config`; nothing here still needs
/// parsing.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `-X key=value`: static context values, merged over the request context (and sent as `sync_context`
    /// and by `GetMetadata`).
    pub context_values: BTreeMap<String, String>,
    /// `-H header=key`: request header name (matched case-insensitively) → context key. Only non-empty
    /// header values are used; not applied on `schema.v1`.
    pub header_to_context: Vec<(String, String)>,
    /// `--stream-deadline`: EventStream (v1, v2) and SyncFlags streams end with DEADLINE_EXCEEDED after this
    /// long; `None` means no deadline.
    pub stream_deadline: Option<Duration>,
    /// `--disable-sync-metadata`: `GetMetadata` answers UNIMPLEMENTED.
    pub disable_sync_metadata: bool,
    /// Which `fractional` bucketing the engine uses.
    pub fractional: FractionalAlgorithm,
    /// Silence after which an EventStream gets `keep_alive` (flagd: 20 s).
    pub event_keep_alive: Duration,
    /// `--max-request-body`: the largest request message decoded, in bytes.
    pub max_request_body: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            context_values: BTreeMap::new(),
            header_to_context: Vec::new(),
            stream_deadline: None,
            disable_sync_metadata: false,
            fractional: FractionalAlgorithm::default(),
            event_keep_alive: DEFAULT_EVENT_KEEP_ALIVE,
            // flagd's `--max-request-body` default: the one constant, in `config`.
            max_request_body: crate::config::DEFAULT_MAX_REQUEST_BYTES as usize,
        }
    }
}

/// The state every service shares: the store, the configuration, the shutdown signal and the metrics.
#[derive(Debug, Clone)]
pub struct Services {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<Store>,
    config: ServiceConfig,
    shutdown: CancellationToken,
    metrics: Metrics,
    cache: shared::Shared,
}

impl Services {
    /// Services over `store`. Cancelling `shutdown` sends `provider_shutdown` to every EventStream and ends
    /// every stream.
    pub fn new(
        store: Arc<Store>,
        mut config: ServiceConfig,
        shutdown: CancellationToken,
        metrics: Metrics,
    ) -> Self {
        // gRPC metadata keys are lower-case; matching `-H` names case-insensitively means lower-casing them once.
        for (header, _) in &mut config.header_to_context {
            header.make_ascii_lowercase();
        }
        Services {
            inner: Arc::new(Inner {
                store,
                config,
                shutdown,
                metrics,
                cache: shared::Shared::default(),
            }),
        }
    }

    /// `flagd.evaluation.v1.Service`.
    pub fn evaluation_v1(&self) -> FlagdStatus<EvaluationV1Server<EvaluationV1>> {
        FlagdStatus(
            EvaluationV1Server::new(EvaluationV1::new(self.clone()))
                .max_decoding_message_size(self.inner.config.max_request_body),
        )
    }

    /// `flagd.evaluation.v2.Service`.
    pub fn evaluation_v2(&self) -> FlagdStatus<EvaluationV2Server<EvaluationV2>> {
        FlagdStatus(
            EvaluationV2Server::new(EvaluationV2::new(self.clone()))
                .max_decoding_message_size(self.inner.config.max_request_body),
        )
    }

    /// The legacy `schema.v1.Service`.
    pub fn schema_v1(&self) -> FlagdStatus<SchemaV1Server<SchemaV1>> {
        FlagdStatus(
            SchemaV1Server::new(SchemaV1::new(self.clone()))
                .max_decoding_message_size(self.inner.config.max_request_body),
        )
    }

    /// `flagd.sync.v1.FlagSyncService`.
    pub fn sync(&self) -> FlagdStatus<FlagSyncServiceServer<SyncService>> {
        FlagdStatus(
            FlagSyncServiceServer::new(SyncService::new(self.clone()))
                .max_decoding_message_size(self.inner.config.max_request_body),
        )
    }

    /// Everything the evaluation port (8013) serves over gRPC: v1, v2 and schema.v1.
    pub fn evaluation_routes(&self) -> Routes {
        Routes::new(self.evaluation_v1())
            .add_service(self.evaluation_v2())
            .add_service(self.schema_v1())
    }

    /// Everything the sync port (8015) serves: the sync service.
    pub fn sync_routes(&self) -> Routes {
        Routes::new(self.sync())
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    fn cache(&self) -> &shared::Shared {
        &self.inner.cache
    }
}
