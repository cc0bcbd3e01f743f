//! Online garbage collection: untagged manifests (on request), blobs no manifest references,
//! bytes nothing records, abandoned upload sessions. It runs while pushes continue; what makes
//! that safe is the storage contract (`MetadataStore::gc_blob_remove` and friends): every
//! deletion re-checks its condition in the transaction that deletes, against writers that
//! either finish first (and are seen) or find the thing gone (and fail cleanly), and fresh
//! things (touched within the grace period) are never candidates.

use std::collections::{HashMap, HashSet};

use berth_oci::{Digest, RepoName};

use crate::{Registry, Result};

/// Candidates fetched per page: bounds memory on a store of millions of blobs.
const PAGE: usize = 1000;

/// What to collect.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Seconds a blob or manifest is protected after it was last pushed, pinned or mounted:
    /// longer than any push takes from its first blob to its manifest.
    pub grace: i64,
    /// Seconds after which an upload session counts as abandoned.
    pub upload_max_age: i64,
    /// Also delete manifests that no tag reaches (through indexes and referrer subjects).
    pub untagged: bool,
    /// Count what would go; change nothing.
    pub dry_run: bool,
    /// Manifests kept even when untagged, per repository: the digests signed trust data names.
    pub keep: HashMap<RepoName, HashSet<Digest>>,
    /// Set while something needs every blob to stay (a backup being taken), saying what:
    /// manifests and uploads are still collected, blobs are not.
    pub hold_blobs: Option<String>,
}

/// What a collection removed (or, on a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub dry_run: bool,
    pub manifests: u64,
    pub blobs: u64,
    pub bytes: u64,
    /// Blob files no record names (left by a crash between the two steps of a deletion, or by
    /// an older version), removed.
    pub orphaned_blobs: u64,
    pub uploads: u64,
    /// Why blobs were not swept, when they were not.
    pub blobs_skipped: Option<String>,
}

impl Registry {
    /// Runs one collection at `self.now()`. A dry run counts manifests in one pass only: the
    /// blobs those manifests alone keep are counted by the real run, not by the dry one.
    pub async fn collect_garbage(&self, opts: &GcOptions) -> Result<GcReport> {
        let _one = self.gc_running.lock().await;
        let now = self.now();
        let cutoff = now.saturating_sub(opts.grace.max(0));
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        if opts.untagged {
            report.manifests = self.collect_manifests(opts, cutoff).await?;
        }
        report.uploads = self.collect_uploads(opts, now).await?;
        if let Some(why) = &opts.hold_blobs {
            report.blobs_skipped = Some(why.clone());
            return Ok(report);
        }
        let (blobs, bytes) = self.collect_blobs(opts, cutoff).await?;
        report.blobs = blobs;
        report.bytes = bytes;
        report.orphaned_blobs = self.collect_orphaned_bytes(opts, cutoff).await?;
        report.uploads += self.collect_orphaned_uploads(opts, cutoff).await?;
        Ok(report)
    }

    /// Blob bytes the metadata store has no record of, older than the grace period (a crash
    /// between a collection's two steps, or bytes from before records were kept).
    async fn collect_orphaned_bytes(&self, opts: &GcOptions, cutoff: i64) -> Result<u64> {
        let mut removed = 0u64;
        let mut after: Option<Digest> = None;
        loop {
            let page = self.blobs.list_blobs(after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            let old: Vec<Digest> = page
                .iter()
                .filter(|b| b.modified < cutoff)
                .map(|b| b.digest.clone())
                .collect();
            let known = self.meta.blobs_known(&old).await?;
            for (d, known) in old.iter().zip(known) {
                if known {
                    continue;
                }
                // Checked again under the digest's lock: a push may have pinned it since.
                if opts.dry_run || self.meta.gc_bytes_remove(d, self.blobs.as_ref()).await? {
                    removed += 1;
                }
            }
            if page.len() < PAGE {
                break;
            }
        }
        Ok(removed)
    }

    /// Upload data in the blob store with no session record, older than the grace period (a
    /// crash between writing a part and recording the session's end).
    async fn collect_orphaned_uploads(&self, opts: &GcOptions, cutoff: i64) -> Result<u64> {
        let mut removed = 0u64;
        for (id, modified) in self.blobs.list_uploads().await? {
            if modified >= cutoff || self.meta.upload_get(&id).await?.is_some() {
                continue;
            }
            if !opts.dry_run {
                match self.blobs.upload_abort(&id).await {
                    Ok(()) | Err(berth_storage::Error::UploadUnknown) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            removed += 1;
        }
        Ok(removed)
    }

    async fn collect_manifests(&self, opts: &GcOptions, cutoff: i64) -> Result<u64> {
        let mut removed = 0u64;
        let mut last: Option<String> = None;
        loop {
            let page = self.meta.list_repos(last.as_deref(), PAGE).await?;
            for name in &page.items {
                let Ok(repo) = name.parse::<RepoName>() else {
                    continue;
                };
                let keep = opts.keep.get(&repo);
                // Deleting an unreachable index or subject makes its children and referrers
                // candidates: ask again until a round deletes nothing.
                loop {
                    let candidates: Vec<Digest> = self
                        .meta
                        .gc_manifest_candidates(&repo, cutoff)
                        .await?
                        .into_iter()
                        .filter(|d| !keep.is_some_and(|k| k.contains(d)))
                        .collect();
                    if opts.dry_run {
                        removed += candidates.len() as u64;
                        break;
                    }
                    let mut round = 0u64;
                    for d in &candidates {
                        if self.meta.gc_manifest_remove(&repo, d, cutoff).await? {
                            round += 1;
                        }
                    }
                    removed += round;
                    if round == 0 {
                        break;
                    }
                }
            }
            if !page.more {
                break;
            }
            last = page.items.last().cloned();
        }
        Ok(removed)
    }

    async fn collect_uploads(&self, opts: &GcOptions, now: i64) -> Result<u64> {
        let before = now.saturating_sub(opts.upload_max_age.max(0));
        if opts.dry_run {
            return Ok(self.meta.uploads_created_before(before).await?.len() as u64);
        }
        Ok(self.purge_uploads(before, before).await? as u64)
    }

    async fn collect_blobs(&self, opts: &GcOptions, cutoff: i64) -> Result<(u64, u64)> {
        let (mut blobs, mut bytes) = (0u64, 0u64);
        let mut after: Option<Digest> = None;
        loop {
            let page = self
                .meta
                .gc_blob_candidates(cutoff, after.as_ref(), PAGE)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (digest, size) in &page {
                let freed = if opts.dry_run {
                    Some(*size)
                } else {
                    self.meta
                        .gc_blob_remove(digest, cutoff, self.blobs.as_ref())
                        .await?
                };
                if let Some(size) = freed {
                    blobs += 1;
                    bytes = bytes.saturating_add(size);
                }
            }
            if page.len() < PAGE {
                break;
            }
        }
        Ok((blobs, bytes))
    }
}
