use serde_json::{Value, json};

/// Why a trust operation failed. Every variant maps to one Notary error code (plus
/// [`Error::Disabled`], Berth's own), so the server renders `{"errors":[{code,message,detail}]}`
/// from [`Error::code`], [`Error::status`], [`Error::message`] and [`Error::detail`] alone.
/// Not `#[non_exhaustive]`: the server's test walks every variant with an exhaustive match.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Content trust is switched off registry-wide; writes and key requests are refused.
    #[error("{}", DISABLED_MSG)]
    Disabled,
    /// The metadata, GUN or key does not exist (or trust is disabled, for reads).
    #[error("metadata not found")]
    NotFound,
    /// The update failed validation. Notary's serializable kinds carry a `detail`.
    #[error("invalid update: {0}")]
    Validation(berth_tuf::Error),
    /// Some role is not newer than the stored version.
    #[error("a newer version of {role} is already stored ({stored} >= {new})")]
    Version { role: String, stored: i64, new: i64 },
    #[error("a multipart part has no filename")]
    NoFilename,
    #[error("invalid role {0:?}")]
    InvalidRole(String),
    #[error("part {0:?} is not valid metadata JSON")]
    MalformedJson(String),
    /// The request body is not usable as an update (for the HTTP layer: not multipart, ...).
    #[error("malformed upload: {0}")]
    MalformedUpload(String),
    /// Changefeed query parameters; the detail is Notary's (`None` renders as `{}`).
    #[error("invalid parameters: {}", .0.as_deref().unwrap_or("change_id"))]
    InvalidParameters(Option<String>),
    /// The store failed while writing an update.
    #[error("storing the update: {0}")]
    Updating(berth_storage::Error),
    /// The store failed elsewhere.
    #[error("trust storage: {0}")]
    Storage(berth_storage::Error),
    /// The vault passphrase does not open the sealed keys.
    #[error(
        "the trust key vault passphrase does not match the one the server keys were sealed with"
    )]
    VaultPassphrase,
    /// A sealed key is damaged or bound to another GUN/role/key.
    #[error("server key {0} cannot be unsealed")]
    Unseal(String),
    /// Key derivation, sealing, key generation or signing failed.
    #[error("trust crypto: {0}")]
    Crypto(String),
    /// Stored trust data that no longer parses (the store or a previous version is at fault).
    #[error("stored trust data of {gun}: {msg}")]
    Corrupt { gun: String, msg: String },
}

/// The message (and detail) of [`Error::Disabled`]. The Go client shows the `detail` of a 400
/// (`An error occurred during validation: ...`), so this is where the hint must be.
pub const DISABLED_MSG: &str = "content trust is disabled on this registry; enable it with `berth config content-trust update --status enabled`";

/// The detail message of a write refused because the registry's storage is full.
pub const NO_SPACE_MSG: &str = "no space left on the registry's storage device; nothing was stored (the registry's operator must free space)";

impl Error {
    /// Notary's error code (Berth adds `TRUST_DISABLED`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Storage(e) | Error::Updating(e) if e.is_no_space() => "NO_SPACE",
            Error::Disabled => "TRUST_DISABLED",
            Error::NotFound => "METADATA_NOT_FOUND",
            Error::Validation(_) => "INVALID_UPDATE",
            Error::Version { .. } => "VERSION",
            Error::NoFilename => "NO_FILENAME",
            Error::InvalidRole(_) => "INVALID_ROLE",
            Error::MalformedJson(_) => "MALFORMED_JSON",
            Error::MalformedUpload(_) => "MALFORMED_UPLOAD",
            Error::InvalidParameters(_) => "INVALID_PARAMETERS",
            Error::Updating(_) => "UPDATING",
            Error::Storage(_)
            | Error::VaultPassphrase
            | Error::Unseal(_)
            | Error::Crypto(_)
            | Error::Corrupt { .. } => "UNKNOWN",
        }
    }

    /// The HTTP status Notary answers with for [`Error::code`]. A full disk is a 400 like
    /// `TRUST_DISABLED`: notary's Go client shows the detail of a 400 only and reports any other
    /// status as "unable to reach trust server", which would hide the cause from the user.
    pub fn status(&self) -> u16 {
        match self.code() {
            "METADATA_NOT_FOUND" => 404,
            "UPDATING" | "UNKNOWN" => 500,
            _ => 400,
        }
    }

    /// Notary's fixed message for the code.
    pub fn message(&self) -> &'static str {
        match self.code() {
            "TRUST_DISABLED" => "Content trust is disabled on this registry.",
            "NO_SPACE" => "The registry's storage is full.",
            "METADATA_NOT_FOUND" => "You have requested metadata that does not exist.",
            "INVALID_UPDATE" => "Update sent by the client is invalid.",
            "VERSION" => "A newer version of metadata is already available.",
            "NO_FILENAME" => "No file/role name provided.",
            "INVALID_ROLE" => "The role you are attempting to operate on is invalid.",
            "MALFORMED_JSON" => "JSON sent by the client could not be parsed by the server",
            "MALFORMED_UPLOAD" => "The body of your request is malformed.",
            "INVALID_PARAMETERS" => "The parameters provided are not valid.",
            "UPDATING" => "An error has occurred while updating the TUF repository.",
            _ => "unknown error",
        }
    }

    /// The `detail` member, `None` to omit it. Internal failures carry none: their text stays
    /// in the server log, not on the wire.
    pub fn detail(&self) -> Option<Value> {
        match self {
            Error::Storage(e) | Error::Updating(e) if e.is_no_space() => {
                Some(json!({"Name": "ErrValidation", "Error": {"Msg": NO_SPACE_MSG}}))
            }
            Error::Disabled => {
                Some(json!({"Name": "ErrValidation", "Error": {"Msg": DISABLED_MSG}}))
            }
            Error::Validation(e) => validation_detail(e),
            Error::Version { .. } => Some(json!({})),
            Error::InvalidRole(role) => Some(Value::String(role.clone())),
            Error::InvalidParameters(d) => Some(d.clone().map_or(json!({}), Value::String)),
            _ => None,
        }
    }
}

/// Notary's `SerializableError`: `{"Name":"ErrBad…","Error":{"Msg":..}}`, with `Missing` for
/// `ErrBadHierarchy`. Other errors during validation have no detail, as in Notary.
fn validation_detail(e: &berth_tuf::Error) -> Option<Value> {
    let name = e.notary_name()?;
    let inner = match e {
        berth_tuf::Error::BadHierarchy { missing, msg } => json!({"Missing": missing, "Msg": msg}),
        other => json!({"Msg": other.to_string()}),
    };
    Some(json!({"Name": name, "Error": inner}))
}

impl From<berth_tuf::Error> for Error {
    fn from(e: berth_tuf::Error) -> Self {
        match e {
            berth_tuf::Error::Version { role, stored, new } => Error::Version { role, stored, new },
            other => Error::Validation(other),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
