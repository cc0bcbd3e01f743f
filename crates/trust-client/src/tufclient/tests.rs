//! The updater against hostile repositories served from memory: every refusal the verified
//! client makes, and the good cases, without a server. Metadata is signed with berth-tuf and
//! berth-crypto as docker and the notary server would sign it.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use berth_crypto::{KeyType, PrivateKey, x509};
use berth_tuf::time::format_rfc3339;
use berth_tuf::{Delegations, RoleKeys};

use super::*;

pub(crate) const GUN: &str = "registry.test:5000/team/app";
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Runs a future that never waits: the memory transport and the cache answer at once.
pub(crate) fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the updater waited on a memory transport"),
    }
}

/// A private directory for the cache, removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "berth-tufclient-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A root key and its notary certificate for GUN.
struct RootKey {
    key: PrivateKey,
    cert: PublicKey,
}

impl RootKey {
    fn new(now: SystemTime) -> RootKey {
        let key = PrivateKey::generate_ecdsa().unwrap();
        let pem = x509::root_certificate(&key, GUN, now - DAY, now + 3650 * DAY).unwrap();
        let cert = PublicKey::new(KeyType::EcdsaX509, pem.into_bytes()).unwrap();
        RootKey { key, cert }
    }
}

fn key_role(keys: &[&PublicKey], threshold: i64) -> RoleKeys {
    RoleKeys {
        keyids: keys.iter().map(|k| k.key_id()).collect(),
        threshold,
    }
}

fn target_meta(content: &[u8]) -> FileMeta {
    let mut hashes = BTreeMap::new();
    hashes.insert(
        "sha256".to_owned(),
        <sha2::Sha256 as sha2::Digest>::digest(content).to_vec(),
    );
    FileMeta {
        length: content.len() as i64,
        hashes,
        custom: None,
    }
}

/// A repository as the server holds it: keys, bodies and the signed files, published into a
/// [`MemoryTransport`] the way the notary server serves them. Tests change bodies or files
/// and re-sign, or corrupt what is served.
pub(crate) struct Repo {
    pub(crate) now: SystemTime,
    root_key: RootKey,
    targets_key: PrivateKey,
    snapshot_key: PrivateKey,
    timestamp_key: PrivateKey,
    releases_key: PrivateKey,
    root: Signed<Root>,
    targets: Signed<Targets>,
    releases: Signed<Targets>,
    snapshot: Signed<Snapshot>,
    timestamp: Signed<Timestamp>,
    /// Earlier roots served as `N.root.json`, for rotation chains.
    old_roots: Vec<Signed<Root>>,
}

impl Repo {
    /// Root v1, targets signing tag `base` and delegating everything to `targets/releases`,
    /// which signs tag `v1`; all valid for 30 days.
    pub(crate) fn new() -> Repo {
        let now = SystemTime::now();
        let root_key = RootKey::new(now);
        let targets_key = PrivateKey::generate_ecdsa().unwrap();
        let snapshot_key = PrivateKey::generate_ed25519().unwrap();
        let timestamp_key = PrivateKey::generate_ed25519().unwrap();
        let releases_key = PrivateKey::generate_ecdsa().unwrap();
        let root_body = Repo::root_body(
            &root_key,
            targets_key.public_key(),
            snapshot_key.public_key(),
            timestamp_key.public_key(),
            1,
            now + 365 * DAY,
        );
        let root = Signed::sign_as(root_body, &[(&root_key.key, &root_key.cert)]).unwrap();
        let mut delegations = Delegations::default();
        delegations.keys.insert(
            releases_key.public_key().key_id(),
            releases_key.public_key().clone(),
        );
        delegations.roles.push(DelegationRole {
            name: "targets/releases".into(),
            keys: key_role(&[releases_key.public_key()], 1),
            paths: vec![String::new()],
        });
        let mut targets_body = Targets {
            version: 1,
            expires: format_rfc3339(now + 30 * DAY),
            targets: BTreeMap::new(),
            delegations,
        };
        targets_body
            .targets
            .insert("base".into(), target_meta(b"base manifest"));
        let targets = Signed::sign(targets_body, &[&targets_key]).unwrap();
        let mut releases_body = Targets {
            version: 1,
            expires: format_rfc3339(now + 30 * DAY),
            targets: BTreeMap::new(),
            delegations: Delegations::default(),
        };
        releases_body
            .targets
            .insert("v1".into(), target_meta(b"v1 manifest"));
        let releases = Signed::sign(releases_body, &[&releases_key]).unwrap();
        // Placeholders, replaced by `seal`.
        let snapshot = Signed::sign(
            Snapshot {
                version: 0,
                expires: String::new(),
                meta: BTreeMap::new(),
            },
            &[&snapshot_key],
        )
        .unwrap();
        let timestamp = Signed::sign(
            Timestamp {
                version: 0,
                expires: String::new(),
                meta: BTreeMap::new(),
            },
            &[&timestamp_key],
        )
        .unwrap();
        let mut repo = Repo {
            now,
            root_key,
            targets_key,
            snapshot_key,
            timestamp_key,
            releases_key,
            root,
            targets,
            releases,
            snapshot,
            timestamp,
            old_roots: Vec::new(),
        };
        repo.seal(1, now + 30 * DAY, now + 14 * DAY);
        repo
    }

    fn root_body(
        root_key: &RootKey,
        targets: &PublicKey,
        snapshot: &PublicKey,
        timestamp: &PublicKey,
        version: i64,
        expires: SystemTime,
    ) -> Root {
        let mut keys = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for (role, k) in [
            ("root", &root_key.cert),
            ("targets", targets),
            ("snapshot", snapshot),
            ("timestamp", timestamp),
        ] {
            keys.insert(k.key_id(), k.clone());
            roles.insert(role.to_owned(), key_role(&[k], 1));
        }
        Root {
            version,
            expires: format_rfc3339(expires),
            consistent_snapshot: false,
            keys,
            roles,
        }
    }

    /// Signs a snapshot (version `version`) over the current root, targets and releases, and
    /// a timestamp (same version) over that snapshot, as the server-managed roles do.
    fn seal(&mut self, version: i64, snapshot_expires: SystemTime, ts_expires: SystemTime) {
        let mut meta = BTreeMap::new();
        meta.insert("root".to_owned(), FileMeta::for_bytes(self.root.raw()));
        meta.insert(
            "targets".to_owned(),
            FileMeta::for_bytes(self.targets.raw()),
        );
        meta.insert(
            "targets/releases".to_owned(),
            FileMeta::for_bytes(self.releases.raw()),
        );
        self.snapshot = Signed::sign(
            Snapshot {
                version,
                expires: format_rfc3339(snapshot_expires),
                meta,
            },
            &[&self.snapshot_key],
        )
        .unwrap();
        self.stamp(version, ts_expires);
    }

    /// Signs a timestamp over the current snapshot.
    fn stamp(&mut self, version: i64, expires: SystemTime) {
        let mut meta = BTreeMap::new();
        meta.insert(
            "snapshot".to_owned(),
            FileMeta::for_bytes(self.snapshot.raw()),
        );
        self.timestamp = Signed::sign(
            Timestamp {
                version,
                expires: format_rfc3339(expires),
                meta,
            },
            &[&self.timestamp_key],
        )
        .unwrap();
    }

    fn sign_targets(&mut self, body: Targets) {
        self.targets = Signed::sign(body, &[&self.targets_key]).unwrap();
    }

    fn sign_releases(&mut self, body: Targets) {
        self.releases = Signed::sign(body, &[&self.releases_key]).unwrap();
    }

    /// What the server serves: `root.json`, `timestamp.json`, and every file by checksum
    /// (plus `N.root.json` for earlier roots).
    pub(crate) fn serve(&self) -> MemoryTransport {
        let mut t = MemoryTransport::new();
        let latest = |role| MetaFile::Latest { role };
        t.insert(GUN, &latest("root"), self.root.raw());
        t.insert(GUN, &latest("timestamp"), self.timestamp.raw());
        for (role, raw) in [
            ("root", self.root.raw()),
            ("snapshot", self.snapshot.raw()),
            ("targets", self.targets.raw()),
            ("targets/releases", self.releases.raw()),
        ] {
            let sha = FileMeta::for_bytes(raw).hashes["sha256"].clone();
            t.insert(GUN, &MetaFile::Checksum { role, sha256: &sha }, raw);
        }
        for r in self.old_roots.iter().chain([&self.root]) {
            let file = MetaFile::Version {
                role: "root",
                version: r.body.version,
            };
            t.insert(GUN, &file, r.raw());
        }
        t
    }

    /// Replaces the root with version `version` signed by `signers`, keeping the old one
    /// served as `N.root.json`.
    fn rotate_root(&mut self, new_key: RootKey, version: i64, signers: &[&RootKey]) {
        let body = Repo::root_body(
            &new_key,
            self.targets_key.public_key(),
            self.snapshot_key.public_key(),
            self.timestamp_key.public_key(),
            version,
            self.now + 365 * DAY,
        );
        let signers: Vec<_> = signers.iter().map(|k| (&k.key, &k.cert)).collect();
        let root = Signed::sign_as(body, &signers).unwrap();
        self.old_roots.push(std::mem::replace(&mut self.root, root));
        self.root_key = new_key;
    }
}

/// A client with its own cache directory, as a first-time user.
struct User {
    dir: TempDir,
}

impl User {
    fn new() -> User {
        User {
            dir: TempDir::new(),
        }
    }

    fn client<T: Transport>(&self, t: T) -> TufClient<T> {
        TufClient::new(t, &self.dir.0, GUN)
    }

    fn update_at(&self, t: impl Transport, now: SystemTime) -> Result<TrustData> {
        run(self.client(t).update_at(now))
    }

    fn update(&self, repo: &Repo) -> Result<TrustData> {
        self.update_at(repo.serve(), repo.now)
    }

    /// The cached files, to check that a refused update wrote nothing.
    fn cache(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let dir = self.client(MemoryTransport::new()).cache_dir();
        read_dir_into(&dir, &dir, &mut out).unwrap();
        out
    }
}

#[track_caller]
fn assert_expired(r: Result<TrustData>, want: &str) {
    match r {
        Err(Error::Expired { role, .. }) => assert_eq!(role, want),
        other => panic!("expected {want} expired, got {other:?}"),
    }
}

#[track_caller]
fn assert_rollback(r: Result<TrustData>, want: &str) {
    match r {
        Err(Error::Rollback { role, .. }) => assert_eq!(role, want),
        other => panic!("expected a rollback of {want}, got {other:?}"),
    }
}

#[track_caller]
fn assert_hash_mismatch(r: Result<TrustData>, want: &str) {
    match r {
        Err(Error::HashMismatch { role, .. }) => assert_eq!(role, want),
        other => panic!("expected a {want} hash mismatch, got {other:?}"),
    }
}

#[track_caller]
fn assert_bad_signature(r: Result<TrustData>, want: &str) {
    match r {
        Err(Error::BadSignature { role, .. }) => assert_eq!(role, want),
        other => panic!("expected {want} badly signed, got {other:?}"),
    }
}

#[test]
fn file_names_are_notarys() {
    assert_eq!(MetaFile::Latest { role: "root" }.file_name(), "root.json");
    assert_eq!(
        MetaFile::Version {
            role: "root",
            version: 3
        }
        .file_name(),
        "3.root.json"
    );
    let f = MetaFile::Checksum {
        role: "targets/releases",
        sha256: &[0xab, 0x01],
    };
    assert_eq!(f.file_name(), "targets/releases.ab01.json");
    assert_eq!(f.role(), "targets/releases");
}

#[test]
fn good_repository_resolves_targets_including_a_delegation() {
    let repo = Repo::new();
    let user = User::new();
    let data = user.update(&repo).unwrap();
    let v1 = data.target("v1").unwrap();
    assert_eq!(v1.role, "targets/releases");
    assert_eq!(v1.size, b"v1 manifest".len() as u64);
    assert_eq!(
        v1.digest,
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"v1 manifest"))
        )
    );
    assert_eq!(data.target("base").unwrap().role, "targets");
    assert!(matches!(
        data.target("nope"),
        Err(Error::NoTrustData { .. })
    ));
    assert_eq!(data.delegations().len(), 1);
    assert_eq!(
        data.delegation_keys("targets/releases")
            .keys()
            .collect::<Vec<_>>(),
        vec![&repo.releases_key.public_key().key_id()]
    );
    // Who signed each role (what `berth trust migrate` records): the keys that verified.
    assert_eq!(
        data.signed_by("targets/releases"),
        [repo.releases_key.public_key().key_id()]
    );
    assert_eq!(
        data.signed_by("targets"),
        [repo.targets_key.public_key().key_id()]
    );
    assert!(data.signed_by("targets/nope").is_empty());
    assert!(data.skipped.is_empty());
    // Everything verified is cached, under docker's names.
    let cache = user.cache();
    assert_eq!(
        cache.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "root",
            "snapshot",
            "targets",
            "targets/releases",
            "timestamp"
        ]
    );
    assert_eq!(cache["root"], repo.root.raw());
    // And a second update from the cache still resolves.
    assert_eq!(user.update(&repo).unwrap().target("v1").unwrap(), v1);
    // Through the TufClient entry point too (real clock; all expiries are in the future).
    let got = run(user.client(repo.serve()).resolve("base")).unwrap();
    assert_eq!(got.role, "targets");
}

#[test]
fn missing_repository_and_deleted_repository() {
    let user = User::new();
    match user.update_at(MemoryTransport::new(), SystemTime::now()) {
        Err(Error::RepositoryNotExist { gun, server }) => {
            assert_eq!(gun, GUN);
            assert_eq!(server, "memory");
        }
        other => panic!("expected no trust data, got {other:?}"),
    }
    let repo = Repo::new();
    user.update(&repo).unwrap();
    // A root is pinned: the server losing everything is not a fresh start.
    assert!(matches!(
        user.update_at(MemoryTransport::new(), repo.now),
        Err(Error::RemoteDeleted { .. })
    ));
    // A file named by checksum that is gone: a 404 in the server's words.
    let mut t = repo.serve();
    let sha = FileMeta::for_bytes(repo.targets.raw()).hashes["sha256"].clone();
    t.remove(
        GUN,
        &MetaFile::Checksum {
            role: "targets",
            sha256: &sha,
        },
    )
    .unwrap();
    match user.update_at(t, repo.now) {
        Err(Error::Server {
            status: 404, url, ..
        }) => assert!(url.starts_with("memory:"), "{url}"),
        other => panic!("expected a 404, got {other:?}"),
    }
}

#[test]
fn refuses_expired_timestamp_snapshot_targets_and_root() {
    // Timestamp.
    let mut repo = Repo::new();
    repo.stamp(1, repo.now - Duration::from_secs(1));
    let user = User::new();
    assert_expired(user.update(&repo), "timestamp");
    assert!(user.cache().is_empty(), "nothing cached after a refusal");

    // Snapshot.
    let mut repo = Repo::new();
    repo.seal(1, repo.now - Duration::from_secs(1), repo.now + DAY);
    assert_expired(User::new().update(&repo), "snapshot");

    // Targets.
    let mut repo = Repo::new();
    let mut body = repo.targets.body.clone();
    body.expires = format_rfc3339(repo.now - Duration::from_secs(1));
    repo.sign_targets(body);
    repo.seal(1, repo.now + DAY, repo.now + DAY);
    assert_expired(User::new().update(&repo), "targets");

    // Root: a cached root that has expired since is refused at the next update.
    let repo = Repo::new();
    let user = User::new();
    user.update(&repo).unwrap();
    assert_expired(user.update_at(repo.serve(), repo.now + 366 * DAY), "root");
}

#[test]
fn an_expired_delegation_is_skipped_not_trusted() {
    let mut repo = Repo::new();
    let mut body = repo.releases.body.clone();
    body.expires = format_rfc3339(repo.now - Duration::from_secs(1));
    repo.sign_releases(body);
    repo.seal(1, repo.now + DAY, repo.now + DAY);
    let data = User::new().update(&repo).unwrap();
    assert!(matches!(data.target("v1"), Err(Error::NoTrustData { .. })));
    assert!(data.targets_in("targets/releases").is_empty());
    assert_eq!(data.target("base").unwrap().role, "targets");
    // Left out, and said why, with the (unverified) names it lists.
    let s = &data.skipped["targets/releases"];
    assert!(s.expired, "{s:?}");
    assert!(
        s.reason.starts_with("targets/releases expired at "),
        "{s:?}"
    );
    assert_eq!(s.names, ["v1"]);
}

#[test]
fn freeze_attack_same_timestamp_forever() {
    let repo = Repo::new();
    let user = User::new();
    user.update(&repo).unwrap();
    let cached = user.cache();
    // The server keeps answering with the same (once valid) files; past the timestamp's
    // two weeks they must be refused, however well signed.
    assert_expired(
        user.update_at(repo.serve(), repo.now + 15 * DAY),
        "timestamp",
    );
    assert_eq!(user.cache(), cached, "the refused update changed the cache");
    // Before the expiry the same files are fine.
    user.update_at(repo.serve(), repo.now + 13 * DAY).unwrap();
}

#[test]
fn refuses_rollback_of_timestamp_snapshot_and_targets() {
    let v1 = Repo::new();
    // Same keys as v1, so that only the versions differ.
    let mut v2 = clone_repo(&v1);
    let mut body = v2.targets.body.clone();
    body.version = 2;
    body.targets
        .insert("v2-base".into(), target_meta(b"v2 base"));
    v2.sign_targets(body);
    v2.seal(2, v2.now + 30 * DAY, v2.now + 14 * DAY);

    let user = User::new();
    user.update(&v2).unwrap();
    // The whole old repository served again.
    assert_rollback(user.update(&v1), "timestamp");

    // A newer timestamp over an old snapshot.
    let mut old_snapshot = clone_repo(&v1);
    old_snapshot.stamp(3, v1.now + DAY);
    assert_rollback(user.update(&old_snapshot), "snapshot");

    // Newer timestamp and snapshot over old targets.
    let mut old_targets = clone_repo(&v1);
    old_targets.seal(3, v1.now + DAY, v1.now + DAY);
    assert_rollback(user.update(&old_targets), "targets");

    // The current one still works.
    assert_eq!(
        user.update(&v2).unwrap().target("v2-base").unwrap().role,
        "targets"
    );
}

/// The same repository (keys and files), to publish another version of it.
fn clone_repo(r: &Repo) -> Repo {
    let copy = |k: &PrivateKey| PrivateKey::from_pkcs8_der(&k.to_pkcs8_der().unwrap()).unwrap();
    Repo {
        now: r.now,
        root_key: RootKey {
            key: copy(&r.root_key.key),
            cert: r.root_key.cert.clone(),
        },
        targets_key: copy(&r.targets_key),
        snapshot_key: copy(&r.snapshot_key),
        timestamp_key: copy(&r.timestamp_key),
        releases_key: copy(&r.releases_key),
        root: r.root.clone(),
        targets: r.targets.clone(),
        releases: r.releases.clone(),
        snapshot: r.snapshot.clone(),
        timestamp: r.timestamp.clone(),
        old_roots: r.old_roots.clone(),
    }
}

#[test]
fn refuses_snapshot_not_matching_the_timestamp() {
    let repo = Repo::new();
    let sha = FileMeta::for_bytes(repo.snapshot.raw()).hashes["sha256"].clone();
    let file = MetaFile::Checksum {
        role: "snapshot",
        sha256: &sha,
    };

    // Other bytes of the same length under the name the timestamp gives.
    let mut t = repo.serve();
    let mut forged = repo.snapshot.raw().to_vec();
    let i = forged.iter().position(|b| *b == b'1').unwrap();
    forged[i] = b'2';
    t.insert(GUN, &file, forged);
    assert_hash_mismatch(User::new().update_at(t, repo.now), "snapshot");

    // Longer than the timestamp says: cut off at the length (the transport's size limit).
    let mut t = repo.serve();
    let mut longer = repo.snapshot.raw().to_vec();
    longer.extend_from_slice(b"   ");
    t.insert(GUN, &file, longer);
    match User::new().update_at(t, repo.now) {
        Err(Error::TooLarge { role, limit }) => {
            assert_eq!(role, "snapshot");
            assert_eq!(limit, repo.snapshot.raw().len() as u64);
        }
        other => panic!("expected the snapshot too large, got {other:?}"),
    }

    // Shorter than the timestamp says.
    let mut t = repo.serve();
    t.insert(GUN, &file, &repo.snapshot.raw()[1..]);
    assert_hash_mismatch(User::new().update_at(t, repo.now), "snapshot");
}

#[test]
fn refuses_targets_not_matching_the_snapshot() {
    let mut repo = Repo::new();
    let good = repo.targets.raw().to_vec();
    // Properly signed targets, but not the ones the snapshot lists.
    let mut body = repo.targets.body.clone();
    body.targets.insert("evil".into(), target_meta(b"evil"));
    repo.sign_targets(body);
    let evil = repo.targets.raw().to_vec();
    let mut t = repo.serve(); // the snapshot was sealed over `good`
    let sha = FileMeta::for_bytes(&good).hashes["sha256"].clone();
    t.insert(
        GUN,
        &MetaFile::Checksum {
            role: "targets",
            sha256: &sha,
        },
        evil[..good.len().min(evil.len())].to_vec(),
    );
    assert_hash_mismatch(User::new().update_at(t, repo.now), "targets");

    // Same for a delegation.
    let repo = Repo::new();
    let sha = FileMeta::for_bytes(repo.releases.raw()).hashes["sha256"].clone();
    let mut t = repo.serve();
    let mut forged = repo.releases.raw().to_vec();
    let last = forged.len() - 2;
    forged[last] ^= 1;
    t.insert(
        GUN,
        &MetaFile::Checksum {
            role: "targets/releases",
            sha256: &sha,
        },
        forged,
    );
    assert_hash_mismatch(User::new().update_at(t, repo.now), "targets/releases");
}

#[test]
fn refuses_wrong_signatures_and_below_threshold() {
    // Timestamp signed by a key the root does not list.
    let mut repo = Repo::new();
    repo.timestamp_key = PrivateKey::generate_ed25519().unwrap();
    repo.stamp(1, repo.now + DAY);
    assert_bad_signature(User::new().update(&repo), "timestamp");

    // Snapshot signed by the wrong key.
    let mut repo = Repo::new();
    repo.snapshot_key = PrivateKey::generate_ed25519().unwrap();
    repo.seal(1, repo.now + DAY, repo.now + DAY);
    assert_bad_signature(User::new().update(&repo), "snapshot");

    // Targets signed by the wrong key.
    let mut repo = Repo::new();
    repo.targets_key = PrivateKey::generate_ecdsa().unwrap();
    let body = repo.targets.body.clone();
    repo.sign_targets(body);
    repo.seal(1, repo.now + DAY, repo.now + DAY);
    assert_bad_signature(User::new().update(&repo), "targets");

    // Targets needing two of two keys, signed by one.
    let mut repo = Repo::new();
    let second = PrivateKey::generate_ecdsa().unwrap();
    let mut root = repo.root.body.clone();
    root.keys
        .insert(second.public_key().key_id(), second.public_key().clone());
    root.roles.insert(
        "targets".into(),
        key_role(&[repo.targets_key.public_key(), second.public_key()], 2),
    );
    repo.root = Signed::sign_as(root, &[(&repo.root_key.key, &repo.root_key.cert)]).unwrap();
    let body = repo.targets.body.clone();
    repo.sign_targets(body.clone());
    repo.seal(1, repo.now + DAY, repo.now + DAY);
    assert_bad_signature(User::new().update(&repo), "targets");
    // Both signatures: accepted.
    repo.targets = Signed::sign(body, &[&repo.targets_key, &second]).unwrap();
    repo.seal(1, repo.now + DAY, repo.now + DAY);
    User::new().update(&repo).unwrap();

    // A root signed by a key without a certificate for the GUN is not trusted on first use.
    let mut repo = Repo::new();
    let stranger = RootKey::new(repo.now);
    let body = repo.root.body.clone();
    repo.root = Signed::sign_as(body, &[(&stranger.key, &stranger.cert)]).unwrap();
    repo.seal(1, repo.now + DAY, repo.now + DAY);
    assert_bad_signature(User::new().update(&repo), "root");
}

#[test]
fn a_delegation_below_its_threshold_is_skipped() {
    let mut repo = Repo::new();
    repo.releases_key = PrivateKey::generate_ecdsa().unwrap();
    let body = repo.releases.body.clone();
    repo.sign_releases(body);
    repo.seal(1, repo.now + DAY, repo.now + DAY);
    let data = User::new().update(&repo).unwrap();
    assert!(matches!(data.target("v1"), Err(Error::NoTrustData { .. })));
    assert!(!data.roles.contains_key("targets/releases"));
    let s = &data.skipped["targets/releases"];
    assert!(
        !s.expired && s.reason.contains("not validly signed"),
        "{s:?}"
    );
    assert!(data.signed_by("targets/releases").is_empty());
}

#[test]
fn root_rotation_must_be_signed_by_the_old_root() {
    let mut repo = Repo::new();
    let user = User::new();
    user.update(&repo).unwrap();
    let pinned = user.cache()["root"].clone();

    // Root v2 signed only by its own new key: the attacker's way to take over.
    let mut attack = clone_repo(&repo);
    let new_key = RootKey::new(repo.now);
    let signer = clone_key(&new_key);
    attack.rotate_root(new_key, 2, &[&signer]);
    attack.seal(2, repo.now + DAY, repo.now + DAY);
    match user.update(&attack) {
        Err(Error::BadRoot { msg, .. }) => {
            assert!(msg.contains("not signed by the previous root"), "{msg}")
        }
        other => panic!("expected the rotation refused, got {other:?}"),
    }
    assert_eq!(user.cache()["root"], pinned, "the pinned root changed");

    // Signed by the old key and the new one: followed, through a skipped version 2.
    let old = clone_key(&repo.root_key);
    let k2 = RootKey::new(repo.now);
    let k2c = clone_key(&k2);
    repo.rotate_root(k2, 2, &[&old, &k2c]);
    let k3 = RootKey::new(repo.now);
    let k3c = clone_key(&k3);
    repo.rotate_root(k3, 3, &[&k2c, &k3c]);
    repo.seal(2, repo.now + DAY, repo.now + DAY);
    let data = user.update(&repo).unwrap();
    assert_eq!(data.root.body.version, 3);
    assert_eq!(user.cache()["root"], repo.root.raw());

    // A chain whose middle link is signed by the wrong key is refused.
    let mut repo = Repo::new();
    let user = User::new();
    user.update(&repo).unwrap();
    let stranger = RootKey::new(repo.now);
    let k2 = RootKey::new(repo.now);
    let k2c = clone_key(&k2);
    repo.rotate_root(k2, 2, &[&stranger, &k2c]);
    let k3 = RootKey::new(repo.now);
    let k3c = clone_key(&k3);
    repo.rotate_root(k3, 3, &[&k2c, &k3c]);
    repo.seal(2, repo.now + DAY, repo.now + DAY);
    assert!(matches!(user.update(&repo), Err(Error::BadRoot { .. })));

    // An older root than the pinned one is a rollback.
    let mut repo = Repo::new();
    let user = User::new();
    let old = clone_key(&repo.root_key);
    let k2 = RootKey::new(repo.now);
    let k2c = clone_key(&k2);
    repo.rotate_root(k2, 2, &[&old, &k2c]);
    repo.seal(1, repo.now + DAY, repo.now + DAY);
    user.update(&repo).unwrap();
    let v1_root = repo.old_roots[0].clone();
    repo.old_roots.clear();
    repo.root = v1_root;
    repo.seal(2, repo.now + DAY, repo.now + DAY);
    assert_rollback(user.update(&repo), "root");
}

fn clone_key(k: &RootKey) -> RootKey {
    RootKey {
        key: PrivateKey::from_pkcs8_der(&k.key.to_pkcs8_der().unwrap()).unwrap(),
        cert: k.cert.clone(),
    }
}

#[test]
fn a_delegation_cannot_sign_outside_its_paths() {
    let mut repo = Repo::new();
    let mut body = repo.targets.body.clone();
    body.delegations.roles[0].paths = vec!["release/".into()];
    repo.sign_targets(body);
    let mut releases = repo.releases.body.clone();
    releases
        .targets
        .insert("release/2".into(), target_meta(b"release 2"));
    repo.sign_releases(releases);
    repo.seal(1, repo.now + DAY, repo.now + DAY);
    let data = User::new().update(&repo).unwrap();
    // `v1` is signed by the delegation but outside `release/`: not trusted.
    assert!(matches!(data.target("v1"), Err(Error::NoTrustData { .. })));
    assert_eq!(
        data.targets_in("targets/releases")
            .into_iter()
            .map(|t| t.name)
            .collect::<Vec<_>>(),
        ["release/2"]
    );
    assert_eq!(data.target("release/2").unwrap().role, "targets/releases");
}

#[test]
fn refuses_oversized_files() {
    let repo = Repo::new();
    // A timestamp over notary's 1 MiB cap.
    let mut t = repo.serve();
    let mut big = repo.timestamp.raw().to_vec();
    big.resize(MAX_TIMESTAMP_SIZE as usize + 1, b' ');
    t.insert(GUN, &MetaFile::Latest { role: "timestamp" }, big.clone());
    match User::new().update_at(t, repo.now) {
        Err(Error::TooLarge { role, limit }) => {
            assert_eq!(role, "timestamp");
            assert_eq!(limit, MAX_TIMESTAMP_SIZE);
        }
        other => panic!("expected the timestamp too large, got {other:?}"),
    }

    // A transport that ignores the limit does not get past the updater.
    struct Lax(MemoryTransport);
    impl Transport for Lax {
        fn location(&self) -> &str {
            "lax"
        }
        async fn fetch(
            &self,
            gun: &str,
            file: &MetaFile<'_>,
            _limit: u64,
        ) -> std::result::Result<Vec<u8>, FetchError> {
            self.0.fetch(gun, file, u64::MAX).await
        }
    }
    let mut t = repo.serve();
    t.insert(GUN, &MetaFile::Latest { role: "timestamp" }, big);
    assert!(matches!(
        User::new().update_at(Lax(t), repo.now),
        Err(Error::TooLarge { .. })
    ));
    let mut t = repo.serve();
    let sha = FileMeta::for_bytes(repo.targets.raw()).hashes["sha256"].clone();
    let mut longer = repo.targets.raw().to_vec();
    longer.push(b' ');
    t.insert(
        GUN,
        &MetaFile::Checksum {
            role: "targets",
            sha256: &sha,
        },
        longer,
    );
    match User::new().update_at(Lax(t), repo.now) {
        Err(Error::TooLarge { role, .. }) => assert_eq!(role, "targets"),
        other => panic!("expected targets too large, got {other:?}"),
    }
}
