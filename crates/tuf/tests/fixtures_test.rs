//! Round-trip and verification of metadata written by the real notary server and CLI, plus the
//! hostile variants derived from it (see tests/fixtures/make-fixtures.sh).

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_cjson::to_canonical;
use berth_crypto::{PublicKey, SigMethod};
use berth_tuf::{
    Envelope, Error, KeyRole, RoleBody, RoleName, Root, Signed, Snapshot, Targets, Timestamp,
    verify_threshold,
};

fn dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

/// (role, version) -> bytes for every fixture file.
fn fixtures() -> BTreeMap<(RoleName, i64), Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir("notary/metadata")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_str().unwrap().to_owned();
        let (v, role) = name.split_once('.').unwrap();
        let role = RoleName::parse(&role.replace("__", "/")).unwrap();
        out.insert((role, v.parse().unwrap()), std::fs::read(&p).unwrap());
    }
    assert!(out.len() >= 30, "fixtures missing");
    out
}

fn typed_round_trip<T: RoleBody>(raw: &[u8]) -> Signed<T> {
    let s = Signed::<T>::parse(raw).unwrap();
    // The typed body re-encodes to exactly the canonical bytes that were signed.
    assert_eq!(
        to_canonical(&s.body.to_signed()),
        s.envelope.signing_input()
    );
    // And re-assembling the envelope reproduces the file byte for byte.
    let again = Envelope::assemble(s.body.to_signed(), s.envelope.signatures().to_vec()).unwrap();
    assert_eq!(again.raw(), raw);
    s
}

#[test]
fn every_fixture_round_trips_byte_for_byte() {
    for ((role, v), raw) in fixtures() {
        let env = Envelope::parse(&raw).unwrap();
        assert_eq!(env.raw(), &raw[..]);
        assert_eq!(env.version(), Some(v), "{role} v{v}");
        match role {
            RoleName::Root => drop(typed_round_trip::<Root>(&raw)),
            RoleName::Snapshot => drop(typed_round_trip::<Snapshot>(&raw)),
            RoleName::Timestamp => drop(typed_round_trip::<Timestamp>(&raw)),
            _ => drop(typed_round_trip::<Targets>(&raw)),
        }
    }
}

/// Every key any fixture defines, by ID.
fn all_keys(fx: &BTreeMap<(RoleName, i64), Vec<u8>>) -> BTreeMap<String, PublicKey> {
    let mut keys = BTreeMap::new();
    for ((role, _), raw) in fx {
        if *role == RoleName::Root {
            keys.extend(Signed::<Root>::parse(raw).unwrap().body.keys);
        } else if role.is_targets_like() {
            keys.extend(Signed::<Targets>::parse(raw).unwrap().body.delegations.keys);
        }
    }
    keys
}

#[test]
fn every_real_signature_verifies() {
    let fx = fixtures();
    let keys = all_keys(&fx);
    let mut methods = std::collections::BTreeSet::new();
    let mut count = 0;
    for ((role, v), raw) in &fx {
        let env = Envelope::parse(raw).unwrap();
        assert!(!env.signatures().is_empty(), "{role} v{v} unsigned");
        for sig in env.signatures() {
            let key = keys
                .get(&sig.keyid)
                .unwrap_or_else(|| panic!("{role} v{v}: unknown key {}", sig.keyid));
            let method = SigMethod::parse(&sig.method).unwrap();
            key.verify(method, &env.signing_input(), &sig.sig)
                .unwrap_or_else(|e| panic!("{role} v{v} {}: {e}", sig.keyid));
            // ...and fails over anything else.
            assert!(key.verify(method, b"{}", &sig.sig).is_err());
            methods.insert(sig.method.clone());
            count += 1;
        }
    }
    for m in ["ecdsa", "eddsa", "rsapss"] {
        assert!(methods.contains(m), "no {m} signature in fixtures");
    }
    assert!(count >= 35);
}

/// The roots as of each version, to find which root was in force for a file.
fn roots(fx: &BTreeMap<(RoleName, i64), Vec<u8>>) -> Vec<Root> {
    fx.iter()
        .filter(|((r, _), _)| *r == RoleName::Root)
        .map(|(_, raw)| Signed::<Root>::parse(raw).unwrap().body)
        .collect()
}

#[test]
fn every_file_meets_its_role_threshold() {
    let fx = fixtures();
    let roots = roots(&fx);
    for ((role, v), raw) in &fx {
        let env = Envelope::parse(raw).unwrap();
        let ok = match role {
            RoleName::Delegation(_) => {
                let parent = role.parent().unwrap();
                fx.iter().filter(|((r, _), _)| *r == parent).any(|(_, p)| {
                    let parent = Signed::<Targets>::parse(p).unwrap().body;
                    parent
                        .key_role(role)
                        .is_some_and(|kr| verify_threshold(&env, &kr).is_ok())
                })
            }
            _ => roots
                .iter()
                .any(|root| verify_threshold(&env, &root.key_role(role).unwrap()).is_ok()),
        };
        assert!(ok, "{role} v{v} meets no threshold");
    }
}

#[test]
fn root_rotation_is_signed_by_old_and_new_keys() {
    let fx = fixtures();
    let r2 = Signed::<Root>::parse(&fx[&(RoleName::Root, 2)]).unwrap();
    let r3 = Signed::<Root>::parse(&fx[&(RoleName::Root, 3)]).unwrap();
    assert_eq!(r3.envelope.signatures().len(), 2);
    let old = r2.body.key_role(&RoleName::Root).unwrap();
    let new = r3.body.key_role(&RoleName::Root).unwrap();
    assert_ne!(
        old.keys.keys().collect::<Vec<_>>(),
        new.keys.keys().collect::<Vec<_>>()
    );
    assert_eq!(verify_threshold(&r3.envelope, &old).unwrap(), 1);
    assert_eq!(verify_threshold(&r3.envelope, &new).unwrap(), 1);
    // Root v2 is not signed by the new key.
    assert!(matches!(
        verify_threshold(&r2.envelope, &new),
        Err(Error::Threshold { valid: 0, .. })
    ));
    for r in roots(&fx) {
        r.validate_structure().unwrap();
    }
}

#[test]
fn structure_of_real_files_is_valid() {
    for ((role, v), raw) in fixtures() {
        match &role {
            RoleName::Snapshot => Signed::<Snapshot>::parse(&raw)
                .unwrap()
                .body
                .validate_structure()
                .unwrap(),
            RoleName::Timestamp => drop(
                Signed::<Timestamp>::parse(&raw)
                    .unwrap()
                    .body
                    .snapshot_meta()
                    .unwrap(),
            ),
            RoleName::Root => {}
            _ => Signed::<Targets>::parse(&raw)
                .unwrap()
                .body
                .validate_structure(&role)
                .unwrap_or_else(|e| panic!("{role} v{v}: {e}")),
        }
    }
}

#[test]
fn timestamps_and_snapshots_hash_the_exact_bytes() {
    let fx = fixtures();
    // Every timestamp names a snapshot version that exists, by exact hash and length.
    for ((role, v), raw) in &fx {
        if *role != RoleName::Timestamp {
            continue;
        }
        let ts = Signed::<Timestamp>::parse(raw).unwrap().body;
        let m = ts.snapshot_meta().unwrap();
        let matching = fx
            .iter()
            .filter(|((r, _), _)| *r == RoleName::Snapshot)
            .filter(|(_, s)| m.check(s).is_ok() && m.length == s.len() as i64)
            .count();
        assert_eq!(matching, 1, "timestamp v{v}");
    }
    // The last snapshot's meta matches the current root and targets files byte for byte.
    let (_, last) = fx
        .iter()
        .rfind(|((r, _), _)| *r == RoleName::Snapshot)
        .unwrap();
    let snap = Signed::<Snapshot>::parse(last).unwrap().body;
    for role in [
        RoleName::Root,
        RoleName::Targets,
        RoleName::parse("targets/releases").unwrap(),
    ] {
        let (_, cur) = fx.iter().rfind(|((r, _), _)| *r == role).unwrap();
        snap.meta[role.as_str()].check(cur).unwrap();
    }
}

fn hostile(name: &str) -> Vec<u8> {
    std::fs::read(dir("hostile").join(name)).unwrap()
}

#[test]
fn hostile_fixtures_fail_verification() {
    let fx = fixtures();
    let root1 = Signed::<Root>::parse(&fx[&(RoleName::Root, 1)])
        .unwrap()
        .body;
    let root_role = root1.key_role(&RoleName::Root).unwrap();
    let targets_role = root1.key_role(&RoleName::Targets).unwrap();
    let check = |name: &str, role: &KeyRole| {
        verify_threshold(&Envelope::parse(&hostile(name)).unwrap(), role)
    };

    for bad in [
        "root-tampered-signature.json",
        "root-der-signature.json",
        "root-unknown-method.json",
    ] {
        assert!(
            matches!(
                check(bad, &root_role),
                Err(Error::Threshold { valid: 0, .. })
            ),
            "{bad}"
        );
    }
    // Re-indented: signatures are over the canonical form, so it still verifies.
    assert_eq!(check("root-pretty.json", &root_role).unwrap(), 1);
    for bad in ["targets-wrong-key.json", "targets-foreign-signature.json"] {
        assert!(
            matches!(check(bad, &targets_role), Err(Error::Threshold { .. })),
            "{bad}"
        );
    }
    // targets v3 was signed under the root of its time; any root will do to show the edit breaks it.
    let tampered = Envelope::parse(&hostile("targets-tampered-body.json")).unwrap();
    for r in roots(&fx) {
        assert!(verify_threshold(&tampered, &r.key_role(&RoleName::Targets).unwrap()).is_err());
    }
    // Duplicate signatures count once.
    let ts_role = root1.key_role(&RoleName::Timestamp).unwrap();
    let dup = Envelope::parse(&hostile("timestamp-duplicate-signatures.json")).unwrap();
    assert_eq!(dup.signatures().len(), 2);
    assert_eq!(verify_threshold(&dup, &ts_role).unwrap(), 1);
    let mut two = ts_role.clone();
    two.threshold = 2;
    assert!(matches!(
        verify_threshold(&dup, &two),
        Err(Error::Threshold {
            valid: 1,
            threshold: 2,
            ..
        })
    ));
}

#[test]
fn wrong_key_id_aborts() {
    // A role that lists the root certificate key under a different ID: Notary's ErrInvalidKeyID.
    let fx = fixtures();
    let s = Signed::<Root>::parse(&fx[&(RoleName::Root, 1)]).unwrap();
    let mut role = s.body.key_role(&RoleName::Root).unwrap();
    let (id, key) = role.keys.pop_first().unwrap();
    let mut env_sigs = s.envelope.signatures().to_vec();
    let fake_id = "00".repeat(32);
    env_sigs[0].keyid = fake_id.clone();
    role.keys.insert(fake_id.clone(), key);
    let env = Envelope::assemble(s.envelope.signed().clone(), env_sigs).unwrap();
    assert!(matches!(verify_threshold(&env, &role), Err(Error::KeyIdMismatch(k)) if k == fake_id));
    assert_ne!(id, fake_id);
}
