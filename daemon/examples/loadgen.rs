//! Load generator for the evaluation port: unary `flagd.evaluation.v1` `ResolveBoolean` or `ResolveString`
//! calls with a realistic 5-attribute context, over a configurable number of HTTP/2 connections and
//! concurrent callers. Reports throughput and latency percentiles (HDR histogram, microsecond resolution).
//!
//! ```text
//! cargo run --release -p flagpole --example loadgen -- --addr http://127.0.0.1:8013 \
//!     --connections 4 --concurrency 64 --duration 10 --rpc bool --flag my-bool-flag
//! ```
//!
//! `--rate` switches from closed loop (each caller sends as soon as its previous call returns) to a fixed
//! total request rate; latency is then measured from each call's scheduled start, so queueing caused by a
//! slow server is counted (no coordinated omission). The schedule is one evenly spaced sequence of send
//! times (`1 / rate` apart) produced by a pacer task that polls the clock, handing each due time to
//! whichever caller is free. (Per-caller tokio intervals would fire all callers in the same instant every
//! `concurrency / rate` seconds, and tokio's 1 ms timer wheel would add up to 1 ms of lateness that the
//! scheduled-start measurement then charges to the server.) Open-loop runs also print `client_wait_us`,
//! the part of each latency spent before the call started (the client's own delays).
//!
//! `--rpc events` measures change propagation instead: it opens `--subscribers` EventStreams, rewrites
//! `--flag-file` (atomically, by rename) `--edits` times, and reports the latency from each write to each
//! subscriber's `configuration_change`. `--write-flag-file PATH` writes the initial document (100 flags by
//! default, `--flag-count`) and exits, so the daemon can be started on it first:
//!
//! ```text
//! loadgen --write-flag-file /tmp/flags.json
//! flagpole start -f /tmp/flags.json &
//! loadgen --rpc events --subscribers 1000 --flag-file /tmp/flags.json --edits 20
//! ```

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use flagpole_proto::evaluation_v1::service_client::ServiceClient;
use flagpole_proto::evaluation_v1::{
    ResolveAllRequest, ResolveBooleanRequest, ResolveStringRequest,
};
use hdrhistogram::Histogram;
use prost_types::value::Kind;
use prost_types::{Struct, Value};
use tokio::sync::{Mutex as AsyncMutex, mpsc};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// Highest latency the histogram records, in microseconds (60 s); slower calls are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// How long before a send time the pacer stops sleeping on the tokio timer (1 ms granularity) and starts
/// polling the clock.
const PACER_SPIN: Duration = Duration::from_millis(2);

/// Distinct simulated users; contexts cycle through them.
const USERS: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Rpc {
    /// `ResolveBoolean`.
    Bool,
    /// `ResolveString`.
    String,
    /// `ResolveAll` (every flag of the document, 100 by default).
    All,
    /// EventStream change propagation (needs `--flag-file`).
    Events,
}

/// EventStreams per HTTP/2 connection in events mode (servers commonly allow 100-200 concurrent streams).
const STREAMS_PER_CONNECTION: usize = 100;

/// Load generator for flagd-compatible evaluation servers.
#[derive(Debug, Parser)]
struct Args {
    /// Server address (events mode: several, comma-separated, the subscribers spread over them, e.g. a
    /// fleet of sidecars).
    #[arg(long, default_value = "http://127.0.0.1:8013")]
    addr: String,
    /// HTTP/2 connections to open.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Concurrent callers, spread over the connections.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Measured run length in seconds (after the warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Warm-up in seconds (not measured).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Which RPC to call.
    #[arg(long, value_enum, default_value_t = Rpc::Bool)]
    rpc: Rpc,
    /// Flag key (defaults: `loadgen-bool` / `loadgen-string`).
    #[arg(long)]
    flag: Option<String>,
    /// Fixed total request rate per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Client runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Events mode: EventStream subscribers to open.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Events mode: the flag file the daemon watches (rewritten by rename for each edit).
    #[arg(long)]
    flag_file: Option<std::path::PathBuf>,
    /// Events mode: how many edits to make.
    #[arg(long, default_value_t = 20)]
    edits: u64,
    /// Events mode: pause between edits, in milliseconds.
    #[arg(long, default_value_t = 500)]
    edit_interval_ms: u64,
    /// Events mode: keep the subscribers open this many seconds after the edits (to measure RSS).
    #[arg(long, default_value_t = 0)]
    hold: u64,
    /// Events mode: make each change an override through the daemon's admin API at this management URL
    /// (`http://HOST:PORT`, forcing `loadgen-bool` to `off` and `on` in turn) instead of a file edit.
    #[arg(long, value_name = "URL")]
    override_via: Option<String>,
    /// Events mode with --override-via: the admin token.
    #[arg(long, default_value = "")]
    override_token: String,
    /// Write the initial flag document to this path and exit.
    #[arg(long)]
    write_flag_file: Option<std::path::PathBuf>,
    /// Flags in a written flag document.
    #[arg(long, default_value_t = 100)]
    flag_count: usize,
}

#[derive(Debug, Default)]
struct WorkerResult {
    ok: u64,
    errors: u64,
    /// Scheduled start (or call start, closed loop) to response.
    histogram: Option<Histogram<u64>>,
    /// Open loop: scheduled start to call start, the client's own share of the latency (pacer and caller
    /// wake-ups, no free caller).
    wait: Option<Histogram<u64>>,
}

fn string(s: impl Into<String>) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

fn number(n: f64) -> Value {
    Value {
        kind: Some(Kind::NumberValue(n)),
    }
}

/// A realistic context: targeting key, email, country, plan, age.
fn context(user: u64) -> Struct {
    const COUNTRIES: [&str; 5] = ["de", "us", "fr", "jp", "br"];
    const PLANS: [&str; 3] = ["free", "pro", "enterprise"];
    let mut s = Struct::default();
    s.fields
        .insert("targetingKey".into(), string(format!("user-{user}")));
    s.fields
        .insert("email".into(), string(format!("user{user}@example.com")));
    s.fields
        .insert("country".into(), string(COUNTRIES[(user % 5) as usize]));
    s.fields
        .insert("plan".into(), string(PLANS[(user % 3) as usize]));
    s.fields
        .insert("age".into(), number((18 + user % 60) as f64));
    s
}

async fn call(client: &mut ServiceClient<Channel>, rpc: Rpc, flag: &str, user: u64) -> bool {
    let context = Some(context(user));
    match rpc {
        Rpc::Bool => client
            .resolve_boolean(ResolveBooleanRequest {
                flag_key: flag.to_owned(),
                context,
            })
            .await
            .is_ok(),
        Rpc::String | Rpc::Events => client
            .resolve_string(ResolveStringRequest {
                flag_key: flag.to_owned(),
                context,
            })
            .await
            .is_ok(),
        Rpc::All => client
            .resolve_all(ResolveAllRequest { context })
            .await
            .is_ok(),
    }
}

/// A flag document: `loadgen-bool` (its default flips with `generation`, and its metadata names the
/// generation, so every generation differs from every other one even when a run starts on a file an earlier
/// run left behind), `loadgen-string` with targeting on the 5-attribute context, and static filler flags up
/// to `count`.
fn flag_document(count: usize, generation: u64) -> String {
    let mut flags = vec![
        format!(
            r#""loadgen-bool":{{"state":"ENABLED","variants":{{"on":true,"off":false}},"defaultVariant":"{}","metadata":{{"generation":{}}}}}"#,
            if generation.is_multiple_of(2) { "on" } else { "off" },
            generation
        ),
        concat!(
            r#""loadgen-string":{"state":"ENABLED","variants":{"a":"alpha","b":"beta","c":"gamma"},"#,
            r#""defaultVariant":"a","targeting":{"if":[{"and":[{"in":[{"var":"country"},["de","fr"]]},"#,
            r#"{">=":[{"var":"age"},21]}]},"b",{"ends_with":[{"var":"email"},"@example.com"]},"c",null]}}"#
        )
        .to_owned(),
    ];
    for i in 0..count.saturating_sub(2) {
        flags.push(format!(
            r#""flag-{i}":{{"state":"ENABLED","variants":{{"on":true,"off":false}},"defaultVariant":"on"}}"#
        ));
    }
    format!("{{\"flags\":{{{}}}}}\n", flags.join(","))
}

/// Forces `variant` of `flag` through the admin API at `url` (`http://HOST:PORT`).
async fn put_override(
    url: &str,
    token: &str,
    flag: &str,
    variant: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = url
        .strip_prefix("http://")
        .ok_or("--override-via must be http://HOST:PORT")?;
    let body = format!(r#"{{"variant":"{variant}"}}"#);
    let request = format!(
        "PUT /api/v1/overrides/{flag} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(authority.trim_end_matches('/')).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    if !response.starts_with(b"HTTP/1.1 200") {
        return Err(format!("override refused: {}", String::from_utf8_lossy(&response)).into());
    }
    Ok(())
}

/// Replaces `path` atomically (write a sibling, then rename).
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("loadgen-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

async fn events(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    use flagpole_proto::evaluation_v1::EventStreamRequest;
    use std::sync::{Arc, Mutex, PoisonError};

    let path = args.flag_file.clone();
    if path.is_none() && args.override_via.is_none() {
        return Err("--rpc events needs --flag-file or --override-via".into());
    }
    let subscribers = args.subscribers.max(1);
    let addrs: Vec<&str> = args.addr.split(',').filter(|a| !a.is_empty()).collect();
    let connections = args
        .connections
        .max(subscribers.div_ceil(STREAMS_PER_CONNECTION))
        .max(addrs.len());
    let mut channels = Vec::with_capacity(connections);
    for i in 0..connections {
        channels.push(
            Endpoint::from_shared(addrs[i % addrs.len()].to_owned())?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    let last_edit: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(subscribers);
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = Vec::with_capacity(subscribers);
    for i in 0..subscribers {
        let mut client = ServiceClient::new(channels[i % connections].clone());
        let last_edit = last_edit.clone();
        let ready_tx = ready_tx.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3).ok()?;
            // Latency of this subscriber's n-th change, for the last-subscriber-per-edit figure.
            let mut by_change: Vec<u64> = Vec::new();
            let mut stream = client
                .event_stream(EventStreamRequest {})
                .await
                .ok()?
                .into_inner();
            let mut changes = 0u64;
            loop {
                let message = tokio::select! {
                    message = stream.message() => message,
                    () = stop.cancelled() => break,
                };
                let Ok(Some(message)) = message else { break };
                match message.r#type.as_str() {
                    "provider_ready" => {
                        let _ = ready_tx.send(()).await;
                    }
                    "configuration_change" => {
                        changes += 1;
                        let edit = *last_edit.lock().unwrap_or_else(PoisonError::into_inner);
                        if let Some(edit) = edit {
                            let micros =
                                u64::try_from(edit.elapsed().as_micros()).unwrap_or(MAX_LATENCY_US);
                            histogram.saturating_record(micros.clamp(1, MAX_LATENCY_US));
                            by_change.push(micros);
                        }
                    }
                    _ => {}
                }
            }
            Some((changes, histogram, by_change))
        }));
    }
    drop(ready_tx);
    let opened = Instant::now();
    for _ in 0..subscribers {
        if ready_rx.recv().await.is_none() {
            return Err("a subscriber failed before provider_ready".into());
        }
    }
    println!(
        "subscribers={subscribers} connections={connections} all ready after {:?}",
        opened.elapsed()
    );

    for generation in 1..=args.edits {
        tokio::time::sleep(Duration::from_millis(args.edit_interval_ms)).await;
        *last_edit.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        match (&args.override_via, &path) {
            (Some(url), _) => {
                let variant = if generation.is_multiple_of(2) {
                    "on"
                } else {
                    "off"
                };
                put_override(url, &args.override_token, "loadgen-bool", variant).await?;
            }
            (None, Some(path)) => {
                write_atomically(path, &flag_document(args.flag_count, generation))?
            }
            (None, None) => unreachable!("checked above"),
        }
    }
    tokio::time::sleep(Duration::from_millis(args.edit_interval_ms.max(1000))).await;
    if args.hold > 0 {
        println!("holding {subscribers} subscribers for {} s", args.hold);
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
    }
    stop.cancel();
    let mut total = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    let (mut received, mut failed) = (0u64, 0usize);
    // Per edit: when the last subscriber saw it (the slowest of all), where every subscriber saw it.
    let mut last_per_edit: Vec<Option<u64>> = vec![Some(0); usize::try_from(args.edits)?];
    for task in tasks {
        match task.await {
            Ok(Some((changes, h, by_change))) => {
                received += changes;
                total.add(&h)?;
                for (edit, last) in last_per_edit.iter_mut().enumerate() {
                    *last = match (*last, by_change.get(edit)) {
                        (Some(a), Some(b)) => Some(a.max(*b)),
                        _ => None,
                    };
                }
            }
            _ => failed += 1,
        }
    }
    let mut last = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    let complete = last_per_edit.iter().flatten().count();
    for micros in last_per_edit.into_iter().flatten() {
        last.saturating_record(micros.clamp(1, MAX_LATENCY_US));
    }
    println!(
        "last_subscriber_us edits_complete={complete} p50={} p99={} max={}",
        last.value_at_quantile(0.50),
        last.value_at_quantile(0.99),
        last.max()
    );
    println!(
        "edits={} change_events={received} expected={} failed_subscribers={failed}",
        args.edits,
        args.edits * subscribers as u64
    );
    println!(
        "write_to_event_us p50={} p90={} p99={} p99.9={} max={}",
        total.value_at_quantile(0.50),
        total.value_at_quantile(0.90),
        total.value_at_quantile(0.99),
        total.value_at_quantile(0.999),
        total.max()
    );
    Ok(())
}

/// The shared queue of scheduled send times in open-loop mode.
type Tickets = Arc<AsyncMutex<mpsc::UnboundedReceiver<Instant>>>;

/// Produces the open-loop schedule: send times exactly `1 / rate` apart from `start` until `end`, each put
/// on the queue as soon as it is due. It runs as a task on the client runtime and polls the clock between
/// the other tasks (yielding, never parking the runtime) from [`PACER_SPIN`] before each send time, so a
/// send is released within microseconds of its time without a cross-thread wake-up; further ahead it sleeps
/// on the tokio timer. Returns when the schedule is complete (dropping the sender ends the callers). The
/// cost is that the client runtime keeps one core busy: pin it to a core of its own (`taskset`).
async fn pace(rate: u64, start: Instant, end: Instant, tickets: mpsc::UnboundedSender<Instant>) {
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut next = start;
    while next < end {
        let now = Instant::now();
        while next <= now && next < end {
            if tickets.send(next).is_err() {
                return;
            }
            next += period;
        }
        if next.saturating_duration_since(now) > PACER_SPIN * 2 {
            tokio::time::sleep_until(next - PACER_SPIN).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

async fn worker(
    mut client: ServiceClient<Channel>,
    args_rpc: Rpc,
    flag: String,
    id: u64,
    measure_from: Instant,
    end: Instant,
    tickets: Option<Tickets>,
) -> WorkerResult {
    let (mut histogram, mut wait) = match (
        Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3),
        Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3),
    ) {
        (Ok(h), Ok(w)) => (h, w),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("histogram: {e}");
            return WorkerResult::default();
        }
    };
    let mut result = WorkerResult::default();
    let mut user = id * 7919;
    loop {
        let scheduled = match &tickets {
            Some(queue) => match queue.lock().await.recv().await {
                Some(at) => at,
                None => break,
            },
            None => Instant::now(),
        };
        if scheduled >= end {
            break;
        }
        user = (user + 1) % USERS;
        let started = Instant::now();
        let ok = call(&mut client, args_rpc, &flag, user).await;
        if scheduled < measure_from {
            continue;
        }
        if ok {
            result.ok += 1;
            let waited = u64::try_from((started - scheduled).as_micros()).unwrap_or(MAX_LATENCY_US);
            wait.saturating_record(waited.clamp(1, MAX_LATENCY_US));
            let micros = u64::try_from(scheduled.elapsed().as_micros()).unwrap_or(MAX_LATENCY_US);
            histogram.saturating_record(micros.clamp(1, MAX_LATENCY_US));
        } else {
            result.errors += 1;
        }
    }
    result.histogram = Some(histogram);
    result.wait = Some(wait);
    result
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(path) = &args.write_flag_file {
        write_atomically(path, &flag_document(args.flag_count, 0))?;
        return Ok(());
    }
    if args.rpc == Rpc::Events {
        return events(&args).await;
    }
    let flag = args.flag.clone().unwrap_or_else(|| match args.rpc {
        Rpc::Bool => "loadgen-bool".to_owned(),
        Rpc::String | Rpc::Events | Rpc::All => "loadgen-string".to_owned(),
    });
    let connections = args.connections.max(1);
    let concurrency = args.concurrency.max(1);
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(
            Endpoint::from_shared(args.addr.clone())?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    // Fail fast on a wrong flag key or address.
    let mut probe = ServiceClient::new(channels[0].clone());
    if !call(&mut probe, args.rpc, &flag, 0).await {
        return Err(format!("probe call for flag {flag:?} failed").into());
    }

    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let end = measure_from + Duration::from_secs(args.duration);
    let mut pacer = None;
    let tickets = (args.rate > 0).then(|| {
        let (sender, receiver) = mpsc::unbounded_channel();
        let rate = args.rate;
        pacer = Some(tokio::spawn(pace(rate, start, end, sender)));
        Arc::new(AsyncMutex::new(receiver))
    });
    let mut tasks = Vec::with_capacity(concurrency);
    for id in 0..concurrency {
        let client = ServiceClient::new(channels[id % connections].clone());
        tasks.push(tokio::spawn(worker(
            client,
            args.rpc,
            flag.clone(),
            id as u64,
            measure_from,
            end,
            tickets.clone(),
        )));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    let mut waits = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    let (mut ok, mut errors) = (0u64, 0u64);
    drop(tickets);
    for task in tasks {
        let result = task.await?;
        ok += result.ok;
        errors += result.errors;
        if let Some(h) = result.histogram {
            total.add(&h)?;
        }
        if let Some(w) = result.wait {
            waits.add(&w)?;
        }
    }
    if let Some(pacer) = pacer {
        pacer.await?;
    }
    let seconds = args.duration as f64;
    println!(
        "rpc={:?} flag={flag} connections={connections} concurrency={concurrency} rate={} duration={}s",
        args.rpc,
        if args.rate == 0 {
            "max".to_owned()
        } else {
            args.rate.to_string()
        },
        args.duration
    );
    println!(
        "requests={ok} errors={errors} throughput={:.0} req/s",
        ok as f64 / seconds
    );
    println!(
        "latency_us p50={} p90={} p99={} p99.9={} max={}",
        total.value_at_quantile(0.50),
        total.value_at_quantile(0.90),
        total.value_at_quantile(0.99),
        total.value_at_quantile(0.999),
        total.max()
    );
    if args.rate > 0 {
        println!(
            "client_wait_us p50={} p90={} p99={} p99.9={} max={} (scheduled start to call start, included above)",
            waits.value_at_quantile(0.50),
            waits.value_at_quantile(0.90),
            waits.value_at_quantile(0.99),
            waits.value_at_quantile(0.999),
            waits.max()
        );
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}
