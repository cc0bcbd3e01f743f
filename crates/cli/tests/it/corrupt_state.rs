//! Damaged state is an error, never a silent default: a corrupt `logins.json` is not read as
//! "no logins" (and then overwritten), a stored identity of unknown kind does not become
//! anonymous, and a scope map that does not parse does not become an empty one.

use reqwest::Method;

use crate::auth_support::*;
use crate::harness::*;

/// Runs the `berth` binary with its own HOME and config directory; (success, stdout+stderr).
fn berth(
    srv: &Server,
    home: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("BERTH_CONFIG_DIR", home)
        .env("BERTH_CA_FILE", srv.ca_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn corrupt_logins_file_is_an_error_and_is_left_alone() {
    let srv = Server::start_with_auth();
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("logins.json");
    let host = format!("127.0.0.1:{}", srv.port);
    let target = format!("{host}/team/app:nope");
    let dest = format!("oci:{}", home.path().join("out").display());
    let other = r#"{"https://other.example:5000":{"username":"me","refresh_token":"keep-me"}}"#;
    // Cut short (a crash mid-write elsewhere, a bad edit) and valid JSON of the wrong shape.
    for damaged in [&other[..other.len() - 8], "[1, 2]"] {
        std::fs::write(&path, damaged).unwrap();
        let (ok, out) = berth(
            &srv,
            home.path(),
            &["login", &host, "-u", "owner", "--password-stdin"],
            Some(OWNER_PASSWORD),
        );
        assert!(!ok, "login over a damaged logins.json must fail: {out}");
        assert!(
            out.contains("logins.json") && out.contains("fix or remove it"),
            "{out}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            damaged,
            "the damaged file must not be overwritten"
        );
        // Verbs that only read the logins say so too, instead of going on anonymously.
        let (ok, out) = berth(&srv, home.path(), &["pull", &target, &dest], None);
        assert!(!ok);
        assert!(out.contains("logins.json"), "{out}");
    }
    // A sound file: the login is added beside the other server's.
    std::fs::write(&path, other).unwrap();
    let (ok, out) = berth(
        &srv,
        home.path(),
        &["login", &host, "-u", "owner", "--password-stdin"],
        Some(OWNER_PASSWORD),
    );
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        v["https://other.example:5000"]["refresh_token"], "keep-me",
        "{v}"
    );
    assert!(
        v[format!("https://{host}")]["refresh_token"].is_string(),
        "{v}"
    );
}

/// Runs `sql` on the server's metadata database past its CHECK constraints, as damage or a
/// newer version would leave it (the server sees it after a restart, which empties its caches).
fn damage(srv: &Server, sql: &str) {
    let db = rusqlite::Connection::open(srv.data_dir().join("metadata.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.execute_batch(&format!("PRAGMA ignore_check_constraints = 1; {sql}"))
        .unwrap();
}

fn read_one(srv: &Server, sql: &str) -> String {
    let db = rusqlite::Connection::open(srv.data_dir().join("metadata.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn unknown_identity_kind_and_corrupt_scope_map_fail_loudly() {
    let mut srv = Server::start_with_auth();
    let user = user_with_roles(&srv, "reader", "reader-password-1", &["AcrPull"]).await;
    scope_map(&srv, "ro", "team/app", &["content/read"]).await;
    let token = Cred::basic("ci", &create_token(&srv, "ci", "ro", None).await);
    let path = "/v2/team/app/tags/list";
    // Both may read: the repository does not exist yet.
    for cred in [&user, &token] {
        call(&srv, Method::GET, path, cred, &[], None)
            .await
            .expect_error(404, "NAME_UNKNOWN");
    }
    damage(
        &srv,
        "UPDATE identities SET kind = 'robot' WHERE name = 'reader';
         UPDATE scope_maps SET rules = '[{\"repository\":' WHERE name = 'ro';",
    );
    srv.restart();
    for cred in [&user, &token] {
        let r = call(&srv, Method::GET, path, cred, &[], None).await;
        assert_eq!(r.status, 500, "damaged state must not decide access: {r}");
        let r = token_get(
            &srv,
            &srv.client,
            cred,
            &["repository:team/app:pull"],
            None,
            "",
        )
        .await;
        assert_eq!(r.status, 500, "{r}");
    }
    let logs = srv.logs();
    assert!(logs.contains(r#"unknown identity kind "robot""#), "{logs}");
    assert!(logs.contains("scope map ro"), "{logs}");
    // Nothing was rewritten: the damage is still there to be repaired.
    srv.stop();
    assert_eq!(
        read_one(&srv, "SELECT kind FROM identities WHERE name = 'reader'"),
        "robot"
    );
    assert_eq!(
        read_one(&srv, "SELECT rules FROM scope_maps WHERE name = 'ro'"),
        "[{\"repository\":"
    );
}
