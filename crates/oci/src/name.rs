//! Repository names and tags, validated against the distribution spec grammar.
//!
//! A validated name contains only `[a-z0-9._/-]` with no empty, `.` or `..` component, so it can
//! never escape a directory or inject into a URL path.

// Request input is parsed here: a malformed value must be an error, never a panic.
#![warn(clippy::unwrap_used, clippy::indexing_slicing)]

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::{Error, ErrorCode};

/// Longest repository name we accept; clients cap `host[:port]/name` at 255 characters.
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`. Every separator run (one `.`, one
/// or two `_`, or any number of `-`) must sit between alphanumerics, so runs never mix (`a_-b`).
fn valid_component(c: &str) -> bool {
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut bytes = c.as_bytes().iter().copied().peekable();
    loop {
        // A run of alphanumerics, at least one.
        let mut seen = false;
        while let Some(&b) = bytes.peek() {
            if !alnum(b) {
                break;
            }
            seen = true;
            bytes.next();
        }
        if !seen {
            return false;
        }
        let Some(sep) = bytes.next() else {
            return true;
        };
        // The separator run; the next byte must start the next alphanumeric run.
        let mut run = 1usize;
        while bytes.peek() == Some(&sep) {
            run = run.saturating_add(1);
            bytes.next();
        }
        let ok = match sep {
            b'.' => run == 1,
            b'_' => run <= 2,
            b'-' => true,
            _ => false,
        };
        if !ok {
            return false;
        }
    }
}

impl FromStr for RepoName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.is_empty() || s.len() > MAX_NAME_LEN {
            return Err(Error::new(
                ErrorCode::NameInvalid,
                format!("repository name must be 1 to {MAX_NAME_LEN} characters"),
            ));
        }
        if !s.split('/').all(valid_component) {
            return Err(Error::new(
                ErrorCode::NameInvalid,
                format!(
                    "invalid repository name {s:?}: components are lowercase letters and digits \
                     joined by '.', '_', '__' or dashes, separated by '/'"
                ),
            ));
        }
        Ok(RepoName(s.to_owned()))
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = Error;

    /// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`
    fn from_str(s: &str) -> Result<Self, Error> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_');
        let rest_ok = b
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
        if !first_ok || !rest_ok || b.len() > MAX_TAG_LEN {
            return Err(Error::new(
                ErrorCode::TagInvalid,
                format!(
                    "invalid tag {s:?}: 1 to 128 of [A-Za-z0-9._-], not starting with '.' or '-'"
                ),
            ));
        }
        Ok(Tag(s.to_owned()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `<reference>` of a manifest URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagOrDigest {
    Tag(Tag),
    Digest(Digest),
}

impl FromStr for TagOrDigest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.contains(':') {
            Ok(TagOrDigest::Digest(s.parse()?))
        } else {
            Ok(TagOrDigest::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for TagOrDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagOrDigest::Tag(t) => t.fmt(f),
            TagOrDigest::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in [
            "a",
            "library/ubuntu",
            "a-b/c__d/e.f",
            "a---b",
            "a.b_c__d-e--f",
            "x/blobs/y",
            "0/1/2",
        ] {
            assert!(good.parse::<RepoName>().is_ok(), "{good}");
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            "A",
            "a//b",
            "/a",
            "a/",
            "a/../b",
            "..",
            "a/./b",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "a_",
            "a.",
            "a b",
            "a%2fb",
            "a_-b",
            "a.-b",
            "a-.b",
            "a._b",
            "a-__-b",
            "a__.b",
            "a-_b",
            "x/a_-b/y",
            "é",
            long.as_str(),
        ] {
            let e = bad.parse::<RepoName>().unwrap_err();
            assert_eq!(e.code, ErrorCode::NameInvalid, "{bad}");
        }
    }

    #[test]
    fn tags() {
        let max = "a".repeat(128);
        for good in ["latest", "_x", "v1.2.3-rc_1", "A", max.as_str()] {
            assert!(good.parse::<Tag>().is_ok(), "{good}");
        }
        let long = "a".repeat(129);
        for bad in ["", "-x", ".x", "a/b", "a:b", "a b", long.as_str()] {
            assert_eq!(
                bad.parse::<Tag>().unwrap_err().code,
                ErrorCode::TagInvalid,
                "{bad}"
            );
        }
    }

    #[test]
    fn reference_kinds() {
        assert!(matches!(
            "v1".parse::<TagOrDigest>(),
            Ok(TagOrDigest::Tag(_))
        ));
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(
            d.parse::<TagOrDigest>(),
            Ok(TagOrDigest::Digest(_))
        ));
        assert_eq!(
            "sha256:zz".parse::<TagOrDigest>().unwrap_err().code,
            ErrorCode::DigestInvalid
        );
    }
}
