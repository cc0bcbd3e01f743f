//! Registry attestation (issue 15, opt-in per repository): when a DCT update is accepted, the
//! registry signs a record of each newly signed or changed tag (the TUF targets entry: tag,
//! digest, length, who signed it with which keys, the roles' versions, when) as a Notary Project
//! signature with a registry key, so the record of a DCT signature travels with the image.
//!
//! This module holds the pure part (which tags an update attests, the record and its
//! annotations) and the settings behind the switch and the registry key; the server signs and
//! stores the referrer (`berth_server::attest`).
//!
//! The record travels as annotations of the signed payload's `targetArtifact` (covered by the
//! signature, so any Notary Project verifier checks it), strings as OCI annotations are, in the
//! same names and forms `berth trust migrate` writes (one record format for both bridges):
//!
//! | annotation                     | value                                                        |
//! |--------------------------------|--------------------------------------------------------------|
//! | `io.berth.dct.tag`             | the tag (TUF target name)                                    |
//! | `io.berth.dct.gun`             | the trust collection, `host[:port]/repository`               |
//! | `io.berth.dct.roles`           | the roles listing the digest, comma-separated, the one docker resolves the tag from first |
//! | `io.berth.dct.signers`         | the signers as `docker trust inspect` names them, comma-separated |
//! | `io.berth.dct.keyids`          | JSON object: signer role -> the key IDs its parent delegates to it |
//! | `io.berth.dct.targets-version` | the version of the `targets` role                            |
//! | `io.berth.dct.role-versions`   | JSON object: role -> version, for every role in `roles`      |
//! | `io.berth.dct.length`          | the target's length (= the manifest's size)                  |
//! | `io.berth.dct.time`            | RFC 3339 UTC, when the update was accepted                   |
//! | `io.berth.dct.source`          | `registry-attestation`                                       |
//!
//! The digest is the payload's `targetArtifact.digest` itself.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::service::{TargetChange, TargetChangeKind, TrustService};
use crate::view::TrustView;

/// The prefix every name below shares.
pub const PREFIX: &str = "io.berth.dct.";
pub const TAG: &str = "io.berth.dct.tag";
pub const GUN: &str = "io.berth.dct.gun";
pub const ROLES: &str = "io.berth.dct.roles";
pub const SIGNERS: &str = "io.berth.dct.signers";
pub const KEYIDS: &str = "io.berth.dct.keyids";
pub const TARGETS_VERSION: &str = "io.berth.dct.targets-version";
pub const ROLE_VERSIONS: &str = "io.berth.dct.role-versions";
pub const LENGTH: &str = "io.berth.dct.length";
pub const TIME: &str = "io.berth.dct.time";
pub const SOURCE: &str = "io.berth.dct.source";
/// The value of [`SOURCE`] in the registry's attestations (`berth trust migrate` writes its own).
pub const SOURCE_REGISTRY: &str = "registry-attestation";

/// The registry-wide default of the switch (`true` / `false`; absent = off).
pub const DEFAULT_SETTING: &str = "attestation.default";
/// A repository's own switch: `attestation.repo.<repository>` = `true` / `false` / `default`.
pub const REPO_SETTING_PREFIX: &str = "attestation.repo.";
/// The registry key: JSON `{"cert": PEM, "key": hex of the sealed PKCS#8}`, written once
/// (insert-if-absent), so every node of a cluster signs with the same key.
pub const KEY_SETTING: &str = "attestation.key";
/// The sealed key's associated data: it opens only as this record.
const KEY_AAD: &[u8] = b"attestation.key";

/// What the registry attests about one tag, read from the trust data the update left current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub gun: String,
    pub tag: String,
    /// `sha256:<hex>`.
    pub digest: String,
    pub length: i64,
    /// The roles listing the digest for the tag: the one docker resolves it from
    /// (`targets/releases`, else `targets`) first, then each signer's, by role.
    pub roles: Vec<String>,
    /// The signers as `docker trust inspect` names them (`Repo Admin`, `alice`), by role.
    pub signers: Vec<String>,
    /// Each signer's role -> the key IDs delegated to it (the root's for `targets`).
    pub keyids: BTreeMap<String, Vec<String>>,
    /// The version of `targets` (0 if absent, which a view never is).
    pub targets_version: i64,
    /// Each role of [`Self::roles`] -> its version.
    pub role_versions: BTreeMap<String, i64>,
    /// Unix seconds.
    pub time: i64,
}

impl Record {
    /// The record of `tag` in `view`, `None` when the tag is not signed there.
    pub fn from_view(view: &TrustView, tag: &str, time: i64) -> Option<Record> {
        let t = view.tags.get(tag)?;
        let version = |role: &str| {
            view.roles
                .iter()
                .find(|r| r.role == role)
                .map(|r| r.version)
        };
        let mut roles = vec![t.role.clone()];
        for s in &t.signers {
            if !roles.contains(&s.role) {
                roles.push(s.role.clone());
            }
        }
        Some(Record {
            gun: view.gun.clone(),
            tag: tag.to_owned(),
            digest: format!("sha256:{}", hex::encode(t.sha256)),
            length: t.length,
            role_versions: roles
                .iter()
                .filter_map(|r| Some((r.clone(), version(r)?)))
                .collect(),
            roles,
            signers: t.signers.iter().map(|s| s.name.clone()).collect(),
            keyids: t
                .signers
                .iter()
                .map(|s| (s.role.clone(), s.key_ids.clone()))
                .collect(),
            targets_version: version("targets").unwrap_or(0),
            time,
        })
    }

    /// The record as `targetArtifact` annotations (see the module's table).
    pub fn annotations(&self) -> Map<String, Value> {
        let keyids: Map<String, Value> = self
            .keyids
            .iter()
            .map(|(r, k)| (r.clone(), Value::from(k.clone())))
            .collect();
        let versions: Map<String, Value> = self
            .role_versions
            .iter()
            .map(|(r, v)| (r.clone(), Value::from(*v)))
            .collect();
        let s = |v: &str| Value::String(v.to_owned());
        [
            (TAG, s(&self.tag)),
            (GUN, s(&self.gun)),
            (ROLES, s(&self.roles.join(","))),
            (SIGNERS, s(&self.signers.join(","))),
            (KEYIDS, s(&Value::Object(keyids).to_string())),
            (TARGETS_VERSION, s(&self.targets_version.to_string())),
            (ROLE_VERSIONS, s(&Value::Object(versions).to_string())),
            (LENGTH, s(&self.length.to_string())),
            (TIME, s(&rfc3339(self.time))),
            (SOURCE, s(SOURCE_REGISTRY)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// The records an accepted update calls for: each tag the update added or changed whose
/// digest is now the one docker resolves it to (once per tag, however many roles listed it).
/// A removal attests nothing; nor does a change in a role docker does not resolve the tag from
/// when that role's digest is not the resolved one.
pub fn records_for(changes: &[TargetChange], view: &TrustView, time: i64) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    for c in changes {
        if c.kind == TargetChangeKind::Removed || out.iter().any(|r| r.tag == c.name) {
            continue;
        }
        let Some(r) = Record::from_view(view, &c.name, time) else {
            continue;
        };
        if c.sha256.as_deref() == r.digest.strip_prefix("sha256:") {
            out.push(r);
        }
    }
    out
}

/// Unix seconds as RFC 3339 UTC (`2026-12-01T13:45:00Z`).
pub fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A repository's own switch: on, off, or following the registry default.
fn parse_switch(v: Option<&str>) -> Option<bool> {
    match v.map(str::trim) {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    }
}

/// The registry key as stored: the certificate (PEM) and the unsealed PKCS#8 private key.
pub struct RegistryKey {
    pub cert_pem: String,
    pub pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for RegistryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryKey(..)")
    }
}

fn storage(e: berth_storage::Error) -> Error {
    Error::Storage(e)
}

impl TrustService {
    /// The registry default (`None`) or `repo`'s own switch (`None` = follows the default).
    pub async fn attestation_setting(&self, repo: Option<&str>) -> Result<Option<bool>> {
        let name = repo.map_or_else(
            || DEFAULT_SETTING.to_owned(),
            |r| format!("{REPO_SETTING_PREFIX}{r}"),
        );
        let v = self.settings.setting_get(&name).await.map_err(storage)?;
        Ok(parse_switch(v.as_deref()))
    }

    /// Sets the default (`repo` None) or a repository's switch; `None` = follow the default
    /// (settings cannot be deleted, so that is stored as `default`).
    pub async fn set_attestation(&self, repo: Option<&str>, on: Option<bool>) -> Result<()> {
        let name = repo.map_or_else(
            || DEFAULT_SETTING.to_owned(),
            |r| format!("{REPO_SETTING_PREFIX}{r}"),
        );
        let v = match on {
            Some(true) => "true",
            Some(false) => "false",
            None => "default",
        };
        self.settings.setting_set(&name, v).await.map_err(storage)
    }

    /// Every repository that sets its own switch, by name.
    pub async fn attestation_settings(&self) -> Result<Vec<(String, bool)>> {
        Ok(self
            .settings
            .settings_list()
            .await
            .map_err(storage)?
            .into_iter()
            .filter_map(|(k, v)| {
                let repo = k.strip_prefix(REPO_SETTING_PREFIX)?;
                Some((repo.to_owned(), parse_switch(Some(&v))?))
            })
            .collect())
    }

    /// Whether accepted updates of `repo` are attested: its own switch, else the default
    /// (two in-memory settings reads on both stores).
    pub async fn attestation_enabled(&self, repo: &str) -> Result<bool> {
        if let Some(on) = self.attestation_setting(Some(repo)).await? {
            return Ok(on);
        }
        Ok(self.attestation_setting(None).await?.unwrap_or(false))
    }

    /// The registry key, made by `generate` (certificate PEM, PKCS#8 DER) the first time any
    /// node asks: sealed with the trust key vault and stored insert-if-absent, so nodes racing
    /// at the first attestation all end up with the one stored key.
    pub async fn attestation_key(
        &self,
        generate: impl FnOnce() -> std::result::Result<(String, Zeroizing<Vec<u8>>), String>,
    ) -> Result<RegistryKey> {
        let stored = match self
            .settings
            .setting_get(KEY_SETTING)
            .await
            .map_err(storage)?
        {
            Some(v) => v,
            None => {
                let (cert_pem, pkcs8) = generate().map_err(Error::Crypto)?;
                let sealed = self.vault.seal(&pkcs8, KEY_AAD)?;
                let v = serde_json::json!({"cert": cert_pem, "key": hex::encode(sealed)});
                self.settings
                    .setting_insert_if_absent(KEY_SETTING, &v.to_string())
                    .await
                    .map_err(storage)?
            }
        };
        let v: Value = serde_json::from_str(&stored)
            .map_err(|e| Error::Crypto(format!("setting {KEY_SETTING} is not JSON: {e}")))?;
        let cert_pem = v["cert"].as_str().unwrap_or_default().to_owned();
        let sealed = hex::decode(v["key"].as_str().unwrap_or_default())
            .map_err(|_| Error::Unseal("attestation".into()))?;
        let pkcs8 = self
            .vault
            .unseal(&sealed, KEY_AAD)
            .map_err(|_| Error::Unseal("attestation".into()))?;
        if cert_pem.is_empty() {
            return Err(Error::Crypto(format!("setting {KEY_SETTING} has no cert")));
        }
        Ok(RegistryKey { cert_pem, pkcs8 })
    }

    /// The registry key's certificate, `None` before the first attestation made the key.
    pub async fn attestation_certificate(&self) -> Result<Option<String>> {
        let Some(stored) = self
            .settings
            .setting_get(KEY_SETTING)
            .await
            .map_err(storage)?
        else {
            return Ok(None);
        };
        let v: Value = serde_json::from_str(&stored)
            .map_err(|e| Error::Crypto(format!("setting {KEY_SETTING} is not JSON: {e}")))?;
        Ok(v["cert"].as_str().map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{RoleState, SignedTag, Signer};

    fn view() -> TrustView {
        let st = |role: &str, version| RoleState {
            role: role.into(),
            version,
            expires: i64::MAX,
        };
        let signer = |name: &str, role: &str, keys: &[&str]| Signer {
            name: name.into(),
            role: role.into(),
            key_ids: keys.iter().map(|k| (*k).to_owned()).collect(),
        };
        TrustView {
            gun: "localhost:5000/team/app".into(),
            roles: vec![
                st("root", 1),
                st("targets", 3),
                st("targets/alice", 2),
                st("targets/releases", 5),
                st("snapshot", 7),
                st("timestamp", 9),
            ],
            tags: [
                (
                    "v1".to_owned(),
                    SignedTag {
                        sha256: [0xab; 32],
                        length: 527,
                        role: "targets/releases".into(),
                        signers: vec![signer("alice", "targets/alice", &["k1", "k2"])],
                    },
                ),
                (
                    "v2".to_owned(),
                    SignedTag {
                        sha256: [0xcd; 32],
                        length: 100,
                        role: "targets".into(),
                        signers: vec![signer("Repo Admin", "targets", &["root-t"])],
                    },
                ),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn change(
        name: &str,
        role: &str,
        kind: TargetChangeKind,
        sha: Option<[u8; 32]>,
    ) -> TargetChange {
        TargetChange {
            role: role.into(),
            name: name.into(),
            kind,
            sha256: sha.map(hex::encode),
            length: sha.map(|_| 1),
        }
    }

    #[test]
    fn record_from_a_targets_entry() {
        let v = view();
        let r = Record::from_view(&v, "v1", 1_764_596_700).unwrap();
        assert_eq!(r.digest, format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(r.length, 527);
        let a = r.annotations();
        let get = |k: &str| a[k].as_str().unwrap().to_owned();
        assert_eq!(get(TAG), "v1");
        assert_eq!(get(GUN), "localhost:5000/team/app");
        assert_eq!(get(LENGTH), "527");
        assert_eq!(get(ROLES), "targets/releases,targets/alice");
        assert_eq!(get(SIGNERS), "alice");
        assert_eq!(get(KEYIDS), r#"{"targets/alice":["k1","k2"]}"#);
        assert_eq!(get(TARGETS_VERSION), "3");
        assert_eq!(
            get(ROLE_VERSIONS),
            r#"{"targets/alice":2,"targets/releases":5}"#
        );
        assert_eq!(get(TIME), "2025-12-01T13:45:00Z");
        assert_eq!(get(SOURCE), SOURCE_REGISTRY);
        assert_eq!(a.len(), 10);
        // The admin's own targets entry: one role, named Repo Admin.
        let r = Record::from_view(&v, "v2", 0).unwrap();
        let a = r.annotations();
        assert_eq!(a[ROLES], "targets");
        assert_eq!(a[SIGNERS], "Repo Admin");
        assert_eq!(a[KEYIDS], r#"{"targets":["root-t"]}"#);
        assert_eq!(a[ROLE_VERSIONS], r#"{"targets":3}"#);
        assert_eq!(a[TIME], "1970-01-01T00:00:00Z");
        assert!(Record::from_view(&v, "nope", 0).is_none());
    }

    #[test]
    fn which_changes_are_attested() {
        let v = view();
        let changes = [
            // docker trust sign: the signer's role and targets/releases, one record.
            change(
                "v1",
                "targets/alice",
                TargetChangeKind::Added,
                Some([0xab; 32]),
            ),
            change(
                "v1",
                "targets/releases",
                TargetChangeKind::Added,
                Some([0xab; 32]),
            ),
            // A digest docker does not resolve the tag to: nothing.
            change(
                "v2",
                "targets/alice",
                TargetChangeKind::Changed,
                Some([0x01; 32]),
            ),
            // Removed, and a tag the view does not have: nothing.
            change("v3", "targets", TargetChangeKind::Removed, None),
            change("gone", "targets", TargetChangeKind::Added, Some([0xab; 32])),
        ];
        let rs = records_for(&changes, &v, 5);
        assert_eq!(rs.len(), 1, "{rs:?}");
        assert_eq!(rs[0].tag, "v1");
        assert_eq!(rs[0].time, 5);
        let rs = records_for(
            &[change(
                "v2",
                "targets",
                TargetChangeKind::Changed,
                Some([0xcd; 32]),
            )],
            &v,
            5,
        );
        assert_eq!(rs.len(), 1);
        assert!(records_for(&[], &v, 5).is_empty());
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
