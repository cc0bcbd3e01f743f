use async_trait::async_trait;

use crate::Result;

/// Registry-wide settings, name → value: the content-trust switch, anonymous pull, the key
/// vault's salt and check value. A trait of their own so the services that only read a switch
/// (access) need not hold the trust data.
#[async_trait]
pub trait SettingsStore: Send + Sync + 'static {
    async fn setting_get(&self, name: &str) -> Result<Option<String>>;
    /// Every setting as (name, value), ordered by name.
    async fn settings_list(&self) -> Result<Vec<(String, String)>>;
    async fn setting_set(&self, name: &str, value: &str) -> Result<()>;
    /// Stores `value` under `name` unless a value is there already; returns the stored value
    /// (this one or the earlier one). Two processes creating a setting at once (the vault salt on
    /// an empty database) end up agreeing on one value.
    async fn setting_insert_if_absent(&self, name: &str, value: &str) -> Result<String>;
}
