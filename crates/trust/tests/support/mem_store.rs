//! An in-memory `TrustStore` test double with the trait's documented semantics.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use berth_storage::{Change, Error, NewTufFile, Result, ServerKeyRecord, TrustStore, TufFile};

#[derive(Default)]
struct Inner {
    files: BTreeMap<String, Vec<TufFile>>,
    keys: BTreeMap<String, Vec<ServerKeyRecord>>,
    changes: Vec<Change>,
    settings: BTreeMap<String, String>,
}

#[derive(Default)]
pub struct MemStore(Mutex<Inner>);

fn nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

impl Inner {
    fn change(&mut self, gun: &str, version: i64, sha256: &str, category: &str) {
        let id = self.changes.len() as i64 + 1;
        self.changes.push(Change {
            id,
            created_at: nanos(),
            gun: gun.to_owned(),
            version,
            sha256: sha256.to_owned(),
            category: category.to_owned(),
        });
    }
}

#[async_trait]
impl TrustStore for MemStore {
    async fn tuf_current_all(&self, gun: &str) -> Result<Vec<TufFile>> {
        let g = self.0.lock().unwrap();
        let mut best: BTreeMap<&str, &TufFile> = BTreeMap::new();
        for f in g.files.get(gun).into_iter().flatten() {
            if best
                .get(f.role.as_str())
                .is_none_or(|b| b.version < f.version)
            {
                best.insert(&f.role, f);
            }
        }
        Ok(best.into_values().cloned().collect())
    }

    async fn tuf_current(&self, gun: &str, role: &str) -> Result<Option<TufFile>> {
        let g = self.0.lock().unwrap();
        Ok(g.files
            .get(gun)
            .into_iter()
            .flatten()
            .filter(|f| f.role == role)
            .max_by_key(|f| f.version)
            .cloned())
    }

    async fn tuf_by_checksum(
        &self,
        gun: &str,
        role: &str,
        sha256: &str,
    ) -> Result<Option<TufFile>> {
        let g = self.0.lock().unwrap();
        Ok(g.files
            .get(gun)
            .into_iter()
            .flatten()
            .find(|f| f.role == role && f.sha256 == sha256)
            .cloned())
    }

    async fn tuf_by_version(&self, gun: &str, role: &str, version: i64) -> Result<Option<TufFile>> {
        let g = self.0.lock().unwrap();
        Ok(g.files
            .get(gun)
            .into_iter()
            .flatten()
            .find(|f| f.role == role && f.version == version)
            .cloned())
    }

    async fn tuf_update(&self, gun: &str, files: Vec<NewTufFile>) -> Result<()> {
        let mut g = self.0.lock().unwrap();
        let existing = g.files.get(gun).cloned().unwrap_or_default();
        for (i, f) in files.iter().enumerate() {
            let stored = existing
                .iter()
                .filter(|e| e.role == f.role)
                .map(|e| e.version)
                .chain(
                    files[..i]
                        .iter()
                        .filter(|e| e.role == f.role)
                        .map(|e| e.version),
                )
                .max();
            if let Some(stored) = stored
                && stored >= f.version
            {
                return Err(Error::TufVersion {
                    role: f.role.clone(),
                    stored,
                    new: f.version,
                });
            }
        }
        let created = (nanos() / 1_000_000_000) as i64;
        for f in files {
            if f.role == "timestamp" {
                g.change(gun, f.version, &f.sha256, "update");
            }
            g.files.entry(gun.to_owned()).or_default().push(TufFile {
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
        let mut g = self.0.lock().unwrap();
        let files = g.files.remove(gun).is_some_and(|f| !f.is_empty());
        let keys = g.keys.remove(gun).is_some_and(|k| !k.is_empty());
        if files {
            g.change(gun, 0, "", "deletion");
        }
        Ok(files || keys)
    }

    async fn tuf_delete_all(&self) -> Result<u64> {
        let mut g = self.0.lock().unwrap();
        let guns = g.files.values().filter(|f| !f.is_empty()).count();
        g.files.clear();
        g.keys.clear();
        Ok(guns as u64)
    }

    async fn tuf_guns(&self) -> Result<Vec<String>> {
        Ok(self.0.lock().unwrap().files.keys().cloned().collect())
    }

    async fn changefeed(
        &self,
        gun: Option<&str>,
        change_id: i64,
        records: i64,
    ) -> Result<Vec<Change>> {
        let g = self.0.lock().unwrap();
        let mine = g.changes.iter().filter(|c| gun.is_none_or(|x| x == c.gun));
        Ok(if records > 0 {
            mine.filter(|c| c.id > change_id)
                .take(records as usize)
                .cloned()
                .collect()
        } else {
            let before: Vec<_> = mine
                .filter(|c| change_id <= 0 || c.id < change_id)
                .cloned()
                .collect();
            let n = records.unsigned_abs() as usize;
            before[before.len().saturating_sub(n)..].to_vec()
        })
    }

    async fn server_key_insert(&self, gun: &str, key: &ServerKeyRecord) -> Result<()> {
        let mut g = self.0.lock().unwrap();
        g.keys.entry(gun.to_owned()).or_default().push(key.clone());
        Ok(())
    }

    async fn server_key_insert_first(
        &self,
        gun: &str,
        key: &ServerKeyRecord,
    ) -> Result<ServerKeyRecord> {
        let mut g = self.0.lock().unwrap();
        let held = g.keys.entry(gun.to_owned()).or_default();
        if let Some(k) = held.iter().rev().find(|k| k.role == key.role) {
            return Ok(k.clone());
        }
        held.push(key.clone());
        Ok(key.clone())
    }

    async fn server_keys(&self, gun: &str, role: &str) -> Result<Vec<ServerKeyRecord>> {
        let g = self.0.lock().unwrap();
        Ok(g.keys
            .get(gun)
            .into_iter()
            .flatten()
            .filter(|k| k.role == role)
            .cloned()
            .collect())
    }

    async fn setting_get(&self, name: &str) -> Result<Option<String>> {
        Ok(self.0.lock().unwrap().settings.get(name).cloned())
    }

    async fn setting_insert_if_absent(&self, name: &str, value: &str) -> Result<String> {
        let mut g = self.0.lock().unwrap();
        Ok(g.settings
            .entry(name.to_owned())
            .or_insert_with(|| value.to_owned())
            .clone())
    }

    async fn setting_set(&self, name: &str, value: &str) -> Result<()> {
        self.0
            .lock()
            .unwrap()
            .settings
            .insert(name.to_owned(), value.to_owned());
        Ok(())
    }
}
