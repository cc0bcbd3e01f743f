//! `berth repository list | show-tags REPO | delete REPO[:TAG|@DIGEST]`, over the admin API.
//! They are authorized like the registry calls they mirror (listing: what the caller may pull;
//! deleting: AcrDelete, Owner, or a token with `content/delete`).

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use crate::api::{Api, ServerArgs};

#[derive(Subcommand, Debug)]
pub enum RepositoryCommand {
    /// List the repositories you may pull from.
    List {
        /// Print the server's JSON instead of one name per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Tags of a repository: digest, size, when pushed, and whether (and by whom) signed.
    #[command(name = "show-tags")]
    ShowTags {
        /// `host[:port]/repository` (the host selects the server) or a repository name with
        /// `--server`.
        repo: String,
        /// Print the server's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a repository, a tag (`REPO:TAG`) or a manifest and every tag on it (`REPO@DIGEST`).
    /// Blob bytes are reclaimed by garbage collection; trust data stays until `berth trust reset`.
    Delete {
        /// `host[:port]/repository[:tag|@digest]`.
        reference: String,
        /// Confirm deleting a whole repository or a manifest without a prompt.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `REPO[:TAG|@DIGEST]` split into the host (if named), repository and what to delete.
fn split_target(
    reference: &str,
) -> anyhow::Result<(Option<String>, berth_oci::RepoName, Option<String>)> {
    let (rest, suffix) = match reference.rsplit_once('@') {
        Some((r, d)) => (r, Some(format!("_manifests/{d}"))),
        None => {
            // A tag's colon comes after the last slash; a port's before it.
            let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
            match reference[last_slash..].rfind(':') {
                Some(i) => {
                    let at = last_slash + i;
                    (
                        &reference[..at],
                        Some(format!("_tags/{}", &reference[at + 1..])),
                    )
                }
                None => (reference, None),
            }
        }
    };
    let (host, repo) = super::trust::split_repo_ref(rest)?;
    Ok((host, repo, suffix))
}

pub(crate) fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn run(c: RepositoryCommand) -> anyhow::Result<()> {
    match c {
        RepositoryCommand::List { json, server } => {
            let api = Api::new(&server, None)?;
            let v = api.get("repositories")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for r in v.as_array().into_iter().flatten() {
                    println!("{}", r["name"].as_str().unwrap_or_default());
                }
            }
        }
        RepositoryCommand::ShowTags { repo, json, server } => {
            let (host, name) = super::trust::split_repo_ref(&repo)?;
            let api = Api::new_scoped(&server, host, &format!("repository:{name}:pull"))?;
            let v = api.get(&format!("repositories/{name}/_tags"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_tags(&v);
            }
        }
        RepositoryCommand::Delete {
            reference,
            yes,
            server,
        } => {
            let (host, name, suffix) = split_target(&reference)?;
            let api = Api::new_scoped(&server, host, &format!("repository:{name}:delete"))?;
            let path = match &suffix {
                Some(s) => format!("repositories/{name}/{s}"),
                None => format!("repositories/{name}"),
            };
            match suffix.as_deref() {
                None => super::confirm(
                    yes,
                    &format!(
                        "This deletes the repository {name}: every tag and manifest in it. \
                         Its trust data stays (berth trust reset wipes it)."
                    ),
                    "yes",
                )?,
                Some(s) if s.starts_with("_manifests/") => super::confirm(
                    yes,
                    &format!("This deletes {reference} and every tag pointing at it."),
                    "yes",
                )?,
                Some(_) => {}
            }
            let v = api
                .delete(&path)
                .with_context(|| format!("deleting {reference}"))?;
            match (&suffix, v.get("deletedManifests")) {
                (None, Some(m)) => println!(
                    "deleted repository {name} ({m} manifest(s), {} tag(s))",
                    v["deletedTags"]
                ),
                _ => println!("deleted {reference}"),
            }
        }
    }
    Ok(())
}

fn print_tags(v: &Value) {
    let tags = v["tags"].as_array().cloned().unwrap_or_default();
    if tags.is_empty() {
        println!(
            "no tags in {}",
            v["repository"].as_str().unwrap_or_default()
        );
        return;
    }
    println!(
        "{:<24} {:<71} {:>10} {:<20} {:<6} SIGNERS",
        "TAG", "DIGEST", "SIZE", "PUSHED", "SIGNED"
    );
    for t in &tags {
        let signers: Vec<String> = t["signers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let keys: Vec<&str> = s["keyIds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|k| k.get(..12).unwrap_or(k))
                    .collect();
                format!(
                    "{} (keys {})",
                    s["name"].as_str().unwrap_or_default(),
                    keys.join(",")
                )
            })
            .collect();
        println!(
            "{:<24} {:<71} {:>10} {:<20} {:<6} {}",
            t["name"].as_str().unwrap_or_default(),
            t["digest"].as_str().unwrap_or_default(),
            human_size(t["size"].as_u64().unwrap_or(0)),
            t["pushed"].as_str().unwrap_or("-"),
            if t["signed"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            signers.join("; ")
        );
    }
    if v["contentTrust"] != "enabled" {
        println!(
            "(signatures not shown: content trust is {})",
            v["contentTrust"].as_str().unwrap_or("unknown")
        );
    }
}
