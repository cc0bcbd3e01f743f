//! `berth push` / `berth pull` (and the berth-client library under them) against a real server:
//! round trips with a 256 MiB layer under a memory bound, docker-save archives, indexes and
//! platforms, cross-repository mounts, resumed uploads, and failed pulls that leave nothing.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_client::{BlobSource, ClientOptions, ImageLocation, Progress, PushOptions, Registry};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::harness::*;

const MIB: u64 = 1 << 20;
/// The client streams; its peak RSS must not grow with the 256 MiB layer.
const CLIENT_RSS_LIMIT_KIB: u64 = 150 * 1024;

/// An OCI image layout being built.
struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    fn new() -> Layout {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        Layout { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn add_blob(&self, data: &[u8]) -> String {
        let d = sha256(data);
        std::fs::write(blob_path(self.path(), &d), data).unwrap();
        d
    }

    /// Writes `size` pseudo-random bytes straight to disk; returns (digest, size).
    fn add_big_blob(&self, size: u64, rng: &mut Rng) -> (String, u64) {
        let tmp = self.path().join("big.tmp");
        let mut f = BufWriter::new(File::create(&tmp).unwrap());
        let mut h = Sha256::new();
        let mut block = vec![0u8; MIB as usize];
        let mut left = size;
        while left > 0 {
            let n = left.min(MIB) as usize;
            rng.fill(&mut block[..n]);
            h.update(&block[..n]);
            f.write_all(&block[..n]).unwrap();
            left -= n as u64;
        }
        f.flush().unwrap();
        let d = format!("sha256:{}", hex::encode(h.finalize()));
        std::fs::rename(&tmp, blob_path(self.path(), &d)).unwrap();
        (d, size)
    }

    fn set_index(&self, entries: Vec<Value>) {
        let idx = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        std::fs::write(
            self.path().join("index.json"),
            serde_json::to_vec(&idx).unwrap(),
        )
        .unwrap();
    }

    /// An image of small random layers; returns the manifest bytes (also stored as a blob).
    fn add_image(&self, arch: &str, sizes: &[usize], rng: &mut Rng) -> Vec<u8> {
        let layers: Vec<Vec<u8>> = sizes.iter().map(|n| rng.bytes(*n)).collect();
        let config = image_config(arch, &layers, rng);
        self.add_blob(&config);
        for l in &layers {
            self.add_blob(l);
        }
        let m = oci_manifest(&config, &layers, |_| {});
        self.add_blob(&m);
        m
    }
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').unwrap();
    dir.join("blobs").join(alg).join(hex)
}

fn ref_entry(media_type: &str, manifest: &[u8], name: &str) -> Value {
    let mut d = desc(media_type, manifest);
    d["annotations"] = json!({"org.opencontainers.image.ref.name": name});
    d
}

fn file_sha256(p: &Path) -> (String, u64) {
    let mut f = File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    (format!("sha256:{}", hex::encode(h.finalize())), n)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// The index.json entry named `name` in layout `dir`.
fn entry(dir: &Path, name: &str) -> Value {
    let v = read_json(&dir.join("index.json"));
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {v}"))
        .clone()
}

/// Checks that `dir` holds `digest` and everything it references, each hashing right.
fn assert_complete(dir: &Path, digest: &str, size: u64) {
    let p = blob_path(dir, digest);
    assert_eq!(
        file_sha256(&p),
        (digest.to_string(), size),
        "{}",
        p.display()
    );
    let v = read_json(&p);
    if let Some(ms) = v["manifests"].as_array() {
        for m in ms {
            assert_complete(
                dir,
                m["digest"].as_str().unwrap(),
                m["size"].as_u64().unwrap(),
            );
        }
    } else {
        for d in std::iter::once(&v["config"]).chain(v["layers"].as_array().unwrap()) {
            let digest = d["digest"].as_str().unwrap();
            let p = blob_path(dir, digest);
            assert_eq!(
                file_sha256(&p),
                (digest.to_string(), d["size"].as_u64().unwrap()),
                "{}",
                p.display()
            );
        }
    }
}

/// Runs `berth ARGS` isolated from the caller's environment; returns its output and peak RSS
/// (VmHWM, sampled until it exits).
fn berth(args: &[&str]) -> (Output, u64) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(args)
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        let k_s = k.to_string_lossy();
        if k_s.starts_with("BERTH_") || k_s.to_ascii_lowercase().ends_with("_proxy") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("spawn berth");
    let pid = child.id();
    let mut hwm = 0;
    // Output is a few lines (no bars without a terminal), so the pipes never fill.
    while child.try_wait().expect("try_wait").is_none() {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let v = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok());
            hwm = hwm.max(v.unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().expect("berth output"), hwm)
}

fn ok(srv: &Server, out: &Output) -> String {
    assert!(
        out.status.success(),
        "berth failed: {}\nstdout: {}\nstderr: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        srv.logs()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn skopeo_inspect(srv: &Server, reference: &str) -> Value {
    let home = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(srv.ca_path(), certs.path().join("ca.crt")).unwrap();
    std::fs::write(home.path().join("registries.conf"), "").unwrap();
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=true", "--no-creds", "--cert-dir"])
        .arg(certs.path())
        .arg(format!("docker://{reference}"))
        .env("HOME", home.path())
        .env(
            "CONTAINERS_REGISTRIES_CONF",
            home.path().join("registries.conf"),
        )
        .env("REGISTRY_AUTH_FILE", home.path().join("auth.json"))
        .env_remove("DOCKER_CONFIG")
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn library(srv: &Server) -> Registry {
    Registry::new(
        &srv.host(),
        &ClientOptions {
            ca_file: Some(srv.ca_path()),
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn push_and_pull_an_image_with_a_256_mib_layer() {
    let srv = Server::start();
    let ca = srv.ca_path();
    let ca = ca.to_str().unwrap();
    let mut rng = Rng::new();
    let src = Layout::new();
    let small = rng.bytes(1000);
    // Two chunks and a remainder at the client's 8 MiB chunk size.
    let mid = rng.bytes((17 * MIB + 3) as usize);
    let (big, big_size) = src.add_big_blob(256 * MIB, &mut rng);
    src.add_blob(&small);
    src.add_blob(&mid);
    let config = image_config("amd64", &[small.clone(), mid.clone()], &mut rng);
    src.add_blob(&config);
    let layers = vec![
        desc(OCI_LAYER, &small),
        json!({"mediaType": OCI_LAYER, "digest": big, "size": big_size}),
        desc(OCI_LAYER, &mid),
    ];
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, &config), "layers": layers,
    }))
    .unwrap();
    let mdigest = src.add_blob(&manifest);
    src.set_index(vec![ref_entry(OCI_MANIFEST, &manifest, "v1")]);

    let target = format!("{}/team/app:v1", srv.host());
    let source = format!("oci:{}:v1", src.path().display());
    let (out, hwm) = berth(&["push", &source, &target, "--ca-file", ca]);
    let stdout = ok(&srv, &out);
    assert_eq!(
        stdout.trim(),
        format!("v1: digest: {mdigest} size: {}", manifest.len())
    );
    assert!(
        hwm < CLIENT_RSS_LIMIT_KIB,
        "berth push peak RSS {hwm} KiB exceeds {CLIENT_RSS_LIMIT_KIB} KiB"
    );

    // skopeo sees the same manifest and layers.
    let info = skopeo_inspect(&srv, &target);
    assert_eq!(info["Digest"], mdigest, "{info}");
    let want: Vec<Value> = layers.iter().map(|l| l["digest"].clone()).collect();
    assert_eq!(info["Layers"], Value::Array(want), "{info}");

    let dest_root = tempfile::tempdir().unwrap();
    let out_dir = dest_root.path().join("out");
    let dest = format!("oci:{}:v1", out_dir.display());
    let (out, hwm) = berth(&["pull", &target, &dest, "--ca-file", ca]);
    let stdout = ok(&srv, &out);
    assert!(stdout.contains(&format!("Digest: {mdigest}")), "{stdout}");
    assert!(
        hwm < CLIENT_RSS_LIMIT_KIB,
        "berth pull peak RSS {hwm} KiB exceeds {CLIENT_RSS_LIMIT_KIB} KiB"
    );
    let e = entry(&out_dir, "v1");
    assert_eq!(e["digest"], mdigest);
    assert_eq!(e["mediaType"], OCI_MANIFEST);
    assert_complete(&out_dir, &mdigest, manifest.len() as u64);
    assert_eq!(
        read_json(&out_dir.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    // No temporary files left beside the blobs.
    for f in std::fs::read_dir(out_dir.join("blobs/sha256")).unwrap() {
        let name = f.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "leftover {name}");
    }

    // Again: every blob is already there, nothing is uploaded, same answer.
    let (out, _) = berth(&["push", &source, &target, "--ca-file", ca, "--quiet"]);
    assert_eq!(
        ok(&srv, &out).trim(),
        format!("v1: digest: {mdigest} size: {}", manifest.len())
    );
}

/// A `docker save` archive: an old-style layer directory, a symlinked duplicate layer, and a
/// Docker 25 style `blobs/sha256/...` layer.
fn docker_save_tar(path: &Path, rng: &mut Rng) -> (Vec<u8>, Vec<Vec<u8>>) {
    let l1 = rng.bytes(5000);
    let l2 = rng.bytes((3 * MIB) as usize);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"nonce": rng.hex(16)}},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&l1), sha256(&l2), sha256(&l1)]},
    }))
    .unwrap();
    let cfg_name = format!("{}.json", &sha256(&config)[7..]);
    let l2_name = format!("blobs/sha256/{}", &sha256(&l2)[7..]);
    let mut b = tar::Builder::new(File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    add(&cfg_name, &config);
    add("aaaa/layer.tar", &l1);
    add(&l2_name, &l2);
    let manifest = json!([{
        "Config": cfg_name,
        "RepoTags": ["team/arch:v2"],
        "Layers": ["aaaa/layer.tar", l2_name, "bbbb/layer.tar"],
    }]);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_cksum();
    b.append_link(&mut h, "bbbb/layer.tar", "../aaaa/layer.tar")
        .unwrap();
    b.finish().unwrap();
    (config, vec![l1, l2])
}

#[test]
fn push_a_docker_save_archive() {
    let srv = Server::start();
    let ca = srv.ca_path();
    let ca = ca.to_str().unwrap();
    let mut rng = Rng::new();
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir.path().join("image.tar");
    let (config, layers) = docker_save_tar(&tar_path, &mut rng);

    let target = format!("{}/team/arch:v2", srv.host());
    let (out, _) = berth(&[
        "push",
        &format!("docker-archive:{}", tar_path.display()),
        &target,
        "--ca-file",
        ca,
    ]);
    let stdout = ok(&srv, &out);
    // Off a terminal (a CI log) each blob gets one line when it is through.
    let stderr = String::from_utf8_lossy(&out.stderr);
    for blob in [&config, &layers[0], &layers[1]] {
        let line = format!("{}: done ({} bytes)", sha256(blob), blob.len());
        assert_eq!(stderr.matches(&line).count(), 1, "{line} in {stderr}");
    }
    let digest = stdout
        .trim()
        .strip_prefix("v2: digest: ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();

    let info = skopeo_inspect(&srv, &target);
    assert_eq!(info["Digest"], digest.as_str());
    let want = vec![sha256(&layers[0]), sha256(&layers[1]), sha256(&layers[0])];
    assert_eq!(info["Layers"], json!(want), "{info}");

    let r = srv
        .get_with(
            &format!("/v2/team/arch/manifests/{digest}"),
            &[("accept", DOCKER_MANIFEST)],
        )
        .await_blocking();
    r.expect(200);
    assert_eq!(r.content_type().as_deref(), Some(DOCKER_MANIFEST));
    let m = r.json();
    assert_eq!(m["config"]["mediaType"], DOCKER_CONFIG);
    assert_eq!(m["config"]["digest"], sha256(&config));
    assert_eq!(m["config"]["size"], config.len());
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar"
    );

    // And back into a layout, every digest checked.
    let out_dir = dir.path().join("pulled");
    let (out, _) = berth(&[
        "pull",
        &target,
        &format!("oci:{}", out_dir.display()),
        "--ca-file",
        ca,
    ]);
    ok(&srv, &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for blob in [&config, &layers[0], &layers[1]] {
        let line = format!("{}: done ({} bytes)", sha256(blob), blob.len());
        assert!(stderr.contains(&line), "{line} in {stderr}");
    }
    let e = entry(&out_dir, "v2");
    assert_eq!(e["digest"], digest.as_str());
    assert_eq!(e["mediaType"], DOCKER_MANIFEST);
    assert_complete(&out_dir, &digest, e["size"].as_u64().unwrap());
}

/// Blocking helper: the harness is async, these tests drive child processes synchronously.
trait AwaitBlocking: std::future::Future + Sized {
    fn await_blocking(self) -> Self::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(self)
    }
}

impl<F: std::future::Future> AwaitBlocking for F {}

#[test]
fn pull_of_a_missing_manifest_writes_nothing() {
    let srv = Server::start();
    let ca = srv.ca_path();
    let ca = ca.to_str().unwrap();
    let mut rng = Rng::new();
    let src = Layout::new();
    let m = src.add_image("amd64", &[100, 200], &mut rng);
    src.set_index(vec![ref_entry(OCI_MANIFEST, &m, "v1")]);
    let target = format!("{}/team/app:v1", srv.host());
    ok(
        &srv,
        &berth(&[
            "push",
            &format!("oci:{}", src.path().display()),
            &target,
            "--ca-file",
            ca,
        ])
        .0,
    );

    let dir = tempfile::tempdir().unwrap();
    let missing = format!("{}/team/app@sha256:{}", srv.host(), "0".repeat(64));
    // Into a directory that doesn't exist: it still doesn't afterwards.
    let fresh = dir.path().join("fresh");
    let (out, _) = berth(&[
        "pull",
        &missing,
        &format!("oci:{}:x", fresh.display()),
        "--ca-file",
        ca,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("not found") && err.contains("fix:"), "{err}");
    assert!(!fresh.exists());

    // Into an existing layout: index.json and the blobs stay exactly as they were.
    let existing = dir.path().join("existing");
    ok(
        &srv,
        &berth(&[
            "pull",
            &target,
            &format!("oci:{}", existing.display()),
            "--ca-file",
            ca,
        ])
        .0,
    );
    let before = std::fs::read(existing.join("index.json")).unwrap();
    let count = || {
        std::fs::read_dir(existing.join("blobs/sha256"))
            .unwrap()
            .count()
    };
    let blobs_before = count();
    for reference in [missing.clone(), format!("{}/team/app:nope", srv.host())] {
        let (out, _) = berth(&[
            "pull",
            &reference,
            &format!("oci:{}:y", existing.display()),
            "--ca-file",
            ca,
        ]);
        assert!(!out.status.success());
        assert_eq!(std::fs::read(existing.join("index.json")).unwrap(), before);
        assert_eq!(count(), blobs_before);
    }

    // A bad CA: one line naming the certificate problem and the fix.
    let (out, _) = berth(&["pull", &target, "oci:/nonexistent/x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--ca-file"), "{err}");
}

#[test]
fn index_with_platforms_and_cross_repository_mount() {
    let srv = Server::start();
    let ca = srv.ca_path();
    let ca = ca.to_str().unwrap();
    let mut rng = Rng::new();
    let src = Layout::new();
    let amd = src.add_image("amd64", &[300, 400], &mut rng);
    let arm = src.add_image("arm64", &[500], &mut rng);
    let index = index_of(
        OCI_INDEX,
        &[(OCI_MANIFEST, &amd, "amd64"), (OCI_MANIFEST, &arm, "arm64")],
    );
    let idigest = src.add_blob(&index);
    src.set_index(vec![
        ref_entry(OCI_INDEX, &index, "multi"),
        ref_entry(OCI_MANIFEST, &amd, "amd-only"),
    ]);
    let target = format!("{}/team/multi:v1", srv.host());
    let source = format!("oci:{}:multi", src.path().display());
    let stdout = ok(&srv, &berth(&["push", &source, &target, "--ca-file", ca]).0);
    assert!(stdout.contains(&idigest), "{stdout}");
    // Several manifests in the layout and no tag: refused with the tags to choose from.
    let (out, _) = berth(&[
        "push",
        &format!("oci:{}", src.path().display()),
        &target,
        "--ca-file",
        ca,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("multi, amd-only"));

    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all");
    ok(
        &srv,
        &berth(&[
            "pull",
            &target,
            &format!("oci:{}", all.display()),
            "--ca-file",
            ca,
        ])
        .0,
    );
    assert_eq!(entry(&all, "v1")["digest"], idigest.as_str());
    assert_complete(&all, &idigest, index.len() as u64);

    let one = dir.path().join("one");
    ok(
        &srv,
        &berth(&[
            "pull",
            &target,
            &format!("oci:{}:arm", one.display()),
            "--platform",
            "linux/arm64",
            "--ca-file",
            ca,
        ])
        .0,
    );
    let e = entry(&one, "arm");
    assert_eq!(e["digest"], sha256(&arm));
    assert_complete(&one, &sha256(&arm), arm.len() as u64);
    assert!(!blob_path(&one, &sha256(&amd)).exists());

    // The library: the same image into another repository, every blob mounted.
    let reg = library(&srv);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pushed = rt.block_on(async {
        let img: ImageLocation = source.parse().unwrap();
        let img = img.load().await.unwrap();
        let to = format!("{}/team/copy:v1", srv.host()).parse().unwrap();
        let opts = PushOptions {
            mount_from: vec!["team/multi".parse().unwrap()],
            ..Default::default()
        };
        reg.push(&img, &to, &opts).await.unwrap()
    });
    assert_eq!(pushed.digest.to_string(), idigest);
    assert_eq!(pushed.size, index.len() as u64);
    assert_eq!((pushed.uploaded, pushed.existed), (0, 0));
    assert_eq!(pushed.mounted, 5, "{pushed:?}");
    assert_eq!(
        pushed.reference.to_string(),
        format!("{}/team/copy:v1@{idigest}", srv.host())
    );
}

/// Records the positions the library reports.
#[derive(Default)]
struct Positions(Mutex<Vec<u64>>);

impl Progress for Positions {
    fn position(&self, _d: &berth_oci::Digest, done: u64) {
        self.0.lock().unwrap().push(done);
    }
}

#[tokio::test]
async fn an_interrupted_upload_resumes_from_the_registrys_offset() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let dir = tempfile::tempdir().unwrap();
    let data = rng.bytes((21 * MIB + 5) as usize);
    let path = dir.path().join("blob");
    std::fs::write(&path, &data).unwrap();
    let digest = sha256(&data);

    // Someone sent the first 6 MiB, then went away.
    let loc = srv.start_upload("team/resume").await;
    let part = (6 * MIB) as usize;
    let r = srv.patch_chunk(&loc, 0, &data[..part]).await;
    r.expect(202);
    let loc = r.must_header("location");

    let reg = library(&srv);
    let blob = BlobSource {
        digest: digest.parse().unwrap(),
        size: data.len() as u64,
        path,
        offset: 0,
    };
    let seen = Arc::new(Positions::default());
    let progress: Arc<dyn Progress> = seen.clone();
    reg.resume_upload(&"team/resume".parse().unwrap(), &loc, &blob, &progress)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", srv.logs()));
    let positions = seen.0.lock().unwrap().clone();
    assert_eq!(
        positions.first(),
        Some(&(part as u64)),
        "did not resume at 6 MiB"
    );
    assert_eq!(positions.last(), Some(&(data.len() as u64)));

    let h = srv.head(&format!("/v2/team/resume/blobs/{digest}")).await;
    h.expect(200);
    assert_eq!(h.must_header("content-length"), data.len().to_string());
    let g = srv.get(&format!("/v2/team/resume/blobs/{digest}")).await;
    assert_eq!(sha256(&g.body), digest);
}
