//! The docker/notary private key store: `$DOCKER_CONFIG/trust/private/<canonical key id>.key`,
//! encrypted PKCS#8 PEM with `role:` (and for targets/snapshot keys `gun:`) headers, directory
//! 0700 and files 0600, so that docker, notary and Berth share one set of keys.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use berth_crypto::{KeyType, PrivateKey, PublicKey, keyfile};

use crate::error::{Error, Result};

/// Docker's variable for the root key's passphrase.
pub const ROOT_PASSPHRASE_ENV: &str = "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE";
/// Docker's variable for every other key (targets, snapshot, delegations, signers).
pub const REPOSITORY_PASSPHRASE_ENV: &str = "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE";

/// Which of docker's two passphrases a key uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassphraseKind {
    Root,
    Repository,
}

impl PassphraseKind {
    pub fn for_role(role: &str) -> Self {
        if role == "root" {
            PassphraseKind::Root
        } else {
            PassphraseKind::Repository
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            PassphraseKind::Root => ROOT_PASSPHRASE_ENV,
            PassphraseKind::Repository => REPOSITORY_PASSPHRASE_ENV,
        }
    }
}

/// Why a passphrase is wanted; a prompt should ask twice for `Encrypt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Unlock a key in the store.
    Decrypt,
    /// Protect a new key being written to the store.
    Encrypt,
    /// Unlock an encrypted PEM file being imported.
    Import,
}

/// What the passphrase callback is told.
#[derive(Debug, Clone)]
pub struct PassphraseRequest<'a> {
    pub kind: PassphraseKind,
    pub purpose: Purpose,
    pub role: &'a str,
    pub gun: Option<&'a str>,
    pub key_id: &'a str,
    /// 0 for the first try; a prompt gets three tries, as docker's does.
    pub attempt: u32,
}

/// Returns the passphrase, or `None` to give up (e.g. no terminal).
pub type PassphraseCallback = Arc<dyn Fn(&PassphraseRequest<'_>) -> Option<String> + Send + Sync>;

const PROMPT_ATTEMPTS: u32 = 3;

/// A key file in the store, described without decrypting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The canonical key ID (the file name).
    pub id: String,
    pub role: String,
    pub gun: Option<String>,
    pub path: PathBuf,
}

/// The private key directory plus where passphrases come from.
#[derive(Clone)]
pub struct KeyStore {
    trust_dir: PathBuf,
    root_passphrase: Option<String>,
    repository_passphrase: Option<String>,
    callback: Option<PassphraseCallback>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("trust_dir", &self.trust_dir)
            .finish_non_exhaustive()
    }
}

/// `$DOCKER_CONFIG/trust`, or `~/.docker/trust`, as docker resolves it.
pub fn default_trust_dir() -> PathBuf {
    let config = std::env::var_os("DOCKER_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(".docker")
        });
    config.join("trust")
}

impl KeyStore {
    /// A store in `trust_dir` (docker's `$DOCKER_CONFIG/trust`) with no passphrase source yet.
    pub fn new(trust_dir: impl Into<PathBuf>) -> Self {
        KeyStore {
            trust_dir: trust_dir.into(),
            root_passphrase: None,
            repository_passphrase: None,
            callback: None,
        }
    }

    /// The store docker would use, with passphrases from docker's environment variables.
    pub fn from_env() -> Self {
        Self::new(default_trust_dir()).with_env_passphrases()
    }

    /// Takes `DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE` / `..._REPOSITORY_PASSPHRASE` when set.
    pub fn with_env_passphrases(mut self) -> Self {
        self.root_passphrase = std::env::var(ROOT_PASSPHRASE_ENV).ok();
        self.repository_passphrase = std::env::var(REPOSITORY_PASSPHRASE_ENV).ok();
        self
    }

    /// Fixed passphrases (tests, or a CLI that read them elsewhere).
    pub fn with_passphrases(mut self, root: Option<&str>, repository: Option<&str>) -> Self {
        self.root_passphrase = root.map(str::to_owned);
        self.repository_passphrase = repository.map(str::to_owned);
        self
    }

    /// Asked when the environment has no passphrase (the CLI prompts on a terminal).
    pub fn with_callback(mut self, cb: PassphraseCallback) -> Self {
        self.callback = Some(cb);
        self
    }

    pub fn trust_dir(&self) -> &Path {
        &self.trust_dir
    }

    pub fn private_dir(&self) -> PathBuf {
        self.trust_dir.join("private")
    }

    /// Every key file, including notary's legacy `root_keys/` and `tuf_keys/<gun>/` layout,
    /// sorted by key ID. Files whose headers do not parse are skipped.
    pub fn list(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        walk_keys(&self.private_dir(), &mut out)?;
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Keys with `role` (and `gun`, when given).
    pub fn find(&self, role: &str, gun: Option<&str>) -> Result<Vec<KeyInfo>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|k| k.role == role && gun.is_none_or(|g| k.gun.as_deref() == Some(g)))
            .collect())
    }

    /// The key file for `id`, if present.
    pub fn info(&self, id: &str) -> Result<Option<KeyInfo>> {
        Ok(self.list()?.into_iter().find(|k| k.id == id))
    }

    /// Decrypts the key `id`. A wrong passphrase is [`Error::WrongPassphrase`]; nothing is
    /// written either way.
    pub fn load(&self, id: &str) -> Result<(PrivateKey, KeyInfo)> {
        let info = self
            .info(id)?
            .ok_or_else(|| Error::KeyNotFound(id.to_owned()))?;
        let pem = fs::read(&info.path).map_err(Error::io(&info.path))?;
        let key = self.decrypt_with_passphrase(&pem, &info, Purpose::Decrypt)?;
        if key.key_id() != info.id {
            return Err(Error::Invalid(format!(
                "{} holds key {}, not the key its name says",
                info.path.display(),
                key.key_id()
            )));
        }
        Ok((key, info))
    }

    fn decrypt_with_passphrase(
        &self,
        pem: &[u8],
        info: &KeyInfo,
        purpose: Purpose,
    ) -> Result<PrivateKey> {
        let wrong = || Error::WrongPassphrase {
            role: info.role.clone(),
            key_id: info.id.clone(),
            path: info.path.clone(),
        };
        // An unencrypted file needs no passphrase (notary writes those for empty passphrases).
        if !is_encrypted(pem) {
            return Ok(keyfile::decrypt(pem, "")?.key);
        }
        let kind = PassphraseKind::for_role(&info.role);
        if let Some(p) = self.fixed(kind) {
            return match keyfile::decrypt(pem, p) {
                Ok(kf) => Ok(kf.key),
                Err(berth_crypto::Error::Decrypt) => Err(wrong()),
                Err(e) => Err(e.into()),
            };
        }
        let Some(cb) = &self.callback else {
            return Err(Error::NoPassphrase(info.role.clone(), kind.env_var()));
        };
        for attempt in 0..PROMPT_ATTEMPTS {
            let req = PassphraseRequest {
                kind,
                purpose,
                role: &info.role,
                gun: info.gun.as_deref(),
                key_id: &info.id,
                attempt,
            };
            let Some(p) = cb(&req) else {
                return Err(Error::NoPassphrase(info.role.clone(), kind.env_var()));
            };
            match keyfile::decrypt(pem, &p) {
                Ok(kf) => return Ok(kf.key),
                Err(berth_crypto::Error::Decrypt) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(wrong())
    }

    fn fixed(&self, kind: PassphraseKind) -> Option<&str> {
        match kind {
            PassphraseKind::Root => self.root_passphrase.as_deref(),
            PassphraseKind::Repository => self.repository_passphrase.as_deref(),
        }
    }

    fn passphrase_for_new(&self, role: &str, gun: Option<&str>, key_id: &str) -> Result<String> {
        let kind = PassphraseKind::for_role(role);
        if let Some(p) = self.fixed(kind) {
            return Ok(p.to_owned());
        }
        let cb = self
            .callback
            .as_ref()
            .ok_or_else(|| Error::NoPassphrase(role.to_owned(), kind.env_var()))?;
        cb(&PassphraseRequest {
            kind,
            purpose: Purpose::Encrypt,
            role,
            gun,
            key_id,
            attempt: 0,
        })
        .ok_or_else(|| Error::NoPassphrase(role.to_owned(), kind.env_var()))
    }

    /// A new ECDSA P-256 key stored under `role` (docker's `trust key generate NAME` uses
    /// the signer name as the role; root and delegation keys carry no `gun`).
    pub fn generate(&self, role: &str, gun: Option<&str>) -> Result<(PrivateKey, KeyInfo)> {
        let key = PrivateKey::generate_ecdsa()?;
        let info = self.add(&key, role, gun)?;
        Ok((key, info))
    }

    /// Writes `key` to the store encrypted with the passphrase for `role`.
    pub fn add(&self, key: &PrivateKey, role: &str, gun: Option<&str>) -> Result<KeyInfo> {
        let id = key.key_id();
        let pass = self.passphrase_for_new(role, gun, &id)?;
        let pem = keyfile::encrypt(key, role, gun, &pass)?;
        let path = self.private_dir().join(format!("{id}.key"));
        ensure_private_dir(&self.private_dir())?;
        write_private_file(&path, pem.as_bytes())?;
        Ok(KeyInfo {
            id,
            role: role.to_owned(),
            gun: gun.map(str::to_owned),
            path,
        })
    }

    /// Imports a PEM private key (`PRIVATE KEY`, or `ENCRYPTED PRIVATE KEY` whose passphrase
    /// the callback is asked for) under `role`, as `docker trust key load --name` does. The
    /// store is only written once the key decoded.
    pub fn import_pem(&self, pem_text: &[u8], role: &str) -> Result<KeyInfo> {
        validate_signer_name(role)?;
        let block = pem::parse(pem_text).map_err(|e| Error::Invalid(format!("not PEM: {e}")))?;
        let key = match block.tag() {
            "PRIVATE KEY" => PrivateKey::from_pkcs8_der(block.contents())?,
            "ENCRYPTED PRIVATE KEY" => {
                let info = KeyInfo {
                    id: "(imported)".into(),
                    role: role.to_owned(),
                    gun: None,
                    path: PathBuf::from("(import)"),
                };
                // The file's own passphrase is asked for; the environment's is tried first
                // because docker users often protect exported keys with it.
                self.decrypt_with_passphrase(pem_text, &info, Purpose::Import)?
            }
            other => {
                return Err(Error::Invalid(format!(
                    "unsupported private key PEM block {other:?}: convert it with `openssl pkcs8 -topk8`"
                )));
            }
        };
        self.add(&key, role, None)
    }

    /// Writes a tar archive of the private key directory to `out` (created 0600): entries
    /// `private/...` with 0700 directories and 0600 files.
    pub fn backup(&self, out: &Path) -> Result<usize> {
        let dir = self.private_dir();
        let keys = self.list()?;
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(out)
            .map_err(Error::io(out))?;
        // An existing file keeps its mode on open; a backup holds secrets either way.
        fs::set_permissions(out, fs::Permissions::from_mode(0o600)).map_err(Error::io(out))?;
        let mut tar = tar::Builder::new(file);
        let mut dirs_done = std::collections::BTreeSet::new();
        for k in &keys {
            let rel = k.path.strip_prefix(&self.trust_dir).map_err(|_| {
                Error::Invalid(format!("{} is outside {}", k.path.display(), dir.display()))
            })?;
            for anc in rel
                .ancestors()
                .skip(1)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                if anc.as_os_str().is_empty() || !dirs_done.insert(anc.to_path_buf()) {
                    continue;
                }
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o700);
                h.set_size(0);
                h.set_mtime(now_secs());
                tar.append_data(&mut h, anc, std::io::empty())
                    .map_err(Error::io(out))?;
            }
            let data = fs::read(&k.path).map_err(Error::io(&k.path))?;
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o600);
            h.set_size(data.len() as u64);
            h.set_mtime(now_secs());
            tar.append_data(&mut h, rel, data.as_slice())
                .map_err(Error::io(out))?;
        }
        tar.into_inner()
            .and_then(|mut f| f.flush())
            .map_err(Error::io(out))?;
        Ok(keys.len())
    }

    /// Restores a [`KeyStore::backup`] archive. Every entry is checked first (only key files
    /// under `private/`, no absolute or `..` paths, PEM key headers); nothing is written unless
    /// all pass. Keys already present are left as they are. Returns the keys written.
    pub fn restore(&self, archive: &Path) -> Result<Vec<String>> {
        let f = fs::File::open(archive).map_err(Error::io(archive))?;
        let mut ar = tar::Archive::new(f);
        let mut files = Vec::new();
        for entry in ar.entries().map_err(Error::io(archive))? {
            let mut entry = entry.map_err(Error::io(archive))?;
            let path = entry.path().map_err(Error::io(archive))?.into_owned();
            let bad = |why: &str| Error::Invalid(format!("{}: {why}", path.display()));
            if path
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
            {
                return Err(bad("unsafe path in key backup"));
            }
            let rel = path
                .strip_prefix("private")
                .or_else(|_| path.strip_prefix("./private"))
                .map_err(|_| bad("not under private/"))?
                .to_path_buf();
            match entry.header().entry_type() {
                tar::EntryType::Directory => continue,
                tar::EntryType::Regular | tar::EntryType::GNUSparse => {}
                _ => return Err(bad("only regular files may be restored")),
            }
            if rel.extension().and_then(|e| e.to_str()) != Some("key") {
                return Err(bad("not a .key file"));
            }
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).map_err(Error::io(archive))?;
            keyfile::headers(&data).map_err(|e| bad(&format!("not a key file: {e}")))?;
            files.push((rel, data));
        }
        let dir = self.private_dir();
        ensure_private_dir(&dir)?;
        let mut written = Vec::new();
        for (rel, data) in files {
            let dest = dir.join(&rel);
            if dest.exists() {
                continue;
            }
            if let Some(parent) = dest.parent() {
                ensure_private_dir(parent)?;
            }
            write_private_file(&dest, &data)?;
            written.push(
                rel.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
        Ok(written)
    }
}

/// Docker's rule for signer and key names (`trust key generate/load`, `signer add`).
pub fn validate_signer_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        return Err(Error::Invalid(format!(
            "key name \"{name}\" must start with lowercase alphanumeric characters and can include \"-\" or \"_\" after the first character"
        )));
    }
    if ["root", "targets", "snapshot", "timestamp", "releases"].contains(&name) {
        return Err(Error::Invalid(format!(
            "\"{name}\" is a reserved name and cannot be used"
        )));
    }
    Ok(())
}

/// Parses a public key PEM as `docker trust signer add --key` accepts it: `PUBLIC KEY`
/// (a bare `ecdsa`/`rsa`/`ed25519` key) or `CERTIFICATE` (an `…-x509` key).
pub fn parse_public_key_pem(pem_text: &[u8]) -> Result<PublicKey> {
    let block = pem::parse(pem_text).map_err(|e| Error::Invalid(format!("not PEM: {e}")))?;
    match block.tag() {
        "CERTIFICATE" => {
            let certs = berth_crypto::x509::parse_pem_bundle(pem_text)?;
            let kt = if certs[0].rsa_bits().is_some() {
                KeyType::RsaX509
            } else {
                KeyType::EcdsaX509
            };
            Ok(PublicKey::new(kt, pem_text.to_vec())?)
        }
        "PUBLIC KEY" => [KeyType::Ecdsa, KeyType::Rsa]
            .into_iter()
            .find_map(|kt| PublicKey::new(kt, block.contents().to_vec()).ok())
            .ok_or_else(|| Error::Invalid("unsupported public key (ecdsa P-256 or RSA)".into())),
        other => Err(Error::Invalid(format!(
            "expected a PUBLIC KEY or CERTIFICATE PEM, found {other:?}"
        ))),
    }
}

fn is_encrypted(pem_text: &[u8]) -> bool {
    pem::parse(pem_text).is_ok_and(|b| b.tag() == "ENCRYPTED PRIVATE KEY")
}

fn walk_keys(dir: &Path, out: &mut Vec<KeyInfo>) -> Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir)(e)),
    };
    for e in rd {
        let e = e.map_err(Error::io(dir))?;
        let path = e.path();
        let ft = e.file_type().map_err(Error::io(&path))?;
        if ft.is_dir() {
            walk_keys(&path, out)?;
            continue;
        }
        if !ft.is_file() || path.extension().and_then(|x| x.to_str()) != Some("key") {
            continue;
        }
        let Ok(text) = fs::read(&path) else { continue };
        let Ok((role, gun)) = keyfile::headers(&text) else {
            continue;
        };
        let id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Notary's legacy layout names the role by directory: root_keys/ holds root keys.
        let in_root_keys = path
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "root_keys");
        let role = role.unwrap_or_else(|| if in_root_keys { "root" } else { "" }.to_owned());
        out.push(KeyInfo {
            id,
            role,
            gun,
            path,
        });
    }
    Ok(())
}

/// Creates `dir` (and parents) with mode 0700, as docker does for its trust directories.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::io(dir))
}

/// Writes `data` to `path` with mode 0600 through a temporary file and a rename, so a crash
/// never leaves a half-written key or cache file.
pub(crate) fn write_private_file(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        path.file_name()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default(),
        std::process::id(),
        now_nanos()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(Error::io(path))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gun_with_port_round_trips_in_the_store() {
        let dir =
            std::env::temp_dir().join(format!("berth-ks-{}-{}", std::process::id(), now_nanos()));
        let ks = KeyStore::new(&dir).with_passphrases(None, Some("pw"));
        let (key, info) = ks
            .generate("targets", Some("localhost:5000/team/app"))
            .unwrap();
        let text = fs::read_to_string(&info.path).unwrap();
        assert!(text.starts_with(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\ngun: localhost:5000/team/app\nrole: targets\n"
        ));
        let (back, listed) = ks.load(&info.id).unwrap();
        assert_eq!(back.key_id(), key.key_id());
        assert_eq!(listed.gun.as_deref(), Some("localhost:5000/team/app"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn signer_names_follow_docker() {
        for ok in ["alice", "a-b_c", "0x"] {
            validate_signer_name(ok).unwrap();
        }
        for bad in [
            "",
            "Alice",
            "-a",
            "releases",
            "root",
            "a/b",
            &"a".repeat(65),
        ] {
            assert!(validate_signer_name(bad).is_err(), "{bad}");
        }
    }
}
