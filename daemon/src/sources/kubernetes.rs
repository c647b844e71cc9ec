//! A kubernetes source: one `FeatureFlag` resource (`core.openfeature.dev/v1beta1`, the OpenFeature
//! Operator's custom resource), watched through the Kubernetes API with kube-rs.
//!
//! What it owns: the typed configuration ([`KubernetesConfig`], from `core.openfeature.dev/NAMESPACE/NAME`
//! or `provider: kubernetes` with `uri: NAMESPACE/NAME`), the API client (the `kubeconfig` file of the
//! source when given, else `KUBECONFIG`, else the in-cluster service account, else `~/.kube/config`), the
//! first read of the object, and the watch: kube's runtime watcher restricted to that one object by the
//! field selector `metadata.name=NAME`. The watcher lists, then watches from the list's resourceVersion;
//! a watch that ends is resumed from the last resourceVersion seen, and an expired one (410 Gone, routine
//! after etcd compacts its history; not counted as a failure) is replaced by a fresh list. Failed
//! requests are retried after [`BACKOFF_FIRST`], doubling up to [`BACKOFF_CEILING`], with up to a quarter
//! added at random so that a fleet of sidecars does not retry in step against a recovering API server;
//! the delays start over once an event arrives. A request silent for [`READ_TIMEOUT`] is abandoned.
//!
//! Each added or modified object with a new resourceVersion has its `spec.flagSpec` (`flags`, optional
//! `$evaluators` and `metadata`) serialized to JSON and loaded by the engine exactly as a flag file; a
//! SHA-1 of that JSON skips objects whose flags did not change (a re-list, a label edit). A flag spec that
//! does not load is logged and counted, and the source keeps its last good flags.
//!
//! A deleted object keeps its last flags, as in flagd: the deletion is logged and counted as a failure
//! of the source (`/readyz` and `/metrics` show it until the object is back), and a re-created object
//! is loaded as soon as it appears. The first read failing (API server unreachable, object missing,
//! access forbidden) is a startup error naming the source, as in flagd, unless the source is `lazy`:
//! then the daemon starts, and this source's readiness latch is released by its first good flag spec.
//! A client that cannot be configured at all (no kubeconfig, not in a cluster) fails the start even for
//! a lazy source, since waiting cannot fix it.
//!
//! What it does not do: watch several objects or whole namespaces (one source is one object, as in flagd),
//! read other resources of the operator (`FeatureFlagSource`), or write anything back (no status, no
//! events, no finalizers).

use crate::error_chain;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flagpole_engine::Format;
use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use kube::{Api, Client, ResourceExt};
use sha1::{Digest, Sha1};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{PublishError, RemoteOptions, SourceConfigError, SourceContext, SourceError, Wording};

/// Wording of a good load's log lines.
const WORDING: Wording = Wording {
    violation: "FeatureFlag flag spec has a schema violation",
    loaded: "loaded flags from FeatureFlag",
};

/// The `--uri` prefix of a kubernetes source (flagd's).
pub const URI_PREFIX: &str = "core.openfeature.dev/";

/// The API group of the `FeatureFlag` resource.
pub const GROUP: &str = "core.openfeature.dev";

/// The API version of the `FeatureFlag` resource read (the OpenFeature Operator's storage version).
pub const VERSION: &str = "v1beta1";

/// The kind of the resource.
pub const KIND: &str = "FeatureFlag";

/// The plural resource name, as in URLs and RBAC rules.
pub const PLURAL: &str = "featureflags";

/// How long the first read of the object (connecting included) may take before the start fails.
pub const FIRST_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a read on the API server connection may wait for data. kube sets none (a watch may be quiet
/// for minutes) and guards only watches, with the server-side watch timeout (290 s) plus 5 s; this bounds
/// a list request to an API server that accepted it and went silent, and is longer than that guard so a
/// healthy quiet watch is never cut.
pub const READ_TIMEOUT: Duration = Duration::from_secs(330);

/// The delay before the first retry after a failed list or watch request.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);

/// The longest delay between retries (the doubling stops here; client-go's reflector also caps at 30 s).
pub const BACKOFF_CEILING: Duration = Duration::from_secs(30);

/// The longest namespace or object name accepted (a DNS subdomain, which bounds every Kubernetes name).
pub const MAX_NAME_BYTES: usize = 253;

/// One kubernetes source, fully parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// The namespace of the `FeatureFlag`.
    pub namespace: String,
    /// The name of the `FeatureFlag`.
    pub name: String,
    /// `kubeconfig` (flagpole): the kubeconfig file to use instead of `KUBECONFIG`, the in-cluster
    /// service account or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// `lazy` (flagpole): start without the first read succeeding.
    pub lazy: bool,
}

impl KubernetesConfig {
    /// A `--uri` of the form `core.openfeature.dev/NAMESPACE/NAME`. Returns the source identity too
    /// (flagd's: `NAMESPACE/NAME`).
    pub fn from_uri(uri: &str) -> Result<(String, KubernetesConfig), SourceConfigError> {
        let config = KubernetesConfig::from_options(uri, RemoteOptions::default())?;
        Ok((config.identity(), config))
    }

    /// A `--sources` entry with `provider: kubernetes`: `uri` is `NAMESPACE/NAME` (flagd's form; a
    /// `core.openfeature.dev/` prefix is accepted too). The message of an error names the key at fault.
    pub fn from_options(
        uri: &str,
        options: RemoteOptions,
    ) -> Result<KubernetesConfig, SourceConfigError> {
        let rest = uri.strip_prefix(URI_PREFIX).unwrap_or(uri);
        let form = format!("{URI_PREFIX}NAMESPACE/NAME or NAMESPACE/NAME");
        let Some((namespace, name)) = rest.split_once('/') else {
            return Err(SourceConfigError::UriForm {
                uri: uri.to_owned(),
                form,
            });
        };
        for (what, part) in [("namespace", namespace), ("name", name)] {
            if !is_kubernetes_name(part) {
                return Err(SourceConfigError::NotAKubernetesName {
                    uri: uri.to_owned(),
                    form,
                    what,
                    part: part.to_owned(),
                    max: MAX_NAME_BYTES,
                });
            }
        }
        let kubeconfig = options
            .kubeconfig
            .filter(|path| !path.is_empty())
            .map(PathBuf::from);
        Ok(KubernetesConfig {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            kubeconfig,
            lazy: options.lazy.unwrap_or(false),
        })
    }

    /// `NAMESPACE/NAME`: the source identity and the name in messages.
    pub fn identity(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Builds the client configuration: the `kubeconfig` option, else `KUBECONFIG`, else in-cluster,
    /// else `~/.kube/config`.
    async fn client_config(&self) -> Result<kube::Config, KubernetesError> {
        let resource = self.identity();
        let options = KubeConfigOptions::default();
        let from_file = async |file: Kubeconfig, origin: String| {
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|error| KubernetesError::ClientConfig {
                    resource: resource.clone(),
                    message: format!("{origin}: {}", error_chain(&error)),
                })
        };
        if let Some(path) = &self.kubeconfig {
            let origin = format!("kubeconfig {}", path.display());
            let file =
                Kubeconfig::read_from(path).map_err(|error| KubernetesError::ClientConfig {
                    resource: resource.clone(),
                    message: format!("{origin}: {}", error_chain(&error)),
                })?;
            return from_file(file, origin).await;
        }
        match Kubeconfig::from_env() {
            Ok(Some(file)) => return from_file(file, "KUBECONFIG".to_owned()).await,
            Ok(None) => {}
            Err(error) => {
                return Err(KubernetesError::ClientConfig {
                    resource,
                    message: format!("KUBECONFIG: {}", error_chain(&error)),
                });
            }
        }
        match kube::Config::incluster() {
            Ok(config) => Ok(config),
            Err(in_cluster) => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|kubeconfig| KubernetesError::ClientConfig {
                    resource,
                    message: format!(
                        "KUBECONFIG is not set, the in-cluster configuration is not usable ({}), and \
                         ~/.kube/config is not usable ({})",
                        error_chain(&in_cluster),
                        error_chain(&kubeconfig)
                    ),
                }),
        }
    }
}

/// A DNS-subdomain-like name: what Kubernetes accepts for namespaces and custom resources, and nothing
/// that could change the meaning of the field selector or the URL path.
fn is_kubernetes_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NAME_BYTES
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// Why a kubernetes source could not read its `FeatureFlag`, or its flag spec did not load.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    /// No usable client configuration.
    #[error("kubernetes source {resource}: no Kubernetes client configuration: {message}")]
    ClientConfig {
        /// `NAMESPACE/NAME`.
        resource: String,
        /// Why, with the whole cause chain.
        message: String,
    },
    /// The client could not be built from the configuration (TLS settings, credentials).
    #[error("kubernetes source {resource}: cannot create the Kubernetes client: {message}")]
    Client {
        /// `NAMESPACE/NAME`.
        resource: String,
        /// Why, with the whole cause chain.
        message: String,
    },
    /// The object does not exist.
    #[error("kubernetes source {resource}: FeatureFlag {resource} not found ({GROUP}/{VERSION})")]
    NotFound {
        /// `NAMESPACE/NAME`.
        resource: String,
    },
    /// The API server refused the credentials or the access.
    #[error(
        "kubernetes source {resource}: access refused ({code}): {message} (the service account needs get, \
         list and watch on {PLURAL}.{GROUP} in namespace {namespace})"
    )]
    Forbidden {
        /// `NAMESPACE/NAME`.
        resource: String,
        /// The namespace.
        namespace: String,
        /// 401 or 403.
        code: u16,
        /// The API server's message.
        message: String,
    },
    /// Another error status from the API server.
    #[error("kubernetes source {resource}: the API server answered {code}: {message}")]
    Api {
        /// `NAMESPACE/NAME`.
        resource: String,
        /// The HTTP status.
        code: u16,
        /// The API server's message.
        message: String,
    },
    /// The API server could not be reached, or the exchange failed.
    #[error("kubernetes source {resource}: cannot reach the API server: {message}")]
    Unreachable {
        /// `NAMESPACE/NAME`.
        resource: String,
        /// Why, with the whole cause chain.
        message: String,
    },
    /// The first read took longer than [`FIRST_FETCH_TIMEOUT`].
    #[error(
        "kubernetes source {resource}: no answer from the API server within {FIRST_FETCH_TIMEOUT:?}"
    )]
    Timeout {
        /// `NAMESPACE/NAME`.
        resource: String,
    },
    /// The object has no `spec.flagSpec` object.
    #[error("kubernetes source {resource}: spec.flagSpec is missing or not an object")]
    NoFlagSpec {
        /// `NAMESPACE/NAME`.
        resource: String,
    },
    /// The engine's loading task failed (it panicked or was cancelled).
    #[error("kubernetes source {resource}: loading the flag spec failed: {message}")]
    Loader {
        /// `NAMESPACE/NAME`.
        resource: String,
        /// Why.
        message: String,
    },
    /// The flag spec did not load.
    #[error("kubernetes source {resource}: spec.flagSpec: {source}")]
    Load {
        /// `NAMESPACE/NAME`.
        resource: String,
        /// Why, with line and column of the serialized spec.
        #[source]
        source: flagpole_engine::LoadError,
    },
}

impl KubernetesError {
    /// Classifies a client error of a request about `config`'s object.
    fn from_client(config: &KubernetesConfig, error: &kube::Error) -> KubernetesError {
        let resource = config.identity();
        match error {
            kube::Error::Api(status) if status.code == 404 => {
                KubernetesError::NotFound { resource }
            }
            kube::Error::Api(status) if status.code == 401 || status.code == 403 => {
                KubernetesError::Forbidden {
                    resource,
                    namespace: config.namespace.clone(),
                    code: status.code,
                    message: status.message.clone(),
                }
            }
            kube::Error::Api(status) => KubernetesError::Api {
                resource,
                code: status.code,
                message: status.message.clone(),
            },
            other => KubernetesError::Unreachable {
                resource,
                message: error_chain(other),
            },
        }
    }

    /// The advice appended to a startup error: `lazy` helps when the API server or the object may come
    /// later, not when the client cannot be configured.
    pub fn lazy_hint(&self) -> &'static str {
        match self {
            KubernetesError::ClientConfig { .. } | KubernetesError::Client { .. } => "",
            _ => " (set \"lazy\": true on the source to start without it)",
        }
    }

    /// Whether the object was read and its content is at fault (not the connection).
    fn is_payload(&self) -> bool {
        matches!(
            self,
            KubernetesError::NoFlagSpec { .. }
                | KubernetesError::Load { .. }
                | KubernetesError::Loader { .. }
        )
    }
}

/// The `FeatureFlag` resource, for the dynamic API.
fn feature_flag_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// The delay before retry `failures` (0-based, since the last event), without jitter: [`BACKOFF_FIRST`]
/// doubling up to [`BACKOFF_CEILING`].
pub fn backoff_delay(failures: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1u32 << failures.min(16))
        .min(BACKOFF_CEILING)
}

/// `delay` plus up to a quarter of it, at random.
fn with_jitter(delay: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // A fresh RandomState is randomly keyed: enough randomness to spread retries, with no extra crate.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let quarter = delay / 4;
    let nanos = u64::try_from(quarter.as_nanos()).unwrap_or(u64::MAX);
    delay + Duration::from_nanos(random.checked_rem(nanos).unwrap_or(0))
}

/// The watcher's retry delays. kube's own back-off wrapper resets on every item that is not an error,
/// which includes the marker the watcher emits before each list attempt: with a failing list it would
/// retry at the first delay forever. This one never resets itself; the source resets it (through the
/// shared counter) when an event arrives. It never gives up, so the watch is retried for as long as the
/// daemon runs.
#[derive(Debug, Clone, Default)]
struct WatchBackoff {
    failures: Arc<AtomicU32>,
}

impl WatchBackoff {
    fn reset_now(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed);
        Some(with_jitter(backoff_delay(failures)))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        // Reset by the source on real events only; see the type's documentation.
    }
}

/// One running kubernetes source.
pub struct KubernetesSource {
    config: KubernetesConfig,
    context: SourceContext,
    /// The resourceVersion of the object last applied (`None` after a deletion).
    last_version: Option<String>,
    /// SHA-1 of the last flag spec (accepted or not; a missing spec hashes as empty text): an unchanged
    /// spec is skipped.
    last_hash: Option<[u8; 20]>,
    /// Whether that last flag spec was rejected (so an unchanged one is neither a success nor counted
    /// again).
    last_rejected: bool,
    /// Whether the object existed at the last event (to log a deletion once).
    present: bool,
}

impl std::fmt::Debug for KubernetesSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesSource")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KubernetesSource {
    /// A source for `config`; nothing is read yet.
    pub fn new(config: KubernetesConfig, context: SourceContext) -> Self {
        KubernetesSource {
            config,
            context,
            last_version: None,
            last_hash: None,
            last_rejected: false,
            present: false,
        }
    }

    /// Builds the client, reads the object once (unless the source is lazy), then hands the source to a
    /// task that watches the object until `shutdown` is cancelled.
    pub async fn start(
        mut self,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, SourceError> {
        let fail = |error: KubernetesError| SourceError::Kubernetes(Box::new(error));
        let client = self.client().await.map_err(fail)?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(client, &self.config.namespace, &feature_flag_resource());
        if self.config.lazy {
            self.context
                .restore_last_good(WORDING, "the source is lazy")
                .await;
        } else {
            match self.first_fetch(&api).await {
                Ok(_) => {}
                // As for files and http (and flagd): an object whose spec does not load leaves the source
                // not ready; it does not stop the start.
                Err(error) if error.is_payload() => {
                    tracing::error!(%error, "rejected the FeatureFlag's first flag spec; the source is not ready");
                }
                Err(error) => self.context.fall_back(WORDING, error).await.map_err(fail)?,
            }
        }
        Ok(tokio::spawn(async move { self.watch(api, shutdown).await }))
    }

    /// The API client (the rustls client of kube, with ring as its crypto provider).
    async fn client(&self) -> Result<Client, KubernetesError> {
        let mut config = self.config.client_config().await?;
        config.read_timeout = Some(READ_TIMEOUT);
        // kube builds its rustls configuration from the process-wide provider; only ring is compiled in,
        // and installing it explicitly keeps that true whatever else enables another provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client::try_from(config).map_err(|error| KubernetesError::Client {
            resource: self.config.identity(),
            message: error_chain(&error),
        })
    }

    /// Reads the object once and applies it; records success or failure in the metrics.
    async fn first_fetch(&mut self, api: &Api<DynamicObject>) -> Result<Applied, KubernetesError> {
        let fetched =
            match tokio::time::timeout(FIRST_FETCH_TIMEOUT, api.get(&self.config.name)).await {
                Err(_) => Err(KubernetesError::Timeout {
                    resource: self.config.identity(),
                }),
                Ok(Err(error)) => Err(KubernetesError::from_client(&self.config, &error)),
                Ok(Ok(object)) => Ok(object),
            };
        let outcome = match fetched {
            Ok(object) => self.apply(object).await,
            Err(error) => Err(error),
        };
        self.record(&outcome);
        outcome
    }

    /// Follows the watcher's events until shutdown.
    async fn watch(mut self, api: Api<DynamicObject>, shutdown: CancellationToken) {
        let backoff = WatchBackoff::default();
        let selector = format!("metadata.name={}", self.config.name);
        let events = watch_stream(api, watcher::Config::default().fields(&selector))
            .backoff(backoff.clone());
        let mut events = std::pin::pin!(events);
        // Whether the object came in the list being read (a list without it means it is gone).
        let mut listed = false;
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                event = events.next() => event,
            };
            let Some(event) = event else {
                // The watcher never ends by itself, and the back-off never gives up.
                tracing::error!(resource = %self.config.identity(), "kubernetes watch ended; keeping the last flags");
                return;
            };
            match event {
                Ok(Event::Init) => listed = false,
                Ok(Event::InitApply(object)) => {
                    backoff.reset_now();
                    listed = true;
                    self.applied(object).await;
                }
                Ok(Event::Apply(object)) => {
                    backoff.reset_now();
                    self.applied(object).await;
                }
                Ok(Event::InitDone) => {
                    backoff.reset_now();
                    if !listed {
                        self.gone("is not in the list of its namespace");
                    }
                }
                Ok(Event::Delete(object)) => {
                    backoff.reset_now();
                    if object.name_any() == self.config.name {
                        self.gone("was deleted");
                    }
                }
                // The history the watch would resume from is gone (etcd compaction): routine, the watcher
                // lists again, and the list's outcome is what counts.
                Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                    tracing::debug!(resource = %self.config.identity(), message = %status.message, "kubernetes watch expired; listing again");
                    self.context.metrics.source_relisted(&self.context.identity);
                }
                Err(error) => {
                    tracing::warn!(resource = %self.config.identity(), error = %error_chain(&error), "kubernetes watch failed; keeping the last flags and retrying");
                    self.context
                        .metrics
                        .source_fetch_failed(&self.context.identity);
                }
            }
        }
    }

    /// An added or modified object: applied, logged and counted.
    async fn applied(&mut self, object: DynamicObject) {
        if object.name_any() != self.config.name {
            return;
        }
        let outcome = self.apply(object).await;
        if let Err(error) = &outcome {
            tracing::error!(%error, "rejected the FeatureFlag's flag spec; the source keeps its last good flags");
        }
        self.record(&outcome);
    }

    /// The object is gone: its flags stay (as in flagd), and the source reports the failure until it is back.
    fn gone(&mut self, how: &str) {
        if self.present {
            tracing::warn!(resource = %self.config.identity(), "FeatureFlag {how}; keeping its last flags until it is back");
        } else {
            tracing::info!(resource = %self.config.identity(), "FeatureFlag {how}; waiting for it to be created");
        }
        self.present = false;
        self.last_version = None;
        self.context
            .metrics
            .source_fetch_failed(&self.context.identity);
    }

    /// Records an applied object in the per-source metrics.
    fn record(&self, outcome: &Result<Applied, KubernetesError>) {
        let (metrics, identity) = (&self.context.metrics, &self.context.identity);
        match outcome {
            Ok(Applied::Loaded | Applied::Unchanged) => metrics.source_fetch_succeeded(identity),
            Ok(Applied::StillRejected) => {}
            Err(_) => metrics.source_fetch_failed(identity),
        }
    }

    /// What an unchanged object means: a success, unless its spec was rejected before.
    fn unchanged(&self) -> Applied {
        if self.last_rejected {
            Applied::StillRejected
        } else {
            Applied::Unchanged
        }
    }

    /// Loads the object's flag spec and, when it changed, replaces this source's flags.
    async fn apply(&mut self, object: DynamicObject) -> Result<Applied, KubernetesError> {
        let resource = self.config.identity();
        self.present = true;
        let version = object.resource_version();
        if version.is_some() && version == self.last_version {
            tracing::debug!(%resource, "FeatureFlag resourceVersion unchanged");
            return Ok(self.unchanged());
        }
        self.last_version = version;
        let spec = match object.data.pointer("/spec/flagSpec") {
            Some(spec @ serde_json::Value::Object(_)) => Some(spec.to_string()),
            _ => None,
        };
        let hash: [u8; 20] = Sha1::digest(spec.as_deref().unwrap_or_default().as_bytes()).into();
        if self.last_hash == Some(hash) {
            tracing::debug!(%resource, "FeatureFlag flag spec unchanged");
            return Ok(self.unchanged());
        }
        self.last_hash = Some(hash);
        self.last_rejected = true;
        let Some(spec) = spec else {
            self.context.metrics.source_rejected(&self.context.identity);
            return Err(KubernetesError::NoFlagSpec { resource });
        };
        self.context
            .publish(WORDING, spec, Format::Json)
            .await
            .map_err(|error| match error {
                PublishError::Load(source) => KubernetesError::Load { resource, source },
                error @ (PublishError::NotUtf8(_) | PublishError::Aborted(_)) => {
                    KubernetesError::Loader {
                        resource,
                        message: error.to_string(),
                    }
                }
            })?;
        self.last_rejected = false;
        Ok(Applied::Loaded)
    }
}

/// What applying an object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// Its flag spec replaced this source's flags.
    Loaded,
    /// Same resourceVersion or same flag spec as the last good one: nothing to do.
    Unchanged,
    /// Same resourceVersion or same flag spec as the last one, which was rejected: still rejected, not
    /// counted again.
    StillRejected,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_forms() {
        let parsed = KubernetesConfig::from_uri("core.openfeature.dev/flags-ns/my-flags");
        assert!(
            parsed
                .as_ref()
                .is_ok_and(|(identity, c)| identity == "flags-ns/my-flags"
                    && c.namespace == "flags-ns"
                    && c.name == "my-flags"
                    && !c.lazy
                    && c.kubeconfig.is_none()),
            "{parsed:?}"
        );
        for bad in [
            "core.openfeature.dev/ns",
            "core.openfeature.dev/ns/",
            "core.openfeature.dev//name",
            "core.openfeature.dev/ns/a/b",
            "core.openfeature.dev/ns/Name",
            "core.openfeature.dev/ns/a,metadata.namespace=x",
        ] {
            assert!(KubernetesConfig::from_uri(bad).is_err(), "{bad}");
        }
        let long = format!("core.openfeature.dev/ns/{}", "a".repeat(MAX_NAME_BYTES + 1));
        assert!(KubernetesConfig::from_uri(&long).is_err());
    }

    #[test]
    fn sources_entries_take_namespace_slash_name_and_the_flagpole_keys() {
        let options = RemoteOptions {
            kubeconfig: Some("/etc/kube/config".into()),
            lazy: Some(true),
            ..RemoteOptions::default()
        };
        let config = KubernetesConfig::from_options("ns/name", options);
        assert_eq!(
            config.ok(),
            Some(KubernetesConfig {
                namespace: "ns".into(),
                name: "name".into(),
                kubeconfig: Some(PathBuf::from("/etc/kube/config")),
                lazy: true,
            })
        );
        let prefixed = KubernetesConfig::from_options(
            "core.openfeature.dev/ns/name",
            RemoteOptions::default(),
        );
        assert_eq!(
            prefixed.map(|c| c.identity()).ok().as_deref(),
            Some("ns/name")
        );
    }

    #[test]
    fn backoff_doubles_to_the_ceiling_with_at_most_a_quarter_of_jitter() {
        let delays: Vec<u64> = (0..8).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_CEILING);
        let mut backoff = WatchBackoff::default();
        for expected in [1, 2, 4, 8, 16, 30, 30] {
            let base = Duration::from_secs(expected);
            let delay = backoff.next();
            assert!(
                delay.is_some_and(|d| d >= base && d <= base + base / 4),
                "{delay:?} for {base:?}"
            );
        }
        // kube's reset (on any item) does nothing; the source's reset starts over.
        backoff.reset();
        assert!(backoff.next().is_some_and(|d| d >= BACKOFF_CEILING));
        backoff.reset_now();
        assert!(backoff.next().is_some_and(|d| d < BACKOFF_FIRST * 2));
    }

    #[test]
    fn client_errors_are_classified() {
        let config = KubernetesConfig::from_options("ns/name", RemoteOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let status = |code: u16| {
            kube::Error::Api(Box::new(
                kube::core::Status::failure("refused", "Reason").with_code(code),
            ))
        };
        assert!(matches!(
            KubernetesError::from_client(&config, &status(404)),
            KubernetesError::NotFound { .. }
        ));
        let forbidden = KubernetesError::from_client(&config, &status(403));
        assert!(
            forbidden
                .to_string()
                .contains("get, list and watch on featureflags.core.openfeature.dev"),
            "{forbidden}"
        );
        assert!(matches!(
            KubernetesError::from_client(&config, &status(500)),
            KubernetesError::Api { code: 500, .. }
        ));
    }
}
