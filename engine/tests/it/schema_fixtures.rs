//! The flagd-schemas fixtures (`json/test/**/positive|negative`) as a table: positive fixtures are valid,
//! negative ones are not. The schema applied follows the fixture's `$schema` (`flagd.json`, `flags.json`;
//! none means a targeting rule), as the schema repository's own Go test does.

use std::path::Path;

use flagpole_engine::Value;
use flagpole_engine::schema::{SchemaKind, validate};

use crate::{json_files, schemas_dir};

fn kind_of(doc: &Value) -> SchemaKind {
    match doc.get("$schema").and_then(Value::as_str) {
        Some(s) if s.ends_with("flagd.json") => SchemaKind::Flagd,
        Some(s) if s.ends_with("flags.json") => SchemaKind::Flags,
        Some(s) => panic!("unexpected $schema {s}"),
        None => SchemaKind::Targeting,
    }
}

fn run(group: &str) -> usize {
    let base = schemas_dir().join("json/test").join(group);
    let mut checked = 0;
    let mut failures = Vec::new();
    for (polarity, valid) in [("positive", true), ("negative", false)] {
        let dir = base.join(polarity);
        assert!(dir.is_dir(), "{} is missing", dir.display());
        for path in json_files(&dir) {
            let violations = check(&path);
            if violations.is_empty() != valid {
                failures.push(format!(
                    "{}: expected {polarity}, got {violations:?}",
                    path.display()
                ));
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    checked
}

fn check(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    validate(&doc, kind_of(&doc))
        .into_iter()
        .map(|w| w.to_string())
        .collect()
}

#[test]
fn flagd_fixtures() {
    assert_eq!(run("flagd"), 2);
}

#[test]
fn flags_fixtures() {
    assert_eq!(run("flags"), 18);
}

#[test]
fn targeting_fixtures() {
    // flagd-schemas 0.2.13 (the pinned package's); the newer fractional-weight fixtures are covered by the
    // engine's own `schema` unit tests.
    assert_eq!(run("targeting"), 10);
}

#[test]
fn schema_examples() {
    let examples = schemas_dir().join("json/examples");
    let load = |name: &str| -> Value {
        let text = std::fs::read_to_string(examples.join(name)).expect("readable");
        serde_json::from_str(&text).expect("JSON")
    };
    assert_eq!(validate(&load("minimal.json"), SchemaKind::Flagd), vec![]);
    // full.json carries two rules the targeting schema forbids (a four-part version, a numeric ends_with
    // argument), which Python's jsonschema reports too.
    let paths: Vec<String> = validate(&load("full.json"), SchemaKind::Flagd)
        .into_iter()
        .map(|w| w.path)
        .collect();
    assert_eq!(
        paths,
        [
            "/flags/equal-greater-lesser-version-flag/targeting/if/2/if/2/if/2/if/0/sem_ver/2",
            "/flags/starts-ends-flag/targeting/if/2/if/2/if/0/ends_with/1",
        ]
    );
}

/// The testbed's flag files load in lenient mode, with warnings for exactly the flags that a JSON-schema
/// validator (Python `jsonschema` 4.26 on flagd-schemas' `flagd.json`, checked once per flag) finds invalid;
/// strict mode rejects exactly the files that contain one.
#[test]
fn testbed_flag_warnings_match_a_json_schema_validator() {
    use std::collections::BTreeSet;

    use flagpole_engine::{Format, LoadOptions, parse_document};

    let invalid: BTreeSet<(&str, &str)> = [
        ("custom-ops.json", "equal-greater-lesser-version-flag"),
        ("custom-ops.json", "semver-numeric-context-flag"),
        ("custom-ops.json", "semver-partial-version-flag"),
        ("custom-ops.json", "semver-v-prefix-flag"),
        ("custom-ops.json", "starts-ends-flag"),
        ("edge-case-flags.json", "ends-with-wrong-args-flag"),
        ("edge-case-flags.json", "error-targeting-flag"),
        ("edge-case-flags.json", "fractional-negative-weight-flag"),
        ("edge-case-flags.json", "semver-invalid-operator-flag"),
        ("edge-case-flags.json", "semver-wrong-args-flag"),
        ("edge-case-flags.json", "starts-with-wrong-args-flag"),
        ("edge-case-flags.json", "targeting-null-flag"),
        ("testkit-flags.json", "ends-with-wrong-args-flag"),
        ("testkit-flags.json", "fractional-negative-weight-flag"),
        ("testkit-flags.json", "semver-invalid-operator-flag"),
        ("testkit-flags.json", "semver-numeric-context-flag"),
        ("testkit-flags.json", "semver-partial-version-flag"),
        ("testkit-flags.json", "semver-v-prefix-flag"),
        ("testkit-flags.json", "semver-wrong-args-flag"),
        ("testkit-flags.json", "starts-with-wrong-args-flag"),
    ]
    .into();
    let testbed = crate::testbed_dir();
    let mut files = json_files(&testbed.join("flags"));
    files.extend(json_files(&testbed.join("evaluator/flags")));
    let mut warned = BTreeSet::new();
    for path in &files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name");
        let text = std::fs::read_to_string(path).expect("readable");
        let loaded = parse_document(&text, Format::Json, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for warning in &loaded.warnings {
            let flag = warning
                .flag
                .as_deref()
                .unwrap_or_else(|| panic!("{name}: {warning} names no flag"));
            warned.insert((name.to_owned(), flag.to_owned()));
        }
        let strict = parse_document(&text, Format::Json, &LoadOptions { strict: true });
        assert_eq!(strict.is_err(), !loaded.warnings.is_empty(), "{name}");
    }
    let expected: BTreeSet<(String, String)> = invalid
        .iter()
        .map(|(f, k)| ((*f).to_owned(), (*k).to_owned()))
        .collect();
    assert_eq!(warned, expected);
}
