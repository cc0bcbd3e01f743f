//! Conformance tests every storage backend must pass. Backends call [`run_all`] from their own
//! test with fresh stores; a failure panics with the name of the broken rule.

use std::io;

use berth_oci::{Algorithm, Digest, RepoName, Tag, TagOrDigest};
use bytes::Bytes;
use futures::StreamExt;

use crate::{BlobStore, ByteStream, Error, MetadataStore, NewManifest, UploadRecord};

fn stream_of(parts: &[&'static [u8]]) -> ByteStream {
    let v: Vec<io::Result<Bytes>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Box::pin(futures::stream::iter(v))
}

fn failing_stream() -> ByteStream {
    Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ]))
}

async fn collect(s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = s;
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

fn repo(s: &str) -> RepoName {
    s.parse().unwrap()
}

fn tag(s: &str) -> Tag {
    s.parse().unwrap()
}

/// Runs every blob and metadata rule against the given stores (which must be empty).
pub async fn run_all(blobs: &dyn BlobStore, meta: &dyn MetadataStore) {
    blob_upload_roundtrip(blobs).await;
    blob_append_rules(blobs).await;
    metadata_manifests_and_tags(meta).await;
    metadata_uploads(meta).await;
}

async fn blob_upload_roundtrip(b: &dyn BlobStore) {
    b.upload_start("u1").await.unwrap();
    assert_eq!(b.upload_len("u1").await.unwrap(), Some(0));
    let n = b
        .upload_append("u1", 0, None, stream_of(&[b"hello ", b"world"]))
        .await
        .unwrap();
    assert_eq!(n, 11);
    assert_eq!(
        collect(b.upload_read("u1").await.unwrap()).await,
        b"hello world"
    );
    let d = Digest::sha256_of(b"hello world");
    assert_eq!(
        b.stat(&d).await.unwrap(),
        None,
        "blob must not be visible before commit"
    );
    assert_eq!(b.upload_commit("u1", &d).await.unwrap(), 11);
    assert_eq!(b.stat(&d).await.unwrap(), Some(11));
    assert_eq!(
        b.upload_len("u1").await.unwrap(),
        None,
        "commit removes the upload"
    );
    assert_eq!(collect(b.read(&d, 6, 5).await.unwrap()).await, b"world");
    // Committing identical content again dedupes.
    b.upload_start("u2").await.unwrap();
    b.upload_append("u2", 0, Some(11), stream_of(&[b"hello world"]))
        .await
        .unwrap();
    assert_eq!(b.upload_commit("u2", &d).await.unwrap(), 11);
    b.delete(&d).await.unwrap();
    assert_eq!(b.stat(&d).await.unwrap(), None);
    assert!(matches!(b.read(&d, 0, 1).await, Err(Error::BlobUnknown)));
}

async fn blob_append_rules(b: &dyn BlobStore) {
    b.upload_start("a1").await.unwrap();
    b.upload_append("a1", 0, None, stream_of(&[b"0123"]))
        .await
        .unwrap();
    let e = b
        .upload_append("a1", 2, None, stream_of(&[b"xx"]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::OffsetMismatch {
                offset: 2,
                current: 4
            }
        ),
        "overlap refused: {e}"
    );
    let e = b
        .upload_append("a1", 4, Some(3), stream_of(&[b"56"]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::SizeMismatch {
                expected: 3,
                received: 2
            }
        ),
        "short chunk: {e}"
    );
    assert_eq!(
        b.upload_len("a1").await.unwrap(),
        Some(4),
        "short chunk rolled back"
    );
    let e = b
        .upload_append("a1", 4, None, failing_stream())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Body(_)), "broken body: {e}");
    assert_eq!(
        b.upload_len("a1").await.unwrap(),
        Some(4),
        "broken body rolled back"
    );
    assert_eq!(
        b.upload_append("a1", 4, Some(2), stream_of(&[b"45"]))
            .await
            .unwrap(),
        6
    );
    b.upload_abort("a1").await.unwrap();
    assert!(matches!(b.upload_len("a1").await, Ok(None)));
    assert!(matches!(
        b.upload_append("a1", 0, None, stream_of(&[b"x"])).await,
        Err(Error::UploadUnknown)
    ));
    assert!(matches!(
        b.upload_append("../x", 0, None, stream_of(&[b"x"])).await,
        Err(Error::UploadUnknown)
    ));
}

async fn metadata_manifests_and_tags(m: &dyn MetadataStore) {
    let r = repo("team/app");
    assert!(!m.repo_exists(&r).await.unwrap());
    let layer = Digest::sha256_of(b"layer");
    let body = Bytes::from_static(b"{\"manifest\":1}");
    let md = Digest::sha256_of(&body);
    let new = NewManifest {
        repo: r.clone(),
        digest: md.clone(),
        media_type: berth_oci::media::OCI_MANIFEST.into(),
        body: body.clone(),
        subject: None,
        artifact_type: None,
        annotations: None,
        blobs: vec![layer.clone()],
        children: vec![],
    };
    match m.put_manifest(new.clone(), &[tag("v1")]).await {
        Err(Error::MissingReferences(v)) => assert_eq!(v, vec![layer.clone()]),
        other => panic!("missing blob must be refused, got {other:?}"),
    }
    assert!(
        !m.repo_exists(&r).await.unwrap(),
        "a refused manifest leaves nothing behind"
    );
    m.link_blob(&r, &layer, 5).await.unwrap();
    assert_eq!(m.blob_linked(&r, &layer).await.unwrap(), Some(5));
    assert_eq!(m.blob_linked(&repo("other"), &layer).await.unwrap(), None);
    m.put_manifest(new, &[tag("v1"), tag("latest")])
        .await
        .unwrap();
    let got = m
        .get_manifest(&r, &TagOrDigest::Tag(tag("v1")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.digest.clone(), got.body.clone()),
        (md.clone(), body.clone())
    );
    let by_digest = m
        .get_manifest(&r, &TagOrDigest::Digest(md.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_digest.body, body);

    // Pagination is lexical and reports whether more follow.
    let page = m.list_tags(&r, None, 1).await.unwrap().unwrap();
    assert_eq!(
        (page.items.clone(), page.more),
        (vec!["latest".to_string()], true)
    );
    let page = m.list_tags(&r, Some("latest"), 5).await.unwrap().unwrap();
    assert_eq!(
        (page.items.clone(), page.more),
        (vec!["v1".to_string()], false)
    );
    assert!(m.list_tags(&repo("nope"), None, 5).await.unwrap().is_none());
    assert_eq!(
        m.list_repos(None, 10).await.unwrap().items,
        vec!["team/app".to_string()]
    );

    // Referrers.
    let sig = Bytes::from_static(b"{\"sig\":1}");
    let sd = Digest::sha256_of(&sig);
    let referrer = NewManifest {
        repo: r.clone(),
        digest: sd.clone(),
        media_type: berth_oci::media::OCI_MANIFEST.into(),
        body: sig,
        subject: Some(md.clone()),
        artifact_type: Some("application/x.sig".into()),
        annotations: Some("{\"a\":\"b\"}".into()),
        blobs: vec![],
        children: vec![md.clone()],
    };
    m.put_manifest(referrer, &[]).await.unwrap();
    let refs = m.referrers(&r, &md).await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest, sd);
    assert_eq!(refs[0].artifact_type.as_deref(), Some("application/x.sig"));

    assert!(m.delete_tag(&r, &tag("latest")).await.unwrap());
    assert!(!m.delete_tag(&r, &tag("latest")).await.unwrap());
    assert!(m.delete_manifest(&r, &md).await.unwrap());
    assert!(
        m.get_manifest(&r, &TagOrDigest::Tag(tag("v1")))
            .await
            .unwrap()
            .is_none(),
        "tags go with the manifest"
    );
    assert!(m.unlink_blob(&r, &layer).await.unwrap());
    assert_eq!(m.blob_linked(&r, &layer).await.unwrap(), None);
}

async fn metadata_uploads(m: &dyn MetadataStore) {
    let u = UploadRecord {
        id: "up-1".into(),
        repo: repo("a/b"),
        algorithm: Algorithm::Sha512,
        created: 100,
    };
    m.upload_create(&u).await.unwrap();
    let got = m.upload_get("up-1").await.unwrap().unwrap();
    assert_eq!(
        (got.repo, got.algorithm, got.created),
        (repo("a/b"), Algorithm::Sha512, 100)
    );
    assert_eq!(
        m.uploads_created_before(101).await.unwrap(),
        vec!["up-1".to_string()]
    );
    assert!(m.uploads_created_before(100).await.unwrap().is_empty());
    m.upload_delete("up-1").await.unwrap();
    assert!(m.upload_get("up-1").await.unwrap().is_none());
}
