//! Online backups of a data dir that a running server uses: a consistent copy of the metadata
//! database, and the lock that keeps garbage collection from deleting blobs meanwhile.
//!
//! # The gc.lock protocol (backup ⟷ garbage collection)
//!
//! A backup copies the database first and the blob files after it, so every blob the copy
//! references must still be on disk when its turn comes. Blobs are immutable and only garbage
//! collection deletes them, so the two agree through one file, `DIR/gc.lock` (0600, created by
//! whichever side comes first, never removed):
//! - a backup holds a SHARED lock on it (`File::lock_shared`, an `flock`) from before its
//!   database snapshot until its last blob is copied ([`BackupLock::acquire`]); several backups
//!   may run at once;
//! - garbage collection takes an EXCLUSIVE lock with `try_lock` ([`GcLock::try_acquire`]) before
//!   it deletes any blob file, and holds it until its deletions are done; when the lock is
//!   refused (a backup holds it), it deletes no blob in that run (it may still do everything
//!   else) and tries again next time.
//!
//! A backup that finds GC holding the lock waits for it (GC's deletions are then complete, and
//! the snapshot taken after sees their effect on the database). The locks are released by the
//! kernel when the process dies, so a killed backup never blocks GC for good.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use berth_storage::{Error, Result};
use rusqlite::{Connection, OpenFlags};

/// The data dir's metadata database (SQLite, WAL mode).
pub const DATABASE_FILE: &str = "metadata.db";
/// The file backups and garbage collection lock (see the module documentation).
pub const GC_LOCK_FILE: &str = "gc.lock";

fn open_gc_lock(dir: &Path) -> io::Result<(File, PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(GC_LOCK_FILE);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)?;
    Ok((f, path))
}

/// A backup's shared hold on `DIR/gc.lock`: while it lives, garbage collection deletes no blob.
#[derive(Debug)]
pub struct BackupLock {
    _file: File,
}

impl BackupLock {
    /// Takes the shared lock; when garbage collection holds it, calls `waiting` once and blocks
    /// until GC is done.
    pub fn acquire(dir: &Path, waiting: impl FnOnce()) -> io::Result<BackupLock> {
        let (f, path) = open_gc_lock(dir)?;
        match f.try_lock_shared() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                waiting();
                f.lock_shared()?;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("locking {}: {e}", path.display()),
                ));
            }
        }
        Ok(BackupLock { _file: f })
    }
}

/// Garbage collection's exclusive hold on `DIR/gc.lock`: blob files may be deleted while it lives.
#[derive(Debug)]
pub struct GcLock {
    _file: File,
}

impl GcLock {
    /// The exclusive lock, or `None` while a backup holds the shared one (then delete no blob).
    pub fn try_acquire(dir: &Path) -> io::Result<Option<GcLock>> {
        let (f, _) = open_gc_lock(dir)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(GcLock { _file: f })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// What a database snapshot holds, read from the copy itself.
#[derive(Debug, Clone, Default)]
pub struct DbSnapshot {
    /// Every blob the copy references (digest text, recorded size), each once.
    pub referenced_blobs: Vec<(String, u64)>,
    pub repositories: u64,
    pub manifests: u64,
    pub tags: u64,
    /// Repositories with trust data (GUNs).
    pub trust_guns: u64,
    /// The schema version (`PRAGMA user_version`).
    pub schema_version: i64,
}

fn sqlite(what: &str, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => Error::NoSpace(format!("{what}: sqlite: {e}")),
        _ => Error::Backend(format!("{what}: sqlite: {e}")),
    }
}

/// Copies the database at `src` (which a server may be writing) into the new file `dst` with
/// SQLite's online backup API, as one consistent snapshot: the copy is made in a single step,
/// inside one read transaction of the source, so it is the database as of one commit, WAL
/// included. Writers go on meanwhile (WAL readers do not block them). The copy is switched to a
/// rollback journal (one self-contained file; the server turns WAL back on when it opens it),
/// checked with `quick_check`, and summarised.
pub fn snapshot_database(src: &Path, dst: &Path) -> Result<DbSnapshot> {
    use std::os::unix::fs::OpenOptionsExt;
    // No CREATE: a missing source database is an error, not a new empty one.
    let from = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite(&format!("opening {}", src.display()), e))?;
    from.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(|e| sqlite("busy timeout", e))?;
    // Created private first: SQLite would create it 0644, and it holds password hashes and
    // sealed keys.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .map_err(|e| Error::Backend(format!("creating {}: {e}", dst.display())))?;
    let mut to =
        Connection::open(dst).map_err(|e| sqlite(&format!("opening {}", dst.display()), e))?;
    {
        let backup = rusqlite::backup::Backup::new(&from, &mut to)
            .map_err(|e| sqlite("starting the online backup", e))?;
        let mut waited = 0u32;
        loop {
            // -1: every page in one step, i.e. one read transaction on the source. Smaller
            // steps would let a write in between restart the copy (and never finish under a
            // steady stream of pushes).
            match backup
                .step(-1)
                .map_err(|e| sqlite("copying the database", e))?
            {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => {}
                // Busy, Locked (and whatever a later rusqlite adds): transient, try again.
                _ => {
                    waited += 1;
                    if waited > 600 {
                        return Err(Error::Backend(
                            "copying the database: it stayed locked for a minute".into(),
                        ));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
    }
    drop(from);
    let mode: String = to
        .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
        .map_err(|e| sqlite("switching the copy to a rollback journal", e))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(Error::Backend(format!(
            "the copy stayed in journal mode {mode}"
        )));
    }
    let check: String = to
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| sqlite("checking the copy", e))?;
    if check != "ok" {
        return Err(Error::Backend(format!(
            "the copy of the database fails SQLite's quick_check: {check}"
        )));
    }
    let snap = summarise(&to).map_err(|e| sqlite("reading the copy", e))?;
    to.close().map_err(|(_, e)| sqlite("closing the copy", e))?;
    File::open(dst)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::Backend(format!("syncing {}: {e}", dst.display())))?;
    Ok(snap)
}

/// Reads what a database (a snapshot, or a restored one) holds.
pub fn summarise_database(path: &Path) -> Result<DbSnapshot> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| sqlite(&format!("opening {}", path.display()), e))?;
    summarise(&c).map_err(|e| sqlite(&format!("reading {}", path.display()), e))
}

fn summarise(c: &Connection) -> rusqlite::Result<DbSnapshot> {
    let count = |sql: &str| -> rusqlite::Result<u64> {
        c.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
    };
    let mut referenced_blobs = Vec::new();
    let mut stmt =
        c.prepare("SELECT digest, MAX(size) FROM repo_blobs GROUP BY digest ORDER BY digest")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (d, size) = row?;
        referenced_blobs.push((d, u64::try_from(size).unwrap_or(0)));
    }
    Ok(DbSnapshot {
        referenced_blobs,
        repositories: count("SELECT count(*) FROM repos")?,
        manifests: count("SELECT count(*) FROM manifests")?,
        tags: count("SELECT count(*) FROM tags")?,
        trust_guns: count("SELECT count(DISTINCT gun) FROM tuf_files")?,
        schema_version: c.query_row("PRAGMA user_version", [], |r| r.get(0))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_cannot_take_the_lock_while_a_backup_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let backup = BackupLock::acquire(dir.path(), || panic!("nobody holds it")).unwrap();
        // A second backup shares it.
        let second = BackupLock::acquire(dir.path(), || panic!("shared locks share")).unwrap();
        assert!(GcLock::try_acquire(dir.path()).unwrap().is_none());
        drop(backup);
        assert!(GcLock::try_acquire(dir.path()).unwrap().is_none());
        drop(second);
        let gc = GcLock::try_acquire(dir.path()).unwrap();
        assert!(gc.is_some());
        // And a backup waits for GC: here, from another thread, until GC lets go.
        let (tx, rx) = std::sync::mpsc::channel();
        let path = dir.path().to_path_buf();
        let t = std::thread::spawn(move || {
            BackupLock::acquire(&path, || tx.send(()).unwrap()).unwrap();
        });
        rx.recv().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !t.is_finished(),
            "the backup went on while GC held the lock"
        );
        drop(gc);
        t.join().unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(GC_LOCK_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_snapshot_taken_while_writes_continue_is_a_whole_database() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join(DATABASE_FILE);
        let store = crate::SqliteMetadataStore::open(&src).unwrap();
        drop(store);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (src, stop) = (src.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = Connection::open(&src).unwrap();
                c.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    c.execute("INSERT INTO repos(name) VALUES (?1)", [format!("r{n}")])
                        .unwrap();
                    n += 1;
                }
                n
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut seen = Vec::new();
        for i in 0..5 {
            let dst = dir.path().join(format!("copy{i}.db"));
            let snap = snapshot_database(&src, &dst).unwrap();
            // Consistent: the names are r0..r(n-1) without a gap.
            let c = Connection::open(&dst).unwrap();
            let max: Option<i64> = c
                .query_row(
                    "SELECT MAX(CAST(substr(name, 2) AS INTEGER)) FROM repos",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(max.map_or(0, |m| m as u64 + 1), snap.repositories);
            assert!(!dir.path().join(format!("copy{i}.db-wal")).exists());
            seen.push(snap.repositories);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let written = writer.join().unwrap();
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert!(seen[0] > 0 && *seen.last().unwrap() <= written, "{seen:?}");
    }
}
