//! Sign, then verify under trust policies: good signatures, and each way one can be wrong.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, date_time_ymd,
};
use serde_json::{Value, json};

use crate::cert::Cert;
use crate::{Descriptor, OCI_MANIFEST, Outcome, Signer, TrustPolicyDocument, TrustStore, verify};

/// 2026-06-01.
const NOW: i64 = 1_780_272_000;

struct Pki {
    ca_pem: String,
    chain_pem: String,
    key_pem: String,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name
        .push(DnType::OrganizationName, "Berth Test");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.not_before = date_time_ymd(2025, 1, 1);
    p.not_after = date_time_ymd(2030, 1, 1);
    let k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    CertifiedIssuer::self_signed(p, k).unwrap()
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    alg: &'static rcgen::SignatureAlgorithm,
    not_after: (i32, u8, u8),
    code_signing: bool,
) -> Pki {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, "signer");
    p.distinguished_name.push(DnType::OrganizationName, "Acme");
    p.distinguished_name.push(DnType::CountryName, "US");
    p.not_before = date_time_ymd(2025, 6, 1);
    p.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
    p.extended_key_usages = vec![if code_signing {
        ExtendedKeyUsagePurpose::CodeSigning
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let k = KeyPair::generate_for(alg).unwrap();
    let c = p.signed_by(&k, issuer).unwrap();
    Pki {
        ca_pem: issuer.pem(),
        chain_pem: format!("{}{}", c.pem(), issuer.pem()),
        key_pem: k.serialize_pem(),
    }
}

fn good(alg: &'static rcgen::SignatureAlgorithm) -> Pki {
    leaf(&ca("Test CA"), alg, (2029, 1, 1), true)
}

fn policy(level: &str, identities: Value) -> TrustPolicyDocument {
    TrustPolicyDocument::parse(
        json!({
            "version": "1.0",
            "trustPolicies": [{
                "name": "p",
                "registryScopes": ["*"],
                "signatureVerification": {"level": level},
                "trustStores": ["ca:test"],
                "trustedIdentities": identities,
            }]
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

fn store(pem: &str) -> TrustStore {
    let mut s = TrustStore::default();
    s.add("ca:test", Cert::from_pem_bundle(pem.as_bytes()).unwrap());
    s
}

fn target() -> Descriptor {
    Descriptor::of(OCI_MANIFEST, b"{\"schemaVersion\":2}")
}

fn sign(pki: &Pki, at: i64) -> Vec<u8> {
    Signer::from_pem(pki.key_pem.as_bytes(), pki.chain_pem.as_bytes())
        .unwrap()
        .sign(&target(), at, "berth/test")
        .unwrap()
}

fn check(env: &[u8], pki_ca: &str, level: &str) -> Outcome {
    let doc = policy(level, json!(["*"]));
    verify(
        env,
        &target().digest,
        doc.applicable("h/r").unwrap(),
        &store(pki_ca),
        NOW,
    )
}

fn failed(o: &Outcome, needle: &str) {
    match o {
        Outcome::Failed { reason, .. } => {
            assert!(reason.contains(needle), "{reason:?} lacks {needle:?}")
        }
        other => panic!("expected a failure with {needle:?}, got {other:?}"),
    }
}

fn verified(o: &Outcome) {
    assert!(matches!(o, Outcome::Verified { .. }), "{o:?}");
}

/// Rewrites one part of the envelope.
fn edit(env: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(env).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn envelope_shape() {
    let pki = good(&rcgen::PKCS_ECDSA_P256_SHA256);
    let env: Value = serde_json::from_slice(&sign(&pki, NOW)).unwrap();
    let prot: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(env["protected"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(prot["alg"], "ES256");
    assert_eq!(prot["crit"], json!(["io.cncf.notary.signingScheme"]));
    assert_eq!(prot["cty"], "application/vnd.cncf.notary.payload.v1+json");
    assert_eq!(prot["io.cncf.notary.signingScheme"], "notary.x509");
    assert_eq!(prot["io.cncf.notary.signingTime"], "2026-06-01T00:00:00Z");
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(env["payload"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload, json!({"targetArtifact": target()}));
    assert_eq!(env["header"]["x5c"].as_array().unwrap().len(), 2);
    assert_eq!(env["header"]["io.cncf.notary.signingAgent"], "berth/test");
    // ES256 signatures are raw r||s.
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(env["signature"].as_str().unwrap())
            .unwrap()
            .len(),
        64
    );
}

#[test]
fn p256_and_p384_verify() {
    for (alg, jws) in [
        (&rcgen::PKCS_ECDSA_P256_SHA256, "ES256"),
        (&rcgen::PKCS_ECDSA_P384_SHA384, "ES384"),
    ] {
        let pki = good(alg);
        let s = Signer::from_pem(pki.key_pem.as_bytes(), pki.chain_pem.as_bytes()).unwrap();
        assert_eq!(s.alg(), jws);
        let o = check(&sign(&pki, NOW), &pki.ca_pem, "strict");
        match &o {
            Outcome::Verified {
                subject, logged, ..
            } => {
                assert!(subject.contains("CN=signer"), "{subject}");
                assert!(logged[0].contains("ca:test"), "{logged:?}");
            }
            _ => panic!("{o:?}"),
        }
    }
}

#[test]
fn key_must_match_leaf() {
    let a = good(&rcgen::PKCS_ECDSA_P256_SHA256);
    let b = good(&rcgen::PKCS_ECDSA_P256_SHA256);
    let e = Signer::from_pem(a.key_pem.as_bytes(), b.chain_pem.as_bytes())
        .err()
        .unwrap();
    assert!(e.0.contains("does not belong"), "{e}");
}

#[test]
fn tampered_payload_signature_and_chain_fail() {
    let pki = good(&rcgen::PKCS_ECDSA_P256_SHA256);
    let env = sign(&pki, NOW);
    verified(&check(&env, &pki.ca_pem, "strict"));
    // Another target in the payload, signature kept.
    let other = Descriptor::of(OCI_MANIFEST, b"other");
    let bad_payload = edit(&env, |v| {
        v["payload"] = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&json!({"targetArtifact": other})).unwrap())
            .into()
    });
    failed(
        &check(&bad_payload, &pki.ca_pem, "audit"),
        "does not verify",
    );
    // One bit of the signature flipped.
    let bad_sig = edit(&env, |v| {
        let mut s = URL_SAFE_NO_PAD
            .decode(v["signature"].as_str().unwrap())
            .unwrap();
        s[10] ^= 1;
        v["signature"] = URL_SAFE_NO_PAD.encode(s).into();
    });
    failed(&check(&bad_sig, &pki.ca_pem, "strict"), "does not verify");
    // The chain swapped for another signer's: the signature no longer matches the leaf.
    let other_pki = good(&rcgen::PKCS_ECDSA_P256_SHA256);
    let other_env: Value = serde_json::from_slice(&sign(&other_pki, NOW)).unwrap();
    let bad_chain = edit(&env, |v| {
        v["header"]["x5c"] = other_env["header"]["x5c"].clone()
    });
    failed(&check(&bad_chain, &pki.ca_pem, "strict"), "does not verify");
    // Header tampering: an unknown critical header, a non-notary cty.
    let prot = |v: &mut Value, f: &dyn Fn(&mut Value)| {
        let mut p: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(v["protected"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        f(&mut p);
        v["protected"] = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&p).unwrap())
            .into();
    };
    let crit = edit(&env, |v| {
        prot(v, &|p| {
            p["crit"] = json!(["io.cncf.notary.signingScheme", "x.unknown"]);
            p["x.unknown"] = json!(1);
        })
    });
    failed(&check(&crit, &pki.ca_pem, "strict"), "not understood");
    let cty = edit(&env, |v| prot(v, &|p| p["cty"] = json!("text/plain")));
    failed(&check(&cty, &pki.ca_pem, "strict"), "cty");
}

#[test]
fn wrong_digest_fails_at_every_level() {
    let pki = good(&rcgen::PKCS_ECDSA_P256_SHA256);
    let env = sign(&pki, NOW);
    let doc = policy("audit", json!(["*"]));
    let o = verify(
        &env,
        "sha256:00",
        doc.applicable("h/r").unwrap(),
        &store(&pki.ca_pem),
        NOW,
    );
    failed(&o, "not sha256:00");
}

#[test]
fn untrusted_ca_fails_unless_audit() {
    let pki = good(&rcgen::PKCS_ECDSA_P256_SHA256);
    let other = ca("Other CA");
    let env = sign(&pki, NOW);
    failed(&check(&env, &other.pem(), "strict"), "does not lead");
    failed(&check(&env, &other.pem(), "permissive"), "does not lead");
    // audit only logs authenticity failures.
    match check(&env, &other.pem(), "audit") {
        Outcome::Verified { logged, .. } => {
            assert!(
                logged.iter().any(|l| l.contains("does not lead")),
                "{logged:?}"
            )
        }
        o => panic!("{o:?}"),
    }
    // A CA with the same name but another key is not the trusted one.
    let twin = ca("Test CA");
    failed(&check(&env, &twin.pem(), "strict"), "does not lead");
}

#[test]
fn expired_certificate_and_signing_time() {
    let pki = leaf(
        &ca("Test CA"),
        &rcgen::PKCS_ECDSA_P256_SHA256,
        (2026, 1, 1),
        true,
    );
    let env = sign(&pki, NOW);
    failed(&check(&env, &pki.ca_pem, "strict"), "authenticTimestamp");
    // permissive logs it.
    match check(&env, &pki.ca_pem, "permissive") {
        Outcome::Verified { logged, .. } => {
            assert!(
                logged.iter().any(|l| l.starts_with("authenticTimestamp")),
                "{logged:?}"
            )
        }
        o => panic!("{o:?}"),
    }
    // A valid certificate, but a signing time before it was issued.
    let pki = good(&rcgen::PKCS_ECDSA_P256_SHA256);
    let env = sign(&pki, NOW - 2 * 365 * 86400);
    failed(&check(&env, &pki.ca_pem, "strict"), "signing time");
}

#[test]
fn code_signing_eku_required() {
    let pki = leaf(
        &ca("Test CA"),
        &rcgen::PKCS_ECDSA_P256_SHA256,
        (2029, 1, 1),
        false,
    );
    failed(
        &check(&sign(&pki, NOW), &pki.ca_pem, "strict"),
        "codeSigning",
    );
}

#[test]
fn trusted_identities() {
    let pki = good(&rcgen::PKCS_ECDSA_P256_SHA256);
    let env = sign(&pki, NOW);
    let run = |ids: Value| {
        let doc = policy("strict", ids);
        verify(
            &env,
            &target().digest,
            doc.applicable("h/r").unwrap(),
            &store(&pki.ca_pem),
            NOW,
        )
    };
    verified(&run(json!(["x509.subject: C=US, O=Acme, CN=signer"])));
    verified(&run(json!([
        "x509.subject: O=Other",
        "x509.subject: O=Acme"
    ])));
    failed(
        &run(json!(["x509.subject: C=US, O=Acme, CN=someone"])),
        "trusted identities",
    );
}

#[test]
fn skip_level_and_scopes() {
    let doc = TrustPolicyDocument::parse(
        json!({
            "version": "1.0",
            "trustPolicies": [
                {"name": "all", "registryScopes": ["*"], "signatureVerification": {"level": "strict"},
                 "trustStores": ["ca:test"], "trustedIdentities": ["*"]},
                {"name": "one", "registryScopes": ["reg.example:5000/app", "reg.example:5000/lib"],
                 "signatureVerification": {"level": "skip"}},
            ]
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(doc.applicable("reg.example:5000/app").unwrap().name, "one");
    assert_eq!(doc.applicable("reg.example:5000/lib").unwrap().name, "one");
    assert_eq!(doc.applicable("reg.example:5000/app2").unwrap().name, "all");
    assert_eq!(doc.applicable("other/app").unwrap().name, "all");
    let p = doc.applicable("reg.example:5000/app").unwrap();
    assert_eq!(
        verify(b"garbage", "sha256:00", p, &TrustStore::default(), NOW),
        Outcome::Skipped
    );
    // Without a "*" policy, an unnamed repository has none.
    let doc = TrustPolicyDocument::parse(
        json!({"version": "1.0", "trustPolicies": [
            {"name": "one", "registryScopes": ["reg.example/app"], "signatureVerification": {"level": "strict"},
             "trustStores": ["ca:test"], "trustedIdentities": ["*"]}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert!(doc.applicable("reg.example/other").is_err());
}

#[test]
fn invalid_policies_are_refused() {
    let p = |tp: Value| {
        TrustPolicyDocument::parse(
            json!({"version": "1.0", "trustPolicies": tp})
                .to_string()
                .as_bytes(),
        )
    };
    let ok = json!({"name": "a", "registryScopes": ["*"], "signatureVerification": {"level": "strict"},
                    "trustStores": ["ca:x"], "trustedIdentities": ["*"]});
    assert!(p(json!([ok])).is_ok());
    let mut dup = ok.clone();
    dup["name"] = "b".into();
    assert!(p(json!([ok, dup])).is_err(), "two policies for *");
    let mut skip_all = ok.clone();
    skip_all["signatureVerification"]["level"] = "skip".into();
    assert!(p(json!([skip_all])).is_err(), "skip with *");
    let mut bad_level = ok.clone();
    bad_level["signatureVerification"]["level"] = "lenient".into();
    assert!(p(json!([bad_level])).is_err());
    let mut no_store = ok.clone();
    no_store["trustStores"] = json!([]);
    assert!(p(json!([no_store])).is_err());
    let mut mixed = ok.clone();
    mixed["registryScopes"] = json!(["*", "h/r"]);
    assert!(p(json!([mixed])).is_err());
    assert!(TrustPolicyDocument::parse(br#"{"version":"2.0","trustPolicies":[]}"#).is_err());
}

/// Envelopes notation itself produced (notation-go's testdata: internal/testdata/jws_signature.sig
/// and verifier/testdata/timestamp/sigEnv/withoutTimestamp.sig): RSA PS256, a self-signed
/// leaf, signing times with an offset. Berth must read and verify them as notation does.
#[test]
fn notation_go_vectors_verify() {
    for (env, digest, size) in [
        (
            &include_bytes!("testdata/notation-go-jws.sig")[..],
            "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0",
            481,
        ),
        (
            &include_bytes!("testdata/notation-go-without-timestamp.sig")[..],
            "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda",
            528,
        ),
    ] {
        let e = crate::Envelope::verify_integrity(env).unwrap();
        assert_eq!(e.alg, "PS256");
        assert!(matches!(e.chain[0].key, crate::cert::KeyKind::Rsa(_)));
        assert_eq!((e.target.digest.as_str(), e.target.size), (digest, size));
        // Trusting its own (self-signed) certificate, under a policy naming its subject.
        let mut s = TrustStore::default();
        s.add("ca:test", vec![e.chain[0].clone()]);
        let doc = policy(
            "strict",
            json!(["x509.subject: CN=alpine, O=Notary, L=Seattle, ST=WA, C=US"]),
        );
        let p = doc.applicable("h/r").unwrap();
        match verify(env, digest, p, &s, NOW) {
            Outcome::Verified { subject, .. } => {
                assert!(subject.contains("CN=alpine"), "{subject}")
            }
            o => panic!("{o:?}"),
        }
        // Another store, another digest, a flipped signature bit: refused.
        failed(
            &verify(env, digest, p, &store(&ca("Test CA").pem()), NOW),
            "does not lead",
        );
        failed(&verify(env, "sha256:00", p, &s, NOW), "integrity");
        let bad = edit(env, |v| {
            let mut sig = URL_SAFE_NO_PAD
                .decode(v["signature"].as_str().unwrap())
                .unwrap();
            sig[0] ^= 0x80;
            v["signature"] = URL_SAFE_NO_PAD.encode(sig).into();
        });
        failed(&verify(&bad, digest, p, &s, NOW), "does not verify");
    }
}
