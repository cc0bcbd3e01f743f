//! Notary Project signatures in the COSE envelope (issue 15): `berth sign --format notation
//! --envelope cose` against a real server with authentication on, checked byte by byte by an
//! independent verifier (oras SDK + cbor2 + cryptography), verified by `berth verify` beside a
//! JWS signature and a tampered COSE copy, and an RSA (PS256) signer.

use serde_json::Value;

use crate::auth_support::*;
use crate::harness::*;
use crate::notation::{REPO, berth, notary_referrers, python, script, write_notation_config};
use crate::trust_harness::*;

fn sign(srv: &Server, home: &std::path::Path, r: &str, key: &str, chain: &str, env: &str) -> Out {
    berth(
        srv,
        home,
        &[
            "sign",
            r,
            "--format",
            "notation",
            "--envelope",
            env,
            "--key",
            key,
            "--cert",
            chain,
        ],
    )
}

#[tokio::test]
async fn cose_sign_then_verify_with_independent_checks_and_tampering() {
    let mut srv = Server::start_with_auth();
    harness_acts_as(&mut srv, &Cred::owner());
    let mut rng = Rng::new();
    let img = srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    let rsa_img = srv.push_image(REPO, Some("v2"), "arm64", &mut rng).await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let pki = home.join("pki");
    python(&[script("notation_pki.py").as_os_str(), pki.as_os_str()]).ok();
    let p = |f: &str| pki.join(f).to_string_lossy().into_owned();
    let scope = format!("{}/{REPO}", srv.host());
    write_notation_config(home, &scope, &pki.join("ca.pem"), "*");

    let out = sign(
        &srv,
        home,
        &format!("{scope}:v1"),
        &p("leaf.key"),
        &p("chain.pem"),
        "cose",
    )
    .ok();
    assert!(out.stdout.contains(&img.digest), "{out}");
    assert!(out.stdout.contains("ES256, cose"), "{out}");
    let listed = notary_referrers(&srv, &img.digest).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let cose_sig = listed[0]["digest"].as_str().unwrap().to_owned();
    let m = srv
        .get_with(
            &format!("/v2/{REPO}/manifests/{cose_sig}"),
            &[("accept", OCI_MANIFEST)],
        )
        .await;
    m.expect(200);
    let sig_manifest = m.json();
    assert_eq!(sig_manifest["layers"][0]["mediaType"], "application/cose");
    assert_eq!(
        sig_manifest["artifactType"],
        "application/vnd.cncf.notary.signature"
    );
    assert_eq!(sig_manifest["subject"]["digest"], img.digest.as_str());

    let independent = |digest: &str, leaf: &str| {
        python(&[
            script("notation_cose_check.py").as_os_str(),
            srv.host().as_ref(),
            srv.ca_path().as_os_str(),
            "owner".as_ref(),
            OWNER_PASSWORD.as_ref(),
            REPO.as_ref(),
            digest.as_ref(),
            pki.join(leaf).as_os_str(),
        ])
    };
    let out = independent(&img.digest, "leaf.pem").ok();
    assert!(out.stdout.contains("independent cose ok 1"), "{out}");

    // berth verify reads it, by tag and by digest.
    for r in [format!("{scope}:v1"), format!("{scope}@{}", img.digest)] {
        let out = berth(&srv, home, &["verify", &r]).ok();
        assert!(
            out.stdout
                .contains(&format!("Signature {cose_sig}: verified")),
            "{out}"
        );
        assert!(out.stdout.contains("CN=Berth Signer"), "{out}");
        assert!(out.stdout.contains("1 of 1 signature(s)"), "{out}");
    }

    // A JWS signature beside it: both count.
    sign(
        &srv,
        home,
        &format!("{scope}:v1"),
        &p("leaf.key"),
        &p("chain.pem"),
        "jws",
    )
    .ok();
    let out = berth(&srv, home, &["verify", &format!("{scope}:v1")]).ok();
    assert!(out.stdout.contains("2 of 2 signature(s)"), "{out}");

    // A tampered COSE copy (one signature byte flipped) as a third referrer: reported, and the
    // good ones still carry the verification.
    let layer = sig_manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let blob = srv.get(&format!("/v2/{REPO}/blobs/{layer}")).await;
    blob.expect(200);
    let mut bad_env = blob.body.to_vec();
    let last = bad_env.len() - 1;
    bad_env[last] ^= 0x01;
    srv.push_blob(REPO, &bad_env).await;
    let mut bad_manifest: Value = sig_manifest.clone();
    bad_manifest["layers"][0]["digest"] = sha256(&bad_env).into();
    bad_manifest["layers"][0]["size"] = bad_env.len().into();
    let bad_manifest = serde_json::to_vec(&bad_manifest).unwrap();
    let bad_sig = srv
        .push_manifest(REPO, &sha256(&bad_manifest), OCI_MANIFEST, &bad_manifest)
        .await;
    let out = berth(&srv, home, &["verify", &format!("{scope}:v1")]).ok();
    assert!(
        out.stdout.contains(&format!("Signature {bad_sig}: FAILED")),
        "{out}"
    );
    assert!(out.stdout.contains("does not verify"), "{out}");
    assert!(out.stdout.contains("2 of 3 signature(s)"), "{out}");
    // The independent verifier refuses the tampered one too.
    let out = independent(&img.digest, "leaf.pem").fails();
    assert!(out.stderr.contains("InvalidSignature"), "{out}");

    // Only the tampered one left: verify fails and says why.
    for d in listed_digests(&srv, &img.digest).await {
        if d != bad_sig {
            srv.delete(&format!("/v2/{REPO}/manifests/{d}"))
                .await
                .expect(202);
        }
    }
    let out = berth(&srv, home, &["verify", &format!("{scope}:v1")]).fails();
    assert!(out.stderr.contains("does not verify"), "{out}");
    assert!(out.stderr.contains(&bad_sig), "{out}");

    // An RSA 2048 signer: PS256 (-37) in COSE, checked independently and by berth.
    let out = sign(
        &srv,
        home,
        &format!("{scope}:v2"),
        &p("rsa.key"),
        &p("rsa-chain.pem"),
        "cose",
    )
    .ok();
    assert!(out.stdout.contains("PS256, cose"), "{out}");
    let out = independent(&rsa_img.digest, "rsa-chain.pem").ok();
    assert!(out.stdout.contains("independent cose ok 1"), "{out}");
    let out = berth(&srv, home, &["verify", &format!("{scope}:v2")]).ok();
    assert!(out.stdout.contains("CN=Berth RSA Signer"), "{out}");
}

async fn listed_digests(srv: &Server, digest: &str) -> Vec<String> {
    notary_referrers(srv, digest)
        .await
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect()
}
