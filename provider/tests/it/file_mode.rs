//! The file resolver end to end: evaluation, change events, a vanishing file, an unreadable path.

use std::path::Path;

use flagpole_provider::{
    FlagdOptions, FlagdProvider, ProviderEventKind, ProviderState, ResolverType, no_value_reason,
};
use open_feature::provider::FeatureProvider;
use open_feature::{
    EvaluationContext, EvaluationErrorCode, EvaluationReason, FlagMetadataValue, Value,
};

use crate::support::{fast, next, state};

const FLAGS: &str = r#"{
  "flags": {
    "bool": {"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on",
             "metadata":{"owner":"team-a","rev":2}},
    "string": {"state":"ENABLED","variants":{"a":"alpha","b":"beta"},"defaultVariant":"a"},
    "int": {"state":"ENABLED","variants":{"ten":10},"defaultVariant":"ten"},
    "float": {"state":"ENABLED","variants":{"half":0.5},"defaultVariant":"half"},
    "object": {"state":"ENABLED","variants":{"o":{"title":"pics","n":100,"inner":{"deep":[1,"two",{"x":false}]}}},
               "defaultVariant":"o"},
    "targeted": {"state":"ENABLED","variants":{"a":"alpha","b":"beta"},"defaultVariant":"a",
                 "targeting":{"if":[{"==":[{"var":"targetingKey"},"vip"]},"b","a"]}},
    "disabled": {"state":"DISABLED","variants":{"on":true},"defaultVariant":"on"},
    "no-default": {"state":"ENABLED","variants":{"on":true}}
  },
  "metadata": {"flagSetId":"set-1"}
}"#;

fn provider_for(path: &Path) -> FlagdProvider {
    let options = fast(
        FlagdOptions::builder()
            .resolver(ResolverType::File)
            .offline_flag_source_path(path.to_path_buf()),
    );
    FlagdProvider::new(options).expect("provider")
}

#[tokio::test]
async fn every_type_resolves_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, FLAGS).unwrap();
    let mut provider = provider_for(&path);
    provider.initialize(&EvaluationContext::default()).await;
    state(&provider.events(), ProviderState::Ready).await;
    let ctx = EvaluationContext::default();

    let b = provider.resolve_bool_value("bool", &ctx).await.unwrap();
    assert!(b.value);
    assert_eq!(
        (b.variant.as_deref(), b.reason),
        (Some("on"), Some(EvaluationReason::Static))
    );
    let md = b.flag_metadata.unwrap();
    assert_eq!(
        md.values.get("owner"),
        Some(&FlagMetadataValue::String("team-a".into()))
    );
    assert_eq!(md.values.get("rev"), Some(&FlagMetadataValue::Int(2)));
    assert_eq!(
        md.values.get("flagSetId"),
        Some(&FlagMetadataValue::String("set-1".into()))
    );

    assert_eq!(
        provider
            .resolve_string_value("string", &ctx)
            .await
            .unwrap()
            .value,
        "alpha"
    );
    assert_eq!(
        provider.resolve_int_value("int", &ctx).await.unwrap().value,
        10
    );
    assert_eq!(
        provider
            .resolve_float_value("float", &ctx)
            .await
            .unwrap()
            .value,
        0.5
    );
    assert_eq!(
        provider
            .resolve_float_value("int", &ctx)
            .await
            .unwrap()
            .value,
        10.0
    );

    let object = provider
        .resolve_struct_value("object", &ctx)
        .await
        .unwrap()
        .value;
    let json = flagpole_provider::convert::struct_value_to_json(&object);
    assert_eq!(
        json,
        serde_json::json!({"title":"pics","n":100,"inner":{"deep":[1,"two",{"x":false}]}})
    );
    assert_eq!(object.fields.get("n"), Some(&Value::Int(100)));

    let vip = EvaluationContext::default().with_targeting_key("vip");
    let t = provider
        .resolve_string_value("targeted", &vip)
        .await
        .unwrap();
    assert_eq!(
        (t.value.as_str(), t.reason),
        ("beta", Some(EvaluationReason::TargetingMatch))
    );

    let disabled = provider
        .resolve_bool_value("disabled", &ctx)
        .await
        .unwrap_err();
    assert_eq!(no_value_reason(&disabled), Some(EvaluationReason::Disabled));
    let no_default = provider
        .resolve_bool_value("no-default", &ctx)
        .await
        .unwrap_err();
    assert_eq!(
        no_value_reason(&no_default),
        Some(EvaluationReason::Default)
    );
    let mismatch = provider
        .resolve_bool_value("string", &ctx)
        .await
        .unwrap_err();
    assert_eq!(mismatch.code, EvaluationErrorCode::TypeMismatch);
    let missing = provider
        .resolve_bool_value("missing", &ctx)
        .await
        .unwrap_err();
    assert_eq!(missing.code, EvaluationErrorCode::FlagNotFound);
}

#[tokio::test]
async fn rewriting_the_file_reports_the_changed_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, FLAGS).unwrap();
    let provider = provider_for(&path);
    let mut rx = provider.events().subscribe();
    next(&mut rx, ProviderEventKind::Ready).await;

    // Atomic replace, as the testbed's launcher does.
    let changed = FLAGS.replace(r#""defaultVariant":"a"}"#, r#""defaultVariant":"b"}"#);
    let tmp = dir.path().join("flags.json.tmp");
    std::fs::write(&tmp, changed).unwrap();
    std::fs::rename(&tmp, &path).unwrap();

    let event = next(&mut rx, ProviderEventKind::ConfigurationChanged).await;
    assert_eq!(event.flags_changed, vec!["string".to_string()]);
    assert_eq!(
        provider
            .resolve_string_value("string", &EvaluationContext::default())
            .await
            .unwrap()
            .value,
        "beta"
    );
}

#[tokio::test]
async fn a_vanished_file_is_stale_then_error_and_ready_when_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, FLAGS).unwrap();
    let provider = provider_for(&path);
    let mut rx = provider.events().subscribe();
    next(&mut rx, ProviderEventKind::Ready).await;

    std::fs::remove_file(&path).unwrap();
    next(&mut rx, ProviderEventKind::Stale).await;
    assert!(
        provider
            .resolve_bool_value("bool", &EvaluationContext::default())
            .await
            .unwrap()
            .value,
        "last flags stay"
    );
    next(&mut rx, ProviderEventKind::Error).await;

    std::fs::write(&path, FLAGS).unwrap();
    next(&mut rx, ProviderEventKind::Ready).await;
}

#[tokio::test]
async fn a_missing_file_reports_error_after_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let provider = provider_for(&dir.path().join("not-existing"));
    let mut rx = provider.events().subscribe();
    let error = next(&mut rx, ProviderEventKind::Error).await;
    assert!(!error.fatal);
    let err = provider
        .resolve_bool_value("bool", &EvaluationContext::default())
        .await
        .unwrap_err();
    assert_eq!(err.code, EvaluationErrorCode::ProviderNotReady);
}

#[tokio::test]
async fn a_broken_rewrite_keeps_the_previous_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, FLAGS).unwrap();
    let provider = provider_for(&path);
    let mut rx = provider.events().subscribe();
    next(&mut rx, ProviderEventKind::Ready).await;
    std::fs::write(&path, "{ not json").unwrap();
    // Then a good change: the only change event is for it, and the flags were never lost in between.
    let changed = FLAGS.replace(r#""ten":10"#, r#""ten":11"#);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        provider
            .resolve_int_value("int", &EvaluationContext::default())
            .await
            .unwrap()
            .value,
        10
    );
    std::fs::write(&path, changed).unwrap();
    let event = next(&mut rx, ProviderEventKind::ConfigurationChanged).await;
    assert_eq!(event.flags_changed, vec!["int".to_string()]);
    assert_eq!(provider.state(), ProviderState::Ready);
}

/// The only test that uses the SDK's global API (it is process-wide).
#[tokio::test]
async fn through_the_openfeature_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, FLAGS).unwrap();
    let provider = provider_for(&path);
    let events = provider.events();
    let mut api = open_feature::OpenFeature::singleton_mut().await;
    api.set_provider(provider).await;
    assert_eq!(
        events.state(),
        ProviderState::Ready,
        "set_provider waits for initialization"
    );
    let client = api.create_client();
    drop(api);

    let details = client
        .get_string_details(
            "targeted",
            Some(&EvaluationContext::default().with_targeting_key("vip")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (details.value.as_str(), details.variant.as_deref()),
        ("beta", Some("b"))
    );
    assert_eq!(details.reason, Some(EvaluationReason::TargetingMatch));
    // A disabled flag gives the caller's default.
    assert!(client.get_bool_value("disabled", None, None).await.is_err());
    let err = client
        .get_bool_details("disabled", None, None)
        .await
        .unwrap_err();
    assert_eq!(no_value_reason(&err), Some(EvaluationReason::Disabled));
    let object = client
        .get_struct_value::<open_feature::StructValue>("object", None, None)
        .await
        .unwrap();
    assert!(matches!(object.fields.get("inner"), Some(Value::Struct(_))));
}

#[tokio::test]
async fn a_yaml_flag_file_is_read_as_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.yaml");
    let yaml = "flags:\n  greeting:\n    state: ENABLED\n    variants:\n      hi: hello\n      bye: goodbye\n    defaultVariant: hi\n";
    std::fs::write(&path, yaml).unwrap();
    let provider = provider_for(&path);
    state(&provider.events(), ProviderState::Ready).await;
    let r = provider
        .resolve_string_value("greeting", &EvaluationContext::default())
        .await
        .unwrap();
    assert_eq!(
        (r.value.as_str(), r.reason),
        ("hello", Some(EvaluationReason::Static))
    );
}

/// The way a Kubernetes ConfigMap volume updates a file: `flags.json` → `..data/flags.json`, and the
/// `..data` symlink is swapped to a new directory; no event names `flags.json` itself.
#[tokio::test]
async fn a_configmap_style_symlink_swap_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("..v1");
    let v2 = dir.path().join("..v2");
    std::fs::create_dir(&v1).unwrap();
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v1.join("flags.json"), FLAGS).unwrap();
    std::fs::write(
        v2.join("flags.json"),
        FLAGS.replace(r#""ten":10"#, r#""ten":12"#),
    )
    .unwrap();
    std::os::unix::fs::symlink("..v1", dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/flags.json", dir.path().join("flags.json")).unwrap();
    let options = crate::support::fast(
        FlagdOptions::builder()
            .resolver(ResolverType::File)
            .offline_flag_source_path(dir.path().join("flags.json"))
            .offline_poll_interval_ms(3_600_000u64), // only notifications can explain a prompt change
    );
    let provider = FlagdProvider::new(options).unwrap();
    let mut rx = provider.events().subscribe();
    next(&mut rx, ProviderEventKind::Ready).await;

    std::os::unix::fs::symlink("..v2", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    let event = next(&mut rx, ProviderEventKind::ConfigurationChanged).await;
    assert_eq!(event.flags_changed, vec!["int".to_string()]);
    assert_eq!(
        provider
            .resolve_int_value("int", &EvaluationContext::default())
            .await
            .unwrap()
            .value,
        12
    );
}
