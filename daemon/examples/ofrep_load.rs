//! Load generator for the OFREP port: `--connections` HTTP/1.1 keep-alive connections (hyper client), each
//! with one request in flight (closed loop), for `--duration` seconds. Reports throughput and latency
//! percentiles (HDR histogram, microseconds).
//!
//! ```text
//! cargo run --release -p flagpole --example ofrep_load -- --addr 127.0.0.1:8016 \
//!     --connections 32 --duration 10 --mode single --flag loadgen-string
//! ```
//!
//! Modes: `single` (`POST /ofrep/v1/evaluate/flags/{flag}` with a 5-attribute context cycling over 10,000
//! users), `bulk` (`POST /ofrep/v1/evaluate/flags`, every flag, one fixed context, full 200 answers) and
//! `bulk-304` (the same with the `If-None-Match` of the first answer, so the server evaluates and hashes but
//! sends `304 Not Modified` without a body: the polling client's steady state).

use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Highest latency the histogram records, in microseconds (60 s); slower calls are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Distinct simulated users in `single` mode.
const USERS: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One flag per request.
    Single,
    /// Every flag per request.
    Bulk,
    /// Bulk revalidation answered with 304.
    #[value(name = "bulk-304")]
    Bulk304,
}

/// Load generator for OFREP servers.
#[derive(Debug, Parser)]
struct Args {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:8016")]
    addr: String,
    /// Concurrent keep-alive connections (one request in flight each).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// What to request.
    #[arg(long, value_enum, default_value_t = Mode::Single)]
    mode: Mode,
    /// The flag of `single` mode.
    #[arg(long, default_value = "loadgen-string")]
    flag: String,
}

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("connect: {0}")]
    Connect(#[from] std::io::Error),
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("request: {0}")]
    Request(#[from] http::Error),
    #[error("unexpected status {0}")]
    Status(StatusCode),
    #[error("histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
}

fn context(user: u64) -> String {
    format!(
        r#"{{"context":{{"targetingKey":"user-{user}","email":"user{user}@{}","country":"{}","plan":"{}","age":{}}}}}"#,
        if user.is_multiple_of(3) {
            "example.com"
        } else {
            "example.org"
        },
        ["de", "fr", "us", "jp"][(user % 4) as usize],
        ["free", "pro", "enterprise"][(user % 3) as usize],
        18 + user % 60,
    )
}

struct Worker {
    sender: http1::SendRequest<Full<Bytes>>,
    args_addr: String,
}

impl Worker {
    async fn connect(addr: &str) -> Result<Worker, LoadError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Worker {
            sender,
            args_addr: addr.to_owned(),
        })
    }

    async fn send(
        &mut self,
        path: &str,
        body: String,
        etag: Option<&str>,
    ) -> Result<(StatusCode, Option<String>), LoadError> {
        let mut request = Request::post(path)
            .header(http::header::HOST, &self.args_addr)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(etag) = etag {
            request = request.header(http::header::IF_NONE_MATCH, etag);
        }
        let request = request.body(Full::new(Bytes::from(body)))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let etag = response
            .headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        response.into_body().collect().await?;
        Ok((status, etag))
    }
}

async fn run_worker(
    args: &Args,
    index: u64,
    until: Instant,
    etag: Option<String>,
) -> Result<Histogram<u64>, LoadError> {
    let mut worker = Worker::connect(&args.addr).await?;
    let mut histogram = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    let single = format!("/ofrep/v1/evaluate/flags/{}", args.flag);
    let mut user = index * 7919;
    while Instant::now() < until {
        user = (user + 1) % USERS;
        let (path, body, expect) = match args.mode {
            Mode::Single => (single.as_str(), context(user), StatusCode::OK),
            Mode::Bulk => ("/ofrep/v1/evaluate/flags", context(0), StatusCode::OK),
            Mode::Bulk304 => (
                "/ofrep/v1/evaluate/flags",
                context(0),
                StatusCode::NOT_MODIFIED,
            ),
        };
        let started = Instant::now();
        let (status, _) = worker.send(path, body, etag.as_deref()).await?;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        histogram.saturating_record(micros.clamp(1, MAX_LATENCY_US));
        if status != expect {
            return Err(LoadError::Status(status));
        }
    }
    Ok(histogram)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), LoadError> {
    let args = Args::parse();
    let etag = if args.mode == Mode::Bulk304 {
        let mut probe = Worker::connect(&args.addr).await?;
        let (_, etag) = probe
            .send("/ofrep/v1/evaluate/flags", context(0), None)
            .await?;
        etag
    } else {
        None
    };
    let started = Instant::now();
    let until = started + Duration::from_secs(args.duration);
    let args = &args;
    let results = futures::future::join_all(
        (0..args.connections as u64).map(|i| run_worker(args, i, until, etag.clone())),
    )
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut total = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    for result in results {
        match result {
            Ok(h) => {
                let _ = total.add(&h);
            }
            Err(error) => eprintln!("worker failed: {error}"),
        }
    }
    let count = total.len();
    println!(
        "mode={:?} connections={} requests={count} throughput={:.0} req/s p50={}us p90={}us p99={}us p99.9={}us max={}us",
        args.mode,
        args.connections,
        count as f64 / elapsed,
        total.value_at_quantile(0.5),
        total.value_at_quantile(0.9),
        total.value_at_quantile(0.99),
        total.value_at_quantile(0.999),
        total.max(),
    );
    Ok(())
}
