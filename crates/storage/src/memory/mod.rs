//! An in-memory backend for fast in-process tests (registry and trust unit tests, router tests
//! with `oneshot`). It keeps everything in the process, blobs included, so it is not for serving.
//!
//! It behaves as the embedded backend does, rule for rule: the same errors for the same mistakes,
//! the same orderings, the same all-or-nothing writes (a chunk lands whole or not at all; a
//! multi-role TUF update or a manifest with missing references stores nothing). The conformance
//! suite in [`crate::testsuite`] holds both backends to that contract.
//!
//! Each area (blobs, metadata, identities, trust data, settings) sits behind its own lock, taken only for
//! the instant of a read or a write and never across an `.await`: a request body is gathered
//! outside the lock and appended under it after a second offset check.

mod blob;
mod identity;
mod metadata;
mod settings;
mod trust;
mod webhook;

use std::sync::{Mutex, MutexGuard};

/// One store implementing every storage trait. Share it as `Arc<MemoryStore>`: it coerces to
/// `Arc<dyn BlobStore>`, `Arc<dyn MetadataStore>`, `Arc<dyn IdentityStore>`,
/// `Arc<dyn TrustStore>`, `Arc<dyn SettingsStore>` and `Arc<dyn WebhookStore>`, all views of the same data.
#[derive(Default)]
pub struct MemoryStore {
    blobs: Mutex<blob::BlobState>,
    meta: Mutex<metadata::MetaState>,
    ids: Mutex<identity::IdentityState>,
    trust: Mutex<trust::TrustState>,
    settings: Mutex<settings::SettingsState>,
    webhooks: Mutex<webhook::WebhookState>,
    /// Held shared by pins and links, exclusively by a collection from its record check until
    /// the bytes are gone (the embedded store's gate, same rule).
    gc_gate: tokio::sync::RwLock<()>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

/// A poisoned lock only means another test thread panicked mid-operation; every write here
/// finishes its checks before it changes anything, so the state is still whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
