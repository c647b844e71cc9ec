//! `flagpole explain --flag KEY [--context JSON] [FILE… | --management-url URL]` (`docs/admin.md#explain`):
//! the answer an evaluation gives and the path its targeting took, from flag files (loaded and merged as
//! the daemon would, a later file winning a duplicated key) or from a running daemon's
//! `POST /api/v1/explain`. Printed as a tree for people (`--format text`) or as the API's JSON.
//!
//! The exit status is 0 when the flag was explained (whatever its answer), 1 otherwise.

use std::io::{self, Write};
use std::sync::Arc;

use flagpole_engine::{
    Context, EvalOptions, Format, FractionalAlgorithm, LoadOptions, Snapshot, SourceFlags, Value,
    parse_document,
};
use serde_json::json;

use crate::admin_client::{ClientError, call};
use crate::config::{ExplainArgs, OutputFormat};
use crate::eval::EvalConfig;
use crate::eval::explain::{ExplainInput, explain};

/// Why nothing could be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The arguments do not make a request.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or loaded.
    #[error("{file}: {reason}")]
    File {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The daemon could not be asked.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The daemon refused (its `error`).
    #[error("HTTP {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The daemon's message.
        message: String,
    },
    /// Writing the answer failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Explains and prints; `Ok(false)` when the flag is not found.
pub fn run(args: &ExplainArgs, out: &mut impl Write) -> Result<bool, ExplainError> {
    let context = match args.context.as_deref() {
        None => Context::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(context)) => context,
            Ok(other) => {
                return Err(ExplainError::Usage(format!(
                    "--context must be a JSON object, not {other}"
                )));
            }
            Err(error) => return Err(ExplainError::Usage(format!("--context: {error}"))),
        },
    };
    let explained = if args.files.is_empty() {
        from_daemon(args, context)?
    } else {
        from_files(args, context)?
    };
    let Some(explained) = explained else {
        writeln!(out, "flag `{}` not found", args.flag)?;
        return Ok(false);
    };
    match args.format {
        OutputFormat::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&explained).unwrap_or_default()
        )?,
        OutputFormat::Text => render(&explained, out)?,
    }
    Ok(true)
}

fn from_files(args: &ExplainArgs, context: Context) -> Result<Option<Value>, ExplainError> {
    if !args.headers.is_empty() {
        return Err(ExplainError::Usage(
            "--header needs a daemon's -H mappings: give --management-url instead of files".into(),
        ));
    }
    let fractional = match args.fractional_algorithm.as_str() {
        "v2" => FractionalAlgorithm::V2,
        "v3" => FractionalAlgorithm::V3,
        other => {
            return Err(ExplainError::Usage(format!(
                "--fractional-algorithm must be v2 or v3, not {other:?}"
            )));
        }
    };
    let mut sources = Vec::with_capacity(args.files.len());
    for path in &args.files {
        let fail = |reason: String| ExplainError::File {
            file: path.display().to_string(),
            reason,
        };
        let format = Format::from_path(path)
            .ok_or_else(|| fail("unsupported file format (use .json, .yaml or .yml)".into()))?;
        let bytes = flagpole_engine::file::read_flag_file(path).map_err(|e| fail(e.to_string()))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| fail(format!("not UTF-8: {e}")))?;
        let loaded = parse_document(text, format, &LoadOptions::default())
            .map_err(|e| fail(e.to_string()))?;
        sources.push(SourceFlags {
            source: Arc::from(path.display().to_string()),
            flags: loaded.flags,
        });
    }
    let snapshot = Snapshot::new(sources);
    let input = ExplainInput {
        flag_key: args.flag.clone(),
        context,
        headers: http::HeaderMap::new(),
        selector: selector(args)?,
    };
    let config = EvalConfig {
        fractional,
        ..EvalConfig::default()
    };
    let options = EvalOptions {
        fractional,
        ..EvalOptions::now()
    };
    Ok(explain(&snapshot, &config, &input, &options))
}

fn selector(args: &ExplainArgs) -> Result<flagpole_engine::Selector, ExplainError> {
    match args.selector.as_deref() {
        None => Ok(Default::default()),
        Some(text) => text
            .parse()
            .map_err(|e| ExplainError::Usage(format!("--selector: {e}"))),
    }
}

fn from_daemon(args: &ExplainArgs, context: Context) -> Result<Option<Value>, ExplainError> {
    selector(args)?;
    let mut headers = serde_json::Map::new();
    for header in &args.headers {
        let Some((name, value)) = header.split_once('=') else {
            return Err(ExplainError::Usage(format!(
                "--header {header:?} must be NAME=VALUE"
            )));
        };
        headers.insert(name.trim().to_owned(), json!(value));
    }
    let body = json!({
        "flagKey": args.flag,
        "context": context,
        "headers": headers,
        "selector": args.selector,
    });
    let (status, answer) = call(
        args.management_url.as_deref(),
        "POST",
        "/api/v1/explain",
        None,
        Some(&body.to_string()),
    )?;
    let parsed: Option<Value> = serde_json::from_slice(&answer).ok();
    match (status, parsed) {
        (200, Some(explained)) => Ok(Some(explained)),
        (404, _) => Ok(None),
        (status, parsed) => Err(ExplainError::Refused {
            status,
            message: parsed
                .as_ref()
                .and_then(|p| p["error"].as_str())
                .map_or_else(
                    || String::from_utf8_lossy(&answer).into_owned(),
                    str::to_owned,
                ),
        }),
    }
}

/// The explanation as text: the answer, the context, then the path as a tree.
fn render(explained: &Value, out: &mut impl Write) -> io::Result<()> {
    let text = |v: &Value| serde_json::to_string(v).unwrap_or_default();
    writeln!(
        out,
        "flag {} (source {}, flag set {})",
        explained["flagKey"].as_str().unwrap_or("?"),
        explained["source"].as_str().unwrap_or("?"),
        explained["flagSetId"].as_str().unwrap_or("-"),
    )?;
    let mut answer = format!(
        "answer: reason {}",
        explained["reason"].as_str().unwrap_or("?")
    );
    if let Some(variant) = explained["variant"].as_str() {
        answer.push_str(&format!(
            ", variant {variant:?}, value {}",
            text(&explained["value"])
        ));
    }
    if let Some(code) = explained["errorCode"].as_str() {
        answer.push_str(&format!(
            ", error {code}: {}",
            explained["errorMessage"].as_str().unwrap_or("")
        ));
    }
    writeln!(out, "{answer}")?;
    if explained["metadata"]["overridden"] == json!(true) {
        writeln!(
            out,
            "overridden by {} ({})",
            explained["metadata"]["overriddenBy"]
                .as_str()
                .unwrap_or("?"),
            explained["metadata"]["overrideReason"]
                .as_str()
                .unwrap_or("no reason given")
        )?;
    }
    let context = &explained["context"];
    writeln!(out, "context: {}", text(&context["evaluated"]))?;
    for (part, label) in [("static", "from -X"), ("fromHeaders", "from -H headers")] {
        if context[part].as_object().is_some_and(|m| !m.is_empty()) {
            writeln!(out, "  {label}: {}", text(&context[part]))?;
        }
    }
    let targeting = &explained["targeting"];
    if targeting["ran"] != json!(true) {
        writeln!(
            out,
            "targeting: not run ({})",
            targeting["why"].as_str().unwrap_or("?")
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "$flagd: flagKey {}, timestamp {}; fractional {}",
        text(&targeting["flagd"]["flagKey"]),
        targeting["flagd"]["timestamp"],
        targeting["fractionalAlgorithm"].as_str().unwrap_or("v2")
    )?;
    writeln!(out, "path:")?;
    render_step(&targeting["path"], "", "", out)
}

fn render_step(step: &Value, lead: &str, indent: &str, out: &mut impl Write) -> io::Result<()> {
    let text = |v: &Value| serde_json::to_string(v).unwrap_or_default();
    let mut line = format!("{lead}{}", step["op"].as_str().unwrap_or("?"));
    if let Some(rule) = step.get("rule") {
        line.push_str(&format!(" {}", text(rule)));
    }
    if let Some(refs) = step["ref"].as_array() {
        let names: Vec<&str> = refs.iter().filter_map(Value::as_str).collect();
        line.push_str(&format!(" [$ref {}]", names.join(", ")));
    }
    if step["evaluated"] == json!(false) {
        line.push_str("  (not evaluated)");
    } else if let Some(error) = step["error"].as_str() {
        line.push_str(&format!("  ✗ {error}"));
    } else if let Some(result) = step.get("result").filter(|_| step["op"] != "literal") {
        line.push_str(&format!(" → {}", text(result)));
        if let Some(truthy) = step["truthy"].as_bool() {
            line.push_str(if truthy { " (true)" } else { " (false)" });
        }
    }
    let detail = &step["detail"];
    match detail["kind"].as_str() {
        Some("branch") => match detail["taken"].as_u64() {
            Some(i) => line.push_str(&format!("  [takes operand {}]", i + 1)),
            None => line.push_str("  [no branch: null]"),
        },
        Some("reapplied") => line.push_str(&format!(
            "  [branch applied again as a rule: {}]",
            text(&detail["rule"])
        )),
        Some("var") if detail["found"] == json!(false) => {
            line.push_str("  [not in the context: default]");
        }
        Some("semVer") => line.push_str(&format!(
            "  [{} {} {}]",
            detail["version"].as_str().unwrap_or("invalid"),
            detail["operator"].as_str().unwrap_or("?"),
            detail["target"].as_str().unwrap_or("invalid")
        )),
        Some("fractional") => {
            line.push_str(&format!(
                "  [key {} ({}), {}]",
                text(&detail["bucketingKey"]),
                detail["keySource"].as_str().unwrap_or("?"),
                match detail["nullBecause"].as_str() {
                    Some(why) => why.to_owned(),
                    None => format!(
                        "hash {}, bucket {} of {}: {}",
                        detail["hash"],
                        detail["bucket"],
                        detail["totalWeight"],
                        detail["buckets"]
                            .as_array()
                            .map(|buckets| buckets
                                .iter()
                                .map(|b| format!(
                                    "{} [{}, {})",
                                    text(&b["variant"]),
                                    b["start"],
                                    b["end"]
                                ))
                                .collect::<Vec<_>>()
                                .join(" "))
                            .unwrap_or_default()
                    ),
                }
            ));
        }
        Some("perElement") => line.push_str("  [inner rule runs per element]"),
        _ => {}
    }
    if step["truncated"] == json!(true) {
        line.push_str("  (shortened)");
    }
    writeln!(out, "{line}")?;
    let children = step["children"].as_array().map_or(&[][..], Vec::as_slice);
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let (branch, next) = if last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        render_step(
            child,
            &format!("{indent}{branch}"),
            &format!("{indent}{next}"),
            out,
        )?;
    }
    Ok(())
}
