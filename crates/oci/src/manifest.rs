//! A read-only view of a manifest: what the registry needs to validate and index it. The bytes
//! themselves are stored untouched elsewhere; this view never re-serialises them.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::error::{Error, ErrorCode};
use crate::media::{self, ManifestKind};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub annotations: Option<Map<String, Value>>,
}

/// The fields of image manifests and indexes that matter to a registry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<Map<String, Value>>,
}

#[derive(Debug, Clone)]
pub struct ManifestView {
    /// The media type the manifest is stored and served with.
    pub media_type: String,
    pub kind: ManifestKind,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub artifact_type: Option<String>,
    pub annotations: Option<Map<String, Value>>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::ManifestInvalid, msg)
}

impl ManifestView {
    /// Parses and validates a pushed manifest. `content_type` is the request's header (if any).
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Self, Error> {
        let content_type = content_type.map(media::essence).filter(|c| !c.is_empty());
        if matches!(
            content_type,
            Some(media::DOCKER_SCHEMA1 | media::DOCKER_SCHEMA1_SIGNED)
        ) {
            return Err(invalid(
                "Docker schema 1 manifests are not supported; push schema 2 or OCI",
            ));
        }
        // JSON text is UTF-8 (RFC 8259). serde skips unknown fields without checking their bytes,
        // so check the whole document first: nothing we store and serve back may be malformed.
        let text = std::str::from_utf8(bytes).map_err(|e| {
            invalid(format!(
                "manifest is not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ))
        })?;
        let raw: Raw = serde_json::from_str(text)
            .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
        if raw.schema_version != Some(2) {
            return Err(invalid("schemaVersion must be 2"));
        }
        if let Some(mt) = &raw.media_type {
            if matches!(
                mt.as_str(),
                media::DOCKER_SCHEMA1 | media::DOCKER_SCHEMA1_SIGNED
            ) {
                return Err(invalid(
                    "Docker schema 1 manifests are not supported; push schema 2 or OCI",
                ));
            }
            if media::kind_of(mt).is_none() {
                return Err(invalid(format!("unsupported manifest mediaType {mt:?}")));
            }
        }
        let header_type = content_type.filter(|c| media::kind_of(c).is_some());
        let media_type = match (&raw.media_type, header_type) {
            (Some(field), Some(header)) if field != header => {
                return Err(invalid(format!(
                    "Content-Type {header:?} does not match the manifest's mediaType {field:?}"
                )));
            }
            (Some(field), _) => field.clone(),
            (None, Some(header)) => header.to_owned(),
            // Neither says: fall back to the OCI type the structure implies.
            (None, None) if raw.manifests.is_some() => media::OCI_INDEX.to_owned(),
            (None, None) => media::OCI_MANIFEST.to_owned(),
        };
        let kind = media::kind_of(&media_type).expect("media type was checked above");
        let view = ManifestView {
            kind,
            config: raw.config,
            layers: raw.layers.unwrap_or_default(),
            manifests: raw.manifests.unwrap_or_default(),
            subject: raw.subject,
            artifact_type: raw.artifact_type,
            annotations: raw.annotations,
            media_type,
        };
        match kind {
            ManifestKind::Image => {
                if view.config.is_none() {
                    return Err(invalid("image manifest has no config descriptor"));
                }
                if !view.manifests.is_empty() {
                    return Err(invalid("image manifest must not have a manifests list"));
                }
            }
            ManifestKind::Index => {
                if view.config.is_some() || !view.layers.is_empty() {
                    return Err(invalid("an index must not have config or layers"));
                }
            }
        }
        Ok(view)
    }

    /// Parses a manifest a client pushes: unlike [`ManifestView::parse`] (which takes a hint), the
    /// request's `Content-Type` must name a manifest type we store, and the parse then requires
    /// the manifest's own `mediaType`, when it has one, to be that same type.
    pub fn parse_pushed(bytes: &[u8], content_type: Option<&str>) -> Result<Self, Error> {
        let essence = content_type.map(media::essence).unwrap_or("");
        if media::kind_of(essence).is_none()
            && !matches!(
                essence,
                media::DOCKER_SCHEMA1 | media::DOCKER_SCHEMA1_SIGNED
            )
        {
            let got = if essence.is_empty() {
                "no Content-Type".to_owned()
            } else {
                format!("Content-Type {essence:?}")
            };
            return Err(invalid(format!(
                "{got}: a manifest must be pushed with its media type ({}, {}, {} or {})",
                media::OCI_MANIFEST,
                media::OCI_INDEX,
                media::DOCKER_MANIFEST,
                media::DOCKER_LIST
            )));
        }
        Self::parse(bytes, Some(essence))
    }

    /// Blobs (config and layers) this manifest needs in the repository.
    pub fn blob_references(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(self.layers.iter())
    }

    /// The artifact type reported for this manifest in a referrers list.
    pub fn referrer_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D2}","size":3}}]{extra}}}"#
        )
    }

    #[test]
    fn parses_image_manifest() {
        let v = ManifestView::parse(image("").as_bytes(), Some(media::OCI_MANIFEST)).unwrap();
        assert_eq!(v.kind, ManifestKind::Image);
        assert_eq!(v.blob_references().count(), 2);
        assert_eq!(
            v.referrer_artifact_type(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn subject_and_artifact_type() {
        let m = image(&format!(
            r#","artifactType":"application/x.sig","subject":{{"mediaType":"{}","digest":"{D1}","size":9}}"#,
            media::OCI_MANIFEST
        ));
        let v = ManifestView::parse(m.as_bytes(), None).unwrap();
        assert_eq!(v.subject.unwrap().digest.to_string(), D1);
        assert_eq!(v.artifact_type.as_deref(), Some("application/x.sig"));
    }

    #[test]
    fn content_type_must_match_field() {
        let e =
            ManifestView::parse(image("").as_bytes(), Some(media::DOCKER_MANIFEST)).unwrap_err();
        assert_eq!(e.code, ErrorCode::ManifestInvalid);
    }

    #[test]
    fn rejects_garbage_and_schema1() {
        for (body, ct) in [
            ("{", None),
            ("[]", None),
            (r#"{"schemaVersion":1}"#, None),
            (r#"{"schemaVersion":2}"#, Some(media::DOCKER_SCHEMA1_SIGNED)),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
                None,
            ),
        ] {
            let e = ManifestView::parse(body.as_bytes(), ct).unwrap_err();
            assert_eq!(e.code, ErrorCode::ManifestInvalid, "{body}");
        }
        let bad_digest = image("").replace(D2, "sha256:nothex");
        assert!(ManifestView::parse(bad_digest.as_bytes(), None).is_err());
    }

    #[test]
    fn rejects_invalid_utf8() {
        // The bad byte sits in a field the view ignores, where serde would not look at it.
        let mut m = image(r#","x-note":"ab"#).into_bytes();
        m.truncate(m.len() - 1);
        m.extend_from_slice(b"\xff\"}");
        let e = ManifestView::parse(&m, Some(media::OCI_MANIFEST)).unwrap_err();
        assert_eq!(e.code, ErrorCode::ManifestInvalid);
        assert!(e.message.contains("UTF-8"), "{}", e.message);
        let e = ManifestView::parse_pushed(&m, Some(media::OCI_MANIFEST)).unwrap_err();
        assert_eq!(e.code, ErrorCode::ManifestInvalid);
    }

    #[test]
    fn pushed_content_type_must_be_a_manifest_type() {
        let m = image("");
        for ct in [
            None,
            Some(""),
            Some("text/plain"),
            Some("application/json"),
            Some("application/octet-stream"),
        ] {
            let e = ManifestView::parse_pushed(m.as_bytes(), ct).unwrap_err();
            assert_eq!(e.code, ErrorCode::ManifestInvalid, "{ct:?}");
            assert!(e.message.contains(media::OCI_MANIFEST), "{}", e.message);
        }
        // The header must also agree with the manifest's mediaType.
        let e = ManifestView::parse_pushed(m.as_bytes(), Some(media::DOCKER_MANIFEST)).unwrap_err();
        assert_eq!(e.code, ErrorCode::ManifestInvalid);
        let v = ManifestView::parse_pushed(
            m.as_bytes(),
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(v.media_type, media::OCI_MANIFEST);
        // Without a mediaType field the header decides, and the structure must fit it.
        let bare = m.replace(
            r#""mediaType":"application/vnd.oci.image.manifest.v1+json","#,
            "",
        );
        let v = ManifestView::parse_pushed(bare.as_bytes(), Some(media::DOCKER_MANIFEST)).unwrap();
        assert_eq!(v.media_type, media::DOCKER_MANIFEST);
        let e = ManifestView::parse_pushed(bare.as_bytes(), Some(media::OCI_INDEX)).unwrap_err();
        assert_eq!(e.code, ErrorCode::ManifestInvalid);
        // Schema 1 keeps its own explanation.
        let e = ManifestView::parse_pushed(m.as_bytes(), Some(media::DOCKER_SCHEMA1_SIGNED))
            .unwrap_err();
        assert!(e.message.contains("schema 1"), "{}", e.message);
    }

    #[test]
    fn index_without_media_type_is_detected() {
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{D1}","size":5,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            media::OCI_MANIFEST
        );
        let v = ManifestView::parse(idx.as_bytes(), None).unwrap();
        assert_eq!(v.kind, ManifestKind::Index);
        assert_eq!(v.media_type, media::OCI_INDEX);
        assert_eq!(v.manifests[0].platform.as_ref().unwrap().os, "linux");
    }
}
