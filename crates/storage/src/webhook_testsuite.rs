//! Conformance rules of [`WebhookStore`] (re-exported by [`crate::testsuite`]).

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::{Error, NewDelivery, WebhookRecord, WebhookStore};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn hook(name: &str, scopes: &[&str]) -> WebhookRecord {
    WebhookRecord {
        name: name.into(),
        uri: format!("https://receiver.example/{name}"),
        actions: vec!["push".into(), "delete".into()],
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        secret: Bytes::from_static(b"\x00sealed\xffsecret"),
        created: 1_700_000_000,
        created_by: "owner".into(),
    }
}

fn delivery(hook: &str, event: &str) -> NewDelivery {
    NewDelivery {
        webhook: hook.into(),
        event_id: event.into(),
        payload: Bytes::from(format!("{{\"events\":[{{\"id\":\"{event}\"}}]}}\n\u{0}")),
    }
}

/// Configuration, claiming with leases, retries, completion, giving up, the bound and deletion.
pub async fn run_webhooks(s: &dyn WebhookStore) {
    // Configuration.
    assert!(s.webhook_list().await.unwrap().is_empty());
    s.webhook_insert(&hook("b-hook", &[])).await.unwrap();
    s.webhook_insert(&hook("a-hook", &["team/app", "team/*"]))
        .await
        .unwrap();
    assert!(matches!(
        s.webhook_insert(&hook("a-hook", &[])).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        s.webhook_get("a-hook").await.unwrap(),
        Some(hook("a-hook", &["team/app", "team/*"])),
        "read back exactly, the sealed secret's bytes included"
    );
    assert_eq!(s.webhook_get("nope").await.unwrap(), None);
    let listed = s.webhook_list().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|(r, _)| r.name.as_str())
            .collect::<Vec<_>>(),
        ["a-hook", "b-hook"]
    );
    assert_eq!(listed[1].0, hook("b-hook", &[]));
    assert_eq!(listed[0].1, crate::WebhookStats::default());
    assert_eq!(s.webhook_pending().await.unwrap(), 0);

    // Queue and claim: oldest first, each claimed once while its lease runs.
    let t0 = now_ms();
    let dropped = s
        .webhook_enqueue(
            &[
                delivery("a-hook", "e1"),
                delivery("b-hook", "e1"),
                delivery("a-hook", "e2"),
            ],
            100,
        )
        .await
        .unwrap();
    assert_eq!(dropped, 0);
    s.webhook_enqueue(&[delivery("a-hook", "e3")], 100)
        .await
        .unwrap();
    assert_eq!(s.webhook_pending().await.unwrap(), 4);
    let now = now_ms();
    let first = s.webhook_due(now, now + 60_000, 2).await.unwrap();
    assert_eq!(
        first
            .iter()
            .map(|d| (d.webhook.as_str(), d.event_id.as_str()))
            .collect::<Vec<_>>(),
        [("a-hook", "e1"), ("b-hook", "e1")]
    );
    assert!(first[0].id < first[1].id);
    assert_eq!(first[0].payload, delivery("a-hook", "e1").payload);
    assert_eq!(first[0].attempts, 0);
    assert_eq!(first[0].last_error, None);
    assert!(
        first[0].created >= t0 - 1000 && first[0].created <= now + 1000,
        "created {} not near {t0}..{now}",
        first[0].created
    );
    let second = s.webhook_due(now, now + 60_000, 10).await.unwrap();
    assert_eq!(
        second
            .iter()
            .map(|d| d.event_id.as_str())
            .collect::<Vec<_>>(),
        ["e2", "e3"]
    );
    assert!(
        s.webhook_due(now, now + 60_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "everything is claimed"
    );
    let pending = s.webhook_list().await.unwrap();
    assert_eq!(pending[0].1.pending, 3);
    assert_eq!(pending[1].1.pending, 1);

    // A retry ends the claim and waits for its time; it carries the attempt count and error.
    let e1 = &first[0];
    s.webhook_retry(e1.id, 1, now + 5_000, "HTTP 500", now)
        .await
        .unwrap();
    assert!(
        s.webhook_due(now + 4_999, now + 70_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = s.webhook_due(now + 5_000, now + 70_000, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, e1.id);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].last_error.as_deref(), Some("HTTP 500"));
    let a = &s.webhook_list().await.unwrap()[0].1;
    assert_eq!(a.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(a.last_attempt, Some(now));
    assert_eq!(a.delivered, 0);

    // Done: out of the queue, counted.
    s.webhook_done(e1.id, 2, now + 5_001).await.unwrap();
    // A claim whose lease ran out (its node died) is claimed again.
    let expired = s
        .webhook_due(now + 60_000, now + 120_000, 10)
        .await
        .unwrap();
    assert_eq!(
        expired.iter().map(|d| d.id).collect::<BTreeSet<_>>(),
        [first[1].id, second[0].id, second[1].id].into()
    );
    // Given up: out of the queue, counted as failed with its reason.
    s.webhook_drop(second[0].id, 7, "too old", now + 60_001)
        .await
        .unwrap();
    // Unknown ids are no error (the webhook was deleted meanwhile).
    s.webhook_done(i64::MAX, 1, now).await.unwrap();
    s.webhook_retry(i64::MAX, 1, now, "x", now).await.unwrap();
    s.webhook_drop(i64::MAX, 1, "x", now).await.unwrap();
    let listed = s.webhook_list().await.unwrap();
    let a = &listed[0].1;
    assert_eq!(
        (a.delivered, a.failed, a.pending),
        (1, 1, 1),
        "{a:?} (e3 is left)"
    );
    assert_eq!(a.last_success, Some(now + 5_001));
    assert_eq!(a.last_attempt, Some(now + 60_001));
    assert_eq!(a.last_error.as_deref(), Some("too old"));
    assert_eq!(s.webhook_pending().await.unwrap(), 2);

    // The bound: the oldest go.
    let many: Vec<NewDelivery> = (0..5)
        .map(|i| delivery("b-hook", &format!("bulk{i}")))
        .collect();
    let dropped = s.webhook_enqueue(&many, 4).await.unwrap();
    assert_eq!(dropped, 3, "2 queued + 5 new, room for 4");
    assert_eq!(s.webhook_pending().await.unwrap(), 4);
    let later = now + 200_000;
    let left: Vec<String> = s
        .webhook_due(later, later + 1, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.event_id)
        .collect();
    assert_eq!(left, ["bulk1", "bulk2", "bulk3", "bulk4"]);

    // Deleting a webhook removes its queue; ids are not reused.
    s.webhook_enqueue(&[delivery("a-hook", "e9")], 100)
        .await
        .unwrap();
    assert!(s.webhook_delete("b-hook").await.unwrap());
    assert!(!s.webhook_delete("b-hook").await.unwrap());
    assert_eq!(s.webhook_get("b-hook").await.unwrap(), None);
    assert_eq!(s.webhook_pending().await.unwrap(), 1);
    let rest = s.webhook_due(later + 2, later + 3, 100).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].event_id, "e9");
    assert!(rest[0].id > e1.id);
    assert!(s.webhook_delete("a-hook").await.unwrap());
    assert_eq!(s.webhook_pending().await.unwrap(), 0);
    assert!(s.webhook_list().await.unwrap().is_empty());
}

/// Two stores over the same data (two nodes) claiming from one queue at once: every delivery
/// is claimed by exactly one of them.
pub async fn run_webhook_race<S: WebhookStore>(a: &S, b: &S) {
    a.webhook_insert(&hook("race", &[])).await.unwrap();
    let items: Vec<NewDelivery> = (0..300)
        .map(|i| delivery("race", &format!("r{i}")))
        .collect();
    for chunk in items.chunks(50) {
        assert_eq!(a.webhook_enqueue(chunk, 10_000).await.unwrap(), 0);
    }
    async fn claim_all<S: WebhookStore>(s: &S) -> Vec<i64> {
        let mut got = Vec::new();
        loop {
            let now = now_ms();
            let batch = s.webhook_due(now, now + 600_000, 7).await.unwrap();
            if batch.is_empty() {
                return got;
            }
            got.extend(batch.iter().map(|d| d.id));
            tokio::task::yield_now().await;
        }
    }
    let (x, y) = tokio::join!(claim_all(a), claim_all(b));
    let xs: BTreeSet<i64> = x.iter().copied().collect();
    let ys: BTreeSet<i64> = y.iter().copied().collect();
    assert_eq!(xs.len(), x.len(), "a claimed one delivery twice");
    assert_eq!(ys.len(), y.len(), "b claimed one delivery twice");
    assert!(
        xs.is_disjoint(&ys),
        "both claimed {:?}",
        xs.intersection(&ys).collect::<Vec<_>>()
    );
    assert_eq!(xs.len() + ys.len(), 300, "every delivery claimed");
    assert!(a.webhook_delete("race").await.unwrap());
}
