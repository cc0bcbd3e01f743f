//! Blob push: HEAD (skip what's there), cross-repository mount, then a chunked upload whose
//! chunks stream from the source file and are retried; a broken session resumes from the offset
//! the registry reports.

use std::sync::Arc;
use std::time::Duration;

use berth_oci::{Digest, RepoName};
use futures::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, RANGE};
use reqwest::{Method, StatusCode, Url};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::auth::repository_scope;
use crate::error::{Error, Result};
use crate::progress::{BlobOutcome, Progress};
use crate::registry::Registry;
use crate::source::BlobSource;

/// Chunks are at least this big, or the registry's `OCI-Chunk-Min-Length` if larger.
pub const DEFAULT_CHUNK: u64 = 8 << 20;
/// Attempts per chunk before the upload fails.
const CHUNK_ATTEMPTS: u32 = 4;

/// An open upload session.
#[derive(Debug, Clone)]
pub struct UploadSession {
    pub url: Url,
    /// The registry's `OCI-Chunk-Min-Length`, if it sent one.
    pub chunk_min: Option<u64>,
}

fn push_scopes(repo: &RepoName, from: Option<&RepoName>) -> Vec<String> {
    let mut v = vec![repository_scope(repo.as_str(), &["pull", "push"])];
    if let Some(f) = from {
        v.push(repository_scope(f.as_str(), &["pull"]));
    }
    v
}

/// `Range: 0-<last>` → bytes held. Distribution (and Berth) answer `0-0` for an empty session
/// as well as for one byte; we read it as empty and let a 416 correct us.
pub(crate) fn range_len(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(RANGE)?.to_str().ok()?;
    let v = v.trim().trim_start_matches("bytes=");
    let (a, b) = v.split_once('-')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    if a != 0 || b < a {
        return None;
    }
    Some(if b == 0 { 0 } else { b + 1 })
}

fn chunk_min(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("oci-chunk-min-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Appends `digest=<d>` to an upload URL, keeping the parameters the registry put there.
fn with_digest(url: &Url, digest: &Digest) -> Url {
    let mut u = url.clone();
    u.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    u
}

impl Registry {
    /// Whether `repo` already has the blob (HEAD).
    pub async fn blob_exists(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let what = format!("checking blob {digest} in {repo}");
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let scopes = [repository_scope(repo.as_str(), &["pull"])];
        let resp = self
            .send(&what, &scopes, || self.request(Method::HEAD, &url))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.error_from(resp, &what).await),
        }
    }

    /// Opens an upload session (POST).
    pub async fn start_upload(&self, repo: &RepoName) -> Result<UploadSession> {
        let what = format!("starting an upload to {repo}");
        let url = self.url(&format!("v2/{repo}/blobs/uploads/"))?;
        let resp = self
            .send(&what, &push_scopes(repo, None), || {
                self.request(Method::POST, &url).header(CONTENT_LENGTH, "0")
            })
            .await?;
        let resp = self.check(resp, &what).await?;
        Ok(UploadSession {
            url: self.location(&what, resp.headers())?,
            chunk_min: chunk_min(resp.headers()),
        })
    }

    /// Tries a cross-repository mount from `from`. `Ok(None)` when mounted; otherwise the
    /// registry opened an upload session instead (the spec's 202 answer) and we hand it back.
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<Option<UploadSession>> {
        let what = format!("mounting blob {digest} from {from} into {repo}");
        let mut url = self.url(&format!("v2/{repo}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from.as_str());
        let resp = self
            .send(&what, &push_scopes(repo, Some(from)), || {
                self.request(Method::POST, &url).header(CONTENT_LENGTH, "0")
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(None),
            StatusCode::ACCEPTED => Ok(Some(UploadSession {
                url: self.location(&what, resp.headers())?,
                chunk_min: chunk_min(resp.headers()),
            })),
            _ => Err(self.error_from(resp, &what).await),
        }
    }

    /// Discards an upload session (best effort: the registry purges stale ones anyway).
    pub async fn cancel_upload(&self, repo: &RepoName, session: &Url) {
        let _ = self
            .send("cancelling an upload", &push_scopes(repo, None), || {
                self.request(Method::DELETE, session)
            })
            .await;
    }

    /// How many bytes a session holds, and its current URL (GET, end-13).
    pub async fn upload_status(&self, repo: &RepoName, session: &Url) -> Result<(Url, u64)> {
        let what = format!("asking the state of an upload to {repo}");
        let resp = self
            .send(&what, &push_scopes(repo, None), || {
                self.request(Method::GET, session)
            })
            .await?;
        let resp = self.check(resp, &what).await?;
        let url = self
            .location(&what, resp.headers())
            .unwrap_or_else(|_| session.clone());
        let len = range_len(resp.headers()).unwrap_or(0);
        Ok((url, len))
    }

    /// Pushes one blob unless the repository has it: HEAD, then a mount from each of
    /// `mount_from` in turn, then a chunked upload.
    pub async fn push_blob(
        &self,
        repo: &RepoName,
        blob: &BlobSource,
        mount_from: &[RepoName],
        progress: &Arc<dyn Progress>,
    ) -> Result<BlobOutcome> {
        if self.blob_exists(repo, &blob.digest).await? {
            progress.finish(&blob.digest, BlobOutcome::Existed);
            return Ok(BlobOutcome::Existed);
        }
        let mut session = None;
        for from in mount_from.iter().filter(|f| *f != repo) {
            match self.mount_blob(repo, &blob.digest, from).await? {
                None => {
                    progress.finish(&blob.digest, BlobOutcome::Mounted);
                    return Ok(BlobOutcome::Mounted);
                }
                Some(s) => {
                    // Keep one session for the upload; close the others.
                    if let Some(old) = session.replace(s) {
                        let old: UploadSession = old;
                        self.cancel_upload(repo, &old.url).await;
                    }
                }
            }
        }
        let session = match session {
            Some(s) => s,
            None => self.start_upload(repo).await?,
        };
        let chunk = session.chunk_min.unwrap_or(0).max(DEFAULT_CHUNK);
        progress.start(&blob.digest, blob.size);
        self.upload_from(repo, session.url, 0, chunk, blob, progress)
            .await?;
        progress.finish(&blob.digest, BlobOutcome::Transferred);
        Ok(BlobOutcome::Transferred)
    }

    /// Finishes an upload that was interrupted: asks the registry how much of `blob` the
    /// session at `session_url` holds and sends the rest.
    pub async fn resume_upload(
        &self,
        repo: &RepoName,
        session_url: &str,
        blob: &BlobSource,
        progress: &Arc<dyn Progress>,
    ) -> Result<()> {
        let url = self
            .base_url()
            .join(session_url)
            .map_err(|e| Error::protocol("resuming an upload", format!("bad URL: {e}")))?;
        let (url, held) = self.upload_status(repo, &url).await?;
        progress.start(&blob.digest, blob.size);
        self.upload_from(repo, url, held, DEFAULT_CHUNK, blob, progress)
            .await?;
        progress.finish(&blob.digest, BlobOutcome::Transferred);
        Ok(())
    }

    /// PATCHes `blob` from `offset` in chunks, then closes the session with the digest.
    async fn upload_from(
        &self,
        repo: &RepoName,
        mut url: Url,
        mut offset: u64,
        chunk: u64,
        blob: &BlobSource,
        progress: &Arc<dyn Progress>,
    ) -> Result<()> {
        let what = format!("uploading blob {} to {repo}", blob.digest);
        let scopes = push_scopes(repo, None);
        let mut failures = 0u32;
        while offset < blob.size {
            let len = chunk.min(blob.size - offset);
            progress.position(&blob.digest, offset);
            let result = self
                .send(&what, &scopes, || {
                    let body = chunk_body(blob, offset, len, progress.clone());
                    self.request(Method::PATCH, &url)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_RANGE, format!("{}-{}", offset, offset + len - 1))
                        .header(CONTENT_LENGTH, len)
                        .body(body)
                })
                .await;
            let retry_reason = match result {
                Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                    let held = range_len(resp.headers()).unwrap_or(offset + len);
                    url = self.location(&what, resp.headers()).unwrap_or(url);
                    if held != offset + len {
                        // Not what we sent: trust the registry's count and go on from there.
                        tracing::debug!(held, expected = offset + len, "registry range differs");
                    }
                    offset = held;
                    failures = 0;
                    continue;
                }
                Ok(resp) if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE => {
                    // Out of step with the registry: continue from what it holds.
                    let held = range_len(resp.headers());
                    let sent_at = offset;
                    match held {
                        Some(0) if sent_at == 0 => offset = 1, // the `0-0` ambiguity
                        Some(h) => offset = h,
                        None => {}
                    }
                    if let Ok(u) = self.location(&what, resp.headers()) {
                        url = u;
                    }
                    if held.is_some() {
                        failures += 1;
                        if failures < CHUNK_ATTEMPTS {
                            continue;
                        }
                    }
                    self.error_from(resp, &what).await
                }
                Ok(resp) if resp.status().is_server_error() => self.error_from(resp, &what).await,
                Ok(resp) => return Err(self.error_from(resp, &what).await),
                Err(e @ Error::Network { .. }) => e,
                Err(e) => return Err(e),
            };
            failures += 1;
            if failures >= CHUNK_ATTEMPTS {
                return Err(retry_reason);
            }
            tracing::debug!(%retry_reason, failures, "chunk failed; resuming from the registry's offset");
            tokio::time::sleep(Duration::from_millis(250 << failures)).await;
            // The chunk may have landed before the connection broke: ask where to go on.
            match self.upload_status(repo, &url).await {
                Ok((u, held)) => {
                    url = u;
                    offset = held;
                }
                Err(e) => tracing::debug!(%e, "upload status failed; retrying the chunk"),
            }
        }
        progress.position(&blob.digest, blob.size);
        let close = with_digest(&url, &blob.digest);
        let resp = self
            .send(&what, &scopes, || {
                self.request(Method::PUT, &close)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, "0")
            })
            .await?;
        let resp = self.check(resp, &what).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(Error::protocol(
                what,
                format!("closing the upload answered {}", resp.status()),
            ));
        }
        Ok(())
    }
}

/// A request body streaming `len` bytes at `offset` of the blob's file (re-created for every
/// attempt), reporting progress as it goes.
fn chunk_body(
    blob: &BlobSource,
    offset: u64,
    len: u64,
    progress: Arc<dyn Progress>,
) -> reqwest::Body {
    let path = blob.path.clone();
    let start = blob.offset + offset;
    let digest = blob.digest.clone();
    let stream = futures::stream::once(async move {
        let mut f = tokio::fs::File::open(&path).await?;
        f.seek(std::io::SeekFrom::Start(start)).await?;
        Ok::<_, std::io::Error>(tokio_util::io::ReaderStream::with_capacity(
            f.take(len),
            256 << 10,
        ))
    })
    .map(|r| match r {
        Ok(s) => s.left_stream(),
        Err(e) => futures::stream::once(async move { Err(e) }).right_stream(),
    })
    .flatten()
    .scan(offset, move |pos, chunk| {
        if let Ok(c) = &chunk {
            *pos += c.len() as u64;
            progress.position(&digest, *pos);
        }
        std::future::ready(Some(chunk))
    });
    reqwest::Body::wrap_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_header() {
        let mut h = HeaderMap::new();
        assert_eq!(range_len(&h), None);
        h.insert(RANGE, "0-0".parse().unwrap());
        assert_eq!(range_len(&h), Some(0));
        h.insert(RANGE, "0-8388607".parse().unwrap());
        assert_eq!(range_len(&h), Some(8 << 20));
        h.insert(RANGE, "bytes=0-9".parse().unwrap());
        assert_eq!(range_len(&h), Some(10));
        h.insert(RANGE, "5-9".parse().unwrap());
        assert_eq!(range_len(&h), None);
    }

    #[test]
    fn digest_joins_existing_query() {
        let d = Digest::sha256_of(b"");
        let u = Url::parse("https://r/v2/a/blobs/uploads/x?_state=abc").unwrap();
        assert_eq!(
            with_digest(&u, &d).as_str(),
            format!(
                "https://r/v2/a/blobs/uploads/x?_state=abc&digest=sha256%3A{}",
                d.hex()
            )
        );
    }
}
