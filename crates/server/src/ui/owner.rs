//! The Owner's pages: the content-trust switch, users / roles / tokens, the audit log. Each
//! asks the authorization layer for `Requirement::Admin` (what the admin API needs) and
//! changes things through the admin API's own functions.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use berth_storage::IdentityKind as StoredKind;

use super::html::{self, esc, url_q};
use super::{Session, form};
use crate::AppState;
use crate::routes::access::Requirement;
use crate::routes::admin::{self, rfc3339_millis};
use crate::routes::{query_get, query_pairs};

/// The CLI's words (`berth config content-trust update --status disabled`).
const WIPE_WARNING: &str = "Disabling content trust DELETES ALL TRUST DATA (every signature of \
    every repository) irreversibly. Images are kept. Signers will have to re-initialise their \
    repositories.";

/// Audit entries per page.
const AUDIT_PER_PAGE: usize = 100;

/// The session of an Owner (else the login form or the 403 page).
fn owner_session<'a>(
    state: &'a AppState,
    req: &Request,
) -> impl Future<Output = Result<Session, Response>> + Send + 'a {
    let path = req.uri().path().to_owned();
    let load = Session::load(state, req);
    async move {
        let s = load.await?;
        s.require(state, &Requirement::Admin, &path).await?;
        Ok(s)
    }
}

fn csrf_field(s: &Session) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&s.csrf)
    )
}

fn done(s: &Session, section: &str, title: &str, body: &str) -> Response {
    html::respond(
        StatusCode::OK,
        html::page(title, Some(&s.chrome(section)), body),
    )
}

/// `GET /ui/owner/content-trust`.
pub(crate) async fn content_trust(State(state): State<AppState>, req: Request) -> Response {
    let s = match owner_session(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let on = match state.trust.enabled().await {
        Ok(on) => on,
        Err(e) => return s.error(e.into()),
    };
    content_trust_page(&s, on, None)
}

fn content_trust_page(s: &Session, on: bool, note: Option<&str>) -> Response {
    let note = note
        .map(|n| format!("<p class=\"notice ok\" id=\"message\">{}</p>", esc(n)))
        .unwrap_or_default();
    let action = if on {
        format!(
            "<form method=\"post\" action=\"/ui/owner/content-trust\">{}\
             <input type=\"hidden\" name=\"status\" value=\"disabled\">\
             <button type=\"submit\" class=\"danger\" id=\"trust-disable\">Disable content trust…</button></form>\
             <p class=\"hint\">You will be asked to confirm: disabling wipes every repository's trust data.</p>",
            csrf_field(s)
        )
    } else {
        format!(
            "<form method=\"post\" action=\"/ui/owner/content-trust\">{}\
             <input type=\"hidden\" name=\"status\" value=\"enabled\">\
             <button type=\"submit\" id=\"trust-enable\">Enable content trust</button></form>\
             <p class=\"hint\">Signers can then initialise repositories and sign tags (docker trust, notary, berth push --trust).</p>",
            csrf_field(s)
        )
    };
    let body = format!(
        "<h1>Content trust</h1>{note}<p>Docker Content Trust (Notary v1) is \
         <strong id=\"trust-status\">{}</strong> on this registry.</p>{action}",
        if on { "enabled" } else { "disabled" }
    );
    done(s, "content-trust", "Content trust", &body)
}

/// `POST /ui/owner/content-trust`: enabling applies at once; disabling first shows the
/// confirmation (type `yes`, as the CLI asks), then wipes.
pub(crate) async fn content_trust_post(State(state): State<AppState>, req: Request) -> Response {
    let s = match owner_session(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let fields = match form(&s, req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let status = query_get(&fields, "status").unwrap_or_default();
    let confirm = query_get(&fields, "confirm");
    let cx = s.ctx(&state);
    match status.as_str() {
        "enabled" => match admin::content_trust_set(&cx, true).await {
            Ok(_) => content_trust_page(&s, true, Some("Content trust enabled.")),
            Err(e) => s.error(e),
        },
        "disabled" if confirm.as_deref().map(str::trim) == Some("yes") => {
            match admin::content_trust_set(&cx, false).await {
                Ok(wiped) => content_trust_page(
                    &s,
                    false,
                    Some(&format!(
                        "Content trust disabled: {wiped} trust collection(s) wiped; images kept."
                    )),
                ),
                Err(e) => s.error(e),
            }
        }
        "disabled" => {
            let retry = if confirm.is_some() {
                "<p class=\"notice bad\" id=\"message\">Type yes to confirm; nothing was changed.</p>"
            } else {
                ""
            };
            let body = format!(
                "<h1>Disable content trust?</h1>{retry}<p class=\"notice warn\" id=\"wipe-warning\">{}</p>\
                 <form method=\"post\" action=\"/ui/owner/content-trust\" class=\"confirm\">{}\
                 <input type=\"hidden\" name=\"status\" value=\"disabled\">\
                 <label><span>Type <strong>yes</strong> to confirm</span><input name=\"confirm\" id=\"confirm\" autocomplete=\"off\" required></label>\
                 <button type=\"submit\" class=\"danger\" id=\"trust-disable-confirm\">Disable and wipe all trust data</button>\
                 <a href=\"/ui/owner/content-trust\" id=\"cancel\">Cancel</a></form>",
                esc(WIPE_WARNING),
                csrf_field(&s)
            );
            done(&s, "content-trust", "Disable content trust?", &body)
        }
        _ => html::message(
            StatusCode::BAD_REQUEST,
            Some(&s.chrome("content-trust")),
            "Bad request",
            "status must be enabled or disabled",
        ),
    }
}

/// `GET /ui/owner/access`: identities, role assignments, scope maps and tokens. No secret is
/// ever shown here (the store holds only their hashes anyway).
pub(crate) async fn access(State(state): State<AppState>, req: Request) -> Response {
    let s = match owner_session(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    access_page(&state, &s, None).await
}

async fn access_page(state: &AppState, s: &Session, created: Option<String>) -> Response {
    let ids = state.access.identities();
    let (all, roles, maps) = match (
        ids.identity_list(None).await,
        ids.role_list(None).await,
        ids.scope_map_list().await,
    ) {
        (Ok(a), Ok(r), Ok(m)) => (a, r, m),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return s.error(e.into()),
    };
    let mut people = String::new();
    let mut tokens = String::new();
    for r in &all {
        let state_cell = if r.disabled {
            "<span class=\"badge muted\">disabled</span>"
        } else {
            "<span class=\"badge ok\">enabled</span>"
        };
        let expires = r.expires.map(html::when).unwrap_or_else(|| "never".into());
        if r.kind == StoredKind::Token {
            let (op, label) = if r.disabled {
                ("enable", "Enable")
            } else {
                ("disable", "Disable")
            };
            let button = |op: &str, label: &str, cls: &str| {
                format!(
                    "<form method=\"post\" action=\"/ui/owner/tokens/{op}\" class=\"row-action\">{}\
                     <input type=\"hidden\" name=\"name\" value=\"{}\">\
                     <button type=\"submit\" class=\"small {cls}\" data-op=\"{op}\">{label}</button></form>",
                    csrf_field(s),
                    esc(&r.name)
                )
            };
            tokens.push_str(&format!(
                "<tr data-name=\"{n}\"><td>{n}</td><td>{}</td><td>{state_cell}</td><td class=\"nowrap\">{}</td><td class=\"nowrap\">{}</td><td class=\"nowrap\">{}{}</td></tr>",
                esc(r.scope_map.as_deref().unwrap_or("–")),
                esc(&expires),
                html::when(r.created),
                button(op, label, ""),
                button("delete", "Delete", "danger"),
                n = esc(&r.name),
            ));
        } else {
            let mine: Vec<String> = roles
                .iter()
                .filter(|a| a.assignee == r.name)
                .map(|a| {
                    format!(
                        "{} on {}",
                        a.role.as_str(),
                        a.repository.as_deref().unwrap_or("the registry")
                    )
                })
                .collect();
            people.push_str(&format!(
                "<tr data-name=\"{n}\"><td>{n}</td><td>{}</td><td>{}</td><td>{}</td><td>{state_cell}</td><td class=\"nowrap\">{}</td></tr>",
                esc(r.kind.as_str()),
                esc(&r.label),
                esc(&mine.join("; ")),
                html::when(r.created),
                n = esc(&r.name),
            ));
        }
    }
    let options: String = maps
        .iter()
        .map(|m| format!("<option value=\"{n}\">{n}</option>", n = esc(&m.name)))
        .collect();
    let map_rows: String = maps
        .iter()
        .map(|m| {
            format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&m.name),
                esc(&m.rules),
                esc(&m.description)
            )
        })
        .collect();
    let created = created.unwrap_or_default();
    let token_form = if maps.is_empty() {
        "<p class=\"hint\">Create a scope map first (<code>berth scope-map create</code>) to create tokens.</p>".to_owned()
    } else {
        format!(
            "<form method=\"post\" action=\"/ui/owner/tokens\" class=\"inline\" id=\"token-form\">{}\
             <label>Name <input name=\"name\" id=\"token-name\" required></label>\
             <label>Scope map <select name=\"scopeMap\" id=\"token-map\">{options}</select></label>\
             <label>Expires in days <input name=\"days\" id=\"token-days\" inputmode=\"numeric\" placeholder=\"never\"></label>\
             <button type=\"submit\" id=\"token-create\">Create token</button></form>",
            csrf_field(s)
        )
    };
    let body = format!(
        "<h1>Users &amp; tokens</h1>{created}\
         <h2>Users, service principals and the admin account</h2>\
         <table id=\"identities\"><thead><tr><th>Name</th><th>Kind</th><th>Label</th><th>Roles</th><th>State</th><th>Created</th></tr></thead><tbody>{people}</tbody></table>\
         <h2>Repository-scoped tokens</h2>\
         <table id=\"tokens\"><thead><tr><th>Name</th><th>Scope map</th><th>State</th><th>Expires</th><th>Created</th><th></th></tr></thead><tbody>{tokens}</tbody></table>\
         <h3>New token</h3>{token_form}\
         <h2>Scope maps</h2><table id=\"scope-maps\"><thead><tr><th>Name</th><th>Rules</th><th>Description</th></tr></thead><tbody>{map_rows}</tbody></table>"
    );
    done(s, "access", "Users & tokens", &body)
}

/// `POST /ui/owner/tokens`: creates a token and shows its password this once.
pub(crate) async fn token_create(State(state): State<AppState>, req: Request) -> Response {
    let s = match owner_session(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let host = crate::routes::authz::host_of(&req);
    let fields = match form(&s, req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let name = query_get(&fields, "name").unwrap_or_default();
    let map = query_get(&fields, "scopeMap").unwrap_or_default();
    let days = match query_get(&fields, "days").filter(|d| !d.trim().is_empty()) {
        None => None,
        Some(d) => match d.trim().parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return s.error(crate::error::AdminError::invalid(
                    "expires in days",
                    "a whole number of days",
                ));
            }
        },
    };
    let cx = s.ctx(&state);
    match admin::token_create_record(&cx, name.trim(), &map, days).await {
        Ok((rec, password)) => {
            let shown = format!(
                "<div class=\"notice ok secret\" id=\"new-token\"><p>Token <strong>{}</strong> created. \
                 Its password is shown <strong>this once</strong>; copy it now:</p>\
                 <p><code id=\"token-password\">{}</code></p>\
                 <p class=\"hint\">docker login {} -u {} --password-stdin</p></div>",
                esc(&rec.name),
                esc(&password),
                esc(&host),
                esc(&rec.name),
            );
            access_page(&state, &s, Some(shown)).await
        }
        Err(e) => s.error(e),
    }
}

/// `GET /ui/owner/audit?since=&action=&identity=&repository=&after=`.
pub(crate) async fn audit(State(state): State<AppState>, req: Request) -> Response {
    let s = match owner_session(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    // The form sends empty fields for filters not used: they are no filter.
    let pairs: Vec<(String, String)> = query_pairs(&req)
        .into_iter()
        .filter(|(k, v)| {
            !v.trim().is_empty()
                && ["since", "action", "identity", "repository", "after"].contains(&k.as_str())
        })
        .map(|(k, v)| (k, v.trim().to_owned()))
        .collect();
    let mut with_limit = pairs.clone();
    with_limit.push(("limit".into(), AUDIT_PER_PAGE.to_string()));
    let cx = s.ctx(&state);
    let entries = match admin::audit_query_params(&cx, &with_limit) {
        Ok(q) => match admin::audit_query(&cx, &q).await {
            Ok(v) => v,
            Err(e) => return s.error(e),
        },
        Err(e) => return s.error(e),
    };
    let val = |k: &str| esc(&query_get(&pairs, k).unwrap_or_default());
    let mut rows = String::new();
    for a in &entries {
        rows.push_str(&format!(
            "<tr><td class=\"nowrap\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&rfc3339_millis(a.at).replacen('T', " ", 1)),
            esc(&a.actor),
            esc(&a.action),
            esc(&a.target),
            esc(&a.client),
            esc(&a.detail)
        ));
    }
    let next = match entries.last() {
        Some(last) if entries.len() >= AUDIT_PER_PAGE => {
            let mut q: String = pairs
                .iter()
                .filter(|(k, _)| k != "after")
                .map(|(k, v)| format!("{}={}&", url_q(k), url_q(v)))
                .collect();
            q.push_str(&format!("after={}", last.id));
            format!(
                "<nav class=\"pager\"><a id=\"next\" href=\"/ui/owner/audit?{}\">Later entries &rarr;</a></nav>",
                esc(&q)
            )
        }
        _ => String::new(),
    };
    let table = if entries.is_empty() {
        "<p class=\"empty\" id=\"no-entries\">No entries match.</p>".to_owned()
    } else {
        format!(
            "<table id=\"audit\"><thead><tr><th>Time (UTC)</th><th>Identity</th><th>Action</th><th>Target</th>\
             <th>Client</th><th>Detail</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    let body = format!(
        "<h1>Audit log</h1>\
         <form method=\"get\" action=\"/ui/owner/audit\" class=\"inline filters\">\
         <label>Since <input name=\"since\" id=\"f-since\" value=\"{}\" placeholder=\"24h, 7d or 2026-11-30T18:00:00Z\"></label>\
         <label>Action <input name=\"action\" id=\"f-action\" value=\"{}\" placeholder=\"trust, login.failed\"></label>\
         <label>Identity <input name=\"identity\" id=\"f-identity\" value=\"{}\"></label>\
         <label>Repository <input name=\"repository\" id=\"f-repository\" value=\"{}\"></label>\
         <button type=\"submit\" id=\"filter\">Filter</button></form>\
         <p class=\"hint\">Oldest first, {AUDIT_PER_PAGE} per page. Recent: \
         <a href=\"/ui/owner/audit?since=1h\" id=\"last-hour\">last hour</a> · \
         <a href=\"/ui/owner/audit?since=24h\">last 24 hours</a> · \
         <a href=\"/ui/owner/audit?since=7d\">last 7 days</a></p>{table}{next}",
        val("since"),
        val("action"),
        val("identity"),
        val("repository"),
    );
    done(&s, "audit", "Audit log", &body)
}

/// A policy field as the form shows it: follow the default, on, off.
fn rule_select(id: &str, name: &str, value: Option<bool>, allow_default: bool) -> String {
    let opt = |v: &str, label: &str, selected: bool| {
        format!(
            "<option value=\"{v}\"{}>{label}</option>",
            if selected { " selected" } else { "" }
        )
    };
    let mut out = format!("<select name=\"{name}\" id=\"{id}\">");
    if allow_default {
        out.push_str(&opt("default", "follow the default", value.is_none()));
    }
    out.push_str(&opt("on", "on", value == Some(true)));
    out.push_str(&opt(
        "off",
        "off",
        value == Some(false) || (!allow_default && value.is_none()),
    ));
    out.push_str("</select>");
    out
}

fn on_off(b: bool) -> &'static str {
    if b {
        "<span class=\"badge ok\">on</span>"
    } else {
        "<span class=\"badge muted\">off</span>"
    }
}

fn set_text(v: Option<bool>) -> &'static str {
    match v {
        None => "default",
        Some(true) => "on",
        Some(false) => "off",
    }
}

/// `GET /ui/owner/policy[?repository=]`: the signing policy, registry-wide and per repository.
pub(crate) async fn policy(State(state): State<AppState>, req: Request) -> Response {
    let s = match owner_session(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let repo = query_get(&query_pairs(&req), "repository").unwrap_or_default();
    policy_page(&state, &s, repo.trim(), None).await
}

async fn policy_page(state: &AppState, s: &Session, repo: &str, note: Option<&str>) -> Response {
    let trust = &state.trust;
    let (default, entries) = match (trust.policy_entry(None).await, trust.policy_entries().await) {
        (Ok(d), Ok(e)) => (d, e),
        (Err(e), _) | (_, Err(e)) => return s.error(e.into()),
    };
    let base = default.over(berth_trust::Policy::default());
    let mut rows = String::new();
    for (name, e) in &entries {
        let eff = e.over(base);
        rows.push_str(&format!(
            "<tr data-repo=\"{n}\"><td><a href=\"/ui/owner/policy?repository={q}\">{n}</a></td>\
             <td>{} <span class=\"muted\">({})</span></td><td>{} <span class=\"muted\">({})</span></td></tr>",
            on_off(eff.signed_pulls_only),
            set_text(e.signed_pulls_only),
            on_off(eff.immutable_signed_tags),
            set_text(e.immutable_signed_tags),
            n = esc(name),
            q = url_q(name),
        ));
    }
    let own = if repo.is_empty() {
        berth_trust::PolicyEntry::default()
    } else {
        match trust.policy_entry(Some(repo)).await {
            Ok(e) => e,
            Err(e) => return s.error(e.into()),
        }
    };
    let note = note
        .map(|n| format!("<p class=\"notice ok\" id=\"message\">{}</p>", esc(n)))
        .unwrap_or_default();
    let table = if rows.is_empty() {
        "<p class=\"empty\" id=\"no-policies\">No repository has its own policy: all follow the default.</p>".to_owned()
    } else {
        format!(
            "<table id=\"policies\"><thead><tr><th>Repository</th><th>Signed pulls only</th>\
             <th>Immutable signed tags</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    let body = format!(
        "<h1>Signing policy</h1>{note}\
         <p class=\"hint\">Signed pulls only: a manifest is served only for a tag with valid trust data for exactly \
         its digest (or a digest such a tag names). Immutable signed tags: a plain push cannot repoint a signed tag.</p>\
         <h2>Registry-wide default</h2>\
         <form method=\"post\" action=\"/ui/owner/policy\" class=\"inline\" id=\"default-form\">{csrf}\
         <input type=\"hidden\" name=\"scope\" value=\"_default\">\
         <label>Signed pulls only {}</label><label>Immutable signed tags {}</label>\
         <button type=\"submit\" id=\"default-save\">Save default</button></form>\
         <h2>Repositories</h2>{table}\
         <h3>Set a repository's policy</h3>\
         <form method=\"post\" action=\"/ui/owner/policy\" class=\"inline\" id=\"repo-form\">{csrf}\
         <label>Repository <input name=\"scope\" id=\"policy-repo\" value=\"{}\" required></label>\
         <label>Signed pulls only {}</label><label>Immutable signed tags {}</label>\
         <button type=\"submit\" id=\"repo-save\">Save</button></form>",
        rule_select(
            "default-spo",
            "signedPullsOnly",
            default.signed_pulls_only,
            false
        ),
        rule_select(
            "default-ist",
            "immutableSignedTags",
            default.immutable_signed_tags,
            false
        ),
        esc(repo),
        rule_select("repo-spo", "signedPullsOnly", own.signed_pulls_only, true),
        rule_select(
            "repo-ist",
            "immutableSignedTags",
            own.immutable_signed_tags,
            true
        ),
        csrf = csrf_field(s),
    );
    done(s, "policy", "Signing policy", &body)
}

/// `POST /ui/owner/policy`: scope `_default` or a repository; each rule on, off or (for a
/// repository) following the default. Stored through the admin API's `policy_store`.
pub(crate) async fn policy_post(State(state): State<AppState>, req: Request) -> Response {
    let s = match owner_session(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let fields = match form(&s, req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let scope = query_get(&fields, "scope").unwrap_or_default();
    let scope = scope.trim();
    let repo = if scope == "_default" {
        None
    } else {
        match scope.parse::<berth_oci::RepoName>() {
            Ok(r) => Some(r),
            Err(e) => {
                return s.error(crate::error::AdminError::invalid("repository", e.message));
            }
        }
    };
    let rule = |k: &str| -> Result<Option<bool>, crate::error::AdminError> {
        match query_get(&fields, k).as_deref() {
            Some("on") => Ok(Some(true)),
            Some("off") => Ok(Some(false)),
            Some("default") if repo.is_some() => Ok(None),
            _ => Err(crate::error::AdminError::invalid(
                k,
                "must be on, off or (for a repository) default",
            )),
        }
    };
    let name = repo.as_ref().map(berth_oci::RepoName::as_str);
    let old = match state.trust.policy_entry(name).await {
        Ok(o) => o,
        Err(e) => return s.error(e.into()),
    };
    let new = match (rule("signedPullsOnly"), rule("immutableSignedTags")) {
        (Ok(a), Ok(b)) => berth_trust::PolicyEntry {
            signed_pulls_only: a,
            immutable_signed_tags: b,
            // Accepted formats and their material are set with the CLI or the admin API.
            accept: old.accept,
        },
        (Err(e), _) | (_, Err(e)) => return s.error(e),
    };
    let cx = s.ctx(&state);
    if let Err(e) = admin::policy_store(&cx, name, &old, &new).await {
        return s.error(e);
    }
    let note = match name {
        None => "Registry-wide default saved.".to_owned(),
        Some(r) => format!("Policy of {r} saved."),
    };
    policy_page(&state, &s, name.unwrap_or(""), Some(&note)).await
}

/// `POST /ui/owner/tokens/(disable|enable|delete)`: a token's state, through the admin API's
/// functions (audited as there).
pub(crate) async fn token_action(
    State(state): State<AppState>,
    axum::extract::Path(op): axum::extract::Path<String>,
    req: Request,
) -> Response {
    let s = match owner_session(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let fields = match form(&s, req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let name = query_get(&fields, "name").unwrap_or_default();
    let cx = s.ctx(&state);
    // Only tokens here: users and service principals are managed with the CLI.
    match state.access.identities().identity_get(&name).await {
        Ok(Some(r)) if r.kind == StoredKind::Token => {}
        Ok(_) => {
            return s.error(crate::error::AdminError::not_found(format!(
                "no token named {name}"
            )));
        }
        Err(e) => return s.error(e.into()),
    }
    let done = match op.as_str() {
        "disable" | "enable" => admin::identity_set_disabled(&cx, &name, op == "disable")
            .await
            .map(|_| format!("Token {name} {op}d.")),
        "delete" => admin::identity_delete(&cx, &name, StoredKind::Token)
            .await
            .map(|()| format!("Token {name} deleted.")),
        _ => Err(crate::error::AdminError::not_found("no such action")),
    };
    match done {
        Ok(note) => {
            let shown = format!("<p class=\"notice ok\" id=\"message\">{}</p>", esc(&note));
            access_page(&state, &s, Some(shown)).await
        }
        Err(e) => s.error(e),
    }
}
