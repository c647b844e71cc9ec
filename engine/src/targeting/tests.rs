//! Unit tests: one per documented rule (see `docs/targeting.md`).

use serde_json::{Value, json};

use super::*;

fn run_with(rule: Value, ctx: Value, alg: FractionalAlgorithm) -> Result<Value, TargetingError> {
    let rule = Rule::compile(&rule).map_err(|e| TargetingError(e.0))?;
    let ctx = match ctx {
        Value::Object(m) => m,
        _ => Context::new(),
    };
    let data = Data {
        context: &ctx,
        flag_key: "flag",
        timestamp: 1_700_000_000,
        fractional: alg,
    };
    rule.apply(&data).map(Cow::into_owned)
}

fn run(rule: Value, ctx: Value) -> Result<Value, TargetingError> {
    run_with(rule, ctx, FractionalAlgorithm::V2)
}

fn ok(rule: Value, ctx: Value) -> Value {
    match run(rule.clone(), ctx) {
        Ok(v) => v,
        Err(e) => panic!("rule {rule} failed: {e}"),
    }
}

fn err(rule: Value, ctx: Value) {
    assert!(run(rule.clone(), ctx).is_err(), "rule {rule} should fail");
}

#[test]
fn smoke() {
    assert_eq!(
        ok(json!({"==": [{"var": "a"}, 1]}), json!({"a": 1})),
        json!(true)
    );
}
