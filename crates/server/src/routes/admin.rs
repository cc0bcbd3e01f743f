//! Admin JSON API (`/api/v1/…`), for Owners only (enforced by the authorization layer): settings
//! (content trust, anonymous pull), trust reset, identities, role assignments, scope maps,
//! repository-scoped tokens and the audit log. Every change is audited; secrets appear only in
//! the one response that creates them.

// Client input is handled here: no panicking shortcuts and no unchecked arithmetic.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
// Handlers short-circuit with a ready response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, Request};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_auth::policy::{RepositoryPattern, ScopeMap, ScopeMapAction, ScopeMapRule};
use berth_auth::{Action, IdentityKind, Resource};
use berth_oci::RepoName;
use berth_storage::{IdentityKind as StoredKind, IdentityRecord, ScopeMapRecord};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{query_get, query_pairs_str};
use crate::AppState;
use crate::error::AdminError;
use berth_access::{ADMIN_ACCOUNT, Error as AccessError, OWNER, REFRESH_TOKEN_USER};

const MAX_BODY: usize = 64 * 1024;

fn body_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(AdminError::bad_body)
}

/// Longest lifetime of a repository-scoped token; longer-lived ones are created without expiry.
const MAX_TOKEN_DAYS: i64 = 3650;
/// Audit entries per page when `limit` is absent, and the most served.
const AUDIT_PAGE: usize = 1000;
const AUDIT_MAX: usize = 10_000;

/// A repository or pattern (`name`, `name/*`, `*`) as role assignments and scope maps take it.
/// The name must be one the registry accepts: a pattern no repository can match (`../x`) is a
/// mistake that would otherwise grant nothing, silently.
fn repository_pattern(field: &str, s: &str) -> Result<RepositoryPattern, AdminError> {
    let pattern = RepositoryPattern::parse(s).map_err(|e| AdminError::invalid(field, e))?;
    if s != "*" {
        let name = s.strip_suffix("/*").unwrap_or(s);
        name.parse::<RepoName>().map_err(|e| {
            AdminError::invalid(
                field,
                format!(
                    "{s:?} is not a repository name, 'name/*' or '*': {}",
                    e.message
                ),
            )
        })?;
    }
    Ok(pattern)
}

/// Query parameters of a listing: each known one at most once, nothing else.
fn check_params(query: &[(String, String)], known: &[&str]) -> Result<(), AdminError> {
    for (i, (k, _)) in query.iter().enumerate() {
        if !known.contains(&k.as_str()) {
            return Err(AdminError::invalid(
                k,
                format!("unknown parameter (supported: {})", known.join(", ")),
            ));
        }
        if query
            .iter()
            .skip(i.saturating_add(1))
            .any(|(k2, _)| k2 == k)
        {
            return Err(AdminError::invalid(k, "given more than once"));
        }
    }
    Ok(())
}

/// A decimal integer parameter within `range`.
fn int_param<T>(
    query: &[(String, String)],
    key: &str,
    range: std::ops::RangeInclusive<T>,
) -> Result<Option<T>, AdminError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(v) = query_get(query, key) else {
        return Ok(None);
    };
    let out_of_range = || {
        AdminError::invalid(
            key,
            format!(
                "{v:?} is not an integer from {} to {}",
                range.start(),
                range.end()
            ),
        )
    };
    // Digits only: no sign, spaces or '+' that `parse` would accept or misread.
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(out_of_range());
    }
    match v.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(out_of_range()),
    }
}

fn identity_json(r: &IdentityRecord) -> Value {
    json!({
        "name": r.name, "kind": r.kind.as_str(), "label": r.label, "disabled": r.disabled,
        "expires": r.expires.map(rfc3339), "scopeMap": r.scope_map, "created": rfc3339(r.created),
    })
}

/// Names users pick: no separators that would clash with scopes or URLs.
fn valid_identity_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

/// Who acts, from where: the admin API's and the web UI's handlers share it.
pub(crate) struct Ctx<'a> {
    pub(crate) state: &'a AppState,
    pub(crate) actor: String,
    pub(crate) ip: Option<IpAddr>,
    /// The request, for webhook events of what the admin API changes.
    pub(crate) event_cx: crate::webhooks::EventContext,
}

impl Ctx<'_> {
    async fn emit(&self, event: crate::webhooks::Event) {
        crate::webhooks::emit(self.state, event, &self.event_cx).await;
    }
}

impl Ctx<'_> {
    pub(crate) async fn audit(&self, action: &str, target: &str, detail: &str) {
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
    let caller = req.extensions().get::<berth_access::Caller>().cloned();
    let actor = caller.as_ref().map(|c| c.name.clone()).unwrap_or_default();
    let method = req.method().clone();
    let query = query_pairs_str(req.uri().query().unwrap_or(""));
    let event_cx = crate::webhooks::EventContext::of(&req);
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return AdminError::too_large(MAX_BODY).into_response(),
    };
    let cx = Ctx {
        state,
        actor,
        ip,
        event_cx,
    };
    let segs: Vec<&str> = path.split('/').collect();
    if segs.first() == Some(&"repositories") {
        return repositories(&cx, caller.as_ref(), &method, path, &query)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    if let Some((&"webhooks", rest)) = segs.split_first() {
        let rest: Vec<&str> = rest.iter().copied().filter(|s| !s.is_empty()).collect();
        return crate::webhooks::admin(state, &method, &rest, &body, &cx.actor, ip)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    if segs.first() == Some(&"attestation") {
        return crate::attest::admin(&cx, &method, path, &body)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    if segs.first() == Some(&"policy") {
        return policy_route(&cx, &method, path, &body)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
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
        (Method::DELETE, ["trust", ..]) => trust_reset(&cx, path.strip_prefix("trust/")).await,
        (Method::GET, ["users"]) => list(&cx, Some(StoredKind::User)).await,
        (Method::POST, ["users"]) => create_identity(&cx, &body, StoredKind::User).await,
        (Method::DELETE, ["users", name]) => delete_identity(&cx, name, StoredKind::User).await,
        (Method::POST, ["users", name, op @ ("disable" | "enable")]) => {
            set_disabled(&cx, name, *op == "disable").await
        }
        (Method::POST, ["users", name, "password"]) => {
            user_password(&cx, name, &body, caller.as_ref()).await
        }
        (Method::GET, ["service-principals"]) => {
            list(&cx, Some(StoredKind::ServicePrincipal)).await
        }
        (Method::POST, ["service-principals"]) => {
            create_identity(&cx, &body, StoredKind::ServicePrincipal).await
        }
        (Method::DELETE, ["service-principals", name]) => {
            delete_identity(&cx, name, StoredKind::ServicePrincipal).await
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
        (Method::DELETE, ["scope-maps", name]) => scope_map_delete(&cx, name).await,
        (Method::GET, ["tokens"]) => list(&cx, Some(StoredKind::Token)).await,
        (Method::POST, ["tokens"]) => token_create(&cx, &body).await,
        (Method::DELETE, ["tokens", name]) => delete_identity(&cx, name, StoredKind::Token).await,
        (Method::POST, ["tokens", name, op @ ("disable" | "enable")]) => {
            set_disabled(&cx, name, *op == "disable").await
        }
        (Method::GET, ["audit"]) => audit_list(&cx, &query).await,
        (Method::POST, ["store", "check"]) => store_check(&cx, &body).await,
        (Method::POST, ["gc"]) => gc_run(&cx, &body).await,
        (Method::POST, ["signing-keys", "rotate"]) => {
            match state.access.load_or_rotate_keys(true).await {
                Ok(()) => {
                    cx.audit("token-key.rotated", "registry", "").await;
                    Ok(Json(json!({"rotated": true})).into_response())
                }
                Err(e) => Err(e.into()),
            }
        }
        _ => Err(AdminError::not_found("no such admin endpoint")),
    };
    r.unwrap_or_else(IntoResponse::into_response)
}

type R = Result<Response, AdminError>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StoreCheckBody {
    #[serde(default)]
    repair: bool,
    #[serde(default)]
    verify_digests: bool,
    /// Seconds: younger upload data and temp files are left alone (default an hour).
    #[serde(default)]
    min_age_secs: Option<i64>,
}

/// `berth store check` through the server: the report as JSON. A repair that did anything is
/// audited (one entry with the counts).
async fn store_check(cx: &Ctx<'_>, body: &Bytes) -> R {
    let b: StoreCheckBody = if body.is_empty() {
        StoreCheckBody::default()
    } else {
        body_json(body)?
    };
    let report = cx
        .state
        .registry
        .check_store(berth_registry::CheckOptions {
            repair: b.repair,
            verify_digests: b.verify_digests,
            min_age_secs: b
                .min_age_secs
                .unwrap_or(berth_registry::DEFAULT_MIN_AGE_SECS)
                .max(0),
            ..berth_registry::CheckOptions::default()
        })
        .await
        .map_err(AdminError::internal)?;
    if report.repaired() > 0 {
        let detail = format!(
            "repaired {} of {} findings ({})",
            report.repaired(),
            report.findings.len(),
            report.counts()
        );
        cx.audit("store.repaired", "registry", &detail).await;
    }
    Ok(Json(report).into_response())
}

async fn content_trust_show(cx: &Ctx<'_>) -> R {
    let on = cx.state.trust.enabled().await?;
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
            return Err(AdminError::invalid(
                "status",
                format!("must be enabled or disabled, not {other:?}"),
            ));
        }
    };
    let wiped = content_trust_set(cx, on).await?;
    Ok(Json(json!({"status": u.status, "wipedTrustCollections": wiped})).into_response())
}

/// Switches content trust on or off (off wipes every trust collection; images stay), logged
/// and audited; returns how many trust collections were wiped. The web UI's switch too.
pub(crate) async fn content_trust_set(cx: &Ctx<'_>, on: bool) -> Result<u64, AdminError> {
    let wiped = cx.state.trust.set_enabled(on).await?;
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
    Ok(wiped)
}

/// The scope of a policy path: the registry-wide default, or one repository.
const POLICY_DEFAULT: &str = "_default";

/// A policy as the API shows it; `accept` only when it is not the default (DCT alone), so
/// what clients read from a DCT-only registry is unchanged.
fn policy_json(p: berth_trust::Policy) -> Value {
    let mut v = serde_json::Map::new();
    v.insert("signedPullsOnly".into(), p.signed_pulls_only.into());
    v.insert("immutableSignedTags".into(), p.immutable_signed_tags.into());
    if !p.accept.dct_only() {
        v.insert("accept".into(), json!(p.accept.names()));
    }
    Value::Object(v)
}

/// Verification material as shown back: the trust policy, each trust store's certificates
/// (subject, and the PEM), each cosign key (its label, and the PEM).
fn material_json(m: &berth_trust::policy::Material) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(tp) = &m.trust_policy {
        out.insert("trustPolicy".into(), tp.clone());
    }
    if let Some(ts) = &m.trust_store {
        let stores: serde_json::Map<String, Value> = ts
            .iter()
            .map(|(name, pems)| {
                let certs: Vec<Value> = pems
                    .iter()
                    .map(|pem| {
                        let subjects: Vec<String> =
                            berth_notation::cert::Cert::from_pem_bundle(pem.as_bytes())
                                .map(|cs| cs.into_iter().map(|c| c.subject).collect())
                                .unwrap_or_default();
                        json!({"subjects": subjects, "pem": pem})
                    })
                    .collect();
                (name.clone(), Value::Array(certs))
            })
            .collect();
        out.insert("trustStore".into(), Value::Object(stores));
    }
    if let Some(keys) = &m.cosign_keys {
        let keys: Vec<Value> = keys
            .iter()
            .enumerate()
            .map(|(i, pem)| json!({"label": crate::policy_formats::key_label(i, pem), "pem": pem}))
            .collect();
        out.insert("cosignKeys".into(), Value::Array(keys));
    }
    Value::Object(out)
}

fn entry_json(e: &berth_trust::PolicyEntry) -> Value {
    serde_json::to_value(e).unwrap_or_else(|_| json!({}))
}

/// `GET /api/v1/policy`, `GET|PUT|DELETE /api/v1/policy/(_default|REPO)`. A repository's
/// entry overrides the default field by field; a field it does not set follows the default.
async fn policy_route(cx: &Ctx<'_>, method: &Method, path: &str, body: &Bytes) -> R {
    let trust = &cx.state.trust;
    let scope = match path.strip_prefix("policy") {
        Some("") => None,
        Some(rest) => Some(
            rest.strip_prefix('/')
                .filter(|r| !r.is_empty())
                .ok_or_else(|| AdminError::not_found("no such admin endpoint"))?,
        ),
        None => return Err(AdminError::not_found("no such admin endpoint")),
    };
    let Some(scope) = scope else {
        if *method != Method::GET {
            return Err(AdminError::not_found("no such admin endpoint"));
        }
        let default = trust.policy_entry(None).await?;
        let base = default.over(berth_trust::Policy::default());
        let repos: Vec<Value> = trust
            .policy_entries()
            .await?
            .iter()
            .map(|(repo, e)| {
                json!({"repository": repo, "set": entry_json(e), "effective": policy_json(e.over(base))})
            })
            .collect();
        return Ok(
            Json(json!({"default": policy_json(base), "repositories": repos})).into_response(),
        );
    };
    let repo = if scope == POLICY_DEFAULT {
        None
    } else {
        Some(
            scope
                .parse::<RepoName>()
                .map_err(|e| AdminError::invalid("repository", e.message))?,
        )
    };
    let name = repo.as_ref().map(RepoName::as_str);
    use berth_trust::policy::Material;
    let show = |default: &berth_trust::PolicyEntry,
                own: &berth_trust::PolicyEntry,
                default_m: &Material,
                own_m: &Material| {
        let mut v = match name {
            None => {
                json!({"scope": "default", "set": entry_json(own), "effective": policy_json(berth_trust::policy::effective(&berth_trust::PolicyEntry::default(), own))})
            }
            Some(r) => json!({
                "repository": r,
                "set": entry_json(own),
                "default": policy_json(berth_trust::policy::effective(&berth_trust::PolicyEntry::default(), default)),
                "effective": policy_json(berth_trust::policy::effective(default, own)),
            }),
        };
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "verification".into(),
                json!({
                    "set": material_json(own_m),
                    "effective": material_json(&own_m.over(default_m)),
                }),
            );
        }
        v
    };
    let default = trust.policy_entry(None).await?;
    let default_m = trust.policy_material_entry(None).await?;
    let (old, old_m) = match name {
        None => (default, default_m.clone()),
        Some(r) => (
            trust.policy_entry(Some(r)).await?,
            trust.policy_material_entry(Some(r)).await?,
        ),
    };
    let (new, new_m) = match *method {
        Method::GET => {
            return Ok(Json(show(&default, &old, &default_m, &old_m)).into_response());
        }
        Method::PUT | Method::PATCH => policy_update(old, old_m.clone(), body)?,
        // Back to the default throughout.
        Method::DELETE => (berth_trust::PolicyEntry::default(), Material::default()),
        _ => return Err(AdminError::not_found("no such admin endpoint")),
    };
    if new_m != old_m {
        material_store(cx, name, &old_m, &new_m).await?;
    }
    // A body that changed only the material is audited once, above.
    if new != old || new_m == old_m {
        policy_store(cx, name, &old, &new).await?;
    }
    let (default, default_m) = if name.is_none() {
        (new, new_m.clone())
    } else {
        (default, default_m)
    };
    Ok(Json(show(&default, &new, &default_m, &new_m)).into_response())
}

/// Stores verification material, audited as `policy.verification-updated` (what changed, by
/// field; certificates and keys are public, but only their count is logged).
async fn material_store(
    cx: &Ctx<'_>,
    repo: Option<&str>,
    old: &berth_trust::policy::Material,
    new: &berth_trust::policy::Material,
) -> Result<(), AdminError> {
    cx.state.trust.set_policy_material(repo, new).await?;
    let target = repo.unwrap_or("registry");
    let count = |m: &berth_trust::policy::Material| {
        format!(
            "trustPolicy {}, trustStore {} certificate(s), cosignKeys {}",
            if m.trust_policy.is_some() {
                "set"
            } else {
                "unset"
            },
            m.trust_store
                .as_ref()
                .map_or(0, |s| s.values().map(Vec::len).sum()),
            m.cosign_keys.as_ref().map_or(0, Vec::len)
        )
    };
    let detail = format!("{} -> {}", count(old), count(new));
    tracing::warn!(scope = target, change = %detail, "signing policy verification material updated");
    cx.audit("policy.verification-updated", target, &detail)
        .await;
    Ok(())
}

/// Stores `new` (was `old`) as the registry-wide default (`repo` None) or a repository's
/// entry, logged and audited as `policy.updated` with old -> new. The web UI's policy page too.
pub(crate) async fn policy_store(
    cx: &Ctx<'_>,
    repo: Option<&str>,
    old: &berth_trust::PolicyEntry,
    new: &berth_trust::PolicyEntry,
) -> Result<(), AdminError> {
    cx.state.trust.set_policy_entry(repo, new).await?;
    let target = repo.unwrap_or("registry");
    let detail = format!(
        "{} {} -> {}",
        repo.map_or("default", |_| "repository"),
        old.to_json(),
        new.to_json()
    );
    tracing::warn!(scope = target, change = %detail, "signing policy updated");
    cx.audit("policy.updated", target, &detail).await;
    Ok(())
}

/// A PUT body over `old`: each field `true`/`false` sets it, `null` returns it to the default,
/// an absent field stays as it is. `accept` (a list of formats), `trustPolicy` (the Notary
/// Project trust policy document), `trustStore` (`{"ca:NAME": ["PEM", ...]}`) and `cosignKeys`
/// (`["PEM", ...]`) likewise, each checked before anything is stored.
fn policy_update(
    old: berth_trust::PolicyEntry,
    old_m: berth_trust::policy::Material,
    body: &Bytes,
) -> Result<(berth_trust::PolicyEntry, berth_trust::policy::Material), AdminError> {
    let v: Value = body_json(body)?;
    let obj = v
        .as_object()
        .ok_or_else(|| AdminError::invalid("body", "must be a JSON object"))?;
    let mut new = old;
    let mut m = old_m;
    for (k, v) in obj {
        match (k.as_str(), v) {
            ("accept" | "trustPolicy" | "trustStore" | "cosignKeys", Value::Null) => {
                match k.as_str() {
                    "accept" => new.accept = None,
                    "trustPolicy" => m.trust_policy = None,
                    "trustStore" => m.trust_store = None,
                    _ => m.cosign_keys = None,
                }
                continue;
            }
            ("accept", v) => {
                let names: Vec<String> = serde_json::from_value(v.clone()).map_err(|_| {
                    AdminError::invalid(
                        "accept",
                        "must be a list of formats (dct, notation, cosign)",
                    )
                })?;
                new.accept = Some(
                    berth_trust::policy::Accept::parse(&names)
                        .map_err(|e| AdminError::invalid("accept", e))?,
                );
                continue;
            }
            ("trustPolicy", v) => {
                let bytes = serde_json::to_vec(v).unwrap_or_default();
                berth_notation::TrustPolicyDocument::parse(&bytes)
                    .map_err(|e| AdminError::invalid("trustPolicy", e.0))?;
                m.trust_policy = Some(v.clone());
                continue;
            }
            ("trustStore", v) => {
                let ts: std::collections::BTreeMap<String, Vec<String>> =
                    serde_json::from_value(v.clone()).map_err(|_| {
                        AdminError::invalid(
                            "trustStore",
                            "must map trust store names (ca:NAME, signingAuthority:NAME) to lists of PEM certificates",
                        )
                    })?;
                for (name, pems) in &ts {
                    if !(name.starts_with("ca:") || name.starts_with("signingAuthority:")) {
                        return Err(AdminError::invalid(
                            "trustStore",
                            format!(
                                "{name:?}: a trust store is named ca:NAME or signingAuthority:NAME"
                            ),
                        ));
                    }
                    for pem in pems {
                        berth_notation::cert::Cert::from_pem_bundle(pem.as_bytes()).map_err(
                            |e| AdminError::invalid("trustStore", format!("{name}: {e}")),
                        )?;
                    }
                }
                m.trust_store = Some(ts);
                continue;
            }
            ("cosignKeys", v) => {
                let keys: Vec<String> = serde_json::from_value(v.clone()).map_err(|_| {
                    AdminError::invalid("cosignKeys", "must be a list of PEM public keys")
                })?;
                for (i, pem) in keys.iter().enumerate() {
                    berth_notation::cosign::PublicKey::from_pem(pem.as_bytes()).map_err(|e| {
                        AdminError::invalid(
                            "cosignKeys",
                            format!("key {}: {e}", i.saturating_add(1)),
                        )
                    })?;
                }
                m.cosign_keys = Some(keys);
                continue;
            }
            _ => {}
        }
        let slot = match k.as_str() {
            "signedPullsOnly" => &mut new.signed_pulls_only,
            "immutableSignedTags" => &mut new.immutable_signed_tags,
            other => {
                return Err(AdminError::invalid(
                    other,
                    "unknown field (supported: signedPullsOnly, immutableSignedTags, accept, trustPolicy, trustStore, cosignKeys)",
                ));
            }
        };
        *slot = match v {
            Value::Bool(b) => Some(*b),
            Value::Null => None,
            _ => {
                return Err(AdminError::invalid(
                    k,
                    "must be true, false, or null (follow the default)",
                ));
            }
        };
    }
    Ok((new, m))
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct GcBody {
    dry_run: bool,
    untagged: bool,
    include_signed: bool,
}

/// `POST /api/v1/gc`: one collection now; answers with what it removed.
async fn gc_run(cx: &Ctx<'_>, body: &Bytes) -> R {
    let b: GcBody = if body.is_empty() {
        GcBody::default()
    } else {
        body_json(body)?
    };
    if b.include_signed && !b.untagged {
        return Err(AdminError::invalid(
            "includeSigned",
            "only means something with untagged",
        ));
    }
    let req = crate::gc::GcRequest {
        dry_run: b.dry_run,
        untagged: b.untagged,
        include_signed: b.include_signed,
    };
    let r = crate::gc::collect(cx.state, req, &cx.actor, cx.ip).await?;
    Ok(Json(json!({
        "dryRun": r.dry_run,
        "manifests": r.manifests,
        "blobs": r.blobs,
        "bytes": r.bytes,
        "orphanedBlobs": r.orphaned_blobs,
        "uploads": r.uploads,
        "blobsSkipped": r.blobs_skipped,
    }))
    .into_response())
}

#[derive(Deserialize)]
struct AnonymousPull {
    enabled: bool,
}

async fn anonymous_pull_update(cx: &Ctx<'_>, body: &Bytes) -> R {
    let u: AnonymousPull = body_json(body)?;
    cx.state.access.set_anonymous_pull(u.enabled).await?;
    cx.audit(
        "anonymous-pull.updated",
        "registry",
        &format!("enabled={}", u.enabled),
    )
    .await;
    Ok(Json(json!({"enabled": u.enabled})).into_response())
}

async fn trust_reset(cx: &Ctx<'_>, name: Option<&str>) -> R {
    let name = name.filter(|n| !n.is_empty()).ok_or_else(|| {
        AdminError::invalid("repository", "missing (DELETE /api/v1/trust/<repository>)")
    })?;
    let repo = name
        .parse::<RepoName>()
        .map_err(|e| AdminError::invalid("repository", e.message))?;
    // Every GUN that names this repository (through any of our host names) goes.
    let guns = cx.state.trust.guns().await?;
    let mut wiped = Vec::new();
    for g in guns
        .into_iter()
        .filter(|g| cx.state.guns.repository(g).as_ref() == Some(&repo))
    {
        if cx.state.trust.delete(&g).await? {
            wiped.push(g);
        }
    }
    tracing::warn!(repository = %repo, guns = ?wiped, "trust data reset");
    for gun in &wiped {
        cx.emit(crate::webhooks::Event::Trust {
            gun: gun.clone(),
            repository: repo.to_string(),
            roles: Vec::new(),
            targets: Vec::new(),
            deleted: true,
        })
        .await;
    }
    cx.audit("trust.reset", repo.as_str(), &format!("{wiped:?}"))
        .await;
    Ok(Json(json!({"repository": repo.as_str(), "wipedTrustCollections": wiped})).into_response())
}

async fn list(cx: &Ctx<'_>, kind: Option<StoredKind>) -> R {
    let v = cx.state.access.identities().identity_list(kind).await?;
    Ok(Json(json!(v.iter().map(identity_json).collect::<Vec<_>>())).into_response())
}

#[derive(Deserialize)]
struct CreateIdentity {
    name: String,
    #[serde(default)]
    password: Option<String>,
}

async fn create_identity(cx: &Ctx<'_>, body: &Bytes, kind: StoredKind) -> R {
    let c: CreateIdentity = body_json(body)?;
    if !valid_identity_name(&c.name) || c.name == ADMIN_ACCOUNT {
        return Err(AdminError::invalid(
            "name",
            format!(
                "{:?} is not a valid name (1 to 64 letters, digits, '.', '_', '-', '@'; 'admin' is reserved)",
                c.name
            ),
        ));
    }
    // Service principals log in with a generated id; their name is a label.
    let login = if kind == StoredKind::ServicePrincipal {
        let secret = berth_auth::password::generate_secret()?;
        format!(
            "sp-{}",
            secret.chars().take(16).collect::<String>().to_lowercase()
        )
    } else {
        c.name.clone()
    };
    let (password, generated) = match c
        .password
        .filter(|p| !p.is_empty() && kind == StoredKind::User)
    {
        Some(p) => {
            if let Some(why) = berth_auth::password::user_password_problem(&p) {
                return Err(AdminError::invalid("password", why));
            }
            (p, false)
        }
        None => (berth_auth::password::generate_secret()?, true),
    };
    let rec = (cx.state.access)
        .new_identity(&login, kind, &c.name, &password)
        .await?;
    match cx.state.access.identities().identity_insert(&rec).await {
        Ok(()) => {}
        Err(berth_storage::Error::Conflict(_)) => {
            return Err(AdminError::conflict(format!("{} already exists", c.name)));
        }
        Err(e) => return Err(e.into()),
    }
    cx.audit(&format!("{kind}.created"), &login, "").await;
    let mut out = identity_json(&rec);
    if generated && let Some(o) = out.as_object_mut() {
        o.insert("password".into(), json!(password));
    }
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PasswordChange {
    /// Absent: one is generated and returned once.
    #[serde(default)]
    password: Option<String>,
    /// The current password: required when a user changes its own without the Owner role.
    #[serde(default)]
    old_password: Option<String>,
}

/// Sets a user's password: an Owner for any user, a user for itself with its current password.
/// The identity's tokens (access and refresh) and remembered verifications are bound to the old
/// hash, so they stop working at once.
async fn user_password(
    cx: &Ctx<'_>,
    name: &str,
    body: &Bytes,
    caller: Option<&berth_access::Caller>,
) -> R {
    let c: PasswordChange = body_json(body)?;
    let caller = caller.ok_or_else(|| AdminError::internal("no caller on a checked request"))?;
    let owner = caller.grants.allows(Action::Admin, Resource::Registry);
    let itself = caller.name == name && caller.kind == IdentityKind::User;
    if !owner && !itself {
        return Err(AdminError::denied(format!(
            "{} may change only its own password (an Owner may set any user's)",
            caller.name
        )));
    }
    let ids = cx.state.access.identities();
    let rec = match ids.identity_get(name).await? {
        Some(r) if r.kind == StoredKind::User && name != REFRESH_TOKEN_USER => r,
        _ => return Err(AdminError::not_found(format!("no user named {name}"))),
    };
    let (password, generated) = match c.password.filter(|p| !p.is_empty()) {
        Some(p) => {
            if let Some(why) = berth_auth::password::user_password_problem(&p) {
                return Err(AdminError::invalid("password", why));
            }
            (p, false)
        }
        None => (berth_auth::password::generate_secret()?, true),
    };
    let old = c.old_password.filter(|p| !p.is_empty());
    if old.is_none() && !owner {
        return Err(AdminError::invalid(
            "oldPassword",
            format!(
                "changing your own password needs your current one \
                 (berth user password {name} --old-password-stdin)"
            ),
        ));
    }
    if let Some(old) = &old {
        // A login in all but name: throttled and audited like one, so a stolen session cannot
        // be used to guess the password behind it.
        match cx.state.access.authenticate(name, old, cx.ip).await {
            Ok(_) => {}
            Err(AccessError::BadCredentials | AccessError::BadToken(_)) => {
                return Err(AdminError::denied_field(
                    "oldPassword",
                    format!("oldPassword: not the current password of {name}"),
                ));
            }
            Err(e @ AccessError::Throttled(_)) => {
                return crate::error::auth_error(crate::error::Wire::Admin, e)
                    .ok_or_else(|| AdminError::internal("throttled without an answer"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let rec = match cx.state.access.set_password(rec, &password).await {
        Ok(r) => r,
        Err(e @ AccessError::Throttled(_)) => {
            return crate::error::auth_error(crate::error::Wire::Admin, e)
                .ok_or_else(|| AdminError::internal("throttled without an answer"));
        }
        Err(AccessError::BadCredentials) => {
            return Err(AdminError::not_found(format!("no user named {name}")));
        }
        Err(e) => return Err(e.into()),
    };
    let mut detail = if old.is_some() {
        "with the current password".to_owned()
    } else {
        "set by an Owner".to_owned()
    };
    if generated {
        detail.push_str("; generated");
    }
    cx.audit("user.password-changed", name, &detail).await;
    let mut out = identity_json(&rec);
    if generated && let Some(o) = out.as_object_mut() {
        o.insert("password".into(), json!(password));
    }
    Ok(Json(out).into_response())
}

async fn delete_identity(cx: &Ctx<'_>, name: &str, kind: StoredKind) -> R {
    identity_delete(cx, name, kind).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Deletes identity `name` of `kind` (the owner never deletes itself), audited. The web UI's
/// token deletion too.
pub(crate) async fn identity_delete(
    cx: &Ctx<'_>,
    name: &str,
    kind: StoredKind,
) -> Result<(), AdminError> {
    let ids = cx.state.access.identities();
    match ids.identity_get(name).await? {
        Some(r) if r.kind == kind => {}
        _ => return Err(AdminError::not_found(format!("no {kind} named {name}"))),
    }
    if name == OWNER && kind == StoredKind::User && cx.actor == OWNER {
        return Err(AdminError::invalid(
            "name",
            "the owner cannot delete itself",
        ));
    }
    ids.identity_delete(name).await?;
    cx.audit(&format!("{kind}.deleted"), name, "").await;
    Ok(())
}

async fn set_disabled(cx: &Ctx<'_>, name: &str, disabled: bool) -> R {
    let rec = identity_set_disabled(cx, name, disabled).await?;
    Ok(Json(identity_json(&rec)).into_response())
}

/// Disables or enables identity `name` (at once: every request re-reads it), audited. The web
/// UI's buttons too.
pub(crate) async fn identity_set_disabled(
    cx: &Ctx<'_>,
    name: &str,
    disabled: bool,
) -> Result<IdentityRecord, AdminError> {
    let ids = cx.state.access.identities();
    let Some(mut rec) = ids.identity_get(name).await? else {
        return Err(AdminError::not_found(format!("no identity named {name}")));
    };
    rec.disabled = disabled;
    ids.identity_update(&rec).await?;
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
    Ok(rec)
}

/// The shared admin account: off by default; enabling (re)generates and shows its password.
async fn admin_user(cx: &Ctx<'_>, enable: Option<bool>) -> R {
    let ids = cx.state.access.identities();
    let existing = ids.identity_get(ADMIN_ACCOUNT).await?;
    match enable {
        None => Ok(Json(json!({
            "username": ADMIN_ACCOUNT,
            "enabled": existing.as_ref().is_some_and(|r| !r.disabled),
        }))
        .into_response()),
        Some(false) => {
            if let Some(mut r) = existing {
                r.disabled = true;
                ids.identity_update(&r).await?;
            }
            cx.audit("admin-user.disabled", ADMIN_ACCOUNT, "").await;
            Ok(Json(json!({"username": ADMIN_ACCOUNT, "enabled": false})).into_response())
        }
        Some(true) => {
            let password = berth_auth::password::generate_secret()?;
            let rec = (cx.state.access)
                .new_identity(ADMIN_ACCOUNT, StoredKind::Admin, ADMIN_ACCOUNT, &password)
                .await?;
            if existing.is_some() {
                ids.identity_update(&rec).await?;
            } else {
                ids.identity_insert(&rec).await?;
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
        .await?;
    let out: Vec<Value> = v
        .iter()
        .map(|r| json!({"id": r.id, "role": r.role.as_str(), "assignee": r.assignee, "repository": r.repository}))
        .collect();
    Ok(Json(json!(out)).into_response())
}

async fn role_change(cx: &Ctx<'_>, body: &Bytes, assign: bool) -> R {
    let c: RoleChange = body_json(body)?;
    let role: berth_auth::Role = c
        .role
        .parse()
        .map_err(|e: berth_auth::Error| AdminError::invalid("role", e))?;
    if let Some(p) = &c.repository {
        repository_pattern("repository", p)?;
    }
    let ids = cx.state.access.identities();
    if assign && ids.identity_get(&c.assignee).await?.is_none() {
        return Err(AdminError::not_found(format!(
            "assignee: no identity named {}",
            c.assignee
        )));
    }
    let role = berth_access::stored_role(role);
    let repo = c.repository.as_deref();
    let detail = format!("{role} on {}", repo.unwrap_or("the registry"));
    if assign {
        let id = ids.role_assign(role, &c.assignee, repo).await?;
        cx.audit("role.assigned", &c.assignee, &detail).await;
        Ok((
            StatusCode::CREATED,
            Json(json!({"id": id, "role": role.as_str(), "assignee": c.assignee, "repository": repo})),
        )
            .into_response())
    } else if ids.role_unassign(role, &c.assignee, repo).await? {
        cx.audit("role.unassigned", &c.assignee, &detail).await;
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(AdminError::not_found("no such role assignment"))
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
    let v = cx.state.access.identities().scope_map_list().await?;
    let mut out = Vec::with_capacity(v.len());
    for m in &v {
        // A stored map that does not parse is damage to report, not a map without rules.
        let corrupt = |e: &dyn std::fmt::Display| {
            AdminError::internal(format!("stored scope map {}: {e}", m.name))
        };
        ScopeMap::from_json(&m.rules).map_err(|e| corrupt(&e))?;
        let rules: Value = serde_json::from_str(&m.rules).map_err(|e| corrupt(&e))?;
        out.push(json!({"name": m.name, "rules": rules, "description": m.description}));
    }
    Ok(Json(json!(out)).into_response())
}

/// Creates a scope map, or adds a rule to an existing one.
async fn scope_map_create(cx: &Ctx<'_>, body: &Bytes) -> R {
    let c: ScopeMapCreate = body_json(body)?;
    if !valid_identity_name(&c.name) {
        return Err(AdminError::invalid(
            "name",
            format!("{:?} is not a valid scope map name", c.name),
        ));
    }
    let repository = repository_pattern("repository", &c.repository)?;
    if c.actions.is_empty() {
        return Err(AdminError::invalid(
            "actions",
            "at least one action is needed",
        ));
    }
    let actions = c
        .actions
        .iter()
        .map(|a| a.parse::<ScopeMapAction>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AdminError::invalid("actions", e))?;
    let ids = cx.state.access.identities();
    let mut map = match ids.scope_map_get(&c.name).await? {
        Some(m) => ScopeMap::from_json(&m.rules)?,
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
        created: cx.state.access.now_secs(),
    };
    ids.scope_map_put(&rec).await?;
    cx.audit("scope-map.updated", &c.name, &rec.rules).await;
    Ok((StatusCode::CREATED, Json(json!({"name": rec.name, "rules": serde_json::from_str::<Value>(&rec.rules).unwrap_or(Value::Null)}))).into_response())
}

/// Refused while tokens use the map: deleting it would leave them with no rights at all (or,
/// were a namesake created later, with that map's), which nobody asked for.
async fn scope_map_delete(cx: &Ctx<'_>, name: &str) -> R {
    let ids = cx.state.access.identities();
    if ids.scope_map_get(name).await?.is_none() {
        return Err(AdminError::not_found(format!("no scope map named {name}")));
    }
    let users: Vec<String> = ids
        .identity_list(Some(StoredKind::Token))
        .await?
        .into_iter()
        .filter(|t| t.scope_map.as_deref() == Some(name))
        .map(|t| t.name)
        .collect();
    if !users.is_empty() {
        return Err(AdminError::conflict(format!(
            "scope map {name} is used by token(s) {}: delete them first (berth token delete NAME)",
            users.join(", ")
        )));
    }
    ids.scope_map_delete(name).await?;
    cx.audit("scope-map.deleted", name, "").await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenCreate {
    name: String,
    scope_map: String,
    /// Read by hand so that a float, a string or an out-of-range number is refused by name.
    #[serde(default)]
    expires_in_days: Option<Value>,
}

async fn token_create(cx: &Ctx<'_>, body: &Bytes) -> R {
    let c: TokenCreate = body_json(body)?;
    let days = match c.expires_in_days.as_ref().filter(|v| !v.is_null()) {
        None => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            AdminError::invalid(
                "expiresInDays",
                format!(
                    "{v} is not a whole number of days from 1 to {MAX_TOKEN_DAYS} (omit it for a token that does not expire)"
                ),
            )
        })?),
    };
    let (rec, password) = token_create_record(cx, &c.name, &c.scope_map, days).await?;
    let mut out = identity_json(&rec);
    if let Some(o) = out.as_object_mut() {
        o.insert("password".into(), json!(password));
    }
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// Creates a repository-scoped token using scope map `scope_map`, expiring after `days` (none:
/// never); returns it with its generated password, which is shown this once and never again.
pub(crate) async fn token_create_record(
    cx: &Ctx<'_>,
    name: &str,
    scope_map: &str,
    days: Option<i64>,
) -> Result<(IdentityRecord, String), AdminError> {
    let c = TokenCreate {
        name: name.to_owned(),
        scope_map: scope_map.to_owned(),
        expires_in_days: days.map(Value::from),
    };
    if !valid_identity_name(&c.name) || c.name == ADMIN_ACCOUNT {
        return Err(AdminError::invalid(
            "name",
            format!("{:?} is not a valid token name", c.name),
        ));
    }
    let expires = match c.expires_in_days.as_ref().filter(|v| !v.is_null()) {
        None => None,
        Some(v) => match v.as_i64() {
            Some(d @ 1..=MAX_TOKEN_DAYS) => Some(
                d.checked_mul(86_400)
                    .and_then(|secs| cx.state.access.now_secs().checked_add(secs))
                    .ok_or_else(|| AdminError::invalid("expiresInDays", "out of range"))?,
            ),
            _ => {
                return Err(AdminError::invalid(
                    "expiresInDays",
                    format!(
                        "{v} is not a whole number of days from 1 to {MAX_TOKEN_DAYS} (omit it for a token that does not expire)"
                    ),
                ));
            }
        },
    };
    let ids = cx.state.access.identities();
    if ids.scope_map_get(&c.scope_map).await?.is_none() {
        return Err(AdminError::not_found(format!(
            "scopeMap: no scope map named {}",
            c.scope_map
        )));
    }
    let password = berth_auth::password::generate_secret()?;
    let rec = IdentityRecord {
        expires,
        scope_map: Some(c.scope_map.clone()),
        ..(cx.state.access)
            .new_identity(&c.name, StoredKind::Token, &c.name, &password)
            .await?
    };
    match ids.identity_insert(&rec).await {
        Ok(()) => {}
        Err(berth_storage::Error::Conflict(_)) => {
            return Err(AdminError::conflict(format!("{} already exists", c.name)));
        }
        Err(e) => return Err(e.into()),
    }
    cx.audit(
        "token.created",
        &c.name,
        &format!("scope map {}", c.scope_map),
    )
    .await;
    Ok((rec, password))
}

/// Audit rows read from the store to answer one filtered listing, at most.
const AUDIT_SCAN_MAX: usize = 200_000;

/// One listing of the audit log: entries after `after`, at most `limit`, filtered.
pub(crate) struct AuditQuery {
    pub(crate) after: i64,
    pub(crate) limit: usize,
    /// Unix ms.
    pub(crate) since_ms: Option<i64>,
    /// An action or a prefix of dot-separated parts (`trust` matches `trust.updated`).
    pub(crate) action: Option<String>,
    /// Actor or target.
    pub(crate) identity: Option<String>,
    pub(crate) repository: Option<String>,
}

async fn audit_list(cx: &Ctx<'_>, query: &[(String, String)]) -> R {
    let q = audit_query_params(cx, query)?;
    let out: Vec<Value> = audit_query(cx, &q)
        .await?
        .iter()
        .map(|a| {
            json!({
                "id": a.id, "at": rfc3339_millis(a.at), "actor": a.actor, "action": a.action,
                "target": a.target, "client": a.client, "detail": a.detail,
            })
        })
        .collect();
    Ok(Json(json!(out)).into_response())
}

/// The audit listing's query parameters (`after`, `limit`, `since`, `action`, `identity`,
/// `repository`; empty filters are none).
pub(crate) fn audit_query_params(
    cx: &Ctx<'_>,
    query: &[(String, String)],
) -> Result<AuditQuery, AdminError> {
    check_params(
        query,
        &[
            "after",
            "limit",
            "since",
            "action",
            "identity",
            "repository",
        ],
    )?;
    let after = int_param(query, "after", 0..=i64::MAX)?.unwrap_or(0);
    let limit = int_param(query, "limit", 1..=AUDIT_MAX)?.unwrap_or(AUDIT_PAGE);
    let since_ms = match query_get(query, "since") {
        None => None,
        Some(v) => Some(
            parse_since(&v, cx.state.access.now_secs())
                .and_then(|s| s.checked_mul(1000))
                .ok_or_else(|| {
                    AdminError::invalid(
                        "since",
                        format!(
                            "{v:?} is neither an RFC 3339 time (2026-11-30T18:00:00Z) nor an age (90m, 24h, 7d)"
                        ),
                    )
                })?,
        ),
    };
    Ok(AuditQuery {
        after,
        limit,
        since_ms,
        action: query_get(query, "action").filter(|a| !a.is_empty()),
        identity: query_get(query, "identity").filter(|a| !a.is_empty()),
        repository: query_get(query, "repository").filter(|a| !a.is_empty()),
    })
}

/// The audit entries `q` selects, oldest first.
pub(crate) async fn audit_query(
    cx: &Ctx<'_>,
    q: &AuditQuery,
) -> Result<Vec<berth_storage::AuditRecord>, AdminError> {
    let (since_ms, action, identity, repository, limit) =
        (q.since_ms, &q.action, &q.identity, &q.repository, q.limit);
    let keep = |a: &berth_storage::AuditRecord| {
        since_ms.is_none_or(|s| a.at >= s)
            && action.as_deref().is_none_or(|f| {
                a.action == f
                    || a.action
                        .strip_prefix(f)
                        .is_some_and(|rest| rest.starts_with('.'))
            })
            && identity
                .as_deref()
                .is_none_or(|i| a.actor == i || a.target == i)
            && repository
                .as_deref()
                .is_none_or(|r| mentions_repository(&a.target, r))
    };
    let ids = cx.state.access.identities();
    let mut out = Vec::new();
    let mut cursor = q.after;
    let mut scanned = 0usize;
    'pages: loop {
        let page = ids.audit_list(cursor, AUDIT_PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor = last.id;
        scanned = scanned.saturating_add(page.len());
        let full_page = page.len() >= AUDIT_PAGE;
        for a in page.into_iter().filter(|a| keep(a)) {
            out.push(a);
            if out.len() >= limit {
                break 'pages;
            }
        }
        if !full_page || scanned >= AUDIT_SCAN_MAX {
            break;
        }
    }
    Ok(out)
}

/// Whether an audit target names repository `r`: `r` itself, `r:tag`, `r@digest`, a trust GUN
/// `host:port/r`, or a registry path `/v2/r/…`.
fn mentions_repository(target: &str, r: &str) -> bool {
    let plain = |t: &str| {
        t == r
            || t.strip_prefix(r)
                .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('@'))
    };
    plain(target)
        || target
            .split_once('/')
            .is_some_and(|(host, rest)| host.contains(':') && plain(rest))
        || target
            .strip_prefix("/v2/")
            .and_then(|p| p.strip_prefix(r))
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `since`: an RFC 3339 time, or an age before `now` (`90m`, `24h`, `7d`, `30s`); Unix seconds.
fn parse_since(v: &str, now: i64) -> Option<i64> {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0
        && let Some(unit) = v.get(digits..).filter(|u| u.len() == 1)
        && let Some(unit) = unit.chars().next()
    {
        let n: i64 = v.get(..digits)?.parse().ok()?;
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        if n < 0 {
            return None;
        }
        return now.checked_sub(n.checked_mul(secs)?);
    }
    parse_rfc3339(v)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to Unix seconds (fractions dropped).
fn parse_rfc3339(v: &str) -> Option<i64> {
    let num = |s: Option<&str>| -> Option<i64> {
        let s = s?;
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, rest) = v.split_once(['T', 't', ' '])?;
    let year = num(date.get(0..4))?;
    let month = num(date.get(5..7))?;
    let day = num(date.get(8..10))?;
    if date.len() != 10 || date.get(4..5) != Some("-") || date.get(7..8) != Some("-") {
        return None;
    }
    let (h, m, sec) = (
        num(rest.get(0..2))?,
        num(rest.get(3..5))?,
        num(rest.get(6..8))?,
    );
    if rest.get(2..3) != Some(":") || rest.get(5..6) != Some(":") {
        return None;
    }
    let mut tail = rest.get(8..)?;
    if let Some(frac) = tail.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        tail = frac.get(digits..)?;
    }
    let offset = match tail {
        "Z" | "z" => 0,
        _ => {
            let sign = match tail.get(0..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            if tail.len() != 6 || tail.get(3..4) != Some(":") {
                return None;
            }
            // Both parts are two digits: the sum is far from overflowing.
            num(tail.get(1..3))?
                .checked_mul(3600)?
                .checked_add(num(tail.get(4..6))?.checked_mul(60)?)?
                .checked_mul(sign)?
        }
    };
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?)
            .ok()?;
    let t = date
        .with_hms(
            u8::try_from(h).ok()?,
            u8::try_from(m).ok()?,
            u8::try_from(sec).ok()?,
        )
        .ok()?
        .assume_utc()
        .unix_timestamp();
    t.checked_sub(offset)
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds.
pub(crate) fn rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let s = rfc3339(secs);
    match s.strip_suffix('Z') {
        Some(base) => format!("{base}.{frac:03}Z"),
        None => s,
    }
}

/// What an `/api/v1/repositories/…` path names. Repository path components never start with
/// `_` (the distribution name grammar), so `_tags` and `_manifests` cannot clash with a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RepoTarget<'a> {
    /// `NAME`
    Repository,
    /// `NAME/_tags`
    Tags,
    /// `NAME/_tags/TAG`
    Tag(&'a str),
    /// `NAME/_manifests/DIGEST`
    Manifest(&'a str),
}

/// Splits the part after `repositories/` into the repository name and what it names.
pub(crate) fn repository_path(rest: &str) -> Option<(&str, RepoTarget<'_>)> {
    let (name, target) = match rest.split_once("/_") {
        None => (rest, RepoTarget::Repository),
        Some((name, tail)) => match tail.split_once('/') {
            None if tail == "tags" => (name, RepoTarget::Tags),
            Some(("tags", t)) if !t.is_empty() && !t.contains('/') => (name, RepoTarget::Tag(t)),
            Some(("manifests", d)) if !d.is_empty() && !d.contains('/') => {
                (name, RepoTarget::Manifest(d))
            }
            _ => return None,
        },
    };
    (!name.is_empty()).then_some((name, target))
}

/// Unix seconds as RFC 3339 UTC (`2026-11-30T18:05:02Z`).
pub(crate) fn rfc3339(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => secs.to_string(),
    }
}

/// Most repositories and tags one listing returns.
const LIST_MAX: usize = 10_000;

async fn repositories(
    cx: &Ctx<'_>,
    caller: Option<&berth_access::Caller>,
    method: &Method,
    path: &str,
    query: &[(String, String)],
) -> R {
    let rest = path.strip_prefix("repositories").unwrap_or("");
    if rest.is_empty() {
        if *method != Method::GET {
            return Err(AdminError::not_found("no such admin endpoint"));
        }
        check_params(query, &[])?;
        return repository_list(cx, caller).await;
    }
    let (name, target) = rest
        .strip_prefix('/')
        .and_then(repository_path)
        .ok_or_else(|| AdminError::not_found("no such admin endpoint"))?;
    let repo = name
        .parse::<RepoName>()
        .map_err(|e| AdminError::invalid("repository", e.message))?;
    match (method, target) {
        (&Method::GET, RepoTarget::Tags) => show_tags(cx, caller, &repo).await,
        (&Method::DELETE, RepoTarget::Repository) => {
            let Some(gone) = cx.state.registry.metadata().delete_repo(&repo).await? else {
                return Err(AdminError::not_found(format!("no repository named {repo}")));
            };
            let detail = format!(
                "deleted {} manifest(s) and {} tag(s)",
                gone.manifests, gone.tags
            );
            tracing::warn!(repository = %repo, actor = %cx.actor, "{detail}");
            cx.audit("repository.deleted", repo.as_str(), &detail).await;
            cx.emit(crate::webhooks::Event::Delete {
                repository: repo.to_string(),
                deleted: crate::webhooks::Deleted::Repository,
            })
            .await;
            Ok(Json(json!({
                "repository": repo.as_str(),
                "deletedManifests": gone.manifests,
                "deletedTags": gone.tags,
                "note": "trust data is kept (berth trust reset REPO wipes it); blob bytes stay until garbage collection",
            }))
            .into_response())
        }
        (&Method::DELETE, RepoTarget::Tag(t)) => {
            let tag = t
                .parse::<berth_oci::Tag>()
                .map_err(|e| AdminError::invalid("tag", e.message))?;
            // The tag's digest, for the webhook event (read only when one wants it).
            let digest = if crate::webhooks::wanted(
                cx.state,
                crate::webhooks::Action::Delete,
                repo.as_str(),
            )
            .await
            {
                let r = berth_oci::TagOrDigest::Tag(tag.clone());
                cx.state
                    .registry
                    .metadata()
                    .get_manifest(&repo, &r)
                    .await
                    .ok()
                    .flatten()
                    .map(|m| m.digest.to_string())
            } else {
                None
            };
            if !cx.state.registry.metadata().delete_tag(&repo, &tag).await? {
                return Err(AdminError::not_found(format!("{repo} has no tag {t}")));
            }
            let target = format!("{repo}:{t}");
            cx.audit("tag.deleted", &target, "").await;
            cx.emit(crate::webhooks::Event::Delete {
                repository: repo.to_string(),
                deleted: crate::webhooks::Deleted::Tag {
                    tag: t.to_owned(),
                    digest,
                },
            })
            .await;
            Ok(Json(json!({"repository": repo.as_str(), "deletedTag": t})).into_response())
        }
        (&Method::DELETE, RepoTarget::Manifest(d)) => {
            let digest = d
                .parse::<berth_oci::Digest>()
                .map_err(|e| AdminError::invalid("digest", e.message))?;
            if !cx
                .state
                .registry
                .metadata()
                .delete_manifest(&repo, &digest)
                .await?
            {
                return Err(AdminError::not_found(format!(
                    "{repo} has no manifest {digest}"
                )));
            }
            let target = format!("{repo}@{digest}");
            cx.audit(
                "manifest.deleted",
                &target,
                "the manifest and every tag pointing at it",
            )
            .await;
            cx.emit(crate::webhooks::Event::Delete {
                repository: repo.to_string(),
                deleted: crate::webhooks::Deleted::Manifest {
                    digest: digest.to_string(),
                },
            })
            .await;
            Ok(
                Json(json!({"repository": repo.as_str(), "deletedManifest": digest.to_string()}))
                    .into_response(),
            )
        }
        _ => Err(AdminError::not_found("no such admin endpoint")),
    }
}

async fn repository_list(cx: &Ctx<'_>, caller: Option<&berth_access::Caller>) -> R {
    let mut out = Vec::new();
    let mut last: Option<String> = None;
    let mut truncated = false;
    loop {
        let page = cx
            .state
            .registry
            .metadata()
            .list_repos(last.as_deref(), 1000)
            .await?;
        last = page.items.last().cloned();
        for r in page.items {
            // The same rule as `_catalog`: only what the caller may pull.
            if caller.is_some_and(|c| {
                c.grants.allows(
                    berth_auth::Action::Pull,
                    berth_auth::Resource::Repository(&r),
                )
            }) {
                out.push(json!({"name": r}));
            }
        }
        if out.len() >= LIST_MAX {
            out.truncate(LIST_MAX);
            truncated = true;
            break;
        }
        if !page.more {
            break;
        }
    }
    if truncated {
        tracing::warn!("repository list cut at {LIST_MAX} entries");
    }
    Ok(Json(json!(out)).into_response())
}

/// Who signed what in one GUN, docker's way (see [`berth_trust::TrustView`]): per tag, the
/// digest it resolves to and the roles listing that digest ("Repo Admin" for `targets`).
struct Signatures {
    /// (tag, sha256 hex) -> signers (name, role, key ids)
    released: std::collections::BTreeMap<(String, String), Vec<Value>>,
}

async fn gun_signatures(cx: &Ctx<'_>, gun: &str) -> Option<Signatures> {
    let view = match cx.state.trust.view_shared(gun).await {
        Ok(Some(v)) => v,
        Ok(None) => return None,
        // One GUN's unreadable trust data leaves its tags shown unsigned, not the listing failed.
        Err(e) => {
            tracing::warn!(gun, error = %e, "trust data unreadable");
            return None;
        }
    };
    let released = view
        .tags
        .iter()
        .map(|(tag, t)| {
            let signers = t
                .signers
                .iter()
                .map(|s| json!({"name": s.name, "role": s.role, "keyIds": s.key_ids}))
                .collect();
            ((tag.clone(), hex::encode(t.sha256)), signers)
        })
        .collect();
    Some(Signatures { released })
}

/// The GUNs (one per host name clients used) holding trust data for `repo`.
pub(crate) async fn repository_guns(
    cx: &Ctx<'_>,
    repo: &RepoName,
) -> Result<Vec<String>, AdminError> {
    Ok(cx
        .state
        .trust
        .guns()
        .await?
        .into_iter()
        .filter(|g| cx.state.guns.repository(g).as_ref() == Some(repo))
        .collect())
}

async fn show_tags(cx: &Ctx<'_>, caller: Option<&berth_access::Caller>, repo: &RepoName) -> R {
    let Some(tags) = cx
        .state
        .registry
        .metadata()
        .tag_details(repo, None, LIST_MAX)
        .await?
    else {
        return Err(AdminError::not_found(format!("no repository named {repo}")));
    };
    // Signatures come from the repository's trust data, for callers that may read it.
    let may_read_trust = caller.is_some_and(|c| {
        c.grants.allows(
            berth_auth::Action::TrustRead,
            berth_auth::Resource::Repository(repo.as_str()),
        )
    });
    let mut sigs = Vec::new();
    let trust_on = cx.state.trust.enabled().await.unwrap_or(false);
    if may_read_trust && trust_on {
        for g in cx.state.trust.guns().await? {
            if cx.state.guns.repository(&g).as_ref() == Some(repo)
                && let Some(s) = gun_signatures(cx, &g).await
            {
                sigs.push((g, s));
            }
        }
    }
    let out: Vec<Value> = tags
        .iter()
        .map(|t| {
            let body_len = u64::try_from(t.body.len()).unwrap_or(u64::MAX);
            // The image's size: the manifest, its config and layers (an index: its manifests).
            let size = ManifestViewSize::of(&t.body, &t.media_type).unwrap_or(body_len);
            let hex = t.digest.to_string();
            let hex = hex.strip_prefix("sha256:").unwrap_or("");
            let mut signers = Vec::new();
            let mut guns = Vec::new();
            for (g, s) in &sigs {
                if let Some(v) = s.released.get(&(t.tag.clone(), hex.to_owned())) {
                    guns.push(g.clone());
                    signers.extend(v.iter().cloned());
                }
            }
            json!({
                "name": t.tag,
                "digest": t.digest.to_string(),
                "mediaType": t.media_type,
                "size": size,
                "pushed": t.pushed.map(rfc3339),
                "signed": !guns.is_empty(),
                "signers": signers,
                "trustCollections": guns,
            })
        })
        .collect();
    Ok(Json(json!({
        "repository": repo.as_str(),
        "contentTrust": if !trust_on { "disabled" } else if may_read_trust { "enabled" } else { "not readable by the caller" },
        "tags": out,
    }))
    .into_response())
}

pub(crate) struct ManifestViewSize;

impl ManifestViewSize {
    /// The image's size: the manifest, its config and layers (an index: its manifests).
    pub(crate) fn of(body: &[u8], media_type: &str) -> Option<u64> {
        let v = berth_oci::ManifestView::parse(body, Some(media_type)).ok()?;
        let mut total = u64::try_from(body.len()).ok()?;
        for d in v
            .config
            .iter()
            .chain(v.layers.iter())
            .chain(v.manifests.iter())
        {
            total = total.checked_add(d.size)?;
        }
        Some(total)
    }
}
