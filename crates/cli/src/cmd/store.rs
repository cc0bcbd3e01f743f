//! `berth store migrate`: copy a stopped single-node registry (embedded store) into an empty
//! cluster store (PostgreSQL + S3), then verify the copy.
//!
//! Blobs and manifests go through the destination's `Registry`, so every blob is re-hashed
//! against its digest on the way in and every manifest is validated as a push would be; the
//! rest is copied record by record through the storage traits. Afterwards every blob is read
//! back from S3 and hashed again, and every table is compared between the two stores.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use berth_oci::{Digest, RepoName, Tag, TagOrDigest};
use berth_registry::Registry;
use berth_storage::{
    BlobStore, IdentityStore, MetadataStore, ServerKeyRole, SettingsStore, TrustStore, WebhookStore,
};
use clap::{Args, Subcommand};
use futures::StreamExt;

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Copy a STOPPED single-node registry into an empty cluster store, and verify the copy
    ///
    /// Copies blobs, repositories, manifests, tags and referrers, trust data (every version,
    /// sealed server keys), identities, roles, scope maps, tokens, token-signing keys,
    /// settings, the audit log, webhooks and their queued events. Refused while a server uses DIR, and when the destination
    /// already holds anything. The cluster's nodes must then run with the passphrase DIR's
    /// server used (BERTH_TRUST_KEY_PASSPHRASE, or the file DIR/trust-key-passphrase).
    Migrate(MigrateArgs),
    /// Check the store: records against bytes, and what interrupted writes left
    ///
    /// Reports links whose bytes are missing, bytes of another size than recorded (and, with
    /// --verify-digests, bytes that do not hash to their digest), manifests missing content,
    /// tags naming missing manifests, blobs nobody links (garbage collection reclaims them),
    /// upload data without a record and temp files of interrupted writes. With --repair it
    /// deletes and unlinks corrupt blobs, removes links to missing bytes and dangling tags, and
    /// removes abandoned upload data and temp files older than an hour. Through the server
    /// (--server, Owner only), or on the data dir of a STOPPED embedded server (--data-dir).
    /// Exits non-zero when problems remain.
    Check(super::store_check::CheckArgs),
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The source: `embedded:DIR`, the data dir of a stopped `berth serve`.
    #[arg(long, value_name = "embedded:DIR")]
    pub from: String,
    /// The destination: `distributed:CONFIG`, a berth.toml whose [store] table (with the
    /// BERTH_STORE/BERTH_POSTGRES_URL/BERTH_S3_* environment over it) names the cluster store.
    #[arg(long, value_name = "distributed:CONFIG")]
    pub to: String,
}

pub fn run(c: StoreCommand) -> anyhow::Result<()> {
    match c {
        StoreCommand::Migrate(a) => migrate(a),
        StoreCommand::Check(a) => super::store_check::run(a),
    }
}

/// Records copied, per kind.
#[derive(Debug, Default)]
struct Counts {
    repositories: u64,
    blobs: u64,
    blob_bytes: u64,
    blob_links: u64,
    manifests: u64,
    tags: u64,
    guns: u64,
    tuf_files: u64,
    server_keys: u64,
    settings: u64,
    identities: u64,
    role_assignments: u64,
    scope_maps: u64,
    signing_keys: u64,
    audit_entries: u64,
    webhooks: u64,
    webhook_events: u64,
}

fn migrate(a: MigrateArgs) -> anyhow::Result<()> {
    let dir = match a.from.split_once(':') {
        Some(("embedded", d)) if !d.is_empty() => PathBuf::from(d),
        _ => bail!(
            "--from {:?}: expected embedded:DIR (the data dir of a stopped berth serve)",
            a.from
        ),
    };
    let config = match a.to.split_once(':') {
        Some(("distributed", c)) if !c.is_empty() => PathBuf::from(c),
        _ => bail!(
            "--to {:?}: expected distributed:CONFIG (a berth.toml with a [store] table)",
            a.to
        ),
    };
    let db = dir.join("metadata.db");
    // Checked before anything is opened: opening would create an empty store.
    if !db.is_file() {
        bail!(
            "{} is not a berth data dir (it has no metadata.db)",
            dir.display()
        );
    }
    let dest = match crate::config::store_from_file(&config, &|k| std::env::var(k).ok())? {
        crate::config::Store::Distributed(d) => d,
        crate::config::Store::Embedded => bail!(
            "{} does not name a distributed store: set kind = \"distributed\" in its [store] \
             table (or BERTH_STORE=distributed)",
            config.display()
        ),
    };
    // Held to the end: no server may change the source while it is copied.
    let _lock = super::serve::lock_data_dir(&dir).map_err(|e| {
        e.context("store migrate copies a STOPPED registry: stop its berth serve first")
    })?;
    let passphrase = source_passphrase(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let src_meta = Arc::new(
            berth_storage_embedded::SqliteMetadataStore::open(&db)
                .with_context(|| format!("opening {}", db.display()))?,
        );
        let src_blobs = Arc::new(
            berth_storage_embedded::FsBlobStore::open(&dir)
                .with_context(|| format!("opening the blobs in {}", dir.display()))?,
        );
        // The passphrase must unlock the source's vault: the copied keys stay sealed with it.
        berth_trust::KeyVault::open(src_meta.as_ref(), &passphrase)
            .await
            .context(
                "the trust-key passphrase does not unlock this data dir's vault (set \
                 BERTH_TRUST_KEY_PASSPHRASE to the one its server ran with)",
            )?;

        let shown_url = crate::config::redact_postgres_url(&dest.postgres_url);
        let pg = berth_storage_postgres::PgStore::connect(&dest.postgres_url)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {shown_url}"))?;
        // Nodes starting meanwhile wait, rather than creating an owner in the store being filled.
        let _startup = pg
            .startup_lock()
            .await
            .context("taking the cluster start-up lock")?;
        let pg = Arc::new(pg);
        let s3 = Arc::new(
            berth_storage_s3::S3BlobStore::new(
                dest.s3.to_s3_config(),
                berth_storage_s3::S3BlobStore::default_http()?,
            )
            .context("s3_endpoint")?,
        );
        let probe = Digest::of(berth_oci::Algorithm::Sha256, b"");
        s3.stat(&probe).await.with_context(|| {
            format!(
                "reaching bucket {:?} at {}",
                dest.s3.bucket, dest.s3.endpoint
            )
        })?;
        ensure_empty(pg.as_ref()).await.with_context(|| {
            format!(
                "the destination database at {shown_url} is not empty: migrate only into a new \
                 cluster store"
            )
        })?;
        eprintln!(
            "copying {} into PostgreSQL at {shown_url} and bucket {:?}{}",
            dir.display(),
            dest.s3.bucket,
            if dest.s3.prefix.is_empty() {
                String::new()
            } else {
                format!(" (prefix {:?})", dest.s3.prefix)
            }
        );
        let mut counts = Counts::default();
        copy_settings_and_identities(src_meta.as_ref(), pg.as_ref(), &mut counts).await?;
        copy_trust(src_meta.as_ref(), pg.as_ref(), &mut counts).await?;
        copy_webhooks(src_meta.as_ref(), pg.as_ref(), &mut counts).await?;
        let dst_registry = Registry::new(s3.clone(), pg.clone());
        let blobs =
            copy_registry(src_meta.as_ref(), src_blobs.as_ref(), &dst_registry, &mut counts)
                .await?;
        eprintln!("verifying: re-reading {} blobs from S3", blobs.len());
        verify_blobs(s3.as_ref(), &blobs).await?;
        verify_tables(src_meta.as_ref(), pg.as_ref()).await?;
        berth_trust::KeyVault::open(pg.as_ref(), &passphrase)
            .await
            .context("the copied trust-key vault does not open with the source's passphrase")?;
        println!(
            "migrated {} into the cluster store and verified the copy:\n  \
             {} repositories, {} blobs ({} bytes, each re-hashed from S3), {} blob links, \
             {} manifests, {} tags\n  \
             {} trust GUNs with {} TUF files and {} server keys, {} settings\n  \
             {} identities, {} role assignments, {} scope maps, {} token-signing keys, \
             {} audit entries, {} webhooks with {} queued events\n\
             Start every node with the trust-key passphrase {} used (BERTH_TRUST_KEY_PASSPHRASE{}).",
            dir.display(),
            counts.repositories,
            counts.blobs,
            counts.blob_bytes,
            counts.blob_links,
            counts.manifests,
            counts.tags,
            counts.guns,
            counts.tuf_files,
            counts.server_keys,
            counts.settings,
            counts.identities,
            counts.role_assignments,
            counts.scope_maps,
            counts.signing_keys,
            counts.audit_entries,
            counts.webhooks,
            counts.webhook_events,
            dir.display(),
            if std::env::var("BERTH_TRUST_KEY_PASSPHRASE").is_ok_and(|p| !p.is_empty()) {
                ", as now".to_owned()
            } else {
                format!(
                    " = the contents of {}",
                    dir.join("trust-key-passphrase").display()
                )
            }
        );
        Ok(())
    })
}

/// The passphrase the source's server sealed its keys with: `BERTH_TRUST_KEY_PASSPHRASE`, else
/// the one it generated into the data dir. Never created here.
fn source_passphrase(dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(p) = std::env::var("BERTH_TRUST_KEY_PASSPHRASE")
        && !p.is_empty()
    {
        return Ok(p.into_bytes());
    }
    let path = dir.join("trust-key-passphrase");
    let p = std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (or set BERTH_TRUST_KEY_PASSPHRASE to the passphrase the server ran with)",
            path.display()
        )
    })?;
    Ok(p.trim_ascii().to_vec())
}

/// Refuses a destination that holds anything: a copy merged into live data could not be
/// verified, and would mix two registries' identities and keys.
async fn ensure_empty(d: &berth_storage_postgres::PgStore) -> anyhow::Result<()> {
    let mut found = Vec::new();
    if !d.list_repos(None, 1).await?.items.is_empty() {
        found.push("repositories");
    }
    if !d.tuf_guns().await?.is_empty() {
        found.push("trust data");
    }
    if !d.settings_list().await?.is_empty() {
        found.push("settings");
    }
    if !d.identity_list(None).await?.is_empty() {
        found.push("identities");
    }
    if !d.role_list(None).await?.is_empty() {
        found.push("role assignments");
    }
    if !d.scope_map_list().await?.is_empty() {
        found.push("scope maps");
    }
    if !d.signing_keys().await?.is_empty() {
        found.push("token-signing keys");
    }
    if !d.audit_list(0, 1).await?.is_empty() {
        found.push("audit entries");
    }
    if !d.webhook_list().await?.is_empty() {
        found.push("webhooks");
    }
    if !found.is_empty() {
        bail!("it holds {}", found.join(", "));
    }
    Ok(())
}

async fn copy_settings_and_identities(
    s: &berth_storage_embedded::SqliteMetadataStore,
    d: &berth_storage_postgres::PgStore,
    n: &mut Counts,
) -> anyhow::Result<()> {
    // Settings include the vault's salt and check value: the sealed keys copied below open
    // only with them.
    for (name, value) in s.settings_list().await? {
        d.setting_set(&name, &value).await?;
        n.settings += 1;
    }
    for rec in s.identity_list(None).await? {
        d.identity_insert(&rec)
            .await
            .with_context(|| format!("copying identity {}", rec.name))?;
        n.identities += 1;
    }
    for r in s.role_list(None).await? {
        d.role_assign(r.role, &r.assignee, r.repository.as_deref())
            .await?;
        n.role_assignments += 1;
    }
    for m in s.scope_map_list().await? {
        d.scope_map_put(&m).await?;
        n.scope_maps += 1;
    }
    // Oldest first, so the newest stays the newest.
    let mut keys = s.signing_keys().await?;
    keys.reverse();
    for k in keys {
        d.signing_key_insert(&k).await?;
        n.signing_keys += 1;
    }
    let mut after = 0;
    loop {
        let page = s.audit_list(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for rec in &page {
            d.audit_append(rec).await?;
            n.audit_entries += 1;
        }
    }
    eprintln!(
        "  {} settings, {} identities, {} role assignments, {} scope maps, {} signing keys, {} audit entries",
        n.settings, n.identities, n.role_assignments, n.scope_maps, n.signing_keys, n.audit_entries
    );
    Ok(())
}

/// Webhooks (their secrets stay sealed: the vault's salt and check value were copied with the
/// settings) and the events queued for them, oldest first; attempts start again from zero.
async fn copy_webhooks(
    s: &berth_storage_embedded::SqliteMetadataStore,
    d: &berth_storage_postgres::PgStore,
    n: &mut Counts,
) -> anyhow::Result<()> {
    for (rec, _) in s.webhook_list().await? {
        d.webhook_insert(&rec)
            .await
            .with_context(|| format!("copying webhook {}", rec.name))?;
        n.webhooks += 1;
    }
    // Everything queued, claimed or not (nothing claims on a stopped registry); the lease
    // written back to the source expires at once.
    let queued = s.webhook_due(i64::MAX, 0, usize::MAX).await?;
    let items: Vec<berth_storage::NewDelivery> = queued
        .into_iter()
        .map(|q| berth_storage::NewDelivery {
            webhook: q.webhook,
            event_id: q.event_id,
            payload: q.payload,
        })
        .collect();
    for chunk in items.chunks(500) {
        d.webhook_enqueue(chunk, u64::MAX).await?;
        n.webhook_events += chunk.len() as u64;
    }
    eprintln!(
        "  {} webhooks, {} queued events",
        n.webhooks, n.webhook_events
    );
    Ok(())
}

async fn copy_trust(
    s: &berth_storage_embedded::SqliteMetadataStore,
    d: &berth_storage_postgres::PgStore,
    n: &mut Counts,
) -> anyhow::Result<()> {
    for gun in s.tuf_guns().await? {
        // Keys first: a GUN's files never name a server key the store lacks.
        for &role in ServerKeyRole::ALL {
            for key in s.server_keys(&gun, role).await? {
                d.server_key_insert(&gun, &key).await?;
                n.server_keys += 1;
            }
        }
        // One file per update, each role's versions ascending: every version is kept (clients
        // walk root chains and fetch files by hash), and each timestamp enters the changefeed.
        for f in s.tuf_history(&gun).await? {
            d.tuf_update(
                &gun,
                vec![berth_storage::NewTufFile {
                    role: f.role.clone(),
                    version: f.version,
                    sha256: f.sha256.clone(),
                    data: f.data.clone(),
                }],
                None,
            )
            .await
            .with_context(|| format!("copying {gun} {} v{}", f.role, f.version))?;
            n.tuf_files += 1;
        }
        n.guns += 1;
    }
    eprintln!(
        "  {} trust GUNs: {} TUF files, {} server keys",
        n.guns, n.tuf_files, n.server_keys
    );
    Ok(())
}

/// Copies every repository; returns every blob copied (digest → size).
async fn copy_registry(
    s: &berth_storage_embedded::SqliteMetadataStore,
    src_blobs: &berth_storage_embedded::FsBlobStore,
    dst: &Registry,
    n: &mut Counts,
) -> anyhow::Result<BTreeMap<String, (Digest, u64)>> {
    let mut copied: BTreeMap<String, (Digest, u64)> = BTreeMap::new();
    for repo in all_repos(s).await? {
        for (digest, size) in s.blob_links(&repo).await? {
            let key = digest.to_string();
            if let std::collections::btree_map::Entry::Vacant(slot) = copied.entry(key) {
                let data = src_blobs
                    .read(&digest, 0, size)
                    .await
                    .with_context(|| format!("reading blob {digest} of {repo}"))?;
                // The registry hashes the stream and refuses a mismatch.
                dst.upload_monolithic(&repo, &digest, Some(size), data, "berth-store-migrate")
                    .await
                    .with_context(|| format!("copying blob {digest} of {repo}"))?;
                slot.insert((digest.clone(), size));
                n.blobs += 1;
                n.blob_bytes = n.blob_bytes.saturating_add(size);
            } else {
                // In S3 already (verified on the way in): only the link is new.
                dst.metadata().link_blob(&repo, &digest, size).await?;
            }
            n.blob_links += 1;
        }
        let tags = all_tags(s, &repo).await?;
        let mut by_digest: BTreeMap<String, Vec<Tag>> = BTreeMap::new();
        for (tag, digest) in &tags {
            by_digest
                .entry(digest.clone())
                .or_default()
                .push(tag.parse().context("a stored tag")?);
        }
        // An index needs its children first: put what can be put, round after round.
        let mut pending = s.manifest_digests(&repo).await?;
        while !pending.is_empty() {
            let before = pending.len();
            let mut left = Vec::new();
            let mut last_err = None;
            for digest in pending.drain(..) {
                let m = s
                    .get_manifest(&repo, &TagOrDigest::Digest(digest.clone()))
                    .await?
                    .with_context(|| format!("manifest {digest} of {repo} vanished"))?;
                let tags = by_digest.remove(&digest.to_string()).unwrap_or_default();
                match dst
                    .put_manifest(
                        &repo,
                        &TagOrDigest::Digest(digest.clone()),
                        Some(&m.media_type),
                        m.body.clone(),
                        tags.clone(),
                    )
                    .await
                {
                    Ok(_) => {
                        n.manifests += 1;
                        n.tags += tags.len() as u64;
                    }
                    Err(berth_registry::Error::ManifestBlobUnknown(missing)) => {
                        last_err = Some(format!(
                            "manifest {digest} of {repo} references {missing:?}, which the \
                             source repository does not hold"
                        ));
                        by_digest.insert(digest.to_string(), tags);
                        left.push(digest);
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(e))
                            .with_context(|| format!("copying manifest {digest} of {repo}"));
                    }
                }
            }
            if left.len() == before {
                // No progress this round.
                bail!(last_err.unwrap_or_else(|| "manifests could not be copied".into()));
            }
            pending = left;
        }
        n.repositories += 1;
        eprintln!("  {repo}: {} tags", tags.len());
    }
    Ok(copied)
}

async fn all_repos(s: &dyn MetadataStore) -> anyhow::Result<Vec<RepoName>> {
    let mut out = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = s.list_repos(last.as_deref(), 1000).await?;
        for name in &page.items {
            out.push(
                name.parse()
                    .with_context(|| format!("stored repository name {name:?}"))?,
            );
        }
        last = page.items.last().cloned();
        if !page.more || last.is_none() {
            return Ok(out);
        }
    }
}

/// Every tag of `repo`: tag → manifest digest.
async fn all_tags(s: &dyn MetadataStore, repo: &RepoName) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let Some(page) = s.tag_details(repo, last.as_deref(), 1000).await? else {
            return Ok(out);
        };
        let full = page.len() == 1000;
        last = page.last().map(|t| t.tag.clone());
        out.extend(page.into_iter().map(|t| (t.tag, t.digest.to_string())));
        if !full || last.is_none() {
            return Ok(out);
        }
    }
}

/// Reads every copied blob back from the destination and hashes it again.
async fn verify_blobs(
    s3: &dyn BlobStore,
    blobs: &BTreeMap<String, (Digest, u64)>,
) -> anyhow::Result<()> {
    for (digest, size) in blobs.values() {
        let mut stream = s3
            .read(digest, 0, *size)
            .await
            .with_context(|| format!("reading back {digest}"))?;
        let mut h = berth_oci::Digester::new(digest.algorithm());
        let mut len = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("reading back {digest}"))?;
            len = len.saturating_add(chunk.len() as u64);
            h.update(&chunk);
        }
        let got = h.finish();
        if &got != digest || len != *size {
            bail!("blob {digest} read back from S3 as {got} ({len} bytes, expected {size})");
        }
    }
    Ok(())
}

/// Compares every table of the two stores.
async fn verify_tables(
    s: &berth_storage_embedded::SqliteMetadataStore,
    d: &berth_storage_postgres::PgStore,
) -> anyhow::Result<()> {
    fn same<T: PartialEq + std::fmt::Debug>(what: &str, a: T, b: T) -> anyhow::Result<()> {
        if a != b {
            bail!("verification failed: {what} differ between source and destination");
        }
        Ok(())
    }
    let repos = all_repos(s).await?;
    same(
        "repositories",
        repos.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        all_repos(d).await?.iter().map(|r| r.to_string()).collect(),
    )?;
    for repo in &repos {
        same(
            &format!("blob links of {repo}"),
            s.blob_links(repo).await?,
            d.blob_links(repo).await?,
        )?;
        same(
            &format!("manifests of {repo}"),
            s.manifest_digests(repo).await?,
            d.manifest_digests(repo).await?,
        )?;
        for digest in s.manifest_digests(repo).await? {
            let r = TagOrDigest::Digest(digest.clone());
            let (a, b) = (
                s.get_manifest(repo, &r).await?,
                d.get_manifest(repo, &r).await?,
            );
            same(
                &format!("manifest {digest} of {repo}"),
                a.map(|m| (m.media_type, m.body)),
                b.map(|m| (m.media_type, m.body)),
            )?;
        }
        same(
            &format!("tags of {repo}"),
            all_tags(s, repo).await?,
            all_tags(d, repo).await?,
        )?;
    }
    let guns = s.tuf_guns().await?;
    same("trust GUNs", &guns, &d.tuf_guns().await?)?;
    for gun in &guns {
        let files = |v: Vec<berth_storage::TufFile>| {
            v.into_iter()
                .map(|f| (f.role, f.version, f.sha256, f.data))
                .collect::<Vec<_>>()
        };
        same(
            &format!("TUF files of {gun}"),
            files(s.tuf_history(gun).await?),
            files(d.tuf_history(gun).await?),
        )?;
        for &role in ServerKeyRole::ALL {
            let keys = |v: Vec<berth_storage::ServerKeyRecord>| {
                v.into_iter()
                    .map(|k| (k.key_id, k.algorithm, k.public, k.sealed_private))
                    .collect::<Vec<_>>()
            };
            same(
                &format!("{role} keys of {gun}"),
                keys(s.server_keys(gun, role).await?),
                keys(d.server_keys(gun, role).await?),
            )?;
        }
    }
    same(
        "settings",
        s.settings_list().await?,
        d.settings_list().await?,
    )?;
    let ids = |mut v: Vec<berth_storage::IdentityRecord>| {
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    };
    same(
        "identities",
        ids(s.identity_list(None).await?),
        ids(d.identity_list(None).await?),
    )?;
    let roles = |v: Vec<berth_storage::RoleAssignmentRecord>| {
        v.into_iter()
            .map(|r| (r.role.as_str(), r.assignee, r.repository))
            .collect::<BTreeSet<_>>()
    };
    same(
        "role assignments",
        roles(s.role_list(None).await?),
        roles(d.role_list(None).await?),
    )?;
    let maps = |mut v: Vec<berth_storage::ScopeMapRecord>| {
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    };
    same(
        "scope maps",
        maps(s.scope_map_list().await?),
        maps(d.scope_map_list().await?),
    )?;
    let keys = |mut v: Vec<berth_storage::SigningKeyRecord>| {
        v.sort_by(|a, b| a.kid.cmp(&b.kid));
        v
    };
    same(
        "token-signing keys",
        keys(s.signing_keys().await?),
        keys(d.signing_keys().await?),
    )?;
    let hooks = |v: Vec<(berth_storage::WebhookRecord, berth_storage::WebhookStats)>| {
        v.into_iter()
            .map(|(r, s)| (r, s.pending))
            .collect::<Vec<_>>()
    };
    same(
        "webhooks",
        hooks(s.webhook_list().await?),
        hooks(d.webhook_list().await?),
    )?;
    let audit = |v: Vec<berth_storage::AuditRecord>| {
        v.into_iter()
            .map(|r| (r.at, r.actor, r.action, r.target, r.client, r.detail))
            .collect::<Vec<_>>()
    };
    let (mut sa, mut da) = (0i64, 0i64);
    loop {
        let a = s.audit_list(sa, 1000).await?;
        let b = d.audit_list(da, 1000).await?;
        sa = a.last().map_or(sa, |r| r.id);
        da = b.last().map_or(da, |r| r.id);
        let done = a.is_empty() && b.is_empty();
        same("audit entries", audit(a), audit(b))?;
        if done {
            break;
        }
    }
    Ok(())
}
