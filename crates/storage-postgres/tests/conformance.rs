//! The PostgreSQL store against the storage conformance suite (the same rules the embedded and
//! in-memory stores pass), on a real server: each test gets a fresh database of its own (see
//! `berth_storage_postgres::testing`). The concurrency cases use two stores over one database,
//! as two Berth nodes do.

use berth_storage::{IdentityStore, TrustStore};
use berth_storage_postgres::testing::fresh_database;
use berth_storage_postgres::{PgOptions, PgStore, SCHEMA_VERSION};

#[tokio::test]
async fn postgres_store_passes_the_metadata_conformance_suite() {
    let db = fresh_database().await;
    let s = PgStore::connect(&db.url).await.unwrap();
    berth_storage::testsuite::run_metadata(&s).await;
    drop(s);
    db.drop_database().await;
}

#[tokio::test]
async fn postgres_store_passes_the_trust_conformance_suite() {
    let db = fresh_database().await;
    let s = PgStore::connect(&db.url).await.unwrap();
    berth_storage::testsuite::run_trust(&s).await;
    drop(s);
    db.drop_database().await;
}

#[tokio::test]
async fn postgres_store_passes_the_settings_conformance_suite() {
    let db = fresh_database().await;
    let s = PgStore::connect(&db.url).await.unwrap();
    berth_storage::testsuite::run_settings(&s).await;
    drop(s);
    db.drop_database().await;
}

#[tokio::test]
async fn postgres_store_passes_the_identity_conformance_suite() {
    let db = fresh_database().await;
    let s = PgStore::connect(&db.url).await.unwrap();
    berth_storage::testsuite::run_identity(&s).await;
    drop(s);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_stores_over_one_database_pass_the_concurrency_rules() {
    let db = fresh_database().await;
    let a = PgStore::connect(&db.url).await.unwrap();
    let b = PgStore::connect(&db.url).await.unwrap();
    berth_storage::testsuite::run_concurrency(&a, &b).await;
    drop((a, b));
    db.drop_database().await;
}

/// Eight nodes publishing the next version of one GUN at once, round after round: every round
/// has exactly one winner and the history stays linear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_publishers_on_one_gun_keep_a_linear_history() {
    let db = fresh_database().await;
    let opts = PgOptions {
        max_connections: 2,
        ..PgOptions::default()
    };
    let mut nodes = Vec::new();
    for _ in 0..8 {
        nodes.push(PgStore::connect_with(&db.url, &opts).await.unwrap());
    }
    let gun = "localhost/many/publishers";
    let file = |role: &str, v: i64, who: usize| berth_storage::NewTufFile {
        role: role.into(),
        version: v,
        sha256: format!("{who:02}{v:062x}"),
        data: bytes::Bytes::from(format!("{who}:{role}:{v}")),
    };
    for v in 1..=6 {
        let results = futures::future::join_all(nodes.iter().enumerate().map(|(who, n)| {
            n.tuf_update(
                gun,
                vec![file("targets", v, who), file("timestamp", v, who)],
                None,
            )
        }))
        .await;
        let winners: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_ok())
            .map(|(who, _)| who)
            .collect();
        assert_eq!(winners.len(), 1, "version {v}: one winner, got {results:?}");
        for r in results.iter().filter(|r| r.is_err()) {
            assert!(
                matches!(r, Err(berth_storage::Error::TufVersion { stored, new, .. }) if *stored == v && *new == v),
                "{r:?}"
            );
        }
        let ts = nodes[7]
            .tuf_current(gun, "timestamp")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ts.data, format!("{}:timestamp:{v}", winners[0]));
    }
    let feed = nodes[3].changefeed(Some(gun), 0, 100).await.unwrap();
    assert_eq!(
        feed.iter().map(|c| c.version).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    drop(nodes);
    db.drop_database().await;
}

/// Several nodes starting at once on an empty database end with one schema, applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_on_an_empty_database_migrate_it_once() {
    let db = fresh_database().await;
    let opened = futures::future::join_all((0..4).map(|_| PgStore::connect(&db.url))).await;
    let stores: Vec<PgStore> = opened.into_iter().map(|r| r.unwrap()).collect();
    for s in &stores {
        assert_eq!(s.schema_version().await.unwrap(), SCHEMA_VERSION);
    }
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT version FROM berth_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    // Every store works on the one schema.
    stores[0]
        .identity_insert(&berth_storage::IdentityRecord {
            name: "owner".into(),
            kind: berth_storage::IdentityKind::User,
            label: "owner".into(),
            secret_hash: "h".into(),
            secret_hash2: None,
            disabled: false,
            expires: None,
            scope_map: None,
            created: 1,
        })
        .await
        .unwrap();
    assert!(stores[3].identity_get("owner").await.unwrap().is_some());
    drop(client);
    let _ = task.await;
    drop(stores);
    db.drop_database().await;
}

/// A database migrated by a newer Berth is refused with a message naming both versions, and is
/// left as it was.
#[tokio::test]
async fn a_database_newer_than_this_binary_is_refused() {
    let db = fresh_database().await;
    drop(PgStore::connect(&db.url).await.unwrap());
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let newer = SCHEMA_VERSION + 1;
    client
        .execute(
            "INSERT INTO berth_schema_migrations(version, name) VALUES ($1, 'from the future')",
            &[&newer],
        )
        .await
        .unwrap();
    let e = PgStore::connect(&db.url).await.unwrap_err().to_string();
    assert!(
        e.contains(&format!("schema version {newer}"))
            && e.contains(&format!("({SCHEMA_VERSION})"))
            && e.contains("upgrade berth"),
        "{e}"
    );
    let n: i64 = client
        .query_one("SELECT count(*) FROM berth_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        n,
        i64::from(SCHEMA_VERSION) + 1,
        "nothing applied or removed"
    );
    drop(client);
    let _ = task.await;
    db.drop_database().await;
}

/// A server that is not there fails the open with the address in the message, within the
/// connect timeout.
#[tokio::test]
async fn an_unreachable_server_is_reported() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = PgOptions {
        connect_timeout: std::time::Duration::from_secs(2),
        ..PgOptions::default()
    };
    let started = std::time::Instant::now();
    let e = PgStore::connect_with(&format!("postgres://postgres@127.0.0.1:{port}/x"), &opts)
        .await
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(e.contains("postgres"), "{e}");
    let e = PgStore::connect("not a url ://")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("postgres URL"), "{e}");
}

/// Two nodes' metadata stores on one upload: the part list moves with the offset, so a chunk
/// written late at an acknowledged offset is never assembled (blobs in memory, shared, as an
/// object store is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_stores_record_upload_parts_with_the_offset() {
    let db = fresh_database().await;
    let a = PgStore::connect(&db.url).await.unwrap();
    let b = PgStore::connect(&db.url).await.unwrap();
    let blobs = berth_storage::memory::MemoryStore::new();
    berth_storage::testsuite::run_upload_race((&blobs, &a), (&blobs, &b)).await;
    drop((a, b));
    db.drop_database().await;
}

/// Rows holding a name outside its closed set, as damage or a newer Berth would leave them
/// (written by raw SQL with the CHECK constraints dropped): reading one is a store error naming
/// the value, never a panic and never a default; known names read back as before.
#[tokio::test]
async fn unknown_stored_kinds_are_store_errors() {
    use berth_storage::{AssignedRole, ChangeCategory, Error, IdentityKind, ServerKeyRole};
    let db = fresh_database().await;
    let s = PgStore::connect(&db.url).await.unwrap();
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    client
        .batch_execute(
            "ALTER TABLE identities DROP CONSTRAINT identities_kind_check;
             ALTER TABLE changefeed DROP CONSTRAINT changefeed_category_check;
             INSERT INTO identities(name, kind, label, secret_hash, created)
               VALUES ('robo', 'robot', 'robo', 'h', 1), ('alice', 'user', 'alice', 'h', 1);
             INSERT INTO role_assignments(role, assignee, repository)
               VALUES ('AcrQuarantineReader', 'robo', ''), ('AcrPush', 'alice', 'team/app');
             INSERT INTO changefeed(created_at, gun, version, sha256, category)
               VALUES (1, 'a/gun', 1, 'ab', 'update'), (2, 'b/gun', 0, '', 'archived');
             INSERT INTO server_keys(gun, role, key_id, algorithm, public, sealed_private, created)
               VALUES ('g', 'root', 'k1', 'ecdsa', '\\x7b7d', '\\x00', 1),
                      ('g', 'snapshot', 'k2', 'ecdsa', '\\x7b7d', '\\x00', 2);",
        )
        .await
        .unwrap();
    fn assert_unknown<T: std::fmt::Debug>(r: berth_storage::Result<T>, what: &str) {
        match r {
            Err(Error::Backend(msg)) => assert!(msg.contains(what), "{msg}"),
            other => panic!("expected a backend error naming {what}, got {other:?}"),
        }
    }
    assert_unknown(s.identity_get("robo").await, r#"identity kind "robot""#);
    assert_unknown(s.identity_list(None).await, r#"identity kind "robot""#);
    let alice = s.identity_get("alice").await.unwrap().unwrap();
    assert_eq!(alice.kind, IdentityKind::User);
    assert_eq!(
        s.identity_list(Some(IdentityKind::User)).await.unwrap(),
        vec![alice]
    );
    assert_unknown(
        s.role_list(Some("robo")).await,
        r#"role "AcrQuarantineReader""#,
    );
    assert_unknown(s.role_list(None).await, r#"role "AcrQuarantineReader""#);
    let roles = s.role_list(Some("alice")).await.unwrap();
    assert_eq!(
        roles
            .iter()
            .map(|r| (r.role, r.repository.as_deref()))
            .collect::<Vec<_>>(),
        [(AssignedRole::AcrPush, Some("team/app"))]
    );
    assert_unknown(
        s.changefeed(None, 0, 10).await,
        r#"changefeed category "archived""#,
    );
    let a = s.changefeed(Some("a/gun"), 0, 10).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].category, ChangeCategory::Update);
    // Server keys are read by role: a row of another role is never one of the server's keys.
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
    drop(client);
    let _ = task.await;
    drop(s);
    db.drop_database().await;
}

#[tokio::test]
async fn postgres_store_passes_the_webhook_conformance_suite() {
    let db = fresh_database().await;
    let s = PgStore::connect(&db.url).await.unwrap();
    berth_storage::testsuite::run_webhooks(&s).await;
    drop(s);
    db.drop_database().await;
}

/// Two nodes claiming from one queue at once never both get the same delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_stores_claim_each_webhook_delivery_once() {
    let db = fresh_database().await;
    let a = PgStore::connect(&db.url).await.unwrap();
    let b = PgStore::connect(&db.url).await.unwrap();
    berth_storage::testsuite::run_webhook_race(&a, &b).await;
    drop((a, b));
    db.drop_database().await;
}
