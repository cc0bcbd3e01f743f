//! The Notary Project JWS envelope (signature-envelope-jws.md): flattened JWS JSON
//! serialization, `payload` = `{"targetArtifact": descriptor}`, protected headers `alg`, `cty`,
//! `crit`, `io.cncf.notary.signingScheme` (`notary.x509`), `io.cncf.notary.signingTime`, and
//! unprotected `x5c` (leaf first) and `io.cncf.notary.signingAgent`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use der::Decode as _;
use ring::signature as rs;
use serde_json::{Map, Value, json};

use crate::cert::{Cert, KeyKind};
pub use crate::envelope::Envelope;
use crate::{Descriptor, PAYLOAD_CTY, Result, err};

pub const SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
pub const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
pub const EXPIRY: &str = "io.cncf.notary.expiry";
pub const AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
pub const SIGNING_AGENT: &str = "io.cncf.notary.signingAgent";
pub const SCHEME_X509: &str = "notary.x509";

enum Key {
    Ecdsa(rs::EcdsaKeyPair),
    Rsa(rs::RsaKeyPair, &'static dyn rs::RsaEncoding),
}

/// A signing key with its certificate chain (leaf first).
pub struct Signer {
    key: Key,
    chain: Vec<Cert>,
    alg: &'static str,
}

/// SEC1 `ECPrivateKey` (RFC 5915), the `EC PRIVATE KEY` PEM block.
#[derive(der::Sequence)]
struct EcPrivateKey<'a> {
    version: u8,
    private_key: &'a der::asn1::OctetStringRef,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    parameters: Option<der::asn1::ObjectIdentifier>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    public_key: Option<der::asn1::BitStringRef<'a>>,
}

impl Signer {
    /// `key_pem`: a PKCS#8 `PRIVATE KEY`, SEC1 `EC PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`;
    /// `chain_pem`: the certificate chain, leaf first, whose leaf holds the key's public half.
    pub fn from_pem(key_pem: &[u8], chain_pem: &[u8]) -> Result<Signer> {
        let chain = Cert::from_pem_bundle(chain_pem)?;
        let leaf = &chain[0];
        let alg = leaf.key.jws_alg()?;
        let block = pem::parse_many(key_pem)
            .map_err(|e| crate::Error(format!("bad key PEM: {e}")))?
            .into_iter()
            .find(|b| b.tag().ends_with("PRIVATE KEY"))
            .ok_or_else(|| crate::Error("no PRIVATE KEY block in the key file".into()))?;
        let rng = ring::rand::SystemRandom::new();
        let rejected = |e: ring::error::KeyRejected| {
            crate::Error(format!(
                "the key is not usable with the certificate's {alg}: {e}"
            ))
        };
        let key = match leaf.key {
            KeyKind::P256 | KeyKind::P384 => {
                let a = if leaf.key == KeyKind::P256 {
                    &rs::ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &rs::ECDSA_P384_SHA384_FIXED_SIGNING
                };
                let pair = match block.tag() {
                    "EC PRIVATE KEY" => {
                        let k = EcPrivateKey::from_der(block.contents())
                            .map_err(|e| crate::Error(format!("bad EC PRIVATE KEY: {e}")))?;
                        let _ = (k.version, k.parameters, k.public_key);
                        // ring checks the private key against the leaf's public key.
                        rs::EcdsaKeyPair::from_private_key_and_public_key(
                            a,
                            k.private_key.as_bytes(),
                            &leaf.public_key,
                            &rng,
                        )
                    }
                    _ => rs::EcdsaKeyPair::from_pkcs8(a, block.contents(), &rng),
                }
                .map_err(rejected)?;
                Key::Ecdsa(pair)
            }
            KeyKind::Rsa(_) => {
                let pair = match block.tag() {
                    "RSA PRIVATE KEY" => rs::RsaKeyPair::from_der(block.contents()),
                    _ => rs::RsaKeyPair::from_pkcs8(block.contents()),
                }
                .map_err(rejected)?;
                let enc: &'static dyn rs::RsaEncoding = match alg {
                    "PS256" => &rs::RSA_PSS_SHA256,
                    "PS384" => &rs::RSA_PSS_SHA384,
                    _ => &rs::RSA_PSS_SHA512,
                };
                Key::Rsa(pair, enc)
            }
        };
        let public = match &key {
            Key::Ecdsa(k) => ring::signature::KeyPair::public_key(k).as_ref().to_vec(),
            Key::Rsa(k, _) => ring::signature::KeyPair::public_key(k).as_ref().to_vec(),
        };
        if public != leaf.public_key {
            return err("the private key does not belong to the first certificate of the chain");
        }
        Ok(Signer { key, chain, alg })
    }

    pub fn chain(&self) -> &[Cert] {
        &self.chain
    }

    pub fn alg(&self) -> &'static str {
        self.alg
    }

    /// Hex SHA-256 of each certificate, leaf first (the manifest's thumbprint annotation).
    pub fn thumbprints(&self) -> Vec<String> {
        self.chain.iter().map(Cert::thumbprint).collect()
    }

    /// The signature of `input` with the key: fixed-size `r||s` for ECDSA (as both JWS and
    /// COSE want it), RSASSA-PSS for RSA. Every envelope signs through here.
    pub(crate) fn sign_raw(&self, input: &[u8]) -> Result<Vec<u8>> {
        let rng = ring::rand::SystemRandom::new();
        Ok(match &self.key {
            Key::Ecdsa(k) => k
                .sign(&rng, input)
                .map_err(|_| crate::Error("signing failed".into()))?
                .as_ref()
                .to_vec(),
            Key::Rsa(k, enc) => {
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(*enc, &rng, input, &mut out)
                    .map_err(|_| crate::Error("signing failed".into()))?;
                out
            }
        })
    }

    /// The JWS envelope (`application/jose+json`) signing `target` at `signing_time` (unix
    /// seconds), by `agent`.
    pub fn sign(&self, target: &Descriptor, signing_time: i64, agent: &str) -> Result<Vec<u8>> {
        let payload = serde_json::to_vec(&json!({ "targetArtifact": target }))
            .map_err(|e| crate::Error(e.to_string()))?;
        let protected = serde_json::to_vec(&json!({
            "alg": self.alg,
            "crit": [SIGNING_SCHEME],
            "cty": PAYLOAD_CTY,
            SIGNING_SCHEME: SCHEME_X509,
            SIGNING_TIME: crate::time::format(signing_time),
        }))
        .map_err(|e| crate::Error(e.to_string()))?;
        let protected = URL_SAFE_NO_PAD.encode(protected);
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let input = format!("{protected}.{payload}");
        let sig = self.sign_raw(input.as_bytes())?;
        let x5c: Vec<String> = self.chain.iter().map(|c| STANDARD.encode(&c.der)).collect();
        let env = json!({
            "payload": payload,
            "protected": protected,
            "header": { "x5c": x5c, SIGNING_AGENT: agent },
            "signature": URL_SAFE_NO_PAD.encode(sig),
        });
        serde_json::to_vec(&env).map_err(|e| crate::Error(e.to_string()))
    }
}

fn b64url(field: &str, s: &Value) -> Result<Vec<u8>> {
    let s = s
        .as_str()
        .ok_or_else(|| crate::Error(format!("envelope field {field} missing or not a string")))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| crate::Error(format!("envelope field {field} is not base64url: {e}")))
}

impl Envelope {
    /// Parses `bytes` and checks its integrity: the headers the spec requires (and every
    /// critical one understood), the signature over `BASE64URL(protected).BASE64URL(payload)`
    /// with the `x5c` leaf's key, and a payload naming a target artifact.
    pub fn verify_integrity(bytes: &[u8]) -> Result<Envelope> {
        let env: Map<String, Value> = serde_json::from_slice(bytes)
            .map_err(|e| crate::Error(format!("the envelope is not a JWS JSON object: {e}")))?;
        let protected_raw = b64url("protected", &env["protected"])?;
        let payload_raw = b64url("payload", &env["payload"])?;
        let sig = b64url("signature", &env["signature"])?;
        let protected: Map<String, Value> = serde_json::from_slice(&protected_raw)
            .map_err(|e| crate::Error(format!("the protected header is not JSON: {e}")))?;
        let s = |k: &str| protected.get(k).and_then(Value::as_str);
        let Some(alg) = s("alg") else {
            return err("protected header without alg");
        };
        if s("cty") != Some(PAYLOAD_CTY) {
            return err(format!("protected header cty is not {PAYLOAD_CTY}"));
        }
        let scheme = s(SIGNING_SCHEME).unwrap_or_default().to_owned();
        if scheme != SCHEME_X509 {
            return err(format!(
                "signing scheme {scheme:?} is not supported (only {SCHEME_X509} is)"
            ));
        }
        let Some(crit) = protected.get("crit").and_then(Value::as_array) else {
            return err("protected header without crit");
        };
        let crit: Vec<&str> = crit.iter().filter_map(Value::as_str).collect();
        crate::envelope::check_critical(&crit, |k| protected.contains_key(k))?;
        let signing_time = crate::time::parse(
            s(SIGNING_TIME).ok_or_else(|| crate::Error(format!("no {SIGNING_TIME}")))?,
        )?;
        let expiry = match protected.get(EXPIRY) {
            Some(v) => Some(crate::time::parse(v.as_str().unwrap_or_default())?),
            None => None,
        };
        let header = env.get("header").and_then(Value::as_object);
        let x5c = header
            .and_then(|h| h.get("x5c"))
            .and_then(Value::as_array)
            .ok_or_else(|| crate::Error("unprotected header without x5c".into()))?;
        if x5c.is_empty() {
            return err("x5c is empty");
        }
        let chain = x5c
            .iter()
            .map(|c| {
                let der = STANDARD
                    .decode(c.as_str().unwrap_or_default())
                    .map_err(|e| crate::Error(format!("x5c entry is not base64: {e}")))?;
                Cert::from_der(&der)
            })
            .collect::<Result<Vec<_>>>()?;
        let input = [
            env["protected"].as_str().unwrap_or_default(),
            ".",
            env["payload"].as_str().unwrap_or_default(),
        ]
        .concat();
        chain[0].verify_jws(alg, input.as_bytes(), &sig)?;
        let payload: Value = serde_json::from_slice(&payload_raw)
            .map_err(|e| crate::Error(format!("the payload is not JSON: {e}")))?;
        let target: Descriptor = serde_json::from_value(payload["targetArtifact"].clone())
            .map_err(|e| {
                crate::Error(format!(
                    "the payload's targetArtifact is not a descriptor: {e}"
                ))
            })?;
        Ok(Envelope {
            alg: alg.to_owned(),
            signing_scheme: scheme,
            signing_time,
            expiry,
            signing_agent: header
                .and_then(|h| h.get(SIGNING_AGENT))
                .and_then(Value::as_str)
                .map(str::to_owned),
            chain,
            target,
        })
    }
}
