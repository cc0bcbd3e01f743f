//! `berth config content-trust show|update`.

use serde_json::json;

use crate::api::Api;
use crate::args::{AnonymousPullCommand, ConfigCommand, ContentTrustCommand};

pub fn run(cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
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
