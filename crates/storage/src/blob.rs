use std::io;
use std::pin::Pin;

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use futures::Stream;

use crate::Result;

/// A stream of body chunks, in and out of the blob store.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Content-addressed blob bytes and the in-progress uploads that become them.
///
/// Uploads are append-only byte sequences identified by an opaque id chosen by the caller. A blob
/// is visible only after [`BlobStore::upload_commit`], which publishes it atomically; the caller
/// has verified the digest before committing.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Size of a stored blob, or `None`.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;
    /// `len` bytes from `offset` of a stored blob, streamed.
    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream>;
    /// Removes the blob's bytes (garbage collection only; repositories merely unlink).
    async fn delete(&self, digest: &Digest) -> Result<()>;

    async fn upload_start(&self, id: &str) -> Result<()>;
    /// Writes `data` at `offset`. The upload record (metadata store) says where an upload ends;
    /// bytes this store holds beyond `offset` belong to a chunk that was never acknowledged (a
    /// crash between the write and the record's update) and are discarded first. An `offset`
    /// beyond what this store holds is [`crate::Error::OffsetMismatch`]. When `expected` is given
    /// and the stream carries another number of bytes, or the stream fails, the upload is rolled
    /// back to `offset` and an error returned: a chunk lands whole or not at all.
    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        expected: Option<u64>,
        data: ByteStream,
    ) -> Result<u64>;
    /// Current length of an upload, or `None` if it does not exist.
    async fn upload_len(&self, id: &str) -> Result<Option<u64>>;
    /// The bytes received so far (to re-hash an upload whose hasher state was lost).
    async fn upload_read(&self, id: &str) -> Result<ByteStream>;
    /// Publishes the upload as blob `digest` (durably) and removes the upload. Returns the size.
    async fn upload_commit(&self, id: &str, digest: &Digest) -> Result<u64>;
    async fn upload_abort(&self, id: &str) -> Result<()>;
}
