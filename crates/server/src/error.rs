//! The one place where errors become wire responses. Berth answers in four error formats, each
//! with exactly one renderer here:
//!
//! - OCI distribution (`/v2/…`): [`ApiError`], `{"errors":[{code,message,detail}]}`;
//! - notary (`/v2/<gun>/_trust/…`): [`NotaryError`], the same envelope as notary-server writes it
//!   (`detail` omitted when empty, `application/json; charset=utf-8`, notary's fixed messages);
//! - the admin API (`/api/v1/…`): [`AdminError`], the envelope with `detail.field` naming the
//!   request field at fault;
//! - the token endpoint (`/oauth2/token`): [`TokenError`], RFC 6749 `error`/`error_description`
//!   plus the `errors` envelope, which docker and containers/image read.
//!
//! And each crate's error type has one mapping: `registry::Error` → [`ApiError`],
//! `trust::Error` → [`NotaryError`], `storage::Error` → [`AdminError`] (the registry and trust
//! crates wrap storage errors themselves), [`AccessError`] → [`TokenError`] and, on the protocol
//! endpoints, [`auth_failure`]. Server-side failures are logged here and reach clients as a
//! generic `UNKNOWN`, except a full disk, which clients are told about.

// Client input is handled here: no panicking shortcuts and no unchecked arithmetic.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_oci::ErrorCode;
use berth_registry::Error as RegError;
use serde_json::{Value, json};

use berth_access::Error as AccessError;

/// What clients read when the registry's disk is full (the OS's words, so it can be searched).
const NO_SPACE: &str =
    "no space left on device: the registry's storage is full; nothing was stored";

/// An error on its way to the client, in OCI error JSON.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub detail: Value,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: Value::Null,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: header::HeaderName, value: String) -> Self {
        if let Ok(v) = HeaderValue::from_str(&value) {
            self.headers.push((name, v));
        }
        self
    }

    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }

    /// A server-side failure: its text goes to the log, the client gets `UNKNOWN`.
    pub fn internal(what: &str, e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{what}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unknown,
            "unknown error",
        )
    }

    /// The disk is full: 507 (clients that ignore 5xx bodies, skopeo and docker among them,
    /// still print the status text "Insufficient Storage").
    fn no_space(cause: &str) -> Self {
        tracing::error!(error = %cause, "storage full");
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::Unknown,
            NO_SPACE,
        )
    }
}

fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BlobUnknown
        | ErrorCode::BlobUploadUnknown
        | ErrorCode::ManifestUnknown
        | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Denied => StatusCode::FORBIDDEN,
        ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
        ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<berth_oci::Error> for ApiError {
    fn from(e: berth_oci::Error) -> Self {
        ApiError::new(status_for(e.code), e.code, e.message)
    }
}

impl From<RegError> for ApiError {
    fn from(e: RegError) -> Self {
        let code = e.code();
        let message = e.to_string();
        // Exhaustive on purpose: a new variant must be given its status here.
        match e {
            RegError::Invalid(_)
            | RegError::NameUnknown
            | RegError::BlobUnknown
            | RegError::UploadUnknown
            | RegError::ManifestUnknown(_)
            | RegError::DigestMismatch { .. }
            | RegError::SizeInvalid(_)
            | RegError::Body(_) => ApiError::new(status_for(code), code, message),
            RegError::ChunkOutOfOrder { current } => {
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, code, message)
                    .with_header(header::RANGE, range_value(current))
            }
            RegError::RangeNotSatisfiable { size } => {
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, code, message)
                    .with_header(header::CONTENT_RANGE, format!("bytes */{size}"))
            }
            RegError::BodyTimeout(_) => ApiError::new(StatusCode::REQUEST_TIMEOUT, code, message),
            RegError::TooManyUploads { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
                    .with_header(header::RETRY_AFTER, "60".into())
            }
            RegError::ManifestTooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
            }
            RegError::ManifestBlobUnknown(missing) => {
                let detail = json!(
                    missing
                        .iter()
                        .map(|d| json!({"digest": d.to_string()}))
                        .collect::<Vec<_>>()
                );
                ApiError::new(StatusCode::BAD_REQUEST, code, message).with_detail(detail)
            }
            RegError::NoSpace(cause) => ApiError::no_space(&cause),
            RegError::Storage(inner) => ApiError::internal("storage failure", &inner),
        }
    }
}

/// `Range` value for an upload holding `len` bytes. An empty upload reports `0-0`, as
/// distribution does; clients treat it as "start at 0" because they track their own offset.
pub fn range_value(len: u64) -> String {
    format!("0-{}", len.saturating_sub(1))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{"code": self.code.as_str(), "message": self.message, "detail": self.detail}]});
        let mut resp = (self.status, axum::Json(body)).into_response();
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}

/// An error of the trust API, rendered as notary-server does.
#[derive(Debug)]
pub struct NotaryError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: &'static str,
    /// `None` omits the member, as notary does for a nil detail.
    pub detail: Option<Value>,
}

impl NotaryError {
    pub fn not_found() -> Self {
        NotaryError {
            status: StatusCode::NOT_FOUND,
            code: "METADATA_NOT_FOUND",
            message: "You have requested metadata that does not exist.",
            detail: None,
        }
    }

    pub fn invalid_gun(gun: &str) -> Self {
        NotaryError {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_GUN",
            message: "The server does not support actions on images of this name.",
            detail: Some(Value::String(format!(
                "{gun} is not a repository of this registry (expected <this registry's host[:port]>/<repository>)"
            ))),
        }
    }

    /// A publish body that is not a usable multipart upload; 413 when it is only too large.
    pub fn malformed_upload(status: StatusCode, detail: String) -> Self {
        NotaryError {
            status,
            code: "MALFORMED_UPLOAD",
            message: "The body of your request is malformed.",
            detail: Some(Value::String(detail)),
        }
    }
}

impl From<berth_trust::Error> for NotaryError {
    fn from(e: berth_trust::Error) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() || e.code() == "NO_SPACE" {
            tracing::error!(error = %e, "trust service failure");
        }
        NotaryError {
            status,
            code: e.code(),
            message: e.message(),
            detail: e.detail(),
        }
    }
}

impl IntoResponse for NotaryError {
    fn into_response(self) -> Response {
        let e = error_object(self.code, self.message, self.detail);
        let body = json!({"errors": [e]}).to_string();
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

/// An error of the admin API. `field` names the request field (JSON member or query parameter)
/// that was refused, so tools can point at it.
#[derive(Debug)]
pub struct AdminError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl AdminError {
    /// 400 for a refused request field; the message starts with the field's name.
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        AdminError {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_REQUEST",
            message: format!("{field}: {why}"),
            field: Some(field.to_owned()),
        }
    }

    /// 400 for a body that is not the expected JSON at all.
    pub fn bad_body(why: impl std::fmt::Display) -> Self {
        AdminError {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_REQUEST",
            message: format!("invalid JSON body: {why}"),
            field: None,
        }
    }

    /// 403: the caller may not do this (the message says who and why).
    pub fn denied(why: impl Into<String>) -> Self {
        AdminError {
            status: StatusCode::FORBIDDEN,
            code: "DENIED",
            message: why.into(),
            field: None,
        }
    }

    /// 403 because of what a request field holds (a wrong current password).
    pub fn denied_field(field: &str, why: impl Into<String>) -> Self {
        AdminError {
            field: Some(field.to_owned()),
            ..Self::denied(why)
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        AdminError {
            status: StatusCode::NOT_FOUND,
            code: "NOT_FOUND",
            message: what.into(),
            field: None,
        }
    }

    pub fn conflict(what: impl Into<String>) -> Self {
        AdminError {
            status: StatusCode::CONFLICT,
            code: "CONFLICT",
            message: what.into(),
            field: None,
        }
    }

    pub fn too_large(limit: usize) -> Self {
        AdminError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "SIZE_INVALID",
            message: format!("body larger than {limit} bytes"),
            field: None,
        }
    }

    /// A server-side failure: its text goes to the log, the client gets `UNKNOWN`.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "admin API");
        AdminError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "UNKNOWN",
            message: "unknown error".into(),
            field: None,
        }
    }

    fn no_space(cause: &str) -> Self {
        tracing::error!(error = %cause, "storage full");
        AdminError {
            status: StatusCode::INSUFFICIENT_STORAGE,
            code: "NO_SPACE",
            message: NO_SPACE.into(),
            field: None,
        }
    }
}

impl From<berth_storage::Error> for AdminError {
    fn from(e: berth_storage::Error) -> Self {
        use berth_storage::Error as S;
        match e {
            S::Conflict(what) => AdminError::conflict(format!("{what} already exists")),
            S::NoSpace(cause) => AdminError::no_space(&cause),
            // The admin API never streams blobs or TUF files: these are store faults here.
            other @ (S::UploadUnknown
            | S::BlobUnknown
            | S::OffsetMismatch { .. }
            | S::SizeMismatch { .. }
            | S::Body(_)
            | S::MissingReferences(_)
            | S::TufVersion { .. }
            | S::Io(_)
            | S::Backend(_)) => AdminError::internal(other),
        }
    }
}

impl From<berth_trust::Error> for AdminError {
    fn from(e: berth_trust::Error) -> Self {
        match e {
            berth_trust::Error::Storage(s) | berth_trust::Error::Updating(s) => s.into(),
            other => AdminError::internal(other),
        }
    }
}

impl From<AccessError> for AdminError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::WeakPassword(why) => AdminError::invalid("password", why),
            other => AdminError::internal(other),
        }
    }
}

impl From<berth_auth::Error> for AdminError {
    fn from(e: berth_auth::Error) -> Self {
        AdminError::internal(e)
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let e = error_object(
            self.code,
            &self.message,
            self.field.map(|f| json!({"field": f})),
        );
        (self.status, axum::Json(json!({"errors": [e]}))).into_response()
    }
}

/// An error of `/oauth2/token`: RFC 6749's `error` and `error_description`, plus the `errors`
/// envelope that docker's and containers/image's token clients print.
#[derive(Debug)]
pub struct TokenError {
    pub status: StatusCode,
    /// RFC 6749 §5.2 code (`invalid_request`, `invalid_grant`, …).
    pub oauth: &'static str,
    /// The docker errcode for the `errors` envelope.
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl TokenError {
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::bad("invalid_request", "INVALID_REQUEST", message)
    }

    pub fn invalid_scope(message: impl Into<String>) -> Self {
        Self::bad("invalid_scope", "INVALID_SCOPE", message)
    }

    pub fn unsupported_grant_type(message: impl Into<String>) -> Self {
        Self::bad("unsupported_grant_type", "UNSUPPORTED_GRANT_TYPE", message)
    }

    pub fn too_large(limit: usize) -> Self {
        TokenError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            oauth: "invalid_request",
            code: "SIZE_INVALID",
            message: format!("form larger than {limit} bytes"),
            retry_after: None,
        }
    }

    fn bad(oauth: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        TokenError {
            status: StatusCode::BAD_REQUEST,
            oauth,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<AccessError> for TokenError {
    fn from(e: AccessError) -> Self {
        let message = e.to_string();
        match e {
            // 401, not RFC 6749's 400 for a bad grant: docker and containers/image report
            // "wrong credentials" only for a 401 from the token endpoint.
            AccessError::BadCredentials | AccessError::BadToken(_) => TokenError {
                status: StatusCode::UNAUTHORIZED,
                oauth: "invalid_grant",
                code: "UNAUTHORIZED",
                message,
                retry_after: None,
            },
            AccessError::Throttled(secs) => TokenError {
                status: StatusCode::TOO_MANY_REQUESTS,
                oauth: "slow_down",
                code: "TOOMANYREQUESTS",
                message,
                retry_after: Some(secs),
            },
            AccessError::WeakPassword(_) => TokenError::invalid_request(message),
            AccessError::Internal(m) => {
                tracing::error!(error = %m, "token service");
                TokenError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    oauth: "server_error",
                    code: "UNKNOWN",
                    message: "unknown error".into(),
                    retry_after: None,
                }
            }
        }
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": self.oauth,
            "error_description": self.message,
            "errors": [{"code": self.code, "message": self.message}],
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

/// `{code, message[, detail]}`: one entry of the `errors` envelope, `detail` left out when
/// there is none (notary and the admin API; OCI always sends it).
fn error_object(code: &str, message: &str, detail: Option<Value>) -> Value {
    let mut e = serde_json::Map::new();
    e.insert("code".into(), code.into());
    e.insert("message".into(), message.into());
    if let Some(d) = detail {
        e.insert("detail".into(), d);
    }
    Value::Object(e)
}

/// Which error format a path speaks (for failures found before a handler runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Oci,
    Notary,
    Admin,
}

impl Wire {
    pub fn of_path(path: &str) -> Wire {
        if path.starts_with("/api/") {
            Wire::Admin
        } else if path.contains("/_trust/") {
            Wire::Notary
        } else {
            Wire::Oci
        }
    }
}

/// A refusal of the authorization layer (401 challenge body, 403, 429, 500) in the format of
/// the endpoint asked. The codes are docker's errcodes, which all three formats share.
pub fn auth_failure(
    wire: Wire,
    status: StatusCode,
    code: ErrorCode,
    message: String,
    detail: Value,
) -> Response {
    match wire {
        Wire::Oci => ApiError::new(status, code, message)
            .with_detail(detail)
            .into_response(),
        Wire::Notary => {
            let e = error_object(
                code.as_str(),
                &message,
                Some(detail).filter(|d| !d.is_null()),
            );
            (
                status,
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                json!({"errors": [e]}).to_string(),
            )
                .into_response()
        }
        Wire::Admin => {
            let e = error_object(
                code.as_str(),
                &message,
                Some(detail).filter(|d| !d.is_null()),
            );
            (status, axum::Json(json!({"errors": [e]}))).into_response()
        }
    }
}

/// [`AccessError`] on a protocol endpoint, other than the 401 challenge (built by the caller,
/// which knows the realm and scope): 429 with `Retry-After`, or 500.
pub fn auth_error(wire: Wire, e: AccessError) -> Option<Response> {
    match e {
        AccessError::Throttled(secs) => {
            let mut r = auth_failure(
                wire,
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyRequests,
                e.to_string(),
                Value::Null,
            );
            r.headers_mut().insert(header::RETRY_AFTER, secs.into());
            Some(r)
        }
        // A password change is no protocol request: seeing one here is a bug.
        AccessError::Internal(m) | AccessError::WeakPassword(m) => {
            tracing::error!(error = %m, "authentication backend");
            Some(auth_failure(
                wire,
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Unknown,
                "unknown error".into(),
                Value::Null,
            ))
        }
        AccessError::BadCredentials | AccessError::BadToken(_) => None,
    }
}

/// The answer to a request whose handler panicked (a bug): 500 `UNKNOWN` in the envelope all
/// of Berth's formats share, never tower's plain-text body, with the panic in the log.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = %what, "request handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({"errors": [{"code": "UNKNOWN", "message": "unknown error"}]})),
    )
        .into_response()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    //! Walks every variant of every error type that reaches a client (registry, trust, storage
    //! through each of them, access) and checks status, code and the wire format. The `*_kind`
    //! functions are exhaustive matches: a new variant does not compile until it is listed
    //! here with its expected answer.

    use std::collections::BTreeSet;

    use berth_storage::Error as S;
    use berth_trust::Error as T;

    use super::*;

    /// Planted in every internal error text; it must never reach a client.
    const SECRET: &str = "/var/lib/secret-path";

    async fn parts(resp: Response) -> (u16, String, Value, axum::http::HeaderMap) {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        let text = String::from_utf8(bytes.to_vec()).expect("utf-8 body");
        assert!(!text.contains(SECRET), "internal text leaked: {text}");
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {text}"));
        (status, ct, body, headers)
    }

    /// The envelope all formats share: exactly one error with a code and a message.
    fn the_error(body: &Value) -> &Value {
        let errors = body["errors"].as_array().expect("errors array");
        assert_eq!(errors.len(), 1, "{body}");
        let e = &errors[0];
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        e
    }

    fn digest() -> berth_oci::Digest {
        format!("sha256:{}", "ab".repeat(32)).parse().unwrap()
    }

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, SECRET)
    }

    fn storage_samples() -> Vec<S> {
        vec![
            S::UploadUnknown,
            S::BlobUnknown,
            S::OffsetMismatch {
                offset: 5,
                current: 3,
            },
            S::SizeMismatch {
                expected: 5,
                received: 3,
            },
            // Client-side and client-named: these texts may be shown.
            S::Body(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            )),
            S::Body(std::io::Error::new(std::io::ErrorKind::TimedOut, "stalled")),
            S::MissingReferences(vec![digest()]),
            S::TufVersion {
                role: "root".into(),
                stored: 2,
                new: 1,
            },
            S::Conflict("alice".into()),
            S::NoSpace(SECRET.into()),
            // Built as the stores build them: an ENOSPC from the OS becomes NoSpace.
            S::from(io(std::io::ErrorKind::StorageFull)),
            S::from(io(std::io::ErrorKind::PermissionDenied)),
            S::Backend(SECRET.into()),
        ]
    }

    fn storage_kind(e: &S) -> usize {
        match e {
            S::UploadUnknown => 0,
            S::BlobUnknown => 1,
            S::OffsetMismatch { .. } => 2,
            S::SizeMismatch { .. } => 3,
            S::Body(_) => 4,
            S::MissingReferences(_) => 5,
            S::TufVersion { .. } => 6,
            S::Conflict(_) => 7,
            S::NoSpace(_) => 8,
            S::Io(_) => 9,
            S::Backend(_) => 10,
        }
    }

    const STORAGE_KINDS: usize = 11;

    fn covers(kinds: impl Iterator<Item = usize>, n: usize, what: &str) {
        let seen: BTreeSet<usize> = kinds.collect();
        assert_eq!(seen, (0..n).collect(), "{what}: not every variant sampled");
    }

    fn reg_kind(e: &RegError) -> usize {
        match e {
            RegError::Invalid(_) => 0,
            RegError::NameUnknown => 1,
            RegError::BlobUnknown => 2,
            RegError::UploadUnknown => 3,
            RegError::ManifestUnknown(_) => 4,
            RegError::ChunkOutOfOrder { .. } => 5,
            RegError::RangeNotSatisfiable { .. } => 6,
            RegError::DigestMismatch { .. } => 7,
            RegError::SizeInvalid(_) => 8,
            RegError::ManifestBlobUnknown(_) => 9,
            RegError::ManifestTooLarge { .. } => 10,
            RegError::Body(_) => 11,
            RegError::NoSpace(_) => 12,
            RegError::Storage(_) => 13,
            RegError::BodyTimeout(_) => 14,
            RegError::TooManyUploads { .. } => 15,
        }
    }

    /// (status, OCI code, extra header that must be present)
    fn reg_expected(e: &RegError) -> (u16, &'static str, Option<&'static str>) {
        match e {
            RegError::Invalid(inner) => match inner.code {
                ErrorCode::NameInvalid => (400, "NAME_INVALID", None),
                other => panic!("add the sample's expectation for {other}"),
            },
            RegError::NameUnknown => (404, "NAME_UNKNOWN", None),
            RegError::BlobUnknown => (404, "BLOB_UNKNOWN", None),
            RegError::UploadUnknown => (404, "BLOB_UPLOAD_UNKNOWN", None),
            RegError::ManifestUnknown(_) => (404, "MANIFEST_UNKNOWN", None),
            RegError::ChunkOutOfOrder { .. } => (416, "BLOB_UPLOAD_INVALID", Some("range")),
            RegError::RangeNotSatisfiable { .. } => (416, "RANGE_INVALID", Some("content-range")),
            RegError::DigestMismatch { .. } => (400, "DIGEST_INVALID", None),
            RegError::SizeInvalid(_) => (400, "SIZE_INVALID", None),
            RegError::ManifestBlobUnknown(_) => (400, "MANIFEST_BLOB_UNKNOWN", None),
            RegError::ManifestTooLarge { .. } => (413, "SIZE_INVALID", None),
            RegError::Body(_) => (400, "BLOB_UPLOAD_INVALID", None),
            RegError::BodyTimeout(_) => (408, "BLOB_UPLOAD_INVALID", None),
            RegError::TooManyUploads { .. } => (429, "TOOMANYREQUESTS", Some("retry-after")),
            RegError::NoSpace(_) => (507, "UNKNOWN", None),
            RegError::Storage(_) => (500, "UNKNOWN", None),
        }
    }

    async fn check_oci(e: RegError, what: &str) {
        let (status, code, header) = reg_expected(&e);
        let no_space = status == 507;
        let (got, ct, body, headers) = parts(ApiError::from(e).into_response()).await;
        assert_eq!(got, status, "{what}: {body}");
        assert!(ct.starts_with("application/json"), "{what}: {ct}");
        let err = the_error(&body);
        assert_eq!(err["code"], code, "{what}: {body}");
        // OCI always carries the member (null when there is nothing to say).
        assert!(err.get("detail").is_some(), "{what}: {body}");
        if let Some(h) = header {
            assert!(headers.contains_key(h), "{what}: no {h} header");
        }
        if no_space {
            assert!(
                err["message"]
                    .as_str()
                    .unwrap()
                    .contains("no space left on device"),
                "{what}: {body}"
            );
        }
    }

    #[tokio::test]
    async fn every_registry_error_renders_as_oci_error_json() {
        let samples = vec![
            RegError::invalid(ErrorCode::NameInvalid, "bad name"),
            RegError::NameUnknown,
            RegError::BlobUnknown,
            RegError::UploadUnknown,
            RegError::ManifestUnknown("v1".into()),
            RegError::ChunkOutOfOrder { current: 10 },
            RegError::RangeNotSatisfiable { size: 10 },
            RegError::DigestMismatch { computed: digest() },
            RegError::SizeInvalid("size".into()),
            RegError::ManifestBlobUnknown(vec![digest()]),
            RegError::ManifestTooLarge { limit: 4 },
            RegError::Body("client went away".into()),
            RegError::BodyTimeout("stalled".into()),
            RegError::TooManyUploads { limit: 64 },
            RegError::NoSpace(SECRET.into()),
            RegError::Storage(S::Backend(SECRET.into())),
        ];
        covers(samples.iter().map(reg_kind), 16, "registry::Error");
        for e in samples {
            let what = format!("{e:?}");
            check_oci(e, &what).await;
        }
        // Every storage failure, as the registry sees it.
        let storage = storage_samples();
        covers(
            storage.iter().map(storage_kind),
            STORAGE_KINDS,
            "storage::Error",
        );
        for s in storage {
            let what = format!("registry <- {s:?}");
            check_oci(RegError::from(s), &what).await;
        }
    }

    fn trust_kind(e: &T) -> usize {
        match e {
            T::Disabled => 0,
            T::NotFound => 1,
            T::Validation(_) => 2,
            T::Version { .. } => 3,
            T::NoFilename => 4,
            T::InvalidRole(_) => 5,
            T::MalformedJson(_) => 6,
            T::MalformedUpload(_) => 7,
            T::InvalidParameters(_) => 8,
            T::Updating(_) => 9,
            T::Storage(_) => 10,
            T::VaultPassphrase => 11,
            T::Unseal(_) => 12,
            T::Crypto(_) => 13,
            T::Corrupt { .. } => 14,
        }
    }

    /// (status, notary code, whether a `detail` member is sent)
    fn trust_expected(e: &T) -> (u16, &'static str, bool) {
        match e {
            T::Storage(s) | T::Updating(s) if s.is_no_space() => (400, "NO_SPACE", true),
            T::Disabled => (400, "TRUST_DISABLED", true),
            T::NotFound => (404, "METADATA_NOT_FOUND", false),
            T::Validation(_) => (400, "INVALID_UPDATE", true),
            T::Version { .. } => (400, "VERSION", true),
            T::NoFilename => (400, "NO_FILENAME", false),
            T::InvalidRole(_) => (400, "INVALID_ROLE", true),
            T::MalformedJson(_) => (400, "MALFORMED_JSON", false),
            T::MalformedUpload(_) => (400, "MALFORMED_UPLOAD", false),
            T::InvalidParameters(_) => (400, "INVALID_PARAMETERS", true),
            T::Updating(_) => (500, "UPDATING", false),
            T::Storage(_)
            | T::VaultPassphrase
            | T::Unseal(_)
            | T::Crypto(_)
            | T::Corrupt { .. } => (500, "UNKNOWN", false),
        }
    }

    #[tokio::test]
    async fn every_trust_error_renders_as_notary_does() {
        let mut samples = vec![
            T::Disabled,
            T::NotFound,
            T::Validation(berth_tuf::Error::Validation("no root".into())),
            T::Version {
                role: "root".into(),
                stored: 2,
                new: 1,
            },
            T::NoFilename,
            T::InvalidRole("bogus".into()),
            T::MalformedJson("root".into()),
            T::MalformedUpload("x".into()),
            T::InvalidParameters(None),
            T::VaultPassphrase,
            T::Unseal(SECRET.into()),
            T::Crypto(SECRET.into()),
            T::Corrupt {
                gun: "g".into(),
                msg: SECRET.into(),
            },
        ];
        // Every storage failure, both where the trust service wraps them.
        for s in storage_samples() {
            samples.push(T::Storage(s));
        }
        for s in storage_samples() {
            samples.push(T::Updating(s));
        }
        covers(samples.iter().map(trust_kind), 15, "trust::Error");
        for e in samples {
            let what = format!("{e:?}");
            let (status, code, has_detail) = trust_expected(&e);
            let (got, ct, body, _) = parts(NotaryError::from(e).into_response()).await;
            assert_eq!(got, status, "{what}: {body}");
            assert_eq!(ct, "application/json; charset=utf-8", "{what}");
            let err = the_error(&body);
            assert_eq!(err["code"], code, "{what}: {body}");
            assert_eq!(err.get("detail").is_some(), has_detail, "{what}: {body}");
            if code == "NO_SPACE" {
                // The shape notary's Go client turns into a message for the user.
                assert_eq!(err["detail"]["Name"], "ErrValidation", "{body}");
                let msg = err["detail"]["Error"]["Msg"].as_str().unwrap();
                assert!(msg.contains("no space left"), "{body}");
            }
        }
    }

    #[tokio::test]
    async fn every_storage_error_renders_in_the_admin_format() {
        let samples = storage_samples();
        covers(
            samples.iter().map(storage_kind),
            STORAGE_KINDS,
            "storage::Error",
        );
        for s in samples {
            let what = format!("{s:?}");
            let (status, code) = match &s {
                S::Conflict(_) => (409, "CONFLICT"),
                S::NoSpace(_) => (507, "NO_SPACE"),
                S::UploadUnknown
                | S::BlobUnknown
                | S::OffsetMismatch { .. }
                | S::SizeMismatch { .. }
                | S::Body(_)
                | S::MissingReferences(_)
                | S::TufVersion { .. }
                | S::Io(_)
                | S::Backend(_) => (500, "UNKNOWN"),
            };
            // Straight from an identity store, and wrapped by the trust service.
            for resp in [
                AdminError::from(s).into_response(),
                AdminError::from(T::Storage(match status {
                    409 => S::Conflict("x".into()),
                    507 => S::NoSpace(SECRET.into()),
                    _ => S::Backend(SECRET.into()),
                }))
                .into_response(),
            ] {
                let (got, ct, body, _) = parts(resp).await;
                assert_eq!(got, status, "{what}: {body}");
                assert!(ct.starts_with("application/json"), "{what}: {ct}");
                assert_eq!(the_error(&body)["code"], code, "{what}: {body}");
            }
        }
        let (got, _, body, _) =
            parts(AdminError::invalid("expiresInDays", "too big").into_response()).await;
        assert_eq!(got, 400);
        let err = the_error(&body);
        assert_eq!(err["code"], "INVALID_REQUEST");
        assert_eq!(err["detail"]["field"], "expiresInDays");
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .starts_with("expiresInDays: ")
        );
    }

    fn auth_samples() -> Vec<AccessError> {
        vec![
            AccessError::BadCredentials,
            AccessError::Throttled(7),
            AccessError::BadToken("expired".into()),
            AccessError::Internal(SECRET.into()),
            AccessError::WeakPassword("too short".into()),
        ]
    }

    fn auth_kind(e: &AccessError) -> usize {
        match e {
            AccessError::BadCredentials => 0,
            AccessError::Throttled(_) => 1,
            AccessError::BadToken(_) => 2,
            AccessError::Internal(_) => 3,
            AccessError::WeakPassword(_) => 4,
        }
    }

    #[tokio::test]
    async fn every_access_error_renders_for_the_token_endpoint() {
        let samples = auth_samples();
        covers(samples.iter().map(auth_kind), 5, "AccessError");
        for e in samples {
            let what = format!("{e:?}");
            let (status, oauth, code) = match &e {
                AccessError::BadCredentials | AccessError::BadToken(_) => {
                    (401, "invalid_grant", "UNAUTHORIZED")
                }
                AccessError::Throttled(_) => (429, "slow_down", "TOOMANYREQUESTS"),
                AccessError::Internal(_) => (500, "server_error", "UNKNOWN"),
                AccessError::WeakPassword(_) => (400, "invalid_request", "INVALID_REQUEST"),
            };
            let (got, ct, body, headers) = parts(TokenError::from(e).into_response()).await;
            assert_eq!(got, status, "{what}: {body}");
            assert!(ct.starts_with("application/json"), "{what}: {ct}");
            assert_eq!(body["error"], oauth, "{what}: {body}");
            assert!(body["error_description"].is_string(), "{what}: {body}");
            assert_eq!(the_error(&body)["code"], code, "{what}: {body}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{what}");
            assert_eq!(
                headers.get(header::RETRY_AFTER).is_some(),
                status == 429,
                "{what}"
            );
        }
    }

    #[tokio::test]
    async fn every_access_error_renders_in_each_protocol_format() {
        for wire in [Wire::Oci, Wire::Notary, Wire::Admin] {
            for e in auth_samples() {
                let what = format!("{wire:?} {e:?}");
                let expected = match &e {
                    // The caller answers these with its challenge.
                    AccessError::BadCredentials | AccessError::BadToken(_) => None,
                    AccessError::Throttled(_) => Some((429, "TOOMANYREQUESTS")),
                    AccessError::Internal(_) | AccessError::WeakPassword(_) => {
                        Some((500, "UNKNOWN"))
                    }
                };
                let resp = auth_error(wire, e);
                assert_eq!(resp.is_some(), expected.is_some(), "{what}");
                let (Some(resp), Some((status, code))) = (resp, expected) else {
                    continue;
                };
                let (got, ct, body, headers) = parts(resp).await;
                assert_eq!(got, status, "{what}: {body}");
                if wire == Wire::Notary {
                    assert_eq!(ct, "application/json; charset=utf-8", "{what}");
                    assert!(the_error(&body).get("detail").is_none(), "{what}: {body}");
                } else {
                    assert!(ct.starts_with("application/json"), "{what}: {ct}");
                }
                assert_eq!(the_error(&body)["code"], code, "{what}: {body}");
                assert_eq!(headers.get(header::RETRY_AFTER).is_some(), status == 429);
            }
        }
        assert_eq!(Wire::of_path("/api/v1/users"), Wire::Admin);
        assert_eq!(
            Wire::of_path("/v2/localhost:5000/a/_trust/tuf/root.json"),
            Wire::Notary
        );
        assert_eq!(Wire::of_path("/v2/_trust/changefeed"), Wire::Notary);
        assert_eq!(Wire::of_path("/v2/a/manifests/v1"), Wire::Oci);
    }

    #[tokio::test]
    async fn a_panic_is_a_json_500() {
        for payload in [
            Box::new(format!("index out of bounds {SECRET}")) as Box<dyn std::any::Any + Send>,
            Box::new("static message"),
            Box::new(7u8),
        ] {
            let (status, ct, body, _) = parts(panic_response(payload)).await;
            assert_eq!(status, 500);
            assert!(ct.starts_with("application/json"), "{ct}");
            assert_eq!(the_error(&body)["code"], "UNKNOWN", "{body}");
        }
    }
}
