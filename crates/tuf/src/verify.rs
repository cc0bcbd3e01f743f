//! Threshold signature verification (Notary `signed.VerifySignatures`).

use std::collections::{BTreeMap, BTreeSet};

use berth_crypto::{PublicKey, SigMethod};

use crate::Error;
use crate::root::RoleKeys;
use crate::signed::Envelope;

/// The keys allowed to sign a role and how many distinct ones must.
#[derive(Debug, Clone)]
pub struct KeyRole {
    pub name: String,
    /// Only the keys the role lists; IDs listed but not defined are left out.
    pub keys: BTreeMap<String, PublicKey>,
    pub threshold: i64,
}

impl KeyRole {
    pub fn new(name: &str, role: &RoleKeys, defined: &BTreeMap<String, PublicKey>) -> Self {
        let keys = role
            .keyids
            .iter()
            .filter_map(|id| defined.get(id).map(|k| (id.clone(), k.clone())))
            .collect();
        KeyRole {
            name: name.to_owned(),
            keys,
            threshold: role.threshold,
        }
    }
}

/// Counts the distinct keys of `role` with a valid signature on `env`, and requires at least
/// the threshold. As in Notary: signatures by keys outside the role are ignored, a repeated
/// key ID counts once, a signature that fails (bad bytes, unknown method) is skipped, but a
/// key whose computed ID differs from the ID it is listed under aborts verification.
pub fn verify_threshold(env: &Envelope, role: &KeyRole) -> Result<usize, Error> {
    let threshold_err = |valid| Error::Threshold {
        role: role.name.clone(),
        valid,
        threshold: role.threshold.max(0) as usize,
    };
    if role.threshold < 1 {
        return Err(threshold_err(0));
    }
    let msg = env.signing_input();
    let mut valid = BTreeSet::new();
    for sig in env.signatures() {
        if valid.contains(&sig.keyid) {
            continue;
        }
        let Some(key) = role.keys.get(&sig.keyid) else {
            continue;
        };
        if key.key_id() != sig.keyid {
            return Err(Error::KeyIdMismatch(sig.keyid.clone()));
        }
        let Ok(method) = SigMethod::parse(&sig.method) else {
            continue;
        };
        if key.verify(method, &msg, &sig.sig).is_ok() {
            valid.insert(sig.keyid.clone());
        }
    }
    if (valid.len() as i64) < role.threshold {
        return Err(threshold_err(valid.len()));
    }
    Ok(valid.len())
}
