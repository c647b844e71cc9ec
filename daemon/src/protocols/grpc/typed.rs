//! What every evaluation package (v1, v2, schema.v1) shares for its typed RPCs and EventStream: reading a
//! request into the neutral core's [`EvalRequest`], the wire value types, and the two macros that fit each
//! package's generated (same-shaped) request and response types.
//!
//! The handlers themselves live in each package's module and read top to bottom: read the request
//! ([`read_typed`]), take the snapshot, resolve (`crate::eval::resolve`), record, render (each package's own
//! `render`). The macros only generate trait impls for generated types; no control flow passes through them.

use super::events::EventStream;
use flagpole_engine::{TypedValue, ValueType};
use prost_types::Struct;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::Services;
use super::convert::{json_to_struct, struct_to_json};
use super::events::{EventMessage, StreamDeadline, subscribe};
use super::status::grpc_status;
use crate::eval::request::selector;
use crate::eval::{EvalRequest, HeaderMapping};

/// A typed request (`ResolveBooleanRequest`, ...) of any evaluation package: they all carry a flag key and
/// a context.
pub trait TypedRequest {
    /// The value type the request asks for.
    type Value: WireValue;
    /// The flag key and the request context.
    fn into_key_and_context(self) -> (String, Option<Struct>);
}

/// Implements, for one package, [`TypedRequest`] for each `Resolve*Request` and `From<$answer<value>>` for
/// each `Resolve*Response` (value, reason, variant and metadata copied as they are). Every package names
/// these types alike, so the macro names them itself: the invoking module must have them (and `$answer`) in
/// scope, as its handler signatures do anyway. The object value is first passed through the function after
/// `object via`, where one is named.
///
/// ```text
/// typed_rpcs!(Answer);
/// typed_rpcs!(Answer, object via Option::flatten);
/// ```
macro_rules! typed_rpcs {
    ($answer:ident $(, object via $convert:path)?) => {
        $crate::protocols::grpc::typed::typed_rpcs!(
            @rpc $answer, bool, ResolveBooleanRequest, ResolveBooleanResponse
        );
        $crate::protocols::grpc::typed::typed_rpcs!(
            @rpc $answer, String, ResolveStringRequest, ResolveStringResponse
        );
        $crate::protocols::grpc::typed::typed_rpcs!(
            @rpc $answer, f64, ResolveFloatRequest, ResolveFloatResponse
        );
        $crate::protocols::grpc::typed::typed_rpcs!(
            @rpc $answer, i64, ResolveIntRequest, ResolveIntResponse
        );
        $crate::protocols::grpc::typed::typed_rpcs!(
            @rpc $answer, Option<prost_types::Struct>, ResolveObjectRequest, ResolveObjectResponse
            $(, $convert)?
        );
    };
    (@rpc $answer:ident, $value:ty, $request:ident, $response:ident $(, $convert:path)?) => {
        impl $crate::protocols::grpc::typed::TypedRequest for $request {
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
        impl $crate::protocols::grpc::events::EventMessage for $response {
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

/// Reads a typed request: its flag key, and its selector and context (with or without `-H`, per
/// `mapping`).
pub fn read_typed<Q: TypedRequest>(
    services: &Services,
    mapping: HeaderMapping,
    request: Request<Q>,
) -> Result<(String, EvalRequest), Status> {
    let (metadata, _, body) = request.into_parts();
    let (key, context) = body.into_key_and_context();
    Ok((key, read_request(services, metadata, context, mapping)?))
}

/// Reads a request's selector and context: the `Struct` is converted to JSON here, at gRPC's edge.
pub fn read_request(
    services: &Services,
    metadata: MetadataMap,
    context: Option<Struct>,
    mapping: HeaderMapping,
) -> Result<EvalRequest, Status> {
    let context = struct_to_json(context).map_err(|e| grpc_status(e.into()))?;
    services
        .evaluator()
        .read_request(&metadata.into_headers(), context, mapping)
        .map_err(|e| grpc_status(e.into()))
}

/// EventStream: subscribes with the selector from the `Flagd-Selector` header.
pub fn event_stream<M: EventMessage>(
    services: &Services,
    metadata: &MetadataMap,
    deadline: StreamDeadline,
) -> Result<Response<EventStream<M>>, Status> {
    let selector = selector(metadata.as_ref()).map_err(|e| grpc_status(e.into()))?;
    Ok(Response::new(subscribe(services, selector, deadline)))
}

/// A typed RPC's value type on the wire, with its zero value (`Default`) for v1's "no value" answers.
pub trait WireValue: Default + Sized {
    /// The value type to request from the engine.
    const TYPE: ValueType;
    /// Converts the engine's typed value (always of [`Self::TYPE`]).
    fn from_typed(value: TypedValue<'_>) -> Self;
}

impl WireValue for bool {
    const TYPE: ValueType = ValueType::Bool;
    fn from_typed(value: TypedValue<'_>) -> Self {
        matches!(value, TypedValue::Bool(true))
    }
}

impl WireValue for String {
    const TYPE: ValueType = ValueType::String;
    fn from_typed(value: TypedValue<'_>) -> Self {
        match value {
            TypedValue::String(s) => s.to_owned(),
            _ => String::new(),
        }
    }
}

impl WireValue for i64 {
    const TYPE: ValueType = ValueType::Int;
    fn from_typed(value: TypedValue<'_>) -> Self {
        match value {
            TypedValue::Int(i) => i,
            _ => 0,
        }
    }
}

impl WireValue for f64 {
    const TYPE: ValueType = ValueType::Float;
    fn from_typed(value: TypedValue<'_>) -> Self {
        match value {
            TypedValue::Float(f) => f,
            _ => 0.0,
        }
    }
}

/// An object value; the zero value is an absent Struct (Go's nil `*structpb.Struct`).
impl WireValue for Option<Struct> {
    const TYPE: ValueType = ValueType::Object;
    fn from_typed(value: TypedValue<'_>) -> Self {
        match value {
            TypedValue::Object(map) => Some(json_to_struct(map)),
            _ => None,
        }
    }
}
