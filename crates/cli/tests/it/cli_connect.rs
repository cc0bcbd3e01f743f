//! How the `berth` CLI connects, as a new user meets it: `berth login --ca-file` remembers the
//! CA for that server (later verbs, admin and image verbs, need no `--ca-file`), every TLS
//! failure names what the certificate was checked against and how to fix it, a CA file without
//! a certificate is refused as such, `http://` to the HTTPS port says to use https://, and
//! `berth logout` forgets the login.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::*;
use crate::trust_cli::{new_layout, oci};
use crate::trust_harness::{Out, isolated, run};

/// `berth` in `dir` with a HOME and config dir of its own and no BERTH_* environment (no
/// BERTH_CA_FILE in particular: what it trusts comes from flags or `berth login`).
fn berth_in(home: &Path, dir: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut c = isolated(env!("CARGO_BIN_EXE_berth"), home);
    c.env("BERTH_CONFIG_DIR", home.join("berth-config"))
        .env("DOCKER_CONFIG", home.join("docker"))
        .current_dir(dir)
        .args(args);
    run(&mut c, stdin)
}

fn logins(home: &Path) -> Value {
    match std::fs::read(home.join("berth-config/logins.json")) {
        Ok(b) => serde_json::from_slice(&b).unwrap(),
        Err(_) => Value::Null,
    }
}

/// A CA certificate that did not sign the server's certificate.
fn other_ca(dir: &Path) -> PathBuf {
    berth_server::tls::ensure_generated(&dir.join("other-tls"), &["localhost".into()])
        .unwrap()
        .ca_cert
}

#[tokio::test]
async fn login_remembers_the_ca_tls_errors_say_what_was_trusted_and_logout_forgets() {
    let srv = Server::start_with_auth();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let berth = |args: &[&str], stdin: Option<&str>| berth_in(&home, &home, args, stdin);
    let host = srv.host();
    let url = format!("https://{host}");
    let ca = srv.ca_path();
    let ca = ca.to_str().unwrap();

    // Without a CA: the system roots do not know the server's private CA.
    let out = berth(&["user", "list", "--server", &host], None).fails();
    for want in [
        "TLS failed",
        "the system roots",
        "--ca-file",
        "BERTH_CA_FILE",
        "berth login",
    ] {
        assert!(out.stderr.contains(want), "{want:?} missing: {out}");
    }
    // The wrong CA is named, for the admin verbs and for image verbs alike.
    let wrong = other_ca(tmp.path());
    let wrong = wrong.to_str().unwrap();
    let out = berth(
        &["user", "list", "--server", &host, "--ca-file", wrong],
        None,
    )
    .fails();
    assert!(out.stderr.contains(&format!("CA file {wrong}")), "{out}");
    assert!(out.stderr.contains("--ca-file"), "{out}");
    let mut rng = Rng::new();
    let (l1, _) = new_layout(tmp.path(), "v1", &mut rng);
    let target = format!("{host}/team/app:v1");
    let out = berth(
        &["push", &oci(&l1, "v1"), &target, "--ca-file", wrong],
        None,
    )
    .fails();
    assert!(out.stderr.contains(&format!("CA file {wrong}")), "{out}");
    assert!(out.stderr.contains("berth login"), "{out}");
    let out = berth(
        &[
            "trust",
            "inspect",
            &format!("{host}/team/app"),
            "--ca-file",
            wrong,
        ],
        None,
    )
    .fails();
    assert!(out.stderr.contains(&format!("CA file {wrong}")), "{out}");

    // A CA file that holds no certificate is refused as such, before any connection.
    let junk = home.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let junk = junk.to_str().unwrap();
    for args in [
        vec!["user", "list", "--server", &host, "--ca-file", junk],
        vec!["push", &oci(&l1, "v1"), &target, "--ca-file", junk],
        vec![
            "login",
            &host,
            "-u",
            "owner",
            "--password-stdin",
            "--ca-file",
            junk,
        ],
    ] {
        let out = berth(&args, Some(OWNER_PASSWORD)).fails();
        assert!(out.stderr.contains("no certificate"), "{out}");
        assert!(out.stderr.contains(junk), "{out}");
    }
    assert_eq!(logins(&home), Value::Null, "a refused login stored nothing");

    // Plain HTTP to the HTTPS port: the server answers in words the CLI shows.
    let plain = format!("http://{host}");
    let out = berth(&["user", "list", "--server", &plain], None).fails();
    assert!(
        out.stderr
            .contains(&format!("the server speaks HTTPS; use https://{host}/")),
        "{out}"
    );
    let out = berth(
        &["push", &oci(&l1, "v1"), &target, "--server", &plain],
        None,
    )
    .fails();
    assert!(out.stderr.contains("the server speaks HTTPS"), "{out}");
    assert!(out.stderr.contains("use https://"), "{out}");

    // Login with a relative --ca-file: remembered as an absolute path next to the token.
    std::fs::copy(ca, home.join("ca.crt")).unwrap();
    let out = berth(
        &[
            "login",
            &host,
            "-u",
            "owner",
            "--password-stdin",
            "--ca-file",
            "ca.crt",
        ],
        Some(OWNER_PASSWORD),
    )
    .ok();
    assert!(out.stdout.contains("Login Succeeded"), "{out}");
    let stored = logins(&home);
    assert_eq!(
        stored[&url]["ca_file"].as_str(),
        Some(home.join("ca.crt").to_str().unwrap()),
        "{stored}"
    );
    assert!(stored[&url]["refresh_token"].is_string(), "{stored}");

    // From another directory, without --ca-file or BERTH_CA_FILE: admin verbs and pushes work.
    let out = berth_in(
        &home,
        &elsewhere,
        &["user", "list", "--server", &host],
        None,
    )
    .ok();
    assert!(out.stdout.contains("owner"), "{out}");
    let out = berth_in(&home, &elsewhere, &["push", &oci(&l1, "v1"), &target], None).ok();
    assert!(out.stdout.contains("digest: sha256:"), "{out}");
    // A remembered CA file that has gone is named as remembered, with the way out.
    std::fs::rename(home.join("ca.crt"), home.join("ca.moved")).unwrap();
    let out = berth(&["user", "list", "--server", &host], None).fails();
    assert!(
        out.stderr.contains("`berth login` remembered the CA file"),
        "{out}"
    );
    let out = berth(&["push", &oci(&l1, "v1"), &target], None).fails();
    assert!(
        out.stderr.contains("`berth login` remembered the CA file"),
        "{out}"
    );
    std::fs::rename(home.join("ca.moved"), home.join("ca.crt")).unwrap();
    // --ca-file still wins over the remembered one.
    berth(
        &["user", "list", "--server", &host, "--ca-file", wrong],
        None,
    )
    .fails();
    // A user created without --new-password-stdin: the output says a password was generated.
    let out = berth(&["user", "create", "dana", "--server", &host], None).ok();
    let created: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(created["password"].is_string(), "{out}");
    assert!(
        out.stderr.contains("generated a password for dana"),
        "{out}"
    );
    assert!(out.stderr.contains("shown only this once"), "{out}");

    // A second login without --ca-file keeps the remembered CA.
    berth(
        &["login", &host, "-u", "owner", "--password-stdin"],
        Some(OWNER_PASSWORD),
    )
    .ok();
    assert!(
        logins(&home)[&url]["ca_file"].is_string(),
        "{}",
        logins(&home)
    );

    // Logout forgets token and CA; the verbs are anonymous (and untrusting) again.
    let out = berth(&["logout", &host], None).ok();
    assert!(out.stdout.contains(&url), "{out}");
    assert!(logins(&home).get(&url).is_none(), "{}", logins(&home));
    let out = berth(&["user", "list", "--server", &host, "--ca-file", ca], None).fails();
    assert!(out.stderr.contains("401"), "{out}");
    let out = berth(&["logout", &host], None).fails();
    assert!(out.stderr.contains("not logged in"), "{out}");
}

#[tokio::test]
async fn https_to_a_plain_http_server_says_to_use_http() {
    let srv = Server::start_insecure();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let host = srv.host();
    let https = format!("https://{host}");
    let mut rng = Rng::new();
    let (l1, _) = new_layout(home, "v1", &mut rng);
    for args in [
        vec!["user", "list", "--server", https.as_str()],
        vec!["push", &oci(&l1, "v1"), &format!("{host}/team/app:v1")],
    ] {
        let out = berth_in(home, home, &args, None).fails();
        assert!(
            out.stderr
                .contains("the server speaks plain HTTP: use http://"),
            "{out}"
        );
        // Not a certificate problem: no CA advice.
        assert!(!out.stderr.contains("checked against"), "{out}");
    }
}
