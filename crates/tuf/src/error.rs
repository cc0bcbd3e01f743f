use thiserror::Error;

/// Errors from parsing, verifying and validating Notary TUF metadata.
///
/// The `Bad*`/`Validation`/`BadHierarchy` variants correspond to Notary's serializable
/// validation errors (see [`Error::notary_name`]), so the server can answer with the same
/// `detail` shape the Go client parses.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid JSON: {0}")]
    Json(#[from] berth_cjson::Error),
    #[error(transparent)]
    Crypto(#[from] berth_crypto::Error),
    /// A metadata document does not have the shape Notary requires.
    #[error("malformed {what}: {msg}")]
    Malformed { what: &'static str, msg: String },
    /// A role name that is neither a base role nor a clean `targets/...` delegation name.
    #[error("invalid role name {0:?}")]
    InvalidRole(String),
    /// `RFC 3339` time that does not parse.
    #[error("invalid time {0:?}")]
    InvalidTime(String),
    /// A signature's `keyid` does not match the ID computed from the key listed under it.
    #[error("key ID {0} does not match its key")]
    KeyIdMismatch(String),
    /// Fewer distinct valid signatures than the role's threshold.
    #[error("valid signatures did not meet threshold for {role}: {valid} of {threshold}")]
    Threshold {
        role: String,
        valid: usize,
        threshold: usize,
    },
    /// Some role version is not newer than the stored one (Notary's 400 `VERSION`).
    #[error("a newer version of {role} is already available: stored {stored}, new {new}")]
    Version { role: String, stored: i64, new: i64 },
    /// Notary `ErrValidation`.
    #[error("{0}")]
    Validation(String),
    /// Notary `ErrBadRoot`.
    #[error("{0}")]
    BadRoot(String),
    /// Notary `ErrBadTargets`.
    #[error("{0}")]
    BadTargets(String),
    /// Notary `ErrBadSnapshot`.
    #[error("{0}")]
    BadSnapshot(String),
    /// Notary `ErrBadHierarchy`: a role the update needs is missing.
    #[error("{msg}")]
    BadHierarchy { missing: String, msg: String },
}

impl Error {
    pub(crate) fn malformed(what: &'static str, msg: impl Into<String>) -> Self {
        Error::Malformed {
            what,
            msg: msg.into(),
        }
    }

    /// The Go type name Notary puts in `detail.Name` for validation failures, if this is one.
    pub fn notary_name(&self) -> Option<&'static str> {
        Some(match self {
            Error::Validation(_) => "ErrValidation",
            Error::BadRoot(_) => "ErrBadRoot",
            Error::BadTargets(_) => "ErrBadTargets",
            Error::BadSnapshot(_) => "ErrBadSnapshot",
            Error::BadHierarchy { .. } => "ErrBadHierarchy",
            _ => return None,
        })
    }
}
