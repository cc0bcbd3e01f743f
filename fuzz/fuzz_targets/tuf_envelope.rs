//! TUF envelopes and the server's update validation (crates/tuf), at a fixed clock.
//!
//! Input: one or more files separated by NUL bytes (never valid inside JSON), each optionally
//! led by `<role>\n`. Each file is parsed as an envelope and as every role type:
//! - an envelope re-assembled from its parts parses to the same parts and signing input;
//! - a typed body survives `to_signed` → `from_signed` unchanged;
//! - structure checks, key roles, threshold verification and expiry never panic.
//! The files with a role line are then one upload, validated against stored states of the
//! notary CLI's repository (none, and three of its snapshots). An accepted upload must hold
//! only uploaded bytes under their own versions, and its root, targets and snapshot must
//! verify under the keys the resulting root names: nothing unsigned gets through.
#![no_main]

use std::collections::BTreeMap;

use berth_fuzz::{GUN, first_line, stored_states, tuf_now};
use berth_tuf::validate::{SnapshotPlan, certified_root_role, validate_root, validate_update};
use berth_tuf::{
    Envelope, RoleBody, RoleName, Root, Signed, Snapshot, Targets, Timestamp, verify_threshold,
};
use libfuzzer_sys::fuzz_target;

fn body_round_trip<T: RoleBody + PartialEq + std::fmt::Debug>(raw: &[u8]) -> Option<Signed<T>> {
    let s = Signed::<T>::parse(raw).ok()?;
    let again = T::from_signed(&s.body.to_signed())
        .unwrap_or_else(|e| panic!("{} body written by to_signed does not parse: {e}", T::TYPE));
    assert_eq!(again, s.body, "{} body changed in a round trip", T::TYPE);
    let _ = s.body.is_expired(tuf_now());
    Some(s)
}

fn check_file(raw: &[u8]) {
    let Ok(env) = Envelope::parse(raw) else {
        return;
    };
    let _ = (env.type_name(), env.version(), env.hashes());
    // accept → re-encode → accept
    if let Ok(re) = Envelope::assemble(env.signed().clone(), env.signatures().to_vec()) {
        let back = Envelope::parse(re.raw()).expect("an assembled envelope parses");
        assert_eq!(back.signed(), &berth_fuzz::sorted(env.signed()));
        assert_eq!(back.signatures(), env.signatures());
        assert_eq!(back.signing_input(), env.signing_input());
        assert_eq!(back.raw(), re.raw());
    }
    assert_eq!(
        env.signing_input(),
        berth_cjson::to_canonical(env.signed()),
        "signatures must cover the canonical form"
    );
    let now = tuf_now();
    if let Some(root) = body_round_trip::<Root>(raw) {
        let _ = root.body.validate_structure();
        for name in [
            "root",
            "targets",
            "snapshot",
            "timestamp",
            "targets/releases",
        ] {
            if let Ok(role) = RoleName::parse(name)
                && let Ok(kr) = root.body.key_role(&role)
            {
                let _ = verify_threshold(&root.envelope, &kr);
            }
        }
        if let Ok(kr) = certified_root_role(&root.body, GUN, Some(now)) {
            let _ = verify_threshold(&root.envelope, &kr);
        }
    }
    if let Some(t) = body_round_trip::<Targets>(raw) {
        for name in ["targets", "targets/releases", "targets/releases/qa"] {
            let role = RoleName::parse(name).expect("a role name");
            let _ = t.body.validate_structure(&role);
            if let Some(kr) = t.body.key_role(&role) {
                let _ = verify_threshold(&t.envelope, &kr);
            }
            let _ = t.body.delegation(&role);
        }
        for d in &t.body.delegations.roles {
            for path in t.body.targets.keys() {
                let _ = d.allows_path(path);
            }
        }
    }
    if let Some(s) = body_round_trip::<Snapshot>(raw) {
        let _ = s.body.validate_structure();
        for (name, m) in &s.body.meta {
            let _ = (RoleName::parse(name), m.check(raw));
        }
    }
    if let Some(t) = body_round_trip::<Timestamp>(raw) {
        let _ = t.body.snapshot_meta();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut upload: BTreeMap<RoleName, Vec<u8>> = BTreeMap::new();
    for file in data.split(|&b| b == 0) {
        let (line, rest) = first_line(file);
        let role = std::str::from_utf8(line)
            .ok()
            .and_then(|l| RoleName::parse(l).ok());
        match role {
            Some(role) => {
                check_file(rest);
                upload.insert(role, rest.to_vec());
            }
            None => check_file(file),
        }
    }
    if upload.is_empty() {
        return;
    }
    let now = tuf_now();
    for stored in stored_states() {
        if let Some(raw) = upload.get(&RoleName::Root) {
            let prev = stored
                .get(&RoleName::Root)
                .map(|r| Signed::<Root>::parse(r).expect("stored fixture root parses"));
            if let Ok(root) = validate_root(GUN, raw, prev.as_ref(), now) {
                let own = certified_root_role(&root.body, GUN, Some(now))
                    .expect("an accepted root has certified keys");
                verify_threshold(&root.envelope, &own).expect("an accepted root is signed");
            }
        }
        let Ok(valid) = validate_update(GUN, now, stored, &upload) else {
            continue;
        };
        let root = &valid.root.body;
        for f in &valid.files {
            assert_ne!(f.role, RoleName::Timestamp, "a timestamp upload was kept");
            assert_eq!(
                Some(&f.raw),
                upload.get(&f.role),
                "stored bytes were not uploaded"
            );
            let env = Envelope::parse(&f.raw).expect("an accepted file parses");
            assert_eq!(
                env.version(),
                Some(f.version),
                "version differs from the file's"
            );
            if f.role == RoleName::Targets {
                let kr = root
                    .key_role(&RoleName::Targets)
                    .expect("root names targets keys");
                verify_threshold(&env, &kr).expect("accepted targets are signed by root's keys");
            }
        }
        let rk = root
            .key_role(&RoleName::Root)
            .expect("root names root keys");
        if upload.contains_key(&RoleName::Root) {
            verify_threshold(&valid.root.envelope, &rk).expect("accepted root is self-signed");
        }
        for role in valid.targets.keys() {
            assert!(
                upload.contains_key(role),
                "{role} validated but not uploaded"
            );
        }
        if let SnapshotPlan::Uploaded(s) = &valid.snapshot {
            let kr = root
                .key_role(&RoleName::Snapshot)
                .expect("root names snapshot keys");
            verify_threshold(&s.envelope, &kr).expect("accepted snapshot is signed");
            assert_eq!(
                Some(s.raw()),
                upload.get(&RoleName::Snapshot).map(Vec::as_slice)
            );
        }
    }
});
