//! The loaded, immutable form of a flag.
//!
//! A [`Flag`] is built once by [`crate::load`] and then only read: targeting is already compiled, flag-set
//! metadata is already merged into the flag's own metadata, and `$evaluators` are already inlined into the
//! raw targeting kept for re-serialisation (the sync payload).

use std::fmt;
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
    pub variants: Variants,
    /// `defaultVariant`; `None` when absent, null or `""` (the code default applies).
    pub default_variant: Option<Arc<str>>,
    /// Compiled targeting; `None` when absent or exactly `{}` (the flag is then static).
    pub targeting: Option<Rule>,
    /// Targeting as compact JSON text with `$evaluators` inlined, exactly as re-emitted in the sync payload;
    /// `None` when absent or `{}`.
    pub raw_targeting: Option<RawJson>,
    /// The flag's metadata with the flag-set metadata merged under it (flag keys win). Flags without
    /// metadata of their own share their set's map.
    pub metadata: Arc<Metadata>,
    /// `metadata.flagSetId` of the flag or, failing that, of its set, when it is a string.
    pub flag_set_id: Option<Arc<str>>,
    /// The document's `$evaluators`, each with its own references inlined, shared by the document's flags
    /// with targeting; `None` when the document has none. Only explanations read it (to name the subtrees
    /// a `$ref` brought in); evaluation uses the inlined `targeting`.
    pub evaluators: Option<Arc<Metadata>>,
}

impl Flag {
    /// Whether the flag has (non-empty) targeting, and so gets `$flagd` injected into its context.
    pub fn has_targeting(&self) -> bool {
        self.targeting.is_some()
    }

    /// Whether two flags are defined alike: state, default variant, variants, targeting and metadata (what
    /// a change event announces a difference in). The key and the flag set are the caller's to compare.
    pub fn same_definition(&self, other: &Flag) -> bool {
        std::ptr::eq(self, other)
            || (self.state_raw == other.state_raw
                && self.default_variant == other.default_variant
                && self.variants == other.variants
                && self.raw_targeting == other.raw_targeting
                && self.metadata == other.metadata)
    }
}

/// A JSON value kept as its compact text (keys sorted, as `serde_json` writes a [`Value`]): a few bytes
/// where the same value as a [`Value`] tree costs hundreds per object. Written verbatim into the sync
/// payload; equal texts mean equal values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawJson(Box<str>);

impl RawJson {
    /// The compact text of `value`.
    pub fn from_value(value: &Value) -> RawJson {
        // Writing a `Value` cannot fail: every key is a string and numbers are finite.
        RawJson(
            serde_json::to_string(value)
                .unwrap_or_else(|_| "null".to_owned())
                .into_boxed_str(),
        )
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the text back into a [`Value`] (allocates; for tests and rare inspection).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<Value> for RawJson {
    fn eq(&self, other: &Value) -> bool {
        self.to_value() == *other
    }
}

/// A flag's variants, name → value, sorted by name: a boxed slice, since a flag has a handful (a
/// [`Map`] spends a 600-byte tree node on even one entry). Serialises exactly as the equivalent [`Map`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Variants(Box<[(Box<str>, Value)]>);

impl Variants {
    /// The value of variant `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.get_key_value(name).map(|(_, value)| value)
    }

    /// The stored name and value of variant `name`.
    pub fn get_key_value(&self, name: &str) -> Option<(&str, &Value)> {
        self.0
            .binary_search_by(|(key, _)| (**key).cmp(name))
            .ok()
            .map(|i| (&*self.0[i].0, &self.0[i].1))
    }

    /// The position of variant `name` in name order.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.0.binary_search_by(|(key, _)| (**key).cmp(name)).ok()
    }

    /// Whether `name` is a variant.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get_key_value(name).is_some()
    }

    /// Number of variants.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the flag has no variants.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// (name, value) pairs sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(key, value)| (&**key, value))
    }

    /// Names, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(key, _)| &**key)
    }
}

impl Variants {
    /// From entries already sorted by name, without repeats.
    pub(crate) fn from_sorted(entries: Vec<(String, Value)>) -> Self {
        debug_assert!(entries.is_sorted_by(|a, b| a.0 < b.0));
        Variants(
            entries
                .into_iter()
                .map(|(key, value)| (key.into_boxed_str(), value))
                .collect(),
        )
    }
}

impl From<Map<String, Value>> for Variants {
    fn from(map: Map<String, Value>) -> Self {
        // A `Map` iterates in key order, so the slice is sorted and free of duplicates.
        Variants(
            map.into_iter()
                .map(|(key, value)| (key.into_boxed_str(), value))
                .collect(),
        )
    }
}

impl serde::Serialize for Variants {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}
