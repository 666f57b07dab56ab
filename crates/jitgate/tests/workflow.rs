use crate::support::*;
use jitgate_client::ListParams;
use jitgate_core::grant::GrantStatus;
use jitgate_core::request::RequestStatus;
use jitgate_server::core::GrantEventKind;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_self_approval_refused_approve_grant_revoke_through_the_cli() {
    let s = TestServer::spawn(false).await;
    for u in ["alice", "bob", "dave"] {
        s.cli_login(u).await;
    }
    let out = s
        .cli(
            "alice",
            &[
                "--json",
                "request",
                "prod-db",
                "--role",
                "read",
                "--for",
                "30m",
                "--reason",
                "INC-231 slow queries",
            ],
            None,
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let req = out.json();
    let id = req["id"].as_str().unwrap().to_owned();
    assert_eq!(req["status"], "pending");
    assert_eq!(req["duration_secs"], 1800);

    // alice approving her own request: refused, 403, and it never counts.
    let own = s.cli("alice", &["--json", "approve", &id], None).await;
    assert_eq!(own.code, 1, "{own:?}");
    assert_eq!(own.error_code(), "self_approval_forbidden");
    let alice = s.login("alice").await;
    let err = alice.approve(&id, "").await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(403), Some("self_approval_forbidden")));
    assert_eq!(alice.request(&id).await.unwrap().request.status, RequestStatus::Pending);
    assert!(
        alice.request(&id).await.unwrap().reviews.is_empty(),
        "a refused review leaves no review"
    );
    // The refusal is audited as a denied authorization.
    let denied = s
        .admin
        .all_audit_events(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "review.approve" && e.outcome == "denied" && e.actor == "alice")
        .count();
    assert_eq!(denied, 2, "both refused self-approvals (CLI and API) are audited");

    // dave is an engineer, not an approver: to him the request does not exist.
    let dave = s.cli("dave", &["--json", "approve", &id], None).await;
    assert_eq!(dave.error_code(), "not_found");

    // bob sees it waiting for him, and approves.
    let waiting = s.cli("bob", &["--json", "requests", "--review"], None).await.json();
    assert_eq!(waiting.as_array().unwrap().len(), 1);
    let approved = s.cli("bob", &["--json", "approve", &id, "--comment", "go ahead"], None).await;
    assert_eq!(approved.code, 0, "{approved:?}");
    let detail = approved.json();
    assert_eq!(detail["request"]["status"], "approved");
    assert_eq!(detail["grant"]["status"], "active");
    assert_eq!(detail["reviews"][0]["stage"], 0);
    let grant_id = detail["grant"]["id"].as_str().unwrap().to_owned();

    // A review after the decision is refused.
    let late = s.admin.approve(&id, "").await.unwrap_err();
    assert!(
        matches!(late.code(), Some("request_not_pending") | Some("not_an_approver")),
        "{late:?}"
    );
    let carol = s.login("carol").await;
    assert_eq!(carol.approve(&id, "").await.unwrap_err().code(), Some("request_not_pending"));

    let grants = s.cli("alice", &["--json", "grants"], None).await.json();
    assert_eq!(grants[0]["id"], grant_id.as_str());
    assert_eq!(grants[0]["status"], "active");

    // dave may not revoke alice's grant (he may not even see it); alice may, with a reason.
    assert_eq!(
        s.login("dave").await.revoke(&grant_id, "mine now").await.unwrap_err().code(),
        Some("not_found")
    );
    let no_reason = s.cli("alice", &["--json", "revoke", &grant_id, "--reason", " "], None).await;
    assert_eq!(no_reason.error_code(), "revoke_reason_required");
    let mut events = s.core.grant_events.subscribe();
    let revoked = s
        .cli("alice", &["--json", "revoke", &grant_id, "--reason", "done early"], None)
        .await;
    assert_eq!(revoked.code, 0, "{revoked:?}");
    assert_eq!(revoked.json()["status"], "revoked");
    let ev = events.recv().await.unwrap();
    assert_eq!((ev.kind, ev.grant.id.as_str()), (GrantEventKind::Revoked, grant_id.as_str()));
    assert_eq!(alice.revoke(&grant_id, "again").await.unwrap_err().code(), Some("grant_not_live"));

    // The full history is on the request.
    let shown = s.cli("alice", &["--json", "show", &id], None).await.json();
    let history = shown["history"].as_array().unwrap();
    let done: Vec<&str> = history
        .iter()
        .filter(|e| e["outcome"] == "success")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        done,
        [
            "request.create",
            "review.approve",
            "request.approved",
            "grant.create",
            "grant.revoke"
        ]
    );
    let refused: Vec<&str> = history
        .iter()
        .filter(|e| e["outcome"] == "denied")
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(
        refused,
        ["alice", "alice", "dave", "dave"],
        "self-approvals, dave's approval and dave's revoke"
    );
    let text = s.cli("alice", &["show", &id], None).await;
    assert!(text.stdout.contains("owner: 1/1 (bob)"), "{text:?}");
}

#[tokio::test]
async fn two_stages_need_a_db_owner_and_a_security_approver_and_one_person_fills_one() {
    let s = TestServer::spawn(false).await;
    let alice = s.login("alice").await;
    let mut body = request_body("prod-db", "write", Some("1h"), "INC-9 fix data");
    body.ticket = Some("INC-9".into());
    let req = alice.create_request(&body).await.unwrap();

    // carol is in both db-owners and security: her approval fills one stage only.
    let carol = s.login("carol").await;
    let after_carol = carol.approve(&req.id, "ok").await.unwrap();
    assert_eq!(after_carol.request.status, RequestStatus::Pending);
    assert!(after_carol.grant.is_none());
    assert_eq!(carol.approve(&req.id, "again").await.unwrap_err().code(), Some("already_reviewed"));

    // bob (db-owners only) completes it: carol moves to the security seat.
    let bob = s.login("bob").await;
    let done = bob.approve(&req.id, "").await.unwrap();
    assert_eq!(done.request.status, RequestStatus::Approved);
    let seats: Vec<Vec<String>> = done
        .progress
        .stages
        .iter()
        .map(|st| st.approved_by.iter().map(|u| u.to_string()).collect())
        .collect();
    assert_eq!(seats, vec![vec!["bob".to_owned()], vec!["carol".to_owned()]]);
    assert_eq!(done.grant.unwrap().status, GrantStatus::Active);
}

#[tokio::test]
async fn two_db_owners_do_not_satisfy_the_security_stage() {
    let s = TestServer::spawn(false).await;
    // dave becomes a second plain db-owner for this test.
    s.admin.set_member("db-owners", "dave", true).await.unwrap();
    let alice = s.login("alice").await;
    let mut body = request_body("prod-db", "write", None, "INC-10 fix data");
    body.ticket = Some("INC-10".into());
    let req = alice.create_request(&body).await.unwrap();
    s.login("bob").await.approve(&req.id, "").await.unwrap();
    let after = s.login("dave").await.approve(&req.id, "").await.unwrap();
    assert_eq!(
        after.request.status,
        RequestStatus::Pending,
        "two db-owners, no security: still pending"
    );
    let done = s.login("sam").await.approve(&req.id, "").await.unwrap();
    assert_eq!(done.request.status, RequestStatus::Approved);
}

#[tokio::test]
async fn a_deny_by_an_approver_ends_the_request_and_only_the_requester_cancels() {
    let s = TestServer::spawn(false).await;
    let alice = s.login("alice").await;
    let r1 = alice
        .create_request(&request_body("prod-db", "read", None, "look at logs"))
        .await
        .unwrap();
    let denied = s.login("bob").await.deny(&r1.id, "use the replica").await.unwrap();
    assert_eq!(denied.request.status, RequestStatus::Denied);
    assert!(denied.grant.is_none());
    assert_eq!(
        s.login("carol").await.approve(&r1.id, "").await.unwrap_err().code(),
        Some("request_not_pending")
    );

    let r2 = alice
        .create_request(&request_body("prod-db", "read", None, "look at logs"))
        .await
        .unwrap();
    // bob is an approver, so he can see it, but he cannot cancel alice's request.
    assert_eq!(s.login("bob").await.cancel(&r2.id).await.unwrap_err().code(), Some("not_requester"));
    // dave cannot even see it.
    assert_eq!(s.login("dave").await.cancel(&r2.id).await.unwrap_err().status(), Some(404));
    assert_eq!(alice.cancel(&r2.id).await.unwrap().status, RequestStatus::Cancelled);
    assert_eq!(
        s.login("bob").await.approve(&r2.id, "").await.unwrap_err().code(),
        Some("request_not_pending")
    );
}

#[tokio::test]
async fn a_grant_expires_at_its_deadline_under_a_manual_clock() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    let req = alice
        .create_request(&request_body("prod-db", "read", Some("30m"), "INC-1 check"))
        .await
        .unwrap();
    let mut events = s.core.grant_events.subscribe();
    let grant = s.login("bob").await.approve(&req.id, "").await.unwrap().grant.unwrap();
    assert_eq!(events.recv().await.unwrap().kind, GrantEventKind::Created);
    assert_eq!(grant.ends_at, t0().saturating_add(Duration::from_secs(1800)));

    s.clock().advance(Duration::from_secs(1799));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(s.core.store.grant(&grant.id).await.unwrap().unwrap().status, GrantStatus::Active);

    s.clock().advance(Duration::from_secs(1));
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("expiry event")
        .unwrap();
    assert_eq!((ev.kind, ev.grant.id.as_str()), (GrantEventKind::Expired, grant.id.as_str()));
    assert_eq!(ev.at, grant.ends_at, "expired at the deadline, by the manual clock");
    let stored = s.core.store.grant(&grant.id).await.unwrap().unwrap();
    assert_eq!(stored.status, GrantStatus::Expired);
    assert_eq!(alice.grant(&grant.id).await.unwrap().status, GrantStatus::Expired);
    assert_eq!(
        alice.revoke(&grant.id, "too late").await.unwrap_err().code(),
        Some("grant_not_live")
    );
    let expiries = s
        .admin
        .all_audit_events(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "grant.expire" && e.target == grant.id)
        .count();
    assert_eq!(expiries, 1, "exactly one transition");
}

#[tokio::test]
async fn a_pending_request_expires_after_its_ttl() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    let req = alice
        .create_request(&request_body("prod-db", "read", None, "INC-2 check"))
        .await
        .unwrap();
    assert_eq!(req.expires_at, t0().saturating_add(Duration::from_secs(600)));
    s.clock().advance(Duration::from_secs(600));
    let store = s.core.store.clone();
    let id = req.id.clone();
    eventually("the engine expires the request", || {
        let store = store.clone();
        let id = id.clone();
        async move { store.request(&id).await.unwrap().unwrap().status == RequestStatus::Expired }
    })
    .await;
    assert_eq!(
        s.login("bob").await.approve(&req.id, "").await.unwrap_err().code(),
        Some("request_not_pending")
    );
    let ev = s
        .admin
        .all_audit_events(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "request.expire")
        .count();
    assert_eq!(ev, 1);
}

#[tokio::test]
async fn a_scheduled_grant_starts_later_and_an_extension_follows_the_first_grant() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    let bob = s.login("bob").await;
    let mut body = request_body("prod-db", "read", Some("30m"), "maintenance window");
    body.start_at = Some(t0().saturating_add(Duration::from_secs(300)));
    let req = alice.create_request(&body).await.unwrap();
    let grant = bob.approve(&req.id, "").await.unwrap().grant.unwrap();
    assert_eq!(grant.status, GrantStatus::Scheduled);
    let mut events = s.core.grant_events.subscribe();
    s.clock().advance(Duration::from_secs(300));
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv()).await.unwrap().unwrap();
    assert_eq!((ev.kind, ev.grant.id.as_str()), (GrantEventKind::Activated, grant.id.as_str()));

    // Extension: a new request linked to the grant; its lease begins where the first ends.
    let mut ext = request_body("prod-db", "read", Some("30m"), "need more time");
    ext.extends = Some(grant.id.clone());
    let ext_req = alice.create_request(&ext).await.unwrap();
    let ext_grant = bob.approve(&ext_req.id, "").await.unwrap().grant.unwrap();
    assert_eq!(ext_grant.starts_at, grant.ends_at);
    assert_eq!(ext_grant.status, GrantStatus::Scheduled);
    // Someone else cannot extend alice's grant.
    let mut theft = request_body("prod-db", "read", None, "borrow it");
    theft.extends = Some(grant.id.clone());
    assert_eq!(
        s.login("carol").await.create_request(&theft).await.unwrap_err().code(),
        Some("extension_mismatch")
    );
}

#[tokio::test]
async fn a_restart_in_the_middle_loses_nothing_and_expires_what_fell_due_while_down() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    let pending = alice
        .create_request(&request_body("prod-db", "read", Some("30m"), "still waiting"))
        .await
        .unwrap();
    let r = alice
        .create_request(&request_body("prod-db", "read", Some("10m"), "short one"))
        .await
        .unwrap();
    let grant = s.login("bob").await.approve(&r.id, "").await.unwrap().grant.unwrap();
    let head_before = s.audit_head().await;
    let (settings, clock, dir) = s.stop().await;

    // Down for five minutes past the grant's end; the pending request (10m TTL) is still due later.
    clock.as_ref().unwrap().advance(Duration::from_secs(15 * 60));
    let s = TestServer::restart(settings, clock, dir).await;
    let store = s.core.store.clone();
    let gid = grant.id.clone();
    eventually("the overdue grant is expired at start-up", || {
        let store = store.clone();
        let gid = gid.clone();
        async move { store.grant(&gid).await.unwrap().unwrap().status == GrantStatus::Expired }
    })
    .await;
    let alice = s.login("alice").await;
    let mine = alice.requests(&ListParams::default()).await.unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(
        alice.request(&pending.id).await.unwrap().request.status,
        RequestStatus::Expired,
        "10m TTL passed while down"
    );
    assert!(s.audit_head().await > head_before);
    let verify = s.admin.audit_verify().await.unwrap();
    assert!(verify.ok, "{verify:?}");
    assert!(verify.report.unwrap().checkpoints >= 2, "a checkpoint at shutdown and at start");
}

#[tokio::test]
async fn the_workflow_runs_on_postgresql_too() {
    let s = TestServer::spawn_pg(true).await;
    assert_eq!(s.core.store.backend(), "postgres");
    let alice = s.login("alice").await;
    let req = alice
        .create_request(&request_body("prod-db", "read", Some("15m"), "INC-77 on pg"))
        .await
        .unwrap();
    assert_eq!(
        alice.approve(&req.id, "").await.unwrap_err().code(),
        Some("self_approval_forbidden")
    );
    let mut events = s.core.grant_events.subscribe();
    let grant = s.login("bob").await.approve(&req.id, "").await.unwrap().grant.unwrap();
    assert_eq!(events.recv().await.unwrap().kind, GrantEventKind::Created);
    s.clock().advance(Duration::from_secs(15 * 60));
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv()).await.unwrap().unwrap();
    assert_eq!((ev.kind, ev.grant.id), (GrantEventKind::Expired, grant.id));
    assert!(s.admin.audit_verify().await.unwrap().ok);
}

#[tokio::test]
async fn without_its_store_the_server_fails_closed() {
    let url = jitgate_store::testing::fresh_pg_database().await.unwrap();
    let s = TestServer::spawn_on(Backend::Postgres(url.clone()), false).await;
    let alice = s.login("alice").await;
    let bob = s.login("bob").await;
    let req = alice
        .create_request(&request_body("prod-db", "read", None, "before the outage"))
        .await
        .unwrap();

    // The database goes away under the running server.
    let name = url.rsplit('/').next().unwrap().to_owned();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&jitgate_store::testing::pg_admin_url())
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();

    let err = bob.approve(&req.id, "").await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(503), Some("store_unavailable")),
        "no approval, no grant"
    );
    let err = alice
        .create_request(&request_body("prod-db", "read", None, "during the outage"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503));
    // Readiness is the background probe's last outcome: it follows within a probe or two.
    let anon = jitgate_client::Client::new(&s.url, None);
    crate::support::eventually_within("not ready without a store", Duration::from_secs(10), || async {
        anon.raw(reqwest::Method::GET, "/readyz", "text/plain", vec![]).await.unwrap().0 == 503
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgresql_share_deadlines_and_expire_each_grant_once() {
    let a = TestServer::spawn_pg(true).await;
    // A second instance on the same database and the same (manual) clock.
    let (settings_b, clock) = (a.settings_for_another_instance(), a.clock().clone());
    let b = jitgate_server::Application::build(settings_b, Some(std::sync::Arc::new(clock.clone())), None)
        .await
        .unwrap();
    let b_core = b.core();
    let b_stop = b.stop_handle();
    let b_task = tokio::spawn(b.run_until_stopped());
    let mut b_events = b_core.grant_events.subscribe();

    // The grant is made through A; B hears of its deadline only through the store.
    let alice = a.login("alice").await;
    let req = alice
        .create_request(&request_body("prod-db", "read", Some("20m"), "two instances"))
        .await
        .unwrap();
    let grant = a.login("bob").await.approve(&req.id, "").await.unwrap().grant.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, _, _) = a.stop().await;

    clock.advance(Duration::from_secs(20 * 60));
    let ev = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let ev = b_events.recv().await.unwrap();
            if ev.kind == GrantEventKind::Expired {
                return ev;
            }
        }
    })
    .await
    .expect("B expires the grant A made, well before its 60 s safety re-read");
    assert_eq!(ev.grant.id, grant.id);
    let expiries = b_core
        .store
        .audit_events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "grant.expire")
        .count();
    assert_eq!(expiries, 1);
    b_stop.stop();
    b_task.await.unwrap().unwrap();
}
