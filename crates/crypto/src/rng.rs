//! The OS random source as a `rand_core` 0.10 generator.
//!
//! The RustCrypto crates take `rand_core` 0.10 generators; the workspace's `getrandom` is 0.3,
//! which has no `rand_core` adapter, so this is the few lines of glue.

use rsa::rand_core::{TryCryptoRng, TryRng, UnwrapErr};

pub(crate) struct OsRng;

/// getrandom's error does not implement `core::error::Error` on this version, so wrap it.
#[derive(Debug)]
pub(crate) struct RngError;

impl std::fmt::Display for RngError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OS random source failed")
    }
}

impl std::error::Error for RngError {}

impl TryRng for OsRng {
    type Error = RngError;

    fn try_next_u32(&mut self) -> Result<u32, RngError> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, RngError> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), RngError> {
        getrandom::fill(dst).map_err(|_| RngError)
    }
}

impl TryCryptoRng for OsRng {}

/// An infallible view for APIs that demand `CryptoRng`; an OS RNG failure is unrecoverable.
pub(crate) fn rng() -> UnwrapErr<OsRng> {
    UnwrapErr(OsRng)
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], crate::Error> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| crate::Error::Rng)?;
    Ok(b)
}
