//! Cosign signatures checked with a public key (issue 15, "Cosign signatures read and verified
//! with a public key"), pure: the caller fetches the layers. Per sigstore/cosign's
//! specs/SIGNATURE_SPEC.md a signature is a layer of media type
//! `application/vnd.dev.cosign.simplesigning.v1+json` whose blob is the "simple signing"
//! payload, and whose annotation `dev.cosignproject.cosign/signature` holds the base64 ASN.1
//! DER ECDSA signature of the blob's bytes (SHA-256). The layers live in the manifest tagged
//! `sha256-<hex>.sig`, or in a referrer of artifactType `application/vnd.dev.cosign.artifact.sig.v1+json`.

use base64::Engine as _;
use der::Decode as _;
use der::asn1::ObjectIdentifier;
use ring::signature as rs;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use crate::{Result, err};

/// Media type of a cosign signature layer (the simple signing payload).
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature of the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `artifactType` of a cosign signature stored as an OCI referrer.
pub const ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// `critical.type` of a simple signing payload for a container image.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// The tag cosign gives the signature manifest of `digest` (`sha256:<hex>` → `sha256-<hex>.sig`).
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// An ECDSA P-256 public key, as `cosign generate-key-pair` writes it (PEM SubjectPublicKeyInfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The uncompressed SEC1 point.
    point: Vec<u8>,
}

impl PublicKey {
    pub fn from_pem(pem_bytes: &[u8]) -> Result<PublicKey> {
        let p = pem::parse(pem_bytes).map_err(|e| crate::Error(format!("not PEM: {e}")))?;
        if p.tag() != "PUBLIC KEY" {
            return err(format!("PEM {:?}, not PUBLIC KEY", p.tag()));
        }
        PublicKey::from_spki_der(p.contents())
    }

    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey> {
        let spki = SubjectPublicKeyInfoOwned::from_der(der)
            .map_err(|e| crate::Error(format!("bad public key: {e}")))?;
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if spki.algorithm.oid != OID_EC_PUBLIC_KEY || curve != Some(OID_P256) {
            return err("unsupported public key (ECDSA P-256 is)");
        }
        Ok(PublicKey {
            point: spki.subject_public_key.raw_bytes().to_vec(),
        })
    }
}

/// What a verified signature says about the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `critical.identity.docker-reference`: where the signer says the image lives.
    pub docker_reference: String,
}

/// Checks one cosign signature layer: `signature_b64` (the annotation) over `payload` (the
/// layer blob) with `key`, then that the payload is a container image signature of `digest`.
/// The signature is checked first so nothing unsigned is trusted, even in error messages.
pub fn verify(
    payload: &[u8],
    signature_b64: &str,
    digest: &str,
    key: &PublicKey,
) -> Result<Verified> {
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature_b64.trim())
        .map_err(|_| crate::Error("the signature annotation is not base64".into()))?;
    rs::UnparsedPublicKey::new(&rs::ECDSA_P256_SHA256_ASN1, &key.point)
        .verify(payload, &sig)
        .map_err(|_| crate::Error("the signature does not verify with the key".into()))?;
    let v: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|_| crate::Error("the signed payload is not JSON".into()))?;
    let critical = &v["critical"];
    if critical["type"] != PAYLOAD_TYPE {
        return err(format!(
            "the signed payload's type is {}, not {PAYLOAD_TYPE:?}",
            critical["type"]
        ));
    }
    let signed = critical["image"]["docker-manifest-digest"]
        .as_str()
        .unwrap_or_default();
    if signed != digest {
        return err(format!("the signature is of {signed:?}, not of {digest}"));
    }
    Ok(Verified {
        docker_reference: critical["identity"]["docker-reference"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::KeyPair as _;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A fresh P-256 key: the signing half, and the public half as a PEM SPKI.
    fn key() -> (rs::EcdsaKeyPair, Vec<u8>) {
        let rng = ring::rand::SystemRandom::new();
        let alg = &rs::ECDSA_P256_SHA256_ASN1_SIGNING;
        let pkcs8 = rs::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let kp = rs::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        // The fixed DER prefix of a P-256 SubjectPublicKeyInfo with an uncompressed point.
        let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        spki.extend_from_slice(kp.public_key().as_ref());
        let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki));
        (kp, pem.into_bytes())
    }

    fn payload(digest: &str, ty: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "critical": {
                "identity": {"docker-reference": "reg.example/app"},
                "image": {"docker-manifest-digest": digest},
                "type": ty,
            },
            "optional": null,
        }))
        .unwrap()
    }

    fn sign(kp: &rs::EcdsaKeyPair, data: &[u8]) -> String {
        let sig = kp.sign(&ring::rand::SystemRandom::new(), data).unwrap();
        base64::engine::general_purpose::STANDARD.encode(sig.as_ref())
    }

    #[test]
    fn good_signature_verifies() {
        let (kp, pem) = key();
        let k = PublicKey::from_pem(&pem).unwrap();
        let p = payload(DIGEST, PAYLOAD_TYPE);
        let v = verify(&p, &sign(&kp, &p), DIGEST, &k).unwrap();
        assert_eq!(v.docker_reference, "reg.example/app");
    }

    #[test]
    fn tampered_payload_is_refused() {
        let (kp, pem) = key();
        let k = PublicKey::from_pem(&pem).unwrap();
        let p = payload(DIGEST, PAYLOAD_TYPE);
        let sig = sign(&kp, &p);
        let mut t = p.clone();
        t.push(b' ');
        let e = verify(&t, &sig, DIGEST, &k).unwrap_err();
        assert!(e.0.contains("does not verify"), "{e}");
        assert!(verify(&p, "not base64!", DIGEST, &k).is_err());
    }

    #[test]
    fn wrong_key_is_refused() {
        let (kp, _) = key();
        let (_, other) = key();
        let k = PublicKey::from_pem(&other).unwrap();
        let p = payload(DIGEST, PAYLOAD_TYPE);
        let e = verify(&p, &sign(&kp, &p), DIGEST, &k).unwrap_err();
        assert!(e.0.contains("does not verify"), "{e}");
    }

    #[test]
    fn wrong_digest_is_refused() {
        let (kp, pem) = key();
        let k = PublicKey::from_pem(&pem).unwrap();
        let other = DIGEST.replace("0123", "3210");
        let p = payload(&other, PAYLOAD_TYPE);
        let e = verify(&p, &sign(&kp, &p), DIGEST, &k).unwrap_err();
        assert!(e.0.contains("not of"), "{e}");
    }

    #[test]
    fn wrong_type_is_refused() {
        let (kp, pem) = key();
        let k = PublicKey::from_pem(&pem).unwrap();
        let p = payload(DIGEST, "atomic container signature");
        let e = verify(&p, &sign(&kp, &p), DIGEST, &k).unwrap_err();
        assert!(e.0.contains("type"), "{e}");
    }

    #[test]
    fn non_p256_keys_are_refused() {
        assert!(PublicKey::from_pem(b"junk").is_err());
        // A P-384 SPKI prefix with a dummy point.
        let mut spki = hex::decode("3076301006072a8648ce3d020106052b81040022036200").unwrap();
        spki.extend_from_slice(&[4u8; 97]);
        assert!(PublicKey::from_spki_der(&spki).is_err());
        assert_eq!(
            signature_tag(DIGEST),
            format!("sha256-{}.sig", &DIGEST[7..])
        );
    }
}
