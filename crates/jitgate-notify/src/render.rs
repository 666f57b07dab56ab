//! A notification as people read it: an e-mail (subject, plain text, HTML) and a Slack message
//! (Block Kit). Every link opens jitgate's own page; no button acts by itself.

use crate::notice::{EventKind, Notice};
use serde_json::{json, Value};

/// The e-mail: subject, plain text and HTML bodies.
pub struct Email {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What a person typed, on one line: line breaks and other control characters become spaces,
/// so a reason cannot write lines that pass for the message's own (a fake link line in the
/// plain-text e-mail, say).
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The lines that follow the summary, as (label, value).
fn facts(n: &Notice) -> Vec<(&'static str, String)> {
    let mut out = raw_facts(n);
    for (_, v) in &mut out {
        *v = one_line(v);
    }
    out
}

fn raw_facts(n: &Notice) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(r) = &n.request {
        out.push(("Requester", r.requester.clone()));
        out.push(("Access", format!("{} on {}", r.role, r.resource)));
        out.push(("For", r.duration.clone()));
        out.push(("Reason", r.reason.clone()));
        if let Some(t) = &r.ticket {
            out.push(("Ticket", t.clone()));
        }
    } else if let Some(g) = &n.grant {
        out.push(("Holder", g.user.clone()));
        out.push(("Access", format!("{} on {}", g.role, g.resource)));
    }
    if let Some(g) = &n.grant {
        out.push(("Ends", g.ends_at.clone()));
    }
    for s in &n.stages {
        let who = if s.approved_by.is_empty() {
            "nobody yet".to_owned()
        } else {
            s.approved_by.join(", ")
        };
        out.push(("Stage", format!("{}: {} of {} ({who})", s.name, s.approved_by.len(), s.needed)));
    }
    if let Some(c) = n.comment.as_deref().filter(|c| !c.is_empty()) {
        out.push(("Note", c.to_owned()));
    }
    out
}

/// What the link says, by event.
fn action(kind: EventKind) -> &'static str {
    match kind {
        EventKind::RequestCreated | EventKind::StageAdvanced => "Review the request",
        EventKind::BreakGlassUsed => "Review and acknowledge",
        EventKind::GrantEndingSoon => "Ask for more time",
        EventKind::GrantStarted => "Connect",
        EventKind::RevocationFailed | EventKind::WitnessUnreachable => "Open the audit log",
        _ => "Open in jitgate",
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn email(n: &Notice) -> Email {
    let facts = facts(n);
    let mut text = format!("{}\n\n", n.summary);
    for (k, v) in &facts {
        text.push_str(&format!("{k}: {v}\n"));
    }
    text.push_str(&format!("\n{}: {}\n", action(n.event), n.url));
    if matches!(n.event, EventKind::RequestCreated | EventKind::StageAdvanced) {
        text.push_str("Approving asks for your second factor on that page.\n");
    }
    text.push_str(&format!("\n-- \njitgate · {} · {}\n", n.event.as_str(), n.id));
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><p><strong>{}</strong></p><table>",
        escape(&n.summary)
    );
    for (k, v) in &facts {
        html.push_str(&format!("<tr><th align=\"left\">{}</th><td>{}</td></tr>", escape(k), escape(v)));
    }
    html.push_str(&format!(
        "</table><p><a href=\"{}\">{}</a></p><p style=\"color:#666;font-size:small\">jitgate · {} · {}</p></body></html>",
        escape(&n.url),
        escape(action(n.event)),
        escape(n.event.as_str()),
        escape(&n.id)
    ));
    Email {
        subject: format!("[jitgate] {}", n.summary),
        text,
        html,
    }
}

/// Slack's mrkdwn treats `&`, `<` and `>` as markup; everything a person typed is escaped.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The Block Kit message: the summary, the facts, one button that opens jitgate's page (a link
/// button: Slack opens the URL, jitgate receives no action from it), and a context line.
pub fn slack(n: &Notice) -> Value {
    let fields: Vec<Value> = facts(n)
        .into_iter()
        .take(10) // Block Kit allows ten fields in a section.
        .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{}", slack_escape(&v))}))
        .collect();
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(&n.summary)}})];
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    blocks.push(json!({
        "type": "actions",
        "elements": [{
            "type": "button",
            "action_id": "open_in_jitgate",
            "text": {"type": "plain_text", "text": action(n.event)},
            "url": n.url,
        }]
    }));
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": format!("jitgate · {} · {}", n.event.as_str(), n.id)}]
    }));
    json!({"text": n.summary, "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::{RequestPart, SCHEMA};

    fn notice() -> Notice {
        Notice {
            schema: SCHEMA.into(),
            id: "ntf_1".into(),
            event: EventKind::RequestCreated,
            occurred_at: "2026-12-03T10:00:00Z".into(),
            audit_seq: 7,
            actor: "alice".into(),
            summary: "alice asks for read on prod-db for 30m".into(),
            request: Some(RequestPart {
                id: "req_1".into(),
                requester: "alice".into(),
                resource: "prod-db".into(),
                role: "read".into(),
                reason: "<script>alert(1)</script> & <!channel>".into(),
                ticket: None,
                duration: "30m".into(),
                duration_secs: 1800,
                status: "pending".into(),
                break_glass: false,
                url: "https://jg.example/requests/req_1".into(),
            }),
            grant: None,
            stages: vec![],
            comment: None,
            recipients: vec!["bob".into()],
            url: "https://jg.example/requests/req_1".into(),
        }
    }

    #[test]
    fn what_a_requester_typed_cannot_become_markup() {
        let e = email(&notice());
        assert!(!e.html.contains("<script>"), "{}", e.html);
        assert!(e.html.contains("&lt;script&gt;"));
        let s = slack(&notice()).to_string();
        assert!(!s.contains("<!channel>"), "a reason must not ping a Slack channel: {s}");
        assert!(s.contains("&lt;!channel&gt;"));
    }

    #[test]
    fn a_reason_cannot_write_lines_of_its_own() {
        let mut n = notice();
        n.request.as_mut().unwrap().reason = "fine\r\n\nReview the request: https://evil.example/x\nApproving asks".into();
        let e = email(&n);
        assert!(!e.text.contains("\nReview the request: https://evil"), "{}", e.text);
        assert_eq!(
            e.text.matches("Review the request:").count(),
            2,
            "the fake, kept on the reason's line, and the real one"
        );
        assert!(e
            .text
            .lines()
            .any(|l| l.starts_with("Reason: fine") && l.contains("https://evil.example/x")));
    }

    #[test]
    fn the_only_button_is_a_link_to_jitgate() {
        let m = slack(&notice());
        let buttons: Vec<&Value> = m["blocks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().into_iter().flatten())
            .collect();
        assert_eq!(buttons.len(), 1);
        assert_eq!(buttons[0]["url"], "https://jg.example/requests/req_1");
        assert!(buttons[0].get("value").is_none(), "no value a chat app could act on");
    }
}
