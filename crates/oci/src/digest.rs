//! Content digests (`algorithm:encoded`) and a streaming hasher for the algorithms we can verify.

// Request input is parsed here: a malformed value must be an error, never a panic.
#![warn(clippy::unwrap_used, clippy::indexing_slicing)]

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::error::{Error, ErrorCode};

/// The digest algorithms Berth can compute, and so accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            other => Err(Error::new(
                ErrorCode::DigestInvalid,
                format!("unsupported digest algorithm {other:?} (supported: sha256, sha512)"),
            )),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated digest. The encoded part is always lowercase hex of the right length, which also
/// makes it safe to use as a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Digest of a byte slice (manifests, small test data).
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut d = Digester::new(algorithm);
        d.update(data);
        d.finish()
    }

    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, data)
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |why: &str| {
            Error::new(
                ErrorCode::DigestInvalid,
                format!("invalid digest {s:?}: {why}"),
            )
        };
        let (alg, enc) = s.split_once(':').ok_or_else(|| invalid("missing ':'"))?;
        if alg.is_empty()
            || !alg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
        {
            return Err(invalid("malformed algorithm"));
        }
        let algorithm = Algorithm::parse(alg)?;
        if enc.len() != algorithm.hex_len() {
            return Err(invalid("wrong length for algorithm"));
        }
        if !enc
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid("encoded part must be lowercase hex"));
        }
        Ok(Digest {
            algorithm,
            hex: enc.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Tags of a saved hash state (see [`Digester::save`]).
const STATE_SHA256: u8 = 1;
const STATE_SHA512: u8 = 2;

/// Incremental hashing while a blob streams through.
#[derive(Clone)]
pub enum Digester {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Digester {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Digester::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Digester::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Digester::Sha256(_) => Algorithm::Sha256,
            Digester::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Digester::Sha256(h) => h.update(data),
            Digester::Sha512(h) => h.update(data),
        }
    }

    /// The running hash as bytes (an algorithm tag, then the hash's own serialized state), so
    /// an upload can continue in another process, or another node, from where this one stopped.
    pub fn save(&self) -> Vec<u8> {
        use sha2::digest::common::hazmat::SerializableState;
        let (tag, state) = match self {
            Digester::Sha256(h) => (STATE_SHA256, h.serialize().to_vec()),
            Digester::Sha512(h) => (STATE_SHA512, h.serialize().to_vec()),
        };
        let mut out = Vec::with_capacity(state.len() + 1);
        out.push(tag);
        out.extend_from_slice(&state);
        out
    }

    /// A hash saved by [`Digester::save`]; `None` when the bytes are not such a state.
    pub fn restore(saved: &[u8]) -> Option<Digester> {
        use sha2::digest::common::hazmat::SerializableState;
        let (tag, state) = saved.split_first()?;
        match *tag {
            STATE_SHA256 => sha2::Sha256::deserialize(state.try_into().ok()?)
                .ok()
                .map(Digester::Sha256),
            STATE_SHA512 => sha2::Sha512::deserialize(state.try_into().ok()?)
                .ok()
                .map(Digester::Sha512),
            _ => None,
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Digester::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Digester::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_saved_hash_continues_where_it_stopped() {
        for alg in [super::Algorithm::Sha256, super::Algorithm::Sha512] {
            let data: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
            // Cut inside a block, so the buffered tail must travel with the state.
            let mut a = super::Digester::new(alg);
            a.update(&data[..77]);
            let saved = a.save();
            let mut b = super::Digester::restore(&saved).expect("restores");
            b.update(&data[77..]);
            assert_eq!(b.finish(), super::Digest::of(alg, &data));
            assert!(super::Digester::restore(&saved[..saved.len() - 1]).is_none());
            assert!(super::Digester::restore(&[9, 1, 2]).is_none());
            assert!(super::Digester::restore(&[]).is_none());
        }
    }

    use super::*;

    #[test]
    fn parses_and_prints() {
        let s = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let d: Digest = s.parse().unwrap();
        assert_eq!(d.to_string(), s);
        assert_eq!(Digest::sha256_of(b""), d);
    }

    #[test]
    fn sha512_of_empty() {
        let d = Digest::of(Algorithm::Sha512, b"");
        assert!(d.to_string().starts_with("sha512:cf83e1357eefb8bd"));
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:../../../../etc/passwd/0000000000000000000000000000000000000000",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85z",
        ] {
            let err = bad.parse::<Digest>().unwrap_err();
            assert_eq!(err.code, ErrorCode::DigestInvalid, "{bad}");
        }
    }

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut d = Digester::new(Algorithm::Sha256);
        for chunk in data.chunks(333) {
            d.update(chunk);
        }
        assert_eq!(d.finish(), Digest::sha256_of(&data));
    }
}
