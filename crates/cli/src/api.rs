//! A small client for Berth's admin API, shared by the admin verbs.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

/// Connection flags every verb that talks to a server takes.
#[derive(Args, Debug, Clone, Default)]
pub struct ServerArgs {
    /// Registry URL, e.g. https://localhost:5000 [env: BERTH_SERVER].
    #[arg(long, env = "BERTH_SERVER")]
    pub server: Option<String>,
    /// CA certificate (PEM) to trust for the server's TLS certificate [env: BERTH_CA_FILE]. When
    /// absent, ~/.docker/tls/<host:port>/ca.crt is used if it exists, then the system roots.
    #[arg(long, env = "BERTH_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

pub struct Api {
    base: String,
    http: reqwest::blocking::Client,
}

fn docker_tls_ca(base: &str) -> Option<PathBuf> {
    let hostport = base.split("://").nth(1)?.split('/').next()?;
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home)
        .join(".docker/tls")
        .join(hostport)
        .join("ca.crt");
    p.exists().then_some(p)
}

impl Api {
    /// Connects to `--server`, or to `fallback` (e.g. the host of a REPO argument).
    pub fn new(args: &ServerArgs, fallback: Option<String>) -> anyhow::Result<Self> {
        let base = args
            .server
            .clone()
            .or(fallback)
            .unwrap_or_else(|| "https://localhost:5000".into());
        let base = if base.contains("://") {
            base
        } else {
            format!("https://{base}")
        };
        let base = base.trim_end_matches('/').to_owned();
        let mut b =
            reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(300));
        if let Some(ca) = args.ca_file.clone().or_else(|| docker_tls_ca(&base)) {
            let pem =
                std::fs::read(&ca).with_context(|| format!("reading CA file {}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("parsing {}", ca.display()))?;
            b = b.tls_certs_only([cert]);
        }
        Ok(Api {
            base,
            http: b.build()?,
        })
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path)))
    }

    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.put(self.url(path)).json(body))
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(self.url(path)))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/{path}", self.base)
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req
            .send()
            .with_context(|| format!("contacting {}", self.base))?;
        let status = resp.status();
        let body: Value = resp.json().unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = body["errors"][0]["message"]
                .as_str()
                .unwrap_or("no details")
                .to_owned();
            bail!("{} answered {status}: {msg}", self.base);
        }
        Ok(body)
    }
}
