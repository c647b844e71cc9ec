//! Load generator for OFREP change streams (`docs/protocols.md#ofrep-change-streams`): opens `--clients`
//! server-sent-event streams on the OFREP port (plain HTTP/1.1, one connection each, as browsers hold
//! them), rewrites `--flag-file` (atomically, by rename) `--edits` times, and reports the latency from each
//! write to each stream's `refetchEvaluation` event (HDR histogram, µs) and, with `--hold`, keeps the
//! streams open that many seconds after the edits (to read the daemon's RSS).
//!
//! ```sh
//! sse_load --write-flag-file /tmp/flags.json
//! flagpole start -r 18016 -f /tmp/flags.json --ofrep-sse-enabled &
//! sse_load --addr 127.0.0.1:18016 --clients 1000 --flag-file /tmp/flags.json --edits 20
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const MAX_LATENCY_US: u64 = 60_000_000;

#[derive(Debug, Parser)]
struct Args {
    /// The OFREP port, `HOST:PORT`.
    #[arg(long, default_value = "127.0.0.1:8016")]
    addr: String,
    /// Streams to open.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// The flag file the daemon watches.
    #[arg(long)]
    flag_file: Option<std::path::PathBuf>,
    /// Edits to make.
    #[arg(long, default_value_t = 20)]
    edits: u64,
    /// Pause between edits, in milliseconds.
    #[arg(long, default_value_t = 500)]
    edit_interval_ms: u64,
    /// Keep the streams open this many seconds after the edits.
    #[arg(long, default_value_t = 0)]
    hold: u64,
    /// Write the initial flag document to this path and exit.
    #[arg(long)]
    write_flag_file: Option<std::path::PathBuf>,
}

/// 100 flags; `sse-flag`'s default flips with `generation`.
fn flag_document(generation: u64) -> String {
    let mut flags = vec![format!(
        r#""sse-flag":{{"state":"ENABLED","variants":{{"on":true,"off":false}},"defaultVariant":"{}"}}"#,
        if generation.is_multiple_of(2) {
            "on"
        } else {
            "off"
        }
    )];
    for i in 0..99 {
        flags.push(format!(
            r#""filler-{i}":{{"state":"ENABLED","variants":{{"on":true,"off":false}},"defaultVariant":"on"}}"#
        ));
    }
    format!(r#"{{"flags":{{{}}}}}"#, flags.join(","))
}

fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("sse-load-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Raises the open-file limit to its hard maximum (10,000 streams need as many descriptors).
fn raise_nofile() {
    if let Ok(limit) = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .ok_or(())
    {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(limit),
                maximum: Some(limit),
            },
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if let Some(path) = &args.write_flag_file {
        std::fs::write(path, flag_document(0))?;
        return Ok(());
    }
    let path = args.flag_file.clone().ok_or("--flag-file is needed")?;
    raise_nofile();
    let last_edit: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(args.clients.max(1));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let (addr, last_edit, ready_tx, stop) = (
            args.addr.clone(),
            last_edit.clone(),
            ready_tx.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3).ok()?;
            let mut stream = tokio::net::TcpStream::connect(&addr).await.ok()?;
            let request = format!(
                "GET /ofrep/v1/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut lines = BufReader::new(stream).lines();
            // The head, up to the blank line.
            loop {
                let line = lines.next_line().await.ok()??;
                if line.is_empty() {
                    break;
                }
            }
            let _ = ready_tx.send(()).await;
            let mut events = 0u64;
            loop {
                let line = tokio::select! {
                    line = lines.next_line() => line,
                    () = stop.cancelled() => break,
                };
                let Ok(Some(line)) = line else { break };
                if line.contains("refetchEvaluation") {
                    events += 1;
                    let edit = *last_edit.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(edit) = edit {
                        let micros =
                            u64::try_from(edit.elapsed().as_micros()).unwrap_or(MAX_LATENCY_US);
                        histogram.saturating_record(micros.clamp(1, MAX_LATENCY_US));
                    }
                }
            }
            Some((events, histogram))
        }));
    }
    drop(ready_tx);
    let opened = Instant::now();
    for _ in 0..args.clients {
        if ready_rx.recv().await.is_none() {
            return Err("a stream failed to open".into());
        }
    }
    println!(
        "clients={} all open after {:?}",
        args.clients,
        opened.elapsed()
    );
    for generation in 1..=args.edits {
        tokio::time::sleep(Duration::from_millis(args.edit_interval_ms)).await;
        *last_edit.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        write_atomically(&path, &flag_document(generation))?;
    }
    tokio::time::sleep(Duration::from_millis(args.edit_interval_ms.max(1000))).await;
    if args.hold > 0 {
        println!("holding {} streams for {} s", args.clients, args.hold);
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
    }
    stop.cancel();
    let mut total = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    let (mut received, mut failed) = (0u64, 0usize);
    for task in tasks {
        match task.await {
            Ok(Some((events, h))) => {
                received += events;
                total.add(&h)?;
            }
            _ => failed += 1,
        }
    }
    println!(
        "events={received} (expected {}) failed_streams={failed}",
        args.edits * args.clients as u64
    );
    println!(
        "write_to_event_us p50={} p90={} p99={} p99.9={} max={}",
        total.value_at_quantile(0.5),
        total.value_at_quantile(0.9),
        total.value_at_quantile(0.99),
        total.value_at_quantile(0.999),
        total.max()
    );
    Ok(())
}
