//! `berth-bench`: the load tool behind `bench/run` for what wrk cannot do (uploads, trust
//! publishes, bulk tagging). It speaks plain OCI Distribution / Notary v1, so the same command
//! runs against Berth and against the reference servers. Every subcommand prints one JSON line.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_crypto::PublicKey;
use berth_trust_client::{Credentials, KeyStore, Remote, Repository};
use berth_tuf::{FileMeta, RoleName, Signed};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Parser)]
struct Cli {
    /// Server base URL, e.g. https://127.0.0.1:5000.
    #[arg(long, global = true, default_value = "https://127.0.0.1:5000")]
    url: String,
    /// CA certificate (PEM) that signed the server's certificate.
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// Credentials as user:password; without them requests are anonymous (the references).
    #[arg(long, global = true)]
    creds: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Upload one file as a blob (POST, then one streamed PUT ?digest=) and report MB/s.
    PushBlob {
        #[arg(long)]
        repo: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Upload COUNT random blobs of SIZE bytes, CONCURRENCY at a time; report blobs/s.
    /// Writes their digests to DIGESTS for pull-blobs.
    PushSmall {
        #[arg(long)]
        repo: String,
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value_t = 4096)]
        size: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long)]
        digests: PathBuf,
    },
    /// GET every blob listed in DIGESTS, CONCURRENCY at a time; report blobs/s.
    PullBlobs {
        #[arg(long)]
        repo: String,
        #[arg(long)]
        digests: PathBuf,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Push a one-layer image and tag it COUNT times (`?tag=` batches when the server takes
    /// them, else one PUT per tag). Prints the manifest digest.
    Tag {
        #[arg(long)]
        repo: String,
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Tags per PUT; 1 means plain PUT by tag (what the reference understands).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Initialise GUN's trust data (docker style: server-managed snapshot and timestamp), then
    /// publish COUNT new tags. Reports, per publish, the whole client round (fetch, sign, POST,
    /// verify) and the POST alone (server-side work plus one loopback round trip).
    Publish {
        #[arg(long)]
        gun: String,
        #[arg(long, default_value_t = 20)]
        count: usize,
        /// Key store for this run (created; must be empty or absent).
        #[arg(long)]
        trust_dir: PathBuf,
    },
}

fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(256);
    if let Some(ca) = &cli.ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        b = b.tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem)?);
    }
    let http = b.build()?;
    let creds = match &cli.creds {
        Some(c) => {
            let (u, p) = c.split_once(':').context("--creds is user:password")?;
            Some((u.to_owned(), p.to_owned()))
        }
        None => None,
    };
    let s = Server {
        http,
        base: cli.url.trim_end_matches('/').to_owned(),
        creds,
    };
    let out = match cli.cmd {
        Cmd::PushBlob { repo, file } => push_blob(&s, &repo, &file).await?,
        Cmd::PushSmall {
            repo,
            count,
            size,
            concurrency,
            digests,
        } => push_small(&s, &repo, count, size, concurrency, &digests).await?,
        Cmd::PullBlobs {
            repo,
            digests,
            concurrency,
        } => pull_blobs(&s, &repo, &digests, concurrency).await?,
        Cmd::Tag {
            repo,
            count,
            batch,
            concurrency,
        } => tag(&s, &repo, count, batch, concurrency).await?,
        Cmd::Publish {
            gun,
            count,
            trust_dir,
        } => publish(&s, &gun, count, &trust_dir).await?,
    };
    println!("{out}");
    Ok(())
}

struct Server {
    http: reqwest::Client,
    base: String,
    creds: Option<(String, String)>,
}

impl Server {
    /// A bearer token for `scope` through docker's token flow, or `None` for servers without
    /// auth. Fetched once per run, as a client would, so per-request password hashing (Basic)
    /// never lands in a timed loop.
    async fn token(&self, scope: &str) -> Result<Option<String>> {
        let Some((user, pass)) = &self.creds else {
            return Ok(None);
        };
        let resp = self
            .http
            .get(format!("{}/oauth2/token?scope={scope}", self.base))
            .basic_auth(user, Some(pass))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("token for {scope}: {}", resp.status());
        }
        let v: serde_json::Value = resp.json().await?;
        let t = v["token"]
            .as_str()
            .context("token response without token")?;
        Ok(Some(t.to_owned()))
    }

    fn req(&self, m: reqwest::Method, url: &str, tok: &Option<String>) -> reqwest::RequestBuilder {
        let rb = self.http.request(m, url);
        match tok {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Starts an upload session; returns the absolute URL of its Location.
    async fn start_upload(&self, repo: &str, tok: &Option<String>) -> Result<String> {
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let resp = self.req(reqwest::Method::POST, &url, tok).send().await?;
        if resp.status() != reqwest::StatusCode::ACCEPTED {
            bail!("POST {url}: {}", resp.status());
        }
        let loc = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .context("upload without Location")?;
        Ok(if loc.starts_with("http") {
            loc.to_owned()
        } else {
            format!("{}{loc}", self.base)
        })
    }

    async fn put_blob(
        &self,
        repo: &str,
        tok: &Option<String>,
        digest: &str,
        len: u64,
        body: reqwest::Body,
    ) -> Result<()> {
        let loc = self.start_upload(repo, tok).await?;
        let sep = if loc.contains('?') { '&' } else { '?' };
        let url = format!("{loc}{sep}digest={digest}");
        let resp = self
            .req(reqwest::Method::PUT, &url, tok)
            .header("content-type", "application/octet-stream")
            .header("content-length", len)
            .body(body)
            .send()
            .await?;
        if resp.status() != reqwest::StatusCode::CREATED {
            bail!("PUT blob {digest}: {}", resp.status());
        }
        Ok(())
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

async fn push_blob(s: &Server, repo: &str, file: &Path) -> Result<serde_json::Value> {
    let len = std::fs::metadata(file)?.len();
    // The digest is the client's business before the upload (docker knows it from the layer
    // tarball); hashing it here is not part of the figure.
    let digest = {
        let path = file.to_owned();
        tokio::task::spawn_blocking(move || -> Result<String> {
            let mut h = Sha256::new();
            let mut f = std::fs::File::open(path)?;
            let mut buf = vec![0; 1 << 20];
            loop {
                let n = std::io::Read::read(&mut f, &mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Ok(hex::encode(h.finalize()))
        })
        .await??
    };
    let tok = s.token(&format!("repository:{repo}:pull,push")).await?;
    let f = tokio::fs::File::open(file).await?;
    // 1 MiB reads: the default 4 KiB would make the client the bottleneck.
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 1 << 20);
    let t = Instant::now();
    s.put_blob(
        repo,
        &tok,
        &format!("sha256:{digest}"),
        len,
        reqwest::Body::wrap_stream(stream),
    )
    .await?;
    let secs = t.elapsed().as_secs_f64();
    Ok(
        json!({"bytes": len, "secs": secs, "mb_s": len as f64 / 1e6 / secs,
              "digest": format!("sha256:{digest}")}),
    )
}

/// Cheap non-cryptographic filler: blob contents only need to differ per blob and run.
fn filler(seed: u64, size: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn push_small(
    s: &Server,
    repo: &str,
    count: usize,
    size: usize,
    concurrency: usize,
    digests: &Path,
) -> Result<serde_json::Value> {
    let tok = s.token(&format!("repository:{repo}:pull,push")).await?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let blobs: Vec<(String, Vec<u8>)> = (0..count)
        .map(|i| {
            let b = filler(seed.wrapping_add(i as u64 * 0x9e37_79b9), size);
            (format!("sha256:{}", sha256_hex(&b)), b)
        })
        .collect();
    let t = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(blobs.iter())
        .map(|(d, b)| {
            let tok = &tok;
            async move {
                s.put_blob(repo, tok, d, b.len() as u64, b.clone().into())
                    .await
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let secs = t.elapsed().as_secs_f64();
    for r in results {
        r?;
    }
    let list: Vec<&str> = blobs.iter().map(|(d, _)| d.as_str()).collect();
    std::fs::write(digests, list.join("\n"))?;
    Ok(json!({"count": count, "size": size, "secs": secs, "per_s": count as f64 / secs}))
}

async fn pull_blobs(
    s: &Server,
    repo: &str,
    digests: &Path,
    concurrency: usize,
) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(digests)?;
    let list: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let tok = s.token(&format!("repository:{repo}:pull")).await?;
    let t = Instant::now();
    let results: Vec<Result<usize>> = futures::stream::iter(list.iter())
        .map(|d| {
            let url = format!("{}/v2/{repo}/blobs/{d}", s.base);
            let tok = &tok;
            async move {
                let resp = s.req(reqwest::Method::GET, &url, tok).send().await?;
                if !resp.status().is_success() {
                    bail!("GET {url}: {}", resp.status());
                }
                Ok(resp.bytes().await?.len())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let secs = t.elapsed().as_secs_f64();
    let mut bytes = 0;
    for r in results {
        bytes += r?;
    }
    Ok(json!({"count": list.len(), "bytes": bytes, "secs": secs,
              "per_s": list.len() as f64 / secs}))
}

async fn tag(
    s: &Server,
    repo: &str,
    count: usize,
    batch: usize,
    concurrency: usize,
) -> Result<serde_json::Value> {
    let tok = s.token(&format!("repository:{repo}:pull,push")).await?;
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = filler(7, 1024);
    let cd = format!("sha256:{}", sha256_hex(config));
    let ld = format!("sha256:{}", sha256_hex(&layer));
    s.put_blob(repo, &tok, &cd, config.len() as u64, config.to_vec().into())
        .await?;
    s.put_blob(repo, &tok, &ld, layer.len() as u64, layer.clone().into())
        .await?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": ld, "size": layer.len()}],
    }))?;
    let md = format!("sha256:{}", sha256_hex(&manifest));
    let tags: Vec<String> = (0..count).map(|i| format!("t{i:06}")).collect();
    let chunks: Vec<&[String]> = tags.chunks(batch.max(1)).collect();
    let md_ref = &md;
    let t = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(chunks)
        .map(|chunk| {
            let tok = &tok;
            let manifest = manifest.clone();
            async move {
                let mut url = format!("{}/v2/{repo}/manifests/{}", s.base, chunk[0]);
                if chunk.len() > 1 {
                    let q: Vec<String> = chunk.iter().map(|t| format!("tag={t}")).collect();
                    url = format!("{}/v2/{repo}/manifests/{md_ref}?{}", s.base, q.join("&"));
                }
                let resp = s
                    .req(reqwest::Method::PUT, &url, tok)
                    .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                    .body(manifest)
                    .send()
                    .await?;
                if resp.status() != reqwest::StatusCode::CREATED {
                    bail!("PUT manifest ({} tags): {}", chunk.len(), resp.status());
                }
                Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let secs = t.elapsed().as_secs_f64();
    for r in results {
        r?;
    }
    Ok(json!({"manifest": md, "tags": count, "secs": secs}))
}

/// Nearest-rank percentile of an ascending slice.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    json!({"median_ms": pct(&v, 50.0), "p99_ms": pct(&v, 99.0), "n": v.len()})
}

async fn publish(
    s: &Server,
    gun: &str,
    count: usize,
    trust_dir: &Path,
) -> Result<serde_json::Value> {
    // Trust data is authorised under the GUN itself, as notary's challenge names it.
    let tok = s.token(&format!("repository:{gun}:pull,push")).await?;
    let remote =
        Remote::new(s.http.clone(), &s.base).with_credentials(tok.clone().map(Credentials::Bearer));
    let keys = KeyStore::new(trust_dir).with_passphrases(Some("bench-root"), Some("bench-repo"));
    let repo = Repository::new(remote, keys.clone(), gun);
    repo.initialize().await.context("initialising trust data")?;
    let digest = format!("sha256:{}", "ab".repeat(32));

    // Client included: what `docker trust sign` costs, minus the process start.
    let mut client = Vec::new();
    for i in 0..count {
        let t = Instant::now();
        repo.sign(&format!("c{i}"), &digest, 1234).await?;
        client.push(t.elapsed().as_secs_f64() * 1e3);
    }

    // Server side: targets.json is prepared and signed before the clock starts; the timed part
    // is the POST alone (validation, storage, snapshot and timestamp signing on the server).
    let data = repo
        .fetch()
        .await?
        .context("no trust data after publishing")?;
    let listed = data.root.body.key_role(&RoleName::Targets)?.keys;
    let (id, public): (&String, &PublicKey) = listed.iter().next().context("no targets key")?;
    let cid = public.canonical_key_id().unwrap_or_else(|_| id.clone());
    let (private, _) = keys.load(&cid)?;
    let mut body = data.roles["targets"].body.clone();
    let mut post = Vec::new();
    let url = format!("{}/v2/{gun}/_trust/tuf/", s.base);
    for i in 0..count {
        body.version += 1;
        let raw = hex::decode(&digest[7..])?;
        body.targets.insert(
            format!("s{i}"),
            FileMeta {
                length: 1234,
                hashes: [("sha256".to_owned(), raw)].into_iter().collect(),
                custom: None,
            },
        );
        let signed = Signed::sign_as(body.clone(), &[(&private, public)])?;
        let boundary = "berth-bench-boundary";
        let mut form = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"targets\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        form.extend_from_slice(signed.raw());
        form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let t = Instant::now();
        let resp = s
            .req(reqwest::Method::POST, &url, &tok)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(form)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if !status.is_success() {
            bail!("POST {url}: {status} {text}");
        }
        post.push(ms);
    }
    Ok(json!({"client": summary(client), "post": summary(post)}))
}
