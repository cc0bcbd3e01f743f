//! Berth's registry client: push images from an OCI image layout or a `docker save` archive,
//! pull them into an OCI image layout, verifying every digest on the way.
//!
//! ```text
//!   ImageLocation ──load──▶ LocalImage ──Registry::push──▶ Pushed {digest, size}  (what trust signs)
//!   Reference (tag | @digest) ──Registry::pull──▶ OciDestination (index.json written last)
//!   Registry: TLS trust, Basic / Docker token auth, retries; one per registry host
//! ```
//!
//! Blobs are never held in memory: pushes stream byte ranges of local files in chunks, pulls
//! stream into temporary files that get their final name only once their digest checks out.

pub mod archive;
pub mod auth;
pub mod error;
pub mod import;
pub mod layout;
pub mod manifests;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod referrers;
pub mod registry;
pub mod source;
pub mod tags;
pub mod upload;
pub mod verify;

pub use auth::Credentials;
pub use error::{Error, Result, TlsFailure, checked_against};
pub use import::{ImportLimits, SourceImage};
pub use manifests::{FetchedManifest, ManifestDescriptor};
pub use progress::{BlobOutcome, NoProgress, Progress};
pub use pull::{OciDestination, PlatformFilter, PullOptions, Pulled};
pub use push::{PushOptions, Pushed};
pub use reference::Reference;
pub use registry::{ClientOptions, Registry, error_chain, root_cause};
pub use source::{BlobSource, ImageLocation, LocalImage, LocalManifest};
