//! The web pages in a real headless Chromium: the golden path from sign-in to expiry with two
//! people in two browsers, and the refusals a page must make. The server runs on the real
//! clock here (the browser's countdown and the TOTP codes follow real time).

use crate::browser_support::{Browser, Driver};
use crate::mfa_support::code;
use crate::support::*;
use jitgate_client::ListParams;
use jitgate_core::Timestamp;
use std::time::Duration;

fn now() -> Timestamp {
    jitgate_server::clock::Clock::now(&jitgate_server::clock::SystemClock)
}

/// The server as a browser must address it: `localhost` is a secure context (passkeys work
/// there without TLS) and the server's default WebAuthn origin.
fn browser_base(s: &TestServer) -> String {
    s.url.replace("127.0.0.1", "localhost")
}

/// Signs in with the password; lands on the second-factor page if one is due.
async fn sign_in_with_password(b: &Browser, user: &str) {
    b.goto("/").await;
    b.wait_until("the sign-in page", Duration::from_secs(5), || async { b.path().await == "/signin" })
        .await;
    b.fill("#username", user).await;
    b.fill("#password", PASSWORD).await;
    b.click("form[action='/signin'] button[type=submit]").await;
}

/// Counted by the administrator (alice's own login would need her second factor).
async fn pending_requests_of(s: &TestServer, user: &str) -> usize {
    s.admin
        .requests(&ListParams {
            scope: Some("all".into()),
            status: Some("pending".into()),
            ..ListParams::default()
        })
        .await
        .unwrap()
        .iter()
        .filter(|r| r.request.requester.as_str() == user)
        .count()
}

/// Sign in with a TOTP code; request; in a second browser the approver signs in with a passkey
/// from Chromium's virtual authenticator and approves with a passkey step-up (after a try
/// without a factor is refused); the requester's open page shows the grant without a reload,
/// counts it down, and shows it expired when it ends. Screenshots of the inbox, the request
/// form and the grant, at desktop and phone widths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_approve_with_a_passkey_and_watch_the_grant_end_in_the_browser() {
    let s = TestServer::spawn(false).await;
    let base = browser_base(&s);
    let shots = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;

    // alice has an authenticator app (enrolled through the API); bob has nothing yet.
    let alice_api = s.login("alice").await;
    let secret = alice_api.totp_enrol().await.unwrap().secret.expose().to_owned();
    alice_api.totp_confirm(&code(&secret, now())).await.unwrap();

    // alice signs in with her password and a code (the next step's: this step's code was used
    // by the enrolment, and a used code is refused).
    let alice = driver.browser(&base).await;
    sign_in_with_password(&alice, "alice").await;
    alice
        .wait_until("the second-factor page", Duration::from_secs(5), || async {
            alice.path().await == "/signin/mfa"
        })
        .await;
    alice
        .fill("#code", &code(&secret, now().saturating_add(Duration::from_secs(30))))
        .await;
    alice.click("form[action='/signin/mfa'] button[type=submit]").await;
    alice.wait_text("h1", "Hello", Duration::from_secs(5)).await;

    // bob signs in (no factor yet), adds a passkey in the page, signs out, and signs in again
    // with the passkey.
    let bob = driver.browser(&base).await;
    let authenticator = bob.add_virtual_authenticator().await;
    sign_in_with_password(&bob, "bob").await;
    bob.wait_text("h1", "Hello", Duration::from_secs(5)).await;
    bob.goto("/mfa").await;
    bob.fill("#passkey-name", "chromium").await;
    bob.click("[data-passkey-register]").await;
    bob.wait_until("the passkey added", Duration::from_secs(10), || async {
        bob.js("return document.body.dataset.passkeyAdded || ''").await == "1"
    })
    .await;
    assert_eq!(bob.authenticator_credentials(&authenticator).await.len(), 1);
    assert_eq!(
        bob.js("return document.querySelectorAll('#recovery-codes-new [data-codes] li').length")
            .await,
        10,
        "a first factor comes with recovery codes, shown once"
    );
    bob.click(".signout button").await;
    bob.wait_until("signed out", Duration::from_secs(5), || async { bob.path().await == "/signin" })
        .await;
    sign_in_with_password(&bob, "bob").await;
    bob.wait_until("the second-factor page", Duration::from_secs(5), || async {
        bob.path().await == "/signin/mfa"
    })
    .await;
    bob.click("#signin-passkey").await;
    bob.wait_text("h1", "Hello", Duration::from_secs(10)).await;

    // bob keeps his inbox open; it follows changes live.
    bob.goto("/inbox").await;
    bob.wait_until("the inbox following changes", Duration::from_secs(5), || async {
        bob.js("return document.body.dataset.live || ''").await == "open"
    })
    .await;
    bob.js("window.jitgateTestMark = 'still the same inbox'; return null").await;
    assert!(bob.text("#requests-live").await.contains("Nothing waits for you"));

    // alice asks for read on prod-db for a minute.
    alice.goto("/catalogue").await;
    alice.click("a[href='/requests/new?resource=prod-db&role=read']").await;
    alice.wait_text("h1", "Request read on prod-db", Duration::from_secs(5)).await;
    alice.fill("#reason", "the nightly report is slow; look at its plan").await;
    alice.fill("#duration", "1m").await;
    alice.screenshot("request-form-desktop", 1280, 900, shots.path()).await;
    alice.screenshot("request-form-phone", 390, 844, shots.path()).await;
    alice.click("#request-form button[type=submit]").await;
    alice.wait_text("#request-status", "pending", Duration::from_secs(5)).await;
    let request_id = alice.path().await.trim_start_matches("/requests/").to_owned();
    assert_eq!(pending_requests_of(&s, "alice").await, 1);

    // alice keeps her grants open; it follows changes live.
    alice.goto("/grants").await;
    alice
        .wait_until("the page following changes", Duration::from_secs(5), || async {
            alice.js("return document.body.dataset.live || ''").await == "open"
        })
        .await;
    alice.js("window.jitgateTestMark = 'still the same page'; return null").await;
    assert!(!alice.exists("[data-grant]").await, "no grant before the approval");

    // It appears in bob's open inbox without a reload.
    bob.wait_text("#requests-live", "read on prod-db", Duration::from_secs(5)).await;
    assert_eq!(bob.js("return window.jitgateTestMark || ''").await, "still the same inbox");
    bob.screenshot("inbox-desktop", 1280, 900, shots.path()).await;
    bob.screenshot("inbox-phone", 390, 844, shots.path()).await;
    bob.click(&format!("a[href='/requests/{request_id}']")).await;
    bob.wait_text("#request-status", "pending", Duration::from_secs(5)).await;
    assert!(
        bob.text("#my-part").await.contains("owner"),
        "the page says what his approval counts for"
    );
    bob.fill("#comment", "ok for an hour of looking").await;

    // Approving without a factor is refused, and changes nothing.
    bob.click("#review-form button[value=approve]").await;
    bob.wait_text("#form-error", "needs your second factor", Duration::from_secs(5))
        .await;
    assert_eq!(pending_requests_of(&s, "alice").await, 1, "still pending");

    // With the passkey it is approved.
    bob.click("#review-form [data-passkey-submit]").await;
    bob.wait_text("#request-status", "approved", Duration::from_secs(10)).await;
    let reviews = s.admin.request(&request_id).await.unwrap().reviews;
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].mfa_method.map(|m| m.as_str()), Some("webauthn"));

    // alice's open page shows the grant, without a reload, and counts it down.
    alice
        .wait_text("[data-grant] [data-status]", "active", Duration::from_secs(5))
        .await;
    let first = alice.text("[data-grant] .countdown").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = alice.text("[data-grant] .countdown").await;
    assert_ne!(first, later, "the countdown runs");
    alice.screenshot("grant-desktop", 1280, 900, shots.path()).await;
    alice.screenshot("grant-phone", 390, 844, shots.path()).await;

    // It reaches zero and the page shows the grant expired, still without a reload.
    alice
        .wait_text("[data-grant] [data-status]", "expired", Duration::from_secs(90))
        .await;
    assert!(!alice.exists("[data-countdown]").await, "an ended grant has no countdown");
    assert_eq!(
        alice.js("return window.jitgateTestMark || ''").await,
        "still the same page",
        "the page was not reloaded"
    );
    alice.close().await;
    bob.close().await;
}

/// What a page must refuse, from a signed-in browser: a change without the session's CSRF
/// token (or with another session's), another person's request, and the security headers
/// and script rules on every page; and every page passes axe-core without a serious
/// violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_refuse_forged_forms_and_other_peoples_requests_and_carry_their_headers() {
    let s = TestServer::spawn(false).await;
    let base = browser_base(&s);
    let driver = Driver::start().await;

    // dave's request, which alice may not see (she is neither its requester nor an approver).
    let dave = s.login("dave").await;
    let daves = dave
        .create_request(&request_body("prod-db", "read", None, "dave needs to look"))
        .await
        .unwrap();
    let alices = s
        .login("alice")
        .await
        .create_request(&request_body("prod-db", "read", None, "alice needs to look"))
        .await
        .unwrap();

    // A link to a request (as a notification carries) lands on it after signing in.
    let alice = driver.browser(&base).await;
    alice.goto(&format!("/requests/{}", alices.id)).await;
    assert_eq!(alice.path().await, "/signin");
    alice.fill("#username", "alice").await;
    alice.fill("#password", PASSWORD).await;
    alice.click("form[action='/signin'] button[type=submit]").await;
    alice.wait_text("h1", "read on prod-db", Duration::from_secs(5)).await;
    assert_eq!(alice.path().await, format!("/requests/{}", alices.id));

    // The page checks the duration against the role's longest lease as it is typed.
    alice.goto("/requests/new?resource=prod-db&role=read").await;
    alice.fill("#duration", "2h").await;
    assert_eq!(
        alice.js("return document.getElementById('duration').validationMessage").await,
        "At most 1h for this role."
    );
    alice.fill("#duration", "45m").await;
    assert_eq!(alice.js("return document.getElementById('duration').validity.valid").await, true);

    // A refusal of the form is explained in words, and nothing is created. (The page checks the
    // ticket's pattern itself; switched off here, the server's check answers.)
    let before = pending_requests_of(&s, "alice").await;
    alice.goto("/requests/new?resource=prod-db&role=write").await;
    alice
        .js("document.getElementById('request-form').noValidate = true; return null")
        .await;
    alice.fill("#reason", "rotate the reporting credentials").await;
    alice.fill("#ticket", "not-a-ticket").await;
    alice.click("#request-form button[type=submit]").await;
    alice.wait_text("#form-error", "ticket", Duration::from_secs(5)).await;
    assert_eq!(alice.path().await, "/requests", "the form again, with its refusal");
    assert_eq!(
        alice.js("return document.getElementById('reason').value").await,
        "rotate the reporting credentials",
        "what was typed is kept"
    );
    assert_eq!(pending_requests_of(&s, "alice").await, before);

    alice.goto(&format!("/requests/{}", daves.id)).await;
    assert_eq!(alice.text("h1").await, "Not found");
    assert!(!alice.text("main").await.contains("dave needs to look"));

    // A form post without the token, with a made-up one, and with one from another session:
    // each refused, nothing created.
    let before = pending_requests_of(&s, "alice").await;
    let other_session = jitgate_client::Client::new(&s.url, None).login("alice", PASSWORD).await.unwrap();
    let other_token = jitgate_web::csrf_token_for(other_session.token.expose());
    for csrf in [None, Some("0".repeat(64)), Some(other_token)] {
        let body = match &csrf {
            Some(t) => format!("csrf={t}&resource=prod-db&role=read&reason=forged+request"),
            None => "resource=prod-db&role=read&reason=forged+request".to_owned(),
        };
        let status = alice
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 fetch('/requests', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: arguments[0] })
                   .then(r => done(r.status));",
                vec![body.into()],
            )
            .await
            .unwrap();
        assert_eq!(status, 403, "csrf {csrf:?}");
    }
    assert_eq!(pending_requests_of(&s, "alice").await, before, "nothing was created");

    // Every page: the security headers, no inline script or style, and no serious
    // accessibility violation.
    let cookie = alice.client.get_named_cookie(jitgate_web::SESSION_COOKIE).await.unwrap();
    let cookie_header = format!("{}={}", cookie.name(), cookie.value());
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let inline_handler = regex::Regex::new(r#"(?i)<[^>]+\son[a-z]+\s*="#).unwrap();
    let inline_style = regex::Regex::new(r#"(?i)<[^>]+\sstyle\s*="#).unwrap();
    let inline_script = regex::Regex::new(r#"(?is)<script(?:\s[^>]*)?>\s*[^<\s]"#).unwrap();
    let pages = [
        "/".to_owned(),
        "/catalogue".into(),
        "/requests/new?resource=prod-db&role=write".into(),
        "/requests".into(),
        format!("/requests/{}", alices.id),
        "/inbox".into(),
        "/grants".into(),
        "/mfa".into(),
        "/no-such-page".into(),
    ];
    // The sign-in page is seen without a session (with one, it sends the visitor on).
    for (path, cookie) in pages.iter().map(|p| (p.as_str(), cookie_header.as_str())).chain([("/signin", "")]) {
        let r = http.get(format!("{}{path}", s.url)).header("cookie", cookie).send().await.unwrap();
        let h = r.headers().clone();
        let csp = h["content-security-policy"].to_str().unwrap();
        for rule in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(rule), "{path}: CSP {csp} lacks {rule}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        let html = r.text().await.unwrap();
        assert!(html.starts_with("<!doctype html>"), "{path}: {html}");
        assert!(!inline_handler.is_match(&html), "{path}: an inline event handler");
        assert!(!inline_style.is_match(&html), "{path}: an inline style");
        assert!(!inline_script.is_match(&html), "{path}: an inline script");
    }
    for path in &pages {
        alice.goto(path).await;
        let violations = alice.accessibility_violations().await;
        assert!(violations.is_empty(), "{path}:\n{}", violations.join("\n"));
    }
    // The checker does find what it checks for: an image without a text alternative.
    alice
        .js("document.querySelector('main').insertAdjacentHTML('beforeend', '<img src=\"/static/app.css\">'); return null")
        .await;
    let violations = alice.accessibility_violations().await;
    assert!(violations.iter().any(|v| v.contains("image-alt")), "{violations:?}");
    let anonymous = driver.browser(&base).await;
    anonymous.goto("/signin").await;
    let violations = anonymous.accessibility_violations().await;
    assert!(violations.is_empty(), "/signin:\n{}", violations.join("\n"));
    anonymous.close().await;
    alice.close().await;
}

/// `server.tls`: the listener speaks HTTPS (a self-signed certificate made on first start), the
/// pages' cookies carry the `__Host-` prefix and `Secure`, pages send HSTS, and a cookie
/// without the prefix (which a plain-HTTP page on the same host could have set) is not a
/// session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_pages_cookies_are_host_prefixed_and_secure() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = jitgate_server::Settings::from_toml("test.toml", CONFIG).unwrap();
    settings.http = "127.0.0.1:0".parse().unwrap();
    settings.gateway = None;
    settings.data_dir = dir.path().join("data");
    settings.http_tls = jitgate_server::config::HttpTls::SelfSigned;
    let app = jitgate_server::Application::build(settings, None, None).await.unwrap();
    assert!(app.serves_https());
    assert!(
        dir.path().join("data/http-tls.crt").exists(),
        "the certificate is kept for the next start"
    );
    let setup_token = secrecy::ExposeSecret::expose_secret(app.setup_token().unwrap()).to_owned();
    let pages = jitgate_web::router(app.core());
    let app = app.with_pages(pages);
    let port = app.addr().port();
    let stop = app.stop_handle();
    let task = tokio::spawn(app.run_until_stopped());
    let base = format!("https://localhost:{port}");
    let https = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.is_err(),
        "plain HTTP gets no answer from the HTTPS listener"
    );
    let boot = https
        .post(format!("{base}/api/v1/bootstrap"))
        .json(&serde_json::json!({"setup_token": setup_token, "username": "admin", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(boot.status(), 201);

    let form = https.get(format!("{base}/signin")).send().await.unwrap();
    assert_eq!(form.status(), 200, "{:?}", form.headers());
    assert!(form.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .starts_with("max-age="));
    let pre = form.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        pre.starts_with("__Host-jitgate_csrf=") && pre.contains("Secure") && pre.contains("Path=/"),
        "{pre}"
    );
    let pre_pair = pre.split(';').next().unwrap().to_owned();
    let csrf = pre_pair.split('=').nth(1).unwrap().to_owned();

    let signed_in = https
        .post(format!("{base}/signin"))
        .header("cookie", &pre_pair)
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "admin"),
            ("password", PASSWORD),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let session = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-jitgate_session="))
        .expect("a session cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attribute), "{session} lacks {attribute}");
    }
    assert!(!session.contains("Domain="), "{session}");
    let pair = session.split(';').next().unwrap().to_owned();
    let home = https.get(format!("{base}/")).header("cookie", &pair).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert!(home.text().await.unwrap().contains("Hello"));

    let token = pair.split('=').nth(1).unwrap();
    let unprefixed = https
        .get(format!("{base}/"))
        .header("cookie", format!("{}={token}", jitgate_web::SESSION_COOKIE))
        .send()
        .await
        .unwrap();
    assert_eq!(unprefixed.status(), 303, "an unprefixed cookie is not a session over HTTPS");

    // The CLI trusts the server's own certificate when told to (`--ca-file`), and only then.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
            .args(args)
            .env("JITGATE_CONFIG_DIR", dir.path().join("cli"))
            .env("JITGATE_SERVER", &base)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, said) = cli(&["login", "admin", "--password-stdin"]);
    assert!(!ok, "an unknown certificate is refused: {said}");
    let ca = dir.path().join("data/http-tls.crt");
    let ca = ca.to_str().unwrap();
    let (ok, said) = cli(&["--ca-file", ca, "login", "admin", "--password-stdin"]);
    assert!(ok, "{said}");
    let (ok, said) = cli(&["--ca-file", ca, "whoami"]);
    assert!(ok && said.contains("admin"), "{said}");
    let (ok, said) = cli(&["--ca-file", "/nonexistent.pem", "whoami"]);
    assert!(!ok && said.contains("--ca-file /nonexistent.pem"), "{said}");
    stop.stop();
    task.await.unwrap().unwrap();
}

/// The administration pages in the browser: a person is added and disabled (which ends their
/// session), a member joins a group, the audit log is filtered and verified, a decision is
/// explained; each page passes axe-core and carries no inline script. Someone who is not an
/// administrator is refused each of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administration_pages_work_for_admins_and_refuse_everyone_else() {
    let s = TestServer::spawn(false).await;
    let base = browser_base(&s);
    let driver = Driver::start().await;

    let admin = driver.browser(&base).await;
    sign_in_with_password(&admin, "admin").await;
    admin.wait_text("h1", "Hello", Duration::from_secs(5)).await;
    admin.goto("/admin/people").await;
    admin.fill("#new-username", "erin").await;
    admin.fill("#new-display", "Erin <b>Example</b>").await;
    admin.fill("#new-password", PASSWORD).await;
    admin.click("#new-user button[type=submit]").await;
    admin.wait_text("#admin-message", "erin was created", Duration::from_secs(5)).await;
    assert!(
        admin.text("#user-erin").await.contains("Erin <b>Example</b>"),
        "shown as text, not markup"
    );
    admin.fill("#member-group", "engineers").await;
    admin.fill("#member-user", "erin").await;
    admin.click("#add-member button[type=submit]").await;
    admin
        .wait_text("#admin-message", "erin joined engineers", Duration::from_secs(5))
        .await;

    // erin signs in elsewhere; disabling her ends that session at once.
    let erin = driver.browser(&base).await;
    sign_in_with_password(&erin, "erin").await;
    erin.wait_text("h1", "Hello", Duration::from_secs(5)).await;
    admin.click("form[action='/admin/users/erin/disable'] button").await;
    admin.wait_text("#admin-message", "erin is disabled", Duration::from_secs(5)).await;
    erin.goto("/grants").await;
    assert_eq!(erin.path().await, "/signin", "a disabled person's session is over");

    // The audit log, filtered to what just happened, and verified.
    admin.goto("/audit?action=user.").await;
    let events = admin.text("#audit-events").await;
    assert!(events.contains("erin"), "{events}");
    assert!(!events.contains("session.login "), "the filter holds: {events}");
    admin.click("form[action='/audit/verify'] button").await;
    admin.wait_text("#verify-outcome", "Verified", Duration::from_secs(10)).await;

    // A decision explained.
    admin.goto("/policy/explain").await;
    admin.fill("#x-user", "alice").await;
    admin.fill("#x-resource", "prod-db").await;
    admin.fill("#x-role", "read").await;
    admin.fill("#x-reason", "looking at the slow query").await;
    admin.click("#explain-form button[type=submit]").await;
    admin.wait_text("#explanation", "request", Duration::from_secs(5)).await;

    admin.goto("/admin/resources").await;
    assert!(admin.text("main").await.contains("production PostgreSQL"));
    for path in ["/admin/people", "/admin/resources", "/admin/sessions", "/audit", "/policy/explain"] {
        admin.goto(path).await;
        let violations = admin.accessibility_violations().await;
        assert!(violations.is_empty(), "{path}:\n{}", violations.join("\n"));
        let html = admin.client.source().await.unwrap();
        assert!(!html.contains(" onclick=") && !html.contains(" style="), "{path}");
    }

    // alice is not an administrator: each page refuses her.
    let alice = driver.browser(&base).await;
    sign_in_with_password(&alice, "alice").await;
    alice.wait_text("h1", "Hello", Duration::from_secs(5)).await;
    assert!(!alice.exists("a[href='/admin/people']").await, "no administration links for her");
    for path in ["/admin/people", "/admin/resources", "/admin/sessions", "/audit"] {
        alice.goto(path).await;
        assert_eq!(alice.text("h1").await, "Not allowed", "{path}");
    }
    admin.close().await;
    erin.close().await;
    alice.close().await;
}

/// The sign-in form counts failed passwords as the API does and says, in the page, when to
/// try again; the right password is then refused too until the wait is over.
#[tokio::test]
async fn the_sign_in_page_counts_failures_and_says_when_to_try_again() {
    let s = TestServer::spawn(true).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = http.get(format!("{}/signin", s.url)).send().await.unwrap();
    let pre = form.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let csrf = pre.split('=').nth(1).unwrap().to_owned();
    let attempt = |password: &'static str| {
        let (http, pre, csrf, url) = (http.clone(), pre.clone(), csrf.clone(), s.url.clone());
        async move {
            let r = http
                .post(format!("{url}/signin"))
                .header("cookie", pre)
                .form(&[("csrf", csrf.as_str()), ("username", "alice"), ("password", password)])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // A pre-session token the server did not make (a cookie planted from a sibling domain,
    // say) is no token, even when the form repeats it.
    let planted = "0".repeat(64);
    let r = http
        .post(format!("{}/signin", s.url))
        .header("cookie", format!("jitgate_csrf={planted}"))
        .form(&[("csrf", planted.as_str()), ("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let mut refusals = Vec::new();
    for _ in 0..6 {
        refusals.push(attempt("not the password").await);
    }
    assert_eq!(refusals[0].0, 401);
    assert!(refusals[0].1.contains("role=\"alert\""), "the refusal is in the page");
    let (status, page) = refusals.last().unwrap();
    assert_eq!(*status, 429, "{page}");
    assert!(page.contains("too many failed attempts: try again in"), "{page}");
    let (status, _) = attempt(PASSWORD).await;
    assert_eq!(status, 429, "the right password waits too");
    s.clock().advance(Duration::from_secs(3600));
    let (status, _) = attempt(PASSWORD).await;
    assert_eq!(status, 303, "signed in once the wait is over");
}

/// From "My grants": asking to extend a live grant makes an extension request for it, and
/// "End it now" revokes it, shown among the ended ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_is_extended_and_ended_from_its_page() {
    let s = TestServer::spawn(false).await;
    let base = browser_base(&s);
    let driver = Driver::start().await;
    let asked = s
        .login("alice")
        .await
        .create_request(&request_body("prod-db", "read", Some("30m"), "look at the slow report"))
        .await
        .unwrap();
    let grant = s.login("bob").await.approve(&asked.id, "ok").await.unwrap().grant.unwrap();

    let alice = driver.browser(&base).await;
    sign_in_with_password(&alice, "alice").await;
    alice.wait_text("h1", "Hello", Duration::from_secs(5)).await;
    alice.goto("/grants").await;
    alice
        .wait_text("[data-grant] [data-status]", "active", Duration::from_secs(5))
        .await;
    alice.fill(&format!("#extend-for-{}", grant.id), "15m").await;
    alice
        .fill(&format!("#extend-why-{}", grant.id), "the report needs another look")
        .await;
    alice.click(&format!("#extend-{} button[type=submit]", grant.id)).await;
    alice.wait_text("#request-status", "pending", Duration::from_secs(5)).await;
    let extension_id = alice.path().await.trim_start_matches("/requests/").to_owned();
    let extension = s.admin.request(&extension_id).await.unwrap().request;
    assert_eq!(extension.extends_grant.as_deref(), Some(grant.id.as_str()));
    assert_eq!(extension.duration_secs, 15 * 60);

    alice.goto("/grants").await;
    alice.click(&format!("form[action='/grants/{}/revoke'] button", grant.id)).await;
    alice.wait_text("#grants-live", "revoked", Duration::from_secs(5)).await;
    assert!(!alice.exists("[data-countdown]").await, "nothing live is left");
    alice.close().await;
}

/// "Connect" on a live grant shows a one-time password and a connection string once; psql,
/// given them and the gateway's certificate as the page says, opens a session through the
/// gateway with the certificate checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_from_the_page_gives_what_psql_needs() {
    let (s, _alice_api, grant) = crate::gateway::with_grant_on(TestServer::spawn(false).await).await;
    let base = browser_base(&s);
    let driver = Driver::start().await;
    let alice = driver.browser(&base).await;
    sign_in_with_password(&alice, "alice").await;
    alice.wait_text("h1", "Hello", Duration::from_secs(5)).await;
    alice.goto("/grants").await;
    alice.click(&format!("#connect-{grant} button[type=submit]")).await;
    alice.wait_text("h1", "Connect to", Duration::from_secs(5)).await;
    let token = alice.text("#connect-token").await;
    let dsn = alice.text("#connect-dsn").await;
    assert!(dsn.contains("sslmode=verify-full&sslrootcert="), "{dsn}");
    let root_file = dsn.rsplit("sslrootcert=").next().unwrap().to_owned();
    let pem = alice.text("#gateway-ca").await;
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(&root_file), format!("{pem}\n")).unwrap();
    let out = std::process::Command::new("psql")
        .args([dsn.as_str(), "-X", "-tAc", "select current_user"])
        .env("PGPASSWORD", &token)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    // The password is shown once: the grants page does not show it again, and it is spent.
    alice.goto("/grants").await;
    assert!(!alice.text("main").await.contains(&token));
    let again = std::process::Command::new("psql")
        .args([dsn.as_str(), "-X", "-tAc", "select 1"])
        .env("PGPASSWORD", &token)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success(), "a one-time password works once");
    alice.close().await;
}
