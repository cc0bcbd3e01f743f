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
