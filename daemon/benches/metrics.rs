//! What recording an evaluation in the metrics costs (`Metrics::record_evaluation`, called once per flag
//! by every gRPC evaluation and 100 times by a 100-flag `ResolveAll`): one flag over and over, and 100
//! flags in turn as `ResolveAll` records them.
//!
//! `cargo bench -p flagpole --bench metrics`

use criterion::{Criterion, criterion_group, criterion_main};
use flagpole::metrics::Metrics;

fn record(c: &mut Criterion) {
    let metrics = Metrics::new();
    let keys: Vec<String> = (0..100).map(|i| format!("flag-{i}")).collect();
    let mut group = c.benchmark_group("record_evaluation");
    group.bench_function("one_flag", |b| {
        b.iter(|| metrics.record_evaluation("flag-7", "on", "STATIC", None));
    });
    group.bench_function("resolve_all_100_flags", |b| {
        b.iter(|| {
            for key in &keys {
                metrics.record_evaluation(key, "on", "STATIC", None);
            }
        });
    });
    group.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
