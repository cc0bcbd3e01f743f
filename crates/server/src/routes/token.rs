//! `/oauth2/token`: docker's token endpoint. GET with Basic credentials (or none: an anonymous
//! token), POST with the OAuth2 password or refresh-token grant; `offline_token=true` /
//! `access_type=offline` also returns a refresh token.

// Client input is handled here: no panicking shortcuts and no unchecked arithmetic.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use berth_auth::ResourceActions;
use serde_json::json;

use super::authz::{Credentials, client_ip, credentials, host_of};
use super::{query_get, query_pairs};
use crate::AppState;
use crate::error::TokenError;
use berth_access::{ACCESS_TTL, Caller, Error as AccessError};

/// Largest form body accepted.
const MAX_FORM: usize = 64 * 1024;

pub(crate) async fn token(State(state): State<AppState>, req: Request) -> Response {
    let ip = client_ip(&req);
    let host = host_of(&req);
    let access = &state.access;
    // Parameters from the query (GET) or the form body (POST).
    let (params, creds) = if req.method() == Method::POST {
        let creds = credentials(&req);
        let body = match axum::body::to_bytes(req.into_body(), MAX_FORM).await {
            Ok(b) => b,
            Err(_) => return TokenError::too_large(MAX_FORM).into_response(),
        };
        let text = String::from_utf8_lossy(&body).into_owned();
        (super::query_pairs_str(&text), creds)
    } else {
        (query_pairs(&req), credentials(&req))
    };
    let get = |k: &str| query_get(&params, k);
    let mut scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    scopes.dedup();
    let requested: Vec<ResourceActions> = match berth_auth::scope::parse_scopes(&scopes) {
        Ok(r) => r,
        Err(e) => return TokenError::invalid_scope(e.to_string()).into_response(),
    };
    let service = get("service").filter(|s| !s.is_empty()).unwrap_or(host);
    let grant_type = get("grant_type");
    let caller: Result<Caller, AccessError> = match (grant_type.as_deref(), creds) {
        (Some("refresh_token"), _) => match get("refresh_token") {
            Some(t) => access.refresh(&t).await,
            None => {
                return TokenError::invalid_request("refresh_token: missing").into_response();
            }
        },
        (Some("password"), _) => match (get("username"), get("password")) {
            (Some(u), Some(p)) => access.authenticate(&u, &p, ip).await,
            _ => {
                return TokenError::invalid_request("username and password required")
                    .into_response();
            }
        },
        (Some(other), _) => {
            return TokenError::unsupported_grant_type(format!(
                "grant_type {other:?} (supported: password, refresh_token)"
            ))
            .into_response();
        }
        (None, Some(Credentials::Basic(u, p))) => access.authenticate(&u, &p, ip).await,
        (None, Some(Credentials::Bearer(_))) => {
            return TokenError::invalid_request("use Basic credentials or a grant").into_response();
        }
        (None, None) => Ok(access.anonymous().await),
    };
    let caller = match caller {
        Ok(c) => c,
        Err(e) => return TokenError::from(e).into_response(),
    };
    let (token, granted) = match access.issue(&caller, &requested, &service).await {
        Ok(t) => t,
        Err(e) => return TokenError::from(e).into_response(),
    };
    let offline = get("offline_token").as_deref() == Some("true")
        || get("access_type").as_deref() == Some("offline");
    let mut body = json!({
        "token": token,
        "access_token": token,
        "expires_in": ACCESS_TTL,
        "issued_at": httpdate_rfc3339(),
        "scope": berth_auth::scope::format_scopes(&granted),
    });
    if offline && !caller.is_anonymous() {
        match access.issue_refresh(&caller).await {
            Ok(r) => {
                if let Some(o) = body.as_object_mut() {
                    o.insert("refresh_token".into(), json!(r));
                }
            }
            Err(e) => return TokenError::from(e).into_response(),
        }
    }
    if !caller.is_anonymous() {
        let granted = berth_auth::scope::format_scopes(&granted);
        access
            .audit_token_issued(&caller.name, &service, ip, &granted)
            .await;
    }
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    match state.access.jwks().await {
        Ok(keys) => axum::Json(keys).into_response(),
        Err(e) => TokenError::from(e).into_response(),
    }
}

fn httpdate_rfc3339() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
