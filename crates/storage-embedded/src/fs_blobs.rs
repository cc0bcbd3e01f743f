use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use berth_oci::{Algorithm, Digest};
use berth_storage::{BlobStore, ByteStream, Error, Result, StoredBlob, TempObject, UploadPart};
use bytes::Bytes;
use futures::StreamExt;
use tokio::fs::{self, File, OpenOptions};

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

    /// An upload's directory, holding one file per part. (Before part lists, an upload was one
    /// file at this path; such a session is only ever aborted.)
    fn upload_path(&self, id: &str) -> Result<PathBuf> {
        // Ids come from URLs; allow only what we generate (uuid text) so no path can escape.
        if !UploadPart::valid_name(id) {
            return Err(Error::UploadUnknown);
        }
        Ok(self.root.join("uploads").join(id))
    }

    fn part_path(&self, id: &str, part: &str) -> Result<PathBuf> {
        let dir = self.upload_path(id)?;
        if !UploadPart::valid_name(part) {
            return Err(Error::Backend(format!("invalid upload part name {part:?}")));
        }
        Ok(dir.join(part))
    }

    async fn check_upload(&self, id: &str) -> Result<PathBuf> {
        let dir = self.upload_path(id)?;
        match fs::metadata(&dir).await {
            Ok(m) if m.is_dir() => Ok(dir),
            Ok(_) => Err(Error::UploadUnknown),
            Err(e) => not_found_as(Err(e), Error::UploadUnknown),
        }
    }
}

fn missing_part(p: &UploadPart, why: impl std::fmt::Display) -> Error {
    Error::Backend(format!(
        "upload part {} ({} bytes at {}): {why}",
        p.name, p.size, p.offset
    ))
}

/// Opens a recorded part, checking it holds exactly its recorded size.
fn open_part(dir: &Path, p: &UploadPart) -> Result<std::fs::File> {
    let f = std::fs::File::open(dir.join(&p.name)).map_err(|e| missing_part(p, e))?;
    let len = f.metadata()?.len();
    if len != p.size {
        return Err(missing_part(p, format!("{len} bytes stored")));
    }
    Ok(f)
}

/// Builds the blob file from `parts` in `dir` and returns its path: the first part's file with
/// the others appended (copy_file_range: no pass through user space). The first part is cut
/// back to its recorded size first, so a commit cut short and retried builds the same file.
fn assemble(dir: &Path, parts: &[UploadPart]) -> Result<PathBuf> {
    use std::io::{Seek, SeekFrom};
    let Some((first, rest)) = parts.split_first() else {
        let path = dir.join(".empty");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PRIVATE_FILE)
            .open(&path)?;
        f.sync_all()?;
        return Ok(path);
    };
    let path = dir.join(&first.name);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| missing_part(first, e))?;
    let len = out.metadata()?.len();
    if len < first.size {
        return Err(missing_part(first, format!("{len} bytes stored")));
    }
    out.set_len(first.size)?;
    out.seek(SeekFrom::Start(first.size))?;
    for p in rest {
        let f = open_part(dir, p)?;
        let copied = io::copy(&mut io::Read::take(f, p.size), &mut out)?;
        if copied != p.size {
            return Err(missing_part(p, format!("{copied} bytes read")));
        }
    }
    out.sync_all()?;
    Ok(path)
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

fn mtime(m: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    m.mtime()
}

/// A directory's entries as (name, metadata), sorted by name; names that are not UTF-8 are
/// kept lossily (they can only be leftovers).
fn sorted_entries(dir: &Path) -> io::Result<Vec<(String, std::fs::Metadata)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry?;
        let meta = match entry.metadata() {
            Ok(m) => m,
            // Gone meanwhile (a commit or an abort): nothing to list.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        out.push((entry.file_name().to_string_lossy().into_owned(), meta));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The blob a path under `blobs/` names (`<algorithm>/<first two hex>/<hex>`), if any.
fn blob_at(alg: &str, shard: &str, name: &str) -> Option<Digest> {
    let d: Digest = format!("{alg}:{name}").parse().ok()?;
    (d.hex().get(..2) == Some(shard) && d.algorithm().as_str() == alg).then_some(d)
}

/// Stored blobs after `after`, at most `limit`, walking the shard directories in order (both
/// algorithm names and hex sort as the digest text does).
fn list_blobs_in(root: &Path, after: Option<&Digest>, limit: usize) -> io::Result<Vec<StoredBlob>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    for (alg, am) in sorted_entries(root)? {
        if !am.is_dir() || after.is_some_and(|a| alg.as_str() < a.algorithm().as_str()) {
            continue;
        }
        let same_alg = after.filter(|a| a.algorithm().as_str() == alg);
        for (shard, sm) in sorted_entries(&root.join(&alg))? {
            if !sm.is_dir()
                || same_alg.is_some_and(|a| shard.as_str() < a.hex().get(..2).unwrap_or(""))
            {
                continue;
            }
            for (name, m) in sorted_entries(&root.join(&alg).join(&shard))? {
                if !m.is_file() {
                    continue;
                }
                let Some(digest) = blob_at(&alg, &shard, &name) else {
                    continue;
                };
                if after.is_some_and(|a| &digest <= a) {
                    continue;
                }
                out.push(StoredBlob {
                    digest,
                    size: m.len(),
                    modified: mtime(&m),
                });
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// Uploads with anything stored: a directory per upload (the last write is the newest of the
/// directory and its parts), or one file for an upload from before part lists.
fn list_uploads_in(dir: &Path) -> io::Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for (id, m) in sorted_entries(dir)? {
        if !UploadPart::valid_name(&id) {
            continue;
        }
        let mut modified = mtime(&m);
        if m.is_dir() {
            for (_, pm) in sorted_entries(&dir.join(&id))? {
                modified = modified.max(mtime(&pm));
            }
        }
        out.push((id, modified));
    }
    Ok(out)
}

fn size_of_tree(path: &Path, m: &std::fs::Metadata) -> io::Result<(u64, i64)> {
    if !m.is_dir() {
        return Ok((m.len(), mtime(m)));
    }
    let (mut size, mut modified) = (0u64, mtime(m));
    for (name, em) in sorted_entries(path)? {
        let (s, t) = size_of_tree(&path.join(name), &em)?;
        size = size.saturating_add(s);
        modified = modified.max(t);
    }
    Ok((size, modified))
}

/// Whatever is under `blobs/` and `uploads/` that names no blob and no upload: a file an
/// interrupted write (or a hand) left beside the blobs, an upload entry with a name the
/// registry never makes. Names are relative to the store's root.
fn list_temp_in(root: &Path) -> io::Result<Vec<TempObject>> {
    let mut out = Vec::new();
    let mut push = |name: String, path: &Path, m: &std::fs::Metadata| -> io::Result<()> {
        let (size, modified) = size_of_tree(path, m)?;
        out.push(TempObject {
            name,
            size,
            modified,
        });
        Ok(())
    };
    let blobs = root.join("blobs");
    for (alg, am) in sorted_entries(&blobs)? {
        let alg_path = blobs.join(&alg);
        if !am.is_dir() || Algorithm::parse(&alg).is_err() {
            push(format!("blobs/{alg}"), &alg_path, &am)?;
            continue;
        }
        for (shard, sm) in sorted_entries(&alg_path)? {
            let shard_path = alg_path.join(&shard);
            let shard_ok = shard.len() == 2
                && shard
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !sm.is_dir() || !shard_ok {
                push(format!("blobs/{alg}/{shard}"), &shard_path, &sm)?;
                continue;
            }
            for (name, m) in sorted_entries(&shard_path)? {
                if m.is_file() && blob_at(&alg, &shard, &name).is_some() {
                    continue;
                }
                push(
                    format!("blobs/{alg}/{shard}/{name}"),
                    &shard_path.join(&name),
                    &m,
                )?;
            }
        }
    }
    let uploads = root.join("uploads");
    for (id, m) in sorted_entries(&uploads)? {
        if !UploadPart::valid_name(&id) {
            push(format!("uploads/{id}"), &uploads.join(&id), &m)?;
        }
    }
    Ok(out)
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
        fs::DirBuilder::new().mode(PRIVATE_DIR).create(path).await?;
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
        let path = self.part_path(id, part)?;
        // A fresh name per chunk: a second write under one name is a caller's bug.
        let file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE)
            .open(&path)
            .await
        {
            Ok(f) => f,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(Error::UploadUnknown);
            }
            Err(e) => return Err(e.into()),
        };
        let file = Arc::new(file.into_std().await);
        // The body is gathered into batches of WRITE_BUF; each batch is written by the blocking
        // pool while the next one arrives, so network, hash and disk overlap. No blocking thread
        // ever waits on the network: a client that stalls mid-body holds only this task.
        let mut inflight: Option<tokio::task::JoinHandle<io::Result<()>>> = None;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batch_len: u64 = 0;
        let mut pos: u64 = 0;
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
            Ok(()) => Ok(received),
            Err(e) => {
                // The chunk is all-or-nothing: nothing stays under its name.
                drop(file);
                if let Err(rm) = fs::remove_file(&path).await {
                    tracing::warn!(error = %rm, path = %path.display(), "removing a failed upload part");
                }
                Err(e)
            }
        }
    }

    async fn upload_exists(&self, id: &str) -> Result<bool> {
        let path = self.upload_path(id)?;
        match fs::metadata(path).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn upload_read(&self, id: &str, parts: &[UploadPart]) -> Result<ByteStream> {
        let dir = self.check_upload(id).await?;
        UploadPart::total(parts)?;
        // Each part is opened when the stream reaches it: a long list holds one file at a time.
        let stream = futures::stream::iter(parts.to_vec())
            .then(move |p| {
                let dir = dir.clone();
                async move {
                    let size = p.size;
                    let f = tokio::task::spawn_blocking(move || open_part(&dir, &p))
                        .await
                        .map_err(io::Error::other)?
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    Ok::<_, io::Error>(read_chunks(Arc::new(f), 0, size))
                }
            })
            .flat_map(|r| match r {
                Ok(s) => s,
                Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
            });
        Ok(Box::pin(stream))
    }

    async fn upload_commit(&self, id: &str, parts: &[UploadPart], digest: &Digest) -> Result<u64> {
        let dir = self.check_upload(id).await?;
        let size = UploadPart::total(parts)?;
        let dst = self.blob_path(digest);
        if fs::metadata(&dst).await.is_err() {
            let (src_dir, list) = (dir.clone(), parts.to_vec());
            let src = tokio::task::spawn_blocking(move || assemble(&src_dir, &list))
                .await
                .map_err(io::Error::other)??;
            let blob_dir = dst.parent().expect("blob path has a parent");
            fs::DirBuilder::new()
                .recursive(true)
                .mode(PRIVATE_DIR)
                .create(blob_dir)
                .await?;
            fs::rename(&src, &dst).await?;
            // Make the rename itself durable.
            File::open(blob_dir).await?.sync_all().await?;
        }
        // Content-addressed: identical bytes already there are kept as they are.
        fs::remove_dir_all(&dir).await?;
        Ok(size)
    }

    async fn upload_abort(&self, id: &str) -> Result<()> {
        let path = self.upload_path(id)?;
        let meta = not_found_as(fs::symlink_metadata(&path).await, Error::UploadUnknown)?;
        if meta.is_dir() {
            fs::remove_dir_all(path).await?;
        } else {
            // An upload from before part lists: one file.
            fs::remove_file(path).await?;
        }
        Ok(())
    }

    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<StoredBlob>> {
        let (root, after) = (self.root.join("blobs"), after.cloned());
        let listed =
            tokio::task::spawn_blocking(move || list_blobs_in(&root, after.as_ref(), limit))
                .await
                .map_err(io::Error::other)??;
        Ok(listed)
    }

    async fn list_uploads(&self) -> Result<Vec<(String, i64)>> {
        let dir = self.root.join("uploads");
        let listed = tokio::task::spawn_blocking(move || list_uploads_in(&dir))
            .await
            .map_err(io::Error::other)??;
        Ok(listed)
    }

    async fn list_temp(&self) -> Result<Vec<TempObject>> {
        let root = self.root.clone();
        let listed = tokio::task::spawn_blocking(move || list_temp_in(&root))
            .await
            .map_err(io::Error::other)??;
        Ok(listed)
    }

    async fn remove_temp(&self, name: &str) -> Result<()> {
        // Only what the listing names now: never a blob, an upload or a path outside.
        let root = self.root.clone();
        let listed = tokio::task::spawn_blocking(move || list_temp_in(&root))
            .await
            .map_err(io::Error::other)??;
        if !listed.iter().any(|t| t.name == name) {
            return Err(Error::Backend(format!("{name:?} is not a temporary file")));
        }
        let path = self.root.join(name);
        let meta = fs::symlink_metadata(&path).await?;
        if meta.is_dir() {
            fs::remove_dir_all(&path).await?;
        } else {
            fs::remove_file(&path).await?;
        }
        Ok(())
    }
}
