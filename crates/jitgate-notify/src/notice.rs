//! The notification as receivers get it: one JSON schema for every event (a webhook's body),
//! from which the e-mail and the Slack message are rendered.

use serde::{Deserialize, Serialize};

/// The schema's name and version, in every notification (`schema`).
pub const SCHEMA: &str = "jitgate.notification/v1";

/// What happened. The names are the schema's `event` and the channels' `events` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A request waits for approval: to the people who may approve it.
    #[serde(rename = "request.created")]
    RequestCreated,
    /// An approval was given and more are needed: to the requester and the approvers still
    /// wanted.
    #[serde(rename = "request.stage_advanced")]
    StageAdvanced,
    #[serde(rename = "request.approved")]
    RequestApproved,
    #[serde(rename = "request.denied")]
    RequestDenied,
    #[serde(rename = "request.cancelled")]
    RequestCancelled,
    #[serde(rename = "request.expired")]
    RequestExpired,
    /// Access was taken without approval: to every approver of the resource.
    #[serde(rename = "break_glass.used")]
    BreakGlassUsed,
    #[serde(rename = "grant.started")]
    GrantStarted,
    /// The grant ends soon: to its holder, with a link to ask for more time.
    #[serde(rename = "grant.ending_soon")]
    GrantEndingSoon,
    #[serde(rename = "grant.ended")]
    GrantEnded,
    /// An ephemeral database role could not be removed: to administrators.
    #[serde(rename = "revocation.failed")]
    RevocationFailed,
    /// Audit checkpoints could not be published to a witness: to administrators.
    #[serde(rename = "witness.unreachable")]
    WitnessUnreachable,
}

impl EventKind {
    pub const ALL: [EventKind; 12] = [
        Self::RequestCreated,
        Self::StageAdvanced,
        Self::RequestApproved,
        Self::RequestDenied,
        Self::RequestCancelled,
        Self::RequestExpired,
        Self::BreakGlassUsed,
        Self::GrantStarted,
        Self::GrantEndingSoon,
        Self::GrantEnded,
        Self::RevocationFailed,
        Self::WitnessUnreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestCreated => "request.created",
            Self::StageAdvanced => "request.stage_advanced",
            Self::RequestApproved => "request.approved",
            Self::RequestDenied => "request.denied",
            Self::RequestCancelled => "request.cancelled",
            Self::RequestExpired => "request.expired",
            Self::BreakGlassUsed => "break_glass.used",
            Self::GrantStarted => "grant.started",
            Self::GrantEndingSoon => "grant.ending_soon",
            Self::GrantEnded => "grant.ended",
            Self::RevocationFailed => "revocation.failed",
            Self::WitnessUnreachable => "witness.unreachable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The request a notification is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestPart {
    pub id: String,
    pub requester: String,
    pub resource: String,
    pub role: String,
    pub reason: String,
    pub ticket: Option<String>,
    /// As people write it: `30m`, `2h`.
    pub duration: String,
    pub duration_secs: i64,
    pub status: String,
    pub break_glass: bool,
    /// The request's page, where it is approved or denied (with a fresh second factor).
    pub url: String,
}

/// The grant a notification is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantPart {
    pub id: String,
    pub user: String,
    pub resource: String,
    pub role: String,
    /// RFC 3339.
    pub starts_at: String,
    pub ends_at: String,
    pub status: String,
    /// The holder's grants page: connect, ask for more time, end it.
    pub url: String,
}

/// One approval stage as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagePart {
    pub name: String,
    pub needed: u32,
    pub approved_by: Vec<String>,
}

/// One notification: the body of a webhook, the source of every other rendering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The idempotency key: the same on every retry of this message, different for every
    /// other. A receiver that has seen it may drop the message.
    pub id: String,
    pub event: EventKind,
    /// RFC 3339, when the event happened.
    pub occurred_at: String,
    /// The audit event it was made from (`jitgate audit ... --from SEQ`).
    pub audit_seq: i64,
    /// Who did it: a person, `system`, or `policy:ID`.
    pub actor: String,
    /// One line that says what happened.
    pub summary: String,
    pub request: Option<RequestPart>,
    pub grant: Option<GrantPart>,
    /// For `request.created` and `request.stage_advanced`: each stage's approvals so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StagePart>,
    /// A reviewer's comment, a revocation's reason, an alert's text.
    pub comment: Option<String>,
    /// The people it is meant for (jitgate user names).
    pub recipients: Vec<String>,
    /// Where to act on it: the request's page, the grants page, the audit page.
    pub url: String,
}
