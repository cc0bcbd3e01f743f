//! Password and secret handling: argon2id PHC hashes, generated secrets, constant-time compare.
//!
//! Only hashes are stored. Verification recomputes the hash with the parameters in the PHC
//! string and compares outputs in constant time (argon2's `Output` equality), so timing does not
//! reveal how much of a guess was right.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{Error as PhcError, PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::subtle::ConstantTimeEq as _;

use crate::Error;

/// Bytes of entropy in a generated secret (256 bits → 43 URL-safe characters).
pub const SECRET_BYTES: usize = 32;

/// argon2id with the library's defaults (19 MiB, 2 passes, 1 lane: OWASP's minimum), fixed
/// here so a library upgrade cannot silently weaken new hashes.
fn hasher() -> Result<Argon2<'static>, Error> {
    let params =
        Params::new(19 * 1024, 2, 1, None).map_err(|e| Error::PasswordHash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with a fresh random salt into a PHC string (`$argon2id$v=19$m=…`).
pub fn hash_password(password: &str) -> Result<String, Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| Error::Rng)?;
    let hash = hasher()?
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| Error::PasswordHash(e.to_string()))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the stored PHC string. A wrong password is `Ok(false)`; a stored
/// hash that cannot be parsed or uses another algorithm is an error (a data problem, not a
/// failed login).
pub fn verify_password(password: &str, phc: &str) -> Result<bool, Error> {
    let parsed = PasswordHash::new(phc).map_err(|e| Error::PasswordHash(e.to_string()))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(Error::PasswordHash(format!(
            "expected argon2id, found {}",
            parsed.algorithm
        )));
    }
    // Parameters come from the stored string; the verifier's own are not used.
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(PhcError::PasswordInvalid) => Ok(false),
        Err(e) => Err(Error::PasswordHash(e.to_string())),
    }
}

/// Spends what verifying `password` against a stored hash would, for names that have none, so
/// the time of a refusal does not tell whether the name exists. The reference hash is made once
/// per process with the same parameters as stored ones.
pub fn equalize_timing(password: &str) {
    static REFERENCE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if let Some(h) = REFERENCE.get_or_init(|| hash_password("berth timing reference").ok()) {
        let _ = verify_password(password, h);
    }
}

/// A new random secret (service-principal and token passwords, refresh-token ids): 256 bits,
/// URL-safe base64 without padding.
pub fn generate_secret() -> Result<String, Error> {
    let mut b = zeroize::Zeroizing::new([0u8; SECRET_BYTES]);
    getrandom::fill(b.as_mut()).map_err(|_| Error::Rng)?;
    Ok(URL_SAFE_NO_PAD.encode(b.as_ref()))
}

/// Fewest characters of a password a person chooses (users, the bootstrap owner). Service
/// principals, tokens and the admin account get generated 43-character secrets instead.
pub const MIN_USER_PASSWORD_CHARS: usize = 12;
/// Longest password accepted when one is set: bounds the hashing input (argon2 hashes any
/// length; nobody types more).
pub const MAX_USER_PASSWORD_BYTES: usize = 1024;

/// Why a password a person chose is refused, or `None` if it is acceptable. The text never
/// repeats the password.
pub fn user_password_problem(password: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < MIN_USER_PASSWORD_CHARS {
        return Some(format!(
            "too short: a password needs at least {MIN_USER_PASSWORD_CHARS} characters (this one has {chars})"
        ));
    }
    if password.len() > MAX_USER_PASSWORD_BYTES {
        return Some(format!(
            "too long: a password may have at most {MAX_USER_PASSWORD_BYTES} bytes"
        ));
    }
    if password.chars().any(char::is_control) {
        return Some("a password may not contain control characters (newlines, tabs)".into());
    }
    None
}

/// Compares two secrets without an early exit on the first differing byte. Lengths are not
/// secret (they are fixed by format), so unequal lengths return `false` at once.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse battery staple", &h).unwrap());
        assert!(!verify_password("correct horse battery stapl", &h).unwrap());
        assert!(!verify_password("", &h).unwrap());
        // Fresh salt each time.
        assert_ne!(h, hash_password("correct horse battery staple").unwrap());
    }

    #[test]
    fn empty_and_unicode_passwords() {
        let h = hash_password("").unwrap();
        assert!(verify_password("", &h).unwrap());
        assert!(!verify_password(" ", &h).unwrap());
        let h = hash_password("pässwört🔑").unwrap();
        assert!(verify_password("pässwört🔑", &h).unwrap());
        assert!(!verify_password("passwort🔑", &h).unwrap());
    }

    #[test]
    fn verifies_hashes_with_other_parameters() {
        // Stored hashes keep working if the defaults change: parameters come from the string.
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        );
        let h = cheap
            .hash_password_with_salt(b"pw", b"0123456789abcdef")
            .unwrap()
            .to_string();
        assert!(verify_password("pw", &h).unwrap());
        assert!(!verify_password("pW", &h).unwrap());
    }

    #[test]
    fn malformed_or_foreign_hashes_are_errors() {
        for bad in [
            "",
            "plaintext",
            "$argon2id$",
            "$2b$12$abcdefghijklmnopqrstuv",
        ] {
            assert!(verify_password("x", bad).is_err(), "{bad}");
        }
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password_with_salt(b"pw", b"0123456789abcdef")
        .unwrap()
        .to_string();
        assert!(verify_password("pw", &argon2i).is_err());
    }

    #[test]
    fn equalizing_timing_costs_a_verification() {
        let h = hash_password("pw").unwrap();
        equalize_timing("warm up");
        let t = std::time::Instant::now();
        verify_password("nope", &h).unwrap();
        let verify = t.elapsed();
        let t = std::time::Instant::now();
        equalize_timing("nope");
        let equalized = t.elapsed();
        // Same work; only a gross difference (a skipped hash) would fail this.
        assert!(equalized * 20 > verify, "{equalized:?} vs {verify:?}");
    }

    #[test]
    fn generated_secrets() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), SECRET_BYTES);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn user_password_policy() {
        assert!(user_password_problem("0123456789a").is_some_and(|m| m.contains("at least 12")));
        assert!(
            !user_password_problem("0123456789a")
                .unwrap()
                .contains("0123")
        );
        assert_eq!(user_password_problem("0123456789ab"), None);
        // Characters, not bytes: 12 non-ASCII characters are enough, 11 are not.
        assert_eq!(user_password_problem(&"ä".repeat(12)), None);
        assert!(user_password_problem(&"ä".repeat(11)).is_some());
        assert!(user_password_problem(&"x".repeat(MAX_USER_PASSWORD_BYTES + 1)).is_some());
        assert!(user_password_problem("good-password\nsecond").is_some());
        // Generated secrets always pass.
        assert_eq!(user_password_problem(&generate_secret().unwrap()), None);
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(constant_time_eq(b"", b""));
    }
}
