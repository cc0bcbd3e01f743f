//! The detail of a publish's audit record (`trust.updated`): per uploaded part, in request
//! order, its role with the version before and after, and for targets-like roles the tags
//! added (`+`), changed (`~`) and removed (`-`), e.g.
//! `targets v3->v4 [+v1.2@sha256:0123456789ab -old]`.

use std::collections::BTreeMap;

use berth_tuf::{Envelope, RoleBody as _, Signed, Targets};

/// A role file's version and, for targets-like roles, its tags (name -> sha256 hex).
pub(crate) struct RoleSummary {
    pub version: Option<i64>,
    pub tags: Option<BTreeMap<String, String>>,
}

pub(crate) fn is_targets_like(role: &str) -> bool {
    role == "targets" || role.starts_with("targets/")
}

/// The role a multipart file name stands for.
pub(crate) fn role_of(part: &str) -> &str {
    part.strip_suffix(".json").unwrap_or(part)
}

/// Parses `data` for its summary (for files nothing parsed is at hand for).
pub(crate) fn summarize(role: &str, data: &[u8]) -> Option<RoleSummary> {
    let env = Envelope::parse(data).ok()?;
    let version = env.version();
    let tags = is_targets_like(role)
        .then(|| Targets::from_signed(env.signed()).ok())
        .flatten()
        .map(|t| tags_of(&t));
    Some(RoleSummary { version, tags })
}

/// The summary of a targets-like file already parsed.
pub(crate) fn summarize_targets(t: &Signed<Targets>) -> RoleSummary {
    RoleSummary {
        version: Some(t.body.version),
        tags: Some(tags_of(&t.body)),
    }
}

fn tags_of(t: &Targets) -> BTreeMap<String, String> {
    t.targets
        .iter()
        .map(|(name, m)| {
            let hex = m.hashes.get("sha256").map(hex::encode).unwrap_or_default();
            (name.clone(), hex)
        })
        .collect()
}

/// One line per (role, before, after), joined with `; `.
pub(crate) fn change_detail(rows: &[(&str, Option<RoleSummary>, Option<RoleSummary>)]) -> String {
    let mut out: Vec<String> = Vec::new();
    for (role, old, new) in rows {
        let v = |s: Option<&RoleSummary>| {
            s.and_then(|s| s.version)
                .map_or_else(|| "-".to_owned(), |v| format!("v{v}"))
        };
        let mut line = format!("{role} {}->{}", v(old.as_ref()), v(new.as_ref()));
        if let Some(new_tags) = new.as_ref().and_then(|n| n.tags.as_ref()) {
            let empty = BTreeMap::new();
            let old_tags = old.as_ref().and_then(|o| o.tags.as_ref()).unwrap_or(&empty);
            let short = |h: &str| h.get(..12).unwrap_or(h).to_owned();
            let mut changes = Vec::new();
            for (tag, hex) in new_tags {
                match old_tags.get(tag) {
                    None => changes.push(format!("+{tag}@sha256:{}", short(hex))),
                    Some(o) if o != hex => changes.push(format!("~{tag}@sha256:{}", short(hex))),
                    Some(_) => {}
                }
            }
            for tag in old_tags.keys().filter(|t| !new_tags.contains_key(*t)) {
                changes.push(format!("-{tag}"));
            }
            if !changes.is_empty() {
                line.push_str(&format!(" [{}]", changes.join(" ")));
            }
        }
        out.push(line);
    }
    out.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(t, h)| ((*t).to_owned(), (*h).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn detail_lines() {
        let old = RoleSummary {
            version: Some(3),
            tags: tags(&[("a", "aa11"), ("b", "bb22"), ("gone", "cc33")]),
        };
        let new = RoleSummary {
            version: Some(4),
            tags: tags(&[("a", "aa11"), ("b", "0123456789abcdef"), ("new", "dd44")]),
        };
        let root = RoleSummary {
            version: Some(1),
            tags: None,
        };
        assert_eq!(
            change_detail(&[
                ("root", None, Some(root)),
                ("targets", Some(old), Some(new)),
                ("snapshot", None, None),
            ]),
            "root -->v1; targets v3->v4 [~b@sha256:0123456789ab +new@sha256:dd44 -gone]; snapshot -->-"
        );
    }
}
