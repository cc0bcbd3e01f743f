//! The whole router in process, over the in-memory store, one request at a time with `oneshot`:
//! the same handlers, authorization layer and error renderers `berth serve` runs, without a
//! socket. (The accept loop, TLS and real clients are the integration tests' job.)

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode, header};
use berth_access::AccessService;
use berth_oci::{Digest, media};
use berth_registry::Registry;
use berth_server::{AppParts, AppState, GunResolver, Limits};
use berth_storage::BlobStore;
use berth_storage::memory::MemoryStore;
use berth_trust::{KeyVault, TrustOptions, TrustService};
use bytes::Bytes;
use http_body_util::BodyExt;
use tower::ServiceExt;

const OWNER_PASSWORD: &str = "router-test owner password";

/// The parts `berth serve` assembles, over one in-memory store.
async fn app(auth_disabled: bool) -> (Router, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let registry = Arc::new(Registry::new(store.clone(), store.clone()));
    let vault = KeyVault::open(store.as_ref(), b"router test passphrase")
        .await
        .unwrap();
    let trust = Arc::new(TrustService::new(
        store.clone(),
        store.clone(),
        vault.clone(),
        TrustOptions::default(),
    ));
    let hosts = vec!["localhost".to_owned()];
    let access = Arc::new(
        AccessService::new(
            store.clone(),
            store.clone(),
            vault,
            hosts.clone(),
            auth_disabled,
        )
        .unwrap(),
    );
    access.init(Some(OWNER_PASSWORD.to_owned())).await.unwrap();
    let router = berth_server::router(AppState::new(AppParts {
        registry,
        trust,
        guns: GunResolver { hosts },
        access,
        scheme: "http",
        limits: Limits::default(),
        gc: Default::default(),
    }));
    (router, store)
}

fn req(method: Method, uri: &str, body: impl Into<Bytes>) -> http::request::Builder {
    let body: Bytes = body.into();
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "localhost")
        .header(header::CONTENT_LENGTH, body.len())
}

async fn send(app: &Router, r: http::request::Builder, body: impl Into<Bytes>) -> Response<Body> {
    app.clone()
        .oneshot(r.body(Body::from(body.into())).unwrap())
        .await
        .unwrap()
}

async fn body_of(resp: Response<Body>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

fn header_of<'a>(resp: &'a Response<Body>, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// The single OCI error in a response body: (code, whole error object).
async fn oci_error(resp: Response<Body>) -> (String, serde_json::Value) {
    let ct = header_of(&resp, "content-type").to_owned();
    assert!(ct.starts_with("application/json"), "{ct}");
    let v: serde_json::Value = serde_json::from_slice(&body_of(resp).await).unwrap();
    let errors = v["errors"].as_array().expect("an errors list");
    assert_eq!(errors.len(), 1, "{v}");
    let e = errors[0].clone();
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    (e["code"].as_str().unwrap().to_owned(), e)
}

#[tokio::test]
async fn ping_answers_with_the_api_version() {
    let (app, _) = app(true).await;
    for path in ["/v2/", "/v2"] {
        let resp = send(&app, req(Method::GET, path, ""), "").await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header_of(&resp, "docker-distribution-api-version"),
            "registry/2.0"
        );
    }
}

#[tokio::test]
async fn a_chunked_blob_upload_lands_in_the_store_and_reads_back() {
    let (app, store) = app(true).await;
    let resp = send(
        &app,
        req(Method::POST, "/v2/team/app/blobs/uploads/", ""),
        "",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = header_of(&resp, "location").to_owned();
    assert!(
        location.starts_with("/v2/team/app/blobs/uploads/"),
        "{location}"
    );

    let resp = send(
        &app,
        req(Method::PATCH, &location, "hello ").header("content-range", "0-5"),
        "hello ",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header_of(&resp, "range"), "0-5");

    // A chunk that does not continue the upload: 416 in OCI format, with where to resume.
    let resp = send(
        &app,
        req(Method::PATCH, &location, "xx").header("content-range", "2-3"),
        "xx",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header_of(&resp, "range"), "0-5");
    assert_eq!(oci_error(resp).await.0, "BLOB_UPLOAD_INVALID");

    let d = Digest::sha256_of(b"hello world");
    let resp = send(
        &app,
        req(Method::PUT, &format!("{location}?digest={d}"), "world"),
        "world",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header_of(&resp, "docker-content-digest"), d.to_string());
    assert_eq!(
        store.stat(&d).await.unwrap(),
        Some(11),
        "in the memory store"
    );

    let blob = format!("/v2/team/app/blobs/{d}");
    let resp = send(&app, req(Method::HEAD, &blob, ""), "").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_of(&resp, "content-length"), "11");
    let resp = send(&app, req(Method::GET, &blob, ""), "").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_of(resp).await, "hello world");
    let resp = send(
        &app,
        req(Method::GET, &blob, "").header("range", "bytes=6-10"),
        "",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body_of(resp).await, "world");

    // The finished session is gone.
    let resp = send(&app, req(Method::GET, &location, ""), "").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(oci_error(resp).await.0, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn a_monolithic_upload_with_the_wrong_digest_is_refused() {
    let (app, store) = app(true).await;
    let claimed = Digest::sha256_of(b"other bytes");
    let resp = send(
        &app,
        req(
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?digest={claimed}"),
            "actual bytes",
        ),
        "actual bytes",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(oci_error(resp).await.0, "DIGEST_INVALID");
    assert_eq!(store.stat(&claimed).await.unwrap(), None);
    let right = Digest::sha256_of(b"actual bytes");
    let resp = send(
        &app,
        req(
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?digest={right}"),
            "actual bytes",
        ),
        "actual bytes",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn manifests_are_stored_served_and_checked_for_their_blobs() {
    let (app, _) = app(true).await;
    let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}";
    let c = Digest::sha256_of(config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{c}","size":{}}},"layers":[]}}"#,
        media::OCI_MANIFEST,
        config.len()
    );
    let put = |m: String| {
        (
            req(Method::PUT, "/v2/team/app/manifests/v1", m.clone())
                .header("content-type", media::OCI_MANIFEST),
            m,
        )
    };
    // The config blob is not there yet.
    let (r, b) = put(manifest.clone());
    let resp = send(&app, r, b).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (code, e) = oci_error(resp).await;
    assert_eq!(code, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(e["detail"][0]["digest"], c.to_string());

    let resp = send(
        &app,
        req(
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?digest={c}"),
            &config[..],
        ),
        &config[..],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let (r, b) = put(manifest.clone());
    let resp = send(&app, r, b).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let md = Digest::sha256_of(manifest.as_bytes());
    assert_eq!(header_of(&resp, "docker-content-digest"), md.to_string());

    for reference in ["v1".to_owned(), md.to_string()] {
        let resp = send(
            &app,
            req(
                Method::GET,
                &format!("/v2/team/app/manifests/{reference}"),
                "",
            )
            .header("accept", media::OCI_MANIFEST),
            "",
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK, "{reference}");
        assert_eq!(header_of(&resp, "content-type"), media::OCI_MANIFEST);
        assert_eq!(header_of(&resp, "docker-content-digest"), md.to_string());
        assert_eq!(body_of(resp).await, manifest.as_bytes());
    }
    let resp = send(&app, req(Method::GET, "/v2/team/app/tags/list", ""), "").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let tags: serde_json::Value = serde_json::from_slice(&body_of(resp).await).unwrap();
    assert_eq!(
        tags,
        serde_json::json!({"name": "team/app", "tags": ["v1"]})
    );

    let resp = send(
        &app,
        req(Method::GET, "/v2/team/app/manifests/nope", ""),
        "",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(oci_error(resp).await.0, "MANIFEST_UNKNOWN");
    let resp = send(&app, req(Method::GET, "/v2/team/none/tags/list", ""), "").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(oci_error(resp).await.0, "NAME_UNKNOWN");
    let resp = send(&app, req(Method::GET, "/v2/Team/App/manifests/v1", ""), "").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(oci_error(resp).await.0, "NAME_INVALID");
}

/// With authentication on (the default), the router challenges and then admits the owner.
#[tokio::test]
async fn with_authentication_on_a_caller_is_challenged_then_admitted() {
    let (app, _) = app(false).await;
    let resp = send(&app, req(Method::GET, "/v2/", ""), "").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = header_of(&resp, "www-authenticate").to_owned();
    assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    assert_eq!(oci_error(resp).await.0, "UNAUTHORIZED");

    use base64::Engine as _;
    let basic = |user: &str, pw: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
    };
    let resp = send(
        &app,
        req(Method::GET, "/v2/", "").header("authorization", basic("owner", "wrong")),
        "",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = send(
        &app,
        req(Method::GET, "/v2/", "").header("authorization", basic("owner", OWNER_PASSWORD)),
        "",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(
        &app,
        req(Method::POST, "/v2/team/app/blobs/uploads/", "")
            .header("authorization", basic("owner", OWNER_PASSWORD)),
        "",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
}
