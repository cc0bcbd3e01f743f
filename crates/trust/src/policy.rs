//! Signing policy enforced by the server, per repository and registry-wide: what is stored
//! (settings), and the decision for one manifest request given the repository's trust views.
//! No HTTP and no I/O in the decisions: the server gathers the views and asks.
//!
//! - `signed-pulls-only`: a manifest read by tag is allowed only when some GUN of the
//!   repository has valid (unexpired) trust data for the tag naming exactly the digest it points
//!   to; a read by digest only when some valid signed tag names the digest, or it is a child
//!   manifest of a signed index.
//! - `immutable-signed-tags`: a push that points a tag at a digest other than the one some
//!   valid signature names for it is refused.
//!
//! Storage: settings `policy.default` and `policy.repo.<repository>`, each a small JSON object
//! `{"signedPullsOnly": bool, "immutableSignedTags": bool, "accept": ["dct", ...]}` whose fields
//! are optional. A field a repository's entry sets overrides the default's; a field it leaves
//! out follows the default (also when the default changes later). Everything is off when
//! nothing is set, and `accept` is `["dct"]`.
//!
//! Signature formats (`accept`): `dct` (the rules above), `notation` (a Notary Project
//! signature referrer valid under the repository's trust policy and trust store) and `cosign`
//! (a cosign signature by one of the listed public keys). Their verification material lives in
//! separate settings, `policy.verify.default` and `policy.verify.repo.<repository>`
//! ([`Material`]), read only when a non-DCT format is accepted: the per-request entry stays small.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::view::TrustView;

/// The registry-wide default.
pub const DEFAULT_SETTING: &str = "policy.default";
/// The prefix of a repository's entry: `policy.repo.<repository>`.
pub const REPO_SETTING_PREFIX: &str = "policy.repo.";

/// The setting holding `repo`'s entry.
pub fn repo_setting(repo: &str) -> String {
    format!("{REPO_SETTING_PREFIX}{repo}")
}

/// The signature formats `signed-pulls-only` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept {
    pub dct: bool,
    pub notation: bool,
    pub cosign: bool,
}

impl Default for Accept {
    /// DCT only: what the policy meant before other formats existed.
    fn default() -> Self {
        Accept {
            dct: true,
            notation: false,
            cosign: false,
        }
    }
}

/// The names of the formats, as settings, the admin API and the CLI spell them.
pub const FORMATS: [&str; 3] = ["dct", "notation", "cosign"];

impl Accept {
    /// Parses names (`dct`, `notation`, `cosign`); at least one, none unknown.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Accept, String> {
        let mut a = Accept {
            dct: false,
            notation: false,
            cosign: false,
        };
        for n in names {
            match n.as_ref().trim() {
                "dct" => a.dct = true,
                "notation" => a.notation = true,
                "cosign" => a.cosign = true,
                other => {
                    return Err(format!(
                        "unknown signature format {other:?} (known: dct, notation, cosign)"
                    ));
                }
            }
        }
        if a.names().is_empty() {
            return Err("accept at least one signature format (dct, notation, cosign)".into());
        }
        Ok(a)
    }

    pub fn names(&self) -> Vec<&'static str> {
        [self.dct, self.notation, self.cosign]
            .iter()
            .zip(FORMATS)
            .filter_map(|(on, n)| on.then_some(n))
            .collect()
    }

    /// Only DCT: refusals read exactly as before formats existed.
    pub fn dct_only(&self) -> bool {
        *self == Accept::default()
    }

    /// For people: "DCT, Notary Project signatures".
    pub fn describe(&self) -> String {
        let mut out = Vec::new();
        if self.dct {
            out.push("Docker Content Trust");
        }
        if self.notation {
            out.push("Notary Project signatures");
        }
        if self.cosign {
            out.push("cosign signatures by a listed key");
        }
        out.join(", ")
    }
}

impl Serialize for Accept {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Accept {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        Accept::parse(&names).map_err(serde::de::Error::custom)
    }
}

/// What applies to one repository.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub signed_pulls_only: bool,
    pub immutable_signed_tags: bool,
    /// The formats `signed-pulls-only` accepts (`immutable-signed-tags` is about DCT only).
    #[serde(default)]
    pub accept: Accept,
}

impl Policy {
    /// Whether any rule is on (only then does a request pay for a check).
    pub fn any(&self) -> bool {
        self.signed_pulls_only || self.immutable_signed_tags
    }
}

/// A stored entry: each field set or left to the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_pulls_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable_signed_tags: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<Accept>,
}

impl PolicyEntry {
    pub fn is_empty(&self) -> bool {
        self.signed_pulls_only.is_none()
            && self.immutable_signed_tags.is_none()
            && self.accept.is_none()
    }

    /// This entry's fields over `base`.
    pub fn over(&self, base: Policy) -> Policy {
        Policy {
            signed_pulls_only: self.signed_pulls_only.unwrap_or(base.signed_pulls_only),
            immutable_signed_tags: self
                .immutable_signed_tags
                .unwrap_or(base.immutable_signed_tags),
            accept: self.accept.unwrap_or(base.accept),
        }
    }

    /// Parses a stored value; one that does not parse (written by hand) counts as empty,
    /// logged by the caller.
    pub fn parse(value: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(value)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// The effective policy of a repository from the default entry and its own.
pub fn effective(default: &PolicyEntry, repo: &PolicyEntry) -> Policy {
    repo.over(default.over(Policy::default()))
}

/// Reads an entry (`None`: the default). A stored value that does not parse (edited by hand)
/// is logged and read as empty, so it cannot switch a rule on by accident.
pub(crate) async fn read_entry(
    settings: &dyn berth_storage::SettingsStore,
    repo: Option<&str>,
) -> berth_storage::Result<PolicyEntry> {
    let name = repo.map_or_else(|| DEFAULT_SETTING.to_owned(), repo_setting);
    Ok(match settings.setting_get(&name).await? {
        Some(v) => parse_logged(&name, &v),
        None => PolicyEntry::default(),
    })
}

fn parse_logged(name: &str, v: &str) -> PolicyEntry {
    PolicyEntry::parse(v).unwrap_or_else(|e| {
        tracing::warn!(setting = name, error = %e, "policy setting does not parse; ignored");
        PolicyEntry::default()
    })
}

/// Every repository's entry (not the default), by repository name.
pub(crate) async fn list_entries(
    settings: &dyn berth_storage::SettingsStore,
) -> berth_storage::Result<Vec<(String, PolicyEntry)>> {
    Ok(settings
        .settings_list()
        .await?
        .into_iter()
        .filter_map(|(name, v)| {
            let repo = name.strip_prefix(REPO_SETTING_PREFIX)?.to_owned();
            let e = parse_logged(&name, &v);
            (!e.is_empty()).then_some((repo, e))
        })
        .collect())
}

/// The settings holding the verification material of the non-DCT formats: registry default.
pub const MATERIAL_DEFAULT_SETTING: &str = "policy.verify.default";
/// ... and a repository's: `policy.verify.repo.<repository>`.
pub const MATERIAL_REPO_SETTING_PREFIX: &str = "policy.verify.repo.";

/// The setting holding `repo`'s verification material (`None`: the default's).
pub fn material_setting(repo: Option<&str>) -> String {
    repo.map_or_else(
        || MATERIAL_DEFAULT_SETTING.to_owned(),
        |r| format!("{MATERIAL_REPO_SETTING_PREFIX}{r}"),
    )
}

/// What Notary Project and cosign signatures are checked against, as the Owner uploaded it
/// (text only: the server parses it, and keys caches by a hash of it). Each field a
/// repository sets replaces the default's; one it leaves out follows the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Material {
    /// The Notary Project trust policy document (`trustpolicy.json`), as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_policy: Option<serde_json::Value>,
    /// Trust store name as the trust policy names it (`ca:NAME`, `signingAuthority:NAME`) →
    /// PEM certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_store: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// Cosign public keys (PEM SubjectPublicKeyInfo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosign_keys: Option<Vec<String>>,
}

impl Material {
    pub fn is_empty(&self) -> bool {
        self.trust_policy.is_none() && self.trust_store.is_none() && self.cosign_keys.is_none()
    }

    /// This entry's fields over `base`'s.
    pub fn over(&self, base: &Material) -> Material {
        Material {
            trust_policy: self
                .trust_policy
                .clone()
                .or_else(|| base.trust_policy.clone()),
            trust_store: self
                .trust_store
                .clone()
                .or_else(|| base.trust_store.clone()),
            cosign_keys: self
                .cosign_keys
                .clone()
                .or_else(|| base.cosign_keys.clone()),
        }
    }

    pub fn parse(value: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(value)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// Reads verification material (`None`: the default's); one that does not parse is logged and
/// read as empty (nothing then verifies: fail closed).
pub(crate) async fn read_material(
    settings: &dyn berth_storage::SettingsStore,
    repo: Option<&str>,
) -> berth_storage::Result<Material> {
    let name = material_setting(repo);
    Ok(match settings.setting_get(&name).await? {
        Some(v) => Material::parse(&v).unwrap_or_else(|e| {
            tracing::warn!(setting = name, error = %e, "verification material does not parse; ignored");
            Material::default()
        }),
        None => Material::default(),
    })
}

/// What the non-DCT formats found for the digest a request needs signed (gathered and
/// verified by the server).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// A Notary Project signature of the digest verified under the trust policy.
    pub notation: bool,
    /// A cosign signature of the digest verified with a listed key.
    pub cosign: bool,
    /// Why the signatures found did not verify (or that there were none), for the refusal.
    pub failures: Vec<String>,
}

/// The decision over every accepted format. `dct`: the DCT decision, `None` when DCT is not
/// accepted; `found`: what the other formats found (only looked at when accepted).
/// With DCT alone accepted the refusal is DCT's own, word for word.
pub fn decide(
    accept: Accept,
    dct: Option<Result<(), Denial>>,
    found: &Findings,
) -> Result<(), Denial> {
    let dct = if accept.dct { dct } else { None };
    if matches!(dct, Some(Ok(()))) {
        return Ok(());
    }
    if (accept.notation && found.notation) || (accept.cosign && found.cosign) {
        return Ok(());
    }
    let dct = dct.and_then(Result::err);
    if accept.dct_only() {
        return Err(dct.unwrap_or(Denial::NoAcceptedSignature {
            accept,
            dct: None,
            failures: found.failures.clone(),
        }));
    }
    Err(Denial::NoAcceptedSignature {
        accept,
        dct: dct.map(Box::new),
        failures: found.failures.clone(),
    })
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No accepted signature format signs the content (formats other than DCT accepted).
    NoAcceptedSignature {
        accept: Accept,
        /// Why DCT refused, when DCT is accepted.
        dct: Option<Box<Denial>>,
        /// Why Notary Project / cosign signatures did not count.
        failures: Vec<String>,
    },
    /// Content trust is off registry-wide: there is no trust data to check against.
    TrustDisabled,
    /// No GUN of the repository signs the tag.
    TagUnsigned { tag: String },
    /// A valid signature names another digest for the tag.
    DigestDiffers {
        tag: String,
        signed: [u8; 32],
        /// What the tag points to (`None`: not a sha256 digest).
        actual: Option<[u8; 32]>,
        gun: String,
    },
    /// The tag is signed, but every signature's trust data has expired.
    Expired { tag: String, roles: Vec<String> },
    /// No valid signed tag names the digest.
    DigestUnsigned { expired_roles: Vec<String> },
    /// A push would point a validly signed tag at another digest.
    Repoint {
        tag: String,
        signed: [u8; 32],
        /// What the push points the tag at (`None`: not a sha256 digest).
        pushed: Option<[u8; 32]>,
        gun: String,
    },
}

fn some_digest(d: &Option<[u8; 32]>) -> String {
    d.as_ref()
        .map_or_else(|| "a digest that is not sha256".to_owned(), hex_digest)
}

fn hex_digest(d: &[u8; 32]) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl Denial {
    /// A short machine-readable reason (metrics labels, logs).
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::TrustDisabled => "trust-disabled",
            Denial::TagUnsigned { .. } => "tag-unsigned",
            Denial::DigestDiffers { .. } => "signed-digest-differs",
            Denial::Expired { .. } => "trust-data-expired",
            Denial::DigestUnsigned { .. } => "digest-unsigned",
            Denial::Repoint { .. } => "signed-tag-repoint",
            Denial::NoAcceptedSignature { .. } => "no-accepted-signature",
        }
    }

    /// The rule that refused: `signed-pulls-only` or `immutable-signed-tags`.
    pub fn policy(&self) -> &'static str {
        match self {
            Denial::Repoint { .. } => "immutable-signed-tags",
            _ => "signed-pulls-only",
        }
    }

    /// What the client is told. `reference`: the tag or digest the request named.
    pub fn message(&self, repo: &str, reference: &str) -> String {
        let pulls = format!("repository {repo} requires signed content (policy signed-pulls-only)");
        match self {
            Denial::NoAcceptedSignature {
                accept,
                dct,
                failures,
            } => {
                let mut parts = Vec::new();
                if let Some(d) = dct {
                    let m = d.message(repo, reference);
                    let detail = m
                        .strip_prefix(pulls.as_str())
                        .map(|r| r.trim_start_matches([':', ',', ' ']))
                        .unwrap_or(&m);
                    parts.push(format!("Docker Content Trust: {detail}"));
                }
                if accept.notation || accept.cosign {
                    if failures.is_empty() {
                        parts.push(format!("no signature of {reference} verifies"));
                    } else {
                        parts.push(failures.join("; "));
                    }
                }
                format!(
                    "{pulls}, signed in an accepted format ({}; accepted: {}): {}",
                    accept.describe(),
                    accept.names().join(","),
                    parts.join("; ")
                )
            }
            Denial::TrustDisabled => format!(
                "{pulls}, but content trust is disabled on this registry, so nothing is signed: an Owner enables it with `berth config content-trust update --status enabled`"
            ),
            Denial::TagUnsigned { tag } => format!(
                "{pulls}: tag {tag} is not signed (`docker trust sign REGISTRY/{repo}:{tag}` signs it)"
            ),
            Denial::DigestDiffers {
                tag,
                signed,
                actual,
                gun,
            } => format!(
                "{pulls}: tag {tag} points to {}, but its signature ({gun}) names {}",
                some_digest(actual),
                hex_digest(signed)
            ),
            Denial::Expired { tag, roles } => format!(
                "{pulls}: the trust data signing tag {tag} has expired ({}); the signer must re-sign",
                roles.join(", ")
            ),
            Denial::DigestUnsigned { expired_roles } if !expired_roles.is_empty() => format!(
                "{pulls}: {reference} is named only by signed tags whose trust data has expired ({})",
                expired_roles.join(", ")
            ),
            Denial::DigestUnsigned { .. } => format!(
                "{pulls}: {reference} is not named by any signed tag (nor is it in a signed index)"
            ),
            Denial::Repoint {
                tag,
                signed,
                pushed,
                gun,
            } => format!(
                "repository {repo} has immutable signed tags (policy immutable-signed-tags): tag {tag} is signed for {} ({gun}); pointing it at {} would break every content-trust consumer. Sign the new digest for {tag} first, or revoke the tag's signature first (`docker trust revoke REGISTRY/{repo}:{tag}`), then push",
                hex_digest(signed),
                some_digest(pushed)
            ),
        }
    }
}

/// The roles of `v` expired at `now` that make `tag` invalid (or all expired ones).
fn expired_roles(v: &TrustView, now: i64) -> Vec<String> {
    v.expired(now).iter().map(|r| r.role.clone()).collect()
}

/// A manifest read by tag that resolved to `digest` (the tag's own digest: for an index, the
/// index's, not a child the registry picked for the client).
pub fn pull_by_tag(
    trust_enabled: bool,
    views: &[Arc<TrustView>],
    tag: &str,
    digest: Option<[u8; 32]>,
    now: i64,
) -> Result<(), Denial> {
    if !trust_enabled {
        return Err(Denial::TrustDisabled);
    }
    let mut differs = None;
    let mut expired: BTreeSet<String> = BTreeSet::new();
    for v in views {
        match v.signed_digest(tag, now) {
            Some(d) if Some(d) == digest => return Ok(()),
            Some(d) => {
                differs.get_or_insert((d, v.gun.clone()));
            }
            None if v.tags.contains_key(tag) => {
                // Only the roles this tag depends on: another delegation's expiry is no reason.
                let role = v.tags.get(tag).map(|t| t.role.as_str()).unwrap_or("");
                expired.extend(
                    v.expired(now)
                        .into_iter()
                        .filter(|r| {
                            ["root", "targets", "snapshot", "timestamp", role]
                                .contains(&r.role.as_str())
                        })
                        .map(|r| format!("{} in {}", r.role, v.gun)),
                );
            }
            None => {}
        }
    }
    if let Some((signed, gun)) = differs {
        return Err(Denial::DigestDiffers {
            tag: tag.to_owned(),
            signed,
            actual: digest,
            gun,
        });
    }
    if !expired.is_empty() {
        return Err(Denial::Expired {
            tag: tag.to_owned(),
            roles: expired.into_iter().collect(),
        });
    }
    Err(Denial::TagUnsigned {
        tag: tag.to_owned(),
    })
}

/// Every digest a valid signed tag names, over all views.
pub fn valid_signed_digests(views: &[Arc<TrustView>], now: i64) -> BTreeSet<[u8; 32]> {
    views
        .iter()
        .flat_map(|v| v.tags.keys().filter_map(move |t| v.signed_digest(t, now)))
        .collect()
}

/// A manifest read by digest. `in_signed_index`: whether the digest is a child of an index
/// one of [`valid_signed_digests`] names (the caller looks, only when this says the digest
/// itself is unsigned: [`Denial::DigestUnsigned`]).
pub fn pull_by_digest(
    trust_enabled: bool,
    views: &[Arc<TrustView>],
    digest: Option<[u8; 32]>,
    in_signed_index: bool,
    now: i64,
) -> Result<(), Denial> {
    if !trust_enabled {
        return Err(Denial::TrustDisabled);
    }
    if in_signed_index {
        return Ok(());
    }
    if let Some(d) = digest
        && valid_signed_digests(views, now).contains(&d)
    {
        return Ok(());
    }
    // Said when the digest was signed once and only expiry stands in the way.
    let expired_roles = match digest {
        Some(d) => views
            .iter()
            .filter(|v| v.tags.values().any(|t| t.sha256 == d))
            .flat_map(|v| {
                expired_roles(v, now)
                    .into_iter()
                    .map(move |r| format!("{r} in {}", v.gun))
            })
            .collect(),
        None => Vec::new(),
    };
    Err(Denial::DigestUnsigned { expired_roles })
}

/// A manifest push pointing `tag` at `digest`.
pub fn push_tag(
    views: &[Arc<TrustView>],
    tag: &str,
    digest: Option<[u8; 32]>,
    now: i64,
) -> Result<(), Denial> {
    for v in views {
        if let Some(signed) = v.signed_digest(tag, now)
            && Some(signed) != digest
        {
            return Err(Denial::Repoint {
                tag: tag.to_owned(),
                signed,
                pushed: digest,
                gun: v.gun.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{RoleState, SignedTag};

    fn view(gun: &str, ts_expires: i64, tags: &[(&str, u8)]) -> Arc<TrustView> {
        let st = |role: &str, expires| RoleState {
            role: role.into(),
            version: 1,
            expires,
        };
        Arc::new(TrustView {
            gun: gun.into(),
            roles: vec![
                st("root", 10_000),
                st("targets", 10_000),
                st("snapshot", 10_000),
                st("timestamp", ts_expires),
            ],
            tags: tags
                .iter()
                .map(|(t, d)| {
                    (
                        (*t).to_owned(),
                        SignedTag {
                            sha256: [*d; 32],
                            length: 1,
                            role: "targets".into(),
                            signers: vec![],
                        },
                    )
                })
                .collect(),
        })
    }

    #[test]
    fn entries_override_the_default_per_field() {
        let d = PolicyEntry::parse(r#"{"signedPullsOnly":true}"#).unwrap();
        let r = PolicyEntry::parse(r#"{"immutableSignedTags":true}"#).unwrap();
        assert_eq!(
            effective(&d, &r),
            Policy {
                signed_pulls_only: true,
                immutable_signed_tags: true,
                accept: Accept::default(),
            }
        );
        let off = PolicyEntry::parse(r#"{"signedPullsOnly":false}"#).unwrap();
        assert!(!effective(&d, &off).any());
        assert!(!effective(&PolicyEntry::default(), &PolicyEntry::default()).any());
        assert!(PolicyEntry::parse(r#"{"signedPulls":true}"#).is_err());
        assert_eq!(r.to_json(), r#"{"immutableSignedTags":true}"#);
    }

    #[test]
    fn pulls() {
        let a = view("h/r", 100, &[("t", 1), ("old", 3)]);
        let b = view("h2/r", 50, &[("t", 2), ("b", 2)]);
        let views = [a.clone(), b.clone()];
        assert_eq!(pull_by_tag(true, &views, "t", Some([1; 32]), 10), Ok(()));
        assert_eq!(pull_by_tag(true, &views, "t", Some([2; 32]), 10), Ok(()));
        assert!(matches!(
            pull_by_tag(true, &views, "t", Some([9; 32]), 10),
            Err(Denial::DigestDiffers { .. })
        ));
        assert!(matches!(
            pull_by_tag(true, &views, "none", Some([1; 32]), 10),
            Err(Denial::TagUnsigned { .. })
        ));
        // b's timestamp expired: its signature for t no longer counts, b's tag is expired.
        assert!(matches!(
            pull_by_tag(true, &views, "t", Some([2; 32]), 60),
            Err(Denial::DigestDiffers { .. })
        ));
        let e = pull_by_tag(true, &views, "b", Some([2; 32]), 60).unwrap_err();
        assert_eq!(
            e,
            Denial::Expired {
                tag: "b".into(),
                roles: vec!["timestamp in h2/r".into()]
            }
        );
        assert!(
            e.message("r", "b")
                .contains("has expired (timestamp in h2/r)")
        );
        assert_eq!(
            pull_by_tag(false, &views, "t", Some([1; 32]), 10),
            Err(Denial::TrustDisabled)
        );
        assert_eq!(
            pull_by_digest(true, &views, Some([3; 32]), false, 10),
            Ok(())
        );
        assert_eq!(
            pull_by_digest(true, &views, Some([2; 32]), false, 60),
            Err(Denial::DigestUnsigned {
                expired_roles: vec!["timestamp in h2/r".into()]
            })
        );
        assert_eq!(
            pull_by_digest(true, &views, Some([7; 32]), false, 10),
            Err(Denial::DigestUnsigned {
                expired_roles: vec![]
            })
        );
        assert_eq!(
            pull_by_digest(true, &views, Some([7; 32]), true, 10),
            Ok(())
        );
        assert_eq!(
            pull_by_digest(true, &views, None, false, 10).map_err(|e| e.reason()),
            Err("digest-unsigned")
        );
        assert!(valid_signed_digests(&views, 60).len() == 2);
    }

    #[test]
    fn pushes() {
        let views = [view("h/r", 100, &[("t", 1)])];
        assert_eq!(push_tag(&views, "t", Some([1; 32]), 10), Ok(()));
        assert_eq!(push_tag(&views, "u", Some([2; 32]), 10), Ok(()));
        let e = push_tag(&views, "t", Some([2; 32]), 10).unwrap_err();
        assert!(matches!(e, Denial::Repoint { .. }));
        assert!(
            e.message("r", "t")
                .contains("docker trust revoke REGISTRY/r:t")
        );
        assert_eq!(push_tag(&views, "t", Some([2; 32]), 100), Ok(()), "expired");
    }

    #[test]
    fn accepted_formats_parse_and_follow_the_default() {
        let d =
            PolicyEntry::parse(r#"{"signedPullsOnly":true,"accept":["dct","notation"]}"#).unwrap();
        let r = PolicyEntry::parse(r#"{"accept":["cosign"]}"#).unwrap();
        let both = effective(&d, &PolicyEntry::default()).accept;
        assert!(both.dct && both.notation && !both.cosign);
        assert_eq!(effective(&d, &r).accept.names(), vec!["cosign"]);
        assert!(effective(&d, &r).signed_pulls_only);
        assert!(PolicyEntry::parse(r#"{"accept":[]}"#).is_err());
        assert!(PolicyEntry::parse(r#"{"accept":["gpg"]}"#).is_err());
        assert_eq!(r.to_json(), r#"{"accept":["cosign"]}"#);
        assert!(Accept::default().dct_only());
        assert_eq!(
            Accept::parse(&["notation", "dct"]).unwrap().names(),
            vec!["dct", "notation"]
        );
    }

    #[test]
    fn material_fields_override_the_default() {
        let d = Material::parse(r#"{"cosignKeys":["A"],"trustPolicy":{"version":"1.0"}}"#).unwrap();
        let r = Material::parse(r#"{"cosignKeys":["B"]}"#).unwrap();
        let m = r.over(&d);
        assert_eq!(m.cosign_keys, Some(vec!["B".to_owned()]));
        assert!(m.trust_policy.is_some() && m.trust_store.is_none());
        assert!(Material::parse(r#"{"keys":[]}"#).is_err());
        assert!(Material::default().is_empty());
    }

    #[test]
    fn any_accepted_format_suffices() {
        let dct_denial = Denial::TagUnsigned { tag: "t".into() };
        let none = Findings {
            failures: vec!["no Notary Project signature".into()],
            ..Findings::default()
        };
        let notation = Findings {
            notation: true,
            ..Findings::default()
        };
        let cosign = Findings {
            cosign: true,
            ..Findings::default()
        };
        let dct_only = Accept::default();
        // DCT alone: exactly today's refusal.
        assert_eq!(
            decide(dct_only, Some(Err(dct_denial.clone())), &notation),
            Err(dct_denial.clone())
        );
        assert_eq!(decide(dct_only, Some(Ok(())), &none), Ok(()));
        let dn = Accept::parse(&["dct", "notation"]).unwrap();
        assert_eq!(decide(dn, Some(Err(dct_denial.clone())), &notation), Ok(()));
        assert_eq!(decide(dn, Some(Ok(())), &none), Ok(()));
        // A cosign signature is no use where cosign is not accepted.
        let e = decide(dn, Some(Err(dct_denial.clone())), &cosign).unwrap_err();
        assert_eq!(e.reason(), "no-accepted-signature");
        let msg = e.message("r", "t");
        assert!(msg.contains("accepted: dct,notation"), "{msg}");
        assert!(
            msg.contains("Docker Content Trust: tag t is not signed"),
            "{msg}"
        );
        let n = Accept::parse(&["notation"]).unwrap();
        // DCT is not accepted: a valid DCT signature does not count.
        let e = decide(n, Some(Ok(())), &none).unwrap_err();
        let msg = e.message("r", "t");
        assert!(msg.contains("no Notary Project signature"), "{msg}");
        assert!(!msg.contains("Docker Content Trust:"), "{msg}");
        assert_eq!(decide(n, None, &notation), Ok(()));
        let c = Accept::parse(&["cosign"]).unwrap();
        assert_eq!(decide(c, None, &cosign), Ok(()));
        assert!(decide(c, None, &notation).is_err());
        assert!(
            decide(c, None, &Findings::default())
                .unwrap_err()
                .message("r", "sha256:ab")
                .contains("no signature of sha256:ab verifies")
        );
    }
}
