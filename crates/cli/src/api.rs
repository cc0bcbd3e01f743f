//! A small client for Berth's admin API, shared by the admin verbs.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

// Connection flags every verb that talks to a server takes. Deliberately not a doc comment:
// clap would make it the description of every subcommand that flattens this struct.
#[derive(Args, Debug, Clone, Default)]
pub struct ServerArgs {
    /// Registry URL, e.g. https://localhost:5000 (default: the host named in REF or REPO, else
    /// https://localhost:5000).
    #[arg(long, env = "BERTH_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// CA certificate (PEM) to trust for the server's TLS certificate. When absent: the one
    /// `berth login --ca-file` stored for the server, else ~/.docker/tls/<host:port>/ca.crt if
    /// it exists, else the system roots.
    #[arg(long, env = "BERTH_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// User name (or service principal id, or token name) to authenticate as; without it, the
    /// login `berth login` stored for this server is used.
    #[arg(short = 'u', long, env = "BERTH_USERNAME", value_name = "USER")]
    pub username: Option<String>,
    /// Read the password of -u/--username (the caller's own) from standard input; without it,
    /// from the environment variable BERTH_PASSWORD.
    #[arg(long)]
    pub password_stdin: bool,
}

pub struct Api {
    base: String,
    http: reqwest::blocking::Client,
    /// `Authorization` value for admin calls, if any credentials are known.
    auth: Option<String>,
    /// The CA file the server's certificate is checked against (None: the system roots).
    ca: Option<PathBuf>,
}

/// `SERVER` as the key of the logins file and the base of every URL: `https://` unless a scheme
/// is given, no trailing slash.
pub fn normalize_base(server: &str) -> String {
    let base = if server.contains("://") {
        server.to_owned()
    } else {
        format!("https://{server}")
    };
    base.trim_end_matches('/').to_owned()
}

/// The CA file `berth login --ca-file` stored for `base`, if any.
pub fn stored_ca(base: &str) -> anyhow::Result<Option<PathBuf>> {
    Ok(load_logins()?
        .get(base)
        .and_then(|l| l["ca_file"].as_str())
        .map(PathBuf::from))
}

/// [`stored_ca`], checked to be readable: a remembered file that has gone (a removed data
/// dir) must say where the path came from, or the user looks for it in the wrong place.
pub fn stored_ca_readable(base: &str) -> anyhow::Result<Option<PathBuf>> {
    let Some(ca) = stored_ca(base)? else {
        return Ok(None);
    };
    if let Err(e) = std::fs::metadata(&ca) {
        bail!(
            "`berth login` remembered the CA file {} for {base}, but it cannot be read ({e}): \
             pass --ca-file FILE, or log in again with --ca-file FILE",
            ca.display()
        );
    }
    Ok(Some(ca))
}

/// The CA certificates in a PEM file; a file without one is an error (an empty trust list
/// would fail every connection with a confusing message).
pub fn read_ca(path: &std::path::Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).with_context(|| format!("reading CA file {}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("CA file {}: not a PEM certificate", path.display()))?;
    if certs.is_empty() {
        bail!(
            "CA file {} holds no certificate (expected a PEM \"BEGIN CERTIFICATE\" block, e.g. the \
             server's DATA_DIR/tls/ca.crt)",
            path.display()
        );
    }
    Ok(certs)
}

/// A connection error in one line: what failed, and for TLS failures what the certificate
/// was checked against and how to trust the right CA.
pub fn connection_error(base: &str, trust: &str, e: &reqwest::Error) -> anyhow::Error {
    let chain = berth_client::error_chain(e);
    match berth_client::TlsFailure::classify(&chain) {
        Some(kind) => anyhow::anyhow!(
            "contacting {base}: TLS failed: {}{} (fix: {})",
            berth_client::root_cause(e),
            berth_client::checked_against(kind, trust),
            kind.hint()
                .replace("HOST:PORT", base.split("://").nth(1).unwrap_or(base))
        ),
        None => anyhow::anyhow!(
            "contacting {base}: {chain} (fix: check that the registry is running and the address is right)"
        ),
    }
}

/// Where `berth login` keeps refresh tokens (never passwords): `$BERTH_CONFIG_DIR/logins.json`,
/// default `~/.config/berth/logins.json`, mode 0600.
pub fn logins_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("BERTH_CONFIG_DIR") {
        return Some(PathBuf::from(d).join("logins.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/berth/logins.json"))
}

/// The stored logins; none when the file does not exist yet. A file that cannot be read or is
/// not a JSON object is an error: treating it as empty would let the next `berth login`
/// overwrite the logins of every other server.
pub fn load_logins() -> anyhow::Result<serde_json::Map<String, Value>> {
    let Some(path) = logins_path() else {
        return Ok(serde_json::Map::new());
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(serde_json::Map::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => bail!(
            "{} is not a JSON object of logins; fix or remove it (then `berth login` again)",
            path.display()
        ),
        Err(e) => bail!(
            "{} is corrupt ({e}); fix or remove it (then `berth login` again)",
            path.display()
        ),
    }
}

pub fn save_logins(logins: &serde_json::Map<String, Value>) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let path = logins_path().context("no HOME or BERTH_CONFIG_DIR to keep the login in")?;
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(&Value::Object(logins.clone()))?)?;
    f.sync_all()?;
    std::fs::rename(tmp, &path)?;
    Ok(())
}

fn docker_tls_ca(base: &str) -> Option<PathBuf> {
    let hostport = base.split("://").nth(1)?.split('/').next()?;
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home)
        .join(".docker/tls")
        .join(hostport)
        .join("ca.crt");
    p.exists().then_some(p)
}

impl Api {
    /// Connects to `--server`, or to `fallback` (e.g. the host of a REPO argument), with the
    /// credentials from the environment or `berth login`.
    pub fn new(args: &ServerArgs, fallback: Option<String>) -> anyhow::Result<Self> {
        let mut api = Self::build(args, fallback)?;
        api.auth = api.credentials(args, None)?;
        Ok(api)
    }

    /// Like [`Api::new`], for endpoints authorized like registry calls: a token from a stored
    /// login carries `scope` (e.g. `repository:team/app:delete`), as docker's would.
    pub fn new_scoped(
        args: &ServerArgs,
        fallback: Option<String>,
        scope: &str,
    ) -> anyhow::Result<Self> {
        let mut api = Self::build(args, fallback)?;
        api.auth = api.credentials(args, Some(scope))?;
        Ok(api)
    }

    /// Like [`Api::new_scoped`], with credentials the caller already read (`None`: the stored
    /// login), for verbs that need them again later.
    pub fn new_with_credentials(
        args: &ServerArgs,
        fallback: Option<String>,
        creds: Option<&berth_client::Credentials>,
        scope: &str,
    ) -> anyhow::Result<Self> {
        use base64::Engine as _;
        let mut api = Self::build(args, fallback)?;
        api.auth = match creds {
            Some(c) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password))
            )),
            None => {
                let mut anon = args.clone();
                anon.username = None;
                api.credentials(&anon, Some(scope))?
            }
        };
        Ok(api)
    }

    /// A client that sends no credentials (for `berth login` itself).
    pub fn new_anonymous(args: &ServerArgs) -> anyhow::Result<Self> {
        Self::build(args, None)
    }

    fn build(args: &ServerArgs, fallback: Option<String>) -> anyhow::Result<Self> {
        let base = normalize_base(
            &args
                .server
                .clone()
                .or(fallback)
                .unwrap_or_else(|| "https://localhost:5000".into()),
        );
        let mut b =
            reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(300));
        let ca = match &args.ca_file {
            Some(f) => Some(f.clone()),
            None => stored_ca_readable(&base)?.or_else(|| docker_tls_ca(&base)),
        };
        if let Some(ca) = &ca {
            b = b.tls_certs_only(read_ca(ca)?);
        }
        let http = b.build()?;
        Ok(Api {
            base,
            http,
            auth: None,
            ca,
        })
    }

    /// The CA file the server's certificate is checked against (None: the system roots).
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.ca.as_deref()
    }

    fn connection_error(&self, e: &reqwest::Error) -> anyhow::Error {
        let trust = match &self.ca {
            Some(ca) => format!("CA file {}", ca.display()),
            None => "the system roots".to_owned(),
        };
        connection_error(&self.base, &trust, e)
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Basic credentials from `-u` (password from stdin or BERTH_PASSWORD), else a bearer token
    /// obtained with the refresh token `berth login` stored for this server.
    fn credentials(
        &self,
        args: &ServerArgs,
        scope: Option<&str>,
    ) -> anyhow::Result<Option<String>> {
        use base64::Engine as _;
        if let Some(u) = &args.username {
            let p = if args.password_stdin {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .context("reading the password from standard input")?;
                s.trim_end_matches(['\r', '\n']).to_owned()
            } else {
                std::env::var("BERTH_PASSWORD").context(
                    "a user name without a password: pass --password-stdin or set BERTH_PASSWORD",
                )?
            };
            let raw = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            return Ok(Some(format!("Basic {raw}")));
        }
        let logins = load_logins()?;
        let Some(refresh) = logins
            .get(&self.base)
            .and_then(|l| l["refresh_token"].as_str())
        else {
            return Ok(None);
        };
        let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh)];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let v = self.token_request(&form)?;
        let token = v["access_token"]
            .as_str()
            .context("token response without access_token")?;
        Ok(Some(format!("Bearer {token}")))
    }

    /// POSTs the OAuth2 form to `/oauth2/token`.
    pub fn token_request(&self, form: &[(&str, &str)]) -> anyhow::Result<Value> {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let resp = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .map_err(|e| self.connection_error(&e))?;
        let status = resp.status();
        let v: Value = resp.json().unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = v["errors"][0]["message"].as_str().unwrap_or("no details");
            bail!("{} refused the login ({status}): {msg}", self.base);
        }
        Ok(v)
    }

    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(path)).json(body))
    }

    /// [`Api::post`] for a request that may take longer than the usual 300 s.
    pub fn post_waiting(
        &self,
        path: &str,
        body: &Value,
        timeout: std::time::Duration,
    ) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(path)).timeout(timeout).json(body))
    }

    pub fn delete_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.delete(self.url(path)).json(body))
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path)))
    }

    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.put(self.url(path)).json(body))
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(self.url(path)))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/{path}", self.base)
    }

    /// GET of a text (not JSON) resource, e.g. a PEM certificate.
    pub fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let req = self.http.get(self.url(path));
        let req = match &self.auth {
            Some(a) => req.header("authorization", a),
            None => req,
        };
        let resp = req.send().map_err(|e| self.connection_error(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let body: Value = resp.json().unwrap_or(Value::Null);
            return Err(self.refused(status, &body));
        }
        resp.text().map_err(|e| self.connection_error(&e))
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> anyhow::Result<Value> {
        let req = match &self.auth {
            Some(a) => req.header("authorization", a),
            None => req,
        };
        let resp = req.send().map_err(|e| self.connection_error(&e))?;
        let status = resp.status();
        let body: Value = resp.json().unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(self.refused(status, &body));
        }
        Ok(body)
    }

    fn refused(&self, status: reqwest::StatusCode, body: &Value) -> anyhow::Error {
        let msg = body["errors"][0]["message"]
            .as_str()
            .unwrap_or("no details");
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return anyhow::anyhow!(
                "{} answered {status}: {msg} (log in first: berth login {} -u USER --password-stdin)",
                self.base,
                self.base
            );
        }
        anyhow::anyhow!("{} answered {status}: {msg}", self.base)
    }
}

/// Percent-encodes a form value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
