use berth_oci::{Digest, ErrorCode};

/// Why a registry operation failed. Every variant maps to one OCI error code; the server turns it
/// into the wire response in one place (exhaustively: hence not `#[non_exhaustive]`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request value broke the protocol's grammar or rules.
    #[error(transparent)]
    Invalid(#[from] berth_oci::Error),
    #[error("repository name not known to registry")]
    NameUnknown,
    #[error("blob unknown to registry")]
    BlobUnknown,
    #[error("blob upload unknown to registry")]
    UploadUnknown,
    #[error("manifest unknown to registry")]
    ManifestUnknown(String),
    /// A chunk that does not continue the upload (gap, overlap, resend): 416.
    #[error("chunk must start at byte {current}")]
    ChunkOutOfOrder { current: u64 },
    /// A blob Range that lies outside the blob: 416.
    #[error("requested range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("provided digest did not match uploaded content (computed {computed})")]
    DigestMismatch { computed: Digest },
    #[error("{0}")]
    SizeInvalid(String),
    #[error("manifest references content the repository does not have")]
    ManifestBlobUnknown(Vec<Digest>),
    #[error("manifest is larger than the {limit}-byte limit")]
    ManifestTooLarge { limit: usize },
    #[error("upload body: {0}")]
    Body(String),
    /// The client stopped sending its body mid-way: 408.
    #[error("request body stalled: {0}")]
    BodyTimeout(String),
    /// The caller holds too many open upload sessions: 429.
    #[error(
        "{limit} upload sessions are open for this identity: finish or cancel some (DELETE the upload URL) first; abandoned sessions are purged"
    )]
    TooManyUploads { limit: u64 },
    /// The registry's storage is full; what was being written was rolled back.
    #[error("no space left on the registry's storage device; nothing was stored")]
    NoSpace(String),
    #[error("internal storage error: {0}")]
    Storage(berth_storage::Error),
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Invalid(e) => e.code,
            Error::NameUnknown => ErrorCode::NameUnknown,
            Error::BlobUnknown => ErrorCode::BlobUnknown,
            Error::UploadUnknown => ErrorCode::BlobUploadUnknown,
            Error::ManifestUnknown(_) => ErrorCode::ManifestUnknown,
            Error::ChunkOutOfOrder { .. } | Error::Body(_) | Error::BodyTimeout(_) => {
                ErrorCode::BlobUploadInvalid
            }
            Error::TooManyUploads { .. } => ErrorCode::TooManyRequests,
            Error::RangeNotSatisfiable { .. } => ErrorCode::RangeInvalid,
            Error::DigestMismatch { .. } => ErrorCode::DigestInvalid,
            Error::SizeInvalid(_) | Error::ManifestTooLarge { .. } => ErrorCode::SizeInvalid,
            Error::ManifestBlobUnknown(_) => ErrorCode::ManifestBlobUnknown,
            Error::NoSpace(_) | Error::Storage(_) => ErrorCode::Unknown,
        }
    }

    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Invalid(berth_oci::Error::new(code, message))
    }
}

impl From<berth_storage::Error> for Error {
    fn from(e: berth_storage::Error) -> Self {
        use berth_storage::Error as S;
        match e {
            S::UploadUnknown => Error::UploadUnknown,
            S::BlobUnknown => Error::BlobUnknown,
            S::OffsetMismatch { current, .. } => Error::ChunkOutOfOrder { current },
            S::SizeMismatch { expected, received } => Error::SizeInvalid(format!(
                "Content-Length/Content-Range announced {expected} bytes but the body carried {received}"
            )),
            S::Body(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                Error::BodyTimeout(e.to_string())
            }
            S::Body(e) => Error::Body(e.to_string()),
            S::MissingReferences(v) => Error::ManifestBlobUnknown(v),
            S::NoSpace(cause) => Error::NoSpace(cause),
            other @ (S::TufVersion { .. } | S::Conflict(_) | S::Io(_) | S::Backend(_)) => {
                Error::Storage(other)
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
