//! OCI distribution protocol types shared by the registry, the server and the client.
//!
//! Everything here is pure: parsing and validation of digests, repository names and tags,
//! manifest views that keep the original bytes, and the spec's error codes. No I/O.

pub mod digest;
pub mod error;
pub mod manifest;
pub mod media;
pub mod name;

pub use digest::{Algorithm, Digest, Digester};
pub use error::{Error, ErrorCode};
pub use manifest::{Descriptor, ManifestView};
pub use name::{RepoName, Tag, TagOrDigest};
