//! The Docker token scope grammar (`resourcetype[(class)]:resourcename:action[,action...]`).
//!
//! ```text
//!   repository:team/app:pull,push
//!   repository:localhost:5000/team/app:pull,push    (trust GUN: the name holds host:port/)
//!   registry:catalog:*
//! ```
//!
//! The name may contain one `host:port` colon, so the type is split off at the first `:` and the
//! actions at the last `:`. Several scopes travel space-separated in one `scope` parameter or in
//! repeated parameters; [`parse_scopes`] takes both and merges repeats of one resource.
//!
//! Parsing checks syntax only. An unknown resource type or action is not an error: docker
//! semantics are that a token service grants the intersection of what was asked and what is
//! allowed, so unknown requests simply come back ungranted.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::Error;

/// Resource type of repositories (and trust GUNs, which docker scopes the same way).
pub const REPOSITORY: &str = "repository";
/// Resource type of registry-wide resources; its one name is [`CATALOG`].
pub const REGISTRY: &str = "registry";
/// The name in `registry:catalog:*`.
pub const CATALOG: &str = "catalog";
pub const PULL: &str = "pull";
pub const PUSH: &str = "push";
pub const DELETE: &str = "delete";
/// The repository's admin action: notary requires it (alone) for deleting trust data and
/// rotating server keys. A token carrying it holds every action on that resource (see
/// [`access_allows`]), so the policy grants it only to whoever holds all of them.
pub const ALL: &str = "*";

/// Longer scopes are refused outright; real names are at most a few hundred bytes.
const MAX_SCOPE_LEN: usize = 1024;

/// One entry of a scope request or of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceActions {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub name: String,
    /// Go marshals a nil slice as `null`; accept it as "no actions".
    #[serde(default, deserialize_with = "null_as_empty")]
    pub actions: Vec<String>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

impl ResourceActions {
    pub fn new(
        resource_type: impl Into<String>,
        name: impl Into<String>,
        actions: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        ResourceActions {
            resource_type: resource_type.into(),
            name: name.into(),
            actions: actions.into_iter().map(Into::into).collect(),
        }
    }

    /// `repository:<name>:<actions>`.
    pub fn repository(name: impl Into<String>, actions: &[&str]) -> Self {
        Self::new(REPOSITORY, name, actions.iter().copied())
    }

    /// `registry:catalog:*`.
    pub fn catalog() -> Self {
        Self::new(REGISTRY, CATALOG, [ALL])
    }

    pub fn has_action(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action)
    }
}

impl fmt::Display for ResourceActions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.resource_type,
            self.name,
            self.actions.join(",")
        )
    }
}

impl FromStr for ResourceActions {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason| Error::InvalidScope {
            scope: s.to_owned(),
            reason,
        };
        if s.len() > MAX_SCOPE_LEN {
            return Err(bad("longer than 1024 bytes"));
        }
        let (ty, rest) = s
            .split_once(':')
            .ok_or_else(|| bad("expected type:name:actions"))?;
        let (name, actions) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad("expected type:name:actions"))?;
        let resource_type = parse_type(ty).map_err(bad)?;
        check_name(name).map_err(bad)?;
        let mut parsed: Vec<String> = Vec::new();
        for action in actions.split(',') {
            check_action(action).map_err(bad)?;
            if !parsed.iter().any(|a| a == action) {
                parsed.push(action.to_owned());
            }
        }
        Ok(ResourceActions {
            resource_type,
            name: name.to_owned(),
            actions: parsed,
        })
    }
}

/// `repository(plugin)` is a deprecated resource class that must be treated as `repository`,
/// so the class is checked and dropped.
fn parse_type(ty: &str) -> Result<String, &'static str> {
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let base = match ty.split_once('(') {
        Some((base, class)) => {
            let class = class
                .strip_suffix(')')
                .ok_or("resource class must be closed with ')'")?;
            if !word(class) {
                return Err("resource class must be lowercase letters and digits");
            }
            base
        }
        None => ty,
    };
    if !word(base) {
        return Err("resource type must be lowercase letters and digits");
    }
    Ok(base.to_owned())
}

/// Syntax of a resource name: `/`-separated non-empty components of `[A-Za-z0-9._-]`, the first
/// of which may be a registry host with an optional port (`host:5000`, `[::1]:5000`).
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty resource name");
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    let (first, rest) = match name.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (name, None),
    };
    if let Some(rest) = rest {
        if !rest.split('/').all(component_ok) {
            return Err("resource name has an empty or invalid path component");
        }
        if !component_ok(first) && split_host_port(first).is_none() {
            return Err("resource name has an invalid first component");
        }
    } else if !component_ok(first) {
        return Err("resource name may only contain letters, digits, '.', '_', '-' and '/'");
    }
    Ok(())
}

fn check_action(action: &str) -> Result<(), &'static str> {
    if action.is_empty() {
        return Err("empty action");
    }
    if action == ALL
        || action
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(())
    } else {
        Err("actions must be lowercase words (pull, push, delete) or '*'")
    }
}

/// Splits `host[:port]` / `[v6]:port`; `None` unless it is a syntactically valid host.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (inner, after) = v6.split_once(']')?;
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return None;
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (&s[..inner.len() + 2], port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return None;
        }
        (host, port)
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some((host, port))
}

/// Parses scope parameters: each may hold several space-separated scopes, empty ones are
/// ignored (a bare refresh-token request sends `scope=`), and repeats of one resource are merged
/// into one entry with the union of their actions, in first-seen order.
pub fn parse_scopes<I, S>(params: I) -> Result<Vec<ResourceActions>, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out: Vec<ResourceActions> = Vec::new();
    for param in params {
        for one in param.as_ref().split_ascii_whitespace() {
            let parsed: ResourceActions = one.parse()?;
            merge_into(&mut out, parsed);
        }
    }
    Ok(out)
}

/// Adds `entry` to `list`, merging its actions into an existing entry for the same resource.
pub fn merge_into(list: &mut Vec<ResourceActions>, entry: ResourceActions) {
    match list
        .iter_mut()
        .find(|e| e.resource_type == entry.resource_type && e.name == entry.name)
    {
        Some(existing) => {
            for a in entry.actions {
                if !existing.has_action(&a) {
                    existing.actions.push(a);
                }
            }
        }
        None => list.push(entry),
    }
}

/// The space-separated form used in `WWW-Authenticate` and the OAuth2 `scope` field.
pub fn format_scopes(scopes: &[ResourceActions]) -> String {
    scopes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a token's `access` claim carries `action` on the resource. `*` is a complete grant
/// for its resource: the notary CLI asks for `*` alone for `delete --remote` and
/// `key rotate -r`, then reads and publishes metadata with that same token.
pub fn access_allows(
    access: &[ResourceActions],
    resource_type: &str,
    name: &str,
    action: &str,
) -> bool {
    access.iter().any(|e| {
        e.resource_type == resource_type
            && e.name == name
            && (e.has_action(action) || e.has_action(ALL))
    })
}

/// What a `repository:` scope's name designates on this registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameTarget<'a> {
    /// A plain repository name (`team/app`): registry content.
    Repository(&'a str),
    /// A host-qualified trust GUN naming this registry (`localhost:5000/team/app`); carries the
    /// repository (`team/app`) it maps to.
    Gun(&'a str),
    /// A host-qualified name for a host that is not this registry: grants nothing.
    ForeignHost,
}

/// Classifies a scope name the way docker's reference grammar does: a first component with a
/// `.` or `:`, a `[v6]` literal, or exactly `localhost` is a registry host. A host matches one of
/// `own_hosts` case-insensitively; an entry without a port matches any port of that host, an
/// entry with a port only that port. Callers list their `--hostname`s, `localhost`, `127.0.0.1`,
/// `[::1]`.
pub fn classify_name<'a>(name: &'a str, own_hosts: &[&str]) -> NameTarget<'a> {
    let Some((first, rest)) = name.split_once('/') else {
        return NameTarget::Repository(name);
    };
    let looks_like_host =
        first.contains(['.', ':']) || first.starts_with('[') || first == "localhost";
    if !looks_like_host {
        return NameTarget::Repository(name);
    }
    let Some((host, port)) = split_host_port(first) else {
        return NameTarget::ForeignHost;
    };
    let matches = own_hosts
        .iter()
        .any(|entry| host_matches(entry, host, port));
    if matches {
        NameTarget::Gun(rest)
    } else {
        NameTarget::ForeignHost
    }
}

/// Whether a configured host entry names `host[:port]`.
fn host_matches(entry: &str, host: &str, port: Option<&str>) -> bool {
    // A bare IPv6 literal (several colons, no brackets) names that host on any port.
    if !entry.starts_with('[') && entry.matches(':').count() > 1 {
        let inner = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        return inner.is_some_and(|h| h.eq_ignore_ascii_case(entry));
    }
    match split_host_port(entry) {
        Some((eh, None)) => eh.eq_ignore_ascii_case(host),
        Some((eh, Some(ep))) => eh.eq_ignore_ascii_case(host) && port == Some(ep),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ResourceActions {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_plain_repository_scope() {
        let s = p("repository:team/app:pull,push");
        assert_eq!(s.resource_type, "repository");
        assert_eq!(s.name, "team/app");
        assert_eq!(s.actions, ["pull", "push"]);
        assert_eq!(s.to_string(), "repository:team/app:pull,push");
    }

    #[test]
    fn parses_host_qualified_gun_scope() {
        let s = p("repository:localhost:5000/team/app:pull,push");
        assert_eq!(s.name, "localhost:5000/team/app");
        assert_eq!(s.actions, ["pull", "push"]);
        let s = p("repository:myreg.example.com/app:*");
        assert_eq!(s.name, "myreg.example.com/app");
        assert_eq!(s.actions, ["*"]);
        let s = p("repository:[::1]:5000/app:pull");
        assert_eq!(s.name, "[::1]:5000/app");
    }

    #[test]
    fn parses_catalog_and_class() {
        assert_eq!(p("registry:catalog:*"), ResourceActions::catalog());
        let s = p("repository(plugin):vieux/sshfs:pull");
        assert_eq!(s.resource_type, "repository");
        assert_eq!(s.to_string(), "repository:vieux/sshfs:pull");
    }

    #[test]
    fn round_trips() {
        for s in [
            "repository:a:pull",
            "repository:team/app:pull,push,delete,*",
            "repository:localhost:5000/team/app:pull,push",
            "repository:127.0.0.1:5443/x/y/z:push",
            "registry:catalog:*",
            "repository:samples/hello-world_1.0:metadata_read",
        ] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
    }

    #[test]
    fn duplicate_actions_collapse() {
        assert_eq!(p("repository:a:pull,pull,push").actions, ["pull", "push"]);
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "repository",
            "repository:app",
            "repository::pull",
            "repository:app:",
            "repository:app:pull,,push",
            "repository:app:PULL",
            "repository:app:pu ll",
            "Repository:app:pull",
            "repository(:app:pull",
            "repository(plugin:app:pull",
            "repository():app:pull",
            ":app:pull",
            "repository:/app:pull",
            "repository:app/:pull",
            "repository:team//app:pull",
            "repository:te am/app:pull",
            "repository:localhost:5000/team/app",
            "repository:localhost:port/app:pull",
            "repository:localhost:5000:pull",
            "repository:a:b:c/d:pull",
            "repository:team/app:pull;rm",
            "repository:app:**",
            "repository:app:pull*",
        ] {
            let err = s.parse::<ResourceActions>().unwrap_err();
            assert!(
                matches!(err, Error::InvalidScope { .. }),
                "{s:?} gave {err:?}"
            );
            assert!(err.to_string().contains("invalid scope"), "{err}");
        }
        let long = format!("repository:{}:pull", "a".repeat(2000));
        assert!(long.parse::<ResourceActions>().is_err());
    }

    #[test]
    fn unknown_types_and_actions_parse() {
        // Syntax is fine; the policy simply never grants them.
        let s = p("plugin:foo:install");
        assert_eq!(s.resource_type, "plugin");
        assert_eq!(s.actions, ["install"]);
    }

    #[test]
    fn multiple_scopes_space_separated_and_repeated() {
        let scopes = parse_scopes([
            "repository:a:pull repository:b:push",
            "",
            "repository:a:push  registry:catalog:*",
        ])
        .unwrap();
        assert_eq!(
            scopes,
            vec![
                ResourceActions::repository("a", &["pull", "push"]),
                ResourceActions::repository("b", &["push"]),
                ResourceActions::catalog(),
            ]
        );
        assert_eq!(
            format_scopes(&scopes),
            "repository:a:pull,push repository:b:push registry:catalog:*"
        );
        assert!(parse_scopes(["repository:a:pull garbage"]).is_err());
        assert!(parse_scopes(Vec::<String>::new()).unwrap().is_empty());
    }

    #[test]
    fn serde_matches_docker_access_entries() {
        let e = ResourceActions::repository("team/app", &["pull"]);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"type":"repository","name":"team/app","actions":["pull"]}"#
        );
        let back: ResourceActions =
            serde_json::from_str(r#"{"type":"repository","name":"x","actions":null}"#).unwrap();
        assert!(back.actions.is_empty());
        let back: ResourceActions =
            serde_json::from_str(r#"{"type":"repository","name":"x"}"#).unwrap();
        assert!(back.actions.is_empty());
    }

    #[test]
    fn access_allows_named_actions_and_star_as_everything() {
        let access = vec![
            ResourceActions::repository("a", &["pull"]),
            ResourceActions::repository("localhost:5000/a", &["*"]),
        ];
        assert!(access_allows(&access, "repository", "a", "pull"));
        assert!(!access_allows(&access, "repository", "a", "push"));
        assert!(!access_allows(&access, "repository", "a", "*"));
        assert!(!access_allows(&access, "repository", "b", "pull"));
        assert!(!access_allows(&access, "registry", "a", "pull"));
        // `*` alone covers every action on its own resource, and nothing elsewhere.
        for action in ["pull", "push", "delete", "*"] {
            assert!(access_allows(
                &access,
                "repository",
                "localhost:5000/a",
                action
            ));
            assert!(!access_allows(
                &access,
                "repository",
                "localhost:5000/b",
                action
            ));
            assert!(!access_allows(
                &access,
                "registry",
                "localhost:5000/a",
                action
            ));
        }
    }

    #[test]
    fn classifies_names() {
        let own = ["localhost", "127.0.0.1", "reg.example.com:5443", "::1"];
        use NameTarget::*;
        assert_eq!(classify_name("team/app", &own), Repository("team/app"));
        assert_eq!(classify_name("app", &own), Repository("app"));
        assert_eq!(
            classify_name("localhost:5000/team/app", &own),
            Gun("team/app")
        );
        assert_eq!(classify_name("localhost/app", &own), Gun("app"));
        assert_eq!(classify_name("LOCALHOST:5000/app", &own), Gun("app"));
        assert_eq!(classify_name("127.0.0.1:9/a/b", &own), Gun("a/b"));
        assert_eq!(classify_name("reg.example.com:5443/app", &own), Gun("app"));
        assert_eq!(classify_name("[::1]:5000/app", &own), Gun("app"));
        // Port-pinned entry: another port is another registry.
        assert_eq!(classify_name("reg.example.com/app", &own), ForeignHost);
        assert_eq!(classify_name("reg.example.com:1/app", &own), ForeignHost);
        assert_eq!(classify_name("docker.io/library/alpine", &own), ForeignHost);
        assert_eq!(classify_name("evil.localhost/app", &own), ForeignHost);
        assert_eq!(classify_name("[2001:db8::1]:5000/app", &own), ForeignHost);
        let v6 = ["2001:db8:0:0:0:0:0:1", "[fe80::1]:5000"];
        assert_eq!(classify_name("[2001:DB8:0:0:0:0:0:1]/app", &v6), Gun("app"));
        assert_eq!(classify_name("[fe80::1]:5000/app", &v6), Gun("app"));
        assert_eq!(classify_name("[fe80::1]:5001/app", &v6), ForeignHost);
        // Not a host at all: the registry namespace.
        assert_eq!(
            classify_name("localhostx/app", &own),
            Repository("localhostx/app")
        );
    }
}
