//! Root certificates: the self-signed x509 certificates Notary uses as `ecdsa-x509` root keys,
//! and the parsing the server needs to validate a root (CN, validity, CA flag, algorithm).

use std::str::FromStr as _;
use std::time::{Duration, SystemTime};

use der::asn1::ObjectIdentifier;
use der::{Decode as _, Encode as _};
use pkcs8::spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;
use x509_cert::builder::{Builder as _, CertificateBuilder, profile::BuilderProfile};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::ext::{Extension, ToExtension as _};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use crate::keys::{KeyType, Material, PublicKey};
use crate::{Error, PrivateKey};

/// Notary's root certificates are valid for 10 years.
pub const ROOT_CERT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

const OID_CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
const WEAK_SIGNATURE_OIDS: &[ObjectIdentifier] = &[
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5"), // sha1WithRSAEncryption
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.1"),    // ecdsa-with-SHA1
    ObjectIdentifier::new_unwrap("1.2.840.10040.4.3"),    // dsa-with-sha1
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.4"), // md5WithRSAEncryption
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.2"), // md2WithRSAEncryption
];

/// What the trust server needs to know about one certificate.
#[derive(Clone, Debug)]
pub struct CertInfo {
    /// The first subject CN, if any.
    pub common_name: Option<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// BasicConstraints CA flag (false when the extension is absent).
    pub is_ca: bool,
    /// Signed with SHA-1 or MD5, which Notary refuses.
    pub weak_signature: bool,
    /// The DER certificate.
    pub der: Vec<u8>,
    pub(crate) material: Material,
}

impl CertInfo {
    /// The certificate's key as a bare `ecdsa`/`rsa` key (its ID is the canonical key ID).
    pub fn public_key(&self) -> Result<PublicKey, Error> {
        PublicKey::from_material(self.material.clone())
    }

    /// RSA modulus size, for RSA certificates.
    pub fn rsa_bits(&self) -> Option<usize> {
        self.material.rsa_bits()
    }

    /// Whether `now` is within the validity period, allowing `not_before` to be up to a day in
    /// the future (Notary's leeway for clock skew).
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        let leeway = Duration::from_secs(24 * 60 * 60);
        self.not_before <= now + leeway && now <= self.not_after
    }
}

/// Parses every `CERTIFICATE` block of a PEM bundle, leaf first as Notary orders them. Other
/// block types are skipped, as Go's `pem.Decode` loop in Notary does.
pub fn parse_pem_bundle(pem_text: &[u8]) -> Result<Vec<CertInfo>, Error> {
    let blocks = pem::parse_many(pem_text).map_err(|e| Error::Certificate(e.to_string()))?;
    let certs = blocks
        .iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| parse_der(b.contents()))
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(Error::Certificate("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// Parses one DER certificate.
pub fn parse_der(der: &[u8]) -> Result<CertInfo, Error> {
    let bad = |e: &dyn std::fmt::Display| Error::Certificate(e.to_string());
    let cert = Certificate::from_der(der).map_err(|e| bad(&e))?;
    let tbs = cert.tbs_certificate();
    let common_name = tbs
        .subject()
        .common_name()
        .map_err(|e| bad(&e))?
        .map(|cn| match cn {
            x509_cert::ext::pkix::name::DirectoryString::PrintableString(s) => s.to_string(),
            x509_cert::ext::pkix::name::DirectoryString::Utf8String(s) => s,
            other => format!("{other:?}"),
        });
    let is_ca = tbs
        .get_extension::<BasicConstraints>()
        .map_err(|e| bad(&e))?
        .is_some_and(|(_, bc)| bc.ca);
    let spki_der = tbs
        .subject_public_key_info()
        .to_der()
        .map_err(|e| bad(&e))?;
    let material = Material::from_spki_der(&spki_der, KeyType::EcdsaX509)?;
    Ok(CertInfo {
        common_name,
        not_before: tbs.validity().not_before.to_system_time(),
        not_after: tbs.validity().not_after.to_system_time(),
        is_ca,
        weak_signature: WEAK_SIGNATURE_OIDS.contains(&cert.signature_algorithm().oid),
        der: der.to_vec(),
        material,
    })
}

/// The profile of Notary's root certificates: self-issued, CN = GUN, KeyUsage
/// digitalSignature|keyEncipherment, ExtKeyUsage codeSigning, BasicConstraints CA=false.
struct NotaryRootProfile {
    subject: Name,
}

impl BuilderProfile for NotaryRootProfile {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: pkcs8::spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: pkcs8::spki::SubjectPublicKeyInfoRef<'_>,
        tbs: &x509_cert::TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let subject = tbs.subject();
        Ok(vec![
            (&KeyUsage(KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment))
                .to_extension(subject, &[])?,
            (&ExtendedKeyUsage(vec![OID_CODE_SIGNING])).to_extension(subject, &[])?,
            (&BasicConstraints {
                ca: false,
                path_len_constraint: None,
            })
                .to_extension(subject, &[])?,
        ])
    }
}

/// Escapes a GUN for an RFC 4514 string so the `Name` parser takes it literally.
fn rfc4514_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == value.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Builds Notary's self-signed root certificate for `gun` over a P-256 `key`, valid from
/// `not_before` to `not_after`, and returns it as PEM text (what `keyval.public` holds).
pub fn root_certificate(
    key: &PrivateKey,
    gun: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<String, Error> {
    let bad = |e: &dyn std::fmt::Display| Error::Certificate(e.to_string());
    let signer = key.p256().ok_or_else(|| {
        Error::UnsupportedKey("root certificates are built for ecdsa P-256 keys".into())
    })?;
    let subject = Name::from_str(&format!("CN={}", rfc4514_escape(gun))).map_err(|e| bad(&e))?;
    let validity = Validity::new(
        Time::try_from(not_before).map_err(|e| bad(&e))?,
        Time::try_from(not_after).map_err(|e| bad(&e))?,
    );
    // 128-bit random serial like Go's; the top bit cleared keeps the INTEGER positive.
    let mut serial = crate::rng::random_bytes::<16>()?;
    serial[0] &= 0x7f;
    let spki = SubjectPublicKeyInfoOwned::from_key(signer.verifying_key()).map_err(|e| bad(&e))?;
    let builder = CertificateBuilder::new(
        NotaryRootProfile { subject },
        SerialNumber::new(&serial).map_err(|e| bad(&e))?,
        validity,
        spki,
    )
    .map_err(|e| bad(&e))?;
    let cert = builder
        .build::<_, p256::ecdsa::DerSignature>(signer)
        .map_err(|e| bad(&e))?;
    let der = cert.to_der().map_err(|e| bad(&e))?;
    let block = pem::Pem::new("CERTIFICATE", der);
    Ok(pem::encode_config(
        &block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    ))
}

/// The `ecdsa-x509` root key Notary would publish for `key` and `gun`, valid for 10 years
/// from `now`.
pub fn root_public_key(key: &PrivateKey, gun: &str, now: SystemTime) -> Result<PublicKey, Error> {
    let pem = root_certificate(key, gun, now, now + ROOT_CERT_VALIDITY)?;
    PublicKey::new(KeyType::EcdsaX509, pem.into_bytes())
}
