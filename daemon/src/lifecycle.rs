//! Flag lifecycle: the conventional metadata (`owner`, `expires`, `kind`, `description`), the stale
//! markers computed from it, from usage and from overrides, and the task that keeps the stale gauges, the
//! daily expiry warnings and the persisted usage current (`docs/admin.md#flag-lifecycle`).
//!
//! Stale markers, each after `--stale-after` (default [`DEFAULT_STALE_AFTER`]):
//! - `expired`: `metadata.expires` is a date in the past;
//! - `unused`: no evaluation for that long (counting from when the daemon first served the flag);
//! - `single_variant`: one variant served to everyone for that long — a finished rollout (not for `kind`
//!   `ops` or `permission`, which are meant to stay);
//! - `settled_fractional`: a `fractional` split gives all of its weight to one variant (100/0);
//! - `long_override`: an override in force for that long.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use flagpole_engine::{Flag, Record, Snapshot, Value};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::overrides::{Override, Overrides};
use crate::state_dir::StateDir;
use crate::store::Store;
use crate::usage::{FlagUsage, USAGE_PERSIST_INTERVAL, Usage};

/// `--stale-after` when not given: 30 days.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(30 * 86_400);

/// Every stale reason, as the gauge labels them.
pub const STALE_REASONS: [&str; 5] = [
    "expired",
    "unused",
    "single_variant",
    "settled_fractional",
    "long_override",
];

const DAY: u64 = 86_400;

/// After a change, the pass waits this long for further changes before it runs.
pub const LIFECYCLE_COALESCE: Duration = Duration::from_secs(1);

/// One stale marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stale {
    /// One of [`STALE_REASONS`].
    pub reason: &'static str,
    /// What was found, for people.
    pub detail: String,
}

/// The stale markers of `flag` at `now` (unix seconds), given its usage and override.
pub fn stale(
    flag: &Flag,
    usage: Option<&FlagUsage>,
    forced: Option<&Override>,
    now: u64,
    after: Duration,
) -> Vec<Stale> {
    let after = after.as_secs();
    let days = |seconds: u64| seconds / DAY;
    let mut found = Vec::new();
    if let Some(Value::String(expires)) = flag.metadata.get("expires")
        && let Some(day) = flagpole_engine::load::iso_day(expires)
        && day < i64::try_from(now / DAY).unwrap_or(i64::MAX)
    {
        found.push(Stale {
            reason: "expired",
            detail: format!("metadata.expires {} has passed", &expires[..10]),
        });
    }
    if let Some(usage) = usage {
        let last = match usage.last_evaluated {
            0 => usage.first_seen,
            at => at,
        };
        if now.saturating_sub(last) >= after {
            found.push(Stale {
                reason: "unused",
                detail: if usage.last_evaluated == 0 {
                    format!(
                        "never evaluated in the {} days since it was first served",
                        days(now - last)
                    )
                } else {
                    format!("not evaluated for {} days", days(now - last))
                },
            });
        }
        let kind = flag.metadata.get("kind").and_then(Value::as_str);
        let window = now.saturating_sub(after);
        let served: Vec<&String> = usage
            .variants
            .iter()
            .filter(|(_, v)| v.last_served >= window && v.last_served > 0)
            .map(|(name, _)| name)
            .collect();
        if !matches!(kind, Some("ops" | "permission"))
            && usage.first_seen <= window
            && let [only] = served.as_slice()
        {
            found.push(Stale {
                reason: "single_variant",
                detail: format!(
                    "only `{only}` was served for {} days: a finished rollout, remove the flag",
                    days(after)
                ),
            });
        }
    }
    if let Some(variant) = flag
        .raw_targeting
        .as_ref()
        // Parsing the rule text is only worth it when it mentions the operator.
        .filter(|raw| raw.as_str().contains("\"fractional\""))
        .and_then(|raw| settled_fractional(&raw.to_value()))
    {
        found.push(Stale {
            reason: "settled_fractional",
            detail: format!("a fractional split gives all of its weight to {variant}"),
        });
    }
    if let Some(forced) = forced
        && now.saturating_sub(forced.set_at) >= after
    {
        found.push(Stale {
            reason: "long_override",
            detail: format!(
                "overridden by {} for {} days",
                forced.actor,
                days(now - forced.set_at)
            ),
        });
    }
    found
}

/// The variant a constant `fractional` split gives all of its weight to, anywhere in `rule`.
fn settled_fractional(rule: &Value) -> Option<String> {
    match rule {
        Value::Object(map) => {
            if map.len() == 1
                && let Some(Value::Array(args)) = map.get("fractional")
            {
                let dists = match args.first() {
                    Some(Value::Array(_)) => &args[..],
                    _ => args.get(1..).unwrap_or_default(),
                };
                let mut weighted = Vec::new();
                let mut constant = !dists.is_empty();
                for dist in dists {
                    let Value::Array(parts) = dist else {
                        constant = false;
                        break;
                    };
                    let weight = match parts.get(1) {
                        None | Some(Value::Null) => Some(1.0),
                        Some(w) => w.as_f64(),
                    };
                    match (parts.first(), weight) {
                        (Some(variant), Some(w)) if !variant.is_object() => {
                            if w > 0.0 {
                                weighted.push(variant.to_string());
                            }
                        }
                        _ => constant = false,
                    }
                }
                if constant && weighted.len() == 1 && dists.len() > 1 {
                    return weighted.pop();
                }
            }
            map.values().find_map(settled_fractional)
        }
        Value::Array(items) => items.iter().find_map(settled_fractional),
        _ => None,
    }
}

/// One flag as `GET /api/v1/flags` lists it.
pub fn describe(
    record: &Record,
    usage: Option<&FlagUsage>,
    forced: Option<&Override>,
    now: u64,
    after: Duration,
) -> Value {
    let flag = &record.flag;
    let meta = |key: &str| flag.metadata.get(key).cloned().unwrap_or(Value::Null);
    json!({
        "key": &*flag.key,
        "flagSetId": flag.flag_set_id.as_deref(),
        "source": &*record.source,
        "state": &*flag.state_raw,
        "defaultVariant": flag.default_variant.as_deref(),
        "variants": flag.variants.keys().collect::<Vec<_>>(),
        "targeting": flag.targeting.is_some(),
        "owner": meta("owner"),
        "kind": meta("kind"),
        "expires": meta("expires"),
        "description": meta("description"),
        "override": forced,
        "usage": usage,
        "stale": stale(flag, usage, forced, now, after),
    })
}

/// Every flag of `snapshot`, described.
pub fn list(
    snapshot: &Snapshot,
    usage: &Usage,
    overrides: &Overrides,
    now: u64,
    after: Duration,
) -> Vec<Value> {
    let all = usage.all();
    snapshot
        .select(&flagpole_engine::Selector::All)
        .map(|record| {
            describe(
                record,
                all.get(&*record.flag.key),
                overrides.0.get(&*record.flag.key),
                now,
                after,
            )
        })
        .collect()
}

/// Keeps the stale gauges and the daily expiry warnings current (after each burst of changes, coalesced
/// over [`LIFECYCLE_COALESCE`], and every [`USAGE_PERSIST_INTERVAL`]) and writes the usage to the state
/// directory on each interval and when `stop` fires.
pub async fn run(
    store: Arc<Store>,
    usage: Arc<Usage>,
    metrics: Metrics,
    state: Option<StateDir>,
    after: Duration,
    stop: CancellationToken,
) {
    let mut changes = store.subscribe();
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + USAGE_PERSIST_INTERVAL,
        USAGE_PERSIST_INTERVAL,
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned: HashMap<Arc<str>, u64> = HashMap::new();
    loop {
        let persist = tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => true,
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
                // A burst of changes (a start, a churning source) makes one pass, not one per change.
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(LIFECYCLE_COALESCE) => {}
                }
                changes.borrow_and_update();
                false
            }
        };
        let now = crate::unix_now();
        let snapshot = store.snapshot();
        let flags = marked(&snapshot, &usage, &store.overrides(), now, after);
        for warning in report(&flags, &metrics, &mut warned, now) {
            tracing::warn!(flag = %warning.key, owner = ?warning.owner, "{}", warning.message);
        }
        if persist && let Some(state) = &state {
            save(&usage, state, now);
        }
    }
    if let Some(state) = &state {
        save(&usage, state, crate::unix_now());
    }
}

fn save(usage: &Usage, state: &StateDir, now: u64) {
    if let Err(error) = usage.persist(state, now) {
        tracing::warn!(%error, "cannot write the usage state file; will retry");
    }
}

/// A warning to log.
#[derive(Debug, PartialEq, Eq)]
struct Warning {
    key: String,
    owner: Option<String>,
    message: String,
}

/// A flag with what the periodic pass needs of it.
struct Marked<'s> {
    key: &'s str,
    owner: Option<&'s str>,
    expires: Option<&'s str>,
    stale: Vec<Stale>,
}

/// Every flag of `snapshot` with its stale markers.
fn marked<'s>(
    snapshot: &'s Snapshot,
    usage: &Usage,
    overrides: &Overrides,
    now: u64,
    after: Duration,
) -> Vec<Marked<'s>> {
    let all = usage.all();
    snapshot
        .select(&flagpole_engine::Selector::All)
        .map(|record| {
            let flag = &record.flag;
            let text = |key: &str| flag.metadata.get(key).and_then(Value::as_str);
            Marked {
                key: &flag.key,
                owner: text("owner"),
                expires: text("expires"),
                stale: stale(
                    flag,
                    all.get(&*flag.key),
                    overrides.0.get(&*flag.key),
                    now,
                    after,
                ),
            }
        })
        .collect()
}

/// Sets the gauges; returns the warnings due: one per flag per day about an expired or malformed
/// `metadata.expires` (`warned` remembers the day of each flag's last one).
fn report(
    flags: &[Marked<'_>],
    metrics: &Metrics,
    warned: &mut HashMap<Arc<str>, u64>,
    now: u64,
) -> Vec<Warning> {
    let mut due = Vec::new();
    let mut counts: BTreeMap<&str, usize> = STALE_REASONS.iter().map(|r| (*r, 0)).collect();
    let today = now / DAY;
    let mut present = std::collections::HashSet::new();
    for flag in flags {
        present.insert(flag.key);
        for marker in &flag.stale {
            if let Some(count) = counts.get_mut(marker.reason) {
                *count += 1;
            }
        }
        let expired = flag.stale.iter().any(|m| m.reason == "expired");
        let malformed = flag
            .expires
            .is_some_and(|e| flagpole_engine::load::iso_day(e).is_none());
        if (expired || malformed) && warned.get(flag.key) != Some(&today) {
            warned.insert(Arc::from(flag.key), today);
            let expires = flag.expires.unwrap_or_default();
            due.push(Warning {
                key: flag.key.to_owned(),
                owner: flag.owner.map(str::to_owned),
                message: if expired {
                    format!("flag expired on {expires}: remove it, or move metadata.expires")
                } else {
                    format!("metadata.expires {expires:?} is not an ISO date (YYYY-MM-DD)")
                },
            });
        }
    }
    warned.retain(|key, _| present.contains(&**key));
    for (reason, count) in counts {
        metrics.set_stale_flags(reason, count);
    }
    due
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use flagpole_engine::{Format, LoadOptions, parse_document};

    use super::*;
    use crate::overrides::Action;
    use crate::usage::VariantUsage;

    const NOW: u64 = 20_000 * DAY;
    const AFTER: Duration = Duration::from_secs(30 * DAY);

    fn flag(definition: &str) -> Arc<Flag> {
        let doc = format!(r#"{{"flags": {{"f": {definition}}}}}"#);
        parse_document(&doc, Format::Json, &LoadOptions::default())
            .expect("loads")
            .flags
            .remove(0)
    }

    fn reasons(found: &[Stale]) -> Vec<&'static str> {
        found.iter().map(|s| s.reason).collect()
    }

    fn usage(first_seen: u64, last_evaluated: u64, served: &[(&str, u64)]) -> FlagUsage {
        FlagUsage {
            first_seen,
            last_evaluated,
            evaluations: served.len() as u64,
            no_variant: 0,
            variants: served
                .iter()
                .map(|(name, at)| {
                    (
                        (*name).to_owned(),
                        VariantUsage {
                            count: 1,
                            last_served: *at,
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        }
    }

    const AB: &str = r#"{"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a"}"#;

    #[test]
    fn each_marker_appears_after_its_time_and_not_before() {
        let fresh = flag(AB);
        // A flag first served a day ago, evaluated just now with both variants: nothing.
        let busy = usage(NOW - DAY, NOW, &[("a", NOW), ("b", NOW - 10)]);
        assert!(stale(&fresh, Some(&busy), None, NOW, AFTER).is_empty());
        // Not evaluated for 31 days.
        let idle = usage(NOW - 90 * DAY, NOW - 31 * DAY, &[("a", NOW - 31 * DAY)]);
        assert_eq!(
            reasons(&stale(&fresh, Some(&idle), None, NOW, AFTER)),
            ["unused"]
        );
        // Never evaluated, first served 40 days ago.
        let never = usage(NOW - 40 * DAY, 0, &[]);
        let found = stale(&fresh, Some(&never), None, NOW, AFTER);
        assert_eq!(reasons(&found), ["unused"]);
        assert!(found[0].detail.contains("never evaluated"));
        // Only `b` served for the whole window, known for longer.
        let settled = usage(NOW - 60 * DAY, NOW, &[("a", NOW - 45 * DAY), ("b", NOW)]);
        assert_eq!(
            reasons(&stale(&fresh, Some(&settled), None, NOW, AFTER)),
            ["single_variant"]
        );
        // ... but not for a flag known for less than the window, nor for an ops flag.
        let young = usage(NOW - 10 * DAY, NOW, &[("b", NOW)]);
        assert!(stale(&fresh, Some(&young), None, NOW, AFTER).is_empty());
        let ops = flag(
            r#"{"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a", "metadata": {"kind": "ops"}}"#,
        );
        assert!(stale(&ops, Some(&settled), None, NOW, AFTER).is_empty());
    }

    #[test]
    fn expiry_settled_splits_and_long_overrides() {
        let expired = flag(
            r#"{"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a", "metadata": {"expires": "2024-01-31"}}"#,
        );
        let found = stale(&expired, None, None, NOW, AFTER);
        assert_eq!(reasons(&found), ["expired"]);
        assert!(found[0].detail.contains("2024-01-31"));
        let future = flag(
            r#"{"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a", "metadata": {"expires": "2099-01-01"}}"#,
        );
        assert!(stale(&future, None, None, NOW, AFTER).is_empty());

        let settled = flag(
            r#"{"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                "targeting": {"if": [{"var": "x"}, {"fractional": [{"var": "email"}, ["a", 0], ["b", 100]]}, "a"]}}"#,
        );
        let found = stale(&settled, None, None, NOW, AFTER);
        assert_eq!(reasons(&found), ["settled_fractional"]);
        assert!(found[0].detail.contains("\"b\""));
        let split = flag(
            r#"{"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                "targeting": {"fractional": [["a", 10], ["b", 90]]}}"#,
        );
        assert!(stale(&split, None, None, NOW, AFTER).is_empty());

        let forced = |set_at| Override {
            action: Action::Disable,
            reason: None,
            actor: "oncall".into(),
            set_at,
            expires_at: None,
        };
        let plain = flag(AB);
        assert!(stale(&plain, None, Some(&forced(NOW - DAY)), NOW, AFTER).is_empty());
        let found = stale(&plain, None, Some(&forced(NOW - 31 * DAY)), NOW, AFTER);
        assert_eq!(reasons(&found), ["long_override"]);
        assert!(found[0].detail.contains("oncall"));
    }

    #[test]
    fn gauges_count_reasons_and_expiry_warns_once_a_day() {
        let metrics = Metrics::new();
        let mut warned = HashMap::new();
        let marker = |reason| Stale {
            reason,
            detail: String::new(),
        };
        let flag = |key, expires, stale| Marked {
            key,
            owner: None,
            expires,
            stale,
        };
        let flags = vec![
            flag(
                "x",
                Some("2024-01-01"),
                vec![marker("expired"), marker("unused")],
            ),
            flag("y", None, vec![marker("unused")]),
            flag("z", Some("soon"), vec![]),
        ];
        let due = report(&flags, &metrics, &mut warned, NOW);
        assert_eq!(
            due.iter().map(|w| w.key.as_str()).collect::<Vec<_>>(),
            ["x", "z"]
        );
        assert!(due[0].message.contains("expired on 2024-01-01"));
        assert!(due[1].message.contains("not an ISO date"));
        // The same day: nothing more; the next day: again.
        assert!(report(&flags, &metrics, &mut warned, NOW + 60).is_empty());
        assert_eq!(report(&flags, &metrics, &mut warned, NOW + DAY).len(), 2);
        let page = metrics.encode();
        assert!(
            page.contains(r#"flagpole_stale_flags{reason="unused"} 2"#),
            "{page}"
        );
        assert!(
            page.contains(r#"flagpole_stale_flags{reason="expired"} 1"#),
            "{page}"
        );
        assert!(
            page.contains(r#"flagpole_stale_flags{reason="long_override"} 0"#),
            "{page}"
        );
        // A flag that leaves is forgotten.
        assert!(report(&flags[1..2], &metrics, &mut warned, NOW + 2 * DAY).is_empty());
        assert!(warned.is_empty());
    }
}
