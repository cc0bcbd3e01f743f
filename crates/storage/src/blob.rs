use std::io;
use std::pin::Pin;

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use futures::Stream;

use crate::{Error, Result};

/// A stream of body chunks, in and out of the blob store.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Most parts an upload may have (S3's limit on the parts of one multipart upload).
pub const MAX_UPLOAD_PARTS: usize = 10_000;

/// One acknowledged chunk of an upload: the name its bytes were stored under and where they sit
/// in the upload. The upload record ([`crate::UploadRecord::parts`]) lists them in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPart {
    /// Chosen fresh by the writer for this one chunk (`[A-Za-z0-9-]`, at most 64 bytes), so two
    /// writers racing at one offset never write the same bytes' place.
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

impl UploadPart {
    /// Whether `name` may name a part (and an upload): what the registry generates, uuid text.
    /// Backends build object keys and file names from it.
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }

    /// Where the part ends in the upload.
    pub fn end(&self) -> Result<u64> {
        self.offset
            .checked_add(self.size)
            .ok_or_else(|| Error::Backend("upload part ends past 2^64".into()))
    }

    /// The end of the upload these parts make, checking that they are well-named and follow each
    /// other from 0 without gaps or overlaps (a record that says otherwise is corrupt).
    pub fn total(parts: &[UploadPart]) -> Result<u64> {
        if parts.len() > MAX_UPLOAD_PARTS {
            return Err(Error::Backend(format!(
                "upload record lists {} parts (at most {MAX_UPLOAD_PARTS})",
                parts.len()
            )));
        }
        let mut end: u64 = 0;
        let mut names = std::collections::HashSet::with_capacity(parts.len());
        for p in parts {
            if !Self::valid_name(&p.name) || p.offset != end || !names.insert(p.name.as_str()) {
                return Err(Error::Backend(format!(
                    "upload record's part {:?} at {} does not follow the bytes before it ({end})",
                    p.name, p.offset
                )));
            }
            end = end
                .checked_add(p.size)
                .ok_or_else(|| Error::Backend("upload parts overflow".into()))?;
        }
        Ok(end)
    }

    /// The text form SQL backends keep in one column: `name offset size` per line. Appending
    /// one part's text to the column appends the part, so the compare-and-set that moves the
    /// offset records the part in the same statement.
    pub fn encode(&self) -> String {
        format!("{} {} {}\n", self.name, self.offset, self.size)
    }

    /// Parses [`UploadPart::encode`]d lines.
    pub fn decode_list(text: &str) -> Result<Vec<UploadPart>> {
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                let bad = || Error::Backend(format!("malformed upload part {line:?}"));
                let mut f = line.split(' ');
                let (Some(name), Some(offset), Some(size), None) =
                    (f.next(), f.next(), f.next(), f.next())
                else {
                    return Err(bad());
                };
                Ok(UploadPart {
                    name: name.to_owned(),
                    offset: offset.parse().map_err(|_| bad())?,
                    size: size.parse().map_err(|_| bad())?,
                })
            })
            .collect()
    }
}

/// A blob as the blob store holds it, for listings (checks and garbage collection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    /// Unix seconds of the last write of its bytes.
    pub modified: i64,
}

/// Something an interrupted write left in the blob store that is neither a blob nor part of an
/// upload (a file beside the blobs, an object store's unfinished multipart upload). Only a
/// check may remove one, and only when it is old enough that no write can still be under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempObject {
    /// Where it is, in the backend's words (a path under the data dir, an object key): shown to
    /// people and given back to [`BlobStore::remove_temp`].
    pub name: String,
    pub size: u64,
    /// Unix seconds of its last write.
    pub modified: i64,
}

/// Content-addressed blob bytes and the in-progress uploads that become them.
///
/// An upload is a set of parts, each written once under a fresh name by whoever received that
/// chunk. Which parts make the upload, in which order, is not this store's to know: the upload
/// record in the metadata store lists them (the part is recorded by the same compare-and-set
/// that moves the offset), and [`BlobStore::upload_read`] and [`BlobStore::upload_commit`] are
/// given that list. Parts nobody recorded (the loser of a race at one offset, a chunk written
/// before a crash) are ignored and removed with the upload. So a late write can never change
/// the bytes of an acknowledged chunk, whichever node it comes through.
///
/// A blob is visible only after [`BlobStore::upload_commit`], which publishes it atomically; the
/// caller has verified the digest before committing.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Size of a stored blob, or `None`.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;
    /// `len` bytes from `offset` of a stored blob, streamed. A range past the blob's end yields
    /// what exists and then an error: never silently short.
    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream>;
    /// Removes the blob's bytes (garbage collection only; repositories merely unlink).
    async fn delete(&self, digest: &Digest) -> Result<()>;

    /// Opens upload `id` (see [`UploadPart::valid_name`]); an id is opened once.
    async fn upload_start(&self, id: &str) -> Result<()>;
    /// Writes one chunk of upload `id` as part `part`, a name the caller chose fresh for this
    /// write, and returns its size. `offset` is where the chunk starts in the upload (a backend
    /// may use it to place the bytes, never to decide what the upload holds). The part counts
    /// only once the upload record lists it. When `expected` is given and the stream carries
    /// another number of bytes, or the stream fails, an error is returned and nothing is left
    /// under `part`: a chunk lands whole or not at all.
    async fn upload_write(
        &self,
        id: &str,
        part: &str,
        offset: u64,
        expected: Option<u64>,
        data: ByteStream,
    ) -> Result<u64>;
    /// Whether upload `id` is open.
    async fn upload_exists(&self, id: &str) -> Result<bool>;
    /// The bytes of `parts` (an upload record's list), in order: to re-hash an upload whose
    /// hash state is not usable. A part missing or of another size than recorded is an error.
    async fn upload_read(&self, id: &str, parts: &[UploadPart]) -> Result<ByteStream>;
    /// Publishes exactly `parts` (an upload record's list), concatenated, as blob `digest`
    /// (durably), then removes the upload with every part, recorded or not. Returns the size.
    async fn upload_commit(&self, id: &str, parts: &[UploadPart], digest: &Digest) -> Result<u64>;
    /// Removes the upload and all its parts.
    async fn upload_abort(&self, id: &str) -> Result<()>;

    /// Stored blobs ordered by digest text, after `after` (exclusive), at most `limit`.
    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<StoredBlob>>;
    /// Every upload that has anything stored here (open, or left by a crash), with the unix
    /// seconds of its last write, ordered by id. [`BlobStore::upload_abort`] removes each.
    async fn list_uploads(&self) -> Result<Vec<(String, i64)>>;
    /// What interrupted writes left that is neither a blob nor an upload's.
    async fn list_temp(&self) -> Result<Vec<TempObject>>;
    /// Removes a [`TempObject`] by its name. A name [`BlobStore::list_temp`] would not list
    /// (a blob, an upload, nothing) is refused with an error and nothing is removed.
    async fn remove_temp(&self, name: &str) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, offset: u64, size: u64) -> UploadPart {
        UploadPart {
            name: name.into(),
            offset,
            size,
        }
    }

    #[test]
    fn part_lists_round_trip_through_their_text_form() {
        let parts = vec![p("a1", 0, 5), p("b-2", 5, 0), p("c", 5, 7)];
        let text: String = parts.iter().map(UploadPart::encode).collect();
        assert_eq!(text, "a1 0 5\nb-2 5 0\nc 5 7\n");
        assert_eq!(UploadPart::decode_list(&text).unwrap(), parts);
        assert_eq!(UploadPart::decode_list("").unwrap(), vec![]);
        for bad in ["a 0", "a 0 5 6", "a x 5", "a 0 -1"] {
            assert!(UploadPart::decode_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_part_list_must_follow_on_from_zero() {
        assert_eq!(UploadPart::total(&[]).unwrap(), 0);
        assert_eq!(
            UploadPart::total(&[p("a", 0, 5), p("b", 5, 0), p("c", 5, 7)]).unwrap(),
            12
        );
        for bad in [
            vec![p("a", 1, 5)],
            vec![p("a", 0, 5), p("b", 4, 1)],
            vec![p("a", 0, 5), p("b", 6, 1)],
            vec![p("a", 0, 5), p("a", 5, 1)],
            vec![p("../a", 0, 5)],
            vec![p("a", 0, u64::MAX), p("b", u64::MAX, 1)],
        ] {
            assert!(UploadPart::total(&bad).is_err(), "{bad:?}");
        }
    }
}
