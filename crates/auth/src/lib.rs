//! Docker token authentication for Berth, without I/O.
//!
//! ```text
//!   scope param ──parse_scopes──▶ [ResourceActions] ──grant_scopes(Grants)──▶ granted access
//!   granted access ──Claims──TokenSigningKey::sign──▶ ES256 JWT (kid = libtrust, x5c)
//!   Bearer JWT ──jwt::verify(keys, Validation, now)──▶ Claims { access, … }
//!   request ──policy::allows(Grants, Action, Resource)──▶ bool
//!   Basic password ──password::verify_password(phc)──▶ bool
//! ```
//!
//! Pure: no I/O, no clock (callers pass `now` in Unix seconds), randomness only from the OS
//! via `getrandom`. Modules: [`scope`] (the scope grammar), [`jwt`] (token minting and
//! verification, JWKS), [`policy`] (roles, scope maps, identity kinds, the grant table),
//! [`password`] (argon2id hashes and generated secrets).

mod error;
pub mod jwt;
pub mod password;
pub mod policy;
pub mod scope;

pub use error::Error;
pub use jwt::{Claims, TokenSigningKey, TokenVerifyingKey, Validation};
pub use policy::{Action, Grants, IdentityKind, Resource, Role};
pub use scope::ResourceActions;
