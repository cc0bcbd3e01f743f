//! After `berth trust reset` (one repository) or disabling content trust (all of them), the
//! machine that ran it has no cached root of the wiped trust data left, so the next signed push
//! there starts the repository afresh instead of failing on the old root.

use crate::auth_support::*;
use crate::cli_messages::berth_as;
use crate::harness::*;
use crate::trust_cli::{new_layout, oci};
use crate::trust_harness::*;

#[tokio::test]
async fn reset_and_disable_clear_the_local_trust_cache_so_signed_pushes_start_afresh() {
    let srv = Server::start_with_auth();
    enable_trust_as_owner(&srv).await;
    let sam = signer(&srv, "sam", "team/*").await;
    let owner = Cred::owner();
    let tmp = tempfile::tempdir().unwrap();
    // One machine (one HOME, one DOCKER_CONFIG): the signer pushes, the owner resets.
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let as_sam = |args: &[&str]| berth_as(&srv, &home, &sam, args);
    let as_owner = |args: &[&str]| berth_as(&srv, &home, &owner, args);
    let app = gun(&srv, "team/app");
    let web = gun(&srv, "team/web");
    let cache = home.join("docker/trust/tuf");
    let mut rng = Rng::new();
    let (l1, _) = new_layout(tmp.path(), "v1", &mut rng);

    for repo in [&app, &web] {
        as_sam(&["push", &oci(&l1, "v1"), &format!("{repo}:v1"), "--trust"]).ok();
        assert!(cache.join(repo).join("metadata/root.json").exists());
    }

    // One repository reset: its cache goes, the other repository's stays.
    let out = as_owner(&["trust", "reset", &app, "--yes"]).ok();
    assert!(
        out.stderr.contains("Removed the local trust cache"),
        "{out}"
    );
    assert!(!cache.join(&app).exists(), "{out}");
    assert!(cache.join(&web).join("metadata/root.json").exists());
    let out = as_sam(&["push", &oci(&l1, "v1"), &format!("{app}:v1"), "--trust"]).ok();
    assert!(out.stdout.contains("Successfully signed"), "{out}");
    let v = as_sam(&["trust", "inspect", &app]).ok();
    assert!(v.stdout.contains("\"v1\""), "{v}");

    // The switch off and on again: every repository of this registry starts afresh.
    as_owner(&[
        "config",
        "content-trust",
        "update",
        "--status",
        "disabled",
        "--yes",
        "--server",
        &srv.host(),
    ])
    .ok();
    assert!(!cache.join(host_of(&app)).exists());
    enable_trust_as_owner(&srv).await;
    for repo in [&app, &web] {
        let out = as_sam(&["push", &oci(&l1, "v1"), &format!("{repo}:v1"), "--trust"]).ok();
        assert!(out.stdout.contains("Successfully signed"), "{out}");
    }
}

fn host_of(gun: &str) -> &str {
    gun.split('/').next().unwrap()
}
