//! Runs a real `berth serve` process per test and talks to it over HTTPS.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

/// Upper bound for start-up (contract: fail after 30 s).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Hang guard for shutdown; not an assertion about speed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Keep only the tail of the server's stdout so chatty logs can't grow without bound.
const LOG_TAIL: usize = 64 * 1024;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Password of the bootstrap `owner` in servers started with [`Server::start_with_auth`].
pub const OWNER_PASSWORD: &str = "owner-test-password-0123";

pub struct Server {
    child: Option<Child>,
    data: tempfile::TempDir,
    /// Working directory of the process and home of its stderr log.
    work: tempfile::TempDir,
    insecure: bool,
    /// Authentication on (the default of `berth serve`); the protocol suites run without it.
    auth: bool,
    /// Extra `berth serve` flags (limits, timeouts).
    args: Vec<String>,
    /// An open-file limit (soft and hard) to run the server under.
    nofile: Option<u64>,
    /// Extra environment variables of the server process (`BERTH_LOG_FORMAT`, …).
    env: Vec<(String, String)>,
    /// The distributed store made for this server (`BERTH_TEST_STORE=distributed`): its
    /// database goes when the server does, so a long run does not fill the disk.
    backing: Option<crate::cluster::Backing>,
    /// The CA clients trust when it is not the one the server generated in its data dir
    /// (cluster nodes share a certificate given with --tls-cert).
    ca: Option<PathBuf>,
    /// `--listen` (`127.0.0.1:0` unless a test needs a particular port).
    listen: String,
    stdout: Arc<Mutex<String>>,
    pub port: u16,
    pub base: String,
    pub client: reqwest::Client,
}

impl Server {
    /// A server with authentication switched off (`--auth-disabled`): the protocol suites test
    /// the protocol; the auth suite uses [`Server::start_with_auth`].
    pub fn start() -> Server {
        Self::launch(false, false)
    }

    pub fn start_insecure() -> Server {
        Self::launch(true, false)
    }

    /// A server as `berth serve` runs by default: authentication required, bootstrap user
    /// `owner` with password [`OWNER_PASSWORD`].
    pub fn start_with_auth() -> Server {
        Self::launch(false, true)
    }

    /// Like [`Server::start_with_auth`], with extra `berth serve` flags.
    pub fn start_with_auth_args(args: &[&str]) -> Server {
        Self::launch_with(
            false,
            true,
            args.iter().map(|s| s.to_string()).collect(),
            None,
        )
    }

    /// Like [`Server::start_with_auth`], with the data directory created inside `parent` (for
    /// a data directory on a particular file system).
    pub fn start_with_auth_in(parent: &std::path::Path) -> Server {
        Self::launch_with(false, true, Vec::new(), Some(parent))
    }

    fn launch(insecure: bool, auth: bool) -> Server {
        Self::launch_with(insecure, auth, Vec::new(), None)
    }

    fn launch_with(
        insecure: bool,
        auth: bool,
        args: Vec<String>,
        parent: Option<&std::path::Path>,
    ) -> Server {
        Self::launch_full(insecure, auth, args, parent, None)
    }

    /// Like [`Server::start_with_auth_args`], under an open-file limit of `nofile`.
    pub fn start_with_auth_nofile(nofile: u64, args: &[&str]) -> Server {
        Self::launch_full(
            false,
            true,
            args.iter().map(|s| s.to_string()).collect(),
            None,
            Some(nofile),
        )
    }

    fn launch_full(
        insecure: bool,
        auth: bool,
        args: Vec<String>,
        parent: Option<&std::path::Path>,
        nofile: Option<u64>,
    ) -> Server {
        // reqwest is built without a default crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let data = match parent {
            Some(p) => tempfile::tempdir_in(p),
            None => tempfile::tempdir(),
        }
        .expect("data tempdir");
        let work = tempfile::tempdir().expect("work tempdir");
        let backing = crate::cluster::test_backing();
        let mut srv = Server {
            child: None,
            data,
            work,
            insecure,
            auth,
            args,
            nofile,
            env: backing.as_ref().map(|b| b.env()).unwrap_or_default(),
            backing,
            ca: None,
            listen: "127.0.0.1:0".into(),
            stdout: Arc::new(Mutex::new(String::new())),
            port: 0,
            base: String::new(),
            client: reqwest::Client::new(),
        };
        srv.spawn();
        srv
    }

    /// Like [`Server::start_with_auth`], with extra environment variables for the server.
    pub fn start_with_auth_env(env: &[(&str, &str)]) -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let backing = crate::cluster::test_backing();
        let mut srv = Server {
            child: None,
            data: tempfile::tempdir().expect("data tempdir"),
            work: tempfile::tempdir().expect("work tempdir"),
            insecure: false,
            auth: true,
            args: Vec::new(),
            nofile: None,
            // The test's variables come last, so they win over the store's.
            env: backing
                .as_ref()
                .map(|b| b.env())
                .unwrap_or_default()
                .into_iter()
                .chain(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                .collect(),
            backing,
            ca: None,
            listen: "127.0.0.1:0".into(),
            stdout: Arc::new(Mutex::new(String::new())),
            port: 0,
            base: String::new(),
            client: reqwest::Client::new(),
        };
        srv.spawn();
        srv
    }

    /// A server with authentication on, on the data dir `data` (prepared by the caller), with
    /// extra flags and environment, listening on `listen` (e.g. the port of a stopped server).
    pub fn start_configured(
        data: tempfile::TempDir,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut srv = Server {
            child: None,
            data,
            work: tempfile::tempdir().expect("work tempdir"),
            insecure: false,
            auth: true,
            args: args.iter().map(|s| s.to_string()).collect(),
            nofile: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            backing: None,
            ca: None,
            listen: listen.into(),
            stdout: Arc::new(Mutex::new(String::new())),
            port: 0,
            base: String::new(),
            client: reqwest::Client::new(),
        };
        srv.spawn();
        srv
    }

    /// A node of a cluster: authentication on, a data dir of its own, exactly the flags and
    /// environment given (no `BERTH_TEST_STORE` store added), clients trusting `ca`.
    pub fn start_node(args: Vec<String>, env: Vec<(String, String)>, ca: PathBuf) -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut srv = Server {
            child: None,
            data: tempfile::tempdir().expect("data tempdir"),
            work: tempfile::tempdir().expect("work tempdir"),
            insecure: false,
            auth: true,
            args,
            nofile: None,
            env,
            backing: None,
            ca: Some(ca),
            listen: "127.0.0.1:0".into(),
            stdout: Arc::new(Mutex::new(String::new())),
            port: 0,
            base: String::new(),
            client: reqwest::Client::new(),
        };
        srv.spawn();
        srv
    }

    /// A handle on an HTTPS endpoint this harness did not start (a load balancer in front of
    /// nodes), so the same requests and client helpers run through it. It has no process.
    pub fn attach(port: u16, ca: PathBuf) -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut srv = Server {
            child: None,
            data: tempfile::tempdir().expect("data tempdir"),
            work: tempfile::tempdir().expect("work tempdir"),
            insecure: false,
            auth: true,
            args: Vec::new(),
            nofile: None,
            env: Vec::new(),
            backing: None,
            ca: Some(ca),
            listen: String::new(),
            stdout: Arc::new(Mutex::new(String::new())),
            port,
            base: format!("https://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        srv.client = srv.new_client();
        srv
    }

    /// A variable of the server's environment as the harness set it (`BERTH_POSTGRES_URL`, ...).
    pub fn env_var(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// The server's whole stderr log so far.
    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// Sends `signal` (e.g. "INT") to the server process.
    pub fn signal(&self, signal: &str) {
        let st = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{signal} failed");
    }

    /// Waits up to `timeout` for the server to exit; its status, or None if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn(&mut self) {
        let mut cmd = match self.nofile {
            // exec keeps the pid, so `pid()` is still the server's.
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_berth"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_berth")),
        };
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.data.path())
            .arg("--listen")
            .arg(&self.listen);
        if self.insecure {
            cmd.arg("--insecure-http");
        }
        cmd.args(&self.args);
        // The caller's BERTH_* variables must not change what the server does.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BERTH_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if self.auth {
            cmd.env("BERTH_BOOTSTRAP_PASSWORD", OWNER_PASSWORD);
        } else {
            cmd.arg("--auth-disabled");
        }
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("stderr log");
        cmd.current_dir(self.work.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().expect("spawn berth serve");
        let out = child.stdout.take().expect("piped stdout");
        let buf = self.stdout.clone();
        let (tx, rx) = mpsc::channel::<String>();
        // Keep draining stdout after the banner so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(pos) = line.find("listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line[pos + "listening on ".len()..].to_string());
                }
                let mut b = buf.lock().unwrap();
                b.push_str(&line);
                b.push('\n');
                if b.len() > LOG_TAIL {
                    let cut = b.len() - LOG_TAIL / 2;
                    let cut = (cut..b.len()).find(|i| b.is_char_boundary(*i)).unwrap();
                    b.drain(..cut);
                }
            }
        });
        self.child = Some(child);
        let rest = match rx.recv_timeout(START_TIMEOUT) {
            Ok(rest) => rest,
            Err(_) => {
                let status = self.kill();
                panic!(
                    "berth serve did not print `listening on ...` within {START_TIMEOUT:?} (exit: {status:?})\n{}",
                    self.logs()
                );
            }
        };
        let url = rest.split_whitespace().next().unwrap_or("");
        let scheme = if self.insecure { "http" } else { "https" };
        let prefix = format!("{scheme}://127.0.0.1:");
        let Some(port) = url.strip_prefix(&prefix) else {
            self.kill();
            panic!(
                "banner `{rest}` does not start with {prefix}\n{}",
                self.logs()
            );
        };
        let digits: String = port.chars().take_while(|c| c.is_ascii_digit()).collect();
        self.port = digits.parse().expect("port in banner");
        assert_ne!(self.port, 0, "banner shows port 0");
        self.base = format!("{scheme}://127.0.0.1:{}", self.port);
        self.client = self.new_client();
    }

    /// A client trusting only the server's CA, never proxied, never following redirects
    /// (so Location headers can be asserted as sent). It keeps no idle connections, so a
    /// stop/restart never has to drain the test's own keep-alive sockets.
    pub fn new_client(&self) -> reqwest::Client {
        self.client_builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("reqwest client")
    }

    /// Like `new_client` but with reqwest's default keep-alive pool.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            // Hang guard only: a stalled server fails the test instead of blocking forever.
            .read_timeout(Duration::from_secs(120));
        if !self.insecure {
            let pem = std::fs::read(self.ca_path()).unwrap_or_else(|e| {
                panic!("reading {}: {e}\n{}", self.ca_path().display(), self.logs())
            });
            let ca = reqwest::Certificate::from_pem(&pem).expect("ca.crt is PEM");
            b = b.tls_certs_only([ca]);
        }
        b
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data.path()
    }

    pub fn ca_path(&self) -> PathBuf {
        if let Some(ca) = &self.ca {
            return ca.clone();
        }
        self.data.path().join("tls").join("ca.crt")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// host:port as registry clients spell it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn stderr_path(&self) -> PathBuf {
        self.work.path().join("stderr.log")
    }

    /// What the server printed on stdout so far (its tail).
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn logs(&self) -> String {
        let mut err = String::new();
        if let Ok(mut f) = File::open(self.stderr_path()) {
            let _ = f.read_to_string(&mut err);
        }
        if err.len() > LOG_TAIL {
            let cut = err.len() - LOG_TAIL;
            let cut = (cut..err.len()).find(|i| err.is_char_boundary(*i)).unwrap();
            err.drain(..cut);
        }
        format!(
            "--- server stdout (tail) ---\n{}\n--- server stderr (tail) ---\n{}",
            self.stdout.lock().unwrap(),
            err
        )
    }

    fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// SIGTERM and wait for the process to exit; returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -TERM failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Graceful stop, then start again on the same data directory.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "server exited with {status} on SIGTERM\n{}",
            self.logs()
        );
        self.spawn();
    }

    /// Starts a server stopped with [`Server::stop`] again, on its data directory.
    pub fn restart_stopped(&mut self) {
        self.spawn();
    }

    /// Starts the server again after it died (`signal("KILL")` and [`Server::wait_exit`]), on
    /// its data directory and on the port it had: clients keep their URLs, and trust GUNs,
    /// which name host:port, stay the same. Panics if it does not start.
    pub fn restart_on_same_port(&mut self) {
        assert!(self.child.is_none(), "the server still runs");
        self.listen = format!("127.0.0.1:{}", self.port);
        self.spawn();
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            assert!(path.starts_with('/'), "relative path expected: {path}");
            format!("{}{}", self.base, path)
        }
    }

    /// Sends one request and collects the whole response. Checks what every response must carry.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let url = self.url(path);
        let mut rb = self.client.request(method.clone(), &url);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let resp = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e:?}\n{}", self.logs()));
        let status = resp.status().as_u16();
        let hdrs = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: reading body: {e:?}"))
            .to_vec();
        let r = Resp {
            method: method.to_string(),
            url,
            status,
            headers: hdrs,
            body,
        };
        assert_eq!(
            r.header("docker-distribution-api-version").as_deref(),
            Some("registry/2.0"),
            "missing Docker-Distribution-API-Version on {r}"
        );
        if method == Method::HEAD {
            assert!(r.body.is_empty(), "HEAD returned a body: {r}");
        }
        r
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, &[], None).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(Method::GET, path, headers, None).await
    }

    pub async fn head(&self, path: &str) -> Resp {
        self.send(Method::HEAD, path, &[], None).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, &[], None).await
    }

    pub async fn post(&self, path: &str, body: Vec<u8>) -> Resp {
        let len = body.len().to_string();
        self.send(
            Method::POST,
            path,
            &[
                ("content-type", "application/octet-stream"),
                ("content-length", &len),
            ],
            Some(body),
        )
        .await
    }

    pub async fn put_blob(&self, path: &str, body: Vec<u8>) -> Resp {
        let len = body.len().to_string();
        self.send(
            Method::PUT,
            path,
            &[
                ("content-type", "application/octet-stream"),
                ("content-length", &len),
            ],
            Some(body),
        )
        .await
    }

    /// PATCH one chunk with Content-Range `start-end` (inclusive).
    pub async fn patch_chunk(&self, loc: &str, start: usize, chunk: &[u8]) -> Resp {
        let range = format!("{}-{}", start, start + chunk.len() - 1);
        let len = chunk.len().to_string();
        self.send(
            Method::PATCH,
            loc,
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", &range),
                ("content-length", &len),
            ],
            Some(chunk.to_vec()),
        )
        .await
    }

    /// PATCH without Content-Range (docker's streamed upload).
    pub async fn patch_stream(&self, loc: &str, chunk: &[u8]) -> Resp {
        self.send(
            Method::PATCH,
            loc,
            &[("content-type", "application/octet-stream")],
            Some(chunk.to_vec()),
        )
        .await
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Resp {
        self.send(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            Some(body.to_vec()),
        )
        .await
    }

    /// POST to open an upload session; returns its Location.
    pub async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .post(&format!("/v2/{repo}/blobs/uploads/"), Vec::new())
            .await;
        r.expect(202);
        r.must_header("location")
    }

    /// Pushes a blob by POST + PUT (the flow every client supports); returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let loc = self.start_upload(repo).await;
        self.put_blob(
            &with_query(&loc, &format!("digest={digest}")),
            data.to_vec(),
        )
        .await
        .expect(201);
        digest
    }

    /// Pushes a manifest and asserts it was accepted; returns its digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let r = self.put_manifest(repo, reference, media_type, body).await;
        r.expect(201);
        let d = sha256(body);
        assert_eq!(
            r.header("docker-content-digest").as_deref(),
            Some(d.as_str()),
            "{r}"
        );
        d
    }

    /// Pushes config + layers + manifest for `arch`; tags it when `tag` is given.
    pub async fn push_image(
        &self,
        repo: &str,
        tag: Option<&str>,
        arch: &str,
        rng: &mut Rng,
    ) -> Image {
        let img = Image::build(arch, rng, 2, 1000);
        self.push_image_blobs(repo, &img).await;
        let r = self
            .put_manifest(
                repo,
                tag.unwrap_or(&img.digest),
                OCI_MANIFEST,
                &img.manifest,
            )
            .await;
        r.expect(201);
        img
    }

    pub async fn push_image_blobs(&self, repo: &str, img: &Image) {
        self.push_blob(repo, &img.config).await;
        for l in &img.layers {
            self.push_blob(repo, l).await;
        }
    }

    /// Raw HTTP/1.1 over plain TCP (insecure mode only), for paths a URL parser would normalise.
    pub async fn raw_http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        assert!(self.insecure, "raw_http needs --insecure-http");
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad raw response: {text}"));
        assert!(
            text.to_ascii_lowercase()
                .contains("docker-distribution-api-version: registry/2.0"),
            "missing Docker-Distribution-API-Version: {text}"
        );
        (status, text)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if let Some(b) = self.backing.take() {
            crate::cluster::block_on_thread(b.db.drop_database());
        }
    }
}

pub struct Resp {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(2000).collect();
        write!(
            f,
            "{} {} -> {}\nheaders: {:?}\nbody: {}",
            self.method, self.url, self.status, self.headers, body
        )
    }
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_string())
    }

    pub fn must_header(&self, name: &str) -> String {
        self.header(name)
            .unwrap_or_else(|| panic!("missing header {name}: {self}"))
    }

    pub fn headers_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("ascii header").to_string())
            .collect()
    }

    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected status: {self}");
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self}"))
    }

    pub fn content_type(&self) -> Option<String> {
        self.header("content-type")
    }

    /// Asserts the status and an OCI error body containing `code` (HEAD: no body).
    pub fn expect_error(&self, status: u16, code: &str) {
        self.expect(status);
        if self.method == "HEAD" {
            return;
        }
        let codes = self.error_codes();
        assert!(
            codes.iter().any(|c| c == code),
            "expected error code {code}, got {codes:?}: {self}"
        );
    }

    /// Validates the error body shape and returns its codes.
    pub fn error_codes(&self) -> Vec<String> {
        let ct = self.content_type().unwrap_or_default();
        assert!(
            ct.starts_with("application/json"),
            "error Content-Type is not application/json: {self}"
        );
        let v = self.json();
        let errs = v["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors array: {self}"));
        assert!(!errs.is_empty(), "empty errors array: {self}");
        errs.iter()
            .map(|e| {
                let code = e["code"]
                    .as_str()
                    .unwrap_or_else(|| panic!("error without code: {self}"));
                assert!(
                    !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                    "bad error code {code:?}: {self}"
                );
                assert!(e["message"].is_string(), "error without message: {self}");
                code.to_string()
            })
            .collect()
    }
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(data)))
}

/// Appends a query parameter to an upload Location, keeping any it already carries.
pub fn with_query(loc: &str, q: &str) -> String {
    if loc.contains('?') {
        format!("{loc}&{q}")
    } else {
        format!("{loc}?{q}")
    }
}

/// splitmix64: cheap, decent-quality test data; seeded per instance so runs differ.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        static N: AtomicU64 = AtomicU64::new(0);
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(t ^ N
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rem = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rem.copy_from_slice(&last[..rem.len()]);
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }

    /// Lowercase hex string, handy for unique names and labels.
    pub fn hex(&mut self, n: usize) -> String {
        let mut s = hex::encode(self.bytes(n.div_ceil(2)));
        s.truncate(n);
        s
    }
}

/// A descriptor for `data` as JSON.
pub fn desc(media_type: &str, data: &[u8]) -> Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": sha256(data),
        "size": data.len(),
    })
}

/// An image: config, layers and an OCI manifest referencing them.
pub struct Image {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub digest: String,
}

impl Image {
    pub fn build(arch: &str, rng: &mut Rng, layers: usize, layer_size: usize) -> Image {
        let layers: Vec<Vec<u8>> = (0..layers).map(|_| rng.bytes(layer_size)).collect();
        let config = image_config(arch, &layers, rng);
        let manifest = oci_manifest(&config, &layers, |_| {});
        let digest = sha256(&manifest);
        Image {
            config,
            layers,
            manifest,
            digest,
        }
    }
}

/// An OCI image config; `diff_ids` are computed as if layers were uncompressed (content is opaque
/// to the registry anyway). The random label keeps every config unique.
pub fn image_config(arch: &str, layers: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Labels": {"nonce": rng.hex(16)}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// Serialises an OCI image manifest; `extra` may add fields (subject, artifactType, ...).
pub fn oci_manifest(
    config: &[u8],
    layers: &[Vec<u8>],
    extra: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Vec<u8> {
    let mut m = serde_json::Map::new();
    m.insert("schemaVersion".into(), 2.into());
    m.insert("mediaType".into(), OCI_MANIFEST.into());
    m.insert("config".into(), desc(OCI_CONFIG, config));
    m.insert(
        "layers".into(),
        Value::Array(layers.iter().map(|l| desc(OCI_LAYER, l)).collect()),
    );
    extra(&mut m);
    serde_json::to_vec(&Value::Object(m)).unwrap()
}

/// An index/list entry for a platform manifest.
pub fn platform_desc(media_type: &str, manifest: &[u8], arch: &str) -> Value {
    let mut d = desc(media_type, manifest);
    d["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
    d
}

/// An index (or Docker list, by media type) over `(manifest media type, bytes, arch)` entries.
pub fn index_of(media_type: &str, entries: &[(&str, &[u8], &str)]) -> Vec<u8> {
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(mt, m, arch)| platform_desc(mt, m, arch))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    }))
    .unwrap()
}

/// Reads a `/proc/<pid>/status` field in kB (e.g. VmHWM).
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
