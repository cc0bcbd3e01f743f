//! Blob upload sessions: monolithic, POST+PUT, chunked and streamed PATCH, resume, cancel, mount.
//!
//! Each session's bytes live in the blob store; its repository and digest algorithm live in the
//! metadata store, so a session survives a restart. The running hash lives in memory: after a
//! restart it is rebuilt by re-reading the bytes received so far, once, when the upload finishes.

// Request input is parsed here: a malformed value must be an error, never a panic.
#![warn(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_oci::{Algorithm, Digest, Digester, ErrorCode, RepoName};
use berth_storage::{ByteStream, UploadRecord};
use futures::StreamExt;

use crate::{Error, Registry, Result};

/// What a PATCH or closing PUT said about its chunk.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChunkRange {
    /// `Content-Range` start (inclusive), if given.
    pub start: Option<u64>,
    /// Bytes the chunk must carry: from `Content-Range`, else `Content-Length`.
    pub len: Option<u64>,
}

/// In-memory state of one session.
struct Session {
    /// Hash of bytes `0..hashed` of the upload; `None` once it cannot be trusted (restart).
    hasher: Option<Digester>,
    hashed: u64,
}

#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
}

impl Sessions {
    fn get_or_insert(
        &self,
        id: &str,
        make: impl FnOnce() -> Session,
    ) -> Arc<tokio::sync::Mutex<Session>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(make())))
            .clone()
    }

    fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Feeds a body stream through a shared hasher on its way to the store.
fn hashing(body: ByteStream, hasher: Arc<Mutex<Digester>>) -> ByteStream {
    Box::pin(body.inspect(move |chunk| {
        if let Ok(bytes) = chunk {
            hasher
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .update(bytes);
        }
    }))
}

impl Registry {
    /// Opens an upload session in `repo` for `owner` (an identity's name) and returns its id.
    /// With `max_open`, an owner already holding that many sessions is refused.
    pub async fn start_upload(
        &self,
        repo: &RepoName,
        algorithm: Algorithm,
        owner: &str,
        max_open: Option<u64>,
    ) -> Result<String> {
        if let Some(limit) = max_open
            && self.meta.uploads_owned_by(owner).await? >= limit
        {
            return Err(Error::TooManyUploads { limit });
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.blobs.upload_start(&id).await?;
        let record = UploadRecord {
            id: id.clone(),
            repo: repo.clone(),
            algorithm,
            created: now(),
            owner: owner.to_owned(),
        };
        if let Err(e) = self.meta.upload_create(&record).await {
            let _ = self.blobs.upload_abort(&id).await;
            return Err(e.into());
        }
        self.sessions.get_or_insert(&id, || Session {
            hasher: Some(Digester::new(algorithm)),
            hashed: 0,
        });
        Ok(id)
    }

    async fn session_record(&self, repo: &RepoName, id: &str) -> Result<UploadRecord> {
        match self.meta.upload_get(id).await? {
            // A session is only reachable through the repository that opened it.
            Some(r) if &r.repo == repo => Ok(r),
            _ => Err(Error::UploadUnknown),
        }
    }

    async fn session(&self, record: &UploadRecord) -> Result<Arc<tokio::sync::Mutex<Session>>> {
        let len = self
            .blobs
            .upload_len(&record.id)
            .await?
            .ok_or(Error::UploadUnknown)?;
        Ok(self.sessions.get_or_insert(&record.id, || Session {
            // Unknown in memory (we restarted): an empty upload can still be hashed as it goes.
            hasher: (len == 0).then(|| Digester::new(record.algorithm)),
            hashed: 0,
        }))
    }

    /// Bytes received so far.
    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<u64> {
        self.session_record(repo, id).await?;
        self.blobs.upload_len(id).await?.ok_or(Error::UploadUnknown)
    }

    /// Appends a chunk (PATCH). Returns the new length.
    pub async fn upload_chunk(
        &self,
        repo: &RepoName,
        id: &str,
        range: ChunkRange,
        body: ByteStream,
    ) -> Result<u64> {
        let record = self.session_record(repo, id).await?;
        let session = self.session(&record).await?;
        let mut s = session.lock().await;
        self.append_locked(&record, &mut s, range, body).await
    }

    async fn append_locked(
        &self,
        record: &UploadRecord,
        s: &mut Session,
        range: ChunkRange,
        body: ByteStream,
    ) -> Result<u64> {
        let current = self
            .blobs
            .upload_len(&record.id)
            .await?
            .ok_or(Error::UploadUnknown)?;
        let offset = range.start.unwrap_or(current);
        if offset != current {
            return Err(Error::ChunkOutOfOrder { current });
        }
        let track = s.hasher.is_some() && s.hashed == current;
        let shared = Arc::new(Mutex::new(
            s.hasher
                .clone()
                .unwrap_or_else(|| Digester::new(record.algorithm)),
        ));
        let stream = if track {
            hashing(body, shared.clone())
        } else {
            body
        };
        let new_len = self
            .blobs
            .upload_append(&record.id, offset, range.len, stream)
            .await?;
        if track {
            let h = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
            s.hasher = Some(h);
            s.hashed = new_len;
        } else {
            s.hasher = None;
        }
        Ok(new_len)
    }

    /// Closes an upload (PUT), with an optional final chunk, verifying `digest`. On a digest
    /// mismatch the session is discarded: its bytes can never become that blob.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        last_chunk: Option<(ChunkRange, ByteStream)>,
    ) -> Result<u64> {
        let record = self.session_record(repo, id).await?;
        let session = self.session(&record).await?;
        let mut s = session.lock().await;
        if let Some((range, body)) = last_chunk {
            self.append_locked(&record, &mut s, range, body).await?;
        }
        let len = self
            .blobs
            .upload_len(id)
            .await?
            .ok_or(Error::UploadUnknown)?;
        let computed = match (&s.hasher, s.hashed == len) {
            (Some(h), true) if h.algorithm() == digest.algorithm() => h.clone().finish(),
            _ => self.rehash(id, digest.algorithm()).await?,
        };
        if &computed != digest {
            drop(s);
            self.discard(id).await;
            return Err(Error::DigestMismatch { computed });
        }
        let size = self.blobs.upload_commit(id, digest).await?;
        self.meta.link_blob(repo, digest, size).await?;
        self.meta.upload_delete(id).await?;
        drop(s);
        self.sessions.remove(id);
        Ok(size)
    }

    async fn rehash(&self, id: &str, algorithm: Algorithm) -> Result<Digest> {
        let mut h = Digester::new(algorithm);
        let mut s = self.blobs.upload_read(id).await?;
        while let Some(chunk) = s.next().await {
            h.update(&chunk.map_err(berth_storage::Error::Io)?);
        }
        Ok(h.finish())
    }

    async fn discard(&self, id: &str) {
        match self.blobs.upload_abort(id).await {
            Ok(()) | Err(berth_storage::Error::UploadUnknown) => {}
            Err(e) => tracing::warn!(upload = id, error = %e, "removing upload data"),
        }
        if let Err(e) = self.meta.upload_delete(id).await {
            tracing::warn!(upload = id, error = %e, "removing upload record");
        }
        self.sessions.remove(id);
    }

    /// Cancels a session (DELETE on the upload URL).
    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        self.session_record(repo, id).await?;
        self.discard(id).await;
        Ok(())
    }

    /// Single-request upload (`POST ?digest=`): the body is the whole blob.
    pub async fn upload_monolithic(
        &self,
        repo: &RepoName,
        digest: &Digest,
        len: Option<u64>,
        body: ByteStream,
        owner: &str,
    ) -> Result<u64> {
        // Lives only for this request, so it does not count against the owner's open sessions.
        let id = self
            .start_upload(repo, digest.algorithm(), owner, None)
            .await?;
        let range = ChunkRange {
            start: Some(0),
            len,
        };
        match self
            .finish_upload(repo, &id, digest, Some((range, body)))
            .await
        {
            Ok(n) => Ok(n),
            Err(e) => {
                self.discard(&id).await;
                Err(e)
            }
        }
    }

    /// Cross-repository mount. `Ok(Some(size))` when linked; `Ok(None)` when the caller should
    /// fall back to a regular upload (source missing or not given).
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
    ) -> Result<Option<u64>> {
        let Some(from) = from else { return Ok(None) };
        let Some(size) = self.meta.blob_linked(from, digest).await? else {
            return Ok(None);
        };
        if self.blobs.stat(digest).await?.is_none() {
            return Ok(None);
        }
        self.meta.link_blob(repo, digest, size).await?;
        Ok(Some(size))
    }

    /// Removes sessions opened before `before` (unix seconds), and sessions opened before
    /// `empty_before` that never received a byte. Returns how many.
    pub async fn purge_uploads(&self, before: i64, empty_before: i64) -> Result<usize> {
        let ids = self.meta.uploads_created_before(before).await?;
        for id in &ids {
            self.discard(id).await;
        }
        let mut removed = ids.len();
        for id in self.meta.uploads_created_before(empty_before).await? {
            if matches!(self.blobs.upload_len(&id).await, Ok(Some(0) | None)) {
                self.discard(&id).await;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Size of a blob linked into `repo`.
    pub async fn stat_blob(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        self.meta
            .blob_linked(repo, digest)
            .await?
            .ok_or(Error::BlobUnknown)
    }

    /// Streams `len` bytes from `offset` of a blob linked into `repo`.
    pub async fn read_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> Result<ByteStream> {
        self.stat_blob(repo, digest).await?;
        Ok(self.blobs.read(digest, offset, len).await?)
    }

    /// Unlinks a blob from a repository; its bytes are reclaimed by garbage collection.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        if self.meta.unlink_blob(repo, digest).await? {
            Ok(())
        } else {
            Err(Error::BlobUnknown)
        }
    }
}

/// Parses a PATCH `Content-Range` value, `<start>-<end>` inclusive (some clients add `bytes `),
/// into (start, length). The end must fit a signed 64-bit offset (file offsets and the stores'
/// integers are signed), which also keeps `end - start + 1` from overflowing.
pub fn parse_content_range(v: &str) -> Result<(u64, u64)> {
    let v = v.trim();
    let v = v
        .strip_prefix("bytes")
        .map(|r| r.trim_start_matches([' ', '=']))
        .unwrap_or(v);
    let bad = |why: &str| {
        Error::invalid(
            ErrorCode::BlobUploadInvalid,
            format!("malformed Content-Range {v:?}: {why}"),
        )
    };
    let (a, b) = v
        .split_once('-')
        .ok_or_else(|| bad("expected <start>-<end>"))?;
    let num = |s: &str| {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad("expected decimal byte offsets"));
        }
        s.parse::<u64>()
            .ok()
            .filter(|n| i64::try_from(*n).is_ok())
            .ok_or_else(|| bad("offset beyond 2^63-1"))
    };
    let (a, b) = (num(a)?, num(b)?);
    let len = b
        .checked_sub(a)
        .and_then(|d| d.checked_add(1))
        .ok_or_else(|| bad("end before start"))?;
    Ok((a, len))
}

#[cfg(test)]
mod content_range_tests {
    use super::*;

    #[test]
    fn parses_and_bounds_content_ranges() {
        assert_eq!(parse_content_range("0-9").unwrap(), (0, 10));
        assert_eq!(parse_content_range("bytes 5-5").unwrap(), (5, 1));
        assert_eq!(parse_content_range("bytes=10-19").unwrap(), (10, 10));
        let max = i64::MAX as u64;
        assert_eq!(
            parse_content_range(&format!("0-{max}")).unwrap(),
            (0, max + 1)
        );
        for bad in [
            "0-18446744073709551615",
            "18446744073709551615-18446744073709551615",
            "9223372036854775808-9223372036854775808",
            "100000000000000000000-1",
            "5-4",
            "-1-5",
            "+1-5",
            "1",
            "a-b",
            "",
        ] {
            let e = parse_content_range(bad).expect_err(bad);
            assert_eq!(e.code(), ErrorCode::BlobUploadInvalid, "{bad}");
        }
    }
}
