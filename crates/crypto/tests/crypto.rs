//! Checks against material written by the real notary CLI/server (fixtures made by
//! crates/tuf/tests/fixtures/make-fixtures.sh) and by openssl.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use berth_cjson::{Value, from_slice, to_canonical};
use berth_crypto::{Error, KeyType, PrivateKey, PublicKey, SigMethod, key_id, keyfile, x509};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn metadata_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tuf/tests/fixtures/notary/metadata")
}

fn read(p: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

fn load_json(p: impl AsRef<Path>) -> Value {
    from_slice(&read(p)).unwrap()
}

fn passphrases() -> BTreeMap<String, String> {
    String::from_utf8(read(fixtures().join("notary-keys/passphrases.txt")))
        .unwrap()
        .lines()
        .map(|l| {
            let (r, p) = l.split_once(' ').unwrap();
            (r.to_owned(), p.to_owned())
        })
        .collect()
}

fn key_files() -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(fixtures().join("notary-keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .collect();
    v.sort();
    assert!(v.len() >= 6, "expected notary key files");
    v
}

/// Every key object in every fixture file (root keys and delegation keys), with the ID notary
/// filed it under.
fn all_listed_keys() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(metadata_dir()).unwrap() {
        let doc = load_json(e.unwrap().path());
        let signed = doc.get("signed").unwrap();
        let keys = signed
            .get("keys")
            .or_else(|| signed.get("delegations").and_then(|d| d.get("keys")));
        if let Some(keys) = keys.and_then(Value::as_object) {
            for (id, k) in keys.iter() {
                out.push((id.to_owned(), k.clone()));
            }
        }
    }
    out
}

#[test]
fn key_ids_match_the_ids_notary_used() {
    let keys = all_listed_keys();
    let mut types = std::collections::BTreeSet::new();
    for (id, obj) in &keys {
        let k = PublicKey::from_value(obj).unwrap();
        assert_eq!(&k.key_id(), id, "{obj:?}");
        types.insert(k.key_type().as_str());
        // The string-level rule gives the same answer.
        let kv = obj.get("keyval").unwrap();
        assert_eq!(
            &key_id(
                obj.get("keytype").unwrap().as_str().unwrap(),
                kv.get("public").unwrap().as_str().unwrap()
            ),
            id
        );
        // Re-serialising the key object is canonical-identical.
        assert_eq!(to_canonical(&k.to_value()), to_canonical(obj));
    }
    // The fixtures cover every type notary produced: x509 roots and delegations, bare ecdsa,
    // ed25519 server keys.
    for t in ["ecdsa", "ecdsa-x509", "rsa-x509", "ed25519"] {
        assert!(types.contains(t), "no {t} key in fixtures");
    }
}

#[test]
fn canonical_key_ids_name_the_private_key_files() {
    let files: Vec<String> = key_files()
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
        .collect();
    let key_list = String::from_utf8(read(metadata_dir().join("../key-list.txt"))).unwrap();
    let mut x509_seen = 0;
    for (id, obj) in all_listed_keys() {
        let k = PublicKey::from_value(&obj).unwrap();
        let canonical = k.canonical_key_id().unwrap();
        if k.key_type().is_x509() {
            assert_ne!(canonical, id, "x509 keys have a different canonical ID");
            if files.contains(&canonical) {
                x509_seen += 1;
                assert!(
                    key_list.contains(&canonical),
                    "{canonical} not in `notary key list`"
                );
            }
        } else {
            assert_eq!(canonical, id);
        }
    }
    // Both root certificates and the three delegation certificates map to local key files.
    assert!(
        x509_seen >= 5,
        "only {x509_seen} x509 keys matched key files"
    );
}

#[test]
fn notary_key_files_decrypt_sign_and_verify() {
    let pass = passphrases();
    let mut types = std::collections::BTreeSet::new();
    for path in key_files() {
        let pem = read(&path);
        let (role, gun) = keyfile::headers(&pem).unwrap();
        let role = role.expect("notary always writes role:");
        // gun: only for targets/snapshot keys.
        assert_eq!(
            gun.is_some(),
            role == "targets" || role == "snapshot",
            "{}",
            path.display()
        );
        let kf = keyfile::decrypt(&pem, &pass[&role]).unwrap();
        assert_eq!(kf.role.as_deref(), Some(role.as_str()));
        let stem = path.file_stem().unwrap().to_str().unwrap();
        assert_eq!(
            kf.key.key_id(),
            stem,
            "file is named by the canonical key ID"
        );
        types.insert(kf.key.key_type());
        let msg = b"signed by a key notary wrote";
        let sig = kf.key.sign(msg).unwrap();
        kf.key
            .public_key()
            .verify(kf.key.default_method(), msg, &sig)
            .unwrap();
        assert!(matches!(
            keyfile::decrypt(&pem, "not the passphrase"),
            Err(Error::Decrypt)
        ));
    }
    assert!(types.contains(&KeyType::Ecdsa) && types.contains(&KeyType::Rsa));
}

#[test]
fn key_files_we_write_read_back_in_notarys_format() {
    for key in [
        PrivateKey::generate_ecdsa().unwrap(),
        PrivateKey::generate_ed25519().unwrap(),
    ] {
        let text = keyfile::encrypt(&key, "targets", Some("example.com/foo"), "s3cret").unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN ENCRYPTED PRIVATE KEY-----");
        assert_eq!(lines[1], "gun: example.com/foo");
        assert_eq!(lines[2], "role: targets");
        assert_eq!(lines[3], "");
        assert!(lines[4..lines.len() - 1].iter().all(|l| l.len() <= 64));
        assert!(text.ends_with("-----END ENCRYPTED PRIVATE KEY-----\n"));
        let back = keyfile::decrypt(text.as_bytes(), "s3cret").unwrap();
        assert_eq!(back.key.key_id(), key.key_id());
        assert_eq!(back.gun.as_deref(), Some("example.com/foo"));
        assert!(matches!(
            keyfile::decrypt(text.as_bytes(), "wrong"),
            Err(Error::Decrypt)
        ));
        // Same PBES2 parameter layout as the files notary wrote: PBKDF2 with an 8-byte salt,
        // 2048 iterations, no PRF (SHA-1 default), AES-256-CBC.
        let ours = pem::parse(&text).unwrap().into_contents();
        let theirs = pem::parse(read(&key_files()[0])).unwrap().into_contents();
        assert_eq!(pbes2_layout(&ours), pbes2_layout(&theirs));
        // Root keys carry no gun header; an empty passphrase writes plain PKCS#8.
        let plain = keyfile::encrypt(&key, "root", None, "").unwrap();
        assert!(plain.starts_with("-----BEGIN PRIVATE KEY-----\nrole: root\n\n"));
        assert_eq!(
            keyfile::decrypt(plain.as_bytes(), "").unwrap().key.key_id(),
            key.key_id()
        );
    }
}

/// The DER of the encryption AlgorithmIdentifier with salt and IV zeroed, plus the salt length.
fn pbes2_layout(der: &[u8]) -> (Vec<u8>, usize) {
    use der::{Decode as _, Encode as _};
    use pkcs8::pkcs5::{EncryptionScheme, pbes2};
    let info = pkcs8::EncryptedPrivateKeyInfoRef::from_der(der).unwrap();
    let EncryptionScheme::Pbes2(mut params) = info.encryption_algorithm else {
        panic!("not PBES2")
    };
    let pbes2::Kdf::Pbkdf2(kdf) = &mut params.kdf else {
        panic!("not PBKDF2")
    };
    assert_eq!(kdf.iteration_count, 2048);
    assert_eq!(kdf.prf, pbes2::Pbkdf2Prf::HmacWithSha1);
    let salt_len = kdf.salt.as_ref().len();
    kdf.salt = pbes2::Salt::new([0u8; 8]).unwrap();
    let pbes2::EncryptionScheme::Aes256Cbc { iv } = &mut params.encryption else {
        panic!("not AES-256-CBC")
    };
    *iv = [0; 16];
    (EncryptionScheme::Pbes2(params).to_der().unwrap(), salt_len)
}

#[test]
fn openssl_vectors_verify() {
    let dir = fixtures().join("openssl");
    let msg = read(dir.join("msg.bin"));
    let rsa = PublicKey::new(KeyType::Rsa, read(dir.join("rsa-spki.der"))).unwrap();
    assert_eq!(rsa.rsa_bits(), Some(2048));
    rsa.verify(
        SigMethod::RsaPkcs1v15,
        &msg,
        &read(dir.join("msg.pkcs1v15.sig")),
    )
    .unwrap();
    rsa.verify(SigMethod::RsaPss, &msg, &read(dir.join("msg.pss.sig")))
        .unwrap();
    // Each RSA method refuses the other's signature.
    assert!(
        rsa.verify(SigMethod::RsaPss, &msg, &read(dir.join("msg.pkcs1v15.sig")))
            .is_err()
    );
    assert!(
        rsa.verify(SigMethod::RsaPkcs1v15, &msg, &read(dir.join("msg.pss.sig")))
            .is_err()
    );
    // ed25519: keyval.public is the raw 32 bytes, i.e. the tail of the SPKI.
    let spki = read(dir.join("ed25519-spki.der"));
    let ed = PublicKey::new(KeyType::Ed25519, spki[spki.len() - 32..].to_vec()).unwrap();
    ed.verify(SigMethod::Eddsa, &msg, &read(dir.join("msg.ed25519.sig")))
        .unwrap();
    assert!(
        ed.verify(
            SigMethod::Eddsa,
            b"other",
            &read(dir.join("msg.ed25519.sig"))
        )
        .is_err()
    );
    // An RFC 8410 ed25519 key encrypted by openssl with notary's PBES2 parameters.
    let kf = keyfile::decrypt(&read(dir.join("ed25519-encrypted.pem")), "ed-pass").unwrap();
    assert_eq!(kf.key.public_key(), &ed);
}

#[test]
fn sign_then_verify_every_method() {
    let msg = br#"{"_type":"Targets","version":1}"#;
    let ec = PrivateKey::generate_ecdsa().unwrap();
    let ed = PrivateKey::generate_ed25519().unwrap();
    let rsa = PrivateKey::generate_rsa(2048).unwrap();
    for (key, method, len) in [
        (&ec, SigMethod::Ecdsa, Some(64)),
        (&ed, SigMethod::Eddsa, Some(64)),
        (&rsa, SigMethod::RsaPss, Some(256)),
        (&rsa, SigMethod::RsaPkcs1v15, Some(256)),
    ] {
        let sig = key.sign_with(method, msg).unwrap();
        if let Some(len) = len {
            assert_eq!(sig.len(), len, "{method}");
        }
        let public = key.public_key();
        public.verify(method, msg, &sig).unwrap();
        assert!(matches!(
            public.verify(method, b"tampered", &sig),
            Err(Error::BadSignature)
        ));
        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert!(matches!(
            public.verify(method, msg, &bad),
            Err(Error::BadSignature)
        ));
        // The key object survives a trip through JSON.
        let again = PublicKey::from_value(&public.to_value()).unwrap();
        again.verify(method, msg, &sig).unwrap();
    }
    assert_eq!(ec.default_method(), SigMethod::Ecdsa);
    assert_eq!(rsa.default_method(), SigMethod::RsaPss);
    assert_eq!(ed.default_method(), SigMethod::Eddsa);
    // Methods do not cross key types.
    let sig = ec.sign(msg).unwrap();
    assert!(matches!(
        ec.public_key().verify(SigMethod::Eddsa, msg, &sig),
        Err(Error::MethodKeyMismatch { .. })
    ));
    assert!(ed.sign_with(SigMethod::Ecdsa, msg).is_err());
    assert!(PrivateKey::generate_rsa(1024).is_err());
}

#[test]
fn ecdsa_signatures_must_be_raw_64_bytes() {
    let key = PrivateKey::generate_ecdsa().unwrap();
    let msg = b"m";
    let sig = key.sign(msg).unwrap();
    let (r, s) = sig.split_at(32);
    let int = |b: &[u8]| {
        let mut v = vec![0x02];
        let b: Vec<u8> = if b[0] & 0x80 != 0 {
            [&[0u8][..], b].concat()
        } else {
            b.to_vec()
        };
        v.push(b.len() as u8);
        v.extend(b);
        v
    };
    let body = [int(r), int(s)].concat();
    let der = [vec![0x30, body.len() as u8], body].concat();
    assert!(
        key.public_key()
            .verify(SigMethod::Ecdsa, msg, &der)
            .is_err()
    );
    assert!(
        key.public_key()
            .verify(SigMethod::Ecdsa, msg, &sig[..63])
            .is_err()
    );
}

#[test]
fn method_names_parse_like_notary() {
    assert_eq!(SigMethod::parse("ECDSA").unwrap(), SigMethod::Ecdsa);
    assert_eq!(SigMethod::parse("rsapss").unwrap(), SigMethod::RsaPss);
    assert_eq!(
        SigMethod::parse("rsapkcs1v15").unwrap(),
        SigMethod::RsaPkcs1v15
    );
    assert_eq!(SigMethod::parse("eddsa").unwrap(), SigMethod::Eddsa);
    assert!(SigMethod::parse("pycrypto-pkcs#1 pss").is_err());
    assert!(
        KeyType::parse("ECDSA").is_err(),
        "keytype is case-sensitive"
    );
}

#[test]
fn notary_root_certificate_parses() {
    let gun = String::from_utf8(read(metadata_dir().join("../gun.txt"))).unwrap();
    let root = load_json(metadata_dir().join("1.root.json"));
    let signed = root.get("signed").unwrap();
    let root_id = signed
        .get("roles")
        .unwrap()
        .get("root")
        .unwrap()
        .get("keyids")
        .unwrap()
        .as_array()
        .unwrap()[0]
        .as_str()
        .unwrap()
        .to_owned();
    let key = PublicKey::from_value(signed.get("keys").unwrap().get(&root_id).unwrap()).unwrap();
    assert_eq!(key.key_type(), KeyType::EcdsaX509);
    let certs = x509::parse_pem_bundle(key.public_bytes()).unwrap();
    assert_eq!(certs.len(), 1);
    let c = &certs[0];
    assert_eq!(c.common_name.as_deref(), Some(gun.trim()));
    assert!(!c.is_ca && !c.weak_signature);
    let years = c.not_after.duration_since(c.not_before).unwrap().as_secs() / (365 * 86400);
    assert_eq!(years, 10);
    assert!(c.is_valid_at(c.not_before + Duration::from_secs(3600)));
    assert!(
        c.is_valid_at(c.not_before - Duration::from_secs(3600)),
        "a day of NotBefore leeway"
    );
    assert!(!c.is_valid_at(c.not_after + Duration::from_secs(1)));
    assert_eq!(
        c.public_key().unwrap().key_id(),
        key.canonical_key_id().unwrap()
    );
}

#[test]
fn root_certificates_we_build_look_like_notarys() {
    let key = PrivateKey::generate_ecdsa().unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let gun = "localhost:5000/team/app";
    let public = x509::root_public_key(&key, gun, now).unwrap();
    assert_eq!(public.key_type(), KeyType::EcdsaX509);
    assert!(
        public
            .public_bytes()
            .starts_with(b"-----BEGIN CERTIFICATE-----\n")
    );
    assert!(
        public
            .public_bytes()
            .ends_with(b"-----END CERTIFICATE-----\n")
    );
    // The canonical ID of the certificate key is the private key's ID (the key file name).
    assert_eq!(public.canonical_key_id().unwrap(), key.key_id());
    assert_ne!(public.key_id(), key.key_id());
    let c = &x509::parse_pem_bundle(public.public_bytes()).unwrap()[0];
    assert_eq!(c.common_name.as_deref(), Some(gun));
    assert_eq!(c.not_before, now);
    assert_eq!(c.not_after, now + x509::ROOT_CERT_VALIDITY);
    assert!(!c.is_ca && !c.weak_signature);
    // A signature by the private key verifies under the certificate key.
    let sig = key.sign(b"root").unwrap();
    public.verify(SigMethod::Ecdsa, b"root", &sig).unwrap();
    // Awkward GUN characters survive the Name encoding.
    let odd = x509::root_certificate(&key, "a,b+c=d", now, now + Duration::from_secs(60)).unwrap();
    let c = &x509::parse_pem_bundle(odd.as_bytes()).unwrap()[0];
    assert_eq!(c.common_name.as_deref(), Some("a,b+c=d"));
    assert!(
        x509::root_certificate(&PrivateKey::generate_ed25519().unwrap(), gun, now, now).is_err()
    );
}

#[test]
fn malformed_keys_are_refused() {
    assert!(PublicKey::from_parts("ecdsa", "not base64!").is_err());
    assert!(PublicKey::from_parts("ed25519", &B64.encode([1u8; 31])).is_err());
    assert!(PublicKey::from_parts("dsa", &B64.encode([1u8; 32])).is_err());
    assert!(PublicKey::from_parts("ecdsa-x509", &B64.encode(b"no pem here")).is_err());
    // An ed25519 key declared as ecdsa.
    let ed = PrivateKey::generate_ed25519().unwrap();
    assert!(PublicKey::new(KeyType::Ecdsa, ed.public_key().public_bytes().to_vec()).is_err());
    // A private part in metadata is refused.
    let mut obj = ed.public_key().to_value();
    if let Value::Object(m) = &mut obj {
        let mut kv = m.get("keyval").unwrap().as_object().unwrap().clone();
        kv.insert("private", "c2VjcmV0");
        m.insert("keyval", kv);
    }
    assert!(PublicKey::from_value(&obj).is_err());
}

/// Signing and verification go through ring for speed; an independent implementation (the
/// RustCrypto verifier and signer) must agree with both directions.
#[test]
fn p256_signatures_agree_with_an_independent_implementation() {
    use p256::ecdsa::signature::{Signer as _, Verifier as _};
    use p256::pkcs8::DecodePublicKey as _;
    let key = PrivateKey::generate_ecdsa().unwrap();
    let public = key.public_key();
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(public.public_bytes()).unwrap();
    for msg in [&b""[..], b"m", &[7u8; 5000][..]] {
        let sig = key.sign(msg).unwrap();
        let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
        vk.verify(msg, &sig)
            .expect("RustCrypto verifies ring's signature");
    }
    let other = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
    let sig: p256::ecdsa::Signature = other.sign(b"hello");
    let spki = p256::pkcs8::EncodePublicKey::to_public_key_der(other.verifying_key()).unwrap();
    let pk = PublicKey::new(berth_crypto::KeyType::Ecdsa, spki.as_bytes().to_vec()).unwrap();
    pk.verify(SigMethod::Ecdsa, b"hello", &sig.to_bytes())
        .expect("ring verifies RustCrypto's signature");
    assert!(
        pk.verify(SigMethod::Ecdsa, b"hellO", &sig.to_bytes())
            .is_err()
    );
}
