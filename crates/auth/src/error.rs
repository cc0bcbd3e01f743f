use thiserror::Error;

/// Everything that can go wrong in scope parsing, token minting/verification, policy input
/// decoding and password hashing.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A scope string that is not `type:name:actions`.
    #[error("invalid scope {scope:?}: {reason}")]
    InvalidScope { scope: String, reason: &'static str },
    /// A token that is not a well-formed compact JWS with JSON header and claims.
    #[error("malformed token: {0}")]
    MalformedToken(&'static str),
    /// The token's `alg` is anything but ES256 (`none` and HS256 included).
    #[error("token algorithm {0:?} is not accepted (only ES256)")]
    UnsupportedAlgorithm(String),
    /// The token's `kid` names none of the trusted keys.
    #[error("token signed by an unknown key {0:?}")]
    UnknownKey(String),
    /// The signature does not verify with the key its `kid` names.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` lies in the future (beyond the leeway).
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token issuer {0:?} is not trusted")]
    WrongIssuer(String),
    #[error("token is not meant for audience {0:?}")]
    WrongAudience(String),
    /// A required claim (`jti`, `exp`, …) is absent or empty.
    #[error("token lacks the {0} claim")]
    MissingClaim(&'static str),
    /// Key material that cannot be decoded or encoded.
    #[error("key: {0}")]
    Key(String),
    /// A certificate that cannot be built or parsed.
    #[error("certificate: {0}")]
    Certificate(String),
    /// Signing failed inside the crypto library.
    #[error("signing failed")]
    Signing,
    /// A role name that is not one of Berth's roles.
    #[error(
        "unknown role {0:?} (expected AcrPull, AcrPush, AcrDelete, AcrImageSigner, Owner or MetricsReader)"
    )]
    UnknownRole(String),
    /// A scope-map action that is not one of Berth's.
    #[error(
        "unknown scope-map action {0:?} (expected content/read|write|delete, metadata/read|write, trust/read|write)"
    )]
    UnknownScopeMapAction(String),
    /// An identity kind that is not `user`, `service-principal`, `admin`, `token` or `anonymous`.
    #[error("unknown identity kind {0:?}")]
    UnknownIdentityKind(String),
    /// A repository pattern that is neither a name, `prefix/*` nor `*`.
    #[error("invalid repository pattern {pattern:?}: {reason}")]
    InvalidPattern {
        pattern: String,
        reason: &'static str,
    },
    /// Scope-map rules that are not the stored JSON shape.
    #[error("invalid scope map: {0}")]
    InvalidScopeMap(String),
    /// A stored password hash that is not a PHC string argon2 understands.
    #[error("password hash: {0}")]
    PasswordHash(String),
    /// The operating system's random source failed.
    #[error("random number generator failed")]
    Rng,
}
