//! Who may do what: role assignments, scope maps, identity kinds, and the docker scope grant.
//!
//! A request needs one [`Action`] on a [`Resource`]; [`allows`] answers from an identity's
//! [`Grants`]. The token service asks [`grant_scope`] / [`grant_scopes`] for the intersection
//! of what a client requested and what [`allows`] permits — asking for too much is never an
//! error, the token just carries less (docker semantics).
//!
//! # Roles (at registry scope, or on the repositories an assignment's pattern matches)
//!
//! | Action        | AcrPull | AcrPush | AcrDelete | AcrImageSigner | Owner |
//! |---------------|:-------:|:-------:|:---------:|:--------------:|:-----:|
//! | Pull          | ✓       | ✓       |           |                | ✓     |
//! | Push          |         | ✓       |           |                | ✓     |
//! | Delete        |         |         | ✓         |                | ✓     |
//! | MetadataRead  | ✓       | ✓       |           |                | ✓     |
//! | MetadataWrite |         | ✓       |           |                | ✓     |
//! | TrustRead     | ✓       | ✓       |           | ✓              | ✓     |
//! | TrustWrite    |         |         |           | ✓              | ✓     |
//! | TrustDelete   |         |         |           | ✓              | ✓     |
//! | Catalog ¹     | ✓       | ✓       |           |                | ✓     |
//! | Admin         |         |         |           |                | ✓     |
//! | Metrics ¹     |         |         |           |                | ✓     |
//!
//! `MetricsReader` grants Metrics only: the role for a Prometheus scraper's service principal.
//!
//! ¹ Catalog and Metrics (and anything asked of [`Resource::Registry`]) need a registry-scope assignment;
//! a repository-scoped role never lists the catalog. Pushing alone cannot sign: signed pushes
//! need AcrPush plus AcrImageSigner. Metadata rights follow the cloud registry's repository
//! Reader/Writer roles (AcrPull ≈ Reader, AcrPush ≈ Writer).
//!
//! # Identity kinds
//!
//! | Kind              | Rights come from                                                   |
//! |-------------------|--------------------------------------------------------------------|
//! | user, service-principal | role assignments                                             |
//! | admin (account)   | built in: Pull, Push, MetadataRead/Write, TrustRead, Catalog, registry-wide; plus role assignments; **never** TrustWrite or TrustDelete, whatever roles it holds |
//! | token             | its scope map only (role assignments are ignored)                  |
//! | anonymous         | nothing of its own                                                 |
//!
//! With the registry's anonymous-pull switch on, every caller (anonymous or not) gets Pull and
//! TrustRead on every repository: anyone could drop their credentials to get them anyway.
//!
//! # Scope-map actions (tokens)
//!
//! `content/read` → Pull, `content/write` → Push, `content/delete` → Delete,
//! `metadata/read` → MetadataRead, `metadata/write` → MetadataWrite, `trust/read` → TrustRead,
//! `trust/write` → TrustWrite. One to one: signing with a token needs `trust/read` and
//! `trust/write` (notary wants pull and push on the GUN). A scope map that grants both on a
//! repository also grants TrustDelete there (deleting its trust data, rotating its server keys:
//! the same rights AcrImageSigner has). Tokens never get Catalog or Admin, and never anything on
//! [`Resource::Registry`].
//!
//! Every identity that holds TrustDelete on a repository also holds TrustRead and TrustWrite
//! there (tested): notary's `*` may therefore stand for all three.
//!
//! Repository patterns (in scope maps and role assignments): an exact name (`team/app`),
//! `prefix/*` (the repository `prefix` and everything below it), or `*` (every repository).
//!
//! # Docker scopes → actions
//!
//! | Scope                          | `pull`    | `push`     | `delete` | `*`                                  |
//! |--------------------------------|-----------|------------|----------|--------------------------------------|
//! | `repository:<repo>`            | Pull      | Push       | Delete   | Pull + Push + Delete                 |
//! | `repository:<host>/<repo>` GUN | TrustRead | TrustWrite | —        | TrustRead + TrustWrite + TrustDelete |
//! | `registry:catalog`             |           |            |          | Catalog                              |
//!
//! `*` is a complete grant for its name (a token holding it passes every check on that name,
//! see [`scope::access_allows`]), so it is granted only to whoever holds every action it covers.
//!
//! Whether a name is a trust GUN is the caller's call ([`NameTarget`]); [`grant_scopes`] uses
//! [`classify_name`] with the registry's own host names. A GUN for a foreign host, an unknown
//! resource type or an unknown action is granted nothing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::scope::{self, NameTarget, ResourceActions, classify_name};

/// Berth's built-in roles (names as users type them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    AcrPull,
    AcrPush,
    AcrDelete,
    AcrImageSigner,
    Owner,
    MetricsReader,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::AcrPull,
        Role::AcrPush,
        Role::AcrDelete,
        Role::AcrImageSigner,
        Role::Owner,
        Role::MetricsReader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::AcrPull => "AcrPull",
            Role::AcrPush => "AcrPush",
            Role::AcrDelete => "AcrDelete",
            Role::AcrImageSigner => "AcrImageSigner",
            Role::Owner => "Owner",
            Role::MetricsReader => "MetricsReader",
        }
    }

    /// The role column of the module-level table.
    pub fn grants(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Owner => true,
            Role::AcrPull => matches!(action, Pull | MetadataRead | TrustRead | Catalog),
            Role::AcrPush => matches!(
                action,
                Pull | Push | MetadataRead | MetadataWrite | TrustRead | Catalog
            ),
            Role::AcrDelete => matches!(action, Delete),
            Role::AcrImageSigner => matches!(action, TrustRead | TrustWrite | TrustDelete),
            Role::MetricsReader => matches!(action, Metrics),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::UnknownRole(s.to_owned()))
    }
}

/// What a request needs to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read manifests, blobs, tags, referrers.
    Pull,
    /// Upload blobs, put manifests and tags.
    Push,
    /// Delete manifests, tags, repositories.
    Delete,
    /// Read repository/tag/manifest attributes through the admin API.
    MetadataRead,
    /// Change attributes through the admin API.
    MetadataWrite,
    /// Read trust (TUF) metadata; notary's `pull` on a GUN.
    TrustRead,
    /// Publish trust metadata (sign); notary's `push` on a GUN.
    TrustWrite,
    /// Delete trust data or rotate server-held keys; notary's `*` on a GUN.
    TrustDelete,
    /// List the repositories of the registry (`registry:catalog:*`); registry-wide only.
    Catalog,
    /// Administration: registry settings, identities and roles (registry-wide) or one
    /// repository's policy and trust reset.
    Admin,
    /// Read `/metrics`; registry-wide only.
    Metrics,
}

impl Action {
    pub const ALL: [Action; 11] = [
        Action::Pull,
        Action::Push,
        Action::Delete,
        Action::MetadataRead,
        Action::MetadataWrite,
        Action::TrustRead,
        Action::TrustWrite,
        Action::TrustDelete,
        Action::Catalog,
        Action::Admin,
        Action::Metrics,
    ];

    fn writes_trust(self) -> bool {
        matches!(self, Action::TrustWrite | Action::TrustDelete)
    }
}

/// What an action is asked of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// The whole registry (or: every repository at once).
    Registry,
    /// One repository by its bare name (`team/app`, never a host-qualified GUN).
    Repository(&'a str),
}

/// A repository name, `prefix/*`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepositoryPattern(String);

impl RepositoryPattern {
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = |reason| Error::InvalidPattern {
            pattern: s.to_owned(),
            reason,
        };
        if s == "*" {
            return Ok(RepositoryPattern(s.to_owned()));
        }
        let name = s.strip_suffix("/*").unwrap_or(s);
        if name.is_empty() || name.len() > 255 {
            return Err(bad("name must be 1 to 255 bytes"));
        }
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        };
        if !name.split('/').all(component_ok) {
            return Err(bad(
                "expected a repository name (lowercase, '/'-separated), 'name/*' or '*'",
            ));
        }
        Ok(RepositoryPattern(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, repository: &str) -> bool {
        if self.0 == "*" {
            return true;
        }
        match self.0.strip_suffix("/*") {
            Some(prefix) => {
                repository == prefix
                    || repository
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            None => self.0 == repository,
        }
    }
}

impl TryFrom<String> for RepositoryPattern {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(&s)
    }
}

impl From<RepositoryPattern> for String {
    fn from(p: RepositoryPattern) -> String {
        p.0
    }
}

impl fmt::Display for RepositoryPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Actions a scope map can hold for repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum ScopeMapAction {
    ContentRead,
    ContentWrite,
    ContentDelete,
    MetadataRead,
    MetadataWrite,
    TrustRead,
    TrustWrite,
}

impl ScopeMapAction {
    pub const ALL: [ScopeMapAction; 7] = [
        ScopeMapAction::ContentRead,
        ScopeMapAction::ContentWrite,
        ScopeMapAction::ContentDelete,
        ScopeMapAction::MetadataRead,
        ScopeMapAction::MetadataWrite,
        ScopeMapAction::TrustRead,
        ScopeMapAction::TrustWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScopeMapAction::ContentRead => "content/read",
            ScopeMapAction::ContentWrite => "content/write",
            ScopeMapAction::ContentDelete => "content/delete",
            ScopeMapAction::MetadataRead => "metadata/read",
            ScopeMapAction::MetadataWrite => "metadata/write",
            ScopeMapAction::TrustRead => "trust/read",
            ScopeMapAction::TrustWrite => "trust/write",
        }
    }

    /// The one domain action each scope-map action grants.
    pub fn action(self) -> Action {
        match self {
            ScopeMapAction::ContentRead => Action::Pull,
            ScopeMapAction::ContentWrite => Action::Push,
            ScopeMapAction::ContentDelete => Action::Delete,
            ScopeMapAction::MetadataRead => Action::MetadataRead,
            ScopeMapAction::MetadataWrite => Action::MetadataWrite,
            ScopeMapAction::TrustRead => Action::TrustRead,
            ScopeMapAction::TrustWrite => Action::TrustWrite,
        }
    }
}

impl fmt::Display for ScopeMapAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ScopeMapAction {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        ScopeMapAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| Error::UnknownScopeMapAction(s.to_owned()))
    }
}

impl TryFrom<String> for ScopeMapAction {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<ScopeMapAction> for &'static str {
    fn from(a: ScopeMapAction) -> &'static str {
        a.as_str()
    }
}

/// One rule of a scope map: these actions on the repositories the pattern matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeMapRule {
    pub repository: RepositoryPattern,
    pub actions: Vec<ScopeMapAction>,
}

/// The rules of a scope map; serialized as the JSON list the identity store keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScopeMap {
    pub rules: Vec<ScopeMapRule>,
}

impl ScopeMap {
    /// Parses the stored JSON list `[{"repository": pattern, "actions": [..]}]`.
    pub fn from_json(rules: &str) -> Result<Self, Error> {
        serde_json::from_str(rules).map_err(|e| Error::InvalidScopeMap(e.to_string()))
    }

    pub fn to_json(&self) -> String {
        // Serializing plain strings and lists cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| "[]".into())
    }

    fn allows(&self, action: Action, resource: Resource<'_>) -> bool {
        let Resource::Repository(repo) = resource else {
            return false;
        };
        if action == Action::TrustDelete {
            // No scope-map action of its own: it comes with every trust action on the repository.
            return self.allows(Action::TrustRead, resource)
                && self.allows(Action::TrustWrite, resource);
        }
        self.rules.iter().any(|rule| {
            rule.repository.matches(repo) && rule.actions.iter().any(|a| a.action() == action)
        })
    }
}

/// A role given at registry scope (`repository: None`) or on matching repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignment {
    pub role: Role,
    pub repository: Option<RepositoryPattern>,
}

impl RoleAssignment {
    pub fn registry(role: Role) -> Self {
        RoleAssignment {
            role,
            repository: None,
        }
    }

    pub fn on(role: Role, pattern: &str) -> Result<Self, Error> {
        Ok(RoleAssignment {
            role,
            repository: Some(RepositoryPattern::parse(pattern)?),
        })
    }

    fn covers(&self, resource: Resource<'_>) -> bool {
        match (&self.repository, resource) {
            (None, _) => true,
            (Some(p), Resource::Repository(repo)) => p.matches(repo),
            // Registry-wide operations need a registry-scope assignment, even for `*`.
            (Some(_), Resource::Registry) => false,
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    User,
    ServicePrincipal,
    /// The shared admin account: never writes trust data.
    Admin,
    /// A repository-scoped token bound to a scope map.
    Token,
    Anonymous,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::User => "user",
            IdentityKind::ServicePrincipal => "service-principal",
            IdentityKind::Admin => "admin",
            IdentityKind::Token => "token",
            IdentityKind::Anonymous => "anonymous",
        }
    }
}

impl fmt::Display for IdentityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IdentityKind {
    type Err = Error;

    /// The strings the identity store uses for `kind`.
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "user" => IdentityKind::User,
            "service-principal" => IdentityKind::ServicePrincipal,
            "admin" => IdentityKind::Admin,
            "token" => IdentityKind::Token,
            "anonymous" => IdentityKind::Anonymous,
            other => return Err(Error::UnknownIdentityKind(other.to_owned())),
        })
    }
}

/// Built-in rights of the admin account (the cloud registry's "full push/pull").
const ADMIN_ACCOUNT_ACTIONS: [Action; 6] = [
    Action::Pull,
    Action::Push,
    Action::MetadataRead,
    Action::MetadataWrite,
    Action::TrustRead,
    Action::Catalog,
];

/// Everything the policy needs to know about a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    pub kind: IdentityKind,
    /// Used for users, service principals and the admin account; ignored for tokens.
    pub roles: Vec<RoleAssignment>,
    /// Used for tokens only.
    pub scope_map: Option<ScopeMap>,
    /// The registry's anonymous-pull switch.
    pub anonymous_pull: bool,
}

impl Grants {
    pub fn anonymous(anonymous_pull: bool) -> Self {
        Grants {
            kind: IdentityKind::Anonymous,
            roles: Vec::new(),
            scope_map: None,
            anonymous_pull,
        }
    }

    pub fn with_roles(kind: IdentityKind, roles: Vec<RoleAssignment>) -> Self {
        Grants {
            kind,
            roles,
            scope_map: None,
            anonymous_pull: false,
        }
    }

    pub fn token(scope_map: ScopeMap) -> Self {
        Grants {
            kind: IdentityKind::Token,
            roles: Vec::new(),
            scope_map: Some(scope_map),
            anonymous_pull: false,
        }
    }

    /// Same as [`allows`].
    pub fn allows(&self, action: Action, resource: Resource<'_>) -> bool {
        allows(self, action, resource)
    }
}

/// Whether `grants` permit `action` on `resource`. See the module docs for the table.
pub fn allows(grants: &Grants, action: Action, resource: Resource<'_>) -> bool {
    // The catalog and the metrics are registry-wide resources, whatever the caller passed.
    let resource = if matches!(action, Action::Catalog | Action::Metrics) {
        Resource::Registry
    } else {
        resource
    };
    let by_switch = grants.anonymous_pull
        && matches!(action, Action::Pull | Action::TrustRead)
        && matches!(resource, Resource::Repository(_) | Resource::Registry);
    if by_switch {
        return true;
    }
    let by_roles = || {
        grants
            .roles
            .iter()
            .any(|a| a.role.grants(action) && a.covers(resource))
    };
    match grants.kind {
        IdentityKind::Anonymous => false,
        IdentityKind::Token => grants
            .scope_map
            .as_ref()
            .is_some_and(|m| m.allows(action, resource)),
        IdentityKind::Admin => {
            !action.writes_trust() && (ADMIN_ACCOUNT_ACTIONS.contains(&action) || by_roles())
        }
        IdentityKind::User | IdentityKind::ServicePrincipal => by_roles(),
    }
}

/// The domain actions a docker action asks for on a name of the given target (empty: never
/// granted).
fn docker_action_needs(target: NameTarget<'_>, action: &str) -> &'static [Action] {
    match (target, action) {
        (NameTarget::Repository(_), scope::PULL) => &[Action::Pull],
        (NameTarget::Repository(_), scope::PUSH) => &[Action::Push],
        (NameTarget::Repository(_), scope::DELETE) => &[Action::Delete],
        (NameTarget::Repository(_), scope::ALL) => &[Action::Pull, Action::Push, Action::Delete],
        (NameTarget::Gun(_), scope::PULL) => &[Action::TrustRead],
        (NameTarget::Gun(_), scope::PUSH) => &[Action::TrustWrite],
        (NameTarget::Gun(_), scope::ALL) => {
            &[Action::TrustRead, Action::TrustWrite, Action::TrustDelete]
        }
        _ => &[],
    }
}

/// The granted part of one requested scope, or `None` when nothing of it is granted.
///
/// `target` says what a `repository:` name designates (ignored for other types): a bare
/// repository, a trust GUN of this registry (with the repository it maps to), or a foreign host.
/// The result keeps the requested type and name (the GUN stays host-qualified, as notary
/// checks it) and the granted actions in requested order.
pub fn grant_scope(
    grants: &Grants,
    requested: &ResourceActions,
    target: NameTarget<'_>,
) -> Option<ResourceActions> {
    let allowed = |action: &str| -> bool {
        match requested.resource_type.as_str() {
            scope::REPOSITORY => {
                let repo = match target {
                    NameTarget::Repository(r) | NameTarget::Gun(r) => r,
                    NameTarget::ForeignHost => return false,
                };
                let needs = docker_action_needs(target, action);
                !needs.is_empty()
                    && needs
                        .iter()
                        .all(|a| allows(grants, *a, Resource::Repository(repo)))
            }
            scope::REGISTRY => {
                requested.name == scope::CATALOG
                    && action == scope::ALL
                    && allows(grants, Action::Catalog, Resource::Registry)
            }
            _ => false,
        }
    };
    let actions: Vec<String> = requested
        .actions
        .iter()
        .filter(|a| allowed(a))
        .cloned()
        .collect();
    (!actions.is_empty()).then(|| ResourceActions {
        resource_type: requested.resource_type.clone(),
        name: requested.name.clone(),
        actions,
    })
}

/// Grants every requested scope, classifying `repository:` names with [`classify_name`] against
/// the registry's own host names. Ungranted scopes are left out.
pub fn grant_scopes(
    grants: &Grants,
    requested: &[ResourceActions],
    own_hosts: &[&str],
) -> Vec<ResourceActions> {
    let mut out = Vec::new();
    for r in requested {
        if let Some(g) = grant_scope(grants, r, classify_name(&r.name, own_hosts)) {
            scope::merge_into(&mut out, g);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    const HOSTS: &[&str] = &["localhost", "reg.example.com"];

    /// Expected rights per role, written out independently of `Role::grants`:
    /// columns AcrPull, AcrPush, AcrDelete, AcrImageSigner, Owner, MetricsReader.
    const ROLE_TABLE: &[(Action, [bool; 6])] = &[
        (Pull, [true, true, false, false, true, false]),
        (Push, [false, true, false, false, true, false]),
        (Delete, [false, false, true, false, true, false]),
        (MetadataRead, [true, true, false, false, true, false]),
        (MetadataWrite, [false, true, false, false, true, false]),
        (TrustRead, [true, true, false, true, true, false]),
        (TrustWrite, [false, false, false, true, true, false]),
        (TrustDelete, [false, false, false, true, true, false]),
        (Catalog, [true, true, false, false, true, false]),
        (Admin, [false, false, false, false, true, false]),
        (Metrics, [false, false, false, false, true, true]),
    ];

    fn user(roles: Vec<RoleAssignment>) -> Grants {
        Grants::with_roles(IdentityKind::User, roles)
    }

    #[test]
    fn role_table_is_exhaustive_and_matches() {
        assert_eq!(ROLE_TABLE.len(), Action::ALL.len());
        for (action, row) in ROLE_TABLE {
            for (role, want) in Role::ALL.iter().zip(row) {
                for kind in [IdentityKind::User, IdentityKind::ServicePrincipal] {
                    let g = Grants::with_roles(kind, vec![RoleAssignment::registry(*role)]);
                    for res in [Resource::Registry, Resource::Repository("team/app")] {
                        assert_eq!(
                            g.allows(*action, res),
                            *want,
                            "{kind} with {role} registry-wide: {action:?} on {res:?}"
                        );
                    }
                }
                // On one repository: the same on it, nothing elsewhere, nothing registry-wide.
                let g = user(vec![RoleAssignment::on(*role, "team/app").unwrap()]);
                assert_eq!(
                    g.allows(*action, Resource::Repository("team/app")),
                    *want && !matches!(action, Catalog | Metrics)
                );
                assert!(!g.allows(*action, Resource::Repository("team/other")));
                assert!(!g.allows(*action, Resource::Registry), "{role} {action:?}");
            }
        }
    }

    #[test]
    fn no_roles_no_rights() {
        let g = user(vec![]);
        for a in Action::ALL {
            assert!(!g.allows(a, Resource::Repository("x")));
            assert!(!g.allows(a, Resource::Registry));
        }
    }

    #[test]
    fn admin_account_never_writes_trust() {
        let builtin = [Pull, Push, MetadataRead, MetadataWrite, TrustRead, Catalog];
        let bare = Grants::with_roles(IdentityKind::Admin, vec![]);
        for a in Action::ALL {
            assert_eq!(
                bare.allows(a, Resource::Repository("x")),
                builtin.contains(&a),
                "{a:?}"
            );
        }
        // Whatever roles it holds.
        let loaded = Grants::with_roles(
            IdentityKind::Admin,
            Role::ALL.map(RoleAssignment::registry).to_vec(),
        );
        for res in [Resource::Registry, Resource::Repository("x")] {
            assert!(!loaded.allows(TrustWrite, res));
            assert!(!loaded.allows(TrustDelete, res));
            assert!(loaded.allows(Delete, res));
            assert!(loaded.allows(Admin, res));
        }
        let asked = ResourceActions::repository("localhost:5000/x", &["pull", "push", "*"]);
        assert_eq!(
            grant_scopes(&loaded, &[asked], HOSTS),
            vec![ResourceActions::repository("localhost:5000/x", &["pull"])]
        );
    }

    #[test]
    fn acr_push_cannot_sign_but_with_signer_can() {
        let push = user(vec![RoleAssignment::registry(Role::AcrPush)]);
        assert!(!push.allows(TrustWrite, Resource::Repository("team/app")));
        let gun = ResourceActions::repository("localhost:5000/team/app", &["push", "pull"]);
        assert_eq!(
            grant_scopes(&push, std::slice::from_ref(&gun), HOSTS),
            vec![ResourceActions::repository(
                "localhost:5000/team/app",
                &["pull"]
            )]
        );
        let signer = user(vec![
            RoleAssignment::registry(Role::AcrPush),
            RoleAssignment::on(Role::AcrImageSigner, "team/*").unwrap(),
        ]);
        assert_eq!(
            grant_scopes(&signer, std::slice::from_ref(&gun), HOSTS),
            vec![gun]
        );
        // The signer role on team/* does not reach other repositories.
        let other = ResourceActions::repository("localhost:5000/other/app", &["push", "pull"]);
        assert_eq!(
            grant_scopes(&signer, &[other], HOSTS),
            vec![ResourceActions::repository(
                "localhost:5000/other/app",
                &["pull"]
            )]
        );
    }

    #[test]
    fn anonymous_pull_switch() {
        let off = Grants::anonymous(false);
        let on = Grants::anonymous(true);
        for a in Action::ALL {
            assert!(!off.allows(a, Resource::Repository("x")));
            assert_eq!(
                on.allows(a, Resource::Repository("x")),
                matches!(a, Pull | TrustRead),
                "{a:?}"
            );
        }
        let asked = [
            ResourceActions::repository("x", &["pull", "push", "delete", "*"]),
            ResourceActions::repository("localhost/x", &["pull", "push", "*"]),
            ResourceActions::catalog(),
        ];
        assert!(grant_scopes(&off, &asked, HOSTS).is_empty());
        assert_eq!(
            grant_scopes(&on, &asked, HOSTS),
            vec![
                ResourceActions::repository("x", &["pull"]),
                ResourceActions::repository("localhost/x", &["pull"]),
            ]
        );
        // The switch lifts every caller to pull, tokens included.
        let mut t = Grants::token(ScopeMap::default());
        t.anonymous_pull = true;
        assert!(t.allows(Pull, Resource::Repository("x")));
        assert!(!t.allows(Push, Resource::Repository("x")));
    }

    #[test]
    fn scope_map_tokens() {
        let map = ScopeMap::from_json(
            r#"[{"repository":"ci/*","actions":["content/read","content/write","trust/read","trust/write"]},
                {"repository":"docs","actions":["content/read"]}]"#,
        )
        .unwrap();
        // Roles on a token are ignored.
        let mut g = Grants::token(map.clone());
        g.roles.push(RoleAssignment::registry(Role::Owner));
        for (repo, action, want) in [
            ("ci", Pull, true),
            ("ci/app", Push, true),
            ("ci/app/x", TrustWrite, true),
            ("ci/app", TrustRead, true),
            // trust/read + trust/write: the repository's trust admin too (notary's `*`).
            ("ci/app", TrustDelete, true),
            ("ci/app", Delete, false),
            ("ci/app", MetadataRead, false),
            ("ci/app", Admin, false),
            ("cid/app", Pull, false),
            ("docs", Pull, true),
            ("docs", Push, false),
            ("docs", TrustDelete, false),
            ("docs/sub", Pull, false),
        ] {
            assert_eq!(
                g.allows(action, Resource::Repository(repo)),
                want,
                "{repo} {action:?}"
            );
        }
        assert!(!g.allows(Catalog, Resource::Registry));
        assert!(!g.allows(Pull, Resource::Registry));
        let asked = [
            ResourceActions::repository("ci/app", &["pull", "push", "delete"]),
            ResourceActions::repository("localhost:5000/ci/app", &["pull", "push", "*"]),
            ResourceActions::catalog(),
        ];
        assert_eq!(
            grant_scopes(&g, &asked, HOSTS),
            vec![
                ResourceActions::repository("ci/app", &["pull", "push"]),
                ResourceActions::repository("localhost:5000/ci/app", &["pull", "push", "*"]),
            ]
        );
        // trust/write alone grants notary push but not pull, and not `*`.
        let only_write =
            ScopeMap::from_json(r#"[{"repository":"a","actions":["trust/write"]}]"#).unwrap();
        let asked = [ResourceActions::repository(
            "localhost/a",
            &["pull", "push", "*"],
        )];
        assert_eq!(
            grant_scopes(&Grants::token(only_write), &asked, HOSTS),
            vec![ResourceActions::repository("localhost/a", &["push"])]
        );
        // The two trust actions may come from different rules.
        let split = ScopeMap::from_json(
            r#"[{"repository":"a/*","actions":["trust/read"]},
                {"repository":"a/b","actions":["trust/write"]}]"#,
        )
        .unwrap();
        let g = Grants::token(split);
        assert!(g.allows(TrustDelete, Resource::Repository("a/b")));
        assert!(!g.allows(TrustDelete, Resource::Repository("a/c")));
        // Round trip of the stored form.
        assert_eq!(ScopeMap::from_json(&map.to_json()).unwrap(), map);
    }

    #[test]
    fn scope_map_rejects_bad_input() {
        for bad in [
            r#"[{"repository":"a","actions":["content/admin"]}]"#,
            r#"[{"repository":"A","actions":["content/read"]}]"#,
            r#"[{"repository":"a/*/b","actions":["content/read"]}]"#,
            r#"[{"repository":"","actions":["content/read"]}]"#,
            r#"{"repository":"a"}"#,
        ] {
            assert!(ScopeMap::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns() {
        let p = |s| RepositoryPattern::parse(s).unwrap();
        assert!(p("team/app").matches("team/app"));
        assert!(!p("team/app").matches("team/app/x"));
        assert!(!p("team/app").matches("team/ap"));
        assert!(p("team/*").matches("team"));
        assert!(p("team/*").matches("team/app"));
        assert!(p("team/*").matches("team/a/b"));
        assert!(!p("team/*").matches("teams/app"));
        assert!(!p("team/*").matches("tea"));
        assert!(p("*").matches("anything/at/all"));
        for bad in [
            "", "/", "/*", "a//b", "a/", "*/a", "a*", "team/**", "Team", "a b",
        ] {
            assert!(RepositoryPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pattern_star_assignment_is_not_registry_scope() {
        let g = user(vec![RoleAssignment::on(Role::Owner, "*").unwrap()]);
        assert!(g.allows(Admin, Resource::Repository("any/repo")));
        assert!(!g.allows(Admin, Resource::Registry));
        assert!(!g.allows(Catalog, Resource::Registry));
    }

    #[test]
    fn docker_scope_mapping() {
        let owner = user(vec![RoleAssignment::registry(Role::Owner)]);
        let asked = [
            ResourceActions::repository("team/app", &["pull", "push", "delete", "*", "bogus"]),
            ResourceActions::repository(
                "localhost:5000/team/app",
                &["pull", "push", "delete", "*"],
            ),
            ResourceActions::repository("docker.io/library/alpine", &["pull"]),
            ResourceActions::catalog(),
            ResourceActions::new("registry", "catalog", ["pull"]),
            ResourceActions::new("registry", "other", ["*"]),
            ResourceActions::new("plugin", "x", ["pull"]),
        ];
        assert_eq!(
            grant_scopes(&owner, &asked, HOSTS),
            vec![
                ResourceActions::repository("team/app", &["pull", "push", "delete", "*"]),
                // `delete` means nothing to notary.
                ResourceActions::repository("localhost:5000/team/app", &["pull", "push", "*"]),
                ResourceActions::catalog(),
            ]
        );
        // `*` on a repository needs all three of pull, push and delete.
        let pusher = user(vec![RoleAssignment::registry(Role::AcrPush)]);
        assert_eq!(
            grant_scopes(&pusher, &asked[..1], HOSTS),
            vec![ResourceActions::repository("team/app", &["pull", "push"])]
        );
        // The caller can also say explicitly what a name is.
        let r = ResourceActions::repository("weird.name/app", &["pull"]);
        assert_eq!(
            grant_scope(&pusher, &r, NameTarget::Repository("weird.name/app")),
            Some(r.clone())
        );
        assert_eq!(grant_scope(&pusher, &r, NameTarget::ForeignHost), None);
        // Repeated requests merge.
        let twice = [
            ResourceActions::repository("team/app", &["pull"]),
            ResourceActions::repository("team/app", &["push"]),
        ];
        assert_eq!(
            grant_scopes(&pusher, &twice, HOSTS),
            vec![ResourceActions::repository("team/app", &["pull", "push"])]
        );
    }

    /// Every granted docker action must be backed by `allows`: no combination of identity,
    /// roles and request yields more than the policy permits.
    #[test]
    fn grants_never_exceed_policy() {
        let requests: Vec<ResourceActions> = [
            "team/app",
            "localhost:5000/team/app",
            "reg.example.com/other",
            "evil.com/team/app",
            "other",
        ]
        .iter()
        .map(|n| ResourceActions::repository(*n, &["pull", "push", "delete", "*", "admin"]))
        .chain([ResourceActions::catalog()])
        .collect();
        let assignment_sets: Vec<Vec<RoleAssignment>> = {
            let mut v = vec![vec![]];
            for r in Role::ALL {
                v.push(vec![RoleAssignment::registry(r)]);
                v.push(vec![RoleAssignment::on(r, "team/*").unwrap()]);
                v.push(vec![
                    RoleAssignment::on(r, "other").unwrap(),
                    RoleAssignment::registry(Role::AcrPull),
                ]);
            }
            v
        };
        let maps = [
            ScopeMap::default(),
            ScopeMap {
                rules: vec![ScopeMapRule {
                    repository: RepositoryPattern::parse("team/*").unwrap(),
                    actions: ScopeMapAction::ALL.to_vec(),
                }],
            },
        ];
        let kinds = [
            IdentityKind::User,
            IdentityKind::ServicePrincipal,
            IdentityKind::Admin,
            IdentityKind::Token,
            IdentityKind::Anonymous,
        ];
        let mut checked = 0;
        for kind in kinds {
            for roles in &assignment_sets {
                for map in &maps {
                    for anonymous_pull in [false, true] {
                        let g = Grants {
                            kind,
                            roles: roles.clone(),
                            scope_map: Some(map.clone()),
                            anonymous_pull,
                        };
                        for granted in grant_scopes(&g, &requests, HOSTS) {
                            let requested =
                                requests.iter().find(|r| r.name == granted.name).unwrap();
                            let target = classify_name(&granted.name, HOSTS);
                            for a in &granted.actions {
                                assert!(requested.has_action(a));
                                if granted.resource_type == scope::REGISTRY {
                                    assert!(g.allows(Catalog, Resource::Registry));
                                    continue;
                                }
                                let repo = match target {
                                    NameTarget::Repository(r) | NameTarget::Gun(r) => r,
                                    NameTarget::ForeignHost => panic!("foreign host granted"),
                                };
                                let needs = docker_action_needs(target, a);
                                assert!(!needs.is_empty(), "{a} granted without meaning");
                                for n in needs {
                                    assert!(g.allows(*n, Resource::Repository(repo)));
                                }
                                if kind == IdentityKind::Admin {
                                    assert!(
                                        !(matches!(target, NameTarget::Gun(_))
                                            && (a == "push" || a == "*"))
                                    );
                                }
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 100, "{checked}");
    }

    /// notary asks for `*` alone to delete trust data or rotate a server key, then reads and
    /// publishes with that token: whoever may hold TrustDelete gets `*`, a complete grant.
    #[test]
    fn star_on_a_gun_goes_to_trust_admins_only() {
        let star = ResourceActions::repository("localhost:5000/team/app", &["*"]);
        let trust_map = |actions: &[ScopeMapAction]| {
            Grants::token(ScopeMap {
                rules: vec![ScopeMapRule {
                    repository: RepositoryPattern::parse("team/app").unwrap(),
                    actions: actions.to_vec(),
                }],
            })
        };
        let cases = [
            (user(vec![RoleAssignment::registry(Role::Owner)]), true),
            (
                user(vec![
                    RoleAssignment::on(Role::AcrPush, "team/app").unwrap(),
                    RoleAssignment::on(Role::AcrImageSigner, "team/app").unwrap(),
                ]),
                true,
            ),
            (
                user(vec![
                    RoleAssignment::on(Role::AcrImageSigner, "team/*").unwrap(),
                ]),
                true,
            ),
            (
                trust_map(&[ScopeMapAction::TrustRead, ScopeMapAction::TrustWrite]),
                true,
            ),
            (user(vec![RoleAssignment::registry(Role::AcrPush)]), false),
            (user(vec![RoleAssignment::registry(Role::AcrDelete)]), false),
            (
                user(vec![
                    RoleAssignment::on(Role::AcrImageSigner, "other").unwrap(),
                ]),
                false,
            ),
            (
                Grants::with_roles(
                    IdentityKind::Admin,
                    vec![RoleAssignment::registry(Role::Owner)],
                ),
                false,
            ),
            (trust_map(&[ScopeMapAction::TrustWrite]), false),
            (trust_map(&[ScopeMapAction::TrustRead]), false),
            (trust_map(&ScopeMapAction::ALL[..5]), false),
            (Grants::anonymous(true), false),
        ];
        for (g, want) in cases {
            let granted = grant_scopes(&g, std::slice::from_ref(&star), HOSTS);
            assert_eq!(granted == [star.clone()], want, "{g:?}: {granted:?}");
            assert!(
                granted.is_empty() || granted == [star.clone()],
                "{g:?}: {granted:?}"
            );
        }
    }

    /// The classifier asks only TrustDelete of notary's admin endpoints, and a `*` token passes
    /// every check on its GUN: sound only if TrustDelete never comes without the other two.
    #[test]
    fn trust_delete_always_comes_with_trust_read_and_write() {
        let mut maps = vec![ScopeMap::default()];
        for n in 0..(1u32 << ScopeMapAction::ALL.len()) {
            let actions = ScopeMapAction::ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| n & (1 << i) != 0)
                .map(|(_, a)| *a)
                .collect();
            maps.push(ScopeMap {
                rules: vec![
                    ScopeMapRule {
                        repository: RepositoryPattern::parse("team/*").unwrap(),
                        actions,
                    },
                    ScopeMapRule {
                        repository: RepositoryPattern::parse("team/app").unwrap(),
                        actions: vec![ScopeMapAction::TrustRead],
                    },
                ],
            });
        }
        let mut role_sets = vec![vec![]];
        for r in Role::ALL {
            role_sets.push(vec![RoleAssignment::registry(r)]);
            role_sets.push(vec![RoleAssignment::on(r, "team/*").unwrap()]);
            role_sets.push(vec![
                RoleAssignment::on(r, "team/app").unwrap(),
                RoleAssignment::on(Role::AcrPull, "*").unwrap(),
            ]);
        }
        let kinds = [
            IdentityKind::User,
            IdentityKind::ServicePrincipal,
            IdentityKind::Admin,
            IdentityKind::Token,
            IdentityKind::Anonymous,
        ];
        let mut holders = 0;
        for kind in kinds {
            for roles in &role_sets {
                for map in &maps {
                    for anonymous_pull in [false, true] {
                        let g = Grants {
                            kind,
                            roles: roles.clone(),
                            scope_map: Some(map.clone()),
                            anonymous_pull,
                        };
                        for repo in ["team/app", "team/other", "elsewhere"] {
                            let r = Resource::Repository(repo);
                            if g.allows(TrustDelete, r) {
                                holders += 1;
                                assert!(g.allows(TrustRead, r) && g.allows(TrustWrite, r));
                            }
                        }
                    }
                }
            }
        }
        assert!(holders > 100, "{holders}");
    }

    #[test]
    fn names_parse() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!(matches!(
            "acrpull".parse::<Role>(),
            Err(Error::UnknownRole(_))
        ));
        assert!("Contributor".parse::<Role>().is_err());
        for a in ScopeMapAction::ALL {
            assert_eq!(a.as_str().parse::<ScopeMapAction>().unwrap(), a);
        }
        for k in ["user", "service-principal", "admin", "token", "anonymous"] {
            assert_eq!(k.parse::<IdentityKind>().unwrap().as_str(), k);
        }
        assert!("root".parse::<IdentityKind>().is_err());
    }
}
