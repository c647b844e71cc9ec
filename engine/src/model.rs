//! The loaded, immutable form of a flag.
//!
//! A [`Flag`] is built once by [`crate::load`] and then only read: targeting is already compiled, flag-set
//! metadata is already merged into the flag's own metadata, and `$evaluators` are already inlined into the
//! raw targeting kept for re-serialisation (the sync payload).

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::targeting::Rule;

/// Flag or flag-set metadata: a JSON object (the schema allows primitives; the daemon accepts anything).
pub type Metadata = Map<String, Value>;

/// `state` of a flag. flagd compares against the exact string `"DISABLED"`; anything else is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagState {
    /// Evaluated normally.
    Enabled,
    /// Evaluation succeeds with reason `DISABLED` and no value; targeting is not run.
    Disabled,
}

impl FlagState {
    /// The spelling used in flag documents and in the sync payload.
    pub fn as_str(self) -> &'static str {
        match self {
            FlagState::Enabled => "ENABLED",
            FlagState::Disabled => "DISABLED",
        }
    }
}

/// One flag definition, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Flag {
    /// The flag key (the map key, or `key` in the array form).
    pub key: Arc<str>,
    /// Enabled or disabled.
    pub state: FlagState,
    /// The state string exactly as written (an unknown value counts as enabled but is re-emitted as written).
    pub state_raw: Arc<str>,
    /// Variant name → value, sorted by name.
    pub variants: Map<String, Value>,
    /// `defaultVariant`; `None` when absent, null or `""` (the code default applies).
    pub default_variant: Option<Arc<str>>,
    /// Compiled targeting; `None` when absent or exactly `{}` (the flag is then static).
    pub targeting: Option<Rule>,
    /// Targeting as JSON with `$evaluators` inlined, as re-emitted in the sync payload; `None` when absent
    /// or `{}`.
    pub raw_targeting: Option<Value>,
    /// The flag's metadata with the flag-set metadata merged under it (flag keys win).
    pub metadata: Metadata,
    /// `metadata.flagSetId` of the flag or, failing that, of its set, when it is a string.
    pub flag_set_id: Option<Arc<str>>,
}

impl Flag {
    /// Whether the flag has (non-empty) targeting, and so gets `$flagd` injected into its context.
    pub fn has_targeting(&self) -> bool {
        self.targeting.is_some()
    }
}
