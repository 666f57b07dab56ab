//! Single sign-on against a real OpenID Connect provider on loopback (see `sso_support`): the
//! pages and API driven by a cookie-keeping HTTP client, and the real `jitgate login --sso`.

use crate::sso_support::*;
use crate::support::TestServer;
use jitgate_client::Client;
use serde_json::{json, Value};
use std::time::Duration;

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
            username: "gina".parse().unwrap(),
            display_name: String::new(),
            password: Some(crate::support::PASSWORD.into()),
            admin: false,
        })
        .await
        .unwrap();
    strict
        .admin
        .create_user(&jitgate_api::CreateUserBody {
            username: "frank".parse().unwrap(),
            display_name: String::new(),
            password: None,
            admin: false,
        })
        .await
        .unwrap();
    let refused = anon.login("gina", crate::support::PASSWORD).await.unwrap_err();
    assert_eq!(refused.code(), Some("password_disabled"));
    let refused = anon.login("gina", "a wrong password").await.unwrap_err();
    assert_eq!(refused.code(), Some("password_disabled"), "the same answer whatever the password");
    // The break-glass account cannot be claimed through the provider.
    idp.register(&strict);
    let (status, body, session) = web_sign_in(&strict, &mut Http::new(), "admin", "pwd,otp").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("break-glass"), "{body}");
    assert!(session.is_none());
    // gina has a password of her own: whoever the provider calls gina does not take her account.
    let (status, body, session) = web_sign_in(&strict, &mut Http::new(), "gina", "pwd,otp").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("its own password"), "{body}");
    assert!(session.is_none());
    // frank, created by an administrator for single sign-on (no password), is linked at his
    // first sign-in and keeps his name.
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
    let (cli, url) = cli_waiting_at_an_address(&server, dir.path(), &["login", "--sso", "--no-browser"]).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_without_a_browser_signs_in_with_the_device_grant() {
    let mut idp = Idp::start(people()).await;
    let server = server_with(&mut idp, "").await;
    let dir = tempfile::tempdir().unwrap();
    let (cli, url) = cli_waiting_at_an_address(&server, dir.path(), &["login", "--sso", "corp", "--device"]).await;
    assert!(url.starts_with(&idp.issuer) && url.contains("user_code="), "{url}");
    // The person, on another device, types the code and signs in there.
    let last = Http::new().device_sign_in(&url, "erin", "pwd,otp").await;
    assert!(last.contains("Sign-in Success"), "{last}");
    let out = tokio::time::timeout(Duration::from_secs(60), cli.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("as erin"));
    let login = audit_of(&server, "auth.login", Some("erin")).await;
    assert_eq!(login.last().unwrap().details["client"], "device");
    assert_eq!(login.last().unwrap().details["mfa"], "sso");

    // A device id is the CLI's secret and works until it is used: not after, nor a guessed one.
    let anon = Client::new(&server.url, None);
    assert_eq!(
        anon.sso_device_poll("jgd_guessed").await.unwrap_err().code(),
        Some("sign_in_expired")
    );
    let started = anon.sso_device_start("corp").await.unwrap();
    let pending = anon.sso_device_poll(started.device_id.expose()).await.unwrap();
    assert!(
        matches!(pending, jitgate_api::SsoDeviceOutcome::Pending),
        "nobody typed the code yet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_rotates_its_signing_key_is_followed() {
    let mut idp = Idp::start(people()).await;
    let server = server_with(&mut idp, "").await;
    let (status, _, _) = web_sign_in(&server, &mut Http::new(), "erin", "pwd").await;
    assert_eq!(status, 200, "the old key, as discovered");
    // Keys are fetched again at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    idp.state["rotate"] = json!(true);
    std::fs::write(idp.state_path(), idp.state.to_string()).unwrap();
    let (status, body, session) = web_sign_in(&server, &mut Http::new(), "erin", "pwd").await;
    assert_eq!(
        status, 200,
        "a token under the new key is checked against the keys fetched again: {body}"
    );
    assert!(session.is_some());
}
