//! How the updater gets metadata files: the [`Transport`] trait, the names it is asked for,
//! and an in-memory implementation. The HTTP one is [`crate::http::Remote`]; see
//! [`crate::tufclient`] for how the pieces fit.

use std::collections::BTreeMap;
use std::future::Future;

use crate::error::Error;

/// One metadata file of a GUN, as the updater asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaFile<'a> {
    /// `<role>.json`, the newest version: the root trusted on first use, the timestamp.
    Latest { role: &'a str },
    /// `<version>.<role>.json`: one step of a root rotation chain.
    Version { role: &'a str, version: i64 },
    /// `<role>.<sha256 hex>.json`: the file another role's meta names by checksum.
    Checksum { role: &'a str, sha256: &'a [u8] },
}

impl MetaFile<'_> {
    /// The role the file belongs to (`targets/releases` for a delegation).
    pub fn role(&self) -> &str {
        match self {
            MetaFile::Latest { role }
            | MetaFile::Version { role, .. }
            | MetaFile::Checksum { role, .. } => role,
        }
    }

    /// The file's name under `/v2/<gun>/_trust/tuf/`, as the notary server serves it.
    pub fn file_name(&self) -> String {
        match self {
            MetaFile::Latest { role } => format!("{role}.json"),
            MetaFile::Version { role, version } => format!("{version}.{role}.json"),
            MetaFile::Checksum { role, sha256 } => format!("{role}.{}.json", hex::encode(sha256)),
        }
    }
}

/// Why a fetch gave no bytes.
#[derive(Debug)]
pub enum FetchError {
    /// The server has no such file (HTTP 404); `url` says where it was looked for.
    NotFound { url: String },
    /// Anything else: refused, too large, the network, a server error.
    Failed(Error),
}

impl From<Error> for FetchError {
    fn from(e: Error) -> Self {
        FetchError::Failed(e)
    }
}

/// Fetches a GUN's metadata files. Implementations must never return more than `limit` bytes
/// (they answer [`Error::TooLarge`] instead, ideally without reading the rest); the updater
/// checks lengths and checksums itself.
pub trait Transport: Send + Sync {
    /// Where the files come from, for messages (the registry's base URL over HTTP).
    fn location(&self) -> &str;

    /// The bytes of `file` of `gun`, at most `limit` of them.
    fn fetch(
        &self,
        gun: &str,
        file: &MetaFile<'_>,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<u8>, FetchError>> + Send;
}

/// A trust server in memory: files by GUN and name, for tests and fixtures.
#[derive(Debug, Clone, Default)]
pub struct MemoryTransport {
    files: BTreeMap<(String, String), Vec<u8>>,
}

impl MemoryTransport {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `bytes` as `file` of `gun` (replacing what was there).
    pub fn insert(&mut self, gun: &str, file: &MetaFile<'_>, bytes: impl Into<Vec<u8>>) {
        self.insert_named(gun, &file.file_name(), bytes);
    }

    /// Serves `bytes` under a file name given as is.
    pub fn insert_named(&mut self, gun: &str, name: &str, bytes: impl Into<Vec<u8>>) {
        self.files
            .insert((gun.to_owned(), name.to_owned()), bytes.into());
    }

    /// Stops serving `file` of `gun`; what it served, if anything.
    pub fn remove(&mut self, gun: &str, file: &MetaFile<'_>) -> Option<Vec<u8>> {
        self.files.remove(&(gun.to_owned(), file.file_name()))
    }
}

impl Transport for MemoryTransport {
    fn location(&self) -> &str {
        "memory"
    }

    async fn fetch(
        &self,
        gun: &str,
        file: &MetaFile<'_>,
        limit: u64,
    ) -> Result<Vec<u8>, FetchError> {
        let name = file.file_name();
        match self.files.get(&(gun.to_owned(), name.clone())) {
            None => Err(FetchError::NotFound {
                url: format!("memory:{gun}/{name}"),
            }),
            Some(b) if b.len() as u64 > limit => Err(FetchError::Failed(Error::TooLarge {
                role: file.role().to_owned(),
                limit,
            })),
            Some(b) => Ok(b.clone()),
        }
    }
}
