//! Registry-wide settings in SQLite (the `settings` table of the trust schema), with their
//! exact in-memory copy.

use async_trait::async_trait;
use berth_storage::{Result, SettingsStore};
use rusqlite::params;

use crate::SqliteMetadataStore;
use crate::sqlite::backend;

#[async_trait]
impl SettingsStore for SqliteMetadataStore {
    async fn setting_get(&self, name: &str) -> Result<Option<String>> {
        // Loaded at open and kept by every write: always there.
        Ok(self.cache.setting(name).flatten())
    }

    async fn settings_list(&self) -> Result<Vec<(String, String)>> {
        self.read(move |c| {
            c.prepare_cached("SELECT name, value FROM settings ORDER BY name")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .await
    }

    async fn setting_insert_if_absent(&self, name: &str, value: &str) -> Result<String> {
        let (name, value) = (name.to_owned(), value.to_owned());
        let cache = self.cache.clone();
        self.write(move |c| {
            c.execute(
                "INSERT INTO settings(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
                params![name, value],
            )
            .map_err(backend)?;
            let stored: String = c
                .query_row("SELECT value FROM settings WHERE name = ?1", [&name], |r| {
                    r.get(0)
                })
                .map_err(backend)?;
            cache.set_setting(&name, &stored);
            Ok(stored)
        })
        .await
    }

    async fn setting_set(&self, name: &str, value: &str) -> Result<()> {
        let (name, value) = (name.to_owned(), value.to_owned());
        let cache = self.cache.clone();
        self.write(move |c| {
            c.execute(
                "INSERT INTO settings(name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )
            .map_err(backend)?;
            cache.set_setting(&name, &value);
            Ok(())
        })
        .await
    }
}
