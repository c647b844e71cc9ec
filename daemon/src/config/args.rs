//! The low-level command line: clap's definitions of `flagpole start | validate | version`, every
//! `flagd start` flag with its short letter, default and `FLAGD_*` variable, all optional (defaults are
//! applied in [`super`] after the config file), and the generated `docs/cli.md`.
//!
//! What it does not do: interpret a value (the high-level [`super::Config`] does).

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

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
    /// Set, clear or list overrides (the kill switch) of a running daemon through its admin API.
    Override(OverrideArgs),
    /// Explain an evaluation: the answer and the path its targeting took, from flag files or from a
    /// running daemon.
    Explain(ExplainArgs),
    /// Print the version.
    Version,
}

/// `flagpole override` (docs/admin.md#overrides).
#[derive(Debug, Clone, clap::Args)]
pub struct OverrideArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: OverrideCommand,
    /// The daemon's management port. [default: http://localhost:8014]
    #[arg(
        long,
        global = true,
        env = "FLAGPOLE_MANAGEMENT_URL",
        value_name = "URL"
    )]
    pub management_url: Option<String>,
    /// A file holding the admin token (its first token; `name:token` lines are accepted, as in
    /// --admin-token-file).
    #[arg(long, global = true, env = "FLAGPOLE_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

/// `flagpole override` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum OverrideCommand {
    /// Force a variant for everyone, or disable the flag.
    Set {
        /// The flag key.
        key: String,
        /// The variant everyone gets.
        #[arg(long, conflicts_with = "disable", required_unless_present = "disable")]
        variant: Option<String>,
        /// Disable the flag instead.
        #[arg(long)]
        disable: bool,
        /// Why (kept with the override and shown in the flag's metadata).
        #[arg(long)]
        reason: Option<String>,
        /// Lift it by itself after this long (a Go duration: 30m, 1h).
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
    },
    /// Lift the override of a flag.
    Clear {
        /// The flag key.
        key: String,
    },
    /// List the overrides in force.
    List,
}

/// `flagpole explain` (docs/admin.md#explain).
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// The flag key.
    #[arg(long, value_name = "KEY")]
    pub flag: String,
    /// The evaluation context, a JSON object. [default: {}]
    #[arg(long, value_name = "JSON")]
    pub context: Option<String>,
    /// A selector, as in the Flagd-Selector header (flagSetId=…, source=…).
    #[arg(long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// A request header for the daemon's -H mappings (NAME=VALUE; repeatable; with a daemon only).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    pub headers: Vec<String>,
    /// Output: text (a tree) or json (the admin API's answer).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Bucketing of `fractional` when explaining files (a daemon uses its own).
    #[arg(long, value_name = "v2|v3", default_value = "v2")]
    pub fractional_algorithm: String,
    /// Flag files (.json, .yaml, .yml), merged as the daemon merges its sources (a later file wins).
    /// Without files, the daemon at --management-url explains.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The daemon's management port, when no files are given. [default: http://localhost:8014]
    #[arg(long, env = "FLAGPOLE_MANAGEMENT_URL", value_name = "URL")]
    pub management_url: Option<String>,
}

/// How `flagpole explain` and `flagpole validate` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A tree for people.
    Text,
    /// JSON for tools.
    Json,
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
    /// Output: text (one line per problem) or json (for tools).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// `flagpole start`: every `flagd start` flag. Flags marked "not effective yet" are accepted and checked so
/// that existing command lines work, and a warning at start says they have no effect.
#[derive(Debug, Default, clap::Args)]
pub struct StartArgs {
    /// Evaluation port: gRPC (flagd.evaluation.v1, v2, schema.v1), Connect (HTTP/1.1 and HTTP/2, JSON or
    /// protobuf) and gRPC-Web on the same port. [default: 8013]
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

    /// OFREP change streams (server-sent events): the bulk answer advertises a stream per selector that
    /// announces each change. [default: false]
    #[arg(long, env = "FLAGD_OFREP_SSE_ENABLED", value_parser = BoolishValueParser::new(),
          num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub ofrep_sse_enabled: Option<bool>,

    /// How long clients keep an OFREP change stream open while idle (hidden), advertised as
    /// inactivityDelaySec (a Go duration). [default: 120s]
    #[arg(
        long,
        env = "FLAGD_OFREP_SSE_INACTIVITY_DELAY",
        value_name = "DURATION"
    )]
    pub ofrep_sse_inactivity_delay: Option<String>,

    /// The public URL (origin and path prefix) clients reach the OFREP port at, used in the advertised
    /// stream URL; without it the stream is advertised as a path on the same origin.
    #[arg(long, env = "FLAGD_OFREP_SSE_PUBLIC_URL", value_name = "URL")]
    pub ofrep_sse_public_url: Option<String>,

    /// Serve the sync service over HTTP too: accepted, not effective yet (sync is served over gRPC on the
    /// sync port). [default: false]
    #[arg(long, env = "FLAGD_SYNC_HTTP_ENABLED", value_parser = BoolishValueParser::new(),
          num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub sync_http_enabled: Option<bool>,

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

    /// Metrics exporter: empty for Prometheus on /metrics only, `otel` to push them over OTLP as well
    /// (`OTEL_EXPORTER_OTLP_*` or --otel-collector-uri say where).
    #[arg(
        short = 't',
        long,
        env = "FLAGD_METRICS_EXPORTER",
        value_name = "EXPORTER"
    )]
    pub metrics_exporter: Option<String>,

    /// OpenTelemetry collector for OTLP metrics and traces over gRPC (`host:port` or a URL); setting it turns
    /// trace export on. `OTEL_EXPORTER_OTLP_ENDPOINT` wins over it, as in flagd.
    #[arg(
        short = 'o',
        long,
        env = "FLAGD_OTEL_COLLECTOR_URI",
        value_name = "URI"
    )]
    pub otel_collector_uri: Option<String>,

    /// Client certificate (PEM) presented to the OTel collector, with --otel-key-path (ignored by flagd).
    #[arg(short = 'D', long, env = "FLAGD_OTEL_CERT_PATH", value_name = "PATH")]
    pub otel_cert_path: Option<String>,

    /// Private key (PEM) of --otel-cert-path (ignored by flagd).
    #[arg(short = 'K', long, env = "FLAGD_OTEL_KEY_PATH", value_name = "PATH")]
    pub otel_key_path: Option<String>,

    /// CA certificate(s) (PEM) the OTel collector's certificate is checked against; implies TLS (ignored by
    /// flagd).
    #[arg(short = 'A', long, env = "FLAGD_OTEL_CA_PATH", value_name = "PATH")]
    pub otel_ca_path: Option<String>,

    /// How often the --otel-* certificate files are read again; a changed file replaces the collector
    /// connection (ignored by flagd). [default: 1h]
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
    /// connections are closed at once. Within the open-file limit: 256 descriptors stay aside, the
    /// management port keeps a sixteenth of the rest, and one of the other three may take at most two
    /// thirds of what remains. [default: 10000]
    #[arg(long, env = "FLAGD_MAX_CONNECTIONS", value_name = "COUNT")]
    pub max_connections: Option<usize>,

    /// flagpole: the admin tokens, one per line (`name:token`); without it the admin API is read-only.
    #[arg(long, env = "FLAGPOLE_ADMIN_TOKEN_FILE", value_name = "PATH")]
    pub admin_token_file: Option<String>,

    /// flagpole: the directory for what survives a restart (overrides, the change journal, flag usage,
    /// remote sources' last good flags, served when a source is down at start); none keeps it in memory
    /// only.
    #[arg(long, env = "FLAGPOLE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<String>,

    /// flagpole: how long before a flag is marked stale (not evaluated, one variant served to everyone,
    /// overridden), as a Go duration. [default: 720h]
    #[arg(long, env = "FLAGPOLE_STALE_AFTER", value_name = "DURATION")]
    pub stale_after: Option<String>,

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
