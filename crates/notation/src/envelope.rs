//! What verification needs from a Notary Project signature, whatever its envelope: JWS
//! (`application/jose+json`, [`crate::jws`]) and COSE_Sign1 (`application/cose`,
//! [`crate::cose`]) both parse into an [`Envelope`] after their own integrity check, and the
//! trust policy ([`crate::policy`]) only ever sees that.

use crate::cert::Cert;
use crate::jws::{EXPIRY, SIGNING_SCHEME};
use crate::{COSE_MEDIA_TYPE, Descriptor, JWS_MEDIA_TYPE, Result, err};

/// An envelope whose signature verified with its leaf certificate (integrity only: nothing
/// here says the certificate is trusted).
#[derive(Debug, Clone)]
pub struct Envelope {
    pub alg: String,
    pub signing_scheme: String,
    pub signing_time: i64,
    pub expiry: Option<i64>,
    pub signing_agent: Option<String>,
    /// The certificate chain (`x5c` / `x5chain`), leaf first.
    pub chain: Vec<Cert>,
    pub target: Descriptor,
}

/// The envelope formats, by the media type of the signature manifest's layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jws,
    Cose,
}

impl Format {
    pub fn from_media_type(media_type: &str) -> Option<Format> {
        match media_type {
            JWS_MEDIA_TYPE => Some(Format::Jws),
            COSE_MEDIA_TYPE => Some(Format::Cose),
            _ => None,
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Format::Jws => JWS_MEDIA_TYPE,
            Format::Cose => COSE_MEDIA_TYPE,
        }
    }

    /// `jws` / `cose`, as `berth sign --envelope` and `berth verify` name them.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jws => "jws",
            Format::Cose => "cose",
        }
    }
}

impl Envelope {
    /// Parses an envelope of `format` and checks its integrity.
    pub fn verify_integrity_of(format: Format, bytes: &[u8]) -> Result<Envelope> {
        match format {
            Format::Jws => Envelope::verify_integrity(bytes),
            Format::Cose => crate::cose::verify_integrity(bytes),
        }
    }
}

/// The critical-header rules both envelopes share (signature-specification.md): `crit` lists
/// the signing scheme, lists nothing this verifier does not understand, lists only headers
/// that are present, and the expiry, when present, is critical.
pub(crate) fn check_critical(crit: &[&str], present: impl Fn(&str) -> bool) -> Result<()> {
    if !crit.contains(&SIGNING_SCHEME) {
        return err(format!("crit does not list {SIGNING_SCHEME}"));
    }
    for c in crit {
        if !matches!(*c, SIGNING_SCHEME | EXPIRY) {
            return err(format!("critical header {c:?} is not understood"));
        }
        if !present(c) {
            return err(format!(
                "critical header {c:?} is listed in crit but absent"
            ));
        }
    }
    if present(EXPIRY) && !crit.contains(&EXPIRY) {
        return err(format!("{EXPIRY} is present but not critical"));
    }
    Ok(())
}
