//! Evaluates one rule many times against a small or a 100-attribute context (for callgrind comparisons).
//!
//! Run: `cargo run --release -p flagpole-engine --example eval_profile -- RULE_JSON EXTRA_ATTRIBUTES TIMES`.

use std::hint::black_box;

use flagpole_engine::{Context, EvalOptions, Format, LoadOptions, evaluate, parse_document};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [rule, extra, times] = args.as_slice() else {
        eprintln!("usage: eval_profile RULE_JSON EXTRA_ATTRIBUTES TIMES");
        std::process::exit(2);
    };
    let extra: usize = extra.parse().unwrap_or(0);
    let times: usize = times.parse().unwrap_or(1);
    let doc = format!(
        r#"{{"flags": {{"f": {{"state": "ENABLED", "variants": {{"on": true, "off": false}}, "defaultVariant": "off", "targeting": {rule}}}}}}}"#
    );
    let loaded = match parse_document(&doc, Format::Json, &LoadOptions::default()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let Some(flag) = loaded.flags.first() else {
        std::process::exit(1);
    };
    let mut context = Context::new();
    for (k, v) in [
        (
            "targetingKey",
            json!("6f3b2a9e-1c4d-4e8f-9a0b-123456789abc"),
        ),
        ("email", json!("user@example.com")),
        ("country", json!("fr")),
        ("age", json!(30)),
        ("groups", json!(["alpha", "beta"])),
        ("version", json!("1.2.3")),
        ("plan", json!("pro")),
    ] {
        context.insert(k.to_owned(), v);
    }
    for i in 0..extra {
        context.insert(format!("attribute{i}"), json!(format!("value-{i}")));
    }
    let options = EvalOptions::now();
    for _ in 0..times {
        black_box(evaluate(flag, black_box(&context), &options));
    }
}
