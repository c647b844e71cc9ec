//! Evaluating a compiled rule exactly as `diegoholiveira/jsonlogic` v3.9.1 and flagd's operators do: the
//! walk over the nodes, the operators that evaluate (or skip) their own arguments, and the iterating ones.
//! The data and its reading are `scope.rs`'s; operators over evaluated values are `ops.rs`'s.
//!
//! Where Go panics (a failed type assertion, an index out of range, an unknown operator) this returns a
//! [`TargetingError`]; where Go returns nil this returns null. The data a rule sees is either the
//! request ([`Scope::Top`]: the context plus a virtual `$flagd`) or, inside `map`/`filter`/`reduce`/
//! `all`/`none`/`some`, the current element. Values read from the context are borrowed, never copied.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use super::compile::{
    Args, Call, FracNode, IterNode, IterOp, Node, Op, Subject, VarNode, compile_rule, is_static,
};
use super::fractional::{KeyHash, fractional, key_hash};
use super::ops::{
    Evaluated, List, R, as_list, binary, binary_bool, equals, fail, index_panic, less,
    negation_operand, op_cat, op_contains, op_in, op_merge, op_substr, str_eq, strict_equals,
};
pub(crate) use super::scope::Scope;
use super::scope::{frac_data, get_var, lookup, walk_json_ref};
use super::semver::{self, SemOp};
use super::value::{
    Kind, Obj, Val, conversion_panic, go_int, is_true, json_kind, to_number, to_str,
};
use super::{MAX_EVAL_DEPTH, TargetingError};

/// Evaluates a node.
pub(crate) fn eval<'a>(node: &'a Node, scope: Scope<'_, 'a>, depth: u32) -> R<Val<'a>> {
    if depth > MAX_EVAL_DEPTH {
        return depth_error();
    }
    let d = depth + 1;
    match node {
        Node::Lit(v) => Ok(Val::Json(v)),
        Node::Var(v) if v.rest.is_empty() => Ok(lookup(scope, &v.path)?.unwrap_or(Val::Null)),
        Node::Binary(b) => {
            let x = operand(&b.a, scope, d)?;
            let y = operand(&b.b, scope, d)?;
            binary(b.op, x.kind(), y.kind())
        }
        Node::If(items) => eval_if(items, scope, d),
        Node::And(items) => {
            let mut last = Val::Null;
            for n in items {
                last = eval(n, scope, d)?;
                if !is_true(last.kind()) {
                    break;
                }
            }
            Ok(last)
        }
        Node::Or(items) => {
            let mut last = Val::Null;
            for n in items {
                last = eval(n, scope, d)?;
                if is_true(last.kind()) {
                    break;
                }
            }
            Ok(last)
        }
        Node::Call(call) => eval_call(call, scope, d),
        _ => eval_other(node, scope, d),
    }
}

/// An operand of a two-operand operator: literals and context values stay references (no [`Val`] is
/// built on the hot path).
enum Operand<'a> {
    Ref(&'a Value),
    Val(Val<'a>),
}

impl<'a> Operand<'a> {
    #[inline]
    fn kind(&self) -> Kind<'_, 'a> {
        match self {
            Operand::Ref(v) => json_kind(v),
            Operand::Val(v) => v.kind(),
        }
    }
}

#[inline]
fn operand<'a>(node: &'a Node, scope: Scope<'_, 'a>, d: u32) -> R<Operand<'a>> {
    match (node, scope) {
        (Node::Lit(v), _) => Ok(Operand::Ref(v)),
        (Node::Var(v), Scope::Top(data)) if v.rest.is_empty() && !v.path.flagd => {
            let Some((first, rest)) = v.path.parts.split_first() else {
                return eval(node, scope, d).map(Operand::Val);
            };
            Ok(
                match data
                    .context
                    .get(&*first.key)
                    .and_then(|x| walk_json_ref(x, rest))
                {
                    Some(x) => Operand::Ref(x),
                    None => Operand::Val(Val::Null),
                },
            )
        }
        _ => eval(node, scope, d).map(Operand::Val),
    }
}

#[cold]
#[inline(never)]
fn depth_error<T>() -> R<T> {
    fail(format!(
        "targeting evaluation nested deeper than {MAX_EVAL_DEPTH} levels"
    ))
}

/// The less frequent nodes, kept out of [`eval`]'s frame.
#[inline(never)]
fn eval_other<'a>(node: &'a Node, scope: Scope<'_, 'a>, d: u32) -> R<Val<'a>> {
    match node {
        Node::Array(items) => items
            .iter()
            .map(|n| eval(n, scope, d))
            .collect::<R<Vec<_>>>()
            .map(Val::Arr),
        Node::Var(v) => eval_var(v, scope, d),
        Node::VarDyn(arg) => {
            let arg = eval(arg, scope, d)?;
            get_var(arg, scope)
        }
        Node::Fail(msg) => fail(msg.to_string()),
        Node::Fractional(f) => eval_fractional(f, scope, d),
        Node::Iter(it) => eval_iter(it, scope, d),
        Node::SemVerConst(sv) => {
            let version = operand(&sv.version, scope, d)?;
            let (Some(op), Some(target)) = (sv.op, &sv.target) else {
                return Ok(Val::Null);
            };
            let text = semver::text(version.kind());
            let Some(a) = semver::parse(semver::body(&text)) else {
                return Ok(Val::Null);
            };
            Ok(Val::Bool(op.compare(&a, &target.view())))
        }
        Node::Lit(_)
        | Node::Binary(_)
        | Node::If(_)
        | Node::And(_)
        | Node::Or(_)
        | Node::Call(_) => eval(node, scope, d),
    }
}

/// Evaluates a runtime value as a rule (Go re-applies computed objects in several places).
fn eval_value<'a>(v: &Val<'a>, scope: Scope<'_, 'a>, depth: u32) -> R<Val<'a>> {
    let json = v.to_value()?;
    if is_static(&json) {
        return Ok(v.clone());
    }
    let node = compile_rule(&json).map_err(|e| TargetingError(e.0))?;
    eval(&node, shorten(scope), depth + 1).map(Val::into_static)
}

/// Narrows a scope's lifetime (for evaluating rules compiled at run time).
fn shorten<'s, 'a: 'b, 'b>(scope: Scope<'s, 'a>) -> Scope<'s, 'b> {
    scope
}

/// `evaluateClause`: an `if` branch that yields an object is applied as a rule.
fn clause<'a>(node: &'a Node, scope: Scope<'_, 'a>, depth: u32) -> R<Val<'a>> {
    let v = eval(node, scope, depth)?;
    match v.kind() {
        Kind::Obj(m) if m.len() == 1 => eval_value(&v, scope, depth),
        _ => Ok(v),
    }
}

fn eval_if<'a>(items: &'a [Node], scope: Scope<'_, 'a>, d: u32) -> R<Val<'a>> {
    let len = items.len();
    let mut i = 0;
    while i + 1 < len {
        if eval_bool(&items[i], scope, d)? {
            return clause(&items[i + 1], scope, d);
        }
        i += 2;
    }
    if len % 2 == 1 {
        clause(&items[len - 1], scope, d)
    } else {
        Ok(Val::Null)
    }
}

// ---------------------------------------------------------------------------------------------------
// var

fn eval_var<'a>(v: &'a VarNode, scope: Scope<'_, 'a>, d: u32) -> R<Val<'a>> {
    let mut default = Val::Null;
    for n in &v.rest {
        let x = eval(n, scope, d)?;
        if v.rest.len() == 1 {
            default = x;
        }
    }
    Ok(lookup(scope, &v.path)?.unwrap_or(default))
}

// ---------------------------------------------------------------------------------------------------
// operators that evaluate their arguments first

fn eval_args<'a>(args: &'a Args, scope: Scope<'_, 'a>, d: u32) -> R<Evaluated<'a>> {
    match args {
        Args::List(nodes) => {
            let mut out = List::new();
            for n in nodes {
                out.push(eval(n, scope, d)?);
            }
            Ok(Evaluated::List(out))
        }
        Args::One(n) => Ok(Evaluated::One(eval(n, scope, d)?)),
    }
}

fn eval_call<'a>(call: &'a Call, scope: Scope<'_, 'a>, d: u32) -> R<Val<'a>> {
    if let (Op::Not | Op::NotNot, Args::One(n)) = (call.op, &call.args) {
        let v = operand(n, scope, d)?;
        let truthy = match v.kind() {
            Kind::Arr(a) if a.len() > 0 => is_true(a.kind_at(0)),
            k => is_true(k),
        };
        return Ok(Val::Bool(truthy == (call.op == Op::NotNot)));
    }
    let args = eval_args(&call.args, scope, d)?;
    let op = call.op;
    Ok(match op {
        Op::Eq | Op::Ne => {
            let l = args.list("==")?;
            let eq = l.len() >= 2 && equals(l[0].kind(), l[1].kind());
            Val::Bool(eq == (op == Op::Eq))
        }
        Op::StrictEq | Op::StrictNe => {
            let eq = match args.try_list() {
                Some(l) if l.len() >= 2 => strict_equals(l[0].kind(), l[1].kind()),
                _ => false,
            };
            Val::Bool(eq == (op == Op::StrictEq))
        }
        Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            let l = args.list("compare")?;
            if l.len() < 2 {
                return Ok(Val::Bool(false));
            }
            let (a, b) = (l[0].kind(), l[1].kind());
            let c = (l.len() == 3).then(|| l[2].kind());
            let lt = |x, y| less(x, y);
            let le = |x, y| less(x, y) || equals(x, y);
            Val::Bool(match (op, c) {
                (Op::Lt, None) => lt(a, b),
                (Op::Lt, Some(c)) => lt(a, b) && lt(b, c),
                (Op::Le, None) => le(a, b),
                (Op::Le, Some(c)) => le(a, b) && le(b, c),
                (Op::Gt, None) => lt(b, a),
                (Op::Gt, Some(c)) => lt(c, b) && lt(b, a),
                (_, None) => le(b, a),
                (_, Some(c)) => le(c, b) && le(b, a),
            })
        }
        Op::Not => Val::Bool(!negation_operand(args)),
        Op::NotNot => Val::Bool(negation_operand(args)),
        Op::In => op_in(args.list("in")?)?,
        Op::Cat => op_cat(args)?,
        Op::Substr => op_substr(args.list("substr")?)?,
        Op::Merge => op_merge(args)?,
        Op::Missing => op_missing(args, scope, d)?,
        Op::MissingSome => op_missing_some(args.list("missing_some")?, scope, d)?,
        Op::Max | Op::Min => {
            let l = args.list("max/min")?;
            let Some(first) = l.first() else {
                return Ok(Val::Null);
            };
            let mut acc = to_number(first.kind())?;
            for v in &l[1..] {
                let n = to_number(v.kind())?;
                if (op == Op::Max && n > acc) || (op == Op::Min && acc > n) {
                    acc = n;
                }
            }
            Val::Num(acc)
        }
        Op::Add => match args {
            Evaluated::One(v) if as_list(v.clone()).is_err() => Val::Num(to_number(v.kind())?),
            other => {
                let l = other.list("+")?;
                let mut sum = 0.0;
                for v in &l {
                    sum += to_number(v.kind())?;
                }
                if l.len() == 1 {
                    Val::Num(to_number(l[0].kind())?)
                } else {
                    Val::Num(sum)
                }
            }
        },
        Op::Sub => {
            let l = args.list("-")?;
            match l.len() {
                0 => Val::Int(0),
                1 => Val::Num(-to_number(l[0].kind())?),
                _ => {
                    let mut acc = to_number(l[0].kind())?;
                    for v in &l[1..] {
                        acc -= to_number(v.kind())?;
                    }
                    Val::Num(acc)
                }
            }
        }
        Op::Mul => {
            let mut acc = 1.0;
            for v in &args.list("*")? {
                acc *= to_number(v.kind())?;
            }
            Val::Num(acc)
        }
        Op::Div => {
            let l = args.list("/")?;
            if l.is_empty() {
                return Ok(Val::Int(0));
            }
            let mut acc = to_number(l[0].kind())?;
            for v in &l[1..] {
                acc /= to_number(v.kind())?;
            }
            Val::Num(acc)
        }
        Op::Mod => {
            let l = args.list("%")?;
            if l.len() < 2 {
                return index_panic("%", l.len(), l.len());
            }
            Val::Num(to_number(l[0].kind())? % to_number(l[1].kind())?)
        }
        Op::Abs => match args {
            Evaluated::One(v) if as_list(v.clone()).is_err() => {
                Val::Num(to_number(v.kind())?.abs())
            }
            other => {
                let l = other.list("abs")?;
                let Some(first) = l.first() else {
                    return index_panic("abs", 0, 0);
                };
                Val::Num(to_number(first.kind())?.abs())
            }
        },
        Op::Set => op_set(args.list("set")?, scope, d)?,
        Op::ContainsAll | Op::ContainsAny | Op::ContainsNone => op_contains(op, args)?,
        Op::Fractional => {
            let Some(l) = args.try_list() else {
                return Ok(Val::Null);
            };
            fractional(&l, frac_data(scope), scope.algorithm())
        }
        Op::SemVer => {
            let Some(l) = args.try_list() else {
                return Ok(Val::Null);
            };
            let [v, op, target] = &l[..] else {
                return Ok(Val::Null);
            };
            let Kind::Str(op) = op.kind() else {
                return Ok(Val::Null);
            };
            let (a, b) = (semver::text(v.kind()), semver::text(target.kind()));
            match (
                semver::parse(semver::body(&a)),
                SemOp::parse(op),
                semver::parse(semver::body(&b)),
            ) {
                (Some(a), Some(op), Some(b)) => Val::Bool(op.compare(&a, &b)),
                _ => Val::Null,
            }
        }
        Op::StartsWith | Op::EndsWith => {
            let Some(l) = args.try_list() else {
                return Ok(Val::Null);
            };
            let [a, b] = &l[..] else { return Ok(Val::Null) };
            match (a.kind(), b.kind()) {
                (Kind::Str(a), Kind::Str(b)) => Val::Bool(if op == Op::StartsWith {
                    a.len() >= b.len() && str_eq(&a.as_bytes()[..b.len()], b)
                } else {
                    a.len() >= b.len() && str_eq(&a.as_bytes()[a.len() - b.len()..], b)
                }),
                _ => Val::Null,
            }
        }
    })
}

/// The truthiness of a node, without building the value where that can be avoided (`if` conditions).
/// `and` is truthy exactly when every operand is, `or` when one is (both stop where they would).
fn eval_bool<'a>(node: &'a Node, scope: Scope<'_, 'a>, depth: u32) -> R<bool> {
    if depth > MAX_EVAL_DEPTH {
        return depth_error();
    }
    let d = depth + 1;
    match node {
        Node::Lit(v) => Ok(is_true(json_kind(v))),
        Node::Binary(b) => {
            let x = operand(&b.a, scope, d)?;
            let y = operand(&b.b, scope, d)?;
            Ok(binary_bool(b.op, x.kind(), y.kind())? == Some(true))
        }
        Node::And(items) => {
            for n in items {
                if !eval_bool(n, scope, d)? {
                    return Ok(false);
                }
            }
            Ok(!items.is_empty())
        }
        Node::Or(items) => {
            for n in items {
                if eval_bool(n, scope, d)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        _ => Ok(is_true(eval(node, scope, depth)?.kind())),
    }
}

/// `fractional` with precomputed distributions where they are constants.
fn eval_fractional<'a>(f: &'a FracNode, scope: Scope<'_, 'a>, d: u32) -> R<Val<'a>> {
    let alg = scope.algorithm();
    if let Some(pre) = &f.pre_all {
        // Shorthand: every argument is a constant distribution.
        return Ok(
            match key_hash(&Val::Json(&f.first_lit), frac_data(scope), alg) {
                KeyHash::Hash { hash, .. } => pre.pick(hash),
                KeyHash::Null => Val::Null,
            },
        );
    }
    let first = eval(&f.first, scope, d)?;
    if let Some(pre) = &f.pre_rest {
        match key_hash(&first, frac_data(scope), alg) {
            KeyHash::Null => return Ok(Val::Null),
            KeyHash::Hash {
                hash,
                first_is_dist: false,
            } => return Ok(pre.pick(hash)),
            KeyHash::Hash {
                first_is_dist: true,
                ..
            } => {}
        }
    }
    let mut args = List::new();
    args.push(first);
    for n in &f.rest {
        args.push(eval(n, scope, d)?);
    }
    Ok(fractional(&args, frac_data(scope), alg))
}

/// `getVar` called on an already-evaluated name (Go evaluates it once more first).
fn var_of<'a>(name: &Val<'a>, scope: Scope<'_, 'a>, d: u32) -> R<Val<'a>> {
    let arg = match name.kind() {
        Kind::Arr(_) | Kind::Obj(_) => eval_value(name, scope, d)?,
        _ => name.clone(),
    };
    get_var(arg, scope)
}

fn op_missing<'a>(args: Evaluated<'a>, scope: Scope<'_, 'a>, d: u32) -> R<Val<'a>> {
    let names = match args {
        Evaluated::One(v) if matches!(v.kind(), Kind::Str(_)) => List::from_elem(v, 1),
        other => other.list("missing")?,
    };
    let mut missing = Vec::new();
    for name in names {
        if var_of(&name, scope, d)?.is_nil() {
            missing.push(name);
        }
    }
    Ok(Val::Arr(missing))
}

fn op_missing_some<'a>(l: List<'a>, scope: Scope<'_, 'a>, d: u32) -> R<Val<'a>> {
    let Some(need) = l.first() else {
        return index_panic("missing_some", 0, 0);
    };
    let need = go_int(to_number(need.kind())?);
    let Some(names) = l.get(1) else {
        return index_panic("missing_some", 1, 1);
    };
    let names = as_list(names.clone()).map_err(|v| conversion_panic(v.kind(), "[]interface {}"))?;
    let mut missing = Vec::new();
    let mut found = 0i64;
    for name in names {
        if var_of(&name, scope, d)?.is_nil() {
            missing.push(name);
        } else {
            found += 1;
        }
    }
    Ok(Val::Arr(if need > found { missing } else { Vec::new() }))
}

fn op_set<'a>(l: List<'a>, scope: Scope<'_, 'a>, d: u32) -> R<Val<'a>> {
    if l.len() < 3 {
        return Ok(l.into_iter().next().unwrap_or(Val::Null));
    }
    let Kind::Obj(obj) = l[0].kind() else {
        return Ok(l[0].clone());
    };
    let Kind::Str(prop) = l[1].kind() else {
        return Err(conversion_panic(l[1].kind(), "string"));
    };
    let mut out: BTreeMap<String, Val<'a>> = match obj {
        Obj::Json(m) => m.iter().map(|(k, v)| (k.clone(), Val::Json(v))).collect(),
        Obj::Own(m) => m.clone(),
    };
    let value = match l[2].kind() {
        Kind::Arr(_) | Kind::Obj(_) => eval_value(&l[2], scope, d)?,
        _ => l[2].clone(),
    };
    out.insert(prop.to_owned(), value);
    Ok(Val::Obj(out))
}

// ---------------------------------------------------------------------------------------------------
// iterating operators

fn subject<'a>(it: &'a IterNode, scope: Scope<'_, 'a>, d: u32) -> R<Val<'a>> {
    match &it.subject {
        Subject::Raw(v) => Ok(Val::Json(v)),
        Subject::Expr(n) => eval(n, scope, d),
        Subject::Nil => Ok(Val::Null),
    }
}

fn elements<'a>(v: Val<'a>) -> R<List<'a>> {
    as_list(v).map_err(|v| conversion_panic(v.kind(), "[]interface {}"))
}

/// `solveVars`: replaces every `var` (other than `""` and `.`-prefixed ones) that resolves against
/// `scope` by its value. `None` when nothing changed.
fn solve_vars(raw: &Value, scope: Scope<'_, '_>, d: u32) -> R<Option<Value>> {
    if d > MAX_EVAL_DEPTH {
        return fail(format!(
            "targeting evaluation nested deeper than {MAX_EVAL_DEPTH} levels"
        ));
    }
    match raw {
        Value::Object(m) => {
            if let Some(name) = m.get("var") {
                let keep = matches!(name, Value::String(s) if s.is_empty() || s.starts_with('.'));
                if !keep {
                    let val = if is_static(name) {
                        get_var(Val::Json(name), shorten(scope))?
                    } else {
                        let node = compile_rule(name).map_err(|e| TargetingError(e.0))?;
                        let arg = eval(&node, shorten(scope), d + 1)?.into_static();
                        get_var(arg, shorten(scope))?.into_static()
                    };
                    if !val.is_nil() {
                        return val.to_value().map(Some);
                    }
                }
            }
            let mut out: Option<serde_json::Map<String, Value>> = None;
            for (k, v) in m {
                if k == "var" {
                    continue;
                }
                if let Some(nv) = solve_vars(v, scope, d + 1)? {
                    out.get_or_insert_with(|| m.clone()).insert(k.clone(), nv);
                }
            }
            Ok(out.map(Value::Object))
        }
        Value::Array(a) => {
            let mut out: Option<Vec<Value>> = None;
            for (i, v) in a.iter().enumerate() {
                if let Some(nv) = solve_vars(v, scope, d + 1)? {
                    out.get_or_insert_with(|| a.clone())[i] = nv;
                }
            }
            Ok(out.map(Value::Array))
        }
        _ => Ok(None),
    }
}

/// `apply(conditions, element)` for `all`/`none`/`some`: the (possibly substituted) logic must be an
/// object; returns its truthiness.
fn apply_condition<'a>(
    raw: &Value,
    precompiled: &'a Node,
    solved: Option<&Value>,
    elem: Scope<'_, 'a>,
    d: u32,
) -> R<bool> {
    let logic = solved.unwrap_or(raw);
    if !logic.is_object() {
        return Err(conversion_panic(
            json_kind(logic),
            "map[string]interface {}",
        ));
    }
    match solved {
        None => Ok(is_true(eval(precompiled, elem, d)?.kind())),
        Some(v) => {
            let node = compile_rule(v).map_err(|e| TargetingError(e.0))?;
            let r = eval(&node, shorten(elem), d)?;
            Ok(is_true(r.kind()))
        }
    }
}

fn eval_iter<'a>(it: &'a IterNode, scope: Scope<'_, 'a>, d: u32) -> R<Val<'a>> {
    match it.op {
        IterOp::Filter | IterOp::Map => {
            let (Some((raw, node)), true) = (&it.logic, it.len >= 2) else {
                return Ok(Val::Arr(Vec::new()));
            };
            let subject = subject(it, scope, d)?;
            if subject.is_nil() {
                return Ok(Val::Arr(Vec::new()));
            }
            let items = elements(subject)?;
            if it.op == IterOp::Map {
                let mut out = Vec::with_capacity(items.len());
                for el in &items {
                    out.push(eval(node, scope.with(el), d)?);
                }
                return Ok(Val::Arr(out));
            }
            let solved = solve_vars(raw, scope, d)?;
            let runtime = solved
                .as_ref()
                .map(compile_rule)
                .transpose()
                .map_err(|e| TargetingError(e.0))?;
            let mut out = Vec::new();
            for el in items {
                let keep = match &runtime {
                    None => is_true(eval(node, scope.with(&el), d)?.kind()),
                    Some(n) => {
                        let el2 = el.clone();
                        is_true(eval(n, scope.with(&el2), d)?.kind())
                    }
                };
                if keep {
                    out.push(el);
                }
            }
            Ok(Val::Arr(out))
        }
        IterOp::Reduce => eval_reduce(it, scope, d),
        IterOp::All | IterOp::None | IterOp::Some => {
            if it.len == 0 {
                return index_panic("all/none/some", 0, 0);
            }
            let subject = subject(it, scope, d)?;
            let on_empty = it.op == IterOp::None;
            if !is_true(subject.kind()) {
                return Ok(Val::Bool(on_empty));
            }
            let Some((raw, node)) = &it.logic else {
                return index_panic("all/none/some", 1, 1);
            };
            match it.op {
                IterOp::All => {
                    for el in elements(subject)? {
                        let solved = solve_vars(raw, scope.with(&el), d)?;
                        if !apply_condition(raw, node, solved.as_ref(), scope.with(&el), d)? {
                            return Ok(Val::Bool(false));
                        }
                    }
                    Ok(Val::Bool(true))
                }
                IterOp::None => {
                    let solved = solve_vars(raw, scope, d)?;
                    for el in elements(subject)? {
                        if apply_condition(raw, node, solved.as_ref(), scope.with(&el), d)? {
                            return Ok(Val::Bool(false));
                        }
                    }
                    Ok(Val::Bool(true))
                }
                _ => {
                    let outer = solve_vars(raw, scope, d)?;
                    let logic = outer.as_ref().unwrap_or(raw);
                    for el in elements(subject)? {
                        let inner = solve_vars(logic, scope.with(&el), d)?;
                        let solved = inner.as_ref().or(outer.as_ref());
                        if apply_condition(raw, node, solved, scope.with(&el), d)? {
                            return Ok(Val::Bool(true));
                        }
                    }
                    Ok(Val::Bool(false))
                }
            }
        }
    }
}

fn eval_reduce<'a>(it: &'a IterNode, scope: Scope<'_, 'a>, d: u32) -> R<Val<'a>> {
    let (Some((raw, node)), Some(init)) = (&it.logic, &it.init) else {
        return Ok(Val::Num(0.0));
    };
    let init = match init {
        super::compile::Init::Expr(n) => eval(n, scope, d)?,
        super::compile::Init::Raw(v) => Val::Json(v),
    };
    #[derive(Clone, Copy, PartialEq)]
    enum Ty {
        Bool,
        Number,
        Text,
    }
    let (mut acc, ty) = match init.kind() {
        Kind::Bool(b) => (Val::Bool(b), Ty::Bool),
        k @ (Kind::Num(_) | Kind::Int(_)) => (Val::Num(to_number(k)?), Ty::Number),
        Kind::Str(_) => (init.clone(), Ty::Text),
        other => {
            return fail(format!(
                "The type \"{}\" is not supported",
                super::value::type_name(other)
            ));
        }
    };
    let subject = subject(it, scope, d)?;
    if subject.is_nil() {
        return Ok(Val::Num(0.0));
    }
    for el in elements(subject)? {
        if el.is_nil() {
            continue;
        }
        if !raw.is_object() {
            return Err(conversion_panic(json_kind(raw), "map[string]interface {}"));
        }
        let type_name = match ty {
            Ty::Bool => "bool",
            Ty::Number => "number",
            Ty::Text => "string",
        };
        let mut ctx = BTreeMap::new();
        ctx.insert("current".to_owned(), el);
        ctx.insert("accumulator".to_owned(), acc);
        ctx.insert("valueType".to_owned(), Val::Str(Cow::Borrowed(type_name)));
        let ctx = Val::Obj(ctx);
        let v = eval(node, scope.with(&ctx), d)?;
        acc = match ty {
            Ty::Bool => Val::Bool(is_true(v.kind())),
            Ty::Number => Val::Num(to_number(v.kind())?),
            Ty::Text => Val::Str(Cow::Owned(to_str(v.kind())?.into_owned())),
        };
    }
    Ok(acc)
}
