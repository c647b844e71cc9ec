//! Explaining a rule: the path an evaluation takes through the rule as written, node by node, with each
//! node's result, the `if` branch chosen, the `$ref` each subtree came from, the `fractional` bucketing and
//! the `sem_ver` parses (`docs/admin.md#explain`).
//!
//! The walk is separate from [`super::eval`]: evaluation pays nothing for it. Control flow (`if`, `?:`,
//! `and`, `or`) is decided here, from the truthiness of each operand the engine computes, so the result
//! of an explained `if` is the walk's own conclusion; every other node's result is the engine's own
//! evaluation of that node. The property test in `tests.rs` holds the two to agreeing on arbitrary rules.
//! An explanation costs more than an evaluation (each node is compiled and evaluated on its own), so it is
//! bounded: after [`MAX_EXPLAIN_STEPS`] nodes the rest are evaluated without being expanded.

use serde::Serialize;
use serde_json::{Map, Value};

use super::compile::{Node, compile_rule, is_static};
use super::eval::{Scope, eval};
use super::fractional::{KeyHash, key_hash, total_weight, weight};
use super::scope::{frac_data, lookup};
use super::semver;
use super::value::{Kind, Val, is_true, json_kind};
use super::{Data, FractionalAlgorithm};

/// The most nodes one explanation expands; deeper or later nodes still get their result, without
/// children (`truncated`).
pub const MAX_EXPLAIN_STEPS: usize = 2000;

/// Arrays, objects and strings longer than this are shortened in an explanation's `rule` and `result`
/// (the evaluation itself always uses the whole value).
pub const MAX_PREVIEW_ITEMS: usize = 50;

/// One node of an explained rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// The operator (`if`, `==`, `fractional`, …), or `literal` for a value and `array` for an array that
    /// holds operators.
    pub op: String,
    /// The `$evaluators` this subtree was inlined from (`{"$ref": NAME}` in the document).
    #[serde(rename = "ref", skip_serializing_if = "Vec::is_empty")]
    pub refs: Vec<String>,
    /// The node's argument as written, for literals and `var`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Value>,
    /// Whether the evaluation reached this node (an `if` branch not taken, or an operand after `and`/`or`
    /// decided, is not evaluated).
    pub evaluated: bool,
    /// What the node evaluated to (absent when not evaluated or failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why the node failed (evaluation then fails as a whole) or, for a NaN or infinite number, why its
    /// value cannot be shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For the condition of an `if` and the operands of `and`/`or`: how the result was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truthy: Option<bool>,
    /// What this operator did beyond its result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
    /// A value in `rule` or `result` was shortened, or the children were not expanded.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The operands, in the order written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Step>,
}

/// What an operator did, beyond its result.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Detail {
    /// `if` / `?:`: the child chosen as the result (a branch after a truthy condition, or the final else),
    /// `None` when no condition held and there is no else.
    #[serde(rename_all = "camelCase")]
    Branch {
        /// Index of the operand as written (into `children`, unless the step is `truncated`).
        taken: Option<usize>,
    },
    /// The `if` branch yielded a one-key object, which the Go library applies again as a rule.
    #[serde(rename_all = "camelCase")]
    Reapplied {
        /// The object applied.
        rule: Value,
    },
    /// `var`: the path read and whether the data has it (otherwise the default applies).
    #[serde(rename_all = "camelCase")]
    Var {
        /// The path as written.
        path: String,
        /// True when the path exists in the data.
        found: bool,
    },
    /// `fractional`: the bucketing.
    Fractional(Box<FractionalDetail>),
    /// `sem_ver`: both operands as parsed (`None` when not a valid version; the result is then null).
    #[serde(rename_all = "camelCase")]
    SemVer {
        /// The version compared.
        version: Option<String>,
        /// The operator.
        operator: Option<String>,
        /// The version compared with.
        target: Option<String>,
    },
    /// `map`, `filter`, `reduce`, `all`, `none`, `some`: the inner rule runs once per element and is not
    /// expanded.
    PerElement,
}

/// How `fractional` chose a bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FractionalDetail {
    /// `v2` or `v3`.
    pub algorithm: &'static str,
    /// What was hashed: the first argument, or the flag key and `targetingKey`.
    pub bucketing_key: Value,
    /// Where the key came from: `argument` or `flagKey+targetingKey`.
    pub key_source: &'static str,
    /// MurmurHash3 (x86, 32 bits, seed 0) of the key's encoding; `None` when there is no usable key.
    pub hash: Option<u32>,
    /// Sum of the weights.
    pub total_weight: Option<u64>,
    /// `hash × totalWeight >> 32`: the point that falls into one bucket.
    pub bucket: Option<u64>,
    /// The buckets in order, each `[start, end)` of the total weight.
    pub buckets: Vec<FractionalBucket>,
    /// The variant whose bucket holds `bucket`.
    pub chosen: Option<Value>,
    /// Why there is no result, when there is none (no key, invalid distributions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub null_because: Option<&'static str>,
}

/// One `fractional` bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FractionalBucket {
    /// The variant.
    pub variant: Value,
    /// Its weight.
    pub weight: u64,
    /// First point of the bucket.
    pub start: u64,
    /// One past its last point.
    pub end: u64,
}

/// What a node evaluated to, as the walk needs it.
#[derive(Debug, Clone)]
struct Evaluated {
    /// The value, or why it cannot be had.
    value: Result<Value, String>,
    /// Whether Go reads the value as true.
    truthy: bool,
    /// The evaluation failed (as opposed to a value that exists but has no JSON form, such as NaN).
    failed: bool,
}

impl Evaluated {
    fn failure(message: String) -> Evaluated {
        Evaluated {
            value: Err(message),
            truthy: false,
            failed: true,
        }
    }

    fn of(val: &Val<'_>) -> Evaluated {
        Evaluated {
            value: val.to_value().map_err(|e| e.0),
            truthy: is_true(val.kind()),
            failed: false,
        }
    }
}

/// Explains `rule` (the targeting as written, `$evaluators` inlined) against `data`. `evaluators` names
/// the subtrees that came from a `$ref`. Returns the tree and the rule's result (or error) as the walk
/// concluded it, which the engine's evaluation of the same rule must equal.
pub(crate) fn explain_rule(
    rule: &Value,
    data: &Data<'_>,
    evaluators: Option<&Map<String, Value>>,
) -> (Step, Result<Value, String>) {
    let mut walk = Walk {
        data,
        evaluators,
        steps: 0,
    };
    let (step, evaluated) = walk.node(rule, 0, true);
    let result = match evaluated {
        Some(e) => e.value,
        None => Err("not evaluated".to_owned()),
    };
    (step, result)
}

struct Walk<'d, 'a> {
    data: &'d Data<'a>,
    evaluators: Option<&'d Map<String, Value>>,
    steps: usize,
}

impl Walk<'_, '_> {
    /// Evaluates `json` as the engine does, at evaluation depth `depth`.
    fn run(&self, json: &Value, depth: u32) -> Evaluated {
        let node = match compile_rule(json) {
            Ok(node) => node,
            Err(e) => return Evaluated::failure(e.0),
        };
        match eval(&node, Scope::Top(self.data), depth) {
            Ok(val) => Evaluated::of(&val),
            Err(e) => Evaluated::failure(e.0),
        }
    }

    /// Explains one node. `evaluate` is false for nodes the evaluation does not reach (their structure is
    /// still shown). Returns what the node evaluated to when it was evaluated.
    fn node(&mut self, json: &Value, depth: u32, evaluate: bool) -> (Step, Option<Evaluated>) {
        self.steps += 1;
        let mut step = Step {
            op: String::new(),
            refs: self.refs(json),
            rule: None,
            evaluated: evaluate,
            result: None,
            error: None,
            truthy: None,
            detail: None,
            truncated: false,
            children: Vec::new(),
        };
        let call = match json {
            Value::Object(m) if m.len() == 1 => m.iter().next(),
            _ => None,
        };
        let Some((op, args)) = call else {
            if json.is_array() && !is_static(json) {
                step.op = "array".to_owned();
                if let Some(items) = json.as_array() {
                    return self.operands(step, json, items, depth, evaluate);
                }
            }
            step.op = "literal".to_owned();
            step.rule = Some(preview(json, &mut step.truncated));
            let evaluated = evaluate.then(|| Evaluated {
                value: Ok(json.clone()),
                truthy: is_true(json_kind(json)),
                failed: false,
            });
            return self.finish(step, evaluated);
        };
        step.op = op.clone();
        match (op.as_str(), args) {
            ("if" | "?:", Value::Array(items)) => self.branches(step, items, depth, evaluate),
            ("and" | "or", Value::Array(items)) => {
                self.logic(step, op == "or", items, depth, evaluate)
            }
            ("var", _) => {
                step.rule = Some(preview(args, &mut step.truncated));
                let evaluated = evaluate.then(|| {
                    step.detail = self.var_detail(json, args);
                    self.run(json, depth)
                });
                self.finish(step, evaluated)
            }
            ("map" | "filter" | "reduce" | "all" | "none" | "some", Value::Array(items)) => {
                if let Some(subject) = items.first() {
                    // The subject is evaluated as a rule when it is an object; the inner rule is not.
                    let (child, _) = self.node(subject, depth + 1, evaluate && subject.is_object());
                    step.children.push(child);
                }
                step.detail = Some(Detail::PerElement);
                let evaluated = evaluate.then(|| self.run(json, depth));
                self.finish(step, evaluated)
            }
            _ => {
                let items = match args {
                    Value::Array(items) => items.as_slice(),
                    one => std::slice::from_ref(one),
                };
                let (mut step, evaluated) = self.operands(step, json, items, depth, evaluate);
                if evaluated.as_ref().is_some_and(|e| !e.failed) {
                    step.detail = match op.as_str() {
                        "fractional" => self.fractional_detail(args, depth),
                        "sem_ver" => sem_ver_detail(&step.children),
                        _ => None,
                    };
                }
                (step, evaluated)
            }
        }
    }

    /// An operator whose operands are all evaluated first: each operand is explained, the node's result is
    /// the engine's.
    fn operands(
        &mut self,
        mut step: Step,
        json: &Value,
        items: &[Value],
        depth: u32,
        evaluate: bool,
    ) -> (Step, Option<Evaluated>) {
        let mut failed = false;
        for item in items {
            if self.steps >= MAX_EXPLAIN_STEPS {
                // The node's own evaluation below covers the operands left.
                step.truncated = true;
                break;
            }
            let (child, evaluated) = self.node(item, depth + 1, evaluate && !failed);
            // Go evaluates the operands in order and stops at the first that panics.
            failed |= evaluated.is_some_and(|e| e.failed);
            step.children.push(child);
        }
        let evaluated = evaluate.then(|| self.run(json, depth));
        self.finish(step, evaluated)
    }

    /// `if` / `?:`: conditions in order; the branch after the first truthy one, else the final else.
    fn branches(
        &mut self,
        mut step: Step,
        items: &[Value],
        depth: u32,
        evaluate: bool,
    ) -> (Step, Option<Evaluated>) {
        let d = depth + 1;
        let len = items.len();
        let mut open = evaluate;
        let mut outcome: Option<Evaluated> = None;
        let mut taken = None;
        let mut i = 0;
        while i + 1 < len {
            let held = self.child(&mut step, &items[i], d, open, true);
            let choose = match held {
                Some(c) if c.failed => {
                    outcome = Some(c);
                    open = false;
                    false
                }
                Some(c) => c.truthy,
                None => false,
            };
            let value = self.child(&mut step, &items[i + 1], d, open && choose, false);
            if open && choose {
                taken = Some(i + 1);
                outcome = value;
                open = false;
            }
            i += 2;
        }
        if len % 2 == 1 {
            let value = self.child(&mut step, &items[len - 1], d, open, false);
            if open {
                taken = Some(len - 1);
                outcome = value;
                open = false;
            }
        }
        let _ = open;
        if !evaluate {
            return self.finish(step, None);
        }
        step.detail = Some(Detail::Branch { taken });
        let evaluated = match (taken, outcome) {
            (_, Some(value)) if value.failed => value,
            (Some(_), Some(value)) => self.clause(&mut step, value, d),
            _ => Evaluated {
                value: Ok(Value::Null),
                truthy: false,
                failed: false,
            },
        };
        self.finish(step, Some(evaluated))
    }

    /// The Go library applies a branch's one-key object result again as a rule.
    fn clause(&mut self, step: &mut Step, value: Evaluated, depth: u32) -> Evaluated {
        match &value.value {
            Ok(rule @ Value::Object(m)) if m.len() == 1 => {
                let again = self.run(rule, depth + 1);
                step.detail = Some(Detail::Reapplied {
                    rule: preview(rule, &mut step.truncated),
                });
                again
            }
            _ => value,
        }
    }

    /// `and` / `or`: operands in order until one decides; the result is the last operand evaluated.
    fn logic(
        &mut self,
        mut step: Step,
        or: bool,
        items: &[Value],
        depth: u32,
        evaluate: bool,
    ) -> (Step, Option<Evaluated>) {
        let mut open = evaluate;
        let mut last = Evaluated {
            value: Ok(Value::Null),
            truthy: false,
            failed: false,
        };
        for item in items {
            if let Some(e) = self.child(&mut step, item, depth + 1, open, true) {
                open = !e.failed && e.truthy != or;
                last = e;
            }
        }
        self.finish(step, evaluate.then_some(last))
    }

    /// Explains an operand of a node whose result this walk decides (`if`, `and`, `or`) and adds it to
    /// `parent`; past [`MAX_EXPLAIN_STEPS`] the operand is only evaluated (when `evaluate`), not shown.
    /// `truthiness` records on the child how its result was read.
    fn child(
        &mut self,
        parent: &mut Step,
        json: &Value,
        depth: u32,
        evaluate: bool,
        truthiness: bool,
    ) -> Option<Evaluated> {
        if self.steps >= MAX_EXPLAIN_STEPS {
            parent.truncated = true;
            return evaluate.then(|| self.run(json, depth));
        }
        let (mut child, evaluated) = self.node(json, depth, evaluate);
        if truthiness && let Some(e) = &evaluated {
            child.truthy = (!e.failed).then_some(e.truthy);
        }
        parent.children.push(child);
        evaluated
    }

    /// Writes an evaluation into the step.
    fn finish(&self, mut step: Step, evaluated: Option<Evaluated>) -> (Step, Option<Evaluated>) {
        if let Some(e) = &evaluated {
            match &e.value {
                Ok(value) => step.result = Some(preview(value, &mut step.truncated)),
                Err(message) => step.error = Some(message.clone()),
            }
        }
        (step, evaluated)
    }

    /// The `$evaluators` whose inlined body is this node.
    fn refs(&self, json: &Value) -> Vec<String> {
        let Some(evaluators) = self.evaluators else {
            return Vec::new();
        };
        if !json.is_object() {
            return Vec::new();
        }
        evaluators
            .iter()
            .filter(|(_, body)| *body == json)
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn var_detail(&self, json: &Value, args: &Value) -> Option<Detail> {
        let Ok(Node::Var(var)) = compile_rule(json) else {
            return None;
        };
        let path = match args {
            Value::Array(items) => items.first().unwrap_or(&Value::Null),
            one => one,
        };
        let path = match path {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let found = matches!(lookup(Scope::Top(self.data), &var.path), Ok(Some(_)));
        Some(Detail::Var { path, found })
    }

    /// Recomputes `fractional`'s choice from its evaluated arguments, showing each step.
    fn fractional_detail(&self, args: &Value, depth: u32) -> Option<Detail> {
        let Value::Array(items) = args else {
            return None;
        };
        let mut nodes = Vec::with_capacity(items.len());
        for item in items {
            nodes.push(compile_rule(item).ok()?);
        }
        let scope = Scope::Top(self.data);
        let mut vals = Vec::with_capacity(nodes.len());
        for node in &nodes {
            vals.push(eval(node, scope, depth + 1).ok()?);
        }
        let first = vals.first()?;
        let algorithm = scope.algorithm();
        let targeting_key = self.data.context.get("targetingKey");
        let (bucketing_key, key_source) = match (algorithm, first.kind()) {
            (FractionalAlgorithm::V2, Kind::Str(s)) => (Value::String(s.to_owned()), "argument"),
            (FractionalAlgorithm::V3, Kind::Arr(_)) | (FractionalAlgorithm::V2, _) => {
                let key = match targeting_key {
                    Some(Value::String(tk)) if algorithm == FractionalAlgorithm::V3 => {
                        serde_json::json!([self.data.flag_key, tk])
                    }
                    Some(Value::String(tk)) => Value::String(format!("{}{tk}", self.data.flag_key)),
                    _ => Value::Null,
                };
                (key, "flagKey+targetingKey")
            }
            (FractionalAlgorithm::V3, _) => (first.to_value().unwrap_or(Value::Null), "argument"),
        };
        let mut detail = FractionalDetail {
            algorithm: match algorithm {
                FractionalAlgorithm::V2 => "v2",
                FractionalAlgorithm::V3 => "v3",
            },
            bucketing_key,
            key_source,
            hash: None,
            total_weight: None,
            bucket: None,
            buckets: Vec::new(),
            chosen: None,
            null_because: None,
        };
        let (hash, first_is_dist) = match key_hash(first, frac_data(scope), algorithm) {
            KeyHash::Null => {
                detail.null_because = Some("no usable bucketing key");
                return Some(Detail::Fractional(Box::new(detail)));
            }
            KeyHash::Hash {
                hash,
                first_is_dist,
            } => (hash, first_is_dist),
        };
        detail.hash = Some(hash);
        let dists = if first_is_dist { &vals[..] } else { &vals[1..] };
        let total = match total_weight(dists) {
            Some(total) if total > 0 => total,
            _ => {
                detail.null_because = Some("the distributions are invalid or weigh nothing");
                return Some(Detail::Fractional(Box::new(detail)));
            }
        };
        let bucket = (u64::from(hash) * total) >> 32;
        detail.total_weight = Some(total);
        detail.bucket = Some(bucket);
        let mut start = 0;
        for dist in dists {
            let Kind::Arr(arr) = dist.kind() else {
                break;
            };
            let w = weight(arr).unwrap_or(0);
            let variant = arr.get(0).to_value().unwrap_or(Value::Null);
            if detail.chosen.is_none() && bucket < start + w {
                detail.chosen = Some(variant.clone());
            }
            detail.buckets.push(FractionalBucket {
                variant,
                weight: w,
                start,
                end: start + w,
            });
            start += w;
        }
        Some(Detail::Fractional(Box::new(detail)))
    }
}

/// `sem_ver`'s operands as parsed, from its evaluated children.
fn sem_ver_detail(children: &[Step]) -> Option<Detail> {
    let [version, operator, target] = children else {
        return None;
    };
    let parsed = |step: &Step| {
        let value = step.result.as_ref()?;
        let text = semver::text(json_kind(value));
        semver::parse(semver::body(&text)).map(|v| v.to_string())
    };
    Some(Detail::SemVer {
        version: parsed(version),
        operator: operator
            .result
            .as_ref()
            .and_then(Value::as_str)
            .map(str::to_owned),
        target: parsed(target),
    })
}

/// A copy of `value` with long arrays, objects and strings shortened to [`MAX_PREVIEW_ITEMS`] entries;
/// sets `truncated` when it shortened anything.
fn preview(value: &Value, truncated: &mut bool) -> Value {
    const MAX_STRING: usize = 1000;
    match value {
        Value::Array(items) => {
            *truncated |= items.len() > MAX_PREVIEW_ITEMS;
            Value::Array(
                items
                    .iter()
                    .take(MAX_PREVIEW_ITEMS)
                    .map(|v| preview(v, truncated))
                    .collect(),
            )
        }
        Value::Object(map) => {
            *truncated |= map.len() > MAX_PREVIEW_ITEMS;
            Value::Object(
                map.iter()
                    .take(MAX_PREVIEW_ITEMS)
                    .map(|(k, v)| (k.clone(), preview(v, truncated)))
                    .collect(),
            )
        }
        Value::String(s) if s.len() > MAX_STRING => {
            *truncated = true;
            let mut end = MAX_STRING;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            Value::String(s[..end].to_owned())
        }
        other => other.clone(),
    }
}
