//! Human-readable output. `--json` bypasses all of this.

use jitgate_api::{
    Explanation, GatewaySession, GroupView, NotificationView, PasskeyView, RequestDetail, RequestView, ResourceView, UserView,
};
use jitgate_core::audit::AuditEvent;
use jitgate_core::grant::Grant;
use jitgate_core::time::format_duration;
use jitgate_core::Timestamp;
use std::time::Duration;

pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| if i == last { c } else { format!("{c:<w$}", w = widths[i]) })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = vec![line(headers.iter().map(|h| (*h).to_owned()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

/// Every time a person reads, in one style, to the second and marked UTC (the server's clock
/// and the audit log are UTC; `--json` gives RFC 3339 with milliseconds).
pub fn when(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    s.get(..19).map(|p| format!("{} UTC", p.replace('T', " "))).unwrap_or(s)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

pub fn requests(list: &[RequestView]) -> String {
    if list.is_empty() {
        return "no requests".into();
    }
    let rows = list
        .iter()
        .map(|v| {
            let r = &v.request;
            vec![
                r.id.clone(),
                r.status.to_string(),
                format!("{}/{}", r.resource, r.role),
                r.requester.to_string(),
                format_duration(Duration::from_secs(u64::try_from(r.duration_secs).unwrap_or(0))),
                when(r.created_at),
                truncate(&r.reason, 40),
            ]
        })
        .collect();
    table(&["ID", "STATUS", "ACCESS", "REQUESTER", "FOR", "CREATED", "REASON"], rows)
}

pub fn grants(list: &[Grant]) -> String {
    if list.is_empty() {
        return "no grants".into();
    }
    let rows = list
        .iter()
        .map(|g| {
            vec![
                g.id.clone(),
                g.status.to_string(),
                format!("{}/{}", g.resource, g.role),
                g.user.to_string(),
                when(g.starts_at),
                when(g.ends_at),
                g.db_role.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(&["ID", "STATUS", "ACCESS", "USER", "STARTS", "ENDS", "DB ROLE"], rows)
}

pub fn grant(g: &Grant) -> String {
    let mut s = format!(
        "grant {} ({}) for {} on {}/{}: {} → {}",
        g.id,
        g.status,
        g.user,
        g.resource,
        g.role,
        when(g.starts_at),
        when(g.ends_at)
    );
    if let (Some(by), Some(reason)) = (&g.revoked_by, &g.revoke_reason) {
        s.push_str(&format!("\nrevoked by {by}: {reason}"));
    }
    if let Some(role) = &g.db_role {
        s.push_str(&format!("\ndatabase role {role}"));
    }
    s
}

/// `jitgate resources`: each role one can ask for, its longest duration and its approvals.
pub fn requestable(list: &[ResourceView]) -> String {
    if list.is_empty() {
        return "no resources".into();
    }
    let rows = list
        .iter()
        .flat_map(|v| {
            v.resource.roles.iter().map(move |(name, p)| {
                let stages = p
                    .stages
                    .iter()
                    .map(|s| {
                        format!(
                            "{}×{}",
                            s.min_approvals,
                            s.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join("|")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" AND ");
                vec![
                    v.resource.name.to_string(),
                    name.to_string(),
                    format_duration(p.max_duration),
                    stages,
                ]
            })
        })
        .collect();
    table(&["RESOURCE", "ROLE", "MAX", "APPROVALS"], rows)
}

/// `jitgate sessions`: gateway sessions, live or ended.
pub fn sessions(list: &[GatewaySession]) -> String {
    if list.is_empty() {
        return "no sessions".into();
    }
    let rows = list
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.user.to_string(),
                format!("{}/{}", s.resource, s.role),
                when(s.started_at),
                s.end_reason.clone().unwrap_or_else(|| "live".into()),
                s.statements.to_string(),
            ]
        })
        .collect();
    table(&["ID", "USER", "ACCESS", "STARTED", "STATE", "STATEMENTS"], rows)
}

/// `jitgate notifications`: one line per alert, with who acknowledged it.
pub fn notifications(list: &[NotificationView]) -> String {
    if list.is_empty() {
        return "no notifications".into();
    }
    list.iter()
        .map(|n| match (&n.acknowledged_by, n.acknowledged_at) {
            (Some(by), Some(at)) => {
                format!("{}  {} (acknowledged by {by} at {})", when(n.created_at), n.message, when(at))
            }
            _ => format!("{}  {}", when(n.created_at), n.message),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn events(list: &[AuditEvent]) -> String {
    let rows = list
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                when(Timestamp::from_millis(e.ts)),
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
                e.outcome.clone(),
            ]
        })
        .collect();
    table(&["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME"], rows)
}

pub fn detail(d: &RequestDetail) -> String {
    let r = &d.request;
    let mut out = vec![
        format!("request   {}", r.id),
        format!("status    {}", r.status),
        format!("access    {} on {}", r.role, r.resource),
        format!("requester {}", r.requester),
        format!(
            "for       {}",
            format_duration(Duration::from_secs(u64::try_from(r.duration_secs).unwrap_or(0)))
        ),
        format!("reason    {}", r.reason),
    ];
    if let Some(t) = &r.ticket {
        out.push(format!("ticket    {t}"));
    }
    if let Some(s) = r.start_at {
        out.push(format!("starts    {}", when(s)));
    }
    out.push(format!("created   {}", when(r.created_at)));
    if r.status == jitgate_core::request::RequestStatus::Pending {
        out.push(format!("expires   {} unless approved", when(r.expires_at)));
    }
    out.push("approvals".into());
    for s in &d.progress.stages {
        let who = if s.approved_by.is_empty() {
            "-".to_owned()
        } else {
            s.approved_by.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(", ")
        };
        out.push(format!("  {}: {}/{} ({who})", s.name, s.approved_by.len(), s.needed));
    }
    if !d.reviews.is_empty() {
        out.push("reviews".into());
        for v in &d.reviews {
            let comment = if v.comment.is_empty() {
                String::new()
            } else {
                format!(": {}", v.comment)
            };
            // The factor the reviewer proved (absent for a policy's automatic approval).
            let factor = v.mfa_method.map(|m| format!(" with {m}")).unwrap_or_default();
            let stage = v
                .stage
                .and_then(|i| d.progress.stages.get(usize::try_from(i).ok()?))
                .map(|s| format!(" ({} stage)", s.name))
                .unwrap_or_default();
            out.push(format!(
                "  {} {} {}{stage}{factor}{comment}",
                when(v.created_at),
                v.reviewer,
                v.decision.as_str()
            ));
        }
    }
    if let Some(g) = &d.grant {
        out.push(grant(g));
    }
    if !d.history.is_empty() {
        out.push("history".into());
        for e in &d.history {
            out.push(format!(
                "  #{} {} {} {} ({})",
                e.seq,
                when(Timestamp::from_millis(e.ts)),
                e.actor,
                e.action,
                e.outcome
            ));
        }
    }
    out.join("\n")
}

fn login_lines(out: &mut Vec<String>, indent: &str, l: &jitgate_api::LoginCheck) {
    if !l.reachable {
        out.push(format!("{indent}not reachable: {}", l.error.as_deref().unwrap_or("unknown error")));
        return;
    }
    let attrs = if l.attributes.is_empty() {
        "none".to_owned()
    } else {
        l.attributes.join(", ")
    };
    out.push(format!("{indent}attributes: {attrs}"));
    if l.member_of.is_empty() {
        out.push(format!("{indent}member of: nothing"));
    } else {
        let roles: Vec<String> = l
            .member_of
            .iter()
            .map(|m| {
                if m.attributes.is_empty() {
                    m.role.clone()
                } else {
                    format!("{} ({})", m.role, m.attributes.join(", "))
                }
            })
            .collect();
        out.push(format!("{indent}member of: {}", roles.join(", ")));
    }
    if !l.privileges.is_empty() {
        out.push(format!("{indent}PRIVILEGED: {}", l.privileges.join("; ")));
    }
}

/// `admin resource check`: per role, what its sessions can do upstream.
pub fn resource_check(c: &jitgate_api::ResourceCheck) -> String {
    let mut out = vec![format!("resource {}", c.resource)];
    out.push(format!("  service login {} (provisioning, role checks):", c.service.name));
    login_lines(&mut out, "    ", &c.service);
    for r in &c.roles {
        let verdict = if r.sessions_allowed {
            if r.login.privileges.is_empty() {
                "sessions allowed".to_owned()
            } else {
                "sessions allowed (privileged, allow_privileged_login = true)".to_owned()
            }
        } else if !r.login.reachable {
            "sessions fail: login not reachable".to_owned()
        } else {
            "sessions REFUSED: privileged login (set a login of its own, or allow_privileged_login = true)".to_owned()
        };
        out.push(format!("  role {} ({}), login {}: {verdict}", r.role, r.access, r.login.name));
        login_lines(&mut out, "    ", &r.login);
    }
    out.join("\n")
}

/// `jitgate policy explain`: each action's decision and the policies behind it.
pub fn explanation(e: &Explanation) -> String {
    let mut s = format!(
        "{} on {}/{} at {} ({}{}):",
        e.user,
        e.resource,
        e.role,
        e.at,
        e.time_zone,
        if e.on_call { ", on call" } else { "" }
    );
    for d in &e.decisions {
        let action = match &d.stage {
            Some(stage) => format!("{} ({stage})", d.action),
            None => d.action.clone(),
        };
        let why = if d.policies.is_empty() && d.allowed {
            "no policy forbids it (a live grant is what lets a session in)".to_owned()
        } else if d.policies.is_empty() {
            "no policy permits it".to_owned()
        } else {
            d.policies.join(", ")
        };
        s.push_str(&format!(
            "\n  {:<22} {:<5}  {why}",
            action,
            if d.allowed { "allow" } else { "deny" }
        ));
        for err in &d.errors {
            s.push_str(&format!("\n      error: {err}"));
        }
    }
    s
}

/// `jitgate mfa webauthn list`.
pub fn passkeys(list: &[PasskeyView]) -> String {
    if list.is_empty() {
        return "no passkeys or security keys".into();
    }
    let rows = list
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                p.name.clone(),
                when(p.created_at),
                p.last_used_at.map_or("-".into(), when),
            ]
        })
        .collect();
    table(&["ID", "NAME", "ADDED", "LAST USED"], rows)
}

/// `jitgate admin user list`.
pub fn users(list: &[UserView]) -> String {
    let rows = list
        .iter()
        .map(|u| {
            let state = if u.disabled {
                "disabled"
            } else if !u.has_password {
                "no password"
            } else {
                "active"
            };
            vec![
                u.username.to_string(),
                if u.is_admin { "yes".into() } else { "no".into() },
                state.into(),
                u.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(","),
            ]
        })
        .collect();
    table(&["USER", "ADMIN", "STATE", "GROUPS"], rows)
}

/// `jitgate admin notifications`: each channel with its counts, then the messages.
pub fn outbox(o: &jitgate_api::NotificationsOverview) -> String {
    if o.channels.is_empty() {
        return "no notification channels are configured ([[notifications.channels]] in the config file)".into();
    }
    let channels = o
        .channels
        .iter()
        .map(|c| {
            let secret = match (c.needs_secret, c.secret_set) {
                (false, _) => "not needed",
                (true, true) => "set",
                (true, false) => "MISSING",
            };
            vec![
                c.name.clone(),
                c.kind.clone(),
                if c.events.is_empty() { "all".into() } else { c.events.join(",") },
                secret.into(),
                c.pending.to_string(),
                c.sent.to_string(),
                c.failed.to_string(),
            ]
        })
        .collect();
    let mut out = table(&["CHANNEL", "KIND", "EVENTS", "SECRET", "PENDING", "SENT", "FAILED"], channels);
    if o.deliveries.is_empty() {
        out.push_str(
            "
no messages",
        );
        return out;
    }
    let rows = o
        .deliveries
        .iter()
        .map(|d| {
            let state = match (d.status.as_str(), &d.last_error) {
                ("pending", Some(e)) => format!("retry at {} ({e})", when(d.next_attempt_at)),
                ("failed", e) => format!("failed: {}", e.as_deref().unwrap_or("")),
                ("sent", _) => format!("sent {}", d.sent_at.map(when).unwrap_or_default()),
                (s, _) => s.to_owned(),
            };
            vec![
                d.id.clone(),
                d.event.clone(),
                d.channel.clone(),
                if d.destination.is_empty() {
                    "-".into()
                } else {
                    d.destination.clone()
                },
                d.attempts.to_string(),
                state,
            ]
        })
        .collect();
    out.push('\n');
    out.push('\n');
    out.push_str(&table(&["ID", "EVENT", "CHANNEL", "TO", "ATTEMPTS", "STATE"], rows));
    out
}

/// `jitgate admin group list`.
pub fn groups(list: &[GroupView]) -> String {
    let rows = list
        .iter()
        .map(|g| {
            vec![
                g.name.to_string(),
                g.members.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", "),
            ]
        })
        .collect();
    table(&["GROUP", "MEMBERS"], rows)
}

/// `jitgate admin resource list`: each resource's kind, roles and upstream password.
pub fn resources(list: &[ResourceView]) -> String {
    let rows = list
        .iter()
        .map(|v| {
            vec![
                v.resource.name.to_string(),
                v.resource.kind.clone(),
                v.resource.roles.keys().map(|r| r.to_string()).collect::<Vec<_>>().join(", "),
                v.upstream_credential.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(&["RESOURCE", "KIND", "ROLES", "UPSTREAM PASSWORD"], rows)
}

/// `jitgate admin oidc test`: the checks, then what the claims map to.
pub fn oidc_test(t: &jitgate_api::OidcTestView) -> String {
    let mut out = String::new();
    for c in &t.checks {
        out.push_str(&format!("{} {}: {}\n", if c.ok { "ok  " } else { "FAIL" }, c.check, c.detail));
    }
    match (&t.username, &t.username_problem) {
        (Some(u), _) => out.push_str(&format!("user: {u}\n")),
        (None, Some(p)) => out.push_str(&format!("user: none ({p})\n")),
        (None, None) => out.push_str("user: none\n"),
    }
    let theirs = if t.their_groups.is_empty() {
        "-".to_owned()
    } else {
        t.their_groups.join(", ")
    };
    out.push_str(&format!("provider's groups: {theirs}\n"));
    if t.groups.is_empty() {
        out.push_str("jitgate groups: none\n");
    }
    for g in &t.groups {
        out.push_str(&format!("jitgate group {} <- {:?} by {}\n", g.group, g.from, g.rule));
    }
    if !t.unmapped.is_empty() {
        out.push_str(&format!("no rule takes: {}\n", t.unmapped.join(", ")));
    }
    for r in &t.refused {
        out.push_str(&format!("refused: {r}\n"));
    }
    out.push_str(&format!(
        "amr: {}; acr: {}; counts as a second factor: {}\n",
        if t.amr.is_empty() { "-".to_owned() } else { t.amr.join(", ") },
        t.acr.as_deref().unwrap_or("-"),
        if t.second_factor { "yes" } else { "no" }
    ));
    out.push_str(&format!("claims: {}", serde_json::to_string_pretty(&t.claims).unwrap_or_default()));
    out
}
