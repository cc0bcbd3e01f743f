//! `TrustService::view`: docker's tag resolution (targets/releases before targets), signer
//! names, expiries evaluated at each call, and the memo, on publishes built here and on the
//! reference server's fixtures.

mod support;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_crypto::PrivateKey;
use berth_storage::NewTufFile;
use berth_trust::view::{RELEASES, REPO_ADMIN};
use berth_tuf::{
    DelegationRole, Delegations, FileMeta, RoleBody, RoleKeys, RoleName, Signed, Timestamp,
};
use sha2::Digest as _;
use support::*;

on_both_stores!(releases_before_targets, fixture_view);

fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn meta(content: &str) -> FileMeta {
    FileMeta::for_bytes(content.as_bytes())
}

fn sha(content: &str) -> [u8; 32] {
    sha2::Sha256::digest(content.as_bytes()).into()
}

fn delegation(name: &str, key: &PrivateKey) -> DelegationRole {
    DelegationRole {
        name: name.into(),
        keys: RoleKeys {
            keyids: vec![key.key_id()],
            threshold: 1,
        },
        paths: vec![String::new()],
    }
}

async fn releases_before_targets(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let now = h.now();
    let p = Publisher::new(
        now,
        h.server_key("timestamp").await,
        h.server_key("snapshot").await,
    );
    assert!(h.svc.view(GUN).await.unwrap().is_none(), "no trust data");
    h.svc.update(GUN, p.initial(now), None).await.unwrap();
    let rel_key = PrivateKey::generate_ecdsa().unwrap();
    let alice_key = PrivateKey::generate_ecdsa().unwrap();

    // targets: a -> A, both -> B; releases (expires in 2 days): both -> C, r -> R;
    // alice: a -> A, both -> C.
    let mut t = p.targets_body(2, now, &[]);
    t.targets.insert("a".into(), meta("A"));
    t.targets.insert("both".into(), meta("B"));
    t.delegations = Delegations {
        keys: [&rel_key, &alice_key]
            .iter()
            .map(|k| (k.key_id(), k.public_key().clone()))
            .collect(),
        roles: vec![
            delegation(RELEASES, &rel_key),
            delegation("targets/alice", &alice_key),
        ],
    };
    let t = sign(t, &p.targets_key);
    let mut rel = p.targets_body(1, now, &[]);
    rel.expires = berth_tuf::time::format_rfc3339(now + 2 * DAY);
    rel.targets.insert("both".into(), meta("C"));
    rel.targets.insert("r".into(), meta("R"));
    let rel = sign(rel, &rel_key);
    let mut alice = p.targets_body(1, now, &[]);
    alice.targets.insert("a".into(), meta("A"));
    alice.targets.insert("both".into(), meta("C"));
    let alice = sign(alice, &alice_key);
    h.svc
        .update(
            GUN,
            parts(&[("targets", &t), (RELEASES, &rel), ("targets/alice", &alice)]),
            None,
        )
        .await
        .unwrap();

    let v = h.svc.view(GUN).await.unwrap().unwrap();
    assert_eq!(v.gun, GUN);
    let roles: Vec<_> = v.roles.iter().map(|r| r.role.as_str()).collect();
    assert_eq!(
        roles,
        [
            "root",
            "targets",
            RELEASES,
            "targets/alice",
            "snapshot",
            "timestamp"
        ]
    );
    assert_eq!(v.roles[1].version, 2);
    assert_eq!(v.roles[2].expires, secs(now + 2 * DAY));
    assert_eq!(v.tags.keys().collect::<Vec<_>>(), ["a", "both", "r"]);

    let both = &v.tags["both"];
    assert_eq!(both.role, RELEASES, "releases wins");
    assert_eq!(both.sha256, sha("C"));
    assert_eq!(both.length, 1);
    let names = |t: &berth_trust::SignedTag| {
        t.signers
            .iter()
            .map(|s| (s.name.clone(), s.role.clone()))
            .collect::<Vec<_>>()
    };
    // targets lists another digest for it: not a signer; releases is never shown as one.
    assert_eq!(names(both), [("alice".into(), "targets/alice".into())]);
    assert_eq!(both.signers[0].key_ids, [alice_key.key_id()]);

    let a = &v.tags["a"];
    assert_eq!((a.role.as_str(), a.sha256), ("targets", sha("A")));
    assert_eq!(
        names(a),
        [
            (REPO_ADMIN.into(), "targets".into()),
            ("alice".into(), "targets/alice".into())
        ]
    );
    assert_eq!(a.signers[0].key_ids, [p.targets_key.key_id()]);
    assert!(v.tags["r"].signers.is_empty());

    // Validity is evaluated at each `now`: the releases role expires first.
    let t0 = secs(now);
    assert_eq!(v.signed_digest("both", t0), Some(sha("C")));
    assert_eq!(v.signed_digest("a", t0), Some(sha("A")));
    assert!(v.expired(t0).is_empty());
    assert_eq!(v.expiring_within(t0, 3 * 86400)[0].role, RELEASES);
    let later = secs(now + 3 * DAY);
    assert!(!v.valid_at("both", later) && !v.valid_at("r", later));
    assert_eq!(v.signed_digest("both", later), None);
    assert!(v.valid_at("a", later), "a resolves from targets");
    assert_eq!(
        v.expired(later)
            .iter()
            .map(|r| r.role.as_str())
            .collect::<Vec<_>>(),
        [RELEASES]
    );
    assert!(!v.valid_at("nope", t0));

    // Memoised: the same view until the timestamp changes.
    let s1 = h.svc.view_shared(GUN).await.unwrap().unwrap();
    let s2 = h.svc.view_shared(GUN).await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&s1, &s2));
    assert_eq!(*s1, v);

    // 15 days on, the served timestamp is re-signed: a new view, still valid for `a`.
    h.advance(15 * DAY);
    let v2 = h.svc.view_shared(GUN).await.unwrap().unwrap();
    assert!(!Arc::ptr_eq(&s1, &v2));
    let ts = v2.roles.iter().find(|r| r.role == "timestamp").unwrap();
    assert!(ts.version > 2 && ts.expires > secs(h.now()));
    assert!(v2.valid_at("a", secs(h.now())));
    assert!(!v2.valid_at("both", secs(h.now())));

    // A publish is seen at once: targets repoints `a`, drops the delegations.
    let mut t3 = p.targets_body(3, h.now(), &[]);
    t3.targets.insert("a".into(), meta("A2"));
    h.svc
        .update(GUN, parts(&[("targets", &sign(t3, &p.targets_key))]), None)
        .await
        .unwrap();
    let v3 = h.svc.view(GUN).await.unwrap().unwrap();
    assert_eq!(v3.tags["a"].sha256, sha("A2"));
    assert_eq!(
        v3.tags.keys().collect::<Vec<_>>(),
        ["a"],
        "undelegated roles no longer count"
    );

    // Deleted, or trust switched off: no trust data.
    h.svc.delete(GUN).await.unwrap();
    assert!(h.svc.view(GUN).await.unwrap().is_none());
    h.svc.update(GUN, p.initial(h.now()), None).await.ok();
    h.svc.set_enabled(false).await.unwrap();
    assert!(h.svc.view(GUN).await.unwrap().is_none());
}

/// The reference notary-server's files: nested delegations, and a timestamp the server holds
/// no key for, which therefore expires.
async fn fixture_view(store: Arc<dyn Store>) {
    let fx = fixtures();
    let mut ordered: Vec<_> = fx.iter().collect();
    ordered.sort_by_key(|((role, v), _)| (role.as_str().to_owned(), *v));
    for ((role, v), b) in ordered {
        store
            .tuf_update(
                GUN,
                vec![NewTufFile {
                    role: role.to_string(),
                    version: *v,
                    sha256: hex::encode(sha2::Sha256::digest(b)),
                    data: b.clone().into(),
                }],
                None,
            )
            .await
            .unwrap();
    }
    let last_ts = fx
        .iter()
        .filter(|((r, _), _)| *r == RoleName::Timestamp)
        .max_by_key(|((_, v), _)| *v)
        .unwrap();
    let ts = Signed::<Timestamp>::parse(last_ts.1).unwrap();
    let ts_expiry = ts.body.expires_at().unwrap();
    let h = Harness::at(store, ts_expiry - DAY).await;
    let v = h.svc.view(GUN).await.unwrap().unwrap();
    let roles: Vec<_> = v.roles.iter().map(|r| r.role.as_str()).collect();
    assert_eq!(
        roles,
        [
            "root",
            "targets",
            RELEASES,
            "targets/rsa",
            "targets/releases/qa",
            "snapshot",
            "timestamp"
        ]
    );
    assert_eq!(v.roles[1].version, 7);
    // v1 in targets, v2 in releases; the nested and side roles' tags are not released.
    assert_eq!(v.tags.keys().collect::<Vec<_>>(), ["v1", "v2", "v5"]);
    assert_eq!(v.tags["v1"].role, "targets");
    assert_eq!(v.tags["v2"].role, RELEASES);
    assert_eq!(v.tags["v2"].length, 16);
    let now = secs(h.now());
    assert!(v.valid_at("v1", now) && v.valid_at("v2", now));
    let ts_state = v.roles.iter().find(|r| r.role == "timestamp").unwrap();
    assert_eq!(ts_state.expires, secs(ts_expiry));
    assert_eq!(v.expiring_within(now, 2 * 86400), [ts_state]);

    // Two days on the timestamp has expired and cannot be re-signed: nothing is valid.
    h.advance(2 * DAY);
    let later = h.svc.view(GUN).await.unwrap().unwrap();
    let now = secs(h.now());
    assert!(!later.valid_at("v1", now) && !later.valid_at("v2", now));
    assert_eq!(later.signed_digest("v1", now), None);
    assert_eq!(
        later
            .expired(now)
            .iter()
            .map(|r| r.role.as_str())
            .collect::<Vec<_>>(),
        ["timestamp"]
    );
}
