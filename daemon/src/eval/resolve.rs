//! Resolving flags in a snapshot: one flag for a typed call, every selected flag for a bulk call, with
//! flagd's lookup and inclusion rules. Pure: no metrics, no wire types (the caller records and renders).

use flagpole_engine::{
    Context, EvalError, Flag, Outcome, Selector, Snapshot, TypedValue, ValueType,
};

use super::Evaluator;
use super::metadata::ResponseMetadata;
use super::request::{EvalRequest, context_keys};

/// An outcome with its value converted for the requested type.
pub type TypedOutcome<'f> = Outcome<'f, TypedValue<'f>>;

/// A typed single-flag resolution: what happened, and the flag it happened to (`None`: not found).
#[derive(Debug)]
pub struct Resolved<'s> {
    /// What happened.
    pub outcome: TypedOutcome<'s>,
    /// The flag, when the key was found in the selection.
    pub flag: Option<&'s Flag>,
}

impl<'s> Resolved<'s> {
    /// The response metadata; `None` when the flag was not found (gRPC then sends none).
    pub fn metadata<'a>(&'a self, selector: &'a Selector) -> Option<ResponseMetadata<'a>> {
        self.flag
            .map(|flag| ResponseMetadata::of_flag(selector, &flag.metadata))
    }
}

/// Resolves `key` as `ty` for `request` in `snapshot` (a missing key is FLAG_NOT_FOUND).
pub fn resolve_typed<'s>(
    evaluator: &Evaluator,
    snapshot: &'s Snapshot,
    key: &str,
    ty: ValueType,
    request: &EvalRequest,
) -> Resolved<'s> {
    let flag = snapshot.get(key, &request.selector).map(|flag| &**flag);
    let outcome = match flag {
        None => Outcome::failed(EvalError::not_found(key)),
        Some(flag) => evaluator
            .evaluate(flag, &request.context, &evaluator.options())
            .typed(ty),
    };
    trace(key, &request.context, &outcome);
    note(key, flag, &request.context, &outcome);
    Resolved { outcome, flag }
}

/// The bulk selection: one flag per selected key, the one a single-flag lookup of that key would evaluate
/// (flagd evaluates bulk entries by key alone), sorted by key.
pub fn bulk_selection<'s>(snapshot: &'s Snapshot, selector: &Selector) -> Vec<&'s Flag> {
    snapshot
        .select_by_key(selector)
        .into_iter()
        .map(|flag| &**flag)
        .collect()
}

/// One flag of a typed bulk resolution.
#[derive(Debug)]
pub struct BulkResolved<'s> {
    /// The flag.
    pub flag: &'s Flag,
    /// The type it was evaluated as: its default variant's.
    pub ty: ValueType,
    /// What happened.
    pub outcome: TypedOutcome<'s>,
}

/// Resolves every selected flag as the type of its default variant, with flagd's ResolveAll inclusion rule
/// (`docs/protocols.md#resolveall-v1-and-schemav1`): flags without a default variant of a usable type are
/// left out. Sorted by key.
pub fn resolve_bulk_typed<'s>(
    evaluator: &Evaluator,
    snapshot: &'s Snapshot,
    request: &EvalRequest,
) -> Vec<BulkResolved<'s>> {
    let options = evaluator.options();
    let resolved: Vec<BulkResolved<'s>> = bulk_selection(snapshot, &request.selector)
        .into_iter()
        .filter_map(|flag| {
            let ty = ValueType::of_default_variant(flag)?;
            let outcome = evaluator
                .evaluate(flag, &request.context, &options)
                .typed(ty);
            Some(BulkResolved { flag, ty, outcome })
        })
        .collect();
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(flags = resolved.len(), context_keys = ?context_keys(&request.context), "resolved all flags");
    }
    crate::telemetry::note_bulk(resolved.len(), &request.context);
    resolved
}

/// A short label for logs.
fn outcome_label<V>(outcome: &Outcome<'_, V>) -> &'static str {
    match outcome {
        Outcome::CodeDefault => "DEFAULT (code default)",
        Outcome::Failed { error, .. } => error.code.as_str(),
        other => other.reason().as_str(),
    }
}

/// Notes an evaluation on the request's span (when one is recorded).
pub fn note<V>(key: &str, flag: Option<&Flag>, context: &Context, outcome: &Outcome<'_, V>) {
    crate::telemetry::note_evaluation(
        key,
        flag.and_then(|f| f.flag_set_id.as_deref()),
        context,
        outcome.variant(),
        outcome.reason().as_str(),
        outcome.error_code().map(flagpole_engine::ErrorCode::as_str),
    );
}

fn trace<V>(key: &str, context: &Context, outcome: &Outcome<'_, V>) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let outcome = outcome_label(outcome);
        tracing::debug!(flag_key = key, context_keys = ?context_keys(context), outcome, "resolved flag");
    }
}
