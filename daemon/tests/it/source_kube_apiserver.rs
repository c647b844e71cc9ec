//! The kubernetes source against a real Kubernetes API server: `k8s.io/apiextensions-apiserver` v0.37.2
//! (the Kubernetes API server's CustomResourceDefinition half, built by `scripts/install-test-clients.sh`
//! from the Go module proxy) on a real etcd (Debian's `etcd-server`), both started here on free ports.
//! The OpenFeature `FeatureFlag` CRD is installed from its published shape (`core.openfeature.dev`,
//! `v1beta1`, namespaced, `spec.flagSpec`), and the daemon's kube-rs client reaches the server through a
//! kubeconfig with a client certificate, as in a cluster.
//!
//! One scenario, each step checked through a real client (EventStream and ResolveAll on the evaluation
//! port) for exactly the right changes: create, edit, delete (flags kept), recreate, the API server
//! restarted, and etcd compacted while the API server is down so the resumed watch finds its history
//! gone (410) and the source lists again. The fake API server of `source_kubernetes.rs` stays for the
//! faults a real one does not produce on demand (403, 500, a dropped watch).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};

use crate::clients::{free_port, workspace_root};
use crate::runtime_support::local_config;
use crate::source_kubernetes::{
    Clients, NAME, NS, color_spec, kubernetes_source, source_metric, wait_until,
};

/// How long the API server gets to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the daemon must stay quiet to show that nothing else changed.
const QUIET: Duration = Duration::from_millis(700);

fn tool(relative: &str) -> PathBuf {
    let dir = std::env::var_os("FLAGPOLE_TEST_CLIENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-clients"));
    let path = dir.join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-clients.sh",
        path.display()
    );
    path
}

/// The test's PKI: a CA, the API server's certificate for 127.0.0.1, and a client certificate in the
/// `system:masters` group (which the API server authorizes without asking anyone).
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "flagpole test cluster CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let issue = |names: Vec<String>, cn: &str, org: Option<&str>| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(org) = org {
            params
                .distinguished_name
                .push(DnType::OrganizationName, org);
        }
        let cert = params.signed_by(&key, &issuer).expect("certificate");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = issue(vec!["127.0.0.1".into()], "127.0.0.1", None);
    let (client_cert, client_key) = issue(Vec::new(), "flagpole-test", Some("system:masters"));
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write PKI file");
        path
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server-key.pem", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client-key.pem", &client_key),
    }
}

/// A kubeconfig for `server` with the client certificate, trusting the test CA.
fn write_kubeconfig(path: &Path, server: &str, pki: &Pki) {
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
         clusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority: {}\n\
         contexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\n    namespace: {NS}\n\
         users:\n- name: admin\n  user:\n    client-certificate: {}\n    client-key: {}\n",
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    std::fs::write(path, text).expect("write kubeconfig");
}

/// etcd and the API server, on free ports.
struct Cluster {
    dir: PathBuf,
    etcd: Child,
    etcd_port: u16,
    apiserver: Option<Child>,
    api_port: u16,
    kubeconfig: PathBuf,
    pki: Pki,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let pki = make_pki(dir);
        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let etcd = Command::new(tool_etcd())
            .args(["--name", "test", "--data-dir"])
            .arg(dir.join("etcd"))
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{etcd_port}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{etcd_port}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
                "--initial-cluster",
                &format!("test=http://127.0.0.1:{peer_port}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("etcd.log")).unwrap())
            .spawn()
            .expect("start etcd");
        let kubeconfig = dir.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &format!("https://127.0.0.1:{api_port}"), &pki);
        let mut cluster = Cluster {
            dir: dir.to_owned(),
            etcd,
            etcd_port,
            apiserver: None,
            api_port,
            kubeconfig,
            pki,
        };
        cluster.wait("etcd answers", || {
            cluster_etcd_revision(etcd_port).is_some()
        });
        cluster.start_apiserver();
        cluster
    }

    fn start_apiserver(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("apiserver.log"))
            .unwrap();
        // The server delegates authentication and authorization to "the core API server"; pointed at
        // itself, a client certificate of system:masters needs neither (no token reviews, no access
        // reviews), which is all the test uses. It has no core API (Services, Namespaces), so the
        // admission plugins and the priority-and-fairness filter that need one are off.
        let child = Command::new(tool("kube-apiserver/apiextensions-apiserver"))
            .args(["--etcd-servers", &format!("http://127.0.0.1:{}", self.etcd_port)])
            .args(["--bind-address", "127.0.0.1", "--secure-port", &self.api_port.to_string()])
            .arg("--tls-cert-file")
            .arg(&self.pki.server_cert)
            .arg("--tls-private-key-file")
            .arg(&self.pki.server_key)
            .arg("--client-ca-file")
            .arg(&self.pki.ca)
            .arg("--authentication-kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--authorization-kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "--authentication-skip-lookup",
                "--enable-priority-and-fairness=false",
                "--disable-admission-plugins",
                "NamespaceLifecycle,MutatingAdmissionPolicy,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,ValidatingAdmissionWebhook",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the API server");
        self.apiserver = Some(child);
        self.wait("the API server serves apiextensions.k8s.io", || {
            self.request("GET", "/apis/apiextensions.k8s.io/v1", None).0 == 200
        });
    }

    fn stop_apiserver(&mut self) {
        if let Some(mut child) = self.apiserver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + START_TIMEOUT;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {START_TIMEOUT:?}; API server log:\n{}",
                crate::clients::tail(
                    &std::fs::read_to_string(self.dir.join("apiserver.log")).unwrap_or_default(),
                    20
                )
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A request with the client certificate: (status, body).
    fn request(&self, method: &str, path: &str, body: Option<(&str, &Value)>) -> (u16, Value) {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
            .arg("--cacert")
            .arg(&self.pki.ca)
            .arg("--cert")
            .arg(&self.pki.client_cert)
            .arg("--key")
            .arg(&self.pki.client_key)
            .args(["-X", method]);
        if let Some((content_type, body)) = body {
            command
                .args(["-H", &format!("content-type: {content_type}")])
                .args(["--data-binary", &body.to_string()]);
        }
        let output = command
            .arg(format!("https://127.0.0.1:{}{path}", self.api_port))
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&output.stdout);
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            status.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }

    fn install_crd(&self) {
        let (status, body) = self.request(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            Some(("application/json", &feature_flag_crd())),
        );
        assert_eq!(status, 201, "CRD not created: {body}");
        self.wait("the FeatureFlag resource is served", || {
            self.request("GET", &format!("{}/featureflags", collection()), None)
                .0
                == 200
        });
    }

    fn put_flags(&self, name: &str, flag_spec: Value) {
        let object = json!({
            "apiVersion": "core.openfeature.dev/v1beta1",
            "kind": "FeatureFlag",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"flagSpec": flag_spec},
        });
        let path = format!("{}/featureflags/{name}", collection());
        let (status, body) = match self.request("GET", &path, None).0 {
            200 => self.request(
                "PATCH",
                &path,
                Some((
                    "application/merge-patch+json",
                    &json!({"spec": object["spec"]}),
                )),
            ),
            _ => self.request(
                "POST",
                &format!("{}/featureflags", collection()),
                Some(("application/json", &object)),
            ),
        };
        assert!(matches!(status, 200 | 201), "{name} not written: {body}");
    }

    fn delete_flags(&self, name: &str) {
        let (status, body) = self.request(
            "DELETE",
            &format!("{}/featureflags/{name}", collection()),
            None,
        );
        assert_eq!(status, 200, "{name} not deleted: {body}");
    }

    /// Compacts etcd's history up to now (what etcd does every few minutes in a cluster).
    fn compact_etcd(&self) -> i64 {
        let revision = cluster_etcd_revision(self.etcd_port).expect("etcd revision");
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-X", "POST"])
            .args([
                "-d",
                &json!({"revision": revision.to_string(), "physical": true}).to_string(),
            ])
            .arg(format!(
                "http://127.0.0.1:{}/v3/kv/compaction",
                self.etcd_port
            ))
            .output()
            .expect("run curl");
        assert!(output.status.success(), "etcd compaction failed");
        revision
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_apiserver();
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}

fn tool_etcd() -> PathBuf {
    let etcd = PathBuf::from("/usr/bin/etcd");
    assert!(
        etcd.exists(),
        "etcd is missing: run scripts/install-test-clients.sh (Debian's etcd-server)"
    );
    etcd
}

/// etcd's current revision, through its JSON gateway.
fn cluster_etcd_revision(port: u16) -> Option<i64> {
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "2",
            "-X",
            "POST",
            "-d",
            r#"{"key":"AA=="}"#,
        ])
        .arg(format!("http://127.0.0.1:{port}/v3/kv/range"))
        .output()
        .ok()?;
    let answer: Value = serde_json::from_slice(&output.stdout).ok()?;
    answer["header"]["revision"].as_str()?.parse().ok()
}

fn collection() -> String {
    format!("/apis/core.openfeature.dev/v1beta1/namespaces/{NS}")
}

/// The OpenFeature Operator's `FeatureFlag` CRD: its group, version, names and scope, and the shape of
/// `spec.flagSpec` (flags keyed by name with state, variants, default variant, targeting; `$evaluators`).
fn feature_flag_crd() -> Value {
    let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let flag = json!({
        "type": "object",
        "required": ["state", "variants"],
        "properties": {
            "state": {"type": "string", "enum": ["ENABLED", "DISABLED"]},
            "variants": open,
            "defaultVariant": {"type": "string"},
            "targeting": open,
            "metadata": open,
        },
    });
    let flag_spec = json!({
        "type": "object",
        "required": ["flags"],
        "properties": {
            "$evaluators": open,
            "metadata": open,
            "flags": {"type": "object", "additionalProperties": flag},
        },
    });
    let schema = json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": {"flagSpec": flag_spec}},
            "status": open,
        },
    });
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "featureflags.core.openfeature.dev"},
        "spec": {
            "group": "core.openfeature.dev",
            "scope": "Namespaced",
            "names": {
                "kind": "FeatureFlag",
                "listKind": "FeatureFlagList",
                "plural": "featureflags",
                "singular": "featureflag",
                "shortNames": ["ff"],
            },
            "versions": [{
                "name": "v1beta1",
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": schema},
            }],
        },
    })
}

impl Clients {
    /// No `configuration_change` arrives within [`QUIET`] (keep-alives are fine).
    async fn stays_quiet(&mut self, after: &str) {
        let deadline = tokio::time::Instant::now() + QUIET;
        loop {
            match tokio::time::timeout_at(deadline, self.next_event()).await {
                Err(_) => return,
                Ok(event) => assert_ne!(
                    event, "configuration_change",
                    "an extra change after {after}"
                ),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_featureflag_source_follows_a_real_api_server_through_restarts_and_compaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(dir.path());
    cluster.install_crd();
    cluster.put_flags(NAME, color_spec("red"));

    let config = local_config(vec![kubernetes_source(&cluster.kubeconfig, false)]);
    let daemon = flagpole::run(config)
        .await
        .expect("the daemon starts on the FeatureFlag");
    let mut clients = Clients::connect(&daemon).await;
    assert_eq!(clients.color().await.as_deref(), Some("red"));

    // Edit: one change.
    cluster.put_flags(NAME, color_spec("blue"));
    clients.configuration_change().await;
    assert_eq!(clients.color().await.as_deref(), Some("blue"));
    clients.stays_quiet("an edit").await;

    // Another object in the namespace: nothing.
    cluster.put_flags("someone-else", color_spec("black"));
    clients.stays_quiet("another object's creation").await;

    // Delete: the flags stay (as in flagd) and the source reports the failure; recreate: one change.
    cluster.delete_flags(NAME);
    wait_until("the deletion is reported", async || {
        source_metric(&daemon, "flagpole_source_consecutive_failures").unwrap_or(0) > 0
    })
    .await;
    assert_eq!(clients.color().await.as_deref(), Some("blue"));
    cluster.put_flags(NAME, color_spec("green"));
    clients.configuration_change().await;
    assert_eq!(clients.color().await.as_deref(), Some("green"));
    clients.stays_quiet("the recreation").await;

    // The API server restarts: flags kept, no change; an edit afterwards arrives once.
    cluster.stop_apiserver();
    assert_eq!(clients.color().await.as_deref(), Some("green"));
    cluster.start_apiserver();
    cluster.put_flags(NAME, color_spec("yellow"));
    clients.configuration_change().await;
    assert_eq!(clients.color().await.as_deref(), Some("yellow"));
    clients.stays_quiet("the restart").await;

    // History gone: writes to another object move etcd on, the API server goes down, etcd is compacted
    // past everything the daemon saw, and the API server comes back with a fresh watch cache. The
    // daemon's resumed watch gets 410 and lists again; the list shows our object unchanged (no change
    // event), then an edit arrives once.
    for i in 0..5 {
        cluster.put_flags("someone-else", color_spec(&format!("shade-{i}")));
    }
    cluster.stop_apiserver();
    let compacted = cluster.compact_etcd();
    assert!(compacted > 0);
    cluster.start_apiserver();
    wait_until("the expired watch is listed again", async || {
        source_metric(&daemon, "flagpole_source_relists_total").unwrap_or(0) > 0
    })
    .await;
    clients.stays_quiet("the re-list").await;
    assert_eq!(clients.color().await.as_deref(), Some("yellow"));
    cluster.put_flags(NAME, color_spec("purple"));
    clients.configuration_change().await;
    assert_eq!(clients.color().await.as_deref(), Some("purple"));
    clients.stays_quiet("the edit after the re-list").await;

    daemon.shutdown().await.expect("clean shutdown");
}
