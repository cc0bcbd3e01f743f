//! End to end with the real skopeo client over verified TLS: OCI layout -> berth -> OCI layout.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::harness::*;

/// A CRC-32 (IEEE) for the gzip trailer.
fn crc32(data: &[u8]) -> u32 {
    static TABLE: OnceLock<[u32; 256]> = OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, &b| {
        t[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8)
    })
}

/// A valid gzip stream using stored (uncompressed) deflate blocks, so skopeo sees a
/// compressed layer and copies it verbatim.
fn gzip_stored(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut blocks = payload.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(b) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = b.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(b);
    }
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out
}

/// An OCI image layout directory.
struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    fn new() -> Layout {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        Layout { dir }
    }

    /// An empty directory for skopeo to create a layout in.
    fn target() -> Layout {
        Layout {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn add_blob(&self, data: &[u8]) -> String {
        let d = sha256(data);
        std::fs::write(self.blob_path(&d), data).unwrap();
        d
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let (alg, hex) = digest.split_once(':').unwrap();
        self.path().join("blobs").join(alg).join(hex)
    }

    fn read_blob(&self, digest: &str) -> Vec<u8> {
        let p = self.blob_path(digest);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn set_index(&self, entries: Vec<Value>) {
        let idx = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        std::fs::write(
            self.path().join("index.json"),
            serde_json::to_vec(&idx).unwrap(),
        )
        .unwrap();
    }

    /// The index.json entry for `name`.
    fn entry(&self, name: &str) -> Value {
        let v: Value =
            serde_json::from_slice(&std::fs::read(self.path().join("index.json")).unwrap())
                .unwrap();
        v["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {v}"))
            .clone()
    }

    /// Writes an image (gzip layers of the given payload sizes); returns the manifest bytes.
    fn add_image(&self, arch: &str, layer_sizes: &[usize], rng: &mut Rng) -> Vec<u8> {
        let payloads: Vec<Vec<u8>> = layer_sizes.iter().map(|n| rng.bytes(*n)).collect();
        let layers: Vec<Vec<u8>> = payloads.iter().map(|p| gzip_stored(p)).collect();
        // diff_ids are over the uncompressed payloads, as for a real image.
        let config = image_config(arch, &payloads, rng);
        self.add_blob(&config);
        for l in &layers {
            self.add_blob(l);
        }
        let m = oci_manifest(&config, &layers, |_| {});
        self.add_blob(&m);
        m
    }
}

fn ref_entry(media_type: &str, manifest: &[u8], name: &str) -> Value {
    let mut d = desc(media_type, manifest);
    d["annotations"] = json!({"org.opencontainers.image.ref.name": name});
    d
}

/// Every blob a manifest (or index, recursively) references, including itself.
fn closure(layout: &Layout, digest: &str, out: &mut Vec<String>) {
    out.push(digest.to_string());
    let v: Value = serde_json::from_slice(&layout.read_blob(digest)).unwrap();
    if let Some(ms) = v["manifests"].as_array() {
        for m in ms {
            closure(layout, m["digest"].as_str().unwrap(), out);
        }
    } else {
        out.push(v["config"]["digest"].as_str().unwrap().to_string());
        for l in v["layers"].as_array().unwrap() {
            out.push(l["digest"].as_str().unwrap().to_string());
        }
    }
}

/// Runs skopeo isolated from the user's configuration, trusting only the server's CA.
struct Skopeo {
    home: tempfile::TempDir,
    certs: tempfile::TempDir,
}

impl Skopeo {
    fn new(srv: &Server) -> Skopeo {
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
        // Only ca.crt: other files in the server's tls dir (keys) would confuse skopeo.
        let certs = tempfile::tempdir().unwrap();
        std::fs::copy(srv.ca_path(), certs.path().join("ca.crt")).unwrap();
        Skopeo { home, certs }
    }

    fn cert_dir(&self) -> &str {
        self.certs.path().to_str().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
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
        cmd.output().expect("run skopeo")
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, srv: &Server, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "skopeo {args:?} failed: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            srv.logs()
        );
        out.stdout
    }

    fn push(&self, srv: &Server, src: &str, dest: &str, all: bool) {
        let mut args = vec![
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=true",
            "--dest-no-creds",
            "--dest-cert-dir",
            self.cert_dir(),
        ];
        if all {
            args.push("--all");
        }
        args.extend([src, dest]);
        self.ok(srv, &args);
    }

    fn pull(&self, srv: &Server, src: &str, dest: &str, all: bool) {
        let mut args = vec![
            "copy",
            "--preserve-digests",
            "--src-tls-verify=true",
            "--src-no-creds",
            "--src-cert-dir",
            self.cert_dir(),
        ];
        if all {
            args.push("--all");
        }
        args.extend([src, dest]);
        self.ok(srv, &args);
    }

    fn query(&self, srv: &Server, verb: &str, extra: &[&str], reference: &str) -> Vec<u8> {
        let mut args = vec![
            verb,
            "--tls-verify=true",
            "--no-creds",
            "--cert-dir",
            self.cert_dir(),
        ];
        args.extend(extra);
        args.push(reference);
        self.ok(srv, &args)
    }
}

/// Asserts `out` holds `name` with manifest `digest` and byte-identical blobs to `src`.
fn assert_same_image(src: &Layout, out: &Layout, name: &str, digest: &str) {
    let e = out.entry(name);
    assert_eq!(e["digest"], digest, "{e}");
    let mut blobs = Vec::new();
    closure(src, digest, &mut blobs);
    for d in blobs {
        let b = out.read_blob(&d);
        assert_eq!(sha256(&b), d);
        assert_eq!(b, src.read_blob(&d), "{d}");
    }
}

#[tokio::test]
async fn skopeo_copy_inspect_list_tags_roundtrip() {
    let srv = Server::start();
    let sk = Skopeo::new(&srv);
    let mut rng = Rng::new();
    let src = Layout::new();
    let m = src.add_image("amd64", &[1000, 20_000, 300_000, 64 << 20], &mut rng);
    let md = sha256(&m);
    src.set_index(vec![ref_entry(OCI_MANIFEST, &m, "v1")]);
    let srcref = format!("oci:{}:v1", src.path().display());
    let dest = format!("docker://{}/e2e/app", srv.host());
    sk.push(&srv, &srcref, &format!("{dest}:v1"), false);

    // The registry holds exactly what was pushed.
    let g = srv.get("/v2/e2e/app/manifests/v1").await;
    g.expect(200);
    assert_eq!(g.body, m);
    assert_eq!(g.must_header("content-type"), OCI_MANIFEST);

    let out = Layout::target();
    sk.pull(
        &srv,
        &format!("{dest}:v1"),
        &format!("oci:{}:v1", out.path().display()),
        false,
    );
    assert_same_image(&src, &out, "v1", &md);

    // Second tag: blobs already present, skopeo only checks and pushes the manifest.
    sk.push(&srv, &srcref, &format!("{dest}:v2"), false);

    // Registry to registry: skopeo may mount blobs across repositories instead of uploading.
    let cd = sk.cert_dir();
    sk.ok(
        &srv,
        &[
            "copy",
            "--preserve-digests",
            "--src-tls-verify=true",
            "--src-no-creds",
            "--src-cert-dir",
            cd,
            "--dest-tls-verify=true",
            "--dest-no-creds",
            "--dest-cert-dir",
            cd,
            &format!("{dest}:v1"),
            &format!("docker://{}/e2e/copy:v1", srv.host()),
        ],
    );
    let mut blobs = Vec::new();
    closure(&src, &md, &mut blobs);
    let g = srv.get("/v2/e2e/copy/manifests/v1").await;
    g.expect(200);
    assert_eq!(g.body, m);
    for d in &blobs[1..] {
        let h = srv.head(&format!("/v2/e2e/copy/blobs/{d}")).await;
        h.expect(200);
        assert_eq!(
            h.must_header("content-length"),
            src.read_blob(d).len().to_string()
        );
    }

    let info: Value =
        serde_json::from_slice(&sk.query(&srv, "inspect", &[], &format!("{dest}:v1"))).unwrap();
    assert_eq!(info["Digest"], md, "{info}");
    assert_eq!(info["Architecture"], "amd64", "{info}");
    assert_eq!(info["Os"], "linux", "{info}");
    let layers: Vec<Value> = serde_json::from_slice::<Value>(&m).unwrap()["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].clone())
        .collect();
    assert_eq!(info["Layers"], json!(layers), "{info}");
    assert_eq!(info["RepoTags"], json!(["v1", "v2"]), "{info}");

    let raw = sk.query(&srv, "inspect", &["--raw"], &format!("{dest}:v1"));
    assert_eq!(raw, m);
    let config = sk.query(
        &srv,
        "inspect",
        &["--raw", "--config"],
        &format!("{dest}@{md}"),
    );
    let cd = serde_json::from_slice::<Value>(&m).unwrap()["config"]["digest"].clone();
    assert_eq!(json!(sha256(&config)), cd);

    let tags: Value = serde_json::from_slice(&sk.query(&srv, "list-tags", &[], &dest)).unwrap();
    assert_eq!(tags["Tags"], json!(["v1", "v2"]), "{tags}");
    assert_eq!(
        tags["Repository"],
        format!("{}/e2e/app", srv.host()),
        "{tags}"
    );
}

#[tokio::test]
async fn skopeo_copy_all_multi_arch() {
    let srv = Server::start();
    let sk = Skopeo::new(&srv);
    let mut rng = Rng::new();
    let src = Layout::new();
    let amd = src.add_image("amd64", &[2000, 5000], &mut rng);
    let arm = src.add_image("arm64", &[3000], &mut rng);
    let idx = index_of(
        OCI_INDEX,
        &[(OCI_MANIFEST, &amd, "amd64"), (OCI_MANIFEST, &arm, "arm64")],
    );
    let idx_d = src.add_blob(&idx);
    src.set_index(vec![ref_entry(OCI_INDEX, &idx, "multi")]);
    let dest = format!("docker://{}/e2e/multi", srv.host());
    sk.push(
        &srv,
        &format!("oci:{}:multi", src.path().display()),
        &format!("{dest}:v1"),
        true,
    );

    let raw = sk.query(&srv, "inspect", &["--raw"], &format!("{dest}:v1"));
    assert_eq!(raw, idx);
    for (m, arch) in [(&amd, "amd64"), (&arm, "arm64")] {
        let g = srv
            .get(&format!("/v2/e2e/multi/manifests/{}", sha256(m)))
            .await;
        g.expect(200);
        assert_eq!(&g.body, m);
        // skopeo resolves the index to the platform it is asked for.
        let info: Value = serde_json::from_slice(&sk.ok(
            &srv,
            &[
                "--override-arch",
                arch,
                "--override-os",
                "linux",
                "inspect",
                "--tls-verify=true",
                "--no-creds",
                "--cert-dir",
                sk.cert_dir(),
                &format!("{dest}:v1"),
            ],
        ))
        .unwrap();
        assert_eq!(info["Architecture"], arch, "{info}");
    }

    let out = Layout::target();
    sk.pull(
        &srv,
        &format!("{dest}:v1"),
        &format!("oci:{}:multi", out.path().display()),
        true,
    );
    assert_same_image(&src, &out, "multi", &idx_d);
}

#[tokio::test]
async fn skopeo_delete_by_digest() {
    let srv = Server::start();
    let sk = Skopeo::new(&srv);
    let mut rng = Rng::new();
    let src = Layout::new();
    let m = src.add_image("amd64", &[1000, 2000], &mut rng);
    let md = sha256(&m);
    src.set_index(vec![ref_entry(OCI_MANIFEST, &m, "v1")]);
    let dest = format!("docker://{}/e2e/del", srv.host());
    sk.push(
        &srv,
        &format!("oci:{}:v1", src.path().display()),
        &format!("{dest}:v1"),
        false,
    );
    let info: Value =
        serde_json::from_slice(&sk.query(&srv, "inspect", &[], &format!("{dest}@{md}"))).unwrap();
    assert_eq!(info["Digest"], md);

    sk.query(&srv, "delete", &[], &format!("{dest}@{md}"));
    for r in [format!("{dest}@{md}"), format!("{dest}:v1")] {
        let out = sk.run(&[
            "inspect",
            "--tls-verify=true",
            "--no-creds",
            "--cert-dir",
            sk.cert_dir(),
            &r,
        ]);
        assert!(
            !out.status.success(),
            "inspect {r} still works after delete"
        );
    }
    srv.get(&format!("/v2/e2e/del/manifests/{md}"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}
