//! Reading the protocol-neutral part of an evaluation request: the selector and the evaluation context.
//!
//! Context merge order (flagd `context_utils.go`): the body `context`, then the `-X` values, then the `-H`
//! header mappings (header names case-insensitive, empty values ignored;
//! `docs/protocols.md#reading-a-request`). `$flagd` is added by the engine, only for flags with targeting.
//! Each protocol decodes its own body into a JSON context first (gRPC from a `Struct`, OFREP from JSON).

use flagpole_engine::{Context, Selector, SelectorError, Value};
use http::HeaderMap;

use super::EvalConfig;

/// The header that carries a selector.
pub const SELECTOR_HEADER: &str = "flagd-selector";

/// A request whose selector cannot be read (InvalidArgument on every protocol).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// The `Flagd-Selector` value (or the sync body selector) is invalid.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// The `Flagd-Selector` header is not visible ASCII.
    #[error("the Flagd-Selector header is not valid text")]
    SelectorEncoding,
}

/// Whether `-H` header mappings apply (they do not on `schema.v1`, `docs/protocols.md#reading-a-request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMapping {
    /// Apply `-H`.
    Apply,
    /// Ignore `-H`.
    Skip,
}

/// A single-flag or bulk evaluation request, read: the selector and the assembled context.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// From the `Flagd-Selector` header; none selects every flag set.
    pub selector: Selector,
    /// Body, `-X`, `-H`.
    pub context: Context,
}

/// Reads the selector from `headers` and lays `-X` and `-H` over the body context.
pub fn read(
    config: &EvalConfig,
    headers: &HeaderMap,
    body: Context,
    mapping: HeaderMapping,
) -> Result<EvalRequest, RequestError> {
    let selector = selector(headers)?;
    let context = assemble_context(body, config, headers, mapping);
    Ok(EvalRequest { selector, context })
}

/// Builds the evaluation context: body, then `-X`, then `-H`.
pub fn assemble_context(
    mut context: Context,
    config: &EvalConfig,
    headers: &HeaderMap,
    mapping: HeaderMapping,
) -> Context {
    for (key, value) in &config.context_values {
        context.insert(key.clone(), Value::String(value.clone()));
    }
    if mapping == HeaderMapping::Apply {
        // Header names in `header_to_context` are lower-cased by `Evaluator::new`, as `HeaderMap`'s are.
        for (header, key) in &config.header_to_context {
            let value = headers
                .get(header.as_str())
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty());
            if let Some(value) = value {
                context.insert(key.clone(), Value::String(value.to_owned()));
            }
        }
    }
    context
}

/// The selector from the `Flagd-Selector` header (the first value), if the header is present.
fn header_selector(headers: &HeaderMap) -> Result<Option<Selector>, RequestError> {
    match headers.get(SELECTOR_HEADER) {
        None => Ok(None),
        Some(value) => {
            let text = value.to_str().map_err(|_| RequestError::SelectorEncoding)?;
            Ok(Some(text.parse()?))
        }
    }
}

/// The selector for evaluation requests: the header only; none means all flag sets.
pub fn selector(headers: &HeaderMap) -> Result<Selector, RequestError> {
    Ok(header_selector(headers)?.unwrap_or_default())
}

/// The keys of a context, for debug logs (values are never logged).
pub fn context_keys(context: &Context) -> Vec<&str> {
    context.keys().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::json;

    fn config() -> EvalConfig {
        EvalConfig {
            context_values: [
                ("env".to_owned(), "prod".to_owned()),
                ("tier".to_owned(), "x".to_owned()),
            ]
            .into_iter()
            .collect(),
            header_to_context: vec![
                ("x-user".into(), "user".into()),
                ("x-tier".into(), "tier".into()),
            ],
            ..EvalConfig::default()
        }
    }

    fn body(value: Value) -> Context {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn static_values_beat_the_body_and_headers_beat_both() {
        let mut headers = HeaderMap::new();
        headers.insert("x-tier", HeaderValue::from_static("gold"));
        headers.insert("x-user", HeaderValue::from_static(""));
        let ctx = assemble_context(
            body(json!({"env": "dev", "user": "bob", "tier": "t"})),
            &config(),
            &headers,
            HeaderMapping::Apply,
        );
        assert_eq!(ctx["env"], "prod");
        assert_eq!(ctx["tier"], "gold");
        // An empty header value is ignored.
        assert_eq!(ctx["user"], "bob");
        let ctx = assemble_context(Context::new(), &config(), &headers, HeaderMapping::Skip);
        assert_eq!(ctx["tier"], "x");
    }

    #[test]
    fn selector_header_is_parsed_and_bad_keys_are_rejected() {
        let mut headers = HeaderMap::new();
        assert_eq!(selector(&headers).unwrap(), Selector::All);
        headers.insert(SELECTOR_HEADER, HeaderValue::from_static("flagSetId=a"));
        assert_eq!(selector(&headers).unwrap(), Selector::FlagSetId("a".into()));
        headers.insert(SELECTOR_HEADER, HeaderValue::from_static("nope=a"));
        let err = selector(&headers).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid selector key "nope", valid keys: "flagSetId", "source""#
        );
    }
}
