//! Errors a client provokes, or a full disk causes, answered in each protocol's own format with
//! the field or cause named: the admin API's validation, Content-Range arithmetic, the token
//! endpoint's OAuth errors, and a data directory on a small tmpfs filled by a push (skopeo) and
//! by a trust publish (notary). Authentication is on throughout.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_harness::{Docker, FakeEngine, Notary, Out, run};

/// Asserts a 400 from the admin API naming `field`.
fn expect_field(r: &Resp, field: &str) {
    r.expect(400);
    let codes = r.error_codes();
    assert_eq!(codes, ["INVALID_REQUEST"], "{r}");
    let e = &r.json()["errors"][0];
    assert_eq!(e["detail"]["field"], field, "{r}");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.starts_with(&format!("{field}: ")), "{r}");
}

async fn admin_raw(srv: &Server, method: Method, path: &str, body: Option<Value>) -> Resp {
    admin_as(srv, &Cred::owner(), method, path, body).await
}

#[tokio::test]
async fn admin_api_refuses_bad_input_naming_the_field() {
    let srv = Server::start_with_auth();
    create_user(&srv, "alice", "alice-password-0123").await;

    // Trust reset without a repository (this used to panic on a slice past the end).
    for path in ["trust", "trust/"] {
        let r = admin_raw(&srv, Method::DELETE, path, None).await;
        expect_field(&r, "repository");
    }
    let r = admin_raw(&srv, Method::DELETE, "trust/Bad_Name", None).await;
    expect_field(&r, "repository");
    // The server still answers.
    let v = admin(&srv, Method::DELETE, "trust/team/app", None).await;
    assert_eq!(v["repository"], "team/app", "{v}");

    // Role assignments and scope maps for names no repository can have.
    for repo in ["../x", "a/../b", "./x", "_x", "a//b", "x/*/y", "A"] {
        let body = json!({"role": "AcrPull", "assignee": "alice", "repository": repo});
        let r = admin_raw(&srv, Method::POST, "role-assignments", Some(body)).await;
        expect_field(&r, "repository");
        let body = json!({"name": "m", "repository": repo, "actions": ["content/read"]});
        let r = admin_raw(&srv, Method::POST, "scope-maps", Some(body)).await;
        expect_field(&r, "repository");
    }
    let listed = admin(&srv, Method::GET, "role-assignments?assignee=alice", None).await;
    assert_eq!(listed, json!([]), "nothing was assigned");
    for repo in ["team/app", "team/*", "*"] {
        let body = json!({"role": "AcrPull", "assignee": "alice", "repository": repo});
        admin(&srv, Method::POST, "role-assignments", Some(body)).await;
    }
    let r = admin_raw(
        &srv,
        Method::POST,
        "role-assignments",
        Some(json!({"role": "Nope", "assignee": "alice"})),
    )
    .await;
    expect_field(&r, "role");
    let body = json!({"name": "m", "repository": "team/app", "actions": []});
    let r = admin_raw(&srv, Method::POST, "scope-maps", Some(body)).await;
    expect_field(&r, "actions");
    let body = json!({"name": "m", "repository": "team/app", "actions": ["content/fly"]});
    let r = admin_raw(&srv, Method::POST, "scope-maps", Some(body)).await;
    expect_field(&r, "actions");

    // Token lifetimes: whole days from 1 to 3650.
    scope_map(&srv, "ci", "team/app", &["content/read"]).await;
    for days in [
        json!(-5),
        json!(0),
        json!(3651),
        json!(99_999_999_999_i64),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1.5),
        json!("7"),
        json!(true),
    ] {
        let body = json!({"name": "ci-token", "scopeMap": "ci", "expiresInDays": days});
        let r = admin_raw(&srv, Method::POST, "tokens", Some(body)).await;
        expect_field(&r, "expiresInDays");
    }
    let tokens = admin(&srv, Method::GET, "tokens", None).await;
    assert_eq!(tokens, json!([]), "no token was created");
    let body = json!({"name": "ci-token", "scopeMap": "ci", "expiresInDays": 30});
    let v = admin(&srv, Method::POST, "tokens", Some(body)).await;
    // RFC 3339 (UTC, whole seconds), later than its creation.
    let expires = v["expires"].as_str().expect("expires");
    let created = v["created"].as_str().expect("created");
    assert!(expires.len() == 20 && expires.ends_with('Z'), "{v}");
    assert!(expires > created, "{v}");

    // Audit paging parameters.
    for (query, field) in [
        ("limit=-1", "limit"),
        ("limit=0", "limit"),
        ("limit=100000000000000000000", "limit"),
        ("limit=10001", "limit"),
        ("limit=+5", "limit"),
        ("limit=", "limit"),
        ("after=-1", "after"),
        ("after=abc", "after"),
        ("before=abc", "before"),
        ("limit=1&limit=2", "limit"),
    ] {
        let r = admin_raw(&srv, Method::GET, &format!("audit?{query}"), None).await;
        expect_field(&r, field);
    }
    let all = admin(&srv, Method::GET, "audit", None).await;
    let all = all.as_array().expect("audit list");
    assert!(all.len() >= 3, "{all:?}");
    let one = admin(&srv, Method::GET, "audit?limit=1", None).await;
    assert_eq!(one.as_array().unwrap().len(), 1, "{one}");
    let first = all[0]["id"].as_i64().unwrap();
    let rest = admin(
        &srv,
        Method::GET,
        &format!("audit?after={first}&limit=2"),
        None,
    )
    .await;
    assert_eq!(rest[0]["id"], all[1]["id"], "{rest}");
}

#[tokio::test]
async fn content_range_beyond_any_offset_is_refused_in_oci_format() {
    let srv = Server::start_with_auth();
    let owner = Cred::owner();
    let start = call(
        &srv,
        Method::POST,
        "/v2/team/app/blobs/uploads/",
        &owner,
        &[],
        None,
    )
    .await;
    start.expect(202);
    let loc = start.must_header("location");
    for (range, len) in [
        // end - start + 1 overflows u64 (this used to panic, or wrap to 0 in a release build).
        ("0-18446744073709551615", None),
        ("0-18446744073709551615", Some("0")),
        ("18446744073709551615-18446744073709551615", Some("1")),
        // Past a signed 64-bit file offset.
        ("9223372036854775807-9223372036854775808", Some("2")),
        ("5-4", Some("0")),
    ] {
        let mut headers = vec![
            ("content-range", range),
            ("content-type", "application/octet-stream"),
        ];
        if let Some(l) = len {
            headers.push(("content-length", l));
        }
        let body = len.map(|l| vec![0u8; l.parse().unwrap()]);
        let r = call(&srv, Method::PATCH, &loc, &owner, &headers, body).await;
        r.expect_error(400, "BLOB_UPLOAD_INVALID");
        let msg = r.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(msg.contains("Content-Range"), "{r}");
    }
    // The session is untouched and still usable.
    let data = b"0123456789";
    let r = call(
        &srv,
        Method::PATCH,
        &loc,
        &owner,
        &[
            ("content-range", "0-9"),
            ("content-type", "application/octet-stream"),
        ],
        Some(data.to_vec()),
    )
    .await;
    r.expect(202);
    assert_eq!(r.must_header("range"), "0-9");
}

#[tokio::test]
async fn token_endpoint_errors_are_oauth_errors_docker_can_print() {
    let srv = Server::start_with_auth();
    let check = |r: &Resp, status: u16, oauth: &str, code: &str| {
        r.expect(status);
        let v = r.json();
        assert_eq!(v["error"], oauth, "{r}");
        assert!(v["error_description"].is_string(), "{r}");
        assert_eq!(r.error_codes(), [code], "{r}");
        assert_eq!(
            r.header("cache-control").as_deref(),
            Some("no-store"),
            "{r}"
        );
    };
    let r = token_post(&srv, &[("grant_type", "client_credentials")]).await;
    check(&r, 400, "unsupported_grant_type", "UNSUPPORTED_GRANT_TYPE");
    let r = token_post(&srv, &[("grant_type", "refresh_token")]).await;
    check(&r, 400, "invalid_request", "INVALID_REQUEST");
    let r = token_post(&srv, &[("grant_type", "password"), ("username", "owner")]).await;
    check(&r, 400, "invalid_request", "INVALID_REQUEST");
    let form = [
        ("grant_type", "password"),
        ("username", "owner"),
        ("password", "wrong-password-0123"),
        ("service", "x"),
    ];
    let client = client_from(&srv, fresh_ip());
    let body = form
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    let r = call_with(
        &srv,
        &client,
        Method::POST,
        "/oauth2/token",
        &Cred::None,
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(body.into_bytes()),
    )
    .await;
    check(&r, 401, "invalid_grant", "UNAUTHORIZED");
    let r = token_get(
        &srv,
        &client,
        &Cred::owner(),
        &["repository:a:pull:extra"],
        None,
        "",
    )
    .await;
    check(&r, 400, "invalid_scope", "INVALID_SCOPE");
}

/// A tmpfs of `mib` MiB, unmounted on drop. CI runs as root; a failure to mount fails the test.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u32) -> Tmpfs {
        let dir = tempfile::tempdir().expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test needs a small tmpfs (run it as root, as CI does): mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system to the last byte, then frees `leave` bytes; returns the filler.
    fn fill(&self, name: &str, leave: u64) -> PathBuf {
        use std::io::Write;
        let path = self.path().join(name);
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // Whatever is left is smaller than one write; take it too.
        for size in [4096usize, 512, 1] {
            while f.write(&vec![0u8; size]).is_ok_and(|n| n > 0) {}
        }
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(leave)).unwrap();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// An OCI layout with one image (`v1`) whose layer is `layer_len` random bytes; also returns
/// the layer's digest.
fn layout(layer_len: usize, rng: &mut Rng) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha256(data);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
        d
    };
    let layer = rng.bytes(layer_len);
    let ld = put(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [ld]},
    }))
    .unwrap();
    let cd = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
    }))
    .unwrap();
    let md = put(&manifest);
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": md, "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "v1"},
    }]});
    std::fs::write(dir.path().join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    (dir, ld)
}

fn skopeo_push(srv: &Server, certs: &Path, layout: &Path, repo: &str) -> Out {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--dest-creds"])
        .arg(format!("owner:{OWNER_PASSWORD}"))
        .arg("--dest-cert-dir")
        .arg(certs)
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{}/{repo}:v1", srv.host()));
    run(&mut cmd, None)
}

fn notary_as_owner(n: &Notary, args: &[&str]) -> Out {
    let mut cmd = n.cmd(args);
    cmd.env(
        "NOTARY_AUTH",
        base64::engine::general_purpose::STANDARD.encode(format!("owner:{OWNER_PASSWORD}")),
    );
    run(&mut cmd, None)
}

/// Bytes in the files under `dir` (the data left behind by failed writes).
fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            bytes_under(&e.path())
        } else {
            m.len()
        };
    }
    total
}

#[tokio::test]
async fn full_disk_is_reported_to_skopeo_and_notary_and_nothing_is_half_written() {
    let fs = Tmpfs::mount(8);
    let srv = Server::start_with_auth_in(fs.path());
    enable_trust_as_owner(&srv).await;
    let mut rng = Rng::new();
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(srv.ca_path(), certs.path().join("ca.crt")).unwrap();
    let data = srv.data_dir().to_path_buf();

    let gun = format!("{}/team/app", srv.host());
    let n = Notary::new(&srv);
    notary_as_owner(&n, &["init", &gun]).ok();

    // A layer larger than the disk: the chunk fails part way, is rolled back, and skopeo
    // (still sending) reads the 507.
    let (huge, huge_layer) = layout(12 << 20, &mut rng);
    let out = skopeo_push(&srv, certs.path(), huge.path(), "team/huge").fails();
    assert!(out.stderr.contains("507 Insufficient Storage"), "{out}");
    let r = call(
        &srv,
        Method::HEAD,
        &format!("/v2/team/huge/blobs/{huge_layer}"),
        &Cred::owner(),
        &[],
        None,
    )
    .await;
    r.expect(404);
    assert_eq!(
        bytes_under(&data.join("uploads")),
        0,
        "upload bytes were left"
    );

    // 32 KiB left and a 64 KiB layer: the write fails half way. skopeo reports 507
    // Insufficient Storage (it ignores the bodies of 5xx answers) and nothing stays.
    let filler = fs.fill("filler", 32 << 10);
    let (img, layer) = layout(64 << 10, &mut rng);
    let out = skopeo_push(&srv, certs.path(), img.path(), "team/big").fails();
    assert!(out.stderr.contains("507 Insufficient Storage"), "{out}");
    let r = call(
        &srv,
        Method::HEAD,
        &format!("/v2/team/big/blobs/{layer}"),
        &Cred::owner(),
        &[],
        None,
    )
    .await;
    r.expect(404);
    assert_eq!(
        bytes_under(&data.join("uploads")),
        0,
        "upload bytes were left"
    );
    let logs = srv.logs();
    assert!(logs.contains("No space left on device"), "{logs}");

    // The same in OCI error JSON, for a client that reads it.
    let blob = rng.bytes(64 << 10);
    let digest = sha256(&blob);
    let r = call(
        &srv,
        Method::POST,
        &format!("/v2/team/big/blobs/uploads/?digest={digest}"),
        &Cred::owner(),
        &[("content-type", "application/octet-stream")],
        Some(blob),
    )
    .await;
    r.expect_error(507, "UNKNOWN");
    let msg = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("no space left on device"), "{r}");
    let r = call(
        &srv,
        Method::HEAD,
        &format!("/v2/team/big/blobs/{digest}"),
        &Cred::owner(),
        &[],
        None,
    )
    .await;
    r.expect(404);
    assert_eq!(
        bytes_under(&data.join("uploads")),
        0,
        "upload bytes were left"
    );

    // A trust publish onto a full disk: notary shows why, and nothing is stored.
    let filler2 = fs.fill("filler2", 0);
    let out = notary_as_owner(&n, &["publish", &gun]).fails();
    assert!(out.all().contains("no space left"), "{out}");
    let r = call(
        &srv,
        Method::GET,
        &format!("/v2/{gun}/_trust/tuf/root.json"),
        &Cred::owner(),
        &[],
        None,
    )
    .await;
    r.expect(404);

    // The server keeps serving while the disk is full.
    call(&srv, Method::GET, "/v2/", &Cred::owner(), &[], None)
        .await
        .expect(200);
    let r = call(
        &srv,
        Method::GET,
        "/v2/team/big/tags/list",
        &Cred::owner(),
        &[],
        None,
    )
    .await;
    r.expect_error(404, "NAME_UNKNOWN");

    // Space again: the same publish and a push go through.
    std::fs::remove_file(filler).unwrap();
    std::fs::remove_file(filler2).unwrap();
    notary_as_owner(&n, &["publish", &gun]).ok();
    let out = notary_as_owner(&n, &["list", &gun]).ok();
    assert!(out.stdout.contains("No targets"), "{out}");
    skopeo_push(&srv, certs.path(), img.path(), "team/big").ok();
    let r = call(
        &srv,
        Method::GET,
        "/v2/team/big/tags/list",
        &Cred::owner(),
        &[],
        None,
    )
    .await;
    r.expect(200);
    assert_eq!(r.json()["tags"], json!(["v1"]), "{r}");

    // docker trust sign onto a full disk: the docker CLI shows why as well.
    let m = call(
        &srv,
        Method::GET,
        "/v2/team/big/manifests/v1",
        &Cred::owner(),
        &[("accept", OCI_MANIFEST)],
        None,
    )
    .await;
    m.expect(200);
    let digest = m.must_header("docker-content-digest");
    let d = Docker::logged_in(&srv, &Cred::owner());
    let reference = format!("{}/team/big:v1", srv.host());
    let filler3 = fs.fill("filler3", 0);
    {
        let _engine = FakeEngine::start(&d, &digest, m.body.len());
        let out = d.run(&["trust", "sign", &reference]).fails();
        assert!(out.all().contains("no space left"), "{out}");
    }
    std::fs::remove_file(filler3).unwrap();
    {
        let _engine = FakeEngine::start(&d, &digest, m.body.len());
        let out = d.run(&["trust", "sign", &reference]).ok();
        assert!(out.stdout.contains("Successfully signed"), "{out}");
    }
    drop(srv);
}

#[tokio::test]
async fn a_corrupt_stored_scope_map_is_reported_not_listed_as_empty() {
    let mut srv = Server::start_with_auth();
    scope_map(&srv, "ci", "team/app", &["content/read"]).await;
    let listed = admin(&srv, Method::GET, "scope-maps", None).await;
    assert_eq!(listed[0]["name"], "ci", "{listed}");
    assert!(
        listed[0]["rules"].is_array() || listed[0]["rules"].is_object(),
        "{listed}"
    );
    let status = srv.stop();
    assert!(status.success(), "{}", srv.logs());
    let db = rusqlite::Connection::open(srv.data_dir().join("metadata.db")).unwrap();
    db.execute(
        "UPDATE scope_maps SET rules = '{\"rules\": [' WHERE name = 'ci'",
        [],
    )
    .unwrap();
    drop(db);
    srv.restart_stopped();
    let r = admin_raw(&srv, Method::GET, "scope-maps", None).await;
    r.expect_error(500, "UNKNOWN");
    assert!(srv.logs().contains("stored scope map ci"), "{}", srv.logs());
}
