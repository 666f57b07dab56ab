//! Notification channels and the outbox as administrators see them; people's e-mail addresses.

use super::*;

/// One message to one destination, as the outbox holds it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// Also the idempotency key its receiver sees (`Jitgate-Delivery`, the JSON's `id`).
    pub id: String,
    /// The event, as the notification schema names it (`request.created`, ...).
    pub event: String,
    /// The audit event it was made from.
    pub audit_seq: i64,
    pub channel: String,
    /// An e-mail address, a Slack channel or `email:ADDRESS`; empty for a webhook.
    pub destination: String,
    /// `pending`, `sent` or `failed` (given up; `retry` queues it again).
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

/// Where a message stands: still to be sent, sent, or given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Sent,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }
}

/// A configured channel and where its messages stand.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub name: String,
    /// `webhook`, `slack` or `email`.
    pub kind: String,
    /// The events it takes; empty: every event.
    pub events: Vec<String>,
    /// Whether it needs a secret, and whether one is stored.
    pub needs_secret: bool,
    pub secret_set: bool,
    pub pending: i64,
    pub sent: i64,
    pub failed: i64,
}

/// `GET /admin/notifications`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationsOverview {
    pub channels: Vec<ChannelView>,
    /// Newest first, as filtered.
    pub deliveries: Vec<DeliveryView>,
}

/// A channel's secret: a webhook's signing key, a Slack bot token or incoming-webhook URL, an
/// SMTP password. Stored sealed; never shown again.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSecretBody {
    /// 1 to 4,096 characters, no NUL.
    #[schema(value_type = String, format = Password, min_length = 1, max_length = 4096, pattern = "^[^\\u0000]*$")]
    pub secret: SecretText,
}

/// A user's e-mail address, where notifications by e-mail go; `null` removes it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailBody {
    #[schema(max_length = 254, example = "alice@example.com")]
    pub email: Option<String>,
}
