use thiserror::Error;

/// A refusal by the domain rules. Each has a stable machine-readable code that the API returns.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    #[error("unknown resource '{0}'")]
    UnknownResource(String),
    #[error("resource '{resource}' has no role '{role}'")]
    UnknownRole { resource: String, role: String },
    #[error("you are not allowed to request role '{role}' on '{resource}'")]
    NotEligible { resource: String, role: String },
    #[error("requested duration {requested} is longer than the maximum {max} for this role")]
    DurationTooLong { requested: String, max: String },
    #[error("duration must be at least one minute")]
    DurationTooShort,
    #[error("a reason is required for this role")]
    ReasonRequired,
    #[error("the reason must have at least {min} characters")]
    ReasonTooShort { min: usize },
    #[error("a ticket matching {pattern} is required for this role")]
    TicketRequired { pattern: String },
    #[error("ticket '{ticket}' does not match {pattern}")]
    TicketInvalid { ticket: String, pattern: String },
    #[error("the start time must not be in the past")]
    StartInPast,
    #[error("start_at is more than {horizon} ahead (policy.start_at_horizon); ask nearer the time")]
    StartTooFar { horizon: String },
    #[error("you cannot review your own request")]
    SelfApprovalForbidden,
    #[error("you are not an approver for this request")]
    NotAnApprover,
    #[error("you have already reviewed this request")]
    AlreadyReviewed,
    #[error("the request is {status}, not pending")]
    RequestNotPending { status: String },
    #[error("only the requester can cancel a request")]
    NotRequester,
    #[error("the grant is {status}")]
    GrantNotLive { status: String },
    #[error("you may not revoke this grant")]
    NotAllowedToRevoke,
    #[error("the extended grant belongs to someone else or to another resource or role")]
    ExtensionMismatch,
    #[error("a reason is required to revoke a grant")]
    RevokeReasonRequired,
    #[error("{action} is forbidden by policy {}", .policies.join(", "))]
    ForbiddenByPolicy { action: String, policies: Vec<String> },
    #[error("no policy lets you break glass on '{role}' of '{resource}'")]
    BreakGlassNotAllowed { resource: String, role: String },
    #[error("break-glass access lasts at most {max} on this role")]
    BreakGlassTooLong { max: String },
    #[error("this request was not a break-glass request; there is nothing to acknowledge")]
    NotBreakGlass,
    #[error("this break-glass access was acknowledged already")]
    AlreadyAcknowledged,
}

impl DomainError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownResource(_) => "unknown_resource",
            Self::UnknownRole { .. } => "unknown_role",
            Self::NotEligible { .. } => "not_eligible",
            Self::DurationTooLong { .. } => "duration_too_long",
            Self::DurationTooShort => "duration_too_short",
            Self::ReasonRequired => "reason_required",
            Self::ReasonTooShort { .. } => "reason_too_short",
            Self::TicketRequired { .. } => "ticket_required",
            Self::TicketInvalid { .. } => "ticket_invalid",
            Self::StartInPast => "start_in_past",
            Self::StartTooFar { .. } => "start_too_far",
            Self::SelfApprovalForbidden => "self_approval_forbidden",
            Self::NotAnApprover => "not_an_approver",
            Self::AlreadyReviewed => "already_reviewed",
            Self::RequestNotPending { .. } => "request_not_pending",
            Self::NotRequester => "not_requester",
            Self::GrantNotLive { .. } => "grant_not_live",
            Self::NotAllowedToRevoke => "not_allowed_to_revoke",
            Self::ExtensionMismatch => "extension_mismatch",
            Self::RevokeReasonRequired => "revoke_reason_required",
            Self::ForbiddenByPolicy { .. } => "forbidden_by_policy",
            Self::BreakGlassNotAllowed { .. } => "break_glass_not_allowed",
            Self::BreakGlassTooLong { .. } => "break_glass_too_long",
            Self::NotBreakGlass => "not_break_glass",
            Self::AlreadyAcknowledged => "already_acknowledged",
        }
    }

    /// Whether the refusal is about who is asking (403) rather than what was asked (400/409).
    pub fn is_authorization(&self) -> bool {
        matches!(
            self,
            Self::NotEligible { .. }
                | Self::SelfApprovalForbidden
                | Self::NotAnApprover
                | Self::NotRequester
                | Self::NotAllowedToRevoke
                | Self::ForbiddenByPolicy { .. }
                | Self::BreakGlassNotAllowed { .. }
        )
    }

    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Self::AlreadyReviewed
                | Self::RequestNotPending { .. }
                | Self::GrantNotLive { .. }
                | Self::NotBreakGlass
                | Self::AlreadyAcknowledged
        )
    }
}
