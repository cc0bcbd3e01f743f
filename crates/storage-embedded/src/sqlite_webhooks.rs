//! Webhooks and their delivery queue in SQLite. One process owns the database, and SQLite has
//! one writer: a claim (select and lease in one write transaction) cannot race another.

use async_trait::async_trait;
use berth_storage::{
    Delivery, Error, NewDelivery, Result, WebhookRecord, WebhookStats, WebhookStore, join_list,
    split_list,
};
use bytes::Bytes;
use rusqlite::{OptionalExtension, params};

use crate::SqliteMetadataStore;
use crate::sqlite::backend;

/// Schema step 6 (see `sqlite::MIGRATIONS`).
pub(crate) const WEBHOOK_SCHEMA: &str = r#"
CREATE TABLE webhooks (
    name         TEXT PRIMARY KEY,
    uri          TEXT NOT NULL,
    actions      TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    secret       BLOB NOT NULL,
    created      INTEGER NOT NULL,
    created_by   TEXT NOT NULL,
    delivered    INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    last_attempt INTEGER,
    last_success INTEGER,
    last_error   TEXT
);
CREATE TABLE webhook_queue (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook     TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    payload     BLOB NOT NULL,
    created     INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    lease_until INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX webhook_queue_by_due ON webhook_queue(next_at);
CREATE INDEX webhook_queue_by_webhook ON webhook_queue(webhook);
"#;

const HOOK_COLS: &str = "name, uri, actions, scopes, secret, created, created_by";

fn hook_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WebhookRecord> {
    Ok(WebhookRecord {
        name: r.get(0)?,
        uri: r.get(1)?,
        actions: split_list(&r.get::<_, String>(2)?),
        scopes: split_list(&r.get::<_, String>(3)?),
        secret: Bytes::from(r.get::<_, Vec<u8>>(4)?),
        created: r.get(5)?,
        created_by: r.get(6)?,
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl WebhookStore for SqliteMetadataStore {
    async fn webhook_insert(&self, rec: &WebhookRecord) -> Result<()> {
        let r = rec.clone();
        self.write(move |c| {
            c.execute(
                &format!("INSERT INTO webhooks({HOOK_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    r.name,
                    r.uri,
                    join_list(&r.actions),
                    join_list(&r.scopes),
                    r.secret.to_vec(),
                    r.created,
                    r.created_by
                ],
            )
            .map_err(|e| match &e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                {
                    Error::Conflict(format!("webhook {:?}", r.name))
                }
                _ => backend(e),
            })?;
            Ok(())
        })
        .await
    }

    async fn webhook_get(&self, name: &str) -> Result<Option<WebhookRecord>> {
        let name = name.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {HOOK_COLS} FROM webhooks WHERE name = ?1"))?
                .query_row([name], hook_row)
                .optional()
        })
        .await
    }

    async fn webhook_list(&self) -> Result<Vec<(WebhookRecord, WebhookStats)>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {HOOK_COLS}, delivered, failed, last_attempt, last_success, last_error,
                        (SELECT count(*) FROM webhook_queue q WHERE q.webhook = w.name)
                 FROM webhooks w ORDER BY name"
            ))?
            .query_map([], |r| {
                Ok((
                    hook_row(r)?,
                    WebhookStats {
                        delivered: count(r.get(7)?),
                        failed: count(r.get(8)?),
                        last_attempt: r.get(9)?,
                        last_success: r.get(10)?,
                        last_error: r.get(11)?,
                        pending: count(r.get(12)?),
                    },
                ))
            })?
            .collect()
        })
        .await
    }

    async fn webhook_delete(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let n = tx
                .execute("DELETE FROM webhooks WHERE name = ?1", [&name])
                .map_err(backend)?;
            tx.execute("DELETE FROM webhook_queue WHERE webhook = ?1", [&name])
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn webhook_enqueue(&self, items: &[NewDelivery], max_pending: u64) -> Result<u64> {
        let items = items.to_vec();
        let max = i64::try_from(max_pending).unwrap_or(i64::MAX);
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let now = now_ms();
            {
                let mut st = tx
                    .prepare_cached(
                        "INSERT INTO webhook_queue(webhook, event_id, payload, created, next_at)
                         VALUES (?1, ?2, ?3, ?4, ?4)",
                    )
                    .map_err(backend)?;
                for it in &items {
                    st.execute(params![it.webhook, it.event_id, it.payload.to_vec(), now])
                        .map_err(backend)?;
                }
            }
            let total: i64 = tx
                .query_row("SELECT count(*) FROM webhook_queue", [], |r| r.get(0))
                .map_err(backend)?;
            let excess = total.saturating_sub(max).max(0);
            if excess > 0 {
                tx.execute(
                    "DELETE FROM webhook_queue WHERE id IN
                     (SELECT id FROM webhook_queue ORDER BY id LIMIT ?1)",
                    [excess],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(count(excess))
        })
        .await
    }

    async fn webhook_due(&self, now: i64, lease_until: i64, limit: usize) -> Result<Vec<Delivery>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let due: Vec<Delivery> = tx
                .prepare_cached(
                    "SELECT id, webhook, event_id, payload, created, attempts, last_error
                     FROM webhook_queue WHERE next_at <= ?1 AND lease_until <= ?1
                     ORDER BY id LIMIT ?2",
                )
                .map_err(backend)?
                .query_map(params![now, limit], |r| {
                    Ok(Delivery {
                        id: r.get(0)?,
                        webhook: r.get(1)?,
                        event_id: r.get(2)?,
                        payload: Bytes::from(r.get::<_, Vec<u8>>(3)?),
                        created: r.get(4)?,
                        attempts: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(u32::MAX),
                        last_error: r.get(6)?,
                    })
                })
                .map_err(backend)?
                .collect::<rusqlite::Result<_>>()
                .map_err(backend)?;
            if due.is_empty() {
                // Nothing written: the transaction ends without a commit's fsync.
                return Ok(due);
            }
            {
                let mut st = tx
                    .prepare_cached("UPDATE webhook_queue SET lease_until = ?2 WHERE id = ?1")
                    .map_err(backend)?;
                for d in &due {
                    st.execute(params![d.id, lease_until]).map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)?;
            Ok(due)
        })
        .await
    }

    async fn webhook_done(&self, id: i64, _attempts: u32, now: i64) -> Result<()> {
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let hook: Option<String> = tx
                .query_row(
                    "DELETE FROM webhook_queue WHERE id = ?1 RETURNING webhook",
                    [id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            if let Some(hook) = hook {
                tx.execute(
                    "UPDATE webhooks SET delivered = delivered + 1, last_attempt = ?2,
                     last_success = ?2 WHERE name = ?1",
                    params![hook, now],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn webhook_retry(
        &self,
        id: i64,
        attempts: u32,
        next_at: i64,
        error: &str,
        now: i64,
    ) -> Result<()> {
        let error = error.to_owned();
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let hook: Option<String> = tx
                .query_row(
                    "UPDATE webhook_queue SET attempts = ?2, next_at = ?3, last_error = ?4,
                     lease_until = 0 WHERE id = ?1 RETURNING webhook",
                    params![id, i64::from(attempts), next_at, error],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            if let Some(hook) = hook {
                tx.execute(
                    "UPDATE webhooks SET last_attempt = ?2, last_error = ?3 WHERE name = ?1",
                    params![hook, now, error],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn webhook_drop(&self, id: i64, _attempts: u32, error: &str, now: i64) -> Result<()> {
        let error = error.to_owned();
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let hook: Option<String> = tx
                .query_row(
                    "DELETE FROM webhook_queue WHERE id = ?1 RETURNING webhook",
                    [id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            if let Some(hook) = hook {
                tx.execute(
                    "UPDATE webhooks SET failed = failed + 1, last_attempt = ?2,
                     last_error = ?3 WHERE name = ?1",
                    params![hook, now, error],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn webhook_pending(&self) -> Result<u64> {
        self.read(|c| {
            c.query_row("SELECT count(*) FROM webhook_queue", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .await
        .map(count)
    }
}
