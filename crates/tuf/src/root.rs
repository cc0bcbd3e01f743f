//! The root role.

use std::collections::BTreeMap;

use berth_cjson::{Map, Value};
use berth_crypto::PublicKey;

use crate::Error;
use crate::metadata::{Fields, RoleBody, header_value, string_list};
use crate::role::RoleName;
use crate::verify::KeyRole;

/// `{"keyids":[...],"threshold":n}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: i64,
}

impl RoleKeys {
    pub(crate) fn from_value(what: &'static str, v: &Value) -> Result<Self, Error> {
        let f = Fields::of(what, v)?;
        Ok(RoleKeys {
            keyids: string_list(what, f.array_or_empty("keyids")?)?,
            threshold: f.int("threshold")?,
        })
    }

    pub(crate) fn insert_into(&self, m: &mut Map) {
        m.insert(
            "keyids",
            Value::Array(
                self.keyids
                    .iter()
                    .map(|k| Value::from(k.as_str()))
                    .collect(),
            ),
        );
        m.insert("threshold", self.threshold);
    }
}

/// Parses a `keys` map of key objects.
pub(crate) fn keys_from(
    what: &'static str,
    m: Option<&Map>,
) -> Result<BTreeMap<String, PublicKey>, Error> {
    let mut out = BTreeMap::new();
    for (id, k) in m.into_iter().flat_map(Map::iter) {
        let key = PublicKey::from_value(k)
            .map_err(|e| Error::malformed(what, format!("key {id}: {e}")))?;
        out.insert(id.to_owned(), key);
    }
    Ok(out)
}

pub(crate) fn keys_value(keys: &BTreeMap<String, PublicKey>) -> Map {
    keys.iter()
        .map(|(id, k)| (id.clone(), k.to_value()))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub version: i64,
    pub expires: String,
    pub consistent_snapshot: bool,
    pub keys: BTreeMap<String, PublicKey>,
    /// Role name to keys and threshold; the four base roles are required.
    pub roles: BTreeMap<String, RoleKeys>,
}

impl RoleBody for Root {
    const TYPE: &'static str = "Root";

    fn from_signed(v: &Value) -> Result<Self, Error> {
        let f = Fields::of("root", v)?;
        let (version, expires) = f.header(Self::TYPE)?;
        let consistent_snapshot = match f.obj.get("consistent_snapshot") {
            None | Some(Value::Null) => false,
            Some(b) => b
                .as_bool()
                .ok_or_else(|| Error::malformed("root", "consistent_snapshot is not a bool"))?,
        };
        let mut roles = BTreeMap::new();
        for (name, r) in f.object_or_empty("roles")?.into_iter().flat_map(Map::iter) {
            roles.insert(name.to_owned(), RoleKeys::from_value("root role", r)?);
        }
        Ok(Root {
            version,
            expires,
            consistent_snapshot,
            keys: keys_from("root", f.object_or_empty("keys")?)?,
            roles,
        })
    }

    fn to_signed(&self) -> Value {
        let mut m = header_value(Self::TYPE, self.version, &self.expires);
        m.insert("consistent_snapshot", self.consistent_snapshot);
        m.insert("keys", keys_value(&self.keys));
        let roles: Map = self
            .roles
            .iter()
            .map(|(n, r)| {
                let mut rm = Map::new();
                r.insert_into(&mut rm);
                (n.clone(), Value::Object(rm))
            })
            .collect();
        m.insert("roles", roles);
        Value::Object(m)
    }

    fn version(&self) -> i64 {
        self.version
    }

    fn expires(&self) -> &str {
        &self.expires
    }
}

impl Root {
    /// Notary's structural rules: version ≥ 1, all four base roles present with threshold ≥ 1,
    /// and every listed key ID present in `keys`.
    pub fn validate_structure(&self) -> Result<(), String> {
        if self.version < 1 {
            return Err("root version must be at least 1".into());
        }
        for base in ["root", "targets", "snapshot", "timestamp"] {
            let r = self
                .roles
                .get(base)
                .ok_or_else(|| format!("root is missing the {base} role"))?;
            if r.threshold < 1 {
                return Err(format!("{base} role has invalid threshold {}", r.threshold));
            }
            if let Some(id) = r.keyids.iter().find(|id| !self.keys.contains_key(*id)) {
                return Err(format!(
                    "{base} role lists key {id}, which root does not define"
                ));
            }
        }
        Ok(())
    }

    /// The keys and threshold of a base role, for signature verification.
    pub fn key_role(&self, role: &RoleName) -> Result<KeyRole, Error> {
        let r = self
            .roles
            .get(role.as_str())
            .ok_or_else(|| Error::malformed("root", format!("no {role} role")))?;
        Ok(KeyRole::new(role.as_str(), r, &self.keys))
    }
}
