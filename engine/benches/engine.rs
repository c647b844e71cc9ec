//! Criterion benchmarks of `flagpole-engine`: evaluation per rule shape and context size, lookups, loading
//! generated documents, and heap bytes per loaded flag (printed once, measured with a counting allocator).
//!
//! Run: `cargo bench -p flagpole-engine --bench engine -- --warm-up-time 1 --measurement-time 2`.
//! Figures and comparisons live in BENCHMARKS.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flagpole_engine::{
    Context, EvalOptions, Flag, Format, LoadOptions, Selector, Snapshot, SourceFlags, evaluate,
    parse_document,
};
use serde_json::json;

#[path = "support/generated.rs"]
mod generated;
use generated::generated_text;

/// Counts live heap bytes so that the memory figure needs no external tool.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SIMPLE: &str = r#"{"if": [{"==": [{"var": "email"}, "user@example.com"]}, "on", "off"]}"#;
const NESTED: &str = r#"{"if": [{"and": [
    {"or": [{"==": [{"var": "country"}, "de"]}, {"==": [{"var": "country"}, "fr"]}]},
    {">=": [{"var": "age"}, 18]},
    {"in": ["beta", {"var": "groups"}]}]}, "on", "off"]}"#;
const FRACTIONAL_2: &str = r#"{"fractional": [["on", 50], ["off", 50]]}"#;
const FRACTIONAL_8: &str = r#"{"fractional": [["a", 12], ["b", 12], ["c", 12], ["d", 12], ["e", 13], ["f", 13], ["g", 13], ["h", 13]]}"#;
const SEM_VER_EQ: &str =
    r#"{"if": [{"sem_ver": [{"var": "version"}, "=", "1.2.3"]}, "on", "off"]}"#;
const SEM_VER_RANGE: &str =
    r#"{"if": [{"sem_ver": [{"var": "version"}, "^", "1.0.0"]}, "on", "off"]}"#;
const STARTS_WITH: &str = r#"{"if": [{"starts_with": [{"var": "email"}, "user@"]}, "on", "off"]}"#;
const ENDS_WITH: &str =
    r#"{"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on", "off"]}"#;

fn flag_doc(targeting: Option<&str>, state: &str) -> String {
    let variants = r#"{"on": true, "off": false, "a": true, "b": false, "c": true, "d": false, "e": true, "f": false, "g": true, "h": false}"#;
    let targeting = targeting
        .map(|t| format!(r#", "targeting": {t}"#))
        .unwrap_or_default();
    format!(
        r#"{{"flags": {{"f": {{"state": "{state}", "variants": {variants}, "defaultVariant": "off"{targeting}}}}}}}"#
    )
}

fn one_flag(targeting: Option<&str>, state: &str) -> Arc<Flag> {
    let loaded = parse_document(
        &flag_doc(targeting, state),
        Format::Json,
        &LoadOptions::default(),
    )
    .expect("loads");
    loaded.flags[0].clone()
}

/// A context with the attributes the rules read, padded with `extra` unrelated attributes.
fn context(matching: bool, extra: usize) -> Context {
    let mut ctx = json!({
        "targetingKey": "6f3b2a9e-1c4d-4e8f-9a0b-123456789abc",
        "email": if matching { "user@example.com" } else { "other@elsewhere.org" },
        "country": if matching { "fr" } else { "us" },
        "age": 30,
        "groups": ["alpha", if matching { "beta" } else { "gamma" }],
        "version": if matching { "1.2.3" } else { "2.0.0" },
        "plan": "pro",
    });
    let map = ctx.as_object_mut().expect("object");
    for i in 0..extra {
        map.insert(format!("attribute{i}"), json!(format!("value-{i}")));
    }
    ctx.as_object().cloned().expect("object")
}

fn evaluation(c: &mut Criterion) {
    let options = EvalOptions::now();
    let empty = Context::new();
    let small = context(true, 0);
    let mut five = small.clone();
    five.retain(|k, _| ["targetingKey", "email", "country", "age", "groups"].contains(&k.as_str()));
    let large = context(true, 100 - small.len());
    let small_miss = context(false, 0);
    let large_miss = context(false, 100 - small.len());

    let mut group = c.benchmark_group("evaluate");
    let static_flag = one_flag(None, "ENABLED");
    group.bench_function("static/empty-context", |b| {
        b.iter(|| black_box(evaluate(&static_flag, black_box(&empty), &options)))
    });
    group.bench_function("static/5-attributes", |b| {
        b.iter(|| black_box(evaluate(&static_flag, black_box(&five), &options)))
    });
    group.bench_function("static/100-attributes", |b| {
        b.iter(|| black_box(evaluate(&static_flag, black_box(&large), &options)))
    });
    let disabled = one_flag(Some(SIMPLE), "DISABLED");
    group.bench_function("disabled", |b| {
        b.iter(|| black_box(evaluate(&disabled, black_box(&small), &options)))
    });

    let cases: [(&str, &str); 8] = [
        ("simple-eq", SIMPLE),
        ("nested-and-or", NESTED),
        ("fractional-2", FRACTIONAL_2),
        ("fractional-8", FRACTIONAL_8),
        ("sem_ver-eq", SEM_VER_EQ),
        ("sem_ver-range", SEM_VER_RANGE),
        ("starts_with", STARTS_WITH),
        ("ends_with", ENDS_WITH),
    ];
    for (name, rule) in cases {
        let flag = one_flag(Some(rule), "ENABLED");
        for (ctx_name, ctx) in [
            ("match/7", &small),
            ("no-match/7", &small_miss),
            ("match/100", &large),
            ("no-match/100", &large_miss),
        ] {
            if name.starts_with("fractional") && ctx_name.starts_with("no-match") {
                continue;
            }
            group.bench_function(BenchmarkId::new(name, ctx_name), |b| {
                b.iter(|| black_box(evaluate(&flag, black_box(ctx), &options)))
            });
        }
    }
    group.finish();

    let loaded = generated(10_000, 7);
    let snapshot = Snapshot::new(vec![SourceFlags {
        source: Arc::from("bench"),
        flags: loaded.flags,
    }]);
    let mut group = c.benchmark_group("lookup");
    group.bench_function("hit+static-evaluate", |b| {
        b.iter(|| {
            let flag = snapshot
                .get(black_box("flag-00042"), &Selector::All)
                .expect("present");
            black_box(evaluate(flag, &small, &options))
        })
    });
    group.bench_function("missing-flag", |b| {
        b.iter(|| black_box(snapshot.get(black_box("no-such-flag"), &Selector::All)))
    });
    group.finish();
}

fn generated(n: usize, seed: u64) -> flagpole_engine::Loaded {
    parse_document(
        &generated_text(n, seed),
        Format::Json,
        &LoadOptions::default(),
    )
    .expect("generated document loads")
}

fn loading(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    for n in [1_000, 10_000, 100_000] {
        let text = generated_text(n, 42);
        group.throughput(Throughput::Elements(n as u64));
        // Freeing the loaded flags is not part of loading: `iter_with_large_drop` drops them untimed.
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_with_large_drop(|| {
                black_box(
                    parse_document(black_box(&text), Format::Json, &LoadOptions::default())
                        .expect("loads"),
                )
            })
        });
    }
    group.finish();

    // What the daemon pays per store change: rebuilding the index, rendering the sync payload, diffing.
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(20);
    for n in [10_000, 100_000] {
        let flags = generated(n, 42).flags;
        let sources = vec![SourceFlags {
            source: Arc::from("bench"),
            flags,
        }];
        group.bench_function(BenchmarkId::new("new", n), |b| {
            b.iter_with_large_drop(|| Snapshot::new(black_box(sources.clone())))
        });
        let old = Snapshot::new(sources.clone());
        let new = Snapshot::new(sources.clone());
        group.bench_function(BenchmarkId::new("sync_payload", n), |b| {
            b.iter(|| black_box(new.sync_payload(&Selector::All)))
        });
        group.bench_function(BenchmarkId::new("changes-none", n), |b| {
            b.iter(|| black_box(Snapshot::changes(&old, &new, &Selector::All)))
        });
    }
    group.finish();

    // Live heap bytes per flag once loaded (the document text itself excluded).
    for (label, n, doc) in [
        ("static", 10_000, None),
        ("simple", 10_000, Some(SIMPLE)),
        ("complex", 10_000, Some(NESTED)),
    ] {
        let text = homogeneous_text(n, doc);
        let before = LIVE.load(Ordering::Relaxed);
        let loaded = parse_document(&text, Format::Json, &LoadOptions::default()).expect("loads");
        let after = LIVE.load(Ordering::Relaxed);
        println!(
            "heap per {label} flag: {} bytes",
            (after - before) / loaded.flags.len()
        );
        drop(loaded);
    }
    let text = generated_text(10_000, 42);
    let before = LIVE.load(Ordering::Relaxed);
    let loaded = parse_document(&text, Format::Json, &LoadOptions::default()).expect("loads");
    let snapshot = Snapshot::new(vec![SourceFlags {
        source: Arc::from("bench"),
        flags: loaded.flags,
    }]);
    let after = LIVE.load(Ordering::Relaxed);
    println!(
        "heap per flag, generated mix in a snapshot: {} bytes",
        (after - before) / snapshot.len()
    );
}

fn homogeneous_text(n: usize, targeting: Option<&str>) -> String {
    let flags: Vec<String> = (0..n)
        .map(|i| {
            let t = targeting.map(|t| format!(r#", "targeting": {t}"#)).unwrap_or_default();
            format!(r#""flag-{i:05}": {{"state": "ENABLED", "variants": {{"on": true, "off": false}}, "defaultVariant": "off"{t}}}"#)
        })
        .collect();
    format!(r#"{{"flags": {{{}}}}}"#, flags.join(","))
}

criterion_group!(benches, evaluation, loading);
criterion_main!(benches);
