//! What happened, who did it, and the JSON a receiver gets: docker distribution's notification
//! envelope (`{"events":[…]}`, one event per request) plus Berth's `trust` and `policy` members.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use serde::Serialize;

/// The media type of the request body, as docker distribution's notifications use.
pub const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// What a webhook can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Push,
    Delete,
    Trust,
    Policy,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Push, Action::Delete, Action::Trust, Action::Policy];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Trust => "trust",
            Action::Policy => "policy",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// What a delete removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// A tag (the manifest stays); its digest when known.
    Tag { tag: String, digest: Option<String> },
    /// A manifest and every tag on it.
    Manifest { digest: String },
    /// A blob's link in the repository.
    Blob { digest: String },
    /// A whole repository (manifests and tags; trust data stays).
    Repository,
}

/// One target (tag) a trust update touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustTarget {
    /// `added`, `changed` or `removed`.
    pub change: String,
    pub role: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
}

/// An event to notify webhooks of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A manifest PUT was accepted (by tag or by digest). One notification per tag (the
    /// reference's and any `?tag=`), or one without a tag for a push by digest.
    Push {
        repository: String,
        digest: String,
        media_type: String,
        size: u64,
        tags: Vec<String>,
    },
    Delete {
        repository: String,
        deleted: Deleted,
    },
    /// A trust update was accepted, or a repository's trust data was deleted (`deleted`).
    Trust {
        gun: String,
        repository: String,
        /// Roles whose new files were stored.
        roles: Vec<String>,
        targets: Vec<TrustTarget>,
        deleted: bool,
    },
    /// The server's policy refused a request.
    PolicyDenied {
        repository: String,
        /// The tag or digest asked for.
        reference: String,
        /// The digest concerned, when known.
        digest: Option<String>,
        /// The policy that refused (e.g. `signed-pulls-only`).
        policy: String,
        reason: String,
    },
}

impl Event {
    pub fn action(&self) -> Action {
        match self {
            Event::Push { .. } => Action::Push,
            Event::Delete { .. } => Action::Delete,
            Event::Trust { .. } => Action::Trust,
            Event::PolicyDenied { .. } => Action::Policy,
        }
    }

    pub fn repository(&self) -> &str {
        match self {
            Event::Push { repository, .. }
            | Event::Delete { repository, .. }
            | Event::Trust { repository, .. }
            | Event::PolicyDenied { repository, .. } => repository,
        }
    }
}

/// The request an event came from, as docker distribution reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestInfo {
    pub id: String,
    /// The client's address (`ip:port`).
    pub addr: String,
    /// The Host the client asked for.
    pub host: String,
    pub method: String,
    pub useragent: String,
}

/// Who caused an event, and through which request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventContext {
    /// The caller's identity name (empty: anonymous).
    pub actor: String,
    pub request: RequestInfo,
}

impl EventContext {
    /// From a request the authorization layer passed (it attached the caller).
    pub fn of<B>(req: &Request<B>) -> Self {
        let actor = req
            .extensions()
            .get::<berth_access::Caller>()
            .map(|c| c.name.clone())
            .unwrap_or_default();
        let text = |name: header::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let host = match text(header::HOST) {
            h if h.is_empty() => req
                .uri()
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            h => h,
        };
        EventContext {
            actor,
            request: RequestInfo {
                id: super::random_id(),
                addr: req
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.to_string())
                    .unwrap_or_default(),
                host,
                method: req.method().to_string(),
                useragent: text(header::USER_AGENT),
            },
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    events: [Notification<'a>; 1],
}

#[derive(Serialize)]
struct Notification<'a> {
    id: &'a str,
    timestamp: &'a str,
    action: &'static str,
    target: Target,
    request: &'a RequestInfo,
    actor: Actor<'a>,
    source: &'a Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    trust: Option<TrustPart<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<PolicyPart<'a>>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Target {
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
}

#[derive(Serialize)]
struct Actor<'a> {
    name: &'a str,
}

/// This server, as the `source` of its events.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// `host:port` of the server.
    pub addr: String,
    /// Random per process: tells a restarted (or another) node's events apart.
    #[serde(rename = "instanceID")]
    pub instance_id: String,
}

#[derive(Serialize)]
struct TrustPart<'a> {
    gun: &'a str,
    roles: &'a [String],
    targets: &'a [TrustTarget],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
}

#[derive(Serialize)]
struct PolicyPart<'a> {
    policy: &'a str,
    reason: &'a str,
    reference: &'a str,
}

/// One rendered notification: its id and the exact body sent (and signed).
pub(crate) struct Rendered {
    pub id: String,
    pub body: Vec<u8>,
}

/// The notifications an event makes (a push with several tags makes one per tag).
pub(crate) fn render(
    event: &Event,
    cx: &EventContext,
    source: &Source,
    scheme: &str,
    timestamp: &str,
) -> Vec<Rendered> {
    let url = |repo: &str, kind: &str, digest: &str| {
        (!cx.request.host.is_empty())
            .then(|| format!("{scheme}://{}/v2/{repo}/{kind}/{digest}", cx.request.host))
    };
    let mut targets: Vec<Target> = Vec::new();
    let mut trust = None;
    let mut policy = None;
    match event {
        Event::Push {
            repository,
            digest,
            media_type,
            size,
            tags,
        } => {
            let base = || Target {
                media_type: Some(media_type.clone()),
                digest: Some(digest.clone()),
                size: Some(*size),
                length: Some(*size),
                repository: repository.clone(),
                url: url(repository, "manifests", digest),
                tag: None,
            };
            if tags.is_empty() {
                targets.push(base());
            }
            for t in tags {
                targets.push(Target {
                    tag: Some(t.clone()),
                    ..base()
                });
            }
        }
        Event::Delete {
            repository,
            deleted,
        } => targets.push(match deleted {
            Deleted::Tag { tag, digest } => Target {
                digest: digest.clone(),
                repository: repository.clone(),
                tag: Some(tag.clone()),
                ..Target::default()
            },
            Deleted::Manifest { digest } => Target {
                digest: Some(digest.clone()),
                repository: repository.clone(),
                url: url(repository, "manifests", digest),
                ..Target::default()
            },
            Deleted::Blob { digest } => Target {
                media_type: Some("application/octet-stream".into()),
                digest: Some(digest.clone()),
                repository: repository.clone(),
                url: url(repository, "blobs", digest),
                ..Target::default()
            },
            Deleted::Repository => Target {
                repository: repository.clone(),
                ..Target::default()
            },
        }),
        Event::Trust {
            gun,
            repository,
            roles,
            targets: changed,
            deleted,
        } => {
            targets.push(Target {
                repository: repository.clone(),
                ..Target::default()
            });
            trust = Some(TrustPart {
                gun,
                roles,
                targets: changed,
                deleted: *deleted,
            });
        }
        Event::PolicyDenied {
            repository,
            reference,
            digest,
            policy: name,
            reason,
        } => {
            let is_digest = reference.contains(':');
            targets.push(Target {
                digest: digest
                    .clone()
                    .or_else(|| is_digest.then(|| reference.clone())),
                repository: repository.clone(),
                tag: (!is_digest).then(|| reference.clone()),
                ..Target::default()
            });
            policy = Some(PolicyPart {
                policy: name,
                reason,
                reference,
            });
        }
    }
    targets
        .into_iter()
        .map(|target| {
            let id = super::random_id();
            let n = Notification {
                id: &id,
                timestamp,
                action: event.action().as_str(),
                target,
                request: &cx.request,
                actor: Actor { name: &cx.actor },
                source,
                trust: trust.as_ref().map(|t| TrustPart {
                    gun: t.gun,
                    roles: t.roles,
                    targets: t.targets,
                    deleted: t.deleted,
                }),
                policy: policy.as_ref().map(|p| PolicyPart {
                    policy: p.policy,
                    reason: p.reason,
                    reference: p.reference,
                }),
            };
            let envelope = Envelope { events: [n] };
            // Serializing plain structs of strings and numbers cannot fail.
            let body = serde_json::to_vec(&envelope).unwrap_or_default();
            Rendered { id, body }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> EventContext {
        EventContext {
            actor: "alice".into(),
            request: RequestInfo {
                id: "r1".into(),
                addr: "127.0.0.1:4000".into(),
                host: "localhost:5000".into(),
                method: "PUT".into(),
                useragent: "skopeo".into(),
            },
        }
    }

    fn source() -> Source {
        Source {
            addr: "reg:5000".into(),
            instance_id: "i1".into(),
        }
    }

    #[test]
    fn a_push_with_two_tags_is_two_notifications_in_distributions_shape() {
        let e = Event::Push {
            repository: "team/app".into(),
            digest: "sha256:ab".into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 42,
            tags: vec!["v1".into(), "latest".into()],
        };
        let out = render(&e, &cx(), &source(), "https", "2026-12-01T10:00:00.000Z");
        assert_eq!(out.len(), 2);
        assert_ne!(out[0].id, out[1].id);
        let v: serde_json::Value = serde_json::from_slice(&out[1].body).unwrap();
        let ev = &v["events"][0];
        assert_eq!(ev["id"], out[1].id.as_str());
        assert_eq!(ev["action"], "push");
        assert_eq!(ev["timestamp"], "2026-12-01T10:00:00.000Z");
        assert_eq!(
            ev["target"],
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:ab", "size": 42, "length": 42, "repository": "team/app",
                "url": "https://localhost:5000/v2/team/app/manifests/sha256:ab", "tag": "latest"
            })
        );
        assert_eq!(ev["request"]["useragent"], "skopeo");
        assert_eq!(ev["request"]["addr"], "127.0.0.1:4000");
        assert_eq!(ev["actor"]["name"], "alice");
        assert_eq!(ev["source"]["instanceID"], "i1");
        assert!(ev.get("trust").is_none());
    }

    #[test]
    fn trust_and_policy_events_carry_their_members() {
        let e = Event::Trust {
            gun: "localhost:5000/team/app".into(),
            repository: "team/app".into(),
            roles: vec!["targets".into(), "snapshot".into(), "timestamp".into()],
            targets: vec![TrustTarget {
                change: "added".into(),
                role: "targets".into(),
                name: "v1".into(),
                digest: Some("sha256:cd".into()),
                size: Some(7),
            }],
            deleted: false,
        };
        let out = render(&e, &cx(), &source(), "https", "t");
        let v: serde_json::Value = serde_json::from_slice(&out[0].body).unwrap();
        let ev = &v["events"][0];
        assert_eq!(ev["action"], "trust");
        assert_eq!(ev["target"], serde_json::json!({"repository": "team/app"}));
        assert_eq!(ev["trust"]["gun"], "localhost:5000/team/app");
        assert_eq!(ev["trust"]["targets"][0]["digest"], "sha256:cd");
        assert!(ev["trust"].get("deleted").is_none());

        let p = Event::PolicyDenied {
            repository: "team/app".into(),
            reference: "v2".into(),
            digest: Some("sha256:ef".into()),
            policy: "signed-pulls-only".into(),
            reason: "no valid trust data for v2".into(),
        };
        let out = render(&p, &cx(), &source(), "https", "t");
        let v: serde_json::Value = serde_json::from_slice(&out[0].body).unwrap();
        let ev = &v["events"][0];
        assert_eq!(ev["action"], "policy");
        assert_eq!(ev["target"]["tag"], "v2");
        assert_eq!(ev["target"]["digest"], "sha256:ef");
        assert_eq!(ev["policy"]["policy"], "signed-pulls-only");
    }
}
