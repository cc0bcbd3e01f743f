//! `berth backup` and `berth restore` (issue 13): a backup taken while skopeo, the harness's
//! HTTP pushes, `berth push --trust` and the notary CLI write to the server, restored into a new
//! data dir and served again: every tag acknowledged before the backup started is there with
//! its digest, every blob verifies, every signed tag verifies with fresh clients, and the
//! restored server's keys still sign new publishes. Then what restore refuses (a damaged or
//! unfinished backup, a running server's data dir, a non-empty one), and the gc.lock protocol
//! between backups and garbage collection. Authentication is on throughout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::auth_support::Cred;
use crate::cluster::{Skopeo, owner_creds};
use crate::harness::*;
use crate::trust_cli::{Berth, new_layout, oci};
use crate::trust_harness::*;

/// `berth ARGS` with nothing of the caller's environment but `env`.
fn berth(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = isolated(env!("CARGO_BIN_EXE_berth"), home);
    c.envs(env.iter().copied()).args(args);
    run(&mut c, None)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Every regular file under `root` (relative path -> bytes).
fn files_under(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// Asserts 0700 on every directory and 0600 on every file under `root` (itself included).
fn assert_private(root: &Path) {
    assert_eq!(mode(root), 0o700, "{}", root.display());
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                assert_eq!(mode(&e.path()), 0o700, "{}", e.path().display());
                stack.push(e.path());
            } else {
                assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
            }
        }
    }
}

/// The backup's manifest.
fn manifest(dest: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dest.join("BACKUP.json")).unwrap()).unwrap()
}

/// What a writer had acknowledged, and when.
#[derive(Clone, Debug)]
enum Ack {
    /// repository, tag, manifest digest
    Tag(String, String, String),
    /// GUN, target name, sha256 hex, size
    Signed(String, String, String, u64),
}

type Acks = Arc<Mutex<Vec<(Instant, Ack)>>>;

fn record(acks: &Acks, a: Ack) {
    acks.lock().unwrap().push((Instant::now(), a));
}

/// Every tag of every repository of `srv` resolves to a manifest whose blobs are all there and
/// hash to their digests; returns repository -> tag -> digest, and the blobs checked.
async fn check_every_tag(srv: &Server) -> (BTreeMap<String, BTreeMap<String, String>>, usize) {
    let cat = srv.get("/v2/_catalog?n=10000").await;
    cat.expect(200);
    let mut out = BTreeMap::new();
    let mut blobs = std::collections::BTreeSet::new();
    for repo in cat.json()["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        let tags = srv.get(&format!("/v2/{repo}/tags/list?n=10000")).await;
        tags.expect(200);
        let mut by_tag = BTreeMap::new();
        for tag in tags.json()["tags"].as_array().unwrap() {
            let tag = tag.as_str().unwrap();
            let m = srv.get(&format!("/v2/{repo}/manifests/{tag}")).await;
            m.expect(200);
            let digest = m.must_header("docker-content-digest");
            assert_eq!(sha256(&m.body), digest, "{repo}:{tag}");
            let body: Value = serde_json::from_slice(&m.body).unwrap();
            let mut descs = vec![body["config"].clone()];
            descs.extend(body["layers"].as_array().cloned().unwrap_or_default());
            for d in descs {
                let bd = d["digest"].as_str().unwrap().to_owned();
                if !blobs.insert((repo.to_owned(), bd.clone())) {
                    continue;
                }
                let b = srv.get(&format!("/v2/{repo}/blobs/{bd}")).await;
                b.expect(200);
                assert_eq!(sha256(&b.body), bd, "blob of {repo}:{tag}");
                assert_eq!(Some(b.body.len() as u64), d["size"].as_u64(), "{repo} {bd}");
            }
            by_tag.insert(tag.to_owned(), digest);
        }
        out.insert(repo.to_owned(), by_tag);
    }
    (out, blobs.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_during_pushes_and_publishes_restores_every_acknowledged_and_signed_tag() {
    let mut srv = start_server();
    enable_trust(&srv).await;
    let sam = signer(&srv, "sam", "signed/*").await;
    let nina = signer(&srv, "nina", "signed/*").await;
    let rita = reader(&srv, "rita", "signed/*").await;
    let port = srv.port;
    let work = tempfile::tempdir().unwrap();
    let mut rng = Rng::new();
    let acks: Acks = Arc::default();

    // Some bulk, so that copying takes a while and the writers below overlap it.
    for i in 0..3 {
        let img = Image::build("amd64", &mut rng, 2, 12 << 20);
        srv.push_image_blobs("bulk/app", &img).await;
        srv.push_manifest("bulk/app", &format!("b{i}"), OCI_MANIFEST, &img.manifest)
            .await;
        record(
            &acks,
            Ack::Tag("bulk/app".into(), format!("b{i}"), img.digest.clone()),
        );
    }

    // Signed before the backup by clients that publish again after the restore.
    let berth_gun = gun(&srv, "signed/berth");
    let sam_berth = Berth::new(&srv).logged_in(&sam);
    for t in ["s1", "s2"] {
        let (l, img) = new_layout(work.path(), t, &mut rng);
        sam_berth
            .run(&["push", &oci(&l, t), &format!("{berth_gun}:{t}"), "--trust"])
            .ok();
        record(
            &acks,
            Ack::Tag("signed/berth".into(), t.into(), img.digest.clone()),
        );
        record(
            &acks,
            Ack::Signed(
                berth_gun.clone(),
                t.into(),
                hex_of(&img.digest).into(),
                img.manifest.len() as u64,
            ),
        );
    }
    let notary_gun = gun(&srv, "signed/notary");
    let nina_notary = Notary::with_login(&srv, &nina);
    nina_notary.run(&["init", &notary_gun, "-p"]).ok();
    for t in ["n1", "n2"] {
        let content = format!("{t} {}\n", rng.hex(16));
        let f = nina_notary.work().join(format!("{t}.txt"));
        std::fs::write(&f, &content).unwrap();
        nina_notary.run(&["add", &notary_gun, t, s(&f), "-p"]).ok();
        record(
            &acks,
            Ack::Signed(
                notary_gun.clone(),
                t.into(),
                sha256_hex(content.as_bytes()),
                content.len() as u64,
            ),
        );
    }

    // Writers that keep going while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    {
        // skopeo copies of new images.
        let (stop, acks, host) = (stop.clone(), acks.clone(), srv.host());
        let skopeo = Skopeo::new(&srv.ca_path());
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng::new();
        writers.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let tag = format!("k{i}");
                let (l, img) = new_layout(dir.path(), &tag, &mut rng);
                let dest = format!("docker://{host}/live/skopeo:{tag}");
                skopeo.copy(&oci(&l, &tag), &dest, &owner_creds()).ok();
                record(&acks, Ack::Tag("live/skopeo".into(), tag, img.digest));
                i += 1;
            }
        }));
    }
    {
        // berth push --trust into another repository, by another signer's keys.
        let (stop, acks) = (stop.clone(), acks.clone());
        let b = Berth::new(&srv).logged_in(&nina);
        let gun = gun(&srv, "signed/live-berth");
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng::new();
        writers.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let tag = format!("p{i}");
                let (l, img) = new_layout(dir.path(), &tag, &mut rng);
                b.run(&["push", &oci(&l, &tag), &format!("{gun}:{tag}"), "--trust"])
                    .ok();
                record(
                    &acks,
                    Ack::Tag("signed/live-berth".into(), tag.clone(), img.digest.clone()),
                );
                let size = img.manifest.len() as u64;
                record(
                    &acks,
                    Ack::Signed(gun.clone(), tag, hex_of(&img.digest).into(), size),
                );
                i += 1;
            }
        }));
    }
    {
        // notary publishes of new targets.
        let (stop, acks) = (stop.clone(), acks.clone());
        let n = Notary::with_login(&srv, &sam);
        let gun = gun(&srv, "signed/live-notary");
        n.run(&["init", &gun, "-p"]).ok();
        let mut rng = Rng::new();
        writers.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let tag = format!("t{i}");
                let content = format!("{tag} {}\n", rng.hex(16));
                let f = n.work().join("target.txt");
                std::fs::write(&f, &content).unwrap();
                n.run(&["add", &gun, &tag, s(&f), "-p"]).ok();
                let hex = sha256_hex(content.as_bytes());
                record(
                    &acks,
                    Ack::Signed(gun.clone(), tag, hex, content.len() as u64),
                );
                i += 1;
            }
        }));
    }
    // The harness's own HTTP pushes, on this task.
    let http_pushes = async {
        let mut rng = Rng::new();
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            let img = Image::build("arm64", &mut rng, 2, 64 << 10);
            srv.push_image_blobs("live/http", &img).await;
            let tag = format!("h{i}");
            srv.push_manifest("live/http", &tag, OCI_MANIFEST, &img.manifest)
                .await;
            record(&acks, Ack::Tag("live/http".into(), tag, img.digest));
            i += 1;
        }
    };
    let dest = work.path().join("backup");
    let data = srv.data_dir().to_path_buf();
    let backing_up = async {
        // Every writer has written a few times before the backup starts.
        let kinds = |acks: &Acks| {
            let a = acks.lock().unwrap();
            ["live/skopeo", "signed/live-berth", "live/http"]
                .iter()
                .all(|r| {
                    a.iter()
                        .filter(|(_, x)| matches!(x, Ack::Tag(repo, ..) if repo == r))
                        .count()
                        >= 3
                })
                && a.iter()
                    .filter(|(_, x)| matches!(x, Ack::Signed(g, ..) if g.ends_with("live-notary")))
                    .count()
                    >= 3
        };
        let warm = Instant::now();
        while !kinds(&acks) {
            assert!(
                warm.elapsed() < Duration::from_secs(120),
                "writers did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (home, d, dd) = (work.path().to_path_buf(), dest.clone(), data.clone());
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(move || {
            berth(&home, &["backup", s(&d), "--data-dir", s(&dd)], &[])
        })
        .await
        .unwrap();
        let ended = Instant::now();
        stop.store(true, Ordering::SeqCst);
        (out, started, ended)
    };
    let ((out, started, ended), ()) = tokio::join!(backing_up, http_pushes);
    for w in writers {
        w.join().expect("a writer failed");
    }
    let out = out.ok();
    assert!(out.stdout.contains("backed up"), "{out}");
    assert!(
        out.stderr.contains("WARNING") && out.stderr.contains("trust-key-passphrase"),
        "the passphrase warning: {out}"
    );
    let acks = acks.lock().unwrap().clone();
    let before: Vec<Ack> = acks
        .iter()
        .filter(|(at, _)| *at < started)
        .map(|(_, a)| a.clone())
        .collect();
    let during = acks
        .iter()
        .filter(|(at, _)| *at >= started && *at <= ended)
        .count();
    assert!(
        during > 0,
        "no write was acknowledged while the backup ran ({:?}): nothing was concurrent",
        ended - started
    );

    // The backup: private, complete per its manifest, the database a whole SQLite file.
    assert_private(&dest);
    let m = manifest(&dest);
    let listed = m["files"].as_array().unwrap();
    let on_disk = files_under(&dest);
    assert_eq!(on_disk.len(), listed.len() + 1, "{m}");
    let mut bytes = 0u64;
    for f in listed {
        let data = &on_disk[Path::new(f["path"].as_str().unwrap())];
        assert_eq!(f["size"].as_u64(), Some(data.len() as u64), "{f}");
        assert_eq!(f["sha256"].as_str().unwrap(), sha256_hex(data), "{f}");
        bytes += data.len() as u64;
    }
    for must in [
        "metadata.db",
        "tls/ca.crt",
        "tls/server.key",
        "trust-key-passphrase",
    ] {
        assert!(on_disk.contains_key(Path::new(must)), "{must} not in {m}");
    }
    assert!(!on_disk.keys().any(|p| {
        let p = p.to_string_lossy();
        p.contains("-wal") || p.contains("uploads") || p.contains(".lock")
    }));
    let db = rusqlite::Connection::open(dest.join("metadata.db")).unwrap();
    let tables: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(tables > 10, "{tables} tables in the copy");
    drop(db);

    // Restored into a new directory, served on the same address (the GUNs name it).
    let restored = tempfile::tempdir().unwrap();
    let target = restored.path().join("data");
    let out = berth(
        work.path(),
        &["restore", s(&dest), "--data-dir", s(&target)],
        &[],
    )
    .ok();
    assert!(out.stdout.contains("restored"), "{out}");
    assert_private(&target);
    let status = srv.stop();
    assert!(status.success(), "{}", srv.logs());
    let data_tmp = tempfile::TempDir::with_prefix_in("served", restored.path()).unwrap();
    std::fs::remove_dir(data_tmp.path()).unwrap();
    std::fs::rename(&target, data_tmp.path()).unwrap();
    let mut srv2 = Server::start_configured(data_tmp, &format!("127.0.0.1:{port}"), &[], &[]);
    harness_acts_as(&mut srv2, &Cred::owner());

    // Every tag: its manifest and every blob verify; those acknowledged before the backup are
    // there with their digests.
    let (tags, blobs) = check_every_tag(&srv2).await;
    let mut tags_before = 0;
    for a in &before {
        if let Ack::Tag(repo, tag, digest) = a {
            assert_eq!(
                tags.get(repo).and_then(|t| t.get(tag)),
                Some(digest),
                "{repo}:{tag}, acknowledged before the backup, is not restored as it was"
            );
            tags_before += 1;
        }
    }

    // Every signed tag: fresh clients (trust on first use) see what was signed.
    let mut by_gun: BTreeMap<String, Vec<(String, String, u64)>> = BTreeMap::new();
    for a in &before {
        if let Ack::Signed(gun, tag, hex, size) = a {
            by_gun
                .entry(gun.clone())
                .or_default()
                .push((tag.clone(), hex.clone(), *size));
        }
    }
    let mut signed_before = 0;
    let mut signed_total = 0;
    for g in [
        &berth_gun,
        &notary_gun,
        &gun(&srv2, "signed/live-berth"),
        &gun(&srv2, "signed/live-notary"),
    ] {
        let listed = Notary::with_login(&srv2, &rita).list(g, &[]);
        signed_total += listed.len();
        for (tag, hex, size) in by_gun.get(g).into_iter().flatten() {
            assert_eq!(
                listed.get(tag).map(|(h, n, _)| (h.as_str(), *n)),
                Some((hex.as_str(), *size)),
                "{g}:{tag} signed before the backup: {listed:?}"
            );
            signed_before += 1;
        }
        // A signed image tag names the manifest the registry serves for it.
        if let Some(repo) = g.split_once('/').map(|(_, r)| r)
            && let Some(served) = tags.get(repo)
        {
            for (tag, (hex, _, _)) in &listed {
                if let Some(d) = served.get(tag) {
                    assert_eq!(hex_of(d), hex, "{g}:{tag}");
                }
            }
        }
    }
    let inspect = Berth::new(&srv2)
        .logged_in(&rita)
        .run(&["trust", "inspect", &berth_gun])
        .ok();
    let v: Value = serde_json::from_str(&inspect.stdout).unwrap();
    let signed: BTreeMap<&str, &str> = v[0]["SignedTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["SignedTag"].as_str().unwrap(),
                t["Digest"].as_str().unwrap(),
            )
        })
        .collect();
    for t in ["s1", "s2"] {
        assert_eq!(
            signed.get(t).copied(),
            tags["signed/berth"].get(t).map(|d| hex_of(d)),
            "{inspect}"
        );
    }

    // The restored server's keys still sign: both publishers publish again, and a fresh client
    // verifies the result.
    let (l, img) = new_layout(work.path(), "after", &mut rng);
    sam_berth
        .run(&[
            "push",
            &oci(&l, "after"),
            &format!("{berth_gun}:after"),
            "--trust",
        ])
        .ok();
    let listed = Notary::with_login(&srv2, &rita).list(&berth_gun, &[]);
    assert_eq!(
        listed.get("after").map(|(h, _, _)| h.as_str()),
        Some(hex_of(&img.digest)),
        "{listed:?}"
    );
    let f = nina_notary.work().join("after.txt");
    std::fs::write(&f, "after the restore\n").unwrap();
    nina_notary
        .run(&["add", &notary_gun, "after", s(&f), "-p"])
        .ok();
    let listed = Notary::with_login(&srv2, &rita).list(&notary_gun, &[]);
    assert_eq!(
        listed.get("after").map(|(h, _, _)| h.clone()),
        Some(sha256_hex(b"after the restore\n")),
        "{listed:?}"
    );
    let total_tags: usize = tags.values().map(BTreeMap::len).sum();
    println!(
        "backup under load: {} files, {bytes} bytes, taken in {:?} while {during} writes were \
         acknowledged; restored: {total_tags} tags ({tags_before} acknowledged before the backup, \
         all there), {blobs} blobs verified, {signed_total} signed tags ({signed_before} signed \
         before the backup, all verified), publishing after the restore works",
        listed_len(&m),
        ended - started,
    );
}

fn listed_len(m: &Value) -> usize {
    m["files"].as_array().map_or(0, Vec::len)
}

/// A small registry with a backup of it: (server, backup dir, scratch dir).
async fn backed_up() -> (Server, PathBuf, tempfile::TempDir) {
    let srv = start_server();
    let mut rng = Rng::new();
    for t in ["a", "b"] {
        let img = Image::build("amd64", &mut rng, 2, 4096);
        srv.push_image_blobs("small/app", &img).await;
        srv.push_manifest("small/app", t, OCI_MANIFEST, &img.manifest)
            .await;
    }
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("backup");
    berth(
        work.path(),
        &["backup", s(&dest), "--data-dir", s(srv.data_dir())],
        &[],
    )
    .ok();
    (srv, dest, work)
}

fn copy_dir(from: &Path, to: &Path) {
    for (rel, data) in files_under(from) {
        std::fs::create_dir_all(to.join(&rel).parent().unwrap()).unwrap();
        std::fs::write(to.join(rel), data).unwrap();
    }
}

/// Something done to a copy of a backup.
type Damage<'a> = dyn Fn(&Path) + 'a;

#[tokio::test]
async fn a_damaged_or_unfinished_backup_is_refused_and_nothing_is_written() {
    let (_srv, dest, work) = backed_up().await;
    let some_blob = files_under(&dest)
        .into_keys()
        .find(|p| p.starts_with("blobs/sha256"))
        .expect("a blob in the backup");
    let cases: [(&str, &Damage<'_>, &str); 4] = [
        (
            "one blob byte flipped",
            &|b: &Path| {
                let p = b.join(&some_blob);
                let mut d = std::fs::read(&p).unwrap();
                let mid = d.len() / 2;
                d[mid] ^= 0x01;
                std::fs::write(&p, d).unwrap();
            },
            "does not match its sha256 in BACKUP.json",
        ),
        (
            "a blob missing",
            &|b: &Path| std::fs::remove_file(b.join(&some_blob)).unwrap(),
            "is missing",
        ),
        (
            "no BACKUP.json",
            &|b: &Path| std::fs::remove_file(b.join("BACKUP.json")).unwrap(),
            "has no BACKUP.json",
        ),
        (
            "the database altered",
            &|b: &Path| {
                let p = b.join("metadata.db");
                let mut d = std::fs::read(&p).unwrap();
                d.push(0);
                std::fs::write(&p, d).unwrap();
            },
            "metadata.db has",
        ),
    ];
    for (what, damage, expected) in cases {
        let copy = work.path().join(format!("copy-{}", what.replace(' ', "-")));
        copy_dir(&dest, &copy);
        damage(&copy);
        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("data");
        let out = berth(
            work.path(),
            &["restore", s(&copy), "--data-dir", s(&target)],
            &[],
        )
        .fails();
        assert!(out.stderr.contains(expected), "{what}: {out}");
        assert!(out.stderr.contains("nothing was restored"), "{what}: {out}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "one line: {out}");
        assert!(!target.exists(), "{what}: {out}");
        assert_eq!(
            std::fs::read_dir(parent.path()).unwrap().count(),
            0,
            "{what}: something was written beside the target"
        );
    }
    // The undamaged backup restores.
    let parent = tempfile::tempdir().unwrap();
    berth(
        work.path(),
        &[
            "restore",
            s(&dest),
            "--data-dir",
            s(&parent.path().join("data")),
        ],
        &[],
    )
    .ok();
    // The passphrase file, kept apart as the backup's warning asks, is the one file that may
    // be missing: restore says to put it back.
    let apart = work.path().join("passphrase-apart");
    copy_dir(&dest, &apart);
    std::fs::remove_file(apart.join("trust-key-passphrase")).unwrap();
    let target = parent.path().join("data2");
    let out = berth(
        work.path(),
        &["restore", s(&apart), "--data-dir", s(&target)],
        &[],
    )
    .ok();
    assert!(out.stderr.contains("has no trust-key-passphrase"), "{out}");
    assert!(target.join("metadata.db").exists());
    assert!(!target.join("trust-key-passphrase").exists());
}

#[tokio::test]
async fn restore_refuses_a_running_servers_data_dir_and_a_non_empty_one() {
    let (mut srv, dest, work) = backed_up().await;
    let data = srv.data_dir().to_path_buf();
    let before = files_under(&data).into_keys().collect::<Vec<_>>();
    let out = berth(
        work.path(),
        &["restore", s(&dest), "--data-dir", s(&data), "--force"],
        &[],
    )
    .fails();
    assert!(
        out.stderr.contains("another berth server is using"),
        "{out}"
    );
    assert_eq!(files_under(&data).into_keys().collect::<Vec<_>>(), before);

    // Stopped: still refused without --force, since it holds a registry.
    assert!(srv.stop().success());
    let out = berth(
        work.path(),
        &["restore", s(&dest), "--data-dir", s(&data)],
        &[],
    )
    .fails();
    assert!(out.stderr.contains("is not empty"), "{out}");
    assert!(out.stderr.contains("--force"), "{out}");
    // A new push after the backup, so replacing is visible.
    srv.restart_stopped();
    harness_acts_as(&mut srv, &Cred::owner());
    let mut rng = Rng::new();
    srv.push_image("small/app", Some("later"), "amd64", &mut rng)
        .await;
    srv.get("/v2/small/app/manifests/later").await.expect(200);
    assert!(srv.stop().success());
    let out = berth(
        work.path(),
        &["restore", s(&dest), "--data-dir", s(&data), "--force"],
        &[],
    )
    .ok();
    assert!(out.stderr.contains(".replaced-"), "{out}");
    let parent = data.parent().unwrap();
    let name = data.file_name().unwrap().to_string_lossy().into_owned();
    let aside: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{name}.replaced-"))
        })
        .collect();
    assert_eq!(aside.len(), 1, "the old data dir is kept aside");
    assert!(aside[0].path().join("metadata.db").exists());
    assert_private(&data);
    srv.restart_stopped();
    harness_acts_as(&mut srv, &Cred::owner());
    srv.get("/v2/small/app/manifests/a").await.expect(200);
    srv.get("/v2/small/app/manifests/later").await.expect(404);
    std::fs::remove_dir_all(aside[0].path()).unwrap();
}

#[test]
fn backup_refuses_a_non_empty_destination_and_the_distributed_store() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("metadata.db"), b"").unwrap();
    let dest = work.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("old"), b"x").unwrap();
    let out = berth(
        work.path(),
        &["backup", s(&dest), "--data-dir", s(&data)],
        &[],
    )
    .fails();
    assert!(out.stderr.contains("is not empty"), "{out}");
    assert_eq!(std::fs::read(dest.join("old")).unwrap(), b"x");

    let fresh = work.path().join("fresh");
    let out = berth(
        work.path(),
        &["backup", s(&fresh), "--data-dir", s(&data)],
        &[("BERTH_STORE", "distributed")],
    )
    .fails();
    assert!(out.stderr.contains("distributed store"), "{out}");
    assert!(out.stderr.contains("README.md"), "{out}");
    assert!(!fresh.exists());
    let config = work.path().join("berth.toml");
    std::fs::write(&config, "[store]\nkind = \"distributed\"\n").unwrap();
    let out = berth(
        work.path(),
        &["backup", s(&fresh), "--config", s(&config)],
        &[],
    )
    .fails();
    assert!(out.stderr.contains("pg_dump"), "{out}");
    assert!(!fresh.exists());
}

/// The gc.lock protocol, seen from outside: garbage collection's exclusive `try_lock` on
/// DIR/gc.lock fails while a backup runs, and a backup waits while GC holds the lock.
#[tokio::test]
async fn gc_lock_excludes_garbage_collection_while_a_backup_runs() {
    let srv = start_server();
    let mut rng = Rng::new();
    // Big enough that the backup holds the lock for a noticeable time.
    let img = Image::build("amd64", &mut rng, 2, 48 << 20);
    srv.push_image_blobs("big/app", &img).await;
    srv.push_manifest("big/app", "v1", OCI_MANIFEST, &img.manifest)
        .await;
    let data = srv.data_dir().to_path_buf();
    let lock_path = data.join("gc.lock");
    let work = tempfile::tempdir().unwrap();

    // GC holds the lock: the backup says it waits, and copies nothing until GC lets go.
    let gc = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    gc.try_lock().expect("nobody else holds gc.lock");
    let dest = work.path().join("b1");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["backup", s(&dest), "--data-dir", s(&data)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let waiting = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup did not wait for GC"
    );
    assert!(!dest.join("metadata.db").exists() && !dest.join("BACKUP.json").exists());

    // GC lets go; from then on the backup holds the lock and GC's try_lock fails, until the
    // backup is done.
    drop(gc);
    let mut refused = 0u32;
    let mut granted_while_running = 0u32;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&lock_path)
            .unwrap();
        match f.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) => refused += 1,
            // Before the backup's blocked lock was granted: let go at once.
            Ok(()) => granted_while_running += 1,
            Err(e) => panic!("{e:?}"),
        }
        drop(f);
        std::thread::sleep(Duration::from_millis(1));
    };
    let err = waiting.join().unwrap();
    assert!(status.success(), "{err}");
    assert!(
        err.contains("waiting for a garbage collection run"),
        "{err}"
    );
    assert!(refused > 0, "GC's try_lock never failed during the backup");
    assert!(dest.join("BACKUP.json").exists());
    // Done: GC may take it again.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&lock_path)
        .unwrap();
    f.try_lock().expect("the backup released gc.lock");
    println!(
        "gc.lock: GC's try_lock refused {refused} times while the backup ran \
         ({granted_while_running} granted before the backup's waiting lock was)"
    );
}
