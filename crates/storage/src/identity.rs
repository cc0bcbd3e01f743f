use async_trait::async_trait;
use bytes::Bytes;

use crate::{AssignedRole, IdentityKind, Result};

/// Something that can authenticate: a user, a service principal, the shared admin account or a
/// repository-scoped token. Secrets are stored only as password hashes (PHC strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    /// Login name (for service principals the generated application id).
    pub name: String,
    pub kind: IdentityKind,
    /// Human label (service principals: the name given at creation).
    pub label: String,
    pub secret_hash: String,
    /// Tokens have two passwords so they can be rotated without downtime.
    pub secret_hash2: Option<String>,
    pub disabled: bool,
    /// Unix seconds after which the identity cannot authenticate.
    pub expires: Option<i64>,
    /// Tokens: the scope map they are bound to.
    pub scope_map: Option<String>,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignmentRecord {
    pub id: i64,
    pub role: AssignedRole,
    pub assignee: String,
    /// `None`: the whole registry.
    pub repository: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeMapRecord {
    pub name: String,
    /// JSON list of `{"repository": pattern, "actions": [..]}`.
    pub rules: String,
    pub description: String,
    pub created: i64,
}

/// A token-signing key (ES256). Kept after retirement until its tokens have expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub sealed_private: Bytes,
    /// DER certificate for the `x5c` header and verifiers that want one.
    pub certificate: Bytes,
    pub created: i64,
    pub retired: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// Who acted (identity name, `anonymous`, or the name tried on a failed login).
    pub actor: String,
    /// What happened, e.g. `login.failed`, `token.issued`, `role.assigned`, `trust.updated`.
    pub action: String,
    /// What it was done to (repository, identity, setting).
    pub target: String,
    /// Client address.
    pub client: String,
    /// Free text without secrets.
    pub detail: String,
}

/// Identities, role assignments, scope maps, token-signing keys and the audit log.
#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    /// Inserts a new identity; [`crate::Error::Conflict`] if the name is taken.
    async fn identity_insert(&self, rec: &IdentityRecord) -> Result<()>;
    /// Replaces an existing identity; `Ok(false)` if it does not exist.
    async fn identity_update(&self, rec: &IdentityRecord) -> Result<bool>;
    async fn identity_get(&self, name: &str) -> Result<Option<IdentityRecord>>;
    /// Removes an identity and its role assignments.
    async fn identity_delete(&self, name: &str) -> Result<bool>;
    async fn identity_list(&self, kind: Option<IdentityKind>) -> Result<Vec<IdentityRecord>>;

    /// Adds an assignment (idempotent: an identical one returns its id).
    async fn role_assign(
        &self,
        role: AssignedRole,
        assignee: &str,
        repository: Option<&str>,
    ) -> Result<i64>;
    async fn role_unassign(
        &self,
        role: AssignedRole,
        assignee: &str,
        repository: Option<&str>,
    ) -> Result<bool>;
    async fn role_list(&self, assignee: Option<&str>) -> Result<Vec<RoleAssignmentRecord>>;

    async fn scope_map_put(&self, rec: &ScopeMapRecord) -> Result<()>;
    async fn scope_map_get(&self, name: &str) -> Result<Option<ScopeMapRecord>>;
    async fn scope_map_delete(&self, name: &str) -> Result<bool>;
    async fn scope_map_list(&self) -> Result<Vec<ScopeMapRecord>>;

    async fn signing_key_insert(&self, rec: &SigningKeyRecord) -> Result<()>;
    /// All signing keys, newest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>>;
    async fn signing_key_retire(&self, kid: &str, at: i64) -> Result<()>;
    /// Removes keys retired before `before`.
    async fn signing_keys_purge(&self, before: i64) -> Result<u64>;

    /// Appends to the audit log (`id` is assigned) and returns the id.
    async fn audit_append(&self, rec: &AuditRecord) -> Result<i64>;
    /// Rewrites the detail of an audit entry (a running count kept in one row); false when
    /// there is no entry `id`.
    async fn audit_set_detail(&self, id: i64, detail: &str) -> Result<bool>;
    /// Entries with id > `after`, oldest first, at most `limit`.
    async fn audit_list(&self, after: i64, limit: usize) -> Result<Vec<AuditRecord>>;
}
