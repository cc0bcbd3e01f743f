//! Admin JSON API (`/api/v1/…`), for Owners only (enforced by the authorization layer): settings
//! (content trust, anonymous pull), trust reset, identities, role assignments, scope maps,
//! repository-scoped tokens and the audit log. Every change is audited; secrets appear only in
//! the one response that creates them.

// Handlers short-circuit with a ready response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, Request};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_auth::policy::{RepositoryPattern, ScopeMap, ScopeMapAction, ScopeMapRule};
use berth_storage::{IdentityRecord, ScopeMapRecord};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{query_get, query_pairs_str};
use crate::AppState;
use crate::access::{ADMIN_ACCOUNT, OWNER, now_secs};

const MAX_BODY: usize = 64 * 1024;

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"errors": [{"code": code, "message": message.into()}]})),
    )
        .into_response()
}

fn bad(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
}

fn not_found(what: impl Into<String>) -> Response {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", what)
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "admin API");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        "internal error",
    )
}

fn body_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

fn identity_json(r: &IdentityRecord) -> Value {
    json!({
        "name": r.name, "kind": r.kind, "label": r.label, "disabled": r.disabled,
        "expires": r.expires, "scopeMap": r.scope_map, "created": r.created,
    })
}

/// Names users pick: no separators that would clash with scopes or URLs.
fn valid_identity_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

struct Ctx<'a> {
    state: &'a AppState,
    actor: String,
    ip: Option<IpAddr>,
}

impl Ctx<'_> {
    async fn audit(&self, action: &str, target: &str, detail: &str) {
        self.state
            .access
            .audit(&self.actor, action, target, self.ip, detail)
            .await;
    }
}

pub(crate) async fn handle(state: &AppState, path: &str, req: Request) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let actor = req
        .extensions()
        .get::<crate::access::Caller>()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let method = req.method().clone();
    let query = query_pairs_str(req.uri().query().unwrap_or(""));
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                "body larger than 64 KiB",
            );
        }
    };
    let cx = Ctx { state, actor, ip };
    let segs: Vec<&str> = path.split('/').collect();
    let r = match (method.clone(), segs.as_slice()) {
        (Method::GET, ["config", "content-trust"]) => content_trust_show(&cx).await,
        (Method::PUT | Method::PATCH, ["config", "content-trust"]) => {
            content_trust_update(&cx, &body).await
        }
        (Method::GET, ["config", "anonymous-pull"]) => {
            Ok(Json(json!({"enabled": state.access.anonymous_pull().await})).into_response())
        }
        (Method::PUT | Method::PATCH, ["config", "anonymous-pull"]) => {
            anonymous_pull_update(&cx, &body).await
        }
        (Method::DELETE, ["trust", ..]) => trust_reset(&cx, &path["trust/".len()..]).await,
        (Method::GET, ["users"]) => list(&cx, Some("user")).await,
        (Method::POST, ["users"]) => create_identity(&cx, &body, "user").await,
        (Method::DELETE, ["users", name]) => delete_identity(&cx, name, "user").await,
        (Method::POST, ["users", name, op @ ("disable" | "enable")]) => {
            set_disabled(&cx, name, *op == "disable").await
        }
        (Method::GET, ["service-principals"]) => list(&cx, Some("service-principal")).await,
        (Method::POST, ["service-principals"]) => {
            create_identity(&cx, &body, "service-principal").await
        }
        (Method::DELETE, ["service-principals", name]) => {
            delete_identity(&cx, name, "service-principal").await
        }
        (Method::GET, ["admin-user"]) => admin_user(&cx, None).await,
        (Method::POST, ["admin-user", op @ ("enable" | "disable")]) => {
            admin_user(&cx, Some(*op == "enable")).await
        }
        (Method::GET, ["role-assignments"]) => role_list(&cx, query_get(&query, "assignee")).await,
        (Method::POST, ["role-assignments"]) => role_change(&cx, &body, true).await,
        (Method::DELETE, ["role-assignments"]) => role_change(&cx, &body, false).await,
        (Method::GET, ["scope-maps"]) => scope_map_list(&cx).await,
        (Method::POST, ["scope-maps"]) => scope_map_create(&cx, &body).await,
        (Method::GET, ["tokens"]) => list(&cx, Some("token")).await,
        (Method::POST, ["tokens"]) => token_create(&cx, &body).await,
        (Method::DELETE, ["tokens", name]) => delete_identity(&cx, name, "token").await,
        (Method::POST, ["tokens", name, op @ ("disable" | "enable")]) => {
            set_disabled(&cx, name, *op == "disable").await
        }
        (Method::GET, ["audit"]) => audit_list(&cx, &query).await,
        (Method::POST, ["signing-keys", "rotate"]) => {
            match state.access.load_or_rotate_keys(true).await {
                Ok(()) => {
                    cx.audit("token-key.rotated", "registry", "").await;
                    Ok(Json(json!({"rotated": true})).into_response())
                }
                Err(e) => Err(internal(e)),
            }
        }
        _ => Err(not_found("no such admin endpoint")),
    };
    r.unwrap_or_else(|e| e)
}

type R = Result<Response, Response>;

async fn content_trust_show(cx: &Ctx<'_>) -> R {
    let on = cx.state.trust.enabled().await.map_err(internal)?;
    Ok(Json(json!({"status": if on { "enabled" } else { "disabled" }})).into_response())
}

#[derive(Deserialize)]
struct ContentTrustUpdate {
    status: String,
}

async fn content_trust_update(cx: &Ctx<'_>, body: &Bytes) -> R {
    let u: ContentTrustUpdate = body_json(body)?;
    let on = match u.status.as_str() {
        "enabled" => true,
        "disabled" => false,
        other => {
            return Err(bad(format!(
                "status must be enabled or disabled, not {other:?}"
            )));
        }
    };
    let wiped = cx.state.trust.set_enabled(on).await.map_err(internal)?;
    tracing::warn!(enabled = on, wiped_guns = wiped, "content trust switched");
    let action = if on {
        "content-trust.enabled"
    } else {
        "content-trust.disabled"
    };
    cx.audit(
        action,
        "registry",
        &format!("wiped {wiped} trust collections"),
    )
    .await;
    Ok(Json(json!({"status": u.status, "wipedTrustCollections": wiped})).into_response())
}

#[derive(Deserialize)]
struct AnonymousPull {
    enabled: bool,
}

async fn anonymous_pull_update(cx: &Ctx<'_>, body: &Bytes) -> R {
    let u: AnonymousPull = body_json(body)?;
    cx.state
        .access
        .set_anonymous_pull(u.enabled)
        .await
        .map_err(internal)?;
    cx.audit(
        "anonymous-pull.updated",
        "registry",
        &format!("enabled={}", u.enabled),
    )
    .await;
    Ok(Json(json!({"enabled": u.enabled})).into_response())
}

async fn trust_reset(cx: &Ctx<'_>, name: &str) -> R {
    let repo = name
        .parse::<berth_oci::RepoName>()
        .map_err(|e| error(StatusCode::BAD_REQUEST, "NAME_INVALID", e.message))?;
    // Every GUN that names this repository (through any of our host names) goes.
    let guns = cx.state.trust.guns().await.map_err(internal)?;
    let mut wiped = Vec::new();
    for g in guns
        .into_iter()
        .filter(|g| cx.state.guns.repository(g).as_ref() == Some(&repo))
    {
        if cx.state.trust.delete(&g).await.map_err(internal)? {
            wiped.push(g);
        }
    }
    tracing::warn!(repository = %repo, guns = ?wiped, "trust data reset");
    cx.audit("trust.reset", repo.as_str(), &format!("{wiped:?}"))
        .await;
    Ok(Json(json!({"repository": repo.as_str(), "wipedTrustCollections": wiped})).into_response())
}

async fn list(cx: &Ctx<'_>, kind: Option<&str>) -> R {
    let v = cx
        .state
        .access
        .identities()
        .identity_list(kind)
        .await
        .map_err(internal)?;
    Ok(Json(json!(v.iter().map(identity_json).collect::<Vec<_>>())).into_response())
}

#[derive(Deserialize)]
struct CreateIdentity {
    name: String,
    #[serde(default)]
    password: Option<String>,
}

async fn create_identity(cx: &Ctx<'_>, body: &Bytes, kind: &str) -> R {
    let c: CreateIdentity = body_json(body)?;
    if !valid_identity_name(&c.name) || c.name == ADMIN_ACCOUNT {
        return Err(bad(format!(
            "{:?} is not a valid name (letters, digits, '.', '_', '-', '@'; 'admin' is reserved)",
            c.name
        )));
    }
    // Service principals log in with a generated id; their name is a label.
    let login = if kind == "service-principal" {
        format!(
            "sp-{}",
            berth_auth::password::generate_secret().map_err(internal)?[..16].to_lowercase()
        )
    } else {
        c.name.clone()
    };
    let (password, generated) = match c.password.filter(|p| !p.is_empty() && kind == "user") {
        Some(p) => (p, false),
        None => (
            berth_auth::password::generate_secret().map_err(internal)?,
            true,
        ),
    };
    let rec = (cx.state.access)
        .new_identity(&login, kind, &c.name, &password)
        .await
        .map_err(internal)?;
    match cx.state.access.identities().identity_insert(&rec).await {
        Ok(()) => {}
        Err(berth_storage::Error::Conflict(_)) => {
            return Err(error(
                StatusCode::CONFLICT,
                "CONFLICT",
                format!("{} already exists", c.name),
            ));
        }
        Err(e) => return Err(internal(e)),
    }
    cx.audit(&format!("{kind}.created"), &login, "").await;
    let mut out = identity_json(&rec);
    if generated {
        out["password"] = json!(password);
    }
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn delete_identity(cx: &Ctx<'_>, name: &str, kind: &str) -> R {
    let ids = cx.state.access.identities();
    match ids.identity_get(name).await.map_err(internal)? {
        Some(r) if r.kind == kind => {}
        _ => return Err(not_found(format!("no {kind} named {name}"))),
    }
    if name == OWNER && kind == "user" && cx.actor == OWNER {
        return Err(bad("the owner cannot delete itself"));
    }
    ids.identity_delete(name).await.map_err(internal)?;
    cx.audit(&format!("{kind}.deleted"), name, "").await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_disabled(cx: &Ctx<'_>, name: &str, disabled: bool) -> R {
    let ids = cx.state.access.identities();
    let Some(mut rec) = ids.identity_get(name).await.map_err(internal)? else {
        return Err(not_found(format!("no identity named {name}")));
    };
    rec.disabled = disabled;
    ids.identity_update(&rec).await.map_err(internal)?;
    cx.audit(
        if disabled {
            "identity.disabled"
        } else {
            "identity.enabled"
        },
        name,
        "",
    )
    .await;
    Ok(Json(identity_json(&rec)).into_response())
}

/// The shared admin account: off by default; enabling (re)generates and shows its password.
async fn admin_user(cx: &Ctx<'_>, enable: Option<bool>) -> R {
    let ids = cx.state.access.identities();
    let existing = ids.identity_get(ADMIN_ACCOUNT).await.map_err(internal)?;
    match enable {
        None => Ok(Json(json!({
            "username": ADMIN_ACCOUNT,
            "enabled": existing.as_ref().is_some_and(|r| !r.disabled),
        }))
        .into_response()),
        Some(false) => {
            if let Some(mut r) = existing {
                r.disabled = true;
                ids.identity_update(&r).await.map_err(internal)?;
            }
            cx.audit("admin-user.disabled", ADMIN_ACCOUNT, "").await;
            Ok(Json(json!({"username": ADMIN_ACCOUNT, "enabled": false})).into_response())
        }
        Some(true) => {
            let password = berth_auth::password::generate_secret().map_err(internal)?;
            let rec = (cx.state.access)
                .new_identity(ADMIN_ACCOUNT, "admin", ADMIN_ACCOUNT, &password)
                .await
                .map_err(internal)?;
            if existing.is_some() {
                ids.identity_update(&rec).await.map_err(internal)?;
            } else {
                ids.identity_insert(&rec).await.map_err(internal)?;
            }
            cx.audit("admin-user.enabled", ADMIN_ACCOUNT, "password regenerated")
                .await;
            Ok(
                Json(json!({"username": ADMIN_ACCOUNT, "enabled": true, "password": password}))
                    .into_response(),
            )
        }
    }
}

#[derive(Deserialize)]
struct RoleChange {
    role: String,
    assignee: String,
    #[serde(default)]
    repository: Option<String>,
}

async fn role_list(cx: &Ctx<'_>, assignee: Option<String>) -> R {
    let v = cx
        .state
        .access
        .identities()
        .role_list(assignee.as_deref())
        .await
        .map_err(internal)?;
    let out: Vec<Value> = v
        .iter()
        .map(|r| json!({"id": r.id, "role": r.role, "assignee": r.assignee, "repository": r.repository}))
        .collect();
    Ok(Json(json!(out)).into_response())
}

async fn role_change(cx: &Ctx<'_>, body: &Bytes, assign: bool) -> R {
    let c: RoleChange = body_json(body)?;
    let role: berth_auth::Role = c
        .role
        .parse()
        .map_err(|e: berth_auth::Error| bad(e.to_string()))?;
    if let Some(p) = &c.repository {
        RepositoryPattern::parse(p).map_err(|e| bad(e.to_string()))?;
    }
    let ids = cx.state.access.identities();
    if assign
        && ids
            .identity_get(&c.assignee)
            .await
            .map_err(internal)?
            .is_none()
    {
        return Err(not_found(format!("no identity named {}", c.assignee)));
    }
    let role = role.as_str();
    let repo = c.repository.as_deref();
    let detail = format!("{role} on {}", repo.unwrap_or("the registry"));
    if assign {
        let id = ids
            .role_assign(role, &c.assignee, repo)
            .await
            .map_err(internal)?;
        cx.audit("role.assigned", &c.assignee, &detail).await;
        Ok((
            StatusCode::CREATED,
            Json(json!({"id": id, "role": role, "assignee": c.assignee, "repository": repo})),
        )
            .into_response())
    } else if ids
        .role_unassign(role, &c.assignee, repo)
        .await
        .map_err(internal)?
    {
        cx.audit("role.unassigned", &c.assignee, &detail).await;
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found("no such role assignment"))
    }
}

#[derive(Deserialize)]
struct ScopeMapCreate {
    name: String,
    repository: String,
    actions: Vec<String>,
    #[serde(default)]
    description: String,
}

async fn scope_map_list(cx: &Ctx<'_>) -> R {
    let v = cx
        .state
        .access
        .identities()
        .scope_map_list()
        .await
        .map_err(internal)?;
    let out: Vec<Value> = v
        .iter()
        .map(|m| json!({"name": m.name, "rules": serde_json::from_str::<Value>(&m.rules).unwrap_or(Value::Null), "description": m.description}))
        .collect();
    Ok(Json(json!(out)).into_response())
}

/// Creates a scope map, or adds a rule to an existing one.
async fn scope_map_create(cx: &Ctx<'_>, body: &Bytes) -> R {
    let c: ScopeMapCreate = body_json(body)?;
    if !valid_identity_name(&c.name) {
        return Err(bad(format!("{:?} is not a valid scope map name", c.name)));
    }
    let repository = RepositoryPattern::parse(&c.repository).map_err(|e| bad(e.to_string()))?;
    let actions = c
        .actions
        .iter()
        .map(|a| a.parse::<ScopeMapAction>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let ids = cx.state.access.identities();
    let mut map = match ids.scope_map_get(&c.name).await.map_err(internal)? {
        Some(m) => ScopeMap::from_json(&m.rules).map_err(internal)?,
        None => ScopeMap { rules: Vec::new() },
    };
    map.rules.push(ScopeMapRule {
        repository,
        actions,
    });
    let rec = ScopeMapRecord {
        name: c.name.clone(),
        rules: map.to_json(),
        description: c.description,
        created: now_secs(),
    };
    ids.scope_map_put(&rec).await.map_err(internal)?;
    cx.audit("scope-map.updated", &c.name, &rec.rules).await;
    Ok((StatusCode::CREATED, Json(json!({"name": rec.name, "rules": serde_json::from_str::<Value>(&rec.rules).unwrap_or(Value::Null)}))).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenCreate {
    name: String,
    scope_map: String,
    #[serde(default)]
    expires_in_days: Option<i64>,
}

async fn token_create(cx: &Ctx<'_>, body: &Bytes) -> R {
    let c: TokenCreate = body_json(body)?;
    if !valid_identity_name(&c.name) || c.name == ADMIN_ACCOUNT {
        return Err(bad(format!("{:?} is not a valid token name", c.name)));
    }
    let ids = cx.state.access.identities();
    if ids
        .scope_map_get(&c.scope_map)
        .await
        .map_err(internal)?
        .is_none()
    {
        return Err(not_found(format!("no scope map named {}", c.scope_map)));
    }
    let password = berth_auth::password::generate_secret().map_err(internal)?;
    let rec = IdentityRecord {
        expires: c.expires_in_days.map(|d| now_secs() + d * 86_400),
        scope_map: Some(c.scope_map.clone()),
        ..(cx.state.access)
            .new_identity(&c.name, "token", &c.name, &password)
            .await
            .map_err(internal)?
    };
    match ids.identity_insert(&rec).await {
        Ok(()) => {}
        Err(berth_storage::Error::Conflict(_)) => {
            return Err(error(
                StatusCode::CONFLICT,
                "CONFLICT",
                format!("{} already exists", c.name),
            ));
        }
        Err(e) => return Err(internal(e)),
    }
    cx.audit(
        "token.created",
        &c.name,
        &format!("scope map {}", c.scope_map),
    )
    .await;
    let mut out = identity_json(&rec);
    out["password"] = json!(password);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn audit_list(cx: &Ctx<'_>, query: &[(String, String)]) -> R {
    let after = query_get(query, "after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let limit = query_get(query, "limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000usize)
        .min(10_000);
    let v = cx
        .state
        .access
        .identities()
        .audit_list(after, limit)
        .await
        .map_err(internal)?;
    let out: Vec<Value> = v
        .iter()
        .map(|a| json!({"id": a.id, "at": a.at, "actor": a.actor, "action": a.action, "target": a.target, "client": a.client, "detail": a.detail}))
        .collect();
    Ok(Json(json!(out)).into_response())
}
