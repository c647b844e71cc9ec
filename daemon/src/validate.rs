//! `flagpole validate FILE...`: check flag files offline, the way the daemon would load them.
//!
//! Every problem is printed as `FILE:LINE:COLUMN: error|warning: message` (`FILE: ...` when no position is
//! known), one per line, then a summary line per file. Schema violations are warnings (the daemon loads
//! such files, as flagd does) unless `--strict`; anything that would make the daemon reject the file is an
//! error. The caller exits 1 when any file is rejected.
//!
//! Beyond the daemon's own checks it runs the semantic lint (`flagpole_engine::lint`: results that are not
//! variants, an `if` without an else, unreachable variants) and, given several files, reports a key defined
//! by more than one and which file wins (`docs/admin.md#semantic-lint`).
//!
//! `--format json` prints the same findings as one JSON document for tools.
//!
//! What it does not do: evaluate targeting against contexts (that is `flagpole explain`), or watch.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use flagpole_engine::load::Location;
use flagpole_engine::{Format, LoadError, LoadOptions, Warning, check_document};
use serde::Serialize;

/// How `flagpole validate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReportFormat {
    /// `FILE:LINE:COLUMN: error|warning: message` lines and a summary line per file.
    #[default]
    Text,
    /// One JSON object (`docs/admin.md#semantic-lint`).
    Json,
}

/// What validating one file found.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FileReport {
    file: String,
    /// Whether the daemon would load it.
    accepted: bool,
    /// Flags in an accepted file.
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<usize>,
    findings: Vec<Finding>,
    /// The text format's closing line.
    #[serde(skip)]
    summary: String,
    #[serde(skip)]
    keys: Vec<String>,
}

/// One problem.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Finding {
    /// `error` (the file is rejected) or `warning`.
    severity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<usize>,
    /// The flag concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    flag: Option<String>,
    /// A JSON pointer into the document.
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    message: String,
    /// The text format's line.
    #[serde(skip)]
    text: String,
}

impl Finding {
    fn new(severity: &'static str, at: Option<Location>, message: String) -> Finding {
        let at = at.filter(|at| at.line > 0);
        Finding {
            severity,
            line: at.map(|at| at.line),
            column: at.map(|at| at.column),
            flag: None,
            path: None,
            text: message.clone(),
            message,
        }
    }

    fn of(severity: &'static str, text: &str, warning: &Warning) -> Finding {
        let at = warning
            .flag
            .as_deref()
            .and_then(|flag| locate_key(text, flag));
        Finding {
            flag: warning.flag.clone(),
            path: Some(warning.path.clone()),
            text: warning.to_string(),
            ..Finding::new(severity, at, warning.message.clone())
        }
    }
}

/// A key defined by several files.
#[derive(Debug, Serialize)]
struct Duplicate {
    key: String,
    files: Vec<String>,
    winner: String,
}

/// Validates every file and writes the report to `out`. Returns whether every file was accepted.
pub fn validate_files(
    files: &[impl AsRef<Path>],
    strict: bool,
    out: &mut impl Write,
) -> io::Result<bool> {
    validate_files_as(files, strict, ReportFormat::Text, out)
}

/// [`validate_files`] in the given format.
pub fn validate_files_as(
    files: &[impl AsRef<Path>],
    strict: bool,
    format: ReportFormat,
    out: &mut impl Write,
) -> io::Result<bool> {
    let reports: Vec<FileReport> = files
        .iter()
        .map(|file| validate_file(file.as_ref(), strict))
        .collect();
    // Which file defines each key, in order: given several files, a later one wins a duplicated key, as a
    // later `--uri` source does.
    let mut defined: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for report in &reports {
        for key in &report.keys {
            defined.entry(key).or_default().push(&report.file);
        }
    }
    let duplicates: Vec<Duplicate> = defined
        .into_iter()
        .filter(|(_, files)| files.len() > 1)
        .map(|(key, files)| Duplicate {
            key: key.to_owned(),
            winner: files.last().map_or("", |f| f).to_owned(),
            files: files.into_iter().map(str::to_owned).collect(),
        })
        .collect();
    let all_ok = reports.iter().all(|r| r.accepted);
    match format {
        ReportFormat::Text => {
            for report in &reports {
                for finding in &report.findings {
                    let shown = match (finding.line, finding.column) {
                        (Some(line), Some(column)) => format!("{}:{line}:{column}", report.file),
                        _ => report.file.clone(),
                    };
                    writeln!(out, "{shown}: {}: {}", finding.severity, finding.text)?;
                }
                writeln!(out, "{}", report.summary)?;
            }
            for duplicate in &duplicates {
                writeln!(
                    out,
                    "warning: flag `{}` is defined by {}: {} wins (a later source wins)",
                    duplicate.key,
                    duplicate.files.join(", "),
                    duplicate.winner
                )?;
            }
        }
        ReportFormat::Json => {
            let report = serde_json::json!({
                "ok": all_ok,
                "files": reports,
                "duplicates": duplicates,
            });
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&report).map_err(io::Error::other)?
            )?;
        }
    }
    Ok(all_ok)
}

fn validate_file(path: &Path, strict: bool) -> FileReport {
    let shown = path.display().to_string();
    let mut report = FileReport {
        file: shown.clone(),
        accepted: false,
        flags: None,
        findings: Vec::new(),
        summary: String::new(),
        keys: Vec::new(),
    };
    let reject = |report: &mut FileReport, message: String, summary: String| {
        report.findings.push(Finding::new("error", None, message));
        report.summary = summary;
    };
    let Some(format) = Format::from_path(path) else {
        reject(
            &mut report,
            "unsupported file format (use .json, .yaml or .yml)".to_owned(),
            format!("{shown}: rejected"),
        );
        return report;
    };
    let bytes = match flagpole_engine::file::read_flag_file(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            reject(
                &mut report,
                format!("cannot read: {error}"),
                format!("{shown}: rejected"),
            );
            return report;
        }
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) if text.trim().is_empty() => {
            reject(
                &mut report,
                "the file is empty (the daemon rejects it)".to_owned(),
                format!("{shown}: rejected"),
            );
            return report;
        }
        Ok(text) => text,
        Err(error) => {
            reject(
                &mut report,
                format!("not UTF-8: {error}"),
                format!("{shown}: rejected"),
            );
            return report;
        }
    };
    match check_document(text, format, &LoadOptions { strict }) {
        Ok(loaded) => {
            let lint = flagpole_engine::lint::lint(&loaded.flags);
            for warning in by_position(text, &loaded.warnings)
                .into_iter()
                .chain(by_position(text, &loaded.notes))
                .chain(by_position(text, &lint))
            {
                report.findings.push(Finding::of("warning", text, warning));
            }
            report.accepted = true;
            report.flags = Some(loaded.flags.len());
            report.summary = format!(
                "{shown}: ok: {} flags, {} warnings",
                loaded.flags.len(),
                report.findings.len()
            );
            report.keys = loaded
                .flags
                .iter()
                .map(|flag| flag.key.to_string())
                .collect();
        }
        Err(errors) => {
            if let [LoadError::Schema { violations }] = errors.as_slice() {
                for violation in by_position(text, violations) {
                    report.findings.push(Finding::of("error", text, violation));
                }
                report.summary = format!(
                    "{shown}: rejected: {} schema violations (--strict)",
                    violations.len()
                );
                return report;
            }
            for error in &errors {
                report.findings.push(Finding::new(
                    "error",
                    load_error_location(error),
                    error.to_string(),
                ));
            }
            report.summary = match errors.len() {
                1 => format!("{shown}: rejected"),
                n => format!("{shown}: rejected: {n} errors"),
            };
        }
    }
    report
}

/// The warnings in document order (by the position of their flag; unlocated ones first, stable).
fn by_position<'w>(text: &str, warnings: &'w [Warning]) -> Vec<&'w Warning> {
    let mut sorted: Vec<(Option<(usize, usize)>, &Warning)> = warnings
        .iter()
        .map(|w| {
            (
                w.flag
                    .as_deref()
                    .and_then(|f| locate_key(text, f))
                    .map(|at| (at.line, at.column)),
                w,
            )
        })
        .collect();
    sorted.sort_by_key(|(at, _)| *at);
    sorted.into_iter().map(|(_, w)| w).collect()
}

/// The position a load error carries, if any.
fn load_error_location(error: &LoadError) -> Option<Location> {
    match error {
        LoadError::Syntax { line, column, .. } => Some(Location {
            line: *line,
            column: *column,
        }),
        LoadError::Malformed { at, .. }
        | LoadError::BadDefaultVariant { at, .. }
        | LoadError::Rule { at, .. } => Some(*at),
        _ => None,
    }
}

/// Where `key` is defined as an object key: the first `"key"` followed by `:` (JSON), or a line whose
/// first token is `key:` or `"key":` (YAML). Good enough to point at a flag's definition.
fn locate_key(text: &str, key: &str) -> Option<Location> {
    let quoted = format!("\"{key}\"");
    for (line_index, line) in text.lines().enumerate() {
        let mut from = 0;
        while let Some(found) = line[from..].find(&quoted) {
            let start = from + found;
            let after = line[start + quoted.len()..].trim_start();
            if after.starts_with(':') {
                return Some(Location {
                    line: line_index + 1,
                    column: line[..start].chars().count() + 1,
                });
            }
            from = start + quoted.len();
        }
        let trimmed = line.trim_start();
        if trimmed
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
        {
            let column = line.len() - trimmed.len();
            return Some(Location {
                line: line_index + 1,
                column: line[..column].chars().count() + 1,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_located_in_json_and_yaml() {
        let json = "{\n  \"flags\": {\n    \"my-flag\" : {}\n  }\n}";
        assert_eq!(
            locate_key(json, "my-flag"),
            Some(Location { line: 3, column: 5 })
        );
        let yaml = "flags:\n  my-flag:\n    state: ENABLED\n";
        assert_eq!(
            locate_key(yaml, "my-flag"),
            Some(Location { line: 2, column: 3 })
        );
        assert_eq!(locate_key(json, "absent"), None);
    }
}
