//! `berth admin …`: work on a stopped server's data dir, for when the server cannot be asked.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Give the user `owner` a new password on a STOPPED server's data dir (lost owner password)
    ///
    /// Re-creates `owner` with the Owner role if it was deleted, enables it, and audits the
    /// reset as `owner.reset`. Refused while a server uses the data dir (DIR/berth.lock).
    #[command(name = "reset-owner")]
    ResetOwner(ResetOwnerArgs),
}

#[derive(Args, Debug)]
pub struct ResetOwnerArgs {
    /// The data dir of the stopped server (as given to `berth serve --data-dir`).
    #[arg(long, env = "BERTH_DATA_DIR", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Read the new password from standard input (at least 12 characters); else one is
    /// generated and shown once.
    #[arg(long)]
    pub new_password_stdin: bool,
}

pub fn run(c: AdminCommand) -> anyhow::Result<()> {
    match c {
        AdminCommand::ResetOwner(a) => reset_owner(a),
    }
}

fn reset_owner(a: ResetOwnerArgs) -> anyhow::Result<()> {
    let data = &a.data_dir;
    let db = data.join("metadata.db");
    // Checked before anything is opened: opening would create an empty store.
    if !db.is_file() {
        bail!(
            "{} is not a berth data dir (it has no metadata.db); pass the --data-dir the server \
             runs with",
            data.display()
        );
    }
    // Held until the reset is written, so no server starts on a half-changed store meanwhile.
    let _lock = super::serve::lock_data_dir(data).map_err(|e| {
        e.context(
            "reset-owner works only on a stopped server's data dir; while it runs, an Owner can \
             use `berth user password owner`",
        )
    })?;
    let (password, generated) = if a.new_password_stdin {
        (super::admin::read_password_stdin()?, false)
    } else {
        (berth_auth::password::generate_secret()?, true)
    };
    // Refused before the store is opened, so a weak password changes nothing.
    if let Some(why) = berth_auth::password::user_password_problem(&password) {
        bail!("the new password for 'owner' is refused: {why}");
    }
    let meta = berth_storage_embedded::SqliteMetadataStore::open(&db)
        .with_context(|| format!("opening {}", db.display()))?;
    let who = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let done = rt
        .block_on(berth_access::reset_owner(
            &meta,
            &password,
            &format!("local:{who}"),
        ))
        .context("resetting the owner")?;
    let mut what = vec!["set a new password for 'owner'"];
    if done.recreated {
        what.push("re-created it with the Owner role (it had been deleted)");
    } else if done.role_restored {
        what.push("gave it back the registry-wide Owner role");
    }
    if done.reenabled {
        what.push("enabled it again");
    }
    eprintln!("{} in {}.", what.join(", "), data.display());
    if generated {
        eprintln!("Its password, shown only this once:");
        println!("{password}");
    }
    eprintln!(
        "Start the server, then log in: berth login <host:port> -u owner --password-stdin \
         (earlier logins of 'owner' no longer work)."
    );
    Ok(())
}
