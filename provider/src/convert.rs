//! Conversions at the provider's edges: OpenFeature evaluation contexts to JSON, JSON and protobuf `Struct`s to
//! OpenFeature values and flag metadata, and JSON to protobuf `Struct`s.
//!
//! Nested objects and arrays keep their shape in every direction. Two things cannot round-trip because the
//! target type has no way to say them: a JSON `null` inside an object value (OpenFeature's `Value` has no null;
//! the field is left out) and a context `Struct` field of a type this crate does not know (left out, with a
//! warning). Protobuf numbers are doubles: an object value from the RPC resolver carries `Float`s, while the
//! local resolvers keep JSON integers as `Int`.

use std::collections::HashMap;

use flagpole_proto::json::NonFinite;
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, FlagMetadata, FlagMetadataValue, StructValue,
    Value,
};
use prost_types::value::Kind;
use serde_json::{Map, Number, Value as Json};

/// The context key that carries the OpenFeature targeting key.
pub const TARGETING_KEY: &str = "targetingKey";

/// An OpenFeature evaluation context as the JSON object flagd evaluates against.
pub fn context_to_json(context: &EvaluationContext) -> Map<String, Json> {
    let mut out = Map::new();
    for (key, value) in &context.custom_fields {
        match field_to_json(value) {
            Some(v) => {
                out.insert(key.clone(), v);
            }
            None => tracing::warn!(key, "context field of an unsupported struct type left out"),
        }
    }
    if let Some(key) = &context.targeting_key {
        out.insert(TARGETING_KEY.to_owned(), Json::String(key.clone()));
    }
    out
}

fn field_to_json(value: &EvaluationContextFieldValue) -> Option<Json> {
    Some(match value {
        EvaluationContextFieldValue::Bool(b) => Json::Bool(*b),
        EvaluationContextFieldValue::Int(i) => Json::from(*i),
        EvaluationContextFieldValue::Float(f) => {
            Number::from_f64(*f).map_or(Json::Null, Json::Number)
        }
        EvaluationContextFieldValue::String(s) => Json::String(s.clone()),
        EvaluationContextFieldValue::DateTime(t) => Json::String(
            t.format(&time_format())
                .unwrap_or_else(|_| t.unix_timestamp().to_string()),
        ),
        EvaluationContextFieldValue::Struct(any) => {
            if let Some(v) = any.downcast_ref::<Json>() {
                v.clone()
            } else if let Some(m) = any.downcast_ref::<Map<String, Json>>() {
                Json::Object(m.clone())
            } else if let Some(s) = any.downcast_ref::<StructValue>() {
                struct_value_to_json(s)
            } else if let Some(v) = any.downcast_ref::<Value>() {
                value_to_json(v)
            } else {
                return None;
            }
        }
    })
}

fn time_format() -> time::format_description::well_known::Rfc3339 {
    time::format_description::well_known::Rfc3339
}

/// An OpenFeature value as JSON.
pub fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.clone()),
        Value::Array(items) => Json::Array(items.iter().map(value_to_json).collect()),
        Value::Struct(s) => struct_value_to_json(s),
    }
}

/// An OpenFeature struct as a JSON object.
pub fn struct_value_to_json(value: &StructValue) -> Json {
    Json::Object(
        value
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

/// A JSON value as an OpenFeature value; `None` for `null`.
pub fn json_to_value(value: &Json) -> Option<Value> {
    Some(match value {
        Json::Null => return None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Array(items.iter().filter_map(json_to_value).collect()),
        Json::Object(map) => Value::Struct(json_object_to_struct(map)),
    })
}

/// A JSON object as an OpenFeature struct (null fields left out).
pub fn json_object_to_struct(map: &Map<String, Json>) -> StructValue {
    StructValue {
        fields: map
            .iter()
            .filter_map(|(k, v)| json_to_value(v).map(|v| (k.clone(), v)))
            .collect::<HashMap<_, _>>(),
    }
}

/// Flag metadata from JSON: booleans, strings and numbers (integers stay `Int`); other values are left out.
pub fn json_to_metadata(map: &Map<String, Json>) -> FlagMetadata {
    let mut out = FlagMetadata::default();
    for (key, value) in map {
        let v = match value {
            Json::Bool(b) => FlagMetadataValue::Bool(*b),
            Json::String(s) => FlagMetadataValue::String(s.clone()),
            Json::Number(n) => match n.as_i64() {
                Some(i) => FlagMetadataValue::Int(i),
                None => FlagMetadataValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            _ => continue,
        };
        out.values.insert(key.clone(), v);
    }
    out
}

/// A protobuf `Struct` from a server as a JSON object: a number JSON cannot hold (NaN, an infinity) reads as
/// `null` ([`flagpole_proto::json`]; no depth limit beyond what protobuf decoding already bounds).
pub fn struct_to_json(value: &prost_types::Struct) -> Map<String, Json> {
    flagpole_proto::json::struct_to_json(value.clone(), usize::MAX, NonFinite::Null)
        .unwrap_or_default()
}

/// A protobuf `Struct` as an OpenFeature struct (numbers are `Float`s: protobuf has only doubles).
pub fn struct_to_struct_value(value: &prost_types::Struct) -> StructValue {
    json_object_to_struct(&struct_to_json(value))
}

/// Flag metadata from a protobuf `Struct`: a number with an integral value becomes `Int`.
pub fn struct_to_metadata(value: &prost_types::Struct) -> FlagMetadata {
    let mut out = FlagMetadata::default();
    for (key, value) in &value.fields {
        let v = match &value.kind {
            Some(Kind::BoolValue(b)) => FlagMetadataValue::Bool(*b),
            Some(Kind::StringValue(s)) => FlagMetadataValue::String(s.clone()),
            Some(Kind::NumberValue(n))
                if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 =>
            {
                FlagMetadataValue::Int(*n as i64)
            }
            Some(Kind::NumberValue(n)) => FlagMetadataValue::Float(*n),
            _ => continue,
        };
        out.values.insert(key.clone(), v);
    }
    out
}

pub use flagpole_proto::json::json_to_struct;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_objects_survive_json_struct_value_and_protobuf() {
        let original = json!({"a": {"b": [1, 2.5, "x", true, {"c": {"d": false}}]}, "e": "f"});
        let Json::Object(map) = &original else {
            unreachable!()
        };
        let through_proto = Json::Object(struct_to_json(&json_to_struct(map)));
        assert_eq!(
            through_proto,
            json!({"a": {"b": [1.0, 2.5, "x", true, {"c": {"d": false}}]}, "e": "f"})
        );
        let through_of = struct_value_to_json(&json_object_to_struct(map));
        assert_eq!(through_of, original);
    }

    #[test]
    fn context_carries_targeting_key_and_struct_fields() {
        let ctx = EvaluationContext::default()
            .with_targeting_key("user-1")
            .with_custom_field("age", 42)
            .with_custom_field(
                "nested",
                EvaluationContextFieldValue::new_struct(json!({"inner": "v"})),
            )
            .with_custom_field(
                "of",
                EvaluationContextFieldValue::new_struct(
                    StructValue::default().with_field("k", 1.5),
                ),
            );
        let out = context_to_json(&ctx);
        assert_eq!(
            Json::Object(out),
            json!({"targetingKey": "user-1", "age": 42, "nested": {"inner": "v"}, "of": {"k": 1.5}})
        );
    }

    #[test]
    fn metadata_keeps_integers_and_drops_objects() {
        let Json::Object(map) = json!({"i": 2, "f": 1.5, "s": "x", "b": true, "o": {}}) else {
            unreachable!()
        };
        let md = json_to_metadata(&map);
        assert_eq!(md.values.get("i"), Some(&FlagMetadataValue::Int(2)));
        assert_eq!(md.values.get("f"), Some(&FlagMetadataValue::Float(1.5)));
        assert_eq!(md.values.len(), 4);
    }
}
