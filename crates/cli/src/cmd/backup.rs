//! `berth backup` and `berth restore`: a consistent copy of an embedded store taken while its
//! server runs, and putting one back on a stopped server's data dir.
//!
//! A backup directory mirrors a data dir (`metadata.db`, `blobs/<alg>/<xx>/<hex>`, `tls/`,
//! `trust-key-passphrase`) plus `BACKUP.json`, written last, which lists every file with its
//! size and sha256: a backup without it did not finish, and restore checks every file against
//! it before writing anything.
//!
//! Consistency: the database is copied first, with SQLite's online backup API (one read
//! transaction: the database as of one commit, WAL included), then the blob files. Blobs are
//! immutable and appear only by an atomic rename, so every blob the database copy references is
//! on disk when the copy is taken and stays there, since only garbage collection deletes blob
//! files and it does not while a backup holds `DIR/gc.lock` shared (the protocol is described in
//! `berth_storage_embedded::backup`). A referenced blob that cannot be copied fails the backup.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use berth_storage_embedded::backup::{self as snapshot, DATABASE_FILE};
use clap::Args;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::api::ServerArgs;

/// The manifest's name in a backup directory.
const MANIFEST: &str = "BACKUP.json";
const FORMAT: &str = "berth-backup";
const FORMAT_VERSION: u32 = 1;
/// The passphrase sealing server-held keys, when the server generated it (see `berth serve`).
const PASSPHRASE_FILE: &str = "trust-key-passphrase";
/// Where the README explains backups of the distributed store.
const README_DISTRIBUTED: &str = "README.md, \"Backups\" > \"Distributed store\" (pg_dump or PITR for PostgreSQL, bucket \
     versioning or replication for S3)";

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// A new or empty directory for the backup (created 0700). It receives the sealed-key
    /// passphrase file: store it apart from the backup, or protect the backup as a secret.
    pub dest: PathBuf,
    /// The data dir of the server to back up, read directly (on the server's machine, as its
    /// user). The server may be running: the copy is consistent all the same.
    #[arg(long, env = "BERTH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The config file the server runs with: its data_dir (when --data-dir is not given) and its
    /// [store] kind (a distributed store is backed up with PostgreSQL and S3 tools instead).
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A backup directory written by `berth backup` (with its BACKUP.json).
    pub src: PathBuf,
    /// The data dir to restore into; its server must be stopped. It must be new or empty unless
    /// --force.
    #[arg(long, env = "BERTH_DATA_DIR", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Replace a non-empty data dir: its old contents are moved aside to DIR.replaced-<time>
    /// (not deleted).
    #[arg(long)]
    pub force: bool,
}

#[derive(Serialize, Deserialize, Debug)]
struct Manifest {
    format: String,
    version: u32,
    berth_version: String,
    /// UTC, RFC 3339.
    created: String,
    /// The data dir the backup was taken from.
    source: String,
    schema_version: i64,
    passphrase_included: bool,
    files: Vec<FileEntry>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct FileEntry {
    path: String,
    size: u64,
    sha256: String,
}

pub fn backup(a: BackupArgs) -> anyhow::Result<()> {
    if store_is_distributed(a.config.as_deref())? {
        bail!(
            "berth backup copies the embedded store; this server uses the distributed store \
             (PostgreSQL + S3): back up its database and bucket with their own tools, as {README_DISTRIBUTED} describes"
        );
    }
    let dir = match (&a.data_dir, &a.config) {
        (Some(d), _) => d.clone(),
        (None, Some(config)) => data_dir_of(config)?,
        (None, None) if a.server.server.is_some() => bail!(
            "berth backup --server is not available yet: run `berth backup DEST --data-dir DIR` on \
             the server's machine, as its user (it works while the server runs)"
        ),
        (None, None) => bail!(
            "which registry? pass --data-dir DIR (the server's data dir; the server may be running) \
             or --config FILE (the config file it runs with)"
        ),
    };
    backup_data_dir(&a.dest, &dir)
}

/// Whether `BERTH_STORE` or the config file's `[store] kind` says `distributed`.
fn store_is_distributed(config: Option<&Path>) -> anyhow::Result<bool> {
    if let Ok(kind) = std::env::var("BERTH_STORE")
        && !kind.trim().is_empty()
    {
        return Ok(kind.trim() == "distributed");
    }
    let Some(config) = config else {
        return Ok(false);
    };
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("reading config {}", config.display()))?;
    let v: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing config {}", config.display()))?;
    Ok(v.get("store")
        .and_then(|s| s.get("kind"))
        .and_then(|k| k.as_str())
        .is_some_and(|k| k.trim() == "distributed"))
}

/// The data dir `berth serve --config FILE` would use.
fn data_dir_of(config: &Path) -> anyhow::Result<PathBuf> {
    let cfg = crate::config::ServeConfig::resolve(crate::args::ServeArgs {
        config: Some(config.to_path_buf()),
        ..Default::default()
    })?;
    Ok(cfg.data_dir)
}

/// Figures of one backup or restore.
#[derive(Default)]
struct Tally {
    files: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, e: &FileEntry) {
        self.files += 1;
        self.bytes += e.size;
    }
}

fn backup_data_dir(dest: &Path, dir: &Path) -> anyhow::Result<()> {
    let db = dir.join(DATABASE_FILE);
    if !db.is_file() {
        let hint = if dir.join("tls").is_dir() {
            " (a node of a distributed store keeps only TLS material there: see \
             README.md, \"Backups\")"
        } else {
            ""
        };
        bail!(
            "{} is not a berth data dir: it has no {DATABASE_FILE}{hint}",
            dir.display()
        );
    }
    prepare_dest(dest, dir)?;
    let lock = snapshot::BackupLock::acquire(dir, || {
        eprintln!("waiting for a garbage collection run on this data dir to finish deleting blobs")
    })
    .with_context(|| format!("taking the backup lock in {}", dir.display()))?;
    let snap = snapshot::snapshot_database(&db, &dest.join(DATABASE_FILE))
        .with_context(|| format!("copying {} (SQLite online backup)", db.display()))?;
    let mut files = vec![entry_of(dest, Path::new(DATABASE_FILE))?];
    let mut tally = Tally::default();
    tally.add(&files[0]);

    // Blobs after the database: each file the snapshot references exists by now.
    let copied = copy_blobs(dir, dest, &mut files, &mut tally)?;
    let mut missing = Vec::new();
    for (digest, size) in &snap.referenced_blobs {
        match copied.get(digest) {
            Some(got) if got == size => {}
            Some(got) => bail!(
                "blob {digest} in {} has {got} bytes, but the database records {size}: the data \
                 dir is damaged; nothing usable was written to {}",
                dir.display(),
                dest.display()
            ),
            None => missing.push(digest.as_str()),
        }
    }
    if !missing.is_empty() {
        bail!(
            "the database references {} blob(s) that {} does not hold (first: {}); the data dir \
             is damaged, the backup in {} is incomplete and has no {MANIFEST}",
            missing.len(),
            dir.join("blobs").display(),
            missing[0],
            dest.display()
        );
    }
    // Nothing after this point is a blob: garbage collection may go on.
    drop(lock);

    let tls = dir.join("tls");
    if tls.is_dir() {
        copy_tree(dir, Path::new("tls"), dest, &mut files, &mut tally)?;
    }
    let passphrase = dir.join(PASSPHRASE_FILE);
    let passphrase_included = passphrase.is_file();
    if passphrase_included {
        let e = copy_file(
            &passphrase,
            &dest.join(PASSPHRASE_FILE),
            Path::new(PASSPHRASE_FILE),
        )?;
        tally.add(&e);
        files.push(e);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        berth_version: env!("CARGO_PKG_VERSION").into(),
        created: rfc3339_now(),
        source: std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.to_path_buf())
            .display()
            .to_string(),
        schema_version: snap.schema_version,
        passphrase_included,
        files,
    };
    write_manifest(dest, &manifest)?;
    sync_tree(dest)?;
    println!(
        "backed up {} into {}: {} files, {} bytes (the database as of one moment: {} \
         repositories, {} manifests, {} tags, {} repositories with trust data; {} blobs it \
         references, all copied)",
        dir.display(),
        dest.display(),
        tally.files,
        tally.bytes,
        snap.repositories,
        snap.manifests,
        snap.tags,
        snap.trust_guns,
        snap.referenced_blobs.len()
    );
    if passphrase_included {
        eprintln!(
            "WARNING: {} holds {PASSPHRASE_FILE}, the passphrase that unseals the server's trust \
             and token-signing keys, beside the database they are sealed in. Store it apart from \
             the backup (and delete it from there), or keep the whole backup as protected as \
             the keys themselves.",
            dest.display()
        );
    } else {
        eprintln!(
            "note: {} has no {PASSPHRASE_FILE}: the server takes BERTH_TRUST_KEY_PASSPHRASE from \
             its environment. Keep that value safe and apart from this backup: without it the \
             restored server cannot unseal its trust and token-signing keys.",
            dir.display()
        );
    }
    Ok(())
}

/// Creates `dest` 0700, or accepts an existing empty directory (tightened to 0700). Refuses a
/// non-empty one, and one inside the data dir (it would be copied into itself).
fn prepare_dest(dest: &Path, dir: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => {
            let mut entries =
                std::fs::read_dir(dest).with_context(|| format!("reading {}", dest.display()))?;
            if entries.next().is_some() {
                bail!(
                    "{} is not empty: back up into a new or empty directory (an earlier backup is \
                     never overwritten)",
                    dest.display()
                );
            }
            std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("making {} private", dest.display()))?;
        }
        Ok(_) => bail!("{} exists and is not a directory", dest.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dest)
                .with_context(|| format!("creating {}", dest.display()))?;
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", dest.display())),
    }
    let (d, s) = (std::fs::canonicalize(dest)?, std::fs::canonicalize(dir)?);
    if d.starts_with(&s) {
        bail!(
            "{} is inside the data dir {}: put the backup elsewhere",
            dest.display(),
            dir.display()
        );
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Streams `src` into the new file `dst` (0600), hashing on the way; fsyncs it.
fn copy_file(src: &Path, dst: &Path, rel: &Path) -> anyhow::Result<FileEntry> {
    let mut from =
        std::fs::File::open(src).with_context(|| format!("reading {}", src.display()))?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .with_context(|| format!("creating {}", dst.display()))?;
    let (size, sha256) = copy_hashing(&mut from, Some(&mut to))
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    to.sync_all()
        .with_context(|| format!("syncing {}", dst.display()))?;
    Ok(FileEntry {
        path: rel_str(rel)?,
        size,
        sha256,
    })
}

/// Reads `from` to the end, writing it to `to` if given; returns its size and sha256.
fn copy_hashing(
    from: &mut impl Read,
    mut to: Option<&mut std::fs::File>,
) -> std::io::Result<(u64, String)> {
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        if let Some(to) = to.as_deref_mut() {
            to.write_all(&buf[..n])?;
        }
        size += n as u64;
    }
    Ok((size, hex(&h.finalize())))
}

/// The manifest entry of a file already in the backup.
fn entry_of(dest: &Path, rel: &Path) -> anyhow::Result<FileEntry> {
    let path = dest.join(rel);
    let mut f =
        std::fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
    let (size, sha256) =
        copy_hashing(&mut f, None).with_context(|| format!("reading {}", path.display()))?;
    Ok(FileEntry {
        path: rel_str(rel)?,
        size,
        sha256,
    })
}

fn rel_str(rel: &Path) -> anyhow::Result<String> {
    rel.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{} is not UTF-8", rel.display()))
}

fn mkdir_private(path: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Whether `name` is a blob file's name under `blobs/<alg>/<prefix>/`: the digest's lowercase hex
/// (temporary and foreign files are not).
fn blob_name(alg: &str, prefix: &str, name: &str) -> bool {
    let len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return false,
    };
    name.len() == len
        && name.starts_with(prefix)
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Copies every committed blob file of `dir` into `dest`, checking each against its digest.
/// Returns digest -> size of what was copied.
fn copy_blobs(
    dir: &Path,
    dest: &Path,
    files: &mut Vec<FileEntry>,
    tally: &mut Tally,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut copied = BTreeMap::new();
    let root = dir.join("blobs");
    let Ok(algs) = std::fs::read_dir(&root) else {
        return Ok(copied);
    };
    for alg in algs {
        let alg = alg?;
        let alg_name = alg.file_name().to_string_lossy().into_owned();
        if !alg.file_type()?.is_dir() || !matches!(alg_name.as_str(), "sha256" | "sha512") {
            continue;
        }
        for prefix in std::fs::read_dir(alg.path())? {
            let prefix = prefix?;
            let prefix_name = prefix.file_name().to_string_lossy().into_owned();
            if !prefix.file_type()?.is_dir() || prefix_name.len() != 2 {
                continue;
            }
            for blob in std::fs::read_dir(prefix.path())? {
                let blob = blob?;
                let name = blob.file_name().to_string_lossy().into_owned();
                if !blob_name(&alg_name, &prefix_name, &name) || !blob.file_type()?.is_file() {
                    continue;
                }
                let rel: PathBuf = ["blobs", &alg_name, &prefix_name, &name].iter().collect();
                let src = blob.path();
                let mut from = match std::fs::File::open(&src) {
                    Ok(f) => f,
                    // Deleted since it was listed: only a blob nothing references can go (the
                    // referenced ones are checked against the snapshot afterwards).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e).with_context(|| format!("reading {}", src.display())),
                };
                mkdir_private(dest.join(&rel).parent().expect("a blob path has a parent"))?;
                let dst = dest.join(&rel);
                let mut to = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&dst)
                    .with_context(|| format!("creating {}", dst.display()))?;
                let (size, sha256) = if alg_name == "sha256" {
                    copy_hashing(&mut from, Some(&mut to))
                } else {
                    copy_hashing_sha512(&mut from, &mut to, &name)
                }
                .with_context(|| format!("copying {}", src.display()))?;
                if alg_name == "sha256" && sha256 != name {
                    bail!(
                        "blob {} is corrupt: its content hashes to sha256:{sha256}; the data dir \
                         is damaged (no {MANIFEST} was written to {})",
                        src.display(),
                        dest.display()
                    );
                }
                to.sync_all()
                    .with_context(|| format!("syncing {}", dst.display()))?;
                let e = FileEntry {
                    path: rel_str(&rel)?,
                    size,
                    sha256,
                };
                tally.add(&e);
                files.push(e);
                copied.insert(format!("{alg_name}:{name}"), size);
            }
        }
    }
    Ok(copied)
}

/// [`copy_hashing`] for a sha512 blob: also checks the content against its sha512 name.
fn copy_hashing_sha512(
    from: &mut std::fs::File,
    to: &mut std::fs::File,
    name: &str,
) -> std::io::Result<(u64, String)> {
    struct Tee<'a, R> {
        inner: &'a mut R,
        h: sha2::Sha512,
    }
    impl<R: Read> Read for Tee<'_, R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.h.update(&buf[..n]);
            Ok(n)
        }
    }
    let mut tee = Tee {
        inner: from,
        h: sha2::Sha512::new(),
    };
    let out = copy_hashing(&mut tee, Some(to))?;
    let got = hex(&tee.h.finalize());
    if got != name {
        return Err(std::io::Error::other(format!(
            "the blob is corrupt: its content hashes to sha512:{got}"
        )));
    }
    Ok(out)
}

/// Copies the regular files under `dir/rel` (recursively) into `dest/rel`, all 0600.
fn copy_tree(
    dir: &Path,
    rel: &Path,
    dest: &Path,
    files: &mut Vec<FileEntry>,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    mkdir_private(&dest.join(rel))?;
    let src = dir.join(rel);
    for e in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        let e = e?;
        let child = rel.join(e.file_name());
        let ft = e.file_type()?;
        if ft.is_dir() {
            copy_tree(dir, &child, dest, files, tally)?;
        } else if ft.is_file() {
            let entry = copy_file(&dir.join(&child), &dest.join(&child), &child)?;
            tally.add(&entry);
            files.push(entry);
        }
    }
    Ok(())
}

/// Writes `BACKUP.json` (0600) by rename, so it appears only whole.
fn write_manifest(dest: &Path, m: &Manifest) -> anyhow::Result<()> {
    let tmp = dest.join(format!(".{MANIFEST}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let mut body = serde_json::to_vec_pretty(m)?;
    body.push(b'\n');
    f.write_all(&body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dest.join(MANIFEST))
        .with_context(|| format!("writing {}", dest.join(MANIFEST).display()))?;
    Ok(())
}

/// fsyncs every directory under (and including) `root`, so the files' names are durable.
fn sync_tree(root: &Path) -> anyhow::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            }
        }
        std::fs::File::open(&d)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", d.display()))?;
    }
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The current UTC time as RFC 3339 (`2026-12-01T05:50:00Z`).
fn rfc3339_now() -> String {
    let secs = unix_now();
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian; Howard Hinnant's method).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ------------------------------------------------------------------------------------------------
// restore

pub fn restore(a: RestoreArgs) -> anyhow::Result<()> {
    let (src, dir) = (&a.src, &a.data_dir);
    let mut manifest = read_manifest(src)?;
    // The target is checked before the (long) verification, and nothing is written until both
    // pass. Held to the end: no server may start on the directory meanwhile.
    let existing = match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => true,
        Ok(_) => bail!("{} exists and is not a directory", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let old_lock = if existing {
        let lock = super::serve::lock_data_dir(dir).map_err(|e| {
            e.context("berth restore writes only to a STOPPED server's data dir: stop it first")
        })?;
        let others = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter(|e| e.file_name() != "berth.lock")
            .count();
        if others > 0 && !a.force {
            bail!(
                "{} is not empty ({others} entries): restore into a new or empty directory, or \
                 pass --force to replace it (its contents are moved aside, not deleted)",
                dir.display()
            );
        }
        Some((lock, others))
    } else {
        None
    };
    let tally = verify_backup(src, &mut manifest)?;

    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    mkdir_private(&parent)?;
    let name = dir
        .file_name()
        .with_context(|| format!("{} has no directory name", dir.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = parent.join(format!(".{name}.restore-{}", std::process::id()));
    let written = write_restore(src, &manifest, &tmp);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context("nothing was restored"));
    }
    let aside = match &old_lock {
        Some(_) => {
            let aside = parent.join(format!("{name}.replaced-{}", unix_now()));
            std::fs::rename(dir, &aside).with_context(|| {
                format!(
                    "moving the old {} aside to {}",
                    dir.display(),
                    aside.display()
                )
            })?;
            Some(aside)
        }
        None => None,
    };
    if let Err(e) = std::fs::rename(&tmp, dir) {
        bail!(
            "moving the restored data dir {} to {}: {e} (did a server start there meanwhile?); the \
             restored copy is left in {}{}",
            tmp.display(),
            dir.display(),
            tmp.display(),
            aside
                .as_ref()
                .map(|a| format!(", the old data dir in {}", a.display()))
                .unwrap_or_default()
        );
    }
    std::fs::File::open(&parent)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", parent.display()))?;
    let replaced = match (aside, &old_lock) {
        // Only the lock file was there: nothing worth keeping.
        (Some(aside), Some((_, 0))) => {
            let _ = std::fs::remove_dir_all(&aside);
            None
        }
        (aside, _) => aside,
    };
    let snap = snapshot::summarise_database(&dir.join(DATABASE_FILE))
        .context("reading the restored database")?;
    println!(
        "restored {} (taken {} from {}) into {}: {} files, {} bytes, every one checked against \
         {MANIFEST}; {} repositories, {} tags, {} repositories with trust data",
        src.display(),
        manifest.created,
        manifest.source,
        dir.display(),
        tally.files,
        tally.bytes,
        snap.repositories,
        snap.tags,
        snap.trust_guns
    );
    if let Some(aside) = replaced {
        eprintln!(
            "the previous contents of {} are in {} (delete them once the restored server works)",
            dir.display(),
            aside.display()
        );
    }
    if !manifest.passphrase_included {
        eprintln!(
            "note: the backup has no {PASSPHRASE_FILE} (it was kept apart, or the server used \
             BERTH_TRUST_KEY_PASSPHRASE): put that file back into {} (mode 0600), or start the \
             server with the same BERTH_TRUST_KEY_PASSPHRASE, or it cannot unseal its keys",
            dir.display()
        );
    }
    Ok(())
}

fn read_manifest(src: &Path) -> anyhow::Result<Manifest> {
    let path = src.join(MANIFEST);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} is not a complete berth backup: it has no {MANIFEST} (written last: the backup \
             did not finish, or this is not a backup); nothing was restored",
            src.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let m: Manifest = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is damaged (not a backup manifest); nothing was restored",
            path.display()
        )
    })?;
    if m.format != FORMAT || m.version != FORMAT_VERSION {
        bail!(
            "{} is a {:?} version {} manifest; this berth reads {FORMAT:?} version \
             {FORMAT_VERSION}; nothing was restored",
            path.display(),
            m.format,
            m.version
        );
    }
    let mut seen = BTreeSet::new();
    for f in &m.files {
        let p = Path::new(&f.path);
        let plain = p.components().all(|c| matches!(c, Component::Normal(_)));
        let top = p.components().next().and_then(|c| c.as_os_str().to_str());
        let known = matches!(
            top,
            Some(DATABASE_FILE) | Some("blobs") | Some("tls") | Some(PASSPHRASE_FILE)
        );
        if !plain || !known || !seen.insert(f.path.as_str()) {
            bail!(
                "{} lists {:?}, which is no file of a data dir (or listed twice); nothing was \
                 restored",
                path.display(),
                f.path
            );
        }
    }
    if !seen.contains(DATABASE_FILE) {
        bail!(
            "{} lists no {DATABASE_FILE}; nothing was restored",
            path.display()
        );
    }
    Ok(m)
}

/// Why a file of the backup does not match its manifest entry, if it does not.
fn mismatch(src: &Path, e: &FileEntry) -> anyhow::Result<Option<String>> {
    let path = src.join(&e.path);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Some("is missing".into()));
        }
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    if !meta.is_file() {
        return Ok(Some("is not a regular file".into()));
    }
    if meta.len() != e.size {
        return Ok(Some(format!(
            "has {} bytes, {MANIFEST} says {}",
            meta.len(),
            e.size
        )));
    }
    let mut f =
        std::fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
    let (_, sha256) =
        copy_hashing(&mut f, None).with_context(|| format!("reading {}", path.display()))?;
    Ok(blob_check(e, &sha256))
}

/// The sha256 of a file against its entry, and a sha256 blob's content against its name (so an
/// altered blob with an altered manifest is still caught).
fn blob_check(e: &FileEntry, sha256: &str) -> Option<String> {
    if sha256 != e.sha256 {
        return Some(format!("does not match its sha256 in {MANIFEST}"));
    }
    let p = Path::new(&e.path);
    if p.starts_with("blobs/sha256") && p.file_name().and_then(|n| n.to_str()) != Some(sha256) {
        return Some("does not match its digest".into());
    }
    None
}

/// Checks every file of the backup against `m`. The passphrase file alone may be missing (the
/// backup's warning says to keep it apart): it is then dropped from `m`.
fn verify_backup(src: &Path, m: &mut Manifest) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    if m.passphrase_included && !src.join(PASSPHRASE_FILE).exists() {
        m.files.retain(|e| e.path != PASSPHRASE_FILE);
        m.passphrase_included = false;
    }
    for e in &m.files {
        if let Some(why) = mismatch(src, e)? {
            bail!(
                "backup {} is damaged: {} {why}; nothing was restored",
                src.display(),
                e.path
            );
        }
        tally.add(e);
    }
    Ok(tally)
}

/// Writes the backup's files into the new directory `tmp` (0700 dirs, 0600 files, as `berth
/// serve` keeps a data dir), checking each again as it is copied, and syncs it all.
fn write_restore(src: &Path, m: &Manifest, tmp: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    for e in &m.files {
        let rel = Path::new(&e.path);
        if let Some(p) = rel.parent() {
            mkdir_private(&tmp.join(p))?;
        }
        let copied = copy_file(&src.join(rel), &tmp.join(rel), rel)?;
        let why = if copied.size != e.size {
            Some(format!(
                "has {} bytes, {MANIFEST} says {}",
                copied.size, e.size
            ))
        } else {
            blob_check(e, &copied.sha256)
        };
        if let Some(why) = why {
            bail!(
                "backup {} changed while it was restored: {} {why}",
                src.display(),
                e.path
            );
        }
    }
    sync_tree(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_stay_inside_a_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let write = |files: &[&str]| {
            let m = Manifest {
                format: FORMAT.into(),
                version: FORMAT_VERSION,
                berth_version: "0".into(),
                created: rfc3339_now(),
                source: "/x".into(),
                schema_version: 1,
                passphrase_included: false,
                files: files
                    .iter()
                    .map(|p| FileEntry {
                        path: (*p).into(),
                        size: 0,
                        sha256: String::new(),
                    })
                    .collect(),
            };
            std::fs::write(dir.path().join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
            read_manifest(dir.path())
        };
        assert!(write(&["metadata.db", "blobs/sha256/ab/ab12", "tls/ca.crt"]).is_ok());
        for bad in [
            &["metadata.db", "../etc/passwd"][..],
            &["metadata.db", "/etc/passwd"],
            &["metadata.db", "blobs/../../x"],
            &["metadata.db", "berth.lock"],
            &["metadata.db", "metadata.db"],
            &["tls/ca.crt"],
        ] {
            let err = write(bad).unwrap_err().to_string();
            assert!(err.contains("nothing was restored"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn rfc3339_is_utc_calendar_time() {
        let s = rfc3339_now();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T', "{s}");
        let year: i32 = s[..4].parse().unwrap();
        assert!((2025..3000).contains(&year), "{s}");
    }
}
