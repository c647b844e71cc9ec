//! `flagd.sync.v1.FlagSyncService`: the selected flag configuration for in-process providers and chained
//! daemons.
//!
//! `SyncFlags` sends the full selected payload at once and again after every store change that alters it;
//! unlike flagd, a payload byte-identical to the last one sent on that stream is skipped. Every message
//! carries the `-X` values as `sync_context`. The selector comes from the `Flagd-Selector` header, else from
//! the deprecated body field. One task per stream, as for EventStream.

use flagpole_engine::Selector;
use flagpole_proto::sync_v1::flag_sync_service_server::FlagSyncService;
use flagpole_proto::sync_v1::{
    FetchAllFlagsRequest, FetchAllFlagsResponse, GetMetadataRequest, GetMetadataResponse,
    SyncFlagsRequest, SyncFlagsResponse,
};
use prost_types::Struct;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::Services;
use super::convert::strings_to_struct;
use super::events::{Sent, send_or_shutdown, sleep_until_opt};
use super::status::{deadline_exceeded, grpc_status};
use crate::eval::RequestError;
use crate::eval::request::SELECTOR_HEADER;
use crate::metrics::StreamCloseReason;
use crate::telemetry::ActiveSpan;

/// Messages buffered per SyncFlags stream before its task waits for the client to read.
pub const SYNC_CHANNEL_CAPACITY: usize = 4;

/// The sync service.
#[derive(Debug, Clone)]
pub struct SyncService {
    services: Services,
}

/// A sync request's selector: its text (for metrics) and its parsed form.
struct SyncSelector {
    text: String,
    selector: Selector,
}

/// The header selector (first value, when non-empty) beats the body field.
fn sync_selector(headers: &MetadataMap, body: &str) -> Result<SyncSelector, Status> {
    let header = match headers.get(SELECTOR_HEADER) {
        Some(value) => value
            .to_str()
            .map_err(|_| grpc_status(RequestError::SelectorEncoding.into()))?,
        None => "",
    };
    let text = if header.is_empty() { body } else { header };
    let selector = text
        .parse()
        .map_err(|e: flagpole_engine::SelectorError| grpc_status(RequestError::from(e).into()))?;
    Ok(SyncSelector {
        text: text.to_owned(),
        selector,
    })
}

impl SyncService {
    pub(super) fn new(services: Services) -> Self {
        SyncService { services }
    }

    fn sync_context(&self) -> Struct {
        strings_to_struct(&self.services.evaluator().config().context_values)
    }
}

#[tonic::async_trait]
impl FlagSyncService for SyncService {
    type SyncFlagsStream = ReceiverStream<Result<SyncFlagsResponse, Status>>;

    async fn sync_flags(
        &self,
        request: Request<SyncFlagsRequest>,
    ) -> Result<Response<Self::SyncFlagsStream>, Status> {
        let (headers, _, body) = request.into_parts();
        #[allow(deprecated)]
        let selector = sync_selector(&headers, &body.selector)?;
        // One span per stream, from its start to its end, continuing the caller's trace.
        let span =
            self.services.metrics().tracer().and_then(|tracer| {
                tracer.start_request(SYNC_SPAN, &headers.clone().into_headers())
            });
        let (tx, rx) = mpsc::channel(SYNC_CHANNEL_CAPACITY);
        let deadline = self
            .services
            .config()
            .stream_deadline
            .map(|d| Instant::now() + d);
        tokio::spawn(run(
            self.services.clone(),
            selector,
            body.provider_id,
            self.sync_context(),
            deadline,
            tx,
            span,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch_all_flags(
        &self,
        request: Request<FetchAllFlagsRequest>,
    ) -> Result<Response<FetchAllFlagsResponse>, Status> {
        let (headers, _, body) = request.into_parts();
        #[allow(deprecated)]
        let selector = sync_selector(&headers, &body.selector)?;
        let snapshot = self.services.store().snapshot();
        let flag_configuration = snapshot.sync_payload(&selector.selector);
        Ok(Response::new(FetchAllFlagsResponse { flag_configuration }))
    }

    async fn get_metadata(
        &self,
        _request: Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        if self.services.config().disable_sync_metadata {
            return Err(Status::unimplemented("metadata endpoint disabled"));
        }
        Ok(Response::new(GetMetadataResponse {
            metadata: Some(self.sync_context()),
        }))
    }
}

async fn run(
    services: Services,
    selector: SyncSelector,
    provider_id: String,
    sync_context: Struct,
    deadline: Option<Instant>,
    tx: mpsc::Sender<Result<SyncFlagsResponse, Status>>,
    span: Option<ActiveSpan>,
) {
    let metrics = services.metrics().clone();
    metrics.sync_stream_opened(&selector.text, &provider_id);
    crate::memory::stream_opened();
    let started = Instant::now();
    let shutdown = services.shutdown().clone();
    let mut watch = services.store().subscribe();
    let snapshot = watch.borrow_and_update().clone();
    let mut last = services
        .fanout()
        .sync_payload(&snapshot, &selector.selector);
    tracing::debug!(selector = selector.text, provider_id, "sync stream opened");

    let message = |payload: &str| SyncFlagsResponse {
        flag_configuration: payload.to_owned(),
        sync_context: Some(sync_context.clone()),
    };
    let reason = match send_or_shutdown(&tx, Ok(message(&last)), &shutdown).await {
        Sent::ClientGone => StreamCloseReason::ClientDisconnect,
        Sent::ShuttingDown => StreamCloseReason::NormalClose,
        Sent::Delivered => loop {
            tokio::select! {
                () = tx.closed() => break StreamCloseReason::ClientDisconnect,
                () = shutdown.cancelled() => break StreamCloseReason::NormalClose,
                () = sleep_until_opt(deadline) => {
                    let _ = send_or_shutdown(&tx, Err(deadline_exceeded()), &shutdown).await;
                    break StreamCloseReason::DeadlineExceeded;
                }
                changed = watch.changed() => {
                    if changed.is_err() {
                        break StreamCloseReason::NormalClose;
                    }
                    let snapshot = watch.borrow_and_update().clone();
                    let payload = services.fanout().sync_payload(&snapshot, &selector.selector);
                    if payload == last {
                        continue;
                    }
                    match send_or_shutdown(&tx, Ok(message(&payload)), &shutdown).await {
                        Sent::Delivered => last = payload,
                        Sent::ClientGone => break StreamCloseReason::ClientDisconnect,
                        Sent::ShuttingDown => break StreamCloseReason::NormalClose,
                    }
                }
            }
        },
    };
    tracing::debug!(
        selector = selector.text,
        provider_id,
        reason = reason.as_str(),
        "sync stream closed"
    );
    metrics.sync_stream_closed(&selector.text, &provider_id, reason, started.elapsed());
    if let Some(mut span) = span {
        span.set("rpc.system", "grpc");
        span.set("rpc.service", "flagd.sync.v1.FlagSyncService");
        span.set("rpc.method", "SyncFlags");
        span.set("feature_flag.selector", selector.text.clone());
        if !provider_id.is_empty() {
            span.set("feature_flag.provider_id", provider_id.clone());
        }
        span.set("feature_flag.sync.close_reason", reason.as_str());
        if reason == StreamCloseReason::Error {
            span.fail(reason.as_str());
        }
        span.end();
    }
}

/// The name of a SyncFlags stream's span (the gRPC method, as gRPC instrumentation names it).
const SYNC_SPAN: &str = "flagd.sync.v1.FlagSyncService/SyncFlags";
