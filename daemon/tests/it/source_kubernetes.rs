//! The kubernetes source against a fake Kubernetes API server.
//!
//! There is no Kubernetes API server on these machines (no cluster, no container engine), so each test
//! starts its own fake one on `127.0.0.1:0` (plain http, and once https with a CA of its own, as a real
//! API server is reached), as kube-rs tests its own watcher against a mocked API: it serves the `FeatureFlag` resources of one namespace at
//! `/apis/core.openfeature.dev/v1beta1/namespaces/NS/featureflags` with the parts of the protocol a
//! client relies on. A `GET` of one object (404 `Status` when missing); a list, which returns a
//! `FeatureFlagList` with `metadata.resourceVersion`; `?watch=true`, which streams newline-delimited
//! `{"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR", "object": ...}` events after the requested
//! `resourceVersion` from an event history; and `fieldSelector=metadata.name=NAME`. The test can drop
//! every open watch, take the server down (500 on every request), expire the history so a resumed watch
//! gets the `ERROR` event with a 410 `Status` a real API server sends for a too-old resourceVersion (the
//! client must re-list), and refuse access (403). The daemon finds the fake server through a kubeconfig
//! file passed as the source's `kubeconfig` option, so parallel tests do not share `KUBECONFIG`.
//!
//! Every test asserts with real clients (ResolveAll and EventStream on the evaluation port, `/readyz`,
//! `/metrics`) and waits on conditions bounded by [`CHANGE_TIMEOUT`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use flagpole::Daemon;
use flagpole::config::{SourceConfig, SourceKind};
use flagpole::sources::RemoteOptions;
use flagpole::sources::kubernetes::KubernetesConfig;
use flagpole_proto::evaluation_v1 as v1;
use serde_json::{Value, json};
use tokio::time::{Instant, timeout};
use tonic::Streaming;

use crate::runtime_support::{
    CHANGE_TIMEOUT, evaluation_channel, file_source, http_get, local_config, one_flag,
    serve_router, serve_router_tls, test_certificates,
};

/// The namespace the tests use.
pub(crate) const NS: &str = "flags";

/// The FeatureFlag the daemon watches.
pub(crate) const NAME: &str = "my-flags";

/// The bearer token in the kubeconfig, checked by the fake server.
const TOKEN: &str = "test-token";

/// What kind of request the fake server saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    List,
    Watch,
}

/// One request to the fake server.
#[derive(Debug, Clone)]
struct Seen {
    verb: Verb,
    /// The `resourceVersion` query parameter.
    resource_version: Option<String>,
    /// The `fieldSelector` query parameter.
    field_selector: Option<String>,
    authorization: Option<String>,
    /// The status answered (200 for a watch answered with the 410 event).
    status: u16,
}

/// The fake API server's state: the objects of [`NS`] and the event history of the namespace.
#[derive(Debug, Default)]
struct Cluster {
    objects: BTreeMap<String, Value>,
    /// The last resourceVersion handed out (the namespace's etcd revision).
    revision: u64,
    /// (resourceVersion, event type, object), oldest first.
    history: Vec<(u64, &'static str, Value)>,
    /// A watch from a resourceVersion below this gets the 410 event (the history before it is gone).
    compacted_below: u64,
    /// Every request answers 500.
    down: bool,
    /// Every request answers 403.
    forbidden: bool,
    /// Open watches end when this moves on.
    drops: u64,
    seen: Vec<Seen>,
    /// Watches answered with the 410 event.
    expired_watches: usize,
}

#[derive(Clone)]
struct FakeApi {
    cluster: Arc<Mutex<Cluster>>,
    /// Bumped after every change, so that open watches look at the history again.
    changed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl FakeApi {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the state, then wakes the open watches.
    fn change<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> T {
        let out = f(&mut self.lock());
        self.changed.send_modify(|n| *n += 1);
        out
    }

    /// Creates or replaces `name` with this flag spec; returns the new resourceVersion.
    fn put(&self, name: &str, flag_spec: Value) -> u64 {
        self.change(|c| c.put(name, json!({ "flagSpec": flag_spec })))
    }

    /// Replaces `name`'s whole `spec` (to write an invalid one).
    fn put_spec(&self, name: &str, spec: Value) -> u64 {
        self.change(|c| c.put(name, spec))
    }

    fn delete(&self, name: &str) {
        self.change(|c| c.delete(name));
    }

    fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    fn count(&self, verb: Verb) -> usize {
        self.lock().seen.iter().filter(|s| s.verb == verb).count()
    }
}

impl Cluster {
    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    fn put(&mut self, name: &str, spec: Value) -> u64 {
        let revision = self.next_revision();
        let (kind, uid, generation) = match self.objects.get(name) {
            Some(old) => (
                "MODIFIED",
                old["metadata"]["uid"].clone(),
                old["metadata"]["generation"].as_u64().unwrap_or(0) + 1,
            ),
            None => ("ADDED", json!(format!("uid-{name}-{revision}")), 1),
        };
        let object = json!({
            "apiVersion": "core.openfeature.dev/v1beta1",
            "kind": "FeatureFlag",
            "metadata": {
                "name": name,
                "namespace": NS,
                "uid": uid,
                "generation": generation,
                "resourceVersion": revision.to_string(),
            },
            "spec": spec,
        });
        self.objects.insert(name.to_owned(), object.clone());
        self.history.push((revision, kind, object));
        revision
    }

    fn delete(&mut self, name: &str) {
        if let Some(mut object) = self.objects.remove(name) {
            let revision = self.next_revision();
            object["metadata"]["resourceVersion"] = json!(revision.to_string());
            self.history.push((revision, "DELETED", object));
        }
    }
}

/// A Kubernetes `Status` error body.
fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The name a `fieldSelector` asks for (only `metadata.name=NAME` is supported, as the source sends).
fn selected_name(selector: Option<&String>) -> Option<String> {
    selector.and_then(|s| s.strip_prefix("metadata.name=").map(str::to_owned))
}

/// Records the request and answers the failure modes; `None` means go on.
fn admit(
    api: &FakeApi,
    verb: Verb,
    namespace: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> (Option<Response>, u16) {
    let mut cluster = api.lock();
    let refusal = if cluster.down {
        Some((500, "InternalError", "the fake API server is down"))
    } else if cluster.forbidden {
        Some((403, "Forbidden", "featureflags is forbidden for this user"))
    } else if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v != format!("Bearer {TOKEN}"))
    {
        Some((401, "Unauthorized", "no or wrong bearer token"))
    } else if namespace != NS {
        Some((404, "NotFound", "no such namespace in the fake API server"))
    } else {
        None
    };
    let code = refusal.map_or(200, |(code, _, _)| code);
    cluster.seen.push(Seen {
        verb,
        resource_version: query.get("resourceVersion").cloned(),
        field_selector: query.get("fieldSelector").cloned(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        status: code,
    });
    (
        refusal.map(|(code, reason, message)| status(code, reason, message)),
        code,
    )
}

async fn get_one(
    State(api): State<FakeApi>,
    UrlPath((namespace, name)): UrlPath<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let (Some(refusal), _) = admit(&api, Verb::Get, &namespace, &query, &headers) {
        return refusal;
    }
    match api.lock().objects.get(&name) {
        Some(object) => (
            [(header::CONTENT_TYPE, "application/json")],
            object.to_string(),
        )
            .into_response(),
        None => status(
            404,
            "NotFound",
            &format!("featureflags.core.openfeature.dev \"{name}\" not found"),
        ),
    }
}

async fn list_or_watch(
    State(api): State<FakeApi>,
    UrlPath(namespace): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = if watch { Verb::Watch } else { Verb::List };
    if let (Some(refusal), _) = admit(&api, verb, &namespace, &query, &headers) {
        return refusal;
    }
    let name = selected_name(query.get("fieldSelector"));
    if !watch {
        let cluster = api.lock();
        let items: Vec<&Value> = cluster
            .objects
            .iter()
            .filter(|(key, _)| name.as_ref().is_none_or(|n| n == *key))
            .map(|(_, object)| object)
            .collect();
        let list = json!({
            "apiVersion": "core.openfeature.dev/v1beta1",
            "kind": "FeatureFlagList",
            "metadata": { "resourceVersion": cluster.revision.to_string() },
            "items": items,
        });
        return (
            [(header::CONTENT_TYPE, "application/json")],
            list.to_string(),
        )
            .into_response();
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let stream = WatchStream {
        api: api.clone(),
        changed: api.changed.subscribe(),
        cursor: from,
        name,
        bookmarks,
        generation: api.lock().drops,
        pending: VecDeque::new(),
        done: false,
    };
    let expired = {
        let mut cluster = api.lock();
        let expired = from < cluster.compacted_below;
        if expired {
            cluster.expired_watches += 1;
        }
        expired
    };
    let body = if expired {
        // What a real API server does for a too-old resourceVersion: 200, then one ERROR event.
        let event = json!({
            "type": "ERROR",
            "object": {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {from}"), "reason": "Expired", "code": 410,
            },
        });
        Body::from(format!("{event}\n"))
    } else {
        Body::from_stream(futures::stream::unfold(stream, WatchStream::next_chunk))
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// One open watch: sends the history after `cursor`, then waits for changes, until dropped.
struct WatchStream {
    api: FakeApi,
    changed: tokio::sync::watch::Receiver<u64>,
    cursor: u64,
    name: Option<String>,
    bookmarks: bool,
    /// The drop generation this watch was opened in.
    generation: u64,
    pending: VecDeque<Bytes>,
    done: bool,
}

impl WatchStream {
    async fn next_chunk(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some((Ok(chunk), self));
            }
            if self.done {
                return None;
            }
            {
                let cluster = self.api.lock();
                if cluster.drops != self.generation {
                    // The connection is dropped: the events not sent yet stay in the history.
                    return None;
                }
                for (revision, kind, object) in &cluster.history {
                    if *revision <= self.cursor {
                        continue;
                    }
                    let matches = self
                        .name
                        .as_ref()
                        .is_none_or(|n| object["metadata"]["name"] == json!(n));
                    let event = if matches {
                        Some(json!({ "type": kind, "object": object }))
                    } else if self.bookmarks {
                        // Another object changed: tell the client how far the history has moved.
                        Some(json!({
                            "type": "BOOKMARK",
                            "object": {
                                "apiVersion": "core.openfeature.dev/v1beta1", "kind": "FeatureFlag",
                                "metadata": { "resourceVersion": revision.to_string() },
                            },
                        }))
                    } else {
                        None
                    };
                    if let Some(event) = event {
                        self.pending.push_back(Bytes::from(format!("{event}\n")));
                    }
                    self.cursor = *revision;
                }
            }
            if self.pending.is_empty() && self.changed.changed().await.is_err() {
                self.done = true;
            }
        }
    }
}

/// The fake API server's routes and a handle on its state.
fn fake_api() -> (Router, FakeApi) {
    let (changed, _) = tokio::sync::watch::channel(0);
    let api = FakeApi {
        cluster: Arc::new(Mutex::new(Cluster::default())),
        changed: Arc::new(changed),
    };
    let router = Router::new()
        .route(
            "/apis/core.openfeature.dev/v1beta1/namespaces/{namespace}/featureflags",
            get(list_or_watch),
        )
        .route(
            "/apis/core.openfeature.dev/v1beta1/namespaces/{namespace}/featureflags/{name}",
            get(get_one),
        )
        .with_state(api.clone());
    (router, api)
}

/// Starts the fake API server over plain http; returns its address and a handle on its state.
async fn fake_api_server() -> (SocketAddr, FakeApi) {
    let (router, api) = fake_api();
    (serve_router(router).await, api)
}

/// Starts the fake API server over https, with a certificate for 127.0.0.1 signed by a fresh CA, as a
/// real API server is reached; returns its address, the state, and the CA certificate (PEM).
async fn fake_api_server_tls() -> (SocketAddr, FakeApi, String) {
    let certificates = test_certificates(&["127.0.0.1"]);
    let (router, api) = fake_api();
    let addr = serve_router_tls(router, &certificates).await;
    (addr, api, certificates.ca_pem)
}

/// Writes a kubeconfig for `server` (with the test's bearer token) into `dir`.
fn write_kubeconfig(dir: &Path, server: &str) -> PathBuf {
    write_kubeconfig_with_ca(dir, server, None)
}

/// Writes a kubeconfig for `server`, trusting `ca` (PEM) when given, into `dir`.
fn write_kubeconfig_with_ca(dir: &Path, server: &str, ca: Option<&str>) -> PathBuf {
    use base64::Engine;
    let path = dir.join("kubeconfig");
    let authority = ca.map_or_else(String::new, |pem| {
        format!(
            "    certificate-authority-data: {}\n",
            base64::engine::general_purpose::STANDARD.encode(pem)
        )
    });
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
         clusters:\n- name: fake\n  cluster:\n    server: {server}\n{authority}\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {NS}\n\
         users:\n- name: fake\n  user:\n    token: {TOKEN}\n"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

pub(crate) fn kubernetes_source(kubeconfig: &Path, lazy: bool) -> SourceConfig {
    let options = RemoteOptions {
        kubeconfig: Some(kubeconfig.to_string_lossy().into_owned()),
        lazy: Some(lazy),
        ..RemoteOptions::default()
    };
    match KubernetesConfig::from_options(&format!("{NS}/{NAME}"), options) {
        Ok(config) => SourceConfig {
            identity: Arc::from(config.identity()),
            kind: SourceKind::Kubernetes(Box::new(config)),
        },
        Err(message) => panic!("bad kubernetes source: {message}"),
    }
}

/// A flag spec with one string flag `color` whose default variant has value `value`.
pub(crate) fn color_spec(value: &str) -> Value {
    json!({
        "flags": {
            "color": {
                "state": "ENABLED",
                "variants": { "chosen": value, "other": "grey" },
                "defaultVariant": "chosen",
            },
        },
        "$evaluators": { "unused": { "in": ["x", ["x"]] } },
        "metadata": { "owner": "team-flags" },
    })
}

/// The evaluation-port clients of one daemon.
pub(crate) struct Clients {
    service: v1::service_client::ServiceClient<tonic::transport::Channel>,
    events: Streaming<v1::EventStreamResponse>,
}

impl Clients {
    pub(crate) async fn connect(daemon: &Daemon) -> Clients {
        let channel = evaluation_channel(daemon).await;
        let mut service = v1::service_client::ServiceClient::new(channel);
        let events = service
            .event_stream(v1::EventStreamRequest {})
            .await
            .expect("EventStream")
            .into_inner();
        let mut clients = Clients { service, events };
        assert_eq!(clients.next_event().await, "provider_ready");
        clients
    }

    pub(crate) async fn next_event(&mut self) -> String {
        match timeout(CHANGE_TIMEOUT, self.events.message()).await {
            Ok(Ok(Some(message))) => message.r#type,
            other => panic!("no event: {other:?}"),
        }
    }

    /// Waits for the next `configuration_change` (keep-alives are skipped).
    pub(crate) async fn configuration_change(&mut self) {
        let deadline = Instant::now() + CHANGE_TIMEOUT;
        while self.next_event().await != "configuration_change" {
            assert!(Instant::now() < deadline, "no configuration_change");
        }
    }

    /// `color` as ResolveAll returns it.
    pub(crate) async fn color(&mut self) -> Option<String> {
        self.string("color").await
    }

    /// The string flag `key` as ResolveAll returns it.
    async fn string(&mut self, key: &str) -> Option<String> {
        let all = self
            .service
            .resolve_all(v1::ResolveAllRequest { context: None })
            .await
            .expect("ResolveAll")
            .into_inner();
        match all.flags.get(key)?.value.as_ref()? {
            v1::any_flag::Value::StringValue(text) => Some(text.clone()),
            other => panic!("{key} is not a string: {other:?}"),
        }
    }
}

/// A sample of `metric{source="NS/NAME"}`, if present.
pub(crate) fn source_metric(daemon: &Daemon, metric: &str) -> Option<i64> {
    let prefix = format!("{metric}{{source=\"{NS}/{NAME}\"}} ");
    daemon
        .metrics()
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.parse().ok()))
}

/// Waits until `condition` holds; fails after [`CHANGE_TIMEOUT`] with `what`.
pub(crate) async fn wait_until(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `/readyz` status and this source's line of its body.
async fn readyz(daemon: &Daemon) -> (u16, String) {
    let (code, _, body) = http_get(daemon.addrs().management, "/readyz").await;
    let line = body
        .lines()
        .find(|l| l.starts_with(&format!("source {NS}/{NAME}:")))
        .unwrap_or_default()
        .to_owned();
    (code, line)
}

async fn start(sources: Vec<SourceConfig>) -> Daemon {
    match flagpole::run(local_config(sources)).await {
        Ok(daemon) => daemon,
        Err(error) => panic!("daemon did not start: {error}"),
    }
}

#[tokio::test]
async fn featureflag_add_update_delete_and_recreate_reach_event_stream_clients() {
    let (addr, api) = fake_api_server().await;
    api.put(NAME, color_spec("red"));
    // Another FeatureFlag in the namespace: never loaded, only moves the watch on (bookmarks).
    api.put("other-flags", color_spec("not-mine"));
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = write_kubeconfig(dir.path(), &format!("http://{addr}"));
    // A flag file next to it: the kubernetes source's troubles never touch its flags.
    let local = dir.path().join("local.json");
    std::fs::write(&local, one_flag("local", "from-file")).expect("write flags");
    let daemon = start(vec![
        file_source(&local),
        kubernetes_source(&kubeconfig, false),
    ])
    .await;

    // Add: the object's flags are served as soon as the daemon has started.
    assert!(daemon.readiness().is_ready());
    let mut clients = Clients::connect(&daemon).await;
    assert_eq!(clients.color().await.as_deref(), Some("red"));
    let first = api.seen();
    assert_eq!(first.first().map(|s| s.verb), Some(Verb::Get));
    assert!(
        first
            .iter()
            .all(|s| s.authorization.as_deref() == Some("Bearer test-token")),
        "the kubeconfig's credentials are used: {first:?}"
    );
    wait_until("the watch to start", async || api.count(Verb::Watch) >= 1).await;
    assert!(
        api.seen()
            .iter()
            .filter(|s| s.verb != Verb::Get)
            .all(|s| s.field_selector.as_deref() == Some("metadata.name=my-flags")),
        "list and watch are restricted to the one object: {:?}",
        api.seen()
    );

    // Update: a new value and a configuration_change event.
    api.put(NAME, color_spec("blue"));
    clients.configuration_change().await;
    assert_eq!(clients.color().await.as_deref(), Some("blue"));

    // A new resourceVersion with the same flag spec (a label edit) is not a reload; the other object's
    // changes are not either. The next real change is reloaded exactly once.
    let reloads = source_metric(&daemon, "flagpole_source_reloads_total");
    api.put(NAME, color_spec("blue"));
    api.put("other-flags", color_spec("still-not-mine"));
    api.put(NAME, color_spec("green"));
    clients.configuration_change().await;
    assert_eq!(clients.color().await.as_deref(), Some("green"));
    assert_eq!(
        source_metric(&daemon, "flagpole_source_reloads_total"),
        reloads.map(|n| n + 1)
    );

    // An invalid flag spec (a variant map that is not a map), then a spec that is missing: both are
    // rejected and counted, and the last good flags stay.
    let rejected = source_metric(&daemon, "flagpole_source_rejected_payloads_total").unwrap_or(0);
    api.put(
        NAME,
        json!({ "flags": { "color": { "state": "ENABLED", "variants": "nope", "defaultVariant": "x" } } }),
    );
    api.put_spec(NAME, json!({ "notAFlagSpec": true }));
    wait_until("two rejected flag specs, each a failure", async || {
        source_metric(&daemon, "flagpole_source_rejected_payloads_total").unwrap_or(0)
            >= rejected + 2
            && source_metric(&daemon, "flagpole_source_consecutive_failures") == Some(2)
    })
    .await;
    assert_eq!(clients.color().await.as_deref(), Some("green"));
    let (code, line) = readyz(&daemon).await;
    assert_eq!(code, 200);
    assert!(line.contains("consecutive_failures=2 "), "{line}");
    // The source recovers with the next good spec.
    api.put(NAME, color_spec("purple"));
    clients.configuration_change().await;
    assert_eq!(clients.color().await.as_deref(), Some("purple"));

    // Delete: the flags stay (as in flagd), the source reports the failure, the daemon stays ready.
    api.delete(NAME);
    wait_until("the deletion to be reported", async || {
        readyz(&daemon).await.1.contains("consecutive_failures=1 ")
    })
    .await;
    assert_eq!(clients.color().await.as_deref(), Some("purple"));
    assert_eq!(clients.string("local").await.as_deref(), Some("from-file"));
    assert_eq!(readyz(&daemon).await.0, 200);
    assert!(daemon.readiness().is_ready());

    // Re-create: picked up by the same watch, with a change event, and the failure streak ends (recorded
    // right after the flags are published).
    api.put(NAME, color_spec("yellow"));
    clients.configuration_change().await;
    assert_eq!(clients.color().await.as_deref(), Some("yellow"));
    wait_until("the failure streak to end", async || {
        readyz(&daemon).await.1.contains("consecutive_failures=0 ")
    })
    .await;
    assert_eq!(
        api.count(Verb::List),
        1,
        "everything came over the first watch: {:?}",
        api.seen()
    );
    let _ = daemon.shutdown().await;
}

#[tokio::test]
async fn a_dropped_watch_resumes_and_an_expired_one_relists() {
    let (addr, api) = fake_api_server().await;
    api.put(NAME, color_spec("v1"));
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = write_kubeconfig(dir.path(), &format!("http://{addr}"));
    let daemon = start(vec![kubernetes_source(&kubeconfig, false)]).await;
    let mut clients = Clients::connect(&daemon).await;
    assert_eq!(clients.color().await.as_deref(), Some("v1"));
    wait_until("the watch to start", async || api.count(Verb::Watch) >= 1).await;

    // The connection drops cleanly: the watcher re-watches from the resourceVersion it has.
    let watches = api.count(Verb::Watch);
    api.change(|c| c.drops += 1);
    wait_until("a new watch", async || api.count(Verb::Watch) > watches).await;
    let revision = api.put(NAME, color_spec("v2"));
    clients.configuration_change().await;
    assert_eq!(clients.color().await.as_deref(), Some("v2"));

    // The API server goes away while the watch is down; an update made meanwhile arrives after it is back,
    // through a watch resumed from the last resourceVersion (no re-list).
    let lists = api.count(Verb::List);
    api.change(|c| {
        c.down = true;
        c.drops += 1;
    });
    wait_until("a refused request", async || {
        api.seen().iter().any(|s| s.status == 500)
    })
    .await;
    wait_until("the failure to be counted", async || {
        source_metric(&daemon, "flagpole_source_consecutive_failures").unwrap_or(0) >= 1
    })
    .await;
    api.put(NAME, color_spec("v3"));
    assert_eq!(clients.color().await.as_deref(), Some("v2"));
    api.change(|c| c.down = false);
    // The retries were spaced by the back-off (without it the watcher retries in a tight loop).
    let refused = api.seen().iter().filter(|s| s.status == 500).count();
    assert!(refused <= 3, "{refused} requests while the server was down");
    clients.configuration_change().await;
    assert_eq!(clients.color().await.as_deref(), Some("v3"));
    let resumed = api
        .seen()
        .iter()
        .rev()
        .find(|s| s.verb == Verb::Watch && s.status == 200)
        .and_then(|s| s.resource_version.clone());
    assert_eq!(resumed, Some(revision.to_string()));
    assert_eq!(api.count(Verb::List), lists, "resumed without a re-list");
    // The success is recorded right after the flags are published.
    wait_until("the failure streak to end", async || {
        source_metric(&daemon, "flagpole_source_consecutive_failures") == Some(0)
    })
    .await;

    // The history the watch would resume from is gone (410): the watcher lists again and finds the update
    // made in between.
    api.change(|c| {
        c.put(NAME, json!({ "flagSpec": color_spec("v4") }));
        c.compacted_below = c.revision;
        c.drops += 1;
    });
    clients.configuration_change().await;
    assert_eq!(clients.color().await.as_deref(), Some("v4"));
    assert_eq!(api.lock().expired_watches, 1);
    assert_eq!(api.count(Verb::List), lists + 1, "re-listed once");

    // A re-list that finds the same rejected object neither clears the failure nor counts it again. The
    // deletion after it is the marker that the re-listed object has been handled: 2 failures in all.
    let rejected = source_metric(&daemon, "flagpole_source_rejected_payloads_total").unwrap_or(0);
    api.put_spec(NAME, json!({ "flagSpec": "not an object" }));
    wait_until("the rejection", async || {
        source_metric(&daemon, "flagpole_source_consecutive_failures") == Some(1)
    })
    .await;
    api.change(|c| {
        c.compacted_below = c.revision + 1;
        c.drops += 1;
    });
    wait_until("the second re-list", async || {
        api.count(Verb::List) == lists + 2
    })
    .await;
    api.delete(NAME);
    wait_until("the deletion", async || {
        source_metric(&daemon, "flagpole_source_consecutive_failures").unwrap_or(0) >= 2
    })
    .await;
    assert_eq!(
        source_metric(&daemon, "flagpole_source_rejected_payloads_total"),
        Some(rejected + 1)
    );
    assert_eq!(
        source_metric(&daemon, "flagpole_source_consecutive_failures"),
        Some(2)
    );
    assert_eq!(clients.color().await.as_deref(), Some("v4"));
    let _ = daemon.shutdown().await;
}

#[tokio::test]
async fn a_missing_object_fails_the_start_unless_lazy_which_becomes_ready_when_it_appears() {
    let (addr, api) = fake_api_server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = write_kubeconfig(dir.path(), &format!("http://{addr}"));
    match flagpole::run(local_config(vec![kubernetes_source(&kubeconfig, false)])).await {
        Ok(_) => panic!("a missing FeatureFlag must fail the start"),
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.contains("kubernetes source flags/my-flags")
                    && text.contains("not found")
                    && text.contains("lazy"),
                "{text}"
            );
        }
    }

    let daemon = start(vec![kubernetes_source(&kubeconfig, true)]).await;
    assert!(!daemon.readiness().is_ready());
    // /readyz says why: the list came back without the object.
    wait_until("the missing object to be reported", async || {
        let (code, line) = readyz(&daemon).await;
        code == 412 && line.contains("last_success=never") && !line.contains("failures=0 ")
    })
    .await;
    let mut clients = Clients::connect(&daemon).await;
    assert_eq!(clients.color().await, None);
    api.put(NAME, color_spec("late"));
    clients.configuration_change().await;
    assert_eq!(clients.color().await.as_deref(), Some("late"));
    wait_until("ready", async || daemon.readiness().is_ready()).await;
    assert_eq!(readyz(&daemon).await.0, 200);
    let _ = daemon.shutdown().await;
}

#[tokio::test]
async fn an_invalid_first_flag_spec_starts_unready_and_a_fixed_one_makes_it_ready() {
    let (addr, api) = fake_api_server().await;
    api.put(
        NAME,
        json!({ "flags": { "color": { "state": "ENABLED", "variants": [], "defaultVariant": "x" } } }),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = write_kubeconfig(dir.path(), &format!("http://{addr}"));
    // As for files and http: the object was read, so the start goes on; its spec did not load, so the
    // source is not ready.
    let daemon = start(vec![kubernetes_source(&kubeconfig, false)]).await;
    assert!(!daemon.readiness().is_ready());
    assert_eq!(
        source_metric(&daemon, "flagpole_source_rejected_payloads_total"),
        Some(1)
    );
    let mut clients = Clients::connect(&daemon).await;
    assert_eq!(clients.color().await, None);
    api.put(NAME, color_spec("fixed"));
    clients.configuration_change().await;
    assert_eq!(clients.color().await.as_deref(), Some("fixed"));
    wait_until("ready", async || daemon.readiness().is_ready()).await;
    // The watcher's first list saw the rejected object again: not counted twice.
    assert_eq!(
        source_metric(&daemon, "flagpole_source_rejected_payloads_total"),
        Some(1)
    );
    let _ = daemon.shutdown().await;
}

#[tokio::test]
async fn unreachable_forbidden_and_unconfigured_are_clear_startup_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start_error =
        async |source: SourceConfig| match flagpole::run(local_config(vec![source])).await {
            Ok(_) => panic!("the start must fail"),
            Err(error) => error.to_string(),
        };

    // Nothing listens on the port.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let unreachable = write_kubeconfig(dir.path(), &format!("http://{closed}"));
    let text = start_error(kubernetes_source(&unreachable, false)).await;
    assert!(
        text.contains("flags/my-flags")
            && text.contains("cannot reach the API server")
            && text.contains("lazy"),
        "{text}"
    );

    // Access refused: the message names the permissions needed.
    let (addr, api) = fake_api_server().await;
    api.put(NAME, color_spec("secret"));
    api.lock().forbidden = true;
    let sub = dir.path().join("forbidden");
    std::fs::create_dir(&sub).expect("mkdir");
    let forbidden = write_kubeconfig(&sub, &format!("http://{addr}"));
    let text = start_error(kubernetes_source(&forbidden, false)).await;
    assert!(
        text.contains("403")
            && text.contains("get, list and watch on featureflags.core.openfeature.dev"),
        "{text}"
    );

    // A kubeconfig that is not there: no client at all, and `lazy` would not help, so it is not offered.
    let missing = dir.path().join("no-such-kubeconfig");
    let text = start_error(kubernetes_source(&missing, true)).await;
    assert!(
        text.contains("no Kubernetes client configuration")
            && text.contains("no-such-kubeconfig")
            && !text.contains("lazy"),
        "{text}"
    );
}

#[tokio::test]
async fn featureflag_over_https_trusts_the_kubeconfig_ca_and_nothing_else() {
    let (addr, api, ca) = fake_api_server_tls().await;
    api.put(NAME, color_spec("tls-red"));
    let dir = tempfile::tempdir().expect("tempdir");
    let server = format!("https://{addr}");

    // Without the cluster's CA in the kubeconfig the server is not trusted: a start-up error.
    let untrusted = write_kubeconfig_with_ca(dir.path(), &server, None);
    match flagpole::run(local_config(vec![kubernetes_source(&untrusted, false)])).await {
        Ok(_) => panic!("an untrusted API server must fail the start"),
        Err(error) => assert!(
            error.to_string().contains("invalid peer certificate")
                && error.to_string().contains("cannot reach the API server"),
            "{error}"
        ),
    }
    assert_eq!(
        api.seen().len(),
        0,
        "no request got through: {:?}",
        api.seen()
    );

    // With it: the first read, the list and the watch all go over TLS.
    let trusted = write_kubeconfig_with_ca(dir.path(), &server, Some(&ca));
    let daemon = start(vec![kubernetes_source(&trusted, false)]).await;
    let mut clients = Clients::connect(&daemon).await;
    assert_eq!(clients.color().await.as_deref(), Some("tls-red"));
    wait_until("the watch to start", async || api.count(Verb::Watch) >= 1).await;
    api.put(NAME, color_spec("tls-blue"));
    clients.configuration_change().await;
    assert_eq!(clients.color().await.as_deref(), Some("tls-blue"));
    let _ = daemon.shutdown().await;
}

#[test]
fn sources_entries_and_uris_configure_the_kubernetes_source() {
    use clap::Parser;
    use flagpole::config::{Action, Args, Invocation};
    let sources = r#"[{"uri": "team-a/flags", "provider": "kubernetes", "KubeConfig": "/etc/kube/config",
                       "lazy": true}]"#;
    let args = Args::try_parse_from([
        "flagpole",
        "start",
        "-f",
        "core.openfeature.dev/default/my-flags",
        "-s",
        sources,
    ])
    .expect("clap parse");
    let config = match Invocation::try_from(args).map(|i| i.action) {
        Ok(Action::Start(config)) => config,
        other => panic!("not a start config: {other:?}"),
    };
    let identities: Vec<&str> = config.sources.iter().map(|s| &*s.identity).collect();
    assert_eq!(identities, ["default/my-flags", "team-a/flags"]);
    let kinds: Vec<&KubernetesConfig> = config
        .sources
        .iter()
        .map(|s| match &s.kind {
            SourceKind::Kubernetes(k) => &**k,
            other => panic!("not kubernetes: {other:?}"),
        })
        .collect();
    assert_eq!(
        (kinds[0].namespace.as_str(), kinds[0].name.as_str()),
        ("default", "my-flags")
    );
    assert!(!kinds[0].lazy && kinds[0].kubeconfig.is_none());
    assert!(kinds[1].lazy);
    assert_eq!(
        kinds[1].kubeconfig.as_deref(),
        Some(Path::new("/etc/kube/config"))
    );
}

#[tokio::test]
async fn a_restart_while_the_api_server_is_down_serves_the_last_known_good_flags() {
    let (addr, api) = fake_api_server().await;
    api.put(NAME, color_spec("saved"));
    let dir = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("state dir");
    let kubeconfig = write_kubeconfig(dir.path(), &format!("http://{addr}"));
    let config = || {
        let mut config = local_config(vec![kubernetes_source(&kubeconfig, false)]);
        config.state_dir = Some(state.path().to_owned());
        config
    };
    let daemon = match flagpole::run(config()).await {
        Ok(daemon) => daemon,
        Err(error) => panic!("did not start: {error}"),
    };
    let _ = daemon.shutdown().await;

    api.change(|c| c.down = true);
    let daemon = match flagpole::run(config()).await {
        Ok(daemon) => daemon,
        Err(error) => panic!("must start from the last known good flags: {error}"),
    };
    assert!(daemon.readiness().is_ready());
    let mut clients = Clients::connect(&daemon).await;
    assert_eq!(clients.color().await.as_deref(), Some("saved"));
    assert_eq!(source_metric(&daemon, "flagpole_source_stale"), Some(1));
    assert!(readyz(&daemon).await.1.contains("stale_since="));

    api.change(|c| c.down = false);
    api.put(NAME, color_spec("fresh"));
    wait_until("the fresh flags", async || {
        clients.color().await.as_deref() == Some("fresh")
    })
    .await;
    wait_until("stale cleared", async || {
        source_metric(&daemon, "flagpole_source_stale") == Some(0)
    })
    .await;
    let _ = daemon.shutdown().await;
}
