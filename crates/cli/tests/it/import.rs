//! `berth import` (issue 15): a server-side copy from the reference registry (distribution
//! 2.8, plain HTTP on loopback, no referrers API) into a Berth server with authentication on.
//! The source holds a multi-arch index (an OCI image pushed by `berth push`, a Docker schema2
//! image pushed by skopeo), a Notary Project signature (`berth sign`, listed under the
//! referrers tag schema as notation does on such registries) and a cosign `.sig` tag.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_harness::*;

const NOTARY: &str = "application/vnd.cncf.notary.signature";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

fn tool(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/tools")
        .join(name)
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/scripts")
        .join(name)
}

/// The reference registry on a free loopback port, stopped (by its pid) on drop.
struct RefRegistry {
    dir: tempfile::TempDir,
    port: u16,
    pid: u32,
}

impl RefRegistry {
    fn start() -> RefRegistry {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "the reference registry is missing: apt-get install docker-registry (scripts/test-deps)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = Command::new(tool("start-registry-reference.sh"));
        c.arg(dir.path())
            .arg(port.to_string())
            .arg("no")
            .env("REGISTRY_LOG_LEVEL", "warn");
        let out = run(&mut c, None).ok();
        assert!(out.stdout.contains("REGISTRY-REF UP"), "{out}");
        let pid = std::fs::read_to_string(dir.path().join("registry.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        RefRegistry { dir, port, pid }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A manifest's bytes and media type.
    async fn manifest(&self, repo: &str, reference: &str) -> (Vec<u8>, String) {
        let r = reqwest::Client::new()
            .get(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("accept", ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {repo}:{reference}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        (r.bytes().await.unwrap().to_vec(), ct)
    }

    async fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
        let r = reqwest::Client::new()
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(
            status,
            201,
            "PUT {repo}:{reference}: {}",
            r.text().await.unwrap()
        );
    }

    async fn put_blob(&self, repo: &str, data: &[u8]) -> String {
        let c = reqwest::Client::new();
        let digest = sha256(data);
        let r = c
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = c
            .put(format!("{loc}{sep}digest={digest}"))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        digest
    }

    /// The file the registry serves a blob from.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir.path().join(format!(
            "registry-data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
    }
}

impl Drop for RefRegistry {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
    }
}

/// `berth ARGS` against `srv` as `user`, with `home/config` as XDG_CONFIG_HOME.
fn berth_as(srv: &Server, home: &Path, user: (&str, &str), args: &[&str]) -> Out {
    let mut c = isolated(env!("CARGO_BIN_EXE_berth"), home);
    c.env("BERTH_CONFIG_DIR", home.join("berth-config"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("BERTH_USERNAME", user.0)
        .env("BERTH_PASSWORD", user.1)
        .args(args)
        .args(["--server", &srv.host(), "--ca-file"])
        .arg(srv.ca_path());
    run(&mut c, None)
}

fn berth(srv: &Server, home: &Path, args: &[&str]) -> Out {
    berth_as(srv, home, ("owner", OWNER_PASSWORD), args)
}

/// `berth ARGS` against the reference registry (plain HTTP, no credentials).
fn berth_ref(reg: &RefRegistry, home: &Path, args: &[&str]) -> Out {
    let mut c = isolated(env!("CARGO_BIN_EXE_berth"), home);
    c.env("BERTH_CONFIG_DIR", home.join("berth-config"))
        .args(args)
        .args(["--server", &reg.url("")]);
    run(&mut c, None)
}

fn make_layout(dir: &Path) {
    let mut c = Command::new(tool("make-oci-layout.py"));
    c.arg(dir).arg("v1").arg("1");
    run(&mut c, None).ok();
}

/// The source image: an OCI index of an OCI image and a Docker schema2 image, its signatures.
struct Source {
    index: String,
    index_len: usize,
    children: Vec<String>,
    notation_sig: String,
    cosign_tag: String,
    cosign_sig: String,
}

async fn build_source(reg: &RefRegistry, home: &Path, pki: &Path, keys: &Path) -> Source {
    let host = reg.host();
    // amd64: an OCI image layout pushed by `berth push`.
    let amd = home.join("amd");
    make_layout(&amd);
    berth_ref(
        reg,
        home,
        &[
            "push",
            &format!("oci:{}:v1", amd.display()),
            &format!("{host}/src/app:amd64"),
        ],
    )
    .ok();
    // arm64: converted to Docker schema2 and pushed by skopeo.
    let arm = home.join("arm");
    make_layout(&arm);
    let mut sk = Command::new("skopeo");
    sk.args(["copy", "--dest-tls-verify=false", "--format", "v2s2"])
        .arg(format!("oci:{}:v1", arm.display()))
        .arg(format!("docker://{host}/src/app:arm64"));
    run(&mut sk, None).ok();
    let (amd_m, amd_t) = reg.manifest("src/app", "amd64").await;
    let (arm_m, arm_t) = reg.manifest("src/app", "arm64").await;
    assert_eq!(
        arm_t,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": amd_t, "digest": sha256(&amd_m), "size": amd_m.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": arm_t, "digest": sha256(&arm_m), "size": arm_m.len(),
             "platform": {"os": "linux", "architecture": "arm64"}},
        ],
    }))
    .unwrap();
    reg.put_manifest("src/app", "v1", OCI_INDEX, &index).await;
    let index_digest = sha256(&index);

    // A Notary Project signature of the index, listed under the referrers tag schema.
    let p = |f: &str| pki.join(f).to_string_lossy().into_owned();
    let out = berth_ref(
        reg,
        home,
        &[
            "sign",
            &format!("{host}/src/app:v1"),
            "--format",
            "notation",
            "--key",
            &p("leaf.key"),
            "--cert",
            &p("chain.pem"),
        ],
    )
    .ok();
    let notation_sig = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Signature: "))
        .unwrap_or_else(|| panic!("no signature digest: {out}"))
        .to_owned();
    let (sig_m, sig_t) = reg.manifest("src/app", &notation_sig).await;
    let fallback = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": sig_t, "digest": notation_sig, "size": sig_m.len(),
                        "artifactType": NOTARY}],
    }))
    .unwrap();
    let schema_tag = index_digest.replacen(':', "-", 1);
    reg.put_manifest("src/app", &schema_tag, OCI_INDEX, &fallback)
        .await;

    // A cosign signature of the index under cosign's tag.
    let mut py = Command::new("python3");
    py.arg(script("cosign_sign.py")).arg(keys).args([
        format!("{host}/src/app").as_str(),
        index_digest.as_str(),
        sha256(&amd_m).as_str(),
    ]);
    run(&mut py, None).ok();
    let payload = std::fs::read(keys.join("good.json")).unwrap();
    let sig = std::fs::read_to_string(keys.join("good.sig")).unwrap();
    let config = b"{\"architecture\":\"\",\"os\":\"\",\"config\":{},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
    let config_digest = reg.put_blob("src/app", config).await;
    let payload_digest = reg.put_blob("src/app", &payload).await;
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": payload_digest, "size": payload.len(),
                    "annotations": {"dev.cosignproject.cosign/signature": sig}}],
    }))
    .unwrap();
    let cosign_tag = format!("{schema_tag}.sig");
    reg.put_manifest("src/app", &cosign_tag, OCI_MANIFEST, &m)
        .await;
    Source {
        index: index_digest,
        index_len: index.len(),
        children: vec![sha256(&amd_m), sha256(&arm_m)],
        notation_sig,
        cosign_tag,
        cosign_sig: sha256(&m),
    }
}

/// Notation's trust policy for `scope` and the CA store `acme` under `home/config`.
fn write_notation_config(home: &Path, scopes: &[String], ca_pem: &Path) {
    let dir = home.join("config/notation");
    let store = dir.join("truststore/x509/ca/acme");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::copy(ca_pem, store.join("root.crt")).unwrap();
    let policy = json!({
        "version": "1.0",
        "trustPolicies": [{
            "name": "acme-images",
            "registryScopes": scopes,
            "signatureVerification": {"level": "strict"},
            "trustStores": ["ca:acme"],
            "trustedIdentities": ["*"],
        }]
    });
    std::fs::write(dir.join("trustpolicy.json"), policy.to_string()).unwrap();
}

fn imported(out: &Out) -> String {
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("Imported "))
        .unwrap_or_else(|| panic!("no Imported line: {out}"));
    line.to_owned()
}

async fn head_digest(srv: &Server, repo: &str, reference: &str) -> Option<String> {
    let r = srv.head(&format!("/v2/{repo}/manifests/{reference}")).await;
    (r.status == 200).then(|| r.header("docker-content-digest").unwrap())
}

#[tokio::test]
async fn import_multi_arch_with_signatures_by_tag_and_digest() {
    let mut srv = Server::start_with_auth();
    harness_acts_as(&mut srv, &Cred::owner());
    let reg = RefRegistry::start();
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let pki = home.join("pki");
    let mut py = Command::new("python3");
    py.arg(script("notation_pki.py")).arg(&pki);
    run(&mut py, None).ok();
    let keys = home.join("cosign");
    let src = build_source(&reg, home, &pki, &keys).await;
    let (h, rh) = (srv.host(), reg.host());
    let pubkey = keys.join("pub.pem").to_string_lossy().into_owned();
    let scopes: Vec<String> = ["dst/plain", "dst/signed", "dst/bydigest"]
        .iter()
        .map(|r| format!("{h}/{r}"))
        .collect();
    write_notation_config(home, &scopes, &pki.join("ca.pem"));
    let src_v1 = format!("{rh}/src/app:v1");

    // Plain HTTP to the source only when asked.
    let out = berth(
        &srv,
        home,
        &["import", &src_v1, &format!("{h}/dst/plain:v1")],
    )
    .fails();
    assert!(out.stderr.contains("--source-insecure-http"), "{out}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    assert_eq!(head_digest(&srv, "dst/plain", "v1").await, None);

    // By tag, without signatures: the same digests; no signature at the destination.
    let out = berth(
        &srv,
        home,
        &[
            "import",
            &src_v1,
            &format!("{h}/dst/plain:v1"),
            "--source-insecure-http",
        ],
    )
    .ok();
    let line = imported(&out);
    assert!(line.contains(&src.index), "{out}");
    assert!(line.contains("3 manifests, 0 signatures"), "{out}");
    assert_eq!(
        head_digest(&srv, "dst/plain", "v1").await.as_deref(),
        Some(src.index.as_str())
    );
    for c in &src.children {
        assert_eq!(
            head_digest(&srv, "dst/plain", c).await.as_deref(),
            Some(c.as_str())
        );
    }
    let out = berth(&srv, home, &["verify", &format!("{h}/dst/plain:v1")]).fails();
    assert!(
        out.stderr.contains("has no Notary Project signature"),
        "{out}"
    );
    let out = berth(
        &srv,
        home,
        &[
            "verify",
            &format!("{h}/dst/plain:v1"),
            "--cosign-key",
            &pubkey,
        ],
    )
    .fails();
    assert!(out.stderr.contains("has no cosign"), "{out}");
    let pulled = home.join("pulled");
    berth(
        &srv,
        home,
        &[
            "pull",
            &format!("{h}/dst/plain:v1"),
            &format!("oci:{}:v1", pulled.display()),
        ],
    )
    .ok();
    let index: Value =
        serde_json::from_slice(&std::fs::read(pulled.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], json!(src.index));

    // By tag, with signatures: the Notary Project signature and the cosign tag come along and
    // verify at the destination.
    let out = berth(
        &srv,
        home,
        &[
            "import",
            &src_v1,
            &format!("{h}/dst/signed:v1"),
            "--source-insecure-http",
            "--with-signatures",
        ],
    )
    .ok();
    let line = imported(&out);
    assert!(line.contains("3 manifests, 2 signatures"), "{out}");
    assert!(
        out.stdout
            .contains(&format!("Signature tag: {}", src.cosign_tag)),
        "{out}"
    );
    assert_eq!(
        head_digest(&srv, "dst/signed", "v1").await.as_deref(),
        Some(src.index.as_str())
    );
    assert_eq!(
        head_digest(&srv, "dst/signed", &src.cosign_tag)
            .await
            .as_deref(),
        Some(src.cosign_sig.as_str())
    );
    let r = srv
        .get(&format!("/v2/dst/signed/referrers/{}", src.index))
        .await;
    r.expect(200);
    let listed: Vec<String> = r.json()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, vec![src.notation_sig.clone()]);
    let out = berth(&srv, home, &["verify", &format!("{h}/dst/signed:v1")]).ok();
    assert!(out.stdout.contains(&src.notation_sig), "{out}");
    berth(
        &srv,
        home,
        &[
            "verify",
            &format!("{h}/dst/signed:v1"),
            "--cosign-key",
            &pubkey,
        ],
    )
    .ok();

    // Again: every blob is there already, nothing is copied.
    let out = berth(
        &srv,
        home,
        &[
            "import",
            &src_v1,
            &format!("{h}/dst/signed:v1"),
            "--source-insecure-http",
            "--with-signatures",
        ],
    )
    .ok();
    assert!(imported(&out).contains("0 blobs copied (0 bytes)"), "{out}");

    // By digest, into a tag; and by digest without a tag: stored untagged.
    let by_digest = format!("{rh}/src/app@{}", src.index);
    let out = berth(
        &srv,
        home,
        &[
            "import",
            &by_digest,
            &format!("{h}/dst/bydigest:copied"),
            "--source-insecure-http",
            "--with-signatures",
        ],
    )
    .ok();
    assert!(imported(&out).contains(&src.index), "{out}");
    assert_eq!(
        head_digest(&srv, "dst/bydigest", "copied").await.as_deref(),
        Some(src.index.as_str())
    );
    berth(&srv, home, &["verify", &format!("{h}/dst/bydigest:copied")]).ok();
    let out = berth(
        &srv,
        home,
        &[
            "import",
            &by_digest,
            &format!("{h}/dst/untagged"),
            "--source-insecure-http",
        ],
    )
    .ok();
    assert!(
        imported(&out).contains(&format!("dst/untagged@{}", src.index)),
        "{out}"
    );
    assert_eq!(
        head_digest(&srv, "dst/untagged", &src.index)
            .await
            .as_deref(),
        Some(src.index.as_str())
    );
    let r = srv.get("/v2/dst/untagged/tags/list").await;
    assert!(
        r.json()["tags"].as_array().is_none_or(|t| t.is_empty()),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = srv
        .head(&format!("/v2/dst/untagged/manifests/{}", src.index))
        .await;
    assert_eq!(r.header("content-length"), Some(src.index_len.to_string()));

    // A missing source: one clear line, nothing stored.
    let out = berth(
        &srv,
        home,
        &[
            "import",
            &format!("{rh}/src/app:nope"),
            &format!("{h}/dst/missing:v1"),
            "--source-insecure-http",
        ],
    )
    .fails();
    assert!(out.stderr.contains("not found"), "{out}");
    assert!(out.stderr.contains("src/app:nope"), "{out}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");

    // No push right on the destination: refused before the source is read.
    let puller = user_with_roles(&srv, "puller", "puller-password-1", &["AcrPull"]).await;
    drop(puller);
    let out = berth_as(
        &srv,
        home,
        ("puller", "puller-password-1"),
        &[
            "import",
            &src_v1,
            &format!("{h}/dst/refused:v1"),
            "--source-insecure-http",
        ],
    )
    .fails();
    assert!(out.stderr.contains("403"), "{out}");
    assert_eq!(head_digest(&srv, "dst/refused", "v1").await, None);

    // A source that lies about a blob: refused, no tag set.
    let lie = home.join("lie");
    make_layout(&lie);
    berth_ref(
        &reg,
        home,
        &[
            "push",
            &format!("oci:{}:v1", lie.display()),
            &format!("{rh}/src/lie:v1"),
        ],
    )
    .ok();
    let (m, _) = reg.manifest("src/lie", "v1").await;
    let m: Value = serde_json::from_slice(&m).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_owned();
    let file = reg.blob_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let out = berth(
        &srv,
        home,
        &[
            "import",
            &format!("{rh}/src/lie:v1"),
            &format!("{h}/dst/lie:v1"),
            "--source-insecure-http",
        ],
    )
    .fails();
    assert!(out.stderr.contains("digest mismatch"), "{out}");
    assert!(out.stderr.contains(&layer), "{out}");
    assert_eq!(head_digest(&srv, "dst/lie", "v1").await, None);
    let r = srv.head(&format!("/v2/dst/lie/blobs/{layer}")).await;
    assert_eq!(r.status, 404);
}

/// A Berth server as the source: HTTPS with its own CA (trusted only with --source-ca) and the
/// Docker token flow with the credentials given to the CLI (wrong ones: a clear error).
#[tokio::test]
async fn import_from_a_registry_with_tls_and_token_auth() {
    let mut srv = Server::start_with_auth();
    harness_acts_as(&mut srv, &Cred::owner());
    let mut other = Server::start_with_auth();
    harness_acts_as(&mut other, &Cred::owner());
    let mut rng = Rng::new();
    let img = other
        .push_image("team/app", Some("v1"), "amd64", &mut rng)
        .await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let src = format!("{}/team/app:v1", other.host());
    let dst = format!("{}/copy/app:v1", srv.host());
    let ca = other.ca_path().to_string_lossy().into_owned();
    let import = |extra: &[&str], password: &str| {
        let mut c = isolated(env!("CARGO_BIN_EXE_berth"), home);
        c.env("BERTH_CONFIG_DIR", home.join("berth-config"))
            .env("BERTH_USERNAME", "owner")
            .env("BERTH_PASSWORD", OWNER_PASSWORD)
            .args(["import", &src, &dst])
            .args(extra)
            .args(["--server", &srv.host(), "--ca-file"])
            .arg(srv.ca_path());
        run(&mut c, Some(password))
    };
    // The source's CA is not in the system roots.
    let out = import(
        &["--source-username", "owner", "--source-password-stdin"],
        OWNER_PASSWORD,
    )
    .fails();
    assert!(out.stderr.contains("certificate"), "{out}");
    assert!(out.stderr.contains("--source-ca"), "{out}");
    // Wrong credentials for the source.
    let out = import(
        &[
            "--source-username",
            "owner",
            "--source-password-stdin",
            "--source-ca",
            &ca,
        ],
        "not-the-password",
    )
    .fails();
    assert!(out.stderr.contains("import source"), "{out}");
    assert!(out.stderr.contains("403"), "{out}");
    assert!(!out.stderr.contains("not-the-password"), "{out}");
    assert_eq!(head_digest(&srv, "copy/app", "v1").await, None);
    // No credentials: the source wants some.
    let out = import(&["--source-ca", &ca], "").fails();
    assert!(out.stderr.contains("authentication"), "{out}");
    assert!(out.stderr.contains("--source-username"), "{out}");
    // The right ones.
    let out = import(
        &[
            "--source-username",
            "owner",
            "--source-password-stdin",
            "--source-ca",
            &ca,
        ],
        OWNER_PASSWORD,
    )
    .ok();
    assert!(imported(&out).contains(&img.digest), "{out}");
    assert_eq!(
        head_digest(&srv, "copy/app", "v1").await.as_deref(),
        Some(img.digest.as_str())
    );
    // --sign: the imported tag signed with Docker Content Trust here, with the caller's keys.
    enable_trust_as_owner(&srv).await;
    let b = crate::trust_cli::Berth::new(&srv).logged_in(&Cred::owner());
    let signed = format!("{}/copy/signed:v1", srv.host());
    let out = b
        .run_stdin(
            &[
                "import",
                &src,
                &signed,
                "--source-username",
                "owner",
                "--source-password-stdin",
                "--source-ca",
                &ca,
                "--sign",
            ],
            OWNER_PASSWORD,
        )
        .ok();
    assert!(imported(&out).contains(&img.digest), "{out}");
    assert!(
        out.stdout
            .contains(&format!("Successfully signed {signed}")),
        "{out}"
    );
    let out = b.run(&["trust", "inspect", &signed]).ok();
    let view: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        view[0]["SignedTags"][0]["Digest"],
        json!(img.digest.strip_prefix("sha256:").unwrap()),
        "{view}"
    );
    b.run(&[
        "pull",
        &signed,
        &format!("oci:{}:v1", home.join("trusted").display()),
        "--trust",
    ])
    .ok();
    // An unsigned import is no trusted pull.
    b.run(&[
        "pull",
        &dst,
        &format!("oci:{}:v1", home.join("untrusted").display()),
        "--trust",
    ])
    .fails();

    // The audit log names the import, never the source password.
    let log = admin(
        &srv,
        reqwest::Method::GET,
        "audit?action=image.imported",
        None,
    )
    .await;
    let text = log.to_string();
    assert!(text.contains("copy/app"), "{text}");
    assert!(!text.contains(OWNER_PASSWORD), "{text}");
}
