//! Berth's HTTP server: one port for the OCI distribution API (and, later, the trust, token and
//! admin APIs), TLS with rustls on ring, graceful shutdown.
//!
//! ```text
//! request ─▶ tower layers (trace, api-version header) ─▶ routes::dispatch (parse /v2/ path)
//!         ─▶ routes::{blobs,uploads,manifests,listing} ─▶ berth_registry::Registry ─▶ storage
//! errors  ─▶ error:: one renderer per wire format (OCI, notary, admin API, token endpoint)
//! ```

// Every request passes through this crate: what a client sends is counted with checked
// arithmetic and read with `get`, so a hostile value is an error answer, never a panic.
#![warn(
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

mod attest;
mod error;
pub mod gc;
mod limits;
pub mod metrics;
mod policy;
mod policy_formats;
mod routes;
mod serve;
pub mod tls;
mod ui;
pub mod webhooks;

use std::sync::Arc;

use berth_registry::Registry;

pub use error::ApiError;
pub use routes::access::{RepoAction, Requirement, requirement};
pub use routes::router;
pub use routes::trust::{GunResolver, TrustAccess, TrustEndpoint};
pub use serve::{Limits, Listener, LogIdentity, requests_in_flight, serve};

/// Everything a request handler can reach.
pub struct AppParts {
    pub registry: Arc<Registry>,
    pub trust: Arc<berth_trust::TrustService>,
    /// Which GUNs name repositories of this registry.
    pub guns: routes::trust::GunResolver,
    pub access: Arc<berth_access::AccessService>,
    /// `https`, or `http` behind a TLS proxy: used in token realms.
    pub scheme: &'static str,
    /// Per-connection and per-identity bounds.
    pub limits: Limits,
    /// Garbage collection's grace periods and backup exclusion.
    pub gc: gc::GcSettings,
}

/// Where blob downloads may be sent instead of being streamed through this server: presigned
/// object-store URLs (the distributed store's `redirect = true`). Asked only after the caller
/// was authorized and the blob found in the repository.
pub trait BlobRedirect: Send + Sync + 'static {
    /// A short-lived URL that GETs the blob's bytes, or `None` to stream them.
    fn blob_url(&self, digest: &berth_oci::Digest) -> Option<String>;
}

/// The handlers' shared state. axum clones it for every request (several times, through the
/// middleware): one reference count instead of one per part kept that off the profile.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    parts: AppParts,
    /// Request bodies being streamed into uploads, per identity.
    uploads: limits::PerIdentity,
    /// Trust publishes being read and validated (each held in memory).
    trust_publishes: tokio::sync::Semaphore,
    blob_redirect: Option<Arc<dyn BlobRedirect>>,
    /// Set once by the composition root ([`AppState::set_webhooks`]); unset, events go nowhere.
    webhooks: std::sync::OnceLock<Arc<webhooks::Webhooks>>,
}

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        Self::with_blob_redirect(parts, None)
    }

    /// Like [`AppState::new`], answering blob GETs with redirects to `redirect`'s URLs.
    pub fn with_blob_redirect(parts: AppParts, redirect: Option<Arc<dyn BlobRedirect>>) -> Self {
        AppState(Arc::new(Inner {
            uploads: limits::PerIdentity::new(parts.limits.uploads_per_identity),
            trust_publishes: tokio::sync::Semaphore::new(routes::trust::TRUST_PUBLISHES_AT_ONCE),
            blob_redirect: redirect,
            webhooks: std::sync::OnceLock::new(),
            parts,
        }))
    }

    /// Sends registry events to the configured webhooks (call once, before serving).
    pub fn set_webhooks(&self, w: Arc<webhooks::Webhooks>) {
        if self.0.webhooks.set(w).is_err() {
            tracing::warn!("webhooks were set already; keeping the first");
        }
    }

    /// The webhook service, when this server runs one.
    pub fn webhooks(&self) -> Option<&Arc<webhooks::Webhooks>> {
        self.0.webhooks.get()
    }

    pub(crate) fn blob_redirect(&self) -> Option<&dyn BlobRedirect> {
        self.0.blob_redirect.as_deref()
    }

    pub(crate) fn uploads_in_flight(&self) -> &limits::PerIdentity {
        &self.0.uploads
    }

    pub(crate) fn trust_publishes(&self) -> &tokio::sync::Semaphore {
        &self.0.trust_publishes
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0.parts
    }
}
