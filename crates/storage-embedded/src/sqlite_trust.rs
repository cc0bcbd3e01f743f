//! Trust data (Notary TUF files, changefeed, server keys; the settings table) in the same SQLite
//! database.

use async_trait::async_trait;
use berth_storage::{
    AuditRecord, Change, Error, NewTufFile, Result, ServerKeyRecord, ServerKeyRole, TrustStore,
    TufFile,
};
use bytes::Bytes;
use rusqlite::{OptionalExtension, params};

use crate::SqliteMetadataStore;
use crate::sqlite::{backend, kind_col};

pub(crate) const TRUST_SCHEMA: &str = r#"
-- Append-only: every version stays, clients fetch N.root.json chains and files by hash.
CREATE TABLE IF NOT EXISTS tuf_files (
    id      INTEGER PRIMARY KEY,
    gun     TEXT NOT NULL,
    role    TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256  TEXT NOT NULL,
    data    BLOB NOT NULL,
    created INTEGER NOT NULL,
    UNIQUE (gun, role, version)
);
CREATE INDEX IF NOT EXISTS tuf_files_by_sha256 ON tuf_files(gun, role, sha256);
CREATE TABLE IF NOT EXISTS changefeed (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at INTEGER NOT NULL,
    gun        TEXT NOT NULL,
    version    INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    category   TEXT NOT NULL CHECK (category IN ('update', 'deletion'))
);
CREATE INDEX IF NOT EXISTS changefeed_by_gun ON changefeed(gun, id);
CREATE TABLE IF NOT EXISTS server_keys (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    gun            TEXT NOT NULL,
    role           TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    algorithm      TEXT NOT NULL,
    public         BLOB NOT NULL,
    sealed_private BLOB NOT NULL,
    created        INTEGER NOT NULL,
    UNIQUE (gun, key_id)
);
CREATE INDEX IF NOT EXISTS server_keys_by_role ON server_keys(gun, role, seq);
CREATE TABLE IF NOT EXISTS settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn tuf_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TufFile> {
    Ok(TufFile {
        role: r.get(0)?,
        version: r.get(1)?,
        sha256: r.get(2)?,
        data: Bytes::from(r.get::<_, Vec<u8>>(3)?),
        created: r.get(4)?,
    })
}

const TUF_COLS: &str = "role, version, sha256, data, created";

fn change_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Change> {
    Ok(Change {
        id: r.get(0)?,
        created_at: r.get::<_, i64>(1)? as i128,
        gun: r.get(2)?,
        version: r.get(3)?,
        sha256: r.get(4)?,
        category: kind_col(r, 5)?,
    })
}

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ServerKeyRecord> {
    Ok(ServerKeyRecord {
        key_id: r.get(0)?,
        role: kind_col(r, 1)?,
        algorithm: r.get(2)?,
        public: Bytes::from(r.get::<_, Vec<u8>>(3)?),
        sealed_private: Bytes::from(r.get::<_, Vec<u8>>(4)?),
        created: r.get(5)?,
    })
}

#[async_trait]
impl TrustStore for SqliteMetadataStore {
    async fn tuf_current_all(&self, gun: &str) -> Result<Vec<TufFile>> {
        if let Some(hit) = self.cache.tuf_current_all(gun) {
            return Ok(hit);
        }
        let generation = self.cache.generation();
        let g = gun.to_owned();
        let found: Vec<TufFile> = self
            .read(move |c| {
                // The row with the highest version per role.
                c.prepare_cached(&format!(
                    "SELECT {TUF_COLS} FROM tuf_files t WHERE gun = ?1 AND version =
                       (SELECT MAX(version) FROM tuf_files u WHERE u.gun = t.gun AND u.role = t.role)
                     ORDER BY role"
                ))?
                .query_map([&g], tuf_row)?
                .collect()
            })
            .await?;
        self.cache.fill_all(generation, gun, &found);
        Ok(found)
    }

    async fn tuf_current(&self, gun: &str, role: &str) -> Result<Option<TufFile>> {
        if let Some(hit) = self.cache.tuf_current(gun, role) {
            return Ok(hit);
        }
        let generation = self.cache.generation();
        let (g, r) = (gun.to_owned(), role.to_owned());
        let found = self
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {TUF_COLS} FROM tuf_files WHERE gun = ?1 AND role = ?2 ORDER BY version DESC LIMIT 1"
                ))?
                .query_row(params![g, r], tuf_row)
                .optional()
            })
            .await?;
        self.cache.fill(generation, gun, role, found.clone());
        Ok(found)
    }

    async fn tuf_by_checksum(
        &self,
        gun: &str,
        role: &str,
        sha256: &str,
    ) -> Result<Option<TufFile>> {
        let (gun, role, sha) = (gun.to_owned(), role.to_owned(), sha256.to_ascii_lowercase());
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TUF_COLS} FROM tuf_files WHERE gun = ?1 AND role = ?2 AND sha256 = ?3
                 ORDER BY version DESC LIMIT 1"
            ))?
            .query_row(params![gun, role, sha], tuf_row)
            .optional()
        })
        .await
    }

    async fn tuf_by_version(&self, gun: &str, role: &str, version: i64) -> Result<Option<TufFile>> {
        let (gun, role) = (gun.to_owned(), role.to_owned());
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TUF_COLS} FROM tuf_files WHERE gun = ?1 AND role = ?2 AND version = ?3"
            ))?
            .query_row(params![gun, role, version], tuf_row)
            .optional()
        })
        .await
    }

    async fn tuf_update(
        &self,
        gun: &str,
        files: Vec<NewTufFile>,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let gun = gun.to_owned();
        let audit = audit.cloned();
        let cache = self.cache.clone();
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let created = now_secs();
            for f in &files {
                let stored: Option<i64> = tx
                    .prepare_cached("SELECT MAX(version) FROM tuf_files WHERE gun = ?1 AND role = ?2")
                    .map_err(backend)?
                    .query_row(params![gun, f.role], |r| r.get(0))
                    .map_err(backend)?;
                if let Some(stored) = stored
                    && stored >= f.version
                {
                    // Dropping the transaction rolls back the files already inserted.
                    return Err(Error::TufVersion {
                        role: f.role.clone(),
                        stored,
                        new: f.version,
                    });
                }
                tx.prepare_cached(
                    "INSERT INTO tuf_files(gun, role, version, sha256, data, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(backend)?
                .execute(params![gun, f.role, f.version, f.sha256, &f.data[..], created])
                .map_err(backend)?;
                if f.role == "timestamp" {
                    tx.prepare_cached(
                        "INSERT INTO changefeed(created_at, gun, version, sha256, category)
                         VALUES (?1, ?2, ?3, ?4, 'update')",
                    )
                    .map_err(backend)?
                    .execute(params![now_nanos(), gun, f.version, f.sha256])
                    .map_err(backend)?;
                }
            }
            // The audit log shares this database: the record commits with the files.
            if let Some(r) = &audit {
                tx.prepare_cached(
                    "INSERT INTO audit_log(at, actor, action, target, client, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(backend)?
                .execute(params![r.at, r.actor, r.action, r.target, r.client, r.detail])
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            cache.apply_update(
                &gun,
                files
                    .into_iter()
                    .map(|f| TufFile {
                        role: f.role,
                        version: f.version,
                        sha256: f.sha256,
                        data: f.data,
                        created,
                    })
                    .collect(),
            );
            Ok(())
        })
        .await
    }

    async fn tuf_delete(&self, gun: &str) -> Result<bool> {
        let gun = gun.to_owned();
        let cache = self.cache.clone();
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let n = tx
                .execute("DELETE FROM tuf_files WHERE gun = ?1", [&gun])
                .map_err(backend)?;
            tx.execute("DELETE FROM server_keys WHERE gun = ?1", [&gun])
                .map_err(backend)?;
            if n > 0 {
                tx.execute(
                    "INSERT INTO changefeed(created_at, gun, version, sha256, category) VALUES (?1, ?2, 0, '', 'deletion')",
                    params![now_nanos(), gun],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            cache.invalidate(Some(&gun));
            Ok(n > 0)
        })
        .await
    }

    async fn tuf_delete_all(&self) -> Result<u64> {
        let cache = self.cache.clone();
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let guns: Vec<String> = tx
                .prepare("SELECT DISTINCT gun FROM tuf_files")
                .map_err(backend)?
                .query_map([], |r| r.get(0))
                .map_err(backend)?
                .collect::<rusqlite::Result<_>>()
                .map_err(backend)?;
            tx.execute("DELETE FROM tuf_files", []).map_err(backend)?;
            tx.execute("DELETE FROM server_keys", []).map_err(backend)?;
            let now = now_nanos();
            for g in &guns {
                tx.execute(
                    "INSERT INTO changefeed(created_at, gun, version, sha256, category) VALUES (?1, ?2, 0, '', 'deletion')",
                    params![now, g],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            cache.invalidate(None);
            Ok(guns.len() as u64)
        })
        .await
    }

    async fn tuf_guns(&self) -> Result<Vec<String>> {
        self.read(move |c| {
            c.prepare_cached("SELECT DISTINCT gun FROM tuf_files ORDER BY gun")?
                .query_map([], |r| r.get(0))?
                .collect()
        })
        .await
    }

    async fn tuf_history(&self, gun: &str) -> Result<Vec<TufFile>> {
        let gun = gun.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TUF_COLS} FROM tuf_files WHERE gun = ?1 ORDER BY role, version"
            ))?
            .query_map(params![gun], tuf_row)?
            .collect()
        })
        .await
    }

    async fn changefeed(
        &self,
        gun: Option<&str>,
        change_id: i64,
        records: i64,
    ) -> Result<Vec<Change>> {
        let gun = gun.map(str::to_owned);
        self.read(move |c| {
            let filter = if gun.is_some() {
                "AND gun = ?3"
            } else {
                "AND ?3 IS NULL"
            };
            let limit = records.unsigned_abs() as i64;
            let mut out: Vec<Change> = if records >= 0 && change_id >= 0 {
                c.prepare_cached(&format!(
                    "SELECT id, created_at, gun, version, sha256, category FROM changefeed
                     WHERE id > ?1 {filter} ORDER BY id ASC LIMIT ?2"
                ))?
                .query_map(params![change_id, limit, gun], change_row)?
                .collect::<rusqlite::Result<_>>()?
            } else {
                // Backwards: the `limit` entries before change_id (the newest when <= 0).
                let before = if change_id <= 0 { i64::MAX } else { change_id };
                c.prepare_cached(&format!(
                    "SELECT id, created_at, gun, version, sha256, category FROM changefeed
                     WHERE id < ?1 {filter} ORDER BY id DESC LIMIT ?2"
                ))?
                .query_map(params![before, limit, gun], change_row)?
                .collect::<rusqlite::Result<_>>()?
            };
            out.sort_by_key(|ch| ch.id);
            Ok(out)
        })
        .await
    }

    async fn server_key_insert(&self, gun: &str, key: &ServerKeyRecord) -> Result<()> {
        let (gun, k) = (gun.to_owned(), key.clone());
        self.write(move |c| {
            c.execute(
                "INSERT INTO server_keys(gun, role, key_id, algorithm, public, sealed_private, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![gun, k.role.as_str(), k.key_id, k.algorithm, &k.public[..], &k.sealed_private[..], k.created],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn server_key_insert_first(
        &self,
        gun: &str,
        key: &ServerKeyRecord,
    ) -> Result<ServerKeyRecord> {
        let (gun, k) = (gun.to_owned(), key.clone());
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let newest = |tx: &rusqlite::Transaction<'_>| {
                tx.prepare_cached(
                    "SELECT key_id, role, algorithm, public, sealed_private, created FROM server_keys
                     WHERE gun = ?1 AND role = ?2 ORDER BY seq DESC LIMIT 1",
                )?
                .query_row(params![gun, k.role.as_str()], key_row)
                .optional()
            };
            if let Some(held) = newest(&tx).map_err(backend)? {
                return Ok(held);
            }
            tx.execute(
                "INSERT INTO server_keys(gun, role, key_id, algorithm, public, sealed_private, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![gun, k.role.as_str(), k.key_id, k.algorithm, &k.public[..], &k.sealed_private[..], k.created],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(k)
        })
        .await
    }

    async fn server_keys(&self, gun: &str, role: ServerKeyRole) -> Result<Vec<ServerKeyRecord>> {
        let (gun, role) = (gun.to_owned(), role.as_str());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT key_id, role, algorithm, public, sealed_private, created FROM server_keys
                 WHERE gun = ?1 AND role = ?2 ORDER BY seq",
            )?
            .query_map(params![gun, role], key_row)?
            .collect()
        })
        .await
    }
}
