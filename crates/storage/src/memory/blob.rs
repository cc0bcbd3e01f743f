//! Blobs and in-progress uploads held as byte buffers.

use std::collections::HashMap;
use std::io;

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::{MemoryStore, lock};
use crate::{BlobStore, ByteStream, Error, Result};

/// Chunk size when streaming a blob out (the embedded store reads files in pieces this size).
const READ_CHUNK: usize = 256 << 10;

#[derive(Default)]
pub(super) struct BlobState {
    /// Committed blobs by digest text; immutable once there.
    blobs: HashMap<String, Bytes>,
    /// Upload id → the chunks received, in order (kept as received: no copy per append).
    uploads: HashMap<String, Upload>,
}

#[derive(Default)]
struct Upload {
    chunks: Vec<Bytes>,
    len: u64,
}

/// The ids the embedded store accepts (what the registry generates: uuid text); anything else
/// is an unknown upload there, so it is here too.
fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(Error::UploadUnknown);
    }
    Ok(())
}

impl Upload {
    /// Ends the upload at `offset`: later bytes go; an offset past the end is a gap.
    fn cut(&mut self, offset: u64) -> Result<()> {
        if self.len < offset {
            return Err(Error::OffsetMismatch {
                offset,
                current: self.len,
            });
        }
        let mut kept: u64 = 0;
        let mut keep_chunks = 0;
        for c in &mut self.chunks {
            if kept >= offset {
                break;
            }
            let room = offset.saturating_sub(kept);
            if len_of(c) > room {
                // room < c.len(), so it fits usize.
                c.truncate(usize::try_from(room).unwrap_or(0));
            }
            kept = kept.saturating_add(len_of(c));
            keep_chunks += 1;
        }
        self.chunks.truncate(keep_chunks);
        self.len = offset;
        Ok(())
    }
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
        lock(&self.blobs)
            .blobs
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
        st.uploads.insert(id.to_owned(), Upload::default());
        Ok(())
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        expected: Option<u64>,
        mut data: ByteStream,
    ) -> Result<u64> {
        check_id(id)?;
        {
            let mut st = lock(&self.blobs);
            let up = st.uploads.get_mut(id).ok_or(Error::UploadUnknown)?;
            // Bytes past `offset` were never acknowledged (see the trait): dropped first.
            up.cut(offset)?;
        }
        // Gathered outside the lock (the body may take its time), appended below only if whole.
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
        // The chunk is written at `offset` whatever landed meanwhile, as a positional write
        // to a file is; the upload record decides which writer's bytes count.
        up.cut(offset)?;
        up.chunks.extend(chunks);
        up.len = offset.saturating_add(received);
        Ok(up.len)
    }

    async fn upload_len(&self, id: &str) -> Result<Option<u64>> {
        check_id(id)?;
        Ok(lock(&self.blobs).uploads.get(id).map(|u| u.len))
    }

    async fn upload_read(&self, id: &str) -> Result<ByteStream> {
        check_id(id)?;
        let chunks = lock(&self.blobs)
            .uploads
            .get(id)
            .map(|u| u.chunks.clone())
            .ok_or(Error::UploadUnknown)?;
        Ok(Box::pin(futures::stream::iter(
            chunks.into_iter().map(Ok::<_, io::Error>),
        )))
    }

    async fn upload_commit(&self, id: &str, digest: &Digest) -> Result<u64> {
        check_id(id)?;
        let mut st = lock(&self.blobs);
        let up = st.uploads.remove(id).ok_or(Error::UploadUnknown)?;
        let key = digest.to_string();
        // Content-addressed: identical bytes already stored stay as they are.
        st.blobs.entry(key).or_insert_with(|| {
            let mut whole = BytesMut::with_capacity(usize::try_from(up.len).unwrap_or(0));
            for c in &up.chunks {
                whole.extend_from_slice(c);
            }
            whole.freeze()
        });
        Ok(up.len)
    }

    async fn upload_abort(&self, id: &str) -> Result<()> {
        check_id(id)?;
        lock(&self.blobs)
            .uploads
            .remove(id)
            .map(|_| ())
            .ok_or(Error::UploadUnknown)
    }
}
