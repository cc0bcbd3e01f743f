//! Docker Content Trust on the client side, interoperable with the docker and notary CLIs.
//!
//! ```text
//!   KeyStore ($DOCKER_CONFIG/trust/private)      TufClient (verified update, tuf/<gun>/metadata)
//!        │                                        └─ Transport: Remote (HTTP) | MemoryTransport
//!        └──────────────┬────────────────────────────────┘
//!                   Repository: sign / revoke / add_signer / remove_signer / inspect / resolve
//! ```
//!
//! The caller brings a ready `reqwest::Client` (TLS roots, crypto provider) and, once the token
//! flow has run, credentials; nothing here depends on the registry client.

mod error;
pub mod http;
pub mod keystore;
pub mod publish;
pub mod transport;
pub mod tufclient;
pub mod verify;

pub use error::{Error, Result};
pub use keystore::{
    KeyInfo, KeyStore, PassphraseCallback, PassphraseKind, PassphraseRequest, Purpose,
    default_trust_dir, parse_public_key_pem, validate_signer_name,
};
pub use publish::{Published, Repository, inspect_json, inspect_pretty};
pub use transport::{FetchError, MemoryTransport, MetaFile, Transport};
pub use tufclient::{Credentials, Remote, SkippedRole, Target, TrustData, TufClient};
