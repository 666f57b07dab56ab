#![allow(clippy::unwrap_used)]

use super::*;

const RESOURCES: &str = r#"
[[resources]]
name = "prod-db"
[resources.roles.read]
requesters = ["engineers"]
max_duration = "1h"
stages = [{ name = "owner", groups = ["db-owners"] }]
[resources.roles.write]
requesters = ["engineers"]
max_duration = "2h"
stages = [{ name = "owner", groups = ["db-owners"] }, { name = "security", groups = ["security"] }]
"#;

pub const WORKING_HOURS: &str = r#"
@id("read-in-working-hours")
permit(principal, action == Action::"auto_approve", resource == Role::"prod-db/read")
when {
    context.local.weekday <= 5 && context.local.hour >= 9 && context.local.hour < 18 &&
    context.duration_secs <= 3600
};

@id("on-call-anytime")
permit(principal, action == Action::"auto_approve", resource in Resource::"prod-db")
when { context.on_call };

@id("no-write-at-weekends")
forbid(principal, action in [Action::"request", Action::"auto_approve"], resource == Role::"prod-db/write")
when { context.local.weekday >= 6 };

@id("oncall-break-glass")
permit(principal in Group::"oncall", action == Action::"break_glass", resource in Resource::"prod-db");
"#;

fn resources() -> Vec<Resource> {
    #[derive(serde::Deserialize)]
    struct F {
        resources: Vec<Resource>,
    }
    toml::from_str::<F>(RESOURCES).unwrap().resources
}

fn engine(text: &str) -> PolicyEngine {
    PolicyEngine::load(
        &[PolicyFile {
            name: "policies/main.cedar".into(),
            text: text.into(),
        }],
        "Europe/Berlin",
    )
    .unwrap()
}

fn at(rfc3339: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc3339).unwrap()
}

struct World {
    user: Username,
    groups: BTreeSet<GroupName>,
    grants: BTreeSet<String>,
    resources: Vec<Resource>,
    role: RoleName,
}

impl World {
    fn new(user: &str, groups: &[&str], role: &str) -> Self {
        Self {
            user: user.parse().unwrap(),
            groups: groups.iter().map(|g| g.parse().unwrap()).collect(),
            grants: BTreeSet::new(),
            resources: resources(),
            role: role.parse().unwrap(),
        }
    }

    fn facts(&self, now: Timestamp, on_call: bool) -> Facts<'_> {
        Facts {
            principal: Person {
                name: &self.user,
                groups: &self.groups,
                is_admin: false,
            },
            resource: &self.resources[0],
            role: &self.role,
            duration: Duration::from_secs(1800),
            reason: "looking into INC-1",
            ticket: None,
            active_grants: &self.grants,
            on_call,
            now,
            window: None,
            review: None,
        }
    }
}

#[test]
fn working_hours_auto_approve_in_the_policy_time_zone() {
    let e = engine(WORKING_HOURS);
    let alice = World::new("alice", &["engineers"], "read");
    // 2026-11-24 is a Tuesday; Berlin is UTC+1 in November.
    let tuesday_10 = alice.facts(at("2026-11-24T09:00:00Z"), false);
    let d = e.decide(PolicyAction::AutoApprove, &tuesday_10);
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.policies, vec!["read-in-working-hours"]);
    let tuesday_22 = alice.facts(at("2026-11-24T21:00:00Z"), false);
    assert!(!e.decide(PolicyAction::AutoApprove, &tuesday_22).allowed);
    let sunday_10 = alice.facts(at("2026-11-29T09:00:00Z"), false);
    assert!(!e.decide(PolicyAction::AutoApprove, &sunday_10).allowed);
    // 08:30 UTC is 09:30 in Berlin: inside. In UTC it would have been outside.
    assert!(
        e.decide(PolicyAction::AutoApprove, &alice.facts(at("2026-11-24T08:30:00Z"), false))
            .allowed
    );
}

#[test]
fn on_call_auto_approves_at_any_hour() {
    let e = engine(WORKING_HOURS);
    let alice = World::new("alice", &["engineers"], "read");
    let d = e.decide(PolicyAction::AutoApprove, &alice.facts(at("2026-11-29T03:00:00Z"), true));
    assert!(d.allowed);
    assert_eq!(d.policies, vec!["on-call-anytime"]);
}

#[test]
fn a_forbid_beats_every_permit() {
    let e = engine(WORKING_HOURS);
    let alice = World::new("alice", &["engineers"], "write");
    let weekday = alice.facts(at("2026-11-24T09:00:00Z"), true);
    let d = e.decide(PolicyAction::Request, &weekday);
    assert!(d.allowed);
    assert_eq!(d.policies, vec!["role:prod-db/write:request"]);
    // On call (a permit for auto_approve) on a Sunday: the forbid wins, and is named.
    let sunday = alice.facts(at("2026-11-29T09:00:00Z"), true);
    let d = e.decide(PolicyAction::AutoApprove, &sunday);
    assert!(!d.allowed);
    assert_eq!(d.policies, vec!["no-write-at-weekends"]);
    let d = e.decide(PolicyAction::Request, &sunday);
    assert_eq!(
        (d.allowed, d.policies.as_slice()),
        (false, ["no-write-at-weekends".to_owned()].as_slice())
    );
}

#[test]
fn the_config_roles_decide_who_requests_and_who_approves_which_stage() {
    let e = engine("");
    let now = at("2026-11-24T09:00:00Z");
    let outsider = World::new("eve", &["sales"], "read");
    let d = e.decide(PolicyAction::Request, &outsider.facts(now, false));
    assert_eq!((d.allowed, d.policies.len()), (false, 0));

    let requester = World::new("alice", &["engineers"], "write");
    let carol = World::new("carol", &["db-owners", "security"], "write");
    for (stage, allowed) in [("owner", true), ("security", true), ("nonsense", false)] {
        let mut f = carol.facts(now, false);
        f.review = Some(UnderReview {
            id: "req_1",
            requester: Person {
                name: &requester.user,
                groups: &requester.groups,
                is_admin: false,
            },
            stage,
        });
        let d = e.decide(PolicyAction::Approve, &f);
        assert_eq!(d.allowed, allowed, "{stage}: {d:?}");
        if allowed {
            assert_eq!(d.policies, vec![format!("role:prod-db/write:approve:{stage}")]);
        }
    }
    // Nothing permits break-glass or automatic approval unless a policy file says so.
    assert!(!e.decide(PolicyAction::BreakGlass, &requester.facts(now, true)).allowed);
    assert!(!e.decide(PolicyAction::AutoApprove, &requester.facts(now, true)).allowed);
    let oncall = World::new("olga", &["engineers", "oncall"], "write");
    assert!(
        engine(WORKING_HOURS)
            .decide(PolicyAction::BreakGlass, &oncall.facts(now, false))
            .allowed
    );
}

#[test]
fn policies_about_the_request_under_review_can_forbid_approvers() {
    let text = r#"
@id("admins-do-not-approve-admins")
forbid(principal, action == Action::"approve", resource)
when { principal.is_admin && resource.requester.is_admin };
"#;
    let e = engine(text);
    let (req, bob) = (
        World::new("root", &["engineers"], "read"),
        World::new("bob", &["db-owners"], "read"),
    );
    let mut f = bob.facts(at("2026-11-24T09:00:00Z"), false);
    f.principal.is_admin = true;
    f.review = Some(UnderReview {
        id: "req_2",
        requester: Person {
            name: &req.user,
            groups: &req.groups,
            is_admin: true,
        },
        stage: "owner",
    });
    let d = e.decide(PolicyAction::Approve, &f);
    assert_eq!((d.allowed, d.policies), (false, vec!["admins-do-not-approve-admins".to_owned()]));
}

#[test]
fn an_unknown_attribute_is_refused_with_its_line_and_column() {
    let text = "\n\npermit(principal, action == Action::\"auto_approve\", resource)\nwhen { context.weather == \"sunny\" };\n";
    let err = PolicyEngine::load(
        &[PolicyFile {
            name: "p.cedar".into(),
            text: text.into(),
        }],
        "UTC",
    )
    .unwrap_err();
    let p = &err.0[0];
    assert_eq!((p.file.as_str(), p.line), ("p.cedar", 4), "{err}");
    assert!(p.column > 1, "{err}");
    assert!(p.message.contains("weather"), "{err}");
}

#[test]
fn syntax_errors_bad_zones_and_duplicate_ids_are_refused() {
    let err = PolicyEngine::load(
        &[PolicyFile {
            name: "p.cedar".into(),
            text: "permit(principal, action, resource)\nwhen { context.on_call ".into(),
        }],
        "UTC",
    )
    .unwrap_err();
    assert_eq!(err.0[0].line, 2, "{err}");
    assert!(PolicyEngine::load(&[], "Mars/Olympus").is_err());
    let twice = "@id(\"x\") permit(principal, action, resource);\n@id(\"x\") forbid(principal, action, resource);";
    let err = PolicyEngine::load(
        &[PolicyFile {
            name: "p.cedar".into(),
            text: twice.into(),
        }],
        "UTC",
    )
    .unwrap_err();
    assert!(err.to_string().contains("used twice"), "{err}");
}

#[test]
fn a_changed_resource_is_decided_on_its_new_roles() {
    let e = engine("");
    let mut w = World::new("eve", &["sales"], "read");
    let now = at("2026-11-24T09:00:00Z");
    assert!(!e.decide(PolicyAction::Request, &w.facts(now, false)).allowed);
    let role: RoleName = "read".parse().unwrap();
    w.resources[0]
        .roles
        .get_mut(&role)
        .unwrap()
        .requesters
        .insert("sales".parse().unwrap());
    assert!(e.decide(PolicyAction::Request, &w.facts(now, false)).allowed);
}

#[test]
fn unnamed_policies_are_named_after_their_file() {
    let e = engine("permit(principal, action == Action::\"connect\", resource);");
    assert_eq!(e.policy_ids(), ["policies/main.cedar#1"]);
    let w = World::new("alice", &["engineers"], "read");
    let d = e.decide(PolicyAction::Connect, &w.facts(at("2026-11-24T09:00:00Z"), false));
    assert_eq!(d.policies, vec!["policies/main.cedar#1"]);
}
