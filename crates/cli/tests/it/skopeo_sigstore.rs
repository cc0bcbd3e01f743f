//! skopeo copies an image with its cosign signature (issue 15, "skopeo copies an image with its
//! signature"): a multi-arch image signed in cosign's layout (the `sha256-<hex>.sig` tag, the
//! signature made by Python's `cryptography`) is copied by `skopeo copy --all
//! --preserve-digests` between two repositories of a server with authentication on, with
//! `use-sigstore-attachments: true` in registries.d; `berth verify --cosign-key` accepts it at
//! the destination. Without sigstore attachments skopeo leaves the signature behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_harness::*;

const LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// skopeo isolated from the user's configuration, trusting the server's CA, its registries.d
/// turning sigstore attachments on (or not).
struct Skopeo {
    home: tempfile::TempDir,
    certs: tempfile::TempDir,
}

impl Skopeo {
    fn new(srv: &Server, sigstore_attachments: bool) -> Skopeo {
        let home = tempfile::tempdir().unwrap();
        for d in ["config", "data", "cache", "run", "registries.d", "tmp"] {
            std::fs::create_dir_all(home.path().join(d)).unwrap();
        }
        std::fs::write(
            home.path().join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        std::fs::write(home.path().join("registries.conf"), "").unwrap();
        if sigstore_attachments {
            std::fs::write(
                home.path().join("registries.d/berth.yaml"),
                format!(
                    "docker:\n  {}:\n    use-sigstore-attachments: true\n",
                    srv.host()
                ),
            )
            .unwrap();
        }
        let certs = tempfile::tempdir().unwrap();
        std::fs::copy(srv.ca_path(), certs.path().join("ca.crt")).unwrap();
        Skopeo { home, certs }
    }

    /// `skopeo copy --all --preserve-digests` from one reference of the registry to another,
    /// as the owner on both sides.
    fn copy(&self, src: &str, dest: &str) -> Out {
        let h = self.home.path();
        let certs = self.certs.path().to_str().unwrap();
        let creds = format!("owner:{OWNER_PASSWORD}");
        let mut cmd = Command::new("skopeo");
        cmd.arg("--policy")
            .arg(h.join("policy.json"))
            .arg("--registries.d")
            .arg(h.join("registries.d"))
            .arg("--tmpdir")
            .arg(h.join("tmp"))
            .args([
                "copy",
                "--all",
                "--preserve-digests",
                "--src-cert-dir",
                certs,
                "--src-creds",
                &creds,
                "--dest-cert-dir",
                certs,
                "--dest-creds",
                &creds,
                &format!("docker://{src}"),
                &format!("docker://{dest}"),
            ])
            .env("HOME", h)
            .env("XDG_CONFIG_HOME", h.join("config"))
            .env("XDG_DATA_HOME", h.join("data"))
            .env("XDG_CACHE_HOME", h.join("cache"))
            .env("XDG_RUNTIME_DIR", h.join("run"))
            .env("CONTAINERS_REGISTRIES_CONF", h.join("registries.conf"))
            .env("REGISTRY_AUTH_FILE", h.join("auth.json"))
            .env_remove("DOCKER_CONFIG");
        for v in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            cmd.env_remove(v);
        }
        run(&mut cmd, None)
    }
}

/// `berth verify REF --cosign-key PUB` as the owner, with no notation configuration.
fn verify(srv: &Server, home: &Path, reference: &str, key: &Path) -> Out {
    let mut c = isolated(env!("CARGO_BIN_EXE_berth"), home);
    c.env("BERTH_CONFIG_DIR", home.join("berth-config"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("BERTH_USERNAME", "owner")
        .env("BERTH_PASSWORD", OWNER_PASSWORD)
        .args(["verify", reference, "--cosign-key"])
        .arg(key)
        .args(["--server", &srv.host(), "--ca-file"])
        .arg(srv.ca_path());
    run(&mut c, None)
}

#[tokio::test]
async fn skopeo_copies_a_cosign_signature_with_sigstore_attachments() {
    let mut srv = Server::start_with_auth();
    harness_acts_as(&mut srv, &Cred::owner());
    let mut rng = Rng::new();
    // A two-platform image under src/app:v1.
    let amd = srv.push_image("src/app", None, "amd64", &mut rng).await;
    let arm = srv.push_image("src/app", None, "arm64", &mut rng).await;
    let index = index_of(
        OCI_INDEX,
        &[
            (OCI_MANIFEST, &amd.manifest, "amd64"),
            (OCI_MANIFEST, &arm.manifest, "arm64"),
        ],
    );
    let digest = srv.push_manifest("src/app", "v1", OCI_INDEX, &index).await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let keys = home.join("keys");

    // Its cosign signature, made by Python cryptography, under cosign's tag in src/app.
    let script: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/scripts/cosign_sign.py");
    let mut py = Command::new("python3");
    py.arg(&script).arg(&keys).args([
        format!("{}/src/app", srv.host()).as_str(),
        digest.as_str(),
        amd.digest.as_str(),
    ]);
    run(&mut py, None).ok();
    let payload = std::fs::read(keys.join("good.json")).unwrap();
    let sig = std::fs::read_to_string(keys.join("good.sig")).unwrap();
    let config =
        br#"{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = srv.push_blob("src/app", config).await;
    let layer_digest = srv.push_blob("src/app", &payload).await;
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{
            "mediaType": LAYER,
            "digest": layer_digest,
            "size": payload.len(),
            "annotations": {ANNOTATION: sig},
        }],
    }))
    .unwrap();
    let sig_tag = format!("{}.sig", digest.replacen(':', "-", 1));
    srv.push_manifest("src/app", &sig_tag, OCI_MANIFEST, &m)
        .await;
    let public = keys.join("pub.pem");
    let other = keys.join("other-pub.pem");
    let src = format!("{}/src/app:v1", srv.host());
    verify(&srv, home, &src, &public).ok();

    // Without sigstore attachments skopeo copies the image and leaves the signature behind.
    let plain = Skopeo::new(&srv, false);
    plain
        .copy(&src, &format!("{}/plain/app:v1", srv.host()))
        .ok();
    srv.get(&format!("/v2/plain/app/manifests/{digest}"))
        .await
        .expect(200);
    srv.get(&format!("/v2/plain/app/manifests/{sig_tag}"))
        .await
        .expect(404);
    let out = verify(&srv, home, &format!("{}/plain/app:v1", srv.host()), &public).fails();
    assert!(out.stderr.contains("has no cosign"), "{out}");

    // With them, the signature travels: same image digest, the signature under cosign's tag,
    // and berth verify accepts it at the destination with the public key only.
    let sk = Skopeo::new(&srv, true);
    let dst = format!("{}/dst/app:v1", srv.host());
    sk.copy(&src, &dst).ok();
    let r = srv
        .get_with(
            "/v2/dst/app/manifests/v1",
            &[("accept", &format!("{OCI_INDEX}, {OCI_MANIFEST}"))],
        )
        .await;
    r.expect(200);
    assert_eq!(
        r.body, index,
        "--preserve-digests keeps the index byte for byte"
    );
    for child in [&amd, &arm] {
        srv.get(&format!("/v2/dst/app/manifests/{}", child.digest))
            .await
            .expect(200);
    }
    let r = srv
        .get_with(
            &format!("/v2/dst/app/manifests/{sig_tag}"),
            &[("accept", OCI_MANIFEST)],
        )
        .await;
    r.expect(200);
    let copied: Value = r.json();
    assert_eq!(copied["layers"][0]["mediaType"], LAYER, "{copied}");
    assert_eq!(copied["layers"][0]["annotations"][ANNOTATION], sig.as_str());
    assert_eq!(copied["layers"][0]["digest"], layer_digest.as_str());
    let out = verify(&srv, home, &dst, &public).ok();
    assert!(out.stdout.contains("verified with"), "{out}");
    // Another key does not verify it: the pass above is the signature's, not a default.
    let out = verify(&srv, home, &dst, &other).fails();
    assert!(!out.stdout.contains("verified with"), "{out}");
}
