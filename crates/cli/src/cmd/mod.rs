pub mod admin;
pub mod backup;
pub mod config;
pub mod gc;
pub mod import;
pub mod migrate;
pub mod notation;
pub mod pull;
pub mod push;
pub mod recovery;
pub mod repository;
pub mod serve;
pub mod signing;
pub mod store;
pub mod store_check;
pub mod transfer;
pub mod trust;
pub mod verify;
pub mod webhook;

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;

/// Asks for a typed confirmation of something irreversible; `--yes` skips the prompt. Without a
/// terminal and without `--yes` it refuses rather than guessing.
pub fn confirm(yes: bool, warning: &str, word: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{warning}\nrefusing without confirmation: pass --yes to proceed");
    }
    eprint!("{warning}\nType '{word}' to continue: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != word {
        bail!("not confirmed; nothing changed");
    }
    Ok(())
}
