//! The evaluation port over HTTP, as `curl` and browsers use it: Connect JSON and proto (unary and
//! streaming) on v1, v2 and schema.v1, gRPC-Web, CORS, and bad input (wrong content types, invalid JSON,
//! truncated envelopes, oversized bodies and headers) answered with the right status and no panic.

use std::net::SocketAddr;
use std::path::Path;

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::runtime_support::{file_source, local_config};

const FLAGS: &str = r##"{"flags":{
  "bool-flag":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"},
  "int-flag":{"state":"ENABLED","variants":{"ten":10,"big":12345678901},"defaultVariant":"big"},
  "off-flag":{"state":"DISABLED","variants":{"a":"x"},"defaultVariant":"a"},
  "color":{"state":"ENABLED","variants":{"red":"#f00","blue":"#00f"},"defaultVariant":"red",
           "targeting":{"if":[{"==":[{"var":"team"},"ops"]},"blue",null]}}
}}"##;

async fn start(
    dir: &Path,
    configure: impl FnOnce(&mut flagpole::config::Config),
) -> flagpole::Daemon {
    let path = dir.join("flags.json");
    std::fs::write(&path, FLAGS).expect("write flags");
    let mut config = local_config(vec![file_source(&path)]);
    configure(&mut config);
    flagpole::run(config).await.expect("daemon starts")
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// One HTTP/1.1 request with hyper's client, as `curl` would send it.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).expect("request");
    let response = sender.send_request(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn post_json(addr: SocketAddr, path: &str, body: Value) -> Reply {
    send(
        addr,
        "POST",
        path,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

fn envelope(flags: u8, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Splits a body into (flags, message) envelopes; fails on a truncated one.
fn envelopes(mut body: Bytes) -> Vec<(u8, Bytes)> {
    let mut out = Vec::new();
    while !body.is_empty() {
        assert!(body.len() >= 5, "truncated envelope prefix");
        let flags = body.get_u8();
        let len = body.get_u32() as usize;
        assert!(body.len() >= len, "truncated envelope");
        out.push((flags, body.split_to(len)));
    }
    out
}

#[tokio::test]
async fn connect_json_on_v1_v2_and_schema_v1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path(), |_| {}).await;
    let addr = daemon.addrs().evaluation;

    let v1 = post_json(
        addr,
        "/flagd.evaluation.v1.Service/ResolveString",
        json!({"flagKey": "color", "context": {"team": "ops"}}),
    )
    .await;
    assert_eq!(v1.status, StatusCode::OK);
    assert_eq!(v1.header("content-type"), "application/json");
    assert_eq!(
        v1.json(),
        json!({"value": "#00f", "reason": "TARGETING_MATCH", "variant": "blue", "metadata": {}})
    );

    // int64 is a string; `flag_key` is accepted as well as `flagKey`.
    let int = post_json(
        addr,
        "/flagd.evaluation.v1.Service/ResolveInt",
        json!({"flag_key": "int-flag"}),
    )
    .await;
    assert_eq!(int.json()["value"], json!("12345678901"), "{:?}", int.body);

    // v1 writes zero values of a disabled flag; v2 leaves its optional value and variant out.
    let v1_off = post_json(
        addr,
        "/flagd.evaluation.v1.Service/ResolveString",
        json!({"flagKey": "off-flag"}),
    )
    .await;
    assert_eq!(
        v1_off.json(),
        json!({"value": "", "reason": "DISABLED", "variant": "", "metadata": {}})
    );
    let v2_off = post_json(
        addr,
        "/flagd.evaluation.v2.Service/ResolveString",
        json!({"flagKey": "off-flag"}),
    )
    .await;
    assert_eq!(v2_off.json(), json!({"reason": "DISABLED", "metadata": {}}));
    let v2 = post_json(
        addr,
        "/flagd.evaluation.v2.Service/ResolveBoolean",
        json!({"flagKey": "bool-flag"}),
    )
    .await;
    assert_eq!(
        v2.json(),
        json!({"value": true, "reason": "STATIC", "variant": "on", "metadata": {}})
    );

    // Errors: the Connect body and HTTP status of flagd's table.
    let missing = post_json(
        addr,
        "/flagd.evaluation.v2.Service/ResolveBoolean",
        json!({"flagKey": "nope"}),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json(),
        json!({"code": "not_found", "message": "Flag not found"})
    );
    let mismatch = post_json(
        addr,
        "/flagd.evaluation.v1.Service/ResolveBoolean",
        json!({"flagKey": "color"}),
    )
    .await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    assert_eq!(mismatch.json()["code"], "invalid_argument");

    let all = post_json(addr, "/flagd.evaluation.v1.Service/ResolveAll", json!({})).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.json()["flags"]["bool-flag"]["boolValue"], json!(true));
    let legacy = post_json(
        addr,
        "/schema.v1.Service/ResolveBoolean",
        json!({"flagKey": "bool-flag"}),
    )
    .await;
    assert_eq!(legacy.json()["value"], json!(true));
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn connect_proto_unary_and_streaming_event_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path(), |_| {}).await;
    let addr = daemon.addrs().evaluation;

    let request =
        prost::Message::encode_to_vec(&flagpole_proto::evaluation_v1::ResolveBooleanRequest {
            flag_key: "bool-flag".into(),
            context: None,
        });
    let reply = send(
        addr,
        "POST",
        "/flagd.evaluation.v1.Service/ResolveBoolean",
        &[("content-type", "application/proto")],
        request,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), "application/proto");
    let decoded: flagpole_proto::evaluation_v1::ResolveBooleanResponse =
        prost::Message::decode(reply.body).expect("protobuf response");
    assert!(decoded.value);
    assert_eq!(decoded.reason, "STATIC");

    // EventStream over Connect streaming (what the web provider uses): the first message is
    // provider_ready; after shutdown the stream ends with provider_shutdown and an end-of-stream message.
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request = Request::builder()
        .method("POST")
        .uri("/flagd.evaluation.v1.Service/EventStream")
        .header("host", addr.to_string())
        .header("content-type", "application/connect+json")
        .body(Full::new(Bytes::from(envelope(0, b"{}"))))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/connect+json"
    );
    let mut body = response.into_body();
    let mut buffer = BytesMut::new();
    let first = loop {
        if buffer.len() >= 5 {
            let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
            if buffer.len() >= 5 + len {
                break buffer.split_to(5 + len).freeze();
            }
        }
        let frame = body.frame().await.expect("a frame").expect("frame ok");
        if let Ok(data) = frame.into_data() {
            buffer.extend_from_slice(&data);
        }
    };
    let (flags, message) = envelopes(first).remove(0);
    assert_eq!(flags, 0);
    let event: Value = serde_json::from_slice(&message).expect("JSON event");
    assert_eq!(event["type"], "provider_ready");

    daemon.shutdown_token().cancel();
    let rest = body.collect().await.expect("rest of stream").to_bytes();
    buffer.extend_from_slice(&rest);
    let rest = envelopes(buffer.freeze());
    let (last_flags, last) = rest.last().cloned().expect("end of stream");
    assert_eq!(last_flags, 2, "end-of-stream flag");
    assert_eq!(
        serde_json::from_slice::<Value>(&last).expect("JSON"),
        json!({})
    );
    let types: Vec<Value> = rest[..rest.len() - 1]
        .iter()
        .map(|(_, m)| serde_json::from_slice::<Value>(m).expect("JSON")["type"].clone())
        .collect();
    assert!(types.contains(&json!("provider_shutdown")), "{types:?}");
    daemon.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn grpc_web_binary_and_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path(), |_| {}).await;
    let addr = daemon.addrs().evaluation;
    let request = envelope(
        0,
        &prost::Message::encode_to_vec(&flagpole_proto::evaluation_v2::ResolveBooleanRequest {
            flag_key: "bool-flag".into(),
            context: None,
        }),
    );

    let binary = send(
        addr,
        "POST",
        "/flagd.evaluation.v2.Service/ResolveBoolean",
        &[
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
        ],
        request.clone(),
    )
    .await;
    assert_eq!(binary.status, StatusCode::OK);
    let frames = envelopes(binary.body);
    assert_eq!(frames.len(), 2, "a message and the trailers");
    let decoded: flagpole_proto::evaluation_v2::ResolveBooleanResponse =
        prost::Message::decode(frames[0].1.clone()).expect("message");
    assert_eq!(decoded.value, Some(true));
    assert_eq!(frames[1].0 & 0x80, 0x80, "trailer frame");
    assert!(String::from_utf8_lossy(&frames[1].1).contains("grpc-status:0"));

    use base64::Engine as _;
    let text = send(
        addr,
        "POST",
        "/flagd.evaluation.v2.Service/ResolveBoolean",
        &[
            ("content-type", "application/grpc-web-text"),
            ("accept", "application/grpc-web-text"),
        ],
        base64::engine::general_purpose::STANDARD.encode(&request),
    )
    .await;
    assert_eq!(text.status, StatusCode::OK);
    assert!(
        text.header("content-type")
            .starts_with("application/grpc-web-text")
    );
    let raw = base64::engine::general_purpose::STANDARD
        .decode(
            text.body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect::<Vec<_>>(),
        )
        .expect("base64 response");
    assert!(!envelopes(Bytes::from(raw)).is_empty());
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn cors_allows_every_origin_by_default_and_only_listed_ones_when_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path(), |_| {}).await;
    let preflight = send(
        daemon.addrs().evaluation,
        "OPTIONS",
        "/flagd.evaluation.v1.Service/ResolveBoolean",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type,connect-protocol-version",
            ),
        ],
        Bytes::new(),
    )
    .await;
    assert!(preflight.status.is_success(), "{}", preflight.status);
    assert_eq!(preflight.header("access-control-allow-origin"), "*");
    assert!(
        preflight
            .header("access-control-allow-headers")
            .contains("connect-protocol-version")
    );
    daemon.shutdown().await.expect("clean shutdown");

    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path(), |c| {
        c.serving.cors_origins = vec!["https://*.example".into()];
    })
    .await;
    let allowed = send(
        daemon.addrs().evaluation,
        "POST",
        "/flagd.evaluation.v1.Service/ResolveBoolean",
        &[
            ("content-type", "application/json"),
            ("origin", "https://app.example"),
        ],
        r#"{"flagKey":"bool-flag"}"#,
    )
    .await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        "https://app.example"
    );
    let other = send(
        daemon.addrs().evaluation,
        "POST",
        "/flagd.evaluation.v1.Service/ResolveBoolean",
        &[
            ("content-type", "application/json"),
            ("origin", "https://evil.test"),
        ],
        r#"{"flagKey":"bool-flag"}"#,
    )
    .await;
    assert_eq!(other.header("access-control-allow-origin"), "");
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_request_without_origin_gets_no_cors_headers() {
    // rs/cors (flagd) treats a request without `Origin` as no CORS request at all.
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path(), |_| {}).await;
    let path = "/flagd.evaluation.v1.Service/ResolveBoolean";
    let body = r#"{"flagKey":"bool-flag"}"#;
    let plain = send(
        daemon.addrs().evaluation,
        "POST",
        path,
        &[("content-type", "application/json")],
        body,
    )
    .await;
    assert!(plain.status.is_success(), "{}", plain.status);
    for name in [
        "access-control-allow-origin",
        "access-control-expose-headers",
        "access-control-allow-credentials",
    ] {
        assert_eq!(plain.header(name), "", "{name}");
    }
    let browser = send(
        daemon.addrs().evaluation,
        "POST",
        path,
        &[
            ("content-type", "application/json"),
            ("origin", "https://app.example"),
        ],
        body,
    )
    .await;
    assert_eq!(browser.header("access-control-allow-origin"), "*");
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn bad_requests_get_the_right_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path(), |c| c.max_request_body = Some(1000)).await;
    let addr = daemon.addrs().evaluation;
    let path = "/flagd.evaluation.v1.Service/ResolveBoolean";

    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "invalid JSON",
            "application/json",
            b"{bad".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            "empty JSON body",
            "application/json",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            "wrong field type",
            "application/json",
            br#"{"flagKey":5}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            "trailing garbage",
            "application/json",
            br#"{"flagKey":"bool-flag"} x"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            "malformed protobuf",
            "application/proto",
            vec![0x0a, 0xff, 0x01],
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            "oversized body",
            "application/json",
            format!(r#"{{"flagKey":"{}"}}"#, "a".repeat(2000)).into_bytes(),
            StatusCode::TOO_MANY_REQUESTS,
            "resource_exhausted",
        ),
        (
            "wrong content type",
            "text/plain",
            b"{}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "",
        ),
        (
            "streaming type on a unary method",
            "application/connect+json",
            envelope(0, b"{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "",
        ),
    ];
    for (what, content_type, body, status, code) in cases {
        let reply = send(addr, "POST", path, &[("content-type", content_type)], body).await;
        assert_eq!(reply.status, status, "{what}: {:?}", reply.body);
        if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            // connect-go's (flagd's) 415: no body, the accepted types in `Accept-Post`.
            assert!(reply.body.is_empty(), "{what}: {:?}", reply.body);
            assert!(
                reply.header("accept-post").contains("application/json"),
                "{what}"
            );
        } else {
            assert_eq!(reply.json()["code"], code, "{what}");
        }
    }
    let unknown = post_json(addr, "/flagd.evaluation.v1.Service/Nope", json!({})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let get = send(addr, "GET", path, &[], Bytes::new()).await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);

    // Streaming: a truncated or compressed envelope ends the stream with an error, with HTTP 200.
    let stream_path = "/flagd.evaluation.v1.Service/EventStream";
    for (what, body, code) in [
        (
            "truncated",
            envelope(0, b"{}")[..4].to_vec(),
            "invalid_argument",
        ),
        (
            "length past the end",
            {
                let mut e = envelope(0, b"{}");
                e.truncate(6);
                e
            },
            "invalid_argument",
        ),
        ("compressed", envelope(1, b"{}"), "unimplemented"),
    ] {
        let reply = send(
            addr,
            "POST",
            stream_path,
            &[("content-type", "application/connect+json")],
            body,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{what}");
        let frames = envelopes(reply.body);
        assert_eq!(frames.len(), 1, "{what}");
        assert_eq!(frames[0].0, 2, "{what}: end of stream");
        let end: Value = serde_json::from_slice(&frames[0].1).expect("JSON");
        assert_eq!(end["error"]["code"], code, "{what}");
    }

    // Arbitrary bytes never crash the daemon: every reply is a Connect error or a result.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..200 {
        let len = (round * 7) % 64;
        let body: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let content_type = [
            "application/json",
            "application/proto",
            "application/connect+proto",
        ][round % 3];
        let target = if round % 3 == 2 { stream_path } else { path };
        let reply = send(
            addr,
            "POST",
            target,
            &[("content-type", content_type)],
            body,
        )
        .await;
        if reply.status != StatusCode::OK {
            assert!(
                reply.json()["code"].is_string(),
                "round {round}: {}",
                reply.status
            );
        }
    }
    let still = post_json(addr, path, json!({"flagKey": "bool-flag"})).await;
    assert_eq!(still.json()["value"], json!(true));
    daemon.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path(), |c| c.max_request_header = Some(16 * 1024)).await;
    let mut stream = TcpStream::connect(daemon.addrs().evaluation)
        .await
        .expect("connect");
    let request = format!(
        "POST /flagd.evaluation.v1.Service/ResolveBoolean HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-big: {}\r\ncontent-length: 2\r\n\r\n{{}}",
        "a".repeat(64 * 1024)
    );
    // The server may close before reading everything; the status line is what matters.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    daemon.shutdown().await.expect("clean shutdown");
}
