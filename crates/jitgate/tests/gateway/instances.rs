//! Two instances on one PostgreSQL store, each with its own gateway: a revocation, a disabled
//! user or an administrator's kill made through one ends the sessions running on the other
//! (PostgreSQL NOTIFY, sent in the transaction that makes the change), and what an instance
//! missed while its listener was cut off is found in the store when it listens again.

use super::*;
use jitgate_core::grant::GrantStatus;

/// Instance A with alice's `read` grant on `pg` (made through A), instance B on the same store,
/// and alice's sessions through B's gateway.
struct TwoInstances {
    a: TestServer,
    b: TestServer,
    /// alice, logged in on A.
    alice_a: Client,
    /// alice, logged in on B.
    alice_b: Client,
    grant: String,
}

async fn two_instances() -> TwoInstances {
    let (a, alice_a, grant, _up) = with_grant_and_upstream(TestServer::spawn_pg(true).await).await;
    let b = a.another_instance().await;
    let alice_b = b.login("alice").await;
    TwoInstances {
        a,
        b,
        alice_a,
        alice_b,
        grant,
    }
}

/// Starts `SELECT pg_sleep(60)` through B's gateway; returns psql and the session's id.
async fn sleeping_session_on_b(t: &TwoInstances) -> (std::process::Child, String) {
    let before: Vec<String> = live_sessions(&t.alice_b).await;
    let token = t.alice_b.connect(&connect_body("pg")).await.unwrap();
    let mut cmd = psql(&t.b, "alice", "pg", token.token.expose(), "SELECT pg_sleep(60)");
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let started = Instant::now();
    let id = loop {
        if let Some(id) = live_sessions(&t.alice_b).await.into_iter().find(|s| !before.contains(s)) {
            break id;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the session is live");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Let psql's statement reach the upstream.
    tokio::time::sleep(Duration::from_millis(200)).await;
    (child, id)
}

async fn live_sessions(c: &Client) -> Vec<String> {
    c.db_sessions(false, true).await.unwrap().into_iter().map(|s| s.id).collect()
}

/// Waits for psql to end (bounded: a kill that never arrives fails the test, not hangs it) and
/// returns its stderr and the time since `since`.
async fn ended(child: std::process::Child, since: Instant) -> (String, Duration) {
    let (out, _) = tokio::time::timeout(Duration::from_secs(20), wait_exit(child))
        .await
        .expect("the session on the other instance ended");
    assert!(!out.status.success());
    (String::from_utf8_lossy(&out.stderr).into_owned(), since.elapsed())
}

async fn end_reason(c: &Client, id: &str) -> Option<String> {
    c.db_sessions(false, false)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == id)
        .and_then(|s| s.end_reason)
}

async fn recorded_as(c: &Client, id: &str, reason: &str) {
    crate::support::eventually("the session's end is recorded", || async {
        end_reason(c, id).await.as_deref() == Some(reason)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_instance_ends_the_session_on_another() {
    let t = two_instances().await;
    let (child, session) = sleeping_session_on_b(&t).await;
    let revoked_at = Instant::now();
    t.alice_a.revoke(&t.grant, "done").await.unwrap();
    let (err, lag) = ended(child, revoked_at).await;
    eprintln!("revoke on instance A → psql on instance B closed: {lag:?}");
    assert!(err.contains("jitgate: access grant revoked"), "{err}");
    recorded_as(&t.alice_b, &session, "killed: access grant revoked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_kills_a_session_through_another_instance() {
    let t = two_instances().await;
    let (child, session) = sleeping_session_on_b(&t).await;
    let killed_at = Instant::now();
    t.a.admin.kill_session(&session).await.unwrap();
    let (err, lag) = ended(child, killed_at).await;
    eprintln!("admin kill on instance A → psql on instance B closed: {lag:?}");
    assert!(err.contains("jitgate: session ended by an administrator"), "{err}");
    recorded_as(&t.alice_b, &session, "killed: session ended by an administrator").await;
    let kills: Vec<_> =
        t.a.admin
            .all_audit_events(0)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "session.kill")
            .collect();
    assert_eq!(kills.len(), 1);
    assert_eq!((kills[0].actor.as_str(), kills[0].target.as_str()), ("admin", session.as_str()));

    // No instance has it any more, nor one that never was: 404, on either instance.
    for (s, id) in [(&t.a, session.as_str()), (&t.b, session.as_str()), (&t.a, "ses_nonexistent")] {
        let err = s.admin.kill_session(id).await.unwrap_err();
        assert_eq!((err.status(), err.code()), (Some(404), Some("not_found")), "{id}");
    }
    t.a.cli_login("admin").await;
    let out = t.a.cli("admin", &["sessions", "--kill", &session], None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("no live session"), "{out:?}");
    // The grant itself is untouched: alice can still connect.
    let (child, _) = sleeping_session_on_b(&t).await;
    t.alice_a.revoke(&t.grant, "done").await.unwrap();
    let (err, _) = ended(child, Instant::now()).await;
    assert!(err.contains("jitgate: access grant revoked"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_user_on_one_instance_ends_their_session_on_another() {
    let t = two_instances().await;
    let (child, session) = sleeping_session_on_b(&t).await;
    let disabled_at = Instant::now();
    t.a.admin.set_user_disabled("alice", true).await.unwrap();
    let (err, lag) = ended(child, disabled_at).await;
    eprintln!("user disabled on instance A → psql on instance B closed: {lag:?}");
    assert!(err.contains("jitgate: access grant revoked"), "{err}");
    crate::support::eventually("the session's end is recorded", || async {
        let sessions = t.b.core.store.db_sessions(None, false, 10).await.unwrap();
        sessions
            .iter()
            .any(|s| s.id == session && s.end_reason.as_deref() == Some("killed: access grant revoked"))
    })
    .await;
}

/// Ends the store connections that LISTEN (every instance's listener): each instance connects
/// again at once, having possibly missed notifications meanwhile.
async fn cut_listeners(store_url: &str) -> u64 {
    use sqlx::Connection;
    let db = store_url.rsplit('/').next().unwrap();
    let mut admin = sqlx::PgConnection::connect(&jitgate_store::testing::pg_admin_url()).await.unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND query LIKE 'LISTEN%'"
    ))
    .fetch_all(&mut admin)
    .await
    .unwrap();
    cut.len() as u64
}

/// Changes made straight in the store, with no notification (as if B's listener had missed
/// it), are found by B's check of its live sessions when its listener connects again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_missed_while_the_listener_was_cut_off_are_found_in_the_store() {
    let t = two_instances().await;
    let store_url = t.a.settings().store_url.clone().expect("a PostgreSQL store");
    let (first, first_id) = sleeping_session_on_b(&t).await;
    let (second, second_id) = sleeping_session_on_b(&t).await;
    let mut feed = t.b.core.store.session_kills().expect("B listens for kills");

    // An administrator's kill of the first session, recorded but never sent.
    let mut tx = t.a.core.store.write().await.unwrap();
    assert!(tx.kill_db_session(&first_id, "session ended by an administrator").await.unwrap());
    tx.commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(end_reason(&t.alice_b, &first_id).await, None, "not heard, not ended yet");
    let cut_at = Instant::now();
    assert!(cut_listeners(&store_url).await >= 2, "both instances listen");
    let (err, lag) = ended(first, cut_at).await;
    eprintln!("listener cut → missed admin kill found, psql on instance B closed: {lag:?}");
    assert!(err.contains("jitgate: session ended by an administrator"), "{err}");
    tokio::time::timeout(Duration::from_secs(10), feed.listening.wait_for(|up| *up))
        .await
        .expect("B listens again")
        .unwrap();
    assert_eq!(end_reason(&t.alice_b, &second_id).await, None, "the other session runs on");

    // A revocation, recorded but never sent.
    let mut tx = t.a.core.store.write().await.unwrap();
    let mut grant = tx.grant(&t.grant).await.unwrap().unwrap();
    grant.status = GrantStatus::Revoked;
    grant.revoked_at = Some(t.a.core.now());
    tx.update_grant(&grant).await.unwrap();
    tx.commit().await.unwrap();
    let cut_at = Instant::now();
    assert!(cut_listeners(&store_url).await >= 2);
    let (err, lag) = ended(second, cut_at).await;
    eprintln!("listener cut → missed revocation found, psql on instance B closed: {lag:?}");
    assert!(err.contains("jitgate: access grant revoked"), "{err}");

    // And B still hears what is sent after it reconnected.
    let r = t
        .alice_a
        .create_request(&request_body("pg", "read", Some("30m"), "look again"))
        .await
        .unwrap();
    let grant = t.a.login("bob").await.approve(&r.id, "ok").await.unwrap().grant.unwrap();
    let (third, _) = sleeping_session_on_b(&t).await;
    let revoked_at = Instant::now();
    t.alice_a.revoke(&grant.id, "done").await.unwrap();
    let (err, lag) = ended(third, revoked_at).await;
    eprintln!("revoke on instance A after the listener reconnected → psql on instance B closed: {lag:?}");
    assert!(err.contains("jitgate: access grant revoked"), "{err}");
}

/// B's listener dies without a word (its connection cut by the network, nothing sent either
/// way): a revocation made on A is not heard by B, and B's heartbeat is what finds out. B then
/// checks its sessions against the store and ends the revoked one, seconds later rather than
/// at the grant's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_a_session_whose_instance_stopped_hearing_without_a_word() {
    let (a, alice_a, grant, _up) = with_grant_and_upstream(TestServer::spawn_pg(true).await).await;
    let store_url = a.settings().store_url.clone().expect("a PostgreSQL store");
    let relay = jitgate_store::testing::SilentRelay::to(&store_url).await;
    let mut settings = a.settings_for_another_instance();
    settings.store_url = Some(relay.via.clone());
    let b = TestServer::restart(settings, a.clock.clone(), a.dir.clone()).await;
    let alice_b = b.login("alice").await;
    let t = TwoInstances {
        a,
        b,
        alice_a,
        alice_b,
        grant,
    };
    let (child, session) = sleeping_session_on_b(&t).await;
    relay.cut.send_replace(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let revoked_at = Instant::now();
    t.alice_a.revoke(&t.grant, "done").await.unwrap();
    let (err, lag) = ended(child, revoked_at).await;
    eprintln!("revoke on instance A, B's listener silently cut → psql on instance B closed: {lag:?}");
    assert!(err.contains("jitgate: access grant revoked"), "{err}");
    assert!(!relay.held.lock().unwrap().is_empty(), "B's listener was the one cut");
    assert!(lag >= Duration::from_secs(1), "found by the heartbeat, not heard: {lag:?}");
    recorded_as(&t.alice_b, &session, "killed: access grant revoked").await;
}
