//! What a GUN's trust data says, the way `docker pull` and `docker trust inspect` read it: the
//! roles with their versions and expiries, and per tag the digest docker resolves and who
//! signed it. The web UI, `berth repository show-tags` and the server-enforced policy read it.
//!
//! A view is built from the files as served (timestamp and snapshot re-signed when due) and
//! kept per GUN by [`crate::TrustService::view`] under the served timestamp's sha256: the
//! timestamp names the snapshot by hash, which names root, targets and every delegation by
//! hash, so an unchanged timestamp means unchanged files. Validity is never cached: expiries
//! are stored and compared with the `now` of each call.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_tuf::{RoleBody, RoleName, Root, Signed, Snapshot, Targets, Timestamp};

/// The role docker resolves a tag from before `targets`.
pub const RELEASES: &str = "targets/releases";
/// How `docker trust inspect` names the signer of the `targets` role.
pub const REPO_ADMIN: &str = "Repo Admin";

/// One role's current metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleState {
    pub role: String,
    pub version: i64,
    /// Unix seconds.
    pub expires: i64,
}

/// A role that lists a tag's digest, named as `docker trust inspect` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// [`REPO_ADMIN`] for `targets`, else the role without `targets/` (`alice`).
    pub name: String,
    pub role: String,
    /// The key IDs the role's parent (the root for `targets`) lists for it.
    pub key_ids: Vec<String>,
}

/// A tag as docker resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTag {
    pub sha256: [u8; 32],
    pub length: i64,
    /// The role the tag resolves from: `targets/releases` when it lists the tag, else
    /// `targets` (docker's order).
    pub role: String,
    /// Every role listing this digest for the tag, except `targets/releases`, which `docker
    /// trust inspect` does not show as a signer (`docker trust sign` writes the digest to both
    /// it and the signer's own role). Sorted by role.
    pub signers: Vec<Signer>,
}

/// One GUN's trust data, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustView {
    pub gun: String,
    /// root, targets, each delegation (parents before children), snapshot, timestamp.
    pub roles: Vec<RoleState>,
    pub tags: BTreeMap<String, SignedTag>,
}

/// Roles whose expiry invalidates every tag.
const TOP: [&str; 4] = ["root", "targets", "snapshot", "timestamp"];

impl TrustView {
    fn role(&self, name: &str) -> Option<&RoleState> {
        self.roles.iter().find(|r| r.role == name)
    }

    /// Whether `tag` is signed and none of root, targets, snapshot, timestamp and the role it
    /// resolves from has expired at `now` (Unix seconds; TUF's rule: expired at `expires`).
    pub fn valid_at(&self, tag: &str, now: i64) -> bool {
        let Some(t) = self.tags.get(tag) else {
            return false;
        };
        TOP.iter()
            .copied()
            .chain(std::iter::once(t.role.as_str()))
            .all(|r| self.role(r).is_some_and(|s| s.expires > now))
    }

    /// The digest `tag` is signed for, when [`Self::valid_at`] `now`.
    pub fn signed_digest(&self, tag: &str, now: i64) -> Option<[u8; 32]> {
        if self.valid_at(tag, now) {
            self.tags.get(tag).map(|t| t.sha256)
        } else {
            None
        }
    }

    /// Roles expired at `now`.
    pub fn expired(&self, now: i64) -> Vec<&RoleState> {
        self.roles.iter().filter(|r| r.expires <= now).collect()
    }

    /// Roles not expired at `now` that expire within `secs` of it.
    pub fn expiring_within(&self, now: i64, secs: i64) -> Vec<&RoleState> {
        let until = now.saturating_add(secs);
        self.roles
            .iter()
            .filter(|r| r.expires > now && r.expires <= until)
            .collect()
    }
}

fn unix(expires: std::result::Result<std::time::SystemTime, berth_tuf::Error>) -> Option<i64> {
    let t = expires.ok()?;
    Some(match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    })
}

fn state<T: RoleBody>(role: &str, body: &T) -> Option<RoleState> {
    Some(RoleState {
        role: role.to_owned(),
        version: body.version(),
        // An unparsable expiry was refused at publish; treat it as expired long ago.
        expires: unix(body.expires_at()).unwrap_or(i64::MIN),
    })
}

/// The parsed files a view is built from.
pub(crate) struct Files<'a> {
    pub gun: &'a str,
    pub root: Arc<Signed<Root>>,
    /// `targets` and the delegations present, by role.
    pub targets: BTreeMap<RoleName, Arc<Signed<Targets>>>,
    pub snapshot: Arc<Signed<Snapshot>>,
    pub timestamp: Arc<Signed<Timestamp>>,
}

fn sha256_of(m: &berth_tuf::FileMeta) -> Option<[u8; 32]> {
    m.hashes
        .get("sha256")
        .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
}

/// A targets-like role reached from `targets`: name, its file, the key IDs delegated to it.
type Role = (String, Arc<Signed<Targets>>, Vec<String>);

/// Builds the view: `None` without a `targets` role.
pub(crate) fn build(f: &Files<'_>) -> Option<TrustView> {
    let top = f.targets.get(&RoleName::Targets)?;
    let admin_keys = f
        .root
        .body
        .roles
        .get("targets")
        .map(|k| k.keyids.clone())
        .unwrap_or_default();
    // Walk the delegation tree from `targets`: a stored file only counts when its parent
    // (as stored now) still delegates to it, as a client would find it.
    let mut roles: Vec<Role> = vec![("targets".to_owned(), top.clone(), admin_keys)];
    let mut i = 0;
    while let Some((_, parent, _)) = roles.get(i) {
        let parent = parent.clone();
        i += 1;
        for d in &parent.body.delegations.roles {
            if roles.iter().any(|(r, _, _)| *r == d.name) {
                continue;
            }
            if let Ok(name) = RoleName::parse(&d.name)
                && let Some(t) = f.targets.get(&name)
            {
                roles.push((d.name.clone(), t.clone(), d.keys.keyids.clone()));
            }
        }
    }
    let mut states = Vec::with_capacity(roles.len() + 3);
    states.extend(state("root", &f.root.body));
    for (r, t, _) in &roles {
        states.extend(state(r, &t.body));
    }
    states.extend(state("snapshot", &f.snapshot.body));
    states.extend(state("timestamp", &f.timestamp.body));

    let mut tags = BTreeMap::new();
    for released in ["targets", RELEASES] {
        // `targets/releases` second, so it wins.
        let Some((_, t, _)) = roles.iter().find(|(r, _, _)| r == released) else {
            continue;
        };
        for (tag, m) in &t.body.targets {
            if let Some(sha256) = sha256_of(m) {
                tags.insert(
                    tag.clone(),
                    SignedTag {
                        sha256,
                        length: m.length,
                        role: released.to_owned(),
                        signers: Vec::new(),
                    },
                );
            }
        }
    }
    let mut by_role: Vec<&Role> = roles.iter().collect();
    by_role.sort_by(|a, b| a.0.cmp(&b.0));
    for (role, t, keys) in by_role {
        if role == RELEASES {
            continue;
        }
        let name = if role == "targets" {
            REPO_ADMIN
        } else {
            role.trim_start_matches("targets/")
        };
        for (tag, m) in &t.body.targets {
            if let Some(st) = tags.get_mut(tag)
                && sha256_of(m) == Some(st.sha256)
            {
                st.signers.push(Signer {
                    name: name.to_owned(),
                    role: role.clone(),
                    key_ids: keys.clone(),
                });
            }
        }
    }
    Some(TrustView {
        gun: f.gun.to_owned(),
        roles: states,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> TrustView {
        let st = |role: &str, expires| RoleState {
            role: role.into(),
            version: 1,
            expires,
        };
        let tag = |role: &str| SignedTag {
            sha256: [1; 32],
            length: 10,
            role: role.into(),
            signers: vec![],
        };
        TrustView {
            gun: "g".into(),
            roles: vec![
                st("root", 1000),
                st("targets", 900),
                st(RELEASES, 500),
                st("snapshot", 800),
                st("timestamp", 700),
            ],
            tags: [("a".into(), tag("targets")), ("b".into(), tag(RELEASES))]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn validity_follows_the_releasing_role() {
        let v = view();
        assert!(v.valid_at("a", 499) && v.valid_at("b", 499));
        assert!(v.valid_at("a", 500), "targets/releases does not release a");
        assert!(!v.valid_at("b", 500), "expired at its expiry");
        assert_eq!(v.signed_digest("a", 600), Some([1; 32]));
        assert_eq!(v.signed_digest("b", 600), None);
        assert!(!v.valid_at("a", 700), "timestamp expired");
        assert!(!v.valid_at("nope", 0));
        let names = |r: Vec<&RoleState>| r.iter().map(|r| r.role.clone()).collect::<Vec<_>>();
        assert_eq!(names(v.expired(700)), [RELEASES, "timestamp"]);
        assert_eq!(names(v.expiring_within(700, 100)), ["snapshot"]);
        assert!(v.expiring_within(700, 99).is_empty());
    }
}
