//! What stands between a password guesser and everyone else: failed-login throttling and the
//! bounded pool that runs password hashing.
//!
//! Throttling policy (documented in README "Logging in"):
//! - Failures are counted per (identity, source) pair. After [`PAIR_LIMIT`] failures within
//!   [`WINDOW`] that pair is refused until the window ends. The same identity from another source,
//!   and other identities from the same source, are not affected: nobody can lock the owner out
//!   by guessing its password from elsewhere, and one user's typos behind a NAT do not lock out
//!   the user's colleagues.
//! - A source that fails for [`SPRAY_LIMIT`] distinct identities within [`WINDOW`] (password
//!   spraying) is refused for every identity until its window ends.
//! - A correct password clears its pair. A source is an IPv4 address or an IPv6 /64 (what one
//!   host usually controls); headers such as X-Forwarded-For are never trusted.
//! - Each table holds at most [`MAX_ENTRIES`]; when a flood from more sources than that keeps
//!   every entry live, a quarter is dropped (those sources start counting again).
//!
//! Hashing: argon2 takes tens of milliseconds of CPU and 19 MiB, so it never runs on the async
//! workers. A few run at once on the blocking pool; waiting for a turn is bounded per lane, and a
//! full lane answers 429 at once. Sources that have been failing wait in a small lane of their
//! own, so a guessing flood cannot crowd out the logins of everyone else.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::Digest as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long failures are remembered (and a refused pair or source waits at most).
pub const WINDOW: Duration = Duration::from_secs(60);
/// Failures of one identity from one source per window.
pub const PAIR_LIMIT: u32 = 10;
/// Distinct identities one source may fail for per window.
pub const SPRAY_LIMIT: usize = 20;
/// Entries per table (pairs, sources): about 3 MiB at most.
pub const MAX_ENTRIES: usize = 65_536;
/// Logins from clean sources waiting for (or holding) a hashing turn.
pub const CLEAN_QUEUE: usize = 128;
/// Logins from failing sources waiting for (or holding) a hashing turn.
pub const SUSPECT_QUEUE: usize = 4;
/// Retry-After when a hashing lane is full.
pub const BUSY_RETRY_SECS: u64 = 1;

/// A client address as the throttle counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(u128);

impl Source {
    pub fn of(ip: Option<IpAddr>) -> Source {
        match ip {
            None => Source(0),
            Some(IpAddr::V4(v4)) => Source(u128::from(v4.to_ipv6_mapped())),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(u128::from(v4.to_ipv6_mapped())),
                // One host usually holds a whole /64.
                None => Source(u128::from(v6) & !u128::from(u64::MAX)),
            },
        }
    }
}

/// An identity name as the throttle keeps it: fixed size whatever a client sends.
type NameKey = [u8; 16];

struct PairCount {
    start: Instant,
    failures: u32,
}

struct SourceCount {
    start: Instant,
    /// Distinct identities failed in this window (at most [`SPRAY_LIMIT`] kept).
    names: Vec<NameKey>,
}

#[derive(Default)]
struct Tables {
    pairs: HashMap<(NameKey, Source), PairCount>,
    sources: HashMap<Source, SourceCount>,
}

/// Verdict on a login attempt before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Go ahead; `suspect` when this source has failed logins within the window.
    Open { suspect: bool },
    /// Refused; retry after this many seconds.
    Closed(u64),
}

pub struct Throttle {
    salt: [u8; 32],
    tables: Mutex<Tables>,
}

fn live(start: Instant) -> bool {
    start.elapsed() < WINDOW
}

/// Whole seconds until a window that began at `start` ends (at least 1).
fn retry_after(start: Instant) -> u64 {
    WINDOW
        .saturating_sub(start.elapsed())
        .as_secs()
        .saturating_add(1)
}

/// Makes room for one more entry without letting the table grow past [`MAX_ENTRIES`].
fn make_room<K: Clone + Eq + Hash, V>(map: &mut HashMap<K, V>, start: impl Fn(&V) -> Instant) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    map.retain(|_, v| live(start(v)));
    if map.len() >= MAX_ENTRIES {
        // Iteration order is random (RandomState), so this drops an arbitrary quarter.
        let doomed: Vec<K> = map.keys().take(MAX_ENTRIES / 4).cloned().collect();
        for k in doomed {
            map.remove(&k);
        }
    }
}

impl Throttle {
    pub fn new(salt: [u8; 32]) -> Throttle {
        Throttle {
            salt,
            tables: Mutex::new(Tables::default()),
        }
    }

    fn name_key(&self, name: &str) -> NameKey {
        let mut h = sha2::Sha256::new();
        h.update(self.salt);
        h.update(name.as_bytes());
        let full: [u8; 32] = h.finalize().into();
        let mut key = [0u8; 16];
        key.copy_from_slice(full.get(..16).unwrap_or(&[0u8; 16]));
        key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May `name` try a password from `source` now?
    pub fn gate(&self, name: &str, source: Source) -> Gate {
        let key = self.name_key(name);
        let t = self.lock();
        let spray = t.sources.get(&source).filter(|s| live(s.start));
        if let Some(s) = spray
            && s.names.len() >= SPRAY_LIMIT
        {
            return Gate::Closed(retry_after(s.start));
        }
        if let Some(p) = t.pairs.get(&(key, source)).filter(|p| live(p.start))
            && p.failures >= PAIR_LIMIT
        {
            return Gate::Closed(retry_after(p.start));
        }
        Gate::Open {
            suspect: spray.is_some(),
        }
    }

    /// Counts a failed login of `name` from `source`.
    pub fn failed(&self, name: &str, source: Source) {
        let key = self.name_key(name);
        let mut t = self.lock();
        if !t.pairs.contains_key(&(key, source)) {
            make_room(&mut t.pairs, |p| p.start);
        }
        let p = t.pairs.entry((key, source)).or_insert(PairCount {
            start: Instant::now(),
            failures: 0,
        });
        if !live(p.start) {
            *p = PairCount {
                start: Instant::now(),
                failures: 0,
            };
        }
        p.failures = p.failures.saturating_add(1);
        if !t.sources.contains_key(&source) {
            make_room(&mut t.sources, |s| s.start);
        }
        let s = t.sources.entry(source).or_insert(SourceCount {
            start: Instant::now(),
            names: Vec::new(),
        });
        if !live(s.start) {
            *s = SourceCount {
                start: Instant::now(),
                names: Vec::new(),
            };
        }
        if s.names.len() < SPRAY_LIMIT && !s.names.contains(&key) {
            s.names.push(key);
        }
    }

    /// A correct password: the pair starts afresh (the source's spray count stays).
    pub fn succeeded(&self, name: &str, source: Source) {
        let key = self.name_key(name);
        self.lock().pairs.remove(&(key, source));
    }

    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        let t = self.lock();
        (t.pairs.len(), t.sources.len())
    }
}

/// Runs password hashing on the blocking pool, a few at a time, with bounded waiting.
pub struct HashPool {
    running: Arc<Semaphore>,
    clean: Arc<Semaphore>,
    suspect: Arc<Semaphore>,
}

/// A place in a lane of the [`HashPool`].
pub struct Slot(OwnedSemaphorePermit);

/// A turn to hash: held until the hashing is over, even if the request is dropped meanwhile.
pub struct Turn {
    _slot: OwnedSemaphorePermit,
    _running: OwnedSemaphorePermit,
}

impl HashPool {
    /// `parallel` hashes at once; the defaults leave half the cores to everything else.
    pub fn new(parallel: usize, clean: usize, suspect: usize) -> HashPool {
        HashPool {
            running: Arc::new(Semaphore::new(parallel.max(1))),
            clean: Arc::new(Semaphore::new(clean.max(1))),
            suspect: Arc::new(Semaphore::new(suspect.max(1))),
        }
    }

    pub fn for_this_machine() -> HashPool {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        HashPool::new(cores / 2, CLEAN_QUEUE, SUSPECT_QUEUE)
    }

    /// A place in the lane, or `None` at once when it is full.
    pub fn admit(&self, suspect: bool) -> Option<Slot> {
        let lane = if suspect { &self.suspect } else { &self.clean };
        lane.clone().try_acquire_owned().ok().map(Slot)
    }

    /// Waits (first come, first served) until one of the hashing places is free.
    pub async fn turn(&self, slot: Slot) -> Option<Turn> {
        let running = self.running.clone().acquire_owned().await.ok()?;
        Some(Turn {
            _slot: slot.0,
            _running: running,
        })
    }
}

impl Turn {
    /// Runs `f` on the blocking pool; the turn ends when `f` does.
    pub async fn run<T: Send + 'static>(
        self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        tokio::task::spawn_blocking(move || {
            let _turn = self;
            f()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn src(last: u8) -> Source {
        Source::of(Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))))
    }

    #[test]
    fn sources_group_ipv6_by_64_and_unmap_ipv4() {
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(
            Source::of(Some(IpAddr::V6(a))),
            Source::of(Some(IpAddr::V6(b)))
        );
        assert_ne!(
            Source::of(Some(IpAddr::V6(a))),
            Source::of(Some(IpAddr::V6(c)))
        );
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(
            Source::of(Some(IpAddr::V6(v4.to_ipv6_mapped()))),
            Source::of(Some(IpAddr::V4(v4)))
        );
        assert_ne!(src(1), src(2));
    }

    #[test]
    fn a_pair_is_refused_after_its_limit_and_nobody_else_is() {
        let t = Throttle::new([7; 32]);
        assert_eq!(t.gate("owner", src(1)), Gate::Open { suspect: false });
        for _ in 0..PAIR_LIMIT {
            assert!(matches!(t.gate("owner", src(1)), Gate::Open { .. }));
            t.failed("owner", src(1));
        }
        match t.gate("owner", src(1)) {
            Gate::Closed(s) => assert!((1..=61).contains(&s), "{s}"),
            g => panic!("{g:?}"),
        }
        // The owner from elsewhere, and another user from the same source, still get in.
        assert_eq!(t.gate("owner", src(2)), Gate::Open { suspect: false });
        assert_eq!(t.gate("alice", src(1)), Gate::Open { suspect: true });
        // Success clears the pair.
        t.succeeded("owner", src(1));
        assert_eq!(t.gate("owner", src(1)), Gate::Open { suspect: true });
    }

    #[test]
    fn a_spraying_source_is_refused_for_everyone() {
        let t = Throttle::new([7; 32]);
        for i in 0..SPRAY_LIMIT - 1 {
            t.failed(&format!("user{i}"), src(3));
        }
        assert!(matches!(t.gate("owner", src(3)), Gate::Open { .. }));
        // Repeats of a name already counted do not make it a spray.
        t.failed("user0", src(3));
        assert!(matches!(t.gate("owner", src(3)), Gate::Open { .. }));
        t.failed("one-more", src(3));
        assert!(matches!(t.gate("owner", src(3)), Gate::Closed(_)));
        assert!(matches!(t.gate("owner", src(4)), Gate::Open { .. }));
    }

    #[test]
    fn tables_stay_bounded() {
        let t = Throttle::new([7; 32]);
        for i in 0..(MAX_ENTRIES as u32 + 5_000) {
            let ip = IpAddr::V4(Ipv4Addr::from(i.wrapping_add(0x0a00_0000)));
            t.failed("owner", Source::of(Some(ip)));
        }
        let (pairs, sources) = t.sizes();
        assert!(
            pairs <= MAX_ENTRIES && sources <= MAX_ENTRIES,
            "{pairs} {sources}"
        );
        assert!(pairs > MAX_ENTRIES / 2, "{pairs}");
    }

    #[tokio::test]
    async fn a_full_lane_refuses_at_once_and_frees_when_done() {
        let pool = HashPool::new(1, 2, 1);
        let a = pool.admit(true).expect("first suspect");
        assert!(pool.admit(true).is_none(), "suspect lane full");
        let c1 = pool.admit(false).expect("clean lane has room");
        let c2 = pool.admit(false).expect("clean lane has room");
        assert!(pool.admit(false).is_none(), "clean lane full");
        let turn = pool.turn(a).await.expect("turn");
        let on_worker = std::thread::current().id();
        let ran_on = turn.run(move || std::thread::current().id()).await.unwrap();
        assert_ne!(ran_on, on_worker, "hashing runs off the async worker");
        assert!(pool.admit(true).is_some(), "the slot came back");
        drop((c1, c2));
        assert!(pool.admit(false).is_some());
    }
}
