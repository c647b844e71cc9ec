//! ResolveAll written straight to protobuf bytes (v1 and schema.v1), and the route that serves them.
//!
//! Built as prost messages, a ResolveAll answer of a hundred flags allocated a key, a reason and a variant
//! string per flag, hashed every key into a map, measured each entry twice while encoding and then freed it
//! all: more CPU than resolving the flags (BENCHMARKS.md, "ResolveAll written as bytes"). Here each
//! resolved flag is written once, in key order, from what the snapshot already holds; only object values
//! and non-empty metadata go through a `Struct`. The bytes are what prost writes for the same message
//! (fields in number order, proto3's empty strings left out, a map entry's empty key left out), so every
//! client decodes the same answer; only the order of map entries differs, which protobuf leaves open.
//!
//! What it owns: the wire layout of `ResolveAllResponse` and `AnyFlag` in both packages ([`Shape`]), and
//! [`EncodedResolveAll`], which answers the ResolveAll path of a generated server with
//! [`EncodedCodec`] and passes every other path to that server. What it does not do: decide which flags
//! are included or what each one answers (`v1_answers`).

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::BufMut;
use flagpole_proto::codec::{Encoded, EncodedCodec};
use futures::future::{BoxFuture, Either};
use prost::encoding::{WireType, encoded_len_varint, key_len};
use prost_types::Struct;
use tonic::body::Body;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::Services;
use super::convert::{json_to_struct, metadata_struct};
use super::v1_answers::{BulkEntry, BulkValue, Rules, resolve_all};
use crate::eval::metadata::ResponseMetadata;
use flagpole_engine::Selector;

/// How a package lays out its ResolveAll answer.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The request path the route answers.
    pub path: &'static str,
    /// The package's rules for reading the request.
    pub rules: Rules,
    /// Whether each `AnyFlag` carries `metadata` (field 7; v1) and the response the selector reflection
    /// (field 2; v1). schema.v1 has neither field.
    pub metadata: bool,
}

/// Bytes a typical entry takes (a key of a dozen characters, a short reason and variant, a boolean): the
/// first guess of the answer's size, so that a hundred flags fit without growing the buffer.
const ENTRY_BYTES_GUESS: usize = 48;

/// Writes a ResolveAll answer: `entries` (about `count` of them) as the `flags` map (field 1), then, when
/// `shape` has metadata, the selector reflection (field 2).
pub fn encode_response<'s>(
    shape: Shape,
    selector: &Selector,
    count: usize,
    entries: impl Iterator<Item = BulkEntry<'s>>,
) -> Encoded {
    let mut out = Vec::with_capacity(16 + ENTRY_BYTES_GUESS * count);
    for entry in entries {
        write_entry(&mut out, &entry, shape.metadata);
    }
    if shape.metadata {
        let reflection = metadata_struct(ResponseMetadata::reflection(selector));
        prost::encoding::message::encode(2, &reflection, &mut out);
    }
    Encoded(out)
}

/// One `flags` map entry: `{1: key, 2: AnyFlag}`, the key left out when empty (as prost leaves out a map
/// entry's default key).
fn write_entry(out: &mut Vec<u8>, entry: &BulkEntry<'_>, with_metadata: bool) {
    let object = match entry.value {
        BulkValue::Object(map) => Some(map.map(json_to_struct).unwrap_or_default()),
        _ => None,
    };
    // Most flags have no metadata and most requests no selector: an empty Struct, written without one.
    let metadata =
        (with_metadata && !entry.metadata.is_empty()).then(|| metadata_struct(entry.metadata));
    let metadata_len = match &metadata {
        Some(m) => prost::encoding::message::encoded_len(7, m),
        None if with_metadata => key_len(7) + 1,
        None => 0,
    };
    let value_len = match entry.value {
        BulkValue::Bool(_) => key_len(3) + 1,
        BulkValue::String(s) => delimited_len(4, s.len()),
        BulkValue::Double(_) => key_len(5) + 8,
        BulkValue::Object(_) => object
            .as_ref()
            .map_or(0, |s| prost::encoding::message::encoded_len(6, s)),
    };
    let flag_len =
        string_len(1, entry.reason) + string_len(2, entry.variant) + value_len + metadata_len;
    // An AnyFlag always has a reason, so it is never the default value prost would leave out.
    let entry_len = string_len(1, entry.key) + delimited_len(2, flag_len);

    encode_key(1, WireType::LengthDelimited, out);
    encode_varint(entry_len as u64, out);
    write_string(out, 1, entry.key);
    encode_key(2, WireType::LengthDelimited, out);
    encode_varint(flag_len as u64, out);
    write_string(out, 1, entry.reason);
    write_string(out, 2, entry.variant);
    // A oneof member is written whenever it is set, zero or not.
    match entry.value {
        BulkValue::Bool(b) => {
            encode_key(3, WireType::Varint, out);
            out.put_u8(u8::from(b));
        }
        BulkValue::String(s) => {
            encode_key(4, WireType::LengthDelimited, out);
            encode_varint(s.len() as u64, out);
            out.put_slice(s.as_bytes());
        }
        BulkValue::Double(f) => {
            encode_key(5, WireType::SixtyFourBit, out);
            out.put_f64_le(f);
        }
        BulkValue::Object(_) => {
            if let Some(s) = &object {
                prost::encoding::message::encode(6, s, out);
            }
        }
    }
    match &metadata {
        Some(m) => prost::encoding::message::encode(7, m, out),
        None if with_metadata => {
            encode_key(7, WireType::LengthDelimited, out);
            out.put_u8(0);
        }
        None => {}
    }
}

/// Writes `value` as a varint: prost's, with the one-byte case (almost every length here) first.
#[inline]
fn encode_varint(value: u64, out: &mut Vec<u8>) {
    if value < 0x80 {
        out.push(value as u8);
    } else {
        prost::encoding::encode_varint(value, out);
    }
}

/// Writes a field's key (`tag` and wire type; one byte for the tags here).
#[inline]
fn encode_key(tag: u32, wire_type: WireType, out: &mut Vec<u8>) {
    encode_varint(u64::from(tag << 3 | wire_type as u32), out);
}

/// Length of a length-delimited field of `len` bytes.
fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// Length of a proto3 string field: nothing when empty.
fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        delimited_len(tag, s.len())
    }
}

/// Writes a proto3 string field, left out when empty.
fn write_string(out: &mut Vec<u8>, tag: u32, s: &str) {
    if !s.is_empty() {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(s.len() as u64, out);
        out.put_slice(s.as_bytes());
    }
}

/// The message `encoded` holds, decoded (for callers of a service method itself, not the wire).
pub fn decoded<M: prost::Message + Default>(encoded: Encoded) -> Result<M, Status> {
    M::decode(encoded.0.as_slice()).map_err(|e| Status::internal(e.to_string()))
}

/// A package's `ResolveAllRequest`: a context and nothing else.
pub trait BulkRequest: prost::Message + Default + Send + 'static {
    /// The request context.
    fn into_context(self) -> Option<Struct>;
}

/// A generated evaluation server whose ResolveAll path is answered with `encode_response`'s bytes;
/// every other path goes to the server. Request decoding (size limit included) is the generated server's:
/// the same codec settings and `--max-request-body`.
#[derive(Debug, Clone)]
pub struct EncodedResolveAll<S, Q> {
    inner: S,
    handler: Handler<Q>,
}

impl<S, Q> EncodedResolveAll<S, Q> {
    /// `inner` with its ResolveAll (at `shape.path`) answered from `services`.
    pub fn new(inner: S, services: Services, shape: Shape) -> Self {
        EncodedResolveAll {
            inner,
            handler: Handler {
                services,
                shape,
                _request: std::marker::PhantomData,
            },
        }
    }
}

impl<S: NamedService, Q> NamedService for EncodedResolveAll<S, Q> {
    const NAME: &'static str = S::NAME;
}

type HttpResponse = http::Response<Body>;

impl<S, Q> tower::Service<http::Request<Body>> for EncodedResolveAll<S, Q>
where
    S: tower::Service<http::Request<Body>, Response = HttpResponse, Error = Infallible>,
    Q: BulkRequest,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<HttpResponse, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != self.handler.shape.path {
            return Either::Left(self.inner.call(request));
        }
        let handler = self.handler.clone();
        let limit = handler.services.config().max_request_body;
        Either::Right(Box::pin(async move {
            let mut grpc = Grpc::new(EncodedCodec::<Q>::default())
                .apply_max_message_size_config(Some(limit), None);
            Ok(grpc.unary(handler, request).await)
        }))
    }
}

/// Answers one ResolveAll request.
#[derive(Debug)]
struct Handler<Q> {
    services: Services,
    shape: Shape,
    _request: std::marker::PhantomData<fn(Q)>,
}

impl<Q> Clone for Handler<Q> {
    fn clone(&self) -> Self {
        Handler {
            services: self.services.clone(),
            shape: self.shape,
            _request: std::marker::PhantomData,
        }
    }
}

impl<Q: BulkRequest> UnaryService<Q> for Handler<Q> {
    type Response = Encoded;
    type Future = std::future::Ready<Result<Response<Encoded>, Status>>;

    fn call(&mut self, request: Request<Q>) -> Self::Future {
        let (metadata, _, body) = request.into_parts();
        let answer = resolve_all(&self.services, self.shape, metadata, body.into_context());
        std::future::ready(answer.map(Response::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    // The reference: the same answer built as prost messages and encoded by prost.

    fn reference_flag(entry: &BulkEntry<'_>) -> flagpole_proto::evaluation_v1::AnyFlag {
        use flagpole_proto::evaluation_v1::any_flag::Value;
        flagpole_proto::evaluation_v1::AnyFlag {
            reason: entry.reason.to_owned(),
            variant: entry.variant.to_owned(),
            value: Some(match entry.value {
                BulkValue::Bool(b) => Value::BoolValue(b),
                BulkValue::String(s) => Value::StringValue(s.to_owned()),
                BulkValue::Double(f) => Value::DoubleValue(f),
                BulkValue::Object(map) => {
                    Value::ObjectValue(map.map(json_to_struct).unwrap_or_default())
                }
            }),
            metadata: Some(metadata_struct(entry.metadata)),
        }
    }

    fn reference_v1(
        selector: &Selector,
        entries: &[BulkEntry<'_>],
    ) -> flagpole_proto::evaluation_v1::ResolveAllResponse {
        flagpole_proto::evaluation_v1::ResolveAllResponse {
            flags: entries
                .iter()
                .map(|e| (e.key.to_owned(), reference_flag(e)))
                .collect(),
            metadata: Some(metadata_struct(ResponseMetadata::reflection(selector))),
        }
    }

    fn reference_schema_v1(
        entries: &[BulkEntry<'_>],
    ) -> flagpole_proto::schema_v1::ResolveAllResponse {
        use flagpole_proto::schema_v1::any_flag::Value;
        flagpole_proto::schema_v1::ResolveAllResponse {
            flags: entries
                .iter()
                .map(|e| {
                    let v1 = reference_flag(e);
                    let value = v1.value.map(|v| match v {
                        flagpole_proto::evaluation_v1::any_flag::Value::BoolValue(b) => {
                            Value::BoolValue(b)
                        }
                        flagpole_proto::evaluation_v1::any_flag::Value::StringValue(s) => {
                            Value::StringValue(s)
                        }
                        flagpole_proto::evaluation_v1::any_flag::Value::DoubleValue(f) => {
                            Value::DoubleValue(f)
                        }
                        flagpole_proto::evaluation_v1::any_flag::Value::ObjectValue(o) => {
                            Value::ObjectValue(o)
                        }
                    });
                    let flag = flagpole_proto::schema_v1::AnyFlag {
                        reason: v1.reason,
                        variant: v1.variant,
                        value,
                    };
                    (e.key.to_owned(), flag)
                })
                .collect(),
        }
    }

    fn shape(metadata: bool) -> Shape {
        Shape {
            metadata,
            ..super::super::evaluation_v1::SHAPE
        }
    }

    fn metadata_doc() -> flagpole_engine::Metadata {
        serde_json::from_value(serde_json::json!({"team": "checkout", "weight": 2.5, "on": true}))
            .unwrap()
    }

    #[test]
    fn each_kind_of_entry_is_written_as_prost_writes_it() {
        let object = serde_json::json!({"a": [1, "x", null, {"b": false}], "c": 1.5});
        let object = object.as_object().unwrap();
        let flag_metadata = metadata_doc();
        let empty = flagpole_engine::Metadata::default();
        // Lengths of two varint bytes.
        let long_key = "k".repeat(200);
        let long_variant = "v".repeat(130);
        let selectors = [
            Selector::All,
            Selector::FlagSetId("set-a".into()),
            Selector::Source("file:/x.json".into()),
        ];
        for selector in &selectors {
            let metadata = [
                ResponseMetadata::of_flag(selector, &empty),
                ResponseMetadata::of_flag(selector, &flag_metadata),
            ];
            let values = [
                BulkValue::Bool(true),
                BulkValue::Bool(false),
                BulkValue::String("beta"),
                BulkValue::String(""),
                BulkValue::Double(0.0),
                BulkValue::Double(-12.75),
                BulkValue::Object(Some(object)),
                BulkValue::Object(None),
            ];
            for value in values {
                for (key, reason, variant) in [
                    ("flag-1", "STATIC", "on"),
                    ("", "DISABLED", ""),
                    (long_key.as_str(), "ERROR", long_variant.as_str()),
                ] {
                    for metadata in metadata {
                        let entry = BulkEntry {
                            key,
                            reason,
                            variant,
                            value,
                            metadata,
                        };
                        // One entry: prost's bytes are deterministic, so they must be the same bytes.
                        let v1 = encode_response(shape(true), selector, 1, [entry].into_iter());
                        assert_eq!(
                            v1.0,
                            reference_v1(selector, &[entry]).encode_to_vec(),
                            "v1 {entry:?}"
                        );
                        let schema =
                            encode_response(shape(false), selector, 1, [entry].into_iter());
                        assert_eq!(
                            schema.0,
                            reference_schema_v1(&[entry]).encode_to_vec(),
                            "schema.v1 {entry:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn many_entries_decode_to_the_same_map() {
        let keys: Vec<String> = (0..300).map(|i| format!("flag-{i}")).collect();
        let entries: Vec<BulkEntry<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| BulkEntry {
                key,
                reason: if i % 3 == 0 {
                    "TARGETING_MATCH"
                } else {
                    "STATIC"
                },
                variant: if i % 2 == 0 { "on" } else { "off" },
                value: BulkValue::Bool(i % 2 == 0),
                metadata: ResponseMetadata::reflection(&Selector::All),
            })
            .collect();
        let bytes = encode_response(shape(true), &Selector::All, 0, entries.iter().copied());
        let decoded =
            flagpole_proto::evaluation_v1::ResolveAllResponse::decode(bytes.0.as_slice()).unwrap();
        assert_eq!(decoded, reference_v1(&Selector::All, &entries));
        assert_eq!(decoded.flags.len(), 300);
        // No flags: just the reflection (v1), or nothing at all (schema.v1).
        let none = encode_response(shape(false), &Selector::All, 0, std::iter::empty());
        assert!(none.0.is_empty());
        let reflected = Selector::FlagSetId("s".into());
        let only = encode_response(shape(true), &reflected, 0, std::iter::empty());
        assert_eq!(only.0, reference_v1(&reflected, &[]).encode_to_vec());
    }
}
