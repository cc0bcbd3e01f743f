//! Command-line flags as clap sees them (raw); `config` resolves them into settings.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub use crate::api::ServerArgs;

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "A container registry with Docker Content Trust built in"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The command line as users see it: every environment fallback is shown as `[env: NAME]`
/// without its current value (values would make help output differ per shell, and may be
/// private).
pub fn command() -> clap::Command {
    fn hide_values(c: clap::Command) -> clap::Command {
        c.mut_args(|a| a.hide_env_values(true))
            .mut_subcommands(hide_values)
    }
    hide_values(Cli::command())
}

/// Parses the process's arguments with [`command`]; exits with clap's message on bad input.
pub fn parse() -> Cli {
    Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit())
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the registry (OCI distribution API) on one HTTPS port.
    ///
    /// Every flag also reads the environment variable shown with it and the TOML config file;
    /// a flag wins over the environment, which wins over the file, which wins over the default.
    Serve(Box<ServeArgs>),
    /// Registry-wide settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Docker Content Trust administration.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Log in to a registry; keeps a refresh token (never the password), and the --ca-file
    /// given, for later calls.
    Login(crate::cmd::admin::LoginArgs),
    /// Forget the login (refresh token and CA) `berth login` stored for a registry.
    Logout(crate::cmd::admin::LogoutArgs),
    /// Users.
    #[command(subcommand)]
    User(crate::cmd::admin::UserCommand),
    /// Service principals (generated id + secret).
    #[command(subcommand)]
    Sp(crate::cmd::admin::SpCommand),
    /// Work on a stopped server's data dir (recovering a lost owner password).
    #[command(subcommand)]
    Admin(crate::cmd::recovery::AdminCommand),
    /// The shared admin account (off by default; it can never sign).
    #[command(subcommand, name = "admin-user")]
    AdminUser(crate::cmd::admin::AdminUserCommand),
    /// Role assignments (AcrPull, AcrPush, AcrDelete, AcrImageSigner, Owner, MetricsReader).
    #[command(subcommand)]
    Role(crate::cmd::admin::RoleCommand),
    /// Scope maps for repository-scoped tokens.
    #[command(subcommand, name = "scope-map")]
    ScopeMap(crate::cmd::admin::ScopeMapCommand),
    /// Repository-scoped tokens.
    #[command(subcommand)]
    Token(crate::cmd::admin::TokenCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(crate::cmd::admin::AuditCommand),
    /// Repositories: list them, show tags (with signers), delete.
    #[command(subcommand)]
    Repository(crate::cmd::repository::RepositoryCommand),
    /// Push an image from an OCI layout or a docker-save archive to a registry.
    Push(crate::cmd::push::PushArgs),
    /// Pull an image into an OCI layout, verifying every digest.
    Pull(crate::cmd::pull::PullArgs),
    /// Sign an image's manifest: a Notary Project signature (--format notation) pushed as an
    /// OCI referrer of it.
    Sign(crate::cmd::notation::SignArgs),
    /// Verify an image's Notary Project signatures (found through the referrers API) under a
    /// Notary Project trust policy and trust store, and with --cosign-key its cosign signatures;
    /// exit status 0 only when one verifies.
    Verify(crate::cmd::notation::VerifyArgs),
    /// Copy an image from another registry into this one, on the server (tags or digests,
    /// multi-arch, with --with-signatures its signatures; --sign re-signs with DCT here).
    Import(crate::cmd::import::ImportArgs),
    /// The registry's store, offline (migrating a single-node registry into a cluster).
    #[command(subcommand)]
    Store(crate::cmd::store::StoreCommand),
    /// Back up an embedded store while its server runs: a consistent copy of the database, the
    /// blobs, the TLS material and the trust-key passphrase file, checked by BACKUP.json.
    Backup(crate::cmd::backup::BackupArgs),
    /// Put a backup back on a STOPPED server's data dir, after checking every file of it.
    Restore(crate::cmd::backup::RestoreArgs),
    /// Garbage collection now, on a running server: blobs no manifest references, abandoned
    /// uploads, and with --untagged manifests no tag reaches. Safe while pushes go on.
    Gc(crate::cmd::gc::GcArgs),
    /// Webhooks: push, delete, trust and policy events POSTed (signed) to a receiver.
    #[command(subcommand)]
    Webhook(crate::cmd::webhook::WebhookCommand),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// The registry-wide content-trust switch (off by default).
    #[command(subcommand, name = "content-trust")]
    ContentTrust(ContentTrustCommand),
    /// The registry-wide anonymous-pull switch (off by default).
    #[command(subcommand, name = "anonymous-pull")]
    AnonymousPull(AnonymousPullCommand),
    /// Signing policy enforced by the server, registry-wide and per repository (off by
    /// default): signed-pulls-only, immutable-signed-tags.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Registry attestation (off by default): when a DCT update of a repository with it on is
    /// accepted, the registry attaches to each newly signed tag's manifest a Notary Project
    /// signature, made with the registry's key, recording the TUF targets entry.
    #[command(subcommand)]
    Attestation(AttestationCommand),
}

#[derive(Subcommand, Debug)]
pub enum AttestationCommand {
    /// Print the default and every repository's switch, or (with REPO) what applies to one.
    Show {
        /// `host[:port]/repository` (the host selects the server) or a repository name.
        repo: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Turn attestation on for a repository, or for every repository that does not set its
    /// own switch (--default).
    #[command(group(clap::ArgGroup::new("scope").required(true).args(["repo", "default"])))]
    Enable {
        /// `host[:port]/repository` or a repository name.
        repo: Option<String>,
        /// Change the registry-wide default instead of one repository's switch.
        #[arg(long)]
        default: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Turn attestation off for a repository, or the registry-wide default (--default).
    /// Attestations already attached stay.
    #[command(group(clap::ArgGroup::new("scope").required(true).args(["repo", "default"])))]
    Disable {
        /// `host[:port]/repository` or a repository name.
        repo: Option<String>,
        /// Change the registry-wide default instead of one repository's switch.
        #[arg(long)]
        default: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Let a repository follow the registry-wide default again.
    Reset {
        /// `host[:port]/repository` or a repository name.
        repo: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print the registry key's certificate (PEM), for a Notary Project trust store (e.g.
    /// `$XDG_CONFIG_HOME/notation/truststore/x509/ca/berth/`). Any logged-in user may.
    Certificate {
        /// Write it to FILE instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<std::path::PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Print the default and every repository's policy, or (with REPO) what applies to one
    /// repository and what it sets itself.
    Show {
        /// `host[:port]/repository` (the host selects the server) or a repository name.
        repo: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Change a repository's policy, or the registry-wide default (--default). A repository's
    /// setting overrides the default's, one rule at a time; a rule it never set follows the
    /// default.
    #[command(group(clap::ArgGroup::new("rules").required(true).multiple(true)
        .args(["signed_pulls_only", "immutable_signed_tags", "accept", "trust_policy",
               "trust_store", "cosign_key"])))]
    #[command(group(clap::ArgGroup::new("scope").required(true).args(["repo", "default"])))]
    Update {
        /// `host[:port]/repository` or a repository name.
        repo: Option<String>,
        /// Change the registry-wide default instead of one repository's policy.
        #[arg(long)]
        default: bool,
        /// true: a manifest pull by tag needs valid trust data for exactly the digest the tag
        /// points to, and one by digest a valid signed tag (or signed index) naming it.
        #[arg(long, action = clap::ArgAction::Set, value_name = "BOOL")]
        signed_pulls_only: Option<bool>,
        /// true: a push cannot point a tag with valid trust data at another digest (sign the
        /// new digest, or revoke the signature, first).
        #[arg(long, action = clap::ArgAction::Set, value_name = "BOOL")]
        immutable_signed_tags: Option<bool>,
        /// The signature formats signed-pulls-only accepts, comma-separated: dct, notation
        /// (Notary Project signatures valid under --trust-policy), cosign (by a --cosign-key);
        /// `default` follows the registry-wide default (dct when nothing is set).
        #[arg(long, value_name = "FORMATS")]
        accept: Option<String>,
        /// A Notary Project trust policy (trustpolicy.json) for notation signatures.
        #[arg(long, value_name = "FILE")]
        trust_policy: Option<std::path::PathBuf>,
        /// A Notary Project trust store directory (x509/ca/NAME/*.pem,
        /// x509/signingAuthority/NAME/*.pem), as the trust policy's trustStores name them.
        #[arg(long, value_name = "DIR")]
        trust_store: Option<std::path::PathBuf>,
        /// A cosign public key (PEM) whose signatures count; repeatable, replaces the list.
        #[arg(long, value_name = "PUB")]
        cosign_key: Vec<std::path::PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum AnonymousPullCommand {
    /// Print whether anonymous pull is enabled.
    Show(ServerArgs),
    /// Let anyone pull without credentials (true), or require a login again (false).
    Update {
        /// true: pulls need no credentials; false: they do.
        #[arg(long, action = clap::ArgAction::Set, value_name = "BOOL")]
        enabled: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ContentTrustCommand {
    /// Print whether content trust is enabled.
    Show(ServerArgs),
    /// Enable or disable content trust. Disabling DELETES ALL TRUST DATA of every repository,
    /// irreversibly (images stay).
    Update {
        /// `enabled` or `disabled` (disabling asks for confirmation unless --yes).
        #[arg(long, value_parser = ["enabled", "disabled"])]
        status: String,
        /// Confirm disabling without a prompt.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TrustCommand {
    /// Signing keys in docker's key store ($DOCKER_CONFIG/trust/private).
    #[command(subcommand)]
    Key(crate::cmd::trust::KeyCommand),
    /// Signers of a repository (delegations, as `docker trust signer`).
    #[command(subcommand)]
    Signer(crate::cmd::trust::SignerCommand),
    /// Sign a tag that is in the registry (initialises the repository's trust data if needed).
    Sign(crate::cmd::trust::SignArgs),
    /// Remove the signature of a tag, or of every tag of a repository.
    Revoke(crate::cmd::trust::RevokeArgs),
    /// Signed tags, signers and keys of repositories (docker trust inspect's JSON).
    Inspect(crate::cmd::trust::InspectArgs),
    /// Re-sign every DCT-signed tag whose signature verifies as a Notary Project signature
    /// (a referrer, recording the DCT roles and keys in annotations); reports each tag.
    Migrate(crate::cmd::migrate::MigrateArgs),
    /// Wipe one repository's trust data (e.g. after losing its root key); images stay.
    Reset {
        /// `host[:port]/repository`, as docker names it (the host selects the server).
        repo: String,
        /// Confirm without a prompt.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

// Every flag also reads `BERTH_<FLAG>` and the TOML config file; flag > env > file > default.
// (Not a doc comment: clap would show it as `serve`'s description.)
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML config file. Keys: data_dir, listen, metrics_listen, hostname, tls_cert, tls_key, insecure_http,
    /// auth_disabled, audit_every_token, and a [limits] table: max_connections, header_timeout, idle_timeout,
    /// body_timeout, send_timeout, uploads_per_identity, sessions_per_identity (timeouts in
    /// seconds), and a [store] table: kind, postgres_url, s3_endpoint, s3_bucket, s3_region,
    /// s3_access_key_id, s3_secret_access_key, s3_path_style, s3_prefix, redirect, and a [gc]
    /// table: interval, grace (seconds), untagged. packaging/berth.toml in the source is an example with every default.
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where blobs, metadata and generated TLS material live [default: $STATE_DIRECTORY when
    /// systemd sets it (StateDirectory=), else ./berth-data; the start-up log names it].
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port [default: 0.0.0.0:5000].
    #[arg(long, env = "BERTH_LISTEN")]
    pub listen: Option<String>,
    /// Also serve /metrics (Prometheus text, plain HTTP, no authentication) on this address,
    /// e.g. 127.0.0.1:9100; the main port serves it to callers with MetricsReader or Owner.
    #[arg(long, env = "BERTH_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Extra host name for the generated server certificate (and, later, token realms).
    #[arg(long, env = "BERTH_HOSTNAME")]
    pub hostname: Option<String>,
    /// PEM certificate chain to serve instead of the generated one.
    #[arg(long, env = "BERTH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "BERTH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP (only behind a TLS-terminating proxy).
    #[arg(long, env = "BERTH_INSECURE_HTTP", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub insecure_http: bool,
    /// Turn authentication off: every caller is an Owner. Only for throwaway test setups.
    #[arg(long, env = "BERTH_AUTH_DISABLED")]
    pub auth_disabled: bool,
    /// Audit every successful token issue in its own row (by default one row per identity and
    /// hour counts them).
    #[arg(long, env = "BERTH_AUDIT_EVERY_TOKEN")]
    pub audit_every_token: bool,
    /// Connections served at once; more get 503 and are closed [default: 4096].
    #[arg(long, env = "BERTH_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a client may take to send one request's headers [default: 30].
    #[arg(long, env = "BERTH_HEADER_TIMEOUT")]
    pub header_timeout: Option<u64>,
    /// Seconds a connection may sit with no request in flight before it is closed [default: 120].
    #[arg(long, env = "BERTH_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u64>,
    /// Seconds a request body may deliver nothing before the request fails with 408 [default: 60].
    #[arg(long, env = "BERTH_BODY_TIMEOUT")]
    pub body_timeout: Option<u64>,
    /// Seconds a client may take nothing we send before it is disconnected [default: 120].
    #[arg(long, env = "BERTH_SEND_TIMEOUT")]
    pub send_timeout: Option<u64>,
    /// Blob bodies one identity may stream at once; more get 429 [default: 64].
    #[arg(long, env = "BERTH_UPLOADS_PER_IDENTITY")]
    pub uploads_per_identity: Option<usize>,
    /// Upload sessions one identity may hold open; more get 429 [default: 256].
    #[arg(long, env = "BERTH_SESSIONS_PER_IDENTITY")]
    pub sessions_per_identity: Option<usize>,
    /// Storage backend: `embedded` (files + SQLite in the data dir) or `distributed`
    /// (PostgreSQL + S3, for several nodes; the PostgreSQL URL and the S3 secret come only from
    /// the environment (BERTH_POSTGRES_URL, BERTH_S3_SECRET_ACCESS_KEY) or the [store] table:
    /// postgres_url, s3_secret_access_key) [default: embedded].
    #[arg(long, env = "BERTH_STORE", value_name = "KIND")]
    pub store: Option<String>,
    /// Distributed store: the S3 API's URL, `http(s)://host[:port]` ([store] s3_endpoint).
    #[arg(long, env = "BERTH_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Distributed store: the bucket holding the blobs ([store] s3_bucket).
    #[arg(long, env = "BERTH_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Distributed store: the bucket's region ([store] s3_region) [default: us-east-1].
    #[arg(long, env = "BERTH_S3_REGION")]
    pub s3_region: Option<String>,
    /// Distributed store: the S3 access key id ([store] s3_access_key_id).
    #[arg(long, env = "BERTH_S3_ACCESS_KEY_ID", value_name = "ID")]
    pub s3_access_key_id: Option<String>,
    /// Distributed store: path-style addressing, host/bucket/key (true), or the bucket as a
    /// host name, bucket.host/key (false) ([store] s3_path_style) [default: true].
    #[arg(long, env = "BERTH_S3_PATH_STYLE", value_name = "BOOL", action = clap::ArgAction::Set)]
    pub s3_path_style: Option<bool>,
    /// Distributed store: a key prefix, so several registries share one bucket
    /// ([store] s3_prefix) [default: none].
    #[arg(long, env = "BERTH_S3_PREFIX", value_name = "PREFIX")]
    pub s3_prefix: Option<String>,
    /// Distributed store: answer blob downloads with a redirect to a short-lived presigned S3
    /// URL, after authorization ([store] redirect) [default: false].
    #[arg(long, env = "BERTH_S3_REDIRECT", value_name = "BOOL", action = clap::ArgAction::Set)]
    pub s3_redirect: Option<bool>,
    /// Seconds between scheduled garbage collections; 0 turns the schedule off (`berth gc`
    /// still runs one) ([gc] interval) [default: 0].
    #[arg(long, env = "BERTH_GC_INTERVAL", value_name = "SECS")]
    pub gc_interval: Option<u64>,
    /// Seconds garbage collection leaves anything pushed, uploaded or mounted alone: longer
    /// than any push takes from its first blob to its manifest ([gc] grace) [default: 86400].
    #[arg(long, env = "BERTH_GC_GRACE", value_name = "SECS")]
    pub gc_grace: Option<u64>,
    /// Scheduled collections also delete manifests no tag reaches, except signed ones
    /// ([gc] untagged).
    #[arg(long, env = "BERTH_GC_UNTAGGED")]
    pub gc_untagged: bool,
    /// Webhook events queued at most; beyond it the oldest are dropped
    /// ([webhooks] max_pending) [default: 10000].
    #[arg(long, env = "BERTH_WEBHOOK_MAX_PENDING", value_name = "N")]
    pub webhook_max_pending: Option<u64>,
    /// A webhook delivery is given up after this many attempts ([webhooks] max_attempts)
    /// [default: 300].
    #[arg(long, env = "BERTH_WEBHOOK_MAX_ATTEMPTS", value_name = "N")]
    pub webhook_max_attempts: Option<u32>,
    /// A webhook delivery is given up once this many seconds old ([webhooks] max_age)
    /// [default: 86400].
    #[arg(long, env = "BERTH_WEBHOOK_MAX_AGE", value_name = "SECS")]
    pub webhook_max_age: Option<u64>,
    /// Extra CA certificates (PEM) trusted for https webhook receivers, beside the system
    /// roots ([webhooks] ca_file).
    #[arg(long, env = "BERTH_WEBHOOK_CA_FILE", value_name = "FILE")]
    pub webhook_ca_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `berth ARGS… --help` exactly as a user sees it (100 columns).
    fn help(path: &[&str]) -> String {
        let mut argv = vec!["berth"];
        argv.extend_from_slice(path);
        argv.push("--help");
        let err = command()
            .term_width(100)
            .try_get_matches_from(argv)
            .expect_err("--help stops parsing");
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        err.render().to_string()
    }

    /// Every subcommand's path below `cmd` (clap's own `help` subcommands aside).
    fn paths(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let mut p = prefix.to_vec();
            p.push(sub.get_name().to_owned());
            paths(sub, &p, out);
            out.push(p);
        }
    }

    /// Walks the whole command tree, so verbs added later are held to the same rules: each has
    /// its own description, every argument says what it is, and no environment variable is
    /// shown twice (or with its value).
    #[test]
    fn every_verb_and_argument_explains_itself() {
        let root = command();
        let mut all = Vec::new();
        paths(&root, &[], &mut all);
        assert!(all.len() > 40, "{} subcommands", all.len());
        let mut problems = Vec::new();
        for path in &all {
            let mut cmd = &root;
            for name in path {
                cmd = cmd.find_subcommand(name).expect("a subcommand on the path");
            }
            let verb = format!("berth {}", path.join(" "));
            match cmd.get_about().map(ToString::to_string) {
                None => problems.push(format!("{verb}: no description")),
                Some(a) if a.trim().is_empty() => {
                    problems.push(format!("{verb}: empty description"))
                }
                Some(a) if a.contains("Connection flags") || a.contains("not a doc comment") => {
                    problems.push(format!(
                        "{verb}: a flattened struct's comment as description: {a}"
                    ))
                }
                Some(_) => {}
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    problems.push(format!("{verb}: argument {id} has no description"));
                }
            }
            let text = help(&path.iter().map(String::as_str).collect::<Vec<_>>());
            // Wrapping may break "[env: NAME]" over two lines.
            let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
            for arg in cmd.get_arguments() {
                if let Some(env) = arg.get_env() {
                    let shown = format!("[env: {}]", env.to_string_lossy());
                    let n = flat.matches(&shown).count();
                    if n != 1 {
                        problems.push(format!("{verb}: {shown} shown {n} times"));
                    }
                }
            }
            let envs = cmd
                .get_arguments()
                .filter(|a| a.get_env().is_some())
                .count();
            if flat.matches("[env:").count() != envs {
                problems.push(format!(
                    "{verb}: an environment variable shown twice:\n{text}"
                ));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn user_create_help_names_both_passwords() {
        let expected = "\
Create a user; without --new-password-stdin its password is generated and printed once

Usage: berth user create [OPTIONS] <NAME>

Arguments:
  <NAME>  The new user's name (1 to 64 letters, digits, '.', '_', '-', '@')

Options:
      --new-password-stdin  Read the NEW user's password from standard input (without it, one is
                            generated and printed once). The caller's own password is
                            --password-stdin or BERTH_PASSWORD
      --server <URL>        Registry URL, e.g. https://localhost:5000 (default: the host named in
                            REF or REPO, else https://localhost:5000) [env: BERTH_SERVER]
      --ca-file <FILE>      CA certificate (PEM) to trust for the server's TLS certificate. When
                            absent: the one `berth login --ca-file` stored for the server, else
                            ~/.docker/tls/<host:port>/ca.crt if it exists, else the system roots
                            [env: BERTH_CA_FILE]
  -u, --username <USER>     User name (or service principal id, or token name) to authenticate as;
                            without it, the login `berth login` stored for this server is used [env:
                            BERTH_USERNAME]
      --password-stdin      Read the password of -u/--username (the caller's own) from standard
                            input; without it, from the environment variable BERTH_PASSWORD
  -h, --help                Print help
";
        assert_eq!(help(&["user", "create"]), expected);
    }

    #[test]
    fn serve_help_documents_every_setting() {
        let h = help(&["serve"]);
        for key in [
            "data_dir",
            "listen",
            "metrics_listen",
            "hostname",
            "tls_cert",
            "tls_key",
            "insecure_http",
            "auth_disabled",
            "audit_every_token",
            "[limits]",
            "max_connections",
            "header_timeout",
            "idle_timeout",
            "body_timeout",
            "send_timeout",
            "uploads_per_identity",
            "sessions_per_identity",
            "[store]",
            "postgres_url",
            "s3_secret_access_key",
            "STATE_DIRECTORY",
            "packaging/berth.toml",
        ] {
            assert!(h.contains(key), "{key} missing from serve --help:\n{h}");
        }
        let serve = command();
        let serve = serve.find_subcommand("serve").unwrap();
        for arg in serve.get_arguments() {
            if let Some(long) = arg.get_long().filter(|l| *l != "help") {
                let env = format!("BERTH_{}", long.to_uppercase().replace('-', "_"));
                assert!(h.contains(&format!("--{long}")), "--{long}:\n{h}");
                assert!(h.contains(&env), "{env}:\n{h}");
            }
        }
    }

    #[test]
    fn user_help_describes_each_verb() {
        let expected = "\
Users

Usage: berth user <COMMAND>

Commands:
  create    Create a user; without --new-password-stdin its password is generated and printed once
  list      List users
  delete    Delete a user
  password  Set a user's password (an Owner: any user's; a user: its own, with the current one)
  disable   Disable a user: it cannot log in until it is enabled again
  enable    Enable a disabled user
  help      Print this message or the help of the given subcommand(s)

Options:
  -h, --help  Print help
";
        assert_eq!(help(&["user"]), expected);
    }
}
