use crate::support::*;
use jitgate_client::Client;
use std::time::Duration;

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let s = TestServer::spawn(false).await;
    let anon = Client::new(&s.url, None);
    let wrong = anon.login("alice", "not the password at all").await.unwrap_err();
    let unknown = anon.login("nobody", "not the password at all").await.unwrap_err();
    let invalid = anon.login("Not A Name", "not the password at all").await.unwrap_err();
    for e in [&wrong, &unknown, &invalid] {
        assert_eq!((e.status(), e.code()), (Some(401), Some("invalid_credentials")));
        assert_eq!(e.to_string(), wrong.to_string());
    }
    let failures = s
        .admin
        .all_audit_events(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "auth.login" && e.outcome == "failure")
        .count();
    assert_eq!(failures, 3);
}

#[tokio::test]
async fn bootstrap_works_once_and_needs_the_setup_token() {
    let s = TestServer::spawn(false).await;
    let anon = Client::new(&s.url, None);
    let body = jitgate_api::BootstrapBody {
        setup_token: "jgsetup_guess".into(),
        username: "eve".parse().unwrap(),
        password: PASSWORD.into(),
    };
    assert_eq!(anon.bootstrap(&body).await.unwrap_err().code(), Some("invalid_setup_token"));
    assert!(s.core.store.user(&"eve".parse().unwrap()).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_disable_end_sessions_and_disable_revokes_grants() {
    let s = TestServer::spawn(false).await;
    s.cli_login("alice").await;
    let cred = s.dir.path().join("cli-alice/credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&cred).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let token = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&cred).unwrap()).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let who = s.cli("alice", &["--json", "whoami"], None).await.json();
    assert_eq!(who["username"], "alice");
    assert_eq!(s.cli("alice", &["logout"], None).await.code, 0);
    assert!(!cred.exists());
    let old = Client::new(&s.url, Some(token));
    assert_eq!(
        old.whoami().await.unwrap_err().code(),
        Some("unauthenticated"),
        "a logged-out token is dead"
    );
    let after = s.cli("alice", &["whoami"], None).await;
    assert_eq!(after.code, 1);
    assert!(after.stderr.contains("jitgate login"), "{after:?}");

    let alice = s.login("alice").await;
    let req = alice
        .create_request(&request_body("prod-db", "read", None, "INC-5 check"))
        .await
        .unwrap();
    let grant = s.login("bob").await.approve(&req.id, "").await.unwrap().grant.unwrap();
    let disabled = s.cli("admin", &["--json", "admin", "user", "disable", "alice"], None).await;
    // The admin's CLI is not logged in yet: log in and retry.
    assert_eq!(disabled.code, 1);
    s.cli_login("admin").await;
    let disabled = s.cli("admin", &["--json", "admin", "user", "disable", "alice"], None).await;
    assert_eq!(disabled.code, 0, "{disabled:?}");
    assert_eq!(alice.whoami().await.unwrap_err().code(), Some("unauthenticated"));
    assert_eq!(
        s.admin.grant(&grant.id).await.unwrap().status,
        jitgate_core::grant::GrantStatus::Revoked
    );
    assert_eq!(
        Client::new(&s.url, None).login("alice", PASSWORD).await.unwrap_err().code(),
        Some("invalid_credentials")
    );
}

#[tokio::test]
async fn sessions_end_after_idle_and_absolute_timeouts() {
    let s = TestServer::spawn(true).await;
    let alice = s.login("alice").await;
    s.clock().advance(Duration::from_secs(50 * 60));
    alice.whoami().await.unwrap();
    // Touched at 50m; idle for 59m more is fine, 60m is not.
    s.clock().advance(Duration::from_secs(59 * 60));
    alice.whoami().await.unwrap();
    s.clock().advance(Duration::from_secs(60 * 60));
    assert_eq!(alice.whoami().await.unwrap_err().code(), Some("unauthenticated"));

    let bob = s.login("bob").await;
    for _ in 0..14 {
        s.clock().advance(Duration::from_secs(55 * 60));
        if bob.whoami().await.is_err() {
            break;
        }
    }
    assert_eq!(
        bob.whoami().await.unwrap_err().code(),
        Some("unauthenticated"),
        "12h absolute limit"
    );
}

#[tokio::test]
async fn only_admins_administer() {
    let s = TestServer::spawn(false).await;
    let alice = s.login("alice").await;
    assert_eq!(alice.users().await.unwrap_err().status(), Some(403));
    assert_eq!(alice.set_member("db-owners", "alice", true).await.unwrap_err().status(), Some(403));
    assert_eq!(
        alice.set_password("bob", "a brand new password").await.unwrap_err().status(),
        Some(403)
    );
    assert_eq!(alice.audit_verify().await.unwrap_err().status(), Some(403));
    assert_eq!(
        alice
            .requests(&jitgate_client::ListParams {
                scope: Some("all".into()),
                ..Default::default()
            })
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );
    assert!(!s
        .core
        .store
        .user_groups(&"alice".parse().unwrap())
        .await
        .unwrap()
        .contains(&"db-owners".parse().unwrap()));
    // Group membership through the admin API takes effect for approvals at once.
    s.admin.set_member("db-owners", "dave", true).await.unwrap();
    let req = alice
        .create_request(&request_body("prod-db", "read", None, "INC-6 check"))
        .await
        .unwrap();
    let done = s.login("dave").await.approve(&req.id, "").await.unwrap();
    assert_eq!(done.request.status, jitgate_core::request::RequestStatus::Approved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_from_the_api_can_be_managed_but_config_ones_cannot() {
    let s = TestServer::spawn(false).await;
    s.cli_login("admin").await;
    let file = s.dir.path().join("staging.toml");
    std::fs::write(
        &file,
        "name = \"staging-db\"\n[roles.read]\nrequesters = [\"engineers\"]\nstages = [{ groups = [\"db-owners\"] }]\nmfa = []\n",
    )
    .unwrap();
    let out = s
        .cli("admin", &["--json", "admin", "resource", "apply", file.to_str().unwrap()], None)
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["managed_by"], "api");
    let alice = s.login("alice").await;
    let r = alice
        .create_request(&request_body("staging-db", "read", None, "try staging"))
        .await
        .unwrap();
    assert_eq!(r.resource.as_str(), "staging-db");

    // A resource declared in the config file is refused through the API.
    let mut prod = alice
        .resources()
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.resource.name.as_str() == "prod-db")
        .unwrap()
        .resource;
    prod.description = "changed".into();
    assert_eq!(s.admin.put_resource(&prod).await.unwrap_err().code(), Some("managed_by_config"));
    assert_eq!(
        s.admin.delete_resource("prod-db").await.unwrap_err().code(),
        Some("managed_by_config")
    );
    // An invalid one is refused and nothing changes.
    let mut broken = prod.clone();
    broken.name = "broken-db".parse().unwrap();
    broken.roles.values_mut().for_each(|p| p.stages.clear());
    assert_eq!(s.admin.put_resource(&broken).await.unwrap_err().code(), Some("invalid_resource"));
    assert_eq!(alice.resources().await.unwrap().len(), 2);
    // Only admins manage resources.
    assert_eq!(alice.delete_resource("staging-db").await.unwrap_err().status(), Some(403));
    let out = s.cli("admin", &["admin", "resource", "delete", "staging-db"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(alice.resources().await.unwrap().len(), 1);
    assert_eq!(
        alice
            .create_request(&request_body("staging-db", "read", None, "try staging"))
            .await
            .unwrap_err()
            .code(),
        Some("unknown_resource")
    );
}
