//! Canonical JSON exactly as docker/go's `MarshalCanonical` writes it, which is what Notary v1
//! signs and hashes for key IDs.
//!
//! ```text
//!   bytes ──parse──▶ Value ──to_canonical──▶ signing input / key-ID input
//!                      └────to_go_json─────▶ Go `json.Marshal` form (envelopes)
//! ```
//!
//! The rules (docker/go `canonical/json`, not OLPC's spec and not RFC 8785):
//! - object members sorted by byte-wise key comparison, no insignificant whitespace;
//! - strings escape only `"` and `\`; every other byte is written raw (no NFC normalisation,
//!   no `\u` escapes, control characters raw);
//! - numbers are integers. Go decodes generic JSON numbers into `float64` before re-encoding, so
//!   integral floats such as `1.0` or `1e3` are accepted and written as integers, non-integral
//!   ones are refused, and integers beyond ±2^53 are refused because Go cannot carry them exactly.
//!
//! The crate does no I/O.

mod error;
mod parse;
mod value;
mod write;

pub use error::Error;
pub use parse::{MAX_DEPTH, from_slice};
pub use value::{MAX_SAFE_INTEGER, Map, Value};
pub use write::{go_escape_embedded, to_canonical, to_go_json, write_canonical};
