//! Object-store sources against real emulators, each started here on a free port: moto's S3 server
//! (`s3://`), fake-gcs-server (`gs://`, through `STORAGE_EMULATOR_HOST`) and Azurite (`azblob://`, through
//! flagd's `AZURE_STORAGE_*` variables), installed by `scripts/install-test-clients.sh`. For each: the
//! first load, an edit that reaches the answers, a deleted object that keeps the last flags and reports
//! the failure. S3 also shows that an unchanged object costs one conditional request (`304` in moto's log);
//! Azure (the one emulator that checks credentials) that a wrong key stops the start with a clear error.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::clients::{ChildDaemon, free_port, workspace_root};

/// Azurite's documented development account and its well-known key (public; only an emulator takes it).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// How long an edit or a deletion may take to show (the sources poll every second here).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

fn clients_dir() -> PathBuf {
    std::env::var_os("FLAGPOLE_TEST_CLIENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-clients"))
}

fn installed(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-clients.sh",
        path.display()
    );
    path
}

fn flags(default_variant: &str) -> String {
    format!(
        r#"{{"flags":{{"f":{{"state":"ENABLED","variants":{{"on":true,"off":false}},"defaultVariant":"{default_variant}"}}}}}}"#
    )
}

/// One emulator process, killed when dropped.
struct Emulator {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emulator {
    fn start(dir: &Path, name: &str, command: &mut Command, port: u16) -> Emulator {
        let log = dir.join(format!("{name}.log"));
        let child = command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let emulator = Emulator { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{name} did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        emulator
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What the test does to a bucket: put and delete one object.
trait Bucket {
    fn put(&self, key: &str, body: &str);
    fn delete(&self, key: &str);
}

struct S3 {
    emulator: Emulator,
}

impl S3 {
    fn curl(&self, method: &str, key: &str) -> Command {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "--fail", "-X", method])
            .args(["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "test:test"])
            .arg(format!(
                "http://127.0.0.1:{}/flags/{key}",
                self.emulator.port
            ));
        command
    }
}

impl Bucket for S3 {
    fn put(&self, key: &str, body: &str) {
        run(
            self.curl("PUT", key).args([
                "-H",
                "content-type: application/json",
                "--data-binary",
                body,
            ]),
            "S3 put",
        );
    }
    fn delete(&self, key: &str) {
        run(&mut self.curl("DELETE", key), "S3 delete");
    }
}

struct Gcs {
    emulator: Emulator,
}

impl Bucket for Gcs {
    fn put(&self, key: &str, body: &str) {
        run(
            Command::new("curl")
                .args([
                    "-sS",
                    "--fail",
                    "-X",
                    "POST",
                    "-H",
                    "content-type: application/json",
                ])
                .args(["--data-binary", body])
                .arg(format!(
                    "http://127.0.0.1:{}/upload/storage/v1/b/flags/o?uploadType=media&name={key}",
                    self.emulator.port
                )),
            "GCS upload",
        );
    }
    fn delete(&self, key: &str) {
        run(
            Command::new("curl")
                .args(["-sS", "--fail", "-X", "DELETE"])
                .arg(format!(
                    "http://127.0.0.1:{}/storage/v1/b/flags/o/{}",
                    self.emulator.port,
                    key.replace('/', "%2F")
                )),
            "GCS delete",
        );
    }
}

struct Azure {
    emulator: Emulator,
}

impl Azure {
    /// The Azure Storage SDK for Python (Azurite checks the shared-key signature of every request).
    fn sdk(&self, script: &str) {
        let connection = format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};\
             BlobEndpoint=http://127.0.0.1:{}/{AZURITE_ACCOUNT};",
            self.emulator.port
        );
        let program = format!(
            "from azure.storage.blob import BlobServiceClient, ContentSettings\n\
             container = BlobServiceClient.from_connection_string({connection:?}).get_container_client('flags')\n\
             {script}\n"
        );
        run(
            Command::new(installed(clients_dir().join("emulators/bin/python")))
                .args(["-c", &program]),
            "Azure SDK",
        );
    }
}

impl Bucket for Azure {
    fn put(&self, key: &str, body: &str) {
        self.sdk(&format!(
            "container.upload_blob({key:?}, {body:?}.encode(), overwrite=True, \
             content_settings=ContentSettings(content_type='application/json'))"
        ));
    }
    fn delete(&self, key: &str) {
        self.sdk(&format!("container.delete_blob({key:?})"));
    }
}

fn ofrep_value(daemon: &ChildDaemon) -> Value {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-X", "POST", "-d", "{}"])
        .arg(format!(
            "http://127.0.0.1:{}/ofrep/v1/evaluate/flags/f",
            daemon.ports.ofrep
        ))
        .output()
        .expect("curl");
    serde_json::from_slice::<Value>(&output.stdout).expect("OFREP answer")["value"].clone()
}

fn metrics(daemon: &ChildDaemon) -> String {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!(
            "http://127.0.0.1:{}/metrics",
            daemon.ports.management
        ))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn wait_for(what: &str, daemon: &ChildDaemon, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} not within {CHANGE_TIMEOUT:?}; daemon stderr:\n{}",
            crate::clients::tail(&daemon.stderr(), 20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The scenario every store goes through: load, edit, delete.
fn load_edit_delete(
    bucket: &dyn Bucket,
    dir: &Path,
    uri: &str,
    provider: &str,
    env: &[(&str, &str)],
    unchanged: &dyn Fn() -> bool,
) {
    let key = "dir/flags.json";
    bucket.put(key, &flags("on"));
    let sources = format!(r#"[{{"uri":"{uri}","provider":"{provider}","interval":1}}]"#);
    let daemon = ChildDaemon::start_args_env(None, dir, &["--sources", &sources], env);
    assert_eq!(ofrep_value(&daemon), Value::Bool(true), "first load");
    wait_for("a poll of the unchanged object", &daemon, unchanged);

    bucket.put(key, &flags("off"));
    wait_for("the edit", &daemon, || {
        ofrep_value(&daemon) == Value::Bool(false)
    });

    bucket.delete(key);
    wait_for("the deletion reported", &daemon, || {
        metrics(&daemon)
            .lines()
            .any(|l| l.starts_with("flagpole_source_consecutive_failures") && !l.ends_with(" 0"))
    });
    assert_eq!(
        ofrep_value(&daemon),
        Value::Bool(false),
        "the last flags stay after the object is deleted"
    );
    assert!(
        daemon.stderr().contains("the object does not exist"),
        "{}",
        daemon.stderr()
    );
}

#[test]
fn s3_through_moto() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let emulator = Emulator::start(
        dir.path(),
        "moto",
        Command::new(installed(clients_dir().join("emulators/bin/moto_server"))).args([
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ]),
        port,
    );
    let s3 = S3 { emulator };
    run(
        Command::new("curl")
            .args(["-sS", "--fail", "-X", "PUT"])
            .arg(format!("http://127.0.0.1:{port}/flags")),
        "create the bucket",
    );
    let uri =
        format!("s3://flags/dir/flags.json?endpoint=http://127.0.0.1:{port}&use_path_style=true");
    // While the object does not change, each poll is one conditional GET that moto answers 304.
    let not_modified = || {
        s3.emulator
            .log()
            .lines()
            .any(|l| l.contains("GET /flags/dir/flags.json") && l.contains(" 304 "))
    };
    load_edit_delete(
        &s3,
        dir.path(),
        &uri,
        "s3",
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ],
        &not_modified,
    );
}

#[test]
fn gcs_through_fake_gcs_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let emulator = Emulator::start(
        dir.path(),
        "fake-gcs-server",
        Command::new(installed(
            clients_dir().join("fake-gcs-server/fake-gcs-server"),
        ))
        .args([
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            &port.to_string(),
            "-backend",
            "memory",
            "-public-host",
            &format!("127.0.0.1:{port}"),
        ]),
        port,
    );
    run(
        Command::new("curl")
            .args([
                "-sS",
                "--fail",
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
            ])
            .args(["-d", r#"{"name":"flags"}"#])
            .arg(format!("http://127.0.0.1:{port}/storage/v1/b")),
        "create the bucket",
    );
    let host = format!("127.0.0.1:{port}");
    load_edit_delete(
        &Gcs { emulator },
        dir.path(),
        "gs://flags/dir/flags.json",
        "gcs",
        &[("STORAGE_EMULATOR_HOST", host.as_str())],
        &|| true,
    );
}

#[test]
fn azure_blob_through_azurite_and_a_wrong_key_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let data = dir.path().join("azurite");
    std::fs::create_dir_all(&data).unwrap();
    let emulator = Emulator::start(
        dir.path(),
        "azurite",
        Command::new(installed(
            workspace_root().join("clients/azurite/node_modules/.bin/azurite-blob"),
        ))
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(&data)
        .args(["--silent", "--skipApiVersionCheck"]),
        port,
    );
    let azure = Azure { emulator };
    azure.sdk("container.create_container()");
    let domain = format!("127.0.0.1:{port}");
    let env = |key: &'static str| {
        vec![
            ("AZURE_STORAGE_ACCOUNT", AZURITE_ACCOUNT),
            ("AZURE_STORAGE_KEY", key),
            ("AZURE_STORAGE_DOMAIN", domain.as_str()),
            ("AZURE_STORAGE_PROTOCOL", "http"),
            ("AZURE_STORAGE_IS_LOCAL_EMULATOR", "true"),
        ]
    };
    load_edit_delete(
        &azure,
        dir.path(),
        "azblob://flags/dir/flags.json",
        "azblob",
        &env(AZURITE_KEY),
        &|| true,
    );

    // A wrong key: the start fails (flagd exits too) and says why, without the key.
    azure.put("dir/flags.json", &flags("on"));
    let wrong_key = "d3Jvbmcta2V5LW5vdC10aGUtb25l";
    let output = crate::runtime_support::flagpole_command()
        .args(["start", "-p", "0", "-m", "0", "-g", "0", "-r", "0"])
        .args(["--uri", "azblob://flags/dir/flags.json"])
        .envs(env(wrong_key))
        .output()
        .expect("run flagpole");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("access denied"), "{stderr}");
    assert!(stderr.contains("check the credentials"), "{stderr}");
    assert!(!stderr.contains(wrong_key), "the key is never logged");
}
