//! The RPC resolver against the fake evaluation service.

use std::sync::atomic::Ordering;

use flagpole_provider::{
    CacheType, FlagdOptions, FlagdProvider, ProviderEventKind, ProviderState, ResolverType,
    no_value_reason,
};
use open_feature::provider::FeatureProvider;
use open_feature::{
    EvaluationContext, EvaluationErrorCode, EvaluationReason, FlagMetadataValue, Value,
};

use crate::fake;
use crate::support::{fast, next, state};

fn options(fake: &fake::Fake) -> flagpole_provider::FlagdOptionsBuilder {
    FlagdOptions::builder()
        .resolver(ResolverType::Rpc)
        .host("127.0.0.1")
        .port(fake.addr.port())
}

async fn ready(
    fake: &fake::Fake,
    builder: flagpole_provider::FlagdOptionsBuilder,
) -> FlagdProvider {
    let _ = fake;
    let mut provider = FlagdProvider::new(fast(builder)).expect("provider");
    provider.initialize(&EvaluationContext::default()).await;
    state(&provider.events(), ProviderState::Ready).await;
    provider
}

#[tokio::test]
async fn typed_resolves_carry_value_variant_reason_and_metadata() {
    let fake = fake::start().await;
    let provider = ready(&fake, options(&fake).cache(CacheType::Disabled)).await;
    let ctx = EvaluationContext::default();

    let b = provider
        .resolve_bool_value("bool-static", &ctx)
        .await
        .unwrap();
    assert!(b.value);
    assert_eq!(b.variant.as_deref(), Some("on"));
    assert_eq!(b.reason, Some(EvaluationReason::Static));
    let md = b.flag_metadata.unwrap();
    assert_eq!(
        md.values.get("scope"),
        Some(&FlagMetadataValue::String("fake".into()))
    );
    assert_eq!(md.values.get("version"), Some(&FlagMetadataValue::Int(3)));

    assert_eq!(
        provider
            .resolve_string_value("string-static", &ctx)
            .await
            .unwrap()
            .value,
        "hi"
    );
    assert_eq!(
        provider
            .resolve_int_value("int-static", &ctx)
            .await
            .unwrap()
            .value,
        10
    );
    assert_eq!(
        provider
            .resolve_float_value("float-static", &ctx)
            .await
            .unwrap()
            .value,
        0.5
    );

    let object = provider
        .resolve_struct_value("object-static", &ctx)
        .await
        .unwrap()
        .value;
    assert_eq!(
        object.fields.get("title"),
        Some(&Value::String("pics".into()))
    );
    let Some(Value::Struct(inner)) = object.fields.get("inner") else {
        panic!("nested object flattened: {object:?}")
    };
    assert_eq!(inner.fields.get("deep"), Some(&Value::Bool(true)));
    assert_eq!(
        inner.fields.get("list"),
        Some(&Value::Array(vec![
            Value::Float(1.0),
            Value::String("two".into())
        ]))
    );
}

#[tokio::test]
async fn status_codes_map_to_openfeature_error_codes() {
    let fake = fake::start().await;
    let provider = ready(&fake, options(&fake)).await;
    let ctx = EvaluationContext::default();
    let code = |r: Result<_, open_feature::EvaluationError>| {
        r.map(|_: open_feature::provider::ResolutionDetails<bool>| ())
            .unwrap_err()
            .code
    };
    assert_eq!(
        code(provider.resolve_bool_value("missing", &ctx).await),
        EvaluationErrorCode::FlagNotFound
    );
    assert_eq!(
        code(provider.resolve_bool_value("mismatch", &ctx).await),
        EvaluationErrorCode::TypeMismatch
    );
    assert_eq!(
        code(provider.resolve_bool_value("parse-error", &ctx).await),
        EvaluationErrorCode::ParseError
    );
    assert_eq!(
        code(provider.resolve_bool_value("general", &ctx).await),
        EvaluationErrorCode::General("GENERAL".into())
    );

    let disabled = provider
        .resolve_bool_value("bool-disabled", &ctx)
        .await
        .unwrap_err();
    assert_eq!(no_value_reason(&disabled), Some(EvaluationReason::Disabled));
    assert_eq!(
        no_value_reason(
            &provider
                .resolve_bool_value("missing", &ctx)
                .await
                .unwrap_err()
        ),
        None
    );
}

#[tokio::test]
async fn static_results_are_cached_and_targeting_results_are_not() {
    let fake = fake::start().await;
    let provider = ready(&fake, options(&fake)).await;
    let ctx = EvaluationContext::default();

    let first = provider
        .resolve_bool_value("bool-static", &ctx)
        .await
        .unwrap();
    assert_eq!(first.reason, Some(EvaluationReason::Static));
    let second = provider
        .resolve_bool_value("bool-static", &ctx)
        .await
        .unwrap();
    assert_eq!(second.reason, Some(EvaluationReason::Cached));
    assert_eq!(second.variant.as_deref(), Some("on"));
    assert_eq!(
        fake.state.calls.load(Ordering::SeqCst),
        1,
        "the second evaluation must not reach the server"
    );

    for _ in 0..2 {
        let t = provider
            .resolve_bool_value("bool-targeted", &ctx)
            .await
            .unwrap();
        assert_eq!(t.reason, Some(EvaluationReason::TargetingMatch));
    }
    assert_eq!(fake.state.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn disabled_cache_never_answers_cached() {
    let fake = fake::start().await;
    let provider = ready(&fake, options(&fake).cache(CacheType::Disabled)).await;
    let ctx = EvaluationContext::default();
    for _ in 0..3 {
        let r = provider
            .resolve_bool_value("bool-static", &ctx)
            .await
            .unwrap();
        assert_eq!(r.reason, Some(EvaluationReason::Static));
    }
    assert_eq!(fake.state.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn change_event_reports_keys_and_purges_them_from_the_cache() {
    let fake = fake::start().await;
    let provider = ready(&fake, options(&fake)).await;
    let mut rx = provider.events().subscribe();
    let ctx = EvaluationContext::default();
    provider
        .resolve_bool_value("bool-static", &ctx)
        .await
        .unwrap();
    provider
        .resolve_string_value("string-static", &ctx)
        .await
        .unwrap();
    assert_eq!(provider.cached_entries(), 2);

    fake.state.send_change(&["bool-static"]);
    let event = next(&mut rx, ProviderEventKind::ConfigurationChanged).await;
    assert_eq!(event.flags_changed, vec!["bool-static".to_string()]);

    assert_eq!(
        provider
            .resolve_bool_value("bool-static", &ctx)
            .await
            .unwrap()
            .reason,
        Some(EvaluationReason::Static)
    );
    assert_eq!(
        provider
            .resolve_string_value("string-static", &ctx)
            .await
            .unwrap()
            .reason,
        Some(EvaluationReason::Cached)
    );
}

#[tokio::test]
async fn outage_goes_stale_keeps_cache_then_errors_purges_and_recovers() {
    let fake = fake::start().await;
    let provider = ready(&fake, options(&fake)).await;
    let events = provider.events();
    let mut rx = events.subscribe();
    let ctx = EvaluationContext::default();
    provider
        .resolve_bool_value("bool-static", &ctx)
        .await
        .unwrap();

    fake.state.set_up(false);
    next(&mut rx, ProviderEventKind::Stale).await;
    assert_eq!(events.state(), ProviderState::Stale);
    let stale = provider
        .resolve_bool_value("bool-static", &ctx)
        .await
        .unwrap();
    assert_eq!(
        stale.reason,
        Some(EvaluationReason::Cached),
        "the cache is kept while stale"
    );

    let error = next(&mut rx, ProviderEventKind::Error).await;
    assert!(!error.fatal);
    assert_eq!(provider.cached_entries(), 0, "the cache is purged on error");
    let down = provider
        .resolve_bool_value("bool-static", &ctx)
        .await
        .unwrap_err();
    assert_eq!(down.code, EvaluationErrorCode::ProviderNotReady);

    fake.state.set_up(true);
    next(&mut rx, ProviderEventKind::Ready).await;
    let back = provider
        .resolve_bool_value("bool-static", &ctx)
        .await
        .unwrap();
    assert_eq!(back.reason, Some(EvaluationReason::Static));
}

#[tokio::test]
async fn selector_header_and_context_reach_the_server() {
    let fake = fake::start().await;
    let provider = ready(&fake, options(&fake).selector("flagSetId=checkout")).await;
    let ctx = EvaluationContext::default()
        .with_targeting_key("user-7")
        .with_custom_field("age", 42);
    provider
        .resolve_bool_value("bool-targeted", &ctx)
        .await
        .unwrap();
    let selectors = fake.state.selectors.lock().unwrap().clone();
    assert!(
        selectors.len() >= 2,
        "event stream and evaluation both carry the selector: {selectors:?}"
    );
    assert!(selectors.iter().all(|s| s == "flagSetId=checkout"));
    let contexts = fake.state.contexts.lock().unwrap().clone();
    assert_eq!(
        contexts,
        vec![serde_json::json!({"targetingKey": "user-7", "age": 42.0})]
    );
}

#[tokio::test]
async fn fatal_status_code_puts_the_provider_in_fatal_state() {
    let fake = fake::start().await;
    *fake.state.refuse_streams.lock().unwrap() = Some(tonic::Code::PermissionDenied);
    let provider = FlagdProvider::new(fast(
        options(&fake).fatal_status_codes(vec!["PERMISSION_DENIED".to_string()]),
    ))
    .expect("provider");
    let mut rx = provider.events().subscribe();
    let error = next(&mut rx, ProviderEventKind::Error).await;
    assert!(error.fatal);
    assert_eq!(provider.state(), ProviderState::Fatal);
    let err = provider
        .resolve_bool_value("bool-static", &EvaluationContext::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.code,
        EvaluationErrorCode::General("PROVIDER_FATAL".into())
    );
}

#[tokio::test]
async fn unavailable_daemon_reports_error_after_the_deadline() {
    // Bind and drop a listener: nothing listens on that port afterwards.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let provider = FlagdProvider::new(fast(FlagdOptions::builder().host("127.0.0.1").port(port)))
        .expect("provider");
    let mut rx = provider.events().subscribe();
    let error = next(&mut rx, ProviderEventKind::Error).await;
    assert!(!error.fatal);
    assert_eq!(provider.state(), ProviderState::Error);
}

#[tokio::test]
async fn dropping_the_provider_closes_its_stream() {
    let fake = fake::start().await;
    let provider = ready(&fake, options(&fake)).await;
    assert_eq!(fake.state.open_streams.load(Ordering::SeqCst), 1);
    drop(provider);
    let closed = async {
        while fake.state.open_streams.load(Ordering::SeqCst) != 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(crate::support::PATIENCE, closed)
        .await
        .expect("the event stream outlived the provider");
}

#[tokio::test]
async fn envoy_target_uri_dials_host_and_port_with_the_authority() {
    let fake = fake::start().await;
    let uri = format!("envoy://127.0.0.1:{}/rpc.service", fake.addr.port());
    let provider = ready(&fake, FlagdOptions::builder().target_uri(uri).port(1u16)).await;
    assert!(
        provider
            .resolve_bool_value("bool-static", &EvaluationContext::default())
            .await
            .unwrap()
            .value
    );
    let authorities = fake.state.authorities.lock().unwrap().clone();
    assert!(!authorities.is_empty());
    assert!(
        authorities.iter().all(|a| a == "rpc.service"),
        "the authority is the one after the port: {authorities:?}"
    );
}

#[tokio::test]
async fn unix_socket_path_is_dialled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flagd.sock");
    let fake = fake::start_unix(&path).await;
    let provider = ready(&fake, FlagdOptions::builder().socket_path(path.clone())).await;
    assert!(
        provider
            .resolve_bool_value("bool-static", &EvaluationContext::default())
            .await
            .unwrap()
            .value
    );
}

#[tokio::test]
async fn v2_says_default_without_a_value_so_the_code_default_applies() {
    let fake = fake::start().await;
    let provider = ready(&fake, options(&fake)).await;
    let ctx = EvaluationContext::default();
    let err = provider
        .resolve_bool_value("no-default", &ctx)
        .await
        .unwrap_err();
    assert_eq!(no_value_reason(&err), Some(EvaluationReason::Default));
    let disabled = provider
        .resolve_string_value("bool-disabled", &ctx)
        .await
        .unwrap_err();
    assert_eq!(no_value_reason(&disabled), Some(EvaluationReason::Disabled));
    assert_eq!(fake.state.v2_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_v1_only_server_is_still_served_through_v1() {
    let fake = fake::start_v1_only().await;
    let provider = ready(&fake, options(&fake).cache(CacheType::Disabled)).await;
    let ctx = EvaluationContext::default();
    for _ in 0..2 {
        let r = provider
            .resolve_string_value("string-static", &ctx)
            .await
            .unwrap();
        assert_eq!(
            (r.value.as_str(), r.reason),
            ("hi", Some(EvaluationReason::Static))
        );
    }
    assert_eq!(fake.state.v2_calls.load(Ordering::SeqCst), 0);
    let disabled = provider
        .resolve_bool_value("bool-disabled", &ctx)
        .await
        .unwrap_err();
    assert_eq!(no_value_reason(&disabled), Some(EvaluationReason::Disabled));
    let missing = provider
        .resolve_bool_value("no-default", &ctx)
        .await
        .unwrap_err();
    assert_eq!(
        missing.code,
        EvaluationErrorCode::FlagNotFound,
        "v1 cannot tell a code default from a missing flag"
    );
}

/// A CA and a `localhost` server certificate signed by it, as the testbed's TLS setup has.
fn ca_and_server() -> (String, tonic::transport::Identity) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test root CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    (
        ca.pem(),
        tonic::transport::Identity::from_pem(cert.pem(), key.serialize_pem()),
    )
}

#[tokio::test]
async fn tls_with_a_custom_ca_certificate() {
    let (ca_pem, identity) = ca_and_server();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, ca_pem).unwrap();
    let fake = fake::start_tls(identity).await;
    let builder = FlagdOptions::builder()
        .host("localhost")
        .port(fake.addr.port())
        .tls(true)
        .cert_path(ca_path);
    let provider = ready(&fake, builder).await;
    assert!(
        provider
            .resolve_bool_value("bool-static", &EvaluationContext::default())
            .await
            .unwrap()
            .value
    );
}

#[tokio::test]
async fn tls_against_an_untrusted_server_never_becomes_ready() {
    let (_, identity) = ca_and_server();
    let (other_ca, _) = ca_and_server();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("other.crt");
    std::fs::write(&ca_path, other_ca).unwrap();
    let fake = fake::start_tls(identity).await;
    let builder = FlagdOptions::builder()
        .host("localhost")
        .port(fake.addr.port())
        .cert_path(ca_path);
    let provider = FlagdProvider::new(fast(builder)).unwrap();
    let mut rx = provider.events().subscribe();
    next(&mut rx, ProviderEventKind::Error).await;
    assert_eq!(fake.state.open_streams.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_call_past_the_deadline_is_a_general_error() {
    let fake = fake::start().await;
    let provider = ready(&fake, options(&fake).deadline_ms(200u64)).await;
    let err = provider
        .resolve_bool_value("slow", &EvaluationContext::default())
        .await
        .unwrap_err();
    assert_eq!(err.code, EvaluationErrorCode::General("GENERAL".into()));
}

#[tokio::test]
async fn the_stream_deadline_reopens_the_stream_without_events() {
    let fake = fake::start().await;
    let provider = ready(&fake, options(&fake).stream_deadline_ms(100u64)).await;
    let mut rx = provider.events().subscribe();
    let reopened = async {
        while fake.state.stream_opens.load(Ordering::SeqCst) < 4 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(crate::support::PATIENCE, reopened)
        .await
        .expect("the stream was not re-opened");
    let kinds: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.iter().all(|k| *k == ProviderEventKind::Ready),
        "no stale or error on a stream deadline: {kinds:?}"
    );
    assert_eq!(provider.state(), ProviderState::Ready);
}

#[tokio::test]
async fn a_reconnect_starts_from_an_empty_cache() {
    let fake = fake::start().await;
    // A long grace period: the outage stays STALE, so only the reconnect can empty the cache.
    let mut long_grace = fast(options(&fake));
    long_grace.retry_grace_period = 30;
    let provider = FlagdProvider::new(long_grace).unwrap();
    state(&provider.events(), ProviderState::Ready).await;
    let mut rx = provider.events().subscribe();
    let ctx = EvaluationContext::default();
    provider
        .resolve_bool_value("bool-static", &ctx)
        .await
        .unwrap();
    fake.state.set_up(false);
    next(&mut rx, ProviderEventKind::Stale).await;
    assert_eq!(provider.cached_entries(), 1);
    fake.state.set_up(true);
    next(&mut rx, ProviderEventKind::Ready).await;
    let r = provider
        .resolve_bool_value("bool-static", &ctx)
        .await
        .unwrap();
    assert_eq!(
        r.reason,
        Some(EvaluationReason::Static),
        "changes missed while away must not be served from the cache"
    );
}
