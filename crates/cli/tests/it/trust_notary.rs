//! The real `notary` CLI (0.7) against Berth's trust API: publishing with a client-managed and a
//! server-managed snapshot, targets by file and by hash, verify, delegations, key rotations,
//! removal, remote delete, and a second client that trusts on first use and follows changes.
//!
//! Authentication is on, as users run Berth: the publishers are signers that are not Owners
//! (AcrPush + AcrImageSigner on the repository, or a repository-scoped signing token), the
//! second clients are readers (AcrPull), and what a reader may not do is refused.

use serde_json::Value;

use crate::harness::*;
use crate::trust_harness::*;

fn root_of(bytes: &[u8]) -> Value {
    signed_of(bytes)
}

fn role_keyids(root: &Value, role: &str) -> Vec<String> {
    root["roles"][role]["keyids"]
        .as_array()
        .unwrap_or_else(|| panic!("no roles.{role} in {root}"))
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

fn file_stem(p: &std::path::Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

/// Key ID of the server's public key answered by `GET <role>.key`.
async fn server_key_id(srv: &Server, gun: &str, role: &str) -> String {
    let r = tuf_get(srv, gun, &format!("{role}.key")).await;
    r.expect(200);
    let k = r.json();
    key_id(
        k["keytype"].as_str().expect("keytype"),
        k["keyval"]["public"].as_str().expect("keyval.public"),
    )
}

#[tokio::test]
async fn notary_client_managed_snapshot_publish_list_lookup_verify_and_second_client() {
    let srv = start_server();
    enable_trust(&srv).await;
    let gun = gun(&srv, "team/app");
    let alice = signer(&srv, "alice", "team/app").await;
    let bob = reader(&srv, "bob", "team/app").await;
    let n1 = Notary::with_login(&srv, &alice);
    let mut rng = Rng::new();

    n1.run(&["init", &gun, "-p"]).ok();
    // notary init makes the snapshot client-managed: the root lists the local snapshot key,
    // and the timestamp key is the server's.
    let root = root_of(&tuf_bytes(&srv, &gun, "root.json").await);
    assert_eq!(root["version"], 1, "{root}");
    let snap_file = n1.key_file("snapshot", Some(&gun));
    assert_eq!(
        role_keyids(&root, "snapshot"),
        vec![file_stem(&snap_file)],
        "{root}"
    );
    assert_eq!(
        role_keyids(&root, "timestamp"),
        vec![server_key_id(&srv, &gun, "timestamp").await],
        "{root}"
    );
    let out = n1.run(&["list", &gun]).ok();
    assert!(parse_notary_list(&out).is_empty(), "{out}");

    // One target from a file, one by hash only.
    let content = format!("hello berth {}\n", rng.hex(24));
    let file = n1.work().join("artifact.txt");
    std::fs::write(&file, &content).unwrap();
    let file_hex = sha256_hex(content.as_bytes());
    let hash_hex = rng.hex(64);
    n1.run(&["add", &gun, "v1", file.to_str().unwrap()]).ok();
    n1.run(&["addhash", &gun, "v2", "4242", "--sha256", &hash_hex])
        .ok();
    n1.run(&["publish", &gun]).ok();

    let listed = n1.list(&gun, &[]);
    let expected: Vec<(String, (String, u64, String))> = vec![
        (
            "v1".into(),
            (file_hex.clone(), content.len() as u64, "targets".into()),
        ),
        ("v2".into(), (hash_hex.clone(), 4242, "targets".into())),
    ];
    assert_eq!(listed.into_iter().collect::<Vec<_>>(), expected);

    // The targets file on the server carries what was signed (base64 sha256, length).
    let targets = signed_of(&tuf_bytes(&srv, &gun, "targets.json").await);
    assert_eq!(
        targets["targets"]["v1"]["hashes"]["sha256"],
        sha256_b64(content.as_bytes()),
        "{targets}"
    );
    assert_eq!(targets["targets"]["v2"]["length"], 4242, "{targets}");

    let out = n1.run(&["lookup", &gun, "v1"]).ok();
    assert_eq!(
        out.stdout.trim(),
        format!("v1 sha256:{file_hex} {}", content.len()),
        "{out}"
    );
    let out = n1.run_stdin(&["verify", &gun, "v1"], &content).ok();
    assert_eq!(
        out.stdout, content,
        "verify must echo the verified input: {out}"
    );
    n1.run_stdin(&["verify", &gun, "v1"], &format!("{content}tampered"))
        .fails();
    n1.run(&["lookup", &gun, "nope"]).fails();

    // A second client (a reader) with a fresh trust dir trusts on first use and sees the same
    // targets.
    let n2 = Notary::with_login(&srv, &bob);
    assert_eq!(n2.list(&gun, &[]).into_iter().collect::<Vec<_>>(), expected);
    let out = n2.run(&["lookup", &gun, "v2"]).ok();
    assert_eq!(
        out.stdout.trim(),
        format!("v2 sha256:{hash_hex} 4242"),
        "{out}"
    );

    // The first client publishes again (add + remove); the second follows.
    n1.run(&["add", &gun, "v3", file.to_str().unwrap(), "-p"])
        .ok();
    n1.run(&["remove", &gun, "v1", "-p"]).ok();
    let seen = n2.list(&gun, &[]);
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        vec!["v2".to_string(), "v3".to_string()],
        "{seen:?}"
    );
    assert_eq!(seen["v3"].0, file_hex);
    n2.run(&["lookup", &gun, "v1"]).fails();

    // Every publish produced a new timestamp and a client-signed snapshot.
    let ts = signed_of(&tuf_bytes(&srv, &gun, "timestamp.json").await);
    assert_eq!(ts["version"], 4, "init, publish, add, remove: {ts}");
    let snap_bytes = tuf_bytes(&srv, &gun, "snapshot.json").await;
    let snap: Value = serde_json::from_slice(&snap_bytes).unwrap();
    assert_eq!(
        snap["signatures"][0]["keyid"],
        file_stem(&snap_file),
        "{snap}"
    );
    assert_eq!(ts["meta"]["snapshot"], file_meta(&snap_bytes), "{ts}");

    // A reader may not delete the collection (notary asks for `*`, which it is not given).
    let out = n2.run(&["delete", &gun, "--remote"]).fails();
    assert!(out.all().contains("403"), "{out}");
    tuf_get(&srv, &gun, "root.json").await.expect(200);

    // The signer deletes the whole collection remotely: the server forgets it, new clients find
    // nothing.
    n1.run(&["delete", &gun, "--remote"]).ok();
    expect_trust_error(
        &tuf_get(&srv, &gun, "root.json").await,
        404,
        "METADATA_NOT_FOUND",
    );
    // And a CI token with trust/read + trust/write initialises the GUN again from scratch.
    let ci = signing_token(&srv, "ci-app", "team/app").await;
    let n3 = Notary::with_login(&srv, &ci);
    let out = n3.run(&["list", &gun]).fails();
    assert!(out.all().contains("does not have trust data"), "{out}");
    n3.run(&["init", &gun, "-p"]).ok();
    let root = root_of(&tuf_bytes(&srv, &gun, "root.json").await);
    assert_eq!(root["version"], 1, "{root}");
}

#[tokio::test]
async fn notary_switches_to_server_managed_snapshot_and_rotates_the_timestamp_key() {
    let srv = start_server();
    enable_trust(&srv).await;
    let gun = gun(&srv, "team/snap");
    // A CI token (trust/read + trust/write) is the publisher here; a reader follows.
    let ci = signing_token(&srv, "ci-snap", "team/snap").await;
    let carol = reader(&srv, "carol", "team/*").await;
    let n1 = Notary::with_login(&srv, &ci);
    let mut rng = Rng::new();
    n1.run(&["init", &gun, "-p"]).ok();
    let client_snap = n1.key_file("snapshot", Some(&gun));
    let root1 = root_of(&tuf_bytes(&srv, &gun, "root.json").await);
    assert_eq!(
        role_keyids(&root1, "snapshot"),
        vec![file_stem(&client_snap)]
    );
    let n2 = Notary::with_login(&srv, &carol);
    n2.list(&gun, &[]);

    // A reader may not rotate a server key (notary asks for `*`); nothing changes.
    let out = n2.run(&["key", "rotate", &gun, "snapshot", "-r"]).fails();
    assert!(out.all().contains("403"), "{out}");
    assert_eq!(tuf_bytes(&srv, &gun, "root.json").await, {
        let r = tuf_get(&srv, &gun, "1.root.json").await;
        r.expect(200);
        r.body
    });

    // `key rotate snapshot -r` asks the server for a key (POST snapshot.key) and publishes a
    // root listing it.
    n1.run(&["key", "rotate", &gun, "snapshot", "-r"]).ok();
    let root2 = root_of(&tuf_bytes(&srv, &gun, "root.json").await);
    assert_eq!(root2["version"], 2, "{root2}");
    let server_snap = server_key_id(&srv, &gun, "snapshot").await;
    assert_eq!(role_keyids(&root2, "snapshot"), vec![server_snap.clone()]);
    assert_ne!(server_snap, file_stem(&client_snap));
    assert_eq!(
        role_keyids(&root2, "root"),
        role_keyids(&root1, "root"),
        "root key must not change"
    );

    // notary drops the now useless local snapshot key; publishing works without it because
    // the server signs snapshots from now on.
    assert!(!client_snap.exists(), "local snapshot key still there");
    let content = rng.bytes(3000);
    let file = n1.work().join("blob.bin");
    std::fs::write(&file, &content).unwrap();
    n1.run(&["add", &gun, "bin", file.to_str().unwrap(), "-p"])
        .ok();
    let snap: Value =
        serde_json::from_slice(&tuf_bytes(&srv, &gun, "snapshot.json").await).unwrap();
    assert_eq!(
        snap["signatures"][0]["keyid"],
        server_snap.as_str(),
        "{snap}"
    );
    let targets_bytes = tuf_bytes(&srv, &gun, "targets.json").await;
    assert_eq!(
        snap["signed"]["meta"]["targets"]["hashes"]["sha256"],
        sha256_b64(&targets_bytes),
        "server snapshot must hash the exact stored targets bytes: {snap}"
    );

    let listed = n2.list(&gun, &[]);
    assert_eq!(
        listed.get("bin"),
        Some(&(sha256_hex(&content), 3000, "targets".to_string())),
        "{listed:?}"
    );

    // `key rotate timestamp -r`: a new server timestamp key, listed by a new root, signing the
    // timestamps from then on.
    let old_ts = server_key_id(&srv, &gun, "timestamp").await;
    assert_eq!(role_keyids(&root2, "timestamp"), vec![old_ts.clone()]);
    n1.run(&["key", "rotate", &gun, "timestamp", "-r"]).ok();
    let root3 = root_of(&tuf_bytes(&srv, &gun, "root.json").await);
    assert_eq!(root3["version"], 3, "{root3}");
    let new_ts = server_key_id(&srv, &gun, "timestamp").await;
    assert_ne!(new_ts, old_ts);
    assert_eq!(role_keyids(&root3, "timestamp"), vec![new_ts.clone()]);

    // A further publish is again visible to the other client, under the new timestamp key.
    n1.run(&["addhash", &gun, "h", "7", "--sha256", &rng.hex(64), "-p"])
        .ok();
    let ts: Value = serde_json::from_slice(&tuf_bytes(&srv, &gun, "timestamp.json").await).unwrap();
    assert_eq!(ts["signatures"][0]["keyid"], new_ts.as_str(), "{ts}");
    let seen = n2.list(&gun, &[]);
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["bin", "h"], "{seen:?}");
}

#[tokio::test]
async fn notary_delegations_add_publish_as_delegate_list_remove() {
    let srv = start_server();
    enable_trust(&srv).await;
    let gun = gun(&srv, "team/deleg");
    let alice = signer(&srv, "alice", "team/deleg").await;
    let dave = signer(&srv, "dave", "team/deleg").await;
    let erin = reader(&srv, "erin", "team/deleg").await;
    // "owner" of the collection (its root and targets keys), not of the registry.
    let owner = Notary::with_login(&srv, &alice);
    owner.run(&["init", &gun, "-p"]).ok();

    // targets/releases: an openssl key and certificate; the delegate imports the private key.
    let key = EcKey::generate(owner.work(), "releases-key");
    let cert = key.self_signed_cert("releases", 365);
    let cert_path = owner.work().join("releases.crt");
    std::fs::write(&cert_path, &cert).unwrap();
    let out = owner
        .run(&[
            "delegation",
            "add",
            &gun,
            "targets/releases",
            cert_path.to_str().unwrap(),
            "--all-paths",
            "-p",
        ])
        .ok();
    // notary reports the canonical (bare public key) ID; the metadata lists the certificate.
    let (canonical_id, _) = key.tuf_key();
    let (cert_id, cert_key) = x509_tuf_key(&cert);
    assert!(out.stdout.contains(&canonical_id), "{out}");
    let out = owner.run(&["delegation", "list", &gun]).ok();
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("targets/releases"))
        .unwrap_or_else(|| panic!("no targets/releases: {out}"));
    assert!(
        line.contains("<all paths>") && line.contains(&canonical_id),
        "{out}"
    );
    let targets = signed_of(&tuf_bytes(&srv, &gun, "targets.json").await);
    assert_eq!(
        targets["delegations"]["keys"][&cert_id], cert_key,
        "{targets}"
    );

    // targets/ops: a key made by `notary key generate -o` (its public half is enough to delegate).
    let ops_prefix = owner.work().join("ops");
    owner
        .run(&[
            "key",
            "generate",
            "ecdsa",
            "--role",
            "targets/ops",
            "-o",
            ops_prefix.to_str().unwrap(),
        ])
        .ok();
    let ops_pub = owner.work().join("ops.pem");
    assert!(
        std::fs::read_to_string(&ops_pub)
            .unwrap()
            .contains("PUBLIC KEY")
    );
    owner
        .run(&[
            "delegation",
            "add",
            &gun,
            "targets/ops",
            ops_pub.to_str().unwrap(),
            "--paths",
            "ops/",
            "-p",
        ])
        .ok();
    let targets = signed_of(&tuf_bytes(&srv, &gun, "targets.json").await);
    let mut names: Vec<&str> = targets["delegations"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["targets/ops", "targets/releases"], "{targets}");

    // The delegate (another signer) publishes into targets/releases with only the delegation key.
    let delegate = Notary::with_login(&srv, &dave);
    delegate
        .run(&[
            "key",
            "import",
            key.pem.to_str().unwrap(),
            "--role",
            "targets/releases",
        ])
        .ok();
    let payload = b"delegated payload\n";
    let pfile = delegate.work().join("payload");
    std::fs::write(&pfile, payload).unwrap();
    // While the snapshot is client-managed, a delegate (no snapshot key) cannot publish: the
    // server refuses an update without snapshot it cannot sign itself.
    let out = delegate
        .run(&[
            "add",
            &gun,
            "rel1",
            pfile.to_str().unwrap(),
            "--roles",
            "targets/releases",
            "-p",
        ])
        .fails();
    assert!(
        out.all().contains(
            "no snapshot was included in update and server does not hold current snapshot key"
        ),
        "{out}"
    );
    expect_trust_error(
        &tuf_get(&srv, &gun, "targets/releases.json").await,
        404,
        "METADATA_NOT_FOUND",
    );
    // Once the owner hands the snapshot to the server, the staged change publishes.
    owner.run(&["key", "rotate", &gun, "snapshot", "-r"]).ok();
    delegate.run(&["publish", &gun]).ok();
    // The delegate has no targets key: adding to the base role must fail client-side.
    delegate
        .run(&["add", &gun, "base", pfile.to_str().unwrap(), "-p"])
        .fails();
    let rel = tuf_get(&srv, &gun, "targets/releases.json").await;
    rel.expect(200);
    let relv: Value = rel.json();
    assert_eq!(relv["signatures"][0]["keyid"], cert_id.as_str(), "{rel}");

    let reader = Notary::with_login(&srv, &erin);
    let all = reader.list(&gun, &[]);
    assert_eq!(
        all.get("rel1"),
        Some(&(
            sha256_hex(payload),
            payload.len() as u64,
            "targets/releases".to_string()
        )),
        "{all:?}"
    );
    assert!(!all.contains_key("base"), "{all:?}");
    let only = reader.list(&gun, &["--roles", "targets/releases"]);
    assert_eq!(only.keys().collect::<Vec<_>>(), ["rel1"]);
    let out = reader.run(&["lookup", &gun, "rel1"]).ok();
    assert!(out.stdout.contains(&sha256_hex(payload)), "{out}");

    // Remove the ops delegation (notary asks for confirmation on stdin).
    owner
        .run_stdin(
            &["delegation", "remove", &gun, "targets/ops", "-p"],
            "yes\n",
        )
        .ok();
    let out = owner.run(&["delegation", "list", &gun]).ok();
    assert!(!out.stdout.contains("targets/ops"), "{out}");
    assert!(out.stdout.contains("targets/releases"), "{out}");
    let targets = signed_of(&tuf_bytes(&srv, &gun, "targets.json").await);
    assert_eq!(
        targets["delegations"]["roles"].as_array().unwrap().len(),
        1,
        "{targets}"
    );
    // The reader still sees the delegate's target after the owner's change.
    assert!(reader.list(&gun, &[]).contains_key("rel1"));
}

#[tokio::test]
async fn notary_rotates_targets_and_root_keys() {
    let srv = start_server();
    enable_trust(&srv).await;
    let gun = gun(&srv, "team/rotate");
    let alice = signer(&srv, "alice", "team/rotate").await;
    let bob = reader(&srv, "bob", "team/rotate").await;
    let n1 = Notary::with_login(&srv, &alice);
    let mut rng = Rng::new();
    n1.run(&["init", &gun, "-p"]).ok();
    let h1 = rng.hex(64);
    n1.run(&["addhash", &gun, "t1", "11", "--sha256", &h1, "-p"])
        .ok();
    let n2 = Notary::with_login(&srv, &bob);
    assert!(n2.list(&gun, &[]).contains_key("t1"));
    let root1_bytes = tuf_bytes(&srv, &gun, "root.json").await;
    let root1 = root_of(&root1_bytes);

    // Targets key rotation: new root version listing a new targets key; targets re-signed.
    n1.run(&["key", "rotate", &gun, "targets"]).ok();
    let root2 = root_of(&tuf_bytes(&srv, &gun, "root.json").await);
    assert_eq!(root2["version"], 2, "{root2}");
    assert_ne!(
        role_keyids(&root2, "targets"),
        role_keyids(&root1, "targets")
    );
    let h2 = rng.hex(64);
    n1.run(&["addhash", &gun, "t2", "22", "--sha256", &h2, "-p"])
        .ok();
    let targets: Value =
        serde_json::from_slice(&tuf_bytes(&srv, &gun, "targets.json").await).unwrap();
    assert_eq!(
        vec![
            targets["signatures"][0]["keyid"]
                .as_str()
                .unwrap()
                .to_owned()
        ],
        role_keyids(&root2, "targets"),
        "{targets}"
    );
    let seen = n2.list(&gun, &[]);
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["t1", "t2"], "{seen:?}");

    // Root key rotation (confirmed on stdin): the new root is signed by old and new root keys.
    n1.run_stdin(&["key", "rotate", &gun, "root"], "yes\n").ok();
    let root3_bytes = tuf_bytes(&srv, &gun, "root.json").await;
    let root3: Value = serde_json::from_slice(&root3_bytes).unwrap();
    assert_eq!(root3["signed"]["version"], 3, "{root3}");
    let old_root_ids = role_keyids(&root1, "root");
    let new_root_ids = role_keyids(&root3["signed"], "root");
    assert_ne!(old_root_ids, new_root_ids);
    let sig_ids: Vec<&str> = root3["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["keyid"].as_str().unwrap())
        .collect();
    assert!(
        sig_ids.contains(&old_root_ids[0].as_str()) && sig_ids.contains(&new_root_ids[0].as_str()),
        "root v3 must carry old and new root signatures: {sig_ids:?}"
    );
    // Every historical root stays available by version (clients walk the chain).
    assert_eq!(tuf_bytes(&srv, &gun, "1.root.json").await, root1_bytes);
    assert_eq!(tuf_bytes(&srv, &gun, "3.root.json").await, root3_bytes);

    // The old client walks the rotation chain and keeps following publishes.
    let h3 = rng.hex(64);
    n1.run(&["addhash", &gun, "t3", "33", "--sha256", &h3, "-p"])
        .ok();
    let seen = n2.list(&gun, &[]);
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["t1", "t2", "t3"]);
    assert_eq!(seen["t3"], (h3.clone(), 33, "targets".to_string()));
    // And a brand-new client trusts the rotated root directly.
    let n3 = Notary::with_login(&srv, &bob);
    assert_eq!(n3.list(&gun, &[]).len(), 3);
}
