//! Registry attestation's glue (issue 15): after a trust update was accepted for a repository
//! with attestation on, each tag it newly signed or changed gets a Notary Project signature made
//! with the registry key, pushed as a referrer of the signed manifest through the registry (blobs
//! digest-verified like any upload). What is recorded is `berth_trust::attest`'s.
//!
//! Never part of the update's outcome: the update is stored before this runs, and a failure here
//! is logged (never key material) and counted (`berth_attestations_total{outcome="failed"}`).

use std::time::Duration;

use berth_notation::{Descriptor, Signer};
use berth_oci::{Digest, RepoName, TagOrDigest};
use berth_trust::attest::{Record, RegistryKey, records_for};
use bytes::Bytes;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use zeroize::Zeroizing;

use crate::AppState;

/// Who the registry's uploads are recorded as (upload sessions have an owner).
const UPLOADER: &str = "berth-attestation";
/// The JWS's signing agent.
const AGENT: &str = concat!("berth-registry/", env!("CARGO_PKG_VERSION"));
/// The registry certificate's life.
const CERT_DAYS: i64 = 3650;
/// A bound on the work after an accepted update (the client is waiting for its answer).
const DEADLINE: Duration = Duration::from_secs(15);

/// A fresh ECDSA P-256 key and a self-signed certificate for it with the codeSigning usage (a
/// Notary Project signing certificate, not a CA): the certificate users put in their trust store.
fn generate() -> Result<(String, Zeroizing<Vec<u8>>), String> {
    let e = |e: rcgen::Error| e.to_string();
    let key = KeyPair::generate().map_err(e)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Berth registry attestation");
    dn.push(DnType::OrganizationName, "Berth");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now.saturating_sub(time::Duration::days(1));
    params.not_after = now.saturating_add(time::Duration::days(CERT_DAYS));
    let cert = params.self_signed(&key).map_err(e)?;
    Ok((cert.pem(), Zeroizing::new(key.serialize_der())))
}

/// The registry key, made (once per registry, by whichever node asks first) when absent.
pub(crate) async fn registry_key(state: &AppState) -> berth_trust::Result<RegistryKey> {
    state.trust.attestation_key(generate).await
}

fn signer(key: &RegistryKey) -> Result<Signer, String> {
    use base64::Engine as _;
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*key.pkcs8));
    let mut pem = Zeroizing::new(String::from("-----BEGIN PRIVATE KEY-----\n"));
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Signer::from_pem(pem.as_bytes(), key.cert_pem.as_bytes()).map_err(|e| e.to_string())
}

/// Attests what an accepted update of `gun` changed, when its repository has attestation on.
/// Infallible by design: see the module comment.
pub(crate) async fn after_update(
    state: &AppState,
    gun: &str,
    changes: &[berth_trust::TargetChange],
    event_cx: &crate::webhooks::EventContext,
) {
    if !changes
        .iter()
        .any(|c| c.kind != berth_trust::TargetChangeKind::Removed)
    {
        return;
    }
    let Some(repo) = state.guns.repository(gun) else {
        return;
    };
    match state.trust.attestation_enabled(repo.as_str()).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(gun, error = %e, "attestation: reading the switch failed; nothing attested");
            crate::metrics::global().attestation(false);
            return;
        }
    }
    if tokio::time::timeout(DEADLINE, attest(state, gun, &repo, changes, event_cx))
        .await
        .is_err()
    {
        tracing::warn!(gun, "attestation: timed out; the trust update stands");
        crate::metrics::global().attestation(false);
    }
}

async fn attest(
    state: &AppState,
    gun: &str,
    repo: &RepoName,
    changes: &[berth_trust::TargetChange],
    event_cx: &crate::webhooks::EventContext,
) {
    let metrics = crate::metrics::global();
    let view = match state.trust.view_shared(gun).await {
        Ok(Some(v)) => v,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(gun, error = %e, "attestation: reading the trust data failed");
            metrics.attestation(false);
            return;
        }
    };
    let records = records_for(changes, &view, state.registry.now());
    if records.is_empty() {
        return;
    }
    let signer = match registry_key(state)
        .await
        .map_err(|e| e.to_string())
        .and_then(|k| signer(&k))
    {
        Ok(s) => s,
        Err(e) => {
            // The error names the setting or the failure, never key bytes.
            tracing::warn!(gun, error = %e, "attestation: the registry key is unusable");
            for _ in &records {
                metrics.attestation(false);
            }
            return;
        }
    };
    for r in &records {
        match attach(state, repo, &signer, r).await {
            Ok((sig, size)) => {
                tracing::info!(gun, tag = r.tag, digest = r.digest, signature = %sig, "attestation attached");
                metrics.attestation(true);
                // A new manifest in the repository, as any push: receivers that mirror or
                // index referrers see it. The actor is the registry, the request the update's.
                let cx = crate::webhooks::EventContext {
                    actor: UPLOADER.to_owned(),
                    request: event_cx.request.clone(),
                };
                crate::webhooks::emit(
                    state,
                    crate::webhooks::Event::Push {
                        repository: repo.to_string(),
                        digest: sig.to_string(),
                        media_type: berth_notation::OCI_MANIFEST.to_owned(),
                        size,
                        tags: Vec::new(),
                    },
                    &cx,
                )
                .await;
            }
            Err(e) => {
                tracing::warn!(gun, tag = r.tag, digest = r.digest, error = %e, "attestation: not attached; the trust update stands");
                metrics.attestation(false);
            }
        }
    }
}

/// Signs `r` and pushes the signature as a referrer of the manifest it names; the signature
/// manifest's digest and size.
async fn attach(
    state: &AppState,
    repo: &RepoName,
    signer: &Signer,
    r: &Record,
) -> Result<(Digest, u64), String> {
    let reg = &state.registry;
    let digest: Digest = r
        .digest
        .parse()
        .map_err(|e: berth_oci::Error| e.to_string())?;
    let subject = reg
        .get_manifest(repo, &TagOrDigest::Digest(digest), &[])
        .await
        .map_err(|e| format!("the signed manifest is not in {repo}: {e}"))?;
    if i64::try_from(subject.body.len()).ok() != Some(r.length) {
        return Err(format!(
            "the signed length {} is not the manifest's size {}",
            r.length,
            subject.body.len()
        ));
    }
    let size = subject.body.len() as u64;
    let target = Descriptor {
        annotations: Some(r.annotations()),
        ..Descriptor::new(&subject.media_type, &r.digest, size)
    };
    let envelope = signer
        .sign(&target, r.time, AGENT)
        .map_err(|e| e.to_string())?;
    let manifest = berth_notation::signature_manifest(
        &envelope,
        &Descriptor::new(&subject.media_type, &r.digest, size),
        &signer.thumbprints(),
    );
    // The record also on the manifest, so a referrers listing shows which tag it attests
    // (informational: the signed copy is the payload's).
    let mut m: serde_json::Value = serde_json::from_slice(&manifest).map_err(|e| e.to_string())?;
    if let Some(a) = m
        .get_mut("annotations")
        .and_then(serde_json::Value::as_object_mut)
    {
        a.extend(r.annotations());
    }
    let manifest = serde_json::to_vec(&m).map_err(|e| e.to_string())?;
    for blob in [berth_notation::EMPTY_CONTENT.to_vec(), envelope] {
        let d = Digest::sha256_of(&blob);
        let len = blob.len() as u64;
        let body: berth_storage::ByteStream = Box::pin(futures::stream::once(async move {
            Ok::<_, std::io::Error>(Bytes::from(blob))
        }));
        reg.upload_monolithic(repo, &d, Some(len), body, UPLOADER)
            .await
            .map_err(|e| format!("storing blob {d}: {e}"))?;
    }
    let d = Digest::sha256_of(&manifest);
    let size = manifest.len() as u64;
    reg.put_manifest(
        repo,
        &TagOrDigest::Digest(d),
        Some(berth_notation::OCI_MANIFEST),
        Bytes::from(manifest),
        Vec::new(),
    )
    .await
    .map(|p| (p.digest, size))
    .map_err(|e| format!("storing the signature manifest: {e}"))
}

/// The path of the certificate under `/api/v1/` (`_` starts no repository name).
pub(crate) const CERTIFICATE_PATH: &str = "attestation/_certificate";
const DEFAULT_SCOPE: &str = "_default";

type R = Result<axum::response::Response, crate::error::AdminError>;

fn json(v: serde_json::Value) -> axum::response::Response {
    axum::response::IntoResponse::into_response(axum::Json(v))
}

/// `GET /api/v1/attestation`, `GET|PUT|DELETE /api/v1/attestation/(_default|REPO)` (Owner) and
/// `GET /api/v1/attestation/_certificate` (any authenticated caller: the PEM certificate of the
/// registry key, made on first use, for users' Notary Project trust stores).
pub(crate) async fn admin(
    cx: &crate::routes::admin::Ctx<'_>,
    method: &axum::http::Method,
    path: &str,
    body: &Bytes,
) -> R {
    use crate::error::AdminError;
    use axum::http::Method;
    use serde_json::json as j;
    let trust = &cx.state.trust;
    if path == CERTIFICATE_PATH {
        if *method != Method::GET {
            return Err(AdminError::not_found("no such admin endpoint"));
        }
        let key = registry_key(cx.state).await?;
        return Ok(axum::response::IntoResponse::into_response((
            [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
            key.cert_pem.clone(),
        )));
    }
    let scope = match path.strip_prefix("attestation") {
        Some("") => None,
        Some(rest) => Some(
            rest.strip_prefix('/')
                .filter(|r| !r.is_empty())
                .ok_or_else(|| AdminError::not_found("no such admin endpoint"))?,
        ),
        None => return Err(AdminError::not_found("no such admin endpoint")),
    };
    let default = trust.attestation_setting(None).await?.unwrap_or(false);
    let Some(scope) = scope else {
        if *method != Method::GET {
            return Err(AdminError::not_found("no such admin endpoint"));
        }
        let repos: Vec<_> = trust
            .attestation_settings()
            .await?
            .into_iter()
            .map(|(r, on)| j!({"repository": r, "enabled": on}))
            .collect();
        return Ok(json(j!({"default": default, "repositories": repos})));
    };
    let repo = if scope == DEFAULT_SCOPE {
        None
    } else {
        Some(
            scope
                .parse::<RepoName>()
                .map_err(|e| AdminError::invalid("repository", e.message))?,
        )
    };
    let name = repo.as_ref().map(RepoName::as_str);
    let old = trust.attestation_setting(name).await?;
    let show = |default: bool, own: Option<bool>| match name {
        None => j!({"scope": "default", "enabled": default}),
        Some(r) => {
            j!({"repository": r, "set": own, "default": default, "enabled": own.unwrap_or(default)})
        }
    };
    let new = match *method {
        Method::GET => return Ok(json(show(default, old))),
        Method::PUT | Method::PATCH => {
            let v: serde_json::Value =
                serde_json::from_slice(body).map_err(AdminError::bad_body)?;
            match v.get("enabled") {
                Some(serde_json::Value::Bool(b)) => Some(*b),
                Some(serde_json::Value::Null) => None,
                _ => {
                    return Err(AdminError::invalid(
                        "enabled",
                        "must be true, false or null (follow the registry default)",
                    ));
                }
            }
        }
        Method::DELETE => None,
        _ => return Err(AdminError::not_found("no such admin endpoint")),
    };
    trust.set_attestation(name, new).await?;
    let target = name.unwrap_or("registry");
    let s = |v: Option<bool>| v.map_or("default".to_owned(), |b| b.to_string());
    let detail = format!(
        "{} {} -> {}",
        name.map_or("default", |_| "repository"),
        s(old),
        s(new)
    );
    tracing::warn!(scope = target, change = %detail, "registry attestation switched");
    cx.audit("attestation.updated", target, &detail).await;
    let default = if name.is_none() {
        new.unwrap_or(false)
    } else {
        default
    };
    Ok(json(show(default, new)))
}
