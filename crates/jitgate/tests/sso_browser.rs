//! Single sign-on in a real headless Chromium, from the sign-in page through the provider.

use crate::browser_support::Driver;
use crate::sso::{people, server_with, Idp};
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
