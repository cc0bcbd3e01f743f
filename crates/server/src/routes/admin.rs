//! Admin JSON API (`/api/v1/…`): the registry-wide content-trust switch and per-repository trust
//! reset. Until token auth lands, only loopback clients may call it (the admin CLI on the
//! registry's own machine).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Request};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"errors": [{"code": code, "message": message.into()}]})),
    )
        .into_response()
}

fn trust_failure(e: berth_trust::Error) -> Response {
    tracing::error!(error = %e, "admin trust operation");
    error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string())
}

#[derive(Deserialize)]
struct ContentTrustUpdate {
    status: String,
}

pub(crate) async fn handle(state: &AppState, path: &str, req: Request) -> Response {
    let loopback = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| c.0.ip().is_loopback());
    if !loopback {
        return error(
            StatusCode::FORBIDDEN,
            "DENIED",
            "the admin API is only reachable from the registry's own machine until authentication is configured",
        );
    }
    let method = req.method().clone();
    match (method, path) {
        (Method::GET, "config/content-trust") => match state.trust.enabled().await {
            Ok(on) => {
                Json(json!({"status": if on { "enabled" } else { "disabled" }})).into_response()
            }
            Err(e) => trust_failure(e),
        },
        (Method::PUT | Method::PATCH, "config/content-trust") => {
            let body = match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
                Ok(b) => b,
                Err(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "SIZE_INVALID",
                        "body too large",
                    );
                }
            };
            let update: ContentTrustUpdate = match serde_json::from_slice(&body) {
                Ok(u) => u,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_REQUEST",
                        format!("expected {{\"status\":\"enabled|disabled\"}}: {e}"),
                    );
                }
            };
            let on = match update.status.as_str() {
                "enabled" => true,
                "disabled" => false,
                other => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_REQUEST",
                        format!("status must be enabled or disabled, not {other:?}"),
                    );
                }
            };
            match state.trust.set_enabled(on).await {
                Ok(wiped) => {
                    tracing::warn!(enabled = on, wiped_guns = wiped, "content trust switched");
                    Json(json!({"status": update.status, "wipedTrustCollections": wiped}))
                        .into_response()
                }
                Err(e) => trust_failure(e),
            }
        }
        (Method::DELETE, p) if p.starts_with("trust/") => {
            let name = &p["trust/".len()..];
            let repo = match name.parse::<berth_oci::RepoName>() {
                Ok(r) => r,
                Err(e) => return error(StatusCode::BAD_REQUEST, "NAME_INVALID", e.message),
            };
            // Every GUN that names this repository (through any of our host names) goes.
            let guns = match state.trust.guns().await {
                Ok(g) => g,
                Err(e) => return trust_failure(e),
            };
            let mut wiped = Vec::new();
            for g in guns
                .into_iter()
                .filter(|g| state.guns.repository(g).as_ref() == Some(&repo))
            {
                match state.trust.delete(&g).await {
                    Ok(true) => wiped.push(g),
                    Ok(false) => {}
                    Err(e) => return trust_failure(e),
                }
            }
            tracing::warn!(repository = %repo, guns = ?wiped, "trust data reset");
            Json(json!({"repository": repo.as_str(), "wipedTrustCollections": wiped}))
                .into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such admin endpoint"),
    }
}
