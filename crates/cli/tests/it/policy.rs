//! Server-enforced signing policy with real clients and authentication on: skopeo and `berth
//! pull` are refused unsigned content (DENIED), the docker CLI signs and revokes through the
//! stand-in engine, trust data that expires is refused, an index's children follow the index's
//! signature; a signed tag cannot be repointed by a plain push; `berth config policy` shows and
//! updates the default and a repository's override, and only an Owner may.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use reqwest::Method;
use serde_json::{Value, json};

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_cli::{Berth, new_layout, oci, pulled_digest};
use crate::trust_harness::*;

/// skopeo isolated from the user's configuration, trusting the server's CA.
pub(crate) struct Skopeo {
    home: tempfile::TempDir,
    certs: tempfile::TempDir,
}

impl Skopeo {
    pub(crate) fn new(srv: &Server) -> Skopeo {
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
        let certs = tempfile::tempdir().unwrap();
        std::fs::copy(srv.ca_path(), certs.path().join("ca.crt")).unwrap();
        Skopeo { home, certs }
    }

    fn run(&self, args: &[&str]) -> Out {
        let h = self.home.path();
        let mut cmd = Command::new("skopeo");
        cmd.arg("--policy")
            .arg(h.join("policy.json"))
            .arg("--registries.d")
            .arg(h.join("registries.d"))
            .arg("--tmpdir")
            .arg(h.join("tmp"))
            .args(args)
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

    /// `skopeo copy` from the registry (`docker://REF`) into an OCI layout, as `cred`.
    pub(crate) fn pull(&self, cred: &Cred, reference: &str, dest: &Path, all: bool) -> Out {
        let certs = self.certs.path().to_str().unwrap().to_owned();
        let creds = creds(cred);
        let src = format!("docker://{reference}");
        let dest = format!("oci:{}", dest.display());
        let mut args = vec![
            "copy",
            "--preserve-digests",
            "--src-cert-dir",
            &certs,
            "--src-creds",
            &creds,
        ];
        if all {
            args.push("--all");
        }
        args.extend([src.as_str(), dest.as_str()]);
        self.run(&args)
    }

    /// `skopeo copy` of an OCI layout reference into the registry, as `cred`.
    fn push(&self, cred: &Cred, src: &str, reference: &str) -> Out {
        let certs = self.certs.path().to_str().unwrap().to_owned();
        let creds = creds(cred);
        let dest = format!("docker://{reference}");
        self.run(&[
            "copy",
            "--preserve-digests",
            "--dest-cert-dir",
            &certs,
            "--dest-creds",
            &creds,
            src,
            &dest,
        ])
    }
}

fn server_url(srv: &Server) -> String {
    format!("https://{}", srv.host())
}

fn creds(cred: &Cred) -> String {
    match cred {
        Cred::Basic(u, p) => format!("{u}:{p}"),
        other => panic!("skopeo logs in with a user name and password, not {other:?}"),
    }
}

/// A manifest GET as `cred` (the owner by default through the harness client).
pub(crate) async fn get_manifest(srv: &Server, cred: &Cred, repo: &str, reference: &str) -> Resp {
    call(
        srv,
        Method::GET,
        &format!("/v2/{repo}/manifests/{reference}"),
        cred,
        &[("accept", &format!("{OCI_MANIFEST}, {OCI_INDEX}"))],
        None,
    )
    .await
}

/// Asserts a DENIED answer whose message says `needle` (and that signed content is required).
pub(crate) fn assert_denied(r: &Resp, needle: &str) -> String {
    r.expect_error(403, "DENIED");
    let msg = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
    msg
}

fn b(c: &Berth, args: &[&str]) -> Out {
    c.run(args)
}

/// `docker trust sign REPO:TAG` through the stand-in engine reporting `digest` and `size`.
pub(crate) fn docker_sign(d: &Docker, repo: &str, tag: &str, digest: &str, size: usize) {
    let _engine = FakeEngine::start(d, digest, size);
    let out = d.run(&["trust", "sign", &format!("{repo}:{tag}")]).ok();
    assert!(out.stdout.contains("Successfully signed"), "{out}");
}

#[tokio::test]
async fn signed_pulls_only_with_skopeo_docker_notary_and_berth() {
    let srv = start_server();
    enable_trust(&srv).await;
    let repo = gun(&srv, "team/app");
    let sam = signer(&srv, "sam", "team/*").await;
    let rita = reader(&srv, "rita", "team/*").await;
    let owner = Berth::new(&srv).logged_in(&Cred::owner());
    let mut rng = Rng::new();
    let v1 = srv
        .push_image("team/app", Some("v1"), "amd64", &mut rng)
        .await;
    let v2 = srv
        .push_image("team/app", Some("v2"), "amd64", &mut rng)
        .await;
    let work = tempfile::tempdir().unwrap();
    let sk = Skopeo::new(&srv);
    let reader_cli = Berth::new(&srv).logged_in(&rita);

    // Before the policy, unsigned content flows.
    get_manifest(&srv, &rita, "team/app", "v1")
        .await
        .expect(200);
    let out = b(
        &owner,
        &[
            "config",
            "policy",
            "update",
            &repo,
            "--signed-pulls-only",
            "true",
        ],
    )
    .ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["effective"]["signedPullsOnly"], true, "{out}");
    assert_eq!(v["effective"]["immutableSignedTags"], false, "{out}");

    // Nothing signed yet: every client is refused, saying why.
    let r = get_manifest(&srv, &rita, "team/app", "v1").await;
    let msg = assert_denied(&r, "requires signed content");
    assert!(msg.contains("tag v1 is not signed"), "{msg}");
    let r = call(
        &srv,
        Method::HEAD,
        "/v2/team/app/manifests/v1",
        &rita,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 403, "{r}");
    let out = sk
        .pull(&rita, &format!("{repo}:v1"), &work.path().join("s0"), false)
        .fails();
    assert!(
        out.stderr.contains("denied") && out.stderr.contains("requires signed content"),
        "{out}"
    );
    let dest0 = work.path().join("b0");
    let out = reader_cli
        .run(&[
            "pull",
            &format!("{repo}:v1"),
            &format!("oci:{}", dest0.display()),
        ])
        .fails();
    assert!(
        out.stderr.contains("requires signed content") && out.stderr.contains("not signed"),
        "{out}"
    );
    assert!(out.stderr.contains("signing policy refused it"), "{out}");
    assert!(!dest0.exists());
    // Blobs are not policed.
    let layer = sha256(&v2.layers[0]);
    call(
        &srv,
        Method::GET,
        &format!("/v2/team/app/blobs/{layer}"),
        &rita,
        &[],
        None,
    )
    .await
    .expect(200);

    // docker signs v1 (alice's delegation and targets/releases).
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
    docker_sign(&d, &repo, "v1", &v1.digest, v1.manifest.len());

    // The signed tag and its digest are served to skopeo and berth; v2 still is not.
    get_manifest(&srv, &rita, "team/app", "v1")
        .await
        .expect(200);
    get_manifest(&srv, &rita, "team/app", &v1.digest)
        .await
        .expect(200);
    let s1 = work.path().join("s1");
    sk.pull(&rita, &format!("{repo}:v1"), &s1, false).ok();
    let b1 = work.path().join("b1");
    reader_cli
        .run(&[
            "pull",
            &format!("{repo}:v1"),
            &format!("oci:{}", b1.display()),
        ])
        .ok();
    assert_eq!(pulled_digest(&b1), v1.digest);
    let r = get_manifest(&srv, &rita, "team/app", "v2").await;
    assert_denied(&r, "tag v2 is not signed");
    let r = get_manifest(&srv, &rita, "team/app", &v2.digest).await;
    assert_denied(&r, &format!("{} is not named by any signed tag", v2.digest));
    let out = sk
        .pull(
            &rita,
            &format!("{repo}@{}", v2.digest),
            &work.path().join("s2"),
            false,
        )
        .fails();
    assert!(out.stderr.contains("requires signed content"), "{out}");

    // v2 is pushed over v1's tag (allowed: the rule is only about pulls): the tag now points
    // elsewhere than its signature.
    srv.push_manifest("team/app", "v1", OCI_MANIFEST, &v2.manifest)
        .await;
    let r = get_manifest(&srv, &rita, "team/app", "v1").await;
    let msg = assert_denied(&r, &format!("tag v1 points to {}", v2.digest));
    assert!(msg.contains(&v1.digest), "{msg}");
    srv.push_manifest("team/app", "v1", OCI_MANIFEST, &v1.manifest)
        .await;
    get_manifest(&srv, &rita, "team/app", "v1")
        .await
        .expect(200);

    // Revoked: refused again, by tag and by digest.
    d.run(&["trust", "revoke", &format!("{repo}:v1")]).ok();
    let r = get_manifest(&srv, &rita, "team/app", "v1").await;
    assert_denied(&r, "tag v1 is not signed");
    get_manifest(&srv, &rita, "team/app", &v1.digest)
        .await
        .expect(403);
    let out = reader_cli
        .run(&[
            "pull",
            &format!("{repo}:v1"),
            &format!("oci:{}", work.path().join("b2").display()),
        ])
        .fails();
    assert!(out.stderr.contains("requires signed content"), "{out}");

    // An index signed under a tag: its children may be pulled by digest (skopeo --all).
    let arm = srv.push_image("team/app", None, "arm64", &mut rng).await;
    let index = index_of(
        OCI_INDEX,
        &[
            (OCI_MANIFEST, &v2.manifest, "amd64"),
            (OCI_MANIFEST, &arm.manifest, "arm64"),
        ],
    );
    let index_digest = srv
        .push_manifest("team/app", "multi", OCI_INDEX, &index)
        .await;
    get_manifest(&srv, &rita, "team/app", &arm.digest)
        .await
        .expect(403);
    docker_sign(&d, &repo, "multi", &index_digest, index.len());
    get_manifest(&srv, &rita, "team/app", "multi")
        .await
        .expect(200);
    get_manifest(&srv, &rita, "team/app", &arm.digest)
        .await
        .expect(200);
    get_manifest(&srv, &rita, "team/app", &v2.digest)
        .await
        .expect(200);
    let s3 = work.path().join("s3");
    sk.pull(&rita, &format!("{repo}:multi"), &s3, true).ok();
    // A client that accepts no index is answered with the amd64 child: still the signed tag.
    let r = call(
        &srv,
        Method::GET,
        "/v2/team/app/manifests/multi",
        &rita,
        &[("accept", OCI_MANIFEST)],
        None,
    )
    .await;
    r.expect(200);
    assert_eq!(r.body, v2.manifest);
    // The tag v2 itself stays unsigned.
    get_manifest(&srv, &rita, "team/app", "v2")
        .await
        .expect(403);

    // Trust data that expires: alice re-publishes targets/releases to expire in 3 s.
    docker_sign(&d, &repo, "v1", &v1.digest, v1.manifest.len());
    get_manifest(&srv, &rita, "team/app", "v1")
        .await
        .expect(200);
    let alice_key = std::fs::read(find_key_file(&d.private_dir(), "alice", None)).unwrap();
    let alice_key = berth_crypto::keyfile::decrypt(&alice_key, REPOSITORY_PW)
        .unwrap()
        .key;
    let current = tuf_bytes(&srv, &repo, "targets/releases.json").await;
    let mut rel = berth_tuf::Signed::<berth_tuf::Targets>::parse(&current)
        .unwrap()
        .body;
    rel.version += 1;
    rel.expires = berth_tuf::time::format_rfc3339(SystemTime::now() + Duration::from_secs(3));
    let signed = berth_tuf::Signed::sign(rel, &[&alice_key])
        .unwrap()
        .envelope
        .into_raw();
    publish(&srv, &repo, &[("targets/releases", &signed)])
        .await
        .expect(200);
    get_manifest(&srv, &rita, "team/app", "v1")
        .await
        .expect(200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = get_manifest(&srv, &rita, "team/app", "v1").await;
    let msg = assert_denied(&r, "has expired");
    assert!(msg.contains("targets/releases"), "{msg}");
    let r = get_manifest(&srv, &rita, "team/app", &v1.digest).await;
    assert_denied(&r, "expired");
    let out = sk
        .pull(&rita, &format!("{repo}:v1"), &work.path().join("s4"), false)
        .fails();
    assert!(out.stderr.contains("expired"), "{out}");

    // Readers may not change the policy, nor may signers.
    for who in [&rita, &sam] {
        let out = Berth::new(&srv)
            .logged_in(who)
            .run(&[
                "config",
                "policy",
                "update",
                &repo,
                "--signed-pulls-only",
                "false",
            ])
            .fails();
        assert!(
            out.stderr.contains("403") || out.stderr.contains("denied"),
            "{out}"
        );
    }

    // With content trust off there is nothing signed: refused, and the message says so.
    owner
        .run(&[
            "config",
            "content-trust",
            "update",
            "--status",
            "disabled",
            "--yes",
            "--server",
            &server_url(&srv),
        ])
        .ok();
    let r = get_manifest(&srv, &rita, "team/app", "multi").await;
    assert_denied(&r, "content trust is disabled");
    // The policy off again: pulls flow.
    owner
        .run(&[
            "config",
            "policy",
            "update",
            "team/app",
            "--server",
            &server_url(&srv),
            "--signed-pulls-only",
            "false",
        ])
        .ok();
    get_manifest(&srv, &rita, "team/app", "v2")
        .await
        .expect(200);
    let logs = srv.logs();
    assert!(
        logs.contains("request denied by signing policy"),
        "no log line"
    );
}

#[tokio::test]
async fn immutable_signed_tags_and_policy_cli() {
    let srv = start_server();
    enable_trust(&srv).await;
    let repo = gun(&srv, "team/app");
    let sam = signer(&srv, "sam", "team/*").await;
    let owner = Berth::new(&srv).logged_in(&Cred::owner());
    let mut rng = Rng::new();
    let work = tempfile::tempdir().unwrap();
    let sk = Skopeo::new(&srv);

    // Show: all off.
    let v: Value = serde_json::from_str(
        &owner
            .run(&["config", "policy", "show", "--server", &server_url(&srv)])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        v,
        json!({"default": {"signedPullsOnly": false, "immutableSignedTags": false}, "repositories": []})
    );
    // The default turns immutability on; team/free opts out, team/app sets another rule.
    owner
        .run(&[
            "config",
            "policy",
            "update",
            "--default",
            "--server",
            &server_url(&srv),
            "--immutable-signed-tags",
            "true",
        ])
        .ok();
    owner
        .run(&[
            "config",
            "policy",
            "update",
            &gun(&srv, "team/free"),
            "--immutable-signed-tags",
            "false",
        ])
        .ok();
    let v: Value = serde_json::from_str(
        &owner
            .run(&["config", "policy", "show", &gun(&srv, "team/free")])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(v["set"], json!({"immutableSignedTags": false}), "{v}");
    assert_eq!(v["default"]["immutableSignedTags"], true, "{v}");
    assert_eq!(v["effective"]["immutableSignedTags"], false, "{v}");
    let v: Value =
        serde_json::from_str(&owner.run(&["config", "policy", "show", &repo]).ok().stdout).unwrap();
    assert_eq!(v["set"], json!({}), "{v}");
    assert_eq!(
        v["effective"],
        json!({"signedPullsOnly": false, "immutableSignedTags": true}),
        "follows the default: {v}"
    );
    let v: Value = serde_json::from_str(
        &owner
            .run(&["config", "policy", "show", "--server", &server_url(&srv)])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(v["default"]["immutableSignedTags"], true, "{v}");
    assert_eq!(v["repositories"][0]["repository"], "team/free", "{v}");
    // Usage errors: neither or both scopes, no rule, a value that is not a boolean.
    for args in [
        vec![
            "config",
            "policy",
            "update",
            "--immutable-signed-tags",
            "true",
        ],
        vec![
            "config",
            "policy",
            "update",
            &repo,
            "--default",
            "--immutable-signed-tags",
            "true",
        ],
        vec!["config", "policy", "update", &repo],
        vec![
            "config",
            "policy",
            "update",
            &repo,
            "--signed-pulls-only",
            "yes",
        ],
    ] {
        let out = owner.run(&args).fails();
        assert!(
            out.stderr.contains("Usage") || out.stderr.contains("error"),
            "{out}"
        );
    }
    // Audited with old -> new.
    let audit = admin(&srv, Method::GET, "audit?action=policy.updated", None).await;
    assert_eq!(audit.as_array().map(Vec::len), Some(2), "{audit}");
    let text = audit.to_string();
    assert!(
        text.contains(r#"{} -> {\"immutableSignedTags\":true}"#),
        "{text}"
    );
    assert!(text.contains("team/free"), "{text}");

    // A signed tag cannot be repointed by a push; the same digest can be pushed again.
    let (l1, img1) = new_layout(work.path(), "v1", &mut rng);
    let (l2, img2) = new_layout(work.path(), "v2", &mut rng);
    sk.push(&sam, &oci(&l1, "v1"), &format!("{repo}:v1")).ok();
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
    docker_sign(&d, &repo, "v1", &img1.digest, img1.manifest.len());
    let out = sk
        .push(&sam, &oci(&l2, "v2"), &format!("{repo}:v1"))
        .fails();
    assert!(
        out.stderr.contains("denied") && out.stderr.contains("immutable signed tags"),
        "{out}"
    );
    assert!(out.stderr.contains("docker trust revoke"), "{out}");
    let r = srv.get("/v2/team/app/manifests/v1").await;
    assert_eq!(sha256(&r.body), img1.digest, "unchanged");
    // The same digest again, a new tag, and a push by digest are fine.
    sk.push(&sam, &oci(&l1, "v1"), &format!("{repo}:v1")).ok();
    sk.push(&sam, &oci(&l2, "v2"), &format!("{repo}:other"))
        .ok();
    srv.push_manifest("team/app", &img2.digest, OCI_MANIFEST, &img2.manifest)
        .await;
    // `?tag=` on a push by digest is a tag push too.
    let r = srv
        .put_manifest(
            "team/app",
            &format!("{}?tag=v1", img2.digest),
            OCI_MANIFEST,
            &img2.manifest,
        )
        .await;
    assert_denied(&r, "immutable signed tags");
    // berth push says it too.
    let out = Berth::new(&srv)
        .logged_in(&sam)
        .run(&["push", &oci(&l2, "v2"), &format!("{repo}:v1")])
        .fails();
    assert!(out.stderr.contains("immutable signed tags"), "{out}");

    // After a revoke the tag may move.
    d.run(&["trust", "revoke", &format!("{repo}:v1")]).ok();
    sk.push(&sam, &oci(&l2, "v2"), &format!("{repo}:v1")).ok();
    let r = srv.get("/v2/team/app/manifests/v1").await;
    assert_eq!(sha256(&r.body), img2.digest);

    // The repository's own setting wins over the default: team/app opts out, v1 re-signed for
    // img2 may be repointed to img1.
    docker_sign(&d, &repo, "v1", &img2.digest, img2.manifest.len());
    sk.push(&sam, &oci(&l1, "v1"), &format!("{repo}:v1"))
        .fails();
    owner
        .run(&[
            "config",
            "policy",
            "update",
            &repo,
            "--immutable-signed-tags",
            "false",
        ])
        .ok();
    sk.push(&sam, &oci(&l1, "v1"), &format!("{repo}:v1")).ok();
}

/// Two nodes on one distributed store: a policy set through one node, and signatures
/// published and removed through it, hold on the other at its next request (settings, the GUN
/// list and the memoised trust views all follow the store).
#[tokio::test]
async fn policy_and_signatures_hold_on_every_node() {
    let mut c = crate::cluster::Cluster::start(2);
    for n in &mut c.nodes {
        harness_acts_as(n, &Cred::owner());
    }
    let (a, b) = (c.node(0), c.node(1));
    enable_trust(a).await;
    let rita = reader(a, "rita", "team/*").await;
    let sam = signer(a, "sam", "team/*").await;
    let mut rng = Rng::new();
    let img = a
        .push_image("team/app", Some("v1"), "amd64", &mut rng)
        .await;
    get_manifest(b, &rita, "team/app", "v1").await.expect(200);
    admin(
        a,
        Method::PUT,
        "policy/team/app",
        Some(json!({"signedPullsOnly": true})),
    )
    .await;
    let r = get_manifest(b, &rita, "team/app", "v1").await;
    assert_denied(&r, "tag v1 is not signed");

    // Signed with the notary CLI through node a (the tag's real digest and size).
    let g = gun(a, "team/app");
    let n = Notary::with_login(a, &sam);
    n.run(&["init", &g, "-p"]).ok();
    let size = img.manifest.len().to_string();
    let hex = img.digest.strip_prefix("sha256:").unwrap();
    n.run(&["addhash", &g, "v1", &size, "--sha256", hex, "-p"])
        .ok();
    for node in [a, b] {
        get_manifest(node, &rita, "team/app", "v1")
            .await
            .expect(200);
        get_manifest(node, &rita, "team/app", &img.digest)
            .await
            .expect(200);
    }
    n.run(&["remove", &g, "v1", "-p"]).ok();
    for node in [b, a] {
        let r = get_manifest(node, &rita, "team/app", "v1").await;
        assert_denied(&r, "tag v1 is not signed");
    }
    // The default through node b, an override through node a: a's is the one in force.
    admin(
        b,
        Method::PUT,
        "policy/_default",
        Some(json!({"immutableSignedTags": true})),
    )
    .await;
    admin(
        a,
        Method::PUT,
        "policy/team/app",
        Some(json!({"signedPullsOnly": null})),
    )
    .await;
    get_manifest(b, &rita, "team/app", "v1").await.expect(200);
    let v = admin(b, Method::GET, "policy/team/app", None).await;
    assert_eq!(
        v["effective"],
        json!({"signedPullsOnly": false, "immutableSignedTags": true}),
        "{v}"
    );
    assert_eq!(v["set"], json!({}), "{v}");
}
