//! What signatures as referrers need beyond push and pull: small in-memory blobs (a signature
//! envelope, the empty config) up and down, and the referrers API (OCI distribution 1.1).

use berth_oci::{Algorithm, Digest, RepoName};
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};

use crate::auth::repository_scope;
use crate::error::{Error, Result};
use crate::registry::{Registry, read_capped};

/// Signature envelopes and configs are small; a referrer blob larger than this is refused.
pub const MAX_SMALL_BLOB: usize = 4 << 20;

impl Registry {
    /// Uploads `data` in one PUT (POST then PUT `?digest=`) unless the repository has it.
    pub async fn push_small_blob(&self, repo: &RepoName, data: &[u8]) -> Result<Digest> {
        let digest = Digest::of(Algorithm::Sha256, data);
        if self.blob_exists(repo, &digest).await? {
            return Ok(digest);
        }
        let session = self.start_upload(repo).await?;
        let what = format!("uploading blob {digest} to {repo}");
        let mut url = session.url.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let scopes = [repository_scope(repo.as_str(), &["pull", "push"])];
        let body = Bytes::copy_from_slice(data);
        let resp = self
            .send(&what, &scopes, || {
                self.request(Method::PUT, &url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, body.len())
                    .body(body.clone())
            })
            .await?;
        self.check(resp, &what).await?;
        Ok(digest)
    }

    /// Fetches a small blob and checks it against `digest`.
    pub async fn get_small_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<u8>> {
        let what = format!("fetching blob {digest} of {repo}");
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let scopes = [repository_scope(repo.as_str(), &["pull"])];
        let resp = self
            .send(&what, &scopes, || self.request(Method::GET, &url))
            .await?;
        let resp = self.check(resp, &what).await?;
        let bytes = read_capped(resp, MAX_SMALL_BLOB + 1)
            .await
            .unwrap_or_default();
        if bytes.len() > MAX_SMALL_BLOB {
            return Err(Error::protocol(what, "blob larger than 4 MiB"));
        }
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what,
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// The descriptors of the manifests that name `digest` as their subject, optionally only
    /// those of `artifact_type`, following `Link` pages.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<serde_json::Value>> {
        let what = format!("listing the referrers of {repo}@{digest}");
        let mut url = self.url(&format!("v2/{repo}/referrers/{digest}"))?;
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        let scopes = [repository_scope(repo.as_str(), &["pull"])];
        let mut out = Vec::new();
        for _page in 0..100 {
            let resp = self
                .send(&what, &scopes, || self.request(Method::GET, &url))
                .await?;
            let resp = self.check(resp, &what).await?;
            let next = resp
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once('<'))
                .and_then(|(_, r)| r.split_once('>'))
                .map(|(u, _)| u.to_owned());
            let bytes = read_capped(resp, crate::manifests::MAX_MANIFEST)
                .await
                .unwrap_or_default();
            let index: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| Error::protocol(&what, format!("the answer is not JSON: {e}")))?;
            let Some(m) = index["manifests"].as_array() else {
                return Err(Error::protocol(&what, "the answer is not an image index"));
            };
            out.extend(m.iter().cloned());
            match next {
                Some(n) => {
                    url = self.url(&n).or_else(|_| {
                        url.join(&n)
                            .map_err(|e| Error::protocol(&what, format!("bad Link: {e}")))
                    })?
                }
                None => return Ok(out),
            }
        }
        Err(Error::protocol(what, "more than 100 pages"))
    }
}
