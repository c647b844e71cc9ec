//! The `--config` file: a JSON or YAML object keyed by the long flag names, matched case-insensitively, as
//! viper reads it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::uri::{SourceEntry, source_entries};
use super::{ConfigError, MAX_CONFIG_FILE_BYTES, scalar_text};

/// A `--config` file: a JSON or YAML object keyed by long flag names (matched case-insensitively).
#[derive(Debug)]
pub(super) struct ConfigFile {
    pub(super) path: PathBuf,
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
    "admin-token-file",
    "state-dir",
    "ofrep-sse-enabled",
    "ofrep-sse-inactivity-delay",
    "ofrep-sse-public-url",
    "sync-http-enabled",
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
    pub(super) fn read(path: &Path) -> Result<Self, ConfigError> {
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

    pub(super) fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
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

    pub(super) fn unknown_keys(&self) -> impl Iterator<Item = &str> {
        self.values
            .keys()
            .map(String::as_str)
            .filter(|k| !KNOWN_KEYS.contains(k))
    }

    pub(super) fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key).filter(|v| !v.is_null())
    }

    pub(super) fn string(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        self.get(key)
            .cloned()
            .map(|v| scalar_text(key, v))
            .transpose()
    }

    pub(super) fn bool(&self, key: &'static str) -> Result<Option<bool>, ConfigError> {
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

    pub(super) fn u64(&self, key: &'static str) -> Result<Option<u64>, ConfigError> {
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

    pub(super) fn port(&self, key: &'static str) -> Result<Option<u16>, ConfigError> {
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

    pub(super) fn string_list(&self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                items.iter().cloned().map(|v| scalar_text(key, v)).collect()
            }
            Some(v) => Ok(vec![scalar_text(key, v.clone())?]),
        }
    }

    /// A map value: a JSON/YAML object, or the `a=1,b=2` text form.
    pub(super) fn string_map_entries(&self, key: &'static str) -> Result<Vec<String>, ConfigError> {
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

    pub(super) fn sources(&self) -> Result<Vec<SourceEntry>, ConfigError> {
        match self.get("sources") {
            None => Ok(Vec::new()),
            Some(v) => source_entries(v.clone()),
        }
    }
}
