//! Registry-wide settings (no copies: every read is the database's).

use async_trait::async_trait;
use berth_storage::{Result, SettingsStore};

use crate::{PgStore, backend, col};

#[async_trait]
impl SettingsStore for PgStore {
    async fn setting_get(&self, name: &str) -> Result<Option<String>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached("SELECT value FROM settings WHERE name = $1")
            .await
            .map_err(backend)?;
        let row = c.query_opt(&st, &[&name]).await.map_err(backend)?;
        row.map(|r| col(&r, 0)).transpose()
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
        let c = self.conn().await?;
        // A concurrent insert of the same name makes this one wait, then do nothing; the select
        // (a new snapshot) reads whichever value was stored first.
        c.execute(
            "INSERT INTO settings(name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &value],
        )
        .await
        .map_err(backend)?;
        let row = c
            .query_one("SELECT value FROM settings WHERE name = $1", &[&name])
            .await
            .map_err(backend)?;
        col(&row, 0)
    }

    async fn setting_set(&self, name: &str, value: &str) -> Result<()> {
        let c = self.conn().await?;
        c.execute(
            "INSERT INTO settings(name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[&name, &value],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }
}
