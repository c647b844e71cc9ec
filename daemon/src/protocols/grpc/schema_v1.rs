//! The legacy `schema.v1.Service` (deprecated, still used by old clients): v1's RPCs with its own rules.
//!
//! Differences from v1 (`docs/protocols.md#answers-per-protocol`): `-H` header mappings are not applied (`-X` is), streams have no
//! deadline, `ResolveAll` has no metadata (neither the response's nor each flag's). A code default answers
//! the zero value with reason DEFAULT: flagd leaks its internal reason `FALLBACK` here, flagpole does not
//! (docs/protocols.md). A disabled flag is a success with the zero value and reason DISABLED, as on v1. The
//! handler bodies are `v1_answers`', shared with v1; this module holds schema.v1's [`Rules`] and its types.

use super::events::EventStream;
use flagpole_proto::schema_v1::service_server::Service;
use flagpole_proto::schema_v1::{
    EventStreamRequest, EventStreamResponse, ResolveAllRequest, ResolveAllResponse,
    ResolveBooleanRequest, ResolveBooleanResponse, ResolveFloatRequest, ResolveFloatResponse,
    ResolveIntRequest, ResolveIntResponse, ResolveObjectRequest, ResolveObjectResponse,
    ResolveStringRequest, ResolveStringResponse,
};
use prost_types::Struct;
use tonic::{Request, Response, Status};

use super::Services;
use super::bulk::{BulkRequest, Shape, decoded};
use super::events::StreamDeadline;
use super::typed::{event_message, event_stream, typed_rpcs};
use super::v1_answers::{Answer, CodeDefault, Rules, resolve_all, typed};
use crate::eval::HeaderMapping;

/// schema.v1: `-H` does not apply, a code default is the zero value, streams have no deadline.
const RULES: Rules = Rules {
    headers: HeaderMapping::Skip,
    code_default: CodeDefault::ZeroValue,
    deadline: StreamDeadline::Never,
};

/// Where ResolveAll is served and whether it carries metadata (`super::bulk`).
pub(super) const SHAPE: Shape = Shape {
    path: "/schema.v1.Service/ResolveAll",
    rules: RULES,
    metadata: false,
};

impl BulkRequest for ResolveAllRequest {
    fn into_context(self) -> Option<Struct> {
        self.context
    }
}

/// The legacy schema.v1 evaluation service.
#[derive(Debug, Clone)]
pub struct SchemaV1 {
    services: Services,
}

impl SchemaV1 {
    pub(super) fn new(services: Services) -> Self {
        SchemaV1 { services }
    }
}

typed_rpcs!(Answer);
event_message!(EventStreamResponse);

#[tonic::async_trait]
impl Service for SchemaV1 {
    /// On the wire, `super::bulk::EncodedResolveAll` answers ResolveAll with `v1_answers::resolve_all`'s
    /// bytes before this method is reached; called directly (as tests do), it answers the same, decoded.
    async fn resolve_all(
        &self,
        request: Request<ResolveAllRequest>,
    ) -> Result<Response<ResolveAllResponse>, Status> {
        let (metadata, _, body) = request.into_parts();
        let encoded = resolve_all(&self.services, SHAPE, metadata, body.context)?;
        decoded(encoded).map(Response::new)
    }

    async fn resolve_boolean(
        &self,
        request: Request<ResolveBooleanRequest>,
    ) -> Result<Response<ResolveBooleanResponse>, Status> {
        typed(&self.services, RULES, request)
    }

    async fn resolve_string(
        &self,
        request: Request<ResolveStringRequest>,
    ) -> Result<Response<ResolveStringResponse>, Status> {
        typed(&self.services, RULES, request)
    }

    async fn resolve_float(
        &self,
        request: Request<ResolveFloatRequest>,
    ) -> Result<Response<ResolveFloatResponse>, Status> {
        typed(&self.services, RULES, request)
    }

    async fn resolve_int(
        &self,
        request: Request<ResolveIntRequest>,
    ) -> Result<Response<ResolveIntResponse>, Status> {
        typed(&self.services, RULES, request)
    }

    async fn resolve_object(
        &self,
        request: Request<ResolveObjectRequest>,
    ) -> Result<Response<ResolveObjectResponse>, Status> {
        typed(&self.services, RULES, request)
    }

    type EventStreamStream = EventStream<EventStreamResponse>;

    async fn event_stream(
        &self,
        request: Request<EventStreamRequest>,
    ) -> Result<Response<Self::EventStreamStream>, Status> {
        event_stream(&self.services, request.metadata(), RULES.deadline)
    }
}
