//! Cedar policies end to end, under a manual clock: working hours in a time zone, on-call,
//! forbids over permits, break-glass with its alert and after-the-fact review, explain, and
//! reloads that keep the last good set.

use crate::mfa_support::{code, enrol_totp};
use crate::support::*;
use jitgate_api::{ExplainBody, MfaProof};
use jitgate_client::Client;
use jitgate_core::request::RequestStatus;
use jitgate_core::Timestamp;
use jitgate_server::clock::Clock;
use std::path::{Path, PathBuf};

pub const POLICIES: &str = r#"
@id("read-in-working-hours")
permit(principal, action == Action::"auto_approve", resource == Role::"prod-db/read")
when {
    context.local.weekday <= 5 && context.local.hour >= 9 && context.local.hour < 18 &&
    context.duration_secs <= 3600
};

@id("on-call-read")
permit(principal, action == Action::"auto_approve", resource == Role::"prod-db/read")
when { context.on_call };

@id("no-write-at-weekends")
forbid(principal, action in [Action::"request", Action::"auto_approve", Action::"break_glass"], resource == Role::"prod-db/write")
when { context.local.weekday >= 6 };

@id("oncall-break-glass")
permit(principal in Group::"oncall", action == Action::"break_glass", resource in Resource::"prod-db");

@id("no-contractor-approvals")
forbid(principal in Group::"contractors", action == Action::"approve", resource);
"#;

fn at(t: &str) -> Timestamp {
    Timestamp::parse_rfc3339(t).unwrap()
}

/// A test server whose policies are `text`, in Europe/Berlin, with `oncall` as the on-call group.
async fn spawn_with_policies(text: &str) -> (TestServer, PathBuf) {
    spawn_with_policies_and(text, |_| {}).await
}

async fn spawn_with_policies_and(text: &str, tweak: impl FnOnce(&mut jitgate_server::Settings)) -> (TestServer, PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::write(dir.join("main.cedar"), text).unwrap();
    let policy_dir = dir.clone();
    let s = TestServer::spawn_with(Backend::Sqlite, true, move |settings| {
        settings.policy_dir = Some(policy_dir);
        settings.policy_time_zone = "Europe/Berlin".into();
        settings.on_call_group = Some("oncall".parse().unwrap());
        tweak(settings);
    })
    .await;
    (s, dir)
}

async fn ask(c: &Client, role: &str, reason: &str) -> Result<jitgate_core::request::AccessRequest, jitgate_client::ClientError> {
    c.create_request(&request_body("prod-db", role, Some("30m"), reason)).await
}

#[tokio::test]
async fn working_hours_and_on_call_auto_approve_and_a_forbid_beats_them() {
    let (s, _dir) = spawn_with_policies(POLICIES).await;
    let alice = s.login("alice").await;

    // Tuesday 10:00 UTC is 11:00 in Berlin: approved at once, by the policy, with a grant.
    s.clock().set(at("2026-11-24T09:00:00Z"));
    let r = ask(&alice, "read", "check the nightly job").await.unwrap();
    assert_eq!(r.status, RequestStatus::Approved);
    let d = alice.request(&r.id).await.unwrap();
    assert_eq!(d.reviews[0].reviewer.to_string(), "policy:read-in-working-hours");
    assert!(d.grant.unwrap().status.is_live());

    // 22:00 in Berlin on the Tuesday, and 10:00 on a Sunday: it waits for a person.
    s.clock().set(at("2026-11-24T21:00:00Z"));
    let alice = s.login("alice").await;
    assert_eq!(ask(&alice, "read", "late look at it").await.unwrap().status, RequestStatus::Pending);
    s.clock().set(at("2026-11-29T09:00:00Z"));
    let (alice, admin) = (s.login("alice").await, s.login("admin").await);
    assert_eq!(
        ask(&alice, "read", "sunday look at it").await.unwrap().status,
        RequestStatus::Pending
    );

    // Whoever is on call is approved at any hour.
    admin.set_member("oncall", "dave", true).await.unwrap();
    let dave = s.login("dave").await;
    let r = ask(&dave, "read", "paged at the weekend").await.unwrap();
    assert_eq!(r.status, RequestStatus::Approved);
    assert_eq!(
        dave.request(&r.id).await.unwrap().reviews[0].reviewer.to_string(),
        "policy:on-call-read"
    );

    // A forbid beats the config's permit: no write requests at weekends, even for engineers.
    let mut body = request_body("prod-db", "write", Some("30m"), "weekend migration");
    body.ticket = Some("INC-7".into());
    let err = alice.create_request(&body).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(403), Some("forbidden_by_policy")));
    assert!(err.to_string().contains("no-write-at-weekends"), "{err}");
    let denied = admin.all_audit_events(0).await.unwrap();
    let last = denied.iter().rev().find(|e| e.action == "request.create").unwrap();
    assert_eq!(last.outcome.as_str(), "denied");
    admin.set_member("contractors", "bob", true).await.unwrap();
    s.clock().set(at("2026-11-24T09:00:00Z"));
    let alice = s.login("alice").await;
    assert_eq!(alice.create_request(&body).await.unwrap().status, RequestStatus::Pending);

    // A forbid on approvers: contractors approve nothing, whatever their groups allow.
    s.clock().set(at("2026-11-24T21:00:00Z"));
    let alice = s.login("alice").await;
    let r = ask(&alice, "read", "one more look").await.unwrap();
    let err = s.login("bob").await.approve(&r.id, "ok").await.unwrap_err();
    assert_eq!(err.code(), Some("forbidden_by_policy"));
    assert!(err.to_string().contains("no-contractor-approvals"));
    s.login("carol").await.approve(&r.id, "ok").await.unwrap();
}

#[tokio::test]
async fn break_glass_grants_at_once_alerts_the_approvers_and_waits_for_their_review() {
    // The security channel: a webhook that takes break-glass only.
    let (hooks, url) = crate::notifications::hook_receiver().await;
    hooks.lock().unwrap().window = 365 * 86400; // the server signs with its manual clock
    let (s, _dir) = spawn_with_policies_and(
        POLICIES,
        crate::notifications::with_notifications(&format!(
            "[notifications]\n[[notifications.channels]]\nname = \"security\"\nkind = \"webhook\"\nurl = \"{url}\"\nevents = [\"break_glass.used\", \"request.created\"]\n"
        )),
    )
    .await;
    s.admin
        .set_channel_secret("security", crate::notifications::HOOK_SECRET)
        .await
        .unwrap();
    s.clock().set(at("2026-11-24T09:00:00Z"));
    s.admin.set_member("oncall", "dave", true).await.unwrap();
    let dave = s.login("dave").await;
    let alice = s.login("alice").await;
    let glass = |reason: &str, dur: &str| {
        let mut b = request_body("prod-db", "write", Some(dur), reason);
        b.break_glass = true;
        b.ticket = Some("INC-99".into());
        b
    };
    // Not on call: no policy lets alice break glass.
    let err = alice.create_request(&glass("prod is down", "30m")).await.unwrap_err();
    assert_eq!(err.code(), Some("break_glass_not_allowed"));
    // A fresh second factor is always needed, and a reason, and no more than the cap.
    let err = dave.create_request(&glass("prod is down", "30m")).await.unwrap_err();
    assert_eq!(err.code(), Some("mfa_enrollment_required"));
    let (secret, _) = enrol_totp(&s, &dave).await;
    s.clock().advance(std::time::Duration::from_secs(600));
    let err = dave.create_request(&glass("prod is down", "30m")).await.unwrap_err();
    assert_eq!(err.code(), Some("mfa_required"));
    assert_eq!(
        dave.create_request(&glass("  ", "30m")).await.unwrap_err().code(),
        Some("reason_required")
    );
    assert_eq!(
        dave.create_request(&glass("prod is down", "2h")).await.unwrap_err().code(),
        Some("break_glass_too_long")
    );
    let mut body = glass("prod is down, INC-99", "30m");
    body.mfa = Some(MfaProof::otp(&code(&secret, s.clock().now())));
    let r = dave.create_request(&body).await.unwrap();
    assert_eq!(r.status, RequestStatus::Approved);
    assert!(r.break_glass && r.acknowledged_at.is_none());
    let detail = dave.request(&r.id).await.unwrap();
    assert_eq!(detail.reviews[0].reviewer.to_string(), "policy:oncall-break-glass");
    assert!(detail.grant.unwrap().status.is_live(), "access at once");

    // Every approver of the resource is alerted; the requester is not.
    for approver in ["bob", "carol", "sam"] {
        let inbox = s.login(approver).await.notifications().await.unwrap();
        assert_eq!(inbox.len(), 1, "{approver}");
        assert_eq!(inbox[0].subject, r.id);
        assert!(inbox[0].message.contains("dave broke glass"));
        assert!(inbox[0].message.contains(&format!("jitgate ack {}", r.id)), "{}", inbox[0].message);
        assert!(inbox[0].acknowledged_by.is_none());
    }
    assert!(dave.notifications().await.unwrap().is_empty());
    // The security channel hears of it, naming every approver; nobody is asked to approve what
    // was granted already.
    crate::support::eventually("the security channel is told", || async {
        !crate::notifications::events_of(&hooks, &r.id).is_empty()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(crate::notifications::events_of(&hooks, &r.id), ["break_glass.used"]);
    let told = hooks.lock().unwrap().accepted[0].clone();
    assert_eq!(told["recipients"], serde_json::json!(["bob", "carol", "sam"]));
    assert!(told["summary"].as_str().unwrap().contains("dave broke glass"), "{told}");
    assert_eq!(told["request"]["break_glass"], true);

    // The after-the-fact review stays on the approvers' list until one acknowledges it.
    let bob = s.login("bob").await;
    let review_scope = jitgate_client::ListParams {
        scope: Some("review".into()),
        ..Default::default()
    };
    assert!(bob.requests(&review_scope).await.unwrap().iter().any(|v| v.request.id == r.id));
    assert_eq!(
        dave.acknowledge(&r.id, "").await.unwrap_err().code(),
        Some("self_approval_forbidden")
    );
    assert_eq!(alice.acknowledge(&r.id, "").await.unwrap_err().status(), Some(404));
    let acked = bob.acknowledge(&r.id, "looked at the session, fine").await.unwrap();
    assert_eq!(acked.acknowledged_by.unwrap().as_str(), "bob");
    assert_eq!(
        s.login("carol").await.acknowledge(&r.id, "").await.unwrap_err().code(),
        Some("already_acknowledged")
    );
    // The alert now says who acknowledged it, and no longer asks anyone to.
    let inbox = s.login("sam").await.notifications().await.unwrap();
    assert_eq!(inbox[0].acknowledged_by.as_ref().map(|u| u.as_str()), Some("bob"));
    assert!(inbox[0].acknowledged_at.is_some());
    assert!(!inbox[0].message.contains("jitgate ack"), "{}", inbox[0].message);
    // The break-glass refusals are on the record with their codes, by the person refused.
    let events = s.admin.all_audit_events(0).await.unwrap();
    for (who, code) in [
        ("alice", "break_glass_not_allowed"),
        ("dave", "break_glass_too_long"),
        ("carol", "already_acknowledged"),
    ] {
        assert!(
            events.iter().any(|e| e.actor == who && e.details["code"] == code),
            "no event for {who}'s {code}"
        );
    }
    let list = bob
        .requests(&jitgate_client::ListParams {
            scope: Some("review".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!list.iter().any(|v| v.request.id == r.id));
    let events: Vec<String> = s.admin.all_audit_events(0).await.unwrap().into_iter().map(|e| e.action).collect();
    for a in ["request.break_glass", "alert.break_glass", "grant.create", "request.acknowledge"] {
        assert!(events.iter().any(|e| e == a), "{a} missing");
    }

    // The CLI verbs.
    s.cli_login("bob").await;
    let out = s.cli("bob", &["--json", "notifications"], None).await;
    assert_eq!(out.json()[0]["subject"], r.id.as_str());
}

#[tokio::test]
async fn explain_names_the_deciding_policies() {
    let (s, _dir) = spawn_with_policies(POLICIES).await;
    s.clock().set(at("2026-11-24T09:00:00Z"));
    let explain = |user: &str, role: &str, when: &str| ExplainBody {
        user: user.into(),
        resource: "prod-db".into(),
        role: role.into(),
        duration: Some("30m".into()),
        at: Some(at(when)),
        start_at: None,
        reason: "why".into(),
        ticket: None,
    };
    let e = s.admin.explain(&explain("alice", "read", "2026-11-24T09:00:00Z")).await.unwrap();
    assert_eq!(e.time_zone, "Europe/Berlin");
    let by = |action: &str| e.decisions.iter().find(|d| d.action == action).unwrap().clone();
    assert_eq!(
        (by("request").allowed, by("request").policies),
        (true, vec!["role:prod-db/read:request".to_owned()])
    );
    assert_eq!(by("auto_approve").policies, vec!["read-in-working-hours"]);
    assert!(!by("break_glass").allowed && by("break_glass").policies.is_empty());
    assert!(!by("approve").allowed, "alice approves nothing");
    let sunday = s.admin.explain(&explain("alice", "write", "2026-11-29T09:00:00Z")).await.unwrap();
    let req = sunday.decisions.iter().find(|d| d.action == "request").unwrap();
    assert_eq!(
        (req.allowed, req.policies.clone()),
        (false, vec!["no-write-at-weekends".to_owned()])
    );
    let bob = s.admin.explain(&explain("bob", "write", "2026-11-24T09:00:00Z")).await.unwrap();
    let owner = bob.decisions.iter().find(|d| d.stage.as_deref() == Some("owner")).unwrap();
    assert_eq!(owner.policies, vec!["role:prod-db/write:approve:owner"]);

    // A person may explain their own access, not someone else's.
    let alice = s.login("alice").await;
    assert!(alice.explain(&explain("alice", "read", "2026-11-24T09:00:00Z")).await.is_ok());
    assert_eq!(
        alice
            .explain(&explain("bob", "read", "2026-11-24T09:00:00Z"))
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );

    // The CLI prints the ids.
    s.cli_login("admin").await;
    let out = s
        .cli(
            "admin",
            &[
                "policy",
                "explain",
                "--user",
                "alice",
                "--resource",
                "prod-db",
                "--role",
                "read",
                "--for",
                "30m",
                "--at",
                "2026-11-24T09:00:00Z",
            ],
            None,
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("read-in-working-hours") && out.stdout.contains("role:prod-db/read:request"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn a_failed_reload_keeps_the_last_good_policies() {
    let (s, dir) = spawn_with_policies(POLICIES).await;
    s.clock().set(at("2026-11-24T09:00:00Z"));
    let alice = s.login("alice").await;
    std::fs::write(dir.join("main.cedar"), POLICIES.replace("context.on_call", "context.on_duty")).unwrap();
    let err = s.admin.reload().await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(422), Some("policy_invalid")));
    assert!(err.to_string().contains("main.cedar:11:"), "{err}");
    // Still the old set: working hours still approve.
    assert_eq!(ask(&alice, "read", "still approved").await.unwrap().status, RequestStatus::Approved);
    let reloads: Vec<_> = s
        .admin
        .all_audit_events(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "policy.reload")
        .collect();
    assert_eq!(reloads.last().unwrap().outcome.as_str(), "failure");
    // Non-admins cannot reload.
    assert_eq!(alice.reload().await.unwrap_err().status(), Some(403));

    // A good set takes effect: without the working-hours policy, read waits for a person.
    let without: String = POLICIES
        .split("@id(\"on-call-read\")")
        .nth(1)
        .map(|rest| format!("@id(\"on-call-read\"){rest}"))
        .unwrap();
    std::fs::write(dir.join("main.cedar"), without).unwrap();
    let report = s.admin.reload().await.unwrap();
    assert!(!report.policies.contains(&"read-in-working-hours".to_owned()));
    assert_eq!(ask(&alice, "read", "now it waits").await.unwrap().status, RequestStatus::Pending);
}

fn write_config(dir: &Path, cedar: &str) -> PathBuf {
    std::fs::write(dir.join("main.cedar"), cedar).unwrap();
    let cfg = dir.join("jitgate.toml");
    std::fs::write(
        &cfg,
        format!("{CONFIG}\n[policy]\ntime_zone = \"Europe/Berlin\"\n\n[gateway]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    cfg
}

#[tokio::test]
async fn a_policy_with_an_unknown_attribute_is_refused_at_start_and_by_policy_check() {
    let dir = tempfile::tempdir().unwrap();
    let bad = "\n\npermit(principal, action == Action::\"auto_approve\", resource)\nwhen { context.weather == \"sunny\" };\n";
    let cfg = write_config(dir.path(), bad);
    let mut settings = jitgate_server::Settings::from_file(&cfg).unwrap();
    settings.http = "127.0.0.1:0".parse().unwrap();
    settings.data_dir = dir.path().join("data");
    let err = jitgate_server::Application::build(settings, None, None)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("main.cedar:4:"), "{err}");
    assert!(err.contains("weather"), "{err}");

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["policy", "check", "--config", cfg.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("main.cedar:4:"), "{stdout}");
    let good = write_config(dir.path(), POLICIES);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["--json", "policy", "check", "--config", good.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["policies"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn sighup_reloads_the_policies_of_a_running_server() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), POLICIES);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["serve", "--config", cfg.to_str().unwrap(), "--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut next_matching = async |needle: &str| {
        let wait = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("the server ended before printing {needle:?}");
        });
        wait.await.unwrap_or_else(|_| panic!("no {needle:?} within 20 s"))
    };
    next_matching("listening on").await;
    let pid = child.id().unwrap().to_string();
    let hup = || std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap();

    std::fs::write(
        dir.path().join("main.cedar"),
        "permit(principal, action, resource) when { context.nope };",
    )
    .unwrap();
    assert!(hup().success());
    // (The audit event's own log line names the policies too; the message is what counts.)
    let refused = next_matching("not reloaded").await;
    assert!(refused.contains("policies"), "{refused}");
    let problem = next_matching("main.cedar").await;
    assert!(problem.contains("main.cedar:1:") && problem.contains("nope"), "{problem}");

    std::fs::write(dir.path().join("main.cedar"), POLICIES).unwrap();
    assert!(hup().success());
    let done = next_matching("policies reloaded").await;
    assert!(done.contains("policies reloaded (5 from files)"), "{done}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn an_on_call_shift_from_the_config_counts_while_it_lasts() {
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::write(dir.join("main.cedar"), POLICIES).unwrap();
    let s = TestServer::spawn_with(Backend::Sqlite, true, move |settings| {
        settings.policy_dir = Some(dir);
        settings.policy_time_zone = "Europe/Berlin".into();
        settings.on_call = vec![jitgate_server::config::OnCallShift {
            user: "dave".parse().unwrap(),
            from: at("2026-11-29T00:00:00Z"),
            until: at("2026-11-30T00:00:00Z"),
        }];
    })
    .await;
    s.clock().set(at("2026-11-28T21:00:00Z"));
    let dave = s.login("dave").await;
    assert_eq!(ask(&dave, "read", "before the shift").await.unwrap().status, RequestStatus::Pending);
    s.clock().set(at("2026-11-29T03:00:00Z"));
    let dave = s.login("dave").await;
    let r = ask(&dave, "read", "during the shift").await.unwrap();
    assert_eq!(r.status, RequestStatus::Approved);
    assert_eq!(
        dave.request(&r.id).await.unwrap().reviews[0].reviewer.to_string(),
        "policy:on-call-read"
    );
}

/// Issue #18: decisions read a person's live grants by index, not the newest 1,000 of their
/// history: with 1,500 later, ended grants, the one live grant is still in the context.
#[tokio::test]
async fn a_live_grant_behind_a_long_history_is_in_the_policy_context() {
    const NEEDS_READ: &str = r#"
@id("write-needs-a-live-read")
forbid(principal, action == Action::"request", resource == Role::"prod-db/write")
unless { context.active_grants.contains("prod-db/read") };
"#;
    let (s, _dir) = spawn_with_policies(NEEDS_READ).await;
    let alice = s.login("alice").await;
    let r = ask(&alice, "read", "look at the data").await.unwrap();
    s.login("bob").await.approve(&r.id, "ok").await.unwrap();
    // 1,500 ended grants of alice's, all newer than the live one.
    s.clock().advance(std::time::Duration::from_secs(60));
    let now = s.clock().now();
    let mut tx = s.core.begin().await.unwrap();
    for i in 0..1500 {
        let req = jitgate_core::request::AccessRequest {
            id: format!("req_hist{i:06}"),
            requester: "alice".parse().unwrap(),
            resource: "prod-db".parse().unwrap(),
            role: "read".parse().unwrap(),
            reason: "history".into(),
            ticket: None,
            duration_secs: 60,
            start_at: None,
            status: RequestStatus::Approved,
            created_at: now,
            expires_at: now,
            decided_at: Some(now),
            extends_grant: None,
            mfa_method: None,
            break_glass: false,
            acknowledged_by: None,
            acknowledged_at: None,
        };
        tx.insert_request(&req).await.unwrap();
        let mut g = jitgate_core::grant::Grant::from_request(format!("grt_hist{i:06}"), &req, None, now);
        g.status = jitgate_core::grant::GrantStatus::Expired;
        g.ends_at = now;
        tx.insert_grant(&g).await.unwrap();
    }
    s.core.commit(tx).await.unwrap();
    let mut write = request_body("prod-db", "write", Some("30m"), "fix the data");
    write.ticket = Some("INC-7".into());
    alice.create_request(&write).await.expect("the live read grant is seen");
    // And without it (revoked), the forbid holds.
    let active = jitgate_client::ListParams {
        status: Some("active".into()),
        ..Default::default()
    };
    let grants = alice.grants(&active).await.unwrap();
    let live = grants
        .iter()
        .find(|g| g.status.as_str() == "active")
        .unwrap_or_else(|| panic!("{grants:?}"));
    alice.revoke(&live.id, "done").await.unwrap();
    let e = alice.create_request(&write).await.unwrap_err();
    assert!(e.to_string().contains("write-needs-a-live-read"), "{e}");
}
