use async_trait::async_trait;
use bytes::Bytes;

use crate::{AuditRecord, ChangeCategory, Result, ServerKeyRole};

/// One stored TUF metadata file: the exact bytes a client uploaded or the server generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TufFile {
    /// A string, not an enum: delegation roles (`targets/releases`) are open-ended, and
    /// berth-tuf validates the name before it gets here.
    pub role: String,
    pub version: i64,
    /// Lowercase hex SHA-256 of `data`.
    pub sha256: String,
    pub data: Bytes,
    /// Unix seconds when this version was stored.
    pub created: i64,
}

/// A file to add to a GUN's trust data.
#[derive(Debug, Clone)]
pub struct NewTufFile {
    /// Open-ended, as [`TufFile::role`].
    pub role: String,
    pub version: i64,
    /// Lowercase hex SHA-256 of `data` (computed by the caller, which has the bytes at hand).
    pub sha256: String,
    pub data: Bytes,
}

/// A changefeed entry (one per timestamp written, one per deletion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub id: i64,
    /// Unix nanoseconds.
    pub created_at: i128,
    pub gun: String,
    /// Timestamp version (0 for deletions).
    pub version: i64,
    /// Timestamp sha256 hex ("" for deletions).
    pub sha256: String,
    pub category: ChangeCategory,
}

/// A server-held signing key (timestamp or snapshot) of one GUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKeyRecord {
    pub key_id: String,
    pub role: ServerKeyRole,
    /// Notary key type of the public key (`ecdsa`, `ed25519`).
    pub algorithm: String,
    /// The public key as its metadata JSON object (`{"keytype":..,"keyval":{..}}`).
    pub public: Bytes,
    /// The private key, sealed (encrypted and authenticated) by the trust service; the store
    /// never sees it in the clear.
    pub sealed_private: Bytes,
    /// Unix seconds.
    pub created: i64,
}

/// Notary v1 trust data: append-only TUF files per GUN, the changefeed, server-held keys (the
/// registry-wide settings are [`crate::SettingsStore`]'s).
#[async_trait]
pub trait TrustStore: Send + Sync + 'static {
    /// The highest version of every role stored for `gun`.
    async fn tuf_current_all(&self, gun: &str) -> Result<Vec<TufFile>>;
    /// The highest version of `role`.
    async fn tuf_current(&self, gun: &str, role: &str) -> Result<Option<TufFile>>;
    async fn tuf_by_checksum(&self, gun: &str, role: &str, sha256: &str)
    -> Result<Option<TufFile>>;
    async fn tuf_by_version(&self, gun: &str, role: &str, version: i64) -> Result<Option<TufFile>>;
    /// Adds `files` in one transaction. If any role already has a version >= the new one,
    /// nothing is written and [`crate::Error::TufVersion`] is returned. Every `timestamp` file
    /// written adds an `update` changefeed row. `audit` (its `id` ignored) is appended to the
    /// audit log in the same transaction, as [`crate::IdentityStore::audit_append`] would: a
    /// publish and its record commit together (one durable write) or not at all.
    async fn tuf_update(
        &self,
        gun: &str,
        files: Vec<NewTufFile>,
        audit: Option<&AuditRecord>,
    ) -> Result<()>;
    /// Removes every version of every role of `gun`, and its server keys, in one transaction;
    /// adds a `deletion` changefeed row if anything was removed. Returns whether it was.
    async fn tuf_delete(&self, gun: &str) -> Result<bool>;
    /// Removes all trust data and server keys of every GUN. Returns how many GUNs had data.
    async fn tuf_delete_all(&self) -> Result<u64>;
    /// GUNs that have trust data, sorted.
    async fn tuf_guns(&self) -> Result<Vec<String>>;
    /// Every stored version of every role of `gun`, ordered by role, then version. For copying
    /// a registry (`berth store migrate`).
    async fn tuf_history(&self, gun: &str) -> Result<Vec<TufFile>>;
    /// Changefeed page, per GUN or global, with Notary's paging rules: `records > 0` returns
    /// ids > `change_id` ascending; `records < 0` returns the |records| ids before `change_id`
    /// (the newest ones when `change_id <= 0`), still ascending.
    async fn changefeed(
        &self,
        gun: Option<&str>,
        change_id: i64,
        records: i64,
    ) -> Result<Vec<Change>>;

    async fn server_key_insert(&self, gun: &str, key: &ServerKeyRecord) -> Result<()>;
    /// Inserts `key` unless `gun` already holds a key for `key.role`; returns the newest key
    /// held for that role afterwards (this one, or the one that was there). Two processes asking
    /// for a GUN's first key at once get the same key.
    async fn server_key_insert_first(
        &self,
        gun: &str,
        key: &ServerKeyRecord,
    ) -> Result<ServerKeyRecord>;
    /// Keys held for (gun, role), oldest first.
    async fn server_keys(&self, gun: &str, role: ServerKeyRole) -> Result<Vec<ServerKeyRecord>>;
}
