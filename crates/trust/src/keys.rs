//! Server-held timestamp and snapshot keys: creation, sealing, and finding the ones a root
//! lists.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use berth_crypto::{PrivateKey, PublicKey};
use berth_storage::{ServerKeyRecord, ServerKeyRole};
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::options::KeyAlgorithm;
use crate::vault::KeyVault;

/// The public key as Notary's `.key` endpoints write it: Go's struct order, not canonical.
pub(crate) fn public_json(key: &PublicKey) -> Vec<u8> {
    // Base64 and key type names need no JSON escaping.
    format!(
        r#"{{"keytype":"{}","keyval":{{"public":"{}","private":null}}}}"#,
        key.key_type().as_str(),
        B64.encode(key.public_bytes())
    )
    .into_bytes()
}

/// Associated data of a sealed key: which record it belongs to.
fn aad(gun: &str, role: &str, key_id: &str) -> Vec<u8> {
    format!("berth-trust-key\0{gun}\0{role}\0{key_id}").into_bytes()
}

/// A new key for (gun, role), sealed and ready to insert.
pub(crate) fn create(
    vault: &KeyVault,
    gun: &str,
    role: ServerKeyRole,
    alg: KeyAlgorithm,
    now: SystemTime,
) -> Result<ServerKeyRecord> {
    let key = match alg {
        KeyAlgorithm::Ecdsa => PrivateKey::generate_ecdsa(),
        KeyAlgorithm::Ed25519 => PrivateKey::generate_ed25519(),
    }
    .map_err(|e| Error::Crypto(e.to_string()))?;
    let key_id = key.key_id();
    let der = key
        .to_pkcs8_der()
        .map_err(|e| Error::Crypto(e.to_string()))?;
    Ok(ServerKeyRecord {
        sealed_private: Bytes::from(vault.seal(&der, &aad(gun, role.as_str(), &key_id))?),
        public: Bytes::from(public_json(key.public_key())),
        algorithm: key.key_type().as_str().to_owned(),
        role,
        key_id,
        created: now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    })
}

/// Opens a held key, checking it is the key its record names.
pub(crate) fn unseal(vault: &KeyVault, gun: &str, rec: &ServerKeyRecord) -> Result<PrivateKey> {
    let der = vault
        .unseal(
            &rec.sealed_private,
            &aad(gun, rec.role.as_str(), &rec.key_id),
        )
        .map_err(|_| Error::Unseal(rec.key_id.clone()))?;
    let key = PrivateKey::from_pkcs8_der(&der).map_err(|_| Error::Unseal(rec.key_id.clone()))?;
    if key.key_id() != rec.key_id {
        return Err(Error::Unseal(rec.key_id.clone()));
    }
    Ok(key)
}
