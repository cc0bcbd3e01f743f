//! Dispatch without a server: DCT trust data from a memory transport, Notary Project (JWS and
//! COSE) and cosign signatures from a registry in memory.

use std::collections::BTreeMap;

use base64::Engine as _;
use berth_notation::{Descriptor, OCI_MANIFEST, Signer, TrustPolicyDocument};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use ring::signature::{self as rs, KeyPair as _};
use serde_json::json;

use super::*;
use crate::tufclient::tests::{GUN, Repo, TempDir, run};

fn sha256(b: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b))
    )
}

/// A registry in memory: manifests by digest (and tag), blobs, and the referrers index that
/// manifests' `subject` fields make.
#[derive(Default)]
struct Memory {
    manifests: BTreeMap<String, Vec<u8>>,
    tags: BTreeMap<String, String>,
    blobs: BTreeMap<String, Vec<u8>>,
    no_referrers_api: bool,
}

impl Memory {
    fn put(&mut self, bytes: Vec<u8>, tag: Option<&str>) -> String {
        let d = sha256(&bytes);
        self.manifests.insert(d.clone(), bytes);
        if let Some(t) = tag {
            self.tags.insert(t.to_owned(), d.clone());
        }
        d
    }

    fn blob(&mut self, bytes: &[u8]) -> String {
        let d = sha256(bytes);
        self.blobs.insert(d.clone(), bytes.to_vec());
        d
    }
}

impl Artifacts for Memory {
    async fn referrers(&self, digest: &str, artifact_type: &str) -> Result<Vec<Value>, String> {
        if self.no_referrers_api {
            return Err("404 from the referrers API".into());
        }
        Ok(self
            .manifests
            .iter()
            .filter_map(|(d, b)| {
                let v: Value = serde_json::from_slice(b).ok()?;
                (v["subject"]["digest"] == digest && v["artifactType"] == artifact_type).then(
                    || json!({"digest": d, "artifactType": v["artifactType"], "mediaType": OCI_MANIFEST}),
                )
            })
            .collect())
    }

    async fn manifest(&self, reference: &str) -> Result<Option<(String, Vec<u8>)>, String> {
        let d = self.tags.get(reference).map_or(reference, String::as_str);
        Ok(self.manifests.get(d).map(|b| (d.to_owned(), b.clone())))
    }

    async fn blob(&self, digest: &str) -> Result<Vec<u8>, String> {
        self.blobs.get(digest).cloned().ok_or("no such blob".into())
    }
}

/// Trust data that is not there, or not reachable.
struct NoTrust(bool);

impl TrustSource for NoTrust {
    async fn trust_data(&self) -> Result<Option<TrustData>, String> {
        if self.0 {
            Err(Error::Malformed {
                role: "timestamp".into(),
                msg: "garbage".into(),
            }
            .to_string())
        } else {
            Ok(None)
        }
    }
}

struct Pki {
    ca: String,
    chain: String,
    key: String,
}

fn pki() -> Pki {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, "Verify CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "Verify Signer");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    let k = KeyPair::generate().unwrap();
    let leaf = p.signed_by(&k, &ca).unwrap();
    Pki {
        ca: ca.pem(),
        chain: format!("{}{}", leaf.pem(), ca.pem()),
        key: k.serialize_pem(),
    }
}

fn setup(pki: &Pki) -> NotationSetup {
    let doc = TrustPolicyDocument::parse(
        json!({
            "version": "1.0",
            "trustPolicies": [{
                "name": "p", "registryScopes": ["*"],
                "signatureVerification": {"level": "strict"},
                "trustStores": ["ca:t"], "trustedIdentities": ["*"],
            }]
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let mut store = TrustStore::default();
    store.add(
        "ca:t",
        berth_notation::cert::Cert::from_pem_bundle(pki.ca.as_bytes()).unwrap(),
    );
    NotationSetup::Check {
        policy: Box::new(doc.applicable("h/r").unwrap().clone()),
        store,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Pushes a Notary Project signature of `target` in `format` into `reg`.
fn notation_sign(reg: &mut Memory, pki: &Pki, target: &Descriptor, format: Format) -> String {
    let s = Signer::from_pem(pki.key.as_bytes(), pki.chain.as_bytes()).unwrap();
    let env = s.sign_envelope(format, target, now(), "test").unwrap();
    reg.blob(&env);
    reg.put(
        berth_notation::signature_manifest_of(format, &env, target, &s.thumbprints()),
        None,
    )
}

/// A cosign key pair: the signer and the public half.
fn cosign_key() -> (rs::EcdsaKeyPair, PublicKey) {
    let rng = ring::rand::SystemRandom::new();
    let alg = &rs::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = rs::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let kp = rs::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    spki.extend_from_slice(kp.public_key().as_ref());
    (kp, PublicKey::from_spki_der(&spki).unwrap())
}

/// Pushes a cosign signature manifest of `digest`, tagged `sha256-<hex>.sig`.
fn cosign_sign(reg: &mut Memory, kp: &rs::EcdsaKeyPair, digest: &str, signed: &str) -> String {
    let payload = serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": "reg.example/app"},
            "image": {"docker-manifest-digest": signed},
            "type": cosign::PAYLOAD_TYPE,
        },
        "optional": null,
    }))
    .unwrap();
    let sig = kp.sign(&ring::rand::SystemRandom::new(), &payload).unwrap();
    let blob = reg.blob(&payload);
    let m = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"{}"), "size": 2},
        "layers": [{
            "mediaType": cosign::LAYER_MEDIA_TYPE, "digest": blob, "size": payload.len(),
            "annotations": {cosign::SIGNATURE_ANNOTATION:
                base64::engine::general_purpose::STANDARD.encode(sig.as_ref())},
        }],
    });
    reg.put(
        serde_json::to_vec(&m).unwrap(),
        Some(&cosign::signature_tag(digest)),
    )
}

fn all(notation: NotationSetup, cosign_keys: Vec<(String, PublicKey)>) -> VerifyOptions {
    VerifyOptions {
        formats: vec![Kind::Dct, Kind::Notation, Kind::Cosign],
        notation,
        cosign_keys,
        now: now(),
    }
}

/// The subject Repo::new signs as `v1` in targets/releases.
fn v1(tag: Option<&str>) -> Subject {
    Subject {
        gun: GUN.into(),
        tag: tag.map(str::to_owned),
        digest: sha256(b"v1 manifest"),
        size: b"v1 manifest".len() as u64,
    }
}

#[test]
fn dct_counts_only_for_the_signed_digest() {
    let repo = Repo::new();
    let dir = TempDir::new();
    let tuf = TufClient::new(repo.serve(), &dir.0, GUN);
    let data = run(tuf.trust_data()).unwrap().unwrap();
    // The tag names exactly the signed digest: valid, signed by targets/releases.
    let f = dct_signatures(&data, &v1(Some("v1")));
    assert_eq!(f.len(), 1);
    assert!(f[0].is_valid(), "{f:?}");
    assert_eq!(f[0].signer, "targets/releases");
    assert_eq!(f[0].id, format!("{GUN}:v1"));
    // The registry serves another digest for the tag: invalid, and says which.
    let moved = Subject {
        digest: sha256(b"something else"),
        ..v1(Some("v1"))
    };
    let f = dct_signatures(&data, &moved);
    assert_eq!(f.len(), 1);
    assert!(
        matches!(&f[0].verdict, Verdict::Invalid(r) if r.contains("not sha256:")),
        "{f:?}"
    );
    // Same digest, another size: invalid.
    let f = dct_signatures(
        &data,
        &Subject {
            size: 3,
            ..v1(Some("v1"))
        },
    );
    assert!(
        matches!(&f[0].verdict, Verdict::Invalid(r) if r.contains("bytes")),
        "{f:?}"
    );
    // An unsigned tag has no DCT signature at all (even if its digest is signed elsewhere).
    assert!(dct_signatures(&data, &v1(Some("v9"))).is_empty());
    // By digest: any signed tag naming it counts.
    let f = dct_signatures(&data, &v1(None));
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].is_valid());
    assert_eq!(f[0].id, format!("{GUN}:v1"));
    let f = dct_signatures(
        &data,
        &Subject {
            digest: sha256(b"base manifest"),
            size: b"base manifest".len() as u64,
            ..v1(None)
        },
    );
    assert_eq!(
        f.iter().map(|f| f.signer.as_str()).collect::<Vec<_>>(),
        ["targets"]
    );
    assert!(
        dct_signatures(
            &data,
            &Subject {
                digest: sha256(b"x"),
                ..v1(None)
            }
        )
        .is_empty()
    );

    // Through the entry point: DCT alone verifies v1, and is not looked at when not asked.
    let reg = Memory::default();
    let opts = all(NotationSetup::Unchecked("no policy".into()), vec![]);
    let r = run(verify(&reg, &tuf, &v1(Some("v1")), &opts));
    assert_eq!((r.valid(Kind::Dct), r.verified()), (1, 1), "{r:?}");
    assert!(r.notes[0].contains("not checked: no policy"), "{r:?}");
    let only_notation = VerifyOptions {
        formats: vec![Kind::Notation],
        ..all(NotationSetup::Unchecked("no policy".into()), vec![])
    };
    assert_eq!(
        run(verify(&reg, &tuf, &v1(Some("v1")), &only_notation)).verified(),
        0
    );
}

#[test]
fn dct_trust_data_errors_are_invalid_signatures_and_absence_is_none() {
    let reg = Memory::default();
    let opts = all(NotationSetup::Unchecked("x".into()), vec![]);
    let r = run(verify(&reg, &NoTrust(false), &v1(Some("v1")), &opts));
    assert!(r.found.is_empty(), "{r:?}");
    let r = run(verify(&reg, &NoTrust(true), &v1(Some("v1")), &opts));
    assert_eq!(r.found.len(), 1);
    assert!(matches!(&r.found[0].verdict, Verdict::Invalid(m) if m.contains("garbage")));
    assert_eq!(r.verified(), 0);
}

#[test]
fn every_format_is_dispatched_to_its_verifier() {
    let pki = pki();
    let mut reg = Memory::default();
    let target = Descriptor::of(OCI_MANIFEST, b"v1 manifest");
    let jws = notation_sign(&mut reg, &pki, &target, Format::Jws);
    let cose = notation_sign(&mut reg, &pki, &target, Format::Cose);
    // A notary signature of another image is not listed for this one.
    notation_sign(
        &mut reg,
        &pki,
        &Descriptor::of(OCI_MANIFEST, b"other"),
        Format::Cose,
    );
    let (kp, key) = cosign_key();
    let cos = cosign_sign(&mut reg, &kp, &target.digest, &target.digest);
    let repo = Repo::new();
    let dir = TempDir::new();
    let tuf = TufClient::new(repo.serve(), &dir.0, GUN);

    let opts = all(setup(&pki), vec![("cosign.pub".into(), key.clone())]);
    let r = run(verify(&reg, &tuf, &v1(Some("v1")), &opts));
    let got: Vec<(&str, &str, bool)> = r
        .found
        .iter()
        .map(|f| (f.format.as_str(), f.id.as_str(), f.is_valid()))
        .collect();
    let mut want_notation = vec![
        ("notation/jws", jws.as_str(), true),
        ("notation/cose", cose.as_str(), true),
    ];
    want_notation.sort_by_key(|w| w.1);
    let cos_id = format!("{cos} layer 0");
    let mut want = vec![("dct", "", true)];
    want.extend(want_notation);
    want.push(("cosign", cos_id.as_str(), true));
    assert_eq!(got.len(), want.len(), "{r:?}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((g.0, g.2), (w.0, w.2), "{r:?}");
        if !w.1.is_empty() {
            assert_eq!(g.1, w.1);
        }
    }
    assert_eq!(r.notation_listed, 2);
    assert!(r.found[1].signer.contains("CN=Verify Signer"), "{r:?}");
    assert_eq!(r.found[3].signer, "cosign.pub");
    assert_eq!(
        (
            r.valid(Kind::Dct),
            r.valid(Kind::Notation),
            r.valid(Kind::Cosign)
        ),
        (1, 2, 1)
    );

    // --format restricts: cosign only.
    let only = VerifyOptions {
        formats: vec![Kind::Cosign],
        ..all(setup(&pki), vec![("k".into(), key.clone())])
    };
    let r = run(verify(&reg, &tuf, &v1(Some("v1")), &only));
    assert_eq!(r.found.len(), 1);
    assert_eq!(r.found[0].kind, Kind::Cosign);

    // Another cosign key: the cosign signature is found and invalid; notation still counts.
    let (_, other) = cosign_key();
    let r = run(verify(
        &reg,
        &NoTrust(false),
        &v1(Some("v1")),
        &all(setup(&pki), vec![("other.pub".into(), other)]),
    ));
    let c: Vec<_> = r.of(Kind::Cosign).collect();
    assert!(matches!(&c[0].verdict, Verdict::Invalid(m) if m.contains("does not verify")));
    assert_eq!(r.valid(Kind::Notation), 2);

    // Another trust store: notation invalid with the chain's reason.
    let r = run(verify(
        &reg,
        &NoTrust(false),
        &v1(Some("v1")),
        &all(setup(&pki_other()), vec![]),
    ));
    assert_eq!(r.verified(), 0);
    assert!(
        r.of(Kind::Notation)
            .all(|f| matches!(&f.verdict, Verdict::Invalid(m) if m.contains("does not lead")))
    );

    // A skip policy: nothing checked, recorded as skipped.
    let r = run(verify(
        &reg,
        &NoTrust(false),
        &v1(Some("v1")),
        &all(NotationSetup::Skip { policy: "s".into() }, vec![]),
    ));
    assert_eq!(r.notation_skipped.as_deref(), Some("s"));
    assert!(r.found.is_empty());
}

fn pki_other() -> Pki {
    pki()
}

#[test]
fn broken_signature_manifests_are_reported_not_fatal() {
    let pki = pki();
    let mut reg = Memory::default();
    let target = Descriptor::of(OCI_MANIFEST, b"v1 manifest");
    // A notary manifest with a layer of an unknown media type, and one whose blob is missing.
    let m = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": berth_notation::ARTIFACT_TYPE,
        "layers": [{"mediaType": "application/x-unknown", "digest": sha256(b"z"), "size": 1}],
        "subject": target,
    });
    let odd = reg.put(serde_json::to_vec(&m).unwrap(), None);
    let good = notation_sign(&mut reg, &pki, &target, Format::Cose);
    let layer_of_good = {
        let v: Value = serde_json::from_slice(&reg.manifests[&good]).unwrap();
        v["layers"][0]["digest"].as_str().unwrap().to_owned()
    };
    let r = run(verify(
        &reg,
        &NoTrust(false),
        &v1(None),
        &all(setup(&pki), vec![]),
    ));
    assert_eq!(r.verified(), 1, "{r:?}");
    let bad = r.found.iter().find(|f| f.id == odd).unwrap();
    assert!(
        matches!(&bad.verdict, Verdict::Invalid(m) if m.contains("neither")),
        "{bad:?}"
    );
    reg.blobs.remove(&layer_of_good);
    let r = run(verify(
        &reg,
        &NoTrust(false),
        &v1(None),
        &all(setup(&pki), vec![]),
    ));
    assert_eq!(r.verified(), 0);
    assert!(
        r.found
            .iter()
            .any(|f| matches!(&f.verdict, Verdict::Invalid(m) if m.contains("no such blob")))
    );
    // Pure helpers on their own.
    assert!(notation_envelope(b"[", &target.digest).is_err());
    assert!(
        notation_envelope(&reg.manifests[&good], "sha256:00")
            .unwrap_err()
            .contains("not a Notary")
    );
    assert_eq!(
        notation_envelope(&reg.manifests[&good], &target.digest)
            .unwrap()
            .0,
        Format::Cose
    );
    assert!(
        cosign_layers(b"{}")
            .unwrap_err()
            .contains("no application/vnd.dev.cosign")
    );
    // Without the referrers API, cosign's tag still works and a note says why referrers were not read.
    let (kp, key) = cosign_key();
    cosign_sign(&mut reg, &kp, &target.digest, &target.digest);
    reg.no_referrers_api = true;
    let r = run(verify(
        &reg,
        &NoTrust(false),
        &v1(None),
        &all(setup(&pki), vec![("k".into(), key)]),
    ));
    assert_eq!(r.valid(Kind::Cosign), 1, "{r:?}");
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("cosign referrers not listed")),
        "{r:?}"
    );
    assert!(
        r.of(Kind::Notation)
            .any(|f| matches!(&f.verdict, Verdict::Invalid(m) if m.contains("referrers API")))
    );
}
