//! Notary Project signatures as OCI referrers (issue 15): `berth sign --format notation` and
//! `berth verify` against a real server with authentication on, a PKI made by Python's
//! `cryptography`, an independent verifier of Berth's envelopes (`cryptography` + the oras
//! Python SDK), and tampered signatures pushed beside the good one.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_harness::*;

pub(crate) const REPO: &str = "sig/app";
const NOTARY: &str = "application/vnd.cncf.notary.signature";

pub(crate) fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/scripts")
        .join(name)
}

/// `berth ARGS` as the owner, with `home/config` as XDG_CONFIG_HOME (notation's files).
pub(crate) fn berth(srv: &Server, home: &Path, args: &[&str]) -> Out {
    let mut c = isolated(env!("CARGO_BIN_EXE_berth"), home);
    c.env("BERTH_CONFIG_DIR", home.join("berth-config"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("BERTH_USERNAME", "owner")
        .env("BERTH_PASSWORD", OWNER_PASSWORD)
        .args(args)
        .args(["--server", &srv.host(), "--ca-file"])
        .arg(srv.ca_path());
    run(&mut c, None)
}

pub(crate) fn python(args: &[&std::ffi::OsStr]) -> Out {
    let mut c = std::process::Command::new("python3");
    c.args(args);
    run(&mut c, None)
}

/// Notation's layout under XDG_CONFIG_HOME: a trust policy for `scope` and a CA store `acme`.
pub(crate) fn write_notation_config(home: &Path, scope: &str, ca_pem: &Path, identity: &str) {
    let dir = home.join("config/notation");
    let store = dir.join("truststore/x509/ca/acme");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::copy(ca_pem, store.join("root.crt")).unwrap();
    let policy = json!({
        "version": "1.0",
        "trustPolicies": [{
            "name": "acme-images",
            "registryScopes": [scope],
            "signatureVerification": {"level": "strict"},
            "trustStores": ["ca:acme"],
            "trustedIdentities": [identity],
        }, {
            "name": "unsigned-ok",
            "registryScopes": [format!("{scope}-unsigned")],
            "signatureVerification": {"level": "skip"},
        }]
    });
    std::fs::write(dir.join("trustpolicy.json"), policy.to_string()).unwrap();
}

pub(crate) async fn notary_referrers(srv: &Server, digest: &str) -> Vec<Value> {
    let r = srv
        .get(&format!(
            "/v2/{REPO}/referrers/{digest}?artifactType={}",
            enc(NOTARY)
        ))
        .await;
    r.expect(200);
    r.json()["manifests"].as_array().unwrap().clone()
}

#[tokio::test]
async fn notation_sign_then_verify_with_trust_policy_and_independent_checks() {
    let mut srv = Server::start_with_auth();
    harness_acts_as(&mut srv, &Cred::owner());
    let mut rng = Rng::new();
    let img = srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    let other_img = srv.push_image(REPO, Some("v2"), "arm64", &mut rng).await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let pki = home.join("pki");
    python(&[script("notation_pki.py").as_os_str(), pki.as_os_str()]).ok();
    let p = |f: &str| pki.join(f).to_string_lossy().into_owned();
    let scope = format!("{}/{REPO}", srv.host());
    write_notation_config(
        home,
        &scope,
        &pki.join("ca.pem"),
        "x509.subject: CN=Berth Signer, O=Acme, C=US",
    );

    // Unsigned: nothing verifies.
    let out = berth(&srv, home, &["verify", &format!("{scope}:v1")]).fails();
    assert!(
        out.stderr.contains("has no Notary Project signature"),
        "{out}"
    );

    // Sign by tag: the signature names the tag's digest.
    let out = berth(
        &srv,
        home,
        &[
            "sign",
            &format!("{scope}:v1"),
            "--format",
            "notation",
            "--key",
            &p("leaf.key"),
            "--cert",
            &p("chain.pem"),
        ],
    )
    .ok();
    assert!(out.stdout.contains(&img.digest), "{out}");
    assert!(out.stdout.contains("ES256"), "{out}");
    let listed = notary_referrers(&srv, &img.digest).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let good_sig = listed[0]["digest"].as_str().unwrap().to_owned();
    assert!(out.stdout.contains(&good_sig), "{out}");
    assert_eq!(
        listed[0]["annotations"]["io.cncf.notary.x509chain.thumbprint#S256"]
            .as_str()
            .map(|s| serde_json::from_str::<Vec<String>>(s).unwrap().len()),
        Some(2)
    );
    // The other image has no signature.
    assert!(notary_referrers(&srv, &other_img.digest).await.is_empty());

    // The independent verifier (oras SDK for the registry, cryptography for ES256).
    let out = python(&[
        script("notation_check.py").as_os_str(),
        srv.host().as_ref(),
        srv.ca_path().as_os_str(),
        "owner".as_ref(),
        OWNER_PASSWORD.as_ref(),
        REPO.as_ref(),
        img.digest.as_ref(),
        pki.join("leaf.pem").as_os_str(),
    ])
    .ok();
    assert!(out.stdout.contains("independent ok 1"), "{out}");

    // Verify with notation's default locations, by tag and by digest.
    for r in [format!("{scope}:v1"), format!("{scope}@{}", img.digest)] {
        let out = berth(&srv, home, &["verify", &r]).ok();
        assert!(
            out.stdout
                .contains(&format!("Signature {good_sig}: verified")),
            "{out}"
        );
        assert!(out.stdout.contains("CN=Berth Signer"), "{out}");
        assert!(out.stdout.contains("ca:acme"), "{out}");
    }
    // The signature of v1 is no signature of v2.
    let out = berth(&srv, home, &["verify", &format!("{scope}:v2")]).fails();
    assert!(
        out.stderr.contains("has no Notary Project signature"),
        "{out}"
    );

    // Another CA in the trust store: fails.
    let other_store = home.join("other-store");
    std::fs::create_dir_all(other_store.join("x509/ca/acme")).unwrap();
    std::fs::copy(
        pki.join("other-ca.pem"),
        other_store.join("x509/ca/acme/other.pem"),
    )
    .unwrap();
    let out = berth(
        &srv,
        home,
        &[
            "verify",
            &format!("{scope}:v1"),
            "--trust-store",
            other_store.to_str().unwrap(),
        ],
    )
    .fails();
    assert!(
        out.stdout
            .contains("does not lead to a certificate in trust store"),
        "{out}"
    );

    // An identity the policy does not trust: fails.
    let strict_other = home.join("policy-other-identity.json");
    let mut pol: Value = serde_json::from_slice(
        &std::fs::read(home.join("config/notation/trustpolicy.json")).unwrap(),
    )
    .unwrap();
    pol["trustPolicies"][0]["trustedIdentities"] =
        json!(["x509.subject: CN=Someone Else, O=Acme, C=US"]);
    std::fs::write(&strict_other, pol.to_string()).unwrap();
    let out = berth(
        &srv,
        home,
        &[
            "verify",
            &format!("{scope}:v1"),
            "--policy",
            strict_other.to_str().unwrap(),
        ],
    )
    .fails();
    assert!(out.stdout.contains("trusted identities"), "{out}");

    // A tampered copy of the envelope (payload pointing elsewhere, signature kept) pushed as a
    // second referrer: verify still passes on the good one and reports the bad one.
    let sig_manifest = srv
        .get_with(
            &format!("/v2/{REPO}/manifests/{good_sig}"),
            &[("accept", OCI_MANIFEST)],
        )
        .await;
    sig_manifest.expect(200);
    let sig_manifest = sig_manifest.json();
    let layer = sig_manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let env_bytes = srv.get(&format!("/v2/{REPO}/blobs/{layer}")).await;
    env_bytes.expect(200);
    let mut env: Value = serde_json::from_slice(&env_bytes.body).unwrap();
    let mut payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(env["payload"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    payload["targetArtifact"]["annotations"] = json!({"org.example.tampered": "yes"});
    env["payload"] = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&payload).unwrap())
        .into();
    let bad_env = serde_json::to_vec(&env).unwrap();
    srv.push_blob(REPO, &bad_env).await;
    let mut bad_manifest = sig_manifest.clone();
    bad_manifest["layers"][0]["digest"] = sha256(&bad_env).into();
    bad_manifest["layers"][0]["size"] = bad_env.len().into();
    let bad_manifest = serde_json::to_vec(&bad_manifest).unwrap();
    let bad_sig = srv
        .push_manifest(REPO, &sha256(&bad_manifest), OCI_MANIFEST, &bad_manifest)
        .await;
    assert_eq!(notary_referrers(&srv, &img.digest).await.len(), 2);
    let out = berth(&srv, home, &["verify", &format!("{scope}:v1")]).ok();
    assert!(
        out.stdout
            .contains(&format!("Signature {good_sig}: verified")),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!("Signature {bad_sig}: FAILED")),
        "{out}"
    );
    assert!(out.stdout.contains("1 of 2 signature(s)"), "{out}");

    // Only the tampered one left: verify fails, saying why.
    srv.delete(&format!("/v2/{REPO}/manifests/{good_sig}"))
        .await
        .expect(202);
    assert_eq!(notary_referrers(&srv, &img.digest).await.len(), 1);
    let out = berth(&srv, home, &["verify", &format!("{scope}:v1")]).fails();
    assert!(out.stderr.contains("does not verify"), "{out}");
    assert!(out.stderr.contains(&bad_sig), "{out}");

    // Signing again with the SEC1 form of the key brings a valid signature back.
    berth(
        &srv,
        home,
        &[
            "sign",
            &format!("{scope}@{}", img.digest),
            "--format",
            "notation",
            "--key",
            &p("leaf-sec1.key"),
            "--cert",
            &p("chain.pem"),
        ],
    )
    .ok();
    let out = berth(&srv, home, &["verify", &format!("{scope}:v1")]).ok();
    assert!(out.stdout.contains("1 of 2 signature(s)"), "{out}");

    // A key that is not the certificate's is refused before anything is pushed.
    let out = berth(
        &srv,
        home,
        &[
            "sign",
            &format!("{scope}:v2"),
            "--format",
            "notation",
            "--key",
            &p("leaf.key"),
            "--cert",
            &p("other-ca.pem"),
        ],
    )
    .fails();
    assert!(out.stderr.contains("does not belong"), "{out}");
    assert!(notary_referrers(&srv, &other_img.digest).await.is_empty());

    // An RSA 2048 signer under the same CA: PS256, verified under the same policy (its
    // subject differs, so the policy trusts any identity the CA vouches for here).
    let out = berth(
        &srv,
        home,
        &[
            "sign",
            &format!("{scope}:v2"),
            "--format",
            "notation",
            "--key",
            &p("rsa.key"),
            "--cert",
            &p("rsa-chain.pem"),
        ],
    )
    .ok();
    assert!(out.stdout.contains("PS256"), "{out}");
    let any_identity = home.join("policy-any-identity.json");
    pol["trustPolicies"][0]["trustedIdentities"] = json!(["*"]);
    std::fs::write(&any_identity, pol.to_string()).unwrap();
    let out = berth(
        &srv,
        home,
        &[
            "verify",
            &format!("{scope}:v2"),
            "--policy",
            any_identity.to_str().unwrap(),
        ],
    )
    .ok();
    assert!(out.stdout.contains("CN=Berth RSA Signer"), "{out}");
    // Under the first policy the RSA signer is not a trusted identity.
    let out = berth(&srv, home, &["verify", &format!("{scope}:v2")]).fails();
    assert!(out.stdout.contains("trusted identities"), "{out}");

    // A repository whose policy says skip verifies without signatures.
    let unsigned = format!("{REPO}-unsigned");
    srv.push_image(&unsigned, Some("v1"), "amd64", &mut rng)
        .await;
    let out = berth(
        &srv,
        home,
        &["verify", &format!("{}/{unsigned}:v1", srv.host())],
    )
    .ok();
    assert!(out.stdout.contains("skipped"), "{out}");
}
