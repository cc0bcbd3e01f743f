//! Manifest push, pull, HEAD, validation, content negotiation and deletion.

use serde_json::{Value, json};

use crate::harness::*;

const REPO: &str = "man/app";

/// GET and HEAD `reference` return exactly `bytes` with the pushed media type and digest.
async fn assert_manifest(
    srv: &Server,
    repo: &str,
    reference: &str,
    bytes: &[u8],
    media_type: &str,
) {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let d = sha256(bytes);
    let g = srv.get(&path).await;
    g.expect(200);
    assert_eq!(g.body, bytes, "manifest bytes differ: {g}");
    assert_eq!(g.must_header("docker-content-digest"), d, "{g}");
    assert_eq!(g.must_header("content-type"), media_type, "{g}");
    assert_eq!(
        g.must_header("content-length"),
        bytes.len().to_string(),
        "{g}"
    );
    let h = srv.head(&path).await;
    h.expect(200);
    assert_eq!(h.must_header("docker-content-digest"), d, "{h}");
    assert_eq!(h.must_header("content-type"), media_type, "{h}");
    assert_eq!(
        h.must_header("content-length"),
        bytes.len().to_string(),
        "{h}"
    );
}

/// Nothing answers to `reference` in `repo` (which exists).
async fn assert_no_manifest(srv: &Server, repo: &str, reference: &str) {
    let path = format!("/v2/{repo}/manifests/{reference}");
    srv.get(&path).await.expect_error(404, "MANIFEST_UNKNOWN");
    srv.head(&path).await.expect(404);
}

#[tokio::test]
async fn push_and_pull_oci_manifest_by_tag_and_digest() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 2, 500);
    srv.push_image_blobs(REPO, &img).await;
    let r = srv
        .put_manifest(REPO, "v1", OCI_MANIFEST, &img.manifest)
        .await;
    r.expect(201);
    assert_eq!(
        r.must_header("location"),
        format!("/v2/{REPO}/manifests/{}", img.digest)
    );
    assert_eq!(r.must_header("docker-content-digest"), img.digest);
    assert_manifest(&srv, REPO, "v1", &img.manifest, OCI_MANIFEST).await;
    assert_manifest(&srv, REPO, &img.digest, &img.manifest, OCI_MANIFEST).await;
}

#[tokio::test]
async fn manifest_bytes_are_stored_verbatim() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let config = rng.bytes(64);
    let layer = rng.bytes(64);
    srv.push_blob(REPO, &config).await;
    srv.push_blob(REPO, &layer).await;
    // Unusual key order, whitespace, an escaped character and trailing newlines.
    let body = format!(
        "{{\n   \"layers\" : [ {{\"size\":{},\"mediaType\":\"{OCI_LAYER}\",  \"digest\":\"{}\"}} ],\n\t\"config\":{{\"size\":{},\"digest\":\"{}\",\"mediaType\":\"{OCI_CONFIG}\"}},\n  \"annotations\": {{\"note\": \"caf\\u00e9 {}\"}},\"mediaType\": \"{OCI_MANIFEST}\",    \"schemaVersion\":2\n}}\n\n",
        layer.len(),
        sha256(&layer),
        config.len(),
        sha256(&config),
        rng.hex(8),
    )
    .into_bytes();
    let d = srv.push_manifest(REPO, "odd", OCI_MANIFEST, &body).await;
    assert_manifest(&srv, REPO, "odd", &body, OCI_MANIFEST).await;
    assert_manifest(&srv, REPO, &d, &body, OCI_MANIFEST).await;
}

fn docker_manifest(config: &[u8], layers: &[Vec<u8>]) -> Vec<u8> {
    let layers: Vec<Value> = layers.iter().map(|l| desc(DOCKER_LAYER, l)).collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": desc(DOCKER_CONFIG, config),
        "layers": layers,
    }))
    .unwrap()
}

/// Pushes a Docker schema2 image for `arch` by digest; returns the manifest bytes.
async fn push_docker_image(srv: &Server, repo: &str, arch: &str, rng: &mut Rng) -> Vec<u8> {
    let layers = vec![rng.bytes(300)];
    let config = image_config(arch, &layers, rng);
    srv.push_blob(repo, &config).await;
    srv.push_blob(repo, &layers[0]).await;
    let m = docker_manifest(&config, &layers);
    srv.push_manifest(repo, &sha256(&m), DOCKER_MANIFEST, &m)
        .await;
    m
}

#[tokio::test]
async fn docker_schema2_manifest_and_list() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let amd = push_docker_image(&srv, REPO, "amd64", &mut rng).await;
    let arm = push_docker_image(&srv, REPO, "arm64", &mut rng).await;
    assert_manifest(&srv, REPO, &sha256(&amd), &amd, DOCKER_MANIFEST).await;
    let list = index_of(
        DOCKER_LIST,
        &[
            (DOCKER_MANIFEST, &amd, "amd64"),
            (DOCKER_MANIFEST, &arm, "arm64"),
        ],
    );
    srv.push_manifest(REPO, "multi", DOCKER_LIST, &list).await;
    assert_manifest(&srv, REPO, "multi", &list, DOCKER_LIST).await;
}

#[tokio::test]
async fn oci_index() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let amd = srv.push_image(REPO, None, "amd64", &mut rng).await;
    let arm = srv.push_image(REPO, None, "arm64", &mut rng).await;
    let idx = index_of(
        OCI_INDEX,
        &[
            (OCI_MANIFEST, &amd.manifest, "amd64"),
            (OCI_MANIFEST, &arm.manifest, "arm64"),
        ],
    );
    let d = srv.push_manifest(REPO, "multi", OCI_INDEX, &idx).await;
    assert_manifest(&srv, REPO, "multi", &idx, OCI_INDEX).await;
    assert_manifest(&srv, REPO, &d, &idx, OCI_INDEX).await;
    assert_manifest(&srv, REPO, &arm.digest, &arm.manifest, OCI_MANIFEST).await;
}

#[tokio::test]
async fn invalid_manifests_are_rejected_and_not_stored() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 1, 100);
    srv.push_image_blobs(REPO, &img).await;
    let mut no_config: Value = serde_json::from_slice(&img.manifest).unwrap();
    no_config.as_object_mut().unwrap().remove("config");
    let cases: Vec<Vec<u8>> = vec![
        b"{\"schemaVersion\": 2, \"mediaType\": ".to_vec(),
        b"not json at all".to_vec(),
        Vec::new(),
        b"[1, 2, 3]".to_vec(),
        serde_json::to_vec(&no_config).unwrap(),
    ];
    for body in cases {
        let r = srv.put_manifest(REPO, "bad", OCI_MANIFEST, &body).await;
        r.expect_error(400, "MANIFEST_INVALID");
        assert_no_manifest(&srv, REPO, "bad").await;
        assert_no_manifest(&srv, REPO, &sha256(&body)).await;
    }
}

#[tokio::test]
async fn manifest_referencing_missing_blobs_is_rejected() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 2, 100);
    // Missing config.
    for l in &img.layers {
        srv.push_blob(REPO, l).await;
    }
    let r = srv
        .put_manifest(REPO, "v1", OCI_MANIFEST, &img.manifest)
        .await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert_no_manifest(&srv, REPO, "v1").await;
    assert_no_manifest(&srv, REPO, &img.digest).await;
    // Missing one layer.
    srv.push_blob(REPO, &img.config).await;
    let extra = rng.bytes(100);
    let m = oci_manifest(&img.config, &[img.layers[0].clone(), extra], |_| {});
    let r = srv.put_manifest(REPO, "v1", OCI_MANIFEST, &m).await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert_no_manifest(&srv, REPO, "v1").await;
    // With everything present the original is accepted.
    srv.push_manifest(REPO, "v1", OCI_MANIFEST, &img.manifest)
        .await;
}

#[tokio::test]
async fn index_referencing_missing_manifest_is_rejected() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let amd = srv.push_image(REPO, None, "amd64", &mut rng).await;
    // Blobs present, manifest never pushed.
    let arm = Image::build("arm64", &mut rng, 1, 100);
    srv.push_image_blobs(REPO, &arm).await;
    let idx = index_of(
        OCI_INDEX,
        &[
            (OCI_MANIFEST, &amd.manifest, "amd64"),
            (OCI_MANIFEST, &arm.manifest, "arm64"),
        ],
    );
    let r = srv.put_manifest(REPO, "multi", OCI_INDEX, &idx).await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert_no_manifest(&srv, REPO, "multi").await;
    assert_no_manifest(&srv, REPO, &sha256(&idx)).await;
}

#[tokio::test]
async fn subject_pointing_at_missing_manifest_is_accepted() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let absent = Image::build("amd64", &mut rng, 1, 10);
    let config = rng.bytes(20);
    let layer = rng.bytes(20);
    srv.push_blob(REPO, &config).await;
    srv.push_blob(REPO, &layer).await;
    let m = oci_manifest(&config, &[layer], |m| {
        m.insert("subject".into(), desc(OCI_MANIFEST, &absent.manifest));
    });
    let r = srv.put_manifest(REPO, &sha256(&m), OCI_MANIFEST, &m).await;
    r.expect(201);
    assert_eq!(r.must_header("oci-subject"), absent.digest, "{r}");
    assert_manifest(&srv, REPO, &sha256(&m), &m, OCI_MANIFEST).await;
}

#[tokio::test]
async fn subject_response_header() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let subject = srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    let config = rng.bytes(20);
    srv.push_blob(REPO, &config).await;
    let m = oci_manifest(&config, &[], |m| {
        m.insert("subject".into(), desc(OCI_MANIFEST, &subject.manifest));
        m.insert("artifactType".into(), "application/vnd.example.sig".into());
    });
    let r = srv.put_manifest(REPO, "sig", OCI_MANIFEST, &m).await;
    r.expect(201);
    assert_eq!(r.must_header("oci-subject"), subject.digest, "{r}");
    // A manifest without subject gets no such header.
    let plain = srv.push_image(REPO, Some("v2"), "amd64", &mut rng).await;
    let r = srv
        .put_manifest(REPO, "v3", OCI_MANIFEST, &plain.manifest)
        .await;
    r.expect(201);
    assert_eq!(r.header("oci-subject"), None, "{r}");
}

/// An image manifest whose annotation pads the serialisation to exactly `size` bytes.
fn manifest_of_size(img: &Image, size: usize) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&img.manifest).unwrap();
    v["annotations"] = json!({"pad": ""});
    let base = serde_json::to_vec(&v).unwrap().len();
    v["annotations"]["pad"] = Value::String("x".repeat(size - base));
    let out = serde_json::to_vec(&v).unwrap();
    assert_eq!(out.len(), size);
    out
}

#[tokio::test]
async fn manifest_size_limit_is_4_mib() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 1, 100);
    srv.push_image_blobs(REPO, &img).await;
    let limit = 4 * 1024 * 1024;
    let big = manifest_of_size(&img, limit + 1);
    let r = srv.put_manifest(REPO, "big", OCI_MANIFEST, &big).await;
    r.expect_error(413, "SIZE_INVALID");
    assert_no_manifest(&srv, REPO, "big").await;
    assert_no_manifest(&srv, REPO, &sha256(&big)).await;
    // Exactly the limit is still fine.
    let ok = manifest_of_size(&img, limit);
    srv.push_manifest(REPO, "limit", OCI_MANIFEST, &ok).await;
    assert_manifest(&srv, REPO, "limit", &ok, OCI_MANIFEST).await;
}

#[tokio::test]
async fn put_by_digest() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 1, 100);
    let other = Image::build("amd64", &mut rng, 1, 100);
    srv.push_image_blobs(REPO, &img).await;
    srv.put_manifest(REPO, &other.digest, OCI_MANIFEST, &img.manifest)
        .await
        .expect_error(400, "DIGEST_INVALID");
    assert_no_manifest(&srv, REPO, &other.digest).await;
    assert_no_manifest(&srv, REPO, &img.digest).await;
    let r = srv
        .put_manifest(REPO, &img.digest, OCI_MANIFEST, &img.manifest)
        .await;
    r.expect(201);
    assert_eq!(
        r.must_header("location"),
        format!("/v2/{REPO}/manifests/{}", img.digest)
    );
    assert_manifest(&srv, REPO, &img.digest, &img.manifest, OCI_MANIFEST).await;
    // Push by digest creates no tag.
    let tags = srv.get(&format!("/v2/{REPO}/tags/list")).await;
    tags.expect(200);
    let listed = tags.json()["tags"].as_array().cloned().unwrap_or_default();
    assert!(listed.is_empty(), "{tags}");
}

#[tokio::test]
async fn tag_grammar() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 1, 100);
    srv.push_image_blobs(REPO, &img).await;
    let long_bad = "a".repeat(129);
    for tag in ["-bad", ".bad", long_bad.as_str(), "bad!tag", "b%40d"] {
        srv.put_manifest(REPO, tag, OCI_MANIFEST, &img.manifest)
            .await
            .expect_error(400, "TAG_INVALID");
    }
    assert_no_manifest(&srv, REPO, &img.digest).await;
    let long_ok = format!("_{}", "Z".repeat(127));
    for tag in [long_ok.as_str(), "_x", "A.b-C_9", "1"] {
        srv.push_manifest(REPO, tag, OCI_MANIFEST, &img.manifest)
            .await;
        assert_manifest(&srv, REPO, tag, &img.manifest, OCI_MANIFEST).await;
    }
}

#[tokio::test]
async fn content_type_must_match_media_type_field() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 1, 100);
    srv.push_image_blobs(REPO, &img).await;
    for ct in [DOCKER_MANIFEST, OCI_INDEX] {
        srv.put_manifest(REPO, "v1", ct, &img.manifest)
            .await
            .expect_error(400, "MANIFEST_INVALID");
    }
    assert_no_manifest(&srv, REPO, "v1").await;
    assert_no_manifest(&srv, REPO, &img.digest).await;
}

#[tokio::test]
async fn schema1_is_rejected() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let layer = rng.bytes(100);
    srv.push_blob(REPO, &layer).await;
    let body = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 1,
        "name": REPO,
        "tag": "old",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256(&layer)}],
        "history": [{"v1Compatibility": "{\"id\":\"x\"}"}],
        "signatures": [],
    }))
    .unwrap();
    for ct in [
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
    ] {
        srv.put_manifest(REPO, "old", ct, &body)
            .await
            .expect_error(400, "MANIFEST_INVALID");
    }
    assert_no_manifest(&srv, REPO, "old").await;
}

#[tokio::test]
async fn push_by_digest_with_tag_parameters() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 1, 100);
    srv.push_image_blobs(REPO, &img).await;
    let r = srv
        .put_manifest(
            REPO,
            &format!("{}?tag=alpha&tag=beta", img.digest),
            OCI_MANIFEST,
            &img.manifest,
        )
        .await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), img.digest);
    let mut tags = r.headers_all("oci-tag");
    tags.sort();
    assert_eq!(tags, ["alpha", "beta"], "{r}");
    for t in ["alpha", "beta"] {
        assert_manifest(&srv, REPO, t, &img.manifest, OCI_MANIFEST).await;
    }
}

#[tokio::test]
async fn tag_parameters_are_all_or_nothing() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 1, 100);
    srv.push_image_blobs(REPO, &img).await;
    let r = srv
        .put_manifest(
            REPO,
            &format!("{}?tag=good&tag=-bad", img.digest),
            OCI_MANIFEST,
            &img.manifest,
        )
        .await;
    r.expect_error(400, "TAG_INVALID");
    assert_no_manifest(&srv, REPO, "good").await;
    assert_no_manifest(&srv, REPO, &img.digest).await;
}

#[tokio::test]
async fn manifest_in_one_repo_is_invisible_in_another() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = srv.push_image("vis/a", Some("v1"), "amd64", &mut rng).await;
    srv.push_image("vis/b", Some("v1"), "amd64", &mut rng).await;
    assert_no_manifest(&srv, "vis/b", &img.digest).await;
    srv.get(&format!("/v2/vis/b/referrers/{}", img.digest))
        .await
        .expect(200);
    // An index in B may not reference A's manifest either.
    let idx = index_of(OCI_INDEX, &[(OCI_MANIFEST, &img.manifest, "amd64")]);
    srv.put_manifest("vis/b", "multi", OCI_INDEX, &idx)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn unknown_manifest_and_repository() {
    let srv = Server::start();
    let mut rng = Rng::new();
    srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    assert_no_manifest(&srv, REPO, "v2").await;
    let d = sha256(&rng.bytes(10));
    assert_no_manifest(&srv, REPO, &d).await;
    for r in ["v1".to_string(), d] {
        let path = format!("/v2/never/pushed/manifests/{r}");
        srv.get(&path).await.expect_error(404, "NAME_UNKNOWN");
        srv.head(&path).await.expect(404);
    }
}

#[tokio::test]
async fn accept_negotiation_for_single_manifest() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    let path = format!("/v2/{REPO}/manifests/v1");
    let list = format!("{DOCKER_MANIFEST}, {DOCKER_LIST}, {OCI_MANIFEST}, {OCI_INDEX}");
    let weighted = format!("{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.5");
    let accepts: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("accept", "*/*")],
        vec![("accept", &list)],
        vec![("accept", &weighted)],
        // Docker sends one Accept header per type.
        vec![("accept", DOCKER_MANIFEST), ("accept", OCI_MANIFEST)],
    ];
    for h in accepts {
        let r = srv.get_with(&path, &h).await;
        r.expect(200);
        assert_eq!(r.body, img.manifest, "{h:?}");
        assert_eq!(r.must_header("content-type"), OCI_MANIFEST, "{h:?}");
        assert_eq!(r.must_header("docker-content-digest"), img.digest, "{h:?}");
    }
    let docker_only = format!("{DOCKER_MANIFEST}, {DOCKER_LIST}");
    srv.get_with(&path, &[("accept", &docker_only)])
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    srv.send(
        reqwest::Method::HEAD,
        &path,
        &[("accept", &docker_only)],
        None,
    )
    .await
    .expect(404);
}

#[tokio::test]
async fn accept_negotiation_falls_back_to_amd64_child() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let arm = srv.push_image(REPO, None, "arm64", &mut rng).await;
    let amd = srv.push_image(REPO, None, "amd64", &mut rng).await;
    let idx = index_of(
        OCI_INDEX,
        &[
            (OCI_MANIFEST, &arm.manifest, "arm64"),
            (OCI_MANIFEST, &amd.manifest, "amd64"),
        ],
    );
    srv.push_manifest(REPO, "multi", OCI_INDEX, &idx).await;
    let path = format!("/v2/{REPO}/manifests/multi");
    // The index itself when it is acceptable.
    let r = srv
        .get_with(
            &path,
            &[("accept", &format!("{OCI_MANIFEST}, {OCI_INDEX}"))],
        )
        .await;
    r.expect(200);
    assert_eq!(r.body, idx);
    // Otherwise the linux/amd64 child, with its own digest.
    let r = srv.get_with(&path, &[("accept", OCI_MANIFEST)]).await;
    r.expect(200);
    assert_eq!(r.body, amd.manifest, "{r}");
    assert_eq!(r.must_header("docker-content-digest"), amd.digest);
    assert_eq!(r.must_header("content-type"), OCI_MANIFEST);
    let h = srv
        .send(
            reqwest::Method::HEAD,
            &path,
            &[("accept", OCI_MANIFEST)],
            None,
        )
        .await;
    h.expect(200);
    assert_eq!(h.must_header("docker-content-digest"), amd.digest);
    assert_eq!(
        h.must_header("content-length"),
        amd.manifest.len().to_string()
    );

    // Same for a Docker list of schema2 manifests.
    let d_arm = push_docker_image(&srv, REPO, "arm64", &mut rng).await;
    let d_amd = push_docker_image(&srv, REPO, "amd64", &mut rng).await;
    let list = index_of(
        DOCKER_LIST,
        &[
            (DOCKER_MANIFEST, &d_arm, "arm64"),
            (DOCKER_MANIFEST, &d_amd, "amd64"),
        ],
    );
    srv.push_manifest(REPO, "dlist", DOCKER_LIST, &list).await;
    let r = srv
        .get_with(
            &format!("/v2/{REPO}/manifests/dlist"),
            &[("accept", DOCKER_MANIFEST)],
        )
        .await;
    r.expect(200);
    assert_eq!(r.body, d_amd, "{r}");
    assert_eq!(r.must_header("docker-content-digest"), sha256(&d_amd));
    assert_eq!(r.must_header("content-type"), DOCKER_MANIFEST);
}

#[tokio::test]
async fn index_fetched_by_digest_is_never_rewritten() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let amd = srv.push_image(REPO, None, "amd64", &mut rng).await;
    let idx = index_of(OCI_INDEX, &[(OCI_MANIFEST, &amd.manifest, "amd64")]);
    let d = srv.push_manifest(REPO, "multi", OCI_INDEX, &idx).await;
    // Clients verify by-digest pulls against the digest they asked for, so the amd64
    // fallback may only apply to tags (distribution does the same). Either the index
    // itself or a 404 is acceptable; different content is not.
    let r = srv
        .get_with(
            &format!("/v2/{REPO}/manifests/{d}"),
            &[("accept", OCI_MANIFEST)],
        )
        .await;
    if r.status == 200 {
        assert_eq!(
            sha256(&r.body),
            d,
            "by-digest GET returned other content: {r}"
        );
        assert_eq!(r.must_header("docker-content-digest"), d, "{r}");
    } else {
        r.expect_error(404, "MANIFEST_UNKNOWN");
    }
}

#[tokio::test]
async fn sha512_manifest_by_digest() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 1, 100);
    srv.push_image_blobs(REPO, &img).await;
    let d = sha512(&img.manifest);
    let r = srv
        .put_manifest(REPO, &d, OCI_MANIFEST, &img.manifest)
        .await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), d, "{r}");
    assert_eq!(
        r.must_header("location"),
        format!("/v2/{REPO}/manifests/{d}")
    );
    let g = srv.get(&format!("/v2/{REPO}/manifests/{d}")).await;
    g.expect(200);
    assert_eq!(g.body, img.manifest);
    assert_eq!(g.must_header("docker-content-digest"), d);
    let h = srv.head(&format!("/v2/{REPO}/manifests/{d}")).await;
    h.expect(200);
    assert_eq!(h.must_header("docker-content-digest"), d);
    // A sha512 reference that does not match the bytes.
    let other = sha512(&rng.bytes(10));
    srv.put_manifest(REPO, &other, OCI_MANIFEST, &img.manifest)
        .await
        .expect_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn accept_negotiation_without_amd64_child_is_404() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let arm = srv.push_image(REPO, None, "arm64", &mut rng).await;
    let s390 = srv.push_image(REPO, None, "s390x", &mut rng).await;
    let idx = index_of(
        OCI_INDEX,
        &[
            (OCI_MANIFEST, &arm.manifest, "arm64"),
            (OCI_MANIFEST, &s390.manifest, "s390x"),
        ],
    );
    srv.push_manifest(REPO, "multi", OCI_INDEX, &idx).await;
    srv.get_with(
        &format!("/v2/{REPO}/manifests/multi"),
        &[("accept", OCI_MANIFEST)],
    )
    .await
    .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn delete_by_tag_keeps_manifest() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    srv.push_manifest(REPO, "v2", OCI_MANIFEST, &img.manifest)
        .await;
    srv.delete(&format!("/v2/{REPO}/manifests/v1"))
        .await
        .expect(202);
    assert_no_manifest(&srv, REPO, "v1").await;
    assert_manifest(&srv, REPO, "v2", &img.manifest, OCI_MANIFEST).await;
    assert_manifest(&srv, REPO, &img.digest, &img.manifest, OCI_MANIFEST).await;
    let tags = srv.get(&format!("/v2/{REPO}/tags/list")).await;
    tags.expect(200);
    assert_eq!(tags.json()["tags"], json!(["v2"]), "{tags}");
    srv.delete(&format!("/v2/{REPO}/manifests/v1"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn delete_by_digest_removes_all_its_tags() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    srv.push_manifest(REPO, "v2", OCI_MANIFEST, &img.manifest)
        .await;
    let keep = srv.push_image(REPO, Some("keep"), "amd64", &mut rng).await;
    srv.delete(&format!("/v2/{REPO}/manifests/{}", img.digest))
        .await
        .expect(202);
    for r in ["v1", "v2", img.digest.as_str()] {
        assert_no_manifest(&srv, REPO, r).await;
    }
    assert_manifest(&srv, REPO, "keep", &keep.manifest, OCI_MANIFEST).await;
    let tags = srv.get(&format!("/v2/{REPO}/tags/list")).await;
    tags.expect(200);
    assert_eq!(tags.json()["tags"], json!(["keep"]), "{tags}");
    srv.delete(&format!("/v2/{REPO}/manifests/{}", img.digest))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn retagging_moves_the_tag() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let a = srv
        .push_image(REPO, Some("latest"), "amd64", &mut rng)
        .await;
    let b = srv
        .push_image(REPO, Some("latest"), "amd64", &mut rng)
        .await;
    assert_ne!(a.digest, b.digest);
    assert_manifest(&srv, REPO, "latest", &b.manifest, OCI_MANIFEST).await;
    assert_manifest(&srv, REPO, &a.digest, &a.manifest, OCI_MANIFEST).await;
}

#[tokio::test]
async fn deleted_manifest_can_be_pushed_again() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    srv.delete(&format!("/v2/{REPO}/manifests/{}", img.digest))
        .await
        .expect(202);
    assert_no_manifest(&srv, REPO, "v1").await;
    srv.push_manifest(REPO, "v1", OCI_MANIFEST, &img.manifest)
        .await;
    assert_manifest(&srv, REPO, "v1", &img.manifest, OCI_MANIFEST).await;
    assert_manifest(&srv, REPO, &img.digest, &img.manifest, OCI_MANIFEST).await;
}

#[tokio::test]
async fn content_type_must_be_a_manifest_media_type() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 1, 100);
    srv.push_image_blobs(REPO, &img).await;
    let path = format!("/v2/{REPO}/manifests/v1");
    for ct in [
        Some("text/plain"),
        Some("application/json"),
        Some("application/octet-stream"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = ct.iter().map(|c| ("content-type", *c)).collect();
        let r = srv
            .send(
                reqwest::Method::PUT,
                &path,
                &headers,
                Some(img.manifest.clone()),
            )
            .await;
        r.expect_error(400, "MANIFEST_INVALID");
        assert!(
            String::from_utf8_lossy(&r.body).contains(OCI_MANIFEST),
            "the error names the accepted types: {r}"
        );
        assert_no_manifest(&srv, REPO, "v1").await;
        assert_no_manifest(&srv, REPO, &img.digest).await;
    }
    // Parameters on the right type are fine.
    srv.push_manifest(
        REPO,
        "v1",
        &format!("{OCI_MANIFEST}; charset=utf-8"),
        &img.manifest,
    )
    .await;
    assert_manifest(&srv, REPO, "v1", &img.manifest, OCI_MANIFEST).await;
}

#[tokio::test]
async fn manifest_that_is_not_utf8_is_rejected() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 1, 100);
    srv.push_image_blobs(REPO, &img).await;
    // A byte that is never UTF-8, inside a field the registry does not read.
    let mut m = oci_manifest(&img.config, &img.layers, |m| {
        m.insert("x-note".into(), "ab@".into());
    });
    let at = m.windows(3).position(|w| w == b"ab@").unwrap() + 2;
    m[at] = 0xff;
    let r = srv.put_manifest(REPO, "v1", OCI_MANIFEST, &m).await;
    r.expect_error(400, "MANIFEST_INVALID");
    assert_no_manifest(&srv, REPO, "v1").await;
    assert_no_manifest(&srv, REPO, &sha256(&m)).await;
}

#[tokio::test]
async fn descriptor_size_must_match_the_blob() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 2, 100);
    srv.push_image_blobs(REPO, &img).await;
    let wrong_layer = |delta: i64| {
        oci_manifest(&img.config, &img.layers, |m| {
            let size = &mut m.get_mut("layers").unwrap()[1]["size"];
            *size = json!(size.as_i64().unwrap() + delta);
        })
    };
    let wrong_config = oci_manifest(&img.config, &img.layers, |m| {
        m.get_mut("config").unwrap()["size"] = json!(1);
    });
    for m in [wrong_layer(1), wrong_layer(-1), wrong_config] {
        let r = srv.put_manifest(REPO, "v1", OCI_MANIFEST, &m).await;
        r.expect_error(400, "MANIFEST_INVALID");
        assert!(
            String::from_utf8_lossy(&r.body).contains("size"),
            "the error says what is wrong: {r}"
        );
        assert_no_manifest(&srv, REPO, "v1").await;
        assert_no_manifest(&srv, REPO, &sha256(&m)).await;
    }
    srv.push_manifest(REPO, "v1", OCI_MANIFEST, &img.manifest)
        .await;
}

/// The conformance suite reads `.INVALID_MANIFEST_NAME`: no stored manifest can have that name,
/// so a read is 404 (a push stays 400 TAG_INVALID, see `tag_grammar`).
#[tokio::test]
async fn reading_a_reference_that_cannot_be_a_tag_is_404() {
    let srv = Server::start();
    let mut rng = Rng::new();
    srv.push_image(REPO, Some("v1"), "amd64", &mut rng).await;
    let long = "a".repeat(129);
    for reference in [".INVALID_MANIFEST_NAME", "-x", "bad!tag", long.as_str()] {
        let path = format!("/v2/{REPO}/manifests/{reference}");
        srv.get(&path).await.expect_error(404, "MANIFEST_UNKNOWN");
        let h = srv.head(&path).await;
        h.expect(404);
    }
    // A malformed digest is still the client's error.
    srv.get(&format!("/v2/{REPO}/manifests/sha256:zz"))
        .await
        .expect_error(400, "DIGEST_INVALID");
    let img = Image::build("amd64", &mut rng, 1, 10);
    srv.push_image_blobs(REPO, &img).await;
    srv.put_manifest(REPO, ".INVALID_MANIFEST_NAME", OCI_MANIFEST, &img.manifest)
        .await
        .expect_error(400, "TAG_INVALID");
}
