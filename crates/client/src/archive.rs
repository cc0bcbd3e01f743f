//! `docker save` archives: a tar with `manifest.json` (`[{Config, RepoTags, Layers}]`) naming
//! the config and layer files. We index the tar once (offsets only), hash the referenced files
//! straight from their byte ranges, and describe them in a Docker schema 2 manifest; the push then
//! streams the same ranges. Nothing is extracted and nothing large is held in memory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use berth_oci::media;
use berth_oci::{Algorithm, Digest, Digester};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::source::{BlobSource, LocalImage, LocalManifest};

pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Uncompressed layer (containerd's `MediaTypeDockerSchema2Layer`), as `docker save` stores them.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Schema2<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: Desc<'a>,
    layers: Vec<Desc<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Desc<'a> {
    media_type: &'a str,
    size: u64,
    digest: String,
}

enum Member {
    File {
        offset: u64,
        size: u64,
    },
    /// A symlink or hard link to another member (already resolved to an archive path).
    Link(String),
}

/// Normalises an archive path: no leading `./` or `/`, `.` and `..` folded.
fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

fn index_tar(path: &Path) -> Result<HashMap<String, Member>> {
    let bad = |reason: String| Error::bad_image(path, reason);
    let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut ar = tar::Archive::new(file);
    let mut members = HashMap::new();
    let entries = ar
        .entries_with_seek()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| bad(format!("corrupt tar archive: {e}")))?;
        let name = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
        let kind = entry.header().entry_type();
        let link = || {
            entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default()
        };
        let member = if kind.is_symlink() {
            // Relative to the link's own directory.
            let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
            let target = link();
            let joined = if target.starts_with('/') {
                target
            } else {
                format!("{dir}/{target}")
            };
            Member::Link(normalize(&joined))
        } else if kind.is_hard_link() {
            Member::Link(normalize(&link()))
        } else if kind.is_file() || kind.is_contiguous() {
            Member::File {
                offset: entry.raw_file_position(),
                size: entry.size(),
            }
        } else {
            continue;
        };
        members.insert(name, member);
    }
    Ok(members)
}

/// The byte range of a member, following links (a bounded number of hops).
fn locate(members: &HashMap<String, Member>, name: &str, archive: &Path) -> Result<(u64, u64)> {
    let mut cur = normalize(name);
    for _ in 0..16 {
        match members.get(&cur) {
            Some(Member::File { offset, size }) => return Ok((*offset, *size)),
            Some(Member::Link(t)) => cur = t.clone(),
            None => {
                return Err(Error::bad_image(
                    archive,
                    format!("{name} is listed in manifest.json but not in the archive"),
                ));
            }
        }
    }
    Err(Error::bad_image(archive, format!("{name}: link loop")))
}

/// Hashes `size` bytes at `offset`, and returns the first bytes too (to sniff compression).
fn hash_range(file: &mut File, offset: u64, size: u64, what: &Path) -> Result<(Digest, Vec<u8>)> {
    let io = |e| Error::io(format!("reading {}", what.display()), e);
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut h = Digester::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    let mut head = Vec::new();
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        file.read_exact(&mut buf[..want]).map_err(io)?;
        if head.is_empty() {
            head = buf[..want.min(8)].to_vec();
        }
        h.update(&buf[..want]);
        left -= want as u64;
    }
    Ok((h.finish(), head))
}

fn read_small(file: &mut File, offset: u64, size: u64, what: &Path) -> Result<Vec<u8>> {
    if size > 16 << 20 {
        return Err(Error::bad_image(what, "manifest.json is over 16 MiB"));
    }
    let io = |e| Error::io(format!("reading {}", what.display()), e);
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut v = vec![0u8; size as usize];
    file.read_exact(&mut v).map_err(io)?;
    Ok(v)
}

pub(crate) fn load_docker_archive(path: &Path, reference: Option<&str>) -> Result<LocalImage> {
    let members = index_tar(path)?;
    let mut file =
        File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let (off, size) = locate(&members, "manifest.json", path)
        .map_err(|_| Error::bad_image(path, "no manifest.json: not a docker save archive"))?;
    let raw = read_small(&mut file, off, size, path)?;
    let entries: Vec<ArchiveEntry> = serde_json::from_slice(&raw)
        .map_err(|e| Error::bad_image(path, format!("manifest.json: {e}")))?;
    let tags = |e: &ArchiveEntry| e.repo_tags.clone().unwrap_or_default();
    let entry = match reference {
        Some(r) => entries
            .iter()
            .find(|e| {
                tags(e)
                    .iter()
                    .any(|t| t == r || *t == format!("{r}:latest"))
            })
            .ok_or_else(|| Error::bad_image(path, format!("no image tagged {r:?} in it")))?,
        None if entries.len() == 1 => &entries[0],
        None => {
            let all: Vec<String> = entries.iter().flat_map(tags).collect();
            return Err(Error::bad_image(
                path,
                format!(
                    "{} images: pick one as docker-archive:FILE:REPO:TAG (tags: {})",
                    entries.len(),
                    all.join(", ")
                ),
            ));
        }
    };

    let mut blobs = Vec::new();
    let mut blob = |name: &str| -> Result<(BlobSource, Vec<u8>)> {
        let (offset, size) = locate(&members, name, path)?;
        let (digest, head) = hash_range(&mut file, offset, size, path)?;
        Ok((
            BlobSource {
                digest,
                size,
                path: path.to_owned(),
                offset,
            },
            head,
        ))
    };
    let (config, _) = blob(&entry.config)?;
    let mut layers = Vec::new();
    for l in &entry.layers {
        let (b, head) = blob(l)?;
        // docker save writes layers uncompressed; newer engines may keep them gzipped.
        let mt = if head.starts_with(&[0x1f, 0x8b]) {
            DOCKER_LAYER_GZIP
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Err(Error::bad_image(
                path,
                format!("layer {l} is zstd-compressed, which Docker schema 2 cannot describe"),
            ));
        } else {
            DOCKER_LAYER_TAR
        };
        layers.push((b, mt));
    }
    let manifest = Schema2 {
        schema_version: 2,
        media_type: media::DOCKER_MANIFEST,
        config: Desc {
            media_type: DOCKER_CONFIG,
            size: config.size,
            digest: config.digest.to_string(),
        },
        layers: layers
            .iter()
            .map(|(b, mt)| Desc {
                media_type: mt,
                size: b.size,
                digest: b.digest.to_string(),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    blobs.push(config);
    for (b, _) in layers {
        if !blobs.iter().any(|x: &BlobSource| x.digest == b.digest) {
            blobs.push(b);
        }
    }
    Ok(LocalImage {
        manifests: vec![LocalManifest {
            digest: Digest::sha256_of(&bytes),
            media_type: media::DOCKER_MANIFEST.to_owned(),
            bytes: Bytes::from(bytes),
        }],
        blobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(b: &mut tar::Builder<File>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    }

    #[test]
    fn reads_a_docker_save_archive_with_links() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img.tar");
        let mut b = tar::Builder::new(File::create(&p).unwrap());
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer = vec![7u8; 3000];
        let gz = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0];
        add(&mut b, "cfg.json", config);
        add(&mut b, "aaa/layer.tar", &layer);
        add(&mut b, "ccc/layer.tar", &gz);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_cksum();
        b.append_link(&mut h, "bbb/layer.tar", "../aaa/layer.tar")
            .unwrap();
        add(
            &mut b,
            "manifest.json",
            br#"[{"Config":"cfg.json","RepoTags":["team/app:v1"],"Layers":["aaa/layer.tar","./bbb/layer.tar","ccc/layer.tar"]}]"#,
        );
        b.finish().unwrap();

        let img = load_docker_archive(&p, None).unwrap();
        let m: serde_json::Value = serde_json::from_slice(&img.root().bytes).unwrap();
        assert_eq!(m["mediaType"], media::DOCKER_MANIFEST);
        assert_eq!(m["config"]["digest"], Digest::sha256_of(config).to_string());
        let l = m["layers"].as_array().unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0]["digest"], Digest::sha256_of(&layer).to_string());
        assert_eq!(l[0]["digest"], l[1]["digest"]);
        assert_eq!(l[0]["mediaType"], DOCKER_LAYER_TAR);
        assert_eq!(l[2]["mediaType"], DOCKER_LAYER_GZIP);
        // config + two distinct layers, each a readable range of the tar
        assert_eq!(img.blobs.len(), 3);
        let all = std::fs::read(&p).unwrap();
        for bl in &img.blobs {
            let bytes = &all[bl.offset as usize..(bl.offset + bl.size) as usize];
            assert_eq!(Digest::sha256_of(bytes), bl.digest);
        }
        assert_eq!(img.root().digest, Digest::sha256_of(&img.root().bytes));

        assert!(load_docker_archive(&p, Some("team/app:v1")).is_ok());
        assert!(load_docker_archive(&p, Some("team/app:v2")).is_err());
    }

    #[test]
    fn refuses_what_is_not_an_archive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tar");
        std::fs::write(&p, b"hello").unwrap();
        assert!(matches!(
            load_docker_archive(&p, None),
            Err(Error::BadImage { .. })
        ));
    }
}
