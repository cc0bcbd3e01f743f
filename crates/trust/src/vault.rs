//! Sealing of server-held private keys: AES-256-GCM under a key derived from a passphrase with
//! argon2id.
//!
//! Sealed format (version 1): `"BKV1" || nonce (12 bytes) || ciphertext || tag (16 bytes)`.
//! The associated data binds a sealed key to its record (`gun`, `role`, key ID), so a sealed
//! blob copied into another GUN's row does not open. The plaintext is the key's PKCS#8 DER.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::{Algorithm, Argon2, Params, Version};
use berth_storage::SettingsStore;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"BKV1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Salts shorter than this are refused (argon2 itself accepts 8).
pub const MIN_SALT_LEN: usize = 16;
/// Settings the vault keeps in the trust store: its salt (hex) and a sealed check value that
/// tells a wrong passphrase at startup rather than at the first signature.
pub const SALT_SETTING: &str = "trust_vault_salt";
pub const CHECK_SETTING: &str = "trust_vault_check";
const CHECK_PLAINTEXT: &[u8] = b"berth trust vault";

/// argon2id parameters: OWASP's second recommendation (19 MiB, 2 passes, 1 lane). Changing them
/// changes the derived key, so they are part of the format.
fn kdf() -> Result<Argon2<'static>> {
    let params =
        Params::new(19 * 1024, 2, 1, Some(32)).map_err(|e| Error::Crypto(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Seals and unseals server-held private keys.
#[derive(Clone)]
pub struct KeyVault {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyVault(..)")
    }
}

impl KeyVault {
    /// Derives the sealing key from `passphrase` and `salt` (at least [`MIN_SALT_LEN`] bytes).
    /// An empty passphrase is refused: it would seal keys in all but name.
    pub fn from_passphrase(passphrase: &[u8], salt: &[u8]) -> Result<Self> {
        if passphrase.is_empty() {
            return Err(Error::Crypto(
                "the trust key vault passphrase is empty".into(),
            ));
        }
        if salt.len() < MIN_SALT_LEN {
            return Err(Error::Crypto(format!(
                "the trust key vault salt must be at least {MIN_SALT_LEN} bytes"
            )));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        kdf()?
            .hash_password_into(passphrase, salt, key.as_mut())
            .map_err(|e| Error::Crypto(e.to_string()))?;
        let cipher =
            Aes256Gcm::new_from_slice(key.as_ref()).map_err(|e| Error::Crypto(e.to_string()))?;
        Ok(KeyVault { cipher })
    }

    /// A fresh random salt.
    pub fn generate_salt() -> Result<[u8; 32]> {
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt).map_err(|e| Error::Crypto(e.to_string()))?;
        Ok(salt)
    }

    /// Opens the vault of `store`: reads its salt (creating one on first use), derives the key
    /// and checks it against the stored check value (written on first use). A wrong passphrase
    /// fails here with [`Error::VaultPassphrase`].
    pub async fn open(store: &dyn SettingsStore, passphrase: &[u8]) -> Result<Self> {
        let salt = match store
            .setting_get(SALT_SETTING)
            .await
            .map_err(Error::Storage)?
        {
            Some(hex_salt) => hex::decode(hex_salt.trim())
                .map_err(|_| Error::Crypto(format!("setting {SALT_SETTING} is not hex")))?,
            None => {
                // Insert-if-absent: servers starting at once on an empty store agree on one salt.
                let stored = store
                    .setting_insert_if_absent(SALT_SETTING, &hex::encode(Self::generate_salt()?))
                    .await
                    .map_err(Error::Storage)?;
                hex::decode(stored.trim())
                    .map_err(|_| Error::Crypto(format!("setting {SALT_SETTING} is not hex")))?
            }
        };
        let vault = Self::from_passphrase(passphrase, &salt)?;
        let check = match store
            .setting_get(CHECK_SETTING)
            .await
            .map_err(Error::Storage)?
        {
            Some(check) => check,
            None => {
                // A racing first start may have written its own check value: the stored one is
                // what this passphrase is checked against either way.
                let sealed = vault.seal(CHECK_PLAINTEXT, CHECK_SETTING.as_bytes())?;
                store
                    .setting_insert_if_absent(CHECK_SETTING, &hex::encode(sealed))
                    .await
                    .map_err(Error::Storage)?
            }
        };
        let sealed = hex::decode(check.trim()).map_err(|_| Error::VaultPassphrase)?;
        let plain = vault
            .unseal(&sealed, CHECK_SETTING.as_bytes())
            .map_err(|_| Error::VaultPassphrase)?;
        if plain.as_slice() != CHECK_PLAINTEXT {
            return Err(Error::VaultPassphrase);
        }
        Ok(vault)
    }

    /// Encrypts `plaintext`, authenticating `aad` with it, under a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::Crypto(e.to_string()))?;
        let full_aad = [MAGIC.as_slice(), aad].concat();
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &full_aad,
                },
            )
            .map_err(|_| Error::Crypto("sealing failed".into()))?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts what [`KeyVault::seal`] produced with the same `aad`. Fails on a wrong
    /// passphrase, other associated data, or any change to the sealed bytes.
    pub fn unseal(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let bad = || Error::Unseal("sealed data".into());
        let rest = sealed.strip_prefix(MAGIC.as_slice()).ok_or_else(bad)?;
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(bad());
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| bad())?;
        let full_aad = [MAGIC.as_slice(), aad].concat();
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: &full_aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: &[u8] = b"0123456789abcdef";

    #[test]
    fn seal_round_trip_and_failures() {
        let v = KeyVault::from_passphrase(b"correct horse", SALT).unwrap();
        let secret = b"-----a very secret key-----";
        let sealed = v.seal(secret, b"gun\0timestamp\0id").unwrap();
        assert!(sealed.starts_with(MAGIC));
        assert!(!sealed.windows(secret.len()).any(|w| w == secret));
        assert_eq!(
            v.unseal(&sealed, b"gun\0timestamp\0id").unwrap().as_slice(),
            secret
        );
        // Another record's associated data.
        assert!(v.unseal(&sealed, b"gun2\0timestamp\0id").is_err());
        // Wrong passphrase, and wrong salt.
        let w = KeyVault::from_passphrase(b"wrong horse", SALT).unwrap();
        assert!(w.unseal(&sealed, b"gun\0timestamp\0id").is_err());
        let s = KeyVault::from_passphrase(b"correct horse", b"fedcba9876543210").unwrap();
        assert!(s.unseal(&sealed, b"gun\0timestamp\0id").is_err());
        // Any flipped bit.
        for i in [0, 5, sealed.len() - 1] {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(v.unseal(&t, b"gun\0timestamp\0id").is_err(), "byte {i}");
        }
        // Nonces differ between seals of the same plaintext.
        assert_ne!(v.seal(secret, b"").unwrap(), v.seal(secret, b"").unwrap());
        assert!(KeyVault::from_passphrase(b"", SALT).is_err());
        assert!(KeyVault::from_passphrase(b"x", b"short").is_err());
        assert_eq!(format!("{v:?}"), "KeyVault(..)");
    }
}
