//! Notary Project signatures (issue 15, "Signatures as referrers"): the JWS envelope of the
//! `notary.x509` signing scheme, the OCI 1.1 signature manifest that carries it as a referrer,
//! and verification under a Notary Project trust policy and trust store.
//!
//! Pure: no I/O, the clock is passed in (unix seconds), the trust store is handed over as
//! certificates already read. `berth sign` / `berth verify` do the registry and file work.
//!
//! ```text
//!   Signer::from_pem(key, chain) ──sign(target, now)──▶ envelope (application/jose+json)
//!   signature_manifest(envelope, subject, thumbprints) ──▶ OCI manifest (artifactType notary)
//!   TrustPolicyDocument::applicable(host/repo) + TrustStore ──verify(envelope, digest, now)──▶ Outcome
//! ```

pub mod cert;
pub mod cose;
pub mod cosign;
pub mod envelope;
pub mod jws;
pub mod policy;
pub mod time;

#[cfg(test)]
mod tests_envelope;

use serde::{Deserialize, Serialize};

pub use envelope::{Envelope, Format};
pub use jws::Signer;
pub use policy::{
    Level, Outcome, TrustPolicy, TrustPolicyDocument, TrustStore, verify, verify_format,
};

/// `artifactType` of a Notary Project signature manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
/// Media type of the JWS envelope layer.
pub const JWS_MEDIA_TYPE: &str = "application/jose+json";
/// Media type of the COSE_Sign1 envelope layer.
pub const COSE_MEDIA_TYPE: &str = "application/cose";
/// `cty` of the JWS: the Notary Project payload.
pub const PAYLOAD_CTY: &str = "application/vnd.cncf.notary.payload.v1+json";
/// The OCI empty descriptor's media type, and its content `{}`.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_CONTENT: &[u8] = b"{}";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Annotation of the signature manifest: hex SHA-256 of each certificate of the chain.
pub const THUMBPRINT_ANNOTATION: &str = "io.cncf.notary.x509chain.thumbprint#S256";

/// Why something failed. Messages are meant for people: `berth verify` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error(msg.into()))
}

/// An OCI descriptor, as the payload's `targetArtifact` and the manifest's `subject` hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: &str, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: digest.to_owned(),
            size,
            annotations: None,
        }
    }

    /// The descriptor of `data` (sha256).
    pub fn of(media_type: &str, data: &[u8]) -> Descriptor {
        Descriptor::new(media_type, &sha256_digest(data), data.len() as u64)
    }
}

pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// The OCI 1.1 manifest that stores the JWS `envelope` as a referrer of `subject`.
pub fn signature_manifest(
    envelope: &[u8],
    subject: &Descriptor,
    thumbprints: &[String],
) -> Vec<u8> {
    signature_manifest_of(Format::Jws, envelope, subject, thumbprints)
}

/// The OCI 1.1 manifest that stores `envelope` (of `format`) as a referrer of `subject`:
/// artifactType notary signature, the empty config, one envelope layer (`application/jose+json`
/// or `application/cose`), and the chain's thumbprints as an annotation (as notation writes
/// them: a JSON array in a string).
pub fn signature_manifest_of(
    format: Format,
    envelope: &[u8],
    subject: &Descriptor,
    thumbprints: &[String],
) -> Vec<u8> {
    let subject = Descriptor {
        annotations: None,
        ..subject.clone()
    };
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": Descriptor::of(EMPTY_MEDIA_TYPE, EMPTY_CONTENT),
        "layers": [Descriptor::of(format.media_type(), envelope)],
        "subject": subject,
        "annotations": {
            THUMBPRINT_ANNOTATION: serde_json::to_string(thumbprints).unwrap_or_default(),
        },
    });
    serde_json::to_vec(&m).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_shape() {
        let subject = Descriptor::of(OCI_MANIFEST, b"m");
        let m = signature_manifest(b"env", &subject, &["ab".into()]);
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        assert_eq!(v["artifactType"], ARTIFACT_TYPE);
        assert_eq!(
            v["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(v["config"]["size"], 2);
        assert_eq!(v["layers"][0]["mediaType"], JWS_MEDIA_TYPE);
        assert_eq!(v["layers"][0]["digest"], sha256_digest(b"env"));
        assert_eq!(v["subject"]["digest"], subject.digest);
        assert_eq!(v["annotations"][THUMBPRINT_ANNOTATION], "[\"ab\"]");
    }
}
