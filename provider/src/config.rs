//! Provider options: the flagd provider specification's option table, its `FLAGD_*` environment variables,
//! defaults and precedence (an explicit option beats the environment, the environment beats the default).
//!
//! This module only resolves values; it does not validate that a target can be reached or that a certificate
//! can be read (that happens when the provider is built, see [`crate::FlagdProvider::new`]). The option names
//! and spellings follow the flagd-testbed's `config.feature`, which is the checklist.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use flagpole_engine::FractionalAlgorithm;

/// Default `deadlineMs`: unary call deadline and initialization timeout.
pub const DEFAULT_DEADLINE_MS: u64 = 500;
/// Default `streamDeadlineMs`: how long one event/sync stream may live before it is re-opened.
pub const DEFAULT_STREAM_DEADLINE_MS: u64 = 600_000;
/// Default `retryBackoffMs`: the first wait before re-opening a broken stream.
pub const DEFAULT_RETRY_BACKOFF_MS: u64 = 1_000;
/// Default `retryBackoffMaxMs`: the longest wait between stream re-connection attempts.
pub const DEFAULT_RETRY_BACKOFF_MAX_MS: u64 = 5_000;
/// Default `retryGracePeriod` in seconds: how long the provider stays STALE before it reports ERROR.
pub const DEFAULT_RETRY_GRACE_PERIOD_SECS: u64 = 10;
/// Default `maxCacheSize`: the number of cached RPC results.
pub const DEFAULT_MAX_CACHE_SIZE: usize = 1_000;
/// Default `offlinePollIntervalMs`: how often the offline flag file is re-read when no watch event arrives.
pub const DEFAULT_OFFLINE_POLL_INTERVAL_MS: u64 = 5_000;
/// Default port of the evaluation service (RPC resolver).
pub const DEFAULT_RPC_PORT: u16 = 8013;
/// Default port of the sync service (in-process resolver).
pub const DEFAULT_IN_PROCESS_PORT: u16 = 8015;
/// Default host.
pub const DEFAULT_HOST: &str = "localhost";

/// Environment variable names, as in the flagd provider specification.
pub mod env {
    /// `resolver`.
    pub const RESOLVER: &str = "FLAGD_RESOLVER";
    /// `host`.
    pub const HOST: &str = "FLAGD_HOST";
    /// `port`.
    pub const PORT: &str = "FLAGD_PORT";
    /// `port` for the in-process resolver; wins over [`PORT`].
    pub const SYNC_PORT: &str = "FLAGD_SYNC_PORT";
    /// `targetUri`.
    pub const TARGET_URI: &str = "FLAGD_TARGET_URI";
    /// `tls`.
    pub const TLS: &str = "FLAGD_TLS";
    /// `socketPath`.
    pub const SOCKET_PATH: &str = "FLAGD_SOCKET_PATH";
    /// `certPath`.
    pub const SERVER_CERT_PATH: &str = "FLAGD_SERVER_CERT_PATH";
    /// `deadlineMs`.
    pub const DEADLINE_MS: &str = "FLAGD_DEADLINE_MS";
    /// `streamDeadlineMs`.
    pub const STREAM_DEADLINE_MS: &str = "FLAGD_STREAM_DEADLINE_MS";
    /// `retryBackoffMs`.
    pub const RETRY_BACKOFF_MS: &str = "FLAGD_RETRY_BACKOFF_MS";
    /// `retryBackoffMaxMs`.
    pub const RETRY_BACKOFF_MAX_MS: &str = "FLAGD_RETRY_BACKOFF_MAX_MS";
    /// `retryGracePeriod`.
    pub const RETRY_GRACE_PERIOD: &str = "FLAGD_RETRY_GRACE_PERIOD";
    /// `keepAliveTime`.
    pub const KEEP_ALIVE_TIME_MS: &str = "FLAGD_KEEP_ALIVE_TIME_MS";
    /// `cache`.
    pub const CACHE: &str = "FLAGD_CACHE";
    /// `maxCacheSize`.
    pub const MAX_CACHE_SIZE: &str = "FLAGD_MAX_CACHE_SIZE";
    /// `selector`.
    pub const SOURCE_SELECTOR: &str = "FLAGD_SOURCE_SELECTOR";
    /// `providerId`.
    pub const PROVIDER_ID: &str = "FLAGD_PROVIDER_ID";
    /// `offlineFlagSourcePath`.
    pub const OFFLINE_FLAG_SOURCE_PATH: &str = "FLAGD_OFFLINE_FLAG_SOURCE_PATH";
    /// `offlinePollIntervalMs`.
    pub const OFFLINE_POLL_MS: &str = "FLAGD_OFFLINE_POLL_MS";
    /// `fatalStatusCodes`.
    pub const FATAL_STATUS_CODES: &str = "FLAGD_FATAL_STATUS_CODES";
}

/// An option value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An option (or environment variable) holds a value of the wrong shape.
    #[error("{name}: {value:?} is not {expected}")]
    InvalidValue {
        /// The option or environment variable name.
        name: String,
        /// The rejected text.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// `resolver` is `file` but no `offlineFlagSourcePath` is set.
    #[error("resolver \"file\" needs offlineFlagSourcePath (FLAGD_OFFLINE_FLAG_SOURCE_PATH)")]
    MissingOfflinePath,
}

/// How the provider resolves flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResolverType {
    /// Every evaluation is a call to the flagd evaluation service.
    #[default]
    Rpc,
    /// Flags are streamed from the flagd sync service and evaluated locally.
    InProcess,
    /// Flags are read from a local file and evaluated locally.
    File,
}

impl ResolverType {
    /// The spelling used in the specification.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolverType::Rpc => "rpc",
            ResolverType::InProcess => "in-process",
            ResolverType::File => "file",
        }
    }
}

impl fmt::Display for ResolverType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResolverType {
    type Err = ConfigError;
    /// Case-insensitive; accepts `rpc`, `in-process` (also `in_process`, `inprocess`), `file` (also `offline`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rpc" => Ok(ResolverType::Rpc),
            "in-process" | "in_process" | "inprocess" => Ok(ResolverType::InProcess),
            "file" | "offline" => Ok(ResolverType::File),
            _ => Err(invalid("resolver", s, "one of rpc, in-process, file")),
        }
    }
}

/// The RPC resolver's result cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheType {
    /// A least-recently-used cache of `maxCacheSize` static results.
    #[default]
    Lru,
    /// No caching.
    Disabled,
}

impl CacheType {
    /// The spelling used in the specification.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheType::Lru => "lru",
            CacheType::Disabled => "disabled",
        }
    }
}

impl fmt::Display for CacheType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CacheType {
    type Err = ConfigError;
    /// Case-insensitive `lru` or `disabled`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "lru" => Ok(CacheType::Lru),
            "disabled" => Ok(CacheType::Disabled),
            _ => Err(invalid("cache", s, "one of lru, disabled")),
        }
    }
}

/// The resolved options. Field names follow the specification's option names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagdOptions {
    /// `resolver`.
    pub resolver: ResolverType,
    /// `host`.
    pub host: String,
    /// `port` (8013 for RPC, 8015 for in-process unless set).
    pub port: u16,
    /// `targetUri`: replaces host and port; `envoy://host:port/authority` dials host:port with that authority.
    pub target_uri: Option<String>,
    /// `tls`.
    pub tls: bool,
    /// `certPath`: a PEM CA certificate to trust (implies TLS).
    pub cert_path: Option<PathBuf>,
    /// `socketPath`: a unix socket to dial instead of host and port.
    pub socket_path: Option<PathBuf>,
    /// `deadlineMs`: unary call deadline and initialization timeout.
    pub deadline_ms: u64,
    /// `streamDeadlineMs`: a stream is re-opened after this long (0 = never).
    pub stream_deadline_ms: u64,
    /// `keepAliveTime` in milliseconds: HTTP/2 keep-alive ping interval (0 = off).
    pub keep_alive_time_ms: u64,
    /// `retryBackoffMs`: first re-connection wait.
    pub retry_backoff_ms: u64,
    /// `retryBackoffMaxMs`: longest re-connection wait.
    pub retry_backoff_max_ms: u64,
    /// `retryGracePeriod` in seconds: STALE lasts this long before ERROR.
    pub retry_grace_period: u64,
    /// `fatalStatusCodes`: gRPC status names (e.g. `PERMISSION_DENIED`) that end all retries (FATAL).
    pub fatal_status_codes: Vec<String>,
    /// `cache` (RPC only).
    pub cache: CacheType,
    /// `maxCacheSize` (RPC only).
    pub max_cache_size: usize,
    /// `selector`: sent as the `Flagd-Selector` header.
    pub selector: Option<String>,
    /// `providerId`: sent in sync requests.
    pub provider_id: Option<String>,
    /// `offlineFlagSourcePath`: the flag file of the file resolver.
    pub offline_flag_source_path: Option<PathBuf>,
    /// `offlinePollIntervalMs`: how often the flag file is re-read besides file-system notifications.
    pub offline_poll_interval_ms: u64,
    /// Which `fractional` bucketing the in-process and file resolvers use (flagpole: the daemon's
    /// `--fractional-algorithm`; flagd's default v2 unless set). RPC evaluates in the daemon.
    pub fractional: FractionalAlgorithm,
}

impl Default for FlagdOptions {
    /// The specification's defaults, ignoring the environment.
    fn default() -> Self {
        FlagdOptions {
            resolver: ResolverType::Rpc,
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_RPC_PORT,
            target_uri: None,
            tls: false,
            cert_path: None,
            socket_path: None,
            deadline_ms: DEFAULT_DEADLINE_MS,
            stream_deadline_ms: DEFAULT_STREAM_DEADLINE_MS,
            keep_alive_time_ms: 0,
            retry_backoff_ms: DEFAULT_RETRY_BACKOFF_MS,
            retry_backoff_max_ms: DEFAULT_RETRY_BACKOFF_MAX_MS,
            retry_grace_period: DEFAULT_RETRY_GRACE_PERIOD_SECS,
            fatal_status_codes: Vec::new(),
            cache: CacheType::Lru,
            max_cache_size: DEFAULT_MAX_CACHE_SIZE,
            selector: None,
            provider_id: None,
            offline_flag_source_path: None,
            offline_poll_interval_ms: DEFAULT_OFFLINE_POLL_INTERVAL_MS,
            fractional: FractionalAlgorithm::default(),
        }
    }
}

impl FlagdOptions {
    /// A builder for explicit options; [`FlagdOptionsBuilder::build`] fills the rest from the environment.
    pub fn builder() -> FlagdOptionsBuilder {
        FlagdOptionsBuilder::default()
    }

    /// Options from the `FLAGD_*` environment variables and the defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        FlagdOptionsBuilder::default().build()
    }
}

/// Explicit options; anything left unset comes from the environment, then from the default.
///
/// ```
/// use flagpole_provider::{FlagdOptions, ResolverType};
/// let options = FlagdOptions::builder()
///     .resolver(ResolverType::InProcess)
///     .host("flagd.internal")
///     .selector("flagSetId=checkout")
///     .build_with_env(|_| None) // ignore the process environment in this example
///     .unwrap();
/// assert_eq!(options.port, 8015);
/// ```
#[derive(Debug, Clone, Default)]
pub struct FlagdOptionsBuilder {
    resolver: Option<ResolverType>,
    host: Option<String>,
    port: Option<u16>,
    target_uri: Option<String>,
    tls: Option<bool>,
    cert_path: Option<PathBuf>,
    socket_path: Option<PathBuf>,
    deadline_ms: Option<u64>,
    stream_deadline_ms: Option<u64>,
    keep_alive_time_ms: Option<u64>,
    retry_backoff_ms: Option<u64>,
    retry_backoff_max_ms: Option<u64>,
    retry_grace_period: Option<u64>,
    fatal_status_codes: Option<Vec<String>>,
    cache: Option<CacheType>,
    max_cache_size: Option<usize>,
    selector: Option<String>,
    provider_id: Option<String>,
    offline_flag_source_path: Option<PathBuf>,
    offline_poll_interval_ms: Option<u64>,
    fractional: Option<FractionalAlgorithm>,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: impl Into<$ty>) -> Self {
            self.$name = Some(value.into());
            self
        }
    };
}

impl FlagdOptionsBuilder {
    setter!(/// `resolver`.
        resolver: ResolverType);
    setter!(/// `host`.
        host: String);
    setter!(/// `port`.
        port: u16);
    setter!(/// `targetUri`.
        target_uri: String);
    setter!(/// `tls`.
        tls: bool);
    setter!(/// `certPath`.
        cert_path: PathBuf);
    setter!(/// `socketPath`.
        socket_path: PathBuf);
    setter!(/// `deadlineMs`.
        deadline_ms: u64);
    setter!(/// `streamDeadlineMs`.
        stream_deadline_ms: u64);
    setter!(/// `keepAliveTime` (milliseconds).
        keep_alive_time_ms: u64);
    setter!(/// `retryBackoffMs`.
        retry_backoff_ms: u64);
    setter!(/// `retryBackoffMaxMs`.
        retry_backoff_max_ms: u64);
    setter!(/// `retryGracePeriod` (seconds).
        retry_grace_period: u64);
    setter!(/// `fatalStatusCodes` (gRPC status names such as `PERMISSION_DENIED`).
        fatal_status_codes: Vec<String>);
    setter!(/// `cache`.
        cache: CacheType);
    setter!(/// `maxCacheSize`.
        max_cache_size: usize);
    setter!(/// `selector`.
        selector: String);
    setter!(/// `providerId`.
        provider_id: String);
    setter!(/// `offlineFlagSourcePath`.
        offline_flag_source_path: PathBuf);
    setter!(/// `offlinePollIntervalMs`.
        offline_poll_interval_ms: u64);
    setter!(/// The `fractional` bucketing of the local resolvers (flagpole; default v2).
        fractional: FractionalAlgorithm);

    /// Resolves the options against the process environment.
    pub fn build(self) -> Result<FlagdOptions, ConfigError> {
        self.build_with_env(|name| std::env::var(name).ok())
    }

    /// Resolves the options against `lookup` (an environment variable name → its value), so that tests and
    /// harnesses can supply an environment without touching the process's.
    pub fn build_with_env(
        self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<FlagdOptions, ConfigError> {
        let env = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let d = FlagdOptions::default();

        let mut resolver =
            pick(self.resolver, env(env::RESOLVER), |v| v.parse())?.unwrap_or(d.resolver);
        let offline_flag_source_path = self
            .offline_flag_source_path
            .or_else(|| env(env::OFFLINE_FLAG_SOURCE_PATH).map(PathBuf::from));
        // Backwards compatibility: an offline path turns in-process into the file resolver.
        if resolver == ResolverType::InProcess && offline_flag_source_path.is_some() {
            resolver = ResolverType::File;
        }
        if resolver == ResolverType::File && offline_flag_source_path.is_none() {
            return Err(ConfigError::MissingOfflinePath);
        }

        let port_env = if resolver == ResolverType::InProcess {
            env(env::SYNC_PORT)
                .map(|v| (env::SYNC_PORT, v))
                .or_else(|| env(env::PORT).map(|v| (env::PORT, v)))
        } else {
            env(env::PORT).map(|v| (env::PORT, v))
        };
        let port = match (self.port, port_env) {
            (Some(p), _) => p,
            (None, Some((name, v))) => parse_num(name, &v)?,
            (None, None) if resolver == ResolverType::InProcess => DEFAULT_IN_PROCESS_PORT,
            (None, None) => DEFAULT_RPC_PORT,
        };

        Ok(FlagdOptions {
            resolver,
            host: self.host.or_else(|| env(env::HOST)).unwrap_or(d.host),
            port,
            target_uri: self.target_uri.or_else(|| env(env::TARGET_URI)),
            tls: pick(self.tls, env(env::TLS), |v| parse_bool(env::TLS, v))?.unwrap_or(d.tls),
            cert_path: self
                .cert_path
                .or_else(|| env(env::SERVER_CERT_PATH).map(PathBuf::from)),
            socket_path: self
                .socket_path
                .or_else(|| env(env::SOCKET_PATH).map(PathBuf::from)),
            deadline_ms: num(self.deadline_ms, &env, env::DEADLINE_MS)?.unwrap_or(d.deadline_ms),
            stream_deadline_ms: num(self.stream_deadline_ms, &env, env::STREAM_DEADLINE_MS)?
                .unwrap_or(d.stream_deadline_ms),
            keep_alive_time_ms: num(self.keep_alive_time_ms, &env, env::KEEP_ALIVE_TIME_MS)?
                .unwrap_or(d.keep_alive_time_ms),
            retry_backoff_ms: num(self.retry_backoff_ms, &env, env::RETRY_BACKOFF_MS)?
                .unwrap_or(d.retry_backoff_ms),
            retry_backoff_max_ms: num(self.retry_backoff_max_ms, &env, env::RETRY_BACKOFF_MAX_MS)?
                .unwrap_or(d.retry_backoff_max_ms),
            retry_grace_period: num(self.retry_grace_period, &env, env::RETRY_GRACE_PERIOD)?
                .unwrap_or(d.retry_grace_period),
            fatal_status_codes: self
                .fatal_status_codes
                .or_else(|| env(env::FATAL_STATUS_CODES).map(|v| split_list(&v)))
                .unwrap_or_default(),
            cache: pick(self.cache, env(env::CACHE), |v| v.parse())?.unwrap_or(d.cache),
            max_cache_size: num(self.max_cache_size, &env, env::MAX_CACHE_SIZE)?
                .unwrap_or(d.max_cache_size),
            selector: self.selector.or_else(|| env(env::SOURCE_SELECTOR)),
            provider_id: self.provider_id.or_else(|| env(env::PROVIDER_ID)),
            offline_flag_source_path,
            offline_poll_interval_ms: num(
                self.offline_poll_interval_ms,
                &env,
                env::OFFLINE_POLL_MS,
            )?
            .unwrap_or(d.offline_poll_interval_ms),
            fractional: self.fractional.unwrap_or(d.fractional),
        })
    }
}

/// Splits a comma-separated list (`"A, B"` → `["A", "B"]`), dropping empty items.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn invalid(name: &str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::InvalidValue {
        name: name.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

fn pick<T>(
    explicit: Option<T>,
    env: Option<String>,
    parse: impl FnOnce(&str) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    match (explicit, env) {
        (Some(v), _) => Ok(Some(v)),
        (None, Some(text)) => parse(&text).map(Some),
        (None, None) => Ok(None),
    }
}

fn num<T: FromStr>(
    explicit: Option<T>,
    env: &impl Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<T>, ConfigError> {
    pick(explicit, env(name), |v| parse_num(name, v))
}

fn parse_num<T: FromStr>(name: &str, value: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(name, value, "a non-negative integer in range"))
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(invalid(name, value, "true or false")),
    }
}
