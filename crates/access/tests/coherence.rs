//! Two access services over one store, as two `berth serve` nodes over one PostgreSQL (and the
//! in-memory store, where "one store" is one object): what changes through one node holds on
//! the other at its next request.

mod support;

use std::time::Duration;

use berth_access::{AccessService, Error, OWNER};
use berth_auth::ResourceActions;
use support::{Backend, OWNER_PW, SERVICE, TestClock, kid_of, node};

fn scopes(list: &[&str]) -> Vec<ResourceActions> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

/// Two nodes over `b`, the owner bootstrapped through the first.
async fn two_nodes(b: &Backend, clock: &TestClock) -> (AccessService, AccessService) {
    let a = node(b, clock).await;
    a.init(Some(OWNER_PW.into())).await.unwrap();
    let other = node(b, clock).await;
    assert_eq!(
        other.init(None).await.unwrap(),
        berth_access::Bootstrap::Existing
    );
    (a, other)
}

/// `token` with its header's `kid` replaced (the signature no longer matters: the kid is
/// looked up first).
fn with_kid(token: &str, kid: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (header, rest) = token.split_once('.').unwrap();
    let mut h: serde_json::Value = serde_json::from_slice(&b64.decode(header).unwrap()).unwrap();
    h["kid"] = kid.into();
    format!("{}.{rest}", b64.encode(serde_json::to_vec(&h).unwrap()))
}

macro_rules! on_shared_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn mem() {
                super::$name(super::Backend::mem()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Backend::postgres().await).await;
            }
        }
    )*};
}

on_shared_stores!(
    nodes_starting_together_on_an_empty_store_make_one_owner,
    a_key_rotated_on_one_node_is_accepted_and_used_by_the_other,
    identity_changes_on_one_node_hold_on_the_other_at_once,
    a_repository_token_regenerated_or_deleted_on_one_node_is_refused_by_the_other,
    settings_changed_on_one_node_hold_on_the_other,
    login_throttling_is_per_node,
);

async fn a_key_rotated_on_one_node_is_accepted_and_used_by_the_other(b: Backend) {
    let clock = TestClock::new();
    let (a, other) = two_nodes(&b, &clock).await;
    let owner = a.authenticate(OWNER, OWNER_PW, None).await.unwrap();
    let (t0, _) = a.issue(&owner, &[], SERVICE).await.unwrap();
    other.bearer(&t0, SERVICE).await.unwrap();
    let loads = other.key_loads();

    // Rotated on A: B accepts A's new tokens on the next request, reading the keys once.
    a.load_or_rotate_keys(true).await.unwrap();
    let (t1, _) = a.issue(&owner, &[], SERVICE).await.unwrap();
    assert_ne!(kid_of(&t0), kid_of(&t1));
    other.bearer(&t1, SERVICE).await.unwrap();
    other
        .refresh(&a.issue_refresh(&owner).await.unwrap())
        .await
        .unwrap();
    assert_eq!(other.key_loads(), loads + 1);
    // ...and signs with the new key from then on, which A accepts.
    let (from_b, _) = other.issue(&owner, &[], SERVICE).await.unwrap();
    assert_eq!(kid_of(&from_b), kid_of(&t1));
    a.bearer(&from_b, SERVICE).await.unwrap();

    // Forged kids: refused, and the store is read at most once per second for them.
    for i in 0..50 {
        let forged = with_kid(&t1, &format!("FORG:ED{i:02}"));
        assert!(matches!(
            other.bearer(&forged, SERVICE).await,
            Err(Error::BadToken(m)) if m.contains("unknown key")
        ));
    }
    assert_eq!(other.key_loads(), loads + 1, "forged kids read the store");
    clock.advance(Duration::from_millis(1_100));
    for i in 0..50 {
        let forged = with_kid(&t1, &format!("FORG:ED{i:02}"));
        assert!(other.bearer(&forged, SERVICE).await.is_err());
    }
    assert_eq!(other.key_loads(), loads + 2);

    // A node that sees no token of the new key still picks it up within a minute, for what it
    // signs and for its JWKS.
    a.load_or_rotate_keys(true).await.unwrap();
    let (t2, _) = a.issue(&owner, &[], SERVICE).await.unwrap();
    let (still, _) = other.issue(&owner, &[], SERVICE).await.unwrap();
    assert_eq!(
        kid_of(&still),
        kid_of(&t1),
        "keys read a moment ago are used"
    );
    clock.advance(Duration::from_secs(61));
    let (now_b, _) = other.issue(&owner, &[], SERVICE).await.unwrap();
    assert_eq!(kid_of(&now_b), kid_of(&t2));
    let jwks = other.jwks().await.unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid_of(&t2).as_str()),
        "{jwks}"
    );
    // Tokens of the retired keys stay good on both nodes until they expire.
    let (late, _) = a.issue(&owner, &[], SERVICE).await.unwrap();
    for n in [&a, &other] {
        n.bearer(&late, SERVICE).await.unwrap();
        n.bearer(&still, SERVICE).await.unwrap();
    }
}

async fn identity_changes_on_one_node_hold_on_the_other_at_once(b: Backend) {
    let clock = TestClock::new();
    let (a, other) = two_nodes(&b, &clock).await;
    let rec = a
        .new_identity(
            "alice",
            berth_storage::IdentityKind::User,
            "alice",
            "alice's long password",
        )
        .await
        .unwrap();
    a.identities().identity_insert(&rec).await.unwrap();
    a.identities()
        .role_assign(berth_storage::AssignedRole::AcrPush, "alice", None)
        .await
        .unwrap();

    // B verifies (and remembers) alice's password and hands out tokens.
    let alice = other
        .authenticate("alice", "alice's long password", None)
        .await
        .unwrap();
    let push = scopes(&["repository:team/app:pull,push"]);
    let (token, granted) = other.issue(&alice, &push, SERVICE).await.unwrap();
    assert_eq!(granted, push);
    let refresh = other.issue_refresh(&alice).await.unwrap();

    // A changes her password: on B the old one, her tokens and her refresh token all fail.
    let rec = a.identities().identity_get("alice").await.unwrap().unwrap();
    a.set_password(rec, "alice's second long password")
        .await
        .unwrap();
    assert!(matches!(
        other
            .authenticate("alice", "alice's long password", None)
            .await,
        Err(Error::BadCredentials)
    ));
    assert!(matches!(
        other.bearer(&token, SERVICE).await,
        Err(Error::BadToken(_))
    ));
    assert!(matches!(
        other.refresh(&refresh).await,
        Err(Error::BadToken(_))
    ));
    let alice = other
        .authenticate("alice", "alice's second long password", None)
        .await
        .unwrap();
    let (token, _) = other.issue(&alice, &push, SERVICE).await.unwrap();

    // A takes AcrPush away: B grants her pull only.
    assert!(
        a.identities()
            .role_unassign(berth_storage::AssignedRole::AcrPush, "alice", None)
            .await
            .unwrap()
    );
    a.identities()
        .role_assign(berth_storage::AssignedRole::AcrPull, "alice", None)
        .await
        .unwrap();
    let alice = other
        .authenticate("alice", "alice's second long password", None)
        .await
        .unwrap();
    let (_, granted) = other.issue(&alice, &push, SERVICE).await.unwrap();
    assert_eq!(granted, scopes(&["repository:team/app:pull"]));
    // The live rights are re-read for a token too (it carries what it was granted).
    let bearer = other.bearer(&token, SERVICE).await.unwrap();
    assert_eq!(bearer.grants.roles.len(), 1);

    // A disables her: B refuses her password and her live token on the next request.
    let mut rec = a.identities().identity_get("alice").await.unwrap().unwrap();
    rec.disabled = true;
    assert!(a.identities().identity_update(&rec).await.unwrap());
    assert!(matches!(
        other
            .authenticate("alice", "alice's second long password", None)
            .await,
        Err(Error::BadCredentials)
    ));
    assert!(matches!(
        other.bearer(&token, SERVICE).await,
        Err(Error::BadToken(_))
    ));
}

async fn a_repository_token_regenerated_or_deleted_on_one_node_is_refused_by_the_other(b: Backend) {
    let clock = TestClock::new();
    let (a, other) = two_nodes(&b, &clock).await;
    a.identities()
        .scope_map_put(&berth_storage::ScopeMapRecord {
            name: "ci".into(),
            rules: r#"[{"repository":"team/app","actions":["content/read"]}]"#.into(),
            description: String::new(),
            created: clock.secs(),
        })
        .await
        .unwrap();
    let mut rec = a
        .new_identity(
            "ci-token",
            berth_storage::IdentityKind::Token,
            "ci",
            "first generated secret",
        )
        .await
        .unwrap();
    rec.scope_map = Some("ci".into());
    a.identities().identity_insert(&rec).await.unwrap();

    let ci = other
        .authenticate("ci-token", "first generated secret", None)
        .await
        .unwrap();
    let (_, granted) = other
        .issue(&ci, &scopes(&["repository:team/app:pull,push"]), SERVICE)
        .await
        .unwrap();
    assert_eq!(granted, scopes(&["repository:team/app:pull"]));
    let (token, _) = other
        .issue(&ci, &scopes(&["repository:team/app:pull"]), SERVICE)
        .await
        .unwrap();

    let rec = a
        .identities()
        .identity_get("ci-token")
        .await
        .unwrap()
        .unwrap();
    a.set_password(rec, "second generated secret")
        .await
        .unwrap();
    assert!(matches!(
        other
            .authenticate("ci-token", "first generated secret", None)
            .await,
        Err(Error::BadCredentials)
    ));
    assert!(other.bearer(&token, SERVICE).await.is_err());
    other
        .authenticate("ci-token", "second generated secret", None)
        .await
        .unwrap();

    assert!(a.identities().identity_delete("ci-token").await.unwrap());
    assert!(matches!(
        other
            .authenticate("ci-token", "second generated secret", None)
            .await,
        Err(Error::BadCredentials)
    ));
}

async fn settings_changed_on_one_node_hold_on_the_other(b: Backend) {
    let clock = TestClock::new();
    let (a, other) = two_nodes(&b, &clock).await;
    let pull = scopes(&["repository:x/y:pull"]);
    assert!(!other.anonymous().await.grants.anonymous_pull);
    a.set_anonymous_pull(true).await.unwrap();
    let anon = other.anonymous().await;
    assert!(anon.grants.anonymous_pull);
    let (token, granted) = other.issue(&anon, &pull, SERVICE).await.unwrap();
    assert_eq!(granted, pull);
    a.bearer(&token, SERVICE).await.unwrap();
    a.set_anonymous_pull(false).await.unwrap();
    let (_, granted) = other
        .issue(&other.anonymous().await, &pull, SERVICE)
        .await
        .unwrap();
    assert!(granted.is_empty(), "{granted:?}");
    assert!(
        !other
            .bearer(&token, SERVICE)
            .await
            .unwrap()
            .grants
            .anonymous_pull
    );
}

/// Failed logins are counted per node (see the README): a source refused on one node is not
/// refused on another, and the correct password still works there.
async fn login_throttling_is_per_node(b: Backend) {
    let clock = TestClock::new();
    let (a, other) = two_nodes(&b, &clock).await;
    let src = Some("192.0.2.9".parse().unwrap());
    for _ in 0..berth_access::guard::PAIR_LIMIT {
        assert!(
            a.authenticate(OWNER, "a wrong password", src)
                .await
                .is_err()
        );
    }
    assert!(matches!(
        a.authenticate(OWNER, OWNER_PW, src).await,
        Err(Error::Throttled(_))
    ));
    other.authenticate(OWNER, OWNER_PW, src).await.unwrap();
}

async fn nodes_starting_together_on_an_empty_store_make_one_owner(b: Backend) {
    let clock = TestClock::new();
    let nodes = futures::future::join_all((0..3).map(|_| node(&b, &clock))).await;
    let started =
        futures::future::join_all(nodes.iter().map(|n| n.init(Some(OWNER_PW.into())))).await;
    let created = started
        .iter()
        .filter(|r| matches!(r, Ok(berth_access::Bootstrap::Created(None))))
        .count();
    assert_eq!(created, 1, "{started:?}");
    assert!(
        started.iter().all(|r| matches!(
            r,
            Ok(berth_access::Bootstrap::Created(None) | berth_access::Bootstrap::Existing)
        )),
        "{started:?}"
    );
    let roles = nodes[0].identities().role_list(Some(OWNER)).await.unwrap();
    assert_eq!(roles.len(), 1, "{roles:?}");
    // However many signing keys the race made, every node's tokens pass on every node.
    let owner = nodes[0].authenticate(OWNER, OWNER_PW, None).await.unwrap();
    for issuer in &nodes {
        let (t, _) = issuer.issue(&owner, &[], SERVICE).await.unwrap();
        for verifier in &nodes {
            verifier.bearer(&t, SERVICE).await.unwrap();
        }
    }
}
