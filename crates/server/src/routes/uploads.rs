//! Blob uploads: POST (session, monolithic, mount), PATCH, PUT, status GET, cancel DELETE.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_oci::{Algorithm, Digest, ErrorCode, RepoName};
use berth_registry::{CHUNK_MIN_LENGTH, ChunkRange, parse_content_range};

use super::{header_str, query_get, query_pairs, repo};
use crate::error::range_value;
use crate::limits::{Slot, body_stream};
use crate::{ApiError, AppState};

/// The caller's name (every request past the authorization layer carries one).
fn owner(req: &Request) -> String {
    req.extensions()
        .get::<berth_access::Caller>()
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

/// A slot for streaming one more body for the caller, and the body as a stream.
fn upload_body(
    state: &AppState,
    req: Request,
) -> Result<(Slot, berth_storage::ByteStream), ApiError> {
    let slot = state.uploads_in_flight().acquire(&owner(&req))?;
    Ok((
        slot,
        body_stream(req.into_body(), state.limits.body_timeout),
    ))
}

fn upload_location(repo: &RepoName, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

/// 202/204 answer describing a session's state.
fn session_response(status: StatusCode, repo: &RepoName, id: &str, len: u64) -> Response {
    (
        status,
        [
            (header::LOCATION, upload_location(repo, id)),
            (header::RANGE, range_value(len)),
            (
                header::HeaderName::from_static("docker-upload-uuid"),
                id.to_owned(),
            ),
            (header::CONTENT_LENGTH, "0".to_owned()),
        ],
    )
        .into_response()
}

/// 201 answer for a blob that is now in the repository.
fn created(repo: &RepoName, digest: &Digest) -> Response {
    (
        StatusCode::CREATED,
        [
            (header::LOCATION, format!("/v2/{repo}/blobs/{digest}")),
            (
                header::HeaderName::from_static("docker-content-digest"),
                digest.to_string(),
            ),
            (header::CONTENT_LENGTH, "0".to_owned()),
        ],
    )
        .into_response()
}

fn content_length(req: &Request) -> Result<Option<u64>, ApiError> {
    match header_str(req, header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::SizeInvalid,
                "malformed Content-Length",
            )
        }),
    }
}

/// Reads `Content-Range`/`Content-Length` of a chunk and checks they agree.
fn chunk_range(req: &Request) -> Result<ChunkRange, ApiError> {
    let length = content_length(req)?;
    match header_str(req, header::CONTENT_RANGE) {
        Some(v) => {
            let (a, len) = parse_content_range(v)?;
            if length.is_some_and(|l| l != len) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::SizeInvalid,
                    format!(
                        "Content-Range {v} announces {len} bytes but Content-Length is {}",
                        length.unwrap_or(0)
                    ),
                ));
            }
            Ok(ChunkRange {
                start: Some(a),
                len: Some(len),
            })
        }
        None => Ok(ChunkRange {
            start: None,
            len: length,
        }),
    }
}

pub(super) async fn start(
    state: &AppState,
    name: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let repo = repo(name)?;
    let q = query_pairs(&req);
    let reg = &state.registry;
    if let Some(mount) = query_get(&q, "mount") {
        let digest: Digest = mount.parse()?;
        // An unusable `from` is not an error: the spec's answer is a fresh upload session.
        // Mounting needs pull on the source; without it the spec's answer is the same fallback.
        let caller = req.extensions().get::<berth_access::Caller>();
        let from = query_get(&q, "from")
            .and_then(|f| f.parse::<RepoName>().ok())
            .filter(|f| {
                caller.is_none_or(|c| {
                    c.grants.allows(
                        berth_auth::Action::Pull,
                        berth_auth::Resource::Repository(f.as_str()),
                    )
                })
            });
        if reg
            .mount_blob(&repo, &digest, from.as_ref())
            .await?
            .is_some()
        {
            return Ok(created(&repo, &digest));
        }
    } else if let Some(d) = query_get(&q, "digest") {
        let digest: Digest = d.parse()?;
        let len = content_length(&req)?;
        let who = owner(&req);
        let (_slot, body) = upload_body(state, req)?;
        reg.upload_monolithic(&repo, &digest, len, body, &who)
            .await?;
        return Ok(created(&repo, &digest));
    }
    let algorithm = match query_get(&q, "digest-algorithm") {
        Some(a) => Algorithm::parse(&a)?,
        None => Algorithm::Sha256,
    };
    let max_open = u64::try_from(state.limits.sessions_per_identity).unwrap_or(u64::MAX);
    let id = reg
        .start_upload(&repo, algorithm, &owner(&req), Some(max_open))
        .await?;
    let mut resp = session_response(StatusCode::ACCEPTED, &repo, &id, 0);
    resp.headers_mut()
        .insert("oci-chunk-min-length", CHUNK_MIN_LENGTH.into());
    Ok(resp)
}

pub(super) async fn status(state: &AppState, name: &str, id: &str) -> Result<Response, ApiError> {
    let repo = repo(name)?;
    let len = state.registry.upload_status(&repo, id).await?;
    Ok(session_response(StatusCode::NO_CONTENT, &repo, id, len))
}

pub(super) async fn patch(
    state: &AppState,
    name: &str,
    id: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let repo = repo(name)?;
    let range = chunk_range(&req)?;
    let (_slot, body) = upload_body(state, req)?;
    let len = state
        .registry
        .upload_chunk(&repo, id, range, body)
        .await
        .map_err(|e| with_location(e.into(), &repo, id))?;
    Ok(session_response(StatusCode::ACCEPTED, &repo, id, len))
}

/// A 416 tells the client where to resume, so it carries the session URL too.
fn with_location(e: ApiError, repo: &RepoName, id: &str) -> ApiError {
    if e.status == StatusCode::RANGE_NOT_SATISFIABLE {
        e.with_header(header::LOCATION, upload_location(repo, id))
            .with_header(
                header::HeaderName::from_static("docker-upload-uuid"),
                id.to_owned(),
            )
    } else {
        e
    }
}

pub(super) async fn put(
    state: &AppState,
    name: &str,
    id: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let repo = repo(name)?;
    let q = query_pairs(&req);
    let Some(d) = query_get(&q, "digest") else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::DigestInvalid,
            "closing an upload requires ?digest=<algorithm>:<hex>",
        ));
    };
    let digest: Digest = d.parse()?;
    let range = chunk_range(&req)?;
    let (_slot, body) = upload_body(state, req)?;
    state
        .registry
        .finish_upload(&repo, id, &digest, Some((range, body)))
        .await
        .map_err(|e| with_location(e.into(), &repo, id))?;
    Ok(created(&repo, &digest))
}

pub(super) async fn cancel(state: &AppState, name: &str, id: &str) -> Result<Response, ApiError> {
    let repo = repo(name)?;
    state.registry.cancel_upload(&repo, id).await?;
    Ok((StatusCode::NO_CONTENT, [(header::CONTENT_LENGTH, "0")]).into_response())
}
