//! Requests, reviews, grants as the workflow shows them, policy explanations and notifications.

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequestBody {
    #[schema(value_type = jitgate_core::names::ResourceName)]
    pub resource: String,
    #[schema(value_type = jitgate_core::names::RoleName)]
    pub role: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    /// Like `30m` or `1h`; the role's default when absent.
    #[serde(default)]
    pub duration: Option<String>,
    /// RFC 3339; now when absent.
    #[serde(default)]
    pub start_at: Option<Timestamp>,
    /// The grant this request extends.
    #[serde(default)]
    pub extends: Option<String>,
    /// A second factor for roles that ask for one at request time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaProof>,
    /// Break glass: access at once, where a policy allows it, with an alert to the approvers
    /// and a review after the fact.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub break_glass: bool,
}

/// `POST /policy/explain`: what the policies say for a person, a role and a duration.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainBody {
    #[schema(value_type = Username)]
    pub user: String,
    #[schema(value_type = jitgate_core::names::ResourceName)]
    pub resource: String,
    #[schema(value_type = jitgate_core::names::RoleName)]
    pub role: String,
    /// Like `30m`; the role's default when absent.
    #[serde(default)]
    pub duration: Option<String>,
    /// The moment to decide at; now when absent.
    #[serde(default)]
    pub at: Option<Timestamp>,
    /// When the access would begin (a scheduled request); `at` when absent.
    #[serde(default)]
    pub start_at: Option<Timestamp>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActionDecision {
    pub action: String,
    /// For `approve`: the stage the approval would count for.
    pub stage: Option<String>,
    pub allowed: bool,
    /// The policies that decided: the permits that allowed, or the forbids that denied.
    pub policies: Vec<String>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Explanation {
    pub user: Username,
    pub resource: String,
    pub role: String,
    pub at: Timestamp,
    pub time_zone: String,
    pub on_call: bool,
    pub decisions: Vec<ActionDecision>,
}

/// The policies in force after a reload.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyReport {
    pub policies: Vec<String>,
    pub time_zone: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationView {
    pub id: String,
    pub kind: String,
    pub subject: String,
    pub message: String,
    pub created_at: Timestamp,
    /// For a break-glass alert: who acknowledged the use, once someone has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<Username>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    #[serde(default)]
    pub comment: String,
    /// A second factor for roles that ask for one at approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaProof>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    pub reason: String,
}

/// A request as the API shows it: the stored record with its status as of now.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestView {
    #[serde(flatten)]
    pub request: AccessRequest,
    pub grant_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestDetail {
    pub request: AccessRequest,
    pub reviews: Vec<Review>,
    pub progress: Progress,
    pub grant: Option<Grant>,
    /// From `show`: every event about the request and its grant. From approve or deny: the
    /// events that review recorded.
    pub history: Vec<AuditEvent>,
}
