//! JSON written the way flagd's Go code writes it: `encoding/json`'s float64 numbers (every JSON number is a
//! float64 to flagd, so an integer beyond 2^53 comes out rounded and an integral float has no fraction),
//! and, for [`write_go_json`], its sorted keys and HTML escaping.
//!
//! [`GoJson`] is a `serde` view for answers and payloads (OFREP, the sync payload's variants and metadata);
//! [`write_go_json`] is the exact text flagd derives variant names and `$evaluators` from.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value};

/// Integral floats below this magnitude are written as integers (Go switches to exponent form at 1e21).
const GO_INTEGER_LIMIT: f64 = 1e21;

/// A JSON value whose numbers are written as Go writes a `float64`: `3`, not `3.0`; an integer beyond
/// 2^53 as the float64 nearest to it (`9007199254740993` → `9007199254740992`).
#[derive(Debug, Clone, Copy)]
pub struct GoJson<'a>(pub &'a Value);

impl Serialize for GoJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < GO_INTEGER_LIMIT => {
                    // Exact: |f| < 1e21 < i128::MAX and f is integral.
                    serializer.serialize_i128(f as i128)
                }
                _ => n.serialize(serializer),
            },
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&GoJson(item))?;
                }
                seq.end()
            }
            Value::Object(fields) => GoMap(fields).serialize(serializer),
            other => other.serialize(serializer),
        }
    }
}

/// A JSON object written with [`GoJson`] values.
#[derive(Debug, Clone, Copy)]
pub struct GoMap<'a>(pub &'a Map<String, Value>);

impl Serialize for GoMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, &GoJson(value))?;
        }
        map.end()
    }
}

/// Writes `value` as Go's `encoding/json` would (sorted keys, HTML escaping, float64 formatting).
pub fn write_go_json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&go_float(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => write_go_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_string(key, out);
                out.push(':');
                write_go_json(&map[key], out);
            }
            out.push('}');
        }
    }
}

fn write_go_string(s: &str, out: &mut String) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Formats a float64 as Go's `encoding/json` does: shortest round-trip digits, plain notation unless the
/// magnitude is below 1e-6 or at least 1e21, exponent written `e+21` / `e-7`.
pub fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => s,
        }
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_float_formats_like_encoding_json() {
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(-0.25), "-0.25");
        assert_eq!(go_float(1e20), "100000000000000000000");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(1.5e-7), "1.5e-7");
        assert_eq!(go_float(1e-10), "1e-10");
        assert_eq!(go_float(0.000001), "0.000001");
    }

    #[test]
    fn numbers_are_written_like_go_float64() {
        let v = json!({"a": 3.0, "b": 2.5, "c": [1.0, -4], "d": 1e21, "e": 7, "f": 9007199254740993_u64});
        let text = serde_json::to_string(&GoJson(&v)).unwrap();
        assert_eq!(
            text,
            r#"{"a":3,"b":2.5,"c":[1,-4],"d":1e+21,"e":7,"f":9007199254740992}"#
        );
    }
}
