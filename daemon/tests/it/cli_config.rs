//! Command line, `FLAGD_*` variables and `--config` files, including the testbed's launchpad configs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use flagpole::config::{Action, Args, Config, ConfigError, Invocation, LogFormat};
use flagpole_engine::FractionalAlgorithm;

use crate::runtime_support::testbed_dir;

fn invocation(args: &[&str]) -> Result<Invocation, ConfigError> {
    let args = Args::try_parse_from(std::iter::once("flagpole").chain(args.iter().copied()))
        .expect("clap parse");
    Invocation::try_from(args)
}

fn start_config(args: &[&str]) -> Config {
    match invocation(args).map(|i| i.action) {
        Ok(Action::Start(config)) => *config,
        other => panic!("not a start config: {other:?}"),
    }
}

fn identities(config: &Config) -> Vec<&str> {
    config.sources.iter().map(|s| &*s.identity).collect()
}

fn launchpad_config(name: &str) -> PathBuf {
    let path = testbed_dir().join("launchpad/configs").join(name);
    assert!(path.is_file(), "missing testbed config {}", path.display());
    path
}

#[test]
fn testbed_default_config_parses_as_flagd_reads_it() {
    let path = launchpad_config("default.json");
    let config = start_config(&["start", "--config", path.to_str().expect("utf-8 path")]);
    assert_eq!(
        identities(&config),
        ["flags/allFlags.json", "rawflags/selector-flags.json"]
    );
    assert_eq!(
        config.context_values,
        BTreeMap::from([("injectedmetadata".to_owned(), "set".to_owned())])
    );
    assert!(!config.disable_sync_metadata);
    assert_eq!(config.listen.evaluation.port(), 8013);
    assert_eq!(config.listen.management.port(), 8014);
    assert_eq!(config.listen.sync.port(), 8015);
}

#[test]
fn every_testbed_config_parses() {
    let dir = testbed_dir().join("launchpad/configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("read configs dir") {
        let path = entry.expect("dir entry").path();
        let config = start_config(&["start", "--config", path.to_str().expect("utf-8 path")]);
        assert!(!config.sources.is_empty(), "{}", path.display());
        seen += 1;
    }
    assert!(
        seen >= 4,
        "expected the four launchpad configs, found {seen}"
    );

    let sync_payload = start_config(&[
        "start",
        "--config",
        launchpad_config("sync-payload.json")
            .to_str()
            .expect("utf-8"),
    ]);
    assert!(sync_payload.disable_sync_metadata);
    let ssl = start_config(&[
        "start",
        "--config",
        launchpad_config("ssl.json").to_str().expect("utf-8"),
    ]);
    assert_eq!(
        ssl.serving.tls,
        Some((
            PathBuf::from("/ssl/server-cert.pem"),
            PathBuf::from("/ssl/server-key.pem")
        ))
    );
    let metadata = start_config(&[
        "start",
        "--config",
        launchpad_config("metadata.json").to_str().expect("utf-8"),
    ]);
    assert_eq!(
        identities(&metadata),
        ["rawflags/selector-flag-combined-metadata.json"]
    );
}

#[test]
fn flags_override_the_config_file_and_defaults_fill_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "port: 9013\nSync-Port: \"9015\"\nlog-format: json\nstream-deadline: 1m30s\n\
         sources:\n  - URI: a.yaml\n    Provider: fsnotify\ncontext-value:\n  env: prod\nsome-future-flag: 1\n",
    )
    .expect("write config");
    let inv = invocation(&[
        "start",
        "--config",
        path.to_str().expect("utf-8"),
        "-p",
        "7013",
        "-X",
        "region=eu,tier=1",
    ])
    .expect("valid");
    assert_eq!(inv.log.format, LogFormat::Json);
    assert!(
        inv.warnings.iter().any(|w| w.contains("some-future-flag")),
        "{:?}",
        inv.warnings
    );
    let Action::Start(config) = inv.action else {
        panic!("not start")
    };
    assert_eq!(config.listen.evaluation.port(), 7013, "flag beats config");
    assert_eq!(
        config.listen.sync.port(),
        9015,
        "config beats default; keys are case-insensitive"
    );
    assert_eq!(config.listen.management.port(), 8014, "default");
    assert_eq!(config.stream_deadline, Some(Duration::from_secs(90)));
    assert_eq!(identities(&config), ["a.yaml"]);
    // -X on the command line replaces the file's map (viper: a set flag wins as a whole).
    assert_eq!(
        config.context_values,
        BTreeMap::from([
            ("region".to_owned(), "eu".to_owned()),
            ("tier".to_owned(), "1".to_owned())
        ])
    );
}

#[test]
fn uri_sources_come_before_sources_json_and_keep_their_order() {
    let config = start_config(&[
        "start",
        "-f",
        "file:one.json",
        "--uri",
        "file:two.yaml,file:three.yml",
        "-s",
        r#"[{"uri": "four.json", "provider": "file"}, {"uri": "file:five.json", "provider": "fileinfo"}]"#,
        "-X",
        "a=1",
        "-X",
        "b=2",
        "-H",
        "X-User-Id=userId",
        "--disable-sync-metadata",
        "--strict",
        "--fractional-algorithm",
        "v3",
    ]);
    assert_eq!(
        identities(&config),
        [
            "one.json",
            "two.yaml",
            "three.yml",
            "four.json",
            "five.json"
        ]
    );
    assert_eq!(config.context_values.len(), 2);
    assert_eq!(
        config.context_from_headers,
        [("X-User-Id".to_owned(), "userId".to_owned())]
    );
    assert!(config.disable_sync_metadata);
    assert!(config.load.strict);
    assert_eq!(config.fractional, FractionalAlgorithm::V3);
}

#[test]
fn bad_values_are_config_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["start"], "no sync implementation"),
        (
            &[
                "start",
                "-s",
                r#"[{"uri": "https://h/f.json", "provider": "http", "interval": 86401}]"#,
            ],
            "interval must be at most 86400",
        ),
        (&["start", "-f", "grpc://sync"], "expected host:port"),
        (&["start", "-f", "gs://bucket"], "gs://BUCKET/OBJECT"),
        (
            &["start", "-f", "s3://bucket/f.json?acl=private"],
            "unknown: \"acl\"",
        ),
        (
            &["start", "-f", "core.openfeature.dev/only-namespace"],
            "NAMESPACE/NAME",
        ),
        (&["start", "-f", "ftp://x/flags.json"], "invalid sync uri"),
        (
            &["start", "-f", "file:flags.txt"],
            "unsupported file format",
        ),
        (
            &["start", "-f", "a.json", "--stream-deadline", "10"],
            "stream-deadline",
        ),
        (&["start", "-f", "a.json", "-X", "novalue"], "key=value"),
        (
            &["start", "-s", r#"[{"uri": "a.json"}]"#],
            "provider is a required field",
        ),
        (
            &["start", "-s", r#"[{"uri": "a.json", "provider": "ftp"}]"#],
            "invalid sync provider",
        ),
        (
            &["start", "-f", "a.json", "--log-format", "xml"],
            "log-format",
        ),
        (
            &["start", "--config", "/nonexistent/flagpole.yaml"],
            "cannot read config file",
        ),
    ];
    for (args, expected) in cases {
        match invocation(args) {
            Err(error) => assert!(error.to_string().contains(expected), "{args:?}: {error}"),
            Ok(inv) => panic!("{args:?} accepted: {inv:?}"),
        }
    }
}

#[test]
fn every_flagd_short_flag_is_accepted() {
    let config = start_config(&[
        "start",
        "-p",
        "1",
        "-m",
        "2",
        "-g",
        "3",
        "-r",
        "4",
        "-d",
        "/tmp/e.sock",
        "-e",
        "/tmp/s.sock",
        "-c",
        "cert.pem",
        "-k",
        "key.pem",
        "-f",
        "a.json",
        "-C",
        "*",
        "-z",
        "console",
        "-t",
        "prometheus",
        "-o",
        "localhost:4317",
        "-D",
        "x",
        "-K",
        "y",
        "-A",
        "z",
        "-I",
        "1h",
        "-X",
        "k=v",
        "-H",
        "H=k",
        "-B",
        "10",
        "-R",
        "20",
        "-x",
    ]);
    assert_eq!(config.listen.ofrep.port(), 4);
    assert_eq!(config.max_request_body, Some(10));
    assert_eq!(config.max_request_header, Some(20));
    assert!(config.debug);
    assert_eq!(config.serving.cors_origins, ["*"]);
}

#[test]
fn bad_usage_exits_64_and_version_exits_0() {
    let out = crate::runtime_support::flagpole_command()
        .args(["start"])
        .output()
        .expect("run flagpole");
    assert_eq!(
        out.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = crate::runtime_support::flagpole_command()
        .args(["start", "--no-such-flag"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let out = crate::runtime_support::flagpole_command()
        .args(["version"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("flagpole: "));
}

#[test]
fn environment_beats_config_file_and_flag_beats_environment() {
    // Observed through the error a busy port produces, which names the port that was used.
    let busy = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let busy_port = busy.local_addr().expect("addr").port().to_string();
    // The losing source names another busy port, so a wrong precedence fails fast instead of starting.
    let other = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let other_port = other.local_addr().expect("addr").port().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("flags.json"), r#"{"flags": {}}"#).expect("write flags");
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(r#"{{"uri": ["file:flags.json"], "management-port": {other_port}, "sync-port": 0, "port": 0}}"#),
    )
    .expect("write config");

    let out = crate::runtime_support::flagpole_command()
        .current_dir(dir.path())
        .env("FLAGD_MANAGEMENT_PORT", &busy_port)
        .args(["start", "--config", config.to_str().expect("utf-8")])
        .output()
        .expect("run flagpole");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(":{busy_port} (management port)")),
        "{stderr}"
    );

    let out = crate::runtime_support::flagpole_command()
        .current_dir(dir.path())
        .env("FLAGD_MANAGEMENT_PORT", &other_port)
        .args([
            "start",
            "--config",
            config.to_str().expect("utf-8"),
            "-m",
            &busy_port,
        ])
        .output()
        .expect("run flagpole");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(":{busy_port} (management port)")),
        "{stderr}"
    );
}

#[test]
fn the_bundled_example_config_parses() {
    let path = crate::runtime_support::workspace_root().join("examples/config.yaml");
    let config = start_config(&["start", "--config", path.to_str().expect("utf-8")]);
    assert_eq!(identities(&config), ["examples/flags.json"]);
    assert_eq!(
        config.context_from_headers,
        [("X-User-Tier".to_owned(), "tier".to_owned())]
    );
    assert_eq!(config.stream_deadline, None);
}

#[test]
fn a_certificate_without_its_key_warns_that_tls_is_off() {
    for args in [
        ["start", "-f", "file:f.json", "-c", "cert.pem"],
        ["start", "-f", "file:f.json", "-k", "key.pem"],
    ] {
        let inv = invocation(&args).expect("valid");
        assert!(
            inv.warnings.iter().any(|w| w.contains("WITHOUT TLS")),
            "{args:?}: {:?}",
            inv.warnings
        );
        let Action::Start(config) = inv.action else {
            panic!("not start")
        };
        assert!(config.serving.tls.is_none());
    }
    let inv =
        invocation(&["start", "-f", "file:f.json", "-c", "c.pem", "-k", "k.pem"]).expect("valid");
    assert!(
        !inv.warnings.iter().any(|w| w.contains("TLS")),
        "{:?}",
        inv.warnings
    );
}

#[test]
fn max_connections_comes_from_the_flag_the_environment_or_the_config_file() {
    assert_eq!(
        start_config(&["start", "-f", "file:f.json"]).max_connections,
        flagpole::transport::DEFAULT_MAX_CONNECTIONS
    );
    assert_eq!(
        start_config(&["start", "-f", "file:f.json", "--max-connections", "50"]).max_connections,
        50
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "max-connections: 70\n").expect("write config");
    let config = start_config(&[
        "start",
        "-f",
        "file:f.json",
        "--config",
        path.to_str().expect("utf-8"),
    ]);
    assert_eq!(config.max_connections, 70);
}

#[test]
fn newer_flagd_flags_are_accepted_and_the_ofrep_stream_settings_take_effect() {
    let inv = invocation(&[
        "start",
        "-f",
        "file:flags.json",
        "--ofrep-sse-enabled",
        "--ofrep-sse-inactivity-delay",
        "2m30s",
        "--ofrep-sse-public-url",
        "https://flags.example/ofrep",
        "--sync-http-enabled=true",
    ])
    .expect("a newer flagd command line starts flagpole");
    let Action::Start(config) = &inv.action else {
        panic!("not a start: {:?}", inv.action);
    };
    assert_eq!(
        config.ofrep_sse,
        Some(flagpole::config::OfrepSse {
            inactivity_delay: Duration::from_secs(150),
            public_url: Some("https://flags.example/ofrep".into()),
        })
    );
    assert_eq!(
        inv.warnings
            .iter()
            .filter(|w| w.contains("not effective yet"))
            .collect::<Vec<_>>(),
        ["--sync-http-enabled is accepted but not effective yet in flagpole"]
    );
    // Off is silent; a public URL without streams says it does nothing; bad values are errors.
    let quiet = invocation(&[
        "start",
        "-f",
        "file:flags.json",
        "--sync-http-enabled=false",
    ])
    .expect("parses");
    assert!(quiet.warnings.is_empty(), "{:?}", quiet.warnings);
    let Action::Start(config) = &quiet.action else {
        panic!("not a start");
    };
    assert_eq!(config.ofrep_sse, None);
    let idle = invocation(&[
        "start",
        "-f",
        "file:flags.json",
        "--ofrep-sse-public-url",
        "https://flags.example",
    ])
    .expect("parses");
    assert!(
        idle.warnings
            .iter()
            .any(|w| w.contains("no effect without --ofrep-sse-enabled")),
        "{:?}",
        idle.warnings
    );
    for bad in [
        ["--ofrep-sse-inactivity-delay", "soon"],
        ["--ofrep-sse-public-url", "flags.example"],
        ["--ofrep-sse-public-url", "https://"],
    ] {
        assert!(
            matches!(
                invocation(&["start", "-f", "file:flags.json", bad[0], bad[1]]),
                Err(ConfigError::InvalidValue { .. })
            ),
            "{bad:?}"
        );
    }
    // Credentials in the advertised URL would reach every client: refused, and not repeated.
    let Err(error) = invocation(&[
        "start",
        "-f",
        "file:flags.json",
        "--ofrep-sse-enabled",
        "--ofrep-sse-public-url",
        "https://user:s3cret@flags.example/ofrep",
    ]) else {
        panic!("credentials in the public URL were accepted");
    };
    let message = error.to_string();
    assert!(message.contains("credentials"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
}

#[test]
fn the_otel_flags_are_read_and_the_certificate_needs_its_key() {
    let inv = invocation(&[
        "start",
        "-f",
        "file:flags.json",
        "--metrics-exporter",
        "otel",
        "--otel-collector-uri",
        "collector:4317",
        "--otel-ca-path",
        "/ca.pem",
        "-D",
        "/client.pem",
        "-K",
        "/client-key.pem",
        "-I",
        "5m",
    ])
    .expect("flagd's OpenTelemetry flags start flagpole");
    let Action::Start(config) = &inv.action else {
        panic!("not a start: {:?}", inv.action);
    };
    let telemetry = &config.telemetry;
    assert_eq!(telemetry.metrics_exporter.as_deref(), Some("otel"));
    assert_eq!(
        telemetry.otel_collector_uri.as_deref(),
        Some("collector:4317")
    );
    assert_eq!(
        telemetry.otel_ca_path.as_deref(),
        Some(std::path::Path::new("/ca.pem"))
    );
    assert_eq!(
        telemetry.otel_key_path.as_deref(),
        Some(std::path::Path::new("/client-key.pem"))
    );
    assert_eq!(telemetry.otel_reload_interval, Duration::from_secs(300));
    assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);

    let error = invocation(&[
        "start",
        "-f",
        "file:flags.json",
        "--otel-cert-path",
        "/c.pem",
    ])
    .expect_err("a certificate without its key");
    assert!(error.to_string().contains("otel-key-path"), "{error}");
    let error = invocation(&["start", "-f", "file:flags.json", "-I", "0s"])
        .expect_err("a zero reload interval");
    assert!(
        error.to_string().contains("otel-reload-interval"),
        "{error}"
    );
    let other = invocation(&["start", "-f", "file:flags.json", "-t", "stdout"]).expect("starts");
    assert_eq!(other.warnings.len(), 1, "{:?}", other.warnings);
}
