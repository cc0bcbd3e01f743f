//! Replays the publishes the notary CLI made against the reference server through
//! `validate_update`, then checks the rules on hostile variations.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use berth_crypto::{KeyType, PrivateKey, x509};
use berth_tuf::validate::{
    SnapshotPlan, certified_root_role, check_versions, next_snapshot, next_timestamp,
    validate_update,
};
use berth_tuf::{Envelope, Error, RoleBody, RoleName, Root, Signed, Snapshot, Targets, Timestamp};

type Files = BTreeMap<RoleName, Vec<u8>>;

fn fixtures() -> BTreeMap<(RoleName, i64), Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notary/metadata");
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

fn gun() -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notary/gun.txt"),
    )
    .unwrap()
    .trim()
    .to_owned()
}

/// An hour after the fixture repository was created (its root certificate's NotBefore).
fn now() -> SystemTime {
    let fx = fixtures();
    let root = Signed::<Root>::parse(&fx[&(RoleName::Root, 1)])
        .unwrap()
        .body;
    let id = &root.roles["root"].keyids[0];
    let cert = &x509::parse_pem_bundle(root.keys[id].public_bytes()).unwrap()[0];
    cert.not_before + Duration::from_secs(3600)
}

/// The files a snapshot names, found by hash among the fixtures.
fn state_of(fx: &BTreeMap<(RoleName, i64), Vec<u8>>, snapshot: &[u8]) -> Files {
    let snap = Signed::<Snapshot>::parse(snapshot).unwrap().body;
    let mut files = Files::new();
    for (role, m) in &snap.meta {
        let role = RoleName::parse(role).unwrap();
        let bytes = fx
            .iter()
            .find(|((r, _), b)| *r == role && m.check(b).is_ok())
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| panic!("no fixture for {role} in snapshot meta"));
        files.insert(role, bytes);
    }
    files.insert(RoleName::Snapshot, snapshot.to_vec());
    files
}

fn signed_by_server(snapshot: &[u8], fx: &BTreeMap<(RoleName, i64), Vec<u8>>) -> bool {
    // The reference server's local signer makes ed25519 keys; the client's are ecdsa.
    let env = Envelope::parse(snapshot).unwrap();
    let id = &env.signatures()[0].keyid;
    fx.iter()
        .filter(|((r, _), _)| *r == RoleName::Root)
        .any(|(_, raw)| {
            Signed::<Root>::parse(raw)
                .unwrap()
                .body
                .keys
                .get(id)
                .is_some_and(|k| k.key_type() == KeyType::Ed25519)
        })
}

#[test]
fn every_real_publish_validates() {
    let fx = fixtures();
    let gun = gun();
    let snapshots: Vec<&Vec<u8>> = fx
        .iter()
        .filter(|((r, _), _)| *r == RoleName::Snapshot)
        .map(|(_, b)| b)
        .collect();
    let (mut uploaded_snapshots, mut generated) = (0, 0);
    let mut stored = Files::new();
    for snap in snapshots {
        let next = state_of(&fx, snap);
        let server = signed_by_server(snap, &fx);
        // The upload is every role whose file changed, plus the snapshot if the client signed it.
        let mut uploaded: Files = next
            .iter()
            .filter(|(r, b)| **r != RoleName::Snapshot && stored.get(*r) != Some(*b))
            .map(|(r, b)| (r.clone(), b.clone()))
            .collect();
        if !server {
            uploaded.insert(RoleName::Snapshot, snap.clone());
        }
        if uploaded.is_empty() {
            // A lazy re-sign by the server (expired snapshot), not a publish.
            stored = next;
            continue;
        }
        let v = validate_update(&gun, now(), &stored, &uploaded).unwrap_or_else(|e| {
            panic!(
                "publish of {:?} rejected: {e}",
                uploaded.keys().collect::<Vec<_>>()
            )
        });
        let versions = stored
            .iter()
            .map(|(r, b)| (r.clone(), Envelope::parse(b).unwrap().version().unwrap()))
            .collect();
        check_versions(&versions, &uploaded).unwrap();
        match v.snapshot {
            SnapshotPlan::Uploaded(s) => {
                assert!(!server);
                assert_eq!(s.raw(), &snap[..]);
                uploaded_snapshots += 1;
            }
            SnapshotPlan::Generate { updates } => {
                assert!(server);
                // What we would put in the snapshot is what the reference server put there.
                let real = Signed::<Snapshot>::parse(snap).unwrap().body;
                for (role, m) in &updates {
                    assert_eq!(&real.meta[role], m, "{role}");
                }
                let prev = Signed::<Snapshot>::parse(&stored[&RoleName::Snapshot])
                    .unwrap()
                    .body;
                let ours = next_snapshot(Some(&prev), &updates, now());
                assert_eq!(ours.meta, real.meta);
                assert_eq!(ours.version, prev.version + 1);
                generated += 1;
            }
        }
        assert_eq!(v.files.len(), uploaded.len());
        // Every validated file carries the version it states, for the store to record.
        for f in &v.files {
            assert_eq!(f.raw, uploaded[&f.role], "{}", f.role);
            assert_eq!(
                Some(f.version),
                Envelope::parse(&f.raw).unwrap().version(),
                "{}",
                f.role
            );
            assert!(f.version >= 1, "{}: {}", f.role, f.version);
        }
        stored = next;
    }
    assert!(
        uploaded_snapshots >= 5 && generated >= 2,
        "{uploaded_snapshots} uploaded, {generated} generated"
    );
}

fn at(fx: &BTreeMap<(RoleName, i64), Vec<u8>>, role: &str, v: i64) -> Vec<u8> {
    fx[&(RoleName::parse(role).unwrap(), v)].clone()
}

fn files(list: &[(&str, Vec<u8>)]) -> Files {
    list.iter()
        .map(|(r, b)| (RoleName::parse(r).unwrap(), b.clone()))
        .collect()
}

#[test]
fn first_publish_rules() {
    let fx = fixtures();
    let gun = gun();
    let up = files(&[
        ("root", at(&fx, "root", 1)),
        ("targets", at(&fx, "targets", 2)),
        ("snapshot", at(&fx, "snapshot", 2)),
    ]);
    validate_update(&gun, now(), &Files::new(), &up).unwrap();
    // No root anywhere.
    let no_root = files(&[("targets", at(&fx, "targets", 2))]);
    assert!(
        matches!(validate_update(&gun, now(), &Files::new(), &no_root), Err(Error::Validation(m)) if m == "no pre-existing root and no root provided in update.")
    );
    // A root for another GUN: the certificate CN does not match.
    assert!(matches!(
        validate_update("example.com/other", now(), &Files::new(), &up),
        Err(Error::BadRoot(_))
    ));
    // The real root's certificate is valid for the GUN now, and not 11 years on.
    let root = Signed::<Root>::parse(&at(&fx, "root", 1)).unwrap().body;
    assert!(certified_root_role(&root, &gun, Some(now())).is_ok());
    assert!(
        certified_root_role(
            &root,
            &gun,
            Some(now() + Duration::from_secs(11 * 365 * 86400))
        )
        .is_err()
    );
    // Expired everything.
    let later = now() + Duration::from_secs(11 * 365 * 86400);
    assert!(matches!(
        validate_update(&gun, later, &Files::new(), &up),
        Err(Error::BadRoot(_))
    ));
    // Snapshot that does not match the targets uploaded with it.
    let mismatched = files(&[
        ("root", at(&fx, "root", 1)),
        ("targets", at(&fx, "targets", 3)),
        ("snapshot", at(&fx, "snapshot", 2)),
    ]);
    assert!(matches!(
        validate_update(&gun, now(), &Files::new(), &mismatched),
        Err(Error::BadSnapshot(_))
    ));
    // Without a snapshot the server must generate one, which needs targets in a first publish.
    let root_only = files(&[("root", at(&fx, "root", 1))]);
    assert!(matches!(
        validate_update(&gun, now(), &Files::new(), &root_only),
        Err(Error::BadHierarchy { .. })
    ));
}

fn stored_initial(fx: &BTreeMap<(RoleName, i64), Vec<u8>>) -> Files {
    files(&[
        ("root", at(fx, "root", 1)),
        ("targets", at(fx, "targets", 2)),
        ("snapshot", at(fx, "snapshot", 2)),
    ])
}

#[test]
fn root_version_and_rotation_rules() {
    let fx = fixtures();
    let gun = gun();
    let stored = stored_initial(&fx);
    // v1 -> v3 skips a version.
    let jump = files(&[("root", at(&fx, "root", 3))]);
    let err = validate_update(&gun, now(), &stored, &jump).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Root modifications must increment the version. Current 1, new 3"
    );
    assert_eq!(err.notary_name(), Some("ErrBadRoot"));
    // v2 -> v3 is the real rotation (signed by old and new keys).
    let mut s2 = stored.clone();
    s2.insert(RoleName::Root, at(&fx, "root", 2));
    validate_update(&gun, now(), &s2, &jump).unwrap();
    // Drop the old key's signature: the rotation is no longer trusted.
    let r3 = Envelope::parse(&at(&fx, "root", 3)).unwrap();
    let r2 = Signed::<Root>::parse(&at(&fx, "root", 2)).unwrap().body;
    let old_ids = &r2.roles["root"].keyids;
    let only_new: Vec<_> = r3
        .signatures()
        .iter()
        .filter(|s| !old_ids.contains(&s.keyid))
        .cloned()
        .collect();
    assert_eq!(only_new.len(), 1);
    let stripped = Envelope::assemble(r3.signed().clone(), only_new).unwrap();
    let up = files(&[("root", stripped.raw().to_vec())]);
    let err = validate_update(&gun, now(), &s2, &up).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("could not rotate trust to a new trusted root"),
        "{err}"
    );
    // Keep only the old key's signature: the new root's own threshold is not met.
    let only_old: Vec<_> = r3
        .signatures()
        .iter()
        .filter(|s| old_ids.contains(&s.keyid))
        .cloned()
        .collect();
    let up = files(&[(
        "root",
        Envelope::assemble(r3.signed().clone(), only_old)
            .unwrap()
            .raw()
            .to_vec(),
    )]);
    let err = validate_update(&gun, now(), &s2, &up).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("failed to validate integrity of roots"),
        "{err}"
    );
}

#[test]
fn targets_and_delegation_rules() {
    let fx = fixtures();
    let gun = gun();
    let stored = stored_initial(&fx);
    let hostile = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    let wrong_key = std::fs::read(hostile.join("targets-wrong-key.json")).unwrap();
    let err = validate_update(&gun, now(), &stored, &files(&[("targets", wrong_key)])).unwrap_err();
    assert_eq!(err.notary_name(), Some("ErrBadTargets"));
    // A delegation whose parent has not declared it (targets v2 has no delegations).
    let rel = at(&fx, "targets/releases", 1);
    let err = validate_update(
        &gun,
        now(),
        &stored,
        &files(&[("targets/releases", rel.clone())]),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::BadTargets(ref m) if m.contains("not delegated")),
        "{err}"
    );
    // A nested delegation with no parent file at all.
    let qa = at(&fx, "targets/releases/qa", 1);
    let err =
        validate_update(&gun, now(), &stored, &files(&[("targets/releases/qa", qa)])).unwrap_err();
    assert!(
        matches!(err, Error::BadTargets(ref m) if m.contains("not available")),
        "{err}"
    );
    // An expired targets file (validated far in the future, with a root still valid).
    let t3 = Signed::<Targets>::parse(&at(&fx, "targets", 3))
        .unwrap()
        .body;
    let after_targets = t3.expires_at().unwrap() + Duration::from_secs(1);
    let err = validate_update(
        &gun,
        after_targets,
        &stored,
        &files(&[("targets", at(&fx, "targets", 3))]),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::BadTargets(ref m) if m.contains("expired")),
        "{err}"
    );
}

#[test]
fn negative_lengths_are_refused() {
    let fx = fixtures();
    let mut t = Signed::<Targets>::parse(&at(&fx, "targets", 3))
        .unwrap()
        .body;
    t.validate_structure(&RoleName::Targets).unwrap();
    let (name, m) = t.targets.iter_mut().next().expect("a target");
    let name = name.clone();
    m.length = -1;
    let err = t.validate_structure(&RoleName::Targets).unwrap_err();
    assert!(err.contains(&name) && err.contains("negative"), "{err}");
    let mut s = Signed::<Snapshot>::parse(&at(&fx, "snapshot", 3))
        .unwrap()
        .body;
    s.validate_structure().unwrap();
    s.meta.get_mut("targets").unwrap().length = -5;
    let err = s.validate_structure().unwrap_err();
    assert!(err.contains("negative"), "{err}");
}

#[test]
fn versions_must_strictly_increase() {
    let fx = fixtures();
    let stored: BTreeMap<RoleName, i64> = [(RoleName::Targets, 3), (RoleName::Root, 1)]
        .into_iter()
        .collect();
    let same = files(&[("targets", at(&fx, "targets", 3))]);
    assert!(matches!(
        check_versions(&stored, &same),
        Err(Error::Version {
            stored: 3,
            new: 3,
            ..
        })
    ));
    check_versions(&stored, &files(&[("targets", at(&fx, "targets", 4))])).unwrap();
    // A timestamp upload is ignored.
    check_versions(&stored, &files(&[("timestamp", at(&fx, "timestamp", 1))])).unwrap();
}

#[test]
fn generated_snapshot_and_timestamp_sign_and_verify() {
    let fx = fixtures();
    let key = PrivateKey::generate_ed25519().unwrap();
    let prev = Signed::<Snapshot>::parse(&at(&fx, "snapshot", 2))
        .unwrap()
        .body;
    let mut updates = BTreeMap::new();
    updates.insert(
        "targets".to_owned(),
        berth_tuf::FileMeta::for_bytes(&at(&fx, "targets", 3)),
    );
    let snap = Signed::sign(next_snapshot(Some(&prev), &updates, now()), &[&key]).unwrap();
    assert_eq!(snap.body.version, prev.version + 1);
    let reparsed = Signed::<Snapshot>::parse(snap.raw()).unwrap();
    assert_eq!(reparsed.body, snap.body);
    let ts = Signed::sign(next_timestamp(None, snap.raw(), now()), &[&key]).unwrap();
    assert_eq!(ts.body.version, 1);
    ts.body.snapshot_meta().unwrap().check(snap.raw()).unwrap();
    let reparsed = Signed::<Timestamp>::parse(ts.raw()).unwrap();
    assert_eq!(
        reparsed.body.expires_at().unwrap(),
        ts.body.expires_at().unwrap()
    );
    let role = berth_tuf::KeyRole {
        name: "timestamp".into(),
        keys: [(key.key_id(), key.public_key().clone())]
            .into_iter()
            .collect(),
        threshold: 1,
    };
    berth_tuf::verify_threshold(&ts.envelope, &role).unwrap();
}

#[test]
fn wildcard_and_ca_certificates() {
    let key = PrivateKey::generate_ecdsa().unwrap();
    let t = now();
    let mk = |cn: &str| {
        let public = x509::root_public_key(&key, cn, t).unwrap();
        let id = public.key_id();
        let roles = ["root", "targets", "snapshot", "timestamp"]
            .into_iter()
            .map(|r| {
                (
                    r.to_owned(),
                    berth_tuf::RoleKeys {
                        keyids: vec![id.clone()],
                        threshold: 1,
                    },
                )
            })
            .collect();
        Root {
            version: 1,
            expires: berth_tuf::time::format_rfc3339(t + Duration::from_secs(86400)),
            consistent_snapshot: false,
            keys: [(id, public)].into_iter().collect(),
            roles,
        }
    };
    let wild = mk("localhost:5000/team/*");
    assert!(certified_root_role(&wild, "localhost:5000/team/app", Some(t)).is_ok());
    assert!(certified_root_role(&wild, "localhost:5000/other/app", Some(t)).is_err());
    let exact = mk("localhost:5000/team/app");
    assert!(certified_root_role(&exact, "localhost:5000/team/app", Some(t)).is_ok());
    assert!(certified_root_role(&exact, "localhost:5000/team/app2", Some(t)).is_err());
    // A root signed with it validates end to end.
    let listed = exact.keys.values().next().unwrap().clone();
    // Signing under the bare key ID does not satisfy a role that lists the certificate...
    let bare_signed = Signed::sign(exact.clone(), &[&key]).unwrap();
    assert!(
        berth_tuf::validate::validate_root("localhost:5000/team/app", bare_signed.raw(), None, t)
            .is_err()
    );
    // ...signing as the listed certificate key does, as Notary records the certificate's ID.
    let signed = Signed::sign_as(exact, &[(&key, &listed)]).unwrap();
    assert_eq!(signed.envelope.signatures()[0].keyid, listed.key_id());
    let other = PrivateKey::generate_ecdsa().unwrap();
    assert!(Signed::sign_as(signed.body.clone(), &[(&other, &listed)]).is_err());
    berth_tuf::validate::validate_root("localhost:5000/team/app", signed.raw(), None, t).unwrap();
    // A bare (non-x509) root key is not a certificate and does not count.
    let mut bare = mk("localhost:5000/team/app");
    let k = key.public_key().clone();
    let id = k.key_id();
    bare.keys = [(id.clone(), k)].into_iter().collect();
    for r in bare.roles.values_mut() {
        r.keyids = vec![id.clone()];
    }
    assert!(certified_root_role(&bare, "localhost:5000/team/app", Some(t)).is_err());
}
