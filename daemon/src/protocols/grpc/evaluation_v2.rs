//! `flagd.evaluation.v2.Service`: typed resolves and EventStream with v2's optional value and variant.
//!
//! A code default answers reason DEFAULT and a disabled flag reason DISABLED, both with value and variant
//! unset; an empty variant is left out too (`docs/protocols.md#answers-per-protocol`). There is no ResolveAll. The request reading is
//! `typed`'s and the resolving `crate::eval`'s; this module holds v2's handlers, rendering and types.

use super::events::EventStream;
use flagpole_engine::{Outcome, Reason, Selector};
use flagpole_proto::evaluation_v2::service_server::Service;
use flagpole_proto::evaluation_v2::{
    EventStreamRequest, EventStreamResponse, ResolveBooleanRequest, ResolveBooleanResponse,
    ResolveFloatRequest, ResolveFloatResponse, ResolveIntRequest, ResolveIntResponse,
    ResolveObjectRequest, ResolveObjectResponse, ResolveStringRequest, ResolveStringResponse,
};
use prost_types::Struct;
use tonic::{Request, Response, Status};

use super::Services;
use super::convert::metadata_struct;
use super::events::StreamDeadline;
use super::status::{ResolveError, grpc_status};
use super::typed::{TypedRequest, WireValue, event_message, event_stream, read_typed, typed_rpcs};
use crate::eval::HeaderMapping;
use crate::eval::resolve::{Resolved, resolve_typed};

/// The v2 evaluation service.
#[derive(Debug, Clone)]
pub struct EvaluationV2 {
    services: Services,
}

/// A typed answer in v2's shape.
struct Answer<T> {
    value: Option<T>,
    reason: String,
    variant: Option<String>,
    metadata: Option<Struct>,
}

impl EvaluationV2 {
    pub(super) fn new(services: Services) -> Self {
        EvaluationV2 { services }
    }

    /// A typed RPC: one handler body for all five (`-H` applies).
    fn typed<Q, R>(&self, request: Request<Q>) -> Result<Response<R>, Status>
    where
        Q: TypedRequest,
        R: From<Answer<Q::Value>>,
    {
        let evaluator = self.services.evaluator();
        let (key, request) = read_typed(&self.services, HeaderMapping::Apply, request)?;
        let snapshot = evaluator.snapshot();
        let resolved = resolve_typed(evaluator, &snapshot, &key, Q::Value::TYPE, &request);
        evaluator.record(&key, &resolved.outcome);
        let answer = render::<Q::Value>(&resolved, &request.selector)?;
        Ok(Response::new(answer.into()))
    }
}

/// Renders a typed resolution in v2's shape.
fn render<T: WireValue>(resolved: &Resolved<'_>, selector: &Selector) -> Result<Answer<T>, Status> {
    // Built only for the answers that carry it (a failure is a status).
    let metadata = || resolved.metadata(selector).map(metadata_struct);
    let without_value = |reason: Reason| Answer {
        value: None,
        reason: reason.as_str().to_owned(),
        variant: None,
        metadata: metadata(),
    };
    match &resolved.outcome {
        Outcome::Value {
            selection,
            variant,
            value,
        } => Ok(Answer {
            value: Some(T::from_typed(*value)),
            reason: selection.reason().as_str().to_owned(),
            variant: (!variant.is_empty()).then(|| (*variant).to_owned()),
            metadata: metadata(),
        }),
        Outcome::Disabled => Ok(without_value(Reason::Disabled)),
        Outcome::CodeDefault => Ok(without_value(Reason::Default)),
        Outcome::Failed { error, .. } => Err(grpc_status(ResolveError::Evaluation(error.code))),
    }
}

// The wire field of an object is the Struct itself: an absent value and an absent Struct are the same.
typed_rpcs!(Answer, object via Option::flatten);
event_message!(EventStreamResponse);

#[tonic::async_trait]
impl Service for EvaluationV2 {
    async fn resolve_boolean(
        &self,
        request: Request<ResolveBooleanRequest>,
    ) -> Result<Response<ResolveBooleanResponse>, Status> {
        self.typed(request)
    }

    async fn resolve_string(
        &self,
        request: Request<ResolveStringRequest>,
    ) -> Result<Response<ResolveStringResponse>, Status> {
        self.typed(request)
    }

    async fn resolve_float(
        &self,
        request: Request<ResolveFloatRequest>,
    ) -> Result<Response<ResolveFloatResponse>, Status> {
        self.typed(request)
    }

    async fn resolve_int(
        &self,
        request: Request<ResolveIntRequest>,
    ) -> Result<Response<ResolveIntResponse>, Status> {
        self.typed(request)
    }

    async fn resolve_object(
        &self,
        request: Request<ResolveObjectRequest>,
    ) -> Result<Response<ResolveObjectResponse>, Status> {
        self.typed(request)
    }

    type EventStreamStream = EventStream<EventStreamResponse>;

    async fn event_stream(
        &self,
        request: Request<EventStreamRequest>,
    ) -> Result<Response<Self::EventStreamStream>, Status> {
        event_stream(
            &self.services,
            request.metadata(),
            StreamDeadline::Configured,
        )
    }
}
