use berth_oci::Digest;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
