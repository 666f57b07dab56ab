//! Hardening, tested as the attacks were made: a stolen session changing the password, parallel
//! guesses racing the attempt limit, half-sent requests and silent connections holding
//! sockets, floods of logins, and a scheduled grant slipping into a forbidden window.

use crate::mfa_support::*;
use crate::support::*;
use jitgate_api::{ExplainBody, MfaProof};
use jitgate_client::{Client, ClientError};
use jitgate_server::clock::Clock;
use jitgate_server::limits::RateSetting;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn api_code(e: &ClientError) -> (Option<u16>, String) {
    (e.status(), e.code().unwrap_or("-").to_owned())
}

// ---- own password change ----

#[tokio::test]
async fn a_stolen_session_cannot_change_the_password_without_the_current_one() {
    let s = TestServer::spawn(true).await;
    let session = Client::new(&s.url, None).login("alice", PASSWORD).await.unwrap();
    let alice = Client::new(&s.url, None).with_token(&session.token);
    let other = s.login("alice").await;
    // Straight over HTTP: the body with no current password at all.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/admin/users/alice/password", s.url))
        .bearer_auth(session.token.expose())
        .json(&serde_json::json!({"password": "a brand new password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "current_password_required");
    let e = alice
        .change_password("alice", "not the password", "a brand new password", None)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), (Some(401), "invalid_credentials".into()));
    // A wrong current password counts like a failed login.
    let attempts = s.core.store.attempts("alice").await.unwrap().expect("counted");
    assert_eq!(attempts.failures, 1);
    // Nothing changed: the old password still logs in, the other session still works.
    Client::new(&s.url, None).login("alice", PASSWORD).await.unwrap();
    other.whoami().await.unwrap();

    alice
        .change_password("alice", PASSWORD, "a brand new password", None)
        .await
        .unwrap();
    alice.whoami().await.expect("the session that changed it goes on");
    let e = other.whoami().await.unwrap_err();
    assert_eq!(e.status(), Some(401), "every other session ended");
    Client::new(&s.url, None).login("alice", "a brand new password").await.unwrap();
    let events = s.admin.all_audit_events(0).await.unwrap();
    let changed = events.iter().rev().find(|e| e.action == "user.password").unwrap();
    assert_eq!(changed.details["own"], true);
    assert!(changed.details["sessions_ended"].as_u64().unwrap() >= 1);
    // An administrator resetting someone else's password needs neither.
    s.admin.set_password("bob", "bob's reset password").await.unwrap();
}

#[tokio::test]
async fn with_a_factor_the_password_change_needs_a_fresh_proof_too() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    let (secret, _) = enrol_totp(&s, &alice).await;
    // Enrolment made the session fresh; let that pass.
    s.clock().advance(Duration::from_secs(600));
    let e = alice
        .change_password("alice", PASSWORD, "a brand new password", None)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), (Some(401), "mfa_required".into()));
    let wrong = MfaProof::otp("000000");
    let e = alice
        .change_password("alice", PASSWORD, "a brand new password", Some(wrong))
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), (Some(401), "invalid_mfa".into()));
    // Refused each time: the old password still holds.
    let anon = Client::new(&s.url, None);
    assert!(matches!(
        anon.login_outcome("alice", PASSWORD, None).await.unwrap(),
        jitgate_api::LoginOutcome::MfaRequired { .. }
    ));
    let good = MfaProof::otp(&code(&secret, s.clock().now()));
    alice
        .change_password("alice", PASSWORD, "a brand new password", Some(good))
        .await
        .unwrap();
    assert!(matches!(
        anon.login_outcome("alice", "a brand new password", None).await.unwrap(),
        jitgate_api::LoginOutcome::MfaRequired { .. }
    ));
}

#[tokio::test]
async fn the_cli_changes_ones_own_password_with_both() {
    let s = TestServer::spawn(false).await;
    s.cli_login("alice").await;
    let out = s
        .cli("alice", &["password", "--password-stdin"], Some("wrong\nanother long password\n"))
        .await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("current password is wrong"), "{out:?}");
    let out = s
        .cli(
            "alice",
            &["password", "--password-stdin"],
            Some(&format!("{PASSWORD}\nanother long password\n")),
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    Client::new(&s.url, None).login("alice", "another long password").await.unwrap();
}

// ---- attempt limits under concurrency ----

async fn parallel_password_guesses(s: TestServer) {
    let anon = Client::new(&s.url, None);
    let guesses: Vec<_> = (0..40)
        .map(|i| {
            let anon = anon.clone();
            tokio::spawn(async move { anon.login("alice", &format!("wrong guess {i}")).await.map(|_| ()) })
        })
        .collect();
    let mut checked = 0;
    let mut refused = 0;
    for g in guesses {
        match g.await.unwrap() {
            Ok(()) => panic!("a wrong password logged in"),
            Err(e) if e.code() == Some("invalid_credentials") => checked += 1,
            Err(e) if matches!(e.code(), Some("too_many_attempts" | "account_locked" | "busy")) => refused += 1,
            Err(e) => panic!("unexpected answer: {e}"),
        }
    }
    // The first four failures are free, the fifth brings a delay: whatever the interleaving,
    // at most five guesses were really checked.
    assert!(checked <= 5, "{checked} real checks");
    assert_eq!(checked + refused, 40);
    let a = s.core.store.attempts("alice").await.unwrap().unwrap();
    assert_eq!(a.failures, checked, "every real check was counted, and only those");
    // The right password, sent last, is refused too: the delay holds it off.
    let e = anon.login("alice", PASSWORD).await.unwrap_err();
    assert_eq!(e.code(), Some("too_many_attempts"), "{e}");
}

#[tokio::test]
async fn parallel_password_guesses_get_at_most_the_allowed_checks() {
    parallel_password_guesses(TestServer::spawn(true).await).await;
}

#[tokio::test]
async fn parallel_password_guesses_get_at_most_the_allowed_checks_on_postgres() {
    parallel_password_guesses(TestServer::spawn_pg(true).await).await;
}

async fn parallel_code_guesses(s: TestServer) {
    let alice = s.login("alice").await;
    let (secret, _) = enrol_totp(&s, &alice).await;
    let right = code(&secret, s.clock().now());
    let guesses: Vec<_> = (0..40)
        .map(|i| {
            let alice = alice.clone();
            let code = format!("{:06}", (i * 7919 + 13) % 1_000_000);
            tokio::spawn(async move { alice.mfa_verify(&MfaProof::otp(&code)).await.map(|_| ()) })
        })
        .collect();
    let mut checked = 0;
    for g in guesses {
        match g.await.unwrap() {
            // A guess that happened to be right would spoil the count; the codes above are
            // not the current one with overwhelming likelihood, and the assert says so.
            Ok(()) => panic!("a guessed code was accepted"),
            Err(e) if e.code() == Some("invalid_mfa") => checked += 1,
            Err(e) if e.code() == Some("too_many_attempts") => {}
            Err(e) => panic!("unexpected answer: {e}"),
        }
    }
    assert!(checked <= 5, "{checked} real code checks");
    assert_eq!(s.core.store.attempts("alice/factor").await.unwrap().unwrap().failures, checked);
    let e = alice.mfa_verify(&MfaProof::otp(&right)).await.unwrap_err();
    assert_eq!(e.code(), Some("too_many_attempts"), "the right code waits too");
}

#[tokio::test]
async fn parallel_code_guesses_get_at_most_the_allowed_checks() {
    parallel_code_guesses(TestServer::spawn(true).await).await;
}

#[tokio::test]
async fn parallel_code_guesses_get_at_most_the_allowed_checks_on_postgres() {
    parallel_code_guesses(TestServer::spawn_pg(true).await).await;
}

/// The attack that found it: a stolen session of a person without a factor enrols one and
/// spends a recovery code after every few guesses at the current password, to reset the count.
#[tokio::test]
async fn a_factor_proved_does_not_wipe_the_count_of_password_guesses() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    let (_, codes) = enrol_totp(&s, &alice).await;
    let mut codes = codes.into_iter();
    let mut refused = None;
    for round in 0..4 {
        for i in 0..4 {
            let e = alice
                .change_password("alice", &format!("guess {round} {i}"), "a brand new password", None)
                .await
                .unwrap_err();
            if e.code() != Some("invalid_credentials") {
                refused = Some(e);
                break;
            }
            s.clock().advance(Duration::from_secs(120));
        }
        if refused.is_some() {
            break;
        }
        alice.mfa_verify(&MfaProof::recovery_code(&codes.next().unwrap())).await.unwrap();
    }
    let e = refused.expect("the guesses were stopped");
    assert!(matches!(e.code(), Some("too_many_attempts" | "account_locked")), "{e}");
    assert!(s.core.store.attempts("alice").await.unwrap().unwrap().failures >= 5);
}

#[tokio::test]
async fn the_right_password_with_a_factor_due_leaves_earlier_failures_counted() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    enrol_totp(&s, &alice).await;
    let anon = Client::new(&s.url, None);
    for i in 0..3 {
        anon.login("alice", &format!("wrong {i}")).await.unwrap_err();
    }
    // Knowing the password must not wipe the count that guards the second factor.
    anon.login_outcome("alice", PASSWORD, None).await.unwrap();
    assert_eq!(s.core.store.attempts("alice").await.unwrap().unwrap().failures, 3);
}

// ---- bounded hashing, rates per address, summaries ----

#[tokio::test]
async fn logins_past_the_hashing_queue_are_told_to_come_back() {
    let s = TestServer::spawn_with(Backend::Sqlite, false, |st| {
        st.limits.hash_concurrency = 1;
        st.limits.hash_queue = 1;
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/login", s.url);
    let tries: Vec<_> = (0..12)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let r = http
                    .post(&url)
                    .json(&serde_json::json!({"username": format!("nobody{i}"), "password": "whatever it is"}))
                    .send()
                    .await
                    .unwrap();
                (
                    r.status().as_u16(),
                    r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned()),
                )
            })
        })
        .collect();
    let mut busy = 0;
    for t in tries {
        let (status, retry) = t.await.unwrap();
        match status {
            401 => {}
            503 => {
                busy += 1;
                assert_eq!(retry.as_deref(), Some("1"));
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        busy > 0,
        "with one hashing at a time and one waiting, twelve at once cannot all be checked"
    );
    // Once the flood is over, a real login goes through.
    s.login("alice").await;
}

#[tokio::test]
async fn one_address_over_its_login_rate_waits_while_another_gets_in() {
    let s = TestServer::spawn_with(Backend::Sqlite, false, |st| {
        st.limits.login_rate = RateSetting { per_minute: 1, burst: 3 };
    })
    .await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let url = format!("{}/api/v1/login", s.url);
    let body = serde_json::json!({"username": "alice", "password": "wrong password here"});
    let attacker = from([127, 0, 0, 1]);
    let mut last = None;
    for _ in 0..4 {
        last = Some(attacker.post(&url).json(&body).send().await.unwrap());
    }
    let last = last.unwrap();
    assert_eq!(last.status().as_u16(), 429);
    assert!(last.headers().get("retry-after").is_some());
    let err: serde_json::Value = last.json().await.unwrap();
    assert_eq!(err["error"]["code"], "rate_limited");
    let good = serde_json::json!({"username": "bob", "password": PASSWORD});
    let r = from([127, 0, 0, 2]).post(&url).json(&good).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "another address is not held back");
}

#[tokio::test]
async fn failed_anonymous_logins_past_the_rate_are_summarised() {
    let s = TestServer::spawn_with(Backend::Sqlite, true, |st| {
        st.limits.audit_failures_per_minute = 3;
    })
    .await;
    let anon = Client::new(&s.url, None);
    let before = s.audit_head().await;
    for i in 0..10 {
        anon.login(&format!("random{i}"), "some password").await.unwrap_err();
    }
    let events = s.admin.all_audit_events(before).await.unwrap();
    let failed = events.iter().filter(|e| e.action == "auth.login" && e.seq > before).count();
    assert_eq!(failed, 3, "three on the record one by one");
    s.clock().advance(Duration::from_secs(61));
    s.core.attempts().flush_failure_summary().await;
    let events = s.admin.all_audit_events(before).await.unwrap();
    let summary = events.iter().find(|e| e.action == "auth.failures_summarised").expect("a summary");
    assert_eq!(summary.details["count"], 7);
    assert_eq!(summary.details["by_action"]["auth.login"], 7);
}

#[tokio::test]
async fn attempt_records_of_names_that_are_not_users_are_pruned() {
    let s = TestServer::spawn(true).await;
    let anon = Client::new(&s.url, None);
    anon.login("ghost", "some password").await.unwrap_err();
    anon.login("alice", "some password").await.unwrap_err();
    assert!(s.core.store.attempts("ghost").await.unwrap().is_some());
    assert_eq!(s.core.attempts().prune().await.unwrap(), 0, "kept while their limits may apply");
    s.clock().advance(Duration::from_secs(16 * 60));
    assert_eq!(s.core.attempts().prune().await.unwrap(), 1);
    assert!(s.core.store.attempts("ghost").await.unwrap().is_none());
    assert!(
        s.core.store.attempts("alice").await.unwrap().is_some(),
        "a real user's record stays"
    );
}

#[tokio::test]
async fn freshness_zero_asks_for_a_proof_with_every_action() {
    let s = TestServer::spawn_with(Backend::Sqlite, true, |st| st.mfa_freshness = Duration::ZERO).await;
    let alice = s.login("alice").await;
    let (secret, _) = enrol_totp(&s, &alice).await;
    alice.mfa_verify(&MfaProof::otp(&code(&secret, s.clock().now()))).await.unwrap();
    // Just proved, and still not fresh for the next action.
    let e = alice
        .create_request(&request_body("prod-db", "dba", Some("30m"), "look at the data"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("mfa_required"), "{e}");
}

// ---- the HTTP listener ----

async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the connection was still open after {limit:?}"),
        }
    }
}

#[tokio::test]
async fn half_sent_headers_and_idle_connections_are_closed_after_the_timeout() {
    let s = TestServer::spawn_with(Backend::Sqlite, false, |st| {
        st.limits.http_header_timeout = Duration::from_secs(1);
        st.limits.http_request_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = s.url.trim_start_matches("http://").to_owned();
    // Half the headers, then nothing.
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let took = closed_within(&mut half, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    // Nothing at all.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    closed_within(&mut silent, Duration::from_secs(5)).await;
    // One request answered, then idle on keep-alive.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    closed_within(&mut idle, Duration::from_secs(5)).await;
    // The head on time, the body never: the request times out with 408.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(6), slow.read_to_end(&mut answer))
        .await
        .expect("answered and closed")
        .ok();
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_are_closed_and_a_client_gets_in_once_one_goes() {
    let s = TestServer::spawn_with(Backend::Sqlite, false, |st| {
        st.limits.http_max_connections = 3;
    })
    .await;
    let addr = s.url.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = TcpStream::connect(&addr).await.unwrap();
    let _ = over.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let took = closed_within(&mut over, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(1), "closed at once, not after a timeout ({took:?})");
    // (The test's own API clients keep connections alive too, so free all the held ones.)
    held.clear();
    let url = format!("{}/healthz", s.url);
    eventually("a client gets in once a place is free", || async {
        reqwest::get(&url).await.is_ok_and(|r| r.status().as_u16() == 200)
    })
    .await;
}

// ---- policies judged for the access window ----

const WINDOWS: &str = r#"
@id("night-auto-approve")
permit(principal, action == Action::"auto_approve", resource == Role::"prod-db/read")
when { context.utc.hour < 1 };

@id("no-access-2-to-5")
forbid(principal, action in [Action::"request", Action::"auto_approve", Action::"connect"], resource)
when { context.utc.hour >= 2 && context.utc.hour < 5 };
"#;

async fn with_window_policies(tweak: impl FnOnce(&mut jitgate_server::Settings)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("windows.cedar"), WINDOWS).unwrap();
    let policy_dir = dir.keep();
    TestServer::spawn_with(Backend::Sqlite, true, move |st| {
        st.policy_dir = Some(policy_dir);
        // The tests move the clock to the next night: the admin's session must last.
        st.session_idle = Duration::from_secs(48 * 3600);
        st.session_max = Duration::from_secs(48 * 3600);
        tweak(st);
    })
    .await
}

fn at(s: &str) -> jitgate_core::Timestamp {
    jitgate_core::Timestamp::parse_rfc3339(s).unwrap()
}

#[tokio::test]
async fn a_request_for_a_forbidden_window_is_refused_when_it_is_made() {
    let s = with_window_policies(|_| {}).await;
    s.clock().set(at("2026-11-25T00:55:00Z"));
    let alice = s.login("alice").await;
    let mut body = request_body("prod-db", "read", Some("30m"), "night maintenance");
    body.start_at = Some(at("2026-11-25T03:00:00Z"));
    let e = alice.create_request(&body).await.unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    assert!(e.to_string().contains("no-access-2-to-5"), "{e}");
    // The same request for now (00:55) is allowed, and auto-approved by the night rule.
    body.start_at = None;
    let r = alice.create_request(&body).await.unwrap();
    assert_eq!(r.status.as_str(), "approved");
    // explain says the same for the window.
    let explain = |start_at| ExplainBody {
        user: "alice".into(),
        resource: "prod-db".into(),
        role: "read".into(),
        duration: Some("30m".into()),
        at: None,
        start_at,
        reason: "night maintenance".into(),
        ticket: None,
    };
    let e = s.admin.explain(&explain(Some(at("2026-11-25T03:00:00Z")))).await.unwrap();
    let request = e.decisions.iter().find(|d| d.action == "request").unwrap();
    assert!(!request.allowed && request.policies.contains(&"no-access-2-to-5".to_owned()));
    let e = s.admin.explain(&explain(None)).await.unwrap();
    assert!(e.decisions.iter().find(|d| d.action == "request").unwrap().allowed);
    // No policy permits `connect` and none forbids it at 00:55: a live grant gets in, and
    // explain says so (issue #17).
    let connect = e.decisions.iter().find(|d| d.action == "connect").unwrap();
    assert!(connect.allowed && connect.policies.is_empty(), "{connect:?}");
}

#[tokio::test]
async fn a_scheduled_grant_is_checked_again_when_it_begins() {
    // At request time (01:30 for 01:45) nothing forbids it; then the window policy is made
    // wider, and at 01:45 the grant is refused and audited.
    let s = with_window_policies(|_| {}).await;
    s.clock().set(at("2026-11-25T01:30:00Z"));
    let alice = s.login("alice").await;
    let mut body = request_body("prod-db", "read", Some("30m"), "night maintenance");
    body.start_at = Some(at("2026-11-25T01:45:00Z"));
    let r = alice.create_request(&body).await.unwrap();
    let grant = s.login("bob").await.approve(&r.id, "ok").await.unwrap().grant.unwrap();
    assert_eq!(grant.status.as_str(), "scheduled");
    let wider = WINDOWS.replace("context.utc.hour >= 2", "context.utc.hour >= 1");
    std::fs::write(s.settings().policy_dir.as_ref().unwrap().join("windows.cedar"), wider).unwrap();
    s.admin.reload().await.unwrap();
    s.clock().set(at("2026-11-25T01:45:00Z"));
    eventually("the grant is refused at its start", || async {
        alice.grant(&grant.id).await.unwrap().status.as_str() == "revoked"
    })
    .await;
    let events = s.admin.all_audit_events(0).await.unwrap();
    let refused = events
        .iter()
        .find(|e| e.action == "grant.activate" && e.target == grant.id)
        .expect("audited");
    assert_eq!(refused.outcome.as_str(), "denied");
    assert!(refused.details["policies"].to_string().contains("no-access-2-to-5"));
}

#[tokio::test]
async fn start_at_beyond_the_horizon_is_refused() {
    let s = TestServer::spawn_with(Backend::Sqlite, true, |st| st.start_at_horizon = Duration::from_secs(24 * 3600)).await;
    let alice = s.login("alice").await;
    let mut body = request_body("prod-db", "read", Some("30m"), "look at the data");
    body.start_at = Some(s.clock().now().saturating_add(Duration::from_secs(2 * 24 * 3600)));
    let e = alice.create_request(&body).await.unwrap_err();
    assert_eq!(api_code(&e), (Some(400), "start_too_far".into()));
    body.start_at = Some(s.clock().now().saturating_add(Duration::from_secs(3600)));
    alice.create_request(&body).await.unwrap();
}

// ---- consistent answers ----

#[tokio::test]
async fn requests_and_grants_one_may_not_see_answer_404_on_every_verb() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    let r = alice
        .create_request(&request_body("prod-db", "read", Some("30m"), "look at the data"))
        .await
        .unwrap();
    let mut write = request_body("prod-db", "write", Some("30m"), "fix the data");
    write.ticket = Some("INC-1".into());
    let pending = alice.create_request(&write).await.unwrap();
    let grant = s.login("bob").await.approve(&r.id, "ok").await.unwrap().grant.unwrap();
    // dave is an engineer: neither requester, approver, admin nor audit reader.
    let dave = s.login("dave").await;
    let status = |e: ClientError| e.status();
    assert_eq!(status(dave.request(&r.id).await.unwrap_err()), Some(404));
    assert_eq!(status(dave.approve(&r.id, "x").await.unwrap_err()), Some(404));
    assert_eq!(status(dave.deny(&r.id, "x").await.unwrap_err()), Some(404));
    assert_eq!(status(dave.cancel(&r.id).await.unwrap_err()), Some(404));
    assert_eq!(status(dave.grant(&grant.id).await.unwrap_err()), Some(404));
    assert_eq!(status(dave.revoke(&grant.id, "x").await.unwrap_err()), Some(404));
    assert_eq!(status(dave.approve(&pending.id, "x").await.unwrap_err()), Some(404));
    assert_eq!(status(dave.cancel(&pending.id).await.unwrap_err()), Some(404));
    // The record keeps each attempt on what exists.
    let events = s.admin.all_audit_events(0).await.unwrap();
    let probes = events
        .iter()
        .filter(|e| e.actor == "dave" && e.outcome == "denied" && e.details["code"] == "not_visible")
        .count();
    assert_eq!(
        probes, 6,
        "approve, deny, cancel, revoke, and approve and cancel of the pending one"
    );
    // The same verbs on ids that do not exist say the same.
    assert_eq!(status(dave.approve("req_nothing", "x").await.unwrap_err()), Some(404));
    assert_eq!(status(dave.revoke("grt_nothing", "x").await.unwrap_err()), Some(404));
}

// ---- the gateway listener ----

#[tokio::test]
async fn gateway_connections_that_do_not_log_in_are_capped_and_cut_and_a_real_client_then_gets_in() {
    let s = TestServer::spawn_with(Backend::Sqlite, true, |st| {
        st.limits.gateway_startup_timeout = Duration::from_secs(2);
        st.limits.gateway_max_unauthenticated = 3;
    })
    .await;
    let (s, alice, _grant) = crate::gateway::with_grant_on(s).await;
    let gw = s.core.gateway_addr.get().unwrap().to_string();
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(&gw).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = TcpStream::connect(&gw).await.unwrap();
    let took = closed_within(&mut over, Duration::from_secs(1)).await;
    assert!(took < Duration::from_millis(900), "past the cap: closed at once ({took:?})");
    // One that starts TLS-less startup and stops half way is held to the same deadline.
    for c in &mut silent {
        let took = closed_within(c, Duration::from_secs(5)).await;
        assert!(took < Duration::from_secs(4), "cut at the startup deadline ({took:?})");
    }
    let t = alice.connect(&crate::gateway::connect_body("pg")).await.unwrap();
    let out = crate::gateway::run(crate::gateway::psql(&s, "alice", "pg", t.token.expose(), "SELECT 1")).await;
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test]
async fn gateway_sessions_per_person_are_capped_when_configured() {
    let s = TestServer::spawn_with(Backend::Sqlite, true, |st| st.limits.gateway_max_sessions_per_user = 1).await;
    let (s, alice, _grant) = crate::gateway::with_grant_on(s).await;
    let first = alice.connect(&crate::gateway::connect_body("pg")).await.unwrap();
    let holding = tokio::spawn(crate::gateway::run(crate::gateway::psql(
        &s,
        "alice",
        "pg",
        first.token.expose(),
        "SELECT pg_sleep(3)",
    )));
    eventually("the first session is live", || async {
        !alice.db_sessions(false, true).await.unwrap().is_empty()
    })
    .await;
    let second = alice.connect(&crate::gateway::connect_body("pg")).await.unwrap();
    let out = crate::gateway::run(crate::gateway::psql(&s, "alice", "pg", second.token.expose(), "SELECT 1")).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_sessions_per_user"), "{err}");
    assert!(holding.await.unwrap().status.success());
    // The refused token was not spent: once the first session is over it opens one.
    let out = crate::gateway::run(crate::gateway::psql(&s, "alice", "pg", second.token.expose(), "SELECT 1")).await;
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test]
async fn gateway_connections_past_an_address_rate_are_told_to_wait() {
    let s = TestServer::spawn_with(Backend::Sqlite, true, |st| {
        st.limits.gateway_rate = RateSetting { per_minute: 1, burst: 2 };
    })
    .await;
    let gw = s.core.gateway_addr.get().unwrap().to_string();
    for _ in 0..2 {
        drop(TcpStream::connect(&gw).await.unwrap());
    }
    let mut third = TcpStream::connect(&gw).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), third.read_to_end(&mut answer))
        .await
        .expect("answered and closed")
        .ok();
    let text = String::from_utf8_lossy(&answer);
    assert!(answer.first() == Some(&b'E') && text.contains("too many connections"), "{text}");
}

// ---- after the attack (helper report, issue #12) ----

/// A client that pipelines requests and never reads their answers is cut once the server's
/// writes stall for the header timeout; with one place per address, the next connection from
/// that address then gets in.
#[tokio::test]
async fn a_client_that_never_reads_is_cut_and_frees_its_place() {
    let s = TestServer::spawn_with(Backend::Sqlite, false, |st| {
        st.limits.http_header_timeout = Duration::from_secs(1);
        st.limits.http_max_connections_per_address = 1;
    })
    .await;
    let addr = s.url.trim_start_matches("http://").to_owned();
    // The test's own API clients keep connections alive from 127.0.0.1: come from another.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let mut greedy = socket.connect(addr.parse().unwrap()).await.unwrap();
    let one = b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(400);
    let _ = tokio::time::timeout(Duration::from_secs(3), greedy.write_all(&one)).await;
    let from_same = || async {
        let c = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        c.get(format!("{}/healthz", s.url))
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 200)
    };
    assert!(
        !from_same().await,
        "the place of 127.0.0.3 is held while the server can still write"
    );
    eventually_within("the stalled connection is cut", Duration::from_secs(20), from_same).await;
    drop(greedy);
}

#[tokio::test]
async fn gateway_connections_not_logged_in_are_capped_per_address() {
    let s = TestServer::spawn_with(Backend::Sqlite, true, |st| {
        st.limits.gateway_max_unauthenticated_per_address = 2;
    })
    .await;
    let gw = s.core.gateway_addr.get().unwrap().to_string();
    let from = |last: u8| {
        let gw = gw.clone();
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(std::net::SocketAddr::from(([127, 0, 0, last], 0))).unwrap();
            socket.connect(gw.parse().unwrap()).await.unwrap()
        }
    };
    let _a = from(5).await;
    let _b = from(5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = from(5).await;
    let took = closed_within(&mut third, Duration::from_secs(1)).await;
    assert!(took < Duration::from_millis(900), "a third from the same address is closed at once");
    // Another address is not held back.
    let mut other = from(6).await;
    let mut buf = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), other.read(&mut buf))
            .await
            .is_err(),
        "another address's connection stays open, waiting for its startup"
    );
}

#[tokio::test]
async fn an_extension_is_decided_for_when_it_would_begin() {
    let s = with_window_policies(|_| {}).await;
    s.clock().set(at("2026-11-25T01:30:00Z"));
    let alice = s.login("alice").await;
    let r = alice
        .create_request(&request_body("prod-db", "read", Some("1h"), "night maintenance"))
        .await
        .unwrap();
    let grant = s.login("bob").await.approve(&r.id, "ok").await.unwrap().grant.unwrap();
    // It ends at 02:30, inside the forbidden 02:00-05:00: an extension would begin there.
    let mut more = request_body("prod-db", "read", Some("30m"), "night maintenance");
    more.extends = Some(grant.id.clone());
    let e = alice.create_request(&more).await.unwrap_err();
    assert!(e.to_string().contains("no-access-2-to-5"), "{e}");
}

/// A stolen administrator's session cannot make a second administrator, or reset someone's
/// password, without the owner's fresh factor (when the owner has one).
#[tokio::test]
async fn an_admin_with_a_factor_proves_it_to_make_an_admin_or_reset_a_password() {
    let s = TestServer::spawn(true).await;
    let (secret, _) = enrol_totp(&s, &s.admin).await;
    s.clock().advance(Duration::from_secs(600));
    let admin_body = jitgate_api::CreateUserBody {
        username: "mallory".parse().unwrap(),
        display_name: String::new(),
        password: Some("a long test password".into()),
        admin: true,
    };
    let e = s.admin.create_user(&admin_body).await.unwrap_err();
    assert_eq!(api_code(&e), (Some(401), "mfa_required".into()));
    let e = s.admin.set_password("bob", "bob's new password!").await.unwrap_err();
    assert_eq!(api_code(&e), (Some(401), "mfa_required".into()));
    // An ordinary user needs no step-up; after one, both go through.
    let mut plain = admin_body.clone();
    plain.username = "erin".parse().unwrap();
    plain.admin = false;
    s.admin.create_user(&plain).await.unwrap();
    s.admin.mfa_verify(&MfaProof::otp(&code(&secret, s.clock().now()))).await.unwrap();
    s.admin.create_user(&admin_body).await.unwrap();
    s.admin.set_password("bob", "bob's new password!").await.unwrap();
}

/// A grant a policy approved by itself is approved again by policy when it begins, or it does
/// not begin; one a person approved needs only the request to be allowed.
#[tokio::test]
async fn an_auto_approved_scheduled_grant_needs_its_approval_again_when_it_begins() {
    let s = with_window_policies(|_| {}).await;
    s.clock().set(at("2026-11-25T00:10:00Z"));
    let alice = s.login("alice").await;
    let mut body = request_body("prod-db", "read", Some("30m"), "night maintenance");
    body.start_at = Some(at("2026-11-25T00:40:00Z"));
    let auto = alice.create_request(&body).await.unwrap();
    assert_eq!(auto.status.as_str(), "approved", "auto-approved for 00:40");
    let auto_grant = alice.request(&auto.id).await.unwrap().grant.unwrap();
    // The night rule narrows to nothing before 00:40.
    let narrower = WINDOWS.replace("context.utc.hour < 1", "context.utc.hour < 0");
    std::fs::write(s.settings().policy_dir.as_ref().unwrap().join("windows.cedar"), narrower).unwrap();
    s.admin.reload().await.unwrap();
    let by_bob = alice.create_request(&body).await.unwrap();
    assert_eq!(by_bob.status.as_str(), "pending");
    let bob_grant = s.login("bob").await.approve(&by_bob.id, "ok").await.unwrap().grant.unwrap();
    s.clock().set(at("2026-11-25T00:40:00Z"));
    eventually("the auto-approved grant is refused at its start", || async {
        alice.grant(&auto_grant.id).await.unwrap().status.as_str() == "revoked"
    })
    .await;
    eventually("the grant bob approved begins", || async {
        alice.grant(&bob_grant.id).await.unwrap().status.as_str() == "active"
    })
    .await;
}
