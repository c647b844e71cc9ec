//! The flagd-testbed provider/daemon suite (`$FLAGD_TESTBED_DIR/gherkin/*.feature`) run against the flagpole
//! daemon through `flagpole-provider`, once per resolver mode.
//!
//! How a run works ([`run`]):
//! 1. [`preprocess`] copies every `.feature` file into `TMP/<mode>/` for each selected [`Mode`] (fixing the
//!    cell escapes gherkin 0.16 cannot parse), so the mode of a scenario is the directory of its file and new
//!    feature files run without code changes;
//! 2. one cucumber run over `TMP/` keeps a scenario when its effective tags (feature + rule + scenario +
//!    examples) contain its directory's mode tag and none of the [`EXCLUDED_TAGS`] of that mode;
//! 3. scenarios run one at a time against one [`Launcher`] and one
//!    [`Envoy`]; skipped steps fail; [`tally`] prints the per-file/per-mode table and
//!    the final `N passed, N failed` line; `filter_run_and_exit` fails the process on any failure.
//!
//! What it does not do: the engine-only `evaluator/` suite (see `tests/evaluator.rs`).

pub mod preprocess;
pub mod steps;
pub mod tally;
pub mod world;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use cucumber::gherkin;
use std::sync::{Arc, OnceLock};

use cucumber::World as _;
use cucumber::WriterExt as _;

use crate::envoy::Envoy;
use crate::launcher::{self, Launcher, LauncherOptions};

pub use world::FlagdWorld;

/// A tag whose scenarios are not run.
#[derive(Debug, Clone, Copy)]
pub struct Exclusion {
    /// The tag, without `@`.
    pub tag: &'static str,
    /// The modes it applies to (empty: every mode).
    pub modes: &'static [Mode],
    /// Why.
    pub reason: &'static str,
}

/// Every tag whose scenarios are not run, with the modes and the reason. This is the only exclusion list.
pub const EXCLUDED_TAGS: &[Exclusion] = &[
    Exclusion {
        tag: "fractional-v1",
        modes: &[],
        reason: "legacy float bucketing; flagpole implements flagd's current v2 algorithm (mutually exclusive)",
    },
    Exclusion {
        tag: "fractional-v3",
        modes: &[],
        reason: "typed-encoding bucketing: run by the v3 pass (test target `gherkin_v3`), not by this one",
    },
    Exclusion {
        tag: "deprecated",
        modes: &[],
        reason: "old no-default-variant behaviour (ERROR/FLAG_NOT_FOUND), contradicted by @no-default-variant",
    },
];

impl Exclusion {
    /// Whether this exclusion removes a scenario with `tag` from `mode`.
    pub fn excludes(&self, mode: Mode, tag: &str) -> bool {
        self.tag == tag && (self.modes.is_empty() || self.modes.contains(&mode))
    }
}

/// Env var narrowing the modes, e.g. `rpc,in-process`.
pub const MODES_ENV: &str = "FLAGPOLE_CONFORMANCE_MODES";

/// A provider resolver mode; also the gherkin tag selecting scenarios for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Every evaluation is a gRPC call to the daemon (`@rpc`).
    Rpc,
    /// Flags synced from the daemon, evaluated locally (`@in-process`).
    InProcess,
    /// Flags read from `flags/allFlags.json` (`@file`).
    File,
}

impl Mode {
    /// All modes, in run order.
    pub const ALL: [Mode; 3] = [Mode::Rpc, Mode::InProcess, Mode::File];

    /// The tag (without `@`) and directory name of the mode.
    pub fn tag(self) -> &'static str {
        match self {
            Mode::Rpc => "rpc",
            Mode::InProcess => "in-process",
            Mode::File => "file",
        }
    }

    /// Parses a tag / directory name.
    pub fn from_tag(tag: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| mode.tag() == tag.trim())
    }

    /// The mode of a preprocessed feature file: the name of its parent directory.
    pub fn of_feature(feature: &gherkin::Feature) -> Option<Self> {
        let dir = feature.path.as_deref()?.parent()?.file_name()?.to_str()?;
        Self::from_tag(dir)
    }
}

/// The modes selected by [`MODES_ENV`] (all when unset). An unknown name is an error.
pub fn selected_modes() -> Result<Vec<Mode>, String> {
    match std::env::var(MODES_ENV) {
        Err(_) => Ok(Mode::ALL.to_vec()),
        Ok(text) if text.trim().is_empty() => Ok(Mode::ALL.to_vec()),
        Ok(text) => text
            .split(',')
            .filter(|name| !name.trim().is_empty())
            .map(|name| {
                Mode::from_tag(name).ok_or_else(|| format!("{MODES_ENV}: unknown mode {name:?}"))
            })
            .collect(),
    }
}

/// Which `fractional` bucketing a run uses, and so which rows it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucketing {
    /// flagd's default (v2): every scenario but the excluded tags.
    Default,
    /// `--fractional-algorithm v3` in the daemon and the provider's local resolvers: only the
    /// `@fractional-v3` rows.
    V3,
}

/// Whether a scenario runs in `mode` under `bucketing`.
pub fn selected_for(
    bucketing: Bucketing,
    mode: Mode,
    feature: &gherkin::Feature,
    rule: Option<&gherkin::Rule>,
    scenario: &gherkin::Scenario,
) -> bool {
    match bucketing {
        Bucketing::Default => selected(mode, feature, rule, scenario),
        Bucketing::V3 => {
            let tags: Vec<&str> = feature
                .tags
                .iter()
                .chain(rule.iter().flat_map(|rule| rule.tags.iter()))
                .chain(scenario.tags.iter())
                .map(|tag| tag.trim_start_matches('@'))
                .collect();
            tags.contains(&mode.tag()) && tags.contains(&"fractional-v3")
        }
    }
}

/// Whether a scenario runs in `mode`: its effective tags hold the mode tag and no excluded tag.
pub fn selected(
    mode: Mode,
    feature: &gherkin::Feature,
    rule: Option<&gherkin::Rule>,
    scenario: &gherkin::Scenario,
) -> bool {
    let tags: Vec<&str> = feature
        .tags
        .iter()
        .chain(rule.iter().flat_map(|rule| rule.tags.iter()))
        .chain(scenario.tags.iter())
        .map(|tag| tag.trim_start_matches('@'))
        .collect();
    tags.contains(&mode.tag())
        && !tags.iter().any(|tag| {
            EXCLUDED_TAGS
                .iter()
                .any(|exclusion| exclusion.excludes(mode, tag))
        })
}

/// The shared fixtures every scenario uses.
#[derive(Debug)]
pub struct Harness {
    /// The launchpad.
    pub launcher: Arc<Launcher>,
    /// The envoy stand-in.
    pub envoy: Envoy,
    /// The bucketing of this run (the provider's local resolvers are built with it).
    pub bucketing: Bucketing,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

/// The installed harness; panics (failing the step) when [`run`] did not install one.
pub fn harness() -> &'static Harness {
    HARNESS
        .get()
        .unwrap_or_else(|| panic!("the gherkin harness is not installed"))
}

/// Kills the daemon and removes the fixture when the run ends, also on panic (the launcher itself lives in
/// a `static` and is never dropped).
struct KillOnExit(Arc<Launcher>);

impl Drop for KillOnExit {
    fn drop(&mut self) {
        self.0.shutdown_now();
    }
}

/// Runs the suite and exits the process with cucumber's verdict; the run's header line and the final table
/// go to `report` (cucumber's own output goes to stdout). Panics when the testbed directory, its `gherkin/`
/// directory or the daemon binary is missing.
pub async fn run(mut report: tally::Output, bucketing: Bucketing) {
    let testbed = launcher::testbed_dir();
    let features = testbed.join("gherkin");
    assert!(
        features.is_dir(),
        "flagd-testbed gherkin directory {} does not exist (set FLAGD_TESTBED_DIR)",
        features.display()
    );
    let modes = selected_modes().unwrap_or_else(|error| panic!("{error}"));
    let daemon_bin = launcher::daemon_bin();
    assert!(
        daemon_bin.is_file(),
        "flagpole binary {} not found: run `cargo build -p flagpole` or set FLAGPOLE_BIN",
        daemon_bin.display()
    );

    let launcher = Launcher::new(LauncherOptions {
        testbed_dir: testbed.clone(),
        daemon_bin,
        ports: None,
        daemon_output: std::env::var_os("FLAGPOLE_CONFORMANCE_DAEMON_LOG").is_some(),
        extra_config: match bucketing {
            Bucketing::Default => Vec::new(),
            Bucketing::V3 => vec![(
                "fractional-algorithm".to_owned(),
                serde_json::Value::from("v3"),
            )],
        },
    })
    .unwrap_or_else(|error| panic!("testbed launcher: {error}"));
    let _guard = KillOnExit(Arc::clone(&launcher));
    let ports = launcher.ports();
    let envoy = Envoy::start(ports.evaluation, ports.sync)
        .await
        .unwrap_or_else(|error| panic!("envoy stand-in: {error}"));
    if HARNESS
        .set(Harness {
            launcher,
            envoy,
            bucketing,
        })
        .is_err()
    {
        panic!("the gherkin harness was installed twice");
    }

    let work = tempfile::Builder::new()
        .prefix("flagpole-gherkin-")
        .tempdir()
        .unwrap_or_else(|error| panic!("temp dir: {error}"));
    preprocess::prepare(&features, work.path(), &modes)
        .unwrap_or_else(|error| panic!("preprocessing {}: {error}", features.display()));
    let input: PathBuf = work.path().to_path_buf();

    let _ = writeln!(
        report,
        "flagd-testbed {} from {}; bucketing {:?}; modes {}; {}",
        testbed_version(&testbed),
        testbed.display(),
        bucketing,
        modes
            .iter()
            .map(|mode| mode.tag())
            .collect::<Vec<_>>()
            .join(","),
        match bucketing {
            Bucketing::V3 => "only the @fractional-v3 rows".to_owned(),
            Bucketing::Default => format!(
                "excluded tags {}",
                EXCLUDED_TAGS
                    .iter()
                    .map(|exclusion| match exclusion.modes {
                        [] => format!("@{}", exclusion.tag),
                        modes => format!(
                            "@{}({})",
                            exclusion.tag,
                            modes
                                .iter()
                                .map(|mode| mode.tag())
                                .collect::<Vec<_>>()
                                .join("+")
                        ),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        }
    );

    FlagdWorld::cucumber()
        .max_concurrent_scenarios(1)
        .with_writer(tally::Tally::new(
            cucumber::writer::Basic::stdout().summarized(),
            report,
        ))
        .fail_on_skipped()
        // No command-line parsing: `cargo test` hands libtest arguments (`--nocapture`, name filters) to
        // every test binary, and cucumber would reject them. Narrow the run with FLAGPOLE_CONFORMANCE_MODES.
        .with_default_cli()
        .before(|feature, _rule, _scenario, world| {
            let mode = Mode::of_feature(feature);
            Box::pin(async move {
                world.set_mode(mode);
            })
        })
        .after(|_feature, _rule, _scenario, _event, world| {
            Box::pin(async move {
                if let Some(world) = world {
                    world.teardown().await;
                }
            })
        })
        .filter_run_and_exit(input, move |feature, rule, scenario| {
            Mode::of_feature(feature)
                .is_some_and(|mode| selected_for(bucketing, mode, feature, rule, scenario))
        })
        .await;
    drop(work);
}

fn testbed_version(testbed: &Path) -> String {
    std::fs::read_to_string(testbed.join("version.txt"))
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|_| "(unknown version)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::{Mode, selected};
    use cucumber::gherkin::{Feature, GherkinEnv};

    const FEATURE: &str = "@rpc
Feature: selection
  Scenario: inherits the feature tag
    Given a step

  @in-process @fractional-v3
  Scenario: excluded everywhere
    Given a step

  @file
  Scenario: two modes
    Given a step
";

    #[test]
    fn scenarios_are_selected_by_effective_tags_and_exclusions() {
        let mut feature = Feature::parse(FEATURE, GherkinEnv::default())
            .unwrap_or_else(|error| panic!("parse: {error}"));
        feature.path = Some("/tmp/x/in-process/selection.feature".into());
        assert_eq!(Mode::of_feature(&feature), Some(Mode::InProcess));
        let [inherits, excluded, two] = feature.scenarios.as_slice() else {
            panic!("three scenarios expected");
        };
        assert!(selected(Mode::Rpc, &feature, None, inherits));
        assert!(!selected(Mode::InProcess, &feature, None, inherits));
        for mode in Mode::ALL {
            assert!(!selected(mode, &feature, None, excluded), "{mode:?}");
        }
        assert!(selected(Mode::Rpc, &feature, None, two));
        assert!(selected(Mode::File, &feature, None, two));
        assert!(!selected(Mode::InProcess, &feature, None, two));
    }

    #[test]
    fn modes_parse_from_tags_only() {
        assert_eq!(Mode::from_tag("in-process"), Some(Mode::InProcess));
        assert_eq!(Mode::from_tag("rpc"), Some(Mode::Rpc));
        assert_eq!(Mode::from_tag("grpc"), None);
    }
}
