//! The storage seam of Berth. Domain crates (registry, trust) talk only to these traits; the
//! binary picks an implementation (embedded: filesystem + SQLite; distributed: S3 + PostgreSQL).
//! [`memory::MemoryStore`] keeps everything in the process, for fast in-process tests.

mod blob;
pub mod cache;
mod error;
mod identity;
mod kind;
pub mod memory;
mod metadata;
mod settings;
#[cfg(feature = "testsuite")]
pub mod testsuite;
mod trust;
mod webhook;
#[cfg(feature = "testsuite")]
mod webhook_testsuite;

pub use blob::{BlobStore, ByteStream, MAX_UPLOAD_PARTS, StoredBlob, TempObject, UploadPart};
pub use error::{Error, Result, io_is_no_space};
pub use identity::{
    AuditRecord, IdentityRecord, IdentityStore, RoleAssignmentRecord, ScopeMapRecord,
    SigningKeyRecord,
};
pub use kind::{AssignedRole, ChangeCategory, IdentityKind, ServerKeyRole, UnknownKind};
pub use metadata::{
    ManifestRecord, MetadataStore, NewManifest, Page, ReferrerRecord, RepoDeleted, StoreStats,
    TagDetail, UploadRecord,
};
pub use settings::SettingsStore;
pub use trust::{Change, NewTufFile, ServerKeyRecord, TrustStore, TufFile};
pub use webhook::{
    Delivery, NewDelivery, WebhookRecord, WebhookStats, WebhookStore, join_list, split_list,
};
