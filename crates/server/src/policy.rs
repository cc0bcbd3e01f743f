//! Server-enforced signing policy (`signed-pulls-only`, `immutable-signed-tags`): gathers a
//! repository's trust views and asks [`berth_trust::policy`] for the decision. Every refusal
//! goes through [`denied`].
//!
//! Cost: a repository with no rule on pays two in-memory settings reads per manifest request.
//! One with a rule on also pays one indexed changefeed read (is the GUN list unchanged?) and,
//! per GUN of the repository, one (cached) timestamp read; the views themselves are kept by
//! the trust service until the timestamp changes. A read by digest that no signed tag names
//! reads each signed index of the repository once per process (children are kept by digest).
//!
//! Other formats (`accept` notation, cosign) are looked at only when DCT is not accepted or
//! refuses: one referrers read and one `.sig` tag read per digest checked, the verdicts kept by
//! content ([`crate::policy_formats`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::StatusCode;
use berth_oci::{Algorithm, Digest, ErrorCode, ManifestView, RepoName, TagOrDigest};
use berth_trust::TrustView;
use berth_trust::policy::{self, Denial};

use crate::{ApiError, AppState};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn sha256(d: &Digest) -> Option<[u8; 32]> {
    if d.algorithm() != Algorithm::Sha256 {
        return None;
    }
    hex::decode(d.hex()).ok()?.try_into().ok()
}

fn internal(e: berth_trust::Error) -> ApiError {
    // Fail closed: when the policy cannot be checked nothing is served (500, logged).
    ApiError::internal("signing policy check", &e)
}

fn stored(e: berth_storage::Error) -> ApiError {
    ApiError::from(berth_registry::Error::Storage(e))
}

/// The refusal of a request by the policy: logged, and the one place where metrics and
/// webhooks learn about it.
pub(crate) fn denied(
    state: &AppState,
    repo: &RepoName,
    reference: &str,
    why: &Denial,
    cx: &crate::webhooks::EventContext,
) -> ApiError {
    crate::metrics::global().policy_denied(why.policy(), why.reason());
    // Told to webhooks off the request's path: a denial must not wait on the event queue.
    let event = crate::webhooks::Event::PolicyDenied {
        repository: repo.to_string(),
        reference: reference.to_owned(),
        digest: reference.contains(':').then(|| reference.to_owned()),
        policy: why.policy().to_owned(),
        reason: why.reason().to_owned(),
    };
    crate::webhooks::emit_detached(state, event, cx.clone());
    let message = why.message(repo.as_str(), reference);
    tracing::info!(
        repository = %repo,
        reference,
        policy = why.policy(),
        reason = why.reason(),
        "request denied by signing policy"
    );
    ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Denied, message)
}

/// The trust views of every GUN naming `repo`.
async fn views(state: &AppState, repo: &RepoName) -> Result<Vec<Arc<TrustView>>, ApiError> {
    let guns = state
        .trust
        .guns_matching(Some(repo.as_str()), |g| {
            state.guns.repository(g).as_ref() == Some(repo)
        })
        .await
        .map_err(internal)?;
    let mut out = Vec::with_capacity(guns.len());
    for g in guns.iter() {
        if let Some(v) = state.trust.view_shared(g).await.map_err(internal)? {
            out.push(v);
        }
    }
    Ok(out)
}

type Children = HashMap<[u8; 32], Arc<HashSet<Digest>>>;

/// Child manifests of an index, by the index's digest: content-addressed, so true for ever and
/// in every repository (an empty set: not an index).
fn children_memo() -> &'static Mutex<Children> {
    static MEMO: OnceLock<Mutex<Children>> = OnceLock::new();
    MEMO.get_or_init(Default::default)
}

/// Bound on [`children_memo`]; past it the map starts over.
const CHILDREN_ENTRIES: usize = 4096;

/// Whether `digest` is a child of one of `signed` (index digests, read from `repo`).
async fn in_signed_index(
    state: &AppState,
    repo: &RepoName,
    signed: impl Iterator<Item = [u8; 32]>,
    digest: &Digest,
) -> Result<bool, ApiError> {
    for parent in signed {
        let hit = children_memo()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&parent)
            .cloned();
        let children = match hit {
            Some(c) => c,
            None => {
                let Ok(d) = format!("sha256:{}", hex::encode(parent)).parse::<Digest>() else {
                    continue;
                };
                let Some(m) = state
                    .registry
                    .metadata()
                    .get_manifest(repo, &TagOrDigest::Digest(d))
                    .await
                    .map_err(stored)?
                else {
                    // Not in this repository (yet): nothing known, nothing kept.
                    continue;
                };
                let c: HashSet<Digest> = ManifestView::parse(&m.body, Some(&m.media_type))
                    .map(|v| v.manifests.into_iter().map(|d| d.digest).collect())
                    .unwrap_or_default();
                let c = Arc::new(c);
                let mut memo = children_memo().lock().unwrap_or_else(|p| p.into_inner());
                if memo.len() >= CHILDREN_ENTRIES {
                    memo.clear();
                }
                memo.insert(parent, c.clone());
                c
            }
        };
        if children.contains(digest) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `signed-pulls-only` for a manifest GET/HEAD of `repo` by `reference` that found `served`
/// (for a tag, possibly the child the registry picked from the tagged index). `cx`: the
/// caller, for the denial's webhook event. `pusher`: the caller may push to `repo`.
pub(crate) async fn check_pull(
    state: &AppState,
    repo: &RepoName,
    reference: &TagOrDigest,
    served: &Digest,
    pusher: bool,
    cx: &crate::webhooks::EventContext,
) -> Result<(), ApiError> {
    let p = state.trust.policy(repo.as_str()).await.map_err(internal)?;
    if !p.signed_pulls_only {
        return Ok(());
    }
    // Notary Project and cosign signers read the manifest they sign (its descriptor) from
    // the registry, unlike DCT signers whose engine knows it: a caller who may push here
    // (and so could put any content here anyway) is let through where those formats count.
    // DCT-only repositories refuse everyone, as before.
    if pusher && !p.accept.dct_only() {
        return Ok(());
    }
    let dct = if p.accept.dct {
        Some(check_pull_dct(state, repo, reference, served).await?)
    } else {
        None
    };
    let decision = match dct {
        Some(d) if p.accept.dct_only() => d,
        Some(Ok(())) => Ok(()),
        dct => {
            let material = state
                .trust
                .policy_material(repo.as_str())
                .await
                .map_err(internal)?;
            let v = crate::policy_formats::verifier(&material);
            let t = now();
            // By tag: exactly the digest the tag points to (the index, when the registry
            // served a child of it).
            let subject = match reference {
                TagOrDigest::Tag(_) => state
                    .registry
                    .metadata()
                    .get_manifest(repo, reference)
                    .await
                    .map_err(stored)?
                    .map_or_else(|| served.clone(), |m| m.digest),
                TagOrDigest::Digest(d) => d.clone(),
            };
            let mut found = crate::policy_formats::findings(state, repo, p.accept, &subject, &v, t)
                .await
                .map_err(stored)?;
            if !found.notation
                && !found.cosign
                && let TagOrDigest::Digest(d) = reference
            {
                // A child of a signed index counts, as for DCT: the tagged indexes holding it.
                for parent in tagged_parents(state, repo, d).await? {
                    let f = crate::policy_formats::findings(state, repo, p.accept, &parent, &v, t)
                        .await
                        .map_err(stored)?;
                    if f.notation || f.cosign {
                        found = f;
                        break;
                    }
                }
            }
            policy::decide(p.accept, dct, &found)
        }
    };
    decision.map_err(|why| denied(state, repo, &reference.to_string(), &why, cx))
}

/// Bound on the tags looked at for the indexes holding a digest.
const PARENT_SCAN_TAGS: usize = 1000;

/// The digests of tagged indexes of `repo` listing `child` (the first [`PARENT_SCAN_TAGS`]
/// tags).
async fn tagged_parents(
    state: &AppState,
    repo: &RepoName,
    child: &Digest,
) -> Result<Vec<Digest>, ApiError> {
    let details = state
        .registry
        .metadata()
        .tag_details(repo, None, PARENT_SCAN_TAGS)
        .await
        .map_err(stored)?
        .unwrap_or_default();
    let mut out: Vec<Digest> = Vec::new();
    for t in details {
        if out.contains(&t.digest) {
            continue;
        }
        let Ok(v) = ManifestView::parse(&t.body, Some(&t.media_type)) else {
            continue;
        };
        if v.manifests.iter().any(|m| m.digest == *child) {
            out.push(t.digest);
        }
    }
    Ok(out)
}

/// The DCT decision for a pull, as before other formats existed.
async fn check_pull_dct(
    state: &AppState,
    repo: &RepoName,
    reference: &TagOrDigest,
    served: &Digest,
) -> Result<Result<(), Denial>, ApiError> {
    let enabled = state.trust.enabled().await.map_err(internal)?;
    let views = if enabled {
        views(state, repo).await?
    } else {
        Vec::new()
    };
    let t = now();
    Ok(match reference {
        TagOrDigest::Tag(tag) => {
            let first = policy::pull_by_tag(enabled, &views, tag.as_str(), sha256(served), t);
            // The registry may have answered with a child of the tagged index (the client
            // accepts no index): what is signed is the tag's own digest.
            if matches!(first, Err(Denial::DigestDiffers { .. }))
                && let Some(m) = state
                    .registry
                    .metadata()
                    .get_manifest(repo, reference)
                    .await
                    .map_err(stored)?
                && m.digest != *served
            {
                policy::pull_by_tag(enabled, &views, tag.as_str(), sha256(&m.digest), t)
            } else {
                first
            }
        }
        TagOrDigest::Digest(d) => {
            match policy::pull_by_digest(enabled, &views, sha256(d), false, t) {
                Err(Denial::DigestUnsigned { .. }) if enabled => {
                    let signed = policy::valid_signed_digests(&views, t);
                    let child = in_signed_index(state, repo, signed.into_iter(), d).await?;
                    policy::pull_by_digest(enabled, &views, sha256(d), child, t)
                }
                other => other,
            }
        }
    })
}

/// `immutable-signed-tags` for a manifest PUT of `repo` that points `tags` at `digest`.
pub(crate) async fn check_push(
    state: &AppState,
    repo: &RepoName,
    tags: &[&str],
    digest: &Digest,
    cx: &crate::webhooks::EventContext,
) -> Result<(), ApiError> {
    if tags.is_empty() {
        return Ok(());
    }
    let p = state.trust.policy(repo.as_str()).await.map_err(internal)?;
    if !p.immutable_signed_tags || !state.trust.enabled().await.map_err(internal)? {
        return Ok(());
    }
    let views = views(state, repo).await?;
    let t = now();
    for tag in tags {
        policy::push_tag(&views, tag, sha256(digest), t)
            .map_err(|why| denied(state, repo, tag, &why, cx))?;
    }
    Ok(())
}
