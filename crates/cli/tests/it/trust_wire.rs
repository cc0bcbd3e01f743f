//! The trust API on the wire: updates the server must refuse (bad signatures, wrong keys,
//! rollbacks, root rotations without the old root, snapshot mismatches, undeclared or forged
//! delegations, malformed uploads, oversized bodies), each time leaving every stored role exactly
//! as it was; plus the read side (by version, by checksum, cache headers, changefeeds, delete,
//! server keys, GUNs of other hosts).
//!
//! Metadata starts from a real `notary` client; changes are made by hand and signed with openssl
//! using the client's own (decrypted) keys, so a refusal can only come from the property under test.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;
use crate::trust_harness::*;

const ROLES: [&str; 4] = ["root", "targets", "snapshot", "timestamp"];

struct Wire {
    srv: Server,
    gun: String,
    notary: Notary,
    root_key: EcKey,
    root_id: String,
    targets_key: EcKey,
    targets_id: String,
    snapshot_key: EcKey,
    snapshot_id: String,
    keys: tempfile::TempDir,
}

impl Wire {
    /// A repository initialised by notary (client-managed snapshot) with one published target:
    /// root v1, targets v3, snapshot v3 (`notary init -p` already publishes targets v2).
    async fn new() -> Wire {
        let srv = Server::start();
        enable_trust(&srv).await;
        let gun = gun(&srv, "team/wire");
        let notary = Notary::new(&srv);
        notary.run(&["init", &gun, "-p"]).ok();
        let mut rng = Rng::new();
        notary
            .run(&["addhash", &gun, "t1", "10", "--sha256", &rng.hex(64), "-p"])
            .ok();
        let keys = tempfile::tempdir().unwrap();
        let root_key =
            EcKey::from_notary_file(&notary.key_file("root", None), ROOT_PW, keys.path());
        let targets_key = EcKey::from_notary_file(
            &notary.key_file("targets", Some(&gun)),
            TARGETS_PW,
            keys.path(),
        );
        let snapshot_key = EcKey::from_notary_file(
            &notary.key_file("snapshot", Some(&gun)),
            SNAPSHOT_PW,
            keys.path(),
        );
        let root = signed_of(&tuf_bytes(&srv, &gun, "root.json").await);
        let only = |role: &str| {
            let ids = root["roles"][role]["keyids"].as_array().unwrap();
            assert_eq!(ids.len(), 1, "{root}");
            ids[0].as_str().unwrap().to_owned()
        };
        let w = Wire {
            root_id: only("root"),
            targets_id: only("targets"),
            snapshot_id: only("snapshot"),
            srv,
            gun,
            notary,
            root_key,
            targets_key,
            snapshot_key,
            keys,
        };
        // The decrypted keys are the ones the root lists (checks the fixture itself).
        assert_eq!(w.targets_key.tuf_key().0, w.targets_id);
        assert_eq!(w.snapshot_key.tuf_key().0, w.snapshot_id);
        assert_eq!(signed_of(&w.get("targets.json").await)["version"], 3);
        w
    }

    async fn get(&self, file: &str) -> Vec<u8> {
        tuf_bytes(&self.srv, &self.gun, file).await
    }

    async fn signed(&self, file: &str) -> Value {
        signed_of(&self.get(file).await)
    }

    /// Every role's current bytes (absent roles as None).
    async fn state(&self, extra: &[&str]) -> BTreeMap<String, Option<Vec<u8>>> {
        let mut m = BTreeMap::new();
        for role in ROLES.iter().chain(extra) {
            let r = tuf_get(&self.srv, &self.gun, &format!("{role}.json")).await;
            let v = match r.status {
                200 => Some(r.body),
                404 => None,
                _ => panic!("unexpected: {r}"),
            };
            m.insert(role.to_string(), v);
        }
        m
    }

    /// Current targets with `version` and whatever `edit` changes, signed by the targets key.
    async fn targets(&self, version: i64, edit: impl FnOnce(&mut Value)) -> Value {
        let mut t = self.signed("targets.json").await;
        t["version"] = json!(version);
        edit(&mut t);
        t
    }

    fn sign_targets(&self, signed: &Value) -> Vec<u8> {
        envelope(signed, &[(&self.targets_key, &self.targets_id)])
    }

    /// Current snapshot with version `version` and `meta` entries for the given files.
    async fn snapshot(&self, version: i64, files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut s = self.signed("snapshot.json").await;
        s["version"] = json!(version);
        for (role, bytes) in files {
            s["meta"][*role] = file_meta(bytes);
        }
        envelope(&s, &[(&self.snapshot_key, &self.snapshot_id)])
    }

    /// POSTs `parts`, lets `check` judge the answer, then asserts nothing was stored.
    async fn refused(&self, extra: &[&str], parts: &[(&str, &[u8])], check: impl FnOnce(&Resp)) {
        let before = self.state(extra).await;
        let r = publish(&self.srv, &self.gun, parts).await;
        check(&r);
        let after = self.state(extra).await;
        assert!(
            before == after,
            "a refused update changed stored metadata (request answered {r})"
        );
    }

    async fn accepted(&self, parts: &[(&str, &[u8])]) {
        let r = publish(&self.srv, &self.gun, parts).await;
        r.expect(200);
        assert!(r.body.is_empty(), "{r}");
        for (role, bytes) in parts {
            if *role != "timestamp" {
                assert_eq!(
                    &self.get(&format!("{role}.json")).await,
                    bytes,
                    "{role} not stored verbatim"
                );
            }
        }
    }
}

#[tokio::test]
async fn wire_refuses_bad_signatures_and_wrong_keys() {
    let w = Wire::new().await;
    let mut rng = Rng::new();
    let t4 = w
        .targets(4, |t| {
            t["targets"]["t2"] = json!({"hashes": {"sha256": b64(&rng.bytes(32))}, "length": 5});
        })
        .await;
    let good = w.sign_targets(&t4);

    // One byte of the signature changed.
    let mut env: Value = serde_json::from_slice(&good).unwrap();
    let mut sig = unb64(env["signatures"][0]["sig"].as_str().unwrap());
    sig[10] ^= 0x01;
    env["signatures"][0]["sig"] = json!(b64(&sig));
    let tampered = serde_json::to_vec(&env).unwrap();
    let snap = w.snapshot(4, &[("targets", &tampered)]).await;
    w.refused(&[], &[("targets", &tampered), ("snapshot", &snap)], |r| {
        expect_invalid_update(r, "ErrBadTargets");
    })
    .await;

    // The signed content changed after signing.
    let mut env: Value = serde_json::from_slice(&good).unwrap();
    env["signed"]["targets"]["t2"]["length"] = json!(6);
    let altered = serde_json::to_vec(&env).unwrap();
    let snap = w.snapshot(4, &[("targets", &altered)]).await;
    w.refused(&[], &[("targets", &altered), ("snapshot", &snap)], |r| {
        expect_invalid_update(r, "ErrBadTargets");
    })
    .await;

    // Signed by a key the root does not list for targets, under its own key ID...
    let other = EcKey::generate(w.keys.path(), "other");
    let (other_id, _) = other.tuf_key();
    let foreign = envelope(&t4, &[(&other, &other_id)]);
    let snap = w.snapshot(4, &[("targets", &foreign)]).await;
    w.refused(&[], &[("targets", &foreign), ("snapshot", &snap)], |r| {
        expect_invalid_update(r, "ErrBadTargets");
    })
    .await;
    // ...or claiming the real targets key ID.
    let forged = envelope(&t4, &[(&other, &w.targets_id)]);
    let snap = w.snapshot(4, &[("targets", &forged)]).await;
    w.refused(&[], &[("targets", &forged), ("snapshot", &snap)], |r| {
        expect_invalid_update(r, "ErrBadTargets");
    })
    .await;
    // The targets key signing the snapshot instead of the snapshot key.
    let mut s = w.signed("snapshot.json").await;
    s["version"] = json!(4);
    s["meta"]["targets"] = file_meta(&good);
    let bad_snap = envelope(&s, &[(&w.targets_key, &w.snapshot_id)]);
    w.refused(&[], &[("targets", &good), ("snapshot", &bad_snap)], |r| {
        expect_invalid_update(r, "ErrBadSnapshot");
    })
    .await;

    // Control: the untampered update is accepted, and the real client reads it.
    let snap = w.snapshot(4, &[("targets", &good)]).await;
    w.accepted(&[("targets", &good), ("snapshot", &snap)]).await;
    let listed = Notary::new(&w.srv).list(&w.gun, &[]);
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        ["t1", "t2"],
        "{listed:?}"
    );
    assert_eq!(listed["t2"].1, 5);
}

#[tokio::test]
async fn wire_refuses_rollbacks_and_same_versions() {
    let w = Wire::new().await;
    let current_targets = w.get("targets.json").await;
    let current_root = w.get("root.json").await;

    // The current targets again (same version, valid signature).
    let snap = w.snapshot(4, &[("targets", &current_targets)]).await;
    w.refused(
        &[],
        &[("targets", &current_targets), ("snapshot", &snap)],
        |r| {
            expect_trust_error(r, 400, "VERSION");
        },
    )
    .await;
    // An older version, validly signed.
    let t2 = w.sign_targets(&w.targets(2, |_| {}).await);
    let snap = w.snapshot(4, &[("targets", &t2)]).await;
    w.refused(&[], &[("targets", &t2), ("snapshot", &snap)], |r| {
        expect_trust_error(r, 400, "VERSION");
    })
    .await;
    // A new targets with a snapshot that does not move forward.
    let t4 = w.sign_targets(&w.targets(4, |_| {}).await);
    let snap3 = w.snapshot(3, &[("targets", &t4)]).await;
    w.refused(&[], &[("targets", &t4), ("snapshot", &snap3)], |r| {
        expect_trust_error(r, 400, "VERSION");
    })
    .await;
    // The current root again.
    let snap = w.snapshot(4, &[("root", &current_root)]).await;
    w.refused(&[], &[("root", &current_root), ("snapshot", &snap)], |r| {
        expect_trust_error(r, 400, "VERSION");
    })
    .await;
    // A timestamp from the client is ignored, never stored.
    let ts = w.get("timestamp.json").await;
    let snap = w.snapshot(4, &[("targets", &t4)]).await;
    w.accepted(&[("targets", &t4), ("snapshot", &snap), ("timestamp", &ts)])
        .await;
    let new_ts = w.signed("timestamp.json").await;
    assert_eq!(
        new_ts["version"],
        signed_of(&ts)["version"].as_i64().unwrap() + 1
    );
    assert_eq!(new_ts["meta"]["snapshot"], file_meta(&snap), "{new_ts}");
}

#[tokio::test]
async fn wire_refuses_root_rotation_without_the_old_root() {
    let w = Wire::new().await;
    let root1 = w.get("root.json").await;
    let new_key = EcKey::generate(w.keys.path(), "newroot");
    let cert = new_key.self_signed_cert(&w.gun, 3650);
    let (new_id, new_tuf) = x509_tuf_key(&cert);
    let mut r2 = signed_of(&root1);
    r2["version"] = json!(2);
    r2["keys"].as_object_mut().unwrap().remove(&w.root_id);
    r2["keys"][&new_id] = new_tuf;
    r2["roles"]["root"]["keyids"] = json!([new_id]);

    // Signed only by the new root key.
    let only_new = envelope(&r2, &[(&new_key, &new_id)]);
    let snap = w.snapshot(4, &[("root", &only_new)]).await;
    w.refused(&[], &[("root", &only_new), ("snapshot", &snap)], |r| {
        expect_invalid_update(r, "ErrBadRoot");
    })
    .await;
    // Signed only by the old root key (the new root does not vouch for itself).
    let only_old = envelope(&r2, &[(&w.root_key, &w.root_id)]);
    let snap = w.snapshot(4, &[("root", &only_old)]).await;
    w.refused(&[], &[("root", &only_old), ("snapshot", &snap)], |r| {
        expect_invalid_update(r, "ErrBadRoot");
    })
    .await;
    // A version jump of two.
    let mut r3 = r2.clone();
    r3["version"] = json!(3);
    let jump = envelope(&r3, &[(&w.root_key, &w.root_id), (&new_key, &new_id)]);
    let snap = w.snapshot(4, &[("root", &jump)]).await;
    w.refused(&[], &[("root", &jump), ("snapshot", &snap)], |r| {
        let msg = expect_invalid_update(r, "ErrBadRoot");
        assert!(msg.contains("version"), "{msg}");
    })
    .await;
    // A new root certificate for another GUN.
    let stranger = EcKey::generate(w.keys.path(), "stranger");
    let scert = stranger.self_signed_cert("127.0.0.1:1/someone/else", 3650);
    let (sid, stuf) = x509_tuf_key(&scert);
    let mut rs = signed_of(&root1);
    rs["version"] = json!(2);
    rs["keys"][&sid] = stuf;
    rs["roles"]["root"]["keyids"] = json!([sid]);
    let wrong_cn = envelope(&rs, &[(&w.root_key, &w.root_id), (&stranger, &sid)]);
    let snap = w.snapshot(4, &[("root", &wrong_cn)]).await;
    w.refused(&[], &[("root", &wrong_cn), ("snapshot", &snap)], |r| {
        expect_invalid_update(r, "ErrBadRoot");
    })
    .await;

    // Control: old and new signatures together rotate the root; clients follow.
    let both = envelope(&r2, &[(&w.root_key, &w.root_id), (&new_key, &new_id)]);
    let snap = w.snapshot(4, &[("root", &both)]).await;
    w.accepted(&[("root", &both), ("snapshot", &snap)]).await;
    assert_eq!(w.get("1.root.json").await, root1);
    assert_eq!(w.get("2.root.json").await, both);
    w.notary.run(&["list", &w.gun]).ok();
    assert!(Notary::new(&w.srv).list(&w.gun, &[]).contains_key("t1"));
}

#[tokio::test]
async fn wire_refuses_snapshot_mismatch_and_bad_delegations() {
    let w = Wire::new().await;
    let old_targets = w.get("targets.json").await;
    let t4 = w.sign_targets(&w.targets(4, |_| {}).await);

    // Snapshot still describing the previous targets.
    let stale = w.snapshot(4, &[("targets", &old_targets)]).await;
    w.refused(&[], &[("targets", &t4), ("snapshot", &stale)], |r| {
        expect_invalid_update(r, "ErrBadSnapshot");
    })
    .await;
    // No snapshot at all while the server does not hold the snapshot key.
    w.refused(&[], &[("targets", &t4)], |r| {
        expect_invalid_update(r, "ErrBadHierarchy");
    })
    .await;

    // A delegation no parent declares.
    let stray = EcKey::generate(w.keys.path(), "stray");
    let (stray_id, _) = stray.tuf_key();
    let deleg_body = |version: i64| {
        json!({
            "_type": "Targets",
            "delegations": {"keys": {}, "roles": []},
            "expires": "2030-01-01T00:00:00Z",
            "targets": {"d1": {"hashes": {"sha256": b64(&[7u8; 32])}, "length": 1}},
            "version": version,
        })
    };
    let undeclared = envelope(&deleg_body(1), &[(&stray, &stray_id)]);
    let snap = w.snapshot(4, &[("targets/undeclared", &undeclared)]).await;
    w.refused(
        &["targets/undeclared"],
        &[("targets/undeclared", &undeclared), ("snapshot", &snap)],
        |r| {
            expect_invalid_update(r, "ErrBadTargets");
        },
    )
    .await;

    // Declare targets/releases (hand-made targets, accepted), then forge its signature.
    let dkey = EcKey::generate(w.keys.path(), "releases");
    let dcert = dkey.self_signed_cert("releases", 365);
    let (did, dtuf) = x509_tuf_key(&dcert);
    let t4 = w
        .sign_targets(
            &w.targets(4, |t| {
                t["delegations"] = json!({
                    "keys": {did.clone(): dtuf},
                    "roles": [{"keyids": [did.clone()], "name": "targets/releases", "paths": [""], "threshold": 1}],
                });
            })
            .await,
        );
    let snap = w.snapshot(4, &[("targets", &t4)]).await;
    w.accepted(&[("targets", &t4), ("snapshot", &snap)]).await;

    let forged = envelope(&deleg_body(1), &[(&stray, &did)]);
    let snap = w.snapshot(5, &[("targets/releases", &forged)]).await;
    w.refused(
        &["targets/releases"],
        &[("targets/releases", &forged), ("snapshot", &snap)],
        |r| {
            expect_invalid_update(r, "ErrBadTargets");
        },
    )
    .await;
    // A child of a delegation that does not exist (no parent stored).
    let orphan = envelope(&deleg_body(1), &[(&dkey, &did)]);
    let snap = w.snapshot(5, &[("targets/releases/sub", &orphan)]).await;
    w.refused(
        &["targets/releases", "targets/releases/sub"],
        &[("targets/releases/sub", &orphan), ("snapshot", &snap)],
        |r| {
            expect_invalid_update(r, "ErrBadTargets");
        },
    )
    .await;

    // Control: the delegate's real signature is accepted and the notary client reads it.
    let real = envelope(&deleg_body(1), &[(&dkey, &did)]);
    let snap = w.snapshot(5, &[("targets/releases", &real)]).await;
    w.accepted(&[("targets/releases", &real), ("snapshot", &snap)])
        .await;
    let listed = Notary::new(&w.srv).list(&w.gun, &[]);
    assert_eq!(
        listed.get("d1").map(|t| t.2.as_str()),
        Some("targets/releases"),
        "{listed:?}"
    );

    // A delegation limited to `allowed/` may not sign other paths, nor hand on wider ones.
    let t5 = w.sign_targets(
        &w.targets(5, |t| {
            t["delegations"]["roles"].as_array_mut().unwrap().push(
                json!({"keyids": [did.clone()], "name": "targets/restricted", "paths": ["allowed/"], "threshold": 1}),
            );
        })
        .await,
    );
    let snap = w.snapshot(6, &[("targets", &t5)]).await;
    w.accepted(&[("targets", &t5), ("snapshot", &snap)]).await;
    let outside = envelope(&deleg_body(1), &[(&dkey, &did)]);
    let snap = w.snapshot(7, &[("targets/restricted", &outside)]).await;
    w.refused(
        &["targets/restricted"],
        &[("targets/restricted", &outside), ("snapshot", &snap)],
        |r| {
            let e = expect_invalid_update(r, "ErrBadTargets");
            assert!(e.to_string().contains("outside its allowed paths"), "{r}");
        },
    )
    .await;
    let mut widening = deleg_body(1);
    widening["targets"] = json!({});
    widening["delegations"] = json!({"keys": {}, "roles": [
        {"keyids": [did.clone()], "name": "targets/restricted/sub", "paths": [""], "threshold": 1}]});
    let widening = envelope(&widening, &[(&dkey, &did)]);
    let snap = w.snapshot(7, &[("targets/restricted", &widening)]).await;
    w.refused(
        &["targets/restricted"],
        &[("targets/restricted", &widening), ("snapshot", &snap)],
        |r| {
            expect_invalid_update(r, "ErrBadTargets");
        },
    )
    .await;
    let mut inside = deleg_body(1);
    inside["targets"] = json!({"allowed/d1": {"hashes": {"sha256": b64(&[7u8; 32])}, "length": 1}});
    let inside = envelope(&inside, &[(&dkey, &did)]);
    let snap = w.snapshot(7, &[("targets/restricted", &inside)]).await;
    w.accepted(&[("targets/restricted", &inside), ("snapshot", &snap)])
        .await;
}

#[tokio::test]
async fn wire_refuses_malformed_uploads() {
    let w = Wire::new().await;
    let targets = w.get("targets.json").await;
    w.refused(&[], &[("targets", b"{\"signed\": nope")], |r| {
        expect_trust_error(r, 400, "MALFORMED_JSON");
    })
    .await;
    for role in ["bogus", "targets/Bad", "targets/../root", "timestampx"] {
        w.refused(&[], &[(role, &targets)], |r| {
            let e = expect_trust_error(r, 400, "INVALID_ROLE");
            assert_eq!(e["detail"], role, "{r}");
        })
        .await;
    }
    // Not multipart at all.
    let before = w.state(&[]).await;
    let r = w
        .srv
        .send(
            Method::POST,
            &tuf_path(&w.gun, ""),
            &[("content-type", "application/json")],
            Some(targets.clone()),
        )
        .await;
    expect_trust_error(&r, 400, "MALFORMED_UPLOAD");
    assert!(
        before == w.state(&[]).await,
        "non-multipart body changed data"
    );

    // More than 64 MiB, streamed with no Content-Length: refused with an error body.
    static CHUNK: [u8; 1 << 20] = [b' '; 1 << 20];
    let (ct, head) = multipart(&[("targets", b"")]);
    // Keep the part open: header, then 65 MiB of JSON whitespace, then the closing boundary.
    let split = head.windows(4).position(|x| x == b"\r\n\r\n").unwrap() + 4;
    let prefix = head[..split].to_vec();
    let suffix = head[split..].to_vec();
    let chunks = std::iter::once(prefix)
        .chain((0..65).map(|_| CHUNK.to_vec()))
        .chain(std::iter::once(suffix));
    let stream = futures::stream::iter(chunks.map(Ok::<_, std::io::Error>));
    let resp = w
        .srv
        .client
        .post(w.srv.url(&tuf_path(&w.gun, "")))
        .header("content-type", ct)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    match resp {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.bytes().await.unwrap_or_default();
            assert!(
                status == 413 || status == 400,
                "oversized upload answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
            let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "oversized upload: error body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&body)
                )
            });
            assert!(v["errors"][0]["code"].is_string(), "{v}");
        }
        Err(e) => panic!("oversized upload: no HTTP answer: {e:?}\n{}", w.srv.logs()),
    }
    assert!(before == w.state(&[]).await, "oversized body changed data");
    // The server is still fine.
    w.notary.run(&["list", &w.gun]).ok();
}

#[tokio::test]
async fn wire_reads_by_version_and_checksum_with_cache_headers() {
    let srv = Server::start();
    enable_trust(&srv).await;
    let gun = gun(&srv, "team/read");
    let n = Notary::new(&srv);
    let mut rng = Rng::new();
    n.run(&["init", &gun, "-p"]).ok();
    let targets1 = tuf_bytes(&srv, &gun, "targets.json").await;
    n.run(&["addhash", &gun, "a", "1", "--sha256", &rng.hex(64), "-p"])
        .ok();

    let current = tuf_get(&srv, &gun, "root.json").await;
    current.expect(200);
    assert_eq!(
        current.header("cache-control").as_deref(),
        Some("public, max-age=300, s-maxage=300, must-revalidate"),
        "{current}"
    );
    assert!(current.header("last-modified").is_some(), "{current}");
    let v1 = tuf_get(&srv, &gun, "1.root.json").await;
    v1.expect(200);
    assert_eq!(v1.body, current.body);
    assert_eq!(
        v1.header("cache-control").as_deref(),
        Some("public, max-age=2592000, s-maxage=2592000"),
        "{v1}"
    );

    let targets2 = tuf_bytes(&srv, &gun, "targets.json").await;
    assert_ne!(targets1, targets2);
    // `notary init -p` publishes targets v2, the next publish v3.
    assert_eq!(tuf_bytes(&srv, &gun, "2.targets.json").await, targets1);
    assert_eq!(tuf_bytes(&srv, &gun, "3.targets.json").await, targets2);
    let by_hash = tuf_get(
        &srv,
        &gun,
        &format!("targets.{}.json", sha256_hex(&targets1)),
    )
    .await;
    by_hash.expect(200);
    assert_eq!(by_hash.body, targets1);
    assert_eq!(
        by_hash.header("cache-control").as_deref(),
        Some("public, max-age=2592000, s-maxage=2592000")
    );
    // The timestamp names the current snapshot by hash; that lookup serves the same bytes.
    let ts = signed_of(&tuf_bytes(&srv, &gun, "timestamp.json").await);
    let snap = tuf_bytes(&srv, &gun, "snapshot.json").await;
    assert_eq!(ts["meta"]["snapshot"], file_meta(&snap), "{ts}");
    let snap_hex = hex::encode(unb64(
        ts["meta"]["snapshot"]["hashes"]["sha256"].as_str().unwrap(),
    ));
    assert_eq!(
        tuf_bytes(&srv, &gun, &format!("snapshot.{snap_hex}.json")).await,
        snap
    );
    let snap_meta = signed_of(&snap)["meta"]["targets"].clone();
    assert_eq!(snap_meta, file_meta(&targets2));

    for missing in [
        "4.targets.json".to_string(),
        "1.targets.json".to_string(),
        "0.targets.json".to_string(),
        format!("targets.{}.json", sha256_hex(b"nothing")),
        "targets/nothing.json".to_string(),
    ] {
        expect_trust_error(
            &tuf_get(&srv, &gun, &missing).await,
            404,
            "METADATA_NOT_FOUND",
        );
    }
    let unknown = format!("127.0.0.1:{}/team/unknown", srv.port);
    for file in [
        "root.json",
        "timestamp.json",
        "snapshot.json",
        "1.root.json",
    ] {
        let r = tuf_get(&srv, &unknown, file).await;
        assert!(r.header("cache-control").is_none(), "{r}");
        expect_trust_error(&r, 404, "METADATA_NOT_FOUND");
    }
}

#[tokio::test]
async fn wire_changefeeds_delete_and_server_keys() {
    let srv = Server::start();
    enable_trust(&srv).await;
    let gun_a = gun(&srv, "team/feed-a");
    let gun_b = gun(&srv, "team/feed-b");

    // timestamp.key before any root: the same key on every GET; POST makes a new one.
    let k1 = tuf_get(&srv, &gun_a, "timestamp.key").await;
    k1.expect(200);
    let k2 = tuf_get(&srv, &gun_a, "timestamp.key").await;
    k2.expect(200);
    assert_eq!(k1.json(), k2.json(), "GET timestamp.key must be idempotent");
    assert!(k1.json()["keyval"]["public"].is_string(), "{k1}");
    assert!(k1.json()["keyval"]["private"].is_null(), "{k1}");
    let rotated = srv
        .send(Method::POST, &tuf_path(&gun_b, "timestamp.key"), &[], None)
        .await;
    rotated.expect(200);
    let kb = tuf_get(&srv, &gun_b, "timestamp.key").await;
    kb.expect(200);
    let posted = srv
        .send(Method::POST, &tuf_path(&gun_b, "timestamp.key"), &[], None)
        .await;
    posted.expect(200);
    assert_ne!(posted.json(), rotated.json(), "POST must create a new key");
    assert_ne!(posted.json()["keyval"], k1.json()["keyval"]);
    for bad in ["targets.key", "root.key"] {
        let r = tuf_get(&srv, &gun_a, bad).await;
        assert_eq!(r.status, 404, "{r}");
    }

    let na = Notary::new(&srv);
    na.run(&["init", &gun_a, "-p"]).ok();
    // The root lists the key GET answered before the root existed.
    let root = signed_of(&tuf_bytes(&srv, &gun_a, "root.json").await);
    let kj = k1.json();
    let kid = key_id(
        kj["keytype"].as_str().unwrap(),
        kj["keyval"]["public"].as_str().unwrap(),
    );
    assert_eq!(root["roles"]["timestamp"]["keyids"], json!([kid]), "{root}");
    na.run(&[
        "addhash",
        &gun_a,
        "x",
        "3",
        "--sha256",
        &"ab".repeat(32),
        "-p",
    ])
    .ok();
    let nb = Notary::new(&srv);
    nb.run(&["init", &gun_b, "-p"]).ok();

    let feed = srv.get("/v2/_trust/changefeed?records=10").await;
    feed.expect(200);
    let f = feed.json();
    let records = f["records"].as_array().unwrap();
    assert_eq!(f["count"], records.len(), "{feed}");
    let ids: Vec<u64> = records
        .iter()
        .map(|r| r["ID"].as_str().expect("ID is a string").parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending: {feed}");
    let of = |g: &str| -> Vec<&Value> { records.iter().filter(|r| r["GUN"] == g).collect() };
    assert_eq!(of(&gun_a).len(), 2, "{feed}");
    assert_eq!(of(&gun_b).len(), 1, "{feed}");
    let ts_a = tuf_bytes(&srv, &gun_a, "timestamp.json").await;
    let last_a = of(&gun_a)[1];
    assert_eq!(last_a["Version"], 2, "{feed}");
    assert_eq!(last_a["SHA256"], sha256_hex(&ts_a), "{feed}");
    assert_eq!(last_a["Category"], "update");
    assert!(last_a["CreatedAt"].as_str().unwrap().contains('T'));

    // Paging: one record after the first.
    let page = srv
        .get(&format!(
            "/v2/_trust/changefeed?records=1&change_id={}",
            ids[0]
        ))
        .await;
    page.expect(200);
    assert_eq!(
        page.json()["records"][0]["ID"],
        ids[1].to_string(),
        "{page}"
    );

    let per = srv
        .get(&format!("/v2/{gun_a}/_trust/changefeed?records=10"))
        .await;
    per.expect(200);
    let pr = per.json();
    assert_eq!(pr["count"], 2, "{per}");
    assert!(
        pr["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["GUN"] == gun_a.as_str()),
        "{per}"
    );
    for url in [
        "/v2/_trust/changefeed".to_string(),
        format!("/v2/{gun_a}/_trust/changefeed"),
        "/v2/_trust/changefeed?records=ten".to_string(),
        "/v2/_trust/changefeed?records=1&change_id=x".to_string(),
    ] {
        expect_trust_error(&srv.get(&url).await, 400, "INVALID_PARAMETERS");
    }

    // DELETE removes all of gun_a's data (every version), leaves gun_b, adds a deletion record.
    let del = srv.delete(&tuf_path(&gun_a, "")).await;
    del.expect(200);
    for file in ["root.json", "1.root.json", "targets.json", "timestamp.json"] {
        expect_trust_error(
            &tuf_get(&srv, &gun_a, file).await,
            404,
            "METADATA_NOT_FOUND",
        );
    }
    tuf_get(&srv, &gun_b, "root.json").await.expect(200);
    let feed = srv.get("/v2/_trust/changefeed?records=10").await.json();
    let last = feed["records"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (
            &last["GUN"],
            &last["Category"],
            &last["Version"],
            &last["SHA256"]
        ),
        (&json!(gun_a), &json!("deletion"), &json!(0), &json!("")),
        "{feed}"
    );
    // Deleting an unknown GUN is fine too (and writes no record).
    srv.delete(&tuf_path(&gun(&srv, "team/never"), ""))
        .await
        .expect(200);
    let again = srv.get("/v2/_trust/changefeed?records=10").await.json();
    assert_eq!(again["count"], feed["count"]);
}

#[tokio::test]
async fn wire_refuses_guns_of_other_hosts() {
    let srv = Server::start();
    enable_trust(&srv).await;
    let n = Notary::new(&srv);
    let theirs = "docker.io/library/alpine";
    let out = n.run(&["init", theirs, "-p"]).fails();
    assert!(!out.all().is_empty(), "{out}");
    let r = publish(&srv, theirs, &[("targets", b"{}")]).await;
    expect_trust_error(&r, 400, "INVALID_GUN");
    for file in ["root.json", "timestamp.key"] {
        let r = tuf_get(&srv, theirs, file).await;
        assert_eq!(r.status, 404, "{r}");
    }
    // Our own host names are fine, including the port-qualified localhost.
    let mine = format!("localhost:{}/team/local", srv.port);
    Notary::new(&srv).run(&["init", &mine, "-p"]).ok();
    tuf_get(&srv, &mine, "root.json").await.expect(200);
}

/// A length is a byte count: a properly signed targets file stating a negative one is refused
/// (Notary's ErrBadTargets), as is a snapshot naming a file with one (ErrBadSnapshot).
#[tokio::test]
async fn wire_refuses_negative_lengths() {
    let w = Wire::new().await;
    let mut rng = Rng::new();
    let t4 = w
        .targets(4, |t| {
            t["targets"]["t2"] = json!({"hashes": {"sha256": b64(&rng.bytes(32))}, "length": -1});
        })
        .await;
    let negative = w.sign_targets(&t4);
    let snap = w.snapshot(4, &[("targets", &negative)]).await;
    w.refused(&[], &[("targets", &negative), ("snapshot", &snap)], |r| {
        let msg = expect_invalid_update(r, "ErrBadTargets");
        assert!(msg.contains("negative length"), "{msg}");
    })
    .await;

    let t4 = w
        .targets(4, |t| {
            t["targets"]["t2"] = json!({"hashes": {"sha256": b64(&rng.bytes(32))}, "length": 7});
        })
        .await;
    let good = w.sign_targets(&t4);
    let mut s = w.signed("snapshot.json").await;
    s["version"] = json!(4);
    s["meta"]["targets"] = file_meta(&good);
    s["meta"]["targets"]["length"] = json!(-3);
    let bad_snap = envelope(&s, &[(&w.snapshot_key, &w.snapshot_id)]);
    w.refused(&[], &[("targets", &good), ("snapshot", &bad_snap)], |r| {
        let msg = expect_invalid_update(r, "ErrBadSnapshot");
        assert!(msg.contains("negative length"), "{msg}");
    })
    .await;

    // Control: the same update with true lengths is accepted.
    let snap = w.snapshot(4, &[("targets", &good)]).await;
    w.accepted(&[("targets", &good), ("snapshot", &snap)]).await;
}
