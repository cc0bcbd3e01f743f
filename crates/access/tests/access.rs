//! The access service below HTTP, on the in-memory store, SQLite and a real PostgreSQL, with a
//! clock the tests move.

mod support;

use std::time::Duration;

use berth_access::{ACCESS_TTL, Bootstrap, Error, OWNER};
use berth_auth::{IdentityKind, ResourceActions};
use support::{Backend, OWNER_PW, SERVICE, TestClock, kid_of, node};

const DAY: Duration = Duration::from_secs(86_400);

fn pull(repo: &str) -> Vec<ResourceActions> {
    vec![format!("repository:{repo}:pull").parse().unwrap()]
}

/// A user `name` with `password`, holding `role` registry-wide.
async fn add_user(
    svc: &berth_access::AccessService,
    name: &str,
    password: &str,
    role: berth_storage::AssignedRole,
) {
    let rec = svc
        .new_identity(name, berth_storage::IdentityKind::User, name, password)
        .await
        .unwrap();
    svc.identities().identity_insert(&rec).await.unwrap();
    svc.identities()
        .role_assign(role, name, None)
        .await
        .unwrap();
}

on_every_store!(
    bootstrap_creates_the_owner_once,
    a_generated_bootstrap_password_is_returned_once,
    passwords_are_checked_and_a_new_one_replaces_the_old,
    disabled_and_expired_identities_are_refused,
    tokens_expire_by_the_injected_clock,
    signing_keys_rotate_and_earlier_tokens_still_verify,
    token_issues_are_tallied_per_identity_and_hour,
    anonymous_pull_is_a_stored_setting,
    web_ui_sessions_are_their_own_tokens_and_end_on_every_node,
);

async fn bootstrap_creates_the_owner_once(b: Backend) {
    let clock = TestClock::new();
    let a = node(&b, &clock).await;
    match a.init(Some("short".into())).await.unwrap() {
        Bootstrap::Refused(why) => assert!(why.contains("too short"), "{why}"),
        other => panic!("a weak bootstrap password was accepted: {other:?}"),
    }
    assert!(a.identities().identity_get(OWNER).await.unwrap().is_none());
    assert_eq!(
        a.init(Some(OWNER_PW.into())).await.unwrap(),
        Bootstrap::Created(None)
    );
    // A second start (or a second node) finds the owner and ignores its bootstrap password.
    let again = node(&b, &clock).await;
    assert_eq!(
        again
            .init(Some("another long password".into()))
            .await
            .unwrap(),
        Bootstrap::Existing
    );
    let owner = again.authenticate(OWNER, OWNER_PW, None).await.unwrap();
    assert_eq!(
        (owner.name.as_str(), owner.kind),
        (OWNER, IdentityKind::User)
    );
    assert!(matches!(
        again
            .authenticate(OWNER, "another long password", None)
            .await,
        Err(Error::BadCredentials)
    ));
    let roles = a.identities().role_list(Some(OWNER)).await.unwrap();
    assert_eq!(roles.len(), 1);
    assert_eq!(
        (roles[0].role, &roles[0].repository),
        (berth_storage::AssignedRole::Owner, &None)
    );
}

async fn a_generated_bootstrap_password_is_returned_once(b: Backend) {
    let clock = TestClock::new();
    let a = node(&b, &clock).await;
    let Bootstrap::Created(Some(generated)) = a.init(None).await.unwrap() else {
        panic!("no generated password");
    };
    assert!(berth_auth::password::user_password_problem(&generated).is_none());
    a.authenticate(OWNER, &generated, None).await.unwrap();
    assert_eq!(a.init(None).await.unwrap(), Bootstrap::Existing);
}

async fn passwords_are_checked_and_a_new_one_replaces_the_old(b: Backend) {
    let clock = TestClock::new();
    let a = node(&b, &clock).await;
    a.init(Some(OWNER_PW.into())).await.unwrap();
    add_user(
        &a,
        "alice",
        "alice's long password",
        berth_storage::AssignedRole::AcrPull,
    )
    .await;
    a.authenticate("alice", "alice's long password", None)
        .await
        .unwrap();
    for (user, pw) in [
        ("alice", "not alice's password"),
        ("alice", ""),
        ("nobody", "alice's long password"),
        ("", ""),
    ] {
        assert!(
            matches!(
                a.authenticate(user, pw, None).await,
                Err(Error::BadCredentials)
            ),
            "{user:?} {pw:?}"
        );
    }
    let rec = a.identities().identity_get("alice").await.unwrap().unwrap();
    // The old password was verified (and remembered) just now: the change must still end it.
    a.set_password(rec, "alice's new long password")
        .await
        .unwrap();
    assert!(matches!(
        a.authenticate("alice", "alice's long password", None).await,
        Err(Error::BadCredentials)
    ));
    a.authenticate("alice", "alice's new long password", None)
        .await
        .unwrap();
    let audit = a.identities().audit_list(0, 100).await.unwrap();
    assert_eq!(
        audit.iter().filter(|r| r.action == "login.failed").count(),
        5,
        "{audit:?}"
    );
    assert!(
        audit.iter().all(|r| !r.detail.contains("password'")),
        "no password in the audit log"
    );
}

async fn disabled_and_expired_identities_are_refused(b: Backend) {
    let clock = TestClock::new();
    let a = node(&b, &clock).await;
    a.init(Some(OWNER_PW.into())).await.unwrap();
    add_user(
        &a,
        "bob",
        "bob's long password",
        berth_storage::AssignedRole::AcrPull,
    )
    .await;
    let bob = a
        .authenticate("bob", "bob's long password", None)
        .await
        .unwrap();
    let (token, granted) = a.issue(&bob, &pull("team/app"), SERVICE).await.unwrap();
    assert_eq!(granted, pull("team/app"));
    let refresh = a.issue_refresh(&bob).await.unwrap();
    assert_eq!(
        a.bearer(&token, SERVICE).await.unwrap().token_access,
        Some(granted)
    );

    let ids = a.identities();
    let mut rec = ids.identity_get("bob").await.unwrap().unwrap();
    rec.disabled = true;
    assert!(ids.identity_update(&rec).await.unwrap());
    // Refused at once: the password (though remembered), the access token and the refresh token.
    assert!(matches!(
        a.authenticate("bob", "bob's long password", None).await,
        Err(Error::BadCredentials)
    ));
    assert!(matches!(
        a.bearer(&token, SERVICE).await,
        Err(Error::BadToken(_))
    ));
    assert!(matches!(a.refresh(&refresh).await, Err(Error::BadToken(_))));

    rec.disabled = false;
    rec.expires = Some(clock.secs() + 60);
    assert!(ids.identity_update(&rec).await.unwrap());
    a.authenticate("bob", "bob's long password", None)
        .await
        .unwrap();
    a.bearer(&token, SERVICE).await.unwrap();
    clock.advance(Duration::from_secs(61));
    assert!(matches!(
        a.authenticate("bob", "bob's long password", None).await,
        Err(Error::BadCredentials)
    ));
    assert!(matches!(
        a.bearer(&token, SERVICE).await,
        Err(Error::BadToken(_))
    ));

    // A deleted identity's tokens never pass for a namesake created later.
    assert!(ids.identity_delete("bob").await.unwrap());
    add_user(
        &a,
        "bob",
        "bob's long password",
        berth_storage::AssignedRole::AcrPull,
    )
    .await;
    assert!(matches!(a.refresh(&refresh).await, Err(Error::BadToken(_))));
}

async fn tokens_expire_by_the_injected_clock(b: Backend) {
    let clock = TestClock::new();
    let a = node(&b, &clock).await;
    a.init(Some(OWNER_PW.into())).await.unwrap();
    let owner = a.authenticate(OWNER, OWNER_PW, None).await.unwrap();
    let (token, _) = a.issue(&owner, &pull("x/y"), SERVICE).await.unwrap();
    let refresh = a.issue_refresh(&owner).await.unwrap();
    assert!(matches!(
        a.bearer(&token, "elsewhere.test").await,
        Err(Error::BadToken(_))
    ));
    assert!(
        matches!(a.bearer(&refresh, SERVICE).await, Err(Error::BadToken(_))),
        "a refresh token is no access token"
    );
    assert!(
        matches!(a.refresh(&token).await, Err(Error::BadToken(_))),
        "an access token is no refresh token"
    );
    clock.advance(Duration::from_secs(ACCESS_TTL as u64 - 1));
    a.bearer(&token, SERVICE).await.unwrap();
    // Past the expiry and the verifier's minute of leeway.
    clock.advance(Duration::from_secs(62));
    match a.bearer(&token, SERVICE).await {
        Err(Error::BadToken(why)) => assert!(why.contains("expired"), "{why}"),
        other => panic!("an expired token passed: {other:?}"),
    }
    clock.advance(29 * DAY);
    a.refresh(&refresh).await.unwrap();
    clock.advance(2 * DAY);
    assert!(matches!(a.refresh(&refresh).await, Err(Error::BadToken(_))));
}

async fn signing_keys_rotate_and_earlier_tokens_still_verify(b: Backend) {
    let clock = TestClock::new();
    let a = node(&b, &clock).await;
    a.init(Some(OWNER_PW.into())).await.unwrap();
    let owner = a.authenticate(OWNER, OWNER_PW, None).await.unwrap();
    let (t1, _) = a.issue(&owner, &pull("x/y"), SERVICE).await.unwrap();
    assert_eq!(a.jwks().await.unwrap()["keys"].as_array().unwrap().len(), 1);

    a.load_or_rotate_keys(true).await.unwrap();
    let (t2, _) = a.issue(&owner, &pull("x/y"), SERVICE).await.unwrap();
    assert_ne!(kid_of(&t1), kid_of(&t2), "the new key signs");
    a.bearer(&t1, SERVICE).await.unwrap();
    a.bearer(&t2, SERVICE).await.unwrap();
    let kids: Vec<String> = a.jwks().await.unwrap()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        kids.contains(&kid_of(&t1)) && kids.contains(&kid_of(&t2)),
        "{kids:?}"
    );
    let recs = a.identities().signing_keys().await.unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs.iter().filter(|r| r.retired.is_none()).count(), 1);

    // A start within the key's days keeps it; one near their end makes the next.
    a.load_or_rotate_keys(false).await.unwrap();
    assert_eq!(
        kid_of(&a.issue(&owner, &[], SERVICE).await.unwrap().0),
        kid_of(&t2)
    );
    clock.advance(89 * DAY + Duration::from_secs(1));
    a.load_or_rotate_keys(false).await.unwrap();
    let (t3, _) = a.issue(&owner, &[], SERVICE).await.unwrap();
    assert_ne!(kid_of(&t3), kid_of(&t2));
    a.bearer(&t3, SERVICE).await.unwrap();
    // A node that keeps running makes the next key itself when the current one is due.
    clock.advance(89 * DAY + Duration::from_secs(1));
    let (t4, _) = a.issue(&owner, &[], SERVICE).await.unwrap();
    assert_ne!(kid_of(&t4), kid_of(&t3));
    a.bearer(&t4, SERVICE).await.unwrap();
    // The first key retired long ago, past twice a refresh token's life: purged.
    let recs = a.identities().signing_keys().await.unwrap();
    assert!(
        recs.iter().all(|r| r.kid != kid_of(&t1)),
        "{:?}",
        recs.iter().map(|r| &r.kid).collect::<Vec<_>>()
    );
}

async fn token_issues_are_tallied_per_identity_and_hour(b: Backend) {
    let clock = TestClock::new();
    let a = node(&b, &clock).await;
    a.init(Some(OWNER_PW.into())).await.unwrap();
    let issued = async |a: &berth_access::AccessService| {
        a.audit_token_issued(OWNER, SERVICE, None, "repository:x/y:pull")
            .await
    };
    issued(&a).await;
    issued(&a).await;
    issued(&a).await;
    let rows = |v: Vec<berth_storage::AuditRecord>| -> Vec<String> {
        v.into_iter()
            .filter(|r| r.action == "token.issued")
            .map(|r| r.detail)
            .collect()
    };
    let now = rows(a.identities().audit_list(0, 100).await.unwrap());
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(
        now[0].starts_with("3 token(s) issued in the hour from "),
        "{now:?}"
    );
    clock.advance(Duration::from_secs(3600));
    issued(&a).await;
    let later = rows(a.identities().audit_list(0, 100).await.unwrap());
    assert_eq!(later.len(), 2, "{later:?}");
    assert!(later[1].starts_with("1 token(s)"), "{later:?}");
    a.set_audit_every_token(true);
    issued(&a).await;
    let each = rows(a.identities().audit_list(0, 100).await.unwrap());
    assert_eq!(each.len(), 3, "{each:?}");
}

async fn anonymous_pull_is_a_stored_setting(b: Backend) {
    let clock = TestClock::new();
    let a = node(&b, &clock).await;
    a.init(Some(OWNER_PW.into())).await.unwrap();
    assert!(!a.anonymous_pull().await);
    assert!(!a.anonymous().await.grants.anonymous_pull);
    a.set_anonymous_pull(true).await.unwrap();
    assert!(a.anonymous().await.grants.anonymous_pull);
    let (t, granted) = a
        .issue(&a.anonymous().await, &pull("x/y"), SERVICE)
        .await
        .unwrap();
    assert_eq!(granted, pull("x/y"));
    assert!(a.bearer(&t, SERVICE).await.unwrap().is_anonymous());
    a.set_anonymous_pull(false).await.unwrap();
    let (_, granted) = a
        .issue(&a.anonymous().await, &pull("x/y"), SERVICE)
        .await
        .unwrap();
    assert!(granted.is_empty(), "{granted:?}");
}

/// Failed logins of one identity from one source are refused after the limit; another source
/// still gets in.
#[tokio::test]
async fn failed_logins_are_throttled_per_source() {
    let b = Backend::mem();
    let clock = TestClock::new();
    let a = node(&b, &clock).await;
    a.init(Some(OWNER_PW.into())).await.unwrap();
    let here = Some("192.0.2.1".parse().unwrap());
    let there = Some("198.51.100.1".parse().unwrap());
    for _ in 0..berth_access::guard::PAIR_LIMIT {
        assert!(matches!(
            a.authenticate(OWNER, "wrong password!", here).await,
            Err(Error::BadCredentials)
        ));
    }
    assert!(matches!(
        a.authenticate(OWNER, OWNER_PW, here).await,
        Err(Error::Throttled(s)) if (1..=61).contains(&s)
    ));
    a.authenticate(OWNER, OWNER_PW, there).await.unwrap();
}

/// Every policy role has a stored form and comes back from it as itself, under the same name.
#[test]
fn policy_and_stored_roles_are_the_same_set() {
    for r in berth_auth::Role::ALL {
        let stored = berth_access::stored_role(r);
        assert_eq!(stored.as_str(), r.as_str());
        assert_eq!(berth_access::policy_role(stored), r);
    }
    assert_eq!(
        berth_storage::AssignedRole::ALL.len(),
        berth_auth::Role::ALL.len()
    );
}

/// Web UI sessions: accepted by every node of the store, never as (or instead of) access or
/// refresh tokens, ended for all nodes by `end_sessions`, by a new password and by their expiry.
async fn web_ui_sessions_are_their_own_tokens_and_end_on_every_node(b: Backend) {
    let clock = TestClock::new();
    let a = node(&b, &clock).await;
    a.init(Some(OWNER_PW.into())).await.unwrap();
    let other = node(&b, &clock).await;
    let owner = a.authenticate(OWNER, OWNER_PW, None).await.unwrap();
    let session = a.issue_session(&owner, 3600).await.unwrap();
    assert_eq!(a.session(&session).await.unwrap().name, OWNER);
    assert_eq!(other.session(&session).await.unwrap().name, OWNER);
    let (access, _) = a.issue(&owner, &pull("x/y"), SERVICE).await.unwrap();
    let refresh = a.issue_refresh(&owner).await.unwrap();
    for (what, r) in [
        (
            "a session as an access token",
            a.bearer(&session, SERVICE).await,
        ),
        ("a session as a refresh token", a.refresh(&session).await),
        ("an access token as a session", a.session(&access).await),
        ("a refresh token as a session", a.session(&refresh).await),
    ] {
        assert!(matches!(r, Err(Error::BadToken(_))), "{what} was accepted");
    }
    // Logout ends every session issued until then, on every node of the store.
    clock.advance(Duration::from_secs(1));
    let second = a.issue_session(&owner, 3600).await.unwrap();
    clock.advance(Duration::from_secs(1));
    other.end_sessions(OWNER).await.unwrap();
    for t in [&session, &second] {
        assert!(matches!(other.session(t).await, Err(Error::BadToken(_))));
        let mut refused = false;
        for _ in 0..100 {
            if a.session(t).await.is_err() {
                refused = true;
                break;
            }
            // The other node's settings cache follows by notification (PostgreSQL).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            refused,
            "a node still accepts a session ended through another"
        );
    }
    // Access and refresh tokens are not sessions: they live on.
    a.bearer(&access, SERVICE).await.unwrap();
    a.refresh(&refresh).await.unwrap();
    // A session begun after the logout works, until its expiry (plus the verifier's leeway)...
    clock.advance(Duration::from_secs(1));
    let fresh = a.issue_session(&owner, 600).await.unwrap();
    a.session(&fresh).await.unwrap();
    clock.advance(Duration::from_secs(600 + 61));
    assert!(matches!(a.session(&fresh).await, Err(Error::BadToken(_))));
    // ...or a new password.
    let fresh = a.issue_session(&owner, 600).await.unwrap();
    a.session(&fresh).await.unwrap();
    let rec = a.identities().identity_get(OWNER).await.unwrap().unwrap();
    a.set_password(rec, "another owner password!")
        .await
        .unwrap();
    assert!(matches!(a.session(&fresh).await, Err(Error::BadToken(_))));
}
