//! The S3 blob store on a real S3 server (Garage; see `berth_storage_s3::testing`): the storage
//! conformance suite with PostgreSQL metadata, two nodes racing on one upload, blobs of tens of
//! MiB through every publishing path with ranged reads, listing pages and signature checks.

use berth_oci::Digest;
use berth_storage::{BlobStore, ByteStream, UploadPart};
use berth_storage_postgres::PgStore;
use berth_storage_postgres::testing::fresh_database;
use berth_storage_s3::testing::{fresh_prefix, fresh_store, server, store_at};
use berth_storage_s3::{S3BlobStore, S3Config};
use bytes::Bytes;
use futures::StreamExt;

#[tokio::test]
async fn s3_blobs_and_postgres_metadata_pass_the_storage_conformance_suite() {
    let db = fresh_database().await;
    let meta = PgStore::connect(&db.url).await.unwrap();
    let blobs = fresh_store();
    berth_storage::testsuite::run_all(&blobs, &meta).await;
    assert_eq!(
        blobs.keys().await.unwrap(),
        Vec::<String>::new(),
        "every session and blob the suite made is gone"
    );
    drop(meta);
    db.drop_database().await;
}

/// Two nodes: two S3 stores over one bucket and prefix, two PostgreSQL pools over one database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_s3_and_postgres_nodes_pass_the_concurrency_rules() {
    let db = fresh_database().await;
    let (ma, mb) = (
        PgStore::connect(&db.url).await.unwrap(),
        PgStore::connect(&db.url).await.unwrap(),
    );
    let prefix = fresh_prefix();
    let (a, b) = (store_at(&prefix), store_at(&prefix));
    berth_storage::testsuite::run_upload_race((&a, &ma), (&b, &mb)).await;
    berth_storage::testsuite::run_concurrency(&ma, &mb).await;
    // Collection on one node racing pushes through the other (row and advisory locks).
    berth_storage::testsuite::run_gc_race(&a, &ma, &mb).await;
    assert_eq!(a.keys().await.unwrap(), Vec::<String>::new());
    drop((ma, mb));
    db.drop_database().await;
}

/// Deterministic bytes (xorshift), `len` of them from `offset` of the same infinite sequence
/// (as 64 KiB pieces, never all at once).
fn bytes_at(seed: u64, offset: u64, len: u64) -> ByteStream {
    const PIECE: u64 = 64 << 10;
    let byte = move |i: u64| -> u8 {
        let mut x = seed ^ (i / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> ((i % 8) * 8)) as u8
    };
    Box::pin(futures::stream::unfold(offset, move |at| async move {
        let end = offset + len;
        if at >= end {
            return None;
        }
        let n = PIECE.min(end - at);
        let piece: Vec<u8> = (at..at + n).map(byte).collect();
        Some((Ok(Bytes::from(piece)), at + n))
    }))
}

async fn digest_of(mut s: ByteStream) -> (Digest, u64) {
    let mut h = berth_oci::Digester::new(berth_oci::Algorithm::Sha256);
    let mut n = 0u64;
    while let Some(c) = s.next().await {
        let c = c.unwrap();
        n += c.len() as u64;
        h.update(&c);
    }
    (h.finish(), n)
}

async fn collect(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

const MIB: u64 = 1 << 20;

/// Pushes one blob of `sizes` chunks through the store, commits the recorded parts and checks
/// what comes back: whole (digest), and in ranges that cross the chunks' boundaries.
async fn push_in_chunks(s: &S3BlobStore, id: &str, seed: u64, sizes: &[u64]) {
    let total: u64 = sizes.iter().sum();
    let (want, _) = digest_of(bytes_at(seed, 0, total)).await;
    s.upload_start(id).await.unwrap();
    let mut parts = Vec::new();
    let mut at = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let name = format!("p{i}");
        // A stray at the same offset, as a racing writer leaves: never part of the blob.
        s.upload_write(
            id,
            &format!("stray{i}"),
            at,
            None,
            bytes_at(!seed, at, 1000),
        )
        .await
        .unwrap();
        let n = s
            .upload_write(id, &name, at, Some(size), bytes_at(seed, at, size))
            .await
            .unwrap();
        assert_eq!(n, size);
        parts.push(UploadPart {
            name,
            offset: at,
            size,
        });
        at += size;
    }
    assert_eq!(
        digest_of(s.upload_read(id, &parts).await.unwrap()).await,
        (want.clone(), total),
        "{id}: the recorded parts read back"
    );
    assert_eq!(s.upload_commit(id, &parts, &want).await.unwrap(), total);
    assert_eq!(s.stat(&want).await.unwrap(), Some(total));
    assert_eq!(
        digest_of(s.read(&want, 0, total).await.unwrap()).await,
        (want.clone(), total),
        "{id}: the blob reads back whole"
    );
    let mut boundaries: Vec<u64> = sizes
        .iter()
        .scan(0, |end, s| {
            *end += s;
            Some(*end)
        })
        .collect();
    boundaries.pop();
    for b in boundaries.into_iter().chain([total / 3]) {
        let (from, len) = (b.saturating_sub(100_000), 300_000.min(total - b + 100_000));
        assert_eq!(
            collect(s.read(&want, from, len).await.unwrap()).await,
            collect(bytes_at(seed, from, len)).await,
            "{id}: {len} bytes from {from}"
        );
    }
    assert_eq!(
        collect(s.read(&want, total - 10, 10).await.unwrap()).await,
        collect(bytes_at(seed, total - 10, 10)).await
    );
    assert!(!s.upload_exists(id).await.unwrap());
    s.delete(&want).await.unwrap();
}

/// Tens of MiB through each way a blob is published: one large chunk (written as a multipart
/// object, published by a server-side copy), chunks S3 can take as multipart parts (copied part
/// by part inside the store), and small chunks (streamed through one buffer into a multipart
/// upload).
#[tokio::test]
async fn large_blobs_stream_through_every_publishing_path() {
    let s = fresh_store();
    push_in_chunks(&s, "one-chunk", 1, &[40 * MIB + 12_345]).await;
    push_in_chunks(
        &s,
        "big-chunks",
        2,
        &[6 * MIB, 9 * MIB + 7, 5 * MIB, 3 * MIB + 1],
    )
    .await;
    // A closing request without a body leaves an empty last part.
    push_in_chunks(&s, "then-empty", 4, &[6 * MIB + 3, 0]).await;
    push_in_chunks(&s, "small-then-empty", 5, &[MIB, 0]).await;
    push_in_chunks(
        &s,
        "small-chunks",
        3,
        &[MIB, 3 * MIB, 1, 7 * MIB, 2 * MIB + 5, 4 * MIB, 3 * MIB],
    )
    .await;
    assert_eq!(s.keys().await.unwrap(), Vec::<String>::new());
}

/// A session with more objects than a listing page: commit and abort still find every one.
#[tokio::test]
async fn listings_are_followed_across_pages() {
    let s = fresh_store().with_list_page_size(2);
    for (id, commit) in [("paged-commit", true), ("paged-abort", false)] {
        s.upload_start(id).await.unwrap();
        let mut parts = Vec::new();
        for i in 0..5u64 {
            let name = format!("p{i}");
            let data: ByteStream = Box::pin(futures::stream::once(async move {
                Ok(Bytes::from(vec![b'a' + i as u8; 3]))
            }));
            s.upload_write(id, &name, i * 3, None, data).await.unwrap();
            parts.push(UploadPart {
                name,
                offset: i * 3,
                size: 3,
            });
        }
        assert_eq!(
            s.keys().await.unwrap().len(),
            6,
            "{id}: five parts and the marker"
        );
        if commit {
            let d = Digest::sha256_of(b"aaabbbcccdddeee");
            assert_eq!(s.upload_commit(id, &parts, &d).await.unwrap(), 15);
            assert_eq!(
                collect(s.read(&d, 0, 15).await.unwrap()).await,
                b"aaabbbcccdddeee"
            );
            s.delete(&d).await.unwrap();
        } else {
            s.upload_abort(id).await.unwrap();
        }
        assert_eq!(s.keys().await.unwrap(), Vec::<String>::new(), "{id}");
    }
}

/// The server checks signatures: a wrong secret is refused with a clear error, not taken for a
/// missing blob.
#[tokio::test]
async fn a_wrong_secret_is_refused_clearly() {
    let good = fresh_store();
    good.check().await.unwrap();
    let bad = S3BlobStore::new(
        S3Config {
            secret_key: "0".repeat(64),
            prefix: "t-wrong-secret/".into(),
            ..server().clone()
        },
        S3BlobStore::default_http().unwrap(),
    )
    .unwrap();
    let e = bad.check().await.unwrap_err().to_string();
    assert!(e.contains("403"), "{e}");
    let d = Digest::sha256_of(b"x");
    let e = bad.stat(&d).await.unwrap_err().to_string();
    assert!(e.contains("403"), "{e}");
    assert!(bad.upload_start("u1").await.is_err());
    let e = bad.read(&d, 0, 1).await.err().expect("refused").to_string();
    assert!(e.contains("403"), "{e}");
}

/// A writer that dies mid-chunk (its node killed: no abort is sent) leaves a multipart upload
/// open in the bucket, holding the parts it sent; removing the session (cancel, purge or
/// commit) aborts it too.
#[tokio::test]
async fn a_writer_killed_mid_chunk_leaves_nothing_once_the_session_goes() {
    let s = fresh_store();
    for (id, commit) in [("killed-then-cancel", false), ("killed-then-commit", true)] {
        s.upload_start(id).await.unwrap();
        let (sent, all_sent) = tokio::sync::oneshot::channel::<()>();
        // 20 MiB (two full parts and more), then a body that never ends.
        let body = bytes_at(7, 0, 20 * MIB).chain(futures::stream::once(async move {
            let _ = sent.send(());
            futures::future::pending::<std::io::Result<Bytes>>().await
        }));
        tokio::select! {
            r = s.upload_write(id, "dying", 0, None, Box::pin(body)) => panic!("{r:?}"),
            _ = all_sent => {}
        }
        assert_eq!(s.open_multiparts().await.unwrap(), 1, "{id}");
        if commit {
            let n = s
                .upload_write(id, "ok", 0, None, bytes_at(8, 0, 1000))
                .await
                .unwrap();
            let parts = [UploadPart {
                name: "ok".into(),
                offset: 0,
                size: n,
            }];
            let (d, _) = digest_of(bytes_at(8, 0, 1000)).await;
            s.upload_commit(id, &parts, &d).await.unwrap();
            s.delete(&d).await.unwrap();
        } else {
            s.upload_abort(id).await.unwrap();
        }
        assert_eq!(s.open_multiparts().await.unwrap(), 0, "{id}");
        assert_eq!(s.keys().await.unwrap(), Vec::<String>::new(), "{id}");
    }
}

/// The blob listing in pages smaller than the blobs (so `start-after` and continuation meet),
/// and what a crash leaves on S3: an unfinished multipart upload of a blob, an object beside
/// the blobs, an upload's parts without its session. Leftovers are listed and removed one by
/// one; an upload's unfinished multipart goes with the upload.
#[tokio::test]
async fn the_conformance_listing_in_small_pages_and_leftovers_of_a_crash() {
    let s = fresh_store().with_list_page_size(2);
    berth_storage::testsuite::run_blobs(&s).await;
    assert_eq!(s.keys().await.unwrap(), Vec::<String>::new());

    let d = Digest::sha256_of(b"kept");
    s.upload_start("u1").await.unwrap();
    let data: ByteStream = Box::pin(futures::stream::once(async {
        Ok(Bytes::from_static(b"kept"))
    }));
    s.upload_write("u1", "p", 0, None, data).await.unwrap();
    let part = UploadPart {
        name: "p".into(),
        offset: 0,
        size: 4,
    };
    s.upload_commit("u1", &[part], &d).await.unwrap();
    let other = Digest::sha256_of(b"never finished");
    let blob_key = format!("blobs/sha256/{}", other.hex());
    let mp = s.begin_multipart_raw(&blob_key).await.unwrap();
    s.put_raw("blobs/sha256/junk.tmp", Bytes::from_static(b"odd"))
        .await
        .unwrap();
    s.put_raw("uploads/crashed-1/p0", Bytes::from_static(b"12"))
        .await
        .unwrap();
    s.begin_multipart_raw("uploads/crashed-2/p0").await.unwrap();

    let temp = s.list_temp().await.unwrap();
    let names: Vec<&str> = temp.iter().map(|t| t.name.as_str()).collect();
    let mp_name = format!("multipart:{blob_key}#{mp}");
    assert_eq!(names, ["blobs/sha256/junk.tmp", mp_name.as_str()]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for t in &temp {
        assert!((now - 300..=now + 300).contains(&t.modified), "{t:?}");
    }
    let listed = s.list_blobs(None, 10).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|b| (&b.digest, b.size))
            .collect::<Vec<_>>(),
        [(&d, 4)]
    );
    let uploads: Vec<String> = s
        .list_uploads()
        .await
        .unwrap()
        .into_iter()
        .map(|(u, _)| u)
        .collect();
    assert_eq!(uploads, ["crashed-1", "crashed-2"]);

    for name in &names {
        s.remove_temp(name).await.unwrap();
    }
    assert!(s.list_temp().await.unwrap().is_empty());
    assert!(s.remove_temp(&mp_name).await.is_err(), "gone already");
    for id in ["crashed-1", "crashed-2"] {
        s.upload_abort(id).await.unwrap();
    }
    assert!(s.list_uploads().await.unwrap().is_empty());
    s.delete(&d).await.unwrap();
    assert_eq!(s.keys().await.unwrap(), Vec::<String>::new());
    assert_eq!(s.open_multiparts().await.unwrap(), 0);
}
