//! The one authorization layer: classify the request ([`super::access::requirement`]), identify
//! the caller (Bearer token, Basic credentials or anonymous), decide, and either answer with
//! docker's challenge / denial or pass the request on with the [`Caller`] attached.

// Client input is handled here: no panicking shortcuts and no unchecked arithmetic.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use berth_auth::{Action, Resource};
use berth_oci::ErrorCode;
use serde_json::json;

use super::access::{RepoAction, Requirement, requirement};
use crate::AppState;
use crate::error::{Wire, auth_failure};
use berth_access::{Caller, Error as AccessError};

fn policy_action(a: RepoAction) -> Action {
    match a {
        RepoAction::Pull => Action::Pull,
        RepoAction::Push => Action::Push,
        RepoAction::Delete => Action::Delete,
        RepoAction::TrustRead => Action::TrustRead,
        RepoAction::TrustWrite => Action::TrustWrite,
        RepoAction::TrustDelete => Action::TrustDelete,
    }
}

pub(crate) enum Credentials {
    Bearer(String),
    Basic(String, String),
}

pub(crate) fn credentials(req: &Request) -> Option<Credentials> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Credentials::Bearer(rest.trim().to_owned()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        return Some(Credentials::Basic(u.to_owned(), p.to_owned()));
    }
    None
}

pub(crate) fn client_ip(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The name clients use for this registry (Host header), also the token audience.
pub(crate) fn host_of(req: &Request) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("localhost")
        .to_ascii_lowercase()
}

/// 401 with docker's Bearer challenge for `scope` (if any), the body in the endpoint's format.
/// A valid token that lacks scope its holder may have gets 403 with the same challenge and
/// `error="insufficient_scope"`, as RFC 6750 says: clients that reuse a token after a 401 (the
/// oras SDK) fetch a new one only after a 403, and docker, skopeo and notary ask for every scope
/// up front, so they never see it.
fn challenge(
    state: &AppState,
    wire: Wire,
    host: &str,
    scope: Option<String>,
    error: Option<&str>,
    detail: serde_json::Value,
) -> Response {
    let mut value = format!(
        "Bearer realm=\"{}://{host}/oauth2/token\",service=\"{host}\"",
        state.scheme
    );
    if let Some(s) = &scope {
        value.push_str(&format!(",scope=\"{s}\""));
    }
    if let Some(e) = error {
        value.push_str(&format!(",error=\"{e}\""));
    }
    let (status, code, message) = if error == Some("insufficient_scope") {
        (
            StatusCode::FORBIDDEN,
            ErrorCode::Denied,
            "the token lacks the scope this request needs; ask the token service for the scope in WWW-Authenticate",
        )
    } else {
        (
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "authentication required",
        )
    };
    let mut resp = auth_failure(wire, status, code, message.into(), detail);
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

fn denied(wire: Wire, message: String) -> Response {
    auth_failure(
        wire,
        StatusCode::FORBIDDEN,
        ErrorCode::Denied,
        message,
        serde_json::Value::Null,
    )
}

fn auth_error(
    state: &AppState,
    wire: Wire,
    host: &str,
    e: AccessError,
    scope: Option<String>,
) -> Response {
    let detail = json!(e.to_string());
    let invalid_token = matches!(e, AccessError::BadToken(_)).then_some("invalid_token");
    match crate::error::auth_error(wire, e) {
        Some(resp) => resp,
        None => challenge(state, wire, host, scope, invalid_token, detail),
    }
}

/// What the layer concluded.
enum Decision {
    Allow,
    /// Ask for (another) token with this scope.
    Challenge(Option<String>, Option<&'static str>),
    Deny(String),
}

fn decide(caller: &Caller, req: &Requirement) -> Decision {
    match req {
        Requirement::Public | Requirement::Invalid => Decision::Allow,
        // The ping always challenges anonymous callers, anonymous pull or not: clients (notary,
        // docker) read a 200 here as "this registry has no auth" and would then never send the
        // credentials a push needs. Anonymous pulls get an anonymous token instead.
        Requirement::Authenticated if caller.is_anonymous() => Decision::Challenge(None, None),
        Requirement::Authenticated => Decision::Allow,
        // Anonymous pull opens pulls and trust reads only, never the listing.
        Requirement::Catalog if caller.is_anonymous() => {
            Decision::Challenge(Some("registry:catalog:*".into()), None)
        }
        Requirement::Catalog => Decision::Allow,
        Requirement::RegistryRead => {
            if caller.is_anonymous() {
                Decision::Challenge(Some("registry:catalog:*".into()), None)
            } else if caller.grants.allows(Action::Catalog, Resource::Registry) {
                Decision::Allow
            } else {
                Decision::Deny(format!(
                    "{} may not read the registry-wide changefeed (needs a registry-wide pull role)",
                    caller.name
                ))
            }
        }
        Requirement::Admin => {
            if caller.grants.allows(Action::Admin, Resource::Registry) {
                Decision::Allow
            } else if caller.is_anonymous() {
                Decision::Challenge(None, None)
            } else {
                Decision::Deny(format!(
                    "{} may not use the admin API (needs the Owner role)",
                    caller.name
                ))
            }
        }
        Requirement::Metrics => {
            if caller.grants.allows(Action::Metrics, Resource::Registry) {
                Decision::Allow
            } else if caller.is_anonymous() {
                Decision::Challenge(None, None)
            } else {
                Decision::Deny(format!(
                    "{} may not read the metrics (needs the MetricsReader or Owner role)",
                    caller.name
                ))
            }
        }
        Requirement::Repository {
            repo,
            scope_name,
            actions,
        } => {
            // Built only when needed: most requests are allowed, and this runs for every one.
            let scope = || {
                let mut v: Vec<&str> = Vec::new();
                for a in actions {
                    if !v.contains(&a.scope_action()) {
                        v.push(a.scope_action());
                    }
                }
                Some(format!("repository:{scope_name}:{}", v.join(",")))
            };
            let mut token_short = false;
            for a in actions {
                if !caller
                    .grants
                    .allows(policy_action(*a), Resource::Repository(repo.as_str()))
                {
                    if caller.is_anonymous() {
                        return Decision::Challenge(scope(), None);
                    }
                    let (verb, needs) = match a {
                        RepoAction::Pull => ("pull from", ""),
                        RepoAction::Push => ("push to", ""),
                        RepoAction::Delete => ("delete in", ""),
                        RepoAction::TrustRead => ("read trust data of", ""),
                        RepoAction::TrustWrite => {
                            ("publish trust data for", " (needs AcrImageSigner)")
                        }
                        RepoAction::TrustDelete => ("delete trust data of", ""),
                    };
                    return Decision::Deny(format!(
                        "{} may not {verb} {scope_name}{needs}",
                        caller.name
                    ));
                }
                if let Some(access) = &caller.token_access
                    && !berth_auth::scope::access_allows(
                        access,
                        "repository",
                        scope_name,
                        a.scope_action(),
                    )
                {
                    token_short = true;
                }
            }
            if token_short {
                Decision::Challenge(scope(), Some("insufficient_scope"))
            } else {
                Decision::Allow
            }
        }
    }
}

/// The layer's decision for a caller the web UI identified itself (from its session cookie):
/// the same rules, and a refusal audited the same way. `Err` carries the reason.
pub(crate) async fn authorize(
    state: &AppState,
    caller: &Caller,
    need: &Requirement,
    target: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<(), String> {
    match decide(caller, need) {
        Decision::Allow => Ok(()),
        // A session caller is never anonymous and carries no token scope: a challenge here
        // would mean a page classified by mistake, so it is refused too.
        Decision::Challenge(..) => Err("log in first".into()),
        Decision::Deny(msg) => {
            state
                .access
                .audit(&caller.name, "access.denied", target, ip, &msg)
                .await;
            Err(msg)
        }
    }
}

/// The middleware.
pub(crate) async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let need = requirement(req.method(), req.uri().path(), |g| state.guns.repository(g));
    if need == Requirement::Public {
        return next.run(req).await;
    }
    let host = host_of(&req);
    let ip = client_ip(&req);
    let wire = Wire::of_path(req.uri().path());
    let scope_hint = || match &need {
        Requirement::Repository {
            scope_name,
            actions,
            ..
        } => Some(format!(
            "repository:{scope_name}:{}",
            actions
                .iter()
                .map(|a| a.scope_action())
                .collect::<Vec<_>>()
                .join(",")
        )),
        _ => None,
    };
    let caller = match credentials(&req) {
        Some(Credentials::Bearer(t)) => match state.access.bearer(&t, &host).await {
            Ok(c) => c,
            Err(e) => return auth_error(&state, wire, &host, e, scope_hint()),
        },
        Some(Credentials::Basic(u, p)) => match state.access.authenticate(&u, &p, ip).await {
            Ok(c) => c,
            Err(e) => return auth_error(&state, wire, &host, e, scope_hint()),
        },
        None if state.access.auth_disabled() => match state.access.authenticate("", "", ip).await {
            Ok(c) => c,
            Err(e) => return auth_error(&state, wire, &host, e, scope_hint()),
        },
        None => state.access.anonymous().await,
    };
    match decide(&caller, &need) {
        Decision::Allow => {}
        Decision::Challenge(scope, error) => {
            let detail = match &need {
                Requirement::Repository { scope_name, actions, .. } => json!(
                    actions
                        .iter()
                        .map(|a| json!({"Type": "repository", "Class": "", "Name": scope_name, "Action": a.scope_action()}))
                        .collect::<Vec<_>>()
                ),
                _ => serde_json::Value::Null,
            };
            let mut resp = challenge(&state, wire, &host, scope, error, detail);
            resp.extensions_mut()
                .insert(crate::LogIdentity(caller.name.clone()));
            return resp;
        }
        Decision::Deny(msg) => {
            state
                .access
                .audit(&caller.name, "access.denied", req.uri().path(), ip, &msg)
                .await;
            let mut resp = denied(wire, msg);
            resp.extensions_mut()
                .insert(crate::LogIdentity(caller.name.clone()));
            return resp;
        }
    }
    // Trust writes and wipes are audited once they succeed.
    let trust_write = match &need {
        Requirement::Repository {
            scope_name,
            actions,
            ..
        } if actions
            .iter()
            .any(|a| matches!(a, RepoAction::TrustWrite | RepoAction::TrustDelete))
            && matches!(*req.method(), Method::POST | Method::DELETE) =>
        {
            Some((scope_name.clone(), req.method().clone()))
        }
        _ => None,
    };
    // Deletions through the registry API are audited too (the admin API audits its own).
    let deletion = match &need {
        Requirement::Repository { actions, .. }
            if *req.method() == Method::DELETE
                && actions.contains(&RepoAction::Delete)
                && req.uri().path().starts_with("/v2/") =>
        {
            let p = req.uri().path().trim_start_matches("/v2/");
            p.rsplit_once("/manifests/")
                .map(|x| ("manifest.deleted", x))
                .or_else(|| p.rsplit_once("/blobs/").map(|x| ("blob.deleted", x)))
                .map(|(action, (repo, r))| {
                    let sep = if r.contains(':') { "@" } else { ":" };
                    (action, format!("{repo}{sep}{r}"))
                })
        }
        _ => None,
    };
    let actor = caller.name.clone();
    req.extensions_mut().insert(caller);
    let mut resp = next.run(req).await;
    resp.extensions_mut()
        .insert(crate::LogIdentity(actor.clone()));
    if let Some((action, target)) = deletion
        && resp.status().is_success()
    {
        state.access.audit(&actor, action, &target, ip, "").await;
    }
    // A publish audits itself in its own transaction; key rotations and wipes are audited here.
    if let Some((gun, method)) = trust_write
        && resp.status().is_success()
        && resp
            .extensions()
            .get::<super::trust::TrustAudited>()
            .is_none()
    {
        let action = if method == Method::DELETE {
            "trust.deleted"
        } else {
            "trust.updated"
        };
        state.access.audit(&actor, action, &gun, ip, "").await;
    }
    resp
}
