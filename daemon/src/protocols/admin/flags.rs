//! `GET /api/v1/flags` and `GET /api/v1/flags/{key}` (`docs/admin.md#flag-lifecycle`): every served flag
//! with its source, lifecycle metadata, usage, override and stale markers; one key with its definitions
//! and its recent changes. Reads: no token needed.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{AdminApi, error};
use crate::lifecycle::{STALE_REASONS, describe, list};
use crate::unix_now;

/// Changes shown with one flag.
pub const FLAG_CHANGES_SHOWN: usize = 20;

/// `GET /api/v1/flags` query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FlagsQuery {
    /// `any`, or one stale reason: only flags with that marker.
    stale: Option<String>,
}

pub(super) async fn flags(
    State(api): State<AdminApi>,
    query: Result<Query<FlagsQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    if let Some(wanted) = &query.stale
        && wanted != "any"
        && !STALE_REASONS.contains(&wanted.as_str())
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "stale must be `any` or one of {}, not {wanted:?}",
                STALE_REASONS.join(", ")
            ),
        );
    }
    let store = api.evaluator.store();
    let Some(usage) = store.usage() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "usage is not counted".to_owned(),
        );
    };
    let mut all = list(
        &store.snapshot(),
        usage,
        &store.overrides(),
        unix_now(),
        api.stale_after,
    );
    if let Some(wanted) = &query.stale {
        all.retain(|flag| {
            flag["stale"]
                .as_array()
                .is_some_and(|s| s.iter().any(|m| wanted == "any" || m["reason"] == *wanted))
        });
    }
    (
        StatusCode::OK,
        axum::Json(json!({
            "staleAfterSeconds": api.stale_after.as_secs(),
            "flags": all,
        })),
    )
        .into_response()
}

pub(super) async fn flag(State(api): State<AdminApi>, Path(key): Path<String>) -> Response {
    let store = api.evaluator.store();
    let snapshot = store.snapshot();
    let overrides = store.overrides();
    let usage = store.usage().and_then(|usage| usage.get(&key));
    let now = unix_now();
    let definitions: Vec<Value> = snapshot
        .select(&flagpole_engine::Selector::All)
        .filter(|record| *record.flag.key == *key)
        .map(|record| {
            let mut described = describe(
                record,
                usage.as_ref(),
                overrides.0.get(&key),
                now,
                api.stale_after,
            );
            let flag = &record.flag;
            described["definition"] = json!({
                "state": &*flag.state_raw,
                "defaultVariant": flag.default_variant.as_deref(),
                "variants": &flag.variants,
                "targeting": flag.raw_targeting.as_ref().map(|raw| raw.to_value()),
                "metadata": &*flag.metadata,
            });
            described
        })
        .collect();
    if definitions.is_empty() {
        return error(StatusCode::NOT_FOUND, format!("flag `{key}` not found"));
    }
    let changes = api.journal.query(None, Some(&key), FLAG_CHANGES_SHOWN);
    (
        StatusCode::OK,
        axum::Json(json!({"flagKey": key, "flags": definitions, "changes": changes})),
    )
        .into_response()
}
