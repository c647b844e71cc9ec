//! The admin API on the management port (`docs/admin.md#overrides`):
//!
//! - `GET /api/v1/overrides`: every override in force (no token needed, like `/metrics`);
//! - `PUT /api/v1/overrides/{flagKey}` with `{"variant": "off"}` or `{"state": "DISABLED"}`, and optionally
//!   `"reason"` and either `"expiresAt"` (RFC 3339) or `"ttl"` (a Go duration): the kill switch;
//! - `DELETE /api/v1/overrides/{flagKey}`: lifts it;
//! - `GET /api/v1/changes?since=UNIX&flag=KEY&limit=N`: the change journal (`crate::journal`);
//! - `POST /api/v1/explain`: an evaluation with the path its targeting took (`super::explain`);
//! - `GET /api/v1/flags[?stale=any|REASON]`, `GET /api/v1/flags/{flagKey}`: flags with their usage and
//!   stale markers (`super::flags`).
//!
//! Writes need a bearer token from `--admin-token-file` ([`super::auth`]). Answers are JSON; an error is
//! `{"error": "…"}` with 400 (malformed), 401/403 (token), 404 (no such override), 409 (no such flag),
//! 413 (body too large), 422 (no such variant, bad reason or expiry), 503 (state file not writable).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::auth::{AdminTokens, AuthError};
use crate::control::{ControlError, OverrideControl};
use crate::eval::Evaluator;
use crate::journal::Journal;
use crate::overrides::{Action, Override, OverrideError};
use crate::protocols::body;
use crate::unix_now;

/// The largest admin request body, in bytes.
pub const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;

/// What the admin handlers use.
#[derive(Debug, Clone)]
pub struct AdminApi {
    /// The overrides.
    pub control: OverrideControl,
    /// Who may write.
    pub tokens: Arc<AdminTokens>,
    /// The change journal.
    pub journal: Arc<Journal>,
    /// The evaluation core (for explanations and the flag list).
    pub evaluator: Evaluator,
    /// `--stale-after`.
    pub stale_after: std::time::Duration,
    /// Ends the live streams at shutdown.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The identities of the file sources (every other source is remote).
    pub file_sources: Arc<[Arc<str>]>,
}

/// The admin routes.
pub fn routes(api: AdminApi) -> Router {
    Router::new()
        .route("/api/v1/changes", get(changes))
        .route("/api/v1/explain", post(super::explain::explain))
        .route("/api/v1/flags", get(super::flags::flags))
        .route("/api/v1/flags/{key}", get(super::flags::flag))
        .route("/api/v1/overrides", get(list))
        .route("/api/v1/overrides/{key}", get(show).put(set).delete(clear))
        .with_state(api.clone())
        .merge(super::dashboard::routes(api))
}

/// A PUT body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SetRequest {
    variant: Option<String>,
    state: Option<String>,
    reason: Option<String>,
    expires_at: Option<String>,
    ttl: Option<String>,
}

/// `GET /api/v1/changes` query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangesQuery {
    /// Unix seconds: entries at or after this time.
    since: Option<u64>,
    /// Only entries about this flag key.
    flag: Option<String>,
    /// The newest this many (default [`DEFAULT_CHANGES_LIMIT`], at most [`MAX_CHANGES_LIMIT`]).
    limit: Option<usize>,
}

/// Entries `GET /api/v1/changes` returns without `limit`.
pub const DEFAULT_CHANGES_LIMIT: usize = 100;

/// The most entries one `GET /api/v1/changes` returns.
pub const MAX_CHANGES_LIMIT: usize = 1000;

async fn changes(
    State(api): State<AdminApi>,
    query: Result<Query<ChangesQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let limit = query
        .limit
        .unwrap_or(DEFAULT_CHANGES_LIMIT)
        .min(MAX_CHANGES_LIMIT);
    let found = api.journal.query(query.since, query.flag.as_deref(), limit);
    (StatusCode::OK, axum::Json(json!({"changes": found}))).into_response()
}

async fn list(State(api): State<AdminApi>) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({"overrides": api.control.list()})),
    )
        .into_response()
}

async fn show(State(api): State<AdminApi>, Path(key): Path<String>) -> Response {
    match api.control.list().0.get(&key) {
        Some(found) => (
            StatusCode::OK,
            axum::Json(json!({"flagKey": key, "override": found})),
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("flag `{key}` has no override"),
        ),
    }
}

async fn set(
    State(api): State<AdminApi>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let actor = match api.tokens.authorize(&headers) {
        Ok(actor) => actor,
        Err(refused) => return auth_error(&refused),
    };
    let request: SetRequest = match read_json(&headers, body).await {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let candidate = match candidate(request, actor) {
        Ok(candidate) => candidate,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let stored = candidate.clone();
    match api.control.set(&key, candidate) {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({"flagKey": key, "override": stored})),
        )
            .into_response(),
        Err(failed) => control_error(&failed),
    }
}

async fn clear(
    State(api): State<AdminApi>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let actor = match api.tokens.authorize(&headers) {
        Ok(actor) => actor,
        Err(refused) => return auth_error(&refused),
    };
    match api.control.clear(&key, &actor) {
        Ok(Some(removed)) => (
            StatusCode::OK,
            axum::Json(json!({"flagKey": key, "removed": removed})),
        )
            .into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("flag `{key}` has no override"),
        ),
        Err(failed) => control_error(&failed),
    }
}

/// The override a PUT asks for, or why it is malformed.
fn candidate(request: SetRequest, actor: String) -> Result<Override, String> {
    let action = match (request.variant, request.state.as_deref()) {
        (Some(variant), None) => Action::Variant { variant },
        (None, Some("DISABLED")) => Action::Disable,
        (None, Some(other)) => return Err(format!("state must be \"DISABLED\", not {other:?}")),
        (Some(_), Some(_)) => return Err("give either variant or state, not both".to_owned()),
        (None, None) => return Err("give a variant to force or \"state\": \"DISABLED\"".to_owned()),
    };
    let now = unix_now();
    let expires_at = match (request.expires_at, request.ttl) {
        (Some(_), Some(_)) => return Err("give either expiresAt or ttl, not both".to_owned()),
        (Some(at), None) => {
            let at =
                time::OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| format!("expiresAt is not an RFC 3339 time: {e}"))?;
            Some(u64::try_from(at.unix_timestamp()).unwrap_or(0))
        }
        (None, Some(ttl)) => {
            let ttl = crate::config::parse_go_duration("ttl", &ttl).map_err(|e| e.to_string())?;
            Some(now.saturating_add(ttl.as_secs().max(1)))
        }
        (None, None) => None,
    };
    Ok(Override {
        action,
        reason: request.reason.filter(|r| !r.is_empty()),
        actor,
        set_at: now,
        expires_at,
    })
}

fn auth_error(refused: &AuthError) -> Response {
    let status = match refused {
        AuthError::Disabled => StatusCode::FORBIDDEN,
        AuthError::Unauthorized => StatusCode::UNAUTHORIZED,
        AuthError::Unreadable => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = error(status, refused.to_string());
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

fn control_error(failed: &ControlError) -> Response {
    let status = match failed {
        ControlError::Refused(OverrideError::UnknownFlag(_)) => StatusCode::CONFLICT,
        ControlError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ControlError::Persist(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, failed.to_string())
}

/// An admin request's JSON body, read within [`MAX_ADMIN_BODY_BYTES`]; the answer to send instead when it
/// is too large (413) or malformed (400).
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    request_body: Body,
) -> Result<T, Response> {
    let bytes = match body::read(headers, request_body, MAX_ADMIN_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(body::BodyError::TooLarge(_)) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large".to_owned(),
            ));
        }
        Err(failed) => return Err(error(StatusCode::BAD_REQUEST, failed.to_string())),
    };
    serde_json::from_slice(&bytes).map_err(|malformed| {
        error(
            StatusCode::BAD_REQUEST,
            format!("malformed body: {malformed}"),
        )
    })
}

pub(super) fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}
