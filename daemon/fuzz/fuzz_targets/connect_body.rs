//! Arbitrary request bodies on the evaluation port's HTTP router (Connect unary and streaming in JSON and
//! proto, gRPC-Web, gRPC), for every flagd method path: each gets an HTTP response and nothing panics.
//! The first byte picks the method and the content type; the rest is the body.
#![no_main]

use flagpole::fuzzing::Blocking;
use libfuzzer_sys::fuzz_target;

/// Method paths of `flagd.evaluation.v1`, `flagd.evaluation.v2` and `schema.v1` (streaming ones included).
const PATHS: [&str; 8] = [
    "/flagd.evaluation.v1.Service/ResolveBoolean",
    "/flagd.evaluation.v1.Service/ResolveObject",
    "/flagd.evaluation.v1.Service/ResolveAll",
    "/flagd.evaluation.v1.Service/EventStream",
    "/flagd.evaluation.v2.Service/ResolveString",
    "/flagd.evaluation.v2.Service/ResolveFloat",
    "/schema.v1.Service/ResolveInt",
    "/flagd.evaluation.v2.Service/EventStream",
];

/// Content types: Connect unary and streaming in both codecs, gRPC-Web binary and text, gRPC, and junk.
const CONTENT_TYPES: [&str; 8] = [
    "application/json",
    "application/proto",
    "application/connect+json",
    "application/connect+proto",
    "application/grpc-web+proto",
    "application/grpc-web-text",
    "application/grpc",
    "text/plain",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let path = PATHS[usize::from(selector & 0x07)];
    let content_type = CONTENT_TYPES[usize::from((selector >> 3) & 0x07)];
    let harness = Blocking::get();
    let (status, _) = harness.evaluation(path, content_type, body.to_vec());
    assert!((200..600).contains(&status), "status {status}");
});
