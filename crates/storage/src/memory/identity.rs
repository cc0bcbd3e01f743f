//! Identities, role assignments, scope maps, token-signing keys and the audit log.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{MemoryStore, lock};
use crate::{
    AssignedRole, AuditRecord, Error, IdentityKind, IdentityRecord, IdentityStore, Result,
    RoleAssignmentRecord, ScopeMapRecord, SigningKeyRecord,
};

#[derive(Default)]
pub(super) struct IdentityState {
    identities: BTreeMap<String, IdentityRecord>,
    roles: Vec<RoleAssignmentRecord>,
    scope_maps: BTreeMap<String, ScopeMapRecord>,
    signing_keys: BTreeMap<String, SigningKeyRecord>,
    audit: Vec<AuditRecord>,
    /// Audit ids are never reused, even after the log is trimmed (SQLite AUTOINCREMENT).
    last_audit_id: i64,
}

impl IdentityState {
    /// Appends `rec` under the next id (also used by a TUF update auditing itself).
    pub(super) fn append_audit(&mut self, rec: &AuditRecord) -> i64 {
        self.last_audit_id = self.last_audit_id.saturating_add(1);
        let id = self.last_audit_id;
        self.audit.push(AuditRecord { id, ..rec.clone() });
        id
    }
}

#[async_trait]
impl IdentityStore for MemoryStore {
    async fn identity_insert(&self, rec: &IdentityRecord) -> Result<()> {
        let mut st = lock(&self.ids);
        if st.identities.contains_key(&rec.name) {
            return Err(Error::Conflict(format!("identity {:?}", rec.name)));
        }
        st.identities.insert(rec.name.clone(), rec.clone());
        Ok(())
    }

    async fn identity_update(&self, rec: &IdentityRecord) -> Result<bool> {
        let mut st = lock(&self.ids);
        let Some(existing) = st.identities.get_mut(&rec.name) else {
            return Ok(false);
        };
        // The creation time is the identity's; an update never moves it.
        let created = existing.created;
        *existing = IdentityRecord {
            created,
            ..rec.clone()
        };
        Ok(true)
    }

    async fn identity_get(&self, name: &str) -> Result<Option<IdentityRecord>> {
        Ok(lock(&self.ids).identities.get(name).cloned())
    }

    async fn identity_delete(&self, name: &str) -> Result<bool> {
        let mut st = lock(&self.ids);
        let removed = st.identities.remove(name).is_some();
        st.roles.retain(|r| r.assignee != name);
        Ok(removed)
    }

    async fn identity_list(&self, kind: Option<IdentityKind>) -> Result<Vec<IdentityRecord>> {
        Ok(lock(&self.ids)
            .identities
            .values()
            .filter(|i| kind.is_none_or(|k| i.kind == k))
            .cloned()
            .collect())
    }

    async fn role_assign(
        &self,
        role: AssignedRole,
        assignee: &str,
        repository: Option<&str>,
    ) -> Result<i64> {
        let mut st = lock(&self.ids);
        if let Some(r) = st.roles.iter().find(|r| {
            r.role == role && r.assignee == assignee && r.repository.as_deref() == repository
        }) {
            return Ok(r.id);
        }
        // SQLite's rowid rule: one past the largest id in use.
        let id = st
            .roles
            .iter()
            .map(|r| r.id)
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        st.roles.push(RoleAssignmentRecord {
            id,
            role,
            assignee: assignee.to_owned(),
            repository: repository.map(str::to_owned),
        });
        Ok(id)
    }

    async fn role_unassign(
        &self,
        role: AssignedRole,
        assignee: &str,
        repository: Option<&str>,
    ) -> Result<bool> {
        let mut st = lock(&self.ids);
        let before = st.roles.len();
        st.roles.retain(|r| {
            !(r.role == role && r.assignee == assignee && r.repository.as_deref() == repository)
        });
        Ok(st.roles.len() != before)
    }

    async fn role_list(&self, assignee: Option<&str>) -> Result<Vec<RoleAssignmentRecord>> {
        let mut out: Vec<RoleAssignmentRecord> = lock(&self.ids)
            .roles
            .iter()
            .filter(|r| assignee.is_none_or(|a| r.assignee == a))
            .cloned()
            .collect();
        // Registry-wide assignments (no repository) sort first, as '' does in the embedded store.
        out.sort_by(|a, b| {
            (
                &a.assignee,
                a.role.as_str(),
                a.repository.as_deref().unwrap_or(""),
            )
                .cmp(&(
                    &b.assignee,
                    b.role.as_str(),
                    b.repository.as_deref().unwrap_or(""),
                ))
        });
        Ok(out)
    }

    async fn scope_map_put(&self, rec: &ScopeMapRecord) -> Result<()> {
        let mut st = lock(&self.ids);
        match st.scope_maps.get_mut(&rec.name) {
            // Replacing the rules keeps the map's creation time.
            Some(existing) => {
                existing.rules = rec.rules.clone();
                existing.description = rec.description.clone();
            }
            None => {
                st.scope_maps.insert(rec.name.clone(), rec.clone());
            }
        }
        Ok(())
    }

    async fn scope_map_get(&self, name: &str) -> Result<Option<ScopeMapRecord>> {
        Ok(lock(&self.ids).scope_maps.get(name).cloned())
    }

    async fn scope_map_delete(&self, name: &str) -> Result<bool> {
        Ok(lock(&self.ids).scope_maps.remove(name).is_some())
    }

    async fn scope_map_list(&self) -> Result<Vec<ScopeMapRecord>> {
        Ok(lock(&self.ids).scope_maps.values().cloned().collect())
    }

    async fn signing_key_insert(&self, rec: &SigningKeyRecord) -> Result<()> {
        let mut st = lock(&self.ids);
        if st.signing_keys.contains_key(&rec.kid) {
            return Err(Error::Backend(format!(
                "signing key {:?} already exists",
                rec.kid
            )));
        }
        st.signing_keys.insert(rec.kid.clone(), rec.clone());
        Ok(())
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        let mut out: Vec<SigningKeyRecord> =
            lock(&self.ids).signing_keys.values().cloned().collect();
        // Newest first; equal times by kid (the map's order, kept by a stable sort).
        out.sort_by_key(|k| std::cmp::Reverse(k.created));
        Ok(out)
    }

    async fn signing_key_retire(&self, kid: &str, at: i64) -> Result<()> {
        if let Some(k) = lock(&self.ids).signing_keys.get_mut(kid)
            && k.retired.is_none()
        {
            k.retired = Some(at);
        }
        Ok(())
    }

    async fn signing_keys_purge(&self, before: i64) -> Result<u64> {
        let mut st = lock(&self.ids);
        let n = st.signing_keys.len();
        st.signing_keys
            .retain(|_, k| k.retired.is_none_or(|r| r >= before));
        Ok(u64::try_from(n.saturating_sub(st.signing_keys.len())).unwrap_or(0))
    }

    async fn audit_append(&self, rec: &AuditRecord) -> Result<i64> {
        Ok(lock(&self.ids).append_audit(rec))
    }

    async fn audit_set_detail(&self, id: i64, detail: &str) -> Result<bool> {
        let mut st = lock(&self.ids);
        match st.audit.iter_mut().find(|a| a.id == id) {
            Some(a) => {
                a.detail = detail.to_owned();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn audit_list(&self, after: i64, limit: usize) -> Result<Vec<AuditRecord>> {
        // Appended in id order, so the log is sorted already.
        Ok(lock(&self.ids)
            .audit
            .iter()
            .filter(|a| a.id > after)
            .take(limit)
            .cloned()
            .collect())
    }
}
