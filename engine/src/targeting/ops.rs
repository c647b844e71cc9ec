//! The operators that work on values already evaluated: comparisons with Go's loose and strict equality,
//! `in`, string and array operators, `merge`, and flagd's `starts_with`/`ends_with` — as
//! `diegoholiveira/jsonlogic` v3.9.1 computes them. Nothing here evaluates a node or reads the data; the
//! evaluator (`eval.rs`) evaluates the arguments and calls in.

use std::borrow::Cow;

use serde_json::Value;
use smallvec::SmallVec;

use super::TargetingError;
use super::compile::Op;
use super::value::{
    Arr, Kind, Val, conversion_panic, go_int, is_true, js_number, to_number, to_str,
};

pub(super) type R<T> = Result<T, TargetingError>;

pub(super) type List<'a> = SmallVec<[Val<'a>; 4]>;

pub(super) fn fail<T>(msg: impl Into<String>) -> R<T> {
    Err(TargetingError(msg.into()))
}

pub(super) enum Evaluated<'a> {
    List(List<'a>),
    One(Val<'a>),
}

/// A value as `[]any`, if it is one.
pub(super) fn as_list<'a>(v: Val<'a>) -> Result<List<'a>, Val<'a>> {
    match v {
        Val::Arr(a) => Ok(a.into_iter().collect()),
        Val::Json(Value::Array(a)) => Ok(a.iter().map(Val::Json).collect()),
        other => Err(other),
    }
}

impl<'a> Evaluated<'a> {
    /// `values.([]any)`: anything but an array panics.
    pub(super) fn list(self, op: &str) -> R<List<'a>> {
        match self {
            Evaluated::List(l) => Ok(l),
            Evaluated::One(v) => as_list(v).map_err(|v| {
                let e = conversion_panic(v.kind(), "[]interface {}");
                TargetingError(format!("{op}: {}", e.0))
            }),
        }
    }

    /// `values.([]any)` with the ok-check: anything but an array is `None`.
    pub(super) fn try_list(self) -> Option<List<'a>> {
        match self {
            Evaluated::List(l) => Some(l),
            Evaluated::One(v) => as_list(v).ok(),
        }
    }
}

pub(super) fn index_panic<T>(op: &str, i: usize, len: usize) -> R<T> {
    fail(format!(
        "{op}: runtime error: index out of range [{i}] with length {len}"
    ))
}

/// A two-operand comparison, `in`, `starts_with` or `ends_with` (the same results as the general path
/// with a two-element argument list).
#[inline]
pub(super) fn binary(op: Op, a: Kind<'_, '_>, b: Kind<'_, '_>) -> R<Val<'static>> {
    Ok(binary_bool(op, a, b)?.map_or(Val::Null, Val::Bool))
}

/// [`binary`] as a boolean; `None` where the operator returns null.
#[inline]
pub(super) fn binary_bool(op: Op, a: Kind<'_, '_>, b: Kind<'_, '_>) -> R<Option<bool>> {
    Ok(Some(match op {
        Op::Eq => equals(a, b),
        Op::Ne => !equals(a, b),
        Op::StrictEq => strict_equals(a, b),
        Op::StrictNe => !strict_equals(a, b),
        Op::Lt => less(a, b),
        Op::Le => less(a, b) || equals(a, b),
        Op::Gt => less(b, a),
        Op::Ge => less(b, a) || equals(b, a),
        Op::In => in_kinds(a, b)?,
        Op::StartsWith | Op::EndsWith => match (a, b) {
            (Kind::Str(a), Kind::Str(b)) => {
                if op == Op::StartsWith {
                    a.len() >= b.len() && str_eq(&a.as_bytes()[..b.len()], b)
                } else {
                    a.len() >= b.len() && str_eq(&a.as_bytes()[a.len() - b.len()..], b)
                }
            }
            _ => return Ok(None),
        },
        other => return fail(format!("{other:?} is not a binary operator")),
    }))
}

/// `negative`'s operand truthiness: the first element of a non-empty array, else the value itself.
pub(super) fn negation_operand(args: Evaluated<'_>) -> bool {
    match args {
        Evaluated::List(l) => l.first().is_some_and(|v| is_true(v.kind())),
        Evaluated::One(v) => match v.kind() {
            Kind::Arr(a) if a.len() > 0 => is_true(a.kind_at(0)),
            k => is_true(k),
        },
    }
}

/// String equality as an inline loop for short strings (a `memcmp` call dominates at these lengths).
#[inline]
pub(super) fn str_eq(a: impl AsRef<[u8]>, b: impl AsRef<[u8]>) -> bool {
    let (a, b) = (a.as_ref(), b.as_ref());
    if a.len() != b.len() {
        return false;
    }
    if a.len() > 8 {
        return a == b;
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// `equals`: nil only equals nil; two strings compare as strings; anything else as JavaScript numbers.
#[inline]
pub(crate) fn equals(a: Kind<'_, '_>, b: Kind<'_, '_>) -> bool {
    match (a, b) {
        (Kind::Null, Kind::Null) => true,
        (Kind::Null, _) | (_, Kind::Null) => false,
        (Kind::Str(x), Kind::Str(y)) => str_eq(x, y),
        _ => js_number(a) == js_number(b),
    }
}

#[inline]
pub(super) fn strict_equals(a: Kind<'_, '_>, b: Kind<'_, '_>) -> bool {
    if std::mem::discriminant(&a) != std::mem::discriminant(&b) {
        return false;
    }
    equals(a, b)
}

/// `less`: two strings compare bytewise; anything else as JavaScript numbers.
#[inline]
pub(crate) fn less(a: Kind<'_, '_>, b: Kind<'_, '_>) -> bool {
    match (a, b) {
        (Kind::Str(x), Kind::Str(y)) => y > x,
        _ => js_number(b) > js_number(a),
    }
}

/// Go's `==` on two `any` values (same dynamic type and value; maps are not comparable and panic).
pub(super) fn go_interface_eq(a: Kind<'_, '_>, b: Kind<'_, '_>) -> R<bool> {
    Ok(match (a, b) {
        (Kind::Null, Kind::Null) => true,
        (Kind::Bool(x), Kind::Bool(y)) => x == y,
        (Kind::Num(x), Kind::Num(y)) => x == y,
        (Kind::Int(x), Kind::Int(y)) => x == y,
        (Kind::Str(x), Kind::Str(y)) => str_eq(x, y),
        (Kind::Obj(_), Kind::Obj(_)) => {
            return fail("runtime error: comparing uncomparable type map[string]interface {}");
        }
        (Kind::Arr(_), Kind::Arr(_)) => {
            return fail("runtime error: comparing uncomparable type []interface {}");
        }
        _ => false,
    })
}

pub(super) fn op_in<'a>(l: List<'a>) -> R<Val<'a>> {
    let Some(a) = l.first() else {
        return index_panic("in", 0, 0);
    };
    let b = l.get(1).map_or(Kind::Null, Val::kind);
    in_kinds(a.kind(), b).map(Val::Bool)
}

/// `in` with its two operands.
pub(super) fn in_kinds(a: Kind<'_, '_>, b: Kind<'_, '_>) -> R<bool> {
    if let Kind::Str(hay) = b {
        let Kind::Str(needle) = a else {
            return Err(conversion_panic(a, "string"));
        };
        return Ok(hay.contains(needle));
    }
    let Kind::Arr(items) = b else {
        return Ok(false);
    };
    for i in 0..items.len() {
        let el = items.kind_at(i);
        if let Kind::Arr(range) = el {
            if range.len() < 2 {
                return index_panic("in", range.len(), range.len());
            }
            let v = to_number(a)?;
            if v >= to_number(range.kind_at(0))? && to_number(range.kind_at(1))? >= to_number(a)? {
                return Ok(true);
            }
            continue;
        }
        match a {
            Kind::Num(n) => {
                if to_number(el)? == n {
                    return Ok(true);
                }
            }
            Kind::Int(_) => {
                // float64 == int compares dynamic types first: never equal.
                to_number(el)?;
            }
            _ => {
                if go_interface_eq(el, a)? {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

pub(super) fn op_cat<'a>(args: Evaluated<'a>) -> R<Val<'a>> {
    if let Evaluated::One(v) = &args
        && let Kind::Str(_) = v.kind()
    {
        return Ok(v.clone());
    }
    let l = args.list("cat")?;
    match l.len() {
        0 => Ok(Val::Str(Cow::Borrowed(""))),
        1 => Ok(Val::Str(Cow::Owned(to_str(l[0].kind())?.into_owned()))),
        _ => {
            let mut s = String::new();
            for v in &l {
                s.push_str(&to_str(v.kind())?);
            }
            let trimmed = s.trim();
            Ok(Val::Str(Cow::Owned(if trimmed.len() == s.len() {
                s
            } else {
                trimmed.to_owned()
            })))
        }
    }
}

pub(super) fn op_substr<'a>(l: List<'a>) -> R<Val<'a>> {
    let Some(s) = l.first() else {
        return index_panic("substr", 0, 0);
    };
    let text = to_str(s.kind())?;
    let Some(from) = l.get(1) else {
        return index_panic("substr", 1, 1);
    };
    let mut from = go_int(to_number(from.kind())?);
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len() as i64;
    if from < 0 {
        from = n.wrapping_add(from);
    }
    if from < 0 || from > n {
        return Ok(Val::Str(Cow::Owned(text.into_owned())));
    }
    let mut length = n;
    if l.len() == 3 {
        length = go_int(to_number(l[2].kind())?);
    }
    let mut to = if length < 0 {
        n.wrapping_add(length)
    } else {
        from.wrapping_add(length)
    };
    if to > n {
        to = n;
    }
    if to < from {
        return fail(format!(
            "substr: runtime error: slice bounds out of range [{from}:{to}]"
        ));
    }
    Ok(Val::Str(Cow::Owned(
        chars[from as usize..to as usize].iter().collect(),
    )))
}

pub(super) fn op_merge<'a>(args: Evaluated<'a>) -> R<Val<'a>> {
    if let Evaluated::One(v) = &args
        && matches!(
            v.kind(),
            Kind::Bool(_) | Kind::Num(_) | Kind::Int(_) | Kind::Str(_)
        )
    {
        return Ok(Val::Arr(vec![v.clone()]));
    }
    let l = args.list("merge")?;
    let mut out = Vec::new();
    for v in l {
        match as_list(v) {
            Ok(items) => out.extend(items),
            Err(v) => out.push(v),
        }
    }
    Ok(Val::Arr(out))
}

pub(super) fn contains_element(hay: Arr<'_, '_>, el: Kind<'_, '_>) -> R<bool> {
    for i in 0..hay.len() {
        let item = hay.kind_at(i);
        if go_interface_eq(item, el)? {
            return Ok(true);
        }
        let num = |k: Kind<'_, '_>| matches!(k, Kind::Num(_) | Kind::Int(_));
        if num(item) && num(el) && to_number(item)? == to_number(el)? {
            return Ok(true);
        }
    }
    Ok(false)
}

pub(super) fn op_contains<'a>(op: Op, args: Evaluated<'a>) -> R<Val<'a>> {
    let empty = op == Op::ContainsNone;
    let Some(l) = args.try_list() else {
        return Ok(Val::Bool(empty));
    };
    let [search, check] = &l[..] else {
        return Ok(Val::Bool(empty));
    };
    let (Kind::Arr(search), Kind::Arr(check)) = (search.kind(), check.kind()) else {
        return Ok(Val::Bool(empty));
    };
    Ok(Val::Bool(match op {
        Op::ContainsAll => {
            let mut all = true;
            for i in 0..check.len() {
                if !contains_element(search, check.kind_at(i))? {
                    all = false;
                    break;
                }
            }
            all
        }
        Op::ContainsAny => {
            let mut any = false;
            for i in 0..check.len() {
                if contains_element(search, check.kind_at(i))? {
                    any = true;
                    break;
                }
            }
            any
        }
        _ => {
            let mut none = true;
            for i in 0..check.len() {
                if contains_element(search, check.kind_at(i))? {
                    none = false;
                    break;
                }
            }
            none
        }
    }))
}
