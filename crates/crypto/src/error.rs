use thiserror::Error;

/// Errors from key handling, signatures, certificates and key files.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// `keytype` is not one Notary defines.
    #[error("unknown key type {0:?}")]
    UnknownKeyType(String),
    /// Signature `method` is not one we verify.
    #[error("unsupported signature method {0:?}")]
    UnknownMethod(String),
    /// The key material could not be decoded for its declared type.
    #[error("invalid {key_type} key: {msg}")]
    InvalidKey { key_type: &'static str, msg: String },
    /// A key of a type or size we refuse (e.g. P-384, RSA < 2048 bits).
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// The signature method cannot be used with this key type.
    #[error("method {method} cannot be used with a {key_type} key")]
    MethodKeyMismatch {
        method: &'static str,
        key_type: &'static str,
    },
    /// The signature does not verify (wrong bytes, wrong length, wrong key).
    #[error("signature verification failed")]
    BadSignature,
    /// Signing failed inside the crypto library.
    #[error("signing failed: {0}")]
    Signing(String),
    /// A JSON key object does not have Notary's shape.
    #[error("malformed key object: {0}")]
    MalformedKeyObject(&'static str),
    /// Base64 that does not decode.
    #[error("invalid base64 in {0}")]
    Base64(&'static str),
    /// A certificate that does not parse or build.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A PEM key file that is not in a format Notary writes.
    #[error("key file: {0}")]
    KeyFile(String),
    /// Decryption failed: almost always a wrong passphrase.
    #[error("could not decrypt private key (wrong passphrase?)")]
    Decrypt,
    /// The operating system's random source failed.
    #[error("random number generator failed")]
    Rng,
}
