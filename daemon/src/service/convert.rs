//! `google.protobuf.Struct` ⇄ JSON at the edge.
//!
//! Incoming Structs come from clients: conversion is fallible (NaN and infinities have no JSON form, nesting
//! is bounded) and never panics. Outgoing values come from loaded flags and are always representable.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value as ProtoValue};
use serde_json::{Map, Number, Value};

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

/// Converts a request Struct (absent means empty) to a JSON object.
pub fn struct_to_json(s: Option<Struct>) -> Result<Map<String, Value>, ConvertError> {
    match s {
        None => Ok(Map::new()),
        Some(s) => fields_to_json(s, 1, &mut String::new()),
    }
}

fn fields_to_json(
    s: Struct,
    depth: usize,
    path: &mut String,
) -> Result<Map<String, Value>, ConvertError> {
    if depth > MAX_STRUCT_DEPTH {
        return Err(ConvertError::TooDeep);
    }
    let mut out = Map::new();
    for (key, value) in s.fields {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(&key);
        let json = value_to_json(value, depth, path)?;
        path.truncate(len);
        out.insert(key, json);
    }
    Ok(out)
}

fn value_to_json(
    value: ProtoValue,
    depth: usize,
    path: &mut String,
) -> Result<Value, ConvertError> {
    Ok(match value.kind {
        // Go's structpb maps an unset kind to nil, as flagd sees it.
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::NumberValue(n)) => Value::Number(
            Number::from_f64(n).ok_or_else(|| ConvertError::NonFinite { path: path.clone() })?,
        ),
        Some(Kind::StructValue(s)) => Value::Object(fields_to_json(s, depth + 1, path)?),
        Some(Kind::ListValue(list)) => {
            if depth + 1 > MAX_STRUCT_DEPTH {
                return Err(ConvertError::TooDeep);
            }
            let mut items = Vec::with_capacity(list.values.len());
            for (i, item) in list.values.into_iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                items.push(value_to_json(item, depth + 1, path)?);
                path.truncate(len);
            }
            Value::Array(items)
        }
    })
}

/// Converts a JSON object (flag metadata, an object variant) to a Struct.
pub fn json_to_struct(map: &Map<String, Value>) -> Struct {
    Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

/// Converts a JSON value to a protobuf Value.
pub fn json_to_value(value: &Value) -> ProtoValue {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(json_to_struct(map)),
    };
    ProtoValue { kind: Some(kind) }
}

/// A Struct of string values (the `-X` values as `sync_context` and `GetMetadata`).
pub fn strings_to_struct<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> Struct {
    Struct {
        fields: pairs
            .into_iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    ProtoValue {
                        kind: Some(Kind::StringValue(v.clone())),
                    },
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
