//! Real clients against a default (auth on) `berth serve`: skopeo with `--src-creds` /
//! `--dest-creds`, the notary CLI with `NOTARY_AUTH`, the docker CLI with credentials in
//! `$DOCKER_CONFIG/config.json`, and the `berth` admin verbs after `berth login`, with the audit
//! log checked for what happened and for secrets (never there, nor in the server's log).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_harness::{Docker, Notary, Out, gun, isolated, run};

fn notary_auth(user: &str, password: &str) -> String {
    STANDARD.encode(format!("{user}:{password}"))
}

/// `notary` with `NOTARY_AUTH` for `user`.
fn notary(n: &Notary, auth: &str, args: &[&str]) -> Out {
    let mut c = n.cmd(args);
    c.env("NOTARY_AUTH", auth);
    run(&mut c, None)
}

/// skopeo isolated from the user's configuration, trusting only the server's CA.
struct Skopeo {
    home: tempfile::TempDir,
    certs: tempfile::TempDir,
}

impl Skopeo {
    fn new(srv: &Server) -> Skopeo {
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
        std::fs::copy(srv.ca_path(), certs.path().join("ca.crt")).unwrap();
        Skopeo { home, certs }
    }

    fn run(&self, args: &[&str]) -> Out {
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

    fn certs(&self) -> &str {
        self.certs.path().to_str().unwrap()
    }

    /// `skopeo copy` with the given credentials on either side (`None`: no credentials).
    fn copy(
        &self,
        src: &str,
        src_creds: Option<&str>,
        dest: &str,
        dest_creds: Option<&str>,
    ) -> Out {
        let mut args = vec!["copy", "--preserve-digests"];
        let certs = self.certs();
        if src.starts_with("docker://") {
            args.extend(["--src-cert-dir", certs]);
            match src_creds {
                Some(c) => args.extend(["--src-creds", c]),
                None => args.push("--src-no-creds"),
            }
        }
        if dest.starts_with("docker://") {
            args.extend(["--dest-cert-dir", certs]);
            match dest_creds {
                Some(c) => args.extend(["--dest-creds", c]),
                None => args.push("--dest-no-creds"),
            }
        }
        args.extend([src, dest]);
        self.run(&args)
    }
}

#[tokio::test]
async fn skopeo_with_credentials_push_and_pull_by_role() {
    let srv = Server::start_with_auth();
    let host = srv.host();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 2, 500);
    push_image_as(&srv, &Cred::owner(), "team/app", "v1", &img).await;
    user_with_roles(&srv, "pusher", "pusher-password-1", &["AcrPush"]).await;
    user_with_roles(&srv, "puller", "puller-password-1", &["AcrPull"]).await;
    let (pusher, puller) = ("pusher:pusher-password-1", "puller:puller-password-1");
    let sk = Skopeo::new(&srv);
    let layout = tempfile::tempdir().unwrap();
    let oci = format!("oci:{}:v1", layout.path().display());
    let src = format!("docker://{host}/team/app:v1");

    // AcrPull pulls ...
    sk.copy(&src, Some(puller), &oci, None).ok();
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        img.digest.as_str(),
        "{index}"
    );
    let out = sk
        .run(&[
            "inspect",
            "--raw",
            "--cert-dir",
            sk.certs(),
            "--creds",
            puller,
            &src,
        ])
        .ok();
    assert_eq!(out.stdout.as_bytes(), img.manifest.as_slice());
    // ... and cannot push.
    let out = sk
        .copy(
            &oci,
            None,
            &format!("docker://{host}/team/by-puller:v1"),
            Some(puller),
        )
        .fails();
    assert!(
        out.all().contains("denied") || out.all().contains("DENIED"),
        "{out}"
    );
    // Without credentials nothing at all.
    sk.copy(
        &src,
        None,
        &format!("oci:{}/anon:v1", layout.path().display()),
        None,
    )
    .fails();
    // AcrPush pushes (from the layout, and registry to registry with the puller as source).
    sk.copy(
        &oci,
        None,
        &format!("docker://{host}/team/pushed:v1"),
        Some(pusher),
    )
    .ok();
    sk.copy(
        &src,
        Some(puller),
        &format!("docker://{host}/team/copied:v1"),
        Some(pusher),
    )
    .ok();
    for repo in ["team/pushed", "team/copied"] {
        let r = call(
            &srv,
            Method::GET,
            &format!("/v2/{repo}/manifests/v1"),
            &Cred::basic("puller", "puller-password-1"),
            &[("accept", OCI_MANIFEST)],
            None,
        )
        .await;
        r.expect(200);
        assert_eq!(r.body, img.manifest, "{repo}");
    }
    let r = call(
        &srv,
        Method::GET,
        "/v2/team/by-puller/tags/list",
        &Cred::owner(),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 404, "nothing was pushed by the puller: {r}");
}

#[tokio::test]
async fn notary_cli_publishing_needs_the_signer_role_or_a_trust_write_token() {
    let srv = Server::start_with_auth();
    enable_trust_as_owner(&srv).await;
    let app = gun(&srv, "team/app");
    user_with_roles(&srv, "pusher", "pusher-password-1", &["AcrPush"]).await;
    user_with_roles(
        &srv,
        "signer",
        "signer-password-1",
        &["AcrPush", "AcrImageSigner"],
    )
    .await;
    user_with_roles(&srv, "puller", "puller-password-1", &["AcrPull"]).await;

    // AcrPush without AcrImageSigner: refused when publishing trust data.
    let n = Notary::new(&srv);
    let out = notary(
        &n,
        &notary_auth("pusher", "pusher-password-1"),
        &["init", &app, "-p"],
    )
    .fails();
    assert!(out.all().contains("403"), "refused by authorization: {out}");
    let r = call(
        &srv,
        Method::GET,
        &format!("/v2/{app}/_trust/tuf/root.json"),
        &Cred::owner(),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 404, "nothing was published: {r}");

    // AcrPush + AcrImageSigner: publishes.
    let signer = notary_auth("signer", "signer-password-1");
    let n = Notary::new(&srv);
    notary(&n, &signer, &["init", &app, "-p"]).ok();
    let file = n.work().join("artifact.txt");
    std::fs::write(&file, "signed content\n").unwrap();
    notary(
        &n,
        &signer,
        &["add", &app, "v1", file.to_str().unwrap(), "-p"],
    )
    .ok();

    // AcrPull: reads trust data (a fresh client trusts on first use) and publishes nothing.
    let puller = notary_auth("puller", "puller-password-1");
    let np = Notary::new(&srv);
    let out = notary(&np, &puller, &["list", &app]).ok();
    assert!(out.stdout.contains("v1"), "{out}");
    // With the signer's keys (so only the server can refuse): refused.
    let file = n.work().join("other.txt");
    std::fs::write(&file, "not allowed\n").unwrap();
    let out = notary(
        &n,
        &puller,
        &["add", &app, "v2", file.to_str().unwrap(), "-p"],
    )
    .fails();
    assert!(out.all().contains("403"), "{out}");
    // Without credentials, not even reads.
    let na = Notary::new(&srv);
    notary(&na, "", &["list", &app]).fails();
    let out = notary(&np, &puller, &["list", &app]).ok();
    assert!(!out.stdout.contains("v2"), "{out}");

    // A repository-scoped token with trust/read + trust/write (+ content/read) signs its
    // repository and is refused on any other.
    scope_map(
        &srv,
        "ci-signing",
        "ci/app",
        &["trust/read", "trust/write", "content/read"],
    )
    .await;
    let pw = create_token(&srv, "ci-signer", "ci-signing", Some(30)).await;
    let ci = notary_auth("ci-signer", &pw);
    let nt = Notary::new(&srv);
    let ci_gun = gun(&srv, "ci/app");
    notary(&nt, &ci, &["init", &ci_gun, "-p"]).ok();
    let file = nt.work().join("build.txt");
    std::fs::write(&file, "ci build\n").unwrap();
    notary(
        &nt,
        &ci,
        &["add", &ci_gun, "build-1", file.to_str().unwrap(), "-p"],
    )
    .ok();
    let out = notary(&nt, &ci, &["list", &ci_gun]).ok();
    assert!(out.stdout.contains("build-1"), "{out}");
    let out = notary(&nt, &ci, &["init", &gun(&srv, "other/app"), "-p"]).fails();
    assert!(out.all().contains("403"), "{out}");
    // Even holding the repository's keys, the token cannot publish elsewhere.
    let out = notary(
        &n,
        &ci,
        &["add", &app, "evil", file.to_str().unwrap(), "-p"],
    )
    .fails();
    assert!(out.all().contains("403"), "{out}");
    let out = notary(&np, &puller, &["list", &app]).ok();
    assert!(!out.stdout.contains("evil"), "{out}");
}

/// A docker CLI whose `config.json` holds Basic credentials for the registry.
fn docker_with_auth(srv: &Server, user: &str, password: &str) -> Docker {
    let d = Docker::new(srv);
    let cfg =
        json!({"auths": {srv.host(): {"auth": STANDARD.encode(format!("{user}:{password}"))}}});
    std::fs::write(
        d.config.join("config.json"),
        serde_json::to_vec(&cfg).unwrap(),
    )
    .unwrap();
    d
}

#[tokio::test]
async fn docker_trust_signer_add_needs_the_signer_role() {
    let srv = Server::start_with_auth();
    enable_trust_as_owner(&srv).await;
    let repo = gun(&srv, "team/app");
    user_with_roles(&srv, "pusher", "pusher-password-1", &["AcrPush"]).await;
    user_with_roles(
        &srv,
        "signer",
        "signer-password-1",
        &["AcrPush", "AcrImageSigner"],
    )
    .await;
    for (user, pw, allowed) in [
        ("pusher", "pusher-password-1", false),
        ("signer", "signer-password-1", true),
    ] {
        let d = docker_with_auth(&srv, user, pw);
        d.run(&["trust", "key", "generate", "alice"]).ok();
        let out = d.run(&[
            "trust",
            "signer",
            "add",
            "--key",
            "alice.pub",
            "alice",
            &repo,
        ]);
        if allowed {
            let out = out.ok();
            assert!(out.stdout.contains("Successfully"), "{out}");
            let inspect = d.inspect(&repo);
            let signers: Vec<&str> = inspect["Signers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["Name"].as_str().unwrap())
                .collect();
            assert_eq!(signers, ["alice"], "{inspect}");
        } else {
            let out = out.fails();
            assert!(out.all().contains("403"), "{out}");
            let r = call(
                &srv,
                Method::GET,
                &format!("/v2/{repo}/_trust/tuf/root.json"),
                &Cred::owner(),
                &[],
                None,
            )
            .await;
            assert_eq!(r.status, 404, "the pusher published trust data: {r}");
        }
    }
}

/// `berth <args>` with its own config dir (for `berth login`) and nothing of the caller's
/// BERTH_* environment.
fn berth(home: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut c = isolated(env!("CARGO_BIN_EXE_berth"), home);
    c.env("BERTH_CONFIG_DIR", home.join("berth-config"))
        .args(args);
    run(&mut c, stdin)
}

#[tokio::test]
async fn berth_login_admin_verbs_and_an_audit_log_without_secrets() {
    let srv = Server::start_with_auth();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let ca = srv.ca_path();
    let ca = ca.to_str().unwrap();
    let server = srv.host();
    let conn = ["--server", server.as_str(), "--ca-file", ca];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(conn.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let ok = |args: Vec<String>, stdin: Option<&str>| -> Out {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        berth(h, &a, stdin).ok()
    };
    let mut secrets: Vec<String> = vec![OWNER_PASSWORD.into()];

    // A failed login, then a good one: only a refresh token is kept, in a 0600 file.
    let wrong = "wrong-owner-password-9";
    secrets.push(wrong.into());
    let out = berth(
        h,
        &[
            "login",
            &server,
            "-u",
            "owner",
            "--password-stdin",
            "--ca-file",
            ca,
        ],
        Some(wrong),
    )
    .fails();
    assert!(!out.all().contains(wrong), "{out}");
    // Before logging in, admin verbs are refused.
    berth(
        h,
        &["user", "list", "--server", &server, "--ca-file", ca],
        None,
    )
    .fails();
    let out = ok(
        vec![
            "login".into(),
            server.clone(),
            "-u".into(),
            "owner".into(),
            "--password-stdin".into(),
            "--ca-file".into(),
            ca.into(),
        ],
        Some(OWNER_PASSWORD),
    );
    assert!(out.stdout.contains("Login Succeeded"), "{out}");
    let logins_path = h.join("berth-config/logins.json");
    let logins = std::fs::read_to_string(&logins_path).unwrap();
    assert!(!logins.contains(OWNER_PASSWORD), "{logins}");
    let logins: Value = serde_json::from_str(&logins).unwrap();
    let refresh = logins[format!("https://{server}")]["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh token: {logins}"))
        .to_owned();
    secrets.push(refresh);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&logins_path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // Verbs over the admin API with the stored login.
    let carol_pw = "carol-password-42";
    secrets.push(carol_pw.into());
    secrets.push(STANDARD.encode(format!("carol:{carol_pw}")));
    let out = ok(
        with(&["user", "create", "carol", "--new-password-stdin"]),
        Some(carol_pw),
    );
    assert!(!out.stdout.contains(carol_pw), "{out}");
    for role in ["AcrPush", "AcrImageSigner"] {
        ok(
            with(&[
                "role",
                "assignment",
                "create",
                "--role",
                role,
                "--assignee",
                "carol",
            ]),
            None,
        );
    }
    let out = ok(
        with(&["role", "assignment", "list", "--assignee", "carol"]),
        None,
    );
    let roles: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(roles.as_array().unwrap().len(), 2, "{roles}");
    ok(
        with(&[
            "scope-map",
            "create",
            "ci-map",
            "--repository",
            "ci/*",
            "content/read",
            "content/write",
            "trust/read",
            "trust/write",
        ]),
        None,
    );
    let out = ok(
        with(&["token", "create", "ci", "--scope-map", "ci-map"]),
        None,
    );
    let tok: Value = serde_json::from_str(&out.stdout).unwrap();
    let tok_pw = tok["password"].as_str().expect("token password").to_owned();
    secrets.push(tok_pw.clone());
    let out = ok(with(&["sp", "create", "builder"]), None);
    let sp: Value = serde_json::from_str(&out.stdout).unwrap();
    secrets.push(sp["secret"].as_str().expect("sp secret").to_owned());
    // A non-owner cannot use the admin verbs.
    let mut c = isolated(env!("CARGO_BIN_EXE_berth"), h);
    c.env("BERTH_PASSWORD", carol_pw)
        .args(["user", "list", "-u", "carol"])
        .args(conn);
    let out = run(&mut c, None).fails();
    assert!(out.all().contains("403"), "{out}");

    // Trust: enabled through the CLI, carol signs with notary, the owner wipes it again; the
    // CI token signs under ci/.
    ok(
        with(&["config", "content-trust", "update", "--status", "enabled"]),
        None,
    );
    let app = gun(&srv, "team/app");
    let n = Notary::new(&srv);
    notary(&n, &notary_auth("carol", carol_pw), &["init", &app, "-p"]).ok();
    let nt = Notary::new(&srv);
    notary(
        &nt,
        &notary_auth("ci", &tok_pw),
        &["init", &gun(&srv, "ci/app"), "-p"],
    )
    .ok();
    ok(with(&["trust", "reset", &app, "--yes"]), None);
    // A failed Basic login on the registry, with a secret-looking password.
    let tried = "guessed-password-123";
    secrets.push(tried.into());
    let r = call(
        &srv,
        Method::GET,
        "/v2/",
        &Cred::basic("carol", tried),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 401, "{r}");
    // Access tokens handed out during the test never appear either.
    let t = bearer(
        &srv,
        &Cred::basic("carol", carol_pw),
        &["repository:team/app:pull"],
    )
    .await;
    secrets.push(t);

    let out = ok(with(&["audit", "list"]), None);
    let audit: Value = serde_json::from_str(&out.stdout).unwrap();
    let entries = audit.as_array().unwrap();
    let has = |action: &str, actor: &str, target: &str| {
        entries.iter().any(|e| {
            e["action"] == action
                && e["actor"] == actor
                && e["target"].as_str().unwrap_or_default().contains(target)
                && e["at"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("20") && t.ends_with('Z'))
        })
    };
    for (action, actor, target) in [
        ("login.failed", "owner", ""),
        ("login.failed", "carol", ""),
        ("user.created", "owner", "carol"),
        ("role.assigned", "owner", "carol"),
        ("scope-map.updated", "owner", "ci-map"),
        ("token.created", "owner", "ci"),
        ("service-principal.created", "owner", "sp-"),
        ("token.issued", "owner", ""),
        ("token.issued", "carol", ""),
        ("token.issued", "ci", ""),
        ("content-trust.enabled", "owner", ""),
        ("trust.updated", "carol", "team/app"),
        ("trust.updated", "ci", "ci/app"),
        ("trust.reset", "owner", "team/app"),
        ("access.denied", "carol", "/api/v1/users"),
    ] {
        assert!(
            has(action, actor, target),
            "no {action} by {actor} on {target:?} in the audit log: {audit:#}"
        );
    }
    assert!(
        entries
            .iter()
            .filter(|e| e["action"] == "login.failed")
            .all(|e| e["client"] == "127.0.0.1"),
        "{audit:#}"
    );
    // Role changes through the CLI are audited too when removed.
    ok(
        with(&[
            "role",
            "assignment",
            "delete",
            "--role",
            "AcrImageSigner",
            "--assignee",
            "carol",
        ]),
        None,
    );
    let v = admin(&srv, Method::GET, "audit", None).await;
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "role.unassigned" && e["target"] == "carol"),
        "{v:#}"
    );

    // No secret anywhere: audit (as listed by the CLI and the API), the server's log.
    let logs = srv.logs();
    for s in &secrets {
        assert!(
            !out.stdout.contains(s.as_str()),
            "secret {s:?} in `berth audit list`"
        );
        assert!(
            !v.to_string().contains(s.as_str()),
            "secret {s:?} in the audit API"
        );
        assert!(
            !logs.contains(s.as_str()),
            "secret {s:?} in the server log:\n{logs}"
        );
    }
}
