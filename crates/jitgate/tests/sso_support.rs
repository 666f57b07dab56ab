//! What the single sign-on tests stand on: a real OpenID Connect provider on loopback, `oidc-provider` (npm,
//! installed into target/oidc-tools by scripts/deps.sh) run by `fixtures/oidc_provider.mjs`.
//! Sign-ins go through the real pages and API: by a small cookie-keeping HTTP client that fills
//! the provider's sign-in form, by headless Chromium, and by the real `jitgate login --sso`.

use crate::support::{Backend, TestServer};
use jitgate_client::Client;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) const CLIENT_ID: &str = "jitgate-test";
pub(crate) const CLIENT_SECRET: &str = "the-test-client-secret-0123456789";

pub(crate) fn tools() -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/oidc-tools");
    assert!(
        dir.join("node_modules/oidc-provider").exists(),
        "oidc-provider is not installed: run scripts/deps.sh (the test command does)"
    );
    dir
}

/// The provider, its state file (people, their groups, a fault to inject), stopped when dropped.
pub(crate) struct Idp {
    _process: tokio::process::Child,
    pub issuer: String,
    state_path: PathBuf,
    pub state: Value,
    _dir: tempfile::TempDir,
}

impl Idp {
    pub(crate) async fn start(users: Value) -> Self {
        let tools = tools();
        // Next to its node_modules, so that its imports resolve; written whole, then renamed.
        let script = tools.join("oidc_provider.mjs");
        let tmp = tempfile::NamedTempFile::new_in(&tools).unwrap();
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oidc_provider.mjs"),
            tmp.path(),
        )
        .unwrap();
        tmp.persist(&script).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let state_path = dir.path().join("state.json");
        let state = json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [], "users": users, "forge": null});
        std::fs::write(&state_path, state.to_string()).unwrap();
        let mut process = tokio::process::Command::new("node")
            .arg(&script)
            .arg(&state_path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(process.stdout.take().unwrap()).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(l) = lines.next_line().await.unwrap() {
                if let Some(p) = l.strip_prefix("listening ") {
                    return p.trim().to_owned();
                }
            }
            panic!("the provider stopped before listening")
        })
        .await
        .expect("the provider listens within 20 s");
        // The provider writes notices to its standard output later on: read on, so that it never
        // writes to a closed pipe (and dies of EPIPE).
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            _process: process,
            issuer: format!("http://127.0.0.1:{port}"),
            state_path,
            state,
            _dir: dir,
        }
    }

    pub(crate) fn state_path(&self) -> &std::path::Path {
        &self.state_path
    }

    pub(crate) fn save(&self) {
        std::fs::write(&self.state_path, self.state.to_string()).unwrap();
    }

    /// jitgate's callback, registered before the first sign-in (the provider reads its client
    /// then).
    pub(crate) fn register(&mut self, server: &TestServer) {
        self.state["redirect_uris"] = json!([format!("{}sso/callback", server.core.public_url())]);
        self.save();
    }

    pub(crate) fn set_groups(&mut self, user: &str, groups: &[&str]) {
        self.state["users"][user]["groups"] = json!(groups);
        self.save();
    }

    pub(crate) fn forge(&mut self, mode: Option<&str>) {
        self.state["forge"] = json!(mode);
        self.save();
    }
}

pub(crate) fn provider_config(issuer: &str, extra: &str) -> String {
    format!(
        "[[auth.oidc]]\nname = \"corp\"\ndisplay_name = \"Test IdP\"\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT_ID}\"\n\
         scopes = [\"openid\", \"email\", \"profile\", \"groups\"]\nallowed_domains = [\"example.com\"]\n\
         second_factor_acr = [\"urn:test:mfa\"]\n\
         group_rules = [{{ prefix = \"jit-\" }}, {{ exact = \"Platform On-Call\", group = \"oncall\" }}, {{ regex = \"team-(?P<t>[a-z]+)-admins\", group = \"${{t}}-admins\" }}]\n{extra}"
    )
}

pub(crate) fn people() -> Value {
    json!({
        "erin": {"email": "erin@example.com", "email_verified": true, "name": "Erin E", "groups": ["jit-engineers", "Platform On-Call", "team-pay-admins", "everyone"]},
        "mallory": {"email": "mallory@evil.org", "email_verified": true, "groups": []},
        "frank": {"email": "frank@example.com", "email_verified": true, "groups": []},
        "gina": {"email": "gina@example.com", "email_verified": true, "groups": []},
        "admin": {"email": "admin@example.com", "email_verified": true, "groups": []}
    })
}

/// A server with the provider configured and its client secret stored.
pub(crate) async fn server_with(idp: &mut Idp, extra: &str) -> TestServer {
    let text = format!("{}\n{}", crate::support::CONFIG, provider_config(&idp.issuer, extra));
    let server = TestServer::spawn_with(Backend::Sqlite, false, |s| {
        let parsed = jitgate_server::Settings::from_toml("sso.toml", &text).unwrap();
        s.sign_in = parsed.sign_in;
        s.resources = parsed.resources;
        s.groups = parsed.groups;
    })
    .await;
    server.admin.set_oidc_secret("corp", CLIENT_SECRET).await.unwrap();
    idp.register(&server);
    server
}

/// A browser without a browser: follows redirects one by one, keeps cookies per host, fills
/// the provider's sign-in form.
pub(crate) struct Http {
    client: reqwest::Client,
    pub(crate) jar: HashMap<String, HashMap<String, String>>,
}

impl Http {
    pub(crate) fn new() -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: HashMap::new(),
        }
    }

    pub(crate) async fn send(&mut self, method: reqwest::Method, url: &str, form: Option<&[(&str, &str)]>) -> reqwest::Response {
        let u = url::Url::parse(url).unwrap();
        let host = u.host_str().unwrap().to_owned();
        let mut req = self.client.request(method, url);
        if let Some(cookies) = self.jar.get(&host) {
            let header = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
            req = req.header("cookie", header);
        }
        if let Some(f) = form {
            req = req.form(f);
        }
        let resp = req.send().await.unwrap();
        for c in resp.headers().get_all("set-cookie") {
            let text = c.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                let jar = self.jar.entry(host.clone()).or_default();
                if v.is_empty() || text.to_ascii_lowercase().contains("max-age=0") || text.contains("expires=Thu, 01 Jan 1970") {
                    jar.remove(k);
                } else {
                    jar.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        resp
    }

    /// Follows redirects from `url` until an answer that is not one, or one that leaves for
    /// `stop_at` (not followed); the last URL and the answer.
    pub(crate) async fn follow(&mut self, mut url: String, stop_at: Option<&str>) -> (String, reqwest::Response) {
        for _ in 0..20 {
            let resp = self.send(reqwest::Method::GET, &url, None).await;
            if !resp.status().is_redirection() {
                return (url, resp);
            }
            let next = url::Url::parse(&url)
                .unwrap()
                .join(resp.headers()["location"].to_str().unwrap())
                .unwrap()
                .to_string();
            if stop_at.is_some_and(|s| next.starts_with(s)) {
                return (next, resp);
            }
            url = next;
        }
        panic!("too many redirects");
    }

    /// At the provider's sign-in form (`url`): signs in as `user` with `amr` (and `acr`), and
    /// follows on until jitgate's answer (or a redirect to `stop_at`).
    pub(crate) async fn sign_in_at_provider(
        &mut self,
        auth_url: &str,
        user: &str,
        amr: &str,
        acr: &str,
        stop_at: Option<&str>,
    ) -> (String, reqwest::Response) {
        let (form_url, page) = self.follow(auth_url.to_owned(), None).await;
        let status = page.status();
        let body = page.text().await.unwrap();
        assert!(status.is_success(), "the provider's sign-in form: {status} {body}");
        assert!(body.contains("Test IdP"), "the provider's own page: {body}");
        let action = format!("{}/login", form_url.split('?').next().unwrap());
        let resp = self
            .send(reqwest::Method::POST, &action, Some(&[("login", user), ("amr", amr), ("acr", acr)]))
            .await;
        assert!(resp.status().is_redirection(), "the provider took the sign-in: {}", resp.status());
        let next = url::Url::parse(&action)
            .unwrap()
            .join(resp.headers()["location"].to_str().unwrap())
            .unwrap()
            .to_string();
        let (at, resp) = self.follow(next, stop_at).await;
        let issuer = auth_url.split("/auth").next().unwrap();
        if !at.starts_with(issuer) || !resp.status().is_success() {
            return (at, resp);
        }
        // Another person than the provider's session had: it ends that session first, with a
        // form its page's script submits.
        let page = resp.text().await.unwrap();
        let after = |marker: &str| page.split(marker).nth(1).and_then(|r| r.split('"').next()).map(str::to_owned);
        let (Some(confirm), Some(xsrf)) = (after("action=\""), after("name=\"xsrf\" value=\"")) else {
            panic!("an unexpected page at the provider: {page}");
        };
        let resp = self
            .send(reqwest::Method::POST, &confirm, Some(&[("xsrf", &xsrf), ("logout", "yes")]))
            .await;
        assert!(
            resp.status().is_redirection(),
            "the provider ended its earlier session: {}",
            resp.status()
        );
        let next = url::Url::parse(&confirm)
            .unwrap()
            .join(resp.headers()["location"].to_str().unwrap())
            .unwrap()
            .to_string();
        self.follow(next, stop_at).await
    }
}

/// A sign-in through the pages: start at `/sso/corp/start`, sign in at the provider, back to
/// jitgate. Returns jitgate's last answer (status, body) and the session cookie, if any.
pub(crate) async fn web_sign_in(server: &TestServer, http: &mut Http, user: &str, amr: &str) -> (u16, String, Option<String>) {
    let base = server.core.public_url();
    let (_, resp) = http
        .sign_in_at_provider(&format!("{base}sso/corp/start?next=/grants"), user, amr, "", None)
        .await;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    let host = url::Url::parse(&base).unwrap().host_str().unwrap().to_owned();
    let session = http.jar.get(&host).and_then(|j| j.get("jitgate_session").cloned());
    (status, body, session)
}

/// The audit events of `action` (by `actor`, when given), oldest first.
pub(crate) async fn audit_of(server: &TestServer, action: &str, actor: Option<&str>) -> Vec<jitgate_core::audit::AuditEvent> {
    let all = server.admin.all_audit_events(0).await.unwrap();
    all.into_iter()
        .filter(|e| e.action == action && actor.is_none_or(|a| e.actor == a))
        .collect()
}

pub(crate) async fn as_user(server: &TestServer, token: &str) -> Client {
    Client::new(&server.url, None).with_token(token)
}

/// The first HTML form of `page`: its action (resolved against `at`) and its inputs with values.
fn first_form(page: &str, at: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = page.find("<form")?;
    let form = &page[start..start + page[start..].find("</form>")?];
    let attr = |tag: &str, name: &str| {
        regex::Regex::new(&format!(r#"\b{name}="([^"]*)""#))
            .unwrap()
            .captures(tag)
            .map(|c| c[1].replace("&amp;", "&"))
    };
    let action = attr(&form[..form.find('>')?], "action")?;
    let inputs = regex::Regex::new(r"<input[^>]*>")
        .unwrap()
        .find_iter(form)
        .filter_map(|m| Some((attr(m.as_str(), "name")?, attr(m.as_str(), "value").unwrap_or_default())))
        .collect();
    Some((url::Url::parse(at).unwrap().join(&action).unwrap().to_string(), inputs))
}

impl Http {
    /// A device sign-in at the provider, as a person on another device does it: open `url`,
    /// submit the provider's code and confirmation forms, sign in as `user`. The last page.
    pub(crate) async fn device_sign_in(&mut self, url: &str, user: &str, amr: &str) -> String {
        let (mut at, resp) = self.follow(url.to_owned(), None).await;
        let mut page = resp.text().await.unwrap();
        for _ in 0..10 {
            let resp = if page.contains("Test IdP") {
                let action = format!("{}/login", at.split('?').next().unwrap());
                self.send(reqwest::Method::POST, &action, Some(&[("login", user), ("amr", amr), ("acr", "")]))
                    .await
            } else if let Some((action, fields)) = first_form(&page, &at) {
                let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                at = action.clone();
                self.send(reqwest::Method::POST, &action, Some(&fields)).await
            } else {
                return page;
            };
            let (next_at, next) = if resp.status().is_redirection() {
                let to = url::Url::parse(&at)
                    .unwrap()
                    .join(resp.headers()["location"].to_str().unwrap())
                    .unwrap()
                    .to_string();
                self.follow(to, None).await
            } else {
                (at.clone(), resp)
            };
            at = next_at;
            page = next.text().await.unwrap();
        }
        panic!("the device sign-in did not end: {page}");
    }
}

/// The real `jitgate` with `args` (a sign-in through the provider), once it has printed the
/// address the person is to open: the running CLI and that address.
pub(crate) async fn cli_waiting_at_an_address(
    server: &TestServer,
    dir: &std::path::Path,
    args: &[&str],
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(args)
        .env("JITGATE_CONFIG_DIR", dir.join("cli"))
        .env("JITGATE_SERVER", &server.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut err = tokio::io::BufReader::new(cli.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(l) = err.next_line().await.unwrap() {
            if let Some(u) = l.trim().strip_prefix("http") {
                return format!("http{u}");
            }
        }
        panic!("the CLI printed no address")
    })
    .await
    .unwrap();
    // Read on: the CLI's later lines must not meet a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = err.next_line().await {} });
    (cli, url)
}
