use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong on the trust side of the client. The messages keep docker's
/// wording where docker users and scripts know it ("remote trust data does not exist",
/// "No valid trust data for <tag>"), and name the attack where verification fails.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// 404 on `root.json` with nothing cached: the repository was never signed.
    #[error(
        "remote trust data does not exist for {gun}: {server} does not have trust data for {gun}"
    )]
    RepositoryNotExist { gun: String, server: String },
    /// The server has no trust data although a root is pinned in the cache: it was deleted or
    /// reset on the server, and only the user can decide to trust a new root.
    #[error(
        "trust data for {gun} is gone from the server but a trusted root is cached in {cache}: \
         the repository was deleted or reset; remove that directory to trust the new data"
    )]
    RemoteDeleted { gun: String, cache: PathBuf },
    /// The tag is not signed in `targets/releases` or `targets`.
    #[error("No valid trust data for {tag}")]
    NoTrustData { tag: String },
    /// A role's version went down compared with the cache.
    #[error(
        "rollback attack: the server's {role} is version {remote}, older than the trusted version {cached}"
    )]
    Rollback {
        role: String,
        cached: i64,
        remote: i64,
    },
    #[error("{role} trust data expired at {expires}: the server serves stale or replayed metadata")]
    Expired { role: String, expires: String },
    #[error("{role} does not match the checksum or length the {by} lists: {msg}")]
    HashMismatch {
        role: String,
        by: &'static str,
        msg: String,
    },
    #[error("{role} is not validly signed: {msg}")]
    BadSignature { role: String, msg: String },
    #[error("root of {gun} is not trusted: {msg}")]
    BadRoot { gun: String, msg: String },
    #[error("{role} is larger than {limit} bytes")]
    TooLarge { role: String, limit: u64 },
    #[error("invalid {role} metadata: {msg}")]
    Malformed { role: String, msg: String },
    /// 401/403 from the trust server; the caller (token flow) may retry with credentials.
    #[error("not authorized for trust data at {url} (HTTP {status})")]
    Unauthorized {
        url: String,
        status: u16,
        /// The `WWW-Authenticate` challenge, for the token flow.
        challenge: Option<String>,
    },
    #[error("trust server answered {status} for {method} {url}: {body}")]
    Server {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("talking to the trust server: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key file that could not be decrypted with the passphrase given.
    #[error("wrong passphrase for the {role} key {key_id} ({path}); nothing was changed")]
    WrongPassphrase {
        role: String,
        key_id: String,
        path: PathBuf,
    },
    #[error("no passphrase for the {0} key: set {1} or run interactively")]
    NoPassphrase(String, &'static str),
    #[error("key {0} not found in the key store")]
    KeyNotFound(String),
    #[error("no valid signing keys for delegation roles")]
    NoSigningKeys,
    #[error("no signing key for {role} of {gun} in the key store")]
    MissingRoleKey { role: String, gun: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Crypto(#[from] berth_crypto::Error),
    #[error(transparent)]
    Tuf(#[from] berth_tuf::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn malformed(role: &str, msg: impl ToString) -> Error {
        Error::Malformed {
            role: role.to_owned(),
            msg: msg.to_string(),
        }
    }

    /// Whether this is the refusal of metadata that looks like an attack (or corruption),
    /// as opposed to a missing repository, a network problem or a local problem.
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Error::Rollback { .. }
                | Error::Expired { .. }
                | Error::HashMismatch { .. }
                | Error::BadSignature { .. }
                | Error::BadRoot { .. }
                | Error::TooLarge { .. }
                | Error::Malformed { .. }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
