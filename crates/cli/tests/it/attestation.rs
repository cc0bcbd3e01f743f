//! Registry attestation (issue 15) with authentication on and real clients: the docker CLI
//! (`docker trust sign` / `revoke` through the stand-in engine) and the notary CLI sign; the
//! registry attaches a Notary Project signature made with its key to each newly signed tag's
//! manifest in repositories with attestation on, and nothing elsewhere. The attestations are
//! listed through the referrers API (the harness, and the oras Python SDK), verified with
//! `berth verify` under a trust store holding the registry's certificate (from `berth config
//! attestation certificate`) and by the independent Python `cryptography` check, and their
//! records compared with the TUF targets the server serves and `docker trust inspect` shows.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_cli::Berth;
use crate::trust_harness::*;

const NOTARY_SIG: &str = "application/vnd.cncf.notary.signature";
const SUBJECT: &str = "x509.subject: CN=Berth registry attestation, O=Berth";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/scripts")
        .join(name)
}

/// The notary signatures the registry lists for `repo@digest`.
async fn attestations(srv: &Server, repo: &str, digest: &str) -> Vec<Value> {
    let r = srv
        .get(&format!(
            "/v2/{repo}/referrers/{digest}?artifactType={}",
            enc(NOTARY_SIG)
        ))
        .await;
    r.expect(200);
    r.json()["manifests"].as_array().unwrap().clone()
}

/// `docker trust sign REPO:TAG` through the stand-in engine reporting `digest` and `size`.
fn docker_sign(d: &Docker, repo: &str, tag: &str, digest: &str, size: usize) {
    let _engine = FakeEngine::start(d, digest, size);
    let out = d.run(&["trust", "sign", &format!("{repo}:{tag}")]).ok();
    assert!(out.stdout.contains("Successfully signed"), "{out}");
}

/// The records the independent checker verified for `repo@digest`, signed and listed.
fn independent(srv: &Server, repo: &str, digest: &str, cert: &Path) -> Vec<Value> {
    let mut c = std::process::Command::new("python3");
    c.arg(script("attest_check.py"))
        .arg(srv.host())
        .arg(srv.ca_path())
        .args(["owner", OWNER_PASSWORD, repo, digest])
        .arg(cert);
    let out = run(&mut c, None).ok();
    let records: Vec<Value> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("record "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        out.stdout
            .contains(&format!("independent ok {}", records.len())),
        "{out}"
    );
    records
}

/// A role's current version as the trust server serves it.
async fn role_version(srv: &Server, gun: &str, role: &str) -> i64 {
    let v: Value =
        serde_json::from_slice(&tuf_bytes(srv, gun, &format!("{role}.json")).await).unwrap();
    v["signed"]["version"].as_i64().unwrap()
}

/// A signed record's annotation that holds JSON.
fn json_of(signed: &Value, key: &str) -> Value {
    serde_json::from_str(
        signed[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key}: {signed}")),
    )
    .unwrap()
}

/// notation's files under `home/config` (XDG_CONFIG_HOME): the registry certificate in the
/// trust store `berth`, a strict policy for `scope` trusting the registry's subject.
fn notation_config(home: &Path, scope: &str, cert: &Path) {
    let dir = home.join("config/notation");
    let store = dir.join("truststore/x509/ca/berth");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::copy(cert, store.join("registry.crt")).unwrap();
    let policy = json!({
        "version": "1.0",
        "trustPolicies": [{
            "name": "registry-attestations",
            "registryScopes": [scope],
            "signatureVerification": {"level": "strict"},
            "trustStores": ["ca:berth"],
            "trustedIdentities": [SUBJECT],
        }]
    });
    std::fs::write(dir.join("trustpolicy.json"), policy.to_string()).unwrap();
}

fn verify(b: &Berth, home: &Path, reference: &str) -> Out {
    // The Notary Project signatures only: the DCT signature would verify the tag by itself.
    let mut c = b.cmd(&["verify", reference, "--format", "notation"]);
    c.env("XDG_CONFIG_HOME", home.join("config"));
    run(&mut c, None)
}

#[tokio::test]
async fn dct_updates_are_attested_per_repository() {
    let srv = start_server();
    enable_trust(&srv).await;
    let sam = signer(&srv, "sam", "team/*").await;
    let owner = Berth::new(&srv).logged_in(&Cred::owner());
    let sam_cli = Berth::new(&srv).logged_in(&sam);
    let mut rng = Rng::new();
    let app_v1 = srv
        .push_image("team/app", Some("v1"), "amd64", &mut rng)
        .await;
    let app_v2 = srv
        .push_image("team/app", Some("v2"), "arm64", &mut rng)
        .await;
    let plain = srv
        .push_image("team/plain", Some("v1"), "amd64", &mut rng)
        .await;
    let tools = srv
        .push_image("team/tools", Some("v1"), "amd64", &mut rng)
        .await;
    let (app, plain_gun, tools_gun) = (
        gun(&srv, "team/app"),
        gun(&srv, "team/plain"),
        gun(&srv, "team/tools"),
    );

    // Off by default; the Owner turns it on for team/app and off for team/plain, a signer
    // (not an Owner) may do neither and changes nothing.
    let v = admin(&srv, Method::GET, "attestation/team/app", None).await;
    assert_eq!(v["enabled"], false, "{v}");
    let out = sam_cli
        .run(&["config", "attestation", "enable", &plain_gun])
        .fails();
    assert!(out.stderr.contains("403"), "{out}");
    let out = owner.run(&["config", "attestation", "enable", &app]).ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v,
        json!({"repository": "team/app", "set": true, "default": false, "enabled": true})
    );
    owner
        .run(&["config", "attestation", "disable", &plain_gun])
        .ok();
    let out = sam_cli
        .run(&["config", "attestation", "disable", &app])
        .fails();
    assert!(out.stderr.contains("403"), "{out}");
    let v = admin(&srv, Method::GET, "attestation", None).await;
    assert_eq!(v["default"], false, "{v}");
    assert_eq!(
        v["repositories"],
        json!([{"repository": "team/app", "enabled": true}, {"repository": "team/plain", "enabled": false}]),
        "{v}"
    );
    // Audited.
    let audit = admin(&srv, Method::GET, "audit?action=attestation.updated", None).await;
    let audit = audit.as_array().unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(
        audit
            .iter()
            .any(|a| a["target"] == "team/app" && a["detail"] == "repository default -> true"),
        "{audit:?}"
    );

    // Any logged-in user gets the certificate (anonymous callers do not).
    let work = tempfile::tempdir().unwrap();
    let home = work.path();
    let cert = home.join("registry.crt");
    sam_cli
        .run(&[
            "config",
            "attestation",
            "certificate",
            "-o",
            cert.to_str().unwrap(),
            "--server",
            &format!("https://{}", srv.host()),
        ])
        .ok();
    let pem = std::fs::read_to_string(&cert).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let anon = call_with(
        &srv,
        &client_from(&srv, fresh_ip()),
        Method::GET,
        "/api/v1/attestation/_certificate",
        &Cred::None,
        &[],
        None,
    )
    .await;
    assert_eq!(anon.status, 401, "{anon}");

    // docker signs team/app:v1 (alice's delegation and targets/releases) and team/plain:v1.
    let d = Docker::logged_in(&srv, &sam);
    d.run(&["trust", "key", "generate", "alice"]).ok();
    for g in [&app, &plain_gun] {
        d.run(&["trust", "signer", "add", "--key", "alice.pub", "alice", g])
            .ok();
    }
    docker_sign(&d, &app, "v1", &app_v1.digest, app_v1.manifest.len());
    docker_sign(&d, &plain_gun, "v1", &plain.digest, plain.manifest.len());

    // One attestation on team/app's v1, none on team/plain's v1 nor on team/app's v2.
    let listed = attestations(&srv, "team/app", &app_v1.digest).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0]["annotations"]["io.berth.dct.tag"], "v1",
        "{listed:?}"
    );
    assert!(
        attestations(&srv, "team/plain", &plain.digest)
            .await
            .is_empty()
    );
    assert!(
        attestations(&srv, "team/app", &app_v2.digest)
            .await
            .is_empty()
    );

    // The independent check (oras SDK + cryptography), and the record against the TUF data.
    let records = independent(&srv, "team/app", &app_v1.digest, &cert);
    assert_eq!(records.len(), 1);
    let signed = &records[0]["signed"];
    let inspect = d.inspect(&app);
    let alice_keys: Vec<Value> = inspect["Signers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == "alice")
        .unwrap()["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["ID"].clone())
        .collect();
    assert_eq!(signed["io.berth.dct.tag"], "v1", "{signed}");
    assert_eq!(signed["io.berth.dct.gun"], app.as_str(), "{signed}");
    assert_eq!(
        signed["io.berth.dct.length"],
        app_v1.manifest.len().to_string()
    );
    assert_eq!(signed["io.berth.dct.source"], "registry-attestation");
    assert_eq!(
        signed["io.berth.dct.roles"], "targets/releases,targets/alice",
        "{signed}"
    );
    assert_eq!(signed["io.berth.dct.signers"], "alice", "{signed}");
    assert_eq!(
        json_of(signed, "io.berth.dct.keyids"),
        json!({"targets/alice": alice_keys}),
        "{inspect}"
    );
    assert_eq!(
        signed["io.berth.dct.targets-version"],
        role_version(&srv, &app, "targets").await.to_string()
    );
    assert_eq!(
        json_of(signed, "io.berth.dct.role-versions"),
        json!({
            "targets/alice": role_version(&srv, &app, "targets/alice").await,
            "targets/releases": role_version(&srv, &app, "targets/releases").await,
        })
    );
    // docker trust inspect names the same signer for the same digest.
    assert_eq!(
        inspect["SignedTags"][0]["Digest"],
        app_v1.digest.strip_prefix("sha256:").unwrap()
    );
    assert_eq!(inspect["SignedTags"][0]["Signers"], json!(["alice"]));
    let releases: Value =
        serde_json::from_slice(&tuf_bytes(&srv, &app, "targets/releases.json").await).unwrap();
    let entry = &releases["signed"]["targets"]["v1"];
    assert_eq!(entry["length"], app_v1.manifest.len(), "{entry}");
    assert_eq!(entry["hashes"]["sha256"], sha256_b64(&app_v1.manifest));
    let time = signed["io.berth.dct.time"].as_str().unwrap();
    assert_eq!(time, records[0]["signingTime"], "{records:?}");

    // berth verify with the registry certificate in notation's trust store.
    let scope = format!("{}/team/app", srv.host());
    notation_config(home, &scope, &cert);
    let out = verify(&owner, home, &format!("{scope}:v1")).ok();
    assert!(
        out.stdout.contains(&format!(
            "Signature {}: verified",
            listed[0]["digest"].as_str().unwrap()
        )),
        "{out}"
    );
    assert!(
        out.stdout.contains("CN=Berth registry attestation"),
        "{out}"
    );
    // Another subject is not trusted: refused.
    let other = home.join("other-policy.json");
    let mut pol: Value = serde_json::from_slice(
        &std::fs::read(home.join("config/notation/trustpolicy.json")).unwrap(),
    )
    .unwrap();
    pol["trustPolicies"][0]["trustedIdentities"] = json!(["x509.subject: CN=Someone Else"]);
    std::fs::write(&other, pol.to_string()).unwrap();
    let mut c = owner.cmd(&[
        "verify",
        &format!("{scope}:v1"),
        "--format",
        "notation",
        "--policy",
    ]);
    c.arg(&other).env("XDG_CONFIG_HOME", home.join("config"));
    run(&mut c, None).fails();

    // The registry default on: team/tools (no own switch) is attested, team/plain (off) not.
    owner
        .run(&[
            "config",
            "attestation",
            "enable",
            "--default",
            "--server",
            &format!("https://{}", srv.host()),
        ])
        .ok();
    let n = Notary::with_login(&srv, &sam);
    n.run(&["init", &tools_gun, "-p"]).ok();
    let size = tools.manifest.len().to_string();
    n.run(&[
        "addhash",
        &tools_gun,
        "v1",
        &size,
        "--sha256",
        hex_of(&tools.digest),
        "-p",
    ])
    .ok();
    let listed = attestations(&srv, "team/tools", &tools.digest).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let records = independent(&srv, "team/tools", &tools.digest, &cert);
    let signed = &records[0]["signed"];
    assert_eq!(signed["io.berth.dct.tag"], "v1");
    assert_eq!(signed["io.berth.dct.roles"], "targets");
    assert_eq!(signed["io.berth.dct.signers"], "Repo Admin");
    let root: Value =
        serde_json::from_slice(&tuf_bytes(&srv, &tools_gun, "root.json").await).unwrap();
    assert_eq!(
        json_of(signed, "io.berth.dct.keyids"),
        json!({"targets": root["signed"]["roles"]["targets"]["keyids"]})
    );
    let tv = role_version(&srv, &tools_gun, "targets").await;
    assert_eq!(signed["io.berth.dct.targets-version"], tv.to_string());
    assert_eq!(
        json_of(signed, "io.berth.dct.role-versions"),
        json!({"targets": tv})
    );
    // A target whose manifest is not in the repository: the publish is accepted all the
    // same (notary lists it), the attestation fails, is logged and counted.
    let ghost = "ab".repeat(32);
    n.run(&[
        "addhash", &tools_gun, "ghost", "123", "--sha256", &ghost, "-p",
    ])
    .ok();
    let out = n.run(&["list", &tools_gun]).ok();
    assert!(out.stdout.contains(&ghost), "{out}");
    assert!(
        srv.logs()
            .contains("attestation: not attached; the trust update stands"),
        "{}",
        srv.logs()
    );
    assert!(!srv.logs().contains("PRIVATE KEY"));
    let v = admin(&srv, Method::GET, "attestation/team/plain", None).await;
    assert_eq!(
        v,
        json!({"repository": "team/plain", "set": false, "default": true, "enabled": false})
    );
    docker_sign(&d, &plain_gun, "v1", &plain.digest, plain.manifest.len());
    assert!(
        attestations(&srv, "team/plain", &plain.digest)
            .await
            .is_empty()
    );

    // A revoke attests nothing new (the old attestation stays); signing v1 again for another
    // digest attests that digest.
    d.run(&["trust", "revoke", "-y", &format!("{app}:v1")]).ok();
    assert_eq!(
        attestations(&srv, "team/app", &app_v1.digest).await.len(),
        1
    );
    docker_sign(&d, &app, "v1", &app_v2.digest, app_v2.manifest.len());
    let listed = attestations(&srv, "team/app", &app_v2.digest).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let out = verify(&owner, home, &format!("{scope}@{}", app_v2.digest)).ok();
    assert!(
        out.stdout.contains(&format!(
            "Signature {}: verified",
            listed[0]["digest"].as_str().unwrap()
        )),
        "{out}"
    );
    // Reset: team/app follows the default (on) again.
    let out = owner.run(&["config", "attestation", "reset", &app]).ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["set"], Value::Null, "{out}");
    assert_eq!(v["enabled"], true, "{out}");

    // Counted: three attached, the ghost failed.
    let m = srv.get("/metrics").await;
    m.expect(200);
    let text = String::from_utf8_lossy(&m.body).into_owned();
    assert!(
        text.contains("berth_attestations_total{outcome=\"attached\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("berth_attestations_total{outcome=\"failed\"} 1"),
        "{text}"
    );
}

/// Two nodes on one PostgreSQL database and one bucket: the switch set through one holds on
/// the other, both serve the same certificate (one registry key, made once), and a notary
/// publish through the second node is attested with it.
#[tokio::test]
async fn one_registry_key_across_nodes() {
    let mut c = crate::cluster::Cluster::start(2);
    for n in &mut c.nodes {
        harness_acts_as(n, &Cred::owner());
    }
    let (a, b) = (c.node(0), c.node(1));
    enable_trust(a).await;
    let sam = signer(a, "sam", "team/*").await;
    let mut rng = Rng::new();
    let img = a
        .push_image("team/app", Some("v1"), "amd64", &mut rng)
        .await;
    admin(
        a,
        Method::PUT,
        "attestation/team/app",
        Some(json!({"enabled": true})),
    )
    .await;
    let v = admin(b, Method::GET, "attestation/team/app", None).await;
    assert_eq!(v["enabled"], true, "{v}");
    // A push webhook: the attestation is a new manifest in the repository, told as a push.
    let rx = crate::webhooks::Receiver::start_on("127.0.0.1:0", &[]).await;
    admin(
        a,
        Method::POST,
        "webhooks",
        Some(
            json!({"name": "pushes", "uri": rx.uri("/hook"), "actions": ["push"],
                    "secret": "attestation-hook-secret-0123"}),
        ),
    )
    .await;
    // Both nodes at once ask for a key that does not exist yet: one is made and kept.
    let (ca, cb) = tokio::join!(
        a.get("/api/v1/attestation/_certificate"),
        b.get("/api/v1/attestation/_certificate")
    );
    ca.expect(200);
    cb.expect(200);
    assert_eq!(ca.body, cb.body);
    assert!(ca.body.starts_with(b"-----BEGIN CERTIFICATE-----"));
    let work = tempfile::tempdir().unwrap();
    let cert = work.path().join("registry.crt");
    std::fs::write(&cert, &ca.body).unwrap();

    let g = gun(b, "team/app");
    let n = Notary::with_login(b, &sam);
    n.run(&["init", &g, "-p"]).ok();
    let size = img.manifest.len().to_string();
    n.run(&[
        "addhash",
        &g,
        "v1",
        &size,
        "--sha256",
        hex_of(&img.digest),
        "-p",
    ])
    .ok();
    let mut listed = Vec::new();
    for node in [a, b] {
        listed = attestations(node, "team/app", &img.digest).await;
        assert_eq!(listed.len(), 1);
    }
    let sig = listed[0]["digest"].as_str().unwrap().to_owned();
    let got = rx
        .wait_for("/hook", "the attestation's push event", |g| {
            g.iter()
                .any(|g| g.event()["target"]["digest"] == sig.as_str())
        })
        .await;
    let ev = got
        .iter()
        .map(crate::webhooks::Got::event)
        .find(|e| e["target"]["digest"] == sig.as_str())
        .unwrap();
    assert_eq!(ev["action"], "push", "{ev}");
    assert_eq!(ev["target"]["repository"], "team/app", "{ev}");
    assert_eq!(
        ev["target"]["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "{ev}"
    );
    assert_eq!(ev["actor"]["name"], "berth-attestation", "{ev}");
    let records = independent(a, "team/app", &img.digest, &cert);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["signed"]["io.berth.dct.tag"], "v1");
    assert_eq!(records[0]["signed"]["io.berth.dct.gun"], g.as_str());
}
