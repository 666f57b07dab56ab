//! Single sign-on through the pages: a real headless Chromium from the sign-in page through the
//! provider, and a step-up at the provider from the second-factors page.

use crate::browser_support::Driver;
use crate::sso_support::{as_user, audit_of, people, server_with, web_sign_in, Http, Idp};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_signs_in_with_the_provider_from_the_sign_in_page() {
    let mut idp = Idp::start(people()).await;
    let server = server_with(&mut idp, "").await;
    let driver = Driver::start().await;
    let base = server.core.public_url();
    let b = driver.browser(base.trim_end_matches('/')).await;
    let c = &b.client;
    c.goto(&format!("{base}signin?next=/grants")).await.unwrap();
    c.find(fantoccini::Locator::Id("sso-corp")).await.unwrap().click().await.unwrap();
    c.wait().for_element(fantoccini::Locator::Id("login")).await.unwrap();
    c.find(fantoccini::Locator::Id("login"))
        .await
        .unwrap()
        .send_keys("erin")
        .await
        .unwrap();
    c.find(fantoccini::Locator::Id("submit")).await.unwrap().click().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let url = c.current_url().await.unwrap();
        if url.path() == "/grants" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still at {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = c.source().await.unwrap();
    assert!(page.contains("erin"), "signed in as erin on the grants page");
    assert!(page.contains("My grants"));
}

/// Signs `user` in through the pages, then asks for a step-up from `/mfa` and signs in at the
/// provider as `again` with `amr`: jitgate's last answer (status, body) and the session.
async fn step_up(server: &crate::support::TestServer, user: &str, again: &str, amr: &str) -> (u16, String, String) {
    let mut http = Http::new();
    let (_, _, session) = web_sign_in(server, &mut http, user, "pwd").await;
    let session = session.expect("signed in");
    let base = server.core.public_url();
    let mfa_page = http
        .send(reqwest::Method::GET, &format!("{base}mfa"), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(mfa_page.contains("step-up-corp"), "the page offers the provider");
    let csrf = jitgate_web::csrf_token_for(&session);
    let resp = http
        .send(
            reqwest::Method::POST,
            &format!("{base}sso/corp/step-up"),
            Some(&[("csrf", &csrf), ("next", "/mfa")]),
        )
        .await;
    assert_eq!(resp.status(), 303);
    let to = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        to.contains("prompt=login") && to.contains("max_age=0"),
        "the provider is asked to sign them in again: {to}"
    );
    let (_, resp) = http.sign_in_at_provider(&to, again, amr, "", None).await;
    (resp.status().as_u16(), resp.text().await.unwrap(), session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_up_at_the_provider_makes_the_session_fresh_only_for_the_same_person_with_a_second_factor() {
    let mut idp = Idp::start(people()).await;
    let server = server_with(&mut idp, "").await;
    let (status, body, session) = step_up(&server, "erin", "erin", "pwd,otp").await;
    assert_eq!(status, 200, "{body}");
    let erin = as_user(&server, &session).await;
    assert!(erin.mfa_status().await.unwrap().fresh_until.is_some(), "the session is fresh now");
    assert_eq!(audit_of(&server, "auth.sso_step_up", Some("erin")).await.len(), 1);

    // Someone else at the same browser's provider, or erin without a second factor: refused.
    let (status, body, session) = step_up(&server, "erin", "frank", "pwd,otp").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("was not erin"), "{body}");
    assert!(as_user(&server, &session).await.mfa_status().await.unwrap().fresh_until.is_none());
    let (status, body, session) = step_up(&server, "erin", "erin", "pwd").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("did not say a second factor"), "{body}");
    assert!(as_user(&server, &session).await.mfa_status().await.unwrap().fresh_until.is_none());
    let refused: Vec<_> = audit_of(&server, "auth.sso", None)
        .await
        .iter()
        .map(|e| e.details["code"].clone())
        .collect();
    assert_eq!(
        refused,
        [serde_json::json!("other_identity"), serde_json::json!("no_second_factor")]
    );
}
