//! `berth`: the registry server and its admin and client verbs, in one binary.

mod api;
mod args;
mod cmd;
mod config;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // One TLS provider for every client and server in the process: ring (pure Rust, no C build).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Serve(a) => cmd::serve::run(a),
        args::Command::Config(c) => cmd::config::run(c),
        args::Command::Trust(c) => cmd::trust::run(c),
        args::Command::Push(a) => cmd::push::run(a),
        args::Command::Pull(a) => cmd::pull::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
