//! Blobs and in-progress uploads held as byte buffers.

use std::collections::HashMap;
use std::io;

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::{MemoryStore, lock, now_secs};
use crate::{BlobStore, ByteStream, Error, Result, StoredBlob, TempObject, UploadPart};

/// Chunk size when streaming a blob out (the embedded store reads files in pieces this size).
const READ_CHUNK: usize = 256 << 10;

#[derive(Default)]
pub(super) struct BlobState {
    /// Committed blobs by digest text; immutable once there.
    blobs: HashMap<String, Bytes>,
    /// When each blob was committed (unix seconds), by digest text.
    committed: HashMap<String, i64>,
    /// Upload id → the chunks received, in order (kept as received: no copy per append).
    uploads: HashMap<String, Upload>,
}

/// An open upload: its parts by name, each as received (no copy per write).
#[derive(Default)]
struct Upload {
    parts: HashMap<String, Vec<Bytes>>,
    /// Unix seconds of the last write.
    modified: i64,
}

/// The ids the embedded store accepts (what the registry generates: uuid text); anything else
/// is an unknown upload there, so it is here too.
fn check_id(id: &str) -> Result<()> {
    if UploadPart::valid_name(id) {
        Ok(())
    } else {
        Err(Error::UploadUnknown)
    }
}

impl Upload {
    /// The recorded parts' chunks in order, each checked against its recorded size.
    fn assemble(&self, parts: &[UploadPart]) -> Result<(Vec<Bytes>, u64)> {
        let total = UploadPart::total(parts)?;
        let mut out = Vec::new();
        for p in parts {
            let chunks = self.parts.get(&p.name).ok_or_else(|| missing_part(p))?;
            let size: u64 = chunks.iter().map(len_of).sum();
            if size != p.size {
                return Err(missing_part(p));
            }
            out.extend(chunks.iter().cloned());
        }
        Ok((out, total))
    }
}

fn missing_part(p: &UploadPart) -> Error {
    Error::Backend(format!(
        "upload part {} ({} bytes at {}) is missing or of another size",
        p.name, p.size, p.offset
    ))
}

fn len_of(b: &Bytes) -> u64 {
    u64::try_from(b.len()).unwrap_or(u64::MAX)
}

/// `len` bytes of `data` from `offset`, in pieces; a range past the end yields what exists and
/// then an error, as reading a file shorter than its record does.
fn stream_range(data: Bytes, offset: u64, len: u64) -> ByteStream {
    let size = len_of(&data);
    let start = offset.min(size);
    let end = offset.saturating_add(len).min(size);
    let short = offset.saturating_add(len) > size;
    // Both bounds are at most data.len(), so they fit usize.
    let (start, end) = (
        usize::try_from(start).unwrap_or(0),
        usize::try_from(end).unwrap_or(0),
    );
    let mut pieces: Vec<io::Result<Bytes>> = Vec::new();
    let mut at = start;
    while at < end {
        let next = at.saturating_add(READ_CHUNK).min(end);
        pieces.push(Ok(data.slice(at..next)));
        at = next;
    }
    if short {
        pieces.push(Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "blob is shorter than the range asked for",
        )));
    }
    Box::pin(futures::stream::iter(pieces))
}

#[async_trait]
impl BlobStore for MemoryStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(lock(&self.blobs).blobs.get(&digest.to_string()).map(len_of))
    }

    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream> {
        let data = lock(&self.blobs)
            .blobs
            .get(&digest.to_string())
            .cloned()
            .ok_or(Error::BlobUnknown)?;
        Ok(stream_range(data, offset, len))
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        let mut st = lock(&self.blobs);
        st.committed.remove(&digest.to_string());
        st.blobs
            .remove(&digest.to_string())
            .map(|_| ())
            .ok_or(Error::BlobUnknown)
    }

    async fn upload_start(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let mut st = lock(&self.blobs);
        if st.uploads.contains_key(id) {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("upload {id} already exists"),
            )));
        }
        st.uploads.insert(
            id.to_owned(),
            Upload {
                parts: HashMap::new(),
                modified: now_secs(),
            },
        );
        Ok(())
    }

    async fn upload_write(
        &self,
        id: &str,
        part: &str,
        _offset: u64,
        expected: Option<u64>,
        mut data: ByteStream,
    ) -> Result<u64> {
        check_id(id)?;
        check_id(part)?;
        if !lock(&self.blobs).uploads.contains_key(id) {
            return Err(Error::UploadUnknown);
        }
        // Gathered outside the lock (the body may take its time), stored below only if whole.
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut received: u64 = 0;
        while let Some(chunk) = data.next().await {
            let chunk = chunk.map_err(Error::Body)?;
            received = received.saturating_add(len_of(&chunk));
            if expected.is_some_and(|n| received > n) {
                break;
            }
            if !chunk.is_empty() {
                chunks.push(chunk);
            }
        }
        if let Some(n) = expected
            && n != received
        {
            return Err(Error::SizeMismatch {
                expected: n,
                received,
            });
        }
        let mut st = lock(&self.blobs);
        let up = st.uploads.get_mut(id).ok_or(Error::UploadUnknown)?;
        up.parts.insert(part.to_owned(), chunks);
        up.modified = now_secs();
        Ok(received)
    }

    async fn upload_exists(&self, id: &str) -> Result<bool> {
        check_id(id)?;
        Ok(lock(&self.blobs).uploads.contains_key(id))
    }

    async fn upload_read(&self, id: &str, parts: &[UploadPart]) -> Result<ByteStream> {
        check_id(id)?;
        let (chunks, _) = lock(&self.blobs)
            .uploads
            .get(id)
            .ok_or(Error::UploadUnknown)?
            .assemble(parts)?;
        Ok(Box::pin(futures::stream::iter(
            chunks.into_iter().map(Ok::<_, io::Error>),
        )))
    }

    async fn upload_commit(&self, id: &str, parts: &[UploadPart], digest: &Digest) -> Result<u64> {
        check_id(id)?;
        let mut st = lock(&self.blobs);
        let (chunks, size) = st
            .uploads
            .get(id)
            .ok_or(Error::UploadUnknown)?
            .assemble(parts)?;
        st.uploads.remove(id);
        if !st.blobs.contains_key(&digest.to_string()) {
            st.committed.insert(digest.to_string(), now_secs());
        }
        // Content-addressed: identical bytes already stored stay as they are.
        st.blobs.entry(digest.to_string()).or_insert_with(|| {
            let mut whole = BytesMut::with_capacity(usize::try_from(size).unwrap_or(0));
            for c in &chunks {
                whole.extend_from_slice(c);
            }
            whole.freeze()
        });
        Ok(size)
    }

    async fn upload_abort(&self, id: &str) -> Result<()> {
        check_id(id)?;
        lock(&self.blobs)
            .uploads
            .remove(id)
            .map(|_| ())
            .ok_or(Error::UploadUnknown)
    }

    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<StoredBlob>> {
        let st = lock(&self.blobs);
        let after = after.map(Digest::to_string);
        let mut names: Vec<&String> = st
            .blobs
            .keys()
            .filter(|k| after.as_ref().is_none_or(|a| *k > a))
            .collect();
        names.sort();
        names
            .into_iter()
            .take(limit)
            .map(|k| {
                Ok(StoredBlob {
                    digest: k.parse().map_err(|e| Error::Backend(format!("{e}")))?,
                    size: st.blobs.get(k).map_or(0, len_of),
                    modified: st.committed.get(k).copied().unwrap_or(0),
                })
            })
            .collect()
    }

    async fn list_uploads(&self) -> Result<Vec<(String, i64)>> {
        let mut out: Vec<(String, i64)> = lock(&self.blobs)
            .uploads
            .iter()
            .map(|(id, u)| (id.clone(), u.modified))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Writes here are never cut short halfway: nothing is ever left.
    async fn list_temp(&self) -> Result<Vec<TempObject>> {
        Ok(Vec::new())
    }

    async fn remove_temp(&self, name: &str) -> Result<()> {
        Err(Error::Backend(format!(
            "{name:?} is not a temporary object"
        )))
    }
}
