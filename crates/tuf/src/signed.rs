//! The signed envelope: `{"signed":{...},"signatures":[{"keyid","method","sig"}]}`.
//!
//! The original bytes are kept: the server stores and serves them verbatim and hashes them for
//! snapshot/timestamp meta. Signatures are checked over the canonical re-encoding of the
//! parsed `signed` value, never over the raw substring.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use berth_cjson::{Map, Value};
use berth_crypto::{PrivateKey, PublicKey, SigMethod};

use crate::Error;

/// One entry of `signatures`. `method` is kept as written (lower-cased, as Notary does) so an
/// unknown method is simply a signature that does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub keyid: String,
    pub method: String,
    pub sig: Vec<u8>,
}

impl Signature {
    fn from_value(v: &Value) -> Result<Self, Error> {
        let m = |msg: &str| Error::malformed("signature", msg);
        let o = v.as_object().ok_or_else(|| m("not an object"))?;
        let s = |k: &str| {
            o.get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| m(&format!("{k} missing")))
        };
        Ok(Signature {
            keyid: s("keyid")?.to_owned(),
            method: s("method")?.to_ascii_lowercase(),
            sig: B64.decode(s("sig")?).map_err(|_| m("sig is not base64"))?,
        })
    }

    /// Go writes the struct fields in this order.
    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("keyid", self.keyid.as_str());
        m.insert("method", self.method.as_str());
        m.insert("sig", B64.encode(&self.sig));
        Value::Object(m)
    }
}

/// A parsed metadata file that remembers its exact bytes.
#[derive(Debug, Clone)]
pub struct Envelope {
    raw: Vec<u8>,
    signed: Value,
    signatures: Vec<Signature>,
}

impl Envelope {
    /// Parses a metadata file. `signed` must be an object; `signatures` an array (Go's `null`
    /// for an empty list is accepted).
    pub fn parse(raw: &[u8]) -> Result<Self, Error> {
        let doc = berth_cjson::from_slice(raw)?;
        let obj = doc
            .as_object()
            .ok_or_else(|| Error::malformed("envelope", "not an object"))?;
        let signed = obj
            .get("signed")
            .filter(|v| v.as_object().is_some())
            .cloned();
        let signed = signed
            .ok_or_else(|| Error::malformed("envelope", "signed is missing or not an object"))?;
        let signatures = match obj.get("signatures") {
            Some(Value::Array(a)) => a
                .iter()
                .map(Signature::from_value)
                .collect::<Result<_, _>>()?,
            Some(Value::Null) | None => Vec::new(),
            Some(_) => return Err(Error::malformed("envelope", "signatures is not an array")),
        };
        Ok(Envelope {
            raw: raw.to_vec(),
            signed,
            signatures,
        })
    }

    /// Signs `signed` with each key (its default method), recording each key's own (bare) key
    /// ID, and writes the file as Notary does: Go's `json.Marshal` of the envelope around the
    /// canonical body.
    pub fn sign(signed: Value, keys: &[&PrivateKey]) -> Result<Self, Error> {
        let signers: Vec<_> = keys.iter().map(|k| (*k, k.public_key())).collect();
        Self::sign_as(signed, &signers)
    }

    /// Signs with each private key under the ID of the public key the role lists for it, which
    /// differs from the private key's own ID for x509 keys (root certificates). The listed key
    /// must hold the same public key.
    pub fn sign_as(signed: Value, signers: &[(&PrivateKey, &PublicKey)]) -> Result<Self, Error> {
        let msg = berth_cjson::to_canonical(&signed);
        let signatures = signers
            .iter()
            .map(|(k, listed)| {
                if listed.canonical_key_id()? != k.key_id() {
                    return Err(Error::KeyIdMismatch(listed.key_id()));
                }
                Ok(Signature {
                    keyid: listed.key_id(),
                    method: k.default_method().as_str().to_owned(),
                    sig: k.sign(&msg)?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Self::assemble(signed, signatures)
    }

    /// Writes an envelope from parts, byte-compatible with Notary's output.
    pub fn assemble(signed: Value, signatures: Vec<Signature>) -> Result<Self, Error> {
        let mut raw = b"{\"signed\":".to_vec();
        raw.extend(berth_cjson::go_escape_embedded(
            &berth_cjson::to_canonical(&signed),
        )?);
        raw.extend_from_slice(b",\"signatures\":");
        raw.extend(berth_cjson::to_go_json(&Value::Array(
            signatures.iter().map(Signature::to_value).collect(),
        )));
        raw.push(b'}');
        Ok(Envelope {
            raw,
            signed,
            signatures,
        })
    }

    /// The file exactly as received or written.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    pub fn into_raw(self) -> Vec<u8> {
        self.raw
    }

    /// The `signed` value (generic, unknown fields included).
    pub fn signed(&self) -> &Value {
        &self.signed
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// The signing input: canonical JSON of `signed`.
    pub fn signing_input(&self) -> Vec<u8> {
        berth_cjson::to_canonical(&self.signed)
    }

    /// `signed._type`, if present.
    pub fn type_name(&self) -> Option<&str> {
        self.signed.get("_type").and_then(Value::as_str)
    }

    /// `signed.version`, if present.
    pub fn version(&self) -> Option<i64> {
        self.signed.get("version").and_then(Value::as_i64)
    }

    /// SHA-256 and SHA-512 of the raw bytes (what snapshot and timestamp meta record).
    pub fn hashes(&self) -> (Vec<u8>, Vec<u8>) {
        use sha2::Digest as _;
        (
            sha2::Sha256::digest(&self.raw).to_vec(),
            sha2::Sha512::digest(&self.raw).to_vec(),
        )
    }
}

/// Parses a signature method, for callers that need the enum.
pub fn method(sig: &Signature) -> Result<SigMethod, Error> {
    Ok(SigMethod::parse(&sig.method)?)
}
