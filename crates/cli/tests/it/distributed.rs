//! `berth serve` on the distributed store, against real PostgreSQL and real Garage (an S3 server
//! that checks signatures and presigned-URL expiry): skopeo pushes and pulls with
//! authentication on, the data dir holds no registry data, a second node serves what the first
//! stored, blob downloads redirect to presigned URLs when asked to, and the start-up refuses
//! what it cannot run with.
//!
//! PostgreSQL and Garage: one each per test binary, shared (`crate::cluster`), a database and a
//! key prefix (`BERTH_S3_PREFIX`) per test so tests share them without seeing each other.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_storage_postgres::testing::{TestDatabase, fresh_database};
use berth_storage_s3::testing as s3;
use serde_json::Value;

use crate::auth_support::*;
use crate::cluster::{CLUSTER_PASSPHRASE, Skopeo, free_port, owner_creds, store_env};
use crate::harness::*;
use crate::trust_harness::{Out, isolated, run};

/// A database and a key prefix of their own: an empty distributed store for one test.
pub struct Cluster {
    pub db: TestDatabase,
    pub prefix: String,
}

impl Cluster {
    pub async fn new() -> Cluster {
        Cluster {
            db: fresh_database().await,
            prefix: s3::fresh_prefix(),
        }
    }

    /// The environment of a node of this cluster (`extra` added last, so it wins).
    pub fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = store_env(&self.db.url, &self.prefix);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    /// A node with authentication on, on a data dir of its own.
    pub fn node(&self, extra: &[(&str, &str)]) -> Server {
        let env = self.env(extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Server::start_configured(tempfile::tempdir().unwrap(), "127.0.0.1:0", &[], &env)
    }

    /// The S3 store of this cluster, to look at what landed in the bucket.
    pub fn s3(&self) -> berth_storage_s3::S3BlobStore {
        s3::store_at(&self.prefix)
    }

    pub fn presigner(&self) -> berth_storage_s3::presign::Presigner {
        berth_storage_s3::presign::Presigner::new(&berth_storage_s3::S3Config {
            prefix: self.prefix.clone(),
            ..s3::server().clone()
        })
        .unwrap()
    }
}

/// Every path under `dir`, relative, sorted (directories too).
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Writes an OCI layout holding `img` tagged `tag`.
pub fn write_layout(dir: &Path, img: &Image, tag: &str) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |data: &[u8]| {
        let d = sha256(data);
        std::fs::write(
            dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
            data,
        )
        .unwrap();
    };
    put(&img.config);
    for l in &img.layers {
        put(l);
    }
    put(&img.manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": img.digest,
            "size": img.manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

/// The blob `digest` from an OCI layout.
fn layout_blob(dir: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap_or_else(|e| panic!("{digest} in {}: {e}", dir.display()))
}

/// The manifest digest a pulled layout names.
fn pulled_digest(dir: &Path) -> String {
    let idx: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    idx["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

/// `berth serve` on the distributed store with `env` (no BERTH_* of the caller), expected to
/// refuse to start: its exit status and stderr.
fn serve_refused(env: &[(String, String)]) -> String {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BERTH_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!status.success(), "started: {stderr}");
            assert!(
                !String::from_utf8_lossy(&out.stdout).contains("listening on"),
                "{stderr}"
            );
            // Nothing of the registry on the local disk, even when refused.
            assert!(tree(data.path()).is_empty(), "{:?}", tree(data.path()));
            return stderr;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("berth serve neither started nor refused within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn skopeo_push_and_pull_on_postgres_and_s3_with_nothing_on_the_local_disk() {
    let cluster = Cluster::new().await;
    let a = cluster.node(&[]);
    let host = a.host();
    let mut rng = Rng::new();
    // Above the S3 piece size, so the blob goes up as pieces and is published by multipart.
    let img = Image::build("amd64", &mut rng, 2, 9 << 20);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_layout(&src, &img, "v1");
    let sk = Skopeo::new(&a.ca_path());
    sk.copy(
        &format!("oci:{}:v1", src.display()),
        &format!("docker://{host}/team/app:v1"),
        &owner_creds(),
    )
    .ok();
    // Without credentials: refused, as on the embedded store.
    let r = a.get("/v2/team/app/manifests/v1").await;
    assert_eq!(r.status, 401, "{r}");

    let out = work.path().join("out");
    sk.copy(
        &format!("docker://{host}/team/app:v1"),
        &format!("oci:{}:v1", out.display()),
        &owner_creds(),
    )
    .ok();
    assert_eq!(pulled_digest(&out), img.digest);
    for l in &img.layers {
        assert_eq!(&layout_blob(&out, &sha256(l)), l);
    }

    // The bytes are in the bucket under this cluster's prefix; the node's data dir holds only
    // its generated TLS material: no database, blobs, lock or passphrase file.
    let s3 = cluster.s3();
    for l in &img.layers {
        let d: berth_oci::Digest = sha256(l).parse().unwrap();
        assert!(
            berth_storage::BlobStore::stat(&s3, &d)
                .await
                .unwrap()
                .is_some(),
            "{d} not in S3"
        );
        let mut stream = berth_storage::BlobStore::read(&s3, &d, 0, l.len() as u64)
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(c) = futures::StreamExt::next(&mut stream).await {
            got.extend_from_slice(&c.unwrap());
        }
        assert_eq!(sha256(&got), sha256(l), "{d} in S3");
    }
    let files = tree(a.data_dir());
    assert!(
        files.iter().all(|f| f == "tls" || f.starts_with("tls/")),
        "registry data on the local disk: {files:?}"
    );
    assert!(files.contains(&"tls/ca.crt".to_string()), "{files:?}");

    // A second node on the same store, started while the first runs (no data-dir lock), serves
    // the image pushed through the first, and the owner made once logs in on both.
    let b = cluster.node(&[]);
    let sk_b = Skopeo::new(&b.ca_path());
    let out_b = work.path().join("out-b");
    sk_b.copy(
        &format!("docker://{}/team/app:v1", b.host()),
        &format!("oci:{}:v1", out_b.display()),
        &owner_creds(),
    )
    .ok();
    assert_eq!(pulled_digest(&out_b), img.digest);
    let users = admin(&b, reqwest::Method::GET, "users", None).await;
    let owners = users
        .as_array()
        .or_else(|| users["users"].as_array())
        .map(|u| u.iter().filter(|u| u["name"] == "owner").count());
    assert_eq!(owners, Some(1), "{users}");
    // The bootstrap password was printed by neither node (it was given), and no secret of the
    // store is in either log.
    let secret = cluster
        .env(&[])
        .into_iter()
        .find(|(k, _)| k == "BERTH_S3_SECRET_ACCESS_KEY")
        .unwrap()
        .1;
    for n in [&a, &b] {
        let logs = n.logs();
        assert!(!logs.contains(&secret), "S3 secret in the log");
        assert!(!logs.contains(CLUSTER_PASSPHRASE), "passphrase in the log");
        assert!(logs.contains("distributed store"), "{logs}");
    }
}

#[tokio::test]
async fn several_nodes_starting_at_once_on_an_empty_store_make_one_owner() {
    let cluster = Cluster::new().await;
    // No BERTH_BOOTSTRAP_PASSWORD: the node that creates the owner prints its password.
    let env = cluster.env(&[]);
    let spawn = |env: Vec<(String, String)>| {
        std::thread::spawn(move || {
            let data = tempfile::tempdir().unwrap();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
            cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(data.path());
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("BERTH_") {
                    cmd.env_remove(k);
                }
            }
            for (k, v) in &env {
                cmd.env(k, v);
            }
            let work = tempfile::tempdir().unwrap();
            let err_path = work.path().join("stderr");
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&err_path).unwrap())
                .spawn()
                .unwrap();
            let mut line = String::new();
            let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
            std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
            let _ = child.kill();
            let _ = child.wait();
            (line, std::fs::read_to_string(&err_path).unwrap())
        })
    };
    let handles: Vec<_> = (0..3).map(|_| spawn(env.clone())).collect();
    let results: Vec<(String, String)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (line, err) in &results {
        assert!(line.starts_with("listening on https://"), "{line}\n{err}");
    }
    let printed: Vec<&String> = results
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e.contains("Its password, shown only this once"))
        .collect();
    assert_eq!(
        printed.len(),
        1,
        "exactly one node prints the owner's password: {results:#?}"
    );
    let password = printed[0]
        .lines()
        .skip_while(|l| !l.contains("shown only this once"))
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    // That password is the owner's on any node.
    let node = cluster.node(&[]);
    let r = call(
        &node,
        reqwest::Method::GET,
        "/api/v1/users",
        &Cred::basic("owner", &password),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    let text = String::from_utf8_lossy(&r.body);
    assert_eq!(text.matches("\"name\":\"owner\"").count(), 1, "{text}");
}

#[tokio::test]
async fn blob_downloads_redirect_to_presigned_urls_that_the_store_checks() {
    let cluster = Cluster::new().await;
    let srv = cluster.node(&[("BERTH_S3_REDIRECT", "true")]);
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 1, 100_000);
    push_image_as(&srv, &Cred::owner(), "team/app", "v1", &img).await;
    let layer = &img.layers[0];
    let digest = sha256(layer);
    let path = format!("/v2/team/app/blobs/{digest}");

    // Authorization first: no credentials, no URL.
    let r = srv.get(&path).await;
    assert_eq!(r.status, 401, "{r}");
    assert!(r.header("location").is_none(), "{r}");
    // A user without pull rights on the repository: denied, no URL.
    let nobody = user_with_roles(&srv, "nobody", "nobody-password-1", &[]).await;
    let r = call(&srv, reqwest::Method::GET, &path, &nobody, &[], None).await;
    assert_eq!(r.status, 403, "{r}");
    assert!(r.header("location").is_none(), "{r}");
    // A blob not in this repository: 404, no URL.
    let r = call(
        &srv,
        reqwest::Method::GET,
        &format!("/v2/team/other/blobs/{digest}"),
        &Cred::owner(),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 404, "{r}");

    // The owner gets a 307 to a presigned URL of the bucket, valid for 5 minutes.
    let r = call(&srv, reqwest::Method::GET, &path, &Cred::owner(), &[], None).await;
    assert_eq!(r.status, 307, "{r}");
    assert_eq!(r.header("docker-content-digest").as_deref(), Some(&*digest));
    let location = r.must_header("location");
    let endpoint = cluster
        .env(&[])
        .into_iter()
        .find(|(k, _)| k == "BERTH_S3_ENDPOINT")
        .unwrap()
        .1;
    assert!(location.starts_with(&endpoint), "{location}");
    assert!(location.contains("X-Amz-Expires=300&"), "{location}");
    assert!(location.contains(&cluster.prefix), "{location}");
    // HEAD is answered by Berth itself.
    let r = call(
        &srv,
        reqwest::Method::HEAD,
        &path,
        &Cred::owner(),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        r.header("content-length").as_deref(),
        Some(&*layer.len().to_string())
    );

    // A plain client (no credentials) follows it: the bytes, from S3. A range too.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let got = plain.get(&location).send().await.unwrap();
    assert_eq!(got.status(), 200);
    let body = got.bytes().await.unwrap();
    assert_eq!(sha256(&body), digest);
    let got = plain
        .get(&location)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 206);
    assert_eq!(&got.bytes().await.unwrap()[..], &layer[10..20]);

    // A client that follows redirects itself and drops its credentials on the way (reqwest
    // does, across hosts/ports), as registry clients do.
    let following = srv
        .client_builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .unwrap();
    let got = following
        .get(srv.url(&path))
        .basic_auth("owner", Some(OWNER_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(sha256(&got.bytes().await.unwrap()), digest);

    // The store checks the signature and the expiry: an altered URL, a longer expiry and an
    // expired URL are all refused.
    let tampered = location.replace("X-Amz-Expires=300", "X-Amz-Expires=3000");
    assert_eq!(plain.get(&tampered).send().await.unwrap().status(), 403);
    let other_sig = {
        let (head, sig) = location.rsplit_once("X-Amz-Signature=").unwrap();
        let flipped: String = sig
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    if c == '0' { '1' } else { '0' }
                } else {
                    c
                }
            })
            .collect();
        format!("{head}X-Amz-Signature={flipped}")
    };
    assert_eq!(plain.get(&other_sig).send().await.unwrap().status(), 403);
    let d: berth_oci::Digest = digest.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Signed 200 s ago: good for 300 s, fetched; good for 100 s, expired 100 s ago (well inside
    // any clock-skew allowance, so it is the expiry that is checked).
    let presigner = cluster.presigner();
    let fresh = presigner.blob_url(&d, now - 200, Duration::from_secs(300));
    assert_eq!(plain.get(&fresh).send().await.unwrap().status(), 200);
    let expired = presigner.blob_url(&d, now - 200, Duration::from_secs(100));
    let refused = plain.get(&expired).send().await.unwrap();
    let status = refused.status().as_u16();
    let text = refused.text().await.unwrap();
    // S3 answers 403 AccessDenied, Garage 400 InvalidRequest.
    assert!(matches!(status, 400 | 403), "{status} {text}");

    // skopeo (containers/image) follows the redirect for every blob.
    let sk = Skopeo::new(&srv.ca_path());
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    sk.copy(
        &format!("docker://{}/team/app:v1", srv.host()),
        &format!("oci:{}:v1", out.display()),
        &owner_creds(),
    )
    .ok();
    assert_eq!(&layout_blob(&out, &digest), layer);
}

#[tokio::test]
async fn a_node_refuses_to_start_without_what_a_cluster_needs() {
    let cluster = Cluster::new().await;
    let without = |name: &str| -> Vec<(String, String)> {
        cluster
            .env(&[])
            .into_iter()
            .filter(|(k, _)| k != name)
            .collect()
    };
    let e = serve_refused(&without("BERTH_TRUST_KEY_PASSPHRASE"));
    assert!(
        e.contains("BERTH_TRUST_KEY_PASSPHRASE") && e.contains("same on every node"),
        "{e}"
    );
    let e = serve_refused(&without("BERTH_POSTGRES_URL"));
    assert!(
        e.contains("postgres_url") && e.contains("BERTH_POSTGRES_URL"),
        "{e}"
    );
    let e = serve_refused(&without("BERTH_S3_BUCKET"));
    assert!(
        e.contains("s3_bucket") && e.contains("BERTH_S3_BUCKET"),
        "{e}"
    );
    // A wrong S3 secret is found at start, and not shown.
    let mut env = without("BERTH_S3_SECRET_ACCESS_KEY");
    env.push((
        "BERTH_S3_SECRET_ACCESS_KEY".into(),
        "wrong-secret-0123456789".into(),
    ));
    let e = serve_refused(&env);
    assert!(e.contains("reaching bucket"), "{e}");
    assert!(!e.contains("wrong-secret-0123456789"), "{e}");
    // An unreachable database, named without its password.
    let mut env = without("BERTH_POSTGRES_URL");
    env.push((
        "BERTH_POSTGRES_URL".into(),
        "postgres://berth:pg-secret-pw@127.0.0.1:1/berth".into(),
    ));
    let e = serve_refused(&env);
    assert!(e.contains("postgres://berth:***@127.0.0.1:1/berth"), "{e}");
    assert!(!e.contains("pg-secret-pw"), "{e}");
}

/// `berth store migrate` with the cluster's environment (and nothing else of the caller's).
fn migrate(cluster: &Cluster, from: &Path, config: &Path, extra: &[(&str, &str)]) -> Out {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = isolated(env!("CARGO_BIN_EXE_berth"), home.path());
    // The file names the store; the environment gives the secrets (as on a node). The
    // passphrase only when the test gives one: else the source's file is the one used.
    for (k, v) in cluster.env(&[]) {
        if k != "BERTH_STORE" && k != "BERTH_TRUST_KEY_PASSPHRASE" {
            cmd.env(k, v);
        }
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.args([
        "store",
        "migrate",
        "--from",
        &format!("embedded:{}", from.display()),
        "--to",
        &format!("distributed:{}", config.display()),
    ]);
    run(&mut cmd, None)
}

#[tokio::test]
async fn migrate_a_single_node_registry_with_signed_tags_into_a_cluster() {
    let cluster = Cluster::new().await;
    let mut srv = Server::start_with_auth();
    enable_trust_as_owner(&srv).await;
    // A webhook whose receiver is down until the cluster runs: its events stay queued.
    let hook_port = free_port();
    admin(
        &srv,
        reqwest::Method::POST,
        "webhooks",
        Some(serde_json::json!({"name": "moving", "actions": ["push"],
            "uri": format!("http://127.0.0.1:{hook_port}/m"), "secret": "moving-secret-0123456789"})),
    )
    .await;
    let repo = crate::trust_harness::gun(&srv, "team/app");
    let sam = crate::trust_harness::signer(&srv, "sam", "team/*").await;
    let rita = crate::trust_harness::reader(&srv, "rita", "team/*").await;
    let ci = crate::trust_harness::signing_token(&srv, "ci", "team/*").await;
    let mut rng = Rng::new();
    let work = tempfile::tempdir().unwrap();
    let sam_home = work.path().join("sam");
    std::fs::create_dir_all(&sam_home).unwrap();
    let (l1, img1) = crate::trust_cli::new_layout(work.path(), "v1", &mut rng);
    let (l2, img2) = crate::trust_cli::new_layout(work.path(), "v2", &mut rng);
    let sam_run =
        |srv: &Server, args: &[&str]| crate::cli_messages::berth_as(srv, &sam_home, &sam, args);
    sam_run(
        &srv,
        &[
            "push",
            &crate::trust_cli::oci(&l1, "v1"),
            &format!("{repo}:v1"),
            "--trust",
        ],
    )
    .ok();
    sam_run(
        &srv,
        &[
            "push",
            &crate::trust_cli::oci(&l2, "v2"),
            &format!("{repo}:v2"),
            "--trust",
        ],
    )
    .ok();
    // An unsigned tag in another repository, and an untagged manifest.
    push_image_as(&srv, &Cred::owner(), "team/plain", "latest", &img2).await;
    let loose = Image::build("arm64", &mut rng, 1, 3000);
    push_image_as(&srv, &Cred::owner(), "team/plain", "gone", &loose).await;
    let r = call(
        &srv,
        reqwest::Method::DELETE,
        "/v2/team/plain/manifests/gone",
        &Cred::owner(),
        &[],
        None,
    )
    .await;
    assert!(r.status == 202 || r.status == 404, "{r}");
    // An untagged artifact referring to the image (a referrer), pushed by digest.
    let sbom = oci_manifest(&img2.config, &[], |m| {
        m.insert("subject".into(), desc(OCI_MANIFEST, &img2.manifest));
        m.insert("artifactType".into(), "application/vnd.example.sbom".into());
    });
    let sbom_digest = sha256(&sbom);
    let r = call(
        &srv,
        reqwest::Method::PUT,
        &format!("/v2/team/plain/manifests/{sbom_digest}"),
        &Cred::owner(),
        &[("content-type", OCI_MANIFEST)],
        Some(sbom.clone()),
    )
    .await;
    assert_eq!(r.status, 201, "{r}");
    let port = srv.port;
    let data = srv.data_dir().to_path_buf();
    assert!(srv.stop().success());

    let config = work.path().join("berth.toml");
    std::fs::write(
        &config,
        "[store]\nkind = \"distributed\"\ns3_path_style = true\n",
    )
    .unwrap();
    let passphrase = std::fs::read_to_string(data.join("trust-key-passphrase")).unwrap();
    let passphrase = passphrase.trim();
    // The nodes and the migration run with the source's passphrase.
    let env_extra = [("BERTH_TRUST_KEY_PASSPHRASE", passphrase)];

    // While a server holds the data dir, nothing is copied.
    {
        let _held = std::fs::OpenOptions::new()
            .write(true)
            .open(data.join("berth.lock"))
            .unwrap();
        _held.try_lock().unwrap();
        let out = migrate(&cluster, &data, &config, &env_extra).fails();
        assert!(out.stderr.contains("stop its berth serve first"), "{out}");
    }
    // A wrong passphrase is refused before anything is written.
    let out = migrate(
        &cluster,
        &data,
        &config,
        &[("BERTH_TRUST_KEY_PASSPHRASE", "not-the-passphrase-at-all")],
    )
    .fails();
    assert!(out.stderr.contains("passphrase"), "{out}");

    let out = migrate(&cluster, &data, &config, &[]).ok();
    for expect in [
        "2 repositories",
        "4 identities",
        "1 token-signing keys",
        "1 webhooks with 5 queued events",
        "verified the copy",
        "trust-key-passphrase",
    ] {
        assert!(out.stdout.contains(expect), "{expect}: {out}");
    }
    assert!(
        !out.all().contains(passphrase),
        "the passphrase is printed: {out}"
    );
    // Into a store that holds something: refused.
    let out = migrate(&cluster, &data, &config, &[]).fails();
    assert!(out.stderr.contains("not empty"), "{out}");

    // A node of the cluster on the same address with the same certificate: clients carry on.
    let node_data = tempfile::tempdir().unwrap();
    let tls = node_data.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    for f in std::fs::read_dir(data.join("tls")).unwrap().flatten() {
        std::fs::copy(f.path(), tls.join(f.file_name())).unwrap();
    }
    let env = cluster.env(&env_extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let node = Server::start_configured(node_data, &format!("127.0.0.1:{port}"), &[], &env);
    assert_eq!(node.port, port);

    // A first-time reader (fresh client, trust on first use) pulls the signed tags.
    let rita_home = work.path().join("rita");
    std::fs::create_dir_all(&rita_home).unwrap();
    for (tag, img) in [("v1", &img1), ("v2", &img2)] {
        let dest = work.path().join(format!("pulled-{tag}"));
        let out = crate::cli_messages::berth_as(
            &node,
            &rita_home,
            &rita,
            &[
                "pull",
                &format!("{repo}:{tag}"),
                &format!("oci:{}", dest.display()),
                "--trust",
            ],
        )
        .ok();
        assert!(out.stdout.contains(&img.digest), "{out}");
        assert_eq!(pulled_digest(&dest), img.digest);
    }
    // The queued events, copied with the webhook, are delivered by the cluster, signed with the
    // secret sealed on the single node.
    let rx = crate::webhooks::Receiver::start_on(&format!("127.0.0.1:{hook_port}"), &[]).await;
    let got = rx
        .wait_for("/m", "the events queued before the migration", |g| {
            g.len() >= 5
        })
        .await;
    let pushed: BTreeSet<String> = got
        .iter()
        .map(|g| {
            assert!(crate::webhooks::signed_by(g, "moving-secret-0123456789"));
            let e = g.event();
            format!(
                "{}:{}@{}",
                e["target"]["repository"].as_str().unwrap(),
                e["target"]["tag"].as_str().unwrap_or(""),
                e["target"]["digest"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        format!("team/app:v1@{}", img1.digest),
        format!("team/app:v2@{}", img2.digest),
        format!("team/plain:latest@{}", img2.digest),
        format!("team/plain:gone@{}", loose.digest),
        format!("team/plain:@{sbom_digest}"),
    ] {
        assert!(pushed.contains(&want), "{want} not in {pushed:?}");
    }
    // The signer signs on through the cluster with the keys and cache it has.
    let (l3, img3) = crate::trust_cli::new_layout(work.path(), "v3", &mut rng);
    sam_run(
        &node,
        &[
            "push",
            &crate::trust_cli::oci(&l3, "v3"),
            &format!("{repo}:v3"),
            "--trust",
        ],
    )
    .ok();
    let out =
        crate::cli_messages::berth_as(&node, &rita_home, &rita, &["trust", "inspect", &repo]).ok();
    for img in [&img1, &img2, &img3] {
        assert!(
            out.stdout
                .contains(img.digest.trim_start_matches("sha256:")),
            "{out}"
        );
    }
    // The CI token and the owner log in; the unsigned repository is there for skopeo.
    let r = call(
        &node,
        reqwest::Method::GET,
        "/v2/team/app/tags/list",
        &ci,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    let sk = Skopeo::new(&node.ca_path());
    let out_dir = work.path().join("plain");
    sk.copy(
        &format!("docker://{}/team/plain:latest", node.host()),
        &format!("oci:{}:latest", out_dir.display()),
        &owner_creds(),
    )
    .ok();
    assert_eq!(pulled_digest(&out_dir), img2.digest);
    // The untagged referrer came along, and is listed for its subject.
    let r = call(
        &node,
        reqwest::Method::GET,
        &format!("/v2/team/plain/manifests/{sbom_digest}"),
        &Cred::owner(),
        &[("accept", OCI_MANIFEST)],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, sbom);
    let r = call(
        &node,
        reqwest::Method::GET,
        &format!("/v2/team/plain/referrers/{}", img2.digest),
        &Cred::owner(),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        r.json()["manifests"][0]["digest"],
        sbom_digest.as_str(),
        "{r}"
    );
    // The audit log came along (the source's entries, then the cluster's).
    let audit = admin(&node, reqwest::Method::GET, "audit?limit=10000", None).await;
    let text = audit.to_string();
    assert!(text.contains("trust.updated"), "{text}");
    // The node keeps no registry data locally.
    let files = tree(node.data_dir());
    assert!(
        files.iter().all(|f| f == "tls" || f.starts_with("tls/")),
        "{files:?}"
    );
}

/// Bad arguments are named before anything is opened.
#[test]
fn migrate_names_what_is_wrong_with_its_arguments() {
    let home = tempfile::tempdir().unwrap();
    let berth = |args: &[&str]| {
        let mut cmd = isolated(env!("CARGO_BIN_EXE_berth"), home.path());
        cmd.arg("store").arg("migrate").args(args);
        run(&mut cmd, None).fails()
    };
    let out = berth(&["--from", "/var/lib/berth", "--to", "distributed:x.toml"]);
    assert!(out.stderr.contains("expected embedded:DIR"), "{out}");
    let out = berth(&["--from", "embedded:/nonexistent", "--to", "x.toml"]);
    assert!(out.stderr.contains("expected distributed:CONFIG"), "{out}");
    let out = berth(&[
        "--from",
        &format!("embedded:{}", home.path().display()),
        "--to",
        "distributed:x.toml",
    ]);
    assert!(out.stderr.contains("has no metadata.db"), "{out}");
    // An embedded config as the destination.
    let empty_dir = tempfile::tempdir().unwrap();
    std::fs::write(empty_dir.path().join("metadata.db"), b"").unwrap();
    let cfg = home.path().join("berth.toml");
    std::fs::write(&cfg, "[store]\nkind = \"embedded\"\n").unwrap();
    let out = berth(&[
        "--from",
        &format!("embedded:{}", empty_dir.path().display()),
        "--to",
        &format!("distributed:{}", cfg.display()),
    ]);
    assert!(
        out.stderr.contains("does not name a distributed store"),
        "{out}"
    );
    // Nothing was created in the source dir.
    assert_eq!(tree(empty_dir.path()), ["metadata.db"]);
}
