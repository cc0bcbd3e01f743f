//! The one place where domain errors become wire responses (OCI error JSON).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_oci::ErrorCode;
use berth_registry::Error as RegError;
use serde_json::{Value, json};

/// An error on its way to the client.
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
        match e {
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
            RegError::Storage(inner) => {
                // Details stay in the log; clients get a generic message.
                tracing::error!(error = %inner, "storage failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Unsupported,
                    "internal storage error",
                )
            }
            _ => ApiError::new(status_for(code), code, message),
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
