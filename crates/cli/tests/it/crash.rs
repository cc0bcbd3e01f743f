//! Crash safety (issue 13): real clients — skopeo pushes, `notary` publishes, `berth push
//! --trust` and `berth repository delete` — write while the server is killed with SIGKILL at a
//! random moment and started again, round after round. After every restart, each write a client
//! saw acknowledged in any round so far is there and verifies (tags resolve to the acknowledged
//! digest, manifests and blobs hash to their digests, trust targets name the acknowledged digest
//! through a client that verifies the metadata), each acknowledged deletion stays deleted, and
//! whatever the server serves, acknowledged or not, is whole. On the embedded store the one
//! server is killed; on the distributed store (PostgreSQL + Garage) one of two nodes is,
//! alternately, while the clients go on writing through the other.
//!
//! Bounded: about 90 s of rounds embedded and 60 s distributed; `BERTH_CRASH_SECONDS` sets both
//! for longer local runs. Each test prints one summary line (rounds, kills, acknowledged writes
//! by kind, client operations a kill cut short, violations) and asserts that there is no
//! violation and that the kills did land while clients were writing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use reqwest::Method;
use serde_json::Value;

use crate::auth_support::{Cred, token_get};
use crate::cluster::{Cluster, Skopeo, owner_creds};
use crate::harness::*;
use crate::trust_cli::{Berth, layout, oci};
use crate::trust_harness::*;

/// Every manifest type the clients push.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// How long to run rounds: `BERTH_CRASH_SECONDS`, else the test's default.
fn budget(default_secs: u64) -> Duration {
    match std::env::var("BERTH_CRASH_SECONDS") {
        Ok(s) if !s.trim().is_empty() => {
            Duration::from_secs(s.trim().parse().unwrap_or_else(|_| {
                panic!("BERTH_CRASH_SECONDS={s:?}: expected a whole number of seconds")
            }))
        }
        _ => Duration::from_secs(default_secs),
    }
}

// ------------------------------------------------------------------------------------------------
// What the clients did, as they saw it

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    SkopeoPush,
    SignedPush,
    NotaryAdd,
    NotaryRemove,
    TagDelete,
    ManifestDelete,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::SkopeoPush => "skopeo pushes",
            Kind::SignedPush => "berth push --trust",
            Kind::NotaryAdd => "notary target adds",
            Kind::NotaryRemove => "notary target removes",
            Kind::TagDelete => "tag deletes",
            Kind::ManifestDelete => "manifest deletes",
        }
    }
}

/// An image a client pushed (or tried to), and what became of it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Img {
    Pushing,
    Pushed,
    PushFailed,
    DeletingTag,
    DeletingManifest,
    TagDeleted,
    ManifestDeleted,
    TagDeleteFailed,
    ManifestDeleteFailed,
}

#[derive(Clone, Debug)]
struct ImageRec {
    repo: String,
    tag: String,
    digest: String,
    /// Config and layers: (digest, size).
    blobs: Vec<(String, u64)>,
    state: Img,
    /// Only skopeo's images are deleted (signed tags stay, their trust data names them).
    deletable: bool,
}

/// A trust target a client published (or removed, or tried to).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Tgt {
    Pending,
    Acked,
    Failed,
    Removing,
    Removed,
    RemoveFailed,
}

#[derive(Clone, Debug)]
struct TargetRec {
    name: String,
    hex: String,
    size: u64,
    state: Tgt,
}

/// One client operation: when it ran, against which node, whether the client reported success.
struct OpRec {
    kind: Kind,
    node: usize,
    start: Instant,
    end: Instant,
    ok: bool,
    out: String,
}

#[derive(Default)]
struct Ledger {
    images: Vec<ImageRec>,
    /// Targets of the GUN the notary CLI publishes.
    targets: Vec<TargetRec>,
    /// Signed tags of the repository `berth push --trust` pushes to.
    signed: Vec<TargetRec>,
    /// This round's operations.
    ops: Vec<OpRec>,
}

/// The figures of a whole run.
#[derive(Default)]
struct Totals {
    rounds: usize,
    kills: usize,
    /// Kills that cut at least one client operation short.
    kills_mid_write: usize,
    acked: BTreeMap<Kind, usize>,
    /// Client operations in flight on the killed server that failed.
    cut: BTreeMap<Kind, usize>,
    /// Operations refused because they started on the node after it was killed (distributed).
    refused_after_kill: usize,
    violations: Vec<String>,
}

// ------------------------------------------------------------------------------------------------
// The clients

struct Node {
    host: String,
    base: String,
}

struct Clients {
    nodes: Vec<Node>,
    /// host:port naming the registry in references and trust GUNs (node 0's on a cluster: the
    /// GUN must not change with the node a client happens to talk to).
    public: String,
    skopeo: Skopeo,
    /// One per node, sharing one trust directory (keys, cache, change list).
    notary: Vec<Notary>,
    signer: Berth,
    deleter: Berth,
    work: tempfile::TempDir,
    ledger: Mutex<Ledger>,
    stop: AtomicBool,
    seq: AtomicUsize,
}

const SIGNED_REPO: &str = "crash/signed";
const NOTARY_REPO: &str = "crash/notary";

impl Clients {
    fn new(srvs: &[&Server]) -> Clients {
        let owner = Cred::owner();
        let mut notary = vec![Notary::with_login(srvs[0], &owner)];
        for s in &srvs[1..] {
            let mut n = Notary::with_login(s, &owner);
            n.trust_dir = notary[0].trust_dir.clone();
            notary.push(n);
        }
        Clients {
            nodes: srvs
                .iter()
                .map(|s| Node {
                    host: s.host(),
                    base: s.base.clone(),
                })
                .collect(),
            public: srvs[0].host(),
            skopeo: Skopeo::new(&srvs[0].ca_path()),
            notary,
            signer: Berth::new(srvs[0]).logged_in(&owner),
            deleter: Berth::new(srvs[0]).logged_in(&owner),
            work: tempfile::tempdir().unwrap(),
            ledger: Mutex::new(Ledger::default()),
            stop: AtomicBool::new(false),
            seq: AtomicUsize::new(1),
        }
    }

    fn next(&self) -> usize {
        self.seq.fetch_add(1, Ordering::SeqCst)
    }

    fn notary_gun(&self) -> String {
        format!("{}/{NOTARY_REPO}", self.public)
    }

    fn signed_ref(&self) -> String {
        format!("{}/{SIGNED_REPO}", self.public)
    }

    /// `berth ARGS` through node `node`.
    fn berth(&self, who: &Berth, node: usize, args: &[&str]) -> Out {
        let mut a = args.to_vec();
        a.extend(["--server", &self.nodes[node].base]);
        who.run(&a)
    }

    fn add_image(&self, repo: &str, tag: &str, img: &Image, deletable: bool) -> usize {
        let blobs = std::iter::once(&img.config)
            .chain(img.layers.iter())
            .map(|b| (sha256(b), b.len() as u64))
            .collect();
        let mut l = self.ledger.lock().unwrap();
        l.images.push(ImageRec {
            repo: repo.to_owned(),
            tag: tag.to_owned(),
            digest: img.digest.clone(),
            blobs,
            state: Img::Pushing,
            deletable,
        });
        l.images.len() - 1
    }

    /// Records an operation and what its outcome changes, at once.
    fn settle(
        &self,
        kind: Kind,
        node: usize,
        start: Instant,
        out: &Out,
        ok: bool,
        apply: impl FnOnce(&mut Ledger),
    ) {
        let end = Instant::now();
        let mut l = self.ledger.lock().unwrap();
        apply(&mut l);
        l.ops.push(OpRec {
            kind,
            node,
            start,
            end,
            ok,
            out: if ok { String::new() } else { out.to_string() },
        });
    }

    /// Sleeps up to `d`, less if told to stop.
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Small layers mostly, some of a few MiB so that kills land in the middle of an upload.
fn layer_size(rng: &mut Rng) -> usize {
    let r = rng.next_u64() as usize;
    match r % 8 {
        0 => (2 << 20) + (r >> 8) % (2 << 20),
        1 | 2 => (64 << 10) + (r >> 8) % (192 << 10),
        _ => 512 + (r >> 8) % (16 << 10),
    }
}

fn random_image(rng: &mut Rng) -> Image {
    let layers: Vec<Vec<u8>> = (0..2)
        .map(|_| {
            let n = layer_size(rng);
            rng.bytes(n)
        })
        .collect();
    let config = image_config("amd64", &layers, rng);
    let manifest = oci_manifest(&config, &layers, |_| {});
    Image {
        digest: sha256(&manifest),
        config,
        layers,
        manifest,
    }
}

/// skopeo copies new images from OCI layouts to fresh tags.
fn skopeo_worker(c: &Clients, mut rng: Rng) {
    while !c.stop.load(Ordering::SeqCst) {
        let n = c.next();
        let node = n % c.nodes.len();
        let img = random_image(&mut rng);
        let repo = format!("crash/img{}", n % 3);
        let tag = format!("t{n}");
        let dir = c.work.path().join(format!("layout-{n}"));
        layout(&dir, &img, &tag);
        let idx = c.add_image(&repo, &tag, &img, true);
        let start = Instant::now();
        let out = c.skopeo.copy(
            &oci(&dir, &tag),
            &format!("docker://{}/{repo}:{tag}", c.nodes[node].host),
            &owner_creds(),
        );
        let ok = out.status.success();
        c.settle(Kind::SkopeoPush, node, start, &out, ok, |l| {
            l.images[idx].state = if ok { Img::Pushed } else { Img::PushFailed };
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `berth push --trust` pushes and signs new images to fresh tags of one repository.
fn signer_worker(c: &Clients, mut rng: Rng) {
    while !c.stop.load(Ordering::SeqCst) {
        let n = c.next();
        signed_push(c, n, n % c.nodes.len(), &mut rng);
    }
}

/// One `berth push --trust`; whether the client reported it signed.
fn signed_push(c: &Clients, n: usize, node: usize, rng: &mut Rng) -> bool {
    let img = random_image(rng);
    let tag = format!("s{n}");
    let dir = c.work.path().join(format!("layout-{n}"));
    layout(&dir, &img, &tag);
    let idx = c.add_image(SIGNED_REPO, &tag, &img, false);
    let sig = {
        let mut l = c.ledger.lock().unwrap();
        l.signed.push(TargetRec {
            name: tag.clone(),
            hex: hex_of(&img.digest).to_owned(),
            size: img.manifest.len() as u64,
            state: Tgt::Pending,
        });
        l.signed.len() - 1
    };
    let start = Instant::now();
    let reference = format!("{}:{tag}", c.signed_ref());
    let out = c.berth(
        &c.signer,
        node,
        &["push", &oci(&dir, &tag), &reference, "--trust"],
    );
    // The registry acknowledged the image when berth printed its digest line (docker's), even
    // if signing failed after it.
    let pushed = out
        .stdout
        .lines()
        .any(|l| l.starts_with(&format!("{tag}: digest: {} ", img.digest)));
    let ok = out.status.success()
        && out
            .stdout
            .contains(&format!("Successfully signed {reference}"));
    c.settle(Kind::SignedPush, node, start, &out, ok, |l| {
        l.images[idx].state = if pushed || ok {
            Img::Pushed
        } else {
            Img::PushFailed
        };
        l.signed[sig].state = if ok { Tgt::Acked } else { Tgt::Failed };
    });
    let _ = std::fs::remove_dir_all(&dir);
    ok
}

/// The notary CLI adds targets by hash and publishes (`addhash -p`); every fourth operation
/// removes an acknowledged target instead (`remove -p`).
fn notary_worker(c: &Clients, mut rng: Rng) {
    let gun = c.notary_gun();
    while !c.stop.load(Ordering::SeqCst) {
        let n = c.next();
        let node = n % c.nodes.len();
        let removal = if n.is_multiple_of(4) {
            let mut l = c.ledger.lock().unwrap();
            let acked: Vec<usize> = (0..l.targets.len())
                .filter(|i| l.targets[*i].state == Tgt::Acked)
                .collect();
            (acked.len() >= 3).then(|| {
                let i = acked[rng.next_u64() as usize % acked.len()];
                l.targets[i].state = Tgt::Removing;
                (i, l.targets[i].name.clone())
            })
        } else {
            None
        };
        let start = Instant::now();
        match removal {
            Some((i, name)) => {
                let out = c.notary[node].run(&["remove", &gun, &name, "-p"]);
                let ok = out.status.success();
                c.settle(Kind::NotaryRemove, node, start, &out, ok, |l| {
                    l.targets[i].state = if ok { Tgt::Removed } else { Tgt::RemoveFailed };
                });
            }
            None => {
                let name = format!("n{n}");
                let hex = rng.hex(64);
                let size = 1 + rng.next_u64() % 1_000_000;
                let i = {
                    let mut l = c.ledger.lock().unwrap();
                    l.targets.push(TargetRec {
                        name: name.clone(),
                        hex: hex.clone(),
                        size,
                        state: Tgt::Pending,
                    });
                    l.targets.len() - 1
                };
                let out = c.notary[node].run(&[
                    "addhash",
                    &gun,
                    &name,
                    &size.to_string(),
                    "--sha256",
                    &hex,
                    "-p",
                ]);
                let ok = out.status.success();
                c.settle(Kind::NotaryAdd, node, start, &out, ok, |l| {
                    l.targets[i].state = if ok { Tgt::Acked } else { Tgt::Failed };
                });
            }
        }
    }
}

/// `berth repository delete` takes a tag, or a manifest with its tag, of a pushed image every
/// few hundred milliseconds (leaving a few to the others).
fn deleter_worker(c: &Clients, mut rng: Rng) {
    while !c.stop.load(Ordering::SeqCst) {
        c.pause(Duration::from_millis(150 + rng.next_u64() % 350));
        if c.stop.load(Ordering::SeqCst) {
            break;
        }
        let manifest = rng.next_u64().is_multiple_of(2);
        let picked = {
            let mut l = c.ledger.lock().unwrap();
            let cands: Vec<usize> = (0..l.images.len())
                .filter(|i| l.images[*i].deletable && l.images[*i].state == Img::Pushed)
                .collect();
            (cands.len() >= 4).then(|| {
                let i = cands[rng.next_u64() as usize % cands.len()];
                l.images[i].state = if manifest {
                    Img::DeletingManifest
                } else {
                    Img::DeletingTag
                };
                (i, l.images[i].clone())
            })
        };
        let Some((i, img)) = picked else { continue };
        let n = c.next();
        let node = n % c.nodes.len();
        let start = Instant::now();
        let (kind, out) = if manifest {
            let r = format!("{}/{}@{}", c.public, img.repo, img.digest);
            let out = c.berth(&c.deleter, node, &["repository", "delete", &r, "--yes"]);
            (Kind::ManifestDelete, out)
        } else {
            let r = format!("{}/{}:{}", c.public, img.repo, img.tag);
            let out = c.berth(&c.deleter, node, &["repository", "delete", &r]);
            (Kind::TagDelete, out)
        };
        let ok = out.status.success();
        c.settle(kind, node, start, &out, ok, |l| {
            l.images[i].state = match (manifest, ok) {
                (true, true) => Img::ManifestDeleted,
                (true, false) => Img::ManifestDeleteFailed,
                (false, true) => Img::TagDeleted,
                (false, false) => Img::TagDeleteFailed,
            };
        });
    }
}

/// What each test does before its first round: trust on, the notary GUN initialised, one image
/// pushed and signed (so the rounds' signed pushes add to an existing trust repository).
fn initialise(c: &Clients) {
    c.notary[0].run(&["init", &c.notary_gun(), "-p"]).ok();
    let n = c.next();
    assert!(
        signed_push(c, n, 0, &mut Rng::new()),
        "the first signed push failed: {:#?}",
        c.ledger.lock().unwrap().ops.last().map(|o| &o.out)
    );
    c.ledger.lock().unwrap().ops.clear();
}

/// Runs every client on its own thread until `kill` (which waits a random moment, then kills a
/// node: returns when, and which) and `linger` after it; then stops them and waits for them.
fn run_clients(
    c: &Arc<Clients>,
    kill: impl FnOnce() -> (Instant, usize),
    linger: Duration,
) -> (Instant, usize) {
    c.stop.store(false, Ordering::SeqCst);
    let workers: [fn(&Clients, Rng); 4] =
        [skopeo_worker, signer_worker, notary_worker, deleter_worker];
    let threads: Vec<_> = workers
        .into_iter()
        .map(|w| {
            let c = c.clone();
            std::thread::spawn(move || w(&c, Rng::new()))
        })
        .collect();
    let killed = kill();
    std::thread::sleep(linger);
    c.stop.store(true, Ordering::SeqCst);
    for t in threads {
        if let Err(e) = t.join() {
            std::panic::resume_unwind(e);
        }
    }
    killed
}

/// Sorts this round's operations: acknowledged, cut short by the kill (in flight on the killed
/// node), refused after it (started on the killed node once it was dead), or failed on a node
/// that was up, which nothing excuses.
fn tally_round(c: &Clients, t: &mut Totals, kill_at: Instant, victim: usize) {
    let round = t.rounds;
    let ops = std::mem::take(&mut c.ledger.lock().unwrap().ops);
    let mut cut = 0;
    for op in ops {
        if op.ok {
            *t.acked.entry(op.kind).or_default() += 1;
        } else if op.node == victim && op.start < kill_at && op.end >= kill_at {
            *t.cut.entry(op.kind).or_default() += 1;
            cut += 1;
        } else if op.node == victim && op.start >= kill_at {
            t.refused_after_kill += 1;
        } else {
            t.violations.push(format!(
                "round {round}: {} through node {} failed while that node was up: {}",
                op.kind.label(),
                op.node,
                op.out
            ));
        }
    }
    t.kills += 1;
    if cut > 0 {
        t.kills_mid_write += 1;
    }
}

// ------------------------------------------------------------------------------------------------
// Verification

#[derive(Clone, Copy, PartialEq, Debug)]
enum Want {
    Present,
    Absent,
    /// Not acknowledged either way: may be there, but whole if it is.
    Either,
}

struct Got {
    status: u16,
    digest: Option<String>,
    length: Option<u64>,
    body: Vec<u8>,
}

async fn fetch(srv: &Server, method: Method, path: &str) -> Result<Got, String> {
    let r = srv
        .client
        .request(method.clone(), srv.url(path))
        .header("accept", ACCEPT)
        .send()
        .await
        .map_err(|e| format!("{method} {path} on {}: {e}", srv.base))?;
    let status = r.status().as_u16();
    let header = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let digest = header("docker-content-digest");
    let length = header("content-length").and_then(|v| v.parse().ok());
    let body = r
        .bytes()
        .await
        .map_err(|e| format!("{method} {path} on {}: reading the body: {e}", srv.base))?
        .to_vec();
    Ok(Got {
        status,
        digest,
        length,
        body,
    })
}

/// HEAD and GET of a manifest or blob `path` that must hash to `digest` whenever it is served
/// (and be `size` bytes, if given); whether it was served.
async fn check_content(
    v: &mut Vec<String>,
    srv: &Server,
    path: &str,
    digest: &str,
    size: Option<u64>,
    want: Want,
    what: &str,
) -> bool {
    let (head, get) = match (
        fetch(srv, Method::HEAD, path).await,
        fetch(srv, Method::GET, path).await,
    ) {
        (Ok(h), Ok(g)) => (h, g),
        (Err(e), _) | (_, Err(e)) => {
            v.push(format!("{what}: {e}"));
            return false;
        }
    };
    if head.status != get.status {
        v.push(format!(
            "{what}: HEAD {path} says {}, GET says {}",
            head.status, get.status
        ));
    }
    match get.status {
        200 => {
            let got = sha256(&get.body);
            if got != digest {
                v.push(format!(
                    "{what}: GET {path} serves {} bytes hashing to {got}, not {digest}",
                    get.body.len()
                ));
            }
            if let Some(s) = size
                && get.body.len() as u64 != s
            {
                v.push(format!(
                    "{what}: GET {path} serves {} bytes, not {s}",
                    get.body.len()
                ));
            }
            for (m, r) in [("HEAD", &head), ("GET", &get)] {
                if r.status == 200 && r.digest.as_deref() != Some(digest) {
                    v.push(format!(
                        "{what}: {m} {path}: Docker-Content-Digest {:?}, not {digest}",
                        r.digest
                    ));
                }
            }
            if head.status == 200 && head.length != Some(get.body.len() as u64) {
                v.push(format!(
                    "{what}: HEAD {path}: Content-Length {:?}, GET served {}",
                    head.length,
                    get.body.len()
                ));
            }
            if want == Want::Absent {
                v.push(format!(
                    "{what}: GET {path} serves it after its deletion was acknowledged"
                ));
            }
            true
        }
        404 => {
            if want == Want::Present {
                v.push(format!("{what}: acknowledged, but GET {path} is 404"));
            }
            false
        }
        s => {
            v.push(format!("{what}: GET {path} -> {s}"));
            false
        }
    }
}

/// One image as its state says it must be through `srv`.
async fn check_image(v: &mut Vec<String>, srv: &Server, img: &ImageRec, at: &str) {
    use Want::*;
    let (tag_want, manifest_want) = match img.state {
        Img::Pushed => (Present, Present),
        Img::TagDeleted => (Absent, Present),
        Img::ManifestDeleted => (Absent, Absent),
        Img::TagDeleteFailed => (Either, Present),
        Img::PushFailed | Img::ManifestDeleteFailed => (Either, Either),
        s @ (Img::Pushing | Img::DeletingTag | Img::DeletingManifest) => {
            v.push(format!("{at}: {}:{} left {s:?}", img.repo, img.tag));
            (Either, Either)
        }
    };
    let what = format!("{at}: {}:{} ({:?})", img.repo, img.tag, img.state);
    let base = format!("/v2/{}/manifests/", img.repo);
    let tagged = check_content(
        v,
        srv,
        &format!("{base}{}", img.tag),
        &img.digest,
        None,
        tag_want,
        &what,
    )
    .await;
    // A tag that resolves names a manifest that is there by digest too.
    let manifest_want = if tagged && manifest_want == Either {
        Present
    } else {
        manifest_want
    };
    let stored = check_content(
        v,
        srv,
        &format!("{base}{}", img.digest),
        &img.digest,
        None,
        manifest_want,
        &what,
    )
    .await;
    // A manifest that is served has every blob it references, whole.
    let blob_want = if stored { Present } else { Either };
    for (d, size) in &img.blobs {
        check_content(
            v,
            srv,
            &format!("/v2/{}/blobs/{d}", img.repo),
            d,
            Some(*size),
            blob_want,
            &format!("{what} blob"),
        )
        .await;
    }
}

fn json_list(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every repository and tag the server lists: each tag is one a client pushed, acknowledged tags
/// are listed, deleted ones are not, and an unknown tag's manifest is at least whole.
async fn scan_catalog(v: &mut Vec<String>, srv: &Server, images: &[ImageRec], at: &str) {
    let r = match fetch(srv, Method::GET, "/v2/_catalog?n=100000").await {
        Ok(r) if r.status == 200 => r,
        Ok(r) => {
            v.push(format!("{at}: GET /v2/_catalog -> {}", r.status));
            return;
        }
        Err(e) => {
            v.push(format!("{at}: {e}"));
            return;
        }
    };
    let repos = json_list(
        &serde_json::from_slice(&r.body).unwrap_or_default(),
        "repositories",
    );
    let known: BTreeMap<(&str, &str), &ImageRec> = images
        .iter()
        .map(|i| ((i.repo.as_str(), i.tag.as_str()), i))
        .collect();
    let mut listed = BTreeSet::new();
    for repo in &repos {
        let path = format!("/v2/{repo}/tags/list?n=100000");
        let tags = match fetch(srv, Method::GET, &path).await {
            Ok(r) if r.status == 200 => {
                json_list(&serde_json::from_slice(&r.body).unwrap_or_default(), "tags")
            }
            Ok(r) if r.status == 404 => Vec::new(),
            Ok(r) => {
                v.push(format!("{at}: GET {path} -> {}", r.status));
                continue;
            }
            Err(e) => {
                v.push(format!("{at}: {e}"));
                continue;
            }
        };
        for tag in tags {
            match known.get(&(repo.as_str(), tag.as_str())) {
                Some(img) if matches!(img.state, Img::TagDeleted | Img::ManifestDeleted) => {
                    v.push(format!("{at}: {repo}:{tag} is listed after its deletion"));
                }
                Some(_) => {}
                None => {
                    v.push(format!("{at}: {repo}:{tag} is listed; no client pushed it"));
                    let p = format!("/v2/{repo}/manifests/{tag}");
                    if let Ok(g) = fetch(srv, Method::GET, &p).await
                        && g.status == 200
                        && g.digest.as_deref() != Some(sha256(&g.body).as_str())
                    {
                        v.push(format!(
                            "{at}: GET {p} serves bytes not hashing to its digest"
                        ));
                    }
                }
            }
            listed.insert((repo.clone(), tag));
        }
    }
    for img in images.iter().filter(|i| i.state == Img::Pushed) {
        if !listed.contains(&(img.repo.clone(), img.tag.clone())) {
            v.push(format!(
                "{at}: acknowledged {}:{} is not in the tag list",
                img.repo, img.tag
            ));
        }
    }
}

/// name -> (hex sha256, size if the listing shows it).
type Listing = BTreeMap<String, (String, Option<u64>)>;

fn from_notary_list(out: &Out) -> Listing {
    parse_notary_list(out)
        .into_iter()
        .map(|(n, (hex, size, _role))| (n, (hex, Some(size))))
        .collect()
}

/// A listing of verified trust data against what the clients were told.
fn compare_targets(v: &mut Vec<String>, listed: &Listing, recs: &[TargetRec], what: &str) {
    for r in recs {
        let got = listed.get(&r.name);
        let matches =
            got.is_some_and(|(hex, size)| *hex == r.hex && size.is_none_or(|s| s == r.size));
        match r.state {
            Tgt::Acked if !matches => v.push(format!(
                "{what}: acknowledged {} ({} {}) is listed as {got:?}",
                r.name, r.hex, r.size
            )),
            Tgt::Removed if got.is_some() => v.push(format!(
                "{what}: {} is listed after its removal was acknowledged",
                r.name
            )),
            Tgt::Failed | Tgt::RemoveFailed | Tgt::Pending | Tgt::Removing
                if got.is_some() && !matches =>
            {
                v.push(format!(
                    "{what}: unacknowledged {} is listed as {got:?}, not {} {}",
                    r.name, r.hex, r.size
                ))
            }
            _ => {}
        }
    }
    let known: BTreeSet<&str> = recs.iter().map(|r| r.name.as_str()).collect();
    for name in listed.keys().filter(|n| !known.contains(n.as_str())) {
        v.push(format!("{what}: {name} is listed; no client published it"));
    }
}

/// The trust data through node `node`: the publishers' own clients (roots pinned since the
/// first publish) and a fresh notary client (trust on first use) must each verify it and list
/// the acknowledged targets.
fn check_trust(
    v: &mut Vec<String>,
    c: &Clients,
    srv: &Server,
    node: usize,
    ledger: &(Vec<TargetRec>, Vec<TargetRec>),
    at: &str,
) {
    let (targets, signed) = ledger;
    let gun = c.notary_gun();
    let out = c.notary[node].run(&["list", &gun]);
    if out.status.success() {
        compare_targets(
            v,
            &from_notary_list(&out),
            targets,
            &format!("{at}: notary list {gun}"),
        );
    } else {
        v.push(format!("{at}: the publisher's notary list fails: {out}"));
    }
    let signed_ref = c.signed_ref();
    let out = c.berth(&c.signer, node, &["trust", "inspect", &signed_ref]);
    let inspected: Option<Listing> = out
        .status
        .success()
        .then(|| serde_json::from_str::<Value>(&out.stdout).ok())
        .flatten()
        .map(|j| {
            j[0]["SignedTags"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    (
                        t["SignedTag"].as_str().unwrap_or_default().to_owned(),
                        (t["Digest"].as_str().unwrap_or_default().to_owned(), None),
                    )
                })
                .collect()
        });
    match inspected {
        Some(l) => compare_targets(v, &l, signed, &format!("{at}: berth trust inspect")),
        None => v.push(format!("{at}: berth trust inspect fails: {out}")),
    }
    let fresh = Notary::with_login(srv, &Cred::owner());
    for (g, recs) in [(gun, targets), (signed_ref, signed)] {
        let out = fresh.run(&["list", &g]);
        if out.status.success() {
            compare_targets(
                v,
                &from_notary_list(&out),
                recs,
                &format!("{at}: fresh notary list {g}"),
            );
        } else {
            v.push(format!(
                "{at}: a fresh notary client cannot list {g}: {out}"
            ));
        }
    }
}

/// The harness's requests to `srv` from now on carry a Bearer token that reads every repository
/// the clients write and the catalog (a password checked on every request of a verification
/// pass would cost more than the rest of the pass), on kept-alive connections.
async fn read_with_a_token(srv: &mut Server) {
    let mut scopes = vec!["registry:catalog:*".to_owned()];
    for r in ["crash/img0", "crash/img1", "crash/img2", SIGNED_REPO] {
        scopes.push(format!("repository:{r}:pull"));
    }
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let plain = srv.new_client();
    let r = token_get(srv, &plain, &Cred::owner(), &scopes, None, "").await;
    r.expect(200);
    let token = r.json()["token"].as_str().expect("token").to_owned();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    // Keep-alive too: a TLS handshake per request would be most of the pass.
    srv.client = srv
        .client_builder()
        .default_headers(headers)
        .build()
        .expect("reqwest client");
}

/// Everything acknowledged so far, through each of `srvs`.
async fn verify(c: &Clients, srvs: &[&Server], round: usize) -> Vec<String> {
    let (images, trust) = {
        let l = c.ledger.lock().unwrap();
        (l.images.clone(), (l.targets.clone(), l.signed.clone()))
    };
    let mut v = Vec::new();
    for (node, srv) in srvs.iter().enumerate() {
        let at = format!("round {round}, node {node}");
        // Each image through one node, the other one the next round: twice the rounds for
        // the same time (the nodes share one store; the catalog and trust checks, which are
        // cheaper, go through both every round).
        let mine = images
            .iter()
            .enumerate()
            .filter(|(i, _)| (i + round) % srvs.len() == node)
            .map(|(_, img)| img);
        let found: Vec<Vec<String>> = futures::stream::iter(mine)
            .map(|img| async {
                let mut v = Vec::new();
                check_image(&mut v, srv, img, &at).await;
                v
            })
            // A few at a time: each check waits on the server's store more than on the CPU.
            .buffer_unordered(6)
            .collect()
            .await;
        v.extend(found.into_iter().flatten());
        scan_catalog(&mut v, srv, &images, &at).await;
        check_trust(&mut v, c, srv, node, &trust, &at);
    }
    v
}

/// The summary line, written past the test harness's output capture so CI logs show it for a
/// passing test too.
fn report(store: &str, t: &Totals, c: &Clients, elapsed: Duration) {
    let blobs: BTreeSet<String> = {
        let l = c.ledger.lock().unwrap();
        l.images
            .iter()
            .filter(|i| i.state == Img::Pushed)
            .flat_map(|i| i.blobs.iter().map(|(d, _)| d.clone()))
            .collect()
    };
    let kinds = |m: &BTreeMap<Kind, usize>| {
        m.iter()
            .map(|(k, n)| format!("{n} {}", k.label()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let line = format!(
        "crash test ({store}): {} rounds in {:.0} s, {} kills ({} with a client mid-write), \
         acknowledged writes: {} [{}; {} blobs of images still tagged], client operations cut \
         by a kill: {} [{}], refused after a kill: {}, violations: {}\n",
        t.rounds,
        elapsed.as_secs_f64(),
        t.kills,
        t.kills_mid_write,
        t.acked.values().sum::<usize>(),
        kinds(&t.acked),
        blobs.len(),
        t.cut.values().sum::<usize>(),
        kinds(&t.cut),
        t.refused_after_kill,
        t.violations.len()
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn assert_clean(t: &Totals, logs: &str) {
    assert!(
        t.violations.is_empty(),
        "{} violations:\n{}\n{logs}",
        t.violations.len(),
        t.violations
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // A kill that only ever lands between writes proves little.
    assert!(
        t.kills_mid_write * 2 >= t.kills,
        "too few kills cut a client write short: {} of {}",
        t.kills_mid_write,
        t.kills
    );
}

// ------------------------------------------------------------------------------------------------
// The tests

#[tokio::test]
async fn kill_9_at_random_moments_loses_no_acknowledged_write_embedded() {
    let mut srv = start_server();
    enable_trust(&srv).await;
    let c = Arc::new(Clients::new(&[&srv]));
    initialise(&c);
    let mut rng = Rng::new();
    let mut t = Totals::default();
    let budget = budget(90);
    let began = Instant::now();
    while began.elapsed() < budget || t.rounds < 3 {
        t.rounds += 1;
        let delay = Duration::from_millis(300 + rng.next_u64() % 2700);
        let (kill_at, victim) = run_clients(
            &c,
            || {
                std::thread::sleep(delay);
                // Nothing starts after the kill: every failure then is one the kill caused.
                c.stop.store(true, Ordering::SeqCst);
                let at = Instant::now();
                srv.signal("KILL");
                assert!(
                    srv.wait_exit(Duration::from_secs(10)).is_some(),
                    "SIGKILL did not end the server"
                );
                (at, 0)
            },
            Duration::ZERO,
        );
        tally_round(&c, &mut t, kill_at, victim);
        // Restart must succeed every time (this panics with the server's log if it does not).
        srv.restart_on_same_port();
        read_with_a_token(&mut srv).await;
        let found = verify(&c, &[&srv], t.rounds).await;
        t.violations.extend(found);
    }
    // The embedded store, unless the whole suite was asked to run on the distributed one.
    let store = match srv.env_var("BERTH_STORE").as_deref() {
        Some("distributed") => "distributed, 1 node",
        _ => "embedded",
    };
    report(store, &t, &c, began.elapsed());
    assert_clean(&t, &srv.logs());
}

#[tokio::test]
async fn kill_9_of_one_of_two_nodes_loses_no_acknowledged_write_distributed() {
    let mut cl = Cluster::start(2);
    for n in &mut cl.nodes {
        harness_acts_as(n, &Cred::owner());
    }
    enable_trust(cl.node(0)).await;
    let c = Arc::new(Clients::new(&[cl.node(0), cl.node(1)]));
    initialise(&c);
    let mut rng = Rng::new();
    let mut t = Totals::default();
    let budget = budget(60);
    let began = Instant::now();
    while began.elapsed() < budget || t.rounds < 3 {
        t.rounds += 1;
        let victim = t.rounds % 2;
        let delay = Duration::from_millis(300 + rng.next_u64() % 2700);
        // The clients go on through both nodes for a while after the kill: what they write
        // through the survivor is acknowledged and must hold.
        let linger = Duration::from_millis(300 + rng.next_u64() % 700);
        let nodes = &mut cl.nodes;
        let (kill_at, victim) = run_clients(
            &c,
            || {
                std::thread::sleep(delay);
                let at = Instant::now();
                nodes[victim].signal("KILL");
                assert!(
                    nodes[victim].wait_exit(Duration::from_secs(10)).is_some(),
                    "SIGKILL did not end node {victim}"
                );
                (at, victim)
            },
            linger,
        );
        tally_round(&c, &mut t, kill_at, victim);
        cl.nodes[victim].restart_on_same_port();
        for n in &mut cl.nodes {
            read_with_a_token(n).await;
        }
        let found = verify(&c, &[cl.node(0), cl.node(1)], t.rounds).await;
        t.violations.extend(found);
    }
    report("distributed, 2 nodes", &t, &c, began.elapsed());
    assert_clean(&t, &format!("{}\n{}", cl.node(0).logs(), cl.node(1).logs()));
}
