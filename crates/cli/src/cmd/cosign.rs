//! `berth verify --cosign-key PUB`: cosign signatures of the image's digest, read from the
//! `sha256-<hex>.sig` tag and from cosign referrers, checked by berth-notation's pure `cosign`
//! module; Notary Project signatures are checked too when a trust policy applies (issue 15).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use berth_client::{Error as ClientError, Reference, Registry};
use berth_notation::TrustPolicyDocument;
use berth_notation::cosign::{self, PublicKey};
use berth_oci::Digest;

use super::notation::{VerifyArgs, load_trust_store, notation_dir, resolve};
use super::transfer::{explain, parse_reference, runtime};

/// Signatures that verified, and why the others did not.
#[derive(Default)]
struct Tally {
    verified: usize,
    failures: Vec<String>,
}

pub fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let r = parse_reference(&a.reference, &a.conn.server)?;
    let mut keys = Vec::new();
    for p in &a.cosign_key {
        let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let k = PublicKey::from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("--cosign-key {}: {e}", p.display()))?;
        keys.push((p.clone(), k));
    }
    // Notation takes part only when a policy exists: given explicitly it must be readable,
    // by default its absence just means "cosign only".
    let (policy_path, explicit) = match &a.policy {
        Some(p) => (p.clone(), true),
        None => (notation_dir()?.join("trustpolicy.json"), false),
    };
    let doc = match std::fs::read(&policy_path) {
        Ok(d) => Some(
            TrustPolicyDocument::parse(&d)
                .map_err(|e| anyhow::anyhow!("{}: {e}", policy_path.display()))?,
        ),
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e)
                .with_context(|| format!("reading the trust policy {}", policy_path.display()));
        }
    };
    let scope = r.gun();
    let (registry, _) = a.conn.connect(&r)?;
    let rt = runtime()?;
    let target = rt.block_on(resolve(&registry, &r))?;
    let digest: Digest = target
        .digest
        .parse()
        .map_err(|_| anyhow::anyhow!("bad digest"))?;
    let mut tally = Tally::default();
    if let Some(doc) = &doc {
        match doc.applicable(&scope) {
            Ok(policy) => {
                let level = policy.level()?;
                if level == berth_notation::Level::Skip {
                    // Skip relaxes notation only; the cosign keys asked for still must verify.
                    println!(
                        "Notary Project verification of {scope}@{digest} skipped: trust policy {:?} says skip",
                        policy.name
                    );
                } else {
                    let store_dir = match &a.trust_store {
                        Some(p) => p.clone(),
                        None => notation_dir()?.join("truststore"),
                    };
                    let store = load_trust_store(&store_dir, &policy.trust_stores)?;
                    let checked = rt.block_on(super::notation::check_signatures(
                        &registry,
                        &r,
                        &digest,
                        &target.digest,
                        policy,
                        &store,
                    ))?;
                    tally.verified += checked.verified;
                    tally.failures.extend(checked.failures);
                }
            }
            Err(e) => println!("Notary Project signatures not checked: {e}"),
        }
    }
    let notation_verified = tally.verified;
    let sig_manifests = rt.block_on(cosign_manifests(&registry, &r, &digest))?;
    for m in &sig_manifests {
        rt.block_on(check_manifest(
            &registry,
            &r,
            m,
            &target.digest,
            &keys,
            &mut tally,
        ));
    }
    let cosign_verified = tally.verified - notation_verified;
    if tally.verified > 0 {
        println!(
            "Verified {scope}@{digest}: {notation_verified} Notary Project and {cosign_verified} cosign signature(s)"
        );
        return Ok(());
    }
    if tally.failures.is_empty() {
        bail!("{scope}@{digest} has no cosign or Notary Project signature");
    }
    bail!(
        "no signature of {scope}@{digest} verifies:\n  {}",
        tally.failures.join("\n  ")
    )
}

/// The digests of the manifests that may hold cosign signatures of `digest`: the one tagged
/// `sha256-<hex>.sig`, and cosign referrers.
async fn cosign_manifests(
    registry: &Registry,
    r: &Reference,
    digest: &Digest,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let tag = cosign::signature_tag(&digest.to_string());
    match registry.get_manifest(&r.repo, &tag).await {
        Ok(m) => out.push(m.digest.to_string()),
        Err(ClientError::NotFound { .. }) => {}
        Err(e) => {
            return Err(explain(
                e,
                &format!("fetching the cosign signature tag {tag}"),
            ));
        }
    }
    match registry
        .referrers(&r.repo, digest, Some(cosign::ARTIFACT_TYPE))
        .await
    {
        Ok(list) => {
            for d in list {
                // A registry may ignore the filter; only cosign signatures count.
                if d["artifactType"].as_str() != Some(cosign::ARTIFACT_TYPE) {
                    continue;
                }
                if let Some(s) = d["digest"].as_str()
                    && !out.iter().any(|o| o == s)
                {
                    out.push(s.to_owned());
                }
            }
        }
        // The tag schema works without the referrers API; say so and go on.
        Err(e) => println!("cosign referrers not listed: {e}"),
    }
    Ok(out)
}

/// Checks every simple signing layer of the signature manifest `sig` against the keys, printing
/// one line per layer.
async fn check_manifest(
    registry: &Registry,
    r: &Reference,
    sig: &str,
    subject: &str,
    keys: &[(PathBuf, PublicKey)],
    tally: &mut Tally,
) {
    let mut fail = |what: String, reason: String| {
        println!("Cosign signature {what}: FAILED: {reason}");
        tally.failures.push(format!("cosign {what}: {reason}"));
    };
    let m = match registry.get_manifest(&r.repo, sig).await {
        Ok(m) => m,
        Err(e) => return fail(sig.to_owned(), format!("{:#}", explain(e, "fetching it"))),
    };
    let v: serde_json::Value = match serde_json::from_slice(&m.bytes) {
        Ok(v) => v,
        Err(_) => return fail(sig.to_owned(), "the manifest is not JSON".into()),
    };
    let layers = v["layers"].as_array().cloned().unwrap_or_default();
    let mut seen = 0;
    for (i, layer) in layers.iter().enumerate() {
        if layer["mediaType"] != cosign::LAYER_MEDIA_TYPE {
            continue;
        }
        seen += 1;
        let what = format!("{sig} layer {i}");
        let Some(annotation) = layer["annotations"][cosign::SIGNATURE_ANNOTATION].as_str() else {
            fail(
                what,
                format!("no {} annotation", cosign::SIGNATURE_ANNOTATION),
            );
            continue;
        };
        let Ok(blob) = layer["digest"]
            .as_str()
            .unwrap_or_default()
            .parse::<Digest>()
        else {
            fail(what, "the layer's digest is malformed".into());
            continue;
        };
        let payload = match registry.get_small_blob(&r.repo, &blob).await {
            Ok(p) => p,
            Err(e) => {
                fail(what, format!("{:#}", explain(e, "fetching the payload")));
                continue;
            }
        };
        let mut errors = Vec::new();
        let mut ok = None;
        for (path, key) in keys {
            match cosign::verify(&payload, annotation, subject, key) {
                Ok(v) => {
                    ok = Some((path, v));
                    break;
                }
                Err(e) => errors.push(e.0),
            }
        }
        match ok {
            Some((path, v)) => {
                tally.verified += 1;
                println!(
                    "Cosign signature {what}: verified with {}, docker-reference {:?}",
                    path.display(),
                    v.docker_reference
                );
            }
            None => {
                // A key that verified the signature says more than the keys that did not.
                let reason = errors
                    .iter()
                    .find(|e| !e.contains("does not verify"))
                    .or(errors.first())
                    .cloned()
                    .unwrap_or_default();
                fail(what, reason);
            }
        }
    }
    if seen == 0 {
        fail(
            sig.to_owned(),
            format!("no {} layer", cosign::LAYER_MEDIA_TYPE),
        );
    }
}
