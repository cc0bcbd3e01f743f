//! Trust policy and trust store (trust-store-trust-policy.md, OCI trust policy `version` 1.0):
//! which policy applies to an artifact, and whether an envelope verifies under it.
//!
//! Validations and levels, as the spec's table has them:
//!
//! | level      | integrity | authenticity | authenticTimestamp | expiry   | revocation |
//! |------------|-----------|--------------|--------------------|----------|------------|
//! | strict     | enforced  | enforced     | enforced           | enforced | enforced   |
//! | permissive | enforced  | enforced     | logged             | logged   | logged     |
//! | audit      | enforced  | logged       | logged             | logged   | logged     |
//! | skip       | skipped   | skipped      | skipped            | skipped  | skipped    |
//!
//! `override` may set authenticity, authenticTimestamp, expiry and revocation to enforce, log
//! or skip. Revocation (OCSP/CRL) is not checked yet: it is reported as not checked, never as a
//! failure. For `notary.x509` without a timestamp countersignature (none are produced or read
//! yet), the authentic timestamp check is: every certificate of the chain valid now, and the
//! signing time within the leaf's validity.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::cert::{Cert, split_dn};
use crate::envelope::{Envelope, Format};
use crate::{Result, err};

#[derive(Debug, Clone, Deserialize)]
pub struct TrustPolicyDocument {
    pub version: String,
    #[serde(rename = "trustPolicies")]
    pub trust_policies: Vec<TrustPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustPolicy {
    pub name: String,
    pub registry_scopes: Vec<String>,
    pub signature_verification: SignatureVerification,
    #[serde(default)]
    pub trust_stores: Vec<String>,
    #[serde(default)]
    pub trusted_identities: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureVerification {
    pub level: String,
    #[serde(default)]
    pub r#override: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Strict,
    Permissive,
    Audit,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Enforce,
    Log,
    Skip,
}

impl Level {
    pub fn parse(s: &str) -> Result<Level> {
        Ok(match s {
            "strict" => Level::Strict,
            "permissive" => Level::Permissive,
            "audit" => Level::Audit,
            "skip" => Level::Skip,
            _ => return err(format!("unknown signatureVerification level {s:?}")),
        })
    }
}

const VALIDATIONS: [&str; 4] = ["authenticity", "authenticTimestamp", "expiry", "revocation"];

impl TrustPolicyDocument {
    /// Parses and validates a `trustpolicy.json`.
    pub fn parse(bytes: &[u8]) -> Result<TrustPolicyDocument> {
        let doc: TrustPolicyDocument = serde_json::from_slice(bytes)
            .map_err(|e| crate::Error(format!("the trust policy is not valid: {e}")))?;
        doc.validate()?;
        Ok(doc)
    }

    fn validate(&self) -> Result<()> {
        if self.version != "1.0" {
            return err(format!(
                "trust policy version {:?} is not supported (1.0 is)",
                self.version
            ));
        }
        if self.trust_policies.is_empty() {
            return err("the trust policy has no trustPolicies");
        }
        let mut names = std::collections::BTreeSet::new();
        let mut scopes = std::collections::BTreeSet::new();
        for p in &self.trust_policies {
            if p.name.is_empty() || !names.insert(&p.name) {
                return err(format!(
                    "trust policy name {:?} is empty or repeated",
                    p.name
                ));
            }
            if p.registry_scopes.is_empty() {
                return err(format!("trust policy {:?} has no registryScopes", p.name));
            }
            let global = p.registry_scopes.iter().any(|s| s == "*");
            if global && p.registry_scopes.len() > 1 {
                return err(format!(
                    "trust policy {:?}: \"*\" must be its only registry scope",
                    p.name
                ));
            }
            for s in &p.registry_scopes {
                if s != "*" && !s.contains('/') {
                    return err(format!(
                        "trust policy {:?}: registry scope {s:?} is not host/repository",
                        p.name
                    ));
                }
                if !scopes.insert(s) {
                    return err(format!(
                        "registry scope {s:?} appears in more than one trust policy"
                    ));
                }
            }
            let level = Level::parse(&p.signature_verification.level)?;
            if level == Level::Skip {
                if global {
                    return err(format!(
                        "trust policy {:?}: level skip cannot apply to \"*\"",
                        p.name
                    ));
                }
                continue;
            }
            for (k, v) in &p.signature_verification.r#override {
                if !VALIDATIONS.contains(&k.as_str()) {
                    return err(format!("trust policy {:?}: cannot override {k:?}", p.name));
                }
                if !matches!(v.as_str(), "enforce" | "log" | "skip") {
                    return err(format!(
                        "trust policy {:?}: override action {v:?} is not enforce, log or skip",
                        p.name
                    ));
                }
                if k == "authenticity" && v == "skip" {
                    return err(format!(
                        "trust policy {:?}: authenticity cannot be skipped",
                        p.name
                    ));
                }
            }
            if p.trust_stores.is_empty() || p.trusted_identities.is_empty() {
                return err(format!(
                    "trust policy {:?} needs trustStores and trustedIdentities",
                    p.name
                ));
            }
            for ts in &p.trust_stores {
                match ts.split_once(':') {
                    Some(("ca" | "signingAuthority" | "tsa", n)) if !n.is_empty() => {}
                    _ => {
                        return err(format!(
                            "trust policy {:?}: trust store {ts:?} is not TYPE:NAME",
                            p.name
                        ));
                    }
                }
            }
            for id in &p.trusted_identities {
                if id != "*" && !id.starts_with("x509.subject:") {
                    return err(format!(
                        "trust policy {:?}: trusted identity {id:?} is not \"*\" or x509.subject: ...",
                        p.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The policy for `scope` (`host[:port]/repository`): the one naming it, else the `*` one.
    pub fn applicable(&self, scope: &str) -> Result<&TrustPolicy> {
        self.trust_policies
            .iter()
            .find(|p| p.registry_scopes.iter().any(|s| s == scope))
            .or_else(|| {
                self.trust_policies
                    .iter()
                    .find(|p| p.registry_scopes.iter().any(|s| s == "*"))
            })
            .ok_or_else(|| crate::Error(format!("no trust policy applies to {scope}")))
    }
}

impl TrustPolicy {
    pub fn level(&self) -> Result<Level> {
        Level::parse(&self.signature_verification.level)
    }

    /// What to do with a failure of `validation` under this policy.
    pub fn action(&self, validation: &str) -> Action {
        if let Some(a) = self.signature_verification.r#override.get(validation) {
            return match a.as_str() {
                "enforce" => Action::Enforce,
                "skip" => Action::Skip,
                _ => Action::Log,
            };
        }
        match (self.level(), validation) {
            (Ok(Level::Skip), _) => Action::Skip,
            (Ok(Level::Strict), _) => Action::Enforce,
            (Ok(Level::Permissive), "authenticity") => Action::Enforce,
            (Ok(Level::Permissive | Level::Audit), _) => Action::Log,
            (Err(_), _) => Action::Enforce,
        }
    }
}

/// Named trust stores (`ca:NAME`, `signingAuthority:NAME`) and their trusted certificates, as
/// notation lays them out under `truststore/x509/<type>/<name>/`.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    pub stores: BTreeMap<String, Vec<Cert>>,
}

impl TrustStore {
    pub fn add(&mut self, store: &str, certs: Vec<Cert>) {
        self.stores
            .entry(store.to_owned())
            .or_default()
            .extend(certs);
    }
}

/// The result of verifying one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The policy's level is skip: nothing was checked.
    Skipped,
    /// Every enforced validation passed. `logged` holds the failures that were only logged.
    Verified {
        subject: String,
        signing_time: String,
        logged: Vec<String>,
    },
    Failed {
        reason: String,
        logged: Vec<String>,
    },
}

fn chain_trusted(env: &Envelope, policy: &TrustPolicy, store: &TrustStore) -> Result<String> {
    let chain = &env.chain;
    let leaf = &chain[0];
    if leaf.has_eku && !leaf.code_signing {
        return err(format!(
            "the signing certificate {:?} lacks the codeSigning extended key usage",
            leaf.subject
        ));
    }
    if leaf.is_ca && chain.len() > 1 {
        return err(format!(
            "the signing certificate {:?} is a CA certificate",
            leaf.subject
        ));
    }
    for w in chain.windows(2) {
        if !w[1].is_ca {
            return err(format!(
                "{:?} issued {:?} but is not a CA certificate",
                w[1].subject, w[0].subject
            ));
        }
        w[0].issued_by(&w[1])?;
    }
    let last = &chain[chain.len() - 1];
    let mut anchored = None;
    let mut names = Vec::new();
    for ts in &policy.trust_stores {
        // notary.x509 signatures are anchored in CA stores; TSA stores anchor timestamps.
        if !ts.starts_with("ca:") {
            continue;
        }
        names.push(ts.as_str());
        for root in store.stores.get(ts).map(Vec::as_slice).unwrap_or_default() {
            if chain.iter().any(|c| c.der == root.der) || last.issued_by(root).is_ok() {
                anchored = Some((ts.clone(), root.subject.clone()));
                break;
            }
        }
        if anchored.is_some() {
            break;
        }
    }
    let Some((ts, root)) = anchored else {
        return err(format!(
            "the certificate chain of {:?} does not lead to a certificate in trust store(s) {}",
            leaf.subject,
            names.join(", ")
        ));
    };
    let leaf_attrs = leaf.subject_attributes();
    let trusted = policy.trusted_identities.iter().any(|id| {
        if id == "*" {
            return true;
        }
        let want = split_dn(id.trim_start_matches("x509.subject:"));
        !want.is_empty() && want.iter().all(|a| leaf_attrs.contains(a))
    });
    if !trusted {
        return err(format!(
            "the signing certificate's subject {:?} is not among the policy's trusted identities",
            leaf.subject
        ));
    }
    Ok(format!("{ts} ({root})"))
}

/// Verifies `envelope` (bytes of an `application/jose+json` layer) as a signature of the
/// manifest `digest` under `policy`, with `store`, at `now` (unix seconds).
pub fn verify(
    envelope: &[u8],
    digest: &str,
    policy: &TrustPolicy,
    store: &TrustStore,
    now: i64,
) -> Outcome {
    verify_format(Format::Jws, envelope, digest, policy, store, now)
}

/// [`verify`] for an envelope of either format: only the integrity check differs, the chain,
/// trust store, identity, time and expiry checks are the same code for both.
pub fn verify_format(
    format: Format,
    envelope: &[u8],
    digest: &str,
    policy: &TrustPolicy,
    store: &TrustStore,
    now: i64,
) -> Outcome {
    let mut logged = Vec::new();
    let fail = |reason: String, logged: Vec<String>| Outcome::Failed { reason, logged };
    match policy.level() {
        Ok(Level::Skip) => return Outcome::Skipped,
        Ok(_) => {}
        Err(e) => return fail(e.0, logged),
    }
    // Integrity is always enforced; a signature of another artifact is no signature of this one.
    let env = match Envelope::verify_integrity_of(format, envelope) {
        Ok(e) => e,
        Err(e) => return fail(format!("integrity: {e}"), logged),
    };
    if env.target.digest != digest {
        return fail(
            format!(
                "integrity: the signature is for {}, not {digest}",
                env.target.digest
            ),
            logged,
        );
    }
    let check = |name: &str, r: Result<()>, logged: &mut Vec<String>| -> Option<String> {
        match (r, policy.action(name)) {
            (Ok(()), _) | (_, Action::Skip) => None,
            (Err(e), Action::Log) => {
                logged.push(format!("{name}: {e}"));
                None
            }
            (Err(e), Action::Enforce) => Some(format!("{name}: {e}")),
        }
    };
    let mut anchor = String::new();
    let authenticity = chain_trusted(&env, policy, store).map(|a| anchor = a);
    if let Some(r) = check("authenticity", authenticity, &mut logged) {
        return fail(r, logged);
    }
    let leaf = &env.chain[0];
    let timestamp = (|| {
        for c in &env.chain {
            if !c.valid_at(now) {
                return err(format!(
                    "certificate {:?} is not valid now (valid {} to {})",
                    c.subject,
                    crate::time::format(c.not_before),
                    crate::time::format(c.not_after)
                ));
            }
        }
        if !leaf.valid_at(env.signing_time) {
            return err(format!(
                "the signing time {} is outside the signing certificate's validity",
                crate::time::format(env.signing_time)
            ));
        }
        Ok(())
    })();
    if let Some(r) = check("authenticTimestamp", timestamp, &mut logged) {
        return fail(r, logged);
    }
    let expiry = match env.expiry {
        Some(x) if now > x => err(format!(
            "the signature expired at {}",
            crate::time::format(x)
        )),
        _ => Ok(()),
    };
    if let Some(r) = check("expiry", expiry, &mut logged) {
        return fail(r, logged);
    }
    if policy.action("revocation") != Action::Skip {
        logged.push("revocation: not checked (OCSP/CRL are not implemented)".into());
    }
    if !anchor.is_empty() {
        logged.insert(0, format!("trusted through {anchor}"));
    }
    Outcome::Verified {
        subject: leaf.subject.clone(),
        signing_time: crate::time::format(env.signing_time),
        logged,
    }
}
