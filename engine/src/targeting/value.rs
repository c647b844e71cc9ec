//! The runtime value model of the evaluator: Go's `any` as `diegoholiveira/jsonlogic` sees it after
//! `encoding/json` decoding (nil, bool, float64, string, []any, map[string]any, plus the rare Go `int`),
//! borrowing from the rule and the context wherever possible, and the Go conversions the operators use
//! (`typing.ToNumber`, `javascript.ToNumber`, `typing.ToString`, `typing.IsTrue`, `strconv.ParseFloat`,
//! `strconv.FormatFloat`).
//!
//! It deliberately holds non-finite floats (Go computes with them; only the final JSON encoding fails).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

use super::TargetingError;

/// A Go value during evaluation.
#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    /// Go `nil`.
    Null,
    /// Go `bool`.
    Bool(bool),
    /// Go `float64` (may be NaN or infinite).
    Num(f64),
    /// Go `int`: only `{"-": []}` and `{"/": []}` produce one; `===` and `in` tell it from a float.
    Int(i64),
    /// Go `string`.
    Str(Cow<'a, str>),
    /// Any JSON value borrowed from the rule or the context.
    Json(&'a Value),
    /// A computed `[]any`.
    Arr(Vec<Val<'a>>),
    /// A computed `map[string]any`.
    Obj(BTreeMap<String, Val<'a>>),
}

/// A uniform view of a [`Val`], whether borrowed JSON or computed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind<'v, 'a> {
    Null,
    Bool(bool),
    Num(f64),
    Int(i64),
    Str(&'v str),
    Arr(Arr<'v, 'a>),
    Obj(Obj<'v, 'a>),
}

/// An array view.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arr<'v, 'a> {
    Json(&'a [Value]),
    Own(&'v [Val<'a>]),
}

/// An object view.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Obj<'v, 'a> {
    Json(&'a Map<String, Value>),
    Own(&'v BTreeMap<String, Val<'a>>),
}

#[inline]
pub(crate) fn json_kind(v: &Value) -> Kind<'_, '_> {
    match v {
        Value::Null => Kind::Null,
        Value::Bool(b) => Kind::Bool(*b),
        Value::Number(n) => Kind::Num(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::Str(s),
        Value::Array(a) => Kind::Arr(Arr::Json(a)),
        Value::Object(m) => Kind::Obj(Obj::Json(m)),
    }
}

impl<'v, 'a: 'v> Arr<'v, 'a> {
    #[inline]
    pub(crate) fn len(self) -> usize {
        match self {
            Arr::Json(a) => a.len(),
            Arr::Own(a) => a.len(),
        }
    }

    /// The element as an owned-or-borrowed value (borrowed JSON stays borrowed).
    pub(crate) fn get(self, i: usize) -> Val<'a> {
        match self {
            Arr::Json(a) => a.get(i).map_or(Val::Null, Val::Json),
            Arr::Own(a) => a.get(i).cloned().unwrap_or(Val::Null),
        }
    }

    /// The element's kind, without cloning.
    #[inline]
    pub(crate) fn kind_at(self, i: usize) -> Kind<'v, 'a> {
        match self {
            Arr::Json(a) => a.get(i).map_or(Kind::Null, json_kind),
            Arr::Own(a) => a.get(i).map_or(Kind::Null, Val::kind),
        }
    }
}

impl<'v, 'a: 'v> Obj<'v, 'a> {
    #[inline]
    pub(crate) fn len(self) -> usize {
        match self {
            Obj::Json(m) => m.len(),
            Obj::Own(m) => m.len(),
        }
    }

    /// `m[key]`; `None` when absent.
    pub(crate) fn get(self, key: &str) -> Option<Val<'a>> {
        match self {
            Obj::Json(m) => m.get(key).map(Val::Json),
            Obj::Own(m) => m.get(key).cloned(),
        }
    }
}

impl<'a> Val<'a> {
    #[inline]
    pub(crate) fn kind(&self) -> Kind<'_, 'a> {
        match self {
            Val::Null => Kind::Null,
            Val::Bool(b) => Kind::Bool(*b),
            Val::Num(n) => Kind::Num(*n),
            Val::Int(i) => Kind::Int(*i),
            Val::Str(s) => Kind::Str(s),
            Val::Json(v) => json_kind(v),
            Val::Arr(a) => Kind::Arr(Arr::Own(a)),
            Val::Obj(m) => Kind::Obj(Obj::Own(m)),
        }
    }

    #[inline]
    pub(crate) fn is_nil(&self) -> bool {
        matches!(self.kind(), Kind::Null)
    }

    /// The value as JSON. Go's encoder rejects NaN and infinities; so does this.
    pub(crate) fn to_value(&self) -> Result<Value, TargetingError> {
        Ok(match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(*b),
            Val::Num(n) => number(*n)?,
            Val::Int(i) => Value::from(*i),
            Val::Str(s) => Value::String(s.to_string()),
            Val::Json(v) => (*v).clone(),
            Val::Arr(a) => Value::Array(a.iter().map(Val::to_value).collect::<Result<_, _>>()?),
            Val::Obj(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    out.insert(k.clone(), v.to_value()?);
                }
                Value::Object(out)
            }
        })
    }

    /// The final result: borrowed JSON stays borrowed.
    pub(crate) fn into_cow(self) -> Result<Cow<'a, Value>, TargetingError> {
        match self {
            Val::Json(v) => Ok(Cow::Borrowed(v)),
            other => other.to_value().map(Cow::Owned),
        }
    }

    /// Detaches the value from everything it borrows.
    pub(crate) fn into_static(self) -> Val<'static> {
        match self {
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(b),
            Val::Num(n) => Val::Num(n),
            Val::Int(i) => Val::Int(i),
            Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
            Val::Json(v) => json_to_static(v),
            Val::Arr(a) => Val::Arr(a.into_iter().map(Val::into_static).collect()),
            Val::Obj(m) => Val::Obj(m.into_iter().map(|(k, v)| (k, v.into_static())).collect()),
        }
    }
}

fn json_to_static(v: &Value) -> Val<'static> {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => Val::Num(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Val::Str(Cow::Owned(s.clone())),
        Value::Array(a) => Val::Arr(a.iter().map(json_to_static).collect()),
        Value::Object(m) => Val::Obj(
            m.iter()
                .map(|(k, v)| (k.clone(), json_to_static(v)))
                .collect(),
        ),
    }
}

/// A float64 as JSON: integral values within ±2^53 become JSON integers (same text under Go's encoder).
pub(crate) fn number(n: f64) -> Result<Value, TargetingError> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() <= EXACT && !(n == 0.0 && n.is_sign_negative()) {
        return Ok(Value::from(n as i64));
    }
    Number::from_f64(n)
        .map(Value::Number)
        .ok_or_else(|| TargetingError(format!("json: unsupported value: {}", format_f(n))))
}

/// `typing.IsTrue`: false, 0, "", empty array/object and nil are falsy; NaN is truthy (Go `!= 0`).
#[inline]
pub(crate) fn is_true(k: Kind<'_, '_>) -> bool {
    match k {
        Kind::Null => false,
        Kind::Bool(b) => b,
        Kind::Num(n) => n != 0.0,
        Kind::Int(i) => i != 0,
        Kind::Str(s) => !s.is_empty(),
        Kind::Arr(a) => a.len() > 0,
        Kind::Obj(m) => m.len() > 0,
    }
}

/// Go's name for a value's dynamic type, for error messages.
pub(crate) fn type_name(k: Kind<'_, '_>) -> &'static str {
    match k {
        Kind::Null => "nil",
        Kind::Bool(_) => "bool",
        Kind::Num(_) => "float64",
        Kind::Int(_) => "int",
        Kind::Str(_) => "string",
        Kind::Arr(_) => "[]interface {}",
        Kind::Obj(_) => "map[string]interface {}",
    }
}

pub(crate) fn conversion_panic(k: Kind<'_, '_>, want: &str) -> TargetingError {
    TargetingError(format!(
        "interface conversion: interface {{}} is {}, not {want}",
        type_name(k)
    ))
}

/// `typing.ToNumber`: strings parse (unparsable → 0), numbers convert, anything else panics.
pub(crate) fn to_number(k: Kind<'_, '_>) -> Result<f64, TargetingError> {
    match k {
        Kind::Str(s) => Ok(parse_float(s).unwrap_or(0.0)),
        Kind::Num(n) => Ok(n),
        Kind::Int(i) => Ok(i as f64),
        other => Err(conversion_panic(other, "float64")),
    }
}

/// `javascript.ToNumber`: nil → 0, bools → 0/1, blank strings → 0, unparsable strings, arrays and objects
/// → NaN.
pub(crate) fn js_number(k: Kind<'_, '_>) -> f64 {
    match k {
        Kind::Null => 0.0,
        Kind::Bool(b) => f64::from(u8::from(b)),
        Kind::Num(n) => n,
        Kind::Int(i) => i as f64,
        Kind::Str(s) if s.trim().is_empty() => 0.0,
        Kind::Str(s) => parse_float(s).unwrap_or(f64::NAN),
        Kind::Arr(_) | Kind::Obj(_) => f64::NAN,
    }
}

/// `typing.ToString`: numbers format with `strconv.FormatFloat(f, 'f', -1, 64)`, nil is "", strings are
/// themselves, anything else panics.
pub(crate) fn to_str<'v>(k: Kind<'v, '_>) -> Result<Cow<'v, str>, TargetingError> {
    match k {
        Kind::Str(s) => Ok(Cow::Borrowed(s)),
        Kind::Num(n) => Ok(Cow::Owned(format_f(n))),
        Kind::Int(i) => Ok(Cow::Owned(i.to_string())),
        Kind::Null => Ok(Cow::Borrowed("")),
        other => Err(conversion_panic(other, "string")),
    }
}

/// Go's `int(f)` on amd64: truncation, and the "integer indefinite" value for NaN and out-of-range input.
pub(crate) fn go_int(f: f64) -> i64 {
    // 2^63 and -2^63 exactly.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !(-LIMIT..LIMIT).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

/// `strconv.FormatFloat(f, 'f', -1, 64)`: shortest round-trip digits, never an exponent.
pub(crate) fn format_f(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 {
            "+Inf".to_owned()
        } else {
            "-Inf".to_owned()
        }
    } else {
        format!("{f}")
    }
}

/// `fmt.Sprintf("%v", f)` for a float64: `%g` with the shortest digits, in exponent form when the decimal
/// exponent is below -4 or at least 6 (Go decides with precision 6 for the shortest format).
pub(crate) fn format_v(f: f64) -> String {
    if !f.is_finite() {
        return format_f(f);
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".to_owned()
        } else {
            "0".to_owned()
        };
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        format!("{f}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// `strconv.ParseFloat(s, 64)`: `None` on a syntax error; out-of-range values give ±Inf (Go returns them
/// with `ErrRange`, which every caller here ignores). Accepts what Go accepts: `Inf`/`Infinity`/`NaN`
/// (any case, sign only on infinities), hexadecimal mantissas with a `p` exponent, underscores between
/// digits; rejects surrounding spaces.
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let signed = body.len() != s.len();
    if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        return Some(if neg {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if body.eq_ignore_ascii_case("nan") {
        return if signed { None } else { Some(f64::NAN) };
    }
    let b = body.as_bytes();
    let hex = b.len() >= 2 && b[0] == b'0' && (b[1] | 0x20) == b'x';
    if body.contains('_') && !underscore_ok(body) {
        return None;
    }
    let magnitude = if hex {
        parse_hex(&body[2..])?
    } else {
        parse_decimal(body)?
    };
    Some(if neg { -magnitude } else { magnitude })
}

/// Go's `underscoreOK`: underscores only between digits (or after a base prefix).
fn underscore_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = (b[1] | 0x20) == b'x';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && (c | 0x20).is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

fn parse_decimal(body: &str) -> Option<f64> {
    let b = body.as_bytes();
    let mut i = 0;
    let mut digits = false;
    let mut dot = false;
    while i < b.len() {
        match b[i] {
            b'0'..=b'9' => digits = true,
            b'_' => {}
            b'.' if !dot => dot = true,
            _ => break,
        }
        i += 1;
    }
    if !digits {
        return None;
    }
    if i < b.len() && (b[i] | 0x20) == b'e' {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
        if !b[start..i].iter().any(u8::is_ascii_digit) {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    let cleaned: Cow<'_, str> = if body.contains('_') {
        Cow::Owned(body.replace('_', ""))
    } else {
        Cow::Borrowed(body)
    };
    cleaned.parse::<f64>().ok()
}

fn parse_hex(b: &str) -> Option<f64> {
    let b = b.as_bytes();
    let mut i = 0;
    let mut mantissa: f64 = 0.0;
    let mut digits = false;
    let mut dot = false;
    let mut frac_digits: i32 = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'_' => {}
            b'.' if !dot => dot = true,
            _ if c.is_ascii_hexdigit() => {
                let d = (c as char).to_digit(16).unwrap_or(0);
                mantissa = mantissa * 16.0 + f64::from(d);
                digits = true;
                if dot {
                    frac_digits += 1;
                }
            }
            _ => break,
        }
        i += 1;
    }
    if !digits || i >= b.len() || (b[i] | 0x20) != b'p' {
        return None;
    }
    i += 1;
    let mut exp_neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        exp_neg = b[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut exp: i32 = 0;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        if b[i] != b'_' {
            exp = exp
                .saturating_mul(10)
                .saturating_add(i32::from(b[i] - b'0'));
        }
        i += 1;
    }
    if i != b.len() || !b[start..i].iter().any(u8::is_ascii_digit) {
        return None;
    }
    let exp = if exp_neg { -exp } else { exp };
    Some(mantissa * 2f64.powi(exp.saturating_sub(frac_digits.saturating_mul(4))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_float_follows_go_strconv() {
        assert_eq!(parse_float("1.5"), Some(1.5));
        assert_eq!(parse_float("+2"), Some(2.0));
        assert_eq!(parse_float(".5"), Some(0.5));
        assert_eq!(parse_float("1."), Some(1.0));
        assert_eq!(parse_float("1e3"), Some(1000.0));
        assert_eq!(parse_float("1_000"), Some(1000.0));
        assert_eq!(parse_float("0x1p4"), Some(16.0));
        assert_eq!(parse_float("0x10"), None);
        assert_eq!(parse_float("-Inf"), Some(f64::NEG_INFINITY));
        assert!(parse_float("nan").is_some_and(f64::is_nan));
        assert_eq!(parse_float("+nan"), None);
        assert_eq!(parse_float(" 1"), None);
        assert_eq!(parse_float("1_"), None);
        assert_eq!(parse_float("abc"), None);
        assert_eq!(parse_float(""), None);
        assert_eq!(parse_float("1e400"), Some(f64::INFINITY));
    }

    #[test]
    fn format_matches_go() {
        assert_eq!(format_f(1e21), "1000000000000000000000");
        assert_eq!(format_f(1.5e-7), "0.00000015");
        assert_eq!(format_f(f64::INFINITY), "+Inf");
        assert_eq!(format_v(2.0), "2");
        assert_eq!(format_v(1.2), "1.2");
        assert_eq!(format_v(1e6), "1e+06");
        assert_eq!(format_v(123456.5), "123456.5");
        assert_eq!(format_v(0.00001), "1e-05");
        assert_eq!(go_int(f64::NAN), i64::MIN);
        assert_eq!(go_int(-2.7), -2);
    }
}
