//! Blob push (monolithic), pull, HEAD, Range, delete, repository isolation and mounts.

use crate::harness::*;

/// Asserts GET and HEAD of a blob return exactly `data`.
async fn assert_blob(srv: &Server, repo: &str, data: &[u8], digest: &str) {
    let path = format!("/v2/{repo}/blobs/{digest}");
    let g = srv.get(&path).await;
    g.expect(200);
    assert_eq!(g.body, data, "blob bytes differ: {g}");
    assert_eq!(g.must_header("docker-content-digest"), digest, "{g}");
    assert_eq!(
        g.must_header("content-length"),
        data.len().to_string(),
        "{g}"
    );
    let h = srv.head(&path).await;
    h.expect(200);
    assert_eq!(h.must_header("docker-content-digest"), digest, "{h}");
    assert_eq!(
        h.must_header("content-length"),
        data.len().to_string(),
        "{h}"
    );
}

#[tokio::test]
async fn monolithic_post_creates_blob() {
    let srv = Server::start();
    let data = Rng::new().bytes(5000);
    let d = sha256(&data);
    let r = srv
        .post(
            &format!("/v2/mono/app/blobs/uploads/?digest={d}"),
            data.clone(),
        )
        .await;
    r.expect(201);
    assert_eq!(r.must_header("location"), format!("/v2/mono/app/blobs/{d}"));
    assert_eq!(r.must_header("docker-content-digest"), d);
    assert_blob(&srv, "mono/app", &data, &d).await;
}

#[tokio::test]
async fn monolithic_post_with_wrong_digest_is_rejected_and_nothing_stored() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let data = rng.bytes(3000);
    let claimed = sha256(&rng.bytes(10));
    let r = srv
        .post(
            &format!("/v2/mono/app/blobs/uploads/?digest={claimed}"),
            data.clone(),
        )
        .await;
    r.expect_error(400, "DIGEST_INVALID");
    for d in [claimed, sha256(&data)] {
        srv.head(&format!("/v2/mono/app/blobs/{d}"))
            .await
            .expect(404);
    }
}

#[tokio::test]
async fn malformed_digests_are_rejected() {
    let srv = Server::start();
    let data = Rng::new().bytes(100);
    let hexd = sha256(&data)["sha256:".len()..].to_string();
    let bad = [
        "sha256:xyz".to_string(),
        format!("md5:{}", &hexd[..32]),
        format!("sha256:{}", hexd.to_uppercase()),
        format!("sha256:{}", &hexd[..63]),
        format!("sha256:{hexd}0"),
        hexd.clone(),
        format!("sha512:{hexd}"),
    ];
    for d in &bad {
        let r = srv
            .post(
                &format!("/v2/mono/app/blobs/uploads/?digest={d}"),
                data.clone(),
            )
            .await;
        r.expect_error(400, "DIGEST_INVALID");
    }
}

#[tokio::test]
async fn post_then_put_creates_blob() {
    let srv = Server::start();
    let data = Rng::new().bytes(70_000);
    let d = sha256(&data);
    let loc = srv.start_upload("pp/app").await;
    let r = srv
        .put_blob(&with_query(&loc, &format!("digest={d}")), data.clone())
        .await;
    r.expect(201);
    assert_eq!(r.must_header("location"), format!("/v2/pp/app/blobs/{d}"));
    assert_eq!(r.must_header("docker-content-digest"), d);
    assert_blob(&srv, "pp/app", &data, &d).await;
}

#[tokio::test]
async fn empty_blob_can_be_pushed_and_pulled() {
    let srv = Server::start();
    let d = srv.push_blob("empty/app", &[]).await;
    assert_eq!(d, sha256(&[]));
    assert_blob(&srv, "empty/app", &[], &d).await;
}

#[tokio::test]
async fn sha512_blob_via_post_put() {
    let srv = Server::start();
    let data = Rng::new().bytes(4096);
    let d = sha512(&data);
    assert_eq!(d.len(), "sha512:".len() + 128);
    let loc = srv.start_upload("s512/app").await;
    let r = srv
        .put_blob(&with_query(&loc, &format!("digest={d}")), data.clone())
        .await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), d);
    assert_eq!(r.must_header("location"), format!("/v2/s512/app/blobs/{d}"));
    assert_blob(&srv, "s512/app", &data, &d).await;
}

#[tokio::test]
async fn sha512_blob_via_monolithic_post() {
    let srv = Server::start();
    let data = Rng::new().bytes(4096);
    let d = sha512(&data);
    let r = srv
        .post(
            &format!("/v2/s512/app/blobs/uploads/?digest={d}"),
            data.clone(),
        )
        .await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), d);
    assert_blob(&srv, "s512/app", &data, &d).await;
    // A sha512 digest that does not match is still a digest error.
    let wrong = sha512(&data[1..]);
    srv.post(&format!("/v2/s512/app/blobs/uploads/?digest={wrong}"), data)
        .await
        .expect_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn sha512_session_via_digest_algorithm() {
    let srv = Server::start();
    let data = Rng::new().bytes(10_000);
    let d = sha512(&data);
    let r = srv
        .post(
            "/v2/s512/app/blobs/uploads/?digest-algorithm=sha512",
            Vec::new(),
        )
        .await;
    r.expect(202);
    let loc = r.must_header("location");
    srv.patch_chunk(&loc, 0, &data[..6000]).await.expect(202);
    let r = srv.patch_chunk(&loc, 6000, &data[6000..]).await;
    r.expect(202);
    let loc = r.must_header("location");
    let r = srv
        .put_blob(&with_query(&loc, &format!("digest={d}")), Vec::new())
        .await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), d);
    assert_blob(&srv, "s512/app", &data, &d).await;
}

#[tokio::test]
async fn unknown_blob_is_404() {
    let srv = Server::start();
    let mut rng = Rng::new();
    srv.push_blob("known/app", &rng.bytes(10)).await;
    let d = sha256(&rng.bytes(10));
    srv.get(&format!("/v2/known/app/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    srv.head(&format!("/v2/known/app/blobs/{d}"))
        .await
        .expect(404);
    // Unknown repository: a 404 either way (BLOB_UNKNOWN or NAME_UNKNOWN are both sensible).
    let r = srv.get(&format!("/v2/nothing/here/blobs/{d}")).await;
    r.expect(404);
    r.error_codes();
}

#[tokio::test]
async fn range_requests() {
    let srv = Server::start();
    let data = Rng::new().bytes(10_000);
    let d = srv.push_blob("range/app", &data).await;
    let path = format!("/v2/range/app/blobs/{d}");
    let size = data.len();
    let cases: [(String, usize, usize); 5] = [
        ("bytes=0-0".into(), 0, 0),
        ("bytes=100-1099".into(), 100, 1099),
        ("bytes=9000-".into(), 9000, size - 1),
        ("bytes=-250".into(), size - 250, size - 1),
        // An end past the size is clamped (RFC 9110 14.1.1).
        (format!("bytes=5000-{}", size + 500), 5000, size - 1),
    ];
    for (range, a, b) in cases {
        let r = srv.get_with(&path, &[("range", &range)]).await;
        r.expect(206);
        assert_eq!(
            r.must_header("content-range"),
            format!("bytes {a}-{b}/{size}"),
            "{range}: {r}"
        );
        assert_eq!(r.body, data[a..=b], "{range}: wrong bytes");
    }
    for range in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 10, size + 20),
    ] {
        let r = srv.get_with(&path, &[("range", &range)]).await;
        r.expect(416);
        assert_eq!(
            r.must_header("content-range"),
            format!("bytes */{size}"),
            "{r}"
        );
    }
}

#[tokio::test]
async fn blob_in_one_repo_is_invisible_in_another() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let data = rng.bytes(2000);
    let d = srv.push_blob("iso/a", &data).await;
    // Make repo B exist, so the 404 is about the blob, not the repository.
    srv.push_blob("iso/b", &rng.bytes(10)).await;
    srv.get(&format!("/v2/iso/b/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    srv.head(&format!("/v2/iso/b/blobs/{d}")).await.expect(404);
    // Nor may the unpulled repo use it to satisfy a manifest.
    let config = rng.bytes(20);
    srv.push_blob("iso/b", &config).await;
    let m = oci_manifest(&config, &[data], |_| {});
    srv.put_manifest("iso/b", "v1", OCI_MANIFEST, &m)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn delete_blob() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let data = rng.bytes(1234);
    let d = srv.push_blob("del/app", &data).await;
    srv.delete(&format!("/v2/del/app/blobs/{d}"))
        .await
        .expect(202);
    srv.get(&format!("/v2/del/app/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    srv.head(&format!("/v2/del/app/blobs/{d}"))
        .await
        .expect(404);
    srv.delete(&format!("/v2/del/app/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    let other = sha256(&rng.bytes(8));
    srv.delete(&format!("/v2/del/app/blobs/{other}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn deleting_a_shared_blob_in_one_repo_keeps_it_in_another() {
    let srv = Server::start();
    let data = Rng::new().bytes(3000);
    let d = srv.push_blob("share/a", &data).await;
    assert_eq!(srv.push_blob("share/b", &data).await, d);
    // Pushing the same content twice into one repo is fine too (content-addressed).
    assert_eq!(srv.push_blob("share/b", &data).await, d);
    srv.delete(&format!("/v2/share/a/blobs/{d}"))
        .await
        .expect(202);
    srv.get(&format!("/v2/share/a/blobs/{d}")).await.expect(404);
    assert_blob(&srv, "share/b", &data, &d).await;
}

#[tokio::test]
async fn cross_repo_mount() {
    let srv = Server::start();
    let data = Rng::new().bytes(5555);
    let d = srv.push_blob("mnt/src", &data).await;
    let r = srv
        .post(
            &format!("/v2/mnt/dst/blobs/uploads/?mount={d}&from=mnt/src"),
            Vec::new(),
        )
        .await;
    r.expect(201);
    assert_eq!(r.must_header("location"), format!("/v2/mnt/dst/blobs/{d}"));
    assert_eq!(r.must_header("docker-content-digest"), d);
    assert_blob(&srv, "mnt/dst", &data, &d).await;
    // The mount is a link: the source keeps its copy when the target drops it.
    srv.delete(&format!("/v2/mnt/dst/blobs/{d}"))
        .await
        .expect(202);
    assert_blob(&srv, "mnt/src", &data, &d).await;
}

/// Completes a fallback session returned by a refused mount, proving it is a real session.
async fn finish_fallback(srv: &Server, r: &Resp, repo: &str, data: &[u8]) {
    r.expect(202);
    let loc = r.must_header("location");
    assert!(
        loc.starts_with(&format!("/v2/{repo}/blobs/uploads/")),
        "fallback Location is not an upload session: {r}"
    );
    let d = sha256(data);
    srv.put_blob(&with_query(&loc, &format!("digest={d}")), data.to_vec())
        .await
        .expect(201);
    assert_blob(srv, repo, data, &d).await;
}

#[tokio::test]
async fn mount_from_repo_lacking_blob_falls_back_to_upload() {
    let srv = Server::start();
    let mut rng = Rng::new();
    srv.push_blob("mnt/src", &rng.bytes(10)).await;
    let data = rng.bytes(777);
    let d = sha256(&data);
    let r = srv
        .post(
            &format!("/v2/mnt/dst/blobs/uploads/?mount={d}&from=mnt/src"),
            Vec::new(),
        )
        .await;
    finish_fallback(&srv, &r, "mnt/dst", &data).await;
}

#[tokio::test]
async fn mount_from_unknown_repo_falls_back_to_upload() {
    let srv = Server::start();
    let data = Rng::new().bytes(777);
    let d = sha256(&data);
    let r = srv
        .post(
            &format!("/v2/mnt/dst/blobs/uploads/?mount={d}&from=no/such"),
            Vec::new(),
        )
        .await;
    finish_fallback(&srv, &r, "mnt/dst", &data).await;
}

#[tokio::test]
async fn mount_without_from_falls_back_to_upload() {
    let srv = Server::start();
    let data = Rng::new().bytes(777);
    // Even when some other repository has the blob.
    let d = srv.push_blob("mnt/src", &data).await;
    let r = srv
        .post(&format!("/v2/mnt/dst/blobs/uploads/?mount={d}"), Vec::new())
        .await;
    finish_fallback(&srv, &r, "mnt/dst", &data).await;
}

#[tokio::test]
async fn deleted_blob_can_be_pushed_again() {
    let srv = Server::start();
    let data = Rng::new().bytes(4321);
    let d = srv.push_blob("again/app", &data).await;
    srv.delete(&format!("/v2/again/app/blobs/{d}"))
        .await
        .expect(202);
    srv.head(&format!("/v2/again/app/blobs/{d}"))
        .await
        .expect(404);
    assert_eq!(srv.push_blob("again/app", &data).await, d);
    assert_blob(&srv, "again/app", &data, &d).await;
    // And via the monolithic POST as well, after another delete.
    srv.delete(&format!("/v2/again/app/blobs/{d}"))
        .await
        .expect(202);
    srv.post(
        &format!("/v2/again/app/blobs/uploads/?digest={d}"),
        data.clone(),
    )
    .await
    .expect(201);
    assert_blob(&srv, "again/app", &data, &d).await;
}

#[tokio::test]
async fn mount_from_repo_that_deleted_the_blob_falls_back() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let data = rng.bytes(999);
    let d = srv.push_blob("mnt/src", &data).await;
    srv.push_blob("mnt/src", &rng.bytes(5)).await;
    srv.delete(&format!("/v2/mnt/src/blobs/{d}"))
        .await
        .expect(202);
    let r = srv
        .post(
            &format!("/v2/mnt/dst/blobs/uploads/?mount={d}&from=mnt/src"),
            Vec::new(),
        )
        .await;
    finish_fallback(&srv, &r, "mnt/dst", &data).await;
}
