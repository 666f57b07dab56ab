//! A request decision with 100 policies loaded (issue #5: ≤ 50 µs), beside the baseline of
//! the same decision with only the policies the config's roles make.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use jitgate_core::policy::Resource;
use jitgate_core::Timestamp;
use jitgate_policy::{Facts, Person, PolicyAction, PolicyEngine, PolicyFile};
use std::collections::BTreeSet;
use std::time::Duration;

const RESOURCES: &str = r#"
[[resources]]
name = "prod-db"
[resources.roles.read]
requesters = ["engineers"]
stages = [{ name = "owner", groups = ["db-owners"] }]
"#;

/// 100 policies of the kinds operators write: working hours, on-call, forbids by weekday,
/// ticket and duration rules, group permits.
fn hundred_policies() -> String {
    let mut s = String::new();
    for i in 0..100 {
        let p = match i % 5 {
            0 => format!("@id(\"hours-{i}\") permit(principal, action == Action::\"auto_approve\", resource == Role::\"prod-db/read\") when {{ context.local.weekday <= 5 && context.local.hour >= {} && context.local.hour < 18 && context.duration_secs <= 3600 }};", 6 + i % 4),
            1 => format!("@id(\"oncall-{i}\") permit(principal in Group::\"oncall-{i}\", action == Action::\"auto_approve\", resource in Resource::\"prod-db\") when {{ context.on_call }};"),
            2 => format!("@id(\"weekend-{i}\") forbid(principal, action == Action::\"request\", resource == Role::\"prod-db/write-{i}\") when {{ context.local.weekday >= 6 }};"),
            3 => format!("@id(\"ticket-{i}\") forbid(principal, action == Action::\"request\", resource in Resource::\"prod-db\") when {{ context.ticket == \"BLOCKED-{i}\" }};"),
            _ => format!("@id(\"group-{i}\") permit(principal in Group::\"team-{i}\", action == Action::\"request\", resource in Resource::\"prod-db\") when {{ context.duration_secs < 7200 }};"),
        };
        s.push_str(&p);
        s.push('\n');
    }
    s
}

fn bench(c: &mut Criterion) {
    #[derive(serde::Deserialize)]
    struct F {
        resources: Vec<Resource>,
    }
    let resources = toml::from_str::<F>(RESOURCES).unwrap().resources;
    let loaded = PolicyEngine::load(
        &[PolicyFile {
            name: "bench.cedar".into(),
            text: hundred_policies(),
        }],
        "Europe/Berlin",
    )
    .unwrap();
    assert_eq!(loaded.policy_count(), 100);
    let baseline = PolicyEngine::load(&[], "Europe/Berlin").unwrap();
    let user = "alice".parse().unwrap();
    let groups: BTreeSet<_> = ["engineers", "team-4", "oncall-1"].iter().map(|g| g.parse().unwrap()).collect();
    let grants = BTreeSet::new();
    let role = "read".parse().unwrap();
    let facts = Facts {
        principal: Person {
            name: &user,
            groups: &groups,
            is_admin: false,
        },
        resource: &resources[0],
        role: &role,
        duration: Duration::from_secs(1800),
        reason: "benchmark",
        ticket: Some("INC-1"),
        active_grants: &grants,
        on_call: false,
        now: Timestamp::parse_rfc3339("2026-11-24T09:00:00Z").unwrap(),
        window: None,
        review: None,
    };
    assert!(loaded.decide(PolicyAction::Request, &facts).allowed);
    let mut g = c.benchmark_group("request_decision");
    g.bench_function("config_roles_only", |b| b.iter(|| baseline.decide(PolicyAction::Request, &facts)));
    g.bench_function("100_policies", |b| b.iter(|| loaded.decide(PolicyAction::Request, &facts)));
    g.bench_function("100_policies_auto_approve", |b| {
        b.iter(|| loaded.decide(PolicyAction::AutoApprove, &facts))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
