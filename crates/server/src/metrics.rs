//! `/metrics`: this process's counters in the Prometheus text format (version 0.0.4).
//!
//! The counters are process-wide, like the in-flight count in `serve`: every request passes
//! through `serve`'s connection loop, which records it when its response body ends (so a blob
//! download's time and bytes are the whole transfer). Per node by design: Prometheus scrapes
//! each node and sums. Store sizes are read from the store (the same on every node), at most
//! every [`STORE_STATS_TTL`].
//!
//! Hot-path cost: a request adds to a few atomics and takes one uncontended mutex for its
//! (class, method, status) counter.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// Endpoint classes, the `class` label: low cardinality whatever the paths.
pub(crate) const CLASSES: [&str; 15] = [
    "ping",
    "catalog",
    "tags",
    "manifest",
    "blob",
    "upload",
    "referrers",
    "trust",
    "token",
    "admin",
    "health",
    "metrics",
    "ui",
    "other",
    "invalid",
];
const METHODS: [&str; 7] = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OTHER"];
/// Histogram bounds in seconds (`le`), +Inf implied.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// How long store figures are reused: they cost a count over the record tables.
const STORE_STATS_TTL: Duration = Duration::from_secs(15);

/// The class of a request path (`CLASSES` index).
pub(crate) fn classify(path: &str) -> usize {
    let name = match path {
        "/v2/" | "/v2" => "ping",
        "/v2/_catalog" => "catalog",
        "/healthz" | "/readyz" | "/_notary_server/health" => "health",
        "/metrics" => "metrics",
        _ => {
            if let Some(rest) = path.strip_prefix("/v2/") {
                if rest.contains("/_trust/") {
                    "trust"
                } else if rest.ends_with("/tags/list") {
                    "tags"
                } else if rest.contains("/manifests/") {
                    "manifest"
                } else if rest.contains("/blobs/uploads") {
                    "upload"
                } else if rest.contains("/blobs/") {
                    "blob"
                } else if rest.contains("/referrers/") {
                    "referrers"
                } else {
                    "other"
                }
            } else if path.starts_with("/oauth2/") {
                "token"
            } else if path.starts_with("/api/") {
                "admin"
            } else if path.starts_with('/') {
                // The web UI owns the rest of the namespace.
                "ui"
            } else {
                "invalid"
            }
        }
    };
    CLASSES.iter().position(|c| *c == name).unwrap_or(13)
}

fn method_index(m: &Method) -> usize {
    let name = m.as_str();
    METHODS
        .iter()
        .position(|x| *x == name)
        .unwrap_or(METHODS.len().saturating_sub(1))
}

struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        // Cumulative buckets are summed at render time: one add per observation.
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b)
            && let Some(b) = self.buckets.get(i)
        {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(us, Ordering::Relaxed);
    }
}

#[derive(Default, Clone)]
struct GcFigures {
    last_run: Option<(i64, f64)>,
    manifests: u64,
    blobs: u64,
    bytes: u64,
    orphaned: u64,
    uploads: u64,
}

type Renderer = Box<dyn Fn(&mut String) + Send + Sync>;

/// The process's counters.
pub struct Metrics {
    requests: Mutex<BTreeMap<(usize, usize, u16), u64>>,
    latency: [Histogram; CLASSES.len()],
    bytes_in: [AtomicU64; CLASSES.len()],
    bytes_out: [AtomicU64; CLASSES.len()],
    trust_updates: AtomicU64,
    trust_rejections: Mutex<BTreeMap<&'static str, u64>>,
    /// Registry attestations: [attached, failed].
    attestations: [AtomicU64; 2],
    policy_denials: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    gc_runs: [AtomicU64; 2],
    gc: Mutex<GcFigures>,
    store: tokio::sync::Mutex<Option<(Instant, berth_storage::StoreStats)>>,
    /// Extra series other parts of the server render (webhook queue figures, ...).
    extra: Mutex<Vec<Renderer>>,
}

static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(|| Metrics {
    requests: Mutex::default(),
    latency: std::array::from_fn(|_| Histogram::new()),
    bytes_in: Default::default(),
    bytes_out: Default::default(),
    trust_updates: AtomicU64::new(0),
    trust_rejections: Mutex::default(),
    attestations: Default::default(),
    policy_denials: Mutex::default(),
    gc_runs: Default::default(),
    gc: Mutex::default(),
    store: tokio::sync::Mutex::new(None),
    extra: Mutex::default(),
});

/// This process's counters.
pub fn global() -> &'static Metrics {
    &METRICS
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// One request, once its response body ended or was abandoned.
    pub(crate) fn request_done(
        &self,
        class: usize,
        method: &Method,
        status: u16,
        took: Duration,
        bytes_out: u64,
    ) {
        let mut requests = lock(&self.requests);
        let n = requests
            .entry((class, method_index(method), status))
            .or_insert(0);
        *n = n.saturating_add(1);
        drop(requests);
        if let Some(h) = self.latency.get(class) {
            h.observe(took);
        }
        if let Some(b) = self.bytes_out.get(class) {
            b.fetch_add(bytes_out, Ordering::Relaxed);
        }
    }

    /// Request-body bytes received for `class`.
    pub(crate) fn count_bytes_in(&self, class: usize, n: u64) {
        if let Some(b) = self.bytes_in.get(class) {
            b.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn trust_updated(&self) {
        self.trust_updates.fetch_add(1, Ordering::Relaxed);
    }

    /// A rejected trust publish, by its notary error code (`reason` label).
    pub(crate) fn trust_rejected(&self, reason: &'static str) {
        let mut m = lock(&self.trust_rejections);
        let n = m.entry(reason).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// A registry attestation attached (`ok`) or not (failed; the trust update stands).
    pub(crate) fn attestation(&self, ok: bool) {
        if let Some(n) = self.attestations.get(usize::from(!ok)) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A pull or push the repository's signing policy refused (`rule`: the policy's name,
    /// `reason`: a short fixed code).
    pub fn policy_denied(&self, rule: &'static str, reason: &'static str) {
        let mut m = lock(&self.policy_denials);
        let n = m.entry((rule, reason)).or_insert(0);
        *n = n.saturating_add(1);
    }

    pub(crate) fn gc_finished(&self, r: &berth_registry::GcReport, now: i64, took: Duration) {
        if let Some(n) = self.gc_runs.get(usize::from(r.dry_run)) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        let mut g = lock(&self.gc);
        g.last_run = Some((now, took.as_secs_f64()));
        if !r.dry_run {
            g.manifests = g.manifests.saturating_add(r.manifests);
            g.blobs = g.blobs.saturating_add(r.blobs);
            g.bytes = g.bytes.saturating_add(r.bytes);
            g.orphaned = g.orphaned.saturating_add(r.orphaned_blobs);
            g.uploads = g.uploads.saturating_add(r.uploads);
        }
    }

    /// Adds series rendered by `f` (called on every scrape) after the built-in ones.
    pub fn register(&self, f: impl Fn(&mut String) + Send + Sync + 'static) {
        lock(&self.extra).push(Box::new(f));
    }

    async fn store_stats(&self, state: &AppState) -> Option<berth_storage::StoreStats> {
        let mut cached = self.store.lock().await;
        if let Some((at, s)) = *cached
            && at.elapsed() < STORE_STATS_TTL
        {
            return Some(s);
        }
        match state.registry.metadata().stats().await {
            Ok(s) => {
                *cached = Some((Instant::now(), s));
                Some(s)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: store figures unavailable");
                None
            }
        }
    }

    /// The whole exposition.
    pub async fn render(&self, state: &AppState) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_requests(&mut out);
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut out,
            "berth_http_requests_in_flight",
            "Requests being served, response bodies included.",
            u64::try_from(crate::requests_in_flight()).unwrap_or(u64::MAX),
        );
        gauge(
            &mut out,
            "berth_uploads_in_flight",
            "Request bodies being streamed into blob uploads.",
            u64::try_from(state.uploads_in_flight().total()).unwrap_or(u64::MAX),
        );
        let _ = writeln!(
            out,
            "# HELP berth_trust_updates_total Trust publishes accepted.\n\
             # TYPE berth_trust_updates_total counter\n\
             berth_trust_updates_total {}",
            self.trust_updates.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP berth_trust_rejections_total Trust publishes refused, by notary error code.\n\
             # TYPE berth_trust_rejections_total counter"
        );
        for (reason, n) in lock(&self.trust_rejections).iter() {
            let _ = writeln!(
                out,
                "berth_trust_rejections_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP berth_attestations_total Registry attestations of accepted trust updates, by outcome.\n\
             # TYPE berth_attestations_total counter"
        );
        for (i, outcome) in ["attached", "failed"].iter().enumerate() {
            let n = self
                .attestations
                .get(i)
                .map_or(0, |n| n.load(Ordering::Relaxed));
            let _ = writeln!(out, "berth_attestations_total{{outcome=\"{outcome}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP berth_policy_denials_total Pulls and pushes refused by a repository's signing policy.\n\
             # TYPE berth_policy_denials_total counter"
        );
        for ((rule, reason), n) in lock(&self.policy_denials).iter() {
            let _ = writeln!(
                out,
                "berth_policy_denials_total{{rule=\"{rule}\",reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP berth_login_failures_total Failed logins on this node, by reason.\n\
             # TYPE berth_login_failures_total counter"
        );
        for (reason, n) in state.access.login_failures() {
            let _ = writeln!(out, "berth_login_failures_total{{reason=\"{reason}\"}} {n}");
        }
        if let Some(s) = self.store_stats(state).await {
            for (name, help, v) in [
                ("repositories", "Repositories.", s.repositories),
                (
                    "manifests",
                    "Manifests (once per repository holding one).",
                    s.manifests,
                ),
                ("tags", "Tags.", s.tags),
                ("blobs", "Distinct blobs.", s.blobs),
                ("blob_bytes", "Bytes of the distinct blobs.", s.blob_bytes),
                ("upload_sessions", "Upload sessions open.", s.uploads),
            ] {
                gauge(&mut out, &format!("berth_store_{name}"), help, v);
            }
        }
        self.render_gc(&mut out);
        if let Some(w) = state.webhooks() {
            let c = w.counters();
            let _ = writeln!(
                out,
                "# HELP berth_webhook_events_total Webhook events on this node, by what became of them.\n\
                 # TYPE berth_webhook_events_total counter"
            );
            for (what, n) in [
                ("queued", c.queued),
                ("delivered", c.delivered),
                ("retried", c.retried),
                ("failed", c.failed),
                ("dropped", c.dropped),
            ] {
                let _ = writeln!(out, "berth_webhook_events_total{{outcome=\"{what}\"}} {n}");
            }
        }
        for f in lock(&self.extra).iter() {
            f(&mut out);
        }
        let _ = writeln!(
            out,
            "# HELP berth_build_info The running version.\n# TYPE berth_build_info gauge\n\
             berth_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out
    }

    fn render_requests(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP berth_http_requests_total Requests answered, by endpoint class, method and status.\n\
             # TYPE berth_http_requests_total counter"
        );
        for ((c, m, s), n) in lock(&self.requests).iter() {
            let (Some(class), Some(method)) = (CLASSES.get(*c), METHODS.get(*m)) else {
                continue;
            };
            let _ = writeln!(
                out,
                "berth_http_requests_total{{class=\"{class}\",method=\"{method}\",status=\"{s}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP berth_http_request_duration_seconds From a request's arrival to the end of its response body.\n\
             # TYPE berth_http_request_duration_seconds histogram"
        );
        for (class, h) in CLASSES.iter().zip(&self.latency) {
            let count = h.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let mut cumulative = 0u64;
            for (le, b) in BUCKETS.iter().zip(&h.buckets) {
                cumulative = cumulative.saturating_add(b.load(Ordering::Relaxed));
                let _ = writeln!(
                    out,
                    "berth_http_request_duration_seconds_bucket{{class=\"{class}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "berth_http_request_duration_seconds_bucket{{class=\"{class}\",le=\"+Inf\"}} {count}\n\
                 berth_http_request_duration_seconds_sum{{class=\"{class}\"}} {sum}\n\
                 berth_http_request_duration_seconds_count{{class=\"{class}\"}} {count}"
            );
        }
        for (name, help, series) in [
            (
                "berth_http_request_bytes_total",
                "Request body bytes received, by endpoint class.",
                &self.bytes_in,
            ),
            (
                "berth_http_response_bytes_total",
                "Response body bytes sent, by endpoint class.",
                &self.bytes_out,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (class, n) in CLASSES.iter().zip(series) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(out, "{name}{{class=\"{class}\"}} {n}");
                }
            }
        }
    }

    fn render_gc(&self, out: &mut String) {
        let g = lock(&self.gc).clone();
        let _ = writeln!(
            out,
            "# HELP berth_gc_runs_total Garbage collections run by this node.\n\
             # TYPE berth_gc_runs_total counter"
        );
        for (kind, n) in ["run", "dry-run"].iter().zip(&self.gc_runs) {
            let _ = writeln!(
                out,
                "berth_gc_runs_total{{kind=\"{kind}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        if let Some((at, secs)) = g.last_run {
            let _ = writeln!(
                out,
                "# HELP berth_gc_last_run_timestamp_seconds When this node's last collection ended.\n\
                 # TYPE berth_gc_last_run_timestamp_seconds gauge\n\
                 berth_gc_last_run_timestamp_seconds {at}\n\
                 # HELP berth_gc_last_run_duration_seconds How long it took.\n\
                 # TYPE berth_gc_last_run_duration_seconds gauge\n\
                 berth_gc_last_run_duration_seconds {secs}"
            );
        }
        for (what, help, v) in [
            ("manifests", "Untagged manifests removed.", g.manifests),
            ("blobs", "Blobs removed.", g.blobs),
            ("bytes", "Blob bytes freed.", g.bytes),
            (
                "orphaned_blobs",
                "Unrecorded blob files removed.",
                g.orphaned,
            ),
            ("uploads", "Abandoned uploads removed.", g.uploads),
        ] {
            let name = format!("berth_gc_removed_{what}_total");
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
    }
}

/// `GET /metrics` on the main port (for callers with the metrics grant) and on the
/// `--metrics-listen` address.
pub(crate) async fn handler(State(state): State<AppState>, req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let body = global().render(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The router of the separate metrics address: `/metrics` only, no authentication (bind it
/// where only the scraper reaches).
pub fn metrics_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(handler))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let c = |p| CLASSES[classify(p)];
        assert_eq!(c("/v2/"), "ping");
        assert_eq!(c("/v2/a/b/manifests/v1"), "manifest");
        assert_eq!(c("/v2/a/blobs/sha256:00"), "blob");
        assert_eq!(c("/v2/a/blobs/uploads/"), "upload");
        assert_eq!(c("/v2/a/blobs/uploads/x"), "upload");
        assert_eq!(c("/v2/a/tags/list"), "tags");
        assert_eq!(c("/v2/localhost:5000/a/_trust/tuf/root.json"), "trust");
        assert_eq!(c("/v2/a/referrers/sha256:00"), "referrers");
        assert_eq!(c("/oauth2/token"), "token");
        assert_eq!(c("/api/v1/gc"), "admin");
        assert_eq!(c("/readyz"), "health");
        assert_eq!(c("/metrics"), "metrics");
        assert_eq!(c("/"), "ui");
        assert_eq!(c("/v2/nothing"), "other");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_counted() {
        let h = Histogram::new();
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(1000));
        assert_eq!(h.count.load(Ordering::Relaxed), 3);
        assert_eq!(h.buckets[0].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[1].load(Ordering::Relaxed), 1);
        // Beyond the last bound: only in +Inf (the count).
        let in_buckets: u64 = h.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        assert_eq!(in_buckets, 2);
    }
}
