//! What `berth push` and `berth pull` share: connection and credential flags, progress bars,
//! the runtime, and turning a client error into one line that says what to do.

use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use berth_client::{BlobOutcome, ClientOptions, Credentials, Progress, Reference, Registry};
use berth_oci::Digest;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::ServerArgs;

// Connection, credential and output flags of the verbs that move images (not a doc comment:
// clap would show it as the description of the verbs that flatten it).
#[derive(Args, Debug, Clone, Default)]
pub struct TransferArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// No progress bars (they are off anyway when stderr is not a terminal).
    #[arg(short, long)]
    pub quiet: bool,
}

/// Credentials from `-u` with `--password-stdin` or BERTH_PASSWORD (stdin is read once, here).
pub fn credentials(server: &ServerArgs) -> anyhow::Result<Option<Credentials>> {
    let password = if server.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from standard input")?;
        Some(s.trim_end_matches(['\r', '\n']).to_owned())
    } else {
        std::env::var("BERTH_PASSWORD").ok()
    };
    match (&server.username, password) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.clone(),
            password: p,
        })),
        (Some(u), None) => anyhow::bail!(
            "a user name ({u}) without a password: pass --password-stdin or set BERTH_PASSWORD"
        ),
        (None, Some(_)) if server.password_stdin => {
            anyhow::bail!("--password-stdin needs -u/--username")
        }
        _ => Ok(None),
    }
}

/// `explicit` credentials, else the refresh token `berth login` stored for the registry the
/// command talks to (sent as Basic with the refresh-token user name).
pub fn with_login(
    explicit: Option<Credentials>,
    server: &ServerArgs,
    reference: &Reference,
) -> anyhow::Result<Option<Credentials>> {
    if explicit.is_some() {
        return Ok(explicit);
    }
    let logins = crate::api::load_logins()?;
    let token = logins
        .get(&login_key(server, reference))
        .and_then(|l| l["refresh_token"].as_str());
    Ok(token.map(|t| Credentials {
        username: "00000000-0000-0000-0000-000000000000".into(),
        password: t.to_owned(),
    }))
}

/// The registry a command talks to, as `berth login` keys its logins file.
fn login_key(server: &ServerArgs, reference: &Reference) -> String {
    crate::api::normalize_base(server.server.as_deref().unwrap_or(&reference.registry))
}

/// A client for the registry `reference` names (or `--server`) with `credentials`, trusting
/// `--ca-file`, else the CA `berth login --ca-file` stored for that registry.
pub fn registry_for(
    server: &ServerArgs,
    reference: &Reference,
    credentials: Option<Credentials>,
) -> anyhow::Result<Registry> {
    let ca_file = match &server.ca_file {
        Some(f) => Some(f.clone()),
        None => crate::api::stored_ca_readable(&login_key(server, reference))?,
    };
    let opts = ClientOptions {
        server: server.server.clone(),
        ca_file,
        credentials,
        ..Default::default()
    };
    Registry::new(&reference.registry, &opts).map_err(|e| explain(e, "connecting"))
}

impl TransferArgs {
    /// A client for the registry `reference` names, and the credentials it uses (content
    /// trust authenticates to the trust API with the same ones).
    pub fn connect(
        &self,
        reference: &Reference,
    ) -> anyhow::Result<(Registry, Option<Credentials>)> {
        let creds = with_login(credentials(&self.server)?, &self.server, reference)?;
        Ok((registry_for(&self.server, reference, creds.clone())?, creds))
    }

    /// Bars on a terminal; off one (CI logs) a line per blob as it completes; nothing with
    /// `--quiet`.
    pub fn progress(&self) -> Arc<dyn Progress> {
        if !self.quiet && !std::io::stderr().is_terminal() {
            return Arc::new(Lines::default());
        }
        Arc::new(Bars::new(self.quiet))
    }
}

/// Parses a reference; the host may be left out when `--server` names the registry.
pub fn parse_reference(s: &str, server: &ServerArgs) -> anyhow::Result<Reference> {
    let default = server.server.as_deref().map(|u| {
        let u = u.split("://").nth(1).unwrap_or(u);
        u.split('/').next().unwrap_or(u).to_owned()
    });
    Reference::parse_with_default(s, default.as_deref()).map_err(|e| explain(e, "reading REF"))
}

/// One line: what failed, why, and what to do.
pub fn explain(e: berth_client::Error, doing: &str) -> anyhow::Error {
    match e.hint() {
        // The hint's `berth login HOST:PORT` spelled out for the registry at hand.
        Some(h) if let berth_client::Error::Tls { registry, .. } = &e => {
            let h = h.replace("HOST:PORT", registry);
            anyhow::anyhow!("{doing} failed: {e} (fix: {h})")
        }
        Some(h) => anyhow::anyhow!("{doing} failed: {e} (fix: {h})"),
        None => anyhow::anyhow!("{doing} failed: {e}"),
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// One line per blob on stderr when it is done: what a CI log can show of progress.
#[derive(Default)]
pub struct Lines {
    sizes: Mutex<HashMap<Digest, u64>>,
}

impl Progress for Lines {
    fn start(&self, d: &Digest, size: u64) {
        if let Ok(mut s) = self.sizes.lock() {
            s.insert(d.clone(), size);
        }
    }

    fn finish(&self, d: &Digest, outcome: BlobOutcome) {
        let size = self.sizes.lock().ok().and_then(|s| s.get(d).copied());
        let what = match outcome {
            BlobOutcome::Existed => "already there",
            BlobOutcome::Mounted => "mounted",
            BlobOutcome::Transferred => "done",
        };
        match size {
            Some(n) => eprintln!("{d}: {what} ({n} bytes)"),
            None => eprintln!("{d}: {what}"),
        }
    }
}

/// A bar per blob plus a total, drawn on stderr; hidden when `quiet`.
pub struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    bars: Mutex<HashMap<Digest, (ProgressBar, u64)>>,
}

impl Bars {
    fn new(quiet: bool) -> Bars {
        let multi = MultiProgress::with_draw_target(if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template(
                "{prefix:>14} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        total.set_prefix("total");
        total.enable_steady_tick(Duration::from_millis(200));
        Bars {
            multi,
            total,
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn label(d: &Digest) -> String {
        d.hex()[..12].to_owned()
    }

    pub fn clear(&self) {
        self.total.finish_and_clear();
        let _ = self.multi.clear();
    }
}

impl Progress for Bars {
    fn start(&self, d: &Digest, size: u64) {
        let mut bars = self.bars.lock().expect("bars lock");
        if bars.contains_key(d) {
            return;
        }
        let pb = self
            .multi
            .insert_before(&self.total, ProgressBar::new(size));
        pb.set_style(
            ProgressStyle::with_template("{prefix:>14} [{bar:30}] {bytes}/{total_bytes} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        pb.set_prefix(Self::label(d));
        self.total.inc_length(size);
        bars.insert(d.clone(), (pb, 0));
    }

    fn position(&self, d: &Digest, done: u64) {
        let mut bars = self.bars.lock().expect("bars lock");
        if let Some((pb, last)) = bars.get_mut(d) {
            pb.set_position(done);
            // A retried chunk moves back: keep the total in step either way.
            if done >= *last {
                self.total.inc(done - *last);
            } else {
                self.total
                    .set_position(self.total.position() - (*last - done));
            }
            *last = done;
        }
    }

    fn finish(&self, d: &Digest, outcome: BlobOutcome) {
        let bars = self.bars.lock().expect("bars lock");
        let msg = match outcome {
            BlobOutcome::Existed => "already there",
            BlobOutcome::Mounted => "mounted",
            BlobOutcome::Transferred => "done",
        };
        match bars.get(d) {
            Some((pb, _)) => pb.finish_with_message(msg),
            None => {
                let _ = self.multi.println(format!("{:>14} {msg}", Self::label(d)));
            }
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.clear();
    }
}
