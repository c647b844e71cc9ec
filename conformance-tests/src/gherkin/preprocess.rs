//! Copies the testbed's feature files into one directory per mode, repairing what gherkin 0.16 (the parser
//! cucumber-rs 0.23 uses) cannot parse (`docs/conformance.md#how-it-works`): in table cells, `\u` is not a legal escape (so it
//! becomes `\\u`, keeping the text literal) and `\"` is written as a plain `"`.
//!
//! Files are found recursively; a file in a subdirectory is flattened to `sub__name.feature`, so that the
//! mode of every copy is the name of its parent directory. What it does not do: change any step text, tag or
//! example value beyond those two escapes.

use std::fs;
use std::path::{Path, PathBuf};

use super::Mode;

/// Writes `target/<mode>/<flat name>.feature` for every `.feature` under `source`, for each mode. Returns
/// how many files were found (0 is an error: a suite that runs nothing proves nothing).
pub fn prepare(source: &Path, target: &Path, modes: &[Mode]) -> std::io::Result<usize> {
    let mut files = Vec::new();
    collect(source, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no .feature files under {}", source.display()),
        ));
    }
    for mode in modes {
        let dir = target.join(mode.tag());
        fs::create_dir_all(&dir)?;
        for file in &files {
            let relative = file.strip_prefix(source).unwrap_or(file);
            let flat = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("__");
            let text = fs::read_to_string(file)?;
            fs::write(dir.join(flat), repair(&text))?;
        }
    }
    Ok(files.len())
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "feature") {
            files.push(path);
        }
    }
    Ok(())
}

/// Repairs the table rows of one feature file.
pub fn repair(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('|') {
            out.push_str(&line.replace("\\u", "\\\\u").replace("\\\"", "\""));
        } else {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::repair;

    #[test]
    fn table_escapes_are_repaired_and_other_lines_kept() {
        let text = "Given a \\u step\n  | A\\u0000B | {\\\"a\\\": 1} |\n";
        assert_eq!(
            repair(text),
            "Given a \\u step\n  | A\\\\u0000B | {\"a\": 1} |\n"
        );
    }
}
