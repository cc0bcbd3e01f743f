//! Persistence across restarts, resumable uploads, graceful shutdown.

use crate::harness::*;

#[tokio::test]
async fn content_survives_restart() {
    let mut srv = Server::start();
    let mut rng = Rng::new();
    let img = srv
        .push_image("keep/app", Some("v1"), "amd64", &mut rng)
        .await;
    let loose = rng.bytes(3000);
    let loose_d = srv.push_blob("keep/other", &loose).await;
    let wide = rng.bytes(3000);
    let wide_d = sha512(&wide);
    srv.post(
        &format!("/v2/keep/other/blobs/uploads/?digest={wide_d}"),
        wide.clone(),
    )
    .await
    .expect(201);
    // A referrer, so the subject index survives too.
    let cfg = rng.bytes(10);
    srv.push_blob("keep/app", &cfg).await;
    let sig = oci_manifest(&cfg, &[], |m| {
        m.insert("subject".into(), desc(OCI_MANIFEST, &img.manifest));
        m.insert("artifactType".into(), "application/vnd.example.sig".into());
    });
    let sig_d = srv
        .push_manifest("keep/app", &sha256(&sig), OCI_MANIFEST, &sig)
        .await;
    srv.restart();
    let r = srv
        .get(&format!("/v2/keep/app/referrers/{}", img.digest))
        .await;
    r.expect(200);
    let listed: Vec<String> = r.json()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, [sig_d], "{r}");
    let b = srv.get(&format!("/v2/keep/other/blobs/{wide_d}")).await;
    b.expect(200);
    assert_eq!(b.body, wide);
    let g = srv.get("/v2/keep/app/manifests/v1").await;
    g.expect(200);
    assert_eq!(g.body, img.manifest);
    assert_eq!(g.must_header("docker-content-digest"), img.digest);
    assert_eq!(g.must_header("content-type"), OCI_MANIFEST);
    for blob in std::iter::once(&img.config).chain(img.layers.iter()) {
        let d = sha256(blob);
        let b = srv.get(&format!("/v2/keep/app/blobs/{d}")).await;
        b.expect(200);
        assert_eq!(&b.body, blob);
        assert_eq!(b.must_header("docker-content-digest"), d);
    }
    let b = srv.get(&format!("/v2/keep/other/blobs/{loose_d}")).await;
    b.expect(200);
    assert_eq!(b.body, loose);
    let t = srv.get("/v2/keep/app/tags/list").await;
    t.expect(200);
    assert_eq!(t.json()["tags"], serde_json::json!(["v1"]));
    let c = srv.get("/v2/_catalog").await;
    c.expect(200);
    assert_eq!(
        c.json()["repositories"],
        serde_json::json!(["keep/app", "keep/other"])
    );
}

#[tokio::test]
async fn tls_identity_survives_restart() {
    let mut srv = Server::start();
    let ca_before = std::fs::read(srv.ca_path()).unwrap();
    // Clients keep the CA they were given; it must stay valid.
    let old_client = srv.client.clone();
    srv.restart();
    assert_eq!(
        std::fs::read(srv.ca_path()).unwrap(),
        ca_before,
        "CA regenerated"
    );
    let r = old_client
        .get(srv.url("/v2/"))
        .send()
        .await
        .expect("old trust still valid after restart");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn upload_resumes_after_restart() {
    let mut srv = Server::start();
    let data = Rng::new().bytes(30_000);
    let d = sha256(&data);
    let loc = srv.start_upload("resume/app").await;
    let r = srv.patch_chunk(&loc, 0, &data[..12_000]).await;
    r.expect(202);
    let loc = r.must_header("location");
    srv.restart();
    let s = srv.get(&loc).await;
    s.expect(204);
    assert_eq!(s.must_header("range"), "0-11999", "{s}");
    let loc = s.must_header("location");
    let r = srv.patch_chunk(&loc, 12_000, &data[12_000..20_000]).await;
    r.expect(202);
    assert_eq!(r.must_header("range"), "0-19999", "{r}");
    let loc = r.must_header("location");
    // The first chunk again must still be refused after the restart.
    srv.patch_chunk(&loc, 0, &data[..12_000])
        .await
        .expect_error(416, "BLOB_UPLOAD_INVALID");
    let r = srv.patch_chunk(&loc, 20_000, &data[20_000..]).await;
    r.expect(202);
    let loc = r.must_header("location");
    srv.put_blob(&with_query(&loc, &format!("digest={d}")), Vec::new())
        .await
        .expect(201);
    let g = srv.get(&format!("/v2/resume/app/blobs/{d}")).await;
    g.expect(200);
    assert_eq!(g.body, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_when_idle_exits_zero() {
    let mut srv = Server::start();
    // Idle keep-alive connections (HTTP/2 via ALPN and HTTP/1.1) are not "in flight".
    let h2 = srv.client_builder().build().unwrap();
    let h1 = srv.client_builder().http1_only().build().unwrap();
    for (c, version) in [
        (&h2, reqwest::Version::HTTP_2),
        (&h1, reqwest::Version::HTTP_11),
    ] {
        let r = c.get(srv.url("/v2/")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.version(), version);
        r.bytes().await.unwrap();
    }
    // block_in_place keeps the clients' connection tasks running (h2 must answer the
    // server's GOAWAY/PING) while this thread waits for the process.
    let status = tokio::task::block_in_place(|| srv.stop());
    assert!(status.success(), "exit status {status}\n{}", srv.logs());
}

#[tokio::test]
async fn sigterm_right_after_start_exits_zero() {
    let mut srv = Server::start();
    let status = srv.stop();
    assert!(status.success(), "exit status {status}\n{}", srv.logs());
}

/// A second server on the same data directory is refused before it touches anything: the
/// first keeps exact in-memory copies of hot metadata that a second writer would make stale.
#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let srv = Server::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "serve",
            "--auth-disabled",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(srv.data_dir())
        .env("BERTH_LOG", "error")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run a second berth serve");
    assert!(!out.status.success(), "the second server started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another berth server is using"),
        "unexpected error: {err}"
    );
    srv.get("/v2/").await.expect(200);
}

/// The upload record is the truth about where a session ends: a chunk a crash left stored but
/// never acknowledged (a part the record does not list) is not part of the blob, and the session
/// continues (hash included) from the acknowledged end after a restart.
#[tokio::test]
async fn unacknowledged_upload_bytes_left_by_a_crash_are_discarded() {
    let mut srv = Server::start();
    let data = Rng::new().bytes(30_000);
    let d = sha256(&data);
    let loc = srv.start_upload("crash/app").await;
    let r = srv.patch_chunk(&loc, 0, &data[..12_000]).await;
    r.expect(202);
    let loc = r.must_header("location");
    let id = loc
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    srv.stop();
    // What a kill -9 between writing a chunk and acknowledging it leaves behind: beside the
    // acknowledged part, one the record never listed.
    let dir = srv.data_dir().join("uploads").join(&id);
    let stored: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(stored.len(), 1, "one part per acknowledged chunk");
    std::fs::write(dir.join("0e0e0e0e0e0e0e0e"), [0xEE; 5_000]).unwrap();
    srv.restart_stopped();
    let s = srv.get(&loc).await;
    s.expect(204);
    assert_eq!(s.must_header("range"), "0-11999", "{s}");
    let r = srv.patch_chunk(&loc, 12_000, &data[12_000..]).await;
    r.expect(202);
    assert_eq!(r.must_header("range"), "0-29999", "{r}");
    srv.put_blob(
        &with_query(&r.must_header("location"), &format!("digest={d}")),
        Vec::new(),
    )
    .await
    .expect(201);
    let g = srv.get(&format!("/v2/crash/app/blobs/{d}")).await;
    g.expect(200);
    assert_eq!(g.body, data);
}
