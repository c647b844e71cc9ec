//! `flagpole validate`: every problem with file, line and column; exit 1 when a file is rejected.

use std::path::Path;

use flagpole::validate::validate_files;

fn report(files: &[&Path], strict: bool) -> (bool, String) {
    let mut out = Vec::new();
    let ok = validate_files(files, strict, &mut out).expect("write report");
    (ok, String::from_utf8(out).expect("utf-8 report"))
}

#[test]
fn a_valid_file_is_accepted() {
    let example = crate::runtime_support::workspace_root().join("examples/flags.json");
    let (ok, text) = report(&[&example], true);
    assert!(ok, "{text}");
    assert!(text.contains("ok: 6 flags, 0 warnings"), "{text}");
}

#[test]
fn syntax_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\n  \"flags\": {\n    \"a\": {,}\n  }\n}\n").expect("write");
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "flags:\n  a:\n    state: ENABLED\n    variants: {on: true}\n    defaultVariant: on\n",
    )
    .expect("write");
    let (ok, text) = report(&[&bad, &good], false);
    assert!(!ok, "{text}");
    let expected = format!("{}:3:", bad.display());
    assert!(
        text.contains(&expected) && text.contains("error:"),
        "{text}"
    );
    assert!(text.contains(&format!("{}: ok", good.display())), "{text}");
}

#[test]
fn a_bad_default_variant_is_rejected_with_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("flags.json");
    std::fs::write(
        &bad,
        "{\"flags\": {\n  \"x\": {\"state\": \"ENABLED\", \"variants\": {\"a\": 1}, \"defaultVariant\": \"b\"}\n}}\n",
    )
    .expect("write");
    let (ok, text) = report(&[&bad], false);
    assert!(!ok, "{text}");
    assert!(text.contains(&format!("{}:2:", bad.display())), "{text}");
}

#[test]
fn schema_violations_warn_and_strict_rejects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("flags.json");
    std::fs::write(
        &file,
        "{\"flags\": {\n  \"x\": {\"state\": \"ON\", \"variants\": {\"a\": 1}, \"defaultVariant\": \"a\"}\n}}\n",
    )
    .expect("write");
    let (ok, text) = report(&[&file], false);
    assert!(ok, "{text}");
    assert!(text.contains("warning:"), "{text}");
    let (ok, text) = report(&[&file], true);
    assert!(!ok, "{text}");
    assert!(text.contains(&format!("{}:2:", file.display())), "{text}");
}

#[test]
fn missing_and_unsupported_files_are_rejected_and_the_binary_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let txt = dir.path().join("flags.txt");
    std::fs::write(&txt, "{}").expect("write");
    let missing = dir.path().join("absent.json");
    let (ok, text) = report(&[&txt, &missing], false);
    assert!(!ok);
    assert!(
        text.contains("unsupported file format") && text.contains("cannot read"),
        "{text}"
    );

    let out = crate::runtime_support::flagpole_command()
        .args(["validate"])
        .arg(&missing)
        .output()
        .expect("run flagpole");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("absent.json"));
}

#[test]
fn every_bad_flag_is_reported_not_only_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("flags.json");
    std::fs::write(
        &file,
        "{\"flags\": {\n\
         \"a\": {\"state\": \"ENABLED\", \"variants\": {\"x\": 1}, \"defaultVariant\": \"nope\"},\n\
         \"b\": {\"state\": \"ENABLED\", \"variants\": [1, 2], \"defaultVariant\": \"x\"},\n\
         \"c\": {\"state\": \"ENABLED\", \"variants\": {\"x\": 1}, \"defaultVariant\": \"gone\"},\n\
         \"d\": {\"state\": \"ENABLED\", \"variants\": {\"x\": 1}, \"defaultVariant\": \"x\", \"targetting\": {}}\n}}\n",
    )
    .expect("write");
    let (ok, text) = report(&[&file], false);
    assert!(!ok, "{text}");
    // 198aa10 stopped at the first of these.
    for needle in ["flag `a`", "/flags/b/variants", "flag `c`"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert!(text.contains("rejected: 3 errors"), "{text}");
}

#[test]
fn unknown_flag_fields_warn_and_strict_rejects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("flags.json");
    std::fs::write(
        &file,
        "{\"flags\": {\"f\": {\"state\": \"ENABLED\", \"variants\": {\"on\": true}, \"defaultVariant\": \"on\",\n\
         \"targetting\": {\"if\": [true, \"on\"]}}}}\n",
    )
    .expect("write");
    let (ok, text) = report(&[&file], false);
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "warning: flag `f` at /flags/f/targetting: unknown field `targetting` is ignored \
             (did you mean `targeting`?)"
        ),
        "{text}"
    );
    let (ok, text) = report(&[&file], true);
    assert!(!ok, "{text}");
    assert!(
        text.contains("error: flag `f` at /flags/f/targetting"),
        "{text}"
    );
}

#[test]
fn targeting_over_a_limit_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("flags.json");
    let list = vec!["1"; 250_001].join(",");
    let deep = format!("{{\"in\": [{{\"var\": \"k\"}}, [{list}]]}}");
    std::fs::write(
        &file,
        format!(
            "{{\"flags\": {{\"f\": {{\"state\": \"ENABLED\", \"variants\": {{\"on\": true}}, \"defaultVariant\": \"on\", \"targeting\": {deep}}}}}}}"
        ),
    )
    .expect("write");
    let (ok, text) = report(&[&file], false);
    assert!(!ok, "{text}");
    assert!(
        text.contains("is rejected: targeting rule has more than 250000 JSON values"),
        "{text}"
    );
}

#[test]
fn an_undefined_ref_is_reported_without_rejecting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("flags.json");
    std::fs::write(
        &file,
        r#"{"flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on",
             "targeting": {"if": [{"$ref": "missing"}, "on", null]}}}}"#,
    )
    .expect("write");
    for strict in [false, true] {
        let (ok, text) = report(&[&file], strict);
        assert!(ok, "{text}");
        assert!(
            text.contains("`$ref` to `missing`, which is not an evaluator of this document"),
            "{text}"
        );
    }
}

#[test]
fn the_semantic_lint_and_keys_defined_twice_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = dir.path().join("base.json");
    std::fs::write(
        &first,
        r#"{"flags": {
            "color": {"state": "ENABLED", "variants": {"red": 1, "blue": 2, "green": 3}, "defaultVariant": "red",
                      "targeting": {"if": [{"==": [{"var": "team"}, "ops"]}, "blue", "purple"]}},
            "shared": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}}"#,
    )
    .expect("write");
    let second = dir.path().join("override.yaml");
    std::fs::write(
        &second,
        "flags:\n  shared:\n    state: ENABLED\n    variants: {on: true}\n    defaultVariant: on\n",
    )
    .expect("write");
    let (ok, text) = report(&[&first, &second], true);
    assert!(ok, "lint findings never reject: {text}");
    assert!(
        text.contains("targeting can return \"purple\", which is not a variant"),
        "{text}"
    );
    assert!(text.contains("variant `green` is never returned"), "{text}");
    assert!(text.contains("ok: 2 flags, 2 warnings"), "{text}");
    assert!(
        text.contains(&format!(
            "warning: flag `shared` is defined by {}, {}: {} wins",
            first.display(),
            second.display(),
            second.display()
        )),
        "{text}"
    );
}

#[test]
fn the_json_format_carries_every_finding_for_tools() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = dir.path().join("base.json");
    std::fs::write(
        &first,
        r#"{"flags": {
  "color": {"state": "ENABLED", "variants": {"red": 1, "blue": 2}, "defaultVariant": "red",
            "targetting": {}, "metadata": {"expires": "2024-01-01"}},
  "shared": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}}"#,
    )
    .expect("write");
    let second = dir.path().join("second.yaml");
    std::fs::write(
        &second,
        "flags:\n  shared:\n    state: ENABLED\n    variants: {on: true}\n    defaultVariant: on\n",
    )
    .expect("write");
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\n  \"flags\": {,}\n}\n").expect("write");
    let output = crate::runtime_support::flagpole_command()
        .args(["validate", "--format", "json"])
        .args([&first, &second, &broken])
        .output()
        .expect("run flagpole validate");
    assert_eq!(
        output.status.code(),
        Some(1),
        "a rejected file fails the run"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON document");
    assert_eq!(report["ok"], false);
    let files = report["files"].as_array().expect("files");
    assert_eq!(files.len(), 3);
    assert_eq!(files[0]["accepted"], true);
    assert_eq!(files[0]["flags"], 2);
    let findings = files[0]["findings"].as_array().expect("findings");
    let messages: Vec<&str> = findings
        .iter()
        .filter_map(|f| f["message"].as_str())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("did you mean `targeting`")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("expired on 2024-01-01")),
        "{messages:?}"
    );
    for finding in findings {
        assert_eq!(finding["severity"], "warning");
        assert_eq!(finding["flag"], "color");
        assert_eq!(finding["line"], 2, "{finding}");
    }
    assert_eq!(files[2]["accepted"], false);
    assert_eq!(files[2]["findings"][0]["severity"], "error");
    assert_eq!(files[2]["findings"][0]["line"], 2);
    assert_eq!(report["duplicates"][0]["key"], "shared");
    assert_eq!(
        report["duplicates"][0]["winner"],
        second.display().to_string()
    );
}
