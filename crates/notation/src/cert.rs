//! X.509 certificates as the `notary.x509` scheme uses them: keys (P-256, P-384, RSA),
//! issuer signatures, validity, the codeSigning EKU, subjects.

use der::asn1::ObjectIdentifier;
use der::{Decode as _, Encode as _};
use ring::signature as rs;
use x509_cert::Certificate;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage};

use crate::{Result, err};

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
pub const OID_CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");

/// The kind of a certificate's key, which fixes the JWS `alg` (signature-specification.md:
/// P-256 → ES256, P-384 → ES384, RSA 2048 → PS256, 3072 → PS384, 4096 → PS512).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    P256,
    P384,
    Rsa(usize),
}

impl KeyKind {
    pub fn jws_alg(self) -> Result<&'static str> {
        Ok(match self {
            KeyKind::P256 => "ES256",
            KeyKind::P384 => "ES384",
            KeyKind::Rsa(2048) => "PS256",
            KeyKind::Rsa(3072) => "PS384",
            KeyKind::Rsa(4096) => "PS512",
            KeyKind::Rsa(n) => return err(format!("RSA {n}-bit keys are not allowed")),
        })
    }
}

/// One parsed certificate.
#[derive(Debug, Clone)]
pub struct Cert {
    pub der: Vec<u8>,
    pub subject: String,
    pub issuer: String,
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
    pub code_signing: bool,
    /// Has an EKU extension at all (absent means any use).
    pub has_eku: bool,
    pub key: KeyKind,
    /// The subjectPublicKey bits: an uncompressed point, or a PKCS#1 RSAPublicKey.
    pub public_key: Vec<u8>,
    tbs: Vec<u8>,
    sig_alg: ObjectIdentifier,
    signature: Vec<u8>,
    subject_der: Vec<u8>,
    issuer_der: Vec<u8>,
}

fn rsa_bits(pkcs1: &[u8]) -> Option<usize> {
    #[derive(der::Sequence)]
    struct RsaPub<'a> {
        n: der::asn1::UintRef<'a>,
        _e: der::asn1::UintRef<'a>,
    }
    let k = RsaPub::from_der(pkcs1).ok()?;
    let n = k.n.as_bytes();
    let lead = n.first().map_or(0, |b| 8 - b.leading_zeros() as usize);
    Some((n.len().saturating_sub(1)) * 8 + lead)
}

impl Cert {
    pub fn from_der(der: &[u8]) -> Result<Cert> {
        let bad = |e: &dyn std::fmt::Display| crate::Error(format!("bad certificate: {e}"));
        let cert = Certificate::from_der(der).map_err(|e| bad(&e))?;
        let tbs = cert.tbs_certificate();
        let spki = tbs.subject_public_key_info();
        let public_key = spki.subject_public_key.raw_bytes().to_vec();
        let key = if spki.algorithm.oid == OID_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
            match curve {
                Some(c) if c == OID_P256 => KeyKind::P256,
                Some(c) if c == OID_P384 => KeyKind::P384,
                _ => return err("unsupported elliptic curve (P-256 and P-384 are)"),
            }
        } else if spki.algorithm.oid == OID_RSA {
            KeyKind::Rsa(rsa_bits(&public_key).ok_or_else(|| bad(&"bad RSA key"))?)
        } else {
            return err(format!("unsupported key algorithm {}", spki.algorithm.oid));
        };
        let is_ca = tbs
            .get_extension::<BasicConstraints>()
            .map_err(|e| bad(&e))?
            .is_some_and(|(_, bc)| bc.ca);
        let eku = tbs
            .get_extension::<ExtendedKeyUsage>()
            .map_err(|e| bad(&e))?;
        Ok(Cert {
            der: der.to_vec(),
            subject: tbs.subject().to_string(),
            issuer: tbs.issuer().to_string(),
            not_before: tbs.validity().not_before.to_unix_duration().as_secs() as i64,
            not_after: tbs.validity().not_after.to_unix_duration().as_secs() as i64,
            is_ca,
            code_signing: eku
                .as_ref()
                .is_some_and(|(_, e)| e.0.contains(&OID_CODE_SIGNING)),
            has_eku: eku.is_some(),
            key,
            public_key,
            tbs: tbs.to_der().map_err(|e| bad(&e))?,
            sig_alg: cert.signature_algorithm().oid,
            signature: cert.signature().raw_bytes().to_vec(),
            subject_der: tbs.subject().to_der().map_err(|e| bad(&e))?,
            issuer_der: tbs.issuer().to_der().map_err(|e| bad(&e))?,
        })
    }

    /// Every `CERTIFICATE` block of a PEM bundle, in order.
    pub fn from_pem_bundle(pem_text: &[u8]) -> Result<Vec<Cert>> {
        let blocks =
            pem::parse_many(pem_text).map_err(|e| crate::Error(format!("bad PEM: {e}")))?;
        let certs = blocks
            .iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(|b| Cert::from_der(b.contents()))
            .collect::<Result<Vec<_>>>()?;
        if certs.is_empty() {
            return err("no CERTIFICATE block");
        }
        Ok(certs)
    }

    /// Hex SHA-256 of the DER, as the thumbprint annotation lists it.
    pub fn thumbprint(&self) -> String {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&self.der))
    }

    pub fn valid_at(&self, t: i64) -> bool {
        self.not_before <= t && t <= self.not_after
    }

    /// Whether `issuer` names this certificate's issuer and signed it.
    pub fn issued_by(&self, issuer: &Cert) -> Result<()> {
        if self.issuer_der != issuer.subject_der {
            return err(format!(
                "issuer {:?} of {:?} is not {:?}",
                self.issuer, self.subject, issuer.subject
            ));
        }
        let alg: &dyn rs::VerificationAlgorithm = match (issuer.key, self.sig_alg) {
            (KeyKind::P256, a) if a == OID_ECDSA_SHA256 => &rs::ECDSA_P256_SHA256_ASN1,
            (KeyKind::P256, a) if a == OID_ECDSA_SHA384 => &rs::ECDSA_P256_SHA384_ASN1,
            (KeyKind::P384, a) if a == OID_ECDSA_SHA256 => &rs::ECDSA_P384_SHA256_ASN1,
            (KeyKind::P384, a) if a == OID_ECDSA_SHA384 => &rs::ECDSA_P384_SHA384_ASN1,
            (KeyKind::Rsa(_), a) if a == OID_RSA_SHA256 => &rs::RSA_PKCS1_2048_8192_SHA256,
            (KeyKind::Rsa(_), a) if a == OID_RSA_SHA384 => &rs::RSA_PKCS1_2048_8192_SHA384,
            (KeyKind::Rsa(_), a) if a == OID_RSA_SHA512 => &rs::RSA_PKCS1_2048_8192_SHA512,
            (k, a) => {
                return err(format!(
                    "unsupported certificate signature algorithm {a} with a {k:?} issuer key"
                ));
            }
        };
        rs::UnparsedPublicKey::new(alg, &issuer.public_key)
            .verify(&self.tbs, &self.signature)
            .map_err(|_| {
                crate::Error(format!(
                    "the signature of {:?} by {:?} does not verify",
                    self.subject, issuer.subject
                ))
            })
    }

    /// Verifies a JWS signature (`alg`) over `input` with this certificate's key.
    pub fn verify_jws(&self, alg: &str, input: &[u8], sig: &[u8]) -> Result<()> {
        let expected = self.key.jws_alg()?;
        if alg != expected {
            return err(format!(
                "alg {alg} does not match the signing certificate's key ({expected})"
            ));
        }
        let a: &dyn rs::VerificationAlgorithm = match alg {
            "ES256" => &rs::ECDSA_P256_SHA256_FIXED,
            "ES384" => &rs::ECDSA_P384_SHA384_FIXED,
            "PS256" => &rs::RSA_PSS_2048_8192_SHA256,
            "PS384" => &rs::RSA_PSS_2048_8192_SHA384,
            "PS512" => &rs::RSA_PSS_2048_8192_SHA512,
            _ => return err(format!("unsupported alg {alg}")),
        };
        rs::UnparsedPublicKey::new(a, &self.public_key)
            .verify(input, sig)
            .map_err(|_| crate::Error("the envelope's signature does not verify".into()))
    }

    /// The subject's attributes as `TYPE=value` strings.
    pub fn subject_attributes(&self) -> Vec<String> {
        split_dn(&self.subject)
    }
}

/// Splits an RFC 4514 string into trimmed `TYPE=value` parts (on unescaped `,` and `+`).
pub fn split_dn(dn: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut esc = false;
    for c in dn.chars() {
        if esc {
            cur.push(c);
            esc = false;
        } else if c == '\\' {
            cur.push(c);
            esc = true;
        } else if c == ',' || c == '+' {
            out.push(cur.trim().to_owned());
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out.retain(|s| !s.is_empty());
    out
}
