//! OFREP on its own port: flagd's shapes, statuses and error objects, selectors and context mapping, ETag and
//! 304 on bulk evaluation, the configuration endpoint, CORS, limits and bad input. The router is served
//! in-process on 127.0.0.1:0 through the daemon's transport over the service tests' fixture store; one test runs
//! the whole daemon and edits a flag file.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use flagpole::metrics::Metrics;
use flagpole::protocols::ofrep::{OfrepOptions, router};

use flagpole::store::Store;
use flagpole::transport::{HttpLimits, Listener};
use futures::StreamExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::runtime_support::{one_flag, start_with_files, wait_for, write_atomic};
use crate::service_support::{SOURCES, Settings, flag, source_a, source_b};

/// The header limit of the test server (small, so that a 431 is cheap to provoke).
const TEST_MAX_HEADER: usize = 16 * 1024;

struct Server {
    addr: SocketAddr,
    store: Arc<Store>,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn fixture_store() -> Arc<Store> {
    let store = Arc::new(Store::new(SOURCES.iter().map(|s| Arc::from(*s))));
    store.replace_source(0, source_a());
    store.replace_source(1, source_b());
    store
}

fn app(store: &Arc<Store>, config: Settings, options: &OfrepOptions) -> axum::Router {
    let evaluator = config.evaluator(store.clone(), Metrics::new());
    let options = OfrepOptions {
        max_request_body: config.max_request_body,
        ..options.clone()
    };
    router(evaluator, &options)
}

async fn serve(config: Settings, options: OfrepOptions) -> Server {
    let store = fixture_store();
    let app = app(&store, config, &options);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    tokio::spawn(flagpole::transport::serve(
        Listener::Tcp(listener),
        None,
        app,
        HttpLimits {
            max_header_bytes: Some(TEST_MAX_HEADER),
            ..HttpLimits::DEFAULT
        },
        stop.clone(),
    ));
    Server { addr, store, stop }
}

async fn default_server() -> Server {
    serve(Settings::default(), OfrepOptions::default()).await
}

/// A response: status, headers (lower-case names), body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to the end.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn post(addr: SocketAddr, path: &str, body: Value) -> Reply {
    post_with(addr, path, &[], body).await
}

async fn post_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: Value) -> Reply {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    send(addr, "POST", path, &all, body.to_string().as_bytes()).await
}

fn flag_path(key: &str) -> String {
    format!("/ofrep/v1/evaluate/flags/{key}")
}

const BULK: &str = "/ofrep/v1/evaluate/flags";

#[tokio::test]
async fn single_flag_success_shapes_match_flagd() {
    let server = default_server().await;
    let reply = post(server.addr, &flag_path("bool-flag"), json!({"context": {}})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.json(),
        json!({"value": true, "key": "bool-flag", "reason": "STATIC", "variant": "on",
               "metadata": {"flagSetId": "set-a", "team": "core", "owner": "alice"}})
    );
    // flagd's field order: value, key, reason, variant, metadata.
    assert!(
        reply
            .body
            .starts_with(r#"{"value":true,"key":"bool-flag","reason":"STATIC""#)
    );

    let reply = post(server.addr, &flag_path("object-flag"), json!({})).await;
    assert_eq!(reply.json()["value"], json!({"a": 1, "b": "x"}));
    let reply = post(server.addr, &flag_path("int-flag"), json!({})).await;
    assert_eq!(reply.json()["value"], json!(2.7));
    let reply = post(server.addr, &flag_path("array-flag"), json!({})).await;
    assert_eq!(reply.json()["value"], json!([1, 2]));
}

#[tokio::test]
async fn disabled_and_code_default_have_no_value_or_variant() {
    let server = default_server().await;
    let reply = post(server.addr, &flag_path("disabled-flag"), json!({})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"key": "disabled-flag", "reason": "DISABLED", "metadata": {"flagSetId": "set-a", "team": "core"}})
    );
    let reply = post(server.addr, &flag_path("no-default-flag"), json!({})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"key": "no-default-flag", "reason": "DEFAULT", "metadata": {"flagSetId": "set-a", "team": "core"}})
    );
    // A targeting null falls back to the default variant and keeps value and variant.
    let reply = post(server.addr, &flag_path("targeted-flag"), json!({})).await;
    let body = reply.json();
    assert_eq!(
        (&body["reason"], &body["variant"], &body["value"]),
        (&json!("DEFAULT"), &json!("no"), &json!("NO"))
    );
    let reply = post(
        server.addr,
        &flag_path("targeted-flag"),
        json!({"context": {"email": "a@example.com"}}),
    )
    .await;
    let body = reply.json();
    assert_eq!(
        (&body["reason"], &body["variant"], &body["value"]),
        (&json!("TARGETING_MATCH"), &json!("yes"), &json!("YES"))
    );
}

#[tokio::test]
async fn errors_have_flagds_statuses_and_objects() {
    let server = default_server().await;
    let reply = post(server.addr, &flag_path("nope"), json!({})).await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.json(),
        json!({"key": "nope", "errorCode": "FLAG_NOT_FOUND", "errorDetails": "flag `nope` does not exist", "metadata": {}})
    );
    let reply = post(server.addr, &flag_path("parse-error-flag"), json!({})).await;
    assert_eq!(reply.status, 400);
    let body = reply.json();
    assert_eq!(body["errorCode"], "PARSE_ERROR");
    assert_eq!(
        body["errorDetails"],
        "error parsing the flag `parse-error-flag`"
    );
    let reply = post(server.addr, &flag_path("general-error-flag"), json!({})).await;
    assert_eq!(reply.status, 400);
    let body = reply.json();
    assert_eq!(body["errorCode"], "GENERAL");
    assert_eq!(
        body["errorDetails"],
        "error processing the flag for evaluation"
    );

    let reply = post_with(
        server.addr,
        &flag_path("bool-flag"),
        &[("Flagd-Selector", "nope=x")],
        json!({}),
    )
    .await;
    assert_eq!(reply.status, 400);
    let body = reply.json();
    assert_eq!(body["key"], "bool-flag");
    assert_eq!(body["errorCode"], "GENERAL");
    assert!(
        body["errorDetails"]
            .as_str()
            .is_some_and(|d| d.starts_with("invalid selector: ")),
        "{body}"
    );
}

#[tokio::test]
async fn selector_header_scopes_lookup_and_reflects_into_metadata() {
    let server = default_server().await;
    let set_b = [("Flagd-Selector", "flagSetId=set-b")];
    let reply = post_with(server.addr, &flag_path("other-flag"), &set_b, json!({})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["metadata"], json!({"flagSetId": "set-b"}));
    let reply = post_with(server.addr, &flag_path("bool-flag"), &set_b, json!({})).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["metadata"], json!({"flagSetId": "set-b"}));

    let reply = post_with(server.addr, BULK, &set_b, json!({})).await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["metadata"], json!({"flagSetId": "set-b"}));
    let keys: Vec<&str> = body["flags"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["key"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["other-flag"]);
}

#[tokio::test]
async fn static_context_beats_the_body_and_mapped_headers_beat_both() {
    let config = Settings {
        context_values: [("tier".to_owned(), "bronze".to_owned())].into(),
        header_to_context: vec![("X-User".to_owned(), "user".to_owned())],
        ..Settings::default()
    };
    let server = serve(config, OfrepOptions::default()).await;
    // The body says gold, -X says bronze: bronze wins, so the user rule decides.
    let reply = post_with(
        server.addr,
        &flag_path("context-flag"),
        &[("x-user", "bob")],
        json!({"context": {"tier": "gold", "user": "carol"}}),
    )
    .await;
    assert_eq!(reply.json()["variant"], "silver");
    // Without the header the body's user (carol) stays: no rule matches.
    let reply = post(
        server.addr,
        &flag_path("context-flag"),
        json!({"context": {"tier": "gold", "user": "carol"}}),
    )
    .await;
    assert_eq!(reply.json()["variant"], "none");
}

#[tokio::test]
async fn bulk_lists_every_flag_with_per_flag_errors_and_http_200() {
    let server = default_server().await;
    for path in [BULK, "/ofrep/v1/evaluate/flags/"] {
        let reply = post(server.addr, path, json!({"context": {}})).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert!(reply.header("etag").is_some());
        let body = reply.json();
        assert_eq!(body["metadata"], json!({}));
        let flags = body["flags"].as_array().cloned().unwrap_or_default();
        let keys: Vec<&str> = flags.iter().filter_map(|f| f["key"].as_str()).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted, "sorted by key");
        assert_eq!(keys.len(), 13);
        let by_key = |k: &str| flags.iter().find(|f| f["key"] == k).cloned();
        assert_eq!(
            by_key("disabled-flag"),
            Some(
                json!({"key": "disabled-flag", "reason": "DISABLED", "metadata": {"flagSetId": "set-a", "team": "core"}})
            )
        );
        assert_eq!(
            by_key("parse-error-flag"),
            Some(
                json!({"key": "parse-error-flag", "errorCode": "PARSE_ERROR",
                        "errorDetails": "error parsing the flag `parse-error-flag`",
                        "metadata": {"flagSetId": "set-a", "team": "core"}})
            )
        );
        assert_eq!(
            by_key("string-flag").map(|f| f["value"].clone()),
            Some(json!("#f00"))
        );
    }
}

#[tokio::test]
async fn bulk_etag_gives_304_until_flags_or_context_change() {
    let server = default_server().await;
    let first = post(server.addr, BULK, json!({"context": {}})).await;
    let tag = first.header("etag").expect("etag").to_owned();
    assert!(tag.starts_with('"') && tag.ends_with('"'));

    let again = post_with(
        server.addr,
        BULK,
        &[("If-None-Match", &tag)],
        json!({"context": {}}),
    )
    .await;
    assert_eq!(again.status, 304);
    assert_eq!(again.body, "");
    assert_eq!(again.header("etag"), Some(tag.as_str()));
    // Weak and listed forms match too.
    let listed = format!("\"zzz\", W/{tag}");
    let weak = post_with(server.addr, BULK, &[("If-None-Match", &listed)], json!({})).await;
    assert_eq!(weak.status, 304);

    // A context that changes a result changes the tag.
    let other = post_with(
        server.addr,
        BULK,
        &[("If-None-Match", &tag)],
        json!({"context": {"email": "a@example.com"}}),
    )
    .await;
    assert_eq!(other.status, 200);
    assert_ne!(other.header("etag"), Some(tag.as_str()));

    // A flag change changes the tag.
    let mut changed = source_b();
    changed.push(flag(
        "new-flag",
        json!({"variants": {"a": 1}, "defaultVariant": "a"}),
        json!({}),
    ));
    server.store.replace_source(1, changed);
    let after = post_with(
        server.addr,
        BULK,
        &[("If-None-Match", &tag)],
        json!({"context": {}}),
    )
    .await;
    assert_eq!(after.status, 200);
    let new_tag = after.header("etag").expect("etag").to_owned();
    assert_ne!(new_tag, tag);
    assert!(after.body.contains("new-flag"));
    let cached = post_with(server.addr, BULK, &[("If-None-Match", &new_tag)], json!({})).await;
    assert_eq!(cached.status, 304);
}

#[tokio::test]
async fn configuration_describes_capabilities_with_an_etag() {
    let server = default_server().await;
    let reply = send(server.addr, "GET", "/ofrep/v1/configuration", &[], b"").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["name"], "flagpole");
    assert_eq!(
        body["capabilities"]["cacheInvalidation"]["polling"]["enabled"],
        true
    );
    assert_eq!(
        body["capabilities"]["flagEvaluation"]["supportedTypes"],
        json!(["boolean", "string", "int", "float", "object"])
    );
    let tag = reply.header("etag").expect("etag").to_owned();
    let again = send(
        server.addr,
        "GET",
        "/ofrep/v1/configuration",
        &[("If-None-Match", &tag)],
        b"",
    )
    .await;
    assert_eq!(again.status, 304);
}

#[tokio::test]
async fn other_methods_get_405() {
    let server = default_server().await;
    for (method, path) in [
        ("GET", flag_path("bool-flag")),
        ("PUT", flag_path("bool-flag")),
        ("GET", BULK.to_owned()),
        ("DELETE", BULK.to_owned()),
        ("POST", "/ofrep/v1/configuration".to_owned()),
    ] {
        let reply = send(server.addr, method, &path, &[], b"").await;
        assert_eq!(reply.status, 405, "{method} {path}");
    }
    let reply = send(server.addr, "POST", "/ofrep/v2/nothing", &[], b"").await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn bad_bodies_get_invalid_context_and_content_type_is_not_checked() {
    let server = default_server().await;
    for body in [&b"{"[..], b"[1,2]", b"\"text\"", b"not json", b"\xff\xfe"] {
        let reply = send(server.addr, "POST", &flag_path("bool-flag"), &[], body).await;
        assert_eq!(reply.status, 400, "{body:?}");
        assert_eq!(
            reply.json(),
            json!({"key": "bool-flag", "errorCode": "INVALID_CONTEXT", "errorDetails": "Provider context is not valid"})
        );
        let reply = send(server.addr, "POST", BULK, &[], body).await;
        assert_eq!(reply.status, 400, "{body:?}");
        assert_eq!(
            reply.json(),
            json!({"errorCode": "INVALID_CONTEXT", "errorDetails": "Provider context is not valid"})
        );
    }
    // Empty body, a non-object context and another content type are accepted, as flagd accepts them.
    for (content_type, body) in [
        ("application/json", &b""[..]),
        ("text/plain", br#"{"context": {}}"#),
        ("application/json", br#"{"context": [1]}"#),
    ] {
        let reply = send(
            server.addr,
            "POST",
            &flag_path("bool-flag"),
            &[("Content-Type", content_type)],
            body,
        )
        .await;
        assert_eq!(reply.status, 200, "{content_type} {body:?}");
    }
}

#[tokio::test]
async fn oversized_bodies_get_413_and_oversized_headers_431() {
    let config = Settings {
        max_request_body: 64,
        ..Settings::default()
    };
    let server = serve(config, OfrepOptions::default()).await;
    let big = json!({"context": {"padding": "x".repeat(100)}});
    for path in [flag_path("bool-flag"), BULK.to_owned()] {
        let reply = post(server.addr, &path, big.clone()).await;
        assert_eq!(reply.status, 413, "{path}");
        assert_eq!(
            reply.json(),
            json!({"errorDetails": "request body too large"})
        );
    }
    // Chunked, so no Content-Length announces the size: the limit applies while reading.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let chunk = "x".repeat(100);
    let request = format!(
        "POST {BULK} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    assert_eq!(parse_reply(&raw).status, 413);
    // A small body is still fine.
    assert_eq!(post(server.addr, BULK, json!({})).await.status, 200);

    let huge = "v".repeat(TEST_MAX_HEADER * 2);
    let reply = send(server.addr, "POST", BULK, &[("X-Huge", &huge)], b"{}").await;
    assert_eq!(reply.status, 431);
}

#[tokio::test]
async fn a_stalled_client_does_not_block_others() {
    let server = default_server().await;
    // Half a request line and half a body, then silence.
    let mut stalled_head = TcpStream::connect(server.addr).await.expect("connect");
    stalled_head
        .write_all(b"POST /ofrep/v1/eval")
        .await
        .expect("write");
    let mut stalled_body = TcpStream::connect(server.addr).await.expect("connect");
    stalled_body
        .write_all(
            format!("POST {BULK} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{\"con")
                .as_bytes(),
        )
        .await
        .expect("write");
    let reply = tokio::time::timeout(Duration::from_secs(10), post(server.addr, BULK, json!({})))
        .await
        .expect("another client is served while two connections stall");
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn cors_allows_every_origin_by_default_and_answers_preflight() {
    let server = default_server().await;
    let preflight = send(
        server.addr,
        "OPTIONS",
        BULK,
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "content-type,flagd-selector",
            ),
        ],
        b"",
    )
    .await;
    assert!((200..300).contains(&preflight.status), "{preflight:?}");
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    let methods = preflight
        .header("access-control-allow-methods")
        .unwrap_or_default()
        .to_owned();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let allowed = preflight
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(allowed.contains("flagd-selector"), "{allowed}");

    let reply = post_with(
        server.addr,
        BULK,
        &[("Origin", "https://app.example")],
        json!({}),
    )
    .await;
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    let exposed = reply
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed == "*" || exposed.contains("etag"), "{exposed}");
}

#[tokio::test]
async fn cors_origins_restrict_which_origins_are_allowed() {
    let options = OfrepOptions {
        cors_origins: vec![
            "https://good.example".to_owned(),
            "https://*.trusted.example".to_owned(),
        ],
        ..OfrepOptions::default()
    };
    let server = serve(Settings::default(), options).await;
    for (origin, allowed) in [
        ("https://good.example", true),
        ("https://a.trusted.example", true),
        ("https://evil.example", false),
    ] {
        let reply = post_with(server.addr, BULK, &[("Origin", origin)], json!({})).await;
        assert_eq!(reply.status, 200);
        let header = reply.header("access-control-allow-origin");
        if allowed {
            assert_eq!(header, Some(origin));
        } else {
            assert_eq!(header, None, "{origin}");
        }
    }
}

#[tokio::test]
async fn a_flag_file_edit_changes_the_bulk_etag_of_a_running_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    write_atomic(&path, &one_flag("edited", "before"));
    let daemon = start_with_files(&[&path]).await;
    let addr = daemon.addrs().ofrep;
    let first = post(addr, BULK, json!({})).await;
    assert_eq!(first.status, 200);
    let tag = first.header("etag").expect("etag").to_owned();
    assert_eq!(
        post_with(addr, BULK, &[("If-None-Match", &tag)], json!({}))
            .await
            .status,
        304
    );
    write_atomic(&path, &one_flag("edited", "after"));
    wait_for(&daemon, "the edit", |snapshot| {
        crate::runtime_support::default_value(snapshot, "edited") == Some(json!("after"))
    })
    .await;
    let after = post_with(addr, BULK, &[("If-None-Match", &tag)], json!({})).await;
    assert_eq!(after.status, 200);
    assert_ne!(after.header("etag"), Some(tag.as_str()));
    assert_eq!(after.json()["flags"][0]["value"], "after");
    let single = post(addr, &flag_path("edited"), json!({})).await;
    assert_eq!(single.json()["value"], "after");
    daemon.shutdown().await.expect("clean shutdown");
}

/// Statuses a request body alone can produce.
const BODY_STATUSES: [u16; 4] = [200, 400, 404, 413];

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        "[ -~]{0,200}".prop_map(String::into_bytes),
        any::<String>().prop_map(|s| format!(r#"{{"context": {{"k": {s:?}}}}}"#).into_bytes()),
        proptest::collection::vec(
            prop_oneof![
                Just("{"),
                Just("}"),
                Just("["),
                Just("]"),
                Just("\"context\":"),
                Just("1"),
                Just(",")
            ],
            0..64
        )
        .prop_map(|parts| parts.concat().into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// No request body panics the server or gets a status outside OFREP's table.
    #[test]
    fn arbitrary_bodies_get_a_table_status(body in body_strategy(), bulk in any::<bool>()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let store = fixture_store();
        let config = Settings { max_request_body: 128, ..Settings::default() };
        let app = app(&store, config, &OfrepOptions::default());
        let uri = if bulk { BULK.to_owned() } else { flag_path("bool-flag") };
        let request = http::Request::post(uri).body(Body::from(body)).expect("request");
        let response = runtime.block_on(app.oneshot(request)).expect("infallible");
        prop_assert!(BODY_STATUSES.contains(&response.status().as_u16()), "{}", response.status());
    }
}

#[tokio::test]
async fn ofrep_tls_serves_ofrep_over_tls_and_needs_a_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certificates = crate::runtime_support::test_certificates(&["localhost"]);
    certificates.write_server(&dir.path().join("cert.pem"), &dir.path().join("key.pem"));
    let flags = dir.path().join("flags.json");
    write_atomic(&flags, &one_flag("tls-flag", "secure"));
    let mut config =
        crate::runtime_support::local_config(vec![crate::runtime_support::file_source(&flags)]);
    config.serving.tls = Some((dir.path().join("cert.pem"), dir.path().join("key.pem")));
    config.ofrep_tls = true;
    let daemon = flagpole::run(config).await.expect("daemon starts");
    let addr = daemon.addrs().ofrep;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificates.ca_der).expect("CA is usable");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let server_name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector
        .connect(server_name, tcp)
        .await
        .expect("TLS handshake");
    let body = r#"{"context":{}}"#;
    let request = format!(
        "POST /ofrep/v1/evaluate/flags/tls-flag HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    // A peer that closes without close_notify is fine here: the whole response has arrived.
    let _ = tls.read_to_end(&mut raw).await;
    let reply = parse_reply(&raw);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["value"], "secure");

    // Plain HTTP on the TLS port gets no OFREP answer.
    let plain = send(addr, "POST", &flag_path("tls-flag"), &[], b"{}").await;
    assert_ne!(plain.status, 200);
    daemon.shutdown().await.expect("clean shutdown");

    // Without a certificate the option is a configuration error.
    use clap::Parser;
    let args = flagpole::config::Args::try_parse_from([
        "flagpole",
        "start",
        "--ofrep-tls",
        "-f",
        "x.json",
    ])
    .expect("clap parse");
    match flagpole::config::Invocation::try_from(args) {
        Err(flagpole::config::ConfigError::InvalidValue { key, .. }) => {
            assert_eq!(key, "ofrep-tls")
        }
        other => panic!("expected an ofrep-tls error, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_finishes_gets_408_after_the_read_timeout() {
    let store = fixture_store();
    let app = app(&store, Settings::default(), &OfrepOptions::default());
    // One chunk, then nothing: the stream never ends.
    let chunks = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(
        b"{\"context\":",
    ))])
    .chain(futures::stream::pending());
    let request = http::Request::post(BULK)
        .body(Body::from_stream(chunks))
        .expect("request");
    let response = app.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), http::StatusCode::REQUEST_TIMEOUT);
}

#[tokio::test]
async fn bulk_evaluates_each_flag_as_its_default_variant_type_and_numbers_are_float64() {
    let server = default_server().await;
    server.store.replace_source(
        0,
        vec![
            flag(
                "mixed",
                json!({"state": "ENABLED", "variants": {"a": true, "b": "text"}, "defaultVariant": "a",
                       "targeting": {"if": [true, "b", "a"]}}),
                json!({}),
            ),
            flag(
                "wide",
                json!({"state": "ENABLED", "variants": {"n": 9007199254740993_u64}, "defaultVariant": "n"}),
                json!({"big": 9007199254740993_u64}),
            ),
        ],
    );
    server.store.replace_source(1, Vec::new());
    // The single-flag path is untyped: the selected variant's value.
    let single = post(server.addr, &flag_path("mixed"), json!({})).await;
    assert_eq!(single.json()["value"], json!("text"));
    // The bulk path types each flag by its default variant, as flagd's does: GENERAL.
    let bulk = post(server.addr, BULK, json!({})).await;
    assert_eq!(bulk.status, 200);
    let flags = bulk.json()["flags"].as_array().cloned().unwrap_or_default();
    let mixed = flags
        .iter()
        .find(|f| f["key"] == "mixed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(mixed["errorCode"], "GENERAL", "{mixed}");
    assert_eq!(
        mixed["errorDetails"],
        "error processing the flag for evaluation"
    );
    // An integer beyond 2^53 is the float64 flagd sees, in values and metadata alike.
    let wide = post(server.addr, &flag_path("wide"), json!({})).await;
    assert!(
        wide.body.contains(r#""value":9007199254740992"#)
            && wide.body.contains(r#""big":9007199254740992"#),
        "{}",
        wide.body
    );
}
