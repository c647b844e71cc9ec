//! The fixture directory the daemon runs in: the testbed's flag files, the merged `flags/allFlags.json`, the
//! launchpad configs with free ports injected, and a TLS server certificate signed by the testbed CA.
//!
//! Layout (cwd of the daemon; the configs use paths relative to it, exactly as the testbed image does):
//!
//! ```text
//! rawflags/            copy of $FLAGD_TESTBED_DIR/flags/*.json
//! flags/allFlags.json  deep merge of every rawflags/*.json not starting with `selector-`
//! configs/NAME.json    launchpad configs + `socket.json`, with `port`, `management-port`, `sync-port`,
//!                      `ofrep-port` injected
//! ssl/                 custom-root-cert.crt, server-cert.pem, server-key.pem
//! ```
//!
//! What it does not do: start processes (see [`super::Launcher`]) or watch files.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::{Map, Value};

use super::LauncherError;

/// File name of the merged flag file inside `flags/`.
pub const ALL_FLAGS: &str = "allFlags.json";
/// Flag files whose name starts with this prefix are separate daemon sources, never merged.
pub const SELECTOR_PREFIX: &str = "selector-";
/// The flag file `/change` edits and the flag it toggles.
pub const CHANGING_FLAG_FILE: &str = "changing-flag.json";
/// Key of the flag toggled by [`Fixture::change`].
pub const CHANGING_FLAG_KEY: &str = "changing-flag";
/// Unix socket file name (inside the fixture dir) of the evaluation service in the `socket` config.
pub const SOCKET_FILE: &str = "flagd.sock";
/// Unix socket file name (inside the fixture dir) of the sync service in the `socket` config.
pub const SYNC_SOCKET_FILE: &str = "flagd-sync.sock";

/// The four daemon ports, injected into every config under flagd's key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// Evaluation gRPC (`port`, flagd default 8013).
    pub evaluation: u16,
    /// Management HTTP with `/readyz` (`management-port`, default 8014).
    pub management: u16,
    /// Sync gRPC (`sync-port`, default 8015).
    pub sync: u16,
    /// OFREP HTTP (`ofrep-port`, default 8016).
    pub ofrep: u16,
}

impl Ports {
    /// Picks four currently free loopback ports (bind to port 0, then release).
    pub fn free() -> Result<Self, LauncherError> {
        let mut picked = Vec::with_capacity(4);
        let mut listeners = Vec::with_capacity(4);
        for _ in 0..4 {
            let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(|source| LauncherError::io("127.0.0.1:0", source))?;
            let port = listener
                .local_addr()
                .map_err(|source| LauncherError::io("127.0.0.1:0", source))?
                .port();
            picked.push(port);
            listeners.push(listener);
        }
        Ok(Self {
            evaluation: picked[0],
            management: picked[1],
            sync: picked[2],
            ofrep: picked[3],
        })
    }

    /// flagd's default ports (8013–8016).
    pub const fn flagd_defaults() -> Self {
        Self {
            evaluation: 8013,
            management: 8014,
            sync: 8015,
            ofrep: 8016,
        }
    }
}

/// A populated fixture directory; removed when dropped.
#[derive(Debug)]
pub struct Fixture {
    dir: tempfile::TempDir,
    config_names: Vec<String>,
}

impl Fixture {
    /// Builds the fixture from a flagd-testbed checkout. A missing testbed directory (or a missing `flags/`,
    /// `launchpad/configs/` or `ssl/custom-ca.key` inside it) is an error.
    pub fn create(testbed: &Path, ports: Ports) -> Result<Self, LauncherError> {
        if !testbed.is_dir() {
            return Err(LauncherError::TestbedMissing(testbed.to_path_buf()));
        }
        let dir = tempfile::Builder::new()
            .prefix("flagpole-testbed-")
            .tempdir()
            .map_err(|source| LauncherError::io(std::env::temp_dir(), source))?;
        let root = dir.path();
        for sub in ["rawflags", "flags", "configs", "ssl"] {
            let path = root.join(sub);
            fs::create_dir_all(&path).map_err(|source| LauncherError::io(&path, source))?;
        }

        for entry in json_files(&testbed.join("flags"))? {
            let name = file_name(&entry);
            let target = root.join("rawflags").join(&name);
            fs::copy(&entry, &target).map_err(|source| LauncherError::io(&entry, source))?;
        }

        let mut config_names = Vec::new();
        let mut default_config = None;
        for entry in json_files(&testbed.join("launchpad").join("configs"))? {
            let name = file_name(&entry);
            let stem = name.trim_end_matches(".json").to_owned();
            let mut config = read_json(&entry)?;
            if stem == "ssl" {
                relativise_ssl_paths(&mut config);
            }
            if stem == "default" {
                default_config = Some(config.clone());
            }
            inject_ports(&mut config, ports);
            write_json_atomic(&root.join("configs").join(&name), &config)?;
            config_names.push(stem);
        }
        // The `socket` config (absent upstream): the default config plus unix sockets for the evaluation
        // (`socket-path`) and sync (`sync-socket-path`) services.
        if let Some(mut config) = default_config {
            if let Value::Object(map) = &mut config {
                for (key, file) in [
                    ("socket-path", SOCKET_FILE),
                    ("sync-socket-path", SYNC_SOCKET_FILE),
                ] {
                    map.insert(
                        key.to_owned(),
                        Value::String(root.join(file).to_string_lossy().into_owned()),
                    );
                }
            }
            inject_ports(&mut config, ports);
            write_json_atomic(&root.join("configs").join("socket.json"), &config)?;
            config_names.push("socket".to_owned());
        }
        config_names.sort();

        write_certificates(&testbed.join("ssl"), &root.join("ssl"))?;

        let fixture = Self { dir, config_names };
        fixture.merge_flags()?;
        Ok(fixture)
    }

    /// The fixture root (cwd of the daemon).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `flags/allFlags.json`.
    pub fn all_flags_path(&self) -> PathBuf {
        self.root().join("flags").join(ALL_FLAGS)
    }

    /// `rawflags/` (the testbed's flag files).
    pub fn rawflags_dir(&self) -> PathBuf {
        self.root().join("rawflags")
    }

    /// `configs/NAME.json`, or an error when there is no such config.
    pub fn config_path(&self, name: &str) -> Result<PathBuf, LauncherError> {
        if self.config_names.iter().any(|known| known == name) {
            Ok(self.root().join("configs").join(format!("{name}.json")))
        } else {
            Err(LauncherError::UnknownConfig(name.to_owned()))
        }
    }

    /// Names of the available configs (`default`, `metadata`, `socket`, `ssl`, `sync-payload`, …).
    pub fn config_names(&self) -> &[String] {
        &self.config_names
    }

    /// The CA certificate clients trust (`ssl/custom-root-cert.crt`).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.root().join("ssl").join("custom-root-cert.crt")
    }

    /// The unix socket the `socket` config makes the evaluation service listen on.
    pub fn socket_path(&self) -> PathBuf {
        self.root().join(SOCKET_FILE)
    }

    /// The unix socket the `socket` config makes the sync service listen on.
    pub fn sync_socket_path(&self) -> PathBuf {
        self.root().join(SYNC_SOCKET_FILE)
    }

    /// Regenerates `flags/allFlags.json`: every `rawflags/*.json` not starting with `selector-`, in
    /// alphabetical order, deep-merged, written atomically (temp file + rename).
    pub fn merge_flags(&self) -> Result<(), LauncherError> {
        let mut merged = Value::Object(Map::new());
        for path in json_files(&self.rawflags_dir())? {
            if file_name(&path).starts_with(SELECTOR_PREFIX) {
                continue;
            }
            deep_merge(&mut merged, read_json(&path)?);
        }
        write_json_atomic(&self.all_flags_path(), &merged)
    }

    /// Deletes `flags/allFlags.json` (a missing file is fine).
    pub fn remove_all_flags(&self) -> Result<(), LauncherError> {
        let path = self.all_flags_path();
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(LauncherError::io(&path, source)),
        }
    }

    /// Toggles `changing-flag`'s `defaultVariant` foo↔bar in `rawflags/changing-flag.json` (atomically) and
    /// regenerates `flags/allFlags.json`. Returns the new default variant.
    pub fn change(&self) -> Result<String, LauncherError> {
        let path = self.rawflags_dir().join(CHANGING_FLAG_FILE);
        let mut doc = read_json(&path)?;
        let variant = doc
            .get_mut("flags")
            .and_then(|flags| flags.get_mut(CHANGING_FLAG_KEY))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| LauncherError::ChangingFlagMissing(path.clone()))?;
        let next = match variant.get("defaultVariant").and_then(Value::as_str) {
            Some("foo") => "bar",
            _ => "foo",
        };
        variant.insert("defaultVariant".to_owned(), Value::String(next.to_owned()));
        write_json_atomic(&path, &doc)?;
        if self.all_flags_path().exists() {
            self.merge_flags()?;
        }
        Ok(next.to_owned())
    }
}

/// Recursive map merge: objects union (later values win inside), anything else is replaced.
pub fn deep_merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) => deep_merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

impl Fixture {
    /// Adds `entries` to every config in `configs/` (rewritten atomically).
    pub fn add_to_configs(&self, entries: &[(String, Value)]) -> Result<(), LauncherError> {
        for path in json_files(&self.root().join("configs"))? {
            let mut config = read_json(&path)?;
            if let Value::Object(map) = &mut config {
                for (key, value) in entries {
                    map.insert(key.clone(), value.clone());
                }
            }
            write_json_atomic(&path, &config)?;
        }
        Ok(())
    }
}

fn inject_ports(config: &mut Value, ports: Ports) {
    if let Value::Object(map) = config {
        for (key, port) in [
            ("port", ports.evaluation),
            ("management-port", ports.management),
            ("sync-port", ports.sync),
            ("ofrep-port", ports.ofrep),
        ] {
            map.insert(key.to_owned(), Value::from(port));
        }
    }
}

/// The image keeps certificates in `/ssl`; the fixture keeps them in `ssl/` next to the configs.
fn relativise_ssl_paths(config: &mut Value) {
    if let Value::Object(map) = config {
        for key in ["server-cert-path", "server-key-path"] {
            if let Some(Value::String(path)) = map.get_mut(key) {
                *path = path.trim_start_matches('/').to_owned();
            }
        }
    }
}

/// CA certificate (the testbed's `custom-root-cert.crt` when present, else one generated from its
/// `custom-ca.key` with the same subject) and a fresh server certificate for `localhost`/`127.0.0.1`.
fn write_certificates(testbed_ssl: &Path, target: &Path) -> Result<(), LauncherError> {
    let key_path = testbed_ssl.join("custom-ca.key");
    let key_pem =
        fs::read_to_string(&key_path).map_err(|source| LauncherError::io(&key_path, source))?;
    let ca_key =
        KeyPair::from_pem(&key_pem).map_err(|source| LauncherError::cert(&key_path, source))?;

    let mut ca_params = CertificateParams::default();
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::CommonName, "Flagd testbed ROOT CA");
    ca_params.distinguished_name = ca_name;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_target = target.join("custom-root-cert.crt");
    let testbed_ca = testbed_ssl.join("custom-root-cert.crt");
    if testbed_ca.is_file() {
        fs::copy(&testbed_ca, &ca_target)
            .map_err(|source| LauncherError::io(&testbed_ca, source))?;
    } else {
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(|source| LauncherError::cert(&key_path, source))?;
        write_file(&ca_target, ca_cert.pem().as_bytes())?;
    }
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().map_err(|source| LauncherError::cert(target, source))?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])
        .map_err(|source| LauncherError::cert(target, source))?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "localhost");
    params.distinguished_name = name;
    let cert = params
        .signed_by(&server_key, &issuer)
        .map_err(|source| LauncherError::cert(target, source))?;
    write_file(&target.join("server-cert.pem"), cert.pem().as_bytes())?;
    write_file(
        &target.join("server-key.pem"),
        server_key.serialize_pem().as_bytes(),
    )
}

/// `*.json` files of a directory in alphabetical order.
fn json_files(dir: &Path) -> Result<Vec<PathBuf>, LauncherError> {
    let entries = fs::read_dir(dir).map_err(|source| LauncherError::io(dir, source))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| LauncherError::io(dir, source))?
            .path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "json") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_json(path: &Path) -> Result<Value, LauncherError> {
    let text = fs::read_to_string(path).map_err(|source| LauncherError::io(path, source))?;
    serde_json::from_str(&text).map_err(|source| LauncherError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn write_json_atomic(path: &Path, value: &Value) -> Result<(), LauncherError> {
    let text = serde_json::to_vec_pretty(value).map_err(|source| LauncherError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_file(path, &text)
}

/// Writes `path` atomically: a temp file in the same directory, then rename.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), LauncherError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp", file_name(path)));
    fs::write(&tmp, bytes).map_err(|source| LauncherError::io(&tmp, source))?;
    fs::rename(&tmp, path).map_err(|source| LauncherError::io(path, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deep_merge_unions_maps_and_replaces_leaves() {
        let mut base = json!({"flags": {"a": {"state": "ENABLED"}}, "$evaluators": {"x": 1}});
        deep_merge(
            &mut base,
            json!({"flags": {"b": {}, "a": {"state": "DISABLED"}}, "$evaluators": {"y": 2}}),
        );
        assert_eq!(
            base,
            json!({"flags": {"a": {"state": "DISABLED"}, "b": {}}, "$evaluators": {"x": 1, "y": 2}})
        );
    }

    #[test]
    fn ssl_paths_become_relative() {
        let mut config =
            json!({"server-cert-path": "/ssl/server-cert.pem", "server-key-path": "/ssl/k.pem"});
        relativise_ssl_paths(&mut config);
        assert_eq!(config["server-cert-path"], "ssl/server-cert.pem");
        assert_eq!(config["server-key-path"], "ssl/k.pem");
    }

    #[test]
    fn fixture_from_the_testbed_merges_flags_and_toggles_changing_flag() {
        let testbed = super::super::testbed_dir();
        let fixture = Fixture::create(&testbed, Ports::flagd_defaults())
            .unwrap_or_else(|error| panic!("fixture from {}: {error}", testbed.display()));
        let merged = read_json(&fixture.all_flags_path()).unwrap_or_else(|error| panic!("{error}"));
        let flags = merged["flags"]
            .as_object()
            .map(|flags| flags.len())
            .unwrap_or(0);
        assert!(flags > 50, "only {flags} flags merged");
        assert!(
            merged["flags"].get("selector-flag").is_none(),
            "selector- files are not merged"
        );
        assert_eq!(merged["flags"]["cross-flagset-flag"]["state"], "DISABLED");
        assert!(merged["$evaluators"]["is_ballmer"].is_object());
        assert_eq!(merged["flags"][CHANGING_FLAG_KEY]["defaultVariant"], "foo");

        assert_eq!(
            fixture.change().unwrap_or_else(|error| panic!("{error}")),
            "bar"
        );
        let merged = read_json(&fixture.all_flags_path()).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(merged["flags"][CHANGING_FLAG_KEY]["defaultVariant"], "bar");
        assert_eq!(
            fixture.change().unwrap_or_else(|error| panic!("{error}")),
            "foo"
        );

        let ssl = read_json(
            &fixture
                .config_path("ssl")
                .unwrap_or_else(|error| panic!("{error}")),
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(ssl["server-cert-path"], "ssl/server-cert.pem");
        assert_eq!(ssl["port"], 8013);
        assert_eq!(ssl["management-port"], 8014);
        let socket = read_json(
            &fixture
                .config_path("socket")
                .unwrap_or_else(|error| panic!("{error}")),
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert!(
            socket["socket-path"]
                .as_str()
                .is_some_and(|path| path.ends_with(SOCKET_FILE))
        );
        for file in ["custom-root-cert.crt", "server-cert.pem", "server-key.pem"] {
            assert!(
                fixture.root().join("ssl").join(file).is_file(),
                "ssl/{file} missing"
            );
        }
        assert!(matches!(
            fixture.config_path("nope"),
            Err(LauncherError::UnknownConfig(_))
        ));
    }

    /// rustls/webpki ignore the subject CN, so the server certificate must name `localhost` (and
    /// 127.0.0.1) as subject alternative names and chain to the CA clients are given.
    #[test]
    fn server_certificate_verifies_for_localhost_against_the_ca() {
        use rustls::client::danger::ServerCertVerifier as _;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

        let fixture = Fixture::create(&super::super::testbed_dir(), Ports::flagd_defaults())
            .unwrap_or_else(|error| panic!("{error}"));
        let ca = CertificateDer::from_pem_file(fixture.ca_cert_path())
            .unwrap_or_else(|error| panic!("CA certificate: {error}"));
        let server =
            CertificateDer::from_pem_file(fixture.root().join("ssl").join("server-cert.pem"))
                .unwrap_or_else(|error| panic!("server certificate: {error}"));
        rustls::pki_types::PrivateKeyDer::from_pem_file(
            fixture.root().join("ssl").join("server-key.pem"),
        )
        .unwrap_or_else(|error| panic!("server key: {error}"));

        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap_or_else(|error| panic!("CA: {error}"));
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            provider,
        )
        .build()
        .unwrap_or_else(|error| panic!("verifier: {error}"));
        for name in ["localhost", "127.0.0.1"] {
            let name = ServerName::try_from(name).unwrap_or_else(|error| panic!("{error}"));
            verifier
                .verify_server_cert(&server, &[], &name, &[], UnixTime::now())
                .unwrap_or_else(|error| panic!("{name:?}: {error}"));
        }
        let other = ServerName::try_from("example.com").unwrap_or_else(|error| panic!("{error}"));
        assert!(
            verifier
                .verify_server_cert(&server, &[], &other, &[], UnixTime::now())
                .is_err(),
            "the certificate must not be valid for other names"
        );
    }

    #[test]
    fn missing_testbed_is_an_error() {
        let result = Fixture::create(
            Path::new("/nonexistent/flagd-testbed"),
            Ports::flagd_defaults(),
        );
        assert!(matches!(result, Err(LauncherError::TestbedMissing(_))));
    }
}
