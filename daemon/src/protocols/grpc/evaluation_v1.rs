//! `flagd.evaluation.v1.Service`: typed resolves, ResolveAll and EventStream with v1's fallbacks.
//!
//! v1 cannot say "no value": a code default (no default variant, targeting did not pick one) is
//! FLAG_NOT_FOUND, and a disabled flag is a success with the zero value, an empty variant and reason
//! DISABLED (`docs/protocols.md#answers-per-protocol`). ResolveAll carries the selector reflection as its metadata and each
//! flag's metadata. The handler bodies are `v1_answers`', shared with schema.v1; this module holds v1's
//! [`Rules`] and its types.

use super::events::EventStream;
use flagpole_proto::evaluation_v1::service_server::Service;
use flagpole_proto::evaluation_v1::{
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

/// v1: `-H` applies, a code default is FLAG_NOT_FOUND, `--stream-deadline` applies.
const RULES: Rules = Rules {
    headers: HeaderMapping::Apply,
    code_default: CodeDefault::NotFound,
    deadline: StreamDeadline::Configured,
};

/// Where ResolveAll is served and whether it carries metadata (`super::bulk`).
pub(super) const SHAPE: Shape = Shape {
    path: "/flagd.evaluation.v1.Service/ResolveAll",
    rules: RULES,
    metadata: true,
};

impl BulkRequest for ResolveAllRequest {
    fn into_context(self) -> Option<Struct> {
        self.context
    }
}

/// The v1 evaluation service.
#[derive(Debug, Clone)]
pub struct EvaluationV1 {
    services: Services,
}

impl EvaluationV1 {
    pub(super) fn new(services: Services) -> Self {
        EvaluationV1 { services }
    }
}

typed_rpcs!(Answer);
event_message!(EventStreamResponse);

#[tonic::async_trait]
impl Service for EvaluationV1 {
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
