//! The Notary v1 flavour of TUF: signed envelopes that keep their bytes, the four base roles
//! and delegations, threshold verification, and the server's update validation rules.
//!
//! ```text
//!  raw bytes ─▶ Envelope (raw + generic `signed` + signatures) ─▶ Signed<Root|Targets|…>
//!                    │ canonical(signed)                              │ typed body
//!                    ▼                                                ▼
//!             verify_threshold(KeyRole) ◀── Root::key_role / Targets::key_role
//!  validate::validate_update(stored files, uploaded files, gun, now) ─▶ what to store / generate
//! ```
//!
//! No I/O and no clock: callers pass the stored files and `now`.

mod error;
pub mod meta;
pub mod metadata;
pub mod role;
pub mod root;
pub mod signed;
pub mod targets;
pub mod time;
pub mod validate;
pub mod verify;

pub use error::Error;
pub use meta::{FileMeta, Snapshot, Timestamp};
pub use metadata::{RoleBody, Signed};
pub use role::RoleName;
pub use root::{RoleKeys, Root};
pub use signed::{Envelope, Signature};
pub use targets::{DelegationRole, Delegations, Targets};
pub use verify::{KeyRole, verify_threshold};
