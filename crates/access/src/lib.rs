//! Who is calling Berth and what they may do, below HTTP: identities over
//! [`berth_storage::IdentityStore`], the token-signing keys, Basic and Bearer credentials,
//! failed-login throttling and the password-hashing pool ([`guard`]), the audit log.
//!
//! ```text
//! server (routes::authz, token, admin) ─▶ AccessService ─▶ IdentityStore (+ the anonymous-pull
//!                                          │               setting in the SettingsStore)
//!                                          ├─ berth_auth: JWTs, policy, argon2id (pure)
//!                                          └─ guard: throttle + hashing pool (per process)
//! ```
//!
//! Time comes from an injected [`Clock`], so tests move past a token's expiry or a signing
//! key's lifetime. One error type, [`Error`], which the server maps to each wire format once.

// Every request's credentials pass through here: what a client sends is counted with checked
// arithmetic and read with `get`, so a hostile value is an error answer, never a panic.
#![warn(
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

mod error;
pub mod guard;
mod service;

/// Where the service reads wall-clock time: token `iat`/`exp` and their checks, identity
/// expiry, signing-key lifetimes, audit timestamps (the trust service's clock type). Local
/// windows (throttling, the verification memo) use the monotonic clock: they never leave the
/// process.
pub use berth_trust::Clock;
pub use error::{Error, Result};
pub use service::{
    ACCESS_TTL, ADMIN_ACCOUNT, ANONYMOUS_PULL_SETTING, AccessService, Bootstrap, Caller, ISSUER,
    LOGIN_FAILURE_REASONS, OWNER, OwnerReset, REFRESH_TOKEN_USER, policy_role, reset_owner,
    stored_role,
};
