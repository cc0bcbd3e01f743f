//! Conformance tests every storage backend must pass. Backends call [`run_all`] from their own
//! test with fresh stores; a failure panics with the name of the broken rule.

use std::io;

use berth_oci::{Algorithm, Digest, RepoName, Tag, TagOrDigest};
use bytes::Bytes;
use futures::StreamExt;

use crate::{
    AssignedRole, BlobStore, ByteStream, ChangeCategory, Error, IdentityKind, MetadataStore,
    NewManifest, ServerKeyRole, UploadPart, UploadRecord,
};

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
    run_blobs(blobs).await;
    run_metadata(meta).await;
    run_upload_race((blobs, meta), (blobs, meta)).await;
    run_gc(blobs, meta).await;
}

/// Stores `data` as a blob through an upload, as the registry does, and returns its digest.
async fn stored_blob(b: &dyn BlobStore, data: &'static [u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let id = uuid_like(&d);
    b.upload_start(&id).await.unwrap();
    let n = b
        .upload_write(&id, "p0", 0, Some(data.len() as u64), stream_of(&[data]))
        .await
        .unwrap();
    let parts = [UploadPart {
        name: "p0".into(),
        offset: 0,
        size: n,
    }];
    b.upload_commit(&id, &parts, &d).await.unwrap();
    d
}

/// An upload id derived from a digest (unique per blob within one test run).
fn uuid_like(d: &Digest) -> String {
    format!("gc-{}", &d.hex()[..32])
}

fn gc_manifest(r: &RepoName, body: &'static str, pushed: i64) -> NewManifest {
    NewManifest {
        repo: r.clone(),
        digest: Digest::sha256_of(body.as_bytes()),
        media_type: berth_oci::media::OCI_MANIFEST.into(),
        body: Bytes::from_static(body.as_bytes()),
        subject: None,
        artifact_type: None,
        annotations: None,
        blobs: vec![],
        children: vec![],
        pushed,
    }
}

/// Garbage collection's rules (the invariant in `MetadataStore`): referenced or recently
/// touched blobs are never candidates nor removed; removal takes the links and the bytes;
/// manifests go only when no tag, parent or existing subject keeps them, one layer at a time.
pub async fn run_gc(b: &dyn BlobStore, m: &dyn MetadataStore) {
    let r = repo("gc-rules/app");
    let used = stored_blob(b, b"gc used layer").await;
    let loose = stored_blob(b, b"gc loose layer").await;
    let fresh = stored_blob(b, b"gc fresh layer").await;
    let deep = stored_blob(b, b"gc deep layer").await;
    for (d, t) in [(&used, 100), (&loose, 100), (&fresh, 200), (&deep, 100)] {
        m.blob_pin(d, 13, t).await.unwrap();
        m.link_blob(&r, d, 13).await.unwrap();
    }
    // A later pin with an older time never moves the touch back.
    m.blob_pin(&fresh, 13, 50).await.unwrap();
    let tagged = NewManifest {
        blobs: vec![used.clone()],
        ..gc_manifest(&r, "{\"gc\":\"tagged\"}", 100)
    };
    m.put_manifest(tagged.clone(), &[tag("v1")]).await.unwrap();
    // An untagged index -> untagged child (holding `deep`) <- referrer of that child.
    let child = NewManifest {
        blobs: vec![deep.clone()],
        ..gc_manifest(&r, "{\"gc\":\"child\"}", 100)
    };
    m.put_manifest(child.clone(), &[]).await.unwrap();
    let index = NewManifest {
        children: vec![child.digest.clone()],
        ..gc_manifest(&r, "{\"gc\":\"index\"}", 100)
    };
    m.put_manifest(index.clone(), &[]).await.unwrap();
    let referrer = NewManifest {
        subject: Some(child.digest.clone()),
        ..gc_manifest(&r, "{\"gc\":\"referrer\"}", 100)
    };
    m.put_manifest(referrer.clone(), &[]).await.unwrap();
    let young = gc_manifest(&r, "{\"gc\":\"young\"}", 200);
    m.put_manifest(young.clone(), &[]).await.unwrap();

    // Other rules' blobs share the store: look at this rule's own.
    let ours = [used.clone(), loose.clone(), fresh.clone(), deep.clone()];
    let mine = |v: Vec<(Digest, u64)>| -> Vec<(Digest, u64)> {
        v.into_iter().filter(|(d, _)| ours.contains(d)).collect()
    };
    // Blobs: only the loose, old one.
    let cands = mine(m.gc_blob_candidates(150, None, 1000).await.unwrap());
    assert_eq!(cands, vec![(loose.clone(), 13)], "blob candidates");
    // Paging: nothing at or before `after` comes back.
    assert!(
        m.gc_blob_candidates(150, Some(&loose), 1000)
            .await
            .unwrap()
            .iter()
            .all(|(d, _)| d.to_string() > loose.to_string())
    );
    // Nothing touched since 150 is a candidate at a later cutoff either, once pinned again.
    m.blob_pin(&loose, 13, 300).await.unwrap();
    assert!(
        m.gc_blob_candidates(250, None, 1000)
            .await
            .unwrap()
            .iter()
            .all(|(d, _)| d != &loose)
    );
    assert_eq!(m.gc_blob_remove(&loose, 250, b).await.unwrap(), None);
    assert_eq!(m.blob_linked(&r, &loose).await.unwrap(), Some(13));
    // Referenced and fresh blobs are refused at removal too (the re-check).
    assert_eq!(m.gc_blob_remove(&used, 1000, b).await.unwrap(), None);
    assert_eq!(m.gc_blob_remove(&fresh, 150, b).await.unwrap(), None);
    assert!(b.stat(&used).await.unwrap().is_some());
    // Collected: links and bytes gone.
    assert_eq!(m.gc_blob_remove(&loose, 301, b).await.unwrap(), Some(13));
    assert_eq!(m.blob_linked(&r, &loose).await.unwrap(), None);
    assert_eq!(b.stat(&loose).await.unwrap(), None);
    assert_eq!(m.gc_blob_remove(&loose, 301, b).await.unwrap(), None);

    // Manifests, layer by layer: the index first, then its child, then the child's referrer.
    let first = m.gc_manifest_candidates(&r, 150).await.unwrap();
    assert_eq!(first, vec![index.digest.clone()], "manifest candidates");
    assert!(
        !m.gc_manifest_remove(&r, &tagged.digest, 1000)
            .await
            .unwrap()
    );
    assert!(!m.gc_manifest_remove(&r, &child.digest, 150).await.unwrap());
    assert!(!m.gc_manifest_remove(&r, &young.digest, 150).await.unwrap());
    assert!(m.gc_manifest_remove(&r, &index.digest, 150).await.unwrap());
    assert_eq!(
        m.gc_manifest_candidates(&r, 150).await.unwrap(),
        vec![child.digest.clone()]
    );
    // `deep` is still referenced by the child.
    assert!(mine(m.gc_blob_candidates(150, None, 1000).await.unwrap()).is_empty());
    assert!(m.gc_manifest_remove(&r, &child.digest, 150).await.unwrap());
    assert_eq!(
        m.gc_manifest_candidates(&r, 150).await.unwrap(),
        vec![referrer.digest.clone()]
    );
    assert!(
        m.gc_manifest_remove(&r, &referrer.digest, 150)
            .await
            .unwrap()
    );
    assert!(m.gc_manifest_candidates(&r, 150).await.unwrap().is_empty());
    assert!(
        m.get_manifest(&r, &TagOrDigest::Digest(child.digest.clone()))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        mine(m.gc_blob_candidates(150, None, 1000).await.unwrap()),
        vec![(deep.clone(), 13)]
    );
    // A pushed-again manifest is young again; an untagged one becomes a candidate.
    m.put_manifest(gc_manifest(&r, "{\"gc\":\"young\"}", 400), &[])
        .await
        .unwrap();
    assert!(!m.gc_manifest_remove(&r, &young.digest, 300).await.unwrap());
    assert!(m.delete_tag(&r, &tag("v1")).await.unwrap());
    assert_eq!(
        m.gc_manifest_candidates(&r, 300).await.unwrap(),
        vec![tagged.digest.clone()]
    );

    // Bytes with no record at all go; bytes with one stay.
    let stray = stored_blob(b, b"gc stray bytes").await;
    assert_eq!(
        m.blobs_known(&[used.clone(), stray.clone(), loose.clone()])
            .await
            .unwrap(),
        vec![true, false, false]
    );
    assert!(m.gc_bytes_remove(&stray, b).await.unwrap());
    assert_eq!(b.stat(&stray).await.unwrap(), None);
    assert!(!m.gc_bytes_remove(&stray, b).await.unwrap());
    assert!(!m.gc_bytes_remove(&used, b).await.unwrap());
    assert!(b.stat(&used).await.unwrap().is_some());
    // A link alone records the blob (so its bytes are never taken as stray), unprotected.
    let linked = stored_blob(b, b"gc linked only").await;
    m.link_blob(&r, &linked, 14).await.unwrap();
    assert!(!m.gc_bytes_remove(&linked, b).await.unwrap());
    assert!(
        m.gc_blob_candidates(1, None, 1000)
            .await
            .unwrap()
            .contains(&(linked.clone(), 14))
    );
    for d in [&used, &fresh, &deep, &linked] {
        b.delete(d).await.unwrap();
    }
}

/// Collection racing pushes through two stores (two nodes where the backend has them), round
/// after round. Whoever wins, a manifest that was stored never references a blob whose bytes
/// are gone, and a blob published again while it was being collected keeps its bytes.
pub async fn run_gc_race<S: MetadataStore>(blobs: &dyn BlobStore, a: &S, b: &S) {
    let r = repo("gc-race/app");
    let (mut stored, mut refused, mut kept, mut collected) = (0, 0, 0, 0);
    for i in 0..RACE_ROUNDS {
        // A manifest push against a collection of the blob it references.
        let data: &'static [u8] = Box::leak(format!("gc race layer {i}").into_bytes().into());
        let d = stored_blob(blobs, data).await;
        a.blob_pin(&d, data.len() as u64, 100).await.unwrap();
        a.link_blob(&r, &d, data.len() as u64).await.unwrap();
        let body: &'static str = Box::leak(format!("{{\"gc-race\":{i}}}").into_boxed_str());
        let man = NewManifest {
            blobs: vec![d.clone()],
            ..gc_manifest(&r, body, 100)
        };
        let tags = [tag("race")];
        // Either side polled first, alternately (one store in one process would otherwise
        // always let the first one win).
        let (gc, put) = if i % 2 == 0 {
            tokio::join!(
                a.gc_blob_remove(&d, 1000, blobs),
                b.put_manifest(man.clone(), &tags)
            )
        } else {
            let (put, gc) = tokio::join!(
                b.put_manifest(man.clone(), &tags),
                a.gc_blob_remove(&d, 1000, blobs)
            );
            (gc, put)
        };
        match (gc.unwrap(), put) {
            (None, Ok(())) => {
                stored += 1;
                assert!(blobs.stat(&d).await.unwrap().is_some(), "round {i}");
                assert!(b.blob_linked(&r, &d).await.unwrap().is_some(), "round {i}");
            }
            (Some(_), Err(Error::MissingReferences(missing))) => {
                refused += 1;
                assert_eq!(missing, vec![d.clone()], "round {i}");
                assert!(blobs.stat(&d).await.unwrap().is_none(), "round {i}");
            }
            (gc, put) => panic!("round {i}: collection {gc:?} and push {put:?}"),
        }
        // The same bytes published again (pin, bytes, link) while they are being collected.
        let data2: &'static [u8] = Box::leak(format!("gc race again {i}").into_bytes().into());
        let d2 = stored_blob(blobs, data2).await;
        a.blob_pin(&d2, data2.len() as u64, 100).await.unwrap();
        a.link_blob(&r, &d2, data2.len() as u64).await.unwrap();
        let republish = async {
            b.blob_pin(&d2, data2.len() as u64, 5000).await.unwrap();
            stored_blob(blobs, data2).await;
            b.link_blob(&r, &d2, data2.len() as u64).await.unwrap();
        };
        let gc = if i % 2 == 0 {
            tokio::join!(a.gc_blob_remove(&d2, 1000, blobs), republish).0
        } else {
            tokio::join!(republish, a.gc_blob_remove(&d2, 1000, blobs)).1
        };
        if gc.unwrap().is_some() {
            collected += 1;
        } else {
            kept += 1;
        }
        assert!(
            b.blob_linked(&r, &d2).await.unwrap().is_some(),
            "round {i}: the republished link"
        );
        assert!(
            blobs.stat(&d2).await.unwrap().is_some(),
            "round {i}: the republished blob's bytes were collected"
        );
        // The manifest goes too, so the blobs are no longer referenced.
        b.delete_manifest(&r, &man.digest).await.unwrap();
        for d in [&d, &d2] {
            match blobs.delete(d).await {
                Ok(()) | Err(Error::BlobUnknown) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
    // Not asserted (scheduling decides), but shown when the suite runs with --nocapture.
    println!(
        "gc race: {stored} pushes won, {refused} collections won; republish: {kept} kept, {collected} collected first"
    );
}

/// The blob rules alone (an empty store), for backends that hold only blobs.
pub async fn run_blobs(blobs: &dyn BlobStore) {
    blob_upload_roundtrip(blobs).await;
    blob_append_rules(blobs).await;
    blob_edge_rules(blobs).await;
    blob_listing_rules(blobs).await;
}

fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Every stored blob, in pages of `page`.
async fn all_blobs(b: &dyn BlobStore, page: usize) -> Vec<crate::StoredBlob> {
    let mut out: Vec<crate::StoredBlob> = Vec::new();
    loop {
        let next = b
            .list_blobs(out.last().map(|s| &s.digest), page)
            .await
            .unwrap();
        assert!(next.len() <= page, "a page holds at most its limit");
        if next.is_empty() {
            return out;
        }
        out.extend(next);
    }
}

/// What checks and garbage collection read: blobs in digest-text order with sizes and write
/// times, in pages; uploads with anything stored, gone once committed or aborted; no leftovers
/// in a store nobody interrupted, and removing a leftover never removes anything else.
async fn blob_listing_rules(b: &dyn BlobStore) {
    let before = all_blobs(b, 1000).await;
    let t0 = unix_now();
    let mut made = Vec::new();
    for i in 0..5u8 {
        let data: &'static [u8] = match i {
            0 => b"listing zero",
            1 => b"listing one!",
            2 => b"listing two, longer",
            3 => b"",
            _ => b"listing four",
        };
        let id = format!("listing-{i}");
        b.upload_start(&id).await.unwrap();
        assert!(
            b.list_uploads()
                .await
                .unwrap()
                .iter()
                .any(|(u, _)| *u == id),
            "an opened upload is listed before any byte is written"
        );
        let n = b
            .upload_write(&id, "p0", 0, None, stream_of(&[data]))
            .await
            .unwrap();
        let (listed_id, at) = b
            .list_uploads()
            .await
            .unwrap()
            .into_iter()
            .find(|(u, _)| *u == id)
            .expect("an upload with a part is listed");
        assert_eq!(listed_id, id);
        assert!(
            (t0 - 5..=unix_now() + 5).contains(&at),
            "upload write time {at} is now ({t0})"
        );
        let parts = [UploadPart {
            name: "p0".into(),
            offset: 0,
            size: n,
        }];
        let d = Digest::sha256_of(data);
        b.upload_commit(&id, &parts, &d).await.unwrap();
        assert!(
            !b.list_uploads()
                .await
                .unwrap()
                .iter()
                .any(|(u, _)| *u == id),
            "a committed upload is not listed"
        );
        made.push((d, data.len() as u64));
    }
    let all = all_blobs(b, 1000).await;
    let texts: Vec<String> = all.iter().map(|s| s.digest.to_string()).collect();
    let mut sorted = texts.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        texts, sorted,
        "blobs are listed once each, in digest-text order"
    );
    for (d, size) in &made {
        let s = all
            .iter()
            .find(|s| s.digest == *d)
            .unwrap_or_else(|| panic!("committed blob {d} is listed"));
        assert_eq!(s.size, *size, "listed size of {d}");
        assert!(
            (t0 - 5..=unix_now() + 5).contains(&s.modified),
            "write time {} of {d} is now ({t0})",
            s.modified
        );
    }
    assert_eq!(all.len(), before.len() + made.len());
    // Pages of two give the same listing; a page after the last blob is empty.
    assert_eq!(all_blobs(b, 2).await, all);
    assert_eq!(all_blobs(b, 1).await, all);
    let last = &all.last().unwrap().digest;
    assert!(b.list_blobs(Some(last), 10).await.unwrap().is_empty());
    assert!(b.list_blobs(None, 0).await.unwrap().is_empty());
    // `after` need not be stored: the listing goes on from where it would sort.
    let mut missing = made[1].0.to_string();
    missing.pop();
    missing.push('0');
    let missing: Digest = missing.parse().unwrap();
    let from_missing = b.list_blobs(Some(&missing), 1000).await.unwrap();
    let expect: Vec<_> = all
        .iter()
        .filter(|s| s.digest.to_string() > missing.to_string())
        .cloned()
        .collect();
    assert_eq!(
        from_missing, expect,
        "a listing after a digest that is not stored"
    );

    // An aborted upload is no longer listed.
    b.upload_start("listing-aborted").await.unwrap();
    b.upload_write("listing-aborted", "p0", 0, None, stream_of(&[b"x"]))
        .await
        .unwrap();
    assert!(
        b.list_uploads()
            .await
            .unwrap()
            .iter()
            .any(|(u, _)| u == "listing-aborted")
    );
    b.upload_abort("listing-aborted").await.unwrap();
    assert!(
        !b.list_uploads()
            .await
            .unwrap()
            .iter()
            .any(|(u, _)| u == "listing-aborted")
    );
    let ids: Vec<String> = b
        .list_uploads()
        .await
        .unwrap()
        .into_iter()
        .map(|(u, _)| u)
        .collect();
    let mut sorted_ids = ids.clone();
    sorted_ids.sort();
    assert_eq!(ids, sorted_ids, "uploads are listed in id order");

    // Nothing was interrupted, so nothing is left over; a name that is not a leftover (a blob's
    // digest, a path out, nothing) is refused and removes nothing.
    assert_eq!(b.list_temp().await.unwrap(), vec![]);
    let d0 = made[0].0.clone();
    for name in [
        d0.to_string(),
        format!("blobs/sha256/{}/{}", &d0.hex()[..2], d0.hex()),
        "../outside".to_owned(),
        "uploads".to_owned(),
        "blobs".to_owned(),
        String::new(),
    ] {
        assert!(
            b.remove_temp(&name).await.is_err(),
            "{name:?} is no leftover"
        );
    }
    assert_eq!(
        all_blobs(b, 1000).await,
        all,
        "refused removals removed nothing"
    );

    for (d, _) in &made {
        b.delete(d).await.unwrap();
    }
    assert_eq!(
        all_blobs(b, 1000).await,
        before,
        "deleted blobs are not listed"
    );
}

/// The metadata rules alone (an empty store), for backends that hold only metadata.
pub async fn run_metadata(meta: &dyn MetadataStore) {
    metadata_manifests_and_tags(meta).await;
    metadata_uploads(meta).await;
    metadata_edge_rules(meta).await;
    metadata_repository_admin_rules(meta).await;
    metadata_export_rules(meta).await;
    metadata_stats_rules(meta).await;
}

/// `stats` counts what was added and removed (as differences: the store may hold more).
async fn metadata_stats_rules(m: &dyn MetadataStore) {
    let before = m.stats().await.unwrap();
    let r = repo("stats-rules/app");
    let layer = Digest::sha256_of(b"stats layer");
    m.blob_pin(&layer, 11, 100).await.unwrap();
    m.link_blob(&r, &layer, 11).await.unwrap();
    let man = NewManifest {
        blobs: vec![layer.clone()],
        ..gc_manifest(&r, "{\"stats\":1}", 100)
    };
    m.put_manifest(man.clone(), &[tag("a"), tag("b")])
        .await
        .unwrap();
    let other = repo("stats-rules/other");
    m.link_blob(&other, &layer, 11).await.unwrap();
    m.put_manifest(
        NewManifest {
            repo: other.clone(),
            ..man.clone()
        },
        &[tag("a")],
    )
    .await
    .unwrap();
    m.upload_create(&race_record("stats-upload")).await.unwrap();
    let after = m.stats().await.unwrap();
    assert_eq!(
        after.repositories,
        before.repositories + 2,
        "{before:?} {after:?}"
    );
    assert_eq!(after.manifests, before.manifests + 2, "one per repository");
    assert_eq!(after.tags, before.tags + 3);
    assert_eq!(
        after.blobs,
        before.blobs + 1,
        "a blob linked twice counts once"
    );
    assert_eq!(after.blob_bytes, before.blob_bytes + 11);
    assert_eq!(after.uploads, before.uploads + 1);
    m.delete_tag(&r, &tag("b")).await.unwrap();
    m.upload_delete("stats-upload").await.unwrap();
    let less = m.stats().await.unwrap();
    assert_eq!(less.tags, after.tags - 1);
    assert_eq!(less.uploads, before.uploads);
}

/// What copying a registry reads: every blob link and every manifest (tagged or not) of a
/// repository, in digest order; nothing for an unknown repository.
async fn metadata_export_rules(m: &dyn MetadataStore) {
    let r = repo("export-rules/app");
    assert!(m.blob_links(&r).await.unwrap().is_empty());
    assert!(m.manifest_digests(&r).await.unwrap().is_empty());
    let mut blobs: Vec<(Digest, u64)> = (0u64..5)
        .map(|i| {
            (
                Digest::sha256_of(format!("export blob {i}").as_bytes()),
                10 + i,
            )
        })
        .collect();
    for (d, s) in &blobs {
        m.link_blob(&r, d, *s).await.unwrap();
    }
    // A link in another repository is not this one's.
    m.link_blob(
        &repo("export-rules/other"),
        &Digest::sha256_of(b"elsewhere"),
        1,
    )
    .await
    .unwrap();
    blobs.sort_by_key(|(d, _)| d.to_string());
    assert_eq!(m.blob_links(&r).await.unwrap(), blobs);
    let mut manifests = Vec::new();
    for i in 0..3 {
        let body = Bytes::from(format!("{{\"export\":{i}}}"));
        let digest = Digest::sha256_of(&body);
        m.put_manifest(
            NewManifest {
                repo: r.clone(),
                digest: digest.clone(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                body,
                subject: None,
                artifact_type: None,
                annotations: None,
                blobs: vec![blobs[0].0.clone()],
                children: vec![],
                pushed: now_secs(),
            },
            // Only the first is tagged: untagged manifests are listed too.
            &if i == 0 { vec![tag("v1")] } else { vec![] },
        )
        .await
        .unwrap();
        manifests.push(digest);
    }
    manifests.sort_by_key(|d| d.to_string());
    assert_eq!(m.manifest_digests(&r).await.unwrap(), manifests);
    m.unlink_blob(&r, &blobs[4].0).await.unwrap();
    assert_eq!(m.blob_links(&r).await.unwrap().len(), 4);
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Tag details (with push times) and deleting a whole repository.
async fn metadata_repository_admin_rules(m: &dyn MetadataStore) {
    let r = repo("admin-rules/app");
    assert!(m.tag_details(&r, None, 10).await.unwrap().is_none());
    assert!(m.delete_repo(&r).await.unwrap().is_none());
    let layer = Digest::sha256_of(b"admin layer");
    m.link_blob(&r, &layer, 11).await.unwrap();
    let body = Bytes::from_static(b"{\"admin\":1}");
    let md = Digest::sha256_of(&body);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    m.put_manifest(
        NewManifest {
            repo: r.clone(),
            digest: md.clone(),
            media_type: berth_oci::media::OCI_MANIFEST.into(),
            body: body.clone(),
            subject: None,
            artifact_type: None,
            annotations: None,
            blobs: vec![layer.clone()],
            children: vec![],
            pushed: now_secs(),
        },
        &[tag("v2"), tag("v1")],
    )
    .await
    .unwrap();
    let all = m.tag_details(&r, None, 10).await.unwrap().unwrap();
    assert_eq!(
        all.iter().map(|t| t.tag.as_str()).collect::<Vec<_>>(),
        ["v1", "v2"]
    );
    for t in &all {
        assert_eq!(
            (&t.digest, t.media_type.as_str(), &t.body),
            (&md, berth_oci::media::OCI_MANIFEST, &body)
        );
        let pushed = u64::try_from(t.pushed.expect("push time recorded")).unwrap();
        assert!(
            pushed >= before && pushed <= before + 60,
            "push time {pushed}"
        );
    }
    let after_v1 = m.tag_details(&r, Some("v1"), 10).await.unwrap().unwrap();
    assert_eq!(
        after_v1.iter().map(|t| t.tag.as_str()).collect::<Vec<_>>(),
        ["v2"]
    );
    assert_eq!(m.tag_details(&r, None, 1).await.unwrap().unwrap().len(), 1);

    assert_eq!(
        m.delete_repo(&r).await.unwrap(),
        Some(crate::RepoDeleted {
            manifests: 1,
            tags: 2
        })
    );
    assert!(!m.repo_exists(&r).await.unwrap());
    assert_eq!(m.blob_linked(&r, &layer).await.unwrap(), None);
    assert!(
        m.get_manifest(&r, &TagOrDigest::Digest(md.clone()))
            .await
            .unwrap()
            .is_none()
    );
    assert!(m.delete_repo(&r).await.unwrap().is_none());
    // The name can be used again, from nothing.
    m.link_blob(&r, &layer, 11).await.unwrap();
    assert_eq!(
        m.list_tags(&r, None, 10).await.unwrap().unwrap().items,
        Vec::<String>::new()
    );
    assert_eq!(
        m.delete_repo(&r).await.unwrap(),
        Some(crate::RepoDeleted::default())
    );
}

async fn blob_upload_roundtrip(b: &dyn BlobStore) {
    b.upload_start("u1").await.unwrap();
    assert!(b.upload_exists("u1").await.unwrap());
    let n = b
        .upload_write("u1", "p1", 0, None, stream_of(&[b"hello ", b"world"]))
        .await
        .unwrap();
    assert_eq!(n, 11);
    let parts = [part("p1", 0, 11)];
    assert_eq!(
        collect(b.upload_read("u1", &parts).await.unwrap()).await,
        b"hello world"
    );
    let d = Digest::sha256_of(b"hello world");
    assert_eq!(
        b.stat(&d).await.unwrap(),
        None,
        "blob must not be visible before commit"
    );
    assert_eq!(b.upload_commit("u1", &parts, &d).await.unwrap(), 11);
    assert_eq!(b.stat(&d).await.unwrap(), Some(11));
    assert!(
        !b.upload_exists("u1").await.unwrap(),
        "commit removes the upload"
    );
    assert_eq!(collect(b.read(&d, 6, 5).await.unwrap()).await, b"world");
    // Committing identical content again dedupes.
    b.upload_start("u2").await.unwrap();
    b.upload_write("u2", "q1", 0, Some(11), stream_of(&[b"hello world"]))
        .await
        .unwrap();
    assert_eq!(
        b.upload_commit("u2", &[part("q1", 0, 11)], &d)
            .await
            .unwrap(),
        11
    );
    assert!(!b.upload_exists("u2").await.unwrap());
    b.delete(&d).await.unwrap();
    assert_eq!(b.stat(&d).await.unwrap(), None);
    assert!(matches!(b.read(&d, 0, 1).await, Err(Error::BlobUnknown)));
}

/// Whether reading `parts` fails, at the call or in the stream.
async fn read_fails(b: &dyn BlobStore, id: &str, parts: &[UploadPart]) -> bool {
    match b.upload_read(id, parts).await {
        Err(_) => true,
        Ok(mut s) => {
            while let Some(c) = s.next().await {
                if c.is_err() {
                    return true;
                }
            }
            false
        }
    }
}

async fn blob_append_rules(b: &dyn BlobStore) {
    b.upload_start("a1").await.unwrap();
    assert_eq!(
        b.upload_write("a1", "x1", 0, None, stream_of(&[b"0123"]))
            .await
            .unwrap(),
        4
    );
    // A second write at the same offset goes under its own name: the first part's bytes stay.
    assert_eq!(
        b.upload_write("a1", "x2", 0, None, stream_of(&[b"xxxx"]))
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        collect(b.upload_read("a1", &[part("x1", 0, 4)]).await.unwrap()).await,
        b"0123"
    );
    assert_eq!(
        collect(b.upload_read("a1", &[part("x2", 0, 4)]).await.unwrap()).await,
        b"xxxx"
    );
    // A short chunk lands not at all.
    let e = b
        .upload_write("a1", "x3", 4, Some(3), stream_of(&[b"56"]))
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
    assert!(
        read_fails(b, "a1", &[part("x1", 0, 4), part("x3", 4, 2)]).await,
        "short chunk left nothing"
    );
    let e = b
        .upload_write("a1", "x4", 4, None, failing_stream())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Body(_)), "broken body: {e}");
    assert!(
        read_fails(b, "a1", &[part("x1", 0, 4), part("x4", 4, 7)]).await,
        "broken body left nothing"
    );
    assert_eq!(
        b.upload_write("a1", "x5", 4, Some(2), stream_of(&[b"45"]))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        collect(
            b.upload_read("a1", &[part("x1", 0, 4), part("x5", 4, 2)])
                .await
                .unwrap()
        )
        .await,
        b"012345"
    );
    // A part list that disagrees with what is stored, or with itself, is refused, and the
    // upload stays as it was.
    assert!(read_fails(b, "a1", &[part("x1", 0, 4), part("x5", 4, 3)]).await);
    let d = Digest::sha256_of(b"012345");
    for bad in [
        vec![part("x1", 0, 4), part("x5", 4, 3)],
        vec![part("x1", 0, 4), part("x5", 5, 2)],
        vec![part("x5", 4, 2)],
        vec![part("nope", 0, 6)],
    ] {
        assert!(
            b.upload_commit("a1", &bad, &d).await.is_err(),
            "commit of {bad:?} refused"
        );
        assert_eq!(b.stat(&d).await.unwrap(), None, "nothing published");
        assert!(b.upload_exists("a1").await.unwrap());
    }
    b.upload_abort("a1").await.unwrap();
    assert!(!b.upload_exists("a1").await.unwrap());
    assert!(matches!(
        b.upload_write("a1", "x6", 0, None, stream_of(&[b"x"]))
            .await,
        Err(Error::UploadUnknown)
    ));
    assert!(matches!(
        b.upload_write("../x", "x7", 0, None, stream_of(&[b"x"]))
            .await,
        Err(Error::UploadUnknown)
    ));
    b.upload_start("a2").await.unwrap();
    for bad in ["", "../x", "a/b", ".session", &"x".repeat(65)] {
        assert!(
            b.upload_write("a2", bad, 0, None, stream_of(&[b"x"]))
                .await
                .is_err(),
            "part name {bad:?} refused"
        );
    }
    b.upload_abort("a2").await.unwrap();
}

/// Unknown names, ranges and ids: every backend refuses them with the same error.
async fn blob_edge_rules(b: &dyn BlobStore) {
    let bytes: &'static [u8] = b"0123456789";
    let d = Digest::sha256_of(bytes);
    assert!(matches!(b.delete(&d).await, Err(Error::BlobUnknown)));
    assert!(matches!(
        b.upload_commit("nope", &[], &d).await,
        Err(Error::UploadUnknown)
    ));
    assert!(matches!(
        b.upload_abort("nope").await,
        Err(Error::UploadUnknown)
    ));
    assert!(matches!(
        b.upload_read("nope", &[]).await,
        Err(Error::UploadUnknown)
    ));
    assert!(!b.upload_exists("nope").await.unwrap());
    for bad in ["", "../x", "a/b", &"x".repeat(65)] {
        assert!(
            matches!(b.upload_start(bad).await, Err(Error::UploadUnknown)),
            "id {bad:?} refused"
        );
        assert!(matches!(
            b.upload_exists(bad).await,
            Err(Error::UploadUnknown)
        ));
    }
    b.upload_start("e1").await.unwrap();
    assert!(
        b.upload_start("e1").await.is_err(),
        "an upload id is opened once"
    );
    // Empty chunks are allowed, and the bytes come back exactly across parts.
    assert_eq!(
        b.upload_write("e1", "empty", 0, Some(0), stream_of(&[]))
            .await
            .unwrap(),
        0
    );
    b.upload_write("e1", "a", 0, None, stream_of(&[b"0123", b"", b"45"]))
        .await
        .unwrap();
    // A body longer than announced is refused, counted up to the chunk that overran.
    let e = b
        .upload_write("e1", "b", 6, Some(2), stream_of(&[b"6", b"789"]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::SizeMismatch {
                expected: 2,
                received: 4
            }
        ),
        "long chunk: {e}"
    );
    assert_eq!(
        b.upload_write("e1", "c", 6, Some(4), stream_of(&[b"6", b"789"]))
            .await
            .unwrap(),
        4
    );
    // A stray written later at the same offset changes nothing recorded.
    b.upload_write("e1", "stray", 6, None, stream_of(&[b"xxxx"]))
        .await
        .unwrap();
    let parts = [part("empty", 0, 0), part("a", 0, 6), part("c", 6, 4)];
    assert_eq!(
        collect(b.upload_read("e1", &parts).await.unwrap()).await,
        bytes
    );
    assert_eq!(b.upload_commit("e1", &parts, &d).await.unwrap(), 10);
    assert!(!b.upload_exists("e1").await.unwrap());
    assert_eq!(collect(b.read(&d, 0, 10).await.unwrap()).await, bytes);
    assert_eq!(collect(b.read(&d, 9, 1).await.unwrap()).await, b"9");
    assert!(collect(b.read(&d, 3, 0).await.unwrap()).await.is_empty());
    // A range past the end delivers what exists, then fails: never silently short.
    for (offset, len, want) in [(8u64, 5u64, &b"89"[..]), (10, 1, b""), (12, 3, b"")] {
        let mut got = Vec::new();
        let mut failed = false;
        match b.read(&d, offset, len).await {
            Err(_) => failed = true,
            Ok(mut s) => {
                while let Some(c) = s.next().await {
                    match c {
                        Ok(c) => got.extend_from_slice(&c),
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
            }
        }
        assert_eq!(
            (got.as_slice(), failed),
            (want, true),
            "read {len} from {offset} of 10 bytes"
        );
    }
    b.delete(&d).await.unwrap();
    // An upload of no parts is the empty blob.
    let empty = Digest::sha256_of(b"");
    b.upload_start("e2").await.unwrap();
    b.upload_write("e2", "unrecorded", 0, None, stream_of(&[b"x"]))
        .await
        .unwrap();
    assert_eq!(b.upload_commit("e2", &[], &empty).await.unwrap(), 0);
    assert_eq!(b.stat(&empty).await.unwrap(), Some(0));
    assert!(
        collect(b.read(&empty, 0, 0).await.unwrap())
            .await
            .is_empty()
    );
    b.delete(&empty).await.unwrap();
}

/// Two writers (one blob store and one metadata store each, as two nodes have; or the same
/// stores twice) on one upload. The upload record's part list decides what the blob is: a
/// chunk written at an acknowledged offset after another writer's compare-and-set (a client's
/// retry through another node while the first request was stalled) changes nothing, and the
/// committed blob is exactly the acknowledged bytes.
pub async fn run_upload_race(
    a: (&dyn BlobStore, &dyn MetadataStore),
    b: (&dyn BlobStore, &dyn MetadataStore),
) {
    late_loser_after_the_winners_cas(a, b).await;
    concurrent_writers_at_one_offset(a, b).await;
}

fn race_record(id: &str) -> UploadRecord {
    UploadRecord {
        id: id.into(),
        repo: repo("race/blobs"),
        algorithm: Algorithm::Sha256,
        created: 1,
        owner: "race".into(),
        offset: Some(0),
        hash_state: None,
        parts: Some(Vec::new()),
    }
}

/// Writes `data` as a fresh part at `offset` and asks the record to take it.
async fn write_and_advance(
    (blobs, meta): (&dyn BlobStore, &dyn MetadataStore),
    id: &str,
    name: &str,
    offset: u64,
    data: Vec<u8>,
) -> bool {
    let len = data.len() as u64;
    let body: ByteStream = Box::pin(futures::stream::iter(vec![Ok(Bytes::from(data))]));
    let n = blobs
        .upload_write(id, name, offset, Some(len), body)
        .await
        .unwrap();
    assert_eq!(n, len);
    meta.upload_advance(id, &part(name, offset, n), None)
        .await
        .unwrap()
}

/// Commits what the record lists through `via` and checks the blob read back through `other`.
async fn commit_and_check(
    via: (&dyn BlobStore, &dyn MetadataStore),
    other: (&dyn BlobStore, &dyn MetadataStore),
    id: &str,
    want: &[u8],
) {
    let rec = other.1.upload_get(id).await.unwrap().unwrap();
    let parts = rec.parts.unwrap();
    assert_eq!(rec.offset, Some(want.len() as u64));
    assert_eq!(
        collect(other.0.upload_read(id, &parts).await.unwrap()).await,
        want,
        "{id}: the recorded parts hold the acknowledged bytes"
    );
    let d = Digest::sha256_of(want);
    assert_eq!(
        via.0.upload_commit(id, &parts, &d).await.unwrap(),
        want.len() as u64
    );
    via.1.upload_delete(id).await.unwrap();
    assert!(
        !other.0.upload_exists(id).await.unwrap(),
        "{id}: commit removes every part, strays too"
    );
    let got = collect(
        other
            .0
            .read(&d, 0, other.0.stat(&d).await.unwrap().unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        Digest::sha256_of(&got),
        d,
        "{id}: the committed blob has the acknowledged bytes"
    );
    via.0.delete(&d).await.unwrap();
}

async fn late_loser_after_the_winners_cas(
    a: (&dyn BlobStore, &dyn MetadataStore),
    b: (&dyn BlobStore, &dyn MetadataStore),
) {
    let id = "race-late";
    a.1.upload_create(&race_record(id)).await.unwrap();
    a.0.upload_start(id).await.unwrap();
    let first = vec![b'A'; 4096];
    let late = vec![b'L'; 4096];
    let second = vec![b'B'; 1000];
    assert!(write_and_advance(a, id, "w1", 0, first.clone()).await);
    // The stalled request lands now, at the offset already acknowledged, through the other node.
    assert!(
        !write_and_advance(b, id, "l1", 0, late.clone()).await,
        "the late chunk is not acknowledged"
    );
    // The client goes on through the other node, and yet another late copy of the first chunk
    // arrives through the first.
    assert!(write_and_advance(b, id, "w2", 4096, second.clone()).await);
    assert!(!write_and_advance(a, id, "l2", 0, late.clone()).await);
    assert!(!write_and_advance(a, id, "l3", 4096, late).await);
    let mut want = first;
    want.extend_from_slice(&second);
    commit_and_check(a, b, id, &want).await;
}

async fn concurrent_writers_at_one_offset(
    a: (&dyn BlobStore, &dyn MetadataStore),
    b: (&dyn BlobStore, &dyn MetadataStore),
) {
    for i in 0..6u8 {
        let id = format!("race-conc-{i}");
        a.1.upload_create(&race_record(&id)).await.unwrap();
        b.0.upload_start(&id).await.unwrap();
        // Same length, different bytes: only the part list can tell them apart.
        let (da, db) = (vec![i; 64 << 10], vec![i.wrapping_add(100); 64 << 10]);
        let (wa, wb) = tokio::join!(
            write_and_advance(a, &id, "ca", 0, da.clone()),
            write_and_advance(b, &id, "cb", 0, db.clone()),
        );
        assert!(wa ^ wb, "round {i}: exactly one chunk is acknowledged");
        let want = if wa { da } else { db };
        let (via, other) = if i % 2 == 0 { (a, b) } else { (b, a) };
        commit_and_check(via, other, &id, &want).await;
    }
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
        pushed: now_secs(),
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
        pushed: now_secs(),
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

fn part(name: &str, offset: u64, size: u64) -> UploadPart {
    UploadPart {
        name: name.into(),
        offset,
        size,
    }
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
        parts: Some(Vec::new()),
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
    assert_eq!(
        (got.offset, got.hash_state, got.parts),
        (Some(0), Some(vec![1, 2, 3]), Some(vec![]))
    );
    // Compare-and-set of the acknowledged end, recording the part with it: only from where it
    // is.
    assert!(
        m.upload_advance("up-1", &part("p1", 0, 10), Some(vec![4]))
            .await
            .unwrap()
    );
    assert!(
        !m.upload_advance("up-1", &part("p2", 0, 20), Some(vec![5]))
            .await
            .unwrap()
    );
    let got = m.upload_get("up-1").await.unwrap().unwrap();
    assert_eq!(
        (got.offset, got.hash_state, got.parts),
        (Some(10), Some(vec![4]), Some(vec![part("p1", 0, 10)]))
    );
    assert!(
        m.upload_advance("up-1", &part("p3", 10, 2), None)
            .await
            .unwrap()
    );
    // An empty part is recorded like any other.
    assert!(
        m.upload_advance("up-1", &part("p4", 12, 0), None)
            .await
            .unwrap()
    );
    let got = m.upload_get("up-1").await.unwrap().unwrap();
    assert_eq!(
        (got.offset, got.hash_state, got.parts),
        (
            Some(12),
            None,
            Some(vec![
                part("p1", 0, 10),
                part("p3", 10, 2),
                part("p4", 12, 0)
            ])
        )
    );
    assert!(
        !m.upload_advance("no-such", &part("p1", 0, 1), None)
            .await
            .unwrap()
    );
    // The other session is untouched.
    let other = m.upload_get("up-2").await.unwrap().unwrap();
    assert_eq!((other.offset, other.parts), (Some(0), Some(vec![])));
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

/// Manifests, listings and records: upserts, ordering, and what a refusal leaves.
async fn metadata_edge_rules(m: &dyn MetadataStore) {
    let r = repo("edge/app");
    let missing_child = Digest::sha256_of(b"child");
    let body = Bytes::from_static(b"{\"index\":1}");
    let index = NewManifest {
        repo: r.clone(),
        digest: Digest::sha256_of(&body),
        media_type: berth_oci::media::OCI_INDEX.into(),
        body,
        subject: None,
        artifact_type: None,
        annotations: None,
        blobs: vec![],
        children: vec![missing_child.clone()],
        pushed: now_secs(),
    };
    match m.put_manifest(index.clone(), &[tag("i")]).await {
        Err(Error::MissingReferences(v)) => assert_eq!(v, vec![missing_child.clone()]),
        other => panic!("missing child must be refused, got {other:?}"),
    }
    assert!(!m.repo_exists(&r).await.unwrap());
    assert!(!m.delete_manifest(&r, &missing_child).await.unwrap());
    assert!(!m.delete_tag(&r, &tag("i")).await.unwrap());
    assert!(!m.unlink_blob(&r, &missing_child).await.unwrap());
    assert!(m.referrers(&r, &missing_child).await.unwrap().is_empty());
    assert!(
        m.get_manifest(&r, &TagOrDigest::Tag(tag("i")))
            .await
            .unwrap()
            .is_none()
    );

    // A link keeps the size it was made with.
    let layer = Digest::sha256_of(b"edge layer");
    m.link_blob(&r, &layer, 10).await.unwrap();
    m.link_blob(&r, &layer, 99).await.unwrap();
    assert_eq!(m.blob_linked(&r, &layer).await.unwrap(), Some(10));

    // The same manifest again: its tags move, its media type may be restated.
    let body = Bytes::from_static(b"{\"m\":2}");
    let md = Digest::sha256_of(&body);
    let man = NewManifest {
        repo: r.clone(),
        digest: md.clone(),
        media_type: berth_oci::media::OCI_MANIFEST.into(),
        body: body.clone(),
        subject: None,
        artifact_type: None,
        annotations: None,
        blobs: vec![layer.clone()],
        children: vec![],
        pushed: now_secs(),
    };
    m.put_manifest(man.clone(), &[tag("a")]).await.unwrap();
    m.put_manifest(
        NewManifest {
            media_type: berth_oci::media::DOCKER_MANIFEST.into(),
            ..man.clone()
        },
        &[tag("b")],
    )
    .await
    .unwrap();
    let got = m
        .get_manifest(&r, &TagOrDigest::Tag(tag("a")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.media_type.as_str(), got.body),
        (berth_oci::media::DOCKER_MANIFEST, body)
    );
    let all = m.list_tags(&r, None, 10).await.unwrap().unwrap();
    assert_eq!((all.items, all.more), (vec!["a".into(), "b".into()], false));
    let none = m.list_tags(&r, Some("b"), 10).await.unwrap().unwrap();
    assert_eq!((none.items, none.more), (vec![], false));
    let zero = m.list_tags(&r, None, 0).await.unwrap().unwrap();
    assert_eq!((zero.items, zero.more), (vec![], true));
    // An index whose child is present is accepted.
    m.put_manifest(
        NewManifest {
            children: vec![md.clone()],
            pushed: now_secs(),
            ..index
        },
        &[tag("i")],
    )
    .await
    .unwrap();

    // Referrers come sorted by digest, with their size; other subjects stay out.
    let mut refs = Vec::new();
    for body in [&b"{\"r\":1}"[..], b"{\"r\":2}", b"{\"r\":3}"] {
        let d = Digest::sha256_of(body);
        m.put_manifest(
            NewManifest {
                repo: r.clone(),
                digest: d.clone(),
                media_type: berth_oci::media::OCI_MANIFEST.into(),
                body: Bytes::copy_from_slice(body),
                subject: Some(md.clone()),
                artifact_type: None,
                annotations: None,
                blobs: vec![],
                children: vec![],
                pushed: now_secs(),
            },
            &[],
        )
        .await
        .unwrap();
        refs.push(d);
    }
    refs.sort_by_key(|d| d.to_string());
    let got = m.referrers(&r, &md).await.unwrap();
    assert_eq!(
        got.iter().map(|x| x.digest.clone()).collect::<Vec<_>>(),
        refs
    );
    assert!(got.iter().all(|x| x.size == 7 && x.artifact_type.is_none()));
    assert!(m.referrers(&r, &layer).await.unwrap().is_empty());

    // Deleting a manifest takes every tag naming it, and only those.
    assert!(m.delete_manifest(&r, &md).await.unwrap());
    let left = m.list_tags(&r, None, 10).await.unwrap().unwrap();
    assert_eq!(left.items, vec!["i".to_string()]);
    assert!(!m.delete_manifest(&r, &md).await.unwrap());
    assert!(m.repo_exists(&r).await.unwrap(), "a repository stays");

    // Repository listing pages lexically (byte order).
    for name in ["edge/z", "edge/b", "edge/a-b"] {
        m.link_blob(&repo(name), &layer, 10).await.unwrap();
    }
    let p1 = m.list_repos(Some("edge/"), 2).await.unwrap();
    assert_eq!(
        (p1.items.clone(), p1.more),
        (vec!["edge/a-b".into(), "edge/app".into()], true)
    );
    let p2 = m.list_repos(Some("edge/app"), 2).await.unwrap();
    assert_eq!(
        (p2.items, p2.more),
        (vec!["edge/b".into(), "edge/z".into()], true),
        "team/app follows"
    );

    // An upload id is recorded once.
    let u = UploadRecord {
        id: "edge-up".into(),
        repo: r.clone(),
        algorithm: Algorithm::Sha256,
        created: 5,
        owner: String::new(),
        offset: None,
        hash_state: None,
        parts: None,
    };
    m.upload_create(&u).await.unwrap();
    assert!(m.upload_create(&u).await.is_err(), "duplicate upload id");
    // A record from before part lists were kept takes no parts: its bytes are not described
    // by parts, so no part could be assembled with them.
    assert!(
        !m.upload_advance("edge-up", &part("p1", 0, 5), None)
            .await
            .unwrap()
    );
    let got = m.upload_get("edge-up").await.unwrap().unwrap();
    assert_eq!((got.offset, got.parts), (None, None));
    assert_eq!(m.uploads_owned_by("").await.unwrap(), 1);
    m.upload_delete("edge-up").await.unwrap();
    m.upload_delete("edge-up").await.unwrap();
    assert!(m.uploads_created_before(i64::MAX).await.unwrap().is_empty());
}

fn tuf(role: &str, version: i64, data: &'static [u8]) -> crate::NewTufFile {
    crate::NewTufFile {
        role: role.into(),
        version,
        sha256: format!("{:064x}", version),
        data: Bytes::from_static(data),
    }
}

/// A TUF update's audit record is written with the files, exactly as given, and not at all when
/// the update is refused.
async fn trust_update_audit_rules<S: crate::TrustStore + crate::IdentityStore>(s: &S) {
    let gun = "localhost:5000/audited/app";
    let start = s
        .audit_list(0, usize::MAX)
        .await
        .unwrap()
        .last()
        .map_or(0, |e| e.id);
    let rec = |detail: &str| crate::AuditRecord {
        id: 0,
        at: 1_700_000_000_123,
        actor: "alice".into(),
        action: "trust.updated".into(),
        target: gun.into(),
        client: "192.0.2.7".into(),
        detail: detail.into(),
    };
    let first = rec("targets -->v1 [+v1@sha256:0123456789ab]");
    s.tuf_update(
        gun,
        vec![tuf("root", 1, b"ar1"), tuf("targets", 1, b"at1")],
        Some(&first),
    )
    .await
    .unwrap();
    let log = s.audit_list(start, usize::MAX).await.unwrap();
    assert_eq!(log.len(), 1, "one record per audited update: {log:?}");
    assert!(log[0].id > start);
    assert_eq!(
        crate::AuditRecord {
            id: 0,
            ..log[0].clone()
        },
        first,
        "the record is stored as given"
    );

    // A version check that fails writes neither the files nor the record.
    let e = s
        .tuf_update(
            gun,
            vec![tuf("snapshot", 1, b"as1"), tuf("targets", 1, b"at1b")],
            Some(&rec("refused")),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TufVersion { .. }), "{e}");
    assert_eq!(s.audit_list(start, usize::MAX).await.unwrap().len(), 1);
    assert!(s.tuf_current(gun, "snapshot").await.unwrap().is_none());

    // Without a record nothing is audited; ids keep growing across both ways of appending.
    s.tuf_update(gun, vec![tuf("targets", 2, b"at2")], None)
        .await
        .unwrap();
    assert_eq!(s.audit_list(start, usize::MAX).await.unwrap().len(), 1);
    let direct = s.audit_append(&rec("direct")).await.unwrap();
    s.tuf_update(gun, vec![tuf("targets", 3, b"at3")], Some(&rec("second")))
        .await
        .unwrap();
    let log = s.audit_list(start, usize::MAX).await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(),
        [first.detail.as_str(), "direct", "second"]
    );
    assert!(log[1].id == direct && log[2].id > direct);
}

/// Trust-data rules: append-only versions, atomic multi-role updates, changefeed, keys.
/// The store holds the audit log too (every backend keeps both in one database), so a TUF
/// update can commit its audit record with it.
pub async fn run_trust<S: crate::TrustStore + crate::IdentityStore>(store: &S) {
    let t: &dyn crate::TrustStore = store;
    let gun = "localhost:5000/team/app";
    assert!(t.tuf_current(gun, "root").await.unwrap().is_none());
    t.tuf_update(
        gun,
        vec![
            tuf("root", 1, b"r1"),
            tuf("targets", 1, b"t1"),
            tuf("timestamp", 1, b"ts1"),
        ],
        None,
    )
    .await
    .unwrap();
    t.tuf_update(
        gun,
        vec![tuf("targets", 2, b"t2"), tuf("timestamp", 2, b"ts2")],
        None,
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
            None,
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
    t.tuf_update("other/gun", vec![tuf("timestamp", 1, b"o1")], None)
        .await
        .unwrap();
    let feed = t.changefeed(Some(gun), 0, 100).await.unwrap();
    assert_eq!(
        feed.iter().map(|c| c.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(
        feed.iter()
            .all(|c| c.category == ChangeCategory::Update && c.gun == gun)
    );
    let global = t.changefeed(None, 0, 100).await.unwrap();
    assert_eq!(global.len(), 3);
    let last_two = t.changefeed(None, 0, -2).await.unwrap();
    assert_eq!(
        last_two.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![global[1].id, global[2].id]
    );
    let after_first = t.changefeed(None, global[0].id, 1).await.unwrap();
    assert_eq!(after_first[0].id, global[1].id);

    // Server keys.
    let key = crate::ServerKeyRecord {
        key_id: "k1".into(),
        role: ServerKeyRole::Timestamp,
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
    let keys = t.server_keys(gun, ServerKeyRole::Timestamp).await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
        vec!["k1", "k2"]
    );
    assert!(
        t.server_keys(gun, ServerKeyRole::Snapshot)
            .await
            .unwrap()
            .is_empty()
    );
    // A first key goes in only when the role holds none; the held one wins otherwise.
    let s1 = crate::ServerKeyRecord {
        key_id: "s1".into(),
        role: ServerKeyRole::Snapshot,
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
    assert_eq!(
        t.server_keys(gun, ServerKeyRole::Snapshot)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        t.server_key_insert_first(gun, &key).await.unwrap().key_id,
        "k2",
        "the newest held key of the role"
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
        t.server_keys(gun, ServerKeyRole::Timestamp)
            .await
            .unwrap()
            .is_empty(),
        "keys go with the GUN"
    );
    let del = t.changefeed(Some(gun), 0, -1).await.unwrap();
    assert_eq!(
        (del[0].category, del[0].version, del[0].sha256.as_str()),
        (ChangeCategory::Deletion, 0, "")
    );
    assert_eq!(t.tuf_delete_all().await.unwrap(), 1);
    assert!(t.tuf_guns().await.unwrap().is_empty());
    let del = t.changefeed(Some("other/gun"), 0, -1).await.unwrap();
    assert_eq!(
        del[0].category,
        ChangeCategory::Deletion,
        "deleting everything is in the changefeed too"
    );
    trust_edge_rules(t).await;
    trust_export_rules(t).await;
    trust_update_audit_rules(store).await;
    trust_kinds_read_back(t).await;
}

/// Every server key role and changefeed category comes back as the enum it was stored as.
async fn trust_kinds_read_back(t: &dyn crate::TrustStore) {
    let gun = "kinds/gun";
    for (i, role) in ServerKeyRole::ALL.iter().enumerate() {
        let key = crate::ServerKeyRecord {
            key_id: format!("kinds-{role}"),
            role: *role,
            algorithm: "ed25519".into(),
            public: Bytes::from_static(b"{}"),
            sealed_private: Bytes::from_static(b"sealed"),
            created: i64::try_from(i).unwrap(),
        };
        t.server_key_insert(gun, &key).await.unwrap();
        assert_eq!(t.server_keys(gun, *role).await.unwrap(), vec![key]);
    }
    t.tuf_update(gun, vec![tuf("timestamp", 1, b"kts1")], None)
        .await
        .unwrap();
    assert!(t.tuf_delete(gun).await.unwrap());
    let feed = t.changefeed(Some(gun), 0, 10).await.unwrap();
    assert_eq!(
        feed.iter().map(|c| c.category).collect::<Vec<_>>(),
        [ChangeCategory::Update, ChangeCategory::Deletion]
    );
}

/// Settings: insert-if-absent keeps the first value, set overwrites, listings by name.
pub async fn run_settings(t: &dyn crate::SettingsStore) {
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
    t.setting_set("edge", "1").await.unwrap();
    assert_eq!(t.setting_get("edge").await.unwrap().as_deref(), Some("1"));
    assert_eq!(t.setting_get("edgeless").await.unwrap(), None);

    let before = t.settings_list().await.unwrap();
    t.setting_set("export.b", "2").await.unwrap();
    t.setting_set("export.a", "1").await.unwrap();
    t.setting_insert_if_absent("export.c", "3").await.unwrap();
    t.setting_set("export.a", "one").await.unwrap();
    let after: Vec<(String, String)> = t
        .settings_list()
        .await
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.starts_with("export."))
        .collect();
    assert_eq!(
        after,
        [
            ("export.a".to_string(), "one".to_string()),
            ("export.b".into(), "2".into()),
            ("export.c".into(), "3".into()),
        ]
    );
    let all = t.settings_list().await.unwrap();
    assert_eq!(all.len(), before.len() + 3);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "ordered by name");
}

/// What copying a registry reads: every version of every role of a GUN (role, then version
/// order).
async fn trust_export_rules(t: &dyn crate::TrustStore) {
    let gun = "export/gun";
    assert!(t.tuf_history(gun).await.unwrap().is_empty());
    t.tuf_update(
        gun,
        vec![
            tuf("targets", 1, b"xt1"),
            tuf("root", 1, b"xr1"),
            tuf("timestamp", 1, b"xts1"),
        ],
        None,
    )
    .await
    .unwrap();
    t.tuf_update(
        gun,
        vec![tuf("targets", 2, b"xt2"), tuf("timestamp", 2, b"xts2")],
        None,
    )
    .await
    .unwrap();
    t.tuf_update("export/other", vec![tuf("root", 1, b"other")], None)
        .await
        .unwrap();
    let h = t.tuf_history(gun).await.unwrap();
    let seen: Vec<(&str, i64, &[u8])> = h
        .iter()
        .map(|f| (f.role.as_str(), f.version, &f.data[..]))
        .collect();
    assert_eq!(
        seen,
        [
            ("root", 1, &b"xr1"[..]),
            ("targets", 1, b"xt1"),
            ("targets", 2, b"xt2"),
            ("timestamp", 1, b"xts1"),
            ("timestamp", 2, b"xts2"),
        ]
    );
    assert!(h.iter().all(|f| f.created > 0 && f.sha256.len() == 64));
    t.tuf_delete(gun).await.unwrap();
    assert!(t.tuf_history(gun).await.unwrap().is_empty());
    t.tuf_delete("export/other").await.unwrap();
}

/// Lookups by checksum and version, repeated roles in one update, feed paging edges, keys.
async fn trust_edge_rules(t: &dyn crate::TrustStore) {
    let gun = "edge/gun";
    let file = |role: &str, version: i64, sha: &str| crate::NewTufFile {
        role: role.into(),
        version,
        sha256: sha.into(),
        data: Bytes::from(format!("{role}{version}")),
    };
    // Two versions of one role in one update: both stored, the later one current.
    t.tuf_update(
        gun,
        vec![file("targets", 1, "aa"), file("targets", 2, "bb")],
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        t.tuf_current(gun, "targets")
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
    let e = t
        .tuf_update(
            gun,
            vec![file("root", 1, "cc"), file("root", 1, "dd")],
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::TufVersion {
                stored: 1,
                new: 1,
                ..
            }
        ),
        "a role repeated at one version: {e}"
    );
    assert!(t.tuf_current(gun, "root").await.unwrap().is_none());
    // Checksums are matched case-insensitively; the newest version with that sum wins.
    t.tuf_update(gun, vec![file("targets", 3, "aa")], None)
        .await
        .unwrap();
    let f = t
        .tuf_by_checksum(gun, "targets", "AA")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.version, 3);
    assert!(f.created > 0);
    assert!(
        t.tuf_by_checksum(gun, "root", "aa")
            .await
            .unwrap()
            .is_none()
    );
    assert!(t.tuf_by_version(gun, "targets", 9).await.unwrap().is_none());
    assert_eq!(
        t.tuf_by_version(gun, "targets", 2)
            .await
            .unwrap()
            .unwrap()
            .data,
        &b"targets2"[..]
    );
    assert!(t.tuf_current_all("edge/none").await.unwrap().is_empty());

    // Changefeed edges: nothing for records = 0; backwards from an id; negative ids go back
    // from the newest.
    for v in 1..=4 {
        t.tuf_update(gun, vec![file("timestamp", v, &format!("{v:02}"))], None)
            .await
            .unwrap();
    }
    let feed = t.changefeed(Some(gun), 0, 100).await.unwrap();
    assert_eq!(feed.len(), 4);
    assert!(feed.windows(2).all(|w| w[0].id < w[1].id));
    assert!(t.changefeed(Some(gun), 0, 0).await.unwrap().is_empty());
    let back = t.changefeed(Some(gun), feed[3].id, -2).await.unwrap();
    assert_eq!(
        back.iter().map(|c| c.version).collect::<Vec<_>>(),
        vec![2, 3]
    );
    let newest = t.changefeed(Some(gun), -1, 1).await.unwrap();
    assert_eq!(
        newest.iter().map(|c| c.version).collect::<Vec<_>>(),
        vec![4]
    );
    assert!(
        t.changefeed(Some(gun), feed[3].id, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A key id is held once per GUN; deleting a GUN with keys but no files reports false
    // (nothing was published) but still drops the keys.
    let key = crate::ServerKeyRecord {
        key_id: "edge-k".into(),
        role: ServerKeyRole::Snapshot,
        algorithm: "ecdsa".into(),
        public: Bytes::from_static(b"{}"),
        sealed_private: Bytes::from_static(b"sealed"),
        created: 1,
    };
    t.server_key_insert("edge/keys-only", &key).await.unwrap();
    assert!(
        t.server_key_insert("edge/keys-only", &key).await.is_err(),
        "duplicate key id"
    );
    t.server_key_insert(gun, &key).await.unwrap();
    assert!(!t.tuf_delete("edge/keys-only").await.unwrap());
    assert!(
        t.server_keys("edge/keys-only", ServerKeyRole::Snapshot)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        t.server_keys(gun, ServerKeyRole::Snapshot)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(t.tuf_guns().await.unwrap(), vec![gun.to_string()]);
}

/// Identity rules: unique names, updates, roles, scope maps, signing keys, the audit log.
pub async fn run_identity(s: &dyn crate::IdentityStore) {
    let alice = crate::IdentityRecord {
        name: "alice".into(),
        kind: IdentityKind::User,
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
        kind: IdentityKind::Token,
        scope_map: Some("ci-map".into()),
        secret_hash2: Some("h2".into()),
        expires: Some(99),
        ..alice.clone()
    };
    s.identity_insert(&token).await.unwrap();
    assert_eq!(
        s.identity_list(Some(IdentityKind::Token)).await.unwrap(),
        vec![token.clone()]
    );
    assert_eq!(s.identity_list(None).await.unwrap().len(), 2);

    let id = s
        .role_assign(AssignedRole::AcrPush, "alice", Some("team/app"))
        .await
        .unwrap();
    assert_eq!(
        s.role_assign(AssignedRole::AcrPush, "alice", Some("team/app"))
            .await
            .unwrap(),
        id,
        "idempotent"
    );
    s.role_assign(AssignedRole::AcrPull, "alice", None)
        .await
        .unwrap();
    let roles = s.role_list(Some("alice")).await.unwrap();
    assert_eq!(roles.len(), 2);
    assert!(
        roles
            .iter()
            .any(|r| r.role == AssignedRole::AcrPull && r.repository.is_none())
    );
    assert!(
        s.role_unassign(AssignedRole::AcrPull, "alice", None)
            .await
            .unwrap()
    );
    assert!(
        !s.role_unassign(AssignedRole::AcrPull, "alice", None)
            .await
            .unwrap()
    );
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
    // A running count rewrites one entry's detail, nothing else of it or of the others.
    assert!(s.audit_set_detail(a, "3 token(s)").await.unwrap());
    let both = s.audit_list(a - 1, 10).await.unwrap();
    assert_eq!(
        both.iter()
            .map(|e| (e.id, e.detail.as_str(), e.at))
            .collect::<Vec<_>>(),
        [(a, "3 token(s)", 5), (b, "", 5)]
    );
    assert!(!s.audit_set_detail(b + 1000, "x").await.unwrap());
    identity_edge_rules(s).await;
}

/// Orderings, upserts, the kinds a store accepts, and what retiring and paging do.
async fn identity_edge_rules(s: &dyn crate::IdentityStore) {
    let rec = |name: &str, kind: IdentityKind, created: i64| crate::IdentityRecord {
        name: name.into(),
        kind,
        label: name.into(),
        secret_hash: "h".into(),
        secret_hash2: None,
        disabled: false,
        expires: None,
        scope_map: None,
        created,
    };
    for (n, k) in [
        ("zed", IdentityKind::User),
        ("amy", IdentityKind::ServicePrincipal),
        ("admin", IdentityKind::Admin),
    ] {
        s.identity_insert(&rec(n, k, 7)).await.unwrap();
    }
    let names: Vec<String> = s
        .identity_list(None)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["admin", "amy", "ci", "zed"], "listed by name");
    // Every kind reads back as itself, alone in its listing (a kind the store does not know
    // cannot be written; reading one is each backend's own test, with raw SQL).
    for k in IdentityKind::ALL {
        let got = s.identity_list(Some(*k)).await.unwrap();
        assert_eq!(got.len(), 1, "{k}: {got:?}");
        assert_eq!(got[0].kind, *k);
        let again = s.identity_get(&got[0].name).await.unwrap().unwrap();
        assert_eq!(again.kind, *k);
    }
    // An update changes everything but the creation time.
    let changed = crate::IdentityRecord {
        label: "Zed".into(),
        secret_hash2: Some("h2".into()),
        expires: Some(50),
        ..rec("zed", IdentityKind::User, 999)
    };
    assert!(s.identity_update(&changed).await.unwrap());
    assert_eq!(
        s.identity_get("zed").await.unwrap(),
        Some(crate::IdentityRecord {
            created: 7,
            ..changed
        })
    );

    // Roles: listed by assignee, role, then repository (registry-wide first); ids are stable.
    let r1 = s
        .role_assign(AssignedRole::AcrPull, "zed", Some("b/repo"))
        .await
        .unwrap();
    let r2 = s
        .role_assign(AssignedRole::AcrPull, "zed", None)
        .await
        .unwrap();
    let r3 = s
        .role_assign(AssignedRole::Owner, "amy", None)
        .await
        .unwrap();
    assert!(r1 != r2 && r2 != r3 && r1 != r3);
    let all: Vec<(String, AssignedRole, Option<String>)> = s
        .role_list(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.assignee, r.role, r.repository))
        .collect();
    assert_eq!(
        all,
        vec![
            ("amy".into(), AssignedRole::Owner, None),
            ("zed".into(), AssignedRole::AcrPull, None),
            ("zed".into(), AssignedRole::AcrPull, Some("b/repo".into())),
        ]
    );
    assert!(
        !s.role_unassign(AssignedRole::AcrPull, "zed", Some("c/repo"))
            .await
            .unwrap()
    );
    assert!(
        s.role_unassign(AssignedRole::AcrPull, "zed", Some("b/repo"))
            .await
            .unwrap()
    );
    assert_eq!(s.role_list(Some("zed")).await.unwrap()[0].id, r2);
    // Every role reads back as itself, in the stored names' order.
    for role in AssignedRole::ALL {
        s.role_assign(*role, "kinds-roles", None).await.unwrap();
    }
    let mut want: Vec<AssignedRole> = AssignedRole::ALL.to_vec();
    want.sort_by_key(|r| r.as_str());
    let got: Vec<AssignedRole> = s
        .role_list(Some("kinds-roles"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.role)
        .collect();
    assert_eq!(got, want);
    for role in AssignedRole::ALL {
        assert!(s.role_unassign(*role, "kinds-roles", None).await.unwrap());
    }

    // A scope map put again keeps its creation time; listings are by name.
    let map = |name: &str, rules: &str, created: i64| crate::ScopeMapRecord {
        name: name.into(),
        rules: rules.into(),
        description: format!("{name} map"),
        created,
    };
    s.scope_map_put(&map("zz", "[]", 3)).await.unwrap();
    s.scope_map_put(&map("aa", "[]", 4)).await.unwrap();
    s.scope_map_put(&map("zz", "[1]", 9)).await.unwrap();
    let maps = s.scope_map_list().await.unwrap();
    assert_eq!(
        maps.iter()
            .map(|m| (m.name.as_str(), m.rules.as_str(), m.created))
            .collect::<Vec<_>>(),
        vec![("aa", "[]", 4), ("zz", "[1]", 3)]
    );
    assert!(!s.scope_map_delete("nope").await.unwrap());
    assert!(s.scope_map_get("nope").await.unwrap().is_none());

    // Signing keys: ties in creation time go by kid; a retired key keeps its first retirement;
    // a key id is stored once.
    let key = |kid: &str, created: i64| crate::SigningKeyRecord {
        kid: kid.into(),
        sealed_private: Bytes::from_static(b"s"),
        certificate: Bytes::from_static(b"c"),
        created,
        retired: None,
    };
    s.signing_key_insert(&key("kb", 40)).await.unwrap();
    s.signing_key_insert(&key("ka", 40)).await.unwrap();
    assert!(s.signing_key_insert(&key("ka", 41)).await.is_err());
    let kids: Vec<String> = s
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["ka", "kb", "k2"]);
    s.signing_key_retire("ka", 50).await.unwrap();
    s.signing_key_retire("ka", 60).await.unwrap();
    s.signing_key_retire("unknown", 60).await.unwrap();
    let ka = s.signing_keys().await.unwrap().remove(0);
    assert_eq!(ka.retired, Some(50));
    assert_eq!(
        s.signing_keys_purge(50).await.unwrap(),
        0,
        "strictly before"
    );
    assert_eq!(s.signing_keys_purge(51).await.unwrap(), 1);

    // The audit log pages by id.
    let entry = crate::AuditRecord {
        id: 0,
        at: 1,
        actor: "a".into(),
        action: "x".into(),
        target: "t".into(),
        client: "c".into(),
        detail: "d".into(),
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(s.audit_append(&entry).await.unwrap());
    }
    let page = s.audit_list(ids[0], 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(
        page[0],
        crate::AuditRecord {
            id: ids[1],
            ..entry.clone()
        }
    );
    assert_eq!(s.audit_list(0, 100).await.unwrap().len(), 5);
}

/// Rules for several writers over one store. `a` and `b` are two instances over the same
/// database where the backend allows that (PostgreSQL: two pools, as two nodes have), else the
/// same instance twice (the races then run within one process, and cached reads must still
/// follow writes). The stores need not be empty: every name used here starts with `race`.
pub async fn run_concurrency<S>(a: &S, b: &S)
where
    S: MetadataStore + crate::TrustStore + crate::SettingsStore + crate::IdentityStore,
{
    race_upload_advance(a, b).await;
    race_tuf_update(a, b).await;
    race_first_writes(a, b).await;
    edits_seen_by_the_other(a, b).await;
}

/// Rounds of each race: one round can be won by either side by luck of scheduling.
const RACE_ROUNDS: usize = 12;

/// Two writers move an upload's offset from the same place: exactly one wins, its part and
/// state are what both then read.
async fn race_upload_advance<S: MetadataStore>(a: &S, b: &S) {
    for i in 0..RACE_ROUNDS {
        let id = format!("race-up-{i}");
        a.upload_create(&UploadRecord {
            id: id.clone(),
            repo: repo("race/uploads"),
            algorithm: Algorithm::Sha256,
            created: 1,
            owner: "race".into(),
            offset: Some(0),
            hash_state: None,
            parts: Some(Vec::new()),
        })
        .await
        .unwrap();
        let (pa, pb) = (part("pa", 0, 10), part("pb", 0, 20));
        let (wa, wb) = tokio::join!(
            a.upload_advance(&id, &pa, Some(vec![0xa])),
            b.upload_advance(&id, &pb, Some(vec![0xb])),
        );
        let (wa, wb) = (wa.unwrap(), wb.unwrap());
        assert!(
            wa ^ wb,
            "round {i}: exactly one advance wins (a: {wa}, b: {wb})"
        );
        let want = if wa {
            (Some(10), Some(vec![0xa]), Some(vec![pa]))
        } else {
            (Some(20), Some(vec![0xb]), Some(vec![pb]))
        };
        for (side, s) in [("a", a), ("b", b)] {
            let got = s.upload_get(&id).await.unwrap().unwrap();
            assert_eq!(
                (got.offset, got.hash_state, got.parts),
                want,
                "round {i}: {side} reads the winner"
            );
        }
        // The loser's view is stale: from 0 again fails on either side; from the winner's end
        // it goes on.
        let end = want.0.unwrap();
        assert!(
            !b.upload_advance(&id, &part("pc", 0, 30), None)
                .await
                .unwrap()
        );
        assert!(
            a.upload_advance(&id, &part("pd", end, 1), None)
                .await
                .unwrap()
        );
        b.upload_delete(&id).await.unwrap();
        assert!(a.upload_get(&id).await.unwrap().is_none());
    }
}

/// Two publishers of the same version of one GUN: exactly one update commits, whole; the other
/// gets `TufVersion` and leaves nothing, not even a changefeed row.
async fn race_tuf_update<S: crate::TrustStore + crate::SettingsStore>(a: &S, b: &S) {
    let gun = "race.example/team/app";
    let file = |role: &str, version: i64, who: &str| crate::NewTufFile {
        role: role.into(),
        version,
        sha256: format!("{who}{version:063x}"),
        data: Bytes::from(format!("{who}:{role}:{version}")),
    };
    a.tuf_update(
        gun,
        vec![
            file("root", 1, "a"),
            file("targets", 1, "a"),
            file("snapshot", 1, "a"),
            file("timestamp", 1, "a"),
        ],
        None,
    )
    .await
    .unwrap();
    let mut rounds = 0;
    for v in 2..2 + i64::try_from(RACE_ROUNDS).unwrap() {
        let update = |who: &str| {
            vec![
                file("targets", v, who),
                file("snapshot", v, who),
                file("timestamp", v, who),
            ]
        };
        let (ra, rb) = tokio::join!(
            a.tuf_update(gun, update("a"), None),
            b.tuf_update(gun, update("b"), None)
        );
        let (winner, loser) = match (ra, rb) {
            (Ok(()), Err(e)) => ("a", e),
            (Err(e), Ok(())) => ("b", e),
            (ra, rb) => panic!("version {v}: exactly one publish wins, got a: {ra:?}, b: {rb:?}"),
        };
        assert!(
            matches!(loser, Error::TufVersion { ref role, stored, new } if role == "targets" && stored == v && new == v),
            "version {v}: the loser is told the stored version: {loser}"
        );
        for s in [a, b] {
            let current = s.tuf_current_all(gun).await.unwrap();
            let got: Vec<(String, i64, Bytes)> = current
                .into_iter()
                .map(|f| (f.role, f.version, f.data))
                .collect();
            assert_eq!(
                got,
                vec![
                    ("root".into(), 1, Bytes::from("a:root:1")),
                    (
                        "snapshot".into(),
                        v,
                        Bytes::from(format!("{winner}:snapshot:{v}"))
                    ),
                    (
                        "targets".into(),
                        v,
                        Bytes::from(format!("{winner}:targets:{v}"))
                    ),
                    (
                        "timestamp".into(),
                        v,
                        Bytes::from(format!("{winner}:timestamp:{v}"))
                    ),
                ],
                "version {v}: every role is the winner's"
            );
        }
        rounds += 1;
    }
    // A GUN's first server key and a first setting asked for on both sides: one of each.
    let key = |id: &str| crate::ServerKeyRecord {
        key_id: id.into(),
        role: ServerKeyRole::Timestamp,
        algorithm: "ecdsa".into(),
        public: Bytes::from_static(b"{}"),
        sealed_private: Bytes::from_static(b"sealed"),
        created: 1,
    };
    let (key_a, key_b) = (key("race-ka"), key("race-kb"));
    for i in 0..RACE_ROUNDS {
        let g = format!("race.example/keys/{i}");
        let (ka, kb) = tokio::join!(
            a.server_key_insert_first(&g, &key_a),
            b.server_key_insert_first(&g, &key_b)
        );
        let (ka, kb) = (ka.unwrap(), kb.unwrap());
        assert_eq!(ka, kb, "round {i}: both get the one first key");
        assert_eq!(
            a.server_keys(&g, ServerKeyRole::Timestamp).await.unwrap(),
            vec![ka]
        );
        let name = format!("race_salt_{i}");
        let (sa, sb) = tokio::join!(
            a.setting_insert_if_absent(&name, "from-a"),
            b.setting_insert_if_absent(&name, "from-b")
        );
        let (sa, sb) = (sa.unwrap(), sb.unwrap());
        assert_eq!(sa, sb, "round {i}: both read the one stored value");
        assert_eq!(b.setting_get(&name).await.unwrap(), Some(sa));
    }

    // One changefeed row per version, in order: the loser added none.
    let feed = b.changefeed(Some(gun), 0, 1000).await.unwrap();
    assert_eq!(
        feed.iter().map(|c| c.version).collect::<Vec<_>>(),
        (1..=1 + rounds).collect::<Vec<i64>>()
    );
    assert!(feed.windows(2).all(|w| w[0].id < w[1].id));
    assert!(a.tuf_delete(gun).await.unwrap());
    assert!(b.tuf_current(gun, "root").await.unwrap().is_none());
}

/// First writes of the same thing from both sides at once: both succeed where the contract is
/// idempotent (one row results), exactly one where it is not.
async fn race_first_writes<S>(a: &S, b: &S)
where
    S: MetadataStore + crate::IdentityStore,
{
    for i in 0..RACE_ROUNDS {
        // A repository created by its first blob link on two nodes at once.
        let r = repo(&format!("race/repo-{i}"));
        let layer = Digest::sha256_of(format!("race layer {i}").as_bytes());
        let (la, lb) = tokio::join!(a.link_blob(&r, &layer, 3), b.link_blob(&r, &layer, 3));
        la.unwrap();
        lb.unwrap();
        assert_eq!(b.blob_linked(&r, &layer).await.unwrap(), Some(3));
        // The same manifest and tag pushed through both.
        let body = Bytes::from(format!("{{\"race\":{i}}}"));
        let man = NewManifest {
            repo: r.clone(),
            digest: Digest::sha256_of(&body),
            media_type: berth_oci::media::OCI_MANIFEST.into(),
            body,
            subject: None,
            artifact_type: None,
            annotations: None,
            blobs: vec![layer.clone()],
            children: vec![],
            pushed: now_secs(),
        };
        let tags = [tag("v1"), tag("latest")];
        let (pa, pb) = tokio::join!(
            a.put_manifest(man.clone(), &tags),
            b.put_manifest(man.clone(), &tags)
        );
        pa.unwrap();
        pb.unwrap();
        let listed = a.list_tags(&r, None, 10).await.unwrap().unwrap();
        assert_eq!(listed.items, vec!["latest".to_string(), "v1".into()]);

        // The same role assignment: one row, one id.
        let who = format!("race-user-{i}");
        let (ra, rb) = tokio::join!(
            a.role_assign(AssignedRole::AcrPull, &who, Some("race/repo")),
            b.role_assign(AssignedRole::AcrPull, &who, Some("race/repo"))
        );
        assert_eq!(ra.unwrap(), rb.unwrap(), "one assignment");
        assert_eq!(a.role_list(Some(&who)).await.unwrap().len(), 1);

        // The same identity name: exactly one insert, the other a conflict.
        let rec = crate::IdentityRecord {
            name: who.clone(),
            kind: IdentityKind::User,
            label: who.clone(),
            secret_hash: "h".into(),
            secret_hash2: None,
            disabled: false,
            expires: None,
            scope_map: None,
            created: 1,
        };
        let (ia, ib) = tokio::join!(a.identity_insert(&rec), b.identity_insert(&rec));
        match (ia, ib) {
            (Ok(()), Err(Error::Conflict(_))) | (Err(Error::Conflict(_)), Ok(())) => {}
            (ia, ib) => panic!("one identity insert wins, the other conflicts: {ia:?}, {ib:?}"),
        }
        assert!(b.identity_delete(&who).await.unwrap());
    }
    let repos = b.list_repos(Some("race/"), 1000).await.unwrap().items;
    let ours: Vec<&String> = repos
        .iter()
        .filter(|n| n.starts_with("race/repo-"))
        .collect();
    assert_eq!(ours.len(), RACE_ROUNDS, "one repository per name: {ours:?}");

    // Audit entries appended from both sides: every id distinct, listed in order, none lost.
    let entry = |actor: &str| crate::AuditRecord {
        id: 0,
        at: 1,
        actor: actor.into(),
        action: "race".into(),
        target: "race".into(),
        client: "c".into(),
        detail: String::new(),
    };
    let start = a
        .audit_list(0, usize::MAX)
        .await
        .unwrap()
        .last()
        .map_or(0, |r| r.id);
    let (ea, eb) = (entry("race-a"), entry("race-b"));
    let appends = (0..RACE_ROUNDS).map(|_| async {
        let (x, y) = tokio::join!(a.audit_append(&ea), b.audit_append(&eb));
        (x.unwrap(), y.unwrap())
    });
    let mut ids: Vec<i64> = futures::future::join_all(appends)
        .await
        .into_iter()
        .flat_map(|(x, y)| [x, y])
        .collect();
    ids.sort_unstable();
    let listed: Vec<i64> = b
        .audit_list(start, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, ids, "every appended entry listed once, by id");
}

/// What one node writes, the other reads at once: identities, roles, scope maps, settings,
/// signing keys.
async fn edits_seen_by_the_other<S>(a: &S, b: &S)
where
    S: crate::SettingsStore + crate::IdentityStore,
{
    let rec = crate::IdentityRecord {
        name: "race-alice".into(),
        kind: IdentityKind::User,
        label: "alice".into(),
        secret_hash: "h1".into(),
        secret_hash2: None,
        disabled: false,
        expires: None,
        scope_map: None,
        created: 1,
    };
    assert!(b.identity_get("race-alice").await.unwrap().is_none());
    a.identity_insert(&rec).await.unwrap();
    assert_eq!(
        b.identity_get("race-alice").await.unwrap(),
        Some(rec.clone())
    );
    let disabled = crate::IdentityRecord {
        disabled: true,
        secret_hash: "h2".into(),
        ..rec.clone()
    };
    assert!(a.identity_update(&disabled).await.unwrap());
    assert_eq!(b.identity_get("race-alice").await.unwrap(), Some(disabled));

    assert!(a.role_list(Some("race-alice")).await.unwrap().is_empty());
    b.role_assign(AssignedRole::AcrPush, "race-alice", None)
        .await
        .unwrap();
    let roles = a.role_list(Some("race-alice")).await.unwrap();
    assert_eq!(roles.len(), 1, "an assignment made on b is seen on a");
    assert!(
        a.role_unassign(AssignedRole::AcrPush, "race-alice", None)
            .await
            .unwrap()
    );
    assert!(b.role_list(Some("race-alice")).await.unwrap().is_empty());

    let map = |rules: &str| crate::ScopeMapRecord {
        name: "race-map".into(),
        rules: rules.into(),
        description: String::new(),
        created: 1,
    };
    assert!(b.scope_map_get("race-map").await.unwrap().is_none());
    a.scope_map_put(&map("[1]")).await.unwrap();
    assert_eq!(b.scope_map_get("race-map").await.unwrap(), Some(map("[1]")));
    b.scope_map_put(&map("[2]")).await.unwrap();
    assert_eq!(a.scope_map_get("race-map").await.unwrap(), Some(map("[2]")));
    assert!(a.scope_map_delete("race-map").await.unwrap());
    assert!(b.scope_map_get("race-map").await.unwrap().is_none());

    a.setting_set("race_setting", "on").await.unwrap();
    assert_eq!(
        b.setting_get("race_setting").await.unwrap().as_deref(),
        Some("on")
    );
    b.setting_set("race_setting", "off").await.unwrap();
    assert_eq!(
        a.setting_get("race_setting").await.unwrap().as_deref(),
        Some("off")
    );

    let key = crate::SigningKeyRecord {
        kid: "race-kid".into(),
        sealed_private: Bytes::from_static(b"s"),
        certificate: Bytes::from_static(b"c"),
        created: 1,
        retired: None,
    };
    a.signing_key_insert(&key).await.unwrap();
    let seen = |keys: Vec<crate::SigningKeyRecord>| keys.into_iter().find(|k| k.kid == "race-kid");
    assert_eq!(seen(b.signing_keys().await.unwrap()), Some(key.clone()));
    b.signing_key_retire("race-kid", 5).await.unwrap();
    assert_eq!(
        seen(a.signing_keys().await.unwrap()).and_then(|k| k.retired),
        Some(5)
    );

    assert!(b.identity_delete("race-alice").await.unwrap());
    assert!(a.identity_get("race-alice").await.unwrap().is_none());
}

pub use crate::webhook_testsuite::{run_webhook_race, run_webhooks};
