//! Fixtures made by openssl and Python (fixtures/make_fixtures.sh), not by this crate: the
//! libtrust kid vector and an ES256 JWT signed by another implementation.

use berth_auth::jwt::{self, libtrust_kid};
use berth_auth::{Error, ResourceActions, TokenSigningKey, TokenVerifyingKey, Validation};

const SPKI: &[u8] = include_bytes!("../fixtures/es256.spki.der");
const CERT: &[u8] = include_bytes!("../fixtures/es256.cert.der");
const PKCS8: &[u8] = include_bytes!("../fixtures/es256.pkcs8.der");
const KID: &str = include_str!("../fixtures/es256.kid.txt");
const PY_TOKEN: &str = include_str!("../fixtures/es256.jwt.txt");

/// The fixture token's window: nbf = iat = 1900000000, exp = 1900000300.
const IN_WINDOW: i64 = 1_900_000_100;

#[test]
fn libtrust_kid_matches_independent_computation() {
    assert_eq!(libtrust_kid(SPKI), KID.trim());
    assert_eq!(
        TokenVerifyingKey::from_spki_der(SPKI).unwrap().kid(),
        KID.trim()
    );
    assert_eq!(
        TokenVerifyingKey::from_certificate_der(CERT).unwrap().kid(),
        KID.trim()
    );
}

#[test]
fn verifies_a_token_signed_elsewhere() {
    let key = TokenVerifyingKey::from_certificate_der(CERT).unwrap();
    let v = Validation::new("fixture-issuer", "fixture-service");
    let claims = jwt::verify(PY_TOKEN.trim(), std::slice::from_ref(&key), &v, IN_WINDOW).unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.aud, ["fixture-service"]);
    assert_eq!(claims.jti, "fixture-jti-1");
    assert_eq!(
        claims.access,
        vec![
            ResourceActions::repository("localhost:5000/team/app", &["pull", "push"]),
            ResourceActions::catalog(),
        ]
    );
    assert!(matches!(
        jwt::verify(PY_TOKEN.trim(), &[key], &v, 1_900_000_361),
        Err(Error::Expired)
    ));
}

#[test]
fn reloads_an_openssl_key_and_certificate() {
    let signer = TokenSigningKey::from_pkcs8_der(PKCS8, CERT.to_vec()).unwrap();
    assert_eq!(signer.kid(), KID.trim());
    let claims = berth_auth::Claims::new(
        "berth",
        "bob",
        "svc",
        vec![ResourceActions::repository("a", &["pull"])],
        IN_WINDOW,
        60,
    )
    .unwrap();
    let token = signer.sign(&claims).unwrap();
    let from_spki = TokenVerifyingKey::from_spki_der(SPKI).unwrap();
    let got = jwt::verify(
        &token,
        &[from_spki],
        &Validation::new("berth", "svc"),
        IN_WINDOW,
    )
    .unwrap();
    assert_eq!(got, claims);
}
