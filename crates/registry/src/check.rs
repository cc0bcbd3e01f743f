//! `store check`: the store compares its records with its bytes and says what it found.
//!
//! It walks every repository (blob links, manifests and what they reference, tags), the blob
//! store's listing (blobs, uploads, leftovers of interrupted writes) and the upload records.
//! With `verify_digests` every blob is read back (streamed) and hashed. With `repair` it acts
//! on what it found, and says so per finding:
//! - a blob whose bytes fail their digest (or their recorded size) is deleted and unlinked from
//!   every repository, so it is never served again and clients push it afresh (its bytes are
//!   wrong, so keeping them aside would save nothing a re-push does not bring back);
//! - a link to bytes that are gone is removed, so clients re-upload instead of getting errors;
//! - a tag naming a manifest that is gone is removed;
//! - upload data with no record, records with no data, and leftovers of interrupted writes are
//!   removed once older than [`CheckOptions::min_age_secs`], so an upload in progress is never
//!   touched.
//!
//! Blobs nobody links are only reported (garbage collection reclaims them), and manifests whose
//! content is gone are only reported: deleting them would lose tags and what trust data names,
//! while pushing the image again completes them.
//!
//! A check may run beside a serving registry: a blob is committed before it is linked, so a
//! link whose bytes seem missing is looked up once more before it counts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use berth_oci::{Digest, Digester, ManifestView, RepoName, TagOrDigest};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::{Registry, Result};

/// Uploads and leftovers younger than this are left alone by default: one hour, as the purge of
/// empty upload sessions.
pub const DEFAULT_MIN_AGE_SECS: i64 = 3600;
/// Blobs listed (and repositories read) per page.
const PAGE: usize = 1000;
/// Blobs re-hashed at once.
const VERIFY_CONCURRENCY: usize = 4;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CheckOptions {
    pub repair: bool,
    pub verify_digests: bool,
    /// Only upload data and leftovers older than this (seconds) count as abandoned.
    pub min_age_secs: i64,
    /// A quick check (at start-up): uploads and leftovers only, no walk of the repositories and
    /// no listing of the blobs.
    pub quick: bool,
    /// Look for leftovers of interrupted writes (on S3 that lists every blob's key).
    pub leftovers: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            repair: false,
            verify_digests: false,
            min_age_secs: DEFAULT_MIN_AGE_SECS,
            quick: false,
            leftovers: true,
        }
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A repository links a blob whose bytes are not stored.
    MissingBlob,
    /// Stored bytes that do not hash to their digest, or not of their recorded size.
    CorruptBlob,
    /// Stored bytes that could not be read to the end.
    UnreadableBlob,
    /// A manifest whose referenced blob or child manifest is not in its repository.
    IncompleteManifest,
    /// A manifest whose stored body does not hash to its digest.
    CorruptManifest,
    /// A stored manifest body that no longer parses.
    UnparsableManifest,
    /// A tag naming a manifest that is not stored.
    DanglingTag,
    /// Blob bytes no repository links (garbage collection reclaims them): reported only.
    UnreferencedBlob,
    /// Upload data in the blob store with no upload record.
    OrphanedUpload,
    /// An upload record whose data is not in the blob store.
    UploadWithoutData,
    /// Something an interrupted write left beside the blobs.
    TempFile,
}

impl FindingKind {
    /// Whether it damages the store (else it is a note: nothing is wrong for clients).
    pub fn is_problem(self) -> bool {
        !matches!(self, FindingKind::UnreferencedBlob)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::MissingBlob => "missing blob",
            FindingKind::CorruptBlob => "corrupt blob",
            FindingKind::UnreadableBlob => "unreadable blob",
            FindingKind::IncompleteManifest => "incomplete manifest",
            FindingKind::CorruptManifest => "corrupt manifest",
            FindingKind::UnparsableManifest => "unparsable manifest",
            FindingKind::DanglingTag => "dangling tag",
            FindingKind::UnreferencedBlob => "unreferenced blob",
            FindingKind::OrphanedUpload => "orphaned upload",
            FindingKind::UploadWithoutData => "upload record without data",
            FindingKind::TempFile => "temp file",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// A tag, an upload id or a leftover's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub detail: String,
    /// What `repair` did about it; `None` when nothing was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired: Option<String>,
}

impl Finding {
    fn new(kind: FindingKind, detail: impl Into<String>) -> Self {
        Finding {
            kind,
            repository: None,
            digest: None,
            name: None,
            detail: detail.into(),
            repaired: None,
        }
    }

    fn repo(mut self, r: &RepoName) -> Self {
        self.repository = Some(r.to_string());
        self
    }

    fn digest(mut self, d: &Digest) -> Self {
        self.digest = Some(d.to_string());
        self
    }

    fn name(mut self, n: &str) -> Self {
        self.name = Some(n.to_owned());
        self
    }

    /// Whether it still needs someone's attention: a problem nobody repaired.
    pub fn remains(&self) -> bool {
        self.kind.is_problem() && self.repaired.is_none()
    }
}

/// What a check looked at and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub repaired_requested: bool,
    pub quick: bool,
    pub repositories: u64,
    pub manifests: u64,
    pub tags: u64,
    pub blob_links: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Blobs read back and hashed (with `verify_digests`).
    pub blobs_verified: u64,
    pub uploads: u64,
    pub findings: Vec<Finding>,
}

impl CheckReport {
    /// Problems no repair fixed.
    pub fn remaining(&self) -> usize {
        self.findings.iter().filter(|f| f.remains()).count()
    }

    pub fn repaired(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.repaired.is_some())
            .count()
    }

    /// Findings per kind, for one log line: `"missing blob: 2, temp file: 1"` or `"nothing"`.
    pub fn counts(&self) -> String {
        let mut by: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &self.findings {
            *by.entry(f.kind.as_str()).or_default() += 1;
        }
        if by.is_empty() {
            return "nothing".into();
        }
        by.iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn age(modified: i64) -> String {
    let secs = now().saturating_sub(modified).max(0);
    if secs >= 3600 {
        format!("{}h{:02}m old", secs / 3600, secs % 3600 / 60)
    } else {
        format!("{}m{:02}s old", secs / 60, secs % 60)
    }
}

/// What hashing a stored blob found.
enum Verified {
    Good,
    Mismatch(String),
    Unreadable(String),
    Gone,
}

impl Registry {
    /// Checks the store (and, with `repair`, fixes what is safe to fix). See the module text.
    pub async fn check_store(&self, opts: CheckOptions) -> Result<CheckReport> {
        let mut report = CheckReport {
            repaired_requested: opts.repair,
            quick: opts.quick,
            ..CheckReport::default()
        };
        if !opts.quick {
            self.check_content(&opts, &mut report).await?;
        }
        self.check_uploads(&opts, &mut report).await?;
        Ok(report)
    }

    async fn check_content(&self, opts: &CheckOptions, report: &mut CheckReport) -> Result<()> {
        // Every stored blob: digest -> size.
        let mut stored: BTreeMap<Digest, u64> = BTreeMap::new();
        let mut after: Option<Digest> = None;
        loop {
            let page = self.blobs.list_blobs(after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            for b in page {
                report.blob_bytes = report.blob_bytes.saturating_add(b.size);
                stored.insert(b.digest, b.size);
            }
        }
        report.blobs = stored.len() as u64;

        // Every repository's links: repo -> digest -> recorded size.
        let mut repos: Vec<RepoName> = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = self.meta.list_repos(last.as_deref(), PAGE).await?;
            for name in &page.items {
                match name.parse::<RepoName>() {
                    Ok(r) => repos.push(r),
                    Err(e) => report.findings.push(
                        Finding::new(
                            FindingKind::UnparsableManifest,
                            format!("repository name {name:?} is not valid: {e}"),
                        )
                        .name(name),
                    ),
                }
            }
            last = page.items.last().cloned();
            if !page.more || last.is_none() {
                break;
            }
        }
        report.repositories = repos.len() as u64;
        let mut links: HashMap<RepoName, BTreeMap<Digest, u64>> = HashMap::new();
        // Recorded sizes of each digest, whichever repository links it.
        let mut recorded: BTreeMap<Digest, BTreeSet<u64>> = BTreeMap::new();
        for r in &repos {
            let l: BTreeMap<Digest, u64> = self.meta.blob_links(r).await?.into_iter().collect();
            report.blob_links = report.blob_links.saturating_add(l.len() as u64);
            for (d, s) in &l {
                recorded.entry(d.clone()).or_default().insert(*s);
            }
            links.insert(r.clone(), l);
        }

        // Bytes of another size than their records, or (asked for) not hashing to their
        // digest: never to be served again.
        let mut corrupt: BTreeMap<Digest, String> = BTreeMap::new();
        for (d, sizes) in &recorded {
            if let Some(size) = stored.get(d)
                && !sizes.contains(size)
            {
                let want: Vec<String> = sizes.iter().map(u64::to_string).collect();
                corrupt.insert(
                    d.clone(),
                    format!("{size} bytes stored, {} recorded", want.join(" or ")),
                );
            }
        }
        if opts.verify_digests {
            let todo: Vec<Digest> = stored
                .keys()
                .filter(|d| !corrupt.contains_key(*d))
                .cloned()
                .collect();
            let results: Vec<(Digest, Verified)> = futures::stream::iter(todo)
                .map(|d| async move {
                    let v = self.verify_blob(&d).await;
                    (d, v)
                })
                .buffer_unordered(VERIFY_CONCURRENCY)
                .collect()
                .await;
            for (d, v) in results {
                match v {
                    Verified::Good => report.blobs_verified += 1,
                    Verified::Mismatch(why) => {
                        report.blobs_verified += 1;
                        corrupt.insert(d, why);
                    }
                    Verified::Unreadable(why) => report
                        .findings
                        .push(Finding::new(FindingKind::UnreadableBlob, why).digest(&d)),
                    // Deleted meanwhile (garbage collection): nothing to say.
                    Verified::Gone => {
                        stored.remove(&d);
                    }
                }
            }
        }
        for (d, why) in &corrupt {
            let linked_in: Vec<&RepoName> = links
                .iter()
                .filter(|(_, l)| l.contains_key(d))
                .map(|(r, _)| r)
                .collect();
            let mut f = Finding::new(FindingKind::CorruptBlob, why.clone()).digest(d);
            if opts.repair {
                let mut done = vec!["deleted its bytes".to_owned()];
                match self.blobs.delete(d).await {
                    Ok(()) | Err(berth_storage::Error::BlobUnknown) => {}
                    Err(e) => return Err(e.into()),
                }
                for r in &linked_in {
                    self.meta.unlink_blob(r, d).await?;
                    done.push(format!("unlinked from {r}"));
                }
                f.repaired = Some(format!("{} (push it again to restore it)", done.join(", ")));
            }
            stored.remove(d);
            if opts.repair {
                for r in linked_in.into_iter().cloned().collect::<Vec<_>>() {
                    if let Some(l) = links.get_mut(&r) {
                        l.remove(d);
                    }
                }
            }
            report.findings.push(f);
        }

        // Links to bytes that are gone.
        let mut repo_names: Vec<&RepoName> = links.keys().collect();
        repo_names.sort_by_key(|r| r.to_string());
        let repo_names: Vec<RepoName> = repo_names.into_iter().cloned().collect();
        for r in &repo_names {
            let missing: Vec<Digest> = links
                .get(r)
                .map(|l| {
                    l.keys()
                        .filter(|d| !stored.contains_key(*d) && !corrupt.contains_key(*d))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            for d in missing {
                // Committed after the listing (a push meanwhile): present after all.
                if let Some(size) = self.blobs.stat(&d).await? {
                    stored.insert(d, size);
                    continue;
                }
                let mut f = Finding::new(
                    FindingKind::MissingBlob,
                    "linked, but its bytes are not stored",
                )
                .repo(r)
                .digest(&d);
                if opts.repair {
                    self.meta.unlink_blob(r, &d).await?;
                    f.repaired = Some("removed the link (clients push the blob again)".into());
                    if let Some(l) = links.get_mut(r) {
                        l.remove(&d);
                    }
                }
                report.findings.push(f);
            }
        }

        // Manifests and what they reference; tags and what they name.
        for r in &repo_names {
            let manifests: BTreeSet<Digest> =
                self.meta.manifest_digests(r).await?.into_iter().collect();
            report.manifests = report.manifests.saturating_add(manifests.len() as u64);
            let repo_links = links.get(r).cloned().unwrap_or_default();
            for md in &manifests {
                let Some(rec) = self
                    .meta
                    .get_manifest(r, &TagOrDigest::Digest(md.clone()))
                    .await?
                else {
                    continue; // deleted meanwhile
                };
                if opts.verify_digests && Digest::of(md.algorithm(), &rec.body) != *md {
                    report.findings.push(
                        Finding::new(
                            FindingKind::CorruptManifest,
                            "its stored body does not hash to its digest",
                        )
                        .repo(r)
                        .digest(md),
                    );
                }
                let view = match ManifestView::parse(&rec.body, Some(&rec.media_type)) {
                    Ok(v) => v,
                    Err(e) => {
                        report.findings.push(
                            Finding::new(FindingKind::UnparsableManifest, e.to_string())
                                .repo(r)
                                .digest(md),
                        );
                        continue;
                    }
                };
                let mut absent: Vec<String> = Vec::new();
                for b in view.blob_references() {
                    if crate::manifests::is_nondistributable(&b.media_type) {
                        continue;
                    }
                    if (!repo_links.contains_key(&b.digest) || !stored.contains_key(&b.digest))
                        && !self.blob_present(r, &b.digest).await?
                    {
                        absent.push(format!("blob {}", b.digest));
                    }
                }
                for c in &view.manifests {
                    // Listed before this manifest was read: one pushed meanwhile is looked up.
                    if !manifests.contains(&c.digest)
                        && self
                            .meta
                            .get_manifest(r, &TagOrDigest::Digest(c.digest.clone()))
                            .await?
                            .is_none()
                    {
                        absent.push(format!("manifest {}", c.digest));
                    }
                }
                if !absent.is_empty() {
                    report.findings.push(
                        Finding::new(
                            FindingKind::IncompleteManifest,
                            format!(
                                "references content the repository does not have ({}): push the image again",
                                absent.join(", ")
                            ),
                        )
                        .repo(r)
                        .digest(md),
                    );
                }
            }
            // Tag names, and those whose manifest is found (the details join them).
            let mut names: BTreeSet<String> = BTreeSet::new();
            let mut last: Option<String> = None;
            loop {
                let Some(page) = self.meta.list_tags(r, last.as_deref(), PAGE).await? else {
                    break;
                };
                names.extend(page.items.iter().cloned());
                last = page.items.last().cloned();
                if !page.more || last.is_none() {
                    break;
                }
            }
            report.tags = report.tags.saturating_add(names.len() as u64);
            for t in names {
                let Ok(tag) = t.parse::<berth_oci::Tag>() else {
                    continue;
                };
                let found = self
                    .meta
                    .get_manifest(r, &TagOrDigest::Tag(tag.clone()))
                    .await?;
                if found.is_some_and(|m| manifests.contains(&m.digest)) {
                    continue;
                }
                let mut f = Finding::new(
                    FindingKind::DanglingTag,
                    "names a manifest that is not stored",
                )
                .repo(r)
                .name(&t);
                if opts.repair {
                    self.meta.delete_tag(r, &tag).await?;
                    f.repaired = Some("removed the tag".into());
                }
                report.findings.push(f);
            }
        }

        // Bytes nobody links: garbage collection's to reclaim.
        let linked: BTreeSet<&Digest> = links.values().flat_map(|l| l.keys()).collect();
        for (d, size) in &stored {
            if !linked.contains(d) {
                report.findings.push(
                    Finding::new(
                        FindingKind::UnreferencedBlob,
                        format!(
                            "{size} bytes no repository links (garbage collection reclaims them)"
                        ),
                    )
                    .digest(d),
                );
            }
        }
        Ok(())
    }

    /// Whether `d` is linked into `r` and its bytes are stored, asked now: the listings were
    /// taken earlier, and a push may have brought it meanwhile.
    async fn blob_present(&self, r: &RepoName, d: &Digest) -> Result<bool> {
        Ok(self.meta.blob_linked(r, d).await?.is_some() && self.blobs.stat(d).await?.is_some())
    }

    /// Reads a blob to its end and hashes it (streamed).
    async fn verify_blob(&self, d: &Digest) -> Verified {
        let size = match self.blobs.stat(d).await {
            Ok(Some(s)) => s,
            Ok(None) => return Verified::Gone,
            Err(e) => return Verified::Unreadable(e.to_string()),
        };
        let mut s = match self.blobs.read(d, 0, size).await {
            Ok(s) => s,
            Err(berth_storage::Error::BlobUnknown) => return Verified::Gone,
            Err(e) => return Verified::Unreadable(e.to_string()),
        };
        let mut h = Digester::new(d.algorithm());
        let mut n: u64 = 0;
        while let Some(chunk) = s.next().await {
            match chunk {
                Ok(c) => {
                    n = n.saturating_add(c.len() as u64);
                    h.update(&c);
                }
                Err(e) => return Verified::Unreadable(format!("reading it: {e}")),
            }
        }
        let got = h.finish();
        if &got != d || n != size {
            Verified::Mismatch(format!("its {n} bytes hash to {got}"))
        } else {
            Verified::Good
        }
    }

    /// Upload data against upload records, and leftovers of interrupted writes.
    async fn check_uploads(&self, opts: &CheckOptions, report: &mut CheckReport) -> Result<()> {
        let cutoff = now().saturating_sub(opts.min_age_secs);
        let stored = self.blobs.list_uploads().await?;
        report.uploads = stored.len() as u64;
        let stored_ids: BTreeSet<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
        for (id, modified) in &stored {
            if *modified > cutoff || self.meta.upload_get(id).await?.is_some() {
                continue;
            }
            let mut f = Finding::new(
                FindingKind::OrphanedUpload,
                format!("upload data with no upload record, {}", age(*modified)),
            )
            .name(id);
            if opts.repair {
                match self.blobs.upload_abort(id).await {
                    Ok(()) | Err(berth_storage::Error::UploadUnknown) => {}
                    Err(e) => return Err(e.into()),
                }
                f.repaired = Some("removed the upload's data".into());
            }
            report.findings.push(f);
        }
        // Records are created after their data, so a young record without data may be one
        // being created: only old ones count.
        for id in self.meta.uploads_created_before(cutoff).await? {
            if stored_ids.contains(id.as_str()) || self.blobs.upload_exists(&id).await? {
                continue;
            }
            let mut f = Finding::new(
                FindingKind::UploadWithoutData,
                "an upload record whose data is not stored",
            )
            .name(&id);
            if opts.repair {
                self.meta.upload_delete(&id).await?;
                f.repaired = Some("removed the record (the client starts the upload over)".into());
            }
            report.findings.push(f);
        }
        let temp = if opts.leftovers {
            self.blobs.list_temp().await?
        } else {
            Vec::new()
        };
        for t in temp {
            if t.modified > cutoff {
                continue;
            }
            let mut f = Finding::new(
                FindingKind::TempFile,
                format!(
                    "{} bytes left by an interrupted write, {}",
                    t.size,
                    age(t.modified)
                ),
            )
            .name(&t.name);
            if opts.repair {
                self.blobs.remove_temp(&t.name).await?;
                f.repaired = Some("removed it".into());
            }
            report.findings.push(f);
        }
        Ok(())
    }
}
