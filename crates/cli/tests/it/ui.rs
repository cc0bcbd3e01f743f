//! The web UI in a real browser: headless Chromium (Debian's `chromium`) driven through
//! `chromedriver` (Debian's `chromium-driver`) with fantoccini, against a `berth serve` with
//! authentication on. Signed and unsigned tags, the content-trust switch through its
//! confirmation, an AcrPull user refused on the Owner pages, search and paging; CSRF refusals,
//! headers and logout replay with a plain HTTP client carrying the session cookie.
//! Screenshots go to `target/ui-screenshots/` (the path is printed).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::json;

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_cli::{Berth, new_layout, oci};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One chromedriver on a free loopback port and one browser session in a fresh profile.
struct Browser {
    client: Option<Client>,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

/// chromedriver in a process group of its own, which the browser it starts joins: dropped
/// (also when a test fails half-way), the whole group is killed, so no browser outlives it.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require_browser() {
    for p in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            std::path::Path::new(p).exists(),
            "{p} is missing: the web UI tests need Debian's chromium and chromium-driver \
             (apt-get install -y --no-install-recommends chromium chromium-driver; scripts/test-deps)"
        );
    }
}

impl Browser {
    async fn start() -> Browser {
        require_browser();
        let mut driver = Driver(
            Command::new(CHROMEDRIVER)
                .args(["--port=0", "--allowed-ips=127.0.0.1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("start chromedriver"),
        );
        // "ChromeDriver was started successfully on port N."
        let out = driver.0.stdout.take().expect("chromedriver stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if !sent
                    && let Some(p) = line
                        .split("started successfully on port ")
                        .nth(1)
                        .and_then(|r| r.trim_end_matches('.').trim().parse::<u16>().ok())
                {
                    let _ = tx.send(p);
                    sent = true;
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromedriver did not say its port within 30 s");
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--ignore-certificate-errors",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--window-size=1360,1000",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": CHROMIUM, "args": args}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut last_err = None;
        let mut client = None;
        for _ in 0..3 {
            match ClientBuilder::new(connector.clone())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(e) => {
                    last_err = Some(e);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        let client = client.unwrap_or_else(|| panic!("webdriver session: {last_err:?}"));
        Browser {
            client: Some(client),
            _driver: driver,
            _profile: profile,
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("browser session")
    }

    async fn goto(&self, srv: &Server, path: &str) {
        self.c()
            .goto(&srv.url(path))
            .await
            .unwrap_or_else(|e| panic!("goto {path}: {e}"));
    }

    async fn path(&self) -> String {
        let u = self.c().current_url().await.expect("current url");
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        }
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let src = self.c().source().await.unwrap_or_default();
        self.c()
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}\npage:\n{src}"))
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("element text")
    }

    async fn count(&self, css: &str) -> usize {
        self.c()
            .find_all(Locator::Css(css))
            .await
            .expect("find_all")
            .len()
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.expect("clear");
        e.send_keys(text).await.expect("type");
    }

    /// Clicks a link or submit button and waits until its page is gone (the element stale),
    /// so nothing is read from the page being left.
    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        e.click().await.expect("click");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match e.tag_name().await {
                Err(err) if err.is_stale_element_reference() => break,
                _ if std::time::Instant::now() > deadline => {
                    panic!("clicking {css} did not leave the page")
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    async fn source(&self) -> String {
        self.c().source().await.expect("page source")
    }

    /// The login form, filled and sent; lands on the page `/` leads to.
    async fn login(&self, srv: &Server, user: &str, password: &str) {
        self.goto(srv, "/").await;
        assert!(
            self.path().await.starts_with("/ui/login"),
            "{}",
            self.path().await
        );
        self.fill("#username", user).await;
        self.fill("#password", password).await;
        self.click("#login").await;
        assert_eq!(self.text("#whoami").await, user);
    }

    /// Saves a PNG of the viewport in target/ui-screenshots and prints where.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.c().screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        println!("screenshot: {}", path.display());
        path
    }

    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("ui-screenshots")
}

/// `application/x-www-form-urlencoded` of `fields`.
fn form_body(fields: &[(&str, &str)]) -> Vec<u8> {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

/// The value of the first hidden `csrf` field in a page.
fn csrf_in(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no csrf field in\n{html}"));
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').expect("csrf end")].to_owned()
}

/// A cookie's value from a response's Set-Cookie headers.
fn set_cookie(r: &Resp, name: &str) -> Option<(String, String)> {
    r.headers_all("set-cookie").into_iter().find_map(|h| {
        h.strip_prefix(&format!("{name}="))
            .map(|rest| (rest.split(';').next().unwrap_or("").to_owned(), h.clone()))
    })
}

/// A browser-less UI client: the session cookie and the page's CSRF token, sent by hand.
struct UiHttp {
    client: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl UiHttp {
    async fn login(srv: &Server, user: &str, password: &str) -> UiHttp {
        let client = srv
            .client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(fresh_ip())
            .build()
            .unwrap();
        let form = call_with(
            srv,
            &client,
            Method::GET,
            "/ui/login",
            &Cred::None,
            &[],
            None,
        )
        .await;
        form.expect(200);
        let (nonce, _) = set_cookie(&form, "__Host-berth-login").expect("login cookie");
        let body = String::from_utf8(form.body.clone()).unwrap();
        assert_eq!(csrf_in(&body), nonce);
        let cookie = format!("__Host-berth-login={nonce}");
        let r = call_with(
            srv,
            &client,
            Method::POST,
            "/ui/login",
            &Cred::None,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &cookie),
            ],
            Some(form_body(&[
                ("csrf", &nonce),
                ("username", user),
                ("password", password),
                ("next", "/ui/repositories"),
            ])),
        )
        .await;
        assert_eq!(r.status, 303, "{r}");
        let (session, header) = set_cookie(&r, "__Host-berth-session").expect("session cookie");
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(header.contains(attr), "{attr} missing: {header}");
        }
        let mut ui = UiHttp {
            client,
            cookie: format!("__Host-berth-session={session}"),
            csrf: String::new(),
        };
        let page = ui.get(srv, "/ui/repositories").await;
        page.expect(200);
        ui.csrf = csrf_in(&String::from_utf8(page.body.clone()).unwrap());
        ui
    }

    async fn get(&self, srv: &Server, path: &str) -> Resp {
        call_with(
            srv,
            &self.client,
            Method::GET,
            path,
            &Cred::None,
            &[("cookie", &self.cookie)],
            None,
        )
        .await
    }

    async fn post(&self, srv: &Server, path: &str, fields: &[(&str, &str)]) -> Resp {
        call_with(
            srv,
            &self.client,
            Method::POST,
            path,
            &Cred::None,
            &[
                ("cookie", &self.cookie),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Some(form_body(fields)),
        )
        .await
    }
}

async fn trust_status(srv: &Server) -> String {
    let v = admin(srv, Method::GET, "config/content-trust", None).await;
    v["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn signed_and_unsigned_tags_and_the_owner_switch_in_a_browser() {
    require_browser();
    let srv = Server::start_with_auth();
    enable_trust_as_owner(&srv).await;
    let alice_pw = "alice-password-1";
    user_with_roles(&srv, "alice", alice_pw, &["AcrPush", "AcrImageSigner"]).await;
    let alice = Cred::basic("alice", alice_pw);
    let repo = format!("{}/team/app", srv.host());
    let mut rng = Rng::new();
    let work = tempfile::tempdir().unwrap();
    let b = Berth::new(&srv).logged_in(&alice);
    // v1: pushed, then signed by alice (a delegation named after her, as docker's trust sign).
    let (l1, img1) = new_layout(work.path(), "v1", &mut rng);
    b.run(&["push", &oci(&l1, "v1"), &format!("{repo}:v1")])
        .ok();
    let out = b.run(&["trust", "sign", &format!("{repo}:v1")]).ok();
    assert!(out.stdout.contains("Created signer: alice"), "{out}");
    // v2: pushed, never signed.
    let (l2, _) = new_layout(work.path(), "v2", &mut rng);
    b.run(&["push", &oci(&l2, "v2"), &format!("{repo}:v2")])
        .ok();
    // v3: signed, then repointed by a plain push: the signature names the old digest.
    let (l3, _) = new_layout(work.path(), "v3", &mut rng);
    b.run(&["push", &oci(&l3, "v3"), &format!("{repo}:v3")])
        .ok();
    b.run(&["trust", "sign", &format!("{repo}:v3")]).ok();
    let (l3b, _) = new_layout(work.path(), "v3", &mut rng);
    b.run(&["push", &oci(&l3b, "v3"), &format!("{repo}:v3")])
        .ok();
    // multi: a two-platform index, signed.
    let amd = Image::build("amd64", &mut rng, 1, 3000);
    let arm = Image::build("arm64", &mut rng, 1, 3000);
    for img in [&amd, &arm] {
        push_image_as(&srv, &alice, "team/app", &img.digest, img).await;
    }
    let index = index_of(
        OCI_INDEX,
        &[
            (OCI_MANIFEST, &amd.manifest, "amd64"),
            (OCI_MANIFEST, &arm.manifest, "arm64"),
        ],
    );
    call(
        &srv,
        Method::PUT,
        "/v2/team/app/manifests/multi",
        &alice,
        &[("content-type", OCI_INDEX)],
        Some(index),
    )
    .await
    .expect(201);
    b.run(&["trust", "sign", &format!("{repo}:multi")]).ok();

    let br = Browser::start().await;
    br.login(&srv, "owner", OWNER_PASSWORD).await;
    assert_eq!(br.path().await, "/ui/repositories");
    assert_eq!(br.text("#repo-count").await, "1 repository");
    br.click("a.repo").await;
    assert_eq!(br.text("#repo-name").await, "team/app");
    assert_eq!(br.path().await, "/ui/r/team/app");

    // Signed and unsigned rows differ, with the signer's name.
    let v1 = br.find("tr[data-tag='v1']").await;
    assert_eq!(
        v1.attr("class").await.unwrap().as_deref(),
        Some("tag signed")
    );
    let v1_text = v1.text().await.unwrap();
    assert!(
        v1_text.contains("Signed") && v1_text.contains("alice"),
        "{v1_text}"
    );
    assert!(v1_text.contains(&img1.digest[..19]), "{v1_text}");
    let v2 = br.find("tr[data-tag='v2']").await;
    assert_eq!(
        v2.attr("class").await.unwrap().as_deref(),
        Some("tag unsigned")
    );
    let v2_text = v2.text().await.unwrap();
    assert!(
        v2_text.contains("Unsigned") && !v2_text.contains("alice"),
        "{v2_text}"
    );
    let multi = br.find("tr[data-tag='multi']").await;
    assert_eq!(
        multi.attr("class").await.unwrap().as_deref(),
        Some("tag signed")
    );
    let multi_text = multi.text().await.unwrap();
    assert!(
        multi_text.contains("linux/amd64, linux/arm64"),
        "{multi_text}"
    );
    let v3 = br.find("tr[data-tag='v3']").await;
    assert_eq!(
        v3.attr("class").await.unwrap().as_deref(),
        Some("tag mismatch")
    );
    assert!(v3.text().await.unwrap().contains("mismatch"));
    // Trust metadata: versions, expiry dates, the signer with its key id.
    let trust = br.text("div.trust").await;
    for want in [
        "root",
        "targets",
        "snapshot",
        "timestamp",
        "targets/alice",
        "alice",
    ] {
        assert!(trust.contains(want), "{want} missing from\n{trust}");
    }
    assert!(br.count("table.signers code").await >= 1);
    // Fresh metadata expires in years: no expiry warning.
    assert_eq!(br.count("p.expiry").await, 0);
    br.screenshot("tags").await;

    // The signing policy: team/app gets signed-pulls-only from its page; the registry
    // immutable signed tags by default. The server enforces what the form stored.
    assert!(br.text("#policy").await.contains("signed pulls only off"));
    br.click("#policy a").await;
    assert_eq!(
        br.find("#policy-repo")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("team/app")
    );
    br.find("#repo-spo option[value='on']")
        .await
        .click()
        .await
        .unwrap();
    br.click("#repo-save").await;
    assert!(
        br.text("#message")
            .await
            .contains("Policy of team/app saved")
    );
    let row = br.text("tr[data-repo='team/app']").await;
    assert!(
        row.contains("on (on)") && row.contains("off (default)"),
        "{row}"
    );
    br.find("#default-ist option[value='on']")
        .await
        .click()
        .await
        .unwrap();
    br.click("#default-save").await;
    br.screenshot("policy").await;
    let p = admin(&srv, Method::GET, "policy/team/app", None).await;
    assert_eq!(p["effective"]["signedPullsOnly"], true, "{p}");
    assert_eq!(p["effective"]["immutableSignedTags"], true, "{p}");
    let get = |tag: &'static str| {
        let srv = &srv;
        async move {
            call(
                srv,
                Method::GET,
                &format!("/v2/team/app/manifests/{tag}"),
                &Cred::owner(),
                &[("accept", OCI_MANIFEST)],
                None,
            )
            .await
        }
    };
    get("v1").await.expect(200);
    get("v2").await.expect_error(403, "DENIED");
    br.goto(&srv, "/ui/r/team/app").await;
    assert!(
        br.text("#policy")
            .await
            .contains("signed pulls only on · immutable signed tags on")
    );
    // Back to the defaults, so the switch below is tested on its own.
    admin(&srv, Method::DELETE, "policy/team/app", None).await;
    admin(&srv, Method::DELETE, "policy/_default", None).await;
    let audit = admin(
        &srv,
        Method::GET,
        "audit?action=policy.updated&identity=owner",
        None,
    )
    .await;
    assert_eq!(audit.as_array().unwrap().len(), 4, "{audit}");

    // The content-trust switch: disabling asks first, says what goes, then wipes.
    br.click("a[href='/ui/owner/content-trust']").await;
    assert_eq!(br.text("#trust-status").await, "enabled");
    br.click("#trust-disable").await;
    let warning = br.text("#wipe-warning").await;
    assert!(
        warning.contains("DELETES ALL TRUST DATA") && warning.contains("Images are kept"),
        "{warning}"
    );
    // Not confirmed yet: nothing changed.
    assert_eq!(trust_status(&srv).await, "enabled");
    br.screenshot("content-trust-confirm").await;
    br.fill("#confirm", "no").await;
    br.click("#trust-disable-confirm").await;
    assert!(br.text("#message").await.contains("Type yes"));
    assert_eq!(trust_status(&srv).await, "enabled");
    br.fill("#confirm", "yes").await;
    br.click("#trust-disable-confirm").await;
    assert_eq!(br.text("#trust-status").await, "disabled");
    assert!(
        br.text("#message")
            .await
            .contains("1 trust collection(s) wiped"),
        "{}",
        br.source().await
    );
    assert_eq!(trust_status(&srv).await, "disabled");
    // Images are kept; the tags page now says trust is off.
    br.goto(&srv, "/ui/r/team/app").await;
    assert_eq!(br.count("tr.tag").await, 4);
    br.find("#trust-off").await;
    // And on again (no confirmation needed: nothing is wiped).
    br.goto(&srv, "/ui/owner/content-trust").await;
    br.click("#trust-enable").await;
    assert_eq!(br.text("#trust-status").await, "enabled");
    assert_eq!(trust_status(&srv).await, "enabled");

    // The audit log, filtered by action, shows both switches by the owner.
    br.goto(&srv, "/ui/owner/audit").await;
    br.fill("#f-action", "content-trust").await;
    br.click("#filter").await;
    let audit = br.text("#audit").await;
    assert!(
        audit.contains("content-trust.disabled") && audit.contains("content-trust.enabled"),
        "{audit}"
    );
    assert!(!audit.contains("ui.login"), "{audit}");
    assert_eq!(br.count("#audit tbody tr").await, 3, "{audit}");
    br.fill("#f-action", "").await;
    br.fill("#f-identity", "alice").await;
    br.click("#filter").await;
    assert!(br.text("#audit").await.contains("trust.updated"));
    // The recent-entries link filters by age: this session's login is within the hour.
    br.click("#last-hour").await;
    assert_eq!(
        br.find("#f-since")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("1h")
    );
    assert!(br.text("#audit").await.contains("ui.login"));

    // A token: its password shown once, working, and never shown again.
    scope_map(&srv, "ci-pull", "team/*", &["content/read"]).await;
    br.goto(&srv, "/ui/owner/access").await;
    assert!(br.text("#identities").await.contains("alice"));
    br.fill("#token-name", "ci-bot").await;
    br.fill("#token-days", "30").await;
    br.click("#token-create").await;
    let password = br.text("#token-password").await;
    assert!(password.len() >= 20, "{password}");
    br.screenshot("token-created").await;
    let ping = call(
        &srv,
        Method::GET,
        "/v2/team/app/tags/list",
        &Cred::basic("ci-bot", &password),
        &[],
        None,
    )
    .await;
    ping.expect(200);
    br.goto(&srv, "/ui/owner/access").await;
    assert!(br.text("#tokens").await.contains("ci-bot"));
    assert!(
        !br.source().await.contains(&password),
        "the password is shown again"
    );
    // Disabled, it is refused at once; enabled, back; deleted, gone.
    let tags_with = |pw: String| {
        let srv = &srv;
        async move {
            call(
                srv,
                Method::GET,
                "/v2/team/app/tags/list",
                &Cred::basic("ci-bot", &pw),
                &[],
                None,
            )
            .await
            .status
        }
    };
    br.click("tr[data-name='ci-bot'] button[data-op='disable']")
        .await;
    assert!(br.text("#message").await.contains("Token ci-bot disabled"));
    assert!(br.text("tr[data-name='ci-bot']").await.contains("disabled"));
    assert_eq!(tags_with(password.clone()).await, 401);
    br.click("tr[data-name='ci-bot'] button[data-op='enable']")
        .await;
    assert_eq!(tags_with(password.clone()).await, 200);
    br.click("tr[data-name='ci-bot'] button[data-op='delete']")
        .await;
    assert!(br.text("#message").await.contains("Token ci-bot deleted"));
    assert_eq!(br.count("tr[data-name='ci-bot']").await, 0);
    assert_eq!(tags_with(password.clone()).await, 401);
    let deleted = admin(&srv, Method::GET, "audit?action=token", None).await;
    let actions: Vec<&str> = deleted
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"token.created") && actions.contains(&"token.deleted"),
        "{actions:?}"
    );

    // Logout: back to the login form; the pages want a login again.
    br.click("#logout").await;
    br.find("#login-form").await;
    br.goto(&srv, "/ui/repositories").await;
    assert!(
        br.path().await.starts_with("/ui/login"),
        "{}",
        br.path().await
    );
    br.close().await;
}

/// The tags page shows Notary Project signatures (signer, time, valid under the repository's
/// trust policy) and cosign signatures (by a listed key or not).
#[tokio::test]
async fn notation_and_cosign_signatures_on_the_tags_page() {
    use crate::policy_formats::{cosign_manifest, python, script, trust_store, write_trust_policy};
    require_browser();
    let mut srv = Server::start_with_auth();
    crate::trust_harness::harness_acts_as(&mut srv, &Cred::owner());
    let repo = format!("{}/team/app", srv.host());
    let owner = Berth::new(&srv).logged_in(&Cred::owner());
    let mut rng = Rng::new();
    let v1 = srv
        .push_image("team/app", Some("v1"), "amd64", &mut rng)
        .await;
    let v2 = srv
        .push_image("team/app", Some("v2"), "arm64", &mut rng)
        .await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let pki = w.join("pki");
    python(&[script("notation_pki.py").as_os_str(), pki.as_os_str()]).ok();
    let policy_file = w.join("trustpolicy.json");
    write_trust_policy(&policy_file, &repo);
    let store = trust_store(&w.join("store"), &pki.join("ca.pem"));
    let keys = w.join("keys");
    python(&[
        script("cosign_sign.py").as_os_str(),
        keys.as_os_str(),
        repo.as_ref(),
        v2.digest.as_ref(),
        v1.digest.as_ref(),
    ])
    .ok();
    // The repository trusts the notation CA and lists a key other than the cosign signer's.
    owner
        .run(&[
            "config",
            "policy",
            "update",
            &repo,
            "--accept",
            "dct,notation,cosign",
            "--trust-policy",
            policy_file.to_str().unwrap(),
            "--trust-store",
            store.to_str().unwrap(),
            "--cosign-key",
            keys.join("other-pub.pem").to_str().unwrap(),
        ])
        .ok();
    let p = |f: &str| pki.join(f).to_string_lossy().into_owned();
    owner
        .run(&[
            "sign",
            &format!("{repo}:v1"),
            "--format",
            "notation",
            "--key",
            &p("leaf.key"),
            "--cert",
            &p("chain.pem"),
        ])
        .ok();
    let good = std::fs::read(keys.join("good.json")).unwrap();
    let good_sig = std::fs::read_to_string(keys.join("good.sig")).unwrap();
    let m = cosign_manifest(&srv, "team/app", &good, &good_sig).await;
    let sig_tag = format!("{}.sig", v2.digest.replacen(':', "-", 1));
    srv.push_manifest("team/app", &sig_tag, OCI_MANIFEST, &m)
        .await;

    let br = Browser::start().await;
    br.login(&srv, "owner", OWNER_PASSWORD).await;
    br.goto(&srv, "/ui/r/team/app").await;
    assert_eq!(br.text("#repo-name").await, "team/app");
    assert!(
        br.text("#policy-accept").await.contains("notation"),
        "accepted formats shown"
    );
    let row = br.find("tr[data-tag='v1']").await.text().await.unwrap();
    assert!(row.contains("Notary Project"), "{row}");
    assert!(row.contains("CN=Berth Signer"), "{row}");
    assert!(
        row.contains("valid under trust policy \"acme-images\""),
        "{row}"
    );
    assert!(row.contains("signed 20"), "signing time: {row}");
    assert_eq!(br.count("tr[data-tag='v1'] li.sig-notation.valid").await, 1);
    let row = br.find("tr[data-tag='v2']").await.text().await.unwrap();
    assert!(row.contains("cosign: unknown key"), "{row}");
    assert!(row.contains("not valid"), "{row}");
    assert!(!row.contains("Notary Project"), "{row}");
    let shot = br.screenshot("tags-signature-formats").await;
    println!("screenshot: {}", shot.display());

    // With the signer's key listed, the cosign signature is attributed to it.
    owner
        .run(&[
            "config",
            "policy",
            "update",
            &repo,
            "--cosign-key",
            keys.join("pub.pem").to_str().unwrap(),
        ])
        .ok();
    br.goto(&srv, "/ui/r/team/app").await;
    let row = br.find("tr[data-tag='v2']").await.text().await.unwrap();
    assert!(row.contains("cosign: key 1 ("), "{row}");
    assert_eq!(br.count("tr[data-tag='v2'] li.sig-cosign.valid").await, 1);
    br.close().await;
}

#[tokio::test]
async fn an_acrpull_user_sees_what_it_may_pull_and_is_refused_owner_pages() {
    require_browser();
    let srv = Server::start_with_auth();
    enable_trust_as_owner(&srv).await;
    let mut rng = Rng::new();
    for repo in ["team/app", "team/web", "secret/db"] {
        let img = Image::build("amd64", &mut rng, 1, 500);
        push_image_as(&srv, &Cred::owner(), repo, "v1", &img).await;
    }
    create_user(&srv, "rita", "rita-password-1").await;
    assign(&srv, "AcrPull", "rita", Some("team/*")).await;

    let br = Browser::start().await;
    br.login(&srv, "rita", "rita-password-1").await;
    assert_eq!(br.text("#repo-count").await, "2 repositories");
    let list = br.text("#repos").await;
    assert!(
        list.contains("team/app") && list.contains("team/web"),
        "{list}"
    );
    assert!(!list.contains("secret/db"), "{list}");
    // No Owner entries in the navigation.
    assert_eq!(br.count("a[href='/ui/owner/content-trust']").await, 0);
    br.goto(&srv, "/ui/r/team/app").await;
    assert_eq!(br.count("tr.tag").await, 1);
    // Another repository's page, and every Owner page: the 403 page.
    for path in [
        "/ui/r/secret/db",
        "/ui/owner/content-trust",
        "/ui/owner/access",
        "/ui/owner/audit",
        "/ui/owner/policy",
    ] {
        br.goto(&srv, path).await;
        assert_eq!(br.text("h1").await, "Not allowed", "{path}");
        assert!(br.text("#message").await.contains("rita may not"), "{path}");
    }
    br.screenshot("acrpull-refused").await;
    br.close().await;

    // The switch action itself, with a valid session and CSRF token: refused, nothing wiped.
    let ui = UiHttp::login(&srv, "rita", "rita-password-1").await;
    let r = ui
        .post(
            &srv,
            "/ui/owner/content-trust",
            &[
                ("csrf", &ui.csrf),
                ("status", "disabled"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{r}");
    assert!(String::from_utf8_lossy(&r.body).contains("may not use the admin API"));
    assert_eq!(trust_status(&srv).await, "enabled");
    let r = ui
        .post(
            &srv,
            "/ui/owner/tokens",
            &[("csrf", &ui.csrf), ("name", "sneaky"), ("scopeMap", "x")],
        )
        .await;
    assert_eq!(r.status, 403, "{r}");
    // The refusals are audited as the API's are.
    let denied = admin(
        &srv,
        Method::GET,
        "audit?action=access.denied&identity=rita",
        None,
    )
    .await;
    assert!(
        denied
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["target"] == "/ui/owner/content-trust"),
        "{denied}"
    );
}

#[tokio::test]
async fn csrf_tokens_headers_and_logout_replay() {
    let srv = Server::start_with_auth();
    let ui = UiHttp::login(&srv, "owner", OWNER_PASSWORD).await;
    let page = ui.get(&srv, "/ui/owner/content-trust").await;
    page.expect(200);
    for (h, want) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(page.header(h).as_deref(), Some(want), "{h}");
    }
    let csp = page.must_header("content-security-policy");
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(trust_status(&srv).await, "disabled");

    // Without a token, and with a wrong one: 403, nothing done.
    let r = ui
        .post(&srv, "/ui/owner/content-trust", &[("status", "enabled")])
        .await;
    assert_eq!(r.status, 403, "{r}");
    assert!(String::from_utf8_lossy(&r.body).contains("CSRF"));
    // One character changed (the token is random: its first may already be `x`).
    let first = if ui.csrf.starts_with('x') { 'y' } else { 'x' };
    let wrong = format!("{first}{}", &ui.csrf[1..]);
    assert_ne!(wrong, ui.csrf);
    let r = ui
        .post(
            &srv,
            "/ui/owner/content-trust",
            &[("csrf", &wrong), ("status", "enabled")],
        )
        .await;
    assert_eq!(r.status, 403, "{r}");
    assert_eq!(trust_status(&srv).await, "disabled");
    // Another session's token does not fit this one.
    let other = UiHttp::login(&srv, "owner", OWNER_PASSWORD).await;
    assert_ne!(other.csrf, ui.csrf);
    let r = ui
        .post(
            &srv,
            "/ui/owner/content-trust",
            &[("csrf", &other.csrf), ("status", "enabled")],
        )
        .await;
    assert_eq!(r.status, 403, "{r}");
    // The right one works.
    let r = ui
        .post(
            &srv,
            "/ui/owner/content-trust",
            &[("csrf", &ui.csrf), ("status", "enabled")],
        )
        .await;
    r.expect(200);
    assert_eq!(trust_status(&srv).await, "enabled");
    // A login form without its cookie's nonce is refused too.
    let r = call(
        &srv,
        Method::POST,
        "/ui/login",
        &Cred::None,
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(form_body(&[
            ("username", "owner"),
            ("password", OWNER_PASSWORD),
        ])),
    )
    .await;
    assert_eq!(r.status, 403, "{r}");
    assert!(set_cookie(&r, "__Host-berth-session").is_none());
    // A wrong password: 401, audited as a failed login.
    let form = call(&srv, Method::GET, "/ui/login", &Cred::None, &[], None).await;
    let (nonce, _) = set_cookie(&form, "__Host-berth-login").unwrap();
    let r = call(
        &srv,
        Method::POST,
        "/ui/login",
        &Cred::None,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &format!("__Host-berth-login={nonce}")),
        ],
        Some(form_body(&[
            ("csrf", &nonce),
            ("username", "owner"),
            ("password", "not-the-password"),
        ])),
    )
    .await;
    assert_eq!(r.status, 401, "{r}");
    let failed = admin(&srv, Method::GET, "audit?action=login.failed", None).await;
    assert_eq!(failed.as_array().unwrap().len(), 1, "{failed}");
    // The session cookie is no credential for the APIs.
    let token = ui.cookie.split_once('=').unwrap().1;
    let r = call(
        &srv,
        Method::GET,
        "/api/v1/users",
        &Cred::Bearer(token.to_owned()),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 401, "{r}");

    // Logout needs the token too; then the old cookie is worth nothing, on every page.
    let r = ui.post(&srv, "/ui/logout", &[]).await;
    assert_eq!(r.status, 403, "{r}");
    ui.get(&srv, "/ui/repositories").await.expect(200);
    let r = ui.post(&srv, "/ui/logout", &[("csrf", &ui.csrf)]).await;
    assert_eq!(r.status, 303, "{r}");
    assert_eq!(r.header("location").as_deref(), Some("/ui/login"));
    let r = ui.get(&srv, "/ui/repositories").await;
    assert_eq!(r.status, 303, "{r}");
    assert!(r.must_header("location").starts_with("/ui/login"));
    let r = ui
        .post(
            &srv,
            "/ui/owner/content-trust",
            &[
                ("csrf", &ui.csrf),
                ("status", "disabled"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{r}");
    assert_eq!(trust_status(&srv).await, "enabled");
    // A new login works at once.
    let again = UiHttp::login(&srv, "owner", OWNER_PASSWORD).await;
    again.get(&srv, "/ui/owner/audit").await.expect(200);
}

#[tokio::test]
async fn search_and_paging_over_many_repositories() {
    require_browser();
    let srv = Server::start_with_auth();
    let mut rng = Rng::new();
    let img = Image::build("amd64", &mut rng, 1, 300);
    for i in 0..60 {
        push_image_as(&srv, &Cred::owner(), &format!("svc-{i:02}"), "v1", &img).await;
    }
    let br = Browser::start().await;
    br.login(&srv, "owner", OWNER_PASSWORD).await;
    assert_eq!(br.text("#repo-count").await, "60 repositories");
    assert_eq!(br.text("#page-of").await, "Page 1 of 3");
    assert_eq!(br.count("#repos tbody tr").await, 25);
    assert!(br.text("#repos").await.contains("svc-00"));
    br.click("#next").await;
    assert_eq!(br.text("#page-of").await, "Page 2 of 3");
    let page2 = br.text("#repos").await;
    assert!(
        page2.contains("svc-25") && page2.contains("svc-49"),
        "{page2}"
    );
    assert!(
        !page2.contains("svc-24") && !page2.contains("svc-50"),
        "{page2}"
    );
    br.click("#next").await;
    assert_eq!(br.count("#repos tbody tr").await, 10);
    assert_eq!(br.count("#next").await, 0);
    // Search: svc-1 matches svc-10 … svc-19.
    br.fill("#q", "svc-1").await;
    br.click("#search").await;
    assert_eq!(br.text("#repo-count").await, "10 repositories");
    assert_eq!(br.count("#repos tbody tr").await, 10);
    assert_eq!(br.count("#page-of").await, 0);
    assert_eq!(br.path().await, "/ui/repositories?q=svc-1");
    br.fill("#q", "nothing-like-this").await;
    br.click("#search").await;
    br.find("#no-repos").await;
    br.screenshot("repositories-search").await;
    br.close().await;
}

/// Sessions live in the store, not in a node: a cookie from one node works on another (with
/// the same CSRF token), and a logout through one ends the session on the others too (within
/// the settings' coherence window, as for every setting of a cluster).
#[tokio::test]
async fn a_session_spans_cluster_nodes_and_logout_ends_it_on_all() {
    let c = crate::cluster::Cluster::start(2);
    let (a, b) = (c.node(0), c.node(1));
    let ui = UiHttp::login(a, "owner", OWNER_PASSWORD).await;
    let page = ui.get(b, "/ui/owner/content-trust").await;
    page.expect(200);
    assert_eq!(
        csrf_in(&String::from_utf8(page.body.clone()).unwrap()),
        ui.csrf
    );
    let r = ui
        .post(
            b,
            "/ui/owner/content-trust",
            &[("csrf", &ui.csrf), ("status", "enabled")],
        )
        .await;
    r.expect(200);
    assert_eq!(trust_status(b).await, "enabled");
    // Logout through b: refused at once there, and on a as soon as a sees the setting.
    let r = ui.post(b, "/ui/logout", &[("csrf", &ui.csrf)]).await;
    assert_eq!(r.status, 303, "{r}");
    assert_eq!(ui.get(b, "/ui/repositories").await.status, 303);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = ui.get(a, "/ui/repositories").await;
        if r.status == 303 {
            assert!(r.must_header("location").starts_with("/ui/login"));
            break;
        }
        assert_eq!(r.status, 200, "{r}");
        assert!(
            std::time::Instant::now() < deadline,
            "node a still accepts the session 5 s after the logout through node b"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And keeps refusing it; a new login on a works.
    for n in [a, b] {
        assert_eq!(ui.get(n, "/ui/owner/audit").await.status, 303);
    }
    let again = UiHttp::login(a, "owner", OWNER_PASSWORD).await;
    again.get(b, "/ui/owner/audit").await.expect(200);
}
