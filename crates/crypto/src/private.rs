//! Private keys: generation, signing, and the PKCS#8 flavour Notary reads and writes.

use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, OctetStringRef};
use der::{Decode as _, Encode as _, Tag};
use p256::elliptic_curve::Generate as _;
use pkcs8::spki::AlgorithmIdentifierRef;
use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _};
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
use sha2::Sha256;

use crate::Error;
use crate::keys::{KeyType, Material, PublicKey};
use crate::rng::rng;
use crate::sign::{SigMethod, check_rsa_size};

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// RFC 8410 Ed25519.
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// The pre-RFC OID Notary uses for ed25519 in its key files (Go's x509 had no ed25519 then).
const OID_ED25519_NOTARY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11591.15.1");

/// PKCS#8 `PrivateKeyInfo`, decoded leniently: Notary writes EC keys as version 1 without the
/// optional public key, which RFC 5958-strict decoders (the `pkcs8` crate) refuse.
#[derive(der::Sequence)]
struct PrivateKeyInfo<'a> {
    version: u8,
    algorithm: AlgorithmIdentifierRef<'a>,
    private_key: &'a OctetStringRef,
    // `attributes` [0] is not modelled: neither Notary nor Docker writes it.
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    public_key: Option<BitStringRef<'a>>,
}

enum Secret {
    P256(Box<P256Secret>),
    Rsa(Box<rsa::PrivateKey>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

/// A P-256 key with ring's form of it beside: ring signs several times faster than the
/// pure-Rust arithmetic, which dominated the server's time per trust publish (it signs a
/// snapshot and a timestamp each time). The RustCrypto key stays for encoding and certificates.
struct P256Secret {
    key: p256::ecdsa::SigningKey,
    fast: Option<ring::signature::EcdsaKeyPair>,
}

impl P256Secret {
    fn new(key: p256::ecdsa::SigningKey) -> Box<Self> {
        let public = key.verifying_key().to_sec1_point(false);
        let fast = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.to_bytes(),
            public.as_bytes(),
            &ring::rand::SystemRandom::new(),
        )
        .ok();
        Box::new(P256Secret { key, fast })
    }
}

/// A signing key of one of Notary's bare types (`ecdsa` P-256, `rsa`, `ed25519`).
pub struct PrivateKey {
    secret: Secret,
    public: PublicKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("key_type", &self.public.key_type())
            .field("key_id", &self.public.key_id())
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    fn from_secret(secret: Secret) -> Result<Self, Error> {
        let material = match &secret {
            Secret::P256(k) => Material::P256(*k.key.verifying_key()),
            Secret::Rsa(k) => Material::Rsa(k.to_public_key()),
            Secret::Ed25519(k) => Material::Ed25519(k.verifying_key()),
        };
        Ok(PrivateKey {
            secret,
            public: PublicKey::from_material(material)?,
        })
    }

    /// A new ECDSA P-256 key (Notary's default for every client-side role).
    pub fn generate_ecdsa() -> Result<Self, Error> {
        let key = p256::ecdsa::SigningKey::generate_from_rng(&mut rng());
        Self::from_secret(Secret::P256(P256Secret::new(key)))
    }

    /// A new Ed25519 key (what Notary's local signer uses for server roles).
    pub fn generate_ed25519() -> Result<Self, Error> {
        let key = ed25519_dalek::SigningKey::generate(&mut rng());
        Self::from_secret(Secret::Ed25519(Box::new(key)))
    }

    /// A new RSA key of `bits` (at least 2048).
    pub fn generate_rsa(bits: usize) -> Result<Self, Error> {
        if bits < crate::sign::MIN_RSA_BITS {
            return Err(Error::UnsupportedKey(format!("RSA key of {bits} bits")));
        }
        let k =
            rsa::PrivateKey::new(&mut rng(), bits).map_err(|e| Error::Signing(e.to_string()))?;
        Self::from_secret(Secret::Rsa(Box::new(k)))
    }

    /// The bare public key; its key ID is the one Notary names key files by.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    pub fn key_type(&self) -> KeyType {
        self.public.key_type()
    }

    pub fn key_id(&self) -> String {
        self.public.key_id()
    }

    /// The method Notary signs with for this key.
    pub fn default_method(&self) -> SigMethod {
        SigMethod::default_for(self.key_type())
    }

    /// Signs `msg` with the key's default method.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        self.sign_with(self.default_method(), msg)
    }

    /// Signs `msg` with `method`, which must suit the key.
    pub fn sign_with(&self, method: SigMethod, msg: &[u8]) -> Result<Vec<u8>, Error> {
        let fail = |e: rsa::signature::Error| Error::Signing(e.to_string());
        match (method, &self.secret) {
            (SigMethod::Ecdsa, Secret::P256(k)) => {
                if let Some(fast) = &k.fast {
                    // FIXED: raw r || s, the form Notary writes.
                    let sig = fast
                        .sign(&ring::rand::SystemRandom::new(), msg)
                        .map_err(|_| Error::Signing("P-256 signing failed".into()))?;
                    return Ok(sig.as_ref().to_vec());
                }
                let sig: p256::ecdsa::Signature = k.key.try_sign(msg).map_err(fail)?;
                Ok(sig.to_bytes().to_vec())
            }
            (SigMethod::Eddsa, Secret::Ed25519(k)) => {
                Ok(k.try_sign(msg).map_err(fail)?.to_bytes().to_vec())
            }
            (SigMethod::RsaPss, Secret::Rsa(k)) => {
                let signer = rsa::pss::SigningKey::<Sha256>::new_with_salt_len((**k).clone(), 32);
                Ok(signer
                    .try_sign_with_rng(&mut rng(), msg)
                    .map_err(fail)?
                    .to_vec())
            }
            (SigMethod::RsaPkcs1v15, Secret::Rsa(k)) => {
                let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new((**k).clone());
                Ok(signer.try_sign(msg).map_err(fail)?.to_vec())
            }
            _ => Err(Error::MethodKeyMismatch {
                method: method.as_str(),
                key_type: self.key_type().as_str(),
            }),
        }
    }

    /// The P-256 signing key, for building root certificates.
    pub(crate) fn p256(&self) -> Option<&p256::ecdsa::SigningKey> {
        match &self.secret {
            Secret::P256(k) => Some(&k.key),
            _ => None,
        }
    }

    /// Decodes a PKCS#8 `PrivateKeyInfo` as Notary writes it (EC: SEC1 inside, version 0 or 1;
    /// RSA: PKCS#1 inside; ed25519: Notary's OID with `public || seed || public`) or as
    /// RFC 8410 ed25519.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, Error> {
        let bad = |msg: String| Error::KeyFile(format!("PKCS#8: {msg}"));
        let info = PrivateKeyInfo::from_der(der).map_err(|e| bad(e.to_string()))?;
        if info.version > 1 {
            return Err(bad(format!("version {}", info.version)));
        }
        let body = info.private_key.as_bytes();
        let secret = match info.algorithm.oid {
            OID_EC_PUBLIC_KEY => {
                if let Some(params) = info.algorithm.parameters {
                    let curve = params
                        .decode_as::<ObjectIdentifier>()
                        .map_err(|e| bad(e.to_string()))?;
                    if curve != OID_P256 {
                        return Err(Error::UnsupportedKey(format!("elliptic curve {curve}")));
                    }
                }
                let sk =
                    p256::SecretKey::from_sec1_der(body).map_err(|e| bad(format!("SEC1: {e}")))?;
                Secret::P256(P256Secret::new(sk.into()))
            }
            OID_RSA => {
                let k = rsa::PrivateKey::from_pkcs1_der(body)
                    .map_err(|e| bad(format!("PKCS#1: {e}")))?;
                check_rsa_size(&k.to_public_key())?;
                Secret::Rsa(Box::new(k))
            }
            OID_ED25519_NOTARY => {
                // Notary's layout: 32-byte public key, then Go's 64-byte private key (seed || public).
                if body.len() != 96 {
                    return Err(bad("ed25519 key must be 96 bytes".into()));
                }
                let seed: [u8; 32] = body[32..64]
                    .try_into()
                    .map_err(|_| bad("ed25519 seed".into()))?;
                let k = ed25519_dalek::SigningKey::from_bytes(&seed);
                if k.verifying_key().as_bytes() != &body[..32] {
                    return Err(bad("ed25519 public key does not match seed".into()));
                }
                Secret::Ed25519(Box::new(k))
            }
            OID_ED25519 => {
                // RFC 8410: the private key is an OCTET STRING holding the 32-byte seed.
                let seed = <&OctetStringRef>::from_der(body).map_err(|e| bad(e.to_string()))?;
                let seed: [u8; 32] = seed
                    .as_bytes()
                    .try_into()
                    .map_err(|_| bad("ed25519 seed must be 32 bytes".into()))?;
                Secret::Ed25519(Box::new(ed25519_dalek::SigningKey::from_bytes(&seed)))
            }
            other => {
                return Err(Error::UnsupportedKey(format!(
                    "private key algorithm {other}"
                )));
            }
        };
        Self::from_secret(secret)
    }

    /// Encodes the key as Notary does (`convertTUFKeyToPKCS8`), so Notary and Docker can read
    /// the files we write: EC as version 1 with the curve OID and a SEC1 body including the
    /// public key; RSA as version 0 with a PKCS#1 body; ed25519 with Notary's OID and layout.
    pub fn to_pkcs8_der(&self) -> Result<der::zeroize::Zeroizing<Vec<u8>>, Error> {
        let fail = |e: der::Error| Error::KeyFile(format!("encoding PKCS#8: {e}"));
        let p256_oid = OID_P256.to_der().map_err(fail)?;
        let (version, oid, params, body): (u8, _, _, der::zeroize::Zeroizing<Vec<u8>>) = match &self
            .secret
        {
            Secret::P256(k) => {
                let sk = p256::SecretKey::from(&k.key);
                let params = AnyRef::new(Tag::ObjectIdentifier, &p256_oid[2..]).map_err(fail)?;
                (
                    1,
                    OID_EC_PUBLIC_KEY,
                    Some(params),
                    sk.to_sec1_der().map_err(fail)?,
                )
            }
            Secret::Rsa(k) => {
                let doc = k
                    .to_pkcs1_der()
                    .map_err(|e| Error::KeyFile(format!("encoding PKCS#1: {e}")))?;
                (
                    0,
                    OID_RSA,
                    None,
                    der::zeroize::Zeroizing::new(doc.as_bytes().to_vec()),
                )
            }
            Secret::Ed25519(k) => {
                let public = k.verifying_key().to_bytes();
                let mut body = der::zeroize::Zeroizing::new(Vec::with_capacity(96));
                body.extend_from_slice(&public);
                body.extend_from_slice(&k.to_bytes());
                body.extend_from_slice(&public);
                (0, OID_ED25519_NOTARY, None, body)
            }
        };
        let info = PrivateKeyInfo {
            version,
            algorithm: AlgorithmIdentifierRef {
                oid,
                parameters: params,
            },
            private_key: OctetStringRef::new(&body).map_err(fail)?,
            public_key: None,
        };
        Ok(der::zeroize::Zeroizing::new(info.to_der().map_err(fail)?))
    }
}
