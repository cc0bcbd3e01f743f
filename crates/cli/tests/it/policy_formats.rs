//! `signed-pulls-only` across signature formats (issue 15, "Policy across formats"): a
//! repository accepting Notary Project signatures under its own trust policy and trust store,
//! one accepting cosign signatures by listed keys, one accepting DCT or notation. Signatures
//! are made by `berth sign --format notation` (PKI by Python's `cryptography`), by
//! `cryptography` alone in cosign's layout, and by the docker CLI for DCT; pulls by raw HTTP,
//! skopeo and `berth pull`, with authentication on.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::auth_support::*;
use crate::harness::*;
use crate::policy::{Skopeo, assert_denied, docker_sign, get_manifest};
use crate::trust_cli::{Berth, pulled_digest};
use crate::trust_harness::*;

pub(crate) fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/scripts")
        .join(name)
}

pub(crate) fn python(args: &[&std::ffi::OsStr]) -> Out {
    let mut c = std::process::Command::new("python3");
    c.args(args);
    run(&mut c, None)
}

/// A Notary Project trust policy for `scope` trusting the CA store `acme` (strict).
pub(crate) fn write_trust_policy(path: &Path, scope: &str) {
    let policy = json!({
        "version": "1.0",
        "trustPolicies": [{
            "name": "acme-images",
            "registryScopes": [scope],
            "signatureVerification": {"level": "strict"},
            "trustStores": ["ca:acme"],
            "trustedIdentities": ["x509.subject: CN=Berth Signer, O=Acme, C=US"],
        }]
    });
    std::fs::write(path, policy.to_string()).unwrap();
}

/// A trust store directory in notation's layout whose `ca:acme` holds `ca_pem`.
pub(crate) fn trust_store(dir: &Path, ca_pem: &Path) -> PathBuf {
    let store = dir.join("x509/ca/acme");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::copy(ca_pem, store.join("root.crt")).unwrap();
    dir.to_owned()
}

fn pull_ok(reader: &Berth, reference: &str, dest: &Path) -> String {
    reader
        .run(&["pull", reference, &format!("oci:{}", dest.display())])
        .ok();
    pulled_digest(dest)
}

fn pull_refused(reader: &Berth, reference: &str, dest: &Path, needle: &str) {
    let out = reader
        .run(&["pull", reference, &format!("oci:{}", dest.display())])
        .fails();
    assert!(
        out.stderr.contains("requires signed content") && out.stderr.contains(needle),
        "{needle:?}: {out}"
    );
    assert!(!dest.exists());
}

/// A cosign signature manifest (cosign's tag layout): an OCI config and one simple signing
/// layer carrying `sig`.
pub(crate) async fn cosign_manifest(
    srv: &Server,
    repo: &str,
    payload: &[u8],
    sig: &str,
) -> Vec<u8> {
    let config = b"{\"architecture\":\"\",\"os\":\"\",\"config\":{},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
    let config_digest = srv.push_blob(repo, config).await;
    let layer_digest = srv.push_blob(repo, payload).await;
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": layer_digest,
            "size": payload.len(),
            "annotations": {"dev.cosignproject.cosign/signature": sig},
        }],
    }))
    .unwrap()
}

#[tokio::test]
async fn notation_only_repository_takes_signatures_under_its_trust_policy() {
    let srv = start_server();
    let repo = gun(&srv, "team/n");
    let rita = reader(&srv, "rita", "team/*").await;
    let owner = Berth::new(&srv).logged_in(&Cred::owner());
    let reader_cli = Berth::new(&srv).logged_in(&rita);
    let mut rng = Rng::new();
    let v1 = srv
        .push_image("team/n", Some("v1"), "amd64", &mut rng)
        .await;
    let v2 = srv
        .push_image("team/n", Some("v2"), "amd64", &mut rng)
        .await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let pki = w.join("pki");
    python(&[script("notation_pki.py").as_os_str(), pki.as_os_str()]).ok();
    let policy_file = w.join("trustpolicy.json");
    write_trust_policy(&policy_file, &repo);
    // First the store trusts an unrelated CA only: the signature below is by an untrusted CA.
    let other_store = trust_store(&w.join("store-other"), &pki.join("other-ca.pem"));
    let acme_store = trust_store(&w.join("store-acme"), &pki.join("ca.pem"));
    let sk = Skopeo::new(&srv);

    let out = owner
        .run(&[
            "config",
            "policy",
            "update",
            &repo,
            "--signed-pulls-only",
            "true",
            "--accept",
            "notation",
            "--trust-policy",
            policy_file.to_str().unwrap(),
            "--trust-store",
            other_store.to_str().unwrap(),
        ])
        .ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["effective"]["accept"], json!(["notation"]), "{out}");
    assert_eq!(
        v["verification"]["effective"]["trustPolicy"]["trustPolicies"][0]["name"], "acme-images",
        "{out}"
    );
    let subjects = &v["verification"]["effective"]["trustStore"]["ca:acme"][0]["subjects"];
    assert!(subjects.to_string().contains("Other"), "{out}");
    // Shown back.
    let out = owner.run(&["config", "policy", "show", &repo]).ok();
    assert!(out.stdout.contains("acme-images"), "{out}");
    assert!(out.stdout.contains("\"notation\""), "{out}");

    // Policy denials reach webhooks with the caller who was refused.
    let rx = crate::webhooks::Receiver::start_on("127.0.0.1:0", &[]).await;
    owner
        .run(&[
            "webhook",
            "create",
            "denials",
            "--uri",
            &rx.uri("/denials"),
            "--actions",
            "policy",
            "--server",
            &srv.host(),
        ])
        .ok();

    // Unsigned: refused to every client, saying which formats count.
    let r = get_manifest(&srv, &rita, "team/n", "v1").await;
    let msg = assert_denied(&r, "accepted: notation");
    let got = rx
        .wait_for("/denials", "the policy denial", |got| {
            got.iter().any(|g| g.event()["action"] == "policy")
        })
        .await;
    let ev = got
        .iter()
        .map(|g| g.event())
        .find(|e| e["action"] == "policy")
        .unwrap();
    assert_eq!(ev["actor"]["name"], "rita", "{ev}");
    assert_eq!(ev["request"]["method"], "GET", "{ev}");
    assert!(msg.contains("has no Notary Project signature"), "{msg}");
    assert!(!msg.contains("Docker Content Trust:"), "{msg}");
    let out = sk
        .pull(&rita, &format!("{repo}:v1"), &w.join("s0"), false)
        .fails();
    assert!(out.stderr.contains("requires signed content"), "{out}");
    pull_refused(
        &reader_cli,
        &format!("{repo}:v1"),
        &w.join("b0"),
        "notation",
    );

    // Signed by a CA the repository's trust store does not hold: still refused.
    let p = |f: &str| pki.join(f).to_string_lossy().into_owned();
    owner
        .run(&[
            "sign",
            &format!("{repo}:v1"),
            "--format",
            "notation",
            "--key",
            &p("leaf.key"),
            "--cert",
            &p("chain.pem"),
        ])
        .ok();
    let r = get_manifest(&srv, &rita, "team/n", "v1").await;
    let msg = assert_denied(&r, "trust store");
    assert!(msg.contains("Notary Project signature sha256:"), "{msg}");
    pull_refused(
        &reader_cli,
        &format!("{repo}:v1"),
        &w.join("b1"),
        "trust store",
    );

    // The Owner trusts the signing CA: the same signature now counts (the verdict cache is
    // keyed by the material, so nothing stale is kept).
    owner
        .run(&[
            "config",
            "policy",
            "update",
            &repo,
            "--trust-store",
            acme_store.to_str().unwrap(),
        ])
        .ok();
    get_manifest(&srv, &rita, "team/n", "v1").await.expect(200);
    get_manifest(&srv, &rita, "team/n", &v1.digest)
        .await
        .expect(200);
    sk.pull(&rita, &format!("{repo}:v1"), &w.join("s1"), false)
        .ok();
    assert_eq!(
        pull_ok(&reader_cli, &format!("{repo}:v1"), &w.join("b2")),
        v1.digest
    );
    // v2 carries no signature; v1's does not cover it, by tag or by digest.
    let r = get_manifest(&srv, &rita, "team/n", "v2").await;
    assert_denied(&r, "has no Notary Project signature");
    let r = get_manifest(&srv, &rita, "team/n", &v2.digest).await;
    assert_denied(
        &r,
        &format!("{} has no Notary Project signature", v2.digest),
    );
    // A tag moved onto unsigned content is refused although the tag once was signed.
    srv.push_manifest("team/n", "v1", OCI_MANIFEST, &v2.manifest)
        .await;
    let r = get_manifest(&srv, &rita, "team/n", "v1").await;
    assert_denied(&r, "has no Notary Project signature");

    // Bad material is refused before anything is stored.
    let bad = w.join("bad.json");
    std::fs::write(&bad, r#"{"version":"1.0","trustPolicies":"no"}"#).unwrap();
    let out = owner
        .run(&[
            "config",
            "policy",
            "update",
            &repo,
            "--trust-policy",
            bad.to_str().unwrap(),
        ])
        .fails();
    assert!(out.stderr.contains("trustPolicy"), "{out}");
    let out = owner
        .run(&["config", "policy", "update", &repo, "--accept", "gpg"])
        .fails();
    assert!(out.stderr.contains("unknown signature format"), "{out}");
}

#[tokio::test]
async fn cosign_repository_takes_signatures_by_listed_keys_only() {
    let srv = start_server();
    let repo = gun(&srv, "team/c");
    let rita = reader(&srv, "rita", "team/*").await;
    let owner = Berth::new(&srv).logged_in(&Cred::owner());
    let reader_cli = Berth::new(&srv).logged_in(&rita);
    let mut rng = Rng::new();
    let v1 = srv
        .push_image("team/c", Some("v1"), "amd64", &mut rng)
        .await;
    let v2 = srv
        .push_image("team/c", Some("v2"), "arm64", &mut rng)
        .await;
    let v3 = srv
        .push_image("team/c", Some("v3"), "amd64", &mut rng)
        .await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let keys = w.join("keys");
    python(&[
        script("cosign_sign.py").as_os_str(),
        keys.as_os_str(),
        repo.as_ref(),
        v1.digest.as_ref(),
        v2.digest.as_ref(),
    ])
    .ok();
    let pubkey = keys.join("pub.pem").to_string_lossy().into_owned();
    let other_key = keys.join("other-pub.pem").to_string_lossy().into_owned();
    let sk = Skopeo::new(&srv);

    // A good signature of v1 under cosign's tag.
    let good = std::fs::read(keys.join("good.json")).unwrap();
    let good_sig = std::fs::read_to_string(keys.join("good.sig")).unwrap();
    let m = cosign_manifest(&srv, "team/c", &good, &good_sig).await;
    let sig_tag = format!("{}.sig", v1.digest.replacen(':', "-", 1));
    srv.push_manifest("team/c", &sig_tag, OCI_MANIFEST, &m)
        .await;
    // A valid signature of v2's digest stored under v3's signature tag: it names another digest.
    let wrong = std::fs::read(keys.join("wrong-digest.json")).unwrap();
    let wrong_sig = std::fs::read_to_string(keys.join("wrong-digest.sig")).unwrap();
    let m = cosign_manifest(&srv, "team/c", &wrong, &wrong_sig).await;
    let sig_tag3 = format!("{}.sig", v3.digest.replacen(':', "-", 1));
    srv.push_manifest("team/c", &sig_tag3, OCI_MANIFEST, &m)
        .await;

    // Only another key is listed: v1's signature is by an unknown key.
    let out = owner
        .run(&[
            "config",
            "policy",
            "update",
            &repo,
            "--signed-pulls-only",
            "true",
            "--accept",
            "cosign",
            "--cosign-key",
            &other_key,
        ])
        .ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["effective"]["accept"], json!(["cosign"]), "{out}");
    assert_eq!(
        v["verification"]["effective"]["cosignKeys"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{out}"
    );
    let r = get_manifest(&srv, &rita, "team/c", "v1").await;
    let msg = assert_denied(&r, "accepted: cosign");
    assert!(msg.contains("no listed cosign key verifies it"), "{msg}");
    let out = sk
        .pull(&rita, &format!("{repo}:v1"), &w.join("s0"), false)
        .fails();
    assert!(out.stderr.contains("requires signed content"), "{out}");
    pull_refused(&reader_cli, &format!("{repo}:v1"), &w.join("b0"), "cosign");

    // The signer's key listed: allowed, by tag and digest, to skopeo and berth.
    owner
        .run(&["config", "policy", "update", &repo, "--cosign-key", &pubkey])
        .ok();
    get_manifest(&srv, &rita, "team/c", "v1").await.expect(200);
    get_manifest(&srv, &rita, "team/c", &v1.digest)
        .await
        .expect(200);
    sk.pull(&rita, &format!("{repo}:v1"), &w.join("s1"), false)
        .ok();
    assert_eq!(
        pull_ok(&reader_cli, &format!("{repo}:v1"), &w.join("b1")),
        v1.digest
    );
    // v2 has no signature; v3's is by the listed key but of v2's digest.
    let r = get_manifest(&srv, &rita, "team/c", "v2").await;
    assert_denied(&r, "has no cosign signature");
    let r = get_manifest(&srv, &rita, "team/c", &v3.digest).await;
    let msg = assert_denied(&r, "cosign signature sha256:");
    assert!(msg.contains("no listed cosign key verifies it"), "{msg}");
    // Back to the default (DCT only): trust is off, so nothing is signed.
    owner
        .run(&["config", "policy", "update", &repo, "--accept", "default"])
        .ok();
    let out = owner.run(&["config", "policy", "show", &repo]).ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["effective"].get("accept"),
        None,
        "DCT alone is not listed: {out}"
    );
    let r = get_manifest(&srv, &rita, "team/c", "v1").await;
    let msg = assert_denied(&r, "content trust is disabled");
    assert!(
        !msg.contains("accepted:"),
        "DCT-only refusals read as before: {msg}"
    );
}

#[tokio::test]
async fn dct_or_notation_either_suffices() {
    let srv = start_server();
    enable_trust(&srv).await;
    let repo = gun(&srv, "team/dn");
    let sam = signer(&srv, "sam", "team/*").await;
    let rita = reader(&srv, "rita", "team/*").await;
    let owner = Berth::new(&srv).logged_in(&Cred::owner());
    let mut rng = Rng::new();
    let v1 = srv
        .push_image("team/dn", Some("v1"), "amd64", &mut rng)
        .await;
    let v2 = srv
        .push_image("team/dn", Some("v2"), "amd64", &mut rng)
        .await;
    srv.push_image("team/dn", Some("v3"), "amd64", &mut rng)
        .await;
    let v4 = srv
        .push_image("team/dn", Some("v4"), "arm64", &mut rng)
        .await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let pki = w.join("pki");
    python(&[script("notation_pki.py").as_os_str(), pki.as_os_str()]).ok();
    let policy_file = w.join("trustpolicy.json");
    write_trust_policy(&policy_file, &repo);
    let store = trust_store(&w.join("store"), &pki.join("ca.pem"));
    owner
        .run(&[
            "config",
            "policy",
            "update",
            &repo,
            "--signed-pulls-only",
            "true",
            "--accept",
            "dct,notation",
            "--trust-policy",
            policy_file.to_str().unwrap(),
            "--trust-store",
            store.to_str().unwrap(),
        ])
        .ok();

    // v1: a Notary Project signature only.
    let p = |f: &str| pki.join(f).to_string_lossy().into_owned();
    owner
        .run(&[
            "sign",
            &format!("{repo}:v1"),
            "--format",
            "notation",
            "--key",
            &p("leaf.key"),
            "--cert",
            &p("chain.pem"),
        ])
        .ok();
    // v4: a Notary Project signature in a COSE envelope.
    owner
        .run(&[
            "sign",
            &format!("{repo}:v4"),
            "--format",
            "notation",
            "--envelope",
            "cose",
            "--key",
            &p("leaf.key"),
            "--cert",
            &p("chain.pem"),
        ])
        .ok();
    // v2: DCT only (docker trust sign).
    let d = Docker::logged_in(&srv, &sam);
    d.run(&["trust", "key", "generate", "alice"]).ok();
    d.run(&[
        "trust",
        "signer",
        "add",
        "--key",
        "alice.pub",
        "alice",
        &repo,
    ])
    .ok();
    docker_sign(&d, &repo, "v2", &v2.digest, v2.manifest.len());

    for reference in [
        "v1",
        v1.digest.as_str(),
        "v2",
        v2.digest.as_str(),
        "v4",
        v4.digest.as_str(),
    ] {
        get_manifest(&srv, &rita, "team/dn", reference)
            .await
            .expect(200);
    }
    // v3: neither; the refusal names both formats and both reasons.
    let r = get_manifest(&srv, &rita, "team/dn", "v3").await;
    let msg = assert_denied(&r, "accepted: dct,notation");
    assert!(
        msg.contains("Docker Content Trust: tag v3 is not signed"),
        "{msg}"
    );
    assert!(msg.contains("has no Notary Project signature"), "{msg}");
}
