//! `berth push SOURCE REF`: an OCI image layout or a `docker save` archive into a registry.

use berth_client::{ImageLocation, PushOptions};
use berth_oci::RepoName;
use clap::Args;

use super::signing::{ContentTrustArgs, Session};
use super::transfer::{TransferArgs, explain, parse_reference, runtime};

#[derive(Args, Debug)]
pub struct PushArgs {
    /// oci:DIR[:TAG] (OCI image layout) or docker-archive:FILE.tar[:REPO:TAG]
    pub source: String,
    /// host[:port]/repository[:tag], e.g. localhost:5000/team/app:v1
    #[arg(name = "REF")]
    pub reference: String,
    /// Repository of the same registry to mount blobs from instead of uploading them
    /// (repeatable).
    #[arg(long, value_name = "REPO")]
    pub mount_from: Vec<String>,
    /// Blobs uploaded at the same time.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub jobs: u16,
    #[command(flatten)]
    pub content_trust: ContentTrustArgs,
    #[command(flatten)]
    pub conn: TransferArgs,
}

pub fn run(a: PushArgs) -> anyhow::Result<()> {
    let source: ImageLocation = a.source.parse().map_err(|e| explain(e, "reading SOURCE"))?;
    let target = parse_reference(&a.reference, &a.conn.server)?;
    let trust = a.content_trust.enabled()?;
    // Content trust signs tags; refuse before anything is uploaded.
    if trust && target.tag.is_none() && target.digest.is_some() {
        anyhow::bail!(
            "content trust signs tags: name one in REF ({}:TAG), or pass --disable-content-trust",
            target.repo
        );
    }
    let mount_from = a
        .mount_from
        .iter()
        .map(|r| r.parse::<RepoName>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--mount-from: {}", e.message))?;
    let (registry, creds) = a.conn.connect(&target)?;
    let progress = a.conn.progress();
    let opts = PushOptions {
        mount_from,
        concurrency: a.jobs.into(),
        progress: progress.clone(),
    };
    let rt = runtime()?;
    let pushed = rt.block_on(async {
        let image = source.load().await?;
        registry.push(&image, &target, &opts).await
    });
    drop(opts);
    drop(progress);
    let pushed = pushed.map_err(|e| explain(e, &format!("push of {} to {target}", a.source)))?;
    // docker's last line, which scripts parse.
    let name = pushed
        .reference
        .tag
        .as_ref()
        .map_or_else(|| pushed.digest.to_string(), |t| t.to_string());
    println!("{name}: digest: {} size: {}", pushed.digest, pushed.size);
    if trust {
        let tag = name;
        let session = Session::new(registry, creds, &target);
        println!("Signing and pushing trust metadata");
        let (digest, size) = (pushed.digest.to_string(), pushed.size);
        let p = rt
            .block_on(session.run(true, |r| {
                let (tag, digest) = (tag.clone(), digest.clone());
                async move { r.sign(&tag, &digest, size).await }
            }))
            .map_err(|e| {
                e.context(format!(
                    "the image is pushed but {}:{tag} is NOT signed",
                    session.gun()
                ))
            })?;
        if p.initialized {
            println!("Finished initializing \"{}\"", session.gun());
        }
        println!("Successfully signed {}:{tag}", session.gun());
    }
    Ok(())
}
