//! Manifest GET/HEAD (content negotiation), PUT (size limit, tag params, subject), DELETE.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_oci::media::essence;
use berth_oci::{ErrorCode, RepoName, Tag, TagOrDigest};
use berth_registry::MAX_MANIFEST_BYTES;

use super::{header_str, query_pairs, repo};
use crate::{ApiError, AppState};

/// Media types listed in every `Accept` header of the request (parameters dropped).
fn accept_list(req: &Request) -> Vec<String> {
    req.headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| essence(t).to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether the caller's identity may push to `repo` (its live grants: a client asks for a
/// pull-scoped token to read, so the token's scope says nothing about who the caller is).
fn may_push(req: &Request, repo: &RepoName) -> bool {
    req.extensions()
        .get::<berth_access::Caller>()
        .is_some_and(|c| {
            c.grants.allows(
                berth_auth::Action::Push,
                berth_auth::Resource::Repository(repo.as_str()),
            )
        })
}

pub(super) async fn get(
    state: &AppState,
    name: &str,
    reference: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let repo = repo(name)?;
    // A reference that cannot be a tag names nothing stored: the spec (and its conformance
    // suite) answer a read with 404, while a PUT of such a tag stays 400 TAG_INVALID.
    let reference: TagOrDigest = reference.parse().map_err(|e: berth_oci::Error| {
        if e.code == ErrorCode::TagInvalid {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::ManifestUnknown,
                format!("manifest unknown: {}", e.message),
            )
        } else {
            ApiError::from(e)
        }
    })?;
    let m = state
        .registry
        .get_manifest(&repo, &reference, &accept_list(&req))
        .await?;
    let event_cx = crate::webhooks::EventContext::of(&req);
    let pusher = may_push(&req, &repo);
    crate::policy::check_pull(state, &repo, &reference, &m.digest, pusher, &event_cx).await?;
    let len = m.body.len();
    let body = if req.method() == Method::HEAD {
        Body::empty()
    } else {
        Body::from(m.body)
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, m.media_type)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ETAG, format!("\"{}\"", m.digest))
        .header("docker-content-digest", m.digest.to_string())
        .body(body)
        .expect("stored media types are valid header values"))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::SizeInvalid,
        format!("manifest exceeds the {MAX_MANIFEST_BYTES}-byte limit"),
    )
}

pub(super) async fn put(
    state: &AppState,
    name: &str,
    reference: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let repo = repo(name)?;
    let reference: TagOrDigest = reference.parse()?;
    let extra_tags = query_pairs(&req)
        .into_iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.parse::<Tag>())
        .collect::<Result<Vec<_>, _>>()?;
    let tag_params = !extra_tags.is_empty();
    if header_str(&req, header::CONTENT_LENGTH)
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| n > MAX_MANIFEST_BYTES)
    {
        return Err(too_large());
    }
    let content_type = header_str(&req, header::CONTENT_TYPE).map(str::to_owned);
    let event_cx = crate::webhooks::EventContext::of(&req);
    // Read at most one byte past the limit, so an oversized chunked body is cut off early.
    let body = axum::body::to_bytes(req.into_body(), MAX_MANIFEST_BYTES + 1)
        .await
        .map_err(|_| too_large())?;
    if body.len() > MAX_MANIFEST_BYTES {
        return Err(too_large());
    }
    // What a tag push would repoint, checked before anything is stored.
    let digest = match &reference {
        TagOrDigest::Digest(d) => d.clone(),
        TagOrDigest::Tag(_) => berth_oci::Digest::sha256_of(&body),
    };
    let tags: Vec<&str> = match &reference {
        TagOrDigest::Tag(t) => Some(t.as_str()),
        TagOrDigest::Digest(_) => None,
    }
    .into_iter()
    .chain(extra_tags.iter().map(Tag::as_str))
    .collect();
    crate::policy::check_push(state, &repo, &tags, &digest, &event_cx).await?;
    let size = u64::try_from(body.len()).unwrap_or(u64::MAX);
    let media_type = content_type
        .as_deref()
        .map(|t| essence(t).to_owned())
        .filter(|t| !t.is_empty())
        .or_else(|| body_media_type(&body))
        .unwrap_or_default();
    let out = state
        .registry
        .put_manifest(
            &repo,
            &reference,
            content_type.as_deref(),
            body.clone(),
            extra_tags,
        )
        .await?;
    crate::webhooks::emit(
        state,
        crate::webhooks::Event::Push {
            repository: repo.to_string(),
            digest: out.digest.to_string(),
            media_type,
            size,
            tags: out.tags.iter().map(|t| t.as_str().to_owned()).collect(),
        },
        &event_cx,
    )
    .await;
    let mut resp = (
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                format!("/v2/{repo}/manifests/{}", out.digest),
            ),
            (
                header::HeaderName::from_static("docker-content-digest"),
                out.digest.to_string(),
            ),
            (header::CONTENT_LENGTH, "0".to_owned()),
        ],
    )
        .into_response();
    let h = resp.headers_mut();
    if let Some(subject) = &out.subject {
        h.insert(
            "oci-subject",
            subject
                .to_string()
                .parse()
                .expect("digest is a valid header"),
        );
    }
    if tag_params {
        for t in &out.tags {
            h.append(
                "oci-tag",
                t.as_str().parse().expect("tag is a valid header"),
            );
        }
    }
    Ok(resp)
}

/// The `mediaType` member of a manifest body, for a PUT without a Content-Type.
fn body_media_type(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct M {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<M>(body).ok()?.media_type
}

pub(super) async fn delete(
    state: &AppState,
    name: &str,
    reference: &str,
    event_cx: crate::webhooks::EventContext,
) -> Result<Response, ApiError> {
    use crate::webhooks::{Action, Deleted, Event};
    let repo = repo(name)?;
    let reference: TagOrDigest = reference.parse()?;
    // A tag's digest is read before it goes, only when someone will be told.
    let tag_digest = match &reference {
        TagOrDigest::Tag(_)
            if crate::webhooks::wanted(state, Action::Delete, repo.as_str()).await =>
        {
            state
                .registry
                .metadata()
                .get_manifest(&repo, &reference)
                .await
                .ok()
                .flatten()
                .map(|m| m.digest.to_string())
        }
        _ => None,
    };
    state.registry.delete_manifest(&repo, &reference).await?;
    let deleted = match &reference {
        TagOrDigest::Tag(t) => Deleted::Tag {
            tag: t.as_str().to_owned(),
            digest: tag_digest,
        },
        TagOrDigest::Digest(d) => Deleted::Manifest {
            digest: d.to_string(),
        },
    };
    crate::webhooks::emit(
        state,
        Event::Delete {
            repository: repo.to_string(),
            deleted,
        },
        &event_cx,
    )
    .await;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}
