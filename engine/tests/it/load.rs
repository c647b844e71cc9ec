//! Loader rules: document shapes, flag fields, metadata, `$evaluators`, errors with positions, limits.

use flagpole_engine::load::{MAX_DOCUMENT_BYTES, MAX_FLAGS, MAX_INLINED_NODES};
use flagpole_engine::{
    Flag, FlagState, Format, LoadError, LoadOptions, Location, Value, parse_document,
};
use serde_json::json;

use crate::{json_files, load_json, testbed_dir};

fn load_err(text: &str) -> LoadError {
    match parse_document(text, Format::Json, &LoadOptions::default()) {
        Ok(loaded) => panic!("expected an error, loaded {} flags", loaded.flags.len()),
        Err(e) => e,
    }
}

fn flag<'a>(loaded: &'a flagpole_engine::Loaded, key: &str) -> &'a Flag {
    loaded
        .flags
        .iter()
        .find(|f| &*f.key == key)
        .unwrap_or_else(|| panic!("no flag {key}"))
}

#[test]
fn map_form_loads_every_field() {
    let loaded = load_json(
        r#"{"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
            "targeting": {"if": [{"==": [{"var": "a"}, 1]}, "on"]}, "metadata": {"owner": "me"}}}}"#,
    );
    assert_eq!(loaded.flags.len(), 1);
    let f = &loaded.flags[0];
    assert_eq!(&*f.key, "f");
    assert_eq!(f.state, FlagState::Enabled);
    assert_eq!(&*f.state_raw, "ENABLED");
    assert_eq!(f.variants.get("on"), Some(&json!(true)));
    assert_eq!(f.default_variant.as_deref(), Some("off"));
    assert!(f.has_targeting());
    assert_eq!(
        raw(f),
        Some(json!({"if": [{"==": [{"var": "a"}, 1]}, "on"]}))
    );
    assert_eq!(f.metadata.get("owner"), Some(&json!("me")));
    assert_eq!(f.flag_set_id, None);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn array_form_keeps_document_order_and_duplicate_keys_across_sets() {
    let loaded = load_json(
        r#"{"flags": [
            {"key": "b", "state": "ENABLED", "variants": {"x": 1}, "defaultVariant": "x", "metadata": {"flagSetId": "one"}},
            {"key": "a", "state": "ENABLED", "variants": {"x": 1}, "defaultVariant": "x"},
            {"key": "b", "state": "DISABLED", "variants": {"x": 2}, "defaultVariant": "x", "metadata": {"flagSetId": "two"}}
        ]}"#,
    );
    let keys: Vec<&str> = loaded.flags.iter().map(|f| &*f.key).collect();
    assert_eq!(keys, ["b", "a", "b"]);
    assert_eq!(loaded.flags[0].flag_set_id.as_deref(), Some("one"));
    assert_eq!(loaded.flags[2].flag_set_id.as_deref(), Some("two"));
    assert_eq!(loaded.flags[2].state, FlagState::Disabled);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn state_other_than_disabled_is_enabled_and_kept_as_written() {
    let loaded = load_json(r#"{"flags": {"f": {"state": "ON", "variants": {"a": 1}}}}"#);
    assert_eq!(loaded.flags[0].state, FlagState::Enabled);
    assert_eq!(&*loaded.flags[0].state_raw, "ON");
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.path == "/flags/f/state" && w.flag.as_deref() == Some("f"))
    );
}

#[test]
fn default_variant_null_absent_and_empty_mean_code_default() {
    let loaded = load_json(
        r#"{"flags": {
            "null": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": null},
            "absent": {"state": "ENABLED", "variants": {"a": 1}},
            "empty": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": ""}}}"#,
    );
    for f in &loaded.flags {
        assert_eq!(f.default_variant, None, "{}", f.key);
    }
}

#[test]
fn default_variant_that_is_not_a_variant_rejects_the_document_with_position() {
    let text = "{\n  \"flags\": {\n    \"ok\": {\"state\": \"ENABLED\", \"variants\": {\"a\": 1}},\n    \"bad\": {\"state\": \"ENABLED\", \"variants\": {\"a\": 1}, \"defaultVariant\": \"b\"}\n  }\n}";
    match load_err(text) {
        LoadError::BadDefaultVariant { flag, variant, at } => {
            assert_eq!((flag.as_str(), variant.as_str()), ("bad", "b"));
            assert_eq!(at, Location { line: 4, column: 5 });
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn syntax_errors_carry_line_and_column() {
    match load_err("{\n  \"flags\": {\n    \"f\": {,}\n  }\n}") {
        LoadError::Syntax {
            line,
            column,
            message,
        } => {
            assert_eq!((line, column), (3, 11));
            assert!(!message.contains("at line"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    match parse_document(
        "flags:\n  f: [1, 2\n  g: 1\n",
        Format::Yaml,
        &LoadOptions::default(),
    ) {
        Err(LoadError::Syntax { line, .. }) => assert!(line >= 2, "line {line}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn missing_or_malformed_flags_rejects_but_empty_flags_clears() {
    assert_eq!(load_err("{}"), LoadError::MissingFlags);
    assert_eq!(load_err(r#"{"metadata": {}}"#), LoadError::MissingFlags);
    assert!(
        matches!(load_err(r#"{"flags": "x"}"#), LoadError::Malformed { ref path, .. } if path == "/flags")
    );
    assert!(matches!(load_err("[]"), LoadError::Malformed { .. }));
    assert!(
        matches!(load_err(r#"{"flags": {"f": 1}}"#), LoadError::Malformed { ref path, .. } if path == "/flags/f")
    );
    assert!(matches!(
        load_err(r#"{"flags": {"f": {"state": "ENABLED", "variants": [1]}}}"#),
        LoadError::Malformed { ref path, .. } if path == "/flags/f/variants"
    ));
    assert!(matches!(
        load_err(r#"{"flags": {"f": {"state": 1, "variants": {"a": 1}}}}"#),
        LoadError::Malformed { ref path, .. } if path == "/flags/f/state"
    ));
    // Go decodes a null flag into a zero-valued one: enabled, no variants, no default.
    let null_flag = load_json(r#"{"flags": {"f": null}}"#);
    assert_eq!(null_flag.flags.len(), 1);
    assert_eq!(null_flag.flags[0].state, FlagState::Enabled);
    assert!(null_flag.flags[0].variants.is_empty());
    assert_eq!(null_flag.warnings.len(), 1, "{:?}", null_flag.warnings);
    for empty in [r#"{"flags": null}"#, r#"{"flags": {}}"#, r#"{"flags": []}"#] {
        assert!(load_json(empty).flags.is_empty(), "{empty}");
    }
}

#[test]
fn empty_targeting_is_static_and_both_empty_and_null_targeting_are_kept() {
    let loaded = load_json(
        r#"{"flags": {
            "empty": {"state": "ENABLED", "variants": {"a": 1}, "targeting": {}},
            "null": {"state": "ENABLED", "variants": {"a": 1}, "targeting": null}}}"#,
    );
    assert!(!flag(&loaded, "empty").has_targeting());
    // Kept for the sync payload, as flagd keeps it (issue 12).
    assert_eq!(raw(flag(&loaded, "empty")), Some(json!({})));
    assert!(flag(&loaded, "null").has_targeting());
    assert_eq!(raw(flag(&loaded, "null")), Some(Value::Null));
}

#[test]
fn set_metadata_merges_under_flag_metadata_and_gives_the_flag_set() {
    let loaded = load_json(
        r#"{"metadata": {"flagSetId": "set", "version": "1", "team": "a"},
            "flags": {
              "plain": {"state": "ENABLED", "variants": {"a": 1}},
              "own": {"state": "ENABLED", "variants": {"a": 1}, "metadata": {"flagSetId": "mine", "team": "b"}},
              "numeric": {"state": "ENABLED", "variants": {"a": 1}, "metadata": {"flagSetId": 7}}}}"#,
    );
    assert_eq!(loaded.metadata.get("team"), Some(&json!("a")));
    let plain = flag(&loaded, "plain");
    assert_eq!(plain.flag_set_id.as_deref(), Some("set"));
    assert_eq!(
        *plain.metadata,
        json!({"flagSetId": "set", "version": "1", "team": "a"})
            .as_object()
            .cloned()
            .unwrap()
    );
    let own = flag(&loaded, "own");
    assert_eq!(own.flag_set_id.as_deref(), Some("mine"));
    assert_eq!(own.metadata.get("team"), Some(&json!("b")));
    assert_eq!(own.metadata.get("version"), Some(&json!("1")));
    // A non-string flagSetId on the flag wins the merge but names no set.
    assert_eq!(flag(&loaded, "numeric").flag_set_id, None);
}

#[test]
fn explicit_empty_flag_set_id_is_a_set() {
    let loaded = load_json(
        r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "metadata": {"flagSetId": ""}}}}"#,
    );
    assert_eq!(loaded.flags[0].flag_set_id.as_deref(), Some(""));
}

#[test]
fn evaluator_refs_are_inlined_whatever_the_whitespace() {
    let text = r#"{
      "$evaluators": {"emp": {"ends_with": [{"var": "email"}, "@co.com"]}},
      "flags": {
        "compact": {"state": "ENABLED", "variants": {"a": 1}, "targeting": {"if": [{"$ref":"emp"}, "a"]}},
        "spaced": {"state": "ENABLED", "variants": {"a": 1}, "targeting": {"if": [{ "$ref" : "emp" }, "a"]}},
        "lines": {"state": "ENABLED", "variants": {"a": 1}, "targeting": {"if": [{
              "$ref"
                 :
              "emp"
            }, "a"]}}
      }}"#;
    let loaded = load_json(text);
    let expected = json!({"if": [{"ends_with": [{"var": "email"}, "@co.com"]}, "a"]});
    for f in &loaded.flags {
        assert_eq!(raw(f), Some(expected.clone()), "{}", f.key);
    }
}

#[test]
fn ref_to_a_missing_evaluator_stays_for_evaluation_to_fail() {
    let loaded = load_json(
        r#"{"$evaluators": {"x": {"var": "a"}},
            "flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "targeting": {"if": [{"$ref": "nope"}, "a"]}}}}"#,
    );
    assert_eq!(
        raw(&loaded.flags[0]),
        Some(json!({"if": [{"$ref": "nope"}, "a"]}))
    );
}

#[test]
fn refs_are_replaced_anywhere_like_flagds_textual_replacement() {
    // flagd replaces the normalised text `{"$ref":"x"}` anywhere in the document, variants included; an object
    // with more keys than `$ref` is not that text and stays.
    let loaded = load_json(
        r#"{"$evaluators": {"x": {"in": ["a", "abc"]}},
            "flags": {"f": {"state": "ENABLED", "variants": {"obj": {"$ref": "x"}, "other": {"$ref": "x", "k": 1}}}}}"#,
    );
    let f = &loaded.flags[0];
    assert_eq!(f.variants.get("obj"), Some(&json!({"in": ["a", "abc"]})));
    assert_eq!(f.variants.get("other"), Some(&json!({"$ref": "x", "k": 1})));
}

#[test]
fn nested_refs_resolve_and_cycles_stay() {
    let loaded = load_json(
        r#"{"$evaluators": {
              "outer": {"and": [{"$ref": "inner"}, true]},
              "inner": {"==": [{"var": "a"}, 1]},
              "loop": {"or": [{"$ref": "loop"}, false]}},
            "flags": {
              "nested": {"state": "ENABLED", "variants": {"a": 1}, "targeting": {"if": [{"$ref": "outer"}, "a"]}},
              "cycle": {"state": "ENABLED", "variants": {"a": 1}, "targeting": {"if": [{"$ref": "loop"}, "a"]}}}}"#,
    );
    assert_eq!(
        raw(flag(&loaded, "nested")),
        Some(json!({"if": [{"and": [{"==": [{"var": "a"}, 1]}, true]}, "a"]}))
    );
    assert_eq!(
        raw(flag(&loaded, "cycle")),
        Some(json!({"if": [{"or": [{"$ref": "loop"}, false]}, "a"]}))
    );
}

#[test]
fn an_evaluator_shorter_than_three_characters_rejects_the_document() {
    for short in ["{}", "[]", "1", "1.0", "12", "\"\""] {
        let text = format!(r#"{{"$evaluators": {{"e": {short}}}, "flags": {{}}}}"#);
        assert_eq!(
            load_err(&text),
            LoadError::EmptyEvaluator { name: "e".into() },
            "{short}"
        );
    }
    // Three characters are enough.
    load_json(r#"{"$evaluators": {"e": 123}, "flags": {}}"#);
}

#[test]
fn yaml_loads_to_the_same_flags_as_json() {
    let json = r#"{
      "metadata": {"flagSetId": "s"},
      "$evaluators": {"emp": {"ends_with": [{"var": "email"}, "@co.com"]}},
      "flags": {
        "b": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
              "targeting": {"if": [{"$ref": "emp"}, "off", null]}},
        "n": {"state": "DISABLED", "variants": {"1": 1, "2": 2.5}, "defaultVariant": null, "metadata": {"v": 3}},
        "o": {"state": "ENABLED", "variants": {"x": {"a": [1, "2", null]}}, "defaultVariant": "x"}
      }}"#;
    let yaml = r#"
metadata:
  flagSetId: s
$evaluators:
  emp:
    ends_with: [{var: email}, "@co.com"]
flags:
  b:
    state: ENABLED
    variants: {on: true, off: false}
    defaultVariant: "on"
    targeting:
      if:
        - $ref: emp
        - "off"
        - null
  n:
    state: DISABLED
    variants:
      1: 1
      2: 2.5
    defaultVariant: ~
    metadata: {v: 3}
  o:
    state: ENABLED
    variants:
      x:
        a: [1, "2", null]
    defaultVariant: x
"#;
    let a = load_json(json);
    let b = parse_document(yaml, Format::Yaml, &LoadOptions::default()).expect("YAML loads");
    assert_eq!(a.flags.len(), b.flags.len());
    for (x, y) in a.flags.iter().zip(&b.flags) {
        assert_eq!(x.key, y.key);
        assert_eq!(x.state_raw, y.state_raw);
        assert_eq!(x.variants, y.variants, "{}", x.key);
        assert_eq!(x.default_variant, y.default_variant);
        assert_eq!(x.raw_targeting, y.raw_targeting);
        assert_eq!(x.metadata, y.metadata);
        assert_eq!(x.flag_set_id, y.flag_set_id);
    }
    assert_eq!(a.warnings, b.warnings);
}

#[test]
fn format_follows_the_file_extension() {
    use std::path::Path;
    assert_eq!(Format::from_path(Path::new("a/b.json")), Some(Format::Json));
    assert_eq!(Format::from_path(Path::new("b.yaml")), Some(Format::Yaml));
    assert_eq!(Format::from_path(Path::new("b.yml")), Some(Format::Yaml));
    assert_eq!(Format::from_path(Path::new("b.txt")), None);
    assert_eq!(Format::from_path(Path::new("b")), None);
}

#[test]
fn strict_mode_rejects_what_lenient_mode_warns_about() {
    let text = r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "b": "x"}, "defaultVariant": "a"}}}"#;
    let loaded = load_json(text);
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].flag.as_deref(), Some("f"));
    assert_eq!(loaded.warnings[0].path, "/flags/f/variants");
    match parse_document(text, Format::Json, &LoadOptions { strict: true }) {
        Err(LoadError::Schema { violations }) => assert_eq!(violations, loaded.warnings),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    let text = format!(
        r#"{{"flags": {{"f": {{"state": "ENABLED", "variants": {{"a": {}{}}}}}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert!(matches!(load_err(&text), LoadError::Syntax { .. }));
    let yaml = format!(
        "flags:\n  f:\n    variants:\n      a: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert!(parse_document(&yaml, Format::Yaml, &LoadOptions::default()).is_err());
}

#[test]
fn yaml_alias_expansion_is_bounded() {
    // "Billion laughs": nine levels of nine aliases would expand to 10^9 strings.
    let mut yaml = String::from("a0: &a0 [\"lol\"]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        yaml.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    yaml.push_str("flags: {f: {state: ENABLED, variants: {v: *a9}}}\n");
    assert!(parse_document(&yaml, Format::Yaml, &LoadOptions::default()).is_err());
}

#[test]
fn nesting_grown_by_inlining_is_limited() {
    // Each evaluator is 60 levels deep and references the next: inlined, the rule is far deeper than 128.
    let deep = |next: &str| {
        format!(
            "{}{{\"$ref\": \"{next}\"}}{}",
            "{\"!\": [".repeat(60),
            "]}".repeat(60)
        )
    };
    let text = format!(
        r#"{{"$evaluators": {{"a": {}, "b": {}, "c": {}}},
            "flags": {{"f": {{"state": "ENABLED", "variants": {{"a": 1}}, "targeting": {{"$ref": "a"}}}}}}}}"#,
        deep("b"),
        deep("c"),
        "{\"var\": \"x\"}"
    );
    assert_eq!(load_err(&text), LoadError::TooDeep);
}

/// Evaluators that each reference the previous one twice: `levels` of them double the inlined size
/// with every level (a 1 KB file that expands to millions of values).
fn doubling_evaluators(levels: usize) -> String {
    let mut evaluators = vec![r#""e0": {"==": [{"var": "x"}, 1]}"#.to_owned()];
    for i in 1..=levels {
        let p = i - 1;
        evaluators.push(format!(
            r#""e{i}": {{"or": [{{"$ref": "e{p}"}}, {{"$ref": "e{p}"}}]}}"#
        ));
    }
    format!(
        r#"{{"$evaluators": {{{}}}, "flags": {{"f": {{"state": "ENABLED", "variants": {{"on": true, "off": false}},
            "defaultVariant": "off", "targeting": {{"if": [{{"$ref": "e{levels}"}}, "on", "off"]}}}}}}}}"#,
        evaluators.join(", ")
    )
}

#[test]
fn exponential_evaluator_references_are_rejected_before_copying() {
    for levels in [22, 40, 200] {
        let text = doubling_evaluators(levels);
        assert!(text.len() < 16 * 1024, "{} bytes", text.len());
        match load_err(&text) {
            LoadError::InliningTooLarge {
                evaluator,
                expanded,
            } => {
                assert_eq!(evaluator, format!("e{levels}"));
                assert!(expanded > MAX_INLINED_NODES, "{expanded}");
            }
            other => panic!("{levels} levels: {other:?}"),
        }
        let message = load_err(&text).to_string();
        assert!(
            message.contains("inlining $evaluators would add more than"),
            "{message}"
        );
        assert!(message.contains(&format!("`e{levels}`")), "{message}");
    }
    // The YAML path shares the inliner.
    let yaml = doubling_evaluators(30);
    let e = parse_document(&yaml, Format::Yaml, &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, LoadError::InliningTooLarge { .. }), "{e:?}");
}

#[test]
fn doubling_evaluators_within_the_budget_still_load() {
    // 10 levels: 1,024 copies of e0, a legitimate (if odd) rule far below every limit.
    let loaded = load_json(&doubling_evaluators(10));
    assert_eq!(loaded.flags.len(), 1);
    assert!(loaded.flags[0].targeting.is_some());
}

#[test]
fn many_small_references_share_one_document_budget() {
    // Each flag's rule is small, but together they copy more than the document-wide limit.
    let evaluator = format!(
        r#"{{"in": [{{"var": "k"}}, [{}]]}}"#,
        vec!["1"; 999].join(",")
    );
    let flags: Vec<String> = (0..1_100)
        .map(|i| {
            format!(
                r#""f{i}": {{"state": "ENABLED", "variants": {{"a": 1}}, "defaultVariant": "a",
                    "targeting": {{"if": [{{"$ref": "big"}}, "a"]}}}}"#
            )
        })
        .collect();
    let text = format!(
        r#"{{"$evaluators": {{"big": {evaluator}}}, "flags": {{{}}}}}"#,
        flags.join(",")
    );
    assert!(matches!(
        load_err(&text),
        LoadError::InliningTooLarge { .. }
    ));
}

#[test]
fn size_and_flag_count_limits() {
    let big = " ".repeat(MAX_DOCUMENT_BYTES + 1);
    assert!(matches!(load_err(&big), LoadError::TooLarge { .. }));
    let mut text = String::from("{\"flags\": [");
    for i in 0..=MAX_FLAGS {
        if i > 0 {
            text.push(',');
        }
        text.push_str("{}");
    }
    text.push_str("]}");
    assert_eq!(
        load_err(&text),
        LoadError::TooManyFlags {
            count: MAX_FLAGS + 1
        }
    );
}

#[test]
fn every_testbed_flag_file_loads() {
    let mut dirs = vec![
        testbed_dir().join("flags"),
        testbed_dir().join("evaluator/flags"),
    ];
    let mut count = 0;
    for dir in dirs.drain(..) {
        for path in json_files(&dir) {
            let text = std::fs::read_to_string(&path).expect("readable");
            let loaded = parse_document(&text, Format::Json, &LoadOptions::default())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            count += loaded.flags.len();
        }
    }
    assert!(count > 100, "only {count} flags in the testbed");
}

#[test]
fn testbed_evaluator_ref_flags_are_inlined() {
    let text = std::fs::read_to_string(testbed_dir().join("evaluator/flags/testkit-flags.json"))
        .expect("readable");
    let loaded = load_json(&text);
    let compact = flag(&loaded, "ref-whitespace-compact-flag");
    let around = flag(&loaded, "ref-whitespace-space-around-colon-flag");
    assert_eq!(compact.raw_targeting, around.raw_targeting);
    assert!(
        !compact
            .raw_targeting
            .as_ref()
            .unwrap()
            .to_string()
            .contains("$ref")
    );
    let missing = flag(&loaded, "ref-to-nonexistent-evaluator-flag");
    assert!(
        missing
            .raw_targeting
            .as_ref()
            .unwrap()
            .to_string()
            .contains("$ref")
    );
}

#[test]
fn load_errors_say_where() {
    let e = load_err(
        "{\"flags\": {\n  \"k\": {\"state\": \"ENABLED\", \"variants\": {\"a\": 1}, \"defaultVariant\": \"z\"}}}",
    );
    assert_eq!(
        e.to_string(),
        "default variant \"z\" isn't a valid variant of flag `k` (at line 2, column 3)"
    );
    let e =
        load_err("{\"flags\": [{\"key\": \"k\", \"variants\": {}, \"defaultVariant\": \"z\"}]}");
    assert!(e.to_string().contains("line 1, column 13"), "{e}");
}

/// A flag's raw targeting parsed back into a value.
fn raw(flag: &Flag) -> Option<Value> {
    flag.raw_targeting.as_ref().map(|t| t.to_value())
}

#[test]
fn plain_json_documents_load_like_the_general_path() {
    // With a (non-empty) `$evaluators` a document goes through the general path (a `Value` tree); without,
    // through the direct one.
    let text = r#"{"metadata": {"flagSetId": "set", "team": "core"}, "$evaluators": {},
      "flags": {
        "b": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
              "targeting": {"if": [{"==": [{"var": "email"}, "a@b.c"]}, "on", null]}, "extra": [1, 2]},
        "a": {"state": "DISABLED", "variants": {"x": 1}, "metadata": {"owner": "me", "flagSetId": "own"}},
        "dup": {"state": "ENABLED", "variants": {"first": "1"}},
        "n": {"state": "ENABLED", "variants": {"a": "1"}, "defaultVariant": null, "targeting": null},
        "bad": {"state": "SOMETIMES", "variants": {"a": [1]}, "targeting": {"nope": 1}},
        "dup": {"state": "ENABLED", "variants": {"second": "2"}},
        "": {"variants": {}},
        "unsorted": {"state": "ENABLED", "variants": {"z": 1, "a": 2, "m": 3, "a": 4}, "defaultVariant": "a"},
        "unnamed": {"state": "ENABLED", "variants": {"": true, "y": false, "": false}},
        "objects": {"state": "ENABLED", "variants": {"b": {"k": [1, {"x": null}]}, "a": {"k": 2}}},
        "mixed": {"state": "ENABLED", "variants": {"n": null, "s": "x"}},
        "nullv": {"state": "ENABLED", "variants": null}
      }}"#;
    let json = parse_document(text, Format::Json, &LoadOptions::default()).expect("json loads");
    let text = text.to_owned();
    let general = text.replace(
        r#""$evaluators": {}"#,
        r#""$evaluators": {"unused": {"var": "x"}}"#,
    );
    assert_ne!(general, text);
    let slow = parse_document(&general, Format::Json, &LoadOptions::default()).expect("loads");
    assert_eq!(json.warnings, slow.warnings);
    assert!(!json.warnings.is_empty());
    assert_eq!(json.metadata, slow.metadata);
    let keys = |l: &flagpole_engine::Loaded| {
        l.flags
            .iter()
            .map(|f| f.key.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(&json),
        [
            "", "a", "b", "bad", "dup", "mixed", "n", "nullv", "objects", "unnamed", "unsorted"
        ]
    );
    assert_eq!(keys(&json), keys(&slow));
    for (x, y) in json.flags.iter().zip(&slow.flags) {
        assert_eq!(x.state_raw, y.state_raw);
        assert_eq!(x.variants, y.variants, "{}", x.key);
        assert_eq!(x.default_variant, y.default_variant);
        assert_eq!(x.raw_targeting, y.raw_targeting);
        assert_eq!(x.metadata, y.metadata);
        assert_eq!(x.flag_set_id, y.flag_set_id);
        assert_eq!(x.has_targeting(), y.has_targeting());
    }
    assert_eq!(
        flag(&json, "dup").variants.keys().collect::<Vec<_>>(),
        ["second"]
    );
    // Variant names sorted, the last of a repeated name kept at its sorted place.
    let unsorted = flag(&json, "unsorted");
    assert_eq!(
        unsorted.variants.iter().collect::<Vec<_>>(),
        [("a", &json!(4)), ("m", &json!(3)), ("z", &json!(1))]
    );
    assert_eq!(flag(&json, "unnamed").variants.get(""), Some(&json!(false)));
    let warned = |path: &str| json.warnings.iter().any(|w| w.path == path);
    assert!(warned("/flags/unnamed/variants"), "{:?}", json.warnings);
    assert!(warned("/flags/mixed/variants/n"), "{:?}", json.warnings);
    let strict = LoadOptions { strict: true };
    assert_eq!(
        parse_document(&text, Format::Json, &strict).map(|_| ()),
        parse_document(&general, Format::Json, &strict).map(|_| ())
    );
}

#[test]
fn variants_that_are_not_an_object_fail_alike_on_both_paths() {
    for variants in ["[1, 2]", "\"on\"", "3", "true", "[]"] {
        let text = format!(
            r#"{{"$evaluators": {{}}, "flags": {{"f": {{"state": "ENABLED", "variants": {variants}}}}}}}"#
        );
        let general = text.replace(
            r#""$evaluators": {}"#,
            r#""$evaluators": {"unused": {"var": "x"}}"#,
        );
        // (The location differs by the longer `$evaluators` only.)
        let error = |text: &str| match parse_document(text, Format::Json, &LoadOptions::default()) {
            Err(LoadError::Malformed { path, message, .. }) => (path, message),
            other => panic!("{variants}: {:?}", other.map(|_| ())),
        };
        let direct = error(&text);
        assert_eq!(direct.0, "/flags/f/variants", "{variants}");
        assert_eq!(direct, error(&general), "{variants}");
    }
}

#[test]
fn a_flag_that_is_an_array_is_rejected_on_the_direct_path_too() {
    let err = parse_document(
        r#"{"flags": {"f": ["ENABLED", {"a": 1}]}}"#,
        Format::Json,
        &LoadOptions::default(),
    )
    .map(|_| ())
    .expect_err("an array is not a flag");
    assert!(
        matches!(&err, LoadError::Malformed { path, .. } if path == "/flags/f"),
        "{err:?}"
    );
}

#[test]
fn variants_serialise_like_a_map_and_look_up_by_name() {
    let map = json!({"b": 2, "a": {"x": [1]}, "c": null, "": "empty"})
        .as_object()
        .cloned()
        .unwrap();
    let variants = flagpole_engine::Variants::from(map.clone());
    assert_eq!(
        serde_json::to_string(&variants).unwrap(),
        serde_json::to_string(&map).unwrap()
    );
    assert_eq!(variants.get("a"), Some(&json!({"x": [1]})));
    assert_eq!(variants.get(""), Some(&json!("empty")));
    assert_eq!(variants.get("d"), None);
    assert_eq!(variants.keys().collect::<Vec<_>>(), ["", "a", "b", "c"]);
    assert_eq!(variants.len(), 4);
}

#[test]
fn an_empty_flag_set_id_is_served_with_a_warning() {
    for document in [
        // The general path (a YAML document), the plain-JSON path, and a set-level empty id.
        r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
              "metadata": {"flagSetId": ""}}}}"#,
        r#"{"metadata": {"flagSetId": ""},
            "flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}}}"#,
    ] {
        for format in [Format::Json, Format::Yaml] {
            let loaded = parse_document(document, format, &LoadOptions::default()).expect("loads");
            assert_eq!(loaded.flags.len(), 1, "{document}");
            let warning = loaded
                .notes
                .iter()
                .find(|w| w.message.contains("flagSetId is empty"))
                .unwrap_or_else(|| panic!("no note for {document}: {:?}", loaded.notes));
            assert_eq!(warning.flag.as_deref(), Some("f"));
        }
    }
}

#[test]
fn lint_misspelt_fields_and_undefined_refs() {
    let loaded = load_json(
        r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
                            "Targetting": {"if": [true, "a"]}}}}"#,
    );
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.message.contains("did you mean `targeting`?")),
        "{:?}",
        loaded.warnings
    );
    // A field nothing like a flag field gets the list instead.
    let loaded = load_json(
        r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a", "zzzzzz": 1}}}"#,
    );
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.message.contains("a flag has"))
    );

    let undefined = |document: &str| -> Vec<String> {
        load_json(document)
            .notes
            .into_iter()
            .filter(|w| w.message.contains("not an evaluator"))
            .map(|w| w.to_string())
            .collect()
    };
    // No $evaluators at all (the plain-JSON path) and a document with other evaluators (the general path).
    assert_eq!(
        undefined(
            r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
                                "targeting": {"if": [{"$ref": "missing"}, "a", null]}}}}"#
        ),
        [
            "flag `f` at /flags/f/targeting: `$ref` to `missing`, which is not an evaluator of this document: \
          evaluating the flag gives PARSE_ERROR"
        ]
    );
    assert_eq!(
        undefined(
            r#"{"$evaluators": {"known": {"==": [1, 1]}},
                "flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
                                "targeting": {"if": [{"and": [{"$ref": "known"}, {"$ref": "gone"}]}, "a", null]}}}}"#
        )
        .len(),
        1
    );
    assert!(
        undefined(
            r#"{"$evaluators": {"known": {"==": [1, 1]}},
                "flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
                                "targeting": {"if": [{"$ref": "known"}, "a", null]}}}}"#
        )
        .is_empty()
    );
}

#[test]
fn expired_flags_are_noted() {
    let notes = |expires: &str| -> Vec<String> {
        let document = format!(
            r#"{{"flags": {{"f": {{"state": "ENABLED", "variants": {{"a": 1}}, "defaultVariant": "a",
                                  "metadata": {{"owner": "team", "expires": "{expires}"}}}}}}}}"#
        );
        load_json(&document)
            .notes
            .into_iter()
            .map(|w| w.to_string())
            .collect()
    };
    assert_eq!(
        notes("2001-01-01"),
        [
            "flag `f` at /flags/f/metadata/expires: expired on 2001-01-01: remove the flag, or move metadata.expires"
        ]
    );
    assert!(notes("2999-01-01").is_empty());
    assert!(notes("soon")[0].contains("is not an ISO date"));
}
