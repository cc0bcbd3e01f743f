//! A connection to one registry: TLS trust, authentication (anonymous, Basic, or the Docker
//! token flow), and the request helper every operation goes through.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use crate::auth::{AuthState, Challenge, Credentials, Mode, TokenResponse, scope_key};
use crate::error::{Error, Result};

/// How to reach and authenticate to a registry.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Registry URL overriding `https://<host[:port]>` from the reference (`--server`).
    pub server: Option<String>,
    /// PEM CA certificate(s) to trust instead of the system roots (`--ca-file`). When absent,
    /// `~/.docker/tls/<host:port>/ca.crt` is used if it exists, as docker and notary do.
    pub ca_file: Option<PathBuf>,
    pub credentials: Option<Credentials>,
    /// PEM CA certificate(s) trusted beside the system roots (a server importing from another
    /// registry: `berth import --source-ca`). Neither `ca_file` nor `~/.docker/tls` is then read.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Refuse plain `http://` for every URL, redirects and token realms included (a server
    /// importing from another registry, unless the user allowed plain HTTP).
    pub require_https: bool,
}

/// A registry client. Cheap to clone; clones share connections and cached tokens.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    /// `host[:port]`, for messages.
    name: String,
    credentials: Option<Credentials>,
    auth: Mutex<AuthState>,
    /// What server certificates are checked against, for messages: "CA file PATH" or "the
    /// system roots".
    trust: String,
}

fn docker_tls_ca(hostport: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home)
        .join(".docker/tls")
        .join(hostport)
        .join("ca.crt");
    p.exists().then_some(p)
}

fn load_ca(path: &Path) -> Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).map_err(|e| Error::CaFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::CaFile {
        path: path.to_owned(),
        reason: format!("not a PEM certificate: {e}"),
    })?;
    if certs.is_empty() {
        return Err(Error::CaFile {
            path: path.to_owned(),
            reason: "holds no certificate (expected a PEM \"BEGIN CERTIFICATE\" block)".into(),
        });
    }
    Ok(certs)
}

/// A reqwest error with its causes, which carry the useful part ("connection refused",
/// "invalid peer certificate: UnknownIssuer").
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// The innermost cause of an error: for a TLS failure, rustls's own words.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

impl Registry {
    /// A client for the registry named `host[:port]` (as in a reference).
    pub fn new(registry: &str, opts: &ClientOptions) -> Result<Registry> {
        let bad = |reason: String| Error::InvalidReference {
            input: opts.server.clone().unwrap_or_else(|| registry.to_owned()),
            reason,
        };
        let base = match &opts.server {
            Some(s) if s.contains("://") => s.clone(),
            Some(s) => format!("https://{s}"),
            None => format!("https://{registry}"),
        };
        let base = Url::parse(&format!("{}/", base.trim_end_matches('/')))
            .map_err(|e| bad(format!("not a URL: {e}")))?;
        let hostport = match (base.host_str(), base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(bad("no host".into())),
        };
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            // Per read, not per request: a 256 MiB chunk may take long, a stalled one fails.
            .read_timeout(Duration::from_secs(120))
            // Redirects may point at blob storage on another host; reqwest drops Authorization
            // across hosts, as the spec requires.
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")));
        if opts.require_https {
            b = b.https_only(true);
        }
        let trust = if let Some(pem) = &opts.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| Error::CaFile {
                    path: PathBuf::from("(source CA)"),
                    reason: "holds no PEM certificate".into(),
                })?;
            b = b.tls_certs_merge(certs);
            "the system roots and the given CA".to_owned()
        } else {
            match opts.ca_file.clone().or_else(|| docker_tls_ca(&hostport)) {
                Some(ca) => {
                    b = b.tls_certs_only(load_ca(&ca)?);
                    format!("CA file {}", ca.display())
                }
                None => "the system roots".to_owned(),
            }
        };
        let http = b.build().map_err(|e| Error::Network {
            what: "setting up the HTTP client".into(),
            registry: hostport.clone(),
            reason: error_chain(&e),
        })?;
        Ok(Registry {
            inner: Arc::new(Inner {
                http,
                base,
                name: hostport,
                credentials: opts.credentials.clone(),
                auth: Mutex::new(AuthState::default()),
                trust,
            }),
        })
    }

    /// `host[:port]` of the registry.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// What server certificates are checked against: "CA file PATH" or "the system roots".
    pub fn tls_trust(&self) -> &str {
        &self.inner.trust
    }

    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        self.inner
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|e| Error::protocol(path.to_owned(), format!("bad URL: {e}")))
    }

    /// Resolves a `Location` header (absolute, or relative to the registry).
    pub(crate) fn location(&self, what: &str, headers: &HeaderMap) -> Result<Url> {
        let loc = headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::protocol(what, "response without Location"))?;
        self.inner
            .base
            .join(loc)
            .map_err(|e| Error::protocol(what, format!("bad Location {loc:?}: {e}")))
    }

    /// `GET /v2/`: checks the registry is there and that our credentials (if any) work.
    pub async fn ping(&self) -> Result<()> {
        let url = self.url("v2/")?;
        let resp = self
            .send("checking the registry", &[], || {
                self.inner.http.get(url.clone())
            })
            .await?;
        self.check(resp, "checking the registry").await.map(drop)
    }

    /// Sends a request built by `build` (called again for a retry), authenticating as the
    /// registry asks: on a 401 (or a 403 saying `insufficient_scope`) it learns the challenge,
    /// fetches a token for `scopes` plus whatever the challenge names, and retries once. Other statuses are returned as they are.
    pub(crate) async fn send(
        &self,
        what: &str,
        scopes: &[String],
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response> {
        let mut scopes = scopes.to_vec();
        let mut fresh = false;
        for attempt in 0..2 {
            let rb = self.authorize(what, build(), &scopes, fresh).await?;
            let resp = rb.send().await.map_err(|e| self.network(what, &e))?;
            let status = resp.status();
            if attempt == 1
                || (status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN)
            {
                return Ok(resp);
            }
            let challenges = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(crate::auth::parse_challenges)
                .collect::<Vec<_>>();
            // A 403 is a refusal, unless it says the token lacks scope the caller may ask for
            // (RFC 6750 `insufficient_scope`): then a token with that scope is worth one try.
            if status == StatusCode::FORBIDDEN
                && !challenges.iter().any(|c| {
                    matches!(c, Challenge::Bearer { error: Some(e), .. } if e == "insufficient_scope")
                })
            {
                return Ok(resp);
            }
            let bearer = challenges.iter().find_map(|c| match c {
                Challenge::Bearer {
                    realm,
                    service,
                    scope,
                    ..
                } => Some((realm.clone(), service.clone(), scope.clone())),
                _ => None,
            });
            let mut st = self.inner.auth.lock().expect("auth lock");
            if let Some((realm, service, scope)) = bearer {
                st.mode = Mode::Bearer { realm, service };
                for s in scope.iter().flat_map(|s| s.split_whitespace()) {
                    if !scopes.iter().any(|x| x == s) {
                        scopes.push(s.to_owned());
                    }
                }
                st.forget(&scope_key(&scopes));
                fresh = true;
            } else if challenges
                .iter()
                .any(|c| matches!(c, Challenge::Basic { .. }))
                && self.inner.credentials.is_some()
                && !matches!(st.mode, Mode::Basic)
            {
                st.mode = Mode::Basic;
            } else {
                drop(st);
                return Ok(resp);
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Adds the Authorization header the current mode calls for.
    async fn authorize(
        &self,
        what: &str,
        rb: RequestBuilder,
        scopes: &[String],
        fresh: bool,
    ) -> Result<RequestBuilder> {
        let key = scope_key(scopes);
        let (mode, cached) = {
            let st = self.inner.auth.lock().expect("auth lock");
            (st.mode.clone(), st.token(&key).map(str::to_owned))
        };
        match mode {
            Mode::Anonymous => Ok(rb),
            Mode::Basic => Ok(match &self.inner.credentials {
                Some(c) => rb.basic_auth(&c.username, Some(&c.password)),
                None => rb,
            }),
            Mode::Bearer { realm, service } => {
                let token = match cached {
                    Some(t) if !fresh => t,
                    _ => {
                        let (t, life) = self
                            .fetch_token(what, &realm, service.as_deref(), scopes)
                            .await?;
                        self.inner
                            .auth
                            .lock()
                            .expect("auth lock")
                            .store(key, t.clone(), life);
                        t
                    }
                };
                Ok(rb.bearer_auth(token))
            }
        }
    }

    /// The HTTP client with this registry's TLS trust, for the other APIs on the same host
    /// (the Notary trust API lives under `/v2/<gun>/_trust/`).
    pub fn http_client(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// Runs the token flow for a `WWW-Authenticate` value another API of this host answered
    /// with, asking for `scopes` plus the challenge's own, with this client's credentials.
    /// `Ok(None)` when the value holds no Bearer challenge (Basic is then the caller's choice).
    pub async fn token_for_challenge(
        &self,
        what: &str,
        www_authenticate: &str,
        scopes: &[String],
    ) -> Result<Option<String>> {
        let Some((realm, service, scope)) = crate::auth::parse_challenges(www_authenticate)
            .into_iter()
            .find_map(|c| match c {
                Challenge::Bearer {
                    realm,
                    service,
                    scope,
                    ..
                } => Some((realm, service, scope)),
                Challenge::Basic { .. } => None,
            })
        else {
            return Ok(None);
        };
        let mut scopes = scopes.to_vec();
        for s in scope.iter().flat_map(|s| s.split_whitespace()) {
            if !scopes.iter().any(|x| x == s) {
                scopes.push(s.to_owned());
            }
        }
        let (token, _) = self
            .fetch_token(what, &realm, service.as_deref(), &scopes)
            .await?;
        Ok(Some(token))
    }

    /// GET the realm with Basic credentials (token.md). Anonymous when we have none: the
    /// token service may still grant anonymous pulls.
    async fn fetch_token(
        &self,
        what: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(String, Duration)> {
        let token_err = |reason: String| Error::Token {
            realm: realm.to_owned(),
            reason,
        };
        let mut url = Url::parse(realm).map_err(|e| token_err(format!("bad realm URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
            if let Some(c) = &self.inner.credentials {
                q.append_pair("account", &c.username);
            }
            q.append_pair("client_id", "berth");
        }
        let mut rb = self.inner.http.get(url);
        if let Some(c) = &self.inner.credentials {
            rb = rb.basic_auth(&c.username, Some(&c.password));
        }
        let resp = rb.send().await.map_err(|e| self.network(what, &e))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let detail = if self.inner.credentials.is_some() {
                "the token service refused the credentials"
            } else {
                "no credentials were given"
            };
            return Err(Error::Unauthorized {
                what: what.to_owned(),
                registry: self.inner.name.clone(),
                detail: detail.into(),
            });
        }
        if !status.is_success() {
            return Err(token_err(format!("answered {status}")));
        }
        let body: TokenResponse = resp
            .json()
            .await
            .map_err(|e| token_err(format!("unreadable answer: {}", error_chain(&e))))?;
        body.into_token()
            .ok_or_else(|| token_err("answer carries no token".into()))
    }

    pub(crate) fn network(&self, what: &str, e: &reqwest::Error) -> Error {
        let reason = error_chain(e);
        match crate::error::TlsFailure::classify(&reason) {
            Some(kind) => Error::Tls {
                what: what.to_owned(),
                registry: self.inner.name.clone(),
                reason: root_cause(e),
                trust: self.inner.trust.clone(),
                kind,
            },
            None => Error::Network {
                what: what.to_owned(),
                registry: self.inner.name.clone(),
                reason,
            },
        }
    }

    /// Passes a 2xx response through; turns anything else into the matching error, with the
    /// OCI error body's code and message when there is one.
    pub(crate) async fn check(&self, resp: Response, what: &str) -> Result<Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        Err(self.error_from(resp, what).await)
    }

    pub(crate) async fn error_from(&self, resp: Response, what: &str) -> Error {
        let status = resp.status();
        let warning = warning_text(resp.headers());
        // Error bodies are small (and empty for HEAD); cap what we read from a misbehaving server.
        let bytes = read_capped(resp, 64 * 1024).await.unwrap_or_default();
        let body: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        let first = &body["errors"][0];
        let code = first["code"].as_str().map(str::to_owned);
        let message = match first["message"].as_str() {
            Some(m) => m.to_owned(),
            None => warning.unwrap_or_default(),
        };
        let registry = self.inner.name.clone();
        let what = what.to_owned();
        match status {
            StatusCode::UNAUTHORIZED => Error::Unauthorized {
                what,
                registry,
                detail: message,
            },
            StatusCode::FORBIDDEN => Error::Denied {
                what,
                registry,
                detail: message,
            },
            StatusCode::NOT_FOUND => Error::NotFound {
                what,
                registry,
                detail: message,
            },
            _ => Error::Registry {
                what,
                registry,
                status: status.as_u16(),
                code,
                message,
            },
        }
    }

    /// A request of `method` to `url` (helper for closures passed to `send`).
    pub(crate) fn request(&self, method: Method, url: &Url) -> RequestBuilder {
        self.inner.http.request(method, url.clone())
    }
}

/// The text of a `Warning: 199 AGENT "TEXT"` header: what an answer without a body (to a HEAD)
/// can say about an error.
fn warning_text(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(reqwest::header::WARNING)?.to_str().ok()?;
    let (_, quoted) = v.split_once('"')?;
    let (text, _) = quoted.rsplit_once('"')?;
    Some(text.to_owned())
}

/// Reads a response body, at most `limit` bytes (the rest is dropped with the connection).
pub(crate) async fn read_capped(mut resp: Response, limit: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Some(out)
}
