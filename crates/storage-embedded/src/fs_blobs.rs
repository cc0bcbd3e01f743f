use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use berth_oci::Digest;
use berth_storage::{BlobStore, ByteStream, Error, Result};
use bytes::Bytes;
use futures::StreamExt;
use tokio::fs::{self, File, OpenOptions};
use tokio_util::io::ReaderStream;

/// Bytes gathered per write batch: large batches keep blocking-pool hops few.
const WRITE_BUF: usize = 1 << 20;
/// Read chunk size when streaming a blob out.
const READ_BUF: usize = 256 << 10;
/// Images may be private: only the server's user reads what is stored (whatever the umask).
const PRIVATE_DIR: u32 = 0o700;
const PRIVATE_FILE: u32 = 0o600;

pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// Opens (creating if needed) a blob store under `root`.
    pub fn open(root: impl AsRef<Path>) -> io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let root = root.as_ref().to_path_buf();
        for dir in ["blobs", "uploads"] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(PRIVATE_DIR)
                .create(root.join(dir))?;
        }
        Ok(FsBlobStore { root })
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        // The digest's hex is validated lowercase hex, so it is a safe file name.
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf> {
        // Ids come from URLs; allow only what we generate (uuid text) so no path can escape.
        if id.is_empty()
            || id.len() > 64
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(Error::UploadUnknown);
        }
        Ok(self.root.join("uploads").join(id))
    }
}

/// Streams `len` bytes from `offset` in chunks of at most READ_BUF, each read by the blocking
/// pool straight into the buffer that is handed on. (tokio's File keeps a second buffer of its
/// own per open file, which a client that stops reading keeps alive with the chunk it holds.)
fn read_chunks(f: Arc<std::fs::File>, offset: u64, len: u64) -> ByteStream {
    use std::os::unix::fs::FileExt;
    Box::pin(futures::stream::unfold(
        Some((f, offset, len)),
        |state| async move {
            let (f, at, left) = state?;
            if left == 0 {
                return None;
            }
            let n = usize::try_from(left.min(READ_BUF as u64)).unwrap_or(READ_BUF);
            let file = f.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; n];
                let got = file.read_at(&mut buf, at)?;
                buf.truncate(got);
                Ok::<_, io::Error>(buf)
            })
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
            match read {
                Ok(buf) if buf.is_empty() => Some((
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob file is shorter than its record",
                    )),
                    None,
                )),
                Ok(buf) => {
                    let got = buf.len() as u64;
                    Some((
                        Ok(Bytes::from(buf)),
                        Some((f, at.saturating_add(got), left.saturating_sub(got))),
                    ))
                }
                Err(e) => Some((Err(e), None)),
            }
        },
    ))
}

/// Writes `chunks` contiguously at `at` (positional writes: no shared file offset).
fn write_at(f: &std::fs::File, chunks: &[Bytes], mut at: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    for c in chunks {
        f.write_all_at(c, at)?;
        at = at.saturating_add(c.len() as u64);
    }
    Ok(())
}

fn joined(r: std::result::Result<io::Result<()>, tokio::task::JoinError>) -> io::Result<()> {
    r.unwrap_or_else(|e| Err(io::Error::other(e)))
}

fn not_found_as<T>(r: io::Result<T>, e: Error) -> Result<T> {
    r.map_err(|err| {
        if err.kind() == io::ErrorKind::NotFound {
            e
        } else {
            Error::from(err)
        }
    })
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream> {
        let f = not_found_as(File::open(self.blob_path(digest)).await, Error::BlobUnknown)?;
        Ok(read_chunks(Arc::new(f.into_std().await), offset, len))
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        not_found_as(
            fs::remove_file(self.blob_path(digest)).await,
            Error::BlobUnknown,
        )
    }

    async fn upload_start(&self, id: &str) -> Result<()> {
        let path = self.upload_path(id)?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE)
            .open(path)
            .await?;
        Ok(())
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        expected: Option<u64>,
        mut data: ByteStream,
    ) -> Result<u64> {
        let path = self.upload_path(id)?;
        let file = not_found_as(
            OpenOptions::new().write(true).open(&path).await,
            Error::UploadUnknown,
        )?;
        let current = file.metadata().await?.len();
        if current < offset {
            return Err(Error::OffsetMismatch { offset, current });
        }
        if current > offset {
            // Bytes of a chunk that was never acknowledged (see the trait): not part of the upload.
            file.set_len(offset).await?;
        }
        let file = Arc::new(file.into_std().await);
        // The body is gathered into batches of WRITE_BUF; each batch is written by the blocking
        // pool while the next one arrives, so network, hash and disk overlap. No blocking thread
        // ever waits on the network: a client that stalls mid-body holds only this task.
        let mut inflight: Option<tokio::task::JoinHandle<io::Result<()>>> = None;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batch_len: u64 = 0;
        let mut pos = offset;
        let mut received: u64 = 0;
        let mut written: io::Result<()> = Ok(());
        let fed: Result<()> = async {
            while let Some(chunk) = data.next().await {
                let chunk = chunk.map_err(Error::Body)?;
                received = received.saturating_add(chunk.len() as u64);
                if expected.is_some_and(|n| received > n) {
                    break;
                }
                batch_len = batch_len.saturating_add(chunk.len() as u64);
                batch.push(chunk);
                if batch_len >= WRITE_BUF as u64 {
                    if let Some(h) = inflight.take() {
                        written = joined(h.await);
                        if written.is_err() {
                            // Reported below, ahead of whatever the feed concluded.
                            return Ok(());
                        }
                    }
                    let (f, b, at) = (file.clone(), std::mem::take(&mut batch), pos);
                    pos = pos.saturating_add(batch_len);
                    batch_len = 0;
                    inflight = Some(tokio::task::spawn_blocking(move || write_at(&f, &b, at)));
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
            Ok(())
        }
        .await;
        if let Some(h) = inflight.take() {
            let r = joined(h.await);
            if written.is_ok() {
                written = r;
            }
        }
        if written.is_ok() && fed.is_ok() && !batch.is_empty() {
            let (f, b, at) = (file.clone(), std::mem::take(&mut batch), pos);
            written = joined(tokio::task::spawn_blocking(move || write_at(&f, &b, at)).await);
        }
        // A failed write is ours to report (it also ends the feed early), ahead of whatever the
        // feed then concluded about the body.
        match written.map_err(Error::from).and(fed) {
            Ok(()) => Ok(offset + received),
            Err(e) => {
                // Roll back so the chunk is all-or-nothing and the session stays resumable.
                file.set_len(offset)?;
                Err(e)
            }
        }
    }

    async fn upload_len(&self, id: &str) -> Result<Option<u64>> {
        let path = self.upload_path(id)?;
        match fs::metadata(path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn upload_read(&self, id: &str) -> Result<ByteStream> {
        let f = not_found_as(
            File::open(self.upload_path(id)?).await,
            Error::UploadUnknown,
        )?;
        Ok(Box::pin(ReaderStream::with_capacity(f, READ_BUF)))
    }

    async fn upload_commit(&self, id: &str, digest: &Digest) -> Result<u64> {
        let src = self.upload_path(id)?;
        let file = not_found_as(File::open(&src).await, Error::UploadUnknown)?;
        let size = file.metadata().await?.len();
        let dst = self.blob_path(digest);
        if fs::metadata(&dst).await.is_ok() {
            // Content-addressed: identical bytes are already there.
            fs::remove_file(&src).await?;
            return Ok(size);
        }
        file.sync_all().await?;
        drop(file);
        let dir = dst.parent().expect("blob path has a parent");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR)
            .create(dir)
            .await?;
        fs::rename(&src, &dst).await?;
        // Make the rename itself durable.
        File::open(dir).await?.sync_all().await?;
        Ok(size)
    }

    async fn upload_abort(&self, id: &str) -> Result<()> {
        not_found_as(
            fs::remove_file(self.upload_path(id)?).await,
            Error::UploadUnknown,
        )
    }
}
