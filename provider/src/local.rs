//! Local evaluation for the in-process and file resolvers: the current flag set (swapped atomically when a new
//! payload loads), the sync context that enriches every evaluation, change detection by diffing the old and
//! the new flag set, and the mapping of engine results to OpenFeature resolution details.
//!
//! Targeting is compiled once when a payload loads (by `flagpole-engine`), never per evaluation. The flag set
//! holds exactly what the payload held: the selector was already applied by the daemon (in-process) and a
//! flag file is one source (file).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use flagpole_engine::{
    EvalOptions, Flag, Format, FractionalAlgorithm, LoadError, LoadOptions, Outcome, Reason,
    TypedValue, ValueType,
};
use open_feature::provider::ResolutionDetails;
use open_feature::{EvaluationContext, EvaluationReason, EvaluationResult};
use serde_json::{Map, Value as Json};

use crate::convert::{context_to_json, json_object_to_struct, json_to_metadata};
use crate::resolve::{Resolved, engine_error, not_ready};

/// One loaded flag set.
#[derive(Debug, Default)]
pub(crate) struct FlagSet {
    flags: HashMap<Arc<str>, Arc<Flag>>,
}

impl FlagSet {
    /// Parses a flag document (the sync payload or a flag file).
    pub(crate) fn parse(text: &str, format: Format) -> Result<Self, LoadError> {
        let loaded = flagpole_engine::parse_document(text, format, &LoadOptions::default())?;
        for warning in loaded.warnings.iter().chain(&loaded.notes) {
            tracing::debug!(flag = ?warning.flag, path = %warning.path, "{}", warning.message);
        }
        Ok(FlagSet {
            flags: loaded
                .flags
                .into_iter()
                .map(|f| (f.key.clone(), f))
                .collect(),
        })
    }

    /// The keys that were added, removed or changed from `old` to `self`, sorted.
    pub(crate) fn changed_keys(&self, old: &FlagSet) -> Vec<String> {
        let mut keys = BTreeSet::new();
        for (key, flag) in &self.flags {
            match old.flags.get(key) {
                Some(previous) if previous.same_definition(flag) => {}
                _ => {
                    keys.insert(key.to_string());
                }
            }
        }
        keys.extend(
            old.flags
                .keys()
                .filter(|k| !self.flags.contains_key(*k))
                .map(|k| k.to_string()),
        );
        keys.into_iter().collect()
    }
}

/// What evaluations read: the flags and the sync context, replaced together.
#[derive(Debug, Default)]
pub(crate) struct LocalState {
    pub(crate) flags: FlagSet,
    /// Merged over the caller's context (the daemon's static context; it wins, as it does in flagd).
    pub(crate) sync_context: Map<String, Json>,
}

/// The store shared by a local resolver's background task and its evaluations.
#[derive(Debug, Default)]
pub(crate) struct LocalStore {
    state: ArcSwapOption<LocalState>,
    /// The `fractional` bucketing evaluations use.
    fractional: FractionalAlgorithm,
}

impl LocalStore {
    /// An empty store whose evaluations use `fractional`.
    pub(crate) fn new(fractional: FractionalAlgorithm) -> Self {
        LocalStore {
            state: ArcSwapOption::empty(),
            fractional,
        }
    }

    pub(crate) fn current(&self) -> Option<Arc<LocalState>> {
        self.state.load_full()
    }

    /// Installs a new flag set (with a sync context) and returns the keys that changed, or `None` when this
    /// is the first flag set.
    pub(crate) fn replace(
        &self,
        flags: FlagSet,
        sync_context: Map<String, Json>,
    ) -> Option<Vec<String>> {
        let new = Arc::new(LocalState {
            flags,
            sync_context,
        });
        let old = self.state.swap(Some(new.clone()));
        old.map(|old| new.flags.changed_keys(&old.flags))
    }

    /// Evaluates `key` as `ty`.
    pub(crate) fn resolve(
        &self,
        key: &str,
        ty: ValueType,
        context: &EvaluationContext,
    ) -> EvaluationResult<Resolved> {
        // A guard, not a clone of the Arc: no reference-count traffic on the hot path.
        let guard = self.state.load();
        let Some(state) = guard.as_deref() else {
            return Err(not_ready("no flags received yet"));
        };
        let Some(flag) = state.flags.flags.get(key) else {
            return Err(engine_error(
                flagpole_engine::ErrorCode::FlagNotFound,
                format!("flag `{key}` not found"),
            ));
        };
        let mut ctx = context_to_json(context);
        for (k, v) in &state.sync_context {
            ctx.insert(k.clone(), v.clone());
        }
        let options = EvalOptions {
            fractional: self.fractional,
            ..EvalOptions::now()
        };
        let outcome = flagpole_engine::evaluate(flag, &ctx, &options).typed(ty);
        let reason = match outcome.reason() {
            Reason::Static => EvaluationReason::Static,
            Reason::TargetingMatch => EvaluationReason::TargetingMatch,
            Reason::Default => EvaluationReason::Default,
            Reason::Disabled => EvaluationReason::Disabled,
            Reason::Error => EvaluationReason::Error,
        };
        let (variant, value) = match outcome {
            Outcome::Value { variant, value, .. } => (variant, value),
            Outcome::Disabled | Outcome::CodeDefault => return Ok(Resolved::NoValue { reason }),
            Outcome::Failed { error, .. } => return Err(engine_error(error.code, error.message)),
        };
        let metadata = json_to_metadata(&flag.metadata);
        let value = match value {
            TypedValue::Bool(b) => open_feature::Value::Bool(b),
            TypedValue::String(s) => open_feature::Value::String(s.to_owned()),
            TypedValue::Int(i) => open_feature::Value::Int(i),
            TypedValue::Float(f) => open_feature::Value::Float(f),
            TypedValue::Object(m) => open_feature::Value::Struct(json_object_to_struct(m)),
        };
        Ok(Resolved::Value(ResolutionDetails {
            value,
            variant: Some(variant.to_owned()),
            reason: Some(reason),
            flag_metadata: Some(metadata),
        }))
    }
}
