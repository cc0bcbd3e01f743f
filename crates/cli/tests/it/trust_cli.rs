//! The content-trust verbs of the `berth` CLI against a real server, checked by the real
//! docker and notary CLIs: `push --trust`, `pull --trust` (signed digest and size, nothing
//! written for an unsigned tag), the DOCKER_CONTENT_TRUST switch and its override, `trust key`,
//! `signer`, `sign`, `revoke`, `inspect`. Authentication is on: signers that are not Owners
//! publish, readers pull and check, each client logged in as users do it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_harness::*;

/// `berth` with its own HOME, docker config (keys, TUF cache) and docker's passphrases, trusting
/// the server's CA through BERTH_CA_FILE.
pub(crate) struct Berth {
    home: PathBuf,
    docker_config: PathBuf,
    ca: PathBuf,
    env: Vec<(String, String)>,
    _tmp: tempfile::TempDir,
}

impl Berth {
    pub(crate) fn new(srv: &Server) -> Berth {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        Berth {
            docker_config: tmp.path().join("docker-config"),
            home,
            ca: srv.ca_path(),
            env: vec![
                (
                    "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE".into(),
                    ROOT_PW.into(),
                ),
                (
                    "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE".into(),
                    REPOSITORY_PW.into(),
                ),
            ],
            _tmp: tmp,
        }
    }

    /// Working in docker's key store and cache, in docker's working directory, logged in as
    /// docker is.
    fn sharing(srv: &Server, d: &Docker) -> Berth {
        let mut b = Berth::new(srv).logged_in(&d.login);
        b.docker_config = d.config.clone();
        b.home = d.work.clone();
        b
    }

    /// Logging in as `cred` through BERTH_USERNAME / BERTH_PASSWORD.
    pub(crate) fn logged_in(self, cred: &Cred) -> Berth {
        match cred {
            Cred::None => self,
            Cred::Basic(u, p) => self
                .with_env("BERTH_USERNAME", u)
                .with_env("BERTH_PASSWORD", p),
            Cred::Bearer(_) => panic!("berth logs in with a user name and password"),
        }
    }

    pub(crate) fn with_env(mut self, k: &str, v: &str) -> Berth {
        self.env.retain(|(x, _)| x != k);
        self.env.push((k.into(), v.into()));
        self
    }

    fn without_env(mut self, k: &str) -> Berth {
        self.env.retain(|(x, _)| x != k);
        self
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = isolated(env!("CARGO_BIN_EXE_berth"), &self.home);
        c.env("DOCKER_CONFIG", &self.docker_config)
            .env("BERTH_CONFIG_DIR", self.home.join("berth-config"))
            .env("BERTH_CA_FILE", &self.ca)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(args);
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Out {
        run(&mut self.cmd(args), None)
    }

    pub(crate) fn run_stdin(&self, args: &[&str], stdin: &str) -> Out {
        run(&mut self.cmd(args), Some(stdin))
    }

    fn private_dir(&self) -> PathBuf {
        self.docker_config.join("trust/private")
    }

    fn trust_dir(&self) -> PathBuf {
        self.docker_config.join("trust")
    }

    /// `berth trust inspect` JSON for one repository.
    fn inspect(&self, repo: &str) -> Value {
        let out = self.run(&["trust", "inspect", repo]).ok();
        let v: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("inspect output is not JSON ({e}): {out}"));
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{out}");
        v[0].clone()
    }
}

/// An OCI image layout in `dir` holding `img` under `tag`.
pub(crate) fn layout(dir: &Path, img: &Image, tag: &str) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    for b in [&img.config, &img.manifest]
        .into_iter()
        .chain(img.layers.iter())
    {
        std::fs::write(blobs.join(sha256(b).trim_start_matches("sha256:")), b).unwrap();
    }
    let mut d = desc(OCI_MANIFEST, &img.manifest);
    d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    let idx = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [d]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
}

/// A new image in a new layout under `tag`; returns (layout dir, image).
pub(crate) fn new_layout(parent: &Path, tag: &str, rng: &mut Rng) -> (PathBuf, Image) {
    let img = Image::build("amd64", rng, 2, 2000);
    let dir = parent.join(format!("layout-{}", rng.hex(8)));
    layout(&dir, &img, tag);
    (dir, img)
}

pub(crate) fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// The manifest digest a pulled layout names.
pub(crate) fn pulled_digest(dir: &Path) -> String {
    let idx: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    idx["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn push_trust_signs_and_pull_trust_verifies_and_refuses_unsigned_tags() {
    let srv = start_server();
    enable_trust(&srv).await;
    let repo = gun(&srv, "team/app");
    let sam = signer(&srv, "sam", "team/*").await;
    let rita = reader(&srv, "rita", "team/*").await;
    let mut rng = Rng::new();
    let d = Docker::logged_in(&srv, &sam);
    let b = Berth::sharing(&srv, &d);
    let work = tempfile::tempdir().unwrap();
    let (l1, img1) = new_layout(work.path(), "v1", &mut rng);

    // Push with --trust: the first push initialises the repository, as docker's does.
    let out = b
        .run(&["push", &oci(&l1, "v1"), &format!("{repo}:v1"), "--trust"])
        .ok();
    assert!(
        out.stdout
            .contains(&format!("Successfully signed {repo}:v1")),
        "{out}"
    );
    assert_eq!(mode(&b.private_dir()), 0o700);
    assert_eq!(
        mode(&find_key_file(&b.private_dir(), "targets", Some(&repo))),
        0o600
    );
    let listed = Notary::with_login(&srv, &rita).list(&repo, &[]);
    assert_eq!(
        listed.get("v1"),
        Some(&(
            hex_of(&img1.digest).to_owned(),
            img1.manifest.len() as u64,
            "targets".to_owned()
        )),
        "{listed:?}"
    );
    let docker_view = d.inspect(&repo);
    assert_eq!(docker_view["SignedTags"][0]["Digest"], hex_of(&img1.digest));
    assert_eq!(b.inspect(&repo), docker_view);
    let ours = b.run(&["trust", "inspect", "--pretty", &repo]).ok();
    let theirs = d.run(&["trust", "inspect", "--pretty", &repo]).ok();
    assert_eq!(ours.stdout.trim(), theirs.stdout.trim(), "{ours}\n{theirs}");

    // A first-time puller (fresh docker config: trust on first use) gets the signed digest.
    let reader = Berth::new(&srv).logged_in(&rita);
    let out_dir = work.path().join("out1");
    let out = reader
        .run(&[
            "pull",
            &format!("{repo}:v1"),
            &format!("oci:{}", out_dir.display()),
            "--trust",
        ])
        .ok();
    assert!(out.stdout.contains(&img1.digest), "{out}");
    assert_eq!(pulled_digest(&out_dir), img1.digest);
    let cache = reader.trust_dir().join("tuf").join(&repo).join("metadata");
    assert!(cache.join("root.json").exists(), "{out}");

    // An unsigned tag of a signed repository: docker's verdict, no layout, cache unchanged.
    let (l2, img2) = new_layout(work.path(), "v2", &mut rng);
    b.run(&["push", &oci(&l2, "v2"), &format!("{repo}:v2")])
        .ok();
    let before = dir_state(&reader.trust_dir());
    let out2 = work.path().join("out2");
    let out = reader
        .run(&[
            "pull",
            &format!("{repo}:v2"),
            &format!("oci:{}", out2.display()),
            "--trust",
        ])
        .fails();
    assert!(out.stderr.contains("No valid trust data for v2"), "{out}");
    assert!(!out2.exists(), "{out}");
    assert_eq!(dir_state(&reader.trust_dir()), before);

    // DOCKER_CONTENT_TRUST=1 turns trust on; --disable-content-trust turns it off again.
    let env_on = Berth::new(&srv)
        .logged_in(&rita)
        .with_env("DOCKER_CONTENT_TRUST", "1");
    let out3 = work.path().join("out3");
    let dest3 = format!("oci:{}", out3.display());
    env_on.run(&["pull", &format!("{repo}:v2"), &dest3]).fails();
    assert!(!out3.exists());
    env_on
        .run(&[
            "pull",
            &format!("{repo}:v2"),
            &dest3,
            "--disable-content-trust",
        ])
        .ok();
    assert_eq!(pulled_digest(&out3), img2.digest);

    // A repository without trust data: "remote trust data does not exist", nothing written.
    let other = gun(&srv, "team/other");
    b.run(&["push", &oci(&l2, "v2"), &format!("{other}:v2")])
        .ok();
    let out4 = work.path().join("out4");
    let out = env_on
        .run(&[
            "pull",
            &format!("{other}:v2"),
            &format!("oci:{}", out4.display()),
        ])
        .fails();
    assert!(
        out.stderr.contains("remote trust data does not exist"),
        "{out}"
    );
    assert!(!out4.exists());
    assert!(!env_on.trust_dir().join("tuf").join(&other).exists());

    // --disable-content-trust=false turns trust on over DOCKER_CONTENT_TRUST=0.
    let (l3, img3) = new_layout(work.path(), "v3", &mut rng);
    b.clone_with("DOCKER_CONTENT_TRUST", "0")
        .run(&[
            "push",
            &oci(&l3, "v3"),
            &format!("{repo}:v3"),
            "--disable-content-trust=false",
        ])
        .ok();
    let listed = Notary::with_login(&srv, &rita).list(&repo, &[]);
    assert_eq!(
        listed.get("v3").map(|t| t.0.as_str()),
        Some(hex_of(&img3.digest))
    );

    // A wrong passphrase: a clear error, and not one key file is touched.
    let keys_before = dir_state(&b.private_dir());
    let (l4, _) = new_layout(work.path(), "v4", &mut rng);
    let out = b
        .clone_with(
            "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE",
            "not-the-passphrase",
        )
        .run(&["push", &oci(&l4, "v4"), &format!("{repo}:v4"), "--trust"])
        .fails();
    assert!(out.stderr.contains("wrong passphrase"), "{out}");
    assert!(out.stderr.contains("NOT signed"), "{out}");
    assert_eq!(dir_state(&b.private_dir()), keys_before);
    assert!(
        !Notary::with_login(&srv, &rita)
            .list(&repo, &[])
            .contains_key("v4")
    );

    // Revoke: the tag is gone for notary and for a trusted pull.
    b.run(&["trust", "revoke", &format!("{repo}:v3")]).ok();
    assert!(
        !Notary::with_login(&srv, &rita)
            .list(&repo, &[])
            .contains_key("v3")
    );
    let out5 = work.path().join("out5");
    reader
        .run(&[
            "pull",
            &format!("{repo}:v3"),
            &format!("oci:{}", out5.display()),
            "--trust",
        ])
        .fails();
    assert!(!out5.exists());
}

impl Berth {
    /// The same client with one more variable (or a changed one).
    fn clone_with(&self, k: &str, v: &str) -> Berth {
        let tmp = tempfile::tempdir().unwrap();
        Berth {
            home: self.home.clone(),
            docker_config: self.docker_config.clone(),
            ca: self.ca.clone(),
            env: self.env.clone(),
            _tmp: tmp,
        }
        .with_env(k, v)
    }
}

#[tokio::test]
async fn docker_keys_sign_berth_pushes_and_notary_tags_pull_verified() {
    let srv = start_server();
    enable_trust(&srv).await;
    let repo = gun(&srv, "team/web");
    let sam = signer(&srv, "sam", "team/*").await;
    let rita = reader(&srv, "rita", "team/*").await;
    let mut rng = Rng::new();
    let d = Docker::logged_in(&srv, &sam);
    let b = Berth::sharing(&srv, &d);
    let work = tempfile::tempdir().unwrap();

    // A key made by docker becomes a signer through berth, and berth's push signs with it.
    d.run(&["trust", "key", "generate", "alice"]).ok();
    let out = b
        .run(&[
            "trust",
            "signer",
            "add",
            "alice",
            &repo,
            "--key",
            "alice.pub",
        ])
        .ok();
    assert!(
        out.stdout.contains("Successfully added signer: alice"),
        "{out}"
    );
    let (l1, img1) = new_layout(work.path(), "v1", &mut rng);
    b.run(&["push", &oci(&l1, "v1"), &format!("{repo}:v1"), "--trust"])
        .ok();
    let view = d.inspect(&repo);
    let row = &view["SignedTags"][0];
    assert_eq!(row["SignedTag"], "v1", "{view}");
    assert_eq!(row["Digest"], hex_of(&img1.digest));
    assert_eq!(row["Signers"], json!(["alice"]));
    assert_eq!(b.inspect(&repo), view);
    let listed = Notary::with_login(&srv, &rita).list(&repo, &["--roles", "targets/releases"]);
    assert_eq!(
        listed.get("v1").map(|t| (t.0.as_str(), t.1)),
        Some((hex_of(&img1.digest), img1.manifest.len() as u64))
    );
    // With a tag, inspect lists that tag only (and nothing for an unsigned one).
    let v = b.inspect(&format!("{repo}:v1"));
    assert_eq!(v["SignedTags"].as_array().unwrap().len(), 1);
    assert_eq!(b.inspect(&format!("{repo}:zz"))["SignedTags"], json!([]));

    // `berth trust sign` signs what the registry holds under the tag.
    let (l2, img2) = new_layout(work.path(), "v2", &mut rng);
    b.run(&["push", &oci(&l2, "v2"), &format!("{repo}:v2")])
        .ok();
    b.run(&["trust", "sign", &format!("{repo}:v2")]).ok();
    let view = d.inspect(&repo);
    let v2 = view["SignedTags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["SignedTag"] == "v2")
        .unwrap_or_else(|| panic!("{view}"))
        .clone();
    assert_eq!(v2["Digest"], hex_of(&img2.digest));
    let out = b
        .run(&["trust", "sign", &format!("{repo}:missing")])
        .fails();
    assert!(out.stderr.contains("not in the registry"), "{out}");

    // Removing the only releases signer asks first; --yes goes ahead.
    let out = b
        .run(&["trust", "signer", "remove", "alice", &repo])
        .fails();
    assert!(out.stderr.contains("--yes"), "{out}");
    b.run(&["trust", "signer", "remove", "alice", &repo, "--yes"])
        .ok();
    assert_eq!(d.inspect(&repo)["Signers"], json!([]));

    // A tag the notary CLI signed (real digest and size) is pulled and verified by berth.
    let lib = gun(&srv, "team/lib");
    let n = Notary::with_login(&srv, &sam);
    n.run(&["init", &lib, "-p"]).ok();
    let (l3, img3) = new_layout(work.path(), "1.0", &mut rng);
    b.run(&["push", &oci(&l3, "1.0"), &format!("{lib}:1.0")])
        .ok();
    b.run(&["push", &oci(&l3, "1.0"), &format!("{lib}:bad")])
        .ok();
    let size = img3.manifest.len().to_string();
    n.run(&[
        "addhash",
        &lib,
        "1.0",
        &size,
        "--sha256",
        hex_of(&img3.digest),
        "-p",
    ])
    .ok();
    // The same digest signed with another size: refused before anything is written.
    let wrong_size = (img3.manifest.len() + 1).to_string();
    n.run(&[
        "addhash",
        &lib,
        "bad",
        &wrong_size,
        "--sha256",
        hex_of(&img3.digest),
        "-p",
    ])
    .ok();
    let reader = Berth::new(&srv).logged_in(&rita);
    let out1 = work.path().join("lib-1.0");
    reader
        .run(&[
            "pull",
            &format!("{lib}:1.0"),
            &format!("oci:{}", out1.display()),
            "--trust",
        ])
        .ok();
    assert_eq!(pulled_digest(&out1), img3.digest);
    let out_bad = work.path().join("lib-bad");
    let out = reader
        .run(&[
            "pull",
            &format!("{lib}:bad"),
            &format!("oci:{}", out_bad.display()),
            "--trust",
        ])
        .fails();
    assert!(out.stderr.contains("bytes were signed"), "{out}");
    assert!(!out_bad.exists());
}

#[tokio::test]
async fn keys_generate_load_backup_restore_and_passphrase_errors() {
    let srv = start_server();
    let b = Berth::new(&srv);
    let w = tempfile::tempdir().unwrap();
    let wd = w.path().to_str().unwrap();

    let out = b
        .run(&["trust", "key", "generate", "bob", "--dir", wd])
        .ok();
    let pub_file = w.path().join("bob.pub");
    assert!(out.stdout.contains(pub_file.to_str().unwrap()), "{out}");
    let text = std::fs::read_to_string(&pub_file).unwrap();
    assert!(
        text.starts_with("-----BEGIN PUBLIC KEY-----\nrole: bob\n\n"),
        "{text}"
    );
    let key_file = find_key_file(&b.private_dir(), "bob", None);
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&b.private_dir()), 0o700);
    // The public file names the same key as the private one (docker's key ID).
    let spki = crate::trust_harness::unb64(
        &text
            .lines()
            .filter(|l| !l.starts_with("-----") && !l.contains(':'))
            .collect::<String>(),
    );
    assert_eq!(
        key_file.file_stem().unwrap().to_str().unwrap(),
        key_id("ecdsa", &b64(&spki))
    );
    b.run(&["trust", "key", "generate", "bob", "--dir", wd])
        .fails();

    // An openssl key loaded under a name.
    let k = EcKey::generate(w.path(), "dave");
    b.run(&[
        "trust",
        "key",
        "load",
        k.pem.to_str().unwrap(),
        "--name",
        "dave",
    ])
    .ok();
    let dave = find_key_file(&b.private_dir(), "dave", None);
    assert_eq!(mode(&dave), 0o600);

    // Backup and restore round-trip with 0600/0700.
    let backup = w.path().join("keys.tar");
    b.run(&["trust", "key", "backup", backup.to_str().unwrap()])
        .ok();
    assert_eq!(mode(&backup), 0o600);
    let mut ar = tar::Archive::new(std::fs::File::open(&backup).unwrap());
    let mut entries = 0;
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let m = e.header().mode().unwrap() & 0o777;
        if e.header().entry_type().is_dir() {
            assert_eq!(m, 0o700);
        } else {
            assert_eq!(m, 0o600);
            entries += 1;
        }
    }
    assert_eq!(entries, 2);
    let saved = dir_state(&b.private_dir());
    std::fs::remove_dir_all(b.private_dir()).unwrap();
    b.run(&["trust", "key", "restore", backup.to_str().unwrap()])
        .ok();
    assert_eq!(dir_state(&b.private_dir()), saved);

    // No passphrase in the environment and no terminal: a clear error, nothing written.
    let no_pw = b
        .clone_with("X", "1")
        .without_env("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE");
    let out = no_pw
        .run(&["trust", "key", "generate", "carol", "--dir", wd])
        .fails();
    assert!(
        out.stderr
            .contains("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE"),
        "{out}"
    );
    assert!(!w.path().join("carol.pub").exists());
    assert_eq!(dir_state(&b.private_dir()), saved);
    // A name docker refuses.
    b.run(&["trust", "key", "generate", "Root", "--dir", wd])
        .fails();
}

#[tokio::test]
async fn with_auth_a_signer_pushes_signed_and_pulls_verified() {
    let srv = Server::start_with_auth();
    enable_trust_as_owner(&srv).await;
    let alice_pw = "alice-password-1";
    user_with_roles(&srv, "alice", alice_pw, &["AcrPush", "AcrImageSigner"]).await;
    user_with_roles(&srv, "pusher", "pusher-password-1", &["AcrPush"]).await;
    let repo = gun(&srv, "team/app");
    let mut rng = Rng::new();
    let work = tempfile::tempdir().unwrap();
    let b = Berth::new(&srv);

    // -u / --password-stdin: the image and its signature go up with alice's token.
    let (l1, img1) = new_layout(work.path(), "v1", &mut rng);
    let out = b
        .run_stdin(
            &[
                "push",
                &oci(&l1, "v1"),
                &format!("{repo}:v1"),
                "--trust",
                "-u",
                "alice",
                "--password-stdin",
            ],
            alice_pw,
        )
        .ok();
    assert!(out.stdout.contains("Successfully signed"), "{out}");
    let d = Docker::logged_in(&srv, &Cred::basic("alice", alice_pw));
    let view = d.inspect(&repo);
    assert_eq!(view["SignedTags"][0]["Digest"], hex_of(&img1.digest));

    // BERTH_USERNAME/BERTH_PASSWORD for a verified pull by a first-time client.
    let reader = Berth::new(&srv)
        .with_env("BERTH_USERNAME", "alice")
        .with_env("BERTH_PASSWORD", alice_pw);
    let out1 = work.path().join("out1");
    reader
        .run(&[
            "pull",
            &format!("{repo}:v1"),
            &format!("oci:{}", out1.display()),
            "--trust",
        ])
        .ok();
    assert_eq!(pulled_digest(&out1), img1.digest);
    assert_eq!(reader.inspect(&repo), view);

    // Without credentials: refused, nothing written.
    let anon = Berth::new(&srv);
    let out2 = work.path().join("out2");
    let out = anon
        .run(&[
            "pull",
            &format!("{repo}:v1"),
            &format!("oci:{}", out2.display()),
            "--trust",
        ])
        .fails();
    assert!(out.stderr.contains("--password-stdin"), "{out}");
    assert!(!out2.exists());

    // AcrPush alone cannot sign, even holding the keys: the push lands, the signature does
    // not, and the user is told which role is missing.
    let (l2, _) = new_layout(work.path(), "v2", &mut rng);
    let out = b
        .clone_with("BERTH_USERNAME", "pusher")
        .with_env("BERTH_PASSWORD", "pusher-password-1")
        .run(&["push", &oci(&l2, "v2"), &format!("{repo}:v2"), "--trust"])
        .fails();
    assert!(out.stderr.contains("AcrImageSigner"), "{out}");

    // `trust sign` on a repository without trust data: a signer named after the user, as
    // docker's `trust sign` makes it.
    let two = gun(&srv, "team/two");
    let (l3, img3) = new_layout(work.path(), "v1", &mut rng);
    let alice = reader.clone_with("X", "1");
    alice
        .run(&["push", &oci(&l3, "v1"), &format!("{two}:v1")])
        .ok();
    let out = alice.run(&["trust", "sign", &format!("{two}:v1")]).ok();
    assert!(out.stdout.contains("Created signer: alice"), "{out}");
    let view = d.inspect(&two);
    assert_eq!(view["Signers"][0]["Name"], "alice", "{view}");
    assert_eq!(view["SignedTags"][0]["Digest"], hex_of(&img3.digest));
    assert_eq!(view["SignedTags"][0]["Signers"], json!(["alice"]));
}
