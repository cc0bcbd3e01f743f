//! Versioned schema migrations. Each node runs them at start: all inside one transaction that
//! first takes a transaction-scoped advisory lock, so when several nodes start at once on an
//! empty database one of them creates the schema and the others wait, then find it current.
//! A database migrated by a newer Berth is refused rather than written with an old schema.

use berth_storage::Error;
use tokio_postgres::Client;

use crate::{backend, col, locks};

/// One step of the schema. Steps are append-only: a released step is never edited, a change is
/// a new step.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// Text keys compare and sort bytewise (`COLLATE "C"`), as in SQLite, whatever locale the
/// cluster was created with: listings page lexically by byte order.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "registry, trust and identity tables",
        sql: r#"
CREATE TABLE repos (
    id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE
);
CREATE TABLE repo_blobs (
    repo_id BIGINT NOT NULL REFERENCES repos(id),
    digest  TEXT COLLATE "C" NOT NULL,
    size    BIGINT NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
CREATE TABLE manifests (
    repo_id       BIGINT NOT NULL REFERENCES repos(id),
    digest        TEXT COLLATE "C" NOT NULL,
    media_type    TEXT NOT NULL,
    body          BYTEA NOT NULL,
    subject       TEXT COLLATE "C",
    artifact_type TEXT,
    annotations   TEXT,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX manifests_by_subject ON manifests(repo_id, subject) WHERE subject IS NOT NULL;
-- What each manifest references (blobs and child manifests): for garbage collection.
CREATE TABLE manifest_refs (
    repo_id BIGINT NOT NULL,
    parent  TEXT COLLATE "C" NOT NULL,
    child   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (repo_id, parent, child)
);
CREATE TABLE tags (
    repo_id BIGINT NOT NULL REFERENCES repos(id),
    name    TEXT COLLATE "C" NOT NULL,
    digest  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (repo_id, name)
);
CREATE INDEX tags_by_digest ON tags(repo_id, digest);
CREATE TABLE uploads (
    id         TEXT COLLATE "C" PRIMARY KEY,
    repo       TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    created    BIGINT NOT NULL,
    owner      TEXT COLLATE "C" NOT NULL DEFAULT '',
    -- Acknowledged bytes (NULL: not recorded) and the saved running hash.
    received   BIGINT,
    hash_state BYTEA
);
CREATE INDEX uploads_by_owner ON uploads(owner);
CREATE INDEX uploads_by_created ON uploads(created);

-- Trust data. Append-only: every version stays, clients fetch N.root.json chains and files by hash.
CREATE TABLE tuf_files (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gun     TEXT COLLATE "C" NOT NULL,
    role    TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    sha256  TEXT COLLATE "C" NOT NULL,
    data    BYTEA NOT NULL,
    created BIGINT NOT NULL,
    UNIQUE (gun, role, version)
);
CREATE INDEX tuf_files_by_sha256 ON tuf_files(gun, role, sha256);
CREATE TABLE changefeed (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at BIGINT NOT NULL,
    gun        TEXT COLLATE "C" NOT NULL,
    version    BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    category   TEXT NOT NULL CHECK (category IN ('update', 'deletion'))
);
CREATE INDEX changefeed_by_gun ON changefeed(gun, id);
CREATE TABLE server_keys (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gun            TEXT COLLATE "C" NOT NULL,
    role           TEXT COLLATE "C" NOT NULL,
    key_id         TEXT COLLATE "C" NOT NULL,
    algorithm      TEXT NOT NULL,
    public         BYTEA NOT NULL,
    sealed_private BYTEA NOT NULL,
    created        BIGINT NOT NULL,
    UNIQUE (gun, key_id)
);
CREATE INDEX server_keys_by_role ON server_keys(gun, role, seq);
CREATE TABLE settings (
    name  TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);

-- Identities, roles, scope maps, token-signing keys, the audit log.
CREATE TABLE identities (
    name         TEXT COLLATE "C" PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('user', 'service-principal', 'admin', 'token')),
    label        TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    secret_hash2 TEXT,
    disabled     BOOLEAN NOT NULL DEFAULT FALSE,
    expires      BIGINT,
    scope_map    TEXT,
    created      BIGINT NOT NULL
);
CREATE TABLE role_assignments (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    role       TEXT COLLATE "C" NOT NULL,
    assignee   TEXT COLLATE "C" NOT NULL,
    -- '' is the whole registry (NULL would defeat the UNIQUE constraint).
    repository TEXT COLLATE "C" NOT NULL DEFAULT '',
    UNIQUE (role, assignee, repository)
);
CREATE INDEX role_assignments_by_assignee ON role_assignments(assignee);
CREATE TABLE scope_maps (
    name        TEXT COLLATE "C" PRIMARY KEY,
    rules       TEXT NOT NULL,
    description TEXT NOT NULL,
    created     BIGINT NOT NULL
);
CREATE TABLE signing_keys (
    kid            TEXT COLLATE "C" PRIMARY KEY,
    sealed_private BYTEA NOT NULL,
    certificate    BYTEA NOT NULL,
    created        BIGINT NOT NULL,
    retired        BIGINT
);
CREATE TABLE audit_log (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     BIGINT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    client TEXT NOT NULL,
    detail TEXT NOT NULL
);
"#,
    },
    Migration {
        version: 2,
        name: "tag push times",
        // Unix seconds of a tag's last push; NULL for tags from before it was recorded.
        sql: "ALTER TABLE tags ADD COLUMN pushed BIGINT;",
    },
    Migration {
        version: 3,
        name: "upload part lists",
        // The acknowledged parts of an upload, `name offset size` per line
        // (berth_storage::UploadPart::encode); NULL for sessions from before, which are not
        // continued.
        sql: "ALTER TABLE uploads ADD COLUMN parts TEXT;",
    },
    Migration {
        version: 4,
        name: "garbage collection records",
        // `blobs` records every blob whose bytes exist (seeded from the links, last touched at
        // the upgrade so the grace period covers pushes in flight across it); manifests record
        // their last push (NULL: before); references are found by child.
        sql: "CREATE TABLE blobs (
    digest  TEXT PRIMARY KEY,
    size    BIGINT NOT NULL,
    touched BIGINT NOT NULL
);
INSERT INTO blobs(digest, size, touched)
    SELECT digest, max(size), extract(epoch FROM now())::bigint FROM repo_blobs GROUP BY digest;
ALTER TABLE manifests ADD COLUMN pushed BIGINT;
CREATE INDEX manifest_refs_by_child ON manifest_refs(child);",
    },
    Migration {
        version: 5,
        name: "webhooks",
        // Webhooks and their outgoing event queue, shared by the nodes: a claim leases rows
        // (`lease_until`, Unix ms) under FOR UPDATE SKIP LOCKED.
        sql: r#"CREATE TABLE webhooks (
    name         TEXT COLLATE "C" PRIMARY KEY,
    uri          TEXT NOT NULL,
    actions      TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    secret       BYTEA NOT NULL,
    created      BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    delivered    BIGINT NOT NULL DEFAULT 0,
    failed       BIGINT NOT NULL DEFAULT 0,
    last_attempt BIGINT,
    last_success BIGINT,
    last_error   TEXT
);
CREATE TABLE webhook_queue (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook     TEXT COLLATE "C" NOT NULL,
    event_id    TEXT NOT NULL,
    payload     BYTEA NOT NULL,
    created     BIGINT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX webhook_queue_by_due ON webhook_queue(next_at);
CREATE INDEX webhook_queue_by_webhook ON webhook_queue(webhook);"#,
    },
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i32 = {
    let mut max = 0;
    let mut i = 0;
    while i < MIGRATIONS.len() {
        if MIGRATIONS[i].version > max {
            max = MIGRATIONS[i].version;
        }
        i += 1;
    }
    max
};

const HISTORY_TABLE: &str = "CREATE TABLE IF NOT EXISTS berth_schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

pub(crate) async fn current_version(c: &Client) -> Result<i32, Error> {
    let row = c
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM berth_schema_migrations",
            &[],
        )
        .await
        .map_err(backend)?;
    col(&row, 0)
}

/// Applies the missing migrations in order, in one transaction under the migration lock.
pub(crate) async fn migrate(c: &mut deadpool_postgres::Object) -> Result<(), Error> {
    let tx = c.transaction().await.map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&locks::MIGRATE])
        .await
        .map_err(backend)?;
    tx.batch_execute(HISTORY_TABLE).await.map_err(backend)?;
    let row = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM berth_schema_migrations",
            &[],
        )
        .await
        .map_err(backend)?;
    let current: i32 = col(&row, 0)?;
    if current > SCHEMA_VERSION {
        return Err(Error::Backend(format!(
            "the PostgreSQL database is at schema version {current}, newer than this berth \
             understands ({SCHEMA_VERSION}): upgrade berth on this node (a newer node migrated it)"
        )));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(m.sql)
            .await
            .map_err(|e| match backend(e) {
                Error::Backend(msg) => Error::Backend(format!(
                    "schema migration {} ({}): {msg}",
                    m.version, m.name
                )),
                other => other,
            })?;
        tx.execute(
            "INSERT INTO berth_schema_migrations(version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(backend)?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied schema migration"
        );
    }
    tx.commit().await.map_err(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(usize::try_from(m.version).unwrap(), i + 1, "{}", m.name);
        }
        assert_eq!(usize::try_from(SCHEMA_VERSION).unwrap(), MIGRATIONS.len());
    }
}
