//! Shared fixtures of the fuzz targets: the fixed clock and stored repository states of the TUF
//! target, the fixed token keys of the JWT target, and input splitting.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use berth_tuf::{RoleName, Root, Signed};

/// Splits `data` at its first newline: (the line, the rest). No newline: (empty, all of it).
pub fn first_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[], data),
    }
}

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!(
                "../../crates/tuf/tests/fixtures/notary/metadata/",
                $name
            ))
            .as_slice(),
        )
    };
}

/// The repository the notary CLI made (crates/tuf/tests/fixtures/notary): its GUN.
pub const GUN: &str = "localhost:5000/berth/demo";

/// Fixture files by `<version>.<role with / as __>.json`.
const FIXTURES: &[(&str, &[u8])] = &[
    fixture!("1.root.json"),
    fixture!("4.root.json"),
    fixture!("5.targets.json"),
    fixture!("6.targets.json"),
    fixture!("1.targets__releases.json"),
    fixture!("2.targets__releases.json"),
    fixture!("1.targets__rsa.json"),
    fixture!("1.targets__releases__qa.json"),
    fixture!("5.snapshot.json"),
    fixture!("9.snapshot.json"),
    fixture!("12.snapshot.json"),
];

fn fixture(name: &str) -> (RoleName, Vec<u8>) {
    let (_, bytes) = FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("fixture {name} is not embedded"));
    let role = name
        .split_once('.')
        .and_then(|(_, r)| r.strip_suffix(".json"))
        .map(|r| r.replace("__", "/"))
        .unwrap_or_else(|| panic!("fixture name {name}"));
    (
        RoleName::parse(&role).expect("fixture role"),
        bytes.to_vec(),
    )
}

/// Stored states an upload is validated against: none (first publish), and the repository as
/// its snapshots 5 (root and targets), 9 (three delegations) and 12 (rotated root) left it.
pub fn stored_states() -> &'static [BTreeMap<RoleName, Vec<u8>>] {
    static STATES: OnceLock<Vec<BTreeMap<RoleName, Vec<u8>>>> = OnceLock::new();
    STATES.get_or_init(|| {
        let state = |names: &[&str]| names.iter().map(|n| fixture(n)).collect();
        vec![
            BTreeMap::new(),
            state(&["1.root.json", "5.targets.json", "5.snapshot.json"]),
            state(&[
                "1.root.json",
                "5.targets.json",
                "2.targets__releases.json",
                "1.targets__rsa.json",
                "1.targets__releases__qa.json",
                "9.snapshot.json",
            ]),
            state(&[
                "4.root.json",
                "6.targets.json",
                "2.targets__releases.json",
                "1.targets__rsa.json",
                "1.targets__releases__qa.json",
                "12.snapshot.json",
            ]),
        ]
    })
}

/// The fixed clock of the TUF target: an hour after the fixture repository's root certificate
/// became valid, so the real files are current and the fuzzer's mutations decide.
pub fn tuf_now() -> SystemTime {
    static NOW: OnceLock<SystemTime> = OnceLock::new();
    *NOW.get_or_init(|| {
        let (_, raw) = fixture("1.root.json");
        let root = Signed::<Root>::parse(&raw)
            .expect("fixture root parses")
            .body;
        let id = &root.roles["root"].keyids[0];
        let cert = &berth_crypto::x509::parse_pem_bundle(root.keys[id].public_bytes())
            .expect("fixture root certificate")[0];
        cert.not_before + Duration::from_secs(3600)
    })
}

/// The token keys of the JWT target: fixed scalars, so a corpus token signed once verifies on
/// every run. Test keys only; they protect nothing.
pub struct TokenKeys {
    /// The key the verifier trusts.
    pub trusted: p256::ecdsa::SigningKey,
    /// A key it does not: tokens it signs must be refused even under the trusted key's `kid`.
    pub stranger: p256::ecdsa::SigningKey,
    pub verifying: berth_auth::TokenVerifyingKey,
}

pub fn token_keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        use p256::pkcs8::EncodePublicKey as _;
        let scalar = |label: &[u8]| {
            use sha2::Digest as _;
            let seed = sha2::Sha256::digest(label);
            p256::ecdsa::SigningKey::from_slice(&seed).expect("a valid scalar")
        };
        let trusted = scalar(b"berth fuzz: trusted token key");
        let stranger = scalar(b"berth fuzz: untrusted token key");
        let spki = trusted
            .verifying_key()
            .to_public_key_der()
            .expect("SPKI encodes");
        let verifying =
            berth_auth::TokenVerifyingKey::from_spki_der(spki.as_bytes()).expect("SPKI parses");
        TokenKeys {
            trusted,
            stranger,
            verifying,
        }
    })
}

/// The JWT target's verifier settings: Berth's issuer and a fixed audience (the seed script
/// rewrites real tokens' `aud` to it).
pub const JWT_ISSUER: &str = "berth";
pub const JWT_AUDIENCE: &str = "berth-fuzz";
/// The JWT target's clock when the input does not start with one.
pub const JWT_NOW: i64 = 1_780_000_000;

/// `v` with every object's members in canonical (byte-wise key) order, as parsing the canonical
/// form yields them: `Value` equality also compares member order, which the Go form keeps.
pub fn sorted(v: &berth_cjson::Value) -> berth_cjson::Value {
    use berth_cjson::{Map, Value};
    match v {
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, item) in m.sorted() {
                out.insert(k, sorted(item));
            }
            Value::Object(out)
        }
        scalar => scalar.clone(),
    }
}
