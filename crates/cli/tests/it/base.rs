//! Version check, TLS set-up and plain-HTTP mode.

use std::net::SocketAddr;

use crate::harness::*;

#[tokio::test]
async fn version_check_returns_empty_json_object() {
    let srv = Server::start();
    let r = srv.get("/v2/").await;
    r.expect(200);
    assert_eq!(r.json(), serde_json::json!({}), "{r}");
}

#[tokio::test]
async fn generated_ca_is_a_pem_certificate() {
    let srv = Server::start();
    let pem = std::fs::read_to_string(srv.ca_path()).expect("ca.crt");
    assert!(pem.contains("-----BEGIN CERTIFICATE-----"), "{pem}");
    // Exactly one certificate: clients append it to their trust store as-is.
    assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 1);
    assert!(!pem.contains("PRIVATE KEY"), "ca.crt must not hold a key");
}

#[tokio::test]
async fn certificate_is_valid_for_localhost_name() {
    let srv = Server::start();
    let addr: SocketAddr = format!("127.0.0.1:{}", srv.port).parse().unwrap();
    let pem = std::fs::read(srv.ca_path()).unwrap();
    // Pin the name to 127.0.0.1 so no real DNS lookup (or ::1) is involved.
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let r = client
        .get(format!("https://localhost:{}/v2/", srv.port))
        .send()
        .await
        .expect("TLS handshake for the name localhost");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn plain_client_without_the_ca_is_rejected() {
    let srv = Server::start();
    // A second, unrelated CA must not be accepted: proves the client check is real.
    let other = Server::start();
    let pem = std::fs::read(other.ca_path()).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let err = client
        .get(srv.url("/v2/"))
        .send()
        .await
        .expect_err("a foreign CA must not validate this server");
    assert!(err.is_connect() || err.is_request(), "{err:?}");
}

#[tokio::test]
async fn insecure_http_mode_serves_plain_http() {
    let srv = Server::start_insecure();
    assert!(srv.base.starts_with("http://"));
    let r = srv.get("/v2/").await;
    r.expect(200);
    assert_eq!(r.json(), serde_json::json!({}), "{r}");
}
