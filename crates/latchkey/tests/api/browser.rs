//! A real headless Chromium driven through WebDriver (fantoccini + Debian's chromium-driver).
//!
//! `scripts/test` installs `chromium` and `chromium-driver` and starts one `chromedriver`,
//! passing its address in `WEBDRIVER_URL`; without it, each browser starts its own
//! `chromedriver`. A missing driver or browser fails the test with a message saying what to
//! install: a browser test never skips.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::process::Child;
use tokio::sync::Semaphore;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Two cores: one browser at a time keeps the other tests moving.
static ONE_AT_A_TIME: Semaphore = Semaphore::const_new(1);

pub struct Browser {
    pub client: Client,
    base: String,
    _driver: Option<Child>,
    _profile: tempfile::TempDir,
    _permit: tokio::sync::SemaphorePermit<'static>,
}

fn webdriver_from_env() -> Option<String> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the test harness learns where scripts/test started chromedriver"
    )]
    std::env::var("WEBDRIVER_URL")
        .ok()
        .filter(|v| !v.is_empty())
}

async fn free_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

async fn wait_for_port(port: u16, what: &str) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not start listening on port {port}");
}

impl Browser {
    /// A fresh browser (its own empty profile: no cookies) pointed at `base`.
    pub async fn start(base: &str) -> Self {
        let permit = ONE_AT_A_TIME.acquire().await.unwrap();
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: install Debian's `chromium` package (scripts/test does)"
        );
        let (url, driver) = match webdriver_from_env() {
            Some(url) => (url, None),
            None => {
                assert!(
                    std::path::Path::new(CHROMEDRIVER).exists(),
                    "{CHROMEDRIVER} is missing: install Debian's `chromium-driver` package (scripts/test does)"
                );
                let port = free_port().await;
                let child = tokio::process::Command::new(CHROMEDRIVER)
                    .arg(format!("--port={port}"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e}"));
                wait_for_port(port, "chromedriver").await;
                (format!("http://127.0.0.1:{port}"), Some(child))
            }
        };
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("start a Chromium session through {url}: {e}"));
        Self {
            client,
            base: base.to_owned(),
            _driver: driver,
            _profile: profile,
            _permit: permit,
        }
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    /// Opens a page of another server (a sign-in provider).
    pub async fn goto_url(&self, url: &str) {
        let before = self.client.find(Locator::Css("html")).await.ok();
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        if let Some(before) = before {
            for _ in 0..60 {
                if before.tag_name().await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// The whole address of the page shown now.
    pub async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    /// A cookie of the site shown now.
    pub async fn cookie(&self, name: &str) -> Option<String> {
        self.client
            .get_named_cookie(name)
            .await
            .ok()
            .map(|c| c.value().to_owned())
    }

    /// Sets a cookie for the site shown now, on `path`, as a script of the page would
    /// (ChromeDriver's own cookie command refuses cookies of an IP address).
    pub async fn add_cookie(&self, name: &str, value: &str, path: &str) {
        self.client
            .execute(
                "document.cookie = arguments[0] + '=' + arguments[1] + '; path=' + arguments[2];",
                vec![json!(name), json!(value), json!(path)],
            )
            .await
            .unwrap_or_else(|e| panic!("add the cookie {name}: {e}"));
    }

    /// The path of the page shown now.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        let mut path = url.path().to_owned();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        path
    }

    pub async fn find(&self, css: &str) -> Element {
        let found = self
            .client
            .wait()
            .at_most(Duration::from_secs(5))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(e) => {
                let page = self.path().await;
                let body = self.client.source().await.unwrap_or_default();
                panic!("no element {css:?} on {page}: {e}\n{body}")
            }
        }
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// Types into a field, as a person would (click, then keys).
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Clicks, and when the click leaves the page (a link, a form), waits for the next one:
    /// WebDriver's click may return before the navigation it starts has finished.
    pub async fn click(&self, css: &str) {
        let before = self.client.find(Locator::Css("html")).await.unwrap();
        self.find(css).await.click().await.unwrap();
        for _ in 0..60 {
            // The old document's root goes stale once the new page has replaced it.
            if before.tag_name().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The rendered height of the first element matching `css`, in CSS pixels.
    pub async fn height(&self, css: &str) -> f64 {
        self.client
            .execute(
                "return document.querySelector(arguments[0]).getBoundingClientRect().height;",
                vec![json!(css)],
            )
            .await
            .unwrap_or_else(|e| panic!("measure {css:?}: {e}"))
            .as_f64()
            .unwrap_or_else(|| panic!("{css:?}: no height"))
    }

    /// Whether the page is wider than the window (something overflows sideways).
    pub async fn overflows_sideways(&self) -> bool {
        self.client
            .execute(
                "return document.documentElement.scrollWidth > window.innerWidth;",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true)
    }

    /// Opens an organisation from the header's switcher (it lands on the organisation's
    /// Tokens page), as a person would: the list first, then the organisation.
    pub async fn open_org(&self, org: &str) {
        self.click_in_place("#org-switcher summary").await;
        self.click(&format!("#org-switcher a[href='/orgs/{org}/tokens']"))
            .await;
    }

    /// Opens a page of the organisation shown now from its own navigation (`apps`,
    /// `members`, `activity`, `tokens`).
    pub async fn org_page(&self, org: &str, page: &str) {
        self.click(&format!("nav.sub a[href='/orgs/{org}/{page}']"))
            .await;
    }

    /// Clicks something that stays on the page (the copy button).
    pub async fn click_in_place(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    pub async fn value(&self, css: &str) -> String {
        self.find(css)
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    pub async fn body(&self) -> String {
        self.text("body").await
    }

    /// Chooses an option of a `<select>` by its value.
    pub async fn select(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value:?} in {css:?}: {e}"));
    }

    /// Signs in through the login page.
    pub async fn sign_in(&self, email: &str, password: &str) {
        self.goto("/login").await;
        self.fill("#email", email).await;
        self.fill("#password", password).await;
        self.click("form button[type=submit]").await;
    }

    /// Saves a PNG of the page under `target/screenshots/` (and, with
    /// `UPDATE_SCREENSHOTS=1`, under `docs/screenshots/` for the README).
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        assert!(png.len() > 5_000, "{name}: the screenshot is blank");
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut dirs = vec![root.join("target/screenshots")];
        #[expect(
            clippy::disallowed_methods,
            reason = "refreshing the README's screenshots is a choice of whoever runs the tests"
        )]
        if std::env::var("UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
            dirs.push(root.join("docs/screenshots"));
        }
        for dir in dirs {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        }
    }

    pub async fn close(self) {
        self.client.close().await.unwrap();
    }
}
