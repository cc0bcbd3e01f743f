//! Command-line flags as clap sees them (raw); `config` resolves them into settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the registry (OCI distribution API) on one HTTPS port.
    Serve(ServeArgs),
    /// Registry-wide settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Docker Content Trust administration.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Log in to a registry; keeps a refresh token (never the password) for later calls.
    Login(crate::cmd::admin::LoginArgs),
    /// Users.
    #[command(subcommand)]
    User(crate::cmd::admin::UserCommand),
    /// Service principals (generated id + secret).
    #[command(subcommand)]
    Sp(crate::cmd::admin::SpCommand),
    /// The shared admin account (off by default; it can never sign).
    #[command(subcommand, name = "admin-user")]
    AdminUser(crate::cmd::admin::AdminUserCommand),
    /// Role assignments (AcrPull, AcrPush, AcrDelete, AcrImageSigner, Owner).
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
    /// Push an image from an OCI layout or a docker-save archive to a registry.
    Push(crate::cmd::push::PushArgs),
    /// Pull an image into an OCI layout, verifying every digest.
    Pull(crate::cmd::pull::PullArgs),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// The registry-wide content-trust switch (off by default).
    #[command(subcommand, name = "content-trust")]
    ContentTrust(ContentTrustCommand),
    /// The registry-wide anonymous-pull switch (off by default).
    #[command(subcommand, name = "anonymous-pull")]
    AnonymousPull(AnonymousPullCommand),
}

#[derive(Subcommand, Debug)]
pub enum AnonymousPullCommand {
    Show(ServerArgs),
    Update {
        #[arg(long, action = clap::ArgAction::Set)]
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

/// Every flag also reads `BERTH_<FLAG>` and the TOML config file; flag > env > file > default.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML config file (keys: data_dir, listen, hostname, tls_cert, tls_key, insecure_http, and a
    /// [limits] table with the limit flags' names in snake_case, timeouts in seconds).
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where blobs, metadata and generated TLS material live [default: ./berth-data].
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port [default: 0.0.0.0:5000].
    #[arg(long, env = "BERTH_LISTEN")]
    pub listen: Option<String>,
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
}
