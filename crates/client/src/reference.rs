//! Docker-style image references: `host[:port]/repository[:tag][@digest]`.
//!
//! The host names the registry (`https://host[:port]`), and `host[:port]/repository` is the trust
//! GUN, exactly as the docker CLI forms both.

use std::fmt;
use std::str::FromStr;

use berth_oci::{Digest, RepoName, Tag};

use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` as written (the registry's address).
    pub registry: String,
    pub repo: RepoName,
    pub tag: Option<Tag>,
    pub digest: Option<Digest>,
}

fn invalid(input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidReference {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

/// Docker's rule: a first component is a host when it has a dot, a port, or is `localhost`
/// (or a bracketed IPv6 literal).
fn looks_like_host(c: &str) -> bool {
    c.contains('.') || c.contains(':') || c == "localhost" || c.starts_with('[')
}

impl Reference {
    /// Parses a reference that may omit the host, using `default_registry` then.
    pub fn parse_with_default(s: &str, default_registry: Option<&str>) -> Result<Self, Error> {
        let (rest, digest) = match s.rsplit_once('@') {
            Some((r, d)) => (
                r,
                Some(
                    d.parse::<Digest>()
                        .map_err(|e| invalid(s, e.message.clone()))?,
                ),
            ),
            None => (s, None),
        };
        // A tag's colon comes after the last slash; a port's colon comes before it.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                let tag = rest[at + 1..]
                    .parse::<Tag>()
                    .map_err(|e| invalid(s, e.message.clone()))?;
                (&rest[..at], Some(tag))
            }
            None => (rest, None),
        };
        let (registry, repo) = match name.split_once('/') {
            Some((first, repo)) if looks_like_host(first) => (first.to_owned(), repo),
            _ => match default_registry {
                Some(d) => (d.to_owned(), name),
                None => {
                    return Err(invalid(
                        s,
                        "no registry host (the first component must be host[:port])",
                    ));
                }
            },
        };
        if registry.is_empty() {
            return Err(invalid(s, "empty registry host"));
        }
        let repo = repo
            .parse::<RepoName>()
            .map_err(|e| invalid(s, e.message.clone()))?;
        Ok(Reference {
            registry,
            repo,
            tag,
            digest,
        })
    }

    /// `host[:port]/repository`: the trust GUN, as docker forms it.
    pub fn gun(&self) -> String {
        format!("{}/{}", self.registry, self.repo)
    }

    /// The same repository, pinned to `digest` (keeping the tag for naming the result).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// What to put in a manifest URL: the digest when there is one, else the tag, else `latest`
    /// (docker's default).
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_owned(),
        }
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Reference::parse_with_default(s, None)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repo)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_docker_style() {
        let r: Reference = "localhost:5000/team/app:v1".parse().unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repo.as_str(), "team/app");
        assert_eq!(r.tag.as_ref().unwrap().as_str(), "v1");
        assert_eq!(r.digest, None);
        assert_eq!(r.gun(), "localhost:5000/team/app");
        assert_eq!(r.to_string(), "localhost:5000/team/app:v1");

        let r: Reference = format!("reg.example.com/app@{D}").parse().unwrap();
        assert_eq!(r.registry, "reg.example.com");
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), D);

        let r: Reference = format!("127.0.0.1:1234/a/b/c:latest@{D}").parse().unwrap();
        assert_eq!(r.tag.as_ref().unwrap().as_str(), "latest");
        assert_eq!(r.digest.as_ref().unwrap().to_string(), D);
        assert_eq!(r.manifest_reference(), D);

        let r: Reference = "localhost/app".parse().unwrap();
        assert_eq!(
            (r.registry.as_str(), r.manifest_reference()),
            ("localhost", "latest".into())
        );
    }

    #[test]
    fn host_is_required_unless_defaulted() {
        assert!("team/app:v1".parse::<Reference>().is_err());
        let r = Reference::parse_with_default("team/app:v1", Some("localhost:5000")).unwrap();
        assert_eq!(r.to_string(), "localhost:5000/team/app:v1");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "localhost:5000/",
            "localhost:5000/Team/app",
            "localhost:5000/app:",
            "localhost:5000/app:-x",
            "localhost:5000/app@sha256:abc",
            "localhost:5000/app:v1@",
            "/app",
        ] {
            let e = bad.parse::<Reference>().unwrap_err();
            assert!(matches!(e, Error::InvalidReference { .. }), "{bad}: {e}");
        }
    }
}
