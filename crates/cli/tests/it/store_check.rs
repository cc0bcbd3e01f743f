//! `berth store check [--repair]`: a store damaged on purpose (bytes deleted, a byte flipped,
//! upload data without a record, a temp file of an interrupted write) is reported finding by
//! finding, repaired as the report says, and then serves nothing corrupt and takes the image
//! again. On a stopped embedded data dir, and through a node of the distributed store.

use std::path::Path;
use std::time::{Duration, SystemTime};

use berth_oci::Digest;
use bytes::Bytes;
use serde_json::Value;

use crate::auth_support::*;
use crate::harness::*;

/// Runs `berth` with its own HOME; (success, stdout, stderr).
fn berth(
    home: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("BERTH_CONFIG_DIR", home)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Findings of a JSON report as (kind, repository, digest, name, repaired).
fn findings(report: &Value) -> Vec<(String, String, String, String, bool)> {
    report["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings in {report}"))
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or("").to_owned();
            (
                s("kind"),
                s("repository"),
                s("digest"),
                s("name"),
                f["repaired"].is_string(),
            )
        })
        .collect()
}

fn has(fs: &[(String, String, String, String, bool)], kind: &str, what: &str) -> bool {
    fs.iter()
        .any(|f| f.0 == kind && (f.1 == what || f.2 == what || f.3 == what))
}

fn blob_file(data: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    data.join("blobs/sha256").join(&hex[..2]).join(hex)
}

fn backdate(path: &Path, ago: Duration) {
    let f = std::fs::File::open(path).unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

/// Runs a check and returns (exit success, the JSON report).
fn check(home: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> (bool, Value) {
    let mut all = vec!["store", "check", "--json"];
    all.extend_from_slice(args);
    let (ok, out, err) = berth(home, &all, env, stdin);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("store check printed no JSON report ({e}): {out}\n{err}"));
    println!("store check {args:?}: exit ok={ok}: {}", err.trim());
    (ok, v)
}

#[tokio::test]
async fn a_damaged_embedded_data_dir_is_reported_repaired_and_takes_the_image_again() {
    let mut srv = Server::start_with_auth();
    let owner = Cred::owner();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 2, 4000);
    let other = Image::build("arm64", &mut rng, 1, 3000);
    push_image_as(&srv, &owner, "check/app", "v1", &img).await;
    push_image_as(&srv, &owner, "check/other", "v1", &other).await;
    let home = tempfile::tempdir().unwrap();
    let data = srv.data_dir().to_path_buf();
    let dir = data.display().to_string();

    // Never beside a running server.
    let (ok, _, err) = berth(
        home.path(),
        &["store", "check", "--data-dir", &dir],
        &[],
        None,
    );
    assert!(
        !ok && err.contains("another berth server is using"),
        "{err}"
    );
    srv.stop();

    let missing = sha256(&img.layers[0]);
    let corrupt = sha256(&img.layers[1]);
    std::fs::remove_file(blob_file(&data, &missing)).unwrap();
    let mut bytes = std::fs::read(blob_file(&data, &corrupt)).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(blob_file(&data, &corrupt), &bytes).unwrap();
    // Upload data with no record, as a crash between the two writes leaves; and one just
    // written, as an upload in progress looks: never touched.
    let two_hours = Duration::from_secs(7200);
    let orphan = data.join("uploads/0b5e55ed-dead-4bad-beef-000000000001");
    std::fs::create_dir(&orphan).unwrap();
    std::fs::write(orphan.join("part-1"), b"half a chunk").unwrap();
    backdate(&orphan.join("part-1"), two_hours);
    backdate(&orphan, two_hours);
    let young = data.join("uploads/0b5e55ed-dead-4bad-beef-000000000002");
    std::fs::create_dir(&young).unwrap();
    std::fs::write(young.join("part-1"), b"in progress").unwrap();
    let temp = blob_file(&data, &corrupt).with_extension("tmp");
    std::fs::write(&temp, b"interrupted").unwrap();
    backdate(&temp, two_hours);
    let temp_name = temp.strip_prefix(&data).unwrap().display().to_string();
    let orphan_id = "0b5e55ed-dead-4bad-beef-000000000001";

    // Without --verify-digests the flipped byte (same size) is not seen; everything else is.
    let (ok, r) = check(home.path(), &["--data-dir", &dir], &[], None);
    assert!(!ok, "problems remain: non-zero exit");
    let f = findings(&r);
    assert!(has(&f, "missing_blob", &missing), "{r:#}");
    assert!(has(&f, "incomplete_manifest", &img.digest), "{r:#}");
    assert!(has(&f, "orphaned_upload", orphan_id), "{r:#}");
    assert!(has(&f, "temp_file", &temp_name), "{r:#}");
    assert!(!has(&f, "corrupt_blob", &corrupt), "{r:#}");
    assert!(
        !f.iter().any(|x| x.3.ends_with("000000000002")),
        "young upload left alone: {r:#}"
    );
    assert_eq!(r["repositories"], 2, "{r:#}");

    let (ok, r) = check(
        home.path(),
        &["--data-dir", &dir, "--verify-digests"],
        &[],
        None,
    );
    assert!(!ok);
    let f = findings(&r);
    assert!(has(&f, "corrupt_blob", &corrupt), "{r:#}");
    assert_eq!(
        f.len(),
        5,
        "missing, corrupt, incomplete manifest, orphan, temp: {r:#}"
    );
    assert!(
        f.iter().all(|x| !x.4),
        "nothing repaired without --repair: {r:#}"
    );
    assert!(r["blobs_verified"].as_u64().unwrap() >= 4, "{r:#}");
    // Nothing changed.
    assert!(orphan.exists() && temp.exists() && blob_file(&data, &corrupt).exists());

    let (ok, r) = check(
        home.path(),
        &["--data-dir", &dir, "--verify-digests", "--repair"],
        &[],
        None,
    );
    assert!(
        !ok,
        "the manifest's lost content remains until it is pushed again"
    );
    let f = findings(&r);
    for kind in [
        "missing_blob",
        "corrupt_blob",
        "orphaned_upload",
        "temp_file",
    ] {
        assert!(
            f.iter().any(|x| x.0 == kind && x.4),
            "{kind} repaired: {r:#}"
        );
    }
    assert!(!orphan.exists() && !temp.exists(), "removed as reported");
    assert!(
        !blob_file(&data, &corrupt).exists(),
        "corrupt bytes deleted"
    );
    assert!(young.exists(), "the upload in progress is untouched");

    // A second check: only the manifest whose content is lost, nothing to repair.
    let (ok, r) = check(
        home.path(),
        &["--data-dir", &dir, "--verify-digests"],
        &[],
        None,
    );
    assert!(!ok);
    let f = findings(&r);
    assert_eq!(
        f.iter()
            .map(|x| (x.0.as_str(), x.2.as_str()))
            .collect::<Vec<_>>(),
        [("incomplete_manifest", img.digest.as_str())],
        "{r:#}"
    );

    // Served again: the corrupt blob is not served (unknown, so clients push it), the
    // start-up check ran, and a push of the image completes it.
    srv.restart_stopped();
    for d in [&missing, &corrupt] {
        let r = call(
            &srv,
            reqwest::Method::GET,
            &format!("/v2/check/app/blobs/{d}"),
            &owner,
            &[],
            None,
        )
        .await;
        assert_eq!(r.status, 404, "{r}");
        assert_ne!(r.body, bytes, "never the corrupt bytes");
    }
    push_image_as(&srv, &owner, "check/app", "v1", &img).await;
    let r = call(
        &srv,
        reqwest::Method::GET,
        &format!("/v2/check/app/blobs/{corrupt}"),
        &owner,
        &[],
        None,
    )
    .await;
    assert_eq!((r.status, r.body.as_ref()), (200, img.layers[1].as_slice()));
    let logs = srv.logs();
    assert!(logs.contains("store check at start:"), "{logs}");
    srv.stop();

    let (ok, r) = check(
        home.path(),
        &["--data-dir", &dir, "--verify-digests"],
        &[],
        None,
    );
    assert!(ok, "clean after the push: {r:#}");
    assert_eq!(findings(&r), vec![], "{r:#}");
    let (ok, out, _) = berth(
        home.path(),
        &["store", "check", "--data-dir", &dir],
        &[],
        None,
    );
    assert!(
        ok && out.contains("0 findings: 0 problems, 0 repaired, 0 remaining"),
        "{out}"
    );
}

/// Through a node of the distributed store (PostgreSQL + Garage), as the Owner: the same
/// damage done to the S3 objects.
#[tokio::test]
async fn a_damaged_distributed_store_is_checked_and_repaired_through_the_server() {
    use berth_storage::BlobStore as _;
    let cluster = crate::distributed::Cluster::new().await;
    let node = cluster.node(&[]);
    let owner = Cred::owner();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 2, 4000);
    push_image_as(&node, &owner, "check/app", "v1", &img).await;
    let s3 = cluster.s3();
    let missing = sha256(&img.layers[0]);
    let corrupt = sha256(&img.layers[1]);
    let missing_d: Digest = missing.parse().unwrap();
    let corrupt_d: Digest = corrupt.parse().unwrap();
    s3.delete(&missing_d).await.unwrap();
    let mut bytes = img.layers[1].clone();
    bytes[100] ^= 0x01;
    s3.put_raw(
        &format!("blobs/sha256/{}", corrupt_d.hex()),
        Bytes::from(bytes.clone()),
    )
    .await
    .unwrap();
    s3.put_raw(
        "uploads/0b5e55ed-dead-4bad-beef-000000000003/p0",
        Bytes::from_static(b"half"),
    )
    .await
    .unwrap();
    let never = Digest::sha256_of(b"a blob whose publishing was cut short");
    let mp = s3
        .begin_multipart_raw(&format!("blobs/sha256/{}", never.hex()))
        .await
        .unwrap();

    let home = tempfile::tempdir().unwrap();
    let ca = node.ca_path().display().to_string();
    let env = [("BERTH_CA_FILE", ca.as_str())];
    let server = node.base.clone();
    let pw = Some(OWNER_PASSWORD);
    let base = [
        "--server",
        server.as_str(),
        "-u",
        "owner",
        "--password-stdin",
        "--verify-digests",
    ];
    // Nothing here is old: --min-age 0 lets the check count it (an admin's choice).
    let with = |extra: &[&'static str]| -> Vec<&str> {
        base.iter().copied().chain(extra.iter().copied()).collect()
    };

    let (ok, r) = check(home.path(), &with(&["--min-age", "0"]), &env, pw);
    assert!(!ok);
    let f = findings(&r);
    assert!(has(&f, "missing_blob", &missing), "{r:#}");
    assert!(has(&f, "corrupt_blob", &corrupt), "{r:#}");
    assert!(
        has(
            &f,
            "orphaned_upload",
            "0b5e55ed-dead-4bad-beef-000000000003"
        ),
        "{r:#}"
    );
    let mp_name = format!("multipart:blobs/sha256/{}#{mp}", never.hex());
    assert!(has(&f, "temp_file", &mp_name), "{r:#}");
    assert!(f.iter().all(|x| !x.4), "{r:#}");
    // The default age leaves these young leftovers alone.
    let (_, r) = check(home.path(), &with(&[]), &env, pw);
    let f = findings(&r);
    assert!(
        !has(&f, "temp_file", &mp_name)
            && !has(
                &f,
                "orphaned_upload",
                "0b5e55ed-dead-4bad-beef-000000000003"
            ),
        "{r:#}"
    );

    let (ok, r) = check(
        home.path(),
        &with(&["--min-age", "0", "--repair"]),
        &env,
        pw,
    );
    assert!(!ok, "the manifest's lost content remains");
    let f = findings(&r);
    for kind in [
        "missing_blob",
        "corrupt_blob",
        "orphaned_upload",
        "temp_file",
    ] {
        assert!(
            f.iter().any(|x| x.0 == kind && x.4),
            "{kind} repaired: {r:#}"
        );
    }
    assert_eq!(
        s3.stat(&corrupt_d).await.unwrap(),
        None,
        "corrupt bytes deleted"
    );
    assert_eq!(s3.open_multiparts().await.unwrap(), 0);
    // The repair is audited.
    let audit = admin(
        &node,
        reqwest::Method::GET,
        "audit?action=store.repaired",
        None,
    )
    .await;
    assert!(audit.to_string().contains("store.repaired"), "{audit}");

    let (ok, r) = check(home.path(), &with(&["--min-age", "0"]), &env, pw);
    assert!(!ok);
    assert_eq!(
        findings(&r)
            .iter()
            .map(|x| x.0.as_str())
            .collect::<Vec<_>>(),
        ["incomplete_manifest"],
        "{r:#}"
    );
    let r = call(
        &node,
        reqwest::Method::GET,
        &format!("/v2/check/app/blobs/{corrupt}"),
        &owner,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 404, "{r}");
    assert_ne!(r.body, bytes);
    push_image_as(&node, &owner, "check/app", "v1", &img).await;
    let (ok, r) = check(home.path(), &with(&["--min-age", "0"]), &env, pw);
    assert!(ok, "clean after the push: {r:#}");
    assert_eq!(findings(&r), vec![]);
    let logs = node.logs();
    assert!(logs.contains("store check at start:"), "{logs}");
}
