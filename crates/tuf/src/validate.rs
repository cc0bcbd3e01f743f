//! The server's validation of a client update (Notary `server/handlers/validation.go`), as a
//! pure function over the stored files and the uploaded ones.
//!
//! Order, as in Notary: root (rotation rules, certificates), then targets and delegations
//! shallowest first (each against its parent's keys), then the snapshot (uploaded: verified
//! and cross-checked against every loaded role; absent: the caller generates one from
//! [`SnapshotPlan::Generate`]). The timestamp is always the server's, so an uploaded one is
//! ignored. Version monotonicity is [`check_versions`], meant to run inside the storage
//! transaction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_crypto::x509;

use crate::meta::{FileMeta, Snapshot, Timestamp};
use crate::metadata::{RoleBody, Signed};
use crate::role::RoleName;
use crate::root::Root;
use crate::targets::{DelegationRole, Targets};
use crate::verify::{KeyRole, verify_threshold};
use crate::{Error, time};

/// Server-side expiry defaults (Notary `NotaryDefaultExpiries`).
pub const SNAPSHOT_EXPIRY: Duration = Duration::from_secs(3 * 365 * 24 * 3600);
pub const TIMESTAMP_EXPIRY: Duration = Duration::from_secs(14 * 24 * 3600);

/// What the server must do about the snapshot after a valid update.
#[derive(Debug)]
pub enum SnapshotPlan {
    /// The client uploaded a snapshot that verified; store it as is.
    Uploaded(Signed<Snapshot>),
    /// Generate the next snapshot, setting these meta entries (root and every targets role
    /// loaded during validation), if the server holds the snapshot key; otherwise answer
    /// [`Error::BadHierarchy`] with [`missing_snapshot_key`].
    Generate { updates: BTreeMap<String, FileMeta> },
}

/// A validated update.
#[derive(Debug)]
pub struct Validated {
    /// The root in force after the update (uploaded or stored).
    pub root: Arc<Signed<Root>>,
    /// Uploaded files to store, in validation order (root first, timestamp excluded).
    pub files: Vec<ValidatedFile>,
    /// The uploaded targets and delegations as parsed here, for a caller that keeps them.
    pub targets: BTreeMap<RoleName, Arc<Signed<Targets>>>,
    pub snapshot: SnapshotPlan,
}

/// The current stored files validation reads, parsed when asked for: a server can answer from
/// metadata it keeps parsed instead of parsing the same stored bytes on every update. A map of
/// raw files (role -> bytes) parses on each call.
pub trait StoredRoles {
    /// Whether a current file of `role` is stored.
    fn has(&self, role: &RoleName) -> bool;
    /// The stored root, parsed (`None`: there is none).
    fn root(&self) -> Option<Result<Arc<Signed<Root>>, Error>>;
    /// A stored targets-like role, parsed (`None`: there is none).
    fn targets(&self, role: &RoleName) -> Option<Result<Arc<Signed<Targets>>, Error>>;
}

impl StoredRoles for BTreeMap<RoleName, Vec<u8>> {
    fn has(&self, role: &RoleName) -> bool {
        self.contains_key(role)
    }

    fn root(&self) -> Option<Result<Arc<Signed<Root>>, Error>> {
        self.get(&RoleName::Root)
            .map(|raw| Signed::parse(raw).map(Arc::new))
    }

    fn targets(&self, role: &RoleName) -> Option<Result<Arc<Signed<Targets>>, Error>> {
        self.get(role).map(|raw| Signed::parse(raw).map(Arc::new))
    }
}

/// One uploaded file that passed validation, with the version read while validating it (so the
/// caller never parses it again, and never has to guess a version for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedFile {
    pub role: RoleName,
    pub raw: Vec<u8>,
    pub version: i64,
}

/// The error Notary returns when it would have to sign a snapshot without the key.
pub fn missing_snapshot_key() -> Error {
    Error::BadHierarchy {
        missing: "snapshot".into(),
        msg: "no snapshot was included in update and server does not hold current snapshot key for repository".into(),
    }
}

/// Validates `uploaded` (role → raw bytes) against `stored` (role → current raw bytes) for
/// `gun` at `now`.
pub fn validate_update(
    gun: &str,
    now: SystemTime,
    stored: &dyn StoredRoles,
    uploaded: &BTreeMap<RoleName, Vec<u8>>,
) -> Result<Validated, Error> {
    let mut files = Vec::new();
    // 1. The stored root may be expired; a stored root that does not even parse is an error
    //    of the repository, not of this update.
    let stored_root = stored.root().transpose()?;

    // 2. Root.
    let root = match (uploaded.get(&RoleName::Root), stored_root) {
        (Some(raw), prev) => {
            let root = validate_root(gun, raw, prev.as_deref(), now)?;
            files.push(ValidatedFile {
                role: RoleName::Root,
                raw: raw.clone(),
                version: root.body.version,
            });
            Arc::new(root)
        }
        (None, Some(prev)) => prev,
        (None, None) => {
            return Err(Error::Validation(
                "no pre-existing root and no root provided in update.".into(),
            ));
        }
    };

    // 3. Targets and delegations, shallowest first; ancestors come from the store.
    let mut loaded: BTreeMap<RoleName, Arc<Signed<Targets>>> = BTreeMap::new();
    let mut loaded_raw: BTreeMap<RoleName, Vec<u8>> = BTreeMap::new();
    let mut uploaded_targets = BTreeMap::new();
    let mut order: Vec<&RoleName> = uploaded.keys().filter(|r| r.is_targets_like()).collect();
    order.sort_by_key(|r| (r.depth(), (*r).clone()));
    for role in order {
        let raw = &uploaded[role];
        let bad = |m: String| Error::BadTargets(m);
        let (key_role, declared) = match role.parent() {
            None => (root.body.key_role(role)?, None),
            Some(parent) => {
                load_ancestors(role, stored, &mut loaded, &mut loaded_raw)?;
                let p = loaded.get(&parent).ok_or_else(|| {
                    bad(format!("parent role {parent} of {role} is not available"))
                })?;
                let kr = p
                    .body
                    .key_role(role)
                    .ok_or_else(|| bad(format!("{role} is not delegated by {parent}")))?;
                (kr, p.body.delegation(role).cloned())
            }
        };
        let t = Signed::<Targets>::parse(raw).map_err(|e| bad(format!("{role}: {e}")))?;
        verify_threshold(&t.envelope, &key_role).map_err(|e| bad(e.to_string()))?;
        t.body.validate_structure(role).map_err(bad)?;
        // Beyond Notary (which leaves this to clients): a delegation may only sign targets within
        // the paths its parent gave it, and may only hand on paths within those.
        if let Some(d) = &declared {
            check_paths(role, d, &t.body)?;
        }
        if t.body.is_expired(now)? {
            return Err(bad(format!("{role} expired at {}", t.body.expires)));
        }
        files.push(ValidatedFile {
            role: role.clone(),
            raw: raw.clone(),
            version: t.body.version,
        });
        let t = Arc::new(t);
        uploaded_targets.insert(role.clone(), t.clone());
        loaded.insert(role.clone(), t);
        loaded_raw.insert(role.clone(), raw.clone());
    }

    // 4. Snapshot.
    let root_raw = root.raw().to_vec();
    let snapshot = match uploaded.get(&RoleName::Snapshot) {
        Some(raw) => {
            let bad = |m: String| Error::BadSnapshot(m);
            let s = Signed::<Snapshot>::parse(raw).map_err(|e| bad(e.to_string()))?;
            verify_threshold(&s.envelope, &root.body.key_role(&RoleName::Snapshot)?)
                .map_err(|e| bad(e.to_string()))?;
            s.body.validate_structure().map_err(bad)?;
            if s.body.is_expired(now)? {
                return Err(bad(format!("snapshot expired at {}", s.body.expires)));
            }
            let loaded_roles = std::iter::once((RoleName::Root, &root_raw))
                .chain(loaded_raw.iter().map(|(r, b)| (r.clone(), b)));
            for (role, bytes) in loaded_roles {
                let m = s
                    .body
                    .meta
                    .get(role.as_str())
                    .ok_or_else(|| bad(format!("snapshot is missing metadata for {role}")))?;
                m.check(bytes).map_err(|e| bad(format!("{role}: {e}")))?;
            }
            files.push(ValidatedFile {
                role: RoleName::Snapshot,
                raw: raw.clone(),
                version: s.body.version,
            });
            SnapshotPlan::Uploaded(s)
        }
        None => {
            if !stored.has(&RoleName::Snapshot) && !loaded.contains_key(&RoleName::Targets) {
                // Notary cannot build a first snapshot without targets.
                return Err(Error::BadHierarchy {
                    missing: "targets".into(),
                    msg: "no targets was included in the first update of the repository".into(),
                });
            }
            let mut updates = BTreeMap::new();
            updates.insert("root".to_owned(), FileMeta::for_bytes(&root_raw));
            for (role, bytes) in &loaded_raw {
                updates.insert(role.as_str().to_owned(), FileMeta::for_bytes(bytes));
            }
            SnapshotPlan::Generate { updates }
        }
    };
    Ok(Validated {
        root,
        files,
        targets: uploaded_targets,
        snapshot,
    })
}

/// A delegated role's targets and its own delegations must stay within `declared.paths`.
fn check_paths(role: &RoleName, declared: &DelegationRole, body: &Targets) -> Result<(), Error> {
    if let Some(name) = body.targets.keys().find(|n| !declared.allows_path(n)) {
        return Err(Error::BadTargets(format!(
            "{role} signs target {name:?} outside its allowed paths {:?}",
            declared.paths
        )));
    }
    for child in &body.delegations.roles {
        if let Some(p) = child.paths.iter().find(|p| !declared.allows_path(p)) {
            return Err(Error::BadTargets(format!(
                "{role} delegates path {p:?} to {} outside its own paths {:?}",
                child.name, declared.paths
            )));
        }
    }
    Ok(())
}

/// Loads the stored ancestors of `role` that the update did not bring (expiry not checked).
fn load_ancestors(
    role: &RoleName,
    stored: &dyn StoredRoles,
    loaded: &mut BTreeMap<RoleName, Arc<Signed<Targets>>>,
    loaded_raw: &mut BTreeMap<RoleName, Vec<u8>>,
) -> Result<(), Error> {
    for a in role.ancestors().into_iter().rev() {
        if loaded.contains_key(&a) {
            continue;
        }
        let Some(t) = stored.targets(&a) else {
            continue;
        };
        let t = t.map_err(|e| Error::BadTargets(format!("stored {a}: {e}")))?;
        loaded_raw.insert(a.clone(), t.raw().to_vec());
        loaded.insert(a, t);
    }
    Ok(())
}

/// Notary's root checks for an upload (`ValidateRoot` under TOFU, plus the server's version
/// and expiry rules). All failures are [`Error::BadRoot`].
pub fn validate_root(
    gun: &str,
    raw: &[u8],
    prev: Option<&Signed<Root>>,
    now: SystemTime,
) -> Result<Signed<Root>, Error> {
    let bad = |m: String| Error::BadRoot(m);
    let new = Signed::<Root>::parse(raw).map_err(|e| bad(e.to_string()))?;
    let cur = prev.map_or(1, |p| p.body.version);
    if new.body.version != cur && new.body.version != cur + 1 {
        return Err(bad(format!(
            "Root modifications must increment the version. Current {cur}, new {}",
            new.body.version
        )));
    }
    new.body.validate_structure().map_err(bad)?;
    if let Some(prev) = prev {
        // Trust carries over from the previous root's certificates: CN checked, expiry not.
        let old = certified_root_role(&prev.body, gun, None)
            .map_err(|_| bad("could not rotate trust to a new trusted root: failed to validate data with current trusted certificates".into()))?;
        verify_threshold(&new.envelope, &old).map_err(|_| {
            bad("could not rotate trust to a new trusted root: failed to validate data with current trusted certificates".into())
        })?;
    }
    let own = certified_root_role(&new.body, gun, Some(now))
        .map_err(|e| bad(format!("failed to validate integrity of roots: {e}")))?;
    verify_threshold(&new.envelope, &own)
        .map_err(|e| bad(format!("failed to validate integrity of roots: {e}")))?;
    if new.body.is_expired(now)? {
        return Err(bad(format!("root expired at {}", new.body.expires)));
    }
    Ok(new)
}

/// The root role restricted to keys whose certificates are acceptable for `gun`: a leaf first
/// in its bundle and the only non-CA certificate, CN equal to the GUN (or a `prefix*`
/// wildcard), no SHA-1/MD5 signature, RSA ≥ 2048 bits, and — when `now` is given — within
/// validity (one day of NotBefore leeway).
pub fn certified_root_role(
    root: &Root,
    gun: &str,
    now: Option<SystemTime>,
) -> Result<KeyRole, String> {
    let mut role = root.key_role(&RoleName::Root).map_err(|e| e.to_string())?;
    role.keys.retain(|_, key| {
        if !key.key_type().is_x509() {
            return false;
        }
        let Ok(certs) = x509::parse_pem_bundle(key.public_bytes()) else {
            return false;
        };
        let leaf = &certs[0];
        let cn_ok = leaf.common_name.as_deref().is_some_and(|cn| {
            cn == gun
                || cn
                    .strip_suffix('*')
                    .is_some_and(|prefix| gun.starts_with(prefix))
        });
        !leaf.is_ca
            && certs.iter().filter(|c| !c.is_ca).count() == 1
            && cn_ok
            && !leaf.weak_signature
            && leaf
                .rsa_bits()
                .is_none_or(|b| b >= berth_crypto::MIN_RSA_BITS)
            && now.is_none_or(|n| leaf.is_valid_at(n))
    });
    if role.keys.is_empty() {
        return Err("unable to retrieve valid leaf certificates".into());
    }
    Ok(role)
}

/// Every uploaded role (timestamp aside) must be strictly newer than the stored one
/// (`stored_versions`: role → highest stored version). Notary's 400 `VERSION`.
pub fn check_versions(
    stored_versions: &BTreeMap<RoleName, i64>,
    uploaded: &BTreeMap<RoleName, Vec<u8>>,
) -> Result<(), Error> {
    check_version_numbers(stored_versions, &uploaded_versions(uploaded))
}

/// The `version` of each uploaded file but the timestamp (`None`: unreadable), parsed once so
/// a caller can both check and store them without parsing the files again.
pub fn uploaded_versions(
    uploaded: &BTreeMap<RoleName, Vec<u8>>,
) -> BTreeMap<RoleName, Option<i64>> {
    uploaded
        .iter()
        .filter(|(role, _)| **role != RoleName::Timestamp)
        .map(|(role, raw)| {
            let v = crate::signed::Envelope::parse(raw)
                .ok()
                .and_then(|e| e.version());
            (role.clone(), v)
        })
        .collect()
}

/// [`check_versions`] on versions already read by [`uploaded_versions`].
pub fn check_version_numbers(
    stored_versions: &BTreeMap<RoleName, i64>,
    new_versions: &BTreeMap<RoleName, Option<i64>>,
) -> Result<(), Error> {
    for (role, new) in new_versions {
        let new = new.ok_or_else(|| Error::malformed("metadata", "version missing"))?;
        if let Some(&stored) = stored_versions.get(role)
            && stored >= new
        {
            return Err(Error::Version {
                role: role.to_string(),
                stored,
                new,
            });
        }
    }
    Ok(())
}

/// The snapshot body the server signs next: the previous meta with `updates` applied,
/// version + 1 (or 1), expiring 3 years from `now`.
pub fn next_snapshot(
    prev: Option<&Snapshot>,
    updates: &BTreeMap<String, FileMeta>,
    now: SystemTime,
) -> Snapshot {
    let mut meta = prev.map(|p| p.meta.clone()).unwrap_or_default();
    meta.extend(updates.iter().map(|(k, v)| (k.clone(), v.clone())));
    Snapshot {
        version: prev.map_or(1, |p| p.version + 1),
        expires: time::format_rfc3339(now + SNAPSHOT_EXPIRY),
        meta,
    }
}

/// The timestamp body the server signs next for the snapshot file `snapshot_raw`.
pub fn next_timestamp(prev: Option<&Timestamp>, snapshot_raw: &[u8], now: SystemTime) -> Timestamp {
    let mut meta = BTreeMap::new();
    meta.insert("snapshot".to_owned(), FileMeta::for_bytes(snapshot_raw));
    Timestamp {
        version: prev.map_or(1, |p| p.version + 1),
        expires: time::format_rfc3339(now + TIMESTAMP_EXPIRY),
        meta,
    }
}
