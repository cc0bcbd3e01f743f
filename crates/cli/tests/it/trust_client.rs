//! berth-trust-client (the trust half of Berth's client) against a real `berth serve`, checked
//! by the real docker and notary CLIs in both directions, plus attacks through a rewriting
//! proxy, passphrases and key backups.

use std::path::Path;
use std::sync::{Arc, Mutex};

use berth_trust_client::{Credentials, Error, KeyStore, Remote, Repository, parse_public_key_pem};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_harness::*;

/// The signer every test publishes as (AcrPush + AcrImageSigner on team/*), and a reader
/// (AcrPull) for first-time pullers: authentication is on, as `berth serve` runs by default.
const SIGNER: (&str, &str) = ("sigrid", "sigrid-signing-password-1");
const READER: (&str, &str) = ("reed", "reed-reading-password-1");

/// A server with authentication on and the signer and reader above.
async fn start() -> Server {
    let srv = start_server();
    signer(&srv, "sigrid", "team/*").await;
    reader(&srv, "reed", "team/*").await;
    srv
}

fn basic((username, password): (&str, &str)) -> Credentials {
    Credentials::Basic {
        username: username.to_owned(),
        password: password.to_owned(),
    }
}

fn signer_cred() -> Cred {
    Cred::basic(SIGNER.0, SIGNER.1)
}

/// The trust server as the signer sees it.
fn remote(srv: &Server) -> Remote {
    Remote::new(srv.new_client(), &srv.base).with_credentials(Some(basic(SIGNER)))
}

/// The trust server as a reader sees it.
fn reader_remote(srv: &Server) -> Remote {
    Remote::new(srv.new_client(), &srv.base).with_credentials(Some(basic(READER)))
}

/// A key store in `trust_dir` with the passphrases the docker helpers use.
fn keystore(trust_dir: &Path) -> KeyStore {
    KeyStore::new(trust_dir).with_passphrases(Some(ROOT_PW), Some(REPOSITORY_PW))
}

/// A client with its own, empty trust directory (fresh cache, no keys): a first-time puller.
fn fresh_repo(remote: Remote, gun: &str) -> (Repository, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let r = Repository::new(remote, keystore(&tmp.path().join("trust")), gun);
    (r, tmp)
}

#[tokio::test]
async fn berth_signs_and_docker_and_notary_agree() {
    let srv = start().await;
    enable_trust(&srv).await;
    let repo = gun(&srv, "team/app");
    let mut rng = Rng::new();
    let v1 = srv
        .push_image("team/app", Some("v1"), "amd64", &mut rng)
        .await;
    let v2 = srv
        .push_image("team/app", Some("v2"), "arm64", &mut rng)
        .await;

    // Berth works in docker's trust directory, so docker sees the same keys and cache.
    let d = Docker::logged_in(&srv, &signer_cred());
    let trust_dir = d.config.join("trust");
    let owner = Repository::new(remote(&srv), keystore(&trust_dir), &repo);

    // Nothing signed yet: docker's meaning, and nothing is cached.
    let err = owner.resolve("v1").await.unwrap_err();
    assert!(matches!(err, Error::RepositoryNotExist { .. }), "{err:?}");
    assert!(
        err.to_string().contains("remote trust data does not exist"),
        "{err}"
    );
    assert!(!owner.tuf().cache_dir().exists());

    // First sign initialises like `docker push` (root + targets, server-managed snapshot).
    let p = owner
        .sign("v1", &v1.digest, v1.manifest.len() as u64)
        .await
        .unwrap();
    assert!(p.initialized);
    assert_eq!(p.roles, ["targets"]);
    let priv_dir = trust_dir.join("private");
    assert_eq!(mode(&priv_dir), 0o700);
    let root_file = find_key_file(&priv_dir, "root", None);
    let targets_file = find_key_file(&priv_dir, "targets", Some(&repo));
    assert_eq!(mode(&root_file), 0o600);
    assert_eq!(mode(&targets_file), 0o600);
    for f in [
        "root.json",
        "targets.json",
        "snapshot.json",
        "timestamp.json",
    ] {
        let p = owner.tuf().cache_dir().join(f);
        assert!(p.exists(), "{} not cached", p.display());
    }
    let root: Value = serde_json::from_slice(&tuf_bytes(&srv, &repo, "root.json").await).unwrap();
    let snap_key = tuf_get(&srv, &repo, "snapshot.key").await.json();
    assert_eq!(
        root["signed"]["roles"]["snapshot"]["keyids"][0],
        key_id(
            snap_key["keytype"].as_str().unwrap(),
            snap_key["keyval"]["public"].as_str().unwrap()
        ),
        "snapshot is server-managed: {root}"
    );

    // notary (fresh trust dir, TOFU) and docker list the tag with our digest and size.
    let n = Notary::with_login(&srv, &signer_cred());
    let listed = n.list(&repo, &[]);
    assert_eq!(
        listed.get("v1"),
        Some(&(
            hex_of(&v1.digest).to_owned(),
            v1.manifest.len() as u64,
            "targets".to_owned()
        )),
        "{listed:?}"
    );
    let docker_view = d.inspect(&repo);
    assert_eq!(docker_view["SignedTags"][0]["SignedTag"], "v1");
    assert_eq!(docker_view["SignedTags"][0]["Digest"], hex_of(&v1.digest));
    assert_eq!(
        docker_view["SignedTags"][0]["Signers"],
        serde_json::json!(["Repo Admin"])
    );
    // Our inspect is docker's, field for field.
    assert_eq!(owner.inspect().await.unwrap(), docker_view);

    // A signer with a key from our store: v2 goes into targets/releases and targets/carol.
    let (carol, carol_info) = owner.keys().generate("carol", None).unwrap();
    assert_eq!(mode(&carol_info.path), 0o600);
    owner
        .add_signer("carol", &[carol.public_key().clone()])
        .await
        .unwrap();
    let p = owner
        .sign("v2", &v2.digest, v2.manifest.len() as u64)
        .await
        .unwrap();
    let mut roles = p.roles.clone();
    roles.sort();
    assert_eq!(roles, ["targets/carol", "targets/releases"]);

    let docker_view = Docker::logged_in(&srv, &signer_cred()).inspect(&repo);
    let ours = owner.inspect().await.unwrap();
    assert_eq!(ours, docker_view);
    assert_eq!(docker_view["Signers"][0]["Name"], "carol");
    assert_eq!(
        docker_view["Signers"][0]["Keys"][0]["ID"],
        carol_info.id.as_str()
    );
    let v2_row = docker_view["SignedTags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["SignedTag"] == "v2")
        .unwrap_or_else(|| panic!("{docker_view}"));
    assert_eq!(v2_row["Digest"], hex_of(&v2.digest));
    assert_eq!(v2_row["Signers"], serde_json::json!(["carol"]));
    // --pretty as docker prints it.
    let docker_pretty = d.run(&["trust", "inspect", "--pretty", &repo]).ok();
    let data = owner.tuf().update().await.unwrap();
    assert_eq!(
        berth_trust_client::inspect_pretty(&data, None).trim(),
        docker_pretty.stdout.trim(),
        "{docker_pretty}"
    );
    let listed =
        Notary::with_login(&srv, &signer_cred()).list(&repo, &["--roles", "targets/releases"]);
    assert_eq!(
        listed.get("v2").map(|t| (t.0.as_str(), t.1)),
        Some((hex_of(&v2.digest), v2.manifest.len() as u64)),
        "{listed:?}"
    );

    // A first-time client resolves both tags through the whole TUF chain.
    let (reader, _tmp) = fresh_repo(reader_remote(&srv), &repo);
    let t = reader.resolve("v2").await.unwrap();
    assert_eq!(
        (t.digest.as_str(), t.size, t.role.as_str()),
        (
            v2.digest.as_str(),
            v2.manifest.len() as u64,
            "targets/releases"
        )
    );
    assert_eq!(reader.resolve("v1").await.unwrap().digest, v1.digest);
    let err = reader.resolve("nope").await.unwrap_err();
    assert_eq!(err.to_string(), "No valid trust data for nope");

    // Revoke v2 and remove the signer; docker follows.
    owner.revoke(Some("v2")).await.unwrap();
    assert!(matches!(
        reader.resolve("v2").await,
        Err(Error::NoTrustData { .. })
    ));
    owner.remove_signer("carol").await.unwrap();
    let docker_view = d.inspect(&repo);
    assert_eq!(
        docker_view["Signers"],
        serde_json::json!([]),
        "{docker_view}"
    );
    assert_eq!(owner.inspect().await.unwrap(), docker_view);
}

#[tokio::test]
async fn docker_signed_repository_resolves_and_docker_keys_sign_with_berth() {
    let srv = start().await;
    enable_trust(&srv).await;
    let repo = gun(&srv, "team/web");
    let mut rng = Rng::new();
    let v1 = srv
        .push_image("team/web", Some("v1"), "amd64", &mut rng)
        .await;
    let v2 = srv
        .push_image("team/web", Some("v2"), "amd64", &mut rng)
        .await;
    let v3 = srv
        .push_image("team/web", Some("v3"), "amd64", &mut rng)
        .await;

    let d = Docker::logged_in(&srv, &signer_cred());
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
    {
        let _engine = FakeEngine::start(&d, &v1.digest, v1.manifest.len());
        d.run(&["trust", "sign", &format!("{repo}:v1")]).ok();
    }

    // A first-time berth client resolves docker's signature.
    let (reader, _tmp) = fresh_repo(reader_remote(&srv), &repo);
    let t = reader.resolve("v1").await.unwrap();
    assert_eq!(t.digest, v1.digest);
    assert_eq!(t.size, v1.manifest.len() as u64);

    // Berth signs v2 with alice's key, made by `docker trust key generate`, from docker's store.
    let trust_dir = d.config.join("trust");
    let berth = Repository::new(remote(&srv), keystore(&trust_dir), &repo);
    let p = berth
        .sign("v2", &v2.digest, v2.manifest.len() as u64)
        .await
        .unwrap();
    let mut roles = p.roles.clone();
    roles.sort();
    assert_eq!(roles, ["targets/alice", "targets/releases"]);
    let view = d.inspect(&repo);
    let row = view["SignedTags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["SignedTag"] == "v2")
        .unwrap_or_else(|| panic!("docker does not see v2: {view}"));
    assert_eq!(row["Digest"], hex_of(&v2.digest));
    assert_eq!(row["Signers"], serde_json::json!(["alice"]));

    // A second docker key becomes a signer through berth and signs v3.
    d.run(&["trust", "key", "generate", "bob"]).ok();
    let bob = parse_public_key_pem(&std::fs::read(d.work.join("bob.pub")).unwrap()).unwrap();
    let bob_id = bob.key_id();
    berth.add_signer("bob", &[bob]).await.unwrap();
    assert_eq!(
        find_key_file(&d.private_dir(), "bob", None)
            .file_stem()
            .unwrap()
            .to_string_lossy(),
        bob_id
    );
    // Sign with bob's key only (a store holding just bob's key file).
    let bob_only = tempfile::tempdir().unwrap();
    let bob_priv = bob_only.path().join("trust/private");
    std::fs::create_dir_all(&bob_priv).unwrap();
    std::fs::copy(
        find_key_file(&d.private_dir(), "bob", None),
        bob_priv.join(format!("{bob_id}.key")),
    )
    .unwrap();
    let as_bob = Repository::new(
        remote(&srv),
        keystore(&bob_only.path().join("trust")),
        &repo,
    );
    let p = as_bob
        .sign("v3", &v3.digest, v3.manifest.len() as u64)
        .await
        .unwrap();
    let mut roles = p.roles.clone();
    roles.sort();
    assert_eq!(roles, ["targets/bob", "targets/releases"]);
    let view = Docker::logged_in(&srv, &signer_cred()).inspect(&repo);
    assert_eq!(berth.inspect().await.unwrap(), view);
    let signers: Vec<&str> = view["Signers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap())
        .collect();
    // Docker's order: descending by name.
    assert_eq!(signers, ["bob", "alice"], "{view}");
    let row = view["SignedTags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["SignedTag"] == "v3")
        .unwrap_or_else(|| panic!("{view}"));
    assert_eq!(row["Signers"], serde_json::json!(["bob"]));
    // Docker's own client (cache in the same directory berth updated) still verifies.
    assert_eq!(reader.resolve("v3").await.unwrap().digest, v3.digest);
}

#[tokio::test]
async fn notary_tag_resolves_and_delegation_only_tag_is_refused() {
    let srv = start().await;
    enable_trust(&srv).await;
    let repo = gun(&srv, "team/lib");
    let n = Notary::with_login(&srv, &signer_cred());
    n.run(&["init", &repo, "-p"]).ok();
    let hash = Rng::new().hex(64);
    n.run(&["addhash", &repo, "1.0", "777", "--sha256", &hash, "-p"])
        .ok();

    let (reader, _tmp) = fresh_repo(reader_remote(&srv), &repo);
    let t = reader.resolve("1.0").await.unwrap();
    assert_eq!(t.digest, format!("sha256:{hash}"));
    assert_eq!((t.size, t.role.as_str()), (777, "targets"));

    // A tag only in targets/other is not trusted, as docker refuses it.
    let k = EcKey::generate(n.work(), "other");
    let cert = k.self_signed_cert("other", 365);
    let cert_path = n.work().join("other.crt");
    std::fs::write(&cert_path, cert).unwrap();
    n.run(&[
        "delegation",
        "add",
        &repo,
        "targets/other",
        cert_path.to_str().unwrap(),
        "--all-paths",
        "-p",
    ])
    .ok();
    n.run(&[
        "key",
        "import",
        k.pem.to_str().unwrap(),
        "--role",
        "targets/other",
    ])
    .ok();
    let other = Rng::new().hex(64);
    n.run(&[
        "addhash",
        &repo,
        "2.0",
        "99",
        "--sha256",
        &other,
        "--roles",
        "targets/other",
        "-p",
    ])
    .ok();
    let listed = n.list(&repo, &["--roles", "targets/other"]);
    assert!(listed.contains_key("2.0"), "{listed:?}");
    let err = reader.resolve("2.0").await.unwrap_err();
    assert!(matches!(err, Error::NoTrustData { .. }), "{err:?}");
    assert_eq!(reader.resolve("1.0").await.unwrap().digest, t.digest);
}

// ------------------------------------------------------------------------------------------------
// Attacks through a rewriting proxy

type Rewrite = Box<dyn Fn(&str, u16, Vec<u8>) -> (u16, Vec<u8>) + Send + Sync>;

/// Plain HTTP on 127.0.0.1 in front of Berth's HTTPS; `rewrite(path, status, body)` may
/// replace any answer, as a compromised server or a network attacker would.
struct Proxy {
    base: String,
    rewrite: Arc<Mutex<Rewrite>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(srv: &Server) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let rewrite: Arc<Mutex<Rewrite>> = Arc::new(Mutex::new(Box::new(|_, s, b| (s, b))));
        let upstream = srv.new_client();
        let origin = srv.base.clone();
        let rw = rewrite.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (upstream, origin, rw) = (upstream.clone(), origin.clone(), rw.clone());
                tokio::spawn(async move {
                    let _ = serve_one(sock, upstream, origin, rw).await;
                });
            }
        });
        Proxy {
            base,
            rewrite,
            task,
        }
    }

    fn set(&self, f: impl Fn(&str, u16, Vec<u8>) -> (u16, Vec<u8>) + Send + Sync + 'static) {
        *self.rewrite.lock().unwrap() = Box::new(f);
    }

    fn remote(&self) -> Remote {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Remote::new(client, &self.base).with_credentials(Some(basic(READER)))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request per connection: enough for a client that keeps no idle connections.
async fn serve_one(
    mut sock: tokio::net::TcpStream,
    upstream: reqwest::Client,
    origin: String,
    rewrite: Arc<Mutex<Rewrite>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let method = first.next().unwrap_or("GET").to_owned();
    let path = first.next().unwrap_or("/").to_owned();
    let mut headers = Vec::new();
    let mut len = 0usize;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
            if k == "content-length" {
                len = v.parse().unwrap_or(0);
            }
            if k == "content-type" || k == "authorization" {
                headers.push((k, v));
            }
        }
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    let mut rb = upstream.request(method.parse().unwrap(), format!("{origin}{path}"));
    for (k, v) in headers {
        rb = rb.header(k, v);
    }
    if method == "POST" || method == "PUT" {
        rb = rb.body(body);
    }
    let (status, data) = match rb.send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
        }
        Err(_) => (502, Vec::new()),
    };
    let (status, data) = (rewrite.lock().unwrap())(&path, status, data);
    let resp = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        data.len()
    );
    sock.write_all(resp.as_bytes()).await?;
    sock.write_all(&data).await?;
    sock.shutdown().await
}

/// Enables trust, pushes `name:v1` and signs it as the owner (keys in the returned dir).
async fn signed_v1(
    srv: &Server,
    name: &str,
    rng: &mut Rng,
) -> (String, Image, Repository, tempfile::TempDir) {
    enable_trust(srv).await;
    let repo = gun(srv, name);
    let v1 = srv.push_image(name, Some("v1"), "amd64", rng).await;
    let owner_dir = tempfile::tempdir().unwrap();
    let owner = Repository::new(remote(srv), keystore(owner_dir.path()), &repo);
    owner
        .sign("v1", &v1.digest, v1.manifest.len() as u64)
        .await
        .unwrap();
    (repo, v1, owner, owner_dir)
}

/// Replaces `"<hex>"`-free JSON text `from` with `to` in a metadata file, keeping the signatures.
fn tamper(raw: &[u8], from: &str, to: &str) -> Vec<u8> {
    let s = String::from_utf8(raw.to_vec()).unwrap();
    assert!(s.contains(from), "{from} not in {s}");
    s.replacen(from, to, 1).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_through_a_proxy_are_refused_and_nothing_is_cached() {
    let srv = start().await;
    let mut rng = Rng::new();
    let (repo, v1, owner, _owner_dir) = signed_v1(&srv, "team/safe", &mut rng).await;
    let v2 = srv
        .push_image("team/safe", Some("v2"), "amd64", &mut rng)
        .await;

    let proxy = Proxy::start(&srv).await;
    let (victim, _vtmp) = fresh_repo(proxy.remote(), &repo);
    let cache = victim.tuf().cache_dir();

    // First contact through a proxy that swaps the digest in targets: refused (the snapshot's
    // checksum no longer matches), and nothing is trusted on first use.
    let real_v1 = hex_of(&v1.digest).to_owned();
    let evil = rng.hex(64);
    let targets_v1 = tuf_bytes(&srv, &repo, "targets.json").await;
    let t_sig = serde_json::from_slice::<Value>(&targets_v1).unwrap();
    let b64_real = t_sig["signed"]["targets"]["v1"]["hashes"]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let b64_evil = b64(&hex::decode(&evil).unwrap());
    {
        let (from, to) = (b64_real.clone(), b64_evil.clone());
        proxy.set(move |path, s, body| {
            if path.contains("/_trust/tuf/targets.") {
                (s, tamper(&body, &from, &to))
            } else {
                (s, body)
            }
        });
    }
    let err = victim.resolve("v1").await.unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err:?}");
    assert!(!cache.exists(), "cache written on a refused update");

    // The same tampered targets with a snapshot re-hashed to match: the snapshot's signature fails.
    let snap = tuf_bytes(&srv, &repo, "snapshot.json").await;
    let tampered_targets = tamper(&targets_v1, &b64_real, &b64_evil);
    {
        let snap_json: Value = serde_json::from_slice(&snap).unwrap();
        let old_sha = snap_json["signed"]["meta"]["targets"]["hashes"]["sha256"]
            .as_str()
            .unwrap()
            .to_owned();
        let old_512 = snap_json["signed"]["meta"]["targets"]["hashes"]["sha512"]
            .as_str()
            .unwrap()
            .to_owned();
        let new_meta = file_meta(&tampered_targets);
        let forged = tamper(
            &tamper(
                &snap,
                &old_sha,
                new_meta["hashes"]["sha256"].as_str().unwrap(),
            ),
            &old_512,
            new_meta["hashes"]["sha512"].as_str().unwrap(),
        );
        let ts_json: Value =
            serde_json::from_slice(&tuf_bytes(&srv, &repo, "timestamp.json").await).unwrap();
        let snap_sha = ts_json["signed"]["meta"]["snapshot"]["hashes"]["sha256"]
            .as_str()
            .unwrap()
            .to_owned();
        let snap_512 = ts_json["signed"]["meta"]["snapshot"]["hashes"]["sha512"]
            .as_str()
            .unwrap()
            .to_owned();
        let forged_meta = file_meta(&forged);
        let forged_len = forged.len();
        let real_len = snap.len();
        let tt = tampered_targets.clone();
        proxy.set(move |path, s, body| {
            if path.contains("/_trust/tuf/targets.") {
                (s, tt.clone())
            } else if path.contains("/_trust/tuf/snapshot.") {
                (s, forged.clone())
            } else if path.ends_with("/_trust/tuf/timestamp.json") {
                // The forged snapshot's hashes are put in the timestamp as well, which breaks
                // the timestamp's signature unless the lengths agree; either way it must fail.
                let body = tamper(
                    &tamper(
                        &body,
                        &snap_sha,
                        forged_meta["hashes"]["sha256"].as_str().unwrap(),
                    ),
                    &snap_512,
                    forged_meta["hashes"]["sha512"].as_str().unwrap(),
                );
                let body = tamper(
                    &body,
                    &format!("\"length\":{real_len}"),
                    &format!("\"length\":{forged_len}"),
                );
                (s, body)
            } else {
                (s, body)
            }
        });
    }
    let err = victim.resolve("v1").await.unwrap_err();
    assert!(
        matches!(&err, Error::BadSignature { role, .. } if role == "timestamp"),
        "{err:?}"
    );
    assert!(!cache.exists());

    // An honest proxy: the victim trusts v1 and caches it.
    proxy.set(|_, s, b| (s, b));
    let t = victim.resolve("v1").await.unwrap();
    assert_eq!(hex_of(&t.digest), real_v1);
    let old_timestamp = tuf_bytes(&srv, &repo, "timestamp.json").await;
    let old_targets = tuf_bytes(&srv, &repo, "targets.json").await;

    // The owner signs v2; the victim follows, so the newer versions are now cached.
    owner
        .sign("v2", &v2.digest, v2.manifest.len() as u64)
        .await
        .unwrap();
    assert_eq!(victim.resolve("v2").await.unwrap().digest, v2.digest);
    let trusted = dir_state(&cache);
    assert!(!trusted.is_empty());

    // Replay of the older (validly signed, unexpired) timestamp: a rollback, refused.
    {
        let old = old_timestamp.clone();
        proxy.set(move |path, s, b| {
            if path.ends_with("/_trust/tuf/timestamp.json") {
                (200, old.clone())
            } else {
                (s, b)
            }
        });
    }
    let err = victim.resolve("v2").await.unwrap_err();
    assert!(
        matches!(&err, Error::Rollback { role, .. } if role == "timestamp"),
        "{err:?}"
    );
    assert!(err.to_string().contains("rollback"), "{err}");
    assert_eq!(
        dir_state(&cache),
        trusted,
        "cache changed on a refused update"
    );

    // The old targets served for the current snapshot's hash: refused.
    {
        let old = old_targets.clone();
        proxy.set(move |path, s, b| {
            if path.contains("/_trust/tuf/targets.") {
                (200, old.clone())
            } else {
                (s, b)
            }
        });
    }
    let err = victim.resolve("v1").await.unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err:?}");
    assert_eq!(dir_state(&cache), trusted);

    // A timestamp over the 1 MiB cap is not even read to the end.
    proxy.set(|path, s, b| {
        if path.ends_with("/_trust/tuf/timestamp.json") {
            (200, vec![b' '; (1 << 20) + 1])
        } else {
            (s, b)
        }
    });
    let err = victim.resolve("v1").await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");

    // The server "forgets" the repository: the pinned root is not silently replaced.
    proxy.set(|path, _, b| {
        if path.contains("/_trust/tuf/") {
            (
                404,
                br#"{"errors":[{"code":"METADATA_NOT_FOUND","message":"x"}]}"#.to_vec(),
            )
        } else {
            (200, b)
        }
    });
    let err = victim.resolve("v1").await.unwrap_err();
    assert!(matches!(err, Error::RemoteDeleted { .. }), "{err:?}");
    assert_eq!(dir_state(&cache), trusted);

    // Honest again: still fine, and the tag resolves to the real digest.
    proxy.set(|_, s, b| (s, b));
    assert_eq!(hex_of(&victim.resolve("v1").await.unwrap().digest), real_v1);
}

#[tokio::test]
async fn wrong_passphrase_touches_nothing_and_backup_restore_round_trips() {
    let srv = start().await;
    enable_trust(&srv).await;
    let repo = gun(&srv, "team/keys");
    let mut rng = Rng::new();
    let v1 = srv
        .push_image("team/keys", Some("v1"), "amd64", &mut rng)
        .await;
    let v2 = srv
        .push_image("team/keys", Some("v2"), "amd64", &mut rng)
        .await;
    let tmp = tempfile::tempdir().unwrap();
    let trust_dir = tmp.path().join("trust");
    let owner = Repository::new(remote(&srv), keystore(&trust_dir), &repo);
    owner
        .sign("v1", &v1.digest, v1.manifest.len() as u64)
        .await
        .unwrap();
    let before = dir_state(&trust_dir.join("private"));
    let targets_before = tuf_bytes(&srv, &repo, "targets.json").await;

    // Wrong repository passphrase: a clear error, no key file touched, nothing published.
    let wrong = Repository::new(
        remote(&srv),
        KeyStore::new(&trust_dir).with_passphrases(Some(ROOT_PW), Some("not-it")),
        &repo,
    );
    let err = wrong
        .sign("v2", &v2.digest, v2.manifest.len() as u64)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::WrongPassphrase { role, .. } if role == "targets"),
        "{err:?}"
    );
    assert!(err.to_string().contains("wrong passphrase"), "{err}");
    assert_eq!(dir_state(&trust_dir.join("private")), before);
    assert_eq!(tuf_bytes(&srv, &repo, "targets.json").await, targets_before);

    // A prompt (the callback) gets three tries; giving the right one on the last works.
    let tries = Arc::new(Mutex::new(0));
    let t2 = tries.clone();
    let prompted = Repository::new(
        remote(&srv),
        KeyStore::new(&trust_dir).with_callback(Arc::new(move |req| {
            let mut n = t2.lock().unwrap();
            *n += 1;
            Some(if req.attempt < 2 {
                "nope".into()
            } else {
                REPOSITORY_PW.into()
            })
        })),
        &repo,
    );
    prompted
        .sign("v2", &v2.digest, v2.manifest.len() as u64)
        .await
        .unwrap();
    assert_eq!(*tries.lock().unwrap(), 3);

    // Importing an encrypted PEM with a wrong passphrase writes nothing; plain PKCS#8 imports.
    let store = keystore(&trust_dir);
    let k = EcKey::generate(tmp.path(), "imported");
    let enc = tmp.path().join("imported.enc.pem");
    let st = std::process::Command::new("openssl")
        .args(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in"])
        .arg(&k.pem)
        .args(["-passout", "pass:file-secret", "-out"])
        .arg(&enc)
        .status()
        .unwrap();
    assert!(st.success());
    let before = dir_state(&trust_dir.join("private"));
    let err = store
        .import_pem(&std::fs::read(&enc).unwrap(), "dave")
        .unwrap_err();
    assert!(matches!(err, Error::WrongPassphrase { .. }), "{err:?}");
    assert_eq!(dir_state(&trust_dir.join("private")), before);
    let info = store
        .import_pem(&std::fs::read(&k.pem).unwrap(), "dave")
        .unwrap();
    assert_eq!(mode(&info.path), 0o600);
    assert_eq!(info.id, k.tuf_key().0, "file named by the canonical key ID");
    let text = std::fs::read_to_string(&info.path).unwrap();
    assert!(
        text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\nrole: dave\n"),
        "{text}"
    );
    // openssl (and so docker/notary) can decrypt what we wrote.
    let back = EcKey::from_notary_file(&info.path, REPOSITORY_PW, tmp.path());
    assert_eq!(back.spki_der(), k.spki_der());

    // Backup and restore into an empty trust directory.
    let archive = tmp.path().join("keys.tar");
    let n = store.backup(&archive).unwrap();
    assert_eq!(n, store.list().unwrap().len());
    assert_eq!(mode(&archive), 0o600);
    let listing = std::process::Command::new("tar")
        .arg("-tvf")
        .arg(&archive)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for l in listing.lines() {
        let want = if l.starts_with('d') {
            "drwx------"
        } else {
            "-rw-------"
        };
        assert!(l.starts_with(want), "{listing}");
    }
    let other = tempfile::tempdir().unwrap();
    let restored = keystore(&other.path().join("trust"));
    let ids = restored.restore(&archive).unwrap();
    assert_eq!(ids.len(), n);
    assert_eq!(mode(&restored.private_dir()), 0o700);
    let orig = store.list().unwrap();
    let got = restored.list().unwrap();
    assert_eq!(orig.len(), got.len());
    for (a, b) in orig.iter().zip(&got) {
        assert_eq!((&a.id, &a.role, &a.gun), (&b.id, &b.role, &b.gun));
        assert_eq!(
            std::fs::read(&a.path).unwrap(),
            std::fs::read(&b.path).unwrap()
        );
        assert_eq!(mode(&b.path), 0o600);
        restored.load(&b.id).unwrap();
    }
    // The restored store signs for the repository.
    let again = Repository::new(remote(&srv), restored.clone(), &repo);
    again.revoke(Some("v2")).await.unwrap();

    // A hostile archive (path escaping private/) is refused before anything is written.
    let evil = tmp.path().join("evil.tar");
    {
        let f = std::fs::File::create(&evil).unwrap();
        let mut b = tar::Builder::new(f);
        let data = std::fs::read(&orig[0].path).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "private/ok.key", data.as_slice())
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "other/escape.key", data.as_slice())
            .unwrap();
        b.finish().unwrap();
    }
    let third = tempfile::tempdir().unwrap();
    let s3 = keystore(&third.path().join("trust"));
    assert!(s3.restore(&evil).is_err());
    assert!(!s3.private_dir().exists());
}

/// The server's own key for `role` of `gun`, unsealed from its store: the key a compromised
/// server (or a stolen backup) would sign with.
async fn server_key(srv: &Server, gun: &str, role: &str) -> berth_crypto::PrivateKey {
    let (meta, pass) = crate::cluster::server_meta(srv).await;
    let vault = berth_trust::KeyVault::open(&*meta, &pass).await.unwrap();
    let rec = meta
        .server_keys(gun, role.parse().expect("a server key role"))
        .await
        .unwrap()
        .pop()
        .expect("a server key");
    let aad = format!("berth-trust-key\0{gun}\0{role}\0{}", rec.key_id);
    let der = vault.unseal(&rec.sealed_private, aad.as_bytes()).unwrap();
    berth_crypto::PrivateKey::from_pkcs8_der(&der).unwrap()
}

/// A timestamp correctly signed with the real timestamp key but already expired (a replayed or
/// frozen one) is refused, and nothing is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_timestamp_is_refused() {
    use berth_tuf::RoleBody as _;
    let srv = start().await;
    let mut rng = Rng::new();
    let (repo, v1, _owner, _owner_dir) = signed_v1(&srv, "team/stale", &mut rng).await;

    let current = tuf_bytes(&srv, &repo, "timestamp.json").await;
    let mut body = berth_tuf::Signed::<berth_tuf::Timestamp>::parse(&current)
        .unwrap()
        .body;
    body.version += 1;
    body.expires = berth_tuf::time::format_rfc3339(
        std::time::SystemTime::now() - std::time::Duration::from_secs(86_400),
    );
    assert!(body.is_expired(std::time::SystemTime::now()).unwrap());
    let key = server_key(&srv, &repo, "timestamp").await;
    let expired = berth_tuf::Signed::sign(body, &[&key])
        .unwrap()
        .raw()
        .to_vec();

    let proxy = Proxy::start(&srv).await;
    let (victim, _vtmp) = fresh_repo(proxy.remote(), &repo);
    let cache = victim.tuf().cache_dir();
    // Control: through the untouched proxy the tag resolves.
    let (control, _ctmp) = fresh_repo(proxy.remote(), &repo);
    assert_eq!(control.resolve("v1").await.unwrap().digest, v1.digest);
    proxy.set(move |path, s, b| {
        if path.ends_with("/_trust/tuf/timestamp.json") {
            (s, expired.clone())
        } else {
            (s, b)
        }
    });
    let err = victim.resolve("v1").await.unwrap_err();
    assert!(
        matches!(err, Error::Expired { ref role, .. } if role == "timestamp"),
        "{err:?}"
    );
    assert!(!cache.exists(), "cache written on a refused update");
}
