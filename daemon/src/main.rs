//! `flagpole`: thin binary over the `flagpole` library. Parses the command line, sets up logging and the
//! runtime, runs the command, and maps failures to exit codes: 64 for bad usage or configuration, 1 for
//! anything else (a port in use, a missing flag file, a rejected file in `validate`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use flagpole::config::{Action, Args, Invocation};

/// The static musl build (the container image) allocates with mimalloc: musl's own allocator serialises
/// the runtime's threads on one lock and halved the daemon's throughput in the load generator. The glibc
/// build keeps glibc's allocator, which is as fast here and already mapped.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for bad usage or configuration (BSD `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let args = match Args::parse_from_env() {
        Ok(args) => args,
        Err(error) => {
            let code = if error.use_stderr() { EXIT_USAGE } else { 0 };
            // Printing help or a usage error to the terminal; nothing to do if that fails.
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let invocation = match Invocation::try_from(args) {
        Ok(invocation) => invocation,
        Err(error) => {
            eprintln!("flagpole: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match invocation.action {
        Action::Version => {
            println!("flagpole: {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Action::Override(args) => {
            let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
            command_exit(flagpole::admin_client::run(&args, &mut out, &mut err))
        }
        Action::Explain(args) => command_exit(flagpole::explain_cli::run(
            &args,
            &mut std::io::stdout().lock(),
        )),
        Action::Validate {
            files,
            strict,
            format,
        } => {
            let mut stdout = std::io::stdout().lock();
            let format = match format {
                flagpole::config::OutputFormat::Text => flagpole::validate::ReportFormat::Text,
                flagpole::config::OutputFormat::Json => flagpole::validate::ReportFormat::Json,
            };
            command_exit(flagpole::validate::validate_files_as(
                &files,
                strict,
                format,
                &mut stdout,
            ))
        }
        Action::Start(config) => {
            flagpole::logging::init(invocation.log);
            for warning in &invocation.warnings {
                tracing::warn!("{warning}");
            }
            // Read once before `main`, never again: half a megabyte of an idle daemon's RSS.
            flagpole::memory::drop_relocation_tables();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(%error, "cannot start the async runtime");
                    return ExitCode::FAILURE;
                }
            };
            let code = runtime.block_on(start(*config));
            // A read stuck in the blocking pool (a hung network file system) must not hold the exit.
            runtime.shutdown_timeout(EXIT_GRACE);
            code
        }
    }
}

/// How long the runtime waits for blocking work at exit before the process ends anyway.
/// The exit status of a command that succeeds (`Ok(true)`), finds a problem (`Ok(false)`: 1) or cannot
/// run (its error on stderr, 1).
fn command_exit(result: Result<bool, impl std::fmt::Display>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("flagpole: {error}");
            ExitCode::FAILURE
        }
    }
}

const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

async fn start(config: flagpole::config::Config) -> ExitCode {
    // Registered before anything is served, so a SIGTERM that arrives as soon as /readyz answers is
    // buffered and handled gracefully instead of killing the process.
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            tracing::error!(%error, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    // The signal is awaited from here on: a source that takes its time at start (an http server that does
    // not answer until the poll deadline) must not make SIGTERM wait.
    let (signalled, mut received) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        signals.recv().await;
        let _ = signalled.send(());
    });
    let daemon = tokio::select! {
        started = flagpole::run(config) => match started {
            Ok(daemon) => daemon,
            Err(error) => {
                tracing::error!(%error, "cannot start");
                return ExitCode::FAILURE;
            }
        },
        _ = &mut received => {
            tracing::info!("stopped by a signal before the start completed");
            return ExitCode::SUCCESS;
        }
    };
    let token = daemon.shutdown_token();
    tokio::spawn(async move {
        let _ = received.await;
        token.cancel();
    });
    match daemon.wait().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "stopped after a failure");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT and SIGTERM, registered eagerly.
#[cfg(unix)]
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves on the first SIGINT or SIGTERM.
    async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Ctrl-C only, where there are no unix signals.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn recv(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
