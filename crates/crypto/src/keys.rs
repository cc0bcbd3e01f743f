//! Public keys as Notary writes them in metadata, and key IDs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use berth_cjson::{Map, Value};
use pkcs8::spki::{DecodePublicKey, EncodePublicKey, ObjectIdentifier, SubjectPublicKeyInfoRef};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use crate::Error;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Notary's `keytype` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyType {
    Ecdsa,
    EcdsaX509,
    Rsa,
    RsaX509,
    Ed25519,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Ecdsa => "ecdsa",
            KeyType::EcdsaX509 => "ecdsa-x509",
            KeyType::Rsa => "rsa",
            KeyType::RsaX509 => "rsa-x509",
            KeyType::Ed25519 => "ed25519",
        }
    }

    /// Parses a `keytype`; Notary compares these case-sensitively.
    pub fn parse(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "ecdsa" => KeyType::Ecdsa,
            "ecdsa-x509" => KeyType::EcdsaX509,
            "rsa" => KeyType::Rsa,
            "rsa-x509" => KeyType::RsaX509,
            "ed25519" => KeyType::Ed25519,
            other => return Err(Error::UnknownKeyType(other.to_owned())),
        })
    }

    /// Whether `keyval.public` holds a PEM certificate rather than a bare key.
    pub fn is_x509(self) -> bool {
        matches!(self, KeyType::EcdsaX509 | KeyType::RsaX509)
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verifying half of a key, decoded from whatever `keyval.public` carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Material {
    P256(p256::ecdsa::VerifyingKey),
    Rsa(rsa::PublicKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl Material {
    /// Decodes a DER SubjectPublicKeyInfo; only P-256 and RSA are accepted, as in Notary's
    /// default configuration (P-384/P-521 are refused: no curve implementation is linked).
    pub(crate) fn from_spki_der(der: &[u8], key_type: KeyType) -> Result<Self, Error> {
        let bad = |msg: String| Error::InvalidKey {
            key_type: key_type.as_str(),
            msg,
        };
        let spki = SubjectPublicKeyInfoRef::try_from(der).map_err(|e| bad(e.to_string()))?;
        match spki.algorithm.oid {
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters_oid()
                    .map_err(|e| bad(format!("EC parameters: {e}")))?;
                if curve != OID_P256 {
                    return Err(Error::UnsupportedKey(format!("elliptic curve {curve}")));
                }
                p256::ecdsa::VerifyingKey::from_public_key_der(der)
                    .map(Material::P256)
                    .map_err(|e| bad(e.to_string()))
            }
            OID_RSA => rsa::PublicKey::from_public_key_der(der)
                .map(Material::Rsa)
                .map_err(|e| bad(e.to_string())),
            other => Err(Error::UnsupportedKey(format!(
                "public key algorithm {other}"
            ))),
        }
    }

    /// The bare key type this material is for.
    pub(crate) fn bare_type(&self) -> KeyType {
        match self {
            Material::P256(_) => KeyType::Ecdsa,
            Material::Rsa(_) => KeyType::Rsa,
            Material::Ed25519(_) => KeyType::Ed25519,
        }
    }

    /// `keyval.public` for the bare key: PKIX DER for EC and RSA (as Go's
    /// `x509.MarshalPKIXPublicKey` writes it), the raw 32 bytes for ed25519.
    pub(crate) fn bare_public(&self) -> Result<Vec<u8>, Error> {
        let enc = |r: Result<pkcs8::Document, pkcs8::spki::Error>| {
            r.map(|d| d.as_bytes().to_vec())
                .map_err(|e| Error::InvalidKey {
                    key_type: self.bare_type().as_str(),
                    msg: e.to_string(),
                })
        };
        match self {
            Material::P256(k) => enc(k.to_public_key_der()),
            Material::Rsa(k) => enc(k.to_public_key_der()),
            Material::Ed25519(k) => Ok(k.to_bytes().to_vec()),
        }
    }

    pub(crate) fn rsa_bits(&self) -> Option<usize> {
        match self {
            Material::Rsa(k) => Some(k.n().bit_width() as usize),
            _ => None,
        }
    }
}

/// A public key as listed in TUF metadata: `{"keytype":..,"keyval":{"private":null,"public":..}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    key_type: KeyType,
    public: Vec<u8>,
    pub(crate) material: Material,
}

impl PublicKey {
    /// Builds a key from its type and the decoded bytes of `keyval.public`. The material is
    /// parsed eagerly, so a key that cannot verify anything is refused here.
    pub fn new(key_type: KeyType, public: Vec<u8>) -> Result<Self, Error> {
        let bad = |msg: &str| Error::InvalidKey {
            key_type: key_type.as_str(),
            msg: msg.to_owned(),
        };
        let material = match key_type {
            KeyType::Ecdsa | KeyType::Rsa => Material::from_spki_der(&public, key_type)?,
            KeyType::Ed25519 => {
                let raw: &[u8; 32] = public
                    .as_slice()
                    .try_into()
                    .map_err(|_| bad("ed25519 public key must be 32 bytes"))?;
                Material::Ed25519(
                    ed25519_dalek::VerifyingKey::from_bytes(raw)
                        .map_err(|e| bad(&e.to_string()))?,
                )
            }
            KeyType::EcdsaX509 | KeyType::RsaX509 => {
                // Like Notary, only the first certificate of a bundle (the leaf) carries the key.
                let leaf = crate::x509::parse_pem_bundle(&public)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::Certificate("no certificate in PEM".into()))?;
                leaf.material
            }
        };
        let expected = match key_type {
            KeyType::Ecdsa | KeyType::EcdsaX509 => KeyType::Ecdsa,
            KeyType::Rsa | KeyType::RsaX509 => KeyType::Rsa,
            KeyType::Ed25519 => KeyType::Ed25519,
        };
        if material.bare_type() != expected {
            return Err(bad("key material does not match the key type"));
        }
        Ok(PublicKey {
            key_type,
            public,
            material,
        })
    }

    /// Parses `keytype` and the base64 `keyval.public`.
    pub fn from_parts(key_type: &str, public_b64: &str) -> Result<Self, Error> {
        let key_type = KeyType::parse(key_type)?;
        let public = B64
            .decode(public_b64)
            .map_err(|_| Error::Base64("keyval.public"))?;
        Self::new(key_type, public)
    }

    /// Parses a key object from metadata. `keyval.private` must be null or absent: a
    /// private key has no business in published metadata.
    pub fn from_value(v: &Value) -> Result<Self, Error> {
        let obj = v
            .as_object()
            .ok_or(Error::MalformedKeyObject("key is not an object"))?;
        let kt = obj
            .get("keytype")
            .and_then(Value::as_str)
            .ok_or(Error::MalformedKeyObject("keytype missing"))?;
        let keyval = obj
            .get("keyval")
            .and_then(Value::as_object)
            .ok_or(Error::MalformedKeyObject("keyval missing"))?;
        if keyval.get("private").is_some_and(|p| !p.is_null()) {
            return Err(Error::MalformedKeyObject("keyval.private is not null"));
        }
        let public = keyval
            .get("public")
            .and_then(Value::as_str)
            .ok_or(Error::MalformedKeyObject("keyval.public missing"))?;
        Self::from_parts(kt, public)
    }

    /// Builds the bare (non-x509) key for verifying material.
    pub(crate) fn from_material(material: Material) -> Result<Self, Error> {
        let public = material.bare_public()?;
        Ok(PublicKey {
            key_type: material.bare_type(),
            public,
            material,
        })
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The decoded bytes of `keyval.public` (DER, raw ed25519 bytes or PEM text).
    pub fn public_bytes(&self) -> &[u8] {
        &self.public
    }

    /// The key object as it appears in metadata (members in canonical order).
    pub fn to_value(&self) -> Value {
        let mut keyval = Map::new();
        keyval.insert("private", Value::Null);
        keyval.insert("public", B64.encode(&self.public));
        let mut m = Map::new();
        m.insert("keytype", self.key_type.as_str());
        m.insert("keyval", keyval);
        Value::Object(m)
    }

    /// The TUF key ID: lowercase hex SHA-256 of the canonical JSON key object with
    /// `"private":null`.
    pub fn key_id(&self) -> String {
        hex::encode(Sha256::digest(berth_cjson::to_canonical(&self.to_value())))
    }

    /// Notary's "canonical key ID": for x509 keys the ID of the bare key inside the
    /// certificate (private key files are named by it); otherwise the key ID.
    pub fn canonical_key_id(&self) -> Result<String, Error> {
        if self.key_type.is_x509() {
            Ok(self.to_bare()?.key_id())
        } else {
            Ok(self.key_id())
        }
    }

    /// The bare `ecdsa`/`rsa` key from an x509 key (a clone for bare keys).
    pub fn to_bare(&self) -> Result<PublicKey, Error> {
        if self.key_type.is_x509() {
            Self::from_material(self.material.clone())
        } else {
            Ok(self.clone())
        }
    }

    /// RSA modulus size in bits, for RSA keys.
    pub fn rsa_bits(&self) -> Option<usize> {
        self.material.rsa_bits()
    }
}

/// The key-ID rule on raw strings, for callers holding metadata text: SHA-256 over
/// `{"keytype":<t>,"keyval":{"private":null,"public":<b64>}}` in canonical form.
pub fn key_id(key_type: &str, public_b64: &str) -> String {
    let mut keyval = Map::new();
    keyval.insert("private", Value::Null);
    keyval.insert("public", public_b64);
    let mut m = Map::new();
    m.insert("keytype", key_type);
    m.insert("keyval", keyval);
    hex::encode(Sha256::digest(berth_cjson::to_canonical(&Value::Object(m))))
}
