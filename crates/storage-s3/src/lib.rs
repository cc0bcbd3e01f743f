//! Berth's blob store on an S3-compatible object store (Garage in the tests, any S3 in use).
//!
//! Layout under the configured prefix:
//! - `blobs/<algorithm>/<hex>`: a blob, written only after the registry verified its digest
//!   (single PUT, or a multipart upload completed at once: never visible half-written);
//! - `uploads/<id>/.session`: marks an open upload session;
//! - `uploads/<id>/<offset, 20 digits>`: the session's bytes from that offset, one object per
//!   [`PART_SIZE`] piece of an append. Appends always end on a piece boundary, so the upload
//!   record's acknowledged offset (the truth; see `berth_storage::UploadRecord`) is always where
//!   some piece starts or the last one ends; pieces past it were never acknowledged and are
//!   deleted by the next append.
//!
//! Nothing about a session lives in this process, so any node continues any upload. Bytes are
//! streamed in and out; at most one [`PART_SIZE`] buffer per append or commit is held.

#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

pub mod sigv4;

use std::time::Duration;

use async_trait::async_trait;
use berth_oci::Digest;
use berth_storage::{BlobStore, ByteStream, Error, Result};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use sha2::Digest as _;

/// Size of the pieces an append is stored in, and of multipart parts at commit (S3's minimum
/// part is 5 MiB).
pub const PART_SIZE: usize = 8 << 20;
const SESSION_MARKER: &str = ".session";

/// Where and how to reach the bucket.
#[derive(Debug, Clone)]
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

#[derive(Clone)]
pub struct S3BlobStore {
    http: reqwest::Client,
    cfg: S3Config,
    signer: sigv4::Signer,
    /// `host[:port]` as the Host header and the signature carry it.
    host: String,
    scheme: String,
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
                .replace("&amp;", "&"),
        );
        rest = after.get(j + close.len()..).unwrap_or("");
    }
    out
}

fn xml_one(xml: &str, tag: &str) -> Option<String> {
    xml_all(xml, tag).into_iter().next()
}

/// One request to send: what the signature covers.
struct Req<'a> {
    method: reqwest::Method,
    key: &'a str,
    query: Vec<(&'a str, String)>,
    headers: Vec<(&'static str, String)>,
    body: Option<reqwest::Body>,
    payload_hash: String,
}

impl<'a> Req<'a> {
    fn new(method: reqwest::Method, key: &'a str) -> Self {
        Req {
            method,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            payload_hash: sigv4::EMPTY_SHA256.to_owned(),
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

    /// A body whose length is known (S3 needs Content-Length); not hashed into the signature.
    fn streamed(mut self, body: Bytes) -> Self {
        self.body = Some(reqwest::Body::from(body));
        self.payload_hash = sigv4::UNSIGNED.to_owned();
        self
    }

    /// A small body signed with its hash (XML requests).
    fn signed(mut self, body: Vec<u8>) -> Self {
        self.payload_hash = hex::encode(sha2::Sha256::digest(&body));
        self.body = Some(reqwest::Body::from(body));
        self
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
}

impl S3BlobStore {
    /// A store over `cfg` sending through `http` (its TLS roots, timeouts and pool are the
    /// caller's).
    pub fn new(cfg: S3Config, http: reqwest::Client) -> Result<Self> {
        let (scheme, rest) = cfg
            .endpoint
            .split_once("://")
            .ok_or_else(|| backend("endpoint", "must start with http:// or https://"))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(backend("endpoint", "must be http(s)://host[:port]"));
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
        })
    }

    /// An S3 client for tests and tools: rustls on ring with the system's roots plus none
    /// else, generous timeouts.
    pub fn default_http() -> Result<reqwest::Client> {
        reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| backend("client", e))
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.cfg.prefix)
    }

    fn blob_key(&self, d: &Digest) -> String {
        self.key(&format!("blobs/{}/{}", d.algorithm().as_str(), d.hex()))
    }

    fn upload_prefix(&self, id: &str) -> Result<String> {
        // Ids come from URLs; only what the registry generates (uuid text) may name objects.
        if id.is_empty()
            || id.len() > 64
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(Error::UploadUnknown);
        }
        Ok(self.key(&format!("uploads/{id}/")))
    }

    async fn send(&self, r: Req<'_>) -> Result<reqwest::Response> {
        let path = if self.cfg.path_style {
            format!("/{}/{}", self.cfg.bucket, r.key)
        } else {
            format!("/{}", r.key)
        };
        let canonical_path = sigv4::uri_encode(&path, true);
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
        if let Some(b) = r.body {
            rb = rb.body(b);
        }
        rb.send().await.map_err(|e| Error::Io(io(e)))
    }

    /// Sends and insists on a 2xx answer (whose body is returned as text).
    async fn expect_ok(&self, what: &str, r: Req<'_>) -> Result<String> {
        let resp = self.send(r).await?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| Error::Io(io(e)))?;
        // CompleteMultipartUpload can fail inside a 200.
        if !status.is_success() || text.contains("<Error>") {
            return Err(backend(
                what,
                format!(
                    "{status}: {}",
                    xml_one(&text, "Message").unwrap_or_else(|| text.chars().take(200).collect())
                ),
            ));
        }
        Ok(text)
    }

    async fn exists(&self, key: &str) -> Result<Option<u64>> {
        let resp = self.send(Req::new(reqwest::Method::HEAD, key)).await?;
        match resp.status().as_u16() {
            200 => Ok(Some(resp.content_length().unwrap_or(0))),
            404 => Ok(None),
            s => Err(backend("HEAD", s)),
        }
    }

    async fn delete_key(&self, key: &str) -> Result<()> {
        self.expect_ok("DELETE", Req::new(reqwest::Method::DELETE, key))
            .await
            .map(drop)
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.expect_ok("PUT", Req::new(reqwest::Method::PUT, key).streamed(data))
            .await
            .map(drop)
    }

    /// Every object under `prefix`: (key, size), in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut r = Req::new(reqwest::Method::GET, "")
                .query("list-type", "2")
                .query("prefix", prefix);
            if let Some(t) = &token {
                r = r.query("continuation-token", t.clone());
            }
            let xml = self.expect_ok("LIST", r).await?;
            let keys = xml_all(&xml, "Key");
            let sizes = xml_all(&xml, "Size");
            for (k, s) in keys.into_iter().zip(sizes) {
                out.push((k, s.parse().map_err(|e| backend("LIST size", e))?));
            }
            token = match xml_one(&xml, "IsTruncated").as_deref() {
                Some("true") => xml_one(&xml, "NextContinuationToken"),
                _ => None,
            };
            if token.is_none() {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    /// The session's pieces: (offset, size, key) in order; `None` when the session is unknown.
    async fn pieces(&self, id: &str) -> Result<Option<Vec<(u64, u64, String)>>> {
        let prefix = self.upload_prefix(id)?;
        let mut marker = false;
        let mut pieces = Vec::new();
        for (key, size) in self.list(&prefix).await? {
            let name = key.get(prefix.len()..).unwrap_or("");
            if name == SESSION_MARKER {
                marker = true;
            } else if let Ok(offset) = name.parse::<u64>() {
                pieces.push((offset, size, key));
            }
        }
        Ok(marker.then_some(pieces))
    }

    /// Where the contiguous pieces from 0 end.
    fn end_of(pieces: &[(u64, u64, String)]) -> u64 {
        let mut end = 0u64;
        for (offset, size, _) in pieces {
            if *offset != end {
                break;
            }
            end = end.saturating_add(*size);
        }
        end
    }

    /// Streams the session's pieces in order.
    fn stream_pieces(&self, pieces: Vec<(u64, u64, String)>) -> ByteStream {
        let this = self.clone();
        Box::pin(
            futures::stream::iter(pieces)
                .then(move |(_, _, key)| {
                    let this = this.clone();
                    async move { this.get_all(&key).await }
                })
                .flat_map(|r| match r {
                    Ok(s) => s,
                    Err(e) => Box::pin(futures::stream::once(async move {
                        Err(std::io::Error::other(e.to_string()))
                    })),
                }),
        )
    }

    async fn get_all(&self, key: &str) -> Result<ByteStream> {
        let resp = self.send(Req::new(reqwest::Method::GET, key)).await?;
        match resp.status().as_u16() {
            200 => Ok(Box::pin(resp.bytes_stream().map(|r| r.map_err(io)))),
            404 => Err(Error::UploadUnknown),
            s => Err(backend("GET", s)),
        }
    }

    /// Writes `data` as one object per [`PART_SIZE`] piece from `offset`. Returns the bytes
    /// written and the keys created (for a rollback).
    async fn write_pieces(
        &self,
        prefix: &str,
        offset: u64,
        expected: Option<u64>,
        mut data: ByteStream,
        written: &mut Vec<String>,
    ) -> Result<u64> {
        let mut buf = BytesMut::with_capacity(PART_SIZE);
        let mut pos = offset;
        let mut received: u64 = 0;
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
            while buf.len() >= PART_SIZE || (done && !buf.is_empty()) {
                let take = buf.len().min(PART_SIZE);
                let piece = buf.split_to(take).freeze();
                let key = format!("{prefix}{pos:020}");
                self.put(&key, piece).await?;
                written.push(key);
                pos = pos.saturating_add(take as u64);
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
        Ok(received)
    }

    /// Publishes `data` (a stream of `size` bytes) at `key` at once: one PUT when it fits in a
    /// part, else a multipart upload completed only when every part is in.
    async fn publish(&self, key: &str, size: u64, mut data: ByteStream) -> Result<()> {
        if size <= PART_SIZE as u64 {
            let mut buf = BytesMut::new();
            while let Some(c) = data.next().await {
                buf.extend_from_slice(&c.map_err(Error::Io)?);
            }
            return self.put(key, buf.freeze()).await;
        }
        let xml = self
            .expect_ok(
                "CreateMultipartUpload",
                Req::new(reqwest::Method::POST, key).query("uploads", ""),
            )
            .await?;
        let upload_id = xml_one(&xml, "UploadId")
            .ok_or_else(|| backend("CreateMultipartUpload", "no UploadId"))?;
        let result: Result<()> = async {
            let mut etags = Vec::new();
            let mut buf = BytesMut::with_capacity(PART_SIZE);
            let mut ended = false;
            while !ended {
                while buf.len() < PART_SIZE {
                    match data.next().await {
                        Some(c) => buf.extend_from_slice(&c.map_err(Error::Io)?),
                        None => {
                            ended = true;
                            break;
                        }
                    }
                }
                if buf.is_empty() {
                    break;
                }
                let take = buf.len().min(PART_SIZE);
                let part = buf.split_to(take).freeze();
                let number = (etags.len() + 1).to_string();
                let resp = self
                    .send(
                        Req::new(reqwest::Method::PUT, key)
                            .query("partNumber", number.clone())
                            .query("uploadId", upload_id.clone())
                            .streamed(part),
                    )
                    .await?;
                if !resp.status().is_success() {
                    return Err(backend("UploadPart", resp.status()));
                }
                let etag = resp
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| backend("UploadPart", "no ETag"))?
                    .to_owned();
                etags.push((number, etag));
                if ended && buf.is_empty() {
                    break;
                }
            }
            let mut body = String::from("<CompleteMultipartUpload>");
            for (n, e) in &etags {
                body.push_str(&format!(
                    "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
                    e.replace('&', "&amp;").replace('"', "&quot;")
                ));
            }
            body.push_str("</CompleteMultipartUpload>");
            self.expect_ok(
                "CompleteMultipartUpload",
                Req::new(reqwest::Method::POST, key)
                    .query("uploadId", upload_id.clone())
                    .signed(body.into_bytes()),
            )
            .await
            .map(drop)
        }
        .await;
        if result.is_err() {
            let abort = Req::new(reqwest::Method::DELETE, key).query("uploadId", upload_id.clone());
            if let Err(e) = self.expect_ok("AbortMultipartUpload", abort).await {
                tracing::warn!(error = %e, "aborting a multipart upload");
            }
        }
        result
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        self.exists(&self.blob_key(digest)).await
    }

    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream> {
        let key = self.blob_key(digest);
        if len == 0 {
            return match self.exists(&key).await? {
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
        match resp.status().as_u16() {
            200 | 206 => Ok(Box::pin(resp.bytes_stream().map(|r| r.map_err(io)))),
            404 => Err(Error::BlobUnknown),
            s => Err(backend("GET", s)),
        }
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        let key = self.blob_key(digest);
        if self.exists(&key).await?.is_none() {
            return Err(Error::BlobUnknown);
        }
        self.delete_key(&key).await
    }

    async fn upload_start(&self, id: &str) -> Result<()> {
        let prefix = self.upload_prefix(id)?;
        self.put(&format!("{prefix}{SESSION_MARKER}"), Bytes::new())
            .await
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        expected: Option<u64>,
        data: ByteStream,
    ) -> Result<u64> {
        let prefix = self.upload_prefix(id)?;
        let pieces = self.pieces(id).await?.ok_or(Error::UploadUnknown)?;
        let current = Self::end_of(&pieces);
        if offset > current {
            return Err(Error::OffsetMismatch { offset, current });
        }
        // Pieces at or past `offset` were never acknowledged (see the module comment).
        for (start, size, key) in &pieces {
            if *start >= offset {
                self.delete_key(key).await?;
            } else if start.saturating_add(*size) > offset {
                return Err(backend(
                    "append",
                    format!("offset {offset} falls inside the piece at {start}"),
                ));
            }
        }
        let mut written = Vec::new();
        match self
            .write_pieces(&prefix, offset, expected, data, &mut written)
            .await
        {
            Ok(n) => Ok(offset.saturating_add(n)),
            Err(e) => {
                // A chunk lands whole or not at all.
                for key in &written {
                    if let Err(d) = self.delete_key(key).await {
                        tracing::warn!(error = %d, key, "rolling back an upload piece");
                    }
                }
                Err(e)
            }
        }
    }

    async fn upload_len(&self, id: &str) -> Result<Option<u64>> {
        Ok(self.pieces(id).await?.map(|p| Self::end_of(&p)))
    }

    async fn upload_read(&self, id: &str) -> Result<ByteStream> {
        let pieces = self.pieces(id).await?.ok_or(Error::UploadUnknown)?;
        let end = Self::end_of(&pieces);
        let contiguous: Vec<_> = pieces.into_iter().filter(|(o, _, _)| *o < end).collect();
        Ok(self.stream_pieces(contiguous))
    }

    async fn upload_commit(&self, id: &str, digest: &Digest) -> Result<u64> {
        let pieces = self.pieces(id).await?.ok_or(Error::UploadUnknown)?;
        let size = Self::end_of(&pieces);
        let key = self.blob_key(digest);
        if self.exists(&key).await?.is_none() {
            let contiguous: Vec<_> = pieces
                .iter()
                .filter(|(o, _, _)| *o < size)
                .cloned()
                .collect();
            self.publish(&key, size, self.stream_pieces(contiguous))
                .await?;
        }
        self.upload_abort(id).await?;
        Ok(size)
    }

    async fn upload_abort(&self, id: &str) -> Result<()> {
        let prefix = self.upload_prefix(id)?;
        let all = self.list(&prefix).await?;
        if all.is_empty() {
            return Err(Error::UploadUnknown);
        }
        // The marker last: a session whose deletion is cut short is still a session.
        let marker = format!("{prefix}{SESSION_MARKER}");
        for (key, _) in all.iter().filter(|(k, _)| *k != marker) {
            self.delete_key(key).await?;
        }
        self.delete_key(&marker).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_s3_xml() {
        let xml = "<R><Key>a&amp;b</Key><Size>3</Size><Key>c</Key><Size>4</Size>\
                   <IsTruncated>false</IsTruncated></R>";
        assert_eq!(xml_all(xml, "Key"), ["a&b", "c"]);
        assert_eq!(xml_one(xml, "IsTruncated").as_deref(), Some("false"));
        assert_eq!(xml_one(xml, "Nope"), None);
    }

    #[test]
    fn contiguous_end_of_pieces() {
        let p = |o: u64, s: u64| (o, s, String::new());
        assert_eq!(S3BlobStore::end_of(&[]), 0);
        assert_eq!(S3BlobStore::end_of(&[p(0, 5), p(5, 3)]), 8);
        assert_eq!(S3BlobStore::end_of(&[p(0, 5), p(9, 3)]), 5);
    }
}
