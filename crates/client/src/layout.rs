//! OCI image layout on disk (image-spec `image-layout.md`): `oci-layout`, `index.json` whose
//! entries name tags with `org.opencontainers.image.ref.name`, and `blobs/<alg>/<hex>`.

use std::path::{Path, PathBuf};

use berth_oci::{Descriptor, Digest};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const LAYOUT_FILE: &str = "oci-layout";
pub const LAYOUT_VERSION: &str = "1.0.0";

pub fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    // A validated digest is `[a-z0-9]+:[0-9a-f]+`, so this never leaves `dir`.
    dir.join("blobs")
        .join(digest.algorithm().as_str())
        .join(digest.hex())
}

/// `index.json`, keeping entries and fields we don't interpret as they are.
#[derive(Debug, Clone)]
pub struct Index {
    pub value: Map<String, Value>,
}

impl Index {
    pub fn empty() -> Index {
        let mut value = Map::new();
        value.insert("schemaVersion".into(), 2.into());
        value.insert("mediaType".into(), berth_oci::media::OCI_INDEX.into());
        value.insert("manifests".into(), Value::Array(Vec::new()));
        Index { value }
    }

    /// Reads `DIR/index.json`; `Ok(None)` when it does not exist.
    pub fn read(dir: &Path) -> Result<Option<Index>> {
        let path = dir.join("index.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::bad_image(&path, format!("not JSON: {e}")))?;
        match value {
            Value::Object(value) if value.get("manifests").is_none_or(Value::is_array) => {
                Ok(Some(Index { value }))
            }
            _ => Err(Error::bad_image(&path, "not an OCI image index")),
        }
    }

    fn entries_mut(&mut self) -> &mut Vec<Value> {
        let v = self
            .value
            .entry("manifests")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !v.is_array() {
            *v = Value::Array(Vec::new());
        }
        v.as_array_mut().expect("made an array above")
    }

    /// Every entry as a descriptor, with its ref name.
    pub fn descriptors(&self, path: &Path) -> Result<Vec<(Descriptor, Option<String>)>> {
        let Some(Value::Array(entries)) = self.value.get("manifests") else {
            return Ok(Vec::new());
        };
        entries
            .iter()
            .map(|e| {
                let d: Descriptor = serde_json::from_value(e.clone()).map_err(|err| {
                    Error::bad_image(path, format!("bad index.json entry: {err}"))
                })?;
                let name = d
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                Ok((d, name))
            })
            .collect()
    }

    /// Adds an entry for `desc`, replacing the entry that held the same ref name (a tag names
    /// one manifest) or, without a name, an unnamed entry for the same digest.
    pub fn set(&mut self, media_type: &str, digest: &Digest, size: u64, ref_name: Option<&str>) {
        let mut entry =
            json!({"mediaType": media_type, "digest": digest.to_string(), "size": size});
        if let Some(n) = ref_name {
            entry["annotations"] = json!({ REF_NAME: n });
        }
        let digest_s = digest.to_string();
        let entries = self.entries_mut();
        entries.retain(|e| {
            let name = e["annotations"][REF_NAME].as_str();
            match ref_name {
                Some(n) => name != Some(n),
                None => !(name.is_none() && e["digest"].as_str() == Some(digest_s.as_str())),
            }
        });
        entries.push(entry);
    }

    /// Writes `DIR/index.json` atomically (temp file + rename), so a reader never sees half.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&Value::Object(self.value.clone()))
            .expect("a JSON map serialises");
        write_atomic(&dir.join("index.json"), &bytes)
    }
}

/// Writes a file through a temporary sibling and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_sibling(path);
    let res = (|| {
        std::fs::write(&tmp, bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(format!("writing {}", path.display()), e));
    }
    Ok(())
}

/// `.<name>.tmp-<random>` next to `path`: hidden, and never a valid blob name.
pub fn tmp_sibling(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = N.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_by_name_and_keeps_others() {
        let d1 = Digest::sha256_of(b"1");
        let d2 = Digest::sha256_of(b"2");
        let mut idx = Index::empty();
        idx.set("m", &d1, 1, Some("v1"));
        idx.set("m", &d1, 1, Some("v2"));
        idx.set("m", &d2, 2, Some("v1"));
        idx.set("m", &d2, 2, None);
        idx.set("m", &d2, 2, None);
        let dir = tempfile::tempdir().unwrap();
        idx.write(dir.path()).unwrap();
        let back = Index::read(dir.path()).unwrap().unwrap();
        let got: Vec<(String, Option<String>)> = back
            .descriptors(dir.path())
            .unwrap()
            .into_iter()
            .map(|(d, n)| (d.digest.to_string(), n))
            .collect();
        assert_eq!(
            got,
            vec![
                (d1.to_string(), Some("v2".into())),
                (d2.to_string(), Some("v1".into())),
                (d2.to_string(), None),
            ]
        );
    }
}
