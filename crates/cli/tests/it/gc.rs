//! Garbage collection on a running server, with authentication on: what it removes and keeps
//! (`berth gc`, dry runs, untagged and signed manifests, abandoned uploads, the audit log), and
//! collection in a loop while pushes and deletes go on, on the embedded store and on two
//! distributed nodes.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::auth_support::*;
use crate::cluster::*;
use crate::harness::*;
use crate::trust_harness::*;

/// Seconds of grace the servers here run with (`--gc-grace`): long enough for any push in
/// these tests (first blob to manifest), short enough to wait out.
const GRACE: u64 = 3;

fn berth(srv: &Server, home: &Path, args: &[&str]) -> Out {
    let mut c = isolated(env!("CARGO_BIN_EXE_berth"), home);
    c.env("BERTH_CONFIG_DIR", home.join("berth-config"))
        .env("BERTH_USERNAME", "owner")
        .env("BERTH_PASSWORD", OWNER_PASSWORD)
        .args(args)
        .args(["--server", &srv.host(), "--ca-file"])
        .arg(srv.ca_path());
    run(&mut c, None)
}

/// Every blob of `img`.
fn blobs_of(img: &Image) -> Vec<Vec<u8>> {
    std::iter::once(img.config.clone())
        .chain(img.layers.iter().cloned())
        .collect()
}

/// The image is whole in `repo`: its manifest by digest and every blob, each hashing to its
/// digest.
async fn assert_whole(srv: &Server, repo: &str, img: &Image) {
    let r = srv
        .get_with(
            &format!("/v2/{repo}/manifests/{}", img.digest),
            &[("accept", OCI_MANIFEST)],
        )
        .await;
    r.expect(200);
    assert_eq!(sha256(&r.body), img.digest, "{repo}@{}", img.digest);
    for b in blobs_of(img) {
        let d = sha256(&b);
        let r = srv.get(&format!("/v2/{repo}/blobs/{d}")).await;
        r.expect(200);
        assert_eq!(sha256(&r.body), d, "{repo} blob {d}");
    }
}

/// Whether the embedded store holds a blob file for `digest`.
fn blob_file(data: &Path, digest: &str) -> bool {
    let hex = hex_of(digest);
    data.join("blobs/sha256").join(&hex[..2]).join(hex).exists()
}

async fn gc_api(srv: &Server, body: Value) -> Value {
    admin(srv, Method::POST, "gc", Some(body)).await
}

#[tokio::test]
async fn gc_removes_what_nothing_references_and_keeps_tagged_and_signed_content() {
    let grace = GRACE.to_string();
    let mut srv = Server::start_with_auth_args(&["--gc-grace", &grace]);
    harness_acts_as(&mut srv, &Cred::owner());
    enable_trust(&srv).await;
    let home = tempfile::tempdir().unwrap();
    let data = srv.data_dir().to_path_buf();
    let mut rng = Rng::new();

    // Kept: a tagged image. Garbage: a deleted image's blobs, a loose blob, an abandoned upload.
    let kept = srv
        .push_image("keep/app", Some("v1"), "amd64", &mut rng)
        .await;
    let gone = srv
        .push_image("gone/app", Some("v1"), "amd64", &mut rng)
        .await;
    srv.delete(&format!("/v2/gone/app/manifests/{}", gone.digest))
        .await
        .expect(202);
    let loose = rng.bytes(777);
    let loose_d = srv.push_blob("loose/app", &loose).await;
    let abandoned = srv.start_upload("loose/app").await;
    srv.patch_stream(&abandoned, &rng.bytes(100))
        .await
        .expect(202);
    // Untagged: an image pushed by digest, and a signed image whose tag moved on.
    let untagged = srv.push_image("keep/app", None, "arm64", &mut rng).await;
    let signed = srv
        .push_image("keep/app", Some("s"), "amd64", &mut rng)
        .await;
    let keys = tempfile::tempdir().unwrap();
    owner_trust_client(&srv, &gun(&srv, "keep/app"), keys.path())
        .sign("s", &signed.digest, signed.manifest.len() as u64)
        .await
        .unwrap();
    let newer = srv
        .push_image("keep/app", Some("s"), "amd64", &mut rng)
        .await;

    // Within the grace period nothing goes, not even with --untagged.
    let r = gc_api(&srv, json!({"untagged": true})).await;
    assert_eq!(
        (&r["manifests"], &r["blobs"], &r["uploads"]),
        (&json!(0), &json!(0), &json!(0)),
        "{r}"
    );
    tokio::time::sleep(Duration::from_secs(GRACE + 1)).await;

    // A dry run counts and changes nothing.
    let out = berth(
        &srv,
        home.path(),
        &["gc", "--dry-run", "--untagged", "--json"],
    )
    .ok();
    let dry: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    let gone_bytes: u64 = blobs_of(&gone).iter().map(|b| b.len() as u64).sum();
    assert_eq!(dry["dryRun"], json!(true), "{dry}");
    assert_eq!(
        dry["manifests"],
        json!(1),
        "only the unsigned untagged one: {dry}"
    );
    assert_eq!(
        dry["blobs"],
        json!(4),
        "the deleted image's 3 and the loose one: {dry}"
    );
    assert_eq!(
        dry["bytes"],
        json!(gone_bytes + loose.len() as u64),
        "{dry}"
    );
    assert_eq!(dry["uploads"], json!(1), "{dry}");
    srv.head(&format!("/v2/loose/app/blobs/{loose_d}"))
        .await
        .expect(200);
    assert_whole(&srv, "keep/app", &untagged).await;

    // While a backup holds gc.lock (shared), blobs stay; the rest is collected as usual.
    {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .open(data.join("gc.lock"))
            .unwrap();
        f.lock_shared().unwrap();
        let r = gc_api(&srv, json!({"dryRun": true})).await;
        assert_eq!(r["blobs"], json!(0), "{r}");
        assert!(
            r["blobsSkipped"].as_str().unwrap_or("").contains("backup"),
            "{r}"
        );
        srv.head(&format!("/v2/loose/app/blobs/{loose_d}"))
            .await
            .expect(200);
    }

    // The real run, as an operator runs it.
    let out = berth(&srv, home.path(), &["gc", "--untagged"]).ok();
    assert!(
        out.stdout
            .contains("garbage collection removed: 1 manifests, 7 blobs"),
        "the untagged image goes with its 3 blobs, in the same run: {out}"
    );
    assert!(out.stdout.contains("1 upload sessions"), "{out}");
    for b in blobs_of(&gone).iter().chain([&loose]) {
        let d = sha256(b);
        assert!(!blob_file(&data, &d), "{d} still on disk");
    }
    srv.head(&format!("/v2/loose/app/blobs/{loose_d}"))
        .await
        .expect(404);
    srv.head(&format!("/v2/gone/app/blobs/{}", sha256(&gone.config)))
        .await
        .expect(404);
    srv.get(&format!("/v2/keep/app/manifests/{}", untagged.digest))
        .await
        .expect(404);
    for b in blobs_of(&untagged) {
        assert!(!blob_file(&data, &sha256(&b)));
    }
    // Kept: tagged, and untagged-but-signed (the trust data still names it).
    for img in [&kept, &signed, &newer] {
        assert_whole(&srv, "keep/app", img).await;
        for b in blobs_of(img) {
            assert!(blob_file(&data, &sha256(&b)));
        }
    }
    let r = srv
        .send(Method::PATCH, &abandoned, &[], Some(vec![1]))
        .await;
    r.expect_error(404, "BLOB_UPLOAD_UNKNOWN");

    // Audited, with the figures.
    let audit = admin(&srv, Method::GET, "audit?action=gc", None).await;
    let details: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {}", e["action"], e["detail"]))
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.contains("gc.run") && d.contains("manifests=1 blobs=7")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("gc.dry-run")),
        "{details:?}"
    );

    // Asked explicitly, signed untagged manifests go too.
    let r = gc_api(&srv, json!({"untagged": true, "includeSigned": true})).await;
    assert_eq!(
        (&r["manifests"], &r["blobs"]),
        (&json!(1), &json!(3)),
        "{r}"
    );
    srv.get(&format!("/v2/keep/app/manifests/{}", signed.digest))
        .await
        .expect(404);
    assert_whole(&srv, "keep/app", &kept).await;
    assert_whole(&srv, "keep/app", &newer).await;

    // Only an Owner collects.
    create_user(&srv, "puller", "puller-password-123").await;
    assign(&srv, "AcrPull", "puller", None).await;
    let r = admin_as(
        &srv,
        &Cred::basic("puller", "puller-password-123"),
        Method::POST,
        "gc",
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status, 403, "{r}");
}

/// What one run of [`push_and_collect`] did.
#[derive(Debug, Default)]
struct Loop {
    pushed: usize,
    deleted: usize,
    untagged: usize,
    gc_runs: usize,
    freed_blobs: u64,
    freed_manifests: u64,
}

/// Pushers (through every node in turn) push fresh images, delete some and push some untagged,
/// while `collector` runs garbage collection back to back for `secs`. Then, past the grace
/// period, one more collection: every acknowledged tagged image is whole, every deleted or
/// untagged one is gone, and the collections together freed exactly their blobs.
async fn push_and_collect(nodes: &[&Server], collector: &Server, secs: u64) -> Loop {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let pusher = |p: usize| async move {
        let mut rng = Rng::new();
        let (mut kept, mut garbage) = (Vec::new(), Vec::new());
        let mut i = 0usize;
        while Instant::now() < deadline {
            let node = nodes[(p + i) % nodes.len()];
            let repo = format!("loop/p{p}");
            match i % 4 {
                // Untagged: garbage once the grace period is over.
                3 => {
                    let img = node.push_image(&repo, None, "amd64", &mut rng).await;
                    garbage.push((repo, img, false));
                }
                // Deleted right after the push.
                2 => {
                    let tag = format!("t{i}");
                    let img = node.push_image(&repo, Some(&tag), "amd64", &mut rng).await;
                    node.delete(&format!("/v2/{repo}/manifests/{}", img.digest))
                        .await
                        .expect(202);
                    garbage.push((repo, img, true));
                }
                _ => {
                    let tag = format!("t{i}");
                    let img = node.push_image(&repo, Some(&tag), "amd64", &mut rng).await;
                    kept.push((repo, img));
                }
            }
            i += 1;
        }
        (kept, garbage)
    };
    let collect = async {
        let (mut runs, mut blobs, mut manifests) = (0usize, 0u64, 0u64);
        while Instant::now() < deadline {
            let r = gc_api(collector, json!({"untagged": true})).await;
            runs += 1;
            blobs += r["blobs"].as_u64().unwrap();
            manifests += r["manifests"].as_u64().unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (runs, blobs, manifests)
    };
    let (pushed, (runs, mut blobs, mut manifests)) =
        tokio::join!(futures::future::join_all((0..3).map(pusher)), collect);
    tokio::time::sleep(Duration::from_secs(GRACE + 1)).await;
    let last = gc_api(collector, json!({"untagged": true})).await;
    blobs += last["blobs"].as_u64().unwrap();
    manifests += last["manifests"].as_u64().unwrap();

    let mut out = Loop {
        gc_runs: runs + 1,
        freed_blobs: blobs,
        freed_manifests: manifests,
        ..Loop::default()
    };
    for (kept, garbage) in &pushed {
        out.pushed += kept.len() + garbage.len();
        for (repo, img) in kept {
            // Through every node: none serves a blob another collected.
            for n in nodes {
                assert_whole(n, repo, img).await;
            }
        }
        for (repo, img, deleted) in garbage {
            if *deleted {
                out.deleted += 1;
            } else {
                out.untagged += 1;
            }
            collector
                .get(&format!("/v2/{repo}/manifests/{}", img.digest))
                .await
                .expect(404);
            for b in blobs_of(img) {
                collector
                    .head(&format!("/v2/{repo}/blobs/{}", sha256(&b)))
                    .await
                    .expect(404);
            }
        }
    }
    // Every blob is unique to its image: exactly the garbage images' blobs were freed.
    assert_eq!(
        out.freed_blobs,
        3 * (out.deleted + out.untagged) as u64,
        "{out:?}"
    );
    assert_eq!(out.freed_manifests, out.untagged as u64, "{out:?}");
    assert!(out.pushed >= 12, "too few pushes to mean anything: {out:?}");
    assert!(out.gc_runs >= 5, "{out:?}");
    println!("gc while pushing: {out:?}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_in_a_loop_while_pushes_and_deletes_go_on_keeps_every_acknowledged_image() {
    let grace = GRACE.to_string();
    let mut srv = Server::start_with_auth_args(&["--gc-grace", &grace]);
    harness_acts_as(&mut srv, &Cred::owner());
    let out = push_and_collect(&[&srv], &srv, 15).await;
    assert!(out.deleted > 0 && out.untagged > 0, "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_on_one_distributed_node_while_both_take_pushes_keeps_every_acknowledged_image() {
    let backing = Backing::new();
    let tls = SharedTls::generate();
    let node = || {
        let args = vec![
            "--tls-cert".to_owned(),
            tls.cert().display().to_string(),
            "--tls-key".to_owned(),
            tls.key().display().to_string(),
            "--gc-grace".to_owned(),
            GRACE.to_string(),
        ];
        let mut s = Server::start_node(args, backing.env(), tls.ca());
        harness_acts_as(&mut s, &Cred::owner());
        s
    };
    let (a, b) = (node(), node());
    let out = push_and_collect(&[&a, &b], &b, 15).await;
    assert!(out.deleted > 0 && out.untagged > 0, "{out:?}");
}
