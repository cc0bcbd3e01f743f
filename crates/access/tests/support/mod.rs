//! Shared scaffolding: the three backends, a clock the test moves, and access services ("nodes")
//! over one store.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_access::{AccessService, Clock};
use berth_storage::{IdentityStore, SettingsStore};
use berth_trust::KeyVault;

pub const PASSPHRASE: &[u8] = b"test vault passphrase";
pub const SERVICE: &str = "registry.test";
pub const OWNER_PW: &str = "correct horse battery staple";

/// One store as both traits the access service reads.
pub struct Stores {
    pub ids: Arc<dyn IdentityStore>,
    pub settings: Arc<dyn SettingsStore>,
}

fn both<T: IdentityStore + SettingsStore>(s: Arc<T>) -> Stores {
    Stores {
        ids: s.clone(),
        settings: s,
    }
}

/// A store under test. Each [`Backend::stores`] call is what one more node sees: the same
/// object for the in-process stores, a connection pool of its own for PostgreSQL (as separate
/// `berth serve` processes have).
pub enum Backend {
    Mem(Arc<berth_storage::memory::MemoryStore>),
    Sqlite(
        Arc<berth_storage_embedded::SqliteMetadataStore>,
        tempfile::TempDir,
    ),
    Postgres(String),
}

impl Backend {
    pub fn mem() -> Self {
        Backend::Mem(Arc::new(berth_storage::memory::MemoryStore::new()))
    }

    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let s = berth_storage_embedded::SqliteMetadataStore::open(dir.path().join("metadata.db"))
            .unwrap();
        Backend::Sqlite(Arc::new(s), dir)
    }

    /// A fresh database on a real PostgreSQL server (see `berth_storage_postgres::testing`).
    pub async fn postgres() -> Self {
        Backend::Postgres(berth_storage_postgres::testing::fresh_database().await.url)
    }

    pub async fn stores(&self) -> Stores {
        match self {
            Backend::Mem(s) => both(s.clone()),
            Backend::Sqlite(s, _) => both(s.clone()),
            Backend::Postgres(url) => both(Arc::new(
                berth_storage_postgres::PgStore::connect(url).await.unwrap(),
            )),
        }
    }
}

/// Wall-clock time the test moves.
#[derive(Clone)]
pub struct TestClock(Arc<Mutex<SystemTime>>);

impl TestClock {
    pub fn new() -> Self {
        TestClock(Arc::new(Mutex::new(SystemTime::now())))
    }

    pub fn clock(&self) -> Clock {
        let c = self.0.clone();
        Clock::from_fn(move || *c.lock().unwrap())
    }

    pub fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }

    pub fn secs(&self) -> i64 {
        self.clock().secs()
    }
}

/// An access service over `backend`, as one `berth serve` builds it.
pub async fn node(backend: &Backend, clock: &TestClock) -> AccessService {
    let s = backend.stores().await;
    let vault = KeyVault::open(s.settings.as_ref(), PASSPHRASE)
        .await
        .unwrap();
    AccessService::new(s.ids, s.settings, vault, vec![SERVICE.to_owned()], false)
        .unwrap()
        .with_clock(clock.clock())
}

/// The `kid` in a JWT's header.
pub fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

/// Runs `async fn(Backend)` scenarios on the in-memory store, SQLite and PostgreSQL.
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn mem() {
                super::$name($crate::support::Backend::mem()).await;
            }
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::support::Backend::sqlite()).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$name($crate::support::Backend::postgres().await).await;
            }
        }
    )*};
}
