//! Garbage collection as the server runs it: on request (`POST /api/v1/gc`, `berth gc`) and on
//! a schedule. The registry does the collecting; this adds what only the server knows: which
//! manifests signed trust data names (kept unless asked), the backup exclusion of the embedded
//! store, and the audit record.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use berth_oci::{Digest, RepoName};
use berth_registry::{GcOptions, GcReport};

use crate::AppState;

/// How collection behaves on this server.
#[derive(Debug, Clone)]
pub struct GcSettings {
    /// Blobs and manifests pushed, pinned or mounted more recently are never collected: it must
    /// exceed the longest push (first blob to manifest) clients make.
    pub grace: Duration,
    /// Upload sessions older than this are abandoned.
    pub upload_max_age: Duration,
    /// The embedded store's backup exclusion (`DIR/gc.lock`): a backup never misses a blob
    /// its database copy references. `None` on the distributed store.
    pub exclusion: Option<std::sync::Arc<dyn GcExclusion>>,
}

impl std::fmt::Debug for dyn GcExclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GcExclusion")
    }
}

impl Default for GcSettings {
    fn default() -> Self {
        GcSettings {
            grace: Duration::from_secs(24 * 3600),
            upload_max_age: Duration::from_secs(24 * 3600),
            exclusion: None,
        }
    }
}

/// One collection's choices.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcRequest {
    pub dry_run: bool,
    /// Also manifests no tag reaches.
    pub untagged: bool,
    /// With `untagged`: even those signed trust data names.
    pub include_signed: bool,
}

/// Runs one collection and audits it as `actor`.
pub(crate) async fn collect(
    state: &AppState,
    req: GcRequest,
    actor: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<GcReport, crate::error::AdminError> {
    let settings = &state.gc;
    let keep = if req.untagged && !req.include_signed {
        signed_manifests(state).await?
    } else {
        HashMap::new()
    };
    // Held for the whole collection, released on drop.
    let (lock, hold_blobs) = match &settings.exclusion {
        None => (None, None),
        Some(x) => match x.try_hold() {
            Ok(guard) => (Some(guard), None),
            Err(why) => (None, Some(why)),
        },
    };
    let opts = GcOptions {
        grace: i64::try_from(settings.grace.as_secs()).unwrap_or(i64::MAX),
        upload_max_age: i64::try_from(settings.upload_max_age.as_secs()).unwrap_or(i64::MAX),
        untagged: req.untagged,
        dry_run: req.dry_run,
        keep,
        hold_blobs,
    };
    let started = std::time::Instant::now();
    let report = state
        .registry
        .collect_garbage(&opts)
        .await
        .map_err(|e| match e {
            berth_registry::Error::Storage(s) => s.into(),
            other => crate::error::AdminError::internal(other),
        })?;
    drop(lock);
    crate::metrics::global().gc_finished(&report, state.registry.now(), started.elapsed());
    let detail = describe(&report);
    tracing::info!(
        dry_run = report.dry_run,
        manifests = report.manifests,
        blobs = report.blobs,
        bytes = report.bytes,
        uploads = report.uploads,
        orphaned = report.orphaned_blobs,
        ms = started.elapsed().as_millis() as u64,
        "garbage collection"
    );
    let action = if req.dry_run { "gc.dry-run" } else { "gc.run" };
    state
        .access
        .audit(actor, action, "registry", ip, &detail)
        .await;
    Ok(report)
}

/// The report in one line (audit detail, logs).
pub fn describe(r: &GcReport) -> String {
    let mut s = format!(
        "{}manifests={} blobs={} bytes={} orphaned_blobs={} uploads={}",
        if r.dry_run { "dry run: " } else { "" },
        r.manifests,
        r.blobs,
        r.bytes,
        r.orphaned_blobs,
        r.uploads
    );
    if let Some(why) = &r.blobs_skipped {
        s.push_str(&format!(" (blobs not swept: {why})"));
    }
    s
}

/// Something that must see every blob stay while it runs (the embedded store's backup, which
/// holds `DIR/gc.lock` shared). Blobs are swept only while [`GcExclusion::try_hold`] holds.
pub trait GcExclusion: Send + Sync + 'static {
    /// A guard held for the collection, or `Err(why)` when blobs must not be deleted now.
    fn try_hold(&self) -> Result<Box<dyn Send>, String>;
}

/// Per repository of this registry, the manifest digests its GUNs' current targets name.
async fn signed_manifests(
    state: &AppState,
) -> Result<HashMap<RepoName, HashSet<Digest>>, crate::error::AdminError> {
    let mut keep: HashMap<RepoName, HashSet<Digest>> = HashMap::new();
    for gun in state.trust.guns().await? {
        let Some(repo) = state.guns.repository(&gun) else {
            continue;
        };
        let hashes = state.trust.signed_sha256(&gun).await?;
        let set = keep.entry(repo).or_default();
        for h in hashes {
            if let Ok(d) = format!("sha256:{}", hex(&h)).parse::<Digest>() {
                set.insert(d);
            }
        }
    }
    Ok(keep)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Collects every `every` (the first run after one interval), as `actor` `"berth-gc"`.
pub fn schedule(state: AppState, every: Duration, untagged: bool) {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now()
            .checked_add(every)
            .unwrap_or_else(tokio::time::Instant::now);
        let mut tick = tokio::time::interval_at(start, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let req = GcRequest {
                dry_run: false,
                untagged,
                include_signed: false,
            };
            if let Err(e) = collect(&state, req, "berth-gc", None).await {
                tracing::warn!(error = ?e, "scheduled garbage collection failed");
            }
        }
    });
}
