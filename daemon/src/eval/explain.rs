//! Explaining one evaluation as the evaluation port would answer it (`docs/admin.md#explain`): the same
//! context assembly (request context, then `-X`, then `-H` from the headers given), the same snapshot and
//! selector, the same clock and bucketing, and then the engine's explanation with where each part of the
//! context came from.
//!
//! Used by `POST /api/v1/explain` (`crate::protocols::admin::explain`) and by `flagpole explain` on files.

use flagpole_engine::{Context, EvalOptions, Selector, Snapshot, Value};
use http::HeaderMap;
use serde_json::json;

use super::EvalConfig;
use super::request::{HeaderMapping, assemble_context};

/// What to explain.
#[derive(Debug, Clone, Default)]
pub struct ExplainInput {
    /// The flag.
    pub flag_key: String,
    /// The evaluation context as a client would send it.
    pub context: Context,
    /// Request headers as a client would send them (for the `-H` mappings).
    pub headers: HeaderMap,
    /// The `Flagd-Selector`.
    pub selector: Selector,
}

/// Explains `input` against `snapshot`; `None` when the flag is not in the selection (an evaluation
/// would answer FLAG_NOT_FOUND).
pub fn explain(
    snapshot: &Snapshot,
    config: &EvalConfig,
    input: &ExplainInput,
    options: &EvalOptions,
) -> Option<Value> {
    let record = snapshot.record(&input.flag_key, &input.selector)?;
    let context = assemble_context(
        input.context.clone(),
        config,
        &input.headers,
        HeaderMapping::Apply,
    );
    let mut out = flagpole_engine::explain(&record.flag, &context, options).to_json();
    let from_headers: serde_json::Map<String, Value> = config
        .header_to_context
        .iter()
        .filter_map(|(header, key)| {
            let value = input.headers.get(header.as_str())?.to_str().ok()?;
            (!value.is_empty()).then(|| (key.clone(), json!(value)))
        })
        .collect();
    out["source"] = json!(&*record.source);
    out["flagSetId"] = json!(record.flag.flag_set_id.as_deref());
    out["metadata"] = json!(&*record.flag.metadata);
    out["context"] = json!({
        "request": &input.context,
        "static": &config.context_values,
        "fromHeaders": from_headers,
        "evaluated": context,
    });
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use flagpole_engine::{Format, LoadOptions, SourceFlags, parse_document};
    use http::HeaderValue;

    use super::*;

    fn snapshot() -> Snapshot {
        let doc = r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": "a", "b": "b"},
            "defaultVariant": "a", "metadata": {"flagSetId": "s"},
            "targeting": {"if": [{"==": [{"var": "tier"}, "gold"]}, "b"]}}}}"#;
        let loaded = parse_document(doc, Format::Json, &LoadOptions::default()).unwrap();
        Snapshot::new(vec![SourceFlags {
            source: Arc::from("flags.json"),
            flags: loaded.flags,
        }])
    }

    #[test]
    fn static_values_and_header_mappings_are_shown_and_used() {
        let config = EvalConfig {
            context_values: [("env".to_owned(), "prod".to_owned())].into(),
            header_to_context: vec![("x-tier".into(), "tier".into())],
            ..EvalConfig::default()
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-tier", HeaderValue::from_static("gold"));
        let input = ExplainInput {
            flag_key: "f".into(),
            context: json!({"user": "ann"}).as_object().cloned().unwrap(),
            headers,
            selector: Selector::All,
        };
        let out = explain(&snapshot(), &config, &input, &EvalOptions::now()).unwrap();
        assert_eq!(out["variant"], "b");
        assert_eq!(out["source"], "flags.json");
        assert_eq!(out["flagSetId"], "s");
        assert_eq!(out["context"]["static"], json!({"env": "prod"}));
        assert_eq!(out["context"]["fromHeaders"], json!({"tier": "gold"}));
        assert_eq!(
            out["context"]["evaluated"],
            json!({"user": "ann", "env": "prod", "tier": "gold"})
        );
    }

    #[test]
    fn a_flag_outside_the_selection_is_not_found() {
        let input = ExplainInput {
            flag_key: "f".into(),
            selector: "flagSetId=other".parse().unwrap(),
            ..ExplainInput::default()
        };
        let config = EvalConfig::default();
        assert!(explain(&snapshot(), &config, &input, &EvalOptions::now()).is_none());
    }
}
