//! Checking content against the descriptor that names it: digest and size, streamed.

use berth_oci::{Digest, Digester};

use crate::error::{Error, Result};

/// Hashes bytes as they pass and checks them against an expected digest and size. Refuses
/// bytes beyond the expected size at once, so a hostile server can't fill the disk.
pub struct Verifier {
    what: String,
    expected: Digest,
    size: u64,
    seen: u64,
    hasher: Digester,
}

impl Verifier {
    pub fn new(what: impl Into<String>, expected: &Digest, size: u64) -> Verifier {
        Verifier {
            what: what.into(),
            expected: expected.clone(),
            size,
            seen: 0,
            hasher: Digester::new(expected.algorithm()),
        }
    }

    pub fn update(&mut self, data: &[u8]) -> Result<()> {
        self.seen += data.len() as u64;
        if self.seen > self.size {
            return Err(Error::SizeMismatch {
                what: self.what.clone(),
                expected: self.size,
                actual: self.seen,
            });
        }
        self.hasher.update(data);
        Ok(())
    }

    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn finish(self) -> Result<()> {
        if self.seen != self.size {
            return Err(Error::SizeMismatch {
                what: self.what,
                expected: self.size,
                actual: self.seen,
            });
        }
        let actual = self.hasher.finish();
        if actual != self.expected {
            return Err(Error::DigestMismatch {
                what: self.what,
                expected: self.expected,
                actual,
            });
        }
        Ok(())
    }
}

/// Checks a whole buffer (manifests).
pub fn check_bytes(what: &str, expected: &Digest, size: u64, data: &[u8]) -> Result<()> {
    let mut v = Verifier::new(what, expected, size);
    v.update(data)?;
    v.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_oci::Algorithm;

    #[test]
    fn accepts_the_right_bytes_in_any_chunking() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let d = Digest::of(alg, &data);
            let mut v = Verifier::new("blob", &d, data.len() as u64);
            for c in data.chunks(777) {
                v.update(c).unwrap();
            }
            v.finish().unwrap();
        }
    }

    #[test]
    fn refuses_tampered_short_and_long_content() {
        let data = b"layer contents".to_vec();
        let d = Digest::sha256_of(&data);
        let mut tampered = data.clone();
        tampered[3] ^= 1;
        assert!(matches!(
            check_bytes("x", &d, data.len() as u64, &tampered),
            Err(Error::DigestMismatch { .. })
        ));
        assert!(matches!(
            check_bytes("x", &d, data.len() as u64, &data[..5]),
            Err(Error::SizeMismatch { actual: 5, .. })
        ));
        let mut long = data.clone();
        long.push(0);
        let mut v = Verifier::new("x", &d, data.len() as u64);
        assert!(matches!(v.update(&long), Err(Error::SizeMismatch { .. })));
        // The right bytes under a wrong declared size are refused too.
        assert!(check_bytes("x", &d, data.len() as u64 + 1, &data).is_err());
        check_bytes("x", &d, data.len() as u64, &data).unwrap();
    }
}
