//! Progress reporting, kept free of any terminal library: the CLI draws bars, tests count.

use berth_oci::Digest;

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The registry (push) or the layout (pull) already had it.
    Existed,
    /// Pushed by cross-repository mount: no bytes sent.
    Mounted,
    /// Bytes were transferred.
    Transferred,
}

/// Receives progress of blob transfers. Calls come from concurrent tasks.
pub trait Progress: Send + Sync {
    /// A transfer of `size` bytes starts.
    fn start(&self, _digest: &Digest, _size: u64) {}
    /// `done` bytes of the blob are through (absolute, so a retried chunk may move it back).
    fn position(&self, _digest: &Digest, _done: u64) {}
    fn finish(&self, _digest: &Digest, _outcome: BlobOutcome) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
