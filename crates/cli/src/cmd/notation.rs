//! `berth sign --format notation` and `berth verify`: Notary Project signatures stored as OCI
//! referrers of the signed manifest (issue 15). The envelope, the trust policy and the checks
//! are berth-notation's; verification itself is cmd/verify.rs over the trust client's entry point.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use berth_client::{Reference, Registry};
use berth_notation::cert::Cert;
use berth_notation::{Descriptor, EMPTY_CONTENT, Format, OCI_MANIFEST, Signer, TrustStore};
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
    /// Only these signature formats count (repeatable): dct (the tag's Docker Content Trust
    /// data), notation (Notary Project, JWS or COSE), cosign (needs --cosign-key). Default:
    /// every one that applies.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Vec<super::verify::VerifyFormat>,
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

/// `berth verify`: see `cmd/verify.rs`.
pub fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    super::verify::verify(a)
}
