//! The real `docker` CLI's `trust` commands against Berth (the engine is the stand-in
//! fake-docker-engine.py, so `docker trust sign` signs a manifest really pushed to Berth), and
//! interoperability with the `notary` CLI in both directions.
//!
//! Authentication is on, as users run Berth: each docker CLI does a real `docker login` (as a
//! signer that is not an Owner, a repository-scoped signing token, or a reader), and the notary
//! clients log in too.

use serde_json::{Value, json};

use crate::harness::*;
use crate::trust_harness::*;

fn file_stem(p: &std::path::Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

fn signed_tags(inspect: &Value) -> Vec<(String, String, Vec<String>)> {
    inspect["SignedTags"]
        .as_array()
        .unwrap_or_else(|| panic!("no SignedTags: {inspect}"))
        .iter()
        .map(|t| {
            let mut signers: Vec<String> = t["Signers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect();
            signers.sort();
            (
                t["SignedTag"].as_str().unwrap().to_owned(),
                t["Digest"].as_str().unwrap().to_owned(),
                signers,
            )
        })
        .collect()
}

fn signer_names(inspect: &Value) -> Vec<String> {
    inspect["Signers"]
        .as_array()
        .unwrap_or_else(|| panic!("no Signers: {inspect}"))
        .iter()
        .map(|s| s["Name"].as_str().unwrap().to_owned())
        .collect()
}

fn admin_key(inspect: &Value, name: &str) -> Vec<String> {
    let k = inspect["AdministrativeKeys"]
        .as_array()
        .unwrap_or_else(|| panic!("no AdministrativeKeys: {inspect}"))
        .iter()
        .find(|k| k["Name"] == name)
        .unwrap_or_else(|| panic!("no administrative key {name}: {inspect}"));
    k["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["ID"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn docker_trust_signer_sign_inspect_revoke_and_notary_interop() {
    let srv = start_server();
    enable_trust(&srv).await;
    let repo = gun(&srv, "team/app");
    let mut rng = Rng::new();
    // A real manifest in the registry, so the digest docker signs names actual content.
    let img = srv
        .push_image("team/app", Some("v1"), "amd64", &mut rng)
        .await;
    let hex_digest = img.digest.strip_prefix("sha256:").unwrap().to_owned();
    let size = img.manifest.len();

    // The person signing: AcrPush + AcrImageSigner on team/app; another who only reads.
    let sam = signer(&srv, "sam", "team/app").await;
    let rita = reader(&srv, "rita", "team/app").await;
    let d = Docker::logged_in(&srv, &sam);
    let out = d.run(&["trust", "key", "generate", "alice"]).ok();
    let alice_pub = std::fs::read_to_string(d.work.join("alice.pub"))
        .unwrap_or_else(|e| panic!("alice.pub not written ({e}): {out}"));
    assert!(alice_pub.contains("BEGIN PUBLIC KEY"), "{alice_pub}");
    let alice_id = file_stem(&find_key_file(&d.private_dir(), "alice", None));

    // Adding the first signer initialises the repository (root + targets, server snapshot).
    let out = d
        .run(&[
            "trust",
            "signer",
            "add",
            "--key",
            "alice.pub",
            "alice",
            &repo,
        ])
        .ok();
    assert!(
        out.stdout.contains("Successfully initialized") && out.stdout.contains("alice"),
        "{out}"
    );
    let root: Value = serde_json::from_slice(&tuf_bytes(&srv, &repo, "root.json").await).unwrap();
    let snap_key = tuf_get(&srv, &repo, "snapshot.key").await;
    snap_key.expect(200);
    let sk = snap_key.json();
    assert_eq!(
        root["signed"]["roles"]["snapshot"]["keyids"],
        json!([key_id(
            sk["keytype"].as_str().unwrap(),
            sk["keyval"]["public"].as_str().unwrap()
        )]),
        "docker makes the snapshot server-managed: {root}"
    );
    let targets = signed_of(&tuf_bytes(&srv, &repo, "targets.json").await);
    let mut deleg: Vec<&str> = targets["delegations"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    deleg.sort();
    assert_eq!(deleg, ["targets/alice", "targets/releases"], "{targets}");

    let inspect = d.inspect(&repo);
    assert_eq!(inspect["Name"], repo.as_str(), "{inspect}");
    assert!(signed_tags(&inspect).is_empty(), "{inspect}");
    assert_eq!(signer_names(&inspect), ["alice"], "{inspect}");
    assert_eq!(
        inspect["Signers"][0]["Keys"],
        json!([{"ID": alice_id}]),
        "{inspect}"
    );
    let targets_key = file_stem(&find_key_file(&d.private_dir(), "targets", Some(&repo)));
    assert_eq!(admin_key(&inspect, "Repository"), vec![targets_key.clone()]);
    let root_ids: Vec<String> = root["signed"]["roles"]["root"]["keyids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(admin_key(&inspect, "Root"), root_ids, "{inspect}");

    // Sign v1 through the stand-in engine: it reports the pushed manifest's digest and size.
    {
        let _engine = FakeEngine::start(&d, &img.digest, size);
        let out = d.run(&["trust", "sign", &format!("{repo}:v1")]).ok();
        assert!(out.stdout.contains("Successfully signed"), "{out}");
    }
    let inspect = d.inspect(&repo);
    assert_eq!(
        signed_tags(&inspect),
        vec![(
            "v1".to_string(),
            hex_digest.clone(),
            vec!["alice".to_string()]
        )],
        "{inspect}"
    );
    // berth repository show-tags (through the admin API) names the signer docker shows, with
    // the delegation role and its key.
    let shown = srv.get("/api/v1/repositories/team/app/_tags").await;
    shown.expect(200);
    let shown = shown.json();
    let v1_row = &shown["tags"][0];
    assert_eq!(v1_row["name"], "v1", "{shown}");
    assert_eq!(v1_row["signed"], true, "{shown}");
    assert_eq!(
        v1_row["signers"],
        json!([{"name": "alice", "role": "targets/alice", "keyIds": inspect["Signers"][0]["Keys"].as_array().unwrap().iter().map(|k| k["ID"].clone()).collect::<Vec<_>>()}]),
        "{shown}\n{inspect}"
    );
    assert_eq!(v1_row["signers"][0]["keyIds"], json!([alice_id]), "{shown}");
    let out = d.run(&["trust", "inspect", "--pretty", &repo]).ok();
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("v1 "))
        .unwrap_or_else(|| panic!("no v1 row: {out}"));
    assert!(row.contains(&hex_digest) && row.contains("alice"), "{out}");
    assert!(out.stdout.contains(&targets_key), "{out}");

    // On the wire: targets/releases lists v1 with docker's sha256 (base64) and the size.
    let rel = signed_of(&tuf_bytes(&srv, &repo, "targets/releases.json").await);
    assert_eq!(
        rel["targets"]["v1"],
        json!({"hashes": {"sha256": b64(&hex::decode(&hex_digest).unwrap())}, "length": size}),
        "{rel}"
    );

    // Interop: a notary client (fresh trust dir, TOFU) sees what docker signed.
    let n = Notary::with_login(&srv, &rita);
    let listed = n.list(&repo, &[]);
    let (dg, sz, role) = listed
        .get("v1")
        .unwrap_or_else(|| panic!("notary does not list v1: {listed:?}"));
    assert_eq!((dg.as_str(), *sz), (hex_digest.as_str(), size as u64));
    assert!(role.starts_with("targets/"), "{listed:?}");
    // A second docker client (fresh DOCKER_CONFIG) too.
    let d2 = Docker::logged_in(&srv, &rita);
    assert_eq!(signed_tags(&d2.inspect(&repo)).len(), 1);

    // Interop the other way: notary with docker's keys signs into the base targets role;
    // docker shows it as signed by the repository admin.
    let nd = Notary::sharing_keys_with(&srv, &d);
    let other = rng.hex(64);
    nd.run(&["addhash", &repo, "v0", "321", "--sha256", &other, "-p"])
        .ok();
    let tags = signed_tags(&d.inspect(&repo));
    assert_eq!(
        tags,
        vec![
            (
                "v0".to_string(),
                other.clone(),
                vec!["Repo Admin".to_string()]
            ),
            (
                "v1".to_string(),
                hex_digest.clone(),
                vec!["alice".to_string()]
            ),
        ]
    );

    // Revoke v1: gone for docker and for notary (the first client follows the change).
    let out = d
        .run(&["trust", "revoke", "--yes", &format!("{repo}:v1")])
        .ok();
    assert!(
        out.stdout.contains("Successfully deleted signature"),
        "{out}"
    );
    let tags = signed_tags(&d2.inspect(&repo));
    assert_eq!(
        tags.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(),
        ["v0"]
    );
    let listed = n.list(&repo, &[]);
    assert!(!listed.contains_key("v1"), "{listed:?}");

    // Remove the signer (docker asks because alice signed the last release; --force is ignored
    // by docker 28, so confirm on stdin).
    let out = d
        .run_stdin(&["trust", "signer", "remove", "alice", &repo], "y\n")
        .ok();
    assert!(out.stdout.contains("Successfully removed alice"), "{out}");
    let inspect = d2.inspect(&repo);
    assert!(signer_names(&inspect).is_empty(), "{inspect}");
    let targets = signed_of(&tuf_bytes(&srv, &repo, "targets.json").await);
    let names: Vec<&str> = targets["delegations"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"targets/alice"), "{targets}");
}

#[tokio::test]
async fn docker_trust_on_a_repository_initialised_by_notary() {
    // notary initialises (client-managed snapshot) and hands the snapshot to the server, then a
    // docker signer is added with docker's own key and signs; notary sees the delegation. The
    // publisher throughout is a CI token (trust/read + trust/write), logged in with docker.
    let srv = start_server();
    enable_trust(&srv).await;
    let repo = gun(&srv, "team/mixed");
    let mut rng = Rng::new();
    let img = srv
        .push_image("team/mixed", Some("1.0"), "arm64", &mut rng)
        .await;
    let ci = signing_token(&srv, "ci-mixed", "team/mixed").await;
    let rita = reader(&srv, "rita", "team/mixed").await;
    let d = Docker::logged_in(&srv, &ci);
    let nd = Notary::sharing_keys_with(&srv, &d);
    nd.run(&["init", &repo, "-p"]).ok();
    nd.run(&["key", "rotate", &repo, "snapshot", "-r"]).ok();

    d.run(&["trust", "key", "generate", "bob"]).ok();
    let out = d
        .run(&["trust", "signer", "add", "--key", "bob.pub", "bob", &repo])
        .ok();
    assert!(
        !out.stdout.contains("Initializing"),
        "repo already exists: {out}"
    );
    {
        let _engine = FakeEngine::start(&d, &img.digest, img.manifest.len());
        d.run(&["trust", "sign", &format!("{repo}:1.0")]).ok();
    }
    let hex_digest = img.digest.strip_prefix("sha256:").unwrap();
    let n = Notary::with_login(&srv, &rita);
    let out = n.run(&["delegation", "list", &repo]).ok();
    assert!(
        out.stdout.contains("targets/bob") && out.stdout.contains("targets/releases"),
        "{out}"
    );
    let only = n.list(&repo, &["--roles", "targets/releases"]);
    assert_eq!(
        only.get("1.0").map(|t| (t.0.as_str(), t.1)),
        Some((hex_digest, img.manifest.len() as u64)),
        "{only:?}"
    );
    let tags = signed_tags(&Docker::logged_in(&srv, &rita).inspect(&repo));
    assert_eq!(
        tags,
        vec![(
            "1.0".to_string(),
            hex_digest.to_string(),
            vec!["bob".to_string()]
        )]
    );
}
