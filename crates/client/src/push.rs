//! Push an image: its blobs a few at a time, then its manifests (children before the index
//! that lists them), the root under the tag.

use std::sync::Arc;

use berth_oci::{Digest, RepoName};
use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::progress::{NoProgress, Progress};
use crate::reference::Reference;
use crate::registry::Registry;
use crate::source::LocalImage;

#[derive(Clone)]
pub struct PushOptions {
    /// Repositories of the same registry to mount blobs from before uploading them.
    pub mount_from: Vec<RepoName>,
    /// Blobs transferred at the same time.
    pub concurrency: usize,
    pub progress: Arc<dyn Progress>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            mount_from: Vec::new(),
            concurrency: 3,
            progress: Arc::new(NoProgress),
        }
    }
}

/// What was pushed: what a signer needs to sign the tag (digest, size, media type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The target, with its tag (if pushed by tag) and the root manifest's digest.
    pub reference: Reference,
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    /// Blobs by outcome: uploaded, mounted, already there.
    pub uploaded: usize,
    pub mounted: usize,
    pub existed: usize,
}

impl Registry {
    /// Pushes `image` to `target` (`host/repo[:tag][@digest]`; no tag and no digest means
    /// `latest`). With a digest in `target`, the image's root must have that digest and is
    /// pushed by digest only.
    pub async fn push(
        &self,
        image: &LocalImage,
        target: &Reference,
        opts: &PushOptions,
    ) -> Result<Pushed> {
        let repo = &target.repo;
        let root = image.root();
        if let Some(d) = &target.digest
            && *d != root.digest
        {
            return Err(Error::DigestMismatch {
                what: format!("pushing to {target}"),
                expected: d.clone(),
                actual: root.digest.clone(),
            });
        }
        let outcomes: Vec<_> = futures::stream::iter(image.blobs.iter())
            .map(|b| self.push_blob(repo, b, &opts.mount_from, &opts.progress))
            .buffer_unordered(opts.concurrency.max(1))
            .try_collect()
            .await?;
        use crate::progress::BlobOutcome as O;
        let count = |o: O| outcomes.iter().filter(|x| **x == o).count();

        let (children, _) = image.manifests.split_at(image.manifests.len() - 1);
        for m in children {
            self.put_manifest(repo, &m.digest.to_string(), &m.media_type, &m.bytes)
                .await?;
        }
        let tag = match (&target.tag, &target.digest) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".parse().expect("a valid tag")),
        };
        let reference = match &tag {
            Some(t) => t.to_string(),
            None => root.digest.to_string(),
        };
        self.put_manifest(repo, &reference, &root.media_type, &root.bytes)
            .await?;
        Ok(Pushed {
            reference: Reference {
                tag,
                digest: Some(root.digest.clone()),
                ..target.clone()
            },
            digest: root.digest.clone(),
            size: root.bytes.len() as u64,
            media_type: root.media_type.clone(),
            uploaded: count(O::Transferred),
            mounted: count(O::Mounted),
            existed: count(O::Existed),
        })
    }
}
