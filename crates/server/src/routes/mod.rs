//! Routing. The distribution API puts a multi-segment repository name in front of fixed suffixes
//! (`/v2/a/b/c/manifests/v1`), which a path-pattern router cannot express, so `/v2/` paths are
//! parsed here from the right and dispatched by hand.

pub mod access;
pub(crate) mod admin;
pub(crate) mod authz;
mod blobs;
mod import;
mod listing;
mod manifests;
mod token;
pub mod trust;
mod uploads;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_oci::{ErrorCode, RepoName};

use crate::{ApiError, AppState};

/// One endpoint of the distribution API, with its path parameters.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint<'a> {
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    /// Upload collection (`…/blobs/uploads/`) when the id is empty, else one session.
    Upload(&'a str, &'a str),
    Referrers(&'a str, &'a str),
}

/// Splits the part of the path after `/v2/` into an endpoint and the raw name.
fn parse(rest: &str) -> Option<Endpoint<'_>> {
    if rest == "_catalog" {
        return Some(Endpoint::Catalog);
    }
    let (head, last) = rest.rsplit_once('/')?;
    if last == "list"
        && let Some(name) = head.strip_suffix("/tags")
    {
        return Some(Endpoint::Tags(name));
    }
    if last == "uploads"
        && let Some(name) = head.strip_suffix("/blobs")
    {
        return Some(Endpoint::Upload(name, ""));
    }
    if let Some(name) = head.strip_suffix("/blobs/uploads") {
        return Some(Endpoint::Upload(name, last));
    }
    let (name, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Endpoint::Manifest(name, last)),
        "blobs" => Some(Endpoint::Blob(name, last)),
        "referrers" => Some(Endpoint::Referrers(name, last)),
        _ => None,
    }
}

pub(crate) fn repo(name: &str) -> Result<RepoName, ApiError> {
    Ok(name.parse::<RepoName>()?)
}

fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Unsupported,
        "method not allowed on this endpoint",
    )
}

async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix("/v2/") else {
        return not_found();
    };
    // Trust routes first: a GUN carries `host:port`, which the registry's name grammar refuses.
    if let Some(t) = trust::parse(req.method(), rest) {
        return trust::handle(&state, t, req).await;
    }
    let Some(endpoint) = parse(rest) else {
        return not_found();
    };
    let m = req.method().clone();
    let result = match endpoint {
        Endpoint::Catalog if m == Method::GET => listing::catalog(&state, req).await,
        Endpoint::Tags(name) if m == Method::GET => listing::tags(&state, name, req).await,
        Endpoint::Referrers(name, digest) if m == Method::GET => {
            listing::referrers(&state, name, digest, req).await
        }
        Endpoint::Manifest(name, reference) => match m {
            Method::GET | Method::HEAD => manifests::get(&state, name, reference, req).await,
            Method::PUT => manifests::put(&state, name, reference, req).await,
            Method::DELETE => {
                let cx = crate::webhooks::EventContext::of(&req);
                manifests::delete(&state, name, reference, cx).await
            }
            _ => Err(method_not_allowed()),
        },
        Endpoint::Blob(name, digest) => match m {
            Method::GET | Method::HEAD => blobs::get(&state, name, digest, req).await,
            Method::DELETE => {
                let cx = crate::webhooks::EventContext::of(&req);
                blobs::delete(&state, name, digest, cx).await
            }
            _ => Err(method_not_allowed()),
        },
        Endpoint::Upload(name, "") if m == Method::POST => uploads::start(&state, name, req).await,
        Endpoint::Upload(_, "") => Err(method_not_allowed()),
        Endpoint::Upload(name, id) => match m {
            Method::GET => uploads::status(&state, name, id).await,
            Method::PATCH => uploads::patch(&state, name, id, req).await,
            Method::PUT => uploads::put(&state, name, id, req).await,
            Method::DELETE => uploads::cancel(&state, name, id).await,
            _ => Err(method_not_allowed()),
        },
        _ => Err(method_not_allowed()),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn not_found() -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NameUnknown,
        "no such endpoint",
    )
    .into_response()
}

async fn version_check() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

/// How long each store check of `/readyz` may take before the node counts as not ready.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Ready when both stores answer: a metadata read that reaches the database (no cache in
/// between) and a one-entry listing of the blob store. 503 with the reason otherwise, so a load
/// balancer stops sending requests to a node that has lost its database or bucket.
async fn readyz(State(state): State<AppState>) -> Response {
    let Ok(probe) = "berth-readiness-probe".parse::<RepoName>() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let meta = tokio::time::timeout(READY_TIMEOUT, state.registry.metadata().repo_exists(&probe));
    let blobs = tokio::time::timeout(
        READY_TIMEOUT,
        state.registry.blob_store().list_blobs(None, 1),
    );
    let (meta, blobs) = tokio::join!(meta, blobs);
    let problem = |what: &str, r: Result<Result<(), String>, tokio::time::error::Elapsed>| match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{what}: {e}")),
        Err(_) => Some(format!(
            "{what}: no answer within {}s",
            READY_TIMEOUT.as_secs()
        )),
    };
    let problems: Vec<String> = [
        problem(
            "metadata store",
            meta.map(|r| r.map(|_| ()).map_err(|e| e.to_string())),
        ),
        problem(
            "blob store",
            blobs.map(|r| r.map(|_| ()).map_err(|e| e.to_string())),
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    if problems.is_empty() {
        return "ready".into_response();
    }
    tracing::warn!(?problems, "not ready");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "ready": false, "problems": problems }).to_string(),
    )
        .into_response()
}

async fn notary_health() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
}

async fn admin(State(state): State<AppState>, req: Request) -> Response {
    let path = req
        .uri()
        .path()
        .strip_prefix("/api/v1/")
        .unwrap_or("")
        .to_owned();
    if let Some(dest) = path.strip_prefix("import/") {
        if req.method() != Method::POST {
            return method_not_allowed().into_response();
        }
        return import::handle(&state, dest, req).await;
    }
    admin::handle(&state, &path, req).await
}

/// Every response says which API it speaks; some old clients check it on `/v2/`.
async fn api_version_header(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

/// The complete HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2/", get(version_check))
        .route("/v2", get(version_check))
        .route("/v2/{*rest}", axum::routing::any(dispatch))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::handler))
        .route("/_notary_server/health", get(notary_health))
        .route("/api/v1/{*rest}", axum::routing::any(admin))
        .route("/oauth2/token", get(token::token).post(token::token))
        .route("/oauth2/jwks", get(token::jwks))
        .merge(crate::ui::router())
        .layer(middleware::from_fn_with_state(state.clone(), authz::layer))
        .layer(middleware::from_fn(api_version_header))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            crate::error::panic_response,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        // Blob bodies are streamed and manifest bodies are capped in their handler; the
        // extractor-level default would wrongly cut off uploads.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// The first value of a header as text.
pub(crate) fn header_str(req: &Request, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Query parameters in order (repeated keys kept).
pub(crate) fn query_pairs(req: &Request) -> Vec<(String, String)> {
    query_pairs_str(req.uri().query().unwrap_or(""))
}

/// `application/x-www-form-urlencoded` pairs in order.
pub(crate) fn query_pairs_str(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub(crate) fn query_get(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn percent_decode(s: &str) -> String {
    let mut rest = s.as_bytes();
    let mut out = Vec::with_capacity(rest.len());
    while let Some((&c, tail)) = rest.split_first() {
        rest = tail;
        match c {
            // `%XY` with two hex digits is a byte; a `%` without them stays as it is.
            b'%' => match tail {
                [h, l, after @ ..] if let Some(v) = hex_byte(*h, *l) => {
                    out.push(v);
                    rest = after;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_byte(h: u8, l: u8) -> Option<u8> {
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    digit(h)?.checked_mul(16)?.checked_add(digit(l)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_from_the_right() {
        assert_eq!(parse("_catalog"), Some(Endpoint::Catalog));
        assert_eq!(parse("a/b/tags/list"), Some(Endpoint::Tags("a/b")));
        assert_eq!(parse("a/manifests/v1"), Some(Endpoint::Manifest("a", "v1")));
        assert_eq!(
            parse("x/blobs/y/blobs/sha256:1"),
            Some(Endpoint::Blob("x/blobs/y", "sha256:1"))
        );
        assert_eq!(
            parse("manifests/tags/manifests/t"),
            Some(Endpoint::Manifest("manifests/tags", "t"))
        );
        assert_eq!(parse("a/blobs/uploads/"), Some(Endpoint::Upload("a", "")));
        assert_eq!(parse("a/blobs/uploads"), Some(Endpoint::Upload("a", "")));
        assert_eq!(
            parse("a/b/blobs/uploads/123"),
            Some(Endpoint::Upload("a/b", "123"))
        );
        assert_eq!(
            parse("a/referrers/sha256:1"),
            Some(Endpoint::Referrers("a", "sha256:1"))
        );
        assert_eq!(parse("a"), None);
        assert_eq!(parse("a/nothing/x"), None);
    }

    #[test]
    fn decodes_query_values() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("sha256%3Aab"), "sha256:ab");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        // Only two hex digits make a byte (a sign is not a digit); cut-short escapes stay.
        assert_eq!(percent_decode("%+1x"), "% 1x");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%e2%82%AC+%41"), "\u{20ac} A");
    }
}
