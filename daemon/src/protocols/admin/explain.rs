//! `POST /api/v1/explain` (`docs/admin.md#explain`): `{"flagKey": K, "context": {…}}`, optionally
//! `"headers": {NAME: VALUE}` (for the `-H` mappings, as the evaluation port would receive them) and
//! `"selector": "flagSetId=…"`. The answer is the evaluation's own (value, variant, reason, error) with the
//! path the targeting took. A read: no token needed, like evaluation itself.

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::api::{AdminApi, error, read_json};
use crate::eval::explain::ExplainInput;

/// An explain request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExplainRequest {
    flag_key: String,
    #[serde(default)]
    context: Value,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
    #[serde(default)]
    selector: Option<String>,
}

pub(super) async fn explain(
    State(api): State<AdminApi>,
    headers: HeaderMap,
    request_body: Body,
) -> Response {
    let request: ExplainRequest = match read_json(&headers, request_body).await {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let input = match input(request) {
        Ok(input) => input,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match api.evaluator.explain(&input) {
        Some(explained) => (StatusCode::OK, axum::Json(explained)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!(
                "flag `{}` not found{}",
                input.flag_key,
                if input.selector == Default::default() {
                    String::new()
                } else {
                    " in the selection".to_owned()
                }
            ),
        ),
    }
}

/// The explain input a request asks for, or why it is malformed.
fn input(request: ExplainRequest) -> Result<ExplainInput, String> {
    let context = match request.context {
        Value::Null => Default::default(),
        Value::Object(context) => context,
        other => return Err(format!("context must be an object, not {other}")),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in request.headers {
        let Value::String(value) = value else {
            return Err(format!("header {name:?} must have a string value"));
        };
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        let value = HeaderValue::try_from(value.as_str())
            .map_err(|_| format!("the value of header {name} is not valid"))?;
        headers.append(name, value);
    }
    let selector = match request.selector.as_deref() {
        None => Default::default(),
        Some(text) => text.parse().map_err(|e| format!("selector: {e}"))?,
    };
    Ok(ExplainInput {
        flag_key: request.flag_key,
        context,
        headers,
        selector,
    })
}
