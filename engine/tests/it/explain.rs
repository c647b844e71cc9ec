//! Explanations of real flag documents: the answer is evaluation's, the path names what a person needs
//! (`docs/admin.md#explain`).

use flagpole_engine::targeting::{Detail, MAX_EXPLAIN_STEPS, Step, murmur3_32};
use flagpole_engine::{Context, EvalOptions, FractionalAlgorithm, Value, evaluate, explain};
use serde_json::json;

use crate::load_json;

fn options() -> EvalOptions {
    EvalOptions {
        timestamp: 1_700_000_000,
        fractional: FractionalAlgorithm::V2,
    }
}

fn context(value: Value) -> Context {
    value.as_object().cloned().unwrap_or_default()
}

/// Every step of the tree, depth first.
fn steps(step: &Step) -> Vec<&Step> {
    let mut out = vec![step];
    for child in &step.children {
        out.extend(steps(child));
    }
    out
}

const DOC: &str = r#"{
  "$evaluators": {
    "isStaff": {"ends_with": [{"var": "email"}, "@example.com"]},
    "isBeta": {"or": [{"$ref": "isStaff"}, {"in": [{"var": "country"}, ["nl", "de"]]}]}
  },
  "flags": {
    "checkout": {
      "state": "ENABLED",
      "variants": {"new": "new", "old": "old", "ab": "ab"},
      "defaultVariant": "old",
      "targeting": {"if": [
        {"$ref": "isBeta"}, "new",
        {"sem_ver": [{"var": "version"}, ">=", "2.0.0"]}, {"fractional": [["ab", 50], ["old", 50]]},
        null
      ]}
    },
    "off": {"state": "DISABLED", "variants": {"a": 1}, "defaultVariant": "a"},
    "static": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}
  }
}"#;

#[test]
fn the_branch_taken_and_the_refs_it_came_from_are_named() {
    let loaded = load_json(DOC);
    let flag = loaded.flags.iter().find(|f| &*f.key == "checkout").unwrap();
    let ctx = context(json!({"email": "ann@example.com"}));
    let explained = explain(flag, &ctx, &options());
    assert_eq!(explained.outcome, evaluate(flag, &ctx, &options()));
    let root = explained.targeting.as_ref().expect("targeting ran");
    assert_eq!(root.op, "if");
    assert_eq!(root.detail, Some(Detail::Branch { taken: Some(1) }));
    assert_eq!(root.result, Some(json!("new")));
    // The condition is the inlined `isBeta`, whose first operand is the inlined `isStaff`.
    let condition = &root.children[0];
    assert_eq!(condition.refs, ["isBeta"]);
    assert_eq!(condition.truthy, Some(true));
    assert_eq!(condition.children[0].refs, ["isStaff"]);
    // `or` stopped at its first truthy operand; the later branches were not evaluated.
    assert!(!condition.children[1].evaluated);
    assert!(root.children[2..].iter().all(|c| !c.evaluated));
    let json = explained.to_json();
    assert_eq!(json["reason"], "TARGETING_MATCH");
    assert_eq!(json["variant"], "new");
    assert_eq!(json["targeting"]["flagd"]["flagKey"], "checkout");
    assert_eq!(
        json["targeting"]["path"]["children"][0]["ref"],
        json!(["isBeta"])
    );
}

#[test]
fn fractional_shows_key_hash_bucket_and_boundaries() {
    let loaded = load_json(DOC);
    let flag = loaded.flags.iter().find(|f| &*f.key == "checkout").unwrap();
    let ctx = context(json!({"version": "2.1.0", "targetingKey": "user-7", "email": "x@y.z"}));
    let explained = explain(flag, &ctx, &options());
    let root = explained.targeting.as_ref().unwrap();
    assert_eq!(root.detail, Some(Detail::Branch { taken: Some(3) }));
    let sem_ver = &root.children[2];
    assert_eq!(
        sem_ver.detail,
        Some(Detail::SemVer {
            version: Some("2.1.0".into()),
            operator: Some(">=".into()),
            target: Some("2.0.0".into()),
        })
    );
    let fractional = &root.children[3];
    let Some(Detail::Fractional(f)) = &fractional.detail else {
        panic!("no fractional detail: {fractional:?}");
    };
    assert_eq!(f.key_source, "flagKey+targetingKey");
    assert_eq!(f.bucketing_key, json!("checkoutuser-7"));
    assert_eq!(f.hash, Some(murmur3_32(b"checkoutuser-7")));
    assert_eq!(f.total_weight, Some(100));
    let bucket = f.bucket.unwrap();
    assert_eq!(bucket, (u64::from(f.hash.unwrap()) * 100) >> 32);
    assert_eq!(
        f.buckets
            .iter()
            .map(|b| (b.start, b.end))
            .collect::<Vec<_>>(),
        [(0, 50), (50, 100)]
    );
    let expected = if bucket < 50 { "ab" } else { "old" };
    assert_eq!(f.chosen, Some(json!(expected)));
    assert_eq!(explained.outcome.variant(), Some(expected));
}

#[test]
fn no_branch_gives_the_default_and_var_says_what_was_missing() {
    let loaded = load_json(DOC);
    let flag = loaded.flags.iter().find(|f| &*f.key == "checkout").unwrap();
    let explained = explain(flag, &Context::new(), &options());
    let root = explained.targeting.as_ref().unwrap();
    assert_eq!(root.detail, Some(Detail::Branch { taken: Some(4) }));
    assert_eq!(root.result, Some(Value::Null));
    assert_eq!(explained.outcome.reason().as_str(), "DEFAULT");
    let vars: Vec<_> = steps(root)
        .into_iter()
        .filter(|s| s.op == "var" && s.evaluated)
        .collect();
    assert!(!vars.is_empty());
    for var in vars {
        assert!(
            matches!(&var.detail, Some(Detail::Var { found: false, .. })),
            "{var:?}"
        );
    }
}

#[test]
fn disabled_and_static_flags_say_why_targeting_did_not_run() {
    let loaded = load_json(DOC);
    for (key, why, reason) in [
        ("off", "the flag is disabled", "DISABLED"),
        ("static", "the flag has no targeting", "STATIC"),
    ] {
        let flag = loaded.flags.iter().find(|f| &*f.key == key).unwrap();
        let json = explain(flag, &Context::new(), &options()).to_json();
        assert_eq!(json["targeting"]["ran"], false);
        assert_eq!(json["targeting"]["why"], why);
        assert_eq!(json["reason"], reason);
    }
}

#[test]
fn errors_are_placed_on_the_node_that_failed() {
    let doc = r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
        "targeting": {"if": [{"nope": [1]}, "a", null]}}}}"#;
    let loaded = load_json(doc);
    let flag = &loaded.flags[0];
    let explained = explain(flag, &Context::new(), &options());
    let root = explained.targeting.as_ref().unwrap();
    assert!(
        root.children[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("nope"))
    );
    assert!(root.error.is_some());
    assert_eq!(explained.to_json()["errorCode"], "PARSE_ERROR");
}

#[test]
fn a_huge_rule_is_explained_within_the_step_bound_and_still_agrees() {
    // 5,000 operands under one `or`, the last one true: the tree stops expanding, the answer does not change.
    let mut items: Vec<Value> = (0..5000)
        .map(|i| json!({"==": [{"var": "n"}, i]}))
        .collect();
    items.push(json!({"==": [{"var": "n"}, -1]}));
    let doc = json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "b": 2},
        "defaultVariant": "a", "targeting": {"if": [{"or": items}, "b", "a"]}}}});
    let loaded = load_json(&doc.to_string());
    let flag = &loaded.flags[0];
    let ctx = context(json!({"n": -1}));
    let explained = explain(flag, &ctx, &options());
    assert_eq!(explained.outcome.variant(), Some("b"));
    let root = explained.targeting.as_ref().unwrap();
    let all = steps(root);
    assert!(
        all.len() <= 2 * MAX_EXPLAIN_STEPS + 10,
        "{} steps",
        all.len()
    );
    assert!(all.iter().any(|s| s.truncated));
    assert_eq!(root.result, Some(json!("b")));
    // And a long literal list is shown shortened.
    let doc = json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
        "targeting": {"in": [{"var": "k"}, (0..10_000).collect::<Vec<_>>()]}}}});
    let loaded = load_json(&doc.to_string());
    let explained = explain(&loaded.flags[0], &Context::new(), &options());
    let list = &explained.targeting.as_ref().unwrap().children[1];
    assert!(list.truncated);
    assert_eq!(
        list.rule.as_ref().and_then(Value::as_array).map(Vec::len),
        Some(50)
    );
}
