//! A document's text: its format, parsing it (JSON, or YAML converted to JSON) within the nesting limit,
//! and finding a key or a flag in the text again so that errors carry a line and a column.

use serde_json::{Map, Value};

use super::error::{LoadError, Location};
use super::limits::MAX_NESTING_DEPTH;

/// The syntax of a flag document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// YAML (converted to the same model).
    Yaml,
}

impl Format {
    /// The format flagd infers from a file name: `.json`, `.yaml`, `.yml`; anything else is unsupported.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

pub(super) fn parse_json(text: &str) -> Result<Value, LoadError> {
    serde_json::from_str(text).map_err(|e| LoadError::Syntax {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })
}

/// serde_json appends " at line L column C" to its messages; the error carries them as fields already.
pub(super) fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

pub(super) fn parse_yaml(text: &str) -> Result<Value, LoadError> {
    // libyaml's flow-collection parsing is quadratic in nesting depth (100,000 `[` take minutes), and its
    // own recursion limit only applies afterwards; so measure flow nesting first.
    if yaml_flow_depth_exceeds(text, MAX_NESTING_DEPTH) {
        return Err(LoadError::TooDeep);
    }
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        LoadError::Syntax {
            line,
            column,
            message: strip_position(&e.to_string()),
        }
    })?;
    yaml_to_json(yaml, 1)
}

/// True when `[`/`{` outside quotes and comments outnumber their closers by more than `limit` at some point.
/// (Brackets inside plain or block scalars count too, so a document with more than `limit` unclosed brackets in
/// unquoted text is rejected; no flag document looks like that.)
pub(super) fn yaml_flow_depth_exceeds(text: &str, limit: usize) -> bool {
    let mut depth = 0usize;
    let mut chars = text.chars();
    let mut previous = '\n';
    while let Some(c) = chars.next() {
        match c {
            '[' | '{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            '#' if previous.is_whitespace() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '\'' if !previous.is_alphanumeric() => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                }
            }
            _ => {}
        }
        previous = c;
    }
    false
}

/// Converts YAML to JSON the way flagd does (`sigs.k8s.io/yaml`): scalar keys become strings, tags are
/// dropped. A float that JSON cannot represent (NaN, infinity) is a syntax error.
pub(super) fn yaml_to_json(value: serde_yaml_ng::Value, depth: usize) -> Result<Value, LoadError> {
    use serde_yaml_ng::Value as Y;
    if depth > MAX_NESTING_DEPTH {
        return Err(LoadError::TooDeep);
    }
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| LoadError::Syntax {
                        line: 0,
                        column: 0,
                        message: format!("{f} cannot be represented in JSON"),
                    })?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(|v| yaml_to_json(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut map = Map::new();
            for (k, v) in mapping {
                let key = match k {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    Y::Null => "null".to_owned(),
                    _ => {
                        return Err(LoadError::Malformed {
                            path: String::new(),
                            message: "a YAML mapping key must be a scalar".into(),
                            at: Location::default(),
                        });
                    }
                };
                map.insert(key, yaml_to_json(v, depth + 1)?);
            }
            Value::Object(map)
        }
        Y::Tagged(tagged) => yaml_to_json(tagged.value, depth)?,
    })
}

pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Finds where things are defined in the text, cheaply and approximately (only used for error messages).
pub(super) struct Locator<'t> {
    pub(super) text: &'t str,
    pub(super) format: Format,
}

impl Locator<'_> {
    /// The first place `key` appears as an object key.
    pub(super) fn find_key(&self, key: &str) -> Location {
        self.find_key_from(key, 0)
            .map(|i| self.location(i))
            .unwrap_or_default()
    }

    /// The definition of flag `key`: the key in the map form, the `"key": "<key>"` entry in the array form.
    pub(super) fn find_flag(&self, key: &str) -> Location {
        let start = self.find_key_from("flags", 0).unwrap_or(0);
        if let Some(i) = self.find_key_from(key, start) {
            return self.location(i);
        }
        let quoted = serde_json::to_string(key).unwrap_or_default();
        let mut from = start;
        while let Some(i) = self.find_key_from("key", from) {
            let rest = self.text[i..].trim_start_matches(|c: char| c != ':');
            let rest = rest.get(1..).unwrap_or("").trim_start();
            if rest.starts_with(&quoted) || (self.format == Format::Yaml && rest.starts_with(key)) {
                return self.location(i);
            }
            from = i + 1;
        }
        Location::default()
    }

    /// Byte offset of `key` written as an object key (quoted, or bare in YAML) at or after `from`.
    pub(super) fn find_key_from(&self, key: &str, from: usize) -> Option<usize> {
        let text = self.text.get(from..)?;
        let quoted = serde_json::to_string(key).ok()?;
        let mut best = find_before_colon(text, &quoted, false);
        if self.format == Format::Yaml {
            best = match (best, find_before_colon(text, key, true)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        best.map(|i| from + i)
    }

    pub(super) fn location(&self, offset: usize) -> Location {
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        Location { line, column }
    }
}

/// The first occurrence of `pattern` followed by optional blanks and `:`; a `bare` pattern must also start
/// a YAML key (preceded by a blank, a newline or `-`).
pub(super) fn find_before_colon(text: &str, pattern: &str, bare: bool) -> Option<usize> {
    if pattern.is_empty() {
        return None;
    }
    let mut offset = 0;
    while let Some(i) = text[offset..].find(pattern) {
        let at = offset + i;
        let after = text[at + pattern.len()..].trim_start_matches([' ', '\t']);
        let before_ok = !bare
            || text[..at]
                .chars()
                .next_back()
                .is_none_or(|c| matches!(c, ' ' | '\n' | '-'));
        if after.starts_with(':') && before_ok {
            return Some(at);
        }
        offset = at + pattern.len();
    }
    None
}
