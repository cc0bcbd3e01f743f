//! Notary v1 key material: key types and IDs, signature methods, root certificates and the
//! encrypted key files Notary and Docker keep in `~/.docker/trust/private/`.
//!
//! ```text
//!   metadata key object ──PublicKey::from_value──▶ PublicKey ──verify(method, msg, sig)
//!   <keyid>.key (PEM)  ──keyfile::decrypt──────▶ PrivateKey ──sign──▶ raw signature bytes
//!   PrivateKey (P-256) ──x509::root_certificate─▶ PEM cert ──▶ PublicKey (ecdsa-x509)
//! ```
//!
//! Pure: no I/O, no clock (callers pass `now`), randomness only from the OS RNG.

mod error;
pub mod keyfile;
mod keys;
mod private;
mod rng;
mod sign;
pub mod x509;

pub use error::Error;
pub use keys::{KeyType, PublicKey, key_id};
pub use private::PrivateKey;
pub use sign::{MIN_RSA_BITS, SigMethod};
