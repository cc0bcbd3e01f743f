//! The tag list of a repository (`GET /v2/<name>/tags/list`, following `Link` pages), for verbs
//! that walk every tag (`berth trust migrate`).

use berth_oci::RepoName;
use reqwest::Method;

use crate::auth::repository_scope;
use crate::error::{Error, Result};
use crate::registry::{Registry, read_capped};

/// A tag list page larger than this is refused (a million short tags fit).
const MAX_TAGS_PAGE: usize = 64 << 20;

impl Registry {
    /// Every tag of `repo`, in the registry's order, following `Link` pages. An empty list for
    /// a repository that exists without tags; `Error::NotFound` for one that does not exist.
    pub async fn tags(&self, repo: &RepoName) -> Result<Vec<String>> {
        let what = format!("listing the tags of {repo}");
        let mut url = self.url(&format!("v2/{repo}/tags/list"))?;
        let scopes = [repository_scope(repo.as_str(), &["pull"])];
        let mut out = Vec::new();
        for _page in 0..10_000 {
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
            let bytes = read_capped(resp, MAX_TAGS_PAGE + 1)
                .await
                .unwrap_or_default();
            if bytes.len() > MAX_TAGS_PAGE {
                return Err(Error::protocol(&what, "a tag list page larger than 64 MiB"));
            }
            let page: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| Error::protocol(&what, format!("the answer is not JSON: {e}")))?;
            // `"tags": null` is what distribution answers for a repository without tags.
            match &page["tags"] {
                serde_json::Value::Null => {}
                serde_json::Value::Array(tags) => {
                    out.extend(tags.iter().filter_map(|t| t.as_str().map(str::to_owned)));
                }
                _ => return Err(Error::protocol(&what, "\"tags\" is not a list")),
            }
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
        Err(Error::protocol(what, "more than 10000 pages"))
    }
}
