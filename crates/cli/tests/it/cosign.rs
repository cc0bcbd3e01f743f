//! Cosign signatures (issue 15): `berth verify --cosign-key` against a real server with
//! authentication on, the signatures made independently by Python's `cryptography` and pushed
//! through the registry API in cosign's layout (the `sha256-<hex>.sig` tag, and a referrer).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_harness::*;

const REPO: &str = "cosign/app";
const LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// `berth ARGS` as the owner, with an empty `home/config` as XDG_CONFIG_HOME (no notation files).
fn berth(srv: &Server, home: &Path, args: &[&str]) -> Out {
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

/// A cosign signature manifest: an OCI config, one simple signing layer carrying `sig`, and
/// optionally a subject (the referrer form).
async fn signature_manifest(
    srv: &Server,
    payload: &[u8],
    sig: &str,
    subject: Option<&Image>,
) -> Vec<u8> {
    signature_manifest_in(srv, REPO, payload, sig, subject).await
}

/// [`signature_manifest`] with its blobs pushed to `repo`.
pub(crate) async fn signature_manifest_in(
    srv: &Server,
    repo: &str,
    payload: &[u8],
    sig: &str,
    subject: Option<&Image>,
) -> Vec<u8> {
    let config = b"{\"architecture\":\"\",\"os\":\"\",\"config\":{},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
    let config_digest = srv.push_blob(repo, config).await;
    let layer_digest = srv.push_blob(repo, payload).await;
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": LAYER,
            "digest": layer_digest,
            "size": payload.len(),
            "annotations": {ANNOTATION: sig},
        }],
    });
    if let Some(img) = subject {
        m["artifactType"] = json!("application/vnd.dev.cosign.artifact.sig.v1+json");
        m["subject"] = json!({
            "mediaType": OCI_MANIFEST,
            "digest": img.digest,
            "size": img.manifest.len(),
        });
    }
    serde_json::to_vec(&m).unwrap()
}

fn read(dir: &Path, f: &str) -> Vec<u8> {
    std::fs::read(dir.join(f)).unwrap()
}

#[tokio::test]
async fn cosign_signatures_verify_with_the_public_key_only() {
    let mut srv = Server::start_with_auth();
    harness_acts_as(&mut srv, &Cred::owner());
    let mut rng = Rng::new();
    let img = srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    let other = srv.push_image(REPO, Some("v2"), "arm64", &mut rng).await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let keys = home.join("keys");
    let scope = format!("{}/{REPO}", srv.host());
    let script: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/scripts/cosign_sign.py");
    let mut py = std::process::Command::new("python3");
    py.arg(&script)
        .arg(&keys)
        .args([scope.as_str(), img.digest.as_str(), other.digest.as_str()]);
    run(&mut py, None).ok();
    let pubkey = keys.join("pub.pem").to_string_lossy().into_owned();
    let other_key = keys.join("other-pub.pem").to_string_lossy().into_owned();
    let v1 = format!("{scope}:v1");
    let sig_tag = format!("{}.sig", img.digest.replacen(':', "-", 1));

    // Without --cosign-key and without a notation trust policy: still an error, as before.
    let out = berth(&srv, home, &["verify", &v1]).fails();
    assert!(out.stderr.contains("reading the trust policy"), "{out}");
    // Unsigned: nothing verifies, but the missing trust policy is not the complaint.
    let out = berth(&srv, home, &["verify", &v1, "--cosign-key", &pubkey]).fails();
    assert!(
        out.stderr
            .contains("has no cosign or Notary Project signature"),
        "{out}"
    );

    // The good signature under cosign's tag.
    let good = read(&keys, "good.json");
    let good_sig = String::from_utf8(read(&keys, "good.sig")).unwrap();
    let m = signature_manifest(&srv, &good, &good_sig, None).await;
    let sig_digest = srv.push_manifest(REPO, &sig_tag, OCI_MANIFEST, &m).await;
    for r in [v1.clone(), format!("{scope}@{}", img.digest)] {
        let out = berth(&srv, home, &["verify", &r, "--cosign-key", &pubkey]).ok();
        assert!(
            out.stdout.contains(&format!(
                "Cosign signature {sig_digest} layer 0: verified with {pubkey}"
            )),
            "{out}"
        );
        assert!(out.stdout.contains("1 cosign signature"), "{out}");
    }
    // Repeated keys: the right one among others verifies.
    berth(
        &srv,
        home,
        &[
            "verify",
            &v1,
            "--cosign-key",
            &other_key,
            "--cosign-key",
            &pubkey,
        ],
    )
    .ok();
    // Another key: fails.
    let out = berth(&srv, home, &["verify", &v1, "--cosign-key", &other_key]).fails();
    assert!(out.stdout.contains("does not verify with the key"), "{out}");
    // The signature of v1 is no signature of v2 (v2 has no .sig tag).
    let out = berth(
        &srv,
        home,
        &["verify", &format!("{scope}:v2"), "--cosign-key", &pubkey],
    )
    .fails();
    assert!(out.stderr.contains("has no cosign"), "{out}");

    // A validly signed payload naming another digest, under v1's tag: fails.
    let wrong = read(&keys, "wrong-digest.json");
    let wrong_sig = String::from_utf8(read(&keys, "wrong-digest.sig")).unwrap();
    let m = signature_manifest(&srv, &wrong, &wrong_sig, None).await;
    srv.push_manifest(REPO, &sig_tag, OCI_MANIFEST, &m).await;
    let out = berth(&srv, home, &["verify", &v1, "--cosign-key", &pubkey]).fails();
    assert!(
        out.stdout.contains(&format!("not of {}", img.digest)),
        "{out}"
    );

    // A tampered signature (last byte flipped) over the good payload: fails.
    let mut bad = STANDARD.decode(good_sig.trim()).unwrap();
    *bad.last_mut().unwrap() ^= 1;
    let m = signature_manifest(&srv, &good, &STANDARD.encode(&bad), None).await;
    let bad_digest = srv.push_manifest(REPO, &sig_tag, OCI_MANIFEST, &m).await;
    let out = berth(&srv, home, &["verify", &v1, "--cosign-key", &pubkey]).fails();
    assert!(
        out.stdout
            .contains(&format!("Cosign signature {bad_digest} layer 0: FAILED")),
        "{out}"
    );
    assert!(out.stdout.contains("does not verify"), "{out}");

    // The good signature as a referrer, beside the tampered tag: the referrer verifies.
    let m = signature_manifest(&srv, &good, &good_sig, Some(&img)).await;
    let referrer = srv.push_manifest(REPO, &sha256(&m), OCI_MANIFEST, &m).await;
    let out = berth(&srv, home, &["verify", &v1, "--cosign-key", &pubkey]).ok();
    assert!(
        out.stdout
            .contains(&format!("Cosign signature {referrer} layer 0: verified")),
        "{out}"
    );
    assert!(
        out.stdout
            .contains(&format!("Cosign signature {bad_digest} layer 0: FAILED")),
        "{out}"
    );
    // ...and only for v1's key.
    berth(&srv, home, &["verify", &v1, "--cosign-key", &other_key]).fails();

    // A --policy named but missing is still an error.
    let missing = home.join("no-such-policy.json");
    let out = berth(
        &srv,
        home,
        &[
            "verify",
            &v1,
            "--cosign-key",
            &pubkey,
            "--policy",
            missing.to_str().unwrap(),
        ],
    )
    .fails();
    assert!(out.stderr.contains("reading the trust policy"), "{out}");
    // A notation policy that says skip (for this scope) relaxes notation only: the cosign key must still verify.
    let dir = home.join("config/notation");
    std::fs::create_dir_all(&dir).unwrap();
    let policy = json!({
        "version": "1.0",
        "trustPolicies": [{
            "name": "skip-app",
            "registryScopes": [scope],
            "signatureVerification": {"level": "skip"},
        }]
    });
    std::fs::write(dir.join("trustpolicy.json"), policy.to_string()).unwrap();
    let out = berth(&srv, home, &["verify", &v1, "--cosign-key", &other_key]).fails();
    assert!(out.stdout.contains("skipped"), "{out}");
    let out = berth(&srv, home, &["verify", &v1, "--cosign-key", &pubkey]).ok();
    assert!(
        out.stdout.contains("0 Notary Project and 1 cosign"),
        "{out}"
    );

    // A Notary Project signature beside the cosign ones, under a strict policy: both count,
    // and either one is enough.
    let pki = home.join("pki");
    let mut py = std::process::Command::new("python3");
    py.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/scripts/notation_pki.py"))
        .arg(&pki);
    run(&mut py, None).ok();
    let store = dir.join("truststore/x509/ca/acme");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::copy(pki.join("ca.pem"), store.join("root.crt")).unwrap();
    let policy = json!({
        "version": "1.0",
        "trustPolicies": [{
            "name": "acme",
            "registryScopes": [scope],
            "signatureVerification": {"level": "strict"},
            "trustStores": ["ca:acme"],
            "trustedIdentities": ["*"],
        }]
    });
    std::fs::write(dir.join("trustpolicy.json"), policy.to_string()).unwrap();
    let p = |f: &str| pki.join(f).to_string_lossy().into_owned();
    let sign = [
        "sign",
        &v1,
        "--format",
        "notation",
        "--key",
        &p("leaf.key"),
        "--cert",
        &p("chain.pem"),
    ];
    berth(&srv, home, &sign).ok();
    let out = berth(&srv, home, &["verify", &v1, "--cosign-key", &pubkey]).ok();
    assert!(
        out.stdout.contains("1 Notary Project and 1 cosign"),
        "{out}"
    );
    let out = berth(&srv, home, &["verify", &v1, "--cosign-key", &other_key]).ok();
    assert!(
        out.stdout.contains("1 Notary Project and 0 cosign"),
        "{out}"
    );
    // Without --cosign-key, notation alone as before.
    let out = berth(&srv, home, &["verify", &v1]).ok();
    assert!(!out.stdout.contains("Cosign signature"), "{out}");
    assert!(out.stdout.contains("1 of 1 signature"), "{out}");
}
