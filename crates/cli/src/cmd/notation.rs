//! `berth sign --format notation` and `berth verify`: Notary Project signatures stored as OCI
//! referrers of the signed manifest (issue 15). The envelope, the trust policy and the checks
//! are berth-notation's; this is the registry and file work around them.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use berth_client::{Reference, Registry};
use berth_notation::cert::Cert;
use berth_notation::{
    ARTIFACT_TYPE, Descriptor, EMPTY_CONTENT, Format, OCI_MANIFEST, Outcome, Signer,
    TrustPolicyDocument, TrustStore,
};
use berth_oci::{Algorithm, Digest};
use bytes::Bytes;
use clap::{Args, ValueEnum};

use super::transfer::{TransferArgs, explain, parse_reference, runtime};

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum SignatureFormat {
    /// A Notary Project signature (JWS envelope, notary.x509 scheme).
    Notation,
}

/// The envelope of a Notary Project signature.
#[derive(ValueEnum, Clone, Copy, Debug, Default)]
pub enum Envelope {
    /// JWS JSON serialization, layer media type application/jose+json.
    #[default]
    Jws,
    /// COSE_Sign1, layer media type application/cose.
    Cose,
}

impl From<Envelope> for Format {
    fn from(e: Envelope) -> Format {
        match e {
            Envelope::Jws => Format::Jws,
            Envelope::Cose => Format::Cose,
        }
    }
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// host[:port]/repository[:tag|@digest]; a tag is resolved to the digest that gets signed.
    #[arg(name = "REF")]
    pub reference: String,
    /// Signature format: notation (a Notary Project signature; its envelope: --envelope).
    #[arg(long, value_enum)]
    pub format: SignatureFormat,
    /// PEM private key (PKCS#8, SEC1 EC or PKCS#1 RSA): ECDSA P-256 (ES256), P-384 (ES384) or
    /// RSA 2048/3072/4096 (PS256/PS384/PS512).
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// PEM certificate chain, signing certificate first (it needs the codeSigning EKU).
    #[arg(long, value_name = "CHAIN")]
    pub cert: PathBuf,
    /// Envelope of the Notary Project signature: jws (application/jose+json, the default) or
    /// cose (COSE_Sign1, application/cose); berth verify reads both.
    #[arg(long, value_enum, default_value_t = Envelope::Jws)]
    pub envelope: Envelope,
    #[command(flatten)]
    pub conn: TransferArgs,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// host[:port]/repository[:tag|@digest]
    #[arg(name = "REF")]
    pub reference: String,
    /// Notary Project trust policy (default: $XDG_CONFIG_HOME/notation/trustpolicy.json).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Notary Project trust store, holding x509/ca/<name>/*.pem|crt (default:
    /// $XDG_CONFIG_HOME/notation/truststore).
    #[arg(long, value_name = "DIR")]
    pub trust_store: Option<PathBuf>,
    /// Also verify cosign signatures (the sha256-<hex>.sig tag and cosign referrers) with this
    /// PEM public key (ECDSA P-256, as cosign generate-key-pair writes it); repeatable. With it
    /// a missing default notation trust policy is not an error.
    #[arg(long = "cosign-key", value_name = "PUB")]
    pub cosign_key: Vec<PathBuf>,
    #[command(flatten)]
    pub conn: TransferArgs,
}

pub(super) fn notation_dir() -> anyhow::Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("notation"));
    }
    let home = std::env::var_os("HOME").context("neither XDG_CONFIG_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".config/notation"))
}

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The manifest REF names: its descriptor, by digest (a signature names a digest, never a tag).
pub(super) async fn resolve(registry: &Registry, r: &Reference) -> anyhow::Result<Descriptor> {
    let m = registry
        .get_manifest(&r.repo, &r.manifest_reference())
        .await
        .map_err(|e| explain(e, &format!("fetching the manifest of {r}")))?;
    Ok(Descriptor::new(
        &m.media_type,
        &m.digest.to_string(),
        m.bytes.len() as u64,
    ))
}

pub fn sign(a: SignArgs) -> anyhow::Result<()> {
    let SignatureFormat::Notation = a.format;
    let r = parse_reference(&a.reference, &a.conn.server)?;
    let key = std::fs::read(&a.key).with_context(|| format!("reading {}", a.key.display()))?;
    let chain = std::fs::read(&a.cert).with_context(|| format!("reading {}", a.cert.display()))?;
    let signer = Signer::from_pem(&key, &chain).map_err(|e| {
        anyhow::anyhow!(
            "--key {} / --cert {}: {e}",
            a.key.display(),
            a.cert.display()
        )
    })?;
    let (registry, _) = a.conn.connect(&r)?;
    let rt = runtime()?;
    rt.block_on(async {
        let target = resolve(&registry, &r).await?;
        let format = Format::from(a.envelope);
        let digest = push_signature(
            &registry,
            &r,
            &signer,
            format,
            &target,
            &serde_json::Map::new(),
        )
        .await?;
        println!(
            "Signed {}/{}@{} ({}, {}, {})",
            r.registry,
            r.repo,
            target.digest,
            signer.alg(),
            format.name(),
            signer.chain()[0].subject
        );
        println!("Signature: {digest}");
        anyhow::Ok(())
    })
}

/// Signs `target` with `signer` in a `format` envelope and pushes the signature as a referrer
/// of it in `r`'s repository: the empty config and the envelope, then the signature manifest.
/// `annotations` go on the signature manifest beside the thumbprints; annotations of `target`
/// itself are in the signed payload (`targetArtifact`). Returns the signature manifest's
/// digest. Shared by `berth sign` and `berth trust migrate`.
pub(super) async fn push_signature(
    registry: &Registry,
    r: &Reference,
    signer: &Signer,
    format: Format,
    target: &Descriptor,
    annotations: &serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<Digest> {
    let agent = concat!("berth/", env!("CARGO_PKG_VERSION"));
    let envelope = signer.sign_envelope(format, target, now(), agent)?;
    let mut manifest =
        berth_notation::signature_manifest_of(format, &envelope, target, &signer.thumbprints());
    if !annotations.is_empty() {
        let mut m: serde_json::Value = serde_json::from_slice(&manifest)?;
        if let Some(a) = m["annotations"].as_object_mut() {
            a.extend(annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        manifest = serde_json::to_vec(&m)?;
    }
    let doing = format!("pushing the signature of {}@{}", r.repo, target.digest);
    registry
        .push_small_blob(&r.repo, EMPTY_CONTENT)
        .await
        .map_err(|e| explain(e, &doing))?;
    registry
        .push_small_blob(&r.repo, &envelope)
        .await
        .map_err(|e| explain(e, &doing))?;
    let digest = Digest::of(Algorithm::Sha256, &manifest);
    registry
        .put_manifest(
            &r.repo,
            &digest.to_string(),
            OCI_MANIFEST,
            &Bytes::from(manifest),
        )
        .await
        .map_err(|e| explain(e, &doing))?;
    Ok(digest)
}

/// Reads the named CA stores the policy lists from `dir` (`x509/<type>/<name>/` files, each a
/// PEM bundle or one DER certificate).
pub(super) fn load_trust_store(dir: &Path, names: &[String]) -> anyhow::Result<TrustStore> {
    let mut store = TrustStore::default();
    for n in names {
        let Some((kind, name)) = n.split_once(':') else {
            continue;
        };
        let sub = dir.join("x509").join(kind).join(name);
        let Ok(entries) = std::fs::read_dir(&sub) else {
            eprintln!("warning: trust store {n}: no directory {}", sub.display());
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths.iter().filter(|p| p.is_file()) {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            let certs = Cert::from_pem_bundle(&bytes)
                .or_else(|_| Cert::from_der(&bytes).map(|c| vec![c]))
                .map_err(|e| anyhow::anyhow!("trust store file {}: {e}", p.display()))?;
            store.add(n, certs);
        }
    }
    Ok(store)
}

pub fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    if !a.cosign_key.is_empty() {
        return super::cosign::verify(a);
    }
    let r = parse_reference(&a.reference, &a.conn.server)?;
    let policy_path = match a.policy {
        Some(p) => p,
        None => notation_dir()?.join("trustpolicy.json"),
    };
    let store_dir = match a.trust_store {
        Some(p) => p,
        None => notation_dir()?.join("truststore"),
    };
    let doc = std::fs::read(&policy_path)
        .with_context(|| format!("reading the trust policy {}", policy_path.display()))?;
    let doc = TrustPolicyDocument::parse(&doc)
        .map_err(|e| anyhow::anyhow!("{}: {e}", policy_path.display()))?;
    let scope = r.gun();
    let policy = doc.applicable(&scope)?;
    let (registry, _) = a.conn.connect(&r)?;
    let rt = runtime()?;
    let target = rt.block_on(resolve(&registry, &r))?;
    let level = policy.level()?;
    if level == berth_notation::Level::Skip {
        println!(
            "Verification of {scope}@{} skipped: trust policy {:?} says skip",
            target.digest, policy.name
        );
        return Ok(());
    }
    let store = load_trust_store(&store_dir, &policy.trust_stores)?;
    let digest: Digest = target
        .digest
        .parse()
        .map_err(|_| anyhow::anyhow!("bad digest"))?;
    let checked = rt.block_on(check_signatures(
        &registry,
        &r,
        &digest,
        &target.digest,
        policy,
        &store,
    ))?;
    let (verified, failures) = (checked.verified, checked.failures);
    if verified > 0 {
        println!(
            "Verified {scope}@{} under trust policy {:?} ({:?}): {verified} of {} signature(s)",
            target.digest, policy.name, level, checked.listed
        );
        return Ok(());
    }
    if failures.is_empty() {
        bail!("{scope}@{} has no Notary Project signature", target.digest);
    }
    bail!(
        "no signature of {scope}@{} verifies under trust policy {:?}:\n  {}",
        target.digest,
        policy.name,
        failures.join("\n  ")
    )
}

/// What checking an image's Notary Project signatures found.
#[derive(Default)]
pub(super) struct Checked {
    /// Signature manifests the referrers API listed.
    pub listed: usize,
    pub verified: usize,
    /// `digest: reason` of each signature that failed.
    pub failures: Vec<String>,
}

/// Lists the Notary Project signatures of `digest` through the referrers API and verifies each
/// under `policy`, printing one line per signature.
pub(super) async fn check_signatures(
    registry: &Registry,
    r: &Reference,
    digest: &Digest,
    target_digest: &str,
    policy: &berth_notation::TrustPolicy,
    store: &TrustStore,
) -> anyhow::Result<Checked> {
    let scope = r.gun();
    let referrers = registry
        .referrers(&r.repo, digest, Some(ARTIFACT_TYPE))
        .await
        .map_err(|e| explain(e, &format!("listing the signatures of {scope}@{digest}")))?;
    let mut out = Checked {
        listed: referrers.len(),
        ..Checked::default()
    };
    for d in &referrers {
        let Some(sig) = d["digest"].as_str() else {
            continue;
        };
        // A registry may ignore the filter; only notary signatures count.
        if d["artifactType"].as_str() != Some(ARTIFACT_TYPE) {
            continue;
        }
        let outcome = match fetch_signature(registry, r, sig, target_digest).await {
            Ok((format, env)) => {
                berth_notation::verify_format(format, &env, target_digest, policy, store, now())
            }
            Err(e) => Outcome::Failed {
                reason: format!("{e:#}"),
                logged: vec![],
            },
        };
        match outcome {
            Outcome::Verified {
                subject,
                signing_time,
                logged,
            } => {
                out.verified += 1;
                println!("Signature {sig}: verified, signed by {subject:?} at {signing_time}");
                for l in logged {
                    println!("  {l}");
                }
            }
            Outcome::Failed { reason, logged } => {
                println!("Signature {sig}: FAILED: {reason}");
                for l in &logged {
                    println!("  {l}");
                }
                out.failures.push(format!("{sig}: {reason}"));
            }
            Outcome::Skipped => {}
        }
    }
    Ok(out)
}

/// The envelope of the signature manifest `sig` and its format (from the layer's media type),
/// after checking the manifest is a notary signature of `subject` with one envelope layer.
pub(super) async fn fetch_signature(
    registry: &Registry,
    r: &Reference,
    sig: &str,
    subject: &str,
) -> anyhow::Result<(Format, Vec<u8>)> {
    let m = registry
        .get_manifest(&r.repo, sig)
        .await
        .map_err(|e| explain(e, "fetching the signature manifest"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&m.bytes).context("the signature manifest is not JSON")?;
    if v["artifactType"] != ARTIFACT_TYPE || v["subject"]["digest"] != subject {
        bail!("the signature manifest is not a Notary Project signature of {subject}");
    }
    let layers = v["layers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let [layer] = layers else {
        bail!(
            "the signature manifest has {} layers, not one",
            layers.len()
        );
    };
    let Some(format) = layer["mediaType"]
        .as_str()
        .and_then(Format::from_media_type)
    else {
        bail!(
            "the signature layer is {}, neither application/jose+json nor application/cose",
            layer["mediaType"]
        );
    };
    let digest: Digest = layer["digest"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|_| anyhow::anyhow!("the signature layer's digest is malformed"))?;
    let envelope = registry
        .get_small_blob(&r.repo, &digest)
        .await
        .map_err(|e| explain(e, "fetching the signature envelope"))?;
    Ok((format, envelope))
}
