//! Load generator for the evaluation port's HTTP protocols: Connect JSON (unary `POST` with
//! `application/json`) or gRPC-Web (binary, `application/grpc-web+proto`), over HTTP/1.1 keep-alive or h2c,
//! `--connections` connections with one request in flight each (closed loop), for `--duration` seconds.
//! Reports throughput and latency percentiles (HDR histogram, microseconds).
//!
//! ```text
//! cargo run --release -p flagpole --example connect_load -- --addr 127.0.0.1:8013 \
//!     --protocol connect-json --http h1 --connections 32 --duration 10 --flag loadgen-string
//! ```
//!
//! Every request is `flagd.evaluation.v1.Service/ResolveBoolean` or `ResolveString` (chosen by
//! `--method`) with a 5-attribute context (`targetingKey`, `email`, `country`, `plan`, `age`) cycling over
//! 10,000 users, as `loadgen` (gRPC) and `ofrep_load` (OFREP) send, so the three are comparable. A response
//! that is not HTTP 200 with a value (Connect) or `grpc-status: 0` (gRPC-Web) stops the worker.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use flagpole_proto::evaluation_v1::{ResolveBooleanRequest, ResolveStringRequest};
use hdrhistogram::Histogram;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use prost_types::value::Kind;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Highest latency the histogram records, in microseconds (60 s); slower calls are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Distinct simulated users.
const USERS: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// Connect unary, JSON codec.
    ConnectJson,
    /// gRPC-Web, binary protobuf.
    GrpcWeb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HttpVersion {
    /// HTTP/1.1 keep-alive.
    H1,
    /// HTTP/2 without TLS (prior knowledge).
    H2c,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Method {
    ResolveBoolean,
    ResolveString,
}

/// Load generator for Connect and gRPC-Web on a flagd-compatible evaluation port.
#[derive(Debug, Parser)]
struct Args {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:8013")]
    addr: String,
    /// Concurrent connections (one request in flight each).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Wire protocol.
    #[arg(long, value_enum, default_value_t = Protocol::ConnectJson)]
    protocol: Protocol,
    /// HTTP version.
    #[arg(long, value_enum, default_value_t = HttpVersion::H1)]
    http: HttpVersion,
    /// The evaluation method.
    #[arg(long, value_enum, default_value_t = Method::ResolveBoolean)]
    method: Method,
    /// The flag to evaluate.
    #[arg(long, default_value = "loadgen-bool")]
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
    #[error("unexpected answer: status {0}, body {1:?}")]
    Answer(StatusCode, String),
    #[error("histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
}

/// The context attributes of `user`, as JSON values.
fn attributes(user: u64) -> BTreeMap<&'static str, serde_json::Value> {
    BTreeMap::from([
        ("targetingKey", format!("user-{user}").into()),
        (
            "email",
            format!(
                "user{user}@{}",
                if user.is_multiple_of(3) {
                    "example.com"
                } else {
                    "example.org"
                }
            )
            .into(),
        ),
        (
            "country",
            ["de", "fr", "us", "jp"][(user % 4) as usize].into(),
        ),
        (
            "plan",
            ["free", "pro", "enterprise"][(user % 3) as usize].into(),
        ),
        ("age", (18 + user % 60).into()),
    ])
}

fn connect_json_body(flag: &str, user: u64) -> Bytes {
    let body = serde_json::json!({"flagKey": flag, "context": attributes(user)});
    Bytes::from(body.to_string())
}

fn grpc_web_body(method: Method, flag: &str, user: u64) -> Bytes {
    let fields = attributes(user)
        .into_iter()
        .map(|(key, value)| {
            let kind = match value {
                serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
                other => Kind::StringValue(other.as_str().unwrap_or_default().to_owned()),
            };
            (key.to_owned(), prost_types::Value { kind: Some(kind) })
        })
        .collect();
    let context = Some(prost_types::Struct { fields });
    let message = match method {
        Method::ResolveBoolean => ResolveBooleanRequest {
            flag_key: flag.to_owned(),
            context,
        }
        .encode_to_vec(),
        Method::ResolveString => ResolveStringRequest {
            flag_key: flag.to_owned(),
            context,
        }
        .encode_to_vec(),
    };
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.put_slice(&message);
    framed.freeze()
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

struct Worker {
    sender: Sender,
    addr: String,
}

impl Worker {
    async fn connect(addr: &str, version: HttpVersion) -> Result<Worker, LoadError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let io = TokioIo::new(stream);
        let sender = match version {
            HttpVersion::H1 => {
                let (sender, connection) = http1::handshake(io).await?;
                tokio::spawn(connection);
                Sender::H1(sender)
            }
            HttpVersion::H2c => {
                let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(connection);
                Sender::H2(sender)
            }
        };
        Ok(Worker {
            sender,
            addr: addr.to_owned(),
        })
    }

    /// Sends one request; returns the status and the whole body.
    async fn send(
        &mut self,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), LoadError> {
        let mut request = Request::post(path).header(http::header::CONTENT_TYPE, content_type);
        request = match self.sender {
            Sender::H1(_) => request.header(http::header::HOST, &self.addr),
            Sender::H2(_) => request.uri(format!("http://{}{path}", self.addr)),
        };
        if content_type.starts_with("application/grpc-web") {
            request = request.header("x-grpc-web", "1");
        } else {
            request = request.header("connect-protocol-version", "1");
        }
        let request = request.body(Full::new(body))?;
        let response = match &mut self.sender {
            Sender::H1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
            Sender::H2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
        };
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

fn path(method: Method) -> &'static str {
    match method {
        Method::ResolveBoolean => "/flagd.evaluation.v1.Service/ResolveBoolean",
        Method::ResolveString => "/flagd.evaluation.v1.Service/ResolveString",
    }
}

/// Whether a response is a successful evaluation.
fn succeeded(protocol: Protocol, status: StatusCode, body: &[u8]) -> bool {
    if status != StatusCode::OK {
        return false;
    }
    match protocol {
        Protocol::ConnectJson => body.windows(7).any(|w| w == b"\"value\""),
        // The trailer frame (flag 0x80) carries `grpc-status:0`.
        Protocol::GrpcWeb => body.windows(13).any(|w| w == b"grpc-status:0"),
    }
}

async fn run_worker(args: &Args, index: u64, until: Instant) -> Result<Histogram<u64>, LoadError> {
    let mut worker = Worker::connect(&args.addr, args.http).await?;
    let mut histogram = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    let (content_type, path) = match args.protocol {
        Protocol::ConnectJson => ("application/json", path(args.method)),
        Protocol::GrpcWeb => ("application/grpc-web+proto", path(args.method)),
    };
    let mut user = index * 7919;
    while Instant::now() < until {
        user = (user + 1) % USERS;
        let body = match args.protocol {
            Protocol::ConnectJson => connect_json_body(&args.flag, user),
            Protocol::GrpcWeb => grpc_web_body(args.method, &args.flag, user),
        };
        let started = Instant::now();
        let (status, answer) = worker.send(path, content_type, body).await?;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        histogram.saturating_record(micros.clamp(1, MAX_LATENCY_US));
        if !succeeded(args.protocol, status, &answer) {
            return Err(LoadError::Answer(
                status,
                String::from_utf8_lossy(&answer).into_owned(),
            ));
        }
    }
    Ok(histogram)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), LoadError> {
    let args = Args::parse();
    let started = Instant::now();
    let until = started + Duration::from_secs(args.duration);
    let args = &args;
    let results =
        futures::future::join_all((0..args.connections as u64).map(|i| run_worker(args, i, until)))
            .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut total = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    let mut failed = 0;
    for result in results {
        match result {
            Ok(h) => {
                let _ = total.add(&h);
            }
            Err(error) => {
                failed += 1;
                eprintln!("worker failed: {error}");
            }
        }
    }
    let count = total.len();
    println!(
        "protocol={:?} http={:?} method={:?} connections={} failed_workers={failed} requests={count} throughput={:.0} req/s p50={}us p90={}us p99={}us p99.9={}us max={}us",
        args.protocol,
        args.http,
        args.method,
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
