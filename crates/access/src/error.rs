/// Everything the access service can fail with. The server maps it once per wire format
/// (`crates/server/src/error.rs`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid username or password")]
    BadCredentials,
    /// Too many failed logins from this source, or the password-hashing queue is full.
    #[error("too many login attempts; retry in {0} seconds")]
    Throttled(u64),
    #[error("invalid token: {0}")]
    BadToken(String),
    /// A new password breaks the password policy (why, never the password).
    #[error("{0}")]
    WeakPassword(String),
    /// The store, the vault or the key material failed (logged, never shown to clients).
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}
