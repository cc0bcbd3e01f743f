//! A repository's trust data as the tags page shows it: per trust collection (GUN) the
//! [`TrustView`] (tags as docker resolves them, their signers, every role's version and expiry)
//! plus the keys `docker trust inspect` lists (signers' delegation keys, the repository and
//! root keys).

use std::sync::Arc;

use berth_oci::RepoName;
use berth_trust::{Signer, TrustView};
use berth_tuf::RoleBody as _;

use super::html::esc;
use crate::error::AdminError;
use crate::routes::admin::{Ctx, repository_guns};

/// Warn when root, targets or a delegation expires within this many seconds. The timestamp
/// (and the snapshot) are signed by the server with keys it holds, live 14 days and are
/// renewed by it when they run out, so they would always be "within 30 days": they are warned
/// about only once expired (the server could not renew them).
const EXPIRY_WARNING: i64 = 30 * 86_400;

/// Whether the signers, not the server, must renew `role` before it expires.
fn signer_renewed(role: &str) -> bool {
    role == "root" || role == "targets" || role.starts_with("targets/")
}

pub(crate) struct Collection {
    pub(crate) view: Arc<TrustView>,
    /// Delegations (name without `targets/`, key ids), docker's "Signers".
    pub(crate) signers: Vec<(String, Vec<String>)>,
    pub(crate) root_keys: Vec<String>,
    pub(crate) repository_keys: Vec<String>,
}

fn envelope(data: &[u8]) -> Option<berth_tuf::Envelope> {
    berth_tuf::Envelope::parse(data).ok()
}

/// Every trust collection of `repo` that has a view (trust data with a `targets` role).
pub(crate) async fn collections(
    cx: &Ctx<'_>,
    repo: &RepoName,
) -> Result<Vec<Collection>, AdminError> {
    let trust = &cx.state.trust;
    let mut out = Vec::new();
    for gun in repository_guns(cx, repo).await? {
        let view = match trust.view_shared(&gun).await {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            // One GUN's unreadable trust data leaves its tags shown unsigned, as show-tags does.
            Err(e) => {
                tracing::warn!(gun, error = %e, "trust data unreadable");
                continue;
            }
        };
        let mut root_keys = Vec::new();
        let mut repository_keys = Vec::new();
        let mut signers = Vec::new();
        if let Ok(f) = trust.get_current(&gun, "root").await
            && let Some(env) = envelope(&f.data)
            && let Ok(r) = berth_tuf::Root::from_signed(env.signed())
        {
            let keys = |role: &str| r.roles.get(role).map(|k| k.keyids.clone());
            root_keys = keys("root").unwrap_or_default();
            repository_keys = keys("targets").unwrap_or_default();
        }
        if let Ok(f) = trust.get_current(&gun, "targets").await
            && let Some(env) = envelope(&f.data)
            && let Ok(t) = berth_tuf::Targets::from_signed(env.signed())
        {
            for d in &t.delegations.roles {
                if d.name != berth_trust::view::RELEASES {
                    signers.push((
                        d.name.trim_start_matches("targets/").to_owned(),
                        d.keys.keyids.clone(),
                    ));
                }
            }
        }
        out.push(Collection {
            view,
            signers,
            root_keys,
            repository_keys,
        });
    }
    Ok(out)
}

/// What the trust data says about one tag.
pub(crate) enum TagStatus {
    Unsigned,
    Signed(Vec<Signer>),
    /// Signed for this digest, but trust metadata it depends on has expired.
    Expired(Vec<Signer>),
    /// Signed, but for other digests than the tag's current one.
    Mismatch(Vec<String>),
}

impl TagStatus {
    pub(crate) fn class(&self) -> &'static str {
        match self {
            TagStatus::Unsigned => "unsigned",
            TagStatus::Signed(_) => "signed",
            TagStatus::Expired(_) => "expired",
            TagStatus::Mismatch(_) => "mismatch",
        }
    }

    pub(crate) fn html(&self) -> String {
        match self {
            TagStatus::Unsigned => "<span class=\"badge muted\">Unsigned</span>".into(),
            TagStatus::Signed(signers) | TagStatus::Expired(signers) => {
                let names: Vec<String> = signers
                    .iter()
                    .map(|s| {
                        let keys: Vec<String> = s
                            .key_ids
                            .iter()
                            .map(|k| k.chars().take(12).collect())
                            .collect();
                        format!(
                            "<span class=\"signer\" title=\"role {} · keys {}\">{}</span>",
                            esc(&s.role),
                            esc(&keys.join(", ")),
                            esc(&s.name)
                        )
                    })
                    .collect();
                if matches!(self, TagStatus::Expired(_)) {
                    format!(
                        "<span class=\"badge warn\">&#9888; Signature expired</span> by {} \
                         <span class=\"why\">trust metadata it depends on has expired: signed pulls fail</span>",
                        names.join(", ")
                    )
                } else {
                    format!(
                        "<span class=\"badge ok\">&#10003; Signed</span> by {}",
                        names.join(", ")
                    )
                }
            }
            TagStatus::Mismatch(digests) => {
                let d: Vec<String> = digests
                    .iter()
                    .map(|h| {
                        format!(
                            "<code>sha256:{}</code>",
                            esc(&h.chars().take(12).collect::<String>())
                        )
                    })
                    .collect();
                format!(
                    "<span class=\"badge warn\">&#9888; Signature mismatch</span> \
                     <span class=\"why\">the tag now points at another digest than the signed {}; \
                     DOCKER_CONTENT_TRUST=1 pulls get the signed one</span>",
                    d.join(", ")
                )
            }
        }
    }
}

/// The status of `tag`, which now points at the sha256 `hex`, at `now` (Unix seconds).
pub(crate) fn tag_status(collections: &[Collection], tag: &str, hex: &str, now: i64) -> TagStatus {
    let mut signed: Option<(Vec<Signer>, bool)> = None;
    let mut other: Vec<String> = Vec::new();
    for c in collections {
        let Some(t) = c.view.tags.get(tag) else {
            continue;
        };
        let h = ::hex::encode(t.sha256);
        if h == hex {
            let valid = c.view.valid_at(tag, now);
            let (signers, any_valid) = signed.get_or_insert_with(|| (Vec::new(), false));
            *any_valid |= valid;
            for s in &t.signers {
                if !signers.contains(s) {
                    signers.push(s.clone());
                }
            }
        } else if !other.contains(&h) {
            other.push(h);
        }
    }
    match signed {
        Some((signers, true)) => TagStatus::Signed(signers),
        Some((signers, false)) => TagStatus::Expired(signers),
        None if !other.is_empty() => TagStatus::Mismatch(other),
        None => TagStatus::Unsigned,
    }
}

fn short_keys(keys: &[String]) -> String {
    keys.iter()
        .map(|k| {
            format!(
                "<code title=\"{}\">{}</code>",
                esc(k),
                esc(&k.chars().take(12).collect::<String>())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Expiry warnings of every collection (see [`EXPIRY_WARNING`]).
pub(crate) fn warnings_html(collections: &[Collection], now: i64) -> String {
    let mut out = String::new();
    for c in collections {
        for r in &c.view.roles {
            let exp = r.expires;
            let left = exp.saturating_sub(now);
            let window = if signer_renewed(&r.role) {
                EXPIRY_WARNING
            } else {
                0
            };
            if left <= window {
                let date = super::html::when(exp);
                let when = if left <= 0 {
                    format!("has expired ({date}): signed pulls fail until it is signed again")
                } else {
                    format!(
                        "expires in {} days ({date}): sign it again before then or signed pulls fail",
                        left / 86_400
                    )
                };
                out.push_str(&format!(
                    "<p class=\"notice warn expiry\">&#9888; The {} metadata of {} {when}.</p>",
                    esc(&r.role),
                    esc(&c.view.gun),
                ));
            }
        }
    }
    out
}

/// The collections' versions, expiry dates and keys.
pub(crate) fn summary_html(collections: &[Collection], now: i64) -> String {
    if collections.is_empty() {
        return "<p class=\"notice\" id=\"no-trust\">No trust data: nothing in this repository is signed.</p>".into();
    }
    let mut out = String::new();
    for c in collections {
        let mut roles = String::new();
        for r in &c.view.roles {
            let e = r.expires;
            let cls = if e <= now {
                "bad"
            } else if signer_renewed(&r.role) && e.saturating_sub(now) <= EXPIRY_WARNING {
                "warn"
            } else {
                ""
            };
            let exp = super::html::when(e);
            roles.push_str(&format!(
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"{cls}\">{}</td></tr>",
                esc(&r.role),
                r.version,
                esc(&exp)
            ));
        }
        let mut signers = String::new();
        for (name, keys) in &c.signers {
            signers.push_str(&format!(
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(name),
                short_keys(keys)
            ));
        }
        if signers.is_empty() {
            signers = "<tr><td colspan=\"2\" class=\"muted\">No signers (only the repository key signs)</td></tr>".into();
        }
        out.push_str(&format!(
            "<div class=\"trust\"><h3>{}</h3><div class=\"cols\">\
             <table class=\"roles\"><thead><tr><th>Metadata</th><th class=\"num\">Version</th><th>Expires</th></tr></thead><tbody>{roles}</tbody></table>\
             <div><table class=\"signers\"><thead><tr><th>Signer</th><th>Keys</th></tr></thead><tbody>{signers}</tbody></table>\
             <table class=\"admin-keys\"><thead><tr><th>Administrative keys</th><th>Keys</th></tr></thead><tbody>\
             <tr><td>Repository key</td><td>{}</td></tr><tr><td>Root key</td><td>{}</td></tr></tbody></table></div></div></div>",
            esc(&c.view.gun),
            short_keys(&c.repository_keys),
            short_keys(&c.root_keys)
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::panic, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use berth_trust::{RoleState, SignedTag};

    const NOW: i64 = 1_000_000_000;
    const DAY: i64 = 86_400;

    fn signer(name: &str) -> Signer {
        Signer {
            name: name.into(),
            role: format!("targets/{name}"),
            key_ids: vec!["ab".repeat(32)],
        }
    }

    fn role(role: &str, days: i64) -> RoleState {
        RoleState {
            role: role.into(),
            version: 1,
            expires: NOW + days * DAY,
        }
    }

    fn healthy() -> Vec<RoleState> {
        vec![
            role("root", 3650),
            role("targets", 365),
            role("targets/alice", 400),
            role("snapshot", 20),
            role("timestamp", 14),
        ]
    }

    fn collection(tags: &[(&str, u8, Vec<Signer>)], roles: Vec<RoleState>) -> Collection {
        Collection {
            view: Arc::new(TrustView {
                gun: "127.0.0.1:5000/team/app".into(),
                roles,
                tags: tags
                    .iter()
                    .map(|(t, b, s)| {
                        (
                            (*t).to_owned(),
                            SignedTag {
                                sha256: [*b; 32],
                                length: 10,
                                role: "targets".into(),
                                signers: s.clone(),
                            },
                        )
                    })
                    .collect(),
            }),
            signers: vec![("alice".into(), vec!["ab".repeat(32)])],
            root_keys: Vec::new(),
            repository_keys: Vec::new(),
        }
    }

    #[test]
    fn tags_are_signed_unsigned_repointed_or_expired() {
        let c = [collection(
            &[
                ("v1", 1, vec![signer("alice")]),
                ("v3", 3, vec![signer("bob")]),
            ],
            healthy(),
        )];
        let one = ::hex::encode([1u8; 32]);
        match tag_status(&c, "v1", &one, NOW) {
            TagStatus::Signed(s) => assert_eq!(s, vec![signer("alice")]),
            _ => panic!("v1 is signed"),
        }
        assert!(matches!(
            tag_status(&c, "v2", &one, NOW),
            TagStatus::Unsigned
        ));
        match tag_status(&c, "v3", &one, NOW) {
            TagStatus::Mismatch(d) => assert_eq!(d, vec![::hex::encode([3u8; 32])]),
            _ => panic!("v3 was repointed"),
        }
        let html = tag_status(&c, "v1", &one, NOW).html();
        assert!(
            html.contains("alice") && html.contains("abababababab"),
            "{html}"
        );
        // Past the targets role's expiry the signature no longer counts.
        assert!(matches!(
            tag_status(&c, "v1", &one, NOW + 366 * DAY),
            TagStatus::Expired(_)
        ));
    }

    #[test]
    fn expiry_warnings_for_what_signers_renew() {
        let quiet = [collection(&[], healthy())];
        assert_eq!(warnings_html(&quiet, NOW), "");
        let loud = [collection(
            &[],
            vec![
                role("root", 29),
                role("targets", 365),
                role("targets/alice", 2),
                role("snapshot", 20),
                role("timestamp", -1),
            ],
        )];
        let w = warnings_html(&loud, NOW);
        assert_eq!(w.matches("class=\"notice warn expiry\"").count(), 3, "{w}");
        assert!(
            w.contains("The root metadata") && w.contains("expires in 29 days"),
            "{w}"
        );
        assert!(
            w.contains("targets/alice") && w.contains("timestamp metadata"),
            "{w}"
        );
        assert!(w.contains("has expired"), "{w}");
    }
}
