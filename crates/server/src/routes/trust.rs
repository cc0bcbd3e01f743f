//! The Notary v1 trust API on the registry's host: `/v2/<gun>/_trust/tuf/…` and the changefeeds.
//!
//! A GUN is `<registry-host[:port]>/<repository>` as docker forms it. We map it to a repository of
//! this registry by stripping one of our own host names (see [`GunResolver`]); the GUN itself stays
//! the name inside the trust data.
//!
//! Each endpoint names the access it needs ([`TrustAccess`]), mirroring notary-server, so the
//! authorization layer can enforce it in one place.

use crate::AppState;
use crate::error::NotaryError;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_oci::RepoName;
use berth_storage::TufFile;
use bytes::Bytes;

/// Largest multipart upload accepted for one publish (all roles together). Publishes are held
/// in memory while they are validated, so this and [`MAX_TRUST_FILE`] bound what one costs.
pub const MAX_TRUST_UPLOAD: u64 = 16 * 1024 * 1024;
/// Largest single TUF file in a publish. Real ones are kilobytes; a targets file with tens of
/// thousands of tags fits.
pub const MAX_TRUST_FILE: u64 = 8 * 1024 * 1024;
/// Publishes whose bodies are read and validated at once; later ones wait their turn before
/// their body is read, so memory stays within this many times [`MAX_TRUST_UPLOAD`].
pub(crate) const TRUST_PUBLISHES_AT_ONCE: usize = 4;
/// Most parts (roles) in one publish; real publishes carry a handful.
const MAX_PARTS: usize = 1024;

/// Access a trust endpoint needs on the repository, as notary-server's route table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustAccess {
    /// `pull`: reading metadata and the per-GUN changefeed.
    Pull,
    /// `push` + `pull` + the signer right: publishing, fetching server keys.
    Push,
    /// `*`: deleting trust data, rotating server keys.
    All,
    /// `registry:catalog:*`: the global changefeed.
    Catalog,
}

/// A trust request after path parsing.
#[derive(Debug, PartialEq, Eq)]
pub enum TrustEndpoint<'a> {
    Update(&'a str),
    Delete(&'a str),
    Current(&'a str, &'a str),
    ByChecksum(&'a str, &'a str, &'a str),
    ByVersion(&'a str, &'a str, i64),
    GetKey(&'a str, &'a str),
    RotateKey(&'a str, &'a str),
    Changefeed(Option<&'a str>),
    NotFound,
}

impl<'a> TrustEndpoint<'a> {
    /// The GUN the request is about (`None` for the global changefeed and unknown paths).
    pub fn gun(&self) -> Option<&'a str> {
        match self {
            TrustEndpoint::Update(g)
            | TrustEndpoint::Delete(g)
            | TrustEndpoint::Current(g, _)
            | TrustEndpoint::ByChecksum(g, ..)
            | TrustEndpoint::ByVersion(g, ..)
            | TrustEndpoint::GetKey(g, _)
            | TrustEndpoint::RotateKey(g, _)
            | TrustEndpoint::Changefeed(Some(g)) => Some(*g),
            TrustEndpoint::Changefeed(None) | TrustEndpoint::NotFound => None,
        }
    }

    pub fn access(&self) -> TrustAccess {
        match self {
            TrustEndpoint::Current(..)
            | TrustEndpoint::ByChecksum(..)
            | TrustEndpoint::ByVersion(..)
            | TrustEndpoint::Changefeed(Some(_)) => TrustAccess::Pull,
            TrustEndpoint::Update(_) | TrustEndpoint::GetKey(..) => TrustAccess::Push,
            TrustEndpoint::Delete(_) | TrustEndpoint::RotateKey(..) => TrustAccess::All,
            TrustEndpoint::Changefeed(None) | TrustEndpoint::NotFound => TrustAccess::Catalog,
        }
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses the path after `/v2/` when it contains `_trust/`.
pub fn parse<'a>(method: &Method, rest: &'a str) -> Option<TrustEndpoint<'a>> {
    if rest == "_trust/changefeed" {
        return Some(if method == Method::GET {
            TrustEndpoint::Changefeed(None)
        } else {
            TrustEndpoint::NotFound
        });
    }
    let (gun, tail) = rest.split_once("/_trust/")?;
    if gun.is_empty() || gun.contains('*') {
        return Some(TrustEndpoint::NotFound);
    }
    if tail == "changefeed" {
        return Some(if method == Method::GET {
            TrustEndpoint::Changefeed(Some(gun))
        } else {
            TrustEndpoint::NotFound
        });
    }
    let Some(file) = tail.strip_prefix("tuf/") else {
        return Some(TrustEndpoint::NotFound);
    };
    if file.is_empty() {
        return Some(match *method {
            Method::POST => TrustEndpoint::Update(gun),
            Method::DELETE => TrustEndpoint::Delete(gun),
            _ => TrustEndpoint::NotFound,
        });
    }
    if let Some(role) = file.strip_suffix(".key") {
        if role != "timestamp" && role != "snapshot" {
            return Some(TrustEndpoint::NotFound);
        }
        return Some(match *method {
            Method::GET => TrustEndpoint::GetKey(gun, role),
            Method::POST => TrustEndpoint::RotateKey(gun, role),
            _ => TrustEndpoint::NotFound,
        });
    }
    if *method != Method::GET && *method != Method::HEAD {
        return Some(TrustEndpoint::NotFound);
    }
    let Some(name) = file.strip_suffix(".json") else {
        return Some(TrustEndpoint::NotFound);
    };
    // Role names never contain '.', so dots separate version / checksum parts.
    if let Some((first, role)) = name.split_once('.')
        && !first.is_empty()
        && first.bytes().all(|b| b.is_ascii_digit())
    {
        return Some(match first.parse::<i64>() {
            Ok(v) if v >= 1 && !role.contains('.') => TrustEndpoint::ByVersion(gun, role, v),
            _ => TrustEndpoint::NotFound,
        });
    }
    if let Some((role, sum)) = name.rsplit_once('.') {
        if matches!(sum.len(), 64 | 96 | 128) && is_hex(sum) && !role.contains('.') {
            return Some(TrustEndpoint::ByChecksum(gun, role, sum));
        }
        return Some(TrustEndpoint::NotFound);
    }
    Some(TrustEndpoint::Current(gun, name))
}

/// Maps GUNs to repositories of this registry.
#[derive(Debug, Clone, Default)]
pub struct GunResolver {
    /// Our own host names, lowercase, without ports (`localhost`, `127.0.0.1`, `--hostname`s).
    pub hosts: Vec<String>,
}

impl GunResolver {
    /// The repository a GUN names: `host[:port]/repo` with one of our hosts (any port), or a bare
    /// `repo` (notary CLI users may choose such GUNs). `None` for another registry's GUN or an
    /// invalid repository name.
    pub fn repository(&self, gun: &str) -> Option<RepoName> {
        let (first, rest) = gun.split_once('/').unwrap_or((gun, ""));
        let looks_like_host = first.contains('.') || first.contains(':') || first == "localhost";
        if !looks_like_host {
            return gun.parse().ok();
        }
        let host = match first.strip_prefix('[') {
            // [::1]:port
            Some(v6) => v6.split_once(']').map(|(h, _)| h).unwrap_or(v6),
            None => first.rsplit_once(':').map(|(h, _)| h).unwrap_or(first),
        };
        let host = host.to_ascii_lowercase();
        if !self.hosts.contains(&host) {
            return None;
        }
        rest.parse().ok()
    }
}

fn trust_error(e: berth_trust::Error) -> Response {
    NotaryError::from(e).into_response()
}

fn not_found() -> Response {
    NotaryError::not_found().into_response()
}

/// RFC 1123 date for `Last-Modified`.
fn http_date(unix_secs: i64) -> String {
    let secs = std::time::Duration::from_secs(u64::try_from(unix_secs).unwrap_or(0));
    // Stored times are ours; one beyond SystemTime's range shows as the epoch, not a panic.
    let t = std::time::UNIX_EPOCH
        .checked_add(secs)
        .unwrap_or(std::time::UNIX_EPOCH);
    httpdate::fmt_http_date(t)
}

fn metadata_response(file: TufFile, consistent: bool, head: bool) -> Response {
    let cache = if consistent {
        "public, max-age=2592000, s-maxage=2592000"
    } else {
        "public, max-age=300, s-maxage=300, must-revalidate"
    };
    let len = file.data.len();
    let mut resp = Response::new(if head {
        Body::empty()
    } else {
        Body::from(file.data)
    });
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, len.into());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = http_date(file.created).parse() {
        h.insert(header::LAST_MODIFIED, v);
    }
    resp
}

fn empty_ok() -> Response {
    (StatusCode::OK, [(header::CONTENT_LENGTH, "0")]).into_response()
}

/// Reads the multipart body of a publish: (part filename, bytes) in order, within limits.
async fn read_parts(req: Request) -> Result<Vec<(String, Bytes)>, Response> {
    let malformed = |detail: String| {
        NotaryError::malformed_upload(StatusCode::BAD_REQUEST, detail).into_response()
    };
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(ct)
        .map_err(|e| malformed(format!("expected multipart/form-data: {e}")))?;
    if req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_TRUST_UPLOAD)
    {
        return Err(too_large());
    }
    let limits = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(MAX_TRUST_UPLOAD)
            .per_field(MAX_TRUST_FILE),
    );
    let mut mp =
        multer::Multipart::with_constraints(req.into_body().into_data_stream(), boundary, limits);
    let mut parts = Vec::new();
    loop {
        match mp.next_field().await {
            Ok(Some(field)) => {
                let name = field.file_name().unwrap_or("").to_owned();
                let data = field.bytes().await.map_err(|e| part_error(e, &malformed))?;
                parts.push((name, data));
                if parts.len() > MAX_PARTS {
                    return Err(malformed(format!("more than {MAX_PARTS} parts")));
                }
            }
            Ok(None) => break,
            Err(e) => return Err(part_error(e, &malformed)),
        }
    }
    Ok(parts)
}

fn too_large() -> Response {
    NotaryError::malformed_upload(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "a publish may carry at most {MAX_TRUST_UPLOAD} bytes, and each TUF file at most {MAX_TRUST_FILE}"
        ),
    )
    .into_response()
}

fn part_error(e: multer::Error, malformed: &dyn Fn(String) -> Response) -> Response {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            too_large()
        }
        other => malformed(other.to_string()),
    }
}

/// Handles one trust request (already parsed).
pub(crate) async fn handle(
    state: &AppState,
    endpoint: TrustEndpoint<'_>,
    req: Request,
) -> Response {
    let trust = &state.trust;
    let gun = endpoint.gun();
    if let Some(g) = gun
        && state.guns.repository(g).is_none()
    {
        // notary-server answers a refused GUN with 400 on publish and 404 elsewhere.
        return match endpoint {
            TrustEndpoint::Update(_) => NotaryError::invalid_gun(g).into_response(),
            _ => not_found(),
        };
    }
    let head = req.method() == Method::HEAD;
    let result = match endpoint {
        TrustEndpoint::NotFound => return not_found(),
        TrustEndpoint::Update(gun) => {
            // The semaphore is never closed, so acquiring only waits.
            let Ok(_turn) = state.trust_publishes().acquire().await else {
                return not_found();
            };
            // Audited with the update, in its transaction (the authorization layer attached
            // the caller); the detail is filled in by the trust service.
            let audit = req.extensions().get::<berth_access::Caller>().map(|c| {
                let ip = super::authz::client_ip(&req);
                state
                    .access
                    .audit_record(&c.name, "trust.updated", gun, ip, "")
            });
            let event_cx = crate::webhooks::EventContext::of(&req);
            let metrics = crate::metrics::global();
            let parts = match read_parts(req).await {
                Ok(p) => p,
                Err(resp) => {
                    metrics.trust_rejected("MALFORMED_UPLOAD");
                    return resp;
                }
            };
            match trust.update_with_changes(gun, parts, audit).await {
                Ok(changes) => {
                    metrics.trust_updated();
                    // After the update is stored; never changes its answer.
                    crate::attest::after_update(state, gun, &changes.targets, &event_cx).await;
                    trust_event(state, gun, changes, &event_cx).await;
                    let mut resp = empty_ok();
                    resp.extensions_mut().insert(TrustAudited);
                    Ok(resp)
                }
                Err(e) => {
                    metrics.trust_rejected(e.code());
                    Err(e)
                }
            }
        }
        TrustEndpoint::Delete(gun) => {
            let event_cx = crate::webhooks::EventContext::of(&req);
            match trust.delete(gun).await {
                Ok(wiped) => {
                    if wiped && let Some(repo) = state.guns.repository(gun) {
                        let event = crate::webhooks::Event::Trust {
                            gun: gun.to_owned(),
                            repository: repo.to_string(),
                            roles: Vec::new(),
                            targets: Vec::new(),
                            deleted: true,
                        };
                        crate::webhooks::emit(state, event, &event_cx).await;
                    }
                    Ok(empty_ok())
                }
                Err(e) => Err(e),
            }
        }
        TrustEndpoint::Current(gun, role) => trust
            .get_current(gun, role)
            .await
            .map(|f| metadata_response(f, false, head)),
        TrustEndpoint::ByChecksum(gun, role, sum) => trust
            .get_by_checksum(gun, role, sum)
            .await
            .map(|f| metadata_response(f, true, head)),
        TrustEndpoint::ByVersion(gun, role, v) => trust
            .get_by_version(gun, role, v)
            .await
            .map(|f| metadata_response(f, true, head)),
        TrustEndpoint::GetKey(gun, role) => trust.get_key(gun, role).await.map(json_bytes),
        TrustEndpoint::RotateKey(gun, role) => trust.rotate_key(gun, role).await.map(json_bytes),
        TrustEndpoint::Changefeed(gun) => {
            let q = super::query_pairs(&req);
            let change_id = super::query_get(&q, "change_id");
            let records = super::query_get(&q, "records");
            trust
                .changefeed(gun, change_id.as_deref(), records.as_deref())
                .await
                .map(json_bytes)
        }
    };
    result.unwrap_or_else(trust_error)
}

/// Tells the webhooks what an accepted update changed.
async fn trust_event(
    state: &AppState,
    gun: &str,
    changes: berth_trust::UpdateChanges,
    cx: &crate::webhooks::EventContext,
) {
    let Some(repo) = state.guns.repository(gun) else {
        return;
    };
    let targets = changes
        .targets
        .into_iter()
        .map(|t| crate::webhooks::TrustTarget {
            change: t.kind.as_str().to_owned(),
            role: t.role,
            name: t.name,
            digest: t.sha256.map(|h| format!("sha256:{h}")),
            size: t.length,
        })
        .collect();
    let event = crate::webhooks::Event::Trust {
        gun: gun.to_owned(),
        repository: repo.to_string(),
        roles: changes.roles,
        targets,
        deleted: false,
    };
    crate::webhooks::emit(state, event, cx).await;
}

fn json_bytes(b: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], b).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUM: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_trust_paths() {
        let g = Method::GET;
        let gun = "localhost:5000/team/app";
        let p = |m: &Method, s: String| parse(m, Box::leak(s.into_boxed_str()));
        assert_eq!(
            p(&Method::POST, format!("{gun}/_trust/tuf/")),
            Some(TrustEndpoint::Update(gun))
        );
        assert_eq!(
            p(&Method::DELETE, format!("{gun}/_trust/tuf/")),
            Some(TrustEndpoint::Delete(gun))
        );
        assert_eq!(
            p(&g, format!("{gun}/_trust/tuf/root.json")),
            Some(TrustEndpoint::Current(gun, "root"))
        );
        assert_eq!(
            p(&g, format!("{gun}/_trust/tuf/targets/releases.json")),
            Some(TrustEndpoint::Current(gun, "targets/releases"))
        );
        assert_eq!(
            p(&g, format!("{gun}/_trust/tuf/targets/releases.{SUM}.json")),
            Some(TrustEndpoint::ByChecksum(gun, "targets/releases", SUM))
        );
        assert_eq!(
            p(&g, format!("{gun}/_trust/tuf/2.root.json")),
            Some(TrustEndpoint::ByVersion(gun, "root", 2))
        );
        assert_eq!(
            p(&g, format!("{gun}/_trust/tuf/0.root.json")),
            Some(TrustEndpoint::NotFound)
        );
        assert_eq!(
            p(&g, format!("{gun}/_trust/tuf/timestamp.key")),
            Some(TrustEndpoint::GetKey(gun, "timestamp"))
        );
        assert_eq!(
            p(&Method::POST, format!("{gun}/_trust/tuf/snapshot.key")),
            Some(TrustEndpoint::RotateKey(gun, "snapshot"))
        );
        assert_eq!(
            p(&g, format!("{gun}/_trust/tuf/targets.key")),
            Some(TrustEndpoint::NotFound)
        );
        assert_eq!(
            p(&g, format!("{gun}/_trust/changefeed")),
            Some(TrustEndpoint::Changefeed(Some(gun)))
        );
        assert_eq!(
            p(&g, "_trust/changefeed".into()),
            Some(TrustEndpoint::Changefeed(None))
        );
        assert_eq!(p(&g, "team/app/manifests/v1".into()), None);
        assert_eq!(TrustEndpoint::Delete(gun).access(), TrustAccess::All);
        assert_eq!(
            TrustEndpoint::GetKey(gun, "timestamp").access(),
            TrustAccess::Push
        );
    }

    #[test]
    fn resolves_guns_to_repositories() {
        let r = GunResolver {
            hosts: vec![
                "localhost".into(),
                "127.0.0.1".into(),
                "::1".into(),
                "reg.example".into(),
            ],
        };
        let repo = |s: &str| r.repository(s).map(|n| n.to_string());
        assert_eq!(repo("localhost:5000/team/app").as_deref(), Some("team/app"));
        assert_eq!(repo("127.0.0.1:41000/a").as_deref(), Some("a"));
        assert_eq!(repo("REG.example/a/b").as_deref(), Some("a/b"));
        assert_eq!(repo("[::1]:5000/a").as_deref(), Some("a"));
        assert_eq!(repo("team/app").as_deref(), Some("team/app"));
        assert_eq!(repo("docker.io/library/alpine"), None);
        assert_eq!(repo("localhost:5000/Bad"), None);
        assert_eq!(repo("localhost:5000"), None);
    }
}

/// Set on a publish's response when its audit record was written with the update, so the
/// authorization layer does not write another.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TrustAudited;
