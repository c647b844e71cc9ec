//! Cost of one evaluation through the provider's `FeatureProvider` interface with the local (file)
//! resolver: context conversion, lookup, targeting (compiled once at load, not per evaluation), typing.
//! `cargo bench -p flagpole-provider`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use flagpole_provider::{FlagdOptions, FlagdProvider, ProviderState, ResolverType};
use open_feature::EvaluationContext;
use open_feature::provider::FeatureProvider;

const FLAGS: &str = r#"{"flags":{
  "static": {"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"},
  "targeted": {"state":"ENABLED","variants":{"a":"alpha","b":"beta","c":"gamma"},"defaultVariant":"a",
    "targeting":{"if":[{"ends_with":[{"var":"email"},"@example.com"]},"b",
                       {"fractional":[{"var":"targetingKey"},["a",50],["c",50]]}]}}
}}"#;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("flags.json");
    std::fs::write(&path, FLAGS).expect("write flags");
    let options = FlagdOptions::builder()
        .resolver(ResolverType::File)
        .offline_flag_source_path(path)
        .build_with_env(|_| None)
        .expect("options");
    let provider = {
        let _guard = runtime.enter();
        FlagdProvider::new(options).expect("provider")
    };
    let events = provider.events();
    runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(10),
            events.wait_for(|s| s == ProviderState::Ready),
        )
        .await
        .expect("ready")
    });

    let empty = EvaluationContext::default();
    let user = EvaluationContext::default()
        .with_targeting_key("user-1234")
        .with_custom_field("email", "someone@elsewhere.org")
        .with_custom_field("age", 42);

    c.bench_function("file/static bool", |b| {
        b.iter(|| futures::executor::block_on(provider.resolve_bool_value("static", &empty)))
    });
    c.bench_function("file/targeting (ends_with + fractional)", |b| {
        b.iter(|| futures::executor::block_on(provider.resolve_string_value("targeted", &user)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
