//! Hostile input: what a flag file, a source or a client can send must not take the daemon down or blind
//! it (docs/limits.md). Pathological documents (exponential `$ref`s, special files), hostile clients (idle,
//! slow and flooding connections, oversized labels, a gRPC request whose body never comes), and a daemon
//! that must do no file I/O while idle. Failing upstreams are in `source_http`.
//!
//! Where the point is a resource limit, the daemon runs as a child under `ulimit`; every wait is bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::clients::{ChildDaemon, flagpole_under_limits, free_port, http_status};
use crate::runtime_support::{
    CHANGE_TIMEOUT, default_value, flagpole_command, http_get, one_flag, start_with_files,
    wait_for, write_atomic,
};

/// Evaluators that each reference the previous one twice, `levels` deep: a kilobyte that inlines to
/// 2^levels copies.
fn doubling_document(levels: usize) -> String {
    let mut evaluators = vec![r#""e0": {"==": [{"var": "x"}, 1]}"#.to_owned()];
    for i in 1..=levels {
        let p = i - 1;
        evaluators.push(format!(
            r#""e{i}": {{"or": [{{"$ref": "e{p}"}}, {{"$ref": "e{p}"}}]}}"#
        ));
    }
    format!(
        r#"{{"$evaluators": {{{}}}, "flags": {{"bomb": {{"state": "ENABLED", "variants": {{"on": "on", "off": "off"}},
            "defaultVariant": "off", "targeting": {{"if": [{{"$ref": "e{levels}"}}, "on", "off"]}}}}}}}}"#,
        evaluators.join(", ")
    )
}

/// Runs `command`, killing it after `limit`; returns (exit code, stdout, stderr).
fn run_bounded(mut command: Command, limit: Duration) -> (Option<i32>, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("spawn: {error}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    (status.code(), stdout, stderr)
}

/// `flagpole ARGS` under `sh -c 'ulimit LIMIT && exec flagpole ARGS'`.
fn flagpole_under(limit: &str, args: &[&str]) -> Command {
    let mut command = flagpole_under_limits(limit);
    command.args(args);
    command
}

/// The resident set of a process, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    crate::churn::rss_kib(pid) * 1024
}

/// Bytes a process has read through read(2) and friends (`rchar` of `/proc/PID/io`).
fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rchar in /proc/{pid}/io"))
}

/// Waits until the child's stderr contains `needle`.
fn wait_stderr(daemon: &ChildDaemon, needle: &str) {
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    while !daemon.stderr().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Connect JSON evaluation over HTTP/1.1; the status code, or `None` when the connection fails.
fn connect_evaluation(port: u16, flag: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = format!(r#"{{"flagKey":"{flag}","context":{{}}}}"#);
    let request = format!(
        "POST /flagd.evaluation.v1.Service/ResolveString HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response))
}

#[test]
fn validate_rejects_exponential_evaluators_in_bounded_time_and_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bomb.json");
    std::fs::write(&path, doubling_document(22)).expect("write");
    // 198aa10 took 4.7 s and 2.3 GB here; under a 1 GiB address-space limit it aborted.
    let command = flagpole_under(
        "-v 1048576",
        &["validate", path.to_str().expect("utf-8 path")],
    );
    let (code, stdout, stderr) = run_bounded(command, Duration::from_secs(20));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("inlining $evaluators would add more than") && stdout.contains("`e22`"),
        "{stdout}"
    );
}

#[test]
fn a_daemon_keeps_its_flags_and_its_memory_when_an_exponential_file_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, one_flag("kept", "before")).expect("write");
    let daemon = ChildDaemon::start(&flags, dir.path(), &[]);
    write_atomic(&flags, &doubling_document(26));
    wait_stderr(&daemon, "inlining $evaluators would add more than");
    assert_eq!(http_status(daemon.ports.management, "/healthz"), Some(200));
    let (status, body) = connect_evaluation(daemon.ports.evaluation, "kept").expect("evaluation");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"before\""), "{body}");
    let rss = rss_bytes(daemon.pid());
    assert!(
        rss < 150 * 1024 * 1024,
        "RSS {rss} bytes after the rejection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_paths_and_stream_labels_do_not_grow_the_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, one_flag("f", "v")).expect("write");
    let daemon = start_with_files(&[&flags]).await;
    let evaluation = daemon.addrs().evaluation;
    for i in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(evaluation)
            .await
            .expect("connect");
        let request = format!(
            "POST /{}{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "p".repeat(20_000)
        );
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
    }
    // SyncFlags with a 100 KB provider id and selector each.
    let channel = tonic::transport::Endpoint::from_shared(format!(
        "http://127.0.0.1:{}",
        daemon.addrs().sync.port()
    ))
    .expect("endpoint")
    .connect()
    .await
    .expect("connect to sync");
    let mut streams = Vec::new();
    for i in 0..20 {
        let mut client =
            flagpole_proto::sync_v1::flag_sync_service_client::FlagSyncServiceClient::new(
                channel.clone(),
            );
        let request = flagpole_proto::sync_v1::SyncFlagsRequest {
            provider_id: format!("{}{i}", "i".repeat(100_000)),
            ..Default::default()
        };
        if let Ok(stream) = client.sync_flags(request).await {
            streams.push(stream.into_inner());
        }
    }
    assert_eq!(streams.len(), 20);
    let (status, _, text) = http_get(daemon.addrs().management, "/metrics").await;
    assert_eq!(status, 200);
    assert!(text.len() < 256 * 1024, "/metrics is {} bytes", text.len());
    assert!(text.contains("http_route=\"unmatched\""), "{text}");
    assert!(!text.contains(&"p".repeat(1_000)));
    drop(streams);
    daemon.shutdown().await.expect("shutdown");
}

#[test]
fn idle_connections_are_closed_and_a_flood_leaves_the_management_port_answering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, one_flag("f", "v")).expect("write");
    // 600 descriptors: 256 kept aside, 21 for the management port, 323 shared by the other three, at
    // most 215 for one of them.
    let daemon = ChildDaemon::start_under(&flags, dir.path(), &[], "-n 600");
    let mut idle = Vec::new();
    for _ in 0..400 {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", daemon.ports.evaluation)) {
            idle.push(stream);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    // The flood holds the evaluation port's share only: the management port answers, and so does the
    // OFREP port from the part of the shared pool the flood cannot take.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            http_status(daemon.ports.management, path),
            Some(200),
            "{path} during the flood; log:\n{}",
            daemon.stderr()
        );
    }
    let mut ofrep =
        TcpStream::connect(("127.0.0.1", daemon.ports.ofrep)).expect("connect to OFREP");
    ofrep
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    ofrep
        .write_all(
            b"POST /ofrep/v1/evaluate/flags/f HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 2\r\nConnection: close\r\n\r\n{}",
        )
        .expect("OFREP request");
    let mut answer = String::new();
    let _ = ofrep.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "OFREP during the flood: {answer}"
    );
    assert!(
        daemon
            .stderr()
            .contains("connection limit reached; closing new connections"),
        "{}",
        daemon.stderr()
    );
    // Connections that never send a request are closed after the first-request deadline (10 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut open = idle.len();
    while open > 0 && Instant::now() < deadline {
        open = 0;
        for stream in &mut idle {
            stream.set_nonblocking(true).expect("nonblocking");
            let mut byte = [0u8; 1];
            match stream.read(&mut byte) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open += 1,
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(open, 0, "idle connections still open after 20 s");
    let (status, body) =
        connect_evaluation(daemon.ports.evaluation, "f").expect("evaluation after the flood");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_slowloris_on_the_management_and_sync_ports_is_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, one_flag("f", "v")).expect("write");
    let daemon = ChildDaemon::start(&flags, dir.path(), &[]);
    for port in [daemon.ports.management, daemon.ports.sync] {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .expect("write a partial head");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let started = Instant::now();
        let mut rest = Vec::new();
        // The server ends the connection (408 or a close) within its header timeout, not never.
        let _ = stream.read_to_end(&mut rest);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "port {port} held a partial request head for {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_request_whose_body_never_comes_is_ended_by_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, one_flag("f", "v")).expect("write");
    let daemon = start_with_files(&[&flags]).await;
    let stream = tokio::net::TcpStream::connect(daemon.addrs().evaluation)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    // HEADERS, then a body that never sends a byte nor ends.
    let (_keep_open, body_rx) =
        tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(1);
    let body =
        http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(body_rx));
    let request = http::Request::post(format!(
        "http://{}/flagd.evaluation.v1.Service/ResolveString",
        daemon.addrs().evaluation
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(body)
    .expect("request");
    let answered = tokio::time::timeout(Duration::from_secs(20), async {
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let collected = body.collect().await?;
        let status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status").cloned())
            .or_else(|| parts.headers.get("grpc-status").cloned());
        Ok::<_, hyper::Error>(status)
    })
    .await;
    match answered {
        Err(_) => panic!("the server held a body-less gRPC request for 20 s"),
        // A reset stream is an answer too: the server let go.
        Ok(Err(_)) => {}
        Ok(Ok(status)) => assert_ne!(
            status.as_ref().map(|s| s.as_bytes()),
            Some(&b"0"[..]),
            "a request without a message cannot succeed"
        ),
    }
    daemon.shutdown().await.expect("shutdown");
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn special_files_are_refused_at_start_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo.json");
    mkfifo(&fifo);
    let zero = dir.path().join("zero.json");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
    for (path, kind) in [(&fifo, "a FIFO"), (&zero, "a character device")] {
        let mut command = flagpole_command();
        command
            .arg("start")
            .arg("--uri")
            .arg(format!("file:{}", path.display()))
            .args(["-p", &free_port().to_string()])
            .args(["-m", &free_port().to_string()])
            .args(["-g", &free_port().to_string()])
            .args(["-r", &free_port().to_string()]);
        // 198aa10 hung for ever on the FIFO (SIGTERM ignored) and read /dev/zero without bound.
        let (code, _, stderr) = run_bounded(command, Duration::from_secs(15));
        assert_ne!(code, Some(0), "{stderr}");
        assert!(
            stderr.contains(&format!("not a regular file but {kind}")),
            "{stderr}"
        );
        let (code, stdout, _) = run_bounded(
            {
                let mut validate = flagpole_command();
                validate.arg("validate").arg(path);
                validate
            },
            Duration::from_secs(15),
        );
        assert_eq!(code, Some(1));
        assert!(stdout.contains(kind), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_swapped_in_neither_wedges_the_source_nor_blocks_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, one_flag("f", "one")).expect("write");
    let daemon = start_with_files(&[&flags]).await;
    let fifo = dir.path().join("swap.json");
    mkfifo(&fifo);
    std::fs::rename(&fifo, &flags).expect("swap the FIFO in");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Later edits are still seen.
    write_atomic(&flags, &one_flag("f", "two"));
    wait_for(&daemon, "the edit after the FIFO", |s| {
        default_value(s, "f") == Some(flagpole_engine::Value::String("two".into()))
    })
    .await;
    std::fs::remove_file(&flags).expect("remove");
    mkfifo(&flags);
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(15), daemon.shutdown())
        .await
        .expect("shutdown with a FIFO in place of the flag file")
        .expect("clean shutdown");
}

#[test]
fn an_idle_daemon_reads_no_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    // A 1 MB file: before the fix each of the source's own reads woke it to read the file again.
    let mut document = String::from("{\"flags\": {");
    for i in 0..5_000 {
        if i > 0 {
            document.push(',');
        }
        document.push_str(&format!(
            r#""flag-{i}": {{"state": "ENABLED", "variants": {{"on": "{}", "off": "x"}}, "defaultVariant": "on"}}"#,
            "v".repeat(120)
        ));
    }
    document.push_str("}}");
    std::fs::write(&flags, &document).expect("write");
    let daemon = ChildDaemon::start(&flags, dir.path(), &[]);
    std::thread::sleep(Duration::from_millis(500));
    let before = bytes_read(daemon.pid());
    std::thread::sleep(Duration::from_secs(2));
    let read = bytes_read(daemon.pid()) - before;
    assert!(
        read < 64 * 1024,
        "the idle daemon read {read} bytes in 2 s (the file is {} bytes)",
        document.len()
    );
    // A real edit is still seen.
    write_atomic(&flags, &one_flag("edited", "yes"));
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    while connect_evaluation(daemon.ports.evaluation, "edited").is_none_or(|(s, _)| s != 200) {
        assert!(Instant::now() < deadline, "the edit was not loaded");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn credentials_in_a_source_url_stay_out_of_the_log() {
    // Nothing listens there: the start fails, and says where it tried without the password.
    let url = format!("http://user:s3cret@127.0.0.1:{}/flags.json", free_port());
    let mut command = flagpole_command();
    command
        .arg("start")
        .arg("--uri")
        .arg(&url)
        .args(["-p", &free_port().to_string()])
        .args(["-m", &free_port().to_string()])
        .args(["-g", &free_port().to_string()])
        .args(["-r", &free_port().to_string()]);
    let (code, stdout, stderr) = run_bounded(command, Duration::from_secs(40));
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("http://***@127.0.0.1:"), "{stderr}");
    assert!(
        !stderr.contains("s3cret") && !stdout.contains("s3cret"),
        "{stderr}"
    );
}

#[test]
fn memory_is_given_back_after_a_large_file_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, one_flag("small", "yes")).expect("write");
    let daemon = ChildDaemon::start(&flags, dir.path(), &[]);
    let mut document = String::from("{\"flags\": {");
    for i in 0..30_000 {
        if i > 0 {
            document.push(',');
        }
        document.push_str(&format!(
            r#""flag-{i}": {{"state": "ENABLED", "variants": {{"on": true, "off": false}}, "defaultVariant": "on",
                "targeting": {{"if": [{{"in": [{{"var": "email"}}, ["u{i}@x.com", "a@b.c"]]}}, "off", "on"]}}}}"#
        ));
    }
    document.push_str("}}");
    write_atomic(&flags, &document);
    let deadline = Instant::now() + Duration::from_secs(60);
    while connect_evaluation(daemon.ports.evaluation, "flag-29999").is_none_or(|(s, _)| s == 404) {
        assert!(Instant::now() < deadline, "the large file was not loaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    let large = rss_bytes(daemon.pid());
    write_atomic(&flags, &one_flag("small", "again"));
    let deadline = Instant::now() + Duration::from_secs(20);
    // glibc kept every freed page before the trim (RSS stayed at its peak for good).
    loop {
        let now = rss_bytes(daemon.pid());
        if now < large / 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "RSS {now} bytes 20 s after the large file was replaced ({large} bytes with it)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_request_whose_body_stalls_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, one_flag("f", "v")).expect("write");
    let daemon = start_with_files(&[&flags]).await;
    let mut stream = tokio::net::TcpStream::connect(daemon.addrs().evaluation)
        .await
        .expect("connect");
    // Promises 100 bytes, sends 10, then waits.
    stream
        .write_all(
            b"POST /flagd.evaluation.v1.Service/ResolveString HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"flagKey\"",
        )
        .await
        .expect("write");
    let mut response = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut response))
        .await
        .expect("an answer within 20 s")
        .expect("read");
    let head = String::from_utf8_lossy(&response[..read]).into_owned();
    // 198aa10 answered 504 (a deadline of the call), which blames the server.
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(head.contains("deadline_exceeded"), "{head}");
    daemon.shutdown().await.expect("shutdown");
}
