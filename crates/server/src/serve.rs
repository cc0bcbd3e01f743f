//! Running the application on a bound socket, with TLS or plain HTTP, until a shutdown signal;
//! then letting in-flight requests finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;

/// How long in-flight requests may run after a shutdown signal.
const GRACE: Duration = Duration::from_secs(30);

pub enum Listener {
    Tls(Arc<rustls::ServerConfig>),
    Plain,
}

/// Serves `app` on `socket` until `shutdown` completes, then drains connections.
pub async fn serve(
    socket: std::net::TcpListener,
    listener: Listener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle: Handle<SocketAddr> = Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        h.graceful_shutdown(Some(GRACE));
    });
    let svc = app.into_make_service_with_connect_info::<SocketAddr>();
    match listener {
        Listener::Tls(cfg) => {
            axum_server::from_tcp_rustls(socket, RustlsConfig::from_config(cfg))?
                .handle(handle)
                .serve(svc)
                .await
        }
        Listener::Plain => {
            axum_server::from_tcp(socket)?
                .handle(handle)
                .serve(svc)
                .await
        }
    }
}
