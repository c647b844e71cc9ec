//! flagd's `sem_ver` operator (`core/pkg/evaluator/semver.go`) over the rules of Go's
//! `golang.org/x/mod/semver`: a `v` is added (a leading `V` becomes `v`), `v1` and `v1.2` are valid
//! shorthands for `v1.0.0` and `v1.2.0`, build metadata is ignored, prereleases sort below releases,
//! and `^` / `~` compare only the major / major.minor (no lower bound). Non-strings are stringified with
//! Go's `%v`. Anything invalid gives null, never false.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::value::{Kind, format_v};

/// A `sem_ver` comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SemOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Major,
    Minor,
}

impl SemOp {
    pub(crate) fn parse(s: &str) -> Option<SemOp> {
        Some(match s {
            "=" => SemOp::Eq,
            "!=" => SemOp::Ne,
            "<" => SemOp::Lt,
            "<=" => SemOp::Le,
            ">" => SemOp::Gt,
            ">=" => SemOp::Ge,
            "^" => SemOp::Major,
            "~" => SemOp::Minor,
            _ => return None,
        })
    }

    pub(crate) fn compare(self, a: &Version<'_>, b: &Version<'_>) -> bool {
        match self {
            SemOp::Eq => compare(a, b) == Ordering::Equal,
            SemOp::Ne => compare(a, b) != Ordering::Equal,
            SemOp::Lt => compare(a, b) == Ordering::Less,
            SemOp::Le => compare(a, b) != Ordering::Greater,
            SemOp::Gt => compare(a, b) == Ordering::Greater,
            SemOp::Ge => compare(a, b) != Ordering::Less,
            SemOp::Major => bytes_eq(a.major, b.major),
            SemOp::Minor => bytes_eq(a.major, b.major) && bytes_eq(a.minor, b.minor),
        }
    }
}

/// A parsed version; every field borrows from the text (shorthand parts are `"0"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Version<'s> {
    major: &'s str,
    minor: &'s str,
    patch: &'s str,
    /// Including the leading `-`; empty for a release.
    prerelease: &'s str,
}

impl std::fmt::Display for Version<'_> {
    /// `MAJOR.MINOR.PATCH` and the prerelease with its `-` (build metadata is not kept).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}{}",
            self.major, self.minor, self.patch, self.prerelease
        )
    }
}

/// A version parsed once (a constant `sem_ver` target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnedVersion {
    major: Box<str>,
    minor: Box<str>,
    patch: Box<str>,
    prerelease: Box<str>,
}

impl OwnedVersion {
    /// Parses a normalised body (see [`body`]); `None` when invalid.
    pub(crate) fn parse(body: &str) -> Option<OwnedVersion> {
        let v = parse(body)?;
        Some(OwnedVersion {
            major: v.major.into(),
            minor: v.minor.into(),
            patch: v.patch.into(),
            prerelease: v.prerelease.into(),
        })
    }

    pub(crate) fn view(&self) -> Version<'_> {
        Version {
            major: &self.major,
            minor: &self.minor,
            patch: &self.patch,
            prerelease: &self.prerelease,
        }
    }
}

/// `fmt.Sprintf("%v", v)` for the operand (strings unchanged).
pub(crate) fn text<'v>(k: Kind<'v, '_>) -> Cow<'v, str> {
    match k {
        Kind::Str(s) => Cow::Borrowed(s),
        Kind::Num(n) => Cow::Owned(format_v(n)),
        Kind::Int(i) => Cow::Owned(i.to_string()),
        Kind::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        Kind::Null => Cow::Borrowed("<nil>"),
        // Go prints `[...]` / `map[...]`: never a valid version.
        Kind::Arr(_) => Cow::Borrowed("[]"),
        Kind::Obj(_) => Cow::Borrowed("map[]"),
    }
}

/// flagd's `normalizeVersion` without the allocation: the text after the (added or normalised) `v`.
pub(crate) fn body(text: &str) -> &str {
    text.strip_prefix('v')
        .or_else(|| text.strip_prefix('V'))
        .unwrap_or(text)
}

/// The normalised body of a constant operand.
pub(crate) fn normalize(k: Kind<'_, '_>) -> Option<String> {
    Some(body(&text(k)).to_owned())
}

/// `semver.parse` of `"v" + body`.
pub(crate) fn parse(body: &str) -> Option<Version<'_>> {
    let (major, rest) = parse_int(body)?;
    if rest.is_empty() {
        return Some(Version {
            major,
            minor: "0",
            patch: "0",
            prerelease: "",
        });
    }
    let rest = rest.strip_prefix('.')?;
    let (minor, rest) = parse_int(rest)?;
    if rest.is_empty() {
        return Some(Version {
            major,
            minor,
            patch: "0",
            prerelease: "",
        });
    }
    let rest = rest.strip_prefix('.')?;
    let (patch, mut rest) = parse_int(rest)?;
    let mut prerelease = "";
    if rest.starts_with('-') {
        let end = rest.find('+').unwrap_or(rest.len());
        prerelease = &rest[..end];
        if !valid_idents(&prerelease[1..], true) {
            return None;
        }
        rest = &rest[end..];
    }
    if let Some(build) = rest.strip_prefix('+') {
        if !valid_idents(build, false) {
            return None;
        }
        rest = "";
    }
    rest.is_empty().then_some(Version {
        major,
        minor,
        patch,
        prerelease,
    })
}

fn parse_int(s: &str) -> Option<(&str, &str)> {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    let num = &s[..end];
    (end > 0 && !is_bad_num(num)).then_some((num, &s[end..]))
}

fn is_bad_num(s: &str) -> bool {
    s.len() > 1 && s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit())
}

fn valid_idents(s: &str, prerelease: bool) -> bool {
    s.split('.').all(|id| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !(prerelease && is_bad_num(id))
    })
}

/// Bytewise order of short strings (an inline loop: `memcmp` calls dominate at these lengths).
fn bytes_cmp(a: &str, b: &str) -> Ordering {
    a.bytes().cmp(b.bytes())
}

fn bytes_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

fn compare_int(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| bytes_cmp(a, b))
}

fn compare(a: &Version<'_>, b: &Version<'_>) -> Ordering {
    compare_int(a.major, b.major)
        .then_with(|| compare_int(a.minor, b.minor))
        .then_with(|| compare_int(a.patch, b.patch))
        .then_with(|| compare_prerelease(a.prerelease, b.prerelease))
}

fn compare_prerelease(x: &str, y: &str) -> Ordering {
    if bytes_eq(x, y) {
        return Ordering::Equal;
    }
    if x.is_empty() {
        return Ordering::Greater;
    }
    if y.is_empty() {
        return Ordering::Less;
    }
    let mut xs = x[1..].split('.');
    let mut ys = y[1..].split('.');
    loop {
        match (xs.next(), ys.next()) {
            (Some(dx), Some(dy)) => {
                if bytes_eq(dx, dy) {
                    continue;
                }
                let (nx, ny) = (is_num(dx), is_num(dy));
                if nx != ny {
                    return if nx {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    };
                }
                if nx && dx.len() != dy.len() {
                    return dx.len().cmp(&dy.len());
                }
                return bytes_cmp(dx, dy);
            }
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (None, None) => return Ordering::Equal,
        }
    }
}

fn is_num(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, op: &str, b: &str) -> Option<bool> {
        let (a, b) = (parse(body(a))?, parse(body(b))?);
        Some(SemOp::parse(op)?.compare(&a, &b))
    }

    #[test]
    fn go_semver_rules() {
        assert_eq!(cmp("1.0.0", "=", "v1.0.0"), Some(true));
        assert_eq!(cmp("V1.2", "=", "1.2.0"), Some(true));
        assert_eq!(cmp("1", "<", "1.0.1"), Some(true));
        assert_eq!(cmp("1.0.0+a", "=", "1.0.0+b"), Some(true));
        assert_eq!(cmp("2.0.0-alpha", "<", "2.0.0"), Some(true));
        assert_eq!(cmp("1.0.0-alpha.2", "<", "1.0.0-alpha.10"), Some(true));
        assert_eq!(cmp("1.0.0-alpha", "<", "1.0.0-alpha.1"), Some(true));
        assert_eq!(cmp("1.0.0-1", "<", "1.0.0-a"), Some(true));
        assert_eq!(cmp("1.0.0", "^", "1.5.0"), Some(true));
        assert_eq!(cmp("1.4.9", "~", "1.4.0"), Some(true));
        assert_eq!(cmp("1.4.9", "~", "1.5.0"), Some(false));
        assert_eq!(cmp("10.0.0", ">", "9.0.0"), Some(true));
        assert_eq!(cmp("2.0.0.0", "=", "2.0.0"), None);
        assert_eq!(cmp("01.0.0", "=", "1.0.0"), None);
        assert_eq!(cmp("1-alpha", "=", "1.0.0"), None);
        assert_eq!(cmp("1.0.0-01", "=", "1.0.0"), None);
        assert_eq!(cmp("1.0.0", "===", "1.0.0"), None);
        assert_eq!(cmp("vv1.0.0", "=", "1.0.0"), None);
    }
}
