//! Shared test scaffolding: stores, a service with a movable clock, and a client-side
//! publisher that builds and signs metadata the way the notary/docker clients do.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_crypto::{PrivateKey, PublicKey, x509};
use berth_storage::{Change, SettingsStore, TrustStore, TufFile};
use berth_trust::{Clock, KeyVault, TrustOptions, TrustService};
use berth_tuf::root::RoleKeys;
use berth_tuf::{
    Delegations, FileMeta, KeyRole, RoleBody, RoleName, Root, Signed, Snapshot, Targets, Timestamp,
    verify_threshold,
};
use bytes::Bytes;

pub const GUN: &str = "localhost:5000/berth/demo";
pub const DAY: Duration = Duration::from_secs(86400);
pub const PASSPHRASE: &[u8] = b"test vault passphrase";

/// What one backend gives the trust service: its trust data and its settings.
pub trait Store: TrustStore + SettingsStore {}
impl<T: TrustStore + SettingsStore> Store for T {}

/// The stores the service is tested against.
pub enum Backend {
    Mem,
    Sqlite(tempfile::TempDir),
}

pub fn store(backend: &Backend) -> Arc<dyn Store> {
    match backend {
        Backend::Mem => Arc::new(berth_storage::memory::MemoryStore::new()),
        Backend::Sqlite(dir) => Arc::new(
            berth_storage_embedded::SqliteMetadataStore::open(dir.path().join("metadata.db"))
                .unwrap(),
        ),
    }
}

/// A store on a fresh PostgreSQL database (a real server: see `berth_storage_postgres::testing`).
pub async fn postgres_store() -> Arc<dyn Store> {
    let db = berth_storage_postgres::testing::fresh_database().await;
    Arc::new(
        berth_storage_postgres::PgStore::connect(&db.url)
            .await
            .unwrap(),
    )
}

/// Runs a scenario `fn(Arc<dyn Store>)` against the in-memory backend, SQLite and
/// PostgreSQL.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn mem() {
                let b = $crate::support::Backend::Mem;
                super::$name($crate::support::store(&b)).await;
            }
            #[tokio::test]
            async fn sqlite() {
                let b = $crate::support::Backend::Sqlite(tempfile::tempdir().unwrap());
                super::$name($crate::support::store(&b)).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$name($crate::support::postgres_store().await).await;
            }
        }
    )*};
}

/// A service with a clock the test moves.
pub struct Harness {
    pub store: Arc<dyn Store>,
    pub svc: TrustService,
    pub clock: Arc<Mutex<SystemTime>>,
}

impl Harness {
    pub async fn new(store: Arc<dyn Store>) -> Self {
        Self::at(store, SystemTime::now()).await
    }

    pub async fn at(store: Arc<dyn Store>, now: SystemTime) -> Self {
        let h = Self::disabled_at(store, now).await;
        h.svc.set_enabled(true).await.unwrap();
        h
    }

    pub async fn disabled_at(store: Arc<dyn Store>, now: SystemTime) -> Self {
        let clock = Arc::new(Mutex::new(now));
        let c = clock.clone();
        let vault = KeyVault::open(store.as_ref(), PASSPHRASE).await.unwrap();
        let opts = TrustOptions {
            clock: Clock::from_fn(move || *c.lock().unwrap()),
            ..TrustOptions::default()
        };
        let svc = TrustService::new(store.clone(), store.clone(), vault, opts);
        Harness { store, svc, clock }
    }

    pub fn now(&self) -> SystemTime {
        *self.clock.lock().unwrap()
    }

    pub fn advance(&self, d: Duration) {
        *self.clock.lock().unwrap() += d;
    }

    /// Everything a rejected update must leave alone.
    pub async fn state(&self) -> (Vec<TufFile>, Vec<Change>) {
        (
            self.store.tuf_current_all(GUN).await.unwrap(),
            self.store.changefeed(None, 0, 1000).await.unwrap(),
        )
    }

    pub async fn server_key(&self, role: &str) -> PublicKey {
        parse_key(&self.svc.get_key(GUN, role).await.unwrap())
    }
}

pub fn parse_key(json: &[u8]) -> PublicKey {
    PublicKey::from_value(&berth_cjson::from_slice(json).unwrap()).unwrap()
}

pub fn parts(list: &[(&str, &[u8])]) -> Vec<(String, Bytes)> {
    list.iter()
        .map(|(n, b)| ((*n).to_owned(), Bytes::copy_from_slice(b)))
        .collect()
}

/// The client side of a repository: root and targets keys, and the server's keys it lists.
pub struct Publisher {
    pub gun: String,
    pub root_key: PrivateKey,
    pub root_pub: PublicKey,
    pub targets_key: PrivateKey,
    pub timestamp: PublicKey,
    pub snapshot: PublicKey,
}

impl Publisher {
    pub fn new(now: SystemTime, timestamp: PublicKey, snapshot: PublicKey) -> Self {
        let root_key = PrivateKey::generate_ecdsa().unwrap();
        let root_pub = x509::root_public_key(&root_key, GUN, now).unwrap();
        Publisher {
            gun: GUN.to_owned(),
            root_key,
            root_pub,
            targets_key: PrivateKey::generate_ecdsa().unwrap(),
            timestamp,
            snapshot,
        }
    }

    pub fn root(&self, version: i64, now: SystemTime) -> Root {
        let mut keys = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for (role, key) in [
            ("root", &self.root_pub),
            ("targets", self.targets_key.public_key()),
            ("snapshot", &self.snapshot),
            ("timestamp", &self.timestamp),
        ] {
            keys.insert(key.key_id(), key.clone());
            roles.insert(
                role.to_owned(),
                RoleKeys {
                    keyids: vec![key.key_id()],
                    threshold: 1,
                },
            );
        }
        Root {
            version,
            expires: berth_tuf::time::format_rfc3339(now + 3650 * DAY),
            consistent_snapshot: false,
            keys,
            roles,
        }
    }

    pub fn sign_root(&self, root: Root) -> Vec<u8> {
        Signed::sign_as(root, &[(&self.root_key, &self.root_pub)])
            .unwrap()
            .envelope
            .into_raw()
    }

    pub fn targets_body(&self, version: i64, now: SystemTime, names: &[&str]) -> Targets {
        Targets {
            version,
            expires: berth_tuf::time::format_rfc3339(now + 1095 * DAY),
            targets: names
                .iter()
                .map(|n| ((*n).to_owned(), FileMeta::for_bytes(n.as_bytes())))
                .collect(),
            delegations: Delegations::default(),
        }
    }

    pub fn targets(&self, version: i64, now: SystemTime, names: &[&str]) -> Vec<u8> {
        sign(self.targets_body(version, now, names), &self.targets_key)
    }

    /// root v1 + targets v1.
    pub fn initial(&self, now: SystemTime) -> Vec<(String, Bytes)> {
        let root = self.sign_root(self.root(1, now));
        let targets = self.targets(1, now, &["v1"]);
        parts(&[("root", &root), ("targets", &targets)])
    }
}

pub fn sign<T: RoleBody>(body: T, key: &PrivateKey) -> Vec<u8> {
    Signed::sign(body, &[key]).unwrap().envelope.into_raw()
}

/// Checks what a client checks: the timestamp and snapshot verify against the root's keys,
/// the timestamp names the snapshot bytes, and the snapshot names the served root and
/// targets-like files (by their exact bytes).
pub async fn assert_chain(
    svc: &TrustService,
    now: SystemTime,
) -> (Signed<Timestamp>, Signed<Snapshot>) {
    let root_file = svc.get_current(GUN, "root").await.unwrap();
    let root = Signed::<Root>::parse(&root_file.data).unwrap();
    let ts_file = svc.get_current(GUN, "timestamp").await.unwrap();
    let snap_file = svc.get_current(GUN, "snapshot").await.unwrap();
    let ts = Signed::<Timestamp>::parse(&ts_file.data).unwrap();
    let snap = Signed::<Snapshot>::parse(&snap_file.data).unwrap();
    verify_threshold(
        &ts.envelope,
        &root.body.key_role(&RoleName::Timestamp).unwrap(),
    )
    .unwrap();
    verify_threshold(
        &snap.envelope,
        &root.body.key_role(&RoleName::Snapshot).unwrap(),
    )
    .unwrap();
    assert!(!ts.body.is_expired(now).unwrap());
    assert!(!snap.body.is_expired(now).unwrap());
    ts.body
        .snapshot_meta()
        .unwrap()
        .check(&snap_file.data)
        .unwrap();
    for (role, meta) in &snap.body.meta {
        let file = svc.get_current(GUN, role).await.unwrap();
        meta.check(&file.data)
            .unwrap_or_else(|e| panic!("snapshot meta for {role}: {e}"));
    }
    assert!(snap.body.meta.contains_key("root") && snap.body.meta.contains_key("targets"));
    (ts, snap)
}

pub fn key_role(name: &str, keys: &[&PublicKey], threshold: i64) -> KeyRole {
    KeyRole {
        name: name.to_owned(),
        keys: keys.iter().map(|k| (k.key_id(), (*k).clone())).collect(),
        threshold,
    }
}

/// The real notary fixtures: (role, version) -> bytes.
pub fn fixtures() -> BTreeMap<(RoleName, i64), Vec<u8>> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tuf/tests/fixtures/notary/metadata");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_str().unwrap().to_owned();
        let (v, role) = name.split_once('.').unwrap();
        out.insert(
            (
                RoleName::parse(&role.replace("__", "/")).unwrap(),
                v.parse().unwrap(),
            ),
            std::fs::read(&p).unwrap(),
        );
    }
    out
}

pub fn hostile(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tuf/tests/fixtures/hostile")
            .join(name),
    )
    .unwrap()
}
