//! Many clients at once against one repository (storage locking, tag updates).

use futures::future::join_all;

use crate::harness::*;

const REPO: &str = "busy/app";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_of_different_tags() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let imgs: Vec<Image> = (0..16)
        .map(|_| Image::build("amd64", &mut rng, 2, 2000))
        .collect();
    let pushes = imgs.iter().enumerate().map(|(i, img)| {
        let srv = &srv;
        async move {
            srv.push_image_blobs(REPO, img).await;
            srv.push_manifest(REPO, &format!("t{i:02}"), OCI_MANIFEST, &img.manifest)
                .await;
        }
    });
    join_all(pushes).await;
    let r = srv.get(&format!("/v2/{REPO}/tags/list")).await;
    r.expect(200);
    let want: Vec<String> = (0..16).map(|i| format!("t{i:02}")).collect();
    assert_eq!(r.json()["tags"], serde_json::json!(want), "{r}");
    for (i, img) in imgs.iter().enumerate() {
        let g = srv.get(&format!("/v2/{REPO}/manifests/t{i:02}")).await;
        g.expect(200);
        assert_eq!(g.body, img.manifest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_to_one_tag_leave_one_winner() {
    let srv = Server::start();
    let mut rng = Rng::new();
    let imgs: Vec<Image> = (0..8)
        .map(|_| Image::build("amd64", &mut rng, 1, 500))
        .collect();
    for img in &imgs {
        srv.push_image_blobs(REPO, img).await;
    }
    join_all(
        imgs.iter()
            .map(|img| srv.push_manifest(REPO, "latest", OCI_MANIFEST, &img.manifest)),
    )
    .await;
    let g = srv.get(&format!("/v2/{REPO}/manifests/latest")).await;
    g.expect(200);
    let d = g.must_header("docker-content-digest");
    assert!(
        imgs.iter().any(|i| i.digest == d && i.manifest == g.body),
        "{g}"
    );
    // Every pushed manifest stays reachable by digest.
    for img in &imgs {
        srv.get(&format!("/v2/{REPO}/manifests/{}", img.digest))
            .await
            .expect(200);
    }
}
