use async_trait::async_trait;
use bytes::Bytes;

use crate::Result;

/// A configured webhook: where events go, which ones, and the secret their signature uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    /// Unique name (what `berth webhook delete NAME` takes).
    pub name: String,
    /// The receiver's `http(s)://` URL.
    pub uri: String,
    /// Event actions sent (`push`, `delete`, `trust`, `policy`), in the order given.
    pub actions: Vec<String>,
    /// Repository patterns (`name`, `name/*`); empty: every repository.
    pub scopes: Vec<String>,
    /// The signing secret, sealed by the server: opaque to the store.
    pub secret: Bytes,
    /// Unix seconds.
    pub created: i64,
    pub created_by: String,
}

/// What deliveries to one webhook have done so far (kept beside it, updated by
/// [`WebhookStore::webhook_done`], [`WebhookStore::webhook_retry`] and
/// [`WebhookStore::webhook_drop`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Deliveries the receiver accepted.
    pub delivered: u64,
    /// Deliveries given up (too many attempts or too old).
    pub failed: u64,
    /// Deliveries waiting in the queue now (retries included).
    pub pending: u64,
    /// Unix milliseconds of the last attempt, successful or not.
    pub last_attempt: Option<i64>,
    /// Unix milliseconds of the last accepted delivery.
    pub last_success: Option<i64>,
    /// The last failure's reason (never cleared by a success, so it can be read afterwards).
    pub last_error: Option<String>,
}

/// One event for one webhook, to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub webhook: String,
    /// The event's id (the same for every webhook the event goes to).
    pub event_id: String,
    /// The exact request body to send (signed at sending time).
    pub payload: Bytes,
}

/// A queued delivery, as [`WebhookStore::webhook_due`] claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Increases with enqueue order.
    pub id: i64,
    pub webhook: String,
    pub event_id: String,
    pub payload: Bytes,
    /// Unix milliseconds it was queued.
    pub created: i64,
    /// Attempts made before this claim.
    pub attempts: u32,
    /// The last attempt's failure.
    pub last_error: Option<String>,
}

/// Webhook configuration and the outgoing event queue. The queue lives in the store so that a
/// restart (or a crash) loses no event, and so that nodes sharing one store share one queue:
/// a delivery is claimed with a lease ([`Self::webhook_due`]), and while the lease runs no other
/// claim returns it. Delivery is at least once: a node that dies mid-send leaves its claim to
/// expire, and the event is sent again.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Inserts a webhook; [`crate::Error::Conflict`] if the name is taken.
    async fn webhook_insert(&self, rec: &WebhookRecord) -> Result<()>;
    async fn webhook_get(&self, name: &str) -> Result<Option<WebhookRecord>>;
    /// Every webhook with its delivery statistics, ordered by name.
    async fn webhook_list(&self) -> Result<Vec<(WebhookRecord, WebhookStats)>>;
    /// Removes a webhook and every delivery queued for it; `Ok(false)` if there was none.
    async fn webhook_delete(&self, name: &str) -> Result<bool>;

    /// Queues deliveries (due at once). The queue holds at most `max_pending` deliveries: the
    /// oldest go to make room, and their number is returned (0 normally).
    async fn webhook_enqueue(&self, items: &[NewDelivery], max_pending: u64) -> Result<u64>;
    /// Claims up to `limit` deliveries that are due at `now` (Unix ms) and not under another
    /// claim, oldest first, each until `lease_until` (Unix ms). Two concurrent claims, from
    /// this store or another over the same data, never return the same delivery.
    async fn webhook_due(&self, now: i64, lease_until: i64, limit: usize) -> Result<Vec<Delivery>>;
    /// The receiver accepted delivery `id` (its `attempts`-th attempt, at `now`): it leaves the
    /// queue. Unknown ids (the webhook was deleted meanwhile) are ignored.
    async fn webhook_done(&self, id: i64, attempts: u32, now: i64) -> Result<()>;
    /// Delivery `id` failed after `attempts` attempts: try again at `next_at` (Unix ms). Its
    /// claim ends.
    async fn webhook_retry(
        &self,
        id: i64,
        attempts: u32,
        next_at: i64,
        error: &str,
        now: i64,
    ) -> Result<()>;
    /// Gives delivery `id` up (after `attempts` attempts, for `error`): it leaves the queue and
    /// counts as failed.
    async fn webhook_drop(&self, id: i64, attempts: u32, error: &str, now: i64) -> Result<()>;
    /// Deliveries in the queue, claimed or not.
    async fn webhook_pending(&self) -> Result<u64>;
}

/// Text columns hold lists joined by commas: neither actions nor repository patterns contain
/// one (validated by the server before anything is stored).
pub fn join_list(items: &[String]) -> String {
    items.join(",")
}

/// The inverse of [`join_list`].
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}
