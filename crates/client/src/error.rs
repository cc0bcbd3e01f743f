//! The one error type of the client. Every variant says what failed; [`Error::hint`] says what
//! the user can do about it, so a CLI can print both on one line.

use std::path::PathBuf;

use berth_oci::Digest;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid reference {input:?}: {reason}")]
    InvalidReference { input: String, reason: String },

    #[error("invalid {kind} {input:?}: {reason}")]
    InvalidLocation {
        /// "source" or "destination".
        kind: &'static str,
        input: String,
        reason: String,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("CA file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },

    /// The TLS connection failed (an untrusted certificate, or no TLS on the other end);
    /// `trust` names what a certificate was checked against (for certificate failures).
    #[error("{what}: TLS with {registry} failed: {reason}{}", checked_against(*kind, trust))]
    Tls {
        what: String,
        registry: String,
        reason: String,
        trust: String,
        kind: TlsFailure,
    },

    #[error("{what}: cannot reach {registry}: {reason}")]
    Network {
        what: String,
        registry: String,
        reason: String,
    },

    #[error("{what}: {registry} requires authentication{}", detail_suffix(detail))]
    Unauthorized {
        what: String,
        registry: String,
        detail: String,
    },

    #[error("{what}: access denied by {registry}{}", detail_suffix(detail))]
    Denied {
        what: String,
        registry: String,
        detail: String,
    },

    #[error("{what}: not found on {registry}{}", detail_suffix(detail))]
    NotFound {
        what: String,
        registry: String,
        detail: String,
    },

    #[error("{what}: {registry} answered {status}{}{}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(), detail_suffix(message))]
    Registry {
        what: String,
        registry: String,
        status: u16,
        code: Option<String>,
        message: String,
    },

    #[error("{what}: the registry broke the protocol: {reason}")]
    Protocol { what: String, reason: String },

    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },

    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    #[error("{}: {reason}", path.display())]
    BadImage { path: PathBuf, reason: String },

    #[error("token service {realm}: {reason}")]
    Token { realm: String, reason: String },
}

/// Why a TLS connection failed, as far as the user can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The server's certificate did not verify against the CA(s) we trust.
    Certificate,
    /// The server answered in plain HTTP: it does not speak TLS.
    NotTls,
}

impl TlsFailure {
    /// Classifies a connection error's text (with its causes, as `error_chain` gives it).
    pub fn classify(chain: &str) -> Option<TlsFailure> {
        // rustls: "invalid peer certificate: UnknownIssuer" (or NotValidForName, Expired, …);
        // "received corrupt message of type InvalidContentType" when plain HTTP answers.
        if chain.contains("InvalidContentType") {
            Some(TlsFailure::NotTls)
        } else if chain.contains("certificate") {
            Some(TlsFailure::Certificate)
        } else {
            None
        }
    }

    /// What the user can do about it.
    pub fn hint(self) -> &'static str {
        match self {
            TlsFailure::Certificate => {
                "trust the registry's CA certificate: --ca-file FILE (or BERTH_CA_FILE) for one \
                 command, or `berth login HOST:PORT --ca-file FILE` to remember it for that registry"
            }
            TlsFailure::NotTls => "the server speaks plain HTTP: use http:// in --server",
        }
    }
}

/// " (certificates checked against X)" where that is what went wrong.
pub fn checked_against(kind: TlsFailure, trust: &str) -> String {
    match kind {
        TlsFailure::Certificate => format!(" (certificates checked against {trust})"),
        TlsFailure::NotTls => String::new(),
    }
}

fn detail_suffix(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn bad_image(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
        Error::BadImage {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn protocol(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Protocol {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            Error::InvalidReference { .. } => {
                "write it as host[:port]/repository[:tag|@digest], e.g. localhost:5000/team/app:v1"
            }
            Error::InvalidLocation { .. } => {
                "use oci:DIR[:TAG] (OCI image layout) or docker-archive:FILE.tar"
            }
            Error::CaFile { .. } => {
                "pass the registry's CA certificate (PEM, e.g. the server's DATA_DIR/tls/ca.crt) with --ca-file"
            }
            Error::Tls { kind, .. } => kind.hint(),
            Error::Network { .. } => "check that the registry is running and the address is right",
            Error::Unauthorized { .. } | Error::Token { .. } => {
                "pass credentials with -u USER --password-stdin (or BERTH_USERNAME/BERTH_PASSWORD)"
            }
            // A Berth signing policy names itself in the message (`(policy signed-pulls-only)`):
            // no role helps there.
            Error::Denied { detail, .. } if detail.contains("(policy ") => {
                "the repository's signing policy refused it (`berth config policy show REPO`); the message says what is missing"
            }
            Error::Denied { .. } => "ask an owner of the repository for the role you need",
            Error::NotFound { .. } => "check the repository, tag or digest",
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => {
                "the content was corrupted or tampered with; nothing was kept, retry or alert the registry's owner"
            }
            // What a Berth server answers to plain HTTP on its HTTPS port.
            Error::Registry { message, .. } if message.contains("speaks HTTPS") => {
                "use https:// in --server"
            }
            Error::Protocol { .. } | Error::Registry { .. } => {
                "retry; if it persists, check the registry's logs"
            }
            Error::BadImage { .. } => "check that the source is a complete image",
            Error::Io { .. } => return None,
        })
    }
}
