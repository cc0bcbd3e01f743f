//! Role names: the four base roles and `targets/<x>[/<y>...]` delegations.

use crate::Error;

/// Notary caps role names below this length.
pub const MAX_ROLE_NAME_LEN: usize = 255;

/// A validated role name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RoleName {
    Root,
    Targets,
    Snapshot,
    Timestamp,
    /// `targets/...`: lower-case letters, digits, `-`, `_` and `/` separators, path-clean.
    Delegation(String),
}

impl RoleName {
    /// Parses a role name with Notary's rules: a base role, or `targets/` followed by
    /// `[-a-z0-9_/]+` that is path-clean (no empty, `.` or `..` segments, no trailing `/`)
    /// and shorter than 256 characters.
    pub fn parse(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "root" => RoleName::Root,
            "targets" => RoleName::Targets,
            "snapshot" => RoleName::Snapshot,
            "timestamp" => RoleName::Timestamp,
            _ => {
                let invalid = || Error::InvalidRole(s.to_owned());
                let rest = s.strip_prefix("targets/").ok_or_else(invalid)?;
                if s.len() > MAX_ROLE_NAME_LEN
                    || !rest
                        .bytes()
                        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'/'))
                    || rest.split('/').any(|seg| seg.is_empty())
                {
                    return Err(invalid());
                }
                RoleName::Delegation(s.to_owned())
            }
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            RoleName::Root => "root",
            RoleName::Targets => "targets",
            RoleName::Snapshot => "snapshot",
            RoleName::Timestamp => "timestamp",
            RoleName::Delegation(s) => s,
        }
    }

    /// `targets` and every delegation: the roles with `_type` `"Targets"`.
    pub fn is_targets_like(&self) -> bool {
        matches!(self, RoleName::Targets | RoleName::Delegation(_))
    }

    /// The role that delegates to this one (`path.Dir` of the name), for delegations.
    pub fn parent(&self) -> Option<RoleName> {
        match self {
            RoleName::Delegation(s) => {
                let (parent, _) = s.rsplit_once('/')?;
                RoleName::parse(parent).ok()
            }
            _ => None,
        }
    }

    /// Number of path segments (`targets` = 1, `targets/a` = 2); updates are validated
    /// shallowest first.
    pub fn depth(&self) -> usize {
        self.as_str().split('/').count()
    }

    /// This role and all its ancestors up to `targets`, nearest first.
    pub fn ancestors(&self) -> Vec<RoleName> {
        let mut out = Vec::new();
        let mut cur = self.parent();
        while let Some(p) = cur {
            cur = p.parent();
            out.push(p);
        }
        out
    }
}

impl std::fmt::Display for RoleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RoleName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        RoleName::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notary_role_name_rules() {
        for ok in [
            "root",
            "targets",
            "snapshot",
            "timestamp",
            "targets/releases",
            "targets/a/b-c_d/9",
        ] {
            assert_eq!(RoleName::parse(ok).unwrap().as_str(), ok);
        }
        let long_ok = format!("targets/{}", "a".repeat(MAX_ROLE_NAME_LEN - 8));
        assert!(RoleName::parse(&long_ok).is_ok());
        let too_long = format!("targets/{}", "a".repeat(MAX_ROLE_NAME_LEN - 7));
        for bad in [
            "",
            "Root",
            "targets/",
            "targets/Releases",
            "targets//a",
            "targets/a/",
            "targets/./a",
            "targets/../a",
            "targets/a b",
            "target/a",
            "snapshot/a",
            "targets.json",
            too_long.as_str(),
            "targets/é",
        ] {
            assert!(RoleName::parse(bad).is_err(), "{bad:?}");
        }
        let r = RoleName::parse("targets/a/b").unwrap();
        assert_eq!(r.parent(), Some(RoleName::parse("targets/a").unwrap()));
        assert_eq!(
            r.ancestors(),
            [RoleName::parse("targets/a").unwrap(), RoleName::Targets]
        );
        assert_eq!(
            RoleName::parse("targets/a").unwrap().parent(),
            Some(RoleName::Targets)
        );
        assert_eq!(RoleName::Targets.parent(), None);
        assert_eq!(r.depth(), 3);
    }
}
