//! Resolved settings for `berth serve`: flags and environment (through clap) over the config file
//! over defaults.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::args::ServeArgs;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    metrics_listen: Option<String>,
    hostname: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    insecure_http: Option<bool>,
    auth_disabled: Option<bool>,
    audit_every_token: Option<bool>,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    store: FileStore,
    #[serde(default)]
    gc: FileGc,
    #[serde(default)]
    webhooks: FileWebhooks,
}

/// `[webhooks]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebhooks {
    max_pending: Option<u64>,
    max_attempts: Option<u32>,
    max_age: Option<u64>,
    ca_file: Option<PathBuf>,
}

fn resolve_webhooks(
    a: &ServeArgs,
    f: &FileWebhooks,
) -> anyhow::Result<berth_server::webhooks::WebhookOptions> {
    let d = berth_server::webhooks::WebhookOptions::default();
    let max_pending = a
        .webhook_max_pending
        .or(f.max_pending)
        .unwrap_or(d.max_pending);
    if max_pending == 0 {
        bail!("webhooks max_pending must be at least 1");
    }
    let max_attempts = a
        .webhook_max_attempts
        .or(f.max_attempts)
        .unwrap_or(d.max_attempts);
    if max_attempts == 0 {
        bail!("webhooks max_attempts must be at least 1");
    }
    let max_age = match a.webhook_max_age.or(f.max_age) {
        None => d.max_age,
        Some(0) => bail!("webhooks max_age must be at least 1 second"),
        Some(n) => Duration::from_secs(n),
    };
    Ok(berth_server::webhooks::WebhookOptions {
        max_pending,
        max_attempts,
        max_age,
        ca_file: a.webhook_ca_file.clone().or_else(|| f.ca_file.clone()),
        ..d
    })
}

/// `[gc]` in the config file; times in seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGc {
    interval: Option<u64>,
    grace: Option<u64>,
    untagged: Option<bool>,
}

/// Garbage collection on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcConfig {
    /// Collect on this schedule; `None`: only when asked (`berth gc`).
    pub interval: Option<Duration>,
    /// Nothing pushed, pinned or mounted more recently is collected.
    pub grace: Duration,
    /// Scheduled runs also delete manifests no tag reaches (never signed ones).
    pub untagged: bool,
}

/// Default grace: a day, as long as an upload session may stay open, so no push in progress
/// (first blob to manifest) can lose a blob it uploaded.
pub const GC_GRACE_DEFAULT: Duration = Duration::from_secs(24 * 3600);

fn resolve_gc(a: &ServeArgs, f: &FileGc) -> anyhow::Result<GcConfig> {
    let interval = match a.gc_interval.or(f.interval) {
        None | Some(0) => None,
        Some(n) if n < 60 => bail!("gc interval must be 0 (off) or at least 60 seconds"),
        Some(n) => Some(Duration::from_secs(n)),
    };
    let grace = match a.gc_grace.or(f.grace) {
        None => GC_GRACE_DEFAULT,
        Some(0) => bail!(
            "gc grace must be at least 1 second (0 would collect blobs of pushes in progress)"
        ),
        Some(n) => Duration::from_secs(n),
    };
    Ok(GcConfig {
        interval,
        grace,
        untagged: a.gc_untagged || f.untagged.unwrap_or(false),
    })
}

/// `[store]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    kind: Option<String>,
    postgres_url: Option<String>,
    s3_endpoint: Option<String>,
    s3_bucket: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    s3_path_style: Option<bool>,
    s3_prefix: Option<String>,
    redirect: Option<bool>,
}

/// `[limits]` in the config file; timeouts in seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_connections: Option<usize>,
    header_timeout: Option<u64>,
    idle_timeout: Option<u64>,
    body_timeout: Option<u64>,
    send_timeout: Option<u64>,
    uploads_per_identity: Option<usize>,
    sessions_per_identity: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Generate (first start) and reuse a private CA + server certificate in DATA_DIR/tls.
    Generated,
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    Off,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: String,
    /// A second address serving `/metrics` only (plain HTTP, no authentication).
    pub metrics_listen: Option<String>,
    pub hostname: Option<String>,
    pub tls: Tls,
    /// Every caller is an Owner: for throwaway test setups only.
    pub auth_disabled: bool,
    /// One audit row per token issue (else one per identity per hour, with a count).
    pub audit_every_token: bool,
    pub limits: berth_server::Limits,
    pub store: Store,
    pub gc: GcConfig,
    pub webhooks: berth_server::webhooks::WebhookOptions,
}

/// Where registry data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// Files and SQLite in the data dir (one server per data dir).
    Embedded,
    /// PostgreSQL and S3, shared by any number of nodes.
    Distributed(Distributed),
}

/// Settings of the distributed store. `Debug` never shows the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Distributed {
    pub postgres_url: String,
    pub s3: S3Settings,
    /// Blob GETs answered with a redirect to a presigned URL.
    pub redirect: bool,
}

#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub path_style: bool,
    /// Empty, or ends with `/`.
    pub prefix: String,
}

impl std::fmt::Debug for Distributed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distributed")
            .field("postgres_url", &redact_postgres_url(&self.postgres_url))
            .field("s3", &self.s3)
            .field("redirect", &self.redirect)
            .finish()
    }
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl S3Settings {
    pub fn to_s3_config(&self) -> berth_storage_s3::S3Config {
        berth_storage_s3::S3Config {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            access_key: self.access_key_id.clone(),
            secret_key: self.secret_access_key.clone(),
            path_style: self.path_style,
            prefix: self.prefix.clone(),
        }
    }
}

/// A PostgreSQL URL fit for a log line: the password replaced by `***` (URL form
/// `postgres://user:pw@host/db`, or libpq's `password=pw` / `password='p w'` form).
pub fn redact_postgres_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest_start = scheme_end.saturating_add(3);
        let rest = url.get(rest_start..).unwrap_or("");
        // The authority ends at the first '/', '?' or '#'; its userinfo at the last '@' in it.
        let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = rest.get(..auth_end).unwrap_or("");
        let mut out = url.get(..rest_start).unwrap_or("").to_owned();
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = authority.get(..at).unwrap_or("");
                match userinfo.split_once(':') {
                    Some((user, _)) => out.push_str(&format!("{user}:***")),
                    None => out.push_str(userinfo),
                }
                out.push_str(authority.get(at..).unwrap_or(""));
            }
            None => out.push_str(authority),
        }
        let tail = rest.get(auth_end..).unwrap_or("");
        // A password may also be a query parameter.
        match tail.split_once('?') {
            Some((path, query)) => {
                let q: Vec<String> = query
                    .split('&')
                    .map(|kv| match kv.split_once('=') {
                        Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                        _ => kv.to_owned(),
                    })
                    .collect();
                out.push_str(&format!("{path}?{}", q.join("&")));
            }
            None => out.push_str(tail),
        }
        return out;
    }
    // key=value form; values may be single-quoted with backslash escapes.
    let mut out = String::new();
    let mut rest = url;
    while let Some(pos) = rest.find("password") {
        let (before, after) = rest.split_at(pos);
        out.push_str(before);
        let after_key = after.get("password".len()..).unwrap_or("");
        let trimmed = after_key.trim_start();
        let word_start = before.is_empty() || before.ends_with(char::is_whitespace);
        if !(word_start && trimmed.starts_with('=')) {
            out.push_str("password");
            rest = after_key;
            continue;
        }
        let value = trimmed.get(1..).unwrap_or("").trim_start();
        let end = if let Some(q) = value.strip_prefix('\'') {
            let mut i = 0usize;
            let bytes = q.as_bytes();
            while let Some(&b) = bytes.get(i) {
                if b == b'\\' {
                    i = i.saturating_add(2);
                } else if b == b'\'' {
                    break;
                } else {
                    i = i.saturating_add(1);
                }
            }
            i.saturating_add(2).min(value.len())
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        out.push_str("password=***");
        rest = value.get(end..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// Resolves `[store]`: flags and environment over the file over defaults. The PostgreSQL URL and
/// the S3 secret are read from `env` only (never flags: a command line is visible to every user
/// of the machine).
fn resolve_store(
    a: &StoreArgs,
    f: &FileStore,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Store> {
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let kind = nonempty(a.store.clone())
        .or_else(|| nonempty(f.kind.clone()))
        .unwrap_or_else(|| "embedded".into());
    match kind.trim() {
        "embedded" => return Ok(Store::Embedded),
        "distributed" => {}
        other => bail!(
            "store kind {other:?} (BERTH_STORE / --store / [store] kind): use \"embedded\" or \"distributed\""
        ),
    }
    let required = |v: Option<String>, key: &str, env_name: &str| -> anyhow::Result<String> {
        v.map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the distributed store needs {key}: set it in the config file's [store] table \
                     or in the environment variable {env_name}"
                )
            })
    };
    let postgres_url = required(
        nonempty(env("BERTH_POSTGRES_URL")).or_else(|| f.postgres_url.clone()),
        "postgres_url",
        "BERTH_POSTGRES_URL",
    )?;
    if !(postgres_url.starts_with("postgres://")
        || postgres_url.starts_with("postgresql://")
        || postgres_url.contains('='))
    {
        bail!(
            "postgres_url (BERTH_POSTGRES_URL) must be postgres://user:password@host:port/database \
             or libpq's key=value form, not {:?}",
            redact_postgres_url(&postgres_url)
        );
    }
    let endpoint = required(
        nonempty(a.s3_endpoint.clone()).or_else(|| f.s3_endpoint.clone()),
        "s3_endpoint",
        "BERTH_S3_ENDPOINT",
    )?;
    let endpoint = endpoint.trim_end_matches('/').to_owned();
    let authority = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    match authority {
        Some(h) if !h.is_empty() && !h.contains(['/', '?', '#', '@']) => {}
        _ => bail!(
            "s3_endpoint (BERTH_S3_ENDPOINT) must be http(s)://host[:port] without a path, not {endpoint:?}"
        ),
    }
    let bucket = required(
        nonempty(a.s3_bucket.clone()).or_else(|| f.s3_bucket.clone()),
        "s3_bucket",
        "BERTH_S3_BUCKET",
    )?;
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !bucket_ok {
        bail!(
            "s3_bucket (BERTH_S3_BUCKET) {bucket:?} is not a bucket name: 3 to 63 lowercase \
             letters, digits, '.' or '-', starting with a letter or digit"
        );
    }
    let region = nonempty(a.s3_region.clone())
        .or_else(|| nonempty(f.s3_region.clone()))
        .unwrap_or_else(|| "us-east-1".into());
    let access_key_id = required(
        nonempty(a.s3_access_key_id.clone()).or_else(|| f.s3_access_key_id.clone()),
        "s3_access_key_id",
        "BERTH_S3_ACCESS_KEY_ID",
    )?;
    let secret_access_key = required(
        nonempty(env("BERTH_S3_SECRET_ACCESS_KEY")).or_else(|| f.s3_secret_access_key.clone()),
        "s3_secret_access_key",
        "BERTH_S3_SECRET_ACCESS_KEY",
    )?;
    let mut prefix = nonempty(a.s3_prefix.clone())
        .or_else(|| nonempty(f.s3_prefix.clone()))
        .unwrap_or_default()
        .trim()
        .to_owned();
    if !prefix.is_empty() {
        let ok = !prefix.starts_with('/')
            && prefix.len() <= 256
            && !prefix.split('/').any(|seg| seg == "." || seg == "..")
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
        if !ok {
            bail!(
                "s3_prefix (BERTH_S3_PREFIX) {prefix:?} must be letters, digits, '-', '_', '.' \
                 and '/' (not leading), at most 256 characters"
            );
        }
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
    }
    Ok(Store::Distributed(Distributed {
        postgres_url,
        s3: S3Settings {
            endpoint,
            bucket,
            region,
            access_key_id,
            secret_access_key,
            path_style: a.s3_path_style.or(f.s3_path_style).unwrap_or(true),
            prefix,
        },
        redirect: a.s3_redirect.or(f.redirect).unwrap_or(false),
    }))
}

/// The `[store]` part of the command line.
#[derive(Debug, Default, Clone)]
pub struct StoreArgs {
    pub store: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_region: Option<String>,
    pub s3_access_key_id: Option<String>,
    pub s3_path_style: Option<bool>,
    pub s3_prefix: Option<String>,
    pub s3_redirect: Option<bool>,
}

impl StoreArgs {
    fn of(a: &ServeArgs) -> Self {
        StoreArgs {
            store: a.store.clone(),
            s3_endpoint: a.s3_endpoint.clone(),
            s3_bucket: a.s3_bucket.clone(),
            s3_region: a.s3_region.clone(),
            s3_access_key_id: a.s3_access_key_id.clone(),
            s3_path_style: a.s3_path_style,
            s3_prefix: a.s3_prefix.clone(),
            s3_redirect: a.s3_redirect,
        }
    }
}

/// The store a config file (plus the environment) describes, for tools that work on a store
/// without serving it (`berth store migrate`). `env` gives every `BERTH_*` variable.
pub fn store_from_file(
    path: &std::path::Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Store> {
    let file = read_file(path)?;
    let nonempty = |k: &str| env(k).filter(|s| !s.trim().is_empty());
    let a = StoreArgs {
        store: nonempty("BERTH_STORE"),
        s3_endpoint: nonempty("BERTH_S3_ENDPOINT"),
        s3_bucket: nonempty("BERTH_S3_BUCKET"),
        s3_region: nonempty("BERTH_S3_REGION"),
        s3_access_key_id: nonempty("BERTH_S3_ACCESS_KEY_ID"),
        s3_path_style: parse_bool_env(env, "BERTH_S3_PATH_STYLE")?,
        s3_prefix: nonempty("BERTH_S3_PREFIX"),
        s3_redirect: parse_bool_env(env, "BERTH_S3_REDIRECT")?,
    };
    resolve_store(&a, &file.store, env)
}

fn parse_bool_env(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> anyhow::Result<Option<bool>> {
    match env(name).as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => bail!("{name}={other:?}: use true or false"),
    }
}

fn read_file(path: &std::path::Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
}

impl ServeConfig {
    pub fn resolve(a: ServeArgs) -> anyhow::Result<Self> {
        Self::resolve_with_env(a, &|k| std::env::var(k).ok())
    }

    /// [`ServeConfig::resolve`] with the environment variables clap does not read (secrets and
    /// systemd's) given by `env`.
    pub fn resolve_with_env(
        a: ServeArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let file: FileConfig = match &a.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let limits = resolve_limits(&a, &file.limits)?;
        let store = resolve_store(&StoreArgs::of(&a), &file.store, env)?;
        let gc = resolve_gc(&a, &file.gc)?;
        let webhooks = resolve_webhooks(&a, &file.webhooks)?;
        let insecure = a.insecure_http || file.insecure_http.unwrap_or(false);
        let cert = a.tls_cert.or(file.tls_cert);
        let key = a.tls_key.or(file.tls_key);
        let tls = match (insecure, cert, key) {
            (true, None, None) => Tls::Off,
            (true, _, _) => bail!("--insecure-http cannot be combined with --tls-cert/--tls-key"),
            (false, Some(cert), Some(key)) => Tls::Files { cert, key },
            (false, None, None) => Tls::Generated,
            (false, _, _) => bail!("--tls-cert and --tls-key must be given together"),
        };
        Ok(ServeConfig {
            data_dir: match a.data_dir.or(file.data_dir) {
                Some(d) => d,
                None => default_data_dir(env)?,
            },
            listen: a
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "0.0.0.0:5000".into()),
            metrics_listen: a.metrics_listen.or(file.metrics_listen),
            hostname: a.hostname.or(file.hostname),
            tls,
            auth_disabled: a.auth_disabled || file.auth_disabled.unwrap_or(false),
            audit_every_token: a.audit_every_token || file.audit_every_token.unwrap_or(false),
            limits,
            store,
            gc,
            webhooks,
        })
    }
}

/// The data dir when none is configured: systemd's `$STATE_DIRECTORY` (set by
/// `StateDirectory=`; the first when several are listed), else `./berth-data`. A systemd
/// service without either is refused rather than writing into whatever its working directory is.
fn default_data_dir(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<PathBuf> {
    if let Some(dirs) = env("STATE_DIRECTORY")
        && let Some(first) = dirs.split(':').find(|d| !d.is_empty())
    {
        return Ok(PathBuf::from(first));
    }
    if env("INVOCATION_ID").is_some() {
        bail!(
            "running as a systemd service without a data dir: add StateDirectory=berth to the unit \
             (the data dir becomes /var/lib/berth), or set --data-dir, BERTH_DATA_DIR or data_dir \
             in the config file"
        );
    }
    Ok(PathBuf::from("berth-data"))
}

fn resolve_limits(a: &ServeArgs, f: &FileLimits) -> anyhow::Result<berth_server::Limits> {
    let mut l = berth_server::Limits::default();
    let secs =
        |flag: Option<u64>, file: Option<u64>, default: Duration, name: &str| match flag.or(file) {
            None => Ok(default),
            Some(0) => bail!("{name} must be at least 1 second"),
            Some(n) if n > 86_400 => bail!("{name} must be at most 86400 seconds"),
            Some(n) => Ok(Duration::from_secs(n)),
        };
    let count = |flag: Option<usize>, file: Option<usize>, default: usize, name: &str| match flag
        .or(file)
    {
        None => Ok(default),
        Some(0) => bail!("{name} must be at least 1"),
        Some(n) => Ok(n),
    };
    l.max_connections = count(
        a.max_connections,
        f.max_connections,
        l.max_connections,
        "max_connections",
    )?;
    l.header_timeout = secs(
        a.header_timeout,
        f.header_timeout,
        l.header_timeout,
        "header_timeout",
    )?;
    l.idle_timeout = secs(
        a.idle_timeout,
        f.idle_timeout,
        l.idle_timeout,
        "idle_timeout",
    )?;
    l.body_timeout = secs(
        a.body_timeout,
        f.body_timeout,
        l.body_timeout,
        "body_timeout",
    )?;
    l.send_timeout = secs(
        a.send_timeout,
        f.send_timeout,
        l.send_timeout,
        "send_timeout",
    )?;
    l.uploads_per_identity = count(
        a.uploads_per_identity,
        f.uploads_per_identity,
        l.uploads_per_identity,
        "uploads_per_identity",
    )?;
    l.sessions_per_identity = count(
        a.sessions_per_identity,
        f.sessions_per_identity,
        l.sessions_per_identity,
        "sessions_per_identity",
    )?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../packaging/berth.toml");

    /// The shipped example config parses and, as it promises, states the defaults.
    #[test]
    fn the_example_config_is_the_defaults() {
        let with_example = ServeConfig::resolve(ServeArgs {
            config: Some(PathBuf::from(EXAMPLE)),
            ..Default::default()
        })
        .unwrap();
        let defaults = ServeConfig::resolve(ServeArgs::default()).unwrap();
        assert_eq!(format!("{with_example:?}"), format!("{defaults:?}"));
        // Every setting is in it (commented out where there is no default), and is a flag.
        let text = std::fs::read_to_string(EXAMPLE).unwrap();
        let cmd = crate::args::command();
        let serve = cmd.find_subcommand("serve").unwrap();
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["config", "help"].contains(&long) {
                continue;
            }
            // `--s3-redirect` is `redirect` in [store], as the interface names it.
            let key = match long {
                "s3-redirect" => "redirect".to_owned(),
                "store" => "kind".to_owned(),
                // [gc] interval, grace, untagged.
                g if g.starts_with("gc-") => g.trim_start_matches("gc-").to_owned(),
                // [webhooks] max_pending, max_attempts, max_age, ca_file.
                w if w.starts_with("webhook-") => {
                    w.trim_start_matches("webhook-").replace('-', "_")
                }
                _ => long.replace('-', "_"),
            };
            assert!(
                text.lines()
                    .any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} = "))),
                "packaging/berth.toml lacks {key}"
            );
        }
    }

    #[test]
    fn the_systemd_unit_is_hardened_and_uses_the_example_config() {
        let unit = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../packaging/berth.service"
        ))
        .unwrap();
        for line in [
            "ExecStart=/usr/local/bin/berth serve --config /etc/berth/berth.toml",
            "DynamicUser=yes",
            "StateDirectory=berth",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line} missing");
        }
    }

    #[test]
    fn a_service_gets_its_state_directory_never_the_working_directory() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            default_data_dir(&env(&[("STATE_DIRECTORY", "/var/lib/berth:/var/lib/x")])).unwrap(),
            PathBuf::from("/var/lib/berth")
        );
        assert_eq!(
            default_data_dir(&env(&[])).unwrap(),
            PathBuf::from("berth-data")
        );
        let err = default_data_dir(&env(&[("INVOCATION_ID", "abc")])).unwrap_err();
        assert!(err.to_string().contains("StateDirectory=berth"), "{err}");
    }

    #[test]
    fn flag_over_file_over_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\ndata_dir = \"/srv/berth\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:0".into()),
            ..Default::default()
        };
        let c = ServeConfig::resolve(args).unwrap();
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.data_dir, PathBuf::from("/srv/berth"));
        assert_eq!(c.tls, Tls::Generated);
        std::fs::write(&path, "bogus = 1\n").unwrap();
        let err = ServeConfig::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("bogus"), "{err:#}");
        let c = ServeConfig::resolve(ServeArgs::default()).unwrap();
        assert_eq!(
            (c.listen.as_str(), c.data_dir),
            ("0.0.0.0:5000", PathBuf::from("berth-data"))
        );
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    /// A config file in a directory of its own, removed when the first value drops.
    fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    const DISTRIBUTED: &str = r#"
[store]
kind = "distributed"
postgres_url = "postgres://berth:file-pw@db:5432/berth"
s3_endpoint = "http://127.0.0.1:3900/"
s3_bucket = "berth"
s3_access_key_id = "GKfile"
s3_secret_access_key = "file-secret"
"#;

    #[test]
    fn no_config_is_the_embedded_store() {
        let c = ServeConfig::resolve_with_env(ServeArgs::default(), &vars(&[])).unwrap();
        assert_eq!(c.store, Store::Embedded);
        // Secrets in the environment do not matter to the embedded store.
        let c = ServeConfig::resolve_with_env(
            ServeArgs::default(),
            &vars(&[("BERTH_POSTGRES_URL", "postgres://x@y/z")]),
        )
        .unwrap();
        assert_eq!(c.store, Store::Embedded);
    }

    #[test]
    fn distributed_from_the_file_with_defaults() {
        let (_dir, path) = config_file(DISTRIBUTED);
        let args = || ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = ServeConfig::resolve_with_env(args(), &vars(&[])).unwrap();
        let Store::Distributed(d) = &c.store else {
            panic!("{:?}", c.store)
        };
        assert_eq!(d.postgres_url, "postgres://berth:file-pw@db:5432/berth");
        assert_eq!(d.s3.endpoint, "http://127.0.0.1:3900");
        assert_eq!(d.s3.region, "us-east-1");
        assert!(d.s3.path_style);
        assert_eq!(d.s3.prefix, "");
        assert!(!d.redirect);
        assert_eq!(d.s3.secret_access_key, "file-secret");
        // Neither secret shows in the settings' Debug (what a log line would print).
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("file-pw") && !shown.contains("file-secret"),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://berth:***@db:5432/berth"),
            "{shown}"
        );

        // The environment (what clap reads for flags, and the secrets) wins over the file;
        // a flag wins over the environment (clap has resolved that into ServeArgs already).
        let env = vars(&[
            ("BERTH_POSTGRES_URL", "postgres://berth:env-pw@db2/berth"),
            ("BERTH_S3_SECRET_ACCESS_KEY", "env-secret"),
        ]);
        let c = ServeConfig::resolve_with_env(
            ServeArgs {
                s3_bucket: Some("other-bucket".into()),
                s3_prefix: Some("team/a".into()),
                s3_redirect: Some(true),
                s3_path_style: Some(false),
                s3_region: Some("garage".into()),
                ..args()
            },
            &env,
        )
        .unwrap();
        let Store::Distributed(d) = c.store else {
            panic!()
        };
        assert_eq!(d.postgres_url, "postgres://berth:env-pw@db2/berth");
        assert_eq!(d.s3.secret_access_key, "env-secret");
        assert_eq!(d.s3.bucket, "other-bucket");
        assert_eq!(d.s3.prefix, "team/a/");
        assert_eq!(d.s3.region, "garage");
        assert!(d.redirect && !d.s3.path_style);

        // BERTH_STORE=embedded (a flag or variable) switches a distributed file off.
        let c = ServeConfig::resolve_with_env(
            ServeArgs {
                store: Some("embedded".into()),
                ..args()
            },
            &vars(&[]),
        )
        .unwrap();
        assert_eq!(c.store, Store::Embedded);
    }

    #[test]
    fn a_missing_or_bad_setting_is_named_with_its_variable() {
        let full = vars(&[
            ("BERTH_POSTGRES_URL", "postgres://u:pw-123@h/db"),
            ("BERTH_S3_SECRET_ACCESS_KEY", "sekrit-456"),
        ]);
        let base = || ServeArgs {
            store: Some("distributed".into()),
            s3_endpoint: Some("http://127.0.0.1:3900".into()),
            s3_bucket: Some("berth".into()),
            s3_access_key_id: Some("GK1".into()),
            ..Default::default()
        };
        assert!(ServeConfig::resolve_with_env(base(), &full).is_ok());
        let err = |a: ServeArgs, env: &dyn Fn(&str) -> Option<String>| {
            let e = format!("{:#}", ServeConfig::resolve_with_env(a, env).unwrap_err());
            assert!(!e.contains("pw-123") && !e.contains("sekrit-456"), "{e}");
            e
        };
        let e = err(base(), &vars(&[("BERTH_S3_SECRET_ACCESS_KEY", "x")]));
        assert!(
            e.contains("postgres_url") && e.contains("BERTH_POSTGRES_URL"),
            "{e}"
        );
        let e = err(base(), &vars(&[("BERTH_POSTGRES_URL", "postgres://h/db")]));
        assert!(
            e.contains("s3_secret_access_key") && e.contains("BERTH_S3_SECRET_ACCESS_KEY"),
            "{e}"
        );
        for (args, words) in [
            (
                ServeArgs {
                    s3_endpoint: None,
                    ..base()
                },
                ["s3_endpoint", "BERTH_S3_ENDPOINT"],
            ),
            (
                ServeArgs {
                    s3_endpoint: Some("127.0.0.1:3900".into()),
                    ..base()
                },
                ["s3_endpoint", "http(s)://host[:port]"],
            ),
            (
                ServeArgs {
                    s3_endpoint: Some("http://h:1/bucket".into()),
                    ..base()
                },
                ["s3_endpoint", "without a path"],
            ),
            (
                ServeArgs {
                    s3_bucket: None,
                    ..base()
                },
                ["s3_bucket", "BERTH_S3_BUCKET"],
            ),
            (
                ServeArgs {
                    s3_bucket: Some("Bad_Bucket".into()),
                    ..base()
                },
                ["s3_bucket", "not a bucket name"],
            ),
            (
                ServeArgs {
                    s3_access_key_id: None,
                    ..base()
                },
                ["s3_access_key_id", "BERTH_S3_ACCESS_KEY_ID"],
            ),
            (
                ServeArgs {
                    s3_prefix: Some("../x".into()),
                    ..base()
                },
                ["s3_prefix", "BERTH_S3_PREFIX"],
            ),
            (
                ServeArgs {
                    store: Some("clustered".into()),
                    ..base()
                },
                ["\"clustered\"", "BERTH_STORE"],
            ),
        ] {
            let e = err(args, &full);
            for w in words {
                assert!(e.contains(w), "{w} not in: {e}");
            }
        }
        let e = err(
            base(),
            &vars(&[
                ("BERTH_POSTGRES_URL", "mysql://u:pw-123@h/db"),
                ("BERTH_S3_SECRET_ACCESS_KEY", "x"),
            ]),
        );
        assert!(
            e.contains("BERTH_POSTGRES_URL") && e.contains("u:***@h"),
            "{e}"
        );
        // An unknown key in [store] is refused with its name.
        let (_typo_dir, path) = config_file("[store]\nkind = \"distributed\"\ns3_bukket = \"x\"\n");
        let e = err(
            ServeArgs {
                config: Some(path),
                ..Default::default()
            },
            &full,
        );
        assert!(e.contains("s3_bukket"), "{e}");
    }

    #[test]
    fn the_store_of_a_config_file_with_the_environment() {
        let (_dir, path) = config_file(DISTRIBUTED);
        let Store::Distributed(d) = store_from_file(&path, &vars(&[])).unwrap() else {
            panic!()
        };
        assert_eq!(d.s3.access_key_id, "GKfile");
        let Store::Distributed(d) = store_from_file(
            &path,
            &vars(&[("BERTH_S3_REDIRECT", "true"), ("BERTH_S3_PREFIX", "p")]),
        )
        .unwrap() else {
            panic!()
        };
        assert!(d.redirect);
        assert_eq!(d.s3.prefix, "p/");
        let e = store_from_file(&path, &vars(&[("BERTH_S3_PATH_STYLE", "yes")])).unwrap_err();
        assert!(e.to_string().contains("BERTH_S3_PATH_STYLE"), "{e}");
    }

    #[test]
    fn postgres_passwords_are_redacted() {
        for (url, shown) in [
            ("postgres://u:p@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgresql://u@h/db", "postgresql://u@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            ("postgres://u:p%40ss@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u@h/db?sslmode=disable&password=p",
                "postgres://u@h/db?sslmode=disable&password=***",
            ),
            (
                "host=h user=u password=p dbname=d",
                "host=h user=u password=*** dbname=d",
            ),
            (
                "host=h password = 'a b\\' c' dbname=d",
                "host=h password=*** dbname=d",
            ),
            ("host=h user=passwordless", "host=h user=passwordless"),
        ] {
            assert_eq!(redact_postgres_url(url), shown, "{url}");
        }
    }
}
