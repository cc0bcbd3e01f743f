//! `berth webhook create | list | delete`: registry events POSTed to a receiver.

use std::io::Read;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::api::{Api, ServerArgs};

#[derive(Subcommand, Debug)]
pub enum WebhookCommand {
    /// Create a webhook: events of the chosen kinds are POSTed to URI as JSON (docker
    /// distribution's notification shape), signed with HMAC-SHA256 in X-Berth-Signature.
    /// Without --secret-stdin a secret is generated and printed once.
    Create(CreateArgs),
    /// List webhooks with their delivery counts and last error (never their secrets).
    List {
        /// Print the JSON the server answered instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a webhook and the events queued for it.
    Delete {
        /// The webhook to delete.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The webhook's name (letters, digits, '.', '_', '-').
    pub name: String,
    /// The receiver's URL (http or https; no credentials in it).
    #[arg(long, value_name = "URL")]
    pub uri: String,
    /// Events to send: push, delete, trust, policy (comma-separated or repeated).
    #[arg(long, value_name = "ACTIONS", value_delimiter = ',', required = true)]
    pub actions: Vec<String>,
    /// Only events of these repositories (`team/app`, or `team/*` for every repository under
    /// team/); repeatable. Without it: every repository.
    #[arg(long, value_name = "REPO", num_args = 1..)]
    pub scope: Vec<String>,
    /// Read the signing secret (16 to 1024 bytes) from standard input instead of generating
    /// one.
    #[arg(long)]
    pub secret_stdin: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(c: WebhookCommand) -> anyhow::Result<()> {
    match c {
        WebhookCommand::Create(a) => create(a),
        WebhookCommand::List { json, server } => {
            let v = Api::new(&server, None)?.get("webhooks")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_table(&v);
            }
            Ok(())
        }
        WebhookCommand::Delete { name, server } => {
            Api::new(&server, None)?.delete(&format!("webhooks/{name}"))?;
            println!("deleted webhook {name}");
            Ok(())
        }
    }
}

fn create(a: CreateArgs) -> anyhow::Result<()> {
    if a.secret_stdin && a.server.password_stdin {
        bail!(
            "--secret-stdin and --password-stdin both read standard input: log in first (berth login) or use BERTH_PASSWORD"
        );
    }
    let mut body = json!({
        "name": a.name,
        "uri": a.uri,
        "actions": a.actions.iter().map(|s| s.trim()).collect::<Vec<_>>(),
        "scopes": a.scope,
    });
    if a.secret_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the secret from standard input")?;
        let secret = s.trim_end_matches(['\n', '\r']);
        if secret.is_empty() {
            bail!("empty secret on standard input");
        }
        body["secret"] = json!(secret);
    }
    let v = Api::new(&a.server, None)?.post("webhooks", &body)?;
    let scopes = list_text(&v["scopes"]);
    println!(
        "created webhook {} -> {} for {} on {}",
        v["name"].as_str().unwrap_or(""),
        v["uri"].as_str().unwrap_or(""),
        list_text(&v["actions"]),
        if scopes.is_empty() {
            "every repository".to_owned()
        } else {
            scopes
        }
    );
    if let Some(secret) = v["secret"].as_str() {
        println!(
            "Its signing secret, shown only this once (receivers check X-Berth-Signature: sha256=HMAC-SHA256(secret, body)):\n  {secret}"
        );
    }
    Ok(())
}

fn list_text(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn print_table(v: &Value) {
    let empty = Vec::new();
    let rows = v.as_array().unwrap_or(&empty);
    if rows.is_empty() {
        println!("no webhooks");
        return;
    }
    println!(
        "{:<20} {:<22} {:<28} {:>9} {:>6} {:>7}  URI / LAST ERROR",
        "NAME", "ACTIONS", "SCOPES", "DELIVERED", "FAILED", "PENDING"
    );
    for r in rows {
        let scopes = list_text(&r["scopes"]);
        println!(
            "{:<20} {:<22} {:<28} {:>9} {:>6} {:>7}  {}",
            r["name"].as_str().unwrap_or(""),
            list_text(&r["actions"]),
            if scopes.is_empty() { "*" } else { &scopes },
            r["delivered"].as_u64().unwrap_or(0),
            r["failed"].as_u64().unwrap_or(0),
            r["pending"].as_u64().unwrap_or(0),
            r["uri"].as_str().unwrap_or("")
        );
        if let Some(e) = r["lastError"].as_str() {
            println!("{:<20} last error: {e}", "");
        }
    }
}
