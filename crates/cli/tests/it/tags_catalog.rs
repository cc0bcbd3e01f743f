//! Tag listing and the repository catalog, including n/last pagination and Link headers.

use serde_json::{Value, json};

use crate::harness::*;

/// Extracts the target of a `Link: <...>; rel="next"` header, asserting its shape.
fn next_link(r: &Resp) -> Option<String> {
    let link = r.header("link")?;
    let (target, rel) = link
        .split_once(';')
        .unwrap_or_else(|| panic!("bad Link {link}"));
    assert_eq!(rel.trim(), "rel=\"next\"", "{r}");
    let target = target.trim();
    assert!(
        target.starts_with('<') && target.ends_with('>'),
        "bad Link {link}"
    );
    Some(target[1..target.len() - 1].to_string())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

/// One manifest pushed under every tag in `tags`.
async fn tagged_repo(srv: &Server, repo: &str, tags: &[&str]) {
    let mut rng = Rng::new();
    let img = srv.push_image(repo, None, "amd64", &mut rng).await;
    for t in tags {
        srv.push_manifest(repo, t, OCI_MANIFEST, &img.manifest)
            .await;
    }
}

const TAGS: [&str; 11] = [
    "v2", "v10", "V1", "_under", "1.0", "a-b", "a.b", "a_b", "latest", "Latest", "z",
];

fn sorted_tags() -> Vec<String> {
    let mut t: Vec<String> = TAGS.iter().map(|s| s.to_string()).collect();
    t.sort();
    t
}

#[tokio::test]
async fn tags_are_listed_in_ascii_order() {
    let srv = Server::start();
    tagged_repo(&srv, "tags/app", &TAGS).await;
    let r = srv.get("/v2/tags/app/tags/list").await;
    r.expect(200);
    assert!(
        r.content_type()
            .unwrap_or_default()
            .starts_with("application/json"),
        "{r}"
    );
    let v = r.json();
    assert_eq!(v["name"], "tags/app");
    assert_eq!(strings(&v["tags"]), sorted_tags());
    assert_eq!(r.header("link"), None, "{r}");
}

#[tokio::test]
async fn tags_pagination() {
    let srv = Server::start();
    let repo = "tags/app";
    tagged_repo(&srv, repo, &TAGS).await;
    let all = sorted_tags();
    for n in [1usize, 2, 3, 5] {
        let mut url = format!("/v2/{repo}/tags/list?n={n}");
        let mut seen = Vec::new();
        loop {
            let r = srv.get(&url).await;
            r.expect(200);
            let page = strings(&r.json()["tags"]);
            assert!(page.len() <= n, "{r}");
            seen.extend(page.iter().cloned());
            match next_link(&r) {
                Some(link) => {
                    assert_eq!(page.len(), n, "short page with Link: {r}");
                    assert_eq!(
                        link,
                        format!("/v2/{repo}/tags/list?n={n}&last={}", page.last().unwrap())
                    );
                    url = link;
                }
                None => break,
            }
        }
        assert_eq!(seen, all, "walking n={n}");
    }
    // No Link when the page exactly ends the list.
    let r = srv
        .get(&format!(
            "/v2/{repo}/tags/list?n=2&last={}",
            all[all.len() - 3]
        ))
        .await;
    r.expect(200);
    assert_eq!(strings(&r.json()["tags"]), all[all.len() - 2..]);
    assert_eq!(r.header("link"), None, "{r}");
}

#[tokio::test]
async fn tags_last_and_n_zero() {
    let srv = Server::start();
    let repo = "tags/app";
    tagged_repo(&srv, repo, &TAGS).await;
    let all = sorted_tags();
    let r = srv.get(&format!("/v2/{repo}/tags/list?last=a-b")).await;
    r.expect(200);
    let after: Vec<String> = all.iter().filter(|t| t.as_str() > "a-b").cloned().collect();
    assert_eq!(strings(&r.json()["tags"]), after);
    // `last` need not be an existing tag.
    let r = srv.get(&format!("/v2/{repo}/tags/list?last=v1zz")).await;
    r.expect(200);
    let after: Vec<String> = all
        .iter()
        .filter(|t| t.as_str() > "v1zz")
        .cloned()
        .collect();
    assert_eq!(strings(&r.json()["tags"]), after);
    let r = srv.get(&format!("/v2/{repo}/tags/list?n=0")).await;
    r.expect(200);
    assert_eq!(
        r.json()["tags"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "{r}"
    );
    assert_eq!(r.header("link"), None, "{r}");
    let r = srv.get(&format!("/v2/{repo}/tags/list?n=1000")).await;
    r.expect(200);
    assert_eq!(strings(&r.json()["tags"]), all);
    assert_eq!(r.header("link"), None, "{r}");
}

#[tokio::test]
async fn tags_of_unknown_repository_is_404() {
    let srv = Server::start();
    tagged_repo(&srv, "tags/app", &["v1"]).await;
    srv.get("/v2/tags/other/tags/list")
        .await
        .expect_error(404, "NAME_UNKNOWN");
}

#[tokio::test]
async fn catalog_lists_repositories_with_content() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let r = srv.get("/v2/_catalog").await;
    r.expect(200);
    assert_eq!(
        r.json()["repositories"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0),
        0,
        "{r}"
    );
    // Blob-only repositories count as well as tagged ones.
    srv.push_blob("zeta", &rng.bytes(10)).await;
    srv.push_blob("cat/b", &rng.bytes(10)).await;
    tagged_repo(&srv, "cat/a", &["v1"]).await;
    tagged_repo(&srv, "cat/a-b/deep", &["v1"]).await;
    srv.push_blob("alpha", &rng.bytes(10)).await;
    let mut want: Vec<String> = ["zeta", "cat/b", "cat/a", "cat/a-b/deep", "alpha"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    want.sort();
    let r = srv.get("/v2/_catalog").await;
    r.expect(200);
    assert_eq!(json!(want), r.json()["repositories"], "{r}");
    assert_eq!(r.header("link"), None, "{r}");
}

#[tokio::test]
async fn catalog_pagination() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let mut want = Vec::new();
    for i in 0..7 {
        let name = format!("pg/r{}/{}", i % 3, rng.hex(6));
        srv.push_blob(&name, &rng.bytes(10)).await;
        want.push(name);
    }
    want.sort();
    let mut url = "/v2/_catalog?n=3".to_string();
    let mut seen = Vec::new();
    loop {
        let r = srv.get(&url).await;
        r.expect(200);
        let page = strings(&r.json()["repositories"]);
        assert!(page.len() <= 3, "{r}");
        seen.extend(page.iter().cloned());
        match next_link(&r) {
            Some(link) => {
                assert_eq!(page.len(), 3, "{r}");
                assert_eq!(
                    link,
                    format!("/v2/_catalog?n=3&last={}", page.last().unwrap())
                );
                url = link;
            }
            None => break,
        }
    }
    assert_eq!(seen, want);
    let r = srv.get(&format!("/v2/_catalog?last={}", want[3])).await;
    r.expect(200);
    assert_eq!(strings(&r.json()["repositories"]), want[4..]);
    let r = srv.get("/v2/_catalog?n=0").await;
    r.expect(200);
    assert_eq!(
        r.json()["repositories"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0),
        0,
        "{r}"
    );
    assert_eq!(r.header("link"), None, "{r}");
}

#[tokio::test]
async fn rejected_or_cancelled_pushes_create_no_repository() {
    let srv = Server::start();
    let mut rng = Rng::new();
    srv.push_blob("real", &rng.bytes(10)).await;
    // Manifest whose blobs are missing.
    let img = Image::build("amd64", &mut rng, 1, 10);
    srv.put_manifest("ghost/manifest", "v1", OCI_MANIFEST, &img.manifest)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    // Blob upload with the wrong digest.
    let data = rng.bytes(10);
    let wrong = sha256(&rng.bytes(10));
    srv.post(
        &format!("/v2/ghost/blob/blobs/uploads/?digest={wrong}"),
        data,
    )
    .await
    .expect_error(400, "DIGEST_INVALID");
    // Upload session opened and cancelled.
    let loc = srv.start_upload("ghost/cancelled").await;
    srv.delete(&loc).await.expect(204);
    let r = srv.get("/v2/_catalog").await;
    r.expect(200);
    assert_eq!(r.json()["repositories"], json!(["real"]), "{r}");
    for repo in ["ghost/manifest", "ghost/blob", "ghost/cancelled"] {
        srv.get(&format!("/v2/{repo}/tags/list"))
            .await
            .expect_error(404, "NAME_UNKNOWN");
    }
}
