//! The web UI at `/`: server-rendered HTML from hand-written templates ([`html`]), one
//! embedded stylesheet, no scripts, nothing fetched at run time.
//!
//! ```text
//! GET  /                       -> /ui/repositories (or the login form)
//! GET  /ui/login, POST         login form; sets the session cookie (session::)
//! POST /ui/logout              ends the identity's sessions in the store
//! GET  /ui/repositories        ?q= search, ?page= (server-side pages)
//! GET  /ui/r/<repository>      tags: digest, size, platforms, push time, signatures
//! GET  /ui/owner/content-trust, POST   the switch, with a confirmation before the wipe
//! GET  /ui/owner/access, POST /ui/owner/tokens   users, roles, tokens (new password once)
//! POST /ui/owner/tokens/(disable|enable|delete)
//! GET  /ui/owner/audit         the audit log with filters
//! GET  /ui/owner/policy, POST  signing policy: the default and per repository
//! ```
//!
//! Authorization: the header-based layer lets these paths through; every handler here starts
//! with [`Session::load`] (the session cookie) and asks `authz::authorize` (the same rules and
//! denial audit as the API) for its page or action. The Owner pages call the admin API's own
//! functions (`routes::admin`), so both paths change things the same way and audit it.

// Client input is handled here: no panicking shortcuts and no unchecked arithmetic.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod html;
mod owner;
mod pages;
mod session;
mod trust;

use std::net::IpAddr;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::AppState;
use crate::error::AdminError;
use crate::routes::access::Requirement;
use crate::routes::authz::{authorize, client_ip};
use berth_access::{Caller, Error as AccessError};
use berth_auth::{Action, Resource};
use html::{Chrome, esc};

const STYLE: &str = include_str!("style.css");
/// Largest form body read.
const MAX_FORM: usize = 64 * 1024;

/// The UI's routes (merged into the main router).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/ui/", get(root))
        .route("/ui/style.css", get(style))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/repositories", get(pages::repositories))
        .route("/ui/r/{*name}", get(pages::tags))
        .route(
            "/ui/owner/content-trust",
            get(owner::content_trust).post(owner::content_trust_post),
        )
        .route("/ui/owner/access", get(owner::access))
        .route("/ui/owner/tokens", post(owner::token_create))
        .route("/ui/owner/tokens/{op}", post(owner::token_action))
        .route("/ui/owner/audit", get(owner::audit))
        .route(
            "/ui/owner/policy",
            get(owner::policy).post(owner::policy_post),
        )
        .route("/ui/{*rest}", axum::routing::any(not_found))
        .layer(middleware::from_fn(security_headers))
}

/// Headers on every UI answer: no framing, no sniffing, nothing but our own origin, no caching
/// of pages that show what one caller may see.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "same-origin");
    set(h, "cross-origin-opener-policy", "same-origin");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    resp
}

async fn style() -> Response {
    let mut r = STYLE.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A signed-in caller with what its pages need.
pub(crate) struct Session {
    pub(crate) caller: Caller,
    pub(crate) csrf: String,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) owner: bool,
    /// The request, for webhook events of what the Owner pages change.
    event_cx: crate::webhooks::EventContext,
}

impl Session {
    /// The caller behind the request's session cookie, or the answer to send instead (the
    /// login form, for a browser that has no live session). Reads what it needs from the
    /// request first: the future must not hold the request (its body is not `Sync`).
    pub(crate) fn load<'a>(
        state: &'a AppState,
        req: &Request,
    ) -> impl Future<Output = Result<Session, Response>> + Send + 'a {
        let ip = client_ip(req);
        let mut event_cx = crate::webhooks::EventContext::of(req);
        let token = session::cookie(req, session::COOKIE);
        let next = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/ui/repositories".into());
        async move {
            let caller = if state.access.auth_disabled() {
                // `--auth-disabled`: everyone is Owner, as on the API.
                state.access.authenticate("", "", ip).await.ok()
            } else {
                match &token {
                    Some(t) => state.access.session(t).await.ok(),
                    None => None,
                }
            };
            let Some(caller) = caller else {
                return Err(see_other(&format!("/ui/login?next={}", html::url_q(&next))));
            };
            let owner = caller.grants.allows(Action::Admin, Resource::Registry);
            event_cx.actor = caller.name.clone();
            Ok(Session {
                event_cx,
                csrf: session::csrf_for(token.as_deref().unwrap_or("auth-disabled")),
                caller,
                ip,
                owner,
            })
        }
    }

    pub(crate) fn chrome<'a>(&'a self, section: &'a str) -> Chrome<'a> {
        Chrome {
            user: &self.caller.name,
            owner: self.owner,
            csrf: &self.csrf,
            section,
        }
    }

    /// Asks the authorization layer; a refusal is the 403 page.
    pub(crate) async fn require(
        &self,
        state: &AppState,
        need: &Requirement,
        target: &str,
    ) -> Result<(), Response> {
        authorize(state, &self.caller, need, target, self.ip)
            .await
            .map_err(|why| {
                html::message(
                    StatusCode::FORBIDDEN,
                    Some(&self.chrome("")),
                    "Not allowed",
                    &why,
                )
            })
    }

    /// An admin-API context acting as this session's caller.
    pub(crate) fn ctx<'a>(&self, state: &'a AppState) -> crate::routes::admin::Ctx<'a> {
        crate::routes::admin::Ctx {
            state,
            actor: self.caller.name.clone(),
            ip: self.ip,
            event_cx: self.event_cx.clone(),
        }
    }

    /// An error of the admin functions as a page.
    pub(crate) fn error(&self, e: AdminError) -> Response {
        html::message(e.status, Some(&self.chrome("")), "Error", &e.message)
    }
}

/// A POSTed form: its fields, after the session's CSRF token was checked (403 page when the
/// token is missing or wrong).
pub(crate) async fn form(s: &Session, req: Request) -> Result<Vec<(String, String)>, Response> {
    let fields = read_form(req).await?;
    let sent = crate::routes::query_get(&fields, "csrf").unwrap_or_default();
    if sent.is_empty() || !session::same(&sent, &s.csrf) {
        return Err(csrf_refused(Some(&s.chrome(""))));
    }
    Ok(fields)
}

fn csrf_refused(chrome: Option<&Chrome<'_>>) -> Response {
    html::message(
        StatusCode::FORBIDDEN,
        chrome,
        "Request refused",
        "The form's security token (CSRF protection) is missing or wrong, so nothing was done. \
         Go back, reload the page and try again.",
    )
}

async fn read_form(req: Request) -> Result<Vec<(String, String)>, Response> {
    let body = axum::body::to_bytes(req.into_body(), MAX_FORM)
        .await
        .map_err(|_| {
            html::message(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                "Form too large",
                "The form sent more than this server reads.",
            )
        })?;
    Ok(crate::routes::query_pairs_str(&String::from_utf8_lossy(
        &body,
    )))
}

async fn root(State(state): State<AppState>, req: Request) -> Response {
    match Session::load(&state, &req).await {
        Ok(_) => see_other("/ui/repositories"),
        Err(r) => r,
    }
}

async fn not_found(State(state): State<AppState>, req: Request) -> Response {
    let s = Session::load(&state, &req).await.ok();
    let chrome = s.as_ref().map(|s| s.chrome(""));
    html::message(
        StatusCode::NOT_FOUND,
        chrome.as_ref(),
        "Not found",
        "There is no such page.",
    )
}

/// Where to go after logging in: only a UI path of this server.
fn safe_next(next: Option<String>) -> String {
    next.filter(|n| n.starts_with("/ui/") && !n.starts_with("/ui//") && !n.contains('\\'))
        .unwrap_or_else(|| "/ui/repositories".into())
}

fn login_page(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let Some(nonce) = session::random_token() else {
        return html::message(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "Error",
            "no randomness",
        );
    };
    let err = error
        .map(|e| format!("<p class=\"notice bad\" id=\"message\">{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "<section class=\"login\"><h1>Log in to Berth</h1>{err}\
         <form method=\"post\" action=\"/ui/login\" id=\"login-form\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{nonce}\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label>Username <input name=\"username\" id=\"username\" autocomplete=\"username\" required autofocus></label>\
         <label>Password <input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\" id=\"login\">Log in</button></form>\
         <p class=\"hint\">Users, service principals (their id), repository-scoped tokens and the admin account log in here as with <code>docker login</code>.</p></section>",
        esc(next)
    );
    let mut r = html::respond(status, html::page("Log in", None, &body));
    session::set_cookie(&mut r, session::LOGIN_COOKIE, Some(&nonce), 3600);
    r
}

async fn login_form(req: Request) -> Response {
    let pairs = crate::routes::query_pairs(&req);
    let next = safe_next(crate::routes::query_get(&pairs, "next"));
    login_page(StatusCode::OK, &next, None)
}

async fn login(State(state): State<AppState>, req: Request) -> Response {
    let ip = client_ip(&req);
    let nonce = session::cookie(&req, session::LOGIN_COOKIE);
    let fields = match read_form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let get = |k: &str| crate::routes::query_get(&fields, k).unwrap_or_default();
    let next = safe_next(Some(get("next")));
    let sent = get("csrf");
    if nonce.is_none_or(|n| sent.is_empty() || !session::same(&n, &sent)) {
        return csrf_refused(None);
    }
    let user = get("username");
    let caller = match state.access.authenticate(&user, &get("password"), ip).await {
        Ok(c) => c,
        Err(AccessError::Throttled(secs)) => {
            return login_page(
                StatusCode::TOO_MANY_REQUESTS,
                &next,
                Some(&format!(
                    "Too many failed logins: try again in {secs} seconds."
                )),
            );
        }
        Err(AccessError::BadCredentials | AccessError::BadToken(_)) => {
            return login_page(
                StatusCode::UNAUTHORIZED,
                &next,
                Some("Wrong username or password."),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "web UI login");
            return login_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                &next,
                Some("The server could not check the login; see its log."),
            );
        }
    };
    let token = match state
        .access
        .issue_session(&caller, session::SESSION_TTL)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "web UI session");
            return login_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                &next,
                Some("The server could not start a session; see its log."),
            );
        }
    };
    state
        .access
        .audit(&caller.name, "ui.login", "registry", ip, "web UI session")
        .await;
    let mut r = see_other(&next);
    session::set_cookie(&mut r, session::LOGIN_COOKIE, None, 0);
    session::set_cookie(&mut r, session::COOKIE, Some(&token), session::SESSION_TTL);
    r
}

async fn logout(State(state): State<AppState>, req: Request) -> Response {
    let s = match Session::load(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(r) = form(&s, req).await {
        return r;
    }
    if let Err(e) = state.access.end_sessions(&s.caller.name).await {
        tracing::error!(error = %e, "web UI logout");
        return s.error(AdminError::internal(e));
    }
    state
        .access
        .audit(&s.caller.name, "ui.logout", "registry", s.ip, "")
        .await;
    let mut r = see_other("/ui/login");
    session::set_cookie(&mut r, session::COOKIE, None, 0);
    r
}
