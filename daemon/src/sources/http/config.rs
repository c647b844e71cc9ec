//! The typed configuration of one http source ([`HttpConfig`], built from the `--uri` or `--sources` keys by
//! [`HttpConfig::from_options`], with typed [`SourceConfigError`]s) and its poll schedule: every `interval`
//! seconds aligned to the seconds since midnight, shifted by `fnv32a(intervalSeed) % interval`, as flagd's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue, Uri};
use serde_json::Value;

use super::client::ProxyConfig;
use crate::sources::options::{MAX_POLL_INTERVAL_SECS, RemoteOptions, SourceConfigError};

/// Poll interval when `interval` is not given, in seconds (flagd's default).
pub const DEFAULT_INTERVAL_SECS: u32 = 5;

/// The deadline of one poll (and of an OAuth2 token request) when `timeoutS` is not given. flagd has none:
/// a server that accepts the connection and never answers stalls its http source for good, silently.
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// OAuth2 client-credentials settings (`oauth` key).
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    /// `clientID` (ignored when `folder` is set).
    pub client_id: String,
    /// `clientSecret` (ignored when `folder` is set).
    pub client_secret: String,
    /// `tokenUrl`.
    pub token_url: Uri,
    /// `folder`: read `client-id` and `client-secret` from these files instead.
    pub folder: Option<PathBuf>,
    /// `reloadDelayS`: how long a token (and the secrets read from `folder`) is reused; zero means a new
    /// token for every fetch, as in flagd.
    pub reload_delay: Duration,
}

impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("token_url", &self.token_url)
            .field("folder", &self.folder)
            .field("reload_delay", &self.reload_delay)
            .finish_non_exhaustive()
    }
}

/// One http(s) source, fully parsed.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// The URL fetched (also the source identity).
    pub url: Uri,
    /// `authHeader`: the whole `Authorization` value.
    pub auth_header: Option<HeaderValue>,
    /// `headers`: extra request headers (a `Host` entry sets the host header).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `interval` in seconds.
    pub interval_secs: u32,
    /// `fnv32a(intervalSeed) % interval`, in seconds.
    pub offset_secs: u32,
    /// `timeoutS`; `None` when not given (or 0): then [`DEFAULT_POLL_TIMEOUT`] (flagd waits for ever).
    pub timeout: Option<Duration>,
    /// `oauth`.
    pub oauth: Option<OAuthConfig>,
    /// `lazy` (flagpole): start without the first fetch succeeding.
    pub lazy: bool,
    /// The proxy settings (the environment's, unless a test or an embedder says otherwise).
    pub proxy: ProxyConfig,
    /// The certificates https servers are verified against: `None` (always, from the command line) for
    /// the system's roots; `Some` for only these (tests and embedders).
    pub tls_roots: Option<Vec<rustls::pki_types::CertificateDer<'static>>>,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&HeaderName> = self.headers.iter().map(|(name, _)| name).collect();
        f.debug_struct("HttpConfig")
            .field("url", &self.url)
            .field(
                "auth_header",
                &self.auth_header.as_ref().map(|_| "<redacted>"),
            )
            .field("headers", &header_names)
            .field("interval_secs", &self.interval_secs)
            .field("offset_secs", &self.offset_secs)
            .field("timeout", &self.timeout)
            .field("oauth", &self.oauth)
            .field("lazy", &self.lazy)
            .field("proxy", &self.proxy)
            .field("tls_roots", &self.tls_roots.as_ref().map(Vec::len))
            .finish()
    }
}

impl HttpConfig {
    /// The deadline of one poll: `timeoutS`, else [`DEFAULT_POLL_TIMEOUT`].
    pub fn poll_timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_POLL_TIMEOUT)
    }

    /// How long after its last good poll the source's data counts as overdue: three poll intervals (at
    /// least one second each) plus the poll deadline.
    pub fn overdue_after(&self) -> Duration {
        Duration::from_secs(3 * u64::from(self.interval_secs.max(1))) + self.poll_timeout()
    }

    /// Builds the configuration of the http source at `url` from the `--sources` keys (all defaults for a
    /// `--uri`). The message of an error names the key at fault.
    pub fn from_options(url: &str, options: RemoteOptions) -> Result<Self, SourceConfigError> {
        let parsed: Uri =
            url.parse()
                .map_err(|e: http::uri::InvalidUri| SourceConfigError::NotAUrl {
                    uri: url.to_owned(),
                    reason: e.to_string(),
                })?;
        match parsed.scheme_str() {
            Some("http" | "https") if parsed.host().is_some() => {}
            _ => {
                return Err(SourceConfigError::NotHttp {
                    uri: url.to_owned(),
                });
            }
        }
        let (interval_secs, offset_secs) = schedule(&options)?;
        let timeout = poll_timeout(&options)?;
        let auth_header = match options.auth_header.filter(|h| !h.is_empty()) {
            Some(value) => {
                let mut value =
                    HeaderValue::from_str(&value).map_err(|_| SourceConfigError::AuthHeader)?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let headers = header_list(&options.headers)?;
        let oauth = options.oauth.map(oauth_config).transpose()?;
        Ok(HttpConfig {
            url: parsed,
            auth_header,
            headers,
            interval_secs,
            offset_secs,
            timeout,
            oauth,
            lazy: options.lazy.unwrap_or(false),
            proxy: ProxyConfig::Environment,
            tls_roots: None,
        })
    }
}

/// `interval` (default 5 s, at most a day) and the offset `intervalSeed` gives, in seconds: the polling
/// schedule of the http and blob sources.
pub fn schedule(options: &RemoteOptions) -> Result<(u32, u32), SourceConfigError> {
    let interval = options.interval.unwrap_or(u64::from(DEFAULT_INTERVAL_SECS));
    if interval > MAX_POLL_INTERVAL_SECS {
        return Err(SourceConfigError::IntervalTooLong);
    }
    let interval_secs = u32::try_from(interval).unwrap_or(DEFAULT_INTERVAL_SECS);
    let offset_secs = match options.interval_seed.as_deref() {
        Some(seed) if !seed.is_empty() && interval_secs > 0 => fnv1a32(seed) % interval_secs,
        _ => 0,
    };
    Ok((interval_secs, offset_secs))
}

/// `timeoutS` (`None` when absent or 0).
pub fn poll_timeout(options: &RemoteOptions) -> Result<Option<Duration>, SourceConfigError> {
    Ok(match options.timeout_s {
        None | Some(0) => None,
        Some(secs) if secs < 0 => return Err(SourceConfigError::Negative { key: "timeoutS" }),
        Some(secs) => Some(Duration::from_secs(secs.unsigned_abs())),
    })
}

/// Validates the `headers` map as HTTP header names and values.
fn header_list(
    headers: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, SourceConfigError> {
    headers
        .iter()
        .map(|(name, value)| {
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                SourceConfigError::HeaderName {
                    name: name.clone(),
                    what: "header name",
                }
            })?;
            let header_value =
                HeaderValue::from_str(value).map_err(|_| SourceConfigError::HeaderValue {
                    name: name.clone(),
                    what: "a valid header value",
                })?;
            Ok((header_name, header_value))
        })
        .collect()
}

/// Parses the `oauth` object (keys matched case-insensitively, as mapstructure does).
fn oauth_config(value: Value) -> Result<OAuthConfig, SourceConfigError> {
    let Value::Object(map) = value else {
        return Err(SourceConfigError::OAuthNotObject);
    };
    let mut client_id = String::new();
    let mut client_secret = String::new();
    let mut token_url = String::new();
    let mut folder = None;
    let mut reload_delay = Duration::ZERO;
    for (key, value) in map {
        let text = || match &value {
            Value::String(s) => Ok(s.clone()),
            other => Err(SourceConfigError::OAuthKey {
                key: key.clone(),
                expected: "a string",
                got: Some(other.to_string()),
            }),
        };
        match key.to_ascii_lowercase().as_str() {
            "clientid" => client_id = text()?,
            "clientsecret" => client_secret = text()?,
            "tokenurl" => token_url = text()?,
            "folder" => folder = Some(PathBuf::from(text()?)).filter(|p| !p.as_os_str().is_empty()),
            "reloaddelays" => {
                let secs = value.as_u64().ok_or_else(|| SourceConfigError::OAuthKey {
                    key: key.clone(),
                    expected: "a non-negative integer",
                    got: None,
                })?;
                reload_delay = Duration::from_secs(secs);
            }
            _ => {}
        }
    }
    let token_url: Uri = token_url
        .parse()
        .map_err(|_| SourceConfigError::OAuthTokenUrl("is missing or not a URL"))?;
    if !matches!(token_url.scheme_str(), Some("http" | "https")) {
        return Err(SourceConfigError::OAuthTokenUrl(
            "must be an http:// or https:// URL",
        ));
    }
    if folder.is_none() && (client_id.is_empty() || client_secret.is_empty()) {
        return Err(SourceConfigError::OAuthClient);
    }
    Ok(OAuthConfig {
        client_id,
        client_secret,
        token_url,
        folder,
        reload_delay,
    })
}

/// 32-bit FNV-1a (Go's `hash/fnv` `New32a`), used for the `intervalSeed` offset.
pub fn fnv1a32(text: &str) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    text.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(PRIME)
    })
}

/// How long from `now` until the next poll: the next second-since-midnight (UTC) `s` with
/// `(s - offset) % interval == 0`. An interval of 0 polls every second (as flagd's schedule does).
pub fn next_poll_delay(now: SystemTime, interval_secs: u32, offset_secs: u32) -> Duration {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let into_second = Duration::from_nanos(u64::from(since_epoch.subsec_nanos()));
    let whole_seconds = if interval_secs == 0 {
        1
    } else {
        let interval = u64::from(interval_secs);
        let offset = u64::from(offset_secs) % interval;
        let now_s = since_epoch.as_secs() % 86_400;
        let since_last = (now_s + interval - offset) % interval;
        interval - since_last
    };
    Duration::from_secs(whole_seconds).saturating_sub(into_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_go_hash_fnv() {
        // Reference values of FNV-1a 32 (Go: fnv.New32a).
        assert_eq!(fnv1a32(""), 0x811c_9dc5);
        assert_eq!(fnv1a32("a"), 0xe40c_292c);
        assert_eq!(fnv1a32("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn schedule_is_aligned_to_the_wall_clock_plus_the_offset() {
        let at = |secs: u64, nanos: u32| UNIX_EPOCH + Duration::new(secs, nanos);
        // 86400 * 1000 is a midnight; 12 s later, interval 30, offset 0 → next at :30.
        let midnight = 86_400 * 1000;
        assert_eq!(
            next_poll_delay(at(midnight + 12, 0), 30, 0),
            Duration::from_secs(18)
        );
        assert_eq!(
            next_poll_delay(at(midnight + 12, 0), 30, 7),
            Duration::from_secs(25)
        );
        assert_eq!(
            next_poll_delay(at(midnight + 7, 0), 30, 7),
            Duration::from_secs(30)
        );
        assert_eq!(
            next_poll_delay(at(midnight + 12, 250_000_000), 5, 0),
            Duration::from_millis(2750)
        );
        assert_eq!(
            next_poll_delay(at(midnight, 400_000_000), 0, 0),
            Duration::from_millis(600)
        );
        // An offset larger than the interval wraps.
        assert_eq!(
            next_poll_delay(at(midnight + 1, 0), 5, 7),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn options_are_checked() {
        let with = |f: fn(&mut RemoteOptions)| {
            let mut options = RemoteOptions::default();
            f(&mut options);
            HttpConfig::from_options("https://example.com/flags.json", options)
        };
        let defaults = with(|_| {});
        assert!(
            defaults
                .as_ref()
                .is_ok_and(|c| c.interval_secs == DEFAULT_INTERVAL_SECS && c.timeout.is_none()),
            "{defaults:?}"
        );
        assert!(with(|o| o.interval = Some(86_401)).is_err());
        assert!(with(|o| o.timeout_s = Some(-1)).is_err());
        assert!(with(|o| o.auth_header = Some("a\nb".into())).is_err());
        assert!(with(|o| o.oauth = Some(serde_json::json!({"clientID": "x"}))).is_err());
        let seeded = with(|o| {
            o.interval = Some(30);
            o.interval_seed = Some("foobar".into());
        });
        assert_eq!(seeded.ok().map(|c| c.offset_secs), Some(0xbf9c_f968 % 30));
        assert!(HttpConfig::from_options("ftp://x/y", RemoteOptions::default()).is_err());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let options = RemoteOptions {
            auth_header: Some("Bearer s3cret".into()),
            oauth: Some(serde_json::json!({
                "clientID": "id", "clientSecret": "hidden-secret", "tokenUrl": "http://t/token"
            })),
            ..RemoteOptions::default()
        };
        let config = HttpConfig::from_options("http://h/f.json", options);
        let text = format!("{config:?}");
        assert!(
            !text.contains("s3cret") && !text.contains("hidden-secret"),
            "{text}"
        );
    }
}
