//! Object-store sources: `gs://bucket/object`, `s3://bucket/object[?query]`, `azblob://container/blob`
//! (`docs/sources.md#object-stores`), polled like http sources.
//!
//! What it owns: flagd's URI forms and query parameters, the credentials and endpoints each cloud's
//! standard environment gives (the `object_store` crate's chains: environment variables, web identity and
//! instance metadata, service-account files; plus the variables flagd's clients read, such as
//! `STORAGE_EMULATOR_HOST` and `AZURE_STORAGE_*`), and the poll: one conditional `GET` (`If-None-Match`
//! with the last ETag) per interval, so an unchanged object costs one request and no parse.
//!
//! What it does not do: list, write or watch buckets; retry within a poll beyond a bounded retry of
//! transient errors (the next poll is the retry).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use flagpole_engine::Format;
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use object_store::client::{
    HttpClient, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpResponseBody, HttpService,
};
use object_store::{ClientOptions, GetOptions, ObjectStore, RetryConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::SourceError;
use super::http::{MAX_BODY_BYTES, next_poll_delay, poll_timeout, schedule};
use super::options::{RemoteOptions, SourceConfigError};
use super::polled::{Applied, PollState};
use super::publish::{PublishError, SourceContext, Wording};

/// The deadline of one poll when `timeoutS` is not given.
pub const DEFAULT_BLOB_TIMEOUT: Duration = Duration::from_secs(30);

const WORDING: Wording = Wording {
    violation: "flag document has a schema violation",
    loaded: "loaded flags from object store",
};

/// Which object store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    /// Google Cloud Storage, `gs://` (`provider: gcs`).
    Gcs,
    /// Amazon S3 or a compatible store, `s3://` (`provider: s3`).
    S3,
    /// Azure Blob Storage, `azblob://` (`provider: azblob`).
    Azure,
}

impl Cloud {
    fn scheme(self) -> &'static str {
        match self {
            Cloud::Gcs => "gs",
            Cloud::S3 => "s3",
            Cloud::Azure => "azblob",
        }
    }
}

/// The S3 URI query parameters flagd's client reads (`s3://bucket/key?region=…`).
const S3_PARAMETERS: [&str; 6] = [
    "region",
    "endpoint",
    "use_path_style",
    "s3ForcePathStyle",
    "disable_https",
    "awssdk",
];
/// The Azure URI query parameters flagd's client reads.
const AZURE_PARAMETERS: [&str; 3] = ["domain", "protocol", "localemu"];

/// One object-store source's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobConfig {
    /// Which store.
    pub cloud: Cloud,
    /// The bucket (container).
    pub bucket: String,
    /// The object (blob) key.
    pub key: String,
    /// The URI's query parameters (S3, Azure).
    pub query: Vec<(String, String)>,
    /// `interval` in seconds (default 5).
    pub interval_secs: u32,
    /// `fnv32a(intervalSeed) % interval`.
    pub offset_secs: u32,
    /// One poll's deadline (`timeoutS`, else [`DEFAULT_BLOB_TIMEOUT`]).
    pub timeout: Duration,
    /// `lazy` (flagpole): start without the first fetch succeeding.
    pub lazy: bool,
}

impl BlobConfig {
    /// Reads `scheme://bucket/key[?query]` for `cloud` with the `--sources` keys (defaults for a `--uri`).
    pub fn from_options(
        uri: &str,
        cloud: Cloud,
        options: RemoteOptions,
    ) -> Result<BlobConfig, SourceConfigError> {
        let form = || SourceConfigError::UriForm {
            uri: uri.to_owned(),
            form: format!("{}://BUCKET/OBJECT", cloud.scheme()),
        };
        let rest = uri
            .strip_prefix(cloud.scheme())
            .and_then(|r| r.strip_prefix("://"))
            .ok_or_else(form)?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, key) = location.split_once('/').ok_or_else(form)?;
        if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
            return Err(form());
        }
        let allowed: &[&str] = match cloud {
            Cloud::S3 => &S3_PARAMETERS,
            Cloud::Azure => &AZURE_PARAMETERS,
            Cloud::Gcs => &[],
        };
        let mut pairs = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !allowed.contains(&name) {
                return Err(SourceConfigError::UriForm {
                    uri: uri.to_owned(),
                    form: format!(
                        "{}://BUCKET/OBJECT with the query parameters {allowed:?} (unknown: {name:?})",
                        cloud.scheme()
                    ),
                });
            }
            pairs.push((name.to_owned(), value.to_owned()));
        }
        // Credentials come from the environment; a URL with user information in the query would be logged.
        if pairs
            .iter()
            .any(|(name, value)| name == "endpoint" && value.contains('@'))
        {
            return Err(SourceConfigError::UriForm {
                uri: format!("{}://{bucket}/{key}?endpoint=…", cloud.scheme()),
                form: "an endpoint without credentials (give them in the AWS_* variables)"
                    .to_owned(),
            });
        }
        let (interval_secs, offset_secs) = schedule(&options)?;
        Ok(BlobConfig {
            cloud,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            query: pairs,
            interval_secs,
            offset_secs,
            timeout: poll_timeout(&options)?.unwrap_or(DEFAULT_BLOB_TIMEOUT),
            lazy: options.lazy.unwrap_or(false),
        })
    }

    /// The source's identity: the URI as given.
    pub fn identity(&self) -> String {
        let query = self
            .query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let base = format!("{}://{}/{}", self.cloud.scheme(), self.bucket, self.key);
        if query.is_empty() {
            base
        } else {
            format!("{base}?{query}")
        }
    }

    /// When the data counts as overdue: no good poll for three intervals plus the deadline.
    pub fn overdue_after(&self) -> Duration {
        Duration::from_secs(3 * u64::from(self.interval_secs.max(1))) + self.timeout
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The object store client, from the environment's credentials and endpoints.
    fn store(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Arc<dyn ObjectStore>, BlobError> {
        let client = ClientOptions::new()
            .with_timeout(self.timeout)
            .with_connect_timeout(self.timeout);
        // The next poll is the real retry: within one, retry transient errors briefly.
        let retry = RetryConfig {
            max_retries: 2,
            retry_timeout: self.timeout,
            ..RetryConfig::default()
        };
        let truthy = |v: &str| matches!(v, "true" | "1" | "True" | "TRUE");
        let built: object_store::Result<Arc<dyn ObjectStore>> = match self.cloud {
            Cloud::S3 => {
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(&self.bucket)
                    .with_http_connector(HyperConnector)
                    .with_client_options(client)
                    .with_retry(retry);
                if let Some(region) = self.param("region") {
                    builder = builder.with_region(region);
                }
                if let Some(endpoint) = self.param("endpoint") {
                    builder = builder
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_endpoint(endpoint);
                }
                if self.param("disable_https").is_some_and(truthy) {
                    builder = builder.with_allow_http(true);
                }
                if let Some(endpoint) = env("AWS_ENDPOINT_URL_S3")
                    .or_else(|| env("AWS_ENDPOINT_URL"))
                    .filter(|_| self.param("endpoint").is_none())
                {
                    builder = builder
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_endpoint(endpoint);
                }
                let path_style = ["use_path_style", "s3ForcePathStyle"]
                    .iter()
                    .any(|p| self.param(p).is_some_and(truthy));
                builder = builder.with_virtual_hosted_style_request(
                    !path_style && self.param("endpoint").is_none(),
                );
                builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            Cloud::Gcs => {
                // The emulator variable Google's clients (and flagd's) honour; the emulator speaks plain
                // http and takes no credentials.
                let emulator = env("STORAGE_EMULATOR_HOST");
                let mut builder = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&self.bucket)
                    .with_http_connector(HyperConnector)
                    .with_client_options(client.with_allow_http(emulator.is_some()))
                    .with_retry(retry);
                if let Some(host) = emulator {
                    let base = if host.contains("://") {
                        host
                    } else {
                        format!("http://{host}")
                    };
                    builder = builder
                        .with_base_url(base.trim_end_matches('/'))
                        .with_skip_signature(true);
                }
                builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            Cloud::Azure => {
                let account = env("AZURE_STORAGE_ACCOUNT").filter(|a| !a.trim().is_empty());
                let Some(account) = account else {
                    return Err(BlobError::Setup {
                        uri: self.identity(),
                        message: "azblob sources need AZURE_STORAGE_ACCOUNT (as in flagd)"
                            .to_owned(),
                    });
                };
                let mut builder = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_account(account.trim())
                    .with_container_name(&self.bucket)
                    .with_http_connector(HyperConnector)
                    .with_retry(retry);
                let mut client = client;
                if let Some(key) = env("AZURE_STORAGE_KEY") {
                    builder = builder.with_access_key(key);
                }
                if let Some(sas) = env("AZURE_STORAGE_SAS_TOKEN") {
                    builder = builder.with_config(
                        object_store::azure::AzureConfigKey::SasKey,
                        sas.trim_start_matches('?'),
                    );
                }
                let domain = self
                    .param("domain")
                    .map(str::to_owned)
                    .or_else(|| env("AZURE_STORAGE_DOMAIN"));
                let protocol = self
                    .param("protocol")
                    .map(str::to_owned)
                    .or_else(|| env("AZURE_STORAGE_PROTOCOL"))
                    .unwrap_or_else(|| "https".to_owned());
                let emulator = self.param("localemu").is_some_and(truthy)
                    || env("AZURE_STORAGE_IS_LOCAL_EMULATOR").is_some_and(|v| truthy(&v));
                if let Some(domain) = domain {
                    // Azurite and other local emulators serve the account as the first path segment.
                    let endpoint = if emulator {
                        format!("{protocol}://{domain}/{}", account.trim())
                    } else {
                        format!("{protocol}://{}.blob.{domain}", account.trim())
                    };
                    client = client.with_allow_http(protocol == "http");
                    builder = builder.with_endpoint(endpoint);
                }
                builder
                    .with_client_options(client)
                    .build()
                    .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
        };
        built.map_err(|error| BlobError::Setup {
            uri: self.identity(),
            message: error.to_string(),
        })
    }
}

/// Why one poll of an object-store source failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The client could not be built (missing account, malformed endpoint).
    #[error("{uri}: {message}")]
    Setup {
        /// The source.
        uri: String,
        /// Why.
        message: String,
    },
    /// The object is not there.
    #[error("{uri}: the object does not exist")]
    NotFound {
        /// The source.
        uri: String,
    },
    /// The store refused the credentials or the access.
    #[error("{uri}: access denied ({message}); check the credentials in the environment")]
    Denied {
        /// The source.
        uri: String,
        /// The store's answer.
        message: String,
    },
    /// Any other failure (network, timeout, server error).
    #[error("{uri}: {message}")]
    Fetch {
        /// The source.
        uri: String,
        /// Why.
        message: String,
    },
    /// The object is larger than a flag document may be.
    #[error("{uri}: the object holds more than {limit} bytes")]
    TooLarge {
        /// The source.
        uri: String,
        /// The limit.
        limit: usize,
    },
    /// Neither the key's extension nor the content type says JSON or YAML.
    #[error(
        "{uri}: cannot tell the format: name the object .json, .yaml or .yml, or give it a JSON or YAML content type"
    )]
    UnknownFormat {
        /// The source.
        uri: String,
    },
    /// The payload did not load; the source keeps its last good flags.
    #[error("{uri}: {error}")]
    Payload {
        /// The source.
        uri: String,
        /// Why.
        error: PublishError,
    },
    /// The payload that was rejected before is still there.
    #[error("{uri}: the object is unchanged and still rejected: {reason}")]
    StillRejected {
        /// The source.
        uri: String,
        /// Why it was rejected.
        reason: String,
    },
}

impl BlobError {
    fn is_payload(&self) -> bool {
        matches!(
            self,
            BlobError::Payload { .. } | BlobError::UnknownFormat { .. }
        )
    }
}

/// One running object-store source.
pub struct BlobSource {
    config: BlobConfig,
    context: SourceContext,
    store: Option<Arc<dyn ObjectStore>>,
    path: object_store::path::Path,
    uri: String,
    etag: Option<String>,
    /// The last object, its rejection, failures in a row, overdue (`sources::polled`).
    polled: PollState,
}

impl BlobSource {
    /// A source for `config`, not fetched yet.
    pub fn new(config: BlobConfig, context: SourceContext) -> BlobSource {
        let uri = config.identity();
        let path = object_store::path::Path::from(config.key.as_str());
        BlobSource {
            config,
            context,
            store: None,
            path,
            uri,
            etag: None,
            polled: PollState::default(),
        }
    }

    /// Fetches once (unless lazy), then polls until `shutdown`.
    pub async fn start(
        mut self,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, SourceError> {
        if self.config.lazy {
            self.context
                .restore_last_good(WORDING, "the source is lazy")
                .await;
        } else {
            match self.poll().await {
                Ok(()) => {}
                Err(error) if error.is_payload() => {
                    tracing::error!(%error, "rejected the first object-store payload; the source is not ready");
                }
                Err(error) => {
                    self.context
                        .fall_back(WORDING, error)
                        .await
                        .map_err(|error| SourceError::Blob(Box::new(error)))?;
                    self.config.lazy = true;
                }
            }
        }
        Ok(tokio::spawn(async move {
            if self.config.lazy {
                self.poll_logged(&shutdown).await;
            }
            loop {
                let delay = next_poll_delay(
                    SystemTime::now(),
                    self.config.interval_secs,
                    self.config.offset_secs,
                );
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
                self.poll_logged(&shutdown).await;
            }
        }))
    }

    async fn poll_logged(&mut self, shutdown: &CancellationToken) {
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = self.poll() => outcome,
        };
        if let Err(error) = outcome {
            tracing::error!(%error, failures = self.polled.consecutive_failures, "object-store poll failed; keeping the last good flags");
        }
    }

    /// One conditional fetch, applied; success or failure recorded.
    async fn poll(&mut self) -> Result<(), BlobError> {
        let deadline = self.config.timeout + Duration::from_secs(1);
        let outcome = match tokio::time::timeout(deadline, self.fetch_and_apply()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(BlobError::Fetch {
                uri: self.uri.clone(),
                message: format!("no answer within {:?}", self.config.timeout),
            }),
        };
        self.polled.record(
            outcome.is_ok(),
            &self.context,
            self.config.overdue_after(),
            "object-store source",
        );
        outcome
    }

    async fn fetch_and_apply(&mut self) -> Result<(), BlobError> {
        let store = match &self.store {
            Some(store) => store.clone(),
            None => {
                let store = self.config.store(&|name| std::env::var(name).ok())?;
                self.store = Some(store.clone());
                store
            }
        };
        let options = GetOptions {
            if_none_match: self.etag.clone(),
            ..GetOptions::default()
        };
        let result = match store.get_opts(&self.path, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotModified { .. }) => {
                tracing::debug!(uri = %self.uri, "object not modified");
                return self.still_rejected();
            }
            Err(error) => return Err(self.classify(error)),
        };
        if result.meta.size > MAX_BODY_BYTES as u64 {
            return Err(BlobError::TooLarge {
                uri: self.uri.clone(),
                limit: MAX_BODY_BYTES,
            });
        }
        let etag = result.meta.e_tag.clone();
        let content_type = result
            .attributes
            .get(&object_store::Attribute::ContentType)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let body = result.bytes().await.map_err(|e| self.classify(e))?;
        let format = super::http::format_of(&self.config.key, &content_type).ok_or_else(|| {
            BlobError::UnknownFormat {
                uri: self.uri.clone(),
            }
        })?;
        let applied = self.apply(body, format).await;
        // Remembered after the body was read: a failed read is fetched again in full.
        self.etag = etag;
        applied
    }

    fn classify(&self, error: object_store::Error) -> BlobError {
        let uri = self.uri.clone();
        match error {
            object_store::Error::NotFound { .. } => BlobError::NotFound { uri },
            object_store::Error::PermissionDenied { source, .. }
            | object_store::Error::Unauthenticated { source, .. } => BlobError::Denied {
                uri,
                message: without_url_queries(&source.to_string()),
            },
            other => BlobError::Fetch {
                uri,
                message: without_url_queries(&other.to_string()),
            },
        }
    }

    fn still_rejected(&self) -> Result<(), BlobError> {
        match self.polled.still_rejected() {
            Some(reason) => Err(BlobError::StillRejected {
                uri: self.uri.clone(),
                reason: reason.to_owned(),
            }),
            None => Ok(()),
        }
    }

    async fn apply(&mut self, body: Bytes, format: Format) -> Result<(), BlobError> {
        match self
            .polled
            .apply(&mut self.context, WORDING, body, format)
            .await
        {
            Applied::Empty => {
                tracing::warn!(uri = %self.uri, "the object is empty; keeping the last flags");
                Ok(())
            }
            Applied::Unchanged => self.still_rejected(),
            Applied::Published => Ok(()),
            Applied::Rejected(error) => Err(BlobError::Payload {
                uri: self.uri.clone(),
                error,
            }),
        }
    }
}

/// `message` with the query of every URL in it removed: the stores' errors name the request URL, and an
/// Azure SAS token (or a presigned S3 query) travels in its query.
fn without_url_queries(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("http") {
        let (before, url_and_more) = rest.split_at(start);
        out.push_str(before);
        let end = url_and_more
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '>' || c == '<')
            .unwrap_or(url_and_more.len());
        let (url, after) = url_and_more.split_at(end);
        match url.split_once('?') {
            Some((base, _)) if url.contains("://") => {
                out.push_str(base);
                out.push_str("?…");
            }
            _ => out.push_str(url),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The HTTP client the object stores use: flagpole's hyper and rustls (ring, the system's roots), with a
/// bounded response body.
#[derive(Debug, Clone, Copy)]
struct HyperConnector;

impl object_store::client::HttpConnector for HyperConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let tls =
            super::http::client_tls_config().map_err(|message| object_store::Error::Generic {
                store: "http",
                source: message.into(),
            })?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(HttpClient::new(HyperService { client }))
    }
}

type HyperClient =
    Client<hyper_rustls::HttpsConnector<HttpConnector>, object_store::client::HttpRequestBody>;

#[derive(Debug, Clone)]
struct HyperService {
    client: HyperClient,
}

#[tonic::async_trait]
impl HttpService for HyperService {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = self.client.request(request).await.map_err(|error| {
            let kind = if error.is_connect() {
                HttpErrorKind::Connect
            } else {
                HttpErrorKind::Request
            };
            HttpError::new(kind, error)
        })?;
        let (parts, body) = response.into_parts();
        // One byte over the document limit is enough to refuse the object.
        let limited = Limited::new(body, MAX_BODY_BYTES + 1)
            .map_err(|error| HttpError::new(HttpErrorKind::Decode, BodyError(error.to_string())));
        Ok(HttpResponse::from_parts(
            parts,
            HttpResponseBody::new(limited),
        ))
    }
}

#[derive(Debug)]
struct BodyError(String);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BodyError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(uri: &str, cloud: Cloud) -> Result<BlobConfig, SourceConfigError> {
        BlobConfig::from_options(uri, cloud, RemoteOptions::default())
    }

    #[test]
    fn flagd_uri_forms_and_their_query_parameters() {
        let s3 = config(
            "s3://bucket/dir/flags.json?region=eu-west-1&use_path_style=true",
            Cloud::S3,
        )
        .unwrap();
        assert_eq!(
            (s3.bucket.as_str(), s3.key.as_str()),
            ("bucket", "dir/flags.json")
        );
        assert_eq!(s3.param("region"), Some("eu-west-1"));
        assert_eq!(
            s3.identity(),
            "s3://bucket/dir/flags.json?region=eu-west-1&use_path_style=true"
        );
        let gcs = config("gs://b/flags.yaml", Cloud::Gcs).unwrap();
        assert_eq!(gcs.identity(), "gs://b/flags.yaml");
        assert_eq!(gcs.interval_secs, 5);
        assert!(config("azblob://container/f.json", Cloud::Azure).is_ok());
        for bad in [
            "gs://bucket",
            "gs:///f.json",
            "gs://b/",
            "gs://b/f.json?region=x",
        ] {
            assert!(config(bad, Cloud::Gcs).is_err(), "{bad}");
        }
        assert!(config("s3://b/f.json?acl=public", Cloud::S3).is_err());
    }

    #[test]
    fn error_messages_lose_url_queries_and_endpoints_their_credentials() {
        let message = "Error performing GET https://acct.blob.core.windows.net/c/f.json?sv=2022&sig=SECRET in 5ms - 403";
        let clean = without_url_queries(message);
        assert!(!clean.contains("SECRET"), "{clean}");
        assert!(
            clean.contains("https://acct.blob.core.windows.net/c/f.json?…"),
            "{clean}"
        );
        assert!(clean.ends_with("in 5ms - 403"), "{clean}");
        assert_eq!(without_url_queries("no url here"), "no url here");
        let error = config(
            "s3://b/f.json?endpoint=http://user:pw@minio:9000",
            Cloud::S3,
        )
        .expect_err("credentials in the endpoint");
        assert!(!error.to_string().contains("pw"), "{error}");
    }

    #[test]
    fn an_azure_source_needs_its_account() {
        let azure = config("azblob://container/f.json", Cloud::Azure).unwrap();
        let error = azure.store(&|_| None).expect_err("no account");
        assert!(
            error.to_string().contains("AZURE_STORAGE_ACCOUNT"),
            "{error}"
        );
    }
}
