//! `POST /api/v1/import/<repo>`: copy an image from another registry into `<repo>` on the
//! server's side (`berth import`, as `az acr import`). Authorized as a push to `<repo>`.
//!
//! The source is read with berth-client (the outbound registry client: TLS against the system
//! roots plus an optional CA, Basic or the Docker token flow, plain HTTP only when asked).
//! Every manifest is read and checked first; blobs are then streamed into the store, checked
//! against their digest and size on the way (blobs the repository has are skipped); then the
//! manifests are stored by digest, children first, and the tags are set last, so a failed
//! import leaves no tag pointing anywhere new. Source credentials live for the request only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_client::{ClientOptions, Credentials, ImportLimits, Reference, Registry, SourceImage};
use berth_oci::{Descriptor, ErrorCode, RepoName, Tag, TagOrDigest};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::json;

use crate::{ApiError, AppState};

/// The longest an import may take, reading the source and storing included.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// A request body (JSON with at most a CA bundle) larger than this is refused.
const MAX_REQUEST: usize = 1 << 20;
/// Blobs copied at once.
const CONCURRENCY: usize = 3;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImportRequest {
    /// `host[:port]/repository[:tag|@digest]` on the other registry.
    source: String,
    /// The tag to set in the destination repository; default: the source's tag (none when the
    /// source is named by digest: the image is then stored untagged).
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    with_signatures: bool,
    #[serde(default)]
    source_username: Option<String>,
    #[serde(default)]
    source_password: Option<String>,
    /// PEM CA certificate(s) trusted for the source beside the system roots.
    #[serde(default)]
    source_ca: Option<String>,
    /// Allow `http://` to the source (nothing else is ever plain HTTP).
    #[serde(default)]
    source_insecure_http: bool,
}

fn bad(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// A source error in the OCI error format: what the other registry did, never our own status
/// codes' meaning (a 401 from the source is not the caller's missing login here).
fn source_error(e: berth_client::Error) -> ApiError {
    use berth_client::{Error as E, TlsFailure};
    // What the caller can do about it, in the CLI's words.
    let fix = match &e {
        E::Tls {
            kind: TlsFailure::NotTls,
            ..
        } => " (the source speaks plain HTTP: allow it with --source-insecure-http)",
        E::Tls { .. } => " (trust the source's CA with --source-ca FILE)",
        E::Unauthorized { .. } | E::Token { .. } => {
            " (give the source's credentials: --source-username and --source-password-stdin)"
        }
        _ => "",
    };
    let msg = format!("import source: {e}{fix}");
    match e {
        E::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::ManifestUnknown, msg),
        E::Unauthorized { .. } | E::Token { .. } | E::Denied { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Denied, msg)
        }
        E::DigestMismatch { .. } | E::SizeMismatch { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::DigestInvalid, msg)
        }
        E::InvalidReference { .. } => bad(ErrorCode::NameInvalid, msg),
        E::CaFile { .. } => bad(ErrorCode::Unsupported, msg),
        _ => ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::Unknown, msg),
    }
}

pub(crate) async fn handle(state: &AppState, dest: &str, req: Request) -> Response {
    run(state, dest, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn run(state: &AppState, dest: &str, req: Request) -> Result<Response, ApiError> {
    let repo: RepoName = dest.parse()?;
    let caller = req
        .extensions()
        .get::<berth_access::Caller>()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let event_cx = crate::webhooks::EventContext::of(&req);
    let body = axum::body::to_bytes(req.into_body(), MAX_REQUEST)
        .await
        .map_err(|_| bad(ErrorCode::SizeInvalid, "request body too large"))?;
    let r: ImportRequest = serde_json::from_slice(&body)
        .map_err(|e| bad(ErrorCode::Unsupported, format!("bad import request: {e}")))?;
    let source = Reference::parse_with_default(&r.source, None).map_err(source_error)?;
    let tag: Option<Tag> = match (&r.tag, &source.tag, &source.digest) {
        (Some(t), _, _) => Some(t.parse()?),
        (None, Some(t), None) => Some(t.clone()),
        _ => None,
    };
    let credentials = match (r.source_username, r.source_password) {
        (Some(username), Some(password)) => Some(Credentials { username, password }),
        (None, None) => None,
        _ => {
            return Err(bad(
                ErrorCode::Unsupported,
                "give both sourceUsername and sourcePassword, or neither",
            ));
        }
    };
    let scheme = if r.source_insecure_http {
        "http"
    } else {
        "https"
    };
    // Docker Hub's registry API is not on the host its references name.
    let host = match source.registry.as_str() {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        h => h,
    };
    let opts = ClientOptions {
        server: Some(format!("{scheme}://{host}")),
        credentials,
        extra_ca_pem: r.source_ca.map(String::into_bytes),
        require_https: !r.source_insecure_http,
        ..Default::default()
    };
    let src = Registry::new(&source.registry, &opts).map_err(source_error)?;
    // One streaming slot of the caller's for the whole import, as one upload.
    let _slot = state.uploads_in_flight().acquire(&caller)?;
    let work = import(
        state,
        &src,
        &source,
        &repo,
        tag.as_ref(),
        r.with_signatures,
        &event_cx,
    );
    let out = match tokio::time::timeout(IMPORT_TIMEOUT, work).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::Unknown,
                format!(
                    "import source: not done within {} minutes; no tag was set",
                    IMPORT_TIMEOUT.as_secs() / 60
                ),
            ));
        }
    };
    let digest = out.image.root.digest.to_string();
    let detail = format!(
        "from {} {digest}: {} manifests, {} signatures, {} blobs copied, {} present",
        r.source,
        out.image.manifests.len(),
        out.image.signatures.len(),
        out.copied,
        out.present
    );
    state
        .access
        .audit(&caller, "image.imported", repo.as_str(), ip, &detail)
        .await;
    crate::webhooks::emit(
        state,
        crate::webhooks::Event::Push {
            repository: repo.to_string(),
            digest: digest.clone(),
            media_type: out.image.root.media_type.clone(),
            size: out.image.root.bytes.len() as u64,
            tags: tag.iter().map(|t| t.as_str().to_owned()).collect(),
        },
        &event_cx,
    )
    .await;
    Ok(Json(json!({
        "repository": repo.as_str(),
        "tag": tag.as_ref().map(Tag::as_str),
        "digest": digest,
        "mediaType": out.image.root.media_type,
        "manifests": out.image.manifests.len(),
        "signatures": out.image.signatures.len(),
        "signatureTags": out.image.signature_tags.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        "blobsCopied": out.copied,
        "blobsPresent": out.present,
        "bytesCopied": out.bytes,
    }))
    .into_response())
}

struct Imported {
    image: SourceImage,
    copied: usize,
    present: usize,
    bytes: u64,
}

async fn import(
    state: &AppState,
    src: &Registry,
    source: &Reference,
    repo: &RepoName,
    tag: Option<&Tag>,
    with_signatures: bool,
    event_cx: &crate::webhooks::EventContext,
) -> Result<Imported, ApiError> {
    // The caller, as the request's authorization layer named it (the event context's actor).
    let caller = event_cx.actor.as_str();
    let image = src
        .read_source_image(
            &source.repo,
            &source.manifest_reference(),
            with_signatures,
            &ImportLimits::default(),
        )
        .await
        .map_err(source_error)?;
    if let Some(d) = &source.digest
        && d != &image.root.digest
    {
        return Err(source_error(berth_client::Error::DigestMismatch {
            what: format!("manifest {}", source.repo),
            expected: d.clone(),
            actual: image.root.digest.clone(),
        }));
    }
    // The signing policy sees every tag this import would set before anything is stored.
    let mut tags: Vec<(Tag, &berth_oci::Digest)> = image
        .signature_tags
        .iter()
        .map(|(t, d)| (t.clone(), d))
        .collect();
    if let Some(t) = tag {
        tags.push((t.clone(), &image.root.digest));
    }
    for (t, d) in &tags {
        let one = [t.as_str()];
        crate::policy::check_push(state, repo, &one, d, event_cx).await?;
    }
    // Owned futures, built before anything is awaited: a stream of futures borrowing locals
    // would make the handler's future Send only for some lifetimes, which axum refuses.
    let copies: Vec<_> = image
        .blobs
        .iter()
        .map(|d| {
            let (state, src, from, repo, d, caller) = (
                state.clone(),
                src.clone(),
                source.repo.clone(),
                repo.clone(),
                d.clone(),
                caller.to_owned(),
            );
            async move { copy_blob(&state, &src, &from, &repo, &d, &caller).await }
        })
        .collect();
    let outcomes: Vec<Option<u64>> = futures::stream::iter(copies)
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let copied = outcomes.iter().filter(|o| o.is_some()).count();
    let bytes = outcomes.iter().flatten().sum();
    // Children before what names them; signatures after their subjects.
    for m in image.manifests.iter().chain(image.signatures.iter()) {
        state
            .registry
            .put_manifest(
                repo,
                &TagOrDigest::Digest(m.digest.clone()),
                Some(&m.media_type),
                m.bytes.clone(),
                Vec::new(),
            )
            .await?;
    }
    // Tags last: the signature tags, then the imported tag.
    for (t, d) in &tags {
        let m = image
            .manifests
            .iter()
            .chain(image.signatures.iter())
            .find(|m| &&m.digest == d)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Unknown,
                    "a tagged manifest went missing",
                )
            })?;
        state
            .registry
            .put_manifest(
                repo,
                &TagOrDigest::Digest(m.digest.clone()),
                Some(&m.media_type),
                m.bytes.clone(),
                vec![t.clone()],
            )
            .await?;
    }
    Ok(Imported {
        copied,
        present: image.blobs.len().saturating_sub(copied),
        bytes,
        image,
    })
}

/// Streams one blob from the source into the repository (verified twice: by the client as it
/// passes, and by the registry before it keeps it). `None` when the repository has it already.
async fn copy_blob(
    state: &AppState,
    src: &Registry,
    from: &RepoName,
    repo: &RepoName,
    d: &Descriptor,
    caller: &str,
) -> Result<Option<u64>, ApiError> {
    if let Ok(size) = state.registry.stat_blob(repo, &d.digest).await
        && size == d.size
    {
        return Ok(None);
    }
    // A broken connection is worth two more tries (as `berth pull` does); bad content is not.
    let mut attempt = 0u32;
    loop {
        let failure = Arc::new(Mutex::new(None));
        let err = match src.blob_stream(from, d, failure.clone()).await {
            Ok(stream) => {
                let res = state
                    .registry
                    .upload_monolithic(repo, &d.digest, Some(d.size), Box::pin(stream), caller)
                    .await;
                // The source's failure explains a failed upload better than the store's view.
                match failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    Some(e) => e,
                    None => return res.map(|_| Some(d.size)).map_err(ApiError::from),
                }
            }
            Err(e) => e,
        };
        match err {
            berth_client::Error::Network { .. } if attempt < 2 => {
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(Duration::from_millis(300u64 << attempt)).await;
            }
            e => return Err(source_error(e)),
        }
    }
}
