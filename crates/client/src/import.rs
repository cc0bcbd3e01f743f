//! Reading an image from another registry for a server-side import (`berth import`): every
//! manifest it needs (an index's children; with signatures, the referrers of each manifest and
//! cosign's `sha256-<hex>.sig|.att` tags), each checked against the digest that names it, and
//! streams of its blobs that check digest and size as they pass. Manifests are small and
//! gathered first, within limits, so the importer knows everything before it writes a byte;
//! blobs are never held whole.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use berth_oci::media::ManifestKind;
use berth_oci::{Descriptor, Digest, ManifestView, RepoName, Tag};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::Method;

use crate::auth::repository_scope;
use crate::error::{Error, Result};
use crate::manifests::FetchedManifest;
use crate::registry::Registry;
use crate::verify::{self, Verifier};

/// Bounds on what one import may read from the source.
#[derive(Debug, Clone, Copy)]
pub struct ImportLimits {
    /// Manifests in all (indexes, images, signatures).
    pub max_manifests: usize,
    /// Sum of the blobs' sizes as the manifests declare them.
    pub max_blob_bytes: u64,
    /// How deep indexes and signatures of signatures may nest.
    pub max_depth: usize,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits {
            max_manifests: 1000,
            max_blob_bytes: 32 << 30,
            max_depth: 4,
        }
    }
}

/// Cosign's tag schema: the tags that carry an image's signatures and attestations.
pub const COSIGN_SUFFIXES: [&str; 2] = ["sig", "att"];

/// `sha256-<hex>`: the tag under which registries without the referrers API keep an image's
/// referrers (OCI distribution 1.1, the referrers tag schema), and cosign's prefix.
pub fn tag_schema(digest: &Digest) -> String {
    format!("{}-{}", digest.algorithm().as_str(), digest.hex())
}

/// Everything an import stores, as read from the source.
#[derive(Debug, Clone)]
pub struct SourceImage {
    /// The manifest the source reference names.
    pub root: FetchedManifest,
    /// The image's manifests, children before the index naming them (root last).
    pub manifests: Vec<FetchedManifest>,
    /// Signatures and attestations (referrers and cosign tag targets), children first.
    pub signatures: Vec<FetchedManifest>,
    /// Cosign tags to set beside the imported tag, with the digest each names.
    pub signature_tags: Vec<(Tag, Digest)>,
    /// Every blob, once.
    pub blobs: Vec<Descriptor>,
}

impl SourceImage {
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

#[derive(Default)]
struct Walk {
    seen: HashSet<Digest>,
    blobs: Vec<Descriptor>,
    blob_digests: HashSet<Digest>,
    blob_bytes: u64,
    count: usize,
}

/// Layers registries never hold (foreign, non-distributable): not copied, as not pushed.
fn nondistributable(media_type: &str) -> bool {
    media_type.contains("nondistributable") || media_type.contains(".foreign.")
}

impl Registry {
    /// Reads `repo` at `reference` (a tag or a digest) and all it needs, within `limits`.
    pub async fn read_source_image(
        &self,
        repo: &RepoName,
        reference: &str,
        with_signatures: bool,
        limits: &ImportLimits,
    ) -> Result<SourceImage> {
        let root = self.get_manifest(repo, reference).await?;
        let mut walk = Walk::default();
        let mut manifests = Vec::new();
        self.walk(repo, root.clone(), limits, &mut walk, &mut manifests, 0)
            .await?;
        let mut signatures = Vec::new();
        let mut signature_tags = Vec::new();
        if with_signatures {
            // The image's own manifests, then (breadth first) the signatures found, so a
            // signature of a signature comes along too, up to the depth limit.
            let mut queue: Vec<(Digest, usize)> =
                manifests.iter().map(|m| (m.digest.clone(), 0)).collect();
            let mut i = 0;
            while i < queue.len() {
                let (subject, depth) = queue[i].clone();
                i += 1;
                for d in self.referrers_or_fallback(repo, &subject).await? {
                    if walk.seen.contains(&d.digest) {
                        continue;
                    }
                    let m = self.get_manifest(repo, &d.digest.to_string()).await?;
                    verify::check_bytes(
                        &format!("referrer {} of {repo}@{subject}", d.digest),
                        &d.digest,
                        d.size,
                        &m.bytes,
                    )?;
                    let before = signatures.len();
                    self.walk(repo, m, limits, &mut walk, &mut signatures, depth + 1)
                        .await?;
                    if depth + 1 < limits.max_depth {
                        queue.extend(
                            signatures[before..]
                                .iter()
                                .map(|s| (s.digest.clone(), depth + 1)),
                        );
                    }
                }
                if depth > 0 {
                    continue;
                }
                for suffix in COSIGN_SUFFIXES {
                    let tag = format!("{}.{suffix}", tag_schema(&subject));
                    if self.head_manifest(repo, &tag).await?.is_none() {
                        continue;
                    }
                    let m = self.get_manifest(repo, &tag).await?;
                    let digest = m.digest.clone();
                    self.walk(repo, m, limits, &mut walk, &mut signatures, 1)
                        .await?;
                    let tag: Tag = tag
                        .parse()
                        .map_err(|_| Error::protocol(&tag, "not a valid tag"))?;
                    signature_tags.push((tag, digest));
                }
            }
        }
        Ok(SourceImage {
            root,
            manifests,
            signatures,
            signature_tags,
            blobs: walk.blobs,
        })
    }

    /// Adds `m` and what it needs (children of an index, blobs of an image) to `out`, children
    /// first; a manifest already seen is skipped.
    fn walk<'a>(
        &'a self,
        repo: &'a RepoName,
        m: FetchedManifest,
        limits: &'a ImportLimits,
        walk: &'a mut Walk,
        out: &'a mut Vec<FetchedManifest>,
        depth: usize,
    ) -> futures::future::BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let what = format!("manifest {repo}@{}", m.digest);
            if !walk.seen.insert(m.digest.clone()) {
                return Ok(());
            }
            if depth > limits.max_depth {
                return Err(Error::protocol(&what, "nested too deeply"));
            }
            walk.count += 1;
            if walk.count > limits.max_manifests {
                return Err(Error::protocol(
                    &what,
                    format!(
                        "the import would copy more than {} manifests",
                        limits.max_manifests
                    ),
                ));
            }
            let view = ManifestView::parse(&m.bytes, Some(&m.media_type))
                .map_err(|e| Error::protocol(&what, e.message))?;
            match view.kind {
                ManifestKind::Image => {
                    for b in view.blob_references() {
                        if nondistributable(&b.media_type)
                            || !walk.blob_digests.insert(b.digest.clone())
                        {
                            continue;
                        }
                        walk.blob_bytes = walk.blob_bytes.saturating_add(b.size);
                        if walk.blob_bytes > limits.max_blob_bytes {
                            return Err(Error::protocol(
                                &what,
                                format!(
                                    "the import would copy more than {} bytes of blobs",
                                    limits.max_blob_bytes
                                ),
                            ));
                        }
                        walk.blobs.push(b.clone());
                    }
                }
                ManifestKind::Index => {
                    for c in &view.manifests {
                        if walk.seen.contains(&c.digest) {
                            continue;
                        }
                        let child = self.get_manifest(repo, &c.digest.to_string()).await?;
                        verify::check_bytes(
                            &format!("manifest {repo}@{}", c.digest),
                            &c.digest,
                            c.size,
                            &child.bytes,
                        )?;
                        self.walk(repo, child, limits, walk, out, depth + 1).await?;
                    }
                }
            }
            out.push(m);
            Ok(())
        })
    }

    /// The referrers of `digest`: from the referrers API, or where the registry has none (it
    /// answers 404), from the index tagged `sha256-<hex>` (the referrers tag schema).
    pub async fn referrers_or_fallback(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>> {
        let what = format!("listing the referrers of {repo}@{digest}");
        let listed = match self.referrers(repo, digest, None).await {
            Ok(v) => v,
            Err(Error::NotFound { .. }) => {
                let tag = tag_schema(digest);
                if self.head_manifest(repo, &tag).await?.is_none() {
                    return Ok(Vec::new());
                }
                let index = self.get_manifest(repo, &tag).await?;
                let v: serde_json::Value = serde_json::from_slice(&index.bytes)
                    .map_err(|e| Error::protocol(&what, format!("tag {tag}: {e}")))?;
                v["manifests"].as_array().cloned().unwrap_or_default()
            }
            Err(e) => return Err(e),
        };
        listed
            .into_iter()
            .map(|d| {
                serde_json::from_value::<Descriptor>(d)
                    .map_err(|e| Error::protocol(&what, format!("a bad descriptor: {e}")))
            })
            .collect()
    }

    /// Streams a blob, checking its size and digest as it passes: the stream ends in an error
    /// (and `failure` holds the client's error) on a mismatch, before its last byte is given.
    pub async fn blob_stream(
        &self,
        repo: &RepoName,
        d: &Descriptor,
        failure: Arc<Mutex<Option<Error>>>,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + use<>> {
        let what = format!("fetching blob {} of {repo}", d.digest);
        let url = self.url(&format!("v2/{repo}/blobs/{}", d.digest))?;
        let scopes = [repository_scope(repo.as_str(), &["pull"])];
        let resp = self
            .send(&what, &scopes, || self.request(Method::GET, &url))
            .await?;
        let resp = self.check(resp, &what).await?;
        if let Some(n) = resp.content_length()
            && n != d.size
        {
            return Err(Error::SizeMismatch {
                what,
                expected: d.size,
                actual: n,
            });
        }
        let verifier = Verifier::new(&what, &d.digest, d.size);
        let this = self.clone();
        let state = (resp, Some(verifier), failure, this, what);
        Ok(futures::stream::unfold(
            state,
            |(mut resp, mut verifier, failure, this, what)| async move {
                let v = verifier.as_mut()?;
                let fail = |e: Error, failure: &Arc<Mutex<Option<Error>>>| {
                    let io = std::io::Error::other(e.to_string());
                    *failure.lock().expect("failure lock") = Some(e);
                    io
                };
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        let item = match v.update(&chunk) {
                            Ok(()) => Ok(chunk),
                            Err(e) => {
                                verifier = None;
                                Err(fail(e, &failure))
                            }
                        };
                        Some((item, (resp, verifier, failure, this, what)))
                    }
                    Ok(None) => {
                        let v = verifier.take()?;
                        match v.finish() {
                            Ok(()) => None,
                            Err(e) => {
                                let io = fail(e, &failure);
                                Some((Err(io), (resp, None, failure, this, what)))
                            }
                        }
                    }
                    Err(e) => {
                        let e = this.network(&what, &e);
                        let io = fail(e, &failure);
                        Some((Err(io), (resp, None, failure, this, what)))
                    }
                }
            },
        )
        .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_schema_names_and_nondistributable_layers() {
        let d: Digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            .parse()
            .unwrap();
        assert_eq!(
            tag_schema(&d),
            "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        );
        assert!(
            format!("{}.sig", tag_schema(&d)).parse::<Tag>().is_ok(),
            "cosign's tag is a valid tag"
        );
        assert!(nondistributable(
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        ));
        assert!(nondistributable(
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        ));
        assert!(!nondistributable(
            "application/vnd.oci.image.layer.v1.tar+gzip"
        ));
    }
}
