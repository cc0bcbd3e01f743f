//! Web UI sessions and CSRF protection.
//!
//! Design (works across stateless nodes sharing one store):
//! - Logging in checks the password through `berth_access` exactly as a registry login does
//!   (argon2 on the hashing pool, the failed-login throttle, `login.failed` audit rows). The
//!   browser then gets a session token in the cookie [`COOKIE`]: a JWT signed with the
//!   registry's token keys (kept in the store, so any node verifies it) for the audience
//!   `berth-ui-session`, which no other endpoint accepts, bound like every Berth token to the
//!   identity's current password hash. The cookie is `HttpOnly; Secure; SameSite=Strict;
//!   Path=/` with the `__Host-` prefix.
//! - Every request re-reads the identity and its roles (`AccessService::session`), so a
//!   disabled or deleted identity, a new password or a lost role takes effect at once.
//! - Logout writes one record per identity in the settings store: "sessions issued before this
//!   millisecond are over" (`AccessService::end_sessions`). Every node checks it, so a replayed
//!   cookie is refused everywhere; it ends that identity's other browser sessions too (log out
//!   everywhere), which is the simple and safe reading of "log out".
//! - CSRF: every state-changing form is a POST carrying a token derived from the session
//!   token (SHA-256 of a label and the token). A cross-site page can neither read the cookie nor
//!   the token; SameSite=Strict is a second wall. The login form, before any session, uses a
//!   random double-submit cookie ([`LOGIN_COOKIE`]).

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use base64::Engine as _;
use sha2::Digest as _;

/// The session cookie. `__Host-`: browsers take it only when Secure, Path=/ and host-only.
pub(crate) const COOKIE: &str = "__Host-berth-session";
/// The login form's double-submit CSRF cookie.
pub(crate) const LOGIN_COOKIE: &str = "__Host-berth-login";
/// How long a session lasts (seconds).
pub(crate) const SESSION_TTL: i64 = 12 * 3600;

/// A cookie's value from the request's `Cookie` headers.
pub(crate) fn cookie(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for `name`; `None` clears it.
pub(crate) fn set_cookie(resp: &mut Response, name: &str, value: Option<&str>, max_age: i64) {
    let v = match value {
        Some(v) => {
            format!("{name}={v}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict")
        }
        None => format!("{name}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict"),
    };
    if let Ok(h) = HeaderValue::from_str(&v) {
        resp.headers_mut().append(header::SET_COOKIE, h);
    }
}

/// The CSRF token of a session.
pub(crate) fn csrf_for(session_token: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(b"berth-ui-csrf\0");
    h.update(session_token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
}

/// A fresh random value (the login form's CSRF cookie).
pub(crate) fn random_token() -> Option<String> {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// Compares in time independent of where the strings differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cookies_and_compares_tokens() {
        let req = Request::builder()
            .header(header::COOKIE, "a=1; __Host-berth-session=tok.en ; b=2")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(cookie(&req, COOKIE).as_deref(), Some("tok.en"));
        assert_eq!(cookie(&req, "c"), None);
        assert!(same(&csrf_for("x"), &csrf_for("x")));
        assert!(!same(&csrf_for("x"), &csrf_for("y")));
        assert!(!same("ab", "abc"));
    }
}
