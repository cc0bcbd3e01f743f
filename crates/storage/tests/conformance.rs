//! The in-memory backend against the conformance suite the embedded backend also passes
//! (crates/storage-embedded/tests/conformance.rs): one contract, both stores.

use berth_storage::memory::MemoryStore;

#[tokio::test]
async fn memory_store_passes_the_storage_conformance_suite() {
    let s = MemoryStore::new();
    berth_storage::testsuite::run_all(&s, &s).await;
}

#[tokio::test]
async fn memory_store_passes_the_trust_conformance_suite() {
    berth_storage::testsuite::run_trust(&MemoryStore::new()).await;
}

#[tokio::test]
async fn memory_store_passes_the_settings_conformance_suite() {
    berth_storage::testsuite::run_settings(&MemoryStore::new()).await;
}

#[tokio::test]
async fn memory_store_passes_the_identity_conformance_suite() {
    berth_storage::testsuite::run_identity(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_concurrency_rules() {
    let s = MemoryStore::new();
    berth_storage::testsuite::run_concurrency(&s, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_keeps_the_gc_invariant_under_races() {
    let s = MemoryStore::new();
    berth_storage::testsuite::run_gc_race(&s, &s, &s).await;
}

#[tokio::test]
async fn memory_store_passes_the_webhook_conformance_suite() {
    berth_storage::testsuite::run_webhooks(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_claims_each_webhook_delivery_once() {
    let s = MemoryStore::new();
    berth_storage::testsuite::run_webhook_race(&s, &s).await;
}
