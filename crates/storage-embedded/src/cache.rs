//! In-memory copies of the hottest reads: settings and each GUN's current TUF files.
//!
//! Every trust GET (and every anonymous request, for the anonymous-pull switch) used to cost a
//! blocking-pool hand-off and a SQLite query per lookup; profiles showed the server spending
//! most of its time switching threads rather than answering. The embedded store belongs to one
//! `berth serve` process (it locks the data directory), and every write goes through this
//! store, so these copies are exact, not eventually consistent.
//!
//! Races between a reader filling the cache from SQLite and a writer committing are settled by
//! a generation counter: a writer bumps it after committing, and a reader only stores what it
//! read if the generation is still the one it saw before reading.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use berth_storage::TufFile;

/// Upper bound on the TUF bytes kept (the least recently used GUNs go first).
pub(crate) const TUF_CACHE_BYTES: usize = 8 << 20;

#[derive(Default)]
struct GunEntry {
    /// role → its current file (`None`: known to have none).
    roles: HashMap<String, Option<TufFile>>,
    bytes: usize,
    used: u64,
}

#[derive(Default)]
struct TufState {
    generation: u64,
    tick: u64,
    bytes: usize,
    guns: HashMap<String, GunEntry>,
}

pub(crate) struct HotCache {
    /// Every setting, loaded at open and updated by each write: authoritative in memory.
    settings: Mutex<HashMap<String, String>>,
    tuf: Mutex<TufState>,
    limit: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn file_bytes(f: &Option<TufFile>) -> usize {
    // Keys and strings are small next to the metadata itself; a fixed overhead covers them.
    64 + f
        .as_ref()
        .map_or(0, |f| f.data.len() + f.role.len() + f.sha256.len())
}

impl HotCache {
    pub(crate) fn new(settings: HashMap<String, String>, limit: usize) -> Self {
        HotCache {
            settings: Mutex::new(settings),
            tuf: Mutex::new(TufState::default()),
            limit,
        }
    }

    pub(crate) fn setting(&self, name: &str) -> Option<String> {
        lock(&self.settings).get(name).cloned()
    }

    /// Called after the setting is committed.
    pub(crate) fn set_setting(&self, name: &str, value: &str) {
        lock(&self.settings).insert(name.to_owned(), value.to_owned());
    }

    /// The cached current file of `role` (outer `None`: not cached).
    pub(crate) fn tuf_current(&self, gun: &str, role: &str) -> Option<Option<TufFile>> {
        let mut st = lock(&self.tuf);
        st.tick += 1;
        let tick = st.tick;
        let entry = st.guns.get_mut(gun)?;
        let hit = entry.roles.get(role)?.clone();
        entry.used = tick;
        Some(hit)
    }

    /// The generation to hand back to [`Self::fill`] after reading SQLite.
    pub(crate) fn generation(&self) -> u64 {
        lock(&self.tuf).generation
    }

    /// Stores what a read found, unless a write committed since `generation` was taken.
    pub(crate) fn fill(&self, generation: u64, gun: &str, role: &str, file: Option<TufFile>) {
        let mut st = lock(&self.tuf);
        if st.generation != generation {
            return;
        }
        st.tick += 1;
        let tick = st.tick;
        let size = file_bytes(&file);
        let entry = st.guns.entry(gun.to_owned()).or_default();
        let old = entry.roles.insert(role.to_owned(), file);
        let before = entry.bytes;
        entry.bytes = entry.bytes - old.as_ref().map_or(0, file_bytes) + size;
        entry.used = tick;
        let after = entry.bytes;
        st.bytes = st.bytes - before + after;
        while st.bytes > self.limit && st.guns.len() > 1 {
            let oldest = st
                .guns
                .iter()
                .filter(|(g, _)| g.as_str() != gun)
                .min_by_key(|(_, e)| e.used)
                .map(|(g, _)| g.clone());
            match oldest.and_then(|g| st.guns.remove(&g)) {
                Some(e) => st.bytes -= e.bytes,
                None => break,
            }
        }
    }

    /// Called after a write to `gun`'s TUF files committed (`None`: every GUN).
    pub(crate) fn invalidate(&self, gun: Option<&str>) {
        let mut st = lock(&self.tuf);
        st.generation += 1;
        match gun {
            Some(g) => {
                if let Some(e) = st.guns.remove(g) {
                    st.bytes -= e.bytes;
                }
            }
            None => {
                st.guns.clear();
                st.bytes = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn file(role: &str, n: usize) -> Option<TufFile> {
        Some(TufFile {
            role: role.into(),
            version: 1,
            sha256: "00".into(),
            data: Bytes::from(vec![b'x'; n]),
            created: 0,
        })
    }

    #[test]
    fn a_fill_that_raced_a_write_is_dropped() {
        let c = HotCache::new(HashMap::new(), 1 << 20);
        let g = c.generation();
        c.invalidate(Some("a/b"));
        c.fill(g, "a/b", "targets", file("targets", 10));
        assert!(c.tuf_current("a/b", "targets").is_none());
        let g = c.generation();
        c.fill(g, "a/b", "targets", file("targets", 10));
        assert_eq!(
            c.tuf_current("a/b", "targets").unwrap().unwrap().data.len(),
            10
        );
        c.invalidate(Some("a/b"));
        assert!(c.tuf_current("a/b", "targets").is_none());
    }

    #[test]
    fn absence_is_cached_too() {
        let c = HotCache::new(HashMap::new(), 1 << 20);
        c.fill(c.generation(), "g", "root", None);
        assert_eq!(c.tuf_current("g", "root"), Some(None));
        assert_eq!(c.tuf_current("g", "targets"), None);
    }

    #[test]
    fn the_least_recently_used_gun_is_evicted_over_the_limit() {
        let c = HotCache::new(HashMap::new(), 1000);
        c.fill(c.generation(), "old", "targets", file("targets", 400));
        c.fill(c.generation(), "mid", "targets", file("targets", 400));
        assert!(c.tuf_current("old", "targets").is_some()); // now "mid" is the oldest
        c.fill(c.generation(), "new", "targets", file("targets", 400));
        assert!(c.tuf_current("mid", "targets").is_none());
        assert!(c.tuf_current("old", "targets").is_some());
        assert!(c.tuf_current("new", "targets").is_some());
        let st = lock(&c.tuf);
        assert_eq!(
            st.bytes,
            st.guns.values().map(|e| e.bytes).sum::<usize>(),
            "byte accounting stays exact"
        );
    }

    #[test]
    fn settings_follow_writes() {
        let c = HotCache::new(HashMap::from([("a".into(), "1".into())]), 0);
        assert_eq!(c.setting("a").as_deref(), Some("1"));
        c.set_setting("a", "2");
        c.set_setting("b", "3");
        assert_eq!(c.setting("a").as_deref(), Some("2"));
        assert_eq!(c.setting("b").as_deref(), Some("3"));
        assert_eq!(c.setting("c"), None);
    }
}
