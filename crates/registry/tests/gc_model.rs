//! Garbage collection against a model (proptest): random histories of pushes (images sharing
//! blobs across repositories, indexes, referrers, untagged manifests), tag and manifest
//! deletes, loose uploads and clock moves, with collections in between. After every collection
//! the registry holds exactly what the model says survives: no manifest or blob anything still
//! keeps is gone, nothing left is garbage past the grace period, every surviving manifest's
//! blobs read back whole, and the report counts what went. Run on the in-memory store and on
//! the embedded one (filesystem + SQLite).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use berth_oci::{Digest, RepoName, Tag, TagOrDigest, media};
use berth_registry::{GcOptions, Registry};
use berth_storage::memory::MemoryStore;
use berth_storage::{BlobStore, ByteStream, MetadataStore};
use berth_storage_embedded::{FsBlobStore, SqliteMetadataStore};
use bytes::Bytes;
use futures::StreamExt;
use proptest::prelude::*;
use serde_json::json;

const GRACE: i64 = 10;
const REPOS: [&str; 2] = ["model/a", "model/b"];
const TAGS: [&str; 3] = ["t0", "t1", "t2"];
/// Blob contents every repository draws from, so blobs are shared across repositories.
const POOL: usize = 6;

fn pool_blob(i: usize) -> Bytes {
    Bytes::from(format!("model blob {i} ").repeat(i + 1))
}

#[derive(Debug, Clone)]
enum Op {
    Image {
        repo: usize,
        blobs: Vec<usize>,
        tag: Option<usize>,
    },
    Index {
        repo: usize,
        children: Vec<usize>,
        tag: Option<usize>,
    },
    Referrer {
        repo: usize,
        subject: usize,
        blob: usize,
    },
    DeleteTag {
        repo: usize,
        tag: usize,
    },
    DeleteManifest {
        repo: usize,
        which: usize,
    },
    Loose {
        repo: usize,
        blob: usize,
    },
    Advance {
        secs: i64,
    },
    Gc {
        untagged: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let repo = 0..REPOS.len();
    prop_oneof![
        4 => (repo.clone(), prop::collection::vec(0..POOL, 1..4), prop::option::of(0..TAGS.len()))
            .prop_map(|(repo, blobs, tag)| Op::Image { repo, blobs, tag }),
        2 => (repo.clone(), prop::collection::vec(0..8usize, 1..3), prop::option::of(0..TAGS.len()))
            .prop_map(|(repo, children, tag)| Op::Index { repo, children, tag }),
        1 => (repo.clone(), 0..8usize, 0..POOL)
            .prop_map(|(repo, subject, blob)| Op::Referrer { repo, subject, blob }),
        2 => (repo.clone(), 0..TAGS.len()).prop_map(|(repo, tag)| Op::DeleteTag { repo, tag }),
        1 => (repo.clone(), 0..8usize).prop_map(|(repo, which)| Op::DeleteManifest { repo, which }),
        1 => (repo, 0..POOL).prop_map(|(repo, blob)| Op::Loose { repo, blob }),
        3 => (0..(2 * GRACE)).prop_map(|secs| Op::Advance { secs }),
        2 => any::<bool>().prop_map(|untagged| Op::Gc { untagged }),
    ]
}

/// One manifest as the model sees it.
#[derive(Debug, Clone)]
struct M {
    blobs: BTreeSet<String>,
    children: BTreeSet<String>,
    subject: Option<String>,
    pushed: i64,
}

/// Per repository: manifests by digest, tags, blob links. Blob records: last touch.
#[derive(Debug, Default, Clone)]
struct Model {
    manifests: [BTreeMap<String, M>; 2],
    tags: [BTreeMap<String, String>; 2],
    links: [BTreeSet<String>; 2],
    touched: BTreeMap<String, i64>,
    /// Digest → bytes, for every blob ever pushed.
    bytes: BTreeMap<String, Bytes>,
}

impl Model {
    /// What a collection at `now` removes: (manifests per repo, blobs).
    fn collect(&mut self, now: i64, untagged: bool) -> (u64, u64, u64) {
        let cutoff = now - GRACE;
        let mut gone_manifests = 0;
        if untagged {
            for r in 0..REPOS.len() {
                // Reachable: tagged or young, then children and referrers of reachable ones.
                let ms = &self.manifests[r];
                let mut keep: BTreeSet<String> = ms
                    .iter()
                    .filter(|(d, m)| m.pushed >= cutoff || self.tags[r].values().any(|t| t == *d))
                    .map(|(d, _)| d.clone())
                    .collect();
                loop {
                    let before = keep.len();
                    for (d, m) in ms {
                        let child_of_kept = keep
                            .iter()
                            .any(|k| ms.get(k).is_some_and(|p| p.children.contains(d)));
                        let refers_to_kept = m.subject.as_ref().is_some_and(|s| keep.contains(s));
                        // A referrer whose subject is absent is garbage; one whose subject is
                        // present but itself garbage goes with it.
                        if child_of_kept || refers_to_kept {
                            keep.insert(d.clone());
                        }
                    }
                    if keep.len() == before {
                        break;
                    }
                }
                let before = self.manifests[r].len();
                self.manifests[r].retain(|d, _| keep.contains(d));
                gone_manifests += (before - self.manifests[r].len()) as u64;
            }
        }
        let referenced: BTreeSet<String> = self
            .manifests
            .iter()
            .flat_map(|ms| ms.values().flat_map(|m| m.blobs.iter().cloned()))
            .collect();
        let garbage: Vec<String> = self
            .touched
            .iter()
            .filter(|(d, t)| **t < cutoff && !referenced.contains(*d))
            .map(|(d, _)| d.clone())
            .collect();
        let mut bytes = 0;
        for d in &garbage {
            self.touched.remove(d);
            for l in &mut self.links {
                l.remove(d);
            }
            bytes += self.bytes[d].len() as u64;
        }
        (gone_manifests, garbage.len() as u64, bytes)
    }
}

fn accept() -> Vec<String> {
    vec![media::OCI_MANIFEST.to_owned(), media::OCI_INDEX.to_owned()]
}

fn stream(b: Bytes) -> ByteStream {
    Box::pin(futures::stream::iter(vec![Ok(b)]))
}

fn desc(media_type: &str, body: &[u8]) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": Digest::sha256_of(body).to_string(), "size": body.len()})
}

struct World {
    reg: Registry,
    blobs: Arc<dyn BlobStore>,
    clock: Arc<AtomicI64>,
    model: Model,
    /// Manifest digests pushed, per repository, in order (operations pick among them).
    pushed: [Vec<String>; 2],
    seq: u64,
    _dir: Option<tempfile::TempDir>,
}

impl World {
    fn new(
        blobs: Arc<dyn BlobStore>,
        meta: Arc<dyn MetadataStore>,
        dir: Option<tempfile::TempDir>,
    ) -> World {
        let clock = Arc::new(AtomicI64::new(1_000_000));
        let c = clock.clone();
        World {
            reg: Registry::new(blobs.clone(), meta)
                .with_clock(Arc::new(move || c.load(Ordering::SeqCst))),
            blobs,
            clock,
            model: Model::default(),
            pushed: [Vec::new(), Vec::new()],
            seq: 0,
            _dir: dir,
        }
    }

    fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    fn repo(r: usize) -> RepoName {
        REPOS[r].parse().unwrap()
    }

    async fn upload(&mut self, r: usize, data: Bytes) -> String {
        let d = Digest::sha256_of(&data);
        self.reg
            .upload_monolithic(
                &Self::repo(r),
                &d,
                Some(data.len() as u64),
                stream(data.clone()),
                "model",
            )
            .await
            .unwrap();
        let key = d.to_string();
        let now = self.now();
        let t = self.model.touched.entry(key.clone()).or_insert(now);
        *t = (*t).max(now);
        self.model.links[r].insert(key.clone());
        self.model.bytes.insert(key.clone(), data);
        key
    }

    async fn put(&mut self, r: usize, body: Vec<u8>, media_type: &str, m: M, tag: Option<usize>) {
        let body = Bytes::from(body);
        let d = Digest::sha256_of(&body).to_string();
        let reference = match tag {
            Some(t) => TagOrDigest::Tag(TAGS[t].parse::<Tag>().unwrap()),
            None => TagOrDigest::Digest(d.parse().unwrap()),
        };
        self.reg
            .put_manifest(&Self::repo(r), &reference, Some(media_type), body, vec![])
            .await
            .unwrap_or_else(|e| panic!("push {d}: {e}"));
        let now = self.now();
        self.model.manifests[r].insert(d.clone(), M { pushed: now, ..m });
        if let Some(t) = tag {
            self.model.tags[r].insert(TAGS[t].to_owned(), d.clone());
        }
        self.pushed[r].push(d);
    }

    /// A manifest of repository `r` the model still has, chosen by `which`.
    fn pick(&self, r: usize, which: usize) -> Option<String> {
        let live: Vec<&String> = self.pushed[r]
            .iter()
            .filter(|d| self.model.manifests[r].contains_key(*d))
            .collect();
        (!live.is_empty()).then(|| live[which % live.len()].clone())
    }

    async fn apply(&mut self, op: &Op) {
        self.seq += 1;
        match op.clone() {
            Op::Image { repo, blobs, tag } => {
                let mut keys = Vec::new();
                let mut datas = Vec::new();
                for b in &blobs {
                    let data = pool_blob(*b);
                    keys.push(self.upload(repo, data.clone()).await);
                    datas.push(data);
                }
                // The first blob is the config; a unique annotation makes each manifest new.
                let body = serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": media::OCI_MANIFEST,
                    "config": desc("application/vnd.oci.image.config.v1+json", &datas[0]),
                    "layers": datas[1..].iter().map(|d| desc("application/vnd.oci.image.layer.v1.tar", d)).collect::<Vec<_>>(),
                    "annotations": {"seq": self.seq.to_string()},
                }))
                .unwrap();
                let m = M {
                    blobs: keys.into_iter().collect(),
                    children: BTreeSet::new(),
                    subject: None,
                    pushed: 0,
                };
                self.put(repo, body, media::OCI_MANIFEST, m, tag).await;
            }
            Op::Index {
                repo,
                children,
                tag,
            } => {
                let picked: BTreeSet<String> = children
                    .iter()
                    .filter_map(|c| self.pick(repo, *c))
                    .collect();
                if picked.is_empty() {
                    return;
                }
                let mut descs = Vec::new();
                for d in &picked {
                    let body = self
                        .reg
                        .get_manifest(
                            &Self::repo(repo),
                            &TagOrDigest::Digest(d.parse().unwrap()),
                            &accept(),
                        )
                        .await
                        .unwrap()
                        .body;
                    descs.push(
                        json!({"mediaType": media::OCI_MANIFEST, "digest": d, "size": body.len()}),
                    );
                }
                let body = serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": media::OCI_INDEX,
                    "manifests": descs,
                    "annotations": {"seq": self.seq.to_string()},
                }))
                .unwrap();
                let m = M {
                    blobs: BTreeSet::new(),
                    children: picked,
                    subject: None,
                    pushed: 0,
                };
                self.put(repo, body, media::OCI_INDEX, m, tag).await;
            }
            Op::Referrer {
                repo,
                subject,
                blob,
            } => {
                let Some(subject) = self.pick(repo, subject) else {
                    return;
                };
                let data = pool_blob(blob);
                let key = self.upload(repo, data.clone()).await;
                let subject_body = self
                    .reg
                    .get_manifest(
                        &Self::repo(repo),
                        &TagOrDigest::Digest(subject.parse().unwrap()),
                        &accept(),
                    )
                    .await
                    .unwrap()
                    .body;
                let body = serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": media::OCI_MANIFEST,
                    "artifactType": "application/vnd.example.sig",
                    "config": desc("application/vnd.oci.empty.v1+json", &data),
                    "layers": [],
                    "subject": {"mediaType": media::OCI_MANIFEST, "digest": subject, "size": subject_body.len()},
                    "annotations": {"seq": self.seq.to_string()},
                }))
                .unwrap();
                let m = M {
                    blobs: [key].into(),
                    children: BTreeSet::new(),
                    subject: Some(subject),
                    pushed: 0,
                };
                self.put(repo, body, media::OCI_MANIFEST, m, None).await;
            }
            Op::DeleteTag { repo, tag } => {
                let t: Tag = TAGS[tag].parse().unwrap();
                let had = self.model.tags[repo].remove(TAGS[tag]).is_some();
                let r = self
                    .reg
                    .delete_manifest(&Self::repo(repo), &TagOrDigest::Tag(t))
                    .await;
                assert_eq!(r.is_ok(), had, "delete tag {}: {r:?}", TAGS[tag]);
            }
            Op::DeleteManifest { repo, which } => {
                let Some(d) = self.pick(repo, which) else {
                    return;
                };
                let r = self
                    .reg
                    .delete_manifest(&Self::repo(repo), &TagOrDigest::Digest(d.parse().unwrap()))
                    .await;
                assert!(r.is_ok(), "delete {d}: {r:?}");
                self.model.manifests[repo].remove(&d);
                self.model.tags[repo].retain(|_, v| *v != d);
            }
            Op::Loose { repo, blob } => {
                self.upload(repo, pool_blob(blob)).await;
            }
            Op::Advance { secs } => {
                self.clock.fetch_add(secs, Ordering::SeqCst);
            }
            Op::Gc { untagged } => {
                let opts = GcOptions {
                    grace: GRACE,
                    upload_max_age: 3600,
                    untagged,
                    ..GcOptions::default()
                };
                let report = self.reg.collect_garbage(&opts).await.unwrap();
                let (manifests, blobs, bytes) = self.model.collect(self.now(), untagged);
                assert_eq!(
                    (report.manifests, report.blobs, report.bytes),
                    (manifests, blobs, bytes),
                    "report of {op:?}"
                );
                assert_eq!(report.orphaned_blobs, 0);
                self.check().await;
            }
        }
    }

    /// The registry holds exactly the model's manifests, tags and links, and every linked
    /// blob reads back whole; collected bytes are gone from the blob store.
    async fn check(&self) {
        for (r, name) in REPOS.iter().enumerate() {
            let repo = Self::repo(r);
            for d in &self.pushed[r] {
                let got = self
                    .reg
                    .get_manifest(&repo, &TagOrDigest::Digest(d.parse().unwrap()), &accept())
                    .await;
                assert_eq!(
                    got.is_ok(),
                    self.model.manifests[r].contains_key(d),
                    "{name}@{d}: {:?}",
                    got.err()
                );
            }
            for (t, d) in &self.model.tags[r] {
                let got = self
                    .reg
                    .get_manifest(&repo, &TagOrDigest::Tag(t.parse().unwrap()), &accept())
                    .await
                    .unwrap_or_else(|e| panic!("{name}:{t}: {e}"));
                assert_eq!(&got.digest.to_string(), d);
            }
            for (d, data) in &self.model.bytes {
                let linked = self.model.links[r].contains(d);
                let digest: Digest = d.parse().unwrap();
                match self
                    .reg
                    .read_blob(&repo, &digest, 0, data.len() as u64)
                    .await
                {
                    Ok(mut s) => {
                        assert!(linked, "{name} still serves collected {d}");
                        let mut got = Vec::new();
                        while let Some(c) = s.next().await {
                            got.extend_from_slice(&c.unwrap());
                        }
                        assert_eq!(&got[..], &data[..], "{name} {d}");
                    }
                    Err(e) => assert!(!linked, "{name} lost {d}: {e}"),
                }
            }
            // Every surviving manifest's blobs are linked where it lives.
            for m in self.model.manifests[r].values() {
                for b in &m.blobs {
                    assert!(self.model.links[r].contains(b), "model: {name} {b}");
                }
            }
        }
        for d in self.model.bytes.keys() {
            let stored = self
                .blobs
                .stat(&d.parse().unwrap())
                .await
                .unwrap()
                .is_some();
            assert_eq!(stored, self.model.touched.contains_key(d), "bytes of {d}");
        }
    }
}

fn run(ops: &[Op], embedded: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut w = if embedded {
            let dir = tempfile::tempdir().unwrap();
            let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(dir.path()).unwrap());
            let meta: Arc<dyn MetadataStore> =
                Arc::new(SqliteMetadataStore::open(dir.path().join("metadata.db")).unwrap());
            World::new(blobs, meta, Some(dir))
        } else {
            let s = Arc::new(MemoryStore::new());
            World::new(s.clone(), s, None)
        };
        for op in ops {
            w.apply(op).await;
        }
        // Finally everything but what tags keep goes.
        w.apply(&Op::Advance { secs: GRACE + 1 }).await;
        w.apply(&Op::Gc { untagged: true }).await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn gc_matches_the_model_on_the_memory_store(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops, false);
    }

    #[test]
    fn gc_matches_the_model_on_the_embedded_store(ops in prop::collection::vec(op(), 1..30)) {
        run(&ops, true);
    }
}
