use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_oci::{Algorithm, Digest, RepoName, Tag, TagOrDigest};
use berth_storage::{
    Error, ManifestRecord, MetadataStore, NewManifest, Page, ReferrerRecord, RepoDeleted, Result,
    TagDetail, UploadPart, UploadRecord,
};
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// The figures of `MetadataStore::stats`, in one statement (one consistent read).
const STATS_SQL: &str = "SELECT (SELECT count(*) FROM repos), (SELECT count(*) FROM manifests),
     (SELECT count(*) FROM tags), (SELECT count(*) FROM blobs),
     (SELECT coalesce(sum(size), 0) FROM blobs), (SELECT count(*) FROM uploads)";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS repos (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS repo_blobs (
    repo_id INTEGER NOT NULL REFERENCES repos(id),
    digest  TEXT NOT NULL,
    size    INTEGER NOT NULL,
    PRIMARY KEY (repo_id, digest)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS manifests (
    repo_id       INTEGER NOT NULL REFERENCES repos(id),
    digest        TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    body          BLOB NOT NULL,
    subject       TEXT,
    artifact_type TEXT,
    annotations   TEXT,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX IF NOT EXISTS manifests_by_subject ON manifests(repo_id, subject) WHERE subject IS NOT NULL;
-- What each manifest references (blobs and child manifests): for garbage collection.
CREATE TABLE IF NOT EXISTS manifest_refs (
    repo_id INTEGER NOT NULL,
    parent  TEXT NOT NULL,
    child   TEXT NOT NULL,
    PRIMARY KEY (repo_id, parent, child)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tags (
    repo_id INTEGER NOT NULL REFERENCES repos(id),
    name    TEXT NOT NULL,
    digest  TEXT NOT NULL,
    PRIMARY KEY (repo_id, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_by_digest ON tags(repo_id, digest);
CREATE TABLE IF NOT EXISTS uploads (
    id        TEXT PRIMARY KEY,
    repo      TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    created   INTEGER NOT NULL,
    owner     TEXT NOT NULL DEFAULT '',
    received  INTEGER,
    hash_state BLOB
);
"#;

/// The schema's versions, applied in order; `PRAGMA user_version` records how far a database
/// is. Every schema change from now on is a new entry here (never an edit of an older one), so
/// a database of any earlier version is brought up to date, and a newer one is refused.
/// One schema step, run inside its transaction.
type Step = fn(&Connection) -> rusqlite::Result<()>;

const MIGRATIONS: &[(&str, Step)] = &[
    // 1: the tables as of the first versioned release (idempotent: databases from before
    // versioning already have them).
    ("baseline tables", |c| {
        c.execute_batch(SCHEMA)?;
        c.execute_batch(crate::sqlite_trust::TRUST_SCHEMA)?;
        c.execute_batch(crate::sqlite_identity::IDENTITY_SCHEMA)
    }),
    // 2: upload sessions record their owner, acknowledged length and hash state.
    ("upload owner, offset and hash state", add_upload_columns),
    // 3: when each tag was last pushed (Unix seconds); NULL for tags from before.
    ("tag push times", |c| {
        c.execute_batch("ALTER TABLE tags ADD COLUMN pushed INTEGER")
    }),
    // 4: the acknowledged parts of an upload, `name offset size` per line (UploadPart::encode);
    // NULL for sessions from before, which are not continued.
    ("upload part lists", |c| {
        c.execute_batch("ALTER TABLE uploads ADD COLUMN parts TEXT")
    }),
    // 5: garbage collection. `blobs` is the store's record of every blob whose bytes exist
    // (seeded from the links; their last touch is the upgrade, so the grace period protects
    // blobs of pushes in flight across it); manifests record their last push (NULL: before);
    // references are found by child.
    ("garbage collection records", |c| {
        c.execute_batch(
            "CREATE TABLE blobs (
                 digest  TEXT PRIMARY KEY,
                 size    INTEGER NOT NULL,
                 touched INTEGER NOT NULL
             ) WITHOUT ROWID;
             INSERT OR IGNORE INTO blobs(digest, size, touched)
                 SELECT digest, max(size), CAST(strftime('%s','now') AS INTEGER)
                 FROM repo_blobs GROUP BY digest;
             ALTER TABLE manifests ADD COLUMN pushed INTEGER;
             CREATE INDEX manifest_refs_by_child ON manifest_refs(child);",
        )
    }),
    // 6: webhooks and their outgoing event queue.
    ("webhooks", |c| {
        c.execute_batch(crate::sqlite_webhooks::WEBHOOK_SCHEMA)
    }),
];

/// Brings the database to the newest schema version, one transaction per step.
fn migrate(c: &mut Connection) -> Result<()> {
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let at: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend)?;
    if at > known {
        return Err(Error::Backend(format!(
            "the database is at schema version {at}, newer than this berth knows ({known}): run a newer berth"
        )));
    }
    for (version, (what, step)) in (1i64..).zip(MIGRATIONS) {
        if version <= at {
            continue;
        }
        // IMMEDIATE: the write lock is taken before the version is re-read, so two processes
        // opening the file at once cannot both apply a step.
        let tx = c
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        let now: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(backend)?;
        if now < version {
            step(&tx)
                .map_err(|e| Error::Backend(format!("schema migration {version} ({what}): {e}")))?;
            tx.pragma_update(None, "user_version", version)
                .map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
    }
    Ok(())
}

/// Data dirs created before sessions recorded their owner, acknowledged length and hash state
/// get those columns (old rows keep NULL offsets: their blob files are the truth).
fn add_upload_columns(c: &Connection) -> rusqlite::Result<()> {
    for (column, decl) in [
        ("owner", "TEXT NOT NULL DEFAULT ''"),
        ("received", "INTEGER"),
        ("hash_state", "BLOB"),
    ] {
        let present = c
            .prepare("SELECT 1 FROM pragma_table_info('uploads') WHERE name = ?1")?
            .exists([column])?;
        if !present {
            c.execute_batch(&format!("ALTER TABLE uploads ADD COLUMN {column} {decl}"))?;
        }
    }
    c.execute_batch("CREATE INDEX IF NOT EXISTS uploads_by_owner ON uploads(owner)")
}

/// Metadata in SQLite. One writer connection serialises writes (SQLite allows one writer anyway,
/// and queueing in-process avoids SQLITE_BUSY); readers use a small pool and run concurrently
/// thanks to WAL.
pub struct SqliteMetadataStore {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// At most [`MAX_READERS`] reads run (and reader connections exist) at once. Unbounded,
    /// a 128-connection load opened a connection per concurrent read and kept them all, each
    /// with its page cache: the server's resident memory stayed ~30 MiB higher afterwards.
    read_slots: Arc<tokio::sync::Semaphore>,
    path: Arc<std::path::PathBuf>,
    pub(crate) cache: Arc<berth_storage::cache::HotCache>,
    /// Held shared by pins and links, exclusively by a collection from its record check until
    /// the blob's bytes are gone: a blob re-uploaded meanwhile waits, so its fresh bytes are
    /// never the ones deleted. One process owns the data dir (`berth.lock`), so an in-process
    /// lock is the whole story.
    gc_gate: Arc<tokio::sync::RwLock<()>>,
}

/// The one mapping of SQLite failures. A full disk (SQLITE_FULL, which SQLite reports for
/// ENOSPC) is told apart so clients hear what happened; the transaction was rolled back.
/// Byte counts as SQLite integers (signed 64-bit; uploads never reach 2^63 bytes).
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Garbage collection's rule for a blob (see `MetadataStore::gc_blob_candidates`), on the
/// `blobs` row aliased `b`.
const BLOB_CANDIDATE: &str = "b.touched < ?1
    AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.child = b.digest)";

/// Garbage collection's rule for a manifest of repository `?1` (see
/// `MetadataStore::gc_manifest_candidates`), on the `manifests` row aliased `m`.
const MANIFEST_CANDIDATE: &str = "m.repo_id = ?1 AND COALESCE(m.pushed, 0) < ?2
    AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest)
    AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo_id = m.repo_id AND r.child = m.digest)
    AND (m.subject IS NULL OR NOT EXISTS
         (SELECT 1 FROM manifests s WHERE s.repo_id = m.repo_id AND s.digest = m.subject))";

pub(crate) fn backend(e: rusqlite::Error) -> Error {
    // A stored name outside its set (see `kind_col`) gets the error every backend gives it.
    if let rusqlite::Error::FromSqlConversionFailure(_, _, cause) = &e
        && let Some(unknown) = cause.downcast_ref::<berth_storage::UnknownKind>()
    {
        return unknown.clone().into();
    }
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => Error::NoSpace(format!("sqlite: {e}")),
        _ => Error::Backend(format!("sqlite: {e}")),
    }
}

/// Concurrent reads (and pooled reader connections); more would only queue for the CPU.
const MAX_READERS: usize = 8;

/// Creates the database file readable only by its owner (it holds password hashes, sealed keys
/// and the audit log). SQLite would create it 0644; its `-wal` and `-shm` files take the
/// database's mode, so they are private too.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(30))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a committed push survives power loss, not just a process crash.
    c.pragma_update(None, "synchronous", "FULL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    Ok(c)
}

/// A text column holding one of a closed set of names (identity kind, changefeed category,
/// server key role).
pub(crate) fn kind_col<T>(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr<Err = berth_storage::UnknownKind>,
{
    r.get::<_, String>(idx)?.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn parse_digest(s: String) -> rusqlite::Result<Digest> {
    s.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn repo_id(tx: &Connection, repo: &RepoName) -> rusqlite::Result<Option<i64>> {
    tx.query_row(
        "SELECT id FROM repos WHERE name = ?1",
        [repo.as_str()],
        |r| r.get(0),
    )
    .optional()
}

fn ensure_repo(tx: &Transaction<'_>, repo: &RepoName) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT OR IGNORE INTO repos(name) VALUES (?1)",
        [repo.as_str()],
    )?;
    tx.query_row(
        "SELECT id FROM repos WHERE name = ?1",
        [repo.as_str()],
        |r| r.get(0),
    )
}

impl SqliteMetadataStore {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        create_private(&path)
            .map_err(|e| Error::Backend(format!("creating {}: {e}", path.display())))?;
        let mut writer = open_conn(&path).map_err(backend)?;
        migrate(&mut writer)?;
        let settings = writer
            .prepare("SELECT name, value FROM settings")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()
            })
            .map_err(backend)?;
        Ok(SqliteMetadataStore {
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(Mutex::new(Vec::new())),
            read_slots: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
            path: Arc::new(path),
            gc_gate: Arc::default(),
            cache: Arc::new(berth_storage::cache::HotCache::new(
                Some(settings),
                berth_storage::cache::TUF_CACHE_BYTES,
            )),
        })
    }

    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| Error::Backend(format!("sqlite task: {e}")))?
    }

    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let slot = self
            .read_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Backend(format!("sqlite readers: {e}")))?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let pooled = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_conn(&path).map_err(backend)?,
            };
            let out = f(&conn).map_err(backend);
            readers.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            out
        })
        .await
        .map_err(|e| Error::Backend(format!("sqlite task: {e}")))?
    }
}

/// Runs one page query: fetches `limit + 1` rows to learn whether more exist.
fn page(
    conn: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
    limit: usize,
) -> rusqlite::Result<Page> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut items: Vec<String> = stmt
        .query_map(args, |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let more = items.len() > limit;
    items.truncate(limit);
    Ok(Page { items, more })
}

#[async_trait]
impl MetadataStore for SqliteMetadataStore {
    async fn repo_exists(&self, repo: &RepoName) -> Result<bool> {
        let repo = repo.clone();
        self.read(move |c| Ok(repo_id(c, &repo)?.is_some())).await
    }

    async fn blob_linked(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let (repo, digest) = (repo.clone(), digest.to_string());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT b.size FROM repo_blobs b JOIN repos r ON r.id = b.repo_id
                 WHERE r.name = ?1 AND b.digest = ?2",
            )?
            .query_row(params![repo.as_str(), digest], |r| r.get::<_, i64>(0))
            .optional()
            .map(|o| o.map(|s| s as u64))
        })
        .await
    }

    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        let (repo, digest) = (repo.clone(), digest.to_string());
        let _gate = self.gc_gate.read().await;
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let id = ensure_repo(&tx, &repo).map_err(backend)?;
            tx.execute(
                "INSERT OR IGNORE INTO repo_blobs(repo_id, digest, size) VALUES (?1, ?2, ?3)",
                params![id, digest, size as i64],
            )
            .map_err(backend)?;
            tx.execute(
                "INSERT OR IGNORE INTO blobs(digest, size, touched) VALUES (?1, ?2, 0)",
                params![digest, size as i64],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let (repo, digest) = (repo.clone(), digest.to_string());
        self.write(move |c| {
            let n = c
                .execute(
                    "DELETE FROM repo_blobs WHERE digest = ?2
                     AND repo_id = (SELECT id FROM repos WHERE name = ?1)",
                    params![repo.as_str(), digest],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn put_manifest(&self, m: NewManifest, tags: &[Tag]) -> Result<()> {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let id = ensure_repo(&tx, &m.repo).map_err(backend)?;
            let mut missing = Vec::new();
            {
                let mut blob_q = tx
                    .prepare_cached("SELECT 1 FROM repo_blobs WHERE repo_id = ?1 AND digest = ?2")
                    .map_err(backend)?;
                for d in &m.blobs {
                    if !blob_q.exists(params![id, d.to_string()]).map_err(backend)? {
                        missing.push(d.clone());
                    }
                }
                let mut man_q = tx
                    .prepare_cached("SELECT 1 FROM manifests WHERE repo_id = ?1 AND digest = ?2")
                    .map_err(backend)?;
                for d in &m.children {
                    if !man_q.exists(params![id, d.to_string()]).map_err(backend)? {
                        missing.push(d.clone());
                    }
                }
            }
            if !missing.is_empty() {
                // Dropping the transaction rolls back the repository row too.
                return Err(Error::MissingReferences(missing));
            }
            let digest = m.digest.to_string();
            tx.execute(
                "INSERT INTO manifests(repo_id, digest, media_type, body, subject, artifact_type, annotations, pushed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(repo_id, digest) DO UPDATE
                 SET media_type = excluded.media_type, pushed = excluded.pushed",
                params![
                    id,
                    digest,
                    m.media_type,
                    &m.body[..],
                    m.subject.as_ref().map(|s| s.to_string()),
                    m.artifact_type,
                    m.annotations,
                    m.pushed
                ],
            )
            .map_err(backend)?;
            {
                let mut refs = tx
                    .prepare_cached("INSERT OR IGNORE INTO manifest_refs(repo_id, parent, child) VALUES (?1, ?2, ?3)")
                    .map_err(backend)?;
                for child in m.blobs.iter().chain(m.children.iter()) {
                    refs.execute(params![id, digest, child.to_string()]).map_err(backend)?;
                }
                let mut tag_q = tx
                    .prepare_cached(
                        "INSERT INTO tags(repo_id, name, digest, pushed) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(repo_id, name) DO UPDATE SET digest = excluded.digest,
                         pushed = excluded.pushed",
                    )
                    .map_err(backend)?;
                let now = m.pushed;
                for t in &tags {
                    tag_q.execute(params![id, t, digest, now]).map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &TagOrDigest,
    ) -> Result<Option<ManifestRecord>> {
        let repo = repo.clone();
        let reference = reference.clone();
        self.read(move |c| {
            let row = match &reference {
                TagOrDigest::Digest(d) => c
                    .prepare_cached(
                        "SELECT m.digest, m.media_type, m.body FROM manifests m JOIN repos r ON r.id = m.repo_id
                         WHERE r.name = ?1 AND m.digest = ?2",
                    )?
                    .query_row(params![repo.as_str(), d.to_string()], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Vec<u8>>(2)?))
                    })
                    .optional()?,
                TagOrDigest::Tag(t) => c
                    .prepare_cached(
                        "SELECT m.digest, m.media_type, m.body FROM tags t
                         JOIN repos r ON r.id = t.repo_id
                         JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest
                         WHERE r.name = ?1 AND t.name = ?2",
                    )?
                    .query_row(params![repo.as_str(), t.as_str()], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Vec<u8>>(2)?))
                    })
                    .optional()?,
            };
            row.map(|(d, media_type, body)| {
                Ok(ManifestRecord {
                    digest: parse_digest(d)?,
                    media_type,
                    body: Bytes::from(body),
                })
            })
            .transpose()
        })
        .await
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let (repo, digest) = (repo.clone(), digest.to_string());
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let Some(id) = repo_id(&tx, &repo).map_err(backend)? else {
                return Ok(false);
            };
            let n = tx
                .execute(
                    "DELETE FROM manifests WHERE repo_id = ?1 AND digest = ?2",
                    params![id, digest],
                )
                .map_err(backend)?;
            tx.execute(
                "DELETE FROM tags WHERE repo_id = ?1 AND digest = ?2",
                params![id, digest],
            )
            .map_err(backend)?;
            tx.execute(
                "DELETE FROM manifest_refs WHERE repo_id = ?1 AND parent = ?2",
                params![id, digest],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn tag_details(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<TagDetail>>> {
        let repo = repo.clone();
        let last = last.unwrap_or("").to_owned();
        self.read(move |c| {
            let Some(id) = repo_id(c, &repo)? else {
                return Ok(None);
            };
            let mut stmt = c.prepare_cached(
                "SELECT t.name, t.digest, m.media_type, m.body, t.pushed FROM tags t
                 JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest
                 WHERE t.repo_id = ?1 AND t.name > ?2 ORDER BY t.name LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![id, last, to_i64(limit as u64)], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(tag, digest, media_type, body, pushed)| {
                    Ok(TagDetail {
                        tag,
                        digest: parse_digest(digest)?,
                        media_type,
                        body: Bytes::from(body),
                        pushed,
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
                .map(Some)
        })
        .await
    }

    async fn delete_repo(&self, repo: &RepoName) -> Result<Option<RepoDeleted>> {
        let repo = repo.clone();
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let Some(id) = repo_id(&tx, &repo).map_err(backend)? else {
                return Ok(None);
            };
            let tags = tx
                .execute("DELETE FROM tags WHERE repo_id = ?1", [id])
                .map_err(backend)?;
            let manifests = tx
                .execute("DELETE FROM manifests WHERE repo_id = ?1", [id])
                .map_err(backend)?;
            for sql in [
                "DELETE FROM manifest_refs WHERE repo_id = ?1",
                "DELETE FROM repo_blobs WHERE repo_id = ?1",
                "DELETE FROM repos WHERE id = ?1",
            ] {
                tx.execute(sql, [id]).map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(Some(RepoDeleted {
                manifests: manifests as u64,
                tags: tags as u64,
            }))
        })
        .await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let (repo, tag) = (repo.clone(), tag.to_string());
        self.write(move |c| {
            let n = c
                .execute(
                    "DELETE FROM tags WHERE name = ?2 AND repo_id = (SELECT id FROM repos WHERE name = ?1)",
                    params![repo.as_str(), tag],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Page>> {
        let repo = repo.clone();
        let last = last.unwrap_or("").to_owned();
        self.read(move |c| {
            let Some(id) = repo_id(c, &repo)? else {
                return Ok(None);
            };
            page(
                c,
                "SELECT name FROM tags WHERE repo_id = ?1 AND name > ?2 ORDER BY name LIMIT ?3",
                &[&id, &last, &((limit + 1) as i64)],
                limit,
            )
            .map(Some)
        })
        .await
    }

    async fn list_repos(&self, last: Option<&str>, limit: usize) -> Result<Page> {
        let last = last.unwrap_or("").to_owned();
        self.read(move |c| {
            page(
                c,
                "SELECT name FROM repos WHERE name > ?1 ORDER BY name LIMIT ?2",
                &[&last, &((limit + 1) as i64)],
                limit,
            )
        })
        .await
    }

    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<ReferrerRecord>> {
        let (repo, subject) = (repo.clone(), subject.to_string());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT m.digest, m.media_type, length(m.body), m.artifact_type, m.annotations
                 FROM manifests m JOIN repos r ON r.id = m.repo_id
                 WHERE r.name = ?1 AND m.subject = ?2 ORDER BY m.digest",
            )?;
            stmt.query_map(params![repo.as_str(), subject], |r| {
                Ok(ReferrerRecord {
                    digest: parse_digest(r.get(0)?)?,
                    media_type: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    artifact_type: r.get(3)?,
                    annotations: r.get(4)?,
                })
            })?
            .collect()
        })
        .await
    }

    async fn blob_links(&self, repo: &RepoName) -> Result<Vec<(Digest, u64)>> {
        let repo = repo.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT b.digest, b.size FROM repo_blobs b JOIN repos r ON r.id = b.repo_id
                 WHERE r.name = ?1 ORDER BY b.digest",
            )?;
            stmt.query_map(params![repo.as_str()], |r| {
                Ok((parse_digest(r.get(0)?)?, r.get::<_, i64>(1)?.max(0) as u64))
            })?
            .collect()
        })
        .await
    }

    async fn manifest_digests(&self, repo: &RepoName) -> Result<Vec<Digest>> {
        let repo = repo.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT m.digest FROM manifests m JOIN repos r ON r.id = m.repo_id
                 WHERE r.name = ?1 ORDER BY m.digest",
            )?;
            stmt.query_map(params![repo.as_str()], |r| parse_digest(r.get(0)?))?
                .collect()
        })
        .await
    }

    async fn upload_create(&self, u: &UploadRecord) -> Result<()> {
        let u = u.clone();
        self.write(move |c| {
            c.execute(
                "INSERT INTO uploads(id, repo, algorithm, created, owner, received, hash_state, \
                 parts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    u.id,
                    u.repo.as_str(),
                    u.algorithm.as_str(),
                    u.created,
                    u.owner,
                    u.offset.map(to_i64),
                    u.hash_state,
                    u.parts
                        .as_ref()
                        .map(|p| p.iter().map(UploadPart::encode).collect::<String>())
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn upload_get(&self, id: &str) -> Result<Option<UploadRecord>> {
        let id = id.to_owned();
        self.read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT id, repo, algorithm, created, owner, received, hash_state, parts \
                     FROM uploads WHERE id = ?1",
                )?
                .query_row([&id], |r| {
                    Ok((
                        (
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get(3)?,
                            r.get::<_, String>(4)?,
                        ),
                        r.get::<_, Option<i64>>(5)?,
                        (
                            r.get::<_, Option<Vec<u8>>>(6)?,
                            r.get::<_, Option<String>>(7)?,
                        ),
                    ))
                })
                .optional()?;
            let conv = |e: berth_oci::Error| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            };
            row.map(
                |((id, repo, alg, created, owner), received, (hash_state, parts))| {
                    Ok((
                        UploadRecord {
                            id,
                            repo: repo.parse().map_err(conv)?,
                            algorithm: Algorithm::parse(&alg).map_err(conv)?,
                            created,
                            owner,
                            offset: received.map(|n| u64::try_from(n).unwrap_or(0)),
                            hash_state,
                            parts: None,
                        },
                        parts,
                    ))
                },
            )
            .transpose()
        })
        .await?
        .map(|(mut rec, parts)| {
            rec.parts = parts.as_deref().map(UploadPart::decode_list).transpose()?;
            Ok(rec)
        })
        .transpose()
    }

    async fn upload_delete(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            c.execute("DELETE FROM uploads WHERE id = ?1", [id])
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn uploads_created_before(&self, before: i64) -> Result<Vec<String>> {
        self.read(move |c| {
            c.prepare_cached("SELECT id FROM uploads WHERE created < ?1")?
                .query_map([before], |r| r.get(0))?
                .collect()
        })
        .await
    }

    async fn upload_advance(
        &self,
        id: &str,
        part: &UploadPart,
        hash_state: Option<Vec<u8>>,
    ) -> Result<bool> {
        let (id, from, to, text) = (id.to_owned(), part.offset, part.end()?, part.encode());
        self.write(move |c| {
            // One statement: the offset moves and the part is recorded together, or neither.
            let n = c
                .prepare_cached(
                    "UPDATE uploads SET received = ?3, hash_state = ?4, parts = parts || ?5 \
                     WHERE id = ?1 AND parts IS NOT NULL AND COALESCE(received, 0) = ?2",
                )
                .and_then(|mut s| {
                    s.execute(params![id, to_i64(from), to_i64(to), hash_state, text])
                })
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn uploads_owned_by(&self, owner: &str) -> Result<u64> {
        let owner = owner.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT count(*) FROM uploads WHERE owner = ?1")?
                .query_row([owner], |r| r.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn stats(&self) -> Result<berth_storage::StoreStats> {
        self.read(|c| {
            c.prepare_cached(STATS_SQL)?.query_row([], |r| {
                let n = |i: usize| r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
                Ok(berth_storage::StoreStats {
                    repositories: n(0)?,
                    manifests: n(1)?,
                    tags: n(2)?,
                    blobs: n(3)?,
                    blob_bytes: n(4)?,
                    uploads: n(5)?,
                })
            })
        })
        .await
    }

    async fn blob_pin(&self, digest: &Digest, size: u64, now: i64) -> Result<()> {
        let digest = digest.to_string();
        let _gate = self.gc_gate.read().await;
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO blobs(digest, size, touched) VALUES (?1, ?2, ?3)
                 ON CONFLICT(digest) DO UPDATE SET touched = max(touched, excluded.touched)",
            )
            .and_then(|mut s| s.execute(params![digest, to_i64(size), now]))
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn gc_blob_candidates(
        &self,
        cutoff: i64,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<(Digest, u64)>> {
        let after = after.map(|d| d.to_string()).unwrap_or_default();
        let limit = to_i64(limit as u64);
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT b.digest, b.size FROM blobs b WHERE b.digest > ?2 AND {BLOB_CANDIDATE}
                 ORDER BY b.digest LIMIT ?3"
            ))?
            .query_map(params![cutoff, after, limit], |r| {
                Ok((parse_digest(r.get(0)?)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect()
        })
        .await
    }

    async fn gc_blob_remove(
        &self,
        digest: &Digest,
        cutoff: i64,
        blobs: &dyn berth_storage::BlobStore,
    ) -> Result<Option<u64>> {
        let key = digest.to_string();
        let _gate = self.gc_gate.write().await;
        let size = self
            .write(move |c| {
                // The single writer: no manifest can be stored between this check and the
                // deletes, and one stored before is seen.
                let tx = c.transaction().map_err(backend)?;
                let size: Option<i64> = tx
                    .query_row(
                        &format!(
                            "SELECT b.size FROM blobs b WHERE b.digest = ?2 AND {BLOB_CANDIDATE}"
                        ),
                        params![cutoff, key],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                if size.is_some() {
                    tx.execute("DELETE FROM repo_blobs WHERE digest = ?1", [&key])
                        .map_err(backend)?;
                    tx.execute("DELETE FROM blobs WHERE digest = ?1", [&key])
                        .map_err(backend)?;
                }
                tx.commit().map_err(backend)?;
                Ok(size.map(|s| s as u64))
            })
            .await?;
        if size.is_some() {
            // The records went first: a crash here leaves bytes without a record, which the
            // next collection removes; never a record without bytes.
            match blobs.delete(digest).await {
                Ok(()) | Err(Error::BlobUnknown) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(size)
    }

    async fn blobs_known(&self, digests: &[Digest]) -> Result<Vec<bool>> {
        let keys: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
        self.read(move |c| {
            let mut q = c.prepare_cached("SELECT 1 FROM blobs WHERE digest = ?1")?;
            keys.iter().map(|k| q.exists([k])).collect()
        })
        .await
    }

    async fn gc_bytes_remove(
        &self,
        digest: &Digest,
        blobs: &dyn berth_storage::BlobStore,
    ) -> Result<bool> {
        let key = digest.to_string();
        let _gate = self.gc_gate.write().await;
        let known = self
            .read(move |c| {
                c.prepare_cached("SELECT 1 FROM blobs WHERE digest = ?1")?
                    .exists([key])
            })
            .await?;
        if known {
            return Ok(false);
        }
        match blobs.delete(digest).await {
            Ok(()) => Ok(true),
            Err(Error::BlobUnknown) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn gc_manifest_candidates(&self, repo: &RepoName, cutoff: i64) -> Result<Vec<Digest>> {
        let repo = repo.clone();
        self.read(move |c| {
            let Some(id) = repo_id(c, &repo)? else {
                return Ok(Vec::new());
            };
            c.prepare_cached(&format!(
                "SELECT m.digest FROM manifests m WHERE {MANIFEST_CANDIDATE} ORDER BY m.digest"
            ))?
            .query_map(params![id, cutoff], |r| parse_digest(r.get(0)?))?
            .collect()
        })
        .await
    }

    async fn gc_manifest_remove(
        &self,
        repo: &RepoName,
        digest: &Digest,
        cutoff: i64,
    ) -> Result<bool> {
        let (repo, key) = (repo.clone(), digest.to_string());
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let Some(id) = repo_id(&tx, &repo).map_err(backend)? else {
                return Ok(false);
            };
            let still = tx
                .prepare_cached(&format!(
                    "SELECT 1 FROM manifests m WHERE {MANIFEST_CANDIDATE} AND m.digest = ?3"
                ))
                .and_then(|mut s| s.exists(params![id, cutoff, key]))
                .map_err(backend)?;
            if !still {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM manifests WHERE repo_id = ?1 AND digest = ?2",
                params![id, key],
            )
            .map_err(backend)?;
            tx.execute(
                "DELETE FROM manifest_refs WHERE repo_id = ?1 AND parent = ?2",
                params![id, key],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }
}
