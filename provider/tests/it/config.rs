//! Options, environment variables, defaults and precedence (the testbed's config.feature, by hand). The
//! environment is injected through `build_with_env`, so these tests never touch the process environment.

use std::collections::HashMap;
use std::path::PathBuf;

use flagpole_provider::{CacheType, ConfigError, FlagdOptions, FlagdOptionsBuilder, ResolverType};

fn with_env(
    builder: FlagdOptionsBuilder,
    vars: &[(&str, &str)],
) -> Result<FlagdOptions, ConfigError> {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    builder.build_with_env(|name| env.get(name).cloned())
}

fn env_only(vars: &[(&str, &str)]) -> FlagdOptions {
    with_env(FlagdOptions::builder(), vars).expect("valid environment")
}

#[test]
fn defaults_match_the_specification() {
    let o = env_only(&[]);
    assert_eq!(o.resolver, ResolverType::Rpc);
    assert_eq!((o.host.as_str(), o.port, o.tls), ("localhost", 8013, false));
    assert_eq!(
        (o.deadline_ms, o.stream_deadline_ms, o.keep_alive_time_ms),
        (500, 600_000, 0)
    );
    assert_eq!(
        (
            o.retry_backoff_ms,
            o.retry_backoff_max_ms,
            o.retry_grace_period
        ),
        (1_000, 5_000, 10)
    );
    assert_eq!((o.cache, o.max_cache_size), (CacheType::Lru, 1_000));
    assert_eq!(o.offline_poll_interval_ms, 5_000);
    assert!(o.fatal_status_codes.is_empty());
    assert!(o.target_uri.is_none() && o.cert_path.is_none() && o.socket_path.is_none());
    assert!(
        o.selector.is_none() && o.provider_id.is_none() && o.offline_flag_source_path.is_none()
    );
    assert_eq!(o, FlagdOptions::default());
}

#[test]
fn in_process_defaults_to_the_sync_port() {
    let o = with_env(
        FlagdOptions::builder().resolver(ResolverType::InProcess),
        &[],
    )
    .unwrap();
    assert_eq!(o.port, 8015);
    let rpc = with_env(FlagdOptions::builder().resolver(ResolverType::Rpc), &[]).unwrap();
    assert_eq!(rpc.port, 8013);
}

#[test]
fn every_environment_variable_is_read() {
    let o = env_only(&[
        ("FLAGD_RESOLVER", "IN-PROCESS"),
        ("FLAGD_HOST", "local"),
        ("FLAGD_PORT", "1234"),
        ("FLAGD_TLS", "True"),
        ("FLAGD_TARGET_URI", "path"),
        ("FLAGD_SERVER_CERT_PATH", "cert.pem"),
        ("FLAGD_SOCKET_PATH", "sock"),
        ("FLAGD_DEADLINE_MS", "123"),
        ("FLAGD_STREAM_DEADLINE_MS", "500000"),
        ("FLAGD_KEEP_ALIVE_TIME_MS", "5"),
        ("FLAGD_RETRY_BACKOFF_MS", "5000"),
        ("FLAGD_RETRY_BACKOFF_MAX_MS", "12000"),
        ("FLAGD_RETRY_GRACE_PERIOD", "7"),
        ("FLAGD_FATAL_STATUS_CODES", "C, D"),
        ("FLAGD_CACHE", "disabled"),
        ("FLAGD_MAX_CACHE_SIZE", "1236"),
        ("FLAGD_SOURCE_SELECTOR", "selector"),
        ("FLAGD_PROVIDER_ID", "env-providerId"),
        ("FLAGD_OFFLINE_POLL_MS", "1000"),
    ]);
    assert_eq!(o.resolver, ResolverType::InProcess);
    assert_eq!((o.host.as_str(), o.port, o.tls), ("local", 1234, true));
    assert_eq!(o.target_uri.as_deref(), Some("path"));
    assert_eq!(o.cert_path, Some(PathBuf::from("cert.pem")));
    assert_eq!(o.socket_path, Some(PathBuf::from("sock")));
    assert_eq!(
        (o.deadline_ms, o.stream_deadline_ms, o.keep_alive_time_ms),
        (123, 500_000, 5)
    );
    assert_eq!(
        (
            o.retry_backoff_ms,
            o.retry_backoff_max_ms,
            o.retry_grace_period
        ),
        (5_000, 12_000, 7)
    );
    assert_eq!(o.fatal_status_codes, vec!["C".to_string(), "D".to_string()]);
    assert_eq!((o.cache, o.max_cache_size), (CacheType::Disabled, 1236));
    assert_eq!(o.selector.as_deref(), Some("selector"));
    assert_eq!(o.provider_id.as_deref(), Some("env-providerId"));
    assert_eq!(o.offline_poll_interval_ms, 1000);
}

#[test]
fn resolver_names_are_case_insensitive() {
    for (text, expected) in [
        ("rpc", ResolverType::Rpc),
        ("RPC", ResolverType::Rpc),
        ("in-process", ResolverType::InProcess),
    ] {
        assert_eq!(env_only(&[("FLAGD_RESOLVER", text)]).resolver, expected);
    }
}

#[test]
fn explicit_options_beat_the_environment() {
    let o = with_env(
        FlagdOptions::builder()
            .resolver(ResolverType::InProcess)
            .host("local")
            .port(1234u16)
            .tls(true)
            .deadline_ms(123u64)
            .fatal_status_codes(vec!["A".to_string(), "B".to_string()])
            .selector("selector")
            .cache(CacheType::Disabled)
            .max_cache_size(1236usize)
            .retry_grace_period(10u64),
        &[
            ("FLAGD_RESOLVER", "rpc"),
            ("FLAGD_HOST", "l"),
            ("FLAGD_PORT", "3456"),
            ("FLAGD_SYNC_PORT", "3456"),
            ("FLAGD_TLS", "False"),
            ("FLAGD_DEADLINE_MS", "345"),
            ("FLAGD_FATAL_STATUS_CODES", "C, D"),
            ("FLAGD_SOURCE_SELECTOR", "sele"),
            ("FLAGD_CACHE", "lru"),
            ("FLAGD_MAX_CACHE_SIZE", "2345"),
            ("FLAGD_RETRY_GRACE_PERIOD", "4"),
        ],
    )
    .unwrap();
    assert_eq!(o.resolver, ResolverType::InProcess);
    assert_eq!(
        (o.host.as_str(), o.port, o.tls, o.deadline_ms),
        ("local", 1234, true, 123)
    );
    assert_eq!(o.fatal_status_codes, vec!["A".to_string(), "B".to_string()]);
    assert_eq!(
        (o.selector.as_deref(), o.cache, o.max_cache_size),
        (Some("selector"), CacheType::Disabled, 1236)
    );
    assert_eq!(o.retry_grace_period, 10);
}

#[test]
fn in_process_port_prefers_flagd_sync_port_over_flagd_port() {
    let in_process = FlagdOptions::builder().resolver(ResolverType::InProcess);
    let both = with_env(
        in_process.clone(),
        &[("FLAGD_SYNC_PORT", "9999"), ("FLAGD_PORT", "8888")],
    )
    .unwrap();
    assert_eq!(both.port, 9999);
    let legacy = with_env(in_process, &[("FLAGD_PORT", "1234")]).unwrap();
    assert_eq!(legacy.port, 1234);
    // FLAGD_SYNC_PORT means nothing to the RPC resolver.
    assert_eq!(env_only(&[("FLAGD_SYNC_PORT", "9999")]).port, 8013);
}

#[test]
fn an_offline_path_turns_in_process_into_file_but_not_rpc() {
    let path = |r| {
        with_env(
            FlagdOptions::builder()
                .resolver(r)
                .offline_flag_source_path("some-path"),
            &[],
        )
        .unwrap()
    };
    assert_eq!(path(ResolverType::InProcess).resolver, ResolverType::File);
    assert_eq!(path(ResolverType::Rpc).resolver, ResolverType::Rpc);
    assert_eq!(path(ResolverType::File).resolver, ResolverType::File);
    let from_env = with_env(
        FlagdOptions::builder().offline_flag_source_path("some-path"),
        &[("FLAGD_RESOLVER", "FILE")],
    );
    assert_eq!(from_env.unwrap().resolver, ResolverType::File);
    let env_path = env_only(&[
        ("FLAGD_RESOLVER", "in-process"),
        ("FLAGD_OFFLINE_FLAG_SOURCE_PATH", "path"),
    ]);
    assert_eq!(
        (env_path.resolver, env_path.offline_flag_source_path),
        (ResolverType::File, Some(PathBuf::from("path")))
    );
}

#[test]
fn file_resolver_without_a_path_is_an_error() {
    let err = with_env(FlagdOptions::builder().resolver(ResolverType::File), &[]).unwrap_err();
    assert_eq!(err, ConfigError::MissingOfflinePath);
}

#[test]
fn malformed_environment_values_name_the_variable() {
    let err = with_env(FlagdOptions::builder(), &[("FLAGD_PORT", "eighty")]).unwrap_err();
    assert!(err.to_string().contains("FLAGD_PORT"), "{err}");
    let err = with_env(FlagdOptions::builder(), &[("FLAGD_TLS", "maybe")]).unwrap_err();
    assert!(err.to_string().contains("FLAGD_TLS"), "{err}");
    assert!(with_env(FlagdOptions::builder(), &[("FLAGD_CACHE", "mem")]).is_err());
}
