//! Notary Project and cosign signatures of a manifest as the server sees them: gathered from
//! the repository (referrers, and cosign's `sha256-<hex>.sig` tag), verified against the
//! repository's verification material (trust policy, trust store, cosign keys) by the pure
//! checks of berth-notation. Used by the `signed-pulls-only` policy (issue 15, "Policy across
//! formats") and by the web UI's tags page.
//!
//! Caches, both keyed by content only, so no change on another cluster node can make an entry
//! wrong: parsed material by the SHA-256 of its text (the "policy version"), and a signature
//! manifest's verdict by (its digest, the subject digest, the material version). Verdicts
//! depend on the clock too (certificate validity), so they are kept [`VERDICT_TTL`] at most.
//! What is listed (referrers, the `.sig` tag) is read on every check: a new or deleted
//! signature counts at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use berth_notation::cosign::{self, PublicKey};
use berth_notation::{Outcome, TrustPolicy, TrustPolicyDocument, TrustStore};
use berth_oci::{Digest, RepoName, TagOrDigest};
use berth_trust::policy::{Accept, Findings, Material};
use futures::StreamExt as _;
use sha2::Digest as _;

use crate::AppState;

/// How long a verdict is reused: it depends on the clock (certificate validity).
const VERDICT_TTL: Duration = Duration::from_secs(60);
/// Bound on each cache; past it the map starts over.
const CACHE_ENTRIES: usize = 4096;
/// Largest signature blob read (an envelope or a simple signing payload is a few KiB).
const MAX_SIGNATURE_BLOB: u64 = 1024 * 1024;
/// Annotation prefix of a registry attestation of a DCT signature.
pub(crate) const ATTESTATION_PREFIX: &str = berth_trust::attest::PREFIX;

/// The parsed verification material of a repository.
pub(crate) struct Verifier {
    /// SHA-256 of the material's JSON: part of every verdict's cache key.
    version: [u8; 32],
    /// The trust policy, or why there is none usable.
    doc: Result<TrustPolicyDocument, String>,
    store: TrustStore,
    /// Label (for people) and key.
    keys: Vec<(String, PublicKey)>,
    /// Material that did not parse (ignored: fail closed).
    pub(crate) problems: Vec<String>,
}

impl Verifier {
    pub(crate) fn has_trust_policy(&self) -> bool {
        self.doc.is_ok()
    }

    /// The trust policy that applies to `repo`. Scopes are `host/repository`; the server
    /// answers to whatever host name clients use, so a scope naming the repository under any
    /// host applies (or the repository alone), then the wildcard `*`.
    fn policy_for(&self, repo: &str) -> Result<&TrustPolicy, String> {
        let doc = self.doc.as_ref().map_err(Clone::clone)?;
        let hit = doc.trust_policies.iter().find_map(|p| {
            p.registry_scopes
                .iter()
                .find(|s| *s == repo || s.split_once('/').is_some_and(|(_, r)| r == repo))
        });
        match hit {
            Some(scope) => doc.applicable(scope),
            None => doc.applicable("*"),
        }
        .map_err(|e| e.0)
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// Parses `m` (cached by the hash of its text).
pub(crate) fn verifier(m: &Material) -> Arc<Verifier> {
    static MEMO: OnceLock<Mutex<HashMap<[u8; 32], Arc<Verifier>>>> = OnceLock::new();
    let text = m.to_json();
    let version = sha256(text.as_bytes());
    let memo = MEMO.get_or_init(Default::default);
    if let Some(v) = memo.lock().unwrap_or_else(|p| p.into_inner()).get(&version) {
        return v.clone();
    }
    let mut problems = Vec::new();
    let doc = match &m.trust_policy {
        None => Err("no Notary Project trust policy is set for this repository".to_owned()),
        Some(v) => serde_json::to_vec(v)
            .map_err(|e| e.to_string())
            .and_then(|b| TrustPolicyDocument::parse(&b).map_err(|e| e.0))
            .map_err(|e| {
                let e = format!("the repository's trust policy is not usable: {e}");
                problems.push(e.clone());
                e
            }),
    };
    let mut store = TrustStore::default();
    for (name, pems) in m.trust_store.iter().flatten() {
        for (i, pem) in pems.iter().enumerate() {
            match berth_notation::cert::Cert::from_pem_bundle(pem.as_bytes()) {
                Ok(certs) => store.add(name, certs),
                Err(e) => problems.push(format!("trust store {name} certificate {i}: {e}")),
            }
        }
    }
    let mut keys = Vec::new();
    for (i, pem) in m.cosign_keys.iter().flatten().enumerate() {
        match PublicKey::from_pem(pem.as_bytes()) {
            Ok(k) => keys.push((key_label(i, pem), k)),
            Err(e) => problems.push(format!("cosign key {}: {e}", i.saturating_add(1))),
        }
    }
    let v = Arc::new(Verifier {
        version,
        doc,
        store,
        keys,
        problems,
    });
    let mut memo = memo.lock().unwrap_or_else(|p| p.into_inner());
    if memo.len() >= CACHE_ENTRIES {
        memo.clear();
    }
    memo.insert(version, v.clone());
    v
}

/// "key 2 (sha256:0123abcd…)": the listed key's position and a short hash of its PEM text.
pub(crate) fn key_label(i: usize, pem: &str) -> String {
    let h = hex::encode(sha256(pem.trim().as_bytes()));
    format!(
        "key {} ({})",
        i.saturating_add(1),
        h.get(..12).unwrap_or(h.as_str())
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Notation,
    Cosign,
}

/// One signature manifest's verdict.
#[derive(Debug, Clone)]
pub(crate) struct SigInfo {
    pub(crate) format: Format,
    /// The signature manifest.
    pub(crate) manifest: Digest,
    /// Notation: the signing certificate's subject; cosign: the listed key that verified it
    /// (or "unknown key").
    pub(crate) signer: String,
    /// Notation: the signing time (RFC 3339).
    pub(crate) time: Option<String>,
    /// Valid under the repository's material (`Ok`: what made it valid), or why not.
    pub(crate) verdict: Result<String, String>,
    /// The signature manifest's `io.berth.dct.*` annotations (a registry attestation).
    pub(crate) attestation: Vec<(String, String)>,
}

impl SigInfo {
    fn describe(&self) -> String {
        let f = match self.format {
            Format::Notation => "Notary Project signature",
            Format::Cosign => "cosign signature",
        };
        format!("{f} {}", self.manifest)
    }
}

/// (signature manifest, subject, material version).
type VerdictKey = (String, String, [u8; 32]);
type Verdicts = HashMap<VerdictKey, (Instant, Arc<Vec<SigInfo>>)>;

fn verdicts() -> &'static Mutex<Verdicts> {
    static MEMO: OnceLock<Mutex<Verdicts>> = OnceLock::new();
    MEMO.get_or_init(Default::default)
}

/// The signature manifests naming `subject` in `repo`: Notary Project and cosign referrers,
/// and the manifest tagged `sha256-<hex>.sig`.
async fn signature_manifests(
    state: &AppState,
    repo: &RepoName,
    subject: &Digest,
) -> berth_storage::Result<Vec<(Format, Digest)>> {
    let meta = state.registry.metadata();
    let mut out: Vec<(Format, Digest)> = Vec::new();
    for r in meta.referrers(repo, subject).await? {
        let f = match r.artifact_type.as_deref() {
            Some(berth_notation::ARTIFACT_TYPE) => Format::Notation,
            Some(cosign::ARTIFACT_TYPE) => Format::Cosign,
            _ => continue,
        };
        out.push((f, r.digest));
    }
    if let Ok(tag) = cosign::signature_tag(&subject.to_string()).parse::<TagOrDigest>()
        && let Some(m) = meta.get_manifest(repo, &tag).await?
        && !out.iter().any(|(_, d)| *d == m.digest)
    {
        out.push((Format::Cosign, m.digest));
    }
    Ok(out)
}

/// A small blob, whole (`None`: missing or too large).
async fn small_blob(state: &AppState, d: &Digest) -> berth_storage::Result<Option<Vec<u8>>> {
    let store = state.registry.blob_store();
    let Some(len) = store.stat(d).await? else {
        return Ok(None);
    };
    if len > MAX_SIGNATURE_BLOB {
        return Ok(None);
    }
    let mut s = store.read(d, 0, len).await?;
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    while let Some(chunk) = s.next().await {
        match chunk {
            Ok(c) => out.extend_from_slice(&c),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(out))
}

fn annotations(m: &serde_json::Value) -> Vec<(String, String)> {
    m.get("annotations")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(ATTESTATION_PREFIX))
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            )
        })
        .collect()
}

/// Verifies one signature manifest of `subject` (one entry per signature it holds).
async fn verify_manifest(
    state: &AppState,
    repo: &RepoName,
    format: Format,
    manifest: &Digest,
    subject: &Digest,
    v: &Verifier,
    now: i64,
) -> berth_storage::Result<Vec<SigInfo>> {
    let info = |signer: String, time, verdict, attestation| SigInfo {
        format,
        manifest: manifest.clone(),
        signer,
        time,
        verdict,
        attestation,
    };
    let Some(m) = state
        .registry
        .metadata()
        .get_manifest(repo, &TagOrDigest::Digest(manifest.clone()))
        .await?
    else {
        return Ok(vec![]);
    };
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&m.body) else {
        return Ok(vec![info(
            String::new(),
            None,
            Err("the signature manifest is not JSON".into()),
            vec![],
        )]);
    };
    let att = annotations(&body);
    let layers = body
        .get("layers")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    // Notary Project envelopes are JWS or COSE; a cosign layer is a simple signing payload.
    let wanted = |media_type: Option<&str>| match format {
        Format::Notation => media_type.and_then(berth_notation::Format::from_media_type),
        Format::Cosign => {
            (media_type == Some(cosign::LAYER_MEDIA_TYPE)).then_some(berth_notation::Format::Jws)
        }
    };
    let mut out = Vec::new();
    let field = |l: &serde_json::Value, k: &str| -> Option<String> {
        l.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    for (layer, envelope) in layers
        .iter()
        .filter_map(|l| wanted(field(l, "mediaType").as_deref()).map(|e| (l, e)))
    {
        let Some(blob_digest) = field(layer, "digest")
            .as_deref()
            .and_then(|d| d.parse::<Digest>().ok())
        else {
            continue;
        };
        let Some(blob) = small_blob(state, &blob_digest).await? else {
            out.push(info(
                String::new(),
                None,
                Err("its signature blob is missing or too large".into()),
                att.clone(),
            ));
            continue;
        };
        out.push(match format {
            Format::Notation => {
                let (signer, time, verdict) =
                    notation_verdict(envelope, &blob, subject, repo, v, now);
                info(signer, time, verdict, att.clone())
            }
            Format::Cosign => {
                let sig = layer
                    .get("annotations")
                    .and_then(|a| a.get(cosign::SIGNATURE_ANNOTATION))
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default();
                let hit = v.keys.iter().find_map(|(label, k)| {
                    cosign::verify(&blob, sig, &subject.to_string(), k)
                        .ok()
                        .map(|_| label.clone())
                });
                match hit {
                    Some(label) => info(
                        label.clone(),
                        None,
                        Ok(format!("verified with listed {label}")),
                        att.clone(),
                    ),
                    None => info(
                        "unknown key".into(),
                        None,
                        Err(if v.keys.is_empty() {
                            "no cosign key is listed for this repository".into()
                        } else {
                            "no listed cosign key verifies it (for this digest)".into()
                        }),
                        att.clone(),
                    ),
                }
            }
        });
    }
    if out.is_empty() {
        out.push(info(
            String::new(),
            None,
            Err(match format {
                Format::Notation => "it holds no JWS or COSE envelope layer".to_owned(),
                Format::Cosign => format!("it holds no {} layer", cosign::LAYER_MEDIA_TYPE),
            }),
            att,
        ));
    }
    Ok(out)
}

/// A Notary Project envelope's signer (leaf subject), signing time and verdict.
fn notation_verdict(
    envelope: berth_notation::Format,
    blob: &[u8],
    subject: &Digest,
    repo: &RepoName,
    v: &Verifier,
    now: i64,
) -> (String, Option<String>, Result<String, String>) {
    // Who signed and when, as the envelope says (shown even when the policy refuses it).
    let (signer, time) = match berth_notation::Envelope::verify_integrity_of(envelope, blob) {
        Ok(e) => (
            e.chain
                .first()
                .map(|c| c.subject.clone())
                .unwrap_or_default(),
            Some(berth_notation::time::format(e.signing_time)),
        ),
        Err(e) => return (String::new(), None, Err(format!("integrity: {e}"))),
    };
    let verdict = match v.policy_for(repo.as_str()) {
        Err(e) => Err(e),
        Ok(p) => match berth_notation::policy::verify_format(
            envelope,
            blob,
            &subject.to_string(),
            p,
            &v.store,
            now,
        ) {
            Outcome::Verified { .. } => Ok(format!("valid under trust policy {:?}", p.name)),
            // A policy that skips verification vouches for nothing: it cannot open a
            // repository that requires signed content.
            Outcome::Skipped => Err(format!(
                "trust policy {:?} skips verification, so no signature counts",
                p.name
            )),
            Outcome::Failed { reason, .. } => Err(reason),
        },
    };
    (signer, time, verdict)
}

/// Every Notary Project and cosign signature of `subject` in `repo`, verified against `v`.
pub(crate) async fn signatures(
    state: &AppState,
    repo: &RepoName,
    subject: &Digest,
    v: &Verifier,
    now: i64,
) -> berth_storage::Result<Vec<SigInfo>> {
    let mut out = Vec::new();
    for (format, manifest) in signature_manifests(state, repo, subject).await? {
        let key = (manifest.to_string(), subject.to_string(), v.version);
        let hit = verdicts()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .filter(|(at, _)| at.elapsed() < VERDICT_TTL)
            .map(|(_, s)| s.clone());
        let infos = match hit {
            Some(s) => s,
            None => {
                let s = Arc::new(
                    verify_manifest(state, repo, format, &manifest, subject, v, now).await?,
                );
                let mut memo = verdicts().lock().unwrap_or_else(|p| p.into_inner());
                if memo.len() >= CACHE_ENTRIES {
                    memo.clear();
                }
                memo.insert(key, (Instant::now(), s.clone()));
                s
            }
        };
        out.extend(infos.iter().cloned());
    }
    Ok(out)
}

/// What the accepted non-DCT formats find for `subject`.
pub(crate) async fn findings(
    state: &AppState,
    repo: &RepoName,
    accept: Accept,
    subject: &Digest,
    v: &Verifier,
    now: i64,
) -> berth_storage::Result<Findings> {
    let mut f = Findings::default();
    if !accept.notation && !accept.cosign {
        return Ok(f);
    }
    let sigs = signatures(state, repo, subject, v, now).await?;
    for s in &sigs {
        let accepted = match s.format {
            Format::Notation => accept.notation,
            Format::Cosign => accept.cosign,
        };
        if !accepted {
            continue;
        }
        match &s.verdict {
            Ok(_) if s.format == Format::Notation => f.notation = true,
            Ok(_) => f.cosign = true,
            Err(why) => f.failures.push(format!("{}: {why}", s.describe())),
        }
    }
    if f.failures.is_empty() && !f.notation && !f.cosign {
        let mut kinds = Vec::new();
        if accept.notation {
            kinds.push("Notary Project");
        }
        if accept.cosign {
            kinds.push("cosign");
        }
        f.failures
            .push(format!("{subject} has no {} signature", kinds.join(" or ")));
    }
    f.failures.extend(v.problems.iter().cloned());
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material(scopes: &[&str]) -> Material {
        Material {
            trust_policy: Some(serde_json::json!({
                "version": "1.0",
                "trustPolicies": [{
                    "name": "named",
                    "registryScopes": scopes,
                    "signatureVerification": {"level": "strict"},
                    "trustStores": ["ca:acme"],
                    "trustedIdentities": ["*"],
                }, {
                    "name": "wild",
                    "registryScopes": ["*"],
                    "signatureVerification": {"level": "strict"},
                    "trustStores": ["ca:acme"],
                    "trustedIdentities": ["*"],
                }]
            })),
            trust_store: None,
            cosign_keys: Some(vec!["not a key".into()]),
        }
    }

    #[test]
    fn a_scope_names_the_repository_under_any_host() {
        let v = verifier(&material(&["reg.example:5000/team/app"]));
        assert_eq!(v.policy_for("team/app").unwrap().name, "named");
        assert_eq!(v.policy_for("team/other").unwrap().name, "wild");
        assert_eq!(v.policy_for("app").unwrap().name, "wild");
        let v = verifier(&material(&["team/app"]));
        assert_eq!(v.policy_for("team/app").unwrap().name, "named");
        // The same text is parsed once; an unusable key is reported, never trusted.
        assert!(Arc::ptr_eq(&v, &verifier(&material(&["team/app"]))));
        assert!(v.keys.is_empty());
        assert!(
            v.problems.iter().any(|p| p.contains("cosign key 1")),
            "{:?}",
            v.problems
        );
        let none = verifier(&Material::default());
        assert!(!none.has_trust_policy());
        assert!(
            none.policy_for("team/app")
                .unwrap_err()
                .contains("no Notary Project trust policy")
        );
    }

    #[test]
    fn key_labels_are_stable_and_short() {
        let a = key_label(
            0,
            "-----BEGIN PUBLIC KEY-----\nAAA\n-----END PUBLIC KEY-----\n",
        );
        assert!(
            a.starts_with("key 1 (") && a.len() == "key 1 ()".len() + 12,
            "{a}"
        );
        assert_eq!(
            a,
            key_label(
                0,
                "  -----BEGIN PUBLIC KEY-----\nAAA\n-----END PUBLIC KEY-----"
            )
        );
        assert_ne!(
            a,
            key_label(
                0,
                "-----BEGIN PUBLIC KEY-----\nAAB\n-----END PUBLIC KEY-----"
            )
        );
    }
}
