//! `berth verify` over every signature format (issue 15, "one verify entry point"): tags of one
//! repository signed with DCT only (by the notary CLI), a Notary Project signature only, a
//! cosign signature only (made by Python `cryptography`), and none; exit codes and the line
//! each signature gets, `--format` restricting, and a tag moved away from its DCT-signed digest.

use crate::auth_support::*;
use crate::cosign::signature_manifest_in;
use crate::harness::*;
use crate::notation::{berth, python, script, write_notation_config};
use crate::trust_harness::*;

const REPO: &str = "formats/app";

#[tokio::test]
async fn verify_accepts_each_format_alone_and_refuses_the_unsigned() {
    let srv = start_server();
    enable_trust(&srv).await;
    let mut rng = Rng::new();
    let dct = srv.push_image(REPO, Some("dct"), "amd64", &mut rng).await;
    let nota = srv
        .push_image(REPO, Some("notation"), "arm64", &mut rng)
        .await;
    let cos = srv
        .push_image(REPO, Some("cosign"), "s390x", &mut rng)
        .await;
    srv.push_image(REPO, Some("none"), "riscv64", &mut rng)
        .await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let scope = format!("{}/{REPO}", srv.host());
    let g = gun(&srv, REPO);
    assert_eq!(scope, g);
    let pki = home.join("pki");
    python(&[script("notation_pki.py").as_os_str(), pki.as_os_str()]).ok();
    write_notation_config(home, &scope, &pki.join("ca.pem"), "*");
    let p = |f: &str| pki.join(f).to_string_lossy().into_owned();
    let r = |tag: &str| format!("{scope}:{tag}");

    // DCT: the notary CLI signs tag dct with the image's digest and size.
    let n = Notary::with_login(&srv, &Cred::owner());
    n.run(&["init", &g, "-p"]).ok();
    let hex = dct.digest.trim_start_matches("sha256:");
    n.run(&[
        "addhash",
        &g,
        "dct",
        &dct.manifest.len().to_string(),
        "--sha256",
        hex,
    ])
    .ok();
    n.run(&["publish", &g]).ok();
    // Notary Project: berth signs tag notation (COSE, so both envelopes appear across tests).
    berth(
        &srv,
        home,
        &[
            "sign",
            &r("notation"),
            "--format",
            "notation",
            "--envelope",
            "cose",
            "--key",
            &p("leaf.key"),
            "--cert",
            &p("chain.pem"),
        ],
    )
    .ok();
    // cosign: a signature made by Python under cosign's tag.
    let keys = home.join("cosign");
    python(&[
        script("cosign_sign.py").as_os_str(),
        keys.as_os_str(),
        scope.as_ref(),
        cos.digest.as_ref(),
        dct.digest.as_ref(),
    ])
    .ok();
    let good = std::fs::read(keys.join("good.json")).unwrap();
    let good_sig = std::fs::read_to_string(keys.join("good.sig")).unwrap();
    let m = signature_manifest_in(&srv, REPO, &good, &good_sig, None).await;
    let sig_tag = format!("{}.sig", cos.digest.replacen(':', "-", 1));
    srv.push_manifest(REPO, &sig_tag, OCI_MANIFEST, &m).await;
    let pubkey = p("../cosign/pub.pem");

    // DCT only: verified by tag and by digest, with one DCT line; notation found nothing.
    for reference in [r("dct"), format!("{scope}@{}", dct.digest)] {
        let out = berth(&srv, home, &["verify", &reference]).ok();
        assert!(
            out.stdout.contains(&format!(
                "DCT signature {g}:dct: verified, signed by targets"
            )),
            "{out}"
        );
        assert!(out.stdout.contains("DCT: 1 signed tag(s)"), "{out}");
        assert!(out.stdout.contains("0 of 0 signature(s)"), "{out}");
        assert!(!out.stdout.contains("Signature sha256:"), "{out}");
    }
    let out = berth(&srv, home, &["verify", &r("dct"), "--format", "notation"]).fails();
    assert!(
        out.stderr.contains("has no Notary Project signature"),
        "{out}"
    );
    let out = berth(&srv, home, &["verify", &r("dct"), "--format", "dct"]).ok();
    assert!(out.stdout.contains("DCT: 1 signed tag(s)"), "{out}");

    // Notary Project only.
    let out = berth(&srv, home, &["verify", &r("notation")]).ok();
    assert!(out.stdout.contains(": verified, signed by"), "{out}");
    assert!(out.stdout.contains("CN=Berth Signer"), "{out}");
    assert!(out.stdout.contains("notation/cose"), "{out}");
    assert!(out.stdout.contains("DCT: 0 signed tag(s)"), "{out}");
    assert!(!out.stdout.contains("DCT signature"), "{out}");
    let out = berth(&srv, home, &["verify", &r("notation"), "--format", "dct"]).fails();
    assert!(out.stderr.contains("its tag no DCT trust data"), "{out}");

    // cosign only: with the key it verifies; without, nothing else does.
    let out = berth(
        &srv,
        home,
        &["verify", &r("cosign"), "--cosign-key", &pubkey],
    )
    .ok();
    assert!(out.stdout.contains("Cosign signature"), "{out}");
    assert!(
        out.stdout.contains("0 Notary Project and 1 cosign"),
        "{out}"
    );
    let out = berth(&srv, home, &["verify", &r("cosign")]).fails();
    assert!(
        out.stderr
            .contains("has no Notary Project signature and its tag no DCT trust data"),
        "{out}"
    );
    let out = berth(&srv, home, &["verify", &r("cosign"), "--format", "cosign"]).fails();
    assert!(
        out.stderr.contains("--format cosign needs --cosign-key"),
        "{out}"
    );

    // None: refused, naming every format it looked for.
    let out = berth(&srv, home, &["verify", &r("none"), "--cosign-key", &pubkey]).fails();
    assert!(
        out.stderr
            .contains("has no cosign or Notary Project signature and its tag no DCT trust data"),
        "{out}"
    );

    // Tag dct moved to the notation-signed image: DCT no longer counts for it (the trust data
    // names the old digest), the Notary Project signature of the new digest does.
    srv.push_manifest(REPO, "dct", OCI_MANIFEST, &nota.manifest)
        .await;
    let out = berth(&srv, home, &["verify", &r("dct"), "--format", "dct"]).fails();
    assert!(
        out.stdout.contains(&format!(
            "DCT signature {g}:dct: FAILED: the trust data signs {} for tag dct, not {}",
            dct.digest, nota.digest
        )),
        "{out}"
    );
    let out = berth(&srv, home, &["verify", &r("dct")]).ok();
    assert!(out.stdout.contains("DCT signature"), "{out}");
    assert!(out.stdout.contains("FAILED"), "{out}");
    assert!(
        out.stdout.contains("1 Notary Project and 0 cosign"),
        "{out}"
    );
}
