//! Webhooks and their delivery queue.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{MemoryStore, lock};
use crate::{Delivery, Error, NewDelivery, Result, WebhookRecord, WebhookStats, WebhookStore};

#[derive(Default)]
pub(super) struct WebhookState {
    hooks: BTreeMap<String, (WebhookRecord, WebhookStats)>,
    /// id -> queued delivery; a BTreeMap so the oldest come first.
    queue: BTreeMap<i64, Queued>,
    /// Ids are never reused (SQLite AUTOINCREMENT).
    last_id: i64,
}

struct Queued {
    d: Delivery,
    next_at: i64,
    lease_until: i64,
}

fn now_ms() -> i64 {
    super::now_nanos() / 1_000_000
}

impl WebhookState {
    fn stats(&mut self, hook: &str) -> Option<&mut WebhookStats> {
        self.hooks.get_mut(hook).map(|(_, s)| s)
    }
}

#[async_trait]
impl WebhookStore for MemoryStore {
    async fn webhook_insert(&self, rec: &WebhookRecord) -> Result<()> {
        let mut st = lock(&self.webhooks);
        if st.hooks.contains_key(&rec.name) {
            return Err(Error::Conflict(format!("webhook {:?}", rec.name)));
        }
        st.hooks
            .insert(rec.name.clone(), (rec.clone(), WebhookStats::default()));
        Ok(())
    }

    async fn webhook_get(&self, name: &str) -> Result<Option<WebhookRecord>> {
        Ok(lock(&self.webhooks).hooks.get(name).map(|(r, _)| r.clone()))
    }

    async fn webhook_list(&self) -> Result<Vec<(WebhookRecord, WebhookStats)>> {
        let st = lock(&self.webhooks);
        Ok(st
            .hooks
            .values()
            .map(|(r, s)| {
                let pending = st.queue.values().filter(|q| q.d.webhook == r.name).count();
                let stats = WebhookStats {
                    pending: pending as u64,
                    ..s.clone()
                };
                (r.clone(), stats)
            })
            .collect())
    }

    async fn webhook_delete(&self, name: &str) -> Result<bool> {
        let mut st = lock(&self.webhooks);
        if st.hooks.remove(name).is_none() {
            return Ok(false);
        }
        st.queue.retain(|_, q| q.d.webhook != name);
        Ok(true)
    }

    async fn webhook_enqueue(&self, items: &[NewDelivery], max_pending: u64) -> Result<u64> {
        let mut st = lock(&self.webhooks);
        let now = now_ms();
        for it in items {
            st.last_id = st.last_id.saturating_add(1);
            let id = st.last_id;
            st.queue.insert(
                id,
                Queued {
                    d: Delivery {
                        id,
                        webhook: it.webhook.clone(),
                        event_id: it.event_id.clone(),
                        payload: it.payload.clone(),
                        created: now,
                        attempts: 0,
                        last_error: None,
                    },
                    next_at: now,
                    lease_until: 0,
                },
            );
        }
        let mut dropped = 0u64;
        while st.queue.len() as u64 > max_pending {
            st.queue.pop_first();
            dropped += 1;
        }
        Ok(dropped)
    }

    async fn webhook_due(&self, now: i64, lease_until: i64, limit: usize) -> Result<Vec<Delivery>> {
        let mut st = lock(&self.webhooks);
        let mut out = Vec::new();
        for q in st.queue.values_mut() {
            if out.len() >= limit {
                break;
            }
            if q.next_at <= now && q.lease_until <= now {
                q.lease_until = lease_until;
                out.push(q.d.clone());
            }
        }
        Ok(out)
    }

    async fn webhook_done(&self, id: i64, _attempts: u32, now: i64) -> Result<()> {
        let mut st = lock(&self.webhooks);
        if let Some(q) = st.queue.remove(&id)
            && let Some(s) = st.stats(&q.d.webhook)
        {
            s.delivered += 1;
            s.last_attempt = Some(now);
            s.last_success = Some(now);
        }
        Ok(())
    }

    async fn webhook_retry(
        &self,
        id: i64,
        attempts: u32,
        next_at: i64,
        error: &str,
        now: i64,
    ) -> Result<()> {
        let mut st = lock(&self.webhooks);
        let Some(q) = st.queue.get_mut(&id) else {
            return Ok(());
        };
        q.d.attempts = attempts;
        q.d.last_error = Some(error.to_owned());
        q.next_at = next_at;
        q.lease_until = 0;
        let hook = q.d.webhook.clone();
        if let Some(s) = st.stats(&hook) {
            s.last_attempt = Some(now);
            s.last_error = Some(error.to_owned());
        }
        Ok(())
    }

    async fn webhook_drop(&self, id: i64, _attempts: u32, error: &str, now: i64) -> Result<()> {
        let mut st = lock(&self.webhooks);
        if let Some(q) = st.queue.remove(&id)
            && let Some(s) = st.stats(&q.d.webhook)
        {
            s.failed += 1;
            s.last_attempt = Some(now);
            s.last_error = Some(error.to_owned());
        }
        Ok(())
    }

    async fn webhook_pending(&self) -> Result<u64> {
        Ok(lock(&self.webhooks).queue.len() as u64)
    }
}
