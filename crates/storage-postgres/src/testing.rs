//! Real PostgreSQL for tests (feature `test-support`). Tests never skip for want of a server:
//! [`fresh_database`] uses `BERTH_POSTGRES_URL` when it is set, else starts one throwaway
//! cluster per test binary with `../shared/tools/start-postgres.sh` (beside the checkout; needs
//! root, as on CI machines and this project's dev machines) and panics if that fails. Each call
//! creates its own database with a random name, so tests run in parallel without seeing each
//! other. The cluster started here stops (and its files go) about a second after the test
//! binary exits; on a server named by `BERTH_POSTGRES_URL`, databases a test did not drop
//! ([`TestDatabase::drop_database`]) stay behind, named `berth_t_*`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A database of its own for one test.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    /// Connection URL of the new database.
    pub url: String,
    /// Its name (`berth_t_<random>`).
    pub name: String,
}

/// The server: `BERTH_POSTGRES_URL`, or one started for this test binary.
pub fn server_url() -> &'static str {
    &server().0
}

/// The server's URL, and the work dir of the one started here (for its log).
fn server() -> &'static (String, Option<PathBuf>) {
    static SERVER: OnceLock<(String, Option<PathBuf>)> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("BERTH_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => (url, None),
        _ => {
            let (url, work) = start_server();
            (url, Some(work))
        }
    })
}

/// Connects to the admin database. A server that is busy (all connection slots taken) or
/// restarting (after a crash, e.g. a full disk) refuses for a while: retried for up to a
/// minute, then the panic carries the server's own words and the end of its log.
async fn connect_admin() -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let admin = server_url();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match tokio_postgres::connect(admin, tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                let task = tokio::spawn(async move {
                    let _ = conn.await;
                });
                return (client, task);
            }
            Err(e) => {
                // 53300 too_many_connections, 57P03 cannot_connect_now (starting, recovering).
                let transient = e.code().is_some_and(|c| {
                    *c == tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS
                        || *c == tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW
                });
                if transient && std::time::Instant::now() < deadline {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    continue;
                }
                panic!(
                    "connecting to the test PostgreSQL at {admin}: {e:?}\n{}",
                    server_log_tail()
                );
            }
        }
    }
}

/// The last lines of the log of the server started here (nothing for `BERTH_POSTGRES_URL`).
fn server_log_tail() -> String {
    let Some(work) = &server().1 else {
        return String::new();
    };
    let dir = std::fs::read_to_string(work.join("pg-dir")).unwrap_or_default();
    let log = PathBuf::from(dir.trim()).join("log");
    match std::fs::read_to_string(&log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines.get(lines.len().saturating_sub(30)..).unwrap_or(&[]);
            format!("end of {}:\n{}", log.display(), tail.join("\n"))
        }
        Err(e) => format!("(no server log at {}: {e})", log.display()),
    }
}

/// Creates an empty database on the test server and returns its URL.
pub async fn fresh_database() -> TestDatabase {
    let admin = server_url();
    let name = format!("berth_t_{}", uuid::Uuid::new_v4().simple());
    let (client, task) = connect_admin().await;
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e:?}\n{}", server_log_tail()));
    drop(client);
    let _ = task.await;
    TestDatabase {
        url: with_dbname(admin, &name),
        name,
    }
}

impl TestDatabase {
    /// Drops the database (closing any connection still open to it).
    pub async fn drop_database(self) {
        let admin = server_url();
        let Ok((client, conn)) = tokio_postgres::connect(admin, tokio_postgres::NoTls).await else {
            return;
        };
        let task = tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
        drop(client);
        let _ = task.await;
    }
}

/// `url` with its database replaced by `name` (URL form or libpq `key=value` form).
pub fn with_dbname(url: &str, name: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // key=value form: a later key overrides an earlier one.
        return format!("{url} dbname={name}");
    };
    let (head, query) = match url.find('?') {
        Some(q) => url.split_at(q),
        None => (url, ""),
    };
    let authority_start = scheme_end.saturating_add(3);
    let authority_end = head
        .get(authority_start..)
        .and_then(|rest| rest.find('/'))
        .map_or(head.len(), |i| authority_start.saturating_add(i));
    let base = head.get(..authority_end).unwrap_or(head);
    format!("{base}/{name}{query}")
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/start-postgres.sh")
}

fn start_server() -> (String, PathBuf) {
    let script = script();
    assert!(
        script.exists(),
        "no PostgreSQL for the tests: BERTH_POSTGRES_URL is unset and {} does not exist",
        script.display()
    );
    let mut last = String::new();
    // A port chosen free may be taken before the server binds it (other test binaries start
    // servers too): a few tries.
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("finding a free port for PostgreSQL: {e}"));
        let work =
            std::env::temp_dir().join(format!("berth-pg-test-{}-{port}", std::process::id()));
        let out = Command::new("bash")
            .arg(&script)
            .arg(&work)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            stop_when_done(&work);
            return (format!("postgres://postgres@127.0.0.1:{port}/berth"), work);
        }
        last = text;
    }
    panic!(
        "could not start PostgreSQL for the tests with {} (set BERTH_POSTGRES_URL to use a \
         running server): {last}",
        script.display()
    );
}

/// A watcher that stops the cluster once this test process has exited.
fn stop_when_done(work: &std::path::Path) {
    let pid = std::process::id();
    let stop = work.join("stop");
    let watcher = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; bash '{}' >/dev/null 2>&1; rm -rf '{}'",
        stop.display(),
        work.display()
    );
    let spawned = Command::new("setsid")
        .args(["bash", "-c", &watcher])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!(
            "note: the test PostgreSQL in {} stays running ({e}); stop it with {}",
            work.display(),
            stop.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn replaces_the_database_in_every_url_form() {
        assert_eq!(
            with_dbname("postgres://u@h:5/berth", "x"),
            "postgres://u@h:5/x"
        );
        assert_eq!(with_dbname("postgres://u@h:5", "x"), "postgres://u@h:5/x");
        assert_eq!(
            with_dbname("postgresql://u:p@h/db?sslmode=disable", "x"),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_dbname("host=h user=u dbname=berth", "x"),
            "host=h user=u dbname=berth dbname=x"
        );
    }
}
