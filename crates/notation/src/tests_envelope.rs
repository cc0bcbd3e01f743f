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

// COSE_Sign1 envelopes: the same checks through the other envelope.

use coset::cbor::value::Value as Cbor;
use coset::{CborSerializable as _, CoseSign1, TaggedCborSerializable as _};

use crate::{Format, verify_format};

fn sign_cose(pki: &Pki, at: i64) -> Vec<u8> {
    Signer::from_pem(pki.key_pem.as_bytes(), pki.chain_pem.as_bytes())
        .unwrap()
        .sign_cose(&target(), at, "berth/test")
        .unwrap()
}

fn check_cose(env: &[u8], pki_ca: &str, level: &str) -> Outcome {
    let doc = policy(level, json!(["*"]));
    verify_format(
        Format::Cose,
        env,
        &target().digest,
        doc.applicable("h/r").unwrap(),
        &store(pki_ca),
        NOW,
    )
}

/// Decodes, changes and re-encodes a COSE envelope. The protected header keeps its original
/// bytes unless `f` clears `protected.original_data`.
fn edit_cose(env: &[u8], f: impl FnOnce(&mut CoseSign1)) -> Vec<u8> {
    let mut m = CoseSign1::from_tagged_slice(env).unwrap();
    f(&mut m);
    m.to_tagged_vec().unwrap()
}

fn text<'a>(rest: &'a [(coset::Label, Cbor)], k: &str) -> &'a Cbor {
    &rest
        .iter()
        .find(|(l, _)| *l == coset::Label::Text(k.into()))
        .unwrap()
        .1
}

#[test]
fn cose_envelope_shape() {
    let pki = good(&rcgen::PKCS_ECDSA_P256_SHA256);
    let env = sign_cose(&pki, NOW);
    // COSE_Sign1_Tagged: tag 18 (0xd2) over a 4-array (0x84).
    assert_eq!(&env[..2], &[0xd2, 0x84]);
    let m = CoseSign1::from_tagged_slice(&env).unwrap();
    let h = &m.protected.header;
    assert_eq!(
        h.alg,
        Some(coset::RegisteredLabelWithPrivate::Assigned(
            coset::iana::Algorithm::ES256
        ))
    );
    // The protected bytes are a map whose alg is -7 (0x26).
    let raw = m.protected.original_data.as_ref().unwrap();
    let map = Cbor::from_slice(raw).unwrap();
    let map = map.as_map().unwrap();
    assert!(map.contains(&(Cbor::Integer(1.into()), Cbor::Integer((-7).into()))));
    assert_eq!(
        h.crit,
        vec![coset::RegisteredLabelWithPrivate::Text(
            "io.cncf.notary.signingScheme".into()
        )]
    );
    assert_eq!(
        h.content_type,
        Some(coset::ContentType::Text(
            "application/vnd.cncf.notary.payload.v1+json".into()
        ))
    );
    assert_eq!(
        text(&h.rest, "io.cncf.notary.signingScheme"),
        &Cbor::Text("notary.x509".into())
    );
    assert_eq!(
        text(&h.rest, "io.cncf.notary.signingTime"),
        &Cbor::Tag(1, Box::new(Cbor::Integer(NOW.into())))
    );
    let x5chain = &m
        .unprotected
        .rest
        .iter()
        .find(|(l, _)| *l == coset::Label::Int(33))
        .unwrap()
        .1;
    let certs = Cert::from_pem_bundle(pki.chain_pem.as_bytes()).unwrap();
    assert_eq!(
        x5chain,
        &Cbor::Array(certs.iter().map(|c| Cbor::Bytes(c.der.clone())).collect())
    );
    assert_eq!(
        text(&m.unprotected.rest, "io.cncf.notary.signingAgent"),
        &Cbor::Text("berth/test".into())
    );
    let payload: Value = serde_json::from_slice(m.payload.as_ref().unwrap()).unwrap();
    assert_eq!(payload, json!({"targetArtifact": target()}));
    assert_eq!(m.signature.len(), 64);
    // The manifest's layer says application/cose.
    let man = crate::signature_manifest_of(Format::Cose, &env, &target(), &[]);
    let man: Value = serde_json::from_slice(&man).unwrap();
    assert_eq!(man["layers"][0]["mediaType"], "application/cose");
}

#[test]
fn cose_verifies_with_every_key_kind() {
    // RSA (PS256) envelopes are checked with notation-go's below and end to end in it::notation.
    for alg in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
    ] {
        let pki = good(alg);
        let env = sign_cose(&pki, NOW);
        match check_cose(&env, &pki.ca_pem, "strict") {
            Outcome::Verified {
                subject,
                signing_time,
                ..
            } => {
                assert!(subject.contains("CN=signer"), "{subject}");
                assert_eq!(signing_time, "2026-06-01T00:00:00Z");
            }
            o => panic!("{o:?}"),
        }
        // The same bytes are no JWS, and a JWS is no COSE message.
        failed(&check(&env, &pki.ca_pem, "strict"), "integrity");
        failed(
            &check_cose(&sign(&pki, NOW), &pki.ca_pem, "strict"),
            "not a COSE_Sign1",
        );
    }
}

#[test]
fn cose_tampering_fails() {
    let pki = good(&rcgen::PKCS_ECDSA_P256_SHA256);
    let env = sign_cose(&pki, NOW);
    verified(&check_cose(&env, &pki.ca_pem, "strict"));
    // The payload names another digest (the signature no longer matches).
    let other = Descriptor::of(OCI_MANIFEST, b"other");
    let bad = edit_cose(&env, |m| {
        m.payload = Some(serde_json::to_vec(&json!({ "targetArtifact": other })).unwrap())
    });
    failed(&check_cose(&bad, &pki.ca_pem, "audit"), "does not verify");
    // A flipped signature bit.
    let bad = edit_cose(&env, |m| m.signature[5] ^= 1);
    failed(&check_cose(&bad, &pki.ca_pem, "audit"), "does not verify");
    // A later signing time in the protected header, re-encoded.
    let bad = edit_cose(&env, |m| {
        m.protected.original_data = None;
        for (l, v) in &mut m.protected.header.rest {
            if *l == coset::Label::Text("io.cncf.notary.signingTime".into()) {
                *v = Cbor::Tag(1, Box::new(Cbor::Integer((NOW + 1).into())));
            }
        }
    });
    failed(&check_cose(&bad, &pki.ca_pem, "audit"), "does not verify");
    // alg swapped for one that does not fit the key.
    let bad = edit_cose(&env, |m| {
        m.protected.original_data = None;
        m.protected.header.alg = Some(coset::RegisteredLabelWithPrivate::Assigned(
            coset::iana::Algorithm::ES384,
        ));
    });
    failed(&check_cose(&bad, &pki.ca_pem, "audit"), "does not match");
    // The chain swapped for another signer's (same CA name, other key).
    let other = good(&rcgen::PKCS_ECDSA_P256_SHA256);
    let other_env = sign_cose(&other, NOW);
    let other_chain = CoseSign1::from_tagged_slice(&other_env)
        .unwrap()
        .unprotected;
    let bad = edit_cose(&env, |m| m.unprotected = other_chain);
    failed(&check_cose(&bad, &pki.ca_pem, "audit"), "does not verify");
    // No x5chain at all.
    let bad = edit_cose(&env, |m| m.unprotected.rest.clear());
    failed(&check_cose(&bad, &pki.ca_pem, "audit"), "x5chain");
    // An untagged COSE_Sign1 is not the tagged form the spec requires.
    let untagged = CoseSign1::from_tagged_slice(&env)
        .unwrap()
        .to_vec()
        .unwrap();
    failed(
        &check_cose(&untagged, &pki.ca_pem, "audit"),
        "not a COSE_Sign1",
    );
    // A critical header nobody understands.
    let bad = edit_cose(&env, |m| {
        m.protected.original_data = None;
        m.protected
            .header
            .crit
            .push(coset::RegisteredLabelWithPrivate::Text("x.unknown".into()));
        m.protected
            .header
            .rest
            .push((coset::Label::Text("x.unknown".into()), Cbor::Bool(true)));
    });
    failed(&check_cose(&bad, &pki.ca_pem, "audit"), "not understood");
    // Garbage.
    failed(
        &check_cose(b"\xd2\x84", &pki.ca_pem, "audit"),
        "not a COSE_Sign1",
    );
}

#[test]
fn cose_trust_digest_and_time_checks_are_the_shared_ones() {
    let pki = good(&rcgen::PKCS_ECDSA_P256_SHA256);
    let env = sign_cose(&pki, NOW);
    let doc = policy("strict", json!(["*"]));
    let p = doc.applicable("h/r").unwrap();
    failed(
        &verify_format(Format::Cose, &env, "sha256:00", p, &store(&pki.ca_pem), NOW),
        "integrity: the signature is for",
    );
    // Another CA in the store: authenticity.
    failed(
        &check_cose(&env, &ca("Other CA").pem(), "strict"),
        "does not lead",
    );
    // The leaf expired by now: authenticTimestamp at strict, logged at permissive.
    let expired = leaf(
        &ca("Test CA"),
        &rcgen::PKCS_ECDSA_P256_SHA256,
        (2026, 1, 1),
        true,
    );
    let env = sign_cose(&expired, NOW - 200 * 86400);
    failed(
        &check_cose(&env, &expired.ca_pem, "strict"),
        "authenticTimestamp",
    );
    verified(&check_cose(&env, &expired.ca_pem, "permissive"));
    // No codeSigning EKU: authenticity.
    let server = leaf(
        &ca("Test CA"),
        &rcgen::PKCS_ECDSA_P256_SHA256,
        (2029, 1, 1),
        false,
    );
    failed(
        &check_cose(&sign_cose(&server, NOW), &server.ca_pem, "strict"),
        "codeSigning",
    );
}

/// COSE envelopes notation itself produced (notation-go's internal/testdata/cose_signature.sig
/// and verifier/testdata/timestamp/sigEnv/coseWithTimestamp.sig): RSA PS256 (-37), a
/// self-signed leaf, a tag-1 signing time; the second carries a timestamp countersignature,
/// which Berth does not read but must not choke on.
#[test]
fn notation_go_cose_vectors_verify() {
    for (env, digest, size, subject) in [
        (
            &include_bytes!("testdata/notation-go-cose.sig")[..],
            "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0",
            481,
            "x509.subject: CN=alpine, O=Notary, L=Seattle, ST=WA, C=US",
        ),
        (
            &include_bytes!("testdata/notation-go-cose-with-timestamp.sig")[..],
            "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda",
            528,
            "*",
        ),
    ] {
        let e = crate::cose::verify_integrity(env).unwrap();
        assert_eq!(e.alg, "PS256");
        assert_eq!(
            e.signing_agent
                .as_deref()
                .map(|a| a.starts_with("Notation/")),
            Some(true)
        );
        assert_eq!((e.target.digest.as_str(), e.target.size), (digest, size));
        let mut s = TrustStore::default();
        s.add("ca:test", vec![e.chain.last().unwrap().clone()]);
        let doc = policy("permissive", json!([subject]));
        let p = doc.applicable("h/r").unwrap();
        match verify_format(Format::Cose, env, digest, p, &s, NOW) {
            Outcome::Verified { .. } => {}
            o => panic!("{o:?}"),
        }
        failed(
            &verify_format(
                Format::Cose,
                env,
                digest,
                p,
                &store(&ca("Test CA").pem()),
                NOW,
            ),
            "does not lead",
        );
        let bad = edit_cose(env, |m| m.signature[0] ^= 0x80);
        failed(
            &verify_format(Format::Cose, &bad, digest, p, &s, NOW),
            "does not verify",
        );
    }
    // The first one's signing time: 2023-03-14T04:45:22Z, read from its tag-1 value.
    let e = crate::cose::verify_integrity(include_bytes!("testdata/notation-go-cose.sig")).unwrap();
    assert_eq!(crate::time::format(e.signing_time), "2023-03-14T04:45:22Z");
}

/// notation-core-go's COSE conformance message (signature/cose/testdata/conformance.json):
/// signed with keys not published, with a critical header of its own and no x5chain. Berth
/// parses it and refuses it for the right reason.
#[test]
fn notation_core_go_conformance_message_is_refused_for_its_unknown_critical_header() {
    let env =
        hex::decode(include_str!("testdata/notation-core-go-cose-conformance.hex").trim()).unwrap();
    let m = CoseSign1::from_tagged_slice(&env).unwrap();
    assert_eq!(
        m.protected.header.alg,
        Some(coset::RegisteredLabelWithPrivate::Assigned(
            coset::iana::Algorithm::PS384
        ))
    );
    assert_eq!(m.payload.as_deref(), Some(&b"hello COSE"[..]));
    let e = crate::cose::verify_integrity(&env).unwrap_err();
    assert!(e.0.contains("\"signedCritKey1\" is not understood"), "{e}");
}
