//! Helpers for the content-trust tests: running the real `notary` and `docker` CLIs against a
//! `berth serve` (with a hang guard, an isolated environment and their output kept for failure
//! messages), the stand-in docker engine, and hand-made TUF metadata (openssl signs, so nothing of
//! Berth's own crypto is used to produce what Berth is asked to verify).
//!
//! The client suites run as users do: [`start_server`] has authentication on, the clients log in
//! ([`Notary::with_login`], [`Docker::logged_in`]) as identities made by [`signer`],
//! [`signing_token`] and [`reader`], and the harness's own HTTP calls act as the owner.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

use crate::auth_support::{Cred, assign, create_token, create_user, scope_map};
use crate::harness::{Resp, Server};

/// Hang guard for one CLI invocation; not an assertion about speed.
const CLI_TIMEOUT: Duration = Duration::from_secs(90);

pub const NOTARY: &str = "/usr/bin/notary";
pub const DOCKER: &str = "/usr/local/bin/docker";

pub const ROOT_PW: &str = "root-Passphrase-1";
pub const TARGETS_PW: &str = "targets-Passphrase-2";
pub const SNAPSHOT_PW: &str = "snapshot-Passphrase-3";
pub const DELEGATION_PW: &str = "delegation-Passphrase-4";
/// Docker uses one passphrase for every non-root key ("repository").
pub const REPOSITORY_PW: &str = "repository-Passphrase-5";

pub fn fake_engine_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/fake-docker-engine.py")
}

// ------------------------------------------------------------------------------------------------
// Running CLIs

pub struct Out {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` -> {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.status, self.stdout, self.stderr
        )
    }
}

impl Out {
    pub fn ok(self) -> Out {
        assert!(self.status.success(), "command failed: {self}");
        self
    }

    pub fn fails(self) -> Out {
        assert!(
            !self.status.success(),
            "command unexpectedly succeeded: {self}"
        );
        self
    }

    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` to completion (feeding `stdin`), killing it after [`CLI_TIMEOUT`].
pub fn run(cmd: &mut Command, stdin: Option<&str>) -> Out {
    let what = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
    if let Some(input) = stdin {
        let mut w = child.stdin.take().unwrap();
        let input = input.to_owned();
        std::thread::spawn(move || {
            let _ = w.write_all(input.as_bytes());
        });
    }
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = so.read_to_end(&mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = se.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let st = child.wait().expect("wait");
            let out = Out {
                what,
                status: st,
                stdout: String::from_utf8_lossy(&to.join().unwrap()).into_owned(),
                stderr: String::from_utf8_lossy(&te.join().unwrap()).into_owned(),
            };
            panic!("command did not finish within {CLI_TIMEOUT:?}: {out}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Out {
        what,
        status,
        stdout: String::from_utf8_lossy(&to.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&te.join().unwrap()).into_owned(),
    }
}

/// A command with an empty environment except PATH, HOME and loopback-only proxy settings, so
/// nothing of the caller's (~/.notary, ~/.docker, DOCKER_CONTENT_TRUST_SERVER, proxies) leaks in.
pub fn isolated(program: &str, home: &Path) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", home)
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .env("LANG", "C")
        .current_dir(home);
    c
}

// ------------------------------------------------------------------------------------------------
// Servers with authentication on, and who the clients are

/// A `berth serve` as users run it (authentication on). The harness's own requests (`srv.get`,
/// `push_image`, [`tuf_get`], [`enable_trust`], ...) set up and inspect state as the bootstrap
/// owner; the clients under test log in as the identities a test makes for them.
pub fn start_server() -> Server {
    let mut srv = Server::start_with_auth();
    harness_acts_as(&mut srv, &Cred::owner());
    srv
}

/// Every later request of `srv`'s harness client carries `cred`.
pub fn harness_acts_as(srv: &mut Server, cred: &Cred) {
    let mut headers = HeaderMap::new();
    if let Some(v) = authorization(cred) {
        headers.insert(AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
    }
    srv.client = srv
        .client_builder()
        .pool_max_idle_per_host(0)
        .default_headers(headers)
        .build()
        .expect("reqwest client");
}

fn authorization(cred: &Cred) -> Option<String> {
    match cred {
        Cred::None => None,
        Cred::Basic(u, p) => Some(format!("Basic {}", STANDARD.encode(format!("{u}:{p}")))),
        Cred::Bearer(t) => Some(format!("Bearer {t}")),
    }
}

fn user_and_password(cred: &Cred) -> Option<(&str, &str)> {
    match cred {
        Cred::None => None,
        Cred::Basic(u, p) => Some((u, p)),
        Cred::Bearer(_) => panic!("the CLIs log in with a user name and password, not {cred:?}"),
    }
}

/// A person who signs without being an Owner: AcrPush and AcrImageSigner on the repositories
/// `pattern` matches (`team/app`, `team/*`), nothing elsewhere.
pub async fn signer(srv: &Server, name: &str, pattern: &str) -> Cred {
    let password = format!("{name}-signing-password-1");
    create_user(srv, name, &password).await;
    assign(srv, "AcrPush", name, Some(pattern)).await;
    assign(srv, "AcrImageSigner", name, Some(pattern)).await;
    Cred::basic(name, &password)
}

/// A CI token that pushes and signs the repositories `pattern` matches: a scope map with
/// content/read, content/write, trust/read and trust/write.
pub async fn signing_token(srv: &Server, name: &str, pattern: &str) -> Cred {
    let map = format!("{name}-map");
    scope_map(
        srv,
        &map,
        pattern,
        &["content/read", "content/write", "trust/read", "trust/write"],
    )
    .await;
    let password = create_token(srv, name, &map, Some(30)).await;
    Cred::basic(name, &password)
}

/// Someone who only reads: AcrPull on the repositories `pattern` matches.
pub async fn reader(srv: &Server, name: &str, pattern: &str) -> Cred {
    let password = format!("{name}-reading-password-1");
    create_user(srv, name, &password).await;
    assign(srv, "AcrPull", name, Some(pattern)).await;
    Cred::basic(name, &password)
}

pub fn gun(srv: &Server, repo: &str) -> String {
    format!("127.0.0.1:{}/{repo}", srv.port)
}

/// Turns content trust on through the admin API and checks the answer (as the harness client:
/// the owner on servers from [`start_server`]).
pub async fn enable_trust(srv: &Server) {
    let r = srv
        .send(
            Method::PUT,
            "/api/v1/config/content-trust",
            &[("content-type", "application/json")],
            Some(br#"{"status":"enabled"}"#.to_vec()),
        )
        .await;
    r.expect(200);
    assert_eq!(r.json()["status"], "enabled", "{r}");
    let r = srv.get("/api/v1/config/content-trust").await;
    r.expect(200);
    assert_eq!(r.json()["status"], "enabled", "{r}");
}

/// `notary` with its own trust directory, talking to `srv` and trusting only its CA.
pub struct Notary {
    pub trust_dir: PathBuf,
    home: PathBuf,
    server: String,
    ca: PathBuf,
    /// root, targets, snapshot, delegation
    passphrases: [&'static str; 4],
    /// `NOTARY_AUTH` (base64 of `user:password`), if it logs in.
    auth: Option<String>,
    _tmp: tempfile::TempDir,
}

impl Notary {
    pub fn new(srv: &Server) -> Notary {
        let tmp = tempfile::tempdir().expect("notary tempdir");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        Notary {
            trust_dir: tmp.path().join("trust"),
            home,
            server: srv.base.clone(),
            ca: srv.ca_path(),
            passphrases: [ROOT_PW, TARGETS_PW, SNAPSHOT_PW, DELEGATION_PW],
            auth: None,
            _tmp: tmp,
        }
    }

    /// A notary client that logs in as `cred` (through `NOTARY_AUTH`, as users do).
    pub fn with_login(srv: &Server, cred: &Cred) -> Notary {
        let mut n = Notary::new(srv);
        n.auth = user_and_password(cred).map(|(u, p)| STANDARD.encode(format!("{u}:{p}")));
        n
    }

    /// A notary client working in docker's trust directory (same key and cache format), with
    /// docker's passphrases under notary's variable names, logged in as docker is.
    pub fn sharing_keys_with(srv: &Server, docker: &Docker) -> Notary {
        let mut n = Notary::with_login(srv, &docker.login);
        n.trust_dir = docker.config.join("trust");
        n.passphrases = [ROOT_PW, REPOSITORY_PW, REPOSITORY_PW, REPOSITORY_PW];
        n
    }

    /// The working directory (also HOME) for files handed to the CLI.
    pub fn work(&self) -> &Path {
        &self.home
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = isolated(NOTARY, &self.home);
        let [root, targets, snapshot, delegation] = self.passphrases;
        c.env("NOTARY_ROOT_PASSPHRASE", root)
            .env("NOTARY_TARGETS_PASSPHRASE", targets)
            .env("NOTARY_SNAPSHOT_PASSPHRASE", snapshot)
            .env("NOTARY_DELEGATION_PASSPHRASE", delegation);
        if let Some(auth) = &self.auth {
            c.env("NOTARY_AUTH", auth);
        }
        c.arg("-s")
            .arg(&self.server)
            .arg("-d")
            .arg(&self.trust_dir)
            .arg("--tlscacert")
            .arg(&self.ca)
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Out {
        run(&mut self.cmd(args), None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Out {
        run(&mut self.cmd(args), Some(stdin))
    }

    /// `notary list` parsed into name → (hex sha256, size, role).
    pub fn list(&self, gun: &str, extra: &[&str]) -> BTreeMap<String, (String, u64, String)> {
        let mut args = vec!["list", gun];
        args.extend_from_slice(extra);
        let out = self.run(&args).ok();
        parse_notary_list(&out)
    }

    /// Path of the private key file whose PEM header says `role: <role>` (and `gun: <gun>`).
    pub fn key_file(&self, role: &str, gun: Option<&str>) -> PathBuf {
        find_key_file(&self.trust_dir.join("private"), role, gun)
    }
}

pub fn parse_notary_list(out: &Out) -> BTreeMap<String, (String, u64, String)> {
    let mut m = BTreeMap::new();
    if out.stdout.contains("No targets present") {
        return m;
    }
    let mut lines = out.stdout.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("DIGEST") && header.contains("ROLE"),
        "unexpected `notary list` output: {out}"
    );
    for l in lines {
        if l.starts_with("----") {
            continue;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f.len(), 4, "unexpected `notary list` line {l:?}: {out}");
        let size = f[2]
            .parse()
            .unwrap_or_else(|_| panic!("size in {l:?}: {out}"));
        m.insert(f[0].to_owned(), (f[1].to_owned(), size, f[3].to_owned()));
    }
    m
}

pub fn find_key_file(dir: &Path, role: &str, gun: Option<&str>) -> PathBuf {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let headers: Vec<&str> = text
            .lines()
            .skip(1)
            .take_while(|l| l.contains(": "))
            .collect();
        if headers.contains(&format!("role: {role}").as_str())
            && gun.is_none_or(|g| headers.contains(&format!("gun: {g}").as_str()))
        {
            found.push(p);
        }
    }
    assert_eq!(
        found.len(),
        1,
        "expected one key file for role {role} gun {gun:?} in {}: {found:?}",
        dir.display()
    );
    found.pop().unwrap()
}

/// `docker` with its own DOCKER_CONFIG (the server's CA installed for the trust host), content
/// trust on, and the engine pointed at a socket that only exists while a [`FakeEngine`] runs.
pub struct Docker {
    pub config: PathBuf,
    pub work: PathBuf,
    pub engine_sock: PathBuf,
    /// Who `docker login` logged in as ([`Cred::None`]: nobody).
    pub login: Cred,
    _tmp: tempfile::TempDir,
}

impl Docker {
    pub fn new(srv: &Server) -> Docker {
        let tmp = tempfile::tempdir().expect("docker tempdir");
        let config = tmp.path().join("docker-config");
        let work = tmp.path().join("work");
        let tls = config.join("tls").join(srv.host());
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        std::fs::copy(srv.ca_path(), tls.join("ca.crt")).expect("install CA for docker");
        Docker {
            config,
            engine_sock: tmp.path().join("engine.sock"),
            work,
            login: Cred::None,
            _tmp: tmp,
        }
    }

    /// A docker CLI after a real `docker login` as `cred`. With no engine running the CLI logs
    /// in itself, against the registry's token service, and keeps the refresh token it gets in
    /// `config.json`; `docker trust` then uses that, as it does for users.
    pub fn logged_in(srv: &Server, cred: &Cred) -> Docker {
        let mut d = Docker::new(srv);
        let (user, password) = user_and_password(cred).expect("credentials to log in with");
        let out = d
            .run_stdin(
                &["login", "-u", user, "--password-stdin", &srv.host()],
                password,
            )
            .ok();
        assert!(out.stdout.contains("Login Succeeded"), "{out}");
        let cfg = std::fs::read_to_string(d.config.join("config.json")).unwrap();
        let basic = STANDARD.encode(format!("{user}:{password}"));
        assert!(
            !cfg.contains(password) && !cfg.contains(&basic),
            "docker kept the password, not a token: {cfg}"
        );
        d.login = cred.clone();
        d
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = isolated(DOCKER, &self.work);
        c.env("DOCKER_CONFIG", &self.config)
            .env("DOCKER_CONTENT_TRUST", "1")
            .env("DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE", ROOT_PW)
            .env("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE", REPOSITORY_PW)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.engine_sock.display()),
            )
            .env("DOCKER_CLI_HINTS", "false")
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Out {
        run(&mut self.cmd(args), None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Out {
        run(&mut self.cmd(args), Some(stdin))
    }

    /// `docker trust inspect` JSON for one repository.
    pub fn inspect(&self, repo: &str) -> Value {
        let out = self.run(&["trust", "inspect", repo]).ok();
        let v: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("inspect output is not JSON ({e}): {out}"));
        let arr = v
            .as_array()
            .unwrap_or_else(|| panic!("not an array: {out}"));
        assert_eq!(arr.len(), 1, "{out}");
        arr[0].clone()
    }

    pub fn private_dir(&self) -> PathBuf {
        self.config.join("trust").join("private")
    }
}

/// The stand-in docker engine on `docker.engine_sock`, answering pushes with `digest`/`size`.
pub struct FakeEngine {
    child: Child,
}

impl FakeEngine {
    pub fn start(docker: &Docker, digest: &str, size: usize) -> FakeEngine {
        let script = fake_engine_script();
        assert!(script.exists(), "{} is missing", script.display());
        let _ = std::fs::remove_file(&docker.engine_sock);
        let child = Command::new("python3")
            .arg(&script)
            .arg(&docker.engine_sock)
            .arg(digest)
            .arg(size.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fake-docker-engine.py");
        let mut e = FakeEngine { child };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !docker.engine_sock.exists() {
            if let Some(st) = e.child.try_wait().unwrap() {
                panic!("fake-docker-engine.py exited early: {st}");
            }
            assert!(
                Instant::now() < deadline,
                "fake engine socket did not appear"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        e
    }
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------------------------
// Trust API over HTTP

pub fn tuf_path(gun: &str, file: &str) -> String {
    format!("/v2/{gun}/_trust/tuf/{file}")
}

pub async fn tuf_get(srv: &Server, gun: &str, file: &str) -> Resp {
    srv.get(&tuf_path(gun, file)).await
}

/// GET that must succeed; returns the body.
pub async fn tuf_bytes(srv: &Server, gun: &str, file: &str) -> Vec<u8> {
    let r = tuf_get(srv, gun, file).await;
    r.expect(200);
    r.body
}

/// A multipart/form-data body as the Go notary client writes it: field `files`, filename = role.
pub fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "berthtrustboundary7f3a9c1e5d";
    let mut body = Vec::new();
    for (name, data) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub async fn publish(srv: &Server, gun: &str, parts: &[(&str, &[u8])]) -> Resp {
    let (ct, body) = multipart(parts);
    srv.send(
        Method::POST,
        &tuf_path(gun, ""),
        &[("content-type", &ct)],
        Some(body),
    )
    .await
}

/// The single error of a notary-style error body, after checking its shape.
pub fn trust_error(r: &Resp) -> Value {
    let codes = r.error_codes();
    assert_eq!(codes.len(), 1, "expected exactly one error: {r}");
    assert!(
        r.body.len() <= 1024,
        "error body over 1 KiB (the notary client reads only 1 KiB): {r}"
    );
    r.json()["errors"][0].clone()
}

/// Asserts 400 INVALID_UPDATE with a SerializableError detail named `name`.
pub fn expect_invalid_update(r: &Resp, name: &str) -> String {
    r.expect(400);
    let e = trust_error(r);
    assert_eq!(e["code"], "INVALID_UPDATE", "{r}");
    assert_eq!(e["message"], "Update sent by the client is invalid.", "{r}");
    assert_eq!(e["detail"]["Name"], name, "{r}");
    e["detail"]["Error"]["Msg"]
        .as_str()
        .unwrap_or_else(|| panic!("detail without Error.Msg: {r}"))
        .to_owned()
}

pub fn expect_trust_error(r: &Resp, status: u16, code: &str) -> Value {
    r.expect(status);
    let e = trust_error(r);
    assert_eq!(e["code"], code, "{r}");
    e
}

// ------------------------------------------------------------------------------------------------
// TUF metadata by hand

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn b64(data: &[u8]) -> String {
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

pub fn unb64(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for ch in s.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'=') {
        let v = B64
            .iter()
            .position(|c| *c == ch)
            .unwrap_or_else(|| panic!("bad base64 in {s:?}")) as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// docker/go canonical JSON: sorted keys, no whitespace, only `"` and `\` escaped.
pub fn canonical(v: &Value) -> Vec<u8> {
    fn string(s: &str, out: &mut Vec<u8>) {
        out.push(b'"');
        for b in s.bytes() {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    }
    fn go(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push(b'{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    string(k, out);
                    out.push(b':');
                    go(&m[k.as_str()], out);
                }
                out.push(b'}');
            }
            Value::Array(a) => {
                out.push(b'[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    go(x, out);
                }
                out.push(b']');
            }
            Value::String(s) => string(s, out),
            Value::Number(n) => {
                let i = n.as_i64().expect("canonical JSON holds integers only");
                out.extend_from_slice(i.to_string().as_bytes());
            }
            other => out.extend_from_slice(other.to_string().as_bytes()),
        }
    }
    let mut out = Vec::new();
    go(v, &mut out);
    out
}

/// TUF key ID: sha256 of the canonical public key object.
pub fn key_id(keytype: &str, public_b64: &str) -> String {
    let k = json!({"keytype": keytype, "keyval": {"private": null, "public": public_b64}});
    hex::encode(Sha256::digest(canonical(&k)))
}

fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut c = Command::new("openssl");
    c.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("run openssl");
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An ECDSA P-256 private key in a PEM file, used through openssl.
pub struct EcKey {
    pub pem: PathBuf,
}

impl EcKey {
    pub fn generate(dir: &Path, name: &str) -> EcKey {
        let pem = dir.join(format!("{name}.pem"));
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                pem.to_str().unwrap(),
            ],
            None,
        );
        EcKey { pem }
    }

    /// Decrypts a notary/docker key file (PEM headers `role:`/`gun:` removed first).
    pub fn from_notary_file(file: &Path, passphrase: &str, dir: &Path) -> EcKey {
        let text = std::fs::read_to_string(file).unwrap();
        let stripped: String = text
            .lines()
            .filter(|l| !l.contains(": ") && !l.trim().is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        let stem = file.file_stem().unwrap().to_string_lossy();
        let enc = dir.join(format!("{stem}.enc.pem"));
        let pem = dir.join(format!("{stem}.plain.pem"));
        std::fs::write(&enc, stripped).unwrap();
        openssl(
            &[
                "pkcs8",
                "-in",
                enc.to_str().unwrap(),
                "-passin",
                &format!("pass:{passphrase}"),
                "-out",
                pem.to_str().unwrap(),
            ],
            None,
        );
        EcKey { pem }
    }

    pub fn spki_der(&self) -> Vec<u8> {
        openssl(
            &[
                "pkey",
                "-in",
                self.pem.to_str().unwrap(),
                "-pubout",
                "-outform",
                "DER",
            ],
            None,
        )
    }

    /// The bare `ecdsa` TUF key: (key ID, public key object).
    pub fn tuf_key(&self) -> (String, Value) {
        let public = b64(&self.spki_der());
        (
            key_id("ecdsa", &public),
            json!({"keytype": "ecdsa", "keyval": {"private": null, "public": public}}),
        )
    }

    /// A self-signed certificate for this key (as notary makes for roots: CN = GUN).
    pub fn self_signed_cert(&self, cn: &str, days: u32) -> String {
        let out = openssl(
            &[
                "req",
                "-new",
                "-x509",
                "-key",
                self.pem.to_str().unwrap(),
                "-subj",
                &format!("/CN={}", cn.replace('/', "\\/")),
                "-days",
                &days.to_string(),
                "-sha256",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                "-addext",
                "keyUsage=critical,digitalSignature,keyEncipherment",
                "-addext",
                "extendedKeyUsage=codeSigning",
            ],
            None,
        );
        String::from_utf8(out).unwrap()
    }

    /// Raw r‖s ECDSA-SHA256 signature, as TUF wants it.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let der = openssl(
            &["dgst", "-sha256", "-sign", self.pem.to_str().unwrap()],
            Some(msg),
        );
        der_sig_to_raw(&der)
    }
}

/// The `ecdsa-x509` TUF key for a certificate PEM: (key ID, key object).
pub fn x509_tuf_key(cert_pem: &str) -> (String, Value) {
    let public = b64(cert_pem.as_bytes());
    (
        key_id("ecdsa-x509", &public),
        json!({"keytype": "ecdsa-x509", "keyval": {"private": null, "public": public}}),
    )
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

/// `{"signed":<canonical>,"signatures":[...]}` signed by each (key, key ID listed in the role).
pub fn envelope(signed: &Value, signers: &[(&EcKey, &str)]) -> Vec<u8> {
    let canon = canonical(signed);
    let sigs: Vec<Value> = signers
        .iter()
        .map(|(k, id)| json!({"keyid": id, "method": "ecdsa", "sig": b64(&k.sign(&canon))}))
        .collect();
    let mut out = b"{\"signed\":".to_vec();
    out.extend_from_slice(&canon);
    out.extend_from_slice(b",\"signatures\":");
    out.extend_from_slice(serde_json::to_string(&sigs).unwrap().as_bytes());
    out.push(b'}');
    out
}

/// The `signed` part of a metadata file.
pub fn signed_of(bytes: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(bytes).expect("metadata is JSON");
    v["signed"].clone()
}

/// Snapshot/timestamp `meta` entry for exact file bytes.
pub fn file_meta(bytes: &[u8]) -> Value {
    json!({
        "hashes": {"sha256": b64(&Sha256::digest(bytes)), "sha512": b64(&Sha512::digest(bytes))},
        "length": bytes.len(),
    })
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn sha256_b64(data: &[u8]) -> String {
    b64(&Sha256::digest(data))
}

/// Every path under `dir` with its bytes and mode, to prove nothing was touched.
pub fn dir_state(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt as _;
    fn walk(d: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, u32)>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd {
            let p = e.unwrap().path();
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            if p.is_dir() {
                out.insert(p.clone(), (Vec::new(), mode));
                walk(&p, out);
            } else {
                out.insert(p.clone(), (std::fs::read(&p).unwrap(), mode));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// Permission bits of a path.
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The hex part of a `sha256:` digest.
pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

/// Berth's own trust client for `gun`, signing as the bootstrap owner with keys in `keys_dir`
/// (root and repository keys created on first use, docker's passphrases).
pub fn owner_trust_client(
    srv: &Server,
    gun: &str,
    keys_dir: &Path,
) -> berth_trust_client::Repository {
    use berth_trust_client::{Credentials, KeyStore, Remote, Repository};
    let remote =
        Remote::new(srv.new_client(), &srv.base).with_credentials(Some(Credentials::Basic {
            username: "owner".into(),
            password: crate::harness::OWNER_PASSWORD.into(),
        }));
    let keys = KeyStore::new(keys_dir).with_passphrases(Some(ROOT_PW), Some(REPOSITORY_PW));
    Repository::new(remote, keys, gun)
}
