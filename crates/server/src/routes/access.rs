//! What each request needs: one classification of every route, so one authorization layer can
//! enforce it and the authorization-matrix test can enumerate it.

use axum::http::Method;
use berth_oci::RepoName;

use super::trust::{TrustAccess, TrustEndpoint};
use super::{Endpoint, parse};

/// An operation on a repository, in the vocabulary of roles and scope maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepoAction {
    Pull,
    Push,
    Delete,
    TrustRead,
    TrustWrite,
    TrustDelete,
}

impl RepoAction {
    /// The docker token scope action a client asks for to get this right.
    pub fn scope_action(self) -> &'static str {
        match self {
            RepoAction::Pull | RepoAction::TrustRead => "pull",
            RepoAction::Push | RepoAction::TrustWrite => "push",
            RepoAction::Delete => "delete",
            RepoAction::TrustDelete => "*",
        }
    }
}

/// What a request needs before its handler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Health probes, the token endpoints and the web UI (which checks its session cookie and
    /// asks these rules per page itself): a fixed list; anything not classified otherwise
    /// (unknown paths included) needs an authenticated caller, so a new route is never open by
    /// accident.
    Public,
    /// `/v2/` ping: any authenticated caller (or anonymous when anonymous pull is on).
    Authenticated,
    /// Every listed action on the repository. `scope_name` is the name the client's token scope
    /// uses: the repository for registry calls, the GUN for trust calls.
    Repository {
        repo: RepoName,
        scope_name: String,
        actions: Vec<RepoAction>,
    },
    /// `_catalog`: any authenticated caller; the listing shows only what it may pull.
    Catalog,
    /// The global trust changefeed (notary's `registry:catalog:*`): it names every repository, so
    /// it needs registry-wide read rights.
    RegistryRead,
    /// The admin API.
    Admin,
    /// `/metrics`: the registry-wide metrics grant (Owner, MetricsReader).
    Metrics,
    /// The path names a repository that cannot exist (bad name, foreign GUN): let the handler
    /// answer with the protocol's error.
    Invalid,
}

fn repo_req(name: &str, actions: Vec<RepoAction>) -> Requirement {
    match name.parse::<RepoName>() {
        Ok(repo) => Requirement::Repository {
            scope_name: repo.to_string(),
            repo,
            actions,
        },
        Err(_) => Requirement::Invalid,
    }
}

/// The admin API is the Owner's, except the repository verbs: they need what the same operation
/// needs through the registry API (listing: any caller, who sees what it may pull; tags: pull;
/// deletions: delete, i.e. AcrDelete or a token with `content/delete`).
fn admin_requirement(method: &Method, rest: &str) -> Requirement {
    use super::admin::RepoTarget;
    if rest == "repositories" && method == Method::GET {
        return Requirement::Catalog;
    }
    // The registry attestation certificate is public knowledge for any caller.
    if rest == crate::attest::CERTIFICATE_PATH && method == Method::GET {
        return Requirement::Authenticated;
    }
    // A user changes its own password (proving the current one): any authenticated caller
    // gets to the handler, which decides.
    if *method == Method::POST
        && let Some(user) = rest
            .strip_prefix("users/")
            .and_then(|r| r.strip_suffix("/password"))
        && !user.is_empty()
        && !user.contains('/')
    {
        return Requirement::Authenticated;
    }
    // An import writes the destination repository as a push does (the source is another
    // registry's business, with credentials the caller passes).
    if let Some(name) = rest.strip_prefix("import/") {
        return repo_req(name, vec![RepoAction::Pull, RepoAction::Push]);
    }
    let Some((name, target)) = rest
        .strip_prefix("repositories/")
        .and_then(super::admin::repository_path)
    else {
        return Requirement::Admin;
    };
    match (method, target) {
        (&Method::GET, RepoTarget::Tags) => repo_req(name, vec![RepoAction::Pull]),
        (
            &Method::DELETE,
            RepoTarget::Repository | RepoTarget::Tag(_) | RepoTarget::Manifest(_),
        ) => repo_req(name, vec![RepoAction::Delete]),
        _ => Requirement::Admin,
    }
}

/// Classifies a request. `resolve_gun` maps a trust GUN to a repository of this registry.
pub fn requirement(
    method: &Method,
    path: &str,
    resolve_gun: impl Fn(&str) -> Option<RepoName>,
) -> Requirement {
    use RepoAction::*;
    const PUBLIC: [&str; 5] = [
        "/healthz",
        "/readyz",
        "/_notary_server/health",
        "/oauth2/token",
        "/oauth2/jwks",
    ];
    if PUBLIC.contains(&path) {
        return Requirement::Public;
    }
    // The web UI reads its own session cookie (never these headers) and asks this layer's
    // rules about every page and action itself (`ui`, through `authz::authorize`).
    if path == "/" || path.starts_with("/ui/") {
        return Requirement::Public;
    }
    if path == "/v2/" || path == "/v2" {
        return Requirement::Authenticated;
    }
    if path == "/metrics" {
        return Requirement::Metrics;
    }
    if let Some(rest) = path.strip_prefix("/api/v1/") {
        return admin_requirement(method, rest);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Requirement::Authenticated;
    };
    if let Some(t) = super::trust::parse(method, rest) {
        let gun = match t.gun() {
            Some(g) => g,
            None if t == TrustEndpoint::Changefeed(None) => return Requirement::RegistryRead,
            None => return Requirement::Authenticated,
        };
        let Some(repo) = resolve_gun(gun) else {
            return Requirement::Invalid;
        };
        let actions = match t.access() {
            TrustAccess::Pull => vec![TrustRead],
            // Notary asks for push+pull to publish; the signer right is what matters.
            TrustAccess::Push => vec![TrustRead, TrustWrite],
            // notary-server's admin action `*`, which is all the notary CLI asks for here: the
            // policy gives TrustDelete only with TrustRead and TrustWrite, and a `*` token
            // covers those too.
            TrustAccess::All => vec![TrustDelete],
            TrustAccess::Catalog => return Requirement::RegistryRead,
        };
        return Requirement::Repository {
            repo,
            scope_name: gun.to_owned(),
            actions,
        };
    }
    let Some(endpoint) = parse(rest) else {
        return Requirement::Authenticated;
    };
    let read = method == Method::GET || method == Method::HEAD;
    match endpoint {
        Endpoint::Catalog => Requirement::Catalog,
        Endpoint::Tags(n) | Endpoint::Referrers(n, _) => repo_req(n, vec![Pull]),
        Endpoint::Manifest(n, _) | Endpoint::Blob(n, _) if read => repo_req(n, vec![Pull]),
        Endpoint::Manifest(n, _) | Endpoint::Blob(n, _) if method == Method::DELETE => {
            repo_req(n, vec![Delete])
        }
        Endpoint::Manifest(n, _) => repo_req(n, vec![Pull, Push]),
        Endpoint::Blob(n, _) => repo_req(n, vec![Pull]),
        // Uploads (incl. mount: the source's pull right is checked by the handler, whose answer
        // without it is the spec's fallback to a plain upload).
        Endpoint::Upload(n, _) => repo_req(n, vec![Pull, Push]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gun_repo(gun: &str) -> Option<RepoName> {
        gun.strip_prefix("127.0.0.1:5000/")?.parse().ok()
    }

    fn trust(method: Method, tail: &str) -> Requirement {
        requirement(
            &method,
            &format!("/v2/127.0.0.1:5000/team/app/_trust/tuf/{tail}"),
            gun_repo,
        )
    }

    fn repo_trust(actions: Vec<RepoAction>) -> Requirement {
        Requirement::Repository {
            repo: "team/app".parse().unwrap(),
            scope_name: "127.0.0.1:5000/team/app".into(),
            actions,
        }
    }

    #[test]
    fn an_import_needs_push_on_its_destination() {
        use RepoAction::*;
        let r = requirement(&Method::POST, "/api/v1/import/team/app", gun_repo);
        assert_eq!(
            r,
            Requirement::Repository {
                repo: "team/app".parse().unwrap(),
                scope_name: "team/app".into(),
                actions: vec![Pull, Push],
            }
        );
        assert_eq!(
            requirement(&Method::POST, "/api/v1/import/Bad..Name", gun_repo),
            Requirement::Invalid
        );
    }

    #[test]
    fn trust_endpoints_need_what_notary_server_asks() {
        use RepoAction::*;
        assert_eq!(trust(Method::GET, "root.json"), repo_trust(vec![TrustRead]));
        assert_eq!(
            trust(Method::POST, ""),
            repo_trust(vec![TrustRead, TrustWrite])
        );
        assert_eq!(
            trust(Method::GET, "timestamp.key"),
            repo_trust(vec![TrustRead, TrustWrite])
        );
        // Delete and key rotation: `*` alone, as the notary CLI asks for exactly that.
        for (m, tail) in [
            (Method::DELETE, ""),
            (Method::POST, "snapshot.key"),
            (Method::POST, "timestamp.key"),
        ] {
            let r = trust(m.clone(), tail);
            assert_eq!(r, repo_trust(vec![TrustDelete]), "{m} {tail}");
            let Requirement::Repository { actions, .. } = r else {
                unreachable!()
            };
            let scopes: Vec<&str> = actions.iter().map(|a| a.scope_action()).collect();
            assert_eq!(scopes, ["*"]);
        }
    }
}
