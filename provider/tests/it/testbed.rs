//! The provider over the flagd-testbed's own flag files (read from `FLAGD_TESTBED_DIR`, default
//! the pinned testbed `scripts/fetch-testbed.sh` unpacks under `target/`; a missing directory fails these tests).

use std::path::PathBuf;

use flagpole_provider::{FlagdOptions, FlagdProvider, ProviderState, ResolverType};
use open_feature::provider::FeatureProvider;
use open_feature::{EvaluationContext, EvaluationReason, FlagMetadataValue, Value};
use prost_types::value::Kind;

use crate::fake;
use crate::support::{fast, state};

fn testbed_dir() -> PathBuf {
    let dir = std::env::var_os("FLAGD_TESTBED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target/flagd-data/open-feature-flagd-0.3.0/flagd-testbed")
        });
    assert!(
        dir.join("flags").is_dir(),
        "flagd-testbed not found at {} (set FLAGD_TESTBED_DIR)",
        dir.display()
    );
    dir
}

/// The `flags` maps of several testbed files merged into one document.
fn merged(files: &[&str]) -> String {
    let mut flags = serde_json::Map::new();
    for file in files {
        let path = testbed_dir().join("flags").join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        flags.extend(doc["flags"].as_object().cloned().unwrap_or_default());
    }
    serde_json::json!({ "flags": flags }).to_string()
}

#[tokio::test]
async fn file_mode_evaluates_the_testbed_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("allFlags.json");
    std::fs::write(
        &path,
        merged(&["testing-flags.json", "metadata-flags.json"]),
    )
    .unwrap();
    let options = fast(
        FlagdOptions::builder()
            .resolver(ResolverType::File)
            .offline_flag_source_path(path),
    );
    let provider = FlagdProvider::new(options).unwrap();
    state(&provider.events(), ProviderState::Ready).await;
    let ctx = EvaluationContext::default();

    assert!(
        provider
            .resolve_bool_value("boolean-flag", &ctx)
            .await
            .unwrap()
            .value
    );
    assert_eq!(
        provider
            .resolve_int_value("integer-flag", &ctx)
            .await
            .unwrap()
            .value,
        10
    );
    let object = provider
        .resolve_struct_value("object-flag", &ctx)
        .await
        .unwrap();
    assert_eq!(object.variant.as_deref(), Some("template"));
    assert_eq!(
        object.value.fields.get("imagesPerPage"),
        Some(&Value::Int(100))
    );
    assert_eq!(
        object.value.fields.get("showImages"),
        Some(&Value::Bool(true))
    );

    let person = EvaluationContext::default()
        .with_custom_field("fn", "Sulisław")
        .with_custom_field("ln", "Świętopełk")
        .with_custom_field("age", 29)
        .with_custom_field("customer", false);
    let aware = provider
        .resolve_string_value("context-aware", &person)
        .await
        .unwrap();
    assert_eq!(
        (aware.value.as_str(), aware.reason),
        ("INTERNAL", Some(EvaluationReason::TargetingMatch))
    );

    let md = provider
        .resolve_bool_value("metadata-flag", &ctx)
        .await
        .unwrap()
        .flag_metadata
        .unwrap();
    assert_eq!(
        md.values.get("string"),
        Some(&FlagMetadataValue::String("a".into()))
    );
    assert_eq!(md.values.get("integer"), Some(&FlagMetadataValue::Int(1)));
    assert_eq!(md.values.get("float"), Some(&FlagMetadataValue::Float(1.2)));
    assert_eq!(
        md.values.get("boolean"),
        Some(&FlagMetadataValue::Bool(true))
    );

    // No daemon, no sync context: the enrichment-dependent flag takes its else branch.
    assert_eq!(
        provider
            .resolve_string_value("flagd-context-aware", &ctx)
            .await
            .unwrap()
            .value,
        "EXTERNAL"
    );
}

#[tokio::test]
async fn in_process_enrichment_resolves_the_testbed_context_aware_flag() {
    let fake = fake::start().await;
    fake.state.set_config(&merged(&["metadata-flags.json"]));
    *fake.state.sync_context.lock().unwrap() = Some(prost_types::Struct {
        fields: [(
            "injectedmetadata".to_string(),
            prost_types::Value {
                kind: Some(Kind::StringValue("set".into())),
            },
        )]
        .into(),
    });
    let options = fast(
        FlagdOptions::builder()
            .resolver(ResolverType::InProcess)
            .host("127.0.0.1")
            .port(fake.addr.port()),
    );
    let provider = FlagdProvider::new(options).unwrap();
    state(&provider.events(), ProviderState::Ready).await;
    let r = provider
        .resolve_string_value("flagd-context-aware", &EvaluationContext::default())
        .await
        .unwrap();
    assert_eq!(
        (r.value.as_str(), r.reason),
        ("INTERNAL", Some(EvaluationReason::TargetingMatch))
    );
}
