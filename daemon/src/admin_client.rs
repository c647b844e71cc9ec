//! `flagpole override set | clear | list`: the admin API of a running daemon from the command line
//! (`docs/admin.md#overrides`).
//!
//! What it owns: turning the subcommand into one HTTP/1.1 request to `--management-url` (plain `http://`,
//! as the management port serves), with the bearer token of `--token-file`, and printing the answer. The
//! exit status is 0 for a 2xx answer and 1 otherwise (the daemon's `error` is printed on stderr).
//!
//! What it does not do: TLS (the management port has none) or retries.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{OverrideArgs, OverrideCommand};
use crate::protocols::admin::auth::MAX_TOKEN_FILE_BYTES;

/// The management URL when none is given.
pub const DEFAULT_MANAGEMENT_URL: &str = "http://localhost:8014";

/// How long the whole exchange may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer read, in bytes.
pub const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

/// Why the request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `--management-url` is not `http://HOST[:PORT]`.
    #[error("--management-url {0:?} must be http://HOST[:PORT]")]
    Url(String),
    /// `--token-file` cannot be read or holds no token.
    #[error("cannot read a token from {path}: {reason}")]
    Token {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The daemon could not be reached or did not answer HTTP.
    #[error("{url}: {source}")]
    Io {
        /// The management URL.
        url: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Runs the subcommand; `Ok(true)` when the daemon answered 2xx. The answer's JSON goes to `out`, its
/// `error` (when it failed) to `err`.
pub fn run(
    args: &OverrideArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<bool, ClientError> {
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    let (method, path, body) = match &args.action {
        OverrideCommand::List => ("GET", "/api/v1/overrides".to_owned(), None),
        OverrideCommand::Clear { key } => (
            "DELETE",
            format!("/api/v1/overrides/{}", crate::percent_encode(key)),
            None,
        ),
        OverrideCommand::Set {
            key,
            variant,
            disable,
            reason,
            ttl,
        } => {
            let mut body = match (variant, disable) {
                (Some(variant), false) => json!({"variant": variant}),
                _ => json!({"state": "DISABLED"}),
            };
            if let Some(reason) = reason {
                body["reason"] = json!(reason);
            }
            if let Some(ttl) = ttl {
                body["ttl"] = json!(ttl);
            }
            (
                "PUT",
                format!("/api/v1/overrides/{}", crate::percent_encode(key)),
                Some(body.to_string()),
            )
        }
    };
    let (status, answer) = call(
        args.management_url.as_deref(),
        method,
        &path,
        token.as_deref(),
        body.as_deref(),
    )?;
    let ok = (200..300).contains(&status);
    let parsed: Option<Value> = serde_json::from_slice(&answer).ok();
    let _ = match (&parsed, ok) {
        (Some(value), true) => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        (Some(value), false) => writeln!(
            err,
            "flagpole: HTTP {status}: {}",
            value["error"].as_str().unwrap_or("(no error message)")
        ),
        (None, _) => writeln!(
            if ok {
                out as &mut dyn Write
            } else {
                err as &mut dyn Write
            },
            "HTTP {status}: {}",
            String::from_utf8_lossy(&answer)
        ),
    };
    Ok(ok)
}

/// One request to the management port at `url` (default [`DEFAULT_MANAGEMENT_URL`]): (status, body).
pub(crate) fn call(
    url: Option<&str>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, Vec<u8>), ClientError> {
    let url = url.unwrap_or(DEFAULT_MANAGEMENT_URL);
    let authority = authority(url)?;
    exchange(&authority, method, path, token, body).map_err(|source| ClientError::Io {
        url: url.to_owned(),
        source,
    })
}

/// `HOST:PORT` of an `http://` URL (port 80 when absent).
fn authority(url: &str) -> Result<String, ClientError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::Url(url.to_owned()))?
        .trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(ClientError::Url(url.to_owned()));
    }
    let has_port = rest
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    Ok(if has_port {
        rest.to_owned()
    } else {
        format!("{rest}:80")
    })
}

/// The first token of a token file, read as the daemon reads `--admin-token-file`.
fn read_token(path: &Path) -> Result<String, ClientError> {
    let fail = |reason: String| ClientError::Token {
        path: path.display().to_string(),
        reason,
    };
    let bytes = flagpole_engine::file::read_regular_file(path, MAX_TOKEN_FILE_BYTES)
        .map_err(|error| fail(error.to_string()))?;
    crate::protocols::admin::auth::parse(&String::from_utf8_lossy(&bytes))
        .into_iter()
        .next()
        .map(|(_, token)| String::from_utf8_lossy(&token).into_owned())
        .ok_or_else(|| fail("the file holds no token".to_owned()))
}

/// One HTTP/1.1 exchange: (status, body).
fn exchange(
    authority: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut response = Vec::new();
    stream.take(MAX_ANSWER_BYTES).read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other("the answer is not HTTP"))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("the answer has no status"))?;
    let mut body = response[split + 4..].to_vec();
    if head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    }) {
        body = dechunk(&body);
    }
    Ok((status, body))
}

/// The payload of a chunked body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let end = (start + size).min(body.len());
        out.extend_from_slice(&body[start..end]);
        body = body.get(end + 2..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_keys() {
        assert_eq!(
            authority("http://localhost:8014").ok().as_deref(),
            Some("localhost:8014")
        );
        assert_eq!(
            authority("http://flags.internal/").ok().as_deref(),
            Some("flags.internal:80")
        );
        assert!(authority("https://x:1").is_err());
        assert!(authority("http://user@x:1").is_err());
        assert!(authority("http://x:1/path").is_err());
        assert_eq!(crate::percent_encode("a b/c"), "a%20b%2Fc");
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }
}
