//! `berth trust …` admin verbs.

use anyhow::Context;

use crate::api::Api;
use crate::args::TrustCommand;

/// Splits `host[:port]/repo` into the server it names and the repository.
pub fn split_repo_ref(r: &str) -> anyhow::Result<(Option<String>, berth_oci::RepoName)> {
    let (first, rest) = r.split_once('/').unwrap_or((r, ""));
    let has_host = first.contains('.') || first.contains(':') || first == "localhost";
    let (host, repo) = if has_host {
        (Some(first.to_owned()), rest)
    } else {
        (None, r)
    };
    let repo = repo
        .parse()
        .with_context(|| format!("{r:?} is not a repository reference (host[:port]/name)"))?;
    Ok((host, repo))
}

pub fn run(cmd: TrustCommand) -> anyhow::Result<()> {
    match cmd {
        TrustCommand::Reset { repo, yes, server } => {
            let (host, name) = split_repo_ref(&repo)?;
            let api = Api::new(&server, host)?;
            super::confirm(
                yes,
                &format!(
                    "This deletes all trust data (signatures, keys the registry holds) of {name}, irreversibly. \
                     Its images are kept. The repository can then be signed again from a new root key."
                ),
                "yes",
            )?;
            let v = api.delete(&format!("trust/{name}"))?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references() {
        let (h, r) = split_repo_ref("localhost:5000/team/app").unwrap();
        assert_eq!(
            (h.as_deref(), r.as_str()),
            (Some("localhost:5000"), "team/app")
        );
        let (h, r) = split_repo_ref("team/app").unwrap();
        assert_eq!((h, r.as_str()), (None, "team/app"));
        assert!(split_repo_ref("localhost:5000/Team").is_err());
    }
}
