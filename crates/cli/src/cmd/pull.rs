//! `berth pull REF oci:DIR[:TAG]`: a verified copy of an image into an OCI image layout.

use berth_client::{Credentials, OciDestination, PlatformFilter, PullOptions, Reference, Registry};
use berth_oci::Digest;
use clap::Args;

use super::signing::{ContentTrustArgs, Session};
use super::transfer::{TransferArgs, explain, parse_reference, runtime};

#[derive(Args, Debug)]
pub struct PullArgs {
    /// host[:port]/repository[:tag|@digest], e.g. localhost:5000/team/app:v1
    #[arg(name = "REF")]
    pub reference: String,
    /// oci:DIR[:TAG]; without TAG the entry is named after REF's tag.
    pub dest: String,
    /// From a multi-platform index, pull only os/arch[/variant] (default: every platform).
    #[arg(long)]
    pub platform: Option<String>,
    /// Blobs downloaded at the same time.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub jobs: u16,
    #[command(flatten)]
    pub content_trust: ContentTrustArgs,
    #[command(flatten)]
    pub conn: TransferArgs,
}

pub fn run(a: PullArgs) -> anyhow::Result<()> {
    let source = parse_reference(&a.reference, &a.conn.server)?;
    let dest: OciDestination = a.dest.parse().map_err(|e| explain(e, "reading DEST"))?;
    let platform = a
        .platform
        .as_deref()
        .map(str::parse::<PlatformFilter>)
        .transpose()
        .map_err(|e| explain(e, "reading --platform"))?;
    let (registry, creds) = a.conn.connect(&source)?;
    let rt = runtime()?;
    // A pull by digest needs no trust data (the digest is the check), as with docker.
    let signed = if a.content_trust.enabled()? && source.digest.is_none() {
        Some(rt.block_on(resolve_signed(&registry, creds, &source))?)
    } else {
        None
    };
    let source = match &signed {
        Some((r, _)) => r.clone(),
        None => source,
    };
    let progress = a.conn.progress();
    let opts = PullOptions {
        platform,
        concurrency: a.jobs.into(),
        progress: progress.clone(),
    };
    let pulled = rt.block_on(registry.pull(&source, &dest, &opts));
    drop(opts);
    drop(progress);
    let pulled = pulled.map_err(|e| explain(e, &format!("pull of {source}")))?;
    if let Some((_, size)) = signed
        && a.platform.is_none()
        && (Some(&pulled.digest) != source.digest.as_ref() || pulled.size != size)
    {
        // Unreachable unless the client is broken: the manifest was checked before the pull.
        anyhow::bail!(
            "pulled {} ({} bytes), not the signed manifest of {source} ({size} bytes)",
            pulled.digest,
            pulled.size
        );
    }
    println!("Digest: {}", pulled.digest);
    println!(
        "pulled {source} to oci:{}{}",
        dest.dir.display(),
        pulled
            .ref_name
            .as_deref()
            .map(|t| format!(":{t}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// The tag's signed digest and size from verified trust data, and a check that the registry
/// serves exactly that manifest, all before anything is written. Returns the reference pinned
/// to the digest (tag kept, to name the result).
async fn resolve_signed(
    registry: &Registry,
    creds: Option<Credentials>,
    source: &Reference,
) -> anyhow::Result<(Reference, u64)> {
    let tag = source
        .tag
        .clone()
        .unwrap_or_else(|| "latest".parse().expect("a valid tag"));
    let session = Session::new(registry.clone(), creds, source);
    let target = session
        .run(false, |r| {
            let tag = tag.to_string();
            async move { r.resolve(&tag).await }
        })
        .await
        .map_err(|e| e.context(format!("content trust for {source}")))?;
    let digest: Digest = target
        .digest
        .parse()
        .map_err(|_| anyhow::anyhow!("signed digest {} is malformed", target.digest))?;
    // get_manifest checks the bytes against the digest; the size is ours to check.
    let m = registry
        .get_manifest(&source.repo, &target.digest)
        .await
        .map_err(|e| explain(e, &format!("fetching the signed manifest of {source}")))?;
    if m.bytes.len() as u64 != target.size {
        anyhow::bail!(
            "the manifest of {source} is {} bytes but {} bytes were signed: refusing it",
            m.bytes.len(),
            target.size
        );
    }
    println!("Pull (1 of 1): {}:{tag}@{digest}", source.gun());
    let pinned = Reference {
        tag: Some(tag),
        digest: Some(digest),
        ..source.clone()
    };
    Ok((pinned, target.size))
}
