//! The Notary v1 trust service of Berth: what `notary-server` does, over the storage trait
//! [`berth_storage::TrustStore`], with no HTTP types.
//!
//! ```text
//!  POST parts ─▶ parse_parts ─▶ validate_update (berth-tuf) ─▶ snapshot (uploaded | signed here)
//!                                                            ─▶ timestamp (always signed here)
//!                                                            ─▶ TrustStore::tuf_update (one tx,
//!                                                               with the audit record)
//!  GET {role}.json ─▶ store; timestamp/snapshot ─▶ lazily re-signed when expired
//!  GET/POST {timestamp|snapshot}.key ─▶ server keys, sealed by the KeyVault
//! ```
//!
//! Decisions where Notary leaves room (see `shared/docs/notary-protocol.md`):
//!
//! - **Registry-wide switch.** Content trust is off until enabled (setting `content_trust`).
//!   While off, writes and key requests fail with [`Error::Disabled`]: status 400, code
//!   `TRUST_DISABLED`, and an `ErrValidation` detail that says how to enable it. 400 because
//!   the Go client (docker, notary) shows the detail of a 400 and turns any other status into
//!   "unable to reach trust server". Reads answer 404 `METADATA_NOT_FOUND`, which clients take
//!   as "no trust data". Disabling deletes every GUN's trust data and server keys; `delete`
//!   works either way.
//! - **Expired stored root certificate.** Notary bricks the repository. Berth refuses updates
//!   that keep the stored root with `ErrBadRoot` naming the expiry date and the two ways out:
//!   a root rotation (`notary key rotate <gun> root`), which is still accepted because the old
//!   root's keys are trusted regardless of certificate expiry, or `berth trust reset <repo>`.
//! - **Server keys** (ecdsa P-256 by default, or ed25519) are stored sealed: AES-256-GCM under
//!   an argon2id key derived from a passphrase, bound to (GUN, role, key ID); see [`vault`].
//!   `GET .key` with no root returns the newest held key, so it is idempotent.
//! - **Lazy re-signing.** Expired timestamps (and expired server-managed snapshots) are
//!   re-signed on read and stored with a changefeed row, as in Notary. When the server does
//!   not hold the needed key, the stale file is served: the client then reports the expiry,
//!   where a 404 would read as "this repository has no trust data".
//! - Writes within one process are serialised (updates are rare; it avoids spurious `VERSION`
//!   answers between concurrent publishes); the store's version check guards across processes.

pub mod attest;
mod audit;
mod changefeed;
mod error;
mod keys;
mod options;
pub mod policy;
mod service;
pub mod vault;
pub mod view;

pub use berth_storage::{AuditRecord, TufFile};
pub use changefeed::DEFAULT_PAGE_SIZE;
pub use error::{DISABLED_MSG, Error, NO_SPACE_MSG, Result};
pub use options::{Clock, KeyAlgorithm, TrustOptions};
pub use policy::{Policy, PolicyEntry};
pub use service::{
    SETTING, TargetChange, TargetChangeKind, TrustService, UpdateChanges, parse_parts,
};
pub use vault::KeyVault;
pub use view::{RoleState, SignedTag, Signer, TrustView};
