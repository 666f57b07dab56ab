//! Channels as configured: where messages go, which events reach them, and to whom.

use crate::notice::{EventKind, Notice};
use std::collections::{BTreeMap, BTreeSet};

/// One configured channel (`[[notifications.channels]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Names the channel in filters, in `jitgate admin notifications` and for its secret.
    pub name: String,
    pub filter: Filter,
    pub kind: ChannelKind,
}

/// Which notifications a channel takes. An empty set admits everything of its kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub events: BTreeSet<EventKind>,
    pub resources: BTreeSet<String>,
    pub roles: BTreeSet<String>,
}

impl Filter {
    /// Whether `n` passes. A notification about no resource (an audit witness down) passes a
    /// resource or role filter only when that filter is empty.
    pub fn admits(&self, n: &Notice) -> bool {
        let (resource, role) = match (&n.request, &n.grant) {
            (Some(r), _) => (Some(r.resource.as_str()), Some(r.role.as_str())),
            (None, Some(g)) => (Some(g.resource.as_str()), Some(g.role.as_str())),
            (None, None) => (None, None),
        };
        (self.events.is_empty() || self.events.contains(&n.event))
            && (self.resources.is_empty() || resource.is_some_and(|r| self.resources.contains(r)))
            && (self.roles.is_empty() || role.is_some_and(|r| self.roles.contains(r)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelKind {
    /// A signed JSON POST of the [`Notice`] (the secret is the signing key).
    Webhook {
        url: url::Url,
    },
    Slack(Slack),
    Email(Email),
}

impl ChannelKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Slack(_) => "slack",
            Self::Email(_) => "email",
        }
    }
}

/// Slack, through a bot token (`chat.postMessage`, the secret is the token) or an incoming
/// webhook (the secret is its URL, which is a credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slack {
    /// Slack's Web API (`https://slack.com/api`); tests point it at a local receiver.
    pub api_url: url::Url,
    pub incoming_webhook: bool,
    /// With a bot token: the channel for every resource without one of its own.
    pub channel: Option<String>,
    /// With a bot token: a channel per resource.
    pub resource_channels: BTreeMap<String, String>,
    /// With a bot token: also a direct message to each recipient, found by their e-mail.
    pub direct_by_email: bool,
}

/// SMTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// With a username the secret is the password.
    pub username: Option<String>,
    /// `Name <address>` or an address.
    pub from: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain, then STARTTLS, which must succeed (port 587).
    StartTls,
    /// No encryption: only to a loopback address (a local relay).
    None,
}

/// A destination that is a Slack person found by e-mail, rather than a channel.
pub const SLACK_EMAIL_PREFIX: &str = "email:";

impl Channel {
    /// Where `n` goes on this channel, given the e-mail addresses of its recipients: one
    /// message per destination. A webhook has one destination, its URL (`""`).
    pub fn destinations(&self, n: &Notice, emails: &BTreeMap<String, String>) -> Vec<String> {
        let addresses = || n.recipients.iter().filter_map(|r| emails.get(r).cloned());
        match &self.kind {
            ChannelKind::Webhook { .. } => vec![String::new()],
            ChannelKind::Slack(s) if s.incoming_webhook => vec![String::new()],
            ChannelKind::Slack(s) => {
                let resource = n.request.as_ref().map(|r| &r.resource).or(n.grant.as_ref().map(|g| &g.resource));
                let mut out: Vec<String> = resource
                    .and_then(|r| s.resource_channels.get(r))
                    .or(s.channel.as_ref())
                    .cloned()
                    .into_iter()
                    .collect();
                if s.direct_by_email {
                    out.extend(addresses().map(|a| format!("{SLACK_EMAIL_PREFIX}{a}")));
                }
                out
            }
            ChannelKind::Email(_) => {
                let mut out: Vec<String> = addresses().collect();
                out.sort();
                out.dedup();
                out
            }
        }
    }

    /// Whether sending needs a secret (`jitgate admin channel set-secret NAME`).
    pub fn needs_secret(&self) -> bool {
        match &self.kind {
            ChannelKind::Webhook { .. } | ChannelKind::Slack(_) => true,
            ChannelKind::Email(e) => e.username.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::{GrantPart, Notice, SCHEMA};

    fn notice(event: EventKind, resource: Option<&str>) -> Notice {
        Notice {
            schema: SCHEMA.into(),
            id: "n".into(),
            event,
            occurred_at: String::new(),
            audit_seq: 1,
            actor: "system".into(),
            summary: String::new(),
            request: None,
            grant: resource.map(|r| GrantPart {
                id: "g".into(),
                user: "alice".into(),
                resource: r.into(),
                role: "read".into(),
                starts_at: String::new(),
                ends_at: String::new(),
                status: "active".into(),
                url: String::new(),
            }),
            stages: vec![],
            comment: None,
            recipients: vec![],
            url: String::new(),
        }
    }

    #[test]
    fn a_filter_admits_only_its_events_resources_and_roles() {
        let all = Filter::default();
        assert!(all.admits(&notice(EventKind::GrantEnded, Some("prod-db"))));
        assert!(all.admits(&notice(EventKind::WitnessUnreachable, None)));
        let f = Filter {
            events: [EventKind::GrantEnded].into(),
            resources: ["prod-db".to_owned()].into(),
            roles: ["read".to_owned()].into(),
        };
        assert!(f.admits(&notice(EventKind::GrantEnded, Some("prod-db"))));
        assert!(!f.admits(&notice(EventKind::GrantStarted, Some("prod-db"))), "another event");
        assert!(!f.admits(&notice(EventKind::GrantEnded, Some("staging-db"))), "another resource");
        assert!(
            !f.admits(&notice(EventKind::GrantEnded, None)),
            "about no resource, with a resource filter"
        );
        let roles = Filter {
            roles: ["write".to_owned()].into(),
            ..Filter::default()
        };
        assert!(!roles.admits(&notice(EventKind::GrantEnded, Some("prod-db"))), "another role");
    }
}
