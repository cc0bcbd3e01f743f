//! The targets role and its delegations (delegated roles share the same body).

use std::collections::BTreeMap;

use berth_cjson::{Map, Value};
use berth_crypto::PublicKey;

use crate::Error;
use crate::meta::FileMeta;
use crate::metadata::{Fields, RoleBody, header_value, string_list};
use crate::role::RoleName;
use crate::root::{RoleKeys, keys_from, keys_value};
use crate::verify::KeyRole;

/// One entry of `delegations.roles`. There is no `path_hash_prefixes` in Notary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationRole {
    pub name: String,
    pub keys: RoleKeys,
    /// Target path prefixes; `""` allows every path. Omitted from JSON when empty.
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delegations {
    pub keys: BTreeMap<String, PublicKey>,
    pub roles: Vec<DelegationRole>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    pub version: i64,
    pub expires: String,
    pub targets: BTreeMap<String, FileMeta>,
    pub delegations: Delegations,
}

impl RoleBody for Targets {
    const TYPE: &'static str = "Targets";

    fn from_signed(v: &Value) -> Result<Self, Error> {
        let f = Fields::of("targets", v)?;
        let (version, expires) = f.header(Self::TYPE)?;
        let mut targets = BTreeMap::new();
        for (name, m) in f
            .object_or_empty("targets")?
            .into_iter()
            .flat_map(Map::iter)
        {
            targets.insert(name.to_owned(), FileMeta::from_value("target", m)?);
        }
        let delegations = match f.object_or_empty("delegations")? {
            None => Delegations::default(),
            Some(d) => {
                let dv = Value::Object(d.clone());
                let df = Fields::of("delegations", &dv)?;
                let roles = df
                    .array_or_empty("roles")?
                    .iter()
                    .map(|r| {
                        let rf = Fields::of("delegation role", r)?;
                        Ok(DelegationRole {
                            name: rf.str("name")?.to_owned(),
                            keys: RoleKeys::from_value("delegation role", r)?,
                            paths: string_list("delegation role", rf.array_or_empty("paths")?)?,
                        })
                    })
                    .collect::<Result<_, Error>>()?;
                Delegations {
                    keys: keys_from("delegations", df.object_or_empty("keys")?)?,
                    roles,
                }
            }
        };
        Ok(Targets {
            version,
            expires,
            targets,
            delegations,
        })
    }

    fn to_signed(&self) -> Value {
        let mut m = header_value(Self::TYPE, self.version, &self.expires);
        let roles = self
            .delegations
            .roles
            .iter()
            .map(|r| {
                let mut rm = Map::new();
                r.keys.insert_into(&mut rm);
                rm.insert("name", r.name.as_str());
                if !r.paths.is_empty() {
                    rm.insert(
                        "paths",
                        Value::Array(r.paths.iter().map(|p| Value::from(p.as_str())).collect()),
                    );
                }
                Value::Object(rm)
            })
            .collect::<Vec<_>>();
        let mut d = Map::new();
        d.insert("keys", keys_value(&self.delegations.keys));
        d.insert("roles", Value::Array(roles));
        m.insert("delegations", d);
        m.insert(
            "targets",
            self.targets
                .iter()
                .map(|(k, v)| (k.clone(), v.to_value()))
                .collect::<Map>(),
        );
        Value::Object(m)
    }

    fn version(&self) -> i64 {
        self.version
    }

    fn expires(&self) -> &str {
        &self.expires
    }
}

impl Targets {
    /// Notary's structural rules for a targets-type role named `role`: version ≥ 1, and every
    /// delegation a valid, direct child of `role` with threshold ≥ 1 and keys that exist. Beyond
    /// Notary: no target may state a negative length (clients use it to bound downloads).
    pub fn validate_structure(&self, role: &RoleName) -> Result<(), String> {
        if self.version < 1 {
            return Err(format!("{role} version must be at least 1"));
        }
        if let Some((name, m)) = self.targets.iter().find(|(_, m)| m.length < 0) {
            return Err(format!(
                "{role} target {name:?} has negative length {}",
                m.length
            ));
        }
        for d in &self.delegations.roles {
            let name = RoleName::parse(&d.name).map_err(|e| e.to_string())?;
            if name.parent().as_ref() != Some(role) {
                return Err(format!(
                    "delegation {} is not a direct child of {role}",
                    d.name
                ));
            }
            if d.keys.threshold < 1 {
                return Err(format!(
                    "delegation {} has invalid threshold {}",
                    d.name, d.keys.threshold
                ));
            }
            if let Some(id) = d
                .keys
                .keyids
                .iter()
                .find(|id| !self.delegations.keys.contains_key(*id))
            {
                return Err(format!(
                    "delegation {} lists key {id}, which is not defined",
                    d.name
                ));
            }
        }
        Ok(())
    }

    /// The declaration of a delegated child role.
    pub fn delegation(&self, child: &RoleName) -> Option<&DelegationRole> {
        self.delegations
            .roles
            .iter()
            .find(|d| d.name == child.as_str())
    }

    /// The keys and threshold that sign `child`, as declared here.
    pub fn key_role(&self, child: &RoleName) -> Option<KeyRole> {
        let d = self.delegation(child)?;
        Some(KeyRole::new(
            child.as_str(),
            &d.keys,
            &self.delegations.keys,
        ))
    }
}

impl DelegationRole {
    /// Whether `target` is within this role's paths (string prefix; `""` matches all).
    pub fn allows_path(&self, target: &str) -> bool {
        self.paths.iter().any(|p| target.starts_with(p.as_str()))
    }
}
