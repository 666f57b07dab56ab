//! One behaviour, two backends: every check here runs against SQLite and against a fresh
//! PostgreSQL database (through [`jitgate_store::Bounded`], as the server opens it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jitgate_core::audit::{sign_checkpoint, ChainVerifier, CheckpointLink, NewEvent, Outcome};
use jitgate_core::grant::{Grant, GrantStatus};
use jitgate_core::names::{GroupName, ResourceName, RoleName, Username};
use jitgate_core::policy::Resource;
use jitgate_core::request::{AccessRequest, Decision, RequestStatus, Review};
use jitgate_core::Timestamp;
use jitgate_store::prelude::*;
use jitgate_store::{
    testing, AttemptRecord, ChallengeRecord, GatewaySession, GrantFilter, KillTarget, NotificationRecord, PasskeyRecord, RequestFilter,
    ResourceCredentialRecord, SessionKill, SessionRecord, Source, StoreError, TotpRecord, UserRecord,
};
use serde_json::json;
use std::collections::BTreeSet;

fn u(n: &str) -> Username {
    Username::parse(n).unwrap()
}
fn g(n: &str) -> GroupName {
    GroupName::parse(n).unwrap()
}
fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn user(n: &str) -> UserRecord {
    UserRecord {
        name: u(n),
        display_name: n.to_uppercase(),
        password_hash: Some("$argon2id$x".into()),
        is_admin: false,
        disabled: false,
        created_at: t(1),
    }
}

fn resource() -> Resource {
    toml::from_str(
        r#"
        name = "prod-db"
        [roles.read]
        requesters = ["engineers"]
        max_duration = "1h"
        stages = [{ groups = ["db-owners"], min_approvals = 1 }]
        "#,
    )
    .unwrap()
}

fn request(id: &str, requester: &str, created: i64, expires: i64) -> AccessRequest {
    AccessRequest {
        id: id.into(),
        requester: u(requester),
        resource: ResourceName::parse("prod-db").unwrap(),
        role: RoleName::parse("read").unwrap(),
        reason: "INC-1".into(),
        ticket: Some("INC-1".into()),
        duration_secs: 1800,
        start_at: None,
        status: RequestStatus::Pending,
        created_at: t(created),
        expires_at: t(expires),
        decided_at: None,
        extends_grant: None,
        mfa_method: None,
        break_glass: false,
        acknowledged_by: None,
        acknowledged_at: None,
    }
}

fn ev(label: &str) -> NewEvent {
    // The label rides in the target and the details: an event's action must be a real one.
    NewEvent::new(
        "tester",
        jitgate_core::actions::POLICY_RELOAD,
        label,
        Outcome::Success,
        json!({"k": label}),
    )
}

async fn users_groups_and_sessions(store: &dyn Store) {
    let mut tx = store.write().await.unwrap();
    tx.insert_user(&user("alice")).await.unwrap();
    tx.insert_user(&user("bob")).await.unwrap();
    assert!(matches!(tx.insert_user(&user("bob")).await, Err(StoreError::Conflict(_))));
    assert!(matches!(tx.commit().await, Err(StoreError::Aborted)));
    assert!(
        store.user(&u("alice")).await.unwrap().is_none(),
        "nothing of the aborted transaction is kept"
    );
    let mut tx = store.write().await.unwrap();
    tx.insert_user(&user("alice")).await.unwrap();
    tx.insert_user(&user("bob")).await.unwrap();
    assert!(tx.set_member(&g("db-owners"), &u("bob"), true, Source::Config).await.unwrap());
    assert!(
        !tx.set_member(&g("db-owners"), &u("bob"), true, Source::Config).await.unwrap(),
        "second add is a no-op"
    );
    tx.set_member(&g("engineers"), &u("alice"), true, Source::Api).await.unwrap();
    tx.ensure_group(&g("security"), Source::Api).await.unwrap();
    assert_eq!(tx.count_users().await.unwrap(), 2);
    tx.insert_session(&SessionRecord {
        token_hash: "h1".into(),
        user: u("alice"),
        created_at: t(1),
        last_seen_at: t(1),
        expires_at: t(100),
        mfa_at: None,
        mfa_method: None,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();

    assert_eq!(store.user(&u("alice")).await.unwrap().unwrap(), user("alice"));
    assert!(store.user(&u("carol")).await.unwrap().is_none());
    assert_eq!(store.users().await.unwrap().len(), 2);
    assert_eq!(
        store.user_groups(&u("bob")).await.unwrap().into_iter().collect::<Vec<_>>(),
        vec![g("db-owners")]
    );
    let groups = store.groups().await.unwrap();
    assert_eq!(groups.len(), 3);
    assert!(groups[&g("security")].is_empty());

    let mut tx = store.write().await.unwrap();
    tx.clear_source(Source::Config).await.unwrap();
    let mut alice = user("alice");
    alice.disabled = true;
    tx.update_user(&alice).await.unwrap();
    tx.touch_session("h1", t(50)).await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.user_groups(&u("bob")).await.unwrap().is_empty(), "config memberships cleared");
    assert!(store.groups().await.unwrap().contains_key(&g("engineers")), "API membership kept");
    assert!(store.user(&u("alice")).await.unwrap().unwrap().disabled);
    assert_eq!(store.session("h1").await.unwrap().unwrap().last_seen_at, t(50));
    let (session, owner) = store.session_user("h1").await.unwrap().unwrap();
    assert_eq!(
        (session.user.as_str(), owner.name.as_str(), owner.disabled),
        ("alice", "alice", true)
    );
    assert!(store.session_user("nope").await.unwrap().is_none());

    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.delete_sessions_of(&u("alice")).await.unwrap(), 1);
    assert!(!tx.delete_session("h1").await.unwrap());
    tx.commit().await.unwrap();
    assert!(store.session("h1").await.unwrap().is_none());
}

async fn resources(store: &dyn Store) {
    let mut tx = store.write().await.unwrap();
    tx.put_resource(&resource(), Source::Config, t(1)).await.unwrap();
    tx.put_resource(&resource(), Source::Config, t(2)).await.unwrap();
    tx.commit().await.unwrap();
    let name = ResourceName::parse("prod-db").unwrap();
    assert_eq!(store.resource(&name).await.unwrap().unwrap(), resource());
    assert_eq!(store.resources().await.unwrap().len(), 1);
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.resources_from(Source::Config).await.unwrap(), vec![name.clone()]);
    assert!(tx.resources_from(Source::Api).await.unwrap().is_empty());
    assert_eq!(tx.resource(&name).await.unwrap(), Some(resource()));
    assert!(tx.delete_resource(&name).await.unwrap());
    assert_eq!(tx.resource(&name).await.unwrap(), None, "the transaction sees its own removal");
    tx.commit().await.unwrap();
    assert!(store.resource(&name).await.unwrap().is_none());

    // Sealed upstream passwords: set, replaced, kept out by a rollback, removed; one per role
    // login beside the service login's (no role).
    let (read, write): (RoleName, RoleName) = ("read".parse().unwrap(), "write".parse().unwrap());
    let credential = |role: Option<&RoleName>, version: u32, sealed: &str, at: i64| ResourceCredentialRecord {
        resource: name.clone(),
        role: role.cloned(),
        key_version: version,
        sealed_password: sealed.into(),
        updated_at: t(at),
        updated_by: u("root"),
    };
    assert!(store.resource_credential(&name, None).await.unwrap().is_none());
    let mut tx = store.write().await.unwrap();
    tx.put_resource_credential(&credential(None, 1, "sealed-1", 3)).await.unwrap();
    tx.put_resource_credential(&credential(Some(&read), 1, "sealed-read", 3))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store.resource_credential(&name, None).await.unwrap(),
        Some(credential(None, 1, "sealed-1", 3))
    );
    assert_eq!(
        store.resource_credential(&name, Some(&read)).await.unwrap(),
        Some(credential(Some(&read), 1, "sealed-read", 3))
    );
    assert!(store.resource_credential(&name, Some(&write)).await.unwrap().is_none());
    let mut tx = store.write().await.unwrap();
    tx.put_resource_credential(&credential(None, 2, "sealed-2", 4)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store.resource_credential(&name, None).await.unwrap(),
        Some(credential(None, 2, "sealed-2", 4))
    );
    assert_eq!(
        store.resource_credential(&name, Some(&read)).await.unwrap(),
        Some(credential(Some(&read), 1, "sealed-read", 3)),
        "replacing one login's password leaves the others"
    );
    let mut tx = store.write().await.unwrap();
    assert!(tx.delete_resource_credential(&name, None).await.unwrap());
    drop(tx);
    assert!(
        store.resource_credential(&name, None).await.unwrap().is_some(),
        "a dropped transaction changes nothing"
    );
    let mut tx = store.write().await.unwrap();
    assert!(tx.delete_resource_credential(&name, None).await.unwrap());
    assert!(!tx.delete_resource_credential(&name, None).await.unwrap());
    tx.commit().await.unwrap();
    assert!(store.resource_credential(&name, None).await.unwrap().is_none());
    assert!(store.resource_credential(&name, Some(&read)).await.unwrap().is_some());
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.delete_resource_credentials(&name).await.unwrap(), 1, "all of the resource's");
    tx.commit().await.unwrap();
    assert!(store.resource_credential(&name, Some(&read)).await.unwrap().is_none());
}

async fn requests_reviews_and_grants(store: &dyn Store) {
    let mut tx = store.write().await.unwrap();
    tx.insert_request(&request("r1", "alice", 10, 1000)).await.unwrap();
    tx.insert_request(&request("r2", "carol", 20, 500)).await.unwrap();
    tx.insert_request(&request("r3", "alice", 30, 2000)).await.unwrap();
    let review = Review {
        request_id: "r1".into(),
        reviewer: jitgate_core::request::Reviewer::Person(u("bob")),
        decision: Decision::Approve,
        comment: "ok".into(),
        stage: Some(0),
        mfa_method: None,
        created_at: t(40),
    };
    tx.insert_review(&review).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.write().await.unwrap();
    // Refused at the call (SQLite) or, when the insert is held back for the next statement
    // (PostgreSQL), at the commit it rides on.
    match tx.insert_review(&review).await {
        Err(StoreError::Conflict(_)) => assert!(
            matches!(tx.commit().await, Err(StoreError::Aborted)),
            "a failed statement aborts the transaction on both backends"
        ),
        Ok(()) => assert!(
            matches!(tx.commit().await, Err(StoreError::Conflict(_))),
            "one review per person, refused at the latest by the commit"
        ),
        Err(e) => panic!("a second review by the same person: {e}"),
    }
    let mut tx = store.write().await.unwrap();
    let refused = match tx.insert_review(&review).await {
        Ok(()) => tx.reviews("r1").await.map(drop),
        e => e,
    };
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "one review per person, refused at the latest by the change's next statement"
    );
    drop(tx);
    assert_eq!(
        store.reviews("r1").await.unwrap().len(),
        1,
        "nothing of a refused change is written"
    );

    let mut tx = store.write().await.unwrap();
    tx.set_request_status("r1", RequestStatus::Approved, t(40)).await.unwrap();
    let r1 = tx.request("r1").await.unwrap().unwrap();
    let grant = Grant::from_request("g1".into(), &r1, None, t(40));
    tx.insert_grant(&grant).await.unwrap();
    let mut scheduled = Grant::from_request("g2".into(), &request("r3", "alice", 30, 2000), None, t(40));
    scheduled.starts_at = t(100);
    scheduled.ends_at = t(200);
    scheduled.status = GrantStatus::Scheduled;
    tx.insert_grant(&scheduled).await.unwrap();
    assert_eq!(tx.reviews("r1").await.unwrap(), vec![review.clone()]);
    tx.commit().await.unwrap();

    let r1 = store.request("r1").await.unwrap().unwrap();
    assert_eq!(r1.status, RequestStatus::Approved);
    assert_eq!(r1.decided_at, Some(t(40)));
    assert_eq!(store.reviews("r1").await.unwrap(), vec![review]);
    let mine = store
        .requests(&RequestFilter {
            requester: Some(u("alice")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        mine.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["r3", "r1"],
        "newest first"
    );
    let pending = store
        .requests(&RequestFilter {
            status: Some(RequestStatus::Pending),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(
        store
            .requests(&RequestFilter {
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.grant("g1").await.unwrap().unwrap(), grant);
    assert_eq!(store.grant_for_request("r1").await.unwrap().unwrap().id, "g1");
    let live = store
        .grants(&GrantFilter {
            user: Some(u("alice")),
            status: Some(GrantStatus::Active),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(live.len(), 1);

    // Deadlines: r2 expires at 500, g2 starts at 100, r1's grant ends at 40 + 30 min.
    assert_eq!(store.next_deadline().await.unwrap(), Some(t(100)));
    let mut tx = store.write().await.unwrap();
    assert!(tx.due_grants(t(99), 10).await.unwrap().is_empty());
    let due = tx.due_grants(t(100), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let mut g2 = due[0].clone();
    g2.status = GrantStatus::Active;
    tx.update_grant(&g2).await.unwrap();
    assert!(tx.due_grants(t(100), 10).await.unwrap().is_empty(), "the deadline moved to its end");
    assert_eq!(tx.due_grants(t(200), 10).await.unwrap().len(), 1);
    assert_eq!(
        tx.due_requests(t(500), 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id.clone())
            .collect::<Vec<_>>(),
        vec!["r2"]
    );
    tx.set_grants_status(&["g2".to_owned()], GrantStatus::Expired).await.unwrap();
    tx.expire_requests(&["r2".to_owned(), "r1".to_owned()], t(500)).await.unwrap();
    tx.set_grants_status(&[], GrantStatus::Active).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.grant("g2").await.unwrap().unwrap().status, GrantStatus::Expired);
    assert_eq!(store.request("r2").await.unwrap().unwrap().status, RequestStatus::Expired);
    assert_eq!(
        store.request("r1").await.unwrap().unwrap().status,
        RequestStatus::Approved,
        "only pending requests expire"
    );
    assert_eq!(store.next_deadline().await.unwrap(), Some(t(2000)));
}

async fn audit_chain(store: &dyn Store) {
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.head().seq, 0);
    tx.append_audit(ev("one"), t(1)).await.unwrap();
    tx.append_audit(ev("two"), t(2)).await.unwrap();
    let committed = tx.commit().await.unwrap();
    assert_eq!(committed.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);

    // A rolled-back transaction leaves no event and does not move the head.
    let mut tx = store.write().await.unwrap();
    tx.append_audit(ev("lost"), t(3)).await.unwrap();
    drop(tx);
    assert_eq!(store.audit_head().await.unwrap().seq, 2);

    let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.head().hash, committed[1].hash);
    tx.append_audit(ev("three"), t(4)).await.unwrap();
    assert_eq!(tx.head().seq, 3);
    assert_eq!(tx.last_checkpoint().await.unwrap(), None);
    let first = sign_checkpoint(&key, tx.head(), 5, CheckpointLink::genesis(), None);
    tx.insert_checkpoint(&first).await.unwrap();
    tx.commit().await.unwrap();
    // A second checkpoint, chained to the first and announcing a key, comes back as written.
    let mut tx = store.write().await.unwrap();
    tx.append_audit(ev("four"), t(6)).await.unwrap();
    let last = tx.last_checkpoint().await.unwrap().unwrap();
    assert_eq!(last, first);
    let next = ed25519_dalek::SigningKey::from_bytes(&[4u8; 32]).verifying_key();
    let second = sign_checkpoint(&key, tx.head(), 7, CheckpointLink::of(&last), Some(&next));
    tx.insert_checkpoint(&second).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.audit_checkpoints().await.unwrap(), vec![first.clone(), second.clone()]);
    assert_eq!(store.audit_checkpoints_after(3, 10).await.unwrap(), vec![second]);

    let events = store.audit_events(0, 100).await.unwrap();
    assert_eq!(events.len(), 4);
    let rows = store.audit_rows(0, 100).await.unwrap();
    assert_eq!(
        rows,
        events.iter().map(jitgate_core::audit::StoredEvent::from_event).collect::<Vec<_>>(),
        "details stored as canonical text"
    );
    assert_eq!(store.audit_rows(1, 1).await.unwrap()[0].seq, 2);
    assert_eq!(store.audit_events(2, 100).await.unwrap().len(), 2);
    assert_eq!(
        store
            .audit_events_for(&["two".to_owned(), "four".to_owned(), "nothing".to_owned(), "lost".to_owned()])
            .await
            .unwrap()
            .len(),
        2,
        "the events of these targets, and none of a rolled-back change"
    );
    assert!(store.audit_events_for(&["nothing".to_owned()]).await.unwrap().is_empty());
    let mut v = ChainVerifier::new(vec![key.verifying_key()], store.audit_checkpoints().await.unwrap());
    for e in &events {
        v.push(e).unwrap();
    }
    let report = v.finish(Some(&store.audit_head().await.unwrap())).unwrap();
    assert_eq!(report.last_seq, 4);
    assert_eq!(report.checkpoints, 2);
}

async fn writers_are_serialized(store: std::sync::Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut committed = 0;
            for j in 0..100 {
                let mut tx = s.write().await.unwrap();
                tx.append_audit(ev(&format!("w{i}-{j}")), t(10)).await.unwrap();
                match j % 10 {
                    // Rolled back: nothing of it may remain, and the next writer must not
                    // start from its head.
                    3 => drop(tx),
                    // Abandoned halfway through its commit, as when a client goes away.
                    7 => {
                        let commit = tx.commit();
                        let _ = tokio::time::timeout(std::time::Duration::from_micros(1), commit).await;
                    }
                    _ => {
                        tx.commit().await.unwrap();
                        committed += 1;
                    }
                }
            }
            committed
        }));
    }
    let mut committed = 0;
    for t in tasks {
        committed += t.await.unwrap();
    }
    let events = store.audit_events(0, 10_000).await.unwrap();
    assert!(
        events.len() >= committed && events.len() <= committed + 8 * 10,
        "{} events, {committed} sure commits",
        events.len()
    );
    // Whatever happened to the abandoned commits, writing goes on from the true head.
    let mut tx = store.write().await.unwrap();
    tx.append_audit(ev("after"), t(11)).await.unwrap();
    tx.commit().await.unwrap();
    let events = store.audit_events(0, 10_000).await.unwrap();
    let mut v = ChainVerifier::new(vec![], vec![]);
    for e in &events {
        v.push(e).unwrap();
    }
    v.finish(Some(&store.audit_head().await.unwrap())).unwrap();
}

async fn meta(store: &dyn Store) {
    let mut tx = store.write().await.unwrap();
    tx.set_meta("k", "v1").await.unwrap();
    tx.set_meta("k", "v2").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.meta("k").await.unwrap().as_deref(), Some("v2"));
    let mut tx = store.write().await.unwrap();
    tx.delete_meta("k").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.meta("k").await.unwrap(), None);
    store.ping().await.unwrap();
}

async fn second_factors(store: &dyn Store) {
    let alice = u("alice");
    let mut tx = store.write().await.unwrap();
    tx.insert_user(&user("alice")).await.unwrap();
    tx.insert_user(&user("bob")).await.unwrap();
    tx.insert_session(&SessionRecord {
        token_hash: "s1".into(),
        user: alice.clone(),
        created_at: t(1),
        last_seen_at: t(1),
        expires_at: t(100),
        mfa_at: None,
        mfa_method: None,
    })
    .await
    .unwrap();
    tx.set_session_mfa("s1", t(5), jitgate_core::factor::Factor::Totp).await.unwrap();
    let totp = TotpRecord {
        user: alice.clone(),
        key_version: 1,
        sealed_seed: "sealed".into(),
        algorithm: "SHA1".into(),
        digits: 6,
        period_secs: 30,
        confirmed_at: None,
        last_step: None,
        created_at: t(1),
    };
    tx.put_totp(&totp).await.unwrap();
    assert!(tx.use_totp_step(&alice, 10, Some(t(2))).await.unwrap(), "first use of a step");
    assert!(!tx.use_totp_step(&alice, 10, None).await.unwrap(), "the same step again");
    assert!(!tx.use_totp_step(&alice, 9, None).await.unwrap(), "an older step");
    assert!(tx.use_totp_step(&alice, 11, Some(t(3))).await.unwrap());
    let key = PasskeyRecord {
        credential_id: "cred-1".into(),
        user: alice.clone(),
        name: "laptop".into(),
        passkey_json: "{}".into(),
        created_at: t(1),
        last_used_at: None,
    };
    tx.insert_passkey(&key).await.unwrap();
    tx.update_passkey("cred-1", Some("{\"c\":1}"), t(4)).await.unwrap();
    tx.replace_recovery_codes(&alice, &["h1".into(), "h2".into()], t(1)).await.unwrap();
    assert!(tx.use_recovery_code(&alice, "h1", t(2)).await.unwrap());
    assert!(!tx.use_recovery_code(&alice, "h1", t(3)).await.unwrap(), "a code works once");
    assert!(
        !tx.use_recovery_code(&u("bob"), "h2", t(3)).await.unwrap(),
        "not someone else's code"
    );
    let challenge = ChallengeRecord {
        id: "ch1".into(),
        user: alice.clone(),
        purpose: jitgate_core::factor::Ceremony::Login,
        state: "{}".into(),
        expires_at: t(50),
    };
    tx.insert_challenge(&challenge, t(1)).await.unwrap();
    tx.put_attempts(&AttemptRecord {
        username: "nobody".into(),
        failures: 3,
        last_failure_at: t(7),
        locked_until: Some(t(70)),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let session = store.session("s1").await.unwrap().unwrap();
    assert_eq!(
        (session.mfa_at, session.mfa_method.map(jitgate_core::factor::Factor::as_str)),
        (Some(t(5)), Some("totp"))
    );
    let stored = store.totp(&alice).await.unwrap().unwrap();
    assert_eq!(
        (stored.last_step, stored.confirmed_at),
        (Some(11), Some(t(2))),
        "confirmation kept from the first use"
    );
    let keys = store.passkeys(&alice).await.unwrap();
    assert_eq!(
        (keys.len(), keys[0].passkey_json.as_str(), keys[0].last_used_at),
        (1, "{\"c\":1}", Some(t(4)))
    );
    assert_eq!(store.recovery_codes_left(&alice).await.unwrap(), 1);
    assert_eq!(store.challenge("ch1").await.unwrap(), Some(challenge.clone()));
    let a = store.attempts("nobody").await.unwrap().unwrap();
    assert_eq!((a.failures, a.locked_until), (3, Some(t(70))));

    // A credential id belongs to one user: registering it for bob is a conflict.
    let mut tx = store.write().await.unwrap();
    let err = tx
        .insert_passkey(&PasskeyRecord {
            user: u("bob"),
            ..key.clone()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    drop(tx);

    // A challenge is taken once; expired ones are swept when new ones arrive.
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.take_challenge("ch1").await.unwrap(), Some(challenge.clone()));
    assert_eq!(tx.take_challenge("ch1").await.unwrap(), None);
    tx.insert_challenge(
        &ChallengeRecord {
            id: "old".into(),
            expires_at: t(10),
            ..challenge.clone()
        },
        t(1),
    )
    .await
    .unwrap();
    tx.insert_challenge(
        &ChallengeRecord {
            id: "new".into(),
            expires_at: t(90),
            ..challenge.clone()
        },
        t(20),
    )
    .await
    .unwrap();
    assert!(tx.clear_attempts("nobody").await.unwrap());
    assert!(tx.delete_totp(&alice).await.unwrap());
    assert!(tx.delete_passkey(&alice, "cred-1").await.unwrap());
    tx.replace_recovery_codes(&alice, &["h3".into()], t(30)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.challenge("old").await.unwrap(), None);
    assert!(store.challenge("new").await.unwrap().is_some());
    assert_eq!(store.attempts("nobody").await.unwrap(), None);
    assert_eq!(store.totp(&alice).await.unwrap(), None);
    assert!(store.passkeys(&alice).await.unwrap().is_empty());
    assert_eq!(store.recovery_codes_left(&alice).await.unwrap(), 1, "a new set voids the old one");
}

async fn break_glass_and_notifications(store: &dyn Store) {
    let mut glass = request("bg1", "alice", 10, 1000);
    glass.break_glass = true;
    glass.status = RequestStatus::Approved;
    let mut tx = store.write().await.unwrap();
    tx.insert_request(&glass).await.unwrap();
    tx.insert_request(&request("r2", "alice", 11, 1000)).await.unwrap();
    tx.insert_notification(&NotificationRecord {
        id: "n1".into(),
        recipient: u("bob"),
        kind: "break_glass".into(),
        subject: "bg1".into(),
        message: "alice broke glass".into(),
        created_at: t(10),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let waiting = store.requests_awaiting_ack(10).await.unwrap();
    assert_eq!(waiting.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["bg1"]);
    assert!(waiting[0].break_glass);
    let inbox = store.notifications(&u("bob"), 10).await.unwrap();
    assert_eq!((inbox.len(), inbox[0].subject.as_str()), (1, "bg1"));
    assert!(store.notifications(&u("carol"), 10).await.unwrap().is_empty());

    let mut tx = store.write().await.unwrap();
    assert!(
        !tx.acknowledge_request("r2", &u("bob"), t(20)).await.unwrap(),
        "not a break-glass request"
    );
    assert!(tx.acknowledge_request("bg1", &u("bob"), t(20)).await.unwrap());
    assert!(!tx.acknowledge_request("bg1", &u("carol"), t(21)).await.unwrap(), "once");
    tx.commit().await.unwrap();
    let r = store.request("bg1").await.unwrap().unwrap();
    assert_eq!((r.acknowledged_by, r.acknowledged_at), (Some(u("bob")), Some(t(20))));
    assert!(store.requests_awaiting_ack(10).await.unwrap().is_empty());
}

fn db_session(id: &str) -> GatewaySession {
    GatewaySession {
        id: id.into(),
        grant_id: "g1".into(),
        user: u("alice"),
        resource: ResourceName::parse("prod-db").unwrap(),
        role: "read".parse().unwrap(),
        peer: "127.0.0.1:5000".into(),
        started_at: t(10),
        ended_at: None,
        end_reason: None,
        bytes_in: 0,
        bytes_out: 0,
        statements: 0,
    }
}

async fn session_kills(store: &dyn Store) {
    let mut tx = store.write().await.unwrap();
    for id in ["s1", "s2", "s3"] {
        tx.insert_db_session(&db_session(id)).await.unwrap();
    }
    tx.commit().await.unwrap();
    // A live session carries on onto another grant; an unknown one does not.
    let mut tx = store.write().await.unwrap();
    assert!(tx.continue_db_session("s3", "g2").await.unwrap());
    assert!(!tx.continue_db_session("nope", "g2").await.unwrap());
    tx.commit().await.unwrap();
    let live = store.db_sessions(None, true, 10).await.unwrap();
    assert_eq!(live.iter().find(|s| s.id == "s3").unwrap().grant_id, "g2");
    let mut feed = store.session_kills();
    assert_eq!(
        feed.is_some(),
        store.backend() == "postgres",
        "only a shared store sends kills to other instances"
    );
    let kill = |target: KillTarget| SessionKill {
        target,
        reason: "session ended by an administrator".into(),
    };
    let ids: Vec<String> = ["s1", "s2", "s3", "nope"].map(String::from).to_vec();

    // A kill rolled back is neither recorded nor sent.
    let mut tx = store.write().await.unwrap();
    assert!(tx.kill_db_session("s1", "session ended by an administrator").await.unwrap());
    tx.send_session_kill(&kill(KillTarget::Session("s1".into()))).await.unwrap();
    drop(tx);
    assert!(store.killed_db_sessions(&ids).await.unwrap().is_empty());

    // Committed: recorded, and sent in order.
    let mut tx = store.write().await.unwrap();
    assert!(tx.kill_db_session("s2", "session ended by an administrator").await.unwrap());
    assert!(!tx.kill_db_session("nope", "x").await.unwrap(), "no such session");
    tx.send_session_kill(&kill(KillTarget::Session("s2".into()))).await.unwrap();
    tx.send_session_kill(&kill(KillTarget::Grant("g1".into()))).await.unwrap();
    let mut ended = db_session("s3");
    ended.ended_at = Some(t(20));
    ended.end_reason = Some("client_left".into());
    tx.end_db_session(&ended).await.unwrap();
    assert!(!tx.kill_db_session("s3", "x").await.unwrap(), "an ended session is not live");
    tx.commit().await.unwrap();
    assert_eq!(
        store.killed_db_sessions(&ids).await.unwrap(),
        vec![("s2".to_owned(), "session ended by an administrator".to_owned())]
    );
    assert!(store.killed_db_sessions(&[]).await.unwrap().is_empty());
    if let Some(feed) = feed.as_mut() {
        assert!(*feed.listening.borrow());
        let mut got = Vec::new();
        for _ in 0..2 {
            let k = tokio::time::timeout(std::time::Duration::from_secs(5), feed.kills.recv()).await;
            got.push(k.expect("the kill arrives").unwrap());
        }
        assert_eq!(
            got,
            [kill(KillTarget::Session("s2".into())), kill(KillTarget::Grant("g1".into()))],
            "the rolled-back kill never comes"
        );
    }
}

/// The roles a person holds are read past any number of grants of the same role (a busy
/// account renews one role many times), and only live ones count.
async fn live_roles(store: &dyn Store) {
    let mut tx = store.write().await.unwrap();
    let mut grants = vec![
        ("a-db", "write", 5_000, "alice"),
        ("a-db", "read", 50, "alice"),    // ended before now
        ("c-db", "read", 5_000, "carol"), // someone else's
        ("a-db", "admin", 5_000, "alice"),
        ("zz-db", "read", 5_000, "alice"),
    ];
    grants.extend(std::iter::repeat_n(("b-db", "read", 6_000, "alice"), 60));
    for (i, (res, role, ends, user)) in grants.into_iter().enumerate() {
        // One grant per request.
        let r = request(&format!("r{i}"), user, 10, 1000);
        tx.insert_request(&r).await.unwrap();
        let mut g = Grant::from_request(format!("g{i}"), &r, None, t(10));
        g.resource = ResourceName::parse(res).unwrap();
        g.role = RoleName::parse(role).unwrap();
        g.user = u(user);
        g.ends_at = t(ends);
        tx.insert_grant(&g).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut held = store.active_roles_of(&u("alice"), t(100)).await.unwrap();
    held.sort();
    assert_eq!(held, vec!["a-db/admin", "a-db/write", "b-db/read", "zz-db/read"]);
    assert!(store.active_roles_of(&u("alice"), t(5_500)).await.unwrap() == vec!["b-db/read"]);
    assert!(store.active_roles_of(&u("dave"), t(100)).await.unwrap().is_empty());

    // A review's first read carries the reviewer's live roles, the same as above.
    let facts = store.request_for_review("r2", &u("alice"), t(100)).await.unwrap().unwrap();
    assert_eq!(facts.request.requester.as_str(), "carol");
    let mut roles = facts.reviewer_live_roles;
    roles.sort();
    assert_eq!(roles, held);
    let later = store.request_for_review("r2", &u("alice"), t(5_500)).await.unwrap().unwrap();
    assert_eq!(later.reviewer_live_roles, vec!["b-db/read"]);
    let none = store.request_for_review("r2", &u("dave"), t(100)).await.unwrap().unwrap();
    assert!(none.reviewer_live_roles.is_empty());
    assert!(store.request_for_review("nope", &u("alice"), t(100)).await.unwrap().is_none());
}

/// The live roles a decision sees, against a plain count over the same grants: many grants of
/// a few people on names that sort close together (`a`, `a-b`, `a.b`, `a_b`, `ab`), some ended
/// before the time asked, some revoked; every person at three times, by both reads.
async fn live_roles_match_a_plain_count(store: &dyn Store) {
    const RESOURCES: [&str; 6] = ["a", "a-b", "a.b", "a_b", "ab", "b"];
    const ROLES: [&str; 6] = ["read", "read-only", "read.x", "read_x", "readx", "write"];
    const USERS: [&str; 3] = ["alice", "bob", "carol"];
    // A fixed sequence (a linear congruential generator): the same grants every run.
    let mut seed: u64 = 0x5eed;
    let mut next = |n: usize| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(seed >> 33).unwrap() % n
    };
    let mut grants = Vec::new();
    let mut tx = store.write().await.unwrap();
    for i in 0..600 {
        let user = USERS[next(USERS.len())];
        let r = request(&format!("lr{i}"), user, 10, 1000);
        tx.insert_request(&r).await.unwrap();
        let mut g = Grant::from_request(format!("lg{i}"), &r, None, t(10));
        g.resource = ResourceName::parse(RESOURCES[next(RESOURCES.len())]).unwrap();
        g.role = RoleName::parse(ROLES[next(ROLES.len())]).unwrap();
        g.ends_at = t([50, 3_000, 6_000][next(3)]);
        tx.insert_grant(&g).await.unwrap();
        let revoked = next(5) == 0;
        if revoked {
            tx.set_grants_status(std::slice::from_ref(&g.id), GrantStatus::Revoked)
                .await
                .unwrap();
        }
        grants.push((g, revoked));
    }
    tx.commit().await.unwrap();
    let r = request("lr-review", "alice", 10, 1000);
    let mut tx = store.write().await.unwrap();
    tx.insert_request(&r).await.unwrap();
    tx.commit().await.unwrap();
    for user in USERS {
        for now in [100, 4_000, 7_000] {
            let mut expected: Vec<String> = grants
                .iter()
                .filter(|(g, revoked)| g.user.as_str() == user && !revoked && g.ends_at > t(now))
                .map(|(g, _)| format!("{}/{}", g.resource, g.role))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            expected.sort();
            let mut held = store.active_roles_of(&u(user), t(now)).await.unwrap();
            held.sort();
            assert_eq!(held, expected, "{user} at {now}");
            let facts = store.request_for_review("lr-review", &u(user), t(now)).await.unwrap().unwrap();
            let mut seen = facts.reviewer_live_roles;
            seen.sort();
            assert_eq!(seen, expected, "{user} at {now}, as a reviewer");
        }
    }
}

/// What a review weighs, in one read inside its change: the request, its reviews in order,
/// and the standing of the reviewer, the requester and everyone who reviewed before, with the
/// change's own uncommitted membership; nobody else, and no name that is no user.
async fn review_context(store: &dyn Store) {
    let mut tx = store.write().await.unwrap();
    for name in ["alice", "bob", "carol", "dave"] {
        tx.insert_user(&user(name)).await.unwrap();
    }
    let mut admin = user("erin");
    admin.is_admin = true;
    tx.insert_user(&admin).await.unwrap();
    for group in ["engineers", "db-owners", "security"] {
        tx.ensure_group(&g(group), Source::Api).await.unwrap();
    }
    tx.set_member(&g("engineers"), &u("alice"), true, Source::Api).await.unwrap();
    tx.set_member(&g("db-owners"), &u("carol"), true, Source::Api).await.unwrap();
    tx.set_member(&g("db-owners"), &u("dave"), true, Source::Api).await.unwrap();
    tx.insert_request(&request("c1", "alice", 10, 1000)).await.unwrap();
    tx.insert_request(&request("c4", "erin", 10, 1000)).await.unwrap();
    tx.insert_request(&request("c5", "ghost", 10, 1000)).await.unwrap();
    let by = |reviewer: jitgate_core::request::Reviewer, at: i64| Review {
        request_id: "c1".into(),
        reviewer,
        decision: Decision::Approve,
        comment: String::new(),
        stage: Some(0),
        mfa_method: None,
        created_at: t(at),
    };
    let carol = by(jitgate_core::request::Reviewer::Person(u("carol")), 12);
    let erin = by(jitgate_core::request::Reviewer::Person(u("erin")), 11);
    let policy = by(jitgate_core::request::Reviewer::Policy("auto".into()), 13);
    for r in [&carol, &erin, &policy] {
        tx.insert_review(r).await.unwrap();
    }
    tx.append_audit(ev("setup"), t(13)).await.unwrap();
    tx.commit().await.unwrap();

    // Before the review begins: the request, and whether its requester is an administrator.
    let facts = |id: &'static str| async move { store.request_for_review(id, &u("bob"), t(100)).await.unwrap() };
    let read = facts("c1").await.unwrap();
    assert_eq!((read.request, read.requester_is_admin), (request("c1", "alice", 10, 1000), false));
    assert!(read.reviewer_live_roles.is_empty());
    let read = facts("c4").await.unwrap();
    assert_eq!((read.request.requester.as_str(), read.requester_is_admin), ("erin", true));
    let read = facts("c5").await.unwrap();
    assert_eq!(
        (read.request.requester.as_str(), read.requester_is_admin),
        ("ghost", false),
        "a requester who is no user"
    );
    assert!(facts("nope").await.is_none());

    let mut tx = store.write().await.unwrap();
    tx.set_member(&g("security"), &u("bob"), true, Source::Api).await.unwrap();
    let read = tx.review_context("c1", &u("bob"), &u("alice")).await.unwrap().unwrap();
    assert_eq!(read.request.id, "c1");
    assert_eq!(read.reviews, vec![erin, carol, policy], "in the order they were made");
    assert_eq!(
        read.standing.keys().map(Username::as_str).collect::<Vec<_>>(),
        ["alice", "bob", "carol", "erin"],
        "reviewer, requester and earlier reviewers; not dave"
    );
    assert_eq!(read.standing[&u("alice")].groups, [g("engineers")].into());
    assert_eq!(
        read.standing[&u("bob")].groups,
        [g("security")].into(),
        "its own uncommitted membership"
    );
    assert_eq!(read.standing[&u("carol")].groups, [g("db-owners")].into());
    assert!(read.standing[&u("erin")].is_admin && read.standing[&u("erin")].groups.is_empty());
    assert!(!read.standing[&u("bob")].is_admin);
    // A reviewer who is no user (deleted, or a name from elsewhere) has no standing.
    let nobody = tx.review_context("c1", &u("zed"), &u("alice")).await.unwrap().unwrap();
    assert!(!nobody.standing.contains_key(&u("zed")));
    assert_eq!(nobody.reviews.len(), 3);
    drop(tx);

    // A request with no review: the request alone, and the two people.
    let mut tx = store.write().await.unwrap();
    tx.insert_request(&request("c2", "dave", 10, 1000)).await.unwrap();
    let read = tx.review_context("c2", &u("bob"), &u("dave")).await.unwrap().unwrap();
    assert!(read.reviews.is_empty());
    assert_eq!(read.standing.len(), 2);
    assert!(tx.review_context("c3", &u("bob"), &u("dave")).await.unwrap().is_none());
}

/// Writes that answer nothing are held back for the change's next statement on PostgreSQL
/// (one round trip less each while the audit head is held): the change still reads what it
/// wrote, an update of a row it inserted takes effect, and a change that fails or is dropped
/// writes none of them.
async fn held_back_writes(store: &dyn Store) {
    let mut tx = store.write().await.unwrap();
    tx.insert_request(&request("h1", "alice", 10, 1000)).await.unwrap();
    drop(tx);
    assert!(store.request("h1").await.unwrap().is_none(), "a dropped change writes nothing");

    // An automatic approval's order: the request, its status, a review, the grant, the event.
    let mut tx = store.write().await.unwrap();
    tx.insert_request(&request("h1", "alice", 10, 1000)).await.unwrap();
    tx.set_request_status("h1", RequestStatus::Approved, t(11)).await.unwrap();
    let review = Review {
        request_id: "h1".into(),
        reviewer: jitgate_core::request::Reviewer::Person(u("bob")),
        decision: Decision::Approve,
        comment: "ok".into(),
        stage: Some(0),
        mfa_method: None,
        created_at: t(11),
    };
    let second = Review {
        reviewer: jitgate_core::request::Reviewer::Person(u("carol")),
        created_at: t(10),
        ..review.clone()
    };
    tx.insert_review(&review).await.unwrap();
    tx.insert_review(&second).await.unwrap();
    assert_eq!(tx.reviews("h1").await.unwrap().len(), 2, "a change reads the reviews it wrote");
    let read = tx.review_context("h1", &u("bob"), &u("alice")).await.unwrap().unwrap();
    assert_eq!(read.request.status, RequestStatus::Approved);
    assert_eq!(
        read.reviews,
        vec![second.clone(), review.clone()],
        "the request with its reviews in order, in one read"
    );
    assert!(tx.review_context("nope", &u("bob"), &u("alice")).await.unwrap().is_none());
    let seen = tx.request("h1").await.unwrap().unwrap();
    assert_eq!(seen.status, RequestStatus::Approved, "and the status it set");
    tx.insert_grant(&Grant::from_request("hg1".into(), &seen, None, t(11)))
        .await
        .unwrap();
    tx.append_audit(NewEvent::new("bob", "request.approved", "h1", Outcome::Success, json!({})), t(11))
        .await
        .unwrap();
    assert_eq!(tx.commit().await.unwrap().len(), 1);
    assert_eq!(store.request("h1").await.unwrap().unwrap().status, RequestStatus::Approved);
    assert!(store.grant("hg1").await.unwrap().is_some());
    assert_eq!(store.reviews("h1").await.unwrap().len(), 2);

    // No read in between: the update still comes after the insert of its row.
    let mut tx = store.write().await.unwrap();
    tx.insert_request(&request("h2", "alice", 20, 1000)).await.unwrap();
    tx.set_request_status("h2", RequestStatus::Denied, t(21)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.request("h2").await.unwrap().unwrap().status, RequestStatus::Denied);

    // Many rows in one change (an import): all written, a few per statement.
    let mut tx = store.write().await.unwrap();
    for i in 0..1000 {
        tx.insert_request(&request(&format!("bulk{i}"), "alice", 40, 1000)).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert!(store.request("bulk0").await.unwrap().is_some() && store.request("bulk999").await.unwrap().is_some());

    // A statement given up while it carries held-back writes: the change either commits
    // with them or not at all, never without them.
    for i in 0..20 {
        let id = format!("cut{i}");
        let mut tx = store.write().await.unwrap();
        tx.insert_request(&request(&id, "alice", 50, 1000)).await.unwrap();
        let cut = std::time::Duration::from_micros(50 * i);
        drop(tokio::time::timeout(cut, tx.request("h1")).await);
        let committed = tx.commit().await.is_ok();
        assert_eq!(
            store.request(&id).await.unwrap().is_some(),
            committed,
            "{id}: committed {committed}"
        );
    }

    // One conflict among several held back: the change writes none of them.
    let mut tx = store.write().await.unwrap();
    let written = async {
        tx.insert_request(&request("h3", "alice", 30, 1000)).await?;
        tx.insert_grant(&Grant::from_request("hg1".into(), &seen, None, t(31))).await?;
        tx.append_audit(NewEvent::new("bob", "grant.create", "hg1", Outcome::Success, json!({})), t(31))
            .await
    }
    .await;
    let committed = match written {
        Ok(()) => tx.commit().await.map(drop),
        Err(e) => Err(e),
    };
    assert!(matches!(committed, Err(StoreError::Conflict(_))), "{committed:?}");
    assert!(
        store.request("h3").await.unwrap().is_none(),
        "nothing of a failed change is written"
    );
    assert_eq!(store.audit_head().await.unwrap().seq, 1, "nor its events");
}

macro_rules! conformance {
    ($($case:ident),*) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(testing::fresh_sqlite(dir.path()).await.unwrap());
                    assert_eq!(store.backend(), "sqlite");
                    run(stringify!($case), store).await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    // As the server runs it: every call bounded by the default deadline.
                    let pg = testing::fresh_pg().await.unwrap();
                    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(jitgate_store::Bounded::new(pg, jitgate_store::DEFAULT_TIMEOUT));
                    assert_eq!(store.backend(), "postgres");
                    run(stringify!($case), store).await;
                }
            )*
        }
    };
}

/// Resources and group memberships are remembered between decisions (issue #18): a change
/// made here is seen at once after its commit, and one rolled back is never seen.
async fn directory_is_never_stale_here(store: &dyn Store) {
    let name = ResourceName::parse("prod-db").unwrap();
    let mut tx = store.write().await.unwrap();
    tx.insert_user(&user("alice")).await.unwrap();
    tx.set_member(&g("engineers"), &u("alice"), true, Source::Api).await.unwrap();
    tx.set_member(&g("db-owners"), &u("alice"), true, Source::Config).await.unwrap();
    tx.put_resource(&resource(), Source::Config, t(1)).await.unwrap();
    tx.commit().await.unwrap();
    let both = [g("db-owners"), g("engineers")]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>();
    // Twice: the second answer may come from memory.
    for _ in 0..2 {
        assert_eq!(store.user_groups(&u("alice")).await.unwrap(), both);
        assert!(store.resource(&name).await.unwrap().is_some());
    }
    // Changed and dropped without a commit: nothing of it is seen.
    let mut tx = store.write().await.unwrap();
    tx.set_member(&g("engineers"), &u("alice"), false, Source::Api).await.unwrap();
    tx.delete_resource(&name).await.unwrap();
    drop(tx);
    assert_eq!(store.user_groups(&u("alice")).await.unwrap(), both);
    assert!(store.resource(&name).await.unwrap().is_some());
    // Committed: seen by the very next read.
    let mut tx = store.write().await.unwrap();
    tx.set_member(&g("engineers"), &u("alice"), false, Source::Api).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store.user_groups(&u("alice")).await.unwrap(),
        [g("db-owners")].into_iter().collect()
    );
    let mut tx = store.write().await.unwrap();
    tx.clear_source(Source::Config).await.unwrap();
    tx.delete_resource(&name).await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.user_groups(&u("alice")).await.unwrap().is_empty());
    assert!(store.resource(&name).await.unwrap().is_none());
    let mut tx = store.write().await.unwrap();
    tx.put_resource(&resource(), Source::Api, t(2)).await.unwrap();
    tx.set_member(&g("security"), &u("alice"), true, Source::Api).await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.resource(&name).await.unwrap().is_some());
    assert_eq!(store.user_groups(&u("alice")).await.unwrap(), [g("security")].into_iter().collect());
}

async fn ephemeral_roles(store: &dyn Store) {
    use jitgate_core::grant::DbRoleState;
    use jitgate_store::EphemeralRoleRecord;
    let role = |id: &str, created: i64| EphemeralRoleRecord {
        grant_id: id.into(),
        resource: ResourceName::parse("prod-db").unwrap(),
        role_name: format!("jg_{id}"),
        key_version: 1,
        sealed_password: "sealed".into(),
        state: DbRoleState::Active,
        last_error: None,
        created_at: t(created),
        revoked_at: None,
    };
    let mut tx = store.write().await.unwrap();
    tx.put_ephemeral_role(&role("g2", 2)).await.unwrap();
    tx.put_ephemeral_role(&role("g1", 1)).await.unwrap();
    tx.commit().await.unwrap();
    let active: Vec<String> = store
        .ephemeral_roles_in(DbRoleState::Active)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.grant_id)
        .collect();
    assert_eq!(active, ["g1", "g2"], "oldest first");
    // A failed removal, then a confirmed one: the state, the error and the time follow.
    let mut stuck = role("g1", 1);
    stuck.state = DbRoleState::RevocationPending;
    stuck.last_error = Some("permission denied".into());
    let mut tx = store.write().await.unwrap();
    tx.put_ephemeral_role(&stuck).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.ephemeral_role("g1").await.unwrap(), Some(stuck.clone()));
    assert_eq!(
        store.ephemeral_roles_in(DbRoleState::RevocationPending).await.unwrap(),
        [stuck.clone()]
    );
    let mut gone = stuck;
    gone.state = DbRoleState::Revoked;
    gone.last_error = None;
    gone.revoked_at = Some(t(9));
    let mut tx = store.write().await.unwrap();
    tx.put_ephemeral_role(&gone).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.ephemeral_role("g1").await.unwrap(), Some(gone));
    assert!(store.ephemeral_roles_in(DbRoleState::RevocationPending).await.unwrap().is_empty());
    assert_eq!(store.ephemeral_roles_in(DbRoleState::Active).await.unwrap().len(), 1);
}

/// The reads that answer for a whole list at once (an inbox, a page of requests or grants),
/// over more ids than one `IN (...)` list holds.
async fn batched_reads(store: &dyn Store) {
    use jitgate_core::grant::DbRoleState;
    use jitgate_store::EphemeralRoleRecord;
    let n = 1203;
    let mut tx = store.write().await.unwrap();
    for i in 0..n {
        let mut r = request(&format!("b{i:04}"), "alice", i, 100_000);
        if i % 3 == 0 {
            r.status = RequestStatus::Approved;
            tx.insert_request(&r).await.unwrap();
            tx.insert_grant(&Grant::from_request(format!("bg{i:04}"), &r, None, t(i)))
                .await
                .unwrap();
        } else {
            tx.insert_request(&r).await.unwrap();
        }
        if i % 7 == 0 {
            tx.insert_review(&Review {
                request_id: r.id.clone(),
                reviewer: jitgate_core::request::Reviewer::Person(u("bob")),
                decision: Decision::Deny,
                comment: String::new(),
                stage: None,
                mfa_method: None,
                created_at: t(i),
            })
            .await
            .unwrap();
        }
        if i % 300 == 0 {
            tx.put_ephemeral_role(&EphemeralRoleRecord {
                grant_id: format!("bg{i:04}"),
                resource: ResourceName::parse("prod-db").unwrap(),
                role_name: format!("jg_{i}"),
                key_version: 1,
                sealed_password: "sealed".into(),
                state: DbRoleState::Active,
                last_error: None,
                created_at: t(i),
                revoked_at: None,
            })
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();
    let ids: Vec<String> = (0..n).map(|i| format!("b{i:04}")).chain(["nope".to_owned()]).collect();
    let reviewed = store.reviewed_by(&u("bob"), &ids).await.unwrap();
    assert_eq!(reviewed.len(), (0..n).filter(|i| i % 7 == 0).count());
    assert!(reviewed.contains("b1197") && !reviewed.contains("b1198"));
    assert!(
        store.reviewed_by(&u("carol"), &ids).await.unwrap().is_empty(),
        "only the reviewer's own"
    );
    assert!(store.reviewed_by(&u("bob"), &[]).await.unwrap().is_empty());
    let grants = store.grant_ids_for_requests(&ids).await.unwrap();
    assert_eq!(grants.len(), (0..n).filter(|i| i % 3 == 0).count());
    assert_eq!(grants.get("b1200").map(String::as_str), Some("bg1200"));
    assert!(!grants.contains_key("b1201"));
    let grant_ids: Vec<String> = (0..n).map(|i| format!("bg{i:04}")).collect();
    let mut roles: Vec<String> = store
        .ephemeral_roles_for(&grant_ids)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.role_name)
        .collect();
    roles.sort();
    assert_eq!(roles, ["jg_0", "jg_1200", "jg_300", "jg_600", "jg_900"]);
}

fn delivery(id: &str, seq: i64, order_key: &str, destination: &str) -> jitgate_store::DeliveryRecord {
    jitgate_store::DeliveryRecord {
        id: id.into(),
        event_seq: seq,
        kind: "request.created".into(),
        channel: "hooks".into(),
        destination: destination.into(),
        order_key: order_key.into(),
        payload: "{}".into(),
        status: jitgate_store::DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_at: t(1_000),
        last_error: None,
        created_at: t(1_000),
        sent_at: None,
    }
}

async fn outbox(store: &dyn Store) {
    use jitgate_store::{DeliveryFilter, DeliveryStatus};
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.outbox_cursor().await.unwrap(), None);
    tx.set_outbox_cursor(7).await.unwrap();
    tx.insert_deliveries(&[
        delivery("a1", 1, "req_a", ""),
        delivery("a2", 2, "req_a", ""),
        delivery("b1", 3, "req_b", ""),
        delivery("a2-mail", 2, "req_a", "x@example.com"),
    ])
    .await
    .unwrap();
    tx.insert_user(&user("eve")).await.unwrap();
    assert!(tx.set_user_email(&u("eve"), Some("eve@example.com")).await.unwrap());
    assert!(!tx.set_user_email(&u("nobody"), Some("n@example.com")).await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.outbox_cursor().await.unwrap(), Some(7));
    assert!(
        matches!(
            tx.insert_deliveries(&[delivery("a1", 1, "req_a", "")]).await,
            Err(StoreError::Conflict(_))
        ),
        "an id is made once"
    );
    drop(tx);
    assert_eq!(
        store
            .user_emails(&[u("eve"), u("nobody")])
            .await
            .unwrap()
            .get(&u("eve"))
            .map(String::as_str),
        Some("eve@example.com")
    );

    // In order per key and destination: a2 waits for a1; b1 and the mail to x do not.
    let claimed: Vec<String> = store
        .claim_deliveries("hooks", t(2_000), t(62_000), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(claimed, ["a1", "a2-mail", "b1"]);
    assert!(
        store.claim_deliveries("hooks", t(2_000), t(62_000), 10).await.unwrap().is_empty(),
        "claimed ones are held, a2 still waits"
    );
    let a1 = store
        .deliveries(&DeliveryFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(a1.iter().find(|d| d.id == "a1").unwrap().attempts, 1, "a claim counts the attempt");
    // a1 fails: retried later, and a2 still waits behind it.
    store.delivery_failed("a1", "503", t(5_000), false).await.unwrap();
    assert!(store.claim_deliveries("hooks", t(3_000), t(63_000), 10).await.unwrap().is_empty());
    assert_eq!(store.claim_deliveries("hooks", t(5_000), t(65_000), 10).await.unwrap()[0].id, "a1");
    store.delivery_sent("a1", t(5_001)).await.unwrap();
    assert_eq!(store.claim_deliveries("hooks", t(5_002), t(65_002), 10).await.unwrap()[0].id, "a2");
    // A dead sender's claim runs out, or is released by a sole process at its start.
    assert_eq!(
        store.claim_deliveries("hooks", t(65_002), t(125_002), 10).await.unwrap().len(),
        3,
        "a2, a2-mail, b1 after their lease"
    );
    assert_eq!(store.release_claims().await.unwrap(), 3);
    store.delivery_failed("b1", "gone", t(9_000), true).await.unwrap();
    let failed = store
        .deliveries(&DeliveryFilter {
            status: Some(DeliveryStatus::Failed),
            channel: Some("hooks".into()),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].last_error.as_deref(), Some("gone"));
    let counts = store.delivery_counts().await.unwrap();
    assert!(
        counts.contains(&("hooks".into(), DeliveryStatus::Failed, 1)) && counts.contains(&("hooks".into(), DeliveryStatus::Sent, 1)),
        "{counts:?}"
    );
    let mut tx = store.write().await.unwrap();
    assert!(tx.requeue_delivery("b1", t(10_000)).await.unwrap());
    assert!(!tx.requeue_delivery("a1", t(10_000)).await.unwrap(), "only a failed one");
    tx.commit().await.unwrap();
    let b1 = store.claim_deliveries("hooks", t(10_000), t(70_000), 10).await.unwrap();
    assert!(b1.iter().any(|d| d.id == "b1" && d.attempts == 1), "counted afresh: {b1:?}");
    let mut tx = store.write().await.unwrap();
    let mut other = delivery("c1", 9, "req_c", "");
    other.channel = "mail".into();
    tx.insert_deliveries(&[other]).await.unwrap();
    tx.commit().await.unwrap();
    assert!(
        store.claim_deliveries("hooks", t(10_000), t(70_000), 10).await.unwrap().is_empty(),
        "one channel's claim takes only its own"
    );
    assert_eq!(store.claim_deliveries("mail", t(10_000), t(70_000), 10).await.unwrap()[0].id, "c1");

    // Channel secrets.
    let mut tx = store.write().await.unwrap();
    tx.put_channel_secret(&jitgate_store::ChannelSecretRecord {
        channel: "hooks".into(),
        key_version: 1,
        sealed: "sealed-1".into(),
        updated_at: t(1),
        updated_by: u("eve"),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.channel_secret("hooks").await.unwrap().unwrap().sealed, "sealed-1");
    let mut tx = store.write().await.unwrap();
    assert!(tx.delete_channel_secret("hooks").await.unwrap());
    assert!(!tx.delete_channel_secret("hooks").await.unwrap());
    tx.commit().await.unwrap();
    assert!(store.channel_secret("hooks").await.unwrap().is_none());

    // Warnings are deadlines of the engine, taken once.
    let mut tx = store.write().await.unwrap();
    for (id, at) in [("grt_w1", 500), ("grt_w2", 900)] {
        let mut req = request(&format!("req_{id}"), "eve", 100, 10_000_000);
        req.status = RequestStatus::Approved;
        tx.insert_request(&req).await.unwrap();
        tx.insert_grant_warned(&Grant::from_request(id.into(), &req, None, t(100)), Some(t(at)))
            .await
            .unwrap();
    }
    tx.schedule_warning("grt_w1", t(400)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.next_deadline().await.unwrap(), Some(t(400)));
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.take_due_warnings(t(600), 10).await.unwrap(), ["grt_w1"]);
    tx.commit().await.unwrap();
    let mut tx = store.write().await.unwrap();
    assert!(tx.take_due_warnings(t(600), 10).await.unwrap().is_empty(), "taken once");
    tx.commit().await.unwrap();
    assert_eq!(store.next_deadline().await.unwrap(), Some(t(900)));
}

async fn single_sign_on(store: &dyn Store) {
    use jitgate_store::{Source, SsoIdentityRecord, SsoSignInRecord};
    let half = |id: &str, expires: i64| SsoSignInRecord {
        id: id.into(),
        provider: "corp".into(),
        key_version: 1,
        sealed: "sealed".into(),
        expires_at: t(expires),
    };
    store.put_sso_sign_in(&half("s1", 1000), t(0)).await.unwrap();
    store.put_sso_sign_in(&half("s2", 500), t(0)).await.unwrap();
    assert_eq!(store.take_sso_sign_in("s1", t(10)).await.unwrap(), Some(half("s1", 1000)));
    assert_eq!(store.take_sso_sign_in("s1", t(10)).await.unwrap(), None, "a state works once");
    assert_eq!(
        store.take_sso_sign_in("s2", t(500)).await.unwrap(),
        None,
        "an expired one is refused"
    );
    // Expired ones are dropped when new ones come.
    store.put_sso_sign_in(&half("s3", 2000), t(1500)).await.unwrap();
    store.put_sso_sign_in(&half("s4", 2000), t(1500)).await.unwrap();

    let alice = Username::parse("alice").unwrap();
    let mut tx = store.write().await.unwrap();
    tx.insert_user(&user("alice")).await.unwrap();
    let id = SsoIdentityRecord {
        provider: "corp".into(),
        subject: "sub-1".into(),
        user: alice.clone(),
        linked_at: t(1),
        last_sign_in_at: t(1),
    };
    tx.link_sso_identity(&id).await.unwrap();
    tx.touch_sso_identity("corp", "sub-1", t(9)).await.unwrap();
    assert_eq!(tx.sso_identity("corp", "sub-1").await.unwrap().unwrap().last_sign_in_at, t(9));
    assert_eq!(tx.sso_identity_of("corp", &alice).await.unwrap().unwrap().subject, "sub-1");
    assert!(tx.sso_identity("other", "sub-1").await.unwrap().is_none());
    let g = |n: &str| GroupName::parse(n).unwrap();
    tx.set_member(&g("dba"), &alice, true, Source::Sso).await.unwrap();
    tx.set_member(&g("ops"), &alice, true, Source::Api).await.unwrap();
    assert_eq!(tx.sso_groups_of(&alice).await.unwrap().into_iter().collect::<Vec<_>>(), [g("dba")]);
    assert!(
        !tx.remove_member_from(&g("ops"), &alice, Source::Sso).await.unwrap(),
        "not the sign-in's to take"
    );
    assert!(tx.remove_member_from(&g("dba"), &alice, Source::Sso).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.user_groups(&alice).await.unwrap().into_iter().collect::<Vec<_>>(), [g("ops")]);
    assert_eq!(store.sso_identities_of(&alice).await.unwrap().len(), 1);
    // One identity per user per provider.
    let mut tx = store.write().await.unwrap();
    let again = SsoIdentityRecord {
        subject: "sub-2".into(),
        ..id
    };
    assert!(tx.link_sso_identity(&again).await.is_err());
}

async fn api_tokens(store: &dyn Store) {
    use jitgate_store::ApiTokenRecord;
    let alice = Username::parse("alice").unwrap();
    let token = |id: &str, hash: &str, at: i64| ApiTokenRecord {
        id: id.into(),
        token_hash: hash.into(),
        user: alice.clone(),
        name: format!("ci {id}"),
        scopes: vec!["read".into(), "request".into()],
        created_at: t(at),
        expires_at: t(at + 1000),
        last_used_at: None,
        revoked_at: None,
    };
    let mut tx = store.write().await.unwrap();
    tx.insert_user(&user("alice")).await.unwrap();
    tx.insert_api_token(&token("tok_1", "h1", 1)).await.unwrap();
    tx.insert_api_token(&token("tok_2", "h2", 2)).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.write().await.unwrap();
    assert!(tx.insert_api_token(&token("tok_3", "h1", 3)).await.is_err(), "one token, one hash");
    drop(tx);
    let (found, owner) = store.api_token_user("h1").await.unwrap().unwrap();
    assert_eq!((found.clone(), owner.name.clone()), (token("tok_1", "h1", 1), alice.clone()));
    assert!(store.api_token_user("nope").await.unwrap().is_none());
    store.touch_api_token("tok_1", t(50)).await.unwrap();
    let mine: Vec<_> = store.api_tokens(Some(&alice)).await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(mine, ["tok_2", "tok_1"], "newest first");
    assert_eq!(store.api_tokens(None).await.unwrap().len(), 2);
    let mut tx = store.write().await.unwrap();
    assert!(tx.revoke_api_token("tok_1", t(60)).await.unwrap());
    assert!(!tx.revoke_api_token("tok_1", t(61)).await.unwrap(), "once");
    let revoked = tx.api_token("tok_1").await.unwrap().unwrap();
    assert_eq!((revoked.revoked_at, revoked.last_used_at), (Some(t(60)), Some(t(50))));
    assert_eq!(tx.revoke_api_tokens_of(&alice, t(70)).await.unwrap(), 1, "the one still live");
    assert_eq!(tx.api_token("tok_2").await.unwrap().unwrap().revoked_at, Some(t(70)));
    tx.commit().await.unwrap();
}

async fn run(case: &str, store: std::sync::Arc<dyn Store>) {
    match case {
        "users_groups_and_sessions" => users_groups_and_sessions(&*store).await,
        "resources" => resources(&*store).await,
        "requests_reviews_and_grants" => requests_reviews_and_grants(&*store).await,
        "audit_chain" => audit_chain(&*store).await,
        "writers_are_serialized" => writers_are_serialized(store).await,
        "meta" => meta(&*store).await,
        "second_factors" => second_factors(&*store).await,
        "break_glass_and_notifications" => break_glass_and_notifications(&*store).await,
        "session_kills" => session_kills(&*store).await,
        "live_roles" => live_roles(&*store).await,
        "live_roles_match_a_plain_count" => live_roles_match_a_plain_count(&*store).await,
        "directory_is_never_stale_here" => directory_is_never_stale_here(&*store).await,
        "ephemeral_roles" => ephemeral_roles(&*store).await,
        "batched_reads" => batched_reads(&*store).await,
        "outbox" => outbox(&*store).await,
        "single_sign_on" => single_sign_on(&*store).await,
        "api_tokens" => api_tokens(&*store).await,
        "held_back_writes" => held_back_writes(&*store).await,
        "review_context" => review_context(&*store).await,
        other => panic!("unknown case {other}"),
    }
}

conformance!(
    users_groups_and_sessions,
    resources,
    requests_reviews_and_grants,
    audit_chain,
    writers_are_serialized,
    meta,
    second_factors,
    break_glass_and_notifications,
    session_kills,
    live_roles,
    live_roles_match_a_plain_count,
    directory_is_never_stale_here,
    ephemeral_roles,
    batched_reads,
    outbox,
    single_sign_on,
    api_tokens,
    held_back_writes,
    review_context
);

/// Polls `seen` until it holds; fails after `within`.
async fn eventually(what: &str, within: std::time::Duration, mut seen: impl AsyncFnMut() -> bool) {
    let until = std::time::Instant::now() + within;
    while !seen().await {
        assert!(std::time::Instant::now() < until, "{what} not seen here within {within:?}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Announcements arrive in milliseconds; this bound is well under what the directory may be
/// remembered for, so only the announcement can make these tests pass.
const ANNOUNCED_WITHIN: std::time::Duration = std::time::Duration::from_millis(1000);

/// PostgreSQL is shared: a change made through another instance, or by hand with SQL (even with
/// ordinary triggers off), reaches what this instance remembers of the directory (announced by
/// trigger at commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_directory_changes_made_elsewhere_are_seen() {
    assert!(ANNOUNCED_WITHIN < jitgate_store::DIRECTORY_REMEMBERED_FOR);
    let url = testing::fresh_pg_database().await.unwrap();
    let here = jitgate_store::PgStore::connect(&url).await.unwrap();
    let elsewhere = jitgate_store::PgStore::connect(&url).await.unwrap();
    let by_hand = sqlx::PgPool::connect(&url).await.unwrap();
    let name = ResourceName::parse("prod-db").unwrap();
    let mut tx = elsewhere.write().await.unwrap();
    tx.insert_user(&user("alice")).await.unwrap();
    tx.set_member(&g("engineers"), &u("alice"), true, Source::Api).await.unwrap();
    tx.put_resource(&resource(), Source::Api, t(1)).await.unwrap();
    tx.commit().await.unwrap();
    let engineers = [g("engineers")].into_iter().collect::<std::collections::BTreeSet<_>>();
    // Read twice here, so the answers are remembered.
    for _ in 0..2 {
        assert_eq!(here.user_groups(&u("alice")).await.unwrap(), engineers);
        assert!(here.resource(&name).await.unwrap().is_some());
    }
    let mut tx = elsewhere.write().await.unwrap();
    tx.set_member(&g("engineers"), &u("alice"), false, Source::Api).await.unwrap();
    tx.delete_resource(&name).await.unwrap();
    tx.commit().await.unwrap();
    eventually("a membership removed by another instance", ANNOUNCED_WITHIN, async || {
        here.user_groups(&u("alice")).await.unwrap().is_empty()
    })
    .await;
    eventually("a resource deleted by another instance", ANNOUNCED_WITHIN, async || {
        here.resource(&name).await.unwrap().is_none()
    })
    .await;
    sqlx::query("INSERT INTO group_members (group_name, username, source) VALUES ('engineers', 'alice', 'api')")
        .execute(&by_hand)
        .await
        .unwrap();
    eventually("a membership added by hand", ANNOUNCED_WITHIN, async || {
        here.user_groups(&u("alice")).await.unwrap() == engineers
    })
    .await;
    // As pg_restore --disable-triggers and a replication subscriber run: ordinary triggers off.
    let mut conn = by_hand.acquire().await.unwrap();
    sqlx::raw_sql("SET session_replication_role = replica; DELETE FROM group_members")
        .execute(&mut *conn)
        .await
        .unwrap();
    eventually("memberships deleted by hand, triggers off", ANNOUNCED_WITHIN, async || {
        here.user_groups(&u("alice")).await.unwrap().is_empty()
    })
    .await;
}

/// A listener whose connection died without a word (a NAT or load balancer dropping an idle
/// flow) hears nothing and cannot tell: what the instance remembers must still age out, so a
/// removed membership is seen within the remembering time while other connections work on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_directory_is_not_remembered_for_ever_behind_a_silent_listener() {
    let url = testing::fresh_pg_database().await.unwrap();
    let testing::SilentRelay { via: via_relay, cut, held } = testing::SilentRelay::to(&url).await;
    let here = jitgate_store::PgStore::connect(&via_relay).await.unwrap();
    let elsewhere = jitgate_store::PgStore::connect(&url).await.unwrap();
    let mut tx = elsewhere.write().await.unwrap();
    tx.insert_user(&user("alice")).await.unwrap();
    tx.set_member(&g("db-owners"), &u("alice"), true, Source::Api).await.unwrap();
    tx.commit().await.unwrap();
    cut.send_replace(true);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // Remembered after the cut, so nothing announced can have cleared it.
    for _ in 0..2 {
        assert!(here.user_groups(&u("alice")).await.unwrap().contains(&g("db-owners")));
    }
    let mut tx = elsewhere.write().await.unwrap();
    tx.set_member(&g("db-owners"), &u("alice"), false, Source::Api).await.unwrap();
    tx.commit().await.unwrap();
    let within = jitgate_store::DIRECTORY_REMEMBERED_FOR + std::time::Duration::from_secs(2);
    eventually("a removal behind a silent listener", within, async || {
        here.user_groups(&u("alice")).await.unwrap().is_empty()
    })
    .await;
    assert!(
        !held.lock().unwrap().is_empty(),
        "the listener's connection was cut (the relay cuts no other)"
    );
}

/// A listener whose connection went silent is noticed by its heartbeat (it stops hearing its
/// own notifications), reported as not listening (so the gateway checks its sessions against
/// the store instead of waiting for kills it cannot hear), and made again once it can be.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_listener_gone_silent_is_noticed_and_made_again() {
    let url = testing::fresh_pg_database().await.unwrap();
    let testing::SilentRelay { via: via_relay, cut, held } = testing::SilentRelay::to(&url).await;
    let here = jitgate_store::PgStore::connect(&via_relay).await.unwrap();
    let mut listening = here.session_kills().unwrap().listening;
    assert!(*listening.borrow());
    cut.send_replace(true);
    let noticed = std::time::Instant::now();
    tokio::time::timeout(std::time::Duration::from_secs(15), listening.wait_for(|l| !*l))
        .await
        .expect("a silent listener is noticed within the heartbeat's bound")
        .unwrap();
    assert!(!held.lock().unwrap().is_empty(), "it was the cut that was noticed");
    assert!(
        noticed.elapsed() >= std::time::Duration::from_secs(4),
        "not before a heartbeat went unheard"
    );
    cut.send_replace(false);
    tokio::time::timeout(std::time::Duration::from_secs(15), listening.wait_for(|l| *l))
        .await
        .expect("listening again once the connection can be made")
        .unwrap();
}

/// When a writer does not get the audit head's lock in time (another instance holds the head),
/// the call fails within the store's deadline, and the connection it leaves is rolled back
/// before anyone takes it again: every later change on
/// that instance, on every connection of its pool, works. A change dropped without a commit
/// releases the head at once and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_writer_that_waits_too_long_for_the_head_leaves_no_connection_behind() {
    let url = testing::fresh_pg_database().await.unwrap();
    let holder = jitgate_store::PgStore::connect(&url).await.unwrap();
    let waiter = jitgate_store::PgStore::connect_with(&url, std::time::Duration::from_millis(300))
        .await
        .unwrap();
    let mut held = holder.write().await.unwrap();
    held.insert_user(&user("alice")).await.unwrap();
    for _ in 0..20 {
        let started = std::time::Instant::now();
        assert!(waiter.write().await.is_err(), "the head is held elsewhere");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "gave up within the lock timeout"
        );
    }
    drop(held);
    // Twenty changes at once: every connection of the pool (16) is taken, the ones that failed
    // above too; none may still be inside the failed transaction.
    let writes: Vec<_> = (0..20)
        .map(|i| {
            let waiter = waiter.clone();
            tokio::spawn(async move {
                let mut tx = waiter.write().await?;
                tx.insert_user(&user(&format!("w{i}"))).await?;
                tx.append_audit(
                    NewEvent::new("admin", "user.create", format!("w{i}"), Outcome::Success, json!({})),
                    t(i),
                )
                .await?;
                tx.commit().await
            })
        })
        .collect();
    for done in writes {
        done.await.unwrap().unwrap();
    }
    assert!(
        holder.user(&u("alice")).await.unwrap().is_none(),
        "the dropped change wrote nothing"
    );
    assert!(waiter.user(&u("w19")).await.unwrap().is_some());
    assert_eq!(waiter.audit_head().await.unwrap().seq, 20);
}

/// Where the log ends now (PostgreSQL).
async fn wal_written(observer: &sqlx::PgPool) -> String {
    sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(observer)
        .await
        .unwrap()
}

/// Whether the log is flushed past `lsn`.
async fn wal_flushed_past(observer: &sqlx::PgPool, lsn: &str) -> bool {
    sqlx::query_scalar("SELECT pg_current_wal_flush_lsn() > $1::pg_lsn")
        .bind(lsn)
        .fetch_one(observer)
        .await
        .unwrap()
}

/// A PostgreSQL change commits without waiting for the disk while it holds the audit head, and
/// waits for the disk once it has let the head go: either way, its commit returns only once its
/// commit record is flushed (what the log holds is what was acknowledged). Checked against the
/// log's positions, change after change: the flush point must pass where the log ended before
/// the commit. Without the wait, the flush lags the commit by up to the WAL writer's delay
/// (200 ms by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_change_is_on_disk_when_its_commit_returns() {
    let url = testing::fresh_pg_database().await.unwrap();
    let store = jitgate_store::PgStore::connect(&url).await.unwrap();
    let observer = sqlx::PgPool::connect(&url).await.unwrap();
    for i in 0..30 {
        let mut tx = store.write().await.unwrap();
        tx.insert_user(&user(&format!("d{i}"))).await.unwrap();
        tx.append_audit(
            NewEvent::new("admin", "user.create", format!("d{i}"), Outcome::Success, json!({})),
            t(i),
        )
        .await
        .unwrap();
        let before = wal_written(&observer).await;
        tx.commit().await.unwrap();
        let flushed = wal_flushed_past(&observer, &before).await;
        assert!(flushed, "change {i}: its commit returned before the log was flushed past {before}");
    }
    // A change whose durability is relaxed (the expiry engine's) does not wait, yet is visible:
    // what is sent out about the store waits for `on_disk` first, which returns only once the
    // log is flushed past everything visible when it was called.
    for i in 0..10 {
        let mut tx = store.write().await.unwrap();
        tx.relax_durability().await.unwrap();
        tx.insert_user(&user(&format!("relaxed{i}"))).await.unwrap();
        tx.commit().await.unwrap();
        assert!(store.user(&u(&format!("relaxed{i}"))).await.unwrap().is_some());
        let shown = wal_written(&observer).await;
        store.on_disk().await.unwrap();
        let flushed: bool = sqlx::query_scalar("SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn")
            .bind(&shown)
            .fetch_one(&observer)
            .await
            .unwrap();
        assert!(
            flushed,
            "relaxed change {i}: on_disk returned before the log was flushed to {shown}"
        );
    }
}

/// Backends of this database still inside a transaction (a change not rolled back holds the
/// audit head's row lock, and every later change waits behind it).
async fn left_in_transaction(observer: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'",
    )
    .fetch_one(observer)
    .await
    .unwrap()
}

/// A PostgreSQL change begins, takes the audit head's lock and reads the head in one round
/// trip, on a transaction of jitgate's own (see `pg_change.rs`); so every way a change can end
/// without its commit must still roll it back and give its connection back: dropped after a
/// refusal (more times than the pool holds connections), given up in the middle of a statement,
/// and failed in its `BEGIN` because another holds the head past the lock timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_change_that_ends_without_commit_leaves_nothing_behind() {
    let url = testing::fresh_pg_database().await.unwrap();
    let store = jitgate_store::PgStore::connect_with(&url, std::time::Duration::from_millis(500))
        .await
        .unwrap();
    let observer = sqlx::PgPool::connect(&url).await.unwrap();
    let within = std::time::Duration::from_secs(10);

    // Dropped after it wrote and read: 40 of them, with 16 connections in the pool.
    for i in 0..40 {
        let mut tx = tokio::time::timeout(within, store.write()).await.expect("a change begins").unwrap();
        tx.insert_user(&user(&format!("dropped{i}"))).await.unwrap();
        assert!(tx.user(&u(&format!("dropped{i}"))).await.unwrap().is_some());
        drop(tx);
    }
    assert!(store.users().await.unwrap().is_empty(), "no dropped change wrote anything");

    // Given up while its statement waits for a lock someone else holds.
    let mut blocker = observer.begin().await.unwrap();
    sqlx::query("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let mut tx = store.write().await.unwrap();
    let waited = tokio::time::timeout(std::time::Duration::from_millis(100), tx.user(&u("halfway"))).await;
    assert!(waited.is_err(), "the read waited behind the table lock");
    drop(tx);
    blocker.rollback().await.unwrap();

    // Failed in its BEGIN: another holds the audit head for longer than the lock timeout.
    let mut holder = observer.begin().await.unwrap();
    sqlx::query("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    assert!(store.write().await.is_err(), "the head is held elsewhere past the lock timeout");
    holder.rollback().await.unwrap();

    // Every connection is back and out of its transaction, and the next change commits.
    eventually("no connection left in a transaction", within, async || {
        left_in_transaction(&observer).await == 0
    })
    .await;
    for i in 0..20 {
        let mut tx = tokio::time::timeout(within, store.write()).await.expect("a change begins").unwrap();
        tx.insert_user(&user(&format!("kept{i}"))).await.unwrap();
        tx.append_audit(
            NewEvent::new("admin", "user.create", format!("kept{i}"), Outcome::Success, json!({})),
            t(i),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let names: Vec<String> = store.users().await.unwrap().into_iter().map(|u| u.name.to_string()).collect();
    assert_eq!(names.len(), 20, "only the committed changes wrote: {names:?}");
    assert!(names.iter().all(|n| n.starts_with("kept")));
    assert_eq!(
        store.audit_head().await.unwrap().seq,
        20,
        "the chain moved by the committed changes only"
    );
}

/// Changes made together share their log flushes (a flush waits a moment for a change on its
/// way, see `durable.rs`), and still each is on disk before its commit returns: eight writers at
/// once, each change checked against the log's positions as in the test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_made_together_are_each_on_disk_when_their_commits_return() {
    let url = testing::fresh_pg_database().await.unwrap();
    let store = jitgate_store::PgStore::connect(&url).await.unwrap();
    let observer = sqlx::PgPool::connect(&url).await.unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let (store, observer) = (store.clone(), observer.clone());
        writers.spawn(async move {
            for i in 0..25 {
                let name = format!("w{w}c{i}");
                let mut tx = store.write().await.unwrap();
                tx.insert_user(&user(&name)).await.unwrap();
                tx.append_audit(NewEvent::new("admin", "user.create", &name, Outcome::Success, json!({})), t(i))
                    .await
                    .unwrap();
                let before = wal_written(&observer).await;
                tx.commit().await.unwrap();
                let flushed = wal_flushed_past(&observer, &before).await;
                assert!(flushed, "{name}: its commit returned before the log was flushed past {before}");
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    assert_eq!(store.users().await.unwrap().len(), 200);
    assert_eq!(store.audit_head().await.unwrap().seq, 200);
}
