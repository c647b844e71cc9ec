//! Validation of flag documents against the rules of the flagd JSON schemas (`flagd.json`, `flags.json`,
//! `targeting.json` of flagd-schemas `json/`, version 0).
//!
//! What it owns: the schemas' rules, written as Rust code so that the engine validates offline, with no
//! schema files to ship and no JSON-schema interpreter on the load path. Every violation names the flag (when
//! there is one) and a JSON pointer. The table-driven tests run the schema repository's own
//! `test/**/positive|negative` fixtures through these rules.
//!
//! Where the rules knowingly differ from what a JSON-schema validator reports on the published schemas:
//! an object with several operators that all belong to the same schema group (`{"==": …, "!=": …}`) is
//! accepted by the schema's `additionalProperties` trick but is reported here, since JSON Logic evaluates only
//! one of them. Everything else follows the schemas, including their quirks (an array literal's contents are
//! never checked; the unary operators accept any array; `{}` is valid only as a whole rule).
//!
//! What it does not do: reject anything. [`crate::load`] decides whether a violation is a warning (flagd's
//! behaviour, the default) or a rejection (strict mode).

use std::fmt;

use serde_json::Value;

const ROOT: Ptr<'static> = Ptr::ROOT;

/// At most this many violations are reported for one document (the rest are counted in a final entry).
pub const MAX_VIOLATIONS: usize = 1000;

/// Which top-level schema to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    /// `flagd.json`: the daemon's documents; `flags` is a map or an array of flags with `key`.
    Flagd,
    /// `flags.json`: the providers' documents; `flags` must be a map.
    Flags,
    /// `targeting.json`: a single targeting rule.
    Targeting,
}

/// Validates `doc` and returns every violation found (empty when valid).
pub fn validate(doc: &Value, kind: SchemaKind) -> Vec<Warning> {
    let mut v = Validator {
        out: Vec::new(),
        flag: None,
        dropped: 0,
    };
    match kind {
        SchemaKind::Targeting => v.targeting(doc, &ROOT),
        SchemaKind::Flagd => v.document(doc, true),
        SchemaKind::Flags => v.document(doc, false),
    }
    v.finish()
}

/// The fields of one flag definition that the schema checks, each `None` when absent.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FlagFields<'v> {
    pub(crate) state: Option<&'v Value>,
    pub(crate) variants: Option<VariantsField<'v>>,
    pub(crate) default_variant: Option<&'v Value>,
    pub(crate) targeting: Option<&'v Value>,
    pub(crate) metadata: Option<&'v Value>,
}

/// A flag's `variants`: a value as written, or an object's entries sorted by name (the loader's form,
/// validated exactly as the equivalent object).
#[derive(Debug, Clone, Copy)]
pub(crate) enum VariantsField<'v> {
    Value(&'v Value),
    Entries(&'v [(String, Value)]),
}

/// Validates a flagd document given as its map-form flags (sorted by key, each already split into its
/// fields) and the rest of its root object (whose `flags`, if any, must be an empty object). Reports the
/// same violations, in the same order, as [`validate`] on the whole document.
pub(crate) fn validate_split(root: &Value, flags: &[(&str, FlagFields<'_>)]) -> Vec<Warning> {
    let mut v = Validator {
        out: Vec::new(),
        flag: None,
        dropped: 0,
    };
    for (key, fields) in flags {
        let flags_ptr = ROOT.key("flags");
        let path = flags_ptr.key(key);
        v.flag = Some(key);
        if key.is_empty() {
            v.report(&path, "a flag key must not be empty");
        }
        v.flag_fields(fields, &path);
        v.flag = None;
    }
    v.document(root, true);
    v.finish()
}

/// A JSON pointer built on the stack while walking, rendered only when a violation is reported.
#[derive(Clone, Copy)]
struct Ptr<'a> {
    parent: Option<&'a Ptr<'a>>,
    segment: Segment<'a>,
}

#[derive(Clone, Copy)]
enum Segment<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

impl<'a> Ptr<'a> {
    const ROOT: Ptr<'static> = Ptr {
        parent: None,
        segment: Segment::Root,
    };

    fn key<'b>(&'b self, key: &'b str) -> Ptr<'b> {
        Ptr {
            parent: Some(self),
            segment: Segment::Key(key),
        }
    }

    fn index(&self, index: usize) -> Ptr<'_> {
        Ptr {
            parent: Some(self),
            segment: Segment::Index(index),
        }
    }

    fn render(&self) -> String {
        let mut segments = Vec::new();
        let mut at = Some(self);
        while let Some(ptr) = at {
            segments.push(ptr.segment);
            at = ptr.parent;
        }
        let mut out = String::new();
        for segment in segments.iter().rev() {
            match segment {
                Segment::Root => {}
                Segment::Key(key) => {
                    out.push('/');
                    out.push_str(&escape_pointer(key));
                }
                Segment::Index(i) => {
                    out.push('/');
                    out.push_str(&i.to_string());
                }
            }
        }
        out
    }
}

struct Validator<'d> {
    out: Vec<Warning>,
    /// The flag being validated (borrowed from the document; copied only into a report).
    flag: Option<&'d str>,
    dropped: usize,
}

const SEM_VER_OPERATORS: &[&str] = &["=", "!=", ">", "<", ">=", "<=", "~", "^"];

impl<'d> Validator<'d> {
    fn report(&mut self, path: &Ptr<'_>, message: impl Into<String>) {
        if self.out.len() >= MAX_VIOLATIONS {
            self.dropped += 1;
            return;
        }
        self.out.push(Warning {
            flag: self.flag.map(str::to_owned),
            path: path.render(),
            message: message.into(),
        });
    }

    fn document(&mut self, doc: &'d Value, flagd: bool) {
        let Value::Object(root) = doc else {
            self.report(&ROOT, "the document must be an object");
            return;
        };
        match root.get("flags") {
            None => self.report(&ROOT, "`flags` is required"),
            Some(Value::Object(flags)) => {
                for (key, flag) in flags {
                    let flags_ptr = ROOT.key("flags");
                    let path = flags_ptr.key(key);
                    self.flag = Some(key);
                    if key.is_empty() {
                        self.report(&path, "a flag key must not be empty");
                    }
                    self.flag_def(flag, &path);
                    self.flag = None;
                }
            }
            Some(Value::Array(flags)) if flagd => {
                for (i, flag) in flags.iter().enumerate() {
                    let flags_ptr = ROOT.key("flags");
                    let path = flags_ptr.index(i);
                    let key = flag.get("key");
                    self.flag = key.and_then(Value::as_str);
                    match key {
                        Some(Value::String(k)) if !k.is_empty() => {}
                        Some(Value::String(_)) => {
                            self.report(&path.key("key"), "`key` must not be empty")
                        }
                        Some(_) => self.report(&path.key("key"), "`key` must be a string"),
                        None if flag.is_object() => self.report(&path, "`key` is required"),
                        None => {}
                    }
                    self.flag_def(flag, &path);
                    self.flag = None;
                }
            }
            Some(_) if flagd => {
                self.report(&ROOT.key("flags"), "`flags` must be an object or an array")
            }
            Some(_) => self.report(&ROOT.key("flags"), "`flags` must be an object"),
        }
        match root.get("$evaluators") {
            None => {}
            Some(Value::Object(evaluators)) => {
                for (name, rule) in evaluators {
                    let evaluators_ptr = ROOT.key("$evaluators");
                    let path = evaluators_ptr.key(name);
                    if name.is_empty() {
                        self.report(&path, "an evaluator name must not be empty");
                    }
                    self.targeting(rule, &path);
                }
            }
            Some(_) => self.report(&ROOT.key("$evaluators"), "`$evaluators` must be an object"),
        }
        if let Some(metadata) = root.get("metadata") {
            self.metadata(metadata, &ROOT.key("metadata"));
            for field in ["flagSetId", "version"] {
                if let Some(value) = metadata.get(field)
                    && !value.is_string()
                {
                    self.report(
                        &Ptr::ROOT.key("metadata").key(field),
                        format!("`{field}` must be a string"),
                    );
                }
            }
        }
    }

    fn finish(mut self) -> Vec<Warning> {
        if self.dropped > 0 {
            let dropped = self.dropped;
            self.out.push(Warning {
                flag: None,
                path: String::new(),
                message: format!("{dropped} more violations"),
            });
        }
        self.out
    }

    fn flag_def(&mut self, flag: &Value, path: &Ptr<'_>) {
        let Value::Object(fields) = flag else {
            self.report(path, "a flag must be an object");
            return;
        };
        let fields = FlagFields {
            state: fields.get("state"),
            variants: fields.get("variants").map(VariantsField::Value),
            default_variant: fields.get("defaultVariant"),
            targeting: fields.get("targeting"),
            metadata: fields.get("metadata"),
        };
        self.flag_fields(&fields, path);
    }

    fn flag_fields(&mut self, fields: &FlagFields<'_>, path: &Ptr<'_>) {
        match fields.state {
            None => self.report(path, "`state` is required"),
            Some(Value::String(s)) if s == "ENABLED" || s == "DISABLED" => {}
            Some(_) => self.report(
                &path.key("state"),
                "`state` must be \"ENABLED\" or \"DISABLED\"",
            ),
        }
        match fields.variants {
            None => self.report(path, "`variants` is required"),
            Some(VariantsField::Value(Value::Object(variants))) => {
                self.variants(variants.iter(), &path.key("variants"));
            }
            Some(VariantsField::Entries(entries)) => self.variants(
                entries.iter().map(|(name, value)| (name, value)),
                &path.key("variants"),
            ),
            Some(VariantsField::Value(_)) => {
                self.report(&path.key("variants"), "`variants` must be an object");
            }
        }
        match fields.default_variant {
            None | Some(Value::String(_)) | Some(Value::Null) => {}
            Some(_) => self.report(
                &path.key("defaultVariant"),
                "`defaultVariant` must be a string or null",
            ),
        }
        if let Some(targeting) = fields.targeting {
            self.targeting(targeting, &path.key("targeting"));
        }
        if let Some(metadata) = fields.metadata {
            self.metadata(metadata, &path.key("metadata"));
        }
    }

    /// `variants`: (name, value) in name order, without repeats.
    fn variants<'v>(
        &mut self,
        variants: impl Iterator<Item = (&'v String, &'v Value)> + Clone,
        path: &Ptr<'_>,
    ) {
        if variants.clone().next().is_none() {
            self.report(path, "a flag needs at least one variant");
            return;
        }
        if variants.clone().any(|(name, _)| name.is_empty()) {
            self.report(path, "a variant name must not be empty");
        }
        let kind = |v: &Value| match v {
            Value::Bool(_) => Some("boolean"),
            Value::String(_) => Some("string"),
            Value::Number(_) => Some("number"),
            Value::Object(_) => Some("object"),
            Value::Null | Value::Array(_) => None,
        };
        let mut first: Option<&'static str> = None;
        for (name, value) in variants {
            match (kind(value), first) {
                (None, _) => {
                    self.report(
                        &path.key(name),
                        "a variant value must be a boolean, string, number or object",
                    );
                    return;
                }
                (Some(k), None) => first = Some(k),
                (Some(k), Some(f)) if k != f => {
                    self.report(
                        path,
                        format!("all variants must have the same type (found {f} and {k})"),
                    );
                    return;
                }
                _ => {}
            }
        }
    }

    fn metadata(&mut self, metadata: &Value, path: &Ptr<'_>) {
        let Value::Object(entries) = metadata else {
            self.report(path, "metadata must be an object");
            return;
        };
        for (key, value) in entries {
            if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                self.report(
                    &path.key(key),
                    "a metadata value must be a string, number or boolean",
                );
            }
        }
    }

    /// `targeting.json`: `{}` or one rule.
    fn targeting(&mut self, rule: &Value, path: &Ptr<'_>) {
        match rule {
            Value::Object(map) if map.is_empty() => {}
            Value::Object(_) => self.rule(rule, path),
            _ => self.report(path, "targeting must be an object"),
        }
    }

    /// `#/definitions/anyRule`: an object with exactly one known operator and well-formed arguments.
    fn rule(&mut self, rule: &Value, path: &Ptr<'_>) {
        let Value::Object(map) = rule else {
            self.report(path, "expected a rule object");
            return;
        };
        let mut entries = map.iter();
        let (Some((op, args)), None) = (entries.next(), entries.next()) else {
            self.report(path, "a rule object must have exactly one operator");
            return;
        };
        let path = path.key(op);
        let path = &path;
        match op.as_str() {
            "var" => self.var(args, path),
            "missing" => self.strings(args, path),
            "missing_some" => match args.as_array().map(Vec::as_slice) {
                Some([Value::Number(_), keys]) => self.strings(keys, &path.index(1)),
                _ => self.report(path, "`missing_some` takes [number, [keys…]]"),
            },
            // The schema's variadicRule plus `if`.
            "if" | "or" | "and" | "+" | "-" | "max" | "min" | "merge" | "cat" => {
                self.args(args, path, 1, usize::MAX)
            }
            // binaryRule.
            "==" | "===" | "!=" | "!==" | ">" | ">=" | "%" | "/" | "map" | "filter" | "all"
            | "none" | "some" | "in" => self.args(args, path, 2, 2),
            // binaryOrTernaryRule.
            "substr" | "<" | "<=" => self.args(args, path, 2, 3),
            "*" => self.args(args, path, 2, usize::MAX),
            "reduce" => self.args(args, path, 3, 3),
            "!" | "!!" => match args {
                Value::Array(_) => {}
                other => self.arg(other, path),
            },
            "starts_with" | "ends_with" => match args.as_array() {
                Some(items) if items.len() == 2 => {
                    for (i, item) in items.iter().enumerate() {
                        let item_path = path.index(i);
                        match item {
                            Value::String(_) => {}
                            Value::Object(_) => self.rule(item, &item_path),
                            _ => self.report(
                                &item_path,
                                format!("`{op}` arguments must be strings or rules"),
                            ),
                        }
                    }
                }
                _ => self.report(path, format!("`{op}` takes exactly 2 arguments")),
            },
            "sem_ver" => self.sem_ver(args, path),
            "fractional" => self.fractional(args, path),
            "$ref" => self.report(path, "a `$ref` is not allowed here"),
            other => self.report(path, format!("unknown operator `{other}`")),
        }
    }

    /// An array of `min..=max` items, each `#/definitions/args`.
    fn args(&mut self, args: &Value, path: &Ptr<'_>, min: usize, max: usize) {
        let Value::Array(items) = args else {
            self.report(path, "operator arguments must be an array");
            return;
        };
        if items.len() < min || items.len() > max {
            let expected = match (min, max) {
                (min, usize::MAX) => format!("at least {min}"),
                (min, max) if min == max => format!("exactly {min}"),
                (min, max) => format!("{min} to {max}"),
            };
            self.report(
                path,
                format!("expected {expected} arguments, found {}", items.len()),
            );
        }
        for (i, item) in items.iter().enumerate() {
            self.arg(item, &path.index(i));
        }
    }

    /// `#/definitions/args`: a `$ref`, a rule, or a primitive (an array literal's contents are not checked).
    fn arg(&mut self, arg: &Value, path: &Ptr<'_>) {
        let Value::Object(map) = arg else { return };
        match map.get("$ref") {
            Some(Value::String(_)) if map.len() == 1 => {}
            Some(_) if map.len() == 1 => self.report(path, "`$ref` must name an evaluator"),
            _ if map.is_empty() => self.report(path, "an empty object is not a rule"),
            _ => self.rule(arg, path),
        }
    }

    fn strings(&mut self, value: &Value, path: &Ptr<'_>) {
        match value {
            Value::Array(items) if items.iter().all(Value::is_string) => {}
            _ => self.report(path, "expected an array of strings"),
        }
    }

    fn var(&mut self, args: &Value, path: &Ptr<'_>) {
        match args {
            Value::String(name) => {
                if let Some(prop) = name.strip_prefix("$flagd.")
                    && prop != "timestamp"
                    && prop != "flagKey"
                {
                    self.report(
                        path,
                        format!("`$flagd.{prop}` is not a property flagd provides"),
                    );
                }
            }
            Value::Array(items) => match items.split_first() {
                Some((Value::String(_), rest))
                    if rest
                        .iter()
                        .all(|v| !matches!(v, Value::Array(_) | Value::Object(_))) => {}
                _ => self.report(path, "`var` takes a name, or [name, primitive default]"),
            },
            _ => self.report(path, "`var` takes a string or an array"),
        }
    }

    fn sem_ver(&mut self, args: &Value, path: &Ptr<'_>) {
        let Some([left, op, right]) = args.as_array().map(Vec::as_slice) else {
            self.report(path, "`sem_ver` takes exactly 3 arguments");
            return;
        };
        for (i, version) in [(0, left), (2, right)] {
            let item_path = path.index(i);
            match version {
                Value::String(s) if is_sem_ver(s) => {}
                Value::String(s) => {
                    self.report(&item_path, format!("{s:?} is not a semantic version"))
                }
                Value::Object(map) if map.len() == 1 && map.contains_key("var") => {
                    self.rule(version, &item_path)
                }
                _ => self.report(
                    &item_path,
                    "expected a semantic version string or a `var` rule",
                ),
            }
        }
        match op {
            Value::String(s) if SEM_VER_OPERATORS.contains(&s.as_str()) => {}
            _ => self.report(
                &path.index(1),
                format!(
                    "the operator must be one of {}",
                    SEM_VER_OPERATORS.join(" ")
                ),
            ),
        }
    }

    fn fractional(&mut self, args: &Value, path: &Ptr<'_>) {
        let Some(items) = args.as_array().filter(|a| !a.is_empty()) else {
            self.report(path, "`fractional` takes a non-empty array");
            return;
        };
        let buckets = match &items[0] {
            Value::Array(_) => &items[..],
            Value::Object(_) => {
                self.rule(&items[0], &path.index(0));
                &items[1..]
            }
            _ => {
                self.report(
                    &path.index(0),
                    "the first argument must be a bucketing rule or a bucket",
                );
                return;
            }
        };
        let offset = items.len() - buckets.len();
        for (i, bucket) in buckets.iter().enumerate() {
            let bucket_path = path.index(i + offset);
            match bucket.as_array().map(Vec::as_slice) {
                Some([variant]) => self.arg(variant, &bucket_path.index(0)),
                Some([variant, weight]) => {
                    self.arg(variant, &bucket_path.index(0));
                    let weight_path = bucket_path.index(1);
                    match weight {
                        Value::Number(n) if is_non_negative_integer(n) => {}
                        Value::Object(_) => self.rule(weight, &weight_path),
                        _ => self.report(
                            &weight_path,
                            "a weight must be a non-negative integer or a rule",
                        ),
                    }
                }
                _ => self.report(&bucket_path, "a bucket is [variant] or [variant, weight]"),
            }
        }
    }
}

fn is_non_negative_integer(n: &serde_json::Number) -> bool {
    if n.is_u64() {
        return true;
    }
    if n.is_i64() {
        return false;
    }
    n.as_f64().is_some_and(|f| f >= 0.0 && f.fract() == 0.0)
}

/// The schema's `semVerString` pattern (semver.org 2.0.0, no `v` prefix).
pub fn is_sem_ver(s: &str) -> bool {
    let (rest, build) = match s.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (s, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let numeric = |p: &str| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0'))
    };
    let ident =
        |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| numeric(p))
        && pre.is_none_or(|pre| {
            pre.split('.')
                .all(|p| ident(p) && (numeric(p) || p.bytes().any(|b| !b.is_ascii_digit())))
        })
        && build.is_none_or(|build| build.split('.').all(ident))
}

/// A schema violation (a warning unless the load is strict), or an unknown flag field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The flag it concerns, if any.
    pub flag: Option<String>,
    /// JSON pointer into the document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.flag {
            Some(flag) => write!(f, "flag `{flag}` at {}: {}", self.path, self.message),
            None => write!(f, "at {}: {}", display_path(&self.path), self.message),
        }
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

/// Escapes a key for a JSON pointer (RFC 6901).
pub(crate) fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sem_ver_pattern() {
        for ok in [
            "1.2.3",
            "0.0.0",
            "1.2.3-alpha.1",
            "1.2.3-0a",
            "1.2.3+build.5",
            "1.2.3-rc-1+x",
        ] {
            assert!(is_sem_ver(ok), "{ok}");
        }
        for bad in [
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "v1.2.3",
            "1.2.3-01",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-a..b",
            "",
        ] {
            assert!(!is_sem_ver(bad), "{bad}");
        }
    }

    #[test]
    fn fractional_weights_follow_the_newer_schema() {
        // flagd-schemas after 0.2.13: a weight is a non-negative integer or a rule computing one, a bucket's
        // variant may be a rule or any literal, and one bucket is enough.
        let valid = |rule: Value| validate(&rule, SchemaKind::Targeting).is_empty();
        assert!(valid(json!({"fractional": [["red", 10], ["blue", 90]]})));
        assert!(valid(json!({"fractional": [
            ["new", {"-": [{"var": "$flagd.timestamp"}, 1700000000]}],
            ["old", {"-": [1900000000, {"var": "$flagd.timestamp"}]}]
        ]})));
        assert!(valid(json!({"fractional": [
            {"var": "userId"},
            ["new", {"*": [{"var": "ramp"}, 2]}],
            ["old", 50]
        ]})));
        assert!(valid(
            json!({"fractional": [["a", 1], [false, 1], [7, 1], [{"var": "pick"}, 1]]})
        ));
        assert!(valid(json!({"fractional": [["only", 1]]})));
        assert!(!valid(
            json!({"fractional": [["red", 10.5], ["blue", 89.5]]})
        ));
        assert!(!valid(json!({"fractional": [["red", -10], ["blue", 110]]})));
    }

    #[test]
    fn unknown_operator_is_reported_with_its_path() {
        let w = validate(
            &json!({"if": [{"nope": [1]}, "a", "b"]}),
            SchemaKind::Targeting,
        );
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].path, "/if/0/nope");
        assert!(w[0].message.contains("unknown operator"));
    }

    #[test]
    fn violations_name_the_flag() {
        let doc = json!({"flags": {"f": {"state": "ON", "variants": {"a": 1, "b": "x"}}}});
        let w = validate(&doc, SchemaKind::Flagd);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().all(|w| w.flag.as_deref() == Some("f")));
        assert!(w.iter().any(|w| w.path == "/flags/f/state"));
        assert!(w.iter().any(|w| w.path == "/flags/f/variants"));
    }

    #[test]
    fn array_form_is_flagd_only() {
        let doc = json!({"flags": [{"key": "k", "state": "ENABLED", "variants": {"a": true}}]});
        assert!(validate(&doc, SchemaKind::Flagd).is_empty());
        assert!(!validate(&doc, SchemaKind::Flags).is_empty());
    }

    #[test]
    fn violations_are_capped() {
        let flags: serde_json::Map<String, Value> = (0..MAX_VIOLATIONS + 10)
            .map(|i| (format!("f{i}"), json!(1)))
            .collect();
        let w = validate(&json!({ "flags": flags }), SchemaKind::Flagd);
        assert_eq!(w.len(), MAX_VIOLATIONS + 1);
        assert_eq!(
            w.last().map(|w| w.message.as_str()),
            Some("10 more violations")
        );
    }
}
