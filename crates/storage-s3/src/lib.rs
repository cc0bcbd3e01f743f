//! Berth's blob store on an S3-compatible object store (Garage in the tests, any S3 in use).
//!
//! Layout under the configured prefix:
//! - `blobs/<algorithm>/<hex>`: a blob, written only after the registry verified its digest
//!   (one PUT, a server-side copy or a multipart upload completed at once: never visible
//!   half-written);
//! - `uploads/<id>/.session`: marks an open upload session;
//! - `uploads/<id>/<part>`: one object per chunk, under the part name the writer chose fresh
//!   (see `berth_storage::BlobStore`). Only the parts the upload record lists make the blob;
//!   the others (a writer that lost the race at an offset, a chunk cut short by a crash) are
//!   deleted with the session.
//!
//! Nothing about a session lives in this process, so any node continues any upload. Bytes are
//! streamed in and out: an append holds at most one [`PART_SIZE`] buffer, and commit copies
//! parts inside the object store when S3's multipart rules allow (each part but the last at
//! least 5 MiB), else streams them through one buffer. Every body sent is signed with its
//! SHA-256 (`x-amz-content-sha256`), so the server refuses bytes damaged on the way.

#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

pub mod presign;
pub mod sigv4;
#[cfg(feature = "test-support")]
pub mod testing;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use berth_oci::Digest;
use berth_storage::{BlobStore, ByteStream, Error, Result, StoredBlob, TempObject, UploadPart};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use sha2::Digest as _;

/// Size of the buffer a chunk is sent from, and of multipart parts (S3's minimum part is 5 MiB).
pub const PART_SIZE: usize = 8 << 20;
/// S3's smallest multipart part (all but the last).
const MIN_PART: u64 = 5 << 20;
/// S3's largest source of a server-side copy (CopyObject, UploadPartCopy).
const MAX_COPY: u64 = 5 << 30;
/// S3's most parts in one multipart upload.
const MAX_PARTS: usize = 10_000;
const SESSION_MARKER: &str = ".session";
/// Deletes in flight at once when a session goes.
const DELETE_CONCURRENCY: usize = 8;
/// Tries of a request that failed before an answer or with a 5xx.
const TRIES: u32 = 3;

/// Where and how to reach the bucket.
#[derive(Clone)]
pub struct S3Config {
    /// `http(s)://host[:port]` of the S3 API.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// `host/bucket/key` addressing (Garage, MinIO) instead of `bucket.host/key`.
    pub path_style: bool,
    /// Prepended to every key (e.g. `registry/`), so a bucket can be shared.
    pub prefix: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct S3BlobStore {
    http: reqwest::Client,
    cfg: S3Config,
    signer: sigv4::Signer,
    /// `host[:port]` as the Host header and the signature carry it.
    host: String,
    scheme: String,
    /// `max-keys` of a listing page (`None`: the server's default, 1000).
    list_page: Option<u32>,
}

fn backend(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Backend(format!("s3 {what}: {e}"))
}

fn io(e: reqwest::Error) -> std::io::Error {
    std::io::Error::other(e)
}

/// Text of every `<tag>…</tag>` in an S3 XML answer, entities decoded.
fn xml_all(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = rest.get(i + open.len()..).unwrap_or("");
        let Some(j) = after.find(&close) else { break };
        out.push(
            after
                .get(..j)
                .unwrap_or("")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&#34;", "\"")
                .replace("&amp;", "&"),
        );
        rest = after.get(j + close.len()..).unwrap_or("");
    }
    out
}

fn xml_one(xml: &str, tag: &str) -> Option<String> {
    xml_all(xml, tag).into_iter().next()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One request to send: what the signature covers.
struct Req<'a> {
    method: reqwest::Method,
    /// `None`: the bucket itself.
    key: Option<&'a str>,
    query: Vec<(&'a str, String)>,
    headers: Vec<(&'static str, String)>,
    body: Option<Bytes>,
    payload_hash: String,
}

impl<'a> Req<'a> {
    fn new(method: reqwest::Method, key: &'a str) -> Self {
        Req {
            method,
            key: Some(key),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            payload_hash: sigv4::EMPTY_SHA256.to_owned(),
        }
    }

    fn bucket(method: reqwest::Method) -> Self {
        Req {
            key: None,
            ..Req::new(method, "")
        }
    }

    fn query(mut self, k: &'a str, v: impl Into<String>) -> Self {
        self.query.push((k, v.into()));
        self
    }

    fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }

    /// A body signed with its SHA-256: the server checks the bytes it received against it.
    fn body(mut self, body: Bytes) -> Self {
        self.payload_hash = hex::encode(sha2::Sha256::digest(&body));
        self.body = Some(body);
        self
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
}

/// Unix seconds of an S3 timestamp (`2026-12-01T05:30:00.000Z`, as listings give them); 0 when
/// it cannot be read (an age of "long ago" only makes a leftover eligible for a check's
/// removal sooner, never a blob: blobs are only reported).
fn parse_s3_time(s: &str) -> i64 {
    let num = |a: usize, b: usize| s.get(a..b).and_then(|t| t.parse::<u32>().ok());
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(se)) = (
        num(0, 4),
        num(5, 7),
        num(8, 10),
        num(11, 13),
        num(14, 16),
        num(17, 19),
    ) else {
        return 0;
    };
    let date = time::Month::try_from(u8::try_from(mo).unwrap_or(0))
        .ok()
        .and_then(|m| {
            time::Date::from_calendar_date(
                i32::try_from(y).unwrap_or(0),
                m,
                u8::try_from(d).unwrap_or(0),
            )
            .ok()
        });
    let clock = time::Time::from_hms(
        u8::try_from(h).unwrap_or(99),
        u8::try_from(mi).unwrap_or(99),
        u8::try_from(se).unwrap_or(99),
    )
    .ok();
    match (date, clock) {
        (Some(date), Some(clock)) => time::PrimitiveDateTime::new(date, clock)
            .assume_utc()
            .unix_timestamp(),
        _ => 0,
    }
}

/// One listed object.
struct Listed {
    key: String,
    size: u64,
    modified: i64,
}

/// A multipart upload begun and neither completed nor aborted.
struct Pending {
    key: String,
    upload_id: String,
    initiated: i64,
}

/// A [`TempObject`] name for an unfinished multipart upload: `multipart:<key>#<upload id>`
/// (`#` never appears in the keys this store writes).
fn multipart_name(rel_key: &str, upload_id: &str) -> String {
    format!("multipart:{rel_key}#{upload_id}")
}

/// A failed answer as an error, with S3's code and message when the body has them.
fn status_error(what: &str, status: reqwest::StatusCode, text: &str) -> Error {
    let code = xml_one(text, "Code");
    let message = xml_one(text, "Message");
    let detail = match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        (None, Some(m)) => m,
        (None, None) => text.chars().take(200).collect(),
    };
    let hint = match status.as_u16() {
        403 => " (check the access key, its secret and its rights on the bucket, and the clock)",
        _ => "",
    };
    backend(what, format!("{status} {detail}{hint}"))
}

/// The `Content-Length` header. (reqwest's `content_length()` reads the body's size, which is
/// 0 for a HEAD answer.)
fn content_length(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// `len` bytes of `body` after skipping `skip`; fewer than `len` ends in an error.
fn window(body: ByteStream, skip: u64, len: u64) -> ByteStream {
    Box::pin(futures::stream::unfold(
        Some((body, skip, len)),
        |state| async move {
            let (mut body, mut skip, mut left) = state?;
            loop {
                if left == 0 {
                    return None;
                }
                match body.next().await {
                    None => {
                        return Some((
                            Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "object is shorter than the range asked for",
                            )),
                            None,
                        ));
                    }
                    Some(Err(e)) => return Some((Err(e), None)),
                    Some(Ok(mut chunk)) => {
                        let n = chunk.len() as u64;
                        if skip >= n {
                            skip -= n;
                            continue;
                        }
                        // skip < n <= usize::MAX, and the kept length is at most `left`.
                        let mut piece = chunk.split_off(usize::try_from(skip).unwrap_or(0));
                        skip = 0;
                        if piece.len() as u64 > left {
                            piece.truncate(usize::try_from(left).unwrap_or(0));
                        }
                        left -= piece.len() as u64;
                        return Some((Ok(piece), Some((body, skip, left))));
                    }
                }
            }
        },
    ))
}

fn failed_stream(e: std::io::Error) -> ByteStream {
    Box::pin(futures::stream::once(async move { Err(e) }))
}

impl S3BlobStore {
    /// A store over `cfg` sending through `http` (its TLS roots, timeouts and pool are the
    /// caller's).
    pub fn new(cfg: S3Config, http: reqwest::Client) -> Result<Self> {
        let (scheme, rest) = cfg
            .endpoint
            .split_once("://")
            .ok_or_else(|| backend("endpoint", "must start with http:// or https://"))?;
        if scheme != "http" && scheme != "https" {
            return Err(backend("endpoint", "must start with http:// or https://"));
        }
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(backend("endpoint", "must be http(s)://host[:port]"));
        }
        if cfg.bucket.is_empty() {
            return Err(backend("bucket", "no bucket name"));
        }
        let hostname = authority
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(authority, |(h, _)| h);
        if !cfg.path_style
            && (hostname.parse::<std::net::IpAddr>().is_ok() || hostname.starts_with('['))
        {
            return Err(backend(
                "endpoint",
                "virtual-hosted addressing (bucket.host) needs a DNS name, not an IP address: \
                 use path-style addressing (s3_path_style = true)",
            ));
        }
        let host = if cfg.path_style {
            authority.to_owned()
        } else {
            format!("{}.{authority}", cfg.bucket)
        };
        Ok(S3BlobStore {
            http,
            signer: sigv4::Signer {
                access_key: cfg.access_key.clone(),
                secret_key: cfg.secret_key.clone(),
                region: cfg.region.clone(),
            },
            host,
            scheme: scheme.to_owned(),
            cfg,
            list_page: None,
        })
    }

    /// Lists in pages of `n` keys (tests use a small page to exercise paging).
    pub fn with_list_page_size(mut self, n: u32) -> Self {
        self.list_page = Some(n.max(1));
        self
    }

    /// An S3 client for tests and tools: rustls (the process's default crypto provider) with
    /// the platform's roots, generous timeouts.
    pub fn default_http() -> Result<reqwest::Client> {
        // reqwest is built without a TLS provider of its own and panics without one: ring, as
        // everywhere in Berth, unless the process chose already.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| backend("client", e))
    }

    /// Checks that the bucket is reachable with these credentials (for a node's start-up):
    /// lists one key under the prefix.
    pub async fn check(&self) -> Result<()> {
        let r = Req::bucket(reqwest::Method::GET)
            .query("list-type", "2")
            .query("max-keys", "1")
            .query("prefix", self.cfg.prefix.clone());
        self.expect_ok("bucket check", r).await.map(drop)
    }

    /// Every key under this store's prefix (relative to it), in order: for tests that check
    /// what a session leaves behind.
    #[cfg(feature = "test-support")]
    pub async fn keys(&self) -> Result<Vec<String>> {
        let prefix = self.key("");
        Ok(self
            .list(&prefix)
            .await?
            .into_iter()
            .map(|(k, _)| k.get(prefix.len()..).unwrap_or("").to_owned())
            .collect())
    }

    /// Writes `data` at `rel_key` (under the prefix) as it is, bypassing every rule of the
    /// store: for tests that damage a blob or leave what a crash leaves.
    #[cfg(feature = "test-support")]
    pub async fn put_raw(&self, rel_key: &str, data: Bytes) -> Result<()> {
        self.put(&self.key(rel_key), data).await
    }

    /// Begins a multipart upload at `rel_key` and leaves it unfinished, as a writer killed
    /// mid-object does: for tests.
    #[cfg(feature = "test-support")]
    pub async fn begin_multipart_raw(&self, rel_key: &str) -> Result<String> {
        self.mp_create(&self.key(rel_key)).await
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.cfg.prefix)
    }

    fn blob_key(&self, d: &Digest) -> String {
        self.key(&format!("blobs/{}/{}", d.algorithm().as_str(), d.hex()))
    }

    fn upload_prefix(&self, id: &str) -> Result<String> {
        // Ids come from URLs; only what the registry generates (uuid text) may name objects.
        if !UploadPart::valid_name(id) {
            return Err(Error::UploadUnknown);
        }
        Ok(self.key(&format!("uploads/{id}/")))
    }

    fn marker_key(&self, id: &str) -> Result<String> {
        Ok(format!("{}{SESSION_MARKER}", self.upload_prefix(id)?))
    }

    /// The blob an object key names (`<prefix>blobs/<algorithm>/<hex>`), if any.
    fn blob_of_key(&self, key: &str) -> Option<Digest> {
        let rest = key
            .strip_prefix(self.cfg.prefix.as_str())?
            .strip_prefix("blobs/")?;
        let (alg, hex) = rest.split_once('/')?;
        let d: Digest = format!("{alg}:{hex}").parse().ok()?;
        (d.algorithm().as_str() == alg).then_some(d)
    }

    /// The upload an object key belongs to (`<prefix>uploads/<id>/…`, a well-formed id).
    fn upload_of_key(&self, key: &str) -> Option<String> {
        let rest = key
            .strip_prefix(self.cfg.prefix.as_str())?
            .strip_prefix("uploads/")?;
        let (id, _) = rest.split_once('/')?;
        UploadPart::valid_name(id).then(|| id.to_owned())
    }

    /// The object path as the URL and the signature carry it.
    fn path_of(&self, key: Option<&str>) -> String {
        let raw = match (self.cfg.path_style, key) {
            (true, Some(k)) => format!("/{}/{k}", self.cfg.bucket),
            (true, None) => format!("/{}", self.cfg.bucket),
            (false, Some(k)) => format!("/{k}"),
            (false, None) => "/".to_owned(),
        };
        sigv4::uri_encode(&raw, true)
    }

    async fn send_once(&self, r: &Req<'_>) -> reqwest::Result<reqwest::Response> {
        let canonical_path = self.path_of(r.key);
        let date = sigv4::amz_date(unix_now());
        let mut signed: Vec<(&str, &str)> = vec![
            ("host", &self.host),
            ("x-amz-content-sha256", &r.payload_hash),
            ("x-amz-date", &date),
        ];
        for (k, v) in &r.headers {
            signed.push((k, v));
        }
        let query: Vec<(&str, &str)> = r.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let auth = self.signer.authorization(
            r.method.as_str(),
            &canonical_path,
            &query,
            &signed,
            &r.payload_hash,
            &date,
        );
        let mut url = format!("{}://{}{canonical_path}", self.scheme, self.host);
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        sigv4::uri_encode(k, false),
                        sigv4::uri_encode(v, false)
                    )
                })
                .collect();
            url.push('?');
            url.push_str(&q.join("&"));
        }
        let mut rb = self
            .http
            .request(r.method.clone(), &url)
            .header("x-amz-date", &date)
            .header("x-amz-content-sha256", &r.payload_hash)
            .header("authorization", auth);
        for (k, v) in &r.headers {
            rb = rb.header(*k, v);
        }
        if let Some(b) = &r.body {
            rb = rb.body(b.clone());
        }
        rb.send().await
    }

    /// Sends, trying again (briefly) when the server could not be reached or answered 5xx.
    async fn send(&self, r: Req<'_>) -> Result<reqwest::Response> {
        let mut attempt = 1;
        loop {
            let result = self.send_once(&r).await;
            let retry = match &result {
                Ok(resp) => resp.status().is_server_error(),
                Err(e) => e.is_connect(),
            };
            if !retry || attempt >= TRIES {
                return result.map_err(|e| Error::Io(io(e)));
            }
            tracing::debug!(attempt, method = %r.method, "retrying an S3 request");
            tokio::time::sleep(Duration::from_millis(100 << (2 * attempt))).await;
            attempt += 1;
        }
    }

    /// Sends and insists on a 2xx answer (whose body is returned as text).
    async fn expect_ok(&self, what: &str, r: Req<'_>) -> Result<String> {
        let resp = self.send(r).await?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| Error::Io(io(e)))?;
        // CompleteMultipartUpload and copies can fail inside a 200.
        if !status.is_success() || text.contains("<Error>") {
            return Err(status_error(what, status, &text));
        }
        Ok(text)
    }

    /// Size of an object, or `None` when there is none.
    async fn head(&self, key: &str) -> Result<Option<u64>> {
        let resp = self.send(Req::new(reqwest::Method::HEAD, key)).await?;
        match resp.status().as_u16() {
            200 => content_length(&resp)
                .map(Some)
                .ok_or_else(|| backend("HEAD", "no Content-Length")),
            404 => Ok(None),
            _ => Err(status_error("HEAD", resp.status(), "")),
        }
    }

    async fn delete_key(&self, key: &str) -> Result<()> {
        self.expect_ok("DELETE", Req::new(reqwest::Method::DELETE, key))
            .await
            .map(drop)
    }

    async fn delete_all(&self, keys: Vec<String>) -> Result<()> {
        let results: Vec<Result<()>> = futures::stream::iter(keys)
            .map(|k| async move { self.delete_key(&k).await })
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.expect_ok("PUT", Req::new(reqwest::Method::PUT, key).body(data))
            .await
            .map(drop)
    }

    /// Every object under `prefix`: (key, size), in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        Ok(self
            .list_from(prefix, None, None)
            .await?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect())
    }

    /// Objects under `prefix` after key `start_after`, in key order, at most `limit` (all when
    /// `None`).
    async fn list_from(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut r = Req::bucket(reqwest::Method::GET)
                .query("list-type", "2")
                .query("prefix", prefix);
            let want = limit.map(|l| l.saturating_sub(out.len()));
            let page = match (self.list_page, want) {
                (Some(n), Some(w)) => Some(u64::from(n).min(w as u64)),
                (Some(n), None) => Some(u64::from(n)),
                (None, Some(w)) => Some((w as u64).min(1000)),
                (None, None) => None,
            };
            if let Some(n) = page {
                r = r.query("max-keys", n.to_string());
            }
            if let Some(t) = &token {
                r = r.query("continuation-token", t.clone());
            } else if let Some(a) = start_after {
                r = r.query("start-after", a);
            }
            let xml = self.expect_ok("LIST", r).await?;
            for contents in xml_all(&xml, "Contents") {
                let key = xml_one(&contents, "Key").ok_or_else(|| backend("LIST", "no Key"))?;
                let size = xml_one(&contents, "Size")
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| backend("LIST", "no Size"))?;
                let modified = xml_one(&contents, "LastModified").map_or(0, |t| parse_s3_time(&t));
                out.push(Listed {
                    key,
                    size,
                    modified,
                });
            }
            token = match xml_one(&xml, "IsTruncated").as_deref() {
                Some("true") => Some(
                    xml_one(&xml, "NextContinuationToken")
                        .ok_or_else(|| backend("LIST", "truncated without a continuation token"))?,
                ),
                _ => None,
            };
            if token.is_none() || limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some(l) = limit {
            out.truncate(l);
        }
        Ok(out)
    }

    /// Multipart uploads begun under `prefix` and never completed nor aborted: (key, upload id).
    async fn pending_multiparts(&self, prefix: &str) -> Result<Vec<Pending>> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut r = Req::bucket(reqwest::Method::GET)
                .query("uploads", "")
                .query("prefix", prefix);
            if let Some((key, id)) = &markers {
                r = r
                    .query("key-marker", key.clone())
                    .query("upload-id-marker", id.clone());
            }
            let xml = self.expect_ok("ListMultipartUploads", r).await?;
            for upload in xml_all(&xml, "Upload") {
                if let (Some(key), Some(upload_id)) =
                    (xml_one(&upload, "Key"), xml_one(&upload, "UploadId"))
                {
                    let initiated = xml_one(&upload, "Initiated").map_or(0, |t| parse_s3_time(&t));
                    out.push(Pending {
                        key,
                        upload_id,
                        initiated,
                    });
                }
            }
            markers = match xml_one(&xml, "IsTruncated").as_deref() {
                Some("true") => match (
                    xml_one(&xml, "NextKeyMarker"),
                    xml_one(&xml, "NextUploadIdMarker"),
                ) {
                    (Some(k), Some(u)) => Some((k, u)),
                    _ => None,
                },
                _ => None,
            };
            if markers.is_none() {
                return Ok(out);
            }
        }
    }

    /// Removes everything of a session: its parts, recorded or stray, any multipart upload a
    /// writer that died mid-chunk left open (its parts hold space until aborted), then the
    /// marker, last, so that a removal cut short still leaves a session to remove.
    async fn remove_session(&self, prefix: &str, stored: Vec<(String, u64)>) -> Result<()> {
        let marker = format!("{prefix}{SESSION_MARKER}");
        let others: Vec<String> = stored
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| *k != marker)
            .collect();
        self.delete_all(others).await?;
        for p in self.pending_multiparts(prefix).await? {
            self.mp_abort(&p.key, &p.upload_id).await;
        }
        self.delete_key(&marker).await
    }

    /// Multipart uploads left open under this store's prefix (for tests of what a session
    /// leaves behind).
    #[cfg(feature = "test-support")]
    pub async fn open_multiparts(&self) -> Result<usize> {
        Ok(self.pending_multiparts(&self.key("")).await?.len())
    }

    async fn session_open(&self, id: &str) -> Result<bool> {
        Ok(self.head(&self.marker_key(id)?).await?.is_some())
    }

    /// Writes `data` as one object at `key`: one PUT when it fits in [`PART_SIZE`], else a
    /// multipart upload completed only when every byte is in (aborted otherwise). Returns the
    /// bytes written; a body of another size than `expected`, or a failed one, leaves nothing.
    async fn write_object(
        &self,
        key: &str,
        expected: Option<u64>,
        mut data: ByteStream,
    ) -> Result<u64> {
        let mut buf = BytesMut::with_capacity(PART_SIZE);
        let mut received: u64 = 0;
        let mut multipart: Option<(String, Vec<(u32, String)>)> = None;
        let result: Result<()> = async {
            loop {
                let next = data.next().await;
                let done = next.is_none();
                if let Some(chunk) = next {
                    let chunk = chunk.map_err(Error::Body)?;
                    received = received.saturating_add(chunk.len() as u64);
                    if expected.is_some_and(|n| received > n) {
                        break;
                    }
                    buf.extend_from_slice(&chunk);
                }
                // A full part goes once more bytes follow it (the last part may be any size).
                while buf.len() > PART_SIZE || (done && multipart.is_some() && !buf.is_empty()) {
                    let take = buf.len().min(PART_SIZE);
                    let part = buf.split_to(take).freeze();
                    if multipart.is_none() {
                        multipart = Some((self.mp_create(key).await?, Vec::new()));
                    }
                    if let Some((upload_id, etags)) = &mut multipart {
                        if etags.len() >= MAX_PARTS {
                            return Err(backend("write", "object exceeds S3's 10000 parts"));
                        }
                        let n = u32::try_from(etags.len() + 1).unwrap_or(u32::MAX);
                        etags.push((n, self.mp_part(key, upload_id, n, part).await?));
                    }
                }
                if done {
                    break;
                }
            }
            if let Some(n) = expected
                && n != received
            {
                return Err(Error::SizeMismatch {
                    expected: n,
                    received,
                });
            }
            match &multipart {
                Some((upload_id, etags)) => self.mp_complete(key, upload_id, etags).await,
                None => self.put(key, buf.split().freeze()).await,
            }
        }
        .await;
        if let Err(e) = result {
            if let Some((upload_id, _)) = &multipart {
                self.mp_abort(key, upload_id).await;
            }
            return Err(e);
        }
        Ok(received)
    }

    async fn mp_create(&self, key: &str) -> Result<String> {
        let xml = self
            .expect_ok(
                "CreateMultipartUpload",
                Req::new(reqwest::Method::POST, key).query("uploads", ""),
            )
            .await?;
        xml_one(&xml, "UploadId").ok_or_else(|| backend("CreateMultipartUpload", "no UploadId"))
    }

    async fn mp_part(&self, key: &str, upload_id: &str, n: u32, data: Bytes) -> Result<String> {
        let resp = self
            .send(
                Req::new(reqwest::Method::PUT, key)
                    .query("partNumber", n.to_string())
                    .query("uploadId", upload_id)
                    .body(data),
            )
            .await?;
        let status = resp.status();
        let etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.text().await.map_err(|e| Error::Io(io(e)))?;
        if !status.is_success() {
            return Err(status_error("UploadPart", status, &text));
        }
        etag.ok_or_else(|| backend("UploadPart", "no ETag"))
    }

    /// Copies object `src` (whole) as part `n`, inside the object store.
    async fn mp_copy_part(&self, key: &str, upload_id: &str, n: u32, src: &str) -> Result<String> {
        let xml = self
            .expect_ok(
                "UploadPartCopy",
                Req::new(reqwest::Method::PUT, key)
                    .query("partNumber", n.to_string())
                    .query("uploadId", upload_id)
                    .header("x-amz-copy-source", self.copy_source(src)),
            )
            .await?;
        xml_one(&xml, "ETag").ok_or_else(|| backend("UploadPartCopy", "no ETag"))
    }

    async fn mp_complete(&self, key: &str, upload_id: &str, etags: &[(u32, String)]) -> Result<()> {
        let mut body = String::from("<CompleteMultipartUpload>");
        for (n, e) in etags {
            body.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
                xml_escape(e)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        self.expect_ok(
            "CompleteMultipartUpload",
            Req::new(reqwest::Method::POST, key)
                .query("uploadId", upload_id)
                .body(Bytes::from(body)),
        )
        .await
        .map(drop)
    }

    async fn mp_abort(&self, key: &str, upload_id: &str) {
        let abort = Req::new(reqwest::Method::DELETE, key).query("uploadId", upload_id);
        if let Err(e) = self.expect_ok("AbortMultipartUpload", abort).await {
            tracing::warn!(error = %e, "aborting a multipart upload");
        }
    }

    /// `x-amz-copy-source` for an object of this bucket.
    fn copy_source(&self, key: &str) -> String {
        sigv4::uri_encode(&format!("/{}/{key}", self.cfg.bucket), true)
    }

    /// GETs a whole object, checking it holds `size` bytes.
    async fn get_sized(&self, key: &str, size: u64) -> Result<ByteStream> {
        let resp = self.send(Req::new(reqwest::Method::GET, key)).await?;
        match resp.status().as_u16() {
            200 => {
                let len = content_length(&resp);
                if len.is_some_and(|n| n != size) {
                    return Err(backend(
                        "GET",
                        format!("{key} holds {len:?} bytes, the upload record says {size}"),
                    ));
                }
                Ok(window(
                    Box::pin(resp.bytes_stream().map(|r| r.map_err(io))),
                    0,
                    size,
                ))
            }
            s => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                Err(if s == 404 {
                    backend("GET", format!("upload part {key} is missing"))
                } else {
                    status_error("GET", status, &text)
                })
            }
        }
    }

    /// The parts' bytes in order, each fetched when the stream reaches it.
    fn stream_parts(&self, prefix: &str, parts: &[UploadPart]) -> ByteStream {
        let this = self.clone();
        let keys: Vec<(String, u64)> = parts
            .iter()
            .map(|p| (format!("{prefix}{}", p.name), p.size))
            .collect();
        Box::pin(
            futures::stream::iter(keys)
                .then(move |(key, size)| {
                    let this = this.clone();
                    async move { this.get_sized(&key, size).await }
                })
                .flat_map(|r| match r {
                    Ok(s) => s,
                    Err(e) => failed_stream(std::io::Error::other(e.to_string())),
                }),
        )
    }

    /// Publishes the recorded `parts` (checked against what is stored) as the object `key`.
    async fn publish(
        &self,
        key: &str,
        prefix: &str,
        parts: &[UploadPart],
        total: u64,
    ) -> Result<()> {
        let src = |p: &UploadPart| format!("{prefix}{}", p.name);
        // Empty parts add nothing (a closing PUT without a body leaves one) and would spoil
        // the copy paths.
        let parts: Vec<UploadPart> = parts.iter().filter(|p| p.size > 0).cloned().collect();
        let parts = parts.as_slice();
        match parts {
            [] => return self.put(key, Bytes::new()).await,
            [one] if one.size <= MAX_COPY => {
                // Inside the object store: no byte passes through this node.
                return self
                    .expect_ok(
                        "CopyObject",
                        Req::new(reqwest::Method::PUT, key)
                            .header("x-amz-copy-source", self.copy_source(&src(one))),
                    )
                    .await
                    .map(drop);
            }
            _ => {}
        }
        let Some((last, rest)) = parts.split_last() else {
            return self.put(key, Bytes::new()).await;
        };
        let copyable = parts.len() <= MAX_PARTS
            && last.size <= MAX_COPY
            && rest.iter().all(|p| (MIN_PART..=MAX_COPY).contains(&p.size));
        if !copyable {
            // Parts too small (or large) to be multipart parts themselves: through one buffer.
            let n = self
                .write_object(key, Some(total), self.stream_parts(prefix, parts))
                .await?;
            debug_assert_eq!(n, total);
            return Ok(());
        }
        let upload_id = self.mp_create(key).await?;
        let result: Result<()> = async {
            let mut etags = Vec::with_capacity(parts.len());
            for (i, p) in parts.iter().enumerate() {
                let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
                etags.push((n, self.mp_copy_part(key, &upload_id, n, &src(p)).await?));
            }
            self.mp_complete(key, &upload_id, &etags).await
        }
        .await;
        if result.is_err() {
            self.mp_abort(key, &upload_id).await;
        }
        result
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        self.head(&self.blob_key(digest)).await
    }

    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream> {
        let key = self.blob_key(digest);
        if len == 0 {
            return match self.head(&key).await? {
                Some(_) => Ok(Box::pin(futures::stream::empty())),
                None => Err(Error::BlobUnknown),
            };
        }
        let last = offset.saturating_add(len).saturating_sub(1);
        let resp = self
            .send(
                Req::new(reqwest::Method::GET, &key)
                    .header("range", format!("bytes={offset}-{last}")),
            )
            .await?;
        let status = resp.status();
        let body = |resp: reqwest::Response| -> ByteStream {
            Box::pin(resp.bytes_stream().map(|r| r.map_err(io)))
        };
        match status.as_u16() {
            206 => Ok(window(body(resp), 0, len)),
            // A server that ignores the range sends the whole object.
            200 => Ok(window(body(resp), offset, len)),
            416 => Ok(failed_stream(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("blob has no byte {offset}"),
            ))),
            _ => {
                let text = resp.text().await.unwrap_or_default();
                if status.as_u16() == 404
                    && xml_one(&text, "Code").as_deref() != Some("NoSuchBucket")
                {
                    Err(Error::BlobUnknown)
                } else {
                    Err(status_error("GET", status, &text))
                }
            }
        }
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        let key = self.blob_key(digest);
        if self.head(&key).await?.is_none() {
            return Err(Error::BlobUnknown);
        }
        self.delete_key(&key).await
    }

    async fn upload_start(&self, id: &str) -> Result<()> {
        let marker = self.marker_key(id)?;
        if self.head(&marker).await?.is_some() {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("upload {id} already exists"),
            )));
        }
        self.put(&marker, Bytes::new()).await
    }

    async fn upload_write(
        &self,
        id: &str,
        part: &str,
        _offset: u64,
        expected: Option<u64>,
        data: ByteStream,
    ) -> Result<u64> {
        let prefix = self.upload_prefix(id)?;
        if !UploadPart::valid_name(part) {
            return Err(backend("upload", format!("invalid part name {part:?}")));
        }
        if !self.session_open(id).await? {
            return Err(Error::UploadUnknown);
        }
        let key = format!("{prefix}{part}");
        let n = self.write_object(&key, expected, data).await?;
        // Cancelled meanwhile: the part must not outlive its session.
        if !self.session_open(id).await? {
            self.delete_key(&key).await?;
            return Err(Error::UploadUnknown);
        }
        Ok(n)
    }

    async fn upload_exists(&self, id: &str) -> Result<bool> {
        self.session_open(id).await
    }

    async fn upload_read(&self, id: &str, parts: &[UploadPart]) -> Result<ByteStream> {
        let prefix = self.upload_prefix(id)?;
        if !self.session_open(id).await? {
            return Err(Error::UploadUnknown);
        }
        UploadPart::total(parts)?;
        Ok(self.stream_parts(&prefix, parts))
    }

    async fn upload_commit(&self, id: &str, parts: &[UploadPart], digest: &Digest) -> Result<u64> {
        let prefix = self.upload_prefix(id)?;
        let total = UploadPart::total(parts)?;
        let stored = self.list(&prefix).await?;
        let marker = format!("{prefix}{SESSION_MARKER}");
        if !stored.iter().any(|(k, _)| *k == marker) {
            return Err(Error::UploadUnknown);
        }
        let sizes: HashMap<&str, u64> = stored
            .iter()
            .filter_map(|(k, s)| k.strip_prefix(prefix.as_str()).map(|name| (name, *s)))
            .collect();
        for p in parts {
            if sizes.get(p.name.as_str()) != Some(&p.size) {
                return Err(backend(
                    "commit",
                    format!(
                        "upload part {} ({} bytes at {}) is missing or of another size",
                        p.name, p.size, p.offset
                    ),
                ));
            }
        }
        let key = self.blob_key(digest);
        // Content-addressed: identical bytes already there are kept as they are.
        if self.head(&key).await?.is_none() {
            self.publish(&key, &prefix, parts, total).await?;
        }
        self.remove_session(&prefix, stored).await?;
        Ok(total)
    }

    async fn upload_abort(&self, id: &str) -> Result<()> {
        let prefix = self.upload_prefix(id)?;
        let all = self.list(&prefix).await?;
        if all.is_empty() {
            // A writer that died mid-chunk after the session went leaves only a multipart
            // upload: that too is the upload's, and goes with it.
            let pending = self.pending_multiparts(&prefix).await?;
            if pending.is_empty() {
                return Err(Error::UploadUnknown);
            }
            for p in pending {
                self.mp_abort(&p.key, &p.upload_id).await;
            }
            return Ok(());
        }
        self.remove_session(&prefix, all).await
    }

    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<StoredBlob>> {
        let prefix = self.key("blobs/");
        let mut out = Vec::new();
        let mut start = after.map(|d| self.blob_key(d));
        // Keys that name no blob are skipped (list_temp names them), so a page may need more.
        while out.len() < limit {
            let page = self
                .list_from(&prefix, start.as_deref(), Some(limit - out.len()))
                .await?;
            let Some(last) = page.last() else { break };
            start = Some(last.key.clone());
            for o in page {
                if let Some(digest) = self.blob_of_key(&o.key) {
                    out.push(StoredBlob {
                        digest,
                        size: o.size,
                        modified: o.modified,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn list_uploads(&self) -> Result<Vec<(String, i64)>> {
        let prefix = self.key("uploads/");
        let mut ids: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
        let mut note = |key: &str, at: i64| {
            if let Some(id) = key
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.split_once('/'))
                .map(|(id, _)| id)
                .filter(|id| UploadPart::valid_name(id))
            {
                let t = ids.entry(id.to_owned()).or_insert(at);
                *t = (*t).max(at);
            }
        };
        for o in self.list_from(&prefix, None, None).await? {
            note(&o.key, o.modified);
        }
        for p in self.pending_multiparts(&prefix).await? {
            note(&p.key, p.initiated);
        }
        Ok(ids.into_iter().collect())
    }

    async fn list_temp(&self) -> Result<Vec<TempObject>> {
        let root = self.key("");
        let rel = |k: &str| k.get(root.len()..).unwrap_or("").to_owned();
        let mut out = Vec::new();
        // Objects that are neither a blob nor under a well-named upload.
        for o in self.list_from(&self.key("blobs/"), None, None).await? {
            if self.blob_of_key(&o.key).is_none() {
                out.push(TempObject {
                    name: rel(&o.key),
                    size: o.size,
                    modified: o.modified,
                });
            }
        }
        let uploads = self.key("uploads/");
        for o in self.list_from(&uploads, None, None).await? {
            if self.upload_of_key(&o.key).is_none() {
                out.push(TempObject {
                    name: rel(&o.key),
                    size: o.size,
                    modified: o.modified,
                });
            }
        }
        // Multipart uploads nobody finished, except an upload's own (they go with it).
        for p in self.pending_multiparts(&root).await? {
            if self.upload_of_key(&p.key).is_none() {
                out.push(TempObject {
                    name: multipart_name(&rel(&p.key), &p.upload_id),
                    size: 0,
                    modified: p.initiated,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn remove_temp(&self, name: &str) -> Result<()> {
        // Only what the listing names now: never a blob or an upload's object.
        if !self.list_temp().await?.iter().any(|t| t.name == name) {
            return Err(backend(
                "remove",
                format!("{name:?} is not a temporary object"),
            ));
        }
        match name
            .strip_prefix("multipart:")
            .and_then(|r| r.rsplit_once('#'))
        {
            Some((rel_key, upload_id)) => {
                let key = self.key(rel_key);
                let abort = Req::new(reqwest::Method::DELETE, &key).query("uploadId", upload_id);
                self.expect_ok("AbortMultipartUpload", abort)
                    .await
                    .map(drop)
            }
            None => self.delete_key(&self.key(name)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_s3_xml() {
        let xml = "<R><Contents><Key>a&amp;b</Key><Size>3</Size></Contents>\
                   <Contents><Key>c</Key><Size>4</Size></Contents>\
                   <IsTruncated>false</IsTruncated></R>";
        assert_eq!(xml_all(xml, "Key"), ["a&b", "c"]);
        assert_eq!(xml_all(xml, "Contents").len(), 2);
        assert_eq!(xml_one(xml, "IsTruncated").as_deref(), Some("false"));
        assert_eq!(xml_one(xml, "Nope"), None);
        assert_eq!(xml_escape("\"abc\"&<"), "&quot;abc&quot;&amp;&lt;");
    }

    fn chunks(parts: &[&'static [u8]]) -> ByteStream {
        let v: Vec<std::io::Result<Bytes>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures::stream::iter(v))
    }

    async fn drain(s: ByteStream) -> (Vec<u8>, bool) {
        let mut s = s;
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            match c {
                Ok(c) => out.extend_from_slice(&c),
                Err(_) => return (out, true),
            }
        }
        (out, false)
    }

    #[tokio::test]
    async fn a_window_skips_takes_and_reports_short_bodies() {
        assert_eq!(
            drain(window(chunks(&[b"0123", b"4567", b"89"]), 3, 4)).await,
            (b"3456".to_vec(), false)
        );
        assert_eq!(
            drain(window(chunks(&[b"0123", b"45"]), 0, 6)).await,
            (b"012345".to_vec(), false)
        );
        assert_eq!(
            drain(window(chunks(&[b"0123"]), 2, 5)).await,
            (b"23".to_vec(), true)
        );
        assert_eq!(
            drain(window(chunks(&[b"0123"]), 6, 1)).await,
            (Vec::new(), true)
        );
    }

    #[test]
    fn endpoints_are_checked() {
        let cfg = |endpoint: &str, path_style: bool| S3Config {
            endpoint: endpoint.into(),
            bucket: "b".into(),
            region: "r".into(),
            access_key: "k".into(),
            secret_key: "s".into(),
            path_style,
            prefix: String::new(),
        };
        let http = S3BlobStore::default_http().unwrap();
        for (endpoint, path_style) in [
            ("http://127.0.0.1:3900", true),
            ("https://s3.example.com", false),
            ("https://s3.example.com:8443/", false),
            ("http://[::1]:3900", true),
        ] {
            assert!(
                S3BlobStore::new(cfg(endpoint, path_style), http.clone()).is_ok(),
                "{endpoint}"
            );
        }
        for (endpoint, path_style) in [
            ("127.0.0.1:3900", true),
            ("ftp://h", true),
            ("http://", true),
            ("http://h/path", true),
            ("http://127.0.0.1:3900", false),
            ("http://[::1]:3900", false),
        ] {
            assert!(
                S3BlobStore::new(cfg(endpoint, path_style), http.clone()).is_err(),
                "{endpoint}"
            );
        }
    }

    #[test]
    fn the_secret_stays_out_of_debug_output() {
        let cfg = S3Config {
            endpoint: "http://127.0.0.1:3900".into(),
            bucket: "b".into(),
            region: "r".into(),
            access_key: "GKid".into(),
            secret_key: "very-secret".into(),
            path_style: true,
            prefix: String::new(),
        };
        let text = format!("{cfg:?}");
        assert!(
            text.contains("GKid") && !text.contains("very-secret"),
            "{text}"
        );
    }
}
