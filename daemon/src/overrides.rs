//! The override layer (the kill switch): operator decisions laid over every source, the highest priority.
//!
//! What it owns: the override of one flag key ([`Override`]: a forced variant, or the flag disabled, with who
//! set it, why and until when), the set of them ([`Overrides`]), how an override rewrites a flag's
//! definition ([`Overrides::apply`]: a forced variant becomes the default variant with targeting removed;
//! disabling sets state DISABLED; `metadata` says the flag is overridden, by whom and why) and the checks before
//! one is set ([`Overrides::check`]) (`docs/admin.md#overrides`). Setting, persisting and expiring them is
//! `crate::control`'s.
//!
//! Because an override rewrites the merged snapshot itself, every surface sees it alike: RPC, Connect,
//! OFREP, EventStream (`configuration_change`), SyncFlags payloads (so in-process SDKs and chained
//! sidecars), without a check on the evaluation path.
//!
//! What it does not do: authenticate (the admin API does), or decide when to publish (the store does).

use std::collections::BTreeMap;
use std::sync::Arc;

use flagpole_engine::{Flag, FlagState, Selector, Snapshot, SourceFlags, Value};
use serde::{Deserialize, Serialize};

/// The longest `reason` accepted, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

/// The most overrides held at once.
pub const MAX_OVERRIDES: usize = 10_000;

/// What an override does to a flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum Action {
    /// Everyone gets this variant: it becomes the default variant and targeting is removed.
    Variant {
        /// The variant.
        variant: String,
    },
    /// The flag is disabled (state DISABLED).
    Disable,
}

/// One override of one flag key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Override {
    /// What it does.
    #[serde(flatten)]
    pub action: Action,
    /// Why (free text, at most [`MAX_REASON_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who set it: the admin token's name.
    pub actor: String,
    /// When it was set, in unix seconds.
    pub set_at: u64,
    /// When it lifts by itself, in unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// Why an override cannot be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// No source defines the flag.
    #[error("flag `{0}` does not exist in any source")]
    UnknownFlag(String),
    /// A definition of the flag lacks the variant.
    #[error("flag `{flag}` has no variant `{variant}`")]
    UnknownVariant {
        /// The flag key.
        flag: String,
        /// The variant asked for.
        variant: String,
    },
    /// The reason is too long.
    #[error("reason is longer than {MAX_REASON_BYTES} bytes")]
    ReasonTooLong,
    /// The expiry is not in the future.
    #[error("expiresAt is not in the future")]
    AlreadyExpired,
    /// Too many overrides at once.
    #[error("there are already {MAX_OVERRIDES} overrides")]
    TooMany,
}

/// Every override, by flag key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides(pub BTreeMap<String, Override>);

impl Overrides {
    /// Whether `candidate` may be set on `key` now: the flag exists in `snapshot` (some source defines it),
    /// every definition has the forced variant, the reason is short and the expiry in the future.
    pub fn check(
        &self,
        snapshot: &Snapshot,
        key: &str,
        candidate: &Override,
        now: u64,
    ) -> Result<(), OverrideError> {
        if candidate
            .reason
            .as_ref()
            .is_some_and(|r| r.len() > MAX_REASON_BYTES)
        {
            return Err(OverrideError::ReasonTooLong);
        }
        if candidate.expires_at.is_some_and(|at| at <= now) {
            return Err(OverrideError::AlreadyExpired);
        }
        if !self.0.contains_key(key) && self.0.len() >= MAX_OVERRIDES {
            return Err(OverrideError::TooMany);
        }
        let definitions: Vec<&Flag> = snapshot
            .select(&Selector::All)
            .filter(|record| &*record.flag.key == key)
            .map(|record| &*record.flag)
            .collect();
        if definitions.is_empty() {
            return Err(OverrideError::UnknownFlag(key.to_owned()));
        }
        if let Action::Variant { variant } = &candidate.action
            && definitions
                .iter()
                .any(|flag| flag.variants.get(variant).is_none())
        {
            return Err(OverrideError::UnknownVariant {
                flag: key.to_owned(),
                variant: variant.clone(),
            });
        }
        Ok(())
    }

    /// The sources with every overridden flag rewritten (flags of other keys are shared, not copied).
    pub fn apply(&self, sources: &[SourceFlags]) -> Vec<SourceFlags> {
        sources
            .iter()
            .map(|source| SourceFlags {
                source: source.source.clone(),
                flags: if self.0.is_empty() {
                    source.flags.clone()
                } else {
                    source
                        .flags
                        .iter()
                        .map(|flag| match self.0.get(&*flag.key) {
                            None => flag.clone(),
                            Some(rule) => Arc::new(rewrite(flag, rule)),
                        })
                        .collect()
                },
            })
            .collect()
    }

    /// Removes the overrides that expired at `now`, returning their keys.
    pub fn expire(&mut self, now: u64) -> Vec<String> {
        let expired: Vec<String> = self
            .0
            .iter()
            .filter(|(_, o)| o.expires_at.is_some_and(|at| at <= now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &expired {
            self.0.remove(key);
        }
        expired
    }

    /// The earliest expiry, in unix seconds.
    pub fn next_expiry(&self) -> Option<u64> {
        self.0.values().filter_map(|o| o.expires_at).min()
    }
}

/// `flag` as `rule` rewrites it.
fn rewrite(flag: &Flag, rule: &Override) -> Flag {
    let mut flag = flag.clone();
    match &rule.action {
        Action::Variant { variant } => {
            flag.default_variant = Some(Arc::from(variant.as_str()));
            flag.targeting = None;
            flag.raw_targeting = None;
            flag.state = FlagState::Enabled;
            flag.state_raw = Arc::from("ENABLED");
        }
        Action::Disable => {
            flag.state = FlagState::Disabled;
            flag.state_raw = Arc::from("DISABLED");
        }
    }
    let mut metadata = (*flag.metadata).clone();
    metadata.insert("overridden".to_owned(), Value::Bool(true));
    metadata.insert("overriddenBy".to_owned(), Value::String(rule.actor.clone()));
    if let Some(reason) = &rule.reason {
        metadata.insert("overrideReason".to_owned(), Value::String(reason.clone()));
    }
    flag.metadata = Arc::new(metadata);
    flag
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagpole_engine::{Format, LoadOptions, parse_document};

    fn sources() -> Vec<SourceFlags> {
        let text = r#"{"flags": {
            "checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
                         "targeting": {"if": [{"==": [{"var": "plan"}, "free"]}, "off", "on"]},
                         "metadata": {"owner": "shop"}},
            "other": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}}}"#;
        let flags = parse_document(text, Format::Json, &LoadOptions::default())
            .expect("loads")
            .flags;
        vec![SourceFlags {
            source: Arc::from("f.json"),
            flags,
        }]
    }

    fn rule(action: Action) -> Override {
        Override {
            action,
            reason: Some("incident 42".to_owned()),
            actor: "oncall".to_owned(),
            set_at: 1,
            expires_at: None,
        }
    }

    #[test]
    fn a_forced_variant_removes_targeting_and_says_so_in_metadata() {
        let mut overrides = Overrides::default();
        overrides.0.insert(
            "checkout".to_owned(),
            rule(Action::Variant {
                variant: "off".to_owned(),
            }),
        );
        let original = sources();
        let applied = overrides.apply(&original);
        let checkout = applied[0]
            .flags
            .iter()
            .find(|f| &*f.key == "checkout")
            .expect("there");
        assert_eq!(checkout.default_variant.as_deref(), Some("off"));
        assert!(checkout.targeting.is_none() && checkout.raw_targeting.is_none());
        assert_eq!(checkout.metadata["overridden"], Value::Bool(true));
        assert_eq!(checkout.metadata["overriddenBy"], "oncall");
        assert_eq!(checkout.metadata["overrideReason"], "incident 42");
        assert_eq!(checkout.metadata["owner"], "shop");
        // Other flags are shared, not copied.
        let find = |flags: &[Arc<Flag>]| {
            flags
                .iter()
                .find(|f| &*f.key == "other")
                .cloned()
                .expect("there")
        };
        assert!(Arc::ptr_eq(
            &find(&applied[0].flags),
            &find(&original[0].flags)
        ));
    }

    #[test]
    fn disabling_sets_the_state() {
        let mut overrides = Overrides::default();
        overrides
            .0
            .insert("checkout".to_owned(), rule(Action::Disable));
        let applied = overrides.apply(&sources());
        let checkout = applied[0]
            .flags
            .iter()
            .find(|f| &*f.key == "checkout")
            .expect("there");
        assert_eq!(checkout.state, FlagState::Disabled);
        assert_eq!(&*checkout.state_raw, "DISABLED");
    }

    #[test]
    fn unknown_flags_and_variants_and_bad_input_are_refused() {
        let snapshot = Snapshot::new(sources());
        let overrides = Overrides::default();
        let variant = |v: &str| {
            rule(Action::Variant {
                variant: v.to_owned(),
            })
        };
        assert_eq!(
            overrides.check(&snapshot, "nope", &variant("off"), 10),
            Err(OverrideError::UnknownFlag("nope".to_owned()))
        );
        assert!(matches!(
            overrides.check(&snapshot, "checkout", &variant("maybe"), 10),
            Err(OverrideError::UnknownVariant { .. })
        ));
        let mut long = variant("off");
        long.reason = Some("x".repeat(MAX_REASON_BYTES + 1));
        assert_eq!(
            overrides.check(&snapshot, "checkout", &long, 10),
            Err(OverrideError::ReasonTooLong)
        );
        let mut past = variant("off");
        past.expires_at = Some(10);
        assert_eq!(
            overrides.check(&snapshot, "checkout", &past, 10),
            Err(OverrideError::AlreadyExpired)
        );
        assert_eq!(
            overrides.check(&snapshot, "checkout", &variant("off"), 10),
            Ok(())
        );
    }

    #[test]
    fn the_number_of_overrides_is_bounded_but_a_replacement_is_not_refused() {
        let snapshot = Snapshot::new(sources());
        let mut overrides = Overrides::default();
        for i in 0..MAX_OVERRIDES - 1 {
            overrides.0.insert(format!("k{i}"), rule(Action::Disable));
        }
        overrides
            .0
            .insert("checkout".to_owned(), rule(Action::Disable));
        assert_eq!(
            overrides.check(&snapshot, "other", &rule(Action::Disable), 10),
            Err(OverrideError::TooMany)
        );
        assert_eq!(
            overrides.check(&snapshot, "checkout", &rule(Action::Disable), 10),
            Ok(())
        );
    }

    #[test]
    fn expired_overrides_lift() {
        let mut overrides = Overrides::default();
        let mut soon = rule(Action::Disable);
        soon.expires_at = Some(100);
        overrides.0.insert("checkout".to_owned(), soon);
        overrides
            .0
            .insert("other".to_owned(), rule(Action::Disable));
        assert_eq!(overrides.next_expiry(), Some(100));
        assert!(overrides.expire(99).is_empty());
        assert_eq!(overrides.expire(100), vec!["checkout".to_owned()]);
        assert_eq!(overrides.0.len(), 1);
        assert_eq!(overrides.next_expiry(), None);
    }

    #[test]
    fn the_state_file_form_round_trips() {
        let mut overrides = Overrides::default();
        overrides.0.insert(
            "checkout".to_owned(),
            rule(Action::Variant {
                variant: "off".to_owned(),
            }),
        );
        let text = serde_json::to_string(&overrides).expect("serialises");
        assert!(text.contains(r#""action":"variant""#), "{text}");
        let back: Overrides = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, overrides);
    }
}
