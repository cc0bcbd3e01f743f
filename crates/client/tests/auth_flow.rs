//! The client's side of registry authentication against a scripted HTTP/1.1 server: the Docker
//! token flow (challenge, token request with Basic credentials and scopes, cached token, fresh
//! token for a new scope) and a plain Basic challenge.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use berth_client::{ClientOptions, Credentials, Error, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
struct Req {
    method: String,
    target: String,
    headers: HashMap<String, String>,
}

type Handler = Arc<dyn Fn(&Req) -> (u16, Vec<(String, String)>, String) + Send + Sync>;

/// Serves `handler` on 127.0.0.1; returns the base URL and the log of requests.
async fn serve(handler: Handler) -> (String, Arc<Mutex<Vec<Req>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let handler = handler.clone();
            let log = log2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request per connection (we answer with Connection: close).
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let text = String::from_utf8_lossy(&buf).into_owned();
                let mut lines = text.split("\r\n");
                let mut first = lines.next().unwrap().split(' ');
                let method = first.next().unwrap().to_owned();
                let target = first.next().unwrap().to_owned();
                let headers = lines
                    .take_while(|l| !l.is_empty())
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let req = Req {
                    method,
                    target,
                    headers,
                };
                log.lock().unwrap().push(req.clone());
                let (status, hdrs, body) = handler(&req);
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\nConnection: close\r\nContent-Length: {}\r\n",
                    body.len()
                );
                for (k, v) in hdrs {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&body);
                let _ = s.write_all(out.as_bytes()).await;
            });
        }
    });
    (base, log)
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn opts(base: &str, creds: Option<(&str, &str)>) -> ClientOptions {
    // reqwest is built without a default provider; the binary installs ring, so do we.
    let _ = rustls::crypto::ring::default_provider().install_default();
    ClientOptions {
        server: Some(base.to_owned()),
        ca_file: None,
        credentials: creds.map(|(u, p)| Credentials {
            username: u.into(),
            password: p.into(),
        }),
        ..Default::default()
    }
}

/// A registry that wants a bearer token whose value names the scopes it was issued for.
fn token_registry(base: Arc<Mutex<String>>) -> Handler {
    Arc::new(move |r: &Req| {
        let base = base.lock().unwrap().clone();
        if r.target.starts_with("/token") {
            if r.headers.get("authorization") != Some(&basic("alice", "s3cret")) {
                return (401, vec![], String::new());
            }
            let scopes: Vec<String> = r
                .target
                .split(['?', '&'])
                .filter_map(|p| p.strip_prefix("scope="))
                .map(|s| {
                    s.replace("%3A", ":")
                        .replace("%2F", "/")
                        .replace("%2C", ",")
                })
                .collect();
            let tok = format!("tok[{}]", scopes.join(" "));
            return (
                200,
                vec![("Content-Type".into(), "application/json".into())],
                format!(r#"{{"token":"{tok}","expires_in":300}}"#),
            );
        }
        let challenge = |scope: &str| {
            (
                401,
                vec![(
                    "WWW-Authenticate".into(),
                    format!(r#"Bearer realm="{base}/token",service="reg",scope="{scope}""#),
                )],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                    .to_owned(),
            )
        };
        let auth = r.headers.get("authorization").cloned().unwrap_or_default();
        if r.target.starts_with("/v2/team/app/blobs/") {
            if auth.contains("repository:team/app:pull") {
                (404, vec![], String::new())
            } else {
                challenge("repository:team/app:pull")
            }
        } else if r.target == "/v2/" {
            if auth.starts_with("Bearer tok[") {
                (200, vec![], "{}".into())
            } else {
                challenge("")
            }
        } else {
            (404, vec![], String::new())
        }
    })
}

#[tokio::test]
async fn docker_token_flow_with_cached_tokens_per_scope() {
    let base = Arc::new(Mutex::new(String::new()));
    let (url, log) = serve(token_registry(base.clone())).await;
    *base.lock().unwrap() = url.clone();
    let reg = Registry::new("ignored", &opts(&url, Some(("alice", "s3cret")))).unwrap();

    reg.ping().await.unwrap();
    let d: berth_oci::Digest = berth_oci::Digest::sha256_of(b"x");
    let repo: berth_oci::RepoName = "team/app".parse().unwrap();
    assert!(!reg.blob_exists(&repo, &d).await.unwrap());
    // Second time: the cached token for that scope is used, no new token request.
    assert!(!reg.blob_exists(&repo, &d).await.unwrap());

    let log = log.lock().unwrap().clone();
    let tokens: Vec<&Req> = log
        .iter()
        .filter(|r| r.target.starts_with("/token"))
        .collect();
    assert_eq!(tokens.len(), 2, "{log:#?}");
    for t in &tokens {
        assert!(t.target.contains("service=reg"), "{t:?}");
        assert!(t.target.contains("account=alice"), "{t:?}");
        assert_eq!(t.method, "GET");
    }
    assert!(
        tokens[1]
            .target
            .contains("scope=repository%3Ateam%2Fapp%3Apull"),
        "{:?}",
        tokens[1]
    );
    // Once the registry is known to want tokens, the token for a new scope is fetched before
    // the request: no second challenge round trip.
    let heads: Vec<&Req> = log.iter().filter(|r| r.method == "HEAD").collect();
    assert_eq!(heads.len(), 2, "{log:#?}");
    for h in heads {
        assert_eq!(
            h.headers.get("authorization").map(String::as_str),
            Some("Bearer tok[repository:team/app:pull]")
        );
    }
}

#[tokio::test]
async fn refused_credentials_and_no_credentials_say_so() {
    let base = Arc::new(Mutex::new(String::new()));
    let (url, _) = serve(token_registry(base.clone())).await;
    *base.lock().unwrap() = url.clone();
    for creds in [Some(("alice", "wrong")), None] {
        let reg = Registry::new("ignored", &opts(&url, creds)).unwrap();
        let e = reg.ping().await.unwrap_err();
        assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
        assert!(e.hint().unwrap().contains("--password-stdin"));
    }
}

#[tokio::test]
async fn basic_challenge_is_answered_with_credentials() {
    let handler: Handler = Arc::new(|r: &Req| {
        if r.headers.get("authorization") == Some(&basic("bob", "pw")) {
            (200, vec![], "{}".into())
        } else {
            (
                401,
                vec![(
                    "WWW-Authenticate".into(),
                    r#"Basic realm="Registry Realm""#.into(),
                )],
                String::new(),
            )
        }
    });
    let (url, log) = serve(handler).await;
    let reg = Registry::new("ignored", &opts(&url, Some(("bob", "pw")))).unwrap();
    reg.ping().await.unwrap();
    reg.ping().await.unwrap();
    // Challenged once; afterwards Basic goes with every request.
    assert_eq!(log.lock().unwrap().len(), 3);

    let anon = Registry::new("ignored", &opts(&url, None)).unwrap();
    assert!(matches!(anon.ping().await, Err(Error::Unauthorized { .. })));
}

#[tokio::test]
async fn token_for_a_challenge_from_another_api_of_the_host() {
    let base = Arc::new(Mutex::new(String::new()));
    let (url, log) = serve(token_registry(base.clone())).await;
    *base.lock().unwrap() = url.clone();
    let reg = Registry::new("ignored", &opts(&url, Some(("alice", "s3cret")))).unwrap();
    // The trust API's challenge names the GUN; we ask for push as well, for a publish.
    let challenge =
        format!(r#"Bearer realm="{url}/token",service="reg",scope="repository:h:1/team/app:pull""#);
    let wanted = ["repository:h:1/team/app:pull,push".to_owned()];
    let t = reg
        .token_for_challenge("publishing", &challenge, &wanted)
        .await
        .unwrap();
    assert_eq!(
        t.as_deref(),
        Some("tok[repository:h:1/team/app:pull,push repository:h:1/team/app:pull]")
    );
    assert_eq!(log.lock().unwrap().len(), 1);
    // Not a Bearer challenge: nothing to do here.
    let none = reg
        .token_for_challenge("x", r#"Basic realm="r""#, &wanted)
        .await
        .unwrap();
    assert_eq!(none, None);
    // Refused credentials are the usual error.
    let bad = Registry::new("ignored", &opts(&url, Some(("alice", "nope")))).unwrap();
    assert!(matches!(
        bad.token_for_challenge("x", &challenge, &wanted).await,
        Err(Error::Unauthorized { .. })
    ));
}
