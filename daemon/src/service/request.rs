//! Turning request parts into domain values: the evaluation context, the selector and the response metadata.
//!
//! Context merge order (flagd `context_utils.go`): the body `context`, then the `-X` values, then the `-H`
//! header mappings (header names case-insensitive, empty values ignored). `$flagd` is added by the engine,
//! only for flags with targeting.

use flagpole_engine::{Context, Flag, Selector, SelectorError, Value};
use prost_types::Struct;
use tonic::metadata::MetadataMap;

use super::ServiceConfig;
use super::convert::{ConvertError, json_to_value, struct_to_json};

/// The header that carries a selector.
pub const SELECTOR_HEADER: &str = "flagd-selector";

/// A request that cannot be served as sent (InvalidArgument on every protocol).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// The context Struct is not representable.
    #[error(transparent)]
    Context(#[from] ConvertError),
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

/// Builds the evaluation context: body, then `-X`, then `-H`.
pub fn assemble_context(
    body: Option<Struct>,
    config: &ServiceConfig,
    headers: &MetadataMap,
    mapping: HeaderMapping,
) -> Result<Context, RequestError> {
    let mut context = struct_to_json(body)?;
    for (key, value) in &config.context_values {
        context.insert(key.clone(), Value::String(value.clone()));
    }
    if mapping == HeaderMapping::Apply {
        // Header names in `header_to_context` are lower-cased by `Services::new`; gRPC metadata keys are
        // lower-case on the wire.
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
    Ok(context)
}

/// The selector from the `Flagd-Selector` header (the first value), if the header is present.
pub fn header_selector(headers: &MetadataMap) -> Result<Option<Selector>, RequestError> {
    match headers.get(SELECTOR_HEADER) {
        None => Ok(None),
        Some(value) => {
            let text = value.to_str().map_err(|_| RequestError::SelectorEncoding)?;
            Ok(Some(text.parse()?))
        }
    }
}

/// The selector for evaluation requests: the header only; none means all flag sets.
pub fn selector(headers: &MetadataMap) -> Result<Selector, RequestError> {
    Ok(header_selector(headers)?.unwrap_or_default())
}

/// The selector's keys as metadata (`source` and/or `flagSetId`), the base of all response metadata.
pub fn selector_reflection(selector: &Selector) -> Struct {
    let mut s = Struct::default();
    match selector {
        Selector::All => {}
        Selector::Source(source) => {
            s.fields.insert(
                "source".into(),
                json_to_value(&Value::String(source.clone())),
            );
        }
        Selector::FlagSetId(id) => {
            s.fields.insert(
                "flagSetId".into(),
                json_to_value(&Value::String(id.clone())),
            );
        }
    }
    s
}

/// Response metadata for one flag: the selector reflection with the flag's (already set-merged) metadata laid
/// over it, `null` values left out.
pub fn flag_metadata(selector: &Selector, flag: &Flag) -> Struct {
    let mut s = selector_reflection(selector);
    for (key, value) in flag.metadata.iter() {
        if !value.is_null() {
            s.fields.insert(key.clone(), json_to_value(value));
        }
    }
    s
}

/// A single-flag or bulk evaluation request, read: the selector and the assembled context.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// From the `Flagd-Selector` header.
    pub selector: Selector,
    /// Body, `-X`, `-H`.
    pub context: Context,
}

/// Reads an evaluation request's selector and context.
pub fn read_eval_request(
    config: &ServiceConfig,
    headers: &MetadataMap,
    body: Option<Struct>,
    mapping: HeaderMapping,
) -> Result<EvalRequest, RequestError> {
    let selector = selector(headers)?;
    let context = assemble_context(body, config, headers, mapping)?;
    Ok(EvalRequest { selector, context })
}

/// The keys of a context, for debug logs (values are never logged).
pub fn context_keys(context: &Context) -> Vec<&str> {
    context.keys().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn config() -> ServiceConfig {
        ServiceConfig {
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
            ..ServiceConfig::default()
        }
    }

    fn body(pairs: &[(&str, &str)]) -> Struct {
        let mut s = Struct::default();
        for (k, v) in pairs {
            s.fields
                .insert((*k).into(), json_to_value(&Value::String((*v).into())));
        }
        s
    }

    #[test]
    fn static_values_beat_the_body_and_headers_beat_both() {
        let mut headers = MetadataMap::new();
        headers.insert("x-tier", MetadataValue::from_static("gold"));
        headers.insert("x-user", MetadataValue::from_static(""));
        let ctx = assemble_context(
            Some(body(&[("env", "dev"), ("user", "bob"), ("tier", "t")])),
            &config(),
            &headers,
            HeaderMapping::Apply,
        )
        .unwrap();
        assert_eq!(ctx["env"], "prod");
        assert_eq!(ctx["tier"], "gold");
        // An empty header value is ignored.
        assert_eq!(ctx["user"], "bob");
        let ctx =
            assemble_context(Some(body(&[])), &config(), &headers, HeaderMapping::Skip).unwrap();
        assert_eq!(ctx["tier"], "x");
    }

    #[test]
    fn selector_header_is_parsed_and_bad_keys_are_rejected() {
        let mut headers = MetadataMap::new();
        assert_eq!(selector(&headers).unwrap(), Selector::All);
        headers.insert(SELECTOR_HEADER, MetadataValue::from_static("flagSetId=a"));
        assert_eq!(selector(&headers).unwrap(), Selector::FlagSetId("a".into()));
        headers.insert(SELECTOR_HEADER, MetadataValue::from_static("nope=a"));
        let err = selector(&headers).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid selector key "nope", valid keys: "flagSetId", "source""#
        );
    }
}
