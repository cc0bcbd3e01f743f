//! `berth serve`: open the embedded store, set up TLS, serve until SIGTERM/SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_registry::Registry;
use berth_server::{AppState, Listener};
use berth_storage_embedded::{FsBlobStore, SqliteMetadataStore};

use crate::args::ServeArgs;
use crate::config::{ServeConfig, Tls};

/// Abandoned upload sessions are removed after this long.
const UPLOAD_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const PURGE_EVERY: Duration = Duration::from_secs(3600);

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = ServeConfig::resolve(args)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(cfg))
}

fn cert_names(cfg: &ServeConfig) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(h) = hostname::get()
        && let Some(h) = h.to_str()
        && !h.is_empty()
    {
        names.push(h.to_lowercase());
    }
    if let Some(h) = &cfg.hostname {
        names.push(h.to_lowercase());
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let data = &cfg.data_dir;
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating data dir {}", data.display()))?;
    let blobs = FsBlobStore::open(data)
        .with_context(|| format!("opening blob store in {}", data.display()))?;
    let meta =
        SqliteMetadataStore::open(data.join("metadata.db")).context("opening metadata database")?;
    let registry = Arc::new(Registry::new(Arc::new(blobs), Arc::new(meta)));

    let socket = std::net::TcpListener::bind(&cfg.listen)
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr: SocketAddr = socket.local_addr()?;
    let (listener, scheme) = match &cfg.tls {
        Tls::Off => (Listener::Plain, "http"),
        Tls::Files { cert, key } => (
            Listener::Tls(berth_server::tls::server_config(cert, key)?),
            "https",
        ),
        Tls::Generated => {
            let generated =
                berth_server::tls::ensure_generated(&data.join("tls"), &cert_names(&cfg))?;
            if generated.ca_created {
                print_trust_hint(&generated.ca_cert, addr);
            }
            (
                Listener::Tls(berth_server::tls::server_config(
                    &generated.cert,
                    &generated.key,
                )?),
                "https",
            )
        }
    };

    let purge_registry = registry.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_EVERY);
        loop {
            tick.tick().await;
            let cutoff = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64 - UPLOAD_MAX_AGE.as_secs() as i64)
                .unwrap_or(0);
            match purge_registry.purge_uploads(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "purged abandoned upload sessions"),
                Err(e) => tracing::warn!(error = %e, "purging upload sessions"),
            }
        }
    });

    let app = berth_server::router(AppState { registry });
    // Tests and scripts parse this exact line.
    let mut out = std::io::stdout();
    writeln!(out, "listening on {scheme}://{addr}")?;
    out.flush()?;
    tracing::info!(%addr, data_dir = %data.display(), "berth serving");
    berth_server::serve(socket, listener, app, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

fn print_trust_hint(ca: &std::path::Path, addr: SocketAddr) {
    let ca = std::fs::canonicalize(ca).unwrap_or_else(|_| ca.to_path_buf());
    let hostport = if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    eprintln!(
        "\nBerth generated a private CA for its TLS certificate: {ca}\n\
         Make clients trust it (once per client machine):\n  \
         docker (pulls/pushes):  mkdir -p /etc/docker/certs.d/{hp} && cp {ca} /etc/docker/certs.d/{hp}/ca.crt\n  \
         docker trust / notary:  mkdir -p ~/.docker/tls/{hp} && cp {ca} ~/.docker/tls/{hp}/ca.crt\n  \
         skopeo:                 --cert-dir DIR (with {ca} copied into DIR as ca.crt)\n",
        ca = ca.display(),
        hp = hostport
    );
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
