//! `/metrics` and `/readyz` as an operator uses them: a known workload, then the exposition
//! parsed and every figure the workload moved checked exactly (as differences from a scrape
//! before it); the separate `--metrics-listen` address; who may read the main port's copy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_harness::*;

/// One scrape: series (name with its labels, as printed) → value.
type Scrape = BTreeMap<String, f64>;

/// Parses the text format, checking what a Prometheus server would reject: every sample's
/// family has a TYPE line before it, names and values are well formed, no series twice.
fn parse(text: &str) -> Scrape {
    let mut typed = std::collections::HashSet::new();
    let mut out = Scrape::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "type {kind}"
            );
            assert!(typed.insert(name.to_owned()), "TYPE {name} twice");
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "{name} has no TYPE line before it");
        let v: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(out.insert(series.to_owned(), v).is_none(), "{series} twice");
    }
    out
}

fn get(s: &Scrape, series: &str) -> f64 {
    s.get(series).copied().unwrap_or(0.0)
}

async fn scrape(url: &str) -> Scrape {
    let r = reqwest::get(url).await.expect("scrape");
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    parse(&r.text().await.unwrap())
}

fn metrics_url(srv: &Server) -> String {
    let out = srv.stdout();
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("metrics on "))
        .unwrap_or_else(|| panic!("no `metrics on` line:\n{out}"));
    line.trim().to_owned()
}

/// The figures the workload should move, by how much.
fn expected(gun_updates: f64) -> Vec<(String, f64)> {
    let r = |class: &str, method: &str, status: u16| {
        format!(
            "berth_http_requests_total{{class=\"{class}\",method=\"{method}\",status=\"{status}\"}}"
        )
    };
    vec![
        (r("manifest", "GET", 200), 5.0),
        (r("manifest", "HEAD", 200), 2.0),
        (r("manifest", "GET", 404), 3.0),
        (r("manifest", "GET", 403), 1.0),
        (
            "berth_policy_denials_total{rule=\"signed-pulls-only\",reason=\"tag-unsigned\"}".into(),
            1.0,
        ),
        (r("upload", "POST", 202), 1.0),
        (r("upload", "PUT", 201), 1.0),
        (r("blob", "GET", 200), 1.0),
        (r("metrics", "GET", 401), 1.0),
        (r("metrics", "GET", 403), 1.0),
        (r("admin", "POST", 200), 1.0),
        (
            "berth_http_request_bytes_total{class=\"upload\"}".into(),
            1000.0,
        ),
        (
            "berth_http_response_bytes_total{class=\"blob\"}".into(),
            1000.0,
        ),
        (
            "berth_http_request_duration_seconds_count{class=\"manifest\"}".into(),
            11.0,
        ),
        (
            "berth_http_request_duration_seconds_bucket{class=\"manifest\",le=\"+Inf\"}".into(),
            11.0,
        ),
        (
            "berth_login_failures_total{reason=\"bad_credentials\"}".into(),
            2.0,
        ),
        ("berth_trust_updates_total".into(), gun_updates),
        (
            "berth_trust_rejections_total{reason=\"MALFORMED_UPLOAD\"}".into(),
            1.0,
        ),
        ("berth_gc_runs_total{kind=\"run\"}".into(), 1.0),
        ("berth_gc_runs_total{kind=\"dry-run\"}".into(), 0.0),
    ]
}

#[tokio::test]
async fn metrics_count_a_known_workload_exactly() {
    let srv = Server::start_with_auth_args(&["--metrics-listen", "127.0.0.1:0"]);
    let mut srv = srv;
    harness_acts_as(&mut srv, &Cred::owner());
    let url = metrics_url(&srv);
    enable_trust(&srv).await;
    let mut rng = Rng::new();
    let img = srv
        .push_image("team/app", Some("v1"), "amd64", &mut rng)
        .await;
    srv.push_image("team/locked", Some("v1"), "amd64", &mut rng)
        .await;
    admin(
        &srv,
        Method::PUT,
        "policy/team/locked",
        Some(json!({"signedPullsOnly": true})),
    )
    .await;
    let prom = user_with_roles(&srv, "prom", "prom-password-123", &["MetricsReader"]).await;
    let puller = user_with_roles(&srv, "puller", "puller-password-1", &["AcrPull"]).await;

    let before = scrape(&url).await;
    // The workload: every request's class, method and status is known.
    for _ in 0..5 {
        srv.get("/v2/team/app/manifests/v1").await.expect(200);
    }
    for _ in 0..2 {
        srv.head(&format!("/v2/team/app/manifests/{}", img.digest))
            .await
            .expect(200);
    }
    for _ in 0..3 {
        srv.get("/v2/team/app/manifests/nope").await.expect(404);
    }
    // Refused by the repository's policy: an unsigned tag.
    srv.get("/v2/team/locked/manifests/v1").await.expect(403);
    let data = rng.bytes(1000);
    let digest = srv.push_blob("team/app", &data).await;
    let got = srv.get(&format!("/v2/team/app/blobs/{digest}")).await;
    got.expect(200);
    assert_eq!(got.body, data);
    for _ in 0..2 {
        let r = call_with(
            &srv,
            &client_from(&srv, fresh_ip()),
            Method::GET,
            "/v2/",
            &Cred::basic("owner", "not-the-password"),
            &[],
            None,
        )
        .await;
        assert_eq!(r.status, 401, "{r}");
    }
    // The main port's copy: MetricsReader reads it, AcrPull is refused, anonymous challenged.
    let r = call(&srv, Method::GET, "/metrics", &prom, &[], None).await;
    assert_eq!(r.status, 200, "{r}");
    let main = parse(std::str::from_utf8(&r.body).unwrap());
    assert_eq!(get(&main, "berth_store_repositories"), 2.0, "{main:?}");
    let r = call(&srv, Method::GET, "/metrics", &puller, &[], None).await;
    assert_eq!(r.status, 403, "{r}");
    let bare = client_from(&srv, fresh_ip());
    let r = call_with(&srv, &bare, Method::GET, "/metrics", &Cred::None, &[], None).await;
    assert_eq!(r.status, 401, "{r}");
    // A trust publish that is not multipart, and a real one.
    let gun = gun(&srv, "team/app");
    let r = srv
        .send(
            Method::POST,
            &format!("/v2/{gun}/_trust/tuf/"),
            &[("content-type", "text/plain")],
            Some(b"not multipart".to_vec()),
        )
        .await;
    assert_eq!(r.status, 400, "{r}");
    let keys = tempfile::tempdir().unwrap();
    let repo = owner_trust_client(&srv, &gun, keys.path());
    repo.sign("v1", &img.digest, img.manifest.len() as u64)
        .await
        .unwrap();
    // How many publishes that took, from the audit log (one row per accepted publish).
    let audit = admin(&srv, Method::GET, "audit?action=trust.updated", None).await;
    let publishes = audit.as_array().unwrap().len() as f64;
    assert!(publishes >= 1.0, "{audit}");
    admin(&srv, Method::POST, "gc", Some(json!({}))).await;

    // The last request is recorded when its response body ends on the server, an instant
    // after the client has it: scrape until the figures settle (never past them).
    let want = expected(publishes);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let after = scrape(&url).await;
        let mut diffs: Vec<String> = want
            .iter()
            .filter(|(k, v)| get(&after, k) - get(&before, k) != *v)
            .map(|(k, v)| format!("{k}: moved {} (want {v})", get(&after, k) - get(&before, k)))
            .collect();
        // Only the scrape itself is in flight once everything settled.
        if get(&after, "berth_http_requests_in_flight") != 1.0 {
            diffs.push("requests in flight".into());
        }
        if diffs.is_empty() {
            // Figures that are not differences.
            assert_eq!(get(&after, "berth_store_repositories"), 2.0);
            assert_eq!(get(&after, "berth_store_tags"), 2.0);
            assert_eq!(get(&after, "berth_uploads_in_flight"), 0.0);
            assert!(get(&after, "berth_gc_last_run_timestamp_seconds") > 1.7e9);
            // The image's two 1000-byte layers and its config, at least.
            assert!(get(&after, "berth_store_blob_bytes") > 2000.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never matched the workload:\n{}\n{}",
            diffs.join("\n"),
            srv.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readyz_checks_the_store() {
    let srv = Server::start_with_auth();
    let r = srv.get("/readyz").await;
    r.expect(200);
    assert_eq!(r.body, b"ready");
    srv.get("/healthz").await.expect(200);
    // The blob store's directory replaced by a file: the node is alive but not ready.
    let blobs = srv.data_dir().join("blobs");
    let aside = srv.data_dir().join("blobs.aside");
    std::fs::rename(&blobs, &aside).unwrap();
    std::fs::write(&blobs, b"not a directory").unwrap();
    let r = srv.get("/readyz").await;
    assert_eq!(r.status, 503, "{r}");
    let v = r.json();
    assert_eq!(v["ready"], false);
    assert!(
        v["problems"][0].as_str().unwrap().contains("blob store"),
        "{v}"
    );
    srv.get("/healthz").await.expect(200);
    std::fs::remove_file(&blobs).unwrap();
    std::fs::rename(&aside, &blobs).unwrap();
    srv.get("/readyz").await.expect(200);
}
