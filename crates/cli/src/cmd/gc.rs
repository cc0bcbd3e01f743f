//! `berth gc`: one garbage collection on a running server, through the admin API.

use clap::Args;
use serde_json::{Value, json};

use crate::api::{Api, ServerArgs};

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Count what would be removed; change nothing. Manifests are counted one layer deep: the
    /// blobs that only they keep are counted by the real run.
    #[arg(long)]
    pub dry_run: bool,
    /// Also delete manifests no tag reaches (through indexes and referrer subjects), except
    /// those signed trust data names.
    #[arg(long)]
    pub untagged: bool,
    /// With --untagged: delete untagged manifests even when trust data names them (their
    /// signed tags then point at nothing).
    #[arg(long, requires = "untagged")]
    pub include_signed: bool,
    /// Print the server's JSON answer instead of a summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(a: GcArgs) -> anyhow::Result<()> {
    let body = json!({
        "dryRun": a.dry_run,
        "untagged": a.untagged,
        "includeSigned": a.include_signed,
    });
    let r = Api::new(&a.server, None)?.post("gc", &body)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("{}", summary(&r));
    }
    Ok(())
}

fn summary(r: &Value) -> String {
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    let verb = if r["dryRun"].as_bool().unwrap_or(false) {
        "would remove"
    } else {
        "removed"
    };
    let mut s = format!(
        "garbage collection {verb}: {} manifests, {} blobs ({}), {} orphaned blob files, {} upload sessions",
        n("manifests"),
        n("blobs"),
        super::repository::human_size(n("bytes")),
        n("orphanedBlobs"),
        n("uploads"),
    );
    if let Some(why) = r["blobsSkipped"].as_str() {
        s.push_str(&format!("\nblobs were not swept: {why}"));
    }
    s
}
