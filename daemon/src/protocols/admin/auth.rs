//! Who may change things: the tokens of `--admin-token-file` (`docs/admin.md#authentication`).
//!
//! The file holds one token per line, optionally `name:token` (the name is the actor in logs; a line without
//! a name is `token-LINE`); blank lines and lines starting with `#` are skipped. Requests send
//! `Authorization: Bearer TOKEN`; every token is compared in constant time. The file is read again when its
//! modification time or size changes, so tokens rotate without a restart. Without the option every write
//! answers 403 saying how to turn writes on; a missing or wrong token is 401.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use http::HeaderMap;
use http::header::AUTHORIZATION;

/// The largest token file read, in bytes.
pub const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// Why a write is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `--admin-token-file`: writes are off.
    #[error(
        "the admin API is read-only: start flagpole with --admin-token-file PATH \
         (or FLAGPOLE_ADMIN_TOKEN_FILE) to allow changes"
    )]
    Disabled,
    /// No bearer token, or one the file does not hold.
    #[error("a valid `Authorization: Bearer TOKEN` from the admin token file is required")]
    Unauthorized,
    /// The token file cannot be read (nothing is allowed until it can).
    #[error("the admin token file cannot be read")]
    Unreadable,
}

/// The admin tokens, re-read when the file changes.
#[derive(Debug)]
pub struct AdminTokens {
    path: Option<PathBuf>,
    cached: Mutex<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    /// Modification time and size of the file when read.
    stamp: Option<(SystemTime, u64)>,
    /// `(name, token)` pairs.
    tokens: Vec<(String, Vec<u8>)>,
}

impl AdminTokens {
    /// The tokens of `path`; `None` turns writes off.
    pub fn new(path: Option<PathBuf>) -> Self {
        AdminTokens {
            path,
            cached: Mutex::new(Cached::default()),
        }
    }

    /// The actor (the token's name) of a request allowed to write.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<String, AuthError> {
        let Some(path) = &self.path else {
            return Err(AuthError::Disabled);
        };
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(AuthError::Unauthorized)?;
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        let stamp = std::fs::metadata(path)
            .ok()
            .and_then(|meta| Some((meta.modified().ok()?, meta.len())));
        if stamp.is_none() || stamp != cached.stamp {
            match flagpole_engine::file::read_regular_file(path, MAX_TOKEN_FILE_BYTES) {
                Ok(bytes) => {
                    cached.tokens = parse(&String::from_utf8_lossy(&bytes));
                    cached.stamp = stamp;
                }
                Err(error) => {
                    tracing::error!(file = %path.display(), %error, "cannot read the admin token file");
                    return Err(AuthError::Unreadable);
                }
            }
        }
        // Every token is compared, so the time taken does not tell which one (or whether one) matched.
        let mut actor = None;
        for (name, token) in &cached.tokens {
            if constant_time_eq(token, presented.as_bytes()) && actor.is_none() {
                actor = Some(name.clone());
            }
        }
        actor.ok_or(AuthError::Unauthorized)
    }
}

/// The `(name, token)` pairs of a token file (also read by `flagpole override --token-file`).
pub(crate) fn parse(text: &str) -> Vec<(String, Vec<u8>)> {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let (name, token) = match line.split_once(':') {
                Some((name, token)) if !name.trim().is_empty() => {
                    (name.trim().to_owned(), token.trim())
                }
                _ => (format!("token-{}", index + 1), line),
            };
            (!token.is_empty()).then(|| (name, token.as_bytes().to_vec()))
        })
        .collect()
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for (i, &byte) in a.iter().enumerate() {
        difference |= usize::from(byte ^ b.get(i).copied().unwrap_or(0));
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        headers
    }

    #[test]
    fn names_tokens_and_comments() {
        assert_eq!(
            parse("# ops\n\noncall: s3cret\nplain-token\n :x\n"),
            vec![
                ("oncall".to_owned(), b"s3cret".to_vec()),
                ("token-4".to_owned(), b"plain-token".to_vec()),
                ("token-5".to_owned(), b":x".to_vec()),
            ]
        );
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn tokens_authorize_and_the_file_is_reread_when_it_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens");
        std::fs::write(&path, "oncall:first\n").expect("write");
        let tokens = AdminTokens::new(Some(path.clone()));
        assert_eq!(tokens.authorize(&bearer("first")), Ok("oncall".to_owned()));
        assert_eq!(
            tokens.authorize(&bearer("wrong")),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(
            tokens.authorize(&HeaderMap::new()),
            Err(AuthError::Unauthorized)
        );
        // Rotated: a different size, so a new stamp even within the same second.
        std::fs::write(&path, "oncall:second-token\n").expect("write");
        assert_eq!(
            tokens.authorize(&bearer("first")),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(
            tokens.authorize(&bearer("second-token")),
            Ok("oncall".to_owned())
        );
        assert_eq!(
            AdminTokens::new(None).authorize(&bearer("x")),
            Err(AuthError::Disabled)
        );
        // A token file over the limit (or gone) allows nothing.
        std::fs::write(&path, "x".repeat(MAX_TOKEN_FILE_BYTES as usize + 1)).expect("write");
        assert_eq!(
            tokens.authorize(&bearer("second-token")),
            Err(AuthError::Unreadable)
        );
    }
}
