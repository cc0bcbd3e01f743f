//! Notary trust data: TUF files, the changefeed, server-held keys.

use async_trait::async_trait;
use berth_storage::{
    AuditRecord, Change, Error, NewTufFile, Result, ServerKeyRecord, ServerKeyRole, TrustStore,
    TufFile,
};
use bytes::Bytes;

use crate::coherence::Stale;
use crate::{PgStore, backend, col, kind_col, locks};

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

const TUF_COLS: &str = "role, version, sha256, data, created";

fn tuf_row(r: &tokio_postgres::Row) -> Result<TufFile> {
    Ok(TufFile {
        role: col(r, 0)?,
        version: col(r, 1)?,
        sha256: col(r, 2)?,
        data: Bytes::from(col::<Vec<u8>>(r, 3)?),
        created: col(r, 4)?,
    })
}

fn change_row(r: &tokio_postgres::Row) -> Result<Change> {
    Ok(Change {
        id: col(r, 0)?,
        created_at: i128::from(col::<i64>(r, 1)?),
        gun: col(r, 2)?,
        version: col(r, 3)?,
        sha256: col(r, 4)?,
        category: kind_col(r, 5)?,
    })
}

fn key_row(r: &tokio_postgres::Row) -> Result<ServerKeyRecord> {
    Ok(ServerKeyRecord {
        key_id: col(r, 0)?,
        role: kind_col(r, 1)?,
        algorithm: col(r, 2)?,
        public: Bytes::from(col::<Vec<u8>>(r, 3)?),
        sealed_private: Bytes::from(col::<Vec<u8>>(r, 4)?),
        created: col(r, 5)?,
    })
}

/// Takes the locks a write to one GUN's trust data holds until it commits: every GUN writer
/// shares the registry-wide lock (a wipe of all GUNs takes it exclusively), and writers of the
/// same GUN exclude each other, so the version check and the insert see no interleaved writer.
async fn lock_gun(tx: &tokio_postgres::Transaction<'_>, gun: &str) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock_shared($1, $2), pg_advisory_xact_lock($3, hashtext($4))",
        &[
            &locks::TRUST_ALL.0,
            &locks::TRUST_ALL.1,
            &locks::TRUST_GUN,
            &gun,
        ],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

/// Held from just before changefeed rows get their ids until commit (see [`locks::SEQUENCE`]).
async fn lock_sequence(tx: &tokio_postgres::Transaction<'_>) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&locks::SEQUENCE.0, &locks::SEQUENCE.1],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

impl PgStore {
    async fn tuf_current_read(&self, gun: &str, role: &str) -> Result<Option<TufFile>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {TUF_COLS} FROM tuf_files WHERE gun = $1 AND role = $2
                 ORDER BY version DESC LIMIT 1"
            ))
            .await
            .map_err(backend)?;
        let row = c.query_opt(&st, &[&gun, &role]).await.map_err(backend)?;
        row.as_ref().map(tuf_row).transpose()
    }
}

#[async_trait]
impl TrustStore for PgStore {
    async fn tuf_current_all(&self, gun: &str) -> Result<Vec<TufFile>> {
        let c = self.conn().await?;
        // The row with the highest version per role.
        let st = c
            .prepare_cached(&format!(
                "SELECT DISTINCT ON (role) {TUF_COLS} FROM tuf_files WHERE gun = $1
                 ORDER BY role, version DESC"
            ))
            .await
            .map_err(backend)?;
        let rows = c.query(&st, &[&gun]).await.map_err(backend)?;
        rows.iter().map(tuf_row).collect()
    }

    async fn tuf_current(&self, gun: &str, role: &str) -> Result<Option<TufFile>> {
        // The hot path (every trust GET): from memory while the cache listener runs.
        let Some(co) = self.co.as_ref().filter(|co| co.usable()) else {
            return self.tuf_current_read(gun, role).await;
        };
        if let Some(hit) = co.cache.tuf_current(gun, role) {
            return Ok(hit);
        }
        let generation = co.cache.generation();
        let found = self.tuf_current_read(gun, role).await?;
        co.cache.fill(generation, gun, role, found.clone());
        Ok(found)
    }

    async fn tuf_by_checksum(
        &self,
        gun: &str,
        role: &str,
        sha256: &str,
    ) -> Result<Option<TufFile>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {TUF_COLS} FROM tuf_files WHERE gun = $1 AND role = $2 AND sha256 = $3
                 ORDER BY version DESC LIMIT 1"
            ))
            .await
            .map_err(backend)?;
        let row = c
            .query_opt(&st, &[&gun, &role, &sha256.to_ascii_lowercase()])
            .await
            .map_err(backend)?;
        row.as_ref().map(tuf_row).transpose()
    }

    async fn tuf_by_version(&self, gun: &str, role: &str, version: i64) -> Result<Option<TufFile>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {TUF_COLS} FROM tuf_files WHERE gun = $1 AND role = $2 AND version = $3"
            ))
            .await
            .map_err(backend)?;
        let row = c
            .query_opt(&st, &[&gun, &role, &version])
            .await
            .map_err(backend)?;
        row.as_ref().map(tuf_row).transpose()
    }

    async fn tuf_update(
        &self,
        gun: &str,
        files: Vec<NewTufFile>,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(backend)?;
        lock_gun(&tx, gun).await?;
        let created = now_secs();
        let max_q = tx
            .prepare_cached("SELECT MAX(version) FROM tuf_files WHERE gun = $1 AND role = $2")
            .await
            .map_err(backend)?;
        let insert_q = tx
            .prepare_cached(
                "INSERT INTO tuf_files(gun, role, version, sha256, data, created)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .await
            .map_err(backend)?;
        for f in &files {
            let row = tx
                .query_one(&max_q, &[&gun, &f.role])
                .await
                .map_err(backend)?;
            if let Some(stored) = col::<Option<i64>>(&row, 0)?
                && stored >= f.version
            {
                // Dropping the transaction rolls back the files already inserted.
                return Err(Error::TufVersion {
                    role: f.role.clone(),
                    stored,
                    new: f.version,
                });
            }
            tx.execute(
                &insert_q,
                &[&gun, &f.role, &f.version, &f.sha256, &&f.data[..], &created],
            )
            .await
            .map_err(backend)?;
        }
        let stamps: Vec<&NewTufFile> = files.iter().filter(|f| f.role == "timestamp").collect();
        if !stamps.is_empty() {
            lock_sequence(&tx).await?;
            for f in stamps {
                tx.execute(
                    "INSERT INTO changefeed(created_at, gun, version, sha256, category)
                     VALUES ($1, $2, $3, $4, 'update')",
                    &[&now_nanos(), &gun, &f.version, &f.sha256],
                )
                .await
                .map_err(backend)?;
            }
        }
        if let Some(r) = audit {
            // Taken last (after the GUN and changefeed locks, which no audit writer holds), so
            // the lock order stays acyclic; held to commit as `audit_append`'s is.
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, $2)",
                &[&locks::AUDIT.0, &locks::AUDIT.1],
            )
            .await
            .map_err(backend)?;
            tx.execute(
                "INSERT INTO audit_log(at, actor, action, target, client, detail)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&r.at, &r.actor, &r.action, &r.target, &r.client, &r.detail],
            )
            .await
            .map_err(backend)?;
        }
        self.commit_notifying(tx, Stale::Gun(gun)).await
    }

    async fn tuf_delete(&self, gun: &str) -> Result<bool> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(backend)?;
        lock_gun(&tx, gun).await?;
        let n = tx
            .execute("DELETE FROM tuf_files WHERE gun = $1", &[&gun])
            .await
            .map_err(backend)?;
        tx.execute("DELETE FROM server_keys WHERE gun = $1", &[&gun])
            .await
            .map_err(backend)?;
        if n > 0 {
            lock_sequence(&tx).await?;
            tx.execute(
                "INSERT INTO changefeed(created_at, gun, version, sha256, category)
                 VALUES ($1, $2, 0, '', 'deletion')",
                &[&now_nanos(), &gun],
            )
            .await
            .map_err(backend)?;
        }
        self.commit_notifying(tx, Stale::Gun(gun)).await?;
        Ok(n > 0)
    }

    async fn tuf_delete_all(&self) -> Result<u64> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(backend)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&locks::TRUST_ALL.0, &locks::TRUST_ALL.1],
        )
        .await
        .map_err(backend)?;
        lock_sequence(&tx).await?;
        let n = tx
            .execute(
                "INSERT INTO changefeed(created_at, gun, version, sha256, category)
                 SELECT $1, gun, 0, '', 'deletion' FROM (SELECT DISTINCT gun FROM tuf_files) g
                 ORDER BY gun",
                &[&now_nanos()],
            )
            .await
            .map_err(backend)?;
        tx.batch_execute("DELETE FROM tuf_files; DELETE FROM server_keys")
            .await
            .map_err(backend)?;
        self.commit_notifying(tx, Stale::AllGuns).await?;
        Ok(n)
    }

    async fn tuf_guns(&self) -> Result<Vec<String>> {
        let c = self.conn().await?;
        let rows = c
            .query("SELECT DISTINCT gun FROM tuf_files ORDER BY gun", &[])
            .await
            .map_err(backend)?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    async fn tuf_history(&self, gun: &str) -> Result<Vec<TufFile>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {TUF_COLS} FROM tuf_files WHERE gun = $1 \
                     ORDER BY role COLLATE \"C\", version"
                ),
                &[&gun],
            )
            .await
            .map_err(backend)?;
        rows.iter().map(tuf_row).collect()
    }

    async fn changefeed(
        &self,
        gun: Option<&str>,
        change_id: i64,
        records: i64,
    ) -> Result<Vec<Change>> {
        let c = self.conn().await?;
        let filter = if gun.is_some() {
            "AND gun = $3"
        } else {
            "AND $3::text IS NULL"
        };
        let limit = i64::try_from(records.unsigned_abs()).unwrap_or(i64::MAX);
        let cols = "id, created_at, gun, version, sha256, category";
        let rows = if records >= 0 && change_id >= 0 {
            c.query(
                &format!(
                    "SELECT {cols} FROM changefeed WHERE id > $1 {filter} ORDER BY id ASC LIMIT $2"
                ),
                &[&change_id, &limit, &gun],
            )
            .await
        } else {
            // Backwards: the `limit` entries before change_id (the newest when <= 0).
            let before = if change_id <= 0 { i64::MAX } else { change_id };
            c.query(
                &format!(
                    "SELECT {cols} FROM changefeed WHERE id < $1 {filter} ORDER BY id DESC LIMIT $2"
                ),
                &[&before, &limit, &gun],
            )
            .await
        }
        .map_err(backend)?;
        let mut out = rows.iter().map(change_row).collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|ch| ch.id);
        Ok(out)
    }

    async fn server_key_insert(&self, gun: &str, k: &ServerKeyRecord) -> Result<()> {
        let c = self.conn().await?;
        c.execute(
            "INSERT INTO server_keys(gun, role, key_id, algorithm, public, sealed_private, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &gun,
                &k.role.as_str(),
                &k.key_id,
                &k.algorithm,
                &&k.public[..],
                &&k.sealed_private[..],
                &k.created,
            ],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn server_key_insert_first(
        &self,
        gun: &str,
        k: &ServerKeyRecord,
    ) -> Result<ServerKeyRecord> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(backend)?;
        // Under the GUN's lock, so two nodes asking for the first key at once agree on one.
        lock_gun(&tx, gun).await?;
        let held = tx
            .query_opt(
                "SELECT key_id, role, algorithm, public, sealed_private, created FROM server_keys
                 WHERE gun = $1 AND role = $2 ORDER BY seq DESC LIMIT 1",
                &[&gun, &k.role.as_str()],
            )
            .await
            .map_err(backend)?;
        if let Some(row) = held {
            return key_row(&row);
        }
        tx.execute(
            "INSERT INTO server_keys(gun, role, key_id, algorithm, public, sealed_private, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &gun,
                &k.role.as_str(),
                &k.key_id,
                &k.algorithm,
                &&k.public[..],
                &&k.sealed_private[..],
                &k.created,
            ],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(k.clone())
    }

    async fn server_keys(&self, gun: &str, role: ServerKeyRole) -> Result<Vec<ServerKeyRecord>> {
        let role = role.as_str();
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT key_id, role, algorithm, public, sealed_private, created FROM server_keys
                 WHERE gun = $1 AND role = $2 ORDER BY seq",
            )
            .await
            .map_err(backend)?;
        let rows = c.query(&st, &[&gun, &role]).await.map_err(backend)?;
        rows.iter().map(key_row).collect()
    }
}
