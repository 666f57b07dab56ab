//! Single sign-on against a real OpenID Connect provider on loopback: `oidc-provider` (npm,
//! installed into target/oidc-tools by scripts/deps.sh) run by `fixtures/oidc_provider.mjs`.
//! Sign-ins go through the real pages and API: by a small cookie-keeping HTTP client that fills
//! the provider's sign-in form, by headless Chromium, and by the real `jitgate login --sso`.

use crate::support::{Backend, TestServer};
use jitgate_client::Client;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

const CLIENT_ID: &str = "jitgate-test";
const CLIENT_SECRET: &str = "the-test-client-secret-0123456789";

fn tools() -> PathBuf {
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
        Self {
            _process: process,
            issuer: format!("http://127.0.0.1:{port}"),
            state_path,
            state,
            _dir: dir,
        }
    }

    fn save(&self) {
        std::fs::write(&self.state_path, self.state.to_string()).unwrap();
    }

    /// jitgate's callback, registered before the first sign-in (the provider reads its client
    /// then).
    fn register(&mut self, server: &TestServer) {
        self.state["redirect_uris"] = json!([format!("{}sso/callback", server.core.public_url())]);
        self.save();
    }

    fn set_groups(&mut self, user: &str, groups: &[&str]) {
        self.state["users"][user]["groups"] = json!(groups);
        self.save();
    }

    fn forge(&mut self, mode: Option<&str>) {
        self.state["forge"] = json!(mode);
        self.save();
    }
}

fn provider_config(issuer: &str, extra: &str) -> String {
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
    async fn follow(&mut self, mut url: String, stop_at: Option<&str>) -> (String, reqwest::Response) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sign_in_makes_the_user_maps_groups_by_rule_and_the_next_one_changes_them_audited() {
    let mut idp = Idp::start(people()).await;
    let server = server_with(&mut idp, "").await;
    let mut http = Http::new();
    let (status, body, session) = web_sign_in(&server, &mut http, "erin", "pwd").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("url=/grants"), "the page moves on to next=: {body}");
    let erin = as_user(&server, &session.expect("a session cookie")).await;
    let me = erin.whoami().await.unwrap();
    assert_eq!(me.username.as_str(), "erin");
    assert!(!me.is_admin);
    let groups: Vec<String> = me.groups.iter().map(ToString::to_string).collect();
    assert_eq!(
        groups,
        ["engineers", "oncall", "pay-admins"],
        "prefix, exact and regex rules; `everyone` has no rule"
    );

    // An administrator adds a group by hand; the provider moves erin to other groups.
    server.admin.set_member("security", "erin", true).await.unwrap();
    idp.set_groups("erin", &["jit-db-owners"]);
    let mut http = Http::new();
    let (status, _, session) = web_sign_in(&server, &mut http, "erin", "pwd").await;
    assert_eq!(status, 200);
    let me = as_user(&server, &session.unwrap()).await.whoami().await.unwrap();
    let groups: Vec<String> = me.groups.iter().map(ToString::to_string).collect();
    assert_eq!(
        groups,
        ["db-owners", "security"],
        "the sign-in's groups follow the provider; the administrator's stays"
    );

    let events = audit_of(&server, "auth.sso_groups", None).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let last = &events.last().unwrap().details;
    assert_eq!(last["added"], json!(["db-owners"]));
    assert_eq!(last["removed"], json!(["engineers", "oncall", "pay-admins"]));
    assert_eq!(last["because"]["db-owners"]["from"], "jit-db-owners");
    let created = audit_of(&server, "user.create", None).await;
    assert!(created.iter().any(|e| e.target == "erin" && e.details["by"] == "sso"));
    let logins = audit_of(&server, "auth.login", Some("erin")).await;
    assert!(logins
        .iter()
        .all(|e| e.details["method"] == "sso" && e.details["provider"] == "corp"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_misdirected_id_tokens_are_refused_and_audited() {
    let mut idp = Idp::start(people()).await;
    let server = server_with(&mut idp, "").await;
    // One good sign-in first: its ID token is what the replay mode sends again.
    let (status, _, _) = web_sign_in(&server, &mut Http::new(), "erin", "pwd").await;
    assert_eq!(status, 200);
    for (mode, code) in [
        ("wrong_aud", "token_wrong_audience"),
        ("expired", "token_expired"),
        ("replay_nonce", "token_wrong_nonce"),
        ("other_key", "token_bad_signature"),
        ("wrong_iss", "token_wrong_issuer"),
    ] {
        idp.forge(Some(mode));
        let (status, body, session) = web_sign_in(&server, &mut Http::new(), "erin", "pwd").await;
        assert_eq!(status, 401, "{mode}: {body}");
        assert!(session.is_none(), "{mode}: no session");
        let events = audit_of(&server, "auth.sso", None).await;
        let last = events.last().expect("the refusal is audited");
        assert_eq!(last.details["code"], code, "{mode}: {:?}", last.details);
    }
    idp.forge(None);

    // A verified address of another domain is not let in; nor is a sign-in that comes back in
    // another browser than the one that started it, nor a state used twice.
    let (status, body, _) = web_sign_in(&server, &mut Http::new(), "mallory", "pwd").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not in an allowed domain"), "{body}");

    let base = server.core.public_url();
    let mut started_here = Http::new();
    let (callback, _) = started_here
        .sign_in_at_provider(
            &format!("{base}sso/corp/start"),
            "erin",
            "pwd",
            "",
            Some(&format!("{base}sso/callback")),
        )
        .await;
    let mut elsewhere = Http::new();
    let (_, resp) = elsewhere.follow(callback.clone(), None).await;
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("another browser"));
    let (_, resp) = started_here.follow(callback, None).await;
    assert_eq!(resp.status(), 401, "the state was taken by the first attempt: it works once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_amr_decides_whether_a_step_up_is_needed() {
    let mut idp = Idp::start(people()).await;
    let server = server_with(&mut idp, "").await;
    let body: jitgate_api::CreateRequestBody =
        serde_json::from_value(json!({"resource": "prod-db", "role": "dba", "duration": "10m", "reason": "checking the replication lag"}))
            .unwrap();
    // Password only at the provider: the role's fresh factor is still due.
    let (_, _, session) = web_sign_in(&server, &mut Http::new(), "erin", "pwd").await;
    let erin = as_user(&server, &session.unwrap()).await;
    let refused = erin.create_request(&body).await.unwrap_err();
    assert!(
        matches!(refused.code(), Some("mfa_enrollment_required" | "mfa_required")),
        "{refused}"
    );
    assert!(erin.mfa_status().await.unwrap().fresh_until.is_none());

    // A one-time code at the provider: the same request goes through on the provider's word.
    let (_, _, session) = web_sign_in(&server, &mut Http::new(), "erin", "pwd,otp").await;
    let erin = as_user(&server, &session.unwrap()).await;
    assert!(erin.mfa_status().await.unwrap().fresh_until.is_some());
    let request = erin.create_request(&body).await.unwrap();
    assert_eq!(request.requester.as_str(), "erin");

    // An `acr` the config names counts too.
    let (_, resp) = Http::new()
        .sign_in_at_provider(
            &format!("{}sso/corp/start", server.core.public_url()),
            "erin",
            "pwd",
            "urn:test:mfa",
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);
    let logins = audit_of(&server, "auth.login", Some("erin")).await;
    let mfa: Vec<&Value> = logins.iter().map(|e| &e.details["mfa"]).collect();
    assert_eq!(mfa, [&Value::Null, &json!("sso"), &json!("sso")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_off_leave_only_the_break_glass_account_and_it_never_signs_in_through_the_provider() {
    let mut idp = Idp::start(people()).await;
    let server = server_with(&mut idp, "").await;
    // The test server's admin exists with a password; now the same store with passwords off.
    let (mut settings, clock, dir) = server.stop().await;
    settings.sign_in.password = false;
    settings.sign_in.break_glass = ["admin".parse().unwrap()].into();
    let strict = TestServer::restart(settings, clock, dir).await;
    let anon = Client::new(&strict.url, None);
    anon.login("admin", crate::support::PASSWORD)
        .await
        .expect("the break-glass account still signs in");
    strict
        .admin
        .create_user(&jitgate_api::CreateUserBody {
            username: "frank".parse().unwrap(),
            display_name: String::new(),
            password: Some(crate::support::PASSWORD.into()),
            admin: false,
        })
        .await
        .unwrap();
    let refused = anon.login("frank", crate::support::PASSWORD).await.unwrap_err();
    assert_eq!(refused.code(), Some("password_disabled"));
    let refused = anon.login("frank", "a wrong password").await.unwrap_err();
    assert_eq!(refused.code(), Some("password_disabled"), "the same answer whatever the password");
    // The break-glass account cannot be claimed through the provider.
    idp.register(&strict);
    let (status, body, session) = web_sign_in(&strict, &mut Http::new(), "admin", "pwd,otp").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("break-glass"), "{body}");
    assert!(session.is_none());
    // frank, created by an administrator, is linked at his first sign-in and keeps his name.
    let (status, _, session) = web_sign_in(&strict, &mut Http::new(), "frank", "pwd").await;
    assert_eq!(status, 200);
    assert_eq!(
        as_user(&strict, &session.unwrap()).await.whoami().await.unwrap().username.as_str(),
        "frank"
    );
    let links = audit_of(&strict, "auth.sso_link", None).await;
    assert_eq!(links.last().unwrap().details["new_user"], json!(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_signs_in_through_the_browser_with_a_loopback_redirect() {
    let mut idp = Idp::start(people()).await;
    let server = server_with(&mut idp, "").await;
    let dir = tempfile::tempdir().unwrap();
    let mut cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["login", "--sso", "--no-browser"])
        .env("JITGATE_CONFIG_DIR", dir.path().join("cli"))
        .env("JITGATE_SERVER", &server.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
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
    assert!(url.starts_with(&idp.issuer), "{url}");
    // The person signs in at the provider; the browser goes back through jitgate to the CLI.
    let mut browser = Http::new();
    let (last, resp) = browser.sign_in_at_provider(&url, "erin", "pwd,hwk", "", None).await;
    assert!(
        last.starts_with("http://127.0.0.1:") && last.contains("/callback?code=jgh_"),
        "{last}"
    );
    assert!(resp.text().await.unwrap().contains("Signed in"));
    let out = tokio::time::timeout(Duration::from_secs(30), cli.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("as erin"));
    // The hand-off code was for that CLI only, and only once.
    let code = url::Url::parse(&last)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let again = Client::new(&server.url, None)
        .sso_hand_off(&code, "a guessed verifier")
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some("sign_in_expired"));
    let cli_login = audit_of(&server, "auth.login", Some("erin")).await;
    assert_eq!(cli_login.last().unwrap().details["client"], "cli");
    assert_eq!(
        cli_login.last().unwrap().details["mfa"],
        "sso",
        "a hardware key at the provider counts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_hand_off_code_is_useless_without_the_verifier_and_redirects_stay_on_loopback() {
    let mut idp = Idp::start(people()).await;
    let server = server_with(&mut idp, "").await;
    let anon = Client::new(&server.url, None);
    let start = |redirect: &str| jitgate_api::SsoStartBody {
        provider: "corp".into(),
        redirect: redirect.into(),
        challenge: "x".repeat(43),
    };
    for bad in [
        "https://evil.example/cb",
        "http://evil.example:8080/cb",
        "http://127.0.0.1/cb",
        "http://127.0.0.1:9/cb?x=1",
    ] {
        let e = anon.sso_start(&start(bad)).await.unwrap_err();
        assert_eq!(e.code(), Some("invalid_redirect"), "{bad}");
    }
    let started = anon.sso_start(&start("http://127.0.0.1:9/callback")).await.unwrap();
    let (last, _) = Http::new()
        .sign_in_at_provider(&started.authorization_url, "erin", "pwd", "", Some("http://127.0.0.1:9/"))
        .await;
    let code = url::Url::parse(&last)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let e = anon.sso_hand_off(&code, "not the verifier").await.unwrap_err();
    assert_eq!(e.code(), Some("wrong_verifier"));
    let events = audit_of(&server, "auth.sso", None).await;
    assert_eq!(events.last().unwrap().details["code"], "wrong_verifier");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_oidc_test_shows_what_a_token_maps_to_and_why_one_is_refused() {
    let mut idp = Idp::start(people()).await;
    let server = server_with(&mut idp, "").await;
    let (status, _, _) = web_sign_in(&server, &mut Http::new(), "erin", "pwd,otp").await;
    assert_eq!(status, 200);
    // The ID token the provider issued for that sign-in (the fixture keeps the last one).
    let token = reqwest::get(format!("{}/_test/last_id_token", idp.issuer))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let seen = server.admin.oidc_test("corp", &token).await.unwrap();
    assert!(seen.checks.iter().filter(|c| c.check != "nonce").all(|c| c.ok), "{:?}", seen.checks);
    assert_eq!(seen.username.as_deref(), Some("erin"));
    let groups: Vec<_> = seen.groups.iter().map(|g| (g.group.as_str(), g.from.as_str())).collect();
    assert_eq!(
        groups,
        [
            ("engineers", "jit-engineers"),
            ("oncall", "Platform On-Call"),
            ("pay-admins", "team-pay-admins")
        ]
    );
    assert_eq!(seen.unmapped, ["everyone"]);
    assert!(seen.second_factor);
    assert_eq!(seen.claims["email"], "erin@example.com");

    // A token with its signature altered: its claims are still shown, the check says why.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    let seen = server.admin.oidc_test("corp", &parts.join(".")).await.unwrap();
    let first = &seen.checks[0];
    assert!(!first.ok && first.detail.contains("refused"), "{first:?}");
    assert_eq!(seen.username.as_deref(), Some("erin"));

    // Only administrators; an unknown provider and a non-token are refused plainly.
    let (_, _, session) = web_sign_in(&server, &mut Http::new(), "erin", "pwd").await;
    let erin = as_user(&server, &session.unwrap()).await;
    assert_eq!(erin.oidc_test("corp", &token).await.unwrap_err().status(), Some(403));
    assert_eq!(server.admin.oidc_test("nope", &token).await.unwrap_err().status(), Some(404));
    assert_eq!(server.admin.oidc_test("corp", "not a token").await.unwrap_err().status(), Some(400));
}
