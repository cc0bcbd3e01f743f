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
    // The record says where the upload ends: bytes beyond the offset were never acknowledged
    // and are replaced; a gap past what the store holds is refused.
    let e = b
        .upload_append("a1", 6, None, stream_of(&[b"xx"]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::OffsetMismatch {
                offset: 6,
                current: 4
            }
        ),
        "gap refused: {e}"
    );
    assert_eq!(
        b.upload_append("a1", 2, None, stream_of(&[b"xx"]))
            .await
            .unwrap(),
        4
    );
    assert_eq!(collect(b.upload_read("a1").await.unwrap()).await, b"01xx");
    b.upload_append("a1", 2, Some(2), stream_of(&[b"23"]))
        .await
        .unwrap();
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
        owner: "alice".into(),
        offset: Some(0),
        hash_state: Some(vec![1, 2, 3]),
    };
    m.upload_create(&u).await.unwrap();
    m.upload_create(&UploadRecord {
        id: "up-2".into(),
        owner: "bob".into(),
        ..u.clone()
    })
    .await
    .unwrap();
    let got = m.upload_get("up-1").await.unwrap().unwrap();
    assert_eq!(
        (got.repo, got.algorithm, got.created, got.owner.as_str()),
        (repo("a/b"), Algorithm::Sha512, 100, "alice")
    );
    assert_eq!(m.uploads_owned_by("alice").await.unwrap(), 1);
    assert_eq!((got.offset, got.hash_state), (Some(0), Some(vec![1, 2, 3])));
    // Compare-and-set of the acknowledged end: only from where it is.
    assert!(
        m.upload_advance("up-1", 0, 10, Some(vec![4]))
            .await
            .unwrap()
    );
    assert!(
        !m.upload_advance("up-1", 0, 20, Some(vec![5]))
            .await
            .unwrap()
    );
    let got = m.upload_get("up-1").await.unwrap().unwrap();
    assert_eq!((got.offset, got.hash_state), (Some(10), Some(vec![4])));
    assert!(m.upload_advance("up-1", 10, 12, None).await.unwrap());
    let got = m.upload_get("up-1").await.unwrap().unwrap();
    assert_eq!((got.offset, got.hash_state), (Some(12), None));
    assert!(!m.upload_advance("no-such", 0, 1, None).await.unwrap());
    assert_eq!(m.uploads_owned_by("carol").await.unwrap(), 0);
    m.upload_delete("up-2").await.unwrap();
    assert_eq!(m.uploads_owned_by("bob").await.unwrap(), 0);
    assert_eq!(
        m.uploads_created_before(101).await.unwrap(),
        vec!["up-1".to_string()]
    );
    assert!(m.uploads_created_before(100).await.unwrap().is_empty());
    m.upload_delete("up-1").await.unwrap();
    assert!(m.upload_get("up-1").await.unwrap().is_none());
}

fn tuf(role: &str, version: i64, data: &'static [u8]) -> crate::NewTufFile {
    crate::NewTufFile {
        role: role.into(),
        version,
        sha256: format!("{:064x}", version),
        data: Bytes::from_static(data),
    }
}

/// Trust-data rules: append-only versions, atomic multi-role updates, changefeed, keys, settings.
pub async fn run_trust(t: &dyn crate::TrustStore) {
    let gun = "localhost:5000/team/app";
    assert!(t.tuf_current(gun, "root").await.unwrap().is_none());
    t.tuf_update(
        gun,
        vec![
            tuf("root", 1, b"r1"),
            tuf("targets", 1, b"t1"),
            tuf("timestamp", 1, b"ts1"),
        ],
    )
    .await
    .unwrap();
    t.tuf_update(
        gun,
        vec![tuf("targets", 2, b"t2"), tuf("timestamp", 2, b"ts2")],
    )
    .await
    .unwrap();
    assert_eq!(
        t.tuf_current(gun, "targets").await.unwrap().unwrap().data,
        &b"t2"[..]
    );
    assert_eq!(
        t.tuf_by_version(gun, "targets", 1)
            .await
            .unwrap()
            .unwrap()
            .data,
        &b"t1"[..]
    );
    let by_hash = t
        .tuf_by_checksum(gun, "targets", &format!("{:064x}", 1))
        .await
        .unwrap();
    assert_eq!(by_hash.unwrap().version, 1);
    let all = t.tuf_current_all(gun).await.unwrap();
    let summary: Vec<(String, i64)> = all.iter().map(|f| (f.role.clone(), f.version)).collect();
    assert_eq!(
        summary,
        vec![
            ("root".into(), 1),
            ("targets".into(), 2),
            ("timestamp".into(), 2)
        ]
    );

    // A stale role anywhere in the update rejects all of it.
    let e = t
        .tuf_update(
            gun,
            vec![tuf("snapshot", 1, b"s1"), tuf("targets", 2, b"t2b")],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::TufVersion { ref role, stored: 2, new: 2 } if role == "targets"),
        "{e}"
    );
    assert!(
        t.tuf_current(gun, "snapshot").await.unwrap().is_none(),
        "rejected update left a file"
    );

    // Changefeed: one row per timestamp, forward and backward paging, per GUN and global.
    t.tuf_update("other/gun", vec![tuf("timestamp", 1, b"o1")])
        .await
        .unwrap();
    let feed = t.changefeed(Some(gun), 0, 100).await.unwrap();
    assert_eq!(
        feed.iter().map(|c| c.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(feed.iter().all(|c| c.category == "update" && c.gun == gun));
    let global = t.changefeed(None, 0, 100).await.unwrap();
    assert_eq!(global.len(), 3);
    let last_two = t.changefeed(None, 0, -2).await.unwrap();
    assert_eq!(
        last_two.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![global[1].id, global[2].id]
    );
    let after_first = t.changefeed(None, global[0].id, 1).await.unwrap();
    assert_eq!(after_first[0].id, global[1].id);

    // Server keys and settings.
    let key = crate::ServerKeyRecord {
        key_id: "k1".into(),
        role: "timestamp".into(),
        algorithm: "ecdsa".into(),
        public: Bytes::from_static(b"{}"),
        sealed_private: Bytes::from_static(b"sealed"),
        created: 1,
    };
    t.server_key_insert(gun, &key).await.unwrap();
    t.server_key_insert(
        gun,
        &crate::ServerKeyRecord {
            key_id: "k2".into(),
            ..key.clone()
        },
    )
    .await
    .unwrap();
    let keys = t.server_keys(gun, "timestamp").await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
        vec!["k1", "k2"]
    );
    assert!(t.server_keys(gun, "snapshot").await.unwrap().is_empty());
    // A first key goes in only when the role holds none; the held one wins otherwise.
    let s1 = crate::ServerKeyRecord {
        key_id: "s1".into(),
        role: "snapshot".into(),
        ..key.clone()
    };
    let first = t.server_key_insert_first(gun, &s1).await.unwrap();
    assert_eq!(first.key_id, "s1");
    let again = t
        .server_key_insert_first(
            gun,
            &crate::ServerKeyRecord {
                key_id: "s2".into(),
                ..s1.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(again.key_id, "s1", "the key already held wins");
    assert_eq!(t.server_keys(gun, "snapshot").await.unwrap().len(), 1);
    assert_eq!(
        t.server_key_insert_first(gun, &key).await.unwrap().key_id,
        "k2",
        "the newest held key of the role"
    );
    // Insert-if-absent settings: the first value stays.
    assert_eq!(
        t.setting_insert_if_absent("vault_salt", "aa")
            .await
            .unwrap(),
        "aa"
    );
    assert_eq!(
        t.setting_insert_if_absent("vault_salt", "bb")
            .await
            .unwrap(),
        "aa"
    );
    assert_eq!(
        t.setting_get("vault_salt").await.unwrap().as_deref(),
        Some("aa")
    );
    assert_eq!(t.setting_get("content_trust").await.unwrap(), None);
    t.setting_set("content_trust", "enabled").await.unwrap();
    t.setting_set("content_trust", "disabled").await.unwrap();
    assert_eq!(
        t.setting_get("content_trust").await.unwrap().as_deref(),
        Some("disabled")
    );

    // Deleting one GUN leaves the others; deletion is in the changefeed.
    assert_eq!(
        t.tuf_guns().await.unwrap(),
        vec!["localhost:5000/team/app".to_string(), "other/gun".into()]
    );
    assert!(t.tuf_delete(gun).await.unwrap());
    assert!(!t.tuf_delete(gun).await.unwrap());
    assert!(t.tuf_current(gun, "root").await.unwrap().is_none());
    assert!(
        t.server_keys(gun, "timestamp").await.unwrap().is_empty(),
        "keys go with the GUN"
    );
    let del = t.changefeed(Some(gun), 0, -1).await.unwrap();
    assert_eq!(
        (
            del[0].category.as_str(),
            del[0].version,
            del[0].sha256.as_str()
        ),
        ("deletion", 0, "")
    );
    assert_eq!(t.tuf_delete_all().await.unwrap(), 1);
    assert!(t.tuf_guns().await.unwrap().is_empty());
}

/// Identity rules: unique names, updates, roles, scope maps, signing keys, the audit log.
pub async fn run_identity(s: &dyn crate::IdentityStore) {
    let alice = crate::IdentityRecord {
        name: "alice".into(),
        kind: "user".into(),
        label: "alice".into(),
        secret_hash: "$argon2id$v=19$hash".into(),
        secret_hash2: None,
        disabled: false,
        expires: None,
        scope_map: None,
        created: 1,
    };
    s.identity_insert(&alice).await.unwrap();
    assert!(
        matches!(s.identity_insert(&alice).await, Err(Error::Conflict(_))),
        "names are unique"
    );
    let disabled = crate::IdentityRecord {
        disabled: true,
        ..alice.clone()
    };
    assert!(s.identity_update(&disabled).await.unwrap());
    assert!(s.identity_get("alice").await.unwrap().unwrap().disabled);
    let ghost = crate::IdentityRecord {
        name: "ghost".into(),
        ..alice.clone()
    };
    assert!(!s.identity_update(&ghost).await.unwrap());
    let token = crate::IdentityRecord {
        name: "ci".into(),
        kind: "token".into(),
        scope_map: Some("ci-map".into()),
        secret_hash2: Some("h2".into()),
        expires: Some(99),
        ..alice.clone()
    };
    s.identity_insert(&token).await.unwrap();
    assert_eq!(
        s.identity_list(Some("token")).await.unwrap(),
        vec![token.clone()]
    );
    assert_eq!(s.identity_list(None).await.unwrap().len(), 2);

    let id = s
        .role_assign("AcrPush", "alice", Some("team/app"))
        .await
        .unwrap();
    assert_eq!(
        s.role_assign("AcrPush", "alice", Some("team/app"))
            .await
            .unwrap(),
        id,
        "idempotent"
    );
    s.role_assign("AcrPull", "alice", None).await.unwrap();
    let roles = s.role_list(Some("alice")).await.unwrap();
    assert_eq!(roles.len(), 2);
    assert!(
        roles
            .iter()
            .any(|r| r.role == "AcrPull" && r.repository.is_none())
    );
    assert!(s.role_unassign("AcrPull", "alice", None).await.unwrap());
    assert!(!s.role_unassign("AcrPull", "alice", None).await.unwrap());
    assert!(s.identity_delete("alice").await.unwrap());
    assert!(
        s.role_list(Some("alice")).await.unwrap().is_empty(),
        "roles go with the identity"
    );

    let map = crate::ScopeMapRecord {
        name: "ci-map".into(),
        rules: r#"[{"repository":"team/*","actions":["content/read"]}]"#.into(),
        description: String::new(),
        created: 1,
    };
    s.scope_map_put(&map).await.unwrap();
    assert_eq!(s.scope_map_get("ci-map").await.unwrap(), Some(map.clone()));
    assert_eq!(s.scope_map_list().await.unwrap().len(), 1);
    assert!(s.scope_map_delete("ci-map").await.unwrap());

    let key = crate::SigningKeyRecord {
        kid: "k1".into(),
        sealed_private: Bytes::from_static(b"sealed"),
        certificate: Bytes::from_static(b"der"),
        created: 10,
        retired: None,
    };
    s.signing_key_insert(&key).await.unwrap();
    s.signing_key_insert(&crate::SigningKeyRecord {
        kid: "k2".into(),
        created: 20,
        ..key.clone()
    })
    .await
    .unwrap();
    assert_eq!(s.signing_keys().await.unwrap()[0].kid, "k2", "newest first");
    s.signing_key_retire("k1", 30).await.unwrap();
    assert_eq!(s.signing_keys_purge(31).await.unwrap(), 1);
    assert_eq!(s.signing_keys().await.unwrap().len(), 1);

    let rec = crate::AuditRecord {
        id: 0,
        at: 5,
        actor: "bob".into(),
        action: "login.failed".into(),
        target: "registry".into(),
        client: "127.0.0.1".into(),
        detail: String::new(),
    };
    let a = s.audit_append(&rec).await.unwrap();
    let b = s.audit_append(&rec).await.unwrap();
    assert!(b > a);
    let after = s.audit_list(a, 10).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, b);
}
