use berth_storage_embedded::{FsBlobStore, SqliteMetadataStore};

#[tokio::test]
async fn embedded_store_passes_the_storage_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobStore::open(dir.path()).unwrap();
    let meta = SqliteMetadataStore::open(dir.path().join("metadata.db")).unwrap();
    berth_storage::testsuite::run_all(&blobs, &meta).await;
}

#[tokio::test]
async fn embedded_store_passes_the_trust_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let meta = SqliteMetadataStore::open(dir.path().join("metadata.db")).unwrap();
    berth_storage::testsuite::run_trust(&meta).await;
}

#[tokio::test]
async fn embedded_store_passes_the_settings_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let meta = SqliteMetadataStore::open(dir.path().join("metadata.db")).unwrap();
    berth_storage::testsuite::run_settings(&meta).await;
}

#[tokio::test]
async fn embedded_store_passes_the_identity_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let meta = SqliteMetadataStore::open(dir.path().join("metadata.db")).unwrap();
    berth_storage::testsuite::run_identity(&meta).await;
}

/// One SQLite store owns its data dir, so the concurrency rules run with the store twice:
/// racing writers inside one process, and cached reads that must follow every write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_passes_the_concurrency_rules() {
    let dir = tempfile::tempdir().unwrap();
    let meta = SqliteMetadataStore::open(dir.path().join("metadata.db")).unwrap();
    berth_storage::testsuite::run_concurrency(&meta, &meta).await;
}

/// What a crash or a hand leaves beside the blobs is listed as leftovers (never as blobs), and
/// removing one removes only it; a crashed upload's directory is an upload (the check compares
/// it with the upload records).
#[tokio::test]
async fn leftovers_beside_the_blobs_are_listed_and_removed_one_by_one() {
    use berth_storage::BlobStore;
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobStore::open(dir.path()).unwrap();
    let d = berth_oci::Digest::sha256_of(b"kept");
    blobs.upload_start("u1").await.unwrap();
    let stream: berth_storage::ByteStream = Box::pin(futures::stream::iter(vec![Ok(
        bytes::Bytes::from_static(b"kept"),
    )]));
    blobs
        .upload_write("u1", "p", 0, None, stream)
        .await
        .unwrap();
    let part = berth_storage::UploadPart {
        name: "p".into(),
        offset: 0,
        size: 4,
    };
    blobs.upload_commit("u1", &[part], &d).await.unwrap();
    let shard = dir.path().join("blobs/sha256").join(&d.hex()[..2]);
    std::fs::write(shard.join(format!("{}.tmp", d.hex())), b"half").unwrap();
    std::fs::write(dir.path().join("blobs/sha256/zz"), b"odd").unwrap();
    std::fs::create_dir(dir.path().join("uploads/not.an.id")).unwrap();
    std::fs::write(dir.path().join("uploads/not.an.id/x"), b"12345").unwrap();
    std::fs::create_dir(dir.path().join("uploads/crashed-1")).unwrap();
    std::fs::write(dir.path().join("uploads/crashed-1/part"), b"12").unwrap();

    let temp = blobs.list_temp().await.unwrap();
    let names: Vec<&str> = temp.iter().map(|t| t.name.as_str()).collect();
    let half = format!("blobs/sha256/{}/{}.tmp", &d.hex()[..2], d.hex());
    assert_eq!(
        names,
        [half.as_str(), "blobs/sha256/zz", "uploads/not.an.id"]
    );
    assert_eq!(temp[2].size, 5, "a directory's size is its files'");
    let listed = blobs.list_blobs(None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((&listed[0].digest, listed[0].size), (&d, 4));
    let uploads = blobs.list_uploads().await.unwrap();
    assert_eq!(
        uploads.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>(),
        ["crashed-1"]
    );

    for name in &names {
        blobs.remove_temp(name).await.unwrap();
    }
    assert!(blobs.list_temp().await.unwrap().is_empty());
    assert!(blobs.remove_temp(&half).await.is_err(), "gone already");
    assert_eq!(blobs.stat(&d).await.unwrap(), Some(4));
    blobs.upload_abort("crashed-1").await.unwrap();
    assert!(blobs.list_uploads().await.unwrap().is_empty());
}

/// Collection racing pushes (the single writer and the collection gate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_the_gc_invariant_under_races() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobStore::open(dir.path()).unwrap();
    let meta = SqliteMetadataStore::open(dir.path().join("metadata.db")).unwrap();
    berth_storage::testsuite::run_gc_race(&blobs, &meta, &meta).await;
}

#[tokio::test]
async fn embedded_store_passes_the_webhook_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let meta = SqliteMetadataStore::open(dir.path().join("metadata.db")).unwrap();
    berth_storage::testsuite::run_webhooks(&meta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_claims_each_webhook_delivery_once() {
    let dir = tempfile::tempdir().unwrap();
    let meta = SqliteMetadataStore::open(dir.path().join("metadata.db")).unwrap();
    berth_storage::testsuite::run_webhook_race(&meta, &meta).await;
}
