//! Shared machinery for the typed role bodies.

use std::time::SystemTime;

use berth_cjson::{Map, Value};
use berth_crypto::PrivateKey;

use crate::Error;
use crate::signed::Envelope;

/// A role body (`signed`) with a typed model. Parsing drops unknown fields, as Notary's Go
/// structs do; signatures are still checked over the generic value, so they stay covered.
pub trait RoleBody: Sized {
    /// The `_type` value (`"Root"`, `"Targets"`, `"Snapshot"`, `"Timestamp"`).
    const TYPE: &'static str;
    fn from_signed(v: &Value) -> Result<Self, Error>;
    fn to_signed(&self) -> Value;
    fn version(&self) -> i64;
    fn expires(&self) -> &str;

    /// `expires` as a time.
    fn expires_at(&self) -> Result<SystemTime, Error> {
        crate::time::parse_rfc3339(self.expires())
    }

    /// Whether the role has expired at `now`.
    fn is_expired(&self, now: SystemTime) -> Result<bool, Error> {
        Ok(self.expires_at()? <= now)
    }
}

/// A typed role together with the envelope (and exact bytes) it came from.
#[derive(Debug, Clone)]
pub struct Signed<T> {
    pub envelope: Envelope,
    pub body: T,
}

impl<T: RoleBody> Signed<T> {
    /// Parses a file and its body, checking `_type`.
    pub fn parse(raw: &[u8]) -> Result<Self, Error> {
        let envelope = Envelope::parse(raw)?;
        let body = T::from_signed(envelope.signed())?;
        Ok(Signed { envelope, body })
    }

    /// Signs `body` with `keys` and writes it as Notary would.
    pub fn sign(body: T, keys: &[&PrivateKey]) -> Result<Self, Error> {
        let envelope = Envelope::sign(body.to_signed(), keys)?;
        Ok(Signed { envelope, body })
    }

    /// Signs `body` under the IDs of the listed public keys (see [`Envelope::sign_as`]).
    pub fn sign_as(
        body: T,
        signers: &[(&PrivateKey, &berth_crypto::PublicKey)],
    ) -> Result<Self, Error> {
        let envelope = Envelope::sign_as(body.to_signed(), signers)?;
        Ok(Signed { envelope, body })
    }

    pub fn raw(&self) -> &[u8] {
        self.envelope.raw()
    }
}

/// Field access on a `signed` object with errors naming the role type.
pub(crate) struct Fields<'a> {
    pub what: &'static str,
    pub obj: &'a Map,
}

impl<'a> Fields<'a> {
    pub fn of(what: &'static str, v: &'a Value) -> Result<Self, Error> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::malformed(what, "not an object"))?;
        Ok(Fields { what, obj })
    }

    fn missing(&self, key: &str, ty: &str) -> Error {
        Error::malformed(self.what, format!("{key} missing or not {ty}"))
    }

    pub fn str(&self, key: &str) -> Result<&'a str, Error> {
        self.obj
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| self.missing(key, "a string"))
    }

    pub fn int(&self, key: &str) -> Result<i64, Error> {
        self.obj
            .get(key)
            .and_then(Value::as_i64)
            .ok_or_else(|| self.missing(key, "an integer"))
    }

    /// Like Go, a JSON `null` (or absence) reads as an empty map.
    pub fn object_or_empty(&self, key: &str) -> Result<Option<&'a Map>, Error> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(self.missing(key, "an object")),
        }
    }

    /// Like Go, a JSON `null` (or absence) reads as an empty list.
    pub fn array_or_empty(&self, key: &str) -> Result<&'a [Value], Error> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(self.missing(key, "an array")),
        }
    }

    /// Checks `_type` and returns `(version, expires)`; `expires` must parse.
    pub fn header(&self, ty: &str) -> Result<(i64, String), Error> {
        let t = self.str("_type")?;
        if t != ty {
            return Err(Error::malformed(
                self.what,
                format!("_type is {t:?}, expected {ty:?}"),
            ));
        }
        let expires = self.str("expires")?.to_owned();
        crate::time::parse_rfc3339(&expires)?;
        Ok((self.int("version")?, expires))
    }
}

pub(crate) fn string_list(what: &'static str, v: &[Value]) -> Result<Vec<String>, Error> {
    v.iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .ok_or_else(|| Error::malformed(what, "list entry is not a string"))
        })
        .collect()
}

pub(crate) fn header_value(ty: &str, version: i64, expires: &str) -> Map {
    let mut m = Map::new();
    m.insert("_type", ty);
    m.insert("expires", expires);
    m.insert("version", version);
    m
}
