//! Owner access that can be recovered: the one-time owner password is never spent on a start
//! that fails to listen, a bootstrap password that is not used says so, users change passwords
//! (`berth user password`), a lost owner password is reset on the stopped server's data dir
//! (`berth admin reset-owner`), and chosen passwords have a minimum length.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_harness::{Out, isolated, run};

/// A `berth serve` started here with exactly the environment a test gives it (the harness
/// always sets a bootstrap password).
struct Raw {
    child: Child,
    base: String,
    stderr: PathBuf,
    ca: PathBuf,
    _work: tempfile::TempDir,
}

/// How a start ended: serving, or exited with its status and stderr.
enum Started {
    Serving(Raw),
    Exited(ExitStatus, String),
}

fn start_raw(data: &Path, listen: &str, env: &[(&str, &str)]) -> Started {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let work = tempfile::tempdir().unwrap();
    let stderr = work.path().join("stderr.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(["serve", "--listen", listen, "--data-dir"])
        .arg(data)
        .current_dir(work.path());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BERTH_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("spawn berth serve");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening on ").nth(1) {
                let _ = tx.send(rest.trim().to_owned());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(base) => Started::Serving(Raw {
            child,
            base,
            stderr,
            ca: data.join("tls/ca.crt"),
            _work: work,
        }),
        Err(_) => {
            // Stdout closed without a banner: the process is exiting (or hung: then kill it).
            let status = match wait_for_exit(&mut child, Duration::from_secs(30)) {
                Some(s) => s,
                None => {
                    let _ = child.kill();
                    panic!(
                        "berth serve neither served nor exited: {}",
                        std::fs::read_to_string(&stderr).unwrap_or_default()
                    );
                }
            };
            Started::Exited(status, std::fs::read_to_string(&stderr).unwrap())
        }
    }
}

fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn serving(s: Started) -> Raw {
    match s {
        Started::Serving(r) => r,
        Started::Exited(status, err) => panic!("berth serve exited with {status}:\n{err}"),
    }
}

impl Raw {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }

    /// The status of `GET /api/v1/users` as `user`.
    fn admin_status(&self, user: &str, password: &str) -> u16 {
        let ca = std::fs::read(&self.ca).unwrap();
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
            .build()
            .unwrap();
        client
            .get(format!("{}/api/v1/users", self.base))
            .basic_auth(user, Some(password))
            .send()
            .unwrap()
            .status()
            .as_u16()
    }

    fn stop(mut self) -> String {
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
        let status = wait_for_exit(&mut self.child, Duration::from_secs(60)).unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!("berth serve did not stop on SIGTERM")
        });
        assert!(status.success(), "{status}: {}", self.stderr());
        self.stderr()
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SHOWN_ONCE: &str = "shown only this once";

/// The generated owner password the first start printed.
fn printed_password(stderr: &str) -> String {
    let mut lines = stderr.lines();
    lines
        .find(|l| l.contains(SHOWN_ONCE))
        .and_then(|_| lines.next())
        .map(|l| l.trim().to_owned())
        .unwrap_or_else(|| panic!("no owner password printed:\n{stderr}"))
}

#[test]
fn a_start_on_a_busy_port_spends_nothing_and_the_next_start_prints_the_owner_password() {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let Started::Exited(status, err) = start_raw(&data, &addr, &[]) else {
        panic!("berth serve started on a port that is taken");
    };
    assert!(!status.success());
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("in use"),
        "{err}"
    );
    assert!(err.contains("--listen"), "the way out is named: {err}");
    assert!(!err.contains(SHOWN_ONCE), "{err}");
    // Nothing was created: no owner whose password nobody saw.
    assert!(
        !data.exists(),
        "the failed start created {}",
        data.display()
    );
    drop(taken);

    let srv = serving(start_raw(&data, "127.0.0.1:0", &[]));
    let password = printed_password(&srv.stderr());
    assert_eq!(srv.admin_status("owner", &password), 200);
    srv.stop();
    // Printed once only.
    let srv = serving(start_raw(&data, "127.0.0.1:0", &[]));
    assert!(!srv.stderr().contains(SHOWN_ONCE), "{}", srv.stderr());
    assert_eq!(srv.admin_status("owner", &password), 200);
}

#[test]
fn a_bootstrap_password_for_an_existing_owner_is_ignored_out_loud() {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let first = "first-owner-password";
    let srv = serving(start_raw(
        &data,
        "127.0.0.1:0",
        &[("BERTH_BOOTSTRAP_PASSWORD", first)],
    ));
    let err = srv.stop();
    assert!(!err.contains("is ignored"), "{err}");

    let second = "second-owner-password";
    let srv = serving(start_raw(
        &data,
        "127.0.0.1:0",
        &[("BERTH_BOOTSTRAP_PASSWORD", second)],
    ));
    let err = srv.stderr();
    let warning = err
        .lines()
        .find(|l| l.contains("BERTH_BOOTSTRAP_PASSWORD is ignored"))
        .unwrap_or_else(|| panic!("no warning:\n{err}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("berth user password owner") && warning.contains("reset-owner"),
        "{warning}"
    );
    assert!(!err.contains(second) && !err.contains(first), "{err}");
    assert_eq!(srv.admin_status("owner", first), 200);
    assert_eq!(srv.admin_status("owner", second), 401);
}

#[test]
fn a_too_short_bootstrap_password_stops_the_start() {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let short = "owner-pw-11";
    let Started::Exited(status, err) =
        start_raw(&data, "127.0.0.1:0", &[("BERTH_BOOTSTRAP_PASSWORD", short)])
    else {
        panic!("the server started with an 11-character owner password");
    };
    assert!(!status.success());
    assert!(
        err.contains("BERTH_BOOTSTRAP_PASSWORD") && err.contains("at least 12 characters"),
        "{err}"
    );
    assert!(!err.contains(short), "{err}");
    // A good one afterwards works on the same data dir.
    let good = "owner-password-12";
    let srv = serving(start_raw(
        &data,
        "127.0.0.1:0",
        &[("BERTH_BOOTSTRAP_PASSWORD", good)],
    ));
    assert_eq!(srv.admin_status("owner", good), 200);
}

/// `berth` with its own home and login store under `home`.
fn berth(home: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut c = isolated(env!("CARGO_BIN_EXE_berth"), home);
    c.env("BERTH_CONFIG_DIR", home.join("berth-config"))
        .args(args);
    run(&mut c, stdin)
}

fn stored_refresh(home: &Path, srv: &Server) -> String {
    let logins: Value = serde_json::from_str(
        &std::fs::read_to_string(home.join("berth-config/logins.json")).unwrap(),
    )
    .unwrap();
    logins[format!("https://{}", srv.host())]["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no stored login: {logins}"))
        .to_owned()
}

async fn v2_status(srv: &Server, cred: &Cred) -> u16 {
    call(srv, Method::GET, "/v2/", cred, &[], None).await.status
}

async fn refresh_status(srv: &Server, refresh: &str) -> u16 {
    token_post(
        srv,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("service", &srv.host()),
            ("client_id", "test"),
        ],
    )
    .await
    .status
}

#[tokio::test]
async fn user_password_owner_sets_any_user_changes_its_own_and_old_sessions_end() {
    let srv = Server::start_with_auth();
    let owner_home = tempfile::tempdir().unwrap();
    let alice_home = tempfile::tempdir().unwrap();
    let (oh, ah) = (owner_home.path(), alice_home.path());
    let ca = srv.ca_path();
    let ca = ca.to_str().unwrap().to_owned();
    let host = srv.host();
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|s| s.to_string())
            .chain([
                "--server".into(),
                host.clone(),
                "--ca-file".into(),
                ca.clone(),
            ])
            .collect()
    };
    let cli = |home: &Path, args: &[&str], stdin: Option<&str>| -> Out {
        let a = with(args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        berth(home, &a, stdin)
    };
    let login = |home: &Path, user: &str, pw: &str| {
        let out = berth(
            home,
            &[
                "login",
                &host,
                "-u",
                user,
                "--password-stdin",
                "--ca-file",
                &ca,
            ],
            Some(pw),
        )
        .ok();
        assert!(out.stdout.contains("Login Succeeded"), "{out}");
    };
    login(oh, "owner", OWNER_PASSWORD);

    // The minimum length holds for new users.
    let out = cli(
        oh,
        &["user", "create", "bob", "--new-password-stdin"],
        Some("short-pw-10"),
    )
    .fails();
    assert!(out.stderr.contains("at least 12 characters"), "{out}");
    assert!(!out.all().contains("short-pw-10"), "{out}");
    let (p1, p2) = ("alice-password-1", "alice-password-2");
    cli(
        oh,
        &["user", "create", "alice", "--new-password-stdin"],
        Some(p1),
    )
    .ok();
    cli(
        oh,
        &["user", "create", "bob", "--new-password-stdin"],
        Some("bob-password-1"),
    )
    .ok();
    assign(&srv, "AcrPull", "alice", None).await;
    login(ah, "alice", p1);
    // Sessions alice holds before the change.
    let r = token_post(
        &srv,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", p1),
            ("access_type", "offline"),
            ("service", &srv.host()),
            ("client_id", "test"),
        ],
    )
    .await;
    r.expect(200);
    let old_refresh = r.json()["refresh_token"].as_str().unwrap().to_owned();
    let old_access = bearer(&srv, &Cred::basic("alice", p1), &[]).await;
    assert_eq!(
        v2_status(&srv, &Cred::Bearer(old_access.clone())).await,
        200
    );
    assert_eq!(v2_status(&srv, &Cred::basic("alice", p1)).await, 200);

    // A user changes its own password only with the current one.
    let out = cli(
        ah,
        &["user", "password", "alice", "--new-password-stdin"],
        Some(p2),
    )
    .fails();
    assert!(out.stderr.contains("--old-password-stdin"), "{out}");
    let both = [
        "user",
        "password",
        "alice",
        "--old-password-stdin",
        "--new-password-stdin",
    ];
    let wrong = "not-alices-password";
    let out = cli(ah, &both, Some(&format!("{wrong}\n{p2}\n"))).fails();
    assert!(out.stderr.contains("not the current password"), "{out}");
    let out = cli(ah, &both, Some(&format!("{p1}\n{p2}\n"))).ok();
    assert!(out.stderr.contains("renewed"), "{out}");
    assert!(!out.all().contains(p2), "{out}");
    // The old password, refresh token and access token are dead; the new password works.
    assert_eq!(v2_status(&srv, &Cred::basic("alice", p1)).await, 401);
    assert_eq!(v2_status(&srv, &Cred::basic("alice", p2)).await, 200);
    assert_ne!(refresh_status(&srv, &old_refresh).await, 200);
    assert_eq!(v2_status(&srv, &Cred::Bearer(old_access)).await, 401);
    // alice's stored login was renewed: it authenticates, and alice may not touch bob.
    assert_eq!(refresh_status(&srv, &stored_refresh(ah, &srv)).await, 200);
    let out = cli(
        ah,
        &["user", "password", "bob", "--new-password-stdin"],
        Some("bob-password-2"),
    )
    .fails();
    assert!(
        out.stderr.contains("may change only its own password"),
        "{out}"
    );
    assert_eq!(
        v2_status(&srv, &Cred::basic("bob", "bob-password-1")).await,
        200
    );

    // An Owner sets any user's password, without the old one; none given: generated, shown once.
    let out = cli(oh, &["user", "password", "alice"], None).ok();
    let p3 = serde_json::from_str::<Value>(&out.stdout).unwrap()["password"]
        .as_str()
        .unwrap_or_else(|| panic!("no generated password: {out}"))
        .to_owned();
    assert_eq!(v2_status(&srv, &Cred::basic("alice", p2)).await, 401);
    assert_eq!(v2_status(&srv, &Cred::basic("alice", &p3)).await, 200);
    // ...which ends alice's stored login too.
    assert_ne!(refresh_status(&srv, &stored_refresh(ah, &srv)).await, 200);
    let out = cli(
        oh,
        &["user", "password", "alice", "--new-password-stdin"],
        Some("tiny-pw"),
    )
    .fails();
    assert!(out.stderr.contains("at least 12 characters"), "{out}");
    assert_eq!(v2_status(&srv, &Cred::basic("alice", &p3)).await, 200);
    let out = cli(
        oh,
        &["user", "password", "nobody", "--new-password-stdin"],
        Some(p2),
    )
    .fails();
    assert!(out.stderr.contains("no user named nobody"), "{out}");

    // The owner changes its own: its stored login is renewed and keeps working.
    let owner2 = "owner-password-two";
    let out = cli(
        oh,
        &["user", "password", "owner", "--new-password-stdin"],
        Some(owner2),
    )
    .ok();
    assert!(out.stderr.contains("renewed"), "{out}");
    cli(oh, &["user", "list"], None).ok();
    assert_eq!(
        v2_status(&srv, &Cred::basic("owner", OWNER_PASSWORD)).await,
        401
    );

    // Audited, without secrets; the wrong current password counts as a failed login.
    let r = admin_as(
        &srv,
        &Cred::basic("owner", owner2),
        Method::GET,
        "audit",
        None,
    )
    .await;
    r.expect(200);
    let audit = r.json();
    let changes: Vec<(String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "user.password-changed")
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("actor"), s("target"), s("detail"))
        })
        .collect();
    assert_eq!(
        changes,
        [
            (
                "alice".into(),
                "alice".into(),
                "with the current password".into()
            ),
            (
                "owner".into(),
                "alice".into(),
                "set by an Owner; generated".into()
            ),
            ("owner".into(), "owner".into(), "set by an Owner".into()),
        ],
        "{audit}"
    );
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "login.failed" && e["actor"] == "alice"),
        "{audit}"
    );
    let text = audit.to_string();
    for secret in [p1, p2, p3.as_str(), wrong, owner2] {
        assert!(!text.contains(secret), "{secret} in {audit}");
    }
}

#[tokio::test]
async fn the_password_api_refuses_what_it_must() {
    let srv = Server::start_with_auth();
    create_user(&srv, "carol", "carol-password-1").await;
    let carol = Cred::basic("carol", "carol-password-1");
    let change = |cred: Cred, user: &'static str, body: Value| {
        let srv = &srv;
        async move {
            admin_as(
                srv,
                &cred,
                Method::POST,
                &format!("users/{user}/password"),
                Some(body),
            )
            .await
        }
    };
    // Anonymous: challenged; unknown fields and non-strings: 400; other admin endpoints stay
    // closed to carol.
    let r = change(Cred::None, "carol", json!({"password": "carol-password-2"})).await;
    r.expect(401);
    let r = change(
        carol.clone(),
        "carol",
        json!({"passwrd": "carol-password-2"}),
    )
    .await;
    r.expect(400);
    let r = admin_as(&srv, &carol, Method::GET, "users", None).await;
    r.expect(403);
    let r = change(
        carol.clone(),
        "owner",
        json!({"password": "carol-owns-it-now", "oldPassword": "carol-password-1"}),
    )
    .await;
    r.expect(403);
    assert_eq!(r.json()["errors"][0]["code"], "DENIED", "{r}");
    let r = change(
        carol.clone(),
        "carol",
        json!({"password": "carol-password-2"}),
    )
    .await;
    r.expect(400);
    assert_eq!(
        r.json()["errors"][0]["detail"]["field"],
        "oldPassword",
        "{r}"
    );
    let r = change(
        carol.clone(),
        "carol",
        json!({"password": "carol-password-2", "oldPassword": "carol-password-x"}),
    )
    .await;
    r.expect(403);
    assert_eq!(
        r.json()["errors"][0]["detail"]["field"],
        "oldPassword",
        "{r}"
    );
    let r = change(
        carol.clone(),
        "carol",
        json!({"password": "short", "oldPassword": "carol-password-1"}),
    )
    .await;
    r.expect(400);
    assert_eq!(r.json()["errors"][0]["detail"]["field"], "password", "{r}");
    // Service principals and tokens are not users: their secrets are generated.
    let (sp, _) = create_sp(&srv, "builder").await;
    let r = admin_as(
        &srv,
        &Cred::owner(),
        Method::POST,
        &format!("users/{sp}/password"),
        Some(json!({"password": "chosen-sp-password"})),
    )
    .await;
    r.expect(404);
    // Nothing above changed carol's password.
    assert_eq!(v2_status(&srv, &carol).await, 200);
}

fn reset_owner(home: &Path, data: &Path, stdin: Option<&str>) -> Out {
    let mut args = vec!["admin", "reset-owner", "--data-dir", data.to_str().unwrap()];
    if stdin.is_some() {
        args.push("--new-password-stdin");
    }
    berth(home, &args, stdin)
}

#[tokio::test]
async fn reset_owner_recovers_a_stopped_servers_owner_and_refuses_while_it_runs() {
    let mut srv = Server::start_with_auth();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let data = srv.data_dir().to_path_buf();
    let second = user_with_roles(&srv, "second", "second-owner-pw-1", &["Owner"]).await;
    let new_pw = "recovered-owner-password";

    let out = reset_owner(h, &data, Some(new_pw)).fails();
    assert!(
        out.stderr.contains("another berth server is using") && out.stderr.contains("stopped"),
        "{out}"
    );
    assert_eq!(v2_status(&srv, &Cred::owner()).await, 200);

    srv.stop();
    let out = reset_owner(h, &data, Some("too-short-1")).fails();
    assert!(out.stderr.contains("at least 12 characters"), "{out}");
    let out = reset_owner(h, &data, Some(new_pw)).ok();
    assert!(!out.all().contains(new_pw), "{out}");
    srv.restart_stopped();
    assert_eq!(v2_status(&srv, &Cred::owner()).await, 401);
    let owner = Cred::basic("owner", new_pw);
    admin_as(&srv, &owner, Method::GET, "users", None)
        .await
        .expect(200);
    // The harness starts with a bootstrap password: ignored, and said so.
    assert!(
        srv.logs().contains("BERTH_BOOTSTRAP_PASSWORD is ignored"),
        "{}",
        srv.logs()
    );

    // Deleted by another Owner: re-created with the Owner role, with a generated password.
    admin_as(&srv, &second, Method::DELETE, "users/owner", None)
        .await
        .expect(204);
    srv.stop();
    let out = reset_owner(h, &data, None).ok();
    assert!(out.stderr.contains("re-created"), "{out}");
    let generated = out.stdout.trim().to_owned();
    assert_eq!(generated.len(), 43, "{out}");
    srv.restart_stopped();
    let owner = Cred::basic("owner", &generated);
    admin_as(&srv, &owner, Method::GET, "users", None)
        .await
        .expect(200);
    assert!(!srv.logs().contains(&generated));

    let audit = admin_as(&srv, &owner, Method::GET, "audit", None)
        .await
        .json();
    let resets: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "owner.reset")
        .collect();
    assert_eq!(resets.len(), 2, "{audit}");
    assert!(
        resets.iter().all(|e| e["target"] == "owner"
            && e["actor"].as_str().is_some_and(|a| a.starts_with("local:")))
    );
    assert!(
        resets[1]["detail"].as_str().unwrap().contains("re-created"),
        "{audit}"
    );
    assert!(!audit.to_string().contains(new_pw));

    // Not a data dir: refused, and nothing is created there.
    let empty = tempfile::tempdir().unwrap();
    let out = reset_owner(h, empty.path(), Some(new_pw)).fails();
    assert!(out.stderr.contains("not a berth data dir"), "{out}");
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}
