//! Identities, role assignments, scope maps, token-signing keys and the audit log.

use async_trait::async_trait;
use berth_storage::{
    AssignedRole, AuditRecord, Error, IdentityKind, IdentityRecord, IdentityStore, Result,
    RoleAssignmentRecord, ScopeMapRecord, SigningKeyRecord,
};
use bytes::Bytes;

use crate::{PgStore, backend, col, is_unique_violation, kind_col, locks, to_i64};

const ID_COLS: &str =
    "name, kind, label, secret_hash, secret_hash2, disabled, expires, scope_map, created";

fn identity_row(r: &tokio_postgres::Row) -> Result<IdentityRecord> {
    Ok(IdentityRecord {
        name: col(r, 0)?,
        kind: kind_col(r, 1)?,
        label: col(r, 2)?,
        secret_hash: col(r, 3)?,
        secret_hash2: col(r, 4)?,
        disabled: col(r, 5)?,
        expires: col(r, 6)?,
        scope_map: col(r, 7)?,
        created: col(r, 8)?,
    })
}

fn role_row(r: &tokio_postgres::Row) -> Result<RoleAssignmentRecord> {
    let repo: String = col(r, 3)?;
    Ok(RoleAssignmentRecord {
        id: col(r, 0)?,
        role: kind_col(r, 1)?,
        assignee: col(r, 2)?,
        repository: (!repo.is_empty()).then_some(repo),
    })
}

fn scope_map_row(r: &tokio_postgres::Row) -> Result<ScopeMapRecord> {
    Ok(ScopeMapRecord {
        name: col(r, 0)?,
        rules: col(r, 1)?,
        description: col(r, 2)?,
        created: col(r, 3)?,
    })
}

fn key_row(r: &tokio_postgres::Row) -> Result<SigningKeyRecord> {
    Ok(SigningKeyRecord {
        kid: col(r, 0)?,
        sealed_private: Bytes::from(col::<Vec<u8>>(r, 1)?),
        certificate: Bytes::from(col::<Vec<u8>>(r, 2)?),
        created: col(r, 3)?,
        retired: col(r, 4)?,
    })
}

fn audit_row(r: &tokio_postgres::Row) -> Result<AuditRecord> {
    Ok(AuditRecord {
        id: col(r, 0)?,
        at: col(r, 1)?,
        actor: col(r, 2)?,
        action: col(r, 3)?,
        target: col(r, 4)?,
        client: col(r, 5)?,
        detail: col(r, 6)?,
    })
}

#[async_trait]
impl IdentityStore for PgStore {
    async fn identity_insert(&self, r: &IdentityRecord) -> Result<()> {
        let c = self.conn().await?;
        c.execute(
            &format!(
                "INSERT INTO identities({ID_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            &[
                &r.name,
                &r.kind.as_str(),
                &r.label,
                &r.secret_hash,
                &r.secret_hash2,
                &r.disabled,
                &r.expires,
                &r.scope_map,
                &r.created,
            ],
        )
        .await
        .map_err(|e| {
            // A taken name only: a CHECK failure (an unknown kind) is no conflict.
            if is_unique_violation(&e) {
                Error::Conflict(format!("identity {:?}", r.name))
            } else {
                backend(e)
            }
        })?;
        Ok(())
    }

    async fn identity_update(&self, r: &IdentityRecord) -> Result<bool> {
        let c = self.conn().await?;
        let n = c
            .execute(
                "UPDATE identities SET kind = $2, label = $3, secret_hash = $4, secret_hash2 = $5,
                 disabled = $6, expires = $7, scope_map = $8 WHERE name = $1",
                &[
                    &r.name,
                    &r.kind.as_str(),
                    &r.label,
                    &r.secret_hash,
                    &r.secret_hash2,
                    &r.disabled,
                    &r.expires,
                    &r.scope_map,
                ],
            )
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn identity_get(&self, name: &str) -> Result<Option<IdentityRecord>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!("SELECT {ID_COLS} FROM identities WHERE name = $1"))
            .await
            .map_err(backend)?;
        let row = c.query_opt(&st, &[&name]).await.map_err(backend)?;
        row.as_ref().map(identity_row).transpose()
    }

    async fn identity_delete(&self, name: &str) -> Result<bool> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(backend)?;
        let n = tx
            .execute("DELETE FROM identities WHERE name = $1", &[&name])
            .await
            .map_err(backend)?;
        tx.execute("DELETE FROM role_assignments WHERE assignee = $1", &[&name])
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(n > 0)
    }

    async fn identity_list(&self, kind: Option<IdentityKind>) -> Result<Vec<IdentityRecord>> {
        let kind = kind.map(IdentityKind::as_str);
        let c = self.conn().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {ID_COLS} FROM identities WHERE ($1::text IS NULL OR kind = $1)
                     ORDER BY name"
                ),
                &[&kind],
            )
            .await
            .map_err(backend)?;
        rows.iter().map(identity_row).collect()
    }

    async fn role_assign(
        &self,
        role: AssignedRole,
        assignee: &str,
        repository: Option<&str>,
    ) -> Result<i64> {
        let role = role.as_str();
        let c = self.conn().await?;
        let repo = repository.unwrap_or("");
        // Insert if absent; a concurrent identical assignment from another node makes this
        // insert yield nothing once it commits, and the select (a new snapshot) finds its row.
        let inserted = c
            .query_opt(
                "INSERT INTO role_assignments(role, assignee, repository) VALUES ($1, $2, $3)
                 ON CONFLICT (role, assignee, repository) DO NOTHING RETURNING id",
                &[&role, &assignee, &repo],
            )
            .await
            .map_err(backend)?;
        let row = match inserted {
            Some(row) => row,
            None => c
                .query_one(
                    "SELECT id FROM role_assignments
                     WHERE role = $1 AND assignee = $2 AND repository = $3",
                    &[&role, &assignee, &repo],
                )
                .await
                .map_err(backend)?,
        };
        col(&row, 0)
    }

    async fn role_unassign(
        &self,
        role: AssignedRole,
        assignee: &str,
        repository: Option<&str>,
    ) -> Result<bool> {
        let role = role.as_str();
        let c = self.conn().await?;
        let n = c
            .execute(
                "DELETE FROM role_assignments WHERE role = $1 AND assignee = $2 AND repository = $3",
                &[&role, &assignee, &repository.unwrap_or("")],
            )
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn role_list(&self, assignee: Option<&str>) -> Result<Vec<RoleAssignmentRecord>> {
        let c = self.conn().await?;
        // One assignee's roles are looked up on every request: a prepared statement.
        let st = c
            .prepare_cached(
                "SELECT id, role, assignee, repository FROM role_assignments
                 WHERE ($1::text IS NULL OR assignee = $1) ORDER BY assignee, role, repository",
            )
            .await
            .map_err(backend)?;
        let rows = c.query(&st, &[&assignee]).await.map_err(backend)?;
        rows.iter().map(role_row).collect()
    }

    async fn scope_map_put(&self, r: &ScopeMapRecord) -> Result<()> {
        let c = self.conn().await?;
        c.execute(
            "INSERT INTO scope_maps(name, rules, description, created) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET rules = excluded.rules, description = excluded.description",
            &[&r.name, &r.rules, &r.description, &r.created],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn scope_map_get(&self, name: &str) -> Result<Option<ScopeMapRecord>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT name, rules, description, created FROM scope_maps WHERE name = $1",
            )
            .await
            .map_err(backend)?;
        let row = c.query_opt(&st, &[&name]).await.map_err(backend)?;
        row.as_ref().map(scope_map_row).transpose()
    }

    async fn scope_map_delete(&self, name: &str) -> Result<bool> {
        let c = self.conn().await?;
        let n = c
            .execute("DELETE FROM scope_maps WHERE name = $1", &[&name])
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn scope_map_list(&self) -> Result<Vec<ScopeMapRecord>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                "SELECT name, rules, description, created FROM scope_maps ORDER BY name",
                &[],
            )
            .await
            .map_err(backend)?;
        rows.iter().map(scope_map_row).collect()
    }

    async fn signing_key_insert(&self, r: &SigningKeyRecord) -> Result<()> {
        let c = self.conn().await?;
        c.execute(
            "INSERT INTO signing_keys(kid, sealed_private, certificate, created, retired)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &r.kid,
                &&r.sealed_private[..],
                &&r.certificate[..],
                &r.created,
                &r.retired,
            ],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT kid, sealed_private, certificate, created, retired FROM signing_keys
                 ORDER BY created DESC, kid",
            )
            .await
            .map_err(backend)?;
        let rows = c.query(&st, &[]).await.map_err(backend)?;
        rows.iter().map(key_row).collect()
    }

    async fn signing_key_retire(&self, kid: &str, at: i64) -> Result<()> {
        let c = self.conn().await?;
        c.execute(
            "UPDATE signing_keys SET retired = $2 WHERE kid = $1 AND retired IS NULL",
            &[&kid, &at],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn signing_keys_purge(&self, before: i64) -> Result<u64> {
        let c = self.conn().await?;
        c.execute(
            "DELETE FROM signing_keys WHERE retired IS NOT NULL AND retired < $1",
            &[&before],
        )
        .await
        .map_err(backend)
    }

    async fn audit_append(&self, r: &AuditRecord) -> Result<i64> {
        let c = self.conn().await?;
        // The lock (held until this statement commits) is taken before the id is drawn, so ids
        // become visible in increasing order and `audit_list(after)` never skips a late commit.
        let st = c
            .prepare_cached(
                "WITH l AS (SELECT pg_advisory_xact_lock($7, $8))
                 INSERT INTO audit_log(at, actor, action, target, client, detail)
                 SELECT $1, $2, $3, $4, $5, $6 FROM l RETURNING id",
            )
            .await
            .map_err(backend)?;
        let row = c
            .query_one(
                &st,
                &[
                    &r.at,
                    &r.actor,
                    &r.action,
                    &r.target,
                    &r.client,
                    &r.detail,
                    &locks::AUDIT.0,
                    &locks::AUDIT.1,
                ],
            )
            .await
            .map_err(backend)?;
        col(&row, 0)
    }

    async fn audit_set_detail(&self, id: i64, detail: &str) -> Result<bool> {
        let c = self.conn().await?;
        let n = c
            .execute(
                "UPDATE audit_log SET detail = $2 WHERE id = $1",
                &[&id, &detail],
            )
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn audit_list(&self, after: i64, limit: usize) -> Result<Vec<AuditRecord>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT id, at, actor, action, target, client, detail FROM audit_log
                 WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .await
            .map_err(backend)?;
        let rows = c
            .query(
                &st,
                &[&after, &to_i64(u64::try_from(limit).unwrap_or(u64::MAX))],
            )
            .await
            .map_err(backend)?;
        rows.iter().map(audit_row).collect()
    }
}
