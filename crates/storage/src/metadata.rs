use async_trait::async_trait;
use berth_oci::{Algorithm, Digest, RepoName, Tag, TagOrDigest};
use bytes::Bytes;

use crate::{BlobStore, Result, UploadPart};

/// A manifest to store, already validated by the registry.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub repo: RepoName,
    pub digest: Digest,
    pub media_type: String,
    /// Exact bytes as pushed.
    pub body: Bytes,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    /// JSON text of the manifest's annotations, for referrer descriptors.
    pub annotations: Option<String>,
    /// Blobs (config, layers) that must be linked in the repository.
    pub blobs: Vec<Digest>,
    /// Manifests (index children) that must exist in the repository.
    pub children: Vec<Digest>,
    /// Unix seconds of this push (the registry's clock): recorded for the manifest (garbage
    /// collection's grace period) and for each tag it sets.
    pub pushed: i64,
}

#[derive(Debug, Clone)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub body: Bytes,
}

/// A tag with its manifest, as an administrator's listing shows it.
#[derive(Debug, Clone)]
pub struct TagDetail {
    pub tag: String,
    pub digest: Digest,
    pub media_type: String,
    pub body: Bytes,
    /// Unix seconds of the last push that set the tag; `None` for tags pushed before this was
    /// recorded.
    pub pushed: Option<i64>,
}

/// What deleting a whole repository removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepoDeleted {
    pub manifests: u64,
    pub tags: u64,
}

#[derive(Debug, Clone)]
pub struct ReferrerRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

#[derive(Debug, Clone)]
pub struct UploadRecord {
    pub id: String,
    pub repo: RepoName,
    pub algorithm: Algorithm,
    /// Unix seconds.
    pub created: i64,
    /// The identity that opened the session (its name), so open sessions can be bounded per
    /// identity. Empty for sessions from before owners were recorded.
    pub owner: String,
    /// Bytes acknowledged so far: the truth about where the upload ends, whatever the blob store
    /// holds. `None` for sessions recorded before offsets were.
    pub offset: Option<u64>,
    /// The running hash of bytes `0..offset` ([`berth_oci::Digester::save`]), so any process
    /// continues the upload without re-reading it. `None` when not known.
    pub hash_state: Option<Vec<u8>>,
    /// The acknowledged chunks, in order ([`crate::BlobStore`] assembles exactly these). `None`
    /// for sessions recorded before parts were: such a session cannot be continued (the
    /// registry refuses it as unknown and the client starts over).
    pub parts: Option<Vec<UploadPart>>,
}

/// One page of a lexically ordered listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<String>,
    /// True when items exist after the last one returned.
    pub more: bool,
}

/// Repositories, their blob links, manifests, tags and upload sessions.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    async fn repo_exists(&self, repo: &RepoName) -> Result<bool>;
    /// Size of `digest` if it is linked into `repo`.
    async fn blob_linked(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>>;
    /// Links a stored blob into a repository (creating the repository on first use). Callers
    /// [`MetadataStore::blob_pin`] the digest first (before its bytes are published, or before
    /// checking they still exist for a mount); a link alone does not protect a blob from
    /// garbage collection, a manifest referencing it does.
    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()>;
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;

    /// Stores a manifest and points `tags` at it, in one transaction. Fails with
    /// [`crate::Error::MissingReferences`] (storing nothing) when a referenced blob or child
    /// manifest is not in the repository.
    async fn put_manifest(&self, manifest: NewManifest, tags: &[Tag]) -> Result<()>;
    async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &TagOrDigest,
    ) -> Result<Option<ManifestRecord>>;
    /// Deletes a manifest and every tag pointing at it.
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool>;
    /// Tags after `last`, at most `limit`; `None` when the repository does not exist.
    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Page>>;
    async fn list_repos(&self, last: Option<&str>, limit: usize) -> Result<Page>;
    /// Tags after `last` (at most `limit`) with their manifests; `None` when the repository does
    /// not exist.
    async fn tag_details(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<TagDetail>>>;
    /// Removes a repository: its tags, manifests and blob links (blob bytes stay for garbage
    /// collection). `None` when it does not exist.
    async fn delete_repo(&self, repo: &RepoName) -> Result<Option<RepoDeleted>>;
    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<ReferrerRecord>>;
    /// Every blob linked into `repo` with its size, ordered by digest text; empty when the
    /// repository does not exist. For copying a registry (`berth store migrate`).
    async fn blob_links(&self, repo: &RepoName) -> Result<Vec<(Digest, u64)>>;
    /// The digest of every manifest stored in `repo`, tagged or not, ordered by digest text.
    async fn manifest_digests(&self, repo: &RepoName) -> Result<Vec<Digest>>;

    async fn upload_create(&self, upload: &UploadRecord) -> Result<()>;
    async fn upload_get(&self, id: &str) -> Result<Option<UploadRecord>>;
    async fn upload_delete(&self, id: &str) -> Result<()>;
    /// Ids of uploads created before `before` (unix seconds), for purging abandoned sessions.
    async fn uploads_created_before(&self, before: i64) -> Result<Vec<String>>;
    /// How many upload sessions `owner` holds open.
    async fn uploads_owned_by(&self, owner: &str) -> Result<u64>;
    /// Acknowledges `part`: if the upload still ends at `part.offset`, appends the part to its
    /// list, moves its end to `part.offset + part.size` and stores `hash_state` (the running
    /// hash there), all at once (compare-and-set). `false` when another writer moved the upload
    /// first, the session is gone, or it is a legacy record without a part list.
    async fn upload_advance(
        &self,
        id: &str,
        part: &UploadPart,
        hash_state: Option<Vec<u8>>,
    ) -> Result<bool>;

    // Garbage collection. The invariant every backend keeps (README, "Garbage collection"):
    // blob bytes are deleted only while (a) no manifest of any repository references the
    // digest, (b) nothing touched it (an upload about to publish it, a mount) since the
    // sweep's cutoff, and (c) no writer can make either untrue until the bytes are gone. (a) is
    // re-checked in the transaction that deletes the records, which conflicts with a
    // concurrent `put_manifest` (that one then fails with `MissingReferences` and stores
    // nothing); (b) and (c) hold because `blob_pin` and `link_blob` wait while
    // `gc_blob_remove` holds the digest.

    /// Protects `digest` (of `size` bytes) from collection for the grace period: called before
    /// an upload publishes its bytes and before a mount links them. Creates the store's record
    /// of the blob, or moves its last touch to `now`.
    async fn blob_pin(&self, digest: &Digest, size: u64, now: i64) -> Result<()>;
    /// Blobs the store knows (pinned or linked) that no manifest references and that nothing
    /// touched since `cutoff` (Unix seconds), with their sizes, ordered by digest text, after
    /// `after`, at most `limit`.
    async fn gc_blob_candidates(
        &self,
        cutoff: i64,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<(Digest, u64)>>;
    /// Collects `digest` if it is still a candidate: removes its record and every repository's
    /// link to it, then its bytes from `blobs`, while writers of that digest wait. Returns the
    /// size freed, or `None` when it was kept (referenced or touched meanwhile).
    async fn gc_blob_remove(
        &self,
        digest: &Digest,
        cutoff: i64,
        blobs: &dyn BlobStore,
    ) -> Result<Option<u64>>;
    /// Which of `digests` the store has a record of (pinned or linked), in the same order: a
    /// cheap first look before [`MetadataStore::gc_bytes_remove`] over a whole listing.
    async fn blobs_known(&self, digests: &[Digest]) -> Result<Vec<bool>>;
    /// Deletes the bytes of `digest` from `blobs` if the store has no record of the blob
    /// (bytes a crash or an old version left behind), while writers of that digest wait.
    async fn gc_bytes_remove(&self, digest: &Digest, blobs: &dyn BlobStore) -> Result<bool>;
    /// Manifests of `repo` that nothing keeps: no tag points at one, no other manifest of the
    /// repository lists it (index children), its subject (for a referrer) is gone or absent,
    /// and it was last pushed before `cutoff`. Ordered by digest text. Deleting these and
    /// asking again reaches every manifest no tag reaches.
    async fn gc_manifest_candidates(&self, repo: &RepoName, cutoff: i64) -> Result<Vec<Digest>>;
    /// Deletes a manifest of `repo` if it is still a candidate (checked again in the deleting
    /// transaction, against concurrent pushes and tag moves). Whether it was deleted.
    async fn gc_manifest_remove(
        &self,
        repo: &RepoName,
        digest: &Digest,
        cutoff: i64,
    ) -> Result<bool>;
    /// How much the store holds, for `/metrics`: counted by the database, so it costs a scan
    /// of the (small) record tables; callers cache it.
    async fn stats(&self) -> Result<StoreStats>;
}

/// What a registry holds, as `/metrics` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub repositories: u64,
    /// Manifests, counted once per repository that holds them.
    pub manifests: u64,
    pub tags: u64,
    /// Distinct blobs the store has a record of, and their bytes (each counted once).
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Upload sessions not yet finished or abandoned.
    pub uploads: u64,
}
