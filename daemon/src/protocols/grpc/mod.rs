//! The flagd gRPC services: evaluation (`flagd.evaluation.v1`, `flagd.evaluation.v2`, the legacy
//! `schema.v1`) for the evaluation port, and `flagd.sync.v1.FlagSyncService` for the sync port. Connect and
//! gRPC-Web reach the same services through `crate::protocols::connect`.
//!
//! What it owns: the protobuf edge of evaluation (a `Struct` context in, a `Struct` of metadata and typed
//! values out, `convert`), each package's answers and fallbacks (v2 in `evaluation_v2`, v1 and schema.v1 in
//! `v1_answers`), the one error → status map (`status`), and the long-lived streams (EventStream in
//! `events`, a response stream that waits on the store itself; SyncFlags in `sync`, a task per stream) with
//! work shared per selector (`fanout`).
//!
//! What it does not do: read selectors and contexts or resolve flags (the neutral core in `crate::eval`
//! does, for every protocol alike), bind sockets, TLS, or translate Connect.

mod bulk;
mod convert;
mod evaluation_v1;
mod evaluation_v2;
mod events;
mod fanout;
mod schema_v1;
mod status;
mod sync;
mod typed;
mod v1_answers;

use std::sync::Arc;
use std::time::Duration;

use flagpole_proto::evaluation_v1::service_server::ServiceServer as EvaluationV1Server;
use flagpole_proto::evaluation_v2::service_server::ServiceServer as EvaluationV2Server;
use flagpole_proto::schema_v1::service_server::ServiceServer as SchemaV1Server;
use flagpole_proto::sync_v1::flag_sync_service_server::FlagSyncServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::eval::Evaluator;
use crate::metrics::Metrics;
use crate::store::Store;

pub use bulk::EncodedResolveAll;
pub use convert::{ConvertError, MAX_STRUCT_DEPTH};
pub use evaluation_v1::EvaluationV1;
pub use evaluation_v2::EvaluationV2;
pub use schema_v1::SchemaV1;
pub use status::FlagdStatus;
pub use sync::SyncService;

/// The v1 evaluation server with ResolveAll answered as bytes (`bulk`).
pub type ResolveAllV1 = EncodedResolveAll<
    EvaluationV1Server<EvaluationV1>,
    flagpole_proto::evaluation_v1::ResolveAllRequest,
>;

/// The schema.v1 evaluation server with ResolveAll answered as bytes (`bulk`).
pub type ResolveAllSchemaV1 =
    EncodedResolveAll<SchemaV1Server<SchemaV1>, flagpole_proto::schema_v1::ResolveAllRequest>;

/// How long an EventStream may stay silent before flagd sends `keep_alive`.
pub const DEFAULT_EVENT_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// What the gRPC services need beyond evaluation. Built by `crate::run` from the configuration.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `--stream-deadline`: EventStream (v1, v2) and SyncFlags streams end with DEADLINE_EXCEEDED after this
    /// long; `None` means no deadline.
    pub stream_deadline: Option<Duration>,
    /// `--disable-sync-metadata`: `GetMetadata` answers UNIMPLEMENTED.
    pub disable_sync_metadata: bool,
    /// Silence after which an EventStream gets `keep_alive` (flagd: 20 s).
    pub event_keep_alive: Duration,
    /// `--max-request-body`: the largest request message decoded, in bytes.
    pub max_request_body: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            stream_deadline: None,
            disable_sync_metadata: false,
            event_keep_alive: DEFAULT_EVENT_KEEP_ALIVE,
            // flagd's `--max-request-body` default: the one constant, in `config`.
            max_request_body: crate::config::DEFAULT_MAX_REQUEST_BYTES as usize,
        }
    }
}

/// The state every gRPC service shares: the evaluation core, the configuration, the shutdown signal and the
/// subscribers' shared work.
#[derive(Debug, Clone)]
pub struct Services {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    evaluator: Evaluator,
    config: ServiceConfig,
    shutdown: CancellationToken,
    fanout: fanout::Fanout,
}

impl Services {
    /// Services over `store`. Cancelling `shutdown` sends `provider_shutdown` to every EventStream and ends
    /// every stream.
    pub fn new(evaluator: Evaluator, config: ServiceConfig, shutdown: CancellationToken) -> Self {
        Services {
            inner: Arc::new(Inner {
                evaluator,
                config,
                shutdown,
                fanout: fanout::Fanout::default(),
            }),
        }
    }

    /// `flagd.evaluation.v1.Service`.
    pub fn evaluation_v1(&self) -> FlagdStatus<ResolveAllV1> {
        let server = EvaluationV1Server::new(EvaluationV1::new(self.clone()))
            .max_decoding_message_size(self.inner.config.max_request_body);
        FlagdStatus(EncodedResolveAll::new(
            server,
            self.clone(),
            evaluation_v1::SHAPE,
        ))
    }

    /// `flagd.evaluation.v2.Service`.
    pub fn evaluation_v2(&self) -> FlagdStatus<EvaluationV2Server<EvaluationV2>> {
        FlagdStatus(
            EvaluationV2Server::new(EvaluationV2::new(self.clone()))
                .max_decoding_message_size(self.inner.config.max_request_body),
        )
    }

    /// The legacy `schema.v1.Service`.
    pub fn schema_v1(&self) -> FlagdStatus<ResolveAllSchemaV1> {
        let server = SchemaV1Server::new(SchemaV1::new(self.clone()))
            .max_decoding_message_size(self.inner.config.max_request_body);
        FlagdStatus(EncodedResolveAll::new(
            server,
            self.clone(),
            schema_v1::SHAPE,
        ))
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

    fn evaluator(&self) -> &Evaluator {
        &self.inner.evaluator
    }

    fn store(&self) -> &Store {
        self.inner.evaluator.store()
    }

    fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    fn metrics(&self) -> &Metrics {
        self.inner.evaluator.metrics()
    }

    fn fanout(&self) -> &fanout::Fanout {
        &self.inner.fanout
    }
}
