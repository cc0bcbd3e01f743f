//! One verification entry point for every signature format an image may carry (issue 15,
//! "Client structure"): Docker Content Trust (TUF targets, through the verified updater),
//! Notary Project signatures (JWS and COSE envelopes, OCI referrers) and cosign signatures
//! (the `sha256-<hex>.sig` tag and referrers).
//!
//! ```text
//!   verify(artifacts, trust, subject, options) ──▶ Report { one Found per signature }
//!     ├─ DCT:      TrustSource::trust_data ─▶ dct_signatures (pure: tag ↔ digest decision)
//!     ├─ notation: Artifacts::referrers(notary) ─▶ notation_envelope (pure: manifest shape)
//!     │              ─▶ berth_notation::verify_format (JWS | COSE, trust policy + store)
//!     └─ cosign:   Artifacts::manifest(sha256-<hex>.sig) + referrers(cosign)
//!                    ─▶ cosign_layers (pure) ─▶ berth_notation::cosign::verify per key
//! ```
//!
//! Nothing here reads files or knows HTTP: the registry is an [`Artifacts`], the trust server
//! a [`TrustSource`] (a [`TufClient`] over any [`crate::Transport`], so a
//! [`crate::MemoryTransport`] in tests), and the trust policy, trust store and keys come in
//! [`VerifyOptions`]. `berth verify` prints the [`Report`].

use std::future::Future;

use berth_notation::cosign::{self, PublicKey};
use berth_notation::{
    ARTIFACT_TYPE as NOTARY_ARTIFACT_TYPE, Format, Outcome, TrustPolicy, TrustStore,
};
use serde_json::Value;

use crate::tufclient::{TrustData, TufClient};
use crate::{Error, Transport};

/// A signature format `berth verify --format` can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Dct,
    Notation,
    Cosign,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dct => "dct",
            Kind::Notation => "notation",
            Kind::Cosign => "cosign",
        }
    }
}

/// The image being verified: its repository's GUN (`host[:port]/repository`), the tag it was
/// named by (if any) and the manifest the registry serves for it.
#[derive(Debug, Clone)]
pub struct Subject {
    pub gun: String,
    pub tag: Option<String>,
    pub digest: String,
    pub size: u64,
}

/// How Notary Project signatures are judged.
#[derive(Debug, Clone)]
pub enum NotationSetup {
    /// Not checked, and why (no trust policy, or none applies): signatures are still listed.
    Unchecked(String),
    /// The applicable policy says `skip`: nothing is checked, and the artifact is accepted as
    /// far as Notary Project signatures go.
    Skip { policy: String },
    /// Checked under `policy` with `store`.
    Check {
        policy: Box<TrustPolicy>,
        store: TrustStore,
    },
}

pub struct VerifyOptions {
    /// The formats that count; each is looked for only when listed.
    pub formats: Vec<Kind>,
    pub notation: NotationSetup,
    /// cosign public keys, each with a name for messages (the file it came from).
    pub cosign_keys: Vec<(String, PublicKey)>,
    /// Unix seconds.
    pub now: i64,
}

/// The verdict on one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid(String),
}

/// One signature found for the subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: Kind,
    /// `dct`, `notation/jws`, `notation/cose`, `cosign`.
    pub format: String,
    /// What names the signature: the tag and role (DCT), the signature manifest's digest
    /// (notation), the manifest and layer (cosign).
    pub id: String,
    /// Who signed: the role, the certificate subject, the key. Empty when unknown (a
    /// signature that could not be read names nobody).
    pub signer: String,
    pub verdict: Verdict,
    /// More to say: the trust store it chained to, logged-only failures, the signing time.
    pub details: Vec<String>,
}

impl Found {
    pub fn is_valid(&self) -> bool {
        self.verdict == Verdict::Valid
    }
}

/// Everything [`verify`] found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub found: Vec<Found>,
    /// Things that kept a format from being fully looked at (a referrers API missing, trust
    /// data unreachable), for people.
    pub notes: Vec<String>,
    /// The name of the Notary Project policy that says skip, when one does.
    pub notation_skipped: Option<String>,
    /// Notary Project signature manifests listed (whatever their verdict).
    pub notation_listed: usize,
}

impl Report {
    pub fn valid(&self, kind: Kind) -> usize {
        self.found
            .iter()
            .filter(|f| f.kind == kind && f.is_valid())
            .count()
    }

    pub fn verified(&self) -> usize {
        self.found.iter().filter(|f| f.is_valid()).count()
    }

    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &Found> {
        self.found.iter().filter(move |f| f.kind == kind)
    }
}

/// The registry as verification needs it. Errors are messages for people.
pub trait Artifacts {
    /// The referrers of `digest` with `artifact_type`: the descriptors of the referrers
    /// index (a registry may ignore the filter; callers check `artifactType` again).
    fn referrers(
        &self,
        digest: &str,
        artifact_type: &str,
    ) -> impl Future<Output = Result<Vec<Value>, String>>;
    /// A manifest by tag or digest, with its digest; `None` when the registry has none.
    fn manifest(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<Option<(String, Vec<u8>)>, String>>;
    /// A (small) blob by digest, checked against it.
    fn blob(&self, digest: &str) -> impl Future<Output = Result<Vec<u8>, String>>;
}

/// Verified DCT trust data of the subject's GUN, `None` when the repository has none; an
/// error (a message for people) when it has some that does not verify or cannot be read.
pub trait TrustSource {
    fn trust_data(&self) -> impl Future<Output = Result<Option<TrustData>, String>>;
}

impl<T: Transport> TrustSource for TufClient<T> {
    async fn trust_data(&self) -> Result<Option<TrustData>, String> {
        match self.update().await {
            Ok(d) => Ok(Some(d)),
            Err(Error::RepositoryNotExist { .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Gathers the subject's signatures of every format in `options.formats` and verifies each
/// with its format's verifier.
pub async fn verify(
    artifacts: &impl Artifacts,
    trust: &impl TrustSource,
    subject: &Subject,
    options: &VerifyOptions,
) -> Report {
    let mut report = Report::default();
    let wants = |k| options.formats.contains(&k);
    if wants(Kind::Dct) {
        match trust.trust_data().await {
            Ok(Some(data)) => report.found.extend(dct_signatures(&data, subject)),
            Ok(None) => {}
            Err(e) => report.found.push(Found {
                kind: Kind::Dct,
                format: "dct".into(),
                id: subject.gun.clone(),
                signer: String::new(),
                verdict: Verdict::Invalid(format!("trust data: {e}")),
                details: vec![],
            }),
        }
    }
    if wants(Kind::Notation) {
        notation(artifacts, subject, options, &mut report).await;
    }
    if wants(Kind::Cosign) && !options.cosign_keys.is_empty() {
        cosign_signatures(artifacts, subject, options, &mut report).await;
    }
    report
}

/// DCT's decision, pure. For a tag: the tag's signed target (resolved as docker does,
/// `targets/releases` then `targets`) must name exactly the subject's digest and size; a tag
/// without trust data has no DCT signature. For a digest: every tag whose signed target
/// names it counts.
pub fn dct_signatures(data: &TrustData, subject: &Subject) -> Vec<Found> {
    let found = |tag: &str, role: &str, verdict: Verdict| Found {
        kind: Kind::Dct,
        format: "dct".into(),
        id: format!("{}:{tag}", subject.gun),
        signer: role.to_owned(),
        verdict,
        details: vec![],
    };
    if let Some(tag) = &subject.tag {
        let Ok(t) = data.target(tag) else {
            return vec![];
        };
        let verdict = if t.digest != subject.digest {
            Verdict::Invalid(format!(
                "the trust data signs {} for tag {tag}, not {}",
                t.digest, subject.digest
            ))
        } else if t.size != subject.size {
            Verdict::Invalid(format!(
                "the trust data signs {} bytes for tag {tag}, the manifest is {}",
                t.size, subject.size
            ))
        } else {
            Verdict::Valid
        };
        return vec![found(tag, &t.role, verdict)];
    }
    let mut names: Vec<String> = ["targets/releases", "targets"]
        .iter()
        .flat_map(|r| data.targets_in(r))
        .map(|t| t.name)
        .collect();
    names.sort();
    names.dedup();
    names
        .iter()
        // Resolved as a pull would: a tag signed differently in releases hides targets' entry.
        .filter_map(|n| data.target(n).ok())
        .filter(|t| t.digest == subject.digest)
        .map(|t| {
            let verdict = if t.size == subject.size {
                Verdict::Valid
            } else {
                Verdict::Invalid(format!(
                    "the trust data signs {} bytes for tag {}, the manifest is {}",
                    t.size, t.name, subject.size
                ))
            };
            found(&t.name, &t.role, verdict)
        })
        .collect()
}

/// The envelope layer of a Notary Project signature manifest, pure: the manifest must be a
/// notary signature of `subject` with exactly one JWS or COSE layer. Returns the format and
/// the layer's digest.
pub fn notation_envelope(manifest: &[u8], subject: &str) -> Result<(Format, String), String> {
    let v: Value =
        serde_json::from_slice(manifest).map_err(|_| "the signature manifest is not JSON")?;
    if v["artifactType"] != NOTARY_ARTIFACT_TYPE || v["subject"]["digest"] != subject {
        return Err(format!(
            "the signature manifest is not a Notary Project signature of {subject}"
        ));
    }
    let layers = v["layers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let [layer] = layers else {
        return Err(format!(
            "the signature manifest has {} layers, not one",
            layers.len()
        ));
    };
    let Some(format) = layer["mediaType"]
        .as_str()
        .and_then(Format::from_media_type)
    else {
        return Err(format!(
            "the signature layer is {}, neither application/jose+json nor application/cose",
            layer["mediaType"]
        ));
    };
    let digest = layer["digest"].as_str().unwrap_or_default();
    if !digest.starts_with("sha256:") {
        return Err("the signature layer's digest is malformed".into());
    }
    Ok((format, digest.to_owned()))
}

async fn notation(
    artifacts: &impl Artifacts,
    subject: &Subject,
    options: &VerifyOptions,
    report: &mut Report,
) {
    let (policy, store) = match &options.notation {
        NotationSetup::Unchecked(why) => {
            report
                .notes
                .push(format!("Notary Project signatures not checked: {why}"));
            return;
        }
        NotationSetup::Skip { policy } => {
            report.notation_skipped = Some(policy.clone());
            return;
        }
        NotationSetup::Check { policy, store } => (policy, store),
    };
    let listed = match artifacts
        .referrers(&subject.digest, NOTARY_ARTIFACT_TYPE)
        .await
    {
        Ok(l) => l,
        Err(e) => {
            report.found.push(Found {
                kind: Kind::Notation,
                format: "notation".into(),
                id: subject.digest.clone(),
                signer: String::new(),
                verdict: Verdict::Invalid(format!("listing the signatures: {e}")),
                details: vec![],
            });
            return;
        }
    };
    report.notation_listed = listed.len();
    for d in &listed {
        let Some(sig) = d["digest"].as_str() else {
            continue;
        };
        // A registry may ignore the filter; only notary signatures count.
        if d["artifactType"].as_str() != Some(NOTARY_ARTIFACT_TYPE) {
            continue;
        }
        let mut format = "notation".to_owned();
        let outcome = match notation_fetch(artifacts, sig, &subject.digest).await {
            Ok((f, env)) => {
                format = format!("notation/{}", f.name());
                berth_notation::verify_format(f, &env, &subject.digest, policy, store, options.now)
            }
            Err(reason) => Outcome::Failed {
                reason,
                logged: vec![],
            },
        };
        let (signer, verdict, details) = match outcome {
            Outcome::Verified {
                subject,
                signing_time,
                logged,
            } => {
                let mut details = vec![format!("signed at {signing_time}")];
                details.extend(logged);
                (subject, Verdict::Valid, details)
            }
            Outcome::Failed { reason, logged } => (String::new(), Verdict::Invalid(reason), logged),
            Outcome::Skipped => continue,
        };
        report.found.push(Found {
            kind: Kind::Notation,
            format,
            id: sig.to_owned(),
            signer,
            verdict,
            details,
        });
    }
}

async fn notation_fetch(
    artifacts: &impl Artifacts,
    sig: &str,
    subject: &str,
) -> Result<(Format, Vec<u8>), String> {
    let (_, manifest) = artifacts
        .manifest(sig)
        .await
        .map_err(|e| format!("fetching the signature manifest: {e}"))?
        .ok_or("the signature manifest is gone")?;
    let (format, layer) = notation_envelope(&manifest, subject)?;
    let env = artifacts
        .blob(&layer)
        .await
        .map_err(|e| format!("fetching the signature envelope: {e}"))?;
    Ok((format, env))
}

/// One cosign signature layer of a signature manifest, pure: its index, the base64
/// signature annotation and the payload blob's digest, or why it cannot be checked.
pub type CosignLayer = (usize, Result<(String, String), String>);

/// The simple signing layers of a cosign signature manifest.
pub fn cosign_layers(manifest: &[u8]) -> Result<Vec<CosignLayer>, String> {
    let v: Value = serde_json::from_slice(manifest).map_err(|_| "the manifest is not JSON")?;
    let layers = v["layers"].as_array().cloned().unwrap_or_default();
    let out: Vec<CosignLayer> = layers
        .iter()
        .enumerate()
        .filter(|(_, l)| l["mediaType"] == cosign::LAYER_MEDIA_TYPE)
        .map(|(i, l)| {
            let Some(sig) = l["annotations"][cosign::SIGNATURE_ANNOTATION].as_str() else {
                return (
                    i,
                    Err(format!("no {} annotation", cosign::SIGNATURE_ANNOTATION)),
                );
            };
            match l["digest"].as_str() {
                Some(d) if d.starts_with("sha256:") => (i, Ok((sig.to_owned(), d.to_owned()))),
                _ => (i, Err("the layer's digest is malformed".into())),
            }
        })
        .collect();
    if out.is_empty() {
        return Err(format!("no {} layer", cosign::LAYER_MEDIA_TYPE));
    }
    Ok(out)
}

/// Checks a simple signing `payload` and its signature against every key, pure: the first key
/// that verifies it, or the most telling reason none did.
pub fn cosign_check(
    payload: &[u8],
    signature: &str,
    digest: &str,
    keys: &[(String, PublicKey)],
) -> Result<(String, cosign::Verified), String> {
    let mut errors = Vec::new();
    for (name, key) in keys {
        match cosign::verify(payload, signature, digest, key) {
            Ok(v) => return Ok((name.clone(), v)),
            Err(e) => errors.push(e.0),
        }
    }
    // A key that verified the signature says more than the keys that did not.
    Err(errors
        .iter()
        .find(|e| !e.contains("does not verify"))
        .or(errors.first())
        .cloned()
        .unwrap_or_else(|| "no key to check it with".into()))
}

async fn cosign_signatures(
    artifacts: &impl Artifacts,
    subject: &Subject,
    options: &VerifyOptions,
    report: &mut Report,
) {
    let mut manifests: Vec<(String, Vec<u8>)> = Vec::new();
    let fail = |id: String, reason: String| Found {
        kind: Kind::Cosign,
        format: "cosign".into(),
        id,
        signer: String::new(),
        verdict: Verdict::Invalid(reason),
        details: vec![],
    };
    let tag = cosign::signature_tag(&subject.digest);
    match artifacts.manifest(&tag).await {
        Ok(Some(m)) => manifests.push(m),
        Ok(None) => {}
        Err(e) => report.found.push(fail(
            tag.clone(),
            format!("fetching the signature tag: {e}"),
        )),
    }
    match artifacts
        .referrers(&subject.digest, cosign::ARTIFACT_TYPE)
        .await
    {
        Ok(list) => {
            for d in list {
                if d["artifactType"].as_str() != Some(cosign::ARTIFACT_TYPE) {
                    continue;
                }
                let Some(s) = d["digest"].as_str() else {
                    continue;
                };
                if manifests.iter().any(|(m, _)| m == s) {
                    continue;
                }
                match artifacts.manifest(s).await {
                    Ok(Some(m)) => manifests.push(m),
                    Ok(None) => report
                        .found
                        .push(fail(s.into(), "the manifest is gone".into())),
                    Err(e) => report
                        .found
                        .push(fail(s.into(), format!("fetching it: {e}"))),
                }
            }
        }
        // The tag schema works without the referrers API; say so and go on.
        Err(e) => report
            .notes
            .push(format!("cosign referrers not listed: {e}")),
    }
    for (sig, bytes) in &manifests {
        let layers = match cosign_layers(bytes) {
            Ok(l) => l,
            Err(e) => {
                report.found.push(fail(sig.clone(), e));
                continue;
            }
        };
        for (i, layer) in layers {
            let id = format!("{sig} layer {i}");
            let checked = match layer {
                Err(e) => Err(e),
                Ok((signature, blob)) => match artifacts.blob(&blob).await {
                    Err(e) => Err(format!("fetching the payload: {e}")),
                    Ok(payload) => {
                        cosign_check(&payload, &signature, &subject.digest, &options.cosign_keys)
                    }
                },
            };
            report.found.push(match checked {
                Ok((key, v)) => Found {
                    kind: Kind::Cosign,
                    format: "cosign".into(),
                    id,
                    signer: key,
                    verdict: Verdict::Valid,
                    details: vec![format!("docker-reference {:?}", v.docker_reference)],
                },
                Err(e) => fail(id, e),
            });
        }
    }
}

#[cfg(test)]
mod tests;
