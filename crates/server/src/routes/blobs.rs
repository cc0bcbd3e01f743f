//! Blob GET/HEAD (with `Range`) and DELETE.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_oci::Digest;
use berth_registry::Error as RegError;

use super::{header_str, repo};
use crate::{ApiError, AppState};

/// A parsed single byte range, inclusive, clamped to the blob.
fn parse_range(v: &str, size: u64) -> Result<Option<(u64, u64)>, RegError> {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None); // Unknown unit: ignore, serve the whole blob (RFC 9110).
    };
    if spec.contains(',') {
        return Ok(None); // Multiple ranges: a full response is allowed.
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let unsatisfiable = RegError::RangeNotSatisfiable { size };
    let range = if a.is_empty() {
        // Suffix range: the last `b` bytes.
        let n: u64 = b.parse().map_err(|_| unsatisfiable)?;
        if n == 0 || size == 0 {
            return Err(RegError::RangeNotSatisfiable { size });
        }
        (size.saturating_sub(n), size.saturating_sub(1))
    } else {
        let start: u64 = a
            .parse()
            .map_err(|_| RegError::RangeNotSatisfiable { size })?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| RegError::RangeNotSatisfiable { size })?
                .min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Err(RegError::RangeNotSatisfiable { size });
        }
        (start, end)
    };
    Ok(Some(range))
}

pub(super) async fn get(
    state: &AppState,
    name: &str,
    digest: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let repo = repo(name)?;
    let digest: Digest = digest.parse()?;
    let reg = &state.registry;
    let size = reg.stat_blob(&repo, &digest).await?;
    // Authorized (by the layer) and present in this repository: the object store may serve it.
    if req.method() == Method::GET
        && let Some(url) = state.blob_redirect().and_then(|r| r.blob_url(&digest))
    {
        return Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, url)
            .header(header::CACHE_CONTROL, "no-store")
            .header("docker-content-digest", digest.to_string())
            .body(Body::empty())
            .map_err(|e| ApiError::internal("blob redirect", &e));
    }
    let range = match header_str(&req, header::RANGE) {
        Some(v) => parse_range(v, size)?,
        None => None,
    };
    // parse_range ensures start <= end < size, so the length neither wraps nor saturates.
    let (status, offset, len) = match range {
        Some((a, b)) => (
            StatusCode::PARTIAL_CONTENT,
            a,
            b.saturating_sub(a).saturating_add(1),
        ),
        None => (StatusCode::OK, 0, size),
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{digest}\""))
        .header("docker-content-digest", digest.to_string());
    if let Some((a, b)) = range {
        builder = builder.header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{size}"));
    }
    let body = if req.method() == Method::HEAD {
        Body::empty()
    } else {
        Body::from_stream(reg.read_blob(&repo, &digest, offset, len).await?)
    };
    Ok(builder.body(body).expect("static headers are valid"))
}

pub(super) async fn delete(
    state: &AppState,
    name: &str,
    digest: &str,
    event_cx: crate::webhooks::EventContext,
) -> Result<Response, ApiError> {
    let repo = repo(name)?;
    let digest: Digest = digest.parse()?;
    state.registry.delete_blob(&repo, &digest).await?;
    crate::webhooks::emit(
        state,
        crate::webhooks::Event::Delete {
            repository: repo.to_string(),
            deleted: crate::webhooks::Deleted::Blob {
                digest: digest.to_string(),
            },
        },
        &event_cx,
    )
    .await;
    Ok((
        StatusCode::ACCEPTED,
        [("docker-content-digest", digest.to_string())],
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap(), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range("bytes=-1000", 100).unwrap(), Some((0, 99)));
        assert_eq!(parse_range("bytes=50-1000", 100).unwrap(), Some((50, 99)));
        assert_eq!(parse_range("items=0-1", 100).unwrap(), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100).unwrap(), None);
        assert!(parse_range("bytes=100-", 100).is_err());
        assert!(parse_range("bytes=5-2", 100).is_err());
        assert!(parse_range("bytes=-0", 100).is_err());
    }
}
