//! Embedded storage: blobs as content-addressed files, metadata in one SQLite database.
//!
//! ```text
//! DIR/blobs/<alg>/<first two hex>/<hex>   committed blobs (immutable)
//! DIR/uploads/<id>                        in-progress uploads (append-only)
//! DIR/metadata.db                         SQLite, WAL mode
//! DIR/gc.lock                             backups (shared) vs blob deletion (exclusive)
//! ```
//! A blob appears under `blobs/` only by rename of a complete, fsynced upload file, so a crash
//! never leaves a partial blob visible.
//!
//! One `berth serve` process owns a data directory (it holds a lock on it): the store keeps
//! exact in-memory copies of its hottest reads (see `berth_storage::cache`), which another writer to the same
//! database would make stale.

pub mod backup;
mod fs_blobs;
mod sqlite;
mod sqlite_identity;
mod sqlite_settings;
mod sqlite_trust;
mod sqlite_webhooks;

pub use fs_blobs::FsBlobStore;
pub use sqlite::SqliteMetadataStore;
