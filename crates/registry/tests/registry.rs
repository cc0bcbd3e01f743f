//! The registry's domain rules below HTTP, each scenario run on the in-memory backend, the
//! embedded one (filesystem + SQLite), PostgreSQL metadata and the distributed one (S3 on a real
//! Garage + PostgreSQL): uploads in all their forms, the session cap and purge,
//! mounts, manifests and what they must reference, tags, referrers, deletes.

use std::io;
use std::sync::Arc;

use berth_oci::{Algorithm, Digest, ErrorCode, RepoName, Tag, TagOrDigest, media};
use berth_registry::{ChunkRange, Error, Registry};
use berth_storage::memory::MemoryStore;
use berth_storage::{BlobStore, ByteStream, MetadataStore};
use berth_storage_embedded::{FsBlobStore, SqliteMetadataStore};
use bytes::Bytes;
use futures::StreamExt;

/// One backend's stores, shared by every registry a scenario builds (as nodes share theirs).
struct Stores {
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetadataStore>,
    _dir: Option<tempfile::TempDir>,
}

impl Stores {
    fn memory() -> Self {
        let s = Arc::new(MemoryStore::new());
        Stores {
            blobs: s.clone(),
            meta: s,
            _dir: None,
        }
    }

    fn embedded() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Stores {
            blobs: Arc::new(FsBlobStore::open(dir.path()).unwrap()),
            meta: Arc::new(SqliteMetadataStore::open(dir.path().join("metadata.db")).unwrap()),
            _dir: Some(dir),
        }
    }

    /// Blobs on the filesystem, metadata on a fresh PostgreSQL database (a real server: see
    /// `berth_storage_postgres::testing`).
    async fn postgres() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = berth_storage_postgres::testing::fresh_database().await;
        Stores {
            blobs: Arc::new(FsBlobStore::open(dir.path()).unwrap()),
            meta: Arc::new(
                berth_storage_postgres::PgStore::connect(&db.url)
                    .await
                    .unwrap(),
            ),
            _dir: Some(dir),
        }
    }

    /// The distributed store: blobs on S3 (a real Garage: see `berth_storage_s3::testing`),
    /// metadata on a fresh PostgreSQL database.
    async fn distributed() -> Self {
        let db = berth_storage_postgres::testing::fresh_database().await;
        Stores {
            blobs: Arc::new(berth_storage_s3::testing::fresh_store()),
            meta: Arc::new(
                berth_storage_postgres::PgStore::connect(&db.url)
                    .await
                    .unwrap(),
            ),
            _dir: None,
        }
    }

    fn registry(&self) -> Registry {
        Registry::new(self.blobs.clone(), self.meta.clone())
    }
}

/// Runs each `async fn(&Stores)` scenario on every backend: in memory, embedded, PostgreSQL
/// with filesystem blobs, and distributed (S3 + PostgreSQL).
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$name(&super::Stores::memory()).await;
            }
            #[tokio::test]
            async fn embedded() {
                super::$name(&super::Stores::embedded()).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(&super::Stores::postgres().await).await;
            }
            #[tokio::test]
            async fn s3_and_postgres() {
                super::$name(&super::Stores::distributed().await).await;
            }
        }
    )*};
}

on_both_stores!(
    monolithic_uploads_verify_their_digest,
    chunks_must_continue_the_upload,
    a_digest_mismatch_discards_the_session,
    a_short_or_broken_chunk_leaves_the_session_as_it_was,
    cancel_removes_a_session_only_through_its_repository,
    purge_removes_old_and_never_written_sessions,
    open_sessions_are_capped_per_owner,
    mounts_link_only_blobs_the_source_holds,
    manifests_must_reference_blobs_the_repository_holds,
    tags_list_move_and_go_with_their_manifest,
    referrers_are_listed_and_filtered_by_artifact_type,
    deleting_a_blob_unlinks_it_from_one_repository,
    any_registry_over_the_store_continues_an_upload,
    a_stalled_chunk_landing_late_changes_nothing,
    a_session_from_before_part_lists_is_refused,
    an_empty_closing_chunk_is_checked_but_stores_nothing,
    store_check_reports_and_repairs,
);

fn repo(s: &str) -> RepoName {
    s.parse().unwrap()
}

fn tag(s: &str) -> Tag {
    s.parse().unwrap()
}

fn body(parts: &[&[u8]]) -> ByteStream {
    let v: Vec<io::Result<Bytes>> = parts
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    Box::pin(futures::stream::iter(v))
}

fn broken_body() -> ByteStream {
    Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from_static(b"part")),
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")),
    ]))
}

fn at(start: u64, len: u64) -> ChunkRange {
    ChunkRange {
        start: Some(start),
        len: Some(len),
    }
}

async fn read_all(r: &Registry, repo: &RepoName, d: &Digest) -> Vec<u8> {
    let size = r.stat_blob(repo, d).await.unwrap();
    let mut s = r.read_blob(repo, d, 0, size).await.unwrap();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

/// Uploads `data` as one blob of `repo`.
async fn push_blob(r: &Registry, repo: &RepoName, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let n = r
        .upload_monolithic(repo, &d, Some(data.len() as u64), body(&[data]), "alice")
        .await
        .unwrap();
    assert_eq!(n, data.len() as u64);
    d
}

fn image_manifest(config: (&Digest, usize), layers: &[(&Digest, usize)], extra: &str) -> Bytes {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, n)| {
            format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{n}}}"#)
        })
        .collect();
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]{extra}}}"#,
        media::OCI_MANIFEST,
        config.0,
        config.1,
        layers.join(",")
    ))
}

async fn put(r: &Registry, repo: &RepoName, reference: &str, m: &Bytes) -> Digest {
    let reference: TagOrDigest = reference.parse().unwrap();
    r.put_manifest(
        repo,
        &reference,
        Some(media::OCI_MANIFEST),
        m.clone(),
        vec![],
    )
    .await
    .unwrap()
    .digest
}

async fn monolithic_uploads_verify_their_digest(s: &Stores) {
    let r = s.registry();
    let app = repo("team/app");
    let d = push_blob(&r, &app, b"layer bytes").await;
    assert_eq!(read_all(&r, &app, &d).await, b"layer bytes");
    let mut ranged = r.read_blob(&app, &d, 6, 5).await.unwrap();
    assert_eq!(&ranged.next().await.unwrap().unwrap()[..], b"bytes");

    let wrong = Digest::sha256_of(b"something else");
    match r
        .upload_monolithic(&app, &wrong, Some(3), body(&[b"abc"]), "alice")
        .await
    {
        Err(Error::DigestMismatch { computed }) => {
            assert_eq!(computed, Digest::sha256_of(b"abc"))
        }
        other => panic!("expected DIGEST_INVALID, got {other:?}"),
    }
    assert!(matches!(
        r.stat_blob(&app, &wrong).await,
        Err(Error::BlobUnknown)
    ));
    assert_eq!(
        s.meta.uploads_owned_by("alice").await.unwrap(),
        0,
        "a failed monolithic upload leaves no session"
    );
    // A sha512 digest is verified with sha512.
    let d512 = Digest::of(Algorithm::Sha512, b"wide");
    r.upload_monolithic(&app, &d512, None, body(&[b"wi", b"de"]), "alice")
        .await
        .unwrap();
    assert_eq!(read_all(&r, &app, &d512).await, b"wide");
}

async fn chunks_must_continue_the_upload(s: &Stores) {
    let r = s.registry();
    let app = repo("team/app");
    let id = r
        .start_upload(&app, Algorithm::Sha256, "alice", None)
        .await
        .unwrap();
    assert_eq!(r.upload_status(&app, &id).await.unwrap(), 0);
    assert_eq!(
        r.upload_chunk(&app, &id, at(0, 4), body(&[b"0123"]))
            .await
            .unwrap(),
        4
    );
    // A gap, a resend and an overlap are all refused with where the next chunk must start.
    for start in [10, 0, 2] {
        match r
            .upload_chunk(&app, &id, at(start, 2), body(&[b"xx"]))
            .await
        {
            Err(e @ Error::ChunkOutOfOrder { current: 4 }) => {
                assert_eq!(e.code(), ErrorCode::BlobUploadInvalid)
            }
            other => panic!("chunk at {start}: expected ChunkOutOfOrder at 4, got {other:?}"),
        }
    }
    assert_eq!(r.upload_status(&app, &id).await.unwrap(), 4);
    // A streamed chunk (no Content-Range) continues wherever the upload is.
    let streamed = ChunkRange::default();
    assert_eq!(
        r.upload_chunk(&app, &id, streamed, body(&[b"45", b"67"]))
            .await
            .unwrap(),
        8
    );
    let all = b"0123456789";
    let d = Digest::sha256_of(all);
    let n = r
        .finish_upload(&app, &id, &d, Some((at(8, 2), body(&[b"89"]))))
        .await
        .unwrap();
    assert_eq!(n, 10);
    assert_eq!(read_all(&r, &app, &d).await, all);
    assert!(matches!(
        r.upload_status(&app, &id).await,
        Err(Error::UploadUnknown)
    ));
    // A session closed without a final chunk.
    let id = r
        .start_upload(&app, Algorithm::Sha256, "alice", None)
        .await
        .unwrap();
    r.upload_chunk(&app, &id, at(0, 3), body(&[b"abc"]))
        .await
        .unwrap();
    let d = Digest::sha256_of(b"abc");
    assert_eq!(r.finish_upload(&app, &id, &d, None).await.unwrap(), 3);
    assert_eq!(read_all(&r, &app, &d).await, b"abc");
}

async fn a_digest_mismatch_discards_the_session(s: &Stores) {
    let r = s.registry();
    let app = repo("team/app");
    let id = r
        .start_upload(&app, Algorithm::Sha256, "alice", None)
        .await
        .unwrap();
    r.upload_chunk(&app, &id, at(0, 5), body(&[b"hello"]))
        .await
        .unwrap();
    let claimed = Digest::sha256_of(b"world");
    match r.finish_upload(&app, &id, &claimed, None).await {
        Err(e @ Error::DigestMismatch { .. }) => assert_eq!(e.code(), ErrorCode::DigestInvalid),
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert!(matches!(
        r.upload_status(&app, &id).await,
        Err(Error::UploadUnknown)
    ));
    assert!(matches!(
        r.upload_chunk(&app, &id, at(5, 1), body(&[b"!"])).await,
        Err(Error::UploadUnknown)
    ));
    assert!(matches!(
        r.stat_blob(&app, &claimed).await,
        Err(Error::BlobUnknown)
    ));
    assert_eq!(s.meta.uploads_owned_by("alice").await.unwrap(), 0);
}

async fn a_short_or_broken_chunk_leaves_the_session_as_it_was(s: &Stores) {
    let r = s.registry();
    let app = repo("team/app");
    let id = r
        .start_upload(&app, Algorithm::Sha256, "alice", None)
        .await
        .unwrap();
    r.upload_chunk(&app, &id, at(0, 2), body(&[b"ab"]))
        .await
        .unwrap();
    match r.upload_chunk(&app, &id, at(2, 5), body(&[b"cd"])).await {
        Err(e @ Error::SizeInvalid(_)) => assert_eq!(e.code(), ErrorCode::SizeInvalid),
        other => panic!("expected SizeInvalid, got {other:?}"),
    }
    assert_eq!(r.upload_status(&app, &id).await.unwrap(), 2);
    assert!(matches!(
        r.upload_chunk(&app, &id, ChunkRange::default(), broken_body())
            .await,
        Err(Error::Body(_))
    ));
    assert_eq!(r.upload_status(&app, &id).await.unwrap(), 2);
    // The session resumes where it was, and its hash covers only what was acknowledged.
    let d = Digest::sha256_of(b"abcd");
    r.finish_upload(&app, &id, &d, Some((at(2, 2), body(&[b"cd"]))))
        .await
        .unwrap();
    assert_eq!(read_all(&r, &app, &d).await, b"abcd");
}

async fn cancel_removes_a_session_only_through_its_repository(s: &Stores) {
    let r = s.registry();
    let app = repo("team/app");
    let id = r
        .start_upload(&app, Algorithm::Sha256, "alice", None)
        .await
        .unwrap();
    r.upload_chunk(&app, &id, at(0, 3), body(&[b"abc"]))
        .await
        .unwrap();
    let other = repo("team/other");
    assert!(matches!(
        r.cancel_upload(&other, &id).await,
        Err(Error::UploadUnknown)
    ));
    assert!(matches!(
        r.upload_status(&other, &id).await,
        Err(Error::UploadUnknown)
    ));
    assert_eq!(r.upload_status(&app, &id).await.unwrap(), 3);
    r.cancel_upload(&app, &id).await.unwrap();
    assert!(matches!(
        r.upload_status(&app, &id).await,
        Err(Error::UploadUnknown)
    ));
    assert!(matches!(
        r.cancel_upload(&app, &id).await,
        Err(Error::UploadUnknown)
    ));
    assert!(!s.blobs.upload_exists(&id).await.unwrap(), "bytes gone");
    assert!(matches!(
        r.cancel_upload(&app, "no-such-session").await,
        Err(Error::UploadUnknown)
    ));
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn purge_removes_old_and_never_written_sessions(s: &Stores) {
    let r = s.registry();
    let app = repo("team/app");
    let written = r
        .start_upload(&app, Algorithm::Sha256, "alice", None)
        .await
        .unwrap();
    r.upload_chunk(&app, &written, at(0, 3), body(&[b"abc"]))
        .await
        .unwrap();
    let empty = r
        .start_upload(&app, Algorithm::Sha256, "alice", None)
        .await
        .unwrap();
    let later = unix_now() + 10;
    // Nothing is old yet: only sessions that never got a byte go.
    assert_eq!(r.purge_uploads(0, 0).await.unwrap(), 0);
    assert_eq!(r.purge_uploads(0, later).await.unwrap(), 1);
    assert!(matches!(
        r.upload_status(&app, &empty).await,
        Err(Error::UploadUnknown)
    ));
    assert!(!s.blobs.upload_exists(&empty).await.unwrap());
    assert_eq!(r.upload_status(&app, &written).await.unwrap(), 3);
    // Old sessions go whatever they hold.
    assert_eq!(r.purge_uploads(later, 0).await.unwrap(), 1);
    assert!(matches!(
        r.upload_status(&app, &written).await,
        Err(Error::UploadUnknown)
    ));
    assert!(!s.blobs.upload_exists(&written).await.unwrap());
    assert_eq!(s.meta.uploads_owned_by("alice").await.unwrap(), 0);
    assert_eq!(r.purge_uploads(later, later).await.unwrap(), 0);
}

async fn open_sessions_are_capped_per_owner(s: &Stores) {
    let r = s.registry();
    let app = repo("team/app");
    let first = r
        .start_upload(&app, Algorithm::Sha256, "alice", Some(2))
        .await
        .unwrap();
    r.start_upload(&app, Algorithm::Sha256, "alice", Some(2))
        .await
        .unwrap();
    match r
        .start_upload(&app, Algorithm::Sha256, "alice", Some(2))
        .await
    {
        Err(e @ Error::TooManyUploads { limit: 2 }) => {
            assert_eq!(e.code(), ErrorCode::TooManyRequests)
        }
        other => panic!("expected TooManyUploads, got {other:?}"),
    }
    // Others are not affected, and a monolithic upload opens no lasting session.
    r.start_upload(&app, Algorithm::Sha256, "bob", Some(2))
        .await
        .unwrap();
    push_blob(&r, &app, b"mono").await;
    // Closing one makes room again.
    r.cancel_upload(&app, &first).await.unwrap();
    r.start_upload(&app, Algorithm::Sha256, "alice", Some(2))
        .await
        .unwrap();
    assert_eq!(s.meta.uploads_owned_by("alice").await.unwrap(), 2);
}

async fn mounts_link_only_blobs_the_source_holds(s: &Stores) {
    let r = s.registry();
    let (src, dst) = (repo("team/src"), repo("team/dst"));
    let d = push_blob(&r, &src, b"shared layer").await;
    assert_eq!(r.mount_blob(&dst, &d, None).await.unwrap(), None);
    assert_eq!(
        r.mount_blob(&dst, &d, Some(&repo("team/empty")))
            .await
            .unwrap(),
        None
    );
    let missing = Digest::sha256_of(b"never pushed");
    assert_eq!(
        r.mount_blob(&dst, &missing, Some(&src)).await.unwrap(),
        None
    );
    assert!(matches!(
        r.stat_blob(&dst, &d).await,
        Err(Error::BlobUnknown)
    ));
    assert_eq!(r.mount_blob(&dst, &d, Some(&src)).await.unwrap(), Some(12));
    assert_eq!(read_all(&r, &dst, &d).await, b"shared layer");
    // The mounted link is the destination's own: unlinking the source leaves it.
    r.delete_blob(&src, &d).await.unwrap();
    assert_eq!(r.stat_blob(&dst, &d).await.unwrap(), 12);
}

async fn manifests_must_reference_blobs_the_repository_holds(s: &Stores) {
    let r = s.registry();
    let app = repo("team/app");
    let config = b"{\"architecture\":\"amd64\"}";
    let (c, l) = (Digest::sha256_of(config), Digest::sha256_of(b"layer"));
    let m = image_manifest((&c, config.len()), &[(&l, 5)], "");
    let reference: TagOrDigest = "v1".parse().unwrap();
    match r
        .put_manifest(
            &app,
            &reference,
            Some(media::OCI_MANIFEST),
            m.clone(),
            vec![],
        )
        .await
    {
        Err(e @ Error::ManifestBlobUnknown(_)) => {
            assert_eq!(e.code(), ErrorCode::ManifestBlobUnknown);
            let Error::ManifestBlobUnknown(mut missing) = e else {
                unreachable!()
            };
            missing.sort_by_key(|d| d.to_string());
            let mut want = vec![c.clone(), l.clone()];
            want.sort_by_key(|d| d.to_string());
            assert_eq!(missing, want);
        }
        other => panic!("expected ManifestBlobUnknown, got {other:?}"),
    }
    assert!(matches!(
        r.list_tags(&app, None, 10).await,
        Err(Error::NameUnknown)
    ));
    // A blob in another repository does not count.
    push_blob(&r, &repo("team/other"), config).await;
    push_blob(&r, &app, b"layer").await;
    assert!(matches!(
        r.put_manifest(&app, &reference, Some(media::OCI_MANIFEST), m.clone(), vec![])
            .await,
        Err(Error::ManifestBlobUnknown(v)) if v == vec![c.clone()]
    ));
    push_blob(&r, &app, config).await;
    // A descriptor must state the blob's real size.
    let lying = image_manifest((&c, config.len()), &[(&l, 6)], "");
    match r
        .put_manifest(&app, &reference, Some(media::OCI_MANIFEST), lying, vec![])
        .await
    {
        Err(e) => assert_eq!(e.code(), ErrorCode::ManifestInvalid, "{e}"),
        Ok(p) => panic!("a wrong size was accepted: {p:?}"),
    }
    let md = put(&r, &app, "v1", &m).await;
    assert_eq!(md, Digest::sha256_of(&m));
    let got = r
        .get_manifest(&app, &TagOrDigest::Digest(md.clone()), &[])
        .await
        .unwrap();
    assert_eq!(got.body, m);
    // By digest, the digest must be the body's.
    let wrong: TagOrDigest = TagOrDigest::Digest(Digest::sha256_of(b"x"));
    match r
        .put_manifest(&app, &wrong, Some(media::OCI_MANIFEST), m.clone(), vec![])
        .await
    {
        Err(e) => assert_eq!(e.code(), ErrorCode::DigestInvalid),
        Ok(_) => panic!("a mismatched digest reference was accepted"),
    }
    // An Accept list that excludes the type answers MANIFEST_UNKNOWN.
    assert!(matches!(
        r.get_manifest(
            &app,
            &"v1".parse().unwrap(),
            &[media::DOCKER_MANIFEST.to_owned()]
        )
        .await,
        Err(Error::ManifestUnknown(_))
    ));
    assert!(matches!(
        r.get_manifest(&repo("team/none"), &"v1".parse().unwrap(), &[])
            .await,
        Err(Error::NameUnknown)
    ));
}

async fn tags_list_move_and_go_with_their_manifest(s: &Stores) {
    let r = s.registry();
    let app = repo("team/app");
    let config = b"{}";
    let c = push_blob(&r, &app, config).await;
    let m1 = image_manifest((&c, 2), &[], "");
    let m2 = image_manifest((&c, 2), &[], r#","annotations":{"v":"2"}"#);
    let d1 = r
        .put_manifest(
            &app,
            &"v1".parse().unwrap(),
            Some(media::OCI_MANIFEST),
            m1.clone(),
            vec![tag("latest"), tag("stable")],
        )
        .await
        .unwrap()
        .digest;
    let page = r.list_tags(&app, None, 10).await.unwrap();
    assert_eq!(page.items, ["latest", "stable", "v1"]);
    let page = r.list_tags(&app, None, 2).await.unwrap();
    assert_eq!(
        (page.items.as_slice(), page.more),
        (&["latest".to_owned(), "stable".to_owned()][..], true)
    );
    let page = r.list_tags(&app, Some("stable"), 2).await.unwrap();
    assert_eq!(
        (page.items.as_slice(), page.more),
        (&["v1".to_owned()][..], false)
    );
    // `latest` moves to the second manifest; the others stay.
    let d2 = put(&r, &app, "latest", &m2).await;
    let latest = r
        .get_manifest(&app, &"latest".parse().unwrap(), &[])
        .await
        .unwrap();
    assert_eq!(latest.digest, d2);
    let v1 = r
        .get_manifest(&app, &"v1".parse().unwrap(), &[])
        .await
        .unwrap();
    assert_eq!(v1.digest, d1);
    // Deleting a tag keeps the manifest; deleting the manifest takes its remaining tags.
    r.delete_manifest(&app, &"v1".parse().unwrap())
        .await
        .unwrap();
    assert!(matches!(
        r.delete_manifest(&app, &"v1".parse().unwrap()).await,
        Err(Error::ManifestUnknown(_))
    ));
    r.get_manifest(&app, &TagOrDigest::Digest(d1.clone()), &[])
        .await
        .unwrap();
    r.delete_manifest(&app, &TagOrDigest::Digest(d1.clone()))
        .await
        .unwrap();
    assert_eq!(r.list_tags(&app, None, 10).await.unwrap().items, ["latest"]);
    assert!(matches!(
        r.get_manifest(&app, &TagOrDigest::Digest(d1.clone()), &[])
            .await,
        Err(Error::ManifestUnknown(_))
    ));
    assert!(matches!(
        r.delete_manifest(&repo("team/none"), &TagOrDigest::Digest(d1))
            .await,
        Err(Error::NameUnknown)
    ));
    assert_eq!(r.catalog(None, 10).await.unwrap().items, ["team/app"]);
}

async fn referrers_are_listed_and_filtered_by_artifact_type(s: &Stores) {
    let r = s.registry();
    let app = repo("team/app");
    let c = push_blob(&r, &app, b"{}").await;
    let subject_body = image_manifest((&c, 2), &[], "");
    let subject = put(&r, &app, "v1", &subject_body).await;
    let subject_desc = format!(
        r#","subject":{{"mediaType":"{}","digest":"{subject}","size":{}}}"#,
        media::OCI_MANIFEST,
        subject_body.len()
    );
    let sig = image_manifest(
        (&c, 2),
        &[],
        &format!(
            r#","artifactType":"application/x.sig"{subject_desc},"annotations":{{"who":"ci"}}"#
        ),
    );
    let sbom = image_manifest(
        (&c, 2),
        &[],
        &format!(r#","artifactType":"application/x.sbom"{subject_desc}"#),
    );
    let sig_d = put(&r, &app, &Digest::sha256_of(&sig).to_string(), &sig).await;
    let sbom_d = put(&r, &app, &Digest::sha256_of(&sbom).to_string(), &sbom).await;
    let mut all: Vec<String> = r
        .referrers(&app, &subject, None)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.digest.to_string())
        .collect();
    let mut want = vec![sig_d.to_string(), sbom_d.to_string()];
    want.sort();
    all.sort();
    assert_eq!(all, want);
    let sigs = r
        .referrers(&app, &subject, Some("application/x.sig"))
        .await
        .unwrap();
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].digest, sig_d);
    assert_eq!(sigs[0].size, sig.len() as u64);
    assert_eq!(sigs[0].media_type, media::OCI_MANIFEST);
    assert_eq!(sigs[0].annotations, Some(serde_json::json!({"who": "ci"})));
    assert!(
        r.referrers(&app, &subject, Some("application/other"))
            .await
            .unwrap()
            .is_empty()
    );
    // A deleted referrer is no longer listed.
    r.delete_manifest(&app, &TagOrDigest::Digest(sig_d))
        .await
        .unwrap();
    assert_eq!(r.referrers(&app, &subject, None).await.unwrap().len(), 1);
    assert!(
        r.referrers(&repo("team/none"), &subject, None)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn deleting_a_blob_unlinks_it_from_one_repository(s: &Stores) {
    let r = s.registry();
    let (a, b) = (repo("team/a"), repo("team/b"));
    let d = push_blob(&r, &a, b"shared").await;
    push_blob(&r, &b, b"shared").await;
    r.delete_blob(&a, &d).await.unwrap();
    assert!(matches!(r.stat_blob(&a, &d).await, Err(Error::BlobUnknown)));
    assert!(matches!(
        r.read_blob(&a, &d, 0, 1).await,
        Err(Error::BlobUnknown)
    ));
    assert!(matches!(
        r.delete_blob(&a, &d).await,
        Err(Error::BlobUnknown)
    ));
    assert_eq!(read_all(&r, &b, &d).await, b"shared");
    // A manifest can no longer name it in the repository that dropped it.
    let m = image_manifest((&d, 6), &[], "");
    assert!(matches!(
        r.put_manifest(
            &a,
            &"v1".parse().unwrap(),
            Some(media::OCI_MANIFEST),
            m,
            vec![]
        )
        .await,
        Err(Error::ManifestBlobUnknown(_))
    ));
}

/// Registries sharing one store are what several server processes are: the session record is
/// the truth, so any of them continues any upload and refuses a chunk another one took.
async fn any_registry_over_the_store_continues_an_upload(s: &Stores) {
    let (a, b, c) = (s.registry(), s.registry(), s.registry());
    let app = repo("team/app");
    let id = a
        .start_upload(&app, Algorithm::Sha256, "alice", None)
        .await
        .unwrap();
    a.upload_chunk(&app, &id, at(0, 3), body(&[b"abc"]))
        .await
        .unwrap();
    assert_eq!(b.upload_status(&app, &id).await.unwrap(), 3);
    b.upload_chunk(&app, &id, at(3, 3), body(&[b"def"]))
        .await
        .unwrap();
    assert!(matches!(
        a.upload_chunk(&app, &id, at(3, 3), body(&[b"XYZ"])).await,
        Err(Error::ChunkOutOfOrder { current: 6 })
    ));
    let d = Digest::sha256_of(b"abcdefgh");
    assert_eq!(
        c.finish_upload(&app, &id, &d, Some((at(6, 2), body(&[b"gh"]))))
            .await
            .unwrap(),
        8
    );
    assert_eq!(read_all(&a, &app, &d).await, b"abcdefgh");
}

/// A chunk whose request stalled lands after the client's retry through another node was
/// acknowledged, at the same offset: it is refused, and the blob is exactly the acknowledged
/// bytes (the late bytes went under a part name nobody recorded).
async fn a_stalled_chunk_landing_late_changes_nothing(s: &Stores) {
    let (a, b, c) = (s.registry(), s.registry(), s.registry());
    let app = repo("team/app");
    let id = a
        .start_upload(&app, Algorithm::Sha256, "alice", None)
        .await
        .unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let stalled: ByteStream = Box::pin(futures::stream::once(async move {
        let _ = released.await;
        Ok(Bytes::from_static(b"XYZ"))
    }));
    let late = {
        let app = app.clone();
        let id = id.clone();
        async move { a.upload_chunk(&app, &id, at(0, 3), stalled).await }
    };
    let retry = async {
        // The retry through another node wins, then the stalled request's body arrives.
        let r = b.upload_chunk(&app, &id, at(0, 3), body(&[b"abc"])).await;
        release.send(()).unwrap();
        r
    };
    let (late, retry) = tokio::join!(late, retry);
    assert_eq!(retry.unwrap(), 3);
    assert!(
        matches!(late, Err(Error::ChunkOutOfOrder { current: 3 })),
        "{late:?}"
    );
    let d = Digest::sha256_of(b"abcdef");
    assert_eq!(
        c.finish_upload(&app, &id, &d, Some((at(3, 3), body(&[b"def"]))))
            .await
            .unwrap(),
        6
    );
    assert_eq!(read_all(&b, &app, &d).await, b"abcdef");
    assert!(!s.blobs.upload_exists(&id).await.unwrap());
}

/// A session recorded by an older Berth (no part list) is not continued: it is reported unknown
/// and removed, and the client starts over.
async fn a_session_from_before_part_lists_is_refused(s: &Stores) {
    let r = s.registry();
    let app = repo("team/app");
    let id = "0b7a2d4e-legacy-session";
    s.blobs.upload_start(id).await.unwrap();
    s.meta
        .upload_create(&berth_storage::UploadRecord {
            id: id.into(),
            repo: app.clone(),
            algorithm: Algorithm::Sha256,
            created: unix_now(),
            owner: "alice".into(),
            offset: Some(3),
            hash_state: None,
            parts: None,
        })
        .await
        .unwrap();
    assert!(matches!(
        r.upload_chunk(&app, id, at(3, 3), body(&[b"def"])).await,
        Err(Error::UploadUnknown)
    ));
    assert!(s.meta.upload_get(id).await.unwrap().is_none());
    assert!(!s.blobs.upload_exists(id).await.unwrap());
    assert!(matches!(
        r.upload_status(&app, id).await,
        Err(Error::UploadUnknown)
    ));
    // A fresh upload of the same content goes through.
    let d = push_blob(&r, &app, b"abcdef").await;
    assert_eq!(read_all(&r, &app, &d).await, b"abcdef");
}

/// A closing PUT without a body (how pushes usually end) stores nothing, yet must be what it
/// says: empty, and at the session's end.
async fn an_empty_closing_chunk_is_checked_but_stores_nothing(s: &Stores) {
    let r = s.registry();
    let app = repo("team/app");
    let id = r
        .start_upload(&app, Algorithm::Sha256, "alice", None)
        .await
        .unwrap();
    r.upload_chunk(&app, &id, at(0, 3), body(&[b"abc"]))
        .await
        .unwrap();
    let d = Digest::sha256_of(b"abc");
    assert!(matches!(
        r.finish_upload(&app, &id, &d, Some((at(2, 0), body(&[]))))
            .await,
        Err(Error::ChunkOutOfOrder { current: 3 })
    ));
    assert!(
        r.finish_upload(&app, &id, &d, Some((at(3, 0), body(&[b"x"]))))
            .await
            .is_err(),
        "bytes where none were announced"
    );
    assert_eq!(r.upload_status(&app, &id).await.unwrap(), 3);
    assert_eq!(
        r.finish_upload(&app, &id, &d, Some((at(3, 0), body(&[]))))
            .await
            .unwrap(),
        3
    );
    assert_eq!(read_all(&r, &app, &d).await, b"abc");
}

/// `store check` on every backend: a clean store has nothing to say but the blob nobody links
/// (a note for garbage collection); bytes deleted under a link, and upload data without a
/// record, are reported and, with `repair`, unlinked and removed, while an upload in progress
/// (it has a record) and young upload data are left alone; what is lost stays reported.
async fn store_check_reports_and_repairs(s: &Stores) {
    use berth_registry::{CheckOptions, FindingKind};
    let r = s.registry();
    let app = repo("check/app");
    let config = push_blob(&r, &app, b"{\"check\":1}").await;
    let layer = push_blob(&r, &app, b"a layer the check will miss").await;
    let m = image_manifest((&config, 11), &[(&layer, 27)], "");
    let md = put(&r, &app, "v1", &m).await;
    let other = repo("check/other");
    let loose = push_blob(&r, &other, b"unlinked later").await;
    r.delete_blob(&other, &loose).await.unwrap();
    let live = r
        .start_upload(&app, Algorithm::Sha256, "alice", None)
        .await
        .unwrap();

    let all_now = CheckOptions {
        min_age_secs: 0,
        ..CheckOptions::default()
    };
    let report = r.check_store(all_now).await.unwrap();
    let kinds: Vec<FindingKind> = report.findings.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FindingKind::UnreferencedBlob], "{report:#?}");
    assert_eq!(report.findings[0].digest, Some(loose.to_string()));
    assert_eq!(report.remaining(), 0, "a note is no problem");
    assert_eq!(
        (report.repositories, report.manifests, report.tags),
        (2, 1, 1)
    );
    assert_eq!(report.uploads, 1, "the upload in progress");

    s.blobs.delete(&layer).await.unwrap();
    s.blobs.upload_start("orphan-1").await.unwrap();
    let young = r.check_store(CheckOptions::default()).await.unwrap();
    assert!(
        !young
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::OrphanedUpload),
        "young upload data is left alone: {young:#?}"
    );
    let report = r.check_store(all_now).await.unwrap();
    let mut kinds: Vec<FindingKind> = report
        .findings
        .iter()
        .filter(|f| f.kind.is_problem())
        .map(|f| f.kind)
        .collect();
    kinds.sort_by_key(|k| k.as_str());
    assert_eq!(
        kinds,
        [
            FindingKind::IncompleteManifest,
            FindingKind::MissingBlob,
            FindingKind::OrphanedUpload
        ],
        "{report:#?}"
    );
    assert_eq!(report.repaired(), 0);
    assert!(
        s.blobs.upload_exists("orphan-1").await.unwrap(),
        "nothing changed"
    );

    let repaired = r
        .check_store(CheckOptions {
            repair: true,
            ..all_now
        })
        .await
        .unwrap();
    assert_eq!(repaired.repaired(), 2, "{repaired:#?}");
    assert_eq!(
        repaired.remaining(),
        1,
        "the manifest's lost layer: {repaired:#?}"
    );
    assert_eq!(s.meta.blob_linked(&app, &layer).await.unwrap(), None);
    assert!(!s.blobs.upload_exists("orphan-1").await.unwrap());
    assert!(
        s.blobs.upload_exists(&live).await.unwrap(),
        "in progress: untouched"
    );
    assert_eq!(r.upload_status(&app, &live).await.unwrap(), 0);

    let again = r.check_store(all_now).await.unwrap();
    let problems: Vec<_> = again.findings.iter().filter(|f| f.remains()).collect();
    assert_eq!(problems.len(), 1, "{again:#?}");
    assert_eq!(
        (problems[0].kind, problems[0].digest.clone()),
        (FindingKind::IncompleteManifest, Some(md.to_string()))
    );
    // Pushing the layer again completes the image.
    push_blob(&r, &app, b"a layer the check will miss").await;
    assert_eq!(r.check_store(all_now).await.unwrap().remaining(), 0);
    r.cancel_upload(&app, &live).await.unwrap();
    s.blobs.delete(&loose).await.unwrap();
}
