//! The command line, the `--config` file and the environment, turned into typed configuration.
//!
//! What it owns: the clap definitions of `flagpole start | validate | version` (every `flagd start` flag,
//! its short letter, default and `FLAGD_*` variable), the `--config` file format (JSON or YAML keyed by the
//! long flag names, `sources` as an array, case-insensitive keys, as viper reads it), the `--uri` and
//! `--sources` forms, and `TryFrom<Args> for Invocation`. Nothing past this module holds a string that still
//! needs parsing.
//!
//! Precedence is viper's: a flag given on the command line, then its `FLAGD_*` variable, then the config
//! file, then the default. clap handles the first two, so every `start` flag is optional here and the
//! defaults are applied after the config file.
//!
//! The low level is split from the high level, as ripgrep does: [`args`] holds clap's definitions only;
//! `file` reads the `--config` file, `uri` the source specifications, `duration` Go durations; this module
//! holds the typed [`Config`] and the one place that combines them (`TryFrom<Args> for Invocation`).
//!
//! What it does not do: read files other than the config file, open sockets, or log (problems that are not
//! fatal are returned as [`Invocation::warnings`] and logged once logging is set up).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use flagpole_engine::{FractionalAlgorithm, LoadOptions};
use serde_json::{Map, Value};

pub mod args;
mod duration;
mod file;
mod uri;

pub use args::*;
pub use duration::parse_go_duration;
use file::ConfigFile;
use uri::parse_sources_json;
pub use uri::parse_uri;

use crate::sources::SourceConfigError;
pub use crate::sources::options::MAX_POLL_INTERVAL_SECS;
pub use crate::sources::spec::{FileProvider, SourceConfig, SourceKind};

/// The largest `--config` file read, in bytes (a config file is a few hundred bytes; this only stops a
/// mistaken path from being read whole).
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// The address every port listens on: all interfaces, IPv6 and (dual-stack) IPv4, as flagd's `:PORT`.
/// Where IPv6 is unavailable the runtime falls back to `0.0.0.0`.
pub const ALL_INTERFACES: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// Default evaluation port.
pub const DEFAULT_PORT: u16 = 8013;
/// Default management port.
pub const DEFAULT_MANAGEMENT_PORT: u16 = 8014;
/// Default sync port.
pub const DEFAULT_SYNC_PORT: u16 = 8015;
/// Default OFREP port.
pub const DEFAULT_OFREP_PORT: u16 = 8016;
/// Default `--max-request-body` and `--max-request-header`, in bytes (flagd: 1 000 000).
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 1_000_000;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Console,
    /// One JSON object per line.
    Json,
}

/// How to log.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
    /// Debug level and per-request fields.
    pub debug: bool,
}

/// What the command line asked for, fully parsed.
#[derive(Debug)]
pub struct Invocation {
    /// Logging.
    pub log: LogConfig,
    /// The command.
    pub action: Action,
    /// Problems that are not fatal (unknown config keys, flags not effective yet), to be logged.
    pub warnings: Vec<String>,
}

/// A parsed subcommand.
#[derive(Debug)]
pub enum Action {
    /// Run the daemon.
    Start(Box<Config>),
    /// Validate files.
    Validate {
        /// The files.
        files: Vec<PathBuf>,
        /// Reject schema violations.
        strict: bool,
        /// Text or JSON.
        format: OutputFormat,
    },
    /// Talk to a running daemon's admin API.
    Override(Box<OverrideArgs>),
    /// Explain an evaluation.
    Explain(Box<ExplainArgs>),
    /// Print the version.
    Version,
}

/// Where the daemon listens. Port 0 picks a free port (tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// Evaluation service.
    pub evaluation: SocketAddr,
    /// Management (health, readiness, metrics).
    pub management: SocketAddr,
    /// Sync service.
    pub sync: SocketAddr,
    /// OFREP.
    pub ofrep: SocketAddr,
}

impl Listen {
    /// Every port on `ip`, with flagd's default port numbers.
    pub fn defaults(ip: IpAddr) -> Self {
        Listen {
            evaluation: SocketAddr::new(ip, DEFAULT_PORT),
            management: SocketAddr::new(ip, DEFAULT_MANAGEMENT_PORT),
            sync: SocketAddr::new(ip, DEFAULT_SYNC_PORT),
            ofrep: SocketAddr::new(ip, DEFAULT_OFREP_PORT),
        }
    }

    /// Every port on `ip` with port 0 (the OS picks free ports): for tests.
    pub fn ephemeral(ip: IpAddr) -> Self {
        let addr = SocketAddr::new(ip, 0);
        Listen {
            evaluation: addr,
            management: addr,
            sync: addr,
            ofrep: addr,
        }
    }
}

/// The daemon's configuration: everything `flagpole::run` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen addresses.
    pub listen: Listen,
    /// Sources in ascending priority (`--uri` first, then `--sources`).
    pub sources: Vec<SourceConfig>,
    /// How flag files are loaded (`--strict`).
    pub load: LoadOptions,
    /// `-X`.
    pub context_values: BTreeMap<String, String>,
    /// `-H`: header name → context key, in the order given.
    pub context_from_headers: Vec<(String, String)>,
    /// `--stream-deadline`; `None` for none.
    pub stream_deadline: Option<Duration>,
    /// `--disable-sync-metadata`.
    pub disable_sync_metadata: bool,
    /// `--ofrep-tls`: OFREP uses the TLS certificate too (then `serving.tls` is set).
    pub ofrep_tls: bool,
    /// `--max-request-body`; `None` for no limit.
    pub max_request_body: Option<u64>,
    /// `--max-request-header`; `None` for the default.
    pub max_request_header: Option<u64>,
    /// `--max-connections` (per listener).
    pub max_connections: usize,
    /// `--keep-alive-min-time`.
    pub keep_alive_min_time: Duration,
    /// `--keep-alive-permit-without-stream`.
    pub keep_alive_permit_without_stream: bool,
    /// `--fractional-algorithm`.
    pub fractional: FractionalAlgorithm,
    /// `--debug`: per-request log fields.
    pub debug: bool,
    /// Unix sockets, TLS and CORS of the servers.
    pub serving: ServingOptions,
    /// The OTel exporter options (accepted, not effective yet: a warning at start says so).
    pub telemetry: TelemetryOptions,
    /// `--admin-token-file`: who may write through the admin API (none: read-only).
    pub admin_token_file: Option<PathBuf>,
    /// `--state-dir`: where overrides, the journal and usage survive a restart (none: in memory only).
    pub state_dir: Option<PathBuf>,
    /// `--stale-after`: when a flag is marked stale.
    pub stale_after: Duration,
    /// `--ofrep-sse-enabled` with its settings: OFREP change streams.
    pub ofrep_sse: Option<OfrepSse>,
}

/// OFREP change streams' settings (`docs/protocols.md#ofrep-change-streams`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfrepSse {
    /// `--ofrep-sse-inactivity-delay`, advertised to clients.
    pub inactivity_delay: Duration,
    /// `--ofrep-sse-public-url`.
    pub public_url: Option<String>,
}

impl Config {
    /// A configuration with flagd's defaults for these sources.
    pub fn new(sources: Vec<SourceConfig>) -> Self {
        Config {
            listen: Listen::defaults(ALL_INTERFACES),
            sources,
            load: LoadOptions::default(),
            context_values: BTreeMap::new(),
            context_from_headers: Vec::new(),
            stream_deadline: None,
            disable_sync_metadata: false,
            ofrep_tls: false,
            max_request_body: Some(DEFAULT_MAX_REQUEST_BYTES),
            max_request_header: Some(DEFAULT_MAX_REQUEST_BYTES),
            max_connections: crate::transport::DEFAULT_MAX_CONNECTIONS,
            keep_alive_min_time: Duration::from_secs(30),
            keep_alive_permit_without_stream: true,
            fractional: FractionalAlgorithm::default(),
            debug: false,
            serving: ServingOptions::default(),
            telemetry: TelemetryOptions::default(),
            admin_token_file: None,
            state_dir: None,
            stale_after: crate::lifecycle::DEFAULT_STALE_AFTER,
            ofrep_sse: None,
        }
    }
}

/// How the servers are reached: unix sockets, TLS and CORS origins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServingOptions {
    /// `--socket-path`.
    pub socket_path: Option<PathBuf>,
    /// `--sync-socket-path`.
    pub sync_socket_path: Option<PathBuf>,
    /// `--server-cert-path` and `--server-key-path`, when both are set.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `--cors-origin`.
    pub cors_origins: Vec<String>,
}

/// The OpenTelemetry options of the command line (`crate::telemetry` lays the standard `OTEL_*` variables
/// over them; `docs/observability.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryOptions {
    /// `--metrics-exporter`: `otel` pushes metrics over OTLP (besides `/metrics`).
    pub metrics_exporter: Option<String>,
    /// `--otel-collector-uri`: the collector for metrics and traces (OTLP gRPC); setting it turns traces on.
    pub otel_collector_uri: Option<String>,
    /// `--otel-cert-path`: client certificate (PEM) presented to the collector.
    pub otel_cert_path: Option<PathBuf>,
    /// `--otel-key-path`: its private key (PEM).
    pub otel_key_path: Option<PathBuf>,
    /// `--otel-ca-path`: the CA certificate(s) (PEM) the collector's certificate is checked against.
    pub otel_ca_path: Option<PathBuf>,
    /// `--otel-reload-interval`: how often the three files are read again (a changed file replaces the
    /// connection).
    pub otel_reload_interval: Duration,
}

/// `--otel-reload-interval`'s default (flagd's).
pub const DEFAULT_OTEL_RELOAD_INTERVAL: Duration = Duration::from_secs(3600);

impl Default for TelemetryOptions {
    fn default() -> Self {
        TelemetryOptions {
            metrics_exporter: None,
            otel_collector_uri: None,
            otel_cert_path: None,
            otel_key_path: None,
            otel_ca_path: None,
            otel_reload_interval: DEFAULT_OTEL_RELOAD_INTERVAL,
        }
    }
}

/// Why the command line or config file cannot be used. main maps every variant to exit code 64.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is too large.
    #[error("config file {path} is larger than {MAX_CONFIG_FILE_BYTES} bytes")]
    ConfigTooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The config file is not valid JSON/YAML, or not an object.
    #[error("config file {path}: {message}")]
    ConfigSyntax {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column when known.
        message: String,
    },
    /// A value (flag, variable or config key) is malformed.
    #[error("invalid value for {key}: {message}")]
    InvalidValue {
        /// The long flag name.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A `--uri` whose source rejects its form or settings.
    #[error("invalid value for uri: {0}")]
    UriSource(#[source] SourceConfigError),
    /// A `--sources` entry whose source rejects its keys.
    #[error("invalid source #{index} in sources: {source}")]
    SourceEntry {
        /// 1-based position in `--sources`.
        index: usize,
        /// What the source rejects.
        source: SourceConfigError,
    },
    /// A `--uri` that flagd would not accept either.
    #[error(
        "invalid sync uri argument: {uri}, must start with 'file:', 'http(s)://', 'grpc(s)://', 'gs://', \
         'azblob://', 's3://' or 'core.openfeature.dev'"
    )]
    InvalidUri {
        /// The URI.
        uri: String,
    },
    /// A `--sources` entry is malformed.
    #[error("invalid source #{index} in sources: {message}")]
    InvalidSource {
        /// 1-based position in `--sources`.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A file source whose extension is not .json, .yaml or .yml.
    #[error("unsupported file format for source {path}: use .json, .yaml or .yml")]
    UnsupportedFileFormat {
        /// The path.
        path: PathBuf,
    },
    /// No source at all.
    #[error("no sync implementation set: give at least one --uri or --sources entry")]
    NoSources,
}

impl TryFrom<Args> for Invocation {
    type Error = ConfigError;

    fn try_from(args: Args) -> Result<Self, ConfigError> {
        let mut warnings = Vec::new();
        let file = match &args.config {
            Some(path) => Some(ConfigFile::read(path)?),
            None => None,
        };
        let file_ref = file.as_ref();
        let debug = match args.debug {
            Some(debug) => debug,
            None => file_ref
                .map(|f| f.bool("debug"))
                .transpose()?
                .flatten()
                .unwrap_or(false),
        };
        let (log_format, action) = match args.command {
            Command::Start(start) => {
                let log_format = parse_log_format(start.log_format.clone(), file_ref)?;
                let config = start_config(*start, file_ref, debug, &mut warnings)?;
                (log_format, Action::Start(Box::new(config)))
            }
            Command::Validate(validate) => {
                let log_format = parse_log_format(None, file_ref)?;
                (
                    log_format,
                    Action::Validate {
                        files: validate.files,
                        strict: validate.strict,
                        format: validate.format,
                    },
                )
            }
            Command::Override(args) => (LogFormat::Console, Action::Override(Box::new(args))),
            Command::Explain(args) => (LogFormat::Console, Action::Explain(Box::new(args))),
            Command::Version => (LogFormat::Console, Action::Version),
        };
        if let Some(file) = &file {
            for key in file.unknown_keys() {
                warnings.push(format!(
                    "config file {}: unknown key {key:?} ignored",
                    file.path.display()
                ));
            }
        }
        Ok(Invocation {
            log: LogConfig {
                format: log_format,
                debug,
            },
            action,
            warnings,
        })
    }
}

fn parse_log_format(
    flag: Option<String>,
    file: Option<&ConfigFile>,
) -> Result<LogFormat, ConfigError> {
    let value = match flag {
        Some(v) => Some(v),
        None => file.map(|f| f.string("log-format")).transpose()?.flatten(),
    };
    match value.as_deref().map(str::trim) {
        None | Some("") | Some("console") => Ok(LogFormat::Console),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(ConfigError::InvalidValue {
            key: "log-format",
            message: format!("{other:?} (use console or json)"),
        }),
    }
}

/// Builds the daemon configuration: flag/env value, else the config file, else flagd's default.
fn start_config(
    args: StartArgs,
    file: Option<&ConfigFile>,
    debug: bool,
    warnings: &mut Vec<String>,
) -> Result<Config, ConfigError> {
    macro_rules! pick {
        ($field:expr, $key:literal, $getter:ident) => {
            match $field {
                Some(v) => Some(v),
                None => match file {
                    Some(f) => f.$getter($key)?,
                    None => None,
                },
            }
        };
    }
    macro_rules! pick_list {
        ($field:expr, $key:literal, $getter:ident) => {
            if !$field.is_empty() {
                $field
            } else {
                match file {
                    Some(f) => f.$getter($key)?,
                    None => Vec::new(),
                }
            }
        };
    }

    let ip = ALL_INTERFACES;
    let listen = Listen {
        evaluation: SocketAddr::new(ip, pick!(args.port, "port", port).unwrap_or(DEFAULT_PORT)),
        management: SocketAddr::new(
            ip,
            pick!(args.management_port, "management-port", port).unwrap_or(DEFAULT_MANAGEMENT_PORT),
        ),
        sync: SocketAddr::new(
            ip,
            pick!(args.sync_port, "sync-port", port).unwrap_or(DEFAULT_SYNC_PORT),
        ),
        ofrep: SocketAddr::new(
            ip,
            pick!(args.ofrep_port, "ofrep-port", port).unwrap_or(DEFAULT_OFREP_PORT),
        ),
    };

    // Sources: --uri entries first, then --sources.
    let uris: Vec<String> = pick_list!(args.uri, "uri", string_list);
    let mut sources = Vec::new();
    for uri in uris.iter().flat_map(|u| split_list(u)) {
        sources.push(parse_uri(&uri)?);
    }
    let source_entries = match args.sources {
        Some(json) if !json.trim().is_empty() => parse_sources_json(&json)?,
        Some(_) => Vec::new(),
        None => match file {
            Some(f) => f.sources()?,
            None => Vec::new(),
        },
    };
    for (i, entry) in source_entries.into_iter().enumerate() {
        sources.push(entry.into_source(i + 1)?);
    }
    if sources.is_empty() {
        return Err(ConfigError::NoSources);
    }

    let context_values: BTreeMap<String, String> = {
        let raw = pick_list!(args.context_value, "context-value", string_map_entries);
        parse_pairs("context-value", &raw)?.into_iter().collect()
    };
    let context_from_headers = {
        let raw = pick_list!(
            args.context_from_header,
            "context-from-header",
            string_map_entries
        );
        parse_pairs("context-from-header", &raw)?
    };

    let stream_deadline = match pick!(args.stream_deadline, "stream-deadline", string) {
        Some(text) => parse_go_duration("stream-deadline", &text)?,
        None => Duration::ZERO,
    };
    let keep_alive_min_time = match pick!(args.keep_alive_min_time, "keep-alive-min-time", string) {
        Some(text) => parse_go_duration("keep-alive-min-time", &text)?,
        None => Duration::from_secs(30),
    };
    let stale_after = match pick!(args.stale_after, "stale-after", string) {
        Some(text) => match parse_go_duration("stale-after", &text)? {
            Duration::ZERO => {
                return Err(ConfigError::InvalidValue {
                    key: "stale-after",
                    message: format!("{text:?} (must be longer than zero)"),
                });
            }
            after => after,
        },
        None => crate::lifecycle::DEFAULT_STALE_AFTER,
    };
    let otel_reload_interval =
        match pick!(args.otel_reload_interval, "otel-reload-interval", string) {
            Some(text) => parse_go_duration("otel-reload-interval", &text)?,
            None => DEFAULT_OTEL_RELOAD_INTERVAL,
        };
    let max_request_body =
        pick!(args.max_request_body, "max-request-body", u64).unwrap_or(DEFAULT_MAX_REQUEST_BYTES);
    let max_request_header = pick!(args.max_request_header, "max-request-header", u64)
        .unwrap_or(DEFAULT_MAX_REQUEST_BYTES);
    let fractional = match args.fractional_algorithm {
        Some(FractionalArg::V2) => FractionalAlgorithm::V2,
        Some(FractionalArg::V3) => FractionalAlgorithm::V3,
        None => match file
            .map(|f| f.string("fractional-algorithm"))
            .transpose()?
            .flatten()
            .as_deref()
        {
            None | Some("v2") => FractionalAlgorithm::V2,
            Some("v3") => FractionalAlgorithm::V3,
            Some(other) => {
                return Err(ConfigError::InvalidValue {
                    key: "fractional-algorithm",
                    message: format!("{other:?} (use v2 or v3)"),
                });
            }
        },
    };

    let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let cert = non_empty(pick!(args.server_cert_path, "server-cert-path", string));
    let key = non_empty(pick!(args.server_key_path, "server-key-path", string));
    let serving = ServingOptions {
        socket_path: non_empty(pick!(args.socket_path, "socket-path", string)).map(PathBuf::from),
        sync_socket_path: non_empty(pick!(args.sync_socket_path, "sync-socket-path", string))
            .map(PathBuf::from),
        tls: match (cert, key) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (Some(_), None) | (None, Some(_)) => {
                // flagd serves plaintext here too, without a word; say so.
                warnings.push(
                    "--server-cert-path and --server-key-path must be given together; only one is \
                     set, so the servers run WITHOUT TLS"
                        .to_owned(),
                );
                None
            }
            (None, None) => None,
        },
        cors_origins: pick_list!(args.cors_origin, "cors-origin", string_list)
            .iter()
            .flat_map(|s| split_list(s))
            .collect(),
    };
    let telemetry = TelemetryOptions {
        metrics_exporter: non_empty(pick!(args.metrics_exporter, "metrics-exporter", string)),
        otel_collector_uri: non_empty(pick!(args.otel_collector_uri, "otel-collector-uri", string)),
        otel_cert_path: non_empty(pick!(args.otel_cert_path, "otel-cert-path", string))
            .map(PathBuf::from),
        otel_key_path: non_empty(pick!(args.otel_key_path, "otel-key-path", string))
            .map(PathBuf::from),
        otel_ca_path: non_empty(pick!(args.otel_ca_path, "otel-ca-path", string))
            .map(PathBuf::from),
        otel_reload_interval,
    };
    if telemetry.otel_cert_path.is_some() != telemetry.otel_key_path.is_some() {
        return Err(ConfigError::InvalidValue {
            key: "otel-cert-path",
            message: "--otel-cert-path and --otel-key-path go together".to_owned(),
        });
    }
    if telemetry.otel_reload_interval.is_zero() {
        return Err(ConfigError::InvalidValue {
            key: "otel-reload-interval",
            message: "must be longer than zero".to_owned(),
        });
    }
    // Newer flagd flags for what flagpole does not serve yet (OFREP change streams, sync over HTTP): read,
    // checked, and reported as not effective when they ask for something (docs/cli.md).
    let ofrep_sse_enabled =
        pick!(args.ofrep_sse_enabled, "ofrep-sse-enabled", bool).unwrap_or(false);
    let inactivity_delay = match pick!(
        args.ofrep_sse_inactivity_delay,
        "ofrep-sse-inactivity-delay",
        string
    ) {
        Some(text) => parse_go_duration("ofrep-sse-inactivity-delay", &text)?,
        None => crate::protocols::ofrep::sse::DEFAULT_INACTIVITY_DELAY,
    };
    let public_url = non_empty(pick!(
        args.ofrep_sse_public_url,
        "ofrep-sse-public-url",
        string
    ));
    if let Some(url) = &public_url {
        // Advertised to every client: credentials in it would be handed out, so they are refused (and not
        // repeated in the error).
        let authority = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
        let problem = match authority {
            None => Some("use http://HOST[:PORT][/PATH] or https://…"),
            Some(authority) if authority.contains('@') => {
                Some("credentials would be sent to every client; leave them out")
            }
            Some("") => Some("the host is missing"),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            return Err(ConfigError::InvalidValue {
                key: "ofrep-sse-public-url",
                message: format!("{:?} ({problem})", flagpole_engine::redact_credentials(url)),
            });
        }
    }
    if !ofrep_sse_enabled && public_url.is_some() {
        warnings
            .push("--ofrep-sse-public-url has no effect without --ofrep-sse-enabled".to_owned());
    }
    let ofrep_sse = ofrep_sse_enabled.then_some(OfrepSse {
        inactivity_delay,
        public_url,
    });
    if pick!(args.sync_http_enabled, "sync-http-enabled", bool) == Some(true) {
        warnings
            .push("--sync-http-enabled is accepted but not effective yet in flagpole".to_owned());
    }
    let ofrep_tls = pick!(args.ofrep_tls, "ofrep-tls", bool).unwrap_or(false);
    if ofrep_tls && serving.tls.is_none() {
        return Err(ConfigError::InvalidValue {
            key: "ofrep-tls",
            message: "needs --server-cert-path and --server-key-path".to_owned(),
        });
    }
    warn_telemetry(&telemetry, warnings);

    Ok(Config {
        listen,
        sources,
        load: LoadOptions {
            strict: pick!(args.strict, "strict", bool).unwrap_or(false),
        },
        context_values,
        context_from_headers,
        stream_deadline: (!stream_deadline.is_zero()).then_some(stream_deadline),
        disable_sync_metadata: pick!(args.disable_sync_metadata, "disable-sync-metadata", bool)
            .unwrap_or(false),
        ofrep_tls,
        max_request_body: (max_request_body != 0).then_some(max_request_body),
        max_request_header: (max_request_header != 0).then_some(max_request_header),
        max_connections: pick!(
            args.max_connections.map(|n| n as u64),
            "max-connections",
            u64
        )
        .map_or(crate::transport::DEFAULT_MAX_CONNECTIONS, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        })
        .max(1),
        keep_alive_min_time,
        keep_alive_permit_without_stream: pick!(
            args.keep_alive_permit_without_stream,
            "keep-alive-permit-without-stream",
            bool
        )
        .unwrap_or(true),
        fractional,
        debug,
        serving,
        telemetry,
        admin_token_file: non_empty(pick!(args.admin_token_file, "admin-token-file", string))
            .map(PathBuf::from),
        state_dir: non_empty(pick!(args.state_dir, "state-dir", string)).map(PathBuf::from),
        stale_after,
        ofrep_sse,
    })
}

fn warn_telemetry(telemetry: &TelemetryOptions, warnings: &mut Vec<String>) {
    if let Some(exporter) = telemetry
        .metrics_exporter
        .as_deref()
        .filter(|e| !matches!(*e, "otel" | "prometheus"))
    {
        warnings.push(format!(
            "--metrics-exporter {exporter:?} is not otel: metrics are served on /metrics only"
        ));
    }
}

/// Splits a pflag string-slice value: comma-separated (flag) or whitespace-separated (viper env).
fn split_list(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses `key=value` entries (each possibly `a=1,b=2`, or a JSON object as viper reads env maps) in order.
fn parse_pairs(key: &'static str, raw: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |k: String, v: String| {
        if let Some(slot) = out.iter_mut().find(|(existing, _)| *existing == k) {
            slot.1 = v;
        } else {
            out.push((k, v));
        }
    };
    for entry in raw {
        let trimmed = entry.trim();
        if trimmed.starts_with('{') {
            let map: Map<String, Value> =
                serde_json::from_str(trimmed).map_err(|e| ConfigError::InvalidValue {
                    key,
                    message: format!("not a JSON object: {e}"),
                })?;
            for (k, v) in map {
                push(k, scalar_text(key, v)?);
            }
            continue;
        }
        for pair in trimmed.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| ConfigError::InvalidValue {
                    key,
                    message: format!("{pair:?} must be key=value"),
                })?;
            push(k.trim().to_owned(), v.to_owned());
        }
    }
    Ok(out)
}

/// A scalar config value as the string viper would produce.
fn scalar_text(key: &'static str, value: Value) -> Result<String, ConfigError> {
    match value {
        Value::String(s) => Ok(s),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Null => Ok(String::new()),
        other => Err(ConfigError::InvalidValue {
            key,
            message: format!("expected a scalar, got {other}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn go_durations_parse_like_time_parse_duration() {
        let d = |s| parse_go_duration("stream-deadline", s);
        assert_eq!(d("0").ok(), Some(Duration::ZERO));
        assert_eq!(d("30s").ok(), Some(Duration::from_secs(30)));
        assert_eq!(d("1h30m").ok(), Some(Duration::from_secs(5400)));
        assert_eq!(d("1.5s").ok(), Some(Duration::from_millis(1500)));
        assert_eq!(d("250ms").ok(), Some(Duration::from_millis(250)));
        assert!(d("30").is_err());
        assert!(d("-1s").is_err());
        assert!(d("1x").is_err());
        assert!(d("").is_err());
    }

    #[test]
    fn uri_forms_follow_flagd() {
        let file = parse_uri("file:./flags.json").ok();
        assert_eq!(file.as_ref().map(|s| &*s.identity), Some("./flags.json"));
        assert_eq!(
            parse_uri("https://host/flags.json")
                .ok()
                .map(|s| s.identity),
            Some(Arc::from("https://host/flags.json"))
        );
        assert_eq!(
            parse_uri("grpcs://sync:443").ok().map(|s| s.identity),
            Some(Arc::from("sync:443"))
        );
        let kubernetes = parse_uri("core.openfeature.dev/ns/name");
        assert!(
            kubernetes.as_ref().is_ok_and(|s| &*s.identity == "ns/name"
                && matches!(&s.kind, SourceKind::Kubernetes(c) if c.name == "name")),
            "{kubernetes:?}"
        );
        let missing_name = parse_uri("core.openfeature.dev/ns");
        assert!(
            matches!(
                &missing_name,
                Err(ConfigError::UriSource(SourceConfigError::UriForm { .. }))
            ),
            "{missing_name:?}"
        );
        assert_eq!(
            missing_name.map(|_| ()).unwrap_err().to_string(),
            "invalid value for uri: uri \"core.openfeature.dev/ns\": expected \
             core.openfeature.dev/NAMESPACE/NAME or NAMESPACE/NAME"
        );
        assert_eq!(
            parse_uri("s3://bucket/dir/flags.json?region=eu-west-1")
                .ok()
                .map(|s| s.identity),
            Some(Arc::from("s3://bucket/dir/flags.json?region=eu-west-1"))
        );
        assert!(matches!(
            parse_uri("gs://bucket"),
            Err(ConfigError::UriSource(SourceConfigError::UriForm { .. }))
        ));
        assert!(matches!(
            parse_uri("ftp://x/y.json"),
            Err(ConfigError::InvalidUri { .. })
        ));
        assert!(matches!(
            parse_uri("file:flags.txt"),
            Err(ConfigError::UnsupportedFileFormat { .. })
        ));
        assert_eq!(
            parse_uri("flags.yaml").ok().map(|s| s.identity),
            Some(Arc::from("flags.yaml"))
        );
    }

    #[test]
    fn pairs_accept_commas_repeats_and_json() {
        let raw = vec![
            "a=1,b=2".to_owned(),
            "c=x=y".to_owned(),
            r#"{"d": 4, "a": "9"}"#.to_owned(),
        ];
        let pairs = parse_pairs("context-value", &raw).ok();
        assert_eq!(
            pairs,
            Some(vec![
                ("a".into(), "9".into()),
                ("b".into(), "2".into()),
                ("c".into(), "x=y".into()),
                ("d".into(), "4".into())
            ])
        );
        assert!(parse_pairs("context-value", &["novalue".to_owned()]).is_err());
    }

    #[test]
    fn lists_split_on_commas_and_whitespace() {
        assert_eq!(
            split_list("a.json,b.json c.json"),
            vec!["a.json", "b.json", "c.json"]
        );
    }
}
