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
    hostname: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    insecure_http: Option<bool>,
    auth_disabled: Option<bool>,
    audit_every_token: Option<bool>,
    #[serde(default)]
    limits: FileLimits,
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
    pub hostname: Option<String>,
    pub tls: Tls,
    /// Every caller is an Owner: for throwaway test setups only.
    pub auth_disabled: bool,
    /// One audit row per token issue (else one per identity per hour, with a count).
    pub audit_every_token: bool,
    pub limits: berth_server::Limits,
}

impl ServeConfig {
    pub fn resolve(a: ServeArgs) -> anyhow::Result<Self> {
        let file: FileConfig = match &a.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing config {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let limits = resolve_limits(&a, &file.limits)?;
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
                None => default_data_dir(|k| std::env::var(k).ok())?,
            },
            listen: a
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "0.0.0.0:5000".into()),
            hostname: a.hostname.or(file.hostname),
            tls,
            auth_disabled: a.auth_disabled || file.auth_disabled.unwrap_or(false),
            audit_every_token: a.audit_every_token || file.audit_every_token.unwrap_or(false),
            limits,
        })
    }
}

/// The data dir when none is configured: systemd's `$STATE_DIRECTORY` (set by
/// `StateDirectory=`; the first when several are listed), else `./berth-data`. A systemd
/// service without either is refused rather than writing into whatever its working directory is.
fn default_data_dir(env: impl Fn(&str) -> Option<String>) -> anyhow::Result<PathBuf> {
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
            let key = long.replace('-', "_");
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
            default_data_dir(env(&[("STATE_DIRECTORY", "/var/lib/berth:/var/lib/x")])).unwrap(),
            PathBuf::from("/var/lib/berth")
        );
        assert_eq!(
            default_data_dir(env(&[])).unwrap(),
            PathBuf::from("berth-data")
        );
        let err = default_data_dir(env(&[("INVOCATION_ID", "abc")])).unwrap_err();
        assert!(err.to_string().contains("StateDirectory=berth"), "{err}");
    }

    #[test]
    fn flag_over_file_over_default() {
        let dir = std::env::temp_dir().join(format!("berth-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("berth.toml");
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
}
