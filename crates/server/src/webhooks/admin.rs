//! `/api/v1/webhooks`: list, create, delete (Owner only, enforced by the authorization layer;
//! audited without secrets). A secret appears only in the response that generated it.

// Client input is handled here: no panicking shortcuts and no unchecked arithmetic.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::IpAddr;

use axum::Json;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_auth::policy::RepositoryPattern;
use berth_oci::RepoName;
use berth_storage::WebhookRecord;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Action, Webhooks, check_uri, rfc3339_ms, shown_uri};
use crate::AppState;
use crate::error::AdminError;

/// Webhooks one registry may have; each event costs a queue row per webhook.
const MAX_WEBHOOKS: usize = 100;
/// Repository scopes one webhook may list.
const MAX_SCOPES: usize = 100;
/// Bounds of a secret given by the caller (bytes).
const MIN_SECRET: usize = 16;
const MAX_SECRET: usize = 1024;
const MAX_URI: usize = 2048;

type R = Result<Response, AdminError>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    name: String,
    uri: String,
    actions: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    secret: Option<String>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A scope as role assignments take it (`name` or `name/*`), except `*`: no scope means every
/// repository already.
fn scope(s: &str) -> Result<RepositoryPattern, AdminError> {
    if s == "*" {
        return Err(AdminError::invalid(
            "scopes",
            "'*' is what no scope means: leave scopes out for every repository",
        ));
    }
    let p = RepositoryPattern::parse(s).map_err(|e| AdminError::invalid("scopes", e))?;
    let name = s.strip_suffix("/*").unwrap_or(s);
    name.parse::<RepoName>().map_err(|e| {
        AdminError::invalid(
            "scopes",
            format!("{s:?} is not a repository name or 'name/*': {}", e.message),
        )
    })?;
    Ok(p)
}

pub(crate) async fn handle(
    state: &AppState,
    method: &Method,
    rest: &[&str],
    body: &Bytes,
    actor: &str,
    ip: Option<IpAddr>,
) -> R {
    let Some(w) = state.webhooks() else {
        return Err(AdminError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "UNAVAILABLE",
            message: "this server does not run webhooks".into(),
            field: None,
        });
    };
    let audit = |action: &'static str, target: String, detail: String| async move {
        state
            .access
            .audit(actor, action, &target, ip, &detail)
            .await;
    };
    match (method, rest) {
        (&Method::GET, []) => list(w).await,
        (&Method::POST, []) => {
            let (resp, name, detail) = create(state, w, body, actor).await?;
            audit("webhook.created", name, detail).await;
            Ok(resp)
        }
        (&Method::DELETE, [name]) => {
            if !w.store.webhook_delete(name).await? {
                return Err(AdminError::not_found(format!("no webhook named {name}")));
            }
            w.changed().await;
            tracing::info!(webhook = %name, actor, "webhook deleted");
            audit("webhook.deleted", (*name).to_owned(), String::new()).await;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(AdminError::not_found("no such admin endpoint")),
    }
}

async fn list(w: &Webhooks) -> R {
    let out: Vec<Value> = w
        .store
        .webhook_list()
        .await?
        .iter()
        .map(|(r, s)| {
            json!({
                "name": r.name,
                "uri": r.uri,
                "actions": r.actions,
                "scopes": r.scopes,
                "created": rfc3339_ms(r.created.saturating_mul(1000)),
                "createdBy": r.created_by,
                "delivered": s.delivered,
                "failed": s.failed,
                "pending": s.pending,
                "lastAttempt": s.last_attempt.map(rfc3339_ms),
                "lastSuccess": s.last_success.map(rfc3339_ms),
                "lastError": s.last_error,
            })
        })
        .collect();
    Ok(Json(json!(out)).into_response())
}

/// Creates a webhook: the response (with a generated secret, once), its name and the audit
/// detail.
async fn create(
    state: &AppState,
    w: &Webhooks,
    body: &Bytes,
    actor: &str,
) -> Result<(Response, String, String), AdminError> {
    let c: Create = serde_json::from_slice(body).map_err(AdminError::bad_body)?;
    if !valid_name(&c.name) {
        return Err(AdminError::invalid(
            "name",
            format!(
                "{:?} is not a valid webhook name (1 to 64 letters, digits, '.', '_', '-')",
                c.name
            ),
        ));
    }
    if c.uri.len() > MAX_URI {
        return Err(AdminError::invalid(
            "uri",
            format!("longer than {MAX_URI} bytes"),
        ));
    }
    check_uri(&c.uri).map_err(|e| AdminError::invalid("uri", e))?;
    if c.actions.is_empty() {
        return Err(AdminError::invalid(
            "actions",
            "at least one of push, delete, trust, policy",
        ));
    }
    let mut actions: Vec<String> = Vec::new();
    for a in &c.actions {
        let a = Action::parse(a.trim()).ok_or_else(|| {
            AdminError::invalid(
                "actions",
                format!("{a:?} is not one of push, delete, trust, policy"),
            )
        })?;
        if !actions.iter().any(|x| x == a.as_str()) {
            actions.push(a.as_str().to_owned());
        }
    }
    if c.scopes.len() > MAX_SCOPES {
        return Err(AdminError::invalid(
            "scopes",
            format!("at most {MAX_SCOPES}"),
        ));
    }
    let mut scopes: Vec<String> = Vec::new();
    for s in &c.scopes {
        let p = scope(s)?;
        if !scopes.iter().any(|x| x == p.as_str()) {
            scopes.push(p.as_str().to_owned());
        }
    }
    let (secret, generated) = match c.secret {
        Some(s) => {
            if s.len() < MIN_SECRET || s.len() > MAX_SECRET {
                return Err(AdminError::invalid(
                    "secret",
                    format!("must be {MIN_SECRET} to {MAX_SECRET} bytes"),
                ));
            }
            (zeroize::Zeroizing::new(s), false)
        }
        None => (
            zeroize::Zeroizing::new(berth_auth::password::generate_secret()?),
            true,
        ),
    };
    if w.store.webhook_list().await?.len() >= MAX_WEBHOOKS {
        return Err(AdminError::conflict(format!(
            "a registry may have {MAX_WEBHOOKS} webhooks; delete one first"
        )));
    }
    let sealed = w
        .seal(&c.name, secret.as_bytes())
        .map_err(AdminError::internal)?;
    let rec = WebhookRecord {
        name: c.name.clone(),
        uri: c.uri.clone(),
        actions,
        scopes,
        secret: Bytes::from(sealed),
        created: state.access.now_secs(),
        created_by: actor.to_owned(),
    };
    match w.store.webhook_insert(&rec).await {
        Ok(()) => {}
        Err(berth_storage::Error::Conflict(_)) => {
            return Err(AdminError::conflict(format!(
                "a webhook named {} exists",
                c.name
            )));
        }
        Err(e) => return Err(e.into()),
    }
    w.changed().await;
    let scopes_shown = if rec.scopes.is_empty() {
        "every repository".to_owned()
    } else {
        rec.scopes.join(",")
    };
    let detail = format!(
        "{} for {} on {}",
        shown_uri(&rec.uri),
        rec.actions.join(","),
        scopes_shown
    );
    tracing::info!(webhook = %rec.name, actor, "webhook created: {detail}");
    let mut out = json!({
        "name": rec.name,
        "uri": rec.uri,
        "actions": rec.actions,
        "scopes": rec.scopes,
        "created": rfc3339_ms(rec.created.saturating_mul(1000)),
        "createdBy": rec.created_by,
    });
    if generated && let Some(o) = out.as_object_mut() {
        o.insert("secret".into(), json!(secret.as_str()));
    }
    Ok((
        (StatusCode::CREATED, Json(out)).into_response(),
        rec.name,
        detail,
    ))
}
