//! Token verification (crates/auth `jwt::verify`) against a fixed trusted key.
//!
//! Input: `[<now, Unix seconds>\n]<compact JWS>`. For the token as given and for its header and
//! claims re-signed with the trusted key:
//! - `verify` never panics, and accepts only a token whose signature a second ES256
//!   implementation (p256, where `verify` uses ring) confirms under the trusted key;
//! - a re-signed token is never refused for its signature, and when accepted its claims obey
//!   the validation (issuer, audience, times with leeway, jti);
//! - flipping a bit of an accepted token's signature, or signing its content with another key
//!   under the trusted `kid`, is refused;
//! - accepted claims written into a fresh token are accepted again, unchanged.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_auth::jwt::{self, Validation};
use berth_auth::{Claims, Error};
use berth_fuzz::{JWT_AUDIENCE, JWT_ISSUER, JWT_NOW, first_line, token_keys};
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::signature::{Signer as _, Verifier as _};

fn sign(key: &p256::ecdsa::SigningKey, signing_input: &str) -> String {
    let sig: p256::ecdsa::Signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

fn verify(token: &str, now: i64) -> Result<Claims, Error> {
    let keys = token_keys();
    jwt::verify(
        token,
        std::slice::from_ref(&keys.verifying),
        &Validation::new(JWT_ISSUER, JWT_AUDIENCE),
        now,
    )
}

/// Whether p256 (not ring) confirms the token's signature under the trusted key.
fn independently_signed(token: &str) -> bool {
    let Some((input, sig64)) = token.rsplit_once('.') else {
        return false;
    };
    let Ok(sig) = URL_SAFE_NO_PAD.decode(sig64) else {
        return false;
    };
    let Ok(sig) = p256::ecdsa::Signature::from_slice(&sig) else {
        return false;
    };
    token_keys()
        .trusted
        .verifying_key()
        .verify(input.as_bytes(), &sig)
        .is_ok()
}

fn obeys_validation(c: &Claims, now: i64) {
    let leeway = jwt::DEFAULT_LEEWAY_SECS;
    assert_eq!(c.iss, JWT_ISSUER);
    assert!(c.aud.iter().any(|a| a == JWT_AUDIENCE));
    assert!(
        now <= c.exp.saturating_add(leeway),
        "expired token accepted"
    );
    assert!(
        c.nbf <= now.saturating_add(leeway),
        "token accepted before nbf"
    );
    assert!(
        c.iat <= now.saturating_add(leeway),
        "token accepted before iat"
    );
    assert!(!c.jti.is_empty());
}

fn accepted(token: &str, claims: &Claims, now: i64) {
    assert!(
        independently_signed(token),
        "accepted a token not signed by the trusted key"
    );
    obeys_validation(claims, now);
    let (input, sig64) = token.rsplit_once('.').expect("three parts");

    // One flipped signature bit.
    let mut sig = URL_SAFE_NO_PAD.decode(sig64).expect("base64url");
    let bit = input.len() % (sig.len() * 8);
    sig[bit / 8] ^= 1 << (bit % 8);
    let flipped = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
    assert!(
        matches!(verify(&flipped, now), Err(Error::BadSignature)),
        "accepted a token with a flipped signature bit"
    );
    // The same content signed by a stranger, still naming the trusted kid.
    let forged = sign(&token_keys().stranger, input);
    assert!(
        matches!(verify(&forged, now), Err(Error::BadSignature)),
        "accepted a token signed by an untrusted key"
    );
    // accept → re-encode → accept
    let header =
        serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": token_keys().verifying.kid()});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("header")),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"))
    );
    let again = verify(&sign(&token_keys().trusted, &input), now)
        .unwrap_or_else(|e| panic!("re-encoded claims refused: {e}"));
    assert_eq!(&again, claims, "claims changed in a round trip");
}

fuzz_target!(|data: &[u8]| {
    let (line, rest) = first_line(data);
    let (now, token) = match std::str::from_utf8(line)
        .ok()
        .and_then(|l| l.parse::<i64>().ok())
    {
        Some(now) => (now, rest),
        None => (JWT_NOW, data),
    };
    let Ok(token) = std::str::from_utf8(token) else {
        return;
    };

    if let Ok(claims) = verify(token, now) {
        accepted(token, &claims, now);
    }

    // The same header and claims, signed by the trusted key.
    let mut parts = token.split('.');
    let (Some(h64), Some(p64)) = (parts.next(), parts.next()) else {
        return;
    };
    let resigned = sign(&token_keys().trusted, &format!("{h64}.{p64}"));
    match verify(&resigned, now) {
        Ok(claims) => accepted(&resigned, &claims, now),
        Err(Error::BadSignature) => panic!("refused a token the trusted key signed"),
        Err(_) => {}
    }
});
