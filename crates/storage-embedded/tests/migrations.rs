//! Versioned schema migrations of the SQLite store: fresh databases, databases from before
//! versioning, and databases newer than this build.

use berth_storage::MetadataStore;
use berth_storage_embedded::SqliteMetadataStore;

fn user_version(path: &std::path::Path) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_fresh_database_is_at_the_newest_version_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    drop(SqliteMetadataStore::open(&path).unwrap());
    let v = user_version(&path);
    assert!(v >= 2, "version {v}");
    drop(SqliteMetadataStore::open(&path).unwrap());
    assert_eq!(user_version(&path), v, "reopening changes nothing");
}

#[tokio::test]
async fn a_database_from_before_versioning_is_brought_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    {
        // The uploads table as it was, with a session in it.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE uploads (id TEXT PRIMARY KEY, repo TEXT NOT NULL,
                                   algorithm TEXT NOT NULL, created INTEGER NOT NULL);
             INSERT INTO uploads VALUES ('old-1', 'team/app', 'sha256', 5);",
        )
        .unwrap();
    }
    let store = SqliteMetadataStore::open(&path).unwrap();
    let rec = store
        .upload_get("old-1")
        .await
        .unwrap()
        .expect("old session kept");
    assert_eq!(rec.repo.as_str(), "team/app");
    assert_eq!(
        (
            rec.offset,
            rec.hash_state.clone(),
            rec.owner.as_str(),
            rec.parts.clone()
        ),
        (None, None, "", None)
    );
    // A legacy session has no part list, so it takes no parts (the registry refuses to
    // continue it); sessions created now have one.
    let part = berth_storage::UploadPart {
        name: "p1".into(),
        offset: 0,
        size: 7,
    };
    assert!(!store.upload_advance("old-1", &part, None).await.unwrap());
    store
        .upload_create(&berth_storage::UploadRecord {
            id: "new-1".into(),
            parts: Some(Vec::new()),
            offset: Some(0),
            ..rec
        })
        .await
        .unwrap();
    assert!(store.upload_advance("new-1", &part, None).await.unwrap());
    let new = store.upload_get("new-1").await.unwrap().unwrap();
    assert_eq!((new.offset, new.parts), (Some(7), Some(vec![part])));
    assert!(user_version(&path) >= 4);
}

#[test]
fn a_database_newer_than_this_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    drop(SqliteMetadataStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 999)
        .unwrap();
    let e = SqliteMetadataStore::open(&path).err().expect("refused");
    assert!(e.to_string().contains("newer"), "{e}");
}
