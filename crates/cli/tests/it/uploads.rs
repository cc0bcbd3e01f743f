//! Upload sessions: open, chunked and streamed PATCH, status, resume after 416, cancel, close.

use reqwest::Method;

use crate::harness::*;

const REPO: &str = "up/app";

/// The session id is the last path segment of the Location (ignoring any query).
fn session_id(loc: &str) -> String {
    let path = loc.split('?').next().unwrap();
    path.rsplit('/').next().unwrap().to_string()
}

/// Checks the headers every 202/204 upload response carries; returns the new Location.
fn assert_session(r: &Resp, repo: &str, range: &str) -> String {
    let loc = r.must_header("location");
    let prefix = format!("/v2/{repo}/blobs/uploads/");
    assert!(
        loc.starts_with(&prefix),
        "Location {loc} not under {prefix}: {r}"
    );
    let id = session_id(&loc);
    assert!(!id.is_empty(), "empty session id: {r}");
    assert_eq!(r.must_header("docker-upload-uuid"), id, "{r}");
    assert_eq!(r.must_header("range"), range, "{r}");
    loc
}

async fn status(srv: &Server, loc: &str) -> Resp {
    srv.get(loc).await
}

/// Closing PUT that carries the final chunk with its Content-Range.
async fn put_last_chunk(srv: &Server, loc: &str, digest: &str, start: usize, chunk: &[u8]) -> Resp {
    let range = format!("{}-{}", start, start + chunk.len() - 1);
    let len = chunk.len().to_string();
    srv.send(
        Method::PUT,
        &with_query(loc, &format!("digest={digest}")),
        &[
            ("content-type", "application/octet-stream"),
            ("content-range", &range),
            ("content-length", &len),
        ],
        Some(chunk.to_vec()),
    )
    .await
}

#[tokio::test]
async fn post_opens_a_session() {
    let srv = Server::start();
    let r = srv
        .post(&format!("/v2/{REPO}/blobs/uploads/"), Vec::new())
        .await;
    r.expect(202);
    let loc = assert_session(&r, REPO, "0-0");
    let min: u64 = r
        .must_header("oci-chunk-min-length")
        .parse()
        .expect("OCI-Chunk-Min-Length is a number");
    assert!(min > 0, "{r}");
    // Two sessions never share an id.
    let loc2 = srv.start_upload(REPO).await;
    assert_ne!(session_id(&loc), session_id(&loc2));
}

#[tokio::test]
async fn empty_session_status() {
    let srv = Server::start();
    let loc = srv.start_upload(REPO).await;
    let r = status(&srv, &loc).await;
    r.expect(204);
    assert_session(&r, REPO, "0-0");
}

#[tokio::test]
async fn chunked_upload_with_final_chunk_on_put() {
    let srv = Server::start();
    let data = Rng::new().bytes(25_001);
    let d = sha256(&data);
    let mut loc = srv.start_upload(REPO).await;
    // Chunks below OCI-Chunk-Min-Length (it is advisory), including a single byte.
    let cuts = [0usize, 10_000, 10_001, 20_000];
    for w in cuts.windows(2) {
        let r = srv.patch_chunk(&loc, w[0], &data[w[0]..w[1]]).await;
        r.expect(202);
        loc = assert_session(&r, REPO, &format!("0-{}", w[1] - 1));
        let s = status(&srv, &loc).await;
        s.expect(204);
        assert_session(&s, REPO, &format!("0-{}", w[1] - 1));
    }
    let r = put_last_chunk(&srv, &loc, &d, 20_000, &data[20_000..]).await;
    r.expect(201);
    assert_eq!(r.must_header("location"), format!("/v2/{REPO}/blobs/{d}"));
    assert_eq!(r.must_header("docker-content-digest"), d);
    let g = srv.get(&format!("/v2/{REPO}/blobs/{d}")).await;
    g.expect(200);
    assert_eq!(g.body, data);
    // The session is closed once the blob exists.
    status(&srv, &loc)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn chunked_upload_with_empty_put() {
    let srv = Server::start();
    let data = Rng::new().bytes(9000);
    let d = sha256(&data);
    let loc = srv.start_upload(REPO).await;
    let r = srv.patch_chunk(&loc, 0, &data[..4500]).await;
    r.expect(202);
    let loc = assert_session(&r, REPO, "0-4499");
    let r = srv.patch_chunk(&loc, 4500, &data[4500..]).await;
    r.expect(202);
    let loc = assert_session(&r, REPO, "0-8999");
    // A complete but unclosed upload is not a blob yet.
    srv.head(&format!("/v2/{REPO}/blobs/{d}")).await.expect(404);
    let r = srv
        .put_blob(&with_query(&loc, &format!("digest={d}")), Vec::new())
        .await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), d);
    assert_eq!(srv.get(&format!("/v2/{REPO}/blobs/{d}")).await.body, data);
}

#[tokio::test]
async fn out_of_order_chunks_get_416_and_session_survives() {
    let srv = Server::start();
    let data = Rng::new().bytes(3000);
    let d = sha256(&data);
    let loc = srv.start_upload(REPO).await;
    // First chunk must start at 0.
    let r = srv.patch_chunk(&loc, 5, &data[5..100]).await;
    r.expect_error(416, "BLOB_UPLOAD_INVALID");
    assert_eq!(r.must_header("range"), "0-0", "{r}");
    let r = srv.patch_chunk(&loc, 0, &data[..1000]).await;
    r.expect(202);
    let loc = assert_session(&r, REPO, "0-999");
    // Gap, overlap and re-send: all rejected, state unchanged.
    for (start, end) in [(1500usize, 2000usize), (500, 1500), (0, 1000), (999, 1999)] {
        let r = srv.patch_chunk(&loc, start, &data[start..end]).await;
        r.expect_error(416, "BLOB_UPLOAD_INVALID");
        assert_eq!(r.must_header("range"), "0-999", "{start}-{end}: {r}");
    }
    let s = status(&srv, &loc).await;
    s.expect(204);
    assert_session(&s, REPO, "0-999");
    let r = srv.patch_chunk(&loc, 1000, &data[1000..]).await;
    r.expect(202);
    let loc = assert_session(&r, REPO, "0-2999");
    srv.put_blob(&with_query(&loc, &format!("digest={d}")), Vec::new())
        .await
        .expect(201);
    assert_eq!(srv.get(&format!("/v2/{REPO}/blobs/{d}")).await.body, data);
}

#[tokio::test]
async fn streamed_patches_append() {
    let srv = Server::start();
    let data = Rng::new().bytes(50_000);
    let d = sha256(&data);
    let loc = srv.start_upload(REPO).await;
    let r = srv.patch_stream(&loc, &data[..20_000]).await;
    r.expect(202);
    let loc = assert_session(&r, REPO, "0-19999");
    let r = srv.patch_stream(&loc, &data[20_000..]).await;
    r.expect(202);
    let loc = assert_session(&r, REPO, "0-49999");
    let r = srv
        .put_blob(&with_query(&loc, &format!("digest={d}")), Vec::new())
        .await;
    r.expect(201);
    assert_eq!(srv.get(&format!("/v2/{REPO}/blobs/{d}")).await.body, data);
}

#[tokio::test]
async fn content_range_disagreeing_with_length_is_400() {
    let srv = Server::start();
    let data = Rng::new().bytes(1000);
    let loc = srv.start_upload(REPO).await;
    let r = srv
        .send(
            Method::PATCH,
            &loc,
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", "0-499"),
                ("content-length", "1000"),
            ],
            Some(data.clone()),
        )
        .await;
    r.expect(400);
    r.error_codes();
    // Nothing of the bad chunk was kept.
    let s = status(&srv, &loc).await;
    s.expect(204);
    assert_session(&s, REPO, "0-0");
}

#[tokio::test]
async fn cancel_upload() {
    let srv = Server::start();
    let data = Rng::new().bytes(2000);
    let d = sha256(&data);
    let loc = srv.start_upload(REPO).await;
    let r = srv.patch_chunk(&loc, 0, &data[..1000]).await;
    r.expect(202);
    let loc = r.must_header("location");
    srv.delete(&loc).await.expect(204);
    status(&srv, &loc)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    srv.patch_chunk(&loc, 1000, &data[1000..])
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    srv.put_blob(
        &with_query(&loc, &format!("digest={d}")),
        data[1000..].to_vec(),
    )
    .await
    .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    srv.delete(&loc)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    srv.head(&format!("/v2/{REPO}/blobs/{d}")).await.expect(404);
}

#[tokio::test]
async fn unknown_session_is_404() {
    let srv = Server::start();
    let mut rng = Rng::new();
    // Make the repository exist so only the session is unknown.
    srv.push_blob(REPO, &rng.bytes(10)).await;
    let data = rng.bytes(10);
    let loc = format!(
        "/v2/{REPO}/blobs/uploads/{}-{}-{}-{}-{}",
        rng.hex(8),
        rng.hex(4),
        rng.hex(4),
        rng.hex(4),
        rng.hex(12)
    );
    status(&srv, &loc)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    srv.patch_chunk(&loc, 0, &data)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    srv.put_blob(
        &with_query(&loc, &format!("digest={}", sha256(&data))),
        data,
    )
    .await
    .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    srv.delete(&loc)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn session_cannot_be_used_through_another_repository() {
    let srv = Server::start();
    let data = Rng::new().bytes(100);
    let loc = srv.start_upload("up/one").await;
    let id = session_id(&loc);
    let foreign = format!("/v2/up/two/blobs/uploads/{id}");
    status(&srv, &foreign)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    srv.put_blob(
        &with_query(&foreign, &format!("digest={}", sha256(&data))),
        data,
    )
    .await
    .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    // The rightful owner can still use it.
    status(&srv, &loc).await.expect(204);
}

#[tokio::test]
async fn put_with_mismatched_digest_discards_session() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let data = rng.bytes(4000);
    let wrong = sha256(&rng.bytes(4000));
    let loc = srv.start_upload(REPO).await;
    let r = srv.patch_chunk(&loc, 0, &data).await;
    r.expect(202);
    let loc = r.must_header("location");
    srv.put_blob(&with_query(&loc, &format!("digest={wrong}")), Vec::new())
        .await
        .expect_error(400, "DIGEST_INVALID");
    status(&srv, &loc)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    for d in [wrong, sha256(&data)] {
        srv.head(&format!("/v2/{REPO}/blobs/{d}")).await.expect(404);
    }
}

#[tokio::test]
async fn put_with_malformed_digest_is_400() {
    let srv = Server::start();
    let data = Rng::new().bytes(64);
    for d in ["sha256:xyz", "md5:0123456789abcdef0123456789abcdef"] {
        let loc = srv.start_upload(REPO).await;
        srv.put_blob(&with_query(&loc, &format!("digest={d}")), data.clone())
            .await
            .expect_error(400, "DIGEST_INVALID");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_of_the_same_blob_both_succeed() {
    let srv = Server::start();
    let data = Rng::new().bytes(30_000);
    let d = sha256(&data);
    let a = srv.start_upload(REPO).await;
    let b = srv.start_upload(REPO).await;
    // Interleave the two sessions chunk by chunk.
    let ra = srv.patch_chunk(&a, 0, &data[..15_000]).await;
    ra.expect(202);
    let rb = srv.patch_chunk(&b, 0, &data[..15_000]).await;
    rb.expect(202);
    let (a, b) = (ra.must_header("location"), rb.must_header("location"));
    let (ra, rb) = tokio::join!(
        put_last_chunk(&srv, &a, &d, 15_000, &data[15_000..]),
        put_last_chunk(&srv, &b, &d, 15_000, &data[15_000..]),
    );
    ra.expect(201);
    rb.expect(201);
    assert_eq!(srv.get(&format!("/v2/{REPO}/blobs/{d}")).await.body, data);
}

#[tokio::test]
async fn misaligned_final_chunk_on_put_is_416() {
    let srv = Server::start();
    let data = Rng::new().bytes(3000);
    let d = sha256(&data);
    let loc = srv.start_upload(REPO).await;
    let r = srv.patch_chunk(&loc, 0, &data[..1000]).await;
    r.expect(202);
    let loc = r.must_header("location");
    let r = put_last_chunk(&srv, &loc, &d, 1500, &data[1500..]).await;
    r.expect_error(416, "BLOB_UPLOAD_INVALID");
    srv.head(&format!("/v2/{REPO}/blobs/{d}")).await.expect(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_chunks_on_one_session_admit_exactly_one() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let loc = srv.start_upload(REPO).await;
    let candidates: Vec<Vec<u8>> = (0..8).map(|_| rng.bytes(200_000)).collect();
    // All claim offset 0; the session may accept only one of them.
    let results =
        futures::future::join_all(candidates.iter().map(|c| srv.patch_chunk(&loc, 0, c))).await;
    let winners: Vec<usize> = (0..results.len())
        .filter(|i| results[*i].status == 202)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "statuses: {:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for (i, r) in results.iter().enumerate() {
        if i != winners[0] {
            r.expect_error(416, "BLOB_UPLOAD_INVALID");
        }
    }
    let data = &candidates[winners[0]];
    let d = sha256(data);
    let s = srv.get(&loc).await;
    s.expect(204);
    assert_eq!(s.must_header("range"), format!("0-{}", data.len() - 1));
    srv.put_blob(
        &with_query(&s.must_header("location"), &format!("digest={d}")),
        Vec::new(),
    )
    .await
    .expect(201);
    assert_eq!(&srv.get(&format!("/v2/{REPO}/blobs/{d}")).await.body, data);
}
