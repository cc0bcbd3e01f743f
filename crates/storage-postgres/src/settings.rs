//! Registry-wide settings: read on every request (the content-trust switch, anonymous pull),
//! so kept in memory while the cache listener runs (see `coherence`).

use async_trait::async_trait;
use berth_storage::{Result, SettingsStore};

use crate::coherence::Stale;
use crate::{PgStore, backend, col};

impl PgStore {
    async fn setting_read(&self, name: &str) -> Result<Option<String>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached("SELECT value FROM settings WHERE name = $1")
            .await
            .map_err(backend)?;
        let row = c.query_opt(&st, &[&name]).await.map_err(backend)?;
        row.map(|r| col(&r, 0)).transpose()
    }
}

#[async_trait]
impl SettingsStore for PgStore {
    async fn setting_get(&self, name: &str) -> Result<Option<String>> {
        let Some(co) = self.co.as_ref().filter(|co| co.usable()) else {
            return self.setting_read(name).await;
        };
        if let Some(hit) = co.cache.setting(name) {
            return Ok(hit);
        }
        // There are few settings: load them all at once.
        let generation = co.cache.settings_generation();
        let all: std::collections::HashMap<String, String> =
            self.settings_list().await?.into_iter().collect();
        let value = all.get(name).cloned();
        co.cache.fill_settings(generation, all);
        Ok(value)
    }

    async fn settings_list(&self) -> Result<Vec<(String, String)>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                "SELECT name, value FROM settings ORDER BY name COLLATE \"C\"",
                &[],
            )
            .await
            .map_err(backend)?;
        rows.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect()
    }

    async fn setting_insert_if_absent(&self, name: &str, value: &str) -> Result<String> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(backend)?;
        // A concurrent insert of the same name makes this one wait, then do nothing; the select
        // (a new snapshot, after commit) reads whichever value was stored first.
        let inserted = tx
            .execute(
                "INSERT INTO settings(name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &value],
            )
            .await
            .map_err(backend)?;
        if inserted > 0 {
            self.commit_notifying(tx, Stale::Settings).await?;
        } else {
            tx.commit().await.map_err(backend)?;
        }
        let row = c
            .query_one("SELECT value FROM settings WHERE name = $1", &[&name])
            .await
            .map_err(backend)?;
        col(&row, 0)
    }

    async fn setting_set(&self, name: &str, value: &str) -> Result<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(backend)?;
        tx.execute(
            "INSERT INTO settings(name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[&name, &value],
        )
        .await
        .map_err(backend)?;
        self.commit_notifying(tx, Stale::Settings).await
    }
}
