//! Zero-config TLS: a private CA and a server certificate, generated on first start and reused
//! afterwards; and the rustls configuration (ring provider, HTTP/2 + HTTP/1.1).

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the generated material lives inside `DIR/tls`.
#[derive(Debug, Clone)]
pub struct GeneratedTls {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// True when the CA was created by this call (first start): time to print the client hint.
    pub ca_created: bool,
}

/// Server certificates are reissued this long before they expire.
const RENEW_BEFORE_DAYS: i64 = 30;
const SERVER_CERT_DAYS: i64 = 397;
const CA_DAYS: i64 = 3650;

fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

/// Certificates: public, but like everything in the data dir only the server's user reads them.
fn write_public(path: &Path, data: &[u8]) -> io::Result<()> {
    write_private(path, data)
}

fn tls_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("generating TLS material: {e}"))
}

/// Makes sure `dir` holds a CA and a server certificate valid for `names` (DNS names or IPs).
/// Reuses what exists; reissues the server certificate when the names changed or it nears expiry.
pub fn ensure_generated(dir: &Path, names: &[String]) -> io::Result<GeneratedTls> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let out = GeneratedTls {
        ca_cert: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        ca_created: false,
    };
    let ca_key_path = dir.join("ca.key");
    let now = time::OffsetDateTime::now_utc();
    let mut ca_created = false;
    if !out.ca_cert.exists() || !ca_key_path.exists() {
        let key = KeyPair::generate().map_err(tls_err)?;
        let mut params = ca_params()?;
        params.not_before = now.saturating_sub(time::Duration::days(1));
        params.not_after = now.saturating_add(time::Duration::days(CA_DAYS));
        let cert = params.self_signed(&key).map_err(tls_err)?;
        write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
        write_public(&out.ca_cert, cert.pem().as_bytes())?;
        ca_created = true;
    }
    // Sidecar recording what the server certificate was issued for: expiry, then the names.
    let meta_path = dir.join("server.names");
    let wanted = names.join("\n");
    let current = std::fs::read_to_string(&meta_path).unwrap_or_default();
    let (expires, issued_for) = current.split_once('\n').unwrap_or(("0", ""));
    let renew_at = expires
        .trim()
        .parse::<i64>()
        .unwrap_or(0)
        .saturating_sub(RENEW_BEFORE_DAYS * 86_400);
    if ca_created
        || issued_for != wanted
        || !out.key.exists()
        || !out.cert.exists()
        || now.unix_timestamp() >= renew_at
    {
        let ca_key = KeyPair::from_pem(&std::fs::read_to_string(&ca_key_path)?).map_err(tls_err)?;
        // Same subject and key as the stored CA certificate, so issuer name and key id match it.
        let issuer = Issuer::new(ca_params()?, ca_key);
        let key = KeyPair::generate().map_err(tls_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_else(|| "localhost".into()),
        );
        params.distinguished_name = dn;
        for n in names {
            let san = match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.clone().try_into().map_err(tls_err)?),
            };
            params.subject_alt_names.push(san);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now.saturating_sub(time::Duration::days(1));
        params.not_after = now.saturating_add(time::Duration::days(SERVER_CERT_DAYS));
        let cert = params.signed_by(&key, &issuer).map_err(tls_err)?;
        write_private(&out.key, key.serialize_pem().as_bytes())?;
        write_public(&out.cert, cert.pem().as_bytes())?;
        let sidecar = format!("{}\n{wanted}", params.not_after.unix_timestamp());
        write_public(&meta_path, sidecar.as_bytes())?;
    }
    Ok(GeneratedTls { ca_created, ..out })
}

fn ca_params() -> io::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Berth local CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// rustls server configuration from PEM files, on the ring provider.
pub fn server_config(cert: &Path, key: &Path) -> io::Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| io::Error::other(format!("reading {}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| io::Error::other(format!("reading {}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| io::Error::other(format!("reading {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| io::Error::other(format!("TLS certificate/key: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reissues_on_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let first = ensure_generated(dir.path(), &names).unwrap();
        assert!(first.ca_created);
        let ca = std::fs::read(&first.ca_cert).unwrap();
        let cert = std::fs::read(&first.cert).unwrap();
        let again = ensure_generated(dir.path(), &names).unwrap();
        assert!(!again.ca_created);
        assert_eq!(
            std::fs::read(&again.cert).unwrap(),
            cert,
            "unchanged names keep the certificate"
        );
        let more = vec!["localhost".to_string(), "registry.example".to_string()];
        ensure_generated(dir.path(), &more).unwrap();
        assert_ne!(
            std::fs::read(&again.cert).unwrap(),
            cert,
            "new names reissue"
        );
        assert_eq!(
            std::fs::read(&again.ca_cert).unwrap(),
            ca,
            "the CA survives"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        server_config(&again.cert, &again.key).unwrap();
    }
}
