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
//! What it does not do: read files other than the config file, open sockets, or log (problems that are not
//! fatal are returned as [`Invocation::warnings`] and logged once logging is set up).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use flagpole_engine::{FractionalAlgorithm, LoadOptions};
use serde_json::{Map, Value};

/// The largest `--config` file read, in bytes (a config file is a few hundred bytes; this only stops a
/// mistaken path from being read whole).
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// flagd's cap on a source's poll `interval`, in seconds (one day).
pub const MAX_POLL_INTERVAL_SECS: u64 = 86_400;

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

/// flagpole: a drop-in replacement for the flagd feature-flag daemon.
#[derive(Debug, Parser)]
#[command(name = "flagpole", version, about, long_about = None, max_term_width = 100)]
pub struct Args {
    /// Config file (JSON or YAML) keyed by the long flag names of `start`, with `sources` as an array.
    /// Values given as flags or `FLAGD_*` variables take precedence over the file.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Debug logging, with per-request fields (flag key, context keys; never context values).
    #[arg(short = 'x', long, global = true, env = "FLAGD_DEBUG", value_parser = BoolishValueParser::new(),
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub debug: Option<bool>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Args {
    /// The clap command, with environment values hidden from `--help` (so help never shows a secret and
    /// `docs/cli.md` does not depend on the environment).
    pub fn command_for_help() -> clap::Command {
        let hide = |arg: clap::Arg| arg.hide_env_values(true);
        let mut command = Args::command().mut_args(hide);
        let names: Vec<String> = command
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        for name in names {
            command = command.mut_subcommand(name, |sub| sub.mut_args(hide));
        }
        command
    }

    /// Parses the process arguments (help and version requests come back as clap errors to print).
    pub fn parse_from_env() -> Result<Args, clap::Error> {
        let matches = Args::command_for_help().try_get_matches()?;
        Args::from_arg_matches(&matches)
    }

    /// `docs/cli.md`: the `--help` text of every command, at a fixed width.
    pub fn markdown_reference() -> String {
        let mut command = Args::command_for_help()
            .term_width(100)
            .bin_name("flagpole");
        command.build();
        let mut out = String::from(
            "# flagpole command line\n\n\
             Generated from `--help` by `cargo test -p flagpole --test it cli_docs` \
             (set `FLAGPOLE_UPDATE_DOCS=1` to rewrite it). Every `start` flag also reads the `FLAGD_*` \
             variable shown, and the same long names are the keys of a `--config` file (JSON or YAML, \
             `sources` as an array). Precedence: flag, then variable, then config file, then default.\n",
        );
        let mut sections = vec![(
            "flagpole".to_owned(),
            command.render_long_help().to_string(),
        )];
        for sub in command.get_subcommands_mut() {
            let name = format!("flagpole {}", sub.get_name());
            sections.push((name, sub.render_long_help().to_string()));
        }
        for (name, help) in sections {
            out.push_str(&format!(
                "\n## `{name}`\n\n```text\n{}\n```\n",
                help.trim_end()
            ));
        }
        out
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the daemon (accepts every `flagd start` flag).
    Start(Box<StartArgs>),
    /// Check flag files offline: print every problem with file, line and column; exit 1 if any file is
    /// rejected.
    Validate(ValidateArgs),
    /// Print the version.
    Version,
}

/// `flagpole validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Flag files (.json, .yaml, .yml).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Also reject files with schema violations (otherwise reported as warnings, as the daemon loads them).
    #[arg(long)]
    pub strict: bool,
}

/// `flagpole start`: every `flagd start` flag. Flags marked "not effective yet" are accepted and checked so
/// that existing command lines work, and a warning at start says they have no effect.
#[derive(Debug, Default, clap::Args)]
pub struct StartArgs {
    /// Evaluation port: gRPC (flagd.evaluation.v1, v2, schema.v1). [default: 8013]
    #[arg(short = 'p', long, env = "FLAGD_PORT")]
    pub port: Option<u16>,

    /// Management port: /healthz, /readyz, /metrics and gRPC health. [default: 8014]
    #[arg(short = 'm', long, env = "FLAGD_MANAGEMENT_PORT")]
    pub management_port: Option<u16>,

    /// Sync port: flagd.sync.v1.FlagSyncService. [default: 8015]
    #[arg(short = 'g', long, env = "FLAGD_SYNC_PORT")]
    pub sync_port: Option<u16>,

    /// OFREP port: the OpenFeature Remote Evaluation Protocol over HTTP. [default: 8016]
    #[arg(short = 'r', long, env = "FLAGD_OFREP_PORT")]
    pub ofrep_port: Option<u16>,

    /// Serve OFREP over TLS with the --server-cert-path/--server-key-path pair (flagpole only: flagd serves
    /// OFREP in plain HTTP). [default: false]
    #[arg(long, env = "FLAGD_OFREP_TLS", value_parser = BoolishValueParser::new(),
          num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub ofrep_tls: Option<bool>,

    /// Serve evaluation on this unix socket instead of the TCP port.
    #[arg(short = 'd', long, env = "FLAGD_SOCKET_PATH", value_name = "PATH")]
    pub socket_path: Option<String>,

    /// Serve sync on this unix socket instead of the TCP port.
    #[arg(short = 'e', long, env = "FLAGD_SYNC_SOCKET_PATH", value_name = "PATH")]
    pub sync_socket_path: Option<String>,

    /// TLS certificate for the evaluation and sync ports; TLS applies only when the key is set too.
    #[arg(short = 'c', long, env = "FLAGD_SERVER_CERT_PATH", value_name = "PATH")]
    pub server_cert_path: Option<String>,

    /// TLS key for the evaluation and sync ports.
    #[arg(short = 'k', long, env = "FLAGD_SERVER_KEY_PATH", value_name = "PATH")]
    pub server_key_path: Option<String>,

    /// Flag source URI; repeat for several sources (a later one wins a duplicated flag). `file:PATH` or a
    /// bare path (.json, .yaml, .yml), `http(s)://URL` (polled every 5 s), `grpc(s)://HOST:PORT` or
    /// `envoy://HOST:PORT/AUTHORITY` (a flagd.sync.v1 upstream), `core.openfeature.dev/NAMESPACE/NAME` (a
    /// watched FeatureFlag resource). Comma-separated lists are split, as flagd does.
    #[arg(short = 'f', long, env = "FLAGD_URI", value_name = "URI")]
    pub uri: Vec<String>,

    /// Sources as a JSON array of {"uri", "provider", ...} (every key: docs/sources.md); they come after the
    /// --uri sources in priority.
    #[arg(short = 's', long, env = "FLAGD_SOURCES", value_name = "JSON")]
    pub sources: Option<String>,

    /// Allowed CORS origins on the evaluation and OFREP ports, `*` for all, one `*` wildcard per pattern;
    /// empty allows all, as in flagd.
    #[arg(short = 'C', long, env = "FLAGD_CORS_ORIGIN", value_name = "ORIGIN")]
    pub cors_origin: Vec<String>,

    /// Log format on stderr: console or json. [default: console]
    #[arg(short = 'z', long, env = "FLAGD_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Metrics exporter: empty for Prometheus on /metrics, `otel` for OTLP push (not effective yet).
    #[arg(
        short = 't',
        long,
        env = "FLAGD_METRICS_EXPORTER",
        value_name = "EXPORTER"
    )]
    pub metrics_exporter: Option<String>,

    /// OpenTelemetry collector URI for OTLP metrics and traces (not effective yet).
    #[arg(
        short = 'o',
        long,
        env = "FLAGD_OTEL_COLLECTOR_URI",
        value_name = "URI"
    )]
    pub otel_collector_uri: Option<String>,

    /// Accepted and ignored: flagd parses it but nothing reads it.
    #[arg(short = 'D', long, env = "FLAGD_OTEL_CERT_PATH", value_name = "PATH")]
    pub otel_cert_path: Option<String>,

    /// Accepted and ignored: flagd parses it but nothing reads it.
    #[arg(short = 'K', long, env = "FLAGD_OTEL_KEY_PATH", value_name = "PATH")]
    pub otel_key_path: Option<String>,

    /// Accepted and ignored: flagd parses it but nothing reads it.
    #[arg(short = 'A', long, env = "FLAGD_OTEL_CA_PATH", value_name = "PATH")]
    pub otel_ca_path: Option<String>,

    /// Accepted and ignored: flagd parses it but nothing reads it. [default: 1h]
    #[arg(short = 'I', long, value_name = "DURATION")]
    pub otel_reload_interval: Option<String>,

    /// Static evaluation context, `key=value` pairs, comma-separated or repeated (`-X a=1,b=2 -X c=3`); all
    /// values are strings. Also sent as the sync context and by GetMetadata.
    #[arg(
        short = 'X',
        long,
        env = "FLAGD_CONTEXT_VALUE",
        value_name = "KEY=VALUE"
    )]
    pub context_value: Vec<String>,

    /// Context from request headers, `Header-Name=contextKey` (header matched case-insensitively),
    /// comma-separated or repeated.
    #[arg(
        short = 'H',
        long,
        env = "FLAGD_CONTEXT_FROM_HEADER",
        value_name = "HEADER=KEY"
    )]
    pub context_from_header: Vec<String>,

    /// Server-side deadline of EventStream and SyncFlags streams, as a Go duration (`30s`, `1h30m`); 0 for
    /// none. [default: 0]
    #[arg(long, env = "FLAGD_STREAM_DEADLINE", value_name = "DURATION")]
    pub stream_deadline: Option<String>,

    /// GetMetadata answers UNIMPLEMENTED. [default: false]
    #[arg(long, env = "FLAGD_DISABLE_SYNC_METADATA", value_parser = BoolishValueParser::new(),
          num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub disable_sync_metadata: Option<bool>,

    /// Largest request body, in bytes; 0 for no limit. [default: 1000000]
    #[arg(
        short = 'B',
        long,
        env = "FLAGD_MAX_REQUEST_BODY",
        value_name = "BYTES"
    )]
    pub max_request_body: Option<u64>,

    /// Largest request header block, in bytes; 0 for the default. [default: 1000000]
    #[arg(
        short = 'R',
        long,
        env = "FLAGD_MAX_REQUEST_HEADER",
        value_name = "BYTES"
    )]
    pub max_request_header: Option<u64>,

    /// Sync server keep-alive enforcement: the shortest ping interval a client may use (accepted, not
    /// enforced: hyper's HTTP/2 server has no ping policy). [default: 30s]
    #[arg(long, env = "FLAGD_KEEP_ALIVE_MIN_TIME", value_name = "DURATION")]
    pub keep_alive_min_time: Option<String>,

    /// Sync server keep-alive enforcement: allow pings with no open stream (accepted, not enforced).
    /// [default: true]
    #[arg(long, env = "FLAGD_KEEP_ALIVE_PERMIT_WITHOUT_STREAM", value_parser = BoolishValueParser::new(),
          num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub keep_alive_permit_without_stream: Option<bool>,

    /// flagpole: open connections allowed per listener (evaluation, OFREP, sync, management); further
    /// connections are closed at once. Lowered to a quarter of the open-file limit (less 256) when that is
    /// smaller. [default: 10000]
    #[arg(long, env = "FLAGD_MAX_CONNECTIONS", value_name = "COUNT")]
    pub max_connections: Option<usize>,

    /// flagpole: reject flag files with schema violations (flagd only warns). [default: false]
    #[arg(long, env = "FLAGD_STRICT", value_parser = BoolishValueParser::new(),
          num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub strict: Option<bool>,

    /// flagpole: `fractional` bucketing, v2 (flagd 0.16) or v3 (typed encoding, testbed @fractional-v3).
    /// [default: v2]
    #[arg(long, env = "FLAGD_FRACTIONAL_ALGORITHM", value_name = "VERSION")]
    pub fractional_algorithm: Option<FractionalArg>,
}

/// `--fractional-algorithm` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FractionalArg {
    /// flagd 0.16's bucketing.
    V2,
    /// The typed-encoding bucketing.
    V3,
}

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
    },
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

/// How a file source notices changes. flagpole watches the parent directory in every case; the provider
/// name is kept for the record (flagd polls for `fileinfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileProvider {
    /// `file`.
    File,
    /// `fsnotify`.
    Fsnotify,
    /// `fileinfo`.
    Fileinfo,
}

/// A remote provider, parsed but not implemented yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteProvider {
    /// `http` / `https://`.
    Http,
    /// `grpc` / `grpc://`, `grpcs://`, resolver URIs.
    Grpc,
    /// `gcs` / `gs://`.
    Gcs,
    /// `azblob` / `azblob://`.
    Azblob,
    /// `s3` / `s3://`.
    S3,
}

impl RemoteProvider {
    fn name(self) -> &'static str {
        match self {
            RemoteProvider::Http => "http",
            RemoteProvider::Grpc => "grpc",
            RemoteProvider::Gcs => "gcs",
            RemoteProvider::Azblob => "azblob",
            RemoteProvider::S3 => "s3",
        }
    }
}

/// One flag source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// The identity string (`source=` selectors match it; the file path without `file:`).
    pub identity: Arc<str>,
    /// What to read.
    pub kind: SourceKind,
}

/// The kinds of source flagpole can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A local JSON or YAML file, watched for changes.
    File {
        /// The path as given (relative paths are relative to the working directory).
        path: PathBuf,
        /// The provider name it was configured with.
        provider: FileProvider,
    },
    /// An http(s) URL, polled.
    Http(Box<crate::sources::http::HttpConfig>),
    /// A flagd.sync.v1 upstream (another flagpole or flagd), streamed.
    Grpc(Box<crate::sources::grpc::GrpcConfig>),
    /// A `FeatureFlag` resource (`core.openfeature.dev/v1beta1`), watched through the Kubernetes API.
    Kubernetes(Box<crate::sources::kubernetes::KubernetesConfig>),
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

/// The OTel metrics exporter options: parsed and kept, not effective yet (a warning at start says so).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryOptions {
    /// `--metrics-exporter`.
    pub metrics_exporter: Option<String>,
    /// `--otel-collector-uri`.
    pub otel_collector_uri: Option<String>,
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
    /// A source kind flagpole does not implement yet.
    #[error(
        "source {uri}: the {provider} provider is not supported yet (file, http, grpc and kubernetes \
         sources are)"
    )]
    UnsupportedProvider {
        /// The URI as given.
        uri: String,
        /// The provider.
        provider: &'static str,
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
                    },
                )
            }
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
    if let Some(text) = pick!(args.otel_reload_interval, "otel-reload-interval", string) {
        parse_go_duration("otel-reload-interval", &text)?;
    }
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
    };
    // The dead --otel-* TLS flags are read (so a bad config value is still reported) and dropped.
    let _ = (
        pick!(args.otel_cert_path, "otel-cert-path", string),
        pick!(args.otel_key_path, "otel-key-path", string),
        pick!(args.otel_ca_path, "otel-ca-path", string),
    );
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
    })
}

fn warn_telemetry(telemetry: &TelemetryOptions, warnings: &mut Vec<String>) {
    let mut note = |what: &str| {
        warnings.push(format!(
            "{what} is accepted but not effective yet in flagpole"
        ))
    };
    if telemetry
        .metrics_exporter
        .as_deref()
        .is_some_and(|e| e != "prometheus")
    {
        note("--metrics-exporter");
    }
    if telemetry.otel_collector_uri.is_some() {
        note("--otel-collector-uri");
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

/// Parses a Go `time.ParseDuration` string (`300ms`, `1.5h`, `2h45m`, `0`).
pub fn parse_go_duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    let invalid = || ConfigError::InvalidValue {
        key,
        message: format!("{text:?} is not a duration like 30s or 1h30m"),
    };
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(invalid());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

/// Parses one `--uri` (the table in `docs/sources.md`).
pub fn parse_uri(uri: &str) -> Result<SourceConfig, ConfigError> {
    let remote = |provider: RemoteProvider| {
        Err(ConfigError::UnsupportedProvider {
            uri: uri.to_owned(),
            provider: provider.name(),
        })
    };
    if let Some(path) = uri.strip_prefix("file:") {
        return file_source(path, FileProvider::File);
    }
    if uri.starts_with(crate::sources::kubernetes::URI_PREFIX) {
        let (identity, config) = crate::sources::kubernetes::KubernetesConfig::from_uri(uri)
            .map_err(|message| ConfigError::InvalidValue {
                key: "uri",
                message,
            })?;
        return Ok(SourceConfig {
            identity: Arc::from(identity),
            kind: SourceKind::Kubernetes(Box::new(config)),
        });
    }
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return http_source(uri, crate::sources::RemoteOptions::default()).map_err(|message| {
            ConfigError::InvalidValue {
                key: "uri",
                message,
            }
        });
    }
    if ["grpc://", "grpcs://", "envoy", "dns", "uds", "xds"]
        .iter()
        .any(|p| uri.starts_with(p))
    {
        let (identity, config) =
            crate::sources::grpc::GrpcConfig::from_uri(uri).map_err(|message| {
                ConfigError::InvalidValue {
                    key: "uri",
                    message,
                }
            })?;
        return Ok(SourceConfig {
            identity: Arc::from(identity),
            kind: SourceKind::Grpc(Box::new(config)),
        });
    }
    if uri.starts_with("gs://") {
        return remote(RemoteProvider::Gcs);
    }
    if uri.starts_with("azblob://") {
        return remote(RemoteProvider::Azblob);
    }
    if uri.starts_with("s3://") {
        return remote(RemoteProvider::S3);
    }
    // flagpole extension: a bare path (no scheme) is a file.
    if !uri.contains("://") && supported_format(Path::new(uri)) {
        return file_source(uri, FileProvider::File);
    }
    Err(ConfigError::InvalidUri {
        uri: uri.to_owned(),
    })
}

/// Whether the extension is one flagd reads (.json, .yaml, .yml).
fn supported_format(path: &Path) -> bool {
    flagpole_engine::Format::from_path(path).is_some()
}

/// An http(s) source; its identity is the URL as given, less any credentials in it (`***@host`).
fn http_source(uri: &str, options: crate::sources::RemoteOptions) -> Result<SourceConfig, String> {
    Ok(SourceConfig {
        identity: Arc::from(flagpole_engine::redact_credentials(uri)),
        kind: SourceKind::Http(Box::new(crate::sources::http::HttpConfig::from_options(
            uri, options,
        )?)),
    })
}

fn file_source(path: &str, provider: FileProvider) -> Result<SourceConfig, ConfigError> {
    let path_buf = PathBuf::from(path);
    if !supported_format(&path_buf) {
        return Err(ConfigError::UnsupportedFileFormat { path: path_buf });
    }
    Ok(SourceConfig {
        identity: Arc::from(path),
        kind: SourceKind::File {
            path: path_buf,
            provider,
        },
    })
}

/// One `--sources` entry, keys lower-cased first (viper/mapstructure match them case-insensitively).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct SourceEntry {
    uri: Option<String>,
    provider: Option<String>,
    #[serde(rename = "authheader")]
    auth_header: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    interval: Option<u64>,
    #[serde(rename = "intervalseed")]
    interval_seed: Option<String>,
    #[serde(rename = "timeouts")]
    timeout_s: Option<i64>,
    oauth: Option<Value>,
    tls: Option<bool>,
    #[serde(rename = "certpath")]
    cert_path: Option<String>,
    #[serde(rename = "providerid")]
    provider_id: Option<String>,
    selector: Option<String>,
    #[serde(rename = "maxmsgsize")]
    max_msg_size: Option<i64>,
    #[serde(rename = "incrementalupdates")]
    incremental_updates: Option<bool>,
    lazy: Option<bool>,
    kubeconfig: Option<String>,
}

impl SourceEntry {
    fn from_value(index: usize, value: Value) -> Result<Self, ConfigError> {
        let Value::Object(map) = value else {
            return Err(ConfigError::InvalidSource {
                index,
                message: "expected an object".into(),
            });
        };
        let lowered: Map<String, Value> = map
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        serde_json::from_value(Value::Object(lowered)).map_err(|e| ConfigError::InvalidSource {
            index,
            message: e.to_string(),
        })
    }

    fn into_source(self, index: usize) -> Result<SourceConfig, ConfigError> {
        let invalid = |message: String| ConfigError::InvalidSource { index, message };
        let uri = self.uri.filter(|u| !u.is_empty()).ok_or_else(|| {
            invalid("sync provider argument parse: uri is a required field".into())
        })?;
        let provider = self.provider.filter(|p| !p.is_empty()).ok_or_else(|| {
            invalid("sync provider argument parse: provider is a required field".into())
        })?;
        if self.interval.is_some_and(|i| i > MAX_POLL_INTERVAL_SECS) {
            return Err(invalid(format!(
                "interval must be at most {MAX_POLL_INTERVAL_SECS} seconds"
            )));
        }
        if self.cert_path.as_deref().is_some_and(|p| !p.is_empty()) && self.tls == Some(false) {
            return Err(invalid("certPath is set but tls is false".into()));
        }
        // Each remote source's configuration checks the keys it uses.
        let options = crate::sources::RemoteOptions {
            auth_header: self.auth_header,
            headers: self.headers.unwrap_or_default(),
            interval: self.interval,
            interval_seed: self.interval_seed,
            timeout_s: self.timeout_s,
            oauth: self.oauth,
            tls: self.tls,
            cert_path: self.cert_path,
            provider_id: self.provider_id,
            selector: self.selector,
            max_msg_size: self.max_msg_size,
            incremental_updates: self.incremental_updates,
            lazy: self.lazy,
            kubeconfig: self.kubeconfig,
        };
        let remote = |provider: RemoteProvider| {
            Err(ConfigError::UnsupportedProvider {
                uri: uri.clone(),
                provider: provider.name(),
            })
        };
        // flagd panics on a `file:` prefix here (the source string no longer matches); flagpole strips it.
        let path = uri.strip_prefix("file:").unwrap_or(&uri);
        match provider.as_str() {
            "file" => file_source(path, FileProvider::File),
            "fsnotify" => file_source(path, FileProvider::Fsnotify),
            "fileinfo" => file_source(path, FileProvider::Fileinfo),
            "http" => http_source(&uri, options).map_err(invalid),
            "grpc" => crate::sources::grpc::GrpcConfig::from_options(&uri, options)
                .map(|config| SourceConfig {
                    identity: Arc::from(flagpole_engine::redact_credentials(&uri)),
                    kind: SourceKind::Grpc(Box::new(config)),
                })
                .map_err(invalid),
            "kubernetes" => {
                crate::sources::kubernetes::KubernetesConfig::from_options(&uri, options)
                    .map(|config| SourceConfig {
                        identity: Arc::from(config.identity()),
                        kind: SourceKind::Kubernetes(Box::new(config)),
                    })
                    .map_err(invalid)
            }
            "gcs" => remote(RemoteProvider::Gcs),
            "azblob" => remote(RemoteProvider::Azblob),
            "s3" => remote(RemoteProvider::S3),
            other => Err(invalid(format!("invalid sync provider: {other:?}"))),
        }
    }
}

fn parse_sources_json(json: &str) -> Result<Vec<SourceEntry>, ConfigError> {
    let value: Value = serde_json::from_str(json).map_err(|e| ConfigError::InvalidValue {
        key: "sources",
        message: format!("not a JSON array: {e}"),
    })?;
    source_entries(value)
}

fn source_entries(value: Value) -> Result<Vec<SourceEntry>, ConfigError> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| SourceEntry::from_value(i + 1, v))
            .collect(),
        Value::Null => Ok(Vec::new()),
        // viper also accepts the JSON text as a string value in a config file.
        Value::String(text) if !text.trim().is_empty() => parse_sources_json(&text),
        Value::String(_) => Ok(Vec::new()),
        other => Err(ConfigError::InvalidValue {
            key: "sources",
            message: format!("expected an array, got {other}"),
        }),
    }
}

/// A `--config` file: a JSON or YAML object keyed by long flag names (matched case-insensitively).
#[derive(Debug)]
struct ConfigFile {
    path: PathBuf,
    values: BTreeMap<String, Value>,
}

/// Every key a config file may hold (the long flag names of `start`, plus the global ones).
const KNOWN_KEYS: &[&str] = &[
    "config",
    "debug",
    "port",
    "management-port",
    "sync-port",
    "ofrep-port",
    "ofrep-tls",
    "socket-path",
    "sync-socket-path",
    "server-cert-path",
    "server-key-path",
    "uri",
    "sources",
    "cors-origin",
    "log-format",
    "metrics-exporter",
    "otel-collector-uri",
    "otel-cert-path",
    "otel-key-path",
    "otel-ca-path",
    "otel-reload-interval",
    "context-value",
    "context-from-header",
    "stream-deadline",
    "disable-sync-metadata",
    "max-request-body",
    "max-request-header",
    "max-connections",
    "keep-alive-min-time",
    "keep-alive-permit-without-stream",
    "strict",
    "fractional-algorithm",
];

impl ConfigFile {
    fn read(path: &Path) -> Result<Self, ConfigError> {
        let read_err = |source| ConfigError::ReadConfig {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if meta.len() > MAX_CONFIG_FILE_BYTES {
            return Err(ConfigError::ConfigTooLarge {
                path: path.to_owned(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        Self::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let syntax = |message: String| ConfigError::ConfigSyntax {
            path: path.to_owned(),
            message,
        };
        let is_json = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let value: Value = if is_json {
            serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?
        } else {
            // YAML is a superset of JSON, so any other extension is read as YAML.
            serde_yaml_ng::from_str(text).map_err(|e| syntax(e.to_string()))?
        };
        let map = match value {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => return Err(syntax("expected an object keyed by flag names".into())),
        };
        let values = map
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        Ok(ConfigFile {
            path: path.to_owned(),
            values,
        })
    }

    fn unknown_keys(&self) -> impl Iterator<Item = &str> {
        self.values
            .keys()
            .map(String::as_str)
            .filter(|k| !KNOWN_KEYS.contains(k))
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        self.get(key)
            .cloned()
            .map(|v| scalar_text(key, v))
            .transpose()
    }

    fn bool(&self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "t" | "yes" | "on" => Ok(Some(true)),
                "false" | "0" | "f" | "no" | "off" | "" => Ok(Some(false)),
                _ => Err(ConfigError::InvalidValue {
                    key,
                    message: format!("{s:?} is not a boolean"),
                }),
            },
            Some(Value::Number(n)) => Ok(Some(n.as_f64().is_some_and(|f| f != 0.0))),
            Some(other) => Err(ConfigError::InvalidValue {
                key,
                message: format!("{other} is not a boolean"),
            }),
        }
    }

    fn u64(&self, key: &'static str) -> Result<Option<u64>, ConfigError> {
        let invalid = |v: &dyn std::fmt::Display| ConfigError::InvalidValue {
            key,
            message: format!("{v} is not a non-negative integer"),
        };
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| invalid(n)),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| invalid(s)),
            Some(other) => Err(invalid(other)),
        }
    }

    fn port(&self, key: &'static str) -> Result<Option<u16>, ConfigError> {
        match self.u64(key)? {
            None => Ok(None),
            Some(n) => u16::try_from(n)
                .map(Some)
                .map_err(|_| ConfigError::InvalidValue {
                    key,
                    message: format!("{n} is not a port number"),
                }),
        }
    }

    fn string_list(&self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                items.iter().cloned().map(|v| scalar_text(key, v)).collect()
            }
            Some(v) => Ok(vec![scalar_text(key, v.clone())?]),
        }
    }

    /// A map value: a JSON/YAML object, or the `a=1,b=2` text form.
    fn string_map_entries(&self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Object(map)) => {
                let mut out = Vec::with_capacity(map.len());
                for (k, v) in map {
                    out.push(format!("{k}={}", scalar_text(key, v.clone())?));
                }
                Ok(out)
            }
            Some(Value::Array(items)) => {
                items.iter().cloned().map(|v| scalar_text(key, v)).collect()
            }
            Some(v) => Ok(vec![scalar_text(key, v.clone())?]),
        }
    }

    fn sources(&self) -> Result<Vec<SourceEntry>, ConfigError> {
        match self.get("sources") {
            None => Ok(Vec::new()),
            Some(v) => source_entries(v.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(
            parse_uri("core.openfeature.dev/ns"),
            Err(ConfigError::InvalidValue { key: "uri", .. })
        ));
        assert!(matches!(
            parse_uri("gs://bucket/flags.json"),
            Err(ConfigError::UnsupportedProvider {
                provider: "gcs",
                ..
            })
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
