//! `google.protobuf.Struct` ⇄ JSON at the edge.
//!
//! Incoming Structs come from clients: conversion is fallible (NaN and infinities have no JSON form, nesting
//! is bounded) and never panics. Outgoing values come from loaded flags and are always representable.

use flagpole_proto::json::{self, NonFinite, StructError};
use prost_types::value::Kind;
use prost_types::{Struct, Value as ProtoValue};
use serde_json::{Map, Value};

use crate::eval::metadata::{MetadataValue, ResponseMetadata};

/// The deepest nesting of Structs and lists accepted in a request context (the top-level Struct is depth 1).
/// flagd has no such limit. Each level is two protobuf messages (Value, Struct), and prost stops decoding at
/// 100 nested messages (tonic then answers INTERNAL), so 32 is the deepest limit that can answer
/// INVALID_ARGUMENT; it also keeps the engine's recursive walks shallow.
pub const MAX_STRUCT_DEPTH: usize = 32;

/// Why a request Struct could not be turned into JSON.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConvertError {
    /// A number that JSON cannot represent.
    #[error("context value at {path} is not a finite number")]
    NonFinite {
        /// Where, as a dotted path.
        path: String,
    },
    /// Nesting deeper than [`MAX_STRUCT_DEPTH`].
    #[error("context is nested deeper than {MAX_STRUCT_DEPTH} levels")]
    TooDeep,
}

/// Converts a request Struct (absent means empty) to a JSON object: a NaN or an infinity is rejected
/// with its path, nesting beyond [`MAX_STRUCT_DEPTH`] too ([`flagpole_proto::json`]).
pub fn struct_to_json(s: Option<Struct>) -> Result<Map<String, Value>, ConvertError> {
    let Some(s) = s else {
        return Ok(Map::new());
    };
    json::struct_to_json(s, MAX_STRUCT_DEPTH, NonFinite::Reject).map_err(|error| match error {
        StructError::NonFinite { path } => ConvertError::NonFinite { path },
        StructError::TooDeep => ConvertError::TooDeep,
    })
}

pub use flagpole_proto::json::json_to_struct;

/// Response metadata as a Struct (the one place gRPC builds it).
pub fn metadata_struct(metadata: ResponseMetadata<'_>) -> Struct {
    let mut s = Struct::default();
    metadata.for_each(|key, value| {
        let value = match value {
            MetadataValue::Text(text) => string_value(text.to_owned()),
            MetadataValue::Json(value) => json::json_to_value(value),
        };
        s.fields.insert(key.to_owned(), value);
    });
    s
}

fn string_value(text: String) -> ProtoValue {
    ProtoValue {
        kind: Some(Kind::StringValue(text)),
    }
}

/// A Struct of string values (the `-X` values as `sync_context` and `GetMetadata`).
pub fn strings_to_struct<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> Struct {
    Struct {
        fields: pairs
            .into_iter()
            .map(|(k, v)| (k.clone(), string_value(v.clone())))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::ListValue;
    use serde_json::json;

    fn num(n: f64) -> ProtoValue {
        ProtoValue {
            kind: Some(Kind::NumberValue(n)),
        }
    }

    fn nest(depth: usize) -> Struct {
        let mut s = Struct::default();
        for _ in 1..depth {
            let mut outer = Struct::default();
            outer.fields.insert(
                "a".into(),
                ProtoValue {
                    kind: Some(Kind::StructValue(s)),
                },
            );
            s = outer;
        }
        s
    }

    #[test]
    fn round_trips_every_kind() {
        let original = json!({"b": true, "n": 1.5, "s": "x", "z": null, "l": [1.0, "y", {"k": false}], "o": {"p": 2.0}});
        let Value::Object(map) = original.clone() else {
            unreachable!()
        };
        let back = struct_to_json(Some(json_to_struct(&map))).unwrap();
        assert_eq!(Value::Object(back), original);
    }

    #[test]
    fn non_finite_numbers_are_rejected_with_their_path() {
        let mut inner = Struct::default();
        inner.fields.insert("x".into(), num(f64::NAN));
        let mut s = Struct::default();
        s.fields.insert(
            "o".into(),
            ProtoValue {
                kind: Some(Kind::StructValue(inner)),
            },
        );
        assert_eq!(
            struct_to_json(Some(s)),
            Err(ConvertError::NonFinite { path: "o.x".into() })
        );
        let mut s = Struct::default();
        s.fields.insert("i".into(), num(f64::INFINITY));
        assert!(matches!(
            struct_to_json(Some(s)),
            Err(ConvertError::NonFinite { .. })
        ));
    }

    #[test]
    fn nesting_is_bounded() {
        assert!(struct_to_json(Some(nest(MAX_STRUCT_DEPTH))).is_ok());
        assert_eq!(
            struct_to_json(Some(nest(MAX_STRUCT_DEPTH + 1))),
            Err(ConvertError::TooDeep)
        );
    }

    #[test]
    fn unset_kind_is_null() {
        let mut s = Struct::default();
        s.fields.insert("u".into(), ProtoValue { kind: None });
        assert_eq!(struct_to_json(Some(s)).unwrap()["u"], Value::Null);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn number() -> impl Strategy<Value = f64> {
            prop_oneof![
                8 => any::<f64>(),
                1 => Just(f64::NAN),
                1 => Just(f64::INFINITY),
                1 => Just(f64::NEG_INFINITY),
            ]
        }

        fn proto_value() -> impl Strategy<Value = ProtoValue> {
            let leaf = prop_oneof![
                Just(ProtoValue { kind: None }),
                Just(ProtoValue {
                    kind: Some(Kind::NullValue(0))
                }),
                any::<i32>().prop_map(|n| ProtoValue {
                    kind: Some(Kind::NullValue(n))
                }),
                any::<bool>().prop_map(|b| ProtoValue {
                    kind: Some(Kind::BoolValue(b))
                }),
                ".{0,8}".prop_map(|s| ProtoValue {
                    kind: Some(Kind::StringValue(s))
                }),
                number().prop_map(|n| ProtoValue {
                    kind: Some(Kind::NumberValue(n))
                }),
            ];
            leaf.prop_recursive(40, 200, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(|values| ProtoValue {
                        kind: Some(Kind::ListValue(ListValue { values }))
                    }),
                    prop::collection::btree_map(".{0,4}", inner, 0..4).prop_map(|fields| {
                        ProtoValue {
                            kind: Some(Kind::StructValue(Struct { fields })),
                        }
                    }),
                ]
            })
        }

        fn has_non_finite(v: &ProtoValue) -> bool {
            match &v.kind {
                Some(Kind::NumberValue(n)) => !n.is_finite(),
                Some(Kind::ListValue(l)) => l.values.iter().any(has_non_finite),
                Some(Kind::StructValue(s)) => s.fields.values().any(has_non_finite),
                _ => false,
            }
        }

        proptest! {
            /// Any Struct a client can send converts or is rejected with a typed error, never a panic; what
            /// converts survives the way back.
            #[test]
            fn any_client_struct_converts_or_is_rejected(fields in prop::collection::btree_map(".{0,4}", proto_value(), 0..4)) {
                let input = Struct { fields };
                let non_finite = input.fields.values().any(has_non_finite);
                match struct_to_json(Some(input)) {
                    Ok(map) => {
                        prop_assert!(!non_finite);
                        let again = struct_to_json(Some(json_to_struct(&map))).unwrap();
                        prop_assert_eq!(again, map);
                    }
                    Err(ConvertError::NonFinite { .. }) => prop_assert!(non_finite),
                    Err(ConvertError::TooDeep) => {}
                }
            }
        }
    }
}
