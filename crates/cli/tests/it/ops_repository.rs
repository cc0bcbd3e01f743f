//! The verbs users expect, end to end with authentication on: `berth repository list |
//! show-tags | delete`, `berth token enable`, `berth scope-map delete`; deletions are audited.

use std::path::Path;

use reqwest::Method;
use serde_json::Value;

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_harness::*;

/// `berth ARGS --ca-file CA` with its own HOME and config dir.
fn berth(srv: &Server, home: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut c = isolated(env!("CARGO_BIN_EXE_berth"), home);
    c.env("BERTH_CONFIG_DIR", home.join("berth-config"))
        .args(args)
        .arg("--ca-file")
        .arg(srv.ca_path());
    run(&mut c, stdin)
}

fn login(srv: &Server, home: &Path, user: &str, password: &str) {
    berth(
        srv,
        home,
        &["login", &srv.host(), "-u", user, "--password-stdin"],
        Some(password),
    )
    .ok();
}

async fn audit(srv: &Server) -> Vec<Value> {
    admin(srv, Method::GET, "audit", None)
        .await
        .as_array()
        .cloned()
        .unwrap()
}

fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && s.chars()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19].contains(&i) || c.is_ascii_digit())
}

#[tokio::test]
async fn ops_repository_list_show_tags_and_delete_with_auth() {
    let srv = start_server();
    enable_trust(&srv).await;
    let mut rng = Rng::new();
    let v1 = srv
        .push_image("team/app", Some("v1"), "amd64", &mut rng)
        .await;
    let v2 = srv
        .push_image("team/app", Some("v2"), "arm64", &mut rng)
        .await;
    srv.push_image("other/app", Some("v1"), "amd64", &mut rng)
        .await;
    // v1 is signed (by the repository's owner key: docker shows "Repo Admin"), v2 is not.
    let gun = gun(&srv, "team/app");
    let keys_dir = tempfile::tempdir().unwrap();
    owner_trust_client(&srv, &gun, keys_dir.path())
        .sign("v1", &v1.digest, v1.manifest.len() as u64)
        .await
        .unwrap();
    let root: Value = serde_json::from_slice(&tuf_bytes(&srv, &gun, "root.json").await).unwrap();
    let targets_keys = root["signed"]["roles"]["targets"]["keyids"].clone();

    // A reader (AcrPull on team/*) lists what it may pull and sees the tags and signers.
    let reader_home = tempfile::tempdir().unwrap();
    let rh = reader_home.path();
    reader(&srv, "reed", "team/*").await;
    login(&srv, rh, "reed", "reed-reading-password-1");
    let out = berth(
        &srv,
        rh,
        &["repository", "list", "--server", &srv.host()],
        None,
    )
    .ok();
    assert_eq!(out.stdout.trim(), "team/app", "{out}");
    let repo_ref = format!("{}/team/app", srv.host());
    let out = berth(
        &srv,
        rh,
        &["repository", "show-tags", &repo_ref, "--json"],
        None,
    )
    .ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["contentTrust"], "enabled", "{v:#}");
    let tags = v["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 2, "{v:#}");
    let (t1, t2) = (&tags[0], &tags[1]);
    assert_eq!(t1["name"], "v1");
    assert_eq!(t1["digest"], v1.digest.as_str());
    assert_eq!(t2["digest"], v2.digest.as_str());
    let config_and_layers: u64 = std::iter::once(&v1.config)
        .chain(v1.layers.iter())
        .map(|b| b.len() as u64)
        .sum();
    assert_eq!(
        t1["size"].as_u64().unwrap(),
        v1.manifest.len() as u64 + config_and_layers,
        "{t1}"
    );
    assert!(is_rfc3339_utc(t1["pushed"].as_str().unwrap()), "{t1}");
    assert_eq!(t1["signed"], true, "{t1}");
    assert_eq!(t1["signers"][0]["name"], "Repo Admin", "{t1}");
    assert_eq!(t1["signers"][0]["role"], "targets", "{t1}");
    assert_eq!(t1["signers"][0]["keyIds"], targets_keys, "{t1}");
    assert_eq!(t2["signed"], false, "{t2}");
    assert_eq!(t2["signers"], Value::Array(vec![]), "{t2}");
    // The table says the same.
    let out = berth(&srv, rh, &["repository", "show-tags", &repo_ref], None).ok();
    let row = out.stdout.lines().find(|l| l.starts_with("v1 ")).unwrap();
    assert!(row.contains("yes") && row.contains("Repo Admin"), "{out}");
    let row = out.stdout.lines().find(|l| l.starts_with("v2 ")).unwrap();
    assert!(row.contains(" no "), "{out}");
    // A reader may not delete.
    let out = berth(
        &srv,
        rh,
        &["repository", "delete", &format!("{repo_ref}:v2")],
        None,
    )
    .fails();
    assert!(out.stderr.contains("may not delete in team/app"), "{out}");
    assert!(
        out.stderr.contains("403"),
        "a denial, not a login problem: {out}"
    );

    // Someone with AcrDelete (and AcrPull) on team/app deletes: a tag, a manifest, the repository.
    let deleter_home = tempfile::tempdir().unwrap();
    let dh = deleter_home.path();
    create_user(&srv, "dora", "dora-deleting-password-1").await;
    assign(&srv, "AcrDelete", "dora", Some("team/app")).await;
    assign(&srv, "AcrPull", "dora", Some("team/app")).await;
    login(&srv, dh, "dora", "dora-deleting-password-1");
    let out = berth(
        &srv,
        dh,
        &["repository", "delete", &format!("{repo_ref}:v2")],
        None,
    )
    .ok();
    assert!(out.stdout.contains("deleted"), "{out}");
    srv.get("/v2/team/app/manifests/v2").await.expect(404);
    srv.get(&format!("/v2/team/app/manifests/{}", v2.digest))
        .await
        .expect(200);
    // A manifest deletion takes every tag on it; without --yes (and no terminal) it is refused.
    let by_digest = format!("{repo_ref}@{}", v1.digest);
    let out = berth(&srv, dh, &["repository", "delete", &by_digest], None).fails();
    assert!(out.stderr.contains("--yes"), "{out}");
    srv.get("/v2/team/app/manifests/v1").await.expect(200);
    berth(
        &srv,
        dh,
        &["repository", "delete", &by_digest, "--yes"],
        None,
    )
    .ok();
    srv.get("/v2/team/app/manifests/v1").await.expect(404);
    // A tag that is not there is an error that says so.
    let out = berth(
        &srv,
        dh,
        &["repository", "delete", &format!("{repo_ref}:nope")],
        None,
    )
    .fails();
    assert!(out.stderr.contains("has no tag nope"), "{out}");
    // dora may not delete elsewhere.
    let out = berth(
        &srv,
        dh,
        &[
            "repository",
            "delete",
            &format!("{}/other/app", srv.host()),
            "--yes",
        ],
        None,
    )
    .fails();
    assert!(out.stderr.contains("may not delete in other/app"), "{out}");
    let out = berth(
        &srv,
        dh,
        &["repository", "delete", &repo_ref, "--yes"],
        None,
    )
    .ok();
    assert!(out.stdout.contains("deleted repository team/app"), "{out}");
    let out = berth(&srv, dh, &["repository", "show-tags", &repo_ref], None).fails();
    assert!(out.stderr.contains("no repository named team/app"), "{out}");
    srv.get("/v2/team/app/tags/list").await.expect(404);
    srv.get("/v2/other/app/manifests/v1").await.expect(200);

    // Every deletion is in the audit log, with who did it, in RFC 3339.
    let log = audit(&srv).await;
    for (action, target) in [
        ("tag.deleted", "team/app:v2".to_string()),
        ("manifest.deleted", format!("team/app@{}", v1.digest)),
        ("repository.deleted", "team/app".to_string()),
    ] {
        let e = log
            .iter()
            .find(|e| e["action"] == action && e["target"] == target.as_str())
            .unwrap_or_else(|| panic!("no {action} {target} in {log:#?}"));
        assert_eq!(e["actor"], "dora", "{e}");
    }
    // Deletions through the registry API are audited too.
    let other = srv.get("/v2/other/app/manifests/v1").await;
    let digest = other.must_header("docker-content-digest");
    srv.delete(&format!("/v2/other/app/manifests/{digest}"))
        .await
        .expect(202);
    let log = audit(&srv).await;
    assert!(
        log.iter().any(|e| e["action"] == "manifest.deleted"
            && e["target"] == format!("other/app@{digest}").as_str()
            && e["actor"] == "owner"),
        "{log:#?}"
    );
}

#[tokio::test]
async fn ops_token_enable_and_scope_map_delete() {
    let srv = start_server();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    login(&srv, h, "owner", OWNER_PASSWORD);
    let s = srv.host();
    scope_map(&srv, "ci-map", "team/app", &["content/read"]).await;
    let password = create_token(&srv, "ci", "ci-map", None).await;
    let ci = Cred::basic("ci", &password);
    call(&srv, Method::GET, "/v2/team/app/tags/list", &ci, &[], None)
        .await
        .expect(404);
    berth(&srv, h, &["token", "disable", "ci", "--server", &s], None).ok();
    let r = call(&srv, Method::GET, "/v2/team/app/tags/list", &ci, &[], None).await;
    assert_eq!(r.status, 401, "{r}");
    let out = berth(&srv, h, &["token", "enable", "ci", "--server", &s], None).ok();
    assert!(out.stdout.contains("\"disabled\": false"), "{out}");
    call(&srv, Method::GET, "/v2/team/app/tags/list", &ci, &[], None)
        .await
        .expect(404);

    // A scope map in use is not deleted: the answer names the tokens.
    let out = berth(
        &srv,
        h,
        &["scope-map", "delete", "ci-map", "--server", &s],
        None,
    )
    .fails();
    assert!(
        out.stderr.contains("used by token(s) ci") && out.stderr.contains("409"),
        "{out}"
    );
    let maps = admin(&srv, Method::GET, "scope-maps", None).await;
    assert_eq!(maps.as_array().unwrap().len(), 1, "{maps}");
    berth(&srv, h, &["token", "delete", "ci", "--server", &s], None).ok();
    let out = berth(
        &srv,
        h,
        &["scope-map", "delete", "ci-map", "--server", &s],
        None,
    )
    .ok();
    assert!(out.stdout.contains("deleted scope map ci-map"), "{out}");
    let maps = admin(&srv, Method::GET, "scope-maps", None).await;
    assert_eq!(maps, Value::Array(vec![]));
    let out = berth(
        &srv,
        h,
        &["scope-map", "delete", "ci-map", "--server", &s],
        None,
    )
    .fails();
    assert!(out.stderr.contains("no scope map named ci-map"), "{out}");
    let log = audit(&srv).await;
    assert!(
        log.iter()
            .any(|e| e["action"] == "scope-map.deleted" && e["target"] == "ci-map"),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|e| e["action"] == "identity.enabled" && e["target"] == "ci"),
        "{log:#?}"
    );
}
