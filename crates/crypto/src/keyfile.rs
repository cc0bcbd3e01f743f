//! Notary/Docker private key files (`private/<canonical key id>.key`).
//!
//! ```text
//! -----BEGIN ENCRYPTED PRIVATE KEY-----
//! gun: example.com/foo        (absent for root and delegation keys)
//! role: targets
//!
//! <base64 PKCS#8 EncryptedPrivateKeyInfo, 64 columns>
//! -----END ENCRYPTED PRIVATE KEY-----
//! ```
//!
//! Encryption is PBES2 with PBKDF2-HMAC-SHA1 (PRF field omitted, i.e. the default), an 8-byte
//! salt, 2048 iterations and AES-256-CBC, which is all Notary's reader accepts. With an empty
//! passphrase Notary writes an unencrypted `PRIVATE KEY` block instead.

use der::asn1::OctetStringRef;
use der::{Decode as _, Encode as _};
use pkcs8::EncryptedPrivateKeyInfoRef;
use pkcs8::pkcs5::{self, pbes2};

use crate::{Error, PrivateKey};

/// Notary's PBKDF2 iteration count.
pub const PBKDF2_ITERATIONS: u32 = 2048;

const ENCRYPTED_TAG: &str = "ENCRYPTED PRIVATE KEY";
const PLAIN_TAG: &str = "PRIVATE KEY";

/// A decoded key file.
#[derive(Debug)]
pub struct KeyFile {
    /// The `role:` header: `root`, `targets`, `snapshot`, a delegation name, or a Docker signer name.
    pub role: Option<String>,
    /// The `gun:` header, present for targets and snapshot keys.
    pub gun: Option<String>,
    pub key: PrivateKey,
}

/// The `role:` and `gun:` headers, read without the passphrase.
pub fn headers(pem_text: &[u8]) -> Result<(Option<String>, Option<String>), Error> {
    let block = pem::parse(pem_text).map_err(|e| Error::KeyFile(e.to_string()))?;
    let h = block.headers();
    Ok((
        h.get("role").map(str::to_owned),
        h.get("gun").map(str::to_owned),
    ))
}

/// Decodes a key file, decrypting it with `passphrase` if it is encrypted.
///
/// Legacy formats (`EC PRIVATE KEY`, `RSA PRIVATE KEY`, `ED25519 PRIVATE KEY`, RFC 1423
/// encryption) are refused; Notary has written PKCS#8 since 0.6.
pub fn decrypt(pem_text: &[u8], passphrase: &str) -> Result<KeyFile, Error> {
    let block = pem::parse(pem_text).map_err(|e| Error::KeyFile(e.to_string()))?;
    let key = match block.tag() {
        ENCRYPTED_TAG => {
            let info = EncryptedPrivateKeyInfoRef::from_der(block.contents())
                .map_err(|e| Error::KeyFile(format!("EncryptedPrivateKeyInfo: {e}")))?;
            let plain = der::zeroize::Zeroizing::new(
                info.encryption_algorithm
                    .decrypt(passphrase, info.encrypted_data.as_bytes())
                    .map_err(|_| Error::Decrypt)?,
            );
            // A wrong passphrase usually fails the CBC padding check, but can pass it by chance
            // (about 1 in 256); the PKCS#8 parse then fails, which means the same thing.
            PrivateKey::from_pkcs8_der(&plain).map_err(|_| Error::Decrypt)?
        }
        PLAIN_TAG => PrivateKey::from_pkcs8_der(block.contents())?,
        other => return Err(Error::KeyFile(format!("unsupported PEM block {other:?}"))),
    };
    let h = block.headers();
    Ok(KeyFile {
        role: h.get("role").map(str::to_owned),
        gun: h.get("gun").map(str::to_owned),
        key,
    })
}

/// Writes a key file as Notary does. `gun` should be `None` for root and delegation keys.
/// An empty passphrase writes an unencrypted `PRIVATE KEY` block, as Notary does.
pub fn encrypt(
    key: &PrivateKey,
    role: &str,
    gun: Option<&str>,
    passphrase: &str,
) -> Result<String, Error> {
    let plain = key.to_pkcs8_der()?;
    let fail = |e: &dyn std::fmt::Display| Error::KeyFile(format!("encrypting: {e}"));
    let (tag, contents) = if passphrase.is_empty() {
        (PLAIN_TAG, plain.to_vec())
    } else {
        let salt = crate::rng::random_bytes::<8>()?;
        let iv = crate::rng::random_bytes::<16>()?;
        let kdf = pbes2::Pbkdf2Params {
            salt: pbes2::Salt::new(salt).map_err(|e| fail(&e))?,
            iteration_count: PBKDF2_ITERATIONS,
            key_length: None,
            prf: pbes2::Pbkdf2Prf::HmacWithSha1,
        };
        let scheme = pkcs5::EncryptionScheme::from(pbes2::Parameters {
            kdf: kdf.into(),
            encryption: pbes2::EncryptionScheme::Aes256Cbc { iv },
        });
        let ciphertext = scheme.encrypt(passphrase, &plain).map_err(|e| fail(&e))?;
        let info = EncryptedPrivateKeyInfoRef {
            encryption_algorithm: scheme,
            encrypted_data: OctetStringRef::new(&ciphertext).map_err(|e| fail(&e))?,
        };
        (ENCRYPTED_TAG, info.to_der().map_err(|e| fail(&e))?)
    };
    let mut block = pem::Pem::new(tag, contents);
    // Go's pem.Encode writes headers in sorted order: gun before role.
    if let Some(gun) = gun {
        block.headers_mut().add("gun", gun).map_err(|e| fail(&e))?;
    }
    block
        .headers_mut()
        .add("role", role)
        .map_err(|e| fail(&e))?;
    Ok(pem::encode_config(
        &block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    ))
}
