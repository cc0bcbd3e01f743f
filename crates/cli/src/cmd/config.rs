//! `berth config content-trust show|update`, `anonymous-pull show|update`,
//! `policy show [REPO] | update (REPO | --default) [--signed-pulls-only B] [--immutable-signed-tags B]
//! [--accept dct,notation,cosign] [--trust-policy FILE] [--trust-store DIR] [--cosign-key PUB]...`.
//! `attestation show [REPO] | enable|disable (REPO | --default) | reset REPO | certificate [-o FILE]`.

use anyhow::Context as _;
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
            accept,
            trust_policy,
            trust_store,
            cosign_key,
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
            if let Some(a) = accept {
                let v = if a.trim() == "default" {
                    serde_json::Value::Null
                } else {
                    a.split(',')
                        .map(|f| serde_json::Value::from(f.trim()))
                        .collect()
                };
                body.insert("accept".into(), v);
            }
            if let Some(p) = trust_policy {
                let text = std::fs::read(&p)
                    .with_context(|| format!("reading the trust policy {}", p.display()))?;
                let v: serde_json::Value = serde_json::from_slice(&text)
                    .with_context(|| format!("{} is not JSON", p.display()))?;
                body.insert("trustPolicy".into(), v);
            }
            if let Some(dir) = trust_store {
                body.insert("trustStore".into(), read_trust_store(&dir)?);
            }
            if !cosign_key.is_empty() {
                let mut keys = Vec::new();
                for p in &cosign_key {
                    let pem = std::fs::read_to_string(p)
                        .with_context(|| format!("reading the cosign key {}", p.display()))?;
                    keys.push(serde_json::Value::from(pem));
                }
                body.insert("cosignKeys".into(), keys.into());
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

/// A Notary Project trust store directory as `{"ca:NAME": [PEM, ...], ...}`: every file under
/// `x509/ca/NAME/` and `x509/signingAuthority/NAME/` (PEM, or one DER certificate).
fn read_trust_store(dir: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    for kind in ["ca", "signingAuthority"] {
        let base = dir.join("x509").join(kind);
        let Ok(stores) = std::fs::read_dir(&base) else {
            continue;
        };
        let mut stores: Vec<_> = stores.filter_map(|e| e.ok().map(|e| e.path())).collect();
        stores.sort();
        for store in stores.iter().filter(|p| p.is_dir()) {
            let name = store.file_name().unwrap_or_default().to_string_lossy();
            let mut files: Vec<_> = std::fs::read_dir(store)
                .with_context(|| format!("reading {}", store.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            let mut pems = Vec::new();
            for f in &files {
                let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                let text = match String::from_utf8(bytes) {
                    Ok(t) if t.contains("-----BEGIN") => t,
                    // A DER certificate: sent as PEM.
                    Ok(t) => der_to_pem(t.as_bytes()),
                    Err(e) => der_to_pem(e.as_bytes()),
                };
                pems.push(serde_json::Value::from(text));
            }
            out.insert(format!("{kind}:{name}"), pems.into());
        }
    }
    if out.is_empty() {
        anyhow::bail!(
            "{} holds no trust store (expected x509/ca/NAME/ or x509/signingAuthority/NAME/ with certificates)",
            dir.display()
        );
    }
    Ok(out.into())
}

fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
