//! `berth import SRC_REF DST_REF`: the server copies an image from another registry
//! (`POST /api/v1/import/<repo>`, routes::import); with `--sign` this client then signs the
//! imported tag with the caller's Docker Content Trust keys, as `berth trust sign` does.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use berth_client::Credentials;
use clap::Args;
use serde_json::json;

use super::transfer::{credentials, parse_reference};
use crate::api::{Api, ServerArgs};

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The image on the other registry: host[:port]/repository[:tag|@digest].
    #[arg(name = "SRC_REF")]
    pub source: String,
    /// Where it goes in this registry: host[:port]/repository[:tag] (without a tag: the
    /// source's tag; a source named by digest is then stored untagged).
    #[arg(name = "DST_REF")]
    pub destination: String,
    /// Also copy the signatures of every copied manifest: its referrers (the referrers API, or
    /// the sha256-<hex> tag schema where the source has none) and cosign's sha256-<hex>.sig and
    /// .att tags. Digests are kept, so the signatures verify at the destination.
    #[arg(long)]
    pub with_signatures: bool,
    /// After the import, sign the destination tag with Docker Content Trust using your local
    /// keys, as `berth trust sign DST_REF` does (DCT signatures cannot be copied: they name the
    /// source's repository).
    #[arg(long)]
    pub sign: bool,
    /// User name for the source registry (Basic or the Docker token flow).
    #[arg(long, env = "BERTH_SOURCE_USERNAME", value_name = "USER")]
    pub source_username: Option<String>,
    /// Read the source password from standard input; without it, from BERTH_SOURCE_PASSWORD.
    /// The server uses it for this import only and never stores or logs it.
    #[arg(long)]
    pub source_password_stdin: bool,
    /// A CA certificate (PEM) the server trusts for the source, beside the system roots.
    #[arg(long, value_name = "FILE")]
    pub source_ca: Option<PathBuf>,
    /// Reach the source over plain HTTP (never the default; for a registry without TLS).
    #[arg(long)]
    pub source_insecure_http: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// How long the CLI waits for the server (whose own limit is an hour).
const WAIT: Duration = Duration::from_secs(65 * 60);

fn source_credentials(a: &ImportArgs) -> anyhow::Result<Option<Credentials>> {
    let password = if a.source_password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the source password from standard input")?;
        Some(s.trim_end_matches(['\r', '\n']).to_owned())
    } else {
        std::env::var("BERTH_SOURCE_PASSWORD").ok()
    };
    match (&a.source_username, password) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.clone(),
            password: p,
        })),
        (Some(u), None) => bail!(
            "a source user name ({u}) without a password: pass --source-password-stdin or set BERTH_SOURCE_PASSWORD"
        ),
        (None, Some(_)) if a.source_password_stdin => {
            bail!("--source-password-stdin needs --source-username")
        }
        _ => Ok(None),
    }
}

pub fn run(a: ImportArgs) -> anyhow::Result<()> {
    if a.source_password_stdin && a.server.password_stdin {
        bail!(
            "--password-stdin and --source-password-stdin both read standard input: pass one password in BERTH_PASSWORD or BERTH_SOURCE_PASSWORD instead"
        );
    }
    let dst = parse_reference(&a.destination, &a.server)?;
    if dst.digest.is_some() {
        bail!(
            "{}: name the destination by repository[:tag]; its digest is the source's",
            a.destination
        );
    }
    let src = berth_client::Reference::parse_with_default(&a.source, None)
        .map_err(|e| super::transfer::explain(e, "reading SRC_REF"))?;
    if a.sign && dst.tag.is_none() && (src.tag.is_none() || src.digest.is_some()) {
        bail!("--sign needs a tag to sign: give DST_REF a tag");
    }
    let source_ca = match &a.source_ca {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading --source-ca {}", f.display()))?,
        ),
        None => None,
    };
    let source_creds = source_credentials(&a)?;
    let creds = credentials(&a.server)?;
    let scope = format!("repository:{}:pull,push", dst.repo);
    let api = Api::new_with_credentials(
        &a.server,
        Some(dst.registry.clone()),
        creds.as_ref(),
        &scope,
    )?;
    let mut body = json!({
        "source": a.source,
        "withSignatures": a.with_signatures,
        "sourceInsecureHttp": a.source_insecure_http,
    });
    if let Some(t) = &dst.tag {
        body["tag"] = json!(t.as_str());
    }
    if let Some(c) = &source_creds {
        body["sourceUsername"] = json!(c.username);
        body["sourcePassword"] = json!(c.password);
    }
    if let Some(ca) = source_ca {
        body["sourceCa"] = json!(ca);
    }
    let out = api
        .post_waiting(&format!("import/{}", dst.repo), &body, WAIT)
        .map_err(|e| anyhow::anyhow!("importing {} into {}: {e}", a.source, dst.repo))?;
    let digest = out["digest"].as_str().unwrap_or_default();
    let tag = out["tag"].as_str();
    let name = match tag {
        Some(t) => format!("{}/{}:{t}", dst.registry, dst.repo),
        None => format!("{}/{}@{digest}", dst.registry, dst.repo),
    };
    println!(
        "Imported {} as {name} ({digest}): {} manifests, {} signatures, {} blobs copied ({} bytes), {} already present",
        a.source,
        out["manifests"],
        out["signatures"],
        out["blobsCopied"],
        out["bytesCopied"],
        out["blobsPresent"]
    );
    for t in out["signatureTags"].as_array().into_iter().flatten() {
        println!("Signature tag: {}", t.as_str().unwrap_or_default());
    }
    if a.sign {
        let Some(t) = tag else {
            bail!(
                "--sign: the import set no tag to sign (the source was named by digest and DST_REF has no tag)"
            );
        };
        super::trust::sign_with(
            super::trust::SignArgs {
                reference: format!("{}/{}:{t}", dst.registry, dst.repo),
                server: a.server.clone(),
            },
            creds,
        )?;
    }
    Ok(())
}
