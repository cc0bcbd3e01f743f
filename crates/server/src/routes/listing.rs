//! Tag list, catalog and referrers.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_oci::{Digest, ErrorCode, media};
use berth_registry::page_size;
use berth_storage::Page;
use serde_json::{Value, json};

use super::{query_get, query_pairs, repo};
use crate::{ApiError, AppState};

/// `n` and `last` of a listing request.
fn paging(req: &Request) -> Result<(usize, Option<String>), ApiError> {
    let q = query_pairs(req);
    let n = match query_get(&q, "n") {
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::Unsupported,
                "n must be a non-negative integer",
            )
        })?),
        None => None,
    };
    Ok((
        page_size(n),
        query_get(&q, "last").filter(|l| !l.is_empty()),
    ))
}

fn json_page(body: Value, page: &Page, n: usize, base: &str) -> Response {
    json_page_after(body, page, n, base, page.items.last().map(String::as_str))
}

fn json_page_after(body: Value, page: &Page, n: usize, base: &str, last: Option<&str>) -> Response {
    let mut resp = axum::Json(body).into_response();
    if page.more
        && n > 0
        && let Some(last) = last
    {
        let link = format!("<{base}?n={n}&last={last}>; rel=\"next\"");
        resp.headers_mut().insert(
            header::LINK,
            link.parse().expect("names and tags are header-safe"),
        );
    }
    resp
}

pub(super) async fn tags(state: &AppState, name: &str, req: Request) -> Result<Response, ApiError> {
    let repo = repo(name)?;
    let (n, last) = paging(&req)?;
    let page = state.registry.list_tags(&repo, last.as_deref(), n).await?;
    let body = json!({"name": repo.as_str(), "tags": page.items});
    Ok(json_page(body, &page, n, &format!("/v2/{repo}/tags/list")))
}

pub(super) async fn catalog(state: &AppState, req: Request) -> Result<Response, ApiError> {
    let (n, last) = paging(&req)?;
    let mut page = state.registry.catalog(last.as_deref(), n).await?;
    // Paging continues after the last repository scanned, listed or not.
    let scanned_last = page.items.last().cloned();
    // Only repositories the caller may pull from are listed.
    if let Some(caller) = req.extensions().get::<berth_access::Caller>() {
        page.items.retain(|r| {
            caller.grants.allows(
                berth_auth::Action::Pull,
                berth_auth::Resource::Repository(r),
            )
        });
    }
    let body = json!({"repositories": page.items});
    Ok(json_page_after(
        body,
        &page,
        n,
        "/v2/_catalog",
        scanned_last.as_deref(),
    ))
}

pub(super) async fn referrers(
    state: &AppState,
    name: &str,
    digest: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let repo = repo(name)?;
    let digest: Digest = digest.parse()?;
    let filter = query_get(&query_pairs(&req), "artifactType");
    let list = state
        .registry
        .referrers(&repo, &digest, filter.as_deref())
        .await?;
    let manifests: Vec<Value> = list
        .into_iter()
        .map(|r| {
            let mut d = serde_json::Map::new();
            d.insert("mediaType".into(), Value::String(r.media_type));
            d.insert("digest".into(), Value::String(r.digest.to_string()));
            d.insert("size".into(), json!(r.size));
            if let Some(t) = r.artifact_type {
                d.insert("artifactType".into(), Value::String(t));
            }
            if let Some(a) = r.annotations {
                d.insert("annotations".into(), a);
            }
            Value::Object(d)
        })
        .collect();
    let body = json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests});
    let mut resp = (
        [(header::CONTENT_TYPE, media::OCI_INDEX)],
        serde_json::to_vec(&body).expect("json values serialise"),
    )
        .into_response();
    if filter.is_some() {
        resp.headers_mut().insert(
            "oci-filters-applied",
            "artifactType".parse().expect("static"),
        );
    }
    Ok(resp)
}
