//! The HTTP [`Transport`]: a notary-compatible trust server under `/v2/<gun>/_trust/tuf/`
//! (plus the server-key and publish requests the publisher needs). See [`crate::tufclient`].

use std::time::SystemTime;

use berth_crypto::PublicKey;

use crate::error::{Error, Result};
use crate::transport::{FetchError, MetaFile, Transport};
use crate::tufclient::MAX_TIMESTAMP_SIZE;

/// How requests to the trust server authenticate (the caller runs the token flow).
#[derive(Clone)]
pub enum Credentials {
    Bearer(String),
    Basic { username: String, password: String },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Bearer(_) => f.write_str("Bearer(..)"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ..)"),
        }
    }
}

/// The trust server: a ready HTTP client (TLS roots, timeouts and proxies are the caller's),
/// the registry's base URL and optional credentials.
#[derive(Clone, Debug)]
pub struct Remote {
    client: reqwest::Client,
    base: String,
    credentials: Option<Credentials>,
}

impl Remote {
    /// `base` is the registry URL, e.g. `https://localhost:5000`.
    pub fn new(client: reqwest::Client, base: &str) -> Self {
        Remote {
            client,
            base: base.trim_end_matches('/').to_owned(),
            credentials: None,
        }
    }

    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> Self {
        self.credentials = credentials;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, gun: &str, file: &str) -> String {
        format!("{}/v2/{gun}/_trust/tuf/{file}", self.base)
    }

    fn authorize(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credentials {
            Some(Credentials::Bearer(t)) => rb.bearer_auth(t),
            Some(Credentials::Basic { username, password }) => {
                rb.basic_auth(username, Some(password))
            }
            None => rb,
        }
    }

    /// GETs a metadata file, reading at most `limit` bytes. `Ok(None)` on 404.
    async fn get(&self, gun: &str, file: &str, role: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let url = self.url(gun, file);
        let mut resp = self.authorize(self.client.get(&url)).send().await?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        check_status("GET", &url, &mut resp).await?;
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(Error::TooLarge {
                role: role.to_owned(),
                limit,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(Error::TooLarge {
                    role: role.to_owned(),
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }

    /// `GET <role>.key`: the public key of a server-managed role.
    pub(crate) async fn server_key(&self, gun: &str, role: &str) -> Result<PublicKey> {
        let body = self
            .get(gun, &format!("{role}.key"), role, MAX_TIMESTAMP_SIZE)
            .await?
            .ok_or_else(|| Error::Server {
                method: "GET",
                url: self.url(gun, &format!("{role}.key")),
                status: 404,
                body: "no server-managed key".into(),
            })?;
        let v = berth_cjson::from_slice(&body).map_err(|e| Error::malformed(role, e))?;
        Ok(PublicKey::from_value(&v)?)
    }

    /// `POST /tuf/` with one multipart part per role (field `files`, filename = role name),
    /// as the Go client publishes.
    pub(crate) async fn publish(&self, gun: &str, files: &[(String, Vec<u8>)]) -> Result<()> {
        let boundary = format!("berth-trust-{}", hex::encode(rand_tag()));
        let mut body = Vec::new();
        for (role, data) in files {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{role}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let url = self.url(gun, "");
        let mut resp = self
            .authorize(self.client.post(&url))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await?;
        check_status("POST", &url, &mut resp).await
    }
}

impl Transport for Remote {
    fn location(&self) -> &str {
        &self.base
    }

    async fn fetch(
        &self,
        gun: &str,
        file: &MetaFile<'_>,
        limit: u64,
    ) -> Result<Vec<u8>, FetchError> {
        let name = file.file_name();
        self.get(gun, &name, file.role(), limit)
            .await?
            .ok_or_else(|| FetchError::NotFound {
                url: self.url(gun, &name),
            })
    }
}

fn rand_tag() -> [u8; 8] {
    // Only needs to be absent from the parts; the metadata is JSON, so any tag would do.
    let n = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (n ^ u64::from(std::process::id())).to_be_bytes()
}

async fn check_status(method: &'static str, url: &str, resp: &mut reqwest::Response) -> Result<()> {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    if status == 401 || status == 403 {
        return Err(Error::Unauthorized {
            url: url.to_owned(),
            status,
            challenge: resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
    }
    // The notary client reads at most 1 KiB of an error body; so do we.
    let mut body = Vec::new();
    while let Ok(Some(c)) = resp.chunk().await {
        body.extend_from_slice(&c);
        if body.len() >= 1024 {
            body.truncate(1024);
            break;
        }
    }
    Err(Error::Server {
        method,
        url: url.to_owned(),
        status,
        body: error_words(&body),
    })
}

/// A notary error body (`{"errors":[{"code","message","detail"}]}`) in words: the validation
/// message when there is one (it says what to do, e.g. how to enable content trust), else the
/// message with its detail. Anything else is shown as it came.
fn error_words(body: &[u8]) -> String {
    let raw = || String::from_utf8_lossy(body).trim().to_owned();
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return raw();
    };
    let first = &v["errors"][0];
    let Some(message) = first["message"].as_str() else {
        return raw();
    };
    let detail = &first["detail"];
    if let Some(msg) = detail["Error"]["Msg"].as_str().or(detail["Error"].as_str()) {
        return msg.to_owned();
    }
    match detail.as_str() {
        Some(d) if !d.is_empty() => format!("{message} ({d})"),
        _ => message.to_owned(),
    }
}
