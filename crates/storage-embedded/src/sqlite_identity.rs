//! Identities, roles, scope maps, token-signing keys and the audit log in SQLite.

use async_trait::async_trait;
use berth_storage::{
    AssignedRole, AuditRecord, Error, IdentityKind, IdentityRecord, IdentityStore, Result,
    RoleAssignmentRecord, ScopeMapRecord, SigningKeyRecord,
};
use bytes::Bytes;
use rusqlite::{OptionalExtension, params};

use crate::SqliteMetadataStore;
use crate::sqlite::{backend, kind_col};
use berth_storage::cache::IdentEntry;

pub(crate) const IDENTITY_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS identities (
    name         TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('user', 'service-principal', 'admin', 'token')),
    label        TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    secret_hash2 TEXT,
    disabled     INTEGER NOT NULL DEFAULT 0,
    expires      INTEGER,
    scope_map    TEXT,
    created      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS role_assignments (
    id         INTEGER PRIMARY KEY,
    role       TEXT NOT NULL,
    assignee   TEXT NOT NULL,
    -- '' is the whole registry (NULL would defeat the UNIQUE constraint).
    repository TEXT NOT NULL DEFAULT '',
    UNIQUE (role, assignee, repository)
);
CREATE TABLE IF NOT EXISTS scope_maps (
    name        TEXT PRIMARY KEY,
    rules       TEXT NOT NULL,
    description TEXT NOT NULL,
    created     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS signing_keys (
    kid            TEXT PRIMARY KEY,
    sealed_private BLOB NOT NULL,
    certificate    BLOB NOT NULL,
    created        INTEGER NOT NULL,
    retired        INTEGER
);
CREATE TABLE IF NOT EXISTS audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    client TEXT NOT NULL,
    detail TEXT NOT NULL
);
"#;

const ID_COLS: &str =
    "name, kind, label, secret_hash, secret_hash2, disabled, expires, scope_map, created";

fn identity_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IdentityRecord> {
    Ok(IdentityRecord {
        name: r.get(0)?,
        kind: kind_col(r, 1)?,
        label: r.get(2)?,
        secret_hash: r.get(3)?,
        secret_hash2: r.get(4)?,
        disabled: r.get::<_, i64>(5)? != 0,
        expires: r.get(6)?,
        scope_map: r.get(7)?,
        created: r.get(8)?,
    })
}

fn role_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RoleAssignmentRecord> {
    let repo: String = r.get(3)?;
    Ok(RoleAssignmentRecord {
        id: r.get(0)?,
        role: kind_col(r, 1)?,
        assignee: r.get(2)?,
        repository: (!repo.is_empty()).then_some(repo),
    })
}

fn scope_map_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ScopeMapRecord> {
    Ok(ScopeMapRecord {
        name: r.get(0)?,
        rules: r.get(1)?,
        description: r.get(2)?,
        created: r.get(3)?,
    })
}

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SigningKeyRecord> {
    Ok(SigningKeyRecord {
        kid: r.get(0)?,
        sealed_private: Bytes::from(r.get::<_, Vec<u8>>(1)?),
        certificate: Bytes::from(r.get::<_, Vec<u8>>(2)?),
        created: r.get(3)?,
        retired: r.get(4)?,
    })
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        id: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        target: r.get(4)?,
        client: r.get(5)?,
        detail: r.get(6)?,
    })
}

/// A taken name, not any constraint: a CHECK failure (an unknown kind) is no conflict.
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

impl SqliteMetadataStore {
    /// A write to identities, role assignments or scope maps; the cached lookups go with it.
    async fn write_identities<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        let out = self.write(f).await;
        self.cache.invalidate_identities();
        out
    }

    /// A lookup served from the cache under `key`, read from SQLite (and cached) on a miss.
    async fn ident_lookup<T, F>(
        &self,
        key: String,
        wrap: fn(T) -> IdentEntry,
        unwrap: fn(IdentEntry) -> Option<T>,
        read: F,
    ) -> Result<T>
    where
        T: Clone + Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        if let Some(hit) = self.cache.ident(&key).and_then(unwrap) {
            return Ok(hit);
        }
        let generation = self.cache.ident_generation();
        let found = self.read(read).await?;
        self.cache.ident_fill(generation, key, wrap(found.clone()));
        Ok(found)
    }
}

#[async_trait]
impl IdentityStore for SqliteMetadataStore {
    async fn identity_insert(&self, rec: &IdentityRecord) -> Result<()> {
        let r = rec.clone();
        self.write_identities(move |c| {
            c.execute(
                &format!(
                    "INSERT INTO identities({ID_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![
                    r.name,
                    r.kind.as_str(),
                    r.label,
                    r.secret_hash,
                    r.secret_hash2,
                    r.disabled as i64,
                    r.expires,
                    r.scope_map,
                    r.created
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::Conflict(format!("identity {:?}", r.name))
                } else {
                    backend(e)
                }
            })?;
            Ok(())
        })
        .await
    }

    async fn identity_update(&self, rec: &IdentityRecord) -> Result<bool> {
        let r = rec.clone();
        self.write_identities(move |c| {
            let n = c
                .execute(
                    "UPDATE identities SET kind = ?2, label = ?3, secret_hash = ?4, secret_hash2 = ?5,
                     disabled = ?6, expires = ?7, scope_map = ?8 WHERE name = ?1",
                    params![
                        r.name,
                        r.kind.as_str(),
                        r.label,
                        r.secret_hash,
                        r.secret_hash2,
                        r.disabled as i64,
                        r.expires,
                        r.scope_map
                    ],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn identity_get(&self, name: &str) -> Result<Option<IdentityRecord>> {
        let key = format!("i:{name}");
        let name = name.to_owned();
        self.ident_lookup(key, IdentEntry::Identity, IdentEntry::identity, move |c| {
            c.prepare_cached(&format!("SELECT {ID_COLS} FROM identities WHERE name = ?1"))?
                .query_row([&name], identity_row)
                .optional()
        })
        .await
    }

    async fn identity_delete(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write_identities(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let n = tx
                .execute("DELETE FROM identities WHERE name = ?1", [&name])
                .map_err(backend)?;
            tx.execute("DELETE FROM role_assignments WHERE assignee = ?1", [&name])
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn identity_list(&self, kind: Option<IdentityKind>) -> Result<Vec<IdentityRecord>> {
        let kind = kind.map(IdentityKind::as_str);
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {ID_COLS} FROM identities WHERE (?1 IS NULL OR kind = ?1) ORDER BY name"
            ))?
            .query_map([&kind], identity_row)?
            .collect()
        })
        .await
    }

    async fn role_assign(
        &self,
        role: AssignedRole,
        assignee: &str,
        repository: Option<&str>,
    ) -> Result<i64> {
        let (role, assignee, repo) = (
            role.as_str(),
            assignee.to_owned(),
            repository.unwrap_or("").to_owned(),
        );
        self.write_identities(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO role_assignments(role, assignee, repository) VALUES (?1, ?2, ?3)",
                params![role, assignee, repo],
            )
            .map_err(backend)?;
            c.query_row(
                "SELECT id FROM role_assignments WHERE role = ?1 AND assignee = ?2 AND repository = ?3",
                params![role, assignee, repo],
                |r| r.get(0),
            )
            .map_err(backend)
        })
        .await
    }

    async fn role_unassign(
        &self,
        role: AssignedRole,
        assignee: &str,
        repository: Option<&str>,
    ) -> Result<bool> {
        let (role, assignee, repo) = (
            role.as_str(),
            assignee.to_owned(),
            repository.unwrap_or("").to_owned(),
        );
        self.write_identities(move |c| {
            let n = c
                .execute(
                    "DELETE FROM role_assignments WHERE role = ?1 AND assignee = ?2 AND repository = ?3",
                    params![role, assignee, repo],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn role_list(&self, assignee: Option<&str>) -> Result<Vec<RoleAssignmentRecord>> {
        let query = |assignee: Option<String>| {
            move |c: &rusqlite::Connection| {
                c.prepare_cached(
                    "SELECT id, role, assignee, repository FROM role_assignments
                     WHERE (?1 IS NULL OR assignee = ?1) ORDER BY assignee, role, repository",
                )?
                .query_map([&assignee], role_row)?
                .collect()
            }
        };
        match assignee {
            // One assignee's roles are looked up on every request; full listings are admin calls.
            Some(a) => {
                self.ident_lookup(
                    format!("r:{a}"),
                    IdentEntry::Roles,
                    IdentEntry::roles,
                    query(Some(a.to_owned())),
                )
                .await
            }
            None => self.read(query(None)).await,
        }
    }

    async fn scope_map_put(&self, rec: &ScopeMapRecord) -> Result<()> {
        let r = rec.clone();
        self.write_identities(move |c| {
            c.execute(
                "INSERT INTO scope_maps(name, rules, description, created) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET rules = excluded.rules, description = excluded.description",
                params![r.name, r.rules, r.description, r.created],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn scope_map_get(&self, name: &str) -> Result<Option<ScopeMapRecord>> {
        let key = format!("m:{name}");
        let name = name.to_owned();
        self.ident_lookup(key, IdentEntry::ScopeMap, IdentEntry::scope_map, move |c| {
            c.prepare_cached(
                "SELECT name, rules, description, created FROM scope_maps WHERE name = ?1",
            )?
            .query_row([&name], scope_map_row)
            .optional()
        })
        .await
    }

    async fn scope_map_delete(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write_identities(move |c| {
            let n = c
                .execute("DELETE FROM scope_maps WHERE name = ?1", [&name])
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn scope_map_list(&self) -> Result<Vec<ScopeMapRecord>> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT name, rules, description, created FROM scope_maps ORDER BY name",
            )?
            .query_map([], scope_map_row)?
            .collect()
        })
        .await
    }

    async fn signing_key_insert(&self, rec: &SigningKeyRecord) -> Result<()> {
        let r = rec.clone();
        self.write(move |c| {
            c.execute(
                "INSERT INTO signing_keys(kid, sealed_private, certificate, created, retired) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![r.kid, &r.sealed_private[..], &r.certificate[..], r.created, r.retired],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT kid, sealed_private, certificate, created, retired FROM signing_keys ORDER BY created DESC, kid",
            )?
            .query_map([], key_row)?
            .collect()
        })
        .await
    }

    async fn signing_key_retire(&self, kid: &str, at: i64) -> Result<()> {
        let kid = kid.to_owned();
        self.write(move |c| {
            c.execute(
                "UPDATE signing_keys SET retired = ?2 WHERE kid = ?1 AND retired IS NULL",
                params![kid, at],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn signing_keys_purge(&self, before: i64) -> Result<u64> {
        self.write(move |c| {
            let n = c
                .execute(
                    "DELETE FROM signing_keys WHERE retired IS NOT NULL AND retired < ?1",
                    [before],
                )
                .map_err(backend)?;
            Ok(n as u64)
        })
        .await
    }

    async fn audit_append(&self, rec: &AuditRecord) -> Result<i64> {
        let r = rec.clone();
        self.write(move |c| {
            c.execute(
                "INSERT INTO audit_log(at, actor, action, target, client, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![r.at, r.actor, r.action, r.target, r.client, r.detail],
            )
            .map_err(backend)?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    async fn audit_set_detail(&self, id: i64, detail: &str) -> Result<bool> {
        let detail = detail.to_owned();
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE audit_log SET detail = ?2 WHERE id = ?1",
                    params![id, detail],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn audit_list(&self, after: i64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, at, actor, action, target, client, detail FROM audit_log WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?
            .query_map(params![after, limit as i64], audit_row)?
            .collect()
        })
        .await
    }
}
