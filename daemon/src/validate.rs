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
//! What it does not do: evaluate targeting against contexts, or watch.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use flagpole_engine::load::Location;
use flagpole_engine::{Format, LoadError, LoadOptions, Warning, check_document};

/// Validates every file and writes the report to `out`. Returns whether every file was accepted.
pub fn validate_files(
    files: &[impl AsRef<Path>],
    strict: bool,
    out: &mut impl Write,
) -> io::Result<bool> {
    let mut all_ok = true;
    // Which file defines each key, in order: given several files, a later one wins a duplicated key, as a
    // later `--uri` source does.
    let mut defined: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        let mut keys = Vec::new();
        all_ok &= validate_file(file.as_ref(), strict, out, &mut keys)?;
        for key in keys {
            defined
                .entry(key)
                .or_default()
                .push(file.as_ref().display().to_string());
        }
    }
    for (key, files) in defined.iter().filter(|(_, files)| files.len() > 1) {
        let winner = files.last().map_or("", String::as_str);
        writeln!(
            out,
            "warning: flag `{key}` is defined by {}: {winner} wins (a later source wins)",
            files.join(", ")
        )?;
    }
    Ok(all_ok)
}

fn validate_file(
    path: &Path,
    strict: bool,
    out: &mut impl Write,
    keys: &mut Vec<String>,
) -> io::Result<bool> {
    let shown = path.display();
    let Some(format) = Format::from_path(path) else {
        writeln!(
            out,
            "{shown}: error: unsupported file format (use .json, .yaml or .yml)"
        )?;
        return Ok(false);
    };
    let bytes = match flagpole_engine::file::read_flag_file(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            writeln!(out, "{shown}: error: cannot read: {error}")?;
            writeln!(out, "{shown}: rejected")?;
            return Ok(false);
        }
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) if text.trim().is_empty() => {
            writeln!(
                out,
                "{shown}: error: the file is empty (the daemon rejects it)"
            )?;
            writeln!(out, "{shown}: rejected")?;
            return Ok(false);
        }
        Ok(text) => text,
        Err(error) => {
            writeln!(out, "{shown}: error: not UTF-8: {error}")?;
            writeln!(out, "{shown}: rejected")?;
            return Ok(false);
        }
    };
    match check_document(text, format, &LoadOptions { strict }) {
        Ok(loaded) => {
            for warning in by_position(text, &loaded.warnings) {
                report_warning(out, path, text, "warning", warning)?;
            }
            let lint = flagpole_engine::lint::lint(&loaded.flags);
            for note in by_position(text, &loaded.notes) {
                report_warning(out, path, text, "warning", note)?;
            }
            for finding in by_position(text, &lint) {
                report_warning(out, path, text, "warning", finding)?;
            }
            writeln!(
                out,
                "{shown}: ok: {} flags, {} warnings",
                loaded.flags.len(),
                loaded.warnings.len() + loaded.notes.len() + lint.len()
            )?;
            keys.extend(loaded.flags.iter().map(|flag| flag.key.to_string()));
            Ok(true)
        }
        Err(errors) => {
            if let [LoadError::Schema { violations }] = errors.as_slice() {
                for violation in by_position(text, violations) {
                    report_warning(out, path, text, "error", violation)?;
                }
                writeln!(
                    out,
                    "{shown}: rejected: {} schema violations (--strict)",
                    violations.len()
                )?;
                return Ok(false);
            }
            for error in &errors {
                let position = load_error_location(error);
                writeln!(out, "{}: error: {error}", prefix(path, position))?;
            }
            match errors.len() {
                1 => writeln!(out, "{shown}: rejected")?,
                n => writeln!(out, "{shown}: rejected: {n} errors")?,
            }
            Ok(false)
        }
    }
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

fn report_warning(
    out: &mut impl Write,
    path: &Path,
    text: &str,
    level: &str,
    warning: &Warning,
) -> io::Result<()> {
    let position = warning
        .flag
        .as_deref()
        .and_then(|flag| locate_key(text, flag));
    writeln!(out, "{}: {level}: {warning}", prefix(path, position))
}

/// `FILE:LINE:COLUMN` when the position is known, else `FILE`.
fn prefix(path: &Path, position: Option<Location>) -> String {
    match position {
        Some(at) if at.line > 0 => format!("{}:{}:{}", path.display(), at.line, at.column),
        _ => path.display().to_string(),
    }
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
