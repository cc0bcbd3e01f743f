//! `berth pull REF oci:DIR[:TAG]`: a verified copy of an image into an OCI image layout.

use berth_client::{OciDestination, PlatformFilter, PullOptions};
use clap::Args;

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
    let registry = a.conn.registry(&source)?;
    let progress = a.conn.progress();
    let opts = PullOptions {
        platform,
        concurrency: a.jobs.into(),
        progress: progress.clone(),
    };
    let pulled = runtime()?.block_on(registry.pull(&source, &dest, &opts));
    drop(opts);
    drop(progress);
    let pulled = pulled.map_err(|e| explain(e, &format!("pull of {source}")))?;
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
