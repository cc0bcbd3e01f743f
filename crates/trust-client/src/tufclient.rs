//! The verified TUF client: fetches a GUN's trust data in the order the Go notary client does,
//! verifies every step against the root trusted on first use (then pinned in docker's cache,
//! `$DOCKER_CONFIG/trust/tuf/<gun>/metadata/`), and resolves tags as docker does.
//!
//! ```text
//!  cached root ─or─ GET root.json (TOFU)
//!    └▶ GET timestamp.json ─▶ GET snapshot.<sha256>.json ─▶ root changed? GET root.<sha256>.json
//!       (+ N.root.json for each skipped version) ─▶ GET targets.<sha256>.json
//!       ─▶ GET targets/<x>.<sha256>.json for delegations listed in snapshot meta
//!  all verified ─▶ cache written (nothing is written when any check fails)
//! ```
//!
//! Structure: the updater here ([`TufClient`], [`TrustData`], the checks and the cache) knows
//! nothing of HTTP. It asks a [`Transport`] (`transport.rs`) for a file by name
//! ([`MetaFile`]: newest, by version, by checksum) with a size limit and gets bytes, a typed
//! not-found, or an error, as awslabs/tough separates its transport. [`Remote`] (`http.rs`)
//! is the reqwest implementation (auth, status mapping, streamed size limits; timeouts are
//! the caller's `reqwest::Client`'s) and also carries the publisher's server-key and POST
//! requests; [`MemoryTransport`] serves files from memory, which is how the unit tests
//! (`tufclient/tests.rs`) run hostile repositories without a server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use berth_crypto::PublicKey;
use berth_tuf::validate::certified_root_role;
use berth_tuf::{
    DelegationRole, Envelope, FileMeta, KeyRole, RoleBody, RoleName, Root, Signed, Snapshot,
    Targets, Timestamp, verify_threshold,
};

use crate::error::{Error, Result};
pub use crate::http::{Credentials, Remote};
use crate::keystore::{ensure_private_dir, write_private_file};
pub use crate::transport::{FetchError, MemoryTransport, MetaFile, Transport};

/// Notary caps the timestamp download at 1 MiB ...
pub const MAX_TIMESTAMP_SIZE: u64 = 1 << 20;
/// ... and anything else whose length no signed meta gives at 100 MiB.
pub const MAX_METADATA_SIZE: u64 = 100 << 20;
/// Bounds the delegation walk so a hostile targets file cannot make us fetch forever.
const MAX_DELEGATIONS: usize = 1000;

/// A tag as signed: the manifest digest (`sha256:<hex>`) and size, and the role that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub digest: String,
    pub size: u64,
    pub role: String,
}

impl Target {
    fn from_meta(name: &str, meta: &FileMeta, role: &str) -> Option<Target> {
        let sha = meta.hashes.get("sha256").filter(|h| h.len() == 32)?;
        Some(Target {
            name: name.to_owned(),
            digest: format!("sha256:{}", hex::encode(sha)),
            size: u64::try_from(meta.length).ok()?,
            role: role.to_owned(),
        })
    }
}

/// A GUN's trust data after a successful, fully verified update.
#[derive(Debug, Clone)]
pub struct TrustData {
    pub gun: String,
    pub root: Signed<Root>,
    pub timestamp: Signed<Timestamp>,
    pub snapshot: Signed<Snapshot>,
    /// `targets` and every delegation that exists (listed in snapshot meta), by role name.
    pub roles: BTreeMap<String, Signed<Targets>>,
    /// The path prefixes each delegation may sign, already narrowed by its ancestors'.
    allowed_paths: BTreeMap<String, Vec<String>>,
    /// Delegations that exist but were left out (expired, or below their threshold), by name:
    /// none of their targets are trusted. Kept so a caller can say why a tag is not trusted.
    pub skipped: BTreeMap<String, SkippedRole>,
}

/// A delegation the update left out, and why.
#[derive(Debug, Clone)]
pub struct SkippedRole {
    /// Expired (as opposed to not signed by enough of its keys).
    pub expired: bool,
    /// Why the update left it out (`targets/releases expired at …`, or the signature error).
    pub reason: String,
    /// The target names the file lists. Unverified: only for explaining why a tag is not
    /// trusted, never for trusting one.
    pub names: Vec<String>,
}

impl TrustData {
    /// Resolves `tag` as docker does: `targets/releases` first, then `targets`; a tag signed
    /// only in some other delegation is not trusted.
    pub fn target(&self, tag: &str) -> Result<Target> {
        for role in ["targets/releases", "targets"] {
            if let Some(t) = self.targets_in(role).into_iter().find(|t| t.name == tag) {
                return Ok(t);
            }
        }
        Err(Error::NoTrustData {
            tag: tag.to_owned(),
        })
    }

    /// The targets `role` signs that it may sign (paths) and that carry a sha256.
    pub fn targets_in(&self, role: &str) -> Vec<Target> {
        let Some(signed) = self.roles.get(role) else {
            return Vec::new();
        };
        let allowed = self.allowed_paths.get(role);
        signed
            .body
            .targets
            .iter()
            .filter(|(name, _)| allowed.is_none_or(|ps| ps.iter().any(|p| name.starts_with(p))))
            .filter_map(|(name, meta)| Target::from_meta(name, meta, role))
            .collect()
    }

    /// Every delegation declared anywhere in the tree, with the role that declares it.
    pub fn delegations(&self) -> Vec<(String, DelegationRole)> {
        self.roles
            .iter()
            .flat_map(|(parent, s)| {
                s.body
                    .delegations
                    .roles
                    .iter()
                    .map(move |d| (parent.clone(), d.clone()))
            })
            .collect()
    }

    /// The IDs of the keys the role lists whose signature on the role's metadata verifies
    /// (for `targets`, the repository keys of root; for a delegation, the keys its parent
    /// names), sorted. Empty for a role the update did not keep.
    pub fn signed_by(&self, role: &str) -> Vec<String> {
        let Some(signed) = self.roles.get(role) else {
            return Vec::new();
        };
        let keys = match RoleName::parse(role) {
            Ok(RoleName::Targets) => self.root.body.key_role(&RoleName::Targets).ok(),
            Ok(name) => name
                .parent()
                .and_then(|p| self.roles.get(p.as_str()))
                .and_then(|parent| parent.body.key_role(&name)),
            Err(_) => None,
        };
        let Some(keys) = keys else {
            return Vec::new();
        };
        let msg = signed.envelope.signing_input();
        let mut ids: Vec<String> = signed
            .envelope
            .signatures()
            .iter()
            .filter(|sig| {
                keys.keys.get(&sig.keyid).is_some_and(|k| {
                    k.key_id() == sig.keyid
                        && berth_crypto::SigMethod::parse(&sig.method)
                            .is_ok_and(|m| k.verify(m, &msg, &sig.sig).is_ok())
                })
            })
            .map(|sig| sig.keyid.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The key objects a delegation's parent defines for it.
    pub fn delegation_keys(&self, name: &str) -> BTreeMap<String, PublicKey> {
        let Ok(role) = RoleName::parse(name) else {
            return BTreeMap::new();
        };
        role.parent()
            .and_then(|p| self.roles.get(p.as_str()))
            .and_then(|parent| parent.body.key_role(&role))
            .map(|kr| kr.keys)
            .unwrap_or_default()
    }
}

/// The verified client for one GUN, fetching through `T` (HTTP unless told otherwise).
#[derive(Clone, Debug)]
pub struct TufClient<T = Remote> {
    remote: T,
    gun: String,
    trust_dir: PathBuf,
}

impl<T: Transport> TufClient<T> {
    /// `trust_dir` is docker's `$DOCKER_CONFIG/trust`; `gun` is `host[:port]/repository`.
    pub fn new(remote: T, trust_dir: impl Into<PathBuf>, gun: &str) -> Self {
        TufClient {
            remote,
            gun: gun.to_owned(),
            trust_dir: trust_dir.into(),
        }
    }

    pub fn gun(&self) -> &str {
        &self.gun
    }

    /// The transport (for HTTP, the trust server).
    pub fn remote(&self) -> &T {
        &self.remote
    }

    /// `$DOCKER_CONFIG/trust/tuf/<gun>/metadata`, docker's cache of verified metadata.
    pub fn cache_dir(&self) -> PathBuf {
        self.trust_dir.join("tuf").join(&self.gun).join("metadata")
    }

    /// Resolves `tag` to the signed `(digest, size)` after a full update.
    pub async fn resolve(&self, tag: &str) -> Result<Target> {
        self.update().await?.target(tag)
    }

    /// Fetches and verifies the GUN's trust data; on success the cache is updated.
    pub async fn update(&self) -> Result<TrustData> {
        self.update_at(SystemTime::now()).await
    }

    /// [`TufClient::update`] with expiry judged at `now`.
    async fn update_at(&self, now: SystemTime) -> Result<TrustData> {
        let cache = Cache::read(&self.cache_dir())?;
        let gun = self.gun.as_str();

        // 1. The trusted root: pinned in the cache, or trusted on first use.
        let cached_root = cache
            .raw("root")
            .map(|raw| {
                let r = Signed::<Root>::parse(raw).map_err(|e| Error::malformed("root", e))?;
                let own = certified_root_role(&r.body, gun, None).map_err(|m| Error::BadRoot {
                    gun: gun.to_owned(),
                    msg: format!("cached root: {m}"),
                })?;
                verify(&r.envelope, &own, "root")?;
                Ok::<_, Error>(r)
            })
            .transpose()?;
        let mut root = match &cached_root {
            Some(r) => r.clone(),
            None => {
                let raw = self
                    .fetch(MetaFile::Latest { role: "root" }, MAX_METADATA_SIZE)
                    .await?
                    .ok_or_else(|| Error::RepositoryNotExist {
                        gun: gun.to_owned(),
                        server: self.remote.location().to_owned(),
                    })?;
                let r = Signed::<Root>::parse(&raw).map_err(|e| Error::malformed("root", e))?;
                check_root_alone(gun, &r, now)?;
                r
            }
        };

        // 2. Timestamp (fetched without a checksum, capped at 1 MiB).
        let Some(ts_raw) = self
            .fetch(MetaFile::Latest { role: "timestamp" }, MAX_TIMESTAMP_SIZE)
            .await?
        else {
            return Err(if cached_root.is_some() {
                Error::RemoteDeleted {
                    gun: gun.to_owned(),
                    cache: self.cache_dir(),
                }
            } else {
                Error::RepositoryNotExist {
                    gun: gun.to_owned(),
                    server: self.remote.location().to_owned(),
                }
            });
        };
        let timestamp =
            Signed::<Timestamp>::parse(&ts_raw).map_err(|e| Error::malformed("timestamp", e))?;
        verify(
            &timestamp.envelope,
            &root.body.key_role(&RoleName::Timestamp)?,
            "timestamp",
        )?;
        cache.check_rollback("timestamp", timestamp.body.version)?;

        // 3. Snapshot, by the hash the timestamp names.
        let snap_meta = timestamp
            .body
            .snapshot_meta()
            .map_err(|m| Error::malformed("timestamp", m))?
            .clone();
        let snap_raw = self
            .fetch_by_hash("snapshot", &snap_meta, "timestamp")
            .await?;
        let snapshot =
            Signed::<Snapshot>::parse(&snap_raw).map_err(|e| Error::malformed("snapshot", e))?;
        verify(
            &snapshot.envelope,
            &root.body.key_role(&RoleName::Snapshot)?,
            "snapshot",
        )?;
        snapshot
            .body
            .validate_structure()
            .map_err(|m| Error::malformed("snapshot", m))?;
        cache.check_rollback("snapshot", snapshot.body.version)?;

        // 4. Root rotation: the snapshot names the current root; follow the chain to it.
        let root_meta = snapshot
            .body
            .meta
            .get("root")
            .cloned()
            .ok_or_else(|| Error::malformed("snapshot", "no root meta"))?;
        let mut root_changed = cached_root.is_none();
        if root_meta.check(root.raw()).is_err() {
            root = self.rotate_root(root, &root_meta, now).await?;
            root_changed = true;
            // Keys may have rotated with the root: the timestamp and snapshot we already hold
            // must verify under the new root.
            verify(
                &timestamp.envelope,
                &root.body.key_role(&RoleName::Timestamp)?,
                "timestamp",
            )?;
            verify(
                &snapshot.envelope,
                &root.body.key_role(&RoleName::Snapshot)?,
                "snapshot",
            )?;
        }
        check_expiry("root", &root.body, now)?;
        check_expiry("timestamp", &timestamp.body, now)?;
        check_expiry("snapshot", &snapshot.body, now)?;

        // 5. Targets, by the hash the snapshot names.
        let mut roles = BTreeMap::new();
        let mut allowed_paths = BTreeMap::new();
        let mut skipped = BTreeMap::new();
        let t_meta = snapshot
            .body
            .meta
            .get("targets")
            .cloned()
            .ok_or_else(|| Error::malformed("snapshot", "no targets meta"))?;
        let t_raw = self.fetch_by_hash("targets", &t_meta, "snapshot").await?;
        let targets = self.verify_targets(
            &t_raw,
            &RoleName::Targets,
            &root.body.key_role(&RoleName::Targets)?,
            &cache,
            now,
        )?;
        roles.insert("targets".to_owned(), targets);

        // 6. Delegations that exist (listed in snapshot meta), parents before children.
        let mut queue = vec![RoleName::Targets];
        while let Some(parent_name) = queue.pop() {
            let parent = roles[parent_name.as_str()].clone();
            let parent_paths: Option<Vec<String>> =
                allowed_paths.get(parent_name.as_str()).cloned();
            for d in parent.body.delegations.roles.iter().rev() {
                let Some(meta) = snapshot.body.meta.get(&d.name) else {
                    continue;
                };
                if roles.len() >= MAX_DELEGATIONS {
                    return Err(Error::malformed("targets", "too many delegations"));
                }
                let name = RoleName::parse(&d.name).map_err(|e| Error::malformed(&d.name, e))?;
                if roles.contains_key(name.as_str()) || name.parent().as_ref() != Some(&parent_name)
                {
                    continue;
                }
                let keys = parent
                    .body
                    .key_role(&name)
                    .ok_or_else(|| Error::malformed(&d.name, "not declared by its parent"))?;
                let raw = self.fetch_by_hash(&d.name, meta, "snapshot").await?;
                // As notary: a delegation below its threshold (e.g. its signer was removed) or
                // expired is skipped, so none of its targets are trusted; anything else aborts.
                let signed = match self.verify_targets(&raw, &name, &keys, &cache, now) {
                    Ok(s) => s,
                    Err(e @ (Error::BadSignature { .. } | Error::Expired { .. })) => {
                        let names = Signed::<Targets>::parse(&raw)
                            .map(|s| s.body.targets.keys().cloned().collect())
                            .unwrap_or_default();
                        let (expired, reason) = match &e {
                            Error::Expired { role, expires } => {
                                (true, format!("{role} expired at {expires}"))
                            }
                            e => (false, e.to_string()),
                        };
                        skipped.insert(
                            d.name.clone(),
                            SkippedRole {
                                expired,
                                reason,
                                names,
                            },
                        );
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                // A child may only sign paths its parent may sign.
                let paths: Vec<String> = d
                    .paths
                    .iter()
                    .filter(|p| {
                        parent_paths
                            .as_ref()
                            .is_none_or(|pp| pp.iter().any(|q| p.starts_with(q.as_str())))
                    })
                    .cloned()
                    .collect();
                allowed_paths.insert(d.name.clone(), paths);
                roles.insert(d.name.clone(), signed);
                queue.push(name);
            }
        }

        // 7. Everything verified: record it in the cache.
        let mut files: Vec<(String, &[u8])> = vec![
            ("timestamp".into(), timestamp.raw()),
            ("snapshot".into(), snapshot.raw()),
        ];
        if root_changed {
            files.push(("root".into(), root.raw()));
        }
        for (name, s) in &roles {
            files.push((name.clone(), s.raw()));
        }
        cache.write(&files)?;
        Ok(TrustData {
            gun: gun.to_owned(),
            root,
            timestamp,
            snapshot,
            roles,
            allowed_paths,
            skipped,
        })
    }

    /// `file` from the transport, `None` when it has no such file. A transport that returns
    /// more than `limit` bytes is refused as if it had stopped at the limit.
    async fn fetch(&self, file: MetaFile<'_>, limit: u64) -> Result<Option<Vec<u8>>> {
        match self.remote.fetch(&self.gun, &file, limit).await {
            Ok(raw) if raw.len() as u64 > limit => Err(Error::TooLarge {
                role: file.role().to_owned(),
                limit,
            }),
            Ok(raw) => Ok(Some(raw)),
            Err(FetchError::NotFound { .. }) => Ok(None),
            Err(FetchError::Failed(e)) => Err(e),
        }
    }

    async fn fetch_by_hash(
        &self,
        role: &str,
        meta: &FileMeta,
        by: &'static str,
    ) -> Result<Vec<u8>> {
        let sha = meta
            .hashes
            .get("sha256")
            .filter(|h| h.len() == 32)
            .ok_or_else(|| Error::malformed(by, format!("no sha256 for {role}")))?;
        let limit = u64::try_from(meta.length)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(MAX_METADATA_SIZE)
            .min(MAX_METADATA_SIZE);
        let file = MetaFile::Checksum { role, sha256: sha };
        let raw = match self.remote.fetch(&self.gun, &file, limit).await {
            Ok(raw) if raw.len() as u64 > limit => {
                return Err(Error::TooLarge {
                    role: role.to_owned(),
                    limit,
                });
            }
            Ok(raw) => raw,
            Err(FetchError::NotFound { url }) => {
                return Err(Error::Server {
                    method: "GET",
                    url,
                    status: 404,
                    body: format!("{role} named by {by} is missing"),
                });
            }
            Err(FetchError::Failed(e)) => return Err(e),
        };
        if raw.len() as i64 != meta.length {
            return Err(Error::HashMismatch {
                role: role.to_owned(),
                by,
                msg: format!("length {} instead of {}", raw.len(), meta.length),
            });
        }
        meta.check(&raw).map_err(|msg| Error::HashMismatch {
            role: role.to_owned(),
            by,
            msg,
        })?;
        Ok(raw)
    }

    fn verify_targets(
        &self,
        raw: &[u8],
        name: &RoleName,
        keys: &KeyRole,
        cache: &Cache,
        now: SystemTime,
    ) -> Result<Signed<Targets>> {
        let role = name.as_str();
        let s = Signed::<Targets>::parse(raw).map_err(|e| Error::malformed(role, e))?;
        verify(&s.envelope, keys, role)?;
        s.body
            .validate_structure(name)
            .map_err(|m| Error::malformed(role, m))?;
        cache.check_rollback(role, s.body.version)?;
        check_expiry(role, &s.body, now)?;
        Ok(s)
    }

    /// Follows root versions from `trusted` to the root the snapshot names: each version
    /// `N.root.json` must be signed by its predecessor's root keys and by its own.
    async fn rotate_root(
        &self,
        trusted: Signed<Root>,
        meta: &FileMeta,
        now: SystemTime,
    ) -> Result<Signed<Root>> {
        let gun = self.gun.as_str();
        let newest_raw = self.fetch_by_hash("root", meta, "snapshot").await?;
        let newest = Signed::<Root>::parse(&newest_raw).map_err(|e| Error::malformed("root", e))?;
        if newest.body.version < trusted.body.version {
            return Err(Error::Rollback {
                role: "root".into(),
                cached: trusted.body.version,
                remote: newest.body.version,
            });
        }
        if newest.body.version == trusted.body.version {
            return Err(Error::BadRoot {
                gun: gun.to_owned(),
                msg: format!(
                    "the server's root differs from the trusted one but has the same version {}",
                    trusted.body.version
                ),
            });
        }
        let mut cur = trusted;
        for v in cur.body.version + 1..newest.body.version {
            let raw = self
                .fetch(
                    MetaFile::Version {
                        role: "root",
                        version: v,
                    },
                    MAX_METADATA_SIZE,
                )
                .await?
                .ok_or_else(|| Error::BadRoot {
                    gun: gun.to_owned(),
                    msg: format!("root version {v} of the rotation chain is missing"),
                })?;
            let next = Signed::<Root>::parse(&raw).map_err(|e| Error::malformed("root", e))?;
            cur = check_rotation(gun, &cur, next, v, now)?;
        }
        let v = newest.body.version;
        check_rotation(gun, &cur, newest, v, now)
    }
}

/// A root trusted on first use: well-formed, signed by its own valid certificates.
fn check_root_alone(gun: &str, r: &Signed<Root>, now: SystemTime) -> Result<()> {
    let bad = |msg: String| Error::BadRoot {
        gun: gun.to_owned(),
        msg,
    };
    r.body.validate_structure().map_err(bad)?;
    let own = certified_root_role(&r.body, gun, Some(now)).map_err(bad)?;
    verify(&r.envelope, &own, "root")?;
    Ok(())
}

/// One step of a rotation chain: version `v`, signed by `prev`'s root keys and by its own.
fn check_rotation(
    gun: &str,
    prev: &Signed<Root>,
    next: Signed<Root>,
    v: i64,
    now: SystemTime,
) -> Result<Signed<Root>> {
    if next.body.version != v {
        return Err(Error::BadRoot {
            gun: gun.to_owned(),
            msg: format!("asked for root version {v}, got {}", next.body.version),
        });
    }
    let old = certified_root_role(&prev.body, gun, None).map_err(|m| Error::BadRoot {
        gun: gun.to_owned(),
        msg: m,
    })?;
    verify_threshold(&next.envelope, &old).map_err(|e| Error::BadRoot {
        gun: gun.to_owned(),
        msg: format!(
            "could not rotate trust to a new trusted root (version {v}): not signed by the previous root's keys: {e}"
        ),
    })?;
    check_root_alone(gun, &next, now)?;
    Ok(next)
}

fn verify(env: &Envelope, keys: &KeyRole, role: &str) -> Result<()> {
    verify_threshold(env, keys)
        .map(|_| ())
        .map_err(|e| Error::BadSignature {
            role: role.to_owned(),
            msg: e.to_string(),
        })
}

fn check_expiry<T: RoleBody>(role: &str, body: &T, now: SystemTime) -> Result<()> {
    if body
        .is_expired(now)
        .map_err(|e| Error::malformed(role, e))?
    {
        return Err(Error::Expired {
            role: role.to_owned(),
            expires: body.expires().to_owned(),
        });
    }
    Ok(())
}

/// The metadata cache directory: read once, written only after a complete verification.
struct Cache {
    dir: PathBuf,
    files: BTreeMap<String, Vec<u8>>,
}

impl Cache {
    fn read(dir: &Path) -> Result<Cache> {
        let mut files = BTreeMap::new();
        read_dir_into(dir, dir, &mut files)?;
        Ok(Cache {
            dir: dir.to_owned(),
            files,
        })
    }

    fn raw(&self, role: &str) -> Option<&[u8]> {
        self.files.get(role).map(Vec::as_slice)
    }

    /// The server must never go back to an older version than one we already trusted.
    fn check_rollback(&self, role: &str, remote: i64) -> Result<()> {
        let cached = self
            .raw(role)
            .and_then(|raw| Envelope::parse(raw).ok())
            .and_then(|e| e.version());
        match cached {
            Some(cached) if remote < cached => Err(Error::Rollback {
                role: role.to_owned(),
                cached,
                remote,
            }),
            _ => Ok(()),
        }
    }

    fn write(&self, files: &[(String, &[u8])]) -> Result<()> {
        for (role, raw) in files {
            if self.raw(role) == Some(*raw) {
                continue;
            }
            let path = self.dir.join(format!("{role}.json"));
            if let Some(parent) = path.parent() {
                ensure_private_dir(parent)?;
            }
            write_private_file(&path, raw)?;
        }
        Ok(())
    }
}

fn read_dir_into(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir)(e)),
    };
    for e in rd {
        let e = e.map_err(Error::io(dir))?;
        let path = e.path();
        if path.is_dir() {
            read_dir_into(base, &path, out)?;
        } else if let Some(stem) = path
            .strip_prefix(base)
            .ok()
            .and_then(|p| p.to_str())
            .and_then(|p| p.strip_suffix(".json"))
        {
            let raw = std::fs::read(&path).map_err(Error::io(&path))?;
            out.insert(stem.to_owned(), raw);
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
