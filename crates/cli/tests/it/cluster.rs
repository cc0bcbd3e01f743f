//! The distributed store for the integration tests: one real PostgreSQL and one real Garage (an
//! S3 server that checks signatures) per test process, started on first use and shared
//! (`berth_storage_postgres::testing`, `berth_storage_s3::testing`: or the servers named by
//! `BERTH_POSTGRES_URL` / `BERTH_S3_*`); every store made here gets a database of its own
//! (CREATE DATABASE) and a key prefix of its own in the bucket, so tests run in parallel
//! without seeing each other.
//!
//! - [`test_backing`]: what `Server::start*` adds under `BERTH_TEST_STORE=distributed`
//!   (scripts/test runs the registry, trust and auth suites a second time that way).
//! - [`Cluster`]: N `berth serve` nodes on one store, authentication on, one TLS certificate
//!   and one vault passphrase for all of them, as an operator runs them.
//! - [`Balancer`]: nginx in front of a cluster, per-request round robin, TLS terminated and
//!   re-encrypted to the nodes; [`nginx_site`] is the configuration README's "Running a
//!   cluster" shows.
//!
//! A missing tool (PostgreSQL, Garage, nginx) fails the test that needs it with the way to get
//! it (scripts/test-deps); nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_storage_postgres::testing::{TestDatabase, fresh_database};
use berth_storage_s3::testing as s3;

use crate::harness::{OWNER_PASSWORD, Server};
use crate::trust_harness::{Out, isolated, run};

/// The vault passphrase every node of a test store shares (`BERTH_TRUST_KEY_PASSPHRASE`).
pub const CLUSTER_PASSPHRASE: &str = "cluster-passphrase-for-tests-0123";

fn shared_tool(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/tools")
        .join(name)
}

/// The store `Server::start*` runs on: `BERTH_TEST_STORE` is `embedded` (the default, none)
/// or `distributed` (a new database and prefix per server).
pub fn test_backing() -> Option<Backing> {
    match std::env::var("BERTH_TEST_STORE").as_deref() {
        Err(_) | Ok("") | Ok("embedded") => None,
        Ok("distributed") => Some(Backing::new()),
        Ok(other) => panic!("BERTH_TEST_STORE={other:?}: expected `embedded` or `distributed`"),
    }
}

/// Runs `f` to completion on a runtime of its own on another thread: for synchronous harness
/// code that runs inside a test's runtime (which cannot be blocked on from within).
pub fn block_on_thread<F>(f: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Identities, trust data and settings, as a server keeps them.
pub trait ServerMeta:
    berth_storage::IdentityStore + berth_storage::TrustStore + berth_storage::SettingsStore
{
}
impl<T> ServerMeta for T where
    T: berth_storage::IdentityStore + berth_storage::TrustStore + berth_storage::SettingsStore
{
}

/// The store `srv` keeps its identities, token keys and trust keys in, opened as the server
/// opens it, and its vault passphrase: SQLite and the passphrase file in its data dir
/// (embedded), or its PostgreSQL database and `BERTH_TRUST_KEY_PASSPHRASE` (distributed). For
/// tests that need what only the server holds (its signing keys) or state the API cannot set.
pub async fn server_meta(srv: &Server) -> (Box<dyn ServerMeta>, Vec<u8>) {
    if let Some(url) = srv.env_var("BERTH_POSTGRES_URL") {
        let pg = berth_storage_postgres::PgStore::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connecting to the server's database: {e}"));
        let pass = srv
            .env_var("BERTH_TRUST_KEY_PASSPHRASE")
            .expect("a distributed server has BERTH_TRUST_KEY_PASSPHRASE");
        return (Box::new(pg), pass.into_bytes());
    }
    let data = srv.data_dir();
    let meta = berth_storage_embedded::SqliteMetadataStore::open(data.join("metadata.db"))
        .expect("open the server's metadata database");
    let pass = std::fs::read(data.join("trust-key-passphrase")).expect("vault passphrase");
    (Box::new(meta), pass.trim_ascii().to_vec())
}

/// Kills `pid` once this test process has exited (also when it dies without unwinding), if
/// that pid is still the process whose command line mentions `dir`; then removes `dir` if asked.
fn stop_when_done(pid: &str, dir: &Path, remove: bool) {
    let me = std::process::id();
    let d = dir.display();
    let rm = if remove {
        format!("; sleep 1; rm -rf '{d}'")
    } else {
        String::new()
    };
    let watcher = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
         if tr '\\0' ' ' </proc/{pid}/cmdline 2>/dev/null | grep -qF '{d}'; then kill {pid}; fi{rm}"
    );
    let _ = Command::new("setsid")
        .args(["bash", "-c", &watcher])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

// ------------------------------------------------------------------------------------------------
// One store: a database and a prefix

/// An empty distributed store: a database of its own on the shared PostgreSQL and a key prefix
/// of its own in the shared bucket.
pub struct Backing {
    pub db: TestDatabase,
    pub prefix: String,
}

impl Backing {
    /// Usable from synchronous code inside a test's runtime (the harness starts servers there).
    pub fn new() -> Backing {
        let db = block_on_thread(fresh_database());
        Backing {
            db,
            prefix: s3::fresh_prefix(),
        }
    }

    /// The environment of a node on this store.
    pub fn env(&self) -> Vec<(String, String)> {
        store_env(&self.db.url, &self.prefix)
    }
}

/// The environment of a node on the database `postgres_url` and the key prefix `prefix` of the
/// shared bucket.
pub fn store_env(postgres_url: &str, prefix: &str) -> Vec<(String, String)> {
    let s3 = s3::server();
    [
        ("BERTH_STORE", "distributed".to_owned()),
        ("BERTH_POSTGRES_URL", postgres_url.to_owned()),
        ("BERTH_S3_ENDPOINT", s3.endpoint.clone()),
        ("BERTH_S3_BUCKET", s3.bucket.clone()),
        ("BERTH_S3_REGION", s3.region.clone()),
        ("BERTH_S3_ACCESS_KEY_ID", s3.access_key.clone()),
        ("BERTH_S3_SECRET_ACCESS_KEY", s3.secret_key.clone()),
        ("BERTH_S3_PATH_STYLE", s3.path_style.to_string()),
        ("BERTH_S3_PREFIX", prefix.to_owned()),
        ("BERTH_TRUST_KEY_PASSPHRASE", CLUSTER_PASSPHRASE.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

// ------------------------------------------------------------------------------------------------
// skopeo

/// skopeo isolated from the user's configuration, trusting only `ca`.
pub struct Skopeo {
    home: tempfile::TempDir,
    certs: tempfile::TempDir,
}

impl Skopeo {
    pub fn new(ca: &Path) -> Skopeo {
        let home = tempfile::tempdir().unwrap();
        for d in ["config", "data", "cache", "run", "registries.d", "tmp"] {
            std::fs::create_dir_all(home.path().join(d)).unwrap();
        }
        std::fs::write(
            home.path().join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        std::fs::write(home.path().join("registries.conf"), "").unwrap();
        let certs = tempfile::tempdir().unwrap();
        std::fs::copy(ca, certs.path().join("ca.crt")).unwrap();
        Skopeo { home, certs }
    }

    pub fn run(&self, args: &[&str]) -> Out {
        let h = self.home.path();
        let mut cmd = isolated("skopeo", h);
        cmd.env("XDG_CONFIG_HOME", h.join("config"))
            .env("XDG_DATA_HOME", h.join("data"))
            .env("XDG_CACHE_HOME", h.join("cache"))
            .env("XDG_RUNTIME_DIR", h.join("run"))
            .env("CONTAINERS_REGISTRIES_CONF", h.join("registries.conf"))
            .env("REGISTRY_AUTH_FILE", h.join("auth.json"))
            .arg("--policy")
            .arg(h.join("policy.json"))
            .arg("--registries.d")
            .arg(h.join("registries.d"))
            .arg("--tmpdir")
            .arg(h.join("tmp"))
            .args(args);
        run(&mut cmd, None)
    }

    /// `skopeo copy --preserve-digests` with credentials `creds` (`user:password`) on the
    /// registry side.
    pub fn copy(&self, src: &str, dest: &str, creds: &str) -> Out {
        let certs = self.certs.path().to_str().unwrap();
        let mut args = vec!["copy", "--preserve-digests"];
        if src.starts_with("docker://") {
            args.extend(["--src-cert-dir", certs, "--src-creds", creds]);
        }
        if dest.starts_with("docker://") {
            args.extend(["--dest-cert-dir", certs, "--dest-creds", creds]);
        }
        args.extend([src, dest]);
        self.run(&args)
    }
}

/// The owner's `user:password` for skopeo.
pub fn owner_creds() -> String {
    format!("owner:{OWNER_PASSWORD}")
}

// ------------------------------------------------------------------------------------------------
// Nodes

/// A CA and one server certificate (localhost, 127.0.0.1, ::1) that every node of a cluster and
/// its balancer present.
pub struct SharedTls {
    dir: tempfile::TempDir,
}

impl SharedTls {
    pub fn generate() -> SharedTls {
        let dir = tempfile::tempdir().expect("tls tempdir");
        let script = shared_tool("tls-setup.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed: {}{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        SharedTls { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

/// `berth serve` nodes sharing one store, one certificate and one passphrase.
pub struct Cluster {
    pub backing: Backing,
    pub tls: SharedTls,
    pub nodes: Vec<Server>,
}

impl Cluster {
    /// `n` nodes, started one after the other, each with authentication on (the bootstrap
    /// owner's password is the harness's `OWNER_PASSWORD`).
    pub fn start(n: usize) -> Cluster {
        let mut c = Cluster {
            backing: Backing::new(),
            tls: SharedTls::generate(),
            nodes: Vec::new(),
        };
        for _ in 0..n {
            c.add_node();
        }
        c
    }

    /// Starts one more node; its index.
    pub fn add_node(&mut self) -> usize {
        let args = vec![
            "--tls-cert".to_owned(),
            self.tls.cert().display().to_string(),
            "--tls-key".to_owned(),
            self.tls.key().display().to_string(),
        ];
        let node = Server::start_node(args, self.backing.env(), self.tls.ca());
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    pub fn node(&self, i: usize) -> &Server {
        &self.nodes[i]
    }
}

// ------------------------------------------------------------------------------------------------
// The load balancer

/// What [`nginx_site`] needs to know.
pub struct Site<'a> {
    /// `host:port` of every node.
    pub nodes: &'a [String],
    /// Where clients connect (`listen` argument).
    pub listen: &'a str,
    pub server_name: &'a str,
    /// The certificate clients see, and its key.
    pub cert: &'a str,
    pub key: &'a str,
    /// The CA the nodes' certificate is checked against, and the name it is checked for.
    pub nodes_ca: &'a str,
    pub nodes_name: &'a str,
}

/// The `http {}` part of an nginx configuration in front of Berth nodes: plain per-request
/// round robin (nginx's default; no stickiness of any kind), TLS terminated and re-encrypted to
/// the nodes (their certificate checked), keep-alive connections to them, request and response
/// bodies streamed (uploads of any size, no temp files), long timeouts for big blobs, and the
/// Host header passed on (Berth names token realms and token audiences after it).
pub fn nginx_site(s: &Site) -> String {
    let mut lines = vec!["upstream berth_nodes {".to_owned()];
    lines.extend(s.nodes.iter().map(|n| format!("    server {n};")));
    lines.extend(
        [
            "    keepalive 32;",
            "}",
            "",
            "server {",
            &format!("    listen {} ssl http2;", s.listen),
            &format!("    server_name {};", s.server_name),
            &format!("    ssl_certificate {};", s.cert),
            &format!("    ssl_certificate_key {};", s.key),
            "",
            "    client_max_body_size 0;",
            "    proxy_request_buffering off;",
            "    proxy_buffering off;",
            "    proxy_connect_timeout 10s;",
            "    proxy_send_timeout 900s;",
            "    proxy_read_timeout 900s;",
            "    client_body_timeout 900s;",
            "    send_timeout 900s;",
            "",
            "    location / {",
            "        proxy_pass https://berth_nodes;",
            "        proxy_http_version 1.1;",
            "        proxy_set_header Connection \"\";",
            "        proxy_set_header Host $http_host;",
            "        proxy_ssl_verify on;",
            &format!("        proxy_ssl_trusted_certificate {};", s.nodes_ca),
            &format!("        proxy_ssl_name {};", s.nodes_name),
            "        proxy_ssl_server_name on;",
            "        proxy_ssl_session_reuse on;",
            "    }",
            "}",
        ]
        .map(str::to_owned),
    );
    lines.join("\n") + "\n"
}

/// nginx (one process, in the foreground) balancing over a cluster's nodes.
pub struct Balancer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
}

const NGINX: &str = "/usr/sbin/nginx";

impl Balancer {
    pub fn start(cluster: &Cluster) -> Balancer {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: run scripts/test-deps (Debian package nginx)"
        );
        let nodes: Vec<String> = cluster.nodes.iter().map(|n| n.host()).collect();
        let mut last = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("nginx tempdir");
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            let site = nginx_site(&Site {
                nodes: &nodes,
                listen: &listen,
                server_name: "localhost",
                cert: &cluster.tls.cert().display().to_string(),
                key: &cluster.tls.key().display().to_string(),
                nodes_ca: &cluster.tls.ca().display().to_string(),
                nodes_name: "localhost",
            });
            let d = dir.path().display();
            // The test's frame around the site: one process in the foreground, everything in
            // the temp dir, and which node answered each request in the access log.
            let conf = format!(
                "master_process off;\n\
                 daemon off;\n\
                 pid {d}/nginx.pid;\n\
                 error_log {d}/error.log info;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n\
                 client_body_temp_path {d}/body;\n\
                 proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n\
                 uwsgi_temp_path {d}/uwsgi;\n\
                 scgi_temp_path {d}/scgi;\n\
                 log_format up '$request_method $uri $status $upstream_addr';\n\
                 access_log {d}/access.log up;\n\
                 {site}}}\n"
            );
            std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
            let err = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
            let child = Command::new(NGINX)
                .arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("running {NGINX}: {e}"));
            stop_when_done(&child.id().to_string(), dir.path(), false);
            let mut lb = Balancer {
                child: Some(child),
                dir,
                port,
            };
            match lb.wait_ready() {
                Ok(()) => return lb,
                Err(e) => last = e,
            }
        }
        panic!("nginx did not start: {last}");
    }

    /// Until the port answers TLS, or nginx has exited.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("nginx exited with {st}\n{}", self.logs()));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("nginx not listening after 20 s\n{}", self.logs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A harness handle through the balancer (requests, admin calls and CLI helpers).
    pub fn handle(&self, cluster: &Cluster) -> Server {
        Server::attach(self.port, cluster.tls.ca())
    }

    /// Upstream (`host:port`) that answered each request so far, in order.
    pub fn upstreams(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit(' ').next().map(str::to_owned))
            .collect()
    }

    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "--- nginx error.log ---\n{}\n--- nginx stderr ---\n{}\n--- nginx access.log ---\n{}",
            read("error.log"),
            read("stderr.log"),
            read("access.log")
        )
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
