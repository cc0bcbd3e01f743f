//! `berth serve`: open the embedded store, set up TLS, serve until SIGTERM/SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_access::Bootstrap;
use berth_registry::Registry;
use berth_server::{AppState, Listener};
use berth_storage_embedded::{FsBlobStore, SqliteMetadataStore};

use crate::args::ServeArgs;
use crate::config::{ServeConfig, Store, Tls};

/// Abandoned upload sessions are removed after this long.
const UPLOAD_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Sessions that never received a byte are removed after this long (clients send their first
/// chunk right after opening one).
const EMPTY_UPLOAD_MAX_AGE: Duration = Duration::from_secs(3600);
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// glibc's malloc, left alone, raises its mmap threshold to the size of the largest block freed:
/// after one argon2id hash (19 MiB) every later one comes from the heap and stays resident, and
/// each thread that allocates gets its own arena. Measured: 20 MiB of heap kept after start-up,
/// growing under load. A fixed threshold sends big blocks to mmap (returned on free) and keeps
/// trimming on; two arenas bound the fragmentation across tokio's and the blocking pool's threads.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        // Above the stream buffers (256 KiB–1 MiB, allocated per chunk: from mmap they cost a
        // page fault per page, measured at 13% of a blob pull), below argon2id's 19 MiB.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// How often freed heap goes back to the system (see `trim_heap`).
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Hands free heap pages back to the kernel. glibc only shrinks the top of its heaps; memory
/// freed in the middle after a burst (128 connections' TLS and HTTP buffers) stayed resident
/// and raised the level every later load started from: measured 45 MiB after a manifest load,
/// so a 5 GiB push that itself needs ~20 MiB peaked at 65 MiB.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim is thread-safe and only releases pages the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    tune_allocator();
    let cfg = ServeConfig::resolve(args)?;
    init_logging()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(cfg))
}

/// Log set-up: `BERTH_LOG` filters (default `info`), `BERTH_LOG_FORMAT=json` writes one JSON
/// object per line (for log collectors), and colours are used only on a terminal.
fn init_logging() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| "info".into());
    let format = std::env::var("BERTH_LOG_FORMAT").unwrap_or_default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format.as_str() {
        "json" => builder.json().with_ansi(false).init(),
        "" | "text" => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        other => anyhow::bail!("BERTH_LOG_FORMAT={other:?}: use text (the default) or json"),
    }
    Ok(())
}

fn cert_names(cfg: &ServeConfig) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(h) = hostname::get()
        && let Some(h) = h.to_str()
        && !h.is_empty()
    {
        names.push(h.to_lowercase());
    }
    if let Some(h) = &cfg.hostname {
        names.push(h.to_lowercase());
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Tightens anything in the data dir (itself included) that others could read or write, with a
/// warning: it holds password hashes, sealed keys, the audit log and possibly private images.
fn secure_data_dir(data: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut tightened: Vec<(usize, String)> = Vec::new();
    let mut failed = 0usize;
    // Resolved first: a data dir that is a symbolic link is still checked (links inside it are
    // neither followed nor changed).
    let root = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf());
    let mut stack = vec![root];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        } else if !meta.is_file() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o7077 == 0 {
            continue;
        }
        let want = mode & 0o700;
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want)) {
            Ok(()) => tightened.push((
                path.components().count(),
                format!("{} {mode:o}->{want:o}", path.display()),
            )),
            Err(e) => {
                failed += 1;
                tracing::error!(path = %path.display(), error = %e, "cannot make this private to the server's user");
            }
        }
    }
    if !tightened.is_empty() {
        // The shallowest first: the data dir, the database and the key files matter most.
        tightened.sort_by_key(|(depth, _)| *depth);
        let shown: Vec<&str> = tightened.iter().take(10).map(|(_, s)| s.as_str()).collect();
        tracing::warn!(
            count = tightened.len(),
            examples = %shown.join(", "),
            "the data dir was readable or writable by others; tightened to owner-only (0700 dirs, 0600 files)"
        );
    }
    if failed > 0 {
        tracing::error!(
            count = failed,
            "parts of the data dir stay readable by others; fix their owner or permissions"
        );
    }
}

/// File descriptors kept for everything but client connections (database, blobs being read or
/// written, TLS files, the blocking pool's work).
const FD_RESERVE: u64 = 512;

/// Raises the open-file soft limit to the hard limit (a common soft default is 1024, far below
/// the connection limit) and lowers the connection limit when even that is not enough, so the
/// server refuses extra clients with a 503 instead of failing `accept` and file opens.
fn fit_connection_limit(limits: &mut berth_server::Limits) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let cur = getrlimit(Resource::Nofile);
    let hard = cur.maximum;
    if cur.current != hard {
        let raised = Rlimit {
            current: hard,
            maximum: hard,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "could not raise the open-file limit");
        }
    }
    let Some(soft) = getrlimit(Resource::Nofile).current else {
        return; // unlimited
    };
    let room = usize::try_from(soft.saturating_sub(FD_RESERVE).max(16)).unwrap_or(usize::MAX);
    if limits.max_connections > room {
        tracing::warn!(
            max_connections = limits.max_connections,
            open_file_limit = soft,
            lowered_to = room,
            "the open-file limit cannot hold that many connections; serving fewer (raise `ulimit -n` / LimitNOFILE)"
        );
        limits.max_connections = room;
    }
}

/// Listens on `listen`, with the way out when the address is taken or not ours to use.
fn bind(listen: &str) -> anyhow::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(listen).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "cannot listen on {listen}: the address is in use (another server, perhaps another \
             berth, is on that port); stop it, or choose another address with --listen \
             (BERTH_LISTEN). Nothing was created or changed"
        ),
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "cannot listen on {listen}: permission denied (ports below 1024 need privileges); \
             choose another address with --listen (BERTH_LISTEN)"
        ),
        _ => anyhow::Error::new(e).context(format!("cannot listen on {listen}")),
    })
}

/// Takes the data dir's lock (`DIR/berth.lock`), held for as long as the returned file lives;
/// refused while a server (or `berth admin reset-owner`) holds it.
pub(crate) fn lock_data_dir(data: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = data.join("berth.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another berth server is using {} (it holds {}); stop it first or pick another --data-dir",
            data.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// What the composition root opened: the registry and the stores the trust and access services
/// use, plus what must live as long as the server.
struct Opened {
    registry: Arc<Registry>,
    trust: Arc<dyn berth_storage::TrustStore>,
    settings: Arc<dyn berth_storage::SettingsStore>,
    ids: Arc<dyn berth_storage::IdentityStore>,
    webhooks: Arc<dyn berth_storage::WebhookStore>,
    passphrase: Vec<u8>,
    /// The embedded store's data dir lock, held until the process exits.
    _lock: Option<std::fs::File>,
    /// The distributed store's start-up lock, released once first-use state exists.
    startup: Option<berth_storage_postgres::StartupLock>,
    /// Presigned blob URLs (distributed store with `redirect = true`).
    redirect: Option<berth_storage_s3::presign::Presigner>,
}

fn create_data_dir(data: &std::path::Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data)
        .with_context(|| format!("creating data dir {}", data.display()))
}

/// The embedded store: files and SQLite in the data dir, which this process locks.
fn open_embedded(data: &std::path::Path) -> anyhow::Result<Opened> {
    create_data_dir(data)?;
    // Held until the process exits: the embedded store keeps exact in-memory copies of hot
    // metadata, which a second server on the same directory would silently make stale.
    let lock = lock_data_dir(data)?;
    // Checked while holding the lock, so no other server is creating files meanwhile.
    secure_data_dir(data);
    let blobs = FsBlobStore::open(data)
        .with_context(|| format!("opening blob store in {}", data.display()))?;
    let meta =
        SqliteMetadataStore::open(data.join("metadata.db")).context("opening metadata database")?;
    let meta = Arc::new(meta);
    Ok(Opened {
        registry: Arc::new(Registry::new(Arc::new(blobs), meta.clone())),
        trust: meta.clone(),
        settings: meta.clone(),
        webhooks: meta.clone(),
        ids: meta,
        passphrase: trust_passphrase(data)?,
        _lock: Some(lock),
        startup: None,
        redirect: None,
    })
}

/// The distributed store: PostgreSQL and S3, shared with the other nodes. Nothing of the
/// registry is written to the local disk.
async fn open_distributed(
    d: &crate::config::Distributed,
    data: &std::path::Path,
    tls: &Tls,
) -> anyhow::Result<Opened> {
    // Every node must unseal the same keys, so the passphrase cannot be a per-node file.
    let passphrase = match std::env::var("BERTH_TRUST_KEY_PASSPHRASE") {
        Ok(p) if !p.is_empty() => p.into_bytes(),
        _ => anyhow::bail!(
            "the distributed store needs BERTH_TRUST_KEY_PASSPHRASE (the same on every node): it \
             seals the server-held trust keys and token-signing keys in the shared database. \
             Set it in the environment (e.g. an EnvironmentFile with mode 0600)"
        ),
    };
    if *tls == Tls::Generated {
        // The data dir holds only this node's generated TLS material.
        create_data_dir(data)?;
        secure_data_dir(data);
        tracing::warn!(
            "distributed store with a generated TLS certificate: each node makes its own CA; give \
             every node of a cluster the same certificate with --tls-cert/--tls-key"
        );
    }
    let shown_url = crate::config::redact_postgres_url(&d.postgres_url);
    let pg = berth_storage_postgres::PgStore::connect(&d.postgres_url)
        .await
        .with_context(|| {
            format!("connecting to PostgreSQL at {shown_url} (postgres_url / BERTH_POSTGRES_URL)")
        })?;
    let s3cfg = d.s3.to_s3_config();
    let blobs = berth_storage_s3::S3BlobStore::new(
        s3cfg.clone(),
        berth_storage_s3::S3BlobStore::default_http()?,
    )
    .context("s3_endpoint (BERTH_S3_ENDPOINT)")?;
    // A wrong endpoint, bucket or key shows now rather than on the first push.
    let probe = berth_oci::Digest::of(berth_oci::Algorithm::Sha256, b"");
    berth_storage::BlobStore::stat(&blobs, &probe)
        .await
        .with_context(|| {
            format!(
                "reaching bucket {:?} at {} (check s3_endpoint, s3_bucket, s3_region, \
                 s3_access_key_id and s3_secret_access_key / BERTH_S3_*)",
                d.s3.bucket, d.s3.endpoint
            )
        })?;
    let startup = pg
        .startup_lock()
        .await
        .context("taking the cluster start-up lock in PostgreSQL")?;
    tracing::info!(
        postgres = %shown_url,
        s3_endpoint = %d.s3.endpoint,
        bucket = %d.s3.bucket,
        prefix = %d.s3.prefix,
        redirect = d.redirect,
        "distributed store"
    );
    let pg = Arc::new(pg);
    Ok(Opened {
        registry: Arc::new(Registry::new(Arc::new(blobs), pg.clone())),
        trust: pg.clone(),
        settings: pg.clone(),
        webhooks: pg.clone(),
        ids: pg,
        passphrase,
        _lock: None,
        startup: Some(startup),
        redirect: d
            .redirect
            .then(|| berth_storage_s3::presign::Presigner::new(&s3cfg))
            .transpose()?,
    })
}

async fn serve(mut cfg: ServeConfig) -> anyhow::Result<()> {
    let signals = Signals::install()?;
    fit_connection_limit(&mut cfg.limits);
    // Bound before the data dir is touched: a start that cannot listen must not create the
    // owner (and show its one-time password) for nobody to use.
    let socket = bind(&cfg.listen)?;
    let metrics_socket = match &cfg.metrics_listen {
        Some(addr) => Some(bind(addr).map_err(|e| e.context("--metrics-listen"))?),
        None => None,
    };
    let data = &cfg.data_dir;
    let mut opened = match &cfg.store {
        Store::Embedded => open_embedded(data)?,
        Store::Distributed(d) => open_distributed(d, data, &cfg.tls).await?,
    };
    let registry = opened.registry.clone();
    let vault = berth_trust::KeyVault::open(opened.settings.as_ref(), &opened.passphrase)
        .await
        .context(match &cfg.store {
            Store::Embedded => "unlocking the trust key vault (is BERTH_TRUST_KEY_PASSPHRASE the one this data dir was created with?)",
            Store::Distributed(_) => "unlocking the trust key vault (is BERTH_TRUST_KEY_PASSPHRASE the one the cluster's database was created with?)",
        })?;
    // One argon2id derivation at start; the token service seals its keys with the same vault.
    let access_vault = vault.clone();
    // Webhook secrets are sealed with the same vault.
    let webhook_vault = vault.clone();
    let trust = Arc::new(berth_trust::TrustService::new(
        opened.trust.clone(),
        opened.settings.clone(),
        vault,
        berth_trust::TrustOptions::default(),
    ));
    let access = Arc::new(berth_access::AccessService::new(
        opened.ids.clone(),
        opened.settings.clone(),
        access_vault,
        cert_names(&cfg),
        cfg.auth_disabled,
    )?);
    let bootstrap = std::env::var("BERTH_BOOTSTRAP_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    let bootstrap_given = bootstrap.is_some();
    match access.init(bootstrap).await? {
        Bootstrap::Created(Some(generated)) => eprintln!(
            "\nCreated the bootstrap user 'owner' (role Owner). Its password, shown only this once:\n  {generated}\n\
             Log in with: berth login <host:port> -u owner --password-stdin\n"
        ),
        Bootstrap::Created(None) => {
            tracing::info!("created the bootstrap user 'owner' with BERTH_BOOTSTRAP_PASSWORD")
        }
        Bootstrap::Existing if bootstrap_given => tracing::warn!(
            data_dir = %data.display(),
            "BERTH_BOOTSTRAP_PASSWORD is ignored: this registry has its user 'owner' already. \
             Change a password with `berth user password owner`, or, with the server stopped, \
             `berth admin reset-owner --data-dir DIR`"
        ),
        Bootstrap::Existing => {}
        Bootstrap::Refused(why) => anyhow::bail!(
            "BERTH_BOOTSTRAP_PASSWORD is not accepted for the user 'owner': {why}; \
             set a longer one, or unset it to have a password generated and shown once"
        ),
    }
    // First-use state (owner, first signing key) exists now: other nodes may go on.
    drop(opened.startup.take());
    access.set_audit_every_token(cfg.audit_every_token);
    if cfg.auth_disabled {
        tracing::warn!("authentication is DISABLED (--auth-disabled): every caller is an Owner");
    }

    let addr: SocketAddr = socket.local_addr()?;
    let (listener, scheme) = match &cfg.tls {
        Tls::Off => (Listener::Plain, "http"),
        Tls::Files { cert, key } => (
            Listener::Tls(berth_server::tls::server_config(cert, key)?),
            "https",
        ),
        Tls::Generated => {
            let generated =
                berth_server::tls::ensure_generated(&data.join("tls"), &cert_names(&cfg))?;
            if generated.ca_created {
                print_trust_hint(&generated.ca_cert, addr);
            }
            (
                Listener::Tls(berth_server::tls::server_config(
                    &generated.cert,
                    &generated.key,
                )?),
                "https",
            )
        }
    };

    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TRIM_EVERY);
        loop {
            tick.tick().await;
            let _ = tokio::task::spawn_blocking(trim_heap).await;
        }
    });
    // The start-up self-check, in the background so a big store does not delay serving: what
    // crashes leave (upload data without a record, records without data, temp files), removed
    // once older than an hour. On the distributed store it stays off the blobs' listing (every
    // node starts it): `berth store check` walks everything.
    let check_registry = registry.clone();
    let leftovers = matches!(cfg.store, Store::Embedded);
    tokio::spawn(async move {
        let opts = berth_registry::CheckOptions {
            repair: true,
            quick: true,
            leftovers,
            ..berth_registry::CheckOptions::default()
        };
        match check_registry.check_store(opts).await {
            Ok(r) => tracing::info!(
                "store check at start: {} found ({} uploads looked at), {} repaired, {} remaining",
                r.counts(),
                r.uploads,
                r.repaired(),
                r.remaining()
            ),
            Err(e) => tracing::warn!(error = %e, "store check at start could not finish"),
        }
    });
    let purge_registry = registry.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_EVERY);
        loop {
            tick.tick().await;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let cutoff = now - UPLOAD_MAX_AGE.as_secs() as i64;
            let empty_cutoff = now - EMPTY_UPLOAD_MAX_AGE.as_secs() as i64;
            match purge_registry.purge_uploads(cutoff, empty_cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "purged abandoned upload sessions"),
                Err(e) => tracing::warn!(error = %e, "purging upload sessions"),
            }
        }
    });

    let guns = berth_server::GunResolver {
        hosts: cert_names(&cfg),
    };
    let redirect = opened
        .redirect
        .take()
        .map(|p| Arc::new(PresignedBlobs(p)) as Arc<dyn berth_server::BlobRedirect>);
    let gc = berth_server::gc::GcSettings {
        grace: cfg.gc.grace,
        // One grace period for everything a push leaves behind, upload sessions included
        // (the hourly purge still ends sessions past a day).
        upload_max_age: cfg.gc.grace.min(UPLOAD_MAX_AGE),
        exclusion: matches!(cfg.store, Store::Embedded).then(|| {
            Arc::new(BackupExclusion(data.clone())) as Arc<dyn berth_server::gc::GcExclusion>
        }),
    };
    let state = AppState::with_blob_redirect(
        berth_server::AppParts {
            registry,
            trust,
            guns,
            access,
            scheme,
            limits: berth_server::Limits::clone(&cfg.limits),
            gc,
        },
        redirect,
    );
    // Webhooks: events are queued in the store, delivered by a worker on this node.
    let source_host = cfg
        .hostname
        .clone()
        .or_else(|| {
            hostname::get()
                .ok()
                .and_then(|h| h.to_str().map(str::to_lowercase))
        })
        .unwrap_or_else(|| "localhost".into());
    let webhooks = berth_server::webhooks::Webhooks::new(
        opened.webhooks.clone(),
        opened.settings.clone(),
        webhook_vault,
        cfg.webhooks.clone(),
        format!("{source_host}:{}", addr.port()),
        scheme,
    )
    .map_err(|e| anyhow::anyhow!("webhooks: {e} (--webhook-ca-file / [webhooks] ca_file)"))?;
    webhooks.start();
    state.set_webhooks(webhooks);
    if let Some(every) = cfg.gc.interval {
        berth_server::gc::schedule(state.clone(), every, cfg.gc.untagged);
        tracing::info!(
            every_secs = every.as_secs(),
            grace_secs = cfg.gc.grace.as_secs(),
            untagged = cfg.gc.untagged,
            "garbage collection scheduled"
        );
    }
    let mut out = std::io::stdout();
    if let Some(m) = metrics_socket {
        let maddr = m.local_addr()?;
        let router = berth_server::metrics::metrics_router(state.clone());
        let limits = cfg.limits.clone();
        tokio::spawn(async move {
            // Ends with the process: the main server's shutdown ends `main`.
            let r = berth_server::serve(
                m,
                berth_server::Listener::Plain,
                limits,
                router,
                std::future::pending(),
            )
            .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
        writeln!(out, "metrics on http://{maddr}/metrics")?;
    }
    let app = berth_server::router(state);
    // Tests and scripts parse this exact line.
    writeln!(out, "listening on {scheme}://{addr}")?;
    out.flush()?;
    // The absolute path: with the default (./berth-data) the reader learns where that is.
    let shown = std::fs::canonicalize(data).unwrap_or_else(|_| data.clone());
    tracing::info!(%addr, data_dir = %shown.display(), "berth serving");
    berth_server::serve(
        socket,
        listener,
        cfg.limits.clone(),
        app,
        shutdown_signal(signals),
    )
    .await?;
    tracing::info!("stopped");
    Ok(())
}

/// The embedded store's side of the backup protocol (berth_storage_embedded::backup): blobs
/// are collected only under the exclusive lock on `DIR/gc.lock`.
struct BackupExclusion(std::path::PathBuf);

impl berth_server::gc::GcExclusion for BackupExclusion {
    fn try_hold(&self) -> Result<Box<dyn Send>, String> {
        match berth_storage_embedded::backup::GcLock::try_acquire(&self.0) {
            Ok(Some(lock)) => Ok(Box::new(lock)),
            Ok(None) => Err(
                "a backup is being taken (it holds gc.lock); the next collection sweeps them"
                    .into(),
            ),
            Err(e) => Err(format!(
                "cannot lock {}: {e}",
                self.0.join("gc.lock").display()
            )),
        }
    }
}

/// How long a presigned blob URL is good for: long enough for a client to follow the redirect
/// (and a slow download to start), short enough that a leaked URL soon stops working.
const PRESIGNED_URL_TTL: Duration = Duration::from_secs(300);

/// Blob downloads redirected to presigned S3 URLs.
struct PresignedBlobs(berth_storage_s3::presign::Presigner);

impl berth_server::BlobRedirect for PresignedBlobs {
    fn blob_url(&self, digest: &berth_oci::Digest) -> Option<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok())?;
        Some(self.0.blob_url(digest, now, PRESIGNED_URL_TTL))
    }
}

/// Writes a secret file readable only by the server's user.
fn write_secret(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

fn random_hex(n: usize) -> anyhow::Result<String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("system RNG: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The passphrase sealing server-held trust keys: `BERTH_TRUST_KEY_PASSPHRASE`, else one generated
/// on first start and kept (0600) in the data dir.
fn trust_passphrase(data: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(p) = std::env::var("BERTH_TRUST_KEY_PASSPHRASE")
        && !p.is_empty()
    {
        return Ok(p.into_bytes());
    }
    let path = data.join("trust-key-passphrase");
    if !path.exists() {
        write_secret(&path, random_hex(32)?.as_bytes())?;
    }
    Ok(std::fs::read(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim_ascii()
        .to_vec())
}

fn print_trust_hint(ca: &std::path::Path, addr: SocketAddr) {
    let ca = std::fs::canonicalize(ca).unwrap_or_else(|_| ca.to_path_buf());
    let hostport = if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    eprintln!(
        "\nBerth generated a private CA for its TLS certificate: {ca}\n\
         Make clients trust it (once per client machine):\n  \
         docker (pulls/pushes):  mkdir -p /etc/docker/certs.d/{hp} && cp {ca} /etc/docker/certs.d/{hp}/ca.crt\n  \
         docker trust / notary:  mkdir -p ~/.docker/tls/{hp} && cp {ca} ~/.docker/tls/{hp}/ca.crt\n  \
         skopeo:                 --cert-dir DIR (with {ca} copied into DIR as ca.crt)\n",
        ca = ca.display(),
        hp = hostport
    );
}

/// SIGTERM and SIGINT handlers, installed before anything is printed or bound: a signal that
/// arrives right after start (a supervisor stopping a server it just started) must be a clean
/// stop, not the default action's death by signal.
struct Signals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }
}

async fn shutdown_signal(mut signals: Signals) {
    tokio::select! {
        _ = signals.term.recv() => {},
        _ = signals.interrupt.recv() => {},
    }
    // Draining may take a while (GRACE); a second interrupt means "now".
    let mut interrupt = signals.interrupt;
    tokio::spawn(async move {
        if interrupt.recv().await.is_some() {
            let cut = berth_server::requests_in_flight();
            tracing::warn!(
                requests_cut = cut,
                "second interrupt: stopping at once, cutting {cut} request(s) in flight"
            );
            std::process::exit(130);
        }
    });
    tracing::info!(
        requests_in_flight = berth_server::requests_in_flight(),
        "shutdown signal received: finishing requests in flight (interrupt again to stop at once)"
    );
}
