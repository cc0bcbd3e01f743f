//! What `push` reads: an OCI image layout (`oci:DIR[:TAG]`) or a `docker save` archive
//! (`docker-archive:FILE.tar[:REPO:TAG]`), loaded into a [`LocalImage`] whose blobs are byte
//! ranges of local files, so nothing large is ever held in memory.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use berth_oci::media::{self, ManifestKind};
use berth_oci::{Digest, ManifestView, Tag};
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::layout::{self, Index};

/// A blob to push: `size` bytes at `offset` in `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSource {
    pub digest: Digest,
    pub size: u64,
    pub path: PathBuf,
    pub offset: u64,
}

/// A manifest to push, with its exact bytes.
#[derive(Debug, Clone)]
pub struct LocalManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// An image (or index of images) ready to push.
#[derive(Debug, Clone)]
pub struct LocalImage {
    /// Every manifest, children before the indexes that list them; the last one is the root.
    pub manifests: Vec<LocalManifest>,
    /// Every blob the manifests reference, once each.
    pub blobs: Vec<BlobSource>,
}

impl LocalImage {
    pub fn root(&self) -> &LocalManifest {
        self.manifests.last().expect("an image has a root manifest")
    }

    fn add_blob(&mut self, b: BlobSource) {
        if !self.blobs.iter().any(|x| x.digest == b.digest) {
            self.blobs.push(b);
        }
    }
}

/// Where an image lives on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageLocation {
    /// `oci:DIR[:TAG]`
    OciLayout { dir: PathBuf, tag: Option<Tag> },
    /// `docker-archive:FILE[:REPO:TAG]` (the reference picks one image of several)
    DockerArchive {
        path: PathBuf,
        reference: Option<String>,
    },
}

fn bad_location(input: &str, reason: &str) -> Error {
    Error::InvalidLocation {
        kind: "location",
        input: input.to_owned(),
        reason: reason.to_owned(),
    }
}

impl FromStr for ImageLocation {
    type Err = Error;

    /// Like skopeo, the path ends at the first `:` after the transport.
    fn from_str(s: &str) -> Result<Self> {
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = match rest.split_once(':') {
                Some((d, t)) => (d, Some(t)),
                None => (rest, None),
            };
            if dir.is_empty() {
                return Err(bad_location(s, "empty directory"));
            }
            let tag = tag
                .map(|t| t.parse::<Tag>())
                .transpose()
                .map_err(|e| bad_location(s, &e.message))?;
            Ok(ImageLocation::OciLayout {
                dir: dir.into(),
                tag,
            })
        } else if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (path, reference) = match rest.split_once(':') {
                Some((p, r)) => (p, Some(r.to_owned())),
                None => (rest, None),
            };
            if path.is_empty() {
                return Err(bad_location(s, "empty file name"));
            }
            Ok(ImageLocation::DockerArchive {
                path: path.into(),
                reference,
            })
        } else {
            Err(bad_location(
                s,
                "unknown transport (expected oci: or docker-archive:)",
            ))
        }
    }
}

impl ImageLocation {
    /// Reads the image's manifests and locates (and for archives, hashes) its blobs. Runs the
    /// file work on the blocking pool.
    pub async fn load(&self) -> Result<LocalImage> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || match me {
            ImageLocation::OciLayout { dir, tag } => load_oci_layout(&dir, tag.as_ref()),
            ImageLocation::DockerArchive { path, reference } => {
                crate::archive::load_docker_archive(&path, reference.as_deref())
            }
        })
        .await
        .expect("image loading does not panic")
    }
}

/// Index entries may nest (index of indexes); bound it so a cycle can't loop forever.
const MAX_DEPTH: usize = 4;

fn load_oci_layout(dir: &Path, tag: Option<&Tag>) -> Result<LocalImage> {
    let index_path = dir.join("index.json");
    let index = Index::read(dir)?
        .ok_or_else(|| Error::bad_image(dir, "no index.json: not an OCI image layout"))?;
    let entries = index.descriptors(&index_path)?;
    let chosen = match tag {
        Some(t) => entries
            .iter()
            .find(|(_, n)| n.as_deref() == Some(t.as_str()))
            .ok_or_else(|| {
                Error::bad_image(
                    &index_path,
                    format!("no manifest tagged {t} (tags: {})", tag_list(&entries)),
                )
            })?,
        None if entries.len() == 1 => &entries[0],
        None => {
            return Err(Error::bad_image(
                &index_path,
                format!(
                    "{} manifests: name one as oci:DIR:TAG (tags: {})",
                    entries.len(),
                    tag_list(&entries)
                ),
            ));
        }
    };
    let mut img = LocalImage {
        manifests: Vec::new(),
        blobs: Vec::new(),
    };
    let d = &chosen.0;
    add_manifest(dir, &d.digest, d.size, Some(&d.media_type), &mut img, 0)?;
    Ok(img)
}

fn tag_list(entries: &[(berth_oci::Descriptor, Option<String>)]) -> String {
    let names: Vec<&str> = entries.iter().filter_map(|(_, n)| n.as_deref()).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Reads a manifest blob of the layout, checks it against its descriptor, then its children.
fn add_manifest(
    dir: &Path,
    digest: &Digest,
    size: u64,
    media_type: Option<&str>,
    img: &mut LocalImage,
    depth: usize,
) -> Result<()> {
    if img.manifests.iter().any(|m| &m.digest == digest) {
        return Ok(());
    }
    if depth > MAX_DEPTH {
        return Err(Error::bad_image(dir, "indexes nested too deeply"));
    }
    let path = layout::blob_path(dir, digest);
    // Manifests are small (registries take at most 4 MiB); refuse to load a huge one.
    if size > 4 << 20 {
        return Err(Error::bad_image(
            &path,
            format!("manifest of {size} bytes is over 4 MiB"),
        ));
    }
    let bytes = std::fs::read(&path)
        .map_err(|e| Error::bad_image(&path, format!("manifest {digest}: {e}")))?;
    crate::verify::check_bytes(
        &format!("manifest {}", path.display()),
        digest,
        size,
        &bytes,
    )?;
    let view =
        ManifestView::parse(&bytes, media_type).map_err(|e| Error::bad_image(&path, e.message))?;
    match view.kind {
        ManifestKind::Index => {
            for child in &view.manifests {
                add_manifest(
                    dir,
                    &child.digest,
                    child.size,
                    Some(&child.media_type),
                    img,
                    depth + 1,
                )?;
            }
        }
        ManifestKind::Image => {
            for b in view.blob_references() {
                let p = layout::blob_path(dir, &b.digest);
                match std::fs::metadata(&p) {
                    Ok(m) if m.len() == b.size => img.add_blob(BlobSource {
                        digest: b.digest.clone(),
                        size: b.size,
                        path: p,
                        offset: 0,
                    }),
                    Ok(m) => {
                        return Err(Error::bad_image(
                            &p,
                            format!("blob is {} bytes, the manifest says {}", m.len(), b.size),
                        ));
                    }
                    // Non-distributable layers are fetched from their URLs, never pushed.
                    Err(_) if is_foreign(&b.media_type) => {}
                    Err(e) => {
                        return Err(Error::bad_image(&p, format!("blob {}: {e}", b.digest)));
                    }
                }
            }
        }
    }
    // Keep the media type the manifest declares (or its descriptor gave) for the PUT.
    let media_type = if view.media_type.is_empty() {
        media::OCI_MANIFEST.to_owned()
    } else {
        view.media_type
    };
    img.manifests.push(LocalManifest {
        digest: digest.clone(),
        media_type,
        bytes: Bytes::from(bytes),
    });
    Ok(())
}

fn is_foreign(media_type: &str) -> bool {
    media_type.contains("nondistributable") || media_type.contains("foreign")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert_eq!(
            "oci:/tmp/x:v1".parse::<ImageLocation>().unwrap(),
            ImageLocation::OciLayout {
                dir: "/tmp/x".into(),
                tag: Some("v1".parse().unwrap())
            }
        );
        assert_eq!(
            "oci:rel/dir".parse::<ImageLocation>().unwrap(),
            ImageLocation::OciLayout {
                dir: "rel/dir".into(),
                tag: None
            }
        );
        assert_eq!(
            "docker-archive:img.tar:team/app:v1"
                .parse::<ImageLocation>()
                .unwrap(),
            ImageLocation::DockerArchive {
                path: "img.tar".into(),
                reference: Some("team/app:v1".into())
            }
        );
        for bad in [
            "oci:",
            "oci:dir:-bad",
            "docker-archive:",
            "dir",
            "docker://x",
        ] {
            assert!(bad.parse::<ImageLocation>().is_err(), "{bad}");
        }
    }
}
