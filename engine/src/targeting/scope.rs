//! The data a rule is evaluated against and reading from it: the request (the context plus the virtual
//! `$flagd` object) or, inside an iterating operator, the current element; `var` paths, `getVar`'s argument
//! forms, and the inputs of `fractional`. Reads borrow from the context, never copy it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use super::compile::{Part, Path};
use super::fractional::FracData;
use super::ops::R;
use super::value::{Kind, Val, conversion_panic, format_f};
use super::{Data, FractionalAlgorithm};

/// The data a rule is evaluated against.
#[derive(Clone, Copy)]
pub(crate) enum Scope<'s, 'a> {
    /// The request: context plus the virtual `$flagd` object.
    Top(&'s Data<'a>),
    /// An element inside an iterating operator (or `reduce`'s accumulator object), with the bucketing
    /// algorithm of the request.
    Val(&'s Val<'a>, FractionalAlgorithm),
}

impl<'s, 'a> Scope<'s, 'a> {
    #[inline]
    pub(super) fn algorithm(self) -> FractionalAlgorithm {
        match self {
            Scope::Top(data) => data.fractional,
            Scope::Val(_, a) => a,
        }
    }

    /// The scope of an element, keeping the request's bucketing algorithm.
    #[inline]
    pub(super) fn with<'t>(self, v: &'t Val<'a>) -> Scope<'t, 'a> {
        Scope::Val(v, self.algorithm())
    }
}

/// Resolves a path against the data; `None` where Go returns the default.
#[inline]
pub(super) fn lookup<'a>(scope: Scope<'_, 'a>, path: &Path) -> R<Option<Val<'a>>> {
    let parts = &path.parts[..];
    let Some((first, rest)) = parts.split_first() else {
        return whole(scope).map(Some);
    };
    match scope {
        Scope::Top(data) => {
            if path.flagd {
                return Ok(flagd_lookup(*data, rest));
            }
            let Some(v) = data.context.get(&*first.key) else {
                return Ok(None);
            };
            Ok(walk_json(v, rest))
        }
        Scope::Val(v, _) => Ok(walk_val(v, parts)),
    }
}

pub(super) fn flagd_lookup<'a>(data: Data<'a>, rest: &[Part]) -> Option<Val<'a>> {
    match rest {
        [] => Some(flagd_object(data)),
        [p] if &*p.key == "flagKey" => Some(Val::Str(Cow::Borrowed(data.flag_key))),
        [p] if &*p.key == "timestamp" => Some(Val::Num(data.timestamp as f64)),
        _ => None,
    }
}

pub(super) fn flagd_object<'a>(data: Data<'a>) -> Val<'a> {
    let mut m = BTreeMap::new();
    m.insert("flagKey".to_owned(), Val::Str(Cow::Borrowed(data.flag_key)));
    m.insert("timestamp".to_owned(), Val::Num(data.timestamp as f64));
    Val::Obj(m)
}

/// The whole data, materialised (rare: `{"var": ""}` at the top level).
pub(super) fn whole<'a>(scope: Scope<'_, 'a>) -> R<Val<'a>> {
    Ok(match scope {
        Scope::Top(data) => {
            let mut m: BTreeMap<String, Val<'a>> = data
                .context
                .iter()
                .map(|(k, v)| (k.clone(), Val::Json(v)))
                .collect();
            m.insert("$flagd".to_owned(), flagd_object(*data));
            Val::Obj(m)
        }
        Scope::Val(v, _) => v.clone(),
    })
}

pub(super) fn walk_json<'a>(cur: &'a Value, parts: &[Part]) -> Option<Val<'a>> {
    walk_json_ref(cur, parts).map(Val::Json)
}

#[inline]
pub(super) fn walk_json_ref<'a>(mut cur: &'a Value, parts: &[Part]) -> Option<&'a Value> {
    if cur.is_null() {
        return None;
    }
    for p in parts {
        cur = match cur {
            Value::Object(m) => m.get(&*p.key)?,
            Value::Array(a) => usize::try_from(p.index).ok().and_then(|i| a.get(i))?,
            _ => return None,
        };
        if cur.is_null() {
            return None;
        }
    }
    Some(cur)
}

pub(super) fn walk_val<'a>(root: &Val<'a>, parts: &[Part]) -> Option<Val<'a>> {
    if root.is_nil() {
        return None;
    }
    let mut cur = root;
    for (i, p) in parts.iter().enumerate() {
        cur = match cur {
            Val::Json(v) => return walk_json(v, &parts[i..]),
            Val::Obj(m) => m.get(&*p.key)?,
            Val::Arr(a) => usize::try_from(p.index).ok().and_then(|i| a.get(i))?,
            _ => return None,
        };
        if cur.is_nil() {
            return None;
        }
    }
    Some(cur.clone())
}

/// `getVar` over an evaluated argument.
pub(super) fn get_var<'a>(arg: Val<'a>, scope: Scope<'_, 'a>) -> R<Val<'a>> {
    let data_is_nil = matches!(scope, Scope::Val(v, _) if v.is_nil());
    // `Err`: a name Go only fails on when it splits it, after the nil-data check.
    let (path, default): (R<Cow<'_, str>>, Val<'a>) = match arg.kind() {
        Kind::Null => {
            return Ok(match scope {
                Scope::Val(v, _)
                    if matches!(
                        v.kind(),
                        Kind::Bool(_) | Kind::Num(_) | Kind::Int(_) | Kind::Str(_)
                    ) =>
                {
                    v.clone()
                }
                _ => Val::Null,
            });
        }
        Kind::Str("") => return whole(scope),
        Kind::Str(s) => (Ok(Cow::Owned(s.to_owned())), Val::Null),
        Kind::Num(n) => (Ok(Cow::Owned(format_f(n))), Val::Null),
        Kind::Int(i) => (Ok(Cow::Owned(i.to_string())), Val::Null),
        Kind::Arr(a) => {
            if a.len() == 0 {
                return whole(scope);
            }
            let default = if a.len() == 2 { a.get(1) } else { Val::Null };
            match a.kind_at(0) {
                Kind::Str(s) => (Ok(Cow::Owned(s.to_owned())), default),
                other => return Err(conversion_panic(other, "string")),
            }
        }
        other => (Err(conversion_panic(other, "string")), Val::Null),
    };
    if data_is_nil {
        return Ok(default);
    }
    Ok(lookup(scope, &Path::parse(&path?))?.unwrap_or(default))
}

pub(super) fn frac_data<'s, 'a>(scope: Scope<'s, 'a>) -> Option<FracData<'s, 'a>> {
    match scope {
        Scope::Top(data) => Some(FracData {
            flag_key: Cow::Borrowed(data.flag_key),
            targeting_key: data.context.get("targetingKey").map(Val::Json),
        }),
        Scope::Val(v, _) => match v.kind() {
            Kind::Obj(m) => {
                // flagd unmarshals `$flagd` into a struct: a non-object or a non-string key gives "".
                let flag_key = match m.get("$flagd").as_ref().map(Val::kind) {
                    Some(Kind::Obj(f)) => match f.get("flagKey").as_ref().map(Val::kind) {
                        Some(Kind::Str(s)) => s.to_owned(),
                        _ => String::new(),
                    },
                    _ => String::new(),
                };
                Some(FracData {
                    flag_key: Cow::Owned(flag_key),
                    targeting_key: m.get("targetingKey"),
                })
            }
            _ => None,
        },
    }
}
