//! Helpers for the access-control suites: credentials on requests (from any loopback source
//! address, so per-address login throttling stays per test case), the admin API as the bootstrap
//! owner, the token endpoint, and JWTs taken apart, tampered with, or minted with the server's own
//! signing key (read from its data directory) to test expiry and claims with valid signatures.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

/// What a request carries in `Authorization`.
#[derive(Clone, Debug)]
pub enum Cred {
    None,
    Basic(String, String),
    Bearer(String),
}

impl Cred {
    pub fn basic(user: &str, password: &str) -> Cred {
        Cred::Basic(user.to_owned(), password.to_owned())
    }

    pub fn owner() -> Cred {
        Cred::basic("owner", OWNER_PASSWORD)
    }

    fn header(&self) -> Option<String> {
        match self {
            Cred::None => None,
            Cred::Basic(u, p) => Some(format!("Basic {}", STANDARD.encode(format!("{u}:{p}")))),
            Cred::Bearer(t) => Some(format!("Bearer {t}")),
        }
    }
}

/// A fresh loopback source address per call (127.0.x.y, never 127.0.0.1), so failed logins of
/// one case never throttle another through the per-address limit.
pub fn fresh_ip() -> IpAddr {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed) % 60_000 + 512;
    IpAddr::V4(Ipv4Addr::new(127, 0, (n >> 8) as u8, (n & 0xff) as u8))
}

/// A client like the harness's, sending from `ip`.
pub fn client_from(srv: &Server, ip: IpAddr) -> reqwest::Client {
    srv.client_builder()
        .pool_max_idle_per_host(0)
        .local_address(ip)
        .build()
        .expect("reqwest client")
}

/// One request with `cred`, from `client`; the whole response is collected.
pub async fn call_with(
    srv: &Server,
    client: &reqwest::Client,
    method: Method,
    path: &str,
    cred: &Cred,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Resp {
    let url = srv.url(path);
    let mut rb = client.request(method.clone(), &url);
    if let Some(h) = cred.header() {
        rb = rb.header("authorization", h);
    }
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.body(b);
    }
    let resp = rb
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e:?}\n{}", srv.logs()));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("response body").to_vec();
    Resp {
        method: method.to_string(),
        url,
        status,
        headers,
        body,
    }
}

pub async fn call(
    srv: &Server,
    method: Method,
    path: &str,
    cred: &Cred,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Resp {
    call_with(srv, &srv.client, method, path, cred, headers, body).await
}

/// The admin API (`/api/v1/<path>`) as the bootstrap owner; asserts a 2xx answer.
pub async fn admin(srv: &Server, method: Method, path: &str, body: Option<Value>) -> Value {
    let r = admin_as(srv, &Cred::owner(), method, path, body).await;
    assert!((200..300).contains(&r.status), "admin API: {r}");
    if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    }
}

pub async fn admin_as(
    srv: &Server,
    cred: &Cred,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Resp {
    let body = body.map(|b| serde_json::to_vec(&b).unwrap());
    call(
        srv,
        method,
        &format!("/api/v1/{path}"),
        cred,
        &[("content-type", "application/json")],
        body,
    )
    .await
}

pub async fn enable_trust_as_owner(srv: &Server) {
    let v = admin(
        srv,
        Method::PUT,
        "config/content-trust",
        Some(json!({"status": "enabled"})),
    )
    .await;
    assert_eq!(v["status"], "enabled", "{v}");
}

pub async fn create_user(srv: &Server, name: &str, password: &str) {
    admin(
        srv,
        Method::POST,
        "users",
        Some(json!({"name": name, "password": password})),
    )
    .await;
}

pub async fn assign(srv: &Server, role: &str, assignee: &str, repository: Option<&str>) {
    admin(
        srv,
        Method::POST,
        "role-assignments",
        Some(json!({"role": role, "assignee": assignee, "repository": repository})),
    )
    .await;
}

pub async fn unassign(srv: &Server, role: &str, assignee: &str, repository: Option<&str>) {
    admin(
        srv,
        Method::DELETE,
        "role-assignments",
        Some(json!({"role": role, "assignee": assignee, "repository": repository})),
    )
    .await;
}

/// A user with `password` and each role at registry scope.
pub async fn user_with_roles(srv: &Server, name: &str, password: &str, roles: &[&str]) -> Cred {
    create_user(srv, name, password).await;
    for r in roles {
        assign(srv, r, name, None).await;
    }
    Cred::basic(name, password)
}

pub async fn scope_map(srv: &Server, name: &str, repository: &str, actions: &[&str]) {
    admin(
        srv,
        Method::POST,
        "scope-maps",
        Some(json!({"name": name, "repository": repository, "actions": actions})),
    )
    .await;
}

/// A repository-scoped token; returns its generated password.
pub async fn create_token(srv: &Server, name: &str, map: &str, days: Option<i64>) -> String {
    let v = admin(
        srv,
        Method::POST,
        "tokens",
        Some(json!({"name": name, "scopeMap": map, "expiresInDays": days})),
    )
    .await;
    v["password"].as_str().expect("token password").to_owned()
}

/// Moves the expiry of identities `names` into the past. The admin API refuses a past expiry,
/// so this edits the stopped server's database (SQLite, or PostgreSQL on the distributed
/// store) and restarts it (on a new port).
pub fn expire_identities(srv: &mut Server, names: &[String]) {
    let status = srv.stop();
    assert!(
        status.success(),
        "server exited with {status}\n{}",
        srv.logs()
    );
    let expires = now() - 86_400;
    if let Some(url) = srv.env_var("BERTH_POSTGRES_URL") {
        let names = names.to_vec();
        crate::cluster::block_on_thread(async move {
            let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to the server's database");
            tokio::spawn(conn);
            for n in &names {
                let changed = db
                    .execute(
                        "UPDATE identities SET expires = $1 WHERE name = $2",
                        &[&expires, n],
                    )
                    .await
                    .expect("update expiry");
                assert_eq!(changed, 1, "no identity {n}");
            }
        });
        srv.restart_stopped();
        return;
    }
    let db = rusqlite::Connection::open(srv.data_dir().join("metadata.db")).expect("open db");
    for n in names {
        let changed = db
            .execute(
                "UPDATE identities SET expires = ?1 WHERE name = ?2",
                rusqlite::params![expires, n],
            )
            .expect("update expiry");
        assert_eq!(changed, 1, "no identity {n}");
    }
    drop(db);
    srv.restart_stopped();
}

/// A service principal: (generated login id, secret).
pub async fn create_sp(srv: &Server, label: &str) -> (String, String) {
    let v = admin(
        srv,
        Method::POST,
        "service-principals",
        Some(json!({"name": label})),
    )
    .await;
    (
        v["name"].as_str().expect("sp id").to_owned(),
        v["password"].as_str().expect("sp secret").to_owned(),
    )
}

/// `GET /oauth2/token` for `service` (default: the server's host) with `scopes`.
pub async fn token_get(
    srv: &Server,
    client: &reqwest::Client,
    cred: &Cred,
    scopes: &[&str],
    service: Option<&str>,
    extra: &str,
) -> Resp {
    let host = srv.host();
    let mut path = format!("/oauth2/token?service={}", enc(service.unwrap_or(&host)));
    for s in scopes {
        path.push_str(&format!("&scope={}", enc(s)));
    }
    path.push_str(extra);
    call_with(srv, client, Method::GET, &path, cred, &[], None).await
}

/// `POST /oauth2/token` with a form.
pub async fn token_post(srv: &Server, form: &[(&str, &str)]) -> Resp {
    let body = form
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    call(
        srv,
        Method::POST,
        "/oauth2/token",
        &Cred::None,
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(body.into_bytes()),
    )
    .await
}

/// A Bearer access token for `cred` with `scopes`; asserts the endpoint answered 200.
pub async fn bearer(srv: &Server, cred: &Cred, scopes: &[&str]) -> String {
    let r = token_get(srv, &srv.client, cred, scopes, None, "").await;
    r.expect(200);
    r.json()["token"].as_str().expect("token").to_owned()
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `scope` of a Bearer challenge, if any.
pub fn challenge_scope(r: &Resp) -> Option<String> {
    let ch = r.header("www-authenticate")?;
    let i = ch.find("scope=\"")? + "scope=\"".len();
    let rest = &ch[i..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// Asserts a 401 with docker's Bearer challenge (and `error=...` when given).
/// A Bearer challenge: 401, or 403 for a token that lacks scope (`insufficient_scope`).
pub fn expect_challenge(r: &Resp, error: Option<&str>) {
    let status = if error == Some("insufficient_scope") {
        403
    } else {
        401
    };
    assert_eq!(r.status, status, "expected {status}: {r}");
    let ch = r
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("401 without WWW-Authenticate: {r}"));
    assert!(ch.starts_with("Bearer realm=\""), "{ch}: {r}");
    if let Some(e) = error {
        assert!(ch.contains(&format!("error=\"{e}\"")), "{ch}: {r}");
    }
}

pub fn expect_denied(r: &Resp) {
    assert_eq!(r.status, 403, "expected 403: {r}");
    assert_eq!(r.json()["errors"][0]["code"], "DENIED", "{r}");
}

// ------------------------------------------------------------------------------------------------
// JWTs

pub struct Jwt {
    pub header: Value,
    pub claims: Value,
    pub sig: String,
}

impl Jwt {
    pub fn parse(token: &str) -> Jwt {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "not a JWS: {token}");
        let dec = |s: &str| -> Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("base64url")).expect("json")
        };
        Jwt {
            header: dec(parts[0]),
            claims: dec(parts[1]),
            sig: parts[2].to_owned(),
        }
    }

    fn signing_input(&self) -> String {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&self.header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&self.claims).unwrap())
        )
    }

    /// Re-encodes header and claims, keeping the old signature.
    pub fn encode_keeping_signature(&self) -> String {
        format!("{}.{}", self.signing_input(), self.sig)
    }
}

/// The server's current token-signing key, read from its store the way the server itself loads
/// it (the vault passphrase, the sealed PKCS#8 key).
pub struct ServerKey {
    pub kid: String,
    pub cert_der: Vec<u8>,
    signer: Box<dyn rustls::sign::Signer>,
    /// Identity name → the binding the server puts in its tokens' `jti` (`<id>.<binding>`,
    /// a fingerprint of the identity's password hash), read when the key was loaded.
    bindings: std::collections::HashMap<String, String>,
}

impl ServerKey {
    pub async fn load(srv: &Server) -> ServerKey {
        let (meta, pass) = crate::cluster::server_meta(srv).await;
        let vault = berth_trust::KeyVault::open(&*meta, &pass)
            .await
            .expect("open vault");
        let keys = meta.signing_keys().await.expect("signing keys");
        let cur = keys
            .iter()
            .find(|k| k.retired.is_none())
            .expect("a current signing key");
        let pkcs8 = vault
            .unseal(&cur.sealed_private, cur.kid.as_bytes())
            .expect("unseal signing key");
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(pkcs8.to_vec().into());
        let key = rustls::crypto::ring::sign::any_ecdsa_type(&der).expect("P-256 key");
        let signer = key
            .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
            .expect("ES256 signer");
        let bindings = meta
            .identity_list(None)
            .await
            .expect("identities")
            .into_iter()
            .map(|r| {
                use sha2::Digest as _;
                let fp = sha2::Sha256::digest(r.secret_hash.as_bytes());
                (r.name, hex::encode(&fp[..8]))
            })
            .collect();
        ServerKey {
            kid: cur.kid.clone(),
            cert_der: cur.certificate.to_vec(),
            signer,
            bindings,
        }
    }

    /// A token exactly as the server would mint it, with these claims.
    pub fn mint(&self, claims: &Value) -> String {
        let mut claims = claims.clone();
        if let Some(b) = claims["sub"].as_str().and_then(|s| self.bindings.get(s))
            && let Some(jti) = claims["jti"].as_str()
        {
            claims["jti"] = json!(format!("{jti}.{b}"));
        }
        let jwt = Jwt {
            header: json!({"alg": "ES256", "typ": "JWT", "kid": self.kid, "x5c": [STANDARD.encode(&self.cert_der)]}),
            claims,
            sig: String::new(),
        };
        let input = jwt.signing_input();
        let der = self.signer.sign(input.as_bytes()).expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(der_sig_to_raw(&der)))
    }
}

/// Claims like the server's for `sub` on this server, valid from `iat` for `ttl` seconds.
pub fn claims(srv: &Server, sub: &str, iat: i64, ttl: i64, access: Value) -> Value {
    json!({
        "iss": "berth", "sub": sub, "aud": srv.host(), "exp": iat + ttl, "nbf": iat, "iat": iat,
        "jti": format!("forged-{iat}-{ttl}-{sub}"), "access": access,
    })
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn der_sig_to_raw(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30, "not a DER sequence");
    let mut i = 2;
    let mut raw = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[i], 0x02, "not a DER integer");
        let len = der[i + 1] as usize;
        let mut n = &der[i + 2..i + 2 + len];
        while n.len() > 32 && n[0] == 0 {
            n = &n[1..];
        }
        raw.extend(std::iter::repeat_n(0u8, 32 - n.len()));
        raw.extend_from_slice(n);
        i += 2 + len;
    }
    raw
}

/// Pushes an image's blobs (POST + PUT) and its manifest under `tag` with `cred`.
pub async fn push_image_as(srv: &Server, cred: &Cred, repo: &str, tag: &str, img: &Image) {
    for blob in std::iter::once(&img.config).chain(img.layers.iter()) {
        let r = call(
            srv,
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            cred,
            &[],
            None,
        )
        .await;
        r.expect(202);
        let loc = with_query(
            &r.must_header("location"),
            &format!("digest={}", sha256(blob)),
        );
        let r = call(
            srv,
            Method::PUT,
            &loc,
            cred,
            &[("content-type", "application/octet-stream")],
            Some(blob.clone()),
        )
        .await;
        r.expect(201);
    }
    let r = call(
        srv,
        Method::PUT,
        &format!("/v2/{repo}/manifests/{tag}"),
        cred,
        &[("content-type", OCI_MANIFEST)],
        Some(img.manifest.clone()),
    )
    .await;
    r.expect(201);
}
