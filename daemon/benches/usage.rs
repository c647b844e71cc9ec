//! What counting flag usage costs an evaluation (`docs/admin.md#usage`): `Evaluator::evaluate` on a
//! 100-flag store with the usage table (as the daemon runs) and without it, side by side in one run, and
//! `Usage::hit` alone.
//!
//! `cargo bench -p flagpole --bench usage`

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use flagpole::eval::{EvalConfig, Evaluator};
use flagpole::metrics::Metrics;
use flagpole::store::Store;
use flagpole::usage::Usage;
use flagpole_engine::{Context, Format, LoadOptions, Selector, Value, parse_document};

fn document() -> String {
    let mut flags = Vec::new();
    for i in 0..98 {
        flags.push(format!(
            r#""filler-{i}": {{"state": "ENABLED", "variants": {{"on": true, "off": false}}, "defaultVariant": "on"}}"#
        ));
    }
    flags.push(
        r#""static": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}"#
            .to_owned(),
    );
    flags.push(
        r#""targeted": {"state": "ENABLED", "variants": {"a": "a", "b": "b", "c": "c"}, "defaultVariant": "a",
            "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "b", "c"]}}"#
            .to_owned(),
    );
    format!(r#"{{"flags": {{{}}}}}"#, flags.join(","))
}

fn evaluator(with_usage: bool) -> Evaluator {
    let loaded = parse_document(&document(), Format::Json, &LoadOptions::default()).expect("loads");
    let store = Arc::new(Store::new([Arc::from("bench")]));
    if with_usage {
        store.set_usage(Arc::new(Usage::default()));
    }
    store.replace_source(0, loaded.flags);
    Evaluator::new(store, EvalConfig::default(), Metrics::new())
}

fn bench(c: &mut Criterion) {
    let context: Context = serde_json::from_str::<Value>(
        r#"{"targetingKey": "u-1", "email": "ann@example.com", "country": "nl", "plan": "pro", "age": 40}"#,
    )
    .ok()
    .and_then(|v| v.as_object().cloned())
    .unwrap_or_default();
    let mut group = c.benchmark_group("evaluate");
    for (name, with_usage) in [("without-usage", false), ("with-usage", true)] {
        let evaluator = evaluator(with_usage);
        let snapshot = evaluator.snapshot();
        let options = evaluator.options();
        for key in ["static", "targeted"] {
            let flag = snapshot.get(key, &Selector::All).expect("flag").clone();
            group.bench_function(format!("{key}/{name}"), |b| {
                b.iter(|| {
                    let outcome = evaluator.evaluate(&flag, &context, &options);
                    std::hint::black_box(outcome.variant());
                });
            });
        }
    }
    group.finish();
    let usage = Usage::default();
    let loaded = parse_document(&document(), Format::Json, &LoadOptions::default()).expect("loads");
    usage.sync(
        &flagpole_engine::Snapshot::new(vec![flagpole_engine::SourceFlags {
            source: Arc::from("bench"),
            flags: loaded.flags,
        }]),
        1,
    );
    c.bench_function("usage/hit", |b| {
        b.iter(|| usage.hit(std::hint::black_box("targeted"), Some("b"), 2));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
