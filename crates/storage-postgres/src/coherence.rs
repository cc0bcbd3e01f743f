//! Settings and current TUF files kept in each node's memory, coherent across nodes through
//! PostgreSQL notifications.
//!
//! Every trust GET and every anonymous request reads a setting, and every trust GET the
//! GUN's current timestamp: as database round trips they cost a cluster node most of its
//! throughput. So each node keeps them in a [`HotCache`], and every write that changes them
//! sends `NOTIFY berth_cache` in its own transaction (PostgreSQL delivers it at commit, and
//! never for a rolled-back one). A listener connection per node drops what each notification
//! names.
//!
//! The rules that make this safe:
//! - A copy is used and filled only while the listener is connected. When it loses its
//!   connection, or a health check fails, every copy is dropped and reads go to the database
//!   until it listens again, since notifications sent meanwhile are lost.
//! - A read stores what it found only if no invalidation happened while it read (the cache's
//!   generation), so a fill can never outlive the notification of a write it raced.
//! - The writing node drops its own copies at commit, then waits (bounded) until every node that
//!   was listening when it wrote has acknowledged the notification (each listener drops the
//!   copies first, then sends `NOTIFY berth_cache_ack`): a client that goes on through another
//!   node after the answer meets the new state. A node that does not acknowledge within the
//!   bound (dead, or partitioned) costs that write the wait and a warning.
//! - Reads that decide a write (a publish validating against the current metadata,
//!   `tuf_current_all`; identities, roles and tokens) are never served from here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use berth_storage::cache::HotCache;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, NoTls};

/// The notification channel every node listens on.
pub(crate) const CHANNEL: &str = "berth_cache";

/// Where each node acknowledges a notification once it has dropped what it names.
const ACK_CHANNEL: &str = "berth_cache_ack";

/// The listener connections' `application_name`, by which a writer counts the nodes.
pub(crate) const LISTENER_NAME: &str = "berth-cache-listener";

/// Bound on the TUF bytes a node keeps (least recently used GUNs go first).
const TUF_BYTES: usize = 8 << 20;

/// How long a writer waits for every node's acknowledgement before it answers anyway.
const ECHO_WAIT: Duration = Duration::from_secs(1);

/// How often the listener checks that its connection still works; a silent network failure
/// is noticed within about twice this.
const HEALTH_EVERY: Duration = Duration::from_secs(5);

/// Which copies a write makes stale.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stale<'a> {
    Settings,
    Gun(&'a str),
    AllGuns,
}

/// A node's copies and what keeps them coherent.
pub(crate) struct Coherence {
    pub(crate) cache: HotCache,
    /// Whether the listener is connected (copies may be used and filled).
    live: AtomicBool,
    /// Tells this node's notifications apart from other nodes'.
    node: u64,
    seq: AtomicU64,
    /// This node's writes waiting for acknowledgements, by sequence number.
    echoes: Mutex<HashMap<u64, Pending>>,
    listener: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Coherence {
    fn drop(&mut self) {
        if let Some(h) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            h.abort();
        }
    }
}

/// Acknowledgements of one write: they may arrive before the write knows how many to expect.
struct Pending {
    acked: i64,
    expected: Option<i64>,
    done: oneshot::Sender<()>,
}

/// Tells the write `seq` once every expected acknowledgement has arrived.
fn settle(echoes: &mut HashMap<u64, Pending>, seq: u64) {
    let ready = echoes
        .get(&seq)
        .is_some_and(|p| p.expected.is_some_and(|n| p.acked >= n));
    if ready && let Some(p) = echoes.remove(&seq) {
        let _ = p.done.send(());
    }
}

/// A write's notification, and the wait for it to come back.
pub(crate) struct Notice {
    pub(crate) payload: String,
    seq: u64,
    echo: oneshot::Receiver<()>,
}

impl Coherence {
    /// Starts the listener on its own connection (not the pool's: it stays in `LISTEN`).
    pub(crate) fn start(config: tokio_postgres::Config) -> Arc<Self> {
        let co = Arc::new(Coherence {
            cache: HotCache::new(None, TUF_BYTES),
            live: AtomicBool::new(false),
            node: node_id(),
            seq: AtomicU64::new(0),
            echoes: Mutex::new(HashMap::new()),
            listener: Mutex::new(None),
        });
        let task = tokio::spawn(listen(config, Arc::downgrade(&co)));
        *co.listener.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        co
    }

    /// Whether copies may be used now.
    pub(crate) fn usable(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// The notification a write sends in its transaction.
    pub(crate) fn notice(&self, stale: Stale<'_>) -> Notice {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, echo) = oneshot::channel();
        self.echoes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                seq,
                Pending {
                    acked: 0,
                    expected: None,
                    done: tx,
                },
            );
        let tag = format!("{:x}:{seq}", self.node);
        let payload = match stale {
            Stale::Settings => format!("s {tag}"),
            Stale::Gun(gun) => format!("t {tag} {gun}"),
            Stale::AllGuns => format!("T {tag}"),
        };
        Notice { payload, seq, echo }
    }

    /// After the write committed: drop this node's copies, then wait until the `listeners`
    /// nodes that were listening have acknowledged it (see the module docs).
    pub(crate) async fn committed(&self, stale: Stale<'_>, notice: Notice, listeners: i64) {
        self.drop_copies(stale);
        {
            let mut echoes = self.echoes.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(p) = echoes.get_mut(&notice.seq) {
                p.expected = Some(listeners);
            }
            settle(&mut echoes, notice.seq);
        }
        if self.usable() && tokio::time::timeout(ECHO_WAIT, notice.echo).await.is_err() {
            tracing::warn!(
                listeners,
                "not every node acknowledged a cache notification within {ECHO_WAIT:?}; one that did not may serve the old state until its listener reconnects"
            );
        }
        self.forget(notice.seq);
    }

    /// The write failed (rolled back, nothing was notified).
    pub(crate) fn abandoned(&self, notice: Notice) {
        self.forget(notice.seq);
    }

    fn forget(&self, seq: u64) {
        self.echoes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&seq);
    }

    fn drop_copies(&self, stale: Stale<'_>) {
        match stale {
            Stale::Settings => self.cache.invalidate_settings(),
            Stale::Gun(gun) => self.cache.invalidate(Some(gun)),
            Stale::AllGuns => self.cache.invalidate(None),
        }
    }

    /// One notification from any node (this one included).
    fn apply(&self, payload: &str) {
        let mut parts = payload.splitn(3, ' ');
        let (kind, gun) = (parts.next(), parts.nth(1));
        match (kind, gun) {
            (Some("s"), _) => self.drop_copies(Stale::Settings),
            (Some("t"), Some(gun)) => self.drop_copies(Stale::Gun(gun)),
            (Some("T"), _) => self.drop_copies(Stale::AllGuns),
            _ => {
                // Written by a newer Berth, perhaps: dropping everything is always safe.
                tracing::warn!(payload, "unknown cache notification; dropping every copy");
                self.cache.invalidate_all();
            }
        }
    }

    /// A node acknowledged the notification tagged `tag`.
    fn acknowledged(&self, tag: &str) {
        let mine = format!("{:x}:", self.node);
        let Some(seq) = tag.strip_prefix(&mine).and_then(|s| s.parse::<u64>().ok()) else {
            return; // another node's write
        };
        let mut echoes = self.echoes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = echoes.get_mut(&seq) {
            p.acked += 1;
        }
        settle(&mut echoes, seq);
    }

    /// The listener lost (or regained) its connection: either way what was kept may have
    /// missed notifications.
    fn set_live(&self, live: bool) {
        if !live {
            self.live.store(false, Ordering::Release);
        }
        self.cache.invalidate_all();
        if live {
            self.live.store(true, Ordering::Release);
        }
    }
}

/// A number that differs between nodes and between stores in one process.
fn node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

/// Listens for as long as the store lives, reconnecting with backoff.
async fn listen(mut config: tokio_postgres::Config, co: Weak<Coherence>) {
    config.application_name(LISTENER_NAME);
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = listen_once(&config, &co).await;
        let Some(c) = co.upgrade() else { return };
        c.set_live(false);
        drop(c);
        match connected {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, "cache listener: cannot listen to PostgreSQL; reading through until it can");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// One connection's life: `Ok` once it had been listening and then ended.
async fn listen_once(
    config: &tokio_postgres::Config,
    co: &Weak<Coherence>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut conn) = config.connect(NoTls).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<(bool, String)>();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    let ack = n.channel() == ACK_CHANNEL;
                    if tx.send((ack, n.payload().to_owned())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cache listener: connection lost");
                    return;
                }
            }
        }
    });
    let _stop_driver = AbortOnDrop(driver.abort_handle());
    client
        .batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {ACK_CHANNEL}"))
        .await?;
    match co.upgrade() {
        Some(c) => c.set_live(true),
        None => return Ok(()),
    }
    let mut health = tokio::time::interval(HEALTH_EVERY);
    health.tick().await;
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some((ack, payload)) = msg else { return Ok(()) };
                let Some(c) = co.upgrade() else { return Ok(()) };
                if ack {
                    c.acknowledged(&payload);
                    continue;
                }
                c.apply(&payload);
                drop(c);
                // Dropped first, acknowledged after: the writer answers only then.
                if let Some(tag) = payload.split(' ').nth(1) {
                    client
                        .execute("SELECT pg_notify($1, $2)", &[&ACK_CHANNEL, &tag])
                        .await?;
                }
            }
            _ = health.tick() => {
                let ok = tokio::time::timeout(HEALTH_EVERY, client.simple_query("SELECT 1")).await;
                if !matches!(ok, Ok(Ok(_))) {
                    tracing::warn!("cache listener: health check failed; reconnecting");
                    return Ok(());
                }
            }
        }
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
