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
    // Go's pem.Encode writes headers in sorted order: gun before role.
    let mut headers = Vec::new();
    if let Some(gun) = gun {
        headers.push(("gun", gun));
    }
    headers.push(("role", role));
    encode_pem(tag, &headers, &contents)
}

/// PEM as Go's `pem.Encode` writes it: `key: value` headers, a blank line, 64-column base64.
/// Written by hand because the `pem` crate refuses header values containing ':', and a GUN has
/// one whenever the registry has a port (`localhost:5000/team/app`).
fn encode_pem(tag: &str, headers: &[(&str, &str)], contents: &[u8]) -> Result<String, Error> {
    use base64::Engine as _;
    let mut out = format!("-----BEGIN {tag}-----\n");
    for (k, v) in headers {
        // A line break in a value would forge further headers or end the header block.
        if v.contains(['\n', '\r']) || v.trim() != *v {
            return Err(Error::KeyFile(format!("invalid {k} header value {v:?}")));
        }
        out.push_str(&format!("{k}: {v}\n"));
    }
    if !headers.is_empty() {
        out.push('\n');
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(contents);
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {tag}-----\n"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gun_with_a_port_is_written_and_read_back() {
        let key = PrivateKey::generate_ecdsa().unwrap();
        let gun = "localhost:5000/team/app";
        let text = encrypt(&key, "targets", Some(gun), "pw").unwrap();
        assert!(text.starts_with(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\ngun: localhost:5000/team/app\nrole: targets\n\n"
        ));
        assert!(text.lines().all(|l| l.len() <= 64));
        assert_eq!(
            headers(text.as_bytes()).unwrap(),
            (Some("targets".into()), Some(gun.into()))
        );
        let kf = decrypt(text.as_bytes(), "pw").unwrap();
        assert_eq!(kf.gun.as_deref(), Some(gun));
        assert_eq!(kf.key.key_id(), key.key_id());
        assert!(matches!(
            decrypt(text.as_bytes(), "wrong"),
            Err(Error::Decrypt)
        ));
        // The bytes are exactly what the pem crate writes where it can (no colon in the GUN).
        let plain = encrypt(&key, "root", None, "").unwrap();
        let block = pem::parse(&plain).unwrap();
        let mut reference = pem::Pem::new(block.tag(), block.contents().to_vec());
        reference.headers_mut().add("role", "root").unwrap();
        let reference = pem::encode_config(
            &reference,
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        assert_eq!(plain, reference);
        assert!(encrypt(&key, "targets", Some("a\nrole: root"), "pw").is_err());
    }
}
