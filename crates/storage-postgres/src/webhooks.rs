//! Webhooks and their delivery queue, shared by every node. A claim leases rows with
//! `FOR UPDATE SKIP LOCKED`: nodes claiming at once skip each other's rows instead of waiting,
//! and a row whose lease runs is not due again until the lease ends (its node died).

use async_trait::async_trait;
use berth_storage::{
    Delivery, Error, NewDelivery, Result, WebhookRecord, WebhookStats, WebhookStore, join_list,
    split_list,
};
use bytes::Bytes;

use crate::{PgStore, backend, col, is_unique_violation, locks};

const HOOK_COLS: &str = "name, uri, actions, scopes, secret, created, created_by";

fn hook_row(r: &tokio_postgres::Row) -> Result<WebhookRecord> {
    Ok(WebhookRecord {
        name: col(r, 0)?,
        uri: col(r, 1)?,
        actions: split_list(col(r, 2)?),
        scopes: split_list(col(r, 3)?),
        secret: Bytes::from(col::<Vec<u8>>(r, 4)?),
        created: col(r, 5)?,
        created_by: col(r, 6)?,
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
impl WebhookStore for PgStore {
    async fn webhook_insert(&self, r: &WebhookRecord) -> Result<()> {
        let c = self.conn().await?;
        c.execute(
            &format!("INSERT INTO webhooks({HOOK_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
            &[
                &r.name,
                &r.uri,
                &join_list(&r.actions),
                &join_list(&r.scopes),
                &r.secret.as_ref(),
                &r.created,
                &r.created_by,
            ],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::Conflict(format!("webhook {:?}", r.name))
            } else {
                backend(e)
            }
        })?;
        Ok(())
    }

    async fn webhook_get(&self, name: &str) -> Result<Option<WebhookRecord>> {
        let c = self.conn().await?;
        let row = c
            .query_opt(
                &format!("SELECT {HOOK_COLS} FROM webhooks WHERE name = $1"),
                &[&name],
            )
            .await
            .map_err(backend)?;
        row.as_ref().map(hook_row).transpose()
    }

    async fn webhook_list(&self) -> Result<Vec<(WebhookRecord, WebhookStats)>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {HOOK_COLS}, delivered, failed, last_attempt, last_success, last_error,
                            (SELECT count(*) FROM webhook_queue q WHERE q.webhook = w.name)
                     FROM webhooks w ORDER BY name"
                ),
                &[],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    hook_row(r)?,
                    WebhookStats {
                        delivered: count(col(r, 7)?),
                        failed: count(col(r, 8)?),
                        last_attempt: col(r, 9)?,
                        last_success: col(r, 10)?,
                        last_error: col(r, 11)?,
                        pending: count(col(r, 12)?),
                    },
                ))
            })
            .collect()
    }

    async fn webhook_delete(&self, name: &str) -> Result<bool> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(backend)?;
        let n = tx
            .execute("DELETE FROM webhooks WHERE name = $1", &[&name])
            .await
            .map_err(backend)?;
        tx.execute("DELETE FROM webhook_queue WHERE webhook = $1", &[&name])
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(n > 0)
    }

    async fn webhook_enqueue(&self, items: &[NewDelivery], max_pending: u64) -> Result<u64> {
        let max = i64::try_from(max_pending).unwrap_or(i64::MAX);
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(backend)?;
        // One enqueue at a time across the nodes, so the count below is the queue's.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&locks::WEBHOOK_QUEUE.0, &locks::WEBHOOK_QUEUE.1],
        )
        .await
        .map_err(backend)?;
        let now = now_ms();
        let st = tx
            .prepare_cached(
                "INSERT INTO webhook_queue(webhook, event_id, payload, created, next_at)
                 VALUES ($1, $2, $3, $4, $4)",
            )
            .await
            .map_err(backend)?;
        for it in items {
            tx.execute(
                &st,
                &[&it.webhook, &it.event_id, &it.payload.as_ref(), &now],
            )
            .await
            .map_err(backend)?;
        }
        let total: i64 = col(
            &tx.query_one("SELECT count(*) FROM webhook_queue", &[])
                .await
                .map_err(backend)?,
            0,
        )?;
        let excess = total.saturating_sub(max).max(0);
        if excess > 0 {
            tx.execute(
                "DELETE FROM webhook_queue WHERE id IN
                 (SELECT id FROM webhook_queue ORDER BY id LIMIT $1)",
                &[&excess],
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(count(excess))
    }

    async fn webhook_due(&self, now: i64, lease_until: i64, limit: usize) -> Result<Vec<Delivery>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let c = self.conn().await?;
        // One statement: the rows are locked by the inner select (rows another claim holds are
        // skipped) and leased before the lock is released at commit; a claim that starts after
        // that commit sees the lease and passes the rows by.
        let rows = c
            .query(
                "UPDATE webhook_queue q SET lease_until = $2
                 FROM (SELECT id FROM webhook_queue
                       WHERE next_at <= $1 AND lease_until <= $1
                       ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) due
                 WHERE q.id = due.id
                 RETURNING q.id, q.webhook, q.event_id, q.payload, q.created, q.attempts,
                           q.last_error",
                &[&now, &lease_until, &limit],
            )
            .await
            .map_err(backend)?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(Delivery {
                    id: col(r, 0)?,
                    webhook: col(r, 1)?,
                    event_id: col(r, 2)?,
                    payload: Bytes::from(col::<Vec<u8>>(r, 3)?),
                    created: col(r, 4)?,
                    attempts: u32::try_from(col::<i32>(r, 5)?).unwrap_or(0),
                    last_error: col(r, 6)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    async fn webhook_done(&self, id: i64, _attempts: u32, now: i64) -> Result<()> {
        let c = self.conn().await?;
        c.execute(
            "WITH gone AS (DELETE FROM webhook_queue WHERE id = $1 RETURNING webhook)
             UPDATE webhooks SET delivered = delivered + 1, last_attempt = $2, last_success = $2
             WHERE name IN (SELECT webhook FROM gone)",
            &[&id, &now],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn webhook_retry(
        &self,
        id: i64,
        attempts: u32,
        next_at: i64,
        error: &str,
        now: i64,
    ) -> Result<()> {
        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        let c = self.conn().await?;
        c.execute(
            "WITH q AS (UPDATE webhook_queue SET attempts = $2, next_at = $3, last_error = $4,
                        lease_until = 0 WHERE id = $1 RETURNING webhook)
             UPDATE webhooks SET last_attempt = $5, last_error = $4
             WHERE name IN (SELECT webhook FROM q)",
            &[&id, &attempts, &next_at, &error, &now],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn webhook_drop(&self, id: i64, _attempts: u32, error: &str, now: i64) -> Result<()> {
        let c = self.conn().await?;
        c.execute(
            "WITH gone AS (DELETE FROM webhook_queue WHERE id = $1 RETURNING webhook)
             UPDATE webhooks SET failed = failed + 1, last_attempt = $2, last_error = $3
             WHERE name IN (SELECT webhook FROM gone)",
            &[&id, &now, &error],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn webhook_pending(&self) -> Result<u64> {
        let c = self.conn().await?;
        let row = c
            .query_one("SELECT count(*) FROM webhook_queue", &[])
            .await
            .map_err(backend)?;
        Ok(count(col(&row, 0)?))
    }
}
