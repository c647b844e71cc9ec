//! Reliability under churn: the flag file is rewritten every 10 ms (valid edits in place, invalid content,
//! atomic rename-replace, deletes and re-creation) while 200 EventStream subscribers (half on evaluation v1,
//! half on v2) and 50 SyncFlags streams listen and a load generator evaluates, all against the `flagpole` binary running as a child.
//!
//! What it asserts, at the end:
//! - every EventStream subscriber got `provider_ready` first, and replaying its `configuration_change` events
//!   over the initial key set gives exactly the keys of the final file (`write` only for keys it did not
//!   have, `update`/`delete` only for keys it had);
//! - every key whose definition differs between the initial and the final file was announced to every
//!   subscriber;
//! - every SyncFlags stream's last configuration equals the final file;
//! - no stream ended before the test closed it;
//! - no evaluation failed, except NOT_FOUND for flags that come and go;
//! - the daemon's RSS is flat: its peak in the last quarter of the churn, and its level after it, are within
//!   [`RSS_SLACK_KIB`] of its peak in the first quarter (no growth per write, event or connection); its
//!   count of open file descriptors is back at its level before the churn once the daemon has closed the
//!   flood's connections.
//!
//! A connection flood runs beside the churn: every [`FLOOD_INTERVAL`] a burst of [`FLOOD_CONNECTIONS`]
//! TCP connections that never send a request opens on the evaluation and OFREP ports; the daemon closes
//! them after its first-request deadline.
//!
//! What it does not do: assert anything about latency or throughput (it prints them in one `churn:` line;
//! BENCHMARKS.md keeps the figures), or run long by default. The churn lasts `FLAGPOLE_CHURN_SECS` seconds
//! (default 8, so the test stays well under a minute), with `FLAGPOLE_CHURN_SUBSCRIBERS` EventStream
//! subscribers (default 200); BENCHMARKS.md documents the 10-minute soak with 1,000.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flagpole_proto::evaluation_v1::service_client::ServiceClient;
use flagpole_proto::evaluation_v1::{EventStreamRequest, ResolveStringRequest};
use flagpole_proto::evaluation_v2::EventStreamRequest as EventStreamRequestV2;
use flagpole_proto::evaluation_v2::service_client::ServiceClient as ServiceClientV2;
use flagpole_proto::prost_types;
use flagpole_proto::sync_v1::SyncFlagsRequest;
use flagpole_proto::sync_v1::flag_sync_service_client::FlagSyncServiceClient;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use crate::clients::{ChildDaemon, tail, write_json};

/// EventStream subscribers by default (`FLAGPOLE_CHURN_SUBSCRIBERS`), half on `flagd.evaluation.v1`,
/// half on `flagd.evaluation.v2`.
const EVENT_SUBSCRIBERS: usize = 200;
/// Idle connections opened per flood burst, per port (evaluation and OFREP).
const FLOOD_CONNECTIONS: usize = 150;
/// Time between two flood bursts.
const FLOOD_INTERVAL: Duration = Duration::from_secs(3);
/// Open file descriptors the daemon may have beyond its count before the churn once everything settled.
const FD_SLACK: usize = 16;
/// SyncFlags streams.
const SYNC_SUBSCRIBERS: usize = 50;
/// Streams share HTTP/2 connections, this many per connection (well under any server's stream limit).
const STREAMS_PER_CONNECTION: usize = 20;
/// Load-generator tasks; each sends one ResolveString, then pauses [`LOAD_PAUSE`].
const LOAD_TASKS: usize = 4;
/// Pause between two evaluations of one load task, so that the load does not starve the daemon of the
/// two cores.
const LOAD_PAUSE: Duration = Duration::from_millis(1);
/// Time between two writes of the flag file.
const WRITE_INTERVAL: Duration = Duration::from_millis(10);
/// Default churn duration in seconds (override with `FLAGPOLE_CHURN_SECS`).
const DEFAULT_CHURN_SECS: u64 = 8;
/// How long every stream may take to be connected, and later to converge on the final file.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Flags that never change.
const STABLE_FLAGS: usize = 10;
/// Flags that come and go and change with every generation.
const CHURN_FLAGS: usize = 20;
/// RSS in the last quarter of the churn may exceed its peak in the first quarter by this much, in KiB: the
/// working set (stream buffers, allocator pools, the flood's connections) is reached early, and a leak per
/// write, event or connection would keep growing past it (a run writes about 100 times a second and delivers
/// tens of thousands of events). After the churn the RSS must also be back under that level.
const RSS_SLACK_KIB: u64 = 16 * 1024;

/// The flag file of generation `generation`: `stable-*` never change; `churn-k` is absent when
/// `(generation + k) % 3 == 0`, flips its default variant every other generation, and every fifth one has a
/// targeting rule that names the generation (so it changes every generation).
fn generation_content(generation: u64) -> Value {
    let mut flags = Map::new();
    for k in 0..STABLE_FLAGS {
        flags.insert(
            format!("stable-{k}"),
            json!({"state": "ENABLED", "variants": {"a": "stable-a", "b": "stable-b"}, "defaultVariant": "a"}),
        );
    }
    for k in 0..CHURN_FLAGS as u64 {
        if (generation + k).is_multiple_of(3) {
            continue;
        }
        let default = if (generation / 2 + k).is_multiple_of(2) {
            "a"
        } else {
            "b"
        };
        let mut flag = json!({
            "state": "ENABLED",
            "variants": {"a": format!("churn-{k}-a"), "b": format!("churn-{k}-b")},
            "defaultVariant": default,
        });
        if k % 5 == 0 {
            flag["targeting"] =
                json!({"if": [{"==": [{"var": "generation"}, generation]}, "b", null]});
        }
        flags.insert(format!("churn-{k}"), flag);
    }
    json!({"flags": flags})
}

/// The parts of each flag a subscriber must see, by key: state, default variant, variants, targeting.
fn comparable(flags: &Value) -> BTreeMap<String, Value> {
    let Some(map) = flags.get("flags").and_then(Value::as_object) else {
        return BTreeMap::new();
    };
    map.iter()
        .map(|(key, flag)| {
            let targeting = match flag.get("targeting") {
                None | Some(Value::Null) => Value::Null,
                Some(Value::Object(rule)) if rule.is_empty() => Value::Null,
                Some(rule) => rule.clone(),
            };
            let default = match flag.get("defaultVariant") {
                None | Some(Value::Null) => Value::from(""),
                Some(v) => v.clone(),
            };
            let view = json!({
                "state": flag.get("state").cloned().unwrap_or(Value::Null),
                "defaultVariant": default,
                "variants": flag.get("variants").cloned().unwrap_or(Value::Null),
                "targeting": targeting,
            });
            (key.clone(), view)
        })
        .collect()
}

/// One kind of write to the flag file.
#[derive(Debug, Clone, Copy)]
enum Write {
    /// Truncate and write a valid generation in place (the reader may see it half-written).
    ValidInPlace,
    /// Write content that does not parse: the daemon must keep the last good flags.
    Invalid,
    /// Write a valid generation to a temp file in the same directory and rename it over the flag file.
    ValidRename,
    /// Remove the file: the daemon must keep the last flags and notice when it comes back.
    Delete,
}

/// The writes, in the order they repeat. After `Delete` comes `ValidInPlace`, which re-creates the file.
const WRITE_CYCLE: [Write; 5] = [
    Write::ValidInPlace,
    Write::Invalid,
    Write::ValidRename,
    Write::Delete,
    Write::ValidInPlace,
];

/// Writes the flag file every [`WRITE_INTERVAL`] for `duration`, then one last valid generation in place;
/// returns the final content and counts of each kind of write.
fn churn_file(
    flags: &Path,
    first_generation: u64,
    duration: Duration,
) -> (Value, BTreeMap<&'static str, u64>) {
    let mut counts = BTreeMap::new();
    let mut generation = first_generation;
    let temp = flags.with_extension("json.tmp");
    let start = Instant::now();
    let mut step = 0usize;
    while start.elapsed() < duration {
        let write = WRITE_CYCLE[step % WRITE_CYCLE.len()];
        step += 1;
        match write {
            Write::ValidInPlace => {
                generation += 1;
                write_json(flags, &generation_content(generation));
                *counts.entry("valid in place").or_default() += 1;
            }
            Write::Invalid => {
                let garbage = format!("{{\"flags\": {{\"broken-{generation}\": ");
                fs::write(flags, garbage)
                    .unwrap_or_else(|error| panic!("write invalid content: {error}"));
                *counts.entry("invalid").or_default() += 1;
            }
            Write::ValidRename => {
                generation += 1;
                write_json(&temp, &generation_content(generation));
                fs::rename(&temp, flags)
                    .unwrap_or_else(|error| panic!("rename over the flag file: {error}"));
                *counts.entry("atomic rename").or_default() += 1;
            }
            Write::Delete => {
                fs::remove_file(flags)
                    .unwrap_or_else(|error| panic!("delete the flag file: {error}"));
                *counts.entry("delete").or_default() += 1;
            }
        }
        // Writes keep a fixed 10 ms schedule, however long a write took.
        let next = start + WRITE_INTERVAL * u32::try_from(step).unwrap_or(u32::MAX);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    generation += 1;
    let last = generation_content(generation);
    write_json(flags, &last);
    *counts.entry("valid in place").or_default() += 1;
    (last, counts)
}

/// What one EventStream subscriber saw.
#[derive(Debug, Default)]
struct EventView {
    /// The first message was `provider_ready`.
    ready: bool,
    /// Problems: wrong first message, inconsistent event types, malformed data.
    problems: Vec<String>,
    /// Keys the subscriber believes exist, from the initial file and the events since.
    keys: BTreeSet<String>,
    /// Every key named in a `configuration_change`.
    announced: BTreeSet<String>,
    /// `configuration_change` messages received.
    changes: u64,
    /// Why the stream ended before the test closed it.
    died: Option<String>,
}

/// What one SyncFlags stream saw.
#[derive(Debug, Default)]
struct SyncView {
    /// The last configuration received, as [`comparable`] flags.
    last: Option<BTreeMap<String, Value>>,
    messages: u64,
    problems: Vec<String>,
    died: Option<String>,
}

/// Converts a protobuf `Struct` to JSON.
fn struct_to_json(value: &prost_types::Struct) -> Value {
    Value::Object(
        value
            .fields
            .iter()
            .map(|(key, field)| (key.clone(), value_to_json(field)))
            .collect(),
    )
}

fn value_to_json(value: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => json!(n),
        Some(Kind::StringValue(s)) => Value::from(s.clone()),
        Some(Kind::BoolValue(b)) => Value::from(*b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.iter().map(value_to_json).collect())
        }
    }
}

/// Applies one `configuration_change` to the subscriber's view.
fn apply_change(view: &mut EventView, data: Option<&prost_types::Struct>) {
    view.changes += 1;
    let data = data.map(struct_to_json).unwrap_or(Value::Null);
    let Some(flags) = data.get("flags").and_then(Value::as_object) else {
        view.problems
            .push(format!("configuration_change without a flags map: {data}"));
        return;
    };
    for (key, change) in flags {
        view.announced.insert(key.clone());
        let kind = change.get("type").and_then(Value::as_str).unwrap_or("");
        let known = view.keys.contains(key);
        match (kind, known) {
            ("write", false) => {
                view.keys.insert(key.clone());
            }
            ("update", true) => {}
            ("delete", true) => {
                view.keys.remove(key);
            }
            _ => view.problems.push(format!(
                "`{kind}` for {key}, which the subscriber {} have",
                if known { "did" } else { "did not" }
            )),
        }
    }
}

async fn connect(port: u16) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap_or_else(|error| panic!("endpoint: {error}"));
    endpoint
        .connect()
        .await
        .unwrap_or_else(|error| panic!("connect to 127.0.0.1:{port}: {error}"))
}

/// An EventStream message reduced to what both protocol versions carry.
type Event = Result<(String, Option<prost_types::Struct>), tonic::Status>;

/// Opens an EventStream on `flagd.evaluation.v1` or (when `v2`) `flagd.evaluation.v2`.
async fn open_event_stream(
    channel: Channel,
    v2: bool,
) -> Result<BoxStream<'static, Event>, tonic::Status> {
    if v2 {
        let mut client = ServiceClientV2::new(channel);
        let stream = client
            .event_stream(EventStreamRequestV2 {})
            .await?
            .into_inner();
        Ok(stream.map(|m| m.map(|m| (m.r#type, m.data))).boxed())
    } else {
        let mut client = ServiceClient::new(channel);
        let stream = client
            .event_stream(EventStreamRequest {})
            .await?
            .into_inner();
        Ok(stream.map(|m| m.map(|m| (m.r#type, m.data))).boxed())
    }
}

async fn event_subscriber(
    channel: Channel,
    v2: bool,
    initial: BTreeSet<String>,
    view: Arc<Mutex<EventView>>,
    mut stop: watch::Receiver<bool>,
) {
    let set = |f: &dyn Fn(&mut EventView)| {
        if let Ok(mut view) = view.lock() {
            f(&mut view);
        }
    };
    set(&|v| v.keys = initial.clone());
    let mut stream = match open_event_stream(channel, v2).await {
        Ok(stream) => stream,
        Err(status) => {
            set(&|v| v.died = Some(format!("EventStream refused: {status}")));
            return;
        }
    };
    let mut first = true;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            message = stream.next() => {
                let (kind, data) = match message {
                    Some(Ok(message)) => message,
                    None => {
                        set(&|v| v.died = Some("the server ended the stream".to_owned()));
                        return;
                    }
                    Some(Err(status)) => {
                        let reason = format!("stream error: {status}");
                        set(&|v| v.died = Some(reason.clone()));
                        return;
                    }
                };
                let Ok(mut v) = view.lock() else { return };
                if first {
                    first = false;
                    if kind == "provider_ready" {
                        v.ready = true;
                    } else {
                        v.problems.push(format!("first message was `{}`, not provider_ready", kind));
                    }
                    continue;
                }
                match kind.as_str() {
                    "configuration_change" => apply_change(&mut v, data.as_ref()),
                    "keep_alive" => {}
                    other => v.problems.push(format!("unexpected event `{other}`")),
                }
            }
        }
    }
}

async fn sync_subscriber(
    channel: Channel,
    view: Arc<Mutex<SyncView>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut client = FlagSyncServiceClient::new(channel);
    let request = SyncFlagsRequest {
        provider_id: "churn".to_owned(),
        ..Default::default()
    };
    let mut stream = match client.sync_flags(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            if let Ok(mut v) = view.lock() {
                v.died = Some(format!("SyncFlags refused: {status}"));
            }
            return;
        }
    };
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            message = stream.message() => {
                let Ok(mut v) = view.lock() else { return };
                match message {
                    Ok(Some(message)) => {
                        v.messages += 1;
                        match serde_json::from_str::<Value>(&message.flag_configuration) {
                            Ok(config) => v.last = Some(comparable(&config)),
                            Err(error) => v.problems.push(format!("flag_configuration is not JSON: {error}")),
                        }
                    }
                    Ok(None) => {
                        v.died = Some("the server ended the stream".to_owned());
                        return;
                    }
                    Err(status) => {
                        v.died = Some(format!("stream error: {status}"));
                        return;
                    }
                }
            }
        }
    }
}

/// Counts of the load generator.
#[derive(Debug, Default)]
struct Load {
    ok: AtomicU64,
    /// NOT_FOUND for a `churn-*` flag, which really is missing in some generations.
    missing: AtomicU64,
    failures: Mutex<Vec<String>>,
    /// Latency of every evaluation, for the summary line (not asserted).
    latencies: Mutex<Vec<Duration>>,
}

impl Load {
    /// p50, p99 and max of the evaluation latencies.
    fn percentiles(&self) -> (Duration, Duration, Duration) {
        let Ok(mut all) = self.latencies.lock() else {
            return Default::default();
        };
        all.sort();
        let at = |q: f64| {
            let index = ((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1));
            all.get(index).copied().unwrap_or_default()
        };
        (at(0.5), at(0.99), all.last().copied().unwrap_or_default())
    }
}

async fn load_task(channel: Channel, task: usize, load: Arc<Load>, running: Arc<AtomicBool>) {
    let mut client = ServiceClient::new(channel);
    let mut n = task;
    while running.load(Ordering::Relaxed) {
        n += LOAD_TASKS;
        let churn = n.is_multiple_of(2);
        let key = if churn {
            format!("churn-{}", n % CHURN_FLAGS)
        } else {
            format!("stable-{}", n % STABLE_FLAGS)
        };
        let request = ResolveStringRequest {
            flag_key: key.clone(),
            context: None,
        };
        let sent = Instant::now();
        let result = client.resolve_string(request).await;
        if let Ok(mut latencies) = load.latencies.lock() {
            latencies.push(sent.elapsed());
        }
        match result {
            Ok(_) => {
                load.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(status) if churn && status.code() == tonic::Code::NotFound => {
                load.missing.fetch_add(1, Ordering::Relaxed);
            }
            Err(status) => {
                if let Ok(mut failures) = load.failures.lock()
                    && failures.len() < 20
                {
                    failures.push(format!("{key}: {status}"));
                }
            }
        }
        tokio::time::sleep(LOAD_PAUSE).await;
    }
}

/// CPU time the daemon used so far (user + system), from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // Linux reports these in clock ticks of 1/100 s (USER_HZ) on every architecture it supports here.
    Duration::from_millis(ticks * 10)
}

/// The daemon's resident set size in KiB (`VmRSS` of `/proc/PID/status`).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|error| panic!("read /proc/{pid}/status: {error}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// The daemon's open file descriptors.
fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn event_subscribers() -> usize {
    std::env::var("FLAGPOLE_CHURN_SUBSCRIBERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(EVENT_SUBSCRIBERS)
}

/// Opens bursts of idle connections to `ports` until `running` is cleared; returns how many were opened
/// and the last bursts, still open on the client's side (the daemon must close them itself).
async fn flood(ports: [u16; 2], running: Arc<AtomicBool>) -> (usize, Vec<tokio::net::TcpStream>) {
    let mut opened = 0;
    let mut held: Vec<(Instant, Vec<tokio::net::TcpStream>)> = Vec::new();
    while running.load(Ordering::Relaxed) {
        let mut burst = Vec::new();
        for port in ports {
            for _ in 0..FLOOD_CONNECTIONS {
                if let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    burst.push(stream);
                }
            }
        }
        opened += burst.len();
        held.push((Instant::now(), burst));
        held.retain(|(at, _)| at.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(FLOOD_INTERVAL).await;
    }
    (
        opened,
        held.into_iter().flat_map(|(_, burst)| burst).collect(),
    )
}

fn churn_duration() -> Duration {
    let secs = std::env::var("FLAGPOLE_CHURN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CHURN_SECS);
    Duration::from_secs(secs)
}

/// Polls `done` every 100 ms until it holds or [`SETTLE_TIMEOUT`] passes; returns whether it held.
async fn settle(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_keeps_every_stream_alive_and_consistent() {
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("temp dir: {error}"));
    let flags = dir.path().join("flags.json");
    let initial = generation_content(0);
    write_json(&flags, &initial);
    let mut daemon = ChildDaemon::start(&flags, dir.path(), &[]);
    let initial_view = comparable(&initial);
    let initial_keys: BTreeSet<String> = initial_view.keys().cloned().collect();

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    // EventStream subscribers on the evaluation port.
    let mut event_views = Vec::new();
    let subscribers = event_subscribers();
    let mut channel = connect(daemon.ports.evaluation).await;
    for i in 0..subscribers {
        if i > 0 && i % STREAMS_PER_CONNECTION == 0 {
            channel = connect(daemon.ports.evaluation).await;
        }
        let view = Arc::new(Mutex::new(EventView::default()));
        event_views.push(Arc::clone(&view));
        tasks.push(tokio::spawn(event_subscriber(
            channel.clone(),
            i % 2 == 1, // v2 for every other subscriber
            initial_keys.clone(),
            view,
            stop_rx.clone(),
        )));
    }
    // SyncFlags streams on the sync port.
    let mut sync_views = Vec::new();
    for i in 0..SYNC_SUBSCRIBERS {
        if i % STREAMS_PER_CONNECTION == 0 {
            channel = connect(daemon.ports.sync).await;
        }
        let view = Arc::new(Mutex::new(SyncView::default()));
        sync_views.push(Arc::clone(&view));
        tasks.push(tokio::spawn(sync_subscriber(
            channel.clone(),
            view,
            stop_rx.clone(),
        )));
    }

    let connected = settle(|| {
        event_views
            .iter()
            .all(|v| v.lock().is_ok_and(|v| v.ready || v.died.is_some()))
            && sync_views
                .iter()
                .all(|v| v.lock().is_ok_and(|v| v.last.is_some() || v.died.is_some()))
    })
    .await;
    assert!(
        connected,
        "not every stream got its first message within {SETTLE_TIMEOUT:?}; daemon stderr:\n{}",
        daemon.stderr()
    );
    let rss_before = rss_kib(daemon.pid());
    let fds_before = open_fds(daemon.pid());
    let cpu_before = cpu_time(daemon.pid());

    // The load generator.
    let load = Arc::new(Load::default());
    let running = Arc::new(AtomicBool::new(true));
    let load_channel = connect(daemon.ports.evaluation).await;
    let mut load_tasks = Vec::new();
    for task in 0..LOAD_TASKS {
        load_tasks.push(tokio::spawn(load_task(
            load_channel.clone(),
            task,
            Arc::clone(&load),
            Arc::clone(&running),
        )));
    }

    let flooding = Arc::new(AtomicBool::new(true));
    let flooder = tokio::spawn(flood(
        [daemon.ports.evaluation, daemon.ports.ofrep],
        Arc::clone(&flooding),
    ));

    // The churn, on a blocking thread; RSS is sampled meanwhile.
    let duration = churn_duration();
    let writer_path = flags.clone();
    let writer = tokio::task::spawn_blocking(move || churn_file(&writer_path, 0, duration));
    // Peak RSS per quarter of the churn: flat means the last quarter is no higher than the first.
    let mut rss_quarters = [0u64; 4];
    let churn_started = Instant::now();
    while !writer.is_finished() {
        let rss = rss_kib(daemon.pid());
        let quarter =
            ((churn_started.elapsed().as_secs_f64() / duration.as_secs_f64()) * 4.0) as usize;
        let slot = &mut rss_quarters[quarter.min(3)];
        *slot = (*slot).max(rss);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (last, writes) = writer
        .await
        .unwrap_or_else(|error| panic!("the writer panicked: {error}"));
    running.store(false, Ordering::Relaxed);
    flooding.store(false, Ordering::Relaxed);
    for task in load_tasks {
        let _ = task.await;
    }
    let (flooded, _still_open) = flooder.await.unwrap_or_default();
    let final_view = comparable(&last);
    let final_keys: BTreeSet<String> = final_view.keys().cloned().collect();

    // Every stream converges on the final file (or has died, which fails below with its reason).
    let converged = settle(|| {
        event_views.iter().all(|v| {
            v.lock()
                .is_ok_and(|v| v.keys == final_keys || v.died.is_some())
        }) && sync_views.iter().all(|v| {
            v.lock()
                .is_ok_and(|v| v.last.as_ref() == Some(&final_view) || v.died.is_some())
        })
    })
    .await;
    // The flood's connections are closed by the daemon's first-request deadline (10 s).
    let pid = daemon.pid();
    let fds_settled = settle(|| open_fds(pid) <= fds_before + FD_SLACK).await;
    let fds_after = open_fds(pid);
    let rss_after = rss_kib(daemon.pid());
    let cpu_used = cpu_time(daemon.pid()).saturating_sub(cpu_before);
    let alive = daemon.is_running();

    let changed: BTreeSet<String> = initial_keys
        .union(&final_keys)
        .filter(|key| initial_view.get(*key) != final_view.get(*key))
        .cloned()
        .collect();

    let mut problems = Vec::new();
    let mut events_delivered = 0;
    for (i, view) in event_views.iter().enumerate() {
        let Ok(view) = view.lock() else {
            problems.push(format!("event subscriber {i}: poisoned"));
            continue;
        };
        events_delivered += view.changes;
        if let Some(died) = &view.died {
            problems.push(format!("event subscriber {i} died: {died}"));
        }
        if !view.ready {
            problems.push(format!("event subscriber {i} never got provider_ready"));
        }
        problems.extend(
            view.problems
                .iter()
                .take(3)
                .map(|p| format!("event subscriber {i}: {p}")),
        );
        if view.keys != final_keys {
            let missing: Vec<_> = final_keys.difference(&view.keys).collect();
            let extra: Vec<_> = view.keys.difference(&final_keys).collect();
            problems.push(format!(
                "event subscriber {i}: last view differs from the final file (missing {missing:?}, extra {extra:?})"
            ));
        }
        let unannounced: Vec<_> = changed.difference(&view.announced).collect();
        if !unannounced.is_empty() {
            problems.push(format!(
                "event subscriber {i}: changed keys never announced: {unannounced:?}"
            ));
        }
    }
    let mut sync_messages = 0;
    for (i, view) in sync_views.iter().enumerate() {
        let Ok(view) = view.lock() else {
            problems.push(format!("sync subscriber {i}: poisoned"));
            continue;
        };
        sync_messages += view.messages;
        if let Some(died) = &view.died {
            problems.push(format!("sync subscriber {i} died: {died}"));
        }
        problems.extend(
            view.problems
                .iter()
                .take(3)
                .map(|p| format!("sync subscriber {i}: {p}")),
        );
        if view.last.as_ref() != Some(&final_view) {
            let keys: Option<Vec<&String>> = view.last.as_ref().map(|last| last.keys().collect());
            problems.push(format!(
                "sync subscriber {i}: last configuration differs from the final file (its keys: {keys:?})"
            ));
        }
    }
    if let Ok(failures) = load.failures.lock() {
        problems.extend(failures.iter().map(|f| format!("evaluation failed: {f}")));
    }
    if !alive {
        problems.push("the daemon exited".to_owned());
    }
    let warmed = rss_quarters[0].max(rss_before);
    if rss_quarters[3] > warmed + RSS_SLACK_KIB || rss_after > warmed + RSS_SLACK_KIB {
        problems.push(format!(
            "RSS kept growing: {rss_before} KiB before, peaks per quarter {rss_quarters:?} KiB, {rss_after} KiB \
             after (slack {RSS_SLACK_KIB} KiB over the first quarter)"
        ));
    }

    if !fds_settled {
        problems.push(format!(
            "open file descriptors did not return to their level before the churn: {fds_before} before, \
             {fds_after} after (slack {FD_SLACK})"
        ));
    }

    let ok = load.ok.load(Ordering::Relaxed);
    let (p50, p99, max) = load.percentiles();
    let missing = load.missing.load(Ordering::Relaxed);
    eprintln!(
        "churn: {duration:?}, writes {writes:?}; {flooded} flood connections; {events_delivered} change events to {subscribers} \
         subscribers, {sync_messages} sync messages to {SYNC_SUBSCRIBERS} streams; {ok} evaluations ok, \
         {missing} NOT_FOUND for absent churn flags (latency p50 {p50:?}, p99 {p99:?}, max {max:?}); RSS {rss_before} KiB before, peaks per quarter {rss_quarters:?} KiB, \
         {rss_after} KiB after; fds {fds_before} before, {fds_after} after; daemon CPU {cpu_used:?}; converged: {converged}"
    );

    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }

    // Show the first problems of each kind rather than 250 copies of one.
    problems.truncate(40);
    assert!(
        problems.is_empty() && ok > 0,
        "churn found problems ({ok} evaluations ok):\n  {}\ndaemon stderr (tail):\n{}",
        problems.join("\n  "),
        tail(&daemon.stderr(), 40)
    );
}
