//! Per-identity bounds on what clients hold at once, and the request-body stall timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{StatusCode, header};
use berth_oci::ErrorCode;
use futures::StreamExt;

use crate::ApiError;

/// Counts something (request bodies being streamed) per identity, up to a limit.
pub(crate) struct PerIdentity {
    limit: usize,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

/// One unit held by one identity; released on drop.
pub(crate) struct Slot {
    held: Arc<Mutex<HashMap<String, usize>>>,
    name: String,
}

impl PerIdentity {
    pub(crate) fn new(limit: usize) -> Self {
        PerIdentity {
            limit,
            held: Arc::default(),
        }
    }

    /// Slots held by everyone.
    pub(crate) fn total(&self) -> usize {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.values().copied().fold(0usize, usize::saturating_add)
    }

    /// Takes a slot for `name`, or answers 429 when it already holds the limit.
    pub(crate) fn acquire(&self, name: &str) -> Result<Slot, ApiError> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(name.to_owned()).or_insert(0);
        if *n >= self.limit {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyRequests,
                format!(
                    "{} uploads are already streaming for this identity; retry when one finishes",
                    self.limit
                ),
            )
            .with_header(header::RETRY_AFTER, "5".into()));
        }
        // Below `self.limit`, so this cannot saturate.
        *n = n.saturating_add(1);
        Ok(Slot {
            held: self.held.clone(),
            name: name.to_owned(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.name);
            }
        }
    }
}

/// A request body as a stream for the storage layer, failing with `TimedOut` when nothing
/// arrives for `stall` (the registry answers that with 408).
pub(crate) fn body_stream(body: axum::body::Body, stall: Duration) -> berth_storage::ByteStream {
    let data = body.into_data_stream();
    Box::pin(futures::stream::unfold(
        Some(data),
        move |state| async move {
            let mut data = state?;
            match tokio::time::timeout(stall, data.next()).await {
                Ok(Some(Ok(b))) => Some((Ok(b), Some(data))),
                Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("nothing received for {} s", stall.as_secs()),
                    )),
                    None,
                )),
            }
        },
    ))
}
