//! The metadata half of Berth's distributed store: repositories, manifests, tags, upload
//! sessions, Notary trust data, identities and the audit log in PostgreSQL, with the semantics
//! of the embedded SQLite store (`berth-storage-embedded` is the reference; both pass the
//! conformance suite in `berth_storage::testsuite`).
//!
//! Several Berth nodes share one database, so nothing here may rely on being the only writer:
//! first-use rows are inserted if absent (`ON CONFLICT`), the upload offset moves by
//! compare-and-set, and a GUN's TUF updates are serialised by a transaction-scoped advisory
//! lock, so two nodes publishing the same version cannot both win.
//!
//! In memory it keeps only settings and each GUN's current TUF files (the hot read path), in
//! the shared [`berth_storage::cache::HotCache`], coherent across nodes by `NOTIFY` (see
//! `coherence`); every other call reads the database.
//!
//! The connection to PostgreSQL is plain TCP for now (`NoTls`): run it on a trusted network or
//! loopback until TLS to PostgreSQL lands.

use std::time::Duration;

use berth_storage::Error;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

mod coherence;
mod identity;
mod metadata;
mod migrate;
mod settings;
#[cfg(feature = "test-support")]
pub mod testing;
mod trust;
mod webhooks;

pub use migrate::SCHEMA_VERSION;

/// Bounds of the connection pool and of each statement.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections held open at most (each is a PostgreSQL backend process).
    pub max_connections: usize,
    /// How long a request waits for a free connection before it fails.
    pub acquire_timeout: Duration,
    /// How long opening a connection (TCP and startup) may take.
    pub connect_timeout: Duration,
    /// Server-side bound on one statement, and on a transaction left idle.
    pub statement_timeout: Duration,
    /// Keep settings and current TUF files in memory, dropped by other nodes' notifications
    /// (a listener connection per store). Off: every read goes to the database.
    pub cache: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(60),
            cache: true,
        }
    }
}

/// Metadata, trust and identity stores over one PostgreSQL database (see the crate docs).
/// Cloning shares the pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    pub(crate) co: Option<std::sync::Arc<coherence::Coherence>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.pool.status();
        f.debug_struct("PgStore")
            .field("connections", &s.size)
            .field("max", &s.max_size)
            .finish()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database[?…]` or libpq's
    /// `key=value` form) with default bounds and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, &PgOptions::default()).await
    }

    pub async fn connect_with(url: &str, opts: &PgOptions) -> Result<Self, Error> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::Backend(format!("postgres URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(opts.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("berth");
        }
        // Bounds enforced by the server itself, so a stuck statement or a transaction whose node
        // died cannot hold rows or locks for ever. Appended to whatever options the URL gave.
        let ms = opts.statement_timeout.as_millis();
        let bounds =
            format!("-c statement_timeout={ms} -c idle_in_transaction_session_timeout={ms}");
        let options = match config.get_options() {
            Some(o) if !o.trim().is_empty() => format!("{o} {bounds}"),
            _ => bounds,
        };
        config.options(options);
        config.keepalives(true);
        let listen_config = config.clone();
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(opts.max_connections.max(1))
            .wait_timeout(Some(opts.acquire_timeout))
            .create_timeout(Some(opts.connect_timeout))
            .recycle_timeout(Some(opts.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Backend(format!("postgres pool: {e}")))?;
        let mut store = PgStore { pool, co: None };
        let mut conn = store.conn().await?;
        migrate::migrate(&mut conn).await?;
        drop(conn);
        if opts.cache {
            store.co = Some(coherence::Coherence::start(listen_config));
        }
        Ok(store)
    }

    /// A pooled connection.
    pub(crate) async fn conn(&self) -> Result<deadpool_postgres::Object, Error> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => backend(e),
            other => Error::Backend(format!("postgres pool: {other}")),
        })
    }

    /// Waits (up to the acquire and statement bounds) for the cluster-wide start-up lock, a
    /// session-level advisory lock held until the guard is dropped. Nodes starting at once on
    /// an empty database take turns creating first-use state (the bootstrap owner, the first
    /// token-signing key), so each is created once and by one node.
    pub async fn startup_lock(&self) -> Result<StartupLock, Error> {
        let conn = self.conn().await?;
        conn.execute("SELECT pg_advisory_lock($1)", &[&locks::STARTUP])
            .await
            .map_err(backend)?;
        Ok(StartupLock { conn: Some(conn) })
    }

    /// Commits `tx` with the notification that `stale` changed (delivered at commit, never for
    /// a rollback), then lets every node's copies follow before returning (see `coherence`).
    pub(crate) async fn commit_notifying(
        &self,
        tx: deadpool_postgres::Transaction<'_>,
        stale: coherence::Stale<'_>,
    ) -> Result<(), Error> {
        let Some(co) = &self.co else {
            return tx.commit().await.map_err(backend);
        };
        let notice = co.notice(stale);
        // The nodes listening now are the ones whose acknowledgements the write waits for (one
        // that starts listening later starts with no copies).
        let sent = tx
            .query_one(
                "SELECT pg_notify($1, $2), (SELECT count(*) FROM pg_stat_activity
                   WHERE application_name = $3 AND datname = current_database())",
                &[
                    &coherence::CHANNEL,
                    &notice.payload,
                    &coherence::LISTENER_NAME,
                ],
            )
            .await;
        let listeners = match sent {
            Ok(row) => col::<i64>(&row, 1),
            Err(e) => Err(backend(e)),
        };
        let listeners = match listeners {
            Ok(n) => n,
            Err(e) => {
                co.abandoned(notice);
                return Err(e);
            }
        };
        match tx.commit().await {
            Ok(()) => {
                co.committed(stale, notice, listeners).await;
                Ok(())
            }
            Err(e) => {
                co.abandoned(notice);
                Err(backend(e))
            }
        }
    }

    /// Whether settings and current TUF files are served from memory now: the cache is on and
    /// its listener connected (see `coherence`).
    pub fn caching(&self) -> bool {
        self.co.as_ref().is_some_and(|co| co.usable())
    }

    /// The schema version the database is at (the highest migration applied).
    pub async fn schema_version(&self) -> Result<i32, Error> {
        let conn = self.conn().await?;
        migrate::current_version(&conn).await
    }
}

/// The start-up lock of [`PgStore::startup_lock`]. Dropping it closes its connection (taken out
/// of the pool), which releases the lock even if the node dies right after.
pub struct StartupLock {
    conn: Option<deadpool_postgres::Object>,
}

impl Drop for StartupLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Detached from the pool and dropped: the session ends, and its lock with it.
            drop(deadpool_postgres::Object::take(conn));
        }
    }
}

/// The one mapping of PostgreSQL failures. A full disk is told apart (clients hear it; the
/// transaction was rolled back), as the embedded store does.
pub(crate) fn backend(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) if *db.code() == SqlState::DISK_FULL => {
            Error::NoSpace(format!("postgres: {}", db.message()))
        }
        Some(db) => Error::Backend(format!("postgres: {} ({})", db.message(), db.code().code())),
        None => {
            let mut msg = format!("postgres: {e}");
            if let Some(src) = std::error::Error::source(&e) {
                msg.push_str(&format!(": {src}"));
            }
            Error::Backend(msg)
        }
    }
}

pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Byte counts and limits as PostgreSQL BIGINT (nothing here reaches 2^63).
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `LIMIT` for a page of `limit` items plus one, to learn whether more follow.
pub(crate) fn page_limit(limit: usize) -> i64 {
    i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)
}

/// Reads column `idx` of a row, as an error instead of a panic when the type does not match.
/// A text column holding one of a closed set of names (identity kind, changefeed category,
/// server key role); a name outside it is the error every backend gives.
pub(crate) fn kind_col<T>(row: &tokio_postgres::Row, idx: usize) -> Result<T, Error>
where
    T: std::str::FromStr<Err = berth_storage::UnknownKind>,
{
    Ok(col::<&str>(row, idx)?.parse()?)
}

pub(crate) fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    idx: usize,
) -> Result<T, Error> {
    row.try_get(idx).map_err(backend)
}

/// Keys of the transaction-scoped advisory locks (first half of the two-key form), so they
/// never collide with each other or with an operator's own locks in other namespaces.
pub(crate) mod locks {
    /// Schema migrations (single key).
    pub const MIGRATE: i64 = 0x6265_7274_685f_6d67; // "berth_mg"
    /// Node start-up (single key, session-level).
    pub const STARTUP: i64 = 0x6265_7274_685f_7375; // "berth_su"
    /// Trust data: shared by per-GUN writers, exclusive for wiping every GUN.
    pub const TRUST_ALL: (i32, i32) = (0x6274_7275, 0);
    /// One GUN's TUF files (second key: `hashtext(gun)`; a collision only serialises two GUNs).
    pub const TRUST_GUN: i32 = 0x6274_6775;
    /// Appends to the changefeed and the audit log, so ids become visible in increasing order
    /// and a reader paging by id never skips a row that commits late.
    pub const SEQUENCE: (i32, i32) = (0x6274_7371, 0);
    pub const AUDIT: (i32, i32) = (0x6274_7371, 1);
    /// One blob digest (second key: `hashtext(digest)`): shared by pins and links,
    /// exclusive (session-level) while garbage collection removes the blob.
    pub const GC_BLOB: i32 = 0x6274_6762;
    /// Enqueues to the webhook queue, so its bound holds across nodes.
    pub const WEBHOOK_QUEUE: (i32, i32) = (0x6274_7768, 0);
}

#[cfg(all(test, feature = "test-support"))]
mod tests {
    use super::*;

    /// The server cancels a statement past the bound, and a caller waits for a pooled
    /// connection no longer than the acquire timeout.
    #[tokio::test]
    async fn statements_and_pool_waits_are_bounded() {
        let db = crate::testing::fresh_database().await;
        let opts = PgOptions {
            max_connections: 1,
            acquire_timeout: Duration::from_millis(300),
            statement_timeout: Duration::from_millis(500),
            ..PgOptions::default()
        };
        let store = PgStore::connect_with(&db.url, &opts).await.unwrap();
        let held = store.conn().await.unwrap();
        let shown: String = held
            .query_one("SHOW statement_timeout", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(shown, "500ms");
        let e = backend(held.execute("SELECT pg_sleep(5)", &[]).await.unwrap_err());
        assert!(e.to_string().contains("statement timeout"), "{e}");

        let started = std::time::Instant::now();
        let e = store.conn().await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "waited {:?}",
            started.elapsed()
        );
        assert!(e.to_string().contains("postgres pool"), "{e}");
        drop(held);
        drop(store.conn().await.unwrap());
        drop(store);
        db.drop_database().await;
    }
}
