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
async fn embedded_store_passes_the_identity_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let meta = SqliteMetadataStore::open(dir.path().join("metadata.db")).unwrap();
    berth_storage::testsuite::run_identity(&meta).await;
}
