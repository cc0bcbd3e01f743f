//! The authorization matrix: every identity kind × every endpoint class → the exact outcome
//! (allowed / 401 challenge / 403 DENIED), generated from one table.
//!
//! - `ENDPOINTS` lists concrete requests per class; each is checked against the server's own
//!   classifier (`berth_server::requirement`), so a class means what the server thinks it means.
//! - `ROWS` gives, per identity, one expected outcome for EVERY class: the test first checks the
//!   table is complete (adding a class without rules fails), then runs every cell with both
//!   credential styles a client may use: HTTP Basic on the request, and docker's token flow
//!   (unauthenticated request → challenge → `GET /oauth2/token` with Basic and the challenge's
//!   scope → retry with the Bearer token). Identities that only exist as a token (a deleted
//!   identity's live token, an expired token) present that Bearer token.
//! - "Allowed" means the authorization layer let the request through: anything but 401, 403,
//!   429 or a 5xx (a trust update with a junk body answers 400 after authorization passed).

use std::collections::{BTreeSet, HashMap};

use berth_server::{RepoAction, Requirement};
use reqwest::Method;
use serde_json::{Value, json};

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_harness::{Notary, multipart, run};

const REPO: &str = "team/app";
const OTHER: &str = "other/app";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Class {
    Ping,
    Pull,
    Push,
    Delete,
    Catalog,
    GlobalChangefeed,
    TrustRead,
    TrustWrite,
    TrustDelete,
    Admin,
    PullOther,
    PushOther,
    TrustReadOther,
    TrustWriteOther,
    Metrics,
}
use Class::*;

const CLASSES: [Class; 15] = [
    Ping,
    Pull,
    Push,
    Delete,
    Catalog,
    GlobalChangefeed,
    TrustRead,
    TrustWrite,
    TrustDelete,
    Admin,
    PullOther,
    PushOther,
    TrustReadOther,
    TrustWriteOther,
    Metrics,
];

impl Class {
    /// What the server's classifier must say about this class's endpoints.
    fn requirement(self, host: &str) -> Requirement {
        use RepoAction as R;
        let repo = |name: &str, scope: String, actions: Vec<RepoAction>| Requirement::Repository {
            repo: name.parse().unwrap(),
            scope_name: scope,
            actions,
        };
        let gun = |name: &str| format!("{host}/{name}");
        match self {
            Ping => Requirement::Authenticated,
            Pull => repo(REPO, REPO.into(), vec![R::Pull]),
            Push => repo(REPO, REPO.into(), vec![R::Pull, R::Push]),
            Delete => repo(REPO, REPO.into(), vec![R::Delete]),
            Catalog => Requirement::Catalog,
            GlobalChangefeed => Requirement::RegistryRead,
            TrustRead => repo(REPO, gun(REPO), vec![R::TrustRead]),
            TrustWrite => repo(REPO, gun(REPO), vec![R::TrustRead, R::TrustWrite]),
            TrustDelete => repo(REPO, gun(REPO), vec![R::TrustDelete]),
            Admin => Requirement::Admin,
            PullOther => repo(OTHER, OTHER.into(), vec![R::Pull]),
            PushOther => repo(OTHER, OTHER.into(), vec![R::Pull, R::Push]),
            TrustReadOther => repo(OTHER, gun(OTHER), vec![R::TrustRead]),
            TrustWriteOther => repo(OTHER, gun(OTHER), vec![R::TrustRead, R::TrustWrite]),
            Metrics => Requirement::Metrics,
        }
    }
}

/// The classes a requirement can belong to. Exhaustive on purpose: a new kind of requirement or
/// repository action does not compile until it is given a class (and so rules) here.
fn classes_for(req: &Requirement) -> Vec<Class> {
    match req {
        Requirement::Public | Requirement::Invalid => vec![],
        Requirement::Authenticated => vec![Ping],
        Requirement::Catalog => vec![Catalog],
        Requirement::RegistryRead => vec![GlobalChangefeed],
        Requirement::Admin => vec![Admin],
        Requirement::Metrics => vec![Metrics],
        Requirement::Repository { actions, .. } => {
            let strongest = actions
                .iter()
                .map(|a| match a {
                    RepoAction::Pull => 0,
                    RepoAction::Delete => 1,
                    RepoAction::Push => 2,
                    RepoAction::TrustRead => 3,
                    RepoAction::TrustWrite => 4,
                    RepoAction::TrustDelete => 5,
                })
                .max();
            match strongest {
                Some(0) => vec![Pull, PullOther],
                Some(1) => vec![Delete],
                Some(2) => vec![Push, PushOther],
                Some(3) => vec![TrustRead, TrustReadOther],
                Some(4) => vec![TrustWrite, TrustWriteOther],
                Some(5) => vec![TrustDelete],
                _ => vec![],
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Body {
    None,
    Manifest,
    Multipart,
}

/// Concrete requests per class. Placeholders: `{gun}`/`{ogun}` (host-qualified trust names of
/// REPO/OTHER), `{digest}` (REPO's manifest), `{blob}` (its config), `{missing}` (absent digest).
const ENDPOINTS: &[(Class, &str, &str, Body)] = &[
    (Ping, "GET", "/v2/", Body::None),
    (Pull, "GET", "/v2/team/app/manifests/v1", Body::None),
    (Pull, "HEAD", "/v2/team/app/manifests/v1", Body::None),
    (Pull, "GET", "/v2/team/app/blobs/{blob}", Body::None),
    (Pull, "GET", "/v2/team/app/tags/list", Body::None),
    (Pull, "GET", "/v2/team/app/referrers/{digest}", Body::None),
    (Push, "POST", "/v2/team/app/blobs/uploads/", Body::None),
    (Push, "PUT", "/v2/team/app/manifests/pushed", Body::Manifest),
    // Non-destructive: an absent digest answers 404 once authorization passed.
    (
        Delete,
        "DELETE",
        "/v2/team/app/manifests/{missing}",
        Body::None,
    ),
    (Delete, "DELETE", "/v2/team/app/blobs/{missing}", Body::None),
    (Catalog, "GET", "/v2/_catalog", Body::None),
    (
        GlobalChangefeed,
        "GET",
        "/v2/_trust/changefeed?change_id=0&records=10",
        Body::None,
    ),
    (
        TrustRead,
        "GET",
        "/v2/{gun}/_trust/tuf/root.json",
        Body::None,
    ),
    (TrustRead, "GET", "/v2/{gun}/_trust/changefeed", Body::None),
    (TrustWrite, "POST", "/v2/{gun}/_trust/tuf/", Body::Multipart),
    (
        TrustWrite,
        "GET",
        "/v2/{gun}/_trust/tuf/timestamp.key",
        Body::None,
    ),
    (TrustDelete, "DELETE", "/v2/{gun}/_trust/tuf/", Body::None),
    (
        TrustDelete,
        "POST",
        "/v2/{gun}/_trust/tuf/timestamp.key",
        Body::None,
    ),
    // The repository verbs of the admin API are authorized like the registry calls they mirror.
    (
        Pull,
        "GET",
        "/api/v1/repositories/team/app/_tags",
        Body::None,
    ),
    (
        Delete,
        "DELETE",
        "/api/v1/repositories/team/app/_manifests/{missing}",
        Body::None,
    ),
    (Catalog, "GET", "/api/v1/repositories", Body::None),
    // An import writes its destination as a push does (allowed: 400 for the empty body).
    (Push, "POST", "/api/v1/import/team/app", Body::None),
    (
        PullOther,
        "GET",
        "/api/v1/repositories/other/app/_tags",
        Body::None,
    ),
    (Admin, "GET", "/api/v1/users", Body::None),
    (Admin, "GET", "/api/v1/audit?limit=1", Body::None),
    (PullOther, "GET", "/v2/other/app/manifests/v1", Body::None),
    (
        PushOther,
        "POST",
        "/v2/other/app/blobs/uploads/",
        Body::None,
    ),
    (
        TrustReadOther,
        "GET",
        "/v2/{ogun}/_trust/tuf/root.json",
        Body::None,
    ),
    (
        TrustWriteOther,
        "POST",
        "/v2/{ogun}/_trust/tuf/",
        Body::Multipart,
    ),
    (Metrics, "GET", "/metrics", Body::None),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum X {
    /// Authorization passed.
    A,
    /// 401 with a Bearer challenge (or the token endpoint's 401 in the token flow).
    U,
    /// 403 DENIED.
    F,
}
use X::*;

#[derive(Clone, Copy, Debug)]
enum Who {
    Anonymous,
    /// No credentials, with the anonymous-pull switch on.
    AnonymousPullOn,
    /// A user with these roles at registry scope.
    User(&'static [&'static str]),
    /// A user with one role on REPO only.
    UserOnRepo(&'static str),
    ServicePrincipal(&'static str),
    AdminAccount,
    /// A repository-scoped token whose scope map gives these actions on REPO.
    Token(&'static [&'static str]),
    /// A user (with AcrPush) that was disabled: its right password no longer logs in.
    DisabledUser,
    /// A repository-scoped token whose expiry has passed.
    ExpiredScopedToken,
    /// A live access token (with every scope) of a user deleted since.
    DeletedIdentityToken,
    /// An access token signed by the server's own key for the owner, but expired.
    ExpiredJwt,
}

struct Row {
    who: Who,
    expect: &'static [(Class, X)],
    /// What `_catalog` lists when allowed.
    lists: &'static [&'static str],
}

const BOTH: &[&str] = &["other/app", "team/app"];
const OWN: &[&str] = &["team/app"];
const NONE: &[&str] = &[];
const SCOPED_TOKEN_SIGN: &[&str] = &["trust/read", "trust/write", "content/read"];

#[rustfmt::skip]
const ROWS: &[Row] = &[
    Row { who: Who::Anonymous, lists: NONE, expect: &[
        (Ping, U), (Pull, U), (Push, U), (Delete, U), (Catalog, U), (GlobalChangefeed, U),
        (TrustRead, U), (TrustWrite, U), (TrustDelete, U), (Admin, U),
        (PullOther, U), (PushOther, U), (TrustReadOther, U), (TrustWriteOther, U), (Metrics, U)] },
    // Anonymous pull opens pulls and trust reads only; listings still need credentials.
    Row { who: Who::AnonymousPullOn, lists: BOTH, expect: &[
        (Ping, U), (Pull, A), (Push, U), (Delete, U), (Catalog, U), (GlobalChangefeed, U),
        (TrustRead, A), (TrustWrite, U), (TrustDelete, U), (Admin, U),
        (PullOther, A), (PushOther, U), (TrustReadOther, A), (TrustWriteOther, U), (Metrics, U)] },
    Row { who: Who::User(&["AcrPull"]), lists: BOTH, expect: &[
        (Ping, A), (Pull, A), (Push, F), (Delete, F), (Catalog, A), (GlobalChangefeed, A),
        (TrustRead, A), (TrustWrite, F), (TrustDelete, F), (Admin, F),
        (PullOther, A), (PushOther, F), (TrustReadOther, A), (TrustWriteOther, F), (Metrics, F)] },
    Row { who: Who::User(&["AcrPush"]), lists: BOTH, expect: &[
        (Ping, A), (Pull, A), (Push, A), (Delete, F), (Catalog, A), (GlobalChangefeed, A),
        (TrustRead, A), (TrustWrite, F), (TrustDelete, F), (Admin, F),
        (PullOther, A), (PushOther, A), (TrustReadOther, A), (TrustWriteOther, F), (Metrics, F)] },
    Row { who: Who::User(&["AcrDelete"]), lists: NONE, expect: &[
        (Ping, A), (Pull, F), (Push, F), (Delete, A), (Catalog, A), (GlobalChangefeed, F),
        (TrustRead, F), (TrustWrite, F), (TrustDelete, F), (Admin, F),
        (PullOther, F), (PushOther, F), (TrustReadOther, F), (TrustWriteOther, F), (Metrics, F)] },
    Row { who: Who::User(&["AcrImageSigner"]), lists: NONE, expect: &[
        (Ping, A), (Pull, F), (Push, F), (Delete, F), (Catalog, A), (GlobalChangefeed, F),
        (TrustRead, A), (TrustWrite, A), (TrustDelete, A), (Admin, F),
        (PullOther, F), (PushOther, F), (TrustReadOther, A), (TrustWriteOther, A), (Metrics, F)] },
    Row { who: Who::User(&["AcrPush", "AcrImageSigner"]), lists: BOTH, expect: &[
        (Ping, A), (Pull, A), (Push, A), (Delete, F), (Catalog, A), (GlobalChangefeed, A),
        (TrustRead, A), (TrustWrite, A), (TrustDelete, A), (Admin, F),
        (PullOther, A), (PushOther, A), (TrustReadOther, A), (TrustWriteOther, A), (Metrics, F)] },
    Row { who: Who::User(&["Owner"]), lists: BOTH, expect: &[
        (Ping, A), (Pull, A), (Push, A), (Delete, A), (Catalog, A), (GlobalChangefeed, A),
        (TrustRead, A), (TrustWrite, A), (TrustDelete, A), (Admin, A),
        (PullOther, A), (PushOther, A), (TrustReadOther, A), (TrustWriteOther, A), (Metrics, A)] },
    Row { who: Who::User(&[]), lists: NONE, expect: &[
        (Ping, A), (Pull, F), (Push, F), (Delete, F), (Catalog, A), (GlobalChangefeed, F),
        (TrustRead, F), (TrustWrite, F), (TrustDelete, F), (Admin, F),
        (PullOther, F), (PushOther, F), (TrustReadOther, F), (TrustWriteOther, F), (Metrics, F)] },
    Row { who: Who::UserOnRepo("AcrPush"), lists: OWN, expect: &[
        (Ping, A), (Pull, A), (Push, A), (Delete, F), (Catalog, A), (GlobalChangefeed, F),
        (TrustRead, A), (TrustWrite, F), (TrustDelete, F), (Admin, F),
        (PullOther, F), (PushOther, F), (TrustReadOther, F), (TrustWriteOther, F), (Metrics, F)] },
    Row { who: Who::UserOnRepo("AcrImageSigner"), lists: NONE, expect: &[
        (Ping, A), (Pull, F), (Push, F), (Delete, F), (Catalog, A), (GlobalChangefeed, F),
        (TrustRead, A), (TrustWrite, A), (TrustDelete, A), (Admin, F),
        (PullOther, F), (PushOther, F), (TrustReadOther, F), (TrustWriteOther, F), (Metrics, F)] },
    Row { who: Who::ServicePrincipal("AcrPush"), lists: BOTH, expect: &[
        (Ping, A), (Pull, A), (Push, A), (Delete, F), (Catalog, A), (GlobalChangefeed, A),
        (TrustRead, A), (TrustWrite, F), (TrustDelete, F), (Admin, F),
        (PullOther, A), (PushOther, A), (TrustReadOther, A), (TrustWriteOther, F), (Metrics, F)] },
    // Built in: push/pull everywhere, never trust writes, no admin API without the Owner role.
    Row { who: Who::AdminAccount, lists: BOTH, expect: &[
        (Ping, A), (Pull, A), (Push, A), (Delete, F), (Catalog, A), (GlobalChangefeed, A),
        (TrustRead, A), (TrustWrite, F), (TrustDelete, F), (Admin, F),
        (PullOther, A), (PushOther, A), (TrustReadOther, A), (TrustWriteOther, F), (Metrics, F)] },
    Row { who: Who::Token(&["content/read"]), lists: OWN, expect: &[
        (Ping, A), (Pull, A), (Push, F), (Delete, F), (Catalog, A), (GlobalChangefeed, F),
        (TrustRead, F), (TrustWrite, F), (TrustDelete, F), (Admin, F),
        (PullOther, F), (PushOther, F), (TrustReadOther, F), (TrustWriteOther, F), (Metrics, F)] },
    Row { who: Who::Token(&["content/read", "content/write"]), lists: OWN, expect: &[
        (Ping, A), (Pull, A), (Push, A), (Delete, F), (Catalog, A), (GlobalChangefeed, F),
        (TrustRead, F), (TrustWrite, F), (TrustDelete, F), (Admin, F),
        (PullOther, F), (PushOther, F), (TrustReadOther, F), (TrustWriteOther, F), (Metrics, F)] },
    // Signs its repository, not another; with every trust action it is that repository's trust
    // admin too (notary's `*`: delete, key rotation), as AcrImageSigner is.
    Row { who: Who::Token(SCOPED_TOKEN_SIGN), lists: OWN, expect: &[
        (Ping, A), (Pull, A), (Push, F), (Delete, F), (Catalog, A), (GlobalChangefeed, F),
        (TrustRead, A), (TrustWrite, A), (TrustDelete, A), (Admin, F),
        (PullOther, F), (PushOther, F), (TrustReadOther, F), (TrustWriteOther, F), (Metrics, F)] },
    Row { who: Who::DisabledUser, lists: NONE, expect: &[
        (Ping, U), (Pull, U), (Push, U), (Delete, U), (Catalog, U), (GlobalChangefeed, U),
        (TrustRead, U), (TrustWrite, U), (TrustDelete, U), (Admin, U),
        (PullOther, U), (PushOther, U), (TrustReadOther, U), (TrustWriteOther, U), (Metrics, U)] },
    Row { who: Who::ExpiredScopedToken, lists: NONE, expect: &[
        (Ping, U), (Pull, U), (Push, U), (Delete, U), (Catalog, U), (GlobalChangefeed, U),
        (TrustRead, U), (TrustWrite, U), (TrustDelete, U), (Admin, U),
        (PullOther, U), (PushOther, U), (TrustReadOther, U), (TrustWriteOther, U), (Metrics, U)] },
    Row { who: Who::DeletedIdentityToken, lists: NONE, expect: &[
        (Ping, U), (Pull, U), (Push, U), (Delete, U), (Catalog, U), (GlobalChangefeed, U),
        (TrustRead, U), (TrustWrite, U), (TrustDelete, U), (Admin, U),
        (PullOther, U), (PushOther, U), (TrustReadOther, U), (TrustWriteOther, U), (Metrics, U)] },
    Row { who: Who::ExpiredJwt, lists: NONE, expect: &[
        (Ping, U), (Pull, U), (Push, U), (Delete, U), (Catalog, U), (GlobalChangefeed, U),
        (TrustRead, U), (TrustWrite, U), (TrustDelete, U), (Admin, U),
        (PullOther, U), (PushOther, U), (TrustReadOther, U), (TrustWriteOther, U), (Metrics, U)] },
    // Reads the metrics and nothing else (a scraper's service principal).
    Row { who: Who::User(&["MetricsReader"]), lists: NONE, expect: &[
        (Ping, A), (Pull, F), (Push, F), (Delete, F), (Catalog, A), (GlobalChangefeed, F),
        (TrustRead, F), (TrustWrite, F), (TrustDelete, F), (Admin, F),
        (PullOther, F), (PushOther, F), (TrustReadOther, F), (TrustWriteOther, F), (Metrics, A)] },
];

/// Failed logins per identity name before the server throttles (it allows 10 per minute).
const FAILURES_PER_IDENTITY: usize = 8;

/// How a row's requests authenticate.
enum Creds {
    Anonymous,
    /// Name/password pairs; rows whose logins fail rotate through several, so the per-identity
    /// throttle never turns their 401 into 429.
    Login(Vec<(String, String)>),
    Bearer(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// Credentials (or none) on the request itself.
    Direct,
    /// Docker's token flow.
    TokenFlow,
}

struct Ctx<'a> {
    srv: &'a Server,
    /// Logins of scoped tokens whose expiry has passed (made before the run, see below).
    expired: Vec<(String, String)>,
    host: String,
    manifest: Vec<u8>,
    digest: String,
    blob: String,
    missing: String,
}

impl Ctx<'_> {
    fn path(&self, template: &str) -> String {
        template
            .replace("{gun}", &format!("{}/{REPO}", self.host))
            .replace("{ogun}", &format!("{}/{OTHER}", self.host))
            .replace("{digest}", &self.digest)
            .replace("{blob}", &self.blob)
            .replace("{missing}", &self.missing)
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        ep: &(Class, &str, &str, Body),
        cred: &Cred,
    ) -> Resp {
        let method: Method = ep.1.parse().unwrap();
        let (ct, body) = match ep.3 {
            Body::None => (None, None),
            Body::Manifest => (Some(OCI_MANIFEST.to_owned()), Some(self.manifest.clone())),
            Body::Multipart => {
                let (ct, body) = multipart(&[("targets", b"{\"not\":\"valid tuf\"}")]);
                (Some(ct), Some(body))
            }
        };
        let headers: Vec<(&str, &str)> = ct.iter().map(|c| ("content-type", c.as_str())).collect();
        call_with(
            self.srv,
            client,
            method,
            &self.path(ep.2),
            cred,
            &headers,
            body,
        )
        .await
    }
}

/// Checks one response against the expected outcome; returns a description of a mismatch.
fn check(r: &Resp, want: X) -> Result<(), String> {
    let bad = |why: &str| Err(format!("expected {want:?} ({why}): {r}"));
    match want {
        A => {
            if matches!(r.status, 401 | 403 | 429) || r.status >= 500 {
                return bad("authorization should pass");
            }
        }
        U => {
            if r.status != 401 {
                return bad("401");
            }
            // The token endpoint refuses credentials without a challenge; the registry challenges.
            if !r.url.contains("/oauth2/token")
                && !r
                    .header("www-authenticate")
                    .is_some_and(|h| h.starts_with("Bearer realm="))
            {
                return bad("Bearer challenge");
            }
        }
        F => {
            if r.status != 403 {
                return bad("403");
            }
            if r.method != "HEAD" && r.json()["errors"][0]["code"] != "DENIED" {
                return bad("DENIED");
            }
        }
    }
    Ok(())
}

/// Connections and login rotation of one row: rows whose logins fail move on to the next identity
/// of their pool and the next source address every few failures, so neither the per-identity
/// nor the per-address throttle turns their 401 into 429. Other rows keep one connection.
struct Slots {
    logins: usize,
    clients: Vec<reqwest::Client>,
}

impl Slots {
    fn new() -> Slots {
        Slots {
            logins: 0,
            clients: Vec::new(),
        }
    }

    fn current(&mut self, srv: &Server) -> reqwest::Client {
        let k = self.logins / FAILURES_PER_IDENTITY;
        while self.clients.len() <= k {
            self.clients.push(
                srv.client_builder()
                    .local_address(fresh_ip())
                    .build()
                    .unwrap(),
            );
        }
        self.clients[k].clone()
    }

    /// The credentials for the next login attempt (and counts it).
    fn login(&mut self, pool: &[(String, String)]) -> Cred {
        let (u, p) = &pool[(self.logins / FAILURES_PER_IDENTITY) % pool.len()];
        if pool.len() > 1 {
            self.logins += 1;
        }
        Cred::basic(u, p)
    }
}

/// Runs one row with one style over every endpoint; returns mismatches.
async fn run_row(
    ctx: &Ctx<'_>,
    row: &Row,
    creds: &Creds,
    style: Style,
    slots: &mut Slots,
) -> Vec<String> {
    let expect: HashMap<Class, X> = row.expect.iter().copied().collect();
    let mut failures = Vec::new();
    for ep in ENDPOINTS {
        let want = expect[&ep.0];
        let client = slots.current(ctx.srv);
        let r = match (creds, style) {
            (Creds::Anonymous, Style::Direct) => ctx.send(&client, ep, &Cred::None).await,
            (Creds::Login(pool), Style::Direct) => {
                let cred = slots.login(pool);
                ctx.send(&client, ep, &cred).await
            }
            (Creds::Bearer(t), _) => ctx.send(&client, ep, &Cred::Bearer(t.clone())).await,
            (Creds::Anonymous | Creds::Login(_), Style::TokenFlow) => {
                let first = ctx.send(&client, ep, &Cred::None).await;
                if first.status != 401 {
                    first
                } else {
                    let scope = challenge_scope(&first);
                    let scopes: Vec<&str> = scope.iter().map(String::as_str).collect();
                    let cred = match creds {
                        Creds::Login(pool) => slots.login(pool),
                        _ => Cred::None,
                    };
                    let t = token_get(ctx.srv, &client, &cred, &scopes, None, "").await;
                    if t.status != 200 {
                        t
                    } else {
                        let tok = t.json()["token"].as_str().unwrap().to_owned();
                        ctx.send(&client, ep, &Cred::Bearer(tok)).await
                    }
                }
            }
        };
        let what = format!("{:?} {style:?} {:?} {} {}", row.who, ep.0, ep.1, ep.2);
        if let Err(e) = check(&r, want) {
            failures.push(format!("{what}: {e}"));
            continue;
        }
        if ep.0 == Catalog && want == A {
            // `_catalog` lists names; the admin API's listing, objects with a name.
            let body = r.json();
            let listed: Vec<String> = body["repositories"]
                .as_array()
                .or_else(|| body.as_array())
                .unwrap_or_else(|| panic!("{what}: no repositories: {r}"))
                .iter()
                .map(|v| {
                    v.as_str()
                        .or_else(|| v["name"].as_str())
                        .unwrap()
                        .to_owned()
                })
                .collect();
            if listed != row.lists {
                failures.push(format!(
                    "{what}: _catalog lists {listed:?}, expected {:?}",
                    row.lists
                ));
            }
        }
    }
    failures
}

/// Every scope the endpoints can ask for, for tokens that should be able to do everything.
fn all_scopes(host: &str) -> Vec<String> {
    vec![
        format!("repository:{REPO}:pull,push,delete"),
        format!("repository:{OTHER}:pull,push"),
        format!("repository:{host}/{REPO}:pull,push,*"),
        format!("repository:{host}/{OTHER}:pull,push"),
        "registry:catalog:*".into(),
    ]
}

fn access_all(host: &str) -> Value {
    json!([
        {"type": "repository", "name": REPO, "actions": ["pull", "push", "delete", "*"]},
        {"type": "repository", "name": OTHER, "actions": ["pull", "push"]},
        {"type": "repository", "name": format!("{host}/{REPO}"), "actions": ["pull", "push", "*"]},
        {"type": "repository", "name": format!("{host}/{OTHER}"), "actions": ["pull", "push"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ])
}

/// Sets up the identity of a row (unique names per row index).
async fn setup(ctx: &Ctx<'_>, i: usize, who: Who) -> Creds {
    let srv = ctx.srv;
    let pw = format!("row-{i}-password-{}", Rng::new().hex(12));
    let name = format!("row{i}");
    let pool_size = (2 * ENDPOINTS.len()).div_ceil(FAILURES_PER_IDENTITY);
    match who {
        Who::Anonymous | Who::AnonymousPullOn => Creds::Anonymous,
        Who::User(roles) => {
            user_with_roles(srv, &name, &pw, roles).await;
            Creds::Login(vec![(name, pw)])
        }
        Who::UserOnRepo(role) => {
            create_user(srv, &name, &pw).await;
            assign(srv, role, &name, Some(REPO)).await;
            Creds::Login(vec![(name, pw)])
        }
        Who::ServicePrincipal(role) => {
            let (id, secret) = create_sp(srv, &name).await;
            assert!(id.starts_with("sp-"), "{id}");
            assign(srv, role, &id, None).await;
            Creds::Login(vec![(id, secret)])
        }
        Who::AdminAccount => {
            let v = admin(srv, Method::POST, "admin-user/enable", None).await;
            assert_eq!(v["enabled"], true, "{v}");
            let p = v["password"].as_str().expect("admin password").to_owned();
            Creds::Login(vec![("admin".into(), p)])
        }
        Who::Token(actions) => {
            let map = format!("map{i}");
            scope_map(srv, &map, REPO, actions).await;
            let p = create_token(srv, &name, &map, Some(30)).await;
            Creds::Login(vec![(name, p)])
        }
        Who::DisabledUser => {
            let mut pool = Vec::new();
            for k in 0..pool_size {
                let n = format!("{name}-{k}");
                user_with_roles(srv, &n, &pw, &["AcrPush"]).await;
                // Works before it is disabled.
                let r = call(srv, Method::GET, "/v2/", &Cred::basic(&n, &pw), &[], None).await;
                r.expect(200);
                admin(srv, Method::POST, &format!("users/{n}/disable"), None).await;
                pool.push((n, pw.clone()));
            }
            Creds::Login(pool)
        }
        Who::ExpiredScopedToken => Creds::Login(ctx.expired.clone()),
        Who::DeletedIdentityToken => {
            let cred = user_with_roles(srv, &name, &pw, &["Owner"]).await;
            let scopes = all_scopes(&ctx.host);
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let tok = bearer(srv, &cred, &scopes).await;
            // Every class allowed while the user exists.
            let client = client_from(srv, fresh_ip());
            for ep in ENDPOINTS.iter().filter(|e| e.1 == "GET") {
                let r = ctx.send(&client, ep, &Cred::Bearer(tok.clone())).await;
                check(&r, A).unwrap_or_else(|e| panic!("before deletion: {e}"));
            }
            admin(srv, Method::DELETE, &format!("users/{name}"), None).await;
            Creds::Bearer(tok)
        }
        Who::ExpiredJwt => {
            let key = ServerKey::load(srv).await;
            let access = access_all(&ctx.host);
            // The same minting with a live window works: only the expiry differs.
            let live = key.mint(&claims(srv, "owner", now(), 300, access.clone()));
            let client = client_from(srv, fresh_ip());
            for ep in ENDPOINTS.iter().filter(|e| e.1 == "GET") {
                let r = ctx.send(&client, ep, &Cred::Bearer(live.clone())).await;
                check(&r, A).unwrap_or_else(|e| panic!("minted live token: {e}"));
            }
            // Expired an hour ago (well past the verifier's leeway).
            Creds::Bearer(key.mint(&claims(srv, "owner", now() - 7200, 3600, access)))
        }
    }
}

fn styles(creds: &Creds) -> &'static [Style] {
    match creds {
        Creds::Bearer(_) => &[Style::Direct],
        _ => &[Style::Direct, Style::TokenFlow],
    }
}

#[test]
fn matrix_table_is_complete_and_matches_the_server_classifier() {
    // Every row has exactly one rule per class.
    for row in ROWS {
        let classes: Vec<Class> = row.expect.iter().map(|(c, _)| *c).collect();
        let set: BTreeSet<Class> = classes.iter().copied().collect();
        assert_eq!(
            set.len(),
            classes.len(),
            "{:?} lists a class twice",
            row.who
        );
        for c in CLASSES {
            assert!(set.contains(&c), "{:?} has no rule for {c:?}", row.who);
        }
        assert_eq!(set.len(), CLASSES.len(), "{:?}", row.who);
    }
    // Every class has endpoints, and the server classifies each as the class says.
    let host = "127.0.0.1:5000";
    let resolver = berth_server::GunResolver {
        hosts: vec!["127.0.0.1".into(), "localhost".into()],
    };
    for c in CLASSES {
        assert!(
            ENDPOINTS.iter().any(|e| e.0 == c),
            "class {c:?} has no endpoint"
        );
    }
    for (class, method, template, _) in ENDPOINTS {
        let path = template
            .replace("{gun}", &format!("{host}/{REPO}"))
            .replace("{ogun}", &format!("{host}/{OTHER}"))
            .replace("{digest}", &format!("sha256:{}", "a".repeat(64)))
            .replace("{blob}", &format!("sha256:{}", "b".repeat(64)))
            .replace("{missing}", &format!("sha256:{}", "c".repeat(64)));
        let path = path.split('?').next().unwrap();
        let req =
            berth_server::requirement(&method.parse().unwrap(), path, |g| resolver.repository(g));
        assert_eq!(req, class.requirement(host), "{method} {path}");
        assert!(
            classes_for(&req).contains(class),
            "{method} {path}: {req:?} is not a {class:?}"
        );
    }
}

#[tokio::test]
async fn authorization_matrix() {
    let mut srv = Server::start_with_auth();
    // Scoped tokens that expired a day ago. The API refuses a past expiry, so they are made
    // valid for a day and then expired in the database (a restart, so before anything else).
    scope_map(
        &srv,
        "expired-map",
        REPO,
        &["content/read", "content/write"],
    )
    .await;
    let mut expired = Vec::new();
    for k in 0..(2 * ENDPOINTS.len()).div_ceil(FAILURES_PER_IDENTITY) {
        let n = format!("expired-{k}");
        let p = create_token(&srv, &n, "expired-map", Some(1)).await;
        expired.push((n, p));
    }
    let names: Vec<String> = expired.iter().map(|(n, _)| n.clone()).collect();
    expire_identities(&mut srv, &names);
    enable_trust_as_owner(&srv).await;
    let owner = Cred::owner();
    let host = srv.host();
    let mut rng = Rng::new();

    // Content: an image in each repository (pushed as the owner with Basic credentials).
    let img = Image::build("amd64", &mut rng, 1, 300);
    let other = Image::build("arm64", &mut rng, 1, 300);
    for (repo, im) in [(REPO, &img), (OTHER, &other)] {
        push_image_as(&srv, &owner, repo, "v1", im).await;
    }
    // Trust data for OTHER, published by the owner with the real notary CLI.
    let n = Notary::new(&srv);
    let ogun = format!("{host}/{OTHER}");
    let mut cmd = n.cmd(&["init", &ogun, "-p"]);
    cmd.env(
        "NOTARY_AUTH",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("owner:{OWNER_PASSWORD}"),
        ),
    );
    run(&mut cmd, None).ok();

    let ctx = Ctx {
        srv: &srv,
        expired,
        host: host.clone(),
        manifest: img.manifest.clone(),
        digest: img.digest.clone(),
        blob: sha256(&img.config),
        missing: sha256(rng.hex(32).as_bytes()),
    };

    let mut failures = Vec::new();
    let mut checked = 0;
    // Everyone but the anonymous-pull row first (the switch changes everyone's pull rights).
    let (switch_rows, rows): (Vec<_>, Vec<_>) = ROWS
        .iter()
        .enumerate()
        .partition(|(_, r)| matches!(r.who, Who::AnonymousPullOn));
    for phase in [rows, switch_rows] {
        if phase
            .iter()
            .any(|(_, r)| matches!(r.who, Who::AnonymousPullOn))
        {
            let v = admin(
                &srv,
                Method::PUT,
                "config/anonymous-pull",
                Some(json!({"enabled": true})),
            )
            .await;
            assert_eq!(v["enabled"], true);
        }
        for (i, row) in phase {
            let creds = setup(&ctx, i, row.who).await;
            let mut slots = Slots::new();
            for style in styles(&creds) {
                failures.extend(run_row(&ctx, row, &creds, *style, &mut slots).await);
                checked += ENDPOINTS.len();
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cells differ from the table:\n{}\n{}",
        failures.len(),
        failures.join("\n\n"),
        srv.logs()
    );
}
