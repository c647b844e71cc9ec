//! `flagd.evaluation.v1.Service`: typed resolves, ResolveAll and EventStream with v1's fallbacks.
//!
//! v1 cannot say "no value": a code default (no default variant, targeting did not pick one) is
//! FLAG_NOT_FOUND, and a disabled flag is a success with the zero value, an empty variant and reason
//! DISABLED (inventory 2.2, 3.11).

use flagpole_proto::evaluation_v1::service_server::Service;
use flagpole_proto::evaluation_v1::{
    AnyFlag, EventStreamRequest, EventStreamResponse, ResolveAllRequest, ResolveAllResponse,
    ResolveBooleanRequest, ResolveBooleanResponse, ResolveFloatRequest, ResolveFloatResponse,
    ResolveIntRequest, ResolveIntResponse, ResolveObjectRequest, ResolveObjectResponse,
    ResolveStringRequest, ResolveStringResponse, any_flag,
};
use prost_types::Struct;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::Services;
use super::events::{EventMessage, StreamDeadline, subscribe};
use super::request::{HeaderMapping, read_eval_request, selector, selector_reflection};
use super::resolve::{BulkValue, Outcome, WireValue, resolve, resolve_all};
use super::status::{Failure, grpc_status};

/// The v1 evaluation service.
#[derive(Debug, Clone)]
pub struct EvaluationV1 {
    services: Services,
}

/// A typed answer in v1's shape.
struct Answer<T> {
    value: T,
    reason: String,
    variant: String,
    metadata: Option<Struct>,
}

impl EvaluationV1 {
    pub(super) fn new(services: Services) -> Self {
        EvaluationV1 { services }
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
        match resolution.outcome {
            Outcome::Value {
                reason,
                variant,
                value,
            } => Ok(Answer {
                value: T::from_typed(value),
                reason: reason.as_str().to_owned(),
                variant: variant.to_owned(),
                metadata,
            }),
            Outcome::Disabled => Ok(Answer {
                value: T::default(),
                reason: "DISABLED".to_owned(),
                variant: String::new(),
                metadata,
            }),
            Outcome::CodeDefault => Err(grpc_status(Failure::Evaluation(
                flagpole_engine::ErrorCode::FlagNotFound,
            ))),
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
impl Service for EvaluationV1 {
    async fn resolve_all(
        &self,
        request: Request<ResolveAllRequest>,
    ) -> Result<Response<ResolveAllResponse>, Status> {
        let (headers, _, body) = request.into_parts();
        let request = read_eval_request(
            self.services.config(),
            &headers,
            body.context,
            HeaderMapping::Apply,
        )
        .map_err(|e| grpc_status(e.into()))?;
        let snapshot = self.services.store().snapshot();
        let flags = resolve_all(
            &self.services,
            &snapshot,
            &request.selector,
            &request.context,
        )
        .into_iter()
        .map(|entry| {
            let flag = AnyFlag {
                reason: entry.reason.to_owned(),
                variant: entry.variant,
                metadata: Some(entry.metadata),
                value: Some(match entry.value {
                    BulkValue::Bool(b) => any_flag::Value::BoolValue(b),
                    BulkValue::String(s) => any_flag::Value::StringValue(s),
                    BulkValue::Double(f) => any_flag::Value::DoubleValue(f),
                    BulkValue::Object(o) => any_flag::Value::ObjectValue(o),
                }),
            };
            (entry.key, flag)
        })
        .collect();
        Ok(Response::new(ResolveAllResponse {
            flags,
            metadata: Some(selector_reflection(&request.selector)),
        }))
    }

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
            value: a.value,
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
