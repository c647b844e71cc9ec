//! The cucumber world of the provider/daemon suite: the options a scenario sets, the provider it builds for
//! its mode, the flag it evaluates and the result, and a log of provider events seen by registered handlers.
//!
//! Event handlers behave like OpenFeature client handlers: a handler registered for a kind records every
//! later event of that kind, and — as the specification asks of late handlers — fires at once when the
//! provider is already in the matching state. "should have been executed" and "was fired" wait for a
//! recorded event of the kind and consume it together with every event recorded before it (the Java and Go
//! harnesses consume the events of the kind), so that a later check needs an event that happened after the
//! one just consumed: "a ready event was fired" after an outage means a new ready, not the initial one.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagpole_provider::{
    ConfigError, FlagdOptions, FlagdOptionsBuilder, FlagdProvider, FractionalAlgorithm,
    ProviderEvent, ProviderEventKind, ProviderState,
};
use open_feature::provider::FeatureProvider;
use open_feature::{EvaluationContext, EvaluationContextFieldValue, FlagMetadata};
use serde_json::Value;
use tokio::task::JoinHandle;

use super::{Mode, harness};

/// Default wait of "… event handler should have been executed" and "a … event was fired".
pub const EVENT_WAIT: Duration = Duration::from_secs(10);
/// Poll interval while waiting for an event.
pub const EVENT_POLL: Duration = Duration::from_millis(20);

/// Harness defaults applied before the scenario's own options (`docs/conformance.md#how-it-works`): a grace period that makes
/// a 1 s outage stale-only (with room for a slow daemon start on a loaded machine) and a 6 or 8 s outage
/// stale then error, and a short back-off so reconnection follows the daemon's restart closely.
pub const HARNESS_RETRY_GRACE_PERIOD_SECS: u64 = 3;
/// See [`HARNESS_RETRY_GRACE_PERIOD_SECS`].
pub const HARNESS_RETRY_BACKOFF_MS: u64 = 500;
/// See [`HARNESS_RETRY_GRACE_PERIOD_SECS`].
pub const HARNESS_RETRY_BACKOFF_MAX_MS: u64 = 500;
/// File mode: how often the provider re-reads the flag file (the watch should be faster anyway).
pub const HARNESS_OFFLINE_POLL_MS: u64 = 500;
/// Initialization deadline used unless the scenario sets `deadlineMs`.
pub const HARNESS_DEADLINE_MS: u64 = 2_000;

/// An option set by `an option "…" of type "…" with value "…"`, kept as text until the provider is built.
#[derive(Debug, Clone)]
pub struct OptionSetting {
    /// Option name as the specification spells it (`deadlineMs`, `targetUri`, …).
    pub name: String,
    /// Declared type (`Integer`, `String`, `CacheType`, …).
    pub ty: String,
    /// Value text.
    pub value: String,
}

/// The flag a scenario evaluates.
#[derive(Debug, Clone)]
pub struct FlagRequest {
    /// `Boolean`, `String`, `Integer`, `Float` or `Object`.
    pub ty: String,
    /// Flag key.
    pub key: String,
    /// The code default, as text.
    pub default: String,
}

/// The outcome of one evaluation, as the OpenFeature client would report it.
#[derive(Debug, Clone)]
pub struct Details {
    /// The value (the code default when the evaluation failed or yielded no value).
    pub value: Value,
    /// `STATIC`, `TARGETING_MATCH`, `DEFAULT`, `DISABLED`, `CACHED`, `ERROR`, …
    pub reason: String,
    /// The variant, if any.
    pub variant: Option<String>,
    /// The error code (`FLAG_NOT_FOUND`, …) when the evaluation failed.
    pub error_code: Option<String>,
    /// Flag metadata.
    pub metadata: FlagMetadata,
}

/// Events recorded for registered handlers.
#[derive(Debug, Default)]
pub struct EventLog {
    handlers: HashSet<Kind>,
    queue: Vec<ProviderEvent>,
    /// How many times each handler ran, consumed or not (for "should not have been executed").
    executed: HashMap<Kind, usize>,
}

impl EventLog {
    fn record(&mut self, event: ProviderEvent) {
        *self.executed.entry(Kind::of(&event)).or_default() += 1;
        self.queue.push(event);
    }
}

/// Event kinds as the steps name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `ready`.
    Ready,
    /// `error`.
    Error,
    /// `stale`.
    Stale,
    /// `change`.
    Change,
}

impl Kind {
    /// Parses a step's event name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "ready" => Some(Kind::Ready),
            "error" => Some(Kind::Error),
            "stale" => Some(Kind::Stale),
            "change" => Some(Kind::Change),
            _ => None,
        }
    }

    fn of(event: &ProviderEvent) -> Self {
        match event.kind {
            ProviderEventKind::Ready => Kind::Ready,
            ProviderEventKind::Error => Kind::Error,
            ProviderEventKind::Stale => Kind::Stale,
            ProviderEventKind::ConfigurationChanged => Kind::Change,
        }
    }

    fn matches_state(self, state: ProviderState) -> bool {
        matches!(
            (self, state),
            (Kind::Ready, ProviderState::Ready)
                | (Kind::Stale, ProviderState::Stale)
                | (Kind::Error, ProviderState::Error | ProviderState::Fatal)
        )
    }

    fn synthetic(self) -> ProviderEvent {
        let kind = match self {
            Kind::Ready => ProviderEventKind::Ready,
            Kind::Error => ProviderEventKind::Error,
            Kind::Stale => ProviderEventKind::Stale,
            Kind::Change => ProviderEventKind::ConfigurationChanged,
        };
        ProviderEvent {
            kind,
            flags_changed: Vec::new(),
            message: Some("handler registered in this state".to_owned()),
            fatal: false,
        }
    }
}

/// The world.
#[derive(Debug, cucumber::World)]
#[world(init = Self::new)]
pub struct FlagdWorld {
    /// The mode of the current scenario (from its feature file's directory).
    pub mode: Option<Mode>,
    /// Options in the order the scenario set them.
    pub options: Vec<OptionSetting>,
    /// Environment variables the scenario set (never the process environment).
    pub env: HashMap<String, String>,
    /// Result of `a config was initialized`.
    pub config: Option<Result<FlagdOptions, ConfigError>>,
    /// The provider under test.
    pub provider: Option<FlagdProvider>,
    /// Events seen by handlers.
    pub events: Arc<Mutex<EventLog>>,
    /// The task copying provider events into [`FlagdWorld::events`].
    pub event_task: Option<JoinHandle<()>>,
    /// The flag to evaluate.
    pub flag: Option<FlagRequest>,
    /// The evaluation context.
    pub context: EvaluationContext,
    /// JSON objects of the context (so nested properties can be merged before conversion).
    pub objects: HashMap<String, serde_json::Map<String, Value>>,
    /// The last evaluation.
    pub details: Option<Details>,
    /// The last consumed change event.
    pub last_change: Option<ProviderEvent>,
}

impl FlagdWorld {
    fn new() -> Self {
        Self {
            mode: None,
            options: Vec::new(),
            env: HashMap::new(),
            config: None,
            provider: None,
            events: Arc::new(Mutex::new(EventLog::default())),
            event_task: None,
            flag: None,
            context: EvaluationContext::default(),
            objects: HashMap::new(),
            details: None,
            last_change: None,
        }
    }

    /// Sets the mode (before hook).
    pub fn set_mode(&mut self, mode: Option<Mode>) {
        self.mode = mode;
    }

    /// The scenario's mode; panics (failing the step) when unknown.
    pub fn mode(&self) -> Mode {
        self.mode.unwrap_or_else(|| {
            panic!("scenario has no mode (feature file outside a mode directory)")
        })
    }

    /// Stops the provider's and the world's background tasks (after hook).
    pub async fn teardown(&mut self) {
        if let Some(task) = self.event_task.take() {
            task.abort();
        }
        self.provider = None;
    }

    /// The scenario's options on a builder (no environment applied yet).
    pub fn builder(&self) -> FlagdOptionsBuilder {
        let mut builder = FlagdOptions::builder();
        for option in &self.options {
            builder = apply_option(builder, option);
        }
        builder
    }

    /// `a config was initialized`: the scenario's options over the scenario's environment.
    pub fn initialize_config(&mut self) {
        let env = self.env.clone();
        self.config = Some(self.builder().build_with_env(|name| env.get(name).cloned()));
    }

    /// The value of an option set by the scenario, if any.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|option| option.name == name)
            .map(|option| option.value.as_str())
    }

    /// `a <name> flagd provider`: starts the daemon with the matching launchpad config (if the scenario needs
    /// one) and builds the provider for the scenario's mode.
    pub async fn start_provider(&mut self, name: &str) {
        let mode = self.mode();
        let harness = harness();
        let launcher = &harness.launcher;
        let fixture = launcher.fixture();
        let ports = launcher.ports();

        let config = match name {
            "stable" | "unavailable" | "forbidden" => "default",
            "ssl" => "ssl",
            "socket" => "socket",
            "metadata" => "metadata",
            "syncpayload" => "sync-payload",
            other => panic!("unknown provider name {other:?}"),
        };
        if name != "unavailable" {
            launcher
                .start(Some(config))
                .await
                .unwrap_or_else(|error| panic!("launcher start {config}: {error}"));
        }

        let fractional = match super::harness().bucketing {
            super::Bucketing::Default => FractionalAlgorithm::V2,
            super::Bucketing::V3 => FractionalAlgorithm::V3,
        };
        let mut builder = FlagdOptions::builder()
            .host("localhost")
            .fractional(fractional)
            .deadline_ms(HARNESS_DEADLINE_MS)
            .retry_grace_period(HARNESS_RETRY_GRACE_PERIOD_SECS)
            .retry_backoff_ms(HARNESS_RETRY_BACKOFF_MS)
            .retry_backoff_max_ms(HARNESS_RETRY_BACKOFF_MAX_MS)
            .offline_poll_interval_ms(HARNESS_OFFLINE_POLL_MS);
        builder = match mode {
            Mode::Rpc => builder
                .resolver(flagpole_provider::ResolverType::Rpc)
                .port(ports.evaluation),
            Mode::InProcess => builder
                .resolver(flagpole_provider::ResolverType::InProcess)
                .port(ports.sync),
            Mode::File => {
                let path = match name {
                    "unavailable" => PathBuf::from("not-existing"),
                    "metadata" => fixture
                        .rawflags_dir()
                        .join("selector-flag-combined-metadata.json"),
                    _ => fixture.all_flags_path(),
                };
                builder
                    .resolver(flagpole_provider::ResolverType::File)
                    .offline_flag_source_path(path)
            }
        };
        builder = match name {
            "ssl" => builder.tls(true).cert_path(fixture.ca_cert_path()),
            "socket" if mode == Mode::InProcess => builder.socket_path(fixture.sync_socket_path()),
            "socket" => builder.socket_path(fixture.socket_path()),
            "unavailable" => builder.port(closed_port()),
            "forbidden" => builder.port(harness.envoy.forbidden_port()),
            _ => builder,
        };
        for option in &self.options {
            let mut option = option.clone();
            if option.name == "targetUri" {
                option.value = option
                    .value
                    .replace("<port>", &harness.envoy.route_port().to_string());
            }
            builder = apply_option(builder, &option);
        }
        let env = self.env.clone();
        let options = builder
            .build_with_env(|name| env.get(name).cloned())
            .unwrap_or_else(|error| panic!("provider options: {error}"));

        let mut provider =
            FlagdProvider::new(options).unwrap_or_else(|error| panic!("provider: {error}"));
        let events = provider.events();
        let mut receiver = events.subscribe();
        let log = Arc::clone(&self.events);
        self.event_task = Some(tokio::spawn(async move {
            loop {
                match receiver.recv().await {
                    Ok(event) => {
                        if let Ok(mut log) = log.lock()
                            && log.handlers.contains(&Kind::of(&event))
                        {
                            log.record(event);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        }));
        if !matches!(name, "unavailable" | "forbidden") {
            provider.initialize(&EvaluationContext::default()).await;
        }
        self.provider = Some(provider);
    }

    /// `a <kind> event handler`.
    pub fn add_handler(&mut self, kind: Kind) {
        let state = self.provider().state();
        let mut log = self.lock_events();
        log.handlers.insert(kind);
        if kind.matches_state(state) {
            log.record(kind.synthetic());
        }
    }

    /// Waits for (and consumes) an event of `kind`; panics (failing the step) after `wait`.
    pub async fn expect_event(&mut self, kind: Kind, wait: Duration) -> ProviderEvent {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            {
                let mut log = self.lock_events();
                if !log.handlers.contains(&kind) {
                    panic!("no {kind:?} event handler was registered");
                }
                if let Some(index) = log.queue.iter().position(|event| Kind::of(event) == kind) {
                    let event = log.queue.remove(index);
                    // Everything recorded before it has happened-before: a later check needs a newer event.
                    log.queue.drain(..index);
                    log.queue.retain(|event| Kind::of(event) != kind);
                    return event;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let state = self.provider.as_ref().map(FlagdProvider::state);
                let restart = harness().launcher.last_restart_error().await;
                panic!(
                    "no {kind:?} event within {wait:?} (provider state {state:?}, daemon restart error {restart:?})"
                );
            }
            tokio::time::sleep(EVENT_POLL).await;
        }
    }

    /// How many times the handler of `kind` ran since it was registered (consumed events included).
    /// Panics (failing the step) when no handler of `kind` was registered, which would make any count moot.
    pub fn executions(&self, kind: Kind) -> usize {
        let log = self.lock_events();
        if !log.handlers.contains(&kind) {
            panic!("no {kind:?} event handler was registered");
        }
        log.executed.get(&kind).copied().unwrap_or_default()
    }

    fn lock_events(&self) -> std::sync::MutexGuard<'_, EventLog> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The provider; panics (failing the step) when none was created.
    pub fn provider(&self) -> &FlagdProvider {
        self.provider
            .as_ref()
            .unwrap_or_else(|| panic!("no provider: missing `a … flagd provider` step"))
    }

    /// Adds a context field of a declared type.
    pub fn add_context(&mut self, key: &str, ty: &str, value: &str) {
        let field = match ty {
            "String" => EvaluationContextFieldValue::String(value.to_owned()),
            "Integer" | "Long" => EvaluationContextFieldValue::Int(
                value
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("context {key}: {value:?} is not an integer")),
            ),
            "Float" => EvaluationContextFieldValue::Float(
                value
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("context {key}: {value:?} is not a float")),
            ),
            "Boolean" => EvaluationContextFieldValue::Bool(parse_bool(value)),
            "Object" => {
                // Step lines (unlike table cells, see `preprocess`) may still carry `\"` escapes.
                let json: Value = serde_json::from_str(value)
                    .or_else(|_| serde_json::from_str(&value.replace("\\\"", "\"")))
                    .unwrap_or_else(|error| panic!("context {key}: {value:?}: {error}"));
                EvaluationContextFieldValue::new_struct(json)
            }
            other => panic!("unknown context type {other:?}"),
        };
        self.context.add_custom_field(key, field);
    }

    /// Adds `outer.inner = value` (a string) to the context, merging with earlier nested properties.
    pub fn add_nested_context(&mut self, outer: &str, inner: &str, value: &str) {
        let object = self.objects.entry(outer.to_owned()).or_default();
        object.insert(inner.to_owned(), Value::String(value.to_owned()));
        let json = Value::Object(object.clone());
        self.context
            .add_custom_field(outer, EvaluationContextFieldValue::new_struct(json));
    }

    /// `the flag was evaluated with details`.
    pub async fn evaluate(&mut self) {
        let flag = self
            .flag
            .clone()
            .unwrap_or_else(|| panic!("no flag: missing `a <Type>-flag with key …` step"));
        let provider = self.provider();
        let context = &self.context;
        let default = default_value(&flag);
        let result = match flag.ty.as_str() {
            "Boolean" => provider
                .resolve_bool_value(&flag.key, context)
                .await
                .map(|d| (Value::Bool(d.value), d.variant, d.reason, d.flag_metadata)),
            "String" => provider
                .resolve_string_value(&flag.key, context)
                .await
                .map(|d| (Value::String(d.value), d.variant, d.reason, d.flag_metadata)),
            "Integer" => provider
                .resolve_int_value(&flag.key, context)
                .await
                .map(|d| (Value::from(d.value), d.variant, d.reason, d.flag_metadata)),
            "Float" => provider
                .resolve_float_value(&flag.key, context)
                .await
                .map(|d| (Value::from(d.value), d.variant, d.reason, d.flag_metadata)),
            "Object" => provider
                .resolve_struct_value(&flag.key, context)
                .await
                .map(|d| {
                    let value = flagpole_provider::convert::value_to_json(
                        &open_feature::Value::Struct(d.value),
                    );
                    (value, d.variant, d.reason, d.flag_metadata)
                }),
            other => panic!("unknown flag type {other:?}"),
        };
        self.details = Some(match result {
            Ok((value, variant, reason, metadata)) => Details {
                value,
                reason: reason.map(|r| r.to_string()).unwrap_or_default(),
                variant,
                error_code: None,
                metadata: metadata.unwrap_or_default(),
            },
            Err(error) => match flagpole_provider::no_value_reason(&error) {
                Some(reason) => Details {
                    value: default,
                    reason: reason.to_string(),
                    variant: None,
                    error_code: None,
                    metadata: FlagMetadata::default(),
                },
                None => Details {
                    value: default,
                    reason: "ERROR".to_owned(),
                    variant: None,
                    error_code: Some(error.code.to_string()),
                    metadata: FlagMetadata::default(),
                },
            },
        });
    }

    /// The last evaluation; panics (failing the step) when there was none.
    pub fn details(&self) -> &Details {
        self.details
            .as_ref()
            .unwrap_or_else(|| panic!("the flag was not evaluated"))
    }
}

/// Applies one option to a builder by its specification name.
pub fn apply_option(builder: FlagdOptionsBuilder, option: &OptionSetting) -> FlagdOptionsBuilder {
    let value = option.value.as_str();
    let number = |name: &str| -> u64 {
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("option {name}: {value:?} is not a number"))
    };
    match option.name.as_str() {
        "resolver" => builder.resolver(
            value
                .parse::<flagpole_provider::ResolverType>()
                .unwrap_or_else(|error| panic!("{error}")),
        ),
        "host" => builder.host(value),
        "port" => builder.port(
            u16::try_from(number("port")).unwrap_or_else(|_| panic!("port {value} out of range")),
        ),
        "targetUri" => builder.target_uri(value),
        "tls" => builder.tls(parse_bool(value)),
        "certPath" => builder.cert_path(PathBuf::from(value)),
        "socketPath" => builder.socket_path(PathBuf::from(value)),
        "deadlineMs" => builder.deadline_ms(number("deadlineMs")),
        "streamDeadlineMs" => builder.stream_deadline_ms(number("streamDeadlineMs")),
        "keepAliveTime" => builder.keep_alive_time_ms(number("keepAliveTime")),
        "retryBackoffMs" => builder.retry_backoff_ms(number("retryBackoffMs")),
        "retryBackoffMaxMs" => builder.retry_backoff_max_ms(number("retryBackoffMaxMs")),
        "retryGracePeriod" => builder.retry_grace_period(number("retryGracePeriod")),
        "fatalStatusCodes" => builder.fatal_status_codes(flagpole_provider::split_list(value)),
        "cache" => builder.cache(
            value
                .parse::<flagpole_provider::CacheType>()
                .unwrap_or_else(|error| panic!("{error}")),
        ),
        "maxCacheSize" => builder.max_cache_size(
            usize::try_from(number("maxCacheSize"))
                .unwrap_or_else(|_| panic!("maxCacheSize {value} out of range")),
        ),
        "selector" => builder.selector(value),
        "providerId" => builder.provider_id(value),
        "offlineFlagSourcePath" => builder.offline_flag_source_path(PathBuf::from(value)),
        "offlinePollIntervalMs" => {
            builder.offline_poll_interval_ms(number("offlinePollIntervalMs"))
        }
        other => panic!("unknown option {other:?}"),
    }
}

/// The text of an option's resolved value, in the spelling the feature files use (`null` for unset).
pub fn option_text(options: &FlagdOptions, name: &str) -> String {
    let path = |path: &Option<PathBuf>| {
        path.as_ref()
            .map_or_else(|| "null".to_owned(), |p| p.display().to_string())
    };
    let text = |text: &Option<String>| text.clone().unwrap_or_else(|| "null".to_owned());
    match name {
        "resolver" => options.resolver.as_str().to_owned(),
        "host" => options.host.clone(),
        "port" => options.port.to_string(),
        "targetUri" => text(&options.target_uri),
        "tls" => options.tls.to_string(),
        "certPath" => path(&options.cert_path),
        "socketPath" => path(&options.socket_path),
        "deadlineMs" => options.deadline_ms.to_string(),
        "streamDeadlineMs" => options.stream_deadline_ms.to_string(),
        "keepAliveTime" => options.keep_alive_time_ms.to_string(),
        "retryBackoffMs" => options.retry_backoff_ms.to_string(),
        "retryBackoffMaxMs" => options.retry_backoff_max_ms.to_string(),
        "retryGracePeriod" => options.retry_grace_period.to_string(),
        "fatalStatusCodes" => options.fatal_status_codes.join(","),
        "cache" => options.cache.as_str().to_owned(),
        "maxCacheSize" => options.max_cache_size.to_string(),
        "selector" => text(&options.selector),
        "providerId" => text(&options.provider_id),
        "offlineFlagSourcePath" => path(&options.offline_flag_source_path),
        "offlinePollIntervalMs" => options.offline_poll_interval_ms.to_string(),
        other => panic!("unknown option {other:?}"),
    }
}

/// Normalises an expected option value of a declared type to [`option_text`]'s spelling.
pub fn expected_text(ty: &str, value: &str) -> String {
    match ty {
        "Boolean" => parse_bool(value).to_string(),
        "ResolverType" | "CacheType" => value.trim().to_ascii_lowercase(),
        "StringList" => flagpole_provider::split_list(value).join(","),
        _ => value.to_owned(),
    }
}

/// `true`/`True`/`TRUE` → true; anything else false.
pub fn parse_bool(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("true")
}

/// The code default of a flag request as JSON.
pub fn default_value(flag: &FlagRequest) -> Value {
    parse_typed(&flag.ty, &flag.default)
}

/// A step's value text as JSON of the flag's type.
pub fn parse_typed(ty: &str, text: &str) -> Value {
    match ty {
        "Boolean" => Value::Bool(parse_bool(text)),
        "String" => Value::String(text.to_owned()),
        "Integer" => Value::from(
            text.trim()
                .parse::<i64>()
                .unwrap_or_else(|_| panic!("{text:?} is not an integer")),
        ),
        "Float" => Value::from(
            text.trim()
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("{text:?} is not a float")),
        ),
        "Object" => serde_json::from_str(text)
            .or_else(|_| serde_json::from_str(&text.replace("\\\"", "\"")))
            .unwrap_or_else(|error| panic!("{text:?} is not JSON: {error}")),
        other => panic!("unknown flag type {other:?}"),
    }
}

/// JSON equality where numbers compare by value (`100` equals `100.0`).
pub fn json_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(a), Some(b)) => (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()).max(1.0),
            _ => a == b,
        },
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, value)| b.get(key).is_some_and(|other| json_equal(value, other)))
        }
        _ => left == right,
    }
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or(9999)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value() {
        assert!(json_equal(&json!({"a": 100}), &json!({"a": 100.0})));
        assert!(!json_equal(&json!({"a": 100}), &json!({"a": 101})));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    }

    #[test]
    fn expected_texts_are_normalised() {
        assert_eq!(expected_text("Boolean", "True"), "true");
        assert_eq!(expected_text("ResolverType", "IN-PROCESS"), "in-process");
        assert_eq!(expected_text("StringList", "A, B"), "A,B");
        assert_eq!(expected_text("StringList", ""), "");
    }
}
