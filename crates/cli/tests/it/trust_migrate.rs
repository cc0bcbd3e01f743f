//! `berth trust migrate` (issue 15, the bridge): DCT signatures made by the real docker and
//! notary CLIs against a server with authentication on become Notary Project signatures. A tag
//! signed through a delegation (targets/releases + alice) and two tags of one image signed by
//! the repository key (targets) are migrated, each tag with its own signature; an unsigned tag,
//! a tag repointed after signing and a tag whose targets/releases expired are skipped, saying
//! why. A dry run pushes nothing, a re-run is idempotent, `berth verify` and an independent
//! verifier accept what was pushed, the annotations record the DCT signature, and an identity
//! without push rights is refused.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_cli::Berth;
use crate::trust_harness::*;

const NOTARY_SIG: &str = "application/vnd.cncf.notary.signature";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/scripts")
        .join(name)
}

fn python(args: &[&std::ffi::OsStr]) -> Out {
    let mut c = std::process::Command::new("python3");
    c.args(args);
    run(&mut c, None)
}

/// `docker trust sign REPO:TAG` through the stand-in engine reporting `img`.
fn docker_sign(d: &Docker, repo: &str, tag: &str, img: &Image) {
    let _engine = FakeEngine::start(d, &img.digest, img.manifest.len());
    let out = d.run(&["trust", "sign", &format!("{repo}:{tag}")]).ok();
    assert!(out.stdout.contains("Successfully signed"), "{out}");
}

/// Notation's layout under `home/config`: a strict policy for `scopes` trusting CA `acme`.
fn write_notation_config(home: &Path, scopes: &[String], ca_pem: &Path) {
    let dir = home.join("config/notation");
    let store = dir.join("truststore/x509/ca/acme");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::copy(ca_pem, store.join("root.crt")).unwrap();
    let policy = json!({
        "version": "1.0",
        "trustPolicies": [{
            "name": "migrated",
            "registryScopes": scopes,
            "signatureVerification": {"level": "strict"},
            "trustStores": ["ca:acme"],
            "trustedIdentities": ["x509.subject: CN=Berth Signer, O=Acme, C=US"],
        }]
    });
    std::fs::write(dir.join("trustpolicy.json"), policy.to_string()).unwrap();
}

async fn notary_referrers(srv: &Server, repo: &str, digest: &str) -> Vec<Value> {
    let r = srv
        .get(&format!(
            "/v2/{repo}/referrers/{digest}?artifactType={}",
            enc(NOTARY_SIG)
        ))
        .await;
    r.expect(200);
    r.json()["manifests"].as_array().unwrap().clone()
}

/// The report line of `tag` (`TAG: ...`), asserting there is exactly one.
fn line<'a>(out: &'a Out, tag: &str) -> &'a str {
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with(&format!("{tag}: ")))
        .collect();
    assert_eq!(lines.len(), 1, "one line for {tag}: {out}");
    lines[0]
}

/// The signature manifest `sig` of `repo`, and the `targetArtifact` of its signed payload.
async fn signature(srv: &Server, repo: &str, sig: &str) -> (Value, Value) {
    let m = srv
        .get_with(
            &format!("/v2/{repo}/manifests/{sig}"),
            &[("accept", OCI_MANIFEST)],
        )
        .await;
    m.expect(200);
    let m = m.json();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_owned();
    let env = srv.get(&format!("/v2/{repo}/blobs/{layer}")).await;
    env.expect(200);
    let env: Value = serde_json::from_slice(&env.body).unwrap();
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(env["payload"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    (m, payload["targetArtifact"].clone())
}

/// The migration annotations of a signature manifest (`io.berth.dct.*`).
fn dct_annotations(m: &Value) -> serde_json::Map<String, Value> {
    m["annotations"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("io.berth.dct."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn version_of(raw: &[u8]) -> i64 {
    let v: Value = serde_json::from_slice(raw).unwrap();
    v["signed"]["version"].as_i64().unwrap()
}

#[tokio::test]
async fn dct_signed_tags_migrate_to_notary_signatures() {
    let srv = start_server();
    enable_trust(&srv).await;
    let app = gun(&srv, "team/app");
    let old = gun(&srv, "team/old");
    let sam = signer(&srv, "sam", "team/*").await;
    let rita = reader(&srv, "rita", "team/*").await;
    let mut rng = Rng::new();
    let v1 = srv
        .push_image("team/app", Some("v1"), "amd64", &mut rng)
        .await;
    let v2 = srv
        .push_image("team/app", Some("v2"), "amd64", &mut rng)
        .await;
    let v3 = srv
        .push_image("team/app", Some("v3"), "amd64", &mut rng)
        .await;
    let base = srv
        .push_image("team/app", Some("base"), "arm64", &mut rng)
        .await;
    let elsewhere = srv.push_image("team/app", None, "arm64", &mut rng).await;
    let old1 = srv
        .push_image("team/old", Some("old1"), "amd64", &mut rng)
        .await;

    // team/old: docker signs old1 through alice, then alice re-publishes targets/releases to
    // expire in 3 s (first, so the rest of the setup lets it expire).
    let d = Docker::logged_in(&srv, &sam);
    d.run(&["trust", "key", "generate", "alice"]).ok();
    for repo in [&old, &app] {
        d.run(&[
            "trust",
            "signer",
            "add",
            "--key",
            "alice.pub",
            "alice",
            repo,
        ])
        .ok();
    }
    docker_sign(&d, &old, "old1", &old1);
    let alice_key = std::fs::read(find_key_file(&d.private_dir(), "alice", None)).unwrap();
    let alice_key = berth_crypto::keyfile::decrypt(&alice_key, REPOSITORY_PW)
        .unwrap()
        .key;
    let current = tuf_bytes(&srv, &old, "targets/releases.json").await;
    let mut rel = berth_tuf::Signed::<berth_tuf::Targets>::parse(&current)
        .unwrap()
        .body;
    rel.version += 1;
    rel.expires = berth_tuf::time::format_rfc3339(SystemTime::now() + Duration::from_secs(3));
    let expired_at = Instant::now() + Duration::from_secs(4);
    let signed = berth_tuf::Signed::sign(rel, &[&alice_key])
        .unwrap()
        .envelope
        .into_raw();
    publish(&srv, &old, &[("targets/releases", &signed)])
        .await
        .expect(200);

    // team/app: v1 and v3 signed by docker (targets/releases and targets/alice), base and
    // stable (one image under two tags) by the notary CLI with the repository key (targets),
    // v2 never; then v3 is repointed.
    docker_sign(&d, &app, "v1", &v1);
    docker_sign(&d, &app, "v3", &v3);
    srv.push_manifest("team/app", "stable", OCI_MANIFEST, &base.manifest)
        .await;
    let n = Notary::sharing_keys_with(&srv, &d);
    for tag in ["base", "stable"] {
        n.run(&[
            "addhash",
            &app,
            tag,
            &base.manifest.len().to_string(),
            "--sha256",
            hex_of(&base.digest),
            "-p",
        ])
        .ok();
    }
    srv.push_manifest("team/app", "v3", OCI_MANIFEST, &elsewhere.manifest)
        .await;
    let inspect = d.inspect(&app);
    let alice_ids: Vec<Value> = inspect["Signers"]
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
    let repo_key_ids: Vec<Value> = inspect["AdministrativeKeys"][1]["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["ID"].clone())
        .collect();
    assert_eq!(inspect["AdministrativeKeys"][1]["Name"], "Repository");
    let signed_tags: Vec<(Value, Value)> = inspect["SignedTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["SignedTag"].clone(), t["Signers"].clone()))
        .collect();
    assert_eq!(
        signed_tags,
        [
            (json!("base"), json!(["Repo Admin"])),
            (json!("stable"), json!(["Repo Admin"])),
            (json!("v1"), json!(["alice"])),
            (json!("v3"), json!(["alice"])),
        ]
    );

    // The Notary Project side: a PKI, and a trust policy for both repositories.
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let pki = home.join("pki");
    python(&[script("notation_pki.py").as_os_str(), pki.as_os_str()]).ok();
    let p = |f: &str| pki.join(f).to_string_lossy().into_owned();
    write_notation_config(home, &[app.clone(), old.clone()], &pki.join("ca.pem"));
    let config = home.join("config").to_string_lossy().into_owned();
    let as_sam = Berth::new(&srv)
        .logged_in(&sam)
        .with_env("XDG_CONFIG_HOME", &config);
    let as_rita = Berth::new(&srv)
        .logged_in(&rita)
        .with_env("XDG_CONFIG_HOME", &config);
    let (leaf_key, chain) = (p("leaf.key"), p("chain.pem"));
    let migrate = |b: &Berth, repo: &str, extra: &[&str]| {
        let mut args = vec![
            "trust", "migrate", repo, "--key", &leaf_key, "--cert", &chain,
        ];
        args.extend_from_slice(extra);
        b.run(&args)
    };
    let unsigned_everywhere = async |srv: &Server| {
        for img in [&v1, &v2, &v3, &base, &elsewhere] {
            assert!(
                notary_referrers(srv, "team/app", &img.digest)
                    .await
                    .is_empty(),
                "{}",
                img.digest
            );
        }
    };

    // A dry run, by a reader (it needs no push rights): the report, nothing pushed.
    let out = migrate(&as_rita, &app, &["--dry-run"]).ok();
    assert!(
        line(&out, "v1").starts_with(&format!("v1: would migrate {}", v1.digest)),
        "{out}"
    );
    assert!(
        line(&out, "v1").contains("DCT roles targets/releases, targets/alice (signers: alice)"),
        "{out}"
    );
    assert!(
        line(&out, "base").contains("DCT roles targets (signers: Repo Admin)"),
        "{out}"
    );
    assert!(
        line(&out, "v2").starts_with("v2: skipped (unsigned)"),
        "{out}"
    );
    let v3_line = line(&out, "v3");
    assert!(
        v3_line.starts_with("v3: skipped (digest mismatch)")
            && v3_line.contains(&format!(
                "DCT signed {}, the tag points to {}",
                v3.digest, elsewhere.digest
            )),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!(
            "{app}: 3 to migrate, 2 skipped (1 digest mismatch, 1 unsigned), 0 error(s) (dry run)"
        )),
        "{out}"
    );
    unsigned_everywhere(&srv).await;

    // The reader cannot migrate: refused at once, clearly, nothing pushed.
    let out = migrate(&as_rita, &app, &[]).fails();
    assert!(
        out.stderr.contains("migrating needs push rights") && out.stderr.contains(&app),
        "{out}"
    );
    unsigned_everywhere(&srv).await;

    // The migration.
    let out = migrate(&as_sam, &app, &[]).ok();
    assert!(
        line(&out, "v1").starts_with(&format!("v1: migrated {}", v1.digest)),
        "{out}"
    );
    for tag in ["base", "stable"] {
        assert!(
            line(&out, tag).starts_with(&format!("{tag}: migrated {}", base.digest)),
            "{out}"
        );
    }
    assert!(
        line(&out, "v2").starts_with("v2: skipped (unsigned)"),
        "{out}"
    );
    assert!(
        line(&out, "v3").starts_with("v3: skipped (digest mismatch)"),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!(
            "{app}: 3 migrated, 2 skipped (1 digest mismatch, 1 unsigned), 0 error(s)"
        )),
        "{out}"
    );
    for img in [&v2, &v3, &elsewhere] {
        assert!(
            notary_referrers(&srv, "team/app", &img.digest)
                .await
                .is_empty()
        );
    }

    // What was pushed: one signature per tag (two for the image under two tags), its
    // annotations naming the DCT signature, the same ones inside the signed payload.
    let targets_version = version_of(&tuf_bytes(&srv, &app, "targets.json").await);
    let releases_version = version_of(&tuf_bytes(&srv, &app, "targets/releases.json").await);
    let alice_version = version_of(&tuf_bytes(&srv, &app, "targets/alice.json").await);
    let mut sigs = Vec::new();
    for (tag, img, n) in [("v1", &v1, 1), ("base", &base, 2), ("stable", &base, 2)] {
        let listed = notary_referrers(&srv, "team/app", &img.digest).await;
        assert_eq!(listed.len(), n, "{listed:?}");
        // The referrers listing shows the annotations (they are what a re-run checks).
        let listed: Vec<&Value> = listed
            .iter()
            .filter(|d| d["annotations"]["io.berth.dct.tag"] == tag)
            .collect();
        assert_eq!(listed.len(), 1, "{listed:?}");
        let sig = listed[0]["digest"].as_str().unwrap().to_owned();
        assert!(
            line(&out, tag).ends_with(&format!("Notary signature {sig}")),
            "{out}"
        );
        let (m, target) = signature(&srv, "team/app", &sig).await;
        let a = dct_annotations(&m);
        assert_eq!(a["io.berth.dct.tag"], tag);
        assert_eq!(a["io.berth.dct.gun"], app.as_str());
        assert_eq!(
            a["io.berth.dct.targets-version"],
            targets_version.to_string()
        );
        assert_eq!(
            target["annotations"],
            Value::Object(a.clone()),
            "the payload carries the same annotations"
        );
        assert_eq!(target["digest"], img.digest.as_str());
        assert_eq!(target["size"], img.manifest.len());
        let keyids: Value =
            serde_json::from_str(a["io.berth.dct.keyids"].as_str().unwrap()).unwrap();
        let versions: Value =
            serde_json::from_str(a["io.berth.dct.role-versions"].as_str().unwrap()).unwrap();
        if tag == "v1" {
            assert_eq!(a["io.berth.dct.roles"], "targets/releases,targets/alice");
            assert_eq!(a["io.berth.dct.signers"], "alice");
            assert_eq!(
                keyids,
                json!({"targets/releases": alice_ids, "targets/alice": alice_ids})
            );
            assert_eq!(
                versions,
                json!({"targets/releases": releases_version, "targets/alice": alice_version})
            );
        } else {
            assert_eq!(a["io.berth.dct.roles"], "targets");
            assert_eq!(a["io.berth.dct.signers"], "Repo Admin");
            assert_eq!(keyids, json!({ "targets": repo_key_ids }));
            assert_eq!(versions, json!({ "targets": targets_version }));
        }
        sigs.push(sig);

        // The independent verifier (oras SDK + cryptography) accepts the envelope.
        let out = python(&[
            script("notation_check.py").as_os_str(),
            srv.host().as_ref(),
            srv.ca_path().as_os_str(),
            "sam".as_ref(),
            "sam-signing-password-1".as_ref(),
            "team/app".as_ref(),
            img.digest.as_ref(),
            pki.join("leaf.pem").as_os_str(),
        ])
        .ok();
        assert!(out.stdout.contains(&format!("independent ok {n}")), "{out}");
    }

    // berth verify under the Notary trust policy: migrated tags pass, skipped ones fail.
    for tag in ["v1", "base", "stable"] {
        let out = as_rita.run(&["verify", &format!("{app}:{tag}")]).ok();
        assert!(out.stdout.contains("verified"), "{out}");
    }
    for tag in ["v2", "v3"] {
        let out = as_rita.run(&["verify", &format!("{app}:{tag}")]).fails();
        assert!(
            out.stderr.contains("has no Notary Project signature"),
            "{out}"
        );
    }

    // Again: everything is already migrated, nothing more is pushed.
    let out = migrate(&as_sam, &app, &[]).ok();
    for (tag, sig) in ["v1", "base", "stable"].iter().zip(&sigs) {
        assert_eq!(
            line(&out, tag),
            format!(
                "{tag}: skipped (already migrated): Notary signature {sig} by this certificate records this tag"
            ),
            "{out}"
        );
    }
    assert!(
        out.stdout.contains(&format!(
            "{app}: 0 migrated, 5 skipped (3 already migrated, 1 digest mismatch, 1 unsigned), 0 error(s)"
        )),
        "{out}"
    );
    for (img, n) in [(&v1, 1), (&base, 2)] {
        assert_eq!(
            notary_referrers(&srv, "team/app", &img.digest).await.len(),
            n
        );
    }

    // Another signer (RSA, same CA) in COSE envelopes: a signature of its own for every tag
    // (the first certificate's do not make these "already migrated"), verified beside the JWS
    // ones under a policy that trusts any identity the CA vouches for.
    let out = as_sam
        .run(&[
            "trust",
            "migrate",
            &app,
            "--key",
            &p("rsa.key"),
            "--cert",
            &p("rsa-chain.pem"),
            "--envelope",
            "cose",
        ])
        .ok();
    assert!(
        out.stdout.contains(&format!(
            "{app}: 3 migrated, 2 skipped (1 digest mismatch, 1 unsigned), 0 error(s)"
        )),
        "{out}"
    );
    let cose_sig = line(&out, "v1")
        .rsplit_once("Notary signature ")
        .unwrap()
        .1
        .to_owned();
    let m = srv
        .get_with(
            &format!("/v2/team/app/manifests/{cose_sig}"),
            &[("accept", OCI_MANIFEST)],
        )
        .await;
    m.expect(200);
    let m = m.json();
    assert_eq!(m["layers"][0]["mediaType"], "application/cose", "{m}");
    assert_eq!(m["annotations"]["io.berth.dct.tag"], "v1", "{m}");
    assert_eq!(
        m["annotations"]["io.berth.dct.roles"],
        "targets/releases,targets/alice"
    );
    let any_identity = home.join("any-identity.json");
    let mut pol: Value = serde_json::from_slice(
        &std::fs::read(home.join("config/notation/trustpolicy.json")).unwrap(),
    )
    .unwrap();
    pol["trustPolicies"][0]["trustedIdentities"] = json!(["*"]);
    std::fs::write(&any_identity, pol.to_string()).unwrap();
    let out = as_rita
        .run(&[
            "verify",
            &format!("{app}:v1"),
            "--policy",
            any_identity.to_str().unwrap(),
        ])
        .ok();
    assert!(
        out.stdout
            .contains(&format!("Signature {cose_sig}: verified"))
            && out.stdout.contains("2 of 2 signature(s)"),
        "{out}"
    );

    // The expired trust data of team/old: skipped as expired, not an error.
    let wait = expired_at.saturating_duration_since(Instant::now());
    tokio::time::sleep(wait).await;
    let out = migrate(&as_sam, &old, &[]).ok();
    let l = line(&out, "old1");
    assert!(
        l.starts_with("old1: skipped (expired)") && l.contains("targets/releases expired at"),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!(
            "{old}: 0 migrated, 1 skipped (1 expired), 0 error(s)"
        )),
        "{out}"
    );
    assert!(
        notary_referrers(&srv, "team/old", &old1.digest)
            .await
            .is_empty()
    );
    let out = as_rita.run(&["verify", &format!("{old}:old1")]).fails();
    assert!(
        out.stderr.contains("has no Notary Project signature"),
        "{out}"
    );

    // A key that is not the certificate's is refused before anything is read.
    let out = as_sam
        .run(&[
            "trust",
            "migrate",
            &app,
            "--key",
            &leaf_key,
            "--cert",
            &p("rsa-chain.pem"),
        ])
        .fails();
    assert!(
        out.stderr.contains("does not belong") || out.stderr.contains("not usable"),
        "{out}"
    );
}
