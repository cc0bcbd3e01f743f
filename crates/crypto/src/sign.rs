//! Signature methods and verification, as Notary's verifiers define them.

use rsa::signature::Verifier as _;
use sha2::Sha256;

use crate::Error;
use crate::keys::{KeyType, Material, PublicKey};

/// Notary rejects RSA keys below this size for every RSA method.
pub const MIN_RSA_BITS: usize = 2048;

/// The `method` of a signature. Notary lower-cases it on parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigMethod {
    /// ECDSA over SHA-256(msg); the signature is raw `r || s`, each padded to the curve size.
    Ecdsa,
    /// Ed25519 over the message itself.
    Eddsa,
    /// RSASSA-PSS with SHA-256 and a 32-byte salt.
    RsaPss,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1v15,
}

impl SigMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SigMethod::Ecdsa => "ecdsa",
            SigMethod::Eddsa => "eddsa",
            SigMethod::RsaPss => "rsapss",
            SigMethod::RsaPkcs1v15 => "rsapkcs1v15",
        }
    }

    /// Parses a method name case-insensitively. The legacy `pycrypto-pkcs#1 pss` method is
    /// refused: Notary's own verifier for it is documented as never working with PyCrypto.
    pub fn parse(s: &str) -> Result<Self, Error> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "ecdsa" => SigMethod::Ecdsa,
            "eddsa" => SigMethod::Eddsa,
            "rsapss" => SigMethod::RsaPss,
            "rsapkcs1v15" => SigMethod::RsaPkcs1v15,
            _ => return Err(Error::UnknownMethod(s.to_owned())),
        })
    }

    /// The method Notary signs with for a key type.
    pub fn default_for(key_type: KeyType) -> Self {
        match key_type {
            KeyType::Ecdsa | KeyType::EcdsaX509 => SigMethod::Ecdsa,
            KeyType::Rsa | KeyType::RsaX509 => SigMethod::RsaPss,
            KeyType::Ed25519 => SigMethod::Eddsa,
        }
    }
}

impl std::fmt::Display for SigMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PublicKey {
    /// Verifies `sig` over `msg` with `method`. The method must suit the key type, as Notary's
    /// per-method verifiers require.
    pub fn verify(&self, method: SigMethod, msg: &[u8], sig: &[u8]) -> Result<(), Error> {
        let mismatch = || Error::MethodKeyMismatch {
            method: method.as_str(),
            key_type: self.key_type().as_str(),
        };
        match (method, &self.material) {
            (SigMethod::Ecdsa, Material::P256(vk)) => {
                // Raw r||s of exactly 64 bytes; DER-encoded signatures are refused.
                if sig.len() != 64 {
                    return Err(Error::BadSignature);
                }
                // ring's verifier: several times faster than the pure-Rust one, and every
                // publish and every client refresh verifies a handful of these.
                let point = vk.to_sec1_point(false);
                ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ECDSA_P256_SHA256_FIXED,
                    point.as_bytes(),
                )
                .verify(msg, sig)
                .map_err(|_| Error::BadSignature)
            }
            (SigMethod::Eddsa, Material::Ed25519(vk)) => {
                let sig =
                    ed25519_dalek::Signature::from_slice(sig).map_err(|_| Error::BadSignature)?;
                vk.verify(msg, &sig).map_err(|_| Error::BadSignature)
            }
            (SigMethod::RsaPss | SigMethod::RsaPkcs1v15, Material::Rsa(pk)) => {
                check_rsa_size(pk)?;
                if method == SigMethod::RsaPss {
                    let sig =
                        rsa::pss::Signature::try_from(sig).map_err(|_| Error::BadSignature)?;
                    rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(pk.clone(), 32)
                        .verify(msg, &sig)
                        .map_err(|_| Error::BadSignature)
                } else {
                    let sig =
                        rsa::pkcs1v15::Signature::try_from(sig).map_err(|_| Error::BadSignature)?;
                    rsa::pkcs1v15::VerifyingKey::<Sha256>::new(pk.clone())
                        .verify(msg, &sig)
                        .map_err(|_| Error::BadSignature)
                }
            }
            _ => Err(mismatch()),
        }
    }
}

pub(crate) fn check_rsa_size(pk: &rsa::PublicKey) -> Result<(), Error> {
    use rsa::traits::PublicKeyParts;
    let bits = pk.n().bit_width() as usize;
    if bits < MIN_RSA_BITS {
        return Err(Error::UnsupportedKey(format!(
            "RSA key of {bits} bits (minimum {MIN_RSA_BITS})"
        )));
    }
    Ok(())
}
