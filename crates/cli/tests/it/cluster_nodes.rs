//! Several `berth serve` nodes on one distributed store (real PostgreSQL, real Garage), with
//! authentication on, driven by the real clients: any node serves what another stored, an
//! upload hops nodes between chunks, trust publishes through different nodes (and eight at
//! once) keep one linear history, what an Owner changes on one node holds on every node at its
//! next request, a node killed mid-upload leaves the upload to the others, and the same clients
//! work end to end through nginx as a plain round-robin load balancer.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::auth_support::*;
use crate::cluster::*;
use crate::harness::*;
use crate::trust_cli::{Berth, new_layout, oci, pulled_digest};
use crate::trust_harness::*;

fn creds(c: &Cred) -> String {
    match c {
        Cred::Basic(u, p) => format!("{u}:{p}"),
        _ => panic!("skopeo logs in with a user name and password"),
    }
}

/// `GET /v2/` with `cred` on `srv`: the status.
async fn v2_status(srv: &Server, cred: &Cred) -> u16 {
    call(srv, Method::GET, "/v2/", cred, &[], None).await.status
}

/// The one name clients use for the cluster, as a balancer passes it on in Host: a token is
/// for one audience, so a token from one node is good on another only under the same name.
fn public_name(c: &Cluster) -> String {
    c.node(0).host()
}

/// A Bearer token for `cred` from `srv`, for the audience `name`.
async fn token_for(srv: &Server, name: &str, cred: &Cred, scopes: &[&str]) -> Cred {
    let r = token_get(srv, &srv.client, cred, scopes, Some(name), "").await;
    r.expect(200);
    Cred::Bearer(r.json()["token"].as_str().expect("token").to_owned())
}

/// `GET path` on `srv` addressed as `name`: the status.
async fn status_as(srv: &Server, name: &str, path: &str, cred: &Cred) -> Resp {
    call(srv, Method::GET, path, cred, &[("host", name)], None).await
}

#[tokio::test]
async fn skopeo_pushes_through_one_node_and_pulls_through_another() {
    let c = Cluster::start(3);
    let (a, b, n3) = (c.node(0), c.node(1), c.node(2));
    let mut rng = Rng::new();
    let work = tempfile::tempdir().unwrap();
    let (layout, img) = new_layout(work.path(), "v1", &mut rng);
    let sk = Skopeo::new(&c.tls.ca());
    sk.copy(
        &oci(&layout, "v1"),
        &format!("docker://{}/team/app:v1", a.host()),
        &owner_creds(),
    )
    .ok();
    let out = work.path().join("out");
    sk.copy(
        &format!("docker://{}/team/app:v1", b.host()),
        &oci(&out, "v1"),
        &owner_creds(),
    )
    .ok();
    assert_eq!(pulled_digest(&out), img.digest);
    for l in &img.layers {
        let p = out
            .join("blobs/sha256")
            .join(sha256(l).trim_start_matches("sha256:"));
        assert_eq!(&std::fs::read(&p).unwrap(), l, "{}", p.display());
    }
    // The third node answers for the tag and the blobs too, and refuses without credentials.
    let r = call(
        n3,
        Method::GET,
        "/v2/team/app/manifests/v1",
        &Cred::owner(),
        &[("accept", OCI_MANIFEST)],
        None,
    )
    .await;
    r.expect(200);
    assert_eq!(r.body, img.manifest);
    let r = call(
        n3,
        Method::GET,
        "/v2/team/app/manifests/v1",
        &Cred::None,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 401, "{r}");
    // A delete through the third node is gone on the first.
    let r = call(
        n3,
        Method::DELETE,
        &format!("/v2/team/app/manifests/{}", img.digest),
        &Cred::owner(),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 202, "{r}");
    let r = call(
        a,
        Method::GET,
        "/v2/team/app/manifests/v1",
        &Cred::owner(),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 404, "{r}");
}

#[tokio::test]
async fn a_chunked_upload_hops_nodes_post_on_a_patch_on_b_put_on_c() {
    let c = Cluster::start(3);
    let (a, b, n3) = (c.node(0), c.node(1), c.node(2));
    let owner = Cred::owner();
    let mut rng = Rng::new();
    // Chunks above S3's 5 MiB part minimum and a small tail, as docker sends them.
    let data = rng.bytes(13 << 20);
    let (c1, rest) = data.split_at(6 << 20);
    let (c2, tail) = rest.split_at(6 << 20);
    let digest = sha256(&data);
    let octet = ("content-type", "application/octet-stream");

    let r = call(
        a,
        Method::POST,
        "/v2/team/big/blobs/uploads/",
        &owner,
        &[],
        None,
    )
    .await;
    r.expect(202);
    let loc = r.must_header("location");

    let range = format!("0-{}", c1.len() - 1);
    let r = call(
        b,
        Method::PATCH,
        &loc,
        &owner,
        &[octet, ("content-range", &range)],
        Some(c1.to_vec()),
    )
    .await;
    r.expect(202);
    assert_eq!(
        r.header("range").as_deref(),
        Some(&*format!("0-{}", c1.len() - 1))
    );

    // The third node knows how far it got.
    let r = call(n3, Method::GET, &loc, &owner, &[], None).await;
    r.expect(204);
    assert_eq!(
        r.header("range").as_deref(),
        Some(&*format!("0-{}", c1.len() - 1))
    );
    // A chunk at the wrong offset is refused on any node, and changes nothing.
    let bad = format!("{}-{}", c1.len() + 10, c1.len() + 10 + c2.len() - 1);
    let r = call(
        a,
        Method::PATCH,
        &loc,
        &owner,
        &[octet, ("content-range", &bad)],
        Some(c2.to_vec()),
    )
    .await;
    assert_eq!(r.status, 416, "{r}");

    let range = format!("{}-{}", c1.len(), c1.len() + c2.len() - 1);
    let r = call(
        n3,
        Method::PATCH,
        &loc,
        &owner,
        &[octet, ("content-range", &range)],
        Some(c2.to_vec()),
    )
    .await;
    r.expect(202);
    let r = call(b, Method::GET, &loc, &owner, &[], None).await;
    r.expect(204);
    assert_eq!(
        r.header("range").as_deref(),
        Some(&*format!("0-{}", c1.len() + c2.len() - 1))
    );

    // PUT on the third node with the tail and the digest of the whole.
    let r = call(
        n3,
        Method::PUT,
        &with_query(&loc, &format!("digest={digest}")),
        &owner,
        &[octet],
        Some(tail.to_vec()),
    )
    .await;
    r.expect(201);
    // The finished blob, byte for byte, from the other two; the session is gone everywhere.
    for n in [a, b] {
        let r = call(
            n,
            Method::GET,
            &format!("/v2/team/big/blobs/{digest}"),
            &owner,
            &[],
            None,
        )
        .await;
        r.expect(200);
        assert_eq!(r.body.len(), data.len());
        assert_eq!(sha256(&r.body), digest);
        let r = call(n, Method::GET, &loc, &owner, &[], None).await;
        assert_eq!(r.status, 404, "{r}");
    }
}

#[tokio::test]
async fn the_notary_cli_publishes_alternately_through_two_nodes() {
    let mut c = Cluster::start(3);
    for n in &mut c.nodes {
        harness_acts_as(n, &Cred::owner());
    }
    let (a, b, n3) = (c.node(0), c.node(1), c.node(2));
    enable_trust(a).await;
    let alice = signer(b, "alice", "team/app").await;
    let rita = reader(n3, "rita", "team/app").await;
    let g = gun(a, "team/app");
    let via_a = Notary::with_login(a, &alice);
    let mut via_b = Notary::with_login(b, &alice);
    via_b.trust_dir = via_a.trust_dir.clone();
    let mut rng = Rng::new();
    let mut expected = std::collections::BTreeMap::new();

    via_a.run(&["init", &g, "-p"]).ok();
    let base = role_of(a, &g, "targets").await["version"].as_u64().unwrap();
    for round in 0..4 {
        let (n, other) = if round % 2 == 0 {
            (&via_b, &via_a)
        } else {
            (&via_a, &via_b)
        };
        let hex = rng.hex(64);
        let name = format!("r{round}");
        n.run(&["addhash", &g, &name, "100", "--sha256", &hex, "-p"])
            .ok();
        expected.insert(name, (hex, 100u64, "targets".to_owned()));
        // The other client, through the other node, sees it at once.
        assert_eq!(other.list(&g, &[]), expected);
    }
    via_a.run(&["remove", &g, "r0", "-p"]).ok();
    expected.remove("r0");
    // A reader through the third node: the same targets, from a chain it verified (root on
    // first use); every targets version up to the current one is there, none past it.
    let reader = Notary::with_login(n3, &rita);
    assert_eq!(reader.list(&g, &[]), expected);
    let targets = signed_of(&tuf_bytes(n3, &g, "targets.json").await);
    let current = targets["version"].as_u64().unwrap();
    assert_eq!(current, base + 5, "five publishes after init: {targets}");
    for v in base..=current {
        role_at(n3, &g, "targets", v).await;
    }
    let r = tuf_get(n3, &g, &format!("{}.targets.json", current + 1)).await;
    assert_eq!(r.status, 404, "{r}");
}

/// What an anonymous client gets for `GET path` on `srv` with the token the token service gives
/// it (a plain client: the harness's carries the owner's password).
async fn anonymous_pull(srv: &Server, path: &str) -> u16 {
    let plain = srv.new_client();
    let t = token_get(
        srv,
        &plain,
        &Cred::None,
        &["repository:team/app:pull"],
        None,
        "",
    )
    .await;
    t.expect(200);
    let tok = Cred::Bearer(t.json()["token"].as_str().unwrap().to_owned());
    call_with(srv, &plain, Method::GET, path, &tok, &[], None)
        .await
        .status
}

/// The body of a role's current metadata, through `srv`.
async fn role_of(srv: &Server, gun: &str, role: &str) -> Value {
    signed_of(&tuf_bytes(srv, gun, &format!("{role}.json")).await)
}

/// The body of a role's metadata at one version, through `srv`.
async fn role_at(srv: &Server, gun: &str, role: &str, version: u64) -> Value {
    let r = tuf_get(srv, gun, &format!("{version}.{role}.json")).await;
    r.expect(200);
    signed_of(&r.body)
}

#[tokio::test]
async fn eight_concurrent_publishers_to_one_gun_end_with_one_linear_history() {
    let mut c = Cluster::start(3);
    for n in &mut c.nodes {
        harness_acts_as(n, &Cred::owner());
    }
    let lb = Balancer::start(&c);
    let mut via_lb = lb.handle(&c);
    harness_acts_as(&mut via_lb, &Cred::owner());
    enable_trust(c.node(0)).await;
    let sam = signer(c.node(1), "sam", "team/*").await;
    let rita = reader(c.node(2), "rita", "team/*").await;
    // The GUN clients form for the balancer's address; the publishers reach the nodes directly.
    let g = gun(&via_lb, "team/app");
    let first = Notary::with_login(c.node(0), &sam);
    first.run(&["init", &g, "-p"]).ok();
    let base = role_of(c.node(0), &g, "targets").await["version"]
        .as_u64()
        .unwrap();

    const PUBLISHERS: usize = 8;
    let mut rng = Rng::new();
    let mut images = Vec::new();
    for i in 0..PUBLISHERS {
        let img = Image::build("amd64", &mut rng, 1, 500);
        push_image_as(c.node(i % 3), &sam, "team/app", &format!("t{i}"), &img).await;
        images.push(img);
    }
    // Eight clients with copies of the keys, each adding its own tag and publishing through
    // node i % 3 at the same moment; one whose base went stale retries (notary keeps its
    // change list), as a user would.
    let start = std::sync::Arc::new(std::sync::Barrier::new(PUBLISHERS));
    let mut threads = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let n = Notary::with_login(c.node(i % 3), &sam);
        copy_dir(&first.trust_dir, &n.trust_dir);
        let (g, hex, len, start) = (
            g.clone(),
            hex_of(&img.digest).to_owned(),
            img.manifest.len().to_string(),
            start.clone(),
        );
        threads.push(std::thread::spawn(move || {
            n.run(&["addhash", &g, &format!("t{i}"), &len, "--sha256", &hex])
                .ok();
            start.wait();
            let mut failures = Vec::new();
            for _ in 0..30 {
                let out = n.run(&["publish", &g]);
                if out.status.success() {
                    return failures.len();
                }
                failures.push(out.to_string());
                std::thread::sleep(Duration::from_millis(50 + 37 * i as u64));
            }
            panic!("publisher {i} never got through: {failures:#?}");
        }));
    }
    let retries: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    eprintln!("{PUBLISHERS} publishers needed {retries} retries");

    // One linear history: after the initial version, exactly one version per publisher, each
    // the one before plus one tag (nothing lost, nothing forked); every version of targets
    // is named by the snapshot of the same number.
    let n0 = c.node(0);
    let last_v = base + PUBLISHERS as u64;
    let current = role_of(n0, &g, "targets").await;
    assert_eq!(current["version"], last_v, "{current}");
    let r = tuf_get(n0, &g, &format!("{}.targets.json", last_v + 1)).await;
    assert_eq!(r.status, 404, "a version past the last: {r}");
    assert_eq!(current["targets"].as_object().unwrap().len(), PUBLISHERS);
    let mut prev: Vec<String> = Vec::new();
    for v in base..=last_v {
        let node = c.node(v as usize % 3);
        let t = role_at(node, &g, "targets", v).await;
        let mut names: Vec<String> = t["targets"].as_object().unwrap().keys().cloned().collect();
        names.sort();
        let added: Vec<&String> = names.iter().filter(|n| !prev.contains(n)).collect();
        assert!(
            prev.iter().all(|p| names.contains(p)),
            "targets v{v} lost a tag: {prev:?} -> {names:?}"
        );
        let want = if v == base { 0 } else { 1 };
        assert_eq!(added.len(), want, "targets v{v}: {prev:?} -> {names:?}");
        prev = names;
    }
    let snap_v = role_of(n0, &g, "snapshot").await["version"]
        .as_u64()
        .unwrap();
    for k in 0..=PUBLISHERS as u64 {
        let v = snap_v - PUBLISHERS as u64 + k;
        let node = c.node(k as usize % 3);
        let s = role_at(node, &g, "snapshot", v).await;
        let t = tuf_get(node, &g, &format!("{}.targets.json", base + k)).await;
        t.expect(200);
        assert_eq!(
            s["meta"]["targets"]["hashes"]["sha256"],
            sha256_b64(&t.body),
            "snapshot v{v} names targets v{}: {s}",
            base + k
        );
    }

    // Every client verifies it: a fresh reader through each node, and berth pull --trust of
    // every tag through the balancer (round robin over the nodes).
    let expected: std::collections::BTreeMap<String, (String, u64, String)> = images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            (
                format!("t{i}"),
                (
                    hex_of(&img.digest).to_owned(),
                    img.manifest.len() as u64,
                    "targets".to_owned(),
                ),
            )
        })
        .collect();
    for n in &c.nodes {
        assert_eq!(Notary::with_login(n, &rita).list(&g, &[]), expected);
    }
    let puller = Berth::new(&via_lb).logged_in(&rita);
    let work = tempfile::tempdir().unwrap();
    for (i, img) in images.iter().enumerate() {
        let out_dir = work.path().join(format!("out{i}"));
        let out = puller
            .run(&[
                "pull",
                &format!("{g}:t{i}"),
                &format!("oci:{}", out_dir.display()),
                "--trust",
            ])
            .ok();
        assert!(out.stdout.contains(&img.digest), "{out}");
        assert_eq!(pulled_digest(&out_dir), img.digest);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

#[tokio::test]
async fn a_user_disabled_through_one_node_is_refused_on_the_others_at_once() {
    let c = Cluster::start(3);
    let (a, b, n3) = (c.node(0), c.node(1), c.node(2));
    let bob = user_with_roles(a, "bob", "bob-password-0123", &["AcrPull"]).await;
    for n in [a, b, n3] {
        assert_eq!(v2_status(n, &bob).await, 200);
    }
    // A token bob got from one node before he is disabled works on another.
    let name = public_name(&c);
    let token = token_for(n3, &name, &bob, &["repository:team/app:pull"]).await;
    status_as(a, &name, "/v2/", &token).await.expect(200);

    admin(b, Method::POST, "users/bob/disable", None).await;
    for n in [a, b, n3] {
        assert_eq!(v2_status(n, &bob).await, 401, "password on {}", n.base);
        let r = status_as(n, &name, "/v2/", &token).await;
        assert_eq!(r.status, 401, "token on {}: {r}", n.base);
        let r = token_get(n, &n.client, &bob, &["repository:team/app:pull"], None, "").await;
        assert_eq!(r.status, 401, "{r}");
    }
    admin(n3, Method::POST, "users/bob/enable", None).await;
    for n in [a, b, n3] {
        assert_eq!(v2_status(n, &bob).await, 200, "enabled again on {}", n.base);
    }

    // A password changed through one node: the old one fails everywhere, the new one works.
    admin(
        a,
        Method::POST,
        "users/bob/password",
        Some(json!({"password": "bob-new-password-4567"})),
    )
    .await;
    let new = Cred::basic("bob", "bob-new-password-4567");
    for n in [a, b, n3] {
        assert_eq!(v2_status(n, &bob).await, 401, "old password on {}", n.base);
        assert_eq!(v2_status(n, &new).await, 200, "new password on {}", n.base);
    }
    // Deleted through one node: gone on the others.
    admin(n3, Method::DELETE, "users/bob", None).await;
    for n in [a, b] {
        assert_eq!(v2_status(n, &new).await, 401, "deleted, on {}", n.base);
    }
}

#[tokio::test]
async fn tokens_keys_the_trust_switch_and_anonymous_pull_hold_on_every_node_at_its_next_request() {
    let mut c = Cluster::start(3);
    for n in &mut c.nodes {
        harness_acts_as(n, &Cred::owner());
    }
    let (a, b, n3) = (c.node(0), c.node(1), c.node(2));
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 1, 300);
    push_image_as(a, &Cred::owner(), "team/app", "v1", &img).await;
    let manifest = "/v2/team/app/manifests/v1";

    // A repository-scoped token made on one node works on the others; disabled on one, it is
    // refused on all.
    scope_map(b, "ci-map", "team/app", &["content/read"]).await;
    let ci = Cred::basic("ci", &create_token(b, "ci", "ci-map", Some(7)).await);
    for n in [a, b, n3] {
        let r = call(n, Method::GET, manifest, &ci, &[], None).await;
        assert_eq!(r.status, 200, "{r}");
    }
    admin(n3, Method::POST, "tokens/ci/disable", None).await;
    for n in [a, b, n3] {
        let r = call(n, Method::GET, manifest, &ci, &[], None).await;
        assert_eq!(r.status, 401, "{r}");
    }

    // The token-signing key rotated through one node: tokens it signs from now on are accepted
    // by the others, and so are the ones signed before.
    let name = public_name(&c);
    let pull = ["repository:team/app:pull"];
    let kid = |t: &Cred| match t {
        Cred::Bearer(t) => Jwt::parse(t).header["kid"].clone(),
        _ => unreachable!(),
    };
    let old = token_for(b, &name, &Cred::owner(), &pull).await;
    for n in [a, b, n3] {
        status_as(n, &name, manifest, &old).await.expect(200);
    }
    admin(a, Method::POST, "signing-keys/rotate", None).await;
    let fresh = token_for(a, &name, &Cred::owner(), &pull).await;
    assert_ne!(kid(&fresh), kid(&old), "the key did not change");
    for n in [a, b, n3] {
        for t in [&old, &fresh] {
            status_as(n, &name, manifest, t).await.expect(200);
        }
    }

    // Content trust switched on through one node: the others serve the trust API at once.
    let g = gun(b, "team/app");
    let r = tuf_get(b, &g, "timestamp.key").await;
    assert!((400..500).contains(&r.status), "trust is off: {r}");
    enable_trust(a).await;
    for n in [b, n3] {
        tuf_get(n, &g, "timestamp.key").await.expect(200);
    }

    // Anonymous pull switched on through one node: every node lets anyone pull; switched off
    // through another, no node does. (Plain clients: the harness's carry the owner's password.)
    for n in [a, b, n3] {
        let r = call_with(
            n,
            &n.new_client(),
            Method::GET,
            manifest,
            &Cred::None,
            &[],
            None,
        )
        .await;
        assert_eq!(r.status, 401, "{r}");
        assert!(matches!(anonymous_pull(n, manifest).await, 401 | 403));
    }
    admin(
        n3,
        Method::PUT,
        "config/anonymous-pull",
        Some(json!({"enabled": true})),
    )
    .await;
    for n in [a, b, n3] {
        assert_eq!(anonymous_pull(n, manifest).await, 200, "on {}", n.base);
    }
    admin(
        a,
        Method::PUT,
        "config/anonymous-pull",
        Some(json!({"enabled": false})),
    )
    .await;
    for n in [a, b, n3] {
        let st = anonymous_pull(n, manifest).await;
        assert!(matches!(st, 401 | 403), "{st} on {}", n.base);
    }
}

#[tokio::test]
async fn kill_9_of_a_node_mid_upload_leaves_the_others_serving_and_the_upload_resumable() {
    let mut c = Cluster::start(3);
    let owner = Cred::owner();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 1, 1000);
    push_image_as(c.node(1), &owner, "team/app", "v1", &img).await;
    let data = rng.bytes(12 << 20);
    let digest = sha256(&data);
    let first = 6 << 20;

    let r = call(
        c.node(0),
        Method::POST,
        "/v2/team/big/blobs/uploads/",
        &owner,
        &[],
        None,
    )
    .await;
    r.expect(202);
    let loc = r.must_header("location");
    let range = format!("0-{}", first - 1);
    call(
        c.node(0),
        Method::PATCH,
        &loc,
        &owner,
        &[
            ("content-type", "application/octet-stream"),
            ("content-range", &range),
        ],
        Some(data[..first].to_vec()),
    )
    .await
    .expect(202);

    // The next chunk streams into node 0 slowly; node 0 dies in the middle of it.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let url = c.node(0).url(&loc);
    let client = c.node(0).client.clone();
    let patch = tokio::spawn(async move {
        client
            .patch(url)
            .basic_auth("owner", Some(OWNER_PASSWORD))
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(tokio_stream_from(rx)))
            .send()
            .await
    });
    for piece in data[first..first + (2 << 20)].chunks(256 << 10) {
        tx.send(Ok(piece.to_vec())).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.nodes[0].signal("KILL");
    assert!(c.nodes[0].wait_exit(Duration::from_secs(10)).is_some());
    drop(tx);
    let _ = patch.await;

    let (b, n3) = (c.node(1), c.node(2));
    // The others serve on.
    let r = call(
        b,
        Method::GET,
        "/v2/team/app/manifests/v1",
        &owner,
        &[],
        None,
    )
    .await;
    r.expect(200);
    assert_eq!(r.body, img.manifest);
    // The upload goes on from where the store says it is: at least the first chunk, never
    // past what was sent.
    let r = call(b, Method::GET, &loc, &owner, &[], None).await;
    r.expect(204);
    let end: usize = r
        .must_header("range")
        .strip_prefix("0-")
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("range: {r}"));
    let at = end + 1;
    assert!((first..=first + (2 << 20)).contains(&at), "{r}");
    let range = format!("{at}-{}", data.len() - 1);
    call(
        b,
        Method::PATCH,
        &loc,
        &owner,
        &[
            ("content-type", "application/octet-stream"),
            ("content-range", &range),
        ],
        Some(data[at..].to_vec()),
    )
    .await
    .expect(202);
    call(
        n3,
        Method::PUT,
        &with_query(&loc, &format!("digest={digest}")),
        &owner,
        &[],
        None,
    )
    .await
    .expect(201);
    let r = call(
        b,
        Method::GET,
        &format!("/v2/team/big/blobs/{digest}"),
        &owner,
        &[],
        None,
    )
    .await;
    r.expect(200);
    assert_eq!(sha256(&r.body), digest);
}

/// A `Stream` over an mpsc receiver (reqwest wants a stream for a streamed body).
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn the_real_clients_work_end_to_end_through_a_round_robin_balancer() {
    let mut c = Cluster::start(3);
    for n in &mut c.nodes {
        harness_acts_as(n, &Cred::owner());
    }
    let lb = Balancer::start(&c);
    let mut via_lb = lb.handle(&c);
    harness_acts_as(&mut via_lb, &Cred::owner());
    enable_trust(&via_lb).await;
    let sam = signer(&via_lb, "sam", "team/*").await;
    let rita = reader(&via_lb, "rita", "team/*").await;
    let host = lb.host();
    let mut rng = Rng::new();
    let work = tempfile::tempdir().unwrap();

    // skopeo in and out (blobs above one S3 part, so uploads are chunked across requests).
    let sk = Skopeo::new(&c.tls.ca());
    let (layout, img) = new_layout(work.path(), "v1", &mut rng);
    sk.copy(
        &oci(&layout, "v1"),
        &format!("docker://{host}/team/skopeo:v1"),
        &creds(&sam),
    )
    .ok();
    let out = work.path().join("skopeo-out");
    sk.copy(
        &format!("docker://{host}/team/skopeo:v1"),
        &oci(&out, "v1"),
        &creds(&rita),
    )
    .ok();
    assert_eq!(pulled_digest(&out), img.digest);

    // berth login, push --trust, pull --trust.
    let pusher = Berth::new(&via_lb);
    pusher
        .run_stdin(
            &["login", &host, "-u", "sam", "--password-stdin"],
            &format!("{}\n", creds(&sam).split_once(':').unwrap().1),
        )
        .ok();
    let repo = format!("{host}/team/app");
    let (l1, img1) = new_layout(work.path(), "v1", &mut rng);
    let out = pusher
        .run(&["push", &oci(&l1, "v1"), &format!("{repo}:v1"), "--trust"])
        .ok();
    assert!(
        out.stdout
            .contains(&format!("Successfully signed {repo}:v1")),
        "{out}"
    );
    let puller = Berth::new(&via_lb).logged_in(&rita);
    for i in 0..3 {
        let dir = work.path().join(format!("pull{i}"));
        puller
            .run(&[
                "pull",
                &format!("{repo}:v1"),
                &format!("oci:{}", dir.display()),
                "--trust",
            ])
            .ok();
        assert_eq!(pulled_digest(&dir), img1.digest);
    }

    // The notary CLI: publish and list.
    let g = gun(&via_lb, "team/notary");
    let n = Notary::with_login(&via_lb, &sam);
    n.run(&["init", &g, "-p"]).ok();
    let hex = rng.hex(64);
    n.run(&["addhash", &g, "v1", "42", "--sha256", &hex, "-p"])
        .ok();
    let listed = Notary::with_login(&via_lb, &rita).list(&g, &[]);
    assert_eq!(listed.get("v1"), Some(&(hex, 42, "targets".to_owned())));

    // Requests went to every node, one after the other (no stickiness).
    let ups = lb.upstreams();
    for node in &c.nodes {
        let count = ups.iter().filter(|u| **u == node.host()).count();
        assert!(
            count >= 10,
            "{} answered {count} requests\n{}",
            node.host(),
            lb.logs()
        );
    }

    // A node dies: nginx sends what it cannot connect to on to the others, and the clients go on.
    c.nodes[2].signal("KILL");
    assert!(c.nodes[2].wait_exit(Duration::from_secs(10)).is_some());
    let (l2, img2) = new_layout(work.path(), "v2", &mut rng);
    sk.copy(
        &oci(&l2, "v2"),
        &format!("docker://{host}/team/skopeo:v2"),
        &creds(&sam),
    )
    .ok();
    let out2 = work.path().join("skopeo-out2");
    sk.copy(
        &format!("docker://{host}/team/skopeo:v2"),
        &oci(&out2, "v2"),
        &creds(&rita),
    )
    .ok();
    assert_eq!(pulled_digest(&out2), img2.digest);
    let dir = work.path().join("pull-after-kill");
    puller
        .run(&[
            "pull",
            &format!("{repo}:v1"),
            &format!("oci:{}", dir.display()),
            "--trust",
        ])
        .ok();
    assert_eq!(pulled_digest(&dir), img1.digest);
}

#[test]
fn readme_shows_the_balancer_configuration_these_tests_run() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let nodes = [
        "10.0.0.11:5000".to_owned(),
        "10.0.0.12:5000".to_owned(),
        "10.0.0.13:5000".to_owned(),
    ];
    let site = nginx_site(&Site {
        nodes: &nodes,
        listen: "443",
        server_name: "registry.example.com",
        cert: "/etc/nginx/tls/registry.example.com.crt",
        key: "/etc/nginx/tls/registry.example.com.key",
        nodes_ca: "/etc/nginx/tls/berth-nodes-ca.crt",
        nodes_name: "berth.internal",
    });
    assert!(
        readme.contains(&site),
        "README's \"Running a cluster\" must show the nginx configuration the tests use:\n{site}"
    );
}
