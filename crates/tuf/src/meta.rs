//! File metadata and the snapshot and timestamp roles.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use berth_cjson::{Map, Value};
use sha2::Digest as _;

use crate::Error;
use crate::metadata::{Fields, RoleBody, header_value};

/// `{"length":..,"hashes":{"sha256":<b64>,...},"custom":...}` (Notary `FileMeta`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub length: i64,
    /// Algorithm name to raw digest bytes (base64 in JSON).
    pub hashes: BTreeMap<String, Vec<u8>>,
    /// Any JSON, kept as parsed.
    pub custom: Option<Value>,
}

impl FileMeta {
    /// Meta for `bytes` with sha256 and sha512, as Notary's server generates it.
    pub fn for_bytes(bytes: &[u8]) -> Self {
        let mut hashes = BTreeMap::new();
        hashes.insert("sha256".to_owned(), sha2::Sha256::digest(bytes).to_vec());
        hashes.insert("sha512".to_owned(), sha2::Sha512::digest(bytes).to_vec());
        FileMeta {
            length: bytes.len() as i64,
            hashes,
            custom: None,
        }
    }

    pub fn from_value(what: &'static str, v: &Value) -> Result<Self, Error> {
        let f = Fields::of(what, v)?;
        let mut hashes = BTreeMap::new();
        if let Some(h) = f.object_or_empty("hashes")? {
            for (alg, d) in h.iter() {
                let d = d
                    .as_str()
                    .ok_or_else(|| Error::malformed(what, "hash is not a string"))?;
                let d = B64
                    .decode(d)
                    .map_err(|_| Error::malformed(what, "hash is not base64"))?;
                hashes.insert(alg.to_owned(), d);
            }
        }
        Ok(FileMeta {
            length: f.int("length")?,
            hashes,
            custom: f.obj.get("custom").filter(|c| !c.is_null()).cloned(),
        })
    }

    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        if let Some(c) = &self.custom {
            m.insert("custom", c.clone());
        }
        m.insert(
            "hashes",
            self.hashes
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(B64.encode(v))))
                .collect::<Map>(),
        );
        m.insert("length", self.length);
        Value::Object(m)
    }

    /// Notary's check of `bytes` against this meta: at least one of sha256/sha512 listed,
    /// every listed one of those must match, and digests must have the algorithm's length.
    pub fn check(&self, bytes: &[u8]) -> Result<(), String> {
        let mut checked = 0;
        for (alg, want) in &self.hashes {
            let got = match alg.as_str() {
                "sha256" => sha2::Sha256::digest(bytes).to_vec(),
                "sha512" => sha2::Sha512::digest(bytes).to_vec(),
                _ => continue,
            };
            if want.len() != got.len() {
                return Err(format!("{alg} checksum has the wrong length"));
            }
            if *want != got {
                return Err(format!("{alg} checksum mismatch"));
            }
            checked += 1;
        }
        if checked == 0 {
            return Err("no sha256 or sha512 checksum".into());
        }
        Ok(())
    }
}

fn meta_map(what: &'static str, m: Option<&Map>) -> Result<BTreeMap<String, FileMeta>, Error> {
    m.map(|m| {
        m.iter()
            .map(|(k, v)| Ok((k.to_owned(), FileMeta::from_value(what, v)?)))
            .collect()
    })
    .unwrap_or_else(|| Ok(BTreeMap::new()))
}

fn meta_value(m: &BTreeMap<String, FileMeta>) -> Map {
    m.iter().map(|(k, v)| (k.clone(), v.to_value())).collect()
}

/// The snapshot role: hashes and lengths of root, targets and every delegation file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub version: i64,
    pub expires: String,
    pub meta: BTreeMap<String, FileMeta>,
}

impl RoleBody for Snapshot {
    const TYPE: &'static str = "Snapshot";

    fn from_signed(v: &Value) -> Result<Self, Error> {
        let f = Fields::of("snapshot", v)?;
        let (version, expires) = f.header(Self::TYPE)?;
        Ok(Snapshot {
            version,
            expires,
            meta: meta_map("snapshot meta", f.object_or_empty("meta")?)?,
        })
    }

    fn to_signed(&self) -> Value {
        let mut m = header_value(Self::TYPE, self.version, &self.expires);
        m.insert("meta", meta_value(&self.meta));
        Value::Object(m)
    }

    fn version(&self) -> i64 {
        self.version
    }

    fn expires(&self) -> &str {
        &self.expires
    }
}

impl Snapshot {
    /// Notary's structural rule: `root` and `targets` entries, each with a sha256 of the
    /// right length.
    pub fn validate_structure(&self) -> Result<(), String> {
        if self.version < 1 {
            return Err("snapshot version must be at least 1".into());
        }
        for role in ["root", "targets"] {
            let m = self
                .meta
                .get(role)
                .ok_or_else(|| format!("snapshot has no {role} meta"))?;
            if m.hashes.get("sha256").map(Vec::len) != Some(32) {
                return Err(format!("snapshot {role} meta has no valid sha256"));
            }
        }
        for (role, m) in &self.meta {
            if m.length < 0 {
                return Err(format!(
                    "snapshot {role} meta has negative length {}",
                    m.length
                ));
            }
            if m.hashes.iter().any(|(alg, d)| {
                (alg == "sha256" && d.len() != 32) || (alg == "sha512" && d.len() != 64)
            }) {
                return Err(format!(
                    "snapshot {role} meta has a checksum of the wrong length"
                ));
            }
        }
        Ok(())
    }
}

/// The timestamp role: hash and length of the current snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    pub version: i64,
    pub expires: String,
    pub meta: BTreeMap<String, FileMeta>,
}

impl RoleBody for Timestamp {
    const TYPE: &'static str = "Timestamp";

    fn from_signed(v: &Value) -> Result<Self, Error> {
        let f = Fields::of("timestamp", v)?;
        let (version, expires) = f.header(Self::TYPE)?;
        Ok(Timestamp {
            version,
            expires,
            meta: meta_map("timestamp meta", f.object_or_empty("meta")?)?,
        })
    }

    fn to_signed(&self) -> Value {
        let mut m = header_value(Self::TYPE, self.version, &self.expires);
        m.insert("meta", meta_value(&self.meta));
        Value::Object(m)
    }

    fn version(&self) -> i64 {
        self.version
    }

    fn expires(&self) -> &str {
        &self.expires
    }
}

impl Timestamp {
    /// The snapshot entry, which must carry a sha256 of 32 bytes.
    pub fn snapshot_meta(&self) -> Result<&FileMeta, String> {
        let m = self
            .meta
            .get("snapshot")
            .ok_or("timestamp has no snapshot meta")?;
        if m.hashes.get("sha256").map(Vec::len) != Some(32) {
            return Err("timestamp snapshot meta has no valid sha256".into());
        }
        Ok(m)
    }
}
