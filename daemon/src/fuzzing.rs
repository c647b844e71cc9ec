//! Entry points for the fuzz targets in `daemon/fuzz/` (not a stable API; hidden from the docs).
//!
//! What it owns: a [`Harness`] holding the evaluation port's HTTP router (CORS, Connect, gRPC-Web, gRPC)
//! and the OFREP router over a store with a few flags, built exactly as `run` builds them but without
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

use crate::metrics::Metrics;
use crate::service::{ServiceConfig, Services};
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
        let config = ServiceConfig {
            max_request_body: MAX_REQUEST_BODY,
            ..ServiceConfig::default()
        };
        let services = Services::new(store, config, CancellationToken::new(), metrics.clone());
        let evaluation = crate::transport::evaluation_router(
            services.evaluation_routes().into_axum_router(),
            &[],
            MAX_REQUEST_BODY,
        );
        let ofrep = crate::ofrep::router(
            services,
            metrics,
            &crate::ofrep::OfrepOptions {
                cors_origins: Vec::new(),
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
pub use crate::ofrep::request::body_context as ofrep_body_context;

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
