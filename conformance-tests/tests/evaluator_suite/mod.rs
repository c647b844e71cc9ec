//! The flagd-testbed engine-only suite (`evaluator/gherkin/*.feature` against
//! `evaluator/flags/testkit-flags.json`) run against `flagpole_engine`, with no daemon and no provider.
//!
//! It reads `$FLAGD_TESTBED_DIR` (default: the pinned testbed `scripts/fetch-testbed.sh` unpacks under
//! `target/`), runs every `.feature` file found in `evaluator/gherkin/` (so files added there later run
//! without code changes), and fails when the directory is missing or empty, or when any step fails or is
//! skipped. It ends with a line `N passed, N failed` (scenarios) per pass. Excluded tags are listed in
//! [`EXCLUDED_TAGS`], and nowhere else.
//!
//! Two test targets run it: `evaluator` with flagd's default bucketing (`@fractional-v3` rows left out) and
//! `evaluator_v3` with the typed-encoding bucketing of `--fractional-algorithm v3` (`@fractional-v2` rows
//! left out).
//!
//! Run with `cargo test -p flagpole-conformance --test evaluator --test evaluator_v3` (`harness = false`
//! targets).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use cucumber::gherkin::Step;
use cucumber::{World, given, then, when, writer};
use flagpole_conformance::gherkin::tally::Tally;
use flagpole_engine::{
    Context, EvalOptions, Format, FractionalAlgorithm, LoadOptions, Outcome, Reason, Selector,
    Snapshot, SourceFlags, TypedValue, Value, ValueType, evaluate, parse_document,
};
use serde_json::Map;

/// When an excluded tag applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Always,
    /// Excluded from the pass with flagd's default bucketing.
    V2Bucketing,
    /// Excluded from the pass with the v3 bucketing (the expectations are for the other one).
    V3Bucketing,
}

/// Tags whose scenarios are not run, when, and why. This is the only list of exclusions.
const EXCLUDED_TAGS: &[(&str, When, &str)] = &[
    (
        "fractional-v1",
        When::Always,
        "pre-0.15 bucketing that flagd 0.16 no longer implements",
    ),
    (
        "deprecated",
        When::Always,
        "behaviour the testbed keeps only for old implementations",
    ),
    (
        "fractional-v3",
        When::V2Bucketing,
        "typed-encoding bucketing (--fractional-algorithm v3): run in the v3 pass",
    ),
    (
        "fractional-v2",
        When::V3Bucketing,
        "flagd's default bucketing: run in the v2 pass",
    ),
];

/// Whether this run uses the v3 bucketing (set once, before the run).
static V3_PASS: AtomicBool = AtomicBool::new(false);

fn v3_enabled() -> bool {
    V3_PASS.load(Ordering::Relaxed)
}

fn excluded(tag: &str) -> bool {
    EXCLUDED_TAGS.iter().any(|(t, when, _)| {
        *t == tag
            && match when {
                When::Always => true,
                When::V2Bucketing => !v3_enabled(),
                When::V3Bucketing => v3_enabled(),
            }
    })
}

fn testbed_dir() -> PathBuf {
    match std::env::var_os("FLAGD_TESTBED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => flagpole_conformance::pinned_testbed_dir(),
    }
}

/// The testkit flags, loaded once for the whole run.
fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let path = testbed_dir().join("evaluator/flags/testkit-flags.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let loaded = parse_document(&text, Format::Json, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()));
        Snapshot::new(vec![SourceFlags {
            source: Arc::from(path.display().to_string()),
            flags: loaded.flags,
        }])
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagType {
    Boolean,
    String,
    Integer,
    Float,
    Object,
}

impl FlagType {
    fn parse(s: &str) -> FlagType {
        match s {
            "Boolean" => FlagType::Boolean,
            "String" => FlagType::String,
            "Integer" => FlagType::Integer,
            "Float" => FlagType::Float,
            "Object" => FlagType::Object,
            other => panic!("unknown flag type {other:?}"),
        }
    }

    fn value_type(self) -> ValueType {
        match self {
            FlagType::Boolean => ValueType::Bool,
            FlagType::String => ValueType::String,
            FlagType::Integer => ValueType::Int,
            FlagType::Float => ValueType::Float,
            FlagType::Object => ValueType::Object,
        }
    }

    /// The gherkin cell as a JSON value of this type.
    fn parse_value(self, text: &str) -> Value {
        match self {
            FlagType::Boolean => Value::Bool(
                text.parse()
                    .unwrap_or_else(|_| panic!("not a boolean: {text:?}")),
            ),
            FlagType::String => Value::String(text.to_owned()),
            FlagType::Integer => Value::from(
                text.parse::<i64>()
                    .unwrap_or_else(|_| panic!("not an integer: {text:?}")),
            ),
            FlagType::Float => Value::from(
                text.parse::<f64>()
                    .unwrap_or_else(|_| panic!("not a float: {text:?}")),
            ),
            FlagType::Object => {
                serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON: {text:?}: {e}"))
            }
        }
    }
}

/// What the evaluation returned, as an SDK would present it.
#[derive(Debug, Clone)]
struct Details {
    value: Value,
    reason: String,
    variant: Option<String>,
    error_code: Option<String>,
    metadata: Map<String, Value>,
}

#[derive(Debug, Default, World)]
struct EvaluatorWorld {
    flag: Option<(String, FlagType, Value)>,
    context: Context,
    details: Option<Details>,
}

impl EvaluatorWorld {
    fn details(&self) -> &Details {
        self.details.as_ref().expect("the flag was not evaluated")
    }
}

#[given("an evaluator")]
fn an_evaluator(_world: &mut EvaluatorWorld) {
    assert!(!snapshot().is_empty(), "the testkit flags are empty");
}

#[given(regex = r#"^an? (\w+)-flag with key "(.*)" and a fallback value "(.*)"$"#)]
fn a_flag(world: &mut EvaluatorWorld, ty: String, key: String, fallback: String) {
    let ty = FlagType::parse(&ty);
    world.flag = Some((key, ty, ty.parse_value(&fallback)));
}

#[given(regex = r#"^a context containing a key "(.*)", with type "(.*)" and with value "(.*)"$"#)]
fn a_context_key(world: &mut EvaluatorWorld, key: String, ty: String, value: String) {
    world
        .context
        .insert(key, FlagType::parse(&ty).parse_value(&value));
}

#[given(
    regex = r#"^a context containing a nested property with outer key "([^"]*)" and inner key "([^"]*)", with value "(.*)"$"#
)]
fn a_nested_context_key(world: &mut EvaluatorWorld, outer: String, inner: String, value: String) {
    let entry = world
        .context
        .entry(outer)
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Value::Object(fields) = entry {
        fields.insert(inner, Value::String(value));
    }
}

#[given(regex = r#"^a context containing a targeting key with value "(.*)"$"#)]
fn a_targeting_key(world: &mut EvaluatorWorld, value: String) {
    world
        .context
        .insert("targetingKey".to_owned(), Value::String(value));
}

#[when("the flag was evaluated with details")]
fn evaluated(world: &mut EvaluatorWorld) {
    let (key, ty, fallback) = world.flag.clone().expect("no flag was chosen");
    let options = EvalOptions {
        fractional: if v3_enabled() {
            FractionalAlgorithm::V3
        } else {
            FractionalAlgorithm::V2
        },
        ..EvalOptions::now()
    };
    let Some(flag) = snapshot().get(&key, &Selector::All) else {
        world.details = Some(Details {
            value: fallback,
            reason: Reason::Error.as_str().to_owned(),
            variant: None,
            error_code: Some("FLAG_NOT_FOUND".to_owned()),
            metadata: Map::new(),
        });
        return;
    };
    let metadata: Map<String, Value> = flag
        .metadata
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let outcome = evaluate(flag, &world.context, &options).typed(ty.value_type());
    let value = match &outcome {
        Outcome::Value { value, .. } => match value {
            TypedValue::Bool(b) => Value::Bool(*b),
            TypedValue::String(s) => Value::String((*s).to_owned()),
            TypedValue::Int(i) => Value::from(*i),
            TypedValue::Float(f) => Value::from(*f),
            TypedValue::Object(m) => Value::Object((*m).clone()),
        },
        Outcome::Disabled | Outcome::CodeDefault | Outcome::Failed { .. } => fallback,
    };
    world.details = Some(Details {
        value,
        reason: outcome.reason().as_str().to_owned(),
        variant: outcome.variant().map(str::to_owned),
        error_code: outcome.error_code().map(|code| code.as_str().to_owned()),
        metadata,
    });
}

#[then(regex = r#"^the resolved details value should be "(.*)"$"#)]
fn value_should_be(world: &mut EvaluatorWorld, expected: String) {
    let (_, ty, _) = world.flag.as_ref().expect("no flag was chosen");
    let expected = ty.parse_value(&expected);
    let actual = &world.details().value;
    assert!(
        same_json(actual, &expected),
        "value: expected {expected}, got {actual} ({:?})",
        world.details()
    );
}

#[then(regex = r#"^the reason should be "(.*)"$"#)]
fn reason_should_be(world: &mut EvaluatorWorld, expected: String) {
    assert_eq!(world.details().reason, expected, "{:?}", world.details());
}

#[then(regex = r#"^the error-code should be "(.*)"$"#)]
fn error_code_should_be(world: &mut EvaluatorWorld, expected: String) {
    let expected = Some(expected).filter(|e| !e.is_empty());
    assert_eq!(
        world.details().error_code,
        expected,
        "{:?}",
        world.details()
    );
}

#[then(regex = r#"^the variant should be "(.*)"$"#)]
fn variant_should_be(world: &mut EvaluatorWorld, expected: String) {
    let expected = Some(expected).filter(|e| !e.is_empty());
    assert_eq!(world.details().variant, expected, "{:?}", world.details());
}

#[then("the resolved metadata is empty")]
fn metadata_is_empty(world: &mut EvaluatorWorld) {
    assert!(world.details().metadata.is_empty(), "{:?}", world.details());
}

#[then("the resolved metadata should contain")]
fn metadata_should_contain(world: &mut EvaluatorWorld, step: &Step) {
    let table = step.table.as_ref().expect("the step needs a table");
    let metadata = &world.details().metadata;
    for row in table.rows.iter().skip(1) {
        let [key, ty, value] = row.as_slice() else {
            panic!("expected | key | metadata_type | value |, got {row:?}")
        };
        let expected = FlagType::parse(ty).parse_value(value);
        let actual = metadata
            .get(key)
            .unwrap_or_else(|| panic!("metadata has no {key:?}: {metadata:?}"));
        assert!(
            same_json(actual, &expected),
            "metadata {key:?}: expected {expected}, got {actual}"
        );
    }
}

/// JSON equality with numbers compared as float64 (`100` equals `100.0`), as flagd sees them.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Copies the feature files into `into`, with the table repairs the gherkin suite uses too
/// ([`flagpole_conformance::gherkin::preprocess::repair`], `docs/conformance.md#how-it-works`).
fn preprocess(from: &Path, into: &Path) -> usize {
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| {
        panic!(
            "the testbed's evaluator features are missing: {}: {e} (set FLAGD_TESTBED_DIR)",
            from.display()
        )
    });
    let mut count = 0;
    for entry in entries {
        let path = entry.expect("cannot list the feature directory").path();
        if path.extension().is_some_and(|e| e == "feature") {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let text = flagpole_conformance::gherkin::preprocess::repair(&text);
            let name = path.file_name().expect("a file has a name");
            std::fs::write(into.join(name), text).expect("cannot write the feature copy");
            count += 1;
        }
    }
    count
}

/// Runs every feature file with the v3 bucketing or not, and exits the process with cucumber's verdict
/// (a failed, skipped or unparsable step fails it).
pub fn run(v3: bool) {
    V3_PASS.store(v3, Ordering::Relaxed);
    let features = tempfile::tempdir().expect("cannot create a temporary directory");
    let source = testbed_dir().join("evaluator/gherkin");
    let count = preprocess(&source, features.path());
    assert!(count > 0, "no .feature files in {}", source.display());
    println!(
        "running {count} feature files from {} with the {} bucketing",
        source.display(),
        if v3 { "v3" } else { "default (v2)" }
    );
    for (tag, _, reason) in EXCLUDED_TAGS {
        if excluded(tag) {
            println!("excluding @{tag}: {reason}");
        }
    }
    use cucumber::WriterExt as _;
    // The shared tally: a per-file table, then `N passed, N failed` (scenarios) as the last line.
    let writer = Tally::new(
        writer::Basic::stdout().summarized().fail_on_skipped(),
        Box::new(std::io::stdout()),
    );
    let run = EvaluatorWorld::cucumber()
        .with_writer(writer)
        // No command-line parsing: `cargo test` passes libtest arguments (`--nocapture`, name filters) to
        // every test binary, and cucumber would reject them.
        .with_default_cli()
        .filter_run_and_exit(features.path().to_path_buf(), |feature, rule, scenario| {
            let tags = feature
                .tags
                .iter()
                .chain(rule.iter().flat_map(|r| r.tags.iter()))
                .chain(scenario.tags.iter());
            !tags.map(|t| t.trim_start_matches('@')).any(excluded)
        });
    futures::executor::block_on(run);
}
