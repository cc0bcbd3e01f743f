//! Credentials at rest and under attack, with authentication on: the Basic-credential memo
//! dies with the password it verified, password guessing throttles the guesser and not its
//! victim, a login flood does not stall other clients, and the data dir is private to the
//! server's user.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;

use crate::auth_support::*;
use crate::harness::*;

async fn ping(srv: &Server, cred: &Cred) -> Resp {
    call(srv, Method::GET, "/v2/", cred, &[], None).await
}

#[tokio::test]
async fn a_regenerated_admin_password_stops_the_old_one_at_once() {
    let srv = Server::start_with_auth();
    let v = admin(&srv, Method::POST, "admin-user/enable", None).await;
    let old = Cred::basic("admin", v["password"].as_str().unwrap());
    // Verified once, so the server remembers it.
    ping(&srv, &old).await.expect(200);
    ping(&srv, &old).await.expect(200);
    let v = admin(&srv, Method::POST, "admin-user/enable", None).await;
    let new = Cred::basic("admin", v["password"].as_str().unwrap());
    expect_challenge(&ping(&srv, &old).await, None);
    let r = token_get(&srv, &srv.client, &old, &[], None, "").await;
    assert_eq!(r.status, 401, "{r}");
    ping(&srv, &new).await.expect(200);
}

#[tokio::test]
async fn a_recreated_namesake_does_not_inherit_a_remembered_password() {
    let srv = Server::start_with_auth();
    let old = user_with_roles(&srv, "bob", "bob-first-password", &["AcrPull"]).await;
    ping(&srv, &old).await.expect(200);
    admin(&srv, Method::DELETE, "users/bob", None).await;
    expect_challenge(&ping(&srv, &old).await, None);
    // Deleted while remembered, then re-created under the same name with another password.
    ping(&srv, &old).await; // (refused; nothing to remember)
    let new = user_with_roles(&srv, "bob", "bob-second-password", &["AcrPull"]).await;
    expect_challenge(&ping(&srv, &old).await, None);
    ping(&srv, &new).await.expect(200);

    // Remembered at the moment of deletion (no refused attempt in between) is refused too.
    let carol = user_with_roles(&srv, "carol", "carol-first-password", &["AcrPull"]).await;
    ping(&srv, &carol).await.expect(200);
    admin(&srv, Method::DELETE, "users/carol", None).await;
    user_with_roles(&srv, "carol", "carol-second-password", &["AcrPull"]).await;
    expect_challenge(&ping(&srv, &carol).await, None);
    let r = token_get(&srv, &srv.client, &carol, &[], None, "").await;
    assert_eq!(r.status, 401, "{r}");
}

fn expect_throttled(r: &Resp) {
    assert_eq!(r.status, 429, "expected 429: {r}");
    assert_eq!(r.json()["errors"][0]["code"], "TOOMANYREQUESTS", "{r}");
    let after: u64 = r.must_header("retry-after").parse().expect("seconds");
    assert!((1..=61).contains(&after), "Retry-After {after}");
}

#[tokio::test]
async fn guessing_throttles_the_guesser_not_the_victim() {
    let srv = Server::start_with_auth();
    user_with_roles(&srv, "bystander", "bystander-password-1", &["AcrPull"]).await;
    // The owner logs in once from its own address and keeps a refresh token.
    let (attacker, home, elsewhere) = (fresh_ip(), fresh_ip(), fresh_ip());
    let (a, h, e) = (
        client_from(&srv, attacker),
        client_from(&srv, home),
        client_from(&srv, elsewhere),
    );
    let r = token_get(&srv, &h, &Cred::owner(), &[], None, "&offline_token=true").await;
    r.expect(200);
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_owned();

    // The attacker floods wrong passwords for owner.
    let wrong = Cred::basic("owner", "not-the-password");
    for i in 0..10 {
        let r = token_get(&srv, &a, &wrong, &[], None, "").await;
        assert_eq!(r.status, 401, "failure {i}: {r}");
    }
    for _ in 0..5 {
        expect_throttled(&token_get(&srv, &a, &wrong, &[], None, "").await);
    }
    // The guesser's pair stays refused, even with the right password, on /v2/ too (OCI format).
    expect_throttled(&token_get(&srv, &a, &Cred::owner(), &[], None, "").await);
    expect_throttled(&call_with(&srv, &a, Method::GET, "/v2/", &Cred::owner(), &[], None).await);

    // The owner is not locked out: from home and from a source that never failed it logs in.
    token_get(&srv, &h, &Cred::owner(), &[], None, "")
        .await
        .expect(200);
    call_with(&srv, &e, Method::GET, "/v2/", &Cred::owner(), &[], None)
        .await
        .expect(200);
    // Another user behind the attacker's address is not locked out either.
    let bystander = Cred::basic("bystander", "bystander-password-1");
    token_get(&srv, &a, &bystander, &[], None, "")
        .await
        .expect(200);
    // Refresh tokens keep working, even from the attacker's address.
    let r = token_post(
        &srv,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", &srv.host()),
            ("client_id", "berth-tests"),
        ],
    )
    .await;
    r.expect(200);
    let as_password = Cred::basic("00000000-0000-0000-0000-000000000000", &refresh);
    call_with(&srv, &a, Method::GET, "/v2/", &as_password, &[], None)
        .await
        .expect(200);

    // One user's typos do not lock out another user from the same address.
    let office = client_from(&srv, fresh_ip());
    let typo = Cred::basic("bystander", "typo");
    for _ in 0..12 {
        let r = token_get(&srv, &office, &typo, &[], None, "").await;
        assert!(matches!(r.status, 401 | 429), "{r}");
    }
    token_get(&srv, &office, &Cred::owner(), &[], None, "")
        .await
        .expect(200);

    // A source that sprays many identities is slowed for all of them.
    let sprayer = client_from(&srv, fresh_ip());
    for i in 0..20 {
        let r = token_get(
            &srv,
            &sprayer,
            &Cred::basic(&format!("user{i}"), "Winter2026!"),
            &[],
            None,
            "",
        )
        .await;
        assert_eq!(r.status, 401, "spray {i}: {r}");
    }
    expect_throttled(&token_get(&srv, &sprayer, &Cred::owner(), &[], None, "").await);
    expect_throttled(&call_with(&srv, &sprayer, Method::GET, "/v2/", &bystander, &[], None).await);
    // Its refresh tokens still work: they cannot be guessed.
    call_with(&srv, &sprayer, Method::GET, "/v2/", &as_password, &[], None)
        .await
        .expect(200);
    call_with(&srv, &e, Method::GET, "/v2/", &bystander, &[], None)
        .await
        .expect(200);

    // The failures are audited with who and from where, without the passwords tried.
    let audit = admin(&srv, Method::GET, "audit", None).await;
    let failed: Vec<&serde_json::Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "login.failed" && e["actor"] == "owner")
        .collect();
    assert_eq!(failed.len(), 10, "{audit}");
    assert!(
        failed.iter().all(|e| e["client"] == attacker.to_string()),
        "{audit}"
    );
    let text = audit.to_string();
    assert!(!text.contains("not-the-password") && !text.contains("Winter2026!"));
    let logs = srv.logs();
    assert!(!logs.contains("not-the-password") && !logs.contains(OWNER_PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_typo_a_burst_with_the_right_password_all_passes() {
    // A source that mistyped once waits in the small lane of failing sources; a client that then
    // sends many requests at once with the right password must still get through with all.
    let srv = Server::start_with_auth();
    let dana = user_with_roles(&srv, "dana", "dana-password-1", &["AcrPull"]).await;
    let client = client_from(&srv, fresh_ip());
    let typo = Cred::basic("dana", "dana-pasword-1");
    expect_challenge(
        &call_with(&srv, &client, Method::GET, "/v2/", &typo, &[], None).await,
        None,
    );
    let burst = (0..16).map(|_| call_with(&srv, &client, Method::GET, "/v2/", &dana, &[], None));
    for r in futures::future::join_all(burst).await {
        r.expect(200);
    }
}

/// One login attempt of the flood; returns the status (0: no answer) and how long it took.
async fn flood_once(client: &reqwest::Client, url: &str, user: &str) -> (u16, Duration, bool) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:wrong-password"));
    let t = Instant::now();
    match client
        .get(url)
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            let has_retry = r.headers().contains_key("retry-after");
            let _ = r.bytes().await;
            (status, t.elapsed(), status != 429 || has_retry)
        }
        Err(_) => (0, t.elapsed(), true),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_flood_does_not_stall_other_clients() {
    let srv = Arc::new(Server::start_with_auth());
    let pull_push = ["repository:team/app:pull,push"];
    let tok = Cred::Bearer(bearer(&srv, &Cred::owner(), &pull_push).await);
    let blob = Rng::new().bytes(64 * 1024);
    let digest = sha256(&blob);
    call(
        &srv,
        Method::POST,
        &format!("/v2/team/app/blobs/uploads/?digest={digest}"),
        &tok,
        &[("content-type", "application/octet-stream")],
        Some(blob.clone()),
    )
    .await
    .expect(201);

    // 48 guessers, each from its own source, a new source and new names every few attempts (a
    // botnet trying names): every attempt costs the server a password hash unless refused.
    let stop = Arc::new(AtomicBool::new(false));
    let stats: Arc<Mutex<BTreeMap<u16, usize>>> = Arc::default();
    let slowest_refusal = Arc::new(Mutex::new(Duration::ZERO));
    let bad_refusals = Arc::new(Mutex::new(0usize));
    let mut flood = Vec::new();
    for g in 0..48 {
        let (srv, stop, stats) = (srv.clone(), stop.clone(), stats.clone());
        let (slowest_refusal, bad_refusals) = (slowest_refusal.clone(), bad_refusals.clone());
        flood.push(tokio::spawn(async move {
            let url = srv.url(&format!("/oauth2/token?service={}", srv.host()));
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let client = client_from(&srv, fresh_ip());
                for _ in 0..8 {
                    n += 1;
                    let (status, took, ok) =
                        flood_once(&client, &url, &format!("guess-{g}-{n}")).await;
                    *stats.lock().unwrap().entry(status).or_default() += 1;
                    if status == 429 {
                        let mut s = slowest_refusal.lock().unwrap();
                        *s = (*s).max(took);
                    }
                    if !ok {
                        *bad_refusals.lock().unwrap() += 1;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Meanwhile a client with a token is served: every request succeeds, each within seconds.
    let mut times = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        ping(&srv, &tok).await.expect(200);
        let r = call(
            &srv,
            Method::GET,
            &format!("/v2/team/app/blobs/{digest}"),
            &tok,
            &[],
            None,
        )
        .await;
        r.expect(200);
        assert!(r.body == blob);
        times.push(t.elapsed());
    }
    // And a login with the right password from a clean source gets through.
    let t = Instant::now();
    token_get(
        &srv,
        &client_from(&srv, fresh_ip()),
        &Cred::owner(),
        &pull_push,
        None,
        "",
    )
    .await
    .expect(200);
    let login = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.await.unwrap();
    }
    let stats = stats.lock().unwrap().clone();
    let slowest = times.iter().max().copied().unwrap_or_default();
    eprintln!(
        "flood answers {stats:?}; served requests: slowest {slowest:?}; login {login:?}; slowest 429 {:?}",
        slowest_refusal.lock().unwrap()
    );
    assert!(
        stats.get(&401).copied().unwrap_or(0) >= 10,
        "the flood did make the server hash passwords: {stats:?}"
    );
    assert!(
        stats.keys().all(|s| matches!(s, 401 | 429)),
        "only refusals, never errors: {stats:?}"
    );
    assert_eq!(
        *bad_refusals.lock().unwrap(),
        0,
        "every 429 has Retry-After"
    );
    assert!(
        slowest < Duration::from_secs(3),
        "a request with a token took {slowest:?} during the flood: {times:?}"
    );
    assert!(login < Duration::from_secs(10), "login took {login:?}");
}

// ------------------------------------------------------------------------------------------------
// The data dir at rest

/// Every directory and file under `root` (itself included) with its permission bits.
fn modes(root: &Path) -> HashMap<PathBuf, (bool, u32)> {
    let mut out = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
        out.insert(p, (meta.is_dir(), meta.permissions().mode() & 0o7777));
    }
    out
}

fn assert_private(root: &Path) {
    let all = modes(root);
    let loose: Vec<String> = all
        .iter()
        .filter(|(_, (dir, mode))| *mode != if *dir { 0o700 } else { 0o600 })
        .map(|(p, (_, mode))| format!("{} {mode:o}", p.display()))
        .collect();
    assert!(loose.is_empty(), "not owner-only: {loose:?}");
}

/// `berth serve` started by a shell with umask 000, so nothing is private by accident.
struct Permissive {
    child: std::process::Child,
    base: String,
    client: reqwest::Client,
    log: PathBuf,
}

impl Permissive {
    fn start(data: &Path, log: PathBuf) -> Permissive {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"umask 000 && exec "$0" serve --data-dir "$1" --listen 127.0.0.1:0"#)
            .arg(env!("CARGO_BIN_EXE_berth"))
            .arg(data);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BERTH_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .env("BERTH_BOOTSTRAP_PASSWORD", OWNER_PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn berth serve");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no banner: {}", std::fs::read_to_string(&log).unwrap()));
        let ca = std::fs::read(data.join("tls/ca.crt")).unwrap();
        let client = reqwest::Client::builder()
            .no_proxy()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
            .build()
            .unwrap();
        Permissive {
            child,
            base,
            client,
            log,
        }
    }

    async fn send(&self, method: Method, path: &str, body: Vec<u8>) -> (u16, Option<String>) {
        let r = self
            .client
            .request(method, format!("{}{path}", self.base))
            .basic_auth("owner", Some(OWNER_PASSWORD))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .unwrap();
        let loc = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        (r.status().as_u16(), loc)
    }

    fn stop(mut self) -> String {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        self.child.wait().unwrap();
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Permissive {
    /// A failed assertion must not leave the server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_data_dir_is_created_private_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("nested/berth-data");
    let srv = Permissive::start(&data, tmp.path().join("stderr.log"));
    // An upload in progress and a stored blob.
    let (status, loc) = srv
        .send(Method::POST, "/v2/team/app/blobs/uploads/", Vec::new())
        .await;
    assert_eq!(status, 202);
    let loc = loc.unwrap();
    let blob = b"private layer".to_vec();
    let (status, _) = srv
        .send(
            Method::PUT,
            &with_query(&loc, &format!("digest={}", sha256(&blob))),
            blob,
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = srv
        .send(Method::POST, "/v2/team/app/blobs/uploads/", Vec::new())
        .await;
    assert_eq!(status, 202);
    // While it runs: the database with its WAL and shared memory, blobs, uploads, TLS, lock.
    let all = modes(&data);
    for name in [
        "metadata.db",
        "metadata.db-wal",
        "metadata.db-shm",
        "tls/ca.key",
        "tls/ca.crt",
    ] {
        assert!(
            all.contains_key(&data.join(name)),
            "{name} missing: {all:?}"
        );
    }
    assert!(
        all.keys()
            .any(|p| p.starts_with(data.join("uploads")) && p != &data.join("uploads")),
        "an upload file exists"
    );
    assert!(
        all.keys()
            .any(|p| p.starts_with(data.join("blobs/sha256")) && !all[p].0),
        "a blob file exists"
    );
    assert_private(&data);
    let log = srv.stop();
    assert!(
        !log.contains("tightened"),
        "nothing to fix on a fresh start: {log}"
    );
}

#[tokio::test]
async fn a_data_dir_readable_by_others_is_tightened_at_start() {
    let mut srv = Server::start_with_auth();
    let tok = Cred::Bearer(bearer(&srv, &Cred::owner(), &["repository:team/app:pull,push"]).await);
    let blob = b"layer".to_vec();
    call(
        &srv,
        Method::POST,
        &format!("/v2/team/app/blobs/uploads/?digest={}", sha256(&blob)),
        &tok,
        &[],
        Some(blob),
    )
    .await
    .expect(201);
    // As an older version (or a careless copy) left it: everything readable by everyone.
    let data = srv.data_dir().to_path_buf();
    std::fs::write(data.join("blobs/stray"), b"x").unwrap();
    for (p, (dir, _)) in modes(&data) {
        let loose = if dir { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(loose)).unwrap();
    }
    std::fs::set_permissions(
        data.join("blobs/stray"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    srv.restart();
    assert_private(&data);
    let logs = srv.logs();
    assert!(
        logs.contains("tightened") && logs.contains("metadata.db 644->600"),
        "a warning names what was fixed: {logs}"
    );
    // And the server works on the tightened directory.
    let r = call(&srv, Method::GET, "/v2/", &Cred::owner(), &[], None).await;
    r.expect(200);
}
