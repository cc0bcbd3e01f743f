//! Rows holding a name outside its closed set (an identity kind, a role, a changefeed category), as
//! damage or a newer Berth would leave them: reading one is a store error naming the value,
//! never a panic and never a default. The stored strings of known names read back as before.

use berth_storage::{
    AssignedRole, ChangeCategory, Error, IdentityKind, IdentityStore, ServerKeyRole, TrustStore,
};
use berth_storage_embedded::SqliteMetadataStore;

/// A store whose database got `sql` behind its back (CHECK constraints off, as in a database
/// a newer schema wrote), opened afresh so no in-memory copy hides it.
fn store_after(sql: &str) -> (tempfile::TempDir, SqliteMetadataStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    drop(SqliteMetadataStore::open(&path).unwrap());
    let c = rusqlite::Connection::open(&path).unwrap();
    c.pragma_update(None, "ignore_check_constraints", true)
        .unwrap();
    c.execute_batch(sql).unwrap();
    drop(c);
    let store = SqliteMetadataStore::open(&path).unwrap();
    (dir, store)
}

fn assert_unknown<T: std::fmt::Debug>(r: berth_storage::Result<T>, what: &str) {
    match r {
        Err(Error::Backend(msg)) => assert!(msg.contains(what), "{msg}"),
        other => panic!("expected a backend error naming {what}, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_identity_kind_is_a_store_error() {
    let (_dir, s) = store_after(
        "INSERT INTO identities(name, kind, label, secret_hash, disabled, created)
           VALUES ('robo', 'robot', 'robo', 'h', 0, 1), ('alice', 'user', 'alice', 'h', 0, 1);",
    );
    assert_unknown(s.identity_get("robo").await, r#"identity kind "robot""#);
    assert_unknown(s.identity_list(None).await, r#"identity kind "robot""#);
    // The rows of known kinds read as ever, alone or listed by kind.
    let alice = s.identity_get("alice").await.unwrap().unwrap();
    assert_eq!(alice.kind, IdentityKind::User);
    let users = s.identity_list(Some(IdentityKind::User)).await.unwrap();
    assert_eq!(users, vec![alice]);
}

#[tokio::test]
async fn an_unknown_role_is_a_store_error() {
    let (_dir, s) = store_after(
        "INSERT INTO role_assignments(role, assignee, repository)
           VALUES ('AcrQuarantineReader', 'robo', ''), ('AcrPush', 'alice', 'team/app');",
    );
    assert_unknown(
        s.role_list(Some("robo")).await,
        r#"role "AcrQuarantineReader""#,
    );
    assert_unknown(s.role_list(None).await, r#"role "AcrQuarantineReader""#);
    let alice = s.role_list(Some("alice")).await.unwrap();
    assert_eq!(
        alice
            .iter()
            .map(|r| (r.role, r.repository.as_deref()))
            .collect::<Vec<_>>(),
        [(AssignedRole::AcrPush, Some("team/app"))]
    );
}

#[tokio::test]
async fn an_unknown_changefeed_category_is_a_store_error() {
    let (_dir, s) = store_after(
        "INSERT INTO changefeed(created_at, gun, version, sha256, category)
           VALUES (1, 'a/gun', 1, 'ab', 'update'), (2, 'b/gun', 0, '', 'archived');",
    );
    assert_unknown(
        s.changefeed(None, 0, 10).await,
        r#"changefeed category "archived""#,
    );
    let a = s.changefeed(Some("a/gun"), 0, 10).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].category, ChangeCategory::Update);
}

/// Server keys are read by role, so a row of another role is never one of the server's keys:
/// it is not read at all, and the known roles read as ever.
#[tokio::test]
async fn a_server_key_of_another_role_is_never_read() {
    let (_dir, s) = store_after(
        "INSERT INTO server_keys(gun, role, key_id, algorithm, public, sealed_private, created)
           VALUES ('g', 'root', 'k1', 'ecdsa', x'7b7d', x'00', 1),
                  ('g', 'snapshot', 'k2', 'ecdsa', x'7b7d', x'00', 2);",
    );
    assert!(
        s.server_keys("g", ServerKeyRole::Timestamp)
            .await
            .unwrap()
            .is_empty()
    );
    let snap = s.server_keys("g", ServerKeyRole::Snapshot).await.unwrap();
    assert_eq!(
        snap.iter()
            .map(|k| (k.key_id.as_str(), k.role))
            .collect::<Vec<_>>(),
        [("k2", ServerKeyRole::Snapshot)]
    );
}
