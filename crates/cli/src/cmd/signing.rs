//! Docker Content Trust on the client, shared by `berth trust …`, `berth push` and `berth pull`:
//! when trust is on, the key store with docker's passphrase sources (environment, else a
//! terminal prompt), and a trust session that authenticates to the trust API as docker does.
//!
//! ```text
//!  op(Repository without credentials) ──401 + challenge──▶ token flow (berth-client) for
//!  repository:<gun>:pull[,push] ──▶ op(Repository with Bearer)   (Basic when no Bearer challenge)
//! ```

use std::future::Future;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::sync::Arc;

use anyhow::bail;
use berth_client::{Credentials, Reference, Registry};
use berth_trust_client::{
    Credentials as TrustCredentials, Error as TrustError, KeyStore, PassphraseRequest, Purpose,
    Remote, Repository,
};
use clap::Args;

// `--trust` / `--disable-content-trust[=BOOL]` on the verbs that move images (not a doc
// comment: clap would show it as the description of the verbs that flatten it).
#[derive(Args, Debug, Clone, Default)]
pub struct ContentTrustArgs {
    /// Docker Content Trust: a push signs the tag, a pull takes only a signed tag and pulls it
    /// by its signed digest (also on with DOCKER_CONTENT_TRUST=1).
    #[arg(long)]
    pub trust: bool,
    /// Content trust off for this command (=false: on), whatever DOCKER_CONTENT_TRUST says, as
    /// docker's flag does.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub disable_content_trust: Option<bool>,
}

impl ContentTrustArgs {
    pub fn enabled(&self) -> anyhow::Result<bool> {
        trust_enabled(
            self.trust,
            self.disable_content_trust,
            std::env::var("DOCKER_CONTENT_TRUST").ok().as_deref(),
        )
    }
}

fn trust_enabled(trust: bool, disable: Option<bool>, env: Option<&str>) -> anyhow::Result<bool> {
    match disable {
        Some(true) if trust => bail!("--trust and --disable-content-trust contradict each other"),
        Some(d) => Ok(!d),
        // Docker's reading of the variable: set and not a Go "false" means on.
        None => Ok(trust
            || env.is_some_and(|v| {
                !v.is_empty() && !matches!(v, "0" | "f" | "F" | "false" | "FALSE" | "False")
            })),
    }
}

/// docker's key store (`$DOCKER_CONFIG/trust`), passphrases from docker's variables, else a
/// prompt when standard input is a terminal.
pub fn keystore() -> KeyStore {
    KeyStore::from_env().with_callback(Arc::new(|req: &PassphraseRequest<'_>| prompt(req)))
}

/// Asks on the terminal as docker does (twice for a new key, at least 8 characters). `None`
/// without a terminal, which the key store turns into "set DOCKER_CONTENT_TRUST_…".
fn prompt(req: &PassphraseRequest<'_>) -> Option<String> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    let short = &req.key_id[..req.key_id.len().min(7)];
    let role = if req.role == "root" {
        "root".to_owned()
    } else if req.role == "targets" {
        "repository".to_owned()
    } else {
        req.role.to_owned()
    };
    let mut out = &tty;
    match req.purpose {
        Purpose::Import => read_hidden(&tty, "Enter passphrase for encrypted key: "),
        Purpose::Decrypt => {
            if req.attempt > 0 {
                let _ = writeln!(out, "Passphrase incorrect. Please retry.");
            }
            read_hidden(
                &tty,
                &format!("Enter passphrase for {role} key with ID {short}: "),
            )
        }
        Purpose::Encrypt => {
            for _ in 0..3 {
                let a = read_hidden(
                    &tty,
                    &format!("Enter passphrase for new {role} key with ID {short}: "),
                )?;
                if a.chars().count() < 8 {
                    let _ = writeln!(
                        out,
                        "Passphrase is too short. Please use a password manager to generate and store a good random passphrase."
                    );
                    continue;
                }
                let b = read_hidden(
                    &tty,
                    &format!("Repeat passphrase for new {role} key with ID {short}: "),
                )?;
                if a == b {
                    return Some(a);
                }
                let _ = writeln!(out, "Passphrases do not match. Please retry.");
            }
            None
        }
    }
}

/// One line from the terminal with echo off (restored afterwards, also on a read error).
fn read_hidden(tty: &std::fs::File, question: &str) -> Option<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let mut out = tty;
    write!(out, "{question}").ok()?;
    out.flush().ok()?;
    let saved = tcgetattr(tty).ok();
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        let _ = tcsetattr(tty, OptionalActions::Flush, &quiet);
    }
    let mut line = String::new();
    let read = std::io::BufReader::new(tty).read_line(&mut line);
    if let Some(t) = &saved {
        let _ = tcsetattr(tty, OptionalActions::Flush, t);
    }
    let _ = writeln!(out);
    match read {
        Ok(n) if n > 0 => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
        _ => None,
    }
}

/// `host[:port]` of a base URL (`https://localhost:5000` → `localhost:5000`), as docker puts it
/// in a GUN.
pub fn host_port(base: &str) -> &str {
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// Removes docker's local TUF cache (`$DOCKER_CONFIG/trust/tuf/<under>`: a GUN, or a registry's
/// `host[:port]` for all of its GUNs) after the server's trust data was wiped: the cached root
/// would otherwise be trusted over the new one, and the next signed push would fail. Keys stay.
/// Says what it removed.
pub fn forget_cached_trust(under: &str) -> anyhow::Result<()> {
    // `under` comes from a parsed repository name or URL host; refuse anything that could
    // leave the cache directory all the same.
    if under.is_empty()
        || under.starts_with('/')
        || under
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        bail!("not clearing the local trust cache for {under:?}: not a GUN or host");
    }
    let dir = berth_trust_client::default_trust_dir()
        .join("tuf")
        .join(under);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {
            eprintln!(
                "Removed the local trust cache for {under} ({}): the next signed push starts afresh",
                dir.display()
            );
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "the server's trust data is gone, but removing the local trust cache {} failed ({e}): \
             remove it by hand (rm -rf {}) before the next signed push",
            dir.display(),
            dir.display()
        )),
    }
}

/// One GUN on one registry, with the credentials to run the token flow with.
pub struct Session {
    registry: Registry,
    keys: KeyStore,
    gun: String,
    credentials: Option<Credentials>,
}

impl Session {
    pub fn new(
        registry: Registry,
        credentials: Option<Credentials>,
        reference: &Reference,
    ) -> Self {
        Session {
            registry,
            keys: keystore(),
            gun: reference.gun(),
            credentials,
        }
    }

    pub fn gun(&self) -> &str {
        &self.gun
    }

    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The user name we authenticate as: docker names the first signer after it.
    pub fn username(&self) -> Option<&str> {
        self.credentials.as_ref().map(|c| c.username.as_str())
    }

    fn repository(&self, auth: Option<TrustCredentials>) -> Repository {
        let remote = Remote::new(
            self.registry.http_client().clone(),
            self.registry.base_url().as_str(),
        )
        .with_credentials(auth);
        Repository::new(remote, self.keys.clone(), &self.gun)
    }

    /// Runs `op` anonymously first (auth may be off, or anonymous pull on); on a 401 it gets
    /// a token for `repository:<gun>:pull` (`pull,push` when `write`) and runs `op` again. A
    /// first run stopped by a 401 has written nothing: every operation reads before it writes
    /// keys or metadata.
    pub async fn run<T, F, Fut>(&self, write: bool, op: F) -> anyhow::Result<T>
    where
        F: Fn(Repository) -> Fut,
        Fut: Future<Output = berth_trust_client::Result<T>>,
    {
        let challenge = match op(self.repository(None)).await {
            Err(TrustError::Unauthorized { challenge, .. }) => challenge,
            other => return other.map_err(|e| self.explain(e, write, false)),
        };
        let auth = self.authenticate(challenge.as_deref(), write).await?;
        op(self.repository(Some(auth)))
            .await
            .map_err(|e| self.explain(e, write, true))
    }

    async fn authenticate(
        &self,
        challenge: Option<&str>,
        write: bool,
    ) -> anyhow::Result<TrustCredentials> {
        let actions = if write { "pull,push" } else { "pull" };
        let scope = format!("repository:{}:{actions}", self.gun);
        if let Some(ch) = challenge
            && let Some(token) = self
                .registry
                .token_for_challenge(
                    &format!("authenticating for the trust data of {}", self.gun),
                    ch,
                    &[scope],
                )
                .await
                .map_err(|e| super::transfer::explain(e, "content trust"))?
        {
            return Ok(TrustCredentials::Bearer(token));
        }
        match &self.credentials {
            Some(c) => Ok(TrustCredentials::Basic {
                username: c.username.clone(),
                password: c.password.clone(),
            }),
            None => bail!(
                "the trust data of {} requires authentication: pass -u USER --password-stdin \
                 or set BERTH_USERNAME and BERTH_PASSWORD",
                self.gun
            ),
        }
    }

    /// `authenticated`: the request carried a token or Basic credentials, so a refusal of a
    /// write is about the role, not about logging in.
    fn explain(&self, e: TrustError, write: bool, authenticated: bool) -> anyhow::Error {
        let hint = match &e {
            TrustError::Unauthorized { status, .. }
                if write && (*status == 403 || authenticated) =>
            {
                Some(
                    "publishing trust data needs the AcrImageSigner role for the repository, or a \
                 token whose scope map has trust/write",
                )
            }
            TrustError::Unauthorized { .. } => {
                Some("pass -u USER --password-stdin or set BERTH_USERNAME and BERTH_PASSWORD")
            }
            TrustError::Http(h) => {
                let chain = berth_client::error_chain(h);
                if let Some(kind) = berth_client::TlsFailure::classify(&chain) {
                    return anyhow::anyhow!(
                        "talking to the trust server: TLS failed: {}{} (fix: {})",
                        berth_client::root_cause(h),
                        berth_client::checked_against(kind, self.registry.tls_trust()),
                        kind.hint().replace("HOST:PORT", self.registry.name())
                    );
                }
                None
            }
            TrustError::NoSigningKeys => Some(
                "this repository has signers: add yours with `berth trust signer add NAME REPO --key NAME.pub` \
                 (by a holder of the repository key), or load a signer's key with `berth trust key load`",
            ),
            _ => None,
        };
        match hint {
            Some(h) => anyhow::anyhow!("{e} (fix: {h})"),
            None => anyhow::anyhow!("{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_switch_follows_docker() {
        assert!(!trust_enabled(false, None, None).unwrap());
        assert!(trust_enabled(true, None, None).unwrap());
        for on in ["1", "true", "yes", "anything"] {
            assert!(trust_enabled(false, None, Some(on)).unwrap(), "{on}");
        }
        for off in ["", "0", "false", "FALSE", "f"] {
            assert!(!trust_enabled(false, None, Some(off)).unwrap(), "{off}");
        }
        // The flag wins over the environment either way.
        assert!(!trust_enabled(false, Some(true), Some("1")).unwrap());
        assert!(trust_enabled(false, Some(false), Some("0")).unwrap());
        assert!(trust_enabled(false, Some(false), None).unwrap());
        assert!(trust_enabled(true, Some(true), None).is_err());
        assert!(trust_enabled(true, Some(false), None).unwrap());
    }
}
