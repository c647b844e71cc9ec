//! The handler bodies every evaluation protocol (v1, v2, schema.v1) shares: a typed resolve from request to
//! answer, the EventStream handler, and the macros that fit each package's generated request and response
//! types to them.
//!
//! What it owns: the order of a typed resolve (read the request, take the snapshot, resolve, render) and the
//! traits that make the packages' same-shaped types interchangeable ([`TypedRequest`], `From<Answer<T>>`
//! via [`typed_rpcs!`], [`EventMessage`] via [`event_message!`]).
//!
//! What it does not do: decide what an outcome answers on the wire. Each protocol passes its own rendering
//! (v1 and schema.v1 in `v1_shape`, v2 in `evaluation_v2`); the resolving itself is `resolve`'s.

use prost_types::Struct;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::Services;
use super::events::{EventMessage, StreamDeadline, subscribe};
use super::request::{HeaderMapping, read_eval_request, selector};
use super::resolve::{Resolution, WireValue, resolve};
use super::status::grpc_status;

/// A typed request (`ResolveBooleanRequest`, ...) of any evaluation package: they all carry a flag key and
/// a context.
pub trait TypedRequest {
    /// The value type the request asks for.
    type Value: WireValue;
    /// The flag key and the request context.
    fn into_key_and_context(self) -> (String, Option<Struct>);
}

/// Implements the traits that fit one package's five typed RPCs to [`resolve_typed`]: [`TypedRequest`] for
/// each `Resolve*Request`, and `From<$answer<value>>` for each `Resolve*Response` (value, reason, variant and
/// metadata copied as they are). Every package names these types alike, so the macro names them itself: the
/// invoking module must have them (and `$answer`) in scope, as its handler signatures do anyway. The object
/// value is first passed through the function after `object via`, where one is named.
///
/// ```text
/// typed_rpcs!(Answer);
/// typed_rpcs!(Answer, object via Option::flatten);
/// ```
macro_rules! typed_rpcs {
    ($answer:ident $(, object via $convert:path)?) => {
        $crate::service::handlers::typed_rpcs!(
            @rpc $answer, bool, ResolveBooleanRequest, ResolveBooleanResponse
        );
        $crate::service::handlers::typed_rpcs!(
            @rpc $answer, String, ResolveStringRequest, ResolveStringResponse
        );
        $crate::service::handlers::typed_rpcs!(
            @rpc $answer, f64, ResolveFloatRequest, ResolveFloatResponse
        );
        $crate::service::handlers::typed_rpcs!(
            @rpc $answer, i64, ResolveIntRequest, ResolveIntResponse
        );
        $crate::service::handlers::typed_rpcs!(
            @rpc $answer, Option<prost_types::Struct>, ResolveObjectRequest, ResolveObjectResponse
            $(, $convert)?
        );
    };
    (@rpc $answer:ident, $value:ty, $request:ident, $response:ident $(, $convert:path)?) => {
        impl $crate::service::handlers::TypedRequest for $request {
            type Value = $value;
            fn into_key_and_context(self) -> (String, Option<prost_types::Struct>) {
                (self.flag_key, self.context)
            }
        }

        impl From<$answer<$value>> for $response {
            fn from(answer: $answer<$value>) -> Self {
                let value = answer.value;
                $(let value = $convert(value);)?
                $response {
                    value,
                    reason: answer.reason,
                    variant: answer.variant,
                    metadata: answer.metadata,
                }
            }
        }
    };
}
pub(super) use typed_rpcs;

/// Implements [`EventMessage`] for a package's `EventStreamResponse` (`type` and `data`).
macro_rules! event_message {
    ($response:ident) => {
        impl $crate::service::events::EventMessage for $response {
            fn event(kind: &str, data: Option<prost_types::Struct>) -> Self {
                $response {
                    r#type: kind.to_owned(),
                    data,
                }
            }
        }
    };
}
pub(super) use event_message;

/// A typed RPC: reads the selector and context (with or without `-H`, per `mapping`), resolves the flag in
/// the current snapshot, and lets `render` turn the resolution into the protocol's answer.
pub fn resolve_typed<Q: TypedRequest, A>(
    services: &Services,
    mapping: HeaderMapping,
    request: Request<Q>,
    render: impl FnOnce(Resolution<'_>) -> Result<A, Status>,
) -> Result<A, Status> {
    let (headers, _, body) = request.into_parts();
    let (key, context) = body.into_key_and_context();
    let request = read_eval_request(services.config(), &headers, context, mapping)
        .map_err(|e| grpc_status(e.into()))?;
    let snapshot = services.store().snapshot();
    render(resolve(
        services,
        &snapshot,
        &key,
        Q::Value::TYPE,
        &request.selector,
        &request.context,
    ))
}

/// EventStream: subscribes with the selector from the `Flagd-Selector` header.
pub fn event_stream<M: EventMessage>(
    services: &Services,
    headers: &MetadataMap,
    deadline: StreamDeadline,
) -> Result<Response<ReceiverStream<Result<M, Status>>>, Status> {
    let selector = selector(headers).map_err(|e| grpc_status(e.into()))?;
    Ok(Response::new(subscribe(services, selector, deadline)))
}
