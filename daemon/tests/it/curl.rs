//! The evaluation and OFREP ports driven by the real `curl` binary, as the README shows it: Connect JSON on
//! v1 and v2, gRPC-Web (binary framing), and OFREP single, bulk and `If-None-Match` revalidation.
//!
//! `curl` is part of every supported machine image; a missing binary fails the test (it never skips).

use std::net::SocketAddr;
use std::process::Command;

use serde_json::{Value, json};

use crate::runtime_support::start_with_files;

const FLAGS: &str = r##"{"flags":{
  "bool-flag":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"},
  "int-flag":{"state":"ENABLED","variants":{"ten":10,"big":12345678901},"defaultVariant":"big"},
  "color":{"state":"ENABLED","variants":{"red":"#f00","blue":"#00f"},"defaultVariant":"red",
           "targeting":{"if":[{"==":[{"var":"team"},"ops"]},"blue",null]}},
  "no-default":{"state":"ENABLED","variants":{"a":"x"}}
}}"##;

/// Runs curl with these arguments; returns (HTTP status, response headers, body).
fn curl(args: &[&str]) -> (u16, String, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let headers = dir.path().join("headers");
    let output = Command::new("curl")
        .args(["-sS", "-o", "-", "-D"])
        .arg(&headers)
        .args(["-w", "", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl (is it installed?): {e}"));
    assert!(
        output.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let headers = std::fs::read_to_string(&headers).expect("curl wrote headers");
    let status = headers
        .lines()
        .rev()
        .find(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {headers:?}"));
    (status, headers, output.stdout)
}

fn post_json(addr: SocketAddr, path: &str, body: &str, extra: &[&str]) -> (u16, String, Value) {
    let url = format!("http://{addr}{path}");
    let mut args = vec![
        "-X",
        "POST",
        url.as_str(),
        "-H",
        "Content-Type: application/json",
        "-d",
        body,
    ];
    args.extend_from_slice(extra);
    let (status, headers, body) = curl(&args);
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)))
    };
    (status, headers, json)
}

fn header<'h>(headers: &'h str, name: &str) -> Option<&'h str> {
    headers.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_speaks_connect_json_grpc_web_and_ofrep() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("flags.json");
    std::fs::write(&path, FLAGS).expect("write flags");
    let daemon = start_with_files(&[&path]).await;
    let eval = daemon.addrs().evaluation;
    let ofrep = daemon.addrs().ofrep;

    tokio::task::spawn_blocking(move || {
        // Connect JSON, v1: zero values emitted, int64 as a string, targeting from the body context.
        let (status, _, body) = post_json(
            eval,
            "/flagd.evaluation.v1.Service/ResolveString",
            r#"{"flagKey":"color","context":{"team":"ops"}}"#,
            &[],
        );
        assert_eq!(status, 200);
        assert_eq!(body, json!({"value":"#00f","reason":"TARGETING_MATCH","variant":"blue","metadata":{}}));
        let (_, _, body) =
            post_json(eval, "/flagd.evaluation.v1.Service/ResolveInt", r#"{"flag_key":"int-flag"}"#, &[]);
        assert_eq!(body["value"], json!("12345678901"));
        // v1 cannot say "code default": FLAG_NOT_FOUND as a Connect error with HTTP 404.
        let (status, _, body) =
            post_json(eval, "/flagd.evaluation.v1.Service/ResolveString", r#"{"flagKey":"no-default"}"#, &[]);
        assert_eq!((status, body), (404, json!({"code":"not_found","message":"Flag not found"})));
        // v2 leaves value and variant out for a code default.
        let (status, _, body) =
            post_json(eval, "/flagd.evaluation.v2.Service/ResolveString", r#"{"flagKey":"no-default"}"#, &[]);
        assert_eq!((status, body), (200, json!({"reason":"DEFAULT","metadata":{}})));

        // gRPC-Web, binary: one uncompressed frame carrying ResolveBooleanRequest{flag_key:"bool-flag"}.
        let mut message = vec![0x0a, 9];
        message.extend_from_slice(b"bool-flag");
        let mut frame = vec![0u8];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(&message);
        let request = dir.path().join("grpc-web.bin");
        std::fs::write(&request, &frame).expect("write frame");
        let url = format!("http://{eval}/flagd.evaluation.v1.Service/ResolveBoolean");
        let data = format!("@{}", request.display());
        let (status, headers, body) = curl(&[
            "-X", "POST", url.as_str(), "-H", "Content-Type: application/grpc-web+proto",
            "-H", "X-Grpc-Web: 1", "--data-binary", data.as_str(),
        ]);
        assert_eq!(status, 200);
        assert!(header(&headers, "content-type").is_some_and(|v| v.starts_with("application/grpc-web")));
        // Data frame: flag 0, length, then ResolveBooleanResponse{value: true (field 1), reason "STATIC" ...}.
        assert_eq!(body.first(), Some(&0u8), "first frame is a data frame: {body:?}");
        let len = u32::from_be_bytes(body[1..5].try_into().expect("frame length")) as usize;
        let payload = &body[5..5 + len];
        assert_eq!(&payload[..2], &[0x08, 0x01], "value = true: {payload:?}");
        assert!(payload.windows(6).any(|w| w == b"STATIC"), "reason STATIC: {payload:?}");
        let trailer = &body[5 + len..];
        assert_eq!(trailer.first(), Some(&0x80u8), "trailer frame follows: {trailer:?}");
        assert!(String::from_utf8_lossy(&trailer[5..]).contains("grpc-status:0"), "{trailer:?}");

        // OFREP: single flag, bulk with an ETag, and 304 on revalidation.
        let (status, _, body) =
            post_json(ofrep, "/ofrep/v1/evaluate/flags/color", r#"{"context":{"team":"ops"}}"#, &[]);
        assert_eq!(status, 200);
        assert_eq!(body, json!({"value":"#00f","key":"color","reason":"TARGETING_MATCH","variant":"blue","metadata":{}}));
        let (status, headers, body) = post_json(ofrep, "/ofrep/v1/evaluate/flags", r#"{"context":{}}"#, &[]);
        assert_eq!(status, 200);
        assert_eq!(body["flags"].as_array().map(Vec::len), Some(4), "{body}");
        let etag = header(&headers, "etag").expect("bulk answer has an ETag").to_owned();
        let if_none_match = format!("If-None-Match: {etag}");
        let (status, _, body) =
            post_json(ofrep, "/ofrep/v1/evaluate/flags", r#"{"context":{}}"#, &["-H", &if_none_match]);
        assert_eq!((status, body), (304, Value::Null));
        // Another context changes the answer, so the old tag no longer matches.
        let (status, _, _) = post_json(
            ofrep,
            "/ofrep/v1/evaluate/flags",
            r#"{"context":{"team":"ops"}}"#,
            &["-H", &if_none_match],
        );
        assert_eq!(status, 200);
    })
    .await
    .expect("curl checks");
    daemon.shutdown().await.expect("clean shutdown");
}
