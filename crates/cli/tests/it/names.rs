//! Repository names: multi-component names, API words as components, and the name grammar.

use crate::harness::*;

/// Full push/pull cycle through every endpoint family for `repo`.
async fn round_trip(srv: &Server, repo: &str, rng: &mut Rng) {
    let img = srv.push_image(repo, Some("v1"), "amd64", rng).await;
    let g = srv.get(&format!("/v2/{repo}/manifests/v1")).await;
    g.expect(200);
    assert_eq!(g.body, img.manifest, "{repo}");
    let d = sha256(&img.layers[0]);
    let b = srv.get(&format!("/v2/{repo}/blobs/{d}")).await;
    b.expect(200);
    assert_eq!(b.body, img.layers[0], "{repo}");
    let t = srv.get(&format!("/v2/{repo}/tags/list")).await;
    t.expect(200);
    assert_eq!(t.json()["name"], repo, "{t}");
    assert_eq!(t.json()["tags"], serde_json::json!(["v1"]), "{t}");
    let r = srv
        .get(&format!("/v2/{repo}/referrers/{}", img.digest))
        .await;
    r.expect(200);
    // Chunked upload + status + cancel route through the name as well.
    let loc = srv.start_upload(repo).await;
    assert!(
        loc.starts_with(&format!("/v2/{repo}/blobs/uploads/")),
        "{loc}"
    );
    srv.patch_chunk(&loc, 0, b"abc").await.expect(202);
    srv.get(&loc).await.expect(204);
    srv.delete(&loc).await.expect(204);
    srv.delete(&format!("/v2/{repo}/manifests/v1"))
        .await
        .expect(202);
    srv.get(&format!("/v2/{repo}/manifests/v1"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn names_with_api_words_route_correctly() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let names = [
        "a/b/c",
        "x/blobs/y",
        "manifests/tags",
        "blobs/uploads",
        "tags/list/referrers",
        "v2/manifests/blobs/uploads/x",
        "a.b_c__d-e---f/0",
        "catalog",
    ];
    for n in names {
        round_trip(&srv, n, &mut rng).await;
    }
    // Each is its own repository.
    let c = srv.get("/v2/_catalog").await;
    c.expect(200);
    let mut want: Vec<&str> = names.to_vec();
    want.sort();
    assert_eq!(c.json()["repositories"], serde_json::json!(want), "{c}");
}

#[tokio::test]
async fn invalid_names_are_rejected() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 1, 10);
    for name in [
        "Upper/app",
        "app-",
        "app/-x",
        "a_/b",
        "a..b",
        "a___b",
        ".a",
        "_a",
        // Separator runs never mix: the spec's `(\.|_|__|-+)` is one kind per run.
        "a_-b",
        "a.-b",
        "a-.b",
        "a._b",
        "a-__-b",
        "team/a__.b",
    ] {
        srv.put_manifest(name, "v1", OCI_MANIFEST, &img.manifest)
            .await
            .expect_error(400, "NAME_INVALID");
        srv.post(&format!("/v2/{name}/blobs/uploads/"), Vec::new())
            .await
            .expect_error(400, "NAME_INVALID");
    }
    let c = srv.get("/v2/_catalog").await;
    c.expect(200);
    assert_eq!(
        c.json()["repositories"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0),
        0,
        "{c}"
    );
}

#[tokio::test]
async fn names_a_url_parser_would_normalise_are_rejected() {
    // Raw HTTP so that `..` and `//` reach the server unchanged.
    let srv = Server::start_insecure();
    let mut rng = Rng::new();
    srv.push_blob("b", &rng.bytes(10)).await;
    let img = Image::build("amd64", &mut rng, 1, 10);
    for name in ["a//b", "a/../b", "a/./b", "/a"] {
        let (status, text) = srv
            .raw_http(
                "PUT",
                &format!("/v2/{name}/manifests/v1"),
                &[("Content-Type", OCI_MANIFEST)],
                &img.manifest,
            )
            .await;
        assert_eq!(status, 400, "{name}: {text}");
        assert!(text.contains("NAME_INVALID"), "{name}: {text}");
        let (status, text) = srv
            .raw_http("POST", &format!("/v2/{name}/blobs/uploads/"), &[], &[])
            .await;
        assert_eq!(status, 400, "{name}: {text}");
        assert!(text.contains("NAME_INVALID"), "{name}: {text}");
    }
    let c = srv.get("/v2/_catalog").await;
    c.expect(200);
    assert_eq!(c.json()["repositories"], serde_json::json!(["b"]), "{c}");
}
