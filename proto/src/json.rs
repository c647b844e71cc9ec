//! `google.protobuf.Struct` ⇄ JSON: the one converter of the workspace, used by the daemon (request
//! contexts in, metadata and object values out) and by the provider (contexts out, answers in).
//!
//! JSON numbers are always finite, so JSON → Struct cannot fail. Struct → JSON can meet a NaN or an
//! infinity, which JSON cannot hold: the caller says what to do ([`NonFinite`]) — the daemon rejects a
//! client's context with the value's path, the provider reads a server's answer with such a number as
//! `null`. Nesting is bounded by the caller's `max_depth` (the top-level Struct is depth 1), and nothing here
//! panics on any input.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value as ProtoValue};
use serde_json::{Map, Number, Value};

/// What to do with a number that JSON cannot represent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonFinite {
    /// Fail with [`StructError::NonFinite`].
    Reject,
    /// Read it as `null`.
    Null,
}

/// Why a Struct could not be turned into JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StructError {
    /// A NaN or an infinity, at this dotted path (with `[i]` for list items).
    NonFinite {
        /// Where.
        path: String,
    },
    /// Nesting deeper than the caller's limit.
    TooDeep,
}

/// Converts a Struct to a JSON object, nested at most `max_depth` levels.
pub fn struct_to_json(
    s: Struct,
    max_depth: usize,
    non_finite: NonFinite,
) -> Result<Map<String, Value>, StructError> {
    let mut walk = Walk {
        max_depth,
        non_finite,
        path: String::new(),
    };
    walk.fields(s, 1)
}

struct Walk {
    max_depth: usize,
    non_finite: NonFinite,
    path: String,
}

impl Walk {
    fn fields(&mut self, s: Struct, depth: usize) -> Result<Map<String, Value>, StructError> {
        if depth > self.max_depth {
            return Err(StructError::TooDeep);
        }
        let mut out = Map::new();
        for (key, value) in s.fields {
            let len = self.path.len();
            if !self.path.is_empty() {
                self.path.push('.');
            }
            self.path.push_str(&key);
            let json = self.value(value, depth)?;
            self.path.truncate(len);
            out.insert(key, json);
        }
        Ok(out)
    }

    fn value(&mut self, value: ProtoValue, depth: usize) -> Result<Value, StructError> {
        Ok(match value.kind {
            // Go's structpb maps an unset kind to nil, as flagd sees it.
            None | Some(Kind::NullValue(_)) => Value::Null,
            Some(Kind::BoolValue(b)) => Value::Bool(b),
            Some(Kind::StringValue(s)) => Value::String(s),
            Some(Kind::NumberValue(n)) => match (Number::from_f64(n), self.non_finite) {
                (Some(number), _) => Value::Number(number),
                (None, NonFinite::Null) => Value::Null,
                (None, NonFinite::Reject) => {
                    return Err(StructError::NonFinite {
                        path: self.path.clone(),
                    });
                }
            },
            Some(Kind::StructValue(s)) => Value::Object(self.fields(s, depth + 1)?),
            Some(Kind::ListValue(list)) => {
                if depth + 1 > self.max_depth {
                    return Err(StructError::TooDeep);
                }
                let mut items = Vec::with_capacity(list.values.len());
                for (i, item) in list.values.into_iter().enumerate() {
                    let len = self.path.len();
                    self.path.push_str(&format!("[{i}]"));
                    items.push(self.value(item, depth + 1)?);
                    self.path.truncate(len);
                }
                Value::Array(items)
            }
        })
    }
}

/// Converts a JSON object to a Struct.
pub fn json_to_struct(map: &Map<String, Value>) -> Struct {
    Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

/// Converts a JSON value to a protobuf Value (every JSON number has an `f64` form).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn num(n: f64) -> ProtoValue {
        ProtoValue {
            kind: Some(Kind::NumberValue(n)),
        }
    }

    #[test]
    fn non_finite_numbers_follow_the_callers_choice() {
        let s = Struct {
            fields: [("a".to_owned(), num(f64::NAN)), ("b".to_owned(), num(1.5))]
                .into_iter()
                .collect(),
        };
        assert_eq!(
            struct_to_json(s.clone(), 8, NonFinite::Reject),
            Err(StructError::NonFinite { path: "a".into() })
        );
        let lossy = struct_to_json(s, 8, NonFinite::Null).expect("lossy");
        assert_eq!(lossy.get("a"), Some(&Value::Null));
        assert_eq!(lossy.get("b"), Some(&serde_json::json!(1.5)));
    }

    #[test]
    fn json_round_trips() {
        let json = serde_json::json!({"a": [1.5, "x", null, {"b": true}], "c": {"d": 2.5}});
        let Value::Object(map) = json else {
            unreachable!("an object literal")
        };
        let back = struct_to_json(json_to_struct(&map), 8, NonFinite::Reject).expect("finite");
        assert_eq!(back, map);
    }
}
