//! Webhooks: registry events (push, delete, trust, policy) POSTed to receivers.
//!
//! ```text
//! handler ─▶ emit(Event) ─▶ matching hooks ─▶ store.webhook_enqueue (after the event's own
//!                                             write committed, before the response)
//! worker  ─▶ store.webhook_due (leased claim) ─▶ POST, signed ─▶ done | retry (backoff) | drop
//! ```
//!
//! The queue lives in the store, so a restart or a crash loses nothing queued and nodes of a
//! cluster share it (a claim leases its rows). Delivery is at least once: an attempt cut short
//! by a stop is made again, so receivers dedupe by event id. An event is queued after its own
//! write committed and before the client hears back: a crash between the two loses that one
//! event (the write stands). Handlers never wait for a receiver.

mod admin;
mod deliver;
pub mod event;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth_auth::policy::RepositoryPattern;
use berth_storage::{NewDelivery, WebhookRecord, WebhookStore};
use hmac::{KeyInit, Mac};

pub(crate) use admin::handle as admin;
pub use event::{Action, Deleted, Event, EventContext, RequestInfo, Source, TrustTarget};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The signature header: `sha256=<hex HMAC-SHA256 of the exact body, keyed by the secret>`.
pub const SIGNATURE_HEADER: &str = "x-berth-signature";
/// The event's id (the same on every attempt and every webhook).
pub const EVENT_HEADER: &str = "x-berth-event";
/// Which attempt this is (1 for the first).
pub const ATTEMPT_HEADER: &str = "x-berth-attempt";
/// The webhook's name.
pub const WEBHOOK_HEADER: &str = "x-berth-webhook";

/// Bounds and timing of delivery.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// Deliveries queued at most; beyond it the oldest are dropped (and counted).
    pub max_pending: u64,
    /// A delivery is given up after this many attempts...
    pub max_attempts: u32,
    /// ...or once it is this old.
    pub max_age: Duration,
    /// The first retry's delay; each further one doubles it, up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// One attempt's bound (connect, send, answer).
    pub timeout: Duration,
    /// Deliveries in flight at once (per node).
    pub concurrency: usize,
    /// How often the queue is looked at when nothing woke the worker (other nodes' events,
    /// retries coming due).
    pub poll: Duration,
    /// Extra CA certificates (PEM) trusted for https receivers, beside the system roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            max_pending: 10_000,
            max_attempts: 300,
            max_age: Duration::from_secs(24 * 3600),
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            concurrency: 8,
            poll: Duration::from_secs(1),
            ca_file: None,
        }
    }
}

/// Counts since this process started (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookCounters {
    /// Events queued (one per webhook an event went to).
    pub queued: u64,
    /// Events dropped: the queue was full (the oldest went), or queuing failed.
    pub dropped: u64,
    /// Deliveries the receiver accepted.
    pub delivered: u64,
    /// Failed attempts that will be retried.
    pub retried: u64,
    /// Deliveries given up (too many attempts, too old).
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    dropped: AtomicU64,
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
}

/// A webhook as the server uses it (the secret still sealed).
#[derive(Debug, Clone)]
pub(crate) struct Hook {
    pub name: String,
    pub uri: String,
    pub actions: Vec<Action>,
    pub scopes: Vec<RepositoryPattern>,
    /// Whether scopes were given (a stored pattern that no longer parses must not widen the
    /// webhook to every repository).
    pub scoped: bool,
    pub sealed_secret: bytes::Bytes,
}

impl Hook {
    fn from_record(r: &WebhookRecord) -> Self {
        Hook {
            name: r.name.clone(),
            uri: r.uri.clone(),
            actions: r.actions.iter().filter_map(|a| Action::parse(a)).collect(),
            // Validated when created; a pattern that no longer parses matches nothing.
            scopes: r
                .scopes
                .iter()
                .filter_map(|s| RepositoryPattern::parse(s).ok())
                .collect(),
            scoped: !r.scopes.is_empty(),
            sealed_secret: r.secret.clone(),
        }
    }

    fn wants(&self, action: Action, repository: &str) -> bool {
        self.actions.contains(&action)
            && (!self.scoped || self.scopes.iter().any(|p| p.matches(repository)))
    }
}

/// A setting changed with every webhook change. Settings are kept coherent across a cluster's
/// nodes (the distributed store's writes wait until every node's copy follows), so a node reads
/// the webhook list again as soon as any node changed it, and otherwise not at all.
const GENERATION: &str = "webhooks.generation";
/// The copy is read again after this long even without a change (a safety net only).
const HOOKS_TTL: Duration = Duration::from_secs(60);

/// The webhook list as of a generation ([`GENERATION`]), and when it was read.
type HookCache = (Instant, Option<String>, Arc<Vec<Hook>>);

/// The webhook service of one server.
pub struct Webhooks {
    store: Arc<dyn WebhookStore>,
    settings: Arc<dyn berth_storage::SettingsStore>,
    vault: berth_trust::KeyVault,
    opts: WebhookOptions,
    source: Source,
    /// `https`, or `http` behind a TLS proxy: for the URLs in events.
    scheme: &'static str,
    hooks: std::sync::Mutex<Option<HookCache>>,
    wake: tokio::sync::Notify,
    counters: Counters,
    http: reqwest::Client,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// 16 random bytes as a UUID-shaped string (version 4), for event and request ids.
pub(crate) fn random_id() -> String {
    let mut b = [0u8; 16];
    // The system RNG failing is not something to stop a request for; ids stay unique enough
    // with the time mixed in.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = t.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        h.get(0..8).unwrap_or(""),
        h.get(8..12).unwrap_or(""),
        h.get(12..16).unwrap_or(""),
        h.get(16..20).unwrap_or(""),
        h.get(20..32).unwrap_or("")
    )
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds.
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{frac:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => secs.to_string(),
    }
}

/// `sha256=<hex>`: the signature header's value for `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// Whether `header` (`sha256=<hex>`) is the signature of `body` under `secret`, compared in
/// constant time: what a receiver written in Rust does with a delivery.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(given) = header
        .trim()
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let Ok(mut m) = <HmacSha256 as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    m.update(body);
    m.verify_slice(&given).is_ok()
}

/// The associated data a webhook's secret is sealed with: a sealed secret moved to another
/// webhook's row does not unseal.
fn secret_aad(name: &str) -> Vec<u8> {
    format!("berth webhook secret:{name}").into_bytes()
}

/// A URI as logs and the audit log show it: without its query (receivers put tokens there).
pub(crate) fn shown_uri(uri: &str) -> String {
    match uri.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => uri.to_owned(),
    }
}

/// Checks a receiver URI: absolute http(s) with a host, no credentials, no fragment.
pub(crate) fn check_uri(uri: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(uri).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("scheme {:?}: use http or https", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(
            "credentials in the URL would be stored and shown: the receiver checks the signature header instead"
                .into(),
        );
    }
    if u.fragment().is_some() {
        return Err("a fragment (#…) is never sent to a server".into());
    }
    Ok(())
}

/// Builds the delivery client: rustls with the system roots plus `ca_file`, no redirects, a
/// bound on each attempt.
fn http_client(opts: &WebhookOptions) -> Result<reqwest::Client, String> {
    // reqwest is built without a provider of its own: ring, as everywhere in Berth.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(opts.timeout)
        .connect_timeout(opts.timeout)
        .user_agent(concat!("berth-webhooks/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &opts.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("reading {}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: not a PEM certificate: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: holds no certificate", ca.display()));
        }
        b = b.tls_certs_merge(certs);
    }
    b.build()
        .map_err(|e| format!("setting up the HTTP client: {e}"))
}

impl Webhooks {
    /// `source_addr`: `host:port` this server is reached at (the `source` of its events).
    pub fn new(
        store: Arc<dyn WebhookStore>,
        settings: Arc<dyn berth_storage::SettingsStore>,
        vault: berth_trust::KeyVault,
        opts: WebhookOptions,
        source_addr: String,
        scheme: &'static str,
    ) -> Result<Arc<Self>, String> {
        let http = http_client(&opts)?;
        Ok(Arc::new(Webhooks {
            store,
            settings,
            vault,
            source: Source {
                addr: source_addr,
                instance_id: random_id(),
            },
            scheme,
            opts,
            hooks: std::sync::Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            counters: Counters::default(),
            http,
        }))
    }

    /// Starts the delivery worker (a task on the current runtime).
    pub fn start(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move { deliver::run(me).await });
    }

    pub fn counters(&self) -> WebhookCounters {
        let c = &self.counters;
        WebhookCounters {
            queued: c.queued.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }

    /// Deliveries waiting in the store's queue (every node's).
    pub async fn pending(&self) -> Result<u64, berth_storage::Error> {
        self.store.webhook_pending().await
    }

    fn invalidate(&self) {
        *self.hooks.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Tells every node that the webhook list changed (after the change is stored).
    async fn changed(&self) {
        self.invalidate();
        if let Err(e) = self.settings.setting_set(GENERATION, &random_id()).await {
            // This node re-reads at once; the others within HOOKS_TTL.
            tracing::warn!(error = %e, "webhooks: announcing a webhook change to the other nodes");
        }
    }

    /// The configured webhooks, read again when any node changed them (see [`GENERATION`]).
    pub(crate) async fn hooks(&self) -> Result<Arc<Vec<Hook>>, berth_storage::Error> {
        let generation = self.settings.setting_get(GENERATION).await?;
        if let Some((at, seen, hooks)) = &*self.hooks.lock().unwrap_or_else(|p| p.into_inner())
            && *seen == generation
            && at.elapsed() < HOOKS_TTL
        {
            return Ok(hooks.clone());
        }
        let list: Vec<Hook> = self
            .store
            .webhook_list()
            .await?
            .iter()
            .map(|(r, _)| Hook::from_record(r))
            .collect();
        let list = Arc::new(list);
        *self.hooks.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), generation, list.clone()));
        Ok(list)
    }

    /// Queues `event` for every webhook that wants it. Waits for the queue's write (so an event
    /// whose response the client saw survives a crash), never for a receiver; failures are
    /// logged and counted as dropped, never the request's.
    pub async fn emit(&self, event: Event, cx: &EventContext) {
        let hooks = match self.hooks().await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, action = event.action().as_str(), "webhooks: reading the webhook list; event dropped");
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let action = event.action();
        let repo = event.repository().to_owned();
        let wanted: Vec<&Hook> = hooks.iter().filter(|h| h.wants(action, &repo)).collect();
        if wanted.is_empty() {
            return;
        }
        let rendered = event::render(&event, cx, &self.source, self.scheme, &rfc3339_ms(now_ms()));
        let mut items = Vec::with_capacity(rendered.len().saturating_mul(wanted.len()));
        for r in &rendered {
            let payload = bytes::Bytes::from(r.body.clone());
            for h in &wanted {
                items.push(NewDelivery {
                    webhook: h.name.clone(),
                    event_id: r.id.clone(),
                    payload: payload.clone(),
                });
            }
        }
        let n = u64::try_from(items.len()).unwrap_or(u64::MAX);
        match self
            .store
            .webhook_enqueue(&items, self.opts.max_pending)
            .await
        {
            Ok(dropped) => {
                self.counters.queued.fetch_add(n, Ordering::Relaxed);
                if dropped > 0 {
                    self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
                    tracing::warn!(
                        dropped,
                        max_pending = self.opts.max_pending,
                        "webhooks: the event queue is full; dropped the oldest events (are the receivers down?)"
                    );
                }
                self.wake.notify_one();
            }
            Err(e) => {
                self.counters.dropped.fetch_add(n, Ordering::Relaxed);
                tracing::error!(error = %e, action = action.as_str(), repository = %repo, "webhooks: queuing an event failed; dropped");
            }
        }
    }

    fn seal(&self, name: &str, secret: &[u8]) -> Result<Vec<u8>, berth_trust::Error> {
        self.vault.seal(secret, &secret_aad(name))
    }

    fn unseal(
        &self,
        name: &str,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, berth_trust::Error> {
        self.vault.unseal(sealed, &secret_aad(name))
    }
}

/// Whether some webhook wants `action` events of `repository` (to skip work that only an event
/// needs, such as a tag's digest before its delete).
pub async fn wanted(state: &crate::AppState, action: Action, repository: &str) -> bool {
    let Some(w) = state.webhooks() else {
        return false;
    };
    match w.hooks().await {
        Ok(h) => h.iter().any(|h| h.wants(action, repository)),
        // emit() reports the failure.
        Err(_) => true,
    }
}

/// [`emit`] for callers that cannot wait (a synchronous refusal path, such as the signing
/// policy's): queued by a task of its own, so an event whose response went out before the queue
/// write may be lost in a crash at that instant.
pub fn emit_detached(state: &crate::AppState, event: Event, cx: EventContext) {
    if let Some(w) = state.webhooks() {
        let w = w.clone();
        tokio::spawn(async move { w.emit(event, &cx).await });
    }
}

/// Emits `event` through the state's webhooks, if this server runs them.
pub async fn emit(state: &crate::AppState, event: Event, cx: &EventContext) {
    if let Some(w) = state.webhooks() {
        w.emit(event, cx).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_the_same_body_and_secret() {
        let s = sign(b"k", b"{\"events\":[]}");
        assert!(s.starts_with("sha256="));
        assert_eq!(s.len(), 7 + 64);
        assert!(verify(b"k", b"{\"events\":[]}", &s));
        assert!(!verify(b"k", b"{\"events\":[] }", &s));
        assert!(!verify(b"K", b"{\"events\":[]}", &s));
        assert!(!verify(b"k", b"{\"events\":[]}", "sha256=00"));
        assert!(!verify(
            b"k",
            b"{\"events\":[]}",
            s.trim_start_matches("sha256=")
        ));
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn receiver_uris_are_checked() {
        assert!(check_uri("https://hooks.example/x?token=1").is_ok());
        assert!(check_uri("http://127.0.0.1:9000/").is_ok());
        assert!(check_uri("ftp://x/").is_err());
        assert!(check_uri("https://user:pw@x/").is_err());
        assert!(check_uri("https://user@x/").is_err());
        assert!(check_uri("https://x/#frag").is_err());
        assert!(check_uri("not a url").is_err());
        assert!(check_uri("file:///etc/passwd").is_err());
        assert_eq!(shown_uri("https://x/a?token=s3cret"), "https://x/a?…");
    }

    fn push(repo: &str, tag: &str) -> Event {
        Event::Push {
            repository: repo.into(),
            digest: "sha256:00".into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 1,
            tags: vec![tag.into()],
        }
    }

    /// What emit queues (only for webhooks that want the event), and the counters of a full
    /// queue: the oldest go, counted as dropped.
    #[tokio::test]
    async fn emit_queues_for_matching_webhooks_and_counts_what_a_full_queue_drops() {
        use berth_storage::WebhookStore as _;
        let store = Arc::new(berth_storage::memory::MemoryStore::new());
        let vault = berth_trust::KeyVault::from_passphrase(b"pw", &[7u8; 32]).unwrap();
        let opts = WebhookOptions {
            max_pending: 3,
            ..WebhookOptions::default()
        };
        let w = Webhooks::new(
            store.clone(),
            store.clone(),
            vault,
            opts,
            "reg:5000".into(),
            "https",
        )
        .unwrap();
        let cx = EventContext::default();
        // No webhook: nothing queued, nothing counted.
        w.emit(push("team/app", "v0"), &cx).await;
        assert_eq!(w.counters(), WebhookCounters::default());
        for (name, actions, scopes) in [
            ("all", vec!["push"], vec![]),
            ("team", vec!["push"], vec!["team/*"]),
            ("deletes", vec!["delete"], vec![]),
        ] {
            let sealed = w.seal(name, b"secret").unwrap();
            store
                .webhook_insert(&WebhookRecord {
                    name: name.into(),
                    uri: "http://127.0.0.1:9/".into(),
                    actions: actions.into_iter().map(String::from).collect(),
                    scopes: scopes.into_iter().map(String::from).collect(),
                    secret: sealed.into(),
                    created: 0,
                    created_by: "owner".into(),
                })
                .await
                .unwrap();
        }
        // Stored behind the service's back (as another node would): seen once announced.
        w.emit(push("team/app", "v0"), &cx).await;
        assert_eq!(
            w.counters().queued,
            0,
            "the list read before is still current"
        );
        w.changed().await;
        w.emit(push("team/app", "v1"), &cx).await;
        w.emit(push("other/app", "v1"), &cx).await;
        let now = now_ms();
        let queued: Vec<(String, String)> = store
            .webhook_due(now, now, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|d| {
                let v: serde_json::Value = serde_json::from_slice(&d.payload).unwrap();
                let repo = v["events"][0]["target"]["repository"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                (d.webhook, repo)
            })
            .collect();
        assert_eq!(
            queued,
            [
                ("all".to_owned(), "team/app".to_owned()),
                ("team".to_owned(), "team/app".to_owned()),
                ("all".to_owned(), "other/app".to_owned()),
            ]
        );
        assert_eq!(w.counters().queued, 3);
        assert_eq!(w.counters().dropped, 0);
        // Two more for a queue of three: the two oldest go.
        w.emit(push("team/app", "v2"), &cx).await;
        assert_eq!(w.counters().queued, 5);
        assert_eq!(w.counters().dropped, 2);
        assert_eq!(w.pending().await.unwrap(), 3);
        // The sealed secret opens only under its own webhook's name.
        let rec = store.webhook_get("all").await.unwrap().unwrap();
        assert_eq!(&*w.unseal("all", &rec.secret).unwrap(), b"secret");
        assert!(w.unseal("team", &rec.secret).is_err());
    }

    #[test]
    fn hooks_match_by_action_and_scope() {
        let h = Hook {
            name: "h".into(),
            uri: "http://x/".into(),
            actions: vec![Action::Push],
            scopes: vec![
                RepositoryPattern::parse("team/*").unwrap(),
                RepositoryPattern::parse("other").unwrap(),
            ],
            scoped: true,
            sealed_secret: bytes::Bytes::new(),
        };
        assert!(h.wants(Action::Push, "team/app"));
        assert!(h.wants(Action::Push, "other"));
        assert!(!h.wants(Action::Push, "otherwise"));
        assert!(!h.wants(Action::Delete, "team/app"));
        let all = Hook {
            scopes: Vec::new(),
            scoped: false,
            ..h.clone()
        };
        assert!(all.wants(Action::Push, "anything"));
        let broken = Hook {
            scopes: Vec::new(),
            ..h
        };
        assert!(!broken.wants(Action::Push, "anything"));
        assert_eq!(random_id().len(), 36);
        assert_ne!(random_id(), random_id());
        assert_eq!(rfc3339_ms(1_764_583_200_123), "2025-12-01T10:00:00.123Z");
    }
}
