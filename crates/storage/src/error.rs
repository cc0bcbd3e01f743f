use berth_oci::Digest;

/// Why a store operation failed. Not `#[non_exhaustive]`: the server maps every variant to a
/// wire error with an exhaustive match, so a new variant cannot fall into a default silently.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("upload not found")]
    UploadUnknown,
    #[error("blob not found")]
    BlobUnknown,
    /// An append did not start at the upload's current end.
    #[error("chunk starts at {offset} but the upload holds {current} bytes")]
    OffsetMismatch { offset: u64, current: u64 },
    /// The body carried a different number of bytes than announced.
    #[error("expected {expected} bytes, received {received}")]
    SizeMismatch { expected: u64, received: u64 },
    /// The stream feeding an append failed (client went away, body limit, ...).
    #[error("reading request body: {0}")]
    Body(std::io::Error),
    /// A manifest references content the repository does not hold.
    #[error("missing referenced content: {0:?}")]
    MissingReferences(Vec<Digest>),
    /// A TUF role version is not newer than the stored one (Notary's `VERSION`).
    #[error("a newer version of {role} is already stored ({stored} >= {new})")]
    TufVersion { role: String, stored: i64, new: i64 },
    /// A record with that name already exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// The device holding the data is full (ENOSPC, EDQUOT, SQLITE_FULL). The write was rolled
    /// back; clients are told so, unlike other I/O failures whose text stays in the log.
    #[error("no space left on device ({0})")]
    NoSpace(String),
    /// Any other I/O failure. Built through `From<io::Error>`, which sorts out [`Error::NoSpace`].
    #[error("storage I/O: {0}")]
    Io(std::io::Error),
    #[error("storage backend: {0}")]
    Backend(String),
}

impl Error {
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::NoSpace(_))
    }
}

/// Whether an OS error means the file system is out of space (or the user's quota is).
pub fn io_is_no_space(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if io_is_no_space(&e) {
            Error::NoSpace(e.to_string())
        } else {
            Error::Io(e)
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
