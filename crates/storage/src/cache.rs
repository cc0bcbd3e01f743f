//! In-memory copies of the hottest reads: settings, each GUN's current TUF files, identity
//! lookups. This is the coherence seam: the stores decide when a copy may be kept and who
//! drops it.
//!
//! Every trust GET (and every anonymous request, for the anonymous-pull switch) would otherwise
//! cost a database round trip per lookup; profiles showed the server spending most of its time
//! on those rather than answering. The embedded store belongs to one `berth serve` process (it
//! locks the data directory) and every write goes through it, so its copies are exact. The
//! PostgreSQL store keeps settings and current TUF files here too, dropped by the notification
//! each committing write sends to every node (`berth-storage-postgres`, `coherence`).
//!
//! Races between a reader filling the cache from the database and a writer committing are
//! settled by a generation counter: a writer (or a notification) bumps it after the commit, and
//! a reader only stores what it read if the generation is still the one it saw before reading.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::{IdentityRecord, RoleAssignmentRecord, ScopeMapRecord, TufFile};

/// Upper bound on the TUF bytes kept (the least recently used GUNs go first).
pub const TUF_CACHE_BYTES: usize = 8 << 20;

#[derive(Default)]
struct GunEntry {
    /// role → its current file (`None`: known to have none).
    roles: HashMap<String, Option<TufFile>>,
    /// Every role's current file, as `tuf_current_all` returns them (each publish reads it).
    all: Option<Vec<TufFile>>,
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

/// Bound on cached identity lookups; past it the map starts over.
const IDENTITY_ENTRIES: usize = 10_000;

/// What every authenticated request looks up about its caller.
#[derive(Clone)]
pub enum IdentEntry {
    Identity(Option<IdentityRecord>),
    Roles(Vec<RoleAssignmentRecord>),
    ScopeMap(Option<ScopeMapRecord>),
}

impl IdentEntry {
    pub fn identity(self) -> Option<Option<IdentityRecord>> {
        match self {
            IdentEntry::Identity(v) => Some(v),
            _ => None,
        }
    }

    pub fn roles(self) -> Option<Vec<RoleAssignmentRecord>> {
        match self {
            IdentEntry::Roles(v) => Some(v),
            _ => None,
        }
    }

    pub fn scope_map(self) -> Option<Option<ScopeMapRecord>> {
        match self {
            IdentEntry::ScopeMap(v) => Some(v),
            _ => None,
        }
    }
}

#[derive(Default)]
struct SettingsState {
    generation: u64,
    map: Option<HashMap<String, String>>,
}

#[derive(Default)]
struct IdentState {
    generation: u64,
    entries: HashMap<String, IdentEntry>,
}

pub struct HotCache {
    /// Every setting (`None`: not loaded). The embedded store loads them at open and updates
    /// them with each write; the PostgreSQL store loads them on first use.
    settings: Mutex<SettingsState>,
    tuf: Mutex<TufState>,
    limit: usize,
    /// Identity, role and scope-map lookups by key; any identity write clears them all
    /// (writes are rare admin actions, lookups happen on every request).
    ident: Mutex<IdentState>,
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
    /// `settings`: every setting, when the caller has them all (`None`: loaded on first use
    /// through [`Self::fill_settings`]).
    pub fn new(settings: Option<HashMap<String, String>>, limit: usize) -> Self {
        HotCache {
            settings: Mutex::new(SettingsState {
                generation: 0,
                map: settings,
            }),
            tuf: Mutex::new(TufState::default()),
            limit,
            ident: Mutex::new(IdentState::default()),
        }
    }

    pub fn ident(&self, key: &str) -> Option<IdentEntry> {
        lock(&self.ident).entries.get(key).cloned()
    }

    pub fn ident_generation(&self) -> u64 {
        lock(&self.ident).generation
    }

    /// Stores a lookup's result unless an identity write happened since `generation`.
    pub fn ident_fill(&self, generation: u64, key: String, entry: IdentEntry) {
        let mut st = lock(&self.ident);
        if st.generation != generation {
            return;
        }
        if st.entries.len() >= IDENTITY_ENTRIES {
            st.entries.clear();
        }
        st.entries.insert(key, entry);
    }

    /// Called after any write to identities, role assignments or scope maps.
    pub fn invalidate_identities(&self) {
        let mut st = lock(&self.ident);
        st.generation += 1;
        st.entries.clear();
    }

    /// The setting's value (outer `None`: the settings are not loaded).
    pub fn setting(&self, name: &str) -> Option<Option<String>> {
        lock(&self.settings)
            .map
            .as_ref()
            .map(|m| m.get(name).cloned())
    }

    /// Called after the setting is committed (a no-op while the settings are not loaded).
    pub fn set_setting(&self, name: &str, value: &str) {
        if let Some(m) = &mut lock(&self.settings).map {
            m.insert(name.to_owned(), value.to_owned());
        }
    }

    /// The generation to hand back to [`Self::fill_settings`] after reading them.
    pub fn settings_generation(&self) -> u64 {
        lock(&self.settings).generation
    }

    /// Stores every setting as read, unless a write committed since `generation`.
    pub fn fill_settings(&self, generation: u64, all: HashMap<String, String>) {
        let mut st = lock(&self.settings);
        if st.generation == generation {
            st.map = Some(all);
        }
    }

    /// Called after some setting changed elsewhere: the next read loads them again.
    pub fn invalidate_settings(&self) {
        let mut st = lock(&self.settings);
        st.generation += 1;
        st.map = None;
    }

    /// Drops every copy (settings, TUF files, identity lookups), e.g. when notifications of
    /// other nodes' writes may have been missed.
    pub fn invalidate_all(&self) {
        self.invalidate_settings();
        self.invalidate(None);
        self.invalidate_identities();
    }

    /// The cached current file of `role` (outer `None`: not cached).
    pub fn tuf_current(&self, gun: &str, role: &str) -> Option<Option<TufFile>> {
        let mut st = lock(&self.tuf);
        st.tick += 1;
        let tick = st.tick;
        let entry = st.guns.get_mut(gun)?;
        let hit = entry.roles.get(role)?.clone();
        entry.used = tick;
        Some(hit)
    }

    /// The cached current files of every role of `gun`.
    pub fn tuf_current_all(&self, gun: &str) -> Option<Vec<TufFile>> {
        let mut st = lock(&self.tuf);
        st.tick += 1;
        let tick = st.tick;
        let entry = st.guns.get_mut(gun)?;
        let hit = entry.all.clone()?;
        entry.used = tick;
        Some(hit)
    }

    /// Stores what `tuf_current_all` read, and each role's file from it, unless a write
    /// committed since `generation`.
    pub fn fill_all(&self, generation: u64, gun: &str, files: &[TufFile]) {
        for f in files {
            self.fill(generation, gun, &f.role, Some(f.clone()));
        }
        let mut st = lock(&self.tuf);
        if st.generation != generation {
            return;
        }
        let size: usize = files.iter().map(|f| file_bytes(&Some(f.clone()))).sum();
        let Some(entry) = st.guns.get_mut(gun) else {
            // Evicted meanwhile (or no files at all): nothing to attach the list to.
            return;
        };
        let old = entry
            .all
            .replace(files.to_vec())
            .map_or(0, |v| v.iter().map(|f| file_bytes(&Some(f.clone()))).sum());
        entry.bytes = entry.bytes - old + size;
        st.bytes = st.bytes - old + size;
    }

    /// The generation to hand back to [`Self::fill`] after reading SQLite.
    pub fn generation(&self) -> u64 {
        lock(&self.tuf).generation
    }

    /// Stores what a read found, unless a write committed since `generation` was taken.
    pub fn fill(&self, generation: u64, gun: &str, role: &str, file: Option<TufFile>) {
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

    /// Called after new versions of some of `gun`'s roles committed: they become the current
    /// ones in place (each publish would otherwise empty the cache it is about to need).
    pub fn apply_update(&self, gun: &str, files: Vec<TufFile>) {
        let mut st = lock(&self.tuf);
        // Reads that started before the commit must not store what they saw.
        st.generation += 1;
        st.tick += 1;
        let tick = st.tick;
        let entry = st.guns.entry(gun.to_owned()).or_default();
        let before = entry.bytes;
        for f in files {
            if let Some(all) = &mut entry.all {
                match all.binary_search_by(|x| x.role.as_str().cmp(&f.role)) {
                    Ok(i) => all[i] = f.clone(),
                    Err(i) => all.insert(i, f.clone()),
                }
            }
            entry.roles.insert(f.role.clone(), Some(f));
        }
        entry.bytes = entry.roles.values().map(file_bytes).sum::<usize>()
            + entry
                .all
                .as_ref()
                .map_or(0, |v| v.iter().map(|f| file_bytes(&Some(f.clone()))).sum());
        entry.used = tick;
        let after = entry.bytes;
        st.bytes = st.bytes - before + after;
    }

    /// Called after a write to `gun`'s TUF files committed (`None`: every GUN).
    pub fn invalidate(&self, gun: Option<&str>) {
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
        let c = HotCache::new(Some(HashMap::new()), 1 << 20);
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
    fn the_list_of_current_files_is_cached_and_dropped_with_its_gun() {
        let c = HotCache::new(Some(HashMap::new()), 1 << 20);
        let files = vec![file("root", 10).unwrap(), file("targets", 20).unwrap()];
        c.fill_all(c.generation(), "g", &files);
        assert_eq!(c.tuf_current_all("g").unwrap().len(), 2);
        assert_eq!(
            c.tuf_current("g", "targets").unwrap().unwrap().data.len(),
            20
        );
        {
            let st = lock(&c.tuf);
            assert_eq!(st.bytes, st.guns.values().map(|e| e.bytes).sum::<usize>());
        }
        c.invalidate(Some("g"));
        assert!(c.tuf_current_all("g").is_none());
        assert_eq!(lock(&c.tuf).bytes, 0);
    }

    #[test]
    fn an_update_replaces_the_current_files_in_place() {
        let c = HotCache::new(Some(HashMap::new()), 1 << 20);
        let files = vec![file("root", 10).unwrap(), file("targets", 20).unwrap()];
        c.fill_all(c.generation(), "g", &files);
        let stale = c.generation();
        c.apply_update(
            "g",
            vec![file("snapshot", 5).unwrap(), file("targets", 30).unwrap()],
        );
        let all = c.tuf_current_all("g").unwrap();
        let roles: Vec<&str> = all.iter().map(|f| f.role.as_str()).collect();
        assert_eq!(roles, ["root", "snapshot", "targets"], "kept in role order");
        assert_eq!(all[2].data.len(), 30);
        assert_eq!(
            c.tuf_current("g", "targets").unwrap().unwrap().data.len(),
            30
        );
        // A read that began before the update cannot put the old file back.
        c.fill(stale, "g", "targets", file("targets", 20));
        assert_eq!(
            c.tuf_current("g", "targets").unwrap().unwrap().data.len(),
            30
        );
        let st = lock(&c.tuf);
        assert_eq!(st.bytes, st.guns.values().map(|e| e.bytes).sum::<usize>());
    }

    #[test]
    fn absence_is_cached_too() {
        let c = HotCache::new(Some(HashMap::new()), 1 << 20);
        c.fill(c.generation(), "g", "root", None);
        assert_eq!(c.tuf_current("g", "root"), Some(None));
        assert_eq!(c.tuf_current("g", "targets"), None);
    }

    #[test]
    fn the_least_recently_used_gun_is_evicted_over_the_limit() {
        let c = HotCache::new(Some(HashMap::new()), 1000);
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
    fn identity_lookups_race_and_clear_like_tuf_files() {
        let c = HotCache::new(Some(HashMap::new()), 0);
        let g = c.ident_generation();
        c.invalidate_identities();
        c.ident_fill(g, "i:alice".into(), IdentEntry::Identity(None));
        assert!(
            c.ident("i:alice").is_none(),
            "a fill that raced a write is dropped"
        );
        c.ident_fill(
            c.ident_generation(),
            "i:alice".into(),
            IdentEntry::Identity(None),
        );
        assert!(matches!(
            c.ident("i:alice"),
            Some(IdentEntry::Identity(None))
        ));
        c.invalidate_identities();
        assert!(c.ident("i:alice").is_none());
    }

    #[test]
    fn settings_follow_writes() {
        let c = HotCache::new(Some(HashMap::from([("a".into(), "1".into())])), 0);
        assert_eq!(c.setting("a"), Some(Some("1".into())));
        c.set_setting("a", "2");
        c.set_setting("b", "3");
        assert_eq!(c.setting("a"), Some(Some("2".into())));
        assert_eq!(c.setting("b"), Some(Some("3".into())));
        assert_eq!(c.setting("c"), Some(None));
    }

    #[test]
    fn settings_loaded_on_demand_and_dropped_by_invalidation() {
        let c = HotCache::new(None, 0);
        assert_eq!(c.setting("a"), None, "not loaded");
        c.set_setting("a", "lost");
        assert_eq!(c.setting("a"), None, "a write does not load a partial map");
        let g = c.settings_generation();
        c.invalidate_settings();
        c.fill_settings(g, HashMap::from([("a".into(), "stale".into())]));
        assert_eq!(c.setting("a"), None, "a fill that raced a write is dropped");
        c.fill_settings(
            c.settings_generation(),
            HashMap::from([("a".into(), "1".into())]),
        );
        assert_eq!(c.setting("a"), Some(Some("1".into())));
        assert_eq!(c.setting("b"), Some(None));
        c.fill(c.generation(), "g", "root", None);
        c.invalidate_all();
        assert_eq!(c.setting("a"), None);
        assert_eq!(c.tuf_current("g", "root"), None);
    }
}
