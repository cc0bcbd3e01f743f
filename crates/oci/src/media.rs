//! Media types of the manifests a registry stores.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Schema 1 is dead (removed from distribution v3); we refuse it explicitly.
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The manifest kinds we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest (OCI or Docker schema 2): config + layers.
    Image,
    /// An index (OCI index or Docker manifest list): a list of manifests.
    Index,
}

/// Classifies a manifest media type; `None` for anything that is not a manifest we store.
pub fn kind_of(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        OCI_INDEX | DOCKER_LIST => Some(ManifestKind::Index),
        _ => None,
    }
}

/// Strips parameters (`; charset=...`) and surrounding whitespace from a header value.
pub fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}
