//! The `berth` CLI's messages name things as users write them: a tag as `nope` (not
//! `Tag("nope")`), a digest reference as `repo@sha256:…`, the missing role after the repository,
//! `trust inspect --pretty REPO:TAG` about that tag only, and `push --trust` against a registry
//! with content trust off says so in words and leaves no key behind.

use std::path::{Path, PathBuf};

use reqwest::Method;

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_cli::{new_layout, oci};
use crate::trust_harness::*;

/// `berth` as `cred`, with its own HOME and docker config (keys and TUF cache in
/// `home/docker/trust`), trusting the server's CA, passphrases from the environment.
pub(crate) fn berth_as(srv: &Server, home: &Path, cred: &Cred, args: &[&str]) -> Out {
    let mut c = isolated(env!("CARGO_BIN_EXE_berth"), home);
    c.env("BERTH_CONFIG_DIR", home.join("berth-config"))
        .env("DOCKER_CONFIG", home.join("docker"))
        .env("BERTH_CA_FILE", srv.ca_path())
        .env("DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE", ROOT_PW)
        .env("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE", REPOSITORY_PW);
    if let Cred::Basic(u, p) = cred {
        c.env("BERTH_USERNAME", u).env("BERTH_PASSWORD", p);
    }
    c.args(args);
    run(&mut c, None)
}

/// Every file under `dir` (none when it does not exist).
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn messages_name_tags_digests_and_roles_as_users_write_them() {
    let srv = Server::start_with_auth();
    let sam = signer(&srv, "sam", "team/*").await;
    let pete = user_with_roles(&srv, "pete", "pete-pushing-password-1", &["AcrPush"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let b = |args: &[&str]| berth_as(&srv, &home, &sam, args);
    let repo = gun(&srv, "team/app");
    let mut rng = Rng::new();
    let (l1, _) = new_layout(tmp.path(), "v1", &mut rng);
    let (l2, _) = new_layout(tmp.path(), "v2", &mut rng);

    // Content trust is off: the signed push says so in words, and no key was created.
    let out = b(&["push", &oci(&l1, "v1"), &format!("{repo}:v1"), "--trust"]).fails();
    assert!(
        out.stderr
            .contains("content trust is disabled on this registry"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("berth config content-trust update --status enabled"),
        "{out}"
    );
    assert!(
        !out.stderr.contains("{\""),
        "raw JSON in the message: {out}"
    );
    let keys = files_under(&home.join("docker/trust/private"));
    assert!(keys.is_empty(), "keys created: {keys:?}");

    // A tag the layout does not have, named as written.
    let out = b(&["push", &oci(&l1, "nope"), &format!("{repo}:v1")]).fails();
    assert!(
        out.stderr.contains("no manifest tagged nope (tags: v1)"),
        "{out}"
    );
    assert!(!out.stderr.contains("Tag("), "{out}");

    // A digest reference, written with '@'.
    let missing = format!("sha256:{}", "0".repeat(64));
    let dest = format!("oci:{}", tmp.path().join("out").display());
    let out = b(&["pull", &format!("{repo}@{missing}"), &dest]).fails();
    assert!(out.stderr.contains(&format!("team/app@{missing}")), "{out}");
    assert!(!out.stderr.contains("team/app:sha256"), "{out}");

    // A pusher without the signer role: the repository, then the role it needs.
    enable_trust_as_owner(&srv).await;
    let (ct, body) = multipart(&[("root", b"{}")]);
    let r = call(
        &srv,
        Method::POST,
        &tuf_path(&repo, ""),
        &pete,
        &[("content-type", &ct)],
        Some(body),
    )
    .await;
    assert_eq!(r.status, 403, "{r}");
    let text = String::from_utf8_lossy(&r.body);
    // The trust API names a repository by its GUN.
    assert!(
        text.contains(&format!(
            "pete may not publish trust data for {repo} (needs AcrImageSigner)"
        )),
        "{r}"
    );

    // With trust on, two signed tags; inspect --pretty REPO:TAG lists that tag only.
    b(&["push", &oci(&l1, "v1"), &format!("{repo}:v1"), "--trust"]).ok();
    b(&["push", &oci(&l2, "v2"), &format!("{repo}:v2"), "--trust"]).ok();
    let out = b(&["trust", "inspect", "--pretty", &format!("{repo}:v1")]).ok();
    assert!(
        out.stdout.contains(&format!("Signatures for {repo}:v1")),
        "{out}"
    );
    let rows: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("v1 ") || l.starts_with("v2 "))
        .collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert!(rows[0].starts_with("v1 "), "{out}");
    let out = b(&["trust", "inspect", "--pretty", &repo]).ok();
    let rows = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("v1 ") || l.starts_with("v2 "))
        .count();
    assert_eq!(rows, 2, "{out}");
}
