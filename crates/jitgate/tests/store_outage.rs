//! Fast failure (issue #18): with its PostgreSQL store stopped, or frozen so that established
//! connections get no answer, the server answers at once — 503 `store_unavailable`, `/readyz`
//! not ready — and works again by itself when the store is back. The store is a throwaway
//! cluster of this test's own, so it can be stopped, frozen and started again.

use crate::cluster::Cluster;
use crate::support::*;
use jitgate_client::Client;
use std::time::{Duration, Instant};

/// The default `store.timeout` the server runs with here.
const STORE_TIMEOUT: Duration = Duration::from_secs(1);

/// Bob approves `id`: how long the answer took, and the error if it was one.
async fn timed_approve(bob: &Client, id: &str) -> (Duration, Result<(), jitgate_client::ClientError>) {
    let started = Instant::now();
    let result = bob.approve(id, "").await.map(|_| ());
    (started.elapsed(), result)
}

/// Asks `/readyz` until it is not 200, each answer within a second; returns how long after
/// `since` it said so, and the slowest answer.
async fn readyz_turns_unready(url: &str, since: Instant) -> (Duration, Duration) {
    let anon = Client::new(url, None);
    let mut slowest = Duration::ZERO;
    loop {
        let asked = Instant::now();
        let (status, body) = anon.raw(reqwest::Method::GET, "/readyz", "text/plain", vec![]).await.unwrap();
        let took = asked.elapsed();
        slowest = slowest.max(took);
        assert!(took < Duration::from_secs(1), "/readyz took {took:?}");
        if status != 200 {
            assert_eq!((status, body.as_str()), (503, "store unavailable"));
            return (since.elapsed(), slowest);
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "/readyz still 200 {:?} into the outage",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// After the outage: the same approval succeeds, without a restart, and `/readyz` is 200 again.
async fn recovers(s: &TestServer, bob: &Client, id: &str, since: Instant) -> Duration {
    eventually_within("the approval succeeds once the store is back", Duration::from_secs(30), || async {
        bob.approve(id, "").await.is_ok()
    })
    .await;
    let anon = Client::new(&s.url, None);
    eventually_within("/readyz is 200 again", Duration::from_secs(10), || async {
        anon.raw(reqwest::Method::GET, "/readyz", "text/plain", vec![]).await.unwrap().0 == 200
    })
    .await;
    since.elapsed()
}

fn assert_store_unavailable(what: &str, took: Duration, result: Result<(), jitgate_client::ClientError>) {
    let err = result.expect_err(what);
    assert_eq!((err.status(), err.code()), (Some(503), Some("store_unavailable")), "{what}: {err}");
    assert!(took < 2 * STORE_TIMEOUT, "{what}: answered after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_its_store_stopped_or_frozen_the_server_fails_fast_and_recovers() {
    let cluster = Cluster::trust();
    let s = TestServer::spawn_with(Backend::Postgres(cluster.url()), false, |settings| {
        assert_eq!(settings.store_timeout, STORE_TIMEOUT, "the default");
    })
    .await;
    let alice = s.login("alice").await;
    let bob = s.login("bob").await;
    let first = alice
        .create_request(&request_body("prod-db", "read", None, "before the outage"))
        .await
        .unwrap();
    let second = alice
        .create_request(&request_body("prod-db", "read", None, "before the freeze"))
        .await
        .unwrap();

    // Stopped: connections are closed, new ones refused (the pool retries until its deadline).
    cluster.stop_immediate();
    let stopped = Instant::now();
    let (took, result) = timed_approve(&bob, &first.id).await;
    eprintln!(
        "store stopped: approval answered {:?} after {took:?}",
        result.as_ref().err().and_then(|e| e.code())
    );
    assert_store_unavailable("an approval with the store stopped", took, result);
    let (unready_after, slowest) = readyz_turns_unready(&s.url, stopped).await;
    eprintln!("store stopped: /readyz not ready {unready_after:?} after the stop; slowest answer {slowest:?}");
    cluster.start();
    let back = Instant::now();
    let recovered = recovers(&s, &bob, &first.id, back).await;
    eprintln!("store started again: recovered {recovered:?} after the start, without a restart");

    // Frozen: connections stay open and nothing answers; the kernel would wait minutes.
    cluster.freeze();
    let frozen = Instant::now();
    let (took, result) = timed_approve(&bob, &second.id).await;
    eprintln!(
        "store frozen: approval answered {:?} after {took:?}",
        result.as_ref().err().and_then(|e| e.code())
    );
    assert_store_unavailable("an approval with the store frozen", took, result);
    let (unready_after, slowest) = readyz_turns_unready(&s.url, frozen).await;
    eprintln!("store frozen: /readyz not ready {unready_after:?} after the freeze; slowest answer {slowest:?}");
    cluster.thaw();
    let thawed = Instant::now();
    let recovered = recovers(&s, &bob, &second.id, thawed).await;
    eprintln!("store thawed: recovered {recovered:?} after the thaw, without a restart");
}

/// The case the pool's acquire timeout does not cover: a call on a connection already taken
/// (a transaction under way) when the server stops answering. The bounded store gives up after
/// its deadline; the bare one would wait for TCP to give up, minutes later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_an_established_connection_gives_up_at_the_deadline() {
    use jitgate_core::names::Username;
    let cluster = Cluster::trust();
    let bounded = jitgate_store::open_with_timeout(&cluster.url(), STORE_TIMEOUT).await.unwrap();
    let bare = jitgate_store::PgStore::connect_with(&cluster.url(), STORE_TIMEOUT).await.unwrap();
    let alice = Username::parse("alice").unwrap();

    let mut tx = bounded.write().await.unwrap();
    tx.user(&alice).await.unwrap();
    cluster.freeze();
    let started = Instant::now();
    let err = tx.user(&alice).await.expect_err("no answer from a frozen server");
    let took = started.elapsed();
    eprintln!("frozen server, bounded store: {err} after {took:?}");
    assert!(matches!(err, jitgate_store::StoreError::Timeout { op: "user", .. }), "{err}");
    assert!(took < 2 * STORE_TIMEOUT, "gave up after {took:?}");
    // The transaction is spent: no call waits on its connection again.
    assert!(matches!(tx.commit().await, Err(jitgate_store::StoreError::Timeout { .. })));
    cluster.thaw();

    // Without the bound, the same call just waits (here until the server is thawed).
    let mut tx = jitgate_store::Store::write(&bare).await.unwrap();
    tx.user(&alice).await.unwrap();
    cluster.freeze();
    let waited = tokio::time::timeout(2 * STORE_TIMEOUT, tx.user(&alice)).await;
    cluster.thaw();
    assert!(waited.is_err(), "the bare store's call did not wait: {waited:?}");
    drop(tx);

    // And the bounded store works again once the server answers.
    eventually_within("the bounded store answers again", Duration::from_secs(10), || async {
        bounded.user(&alice).await.is_ok()
    })
    .await;
}

/// A transaction elsewhere that holds the audit head (a frozen peer instance, a stray `psql`)
/// costs writers a quick 503 and nothing more: each waits for the lock no longer than the store
/// deadline on the database's side too, so no connection stays stuck behind it, and reads and
/// `/readyz` keep answering however long the lock is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_lock_held_elsewhere_fails_writes_fast_and_leaves_reads_working() {
    use sqlx::Connection;
    let s = TestServer::spawn_pg(false).await;
    let url = s.settings().store_url.clone().unwrap();
    let alice = s.login("alice").await;
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();
    // Writers one after another for longer than the pool has connections to lose.
    let held = Instant::now();
    let mut refused = 0;
    while held.elapsed() < Duration::from_secs(20) {
        let asked = Instant::now();
        let err = alice
            .create_request(&request_body("prod-db", "read", None, "while the head is held"))
            .await
            .unwrap_err();
        assert_eq!((err.status(), err.code()), (Some(503), Some("store_unavailable")), "{err:?}");
        assert!(asked.elapsed() < STORE_TIMEOUT * 3, "refused after {:?}", asked.elapsed());
        refused += 1;
    }
    assert!(refused >= 6, "{refused} writes tried");
    // Reads and readiness still answer, 20 s into the hold.
    let asked = Instant::now();
    alice.whoami().await.expect("reads work while the head is held elsewhere");
    let (status, _) = Client::new(&s.url, None)
        .raw(reqwest::Method::GET, "/readyz", "text/plain", vec![])
        .await
        .unwrap();
    assert_eq!(status, 200, "ready: the store answers, only the head is busy");
    assert!(asked.elapsed() < STORE_TIMEOUT, "{:?}", asked.elapsed());
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    alice
        .create_request(&request_body("prod-db", "read", None, "after the hold"))
        .await
        .expect("writes work again once the lock is gone");
}
