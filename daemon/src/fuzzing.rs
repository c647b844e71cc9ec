//! Entry points for the fuzz targets in `daemon/fuzz/` (not a stable API; hidden from the docs).
//!
//! What it owns: a [`Harness`] holding the evaluation port's HTTP router (CORS, Connect, gRPC-Web, gRPC)
//! and the OFREP router over a store with a few flags, built by the same [`Routers`] as `run` but without
//! sockets, and functions that hand arbitrary bytes to them as request bodies.
//!
//! What it does not do: open ports or start sources; it asserts nothing about the answers beyond what the
//! fuzz targets check (every request gets an HTTP response and nothing panics).

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::eval::{EvalConfig, Evaluator};
use crate::metrics::Metrics;
use crate::protocols::grpc::{ServiceConfig, Services};
use crate::routers::{RouterOptions, Routers};
use crate::store::Store;

/// The body limit the harness's routers enforce (`--max-request-body`).
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

/// How many response body frames a request's answer is read for (a unary answer has one or two).
const MAX_RESPONSE_FRAMES: usize = 4;

/// How long the harness waits for the next response body frame before it stops reading.
const FRAME_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// The flags the harness serves: every type and a targeting rule, so that decoded requests reach the
/// evaluator.
const FLAGS: &str = r#"{"flags":{
  "bool-flag":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"},
  "string-flag":{"state":"ENABLED","variants":{"a":"a","b":"b"},"defaultVariant":"a",
    "targeting":{"if":[{"ends_with":[{"var":"email"},"@example.com"]},"b",null]}},
  "int-flag":{"state":"ENABLED","variants":{"one":1},"defaultVariant":"one"},
  "float-flag":{"state":"ENABLED","variants":{"half":0.5},"defaultVariant":"half"},
  "object-flag":{"state":"ENABLED","variants":{"o":{"k":[1,2]}},"defaultVariant":"o"},
  "fractional-flag":{"state":"ENABLED","variants":{"r":"r","g":"g"},"defaultVariant":"r",
    "targeting":{"fractional":[["r",50],["g",50]]}}
}}"#;

/// Why the harness cannot be built (a build problem of the fuzz target, never an input's).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The harness's own flag document does not load.
    #[error("the fuzz harness's flags do not load: {0}")]
    Flags(#[from] flagpole_engine::LoadError),
}

/// The evaluation and OFREP routers over a store with `FLAGS`.
#[derive(Debug, Clone)]
pub struct Harness {
    evaluation: Router,
    ofrep: Router,
}

impl Harness {
    /// Builds the routers. Needs a Tokio runtime (the services spawn nothing until a stream starts).
    pub fn new() -> Result<Harness, HarnessError> {
        let loaded = flagpole_engine::parse_document(
            FLAGS,
            flagpole_engine::Format::Json,
            &flagpole_engine::LoadOptions::default(),
        )?;
        let store = Arc::new(Store::new([Arc::from("fuzz")]));
        store.replace_source(0, loaded.flags);
        let metrics = Metrics::new();
        let evaluator = Evaluator::new(store, EvalConfig::default(), metrics);
        let config = ServiceConfig {
            max_request_body: MAX_REQUEST_BODY,
            ..ServiceConfig::default()
        };
        let services = Services::new(evaluator.clone(), config, CancellationToken::new());
        let (readiness, _latches) = crate::readiness::Readiness::new(0);
        let Routers {
            evaluation, ofrep, ..
        } = Routers::new(
            &evaluator,
            &services,
            &readiness,
            &crate::protocols::admin::api::AdminApi {
                control: crate::control::OverrideControl::new(evaluator.store().clone(), None),
                tokens: Arc::new(crate::protocols::admin::auth::AdminTokens::new(None)),
                journal: Arc::new(crate::journal::Journal::new(Metrics::new(), None)),
                evaluator: evaluator.clone(),
                stale_after: crate::lifecycle::DEFAULT_STALE_AFTER,
                shutdown: CancellationToken::new(),
                file_sources: Arc::from([]),
            },
            &RouterOptions {
                cors_origins: Vec::new(),
                max_request_body: MAX_REQUEST_BODY,
                ofrep_sse: None,
            },
        );
        Ok(Harness { evaluation, ofrep })
    }

    /// `POST path` with `content_type` and `body` on the evaluation port's router; returns the HTTP status
    /// and the first [`MAX_RESPONSE_FRAMES`] frames of the body (a stream's first messages).
    pub async fn evaluation(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        send(self.evaluation.clone(), path, content_type, body).await
    }

    /// `POST path` with a JSON `body` on the OFREP router; returns the HTTP status and the body.
    pub async fn ofrep(&self, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        send(self.ofrep.clone(), path, "application/json", body).await
    }
}

/// A process-wide [`Harness`] on its own current-thread Tokio runtime, with blocking calls: the set-up every
/// fuzz target shares (a libFuzzer target is a synchronous function called once per input).
#[derive(Debug)]
pub struct Blocking {
    runtime: tokio::runtime::Runtime,
    harness: Harness,
}

impl Blocking {
    /// The process's harness, built on first use.
    ///
    /// # Panics
    /// When the runtime or the harness cannot be built: a defect of the fuzz set-up, never of an input,
    /// and a fuzzer should stop on it.
    pub fn get() -> &'static Blocking {
        static SHARED: OnceLock<Blocking> = OnceLock::new();
        SHARED.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a Tokio runtime for the fuzz harness");
            let harness = {
                let _guard = runtime.enter();
                Harness::new().expect("the fuzz harness builds")
            };
            Blocking { runtime, harness }
        })
    }

    /// [`Harness::evaluation`], blocking.
    pub fn evaluation(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        self.runtime
            .block_on(self.harness.evaluation(path, content_type, body))
    }

    /// [`Harness::ofrep`], blocking.
    pub fn ofrep(&self, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        self.runtime.block_on(self.harness.ofrep(path, body))
    }
}

async fn send(router: Router, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let request = Request::post(path)
        .header(http::header::CONTENT_TYPE, content_type)
        .header("connect-protocol-version", "1")
        .body(Body::from(body));
    let Ok(request) = request else {
        // A path or content type the fuzz target made up that `http` rejects never reaches the daemon.
        return (0, Vec::new());
    };
    let Ok(response) = router.oneshot(request).await;
    let status = response.status().as_u16();
    // A valid EventStream request opens a stream that never ends: read a few frames, not the whole body.
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    for _ in 0..MAX_RESPONSE_FRAMES {
        match tokio::time::timeout(FRAME_WAIT, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
            }
            // The end of the body, a body error, or a stream with nothing more to say yet.
            Ok(None | Some(Err(_))) | Err(_) => break,
        }
    }
    (status, bytes)
}

/// The OFREP request-body decoder (`context` of a bulk or single-flag request).
pub use crate::protocols::ofrep::request::body_context as ofrep_body_context;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_harness_answers_both_routers() {
        let harness = Blocking::get();
        let (status, body) = harness.evaluation(
            "/flagd.evaluation.v1.Service/ResolveBoolean",
            "application/json",
            br#"{"flagKey":"bool-flag"}"#.to_vec(),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let (status, _) = harness.ofrep("/ofrep/v1/evaluate/flags", b"{}".to_vec());
        assert_eq!(status, 200);
        let (status, _) = harness.ofrep("/ofrep/v1/evaluate/flags/no-such-flag", b"{}".to_vec());
        assert_eq!(status, 404);
    }
}

/// Contexts every flag of a fuzzed document is evaluated with, so that compiled targeting runs.
fn fuzz_contexts() -> [flagpole_engine::Context; 3] {
    let object = |value: serde_json::Value| match value {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    [
        serde_json::Map::new(),
        object(serde_json::json!({"targetingKey": "user-1", "email": "a@example.com", "x": 1})),
        object(
            serde_json::json!({"targetingKey": "", "version": "1.2.3", "x": [1, {"y": null}], "z": 1e308}),
        ),
    ]
}

/// Arbitrary bytes as a flag document: the first byte picks JSON or YAML and strict mode, the rest is the
/// document. Loading must end with flags or a [`flagpole_engine::LoadError`] (never a panic, never
/// unbounded work: the engine's limits see to that), and every loaded flag evaluates under a few contexts.
/// Returns whether the document loaded.
pub fn flag_document(data: &[u8]) -> bool {
    let Some((&selector, text)) = data.split_first() else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return false;
    };
    let format = if selector & 1 == 0 {
        flagpole_engine::Format::Json
    } else {
        flagpole_engine::Format::Yaml
    };
    let options = flagpole_engine::LoadOptions {
        strict: selector & 2 != 0,
    };
    let Ok(loaded) = flagpole_engine::parse_document(text, format, &options) else {
        return false;
    };
    let eval_options = flagpole_engine::EvalOptions {
        timestamp: 1_700_000_000,
        fractional: flagpole_engine::FractionalAlgorithm::default(),
    };
    for flag in &loaded.flags {
        for context in &fuzz_contexts() {
            let _ = flagpole_engine::evaluate(flag, context, &eval_options);
        }
    }
    true
}

/// A small deterministic pseudo-random generator (xorshift64*) for time-boxed mutation runs on the stable
/// toolchain, where libFuzzer is not available.
#[derive(Debug, Clone)]
pub struct Mutator {
    state: u64,
}

/// Fragments a mutation may splice in: the shapes that reach the loader's limits.
const FRAGMENTS: [&str; 12] = [
    "{\"$ref\": \"e\"}",
    "\"$evaluators\": {\"e\": {\"or\": [{\"$ref\": \"e\"}, {\"$ref\": \"e\"}]}},",
    "[[[[[[[[[[[[[[[[",
    "]]]]]]]]]]]]]]]]",
    "{\"fractional\": [[\"a\", 1], [\"b\", 2]]}",
    "{\"sem_ver\": [{\"var\": \"version\"}, \">=\", \"1.0.0\"]}",
    "{\"if\": [true, \"on\", \"off\"]}",
    "\"targeting\": ",
    "1e999",
    "\"\\ud800\"",
    "&anchor *anchor ",
    "null",
];

impl Mutator {
    /// A generator from `seed` (0 is replaced: xorshift has no zero state).
    pub fn new(seed: u64) -> Mutator {
        Mutator { state: seed.max(1) }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// `input` with one to four random edits: byte flips, deletions, duplications of a slice, and
    /// splices of [`FRAGMENTS`].
    pub fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..=self.below(4) {
            let at = self.below(out.len() + 1);
            match self.below(5) {
                0 if !out.is_empty() => {
                    let i = self.below(out.len());
                    out[i] ^= 1 << self.below(8);
                }
                1 if !out.is_empty() => {
                    let end = (at + self.below(16)).min(out.len());
                    out.drain(at.min(end)..end);
                }
                2 if !out.is_empty() => {
                    let start = self.below(out.len());
                    let end = (start + self.below(64)).min(out.len());
                    let slice = out[start..end].to_vec();
                    out.splice(at..at, slice);
                }
                _ => {
                    let fragment = FRAGMENTS[self.below(FRAGMENTS.len())].as_bytes();
                    out.splice(at..at, fragment.iter().copied());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod flag_document_tests {
    use super::*;

    #[test]
    fn the_selector_byte_picks_format_and_strictness() {
        assert!(flag_document(b"\0{\"flags\": {}}"));
        assert!(flag_document(b"\x01flags: {}"));
        assert!(!flag_document(b"\0flags: {}"));
        assert!(!flag_document(b""));
        let mut mutator = Mutator::new(7);
        let a = mutator.mutate(b"{\"flags\": {}}");
        let b = Mutator::new(7).mutate(b"{\"flags\": {}}");
        assert_eq!(a, b, "a seed replays the same run");
    }
}
