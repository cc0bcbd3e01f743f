//! The referrers API: listing, artifactType filter, empty answers, deletion.

use serde_json::{Value, json};

use crate::harness::*;

const REPO: &str = "ref/app";
const SIG: &str = "application/vnd.example.signature";
const SBOM: &str = "application/vnd.example.sbom+json";

/// An artifact manifest referring to `subject`; `artifact_type` None leaves only config.mediaType.
fn artifact(
    subject: &[u8],
    subject_type: &str,
    config: &[u8],
    config_type: &str,
    layer: &[u8],
    artifact_type: Option<&str>,
    annotations: Value,
) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(config_type, config),
        "layers": [desc("application/octet-stream", layer)],
        "subject": desc(subject_type, subject),
        "annotations": annotations,
    });
    if let Some(t) = artifact_type {
        m["artifactType"] = t.into();
    }
    serde_json::to_vec(&m).unwrap()
}

/// Pushes an artifact for `subject` into `repo` by digest; returns the manifest bytes.
async fn push_artifact(
    srv: &Server,
    repo: &str,
    subject: &[u8],
    config_type: &str,
    artifact_type: Option<&str>,
    rng: &mut Rng,
) -> Vec<u8> {
    let config = rng.bytes(30);
    let layer = rng.bytes(50);
    srv.push_blob(repo, &config).await;
    srv.push_blob(repo, &layer).await;
    let ann = json!({"org.example.nonce": rng.hex(10)});
    let m = artifact(
        subject,
        OCI_MANIFEST,
        &config,
        config_type,
        &layer,
        artifact_type,
        ann,
    );
    let r = srv.put_manifest(repo, &sha256(&m), OCI_MANIFEST, &m).await;
    r.expect(201);
    assert_eq!(r.must_header("oci-subject"), sha256(subject), "{r}");
    m
}

/// The descriptor the referrers API must list for manifest `m`.
fn expected_desc(m: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(m).unwrap();
    let at = v
        .get("artifactType")
        .cloned()
        .unwrap_or_else(|| v["config"]["mediaType"].clone());
    json!({
        "mediaType": v["mediaType"],
        "digest": sha256(m),
        "size": m.len(),
        "artifactType": at,
        "annotations": v["annotations"],
    })
}

/// GETs referrers and checks the envelope; returns the listed descriptors (sorted by digest).
async fn referrers(srv: &Server, repo: &str, digest: &str, query: &str) -> (Resp, Vec<Value>) {
    let r = srv
        .get(&format!("/v2/{repo}/referrers/{digest}{query}"))
        .await;
    r.expect(200);
    assert_eq!(r.must_header("content-type"), OCI_INDEX, "{r}");
    let v = r.json();
    assert_eq!(v["schemaVersion"], 2, "{r}");
    assert_eq!(v["mediaType"], OCI_INDEX, "{r}");
    let mut list = v["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("manifests must be an array: {r}"))
        .clone();
    list.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
    (r, list)
}

/// Only the fields the contract defines, so extra descriptor fields don't fail the comparison.
fn core(d: &Value) -> Value {
    let mut out = json!({});
    for k in ["mediaType", "digest", "size", "artifactType", "annotations"] {
        if let Some(x) = d.get(k) {
            out[k] = x.clone();
        }
    }
    out
}

/// Percent-encodes a query value (`+` would otherwise decode to a space).
fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
    v
}

#[tokio::test]
async fn referrers_list_every_manifest_with_that_subject() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let subject = srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    let other = srv.push_image(REPO, Some("v2"), "amd64", &mut rng).await;
    let sig = push_artifact(
        &srv,
        REPO,
        &subject.manifest,
        OCI_CONFIG,
        Some(SIG),
        &mut rng,
    )
    .await;
    // No artifactType: the config media type stands in.
    let sbom = push_artifact(&srv, REPO, &subject.manifest, SBOM, None, &mut rng).await;
    // Refers to another manifest; must not show up.
    push_artifact(&srv, REPO, &other.manifest, OCI_CONFIG, Some(SIG), &mut rng).await;
    // Same subject in another repository; must not show up either.
    srv.push_image("ref/elsewhere", None, "amd64", &mut rng)
        .await;
    push_artifact(
        &srv,
        "ref/elsewhere",
        &subject.manifest,
        OCI_CONFIG,
        Some(SIG),
        &mut rng,
    )
    .await;

    let (_, list) = referrers(&srv, REPO, &subject.digest, "").await;
    let got: Vec<Value> = list.iter().map(core).collect();
    assert_eq!(got, sorted(vec![expected_desc(&sig), expected_desc(&sbom)]));
}

#[tokio::test]
async fn referrers_artifact_type_filter() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let subject = srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    let sig1 = push_artifact(
        &srv,
        REPO,
        &subject.manifest,
        OCI_CONFIG,
        Some(SIG),
        &mut rng,
    )
    .await;
    let sig2 = push_artifact(
        &srv,
        REPO,
        &subject.manifest,
        OCI_CONFIG,
        Some(SIG),
        &mut rng,
    )
    .await;
    let sbom = push_artifact(&srv, REPO, &subject.manifest, SBOM, None, &mut rng).await;

    let (r, list) = referrers(
        &srv,
        REPO,
        &subject.digest,
        &format!("?artifactType={}", enc(SIG)),
    )
    .await;
    assert_eq!(r.must_header("oci-filters-applied"), "artifactType", "{r}");
    let got: Vec<Value> = list.iter().map(core).collect();
    assert_eq!(
        got,
        sorted(vec![expected_desc(&sig1), expected_desc(&sig2)])
    );

    // The filter also matches the config media type fallback.
    let (r, list) = referrers(
        &srv,
        REPO,
        &subject.digest,
        &format!("?artifactType={}", enc(SBOM)),
    )
    .await;
    assert_eq!(r.must_header("oci-filters-applied"), "artifactType", "{r}");
    let got: Vec<Value> = list.iter().map(core).collect();
    assert_eq!(got, vec![expected_desc(&sbom)]);

    let (r, list) = referrers(
        &srv,
        REPO,
        &subject.digest,
        "?artifactType=application/vnd.none",
    )
    .await;
    assert!(list.is_empty());
    assert_eq!(r.must_header("oci-filters-applied"), "artifactType", "{r}");

    // Without a filter nothing claims to be filtered.
    let (r, list) = referrers(&srv, REPO, &subject.digest, "").await;
    assert_eq!(r.header("oci-filters-applied"), None, "{r}");
    assert_eq!(list.len(), 3);
}

#[tokio::test]
async fn referrers_of_unknown_subject_or_repo_are_empty() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let subject = srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    let (_, list) = referrers(&srv, REPO, &subject.digest, "").await;
    assert!(list.is_empty());
    let unknown = sha256(&rng.bytes(10));
    let (_, list) = referrers(&srv, REPO, &unknown, "").await;
    assert!(list.is_empty());
    let (_, list) = referrers(&srv, "no/such/repo", &unknown, "").await;
    assert!(list.is_empty());
}

#[tokio::test]
async fn referrers_with_malformed_digest_is_400() {
    let srv = Server::start();
    let mut rng = Rng::new();
    srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    for d in ["sha256:xyz", "v1", "md5:0123456789abcdef0123456789abcdef"] {
        srv.get(&format!("/v2/{REPO}/referrers/{d}"))
            .await
            .expect_error(400, "DIGEST_INVALID");
    }
}

#[tokio::test]
async fn deleted_referrer_disappears() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let subject = srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    let a = push_artifact(
        &srv,
        REPO,
        &subject.manifest,
        OCI_CONFIG,
        Some(SIG),
        &mut rng,
    )
    .await;
    let b = push_artifact(
        &srv,
        REPO,
        &subject.manifest,
        OCI_CONFIG,
        Some(SIG),
        &mut rng,
    )
    .await;
    srv.delete(&format!("/v2/{REPO}/manifests/{}", sha256(&a)))
        .await
        .expect(202);
    let (_, list) = referrers(&srv, REPO, &subject.digest, "").await;
    let got: Vec<Value> = list.iter().map(core).collect();
    assert_eq!(got, vec![expected_desc(&b)]);
}

#[tokio::test]
async fn referrer_pushed_before_its_subject_is_listed() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let subject = Image::build("amd64", &mut rng, 1, 100);
    let sig = push_artifact(
        &srv,
        REPO,
        &subject.manifest,
        OCI_CONFIG,
        Some(SIG),
        &mut rng,
    )
    .await;
    let (_, list) = referrers(&srv, REPO, &subject.digest, "").await;
    assert_eq!(
        list.iter().map(core).collect::<Vec<_>>(),
        vec![expected_desc(&sig)]
    );
    // Pushing the subject later changes nothing about the listing.
    srv.push_image_blobs(REPO, &subject).await;
    srv.push_manifest(REPO, "v1", OCI_MANIFEST, &subject.manifest)
        .await;
    let (_, list) = referrers(&srv, REPO, &subject.digest, "").await;
    assert_eq!(
        list.iter().map(core).collect::<Vec<_>>(),
        vec![expected_desc(&sig)]
    );
}

#[tokio::test]
async fn index_with_subject_is_a_referrer() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let subject = srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    let child = srv.push_image(REPO, None, "amd64", &mut rng).await;
    let idx = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": SBOM,
        "manifests": [desc(OCI_MANIFEST, &child.manifest)],
        "subject": desc(OCI_MANIFEST, &subject.manifest),
        "annotations": {"k": rng.hex(6)},
    }))
    .unwrap();
    let r = srv.put_manifest(REPO, &sha256(&idx), OCI_INDEX, &idx).await;
    r.expect(201);
    assert_eq!(r.must_header("oci-subject"), subject.digest, "{r}");
    let (_, list) = referrers(&srv, REPO, &subject.digest, "").await;
    assert_eq!(
        list.iter().map(core).collect::<Vec<_>>(),
        vec![expected_desc(&idx)]
    );
}

#[tokio::test]
async fn index_without_artifact_type_has_none_in_its_descriptor() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let subject = srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    let child = srv.push_image(REPO, None, "amd64", &mut rng).await;
    let idx = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [desc(OCI_MANIFEST, &child.manifest)],
        "subject": desc(OCI_MANIFEST, &subject.manifest),
    }))
    .unwrap();
    srv.push_manifest(REPO, &sha256(&idx), OCI_INDEX, &idx)
        .await;
    let (_, list) = referrers(&srv, REPO, &subject.digest, "").await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["digest"], sha256(&idx));
    assert_eq!(list[0]["mediaType"], OCI_INDEX);
    assert_eq!(list[0]["size"], idx.len());
    // Spec: artifactType is omitted for an index that lacks it (no config to fall back on).
    assert!(
        list[0].get("artifactType").is_none_or(Value::is_null),
        "{}",
        list[0]
    );
}
