//! `berth config content-trust show|update`, `anonymous-pull show|update`,
//! `policy show [REPO] | update (REPO | --default) [--signed-pulls-only B] [--immutable-signed-tags B]`.
//! `attestation show [REPO] | enable|disable (REPO | --default) | reset REPO | certificate [-o FILE]`.

use serde_json::json;

use crate::api::Api;
use crate::args::{
    AnonymousPullCommand, AttestationCommand, ConfigCommand, ContentTrustCommand, PolicyCommand,
};

/// The admin API and path of an attestation switch: a repository's or the default's.
fn attestation_target(
    repo: Option<String>,
    default: bool,
    server: &crate::api::ServerArgs,
) -> anyhow::Result<(Api, String)> {
    Ok(match (repo, default) {
        (Some(r), false) => {
            let (host, name) = super::trust::split_repo_ref(&r)?;
            (Api::new(server, host)?, format!("attestation/{name}"))
        }
        (None, true) => (Api::new(server, None)?, "attestation/_default".to_owned()),
        // clap's group allows exactly one of them.
        _ => anyhow::bail!("give either a repository or --default"),
    })
}

fn attestation(cmd: AttestationCommand) -> anyhow::Result<()> {
    let v = match cmd {
        AttestationCommand::Show { repo, server } => match repo {
            Some(r) => {
                let (host, name) = super::trust::split_repo_ref(&r)?;
                Api::new(&server, host)?.get(&format!("attestation/{name}"))?
            }
            None => Api::new(&server, None)?.get("attestation")?,
        },
        AttestationCommand::Enable {
            repo,
            default,
            server,
        } => {
            let (api, path) = attestation_target(repo, default, &server)?;
            api.put(&path, &json!({"enabled": true}))?
        }
        AttestationCommand::Disable {
            repo,
            default,
            server,
        } => {
            let (api, path) = attestation_target(repo, default, &server)?;
            api.put(&path, &json!({"enabled": false}))?
        }
        AttestationCommand::Reset { repo, server } => {
            let (api, path) = attestation_target(Some(repo), false, &server)?;
            api.delete(&path)?
        }
        AttestationCommand::Certificate { output, server } => {
            let pem = Api::new(&server, None)?.get_text("attestation/_certificate")?;
            match output {
                Some(f) => std::fs::write(&f, pem)
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", f.display()))?,
                None => print!("{pem}"),
            }
            return Ok(());
        }
    };
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Attestation(c) => attestation(c)?,
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
