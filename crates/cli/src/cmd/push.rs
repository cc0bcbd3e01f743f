//! `berth push SOURCE REF`: an OCI image layout or a `docker save` archive into a registry.

use berth_client::{ImageLocation, PushOptions};
use berth_oci::RepoName;
use clap::Args;

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
    pub conn: TransferArgs,
}

pub fn run(a: PushArgs) -> anyhow::Result<()> {
    let source: ImageLocation = a.source.parse().map_err(|e| explain(e, "reading SOURCE"))?;
    let target = parse_reference(&a.reference, &a.conn.server)?;
    let mount_from = a
        .mount_from
        .iter()
        .map(|r| r.parse::<RepoName>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--mount-from: {}", e.message))?;
    let registry = a.conn.registry(&target)?;
    let progress = a.conn.progress();
    let opts = PushOptions {
        mount_from,
        concurrency: a.jobs.into(),
        progress: progress.clone(),
    };
    let pushed = runtime()?.block_on(async {
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
    Ok(())
}
