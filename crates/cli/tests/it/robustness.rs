//! Clients that misbehave, with authentication on: bodies written in full before the answer is
//! read, slowloris headers, idle and stalled connections, too many connections, uploads held
//! open. Each must get the protocol's answer, and everyone else must keep being served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::auth_support::*;
use crate::harness::*;

/// Hang guard for one raw exchange; not a timing assertion.
const EXCHANGE: Duration = Duration::from_secs(60);

fn tls_config(srv: &Server, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(srv.ca_path()).expect("ca.crt");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.expect("PEM certificate")).expect("CA added");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// A TLS connection speaking HTTP/1.1, as python's http.client and many others do.
async fn tls(srv: &Server) -> TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(tls_config(srv, &[b"http/1.1"]));
    let tcp = TcpStream::connect(("127.0.0.1", srv.port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    connector.connect(name, tcp).await.expect("TLS handshake")
}

/// A raw HTTP/1.1 answer.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn parse(bytes: &[u8]) -> Raw {
        let text = String::from_utf8_lossy(bytes).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
        Raw {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_string(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.head
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::trim)
    }
}

/// Writes the whole request (head and body) before reading a byte of the answer, then reads
/// until the server closes. A server that closes with the body unread resets the connection
/// and the answer is lost: this fails then.
async fn send_all_then_read(srv: &Server, head: &str, body: &[u8]) -> Raw {
    let exchange = async {
        let mut s = tls(srv).await;
        s.write_all(head.as_bytes())
            .await
            .expect("writing the head");
        s.write_all(body)
            .await
            .unwrap_or_else(|e| panic!("writing the body failed (connection reset?): {e}"));
        s.flush().await.expect("flush");
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                // A peer that skips close_notify still delivered what it sent.
                Err(e) if !out.is_empty() => {
                    eprintln!("read ended with {e}");
                    break;
                }
                Err(e) => panic!("reading the answer failed (connection reset?): {e}"),
            }
        }
        Raw::parse(&out)
    };
    tokio::time::timeout(EXCHANGE, exchange)
        .await
        .expect("raw exchange hung")
}

fn basic_owner() -> String {
    use base64::Engine as _;
    let raw = format!("owner:{OWNER_PASSWORD}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn request_head(srv: &Server, method: &str, path: &str, headers: &[(&str, String)]) -> String {
    let mut h = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", srv.host());
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h
}

/// Opens an upload session as owner and sends its first `n` bytes; returns the session path.
async fn session_with(srv: &Server, repo: &str, n: usize) -> String {
    let r = call(
        srv,
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/"),
        &Cred::owner(),
        &[],
        None,
    )
    .await;
    r.expect(202);
    let loc = r.must_header("location");
    if n > 0 {
        let r = call(
            srv,
            Method::PATCH,
            &loc,
            &Cred::owner(),
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", &format!("0-{}", n - 1)),
            ],
            Some(vec![7u8; n]),
        )
        .await;
        r.expect(202);
    }
    loc
}

const FIVE_MIB: usize = 5 << 20;

/// The head of a PATCH carrying a 5 MiB chunk at `start`, with `auth` if given.
fn five_mib_patch(srv: &Server, loc: &str, start: usize, auth: Option<String>) -> String {
    let mut headers = vec![
        ("Content-Type", "application/octet-stream".to_string()),
        ("Content-Range", format!("{start}-{}", start + FIVE_MIB - 1)),
        ("Content-Length", FIVE_MIB.to_string()),
    ];
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    request_head(srv, "PATCH", loc, &headers)
}

#[tokio::test]
async fn early_answers_reach_clients_that_write_the_whole_body_first() {
    let srv = Server::start_with_auth();
    let loc = session_with(&srv, "early/app", 1000).await;
    let chunk = vec![1u8; FIVE_MIB];

    // A 5 MiB chunk at the wrong offset: 416 with the true Range, and the session survives.
    let head = five_mib_patch(&srv, &loc, 5000, Some(basic_owner()));
    let r = send_all_then_read(&srv, &head, &chunk).await;
    assert_eq!(r.status, 416, "{}\n{}", r.head, r.body);
    assert_eq!(r.header("range"), Some("0-999"), "{}", r.head);
    assert!(r.body.contains("BLOB_UPLOAD_INVALID"), "{}", r.body);

    // The same chunk without credentials (oras, the conformance suite): 401 and the challenge.
    let head = five_mib_patch(&srv, &loc, 1000, None);
    let r = send_all_then_read(&srv, &head, &chunk).await;
    assert_eq!(r.status, 401, "{}\n{}", r.head, r.body);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|c| c.starts_with("bearer realm=")),
        "{}",
        r.head
    );

    // With a token that expired: 401 naming the token as invalid.
    let key = ServerKey::load(&srv).await;
    let access = json!([{"type": "repository", "name": "early/app", "actions": ["pull", "push"]}]);
    let expired = key.mint(&claims(&srv, "owner", now() - 7200, 600, access));
    let head = five_mib_patch(&srv, &loc, 1000, Some(format!("Bearer {expired}")));
    let r = send_all_then_read(&srv, &head, &chunk).await;
    assert_eq!(r.status, 401, "{}\n{}", r.head, r.body);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|c| c.contains("invalid_token")),
        "{}",
        r.head
    );

    // An oversized manifest (the limit is 4 MiB): 413.
    let big = vec![b' '; FIVE_MIB];
    let head = request_head(
        &srv,
        "PUT",
        "/v2/early/app/manifests/v1",
        &[
            ("Authorization", basic_owner()),
            ("Content-Type", OCI_MANIFEST.into()),
            ("Content-Length", big.len().to_string()),
        ],
    );
    let r = send_all_then_read(&srv, &head, &big).await;
    assert_eq!(r.status, 413, "{}\n{}", r.head, r.body);

    // The session is intact: the right chunk still lands.
    let r = call(
        &srv,
        Method::PATCH,
        &loc,
        &Cred::owner(),
        &[
            ("content-type", "application/octet-stream"),
            ("content-range", "1000-1999"),
        ],
        Some(vec![7u8; 1000]),
    )
    .await;
    r.expect(202);
    assert_eq!(r.header("range").as_deref(), Some("0-1999"));

    // HTTP/2 (the harness's client negotiates it): the same early 416.
    let resp = srv
        .client
        .patch(srv.url(&loc))
        .header("authorization", basic_owner())
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("9000-{}", 9000 + FIVE_MIB - 1))
        .body(chunk.clone())
        .send()
        .await
        .expect("h2 PATCH");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status().as_u16(), 416);
    assert_eq!(
        resp.headers().get("range").and_then(|v| v.to_str().ok()),
        Some("0-1999")
    );
}

/// Pushes a small image and pulls its manifest back as owner, through a fresh connection.
async fn push_and_pull(srv: &Server, repo: &str, tag: &str) {
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 1, 4096);
    push_image_as(srv, &Cred::owner(), repo, tag, &img).await;
    let r = call(
        srv,
        Method::GET,
        &format!("/v2/{repo}/manifests/{tag}"),
        &Cred::owner(),
        &[("accept", OCI_MANIFEST)],
        None,
    )
    .await;
    r.expect(200);
    assert_eq!(r.body, img.manifest);
}

/// Reads until the server closes the connection; returns how long that took.
async fn closed_within(mut s: TlsStream<TcpStream>, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read_all)
        .await
        .expect("the server never closed a connection it should have timed out");
    out
}

#[tokio::test]
async fn slowloris_idle_and_stalled_clients_are_cut_off_while_others_are_served() {
    let srv = Server::start_with_auth_args(&[
        "--header-timeout",
        "2",
        "--idle-timeout",
        "3",
        "--body-timeout",
        "2",
    ]);
    // Idle connections: TLS done, nothing sent.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(tls(&srv).await);
    }
    // Slowloris: a request line dribbled out one byte at a time, never finished.
    let mut lorises = Vec::new();
    for _ in 0..20 {
        let mut s = tls(&srv).await;
        lorises.push(tokio::spawn(async move {
            let start = Instant::now();
            for b in b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().cycle() {
                if s.write_all(&[*b]).await.is_err() || s.flush().await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                if start.elapsed() > Duration::from_secs(60) {
                    panic!("a slowloris connection stayed open for a minute");
                }
            }
        }));
    }
    // Stalled uploads: the head and part of the body, then nothing.
    let mut stalled = Vec::new();
    for i in 0..10 {
        let loc = session_with(&srv, "stall/app", 0).await;
        let mut s = tls(&srv).await;
        let head = request_head(
            &srv,
            "PATCH",
            &loc,
            &[
                ("Authorization", basic_owner()),
                ("Content-Type", "application/octet-stream".into()),
                ("Content-Range", format!("0-{}", (1 << 20) - 1)),
                ("Content-Length", (1 << 20).to_string()),
            ],
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&vec![i as u8; 1000]).await.unwrap();
        s.flush().await.unwrap();
        stalled.push((s, loc));
    }

    // Meanwhile everyone else is served.
    for i in 0..3 {
        push_and_pull(&srv, "busy/app", &format!("v{i}")).await;
    }

    // The stalled uploads get 408 in the registry's error format and lose nothing but the
    // partial chunk: the session is still there, empty.
    for (s, loc) in stalled {
        let out = closed_within(s, Duration::from_secs(30)).await;
        let r = Raw::parse(&out);
        assert_eq!(r.status, 408, "{}\n{}", r.head, r.body);
        assert!(r.body.contains("BLOB_UPLOAD_INVALID"), "{}", r.body);
        let st = call(&srv, Method::GET, &loc, &Cred::owner(), &[], None).await;
        st.expect(204);
        assert_eq!(st.header("range").as_deref(), Some("0-0"));
    }
    // Idle connections are closed.
    for s in idle {
        closed_within(s, Duration::from_secs(30)).await;
    }
    // Every slowloris connection was cut off (its writes failed) well before the guard.
    for l in lorises {
        tokio::time::timeout(Duration::from_secs(60), l)
            .await
            .expect("slowloris task")
            .expect("slowloris connection was cut off");
    }
    push_and_pull(&srv, "busy/app", "after").await;
}

#[tokio::test]
async fn stalled_uploads_do_not_starve_the_server() {
    // More stalled bodies than tokio's blocking pool has threads (512): before, each parked a
    // blocking thread and every SQLite or file operation of every user then hung.
    const STALLED: usize = 560;
    let srv = Server::start_with_auth_args(&[
        "--uploads-per-identity",
        "1000",
        "--sessions-per-identity",
        "1000",
        "--body-timeout",
        "120",
    ]);
    let mut held = Vec::new();
    for i in 0..STALLED {
        let loc = session_with(&srv, "starve/app", 0).await;
        let mut s = tls(&srv).await;
        let head = request_head(
            &srv,
            "PATCH",
            &loc,
            &[
                ("Authorization", basic_owner()),
                ("Content-Type", "application/octet-stream".into()),
                ("Content-Length", (1 << 20).to_string()),
            ],
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&[i as u8; 512]).await.unwrap();
        s.flush().await.unwrap();
        held.push(s);
    }
    // Pushes (SQLite writes, file writes) and pulls still go through promptly; the hang guard
    // is far above what they need.
    tokio::time::timeout(Duration::from_secs(60), async {
        for i in 0..3 {
            push_and_pull(&srv, "other/app", &format!("v{i}")).await;
        }
    })
    .await
    .expect("requests hung while uploads were stalled");
    drop(held);
}

#[tokio::test]
async fn connection_limit_answers_503_and_recovers() {
    let srv = Server::start_with_auth_args(&["--max-connections", "6"]);
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(tls(&srv).await);
    }
    let r = send_all_then_read(
        &srv,
        &request_head(&srv, "GET", "/v2/", &[("Connection", "close".into())]),
        b"",
    )
    .await;
    assert_eq!(r.status, 503, "{}\n{}", r.head, r.body);
    assert_eq!(r.header("retry-after"), Some("5"));
    assert!(r.body.contains("too many open connections"), "{}", r.body);
    drop(held);
    // Slots come back as connections close.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = call(&srv, Method::GET, "/v2/", &Cred::owner(), &[], None).await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "{r}");
        assert!(Instant::now() < deadline, "slots never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn upload_sessions_and_streams_are_bounded_per_identity() {
    let srv = Server::start_with_auth_args(&[
        "--sessions-per-identity",
        "3",
        "--uploads-per-identity",
        "2",
        "--body-timeout",
        "60",
    ]);
    let bob = user_with_roles(&srv, "bob", "bob-password-0123456", &["AcrPush"]).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(session_with(&srv, "cap/app", 0).await);
    }
    let post = |cred: Cred| {
        let srv = &srv;
        async move {
            call(
                srv,
                Method::POST,
                "/v2/cap/app/blobs/uploads/",
                &cred,
                &[],
                None,
            )
            .await
        }
    };
    let r = post(Cred::owner()).await;
    r.expect_error(429, "TOOMANYREQUESTS");
    assert_eq!(r.header("retry-after").as_deref(), Some("60"));
    // Someone else is not affected.
    post(bob.clone()).await.expect(202);
    // Cancelling one frees its place.
    call(
        &srv,
        Method::DELETE,
        &sessions[0],
        &Cred::owner(),
        &[],
        None,
    )
    .await
    .expect(204);
    let fourth = post(Cred::owner()).await;
    fourth.expect(202);

    // Two bodies streaming at once is the limit: a third gets 429 at once.
    let mut streaming = Vec::new();
    for loc in &sessions[1..3] {
        let mut s = tls(&srv).await;
        let head = request_head(
            &srv,
            "PATCH",
            loc,
            &[
                ("Authorization", basic_owner()),
                ("Content-Type", "application/octet-stream".into()),
                ("Content-Length", "100000".into()),
            ],
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&[1u8; 100]).await.unwrap();
        s.flush().await.unwrap();
        streaming.push(s);
    }
    // The server takes both bodies in shortly; until it has, a probe may still be accepted.
    let loc = fourth.must_header("location");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = call(
            &srv,
            Method::PATCH,
            &loc,
            &Cred::owner(),
            &[("content-type", "application/octet-stream")],
            Some(vec![0u8; 10]),
        )
        .await;
        if r.status == 429 {
            r.expect_error(429, "TOOMANYREQUESTS");
            assert!(r.header("retry-after").is_some(), "{r}");
            break;
        }
        // Accepted: the server had not yet taken both bodies in; try again shortly.
        r.expect(202);
        assert!(
            Instant::now() < deadline,
            "a third concurrent body was accepted: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(streaming);
}

/// The oras Python SDK pushes and pulls a 12 MiB artifact as a user with push rights. In
/// `basic` mode it sends every request first without credentials, reading the 401 only after
/// writing the whole body.
async fn oras_roundtrip(mode: &str) {
    let srv = Server::start_with_auth();
    user_with_roles(&srv, "orla", "orla-password-0123456", &["AcrPush"]).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/scripts/oras_roundtrip.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(srv.host())
        .arg(srv.ca_path())
        .arg("orla")
        .arg("orla-password-0123456")
        .arg(mode)
        .output()
        .await
        .expect("python3 runs (scripts/test installs the oras SDK)");
    assert!(
        out.status.success(),
        "oras {mode} roundtrip failed\nstdout: {}\nstderr: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        srv.logs()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("roundtrip ok"));
}

#[tokio::test]
async fn oras_sdk_basic_mode_pushes_and_pulls() {
    oras_roundtrip("basic").await;
}

/// In token mode the SDK keeps its pull token after a 401 and asks for a new one only after a
/// 403: a token lacking scope gets 403 with the challenge.
#[tokio::test]
async fn oras_sdk_token_mode_pushes_and_pulls() {
    oras_roundtrip("token").await;
}

#[tokio::test]
async fn stalled_downloads_hold_little_memory_and_are_cut_off() {
    const STALLED: usize = 300;
    let srv = Server::start_with_auth_args(&["--send-timeout", "4"]);
    let blob = Rng::new().bytes(32 << 20);
    let digest = sha256(&blob);
    call(
        &srv,
        Method::POST,
        &format!("/v2/dl/app/blobs/uploads/?digest={digest}"),
        &Cred::owner(),
        &[("content-type", "application/octet-stream")],
        Some(blob),
    )
    .await
    .expect(201);
    let before = proc_status_kb(srv.pid(), "VmRSS");
    let mut readers = Vec::new();
    for _ in 0..STALLED {
        let mut s = tls(&srv).await;
        let head = request_head(
            &srv,
            "GET",
            &format!("/v2/dl/app/blobs/{digest}"),
            &[("Authorization", basic_owner())],
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        readers.push(s);
    }
    // Let every response fill what it may buffer; nobody reads.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = proc_status_kb(srv.pid(), "VmRSS");
    let grown_mib = during.saturating_sub(before) / 1024;
    // Measured ~0.2 MiB per stalled download; before the bound it was ~0.85 MiB (255 MiB here).
    assert!(
        grown_mib < 128,
        "{STALLED} stalled downloads grew RSS by {grown_mib} MiB"
    );
    // Others are served meanwhile.
    push_and_pull(&srv, "other/app", "v1").await;
    // The stalled ones are cut off once they have taken nothing for the send timeout.
    for mut s in readers {
        let drained = async {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), drained)
            .await
            .expect("a stalled download was never cut off");
    }
}

#[tokio::test]
async fn a_low_open_file_limit_lowers_the_connection_limit_instead_of_failing_accept() {
    // 700 descriptors: 512 stay reserved for the server's own files, so 188 connections.
    let srv = Server::start_with_auth_nofile(700, &[]);
    let logs = srv.logs();
    assert!(
        logs.contains("open-file limit") && logs.contains("lowered_to") && logs.contains("188"),
        "{logs}"
    );
    let mut held = Vec::new();
    for _ in 0..188 {
        held.push(tls(&srv).await);
    }
    let r = send_all_then_read(&srv, &request_head(&srv, "GET", "/v2/", &[]), b"").await;
    assert_eq!(r.status, 503, "{}\n{}", r.head, r.body);
    drop(held);
    // Still healthy: nothing failed for lack of descriptors.
    push_and_pull(&srv, "fd/app", "v1").await;
}

#[tokio::test]
async fn an_idle_h2_connection_kept_busy_with_pings_is_closed() {
    let srv = Server::start_with_auth_args(&["--idle-timeout", "3"]);
    let connector = tokio_rustls::TlsConnector::from(tls_config(&srv, &[b"h2"]));
    let tcp = TcpStream::connect(("127.0.0.1", srv.port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let s = connector.connect(name, tcp).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut rd, mut wr) = tokio::io::split(s);
    // The client preface and an empty SETTINGS frame, then a PING every 300 ms, no request.
    wr.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let pinger = tokio::spawn(async move {
        for i in 0u64.. {
            let mut frame = vec![0, 0, 8, 6, 0, 0, 0, 0, 0];
            frame.extend_from_slice(&i.to_be_bytes());
            if wr.write_all(&frame).await.is_err() || wr.flush().await.is_err() {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        unreachable!()
    });
    let start = Instant::now();
    let mut buf = vec![0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {} // SETTINGS, ACKs, PING ACKs, finally GOAWAY
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "pings kept an idle h2 connection open for 30 s"
    );
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "closed too early"
    );
    pinger.abort();
}
