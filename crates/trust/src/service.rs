//! The trust service: Notary server behaviour over a [`TrustStore`] (and the content-trust
//! switch in a [`SettingsStore`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use berth_crypto::{PrivateKey, x509};
use berth_storage::{AuditRecord, NewTufFile, ServerKeyRole, SettingsStore, TrustStore, TufFile};
use berth_tuf::validate::{
    SnapshotPlan, StoredRoles, ValidatedFile, certified_root_role, check_version_numbers,
    missing_snapshot_key, next_snapshot, next_timestamp, validate_update,
};
use berth_tuf::{RoleBody, RoleName, Root, Signed, Snapshot, Targets, Timestamp};
use bytes::Bytes;
use sha2::Digest as _;

use crate::audit::{self, RoleSummary};
use crate::error::{Error, Result};
use crate::options::TrustOptions;
use crate::policy::{self, Policy, PolicyEntry};
use crate::vault::KeyVault;
use crate::view::{self, TrustView};
use crate::{changefeed, keys};

/// The setting that holds the registry-wide switch (`enabled` / `disabled`).
pub const SETTING: &str = "content_trust";

/// Notary's message when the root lists no timestamp key the server holds (sic, two spaces).
const NO_TIMESTAMP_KEYS: &str = "no  timestamp keys exist on the server";

/// Notary's trust server logic for every GUN of the registry.
pub struct TrustService {
    store: Arc<dyn TrustStore>,
    /// Holds the registry-wide switch ([`SETTING`]).
    pub(crate) settings: Arc<dyn SettingsStore>,
    pub(crate) vault: KeyVault,
    opts: TrustOptions,
    /// Serialises this process's writes (updates, lazy re-signs, key creation, deletes) so
    /// concurrent publishes to different roles do not fail each other with `VERSION`, and
    /// `GET .key` without a root creates one key, not one per racing request. The store's
    /// version check stays the backstop across processes.
    write: tokio::sync::Mutex<()>,
    /// Per GUN, the timestamp/snapshot pair last served, found by the timestamp's hash: a
    /// timestamp names its snapshot by hash, so a hit is exact without re-reading or re-parsing
    /// either file (the hot path of every client's first request).
    served: std::sync::Mutex<std::collections::HashMap<String, Arc<HotServed>>>,
    /// Unsealed server keys per (GUN, role): unsealing and decoding them on every publish
    /// (twice: snapshot and timestamp) was a large share of a publish's server time. They
    /// live in memory only, as they would in Notary's signer.
    /// Across nodes: keys are only added while a GUN lives, and a set lacking a key the root
    /// lists is re-read; a GUN deleted through another node drops its set here at its next
    /// first publish (see `update`).
    held: std::sync::Mutex<HeldKeys>,
    /// Per GUN, the current metadata as parsed at the last publish, each under the sha256 of
    /// the stored file it was parsed from: a publish validates against the stored root, the
    /// stored targets chain, snapshot and timestamp, and parsing those bytes again each time
    /// was a large share of its time (targets.json grows with every tag). A file whose stored
    /// sha256 differs (written by another node, or by a re-sign) is parsed again, so an entry
    /// is never used for bytes it was not parsed from.
    parsed: std::sync::Mutex<std::collections::HashMap<String, Arc<ParsedRoles>>>,
    /// Per GUN, the [`TrustView`] built from the files the served timestamp (by its sha256)
    /// leads to, `None` when they hold no targets. A policy check per manifest GET then costs
    /// one timestamp read, not a parse of every role.
    views: std::sync::Mutex<Views>,
    /// Every GUN with trust data, under the newest changefeed row when it was listed: every
    /// publish, re-sign and deletion adds a row, so an unchanged newest row means an unchanged
    /// list (one indexed read instead of a scan of all GUNs).
    guns_memo: std::sync::Mutex<Option<GunsMemo>>,
}

/// The GUN list under the changefeed row it was read at, and the subsets callers asked for.
struct GunsMemo {
    key: ChangeKey,
    all: Arc<Vec<String>>,
    /// Caller's key (a repository) -> the GUNs its filter kept.
    subsets: std::collections::HashMap<String, Arc<Vec<String>>>,
}

/// GUN -> (sha256 of the served timestamp, the view built from it).
type Views = std::collections::HashMap<String, (String, Option<Arc<TrustView>>)>;

/// What identifies the newest changefeed row (`None`: the feed is empty).
type ChangeKey = Option<(i64, i128, String)>;

/// Role name -> (sha256 hex of the stored file, the file parsed).
type ParsedRoles = std::collections::HashMap<String, (String, Parsed)>;

/// One parsed metadata file.
#[derive(Clone)]
enum Parsed {
    Root(Arc<Signed<Root>>),
    Targets(Arc<Signed<Targets>>),
    Snapshot(Arc<Signed<Snapshot>>),
    Timestamp(Arc<Signed<Timestamp>>),
}

/// The role bodies kept parsed, and their [`Parsed`] variant.
trait Kept: RoleBody + Sized {
    fn wrap(s: Arc<Signed<Self>>) -> Parsed;
    fn pick(p: &Parsed) -> Option<Arc<Signed<Self>>>;
}

macro_rules! kept {
    ($t:ident) => {
        impl Kept for $t {
            fn wrap(s: Arc<Signed<Self>>) -> Parsed {
                Parsed::$t(s)
            }
            fn pick(p: &Parsed) -> Option<Arc<Signed<Self>>> {
                match p {
                    Parsed::$t(s) => Some(s.clone()),
                    _ => None,
                }
            }
        }
    };
}
kept!(Root);
kept!(Targets);
kept!(Snapshot);
kept!(Timestamp);

/// A GUN's current files as the store returned them, parsed on first use: from the kept
/// parsed form when its sha256 matches the stored file's, else from the bytes (then kept).
struct Current {
    files: BTreeMap<RoleName, TufFile>,
    parsed: std::sync::Mutex<ParsedRoles>,
}

impl Current {
    fn parsed<T: Kept>(
        &self,
        role: &RoleName,
    ) -> Option<std::result::Result<Arc<Signed<T>>, berth_tuf::Error>> {
        let file = self.files.get(role)?;
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((sha, p)) = parsed.get(role.as_str())
            && *sha == file.sha256
            && let Some(hit) = T::pick(p)
        {
            return Some(Ok(hit));
        }
        Some(Signed::<T>::parse(&file.data).map(|s| {
            let s = Arc::new(s);
            parsed.insert(
                role.as_str().to_owned(),
                (file.sha256.clone(), T::wrap(s.clone())),
            );
            s
        }))
    }

    /// The summary of `role`'s current file for the audit detail.
    fn summary(&self, role: &str) -> Option<RoleSummary> {
        let name = RoleName::parse(role).ok()?;
        let file = self.files.get(&name)?;
        if audit::is_targets_like(role) {
            match self.parsed::<Targets>(&name) {
                Some(Ok(t)) => Some(audit::summarize_targets(&t)),
                _ => audit::summarize(role, &file.data),
            }
        } else {
            // Every file is stored under the version it carries.
            Some(RoleSummary {
                version: Some(file.version),
                tags: None,
            })
        }
    }
}

impl StoredRoles for Current {
    fn has(&self, role: &RoleName) -> bool {
        self.files.contains_key(role)
    }

    fn root(&self) -> Option<std::result::Result<Arc<Signed<Root>>, berth_tuf::Error>> {
        self.parsed(&RoleName::Root)
    }

    fn targets(
        &self,
        role: &RoleName,
    ) -> Option<std::result::Result<Arc<Signed<Targets>>, berth_tuf::Error>> {
        self.parsed(role)
    }
}

type HeldKeys = std::collections::HashMap<(String, String), Arc<Vec<(String, Arc<PrivateKey>)>>>;

/// Bound on [`TrustService::served`]; past it the map starts over (a refill is one parse).
const SERVED_ENTRIES: usize = 4096;
/// Bound on [`TrustService::parsed`], lower: a parsed targets file with many tags takes a few
/// times its size in memory. Past it the map starts over (a refill is one parse per file).
const PARSED_GUNS: usize = 1024;

struct HotServed {
    ts_file: TufFile,
    snap_file: TufFile,
    /// The earlier of the two expiries: from then on the pair needs re-signing.
    fresh_until: SystemTime,
}

impl HotServed {
    fn pick(&self, snapshot: bool) -> TufFile {
        if snapshot {
            self.snap_file.clone()
        } else {
            self.ts_file.clone()
        }
    }
}

impl std::fmt::Debug for TrustService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustService")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn storage(e: berth_storage::Error) -> Error {
    Error::Storage(e)
}

fn writing(e: berth_storage::Error) -> Error {
    match e {
        berth_storage::Error::TufVersion { role, stored, new } => {
            Error::Version { role, stored, new }
        }
        other => Error::Updating(other),
    }
}

fn corrupt(gun: &str) -> impl Fn(berth_tuf::Error) -> Error + '_ {
    move |e| Error::Corrupt {
        gun: gun.to_owned(),
        msg: e.to_string(),
    }
}

fn crypto(e: berth_tuf::Error) -> Error {
    Error::Crypto(e.to_string())
}

fn new_file(role: &str, data: &[u8], version: i64) -> NewTufFile {
    NewTufFile {
        role: role.to_owned(),
        version,
        sha256: hex::encode(sha2::Sha256::digest(data)),
        data: Bytes::copy_from_slice(data),
    }
}

/// The repository part of a GUN, for messages: Docker's rule that a first component with a
/// `.` or `:` (or `localhost`) is a registry host.
fn repository_of(gun: &str) -> &str {
    match gun.split_once('/') {
        Some((host, repo)) if host.contains(['.', ':']) || host == "localhost" => repo,
        _ => gun,
    }
}

impl TrustService {
    pub fn new(
        store: Arc<dyn TrustStore>,
        settings: Arc<dyn SettingsStore>,
        vault: KeyVault,
        opts: TrustOptions,
    ) -> Self {
        TrustService {
            store,
            settings,
            vault,
            opts,
            write: tokio::sync::Mutex::new(()),
            served: Default::default(),
            held: Default::default(),
            parsed: Default::default(),
            views: Default::default(),
            guns_memo: Default::default(),
        }
    }

    fn now(&self) -> SystemTime {
        self.opts.clock.now()
    }

    /// Whether content trust is on (off until enabled).
    pub async fn enabled(&self) -> Result<bool> {
        Ok(self
            .settings
            .setting_get(SETTING)
            .await
            .map_err(storage)?
            .as_deref()
            == Some("enabled"))
    }

    /// Turns content trust on or off. Turning it off flips the flag first, so no write slips in
    /// between, then wipes the trust data and server keys of every GUN; returns how many GUNs
    /// were wiped (0 when enabling).
    pub async fn set_enabled(&self, on: bool) -> Result<u64> {
        let value = if on { "enabled" } else { "disabled" };
        self.settings
            .setting_set(SETTING, value)
            .await
            .map_err(storage)?;
        if on {
            return Ok(0);
        }
        let _w = self.write.lock().await;
        let wiped = self.store.tuf_delete_all().await.map_err(storage)?;
        self.served_map().clear();
        self.held_map().clear();
        self.parsed_map().clear();
        self.views_map().clear();
        tracing::warn!(
            guns = wiped,
            "content trust disabled: all trust data deleted"
        );
        Ok(wiped)
    }

    async fn writable(&self) -> Result<()> {
        if self.enabled().await? {
            Ok(())
        } else {
            Err(Error::Disabled)
        }
    }

    async fn readable(&self) -> Result<()> {
        if self.enabled().await? {
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }

    /// GUNs that have trust data.
    pub async fn guns(&self) -> Result<Vec<String>> {
        self.store.tuf_guns().await.map_err(storage)
    }

    /// The stored policy entry of `repo`, or the registry-wide default (`None`).
    pub async fn policy_entry(&self, repo: Option<&str>) -> Result<PolicyEntry> {
        policy::read_entry(self.settings.as_ref(), repo)
            .await
            .map_err(storage)
    }

    /// Every repository's non-empty policy entry, by name.
    pub async fn policy_entries(&self) -> Result<Vec<(String, PolicyEntry)>> {
        policy::list_entries(self.settings.as_ref())
            .await
            .map_err(storage)
    }

    /// Stores `repo`'s entry (or the default's, `None`). Settings cannot be deleted: an entry
    /// with no field set is stored as `{}` and means "the default throughout".
    pub async fn set_policy_entry(&self, repo: Option<&str>, entry: &PolicyEntry) -> Result<()> {
        let name = repo.map_or_else(|| policy::DEFAULT_SETTING.to_owned(), policy::repo_setting);
        self.settings
            .setting_set(&name, &entry.to_json())
            .await
            .map_err(storage)
    }

    /// The stored verification material of `repo`, or the default's (`None`).
    pub async fn policy_material_entry(&self, repo: Option<&str>) -> Result<policy::Material> {
        policy::read_material(self.settings.as_ref(), repo)
            .await
            .map_err(storage)
    }

    /// Stores verification material (an empty one: follow the default).
    pub async fn set_policy_material(
        &self,
        repo: Option<&str>,
        material: &policy::Material,
    ) -> Result<()> {
        self.settings
            .setting_set(&policy::material_setting(repo), &material.to_json())
            .await
            .map_err(storage)
    }

    /// The verification material in force for `repo`: its entry over the default's.
    pub async fn policy_material(&self, repo: &str) -> Result<policy::Material> {
        let default = self.policy_material_entry(None).await?;
        let own = self.policy_material_entry(Some(repo)).await?;
        Ok(own.over(&default))
    }

    /// The policy in force for `repo`: its entry over the default, field by field.
    pub async fn policy(&self, repo: &str) -> Result<Policy> {
        let default = self.policy_entry(None).await?;
        let own = self.policy_entry(Some(repo)).await?;
        Ok(policy::effective(&default, &own))
    }

    /// GUNs that have trust data, from a list kept while the changefeed's newest row stays the
    /// same (see `TrustService::guns_memo`): for checks on every request.
    pub async fn guns_cached(&self) -> Result<Arc<Vec<String>>> {
        self.guns_matching(None, |_| true).await
    }

    /// The GUNs `keep` keeps, kept under `key` (when given) until the GUN list changes: `keep`
    /// must give the same answers for the same `key` (the server keys on a repository and
    /// keeps the GUNs naming it). Costs one indexed changefeed read when nothing changed.
    pub async fn guns_matching(
        &self,
        key: Option<&str>,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Arc<Vec<String>>> {
        let newest: ChangeKey = self
            .store
            .changefeed(None, 0, -1)
            .await
            .map_err(storage)?
            .pop()
            .map(|c| (c.id, c.created_at, c.gun));
        let all = {
            let memo = self.guns_memo.lock().unwrap_or_else(|p| p.into_inner());
            match &*memo {
                Some(m) if m.key == newest => {
                    if let Some(hit) = key.and_then(|k| m.subsets.get(k)) {
                        return Ok(hit.clone());
                    }
                    Some(m.all.clone())
                }
                _ => None,
            }
        };
        let all = match all {
            Some(a) => a,
            None => {
                let all = Arc::new(self.guns().await?);
                *self.guns_memo.lock().unwrap_or_else(|p| p.into_inner()) = Some(GunsMemo {
                    key: newest.clone(),
                    all: all.clone(),
                    subsets: Default::default(),
                });
                all
            }
        };
        let Some(key) = key else {
            return Ok(all);
        };
        let subset = Arc::new(all.iter().filter(|g| keep(g)).cloned().collect::<Vec<_>>());
        let mut memo = self.guns_memo.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = memo.as_mut()
            && m.key == newest
        {
            if m.subsets.len() >= PARSED_GUNS {
                m.subsets.clear();
            }
            m.subsets.insert(key.to_owned(), subset.clone());
        }
        Ok(subset)
    }

    /// What `gun`'s trust data says, as clients see it (see [`crate::view`]). `None` when
    /// content trust is off or the GUN has no trust data (or no targets).
    pub async fn view(&self, gun: &str) -> Result<Option<TrustView>> {
        Ok(self.view_shared(gun).await?.map(Arc::unwrap_or_clone))
    }

    /// [`Self::view`], shared with the memo: no copy of the tags per call.
    pub async fn view_shared(&self, gun: &str) -> Result<Option<Arc<TrustView>>> {
        if !self.enabled().await? {
            return Ok(None);
        }
        // As served: an expired server-signed timestamp or snapshot is re-signed here.
        let ts_file = match self.server_signed(gun, false).await {
            Ok(f) => f,
            Err(Error::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some((sha, v)) = self.views_map().get(gun)
            && *sha == ts_file.sha256
        {
            return Ok(v.clone());
        }
        let ts = Arc::new(Signed::<Timestamp>::parse(&ts_file.data).map_err(corrupt(gun))?);
        let snap_sha = ts
            .body
            .snapshot_meta()
            .map_err(|m| corrupt(gun)(berth_tuf::Error::Validation(m)))?
            .hashes
            .get("sha256")
            .map(hex::encode)
            .unwrap_or_default();
        let Some(snap_file) = self
            .store
            .tuf_by_checksum(gun, "snapshot", &snap_sha)
            .await
            .map_err(storage)?
        else {
            return Ok(None);
        };
        let snapshot = Arc::new(Signed::<Snapshot>::parse(&snap_file.data).map_err(corrupt(gun))?);
        // Read after the timestamp: if a publish lands in between, these files are newer than
        // the key they are kept under, and the next call (seeing the new timestamp) rebuilds.
        let mut files = BTreeMap::new();
        for f in self.store.tuf_current_all(gun).await.map_err(storage)? {
            if let Ok(role) = RoleName::parse(&f.role) {
                files.insert(role, f);
            }
        }
        let kept = self.parsed_map().get(gun).cloned().unwrap_or_default();
        let current = Current {
            files,
            parsed: std::sync::Mutex::new(Arc::unwrap_or_clone(kept)),
        };
        let Some(root) = current.root() else {
            return Ok(None);
        };
        let root = root.map_err(corrupt(gun))?;
        let mut targets = BTreeMap::new();
        for role in current.files.keys().filter(|r| r.is_targets_like()) {
            match current.parsed::<Targets>(role) {
                Some(Ok(t)) => {
                    targets.insert(role.clone(), t);
                }
                // Validated when stored: a corrupt store. Its tags are left out, not the GUN.
                Some(Err(e)) => {
                    tracing::warn!(gun, role = role.as_str(), error = %e, "stored targets do not parse")
                }
                None => {}
            }
        }
        let v = view::build(&view::Files {
            gun,
            root,
            targets,
            snapshot,
            timestamp: ts,
        })
        .map(Arc::new);
        let mut map = self.views_map();
        if map.len() >= PARSED_GUNS && !map.contains_key(gun) {
            map.clear();
        }
        map.insert(gun.to_owned(), (ts_file.sha256, v.clone()));
        Ok(v)
    }

    fn views_map(&self) -> std::sync::MutexGuard<'_, Views> {
        self.views.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The SHA-256 of every target the current targets role and its delegations of `gun` name,
    /// valid or expired (garbage collection keeps what any signature names). A role that does
    /// not parse names nothing; it was validated when stored, so this is a corrupt store, and
    /// the collection goes on (logged) rather than stopping every collection for ever.
    pub async fn signed_sha256(&self, gun: &str) -> Result<Vec<[u8; 32]>> {
        let mut out = Vec::new();
        for f in self.store.tuf_current_all(gun).await.map_err(storage)? {
            if f.role != "targets" && !f.role.starts_with("targets/") {
                continue;
            }
            match Signed::<Targets>::parse(&f.data) {
                Ok(t) => out.extend(t.body.targets.values().filter_map(|m| {
                    m.hashes
                        .get("sha256")
                        .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
                })),
                Err(e) => {
                    tracing::warn!(gun, role = %f.role, error = %e, "stored targets do not parse")
                }
            }
        }
        Ok(out)
    }

    /// The held private keys `root` lists for `role`, in the root's order, if they meet the
    /// role's threshold. Like Notary's signer, every held listed key signs.
    async fn signers(
        &self,
        gun: &str,
        root: &Root,
        role: &RoleName,
    ) -> Result<Option<Vec<Arc<PrivateKey>>>> {
        let Some(listed) = root.roles.get(role.as_str()) else {
            return Ok(None);
        };
        let Ok(key_role) = role.as_str().parse::<ServerKeyRole>() else {
            return Ok(None); // the server holds no keys of other roles
        };
        let cache_key = (gun.to_owned(), role.as_str().to_owned());
        let cached = self.held_map().get(&cache_key).cloned();
        // Server keys are only ever added (or wiped with the whole GUN), so a cached set that
        // has every listed key is current; one missing a listed key is reloaded.
        let held = match cached {
            Some(h)
                if listed
                    .keyids
                    .iter()
                    .all(|id| h.iter().any(|(k, _)| k == id)) =>
            {
                h
            }
            _ => {
                let recs = self
                    .store
                    .server_keys(gun, key_role)
                    .await
                    .map_err(storage)?;
                let mut keys = Vec::with_capacity(recs.len());
                for rec in &recs {
                    keys.push((
                        rec.key_id.clone(),
                        Arc::new(keys::unseal(&self.vault, gun, rec)?),
                    ));
                }
                let keys = Arc::new(keys);
                let mut map = self.held_map();
                if map.len() >= SERVED_ENTRIES {
                    map.clear();
                }
                map.insert(cache_key, keys.clone());
                keys
            }
        };
        let mut out = Vec::new();
        for id in &listed.keyids {
            if let Some((_, k)) = held.iter().find(|(k, _)| k == id) {
                out.push(k.clone());
            }
        }
        Ok((!out.is_empty() && out.len() as i64 >= listed.threshold).then_some(out))
    }

    fn held_map(&self) -> std::sync::MutexGuard<'_, HeldKeys> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn parsed_map(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<ParsedRoles>>> {
        self.parsed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts a client update (`parts`: multipart filename and bytes, in request order).
    /// `audit`, when given, is written in the update's own transaction, with its `detail` set
    /// here to what the update changed (see [`crate::audit`]): it is stored if and only if the
    /// update is.
    pub async fn update(
        &self,
        gun: &str,
        parts: Vec<(String, Bytes)>,
        audit: Option<AuditRecord>,
    ) -> Result<()> {
        self.update_with_changes(gun, parts, audit).await.map(drop)
    }

    /// [`Self::update`], answering what the accepted update changed (for event notifications).
    pub async fn update_with_changes(
        &self,
        gun: &str,
        parts: Vec<(String, Bytes)>,
        audit: Option<AuditRecord>,
    ) -> Result<UpdateChanges> {
        self.writable().await?;
        // Only the audit detail needs the parts as sent (duplicates and timestamp included).
        let sent: Vec<(String, Bytes)> = if audit.is_some() {
            parts.clone()
        } else {
            Vec::new()
        };
        let uploaded = parse_parts(parts)?;
        let _w = self.write.lock().await;
        // Checked under the lock: a concurrent disable either sees this update's data and
        // wipes it, or this update sees the switch off.
        self.writable().await?;
        let now = self.now();
        let mut files = BTreeMap::new();
        for f in self.store.tuf_current_all(gun).await.map_err(storage)? {
            match RoleName::parse(&f.role) {
                Ok(role) => {
                    files.insert(role, f);
                }
                Err(_) => tracing::warn!(
                    gun,
                    role = f.role,
                    "ignoring stored file with an invalid role name"
                ),
            }
        }
        if files.is_empty() {
            // A GUN starting (again): keys held from an earlier life of it may have been
            // deleted since, through another node; sign only with what the store holds now.
            self.held_map().retain(|(g, _), _| g != gun);
        }
        let versions: BTreeMap<RoleName, i64> =
            files.iter().map(|(r, f)| (r.clone(), f.version)).collect();
        let kept = self.parsed_map().get(gun).cloned().unwrap_or_default();
        let current = Current {
            files,
            parsed: std::sync::Mutex::new(Arc::unwrap_or_clone(kept)),
        };
        if !uploaded.contains_key(&RoleName::Root)
            && let Some(root) = current.root()
        {
            let root = root.map_err(corrupt(gun))?;
            check_stored_root(gun, &root, now)?;
        }
        let valid = validate_update(gun, now, &current, &uploaded).map_err(Error::Validation)?;
        // What this update leaves current, parsed, for the next one: role -> (sha256, parsed).
        let mut fresh: Vec<(String, (String, Parsed))> = Vec::new();
        let mut uploaded_snapshot_sha = String::new();
        // Each file is stored under the version its validation read: nothing is re-parsed here.
        let mut new_files: Vec<NewTufFile> = Vec::with_capacity(valid.files.len() + 2);
        for f in &valid.files {
            let nf = new_file(f.role.as_str(), &f.raw, f.version);
            let parsed = match &f.role {
                RoleName::Root => Some(Parsed::Root(valid.root.clone())),
                RoleName::Snapshot => {
                    uploaded_snapshot_sha.clone_from(&nf.sha256);
                    None
                }
                role => valid.targets.get(role).cloned().map(Parsed::Targets),
            };
            if let Some(p) = parsed {
                fresh.push((nf.role.clone(), (nf.sha256.clone(), p)));
            }
            new_files.push(nf);
        }
        // Every uploaded role passed validation, which read its version.
        let new_versions: BTreeMap<RoleName, Option<i64>> = valid
            .files
            .iter()
            .map(|f| (f.role.clone(), Some(f.version)))
            .collect();
        let snapshot_raw = match valid.snapshot {
            SnapshotPlan::Uploaded(s) => {
                let raw = s.raw().to_vec();
                fresh.push((
                    "snapshot".to_owned(),
                    (uploaded_snapshot_sha, Parsed::Snapshot(Arc::new(s))),
                ));
                raw
            }
            SnapshotPlan::Generate { updates } => {
                let keys = self
                    .signers(gun, &valid.root.body, &RoleName::Snapshot)
                    .await?
                    .ok_or_else(|| Error::Validation(missing_snapshot_key()))?;
                let prev = current
                    .parsed::<Snapshot>(&RoleName::Snapshot)
                    .transpose()
                    .map_err(corrupt(gun))?;
                let body = next_snapshot(prev.as_ref().map(|p| &p.body), &updates, now);
                let signed =
                    Signed::sign(body, &keys.iter().map(|k| k.as_ref()).collect::<Vec<_>>())
                        .map_err(crypto)?;
                let nf = new_file("snapshot", signed.raw(), signed.body.version);
                let raw = signed.raw().to_vec();
                fresh.push((
                    nf.role.clone(),
                    (nf.sha256.clone(), Parsed::Snapshot(Arc::new(signed))),
                ));
                new_files.push(nf);
                raw
            }
        };
        let keys = self
            .signers(gun, &valid.root.body, &RoleName::Timestamp)
            .await?
            .ok_or_else(|| {
                Error::Validation(berth_tuf::Error::BadRoot(NO_TIMESTAMP_KEYS.into()))
            })?;
        let prev = current
            .parsed::<Timestamp>(&RoleName::Timestamp)
            .transpose()
            .map_err(corrupt(gun))?;
        let body = next_timestamp(prev.as_ref().map(|p| &p.body), &snapshot_raw, now);
        let ts = Signed::sign(body, &keys.iter().map(|k| k.as_ref()).collect::<Vec<_>>())
            .map_err(crypto)?;
        let nf = new_file("timestamp", ts.raw(), ts.body.version);
        fresh.push((
            nf.role.clone(),
            (nf.sha256.clone(), Parsed::Timestamp(Arc::new(ts))),
        ));
        new_files.push(nf);
        // Notary checks versions in storage, after validation: keep its error precedence.
        check_version_numbers(&versions, &new_versions)?;
        let audit = audit.map(|rec| AuditRecord {
            detail: update_detail(&current, &valid.files, &valid.targets, &sent),
            ..rec
        });
        let changes = UpdateChanges {
            roles: new_files.iter().map(|f| f.role.clone()).collect(),
            targets: target_changes(&current, &valid.targets),
        };
        self.store
            .tuf_update(gun, new_files, audit.as_ref())
            .await
            .map_err(writing)?;
        let mut kept = current
            .parsed
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        kept.extend(fresh);
        {
            let mut map = self.parsed_map();
            if map.len() >= PARSED_GUNS && !map.contains_key(gun) {
                map.clear();
            }
            map.insert(gun.to_owned(), Arc::new(kept));
        }
        tracing::info!(gun, roles = ?uploaded.keys().map(RoleName::as_str).collect::<Vec<_>>(), "trust data updated");
        Ok(changes)
    }

    /// The current version of `role` (`{role}.json`). Timestamp and snapshot are served as
    /// Notary's `getMaybeServerSigned` does, re-signing expired server-owned files.
    pub async fn get_current(&self, gun: &str, role: &str) -> Result<TufFile> {
        self.readable().await?;
        let role = RoleName::parse(role).map_err(|_| Error::NotFound)?;
        match role {
            RoleName::Timestamp | RoleName::Snapshot => {
                self.server_signed(gun, role == RoleName::Snapshot).await
            }
            _ => self
                .store
                .tuf_current(gun, role.as_str())
                .await
                .map_err(storage)?
                .ok_or(Error::NotFound),
        }
    }

    /// `{role}.{sha256}.json`.
    pub async fn get_by_checksum(
        &self,
        gun: &str,
        role: &str,
        sha256_hex: &str,
    ) -> Result<TufFile> {
        self.readable().await?;
        let role = RoleName::parse(role).map_err(|_| Error::NotFound)?;
        self.store
            .tuf_by_checksum(gun, role.as_str(), &sha256_hex.to_ascii_lowercase())
            .await
            .map_err(storage)?
            .ok_or(Error::NotFound)
    }

    /// `{version}.{role}.json`.
    pub async fn get_by_version(&self, gun: &str, role: &str, version: i64) -> Result<TufFile> {
        self.readable().await?;
        let role = RoleName::parse(role).map_err(|_| Error::NotFound)?;
        if version < 1 {
            return Err(Error::NotFound);
        }
        self.store
            .tuf_by_version(gun, role.as_str(), version)
            .await
            .map_err(storage)?
            .ok_or(Error::NotFound)
    }

    /// The current timestamp and the snapshot it names.
    async fn load_served(&self, gun: &str) -> Result<Served> {
        let ts_file = self
            .store
            .tuf_current(gun, "timestamp")
            .await
            .map_err(storage)?
            .ok_or(Error::NotFound)?;
        let ts = Signed::<Timestamp>::parse(&ts_file.data).map_err(corrupt(gun))?;
        let sha = ts
            .body
            .snapshot_meta()
            .map_err(|m| corrupt(gun)(berth_tuf::Error::Validation(m)))?
            .hashes
            .get("sha256")
            .map(hex::encode)
            .unwrap_or_default();
        let snap_file = self
            .store
            .tuf_by_checksum(gun, "snapshot", &sha)
            .await
            .map_err(storage)?
            .ok_or(Error::NotFound)?;
        let snap = Signed::<Snapshot>::parse(&snap_file.data).map_err(corrupt(gun))?;
        Ok(Served {
            ts_file,
            ts,
            snap_file,
            snap,
        })
    }

    fn served_map(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<HotServed>>> {
        self.served.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn server_signed(&self, gun: &str, want_snapshot: bool) -> Result<TufFile> {
        let now = self.now();
        let ts_file = self
            .store
            .tuf_current(gun, "timestamp")
            .await
            .map_err(storage)?
            .ok_or(Error::NotFound)?;
        let hot = self.served_map().get(gun).cloned();
        if let Some(h) = hot
            && h.ts_file.sha256 == ts_file.sha256
            && now < h.fresh_until
        {
            return Ok(h.pick(want_snapshot));
        }
        let s = self.load_served(gun).await?;
        if !s.stale(now, gun)? {
            let fresh_until =
                s.ts.body
                    .expires_at()
                    .and_then(|t| Ok(t.min(s.snap.body.expires_at()?)))
                    .map_err(corrupt(gun))?;
            let h = HotServed {
                ts_file: s.ts_file,
                snap_file: s.snap_file,
                fresh_until,
            };
            let out = h.pick(want_snapshot);
            let mut map = self.served_map();
            if map.len() >= SERVED_ENTRIES {
                map.clear();
            }
            map.insert(gun.to_owned(), Arc::new(h));
            return Ok(out);
        }
        let _w = self.write.lock().await;
        self.readable().await?;
        // Another request may have re-signed while we waited.
        let s = self.load_served(gun).await?;
        if !s.stale(now, gun)? {
            return Ok(s.pick(want_snapshot));
        }
        let root_file = self
            .store
            .tuf_current(gun, "root")
            .await
            .map_err(storage)?
            .ok_or(Error::NotFound)?;
        let root = Signed::<Root>::parse(&root_file.data).map_err(corrupt(gun))?;
        let mut files = Vec::new();
        let mut snap_data = s.snap_file.data.clone();
        if s.snap.body.is_expired(now).map_err(corrupt(gun))? {
            match self.signers(gun, &root.body, &RoleName::Snapshot).await? {
                Some(keys) => {
                    let mut body = next_snapshot(Some(&s.snap.body), &BTreeMap::new(), now);
                    // Above every stored version, even if the timestamp named an older one.
                    let highest = self
                        .store
                        .tuf_current(gun, "snapshot")
                        .await
                        .map_err(storage)?
                        .map_or(0, |f| f.version);
                    body.version = body.version.max(highest + 1);
                    let signed =
                        Signed::sign(body, &keys.iter().map(|k| k.as_ref()).collect::<Vec<_>>())
                            .map_err(crypto)?;
                    let f = new_file("snapshot", signed.raw(), signed.body.version);
                    snap_data = f.data.clone();
                    files.push(f);
                }
                // A client-managed snapshot: serving it expired lets the client name the
                // problem, where a 404 would read as "no trust data".
                None => {
                    tracing::warn!(gun, "snapshot expired and the server does not hold its key")
                }
            }
        }
        let ts_matches =
            s.ts.body
                .snapshot_meta()
                .is_ok_and(|m| m.check(&snap_data).is_ok());
        if s.ts.body.is_expired(now).map_err(corrupt(gun))? || !ts_matches {
            match self.signers(gun, &root.body, &RoleName::Timestamp).await? {
                Some(keys) => {
                    let body = next_timestamp(Some(&s.ts.body), &snap_data, now);
                    let signed =
                        Signed::sign(body, &keys.iter().map(|k| k.as_ref()).collect::<Vec<_>>())
                            .map_err(crypto)?;
                    files.push(new_file("timestamp", signed.raw(), signed.body.version));
                }
                None => {
                    tracing::warn!(
                        gun,
                        "timestamp needs re-signing and the server holds no timestamp key"
                    );
                    // A new snapshot no timestamp names would be unreachable: keep the old pair.
                    return Ok(s.pick(want_snapshot));
                }
            }
        }
        if files.is_empty() {
            return Ok(s.pick(want_snapshot));
        }
        match self.store.tuf_update(gun, files, None).await {
            Ok(()) => tracing::info!(gun, "re-signed expired server metadata"),
            // Another server process re-signed first: serve what it stored.
            Err(berth_storage::Error::TufVersion { .. }) => {}
            Err(e) => return Err(Error::Updating(e)),
        }
        // Read back what was stored, so `created` is the store's.
        Ok(self.load_served(gun).await?.pick(want_snapshot))
    }

    /// `GET {timestamp|snapshot}.key`: the key the current root lists for the role that the
    /// server holds; without a root, the newest held key (so repeated calls agree); otherwise
    /// a new key. Returns the public key JSON.
    pub async fn get_key(&self, gun: &str, role: &str) -> Result<Bytes> {
        let Ok(key_role) = role.parse::<ServerKeyRole>() else {
            return Err(Error::NotFound);
        };
        let _w = self.write.lock().await;
        self.writable().await?;
        let held = self
            .store
            .server_keys(gun, key_role)
            .await
            .map_err(storage)?;
        match self.store.tuf_current(gun, "root").await.map_err(storage)? {
            Some(root_file) => {
                let root = Signed::<Root>::parse(&root_file.data).map_err(corrupt(gun))?;
                let listed = root
                    .body
                    .roles
                    .get(role)
                    .map(|r| r.keyids.as_slice())
                    .unwrap_or_default();
                if let Some(rec) = listed
                    .iter()
                    .find_map(|id| held.iter().find(|k| &k.key_id == id))
                {
                    return Ok(rec.public.clone());
                }
            }
            None => {
                if let Some(rec) = held.last() {
                    return Ok(rec.public.clone());
                }
                // The GUN's first key: insert-if-absent, so servers asked at once agree on one.
                let rec = keys::create(
                    &self.vault,
                    gun,
                    key_role,
                    self.opts.key_algorithm,
                    self.now(),
                )?;
                let first = self
                    .store
                    .server_key_insert_first(gun, &rec)
                    .await
                    .map_err(storage)?;
                if first.key_id == rec.key_id {
                    tracing::info!(gun, role, key_id = rec.key_id, "created server key");
                }
                return Ok(first.public);
            }
        }
        self.create_key(gun, key_role).await
    }

    /// `POST {timestamp|snapshot}.key`: a new pending key, used once a root lists it.
    pub async fn rotate_key(&self, gun: &str, role: &str) -> Result<Bytes> {
        let Ok(key_role) = role.parse::<ServerKeyRole>() else {
            return Err(Error::NotFound);
        };
        let _w = self.write.lock().await;
        self.writable().await?;
        self.create_key(gun, key_role).await
    }

    async fn create_key(&self, gun: &str, role: ServerKeyRole) -> Result<Bytes> {
        let rec = keys::create(&self.vault, gun, role, self.opts.key_algorithm, self.now())?;
        self.store
            .server_key_insert(gun, &rec)
            .await
            .map_err(storage)?;
        tracing::info!(
            gun,
            role = role.as_str(),
            key_id = rec.key_id,
            "created server key"
        );
        Ok(rec.public)
    }

    /// Deletes every version of every role of `gun`, and its server keys. Works whether trust
    /// is enabled or not. Returns whether anything existed.
    pub async fn delete(&self, gun: &str) -> Result<bool> {
        let _w = self.write.lock().await;
        let existed = self.store.tuf_delete(gun).await.map_err(storage)?;
        self.served_map().remove(gun);
        self.held_map().retain(|(g, _), _| g != gun);
        self.parsed_map().remove(gun);
        self.views_map().remove(gun);
        if existed {
            tracing::warn!(gun, "trust data deleted");
        }
        Ok(existed)
    }

    /// The changefeed (per GUN or global) as Notary's JSON; `change_id` and `records` are the
    /// raw query values.
    pub async fn changefeed(
        &self,
        gun: Option<&str>,
        change_id: Option<&str>,
        records: Option<&str>,
    ) -> Result<Bytes> {
        self.readable().await?;
        let (id, records) = changefeed::params(change_id, records)?;
        let changes = self
            .store
            .changefeed(gun, id, records)
            .await
            .map_err(storage)?;
        Ok(Bytes::from(changefeed::render(&changes)))
    }
}

/// What `getMaybeServerSigned` works on.
struct Served {
    ts_file: TufFile,
    ts: Signed<Timestamp>,
    snap_file: TufFile,
    snap: Signed<Snapshot>,
}

impl Served {
    fn stale(&self, now: SystemTime, gun: &str) -> Result<bool> {
        Ok(self.ts.body.is_expired(now).map_err(corrupt(gun))?
            || self.snap.body.is_expired(now).map_err(corrupt(gun))?)
    }

    fn pick(self, snapshot: bool) -> TufFile {
        if snapshot {
            self.snap_file
        } else {
            self.ts_file
        }
    }
}

/// Refuses updates on top of a stored root whose certificates have all expired. Notary fails
/// such updates with an opaque error forever; Berth still accepts a root rotation (checked by
/// `validate_root`, which trusts the old root's keys regardless of certificate expiry) and
/// says so.
fn check_stored_root(gun: &str, root: &Signed<Root>, now: SystemTime) -> Result<()> {
    if certified_root_role(&root.body, gun, Some(now)).is_ok()
        || certified_root_role(&root.body, gun, None).is_err()
    {
        return Ok(());
    }
    let not_after = root
        .body
        .roles
        .get("root")
        .into_iter()
        .flat_map(|r| r.keyids.iter())
        .filter_map(|id| root.body.keys.get(id))
        .filter_map(|k| x509::parse_pem_bundle(k.public_bytes()).ok())
        .filter_map(|certs| certs.into_iter().next().map(|c| c.not_after))
        .max();
    let when = match not_after {
        Some(t) if t <= now => format!("expired on {}", berth_tuf::time::format_rfc3339(t)),
        _ => "is not valid at this time".to_owned(),
    };
    Err(Error::Validation(berth_tuf::Error::BadRoot(format!(
        "the stored root certificate of {gun} {when}: publish a root rotation signed with the current root key (`notary key rotate {gun} root`), or reset the repository's trust data (`berth trust reset {}`)",
        repository_of(gun)
    ))))
}

/// What an accepted update changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateChanges {
    /// The roles whose new files were stored: those uploaded, and the snapshot and timestamp
    /// the server made.
    pub roles: Vec<String>,
    /// Targets added, changed or removed in targets-like roles the update replaced.
    pub targets: Vec<TargetChange>,
}

/// One target (tag) of one role that an update added, changed or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetChange {
    pub role: String,
    pub name: String,
    pub kind: TargetChangeKind,
    /// The new target's sha256 (hex) and length; `None` for a removal.
    pub sha256: Option<String>,
    pub length: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetChangeKind {
    Added,
    Changed,
    Removed,
}

impl TargetChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetChangeKind::Added => "added",
            TargetChangeKind::Changed => "changed",
            TargetChangeKind::Removed => "removed",
        }
    }
}

/// The targets each replaced targets-like role gained, changed or lost, from what validation
/// parsed and the current files (parsed once and kept).
fn target_changes(
    current: &Current,
    targets: &BTreeMap<RoleName, Arc<Signed<Targets>>>,
) -> Vec<TargetChange> {
    let sha = |m: &berth_tuf::FileMeta| m.hashes.get("sha256").map(hex::encode);
    let mut out = Vec::new();
    for (role, new) in targets {
        let old = current.parsed::<Targets>(role).and_then(|r| r.ok());
        let old_targets = old.as_ref().map(|o| &o.body.targets);
        for (name, m) in &new.body.targets {
            let kind = match old_targets.and_then(|o| o.get(name)) {
                None => TargetChangeKind::Added,
                Some(o) if sha(o) != sha(m) || o.length != m.length => TargetChangeKind::Changed,
                Some(_) => continue,
            };
            out.push(TargetChange {
                role: role.as_str().to_owned(),
                name: name.clone(),
                kind,
                sha256: sha(m),
                length: Some(m.length),
            });
        }
        for name in old_targets
            .into_iter()
            .flat_map(|o| o.keys())
            .filter(|n| !new.body.targets.contains_key(*n))
        {
            out.push(TargetChange {
                role: role.as_str().to_owned(),
                name: name.clone(),
                kind: TargetChangeKind::Removed,
                sha256: None,
                length: None,
            });
        }
    }
    out
}

/// The audit detail of an update: each part as sent, against the file that was current. A part
/// validation read (the last of its role) is summarised from what validation parsed.
fn update_detail(
    current: &Current,
    validated: &[ValidatedFile],
    targets: &BTreeMap<RoleName, Arc<Signed<Targets>>>,
    sent: &[(String, Bytes)],
) -> String {
    let rows: Vec<_> = sent
        .iter()
        .map(|(name, data)| {
            let role = audit::role_of(name);
            let new = match validated
                .iter()
                .find(|f| f.role.as_str() == role && f.raw[..] == data[..])
            {
                Some(f) => Some(match targets.get(&f.role) {
                    Some(t) => audit::summarize_targets(t),
                    None => RoleSummary {
                        version: Some(f.version),
                        tags: None,
                    },
                }),
                None => audit::summarize(role, data),
            };
            (role, current.summary(role), new)
        })
        .collect();
    audit::change_detail(&rows)
}

/// Parses the multipart parts with Notary's rules: `.json` stripped, empty name, invalid role,
/// JSON that does not decode into Notary's `SignedMeta`; the last duplicate wins; a timestamp
/// is checked and then dropped (the server makes its own). Public for the fuzz target
/// `multipart` (fuzz/), which drives it with what multer reads from a publish body.
pub fn parse_parts(parts: Vec<(String, Bytes)>) -> Result<BTreeMap<RoleName, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for (name, data) in parts {
        let name = name.strip_suffix(".json").unwrap_or(&name);
        if name.is_empty() {
            return Err(Error::NoFilename);
        }
        let role = RoleName::parse(name).map_err(|_| Error::InvalidRole(name.to_owned()))?;
        if !decodes_as_signed_meta(&data) {
            return Err(Error::MalformedJson(name.to_owned()));
        }
        if role != RoleName::Timestamp {
            out.insert(role, data.to_vec());
        }
    }
    Ok(out)
}

/// Whether Go's `json.Decode` into `data.SignedMeta` would succeed: an object whose `signed`
/// has an integer `version`, an RFC 3339 `expires`, a string `_type`, and whose signatures
/// have string `keyid`/`method` and base64 `sig` (absent or null members are zero values).
fn decodes_as_signed_meta(data: &[u8]) -> bool {
    use base64::Engine as _;
    use serde_json::Value;
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(data) else {
        return false;
    };
    let null_or =
        |v: Option<&Value>, ok: &dyn Fn(&Value) -> bool| v.is_none_or(|v| v.is_null() || ok(v));
    let signed_ok = null_or(doc.get("signed"), &|s| {
        s.as_object().is_some_and(|s| {
            null_or(s.get("_type"), &Value::is_string)
                && null_or(s.get("version"), &|v| {
                    v.as_i64().is_some() || v.as_u64().is_some()
                })
                && null_or(s.get("expires"), &|v| {
                    v.as_str()
                        .is_some_and(|t| berth_tuf::time::parse_rfc3339(t).is_ok())
                })
        })
    });
    let sigs_ok = null_or(doc.get("signatures"), &|a| {
        a.as_array().is_some_and(|a| {
            a.iter().all(|sig| {
                sig.is_null()
                    || sig.as_object().is_some_and(|o| {
                        null_or(o.get("keyid"), &Value::is_string)
                            && null_or(o.get("method"), &Value::is_string)
                            && null_or(o.get("sig"), &|v| {
                                v.as_str().is_some_and(|s| {
                                    base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                                })
                            })
                    })
            })
        })
    });
    signed_ok && sigs_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_rules() {
        let p = |n: &str, b: &str| (n.to_owned(), Bytes::from(b.to_owned()));
        let ok = r#"{"signed":{"_type":"Targets","version":2,"expires":"2030-01-01T00:00:00Z"},"signatures":[]}"#;
        assert!(matches!(
            parse_parts(vec![p(".json", ok)]),
            Err(Error::NoFilename)
        ));
        assert!(matches!(
            parse_parts(vec![p("", ok)]),
            Err(Error::NoFilename)
        ));
        assert!(
            matches!(parse_parts(vec![p("bogus", ok)]), Err(Error::InvalidRole(r)) if r == "bogus")
        );
        assert!(matches!(
            parse_parts(vec![p("targets", "{nope")]),
            Err(Error::MalformedJson(_))
        ));
        assert!(matches!(
            parse_parts(vec![p("targets", "[]")]),
            Err(Error::MalformedJson(_))
        ));
        let bad_version = r#"{"signed":{"version":"2"}}"#;
        assert!(matches!(
            parse_parts(vec![p("targets", bad_version)]),
            Err(Error::MalformedJson(_))
        ));
        let bad_sig = r#"{"signed":{},"signatures":[{"sig":"***"}]}"#;
        assert!(matches!(
            parse_parts(vec![p("root", bad_sig)]),
            Err(Error::MalformedJson(_))
        ));
        // A bad timestamp part is still an error; a good one is dropped; last duplicate wins.
        assert!(matches!(
            parse_parts(vec![p("timestamp", "x")]),
            Err(Error::MalformedJson(_))
        ));
        let got = parse_parts(vec![
            p("targets.json", "{}"),
            p("timestamp", ok),
            p("targets", ok),
        ])
        .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[&RoleName::Targets], ok.as_bytes());
    }

    #[test]
    fn repository_names() {
        assert_eq!(repository_of("localhost:5000/berth/demo"), "berth/demo");
        assert_eq!(repository_of("registry.example.com/app"), "app");
        assert_eq!(repository_of("team/app"), "team/app");
    }
}
