//! Pull into an OCI image layout: every manifest and blob is checked against the digest and size
//! that name it before it gets its final name, and `index.json` is written last. On any error the
//! files this pull added are removed again, so nothing half-written is left behind.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use berth_oci::media::ManifestKind;
use berth_oci::{Descriptor, Digest, ManifestView, RepoName, Tag};
use futures::{StreamExt, TryStreamExt};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth::repository_scope;
use crate::error::{Error, Result};
use crate::layout::{self, Index};
use crate::manifests::FetchedManifest;
use crate::progress::{BlobOutcome, NoProgress, Progress};
use crate::reference::Reference;
use crate::registry::Registry;
use crate::verify::{self, Verifier};

/// `oci:DIR[:TAG]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciDestination {
    pub dir: PathBuf,
    pub tag: Option<Tag>,
}

impl FromStr for OciDestination {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidLocation {
            kind: "destination",
            input: s.to_owned(),
            reason,
        };
        let rest = s
            .strip_prefix("oci:")
            .ok_or_else(|| bad("only oci:DIR[:TAG] is supported".into()))?;
        let (dir, tag) = match rest.split_once(':') {
            Some((d, t)) => (d, Some(t.parse::<Tag>().map_err(|e| bad(e.message))?)),
            None => (rest, None),
        };
        if dir.is_empty() {
            return Err(bad("empty directory".into()));
        }
        Ok(OciDestination {
            dir: dir.into(),
            tag,
        })
    }
}

/// `os/arch[/variant]`, e.g. `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformFilter {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl FromStr for PlatformFilter {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => {
                Ok(PlatformFilter {
                    os: (*os).to_owned(),
                    architecture: (*arch).to_owned(),
                    variant: parts.get(2).map(|v| (*v).to_owned()),
                })
            }
            _ => Err(Error::InvalidLocation {
                kind: "platform",
                input: s.to_owned(),
                reason: "expected os/arch[/variant], e.g. linux/amd64".into(),
            }),
        }
    }
}

impl PlatformFilter {
    fn matches(&self, d: &Descriptor) -> bool {
        d.platform.as_ref().is_some_and(|p| {
            p.os == self.os
                && p.architecture == self.architecture
                && (self.variant.is_none() || p.variant == self.variant)
        })
    }
}

#[derive(Clone)]
pub struct PullOptions {
    /// From an index, pull only this platform's image (and name it, not the index).
    pub platform: Option<PlatformFilter>,
    pub concurrency: usize,
    pub progress: Arc<dyn Progress>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            concurrency: 3,
            progress: Arc::new(NoProgress),
        }
    }
}

/// What was written as the layout's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub ref_name: Option<String>,
    pub fetched: usize,
    pub existed: usize,
}

const MAX_DEPTH: usize = 4;

/// Everything a pull writes, gathered (and verified) before a byte of it hits the layout.
struct Plan {
    manifests: Vec<FetchedManifest>,
    blobs: Vec<Descriptor>,
}

impl Plan {
    fn add_blob(&mut self, d: &Descriptor) {
        if !self.blobs.iter().any(|b| b.digest == d.digest) {
            self.blobs.push(d.clone());
        }
    }
}

/// Files this pull created, removed again unless the pull completes.
struct Created {
    dir: PathBuf,
    /// The destination directory did not exist: remove it whole on failure.
    whole_dir: bool,
    files: Mutex<Vec<PathBuf>>,
    committed: bool,
}

impl Created {
    fn add(&self, p: PathBuf) {
        self.files.lock().expect("created lock").push(p);
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if self.whole_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
            return;
        }
        for f in self.files.lock().expect("created lock").iter() {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Removes a temporary file unless it was renamed into place.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Registry {
    /// Pulls `source` (by its digest when it has one, else its tag) into the layout `dest`,
    /// naming it `dest.tag`, else the reference's tag. A caller that resolved a tag through
    /// trust data passes `source.with_digest(signed)` and gets exactly the signed manifest.
    pub async fn pull(
        &self,
        source: &Reference,
        dest: &OciDestination,
        opts: &PullOptions,
    ) -> Result<Pulled> {
        let repo = &source.repo;
        let root = self
            .get_manifest(repo, &source.manifest_reference())
            .await?;
        let mut plan = Plan {
            manifests: Vec::new(),
            blobs: Vec::new(),
        };
        let top = self.plan(repo, root, opts, &mut plan, 0).await?;

        let dir = &dest.dir;
        let whole_dir = !dir.exists();
        let mut created = Created {
            dir: dir.clone(),
            whole_dir,
            files: Mutex::new(Vec::new()),
            committed: false,
        };
        prepare_layout(dir, &plan, &created)?;

        let fetched: Vec<BlobOutcome> = futures::stream::iter(plan.blobs.iter())
            .map(|d| self.fetch_blob(repo, d, dir, &created, &opts.progress))
            .buffer_unordered(opts.concurrency.max(1))
            .try_collect()
            .await?;
        for m in &plan.manifests {
            let path = layout::blob_path(dir, &m.digest);
            if !path.exists() {
                layout::write_atomic(&path, &m.bytes)?;
                created.add(path);
            }
        }
        let ref_name = dest
            .tag
            .as_ref()
            .or(source.tag.as_ref())
            .map(|t| t.to_string());
        let mut index = Index::read(dir)?.unwrap_or_else(Index::empty);
        index.set(
            &top.media_type,
            &top.digest,
            top.bytes.len() as u64,
            ref_name.as_deref(),
        );
        index.write(dir)?;
        created.committed = true;
        Ok(Pulled {
            digest: top.digest.clone(),
            size: top.bytes.len() as u64,
            media_type: top.media_type.clone(),
            ref_name,
            fetched: fetched
                .iter()
                .filter(|o| **o == BlobOutcome::Transferred)
                .count(),
            existed: fetched
                .iter()
                .filter(|o| **o == BlobOutcome::Existed)
                .count(),
        })
    }

    /// Fetches the children of `m` (verified against their descriptors) and lists every blob.
    /// Returns the manifest the layout entry names: `m`, or the chosen platform's image.
    fn plan<'a>(
        &'a self,
        repo: &'a RepoName,
        m: FetchedManifest,
        opts: &'a PullOptions,
        plan: &'a mut Plan,
        depth: usize,
    ) -> futures::future::BoxFuture<'a, Result<FetchedManifest>> {
        Box::pin(async move {
            let what = format!("manifest {}", m.digest);
            if depth > MAX_DEPTH {
                return Err(Error::protocol(what, "indexes nested too deeply"));
            }
            let view = ManifestView::parse(&m.bytes, Some(&m.media_type))
                .map_err(|e| Error::protocol(&what, e.message))?;
            let top = match view.kind {
                ManifestKind::Image => {
                    for b in view.blob_references() {
                        plan.add_blob(b);
                    }
                    m.clone()
                }
                ManifestKind::Index => {
                    let children: Vec<&Descriptor> =
                        match &opts.platform {
                            Some(p) => {
                                let c = view.manifests.iter().find(|d| p.matches(d)).ok_or_else(
                                    || Error::NotFound {
                                        what: format!(
                                            "platform {}/{} in {repo}@{}",
                                            p.os, p.architecture, m.digest
                                        ),
                                        registry: self.name().to_owned(),
                                        detail: String::new(),
                                    },
                                )?;
                                vec![c]
                            }
                            None => view.manifests.iter().collect(),
                        };
                    let mut picked = None;
                    for c in children {
                        let child = self.get_manifest(repo, &c.digest.to_string()).await?;
                        verify::check_bytes(
                            &format!("manifest {}", c.digest),
                            &c.digest,
                            c.size,
                            &child.bytes,
                        )?;
                        picked = Some(self.plan(repo, child, opts, plan, depth + 1).await?);
                    }
                    match (&opts.platform, picked) {
                        (Some(_), Some(p)) if depth == 0 => return Ok(p),
                        _ => m.clone(),
                    }
                }
            };
            if !plan.manifests.iter().any(|x| x.digest == m.digest) {
                plan.manifests.push(m);
            }
            Ok(top)
        })
    }

    /// Streams a blob into a temporary file while verifying it, then renames it into place.
    async fn fetch_blob(
        &self,
        repo: &RepoName,
        d: &Descriptor,
        dir: &Path,
        created: &Created,
        progress: &Arc<dyn Progress>,
    ) -> Result<BlobOutcome> {
        let path = layout::blob_path(dir, &d.digest);
        if verify_file(&path, d).await {
            progress.finish(&d.digest, BlobOutcome::Existed);
            return Ok(BlobOutcome::Existed);
        }
        let what = format!("fetching blob {} of {repo}", d.digest);
        let mut last = None;
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(300 << attempt)).await;
            }
            match self.fetch_once(repo, d, &path, &what, progress).await {
                Ok(()) => {
                    created.add(path);
                    progress.finish(&d.digest, BlobOutcome::Transferred);
                    return Ok(BlobOutcome::Transferred);
                }
                // Only a broken connection is worth another try; bad content is not.
                Err(e @ Error::Network { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("three attempts failed"))
    }

    async fn fetch_once(
        &self,
        repo: &RepoName,
        d: &Descriptor,
        path: &Path,
        what: &str,
        progress: &Arc<dyn Progress>,
    ) -> Result<()> {
        let url = self.url(&format!("v2/{repo}/blobs/{}", d.digest))?;
        let scopes = [repository_scope(repo.as_str(), &["pull"])];
        let resp = self
            .send(what, &scopes, || self.request(Method::GET, &url))
            .await?;
        let mut resp = self.check(resp, what).await?;
        progress.start(&d.digest, d.size);
        let tmp = TempFile(Some(layout::tmp_sibling(path)));
        let tmp_path = tmp.0.clone().expect("set above");
        let io = |e| Error::io(format!("writing {}", tmp_path.display()), e);
        let file = tokio::fs::File::create(&tmp_path).await.map_err(io)?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut v = Verifier::new(what, &d.digest, d.size);
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.network(what, &e))? {
            v.update(&chunk)?;
            out.write_all(&chunk).await.map_err(io)?;
            progress.position(&d.digest, v.seen());
        }
        v.finish()?;
        out.flush().await.map_err(io)?;
        out.get_ref().sync_all().await.map_err(io)?;
        drop(out);
        tokio::fs::rename(&tmp_path, path).await.map_err(io)?;
        let mut tmp = tmp;
        tmp.0 = None;
        Ok(())
    }
}

/// Whether `path` already holds exactly the described content (a previous pull's blob).
async fn verify_file(path: &Path, d: &Descriptor) -> bool {
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return false;
    };
    if f.metadata().await.map(|m| m.len()).ok() != Some(d.size) {
        return false;
    }
    let mut v = Verifier::new("", &d.digest, d.size);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if v.update(&buf[..n]).is_err() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    v.finish().is_ok()
}

/// Creates `DIR/oci-layout` and the blob directories the plan needs.
fn prepare_layout(dir: &Path, plan: &Plan, created: &Created) -> Result<()> {
    let mk = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|e| Error::io(format!("creating {}", p.display()), e))
    };
    mk(dir)?;
    let marker = dir.join(layout::LAYOUT_FILE);
    if !marker.exists() {
        layout::write_atomic(
            &marker,
            format!(r#"{{"imageLayoutVersion":"{}"}}"#, layout::LAYOUT_VERSION).as_bytes(),
        )?;
        created.add(marker);
    }
    let algs = plan
        .blobs
        .iter()
        .map(|b| &b.digest)
        .chain(plan.manifests.iter().map(|m| &m.digest))
        .map(|d| d.algorithm());
    for a in algs {
        mk(&dir.join("blobs").join(a.as_str()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_destinations_and_platforms() {
        assert_eq!(
            "oci:out:v1".parse::<OciDestination>().unwrap(),
            OciDestination {
                dir: "out".into(),
                tag: Some("v1".parse().unwrap())
            }
        );
        assert!("oci:".parse::<OciDestination>().is_err());
        assert!("docker-archive:x.tar".parse::<OciDestination>().is_err());
        let p: PlatformFilter = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert!("linux".parse::<PlatformFilter>().is_err());
        assert!("linux//x".parse::<PlatformFilter>().is_err());
    }
}
