//! Authentication on a default `berth serve`: challenges, the token endpoint, tokens at work.

use crate::harness::*;

async fn token(srv: &Server, user: &str, password: &str, scope: &str) -> reqwest::Response {
    srv.client
        .get(srv.url(&format!(
            "/oauth2/token?service=127.0.0.1:{}&scope={scope}",
            srv.port
        )))
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("token request")
}

#[tokio::test]
async fn default_server_requires_auth_and_issues_tokens() {
    let srv = Server::start_with_auth();
    // Unauthenticated: docker's challenge, naming realm, service and scope.
    let r = srv.client.get(srv.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let ch = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(ch.starts_with("Bearer realm=\"https://127.0.0.1:"), "{ch}");
    assert!(ch.contains("/oauth2/token\",service=\"127.0.0.1:"), "{ch}");
    let r = srv
        .client
        .get(srv.url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let ch = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(ch.ends_with(",scope=\"repository:team/app:pull\""), "{ch}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");

    // Only the fixed public endpoints answer without credentials; unknown paths do not.
    for path in [
        "/healthz",
        "/readyz",
        "/_notary_server/health",
        "/oauth2/jwks",
    ] {
        let r = srv.client.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    for path in ["/ui", "/v2/x/nothing/here", "/metrics-or-anything"] {
        let r = srv.client.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path}");
    }
    // The web UI checks its own session cookie: without one, its pages send to the login form.
    for path in ["/", "/ui/repositories", "/ui/owner/access"] {
        let r = srv.client.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 303, "{path}");
        let to = r.headers()["location"].to_str().unwrap();
        assert!(to.starts_with("/ui/login?next="), "{path}: {to}");
    }

    // Wrong password: refused.
    assert_eq!(
        token(&srv, "owner", "wrong", "repository:team/app:pull")
            .await
            .status()
            .as_u16(),
        401
    );

    // The owner gets exactly what it asked for, and the token opens the registry.
    let r = token(
        &srv,
        "owner",
        OWNER_PASSWORD,
        "repository:team/app:pull,push",
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let tok = v["token"].as_str().unwrap().to_owned();
    assert_eq!(v["access_token"], v["token"]);
    assert_eq!(v["scope"], "repository:team/app:pull,push");
    let r = srv
        .client
        .get(srv.url("/v2/"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = srv
        .client
        .post(srv.url("/v2/team/app/blobs/uploads/"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    // Another repository is outside the token: 403 with a new challenge for it (RFC 6750).
    let r = srv
        .client
        .post(srv.url("/v2/other/blobs/uploads/"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );

    // A tampered token is refused.
    let mut bad = tok.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    let r = srv
        .client
        .get(srv.url("/v2/"))
        .bearer_auth(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}

/// `berth login` keeps a refresh token that later verbs (pull here) use without `-u`.
#[tokio::test]
async fn berth_login_is_used_by_later_commands() {
    let srv = Server::start_with_auth();
    let cfg = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write as _;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.args(args)
            .env_clear()
            .env("HOME", cfg.path())
            .env("BERTH_CONFIG_DIR", cfg.path())
            .env("BERTH_CA_FILE", srv.ca_path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let host = format!("127.0.0.1:{}", srv.port);
    let target = format!("{host}/team/app:nope");
    let dest = format!("oci:{}", cfg.path().join("out").display());
    // Not logged in: the registry asks for credentials.
    let (ok, out) = run(&["pull", &target, &dest], None);
    assert!(!ok);
    assert!(out.contains("requires authentication"), "{out}");
    let (ok, out) = run(
        &["login", &host, "-u", "owner", "--password-stdin"],
        Some(OWNER_PASSWORD),
    );
    assert!(ok, "{out}");
    let stored = std::fs::read_to_string(cfg.path().join("logins.json")).unwrap();
    assert!(
        !stored.contains(OWNER_PASSWORD),
        "the password must not be stored"
    );
    // Logged in: the same pull gets past authentication to the real answer (no such tag).
    let (ok, out) = run(&["pull", &target, &dest], None);
    assert!(!ok);
    assert!(!out.contains("requires authentication"), "{out}");
    assert!(
        out.contains("not found") || out.contains("unknown"),
        "{out}"
    );
}
