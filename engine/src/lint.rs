//! A semantic lint of loaded flags, for `flagpole validate` (`docs/admin.md#semantic-lint`): what a schema
//! cannot see but a reader of the targeting can.
//!
//! What it finds, per flag with targeting:
//! - a literal result (an `if` branch, a `fractional` bucket, the rule itself) that is not a variant:
//!   evaluating that path fails with GENERAL;
//! - an `if` without a final else: when no condition holds it returns `null`, i.e. the default variant;
//! - variants no path returns, when every result of the rule is a literal (with computed results the lint
//!   cannot tell, and says nothing).
//!
//! What it does not do: run on the daemon's load path (only `validate` calls it), or evaluate anything.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use crate::evaluate::variant_text;
use crate::model::Flag;
use crate::schema::{Warning, escape_pointer};

/// The lint findings for `flags`.
pub fn lint(flags: &[Arc<Flag>]) -> Vec<Warning> {
    let mut found = Vec::new();
    for flag in flags {
        let Some(raw) = &flag.raw_targeting else {
            continue;
        };
        let rule = raw.to_value();
        if matches!(&rule, Value::Object(map) if map.is_empty()) || rule.is_null() {
            continue;
        }
        let mut results = Results::default();
        collect(&rule, &mut results);
        let note = |message: String| Warning {
            flag: Some(flag.key.to_string()),
            path: format!("/flags/{}/targeting", escape_pointer(&flag.key)),
            message,
        };
        for name in &results.literals {
            if flag.variants.get(name).is_none() {
                found.push(note(format!(
                    "targeting can return {name:?}, which is not a variant: that path fails with GENERAL"
                )));
            }
        }
        if results.if_without_else {
            found.push(note(
                "an `if` without a final else returns null when no condition holds: the default variant"
                    .to_owned(),
            ));
        }
        if !results.computed {
            let mut reachable: BTreeSet<&str> =
                results.literals.iter().map(String::as_str).collect();
            if let Some(default) = &flag.default_variant {
                reachable.insert(default);
            }
            for variant in flag.variants.keys() {
                if !reachable.contains(variant) {
                    found.push(note(format!("variant `{variant}` is never returned")));
                }
            }
        }
    }
    found
}

/// What a rule can return.
#[derive(Debug, Default)]
struct Results {
    /// Literal results, as the variant names they select.
    literals: BTreeSet<String>,
    /// Some result is computed (a `var`, an operator other than `if`/`fractional`).
    computed: bool,
    /// Some `if` has no final else.
    if_without_else: bool,
}

/// Collects the results of `node` in result position.
fn collect(node: &Value, results: &mut Results) {
    match node {
        Value::Null => {}
        Value::Object(map) if map.len() == 1 => {
            let (operator, args) = map
                .iter()
                .next()
                .map_or(("", &Value::Null), |(k, v)| (k.as_str(), v));
            match (operator, args) {
                ("if", Value::Array(args)) => {
                    if args.len() % 2 == 0 {
                        results.if_without_else = true;
                    }
                    for (i, arg) in args.iter().enumerate() {
                        // Branches are the odd positions and the final else.
                        if i % 2 == 1 || i == args.len() - 1 && args.len() % 2 == 1 {
                            collect(arg, results);
                        }
                    }
                }
                ("fractional", Value::Array(args)) => {
                    // Buckets are arrays; the optional bucketing key (anything else) is not a result.
                    for entry in args.iter().filter_map(Value::as_array) {
                        match entry.first() {
                            Some(name @ (Value::String(_) | Value::Bool(_) | Value::Number(_))) => {
                                results.literals.insert(variant_text(name).into_owned());
                            }
                            _ => results.computed = true,
                        }
                    }
                }
                _ => results.computed = true,
            }
        }
        Value::String(_) | Value::Bool(_) | Value::Number(_) => {
            results.literals.insert(variant_text(node).into_owned());
        }
        _ => results.computed = true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, LoadOptions, parse_document};

    fn findings(targeting: &str) -> Vec<String> {
        let text = format!(
            r#"{{"flags": {{"f": {{"state": "ENABLED", "variants": {{"red": 1, "blue": 2, "green": 3}},
                 "defaultVariant": "red", "targeting": {targeting}}}}}}}"#
        );
        let loaded = parse_document(&text, Format::Json, &LoadOptions::default()).expect("loads");
        lint(&loaded.flags).into_iter().map(|w| w.message).collect()
    }

    #[test]
    fn unknown_results_missing_else_and_unreachable_variants() {
        assert_eq!(
            findings(r#"{"if": [{"==": [{"var": "x"}, 1]}, "blue", "purple"]}"#),
            [
                "targeting can return \"purple\", which is not a variant: that path fails with GENERAL",
                "variant `green` is never returned",
            ]
        );
        assert_eq!(
            findings(r#"{"if": [{"==": [{"var": "x"}, 1]}, "blue"]}"#),
            [
                "an `if` without a final else returns null when no condition holds: the default variant",
                "variant `green` is never returned",
            ]
        );
        // Every variant reachable through fractional buckets, after a bucketing key.
        assert!(
            findings(r#"{"fractional": [{"var": "id"}, ["red", 1], ["blue", 1], ["green", 1]]}"#)
                .is_empty()
        );
        // A computed result: nothing can be said about reachability.
        assert!(findings(r#"{"var": "color"}"#).is_empty());
        // Nested ifs.
        assert_eq!(
            findings(r#"{"if": [{"var": "a"}, {"if": [{"var": "b"}, "green", "blue"]}, "red"]}"#),
            Vec::<String>::new()
        );
    }
}
