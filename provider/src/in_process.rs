//! The in-process resolver's background task: a `flagd.sync.v1` `SyncFlags` stream whose payloads are parsed
//! by `flagpole-engine` into the local store, with re-connection, back-off and the shared event semantics.
//!
//! The sync context (the daemon's static context) comes from `SyncFlagsResponse.sync_context`; when a
//! message carries none, `GetMetadata` is asked once per connection (a daemon started with
//! `--disable-sync-metadata` answers UNIMPLEMENTED, and then there is simply no enrichment). A payload that
//! cannot be parsed is logged and the previous flags stay.

use std::sync::Arc;

use flagpole_engine::Format;
use flagpole_proto::sync_v1 as pb;
use flagpole_proto::sync_v1::flag_sync_service_client::FlagSyncServiceClient;
use serde_json::{Map, Value as Json};
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::FlagdOptions;
use crate::channel::SELECTOR_HEADER;
use crate::convert::struct_to_json;
use crate::events::{Hub, Lifecycle};
use crate::local::{FlagSet, LocalStore};
use crate::rpc::{StreamEnd, StreamSettings, classify, next_message};

/// The largest sync message accepted: a payload as large as the engine accepts, plus room for the context.
/// (tonic's default, 4 MiB, is smaller than a large flagd configuration.)
pub const MAX_SYNC_MESSAGE_BYTES: usize = flagpole_engine::load::MAX_DOCUMENT_BYTES + 1024 * 1024;

/// What the sync task needs.
pub(crate) struct SyncTask {
    pub(crate) channel: Channel,
    pub(crate) selector: Option<MetadataValue<Ascii>>,
    pub(crate) selector_text: String,
    pub(crate) provider_id: String,
    pub(crate) deadline: std::time::Duration,
    pub(crate) store: Arc<LocalStore>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) settings: StreamSettings,
    pub(crate) enricher: Option<crate::ContextEnricher>,
}

impl SyncTask {
    pub(crate) fn new(
        channel: Channel,
        options: &FlagdOptions,
        selector: Option<MetadataValue<Ascii>>,
        store: Arc<LocalStore>,
        hub: Arc<Hub>,
    ) -> Self {
        SyncTask {
            channel,
            selector,
            selector_text: options.selector.clone().unwrap_or_default(),
            provider_id: options.provider_id.clone().unwrap_or_default(),
            deadline: std::time::Duration::from_millis(options.deadline_ms.max(1)),
            store,
            hub,
            settings: StreamSettings::new(options),
            enricher: None,
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(selector) = &self.selector {
            request
                .metadata_mut()
                .insert(SELECTOR_HEADER, selector.clone());
        }
        request
    }

    /// Runs until a fatal status (or until aborted).
    pub(crate) async fn run(self, mut life: Lifecycle) {
        // The last payload installed: flagd re-sends identical payloads, which need no parsing.
        let mut last: Option<(String, Option<prost_types::Struct>)> = None;
        loop {
            match self.one_stream(&mut life, &mut last).await {
                StreamEnd::Fatal(reason) => {
                    life.fatal(&reason);
                    return;
                }
                StreamEnd::Deadline => {}
                StreamEnd::Lost(reason) => {
                    tracing::debug!(%reason, "sync stream lost; retrying after back-off");
                    life.disconnected(&reason);
                    life.backoff().await;
                }
            }
        }
    }

    async fn one_stream(
        &self,
        life: &mut Lifecycle,
        last: &mut Option<(String, Option<prost_types::Struct>)>,
    ) -> StreamEnd {
        let mut client = FlagSyncServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_SYNC_MESSAGE_BYTES);
        let request = self.request(pb::SyncFlagsRequest {
            provider_id: self.provider_id.clone(),
            #[allow(deprecated)]
            selector: self.selector_text.clone(),
        });
        let mut stream = match life.guard(client.sync_flags(request)).await {
            Ok(response) => response.into_inner(),
            Err(status) => return classify(&status, &self.settings, false),
        };
        let deadline = self.settings.deadline();
        let mut metadata: Option<Map<String, Json>> = None;
        let mut received = false;
        loop {
            let message = match life.guard(next_message(&mut stream, deadline)).await {
                Ok(Some(message)) => message,
                Ok(None) => return StreamEnd::Lost("the sync stream ended".into()),
                Err(None) => return StreamEnd::Deadline,
                Err(Some(status)) => return classify(&status, &self.settings, received),
            };
            received = true;
            if last.as_ref().is_some_and(|(payload, context)| {
                *payload == message.flag_configuration
                    && *context == message.sync_context
                    && context.is_some()
            }) {
                life.connected();
                continue;
            }
            let flags = match FlagSet::parse(&message.flag_configuration, Format::Json) {
                Ok(flags) => flags,
                Err(error) => {
                    tracing::warn!(%error, "sync payload rejected; keeping the previous flags");
                    continue;
                }
            };
            let context = match &message.sync_context {
                Some(context) => struct_to_json(context),
                None => {
                    if metadata.is_none() {
                        metadata = Some(self.fetch_metadata(life).await);
                    }
                    metadata.clone().unwrap_or_default()
                }
            };
            let context = match &self.enricher {
                Some(enrich) => enrich(&context),
                None => context,
            };
            let changed = self.store.replace(flags, context);
            *last = Some((message.flag_configuration, message.sync_context));
            life.connected();
            if let Some(keys) = changed.filter(|k| !k.is_empty()) {
                self.hub.changed(keys);
            }
        }
    }

    async fn fetch_metadata(&self, life: &mut Lifecycle) -> Map<String, Json> {
        let mut client = FlagSyncServiceClient::new(self.channel.clone());
        let mut request = self.request(pb::GetMetadataRequest {});
        request.set_timeout(self.deadline);
        #[allow(deprecated)]
        let call = client.get_metadata(request);
        match life.guard(tokio::time::timeout(self.deadline, call)).await {
            Ok(Ok(response)) => response
                .into_inner()
                .metadata
                .as_ref()
                .map(struct_to_json)
                .unwrap_or_default(),
            Ok(Err(status)) => {
                tracing::debug!(code = ?status.code(), "GetMetadata unavailable; no sync context");
                Map::new()
            }
            Err(_) => Map::new(),
        }
    }
}
