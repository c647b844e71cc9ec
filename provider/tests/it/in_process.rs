//! The in-process resolver against the fake sync service.

use flagpole_provider::{
    FlagdOptions, FlagdProvider, ProviderEventKind, ProviderState, ResolverType,
};
use open_feature::provider::FeatureProvider;
use open_feature::{EvaluationContext, EvaluationErrorCode, EvaluationReason};
use prost_types::value::Kind;

use crate::fake;
use crate::support::{fast, next, state};

const FLAGS: &str = r#"{"flags":{
  "greeting": {"state":"ENABLED","variants":{"hi":"hi","internal":"INTERNAL"},"defaultVariant":"hi",
               "targeting":{"if":[{"==":[{"var":"injected"},"set"]},"internal",null]}},
  "stable": {"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}
}}"#;

const FLAGS_CHANGED: &str = r#"{"flags":{
  "greeting": {"state":"ENABLED","variants":{"hi":"hi","internal":"INTERNAL"},"defaultVariant":"hi",
               "targeting":{"if":[{"==":[{"var":"injected"},"set"]},"internal",null]}},
  "stable": {"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off"},
  "added": {"state":"ENABLED","variants":{"a":1},"defaultVariant":"a"}
}}"#;

fn injected() -> prost_types::Struct {
    prost_types::Struct {
        fields: [(
            "injected".to_string(),
            prost_types::Value {
                kind: Some(Kind::StringValue("set".into())),
            },
        )]
        .into(),
    }
}

fn options(fake: &fake::Fake) -> flagpole_provider::FlagdOptionsBuilder {
    FlagdOptions::builder()
        .resolver(ResolverType::InProcess)
        .host("127.0.0.1")
        .port(fake.addr.port())
        .selector("rawflags/selector-flags.json")
        .provider_id("test-provider")
}

#[tokio::test]
async fn sync_payload_is_evaluated_locally_with_the_sync_context() {
    let fake = fake::start().await;
    fake.state.set_config(FLAGS);
    *fake.state.sync_context.lock().unwrap() = Some(injected());
    let mut provider = FlagdProvider::new(fast(options(&fake))).unwrap();
    provider.initialize(&EvaluationContext::default()).await;
    state(&provider.events(), ProviderState::Ready).await;

    let ctx = EvaluationContext::default();
    let greeting = provider
        .resolve_string_value("greeting", &ctx)
        .await
        .unwrap();
    assert_eq!(greeting.value, "INTERNAL");
    assert_eq!(greeting.reason, Some(EvaluationReason::TargetingMatch));
    assert_eq!(
        provider
            .resolve_bool_value("stable", &ctx)
            .await
            .unwrap()
            .reason,
        Some(EvaluationReason::Static)
    );
    let missing = provider.resolve_bool_value("nope", &ctx).await.unwrap_err();
    assert_eq!(missing.code, EvaluationErrorCode::FlagNotFound);
    let mismatch = provider
        .resolve_int_value("greeting", &ctx)
        .await
        .unwrap_err();
    assert_eq!(mismatch.code, EvaluationErrorCode::TypeMismatch);

    assert_eq!(
        fake.state
            .selectors
            .lock()
            .unwrap()
            .first()
            .map(String::as_str),
        Some("rawflags/selector-flags.json")
    );
    assert_eq!(
        fake.state.provider_ids.lock().unwrap().clone(),
        vec!["test-provider".to_string()]
    );
}

#[tokio::test]
async fn get_metadata_enriches_when_the_stream_carries_no_sync_context() {
    let fake = fake::start().await;
    fake.state.set_config(FLAGS);
    *fake.state.metadata.lock().unwrap() = Some(injected());
    let provider = FlagdProvider::new(fast(options(&fake))).unwrap();
    state(&provider.events(), ProviderState::Ready).await;
    let greeting = provider
        .resolve_string_value("greeting", &EvaluationContext::default())
        .await
        .unwrap();
    assert_eq!(greeting.value, "INTERNAL");
}

#[tokio::test]
async fn without_any_sync_context_the_default_variant_applies() {
    let fake = fake::start().await;
    fake.state.set_config(FLAGS);
    let provider = FlagdProvider::new(fast(options(&fake))).unwrap();
    state(&provider.events(), ProviderState::Ready).await;
    let greeting = provider
        .resolve_string_value("greeting", &EvaluationContext::default())
        .await
        .unwrap();
    assert_eq!(
        (greeting.value.as_str(), greeting.reason),
        ("hi", Some(EvaluationReason::Default))
    );
}

#[tokio::test]
async fn a_new_payload_reports_exactly_the_changed_keys() {
    let fake = fake::start().await;
    fake.state.set_config(FLAGS);
    let provider = FlagdProvider::new(fast(options(&fake))).unwrap();
    let mut rx = provider.events().subscribe();
    next(&mut rx, ProviderEventKind::Ready).await;

    fake.state.set_config(FLAGS_CHANGED);
    let event = next(&mut rx, ProviderEventKind::ConfigurationChanged).await;
    assert_eq!(
        event.flags_changed,
        vec!["added".to_string(), "stable".to_string()]
    );
    let stable = provider
        .resolve_bool_value("stable", &EvaluationContext::default())
        .await
        .unwrap();
    assert!(!stable.value);
}

#[tokio::test]
async fn outage_serves_the_last_flags_and_reconnects() {
    let fake = fake::start().await;
    fake.state.set_config(FLAGS);
    *fake.state.sync_context.lock().unwrap() = Some(injected());
    let provider = FlagdProvider::new(fast(options(&fake))).unwrap();
    let mut rx = provider.events().subscribe();
    next(&mut rx, ProviderEventKind::Ready).await;

    fake.state.set_up(false);
    next(&mut rx, ProviderEventKind::Stale).await;
    let stale = provider
        .resolve_string_value("greeting", &EvaluationContext::default())
        .await
        .unwrap();
    assert_eq!(
        stale.value, "INTERNAL",
        "flags and enrichment survive the outage"
    );
    next(&mut rx, ProviderEventKind::Error).await;

    fake.state.set_up(true);
    next(&mut rx, ProviderEventKind::Ready).await;
    assert_eq!(provider.state(), ProviderState::Ready);
}

#[tokio::test]
async fn a_context_enricher_maps_the_sync_context() {
    let fake = fake::start().await;
    fake.state.set_config(FLAGS);
    *fake.state.sync_context.lock().unwrap() = Some(injected());
    // Rename the daemon's key: the flag's targeting no longer sees "injected".
    let enricher: flagpole_provider::ContextEnricher = std::sync::Arc::new(|ctx| {
        ctx.iter()
            .map(|(k, v)| (format!("daemon.{k}"), v.clone()))
            .collect()
    });
    let provider =
        FlagdProvider::with_context_enricher(fast(options(&fake)), Some(enricher)).unwrap();
    state(&provider.events(), ProviderState::Ready).await;
    let greeting = provider
        .resolve_string_value("greeting", &EvaluationContext::default())
        .await
        .unwrap();
    assert_eq!(greeting.value, "hi");
}

/// Regression: tonic's default 4 MiB message limit refused large flag configurations.
#[tokio::test]
async fn a_sync_payload_larger_than_four_mib_is_accepted() {
    let fake = fake::start().await;
    let flag = |i: usize| {
        format!(
            r#""flag-{i:06}":{{"state":"ENABLED","variants":{{"on":true,"off":false}},"defaultVariant":"on","metadata":{{"note":"{}"}}}}"#,
            "x".repeat(200)
        )
    };
    let body: Vec<String> = (0..20_000).map(flag).collect();
    let payload = format!(r#"{{"flags":{{{}}}}}"#, body.join(","));
    assert!(payload.len() > 4 * 1024 * 1024);
    fake.state.set_config(&payload);
    let provider = FlagdProvider::new(fast(options(&fake))).unwrap();
    state(&provider.events(), ProviderState::Ready).await;
    assert!(
        provider
            .resolve_bool_value("flag-019999", &EvaluationContext::default())
            .await
            .unwrap()
            .value
    );
}

#[tokio::test]
async fn flags_changed_during_an_outage_are_reported_after_reconnecting() {
    let fake = fake::start().await;
    fake.state.set_config(FLAGS);
    let mut long_grace = crate::support::fast(options(&fake));
    long_grace.retry_grace_period = 30;
    let provider = FlagdProvider::new(long_grace).unwrap();
    let mut rx = provider.events().subscribe();
    next(&mut rx, ProviderEventKind::Ready).await;

    fake.state.set_up(false);
    next(&mut rx, ProviderEventKind::Stale).await;
    fake.state.set_config(FLAGS_CHANGED);
    fake.state.set_up(true);
    next(&mut rx, ProviderEventKind::Ready).await;
    let event = next(&mut rx, ProviderEventKind::ConfigurationChanged).await;
    assert_eq!(
        event.flags_changed,
        vec!["added".to_string(), "stable".to_string()]
    );
}

#[tokio::test]
async fn a_payload_that_does_not_parse_keeps_the_previous_flags() {
    let fake = fake::start().await;
    fake.state.set_config(FLAGS);
    let provider = FlagdProvider::new(fast(options(&fake))).unwrap();
    let mut rx = provider.events().subscribe();
    next(&mut rx, ProviderEventKind::Ready).await;
    let sent = fake
        .state
        .sync_sent
        .load(std::sync::atomic::Ordering::SeqCst);
    fake.state.set_config("{ not json");
    let delivered = async {
        while fake
            .state
            .sync_sent
            .load(std::sync::atomic::Ordering::SeqCst)
            == sent
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(crate::support::PATIENCE, delivered)
        .await
        .expect("broken payload not sent");
    let still = provider
        .resolve_bool_value("stable", &EvaluationContext::default())
        .await
        .unwrap();
    assert!(still.value, "the previous flags are still served");
    fake.state.set_config(FLAGS_CHANGED);
    // The only change reported is the good one, against the flags from before the broken payload.
    let event = next(&mut rx, ProviderEventKind::ConfigurationChanged).await;
    assert_eq!(
        event.flags_changed,
        vec!["added".to_string(), "stable".to_string()]
    );
    assert_eq!(provider.state(), ProviderState::Ready);
}

#[tokio::test]
async fn a_fatal_status_stops_the_sync_stream_for_good() {
    let fake = fake::start().await;
    *fake.state.refuse_streams.lock().unwrap() = Some(tonic::Code::Unauthenticated);
    let mut opts = fast(options(&fake));
    opts.fatal_status_codes = vec!["UNAUTHENTICATED".into()];
    let provider = FlagdProvider::new(opts).unwrap();
    let mut rx = provider.events().subscribe();
    let error = next(&mut rx, ProviderEventKind::Error).await;
    assert!(error.fatal);
    assert_eq!(provider.state(), ProviderState::Fatal);
    let err = provider
        .resolve_bool_value("stable", &EvaluationContext::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.code,
        EvaluationErrorCode::General("PROVIDER_FATAL".into())
    );
}
