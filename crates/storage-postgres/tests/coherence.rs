//! Copies kept in memory by each node (settings, current TUF files) and the notifications that
//! keep them coherent, on a real PostgreSQL with two stores over one database as two nodes.

use std::time::{Duration, Instant};

use berth_storage::{NewTufFile, SettingsStore, TrustStore};
use berth_storage_postgres::testing::fresh_database;
use berth_storage_postgres::{PgOptions, PgStore};

fn file(role: &str, version: i64, data: &str) -> NewTufFile {
    NewTufFile {
        role: role.into(),
        version,
        sha256: format!("{version:064x}"),
        data: bytes::Bytes::from(data.to_owned()),
    }
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn current(s: &PgStore, gun: &str) -> Option<String> {
    s.tuf_current(gun, "timestamp")
        .await
        .unwrap()
        .map(|f| String::from_utf8(f.data.to_vec()).unwrap())
}

/// Changes a row behind every node's back (no notification), as only an operator would.
async fn behind_the_back(url: &str, sql: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap();
    drop(client);
    let _ = driver.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_follow_other_nodes_writes_and_a_lost_listener_reads_through() {
    let db = fresh_database().await;
    let a = PgStore::connect(&db.url).await.unwrap();
    let b = PgStore::connect(&db.url).await.unwrap();
    let plain = PgStore::connect_with(
        &db.url,
        &PgOptions {
            cache: false,
            ..PgOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(!plain.caching());
    until("both listeners", async || a.caching() && b.caching()).await;
    let gun = "localhost/team/app";

    // Node a keeps what it read: a change nobody announced is not seen through it...
    b.tuf_update(gun, vec![file("timestamp", 1, "ts1")], None)
        .await
        .unwrap();
    assert_eq!(current(&a, gun).await.as_deref(), Some("ts1"));
    assert_eq!(a.setting_get("content-trust").await.unwrap(), None);
    behind_the_back(
        &db.url,
        "UPDATE tuf_files SET data = 'quiet' WHERE role = 'timestamp';
         INSERT INTO settings(name, value) VALUES ('content-trust', 'quiet');",
    )
    .await;
    assert_eq!(
        current(&a, gun).await.as_deref(),
        Some("ts1"),
        "from memory"
    );
    assert_eq!(a.setting_get("content-trust").await.unwrap(), None);
    // ...while a store without copies reads the database.
    assert_eq!(current(&plain, gun).await.as_deref(), Some("quiet"));
    assert_eq!(
        plain.setting_get("content-trust").await.unwrap().as_deref(),
        Some("quiet")
    );

    // Writes through another node reach it: a publish, a setting, a GUN's deletion, a wipe.
    b.tuf_update(gun, vec![file("timestamp", 2, "ts2")], None)
        .await
        .unwrap();
    until("the new timestamp on a", async || {
        current(&a, gun).await.as_deref() == Some("ts2")
    })
    .await;
    b.setting_set("content-trust", "enabled").await.unwrap();
    until("the new setting on a", async || {
        a.setting_get("content-trust").await.unwrap().as_deref() == Some("enabled")
    })
    .await;
    assert!(b.tuf_delete(gun).await.unwrap());
    until("the deletion on a", async || {
        current(&a, gun).await.is_none()
    })
    .await;
    b.tuf_update(gun, vec![file("timestamp", 1, "again")], None)
        .await
        .unwrap();
    until("the new GUN on a", async || {
        current(&a, gun).await.as_deref() == Some("again")
    })
    .await;
    assert_eq!(b.tuf_delete_all().await.unwrap(), 1);
    until("the wipe on a", async || current(&a, gun).await.is_none()).await;
    // A failed write announces nothing and leaves the copies as they were.
    a.tuf_update(gun, vec![file("timestamp", 5, "ts5")], None)
        .await
        .unwrap();
    assert!(
        b.tuf_update(gun, vec![file("timestamp", 5, "dup")], None)
            .await
            .is_err()
    );
    assert_eq!(current(&b, gun).await.as_deref(), Some("ts5"));

    // The listeners lose their connections: the nodes read the database until they listen
    // again (what was announced meanwhile is lost), then keep copies again.
    assert_eq!(current(&a, gun).await.as_deref(), Some("ts5"));
    behind_the_back(
        &db.url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'berth-cache-listener' AND datname = current_database();
         UPDATE tuf_files SET data = 'while deaf' WHERE role = 'timestamp';",
    )
    .await;
    until("a reads through after losing its listener", async || {
        current(&a, gun).await.as_deref() == Some("while deaf")
    })
    .await;
    until("the listeners again", async || a.caching() && b.caching()).await;
    assert_eq!(current(&a, gun).await.as_deref(), Some("while deaf"));
    b.tuf_update(gun, vec![file("timestamp", 6, "ts6")], None)
        .await
        .unwrap();
    until("the next publish on a", async || {
        current(&a, gun).await.as_deref() == Some("ts6")
    })
    .await;
    drop((a, b, plain));
    db.drop_database().await;
}

/// The writer waits for its own notification before it returns, so a read through the other
/// node right after the write sees it (no polling here, over many rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_through_another_node_right_after_a_write_sees_it() {
    let db = fresh_database().await;
    let a = PgStore::connect(&db.url).await.unwrap();
    let b = PgStore::connect(&db.url).await.unwrap();
    until("both listeners", async || a.caching() && b.caching()).await;
    let gun = "localhost/read/after-write";
    for v in 1..=50i64 {
        let (writer, reader) = if v % 2 == 0 { (&a, &b) } else { (&b, &a) };
        // The reader holds the previous version in memory.
        assert_eq!(
            current(reader, gun).await,
            (v > 1).then(|| format!("v{}", v - 1))
        );
        writer
            .tuf_update(gun, vec![file("timestamp", v, &format!("v{v}"))], None)
            .await
            .unwrap();
        assert_eq!(
            current(reader, gun).await,
            Some(format!("v{v}")),
            "round {v}"
        );
        let on = if v % 2 == 0 { "enabled" } else { "disabled" };
        writer.setting_set("content-trust", on).await.unwrap();
        assert_eq!(
            reader
                .setting_get("content-trust")
                .await
                .unwrap()
                .as_deref(),
            Some(on),
            "round {v}"
        );
    }
    drop((a, b));
    db.drop_database().await;
}
