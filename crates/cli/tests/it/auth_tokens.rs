//! Token tests: tampered, expired, wrong audience/issuer/key id, algorithm swaps, key rotation,
//! scope escalation attempts, and the refresh-token flow following the identity (brute-force
//! throttling is in `auth_credentials`).

use reqwest::Method;
use serde_json::json;

use crate::auth_support::*;
use crate::harness::*;

const REPO: &str = "team/app";

async fn get_as(srv: &Server, path: &str, cred: &Cred) -> Resp {
    call(srv, Method::GET, path, cred, &[], None).await
}

async fn open_upload(srv: &Server, repo: &str, cred: &Cred) -> Resp {
    call(
        srv,
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/"),
        cred,
        &[],
        None,
    )
    .await
}

fn scope_of(r: &Resp) -> String {
    r.expect(200);
    r.json()["scope"].as_str().expect("scope").to_owned()
}

async fn token_for(srv: &Server, cred: &Cred, scopes: &[&str]) -> (String, String) {
    let r = token_get(srv, &srv.client, cred, scopes, None, "").await;
    let scope = scope_of(&r);
    (r.json()["token"].as_str().unwrap().to_owned(), scope)
}

#[tokio::test]
async fn forged_tampered_expired_and_misdirected_tokens_are_refused() {
    let srv = Server::start_with_auth();
    let host = srv.host();
    let alice = user_with_roles(&srv, "alice", "alice-password-1", &["AcrPull"]).await;
    let (tok, scope) = token_for(&srv, &alice, &["repository:team/app:pull,push"]).await;
    assert_eq!(scope, "repository:team/app:pull");
    let tags = "/v2/team/app/tags/list";
    // The genuine token: authorization passes (404: the repository is empty).
    get_as(&srv, tags, &Cred::Bearer(tok.clone()))
        .await
        .expect(404);
    let jwt = Jwt::parse(&tok);
    assert_eq!(jwt.header["alg"], "ES256", "{}", jwt.header);
    assert!(jwt.header["x5c"].is_array(), "{}", jwt.header);
    let kid = jwt.header["kid"].as_str().unwrap().to_owned();
    assert_eq!(kid.len(), 59, "libtrust kid: {kid}");
    assert_eq!(jwt.claims["aud"], host.as_str());
    assert_eq!(jwt.claims["sub"], "alice");

    let refused = |t: String, what: &'static str| {
        let srv = &srv;
        async move {
            for (method, path) in [
                (Method::GET, tags),
                (Method::POST, "/v2/team/app/blobs/uploads/"),
            ] {
                let r = call(srv, method, path, &Cred::Bearer(t.clone()), &[], None).await;
                assert_eq!(r.status, 401, "{what}: {r}");
                expect_challenge(&r, Some("invalid_token"));
            }
        }
    };

    // Tampered claims (push added; then the subject swapped to the owner), signature kept.
    let mut t = Jwt::parse(&tok);
    t.claims["access"][0]["actions"] = json!(["pull", "push"]);
    refused(t.encode_keeping_signature(), "access claim widened").await;
    let mut t = Jwt::parse(&tok);
    t.claims["sub"] = json!("owner");
    refused(t.encode_keeping_signature(), "subject swapped").await;
    let r = get_as(
        &srv,
        "/api/v1/users",
        &Cred::Bearer(t.encode_keeping_signature()),
    )
    .await;
    expect_challenge(&r, Some("invalid_token"));
    // Tampered signature.
    let mut bad = tok.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'Q' } else { 'A' });
    refused(bad, "signature changed").await;
    // Wrong key id: another libtrust-shaped kid, none, and an empty one.
    let mut t = Jwt::parse(&tok);
    let other_kid: String = kid
        .chars()
        .map(|c| match c {
            ':' => ':',
            'A' => 'B',
            _ => 'A',
        })
        .collect();
    t.header["kid"] = json!(other_kid);
    refused(t.encode_keeping_signature(), "unknown kid").await;
    let mut t = Jwt::parse(&tok);
    t.header.as_object_mut().unwrap().remove("kid");
    refused(t.encode_keeping_signature(), "no kid").await;
    // Algorithm swaps: none, and HS256 (an HMAC "keyed" with public material).
    let mut t = Jwt::parse(&tok);
    t.header["alg"] = json!("none");
    t.sig = String::new();
    refused(t.encode_keeping_signature(), "alg none").await;
    let mut t = Jwt::parse(&tok);
    t.header["alg"] = json!("HS256");
    refused(t.encode_keeping_signature(), "alg HS256").await;
    refused("not.a.token".into(), "garbage").await;

    // Wrong audience: the token service mints for another service on request; not valid here.
    let r = token_get(
        &srv,
        &srv.client,
        &alice,
        &["repository:team/app:pull"],
        Some("other-host.example"),
        "",
    )
    .await;
    r.expect(200);
    let foreign = r.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(Jwt::parse(&foreign).claims["aud"], "other-host.example");
    refused(foreign, "audience other-host.example").await;
    // The same server under another name is another audience.
    let port = srv.port;
    let r = token_get(
        &srv,
        &srv.client,
        &alice,
        &["repository:team/app:pull"],
        Some(&format!("localhost:{port}")),
        "",
    )
    .await;
    refused(
        r.json()["token"].as_str().unwrap().to_owned(),
        "audience localhost",
    )
    .await;

    // Tokens signed with the server's real key: live ones work, so what follows fails only for
    // the claim under test.
    let key = ServerKey::load(&srv).await;
    assert_eq!(key.kid, kid);
    let access = json!([{"type": "repository", "name": REPO, "actions": ["pull"]}]);
    let live = key.mint(&claims(&srv, "alice", now(), 300, access.clone()));
    get_as(&srv, tags, &Cred::Bearer(live)).await.expect(404);
    let expired = key.mint(&claims(&srv, "alice", now() - 7200, 3600, access.clone()));
    refused(expired, "expired an hour ago").await;
    let future = key.mint(&claims(&srv, "alice", now() + 3600, 300, access.clone()));
    refused(future, "not valid for an hour").await;
    let mut c = claims(&srv, "alice", now(), 300, access.clone());
    c["iss"] = json!("another-issuer");
    refused(key.mint(&c), "wrong issuer").await;
    let mut c = claims(&srv, "alice", now(), 300, access.clone());
    c["aud"] = json!("berth-refresh");
    refused(key.mint(&c), "refresh audience").await;
    // Claims the live identity does not back: a token naming rights alice lacks still cannot push.
    let wide = json!([{"type": "repository", "name": REPO, "actions": ["pull", "push"]}]);
    let r = open_upload(
        &srv,
        REPO,
        &Cred::Bearer(key.mint(&claims(&srv, "alice", now(), 300, wide))),
    )
    .await;
    expect_denied(&r);

    // Key rotation: old tokens stay valid, new ones use the new key, JWKS publishes both, and a
    // token claiming the new kid with the old key's signature is refused.
    admin(&srv, Method::POST, "signing-keys/rotate", None).await;
    get_as(&srv, tags, &Cred::Bearer(tok.clone()))
        .await
        .expect(404);
    let (tok2, _) = token_for(&srv, &alice, &["repository:team/app:pull"]).await;
    let kid2 = Jwt::parse(&tok2).header["kid"].as_str().unwrap().to_owned();
    assert_ne!(kid2, kid);
    get_as(&srv, tags, &Cred::Bearer(tok2)).await.expect(404);
    let jwks = get_as(&srv, "/oauth2/jwks", &Cred::None).await;
    jwks.expect(200);
    let kids: Vec<String> = jwks.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(kids.contains(&kid) && kids.contains(&kid2), "{kids:?}");
    let mut t = Jwt::parse(&tok);
    t.header["kid"] = json!(kid2);
    refused(t.encode_keeping_signature(), "new kid, old key's signature").await;
}

#[tokio::test]
async fn scope_escalation_attempts_get_only_what_the_caller_has() {
    let srv = Server::start_with_auth();
    enable_trust_as_owner(&srv).await;
    let host = srv.host();
    let gun = format!("{host}/{REPO}");
    let puller = user_with_roles(&srv, "puller", "puller-password-1", &["AcrPull"]).await;
    let pusher = user_with_roles(&srv, "pusher", "pusher-password-1", &["AcrPush"]).await;
    create_user(&srv, "scoped", "scoped-password-1").await;
    assign(&srv, "AcrPush", "scoped", Some(REPO)).await;
    let scoped = Cred::basic("scoped", "scoped-password-1");
    let owner = Cred::owner();

    // AcrPull asks for push: the token carries pull only, and pushing with it is DENIED.
    let (tok, scope) = token_for(&srv, &puller, &["repository:team/app:pull,push,delete,*"]).await;
    assert_eq!(scope, "repository:team/app:pull");
    expect_denied(&open_upload(&srv, REPO, &Cred::Bearer(tok)).await);
    // AcrPush with a pull-only token: insufficient scope, challenged for pull,push.
    let (tok, _) = token_for(&srv, &pusher, &["repository:team/app:pull"]).await;
    let r = open_upload(&srv, REPO, &Cred::Bearer(tok)).await;
    expect_challenge(&r, Some("insufficient_scope"));
    assert_eq!(
        challenge_scope(&r).as_deref(),
        Some("repository:team/app:pull,push")
    );
    // AcrPush asks to write trust data: pull only (no AcrImageSigner).
    let gun_scope = format!("repository:{gun}:pull,push,*");
    let (tok, scope) = token_for(&srv, &pusher, &[&gun_scope]).await;
    assert_eq!(scope, format!("repository:{gun}:pull"));
    let (ct, body) = crate::trust_harness::multipart(&[("root", b"{}")]);
    let trust_post = |path: String, cred: Cred| {
        let (srv, ct, body) = (&srv, ct.clone(), body.clone());
        async move {
            call(
                srv,
                Method::POST,
                &path,
                &cred,
                &[("content-type", &ct)],
                Some(body),
            )
            .await
        }
    };
    expect_denied(&trust_post(format!("/v2/{gun}/_trust/tuf/"), Cred::Bearer(tok)).await);
    // A bare GUN (no host) is the same repository: its `push` scope is the registry's, yet
    // publishing trust data under it still needs the signer right.
    let (tok, scope) = token_for(&srv, &pusher, &["repository:team/app:pull,push"]).await;
    assert_eq!(scope, "repository:team/app:pull,push");
    expect_denied(&trust_post("/v2/team/app/_trust/tuf/".into(), Cred::Bearer(tok)).await);
    expect_denied(&trust_post("/v2/team/app/_trust/tuf/".into(), pusher.clone()).await);
    // A role on one repository: nothing elsewhere, no catalog scope.
    let r = token_get(
        &srv,
        &srv.client,
        &scoped,
        &[
            "repository:team/app:pull,push",
            "repository:other/app:pull,push",
            "registry:catalog:*",
        ],
        None,
        "",
    )
    .await;
    assert_eq!(scope_of(&r), "repository:team/app:pull,push");
    // Names of another registry: nothing, even for the owner.
    let r = token_get(
        &srv,
        &srv.client,
        &owner,
        &["repository:evil.example.com/team/app:pull,push,*"],
        None,
        "",
    )
    .await;
    assert_eq!(scope_of(&r), "");
    // The admin account never gets trust writes, whatever it asks.
    let v = admin(&srv, Method::POST, "admin-user/enable", None).await;
    let admin_acct = Cred::basic("admin", v["password"].as_str().unwrap());
    let r = token_get(&srv, &srv.client, &admin_acct, &[&gun_scope], None, "").await;
    assert_eq!(scope_of(&r), format!("repository:{gun}:pull"));
    // A scoped token with content/read+write asks for delete and `*`.
    scope_map(&srv, "rw", REPO, &["content/read", "content/write"]).await;
    let pw = create_token(&srv, "ci", "rw", None).await;
    let ci = Cred::basic("ci", &pw);
    let r = token_get(
        &srv,
        &srv.client,
        &ci,
        &[
            "repository:team/app:pull,push,delete,*",
            &gun_scope,
            "registry:catalog:*",
        ],
        None,
        "",
    )
    .await;
    assert_eq!(scope_of(&r), "repository:team/app:pull,push");
    // Anonymous: nothing, until the anonymous-pull switch grants pull (and only pull).
    let r = token_get(
        &srv,
        &srv.client,
        &Cred::None,
        &["repository:team/app:pull,push"],
        None,
        "",
    )
    .await;
    assert_eq!(scope_of(&r), "");
    admin(
        &srv,
        Method::PUT,
        "config/anonymous-pull",
        Some(json!({"enabled": true})),
    )
    .await;
    let r = token_get(
        &srv,
        &srv.client,
        &Cred::None,
        &["repository:team/app:pull,push", &gun_scope],
        None,
        "",
    )
    .await;
    assert_eq!(
        scope_of(&r),
        format!("repository:team/app:pull repository:{gun}:pull")
    );

    // Rights are re-read on every request: a live token loses push with the role, and gets
    // it back with the role.
    let (tok, _) = token_for(&srv, &pusher, &["repository:team/app:pull,push"]).await;
    open_upload(&srv, REPO, &Cred::Bearer(tok.clone()))
        .await
        .expect(202);
    unassign(&srv, "AcrPush", "pusher", None).await;
    expect_denied(&open_upload(&srv, REPO, &Cred::Bearer(tok.clone())).await);
    assign(&srv, "AcrPush", "pusher", None).await;
    open_upload(&srv, REPO, &Cred::Bearer(tok))
        .await
        .expect(202);
}

#[tokio::test]
async fn refresh_tokens_and_live_tokens_follow_the_identity() {
    let srv = Server::start_with_auth();
    let host = srv.host();
    user_with_roles(&srv, "bob", "bob-password-1", &["AcrPush"]).await;
    let password_grant = |user: &'static str, pw: &'static str| {
        let host = host.clone();
        let srv = &srv;
        async move {
            token_post(
                srv,
                &[
                    ("grant_type", "password"),
                    ("username", user),
                    ("password", pw),
                    ("access_type", "offline"),
                    ("service", &host),
                    ("client_id", "berth-tests"),
                    ("scope", "repository:team/app:pull,push"),
                ],
            )
            .await
        }
    };
    let refresh_grant = |refresh: String| {
        let host = host.clone();
        let srv = &srv;
        async move {
            token_post(
                srv,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &refresh),
                    ("service", &host),
                    ("client_id", "berth-tests"),
                    ("scope", "repository:team/app:pull,push"),
                ],
            )
            .await
        }
    };

    // Wrong password: refused, no tokens.
    let r = password_grant("bob", "wrong-password").await;
    assert_eq!(r.status, 401, "{r}");
    assert!(r.json().get("refresh_token").is_none(), "{r}");
    // Password grant with access_type=offline: an access token and a refresh token.
    let r = password_grant("bob", "bob-password-1").await;
    r.expect(200);
    let v = r.json();
    assert_eq!(v["scope"], "repository:team/app:pull,push", "{v}");
    assert!(v["expires_in"].as_i64().unwrap() >= 60, "{v}");
    let access = v["access_token"].as_str().unwrap().to_owned();
    let refresh = v["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    open_upload(&srv, REPO, &Cred::Bearer(access.clone()))
        .await
        .expect(202);
    // Refresh grant: a new access token with the requested scope.
    let r = refresh_grant(refresh.clone()).await;
    r.expect(200);
    let access2 = r.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["scope"], "repository:team/app:pull,push");
    open_upload(&srv, REPO, &Cred::Bearer(access2.clone()))
        .await
        .expect(202);
    // GET with offline_token=true also hands out a refresh token.
    let r = token_get(
        &srv,
        &srv.client,
        &Cred::basic("bob", "bob-password-1"),
        &["repository:team/app:pull"],
        None,
        "&offline_token=true&client_id=docker",
    )
    .await;
    r.expect(200);
    assert!(r.json()["refresh_token"].is_string(), "{r}");
    // A refresh token is not an access token, and an access token is not a refresh token.
    let r = open_upload(&srv, REPO, &Cred::Bearer(refresh.clone())).await;
    expect_challenge(&r, Some("invalid_token"));
    let r = refresh_grant(access.clone()).await;
    assert_eq!(r.status, 401, "{r}");

    // Disabled: the refresh token, the live access tokens and the password stop at once.
    admin(&srv, Method::POST, "users/bob/disable", None).await;
    assert_eq!(refresh_grant(refresh.clone()).await.status, 401);
    for t in [&access, &access2] {
        let r = open_upload(&srv, REPO, &Cred::Bearer(t.clone())).await;
        expect_challenge(&r, Some("invalid_token"));
    }
    let r = get_as(&srv, "/v2/", &Cred::basic("bob", "bob-password-1")).await;
    expect_challenge(&r, None);
    // Enabled again: the same tokens work again (nothing else changed).
    admin(&srv, Method::POST, "users/bob/enable", None).await;
    refresh_grant(refresh.clone()).await.expect(200);
    open_upload(&srv, REPO, &Cred::Bearer(access.clone()))
        .await
        .expect(202);

    // Deleted: everything stops.
    admin(&srv, Method::DELETE, "users/bob", None).await;
    assert_eq!(refresh_grant(refresh.clone()).await.status, 401);
    let r = open_upload(&srv, REPO, &Cred::Bearer(access.clone())).await;
    expect_challenge(&r, Some("invalid_token"));
}
