//! API tokens, attacked: a token does only what its scopes name, never what no token may do,
//! dies with its end, its revocation or its owner, is kept only as a hash, and is no session.

use crate::support::TestServer;
use jitgate_api::{CreateTokenBody, TokenScope};
use jitgate_client::Client;
use std::time::Duration;

fn body(name: &str, scopes: &[TokenScope], expires: Option<&str>) -> CreateTokenBody {
    CreateTokenBody {
        name: name.into(),
        scopes: scopes.to_vec(),
        expires_in: expires.map(str::to_owned),
    }
}

fn ask() -> jitgate_api::CreateRequestBody {
    serde_json::from_value(serde_json::json!({"resource": "prod-db", "role": "read", "reason": "nightly export job"})).unwrap()
}

async fn token_client(s: &TestServer, owner: &Client, scopes: &[TokenScope]) -> (Client, String) {
    let made = owner.create_token(&body("ci", scopes, None)).await.unwrap();
    (Client::new(&s.url, None).with_token(made.token.expose()), made.details.id)
}

#[tokio::test]
async fn a_token_does_only_what_its_scopes_name_and_never_what_no_token_may() {
    let s = TestServer::spawn(false).await;
    let alice = s.login("alice").await;
    let (reader, _) = token_client(&s, &alice, &[TokenScope::Read]).await;
    assert_eq!(reader.whoami().await.unwrap().username.as_str(), "alice");
    reader.requests(&Default::default()).await.unwrap();
    let refused = reader.create_request(&ask()).await.unwrap_err();
    assert_eq!((refused.status(), refused.code()), (Some(403), Some("token_scope")));
    let audit = s.admin.all_audit_events(0).await.unwrap();
    assert!(audit
        .iter()
        .any(|e| e.action == "api.token_scope" && e.actor == "alice" && e.details["needed"] == "request"));

    let (requester, _) = token_client(&s, &alice, &[TokenScope::Read, TokenScope::Request]).await;
    let request = requester.create_request(&ask()).await.unwrap();
    let bob = s.login("bob").await;
    let (bobs_reader, _) = token_client(&s, &bob, &[TokenScope::Read, TokenScope::Request]).await;
    assert_eq!(
        bobs_reader.approve(&request.id, "ok").await.unwrap_err().code(),
        Some("token_scope")
    );
    let (reviewer, _) = token_client(&s, &bob, &[TokenScope::Review]).await;
    reviewer.approve(&request.id, "ok").await.expect("review scope approves");

    // Whatever its scopes: no factors, no tokens, no passwords, no logout.
    let all: Vec<TokenScope> = TokenScope::ALL.iter().copied().filter(|x| *x != TokenScope::Admin).collect();
    let (everything, _) = token_client(&s, &alice, &all).await;
    assert_eq!(everything.totp_enrol().await.unwrap_err().code(), Some("token_scope"));
    assert_eq!(
        everything
            .create_token(&body("more", &[TokenScope::Read], None))
            .await
            .unwrap_err()
            .code(),
        Some("token_scope")
    );
    let pw = everything
        .change_password("alice", crate::support::PASSWORD, "another long password", None)
        .await;
    assert_eq!(pw.unwrap_err().code(), Some("token_scope"));
    assert_eq!(everything.logout().await.unwrap_err().code(), Some("token_scope"));
    assert_eq!(
        everything.users().await.unwrap_err().code(),
        Some("token_scope"),
        "admin endpoints need the admin scope"
    );

    // Only an administrator's token has the admin scope.
    let e = alice.create_token(&body("admin", &[TokenScope::Admin], None)).await.unwrap_err();
    assert_eq!(e.status(), Some(403));
    let (admin_token, _) = token_client(&s, &s.admin, &[TokenScope::Admin]).await;
    assert!(!admin_token.users().await.unwrap().is_empty());
    let e = admin_token.set_password("alice", "a new long password").await.unwrap_err();
    assert_eq!(e.code(), Some("token_scope"), "not even an admin token sets passwords");
    let new_user = jitgate_api::CreateUserBody {
        username: "puppet".parse().unwrap(),
        display_name: String::new(),
        password: Some("a long test password xx".into()),
        admin: false,
    };
    let e = admin_token.create_user(&new_user).await.unwrap_err();
    assert_eq!(e.code(), Some("token_scope"), "nor makes users, who could have passwords");
}

#[tokio::test]
async fn a_token_ends_with_its_time_its_revocation_and_its_owner_and_is_kept_only_as_a_hash() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    let made = alice.create_token(&body("nightly", &[TokenScope::Read], Some("1h"))).await.unwrap();
    let token = made.token.expose().to_owned();
    let t = Client::new(&s.url, None).with_token(&token);
    t.whoami().await.unwrap();
    // Only the hash is stored.
    let stored = s.core.store.api_tokens(None).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].token_hash, token);
    assert_eq!(stored[0].token_hash, jitgate_auth::token_hash(&token));
    assert!(stored[0].last_used_at.is_some(), "use is written down");

    s.clock().advance(Duration::from_secs(3601));
    assert_eq!(t.whoami().await.unwrap_err().status(), Some(401), "expired");
    let alice = s.login("alice").await;

    let made = alice.create_token(&body("second", &[TokenScope::Read], None)).await.unwrap();
    let t2 = Client::new(&s.url, None).with_token(made.token.expose());
    t2.whoami().await.unwrap();
    alice.revoke_token(&made.details.id).await.unwrap();
    assert_eq!(t2.whoami().await.unwrap_err().status(), Some(401), "revoked: at once");
    assert_eq!(alice.revoke_token(&made.details.id).await.unwrap_err().status(), Some(409));
    // Someone else's token is not bob's to revoke (nor to know of).
    let made = alice.create_token(&body("third", &[TokenScope::Read], None)).await.unwrap();
    let bob = s.login("bob").await;
    assert_eq!(bob.revoke_token(&made.details.id).await.unwrap_err().status(), Some(404));
    assert!(bob.tokens(false).await.unwrap().is_empty());
    assert_eq!(bob.tokens(true).await.unwrap_err().status(), Some(403));
    let admin = s.login("admin").await;
    assert_eq!(admin.tokens(true).await.unwrap().len(), 3);

    // A disabled owner's token dies with them.
    let t3 = Client::new(&s.url, None).with_token(made.token.expose());
    t3.whoami().await.unwrap();
    admin.set_user_disabled("alice", true).await.unwrap();
    assert_eq!(t3.whoami().await.unwrap_err().status(), Some(401));
    admin.set_user_disabled("alice", false).await.unwrap();
    assert_eq!(
        t3.whoami().await.unwrap_err().status(),
        Some(401),
        "revoked for good, as her sessions"
    );

    // A token is no session: not as the pages' cookie.
    let page = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/grants", s.url))
        .header("cookie", format!("jitgate_session={}", made.token.expose()))
        .send()
        .await
        .unwrap();
    assert!(page.status().is_redirection(), "to the sign-in page: {}", page.status());
    let actions: Vec<String> = admin.all_audit_events(0).await.unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(actions.iter().filter(|a| *a == "token.create").count(), 3);
    assert_eq!(actions.iter().filter(|a| *a == "token.revoke").count(), 1);
}

#[tokio::test]
async fn bad_token_requests_are_refused_and_make_nothing() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    for (b, code) in [
        (body("x", &[], None), "invalid_scopes"),
        (body("", &[TokenScope::Read], None), "invalid_name"),
        (body("x", &[TokenScope::Read], Some("soon")), "invalid_duration"),
        (body("x", &[TokenScope::Read], Some("30s")), "invalid_duration"),
        (body("x", &[TokenScope::Read], Some("400d")), "invalid_duration"),
    ] {
        assert_eq!(alice.create_token(&b).await.unwrap_err().code(), Some(code));
    }
    assert!(alice.tokens(false).await.unwrap().is_empty());
    // With a second factor, a session must have proved it lately to make a token.
    crate::mfa_support::enrol_totp(&s, &alice).await;
    s.clock().advance(Duration::from_secs(6 * 60));
    let e = alice.create_token(&body("x", &[TokenScope::Read], None)).await.unwrap_err();
    assert_eq!(e.code(), Some("mfa_required"));
}

#[tokio::test]
async fn scripts_use_a_token_through_the_cli() {
    let s = TestServer::spawn(false).await;
    let alice = s.login("alice").await;
    let made = alice.create_token(&body("cli", &[TokenScope::Read], None)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &'static [&'static str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
            .args(args)
            .env("JITGATE_CONFIG_DIR", dir.path().join("cli"))
            .env("JITGATE_SERVER", &s.url)
            .env("JITGATE_TOKEN", made.token.expose())
            .output()
    };
    let out = run(&["--json", "whoami"]).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"alice\""));
    let out = run(&["request", "prod-db", "--role", "read", "--reason", "nightly export job"])
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lacks the request scope"), "{err}");
}
