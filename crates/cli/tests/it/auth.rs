//! Authentication on a default `berth serve`: challenges, the token endpoint, tokens at work.

use crate::harness::*;

async fn token(srv: &Server, user: &str, password: &str, scope: &str) -> reqwest::Response {
    srv.client
        .get(srv.url(&format!(
            "/oauth2/token?service=127.0.0.1:{}&scope={scope}",
            srv.port
        )))
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("token request")
}

#[tokio::test]
async fn default_server_requires_auth_and_issues_tokens() {
    let srv = Server::start_with_auth();
    // Unauthenticated: docker's challenge, naming realm, service and scope.
    let r = srv.client.get(srv.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let ch = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(ch.starts_with("Bearer realm=\"https://127.0.0.1:"), "{ch}");
    assert!(ch.contains("/oauth2/token\",service=\"127.0.0.1:"), "{ch}");
    let r = srv
        .client
        .get(srv.url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let ch = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(ch.ends_with(",scope=\"repository:team/app:pull\""), "{ch}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");

    // Wrong password: refused.
    assert_eq!(
        token(&srv, "owner", "wrong", "repository:team/app:pull")
            .await
            .status()
            .as_u16(),
        401
    );

    // The owner gets exactly what it asked for, and the token opens the registry.
    let r = token(
        &srv,
        "owner",
        OWNER_PASSWORD,
        "repository:team/app:pull,push",
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let tok = v["token"].as_str().unwrap().to_owned();
    assert_eq!(v["access_token"], v["token"]);
    assert_eq!(v["scope"], "repository:team/app:pull,push");
    let r = srv
        .client
        .get(srv.url("/v2/"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = srv
        .client
        .post(srv.url("/v2/team/app/blobs/uploads/"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    // Another repository is outside the token: a new challenge for it.
    let r = srv
        .client
        .post(srv.url("/v2/other/blobs/uploads/"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );

    // A tampered token is refused.
    let mut bad = tok.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    let r = srv
        .client
        .get(srv.url("/v2/"))
        .bearer_auth(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}
