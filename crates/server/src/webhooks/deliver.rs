//! The delivery worker: claims due deliveries from the store's queue, POSTs them signed, and
//! records the outcome (done, retry with exponential backoff, or given up).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use berth_storage::Delivery;

use super::{
    ATTEMPT_HEADER, EVENT_HEADER, SIGNATURE_HEADER, WEBHOOK_HEADER, Webhooks, event, now_ms,
    shown_uri, sign,
};

/// How long a claim holds a delivery: well past one attempt's bound, so a live node always
/// records the outcome first; a dead node's claims are free again after it.
fn lease(opts: &super::WebhookOptions) -> i64 {
    let ms = opts.timeout.saturating_mul(3).as_millis();
    i64::try_from(ms).unwrap_or(i64::MAX).max(30_000)
}

/// The delay before attempt `attempts + 1`, after `attempts` failed ones.
pub(crate) fn backoff(opts: &super::WebhookOptions, attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    opts.retry_base
        .saturating_mul(1u32 << exp)
        .min(opts.retry_cap)
}

pub(super) async fn run(w: Arc<Webhooks>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(w.opts.concurrency.max(1)));
    loop {
        // Claim only what can be sent now: a claimed delivery waiting for a slot would hold
        // its lease for nothing.
        let free = slots.available_permits();
        if free == 0 {
            // The semaphore is never closed.
            let _ = slots.acquire().await;
            continue;
        }
        let now = now_ms();
        let due = match w
            .store
            .webhook_due(now, now.saturating_add(lease(&w.opts)), free)
            .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: reading the queue failed; trying again");
                tokio::time::sleep(w.opts.poll).await;
                continue;
            }
        };
        if due.is_empty() {
            tokio::select! {
                () = w.wake.notified() => {}
                () = tokio::time::sleep(w.opts.poll) => {}
            }
            continue;
        }
        for d in due {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let w = w.clone();
            tokio::spawn(async move {
                attempt(&w, d).await;
                drop(slot);
            });
        }
    }
}

/// One attempt at one delivery, with its outcome recorded.
async fn attempt(w: &Webhooks, d: Delivery) {
    let attempts = d.attempts.saturating_add(1);
    let hooks = match w.hooks().await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "webhooks: reading the webhook list");
            record_failure(w, &d, attempts, &format!("reading the webhook list: {e}")).await;
            return;
        }
    };
    let hook = match hooks.iter().find(|h| h.name == d.webhook) {
        Some(h) => h.clone(),
        None => {
            // Created on another node a moment ago, or deleted: look again, uncached.
            w.invalidate();
            match w
                .hooks()
                .await
                .ok()
                .and_then(|hs| hs.iter().find(|h| h.name == d.webhook).cloned())
            {
                Some(h) => h,
                None => {
                    // Deleted: its queue went with it; this one was claimed just before.
                    let _ = w
                        .store
                        .webhook_drop(d.id, d.attempts, "the webhook was deleted", now_ms())
                        .await;
                    return;
                }
            }
        }
    };
    let secret = match w.unseal(&hook.name, &hook.sealed_secret) {
        Ok(s) => s,
        Err(e) => {
            let why = format!("cannot unseal the webhook's secret: {e}");
            tracing::error!(webhook = %hook.name, "webhooks: {why}");
            record_failure(w, &d, attempts, &why).await;
            return;
        }
    };
    let signature = sign(&secret, &d.payload);
    drop(secret);
    let sent = w
        .http
        .post(&hook.uri)
        .header(reqwest::header::CONTENT_TYPE, event::EVENTS_MEDIA_TYPE)
        .header(SIGNATURE_HEADER, signature)
        .header(EVENT_HEADER, &d.event_id)
        .header(ATTEMPT_HEADER, attempts.to_string())
        .header(WEBHOOK_HEADER, &hook.name)
        .body(d.payload.clone())
        .send()
        .await;
    let outcome = match sent {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => {
            let status = resp.status();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| format!(" (redirects are not followed: to {})", shown_uri(l)))
                .unwrap_or_default();
            Err(format!("the receiver answered {status}{location}"))
        }
        // Without the URL: its query may hold the receiver's token.
        Err(e) => Err(error_chain(&e.without_url())),
    };
    match outcome {
        Ok(()) => {
            w.counters.delivered.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(webhook = %hook.name, event = %d.event_id, attempts, "webhook delivered");
            if let Err(e) = w.store.webhook_done(d.id, attempts, now_ms()).await {
                // The claim runs out and the event is sent again: at least once.
                tracing::warn!(error = %e, webhook = %hook.name, "webhooks: recording a delivery failed; it will be sent again");
            }
        }
        Err(why) => {
            tracing::debug!(webhook = %hook.name, uri = %shown_uri(&hook.uri), attempts, error = %why, "webhook attempt failed");
            record_failure(w, &d, attempts, &why).await;
        }
    }
}

/// A failed attempt: retried after the backoff, or given up once too many or too old.
async fn record_failure(w: &Webhooks, d: &Delivery, attempts: u32, why: &str) {
    let now = now_ms();
    let age = Duration::from_millis(u64::try_from(now.saturating_sub(d.created)).unwrap_or(0));
    let next = now
        .saturating_add(i64::try_from(backoff(&w.opts, attempts).as_millis()).unwrap_or(i64::MAX));
    let too_old = age.saturating_add(backoff(&w.opts, attempts)) > w.opts.max_age;
    let result = if attempts >= w.opts.max_attempts || too_old {
        w.counters.failed.fetch_add(1, Ordering::Relaxed);
        let reason = format!(
            "gave up after {attempts} attempt(s) over {}s: {why}",
            age.as_secs()
        );
        tracing::warn!(webhook = %d.webhook, event = %d.event_id, "webhooks: {reason}");
        w.store.webhook_drop(d.id, attempts, &reason, now).await
    } else {
        w.counters.retried.fetch_add(1, Ordering::Relaxed);
        w.store.webhook_retry(d.id, attempts, next, why, now).await
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, webhook = %d.webhook, "webhooks: recording a failed attempt failed");
    }
}

/// A reqwest error with its causes ("connection refused", "invalid peer certificate").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_to_the_cap() {
        let o = super::super::WebhookOptions::default();
        let secs: Vec<u64> = (1..=11).map(|a| backoff(&o, a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(&o, 200).as_secs(), 300);
        assert!(lease(&o) >= 30_000);
    }
}
