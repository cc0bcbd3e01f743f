//! Repository operations as the docker CLI performs them (through the Go notary client):
//! initialise, sign and revoke tags, add and remove signers, inspect.
//!
//! Each operation starts from freshly verified trust data (or a new root and targets when the
//! repository has none), edits the targets-type roles in a draft, signs what changed with keys
//! from the key store, POSTs it, and updates the cache from the server's answer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use berth_crypto::{PrivateKey, PublicKey, x509};
use berth_tuf::time::format_rfc3339;
use berth_tuf::{DelegationRole, FileMeta, RoleKeys, RoleName, Root, Signed, Targets};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::keystore::{KeyStore, validate_signer_name, write_private_file};
use crate::tufclient::{Remote, Target, TrustData, TufClient};

/// Notary's default expiries for the roles the client signs.
pub const ROOT_EXPIRY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
pub const TARGETS_EXPIRY: Duration = Duration::from_secs(3 * 365 * 24 * 3600);

/// The role docker signs releases into; its signers are everyone added with `signer add`.
pub const RELEASES_ROLE: &str = "targets/releases";

/// One GUN: the verified TUF client plus the key store to sign with.
#[derive(Clone, Debug)]
pub struct Repository {
    tuf: TufClient,
    keys: KeyStore,
}

/// What [`Repository::sign`] and [`Repository::revoke`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The repository had no trust data and was initialised first.
    pub initialized: bool,
    /// The roles whose files were signed and published.
    pub roles: Vec<String>,
}

impl Repository {
    /// `gun` is `host[:port]/repository`; the cache lives next to the key store's keys.
    pub fn new(remote: Remote, keys: KeyStore, gun: &str) -> Self {
        Repository {
            tuf: TufClient::new(remote, keys.trust_dir(), gun),
            keys,
        }
    }

    pub fn tuf(&self) -> &TufClient {
        &self.tuf
    }

    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    pub fn gun(&self) -> &str {
        self.tuf.gun()
    }

    /// Verified trust data, or `None` when the server has none for this GUN.
    pub async fn fetch(&self) -> Result<Option<TrustData>> {
        match self.tuf.update().await {
            Ok(d) => Ok(Some(d)),
            Err(Error::RepositoryNotExist { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The signed digest and size of `tag` (docker's trusted pull).
    pub async fn resolve(&self, tag: &str) -> Result<Target> {
        self.tuf.resolve(tag).await
    }

    /// Initialises the repository as docker does (server-managed snapshot). An error if it
    /// already has trust data.
    pub async fn initialize(&self) -> Result<()> {
        if self.fetch().await?.is_some() {
            return Err(Error::Invalid(format!(
                "trust data for {} already exists",
                self.gun()
            )));
        }
        let draft = self.new_draft().await?;
        self.publish(draft).await
    }

    /// Signs `tag` → (`digest`, `size`) into every role docker would sign it into,
    /// initialising the repository first if it has no trust data (like `docker push`).
    pub async fn sign(&self, tag: &str, digest: &str, size: u64) -> Result<Published> {
        let meta = target_meta(digest, size)?;
        let (mut draft, initialized) = self.draft_or_init().await?;
        let roles = self.signable_roles(&draft, tag)?;
        for role in &roles {
            draft
                .role_mut(role)
                .targets
                .insert(tag.to_owned(), meta.clone());
        }
        self.publish(draft).await?;
        Ok(Published { initialized, roles })
    }

    /// Removes `tag` (or, with `None`, every tag) from the roles we can sign, as
    /// `docker trust revoke` does. Roles that did not list it are left alone.
    pub async fn revoke(&self, tag: Option<&str>) -> Result<Published> {
        let data = self.tuf.update().await?;
        let mut draft = Draft::from_data(&data);
        let candidates = self.signable_roles(&draft, tag.unwrap_or(""))?;
        let mut roles = Vec::new();
        for role in candidates {
            let Some(body) = draft.roles.get(&role) else {
                continue;
            };
            let remove: Vec<String> = body
                .body
                .targets
                .keys()
                .filter(|t| tag.is_none_or(|tag| tag == t.as_str()))
                .cloned()
                .collect();
            if remove.is_empty() {
                continue;
            }
            let r = draft.role_mut(&role);
            for t in remove {
                r.targets.remove(&t);
            }
            roles.push(role);
        }
        if roles.is_empty() {
            return Err(Error::Invalid(match tag {
                Some(t) => format!("no signature for {}:{t} in a role we can sign", self.gun()),
                None => format!("no signatures for {} in a role we can sign", self.gun()),
            }));
        }
        self.publish(draft).await?;
        Ok(Published {
            initialized: false,
            roles,
        })
    }

    /// Adds signer `name` with `keys` (`targets/<name>`, and the keys to
    /// `targets/releases`), initialising the repository first if needed.
    pub async fn add_signer(&self, name: &str, keys: &[PublicKey]) -> Result<Published> {
        validate_signer_name(name)?;
        if keys.is_empty() {
            return Err(Error::Invalid("a signer needs at least one key".into()));
        }
        let (mut draft, initialized) = self.draft_or_init().await?;
        let targets = draft.role_mut("targets");
        let ids: Vec<String> = keys.iter().map(PublicKey::key_id).collect();
        for k in keys {
            targets.delegations.keys.insert(k.key_id(), k.clone());
        }
        for role in [format!("targets/{name}"), RELEASES_ROLE.to_owned()] {
            match targets
                .delegations
                .roles
                .iter_mut()
                .find(|r| r.name == role)
            {
                Some(r) => {
                    for id in &ids {
                        if !r.keys.keyids.contains(id) {
                            r.keys.keyids.push(id.clone());
                        }
                    }
                }
                None => targets.delegations.roles.push(DelegationRole {
                    name: role,
                    keys: RoleKeys {
                        keyids: ids.clone(),
                        threshold: 1,
                    },
                    paths: vec![String::new()],
                }),
            }
        }
        self.publish(draft).await?;
        Ok(Published {
            initialized,
            roles: vec!["targets".into()],
        })
    }

    /// Removes signer `name`: its keys leave `targets/releases` and `targets/<name>` goes.
    pub async fn remove_signer(&self, name: &str) -> Result<Published> {
        validate_signer_name(name)?;
        let data = self.tuf.update().await?;
        let mut draft = Draft::from_data(&data);
        let role = format!("targets/{name}");
        let targets = draft.role_mut("targets");
        let Some(pos) = targets
            .delegations
            .roles
            .iter()
            .position(|r| r.name == role)
        else {
            return Err(Error::Invalid(format!(
                "no signer {name} for repository {}",
                self.gun()
            )));
        };
        let gone = targets.delegations.roles.remove(pos);
        if let Some(rel) = targets
            .delegations
            .roles
            .iter_mut()
            .find(|r| r.name == RELEASES_ROLE)
        {
            rel.keys.keyids.retain(|id| !gone.keys.keyids.contains(id));
        }
        // Keys no remaining role lists have no business in the file.
        let used: BTreeSet<String> = targets
            .delegations
            .roles
            .iter()
            .flat_map(|r| r.keys.keyids.iter().cloned())
            .collect();
        targets.delegations.keys.retain(|id, _| used.contains(id));
        self.publish(draft).await?;
        Ok(Published {
            initialized: false,
            roles: vec!["targets".into()],
        })
    }

    /// `docker trust inspect` for this repository: one element of its JSON array.
    pub async fn inspect(&self) -> Result<Value> {
        let data = self.tuf.update().await?;
        Ok(inspect_json(&data))
    }

    async fn draft_or_init(&self) -> Result<(Draft, bool)> {
        match self.fetch().await? {
            Some(d) => Ok((Draft::from_data(&d), false)),
            None => Ok((self.new_draft().await?, true)),
        }
    }

    /// Root v1 and targets v1 as docker's first push makes them: the first local root key
    /// (by ID) or a new one, a new targets key, server-managed snapshot and timestamp keys.
    async fn new_draft(&self) -> Result<Draft> {
        let gun = self.gun();
        let now = SystemTime::now();
        let remote = self.tuf.remote();
        // Ask the server first, so that a refusal (trust disabled, no signer role) leaves no
        // new root or targets key behind.
        let timestamp = remote.server_key(gun, "timestamp").await?;
        let snapshot = remote.server_key(gun, "snapshot").await?;
        let root_key = match self.keys.find("root", None)?.first() {
            Some(info) => self.keys.load(&info.id)?.0,
            None => self.keys.generate("root", None)?.0,
        };
        let cert = x509::root_certificate(&root_key, gun, now, now + ROOT_EXPIRY)?;
        let root_pub = PublicKey::new(berth_crypto::KeyType::EcdsaX509, cert.into_bytes())?;
        let (targets_key, _) = self.keys.generate("targets", Some(gun))?;
        let targets_pub = targets_key.public_key().clone();
        let mut keys = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for (role, k) in [
            ("root", &root_pub),
            ("targets", &targets_pub),
            ("snapshot", &snapshot),
            ("timestamp", &timestamp),
        ] {
            keys.insert(k.key_id(), k.clone());
            roles.insert(
                role.to_owned(),
                RoleKeys {
                    keyids: vec![k.key_id()],
                    threshold: 1,
                },
            );
        }
        let body = Root {
            version: 1,
            expires: format_rfc3339(now + ROOT_EXPIRY),
            consistent_snapshot: false,
            keys,
            roles,
        };
        let root = Signed::sign_as(body, &[(&root_key, &root_pub)])?;
        let mut draft = Draft {
            root,
            publish_root: true,
            roles: BTreeMap::new(),
        };
        draft.roles.insert(
            "targets".into(),
            DraftRole {
                body: empty_targets(),
                version: None,
                changed: true,
            },
        );
        Ok(draft)
    }

    /// Docker's `GetSignableRoles`: `targets` when there are no delegations, otherwise every
    /// direct child of `targets` whose paths allow `tag` and whose keys we hold.
    fn signable_roles(&self, draft: &Draft, tag: &str) -> Result<Vec<String>> {
        let targets = &draft.roles["targets"].body;
        if targets.delegations.roles.is_empty() {
            return Ok(vec!["targets".into()]);
        }
        let local: BTreeSet<String> = self.keys.list()?.into_iter().map(|k| k.id).collect();
        let mut out = Vec::new();
        for d in &targets.delegations.roles {
            let direct = RoleName::parse(&d.name)
                .ok()
                .and_then(|r| r.parent())
                .is_some_and(|p| p == RoleName::Targets);
            if !direct || !d.allows_path(tag) {
                continue;
            }
            let held = d.keys.keyids.iter().any(|id| {
                local.contains(id)
                    || targets
                        .delegations
                        .keys
                        .get(id)
                        .and_then(|k| k.canonical_key_id().ok())
                        .is_some_and(|c| local.contains(&c))
            });
            if held {
                out.push(d.name.clone());
            }
        }
        if out.is_empty() {
            return Err(Error::NoSigningKeys);
        }
        Ok(out)
    }

    /// Signs every changed role, POSTs them (with the root when new), then refreshes the
    /// cache from the server, which verifies what was stored.
    async fn publish(&self, draft: Draft) -> Result<()> {
        let gun = self.gun().to_owned();
        let now = SystemTime::now();
        let mut loaded: HashMap<String, PrivateKey> = HashMap::new();
        let mut files = Vec::new();
        if draft.publish_root {
            files.push(("root".to_owned(), draft.root.raw().to_vec()));
        }
        // Parents before children: a new delegation's keys come from its parent's draft.
        let mut changed: Vec<&String> = draft
            .roles
            .iter()
            .filter(|(_, r)| r.changed)
            .map(|(n, _)| n)
            .collect();
        changed.sort_by_key(|n| n.matches('/').count());
        for name in changed {
            let role = &draft.roles[name];
            let listed = draft.signing_keys(name)?;
            let mut signers = Vec::new();
            for pk in listed.values() {
                let cid = pk.canonical_key_id()?;
                if !loaded.contains_key(&cid) {
                    if self.keys.info(&cid)?.is_none() {
                        continue;
                    }
                    let (k, _) = self.keys.load(&cid)?;
                    loaded.insert(cid.clone(), k);
                }
                signers.push((cid, pk.clone()));
            }
            if signers.is_empty() {
                return Err(Error::MissingRoleKey {
                    role: name.clone(),
                    gun: gun.clone(),
                });
            }
            let mut body = role.body.clone();
            body.version = role.version.map_or(1, |v| v + 1);
            body.expires = format_rfc3339(now + TARGETS_EXPIRY);
            let pairs: Vec<(&PrivateKey, &PublicKey)> =
                signers.iter().map(|(cid, pk)| (&loaded[cid], pk)).collect();
            let signed = Signed::sign_as(body, &pairs)?;
            files.push((name.clone(), signed.raw().to_vec()));
        }
        self.tuf.remote().publish(&gun, &files).await?;
        if draft.publish_root {
            // Pin the root we made ourselves rather than trusting it anew from the server.
            let dir = self.tuf.cache_dir();
            crate::keystore::ensure_private_dir(&dir)?;
            write_private_file(&dir.join("root.json"), draft.root.raw())?;
        }
        self.tuf.update().await?;
        Ok(())
    }
}

/// A targets-type role being edited.
struct DraftRole {
    body: Targets,
    /// The published version, `None` for a file that does not exist yet.
    version: Option<i64>,
    changed: bool,
}

struct Draft {
    root: Signed<Root>,
    publish_root: bool,
    roles: BTreeMap<String, DraftRole>,
}

impl Draft {
    fn from_data(data: &TrustData) -> Draft {
        Draft {
            root: data.root.clone(),
            publish_root: false,
            roles: data
                .roles
                .iter()
                .map(|(n, s)| {
                    (
                        n.clone(),
                        DraftRole {
                            body: s.body.clone(),
                            version: Some(s.body.version),
                            changed: false,
                        },
                    )
                })
                .collect(),
        }
    }

    /// The role's body for editing, created empty (version 1 when published) if absent.
    fn role_mut(&mut self, name: &str) -> &mut Targets {
        let r = self
            .roles
            .entry(name.to_owned())
            .or_insert_with(|| DraftRole {
                body: empty_targets(),
                version: None,
                changed: false,
            });
        r.changed = true;
        &mut r.body
    }

    /// The public keys allowed to sign `role`, by the ID the role lists them under.
    fn signing_keys(&self, role: &str) -> Result<BTreeMap<String, PublicKey>> {
        if role == "targets" {
            return Ok(self.root.body.key_role(&RoleName::Targets)?.keys);
        }
        let name = RoleName::parse(role)?;
        let parent = name
            .parent()
            .ok_or_else(|| Error::Invalid(format!("{role} cannot be signed here")))?;
        let parent = self
            .roles
            .get(parent.as_str())
            .ok_or_else(|| Error::Invalid(format!("{role} has no parent role")))?;
        Ok(parent
            .body
            .key_role(&name)
            .map(|kr| kr.keys)
            .unwrap_or_default())
    }
}

fn empty_targets() -> Targets {
    Targets {
        version: 1,
        expires: String::new(),
        targets: BTreeMap::new(),
        delegations: Default::default(),
    }
}

/// Docker's target entry for a tag: only sha256 of the manifest, and its size.
fn target_meta(digest: &str, size: u64) -> Result<FileMeta> {
    let hex_digest = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| Error::Invalid(format!("digest {digest} is not sha256:<hex>")))?;
    let raw = hex::decode(hex_digest)
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| Error::Invalid(format!("digest {digest} is not sha256:<64 hex>")))?;
    let mut hashes = BTreeMap::new();
    hashes.insert("sha256".to_owned(), raw);
    Ok(FileMeta {
        length: i64::try_from(size).map_err(|_| Error::Invalid("size too large".into()))?,
        hashes,
        custom: None,
    })
}

/// The name docker shows for tags signed into `targets` by the repository key.
pub const REPO_ADMIN: &str = "Repo Admin";

/// One `docker trust inspect` entry: `{"Name","SignedTags","Signers","AdministrativeKeys"}`.
pub fn inspect_json(data: &TrustData) -> Value {
    let tags: Vec<Value> = signed_tags(data)
        .into_iter()
        .map(|(tag, digest, signers)| {
            json!({"SignedTag": tag, "Digest": digest, "Signers": signers})
        })
        .collect();
    // Docker lists signers in descending name order in the JSON form.
    let signers: Vec<Value> = signers(data)
        .into_iter()
        .rev()
        .map(|(name, ids)| {
            json!({"Name": name, "Keys": ids.iter().map(|id| json!({"ID": id})).collect::<Vec<_>>()})
        })
        .collect();
    let admin = |role: &str| {
        let mut ids = data
            .root
            .body
            .roles
            .get(role)
            .map(|r| r.keyids.clone())
            .unwrap_or_default();
        ids.sort();
        ids.into_iter()
            .map(|id| json!({"ID": id}))
            .collect::<Vec<_>>()
    };
    json!({
        "Name": data.gun,
        "SignedTags": tags,
        "Signers": signers,
        "AdministrativeKeys": [
            {"Name": "Root", "Keys": admin("root")},
            {"Name": "Repository", "Keys": admin("targets")},
        ],
    })
}

/// `docker trust inspect --pretty` for one repository; with `tag`, only that tag's signature
/// is listed (as docker does for `REPO:TAG`).
pub fn inspect_pretty(data: &TrustData, tag: Option<&str>) -> String {
    let gun = &data.gun;
    let mut out = String::new();
    let mut tags = signed_tags(data);
    // Docker heads the table with the name as given, tag included.
    let named = match tag {
        Some(tag) => {
            tags.retain(|(t, _, _)| t == tag);
            format!("{gun}:{tag}")
        }
        None => gun.clone(),
    };
    if tags.is_empty() {
        out.push_str(&format!("\nNo signatures for {named}\n\n"));
    } else {
        out.push_str(&format!("\nSignatures for {named}\n\n"));
        let mut rows = vec![vec![
            "SIGNED TAG".to_owned(),
            "DIGEST".to_owned(),
            "SIGNERS".to_owned(),
        ]];
        // The table shows the repository key's signature in parentheses.
        rows.extend(tags.into_iter().map(|(t, d, s)| {
            let s: Vec<String> = s
                .into_iter()
                .map(|n| if n == REPO_ADMIN { format!("({n})") } else { n })
                .collect();
            vec![t, d, s.join(", ")]
        }));
        out.push_str(&table(&rows));
    }
    let signers = signers(data);
    if !signers.is_empty() {
        out.push_str(&format!("\nList of signers and their keys for {gun}\n\n"));
        let mut rows = vec![vec!["SIGNER".to_owned(), "KEYS".to_owned()]];
        rows.extend(signers.into_iter().map(|(name, mut ids)| {
            ids.sort();
            let short: Vec<&str> = ids.iter().map(|id| &id[..id.len().min(12)]).collect();
            vec![name, short.join(", ")]
        }));
        out.push_str(&table(&rows));
    }
    out.push_str(&format!("\nAdministrative keys for {gun}\n\n"));
    for (role, label) in [("targets", "Repository Key"), ("root", "Root Key")] {
        let mut ids = data
            .root
            .body
            .roles
            .get(role)
            .map(|r| r.keyids.clone())
            .unwrap_or_default();
        ids.sort();
        out.push_str(&format!("  {label}:\t{}\n", ids.join(", ")));
    }
    out
}

/// Docker's `matchReleasedSignatures`: tags in `targets` or `targets/releases`, each with
/// the signers (other delegations with the same digest, or "Repo Admin" for `targets`),
/// in natural tag order.
fn signed_tags(data: &TrustData) -> Vec<(String, String, Vec<String>)> {
    let hex_of = |t: &Target| t.digest.trim_start_matches("sha256:").to_owned();
    let mut released: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for role in ["targets", RELEASES_ROLE] {
        for t in data.targets_in(role) {
            released.entry((t.name.clone(), hex_of(&t))).or_default();
        }
    }
    for role in data.roles.keys() {
        if role == RELEASES_ROLE {
            continue;
        }
        for t in data.targets_in(role) {
            if let Some(s) = released.get_mut(&(t.name.clone(), hex_of(&t))) {
                s.push(if role == "targets" {
                    REPO_ADMIN.to_owned()
                } else {
                    role.trim_start_matches("targets/").to_owned()
                });
            }
        }
    }
    let mut rows: Vec<_> = released
        .into_iter()
        .map(|((tag, digest), mut signers)| {
            signers.sort();
            (tag, digest, signers)
        })
        .collect();
    rows.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    rows
}

/// Direct children of `targets` except `targets/releases`, with their key IDs, by name.
fn signers(data: &TrustData) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = data
        .roles
        .get("targets")
        .map(|t| {
            t.body
                .delegations
                .roles
                .iter()
                .filter(|d| d.name != RELEASES_ROLE)
                .filter_map(|d| {
                    let name = d.name.strip_prefix("targets/")?;
                    (!name.contains('/')).then(|| (name.to_owned(), d.keys.keyids.clone()))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Like Go's tabwriter with docker's settings (min width 10, padding 3): every column but the
/// last is padded to its widest cell.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count() + 3)
                .max()
                .unwrap_or(0)
                .max(10)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}", w = widths[c]));
            }
        }
        out.push('\n');
    }
    out
}

/// Natural order ("v2" before "v10"), as docker sorts tags.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, _) => return std::cmp::Ordering::Less,
            (_, None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.len() - a.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let nb = b.len() - b.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let (da, db) = (
                    a[..na].trim_start_matches('0'),
                    b[..nb].trim_start_matches('0'),
                );
                let ord = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                a = &a[x.len_utf8()..];
                b = &b[y.len_utf8()..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_and_table() {
        let mut v = vec!["v10", "v2", "latest", "v1"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["latest", "v1", "v2", "v10"]);
        let t = table(&[
            vec!["SIGNER".into(), "KEYS".into()],
            vec!["alice".into(), "0123".into()],
        ]);
        assert_eq!(t, "SIGNER    KEYS\nalice     0123\n");
    }

    #[test]
    fn target_meta_is_docker_shaped() {
        let m = target_meta(&format!("sha256:{}", "ab".repeat(32)), 42).unwrap();
        assert_eq!(m.length, 42);
        assert_eq!(m.hashes.len(), 1);
        assert!(target_meta("sha512:00", 1).is_err());
        assert!(target_meta("sha256:zz", 1).is_err());
    }
}
