//! The registry's domain logic: what a push or pull means, independent of HTTP and of the
//! storage backend. The server crate translates requests into these calls and errors into wire
//! responses; the storage crates keep the bytes.

mod check;
mod error;
mod gc;
mod manifests;
mod uploads;

use std::sync::Arc;

use berth_storage::{BlobStore, MetadataStore};

pub use check::{CheckOptions, CheckReport, DEFAULT_MIN_AGE_SECS, Finding, FindingKind};
pub use error::{Error, Result};
pub use gc::{GcOptions, GcReport};
pub use manifests::{PutManifest, Referrer};
pub use uploads::{ChunkRange, parse_content_range};

/// Largest manifest accepted (ACR's limit; the spec requires at least 4 MB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Advertised minimum chunk size (`OCI-Chunk-Min-Length`); it matches S3's multipart part
/// minimum so clients size chunks the same for every backend. The embedded store accepts smaller
/// chunks too.
pub const CHUNK_MIN_LENGTH: u64 = 5 * 1024 * 1024;
/// Page size when the client gives no `n`, and the largest page served.
pub const DEFAULT_PAGE: usize = 1000;
pub const MAX_PAGE: usize = 10_000;

/// Unix seconds, as the registry records push and pin times.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub struct Registry {
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetadataStore>,
    sessions: uploads::Sessions,
    clock: Clock,
    /// One collection at a time in this process (nodes may overlap: every step is safe
    /// against the others, see the storage contract).
    gc_running: tokio::sync::Mutex<()>,
}

fn system_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Registry {
    pub fn new(blobs: Arc<dyn BlobStore>, meta: Arc<dyn MetadataStore>) -> Self {
        Registry {
            blobs,
            meta,
            sessions: uploads::Sessions::default(),
            clock: Arc::new(system_clock),
            gc_running: tokio::sync::Mutex::new(()),
        }
    }

    /// The same registry reading time from `clock` (tests move time instead of waiting).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Now, by the registry's clock.
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.meta
    }

    pub fn blob_store(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }
}

/// Page size for a listing request's `n`.
pub fn page_size(n: Option<usize>) -> usize {
    n.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE)
}
