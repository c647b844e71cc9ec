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
    AnyFlag, EventStreamRequest, EventStreamResponse, ResolveAllRequest, ResolveAllResponse,
    ResolveBooleanRequest, ResolveBooleanResponse, ResolveFloatRequest, ResolveFloatResponse,
    ResolveIntRequest, ResolveIntResponse, ResolveObjectRequest, ResolveObjectResponse,
    ResolveStringRequest, ResolveStringResponse, any_flag,
};
use tonic::{Request, Response, Status};

use super::Services;
use super::convert::metadata_struct;
use super::events::StreamDeadline;
use super::typed::{event_message, event_stream, typed_rpcs};
use super::v1_answers::{Answer, CodeDefault, Rules, all_flags, any_flag, typed};
use crate::eval::HeaderMapping;
use crate::eval::metadata::ResponseMetadata;

/// v1: `-H` applies, a code default is FLAG_NOT_FOUND, `--stream-deadline` applies.
const RULES: Rules = Rules {
    headers: HeaderMapping::Apply,
    code_default: CodeDefault::NotFound,
    deadline: StreamDeadline::Configured,
};

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
any_flag!(AnyFlag, any_flag::Value, metadata);

#[tonic::async_trait]
impl Service for EvaluationV1 {
    async fn resolve_all(
        &self,
        request: Request<ResolveAllRequest>,
    ) -> Result<Response<ResolveAllResponse>, Status> {
        let (metadata, _, body) = request.into_parts();
        let all = all_flags(&self.services, RULES, metadata, body.context)?;
        Ok(Response::new(ResolveAllResponse {
            flags: all.flags,
            metadata: Some(metadata_struct(ResponseMetadata::reflection(&all.selector))),
        }))
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
