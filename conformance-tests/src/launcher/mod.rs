//! The testbed launchpad re-implemented in Rust (`docs/conformance.md#how-it-works`): owns a [`Fixture`] directory and
//! one `flagpole` daemon process, and offers the launchpad's operations — start with a named config, stop,
//! restart after N seconds with the merged flag file removed meanwhile, and change `changing-flag` — as a
//! library ([`Launcher`]) and over HTTP ([`http`]).
//!
//! What it does not do: evaluate flags or talk gRPC; it only manages files and the daemon process, and it
//! judges readiness by the daemon's `/readyz`.

pub mod fixture;
pub mod http;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

pub use fixture::{Fixture, Ports};

/// How long `start` waits for the daemon's `/readyz` to answer 200 (the launchpad's timeout).
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval between two `/readyz` probes.
pub const READY_POLL: Duration = Duration::from_millis(50);
/// How long `stop` waits for a killed daemon to be reaped.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// File name of the launcher's private copy of the daemon binary, inside the fixture directory.
pub const DAEMON_COPY: &str = "daemon-under-test";
/// Config used by `start` when none was given and none was used before.
pub const DEFAULT_CONFIG: &str = "default";

/// Everything that can go wrong while preparing the fixture or driving the daemon.
#[derive(Debug, thiserror::Error)]
pub enum LauncherError {
    /// The testbed directory does not exist.
    #[error("flagd-testbed directory {0} does not exist (set FLAGD_TESTBED_DIR)")]
    TestbedMissing(PathBuf),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// File or directory concerned.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed or written.
    #[error("{path}: {source}")]
    Json {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation ({path}): {source}")]
    Cert {
        /// Key or directory concerned.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: rcgen::Error,
    },
    /// `start` named a config the fixture does not have.
    #[error("unknown launchpad config {0:?}")]
    UnknownConfig(String),
    /// `rawflags/changing-flag.json` has no `flags.changing-flag` object.
    #[error("{0}: no flags.changing-flag object")]
    ChangingFlagMissing(PathBuf),
    /// The daemon binary could not be spawned.
    #[error("cannot spawn daemon {bin}: {source}")]
    Spawn {
        /// Binary path.
        bin: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The daemon exited before it became ready.
    #[error("daemon exited before it was ready with config {config:?}: {status}")]
    Exited {
        /// Config it was started with.
        config: String,
        /// Exit status.
        status: std::process::ExitStatus,
    },
    /// `/readyz` did not answer 200 in time.
    #[error("daemon not ready within {READY_TIMEOUT:?} with config {0:?}")]
    NotReady(String),
}

impl LauncherError {
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub(crate) fn cert(path: impl AsRef<Path>, source: rcgen::Error) -> Self {
        Self::Cert {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// Where the launcher finds its inputs.
#[derive(Clone, Debug)]
pub struct LauncherOptions {
    /// The flagd-testbed checkout (its `flags/`, `launchpad/configs/`, `ssl/`).
    pub testbed_dir: PathBuf,
    /// The `flagpole` binary (or any flagd-compatible binary taking `start --config FILE`).
    pub daemon_bin: PathBuf,
    /// Ports to inject into the configs; `None` picks free ones.
    pub ports: Option<Ports>,
    /// Let the daemon's stdout/stderr through (else discarded).
    pub daemon_output: bool,
    /// Keys added to every config (e.g. `fractional-algorithm: v3`), over the launchpad's own.
    pub extra_config: Vec<(String, serde_json::Value)>,
}

#[derive(Debug, Default)]
struct State {
    child: Option<Child>,
    last_config: Option<String>,
    pending_restart: Option<JoinHandle<()>>,
    /// Why the last background restart failed (reported by [`Launcher::last_restart_error`]).
    restart_error: Option<String>,
}

/// The launchpad: one fixture directory, at most one daemon process (run from a copy of the binary taken
/// at creation). Kills the daemon when dropped.
#[derive(Debug)]
pub struct Launcher {
    fixture: Fixture,
    ports: Ports,
    daemon_bin: PathBuf,
    daemon_output: bool,
    state: Mutex<State>,
    /// Process id of the last daemon spawned (0: none), for [`Launcher::kill_now`] while a start holds the
    /// state lock.
    last_pid: AtomicU32,
}

impl Launcher {
    /// Builds the fixture; does not start the daemon.
    pub fn new(options: LauncherOptions) -> Result<Arc<Self>, LauncherError> {
        let ports = match options.ports {
            Some(ports) => ports,
            None => Ports::free()?,
        };
        let fixture = Fixture::create(&options.testbed_dir, ports)?;
        if !options.extra_config.is_empty() {
            fixture.add_to_configs(&options.extra_config)?;
        }
        // A private copy, so that a rebuild in the shared target directory cannot pull the binary away
        // in the middle of a run.
        let daemon_bin = fixture.root().join(DAEMON_COPY);
        std::fs::copy(&options.daemon_bin, &daemon_bin).map_err(|source| LauncherError::Spawn {
            bin: options.daemon_bin.clone(),
            source,
        })?;
        Ok(Arc::new(Self {
            fixture,
            ports,
            daemon_bin,
            daemon_output: options.daemon_output,
            state: Mutex::new(State::default()),
            last_pid: AtomicU32::new(0),
        }))
    }

    /// The fixture directory.
    pub fn fixture(&self) -> &Fixture {
        &self.fixture
    }

    /// The ports injected into every config.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// Kills any running daemon, regenerates `flags/allFlags.json` if missing and starts the daemon with
    /// `configs/NAME.json` (`None`: the last config used, initially `default`), then waits for `/readyz`.
    pub async fn start(&self, config: Option<&str>) -> Result<String, LauncherError> {
        let mut state = self.state.lock().await;
        Self::cancel_restart(&mut state);
        self.start_locked(&mut state, config).await
    }

    /// Cancels a pending restart and kills the daemon.
    pub async fn stop(&self) -> Result<(), LauncherError> {
        let mut state = self.state.lock().await;
        Self::cancel_restart(&mut state);
        Self::kill_locked(&mut state).await;
        Ok(())
    }

    /// Deletes `flags/allFlags.json`, kills the daemon, and starts it again with the last config after
    /// `seconds` (in the background; the call returns at once).
    pub async fn restart(self: &Arc<Self>, seconds: u64) -> Result<(), LauncherError> {
        let mut state = self.state.lock().await;
        Self::cancel_restart(&mut state);
        state.restart_error = None;
        self.fixture.remove_all_flags()?;
        Self::kill_locked(&mut state).await;
        let launcher = Arc::clone(self);
        state.pending_restart = Some(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            let mut state = launcher.state.lock().await;
            state.pending_restart = None;
            state.restart_error = launcher
                .start_locked(&mut state, None)
                .await
                .err()
                .map(|error| error.to_string());
        }));
        Ok(())
    }

    /// Toggles `changing-flag` (foo↔bar) and regenerates `flags/allFlags.json`; returns the new variant.
    pub async fn change(&self) -> Result<String, LauncherError> {
        let _state = self.state.lock().await;
        self.fixture.change()
    }

    /// Why the last background restart (see [`Launcher::restart`]) failed, if it did.
    pub async fn last_restart_error(&self) -> Option<String> {
        self.state.lock().await.restart_error.clone()
    }

    /// Whether a daemon process is currently running.
    pub async fn is_running(&self) -> bool {
        let mut state = self.state.lock().await;
        match state.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Synchronous best-effort kill, for drop guards and panics.
    pub fn kill_now(&self) {
        if let Ok(mut state) = self.state.try_lock() {
            if let Some(handle) = state.pending_restart.take() {
                handle.abort();
            }
            if let Some(child) = state.child.as_mut() {
                let _ = child.start_kill();
            }
        } else {
            // A start (possibly a background restart) holds the lock while it waits for readiness: the
            // daemon it spawned is the last one.
            let pid = self.last_pid.load(Ordering::SeqCst);
            if pid != 0 {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }

    /// [`Launcher::kill_now`], then removes the fixture directory — for a launcher that is never dropped
    /// (held in a `static`). The launcher is unusable afterwards.
    pub fn shutdown_now(&self) {
        self.kill_now();
        let _ = std::fs::remove_dir_all(self.fixture.root());
    }

    fn cancel_restart(state: &mut State) {
        if let Some(handle) = state.pending_restart.take() {
            handle.abort();
        }
    }

    async fn kill_locked(state: &mut State) {
        if let Some(mut child) = state.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(STOP_TIMEOUT, child.wait()).await;
        }
    }

    async fn start_locked(
        &self,
        state: &mut State,
        config: Option<&str>,
    ) -> Result<String, LauncherError> {
        Self::kill_locked(state).await;
        let name = match config.filter(|name| !name.is_empty()) {
            Some(name) => name.to_owned(),
            None => state
                .last_config
                .clone()
                .unwrap_or_else(|| DEFAULT_CONFIG.to_owned()),
        };
        let config_path = self.fixture.config_path(&name)?;
        if !self.fixture.all_flags_path().exists() {
            self.fixture.merge_flags()?;
        }
        // A stale socket file from a killed daemon would make the next bind fail.
        let _ = std::fs::remove_file(self.fixture.socket_path());
        let _ = std::fs::remove_file(self.fixture.sync_socket_path());
        state.last_config = Some(name.clone());

        let mut command = Command::new(&self.daemon_bin);
        command
            .arg("start")
            .arg("--config")
            .arg(&config_path)
            .current_dir(self.fixture.root())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if !self.daemon_output {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let child = command.spawn().map_err(|source| LauncherError::Spawn {
            bin: self.daemon_bin.clone(),
            source,
        })?;
        self.last_pid
            .store(child.id().unwrap_or_default(), Ordering::SeqCst);
        state.child = Some(child);

        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = state.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                state.child = None;
                return Err(LauncherError::Exited {
                    config: name,
                    status,
                });
            }
            if readyz(self.ports.management).await {
                return Ok(name);
            }
            if tokio::time::Instant::now() >= deadline {
                Self::kill_locked(state).await;
                return Err(LauncherError::NotReady(name));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// `GET http://127.0.0.1:PORT/readyz` answered 200.
async fn readyz(port: u16) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Some(true))
    )
}

/// The testbed directory: `FLAGD_TESTBED_DIR`, else the pinned one (`crate::pinned_testbed_dir`).
pub fn testbed_dir() -> PathBuf {
    match std::env::var_os("FLAGD_TESTBED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => crate::pinned_testbed_dir(),
    }
}

/// The workspace root (parent of this package's manifest directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The daemon binary: `FLAGPOLE_BIN`, else `flagpole` in the workspace target dir (`CARGO_TARGET_DIR` or
/// `target/`), debug profile first.
pub fn daemon_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("FLAGPOLE_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let debug = target.join("debug").join("flagpole");
    let release = target.join("release").join("flagpole");
    if !debug.exists() && release.exists() {
        release
    } else {
        debug
    }
}
