//! Webhooks against a receiver on loopback (a small HTTP server in the test that records what
//! it gets): real clients push (skopeo, `berth push`), delete (`berth repository delete`) and
//! publish trust data (the notary CLI), and the right events arrive, signed; a receiver that
//! fails first gets the event again with backoff; events queued while the receiver is down
//! survive SIGTERM and SIGKILL of the server; scopes filter; only Owners manage webhooks and no
//! secret is ever listed. Authentication is on.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth_support::*;
use crate::cluster::*;
use crate::harness::*;
use crate::trust_cli::{Berth, new_layout, oci};
use crate::trust_harness::*;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The status it was answered with.
    status: u16,
}

impl Got {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn event(&self) -> Value {
        let v: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body));
        assert_eq!(v["events"].as_array().map(Vec::len), Some(1), "{v}");
        v["events"][0].clone()
    }
}

/// An HTTP/1.1 receiver on 127.0.0.1 that records every request and answers with the next
/// status of its script (200 once the script is used up).
pub(crate) struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(script: &[u16]) -> Receiver {
        Self::start_on("127.0.0.1:0", script).await
    }

    pub(crate) async fn start_on(addr: &str, script: &[u16]) -> Receiver {
        Self::serve(addr, script, None).await
    }

    /// An https receiver presenting `tls`'s server certificate (127.0.0.1, signed by its CA).
    async fn start_tls(tls: &SharedTls, script: &[u16]) -> Receiver {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(tls.cert())
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_file(tls.key()).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::serve("127.0.0.1:0", script, Some(acceptor)).await
    }

    async fn serve(addr: &str, script: &[u16], tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let g = got.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let g = g.clone();
                let script = script.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let mut sock: Box<dyn Stream> = match tls {
                        Some(t) => match t.accept(sock).await {
                            Ok(s) => Box::new(s),
                            // A client that does not trust the certificate hangs up here.
                            Err(_) => return,
                        },
                        None => Box::new(sock),
                    };
                    let Some((path, headers, body)) = read_request(&mut sock).await else {
                        return;
                    };
                    let status = script.lock().unwrap().pop_front().unwrap_or(200);
                    g.lock().unwrap().push(Got {
                        path,
                        headers,
                        body,
                        status,
                    });
                    // A redirect points somewhere that records nothing.
                    let location = if (300..400).contains(&status) {
                        "location: http://127.0.0.1:9/elsewhere\r\n"
                    } else {
                        ""
                    };
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\n{location}content-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Receiver { addr, got, task }
    }

    pub(crate) fn uri(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Requests to `path` answered 2xx.
    fn accepted(&self, path: &str) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.path == path && (200..300).contains(&g.status))
            .collect()
    }

    /// Waits until `ok` holds for what `path` accepted, or fails with what arrived.
    pub(crate) async fn wait_for(
        &self,
        path: &str,
        what: &str,
        ok: impl Fn(&[Got]) -> bool,
    ) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let got = self.accepted(path);
            if ok(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "waited 90 s for {what} at {path}; got {:#?}",
                self.got()
                    .iter()
                    .map(|g| (
                        g.path.clone(),
                        g.status,
                        String::from_utf8_lossy(&g.body).into_owned()
                    ))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// Reads one request: (path, headers, body).
async fn read_request(
    sock: &mut Box<dyn Stream>,
) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?;
    assert!(request_line.starts_with("POST "), "{request_line}");
    let path = request_line.split(' ').nth(1)?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((path, headers, body))
}

/// `berth` as the owner, against `srv`.
fn owner_berth(srv: &Server, home: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut c = isolated(env!("CARGO_BIN_EXE_berth"), home);
    c.env("BERTH_CONFIG_DIR", home.join("berth-config"))
        .env("BERTH_USERNAME", "owner")
        .env("BERTH_PASSWORD", OWNER_PASSWORD)
        .args(args)
        .args(["--server", &srv.host(), "--ca-file"])
        .arg(srv.ca_path());
    run(&mut c, stdin)
}

/// The secret `berth webhook create` printed (the indented line after the notice).
fn printed_secret(out: &Out) -> String {
    let mut lines = out.stdout.lines();
    lines
        .by_ref()
        .find(|l| l.contains("shown only this once"))
        .unwrap_or_else(|| panic!("no secret notice: {out}"));
    lines.next().unwrap().trim().to_owned()
}

/// Whether the request's signature header verifies with `secret`.
pub(crate) fn signed_by(g: &Got, secret: &str) -> bool {
    g.header("x-berth-signature")
        .is_some_and(|sig| berth_server::webhooks::verify(secret.as_bytes(), &g.body, sig))
}

/// The request is signed with `secret` (and with nothing else), and carries the event's id.
fn assert_signed(g: &Got, secret: &str) {
    let sig = g
        .header("x-berth-signature")
        .unwrap_or_else(|| panic!("unsigned: {g:?}"));
    assert!(
        berth_server::webhooks::verify(secret.as_bytes(), &g.body, sig),
        "signature {sig} does not verify"
    );
    assert!(!berth_server::webhooks::verify(
        b"another secret!!",
        &g.body,
        sig
    ));
    let mut tampered = g.body.clone();
    tampered.push(b' ');
    assert!(!berth_server::webhooks::verify(
        secret.as_bytes(),
        &tampered,
        sig
    ));
    assert_eq!(
        g.header("content-type"),
        Some("application/vnd.docker.distribution.events.v1+json")
    );
    assert_eq!(
        g.header("x-berth-event"),
        g.event()["id"].as_str(),
        "event id header"
    );
}

fn find<'a>(got: &'a [Got], action: &str, repo: &str, tag: Option<&str>) -> Option<&'a Got> {
    got.iter().find(|g| {
        let e = g.event();
        e["action"] == action
            && e["target"]["repository"] == repo
            && tag.is_none_or(|t| e["target"]["tag"] == t)
    })
}

async fn webhooks_list(srv: &Server) -> Value {
    admin(srv, Method::GET, "webhooks", None).await
}

fn hook_entry<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("no webhook {name} in {list}"))
}

#[tokio::test]
async fn webhooks_tell_receivers_of_pushes_deletes_and_trust_updates_signed_and_scoped() {
    let srv = start_server();
    enable_trust(&srv).await;
    let rx = Receiver::start(&[]).await;
    let home = tempfile::tempdir().unwrap();
    let host = srv.host();

    // One webhook for everything (secret generated, printed once), one scoped to team/* with
    // its secret given on stdin.
    let out = owner_berth(
        &srv,
        home.path(),
        &[
            "webhook",
            "create",
            "all",
            "--uri",
            &rx.uri("/all?token=abc"),
            "--actions",
            "push,delete,trust",
        ],
        None,
    )
    .ok();
    let all_secret = printed_secret(&out);
    assert!(all_secret.len() >= 32, "{out}");
    let team_secret = "team-hook-secret-0123456789";
    let out = owner_berth(
        &srv,
        home.path(),
        &[
            "webhook",
            "create",
            "team",
            "--uri",
            &rx.uri("/team"),
            "--actions",
            "push",
            "--actions",
            "delete,trust",
            "--scope",
            "team/*",
            "--secret-stdin",
        ],
        Some(team_secret),
    )
    .ok();
    assert!(!out.stdout.contains(team_secret), "{out}");
    assert!(!out.stdout.contains("shown only this once"), "{out}");

    // Listing never shows a secret.
    let out = owner_berth(&srv, home.path(), &["webhook", "list"], None).ok();
    assert!(
        out.stdout.contains("all") && out.stdout.contains("team/*"),
        "{out}"
    );
    let json_out = owner_berth(&srv, home.path(), &["webhook", "list", "--json"], None).ok();
    for o in [&out, &json_out] {
        assert!(!o.stdout.contains(&all_secret), "{o}");
        assert!(!o.stdout.contains(team_secret), "{o}");
        assert!(!o.stdout.to_lowercase().contains("secret"), "{o}");
    }
    let listed: Value = serde_json::from_str(&json_out.stdout).unwrap();
    assert_eq!(hook_entry(&listed, "team")["scopes"], json!(["team/*"]));
    assert_eq!(
        hook_entry(&listed, "all")["actions"],
        json!(["push", "delete", "trust"])
    );

    // skopeo pushes team/app:v1; berth pushes other/app:v2.
    let mut rng = Rng::new();
    let work = tempfile::tempdir().unwrap();
    let (l1, img1) = new_layout(work.path(), "v1", &mut rng);
    Skopeo::new(&srv.ca_path())
        .copy(
            &oci(&l1, "v1"),
            &format!("docker://{host}/team/app:v1"),
            &owner_creds(),
        )
        .ok();
    let (l2, img2) = new_layout(work.path(), "v2", &mut rng);
    Berth::new(&srv)
        .logged_in(&Cred::owner())
        .run(&["push", &oci(&l2, "v2"), &format!("{host}/other/app:v2")])
        .ok();

    // The notary CLI publishes a signed target for team/app.
    let g = gun(&srv, "team/app");
    let alice = signer(&srv, "alice", "team/app").await;
    let n = Notary::with_login(&srv, &alice);
    n.run(&["init", &g, "-p"]).ok();
    let file = n.work().join("artifact.bin");
    std::fs::write(&file, b"signed bytes").unwrap();
    n.run(&["add", &g, "rel1", file.to_str().unwrap()]).ok();
    n.run(&["publish", &g]).ok();

    // berth repository delete removes other/app, then team/app's tag.
    owner_berth(
        &srv,
        home.path(),
        &[
            "repository",
            "delete",
            &format!("{host}/other/app"),
            "--yes",
        ],
        None,
    )
    .ok();
    owner_berth(
        &srv,
        home.path(),
        &["repository", "delete", &format!("{host}/team/app:v1")],
        None,
    )
    .ok();

    let all = rx
        .wait_for("/all?token=abc", "every event", |got| {
            find(got, "push", "team/app", Some("v1")).is_some()
                && find(got, "push", "other/app", Some("v2")).is_some()
                && got
                    .iter()
                    .filter(|g| g.event()["action"] == "trust")
                    .any(|g| !g.event()["trust"]["targets"].as_array().unwrap().is_empty())
                && find(got, "delete", "other/app", None).is_some()
                && find(got, "delete", "team/app", Some("v1")).is_some()
        })
        .await;
    for g in &all {
        assert_signed(g, &all_secret);
        assert_eq!(g.header("x-berth-webhook"), Some("all"));
    }
    let push1 = find(&all, "push", "team/app", Some("v1")).unwrap().event();
    assert_eq!(push1["target"]["digest"], img1.digest.as_str(), "{push1}");
    assert_eq!(push1["target"]["mediaType"], OCI_MANIFEST, "{push1}");
    assert_eq!(push1["target"]["size"], img1.manifest.len(), "{push1}");
    assert_eq!(push1["target"]["length"], img1.manifest.len(), "{push1}");
    assert_eq!(
        push1["target"]["url"],
        format!("https://{host}/v2/team/app/manifests/{}", img1.digest)
    );
    assert_eq!(push1["actor"]["name"], "owner", "{push1}");
    assert_eq!(push1["request"]["method"], "PUT", "{push1}");
    assert_eq!(push1["request"]["host"], host.as_str(), "{push1}");
    assert!(
        push1["request"]["useragent"]
            .as_str()
            .unwrap()
            .contains("skopeo")
            || push1["request"]["useragent"]
                .as_str()
                .unwrap()
                .contains("containers"),
        "{push1}"
    );
    assert!(push1["source"]["instanceID"].as_str().unwrap().len() > 8);
    assert!(push1["timestamp"].as_str().unwrap().ends_with('Z'));
    let push2 = find(&all, "push", "other/app", Some("v2")).unwrap().event();
    assert_eq!(push2["target"]["digest"], img2.digest.as_str(), "{push2}");
    assert!(
        push2["request"]["useragent"]
            .as_str()
            .unwrap()
            .starts_with("berth"),
        "{push2}"
    );
    // Trust: the GUN, the roles stored, and the target added with its digest and size.
    let trust = all
        .iter()
        .map(Got::event)
        .find(|e| {
            e["action"] == "trust"
                && e["trust"]["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["name"] == "rel1")
        })
        .unwrap();
    assert_eq!(trust["trust"]["gun"], g.as_str(), "{trust}");
    assert_eq!(trust["target"]["repository"], "team/app", "{trust}");
    assert_eq!(trust["actor"]["name"], "alice", "{trust}");
    let roles: Vec<&str> = trust["trust"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        roles.contains(&"targets") && roles.contains(&"timestamp"),
        "{trust}"
    );
    let rel1 = trust["trust"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "rel1")
        .unwrap();
    assert_eq!(rel1["change"], "added");
    assert_eq!(rel1["role"], "targets");
    assert_eq!(rel1["digest"], sha256(b"signed bytes").as_str());
    assert_eq!(rel1["size"], 12);
    // Deletes: the repository, and the tag with the digest it named.
    let del_repo = find(&all, "delete", "other/app", None).unwrap().event();
    assert!(del_repo["target"].get("digest").is_none(), "{del_repo}");
    assert!(del_repo["target"].get("tag").is_none(), "{del_repo}");
    let del_tag = find(&all, "delete", "team/app", Some("v1"))
        .unwrap()
        .event();
    assert_eq!(
        del_tag["target"]["digest"],
        img1.digest.as_str(),
        "{del_tag}"
    );

    // The scoped webhook got team/app's events only, signed with its own secret.
    let team = rx
        .wait_for("/team", "team/app's events", |got| {
            find(got, "push", "team/app", Some("v1")).is_some()
                && find(got, "delete", "team/app", Some("v1")).is_some()
                && got.iter().any(|g| g.event()["action"] == "trust")
        })
        .await;
    // Quiet: nothing left in either queue, so nothing for other/app is still on its way.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = webhooks_list(&srv).await;
        if hook_entry(&l, "team")["pending"] == 0 && hook_entry(&l, "all")["pending"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "queues never emptied: {l}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let team = rx
        .accepted("/team")
        .into_iter()
        .chain(team)
        .collect::<Vec<_>>();
    for g in &team {
        assert_signed(g, team_secret);
        assert_eq!(
            g.event()["target"]["repository"],
            "team/app",
            "a scoped webhook got another repository's event"
        );
    }
    let l = webhooks_list(&srv).await;
    assert_eq!(
        hook_entry(&l, "all")["delivered"].as_u64().unwrap(),
        rx.accepted("/all?token=abc").len() as u64,
        "{l}"
    );
    assert_eq!(hook_entry(&l, "all")["failed"], 0, "{l}");

    // Creation and deletion are audited, without the secret.
    owner_berth(&srv, home.path(), &["webhook", "delete", "team"], None).ok();
    let audit = admin(&srv, Method::GET, "audit?action=webhook", None).await;
    let text = audit.to_string();
    assert!(
        text.contains("webhook.created") && text.contains("webhook.deleted"),
        "{text}"
    );
    assert!(
        !text.contains(&all_secret) && !text.contains(team_secret),
        "{text}"
    );
    assert!(
        !text.contains("token=abc"),
        "the URI's query is not audited: {text}"
    );
    let l = webhooks_list(&srv).await;
    assert_eq!(l.as_array().unwrap().len(), 1, "{l}");
}

#[tokio::test]
async fn a_failing_receiver_gets_the_event_again_with_backoff_until_it_accepts() {
    let mut srv = Server::start_with_auth_args(&["--webhook-max-attempts", "3"]);
    harness_acts_as(&mut srv, &Cred::owner());
    // Fails twice, then accepts; the other always fails.
    let flaky = Receiver::start(&[500, 503]).await;
    let broken = Receiver::start(&[500; 10]).await;
    for (name, uri) in [("flaky", flaky.uri("/")), ("broken", broken.uri("/"))] {
        admin(
            &srv,
            Method::POST,
            "webhooks",
            Some(json!({"name": name, "uri": uri, "actions": ["push"],
                        "secret": "0123456789abcdef-secret"})),
        )
        .await;
    }
    let mut rng = Rng::new();
    let started = Instant::now();
    let img = srv
        .push_image("retry/app", Some("v1"), "amd64", &mut rng)
        .await;

    let ok = flaky
        .wait_for("/", "the third attempt", |g| !g.is_empty())
        .await;
    let all = flaky.got();
    assert_eq!(
        all.iter().map(|g| g.status).collect::<Vec<_>>(),
        [500, 503, 200],
        "{all:?}"
    );
    assert_eq!(
        all.iter()
            .map(|g| g.header("x-berth-attempt").unwrap().to_owned())
            .collect::<Vec<_>>(),
        ["1", "2", "3"]
    );
    // The same event, byte for byte, each time; backoff 1 s then 2 s.
    assert!(all.iter().all(|g| g.body == ok[0].body));
    assert_eq!(ok[0].event()["target"]["digest"], img.digest.as_str());
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "retried too fast: {:?}",
        started.elapsed()
    );
    let l = webhooks_list(&srv).await;
    let f = hook_entry(&l, "flaky");
    assert_eq!(
        (f["delivered"].as_u64(), f["pending"].as_u64()),
        (Some(1), Some(0)),
        "{l}"
    );
    assert!(
        f["lastError"].as_str().unwrap().contains("503"),
        "the last failure stays visible: {l}"
    );

    // The one that never accepts is given up after 3 attempts, with the reason kept.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l = webhooks_list(&srv).await;
        let b = hook_entry(&l, "broken");
        if b["failed"] == 1 {
            assert_eq!(b["pending"], 0, "{l}");
            assert_eq!(b["delivered"], 0, "{l}");
            let e = b["lastError"].as_str().unwrap();
            assert!(
                e.contains("gave up after 3 attempt(s)") && e.contains("500"),
                "{e}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never given up: {l}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(broken.got().len(), 3);
}

#[tokio::test]
async fn events_queued_while_the_receiver_is_down_survive_sigterm_and_sigkill() {
    let mut srv = start_server();
    // A port nothing listens on yet: the receiver comes up at the end.
    let port = free_port();
    let uri = format!("http://127.0.0.1:{port}/down");
    admin(
        &srv,
        Method::POST,
        "webhooks",
        Some(
            json!({"name": "later", "uri": uri, "actions": ["push", "delete"],
                    "secret": "0123456789abcdef-secret"}),
        ),
    )
    .await;
    let mut rng = Rng::new();
    let a = srv
        .push_image("keep/a", Some("v1"), "amd64", &mut rng)
        .await;
    // Attempts fail (connection refused) and are queued for retry.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = webhooks_list(&srv).await;
        let h = hook_entry(&l, "later");
        if h["lastError"].is_string() {
            assert_eq!(h["pending"], 1, "{l}");
            break;
        }
        assert!(Instant::now() < deadline, "no failed attempt: {l}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A clean stop, a start, another event, then a kill.
    let st = srv.stop();
    assert!(st.success(), "{st}\n{}", srv.logs());
    srv.restart_stopped();
    harness_acts_as(&mut srv, &Cred::owner());
    let b = srv
        .push_image("keep/b", Some("v2"), "amd64", &mut rng)
        .await;
    srv.delete(&format!("/v2/keep/a/manifests/{}", a.digest))
        .await
        .expect(202);
    assert_eq!(
        hook_entry(&webhooks_list(&srv).await, "later")["pending"],
        3
    );
    srv.signal("KILL");
    srv.wait_exit(Duration::from_secs(30))
        .expect("the server dies on SIGKILL");
    srv.restart_on_same_port();
    harness_acts_as(&mut srv, &Cred::owner());

    // The receiver comes up: every event arrives, none lost.
    let rx = Receiver::start_on(&format!("127.0.0.1:{port}"), &[]).await;
    let got = rx
        .wait_for("/down", "the three queued events", |g| {
            find(g, "push", "keep/a", Some("v1")).is_some()
                && find(g, "push", "keep/b", Some("v2")).is_some()
                && find(g, "delete", "keep/a", None).is_some()
        })
        .await;
    assert_eq!(
        find(&got, "push", "keep/a", Some("v1")).unwrap().event()["target"]["digest"],
        a.digest.as_str()
    );
    assert_eq!(
        find(&got, "push", "keep/b", Some("v2")).unwrap().event()["target"]["digest"],
        b.digest.as_str()
    );
    assert_eq!(
        find(&got, "delete", "keep/a", None).unwrap().event()["target"]["digest"],
        a.digest.as_str()
    );
    for g in &got {
        assert_signed(g, "0123456789abcdef-secret");
    }
    // The first one was tried (and failed) before the stops: its attempts carried over.
    let first = find(&got, "push", "keep/a", Some("v1")).unwrap();
    assert!(
        first
            .header("x-berth-attempt")
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 2,
        "{first:?}"
    );
    // Each once: no event was lost, and none was doubled by the restarts.
    let mut ids: Vec<&str> = got
        .iter()
        .map(|g| g.header("x-berth-event").unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), got.len(), "{got:#?}");
    assert_eq!(got.len(), 3, "{got:#?}");
}

#[tokio::test]
async fn only_owners_manage_webhooks_and_bad_ones_are_refused() {
    let srv = start_server();
    let puller = reader(&srv, "pat", "team/*").await;
    let pusher = user_with_roles(&srv, "pete", "pete-password-0123", &["AcrPush"]).await;
    let body = json!({"name": "h", "uri": "https://hooks.example/x", "actions": ["push"]});
    for cred in [&puller, &pusher] {
        for (m, path, b) in [
            (Method::GET, "webhooks", None),
            (Method::POST, "webhooks", Some(body.clone())),
            (Method::DELETE, "webhooks/h", None),
        ] {
            let r = admin_as(&srv, cred, m.clone(), path, b).await;
            assert_eq!(r.status, 403, "{m} {path} as {cred:?}: {r}");
        }
    }
    // Without credentials (a client that sends none): asked to log in.
    let anon = srv.new_client();
    let r = call_with(
        &srv,
        &anon,
        Method::GET,
        "/api/v1/webhooks",
        &Cred::None,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 401, "{r}");
    // The CLI as a non-Owner says so.
    let home = tempfile::tempdir().unwrap();
    let mut c = isolated(env!("CARGO_BIN_EXE_berth"), home.path());
    c.env("BERTH_CONFIG_DIR", home.path().join("cfg"))
        .env("BERTH_USERNAME", "pat")
        .env("BERTH_PASSWORD", "pat-reading-password-1")
        .args(["webhook", "list", "--server", &srv.host(), "--ca-file"])
        .arg(srv.ca_path());
    let out = run(&mut c, None).fails();
    assert!(out.stderr.contains("Owner"), "{out}");

    // Refused as the Owner: bad URIs, actions, scopes, names, secrets; duplicates.
    for (bad, field) in [
        (
            json!({"name": "h", "uri": "https://u:p@hooks.example/", "actions": ["push"]}),
            "uri",
        ),
        (
            json!({"name": "h", "uri": "ftp://hooks.example/", "actions": ["push"]}),
            "uri",
        ),
        (
            json!({"name": "h", "uri": "hooks.example", "actions": ["push"]}),
            "uri",
        ),
        (
            json!({"name": "h", "uri": "https://hooks.example/", "actions": ["pull"]}),
            "actions",
        ),
        (
            json!({"name": "h", "uri": "https://hooks.example/", "actions": []}),
            "actions",
        ),
        (
            json!({"name": "h", "uri": "https://x/", "actions": ["push"], "scopes": ["Bad/Name"]}),
            "scopes",
        ),
        (
            json!({"name": "h", "uri": "https://x/", "actions": ["push"], "scopes": ["*"]}),
            "scopes",
        ),
        (
            json!({"name": "a b", "uri": "https://x/", "actions": ["push"]}),
            "name",
        ),
        (
            json!({"name": "h", "uri": "https://x/", "actions": ["push"], "secret": "short"}),
            "secret",
        ),
    ] {
        let r = admin_as(
            &srv,
            &Cred::owner(),
            Method::POST,
            "webhooks",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(r.status, 400, "{bad}: {r}");
        assert!(
            r.json()["field"] == field || r.to_string().contains(field),
            "{bad}: {r}"
        );
    }
    let v = admin(&srv, Method::POST, "webhooks", Some(body.clone())).await;
    assert!(v["secret"].as_str().unwrap().len() >= 32, "{v}");
    let r = admin_as(&srv, &Cred::owner(), Method::POST, "webhooks", Some(body)).await;
    assert_eq!(r.status, 409, "{r}");
    let r = admin_as(&srv, &Cred::owner(), Method::DELETE, "webhooks/nope", None).await;
    assert_eq!(r.status, 404, "{r}");
    let l = webhooks_list(&srv).await;
    assert!(hook_entry(&l, "h").get("secret").is_none(), "{l}");
    assert!(!l.to_string().contains(v["secret"].as_str().unwrap()));
    // The secret is sealed in the store, not kept in clear.
    if let Some(db) = Some(srv.data_dir().join("metadata.db")).filter(|p| p.exists()) {
        let raw = std::fs::read(&db).unwrap();
        let wal = std::fs::read(db.with_extension("db-wal")).unwrap_or_default();
        let s = v["secret"].as_str().unwrap().as_bytes();
        for bytes in [&raw, &wal] {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s),
                "secret stored in clear"
            );
        }
    }
    admin(&srv, Method::DELETE, "webhooks/h", None).await;
    assert_eq!(webhooks_list(&srv).await, json!([]));
}

#[tokio::test]
async fn https_receivers_are_checked_against_the_configured_ca_and_redirects_are_not_followed() {
    let tls = SharedTls::generate();
    let ca = tls.ca().to_str().unwrap().to_owned();
    let mut srv = Server::start_with_auth_args(&["--webhook-ca-file", &ca]);
    harness_acts_as(&mut srv, &Cred::owner());
    let mut plain = Server::start_with_auth();
    harness_acts_as(&mut plain, &Cred::owner());
    let secure = Receiver::start_tls(&tls, &[]).await;
    let redirecting = Receiver::start(&[307]).await;
    let https_uri = format!("https://{}/s", secure.addr);
    for (server, name, uri) in [
        (&srv, "secure", https_uri.clone()),
        (&srv, "redirecting", redirecting.uri("/r")),
        (&plain, "untrusted", https_uri.clone()),
    ] {
        admin(
            server,
            Method::POST,
            "webhooks",
            Some(json!({"name": name, "uri": uri, "actions": ["push"],
                        "secret": "0123456789abcdef-secret"})),
        )
        .await;
    }
    let mut rng = Rng::new();
    let img = srv
        .push_image("tls/app", Some("v1"), "amd64", &mut rng)
        .await;
    plain
        .push_image("tls/app", Some("v1"), "amd64", &mut rng)
        .await;

    // Through TLS, trusting the configured CA.
    let got = secure
        .wait_for("/s", "the event over https", |g| !g.is_empty())
        .await;
    assert_signed(&got[0], "0123456789abcdef-secret");
    assert_eq!(got[0].event()["target"]["digest"], img.digest.as_str());
    // A redirect is a failed attempt (never followed), tried again.
    redirecting
        .wait_for("/r", "the retry after the redirect", |g| !g.is_empty())
        .await;
    assert_eq!(
        redirecting
            .got()
            .iter()
            .map(|g| g.status)
            .collect::<Vec<_>>(),
        [307, 200]
    );
    let l = webhooks_list(&srv).await;
    let e = hook_entry(&l, "redirecting")["lastError"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        e.contains("307") && e.contains("redirects are not followed"),
        "{e}"
    );
    // A server that was not given the CA refuses the receiver's certificate, and says so.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = webhooks_list(&plain).await;
        let h = hook_entry(&l, "untrusted");
        if let Some(e) = h["lastError"].as_str() {
            assert!(e.to_lowercase().contains("certificate"), "{e}");
            assert_eq!(h["delivered"], 0, "{l}");
            break;
        }
        assert!(Instant::now() < deadline, "no failed attempt: {l}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        secure.got().len(),
        1,
        "only the server trusting the CA got through"
    );
}

/// Two nodes of a cluster share one queue: a webhook created through one node is used by the
/// other at its next event, and every event is delivered once although both nodes' workers
/// claim from the queue at the same time.
#[tokio::test]
async fn cluster_nodes_share_the_webhooks_and_deliver_each_event_once() {
    let c = Cluster::start(2);
    let (a, b) = (c.node(0), c.node(1));
    let rx = Receiver::start(&[]).await;
    admin(
        a,
        Method::POST,
        "webhooks",
        Some(
            json!({"name": "both", "uri": rx.uri("/c"), "actions": ["push"],
                    "secret": "0123456789abcdef-secret"}),
        ),
    )
    .await;
    // At once through the other node.
    let mut rng = Rng::new();
    let mut digests = Vec::new();
    for i in 0..12 {
        let node = if i % 2 == 0 { b } else { a };
        let img = Image::build("amd64", &mut rng, 1, 500);
        push_image_as(node, &Cred::owner(), "cluster/app", &format!("t{i}"), &img).await;
        digests.push(img.digest);
    }
    rx.wait_for("/c", "twelve events", |g| g.len() >= 12).await;
    // Settle: nothing further arrives (a doubled delivery would).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = rx.accepted("/c");
    assert_eq!(got.len(), 12, "{got:#?}");
    let mut ids: Vec<&str> = got
        .iter()
        .map(|g| g.header("x-berth-event").unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12);
    for (i, d) in digests.iter().enumerate() {
        let e = find(&got, "push", "cluster/app", Some(&format!("t{i}")))
            .unwrap_or_else(|| panic!("no event for t{i}"))
            .event();
        assert_eq!(e["target"]["digest"], d.as_str());
        assert_signed(
            find(&got, "push", "cluster/app", Some(&format!("t{i}"))).unwrap(),
            "0123456789abcdef-secret",
        );
    }
    // Both nodes sent some (each claims from the one queue); the list agrees on either node.
    let instances: std::collections::BTreeSet<String> = got
        .iter()
        .map(|g| {
            g.event()["source"]["instanceID"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        instances.len(),
        2,
        "events come from both nodes: {instances:?}"
    );
    for n in [a, b] {
        let l = webhooks_list(n).await;
        assert_eq!(hook_entry(&l, "both")["delivered"], 12, "{l}");
        assert_eq!(hook_entry(&l, "both")["pending"], 0, "{l}");
    }
    // Deleted through one node: the other stops sending at its next event.
    admin(b, Method::DELETE, "webhooks/both", None).await;
    let img = Image::build("amd64", &mut rng, 1, 500);
    push_image_as(a, &Cred::owner(), "cluster/app", "after", &img).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(find(&rx.accepted("/c"), "push", "cluster/app", Some("after")).is_none());
}
