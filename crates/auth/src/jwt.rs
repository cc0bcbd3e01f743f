//! ES256 compact JWS tokens in the shape docker/distribution and notary-server verify.
//!
//! ```text
//!   base64url(header) . base64url(claims) . base64url(r ‖ s)
//!   header = {"alg":"ES256","typ":"JWT","kid":"ABCD:EFGH:…","x5c":["<base64 DER cert>"]}
//!   claims = {"iss","sub","aud","exp","nbf","iat","jti","access":[{"type","name","actions"}]}
//! ```
//!
//! Only ES256 is minted and only ES256 is accepted: `none`, HMAC and every other `alg` are
//! refused before any key is looked at, so a header swap cannot downgrade verification. Keys are
//! chosen by `kid` from the caller's trusted set; an embedded `jwk` or `x5c` is never trusted.
//!
//! The `kid` is libtrust's fingerprint, which distribution 2.x and notary-server index trusted
//! keys by: SHA-256 over the DER SubjectPublicKeyInfo, first 240 bits, base32 (RFC 4648
//! alphabet, no padding) → 48 characters, in 12 groups of 4 joined by `:`. The `x5c` leaf
//! certificate lets distribution 3.x (which indexes bundle keys by JWK thumbprint) verify too.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use serde::Deserializer;
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::Error;
use crate::scope::ResourceActions;

/// The one signature algorithm minted and accepted.
pub const ALGORITHM: &str = "ES256";
/// Clock skew tolerated on `exp`, `nbf` and `iat` (distribution uses the same minute).
pub const DEFAULT_LEEWAY_SECS: i64 = 60;
/// Tokens longer than this are refused before decoding (a large `access` list stays far below).
const MAX_TOKEN_LEN: usize = 64 * 1024;

/// The claim set of a registry access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    pub iss: String,
    /// The authenticated identity; empty for anonymous.
    pub sub: String,
    /// Serialized as a plain string when there is one audience, because older verifiers
    /// (distribution 2.6 era, vendored in notary-server) declare `aud` as a string.
    #[serde(serialize_with = "ser_audience")]
    pub aud: Vec<String>,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    pub access: Vec<ResourceActions>,
}

impl Claims {
    /// Claims valid from `now` for `ttl_secs`, with a fresh random `jti`.
    pub fn new(
        issuer: impl Into<String>,
        subject: impl Into<String>,
        audience: impl Into<String>,
        access: Vec<ResourceActions>,
        now: i64,
        ttl_secs: i64,
    ) -> Result<Self, Error> {
        Ok(Claims {
            iss: issuer.into(),
            sub: subject.into(),
            aud: vec![audience.into()],
            exp: now.saturating_add(ttl_secs),
            nbf: now,
            iat: now,
            jti: new_jti()?,
            access,
        })
    }
}

fn ser_audience<S: Serializer>(aud: &[String], s: S) -> Result<S::Ok, S::Error> {
    match aud {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}

/// A random token id (128 bits, base64url).
pub fn new_jti() -> Result<String, Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|_| Error::Rng)?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// libtrust's key ID for a DER SubjectPublicKeyInfo (see the module docs).
pub fn libtrust_kid(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let b32 = base32_nopad(&digest[..30]);
    let groups: Vec<&str> = b32
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    groups.join(":")
}

/// RFC 4648 base32 without padding; 30 bytes are exactly 48 characters, so no partial group
/// arises for kids, but the tail is handled for completeness.
fn base32_nopad(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for &b in data {
        acc = (acc << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// A public key trusted to verify tokens, with its libtrust `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenVerifyingKey {
    key: p256::ecdsa::VerifyingKey,
    kid: String,
}

impl TokenVerifyingKey {
    fn from_key(key: p256::ecdsa::VerifyingKey) -> Result<Self, Error> {
        let spki = key
            .to_public_key_der()
            .map_err(|e| Error::Key(e.to_string()))?;
        Ok(TokenVerifyingKey {
            kid: libtrust_kid(spki.as_bytes()),
            key,
        })
    }

    /// From a DER SubjectPublicKeyInfo of a P-256 key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, Error> {
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(der)
            .map_err(|e| Error::Key(format!("P-256 public key: {e}")))?;
        Self::from_key(key)
    }

    /// From a DER certificate (such as the `x5c` leaf) holding a P-256 key.
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, Error> {
        use x509_cert::der::{Decode as _, Encode as _};
        let cert =
            x509_cert::Certificate::from_der(der).map_err(|e| Error::Certificate(e.to_string()))?;
        let spki = cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|e| Error::Certificate(e.to_string()))?;
        Self::from_spki_der(&spki)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn spki_der(&self) -> Result<Vec<u8>, Error> {
        Ok(self
            .key
            .to_public_key_der()
            .map_err(|e| Error::Key(e.to_string()))?
            .into_vec())
    }

    /// The key as a JWK for a published JWKS.
    pub fn to_jwk(&self) -> Jwk {
        let point = self.key.to_sec1_point(false);
        let bytes = point.as_bytes();
        // Uncompressed SEC1: 0x04 ‖ x (32) ‖ y (32).
        Jwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: URL_SAFE_NO_PAD.encode(&bytes[1..33]),
            y: URL_SAFE_NO_PAD.encode(&bytes[33..65]),
            kid: self.kid.clone(),
            key_use: "sig".into(),
            alg: ALGORITHM.into(),
        }
    }
}

/// One entry of a JWK Set (RFC 7517) as published for token verifiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub y: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub key_use: String,
    pub alg: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// The JWKS document for `keys` (publish current and not-yet-expired retired keys).
pub fn jwks<'a>(keys: impl IntoIterator<Item = &'a TokenVerifyingKey>) -> Jwks {
    Jwks {
        keys: keys.into_iter().map(TokenVerifyingKey::to_jwk).collect(),
    }
}

/// The token service's signing key with its self-signed certificate (for `x5c`).
pub struct TokenSigningKey {
    key: p256::ecdsa::SigningKey,
    /// ring's form of `key`: it signs several times faster, and every token issued is signed.
    fast: Option<ring::signature::EcdsaKeyPair>,
    public: TokenVerifyingKey,
    certificate: Vec<u8>,
}

impl std::fmt::Debug for TokenSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret scalar.
        f.debug_struct("TokenSigningKey")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl TokenSigningKey {
    /// A fresh P-256 key and a self-signed certificate with subject `CN=<common_name>`, valid
    /// from `not_before` to `not_after` (Unix seconds).
    pub fn generate(common_name: &str, not_before: i64, not_after: i64) -> Result<Self, Error> {
        let key = loop {
            let mut seed = Zeroizing::new([0u8; 32]);
            getrandom::fill(seed.as_mut()).map_err(|_| Error::Rng)?;
            // Out-of-range scalars (zero, ≥ n) have probability ~2^-32; draw again.
            if let Ok(k) = p256::ecdsa::SigningKey::from_slice(seed.as_ref()) {
                break k;
            }
        };
        let certificate = self_signed_certificate(&key, common_name, not_before, not_after)?;
        let public = TokenVerifyingKey::from_key(*key.verifying_key())?;
        Ok(TokenSigningKey {
            fast: ring_pair(&key),
            key,
            public,
            certificate,
        })
    }

    /// Reloads a stored key: PKCS#8 DER and the certificate issued for it, which must carry the
    /// same public key.
    pub fn from_pkcs8_der(pkcs8: &[u8], certificate_der: Vec<u8>) -> Result<Self, Error> {
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(pkcs8)
            .map_err(|e| Error::Key(format!("P-256 PKCS#8: {e}")))?;
        let public = TokenVerifyingKey::from_key(*key.verifying_key())?;
        let from_cert = TokenVerifyingKey::from_certificate_der(&certificate_der)?;
        if from_cert != public {
            return Err(Error::Certificate(
                "certificate is not for this signing key".into(),
            ));
        }
        Ok(TokenSigningKey {
            fast: ring_pair(&key),
            key,
            public,
            certificate: certificate_der,
        })
    }

    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let doc = self
            .key
            .to_pkcs8_der()
            .map_err(|e| Error::Key(e.to_string()))?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    pub fn kid(&self) -> &str {
        self.public.kid()
    }

    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }

    pub fn verifying_key(&self) -> &TokenVerifyingKey {
        &self.public
    }

    /// Mints a compact JWS over `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, Error> {
        let header = serde_json::json!({
            "alg": ALGORITHM,
            "typ": "JWT",
            "kid": self.kid(),
            "x5c": [STANDARD.encode(&self.certificate)],
        });
        let header = serde_json::to_vec(&header).map_err(|_| Error::Signing)?;
        let payload = serde_json::to_vec(claims).map_err(|_| Error::Signing)?;
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let sig = match &self.fast {
            Some(fast) => fast
                .sign(&ring::rand::SystemRandom::new(), token.as_bytes())
                .map_err(|_| Error::Signing)?
                .as_ref()
                .to_vec(),
            None => {
                let sig: p256::ecdsa::Signature = self
                    .key
                    .try_sign(token.as_bytes())
                    .map_err(|_| Error::Signing)?;
                sig.to_bytes().to_vec()
            }
        };
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(token)
    }
}

fn ring_pair(key: &p256::ecdsa::SigningKey) -> Option<ring::signature::EcdsaKeyPair> {
    ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &key.to_bytes(),
        key.verifying_key().to_sec1_point(false).as_bytes(),
        &ring::rand::SystemRandom::new(),
    )
    .ok()
}

/// Lets rcgen sign the certificate with our p256 key, so no second key representation exists.
struct CertSigner<'a> {
    key: &'a p256::ecdsa::SigningKey,
    point: Vec<u8>,
}

impl rcgen::PublicKeyData for CertSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for CertSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        // X.509 carries ECDSA signatures DER-encoded, unlike JWS.
        let sig: p256::ecdsa::DerSignature = self
            .key
            .try_sign(msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)?;
        Ok(sig.as_bytes().to_vec())
    }
}

fn self_signed_certificate(
    key: &p256::ecdsa::SigningKey,
    common_name: &str,
    not_before: i64,
    not_after: i64,
) -> Result<Vec<u8>, Error> {
    let bad = |e: &dyn std::fmt::Display| Error::Certificate(e.to_string());
    let time = |t: i64| time::OffsetDateTime::from_unix_timestamp(t).map_err(|e| bad(&e));
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.not_before = time(not_before)?;
    params.not_after = time(not_after)?;
    // A random positive 128-bit serial, like Go's crypto/x509 callers use.
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|_| Error::Rng)?;
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let signer = CertSigner {
        key,
        point: key.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
    };
    let cert = params.self_signed(&signer).map_err(|e| bad(&e))?;
    Ok(cert.der().to_vec())
}

/// What a verifier expects of a token besides a good signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    pub issuer: String,
    /// The service name the token must be meant for (one of its `aud` values).
    pub audience: String,
    pub leeway_secs: i64,
}

impl Validation {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Validation {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// The claims as they may arrive, so absent ones give a precise error.
#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    #[serde(default, deserialize_with = "de_audience")]
    aud: Option<Vec<String>>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
    #[serde(default)]
    access: Option<Vec<ResourceActions>>,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
fn de_audience<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Aud>::deserialize(d)? {
        None => None,
        Some(Aud::One(s)) => Some(vec![s]),
        Some(Aud::Many(v)) => Some(v),
    })
}

fn b64url(part: &str, what: &'static str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Error::MalformedToken(what))
}

/// Verifies a compact JWS against the trusted `keys` and returns its claims.
///
/// Order: shape, `alg` (ES256 only), `crit` (none understood), `kid` lookup, signature, then
/// the claims (`iss`, `aud`, `exp`/`nbf`/`iat` at `now` ± leeway, `jti`, `access`).
pub fn verify(
    token: &str,
    keys: &[TokenVerifyingKey],
    validation: &Validation,
    now: i64,
) -> Result<Claims, Error> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Error::MalformedToken("token too long"));
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::MalformedToken("expected three dot-separated parts"));
    };
    let header: Header = serde_json::from_slice(&b64url(h64, "header is not base64url")?)
        .map_err(|_| Error::MalformedToken("header is not a JSON object"))?;
    if header.alg != ALGORITHM {
        return Err(Error::UnsupportedAlgorithm(header.alg));
    }
    if header.crit.is_some() {
        return Err(Error::MalformedToken(
            "critical header extensions are not supported",
        ));
    }
    if let Some(typ) = &header.typ
        && !typ.eq_ignore_ascii_case("JWT")
    {
        return Err(Error::MalformedToken("typ is not JWT"));
    }
    let kid = header.kid.unwrap_or_default();
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or(Error::UnknownKey(kid))?;
    let sig = b64url(s64, "signature is not base64url")?;
    // ES256 in JWS is raw r ‖ s, exactly 64 bytes (not DER). ring verifies it: every
    // authenticated request checks a token, and ring is several times faster here.
    if sig.len() != 64 {
        return Err(Error::BadSignature);
    }
    let signed_len = h64.len() + 1 + p64.len();
    let point = key.key.to_sec1_point(false);
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        point.as_bytes(),
    )
    .verify(&token.as_bytes()[..signed_len], &sig)
    .map_err(|_| Error::BadSignature)?;

    let raw: RawClaims = serde_json::from_slice(&b64url(p64, "claims are not base64url")?)
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => Error::MalformedToken("claims have wrong types"),
            _ => Error::MalformedToken("claims are not a JSON object"),
        })?;
    let iss = raw.iss.ok_or(Error::MissingClaim("iss"))?;
    if iss != validation.issuer {
        return Err(Error::WrongIssuer(iss));
    }
    let aud = raw.aud.ok_or(Error::MissingClaim("aud"))?;
    if !aud.contains(&validation.audience) {
        return Err(Error::WrongAudience(validation.audience.clone()));
    }
    let leeway = validation.leeway_secs;
    let exp = raw.exp.ok_or(Error::MissingClaim("exp"))?;
    if now > exp.saturating_add(leeway) {
        return Err(Error::Expired);
    }
    let nbf = raw.nbf.ok_or(Error::MissingClaim("nbf"))?;
    let iat = raw.iat.ok_or(Error::MissingClaim("iat"))?;
    if nbf > now.saturating_add(leeway) || iat > now.saturating_add(leeway) {
        return Err(Error::NotYetValid);
    }
    let jti = raw
        .jti
        .filter(|j| !j.is_empty())
        .ok_or(Error::MissingClaim("jti"))?;
    Ok(Claims {
        iss,
        sub: raw.sub.unwrap_or_default(),
        aud,
        exp,
        nbf,
        iat,
        jti,
        // Tokens for `/v2/` alone may carry no access entries at all.
        access: raw.access.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000;

    fn key() -> TokenSigningKey {
        TokenSigningKey::generate("berth token signer", NOW - 3600, NOW + 86400 * 365).unwrap()
    }

    fn claims() -> Claims {
        Claims::new(
            "berth",
            "alice",
            "registry.example",
            vec![ResourceActions::repository("team/app", &["pull", "push"])],
            NOW,
            300,
        )
        .unwrap()
    }

    fn validation() -> Validation {
        Validation::new("berth", "registry.example")
    }

    fn split(token: &str) -> (String, String, String) {
        let v: Vec<&str> = token.split('.').collect();
        (v[0].into(), v[1].into(), v[2].into())
    }

    /// Tokens are signed and checked with ring; the RustCrypto implementation must agree in
    /// both directions (a token it signs verifies, and ring's signature verifies with it).
    #[test]
    fn es256_agrees_with_an_independent_implementation() {
        use p256::ecdsa::signature::Verifier as _;
        let k = key();
        let token = k.sign(&claims()).unwrap();
        let (h, p, s) = split(&token);
        let sig = p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
        k.key
            .verifying_key()
            .verify(format!("{h}.{p}").as_bytes(), &sig)
            .expect("RustCrypto verifies ring's ES256");
        let other: p256::ecdsa::Signature = k.key.sign(format!("{h}.{p}").as_bytes());
        let forged = format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(other.to_bytes()));
        verify(
            &forged,
            std::slice::from_ref(k.verifying_key()),
            &validation(),
            NOW,
        )
        .expect("ring verifies RustCrypto's ES256");
    }

    fn decode_json(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    fn encode_json(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    /// Signs arbitrary header/claims JSON with `k`, to build hostile tokens.
    fn sign_raw(
        k: &TokenSigningKey,
        header: &serde_json::Value,
        claims: &serde_json::Value,
    ) -> String {
        let input = format!("{}.{}", encode_json(header), encode_json(claims));
        let sig: p256::ecdsa::Signature = k.key.try_sign(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    fn header(k: &TokenSigningKey) -> serde_json::Value {
        serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": k.kid()})
    }

    #[test]
    fn round_trip() {
        let k = key();
        let c = claims();
        let token = k.sign(&c).unwrap();
        let got = verify(&token, &[k.verifying_key().clone()], &validation(), NOW).unwrap();
        assert_eq!(got, c);
    }

    #[test]
    fn header_and_claims_have_docker_shape() {
        let k = key();
        let token = k.sign(&claims()).unwrap();
        let (h, p, s) = split(&token);
        let h = decode_json(&h);
        assert_eq!(h["alg"], "ES256");
        assert_eq!(h["typ"], "JWT");
        assert_eq!(h["kid"], k.kid());
        let x5c = STANDARD.decode(h["x5c"][0].as_str().unwrap()).unwrap();
        assert_eq!(x5c, k.certificate_der());
        let p = decode_json(&p);
        // A single audience is a plain string for older verifiers.
        assert_eq!(p["aud"], "registry.example");
        assert_eq!(p["access"][0]["type"], "repository");
        assert_eq!(
            p["access"][0]["actions"],
            serde_json::json!(["pull", "push"])
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(s).unwrap().len(), 64);
    }

    #[test]
    fn certificate_carries_the_key() {
        let k = key();
        let from_cert = TokenVerifyingKey::from_certificate_der(k.certificate_der()).unwrap();
        assert_eq!(&from_cert, k.verifying_key());
        // Reload from storage form.
        let pkcs8 = k.to_pkcs8_der().unwrap();
        let again = TokenSigningKey::from_pkcs8_der(&pkcs8, k.certificate_der().to_vec()).unwrap();
        assert_eq!(again.kid(), k.kid());
        // A certificate for another key is refused.
        let other = key();
        assert!(TokenSigningKey::from_pkcs8_der(&pkcs8, other.certificate_der().to_vec()).is_err());
    }

    #[test]
    fn kid_has_libtrust_shape() {
        let kid = key().kid().to_owned();
        assert_eq!(kid.len(), 59);
        let groups: Vec<&str> = kid.split(':').collect();
        assert_eq!(groups.len(), 12);
        assert!(groups.iter().all(|g| {
            g.len() == 4
                && g.bytes()
                    .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        }));
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        // RFC 4648 §10, padding stripped.
        for (input, want) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_nopad(input.as_bytes()), want);
        }
    }

    #[test]
    fn tampered_payload_is_rejected() {
        let k = key();
        let token = k.sign(&claims()).unwrap();
        let (h, p, s) = split(&token);
        let mut c = decode_json(&p);
        c["access"][0]["actions"] = serde_json::json!(["pull", "push", "*"]);
        let forged = format!("{h}.{}.{s}", encode_json(&c));
        let err = verify(&forged, &[k.verifying_key().clone()], &validation(), NOW).unwrap_err();
        assert!(matches!(err, Error::BadSignature), "{err:?}");
    }

    #[test]
    fn tampered_signature_is_rejected() {
        let k = key();
        let token = k.sign(&claims()).unwrap();
        let (h, p, s) = split(&token);
        let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
        sig[10] ^= 1;
        let forged = format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(&sig));
        let keys = [k.verifying_key().clone()];
        assert!(matches!(
            verify(&forged, &keys, &validation(), NOW),
            Err(Error::BadSignature)
        ));
        // DER-encoded or truncated signatures are not ES256 JWS.
        let short = format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(&sig[..63]));
        assert!(matches!(
            verify(&short, &keys, &validation(), NOW),
            Err(Error::BadSignature)
        ));
        let empty = format!("{h}.{p}.");
        assert!(verify(&empty, &keys, &validation(), NOW).is_err());
    }

    #[test]
    fn signature_by_another_key_with_same_kid_is_rejected() {
        let k = key();
        let other = key();
        let mut h = header(&other);
        h["kid"] = k.kid().into();
        let token = sign_raw(&other, &h, &serde_json::to_value(claims()).unwrap());
        assert!(matches!(
            verify(&token, &[k.verifying_key().clone()], &validation(), NOW),
            Err(Error::BadSignature)
        ));
    }

    #[test]
    fn time_window() {
        let k = key();
        let keys = [k.verifying_key().clone()];
        let token = k.sign(&claims()).unwrap();
        // exp = NOW + 300; leeway 60.
        assert!(verify(&token, &keys, &validation(), NOW + 360).is_ok());
        assert!(matches!(
            verify(&token, &keys, &validation(), NOW + 361),
            Err(Error::Expired)
        ));
        // nbf = iat = NOW.
        assert!(verify(&token, &keys, &validation(), NOW - 60).is_ok());
        assert!(matches!(
            verify(&token, &keys, &validation(), NOW - 61),
            Err(Error::NotYetValid)
        ));
        let strict = Validation {
            leeway_secs: 0,
            ..validation()
        };
        assert!(matches!(
            verify(&token, &keys, &strict, NOW + 301),
            Err(Error::Expired)
        ));
        // iat in the future is refused even when nbf is fine.
        let mut c = serde_json::to_value(claims()).unwrap();
        c["iat"] = (NOW + 1000).into();
        let token = sign_raw(&k, &header(&k), &c);
        assert!(matches!(
            verify(&token, &keys, &validation(), NOW),
            Err(Error::NotYetValid)
        ));
    }

    #[test]
    fn issuer_and_audience() {
        let k = key();
        let keys = [k.verifying_key().clone()];
        let token = k.sign(&claims()).unwrap();
        assert!(matches!(
            verify(&token, &keys, &Validation::new("mallory", "registry.example"), NOW),
            Err(Error::WrongIssuer(i)) if i == "berth"
        ));
        assert!(matches!(
            verify(
                &token,
                &keys,
                &Validation::new("berth", "notary.example"),
                NOW
            ),
            Err(Error::WrongAudience(_))
        ));
        // An array audience is accepted when it contains ours.
        let mut c = serde_json::to_value(claims()).unwrap();
        c["aud"] = serde_json::json!(["other", "registry.example"]);
        let token = sign_raw(&k, &header(&k), &c);
        let got = verify(&token, &keys, &validation(), NOW).unwrap();
        assert_eq!(got.aud, ["other", "registry.example"]);
        // And serializes back as an array.
        assert!(serde_json::to_value(&got).unwrap()["aud"].is_array());
        c["aud"] = serde_json::json!(["other"]);
        let token = sign_raw(&k, &header(&k), &c);
        assert!(matches!(
            verify(&token, &keys, &validation(), NOW),
            Err(Error::WrongAudience(_))
        ));
    }

    #[test]
    fn unknown_or_missing_kid() {
        let k = key();
        let other = key();
        let token = k.sign(&claims()).unwrap();
        assert!(matches!(
            verify(&token, &[other.verifying_key().clone()], &validation(), NOW),
            Err(Error::UnknownKey(kid)) if kid == k.kid()
        ));
        assert!(matches!(
            verify(&token, &[], &validation(), NOW),
            Err(Error::UnknownKey(_))
        ));
        let token = sign_raw(
            &k,
            &serde_json::json!({"alg": "ES256", "typ": "JWT"}),
            &serde_json::to_value(claims()).unwrap(),
        );
        assert!(matches!(
            verify(&token, &[k.verifying_key().clone()], &validation(), NOW),
            Err(Error::UnknownKey(_))
        ));
    }

    #[test]
    fn selects_key_by_kid_among_several() {
        let old = key();
        let new = key();
        let keys = [old.verifying_key().clone(), new.verifying_key().clone()];
        for k in [&old, &new] {
            let token = k.sign(&claims()).unwrap();
            assert!(verify(&token, &keys, &validation(), NOW).is_ok());
        }
    }

    #[test]
    fn algorithm_swaps_are_refused() {
        let k = key();
        let keys = [k.verifying_key().clone()];
        let c = serde_json::to_value(claims()).unwrap();
        // alg=none with an empty signature.
        let none = format!(
            "{}.{}.",
            encode_json(&serde_json::json!({"alg": "none", "kid": k.kid()})),
            encode_json(&c)
        );
        assert!(matches!(
            verify(&none, &keys, &validation(), NOW),
            Err(Error::UnsupportedAlgorithm(a)) if a == "none"
        ));
        // alg=HS256, "signed" with the public key bytes as the HMAC secret (the classic
        // confusion attack) — refused on alg alone, whatever the signature.
        for alg in ["HS256", "RS256", "ES384", "EdDSA", "es256", ""] {
            let mut h = header(&k);
            h["alg"] = alg.into();
            let token = sign_raw(&k, &h, &c);
            assert!(
                matches!(
                    verify(&token, &keys, &validation(), NOW),
                    Err(Error::UnsupportedAlgorithm(_))
                ),
                "{alg}"
            );
        }
        // A header swap on a real token breaks its signature even with alg kept.
        let token = k.sign(&claims()).unwrap();
        let (_, p, s) = split(&token);
        let h = encode_json(&serde_json::json!({"alg": "ES256", "kid": k.kid(), "typ": "JWT"}));
        assert!(matches!(
            verify(&format!("{h}.{p}.{s}"), &keys, &validation(), NOW),
            Err(Error::BadSignature)
        ));
    }

    #[test]
    fn missing_claims_and_malformed_tokens() {
        let k = key();
        let keys = [k.verifying_key().clone()];
        for claim in ["iss", "aud", "exp", "nbf", "iat", "jti"] {
            let mut c = serde_json::to_value(claims()).unwrap();
            c.as_object_mut().unwrap().remove(claim);
            let token = sign_raw(&k, &header(&k), &c);
            assert!(
                matches!(verify(&token, &keys, &validation(), NOW), Err(Error::MissingClaim(m)) if m == claim),
                "{claim}"
            );
        }
        let mut c = serde_json::to_value(claims()).unwrap();
        c["jti"] = "".into();
        let token = sign_raw(&k, &header(&k), &c);
        assert!(matches!(
            verify(&token, &keys, &validation(), NOW),
            Err(Error::MissingClaim("jti"))
        ));
        // Missing access is an empty grant, not an error.
        let mut c = serde_json::to_value(claims()).unwrap();
        c.as_object_mut().unwrap().remove("access");
        let token = sign_raw(&k, &header(&k), &c);
        assert!(
            verify(&token, &keys, &validation(), NOW)
                .unwrap()
                .access
                .is_empty()
        );
        // Wrongly typed access entries are refused.
        c["access"] = serde_json::json!("everything");
        let token = sign_raw(&k, &header(&k), &c);
        assert!(matches!(
            verify(&token, &keys, &validation(), NOW),
            Err(Error::MalformedToken(_))
        ));
        // crit and a foreign typ are refused.
        let c = serde_json::to_value(claims()).unwrap();
        let mut h = header(&k);
        h["crit"] = serde_json::json!(["exp"]);
        assert!(matches!(
            verify(&sign_raw(&k, &h, &c), &keys, &validation(), NOW),
            Err(Error::MalformedToken(_))
        ));
        let mut h = header(&k);
        h["typ"] = "at+jwt".into();
        assert!(verify(&sign_raw(&k, &h, &c), &keys, &validation(), NOW).is_err());
        for bad in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "!!.b.c",
            "e30.e30.e30",
            "e30=.e30.AA",
        ] {
            assert!(
                matches!(
                    verify(bad, &keys, &validation(), NOW),
                    Err(Error::MalformedToken(_) | Error::UnsupportedAlgorithm(_))
                ),
                "{bad}"
            );
        }
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert!(verify(&huge, &keys, &validation(), NOW).is_err());
    }

    #[test]
    fn jwks_output() {
        let k = key();
        let set = jwks([k.verifying_key()]);
        let v = serde_json::to_value(&set).unwrap();
        let jwk = &v["keys"][0];
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["kid"], k.kid());
        let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
        let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
        assert_eq!((x.len(), y.len()), (32, 32));
        // x and y rebuild the same key.
        let mut sec1 = vec![4u8];
        sec1.extend(x);
        sec1.extend(y);
        let rebuilt = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
        assert_eq!(&rebuilt, &k.verifying_key().key);
    }
}
