//! Notary trust data: append-only TUF files, the changefeed, server keys.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;

use super::{MemoryStore, lock, now_nanos, now_secs};
use crate::{
    AuditRecord, Change, ChangeCategory, Error, NewTufFile, Result, ServerKeyRecord, ServerKeyRole,
    TrustStore, TufFile,
};

#[derive(Default)]
pub(super) struct TrustState {
    /// GUN → role → every version, ascending (versions only ever grow).
    files: BTreeMap<String, BTreeMap<String, Vec<TufFile>>>,
    changes: Vec<Change>,
    /// Changefeed ids are never reused (SQLite AUTOINCREMENT).
    last_change_id: i64,
    /// GUN → keys in insertion order.
    keys: HashMap<String, Vec<ServerKeyRecord>>,
}

impl TrustState {
    fn change(&mut self, gun: &str, version: i64, sha256: &str, category: ChangeCategory) {
        self.last_change_id = self.last_change_id.saturating_add(1);
        self.changes.push(Change {
            id: self.last_change_id,
            created_at: i128::from(now_nanos()),
            gun: gun.to_owned(),
            version,
            sha256: sha256.to_owned(),
            category,
        });
    }

    fn role(&self, gun: &str, role: &str) -> &[TufFile] {
        self.files
            .get(gun)
            .and_then(|g| g.get(role))
            .map_or(&[], Vec::as_slice)
    }
}

#[async_trait]
impl TrustStore for MemoryStore {
    async fn tuf_current_all(&self, gun: &str) -> Result<Vec<TufFile>> {
        let st = lock(&self.trust);
        // Roles come out in name order, as the embedded store sorts them.
        Ok(st
            .files
            .get(gun)
            .into_iter()
            .flat_map(|g| g.values())
            .filter_map(|versions| versions.last().cloned())
            .collect())
    }

    async fn tuf_current(&self, gun: &str, role: &str) -> Result<Option<TufFile>> {
        Ok(lock(&self.trust).role(gun, role).last().cloned())
    }

    async fn tuf_by_checksum(
        &self,
        gun: &str,
        role: &str,
        sha256: &str,
    ) -> Result<Option<TufFile>> {
        let sha = sha256.to_ascii_lowercase();
        Ok(lock(&self.trust)
            .role(gun, role)
            .iter()
            .rev()
            .find(|f| f.sha256 == sha)
            .cloned())
    }

    async fn tuf_by_version(&self, gun: &str, role: &str, version: i64) -> Result<Option<TufFile>> {
        Ok(lock(&self.trust)
            .role(gun, role)
            .iter()
            .find(|f| f.version == version)
            .cloned())
    }

    async fn tuf_update(
        &self,
        gun: &str,
        files: Vec<NewTufFile>,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let mut st = lock(&self.trust);
        // Checked in full before anything is written, counting earlier files of this same
        // update, so a stale role anywhere rejects all of it.
        let mut newest: HashMap<&str, i64> = HashMap::new();
        for f in &files {
            let stored = newest
                .get(f.role.as_str())
                .copied()
                .or_else(|| st.role(gun, &f.role).last().map(|x| x.version));
            if let Some(stored) = stored
                && stored >= f.version
            {
                return Err(Error::TufVersion {
                    role: f.role.clone(),
                    stored,
                    new: f.version,
                });
            }
            newest.insert(&f.role, f.version);
        }
        // Taken while the trust lock is held (the only place both are), so a reader never sees
        // the files without their record; nothing below can fail.
        if let Some(rec) = audit {
            lock(&self.ids).append_audit(rec);
        }
        let created = now_secs();
        for f in files {
            if f.role == "timestamp" {
                st.change(gun, f.version, &f.sha256, ChangeCategory::Update);
            }
            st.files
                .entry(gun.to_owned())
                .or_default()
                .entry(f.role.clone())
                .or_default()
                .push(TufFile {
                    role: f.role,
                    version: f.version,
                    sha256: f.sha256,
                    data: f.data,
                    created,
                });
        }
        Ok(())
    }

    async fn tuf_delete(&self, gun: &str) -> Result<bool> {
        let mut st = lock(&self.trust);
        let had_files = st
            .files
            .remove(gun)
            .is_some_and(|g| g.values().any(|v| !v.is_empty()));
        st.keys.remove(gun);
        if had_files {
            st.change(gun, 0, "", ChangeCategory::Deletion);
        }
        Ok(had_files)
    }

    async fn tuf_delete_all(&self) -> Result<u64> {
        let mut st = lock(&self.trust);
        let guns: Vec<String> = std::mem::take(&mut st.files)
            .into_iter()
            .filter(|(_, g)| g.values().any(|v| !v.is_empty()))
            .map(|(gun, _)| gun)
            .collect();
        st.keys.clear();
        for g in &guns {
            st.change(g, 0, "", ChangeCategory::Deletion);
        }
        Ok(u64::try_from(guns.len()).unwrap_or(u64::MAX))
    }

    async fn tuf_guns(&self) -> Result<Vec<String>> {
        Ok(lock(&self.trust)
            .files
            .iter()
            .filter(|(_, g)| g.values().any(|v| !v.is_empty()))
            .map(|(gun, _)| gun.clone())
            .collect())
    }

    async fn tuf_history(&self, gun: &str) -> Result<Vec<TufFile>> {
        // Roles by name (a BTreeMap), each one's versions ascending.
        Ok(lock(&self.trust)
            .files
            .get(gun)
            .into_iter()
            .flat_map(|g| g.values())
            .flatten()
            .cloned()
            .collect())
    }

    async fn changefeed(
        &self,
        gun: Option<&str>,
        change_id: i64,
        records: i64,
    ) -> Result<Vec<Change>> {
        let st = lock(&self.trust);
        let limit = usize::try_from(records.unsigned_abs()).unwrap_or(usize::MAX);
        let mine = st.changes.iter().filter(|c| gun.is_none_or(|g| c.gun == g));
        if records >= 0 && change_id >= 0 {
            return Ok(mine
                .filter(|c| c.id > change_id)
                .take(limit)
                .cloned()
                .collect());
        }
        // Backwards: the `limit` entries before change_id (the newest when <= 0), ascending.
        let before = if change_id <= 0 { i64::MAX } else { change_id };
        let mut out: Vec<Change> = mine
            .rev()
            .filter(|c| c.id < before)
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        Ok(out)
    }

    async fn server_key_insert(&self, gun: &str, key: &ServerKeyRecord) -> Result<()> {
        let mut st = lock(&self.trust);
        let keys = st.keys.entry(gun.to_owned()).or_default();
        if keys.iter().any(|k| k.key_id == key.key_id) {
            return Err(Error::Backend(format!(
                "server key {:?} of {gun:?} already exists",
                key.key_id
            )));
        }
        keys.push(key.clone());
        Ok(())
    }

    async fn server_key_insert_first(
        &self,
        gun: &str,
        key: &ServerKeyRecord,
    ) -> Result<ServerKeyRecord> {
        let mut st = lock(&self.trust);
        let keys = st.keys.entry(gun.to_owned()).or_default();
        if let Some(held) = keys.iter().rev().find(|k| k.role == key.role) {
            return Ok(held.clone());
        }
        if keys.iter().any(|k| k.key_id == key.key_id) {
            return Err(Error::Backend(format!(
                "server key {:?} of {gun:?} already exists",
                key.key_id
            )));
        }
        keys.push(key.clone());
        Ok(key.clone())
    }

    async fn server_keys(&self, gun: &str, role: ServerKeyRole) -> Result<Vec<ServerKeyRecord>> {
        Ok(lock(&self.trust)
            .keys
            .get(gun)
            .into_iter()
            .flatten()
            .filter(|k| k.role == role)
            .cloned()
            .collect())
    }
}
