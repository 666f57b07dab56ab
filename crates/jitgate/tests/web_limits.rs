//! The bounds of the web pages' live updates and of what counts as using a session, over
//! plain HTTP (no browser needed): a live stream ends with its session, one person holds a
//! bounded number of them, and neither a stream nor a page's own refresh keeps an unattended
//! session alive.

use crate::support::*;
use std::time::Duration;

fn cookie(token: &str) -> String {
    format!("{}={token}", jitgate_web::SESSION_COOKIE)
}

async fn session_token(s: &TestServer, user: &str) -> String {
    jitgate_client::Client::new(&s.url, None)
        .login(user, PASSWORD)
        .await
        .unwrap()
        .token
        .expose()
        .to_owned()
}

/// A live stream ends within seconds of its person being disabled (and so of signing out),
/// however long the session had left.
#[tokio::test]
async fn a_live_stream_ends_when_its_session_does() {
    let s = TestServer::spawn(false).await;
    let token = session_token(&s, "alice").await;
    let http = reqwest::Client::new();
    let mut stream = http
        .get(format!("{}/live", s.url))
        .header("cookie", cookie(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    assert_eq!(stream.headers()["cache-control"], "no-store");
    s.admin.set_user_disabled("alice", true).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(12), async { while let Ok(Some(_)) = stream.chunk().await {} }).await;
    assert!(ended.is_ok(), "the stream was still open 12 s after alice was disabled");
}

/// One person holds at most eight live streams at once; the ninth is refused, and a place is
/// free again once a stream ends.
#[tokio::test]
async fn one_person_holds_a_bounded_number_of_live_streams() {
    let s = TestServer::spawn(false).await;
    let token = session_token(&s, "alice").await;
    let http = reqwest::Client::new();
    let open = || {
        let (http, url, c) = (http.clone(), format!("{}/live", s.url), cookie(&token));
        async move { http.get(url).header("cookie", c).send().await.unwrap() }
    };
    let mut held = Vec::new();
    for _ in 0..8 {
        let r = open().await;
        assert_eq!(r.status(), 200);
        held.push(r);
    }
    assert_eq!(open().await.status(), 429, "a ninth stream");
    let bob = session_token(&s, "bob").await;
    let other = http
        .get(format!("{}/live", s.url))
        .header("cookie", cookie(&bob))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200, "another person has places of their own");
    drop(held.pop());
    eventually("a place freed", || async { open().await.status() == 200 }).await;
}

/// A page's own refresh (`x-jitgate-refresh`, what the script sends) and a live stream do not
/// count as using the session, so an unattended page lets it go idle; a person's own
/// navigation does count.
#[tokio::test]
async fn an_unattended_page_does_not_keep_its_session_alive() {
    let s = TestServer::spawn(true).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |token: String, quiet: bool| {
        let (http, url) = (http.clone(), format!("{}/grants", s.url));
        async move {
            let mut r = http.get(url).header("cookie", cookie(&token));
            if quiet {
                r = r.header("x-jitgate-refresh", "1");
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    let unattended = session_token(&s, "alice").await;
    let attended = session_token(&s, "bob").await;
    // Half an hour in: alice's page refreshes itself; bob clicks.
    s.clock().advance(Duration::from_secs(31 * 60));
    assert_eq!(get(unattended.clone(), true).await, 200);
    assert_eq!(get(attended.clone(), false).await, 200);
    // 62 minutes after alice's last own use, past `auth.session_idle` (1 h): her session is
    // over, refreshes or not; bob's, used 31 minutes ago, is not.
    s.clock().advance(Duration::from_secs(31 * 60));
    assert_eq!(get(unattended, true).await, 303, "alice's unattended session went idle");
    assert_eq!(get(attended, false).await, 200);
}

/// With two instances on one PostgreSQL store, a page following changes on one of them hears
/// of a request made through the other.
#[tokio::test]
async fn a_change_made_on_another_instance_reaches_a_live_page() {
    let a = TestServer::spawn_pg(false).await;
    let b = a.another_instance().await;
    let token = session_token(&b, "bob").await;
    let mut stream = reqwest::Client::new()
        .get(format!("{}/live", b.url))
        .header("cookie", cookie(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // Let the follower see the head as it is before the change.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.login("alice")
        .await
        .create_request(&request_body("prod-db", "read", None, "made on the other instance"))
        .await
        .unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        let mut seen = String::new();
        while let Ok(Some(chunk)) = stream.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: changed") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(heard, Ok(true), "instance b's page heard of the change made on instance a");
}
