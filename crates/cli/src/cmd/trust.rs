//! `berth trust …`: the admin verb `reset`, and docker's trust verbs (keys, signers, sign,
//! revoke, inspect) on docker's key store and cache.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use berth_client::{Credentials, Reference};
use berth_trust_client::{
    inspect_json, inspect_pretty, parse_public_key_pem, validate_signer_name,
};
use clap::{Args, Subcommand};

use super::signing::{Session, keystore};
use super::transfer::{credentials, explain, parse_reference, registry_for, runtime, with_login};
use crate::api::{Api, ServerArgs};
use crate::args::TrustCommand;

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Generate a signing key (ECDSA P-256) into the key store and write NAME.pub.
    Generate {
        /// The signer name (lowercase letters, digits, '-' and '_').
        name: String,
        /// Where to write NAME.pub [default: the current directory].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Import a PEM private key (PKCS#8, encrypted or not) under a signer name.
    Load {
        /// The PEM private key file.
        file: PathBuf,
        /// The signer name to file the key under.
        #[arg(long)]
        name: String,
    },
    /// Write every private key to a tar archive (0600; 0700 directories and 0600 files inside).
    Backup {
        /// The archive to write.
        file: PathBuf,
    },
    /// Restore keys from a `key backup` archive; keys already present are kept.
    Restore {
        /// The archive `key backup` wrote.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum SignerCommand {
    /// Add a signer with its public key(s) (initialises the repository's trust data if needed).
    Add {
        /// The signer's name (lowercase letters, digits, '-' and '_').
        name: String,
        /// host[:port]/repository
        repo: String,
        /// Public key PEM files (e.g. NAME.pub from `berth trust key generate`).
        #[arg(long = "key", required = true, value_name = "PUB")]
        keys: Vec<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove a signer from a repository.
    Remove {
        /// The signer's name.
        name: String,
        /// host[:port]/repository
        repo: String,
        /// Do not ask even when this signer is the only one who can sign releases.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// host[:port]/repository:tag (the tag must be in the registry)
    #[arg(name = "REF")]
    pub reference: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// host[:port]/repository[:tag]; without a tag every signature is removed.
    #[arg(name = "REF")]
    pub reference: String,
    /// Do not ask before removing every signature of the repository.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// host[:port]/repository[:tag] (with a tag, only that tag's signature is listed)
    #[arg(name = "REF", required = true)]
    pub references: Vec<String>,
    /// Human-readable tables instead of JSON.
    #[arg(long)]
    pub pretty: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

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
        TrustCommand::Key(k) => key(k)?,
        TrustCommand::Signer(c) => signer(c)?,
        TrustCommand::Sign(a) => sign(a)?,
        TrustCommand::Revoke(a) => revoke(a)?,
        TrustCommand::Inspect(a) => inspect(a)?,
        TrustCommand::Migrate(a) => super::migrate::run(a)?,
        TrustCommand::Reset { repo, yes, server } => {
            let (host, name) = split_repo_ref(&repo)?;
            let api = Api::new(&server, host.clone())?;
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
            // Docker's GUN: the host as the user named it, else the server's.
            let host = host.unwrap_or_else(|| super::signing::host_port(api.base()).to_owned());
            super::signing::forget_cached_trust(&format!("{host}/{name}"))?;
        }
    }
    Ok(())
}

fn key(cmd: KeyCommand) -> anyhow::Result<()> {
    let keys = keystore();
    match cmd {
        KeyCommand::Generate { name, dir } => {
            validate_signer_name(&name)?;
            let dir = match dir {
                Some(d) => d,
                None => std::env::current_dir().context("finding the current directory")?,
            };
            let pub_path = dir.join(format!("{name}.pub"));
            // Checked first, as docker does, so no orphan private key is left behind.
            if pub_path.exists() {
                bail!("public key file already exists: {}", pub_path.display());
            }
            println!("Generating key for {name}...");
            let (key, _) = keys.generate(&name, None)?;
            let pem = public_key_pem(&name, key.public_key().public_bytes());
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&pub_path)
                .and_then(|mut f| f.write_all(pem.as_bytes()))
                .with_context(|| format!("writing {}", pub_path.display()))?;
            println!(
                "Successfully generated and loaded private key. Corresponding public key available: {}",
                pub_path.display()
            );
        }
        KeyCommand::Load { file, name } => {
            println!("Loading key from \"{}\"...", file.display());
            let pem =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let info = keys.import_pem(&pem, &name)?;
            println!(
                "Successfully imported key from {} (key ID {})",
                file.display(),
                info.id
            );
        }
        KeyCommand::Backup { file } => {
            let n = keys.backup(&file)?;
            println!("Backed up {n} keys to {}", file.display());
        }
        KeyCommand::Restore { file } => {
            let written = keys.restore(&file)?;
            println!(
                "Restored {} keys into {}",
                written.len(),
                keys.private_dir().display()
            );
        }
    }
    Ok(())
}

/// The public half as docker writes NAME.pub: a `PUBLIC KEY` block with a `role:` header.
fn public_key_pem(role: &str, spki_der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki_der);
    let mut out = format!("-----BEGIN PUBLIC KEY-----\nrole: {role}\n\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END PUBLIC KEY-----\n");
    out
}

/// A repository reference without tag or digest.
fn parse_repo(s: &str, server: &ServerArgs) -> anyhow::Result<Reference> {
    let r = parse_reference(s, server)?;
    if r.tag.is_some() || r.digest.is_some() {
        bail!("{s:?} names a tag or digest: give the repository only (host[:port]/repository)");
    }
    Ok(r)
}

fn session(server: &ServerArgs, reference: &Reference) -> anyhow::Result<Session> {
    let creds = with_login(credentials(server)?, server, reference)?;
    let registry = registry_for(server, reference, creds.clone())?;
    Ok(Session::new(registry, creds, reference))
}

fn signer(cmd: SignerCommand) -> anyhow::Result<()> {
    let rt = runtime()?;
    match cmd {
        SignerCommand::Add {
            name,
            repo,
            keys,
            server,
        } => {
            validate_signer_name(&name)?;
            let reference = parse_repo(&repo, &server)?;
            let mut public = Vec::new();
            for k in &keys {
                let pem = std::fs::read(k).with_context(|| format!("reading {}", k.display()))?;
                public
                    .push(parse_public_key_pem(&pem).with_context(|| format!("{}", k.display()))?);
            }
            let s = session(&server, &reference)?;
            println!("Adding signer \"{name}\" to {}...", s.gun());
            let p = rt.block_on(s.run(true, |r| {
                let (name, public) = (name.clone(), public.clone());
                async move { r.add_signer(&name, &public).await }
            }))?;
            if p.initialized {
                println!("Initialized signed repository for {}", s.gun());
            }
            println!("Successfully added signer: {name} to {}", s.gun());
        }
        SignerCommand::Remove {
            name,
            repo,
            yes,
            server,
        } => {
            validate_signer_name(&name)?;
            let reference = parse_repo(&repo, &server)?;
            let s = session(&server, &reference)?;
            let data = rt.block_on(s.run(false, |r| async move { r.tuf().update().await }))?;
            // Docker asks when the signer is the last one able to sign released tags.
            let role = format!("targets/{name}");
            let delegations = data.delegations();
            let own: Vec<&String> = delegations
                .iter()
                .filter(|(_, d)| d.name == role)
                .flat_map(|(_, d)| &d.keys.keyids)
                .collect();
            let releases_only_theirs = delegations
                .iter()
                .find(|(_, d)| d.name == "targets/releases")
                .is_some_and(|(_, d)| d.keys.keyids.iter().all(|id| own.contains(&id)));
            if releases_only_theirs && !data.targets_in("targets/releases").is_empty() {
                super::confirm(
                    yes,
                    &format!(
                        "The signer \"{name}\" signed the last released version of {}. Removing this \
                         signer will make {} unpullable with content trust.",
                        s.gun(),
                        s.gun()
                    ),
                    "yes",
                )?;
            }
            println!("Removing signer \"{name}\" from {}...", s.gun());
            rt.block_on(s.run(true, |r| {
                let name = name.clone();
                async move { r.remove_signer(&name).await }
            }))?;
            println!("Successfully removed {name} from {}", s.gun());
        }
    }
    Ok(())
}

fn sign(a: SignArgs) -> anyhow::Result<()> {
    let creds = credentials(&a.server)?;
    sign_with(a, creds)
}

/// `berth trust sign` with the caller's credentials already read (stdin is read once; `berth
/// import --sign` signs after its own requests).
pub(crate) fn sign_with(a: SignArgs, explicit: Option<Credentials>) -> anyhow::Result<()> {
    let reference = parse_reference(&a.reference, &a.server)?;
    let Some(tag) = reference.tag.as_ref().map(ToString::to_string) else {
        bail!(
            "{}: sign needs a tag (host[:port]/repository:tag)",
            a.reference
        );
    };
    if reference.digest.is_some() {
        bail!("{}: sign a tag, not a digest", a.reference);
    }
    let rt = runtime()?;
    let creds = with_login(explicit, &a.server, &reference)?;
    let registry = registry_for(&a.server, &reference, creds.clone())?;
    // Signing what the registry serves under the tag, as docker signs what it pushed.
    let desc = rt
        .block_on(registry.head_manifest(&reference.repo, &tag))
        .map_err(|e| explain(e, &format!("looking up {reference}")))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{reference} is not in the registry: push it first (berth push SOURCE {reference})"
            )
        })?;
    let s = Session::new(registry, creds, &reference);
    // Docker's `trust sign` on a repository without trust data creates a signer named after
    // the user, so the tag is signed by a person and not only by the repository key.
    if let Some(user) = s.username().map(str::to_owned)
        && validate_signer_name(&user).is_ok()
    {
        let exists = rt.block_on(s.run(false, |r| async move { r.fetch().await }))?;
        if exists.is_none() {
            let key = match s.keys().find(&user, None)?.first() {
                Some(info) => s.keys().load(&info.id)?.0,
                None => s.keys().generate(&user, None)?.0,
            };
            let public = vec![key.public_key().clone()];
            rt.block_on(s.run(true, |r| {
                let (user, public) = (user.clone(), public.clone());
                async move { r.add_signer(&user, &public).await }
            }))?;
            println!("Created signer: {user}");
            println!("Finished initializing signed repository for {}", s.gun());
        }
    }
    println!(
        "Signing and pushing trust data for {reference} ({}), may overwrite remote trust data",
        desc.digest
    );
    let (digest, size) = (desc.digest.to_string(), desc.size);
    let p = rt.block_on(s.run(true, |r| {
        let (tag, digest) = (tag.clone(), digest.clone());
        async move { r.sign(&tag, &digest, size).await }
    }))?;
    if p.initialized {
        println!("Finished initializing signed repository for {}", s.gun());
    }
    println!("Successfully signed {reference}");
    Ok(())
}

fn revoke(a: RevokeArgs) -> anyhow::Result<()> {
    let reference = parse_reference(&a.reference, &a.server)?;
    if reference.digest.is_some() {
        bail!(
            "{}: revoke a tag or a repository, not a digest",
            a.reference
        );
    }
    let tag = reference.tag.as_ref().map(ToString::to_string);
    let s = session(&a.server, &reference)?;
    if tag.is_none() {
        super::confirm(
            a.yes,
            &format!("This removes all signature data for {}.", s.gun()),
            "yes",
        )?;
    }
    runtime()?.block_on(s.run(true, |r| {
        let tag = tag.clone();
        async move { r.revoke(tag.as_deref()).await }
    }))?;
    match &tag {
        Some(_) => println!("Successfully deleted signature for {reference}"),
        None => println!("Successfully deleted all signature data for {}", s.gun()),
    }
    Ok(())
}

fn inspect(a: InspectArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    // Read once: --password-stdin cannot be read per repository.
    let creds = credentials(&a.server)?;
    let mut json = Vec::new();
    let mut failed = Vec::new();
    for r in &a.references {
        let reference = parse_reference(r, &a.server)?;
        let creds = with_login(creds.clone(), &a.server, &reference)?;
        let registry = registry_for(&a.server, &reference, creds.clone())?;
        let s = Session::new(registry, creds, &reference);
        match rt.block_on(s.run(false, |r| async move { r.tuf().update().await })) {
            Ok(data) if a.pretty => print!(
                "{}",
                inspect_pretty(&data, reference.tag.as_ref().map(|t| t.as_str()))
            ),
            Ok(data) => {
                let mut v = inspect_json(&data);
                if let (Some(tag), Some(tags)) = (&reference.tag, v["SignedTags"].as_array_mut()) {
                    tags.retain(|t| t["SignedTag"] == tag.as_str());
                }
                json.push(v);
            }
            Err(e) => {
                eprintln!("berth: no signatures or cannot access {r}: {e:#}");
                failed.push(r.clone());
            }
        }
    }
    if !a.pretty {
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    if !failed.is_empty() {
        bail!("no trust data for {}", failed.join(", "));
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
