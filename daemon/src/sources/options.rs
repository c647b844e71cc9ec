//! What a remote source is configured with, before it is checked: the keys of a `--sources` entry
//! ([`RemoteOptions`]), and the typed reasons a source's configuration rejects them
//! ([`SourceConfigError`]). Each remote source's configuration type checks the keys it uses; the
//! configuration (`crate::config`) wraps the error with where it came from (`--uri` or the position in
//! `--sources`).

use std::collections::BTreeMap;

/// The largest poll interval of an http source, in seconds (one day).
pub const MAX_POLL_INTERVAL_SECS: u64 = 86_400;

/// The `--sources` keys of the remote providers, as read from the configuration; each remote source's
/// configuration type checks the keys it uses.
#[derive(Default)]
pub struct RemoteOptions {
    /// `authHeader` (http).
    pub auth_header: Option<String>,
    /// `headers` (http headers, grpc metadata).
    pub headers: BTreeMap<String, String>,
    /// `interval` in seconds (http).
    pub interval: Option<u64>,
    /// `intervalSeed` (http).
    pub interval_seed: Option<String>,
    /// `timeoutS` (http).
    pub timeout_s: Option<i64>,
    /// `oauth` (http).
    pub oauth: Option<serde_json::Value>,
    /// `tls` (grpc).
    pub tls: Option<bool>,
    /// `certPath` (grpc).
    pub cert_path: Option<String>,
    /// `providerID` (grpc).
    pub provider_id: Option<String>,
    /// `selector` (grpc).
    pub selector: Option<String>,
    /// `maxMsgSize` (grpc).
    pub max_msg_size: Option<i64>,
    /// `incrementalUpdates` (grpc).
    pub incremental_updates: Option<bool>,
    /// `lazy` (flagpole, http, grpc and kubernetes): start even when the first fetch fails.
    pub lazy: Option<bool>,
    /// `kubeconfig` (flagpole, kubernetes): the kubeconfig file to use.
    pub kubeconfig: Option<String>,
}

/// Why a source's configuration is rejected. The messages name the key at fault, as flagd's do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceConfigError {
    /// The URI does not have the form the provider reads.
    #[error("uri {uri:?}: expected {form}")]
    UriForm {
        /// The URI as given.
        uri: String,
        /// The forms accepted.
        form: String,
    },
    /// An http source's URI is not a URL.
    #[error("uri {uri:?} is not a URL: {reason}")]
    NotAUrl {
        /// The URI as given.
        uri: String,
        /// The parser's reason.
        reason: String,
    },
    /// An http source's URI is not `http://` or `https://` with a host.
    #[error("uri {uri:?} must be an http:// or https:// URL")]
    NotHttp {
        /// The URI as given.
        uri: String,
    },
    /// A gRPC resolver flagpole does not implement.
    #[error("uri {uri:?}: the uds and xds resolvers are not supported")]
    UnsupportedResolver {
        /// The URI as given.
        uri: String,
    },
    /// A Kubernetes namespace or name that the API would refuse.
    #[error(
        "uri {uri:?}: expected {form}: the {what} {part:?} is not a Kubernetes name (lower-case letters, \
         digits, '-' and '.', at most {max} bytes)"
    )]
    NotAKubernetesName {
        /// The URI as given.
        uri: String,
        /// The forms accepted.
        form: String,
        /// `namespace` or `name`.
        what: &'static str,
        /// The part at fault.
        part: String,
        /// The longest name accepted.
        max: usize,
    },
    /// `interval` over [`MAX_POLL_INTERVAL_SECS`].
    #[error("interval must be at most {MAX_POLL_INTERVAL_SECS} seconds")]
    IntervalTooLong,
    /// A numeric key that must not be negative (`timeoutS`, `maxMsgSize`).
    #[error("{key} must not be negative")]
    Negative {
        /// The key.
        key: &'static str,
    },
    /// `certPath` with `tls: false`.
    #[error("certPath is set but tls is false")]
    CertWithoutTls,
    /// `authHeader` is not a valid HTTP header value.
    #[error("authHeader is not a valid header value")]
    AuthHeader,
    /// A `headers` name that is not a valid header name (http) or metadata key (grpc).
    #[error("headers: {name:?} is not a valid {what}")]
    HeaderName {
        /// The name as given.
        name: String,
        /// `header name` or `metadata key`.
        what: &'static str,
    },
    /// A `headers` value that is not a valid header value (http) or metadata (grpc).
    #[error("headers: the value of {name:?} is not {what}")]
    HeaderValue {
        /// The header's name.
        name: String,
        /// `a valid header value` or `valid metadata`.
        what: &'static str,
    },
    /// Binary (`-bin`) gRPC metadata.
    #[error("headers: binary metadata {name:?} is not supported")]
    BinaryMetadata {
        /// The name as given.
        name: String,
    },
    /// `oauth` is not an object.
    #[error("oauth must be an object")]
    OAuthNotObject,
    /// An `oauth` key of the wrong type.
    #[error("oauth.{key} must be {expected}{}", got.as_ref().map(|got| format!(", got {got}")).unwrap_or_default())]
    OAuthKey {
        /// The key as given.
        key: String,
        /// What it must be.
        expected: &'static str,
        /// What it was, when that is worth showing.
        got: Option<String>,
    },
    /// `oauth.tokenUrl` is missing, not a URL, or not http(s).
    #[error("oauth.tokenUrl {0}")]
    OAuthTokenUrl(&'static str),
    /// `oauth` names neither a client nor a folder holding one.
    #[error("oauth needs clientID and clientSecret, or a folder holding them")]
    OAuthClient,
}
