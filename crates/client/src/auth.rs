//! The client half of registry authentication: `WWW-Authenticate` challenges (Bearer and Basic),
//! the Docker token flow, and a token cache keyed by scope.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Username and password (or a service principal's id and secret, or a token's password).
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never let a password reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: Option<String>,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        /// Space-separated scopes the registry asked for.
        scope: Option<String>,
        /// e.g. `insufficient_scope` (RFC 6750).
        error: Option<String>,
    },
}

/// Parses every challenge in a `WWW-Authenticate` value (RFC 7235 §4.1: comma-separated
/// challenges, each a scheme followed by `key=value` or `key="quoted"` parameters). Unknown
/// schemes and a Bearer challenge without realm are skipped.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip(|c| c == b' ' || c == b'\t' || c == b',');
        let scheme = p.token();
        if scheme.is_empty() {
            break;
        }
        let mut params: HashMap<String, String> = HashMap::new();
        loop {
            p.skip(|c| c == b' ' || c == b'\t');
            let save = p.i;
            let key = p.token();
            p.skip(|c| c == b' ' || c == b'\t');
            if key.is_empty() || !p.eat(b'=') {
                // Not a parameter: the next challenge's scheme (or a token68 we ignore).
                p.i = save;
                break;
            }
            p.skip(|c| c == b' ' || c == b'\t');
            let value = if p.eat(b'"') { p.quoted() } else { p.token() };
            params.insert(key.to_ascii_lowercase(), value);
            p.skip(|c| c == b' ' || c == b'\t');
            if !p.eat(b',') {
                break;
            }
        }
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => out.push(Challenge::Basic {
                realm: params.remove("realm"),
            }),
            "bearer" => {
                if let Some(realm) = params.remove("realm") {
                    out.push(Challenge::Bearer {
                        realm,
                        service: params.remove("service"),
                        scope: params.remove("scope"),
                        error: params.remove("error"),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.i < self.s.len() && f(self.s[self.i]) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// A token (anything up to whitespace, `,`, `=` or `"`).
    fn token(&mut self) -> String {
        let start = self.i;
        self.skip(|c| !matches!(c, b' ' | b'\t' | b',' | b'=' | b'"'));
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// The rest of a quoted string, after the opening quote; `\x` stands for `x`.
    fn quoted(&mut self) -> String {
        let mut out = Vec::new();
        while self.i < self.s.len() {
            let c = self.s[self.i];
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' if self.i < self.s.len() => {
                    out.push(self.s[self.i]);
                    self.i += 1;
                }
                _ => out.push(c),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// A scope for the token service: `repository:<name>:<actions>`.
pub fn repository_scope(repo: &str, actions: &[&str]) -> String {
    format!("repository:{repo}:{}", actions.join(","))
}

/// The token service's answer (token.md: `token` and/or `access_token`).
#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token and how long to use it: a margin before its expiry, so a request never carries
    /// a token that dies in flight. The spec's default lifetime is 60 s.
    pub(crate) fn into_token(self) -> Option<(String, Duration)> {
        let t = self.access_token.or(self.token).filter(|t| !t.is_empty())?;
        let life = self.expires_in.unwrap_or(60).max(10);
        Some((t, Duration::from_secs(life.saturating_sub(life / 6).max(5))))
    }
}

/// How the registry wants to be authenticated, as learned from its challenges.
#[derive(Debug, Clone, Default)]
pub(crate) enum Mode {
    /// No 401 seen yet: send nothing.
    #[default]
    Anonymous,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Debug, Default)]
pub(crate) struct AuthState {
    pub mode: Mode,
    /// Bearer tokens by scope key (sorted scopes joined by spaces).
    tokens: HashMap<String, (String, Instant)>,
}

/// Scopes normalised into a cache key.
pub(crate) fn scope_key(scopes: &[String]) -> String {
    let mut v: Vec<&str> = scopes.iter().map(String::as_str).collect();
    v.sort_unstable();
    v.dedup();
    v.join(" ")
}

impl AuthState {
    pub fn token(&self, key: &str) -> Option<&str> {
        self.tokens
            .get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(t, _)| t.as_str())
    }

    pub fn store(&mut self, key: String, token: String, valid_for: Duration) {
        self.tokens.insert(key, (token, Instant::now() + valid_for));
    }

    pub fn forget(&mut self, key: &str) {
        self.tokens.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let h = r#"Bearer realm="https://reg.example.com:5000/oauth2/token",service="reg.example.com:5000",scope="repository:team/app:pull,push""#;
        assert_eq!(
            parse_challenges(h),
            vec![Challenge::Bearer {
                realm: "https://reg.example.com:5000/oauth2/token".into(),
                service: Some("reg.example.com:5000".into()),
                scope: Some("repository:team/app:pull,push".into()),
                error: None,
            }]
        );
    }

    #[test]
    fn insufficient_scope_multiple_scopes_and_spacing() {
        let h = r#"bearer  realm = "https://r/token" , error="insufficient_scope",scope="repository:a:pull repository:b:pull,push", service=r"#;
        let c = parse_challenges(h);
        let Challenge::Bearer {
            realm,
            service,
            scope,
            error,
        } = &c[0]
        else {
            panic!("{c:?}")
        };
        assert_eq!(realm, "https://r/token");
        assert_eq!(service.as_deref(), Some("r"));
        assert_eq!(
            scope.as_deref(),
            Some("repository:a:pull repository:b:pull,push")
        );
        assert_eq!(error.as_deref(), Some("insufficient_scope"));
    }

    #[test]
    fn basic_and_several_challenges() {
        assert_eq!(
            parse_challenges(r#"Basic realm="Registry Realm""#),
            vec![Challenge::Basic {
                realm: Some("Registry Realm".into())
            }]
        );
        let c = parse_challenges(r#"Basic realm="x", Bearer realm="https://t",service="s""#);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(matches!(&c[1], Challenge::Bearer { realm, .. } if realm == "https://t"));
        assert_eq!(
            parse_challenges("Basic"),
            vec![Challenge::Basic { realm: None }]
        );
    }

    #[test]
    fn quoted_escapes_and_garbage() {
        let c = parse_challenges(r#"Bearer realm="https://t/\"q\"",service="a\\b""#);
        assert!(
            matches!(&c[0], Challenge::Bearer { realm, service, .. } if realm == r#"https://t/"q""# && service.as_deref() == Some(r"a\b"))
        );
        // No realm: unusable, skipped. Unknown schemes: skipped. Unterminated quotes: no panic.
        assert!(parse_challenges(r#"Bearer service="s""#).is_empty());
        assert!(parse_challenges("Negotiate abc==").is_empty());
        assert!(parse_challenges("").is_empty());
        let _ = parse_challenges(r#"Bearer realm="unterminated"#);
        let _ = parse_challenges(r#"=,=,"",Bearer ="#);
    }

    #[test]
    fn scope_keys_are_order_free() {
        let a = scope_key(&["repository:b:pull".into(), "repository:a:pull".into()]);
        let b = scope_key(&["repository:a:pull".into(), "repository:b:pull".into()]);
        assert_eq!(a, b);
        assert_eq!(
            repository_scope("team/app", &["pull", "push"]),
            "repository:team/app:pull,push"
        );
    }

    #[test]
    fn token_response_prefers_access_token_and_keeps_a_margin() {
        let r: TokenResponse =
            serde_json::from_str(r#"{"token":"t","access_token":"a","expires_in":300}"#).unwrap();
        let (t, d) = r.into_token().unwrap();
        assert_eq!(t, "a");
        assert!(d < Duration::from_secs(300) && d >= Duration::from_secs(200));
        let r: TokenResponse = serde_json::from_str(r#"{"token":"t"}"#).unwrap();
        assert_eq!(r.into_token().unwrap().0, "t");
        let r: TokenResponse = serde_json::from_str(r#"{}"#).unwrap();
        assert!(r.into_token().is_none());
    }
}
