//! Property tests: no document, however malformed, makes loading, validation or snapshot building panic.
//! Bounded (a few hundred cases each) so that they run in CI on every push.

use std::sync::Arc;

use flagpole_engine::schema::{SchemaKind, validate};
use flagpole_engine::{
    Format, LoadOptions, Selector, Snapshot, SourceFlags, Value, parse_document,
};
use proptest::prelude::*;
use serde_json::{Map, json};

/// Arbitrary JSON, biased towards the names the loader looks at.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("flags".to_owned()),
        Just("state".to_owned()),
        Just("variants".to_owned()),
        Just("defaultVariant".to_owned()),
        Just("targeting".to_owned()),
        Just("metadata".to_owned()),
        Just("flagSetId".to_owned()),
        Just("$ref".to_owned()),
        Just("$evaluators".to_owned()),
        Just("key".to_owned()),
        Just("fractional".to_owned()),
        Just("sem_ver".to_owned()),
        Just("var".to_owned()),
        "[a-z]{0,3}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z$@.]{0,4}".prop_map(Value::String),
        Just(json!("ENABLED")),
        Just(json!("DISABLED")),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn exercise(text: &str, format: Format) {
    for strict in [false, true] {
        if let Ok(loaded) = parse_document(text, format, &LoadOptions { strict }) {
            let snap = Snapshot::new(vec![SourceFlags {
                source: Arc::from("s"),
                flags: loaded.flags,
            }]);
            let payload = snap.sync_payload(&Selector::All);
            let reloaded = parse_document(&payload, Format::Json, &LoadOptions::default());
            assert!(
                reloaded.is_ok(),
                "the sync payload must load again: {payload}"
            );
            let _ = Snapshot::changes(&snap, &Snapshot::default(), &Selector::All);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_documents(flags in json_value(), evaluators in json_value(), metadata in json_value()) {
        let doc = json!({"flags": flags, "$evaluators": evaluators, "metadata": metadata});
        exercise(&doc.to_string(), Format::Json);
        let _ = validate(&doc, SchemaKind::Flagd);
        let _ = validate(&flags, SchemaKind::Targeting);
    }

    #[test]
    fn arbitrary_flag_maps(flags in prop::collection::vec(("[a-z]{0,2}", json_value()), 0..5)) {
        let flags: Map<String, Value> = flags.into_iter().collect();
        let doc = json!({"flags": flags});
        exercise(&doc.to_string(), Format::Json);
        exercise(&serde_yaml_ng::to_string(&doc).unwrap_or_default(), Format::Yaml);
    }

    #[test]
    fn arbitrary_text(text in "\\PC{0,200}") {
        exercise(&text, Format::Json);
        exercise(&text, Format::Yaml);
    }

    #[test]
    fn mangled_valid_documents(cut in 0usize..400, insert in "[\\[\\]{}:,\"a-z ]{0,3}") {
        let base = r#"{"$evaluators": {"e": {"in": ["a", {"var": "x"}]}}, "metadata": {"flagSetId": "s"},
            "flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
            "targeting": {"if": [{"$ref": "e"}, "b"]}}}}"#;
        let at = base.char_indices().map(|(i, _)| i).nth(cut % base.len()).unwrap_or(0);
        let text = format!("{}{}{}", &base[..at], insert, &base[at..]);
        exercise(&text, Format::Json);
        exercise(&text, Format::Yaml);
    }
}
