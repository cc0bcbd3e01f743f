//! `berth config content-trust show|update`, `anonymous-pull show|update`,
//! `policy show [REPO] | update (REPO | --default) [--signed-pulls-only B] [--immutable-signed-tags B]`.

use serde_json::json;

use crate::api::Api;
use crate::args::{AnonymousPullCommand, ConfigCommand, ContentTrustCommand, PolicyCommand};

pub fn run(cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Policy(PolicyCommand::Show { repo, server }) => {
            let v = match repo {
                Some(r) => {
                    let (host, name) = super::trust::split_repo_ref(&r)?;
                    Api::new(&server, host)?.get(&format!("policy/{name}"))?
                }
                None => Api::new(&server, None)?.get("policy")?,
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ConfigCommand::Policy(PolicyCommand::Update {
            repo,
            default,
            signed_pulls_only,
            immutable_signed_tags,
            server,
        }) => {
            let (api, path) = match (repo, default) {
                (Some(r), false) => {
                    let (host, name) = super::trust::split_repo_ref(&r)?;
                    (Api::new(&server, host)?, format!("policy/{name}"))
                }
                (None, true) => (Api::new(&server, None)?, "policy/_default".to_owned()),
                // clap's groups allow exactly one of them.
                _ => anyhow::bail!("give either a repository or --default"),
            };
            let mut body = serde_json::Map::new();
            if let Some(b) = signed_pulls_only {
                body.insert("signedPullsOnly".into(), b.into());
            }
            if let Some(b) = immutable_signed_tags {
                body.insert("immutableSignedTags".into(), b.into());
            }
            let v = api.put(&path, &body.into())?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ConfigCommand::AnonymousPull(AnonymousPullCommand::Show(server)) => {
            let v = Api::new(&server, None)?.get("config/anonymous-pull")?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ConfigCommand::AnonymousPull(AnonymousPullCommand::Update { enabled, server }) => {
            let v = Api::new(&server, None)?
                .put("config/anonymous-pull", &json!({"enabled": enabled}))?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ConfigCommand::ContentTrust(ContentTrustCommand::Show(server)) => {
            let v = Api::new(&server, None)?.get("config/content-trust")?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ConfigCommand::ContentTrust(ContentTrustCommand::Update {
            status,
            yes,
            server,
        }) => {
            let api = Api::new(&server, None)?;
            if status == "disabled" {
                super::confirm(
                    yes,
                    "Disabling content trust DELETES ALL TRUST DATA (every signature of every repository) \
                     irreversibly. Images are kept. Signers will have to re-initialise their repositories.",
                    "yes",
                )?;
            }
            let v = api.put("config/content-trust", &json!({"status": status}))?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            if status == "disabled" {
                // Every repository's trust data is gone: so is what this machine cached of it.
                super::signing::forget_cached_trust(super::signing::host_port(api.base()))?;
            }
        }
    }
    Ok(())
}
