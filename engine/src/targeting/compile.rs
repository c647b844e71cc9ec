//! Compiling a JSON rule into a tree of operator nodes, once per document.
//!
//! The tree mirrors how `diegoholiveira/jsonlogic` walks the JSON at evaluation time (`parseValues` /
//! `apply`): a one-key object is an operator call, any other object is a literal, arrays are evaluated
//! element by element. Nothing semantic fails here: an unknown operator or a malformed argument becomes a
//! [`Node::Fail`] that errors only if evaluation reaches it, as it does in flagd. Only the limits fail.

use serde_json::Value;

use super::fractional::PreDists;
use super::semver::{self, SemOp};
use super::{MAX_RULE_DEPTH, MAX_RULE_NODES, RuleError};

/// A compiled rule node.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// A value that evaluates to itself: scalars, null, objects with zero or several keys, and arrays
    /// holding only such values.
    Lit(Value),
    /// An array with at least one operator inside: evaluated element by element.
    Array(Vec<Node>),
    /// `var` with a constant path.
    Var(Box<VarNode>),
    /// `var` whose argument is computed.
    VarDyn(Box<Node>),
    /// Evaluation reaches a Go panic (unknown operator, argument of the wrong shape).
    Fail(Box<str>),
    /// `and`.
    And(Vec<Node>),
    /// `or`.
    Or(Vec<Node>),
    /// `if` / `?:`.
    If(Vec<Node>),
    /// An operator whose arguments are evaluated first.
    Call(Box<Call>),
    /// A comparison, `in`, `starts_with` or `ends_with` with exactly two operands.
    Binary(Box<Binary>),
    /// `fractional` with an argument array.
    Fractional(Box<FracNode>),
    /// `filter`, `map`, `reduce`, `all`, `none`, `some`.
    Iter(Box<IterNode>),
    /// `sem_ver` with a constant operator and target.
    SemVerConst(Box<SemVerConst>),
}

/// `var` with a constant, pre-split path.
#[derive(Debug, Clone)]
pub(crate) struct VarNode {
    pub(crate) path: Path,
    /// The array elements after the path; exactly one is the default.
    pub(crate) rest: Vec<Node>,
}

/// A pre-split `var` path.
#[derive(Debug, Clone)]
pub(crate) struct Path {
    /// The non-empty dot-separated parts; empty means "the whole data".
    pub(crate) parts: Box<[Part]>,
    /// The first part is `$flagd` (resolved virtually at the top level).
    pub(crate) flagd: bool,
}

/// One path part, with the array index Go would use for it (`int(typing.ToNumber(part))`).
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub(crate) key: Box<str>,
    pub(crate) index: i64,
}

impl Path {
    pub(crate) fn parse(path: &str) -> Path {
        let parts = path
            .split('.')
            .filter(|p| !p.is_empty())
            .map(|p| Part {
                key: p.into(),
                index: super::value::go_int(super::value::parse_float(p).unwrap_or(0.0)),
            })
            .collect::<Box<[Part]>>();
        let flagd = parts.first().is_some_and(|p| &*p.key == "$flagd");
        Path { parts, flagd }
    }
}

/// The arguments of an operator that evaluates them first (`parseValues`).
#[derive(Debug, Clone)]
pub(crate) enum Args {
    /// The raw argument is an array.
    List(Vec<Node>),
    /// The raw argument is anything else (evaluated as one value).
    One(Node),
}

/// The operators whose arguments are evaluated first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    StrictEq,
    StrictNe,
    Lt,
    Le,
    Gt,
    Ge,
    Not,
    NotNot,
    In,
    Cat,
    Substr,
    Merge,
    Missing,
    MissingSome,
    Max,
    Min,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Abs,
    Set,
    ContainsAll,
    ContainsAny,
    ContainsNone,
    Fractional,
    SemVer,
    StartsWith,
    EndsWith,
}

/// An operator call.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) op: Op,
    pub(crate) args: Args,
}

/// A two-operand operator.
#[derive(Debug, Clone)]
pub(crate) struct Binary {
    pub(crate) op: Op,
    pub(crate) a: Node,
    pub(crate) b: Node,
}

/// `fractional` with an argument array (at least one element).
#[derive(Debug, Clone)]
pub(crate) struct FracNode {
    /// The first argument (bucketing key or first distribution).
    pub(crate) first: Node,
    /// The first argument's JSON, used when `pre_all` is set.
    pub(crate) first_lit: Value,
    /// The remaining arguments.
    pub(crate) rest: Vec<Node>,
    /// Every argument is a constant array: the distributions, precomputed.
    pub(crate) pre_all: Option<PreDists>,
    /// The arguments after the first are constants: those distributions, precomputed.
    pub(crate) pre_rest: Option<PreDists>,
}

/// The iterating operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IterOp {
    Filter,
    Map,
    Reduce,
    All,
    None,
    Some,
}

/// An iterating operator; these read their raw (unevaluated) argument array.
#[derive(Debug, Clone)]
pub(crate) struct IterNode {
    pub(crate) op: IterOp,
    /// Length of the raw argument array.
    pub(crate) len: usize,
    pub(crate) subject: Subject,
    /// The raw logic (second element) and its compiled form.
    pub(crate) logic: Option<(Value, Node)>,
    /// `reduce`'s initial value (third element): a computed object or a raw value.
    pub(crate) init: Option<Init>,
}

/// Where the iterated array comes from (`extractSubject`).
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    /// A literal array, iterated unevaluated.
    Raw(Value),
    /// An object, applied as a rule.
    Expr(Node),
    /// Anything else: nil.
    Nil,
}

/// `reduce`'s initial value.
#[derive(Debug, Clone)]
pub(crate) enum Init {
    Expr(Node),
    Raw(Value),
}

/// `sem_ver` whose operator and target are constants: both are parsed once.
#[derive(Debug, Clone)]
pub(crate) struct SemVerConst {
    pub(crate) version: Node,
    /// `None`: not a known operator (always null).
    pub(crate) op: Option<SemOp>,
    /// The target after `%v` and `v`-prefix normalisation, parsed; `None` when invalid (always null).
    pub(crate) target: Option<semver::OwnedVersion>,
}

/// Compile-time accounting against the limits.
pub(crate) struct Budget {
    nodes: usize,
}

impl Budget {
    pub(crate) fn new() -> Self {
        Budget { nodes: 0 }
    }
}

/// Checks the limits over the whole JSON value (bounded recursion: stops at the first violation).
fn check(v: &Value, depth: usize, budget: &mut Budget) -> Result<(), RuleError> {
    budget.nodes += 1;
    if budget.nodes > MAX_RULE_NODES {
        return Err(RuleError(format!(
            "targeting rule has more than {MAX_RULE_NODES} JSON values"
        )));
    }
    if depth > MAX_RULE_DEPTH {
        return Err(RuleError(format!(
            "targeting rule is nested deeper than {MAX_RULE_DEPTH} levels"
        )));
    }
    match v {
        Value::Array(a) => a.iter().try_for_each(|x| check(x, depth + 1, budget)),
        Value::Object(m) => m.values().try_for_each(|x| check(x, depth + 1, budget)),
        _ => Ok(()),
    }
}

/// Compiles a rule, enforcing [`MAX_RULE_DEPTH`] and [`MAX_RULE_NODES`].
pub(crate) fn compile_rule(v: &Value) -> Result<Node, RuleError> {
    check(v, 1, &mut Budget::new())?;
    Ok(compile(v))
}

/// True when `parseValues` returns the value unchanged.
pub(crate) fn is_static(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.len() != 1,
        Value::Array(a) => a.iter().all(is_static),
        _ => true,
    }
}

/// Compiles a value already checked against the limits.
fn compile(v: &Value) -> Node {
    match v {
        Value::Object(m) if m.len() == 1 => match m.iter().next() {
            Some((op, args)) => compile_op(op, args),
            None => Node::Lit(v.clone()),
        },
        Value::Array(a) if !is_static(v) => Node::Array(a.iter().map(compile).collect()),
        _ => Node::Lit(v.clone()),
    }
}

fn not_array(op: &str, args: &Value) -> Node {
    let ty = match args {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    };
    Node::Fail(
        format!("{op}: interface conversion: interface {{}} is {ty}, not []interface {{}}").into(),
    )
}

fn raw_list(op: &str, args: &Value) -> Result<Vec<Node>, Node> {
    match args {
        Value::Array(a) => Ok(a.iter().map(compile).collect()),
        other => Err(not_array(op, other)),
    }
}

fn compile_args(args: &Value) -> Args {
    match args {
        Value::Array(a) => Args::List(a.iter().map(compile).collect()),
        other => Args::One(compile(other)),
    }
}

fn compile_op(op: &str, args: &Value) -> Node {
    let call = |op: Op| match args {
        Value::Array(a) if a.len() == 2 && is_binary(op) => Node::Binary(Box::new(Binary {
            op,
            a: compile(&a[0]),
            b: compile(&a[1]),
        })),
        Value::Array(a) if op == Op::Fractional && !a.is_empty() => {
            let rest = &a[1..];
            let all_static = |vs: &[Value]| vs.iter().all(|v| v.is_array() && is_static(v));
            Node::Fractional(Box::new(FracNode {
                first: compile(&a[0]),
                first_lit: a[0].clone(),
                rest: rest.iter().map(compile).collect(),
                pre_all: all_static(a).then(|| PreDists::new(a)),
                pre_rest: all_static(rest).then(|| PreDists::new(rest)),
            }))
        }
        _ => Node::Call(Box::new(Call {
            op,
            args: compile_args(args),
        })),
    };
    match op {
        "var" => compile_var(args),
        "and" => raw_list(op, args).map_or_else(|e| e, Node::And),
        "or" => raw_list(op, args).map_or_else(|e| e, Node::Or),
        "if" | "?:" => raw_list(op, args).map_or_else(|e| e, Node::If),
        "filter" => compile_iter(IterOp::Filter, op, args),
        "map" => compile_iter(IterOp::Map, op, args),
        "reduce" => compile_iter(IterOp::Reduce, op, args),
        "all" => compile_iter(IterOp::All, op, args),
        "none" => compile_iter(IterOp::None, op, args),
        "some" => compile_iter(IterOp::Some, op, args),
        "==" => call(Op::Eq),
        "!=" => call(Op::Ne),
        "===" => call(Op::StrictEq),
        "!==" => call(Op::StrictNe),
        "<" => call(Op::Lt),
        "<=" => call(Op::Le),
        ">" => call(Op::Gt),
        ">=" => call(Op::Ge),
        "!" => call(Op::Not),
        "!!" => call(Op::NotNot),
        "in" => call(Op::In),
        "cat" => call(Op::Cat),
        "substr" => call(Op::Substr),
        "merge" => call(Op::Merge),
        "missing" => call(Op::Missing),
        "missing_some" => call(Op::MissingSome),
        "max" => call(Op::Max),
        "min" => call(Op::Min),
        "+" => call(Op::Add),
        "-" => call(Op::Sub),
        "*" => call(Op::Mul),
        "/" => call(Op::Div),
        "%" => call(Op::Mod),
        "abs" => call(Op::Abs),
        "set" => call(Op::Set),
        "contains_all" => call(Op::ContainsAll),
        "contains_any" => call(Op::ContainsAny),
        "contains_none" => call(Op::ContainsNone),
        "fractional" => call(Op::Fractional),
        "starts_with" => call(Op::StartsWith),
        "ends_with" => call(Op::EndsWith),
        "sem_ver" => compile_sem_ver(args).unwrap_or_else(|| call(Op::SemVer)),
        other => Node::Fail(format!("The operator \"{other}\" is not supported").into()),
    }
}

fn is_binary(op: Op) -> bool {
    matches!(
        op,
        Op::Eq
            | Op::Ne
            | Op::StrictEq
            | Op::StrictNe
            | Op::Lt
            | Op::Le
            | Op::Gt
            | Op::Ge
            | Op::In
            | Op::StartsWith
            | Op::EndsWith
    )
}

fn compile_var(args: &Value) -> Node {
    match args {
        Value::String(s) if !s.is_empty() => Node::Var(Box::new(VarNode {
            path: Path::parse(s),
            rest: Vec::new(),
        })),
        Value::Number(n) => {
            let path = super::value::format_f(n.as_f64().unwrap_or(0.0));
            Node::Var(Box::new(VarNode {
                path: Path::parse(&path),
                rest: Vec::new(),
            }))
        }
        Value::Array(a) => match a.first() {
            Some(Value::String(s)) if !s.is_empty() => Node::Var(Box::new(VarNode {
                path: Path::parse(s),
                rest: a[1..].iter().map(compile).collect(),
            })),
            _ => Node::VarDyn(Box::new(compile(args))),
        },
        other => Node::VarDyn(Box::new(compile(other))),
    }
}

fn compile_iter(op: IterOp, name: &str, args: &Value) -> Node {
    let Value::Array(a) = args else {
        return not_array(name, args);
    };
    let subject = match a.first() {
        Some(v @ Value::Array(_)) => Subject::Raw(v.clone()),
        Some(v @ Value::Object(_)) => Subject::Expr(compile(v)),
        _ => Subject::Nil,
    };
    let logic = a.get(1).map(|v| (v.clone(), compile(v)));
    let init = a.get(2).map(|v| match v {
        Value::Object(_) => Init::Expr(compile(v)),
        other => Init::Raw(other.clone()),
    });
    Node::Iter(Box::new(IterNode {
        op,
        len: a.len(),
        subject,
        logic,
        init,
    }))
}

fn compile_sem_ver(args: &Value) -> Option<Node> {
    let Value::Array(a) = args else { return None };
    let [version, Value::String(op), target] = a.as_slice() else {
        return None;
    };
    if !is_static(target) {
        return None;
    }
    let target = semver::normalize(super::value::json_kind(target));
    Some(Node::SemVerConst(Box::new(SemVerConst {
        version: compile(version),
        op: SemOp::parse(op),
        target: target.and_then(|t| semver::OwnedVersion::parse(&t)),
    })))
}
