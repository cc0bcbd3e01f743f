//! Real S3 (Garage) for tests (feature `test-support`). Tests never skip for want of a server:
//! [`server`] uses the `BERTH_S3_*` variables when `BERTH_S3_ENDPOINT` is set (a running
//! server, e.g. from `../shared/tools/start-garage.sh`), else starts ONE Garage per test binary
//! with `../shared/tools/start-garage.sh` (beside the checkout) and panics, saying what to do,
//! if `garage` is not installed or does not start. Each [`fresh_store`] works under a key prefix
//! of its own, so tests run in parallel on one bucket without seeing each other. The Garage
//! started here stops (and its files go) about a second after the test binary exits; objects
//! written to a server named by the environment stay there under `t-*/` prefixes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::{S3BlobStore, S3Config};

/// The server's settings (without a prefix): from `BERTH_S3_*`, or a Garage started for this
/// test binary.
pub fn server() -> &'static S3Config {
    static CONFIG: OnceLock<S3Config> = OnceLock::new();
    CONFIG.get_or_init(|| match std::env::var("BERTH_S3_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => from_env(endpoint),
        _ => start_garage(),
    })
}

/// A store over the test bucket under a fresh prefix (see [`fresh_prefix`]).
pub fn fresh_store() -> S3BlobStore {
    store_at(&fresh_prefix())
}

/// A key prefix no other test uses: `t-<random>/`.
pub fn fresh_prefix() -> String {
    format!("t-{}/", uuid::Uuid::new_v4().simple())
}

/// A store over the test bucket under `prefix` (two stores at one prefix are two nodes).
pub fn store_at(prefix: &str) -> S3BlobStore {
    let cfg = S3Config {
        prefix: prefix.to_owned(),
        ..server().clone()
    };
    let http = S3BlobStore::default_http().unwrap_or_else(|e| panic!("S3 test client: {e}"));
    S3BlobStore::new(cfg, http).unwrap_or_else(|e| panic!("S3 test store: {e}"))
}

fn from_env(endpoint: String) -> S3Config {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("BERTH_S3_ENDPOINT is set, so the tests use that server, but {name} is not")
        })
    };
    S3Config {
        endpoint,
        bucket: std::env::var("BERTH_S3_BUCKET").unwrap_or_else(|_| "berth".into()),
        region: std::env::var("BERTH_S3_REGION").unwrap_or_else(|_| "us-east-1".into()),
        access_key: var("BERTH_S3_ACCESS_KEY_ID"),
        secret_key: var("BERTH_S3_SECRET_ACCESS_KEY"),
        path_style: std::env::var("BERTH_S3_PATH_STYLE").map_or(true, |v| v != "false"),
        prefix: String::new(),
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/start-garage.sh")
}

/// The `garage` binary: `$GARAGE`, on `PATH`, or in `~/.cargo/bin`.
pub fn garage_binary() -> Option<PathBuf> {
    if let Some(g) = std::env::var_os("GARAGE").filter(|g| !g.is_empty()) {
        let g = PathBuf::from(g);
        return g.is_file().then_some(g);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("garage"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let p = Path::new(&home).join(".cargo/bin/garage");
        p.is_file().then_some(p)
    })
}

fn start_garage() -> S3Config {
    let script = script();
    assert!(
        script.exists(),
        "no S3 server for the tests: BERTH_S3_ENDPOINT is unset and {} does not exist",
        script.display()
    );
    let Some(garage) = garage_binary() else {
        panic!(
            "the S3 tests need Garage and `garage` is not installed (not $GARAGE, not on PATH, \
             not in ~/.cargo/bin): run scripts/test-deps (it runs `cargo install garage@2.5.0 --locked`), \
             or set BERTH_S3_ENDPOINT and the other BERTH_S3_* variables to use a running server"
        );
    };
    let mut last = String::new();
    // A port chosen free may be taken before the server binds it (other test binaries start
    // servers too): a few tries.
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("finding a free port for Garage: {e}"));
        let work =
            std::env::temp_dir().join(format!("berth-s3-test-{}-{port}", std::process::id()));
        let out = Command::new("bash")
            .arg(&script)
            .arg(&work)
            .arg(port.to_string())
            .env("GARAGE", &garage)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            stop_when_done(&work);
            return read_env_file(&work.join("env"));
        }
        // A server that started but failed later must not linger.
        kill_from(&work);
        last = text;
    }
    panic!(
        "could not start Garage for the tests with {} (set BERTH_S3_ENDPOINT and the other \
         BERTH_S3_* variables to use a running server): {last}",
        script.display()
    );
}

/// The `export NAME=value ...` lines start-garage.sh writes.
fn read_env_file(path: &Path) -> S3Config {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let vars: std::collections::HashMap<&str, &str> = text
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect();
    let get = |name: &str| -> String {
        vars.get(name)
            .map(|v| (*v).to_owned())
            .unwrap_or_else(|| panic!("{} has no {name}", path.display()))
    };
    S3Config {
        endpoint: get("BERTH_S3_ENDPOINT"),
        bucket: get("BERTH_S3_BUCKET"),
        region: get("BERTH_S3_REGION"),
        access_key: get("BERTH_S3_ACCESS_KEY_ID"),
        secret_key: get("BERTH_S3_SECRET_ACCESS_KEY"),
        path_style: get("BERTH_S3_PATH_STYLE") != "false",
        prefix: String::new(),
    }
}

fn kill_from(work: &Path) {
    if let Ok(pid) = std::fs::read_to_string(work.join("garage.pid")) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
}

/// A watcher that stops Garage once this test process has exited.
fn stop_when_done(work: &Path) {
    let pid = std::process::id();
    let watcher = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill $(cat '{dir}/garage.pid') \
         2>/dev/null; sleep 1; rm -rf '{dir}'",
        dir = work.display()
    );
    let spawned = Command::new("setsid")
        .args(["bash", "-c", &watcher])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!(
            "note: the test Garage in {} stays running ({e}); stop it with kill $(cat {}/garage.pid)",
            work.display(),
            work.display()
        );
    }
}
