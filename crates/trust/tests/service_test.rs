//! The trust service against the in-memory store, SQLite and PostgreSQL: publishes built with real
//! keys, replays of the reference server's fixtures, and every rejection path.

mod support;

use std::sync::Arc;

use berth_crypto::{PrivateKey, x509};
use berth_storage::{ChangeCategory, NewTufFile, ServerKeyRole};
use berth_trust::{Error, KeyVault, TrustOptions, TrustService};
use berth_tuf::{
    DelegationRole, Delegations, Envelope, RoleBody, RoleKeys, RoleName, Signed, Snapshot,
    Timestamp,
};
use serde_json::json;
use sha2::Digest as _;
use support::*;

on_both_stores!(
    first_publish_chains_and_serves,
    server_keys_idempotent_and_rotation,
    rejected_updates_change_nothing,
    delegations,
    client_managed_snapshot,
    lazy_resign,
    expired_stored_root_certificate,
    switch_disables_and_wipes,
    fixture_replay,
    changefeed_rules,
    wrong_vault_passphrase,
    first_start_races_agree,
);

async fn first_publish_chains_and_serves(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let now = h.now();
    // Notary's `.key` body: Go struct order, not canonical.
    let ts_json = h.svc.get_key(GUN, "timestamp").await.unwrap();
    assert!(ts_json.starts_with(br#"{"keytype":"ecdsa","keyval":{"public":""#));
    assert!(ts_json.ends_with(br#"","private":null}}"#));
    let p = Publisher::new(
        now,
        h.server_key("timestamp").await,
        h.server_key("snapshot").await,
    );
    let init = p.initial(now);
    h.svc.update(GUN, init.clone(), None).await.unwrap();

    let (ts, snap) = assert_chain(&h.svc, now).await;
    assert_eq!((ts.body.version, snap.body.version), (1, 1));
    let root = h.svc.get_current(GUN, "root").await.unwrap();
    assert_eq!(root.data, init[0].1, "stored verbatim");
    assert_eq!(
        h.svc.get_by_version(GUN, "root", 1).await.unwrap().data,
        init[0].1
    );
    let sha = hex::encode(sha2::Sha256::digest(&init[1].1));
    assert_eq!(
        h.svc
            .get_by_checksum(GUN, "targets", &sha)
            .await
            .unwrap()
            .data,
        init[1].1
    );
    assert_eq!(
        h.svc
            .get_by_checksum(GUN, "targets", &sha.to_uppercase())
            .await
            .unwrap()
            .data,
        init[1].1
    );
    for r in [
        h.svc.get_by_version(GUN, "root", 2).await,
        h.svc.get_by_version(GUN, "root", 0).await,
        h.svc.get_current(GUN, "targets/nothing").await,
        h.svc.get_current(GUN, "bogus").await,
        h.svc.get_current("localhost:5000/other", "root").await,
        h.svc.get_current("localhost:5000/other", "timestamp").await,
    ] {
        assert!(matches!(r, Err(Error::NotFound)), "{r:?}");
    }

    // A second publish: targets v2 only; the server signs snapshot v2 and timestamp v2.
    let t2 = p.targets(2, now, &["v1", "v2"]);
    h.svc
        .update(GUN, parts(&[("targets.json", &t2)]), None)
        .await
        .unwrap();
    let (ts, snap) = assert_chain(&h.svc, now).await;
    assert_eq!((ts.body.version, snap.body.version), (2, 2));
    assert_eq!(h.svc.get_current(GUN, "targets").await.unwrap().data, t2);

    let feed: serde_json::Value =
        serde_json::from_slice(&h.svc.changefeed(Some(GUN), None, Some("0")).await.unwrap())
            .unwrap();
    assert_eq!(feed["count"], 2);
    let ts_file = h.svc.get_current(GUN, "timestamp").await.unwrap();
    assert_eq!(feed["records"][1]["SHA256"], ts_file.sha256.as_str());
    assert_eq!(feed["records"][1]["Version"], 2);
    assert_eq!(feed["records"][1]["GUN"], GUN);
    assert_eq!(feed["records"][1]["Category"], "update");
    assert!(feed["records"][1]["ID"].is_string());
}

async fn server_keys_idempotent_and_rotation(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let now = h.now();
    // No root yet: the same key on every call (Notary makes a new one each time).
    let a = h.svc.get_key(GUN, "timestamp").await.unwrap();
    assert_eq!(h.svc.get_key(GUN, "timestamp").await.unwrap(), a);
    let s = h.svc.get_key(GUN, "snapshot").await.unwrap();
    assert_ne!(a, s);
    assert!(matches!(
        h.svc.get_key(GUN, "targets").await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        h.svc.rotate_key(GUN, "root").await,
        Err(Error::NotFound)
    ));
    // Keys are per GUN.
    assert_ne!(
        h.svc
            .get_key("localhost:5000/other", "timestamp")
            .await
            .unwrap(),
        a
    );

    let p = Publisher::new(now, parse_key(&a), parse_key(&s));
    h.svc.update(GUN, p.initial(now), None).await.unwrap();
    // Rotation: a new pending key; GET still answers the key the root lists.
    let pending = h.svc.rotate_key(GUN, "timestamp").await.unwrap();
    assert_ne!(pending, a);
    assert_eq!(h.svc.get_key(GUN, "timestamp").await.unwrap(), a);
    // The client publishes a root listing the new key; the server signs with it from then on.
    let p2 = Publisher {
        timestamp: parse_key(&pending),
        ..p
    };
    let r2 = p2.sign_root(p2.root(2, now));
    h.svc
        .update(GUN, parts(&[("root", &r2)]), None)
        .await
        .unwrap();
    let (ts, snap) = assert_chain(&h.svc, now).await;
    assert_eq!(ts.envelope.signatures()[0].keyid, p2.timestamp.key_id());
    assert_eq!(snap.body.version, 2, "root change re-signs the snapshot");
    assert_eq!(h.svc.get_key(GUN, "timestamp").await.unwrap(), pending);

    // ed25519 when configured.
    let vault = KeyVault::open(h.store.as_ref(), PASSPHRASE).await.unwrap();
    let svc = TrustService::new(
        h.store.clone(),
        h.store.clone(),
        vault,
        TrustOptions {
            key_algorithm: "ed25519".parse().unwrap(),
            ..TrustOptions::default()
        },
    );
    let k = svc
        .rotate_key("localhost:5000/ed", "snapshot")
        .await
        .unwrap();
    assert!(k.starts_with(br#"{"keytype":"ed25519","#));
}

/// Asserts `r` is an `INVALID_UPDATE` with this serializable detail name, and returns its
/// message.
fn invalid(r: Result<(), Error>, name: &str) -> String {
    let e = r.unwrap_err();
    assert_eq!(e.code(), "INVALID_UPDATE", "{e:?}");
    assert_eq!(e.status(), 400);
    let d = e.detail().unwrap_or_else(|| panic!("no detail for {e:?}"));
    assert_eq!(d["Name"], name, "{d}");
    d["Error"]["Msg"].as_str().unwrap().to_owned()
}

async fn rejected_updates_change_nothing(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let now = h.now();
    let p = Publisher::new(
        now,
        h.server_key("timestamp").await,
        h.server_key("snapshot").await,
    );

    // Nothing stored and no root.
    let t1 = p.targets(1, now, &["v1"]);
    let m = invalid(
        h.svc.update(GUN, parts(&[("targets", &t1)]), None).await,
        "ErrValidation",
    );
    assert_eq!(m, "no pre-existing root and no root provided in update.");
    // First publish without targets: the server cannot build the first snapshot.
    let r1 = p.sign_root(p.root(1, now));
    invalid(
        h.svc.update(GUN, parts(&[("root", &r1)]), None).await,
        "ErrBadHierarchy",
    );
    // A root for another GUN.
    let other = Publisher {
        root_key: p.root_key.clone_for_test(),
        root_pub: x509::root_public_key(&p.root_key, "localhost:5000/other", now).unwrap(),
        ..Publisher::new(now, p.timestamp.clone(), p.snapshot.clone())
    };
    let r_other = other.sign_root(other.root(1, now));
    invalid(
        h.svc
            .update(GUN, parts(&[("root", &r_other), ("targets", &t1)]), None)
            .await,
        "ErrBadRoot",
    );
    assert!(h.state().await.0.is_empty() && h.state().await.1.is_empty());

    h.svc.update(GUN, p.initial(now), None).await.unwrap();
    let before = h.state().await;

    // Tampered signature.
    let t2 = p.targets(2, now, &["v2"]);
    let env = Envelope::parse(&t2).unwrap();
    let mut sigs = env.signatures().to_vec();
    sigs[0].sig[3] ^= 1;
    let tampered = Envelope::assemble(env.signed().clone(), sigs)
        .unwrap()
        .into_raw();
    invalid(
        h.svc
            .update(GUN, parts(&[("targets", &tampered)]), None)
            .await,
        "ErrBadTargets",
    );
    // Signed by a key the root does not list for targets.
    let stranger = PrivateKey::generate_ecdsa().unwrap();
    let wrong = sign(p.targets_body(2, now, &["v2"]), &stranger);
    invalid(
        h.svc.update(GUN, parts(&[("targets", &wrong)]), None).await,
        "ErrBadTargets",
    );
    // Below threshold: a root requiring two targets signatures, then targets with one.
    let mut r2 = p.root(2, now);
    let second = PrivateKey::generate_ecdsa().unwrap();
    r2.keys.insert(second.key_id(), second.public_key().clone());
    r2.roles
        .get_mut("targets")
        .unwrap()
        .keyids
        .push(second.key_id());
    r2.roles.get_mut("targets").unwrap().threshold = 2;
    let r2 = p.sign_root(r2);
    let m = invalid(
        h.svc
            .update(GUN, parts(&[("root", &r2), ("targets", &t2)]), None)
            .await,
        "ErrBadTargets",
    );
    assert!(m.contains("threshold"), "{m}");
    // Root rotation to a new root key without the old key's signature.
    let new_root_key = PrivateKey::generate_ecdsa().unwrap();
    let rotated = Publisher {
        root_key: new_root_key.clone_for_test(),
        root_pub: x509::root_public_key(&new_root_key, GUN, now).unwrap(),
        ..Publisher::new(now, p.timestamp.clone(), p.snapshot.clone())
    };
    let mut body = rotated.root(2, now);
    body.keys
        .insert(p.targets_key.key_id(), p.targets_key.public_key().clone());
    body.roles.get_mut("targets").unwrap().keyids = vec![p.targets_key.key_id()];
    let only_new = rotated.sign_root(body);
    let m = invalid(
        h.svc.update(GUN, parts(&[("root", &only_new)]), None).await,
        "ErrBadRoot",
    );
    assert!(
        m.starts_with("could not rotate trust to a new trusted root"),
        "{m}"
    );
    // Root version jump.
    let r3 = p.sign_root(p.root(3, now));
    let m = invalid(
        h.svc.update(GUN, parts(&[("root", &r3)]), None).await,
        "ErrBadRoot",
    );
    assert_eq!(
        m,
        "Root modifications must increment the version. Current 1, new 3"
    );
    // A delegation targets never declared.
    let deleg = sign(p.targets_body(1, now, &["x"]), &p.targets_key);
    let m = invalid(
        h.svc
            .update(GUN, parts(&[("targets/releases", &deleg)]), None)
            .await,
        "ErrBadTargets",
    );
    assert!(m.contains("not delegated"), "{m}");
    // Version rollback and replay: same version, lower version.
    let t1_again = p.targets(1, now, &["other"]);
    let e = h
        .svc
        .update(GUN, parts(&[("targets", &t1_again)]), None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Version { ref role, stored: 1, new: 1 } if role == "targets"),
        "{e:?}"
    );
    assert_eq!(
        (e.code(), e.status(), e.detail()),
        ("VERSION", 400, Some(json!({})))
    );
    let r1_again = p.sign_root(p.root(1, now));
    assert!(matches!(
        h.svc.update(GUN, parts(&[("root", &r1_again)]), None).await,
        Err(Error::Version { .. })
    ));
    // Request-shape errors.
    let e = h
        .svc
        .update(GUN, parts(&[("targets", b"not json")]), None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.status(), e.detail()),
        ("MALFORMED_JSON", 400, None)
    );
    let e = h
        .svc
        .update(GUN, parts(&[("bogus", &t2)]), None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.detail()),
        ("INVALID_ROLE", Some(json!("bogus")))
    );
    assert_eq!(
        e.message(),
        "The role you are attempting to operate on is invalid."
    );
    let e = h
        .svc
        .update(GUN, parts(&[("", &t2)]), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "NO_FILENAME");
    // A client timestamp is ignored, not stored.
    let fake_ts = sign(
        berth_tuf::validate::next_timestamp(None, b"x", now),
        &stranger,
    );
    let e = h
        .svc
        .update(
            GUN,
            parts(&[("timestamp", &fake_ts), ("targets", &t1_again)]),
            None,
        )
        .await;
    assert!(matches!(e, Err(Error::Version { .. })));

    assert_eq!(h.state().await, before, "rejected updates must not write");
    // And a good update still goes through afterwards.
    h.svc
        .update(
            GUN,
            parts(&[("timestamp", &fake_ts), ("targets", &t2)]),
            None,
        )
        .await
        .unwrap();
    let (ts, _) = assert_chain(&h.svc, now).await;
    assert_eq!(ts.envelope.signatures()[0].keyid, p.timestamp.key_id());
}

trait CloneForTest {
    fn clone_for_test(&self) -> PrivateKey;
}

impl CloneForTest for PrivateKey {
    fn clone_for_test(&self) -> PrivateKey {
        PrivateKey::from_pkcs8_der(&self.to_pkcs8_der().unwrap()).unwrap()
    }
}

async fn delegations(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let now = h.now();
    let p = Publisher::new(
        now,
        h.server_key("timestamp").await,
        h.server_key("snapshot").await,
    );
    h.svc.update(GUN, p.initial(now), None).await.unwrap();
    let rel_key = PrivateKey::generate_ecdsa().unwrap();
    let mut t2 = p.targets_body(2, now, &["v1"]);
    t2.delegations = Delegations {
        keys: [(rel_key.key_id(), rel_key.public_key().clone())]
            .into_iter()
            .collect(),
        roles: vec![DelegationRole {
            name: "targets/releases".into(),
            keys: RoleKeys {
                keyids: vec![rel_key.key_id()],
                threshold: 1,
            },
            paths: vec![String::new()],
        }],
    };
    let t2 = sign(t2, &p.targets_key);
    let rel1 = sign(p.targets_body(1, now, &["r1"]), &rel_key);
    h.svc
        .update(
            GUN,
            parts(&[("targets", &t2), ("targets/releases", &rel1)]),
            None,
        )
        .await
        .unwrap();
    // Later the delegate publishes alone: its parent comes from the store.
    let rel2 = sign(p.targets_body(2, now, &["r1", "r2"]), &rel_key);
    h.svc
        .update(GUN, parts(&[("targets/releases.json", &rel2)]), None)
        .await
        .unwrap();
    let (_, snap) = assert_chain(&h.svc, now).await;
    assert!(snap.body.meta["targets/releases"].check(&rel2).is_ok());
    assert_eq!(
        h.svc
            .get_by_version(GUN, "targets/releases", 1)
            .await
            .unwrap()
            .data,
        rel1
    );
    // Signed by the targets key instead of the delegation's key.
    let wrong = sign(p.targets_body(3, now, &["r3"]), &p.targets_key);
    invalid(
        h.svc
            .update(GUN, parts(&[("targets/releases", &wrong)]), None)
            .await,
        "ErrBadTargets",
    );
    // A nested delegation nobody declared.
    let qa = sign(p.targets_body(1, now, &["qa"]), &rel_key);
    invalid(
        h.svc
            .update(GUN, parts(&[("targets/releases/qa", &qa)]), None)
            .await,
        "ErrBadTargets",
    );
}

async fn client_managed_snapshot(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let now = h.now();
    let snap_key = PrivateKey::generate_ecdsa().unwrap();
    let p = Publisher::new(
        now,
        h.server_key("timestamp").await,
        snap_key.public_key().clone(),
    );
    let root = p.sign_root(p.root(1, now));
    let targets = p.targets(1, now, &["v1"]);
    // No snapshot uploaded, and the server does not hold the one the root lists.
    let e = h
        .svc
        .update(GUN, parts(&[("root", &root), ("targets", &targets)]), None)
        .await
        .unwrap_err();
    assert_eq!(
        e.detail(),
        Some(
            json!({"Name":"ErrBadHierarchy","Error":{"Missing":"snapshot","Msg":"no snapshot was included in update and server does not hold current snapshot key for repository"}})
        )
    );
    // A snapshot whose meta does not match the uploaded targets.
    let snap_for = |t: &[u8]| {
        let mut updates = std::collections::BTreeMap::new();
        updates.insert("root".to_owned(), berth_tuf::FileMeta::for_bytes(&root));
        updates.insert("targets".to_owned(), berth_tuf::FileMeta::for_bytes(t));
        sign(
            berth_tuf::validate::next_snapshot(None, &updates, now),
            &snap_key,
        )
    };
    let bad = snap_for(b"other bytes");
    invalid(
        h.svc
            .update(
                GUN,
                parts(&[("root", &root), ("targets", &targets), ("snapshot", &bad)]),
                None,
            )
            .await,
        "ErrBadSnapshot",
    );
    let good = snap_for(&targets);
    h.svc
        .update(
            GUN,
            parts(&[("root", &root), ("targets", &targets), ("snapshot", &good)]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(h.svc.get_current(GUN, "snapshot").await.unwrap().data, good);
    assert_chain(&h.svc, now).await;

    // A root whose timestamp key the server never issued.
    let h2 = Harness::new(Arc::new(berth_storage::memory::MemoryStore::new())).await;
    let foreign = PrivateKey::generate_ecdsa().unwrap();
    let p2 = Publisher::new(
        now,
        foreign.public_key().clone(),
        h2.server_key("snapshot").await,
    );
    let m = invalid(
        h2.svc.update(GUN, p2.initial(now), None).await,
        "ErrBadRoot",
    );
    assert_eq!(m, "no  timestamp keys exist on the server");
}

async fn lazy_resign(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let now = h.now();
    let p = Publisher::new(
        now,
        h.server_key("timestamp").await,
        h.server_key("snapshot").await,
    );
    h.svc.update(GUN, p.initial(now), None).await.unwrap();
    let first_ts = h.svc.get_current(GUN, "timestamp").await.unwrap();
    let first_snap = h.svc.get_current(GUN, "snapshot").await.unwrap();

    // 15 days on: the timestamp expired; a GET re-signs, stores and logs it in the changefeed.
    h.advance(15 * DAY);
    let ts = h.svc.get_current(GUN, "timestamp").await.unwrap();
    assert_eq!(ts.version, 2);
    assert_eq!(
        h.svc.get_current(GUN, "timestamp").await.unwrap(),
        ts,
        "re-signed once"
    );
    assert_eq!(
        h.svc.get_current(GUN, "snapshot").await.unwrap().data,
        first_snap.data
    );
    assert_chain(&h.svc, h.now()).await;
    assert_eq!(
        h.store.changefeed(Some(GUN), 0, 100).await.unwrap().len(),
        2
    );
    assert_eq!(
        h.svc
            .get_by_version(GUN, "timestamp", 1)
            .await
            .unwrap()
            .data,
        first_ts.data
    );

    // Four years on: the snapshot expired too; both are re-signed, and `snapshot.json` is the
    // one the new timestamp names.
    h.advance(4 * 365 * DAY);
    let snap = h.svc.get_current(GUN, "snapshot").await.unwrap();
    assert_eq!(snap.version, 2);
    let (ts, s) = assert_chain(&h.svc, h.now()).await;
    assert_eq!((ts.body.version, s.body.version), (3, 2));
    let old = Signed::<Snapshot>::parse(&first_snap.data).unwrap();
    assert_eq!(s.body.meta, old.body.meta, "re-signing keeps the meta");

    // A timestamp written directly whose snapshot hash no longer matches a stored snapshot
    // cannot be served; one that names an older stored snapshot is re-signed to the current.
    let mut body = ts.body.clone();
    body.version = 4;
    body.meta.insert(
        "snapshot".into(),
        berth_tuf::FileMeta::for_bytes(&first_snap.data),
    );
    let stale = Signed::<Timestamp>::sign(body, &[]).unwrap();
    h.store
        .tuf_update(
            GUN,
            vec![NewTufFile {
                role: "timestamp".into(),
                version: 4,
                sha256: hex::encode(sha2::Sha256::digest(stale.raw())),
                data: stale.raw().to_vec().into(),
            }],
            None,
        )
        .await
        .unwrap();
    // It names snapshot v1 (expired): the server re-signs it as v3 and a new timestamp v5.
    let ts = h.svc.get_current(GUN, "timestamp").await.unwrap();
    assert_eq!(ts.version, 5);
    let (_, s) = assert_chain(&h.svc, h.now()).await;
    assert_eq!(s.body.version, 3);
}

async fn expired_stored_root_certificate(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let now = h.now();
    let mut p = Publisher::new(
        now,
        h.server_key("timestamp").await,
        h.server_key("snapshot").await,
    );
    // A root certificate valid for two days only.
    let pem = x509::root_certificate(&p.root_key, GUN, now - DAY, now + 2 * DAY).unwrap();
    p.root_pub =
        berth_crypto::PublicKey::new(berth_crypto::KeyType::EcdsaX509, pem.into_bytes()).unwrap();
    h.svc.update(GUN, p.initial(now), None).await.unwrap();
    h.advance(3 * DAY);
    let later = h.now();
    let t2 = p.targets(2, later, &["v2"]);
    let m = invalid(
        h.svc.update(GUN, parts(&[("targets", &t2)]), None).await,
        "ErrBadRoot",
    );
    assert!(
        m.contains("expired on")
            && m.contains("notary key rotate localhost:5000/berth/demo root")
            && m.contains("berth trust reset berth/demo"),
        "{m}"
    );
    // Reads keep working (the client decides what it trusts).
    assert_chain(&h.svc, later).await;
    // The way out: a root rotation to a fresh certificate, signed by the old and new key.
    let new_key = PrivateKey::generate_ecdsa().unwrap();
    let new_pub = x509::root_public_key(&new_key, GUN, later).unwrap();
    let mut body = p.root(2, later);
    body.keys.remove(&p.root_pub.key_id());
    body.keys.insert(new_pub.key_id(), new_pub.clone());
    body.roles.get_mut("root").unwrap().keyids = vec![new_pub.key_id()];
    let r2 = Signed::sign_as(body, &[(&p.root_key, &p.root_pub), (&new_key, &new_pub)])
        .unwrap()
        .envelope
        .into_raw();
    h.svc
        .update(GUN, parts(&[("root", &r2), ("targets", &t2)]), None)
        .await
        .unwrap();
    assert_chain(&h.svc, later).await;
    let t3 = p.targets(3, later, &["v3"]);
    h.svc
        .update(GUN, parts(&[("targets", &t3)]), None)
        .await
        .unwrap();
}

async fn switch_disables_and_wipes(store: Arc<dyn Store>) {
    let h = Harness::disabled_at(store, std::time::SystemTime::now()).await;
    let now = h.now();
    assert!(!h.svc.enabled().await.unwrap());
    let e = h.svc.get_key(GUN, "timestamp").await.unwrap_err();
    assert_eq!((e.code(), e.status()), ("TRUST_DISABLED", 400));
    let msg = e.detail().unwrap()["Error"]["Msg"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.contains("berth config content-trust update --status enabled"),
        "{msg}"
    );
    assert_eq!(e.detail().unwrap()["Name"], "ErrValidation");
    assert!(matches!(
        h.svc.rotate_key(GUN, "snapshot").await,
        Err(Error::Disabled)
    ));
    assert!(matches!(
        h.svc.update(GUN, vec![], None).await,
        Err(Error::Disabled)
    ));
    let e = h.svc.get_current(GUN, "root").await.unwrap_err();
    assert_eq!((e.code(), e.status()), ("METADATA_NOT_FOUND", 404));
    assert!(matches!(
        h.svc.changefeed(None, None, Some("10")).await,
        Err(Error::NotFound)
    ));
    assert!(!h.svc.delete(GUN).await.unwrap());

    assert_eq!(h.svc.set_enabled(true).await.unwrap(), 0);
    let ts_key = h.svc.get_key(GUN, "timestamp").await.unwrap();
    let p = Publisher::new(now, parse_key(&ts_key), h.server_key("snapshot").await);
    h.svc.update(GUN, p.initial(now), None).await.unwrap();
    let other = "localhost:5000/other";
    h.svc.get_key(other, "timestamp").await.unwrap();

    // Disabling wipes every GUN's data and keys (counting the GUNs that had metadata).
    assert_eq!(h.svc.set_enabled(false).await.unwrap(), 1);
    assert!(
        h.store
            .server_keys(other, ServerKeyRole::Timestamp)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        h.svc.get_current(GUN, "root").await,
        Err(Error::NotFound)
    ));
    h.svc.set_enabled(true).await.unwrap();
    assert!(matches!(
        h.svc.get_current(GUN, "root").await,
        Err(Error::NotFound)
    ));
    assert!(
        h.store
            .server_keys(GUN, ServerKeyRole::Timestamp)
            .await
            .unwrap()
            .is_empty()
    );
    assert_ne!(h.svc.get_key(GUN, "timestamp").await.unwrap(), ts_key);

    // `delete` (trust reset) of one GUN: data and keys gone, a fresh TOFU is accepted.
    let p = Publisher::new(
        now,
        h.server_key("timestamp").await,
        h.server_key("snapshot").await,
    );
    h.svc.update(GUN, p.initial(now), None).await.unwrap();
    assert!(h.svc.delete(GUN).await.unwrap());
    assert!(matches!(
        h.svc.get_current(GUN, "timestamp").await,
        Err(Error::NotFound)
    ));
    let p = Publisher::new(
        now,
        h.server_key("timestamp").await,
        h.server_key("snapshot").await,
    );
    h.svc.update(GUN, p.initial(now), None).await.unwrap();
    let feed = h.store.changefeed(Some(GUN), 0, 100).await.unwrap();
    assert!(
        feed.iter().any(|c| c.category == ChangeCategory::Deletion
            && c.version == 0
            && c.sha256.is_empty())
    );
}

/// The reference server's stored state, replayed into our store, served back; updates on top
/// of it validate but cannot be signed, since its timestamp key is not ours.
async fn fixture_replay(store: Arc<dyn Store>) {
    let fx = fixtures();
    let mut by_role: std::collections::BTreeMap<&RoleName, Vec<(i64, &Vec<u8>)>> =
        Default::default();
    for ((role, v), b) in &fx {
        by_role.entry(role).or_default().push((*v, b));
    }
    for (role, mut files) in by_role {
        files.sort_by_key(|(v, _)| *v);
        for (v, b) in files {
            store
                .tuf_update(
                    GUN,
                    vec![NewTufFile {
                        role: role.to_string(),
                        version: v,
                        sha256: hex::encode(sha2::Sha256::digest(b)),
                        data: b.clone().into(),
                    }],
                    None,
                )
                .await
                .unwrap();
        }
    }
    let last_ts = fx
        .iter()
        .filter(|((r, _), _)| *r == RoleName::Timestamp)
        .max_by_key(|((_, v), _)| *v)
        .unwrap();
    let ts = Signed::<Timestamp>::parse(last_ts.1).unwrap();
    let at = ts.body.expires_at().unwrap() - DAY;
    let h = Harness::at(store, at).await;
    assert_eq!(
        h.svc.get_current(GUN, "timestamp").await.unwrap().data,
        *last_ts.1
    );
    let snap = h.svc.get_current(GUN, "snapshot").await.unwrap();
    ts.body.snapshot_meta().unwrap().check(&snap.data).unwrap();
    for v in 1..=4 {
        assert_eq!(
            h.svc.get_by_version(GUN, "root", v).await.unwrap().data,
            fx[&(RoleName::Root, v)]
        );
    }
    let qa = RoleName::parse("targets/releases/qa").unwrap();
    assert_eq!(
        h.svc
            .get_current(GUN, "targets/releases/qa")
            .await
            .unwrap()
            .data,
        fx[&(qa, 1)]
    );

    let before = h.state().await;
    // Hostile variants are rejected in validation.
    let e = h
        .svc
        .update(
            GUN,
            parts(&[("targets", &hostile("targets-wrong-key.json"))]),
            None,
        )
        .await;
    invalid(e, "ErrBadTargets");
    let e = h
        .svc
        .update(
            GUN,
            parts(&[("root", &hostile("root-tampered-signature.json"))]),
            None,
        )
        .await;
    invalid(e, "ErrBadRoot");
    // A real delegation file re-uploaded: it validates, but the snapshot is server-managed by
    // the reference server's key, which we do not hold: Notary's answer, nothing written.
    let rel = RoleName::parse("targets/releases").unwrap();
    let last_rel = fx
        .iter()
        .filter(|((r, _), _)| *r == rel)
        .max_by_key(|((_, v), _)| *v)
        .unwrap();
    let e = h
        .svc
        .update(GUN, parts(&[("targets/releases", last_rel.1)]), None)
        .await;
    invalid(e, "ErrBadHierarchy");
    assert_eq!(h.state().await, before);

    // Far in the future the timestamp is expired, but we hold no key: served as stored.
    h.advance(30 * DAY);
    assert_eq!(
        h.svc.get_current(GUN, "timestamp").await.unwrap().data,
        *last_ts.1
    );
    assert_eq!(h.state().await, before);
}

async fn changefeed_rules(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let now = h.now();
    let p = Publisher::new(
        now,
        h.server_key("timestamp").await,
        h.server_key("snapshot").await,
    );
    h.svc.update(GUN, p.initial(now), None).await.unwrap();
    for v in 2..=4 {
        let t = p.targets(v, now, &["x"]);
        h.svc
            .update(GUN, parts(&[("targets", &t)]), None)
            .await
            .unwrap();
    }
    let ids = |b: bytes::Bytes| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["ID"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = ids(h.svc.changefeed(None, None, Some("0")).await.unwrap());
    assert_eq!(all.len(), 4);
    assert_eq!(
        ids(h
            .svc
            .changefeed(Some(GUN), Some(&all[1]), Some("1"))
            .await
            .unwrap()),
        [all[2].clone()]
    );
    assert_eq!(
        ids(h.svc.changefeed(Some(GUN), None, Some("-2")).await.unwrap()),
        all[2..]
    );
    assert_eq!(
        ids(h.svc.changefeed(None, Some("-1"), Some("2")).await.unwrap()),
        all[2..]
    );
    assert_eq!(
        ids(h
            .svc
            .changefeed(None, Some(&all[2]), Some("-5"))
            .await
            .unwrap()),
        all[..2]
    );
    assert!(
        ids(h
            .svc
            .changefeed(Some("localhost:5000/none"), None, Some("5"))
            .await
            .unwrap())
        .is_empty()
    );
    let e = h.svc.changefeed(None, None, None).await.unwrap_err();
    assert_eq!((e.code(), e.status()), ("INVALID_PARAMETERS", 400));
    assert_eq!(
        e.detail(),
        Some(json!(
            "invalid records parameter: strconv.ParseInt: parsing \"\": invalid syntax"
        ))
    );
    let e = h
        .svc
        .changefeed(None, Some("abc"), Some("1"))
        .await
        .unwrap_err();
    assert_eq!(e.detail(), Some(json!({})));
}

async fn wrong_vault_passphrase(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let now = h.now();
    let p = Publisher::new(
        now,
        h.server_key("timestamp").await,
        h.server_key("snapshot").await,
    );
    h.svc.update(GUN, p.initial(now), None).await.unwrap();
    // The check value catches a wrong passphrase at startup.
    let e = KeyVault::open(h.store.as_ref(), b"not the passphrase")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::VaultPassphrase));
    // Sealed keys: not the key in clear, and bound to their record.
    let rec = &h
        .store
        .server_keys(GUN, ServerKeyRole::Timestamp)
        .await
        .unwrap()[0];
    assert!(rec.sealed_private.starts_with(b"BKV1"));
    let vault = KeyVault::open(h.store.as_ref(), PASSPHRASE).await.unwrap();
    let aad = format!("berth-trust-key\0{GUN}\0timestamp\0{}", rec.key_id);
    let der = vault.unseal(&rec.sealed_private, aad.as_bytes()).unwrap();
    assert_eq!(
        PrivateKey::from_pkcs8_der(&der).unwrap().key_id(),
        rec.key_id
    );
    assert!(
        !rec.sealed_private
            .windows(der.len())
            .any(|w| w == der.as_slice())
    );
    assert!(
        vault
            .unseal(&rec.sealed_private, b"berth-trust-key\0other\0timestamp\0x")
            .is_err()
    );
    // A vault with another salt/passphrase cannot sign: the update fails, nothing is written.
    let salt = KeyVault::generate_salt().unwrap();
    let other = KeyVault::from_passphrase(b"another passphrase", &salt).unwrap();
    let svc = TrustService::new(
        h.store.clone(),
        h.store.clone(),
        other,
        TrustOptions::default(),
    );
    let before = h.state().await;
    let t2 = p.targets(2, now, &["v2"]);
    let e = svc
        .update(GUN, parts(&[("targets", &t2)]), None)
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.status(), e.detail()), ("UNKNOWN", 500, None));
    assert_eq!(h.state().await, before);
}

/// Servers starting at once on an empty store (nodes of a cluster) derive one vault key, and
/// servers asked for a GUN's first server key at once hand out the same key.
async fn first_start_races_agree(store: Arc<dyn Store>) {
    let opens =
        futures::future::join_all((0..4).map(|_| KeyVault::open(store.as_ref(), PASSPHRASE))).await;
    let vaults: Vec<KeyVault> = opens.into_iter().map(|v| v.unwrap()).collect();
    let sealed = vaults[0].seal(b"secret", b"aad").unwrap();
    for v in &vaults[1..] {
        assert_eq!(v.unseal(&sealed, b"aad").unwrap().as_slice(), b"secret");
    }
    // Separate service instances over one store, as separate nodes are.
    let services: Vec<TrustService> = vaults
        .into_iter()
        .map(|v| TrustService::new(store.clone(), store.clone(), v, TrustOptions::default()))
        .collect();
    services[0].set_enabled(true).await.unwrap();
    let keys =
        futures::future::join_all(services.iter().map(|s| s.get_key(GUN, "timestamp"))).await;
    let first = keys[0].as_ref().unwrap().clone();
    for k in &keys {
        assert_eq!(
            k.as_ref().unwrap(),
            &first,
            "every node hands out the same first key"
        );
    }
    assert_eq!(
        store
            .server_keys(GUN, ServerKeyRole::Timestamp)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// The same first start as [`first_start_races_agree`], with each node on its own PostgreSQL
/// connection pool over one database, as separate processes are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_races_agree_across_postgres_nodes() {
    let db = berth_storage_postgres::testing::fresh_database().await;
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..4 {
        stores.push(Arc::new(
            berth_storage_postgres::PgStore::connect(&db.url)
                .await
                .unwrap(),
        ));
    }
    let opens = futures::future::join_all(
        stores
            .iter()
            .map(|s| KeyVault::open(s.as_ref(), PASSPHRASE)),
    )
    .await;
    let vaults: Vec<KeyVault> = opens.into_iter().map(|v| v.unwrap()).collect();
    let sealed = vaults[0].seal(b"secret", b"aad").unwrap();
    for v in &vaults[1..] {
        assert_eq!(v.unseal(&sealed, b"aad").unwrap().as_slice(), b"secret");
    }
    let services: Vec<TrustService> = vaults
        .into_iter()
        .zip(&stores)
        .map(|(v, s)| TrustService::new(s.clone(), s.clone(), v, TrustOptions::default()))
        .collect();
    services[0].set_enabled(true).await.unwrap();
    let keys =
        futures::future::join_all(services.iter().map(|s| s.get_key(GUN, "timestamp"))).await;
    let first = keys[0].as_ref().unwrap().clone();
    for k in &keys {
        assert_eq!(
            k.as_ref().unwrap(),
            &first,
            "every node hands out the same first key"
        );
    }
    assert_eq!(
        stores[3]
            .server_keys(GUN, ServerKeyRole::Timestamp)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Four nodes (each its own pool over one PostgreSQL database) publishing the next targets
/// version of one GUN at once, round after round: one wins each round, the others are told
/// `VERSION`, and every node then serves the winner's chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_across_postgres_nodes_keep_one_history() {
    let db = berth_storage_postgres::testing::fresh_database().await;
    let now = std::time::SystemTime::now();
    let mut nodes = Vec::new();
    for _ in 0..4 {
        let store: Arc<dyn Store> = Arc::new(
            berth_storage_postgres::PgStore::connect(&db.url)
                .await
                .unwrap(),
        );
        nodes.push(Harness::at(store, now).await);
    }
    let p = Publisher::new(
        now,
        nodes[1].server_key("timestamp").await,
        nodes[2].server_key("snapshot").await,
    );
    nodes[0]
        .svc
        .update(GUN, p.initial(now), None)
        .await
        .unwrap();
    for v in 2..=5 {
        let bodies: Vec<Vec<u8>> = (0..nodes.len())
            .map(|i| p.targets(v, now, &[format!("node{i}-v{v}").as_str()]))
            .collect();
        let results = futures::future::join_all(
            nodes
                .iter()
                .zip(&bodies)
                .map(|(n, b)| n.svc.update(GUN, parts(&[("targets", b)]), None)),
        )
        .await;
        let winners: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
        assert_eq!(
            winners.len(),
            1,
            "version {v}: one publish wins: {results:?}"
        );
        for r in results.iter().filter(|r| r.is_err()) {
            assert!(
                matches!(r, Err(Error::Version { .. })),
                "version {v}: {r:?}"
            );
        }
        for n in &nodes {
            let (ts, snap) = assert_chain(&n.svc, now).await;
            assert_eq!((ts.body.version, snap.body.version), (v, v));
            assert_eq!(
                n.svc.get_current(GUN, "targets").await.unwrap().data,
                bodies[winners[0]],
                "version {v}: every node serves the winner's targets"
            );
        }
    }
}

/// Two services over one store, as two nodes: what one publishes the other serves at once (its
/// memo is found by the timestamp's hash, which the store gives); a server key rotated through
/// one is used by the other; a GUN deleted through one is not signed for by the other with keys
/// it still held.
async fn nodes_agree_on_publishes_key_rotation_and_deletion(
    store_a: Arc<dyn Store>,
    store_b: Arc<dyn Store>,
) {
    let now = std::time::SystemTime::now();
    let a = Harness::at(store_a, now).await;
    let b = Harness::at(store_b, now).await;
    let mut p = Publisher::new(
        now,
        a.server_key("timestamp").await,
        b.server_key("snapshot").await,
    );
    a.svc.update(GUN, p.initial(now), None).await.unwrap();
    let (ts, _) = assert_chain(&b.svc, now).await;
    assert_eq!(ts.body.version, 1);

    // Published through A: B serves it at once, though it served (and memoised) v1.
    a.svc
        .update(
            GUN,
            parts(&[("targets", &p.targets(2, now, &["v2"]))]),
            None,
        )
        .await
        .unwrap();
    let (ts, snap) = assert_chain(&b.svc, now).await;
    assert_eq!((ts.body.version, snap.body.version), (2, 2));
    // B signs once through its own publish, so it holds the current timestamp key.
    b.svc
        .update(
            GUN,
            parts(&[("targets", &p.targets(3, now, &["v3"]))]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(assert_chain(&a.svc, now).await.0.body.version, 3);

    // A new timestamp key made through A, listed by a new root published through B: B signs
    // with it, and the chain verifies against that root on both nodes.
    let rotated = parse_key(&a.svc.rotate_key(GUN, "timestamp").await.unwrap());
    p.timestamp = rotated.clone();
    b.svc
        .update(GUN, parts(&[("root", &p.sign_root(p.root(2, now)))]), None)
        .await
        .unwrap();
    for n in [&a, &b] {
        let (ts, _) = assert_chain(&n.svc, now).await;
        assert_eq!(ts.envelope.signatures().len(), 1);
        assert_eq!(ts.envelope.signatures()[0].keyid, rotated.key_id());
    }

    // Deleted through A (its keys go too): B, asked to start the GUN again with a root listing
    // the deleted key, refuses as A does instead of signing with the key it still held.
    assert!(a.svc.delete(GUN).await.unwrap());
    for n in [&b, &a] {
        let m = invalid(
            n.svc.update(GUN, p.initial(now), None).await,
            "ErrBadHierarchy",
        );
        assert!(
            m.contains("server does not hold current snapshot key"),
            "{m}"
        );
    }
    assert!(b.store.tuf_current_all(GUN).await.unwrap().is_empty());
}

#[tokio::test]
async fn two_nodes_over_one_memory_store_agree() {
    let store: Arc<dyn Store> = Arc::new(berth_storage::memory::MemoryStore::new());
    nodes_agree_on_publishes_key_rotation_and_deletion(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_nodes_agree() {
    let db = berth_storage_postgres::testing::fresh_database().await;
    let a: Arc<dyn Store> = Arc::new(
        berth_storage_postgres::PgStore::connect(&db.url)
            .await
            .unwrap(),
    );
    let b: Arc<dyn Store> = Arc::new(
        berth_storage_postgres::PgStore::connect(&db.url)
            .await
            .unwrap(),
    );
    nodes_agree_on_publishes_key_rotation_and_deletion(a, b).await;
}

/// Publishes through two services ("nodes") over one store, each writing its audit record with
/// the update: the detail says what changed against what was current in the store, even when
/// the other node wrote it (so metadata a node keeps parsed is never used for bytes it was not
/// parsed from), and a refused update audits nothing.
async fn audited_publishes_across_nodes<S>(a: Arc<S>, b: Arc<S>)
where
    S: support::Store + berth_storage::IdentityStore,
{
    let now = std::time::SystemTime::now();
    let ha = Harness::at(a.clone(), now).await;
    let hb = Harness::at(b.clone(), now).await;
    let p = Publisher::new(
        now,
        ha.server_key("timestamp").await,
        ha.server_key("snapshot").await,
    );
    let rec = |actor: &str| berth_storage::AuditRecord {
        id: 0,
        at: 1_700_000_000_042,
        actor: actor.into(),
        action: "trust.updated".into(),
        target: GUN.into(),
        client: "192.0.2.1".into(),
        detail: "replaced by the service".into(),
    };
    let tag = |name: &str| {
        let h = hex::encode(sha2::Sha256::digest(name.as_bytes()));
        format!("{name}@sha256:{}", &h[..12])
    };
    let details = || async {
        a.audit_list(0, usize::MAX)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.actor, e.detail))
            .collect::<Vec<_>>()
    };

    ha.svc
        .update(GUN, p.initial(now), Some(rec("alice")))
        .await
        .unwrap();
    let t2 = p.targets(2, now, &["v1", "v2"]);
    hb.svc
        .update(GUN, parts(&[("targets", &t2)]), Some(rec("bob")))
        .await
        .unwrap();
    // Node a last saw targets v1 (and the snapshot and timestamp it signed then).
    let t3 = p.targets(3, now, &["v2", "v3"]);
    ha.svc
        .update(GUN, parts(&[("targets.json", &t3)]), Some(rec("alice")))
        .await
        .unwrap();
    assert_eq!(
        details().await,
        vec![
            (
                "alice".to_owned(),
                format!("root -->v1; targets -->v1 [+{}]", tag("v1"))
            ),
            ("bob".to_owned(), format!("targets v1->v2 [+{}]", tag("v2"))),
            (
                "alice".to_owned(),
                format!("targets v2->v3 [+{} -v1]", tag("v3"))
            ),
        ]
    );
    let e = hb
        .svc
        .update(
            GUN,
            parts(&[("targets", &p.targets(3, now, &["other"]))]),
            Some(rec("bob")),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Version { .. }), "{e:?}");
    assert_eq!(details().await.len(), 3, "a refused update audits nothing");
    // Without a record nothing is audited; the chain stays whole on both nodes.
    hb.svc
        .update(
            GUN,
            parts(&[("targets", &p.targets(4, now, &["v4"]))]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(details().await.len(), 3);
    let (ts, snap) = assert_chain(&ha.svc, now).await;
    assert_eq!((ts.body.version, snap.body.version), (4, 4));
}

#[tokio::test]
async fn audited_publishes_across_nodes_mem() {
    let s = Arc::new(berth_storage::memory::MemoryStore::new());
    audited_publishes_across_nodes(s.clone(), s).await;
}

#[tokio::test]
async fn audited_publishes_across_nodes_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(
        berth_storage_embedded::SqliteMetadataStore::open(dir.path().join("metadata.db")).unwrap(),
    );
    audited_publishes_across_nodes(s.clone(), s).await;
}

#[tokio::test]
async fn audited_publishes_across_nodes_postgres() {
    let db = berth_storage_postgres::testing::fresh_database().await;
    let a = Arc::new(
        berth_storage_postgres::PgStore::connect(&db.url)
            .await
            .unwrap(),
    );
    let b = Arc::new(
        berth_storage_postgres::PgStore::connect(&db.url)
            .await
            .unwrap(),
    );
    audited_publishes_across_nodes(a, b).await;
}
