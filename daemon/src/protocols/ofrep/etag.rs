//! Entity tags for bulk evaluation and the configuration endpoint (beyond flagd 0.16).
//!
//! The tag is a hash of the exact response body. Why the body and not, say, the snapshot generation plus a
//! hash of the context: the body is the only input that captures *everything* that can change a result —
//! the selected flags and their metadata, the request context, `-X`/`-H` values, and targeting that reads
//! `$flagd.timestamp` (a time-dependent rule changes its answer with no flag change at all). A tag derived from
//! the body changes exactly when the answer does, never more often (an unrelated flag-file edit that leaves
//! this client's answers alone keeps its tag) and never less. The cost is evaluating before answering 304,
//! which is the same work as answering 200 minus the transfer; flagd#2036 chose the same approach.

use http::HeaderMap;
use http::header::IF_NONE_MATCH;
use sha1::{Digest, Sha1};

/// The strong entity tag of `body`: a quoted hex SHA-1 (collision resistance is not a security property
/// here; the tag only has to change when the body does).
pub fn etag(body: &[u8]) -> String {
    let digest = Sha1::digest(body);
    let mut tag = String::with_capacity(2 + 2 * digest.len());
    tag.push('"');
    for byte in digest {
        tag.push(char::from(HEX[usize::from(byte >> 4)]));
        tag.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    tag.push('"');
    tag
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `If-None-Match` matches `tag` (RFC 9110 13.1.2: weak comparison, `*` matches any current
/// representation, several tags separated by commas, possibly in several header lines).
pub fn not_modified(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn tags_are_quoted_hashes_that_follow_the_body() {
        let a = etag(b"{}");
        assert!(a.starts_with('"') && a.ends_with('"') && a.len() == 42);
        assert_eq!(a, etag(b"{}"));
        assert_ne!(a, etag(b"{ }"));
    }

    #[test]
    fn if_none_match_lists_weak_tags_and_star() {
        let tag = etag(b"x");
        let mut headers = HeaderMap::new();
        assert!(!not_modified(&headers, &tag));
        headers.insert(IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!not_modified(&headers, &tag));
        headers.append(
            IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"a\", W/{tag}")).unwrap(),
        );
        assert!(not_modified(&headers, &tag));
        let mut star = HeaderMap::new();
        star.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&star, &tag));
    }
}
