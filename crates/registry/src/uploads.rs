//! Blob upload sessions: monolithic, POST+PUT, chunked and streamed PATCH, resume, cancel, mount.
//!
//! A session's record in the metadata store is its single truth: repository, owner, algorithm,
//! the acknowledged length, the acknowledged parts and the running hash's saved state at that
//! length. Each chunk is written to the blob store as a part under a fresh random name, and is
//! acknowledged only once the record has moved (compare-and-set) from the offset the chunk
//! started at, recording the part in the same step. Parts nobody recorded (the loser of two
//! writers at one offset, e.g. a client's retry through another node while the first request
//! was stalled; a chunk written before a crash) are never part of the blob: the commit assembles
//! exactly the recorded parts. So any process, on any node, continues any session without
//! re-reading it, and a late write cannot change acknowledged bytes.

// Request input is parsed here: a malformed value must be an error, never a panic.
#![warn(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_oci::{Algorithm, Digest, Digester, ErrorCode, RepoName};
use berth_storage::{ByteStream, MAX_UPLOAD_PARTS, UploadPart, UploadRecord};
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

/// In-process locks per session: two requests on one session in this process take turns (the
/// record's compare-and-set settles races between processes).
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Sessions {
    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_owned()).or_default().clone()
    }

    fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
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
            created: self.now(),
            owner: owner.to_owned(),
            offset: Some(0),
            hash_state: Some(Digester::new(algorithm).save()),
            parts: Some(Vec::new()),
        };
        if let Err(e) = self.meta.upload_create(&record).await {
            let _ = self.blobs.upload_abort(&id).await;
            return Err(e.into());
        }
        Ok(id)
    }

    /// The session's record. A session recorded before part lists were (by an older Berth) is
    /// not continued: its bytes are not described by parts, so it is discarded and reported
    /// unknown, and the client starts the upload over.
    async fn session_record(&self, repo: &RepoName, id: &str) -> Result<UploadRecord> {
        match self.meta.upload_get(id).await? {
            // A session is only reachable through the repository that opened it.
            Some(r) if &r.repo == repo => {
                if r.parts.is_none() {
                    tracing::info!(
                        upload = id,
                        "discarding an upload session from before part lists"
                    );
                    self.discard(id).await;
                    return Err(Error::UploadUnknown);
                }
                Ok(r)
            }
            _ => Err(Error::UploadUnknown),
        }
    }

    /// Where the session ends: the record's acknowledged offset.
    fn acknowledged(record: &UploadRecord) -> u64 {
        record.offset.unwrap_or(0)
    }

    /// Bytes received so far.
    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<u64> {
        let record = self.session_record(repo, id).await?;
        Ok(Self::acknowledged(&record))
    }

    /// Appends a chunk (PATCH). Returns the new length.
    pub async fn upload_chunk(
        &self,
        repo: &RepoName,
        id: &str,
        range: ChunkRange,
        body: ByteStream,
    ) -> Result<u64> {
        let lock = self.sessions.lock_for(id);
        let _turn = lock.lock().await;
        let record = self.session_record(repo, id).await?;
        let (record, _) = self.append(&record, range, body).await?;
        Ok(Self::acknowledged(&record))
    }

    /// Writes one chunk as a new part at the record's offset and records it. Returns the
    /// record's new state (its parts and length) and the running hash at its end (`None` when the
    /// record had no usable hash state).
    async fn append(
        &self,
        record: &UploadRecord,
        range: ChunkRange,
        body: ByteStream,
    ) -> Result<(UploadRecord, Option<Digester>)> {
        let current = Self::acknowledged(record);
        if range.start.is_some_and(|start| start != current) {
            return Err(Error::ChunkOutOfOrder { current });
        }
        let mut parts = record.parts.clone().unwrap_or_default();
        if parts.len() >= MAX_UPLOAD_PARTS {
            return Err(Error::invalid(
                ErrorCode::BlobUploadInvalid,
                format!("an upload takes at most {MAX_UPLOAD_PARTS} chunks: send larger ones"),
            ));
        }
        let hasher = record
            .hash_state
            .as_deref()
            .and_then(Digester::restore)
            .filter(|h| h.algorithm() == record.algorithm)
            .map(|h| Arc::new(Mutex::new(h)));
        if range.len == Some(0) {
            // Nothing to store (a closing PUT without a body, the usual end of a push): no part
            // and no round trip to the store. The body must be as empty as announced.
            let mut body = body;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(berth_storage::Error::Body)?;
                if !chunk.is_empty() {
                    return Err(berth_storage::Error::SizeMismatch {
                        expected: 0,
                        received: chunk.len() as u64,
                    }
                    .into());
                }
            }
            let hasher = hasher.map(|h| h.lock().unwrap_or_else(|p| p.into_inner()).clone());
            return Ok((record.clone(), hasher));
        }
        let stream = match &hasher {
            Some(h) => hashing(body, h.clone()),
            None => body,
        };
        // A fresh name per chunk: a writer racing at this offset writes elsewhere.
        let name = uuid::Uuid::new_v4().simple().to_string();
        let size = self
            .blobs
            .upload_write(&record.id, &name, current, range.len, stream)
            .await?;
        let hasher = hasher.map(|h| h.lock().unwrap_or_else(|p| p.into_inner()).clone());
        let state = hasher.as_ref().map(Digester::save);
        let part = UploadPart {
            name,
            offset: current,
            size,
        };
        let end = part.end()?;
        if !self
            .meta
            .upload_advance(&record.id, &part, state.clone())
            .await?
        {
            // Another writer moved the session first: this chunk is not acknowledged (its part
            // stays unrecorded and goes with the session).
            let now_at = match self.meta.upload_get(&record.id).await? {
                Some(r) => Self::acknowledged(&r),
                None => return Err(Error::UploadUnknown),
            };
            return Err(Error::ChunkOutOfOrder { current: now_at });
        }
        parts.push(part);
        let record = UploadRecord {
            offset: Some(end),
            hash_state: state,
            parts: Some(parts),
            ..record.clone()
        };
        Ok((record, hasher))
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
        let lock = self.sessions.lock_for(id);
        let turn = lock.lock().await;
        let record = self.session_record(repo, id).await?;
        let (record, hasher) = match last_chunk {
            Some((range, body)) => self.append(&record, range, body).await?,
            None => {
                let hasher = record
                    .hash_state
                    .as_deref()
                    .and_then(Digester::restore)
                    .filter(|h| h.algorithm() == record.algorithm);
                (record, hasher)
            }
        };
        let parts = record.parts.unwrap_or_default();
        let computed = match hasher {
            Some(h) if h.algorithm() == digest.algorithm() => h.finish(),
            _ => self.rehash(id, &parts, digest.algorithm()).await?,
        };
        if &computed != digest {
            drop(turn);
            self.discard(id).await;
            return Err(Error::DigestMismatch { computed });
        }
        // Verified: only now may the bytes become the blob, exactly the recorded parts. Pinned
        // first, so a collection running now cannot take these bytes once they are published.
        self.meta
            .blob_pin(digest, UploadPart::total(&parts)?, self.now())
            .await?;
        let size = self.blobs.upload_commit(id, &parts, digest).await?;
        self.meta.link_blob(repo, digest, size).await?;
        self.meta.upload_delete(id).await?;
        drop(turn);
        self.sessions.remove(id);
        Ok(size)
    }

    async fn rehash(&self, id: &str, parts: &[UploadPart], algorithm: Algorithm) -> Result<Digest> {
        let mut h = Digester::new(algorithm);
        let mut s = self.blobs.upload_read(id, parts).await?;
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
        // Pinned before the bytes are checked: bytes still there now stay there (a collection
        // that took them first is seen as missing bytes, and the client uploads instead).
        self.meta.blob_pin(digest, size, self.now()).await?;
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
            let empty = match self.meta.upload_get(&id).await? {
                Some(r) => r.parts.as_ref().is_none_or(|p| p.is_empty()) || r.offset == Some(0),
                None => false,
            };
            if empty {
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
