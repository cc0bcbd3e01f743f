//! Manifest GET/HEAD/PUT, with the digest checks that make a pull by digest trustworthy.

use berth_oci::media;
use berth_oci::{Algorithm, Digest, RepoName};
use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};

use crate::auth::repository_scope;
use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::verify;

/// Registries must accept manifests up to 4 MiB; we read no more than that.
pub const MAX_MANIFEST: usize = 4 << 20;

/// Every manifest type we can pull, in order of preference.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A manifest as fetched, already checked against its digest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// Digest and size of a manifest as the registry describes it (HEAD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestDescriptor {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

fn header_digest(what: &str, headers: &HeaderMap) -> Result<Option<Digest>> {
    match headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
    {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| Error::protocol(what, format!("malformed Docker-Content-Digest {v:?}"))),
    }
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| media::essence(v).to_owned())
}

/// `repo:tag` or `repo@digest`, as docker writes them (a digest has a ':', a tag cannot).
fn manifest_name(repo: &RepoName, reference: &str) -> String {
    if reference.contains(':') {
        format!("{repo}@{reference}")
    } else {
        format!("{repo}:{reference}")
    }
}

impl Registry {
    /// Fetches a manifest by tag or digest and verifies it. By digest, its bytes must hash to
    /// that digest; by tag, to the registry's `Docker-Content-Digest` when it sends one.
    pub async fn get_manifest(&self, repo: &RepoName, reference: &str) -> Result<FetchedManifest> {
        let what = format!("fetching manifest {}", manifest_name(repo, reference));
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let scopes = [repository_scope(repo.as_str(), &["pull"])];
        let resp = self
            .send(&what, &scopes, || {
                self.request(Method::GET, &url)
                    .header(ACCEPT, ACCEPT_MANIFESTS)
            })
            .await?;
        let mut resp = self.check(resp, &what).await?;
        let asked: Option<Digest> = reference
            .contains(':')
            .then(|| reference.parse())
            .transpose()
            .map_err(|_| Error::InvalidReference {
                input: reference.to_owned(),
                reason: "not a digest".into(),
            })?;
        let announced = header_digest(&what, resp.headers())?;
        let media_type = content_type(resp.headers());
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST as u64)
        {
            return Err(Error::protocol(&what, "manifest larger than 4 MiB"));
        }
        let mut bytes = Vec::new();
        while let Some(c) = resp.chunk().await.map_err(|e| self.network(&what, &e))? {
            if bytes.len() + c.len() > MAX_MANIFEST {
                return Err(Error::protocol(&what, "manifest larger than 4 MiB"));
            }
            bytes.extend_from_slice(&c);
        }
        let expected = asked.or(announced.clone());
        let digest = match &expected {
            Some(d) => {
                verify::check_bytes(&what, d, bytes.len() as u64, &bytes)?;
                d.clone()
            }
            None => Digest::of(Algorithm::Sha256, &bytes),
        };
        if let Some(a) = announced
            && a.algorithm() == digest.algorithm()
            && a != digest
        {
            return Err(Error::DigestMismatch {
                what,
                expected: digest,
                actual: a,
            });
        }
        // The body's own mediaType wins over the header (the spec makes them agree).
        let view = berth_oci::ManifestView::parse(&bytes, media_type.as_deref()).map_err(|e| {
            Error::protocol(
                &what,
                format!("not a manifest we understand: {}", e.message),
            )
        })?;
        Ok(FetchedManifest {
            digest,
            media_type: view.media_type,
            bytes: Bytes::from(bytes),
        })
    }

    /// Resolves a tag (or checks a digest) with HEAD: digest, size and type, without the body.
    /// `Ok(None)` when the manifest does not exist.
    pub async fn head_manifest(
        &self,
        repo: &RepoName,
        reference: &str,
    ) -> Result<Option<ManifestDescriptor>> {
        let what = format!("looking up manifest {}", manifest_name(repo, reference));
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let scopes = [repository_scope(repo.as_str(), &["pull"])];
        let resp = self
            .send(&what, &scopes, || {
                self.request(Method::HEAD, &url)
                    .header(ACCEPT, ACCEPT_MANIFESTS)
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp, &what).await?;
        let digest = header_digest(&what, resp.headers())?
            .ok_or_else(|| Error::protocol(&what, "no Docker-Content-Digest"))?;
        let size = resp
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::protocol(&what, "no Content-Length"))?;
        Ok(Some(ManifestDescriptor {
            digest,
            size,
            media_type: content_type(resp.headers()).unwrap_or_default(),
        }))
    }

    /// PUTs a manifest under a tag or its digest and checks the registry stored the same
    /// bytes (its `Docker-Content-Digest` must equal ours).
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &str,
        media_type: &str,
        bytes: &Bytes,
    ) -> Result<Digest> {
        let what = format!("pushing manifest {}", manifest_name(repo, reference));
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let scopes = [repository_scope(repo.as_str(), &["pull", "push"])];
        let resp = self
            .send(&what, &scopes, || {
                self.request(Method::PUT, &url)
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.clone())
            })
            .await?;
        let resp = self.check(resp, &what).await?;
        // Pushed by a digest, that digest's algorithm names the manifest; by tag, sha256.
        let algorithm = reference
            .parse::<Digest>()
            .map_or(Algorithm::Sha256, |d| d.algorithm());
        let ours = Digest::of(algorithm, bytes);
        if let Some(theirs) = header_digest(&what, resp.headers())?
            && theirs.algorithm() == algorithm
            && theirs != ours
        {
            return Err(Error::DigestMismatch {
                what,
                expected: ours,
                actual: theirs,
            });
        }
        Ok(ours)
    }
}
