//! `berth verify`: a printer over the trust client's single verification entry point
//! (`berth_trust_client::verify`), which gathers DCT, Notary Project (JWS and COSE) and cosign
//! signatures and verifies each with its format's verifier. Here: reading the trust policy,
//! trust store and keys, resolving the reference, the registry and trust server adapters, and
//! one line per signature.

use anyhow::{Context as _, bail};
use berth_client::{Error as ClientError, Reference, Registry};
use berth_notation::TrustPolicyDocument;
use berth_notation::cosign::PublicKey;
use berth_oci::Digest;
use berth_trust_client::TrustData;
use berth_trust_client::verify::{
    Artifacts, Kind, NotationSetup, Report, Subject, TrustSource, Verdict, VerifyOptions,
};
use clap::ValueEnum;
use serde_json::Value;

use super::notation::{VerifyArgs, load_trust_store, notation_dir, now, resolve};
use super::signing::Session;
use super::transfer::{explain, parse_reference, runtime};

/// A signature format `berth verify --format` restricts to.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyFormat {
    /// Docker Content Trust: the tag's signed TUF target (any signed tag, for a digest).
    Dct,
    /// Notary Project signatures (JWS or COSE envelope) under the trust policy.
    Notation,
    /// cosign signatures, checked with --cosign-key.
    Cosign,
}

impl From<VerifyFormat> for Kind {
    fn from(f: VerifyFormat) -> Kind {
        match f {
            VerifyFormat::Dct => Kind::Dct,
            VerifyFormat::Notation => Kind::Notation,
            VerifyFormat::Cosign => Kind::Cosign,
        }
    }
}

/// The registry, as the verifier reads it.
struct RegistryArtifacts<'a> {
    registry: &'a Registry,
    r: &'a Reference,
}

fn message(e: ClientError, doing: &str) -> String {
    format!("{:#}", explain(e, doing))
}

impl Artifacts for RegistryArtifacts<'_> {
    async fn referrers(&self, digest: &str, artifact_type: &str) -> Result<Vec<Value>, String> {
        let d: Digest = digest.parse().map_err(|_| format!("bad digest {digest}"))?;
        self.registry
            .referrers(&self.r.repo, &d, Some(artifact_type))
            .await
            .map_err(|e| message(e, &format!("listing the referrers of {digest}")))
    }

    async fn manifest(&self, reference: &str) -> Result<Option<(String, Vec<u8>)>, String> {
        match self.registry.get_manifest(&self.r.repo, reference).await {
            Ok(m) => Ok(Some((m.digest.to_string(), m.bytes.to_vec()))),
            Err(ClientError::NotFound { .. }) => Ok(None),
            Err(e) => Err(message(e, &format!("fetching {reference}"))),
        }
    }

    async fn blob(&self, digest: &str) -> Result<Vec<u8>, String> {
        let d: Digest = digest.parse().map_err(|_| format!("bad digest {digest}"))?;
        self.registry
            .get_small_blob(&self.r.repo, &d)
            .await
            .map_err(|e| message(e, &format!("fetching {digest}")))
    }
}

/// The trust server, through the session's token flow.
struct SessionTrust(Session);

impl TrustSource for SessionTrust {
    async fn trust_data(&self) -> Result<Option<TrustData>, String> {
        self.0
            .run(false, |repo| async move { repo.fetch().await })
            .await
            .map_err(|e| format!("{e:#}"))
    }
}

/// How Notary Project signatures are judged, and the policy line for the summary. A policy
/// named with --policy must be readable; the default one may be missing, or apply to nothing
/// here, unless notation is the only format in play (`notation_alone`).
fn notation_setup(
    a: &VerifyArgs,
    scope: &str,
    notation_alone: bool,
) -> anyhow::Result<(NotationSetup, Option<(String, String)>)> {
    let (path, explicit) = match &a.policy {
        Some(p) => (p.clone(), true),
        None => (notation_dir()?.join("trustpolicy.json"), false),
    };
    let doc = match std::fs::read(&path) {
        Ok(d) => TrustPolicyDocument::parse(&d)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        Err(e) if !explicit && !notation_alone && e.kind() == std::io::ErrorKind::NotFound => {
            let why = format!("no trust policy at {}", path.display());
            return Ok((NotationSetup::Unchecked(why), None));
        }
        Err(e) => {
            return Err(e).with_context(|| format!("reading the trust policy {}", path.display()));
        }
    };
    let policy = match doc.applicable(scope) {
        Ok(p) => p,
        Err(e) if !notation_alone => return Ok((NotationSetup::Unchecked(e.0), None)),
        Err(e) => return Err(e.into()),
    };
    let level = policy.level()?;
    if level == berth_notation::Level::Skip {
        let setup = NotationSetup::Skip {
            policy: policy.name.clone(),
        };
        return Ok((setup, None));
    }
    let store_dir = match &a.trust_store {
        Some(p) => p.clone(),
        None => notation_dir()?.join("truststore"),
    };
    let store = load_trust_store(&store_dir, &policy.trust_stores)?;
    let line = (policy.name.clone(), format!("{level:?}"));
    Ok((
        NotationSetup::Check {
            policy: Box::new(policy.clone()),
            store,
        },
        Some(line),
    ))
}

pub fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let r = parse_reference(&a.reference, &a.conn.server)?;
    let mut keys = Vec::new();
    for p in &a.cosign_key {
        let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let k = PublicKey::from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("--cosign-key {}: {e}", p.display()))?;
        keys.push((p.display().to_string(), k));
    }
    // Every format that applies, unless --format says which: cosign needs a key to apply.
    let mut formats: Vec<Kind> = if a.format.is_empty() {
        vec![Kind::Dct, Kind::Notation, Kind::Cosign]
    } else {
        a.format.iter().map(|&f| f.into()).collect()
    };
    if keys.is_empty() {
        if a.format.contains(&VerifyFormat::Cosign) {
            bail!("--format cosign needs --cosign-key");
        }
        formats.retain(|k| *k != Kind::Cosign);
    }
    let scope = r.gun();
    // As before DCT joined: without cosign keys a missing default trust policy is an error,
    // unless DCT was asked for by name.
    let notation_alone = formats.contains(&Kind::Notation)
        && !formats.contains(&Kind::Cosign)
        && !a.format.contains(&VerifyFormat::Dct);
    let (notation, policy_line) = if formats.contains(&Kind::Notation) {
        notation_setup(&a, &scope, notation_alone)?
    } else {
        (NotationSetup::Unchecked("not asked for".into()), None)
    };
    let (registry, creds) = a.conn.connect(&r)?;
    let rt = runtime()?;
    let target = rt.block_on(resolve(&registry, &r))?;
    let subject = Subject {
        gun: scope.clone(),
        // A reference with both names the digest: DCT then checks that tag's target.
        tag: r.tag.as_ref().map(ToString::to_string),
        digest: target.digest.clone(),
        size: target.size,
    };
    let options = VerifyOptions {
        formats: formats.clone(),
        notation,
        cosign_keys: keys,
        now: now(),
    };
    let artifacts = RegistryArtifacts {
        registry: &registry,
        r: &r,
    };
    let trust = SessionTrust(Session::new(registry.clone(), creds, &r));
    let report = rt.block_on(berth_trust_client::verify::verify(
        &artifacts, &trust, &subject, &options,
    ));
    print_report(&report);
    let at = format!("{scope}@{}", subject.digest);
    let cosign_asked = formats.contains(&Kind::Cosign);
    if let Some(p) = &report.notation_skipped {
        println!("Notary Project verification of {at} skipped: trust policy {p:?} says skip");
        // Skip accepts the artifact as far as notation goes; cosign keys asked for still must
        // verify.
        if !cosign_asked {
            return Ok(());
        }
    }
    if let Some((name, level)) = &policy_line {
        println!(
            "Notary Project: {} of {} signature(s) verified under trust policy {name:?} ({level})",
            report.valid(Kind::Notation),
            report.notation_listed
        );
    }
    if report.verified() > 0 {
        let dct = if formats.contains(&Kind::Dct) {
            format!("; DCT: {} signed tag(s)", report.valid(Kind::Dct))
        } else {
            String::new()
        };
        println!(
            "Verified {at}: {} Notary Project and {} cosign signature(s){dct}",
            report.valid(Kind::Notation),
            report.valid(Kind::Cosign)
        );
        return Ok(());
    }
    if report.found.is_empty() {
        let mut what = vec![];
        if cosign_asked {
            what.push("cosign");
        }
        if formats.contains(&Kind::Notation) {
            what.push("Notary Project");
        }
        let mut msg = if what.is_empty() {
            format!("{at} has no signature")
        } else {
            format!("{at} has no {} signature", what.join(" or "))
        };
        if formats.contains(&Kind::Dct) {
            msg.push_str(if subject.tag.is_some() {
                " and its tag no DCT trust data"
            } else {
                " and no tag with DCT trust data names it"
            });
        }
        for n in &report.notes {
            msg.push_str(&format!("\n  {n}"));
        }
        bail!(msg);
    }
    let mut failures: Vec<String> = report
        .found
        .iter()
        .filter_map(|f| match &f.verdict {
            Verdict::Invalid(why) => Some(format!("{} {}: {why}", f.format, f.id)),
            Verdict::Valid => None,
        })
        .collect();
    // The formats that found nothing are worth a line too (a moved DCT tag beside no notation
    // signature: both are why).
    let mut missing = vec![];
    if cosign_asked && report.of(Kind::Cosign).next().is_none() {
        missing.push("cosign");
    }
    if formats.contains(&Kind::Notation) && report.of(Kind::Notation).next().is_none() {
        missing.push("Notary Project");
    }
    if !missing.is_empty() {
        failures.push(format!("{at} has no {} signature", missing.join(" or ")));
    }
    bail!(
        "no signature of {at} verifies:\n  {}",
        failures.join("\n  ")
    )
}

/// One line per signature: format, what names it, signer, valid or not and why.
fn print_report(report: &Report) {
    for n in &report.notes {
        println!("{n}");
    }
    for f in &report.found {
        let details = f
            .details
            .iter()
            .map(|d| format!("\n  {d}"))
            .collect::<String>();
        match (f.kind, &f.verdict) {
            (Kind::Notation, Verdict::Valid) => {
                // The first detail is the signing time; the rest (trust store, logged checks)
                // follow on their own lines.
                let (first, rest) = f
                    .details
                    .split_first()
                    .map_or(("", &[][..]), |(a, b)| (a.as_str(), b));
                println!(
                    "Signature {}: verified, signed by {:?} ({}, {first})",
                    f.id, f.signer, f.format
                );
                for l in rest {
                    println!("  {l}");
                }
            }
            (Kind::Notation, Verdict::Invalid(why)) => {
                println!("Signature {}: FAILED ({}): {why}{details}", f.id, f.format)
            }
            (Kind::Cosign, Verdict::Valid) => println!(
                "Cosign signature {}: verified with {}, {}",
                f.id,
                f.signer,
                f.details.join(", ")
            ),
            (Kind::Cosign, Verdict::Invalid(why)) => {
                println!("Cosign signature {}: FAILED: {why}", f.id)
            }
            (Kind::Dct, Verdict::Valid) => {
                println!("DCT signature {}: verified, signed by {}", f.id, f.signer)
            }
            (Kind::Dct, Verdict::Invalid(why)) => {
                println!("DCT signature {}: FAILED: {why}", f.id)
            }
        }
    }
}
