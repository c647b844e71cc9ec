//! An immutable index of the flags of one or more sources, with flagd's selector and priority rules.
//!
//! PLACEHOLDER INTERFACE: the index replaces the bodies below; the signatures are the contract.

use std::str::FromStr;
use std::sync::Arc;

use crate::model::Flag;

/// The flags one source currently provides. A source's position in the list given to [`Snapshot::new`] is
/// its priority: later sources win a duplicated (flagSetId, key).
#[derive(Debug, Clone)]
pub struct SourceFlags {
    /// The source identity string (`source=` selectors match it).
    pub source: Arc<str>,
    /// Its flags.
    pub flags: Vec<Arc<Flag>>,
}

/// A `Flagd-Selector` value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selector {
    /// No selector: every flag set, highest-priority source wins.
    #[default]
    All,
    /// `source=<uri>` (or a bare string).
    Source(String),
    /// `flagSetId=<id>`; `flagSetId=` (empty) selects flags without a flag set.
    FlagSetId(String),
}

/// An invalid selector (unknown key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector key {key:?}, valid keys: \"flagSetId\", \"source\"")]
pub struct SelectorError {
    /// The offending key.
    pub key: String,
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Selector::All);
        }
        match s.split_once('=') {
            None => Ok(Selector::Source(s.to_owned())),
            Some(("source", v)) => Ok(Selector::Source(v.to_owned())),
            Some(("flagSetId", v)) => Ok(Selector::FlagSetId(v.to_owned())),
            Some((k, _)) => Err(SelectorError { key: k.to_owned() }),
        }
    }
}

/// An immutable, cheaply shareable (`Arc`) view of every source's flags.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    sources: Vec<SourceFlags>,
}

impl Snapshot {
    /// Builds the index; `sources` are in ascending priority.
    pub fn new(sources: Vec<SourceFlags>) -> Self {
        Snapshot { sources }
    }
}
