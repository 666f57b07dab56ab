//! Driving a real headless Chromium (Debian's `chromium` and `chromedriver`, installed by
//! `scripts/deps.sh`) over WebDriver with fantoccini. Each [`Browser`] is a WebDriver session
//! of its own: its own Chromium and profile, so two of them are two people.

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A chromedriver on a free loopback port, stopped when dropped.
pub struct Driver {
    process: tokio::process::Child,
    url: String,
}

impl Driver {
    pub async fn start() -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let process = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver runs (scripts/deps.sh installs Debian's chromium-driver)");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = Instant::now();
        while http.get(format!("{url}/status")).send().await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { process, url }
    }

    /// A new browser, a window of `width` x `height`, at `base` (the server's address as
    /// `http://localhost:PORT`: a secure context for WebAuthn, and the server's default origin).
    pub async fn browser(&self, base: &str) -> Browser {
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--lang=en-US"],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session");
        let session = client.session_id().await.unwrap().expect("a session id");
        Browser {
            client,
            driver: self.url.clone(),
            session,
            base: base.to_owned(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.start_kill();
    }
}

pub struct Browser {
    pub client: Client,
    driver: String,
    session: String,
    pub base: String,
}

impl Browser {
    pub async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub async fn exists(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    pub async fn js(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits until `check` holds, up to `limit`; panics naming `what` otherwise.
    pub async fn wait_until<F, Fut>(&self, what: &str, limit: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        while !check().await {
            if started.elapsed() > limit {
                let body = self.text("body").await;
                panic!("{what}: not within {limit:?}; the page at {} shows:\n{body}", self.path().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the element `css` shows text containing `wanted`.
    pub async fn wait_text(&self, css: &str, wanted: &str, limit: Duration) {
        self.wait_until(&format!("{css} shows '{wanted}'"), limit, || async {
            self.text(css).await.contains(wanted)
        })
        .await;
    }

    /// A call to chromedriver's WebAuthn extension for this session: fantoccini has none for
    /// it, so it is sent directly. Answers the extension's `value`.
    async fn webauthn(&self, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let url = format!("{}/session/{}/webauthn/{path}", self.driver, self.session);
        let http = reqwest::Client::new();
        let request = match body {
            Some(b) => http.post(url).json(&b),
            None => http.get(url),
        };
        let answer: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    /// A virtual passkey authenticator in this browser (WebAuthn's WebDriver extension), which
    /// says yes to every ceremony as a person touching it would.
    pub async fn add_virtual_authenticator(&self) -> String {
        let options = serde_json::json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserVerified": true,
            "automaticPresenceSimulation": true,
        });
        let id = self.webauthn("authenticator", Some(options)).await;
        id.as_str().unwrap_or_else(|| panic!("no authenticator: {id}")).to_owned()
    }

    /// The credentials the virtual authenticator holds.
    pub async fn authenticator_credentials(&self, authenticator: &str) -> Vec<serde_json::Value> {
        let path = format!("authenticator/{authenticator}/credentials");
        self.webauthn(&path, None).await.as_array().cloned().unwrap_or_default()
    }

    /// A screenshot of the page at `width` x `height`, kept in `docs/screenshots` when
    /// `JITGATE_SCREENSHOTS` is set (to refresh the README's pictures), else in a temporary
    /// directory.
    pub async fn screenshot(&self, name: &str, width: u32, height: u32, dir: &std::path::Path) {
        self.client.set_window_size(width, height).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        let target = if std::env::var_os("JITGATE_SCREENSHOTS").is_some() {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
        } else {
            dir.to_path_buf()
        };
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join(format!("{name}.png")), png).unwrap();
        self.client.set_window_size(1280, 900).await.unwrap();
    }

    /// Runs axe-core (from npm, installed by `scripts/deps.sh`) on the page; the serious and
    /// critical violations, one line each.
    pub async fn accessibility_violations(&self) -> Vec<String> {
        let axe = std::fs::read_to_string(axe_path()).expect("axe-core (scripts/deps.sh installs it)");
        self.client.execute(&axe, vec![]).await.unwrap();
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                    .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')) }))))
                    .catch(e => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }]));",
                vec![],
            )
            .await
            .unwrap();
        result
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .map(|v| format!("{} ({}): {} at {}", v["id"], v["impact"], v["help"], v["nodes"]))
            .collect()
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

fn axe_path() -> PathBuf {
    std::env::var_os("JITGATE_AXE_JS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/web-tools/node_modules/axe-core/axe.min.js"),
        PathBuf::from,
    )
}
