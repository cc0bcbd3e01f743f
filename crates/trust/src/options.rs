use std::sync::Arc;
use std::time::SystemTime;

use crate::error::{Error, Result};

/// The algorithm of the timestamp and snapshot keys the server creates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA P-256, Notary's default for its remote signer.
    #[default]
    Ecdsa,
    Ed25519,
}

impl KeyAlgorithm {
    /// The Notary key type name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Ecdsa => "ecdsa",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ecdsa" => Ok(KeyAlgorithm::Ecdsa),
            "ed25519" => Ok(KeyAlgorithm::Ed25519),
            other => Err(Error::Crypto(format!(
                "unsupported trust key algorithm {other:?} (ecdsa or ed25519)"
            ))),
        }
    }
}

/// Where a service reads wall-clock time: expiry checks and the expiries it writes. Injectable so
/// tests can move past a timestamp's 14 days (or a token's minutes: `berth-access` uses it too).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Clock(Arc::new(SystemTime::now))
    }

    pub fn from_fn(f: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    pub fn now(&self) -> SystemTime {
        (self.0)()
    }

    /// Unix seconds (0 before 1970).
    pub fn secs(&self) -> i64 {
        self.now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    /// Unix milliseconds (0 before 1970).
    pub fn millis(&self) -> i64 {
        self.now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock(..)")
    }
}

/// Service configuration.
#[derive(Debug, Clone, Default)]
pub struct TrustOptions {
    pub key_algorithm: KeyAlgorithm,
    pub clock: Clock,
}
