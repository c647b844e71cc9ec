//! `flagd.evaluation.v2.Service`: typed resolves and EventStream with v2's optional value and variant.
//!
//! A code default answers reason DEFAULT and a disabled flag reason DISABLED, both with value and variant
//! unset; an empty variant is left out too (inventory 2.3). There is no ResolveAll.

use flagpole_engine::Reason;
use flagpole_proto::evaluation_v2::service_server::Service;
use flagpole_proto::evaluation_v2::{
    EventStreamRequest, EventStreamResponse, ResolveBooleanRequest, ResolveBooleanResponse,
    ResolveFloatRequest, ResolveFloatResponse, ResolveIntRequest, ResolveIntResponse,
    ResolveObjectRequest, ResolveObjectResponse, ResolveStringRequest, ResolveStringResponse,
};
use prost_types::Struct;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::Services;
use super::events::{EventMessage, StreamDeadline, subscribe};
use super::request::{HeaderMapping, read_eval_request, selector};
use super::resolve::{Outcome, WireValue, resolve};
use super::status::{Failure, grpc_status};

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

    fn resolve<T: WireValue>(
        &self,
        headers: &MetadataMap,
        key: &str,
        context: Option<Struct>,
    ) -> Result<Answer<T>, Status> {
        let request = read_eval_request(
            self.services.config(),
            headers,
            context,
            HeaderMapping::Apply,
        )
        .map_err(|e| grpc_status(e.into()))?;
        let snapshot = self.services.store().snapshot();
        let resolution = resolve(
            &self.services,
            &snapshot,
            key,
            T::TYPE,
            &request.selector,
            &request.context,
        );
        let metadata = resolution.metadata;
        let without_value = |reason: Reason| Answer {
            value: None,
            reason: reason.as_str().to_owned(),
            variant: None,
            metadata: metadata.clone(),
        };
        match resolution.outcome {
            Outcome::Value {
                reason,
                variant,
                value,
            } => Ok(Answer {
                value: Some(T::from_typed(value)),
                reason: reason.as_str().to_owned(),
                variant: (!variant.is_empty()).then(|| variant.to_owned()),
                metadata,
            }),
            Outcome::Disabled => Ok(without_value(Reason::Disabled)),
            Outcome::CodeDefault => Ok(without_value(Reason::Default)),
            Outcome::Failed(code) => Err(grpc_status(Failure::Evaluation(code))),
        }
    }
}

impl EventMessage for EventStreamResponse {
    fn event(kind: &str, data: Option<Struct>) -> Self {
        EventStreamResponse {
            r#type: kind.to_owned(),
            data,
        }
    }
}

#[tonic::async_trait]
impl Service for EvaluationV2 {
    async fn resolve_boolean(
        &self,
        request: Request<ResolveBooleanRequest>,
    ) -> Result<Response<ResolveBooleanResponse>, Status> {
        let (headers, _, body) = request.into_parts();
        let a = self.resolve::<bool>(&headers, &body.flag_key, body.context)?;
        Ok(Response::new(ResolveBooleanResponse {
            value: a.value,
            reason: a.reason,
            variant: a.variant,
            metadata: a.metadata,
        }))
    }

    async fn resolve_string(
        &self,
        request: Request<ResolveStringRequest>,
    ) -> Result<Response<ResolveStringResponse>, Status> {
        let (headers, _, body) = request.into_parts();
        let a = self.resolve::<String>(&headers, &body.flag_key, body.context)?;
        Ok(Response::new(ResolveStringResponse {
            value: a.value,
            reason: a.reason,
            variant: a.variant,
            metadata: a.metadata,
        }))
    }

    async fn resolve_float(
        &self,
        request: Request<ResolveFloatRequest>,
    ) -> Result<Response<ResolveFloatResponse>, Status> {
        let (headers, _, body) = request.into_parts();
        let a = self.resolve::<f64>(&headers, &body.flag_key, body.context)?;
        Ok(Response::new(ResolveFloatResponse {
            value: a.value,
            reason: a.reason,
            variant: a.variant,
            metadata: a.metadata,
        }))
    }

    async fn resolve_int(
        &self,
        request: Request<ResolveIntRequest>,
    ) -> Result<Response<ResolveIntResponse>, Status> {
        let (headers, _, body) = request.into_parts();
        let a = self.resolve::<i64>(&headers, &body.flag_key, body.context)?;
        Ok(Response::new(ResolveIntResponse {
            value: a.value,
            reason: a.reason,
            variant: a.variant,
            metadata: a.metadata,
        }))
    }

    async fn resolve_object(
        &self,
        request: Request<ResolveObjectRequest>,
    ) -> Result<Response<ResolveObjectResponse>, Status> {
        let (headers, _, body) = request.into_parts();
        let a = self.resolve::<Option<Struct>>(&headers, &body.flag_key, body.context)?;
        Ok(Response::new(ResolveObjectResponse {
            value: a.value.flatten(),
            reason: a.reason,
            variant: a.variant,
            metadata: a.metadata,
        }))
    }

    type EventStreamStream = ReceiverStream<Result<EventStreamResponse, Status>>;

    async fn event_stream(
        &self,
        request: Request<EventStreamRequest>,
    ) -> Result<Response<Self::EventStreamStream>, Status> {
        let selector = selector(request.metadata()).map_err(|e| grpc_status(e.into()))?;
        Ok(Response::new(subscribe(
            &self.services,
            selector,
            StreamDeadline::Configured,
        )))
    }
}
