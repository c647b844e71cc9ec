//! The protocol-neutral evaluation core that every evaluation protocol (gRPC and Connect, OFREP) calls.
//!
//! What it owns: reading the protocol-independent part of a request (the `Flagd-Selector` header, the
//! context merge of body, `-X` and `-H`; [`request`]), resolving flags in a snapshot (one flag for a typed
//! call, every selected flag for a bulk call; [`resolve`]), the response metadata (selector reflection with
//! the flag's metadata over it; [`metadata`]), and recording evaluations in the metrics.
//!
//! What it does not do: speak any wire format. Requests arrive as an `http::HeaderMap` and a JSON context,
//! answers leave as the engine's [`flagpole_engine::Outcome`] and a [`metadata::ResponseMetadata`]
//! view; each protocol in `crate::protocols` converts at its own edge (gRPC to `Struct`, OFREP to JSON).
//! Nothing here blocks or locks: a request reads the store's current snapshot.

pub mod explain;
pub mod metadata;
pub mod request;
pub mod resolve;

use std::collections::BTreeMap;
use std::sync::Arc;

use flagpole_engine::{
    Context, ErrorCode, EvalOptions, Flag, FractionalAlgorithm, Outcome, Snapshot,
};
use http::HeaderMap;

use crate::metrics::Metrics;
use crate::store::Store;
pub use request::{EvalRequest, HeaderMapping, RequestError};

/// What evaluation needs from the configuration.
#[derive(Debug, Clone, Default)]
pub struct EvalConfig {
    /// `-X key=value`: static context values, merged over the request context (and sent as `sync_context`
    /// and by `GetMetadata`).
    pub context_values: BTreeMap<String, String>,
    /// `-H header=key`: request header name (matched case-insensitively) → context key. Only non-empty
    /// header values are used; not applied on `schema.v1`.
    pub header_to_context: Vec<(String, String)>,
    /// Which `fractional` bucketing the engine uses.
    pub fractional: FractionalAlgorithm,
}

/// The evaluation core: the store, the evaluation configuration and the metrics. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Evaluator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<Store>,
    config: EvalConfig,
    metrics: Metrics,
}

impl Evaluator {
    /// An evaluator over `store`.
    pub fn new(store: Arc<Store>, mut config: EvalConfig, metrics: Metrics) -> Self {
        // Matching `-H` names case-insensitively means lower-casing them once: `HeaderMap` names are.
        for (header, _) in &mut config.header_to_context {
            header.make_ascii_lowercase();
        }
        Evaluator {
            inner: Arc::new(Inner {
                store,
                config,
                metrics,
            }),
        }
    }

    /// The current merged snapshot (lock-free).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.store.snapshot()
    }

    /// The store the snapshots come from.
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// The evaluation configuration.
    pub fn config(&self) -> &EvalConfig {
        &self.inner.config
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Reads a request's selector and context: `body` is the context the protocol decoded from its body.
    pub fn read_request(
        &self,
        headers: &HeaderMap,
        body: Context,
        mapping: HeaderMapping,
    ) -> Result<EvalRequest, RequestError> {
        request::read(&self.inner.config, headers, body, mapping)
    }

    /// The options of one request's evaluations: the clock read once (`$flagd.timestamp`), the configured
    /// bucketing. A bulk request evaluates every flag with the same options.
    pub fn options(&self) -> EvalOptions {
        EvalOptions {
            fractional: self.inner.config.fractional,
            ..EvalOptions::now()
        }
    }

    /// Evaluates one flag with a request's `options`, counting it in the flag's usage (not in the
    /// metrics: see [`Evaluator::record`]).
    pub fn evaluate<'f>(
        &self,
        flag: &'f Flag,
        context: &Context,
        options: &EvalOptions,
    ) -> Outcome<'f> {
        let outcome = flagpole_engine::evaluate(flag, context, options);
        if let Some(usage) = self.inner.store.usage() {
            usage.hit(
                &flag.key,
                outcome.variant(),
                u64::try_from(options.timestamp).unwrap_or(0),
            );
        }
        outcome
    }

    /// Explains an evaluation against the current snapshot, as this evaluator would answer it (no
    /// metrics); `None` when the flag is not in the selection.
    pub fn explain(&self, input: &explain::ExplainInput) -> Option<serde_json::Value> {
        explain::explain(&self.snapshot(), &self.inner.config, input, &self.options())
    }

    /// Records an evaluation in the metrics. flagd records the gRPC evaluation services (v1, v2, schema.v1
    /// and ResolveAll), not OFREP, and so does flagpole (`docs/protocols.md#metrics-and-logs`).
    pub fn record<V>(&self, key: &str, outcome: &Outcome<'_, V>) {
        self.inner.metrics.record_evaluation(
            key,
            outcome.variant().unwrap_or_default(),
            outcome.reason().as_str(),
            outcome.error_code().map(ErrorCode::as_str),
        );
    }
}
