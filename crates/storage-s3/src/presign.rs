//! Presigned blob GET URLs (SigV4 query-string signing), for answering blob downloads with a
//! redirect: the client fetches the bytes from the object store itself, with a URL that is good
//! for one object, one method and a short while. Pure: the clock is passed in.

use std::time::Duration;

use berth_oci::Digest;
use berth_storage::{Error, Result};
use hmac::{KeyInit, Mac};
use sha2::{Digest as _, Sha256};

use crate::S3Config;
use crate::sigv4::{UNSIGNED, amz_date, uri_encode};

/// S3 refuses presigned URLs valid for longer than seven days.
pub const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Signs blob GET URLs for one bucket. `Debug` leaves the secret out.
#[derive(Clone)]
pub struct Presigner {
    scheme: String,
    /// `host[:port]` as the URL and the signature carry it.
    host: String,
    /// `/bucket/` (path style) or `/` (the bucket in the host name), then the key prefix.
    path_prefix: String,
    access_key: String,
    secret_key: String,
    region: String,
}

impl std::fmt::Debug for Presigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presigner")
            .field("host", &self.host)
            .field("path_prefix", &self.path_prefix)
            .field("access_key", &self.access_key)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: this cannot fail.
    let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

impl Presigner {
    /// A presigner for the bucket of `cfg` (the same addressing as [`crate::S3BlobStore`]).
    pub fn new(cfg: &S3Config) -> Result<Self> {
        let (scheme, rest) = cfg
            .endpoint
            .split_once("://")
            .filter(|(s, _)| matches!(*s, "http" | "https"))
            .ok_or_else(|| {
                Error::Backend("s3 endpoint: must start with http:// or https://".into())
            })?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(Error::Backend(
                "s3 endpoint: must be http(s)://host[:port]".into(),
            ));
        }
        let (host, bucket_path) = if cfg.path_style {
            (authority.to_owned(), format!("/{}/", cfg.bucket))
        } else {
            (format!("{}.{authority}", cfg.bucket), "/".to_owned())
        };
        Ok(Presigner {
            scheme: scheme.to_owned(),
            host,
            path_prefix: format!("{bucket_path}{}", cfg.prefix),
            access_key: cfg.access_key.clone(),
            secret_key: cfg.secret_key.clone(),
            region: cfg.region.clone(),
        })
    }

    /// A URL that GETs blob `digest` until `expires` after `now` (unix seconds). The key is
    /// the blob store's `blobs/<algorithm>/<hex>` under the prefix.
    pub fn blob_url(&self, digest: &Digest, now: i64, expires: Duration) -> String {
        let key = format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex());
        self.object_url(&key, now, expires)
    }

    /// A presigned GET of `key` (relative to the prefix).
    pub fn object_url(&self, key: &str, now: i64, expires: Duration) -> String {
        let path = uri_encode(&format!("{}{key}", self.path_prefix), true);
        let date = amz_date(now);
        let day = date.get(..8).unwrap_or(&date).to_owned();
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let secs = expires.min(MAX_EXPIRY).as_secs().max(1).to_string();
        let credential = format!("{}/{scope}", self.access_key);
        // Already in the canonical (sorted by name) order.
        let query = [
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", credential.as_str()),
            ("X-Amz-Date", date.as_str()),
            ("X-Amz-Expires", secs.as_str()),
            ("X-Amz-SignedHeaders", "host"),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", uri_encode(v, false)))
        .collect::<Vec<_>>()
        .join("&");
        let canonical = format!(
            "GET\n{path}\n{query}\nhost:{}\n\nhost\n{UNSIGNED}",
            self.host
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let k_date = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            day.as_bytes(),
        );
        let k_region = hmac(&k_date, self.region.as_bytes());
        let k_service = hmac(&k_region, b"s3");
        let k_signing = hmac(&k_service, b"aws4_request");
        let signature = hex::encode(hmac(&k_signing, to_sign.as_bytes()));
        format!(
            "{}://{}{path}?{query}&X-Amz-Signature={signature}",
            self.scheme, self.host
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(path_style: bool) -> Presigner {
        Presigner::new(&S3Config {
            endpoint: "https://s3.amazonaws.com".into(),
            bucket: "examplebucket".into(),
            region: "us-east-1".into(),
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            path_style,
            prefix: String::new(),
        })
        .unwrap()
    }

    /// The worked example of AWS's "authenticating requests: query parameters" documentation
    /// (GET /test.txt, 24 hours from 2013-05-24).
    #[test]
    fn matches_the_documented_example() {
        let url = example(false).object_url("test.txt", 1_369_353_600, Duration::from_secs(86_400));
        assert_eq!(
            url,
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn path_style_prefix_and_bounds() {
        let mut cfg = S3Config {
            endpoint: "http://127.0.0.1:3900/".into(),
            bucket: "berth".into(),
            region: "garage".into(),
            access_key: "GK1".into(),
            secret_key: "very-secret-key".into(),
            path_style: true,
            prefix: "team a/".into(),
        };
        let p = Presigner::new(&cfg).unwrap();
        let d: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let url = p.blob_url(&d, 0, Duration::from_secs(30 * 24 * 3600));
        assert!(
            url.starts_with(&format!(
                "http://127.0.0.1:3900/berth/team%20a/blobs/sha256/{}?",
                "ab".repeat(32)
            )),
            "{url}"
        );
        assert!(url.contains("X-Amz-Expires=604800&"), "{url}");
        assert!(!url.contains("very-secret") && !format!("{p:?}").contains("very-secret"));
        cfg.endpoint = "ftp://x".into();
        assert!(Presigner::new(&cfg).is_err());
    }
}
