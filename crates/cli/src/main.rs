//! `berth`: the registry server and its admin and client verbs, in one binary.

mod api;
mod args;
mod cmd;
mod config;

fn main() -> std::process::ExitCode {
    // One TLS provider for every client and server in the process: ring (pure Rust, no C build).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = args::parse();
    let result = match cli.command {
        args::Command::Serve(a) => cmd::serve::run(*a),
        args::Command::Config(c) => cmd::config::run(c),
        args::Command::Trust(c) => cmd::trust::run(c),
        args::Command::Push(a) => cmd::push::run(a),
        args::Command::Pull(a) => cmd::pull::run(a),
        args::Command::Sign(a) => cmd::notation::sign(a),
        args::Command::Verify(a) => cmd::notation::verify(a),
        args::Command::Import(a) => cmd::import::run(a),
        args::Command::Login(a) => cmd::admin::login(a),
        args::Command::Logout(a) => cmd::admin::logout(a),
        args::Command::User(c) => cmd::admin::user(c),
        args::Command::Sp(c) => cmd::admin::sp(c),
        args::Command::AdminUser(c) => cmd::admin::admin_user(c),
        args::Command::Admin(c) => cmd::recovery::run(c),
        args::Command::Role(c) => cmd::admin::role(c),
        args::Command::ScopeMap(c) => cmd::admin::scope_map(c),
        args::Command::Token(c) => cmd::admin::token(c),
        args::Command::Audit(c) => cmd::admin::audit(c),
        args::Command::Repository(c) => cmd::repository::run(c),
        args::Command::Store(c) => cmd::store::run(c),
        args::Command::Backup(a) => cmd::backup::backup(a),
        args::Command::Restore(a) => cmd::backup::restore(a),
        args::Command::Gc(a) => cmd::gc::run(a),
        args::Command::Webhook(c) => cmd::webhook::run(c),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
