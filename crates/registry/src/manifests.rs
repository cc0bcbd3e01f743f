//! Manifests, tags, listings and referrers.

use berth_oci::media::{self, ManifestKind};
use berth_oci::{
    Algorithm, Descriptor, Digest, ErrorCode, ManifestView, RepoName, Tag, TagOrDigest,
};
use berth_storage::{ManifestRecord, NewManifest, Page};
use bytes::Bytes;

use crate::{Error, MAX_MANIFEST_BYTES, Registry, Result};

/// What a manifest PUT stored.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
    pub tags: Vec<Tag>,
}

/// One entry of a referrers list.
#[derive(Debug, Clone)]
pub struct Referrer {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<serde_json::Value>,
}

/// Layers that registries never hold (foreign / non-distributable): not required at push.
pub(crate) fn is_nondistributable(media_type: &str) -> bool {
    media_type.contains("nondistributable") || media_type.contains(".foreign.")
}

/// Media types an `Accept` header list allows; empty means "anything".
fn accepts(accept: &[String], media_type: &str) -> bool {
    accept.is_empty() || accept.iter().any(|a| a == media_type || a == "*/*")
}

impl Registry {
    /// Validates and stores a manifest under `reference` (a tag, or the digest it must have)
    /// plus any extra tags (`?tag=`).
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &TagOrDigest,
        content_type: Option<&str>,
        body: Bytes,
        extra_tags: Vec<Tag>,
    ) -> Result<PutManifest> {
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(Error::ManifestTooLarge {
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let view = ManifestView::parse_pushed(&body, content_type)?;
        let algorithm = match reference {
            TagOrDigest::Digest(d) => d.algorithm(),
            TagOrDigest::Tag(_) => Algorithm::Sha256,
        };
        let digest = Digest::of(algorithm, &body);
        let mut tags = Vec::new();
        match reference {
            TagOrDigest::Digest(d) if d != &digest => {
                return Err(Error::invalid(
                    ErrorCode::DigestInvalid,
                    format!("manifest digest is {digest}, not {d}"),
                ));
            }
            TagOrDigest::Digest(_) => {}
            TagOrDigest::Tag(t) => tags.push(t.clone()),
        }
        for t in extra_tags {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let required: Vec<_> = view
            .blob_references()
            .filter(|d| !is_nondistributable(&d.media_type))
            .collect();
        self.check_blob_sizes(repo, &required).await?;
        let blobs = required.iter().map(|d| d.digest.clone()).collect();
        let children = view.manifests.iter().map(|d| d.digest.clone()).collect();
        let subject = view.subject.as_ref().map(|s| s.digest.clone());
        let annotations = view
            .annotations
            .as_ref()
            .filter(|a| !a.is_empty())
            .map(|a| serde_json::Value::Object(a.clone()).to_string());
        let record = NewManifest {
            repo: repo.clone(),
            digest: digest.clone(),
            media_type: view.media_type.clone(),
            body,
            subject: subject.clone(),
            artifact_type: view.referrer_artifact_type().map(str::to_owned),
            annotations,
            blobs,
            children,
            pushed: self.now(),
        };
        self.meta.put_manifest(record, &tags).await?;
        Ok(PutManifest {
            digest,
            subject,
            tags,
        })
    }

    /// A descriptor must state the size of the blob it names: clients trust it to bound and
    /// verify their download. Blobs not linked here are left to the store, which reports them
    /// all at once as `MANIFEST_BLOB_UNKNOWN`.
    async fn check_blob_sizes(&self, repo: &RepoName, required: &[&Descriptor]) -> Result<()> {
        for d in required {
            if let Some(size) = self.meta.blob_linked(repo, &d.digest).await?
                && size != d.size
            {
                return Err(Error::invalid(
                    ErrorCode::ManifestInvalid,
                    format!(
                        "descriptor of {} states size {} but the blob has {size} bytes",
                        d.digest, d.size
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn require_repo(&self, repo: &RepoName) -> Result<()> {
        if self.meta.repo_exists(repo).await? {
            Ok(())
        } else {
            Err(Error::NameUnknown)
        }
    }

    /// Fetches a manifest, honouring the client's `Accept` list (media type essences).
    ///
    /// Stored bytes are never converted. An index the client cannot read is answered with its
    /// linux/amd64 child when fetched by tag and the client accepts that child's type (what docker
    /// clients without manifest-list support expect); otherwise the manifest is reported unknown.
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &TagOrDigest,
        accept: &[String],
    ) -> Result<ManifestRecord> {
        let Some(m) = self.meta.get_manifest(repo, reference).await? else {
            self.require_repo(repo).await?;
            return Err(Error::ManifestUnknown(format!(
                "manifest {reference} not found in {repo}"
            )));
        };
        if accepts(accept, &m.media_type) {
            return Ok(m);
        }
        // Only a tag may be answered with another manifest: a by-digest pull is verified against
        // the digest asked for.
        if matches!(reference, TagOrDigest::Tag(_))
            && media::kind_of(&m.media_type) == Some(ManifestKind::Index)
        {
            let view = ManifestView::parse(&m.body, Some(&m.media_type))?;
            let child = view.manifests.iter().find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                    && accepts(accept, &d.media_type)
            });
            if let Some(child) = child
                && let Some(c) = self
                    .meta
                    .get_manifest(repo, &TagOrDigest::Digest(child.digest.clone()))
                    .await?
            {
                return Ok(c);
            }
        }
        Err(Error::ManifestUnknown(format!(
            "manifest {reference} is {}, which the request's Accept header does not allow",
            m.media_type
        )))
    }

    /// Deletes a tag, or a manifest (and every tag pointing at it).
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &TagOrDigest) -> Result<()> {
        let deleted = match reference {
            TagOrDigest::Tag(t) => self.meta.delete_tag(repo, t).await?,
            TagOrDigest::Digest(d) => self.meta.delete_manifest(repo, d).await?,
        };
        if deleted {
            return Ok(());
        }
        self.require_repo(repo).await?;
        Err(Error::ManifestUnknown(format!(
            "manifest {reference} not found in {repo}"
        )))
    }

    pub async fn list_tags(&self, repo: &RepoName, last: Option<&str>, n: usize) -> Result<Page> {
        self.meta
            .list_tags(repo, last, n)
            .await?
            .ok_or(Error::NameUnknown)
    }

    pub async fn catalog(&self, last: Option<&str>, n: usize) -> Result<Page> {
        Ok(self.meta.list_repos(last, n).await?)
    }

    /// Manifests in `repo` whose subject is `subject`, optionally filtered by artifact type.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let records = self.meta.referrers(repo, subject).await?;
        Ok(records
            .into_iter()
            .filter(|r| artifact_type.is_none() || r.artifact_type.as_deref() == artifact_type)
            .map(|r| Referrer {
                media_type: r.media_type,
                digest: r.digest,
                size: r.size,
                artifact_type: r.artifact_type,
                annotations: r.annotations.and_then(|a| serde_json::from_str(&a).ok()),
            })
            .collect())
    }
}
