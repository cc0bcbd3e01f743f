//! Repositories, blob links, manifests, tags and upload records.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use berth_oci::{Digest, RepoName, Tag, TagOrDigest};
use bytes::Bytes;

use super::{MemoryStore, lock};
use crate::{
    Error, ManifestRecord, MetadataStore, NewManifest, Page, ReferrerRecord, RepoDeleted, Result,
    TagDetail, UploadPart, UploadRecord,
};

#[derive(Default)]
pub(super) struct MetaState {
    /// By name: listings are lexical (byte order, as SQLite compares text).
    repos: BTreeMap<String, Repo>,
    uploads: BTreeMap<String, UploadRecord>,
    /// Blobs the store knows: digest text → (size, last pin). Garbage collection's record.
    known: BTreeMap<String, (u64, i64)>,
}

#[derive(Default)]
struct Repo {
    /// Digest text → size.
    blobs: HashMap<String, u64>,
    /// Digest text → manifest; ordered, so referrers come out by digest.
    manifests: BTreeMap<String, Manifest>,
    /// Tag → digest text.
    tags: BTreeMap<String, String>,
    /// Tag → Unix seconds of its last push.
    pushed: HashMap<String, i64>,
}

struct Manifest {
    digest: Digest,
    media_type: String,
    body: Bytes,
    subject: Option<String>,
    artifact_type: Option<String>,
    annotations: Option<String>,
    /// Blobs and child manifests it lists (digest text).
    refs: Vec<String>,
    /// Unix seconds of its last push.
    pushed: i64,
}

impl MetaState {
    fn referenced(&self, digest: &str) -> bool {
        self.repos.values().any(|r| {
            r.manifests
                .values()
                .any(|m| m.refs.iter().any(|c| c == digest))
        })
    }

    fn blob_candidate(&self, digest: &str, cutoff: i64) -> bool {
        self.known
            .get(digest)
            .is_some_and(|(_, touched)| *touched < cutoff)
            && !self.referenced(digest)
    }
}

impl Repo {
    fn manifest_candidate(&self, key: &str, cutoff: i64) -> bool {
        let Some(m) = self.manifests.get(key) else {
            return false;
        };
        m.pushed < cutoff
            && !self.tags.values().any(|d| d == key)
            && !self
                .manifests
                .values()
                .any(|p| p.refs.iter().any(|c| c == key))
            && m.subject
                .as_ref()
                .is_none_or(|s| !self.manifests.contains_key(s))
    }
}

fn parse_digest(text: &str) -> Result<Digest> {
    text.parse()
        .map_err(|e| Error::Backend(format!("stored digest {text:?}: {e}")))
}

/// Up to `limit` names after `last` (exclusive), and whether more follow.
fn page<'a>(names: impl Iterator<Item = &'a String>, last: Option<&str>, limit: usize) -> Page {
    let last = last.unwrap_or("");
    let mut items: Vec<String> = names
        .filter(|n| n.as_str() > last)
        .take(limit.saturating_add(1))
        .cloned()
        .collect();
    let more = items.len() > limit;
    items.truncate(limit);
    Page { items, more }
}

#[async_trait]
impl MetadataStore for MemoryStore {
    async fn repo_exists(&self, repo: &RepoName) -> Result<bool> {
        Ok(lock(&self.meta).repos.contains_key(repo.as_str()))
    }

    async fn blob_linked(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        Ok(lock(&self.meta)
            .repos
            .get(repo.as_str())
            .and_then(|r| r.blobs.get(&digest.to_string()).copied()))
    }

    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        let _gate = self.gc_gate.read().await;
        let mut st = lock(&self.meta);
        st.known.entry(digest.to_string()).or_insert((size, 0));
        let r = st.repos.entry(repo.as_str().to_owned()).or_default();
        // A link already there keeps its size (content-addressed: it cannot differ).
        r.blobs.entry(digest.to_string()).or_insert(size);
        Ok(())
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        Ok(lock(&self.meta)
            .repos
            .get_mut(repo.as_str())
            .is_some_and(|r| r.blobs.remove(&digest.to_string()).is_some()))
    }

    async fn put_manifest(&self, m: NewManifest, tags: &[Tag]) -> Result<()> {
        let mut st = lock(&self.meta);
        // Every check happens before anything is written: a refusal leaves no trace, not even
        // the repository.
        let missing: Vec<Digest> = {
            let r = st.repos.get(m.repo.as_str());
            let blobs = m
                .blobs
                .iter()
                .filter(|d| !r.is_some_and(|r| r.blobs.contains_key(&d.to_string())));
            let children = m
                .children
                .iter()
                .filter(|d| !r.is_some_and(|r| r.manifests.contains_key(&d.to_string())));
            blobs.chain(children).cloned().collect()
        };
        if !missing.is_empty() {
            return Err(Error::MissingReferences(missing));
        }
        let now = m.pushed;
        let r = st.repos.entry(m.repo.as_str().to_owned()).or_default();
        let key = m.digest.to_string();
        match r.manifests.get_mut(&key) {
            // The same digest is the same bytes: only the media type may be restated.
            Some(existing) => {
                existing.media_type = m.media_type;
                existing.pushed = now;
            }
            None => {
                let mut refs: Vec<String> = m
                    .blobs
                    .iter()
                    .chain(m.children.iter())
                    .map(|d| d.to_string())
                    .collect();
                refs.sort();
                refs.dedup();
                r.manifests.insert(
                    key.clone(),
                    Manifest {
                        digest: m.digest,
                        media_type: m.media_type,
                        body: m.body,
                        subject: m.subject.map(|s| s.to_string()),
                        artifact_type: m.artifact_type,
                        annotations: m.annotations,
                        refs,
                        pushed: now,
                    },
                );
            }
        }
        for t in tags {
            r.tags.insert(t.to_string(), key.clone());
            r.pushed.insert(t.to_string(), now);
        }
        Ok(())
    }

    async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &TagOrDigest,
    ) -> Result<Option<ManifestRecord>> {
        let st = lock(&self.meta);
        let Some(r) = st.repos.get(repo.as_str()) else {
            return Ok(None);
        };
        let key = match reference {
            TagOrDigest::Digest(d) => d.to_string(),
            TagOrDigest::Tag(t) => match r.tags.get(t.as_str()) {
                Some(d) => d.clone(),
                None => return Ok(None),
            },
        };
        Ok(r.manifests.get(&key).map(|m| ManifestRecord {
            digest: m.digest.clone(),
            media_type: m.media_type.clone(),
            body: m.body.clone(),
        }))
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let mut st = lock(&self.meta);
        let Some(r) = st.repos.get_mut(repo.as_str()) else {
            return Ok(false);
        };
        let key = digest.to_string();
        let removed = r.manifests.remove(&key).is_some();
        r.tags.retain(|_, d| *d != key);
        Ok(removed)
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        Ok(lock(&self.meta)
            .repos
            .get_mut(repo.as_str())
            .is_some_and(|r| r.tags.remove(tag.as_str()).is_some()))
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Page>> {
        Ok(lock(&self.meta)
            .repos
            .get(repo.as_str())
            .map(|r| page(r.tags.keys(), last, limit)))
    }

    async fn list_repos(&self, last: Option<&str>, limit: usize) -> Result<Page> {
        Ok(page(lock(&self.meta).repos.keys(), last, limit))
    }

    async fn tag_details(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<TagDetail>>> {
        let st = lock(&self.meta);
        let Some(r) = st.repos.get(repo.as_str()) else {
            return Ok(None);
        };
        let last = last.unwrap_or("");
        Ok(Some(
            r.tags
                .iter()
                .filter(|(t, _)| t.as_str() > last)
                .filter_map(|(t, d)| {
                    let m = r.manifests.get(d)?;
                    Some(TagDetail {
                        tag: t.clone(),
                        digest: m.digest.clone(),
                        media_type: m.media_type.clone(),
                        body: m.body.clone(),
                        pushed: r.pushed.get(t).copied(),
                    })
                })
                .take(limit)
                .collect(),
        ))
    }

    async fn delete_repo(&self, repo: &RepoName) -> Result<Option<RepoDeleted>> {
        Ok(lock(&self.meta)
            .repos
            .remove(repo.as_str())
            .map(|r| RepoDeleted {
                manifests: u64::try_from(r.manifests.len()).unwrap_or(u64::MAX),
                tags: u64::try_from(r.tags.len()).unwrap_or(u64::MAX),
            }))
    }

    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<ReferrerRecord>> {
        let subject = subject.to_string();
        let st = lock(&self.meta);
        let Some(r) = st.repos.get(repo.as_str()) else {
            return Ok(Vec::new());
        };
        Ok(r.manifests
            .values()
            .filter(|m| m.subject.as_deref() == Some(subject.as_str()))
            .map(|m| ReferrerRecord {
                digest: m.digest.clone(),
                media_type: m.media_type.clone(),
                size: u64::try_from(m.body.len()).unwrap_or(u64::MAX),
                artifact_type: m.artifact_type.clone(),
                annotations: m.annotations.clone(),
            })
            .collect())
    }

    async fn blob_links(&self, repo: &RepoName) -> Result<Vec<(Digest, u64)>> {
        let st = lock(&self.meta);
        let Some(r) = st.repos.get(repo.as_str()) else {
            return Ok(Vec::new());
        };
        let mut links: Vec<(&String, u64)> = r.blobs.iter().map(|(d, s)| (d, *s)).collect();
        links.sort();
        links
            .into_iter()
            .map(|(d, s)| Ok((parse_digest(d)?, s)))
            .collect()
    }

    async fn manifest_digests(&self, repo: &RepoName) -> Result<Vec<Digest>> {
        let st = lock(&self.meta);
        Ok(st
            .repos
            .get(repo.as_str())
            .map(|r| r.manifests.values().map(|m| m.digest.clone()).collect())
            .unwrap_or_default())
    }

    async fn upload_create(&self, upload: &UploadRecord) -> Result<()> {
        let mut st = lock(&self.meta);
        if st.uploads.contains_key(&upload.id) {
            // What SQLite's primary key reports for the same mistake.
            return Err(Error::Backend(format!(
                "upload {:?} already exists",
                upload.id
            )));
        }
        st.uploads.insert(upload.id.clone(), upload.clone());
        Ok(())
    }

    async fn upload_get(&self, id: &str) -> Result<Option<UploadRecord>> {
        Ok(lock(&self.meta).uploads.get(id).cloned())
    }

    async fn upload_delete(&self, id: &str) -> Result<()> {
        lock(&self.meta).uploads.remove(id);
        Ok(())
    }

    async fn uploads_created_before(&self, before: i64) -> Result<Vec<String>> {
        Ok(lock(&self.meta)
            .uploads
            .values()
            .filter(|u| u.created < before)
            .map(|u| u.id.clone())
            .collect())
    }

    async fn upload_advance(
        &self,
        id: &str,
        part: &UploadPart,
        hash_state: Option<Vec<u8>>,
    ) -> Result<bool> {
        let to = part.end()?;
        let mut st = lock(&self.meta);
        match st.uploads.get_mut(id) {
            // A record from before offsets were kept counts as at 0; one without a part list
            // cannot take parts.
            Some(u) if u.offset.unwrap_or(0) == part.offset => match &mut u.parts {
                Some(parts) => {
                    parts.push(part.clone());
                    u.offset = Some(to);
                    u.hash_state = hash_state;
                    Ok(true)
                }
                None => Ok(false),
            },
            _ => Ok(false),
        }
    }

    async fn blob_pin(&self, digest: &Digest, size: u64, now: i64) -> Result<()> {
        let _gate = self.gc_gate.read().await;
        let mut st = lock(&self.meta);
        let e = st.known.entry(digest.to_string()).or_insert((size, now));
        e.1 = e.1.max(now);
        Ok(())
    }

    async fn gc_blob_candidates(
        &self,
        cutoff: i64,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<(Digest, u64)>> {
        let st = lock(&self.meta);
        let after = after.map(|d| d.to_string()).unwrap_or_default();
        st.known
            .iter()
            .filter(|(d, _)| d.as_str() > after.as_str())
            .filter(|(d, _)| st.blob_candidate(d, cutoff))
            .take(limit)
            .map(|(d, (size, _))| Ok((parse_digest(d)?, *size)))
            .collect()
    }

    async fn gc_blob_remove(
        &self,
        digest: &Digest,
        cutoff: i64,
        blobs: &dyn crate::BlobStore,
    ) -> Result<Option<u64>> {
        let _gate = self.gc_gate.write().await;
        let key = digest.to_string();
        let size = {
            let mut st = lock(&self.meta);
            if !st.blob_candidate(&key, cutoff) {
                return Ok(None);
            }
            for r in st.repos.values_mut() {
                r.blobs.remove(&key);
            }
            st.known.remove(&key).map(|(size, _)| size)
        };
        match blobs.delete(digest).await {
            Ok(()) | Err(Error::BlobUnknown) => Ok(size),
            Err(e) => Err(e),
        }
    }

    async fn blobs_known(&self, digests: &[Digest]) -> Result<Vec<bool>> {
        let st = lock(&self.meta);
        Ok(digests
            .iter()
            .map(|d| st.known.contains_key(&d.to_string()))
            .collect())
    }

    async fn gc_bytes_remove(&self, digest: &Digest, blobs: &dyn crate::BlobStore) -> Result<bool> {
        let _gate = self.gc_gate.write().await;
        if lock(&self.meta).known.contains_key(&digest.to_string()) {
            return Ok(false);
        }
        match blobs.delete(digest).await {
            Ok(()) => Ok(true),
            Err(Error::BlobUnknown) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn gc_manifest_candidates(&self, repo: &RepoName, cutoff: i64) -> Result<Vec<Digest>> {
        let st = lock(&self.meta);
        let Some(r) = st.repos.get(repo.as_str()) else {
            return Ok(Vec::new());
        };
        Ok(r.manifests
            .iter()
            .filter(|(k, _)| r.manifest_candidate(k, cutoff))
            .map(|(_, m)| m.digest.clone())
            .collect())
    }

    async fn gc_manifest_remove(
        &self,
        repo: &RepoName,
        digest: &Digest,
        cutoff: i64,
    ) -> Result<bool> {
        let mut st = lock(&self.meta);
        let Some(r) = st.repos.get_mut(repo.as_str()) else {
            return Ok(false);
        };
        let key = digest.to_string();
        if !r.manifest_candidate(&key, cutoff) {
            return Ok(false);
        }
        Ok(r.manifests.remove(&key).is_some())
    }

    async fn uploads_owned_by(&self, owner: &str) -> Result<u64> {
        let n = lock(&self.meta)
            .uploads
            .values()
            .filter(|u| u.owner == owner)
            .count();
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    async fn stats(&self) -> Result<crate::StoreStats> {
        let st = lock(&self.meta);
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Ok(crate::StoreStats {
            repositories: count(st.repos.len()),
            manifests: count(st.repos.values().map(|r| r.manifests.len()).sum()),
            tags: count(st.repos.values().map(|r| r.tags.len()).sum()),
            blobs: count(st.known.len()),
            blob_bytes: st.known.values().map(|(size, _)| *size).sum(),
            uploads: count(st.uploads.len()),
        })
    }
}
