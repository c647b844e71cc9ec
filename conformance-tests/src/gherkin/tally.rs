//! A cucumber [`Writer`] wrapper that counts passed and failed scenarios per feature file and mode, and prints
//! that table followed by a last line `N passed, N failed` when the run finishes (after the inner writer's
//! own summary).
//!
//! It only observes: every event goes to the inner writer unchanged, and [`Stats`] is the inner writer's, so
//! the verdict of `filter_run_and_exit` is untouched. A scenario counts as failed when any of its steps,
//! background steps or hooks failed or was skipped; parsing errors are counted as failures of their file.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;

use cucumber::event::{self, Cucumber, Feature, Rule, Scenario, Step};
use cucumber::gherkin;
use cucumber::writer::{Normalized, Stats};
use cucumber::{Event, Writer, parser};

use super::Mode;

/// Passed/failed scenario counts of one file in one mode.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Scenarios whose every step passed.
    pub passed: usize,
    /// Scenarios with a failed or skipped step or hook (or a file that failed to parse).
    pub failed: usize,
}

/// Where the table goes.
pub type Output = Box<dyn std::io::Write + Send>;

/// See the module documentation.
pub struct Tally<Wr> {
    inner: Wr,
    out: Output,
    rows: BTreeMap<(String, String), Counts>,
    running: HashMap<(String, usize, usize), bool>,
}

impl<Wr: std::fmt::Debug> std::fmt::Debug for Tally<Wr> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tally")
            .field("inner", &self.inner)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl<Wr> Tally<Wr> {
    /// Wraps `inner`; the table is written to `out` when the run finishes.
    pub fn new(inner: Wr, out: Output) -> Self {
        Self {
            inner,
            out,
            rows: BTreeMap::new(),
            running: HashMap::new(),
        }
    }

    /// The counts so far, keyed by (file name, mode).
    pub fn rows(&self) -> &BTreeMap<(String, String), Counts> {
        &self.rows
    }

    fn row_key(feature: &gherkin::Feature) -> (String, String) {
        let file = feature
            .path
            .as_deref()
            .and_then(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| feature.name.clone());
        let mode = Mode::of_feature(feature)
            .map(|mode| mode.tag().to_owned())
            // A feature run in no mode of its own (the evaluator suite).
            .unwrap_or_else(|| "engine".to_owned());
        (file, mode)
    }

    fn observe_scenario<W>(
        &mut self,
        feature: &gherkin::Feature,
        scenario: &gherkin::Scenario,
        event: &Scenario<W>,
    ) {
        let (file, mode) = Self::row_key(feature);
        let key = (
            format!("{file}/{mode}"),
            scenario.position.line,
            scenario.position.col,
        );
        match event {
            Scenario::Started => {
                self.running.insert(key, false);
            }
            Scenario::Step(_, Step::Failed(..) | Step::Skipped)
            | Scenario::Background(_, Step::Failed(..) | Step::Skipped)
            | Scenario::Hook(_, event::Hook::Failed(..)) => {
                self.running.insert(key, true);
            }
            Scenario::Finished => {
                let failed = self.running.remove(&key).unwrap_or(true);
                let counts = self.rows.entry((file, mode)).or_default();
                if failed {
                    counts.failed += 1;
                } else {
                    counts.passed += 1;
                }
            }
            _ => {}
        }
    }

    fn observe<W>(&mut self, event: &parser::Result<Event<Cucumber<W>>>) {
        match event {
            Ok(event) => {
                if let Cucumber::Feature(feature, feature_event) = &event.value {
                    match feature_event {
                        Feature::Scenario(scenario, retryable) => {
                            self.observe_scenario(feature, scenario, &retryable.event);
                        }
                        Feature::Rule(_, Rule::Scenario(scenario, retryable)) => {
                            self.observe_scenario(feature, scenario, &retryable.event);
                        }
                        _ => {}
                    }
                }
            }
            Err(error) => {
                let counts = self
                    .rows
                    .entry((format!("(parse error) {error}"), "-".to_owned()))
                    .or_default();
                counts.failed += 1;
            }
        }
    }

    /// The table and the final line, as printed at the end of a run.
    pub fn report(&self) -> String {
        let mut modes: Vec<String> = self.rows.keys().map(|(_, mode)| mode.clone()).collect();
        modes.sort_by_key(|mode| Mode::from_tag(mode).map_or(Mode::ALL.len(), |m| m as usize));
        modes.dedup();
        let mut files: Vec<String> = self.rows.keys().map(|(file, _)| file.clone()).collect();
        files.dedup();
        let mut out = String::new();
        out.push_str("| feature file |");
        for mode in &modes {
            out.push_str(&format!(" {mode} |"));
        }
        out.push_str("\n|---|");
        for _ in &modes {
            out.push_str("---|");
        }
        out.push('\n');
        let mut total = Counts::default();
        for file in &files {
            out.push_str(&format!("| {file} |"));
            for mode in &modes {
                match self.rows.get(&(file.clone(), mode.clone())) {
                    Some(counts) => {
                        total.passed += counts.passed;
                        total.failed += counts.failed;
                        out.push_str(&format!(
                            " {}/{} |",
                            counts.passed,
                            counts.passed + counts.failed
                        ));
                    }
                    None => out.push_str(" – |"),
                }
            }
            out.push('\n');
        }
        out.push_str("(cells: passed/run scenarios)\n");
        out.push_str(&format!("{} passed, {} failed", total.passed, total.failed));
        out
    }
}

impl<W, Wr> Writer<W> for Tally<Wr>
where
    W: cucumber::World,
    Wr: Writer<W>,
{
    type Cli = Wr::Cli;

    async fn handle_event(&mut self, event: parser::Result<Event<Cucumber<W>>>, cli: &Self::Cli) {
        self.observe(&event);
        let finished = matches!(&event, Ok(event) if matches!(event.value, Cucumber::Finished));
        self.inner.handle_event(event, cli).await;
        if finished {
            let report = self.report();
            // The table is informational; cucumber's own verdict decides the run.
            let _ = writeln!(self.out, "\n{report}").and_then(|()| self.out.flush());
        }
    }
}

impl<W, Wr> Stats<W> for Tally<Wr>
where
    W: cucumber::World,
    Wr: Stats<W>,
{
    fn passed_steps(&self) -> usize {
        self.inner.passed_steps()
    }

    fn skipped_steps(&self) -> usize {
        self.inner.skipped_steps()
    }

    fn failed_steps(&self) -> usize {
        self.inner.failed_steps()
    }

    fn retried_steps(&self) -> usize {
        self.inner.retried_steps()
    }

    fn parsing_errors(&self) -> usize {
        self.inner.parsing_errors()
    }

    fn hook_errors(&self) -> usize {
        self.inner.hook_errors()
    }
}

impl<Wr: Normalized> Normalized for Tally<Wr> {}

#[cfg(test)]
mod tests {
    use super::{Counts, Tally};

    #[test]
    fn report_sums_rows_and_ends_with_the_totals_line() {
        let mut tally = Tally::new((), Box::new(std::io::sink()));
        tally.rows.insert(
            ("a.feature".to_owned(), "rpc".to_owned()),
            Counts {
                passed: 3,
                failed: 1,
            },
        );
        tally.rows.insert(
            ("a.feature".to_owned(), "file".to_owned()),
            Counts {
                passed: 2,
                failed: 0,
            },
        );
        tally.rows.insert(
            ("b.feature".to_owned(), "rpc".to_owned()),
            Counts {
                passed: 0,
                failed: 2,
            },
        );
        let report = tally.report();
        assert!(
            report.starts_with("| feature file | rpc | file |\n"),
            "{report}"
        );
        assert!(report.contains("| a.feature | 3/4 | 2/2 |\n"), "{report}");
        assert!(report.contains("| b.feature | 0/2 | – |\n"), "{report}");
        assert_eq!(report.lines().last(), Some("5 passed, 3 failed"));
    }
}
