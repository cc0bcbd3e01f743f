//! The registry-wide content-trust switch and the per-repository trust reset: off by default with
//! a hint on how to turn it on, disabling wipes every repository's trust data but no image,
//! re-enabling lets a new root key take over (the lost-root-key recovery), and `berth trust reset`
//! wipes one repository only.

use std::path::Path;
use std::process::Command;

use reqwest::Method;

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_harness::*;

const HINT: &str = "berth config content-trust update --status enabled";

/// `berth` (the admin CLI) with an empty HOME, so no stored login or config is used, as the
/// bootstrap owner (the switch and the reset are Owner-only).
fn berth(home: &Path, args: &[&str]) -> Command {
    let mut c = isolated(env!("CARGO_BIN_EXE_berth"), home);
    c.env("BERTH_USERNAME", "owner")
        .env("BERTH_PASSWORD", OWNER_PASSWORD)
        .args(args);
    c
}

fn ca(srv: &Server) -> String {
    srv.ca_path().to_str().unwrap().to_owned()
}

async fn trust_status(srv: &Server) -> String {
    let r = srv.get("/api/v1/config/content-trust").await;
    r.expect(200);
    r.json()["status"].as_str().unwrap().to_owned()
}

/// A refusal because trust is off: 4xx, notary error shape, and the way to turn it on.
fn expect_disabled(r: &Resp) {
    assert!((400..500).contains(&r.status), "{r}");
    let e = trust_error(r);
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.contains(HINT), "no hint to `{HINT}`: {r}");
    // What notary and docker print for a 400 is the detail's Msg.
    if r.status == 400 && e["detail"].is_object() {
        let msg = e["detail"]["Error"]["Msg"].as_str().unwrap_or_default();
        assert!(
            msg.contains(HINT),
            "the client-visible Msg lacks the hint: {r}"
        );
    }
}

#[tokio::test]
async fn content_trust_is_disabled_by_default_and_says_how_to_enable_it() {
    let srv = start_server();
    let home = tempfile::tempdir().unwrap();
    assert_eq!(trust_status(&srv).await, "disabled");
    let out = run(
        &mut berth(
            home.path(),
            &[
                "config",
                "content-trust",
                "show",
                "--server",
                &srv.base,
                "--ca-file",
                &ca(&srv),
            ],
        ),
        None,
    )
    .ok();
    assert!(out.stdout.contains("disabled"), "{out}");

    let g = gun(&srv, "team/app");
    for file in [
        "root.json",
        "timestamp.json",
        "1.root.json",
        "targets/releases.json",
    ] {
        expect_trust_error(&tuf_get(&srv, &g, file).await, 404, "METADATA_NOT_FOUND");
    }
    expect_disabled(&tuf_get(&srv, &g, "timestamp.key").await);
    expect_disabled(&tuf_get(&srv, &g, "snapshot.key").await);
    expect_disabled(
        &srv.send(Method::POST, &tuf_path(&g, "timestamp.key"), &[], None)
            .await,
    );
    expect_disabled(
        &publish(
            &srv,
            &g,
            &[(
                "root",
                br#"{"signed":{"_type":"Root","version":1},"signatures":[]}"#,
            )],
        )
        .await,
    );

    // The real clients, as a signer of the repository, fail and pass the hint on.
    let alice = signer(&srv, "alice", "team/app").await;
    let n = Notary::with_login(&srv, &alice);
    let out = n.run(&["init", &g, "-p"]).fails();
    assert!(out.all().contains(HINT), "{out}");
    let d = Docker::logged_in(&srv, &alice);
    d.run(&["trust", "key", "generate", "alice"]).ok();
    let out = d
        .run(&["trust", "signer", "add", "--key", "alice.pub", "alice", &g])
        .fails();
    assert!(out.all().contains("content-trust"), "{out}");
    expect_trust_error(
        &tuf_get(&srv, &g, "root.json").await,
        404,
        "METADATA_NOT_FOUND",
    );

    // Enabling through the admin CLI makes the same client succeed.
    run(
        &mut berth(
            home.path(),
            &[
                "config",
                "content-trust",
                "update",
                "--status",
                "enabled",
                "--server",
                &srv.base,
                "--ca-file",
                &ca(&srv),
            ],
        ),
        None,
    )
    .ok();
    assert_eq!(trust_status(&srv).await, "enabled");
    n.run(&["init", &g, "-p"]).ok();
    tuf_get(&srv, &g, "root.json").await.expect(200);
}

#[tokio::test]
async fn disabling_wipes_all_trust_data_keeps_images_and_allows_a_new_root() {
    let srv = start_server();
    let home = tempfile::tempdir().unwrap();
    enable_trust(&srv).await;
    let mut rng = Rng::new();
    let app = gun(&srv, "team/app");
    let other = gun(&srv, "team/other");
    let alice = signer(&srv, "alice", "team/*").await;
    let n1 = Notary::with_login(&srv, &alice);
    n1.run(&["init", &app, "-p"]).ok();
    n1.run(&["addhash", &app, "v1", "9", "--sha256", &rng.hex(64), "-p"])
        .ok();
    n1.run(&["init", &other, "-p"]).ok();
    let img = srv
        .push_image("team/app", Some("v1"), "amd64", &mut rng)
        .await;
    let old_root = signed_of(&tuf_bytes(&srv, &app, "root.json").await);

    let ca_file = ca(&srv);
    let disable = |yes: bool| {
        let mut args = vec![
            "config",
            "content-trust",
            "update",
            "--status",
            "disabled",
            "--server",
            srv.base.as_str(),
            "--ca-file",
            ca_file.as_str(),
        ];
        if yes {
            args.push("--yes");
        }
        run(&mut berth(home.path(), &args), None)
    };
    // A signer may not flip the registry-wide switch.
    let mut as_signer = berth(
        home.path(),
        &[
            "config",
            "content-trust",
            "update",
            "--status",
            "disabled",
            "--yes",
            "--server",
            srv.base.as_str(),
            "--ca-file",
            ca_file.as_str(),
        ],
    );
    as_signer
        .env("BERTH_USERNAME", "alice")
        .env("BERTH_PASSWORD", "alice-signing-password-1");
    let out = run(&mut as_signer, None).fails();
    assert!(out.all().contains("Owner"), "{out}");
    assert_eq!(trust_status(&srv).await, "enabled");
    // Without --yes (and no terminal to ask on) nothing happens.
    let out = disable(false).fails();
    assert!(!out.stderr.trim().is_empty(), "{out}");
    assert_eq!(trust_status(&srv).await, "enabled");
    tuf_get(&srv, &app, "root.json").await.expect(200);

    disable(true).ok();
    assert_eq!(trust_status(&srv).await, "disabled");
    for g in [&app, &other] {
        for file in ["root.json", "targets.json", "timestamp.json"] {
            expect_trust_error(&tuf_get(&srv, g, file).await, 404, "METADATA_NOT_FOUND");
        }
    }
    // Images stay.
    let m = srv.get("/v2/team/app/manifests/v1").await;
    m.expect(200);
    assert_eq!(m.body, img.manifest);
    srv.get(&format!("/v2/team/app/manifests/{}", img.digest))
        .await
        .expect(200);

    // Enabling again does not bring the data back.
    enable_trust(&srv).await;
    for g in [&app, &other] {
        expect_trust_error(
            &tuf_get(&srv, g, "root.json").await,
            404,
            "METADATA_NOT_FOUND",
        );
    }
    // Someone who lost the root key starts over with a new one on the same GUN.
    let fresh = Notary::with_login(&srv, &alice);
    fresh.run(&["init", &app, "-p"]).ok();
    fresh
        .run(&["addhash", &app, "v2", "5", "--sha256", &rng.hex(64), "-p"])
        .ok();
    let new_root = signed_of(&tuf_bytes(&srv, &app, "root.json").await);
    assert_eq!(new_root["version"], 1, "{new_root}");
    assert_ne!(
        new_root["roles"]["root"]["keyids"], old_root["roles"]["root"]["keyids"],
        "a new root key must have been accepted"
    );
    let listed = Notary::with_login(&srv, &alice).list(&app, &[]);
    assert_eq!(listed.keys().collect::<Vec<_>>(), ["v2"], "{listed:?}");
}

#[tokio::test]
async fn trust_reset_wipes_one_repository_only() {
    let srv = start_server();
    let home = tempfile::tempdir().unwrap();
    enable_trust(&srv).await;
    let mut rng = Rng::new();
    let a = gun(&srv, "team/a");
    let a_local = format!("localhost:{}/team/a", srv.port);
    let b = gun(&srv, "team/b");
    let bob = signer(&srv, "bob", "team/*").await;
    let n = Notary::with_login(&srv, &bob);
    for g in [&a, &a_local, &b] {
        n.run(&["init", g, "-p"]).ok();
        n.run(&["addhash", g, "t", "1", "--sha256", &rng.hex(64), "-p"])
            .ok();
    }
    let b_before = [
        tuf_bytes(&srv, &b, "root.json").await,
        tuf_bytes(&srv, &b, "targets.json").await,
        tuf_bytes(&srv, &b, "snapshot.json").await,
        tuf_bytes(&srv, &b, "timestamp.json").await,
    ];

    let reset = |yes: bool| {
        let ca = ca(&srv);
        let mut args = vec!["trust", "reset", a.as_str(), "--ca-file", ca.as_str()];
        if yes {
            args.push("--yes");
        }
        run(&mut berth(home.path(), &args), None)
    };
    reset(false).fails();
    tuf_get(&srv, &a, "root.json").await.expect(200);
    // A signer of the repository may not wipe it: that is the Owner's recovery tool.
    let r = call(
        &srv,
        Method::DELETE,
        "/api/v1/trust/team/a",
        &bob,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 403, "{r}");
    tuf_get(&srv, &a, "root.json").await.expect(200);

    reset(true).ok();
    for g in [&a, &a_local] {
        for file in ["root.json", "1.root.json", "targets.json", "timestamp.json"] {
            expect_trust_error(&tuf_get(&srv, g, file).await, 404, "METADATA_NOT_FOUND");
        }
    }
    let b_after = [
        tuf_bytes(&srv, &b, "root.json").await,
        tuf_bytes(&srv, &b, "targets.json").await,
        tuf_bytes(&srv, &b, "snapshot.json").await,
        tuf_bytes(&srv, &b, "timestamp.json").await,
    ];
    assert!(
        b_before == b_after,
        "another repository's trust data changed"
    );
    assert!(n.list(&b, &[]).contains_key("t"));
    assert_eq!(trust_status(&srv).await, "enabled");

    // team/a starts over from a new root key.
    let fresh = Notary::with_login(&srv, &bob);
    fresh.run(&["init", &a, "-p"]).ok();
    assert!(fresh.list(&a, &[]).is_empty());

    // The admin API does the same for team/b.
    let r = srv.delete("/api/v1/trust/team/b").await;
    r.expect(200);
    expect_trust_error(
        &tuf_get(&srv, &b, "root.json").await,
        404,
        "METADATA_NOT_FOUND",
    );
    tuf_get(&srv, &a, "root.json").await.expect(200);
}
