//! Registry-wide settings.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{MemoryStore, lock};
use crate::{Result, SettingsStore};

/// Name → value; a BTreeMap so listings come out in name order.
pub(super) type SettingsState = BTreeMap<String, String>;

#[async_trait]
impl SettingsStore for MemoryStore {
    async fn setting_get(&self, name: &str) -> Result<Option<String>> {
        Ok(lock(&self.settings).get(name).cloned())
    }

    async fn settings_list(&self) -> Result<Vec<(String, String)>> {
        Ok(lock(&self.settings)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn setting_set(&self, name: &str, value: &str) -> Result<()> {
        lock(&self.settings).insert(name.to_owned(), value.to_owned());
        Ok(())
    }

    async fn setting_insert_if_absent(&self, name: &str, value: &str) -> Result<String> {
        Ok(lock(&self.settings)
            .entry(name.to_owned())
            .or_insert_with(|| value.to_owned())
            .clone())
    }
}
