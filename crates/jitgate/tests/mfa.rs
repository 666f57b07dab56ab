//! Second factors end to end: TOTP enrolment and login, single use, attempt limits that
//! survive a restart, step-up bound to approval, recovery codes, passkeys with a software
//! authenticator, and codes from an independent TOTP implementation (oathtool).

use crate::support::*;
use jitgate_api::{LoginOutcome, MfaProof, WebauthnAssertion};
use jitgate_client::Client;
use jitgate_core::Timestamp;
use jitgate_server::clock::{Clock, SharedClock};
use std::time::Duration;
use webauthn_authenticator_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url, WebauthnAuthenticator};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

use crate::mfa_support::{code, enrol_totp};

/// Logs `user` in with password and a TOTP code at the clock's now.
async fn login_with_code(s: &TestServer, user: &str, secret: &str) -> Client {
    let anon = Client::new(&s.url, None);
    let session = anon
        .login_with(user, PASSWORD, MfaProof::otp(&code(secret, s.clock().now())))
        .await
        .unwrap();
    anon.with_token(&session.token)
}

async fn actions(s: &TestServer, action: &str) -> Vec<jitgate_core::audit::AuditEvent> {
    s.admin
        .all_audit_events(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

#[tokio::test]
async fn totp_login_is_single_use_and_old_codes_are_refused() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    let (secret, _) = enrol_totp(&s, &alice).await;

    // The password alone now gets a ticket, not a session.
    let anon = Client::new(&s.url, None);
    let LoginOutcome::MfaRequired { ticket, methods, .. } = anon.login_outcome("alice", PASSWORD, None).await.unwrap() else {
        panic!("a second factor is due");
    };
    assert_eq!(methods, vec!["totp", "recovery_code"]);
    let now_code = code(&secret, s.clock().now());
    let session = anon.login_mfa(ticket.expose(), MfaProof::otp(&now_code)).await.unwrap();
    let fresh = anon.with_token(&session.token);
    assert!(fresh.mfa_status().await.unwrap().fresh_until.is_some());
    // The ticket is used up.
    let again = anon.login_mfa(ticket.expose(), MfaProof::otp(&now_code)).await.unwrap_err();
    assert_eq!(again.code(), Some("invalid_ticket"));

    // The same code again, in the same step: refused as a replay, and audited as one.
    let replay = anon.login_with("alice", PASSWORD, MfaProof::otp(&now_code)).await.unwrap_err();
    assert_eq!((replay.status(), replay.code()), (Some(401), Some("mfa_replayed")));
    let replays = actions(&s, "mfa.replay").await;
    assert_eq!(replays.len(), 1);
    assert_eq!(replays[0].actor, "alice");

    // A code from two steps back is refused; one step back (skew) would have been fine.
    s.clock().advance(Duration::from_secs(30));
    let two_back = code(&secret, Timestamp::from_millis(s.clock().now().as_millis() - 60_000));
    let old = anon.login_with("alice", PASSWORD, MfaProof::otp(&two_back)).await.unwrap_err();
    assert_eq!(old.code(), Some("invalid_mfa"));
    login_with_code(&s, "alice", &secret).await;

    // Seeds are sealed at rest: the stored value is neither the secret nor its bytes.
    let stored = s.core.store.totp(&"alice".parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.key_version, 1);
    assert!(!stored.sealed_seed.contains(&secret));
    let key_file = s.data_dir().join("secrets.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(s.admin.audit_verify().await.unwrap().report.is_some());
}

#[tokio::test]
async fn repeated_failures_lock_the_account_and_the_lock_survives_a_restart() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    let (secret, _) = enrol_totp(&s, &alice).await;
    let anon = Client::new(&s.url, None);
    let mut codes = Vec::new();
    for n in 1..=10 {
        let err = anon.login_with("alice", PASSWORD, MfaProof::otp("000000")).await.unwrap_err();
        codes.push(err.code().unwrap().to_owned());
        if (5..10).contains(&n) {
            // After the free attempts, the next try must wait: growing delays.
            let waiting = anon.login_with("alice", PASSWORD, MfaProof::otp("000000")).await.unwrap_err();
            assert_eq!(
                (waiting.status(), waiting.code()),
                (Some(429), Some("too_many_attempts")),
                "after failure {n}"
            );
            s.clock().advance(Duration::from_secs(1 << (n - 5)));
        }
    }
    assert!(codes.iter().all(|c| c == "invalid_mfa"), "{codes:?}");
    assert_eq!(actions(&s, "auth.locked").await.len(), 1);
    // Locked: even the right password and code are refused, without being checked.
    let locked = anon
        .login_with("alice", PASSWORD, MfaProof::otp(&code(&secret, s.clock().now())))
        .await
        .unwrap_err();
    assert_eq!((locked.status(), locked.code()), (Some(429), Some("account_locked")));

    // A name that does not exist locks the same way: the answers do not tell it apart.
    for _ in 0..10 {
        let e = anon.login("nobody", "wrong password here").await.unwrap_err();
        assert_eq!(e.code(), Some("invalid_credentials"));
        s.clock().advance(Duration::from_secs(60));
    }
    assert_eq!(
        anon.login("nobody", "wrong password here").await.unwrap_err().code(),
        Some("account_locked")
    );

    // The lock is in the store: a restart keeps it.
    let (settings, clock, dir) = s.stop().await;
    let s = TestServer::restart(settings, clock, dir).await;
    let anon = Client::new(&s.url, None);
    let still = anon
        .login_with("alice", PASSWORD, MfaProof::otp(&code(&secret, s.clock().now())))
        .await
        .unwrap_err();
    assert_eq!(still.code(), Some("account_locked"));

    // An administrator lifts it (a non-admin cannot).
    let bob = s.login("bob").await;
    assert_eq!(bob.unlock_user("alice").await.unwrap_err().status(), Some(403));
    s.admin.unlock_user("alice").await.unwrap();
    s.clock().advance(Duration::from_secs(30));
    login_with_code(&s, "alice", &secret).await;
    assert_eq!(actions(&s, "auth.unlock").await.len(), 1);

    // Or time does.
    for _ in 0..10 {
        let _ = anon.login("carol", "wrong password here").await;
        s.clock().advance(Duration::from_secs(60));
    }
    assert_eq!(anon.login("carol", PASSWORD).await.unwrap_err().code(), Some("account_locked"));
    s.clock().advance(Duration::from_secs(15 * 60));
    anon.login("carol", PASSWORD).await.unwrap();
}

#[tokio::test]
async fn approval_needs_a_fresh_factor_when_the_role_says_so() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    let bob = s.login("bob").await;

    // No factor at all: refused with the way to get one.
    let err = alice
        .create_request(&request_body("prod-db", "dba", Some("30m"), "vacuum the big table"))
        .await
        .unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(403), Some("mfa_enrollment_required")));

    let (alice_secret, _) = enrol_totp(&s, &alice).await;
    let (bob_secret, _) = enrol_totp(&s, &bob).await;
    // Enrolling made both sessions fresh; let that run out.
    s.clock().advance(Duration::from_secs(6 * 60));

    let mut body = request_body("prod-db", "dba", Some("30m"), "vacuum the big table");
    let err = alice.create_request(&body).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(401), Some("mfa_required")));
    body.mfa = Some(MfaProof::otp(&code(&alice_secret, s.clock().now())));
    let req = alice.create_request(&body).await.unwrap();
    assert_eq!(req.mfa_method.map(jitgate_core::factor::Factor::as_str), Some("totp"));

    let head = s.audit_head().await;
    let err = bob.approve(&req.id, "ok").await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(401), Some("mfa_required")));
    let refusals = actions(&s, "mfa.step_up").await;
    assert_eq!(refusals.last().unwrap().outcome.as_str(), "denied");
    assert!(
        s.core.store.reviews(&req.id).await.unwrap().is_empty(),
        "no review without the factor"
    );
    assert!(s.audit_head().await > head);

    // A wrong code is refused and changes nothing.
    let err = bob.review(&req.id, true, "ok", Some(MfaProof::otp("123456"))).await.unwrap_err();
    assert_eq!(err.code(), Some("invalid_mfa"));
    let detail = bob
        .review(&req.id, true, "ok", Some(MfaProof::otp(&code(&bob_secret, s.clock().now()))))
        .await
        .unwrap();
    assert_eq!(detail.reviews[0].mfa_method.map(jitgate_core::factor::Factor::as_str), Some("totp"));
    assert!(detail.grant.is_some());

    // The proof made bob's session fresh: within the window the next approval needs no code.
    let req2 = alice
        .create_request(&request_body("prod-db", "dba", Some("30m"), "second table too"))
        .await
        .unwrap();
    assert_eq!(
        req2.mfa_method.map(jitgate_core::factor::Factor::as_str),
        Some("totp"),
        "alice's session is fresh too"
    );
    let d2 = bob.approve(&req2.id, "ok").await.unwrap();
    assert_eq!(d2.reviews[0].mfa_method.map(jitgate_core::factor::Factor::as_str), Some("totp"));

    // Roles that do not ask record nothing.
    let r3 = alice
        .create_request(&request_body("prod-db", "read", Some("30m"), "just reading"))
        .await
        .unwrap();
    assert_eq!(r3.mfa_method, None);
}

#[tokio::test]
async fn the_cli_asks_for_codes_through_flags() {
    let s = TestServer::spawn(true).await;
    s.cli_login("alice").await;
    s.cli_login("bob").await;
    // Enrol through the CLI in script mode: the secret comes out as JSON, the first code goes in.
    let out = s.cli("alice", &["--json", "mfa", "totp", "enroll"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let secret = out.json()["secret"].as_str().unwrap().to_owned();
    let first = code(&secret, s.clock().now());
    let out = s.cli("alice", &["--json", "mfa", "totp", "confirm", &first], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["recovery_codes"].as_array().unwrap().len(), 10);
    s.clock().advance(Duration::from_secs(6 * 60));

    let bob = s.login("bob").await;
    let (bob_secret, _) = enrol_totp(&s, &bob).await;
    s.clock().advance(Duration::from_secs(6 * 60));

    // Login without a code from a script: a clear refusal; with --otp it works.
    let out = s
        .cli("alice", &["login", "alice", "--password-stdin"], Some(&format!("{PASSWORD}\n")))
        .await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("--otp"), "{out:?}");
    let otp = code(&secret, s.clock().now());
    let out = s
        .cli(
            "alice",
            &["login", "alice", "--password-stdin", "--otp", &otp],
            Some(&format!("{PASSWORD}\n")),
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = s
        .cli(
            "alice",
            &[
                "--json",
                "request",
                "prod-db",
                "--role",
                "dba",
                "--for",
                "30m",
                "--reason",
                "rotate keys",
            ],
            None,
        )
        .await;
    assert_eq!(out.code, 0, "fresh from the login: {out:?}");
    let id = out.json()["id"].as_str().unwrap().to_owned();
    let out = s.cli("bob", &["--json", "approve", &id], None).await;
    assert_eq!(out.error_code(), "mfa_required", "{out:?}");
    let otp = code(&bob_secret, s.clock().now());
    let out = s.cli("bob", &["--json", "approve", &id, "--otp", &otp], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["reviews"][0]["mfa_method"], "totp");
    let out = s.cli("bob", &["--json", "mfa", "status"], None).await;
    assert_eq!(out.json()["totp"], true);
    assert_eq!(out.json()["recovery_codes_left"], 10);
}

#[tokio::test]
async fn a_recovery_code_works_exactly_once_and_a_new_set_voids_the_old() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    let (secret, codes) = enrol_totp(&s, &alice).await;
    let anon = Client::new(&s.url, None);
    // As typed by a person: upper case, spaces for dashes.
    let typed = codes[0].to_uppercase().replace('-', " ");
    anon.login_with("alice", PASSWORD, MfaProof::recovery_code(&typed)).await.unwrap();
    let again = anon
        .login_with("alice", PASSWORD, MfaProof::recovery_code(&codes[0]))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some("invalid_mfa"));
    let used = actions(&s, "mfa.verify").await;
    let success = used.iter().find(|e| e.details["method"] == "recovery_code").unwrap();
    assert_eq!(success.details["codes_left"], 9);

    // A new set needs a fresh factor, then voids every old code.
    s.clock().advance(Duration::from_secs(6 * 60));
    assert_eq!(alice.new_recovery_codes().await.unwrap_err().code(), Some("mfa_required"));
    alice.mfa_verify(&MfaProof::otp(&code(&secret, s.clock().now()))).await.unwrap();
    let fresh = alice.new_recovery_codes().await.unwrap();
    assert_eq!(fresh.codes.len(), 10);
    let old = anon
        .login_with("alice", PASSWORD, MfaProof::recovery_code(&codes[1]))
        .await
        .unwrap_err();
    assert_eq!(old.code(), Some("invalid_mfa"));
    anon.login_with("alice", PASSWORD, MfaProof::recovery_code(fresh.codes[0].expose()))
        .await
        .unwrap();

    // Removing the factor needs a fresh one too; afterwards the password alone logs in.
    s.clock().advance(Duration::from_secs(6 * 60));
    assert_eq!(alice.totp_remove().await.unwrap_err().code(), Some("mfa_required"));
    alice.mfa_verify(&MfaProof::otp(&code(&secret, s.clock().now()))).await.unwrap();
    alice.totp_remove().await.unwrap();
    anon.login("alice", PASSWORD).await.unwrap();
    let removed = actions(&s, "mfa.totp.remove").await;
    assert_eq!(removed.len(), 1);
}

#[tokio::test]
async fn passkeys_register_log_in_and_refuse_a_replayed_assertion() {
    let s = TestServer::spawn(true).await;
    let origin = Url::parse(&s.url.replace("127.0.0.1", "localhost")).unwrap();
    let alice = s.login("alice").await;
    let mut authenticator = SoftPasskey::new(true);

    let start = alice.passkey_start("laptop").await.unwrap();
    let options: CreationChallengeResponse = serde_json::from_value(start.options).unwrap();
    let credential = authenticator.do_registration(origin.clone(), options).unwrap();
    let added = alice
        .passkey_finish(&start.challenge_id, serde_json::to_value(&credential).unwrap())
        .await
        .unwrap();
    assert_eq!(added.method, "webauthn");
    assert_eq!(added.recovery_codes.unwrap().len(), 10, "the first factor brings recovery codes");
    let key_id = added.passkey.unwrap().id;
    // The registration challenge was single use.
    let again = alice
        .passkey_finish(&start.challenge_id, serde_json::to_value(&credential).unwrap())
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some("invalid_challenge"));

    // Log in: password, then the passkey.
    let anon = Client::new(&s.url, None);
    let LoginOutcome::MfaRequired { ticket, methods, .. } = anon.login_outcome("alice", PASSWORD, None).await.unwrap() else {
        panic!("a second factor is due");
    };
    assert!(methods.contains(&"webauthn".to_owned()));
    let challenge = anon.login_webauthn(ticket.expose()).await.unwrap();
    let options: RequestChallengeResponse = serde_json::from_value(challenge.options).unwrap();
    let assertion = authenticator.do_authentication(origin.clone(), options).unwrap();
    let proof = MfaProof {
        webauthn: Some(WebauthnAssertion {
            challenge_id: challenge.challenge_id.clone(),
            credential: serde_json::to_value(&assertion).unwrap(),
        }),
        ..MfaProof::default()
    };
    let session = anon.login_mfa(ticket.expose(), proof.clone()).await.unwrap();
    let alice2 = anon.with_token(&session.token);
    let status = alice2.mfa_status().await.unwrap();
    assert_eq!(status.passkeys.len(), 1);
    assert!(status.passkeys[0].last_used_at.is_some());

    // The same assertion again, with a new login: its challenge is gone, so it is refused.
    let LoginOutcome::MfaRequired { ticket, .. } = anon.login_outcome("alice", PASSWORD, None).await.unwrap() else {
        panic!("a second factor is due");
    };
    let replay = anon.login_mfa(ticket.expose(), proof).await.unwrap_err();
    assert_eq!(replay.code(), Some("invalid_mfa"));
    // And against a new challenge it does not match that challenge.
    let fresh_challenge = anon.login_webauthn(ticket.expose()).await.unwrap();
    let replay2 = MfaProof {
        webauthn: Some(WebauthnAssertion {
            challenge_id: fresh_challenge.challenge_id,
            credential: serde_json::to_value(&assertion).unwrap(),
        }),
        ..MfaProof::default()
    };
    assert_eq!(
        anon.login_mfa(ticket.expose(), replay2).await.unwrap_err().code(),
        Some("invalid_mfa")
    );

    // A passkey serves as step-up for an approval.
    let bob = s.login("bob").await;
    let mut bobs_key = SoftPasskey::new(true);
    let start = bob.passkey_start("yubikey").await.unwrap();
    let cred = bobs_key
        .do_registration(origin.clone(), serde_json::from_value(start.options).unwrap())
        .unwrap();
    bob.passkey_finish(&start.challenge_id, serde_json::to_value(&cred).unwrap())
        .await
        .unwrap();
    s.clock().advance(Duration::from_secs(6 * 60));
    let mut body = request_body("prod-db", "dba", Some("30m"), "check replication");
    let ch = alice2.webauthn_challenge().await.unwrap();
    let a = authenticator
        .do_authentication(origin.clone(), serde_json::from_value(ch.options).unwrap())
        .unwrap();
    body.mfa = Some(MfaProof {
        webauthn: Some(WebauthnAssertion {
            challenge_id: ch.challenge_id,
            credential: serde_json::to_value(&a).unwrap(),
        }),
        ..MfaProof::default()
    });
    let req = alice2.create_request(&body).await.unwrap();
    assert_eq!(req.mfa_method.map(jitgate_core::factor::Factor::as_str), Some("webauthn"));
    let ch = bob.webauthn_challenge().await.unwrap();
    let a = bobs_key
        .do_authentication(origin.clone(), serde_json::from_value(ch.options).unwrap())
        .unwrap();
    bob.mfa_verify(&MfaProof {
        webauthn: Some(WebauthnAssertion {
            challenge_id: ch.challenge_id,
            credential: serde_json::to_value(&a).unwrap(),
        }),
        ..MfaProof::default()
    })
    .await
    .unwrap();
    let d = bob.approve(&req.id, "ok").await.unwrap();
    assert_eq!(d.reviews[0].mfa_method.map(jitgate_core::factor::Factor::as_str), Some("webauthn"));

    // Removing it needs a fresh factor, which bob's step-up gave him but alice's login did not
    // keep past the window.
    s.clock().advance(Duration::from_secs(6 * 60));
    assert_eq!(alice2.passkey_remove(&key_id).await.unwrap_err().code(), Some("mfa_required"));
    assert_eq!(actions(&s, "mfa.webauthn.register").await.len(), 2);
}

#[tokio::test]
async fn codes_from_oathtool_are_accepted() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    let e = alice.totp_enrol().await.unwrap();
    let secret = e.secret.expose().to_owned();
    let oathtool = |at: Timestamp| {
        let now = format!("@{}", at.as_millis() / 1000);
        let out = std::process::Command::new("oathtool")
            .args(["--totp", "--base32", "--now", &now, &secret])
            .output()
            .expect("oathtool is installed (scripts/test.sh installs it)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let first = oathtool(s.clock().now());
    assert_eq!(first, code(&secret, s.clock().now()), "the two implementations agree");
    alice.totp_confirm(&first).await.unwrap();
    s.clock().advance(Duration::from_secs(90));
    let anon = Client::new(&s.url, None);
    anon.login_with("alice", PASSWORD, MfaProof::otp(&oathtool(s.clock().now())))
        .await
        .unwrap();
}

#[tokio::test]
async fn mfa_required_makes_enrolment_mandatory_before_requests_and_reviews() {
    let s = TestServer::spawn_with(Backend::Sqlite, true, |settings| settings.mfa_required = true).await;
    let alice = s.login("alice").await;
    let err = alice
        .create_request(&request_body("prod-db", "read", Some("30m"), "just reading"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("mfa_enrollment_required"));
    assert!(alice.mfa_status().await.unwrap().required);
    enrol_totp(&s, &alice).await;
    let req = alice
        .create_request(&request_body("prod-db", "read", Some("30m"), "just reading"))
        .await
        .unwrap();
    let bob = s.login("bob").await;
    assert_eq!(bob.approve(&req.id, "").await.unwrap_err().code(), Some("mfa_enrollment_required"));
    enrol_totp(&s, &bob).await;
    bob.approve(&req.id, "").await.unwrap();
}

#[tokio::test]
async fn attempt_limits_hold_across_instances_on_postgres() {
    let s = TestServer::spawn_pg(true).await;
    let alice = s.login("alice").await;
    let (secret, _) = enrol_totp(&s, &alice).await;
    // A second instance on the same database, with the same keys.
    let other = jitgate_server::Application::build(
        s.settings_for_another_instance(),
        Some(std::sync::Arc::new(s.clock().clone()) as SharedClock),
        Some("test.toml"),
    )
    .await
    .unwrap();
    let other_url = format!("http://{}", other.addr());
    let stop = other.stop_handle();
    let task = tokio::spawn(other.run_until_stopped());
    let here = Client::new(&s.url, None);
    let there = Client::new(&other_url, None);
    for n in 0..10 {
        let c = if n % 2 == 0 { &here } else { &there };
        assert_eq!(
            c.login_with("alice", PASSWORD, MfaProof::otp("999999")).await.unwrap_err().code(),
            Some("invalid_mfa")
        );
        s.clock().advance(Duration::from_secs(60));
    }
    let good = MfaProof::otp(&code(&secret, s.clock().now()));
    assert_eq!(
        there.login_with("alice", PASSWORD, good).await.unwrap_err().code(),
        Some("account_locked")
    );
    // A code accepted by one instance is a replay at the other.
    s.admin.unlock_user("alice").await.unwrap();
    let now_code = code(&secret, s.clock().now());
    here.login_with("alice", PASSWORD, MfaProof::otp(&now_code)).await.unwrap();
    assert_eq!(
        there
            .login_with("alice", PASSWORD, MfaProof::otp(&now_code))
            .await
            .unwrap_err()
            .code(),
        Some("mfa_replayed")
    );
    stop.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_second_factor_input_is_refused_and_changes_nothing() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    let anon = Client::new(&s.url, None);
    let head = s.audit_head().await;
    // Nothing to confirm, no passkey to challenge, a nameless passkey, a made-up ticket.
    assert_eq!(alice.totp_confirm("123456").await.unwrap_err().code(), Some("no_pending_enrolment"));
    assert_eq!(alice.webauthn_challenge().await.unwrap_err().code(), Some("no_passkey"));
    assert_eq!(alice.passkey_start("  ").await.unwrap_err().code(), Some("invalid_name"));
    assert_eq!(
        anon.login_mfa("jgt_made_up", MfaProof::otp("123456")).await.unwrap_err().code(),
        Some("invalid_ticket")
    );
    assert_eq!(anon.login_webauthn("jgt_made_up").await.unwrap_err().code(), Some("invalid_ticket"));
    assert_eq!(alice.totp_remove().await.unwrap_err().status(), Some(404));
    assert_eq!(alice.passkey_remove("nope").await.unwrap_err().status(), Some(404));
    assert_eq!(alice.new_recovery_codes().await.unwrap_err().code(), Some("no_factor"));
    assert_eq!(s.audit_head().await, head, "refused input leaves no trace but the refusal");

    let (secret, _) = enrol_totp(&s, &alice).await;
    let head = s.audit_head().await;
    // Two proofs at once, or none, or an unknown field: refused before anything is checked.
    let both = MfaProof {
        otp: Some("123456".into()),
        recovery_code: Some("abcd-efgh-jkmn-pqrs".into()),
        webauthn: None,
    };
    assert_eq!(alice.mfa_verify(&both).await.unwrap_err().code(), Some("invalid_mfa_proof"));
    assert_eq!(
        alice.mfa_verify(&MfaProof::default()).await.unwrap_err().code(),
        Some("invalid_mfa_proof")
    );
    let (status, text) = alice
        .raw(
            reqwest::Method::POST,
            "/api/v1/mfa/verify",
            "application/json",
            br#"{"otp":"1","pin":"2"}"#.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{text}");
    // A second enrolment while one is on is a conflict.
    assert_eq!(alice.totp_enrol().await.unwrap_err().code(), Some("totp_already_enrolled"));
    assert_eq!(s.audit_head().await, head);
    assert!(s.core.store.attempts("alice").await.unwrap().is_none(), "no attempt was counted");

    // The MFA answers match the documented schemas.
    let doc: serde_json::Value = serde_json::from_str(
        &anon
            .raw(reqwest::Method::GET, "/api/v1/openapi.json", "application/json", vec![])
            .await
            .unwrap()
            .1,
    )
    .unwrap();
    let schemas = doc["components"]["schemas"].clone();
    let bob = s.login("bob").await;
    let samples = vec![
        ("MfaStatus", serde_json::to_value(alice.mfa_status().await.unwrap()).unwrap()),
        ("TotpEnrolment", serde_json::to_value(bob.totp_enrol().await.unwrap()).unwrap()),
        (
            "LoginOutcome",
            serde_json::to_value(anon.login_outcome("alice", PASSWORD, None).await.unwrap()).unwrap(),
        ),
        (
            "LoginOutcome",
            serde_json::to_value(anon.login_outcome("carol", PASSWORD, None).await.unwrap()).unwrap(),
        ),
        (
            "SteppedUp",
            serde_json::to_value(alice.mfa_verify(&MfaProof::otp(&code(&secret, s.clock().now()))).await.unwrap()).unwrap(),
        ),
        (
            "RecoveryCodes",
            serde_json::to_value(alice.new_recovery_codes().await.unwrap()).unwrap(),
        ),
        (
            "WebauthnChallenge",
            serde_json::to_value(alice.passkey_start("key").await.unwrap()).unwrap(),
        ),
    ];
    for (name, value) in samples {
        crate::bad_input::conforms(
            &value,
            &serde_json::json!({"$ref": format!("#/components/schemas/{name}")}),
            &schemas,
            name,
        );
    }
}
