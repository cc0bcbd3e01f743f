//! `berth store check [--repair] [--verify-digests] [--json]`: through a running server (the
//! admin API), or on the data dir of a stopped embedded server.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use berth_registry::{CheckOptions, CheckReport, Registry};
use clap::Args;
use serde_json::json;

use crate::api::{Api, ServerArgs};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Fix what is safe to fix, and say what was done (without it nothing is changed).
    #[arg(long)]
    pub repair: bool,
    /// Also read every blob back and hash it (streamed; takes as long as reading the store).
    #[arg(long)]
    pub verify_digests: bool,
    /// Upload data and temp files younger than this many seconds are left alone: they may
    /// belong to a write in progress.
    #[arg(long, value_name = "SECONDS", default_value_t = berth_registry::DEFAULT_MIN_AGE_SECS)]
    pub min_age: i64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The data dir of a STOPPED embedded server (refused while a server uses it); without it
    /// the check runs in the server named by --server.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(a: CheckArgs) -> anyhow::Result<()> {
    let report = match &a.data_dir {
        Some(dir) => offline(dir, &a)?,
        None => {
            let v = Api::new(&a.server, None)?.post(
                "store/check",
                &json!({
                    "repair": a.repair,
                    "verify_digests": a.verify_digests,
                    "min_age_secs": a.min_age,
                }),
            )?;
            serde_json::from_value::<CheckReport>(v)
                .context("the server's store check report is not one this berth reads")?
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    let left = report.remaining();
    if left > 0 {
        bail!(
            "{left} problem(s) remain{}",
            if a.repair {
                ""
            } else {
                " (--repair fixes what it can)"
            }
        );
    }
    Ok(())
}

fn offline(dir: &std::path::Path, a: &CheckArgs) -> anyhow::Result<CheckReport> {
    let db = dir.join("metadata.db");
    // Checked before anything is opened: opening would create an empty store.
    if !db.is_file() {
        bail!(
            "{} is not the data dir of an embedded berth (it has no metadata.db); check a \
             distributed store through one of its servers (--server)",
            dir.display()
        );
    }
    let _lock = super::serve::lock_data_dir(dir).map_err(|e| {
        e.context("store check --data-dir works on a STOPPED server's data dir (or use --server)")
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let meta = Arc::new(
            berth_storage_embedded::SqliteMetadataStore::open(&db)
                .with_context(|| format!("opening {}", db.display()))?,
        );
        let blobs = Arc::new(
            berth_storage_embedded::FsBlobStore::open(dir)
                .with_context(|| format!("opening the blobs in {}", dir.display()))?,
        );
        let registry = Registry::new(blobs, meta);
        registry
            .check_store(CheckOptions {
                repair: a.repair,
                verify_digests: a.verify_digests,
                min_age_secs: a.min_age.max(0),
                ..CheckOptions::default()
            })
            .await
            .context("checking the store")
    })
}

fn print_human(r: &CheckReport) {
    println!(
        "checked {} repositories, {} manifests, {} tags, {} blob links, {} blobs ({} bytes{}), {} uploads",
        r.repositories,
        r.manifests,
        r.tags,
        r.blob_links,
        r.blobs,
        r.blob_bytes,
        if r.blobs_verified > 0 {
            format!(", {} re-hashed", r.blobs_verified)
        } else {
            String::new()
        },
        r.uploads,
    );
    for f in &r.findings {
        let mut what = String::new();
        if let Some(repo) = &f.repository {
            what.push_str(repo);
        }
        if let Some(d) = &f.digest {
            what.push_str(if what.is_empty() { "" } else { "@" });
            what.push_str(d);
        }
        if let Some(n) = &f.name {
            what.push_str(if what.is_empty() { "" } else { ":" });
            what.push_str(n);
        }
        println!("{}: {what}: {}", f.kind.as_str(), f.detail);
        if let Some(done) = &f.repaired {
            println!("  repaired: {done}");
        }
    }
    let problems = r.findings.iter().filter(|f| f.kind.is_problem()).count();
    println!(
        "{} findings: {problems} problems, {} repaired, {} remaining",
        r.findings.len(),
        r.repaired(),
        r.remaining()
    );
}
