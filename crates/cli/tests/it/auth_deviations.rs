//! Regression tests for access-control bugs found by the auth suite: tokens outliving a deleted
//! identity, anonymous pull opening listings, the global changefeed leaking repositories.

use reqwest::Method;

use crate::auth_support::*;
use crate::harness::*;

/// A refresh token (30 days) or access token of a deleted identity must not become valid for
/// whoever is created later under the same name.
#[tokio::test]
async fn tokens_of_a_deleted_identity_do_not_pass_to_a_new_one_with_its_name() {
    let srv = Server::start_with_auth();
    let host = srv.host();
    user_with_roles(&srv, "bob", "bob-password-1", &["AcrPush"]).await;
    let r = token_post(
        &srv,
        &[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "bob-password-1"),
            ("access_type", "offline"),
            ("service", &host),
            ("client_id", "berth-tests"),
            ("scope", "repository:team/app:pull,push"),
        ],
    )
    .await;
    r.expect(200);
    let access = r.json()["access_token"].as_str().unwrap().to_owned();
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_owned();
    admin(&srv, Method::DELETE, "users/bob", None).await;
    // Someone else, later, under the same name.
    user_with_roles(&srv, "bob", "another-bob-password", &["AcrPush"]).await;
    let r = token_post(
        &srv,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", &host),
            ("client_id", "berth-tests"),
        ],
    )
    .await;
    assert_eq!(
        r.status, 401,
        "the deleted bob's refresh token works for the new bob: {r}"
    );
    let r = call(
        &srv,
        Method::POST,
        "/v2/team/app/blobs/uploads/",
        &Cred::Bearer(access),
        &[],
        None,
    )
    .await;
    assert_eq!(
        r.status, 401,
        "the deleted bob's access token works for the new bob: {r}"
    );
}

/// With anonymous pull on, "pulls of images and reads of trust data need no credentials, and
/// everything else still does" (issue 4); the token service agrees (it refuses
/// `registry:catalog:*` to anonymous callers), but `_catalog` and the global changefeed answer
/// anonymous requests with the full lists.
#[tokio::test]
async fn anonymous_pull_does_not_open_the_catalog_or_the_global_changefeed() {
    let srv = Server::start_with_auth();
    enable_trust_as_owner(&srv).await;
    let img = Image::build("amd64", &mut Rng::new(), 1, 100);
    push_image_as(&srv, &Cred::owner(), "team/app", "v1", &img).await;
    admin(
        &srv,
        Method::PUT,
        "config/anonymous-pull",
        Some(serde_json::json!({"enabled": true})),
    )
    .await;
    // Pulls are open, as they should be.
    let r = call(
        &srv,
        Method::GET,
        "/v2/team/app/manifests/v1",
        &Cred::None,
        &[("accept", OCI_MANIFEST)],
        None,
    )
    .await;
    r.expect(200);
    let t = token_get(
        &srv,
        &srv.client,
        &Cred::None,
        &["registry:catalog:*"],
        None,
        "",
    )
    .await;
    assert_eq!(
        t.json()["scope"],
        "",
        "the token service refuses the catalog: {t}"
    );
    let mut bad = Vec::new();
    for path in ["/v2/_catalog", "/v2/_trust/changefeed"] {
        let r = call(&srv, Method::GET, path, &Cred::None, &[], None).await;
        if r.status != 401 {
            bad.push(format!("{r}"));
        }
    }
    assert!(
        bad.is_empty(),
        "anonymous got past credentials:\n{}",
        bad.join("\n")
    );
}

/// `GET /v2/_trust/changefeed` (notary: needs `registry:catalog:*`) is classified as Catalog,
/// which lets every authenticated caller in, but unlike `_catalog` its answer is not filtered:
/// a user without any role, or a token scoped to one repository, sees the trust history (GUNs,
/// versions, digests) of every repository.
#[tokio::test]
async fn global_changefeed_shows_only_what_the_caller_may_read() {
    let srv = Server::start_with_auth();
    enable_trust_as_owner(&srv).await;
    let ogun = crate::trust_harness::gun(&srv, "other/app");
    let n = crate::trust_harness::Notary::new(&srv);
    let mut c = n.cmd(&["init", &ogun, "-p"]);
    c.env(
        "NOTARY_AUTH",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("owner:{OWNER_PASSWORD}"),
        ),
    );
    crate::trust_harness::run(&mut c, None).ok();
    let nobody = user_with_roles(&srv, "nobody", "nobody-password-1", &[]).await;
    scope_map(&srv, "one", "team/app", &["content/read", "trust/read"]).await;
    let pw = create_token(&srv, "one-repo", "one", None).await;
    let mut bad = Vec::new();
    for cred in [nobody, Cred::basic("one-repo", &pw)] {
        let r = call(
            &srv,
            Method::GET,
            "/v2/_trust/changefeed?change_id=0&records=100",
            &cred,
            &[],
            None,
        )
        .await;
        // Refusing is fine; answering is fine if other/app's history is not in it.
        if (200..300).contains(&r.status) && String::from_utf8_lossy(&r.body).contains(&ogun) {
            bad.push(format!("{cred:?}: {r}"));
        }
        // Its per-GUN changefeed is refused, as it should be.
        let r = call(
            &srv,
            Method::GET,
            &format!("/v2/{ogun}/_trust/changefeed"),
            &cred,
            &[],
            None,
        )
        .await;
        assert_eq!(r.status, 403, "{r}");
    }
    assert!(
        bad.is_empty(),
        "the global changefeed leaks other/app:\n{}",
        bad.join("\n")
    );
}
